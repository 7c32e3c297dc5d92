"""Shape classification and part segmentation: the LightningModules around PointNet-style models.

- :class:`ClassificationTask`: a model ``(B, N, C) points → (B, K) logits`` (e.g.
  :class:`~perception.models.pointnet.PointNetClassifier`) trained with cross-entropy; scored by
  :class:`~perception.eval.shapes.ClassificationEvaluator` (overall and mean class accuracy).
- :class:`PartSegmentationTask`: a model ``(B, N, C) points, (B,) categories → (B, N, P) part logits``
  (e.g. :class:`~perception.models.pointnet.PointNetPartSegmenter`) trained with cross-entropy over each
  shape's own category's parts (the other categories' logits masked out before the softmax); scored by
  :class:`~perception.eval.shapes.PartSegmentationEvaluator` (ShapeNet-part's instance and class mIoU).

Both add the PointNet regulariser ``feature_transform_weight · ‖I − AAᵀ‖²_F`` of the feature transform
``A`` when the model has a ``forward_with_aux`` whose second output carries a ``feature_transform``;
models without one train on the cross-entropy alone. Batches are
:class:`~perception.structures.shapes.PointSetBatch`\\ es. Every step that predicts returns one
:class:`ClassPrediction` (or :class:`PartPrediction`) per shape; files are written by the writers of
:mod:`perception.tasks.shape_writers`.

Optimiser: AdamW (Adam when ``weight_decay`` is 0) with ``scheduler``: ``one_cycle`` (the other tasks'
:func:`~perception.tasks.schedule.adamw_one_cycle`, stepped per batch), ``step`` (PointNet's staircase:
the learning rate times ``step_gamma`` every ``step_epochs`` epochs, never below ``min_lr``, stepped per
epoch) or ``constant``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from perception.eval.shapes import (
    ClassificationEvaluator,
    PartSegmentationEvaluator,
    class_list,
    part_taxonomy,
    taxonomy_spec,
)
from perception.models.pointnet import orthogonality_loss
from perception.structures.shapes import PartTaxonomy, PointSetBatch
from perception.tasks.evaluation import finish_evaluation, log_stage_loss, stage_losses
from perception.tasks.schedule import adamw_one_cycle_from_hparams

__all__ = [
    "ClassPrediction",
    "ClassificationTask",
    "PartPrediction",
    "PartSegmentationTask",
    "masked_part_cross_entropy",
]

Scheduler = Literal["one_cycle", "step", "constant"]


@dataclass
class ClassPrediction:
    """One shape's predicted class.

    Attributes:
        shape_id: the dataset's id of the shape.
        label: the predicted class index.
        probabilities: (K,) float32 softmax over the classes.
    """

    shape_id: str
    label: int
    probabilities: torch.Tensor

    @property
    def score(self) -> float:
        """The predicted class's probability."""
        return float(self.probabilities[self.label])


@dataclass
class PartPrediction:
    """One shape's predicted parts.

    Attributes:
        shape_id: the dataset's id of the shape.
        category: the shape's category index (given, not predicted).
        parts: (N,) int64 global part ids, each one of the category's own parts, in the point order.
    """

    shape_id: str
    category: int
    parts: torch.Tensor


