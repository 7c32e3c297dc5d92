"""The W&B callback in an offline run of a tiny detector, and its payloads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.viz.scene import GT_COLOUR, PRED_COLOUR, Scene
from perception.viz.wandb import (
    WandbDetectionLogger,
    object3d_payload,
    wandb_configured,
    wandb_corners,
    wandb_logger,
)

RANGE = [0.0, -25.6, -3.0, 51.2, 25.6, 1.0]
CLASSES = ["Car", "Pedestrian", "Cyclist"]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """W&B offline, every file it writes under tmp_path, no credentials."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        (tmp_path / name.lower()).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path / "wandb_dir"


def test_corners_follow_wandb_box3d_order():
    wandb = pytest.importorskip("wandb")
    box = np.array([1.0, 2.0, 3.0, 4.0, 2.0, 1.5, 0.7])
    reference = wandb.box3d(
        center=box[:3], size=box[3:6], orientation=[math.cos(0.35), 0.0, 0.0, math.sin(0.35)], color=(1, 0, 0)
    )
    np.testing.assert_allclose(wandb_corners(box[None])[0], np.array(reference["corners"]), atol=1e-9)


def test_object3d_payload():
    scene = Scene(
        points=np.random.default_rng(0).normal(size=(500, 4)),
        gt_boxes=[[5.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0]],
        gt_names=["Car"],
        pred_boxes=[[5.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.1]],
        pred_names=["Car"],
        pred_scores=[0.75],
    )
    payload = object3d_payload(scene, max_points=100)
    assert payload["type"] == "lidar/beta" and payload["points"].shape == (100, 6)
    assert payload["points"][:, 3:].min() >= 0 and payload["points"][:, 3:].max() <= 255
    gt, pred = payload["boxes"]
    assert gt["label"] == "Car" and gt["color"] == list(GT_COLOUR) and "score" not in gt
    assert pred["label"] == "Car 0.75" and pred["color"] == list(PRED_COLOUR) and pred["score"] == 0.75
    assert np.asarray(gt["corners"]).shape == (8, 3)
    np.testing.assert_allclose(payload["vectors"][0]["end"], [7.0, 0.0, -1.0])


def test_logger_choice_and_inactive_without_wandb_logger(tmp_path, monkeypatch, offline_wandb):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    assert not wandb_configured()
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_logger(save_dir=str(tmp_path))._offline  # no key, no netrc entry: offline
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password " + "0" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_configured() and not wandb_logger(save_dir=str(tmp_path))._offline

    callback = WandbDetectionLogger(every_n_val_steps=1)
    trainer = L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", devices=1, enable_progress_bar=False)
    assert callback.wandb_logger_of(trainer) is None
    # With no W&B logger nothing is touched: a module of None would fail if it were.
    callback.on_validation_batch_end(trainer, None, None, None, 0)
    callback.on_validation_end(trainer, None)


def tiny_task():
    from perception.models import BEVBackbone, CenterHead, Detector, PointNetEncoder
    from perception.tasks.detection import DetectionTask

    voxel = [0.8, 0.8, 4.0]
    backbone = BEVBackbone(
        16, channels=(16,), blocks=(1,), strides=(1,), upsample_strides=(1,), upsample_channels=(16,)
    )
    head = CenterHead(16, CLASSES, RANGE, voxel, out_stride=1, shared_channels=16, head_channels=16)
    model = Detector(PointNetEncoder(4, voxel, RANGE, channels=(16,)), None, backbone, head)
    from perception.eval.detection import KittiEvaluator

    return DetectionTask(model, CLASSES, evaluators=[KittiEvaluator()], lr=1e-3)


def test_callback_logs_scenes_images_and_metrics_offline(tmp_path, offline_wandb):
    import lightning as L
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from perception.data.datamodules import DetectionDataModule
    from perception.data.synthetic import SyntheticConfig, write_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path / "synthetic"
        write_dataset(root, frames=4, seed=5, val_fraction=0.5, config=SyntheticConfig(azimuth_step_deg=1.0))
        data = DetectionDataModule(str(root), CLASSES, RANGE, batch_size=1, num_workers=0)
        logger = WandbLogger(project="perception-test", save_dir=str(offline_wandb), offline=True)
        callback = WandbDetectionLogger(
            every_n_val_steps=1, max_points=2000, score_threshold=0.0, max_scenes=1
        )
        trainer = L.Trainer(
            max_steps=2, limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0,
            logger=logger, callbacks=[callback], accelerator="cpu", devices=1, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        )  # fmt: skip
        task = tiny_task()
        trainer.fit(task, datamodule=data)
        trainer.validate(task, datamodule=data, verbose=False)
        run_dir = Path(logger.experiment.dir)  # RUN/files
        wandb.finish()
    finally:
        torch.set_num_threads(threads)

    assert "offline-run-" in str(run_dir)
    scenes = sorted((run_dir / "media" / "object3D").rglob("*.pts.json"))  # keys val/... make folders
    assert len(scenes) == 2  # one scene (max_scenes) in each of the two validations
    content = json.loads(scenes[0].read_text())
    assert content["type"] == "lidar/beta"
    assert 0 < len(content["points"]) <= 2000 and len(content["points"][0]) == 6
    assert any(box["color"] == list(GT_COLOUR) for box in content["boxes"])  # the frame's labels
    assert all(len(box["corners"]) == 8 for box in content["boxes"])
    images = [p.name for p in (run_dir / "media" / "images").rglob("*.png")]
    assert len([n for n in images if n.startswith("bev_")]) == 2  # bird's-eye images
    assert any(n.startswith("pr_curves_3d_") for n in images), images  # the KITTI PR curves
    tables = list((run_dir / "media" / "table").rglob("*.table.json"))
    assert tables, "the KITTI metrics table was not logged"
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["class", "metric", "difficulty", "sampling", "AP"]
    assert {row[0] for row in table["data"]} <= set(CLASSES) and len(table["data"]) == 72
