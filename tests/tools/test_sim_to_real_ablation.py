"""tools/sim_to_real_ablation.py: each row's commands, resuming finished rows, the table; and
make_synthetic.py --without, which the rows use."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from perception.data.synthetic import REALISM_SWITCHES, SyntheticConfig

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ablation = _load("perception_tools_sim_to_real_ablation", REPO / "tools" / "sim_to_real_ablation.py")


def _args(tmp_path: Path, *extra: str):
    return ablation.build_parser().parse_args(
        ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--frames", "7", *extra]
    )


def test_every_switch_has_a_row_and_rows_build_the_right_commands(tmp_path):
    assert set(ablation.ROWS) == {
        "generator-2",
        "generator-1",
        "no-domain-randomization",
        "with-parking-bays",
        *(f"no-{name}" for name in REALISM_SWITCHES),
    }
    assert dict(ablation.commands("with-parking-bays", _args(tmp_path)))["generate"][-1] == "--parking-bays"
    args = _args(tmp_path, "--real", "dev=/somewhere")
    steps = dict(ablation.commands("no-rounded-cars", args))
    assert steps["generate"][-2:] == ["--without", "rounded-cars"]
    assert "--frames" in steps["generate"] and "7" in steps["generate"]
    train = steps["train"]
    assert train[1].endswith("tools/quickstart.py") and str(tmp_path / "data" / "no-rounded-cars") in train
    assert "--" not in train  # the quickstart's own config and overrides
    assert steps["measure"][-2:] == ["--real", "dev=/somewhere"]
    dr = dict(ablation.commands("no-domain-randomization", args))
    assert dr["train"][-3:] == ["--", "--data.domain_randomization", "false"]
    assert "--without" not in dr["generate"]
    g1 = dict(ablation.commands("generator-1", args))
    assert g1["generate"][-2:] == ["--without", "all"] and g1["train"][-1] == "false"
    # A dataset already written is not generated again.
    (tmp_path / "data" / "generator-2").mkdir(parents=True)
    (tmp_path / "data" / "generator-2" / "synthetic.json").write_text("{}")
    assert [n for n, _ in ablation.commands("generator-2", args)] == ["train", "measure"]


def test_finished_rows_are_not_run_again_and_the_table_is_written(tmp_path, capsys):
    result = {
        "rows": [
            {
                "name": "dev",
                "ap_r40_moderate": {
                    "Car": {"3d": 61.25, "bev": 80.0},
                    "Pedestrian": {"3d": None, "bev": None},
                },
            },
        ]
    }
    done = tmp_path / "out" / "generator-2" / "eval" / "sim_to_real.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps(result))
    assert (
        ablation.main(
            ["--rows", "generator-2", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
        )
        == 0
    )
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "| generator-2 | dev | 61.2 (80.0) | – | – |" in table
    assert json.loads((tmp_path / "out" / "ablation.json").read_text())["generator-2"] == result
    assert "done before" in capsys.readouterr().out


def test_dry_run_prints_and_runs_nothing(tmp_path, capsys):
    assert (
        ablation.main(
            [
                "--rows",
                "no-crowds",
                "--dry-run",
                "--data-dir",
                str(tmp_path / "d"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "--without crowds" in out and "quickstart.py" in out and "sim_to_real.py" in out
    assert not (tmp_path / "d").exists()


def test_make_synthetic_without_turns_the_named_changes_off(tmp_path):
    out = tmp_path / "g1"
    cmd = [
        sys.executable,
        str(REPO / "tools" / "make_synthetic.py"),
        "--out",
        str(out),
        "--frames",
        "1",
        "--quiet",
    ]
    subprocess.run([*cmd, "--without", "kitti-intensity", "--without", "crowds"], check=True)
    config = SyntheticConfig.from_dict(json.loads((out / "synthetic.json").read_text())["config"])
    assert config.intensity_model == "lambert" and not config.crowds
    assert config.vehicle_shape == "rounded" and config.street_clutter and not config.parking_layouts
    subprocess.run([*cmd, "--parking-bays", "--overwrite"], check=True)
    assert SyntheticConfig.from_dict(
        json.loads((out / "synthetic.json").read_text())["config"]
    ).parking_layouts
    bad = subprocess.run([*cmd, "--without", "sunshine"], capture_output=True, text=True)
    assert bad.returncode == 2 and "sunshine" in bad.stderr
