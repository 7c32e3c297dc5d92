"""ClassificationTask and PartSegmentationTask: losses (the regulariser, the category mask), predictions,
schedules, a short fit that learns, the writers' files scored by the metric's CLI to the logged numbers.

Stand-in models of a few hundred weights and tiny in-memory shapes (lines along an axis; parts by
height or side) keep every test well under a second or two; one test runs the real PointNet.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from perception.eval.shapes import (
    ClassificationEvaluator,
    PartSegmentationEvaluator,
    classification_from_files,
    part_segmentation_from_files,
)
from perception.eval.shapes import (
    main as shapes_cli,
)
from perception.models.pointnet import orthogonality_loss
from perception.structures.shapes import SHAPENET_PART, PartTaxonomy, PointSet, collate_point_sets
from perception.tasks.classification import (
    ClassificationTask,
    ClassPrediction,
    PartPrediction,
    PartSegmentationTask,
    masked_part_cross_entropy,
)
from perception.tasks.shape_writers import ClassificationCsvWriter, PartLabelWriter
from tests.support.shapes import run_parts_cli

CLASSES = ["along_x", "along_y", "along_z"]
TINY = PartTaxonomy(name="tiny", categories=("mug", "cup"), parts=((0, 1, 2), (3, 4)))


# --------------------------------------------------------------------------------------------------
# stand-ins


class TinyClassifier(nn.Module):
    """Max-pooled per-point MLP; ``forward_with_aux`` also gives a (B, 4, 4) "feature transform"."""

    def __init__(self, num_classes: int = 3, aux: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, num_classes)
        self.transform = nn.Parameter(torch.eye(4) + 0.1 * torch.randn(4, 4))
        if not aux:
            self.forward_with_aux = None  # a model without the auxiliary output

    def forward_with_aux(self, points):
        logits = self.head(self.mlp(points).amax(1))
        return logits, SimpleNamespace(feature_transform=self.transform.expand(len(points), 4, 4))

    def forward(self, points):
        return self.head(self.mlp(points).amax(1))


class TinySegmenter(nn.Module):
    """Per-point MLP over x, y, z and a category embedding → logits over every part."""

    def __init__(self, num_parts: int = 5, num_categories: int = 2) -> None:
        super().__init__()
        self.num_parts, self.num_categories = num_parts, num_categories
        self.embed = nn.Embedding(num_categories, 8)
        self.mlp = nn.Sequential(nn.Linear(11, 32), nn.ReLU(), nn.Linear(32, num_parts))

    def forward(self, points, category):
        e = self.embed(category)[:, None].expand(-1, points.shape[1], -1)
        return self.mlp(torch.cat([points, e], -1))


def line_shapes(n: int, points: int = 32, seed: int = 0) -> list[PointSet]:
    """Shape i: noisy points along axis ``i % 3`` (its class)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        xyz = rng.normal(0, 0.05, (points, 3))
        xyz[:, i % 3] = rng.uniform(-1, 1, points)
        out.append(PointSet(shape_id=f"lines/{i}", points=xyz.astype(np.float32), label=i % 3))
    return out


