"""tools/sim_to_real.py: moderate ground-truth counts, AP equal to tools/eval.py's, missing roots."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import torch

from perception.cli import CONFIG_DIR, DetectionCLI
from perception.data.kitti import read_split
from perception.eval.kitti import result_keys

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


s2r = _load("perception_tools_sim_to_real", REPO / "tools" / "sim_to_real.py")
eval_tool = s2r.eval_tool

# Hand-counted from tests/data/kitti/training/label_2 (tests/data/README.md): the moderate AP counts
# objects of the class that are easy or moderate (image height >= 25 px, occlusion <= 1, truncation <= 0.3).
# 000000: Pedestrian 165 px, occlusion 0 -> easy.  000001: Car 21.6 px -> none; Cyclist occlusion 3 ->
# none; Truck and 4 DontCare not counted.  000002: Car 33.3 px, occlusion 0 -> moderate; Misc not counted.
SHIPPED_MODERATE = {"000000": (0, 1, 0), "000001": (0, 0, 0), "000002": (1, 0, 0)}


def _counts(per_frame: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    return {c: sum(v[i] for v in per_frame.values()) for i, c in enumerate(("Car", "Pedestrian", "Cyclist"))}


# ------------------------------------------------------------------------------------- fast


def test_moderate_gt_counts_of_the_shipped_real_frames(kitti_root):
    for frame_id, expected in SHIPPED_MODERATE.items():
        assert s2r.moderate_gt(kitti_root, [frame_id]) == _counts({frame_id: expected}), frame_id
    assert s2r.moderate_gt(kitti_root, list(SHIPPED_MODERATE)) == {"Car": 1, "Pedestrian": 1, "Cyclist": 0}
    assert s2r.moderate_gt(kitti_root, ["000000", "999999"]) is None  # a frame without labels


def test_missing_real_root_exits_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "kitti"
    code = s2r.main(["--ckpt", str(tmp_path / "x.ckpt"), "--real", f"mine={missing}", "--no-synthetic"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and err.startswith("sim_to_real: error:") and "Traceback" not in err
    code = s2r.main(["--ckpt", str(tmp_path / "x.ckpt"), "--real", "x", "--no-synthetic"])
    assert code == 2 and "NAME=ROOT" in capsys.readouterr().err


def test_missing_synthetic_root_given_exits_2(tmp_path, kitti_root, capsys):
    missing = tmp_path / "synthetic"
    argv = ["--ckpt", str(tmp_path / "x.ckpt"), "--real", f"k={kitti_root}", "--synthetic", str(missing)]
    assert s2r.main(argv) == 2
    assert str(missing) in capsys.readouterr().err


def test_ap_is_the_r40_moderate_entry_and_none_where_undefined():
    results = {k: float(i) for i, k in enumerate(result_keys(("Car", "Pedestrian", "Cyclist")))}
    results["Cyclist_bev/moderate_R40"] = math.nan
    ap = s2r._ap(results)
    assert ap["Car"] == {"3d": results["Car_3d/moderate_R40"], "bev": results["Car_bev/moderate_R40"]}
    assert ap["Cyclist"]["bev"] is None and ap["Cyclist"]["3d"] == results["Cyclist_3d/moderate_R40"]
    assert s2r._ap({k: v for k, v in results.items() if not k.startswith("Pedestrian")})["Pedestrian"] == {
        "3d": None, "bev": None,
    }  # fmt: skip


def test_table_and_markdown_dash_classes_without_moderate_objects():
    row = s2r.Row(
        name="dev", kind="real", root="r", split="val", frame_list="ImageSets/val.txt", frames=10,
        moderate_gt={"Car": 37, "Pedestrian": 0, "Cyclist": 0},
        ap_r40_moderate={"Car": {"3d": 15.55, "bev": 36.26}, "Pedestrian": {"3d": 0.0, "bev": None},
                         "Cyclist": {"3d": None, "bev": None}},
    )  # fmt: skip
    lines = s2r.markdown([row]).splitlines()
    assert lines[0] == "| data | Car 3D (BEV) | Pedestrian 3D (BEV) | Cyclist 3D (BEV) |"
    assert lines[2] == "| dev (real, 10 frames) | 15.6 (36.3) | – | – |"
    assert s2r.table([row], "t").row_count == 1


def test_run_name_of_a_checkpoint():
    ckpt = REPO / "outputs/quickstart/detection/version_0/checkpoints/last.ckpt"
    assert s2r.run_name(ckpt) == "quickstart-detection-version_0"
    assert s2r.run_name(Path("/elsewhere/myrun/checkpoints/last.ckpt")) == "myrun"
    assert s2r.run_name(Path("/elsewhere/init.pt")) == "run"


# ------------------------------------------------------------------------------------- end to end (~5 s)


def _untrained_checkpoint(config: str, path: Path, monkeypatch) -> Path:
    """A bare state dict of the config's task with its initial weights (as tests/tools/test_eval.py)."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    cli = DetectionCLI(run=False, args=["--config", str(CONFIG_DIR / config), "--trainer.logger", "false"])
    torch.save(cli.model.state_dict(), path)
    return path


