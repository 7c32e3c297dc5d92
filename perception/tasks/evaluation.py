"""What the tasks share at the end of a validation or test epoch: their evaluators' results, logged."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L

from perception.eval.base import BaseEvaluator

__all__ = ["finish_evaluation"]


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
            task.log(f"{stage}/{key}", value, prog_bar=key == evaluator.progress_key, sync_dist=False)
    return metrics
