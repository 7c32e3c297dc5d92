"""The multi-run studies (order ablation, encoder comparison): resuming, reading the log, summarising."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import encoder_comparison, runs
from benchmarks.encoder_comparison import METRICS, paired_differences, run_comparison, summarise


def write_metrics(run_dir, rows):
    folder = run_dir / "task" / "version_0"
    folder.mkdir(parents=True)
    keys = sorted({k for r in rows for k in r})
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_read_last_validation_takes_the_last_row_with_the_key(tmp_path):
    write_metrics(
        tmp_path,
        [
            {"step": 1, "val/mIoU": 10.0},
            {"step": 2, "train/loss": 1.0},
            {"step": 3, "val/mIoU": 30.0, "val/IoU/car": 50.0},
        ],
    )
    assert runs.read_last_validation(tmp_path) == {"val/mIoU": 30.0, "val/IoU/car": 50.0}
    with pytest.raises(ValueError, match="val/other"):
        runs.read_last_validation(tmp_path, key="val/other")
    with pytest.raises(FileNotFoundError):
        runs.read_last_validation(tmp_path / "missing")


def test_split_overrides():
    assert runs.split_overrides(["--seeds", "1", "--", "--trainer.max_epochs", "1"]) == (
        ["--seeds", "1"],
        ["--trainer.max_epochs", "1"],
    )
    assert runs.split_overrides(["--seeds", "1"]) == (["--seeds", "1"], [])


def test_comparison_trains_what_is_missing_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, check, cwd, stdout, stderr):
        calls.append(cmd)
        run_dir = (
            tmp_path
            / "out"
            / f"{cmd[cmd.index('--config') + 1].removesuffix('.yaml')}-seed{cmd[cmd.index('--seed_everything') + 1]}"
        )
        seed = int(cmd[cmd.index("--seed_everything") + 1])
        bonus = 2.0 if "pvt" in cmd[cmd.index("--config") + 1] else 0.0
        write_metrics(
            run_dir, [{"step": 9, **{f"val/{m}/moderate_R40": 80.0 + seed + bonus for m in METRICS}}]
        )
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(runs.subprocess, "run", fake_run)
    done = tmp_path / "out" / "pvt_synthetic-seed0"
    done.mkdir(parents=True)
    (done / "result.json").write_text(
        json.dumps(
            {"config": "pvt_synthetic.yaml", "seed": 0, "AP": {m: 82.0 for m in METRICS}, "train_s": None}
        )
    )
    results = run_comparison(
        tmp_path / "out", seeds=(0, 1), overrides=["--trainer.max_epochs", "1"], log=lambda *_: None
    )
    assert len(results) == 4 and len(calls) == 3  # the finished run is not repeated
    assert all("--data.seed" in c and c[-4:-2] != ["--trainer.max_epochs", "1"] for c in calls)
    assert all("--trainer.max_epochs" in c for c in calls)
    rows = {r["config"]: r for r in summarise(results)}
    assert rows["pvt_synthetic.yaml"]["AP"]["Car_3d"] == pytest.approx(
        {"mean": 82.5, "std": 0.5**0.5, "min": 82.0, "max": 83.0}
    )
    assert rows["pointpillars_synthetic.yaml"]["runs"] == 2
    diffs = paired_differences(results, "pvt_synthetic.yaml", "pointpillars_synthetic.yaml")
    assert diffs["Car_3d"] == pytest.approx([2.0, 2.0])
    again = run_comparison(tmp_path / "out", seeds=(0, 1), log=lambda *_: None)
    assert len(calls) == 3 and [r["AP"] for r in again] == [r["AP"] for r in results]
    assert encoder_comparison.METRICS == METRICS
