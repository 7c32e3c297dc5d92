"""``SegmentationTask``: the LightningModule that trains and evaluates per-point semantic segmentation.

Any backbone with the point contract (``forward(points (N, C), batch_index (N,)) -> (N, C')``:
:class:`~perception.models.Point2PointBackbone`, :class:`~perception.models.SparseUNet`) plus a linear
classifier over the classes of a :class:`~perception.structures.LabelMap`. Loss: cross-entropy over
the labelled points (training id 0 is ignored) plus the Lovász-softmax surrogate of the per-class IoU
(Berman et al., CVPR 2018); both help the small classes (poles, signs, people), the cross-entropy
through inverse-square-root frequency weights. Metrics are
evaluator plug-ins (:class:`~perception.eval.segmentation.SegmentationEvaluator`: the SemanticKITTI
mIoU); files are written by :class:`~perception.tasks.writers.SemanticKittiLabelWriter`. Every step
that predicts returns one ``(N_b,)`` int64 tensor of training ids (1..K) per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from perception.eval.segmentation import SegmentationEvaluator
from perception.structures import Batch, LabelMap
from perception.structures.segmentation import label_map as make_label_map
from perception.tasks.evaluation import finish_evaluation, log_stage_loss, stage_losses
from perception.tasks.schedule import adamw_one_cycle_from_hparams

__all__ = ["SegmentationTask", "lovasz_softmax"]


def _lovasz_grad(sorted_fg: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors (Berman et al., Alg. 1)."""
    total = sorted_fg.sum()
    intersection = total - sorted_fg.cumsum(0)
    union = total + (1.0 - sorted_fg).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax loss over the classes present in ``target``.

    Args:
        probs: (N, K) class probabilities of the labelled points.
        target: (N,) int64 class indices in ``[0, K)``.

    Returns:
        Scalar: the mean over present classes of the Lovász extension of ``1 - IoU``.
    """
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    losses = []
    for c in torch.unique(target).tolist():
        fg = (target == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    return torch.stack(losses).mean()


class SegmentationTask(L.LightningModule):
    """Train, validate, test and predict per-point classes with a point backbone.

    Args:
        backbone: points (N, C) + batch index → (N, C') features; ``out_channels`` gives C'.
        label_map: the class map (``"synthetic"``, ``"semantic-kitti"`` or a SemanticKITTI-style YAML
            path); must be the data's (``data.init_args.label_map``), the CLI checks.
        evaluators: metrics on validation and test; default one
            :class:`~perception.eval.segmentation.SegmentationEvaluator` (mIoU over every class).
        lr, weight_decay, pct_start, div_factor: AdamW with a one-cycle schedule (cosine).
        lovasz_weight: weight of the Lovász-softmax term beside the cross-entropy (0 turns it off).
        label_smoothing: the cross-entropy's.
        class_weight_power: the cross-entropy weighs class ``c`` by ``(n / n_c) ** power`` over the
            batch's labelled points (n of them, n_c of class c), normalised to mean 1 over the classes
            present: 0.5 is the inverse square root of the frequency, 0 plain cross-entropy. Rare
            classes (poles, signs, people: under 1 % of the points) then learn from the first steps.

    After each validation (test) epoch ``last_metrics`` holds the evaluators' results (``mIoU``,
    ``IoU/<class>``, ``accuracy``, percent); headline keys are logged as ``val/<key>``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        label_map: str = "synthetic",
        evaluators: Sequence[SegmentationEvaluator] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        pct_start: float = 0.2,
        div_factor: float = 10.0,
        lovasz_weight: float = 1.0,
        label_smoothing: float = 0.0,
        class_weight_power: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "evaluators"])
        self.label_map: LabelMap = make_label_map(label_map)
        self.class_names = list(self.label_map.class_names)
        width = getattr(backbone, "out_channels", None)
        if not isinstance(width, int):
            raise ValueError(f"the backbone {type(backbone).__name__} must say its out_channels")
        self.backbone = backbone
        self.classifier = nn.Linear(width, self.label_map.num_classes)
        self.evaluators = nn.ModuleList(evaluators if evaluators is not None else [SegmentationEvaluator()])
        self.stage_losses = stage_losses()
        for evaluator in self.evaluators:
            evaluator.bind(self.class_names)
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ steps

    def forward(self, batch: Batch) -> torch.Tensor:
        """(N, K) class logits per point (class ``k`` is training id ``k + 1``)."""
        return self.classifier(self.backbone(batch.points, batch.batch_index))

    def loss(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Cross-entropy (+ Lovász-softmax) over the points whose training id is not 0."""
        if batch.point_labels is None:
            raise ValueError(f"frames {batch.frame_ids[:3]}...: segmentation needs point labels")
        target = batch.point_labels - 1  # ignore (0) → -1
        labelled = target >= 0
        logits = logits.float()
        k = logits.shape[1]
        weight = None
        if self.hparams.class_weight_power and bool(labelled.any()):
            counts = torch.bincount(target[labelled], minlength=k).float()
            present = counts > 0
            weight = torch.where(
                present, (counts.sum() / counts.clamp_min(1)) ** self.hparams.class_weight_power, 0.0
            )
            weight = weight / weight[present].mean()
        ce = (
            F.cross_entropy(
                logits, target, weight=weight, ignore_index=-1, label_smoothing=self.hparams.label_smoothing
            )
            if bool(labelled.any())
            else logits.sum() * 0.0
        )
        losses = {"ce": ce}
        total = ce
        if self.hparams.lovasz_weight > 0:
            lov = lovasz_softmax(logits[labelled].softmax(1), target[labelled])
            losses["lovasz"] = lov
            total = total + self.hparams.lovasz_weight * lov
        losses["loss"] = total
        return losses

    @staticmethod
    def _split(pred: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        counts = torch.bincount(batch.batch_index, minlength=batch.batch_size).tolist()
        return list(torch.split(pred, counts))

    def predictions(self, logits: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
        """Per sample, (N_b,) int64 training ids 1..K of the most likely class."""
        return self._split(logits.argmax(1) + 1, batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.loss(self(batch), batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch.batch_size)
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=batch.batch_size, logger=False)
        return losses["loss"]

    def _evaluation_step(self, batch: Batch, stage: str) -> list[torch.Tensor]:
        logits = self(batch)
        if batch.point_labels is not None:
            loss = self.loss(logits, batch)["loss"]
            log_stage_loss(self, stage, loss, batch.batch_size)
        predictions = self.predictions(logits, batch)
        if batch.point_labels is not None:
            for evaluator in self.evaluators:
                evaluator.update(predictions, batch)
        return predictions

    def validation_step(self, batch: Batch, batch_idx: int) -> list[torch.Tensor]:
        """The batch's predicted training ids, one tensor per sample (writers reuse them)."""
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> list[torch.Tensor]:
        return self._evaluation_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[torch.Tensor]:
        return self.predictions(self(batch), batch)

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "val")

    def on_test_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "test")

    # ------------------------------------------------------------------------------------ optimiser

    def configure_optimizers(self):
        return adamw_one_cycle_from_hparams(self)
