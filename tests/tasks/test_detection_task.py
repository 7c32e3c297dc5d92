"""DetectionTask: its steps, the evaluator plug-ins, the result writer, and validation AP == the files' AP.

The steps are tested on a real (tiny) detector; the AP equality on a scripted "oracle" detector whose
predictions are the ground truth jittered, with false positives, so the AP is far from 0 and 100 and
every rounding of the result files matters.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from perception.data.datamodules import DetectionDataModule
from perception.data.kitti import kitti_difficulty, read_label, read_split
from perception.data.synthetic import SyntheticConfig, write_dataset
from perception.eval.detection import KittiEvaluator, WaymoEvaluator
from perception.eval.kitti import evaluate_folders
from perception.models import BEVBackbone, CenterHead, Detector, PointNetEncoder
from perception.structures import Batch, Detections, WaymoRecord
from perception.tasks.detection import DetectionTask
from perception.tasks.writers import KittiResultWriter

CLASSES = ["Car", "Pedestrian", "Cyclist"]
RANGE = [0.0, -25.6, -3.0, 51.2, 25.6, 1.0]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Six synthetic KITTI-layout frames (two of them val) at a coarse azimuth step (fast)."""
    out = tmp_path_factory.mktemp("task") / "synthetic"
    write_dataset(out, frames=6, seed=7, val_fraction=0.34, config=SyntheticConfig(azimuth_step_deg=0.5))
    return out


def datamodule(root: Path) -> DetectionDataModule:
    return DetectionDataModule(str(root), CLASSES, RANGE, batch_size=2, num_workers=0)


def tiny_detector(classes=CLASSES) -> Detector:
    voxel = [0.8, 0.8, 4.0]
    backbone = BEVBackbone(
        16, channels=(16,), blocks=(1,), strides=(1,), upsample_strides=(1,), upsample_channels=(16,)
    )
    head = CenterHead(16, classes, RANGE, voxel, out_stride=1, shared_channels=16, head_channels=16)
    return Detector(PointNetEncoder(4, voxel, RANGE, channels=(16,)), None, backbone, head)


def first_batch(root: Path, split: str = "val") -> Batch:
    dm = datamodule(root)
    dm.setup("fit")
    loader = dm.val_dataloader() if split == "val" else dm.train_dataloader()
    return next(iter(loader))


# ------------------------------------------------------------------------------------------- steps


def test_training_step_returns_the_total_loss_with_gradients(root):
    torch.manual_seed(0)
    task = DetectionTask(tiny_detector(), CLASSES)
    batch = first_batch(root, "train")
    loss = task.training_step(batch, 0)
    assert loss.ndim == 0 and loss.requires_grad and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in task.model.head.parameters() if p.requires_grad)


def test_validation_and_test_steps_return_detections_and_feed_the_evaluators(root):
    torch.manual_seed(0)
    evaluator = KittiEvaluator()
    task = DetectionTask(tiny_detector(), CLASSES, evaluators=[evaluator]).eval()
    batch = first_batch(root)
    with torch.no_grad():
        for step in (task.validation_step, task.test_step):
            out = step(batch, 0)
            assert len(out) == batch.batch_size and all(isinstance(d, Detections) for d in out)
            assert all(len(d) == 0 or int(d.labels.max()) < len(CLASSES) for d in out)
    assert len(evaluator.metric.gt_counts) == 2 * batch.batch_size  # both steps updated it
    results = evaluator.compute()
    assert "Car_3d/moderate_R40" in results and evaluator.scored_classes == tuple(CLASSES)
    with torch.no_grad():
        predicted = task.predict_step(batch, 0)
    assert [len(d) for d in predicted] == [len(d) for d in out]


def test_the_task_refuses_class_names_the_head_does_not_have():
    with pytest.raises(ValueError, match=r"head\.init_args\.class_names"):
        DetectionTask(tiny_detector(["Car", "Pedestrian"]), CLASSES)


def test_evaluators_name_what_they_score_and_refuse_the_wrong_records(root):
    with pytest.raises(ValueError, match="none of the task's classes"):
        DetectionTask(tiny_detector(), CLASSES, evaluators=[WaymoEvaluator()])
    with pytest.raises(ValueError, match="not the task's"):
        KittiEvaluator(classes=["Van"]).bind(CLASSES)
    evaluator = KittiEvaluator()
    evaluator.bind(CLASSES)
    batch = first_batch(root)
    waymo = WaymoRecord(context_name="seg", timestamp_micros=1)
    wrong = Batch(**{**batch.__dict__, "records": [waymo] * batch.batch_size})
    empty = Detections(torch.zeros(0, 7), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="carries WaymoRecord"):
        evaluator.update([empty] * batch.batch_size, wrong)


