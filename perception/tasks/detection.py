"""``DetectionTask``: the LightningModule that trains and evaluates a 3D detector.

The model (:class:`perception.models.Detector`) knows nothing of trainers; the task owns the
optimiser and schedule (AdamW + one-cycle) and logging. Metrics are plug-ins
(:class:`~perception.eval.detection.Evaluator`: KITTI AP, Waymo mAP/mAPH) given by ``class_path``;
files are written by prediction-writer callbacks (:mod:`perception.tasks.writers`). Every step that
predicts returns its detections (one :class:`~perception.structures.Detections` per sample), so
callbacks reuse them instead of running the model again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import nn

from perception.eval.detection import Evaluator
from perception.models import Detector
from perception.structures import Batch, Detections
from perception.tasks.evaluation import log_stage_loss, stage_losses
from perception.tasks.schedule import adamw_one_cycle

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)


class DetectionTask(L.LightningModule):
    """Train, validate, test and predict with a :class:`~perception.models.Detector`.

    Args:
        model: the detector (encoder → backbones → head → optional refinement stage).
        class_names: training classes, in label order, spelled as the dataset spells them (linked
            from ``data.class_names`` in configs); must equal the head's ``class_names``.
        evaluators: metrics run on validation and test (e.g.
            :class:`~perception.eval.detection.KittiEvaluator`,
            :class:`~perception.eval.detection.WaymoEvaluator`); none by default (the loss only).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        pct_start: share of the steps spent warming up.
        div_factor: initial lr = lr / div_factor; final lr = initial / 1e4 (one-cycle defaults).
        compile: run the model's forward through ``torch.compile`` (the weights and checkpoints are
            the same either way); off by default.

    After each validation (test) epoch, ``last_metrics`` holds every evaluator's results (flat keys,
    e.g. ``Car_3d/moderate_R40``, ``VEHICLE_LEVEL_2/mAPH``) and ``last_curves`` their precision–recall
    curves where they keep them; the headline keys are logged as ``val/<key>`` (``test/<key>``).
    """

    def __init__(
        self,
        model: Detector,
        class_names: list[str],
        evaluators: Sequence[Evaluator] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        pct_start: float = 0.4,
        div_factor: float = 10.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "evaluators"])
        head_classes = list(getattr(model.head, "class_names", class_names))
        if list(class_names) != head_classes:
            raise ValueError(
                f"class names disagree: the task's (model.class_names, linked from data.class_names) are "
                f"{list(class_names)} but the head's (model.model.init_args.head.init_args.class_names) "
                f"are {head_classes}"
            )
        self.model = model
        # not a submodule: the compiled wrapper shares the weights, so the state dict stays the model's
        object.__setattr__(self, "_forward_model", torch.compile(model) if compile else model)
        self.class_names = list(class_names)
        self.evaluators = nn.ModuleList(evaluators or [])
        self.stage_losses = stage_losses()
        for evaluator in self.evaluators:
            evaluator.bind(self.class_names)
        self.last_metrics: dict[str, float] = {}
        self.last_curves: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------------------------------ steps

    def forward(self, batch: Batch):
        return self._forward_model(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.model.loss(self(batch), batch)
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in losses.items()},
            prog_bar=False,
            batch_size=batch.batch_size,
        )
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=batch.batch_size, logger=False)
        return losses["loss"]

    def _evaluation_step(self, batch: Batch, stage: str) -> list[Detections]:
        output = self(batch)
        losses = self.model.loss(output, batch)
        log_stage_loss(self, stage, losses["loss"], batch.batch_size)
        detections = self.model.predict(output, batch)
        for evaluator in self.evaluators:
            evaluator.update(detections, batch)
        return detections

    def validation_step(self, batch: Batch, batch_idx: int) -> list[Detections]:
        """The batch's detections (callbacks such as the result writer and W&B reuse them)."""
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> list[Detections]:
        return self._evaluation_step(batch, "test")

    def _evaluation_epoch_end(self, stage: str) -> None:
        metrics: dict[str, float] = {}
        curves: dict[str, np.ndarray] = {}
        for evaluator in self.evaluators:
            results = evaluator.compute()
            curves.update(evaluator.curves())
            evaluator.reset()
            metrics.update(results)
            for key, value in evaluator.headline(results).items():
                self.log(f"{stage}/{key}", value, prog_bar=key == evaluator.progress_key, sync_dist=True)
        self.last_metrics, self.last_curves = metrics, curves

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[Detections]:
        """One :class:`~perception.structures.Detections` per sample (writers turn them into files)."""
        return self.model.predict(self(batch), batch)

    # ------------------------------------------------------------------------------------ optimiser

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_one_cycle(
            self,
            [p for p in self.model.parameters() if p.requires_grad],
            hp.lr,
            hp.weight_decay,
            hp.pct_start,
            hp.div_factor,
        )
