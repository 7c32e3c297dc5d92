"""The common base of every task's metric plug-in (detection's and segmentation's evaluators).

An evaluator owns one ``torchmetrics`` metric and the conversion from what its task's steps return
(and the batch) into that metric's input. A task calls ``bind`` once with its class names, ``update``
for every evaluated batch and ``compute`` / ``reset`` at the end of the epoch, and logs
``headline(results)`` with ``progress_key`` on the progress bar. Evaluators are ``nn.Module``\\ s, so
their metric states follow the task to its device and gather under DDP; they hold no weights (a
checkpoint's keys are the same with or without them).

This module loads nothing but torch and the structures, so a task's evaluators import only what their
own metric needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn
from torchmetrics import Metric

from perception.structures import Batch, FrameRecord

__all__ = ["BaseEvaluator"]


class BaseEvaluator(nn.Module):
    """A task's metric plug-in (see the module docstring).

    Subclasses set ``kind`` (the record their samples carry), implement :meth:`bind` (which makes
    ``self.metric``; the metric has a ``classes`` attribute, the names it scores) and :meth:`update`.
    """

    kind: type = object

    def __init__(self) -> None:
        super().__init__()
        self.class_names: tuple[str, ...] = ()
        self.metric: Metric | None = None

    def bind(self, class_names: Sequence[str]) -> None:
        """Called once by the task with its class names (its outputs' labels index into them)."""
        raise NotImplementedError

    def update(self, outputs: Sequence[Any], batch: Batch) -> None:
        """Add one batch: ``outputs[i]`` is what the task predicted for ``batch``'s sample i."""
        raise NotImplementedError

    @property
    def progress_key(self) -> str | None:
        """The result shown on the progress bar (None: none)."""
        return None

    @property
    def scored_classes(self) -> tuple[str, ...]:
        """The classes the metric scores (after :meth:`bind`)."""
        return () if self.metric is None else tuple(self.metric.classes)

    def bound(self) -> Metric:
        """The metric; an error before :meth:`bind`."""
        if self.metric is None:
            raise RuntimeError(f"{type(self).__name__}: bind(class_names) first (the task does)")
        return self.metric

    def records(self, batch: Batch) -> list[FrameRecord]:
        """The batch's records, each checked to be this evaluator's ``kind``."""
        name, records = type(self).__name__, list(batch.records)
        if len(records) != batch.batch_size:
            raise ValueError(f"{name}: the batch has {len(records)} records for {batch.batch_size} frames")
        for frame_id, record in zip(batch.frame_ids, records, strict=True):
            if not isinstance(record, self.kind):
                raise ValueError(
                    f"{name} scores samples carrying a {self.kind.__name__}; frame {frame_id} carries "
                    f"{type(record).__name__} (is the data module reading another dataset?)"
                )
        return records

    def compute(self) -> dict[str, float]:
        """The metric over everything added since the last :meth:`reset` (flat keys → floats)."""
        return self.bound().compute()

    def reset(self) -> None:
        self.bound().reset()

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        """The results worth logging every epoch (all of them by default; NaN ones left out)."""
        return {k: v for k, v in results.items() if not math.isnan(v)}

    def curves(self) -> dict[str, np.ndarray]:
        """Curves of the last :meth:`compute` (precision–recall and the like), where the metric keeps them."""
        return {}