def _moderate_by_hand(root: Path, frame_ids: list[str]) -> dict[str, int]:
    """Moderate objects counted straight from the label fields (devkit limits), not via kitti_difficulty."""
    counts = {"Car": 0, "Pedestrian": 0, "Cyclist": 0}
    for frame_id in frame_ids:
        for line in (root / "training" / "label_2" / f"{frame_id}.txt").read_text().splitlines():
            f = line.split()
            if (
                f
                and f[0] in counts
                and float(f[7]) - float(f[5]) >= 25
                and int(f[2]) <= 1
                and float(f[1]) <= 0.3
            ):
                counts[f[0]] += 1
    return counts


def test_rows_counts_and_ap_equal_eval_metrics(tmp_path, kitti_root, monkeypatch, capsys):
    from perception.data.synthetic import write_dataset

    ckpt = _untrained_checkpoint("pointpillars_synthetic.yaml", tmp_path / "init.pt", monkeypatch)
    synthetic = tmp_path / "synthetic"
    write_dataset(synthetic, frames=6, seed=3, val_fraction=0.5)
    val = read_split(synthetic, "val")
    common = ["--ckpt", str(ckpt), "--config", "pointpillars_synthetic.yaml", "--num-workers", "0",
              "--batch-size", "2", "--trainer.accelerator", "cpu"]  # fmt: skip
    out = tmp_path / "s2r"
    argv = [*common, "--real", f"kitti3={kitti_root}", "--synthetic", str(synthetic), "--synthetic-limit",
            str(len(val) - 1), "--out", str(out), "--markdown"]  # fmt: skip
    assert s2r.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| data | Car 3D (BEV) | Pedestrian 3D (BEV) | Cyclist 3D (BEV) |" in printed
    report = json.loads((out / "sim_to_real.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["kitti3", "synthetic"]

    assert rows["kitti3"]["frames"] == 3
    assert (
        rows["kitti3"]["moderate_gt"]
        == _counts(SHIPPED_MODERATE)
        == _moderate_by_hand(kitti_root, list(SHIPPED_MODERATE))
    )
    assert rows["synthetic"]["frames"] == len(val) - 1
    assert rows["synthetic"]["moderate_gt"] == _moderate_by_hand(synthetic, val[:-1])
    assert sorted(p.stem for p in (out / "synthetic" / "predictions").glob("*.txt")) == sorted(val[:-1])

    # tools/eval.py itself on the same checkpoint and roots: the same AP
    for name, extra in (("kitti3", ["--data-root", str(kitti_root)]),
                        ("synthetic", ["--data-root", str(synthetic), "--frames", *val[:-1]])):  # fmt: skip
        eval_out = tmp_path / "eval" / name
        assert eval_tool.main([*common, *extra, "--out", str(eval_out)]) == 0
        metrics = json.loads((eval_out / "metrics.json").read_text())
        for cls, by_metric in rows[name]["ap_r40_moderate"].items():
            for metric, value in by_metric.items():
                assert value == metrics[f"{cls}_{metric}/moderate_R40"], (name, cls, metric)
    assert rows["kitti3"]["ap_r40_moderate"]["Cyclist"] == {"3d": None, "bev": None}  # no moderate Cyclist
