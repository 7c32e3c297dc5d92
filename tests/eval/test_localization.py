"""Localisation diagnostics on a tiny synthetic split: known errors are measured, oracles undo them."""

from __future__ import annotations

import numpy as np
import pytest

from perception.data.kitti import load_frame, objects_from_lidar_boxes, read_split, write_label
from perception.data.synthetic import SyntheticConfig, write_dataset
from perception.eval.kitti import evaluate_folders
from perception.eval.localization import localization_errors, oracle_predictions


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, frames=6, seed=2, val_fraction=0.5, config=SyntheticConfig(azimuth_step_deg=1.0))
    return root, read_split(root, "val")


def write_shifted(root, frame_ids, folder, shift) -> None:
    """The labels as detections (distinct scores: the devkit ranks by them), every box moved by ``shift`` (7,) in the lidar frame."""
    for frame_id in frame_ids:
        frame = load_frame(root, frame_id)
        boxes = frame.boxes_lidar.astype(np.float64) + np.asarray(shift)
        objects = objects_from_lidar_boxes(
            boxes,
            frame.names,
            frame.calib,
            scores=np.linspace(0.99, 0.5, len(boxes)).astype(np.float32),
            image_shape=frame.image_shape,
        )
        write_label(folder / f"{frame_id}.txt", objects, fsync=False)


def test_a_known_shift_is_measured_and_the_oracle_undoes_it(split, tmp_path):
    root, frame_ids = split
    shift = [0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0]  # 40 cm too high: BEV perfect, 3D IoU < 0.7 for cars
    write_shifted(root, frame_ids, tmp_path / "pred", shift)
    stats = localization_errors(root, tmp_path / "pred", frame_ids, "Car")
    assert stats["matched"] == stats["ground_truth"] > 0
    assert stats["bev_iou_0.7"] == 1.0 and stats["3d_iou_0.7"] == 0.0
    assert stats["mean"]["z"] == pytest.approx(0.4, abs=0.01) and stats["mae"]["x"] < 0.01
    labels = root / "training" / "label_2"

    def ap(folder):
        return evaluate_folders(labels, folder, frame_ids, classes=["Car"])["Car_3d/moderate_R40"]

    write_shifted(root, frame_ids, tmp_path / "perfect", [0.0] * 7)
    # (with a dozen cars the devkit's R40 AP of perfect detections is well under 100: its quirk)
    assert ap(tmp_path / "pred") == 0.0 < ap(tmp_path / "perfect")
    oracle = oracle_predictions(root, tmp_path / "pred", tmp_path / "oracle", frame_ids, ["z"])
    assert ap(oracle) == ap(tmp_path / "perfect")
    with pytest.raises(ValueError, match="unknown box fields"):
        oracle_predictions(root, tmp_path / "pred", tmp_path / "o2", frame_ids, ["depth"])
