"""End to end: the README's main-job command on a small dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perception.data.kitti import load_frame, read_split

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_generates_summarises_and_draws(tmp_path):
    data, out = tmp_path / "synthetic", tmp_path / "pictures"
    cmd = [sys.executable, str(REPO / "tools/quickstart.py"), "--data", str(data), "--frames", "10",
           "--workers", "1", "--out", str(out)]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert "generated 10 frames" in first.stdout
    assert "labelled objects by KITTI difficulty" in first.stdout and "Car" in first.stdout
    val = read_split(data, "val")
    assert len(val) + len(read_split(data, "train")) == 10
    picture = out / f"bev_{val[0]}.png"
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"
    assert load_frame(data, val[0]).num_boxes > 0
    # A second run finds the dataset and does not regenerate it.
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert "found" in second.stdout and "generated" not in second.stdout
