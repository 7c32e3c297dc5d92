"""Reading metric inputs given as mappings or objects, NumPy arrays or tensors (KITTI and Waymo metrics)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

__all__ = ["FrameRowsMetric", "as_numpy", "field"]


def field(obj: Any, *keys: str) -> Any:
    """The first of ``keys`` that ``obj`` (mapping or object) has and is not None, else None."""
    for key in keys:
        value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
        if value is not None:
            return value
    return None


def as_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array (tensors detached and moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class FrameRowsMetric(Metric):
    """A ``torchmetrics.Metric`` that keeps each frame's objects as flat float64 rows (KITTI, Waymo AP).

    Ground truth goes to the list states ``gt_rows`` / ``gt_counts``, predictions to
    ``{pred_state}_rows`` / ``{pred_state}_counts`` (``dist_reduce_fx="cat"``, so they gather under
    DDP); :meth:`update` turns each frame's inputs into rows with :meth:`frame_rows` and
    :meth:`gathered` gives them back, concatenated, for the evaluation in ``compute``.

    Subclasses set ``gt_cols``, ``pred_cols``, ``pred_state`` and implement :meth:`frame_rows` and
    ``compute``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    gt_cols: int
    pred_cols: int
    pred_state: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for prefix in ("gt", self.pred_state):
            for kind in ("rows", "counts"):
                self.add_state(f"{prefix}_{kind}", default=[], dist_reduce_fx="cat")

    def frame_rows(self, pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        """(ground-truth rows (M, gt_cols), prediction rows (K, pred_cols)) of one frame."""
        raise NotImplementedError

    def update(self, preds: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add a batch: ``preds[i]`` the predictions and ``targets[i]`` the ground truth of frame i."""
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} prediction frames but {len(targets)} ground-truth frames")
        for pred, target in zip(preds, targets, strict=True):
            for prefix, rows in zip(("gt", self.pred_state), self.frame_rows(pred, target), strict=True):
                getattr(self, f"{prefix}_rows").append(torch.from_numpy(rows.reshape(-1)))
                getattr(self, f"{prefix}_counts").append(torch.tensor([len(rows)], dtype=torch.int64))

    def gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(gt rows (N, gt_cols), gt counts (F,), prediction rows (M, pred_cols), prediction counts (F,))."""

        def state(name: str, dtype: torch.dtype) -> np.ndarray:
            value = getattr(self, name)
            if isinstance(value, list) and not value:
                return np.zeros(0, dtype=np.float64 if dtype == torch.float64 else np.int64)
            return dim_zero_cat(value).to(dtype).cpu().numpy()

        p = self.pred_state
        return (
            state("gt_rows", torch.float64).reshape(-1, self.gt_cols),
            state("gt_counts", torch.int64),
            state(f"{p}_rows", torch.float64).reshape(-1, self.pred_cols),
            state(f"{p}_counts", torch.int64),
        )
