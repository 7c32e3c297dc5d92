"""What the tasks share in validation and test: the mean loss over samples and their evaluators' results, logged."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from perception.eval.base import BaseEvaluator

__all__ = ["finish_evaluation", "log_stage_loss", "stage_losses"]


def stage_losses() -> nn.ModuleDict:
    """A task's ``val`` and ``test`` loss means (``torchmetrics.MeanMetric`` summing in float64, so the
    mean does not depend on how samples are split across processes; no checkpoint keys)."""
    return nn.ModuleDict({stage: MeanMetric().set_dtype(torch.float64) for stage in ("val", "test")})


def log_stage_loss(task: L.LightningModule, stage: str, loss: torch.Tensor, batch_size: int) -> None:
    """Add a batch's loss to ``task.stage_losses[stage]`` (weighted by its samples) and log the epoch's
    mean as ``<stage>/loss``.

    A metric rather than ``self.log(..., sync_dist=True)``: under DDP with processes holding
    different numbers of samples, Lightning's own mean sync divides by an integer-rounded mean batch
    count (7 samples over 2 processes count as 6); the metric syncs sums and weights exactly.
    """
    metric = task.stage_losses[stage]
    metric.update(loss.detach(), weight=batch_size)
    task.log(f"{stage}/loss", metric, prog_bar=True, on_step=False, on_epoch=True, batch_size=batch_size)


def finish_evaluation(
    task: L.LightningModule, evaluators: Iterable[BaseEvaluator], stage: str
) -> dict[str, float]:
    """Every evaluator's results of the epoch (then reset), their headline keys logged as ``<stage>/<key>``
    (the evaluator's ``progress_key`` on the progress bar); returns all results merged."""
    metrics: dict[str, float] = {}
    for evaluator in evaluators:
        results = evaluator.compute()
        evaluator.reset()
        metrics.update(results)
        for key, value in evaluator.headline(results).items():
            # every process holds the same gathered result, so the sync changes nothing (and is expected)
            task.log(f"{stage}/{key}", value, prog_bar=key == evaluator.progress_key, sync_dist=True)
    return metrics
