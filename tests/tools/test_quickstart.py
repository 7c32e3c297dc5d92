"""End to end: the README's main-job command on a small dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perception.data.kitti import load_frame, read_split

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_generates_summarises_draws_and_trains(tmp_path):
    data, out, run = tmp_path / "synthetic", tmp_path / "pictures", tmp_path / "run"
    cmd = [sys.executable, str(REPO / "tools/quickstart.py"), "--data", str(data), "--frames", "10",
           "--workers", "1", "--out", str(out), "--run-dir", str(run)]  # fmt: skip
    # A tiny training: one epoch of two batches, one validation batch, loading in this process.
    tiny = ["--epochs", "1", "--", "--data.num_workers", "0", "--data.batch_size", "2",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]  # fmt: skip
    first = subprocess.run([*cmd, *tiny], capture_output=True, text=True, timeout=600, check=True)
    assert "generated 10 frames" in first.stdout
    assert "labelled objects by KITTI difficulty" in first.stdout and "Car" in first.stdout
    val = read_split(data, "val")
    assert len(val) + len(read_split(data, "train")) == 10
    picture = out / f"bev_{val[0]}.png"
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"
    assert load_frame(data, val[0]).num_boxes > 0
    # It trained pvt_synthetic.yaml and printed the KITTI table of the final validation.
    assert "training pvt_synthetic.yaml" in first.stdout
    assert "Car AP_R40:" in first.stdout and "3D AP R40 moderate" in first.stdout
    assert list(run.glob("detection/version_*/checkpoints/last.ckpt"))
    # ... and the final validation's KITTI result files, one per validation frame it scored
    assert "KITTI result files" in first.stdout
    written = sorted(p.stem for p in (run / "predictions" / "val").glob("*.txt"))
    assert written and set(written) <= set(val)
    # A second run finds the dataset and does not regenerate it; --no-train stops after the picture.
    second = subprocess.run([*cmd, "--no-train"], capture_output=True, text=True, timeout=300, check=True)
    assert "found" in second.stdout and "generated" not in second.stdout
    assert "training" not in second.stdout
