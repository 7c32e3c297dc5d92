"""tools/benchmark.py detector: the rows it prints (data and model milliseconds apart, the ratio to
PointPillars from the same run, the 50 ms budget, the precision prediction runs in) on one real KITTI
scan with the configs' initial weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.detector import BUDGET_S, bench_detector  # noqa: E402


@pytest.mark.slow
def test_detector_rows_time_data_and_model_against_pointpillars_and_the_budget() -> None:
    threads = torch.get_num_threads()
    try:
        rows = bench_detector(frames=["000000"], repeats=1, threads=1, reference=True)
    finally:
        torch.set_num_threads(threads)
    assert BUDGET_S == 0.05
    assert [r["model"] for r in rows] == ["pvt_synthetic", "pointpillars_synthetic"]
    for row in rows:
        assert row["weights"] == "initial" and row["precision"] == "bf16-mixed" and row["threads"] == 1
        assert row["data_ms"] > 0 and row["model_ms"] > 0 and row["reference_model_ms"] > 0
        assert row["frame_ms"] == pytest.approx(row["data_ms"] + row["model_ms"])
        assert row["budget_50ms"] == pytest.approx(row["frame_ms"] / 50.0)
        assert row["points in → used"].startswith("115384 → ")
    assert rows[1]["pointpillars_time_ratio"] == 1.0
    assert rows[0]["pointpillars_time_ratio"] == pytest.approx(rows[0]["frame_ms"] / rows[1]["frame_ms"])


@pytest.mark.slow
def test_the_cli_prints_the_detector_table_and_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "detector.json"
    command = [sys.executable, str(REPO / "tools" / "benchmark.py"), "detector", "--threads", "1"]
    command += ["--configs", "pointpillars_synthetic", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "budget 50 ms" in result.stdout  # the title; the cells are cut to the console width
    (row,) = json.loads(out.read_text())["detector"]
    assert {"data_ms", "model_ms", "frame_ms", "budget_50ms", "pointpillars_time_ratio"} <= set(row)