def part_shapes(n: int, points: int = 48, seed: int = 0) -> list[PointSet]:
    """Mugs (category 0): parts 0, 1, 2 by height; cups (category 1): parts 3, 4 by the sign of x."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        xyz = rng.uniform(-1, 1, (points, 3)).astype(np.float32)
        category = i % 2
        if category == 0:
            parts = np.digitize(xyz[:, 2], [-1 / 3, 1 / 3])
        else:
            parts = 3 + (xyz[:, 0] > 0)
        out.append(
            PointSet(shape_id=f"parts/{i}", points=xyz, label=category, part_labels=parts.astype(np.int64))
        )
    return out


def loader(shapes: list[PointSet], batch_size: int = 8) -> DataLoader:
    return DataLoader(shapes, batch_size=batch_size, collate_fn=collate_point_sets)


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**(defaults | kwargs))


def classification_task(**kwargs) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(TinyClassifier(aux=kwargs.pop("aux", True)), CLASSES, **kwargs)


def part_task(**kwargs) -> PartSegmentationTask:
    torch.manual_seed(0)
    return PartSegmentationTask(TinySegmenter(), TINY, **kwargs)


# --------------------------------------------------------------------------------------------------
# classification


def test_loss_is_cross_entropy_plus_the_weighted_orthogonality_of_the_feature_transform():
    batch = collate_point_sets(line_shapes(4))
    task = classification_task(feature_transform_weight=0.5)
    logits, transform = task._with_aux(batch.points)
    losses = task.loss(logits, transform, batch)
    ce = F.cross_entropy(logits, batch.labels)
    orth = orthogonality_loss(transform)
    assert orth.item() > 0
    torch.testing.assert_close(losses["ce"], ce)
    torch.testing.assert_close(losses["orthogonality"], orth)
    torch.testing.assert_close(losses["loss"], ce + 0.5 * orth)
    losses["loss"].backward()
    assert task.model.transform.grad is not None  # the regulariser reaches the transform
    # without the auxiliary output, or with weight 0: the cross-entropy alone
    for task in (classification_task(aux=False), classification_task(feature_transform_weight=0.0)):
        logits, transform = task._with_aux(batch.points)
        losses = task.loss(logits, transform, batch)
        assert "orthogonality" not in losses and torch.equal(losses["loss"], losses["ce"])


def test_predictions_are_one_per_shape_with_probabilities():
    task = classification_task().eval()
    batch = collate_point_sets(line_shapes(5))
    with torch.no_grad():
        predictions = task.predict_step(batch, 0)
        logits = task(batch.points)
    assert [p.shape_id for p in predictions] == batch.shape_ids
    assert all(isinstance(p, ClassPrediction) for p in predictions)
    assert [p.label for p in predictions] == logits.argmax(1).tolist()
    for p in predictions:
        assert p.probabilities.shape == (3,) and float(p.probabilities.sum()) == pytest.approx(1.0)
        assert p.score == pytest.approx(float(p.probabilities.max()))


def test_class_names_are_resolved_checked_against_the_model_and_kept_in_the_hyperparameters():
    task = ClassificationTask(TinyClassifier(40), "modelnet40")
    assert task.class_names[:2] == ["airplane", "bathtub"] and task.hparams["class_names"] == task.class_names
    with pytest.raises(ValueError, match="predicts 3 classes but class_names names 40"):
        ClassificationTask(TinyClassifier(3), "modelnet40")
    assert ClassificationTask(TinyClassifier(3)).class_names == ["0", "1", "2"]  # from num_classes
    evaluator = ClassificationEvaluator()
    ClassificationTask(TinyClassifier(3), CLASSES, evaluators=[evaluator])
    assert evaluator.class_names == tuple(CLASSES)  # the task binds its evaluators
    with pytest.raises(ValueError, match="scheduler must be"):
        ClassificationTask(TinyClassifier(3), CLASSES, scheduler="cosine")


def test_step_schedule_decays_every_step_epochs_down_to_min_lr():
    task = classification_task(scheduler="step", lr=1e-3, step_epochs=2, step_gamma=0.5, min_lr=2e-4)
    config = task.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch"
    rates = []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 2e-4])
    constant = classification_task(scheduler="constant", weight_decay=0.0).configure_optimizers()
    assert isinstance(constant, torch.optim.AdamW) and constant.param_groups[0]["weight_decay"] == 0.0


def test_a_short_fit_learns_and_validation_logs_the_evaluator(tmp_path):
    task = classification_task(lr=0.02, scheduler="constant")
    fit = trainer(max_epochs=6, log_every_n_steps=1)
    fit.fit(task, loader(line_shapes(48)), loader(line_shapes(12, seed=1)))
    metrics = task.last_metrics
    assert metrics["overall_accuracy"] >= 90.0 and metrics["mean_class_accuracy"] >= 90.0
    logged = fit.callback_metrics
    for key in ("val/loss", "val/overall_accuracy", "val/mean_class_accuracy", "val/accuracy/along_z"):
        assert key in logged
    assert float(logged["val/overall_accuracy"]) == pytest.approx(metrics["overall_accuracy"])
    assert "train/orthogonality" in logged and "train/accuracy" in logged


def test_validation_and_prediction_files_score_to_the_logged_numbers(tmp_path):
    val = line_shapes(10, seed=2)
    truth = tmp_path / "truth.csv"
    writer = ClassificationCsvWriter(
        str(tmp_path / "pred.csv"), ground_truth_path=str(truth), on_validation=True,
        validation_path=str(tmp_path / "val.csv"),
    )  # fmt: skip
    task = classification_task()
    run = trainer(callbacks=[writer])
    run.validate(task, loader(val, 4), verbose=False)
    header, *rows = (tmp_path / "val.csv").read_text().splitlines()
    assert header == "shape_id,predicted_class,score" and len(rows) == 10
    assert rows[0].split(",")[1] in CLASSES and 0 < float(rows[0].split(",")[2]) <= 1
    assert truth.read_text().splitlines()[1] == "lines/0,along_x"
    scored = classification_from_files(truth, tmp_path / "val.csv", CLASSES)
    assert scored == pytest.approx(task.last_metrics, nan_ok=True)
    run.predict(task, loader(val, 4), return_predictions=False)
    assert (tmp_path / "pred.csv").read_text() == (tmp_path / "val.csv").read_text()
    assert shapes_cli(["classification", str(truth), str(tmp_path / "pred.csv")]) == 0
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_the_real_pointnet_classifier_trains_a_step_with_its_regulariser():
    from perception.models import PointNetClassifier

    torch.manual_seed(0)
    model = PointNetClassifier(3, local_channels=(8, 8), global_channels=(8, 16), tnet_channels=(8, 16),
                               tnet_fc_channels=(16,), head_channels=(16,))  # fmt: skip
    task = ClassificationTask(model, CLASSES)
    batch = collate_point_sets(line_shapes(4, points=16))
    losses = task.loss(*task._with_aux(batch.points), batch)
    assert {"ce", "orthogonality", "loss"} <= set(losses) and torch.isfinite(losses["loss"])
    losses["loss"].backward()


# --------------------------------------------------------------------------------------------------
# part segmentation


def test_masked_cross_entropy_ignores_other_categories_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5)
    target = torch.tensor([[0, 1, 2, 0, 1, 2], [3, 4, 3, 4, 3, 4]])
    allowed = torch.from_numpy(TINY.part_mask())[torch.tensor([0, 1])]
    loss = masked_part_cross_entropy(logits, target, allowed)
    expected = (
        F.cross_entropy(logits[0, :, :3], target[0], reduction="sum")
        + F.cross_entropy(logits[1, :, 3:], target[1] - 3, reduction="sum")
    ) / 12
    torch.testing.assert_close(loss, expected)
    shifted = logits.clone()
    shifted[0, :, 3:] += 100.0  # another category's parts: no effect
    shifted[1, :, :3] -= 100.0
    torch.testing.assert_close(masked_part_cross_entropy(shifted, target, allowed), expected)
    smooth = masked_part_cross_entropy(logits, target, allowed, label_smoothing=0.2)
    expected_smooth = (
        F.cross_entropy(logits[0, :, :3], target[0], reduction="sum", label_smoothing=0.2)
        + F.cross_entropy(logits[1, :, 3:], target[1] - 3, reduction="sum", label_smoothing=0.2)
    ) / 12
    torch.testing.assert_close(smooth, expected_smooth)
    logits.requires_grad_(True)
    masked_part_cross_entropy(logits, target, allowed, 0.1).backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad[0, :, 3:].abs().sum()) == 0.0


def test_part_predictions_stay_in_the_shapes_category():
    task = part_task().eval()
    batch = collate_point_sets(part_shapes(4))
    logits = torch.zeros(4, 48, 5)
    logits[..., 4] = 50.0  # a cup part wins everywhere unmasked
    parts = task.predict_parts(logits, batch.labels)
    assert set(parts[0].tolist()) <= {0, 1, 2} and set(parts[1].tolist()) == {4}
    with torch.no_grad():
        predictions = task.predict_step(batch, 0)
    assert all(isinstance(p, PartPrediction) and p.parts.shape == (48,) for p in predictions)
    for p in predictions:
        assert set(p.parts.tolist()) <= set(TINY.parts[p.category])


def test_taxonomy_by_name_object_or_mapping_and_checked_against_the_model():
    assert PartSegmentationTask(TinySegmenter(50, 16), "shapenet_part").taxonomy is SHAPENET_PART
    task = part_task()
    assert task.hparams["taxonomy"]["name"] == "tiny"  # plain lists: a checkpoint loads weights_only
    assert PartSegmentationTask(TinySegmenter(), task.hparams["taxonomy"]).taxonomy == TINY
    assert task.class_names == ["mug", "cup"]
    with pytest.raises(ValueError, match="num_parts=5 but the shapenet_part taxonomy has 50"):
        PartSegmentationTask(TinySegmenter(), "shapenet_part")
    with pytest.raises(ValueError, match="unknown part taxonomy"):
        PartSegmentationTask(TinySegmenter(), "nope")


def test_part_labels_of_another_category_are_an_error_naming_the_shape():
    task = part_task()
    shapes = part_shapes(2)
    shapes[1].part_labels[3] = 0  # a cup point labelled as a mug part
    batch = collate_point_sets(shapes)
    with pytest.raises(ValueError, match="parts/1 of category cup has part labels outside its parts"):
        task.loss(task(batch.points, batch.labels), None, batch)


def test_a_short_part_fit_learns_and_the_files_score_to_the_logged_numbers(tmp_path):
    task = part_task(lr=0.02, scheduler="constant")
    writer = PartLabelWriter(
        str(tmp_path / "pred"), ground_truth_dir=str(tmp_path / "gt"), on_validation=True
    )
    fit = trainer(max_epochs=8, callbacks=[writer], log_every_n_steps=1)
    fit.fit(task, loader(part_shapes(32)), loader(part_shapes(8, seed=1), 4))
    metrics = task.last_metrics
    assert metrics["instance_mIoU"] >= 70.0 and metrics["accuracy"] >= 80.0
    assert float(fit.callback_metrics["val/instance_mIoU"]) == pytest.approx(metrics["instance_mIoU"])
    files = sorted(p.relative_to(tmp_path / "pred").as_posix() for p in (tmp_path / "pred").rglob("*.txt"))
    assert files == sorted(f"parts/{i}.txt" for i in range(8))
    scored = part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    assert scored == pytest.approx(metrics, nan_ok=True)
    # a later prediction run clears the folder first, so it holds that run's shapes only
    stale = tmp_path / "pred" / "old.txt"
    stale.write_text("0\n")
    fit.predict(task, loader(part_shapes(8, seed=1), 4), return_predictions=False)
    assert not stale.exists() and len(list((tmp_path / "pred").rglob("*.txt"))) == 8
    saved = run_parts_cli(tmp_path / "gt", tmp_path / "pred", task.hparams["taxonomy"], tmp_path)
    assert saved["instance_mIoU"] == pytest.approx(metrics["instance_mIoU"])


def test_evaluator_plug_ins_take_the_tasks_taxonomy():
    evaluator = PartSegmentationEvaluator(per_category=False)
    task = PartSegmentationTask(TinySegmenter(), TINY, evaluators=[evaluator])
    assert evaluator.taxonomy == TINY and task.evaluators[0] is evaluator
    run = trainer()
    run.test(task, loader(part_shapes(4)), verbose=False)
    assert not math.isnan(task.last_metrics["instance_mIoU"]) and "mIoU/mug" in task.last_metrics
    logged = set(run.callback_metrics)
    assert {"test/instance_mIoU", "test/class_mIoU", "test/loss"} <= logged and "test/mIoU/mug" not in logged
