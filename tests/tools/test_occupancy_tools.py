"""tools/train.py and tools/eval.py with an occupancy config: a tiny fit, its checkpoint evaluated
beside the baselines into metrics.json and .npz grids that the metric's CLI scores to the same numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from perception.cli import main as train_main
from perception.data.occupancy import SYNTHETIC_OCCUPANCY
from perception.data.synthetic.writer import write_dataset
from perception.eval.occupancy import main as occupancy_cli

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_eval_occ", REPO / "tools" / "eval.py")
eval_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_tool)

GRID = "{height: 32, width: 32, pixels_per_meter: 1.0, ego_col: 16, ego_row: 24}"
TINY = [
    "--model.init_args.model.init_args.grid", GRID, "--data.init_args.grid", GRID,
    "--model.init_args.model.init_args.num_waypoints", "2", "--data.init_args.waypoint_times", "[0.5, 1.0]",
    "--model.init_args.model.init_args.pillar_channels", "[8]",
    "--model.init_args.model.init_args.bev_channels", "[8, 16]",
    "--model.init_args.model.init_args.bev_blocks", "[1, 1]",
    "--data.init_args.max_points", "2000", "--data.init_args.num_workers", "0",
]  # fmt: skip


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", "bev_occupancy_synthetic.yaml", "--data.init_args.root", str(root), *TINY,
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2", "--trainer.accelerator", "cpu",
            "--trainer.default_root_dir", str(out), *extra]  # fmt: skip


def test_grids_that_differ_exit_2_naming_both_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    other = "{height: 32, width: 32, pixels_per_meter: 2.0, ego_col: 16, ego_row: 24}"
    args = _train_args(tmp_path / "data", tmp_path / "out", "--data.init_args.grid", other,
                       "--trainer.logger", "false")  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        train_main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "model.init_args.model.init_args.grid" in err[0] and "data.init_args.grid" in err[0]
    )


def test_eval_without_data_says_where_data_goes(tmp_path, capsys):
    argv = ["--ckpt", str(tmp_path / "x.ckpt"), "--config", "p2p_occupancy_synthetic.yaml",
            "--data-root", str(tmp_path / "nothing")]  # fmt: skip
    assert eval_tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no sequence data" in err[0] and "docs/occupancy.md" in err[0]


@pytest.mark.slow
def test_train_then_eval_scores_the_model_and_the_baselines_and_the_files_agree(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    write_dataset(
        data, frames=40, sequences=2, config=replace(SYNTHETIC_OCCUPANCY, num_beams=8), val_fraction=0.5
    )
    cmd = [
        sys.executable,
        str(REPO / "tools/train.py"),
        *_train_args(data, out, "--trainer.logger.init_args.save_dir", str(out)),
    ]
    subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True, cwd=tmp_path)
    ckpt = out / "task" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert "val/flow_grounded_auc" in (ckpt.parent.parent / "metrics.csv").read_text().splitlines()[0]

    ev = tmp_path / "eval"
    argv = ["--ckpt", str(ckpt), "--data-root", str(data), "--out", str(ev), "--trainer.accelerator", "cpu"]
    assert eval_tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| flow_grounded_auc | constant_velocity |" in printed and "| 0.5 s | 1 s |" in printed
    metrics = json.loads((ev / "metrics.json").read_text())
    assert {"observed_auc", "copy_forward/observed_auc", "constant_velocity/flow_grounded_iou"} <= set(
        metrics
    )
    for name, prefix in (("predictions", ""), ("baseline_constant_velocity", "constant_velocity/")):
        cli_json = ev / f"{name}.json"
        assert occupancy_cli([str(ev / "targets.npz"), str(ev / f"{name}.npz"), "--json", str(cli_json)]) == 0
        scored = json.loads(cli_json.read_text())
        for key in ("observed_auc", "observed_iou", "flow_epe", "flow_grounded_auc", "flow_grounded_iou"):
            assert math.isclose(scored[key], metrics[prefix + key], rel_tol=1e-5, abs_tol=1e-6), key