def masked_part_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, allowed: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over each shape's own parts: the mean over all points.

    Args:
        logits: (B, N, P) part logits.
        target: (B, N) int64 global part ids, each among the shape's ``allowed`` parts.
        allowed: (B, P) bool, the parts of each shape's category; the others get probability 0.
        label_smoothing: spread over the allowed parts only.
    """
    logp = logits.float().masked_fill(~allowed[:, None, :], float("-inf")).log_softmax(-1)
    nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    if label_smoothing <= 0:
        return nll.mean()
    uniform = -logp.masked_fill(~allowed[:, None, :], 0.0).sum(-1) / allowed.sum(-1, keepdim=True)
    return ((1.0 - label_smoothing) * nll + label_smoothing * uniform).mean()


class _ShapeTask(L.LightningModule):
    """What both shape tasks share: the model's auxiliary output, the regulariser, epoch-end
    evaluation and the optimiser (see the module docstring)."""

    evaluators: nn.ModuleList

    def _with_aux(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The model's logits and its feature transform (None where it gives none)."""
        forward = getattr(self.model, "forward_with_aux", None)
        if forward is None:
            return self.model(*inputs), None
        logits, aux = forward(*inputs)
        return logits, getattr(aux, "feature_transform", None)

    def _regularised(self, loss: torch.Tensor, transform: torch.Tensor | None) -> dict[str, torch.Tensor]:
        losses = {"ce": loss}
        if transform is not None and self.hparams.feature_transform_weight > 0:
            losses["orthogonality"] = orthogonality_loss(transform.float())
            loss = loss + self.hparams.feature_transform_weight * losses["orthogonality"]
        losses["loss"] = loss
        return losses

    def _log_losses(self, stage: str, losses: dict[str, torch.Tensor], batch: PointSetBatch) -> None:
        n = len(batch)
        if stage == "train":
            self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=n)
            self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=n, logger=False)
        else:
            log_stage_loss(self, stage, losses["loss"], n)

    def _init_model(
        self,
        model: nn.Module,
        evaluators: Sequence[nn.Module] | None,
        default: Callable[[], nn.Module],
        bind_to: Any,
    ) -> None:
        """Keep the model and the evaluators (``[default()]`` where None), each bound to ``bind_to`` (the
        class names or the taxonomy)."""
        self.model = model
        self.evaluators = nn.ModuleList(evaluators if evaluators is not None else [default()])
        self.stage_losses = stage_losses()
        for evaluator in self.evaluators:
            evaluator.bind(bind_to)
        self.last_metrics: dict[str, float] = {}

    def _inputs(self, batch: PointSetBatch) -> tuple[torch.Tensor, ...]:
        """What the model takes of ``batch``."""
        raise NotImplementedError

    def _train_accuracy(self, logits: torch.Tensor, batch: PointSetBatch) -> torch.Tensor:
        raise NotImplementedError

    def _evaluate(self, logits: torch.Tensor, batch: PointSetBatch) -> list:
        """The batch's predictions, the evaluators updated with them."""
        raise NotImplementedError

    def training_step(self, batch: PointSetBatch, batch_idx: int) -> torch.Tensor:
        logits, transform = self._with_aux(*self._inputs(batch))
        losses = self.loss(logits, transform, batch)
        self._log_losses("train", losses, batch)
        self.log("train/accuracy", 100.0 * self._train_accuracy(logits, batch), batch_size=len(batch))
        return losses["loss"]

    def _evaluation_step(self, batch: PointSetBatch, stage: str) -> list:
        logits, transform = self._with_aux(*self._inputs(batch))
        self._log_losses(stage, self.loss(logits, transform, batch), batch)
        return self._evaluate(logits, batch)

    def validation_step(self, batch: PointSetBatch, batch_idx: int) -> list:
        """The batch's predictions, one per shape (writers reuse them)."""
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: PointSetBatch, batch_idx: int) -> list:
        return self._evaluation_step(batch, "test")

    def predict_step(self, batch: PointSetBatch, batch_idx: int) -> list:
        return self.predictions(self(*self._inputs(batch)), batch)

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "val")

    def on_test_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "test")

    def configure_optimizers(self):
        hp = self.hparams
        if hp.scheduler == "one_cycle":
            return adamw_one_cycle_from_hparams(self)
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "constant":
            return optimizer
        floor = hp.min_lr / hp.lr
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: max(hp.step_gamma ** (epoch // hp.step_epochs), floor)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}


def _check_scheduler(scheduler: str, step_epochs: int) -> None:
    if scheduler not in ("one_cycle", "step", "constant"):
        raise ValueError(f"scheduler must be one_cycle, step or constant, got {scheduler!r}")
    if step_epochs < 1:
        raise ValueError(f"step_epochs must be at least 1, got {step_epochs}")


class ClassificationTask(_ShapeTask):
    """Train, validate, test and predict the class of whole shapes.

    Args:
        model: ``(B, N, C) points → (B, K) logits``; optionally ``forward_with_aux`` (logits and an
            output with ``feature_transform`` (B, 64, 64) or None) and ``num_classes`` (checked).
        class_names: the K classes (a list, or ``modelnet40``); they must be the data module's
            ``class_names`` (the CLI checks). Default: ``"0"``..``"K-1"`` from ``model.num_classes``.
        evaluators: metrics on validation and test; default one
            :class:`~perception.eval.shapes.ClassificationEvaluator`.
        lr, weight_decay: AdamW's (weight decay 0 is Adam).
        feature_transform_weight: weight of the feature-transform regulariser (PointNet: 0.001).
        label_smoothing: the cross-entropy's.
        scheduler, pct_start, div_factor, step_epochs, step_gamma, min_lr: the learning-rate schedule
            (module docstring): ``one_cycle`` with ``pct_start`` / ``div_factor``, or ``step`` with
            ``step_epochs`` / ``step_gamma`` / ``min_lr``.

    After each validation (test) epoch ``last_metrics`` holds the evaluators' results
    (``overall_accuracy``, ``mean_class_accuracy``, ``accuracy/<class>``, percent), logged as
    ``val/<key>``.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str] | str | None = None,
        evaluators: Sequence[ClassificationEvaluator] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        feature_transform_weight: float = 0.001,
        label_smoothing: float = 0.0,
        scheduler: Scheduler = "one_cycle",
        pct_start: float = 0.1,
        div_factor: float = 10.0,
        step_epochs: int = 20,
        step_gamma: float = 0.7,
        min_lr: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_scheduler(scheduler, step_epochs)
        self.save_hyperparameters(ignore=["model", "evaluators"])
        k = getattr(model, "num_classes", None)
        if class_names is None:
            if not isinstance(k, int):
                raise ValueError(
                    f"give class_names: the model {type(model).__name__} does not say its num_classes"
                )
            class_names = [str(i) for i in range(k)]
        names = list(class_list(class_names))
        if isinstance(k, int) and k != len(names):
            raise ValueError(
                f"the model {type(model).__name__} predicts {k} classes but class_names names {len(names)}: {names}"
            )
        self.hparams["class_names"] = names  # resolved, so a checkpoint says exactly what it was trained for
        self.class_names = names
        self._init_model(model, evaluators, ClassificationEvaluator, names)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, C) points → (B, K) class logits."""
        return self.model(points)

    def loss(self, logits: torch.Tensor, transform: torch.Tensor | None, batch: PointSetBatch) -> dict:
        """Cross-entropy (``ce``), the regulariser (``orthogonality``, where the model gives a feature
        transform) and their weighted sum (``loss``)."""
        ce = F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.hparams.label_smoothing)
        return self._regularised(ce, transform)

    def predictions(self, logits: torch.Tensor, batch: PointSetBatch) -> list[ClassPrediction]:
        """One :class:`ClassPrediction` per shape of ``batch``."""
        probabilities = logits.detach().float().softmax(-1)
        labels = probabilities.argmax(-1).tolist()
        return [
            ClassPrediction(shape_id, label, p)
            for shape_id, label, p in zip(batch.shape_ids, labels, probabilities, strict=True)
        ]

    def _inputs(self, batch: PointSetBatch) -> tuple[torch.Tensor, ...]:
        return (batch.points,)

    def _train_accuracy(self, logits: torch.Tensor, batch: PointSetBatch) -> torch.Tensor:
        return (logits.detach().argmax(-1) == batch.labels).float().mean()

    def _evaluate(self, logits: torch.Tensor, batch: PointSetBatch) -> list[ClassPrediction]:
        for evaluator in self.evaluators:
            evaluator.update(logits.detach(), batch.labels)
        return self.predictions(logits, batch)


class PartSegmentationTask(_ShapeTask):
    """Train, validate, test and predict the part of every point of shapes of known category.

    Args:
        model: ``(B, N, C) points, (B,) categories → (B, N, P) part logits`` over every part of the
            taxonomy; optionally ``forward_with_aux`` (as :class:`ClassificationTask`'s) and
            ``num_parts`` / ``num_categories`` (checked against the taxonomy).
        taxonomy: the categories and their global part ids: ``shapenet_part``, ``synthetic_parts``, a
            :class:`~perception.structures.shapes.PartTaxonomy` or a mapping of its fields; it must be
            the data module's ``taxonomy`` (the CLI checks).
        evaluators: metrics on validation and test; default one
            :class:`~perception.eval.shapes.PartSegmentationEvaluator`.
        lr, weight_decay, feature_transform_weight, label_smoothing, scheduler, pct_start, div_factor,
            step_epochs, step_gamma, min_lr: as :class:`ClassificationTask`'s.

    The loss and the predictions see only each shape's own category's parts. After each validation
    (test) epoch ``last_metrics`` holds ``instance_mIoU``, ``class_mIoU``, ``mIoU/<category>`` and
    ``accuracy`` (percent), logged as ``val/<key>``.
    """

    def __init__(
        self,
        model: nn.Module,
        taxonomy: str | Mapping[str, Any] | PartTaxonomy = "shapenet_part",
        evaluators: Sequence[PartSegmentationEvaluator] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        feature_transform_weight: float = 0.001,
        label_smoothing: float = 0.0,
        scheduler: Scheduler = "one_cycle",
        pct_start: float = 0.1,
        div_factor: float = 10.0,
        step_epochs: int = 20,
        step_gamma: float = 0.7,
        min_lr: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_scheduler(scheduler, step_epochs)
        self.save_hyperparameters(ignore=["model", "evaluators", "taxonomy"])
        self.taxonomy: PartTaxonomy = part_taxonomy(taxonomy)
        # a name (or plain lists), never the object: checkpoints load with weights_only=True
        self.hparams["taxonomy"] = taxonomy_spec(self.taxonomy)
        for attr, expected in (
            ("num_parts", self.taxonomy.num_parts),
            ("num_categories", self.taxonomy.num_categories),
        ):
            found = getattr(model, attr, None)
            if isinstance(found, int) and found != expected:
                raise ValueError(
                    f"the model {type(model).__name__} has {attr}={found} but the {self.taxonomy.name} taxonomy "
                    f"has {expected}"
                )
        self.class_names = list(self.taxonomy.categories)
        self.register_buffer("part_mask", torch.from_numpy(self.taxonomy.part_mask()), persistent=False)
        self.register_buffer(
            "part_category", torch.from_numpy(self.taxonomy.part_category()), persistent=False
        )
        self._init_model(model, evaluators, PartSegmentationEvaluator, self.taxonomy)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, N, C) points and (B,) category indices → (B, N, P) part logits (all parts)."""
        return self.model(points, category)

    def _part_labels(self, batch: PointSetBatch) -> torch.Tensor:
        if batch.part_labels is None:
            raise ValueError(f"shapes {batch.shape_ids[:3]}...: part segmentation needs part labels")
        stray = self.part_category[batch.part_labels] != batch.labels[:, None]
        if bool(stray.any()):
            b = int(stray.nonzero()[0, 0])
            category = self.taxonomy.categories[int(batch.labels[b])]
            raise ValueError(
                f"shape {batch.shape_ids[b]} of category {category} has part labels outside its parts "
                f"{list(self.taxonomy.parts[int(batch.labels[b])])} in the {self.taxonomy.name} taxonomy"
            )
        return batch.part_labels

    def loss(self, logits: torch.Tensor, transform: torch.Tensor | None, batch: PointSetBatch) -> dict:
        """Cross-entropy over each shape's category's parts (``ce``), the regulariser
        (``orthogonality``) and their weighted sum (``loss``)."""
        target = self._part_labels(batch)
        allowed = self.part_mask[batch.labels]
        ce = masked_part_cross_entropy(logits, target, allowed, self.hparams.label_smoothing)
        return self._regularised(ce, transform)

    def predict_parts(self, logits: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, N) int64 global part ids: the argmax over each shape's category's parts."""
        allowed = self.part_mask[category]
        return logits.detach().masked_fill(~allowed[:, None, :], float("-inf")).argmax(-1)

    def predictions(self, logits: torch.Tensor, batch: PointSetBatch) -> list[PartPrediction]:
        """One :class:`PartPrediction` per shape of ``batch``."""
        parts = self.predict_parts(logits, batch.labels)
        return [
            PartPrediction(shape_id, int(c), p)
            for shape_id, c, p in zip(batch.shape_ids, batch.labels.tolist(), parts, strict=True)
        ]

    def _inputs(self, batch: PointSetBatch) -> tuple[torch.Tensor, ...]:
        return batch.points, batch.labels

    def _train_accuracy(self, logits: torch.Tensor, batch: PointSetBatch) -> torch.Tensor:
        return (self.predict_parts(logits, batch.labels) == batch.part_labels).float().mean()

    def _evaluate(self, logits: torch.Tensor, batch: PointSetBatch) -> list[PartPrediction]:
        predictions = self.predictions(logits, batch)
        parts = torch.stack([p.parts for p in predictions])
        for evaluator in self.evaluators:
            evaluator.update(parts, batch.part_labels, batch.labels)
        return predictions