# ------------------------------------------------------------------------ the AP of the written files


class OracleDetector(nn.Module):
    """Predicts the batch's ground truth jittered (z, size, heading, centre), plus false positives.

    One parameter, so the task can build an optimiser; ``loss`` depends on it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.head = nn.Module()
        self.head.class_names = list(CLASSES)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.scale * batch.points[:, 0].mean()

    def loss(self, output: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": (output - 1.0) ** 2}

    def predict(self, output: torch.Tensor, batch: Batch) -> list[Detections]:
        detections = []
        for i, (boxes, labels) in enumerate(zip(batch.boxes, batch.labels, strict=True)):
            g = torch.Generator().manual_seed(1000 + i + len(boxes))
            noise = torch.randn(len(boxes), 7, generator=g) * torch.tensor(
                [0.05, 0.05, 0.03, 0.05, 0.03, 0.03, 0.02]
            )
            jittered = boxes + noise
            false = torch.tensor(
                [[20.0, 3.0, -1.0, 4.0, 1.8, 1.6, 0.3], [35.0, -8.0, -1.0, 0.8, 0.7, 1.7, 1.0]]
            )
            all_boxes = torch.cat([jittered, false])
            all_labels = torch.cat([labels, torch.tensor([0, 1])])
            scores = torch.rand(len(all_boxes), generator=g) * 0.9 + 0.05
            order = torch.argsort(scores, descending=True)
            detections.append(Detections(all_boxes[order], scores[order], all_labels[order]))
        return detections


def test_validation_ap_equals_the_ap_of_the_written_result_files(root, tmp_path):
    task = DetectionTask(OracleDetector(), CLASSES, evaluators=[KittiEvaluator()])
    writer = KittiResultWriter(str(tmp_path / "predictions"), on_validation=True)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0, logger=False, callbacks=[writer],
        accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(task, datamodule=datamodule(root))
    val = read_split(root, "val")
    assert sorted(p.stem for p in (tmp_path / "predictions").glob("*.txt")) == sorted(val)
    files = evaluate_folders(root / "training" / "label_2", tmp_path / "predictions", val, classes=CLASSES)
    # A real number, not a degenerate one. The devkit's R40 sampling caps AP at (n - 1) / 40 with n
    # ground-truth objects under 41 (it samples precision only at as many recall steps as there are
    # true positives), so the jittered oracle reaches most of that cap, not 100.
    n = sum(
        int(((o.names == "Car") & (kitti_difficulty(o.bbox, o.occluded, o.truncated) <= 1)).sum())
        for o in (read_label(root / "training" / "label_2" / f"{i}.txt") for i in val)
    )
    cap = 100.0 * min(n - 1, 40) / 40
    assert 0.5 * cap < task.last_metrics["Car_3d/moderate_R40"] <= cap + 1e-9
    assert set(files) == set(task.last_metrics)
    for key, value in files.items():
        ours = task.last_metrics[key]
        assert (math.isnan(value) and math.isnan(ours)) or value == ours, key
    assert set(task.last_curves) and all(len(c) == 41 for c in task.last_curves.values())
    logged = trainer.callback_metrics
    assert float(logged["val/Car_3d/moderate_R40"]) == pytest.approx(task.last_metrics["Car_3d/moderate_R40"])


def test_the_writer_writes_predictions_and_clears_stale_files(root, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "999999.txt").write_text("stale\n")
    task = DetectionTask(OracleDetector(), CLASSES)
    trainer = L.Trainer(logger=False, callbacks=[KittiResultWriter(str(folder))], accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.predict(task, datamodule=datamodule(root), return_predictions=False)
    assert sorted(p.stem for p in folder.glob("*.txt")) == sorted(read_split(root, "val"))
    rows = [line.split() for p in folder.glob("*.txt") for line in p.read_text().splitlines()]
    assert rows and {len(r) for r in rows} == {16} and {r[0] for r in rows} <= set(CLASSES)
    assert np.isfinite([float(v) for r in rows for v in r[1:]]).all()
