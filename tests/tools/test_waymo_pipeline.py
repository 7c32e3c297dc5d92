"""Waymo end to end on synthetic records: convert, train ``pvt_waymo.yaml`` a few steps with the Waymo
metric in validation, then ``tools/eval.py`` writes a submission file and scores it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.data.waymo import write_records
from perception.eval.waymo import read_objects
from tests.support.waymo_synthetic import make_synthetic_frame

REPO = Path(__file__).resolve().parents[2]
BOXES = np.array(
    [
        [12.0, 3.0, 0.9, 4.6, 2.0, 1.7, 0.3],
        [-6.0, -4.0, 0.9, 0.8, 0.7, 1.8, -2.5],
        [20.0, 10.0, 0.8, 1.8, 0.6, 1.7, 1.2],
    ]
)


def _records(folder: Path, name: str, seeds: range) -> None:
    frames = []
    for i in seeds:
        boxes = BOXES.copy()
        boxes[:, 1] += 6.0 * (i % 3)
        frames.append(
            make_synthetic_frame(
                seed=i,
                fill=0.05,
                context_name=f"{name}_0000000000000000001_000_000_000_000",
                timestamp_micros=1_550_000_000_000_000 + 100_000 * i,
                boxes=boxes,
                types=[1, 2, 4],
                num_lidar_points=[200, 30, 40],
            ).proto
        )
    write_records(folder / f"{name}.tfrecord", frames, fsync=False)


@pytest.mark.slow
def test_convert_train_and_evaluate_pvt_waymo(tmp_path):
    raw, data, out = tmp_path / "raw", tmp_path / "converted", tmp_path / "run"
    _records(raw / "training", "train", range(3))
    _records(raw / "validation", "val", range(3, 5))
    for split, folder in (("train", "training"), ("val", "validation")):
        subprocess.run(
            [sys.executable, str(REPO / "tools/convert_waymo.py"), "--src", str(raw / folder), "--out", str(data),
             "--split", split, "--workers", "1", "--quiet"],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    train = [sys.executable, str(REPO / "tools/train.py"), "--config", "pvt_waymo.yaml",
             "--data.root", str(data), "--data.database", str(data / "gt_database"), "--data.num_workers", "0",
             "--data.batch_size", "1", "--data.pin_memory", "false", "--trainer.max_epochs", "1",
             "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
             "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
             "--trainer.logger.init_args.save_dir", str(out), "--trainer.default_root_dir", str(out)]  # fmt: skip
    result = subprocess.run(train, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    version = out / "lightning_logs" / "version_0"
    if not version.is_dir():
        version = next(out.rglob("version_0"))
    header = (version / "metrics.csv").read_text().splitlines()[0]
    assert "val/VEHICLE_LEVEL_2/mAPH" in header and "val/PEDESTRIAN_LEVEL_1/mAP" in header
    ckpt = version / "checkpoints" / "last.ckpt"
    evaluation = subprocess.run(
        [sys.executable, str(REPO / "tools/eval.py"), "--ckpt", str(ckpt), "--data-root", str(data),
         "--out", str(tmp_path / "eval"), "--num-workers", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for name in ("VEHICLE", "PEDESTRIAN", "CYCLIST"):
        for level in (1, 2):
            value = metrics[f"{name}_LEVEL_{level}"]
            assert set(value) == {"mAP", "mAPH"} and 0.0 <= value["mAPH"] <= value["mAP"] <= 1.0
    truth = read_objects(tmp_path / "eval" / "ground_truth.bin")
    assert len(truth) == 2 and all(len(objects) == 3 for objects in truth.values())
    read_objects(tmp_path / "eval" / "predictions.bin")  # a valid submission file (maybe empty)
