"""Occupancy-flow metrics: the Waymo occupancy & flow challenge's numbers, in torch, fast.

What it is for: scoring forecasts of observed / occluded vehicle occupancy and backward flow at T
waypoints with exactly the numbers the official
``waymo_open_dataset.utils.occupancy_flow_metrics.compute_occupancy_flow_metrics`` gives, quickly
enough for every validation epoch (1,000 samples × 8 waypoints × 256² in ~20 s on two CPU cores,
``python tools/benchmark.py occupancy_metric``), and MotionNet's speed-grouped displacement errors
(docs/OCCUPANCY.md §1.2, §2, §6).

The official definitions, as its code and Keras' ``AUC`` compute them (read from the sources):

- **AUC** is ``tf.keras.metrics.AUC(num_thresholds=100, curve="PR", summation_method="interpolation")``.
  A prediction is clipped to [0, 1] and, **in float32**, put in bucket ``max(ceil(p · 99) − 1, 0)``
  (Keras' path for evenly spaced thresholds); it is a positive at thresholds 0..bucket. Near a
  threshold the float32 product decides: 85/255 as float32 (0.33333334, just above 1/3) times 99
  rounds to 33.0, so bucket 32, not above 33/99 — where a float64 ``p > 33/99`` says above. A cell
  is a true positive iff its true value ≠ 0 (and a waypoint "has occupancy" iff a cell is ≠ 0: the
  official max > 0 for values in [0, 1]). The precision–recall area is Davis & Goadrich's
  interpolation in Keras' closed form.
- **Soft-IoU** ``Σ p·y / (Σ p + Σ y − Σ p·y)`` on the raw values (neither clipped nor binarised),
  0 when the denominator is 0.
- **EPE** the mean of ‖true − predicted flow‖₂ over the cells whose true flow is not (0, 0), in grid
  cells, pooled over the batch (0 when no cell has flow).
- **Flow-grounded** occupancy: the true flow-origin occupancy sampled bilinearly at each cell's
  (column + dx, row + dy), pixel centres at integers and zeros outside the grid (tensorflow_graphics
  ``sample`` on a zero-padded origin, whose clamping of the corner indices we replicate in float32),
  times ``clip(pred_observed + pred_occluded, 0, 1)``, scored by AUC and Soft-IoU against
  ``clip(true_observed + true_occluded, 0, 1)``.
- **Which waypoints count**: observed (occluded) metrics where the true observed (occluded)
  occupancy of the whole batch has an occupied cell; flow and flow-grounded metrics where the
  observed occupancy is non-empty at k and k − 1, *or* the occluded one is at k and k − 1 (k = −1,
  the current time, is non-empty) — the official loop's rule; "all vehicles non-empty at k and k − 1"
  (docs/OCCUPANCY.md §1.2's wording) would also count a waypoint whose observed vehicles appear only
  at k and occluded ones only at k − 1. Each metric is the mean over its waypoints, 0 if none counted.

Pooling: the official function draws one precision–recall curve (one IoU, one EPE) per waypoint over
*everything passed in*; ``pool_batch=True`` (the default) does the same over a batch or, for
:class:`OccupancyFlowMetric`, over every update since the last reset. ``pool_batch=False`` scores each
sample on its own, as the official function does with a batch of one, and averages over samples.

Where we differ from the official code, on purpose: bucket counts are exact int64 (Keras sums float32,
exact below 2²⁴ cells a bucket) and the AUC, IoU and EPE arithmetic after the counts is float64 (Keras'
float32): results agree to ~1e-6.

Entry points: :func:`occupancy_flow_metrics` (the official call), :func:`occupancy_flow_stats` and
:func:`metrics_from_stats` (its two halves), :class:`OccupancyFlowMetric` (a ``torchmetrics.Metric``),
:class:`OccupancyEvaluator` (the occupancy task's plug-in), the single metrics :func:`occupancy_auc`,
:func:`occupancy_soft_iou`, :func:`flow_epe` and :func:`flow_warp`, :func:`motion_displacement_errors`
(MotionNet), and ``python -m perception.eval.occupancy TARGETS.npz PREDICTIONS.npz [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torchmetrics import Metric

from perception.data.io import atomic_write_text
from perception.eval.base import BaseEvaluator
from perception.structures import Batch
from perception.structures.occupancy import AGENT_CLASSES, OccupancyForecast, OccupancyTargets

__all__ = [
    "COUNTS",
    "METRICS",
    "MOTION_GROUPS",
    "NUM_THRESHOLDS",
    "OccupancyEvaluator",
    "OccupancyFlowMetric",
    "OccupancyFlowStats",
    "flow_epe",
    "flow_warp",
    "format_comparison",
    "format_results",
    "load_grids",
    "main",
    "metrics_from_stats",
    "motion_displacement_errors",
    "occupancy_auc",
    "occupancy_flow_metrics",
    "occupancy_flow_stats",
    "occupancy_soft_iou",
    "per_waypoint",
    "pr_auc",
]

NUM_THRESHOLDS = 100
"""Keras ``AUC(num_thresholds=100)``: thresholds −1e−7, 1/99, ..., 98/99, 1 + 1e−7, one bucket each."""

METRICS: tuple[str, ...] = (
    "observed_auc",
    "occluded_auc",
    "observed_iou",
    "occluded_iou",
    "flow_epe",
    "flow_grounded_auc",
    "flow_grounded_iou",
)
"""The headline metrics, in the order of the official ``OccupancyFlowMetrics`` proto (EPE in cells)."""

COUNTS: tuple[str, ...] = (
    "num_waypoints_with_observed_occupancy",
    "num_waypoints_with_occluded_occupancy",
    "num_waypoints_with_flow",
)
"""The waypoints that counted, per family (observed, occluded, flow)."""

# The three occupancy "kinds" scored by AUC and Soft-IoU, in the order of the stats' kind axis, and
# which family of waypoints (0 observed, 1 occluded, 2 flow) each metric of METRICS averages over.
_KINDS = ("observed", "occluded", "flow_grounded")
_FAMILY = {
    "observed_auc": 0,
    "observed_iou": 0,
    "occluded_auc": 1,
    "occluded_iou": 1,
    "flow_epe": 2,
    "flow_grounded_auc": 2,
    "flow_grounded_iou": 2,
}
_OCCUPANCY_ARGS = ("true_observed", "true_occluded", "true_flow_origin", "pred_observed", "pred_occluded")
_FLOW_ARGS = ("true_flow", "pred_flow")


class OccupancyFlowStats(NamedTuple):
    """What the metrics need, per sample and waypoint; sums over samples pool them (torch tensors).

    Attributes:
        buckets: (B, T, 3, 2, 100) int64 cells per [kind (observed, occluded, flow-grounded),
            true negative | positive, Keras bucket]; a cell in bucket i is predicted positive at
            thresholds 0..i.
        soft: (B, T, 3, 3) float64 ``[Σ p·y, Σ p, Σ y]`` per kind (Soft-IoU).
        epe: (B, T, 2) float64 ``[Σ ‖Δflow‖, cells with true flow]``.
    """

    buckets: torch.Tensor
    soft: torch.Tensor
    epe: torch.Tensor

    def pooled(self) -> OccupancyFlowStats:
        """The stats of the whole batch as one sample (B = 1): what the official call pools."""
        return OccupancyFlowStats(*(s.sum(0, keepdim=True) for s in self))


# --------------------------------------------------------------------------------------------------
# The per-cell work: float32, chunked, vectorised


def _device_of(values: Sequence[Any]) -> torch.device:
    for v in values:
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")


def _float32(value: Any, rows: slice, device: torch.device) -> torch.Tensor:
    """``value[rows]`` (NumPy or torch) as a float32 tensor on ``device`` (a copy where it must convert)."""
    if isinstance(value, torch.Tensor):
        return value[rows].to(device=device, dtype=torch.float32).contiguous()
    part = np.ascontiguousarray(value[rows], dtype=np.float32)
    if not part.flags.writeable:
        part = part.copy()
    return torch.from_numpy(part).to(device)


def _check_shapes(arrays: Mapping[str, Any]) -> tuple[int, int, int, int]:
    shapes = {
        name: tuple(np.shape(a) if not isinstance(a, torch.Tensor) else a.shape) for name, a in arrays.items()
    }
    expected = shapes["true_observed"]
    if len(expected) != 4:
        raise ValueError(f"true_observed must be (B, T, H, W), got shape {expected}")
    for name in _OCCUPANCY_ARGS:
        if shapes[name] != expected:
            raise ValueError(
                f"{name} has shape {shapes[name]}; expected {expected} (B, T, H, W) as true_observed"
            )
    for name in _FLOW_ARGS:
        if shapes[name] != (*expected, 2):
            raise ValueError(f"{name} has shape {shapes[name]}; expected {(*expected, 2)} (B, T, H, W, 2)")
    return expected  # type: ignore[return-value]


def _soft_sums(y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(m, 3) float64 ``[Σ p·y, Σ p, Σ y]`` of (m, H, W) grids (the products in float32, as TF)."""
    return torch.stack([(p * y).sum((1, 2)), p.sum((1, 2)), y.sum((1, 2))], -1).double()


def _buckets(y: torch.Tensor, p: torch.Tensor, item_offset: torch.Tensor) -> torch.Tensor:
    """(m, 2, 100) int64 cell counts per [y ≠ 0, Keras bucket] of (m, H, W) grids.

    ``item_offset`` is (m, 1, 1) float32 ``200 · item``: one ``bincount`` counts every grid.
    """
    m = len(p)
    # ceil(99·p) in float32, 0..99; Keras' bucket is max(ceil − 1, 0) (merged below).
    index = torch.clamp(p, 0.0, 1.0).mul_(NUM_THRESHOLDS - 1).ceil_()
    index.add_(y.ne(0), alpha=NUM_THRESHOLDS).add_(item_offset)
    counts = torch.bincount(index.view(-1).to(torch.int32), minlength=m * 2 * NUM_THRESHOLDS)
    counts = counts.view(m, 2, NUM_THRESHOLDS)
    buckets = torch.zeros_like(counts)
    buckets[..., 0] = counts[..., 0] + counts[..., 1]
    buckets[..., 1:-1] = counts[..., 2:]
    return buckets


def _warp(origin: torch.Tensor, flow: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The official ``_flow_warp`` of (m, H, W) origins by (m, H, W, 2) flows, float32 step for step.

    The official code pads the origin by one zero cell and shifts the sample points by one; then
    tensorflow_graphics (BorderType.ZERO) pads and shifts once more and tensorflow_addons'
    ``interpolate_bilinear`` clamps the corner index to [0, size − 2] and the weight to [0, 1]. The
    net effect is bilinear sampling with zeros outside the grid; the float32 operations are kept in
    the same order so that values on a bucket edge fall the same way.
    """
    m, h, w = origin.shape
    hp, wp = h + 4, w + 4
    image = origin.new_zeros(m, hp, wp)
    image[:, 2:-2, 2:-2] = origin
    image = image.view(-1)
    dx, dy = flow.unbind(-1)
    x = torch.add(dx, cols).add_(1.0).add_(1.0)
    y = torch.add(dy, rows).add_(1.0).add_(1.0)
    x0 = torch.floor(x).clamp_(0, wp - 2)
    y0 = torch.floor(y).clamp_(0, hp - 2)
    ax = x.sub_(x0).clamp_(0.0, 1.0).view(-1)
    ay = y.sub_(y0).clamp_(0.0, 1.0).view(-1)
    if m * hp * wp < 2**24:  # float32 holds every index exactly
        base = torch.arange(m, device=origin.device, dtype=torch.float32).mul_(hp * wp).view(m, 1, 1)
        index = x0.add_(y0, alpha=wp).add_(base).view(-1).to(torch.int64)
    else:
        base = torch.arange(m, device=origin.device).mul_(hp * wp).view(m, 1, 1)
        index = (y0.to(torch.int64) * wp + x0.to(torch.int64) + base).view(-1)
    top_left, top_right = image.index_select(0, index), image[1:].index_select(0, index)
    bottom_left, bottom_right = image[wp:].index_select(0, index), image[wp + 1 :].index_select(0, index)
    top = top_right.sub_(top_left).mul_(ax).add_(top_left)
    bottom = bottom_right.sub_(bottom_left).mul_(ax).add_(bottom_left)
    return bottom.sub_(top).mul_(ay).add_(top).view(m, h, w)


def _not_finite(chunk: Mapping[str, torch.Tensor], first_sample: int, t: int) -> ValueError:
    for name, value in chunk.items():
        bad = ~torch.isfinite(value.reshape(len(value), -1)).all(1)
        if bad.any():
            item = int(bad.nonzero()[0])
            b, k = divmod(first_sample * t + item, t)
            return ValueError(f"{name} has NaN or infinite values (sample {b}, waypoint {k})")
    return ValueError("the occupancy sums overflow float32")


def occupancy_flow_stats(
    *,
    true_observed: Any,
    true_occluded: Any,
    true_flow: Any,
    true_flow_origin: Any,
    pred_observed: Any,
    pred_occluded: Any,
    pred_flow: Any,
    chunk_cells: int = 2**19,
) -> OccupancyFlowStats:
    """The per-sample, per-waypoint statistics of every metric (see :class:`OccupancyFlowStats`).

    Args: as :func:`occupancy_flow_metrics`, plus
        chunk_cells: about how many grid cells to process at once (memory ~ 100 bytes a cell);
            whole samples at a time, at least one.

    Returns:
        the stats on the device of the first torch input (the CPU for NumPy).

    Raises:
        ValueError: shapes that disagree, or NaN / infinite values (naming the argument).
    """
    arrays = {
        "true_observed": true_observed,
        "true_occluded": true_occluded,
        "true_flow": true_flow,
        "true_flow_origin": true_flow_origin,
        "pred_observed": pred_observed,
        "pred_occluded": pred_occluded,
        "pred_flow": pred_flow,
    }
    b, t, h, w = _check_shapes(arrays)
    device = _device_of(list(arrays.values()))
    cols = torch.arange(w, device=device, dtype=torch.float32)
    rows = torch.arange(h, device=device, dtype=torch.float32).view(h, 1)
    buckets = torch.zeros(b * t, 3, 2, NUM_THRESHOLDS, dtype=torch.int64, device=device)
    soft = torch.zeros(b * t, 3, 3, dtype=torch.float64, device=device)
    epe = torch.zeros(b * t, 2, dtype=torch.float64, device=device)
    # whole samples a chunk; bucket indices (200 a grid) stay exact in float32
    per_chunk = max(1, min(chunk_cells // max(1, t * h * w), 2**24 // (2 * NUM_THRESHOLDS * t)))
    for s0 in range(0, b, per_chunk):
        samples = slice(s0, min(b, s0 + per_chunk))
        items = slice(s0 * t, samples.stop * t)
        chunk = {
            name: _float32(a, samples, device).reshape(-1, h, w, 2)
            if name in _FLOW_ARGS
            else _float32(a, samples, device).reshape(-1, h, w)
            for name, a in arrays.items()
        }
        m = len(chunk["true_observed"])
        to, tc, po, pc = (
            chunk[n] for n in ("true_observed", "true_occluded", "pred_observed", "pred_occluded")
        )
        tflow, pflow = chunk["true_flow"], chunk["pred_flow"]
        soft[items, 0] = _soft_sums(to, po)
        soft[items, 1] = _soft_sums(tc, pc)
        # EPE: masked norms; a NaN anywhere in either flow makes the sum NaN (NaN · 0 is NaN).
        ex, ey = (tflow - pflow).unbind(-1)
        err = (ex * ex).add_(ey * ey).sqrt_()
        moving = torch.view_as_complex(tflow) != 0
        epe[items, 0] = err.mul_(moving).sum((1, 2)).double()
        epe[items, 1] = moving.sum((1, 2)).double()
        if not (torch.isfinite(soft[items, :2]).all() and torch.isfinite(epe[items]).all()):
            raise _not_finite(chunk, s0, t)
        true_all = (to + tc).clamp_(0.0, 1.0)
        pred_all = (po + pc).clamp_(0.0, 1.0)
        grounded = _warp(chunk["true_flow_origin"], pflow, cols, rows).mul_(pred_all)
        soft[items, 2] = _soft_sums(true_all, grounded)
        if not torch.isfinite(soft[items, 2]).all():
            raise _not_finite(chunk, s0, t)
        offset = torch.arange(m, device=device, dtype=torch.float32).mul_(2 * NUM_THRESHOLDS).view(m, 1, 1)
        buckets[items, 0] = _buckets(to, po, offset)
        buckets[items, 1] = _buckets(tc, pc, offset)
        buckets[items, 2] = _buckets(true_all, grounded, offset)
    return OccupancyFlowStats(
        buckets.view(b, t, 3, 2, NUM_THRESHOLDS), soft.view(b, t, 3, 3), epe.view(b, t, 2)
    )


# --------------------------------------------------------------------------------------------------
# From counts to metrics (float64)


def pr_auc(buckets: torch.Tensor) -> torch.Tensor:
    """Keras' interpolated precision–recall AUC of bucket counts.

    Args:
        buckets: (..., 2, 100) cells per [true negative | positive, bucket] (:class:`OccupancyFlowStats`).

    Returns:
        (...) float64: Σ over the 99 threshold intervals [A, B] of
        ``slope · (ΔTP + intercept · ln(P_A / P_B)) / positives`` with ``slope = ΔTP / ΔP`` (0 when
        ΔP = 0), ``intercept = TP_B − slope · P_B``, the log 0 where P_A or P_B is 0; 0 without positives.
    """
    tp = buckets[..., 1, :].flip(-1).cumsum(-1).flip(-1).double()
    fp = buckets[..., 0, :].flip(-1).cumsum(-1).flip(-1).double()
    p = tp + fp
    d_tp, d_p = tp[..., :-1] - tp[..., 1:], p[..., :-1] - p[..., 1:]
    slope = torch.where(d_p > 0, d_tp / d_p.clamp_min(1), torch.zeros_like(d_p))
    intercept = tp[..., 1:] - slope * p[..., 1:]
    both = (p[..., :-1] > 0) & (p[..., 1:] > 0)
    ratio = torch.where(both, p[..., :-1] / p[..., 1:].clamp_min(1), torch.ones_like(d_p))
    area = (slope * (d_tp + intercept * torch.log(ratio))).sum(-1)
    positives = tp[..., 0]
    return torch.where(positives > 0, area / positives.clamp_min(1), torch.zeros_like(area))


def _soft_iou(soft: torch.Tensor) -> torch.Tensor:
    inter, p, y = soft.unbind(-1)
    union = p + y - inter
    return torch.where(union != 0, inter / torch.where(union != 0, union, 1), torch.zeros_like(union))


def _waypoint_values(stats: OccupancyFlowStats) -> tuple[torch.Tensor, torch.Tensor]:
    """(values (B, T, 7) float64 in :data:`METRICS` order, counted (B, T, 3) bool per family)."""
    auc = pr_auc(stats.buckets)  # (B, T, 3)
    iou = _soft_iou(stats.soft)
    err, cells = stats.epe.unbind(-1)
    epe = torch.where(cells > 0, err / cells.clamp_min(1), torch.zeros_like(err))
    values = torch.stack(
        [auc[..., 0], auc[..., 1], iou[..., 0], iou[..., 1], epe, auc[..., 2], iou[..., 2]], -1
    )
    # "Has occupancy": the official max > 0, i.e. a cell ≠ 0 for values in [0, 1].
    has = stats.buckets[..., :2, 1, :].sum(-1) > 0  # (B, T, 2) observed, occluded
    before = torch.cat([torch.ones_like(has[:, :1]), has[:, :-1]], 1)
    flow = (has & before).any(-1)
    return values, torch.cat([has, flow.unsqueeze(-1)], -1)


class _SampleSums(NamedTuple):
    """Sums over samples of each sample's results (a pooled batch is one sample).

    value: (7,) Σ of the sample's mean over its counted waypoints; samples: (7,) samples with any;
    waypoint_value: (7, T) Σ of the waypoint's value where it counted; waypoint_samples: (7, T).
    """

    value: torch.Tensor
    samples: torch.Tensor
    waypoint_value: torch.Tensor
    waypoint_samples: torch.Tensor


def _sample_sums(stats: OccupancyFlowStats) -> _SampleSums:
    values, counted = _waypoint_values(stats)
    mask = counted[..., [_FAMILY[name] for name in METRICS]]  # (B, T, 7)
    n = mask.sum(1)  # (B, 7)
    kept = torch.where(mask, values, torch.zeros_like(values))
    per_sample = torch.where(n > 0, kept.sum(1) / n.clamp_min(1), torch.zeros_like(n, dtype=values.dtype))
    return _SampleSums(
        value=per_sample.sum(0),
        samples=(n > 0).sum(0),
        waypoint_value=kept.sum(0).T,
        waypoint_samples=mask.sum(0).T,
    )


def _results(sums: _SampleSums) -> dict[str, float]:
    value = torch.where(sums.samples > 0, sums.value / sums.samples.clamp_min(1), 0.0).tolist()
    wv = (sums.waypoint_value / sums.waypoint_samples).tolist()  # NaN where no sample counted
    results = dict(zip(METRICS, value, strict=True))
    for family, count in enumerate(COUNTS):
        row = METRICS.index(next(name for name in METRICS if _FAMILY[name] == family))
        results[count] = float(sums.waypoint_samples[row].sum())
    for i, name in enumerate(METRICS):
        for k, v in enumerate(wv[i]):
            results[f"{name}/waypoint_{k}"] = v
    return results


def metrics_from_stats(stats: OccupancyFlowStats, pool_batch: bool = True) -> dict[str, float]:
    """The metrics of :func:`occupancy_flow_stats`' statistics (see :func:`occupancy_flow_metrics`)."""
    return _results(_sample_sums(stats.pooled() if pool_batch else stats))


def per_waypoint(results: Mapping[str, float]) -> dict[str, list[float]]:
    """``{metric: [waypoint 0, 1, ...]}`` from the flat ``"<metric>/waypoint_<k>"`` keys (NaN: skipped)."""
    table: dict[str, list[float]] = {}
    for name in METRICS:
        keys = sorted(
            (int(key.rsplit("_", 1)[1]), key) for key in results if key.startswith(f"{name}/waypoint_")
        )
        table[name] = [float(results[key]) for _, key in keys]
    return table


def occupancy_flow_metrics(
    *,
    true_observed: Any,
    true_occluded: Any,
    true_flow: Any,
    true_flow_origin: Any,
    pred_observed: Any,
    pred_occluded: Any,
    pred_flow: Any,
    pool_batch: bool = True,
) -> dict[str, float]:
    """The official occupancy-flow metrics of a batch of vehicle grids (module docstring).

    Args:
        true_observed, true_occluded: (B, T, H, W) true occupancy of vehicles seen (not seen) in the
            history, in [0, 1], at T waypoints; NumPy or torch, any float dtype (computed in float32).
        true_flow: (B, T, H, W, 2) true backward flow of all vehicles, grid cells, (dx, dy) =
            (column, row) offsets from a cell to where its content was at the previous waypoint.
        true_flow_origin: (B, T, H, W) true all-vehicle occupancy at the previous waypoint (the
            current time for the first).
        pred_observed, pred_occluded: (B, T, H, W) predicted probabilities.
        pred_flow: (B, T, H, W, 2) predicted backward flow, as ``true_flow``.
        pool_batch: True (the official call): one curve per waypoint over the whole batch. False:
            each sample scored alone, then the mean over the samples where the metric is defined.

    Returns:
        floats: the seven :data:`METRICS` (mean over the waypoints that count, 0 if none; EPE in
        cells), the three :data:`COUNTS` (with ``pool_batch=False``: summed over samples), and per
        waypoint ``"<metric>/waypoint_<k>"`` (NaN where the waypoint did not count; see
        :func:`per_waypoint`).

    Raises:
        ValueError: shapes that disagree, or NaN / infinite values.
    """
    stats = occupancy_flow_stats(
        true_observed=true_observed,
        true_occluded=true_occluded,
        true_flow=true_flow,
        true_flow_origin=true_flow_origin,
        pred_observed=pred_observed,
        pred_occluded=pred_occluded,
        pred_flow=pred_flow,
    )
    return metrics_from_stats(stats, pool_batch=pool_batch)


# --------------------------------------------------------------------------------------------------
# The single metrics (the official private functions, pooled over whatever is passed)


def _as_grids(value: Any) -> torch.Tensor:
    """Any shape → (N, H, W) float32 (a 1-D or 2-D input is one grid row or one grid)."""
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value, dtype=np.float32))
    t = t.to(torch.float32)
    if t.dim() < 3:
        t = t.reshape(1, *([1] * (2 - t.dim())), *t.shape)
    return t.reshape(-1, t.shape[-2], t.shape[-1])


def occupancy_auc(true_occupancy: Any, pred_occupancy: Any) -> float:
    """Keras' PR AUC (100 thresholds, interpolation) of all the cells passed, any equal shapes."""
    y, p = _as_grids(true_occupancy), _as_grids(pred_occupancy)
    p = p.to(y.device)
    if y.shape != p.shape:
        raise ValueError(f"true {tuple(y.shape)} and predicted {tuple(p.shape)} occupancy differ in shape")
    offset = torch.zeros(len(p), 1, 1, device=p.device)
    return float(pr_auc(_buckets(y, p, offset).sum(0)))


def occupancy_soft_iou(true_occupancy: Any, pred_occupancy: Any) -> float:
    """Soft-IoU ``Σ p·y / (Σ p + Σ y − Σ p·y)`` (0 when the denominator is 0), any equal shapes."""
    y, p = _as_grids(true_occupancy), _as_grids(pred_occupancy)
    if y.shape != p.shape:
        raise ValueError(f"true {tuple(y.shape)} and predicted {tuple(p.shape)} occupancy differ in shape")
    return float(_soft_iou(_soft_sums(y, p.to(y.device)).sum(0)))


def flow_epe(true_flow: Any, pred_flow: Any) -> float:
    """Mean ‖true − predicted‖₂ over the cells whose true flow is not (0, 0); (..., 2) flows, cells."""
    tf, pf = (
        (f if isinstance(f, torch.Tensor) else torch.from_numpy(np.array(f, dtype=np.float32)))
        .to(torch.float32)
        .reshape(-1, 2)
        .contiguous()
        for f in (true_flow, pred_flow)
    )
    if tf.shape != pf.shape:
        raise ValueError(f"true {tuple(tf.shape)} and predicted {tuple(pf.shape)} flows differ in size")
    moving = torch.view_as_complex(tf) != 0
    err = torch.view_as_complex(tf - pf.to(tf.device)).abs()
    n = int(moving.sum())
    return float((err * moving).sum(dtype=torch.float64) / n) if n else 0.0


def flow_warp(origin: Any, flow: Any) -> torch.Tensor:
    """The official warp: ``origin`` (..., H, W) sampled bilinearly at each cell's (column + dx,
    row + dy) for ``flow`` (..., H, W, 2), zeros outside the grid. Returns (..., H, W) float32."""
    o = _as_grids(origin)
    f = flow if isinstance(flow, torch.Tensor) else torch.from_numpy(np.array(flow, dtype=np.float32))
    f = f.to(o.device, torch.float32).reshape(*o.shape, 2).contiguous()
    h, w = o.shape[-2:]
    cols = torch.arange(w, device=o.device, dtype=torch.float32)
    rows = torch.arange(h, device=o.device, dtype=torch.float32).view(h, 1)
    out = _warp(o, f, cols, rows)
    shape = origin.shape if isinstance(origin, torch.Tensor) else np.shape(origin)
    return out.reshape(tuple(shape))


# --------------------------------------------------------------------------------------------------
# torchmetrics


class OccupancyFlowMetric(Metric):
    """The official occupancy-flow metrics as a ``torchmetrics.Metric`` (DDP-safe sums).

    ``update(...)`` takes the keyword arguments of :func:`occupancy_flow_metrics` for a batch;
    ``compute()`` returns the same dict.

    - ``pool_batch=True`` (default): the state is the pooled statistics of every update — per
      waypoint the bucket counts of the three AUCs, the Soft-IoU sums and the EPE sum and count —
      so ``compute()`` equals one official call on the concatenation of all updates, and which
      waypoints count is decided on that whole set.
    - ``pool_batch=False``: each sample is scored alone (the official call with a batch of one) and
      the state is the sums of those results and how many samples each covered; ``compute()`` is the
      mean over samples (per waypoint: over the samples where it counted).

    Args:
        num_waypoints: T (8 for the Waymo challenge).
        pool_batch: see above.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    buckets: torch.Tensor
    soft: torch.Tensor
    epe: torch.Tensor
    value: torch.Tensor
    samples: torch.Tensor
    waypoint_value: torch.Tensor
    waypoint_samples: torch.Tensor

    def __init__(self, num_waypoints: int = 8, pool_batch: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_waypoints < 1:
            raise ValueError(f"OccupancyFlowMetric: num_waypoints must be at least 1, got {num_waypoints}")
        self.num_waypoints, self.pool_batch = num_waypoints, pool_batch
        self.classes = ("vehicle",)
        t, n = num_waypoints, len(METRICS)
        if pool_batch:
            self.add_state("buckets", torch.zeros(t, 3, 2, NUM_THRESHOLDS, dtype=torch.int64), "sum")
            self.add_state("soft", torch.zeros(t, 3, 3, dtype=torch.float64), "sum")
            self.add_state("epe", torch.zeros(t, 2, dtype=torch.float64), "sum")
        else:
            self.add_state("value", torch.zeros(n, dtype=torch.float64), "sum")
            self.add_state("samples", torch.zeros(n, dtype=torch.int64), "sum")
            self.add_state("waypoint_value", torch.zeros(n, t, dtype=torch.float64), "sum")
            self.add_state("waypoint_samples", torch.zeros(n, t, dtype=torch.int64), "sum")

    def update(self, **grids: Any) -> None:
        """Add a batch: the seven keyword arguments of :func:`occupancy_flow_metrics`, (B, T, ...)."""
        stats = occupancy_flow_stats(**grids)
        if stats.buckets.shape[1] != self.num_waypoints:
            raise ValueError(
                f"OccupancyFlowMetric: {stats.buckets.shape[1]} waypoints for a metric of {self.num_waypoints}"
            )
        if self.pool_batch:
            pooled = stats.pooled()
            self.buckets += pooled.buckets[0].to(self.buckets.device)
            self.soft += pooled.soft[0].to(self.soft.device)
            self.epe += pooled.epe[0].to(self.epe.device)
        else:
            sums = _sample_sums(stats)
            self.value += sums.value.to(self.value.device)
            self.samples += sums.samples.to(self.samples.device)
            self.waypoint_value += sums.waypoint_value.to(self.waypoint_value.device)
            self.waypoint_samples += sums.waypoint_samples.to(self.waypoint_samples.device)

    def compute(self) -> dict[str, float]:
        if self.pool_batch:
            stats = OccupancyFlowStats(self.buckets[None], self.soft[None], self.epe[None])
            return _results(_sample_sums(stats))
        return _results(_SampleSums(self.value, self.samples, self.waypoint_value, self.waypoint_samples))


class OccupancyEvaluator(BaseEvaluator):
    """The occupancy task's plug-in: :class:`OccupancyFlowMetric` of the model's vehicle grids and of
    each label baseline the batches carry (``OccupancyTargets.baselines``).

    ``update(outputs, batch)`` takes the task's :class:`OccupancyForecast` (s) of probabilities —
    one batched forecast (B, T, A, H, W) or one per sample — and ``batch.occupancy``; the vehicle
    channel (:data:`AGENT_CLASSES` index 0) is scored. ``compute()`` gives the model's results under
    their own names and each baseline's as ``"<baseline>/<key>"``.

    Args:
        num_waypoints: T.
        pool_batch: as :class:`OccupancyFlowMetric`.
        baselines: the baselines to score when a batch carries them.
    """

    kind = object

    def __init__(
        self,
        num_waypoints: int = 8,
        pool_batch: bool = True,
        baselines: Sequence[str] = ("copy_forward", "constant_velocity"),
    ) -> None:
        super().__init__()
        self.baselines = nn.ModuleDict(
            {name: OccupancyFlowMetric(num_waypoints, pool_batch) for name in baselines}
        )
        self.metric = OccupancyFlowMetric(num_waypoints, pool_batch)
        self.class_names = ("vehicle",)

    def bind(self, class_names: Sequence[str]) -> None:
        """Nothing to bind: the metric scores vehicles (kept for the evaluator contract)."""

    @staticmethod
    def _forecast(outputs: Sequence[OccupancyForecast]) -> OccupancyForecast:
        def cat(field: str) -> torch.Tensor:  # batched (B, T, ...) or one sample (T, ...) each
            parts = [getattr(o, field) for o in outputs]
            return torch.cat(parts if parts[0].dim() == 5 else [p[None] for p in parts])

        return OccupancyForecast(observed=cat("observed"), occluded=cat("occluded"), flow=cat("flow"))

    @staticmethod
    def _grids(forecast: OccupancyForecast, targets: OccupancyTargets) -> dict[str, torch.Tensor]:
        return {
            "true_observed": targets.observed[:, :, 0],
            "true_occluded": targets.occluded[:, :, 0],
            "true_flow": targets.flow,
            "true_flow_origin": targets.flow_origin,
            "pred_observed": forecast.observed[:, :, 0],
            "pred_occluded": forecast.occluded[:, :, 0],
            "pred_flow": forecast.flow,
        }

    def update(self, outputs: Sequence[OccupancyForecast], batch: Batch) -> None:
        """Add one batch (see the class docstring).

        Raises:
            ValueError: the batch has no occupancy targets, or the forecasts do not cover its samples.
        """
        targets = batch.occupancy
        if targets is None:
            raise ValueError(f"{type(self).__name__}: the batch has no occupancy targets to score against")
        forecast = self._forecast(outputs)
        if len(forecast.observed) != len(targets.observed):
            raise ValueError(
                f"{type(self).__name__}: {len(forecast.observed)} forecasts for {len(targets.observed)} samples"
            )
        self.bound().update(**self._grids(forecast, targets))
        for name, metric in self.baselines.items():
            if name in targets.baselines:
                metric.update(**self._grids(targets.baselines[name], targets))

    def compute(self) -> dict[str, float]:
        results = self.bound().compute()
        for name, metric in self.baselines.items():
            if metric.update_called:
                results |= {f"{name}/{k}": v for k, v in metric.compute().items()}
        return results

    def reset(self) -> None:
        self.bound().reset()
        for metric in self.baselines.values():
            metric.reset()

    @property
    def progress_key(self) -> str | None:
        return "flow_grounded_auc"

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        """The seven metrics of the model and of each baseline (per-waypoint values left to ``compute``)."""
        return {k: v for k, v in super().headline(results).items() if "/waypoint_" not in k}


# --------------------------------------------------------------------------------------------------
# MotionNet


MOTION_GROUPS: tuple[str, ...] = ("static", "slow", "fast")
"""MotionNet's speed groups (docs/OCCUPANCY.md §2)."""


def motion_displacement_errors(
    true_disp: Any,
    pred_disp: Any,
    valid: Any | None,
    cell_size: float,
    *,
    horizon_s: float = 1.0,
    true_disp_1s: Any | None = None,
    static_speed: float = 0.2,
    fast_speed: float = 5.0,
    max_speed: float = 20.0,
) -> dict[str, float]:
    """MotionNet's per-cell displacement errors, grouped by true speed (docs/OCCUPANCY.md §2).

    The error of a cell is ‖true − predicted displacement‖₂ in metres. Groups by the true speed
    ‖true displacement over 1 s‖ (m/s): **static** ≤ ``static_speed`` (0.2 m/s, MotionNet's
    0.01 m per 20 Hz sweep), **slow** above that and < ``fast_speed`` (5 m/s), **fast** in
    [``fast_speed``, ``max_speed``) (5–20 m/s); faster cells are left out, as MotionNet does.

    Args:
        true_disp, pred_disp: (..., 2) per-cell displacement over ``horizon_s`` seconds in grid cells
            (this project's flow; its backward sign is fine as long as both share it).
        valid: (...) bool, the cells to score (MotionNet: non-empty cells with a valid ground truth
            inside the ROI); None: all.
        cell_size: metres per cell (:attr:`~perception.structures.occupancy.OccupancyGrid.cell_size`).
        horizon_s: the seconds ``true_disp`` and ``pred_disp`` span (MotionNet's headline: 1 s).
        true_disp_1s: (..., 2) the true displacement over 1 s (cells) that decides the group;
            default ``true_disp / horizon_s`` (constant velocity).

    Returns:
        ``"<group>/mean"`` and ``"<group>/median"`` (metres; NaN for an empty group) and
        ``"<group>/count"`` (cells) for each of :data:`MOTION_GROUPS`.
    """

    def as_array(value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=np.float64)

    true, pred = as_array(true_disp), as_array(pred_disp)
    if true.shape != pred.shape or true.shape[-1:] != (2,):
        raise ValueError(f"true {true.shape} and predicted {pred.shape} displacements must be equal (..., 2)")
    mask = np.ones(true.shape[:-1], bool) if valid is None else as_array(valid).astype(bool)
    if mask.shape != true.shape[:-1]:
        raise ValueError(f"valid has shape {mask.shape}; expected {true.shape[:-1]}")
    one_second = true / horizon_s if true_disp_1s is None else as_array(true_disp_1s)
    if one_second.shape != true.shape:
        raise ValueError(f"true_disp_1s has shape {one_second.shape}; expected {true.shape}")
    speed = np.linalg.norm(one_second, axis=-1) * cell_size
    error = np.linalg.norm(true - pred, axis=-1) * cell_size
    groups = {
        "static": speed <= static_speed,
        "slow": (speed > static_speed) & (speed < fast_speed),
        "fast": (speed >= fast_speed) & (speed < max_speed),
    }
    results: dict[str, float] = {}
    for name in MOTION_GROUPS:
        e = error[groups[name] & mask]
        results[f"{name}/mean"] = float(e.mean()) if e.size else math.nan
        results[f"{name}/median"] = float(np.median(e)) if e.size else math.nan
        results[f"{name}/count"] = float(e.size)
    return results


# --------------------------------------------------------------------------------------------------
# Files and the command line


_TARGET_ARRAYS = {
    "observed": "true_observed",
    "occluded": "true_occluded",
    "flow": "true_flow",
    "flow_origin": "true_flow_origin",
}
_PREDICTION_ARRAYS = {"observed": "pred_observed", "occluded": "pred_occluded", "flow": "pred_flow"}


def _read_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive with {', '.join(names)}")
    with archive:
        missing = [n for n in names if n not in archive.files]
        if missing:
            raise ValueError(
                f"{path}: no array {', '.join(repr(n) for n in missing)} (it holds {sorted(archive.files)})"
            )
        try:
            return {n: archive[n] for n in names}
        except ValueError as err:  # object arrays need pickle
            raise ValueError(f"{path}: {err}") from None


def _occupancy(path: Path, name: str, a: np.ndarray, expected: tuple[int, ...] | None) -> np.ndarray:
    where = f"{path}: {name!r}"
    if a.ndim == 5 and a.shape[2] == len(AGENT_CLASSES):
        a = a[:, :, 0]  # the vehicle channel
    if a.ndim != 4 or (expected is not None and a.shape != expected):
        want = "(B, T, H, W) or (B, T, A, H, W)" if expected is None else f"{expected} (B, T, H, W)"
        raise ValueError(f"{where} has shape {a.shape}; expected {want}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)  # the submission's quantisation
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype.kind != "f":
        raise ValueError(f"{where} has dtype {a.dtype}; expected float in [0, 1] or uint8 (p · 255)")
    if not np.isfinite(a).all():
        raise ValueError(f"{where} has NaN or infinite values")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise ValueError(f"{where} has values in [{a.min()}, {a.max()}]; expected [0, 1]")
    return a


def _flow(path: Path, name: str, a: np.ndarray, expected: tuple[int, ...]) -> np.ndarray:
    where = f"{path}: {name!r}"
    if a.shape != (*expected, 2):
        raise ValueError(f"{where} has shape {a.shape}; expected {(*expected, 2)} (B, T, H, W, 2)")
    if a.dtype == np.int8:
        return a  # the submission's rounded cells
    if a.dtype.kind != "f":
        raise ValueError(f"{where} has dtype {a.dtype}; expected float or int8 (grid cells)")
    if not np.isfinite(a).all():
        raise ValueError(f"{where} has NaN or infinite values")
    return a


def load_grids(targets: str | Path, predictions: str | Path) -> dict[str, np.ndarray]:
    """The keyword arguments of :func:`occupancy_flow_metrics` from two ``.npz`` files.

    ``targets`` holds ``observed``, ``occluded`` (B, T, H, W), ``flow`` (B, T, H, W, 2) and
    ``flow_origin`` (B, T, H, W); ``predictions`` holds ``observed``, ``occluded`` and ``flow``.
    Occupancies may carry an agent-class axis (B, T, A, H, W), A = len(AGENT_CLASSES), of which the
    vehicle channel is scored; they are floats in [0, 1] (or bool) or the submission's uint8
    (p · 255); flows are floats or the submission's int8, grid cells.

    Raises:
        FileNotFoundError, ValueError: a missing file or array, a wrong shape, dtype or value, each
            naming the file and the array.
    """
    targets, predictions = Path(targets), Path(predictions)
    t = _read_npz(targets, list(_TARGET_ARRAYS))
    p = _read_npz(predictions, list(_PREDICTION_ARRAYS))
    observed = _occupancy(targets, "observed", t["observed"], None)
    shape = observed.shape
    if shape[0] == 0:
        raise ValueError(f"{targets}: no samples (B = 0)")
    grids = {
        "true_observed": observed,
        "true_occluded": _occupancy(targets, "occluded", t["occluded"], shape),
        "true_flow_origin": _occupancy(targets, "flow_origin", t["flow_origin"], shape),
        "true_flow": _flow(targets, "flow", t["flow"], shape),
        "pred_observed": _occupancy(predictions, "observed", p["observed"], shape),
        "pred_occluded": _occupancy(predictions, "occluded", p["occluded"], shape),
        "pred_flow": _flow(predictions, "flow", p["flow"], shape),
    }
    return grids


def format_results(results: Mapping[str, float]) -> str:
    """A table: one row per metric, its mean and its value per waypoint ("-": the waypoint did not count)."""
    table = per_waypoint(results)
    t = max((len(v) for v in table.values()), default=0)
    width = max(len(n) for n in (*METRICS, *COUNTS, "flow_epe (cells)"))
    lines = [f"{'metric':<{width}}  {'mean':>7}" + "".join(f"  {'wp' + str(k):>7}" for k in range(t))]
    for name in METRICS:
        label = "flow_epe (cells)" if name == "flow_epe" else name
        cells = "".join(f"  {'-' if math.isnan(v) else f'{v:.4f}':>7}" for v in table[name])
        lines.append(f"{label:<{width}}  {results[name]:7.4f}{cells}")
    lines.append("-" * len(lines[0]))
    lines += [f"{name:<{width}}  {results[name]:7.0f}" for name in COUNTS]
    return "\n".join(lines)


def format_comparison(
    results: Mapping[str, float],
    forecasters: Sequence[str] = ("model", "copy_forward", "constant_velocity"),
    metrics: Sequence[str] = (
        "observed_auc",
        "observed_iou",
        "flow_grounded_auc",
        "flow_grounded_iou",
        "flow_epe",
    ),
    waypoint_times: Sequence[float] | None = None,
) -> str:
    """A Markdown table of several forecasters' metrics, one row per (metric, forecaster), the mean
    and each waypoint as columns, from an :class:`OccupancyEvaluator`'s results (the model's keys
    bare, a baseline's as ``"<baseline>/<key>"``). Forecasters the results lack are left out."""

    def view(name: str) -> dict[str, float] | None:
        prefix = "" if name == "model" else f"{name}/"
        if f"{prefix}{metrics[0]}" not in results:
            return None
        return {
            k[len(prefix) :]: v
            for k, v in results.items()
            if k.startswith(prefix) and "/" not in k[len(prefix) :]
        } | {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix) and "/waypoint_" in k}

    views = {n: v for n in forecasters if (v := view(n)) is not None}
    t = max((len(per_waypoint(v)[metrics[0]]) for v in views.values()), default=0)
    heads = (
        [f"{w:g} s" for w in waypoint_times] if waypoint_times is not None else [f"wp{k}" for k in range(t)]
    )
    lines = [
        "| metric | forecaster | mean | " + " | ".join(heads) + " |",
        "| --- | --- | ---: |" + " ---: |" * t,
    ]
    for metric in metrics:
        for name, v in views.items():
            cells = " | ".join("–" if math.isnan(x) else f"{x:.3f}" for x in per_waypoint(v)[metric])
            lines.append(f"| {metric} | {name} | {v[metric]:.3f} | {cells} |")
    return "\n".join(lines)


def _json(results: Mapping[str, float]) -> dict[str, Any]:
    def clean(v: float) -> float | None:
        return None if math.isnan(v) else v

    out: dict[str, Any] = {k: results[k] for k in (*METRICS, *COUNTS)}
    out["per_waypoint"] = {k: [clean(v) for v in vs] for k, vs in per_waypoint(results).items()}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perception.eval.occupancy TARGETS.npz PREDICTIONS.npz [--per-sample] [--json OUT]``."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.eval.occupancy",
        description="Waymo occupancy-flow metrics (observed / occluded AUC and Soft-IoU, flow EPE, "
        "flow-grounded AUC and Soft-IoU) of vehicle grids, as the official compute_occupancy_flow_metrics.",
    )
    parser.add_argument("targets", type=Path, help=".npz with observed, occluded, flow, flow_origin")
    parser.add_argument("predictions", type=Path, help=".npz with observed, occluded, flow")
    parser.add_argument(
        "--per-sample",
        action="store_true",
        help="score each sample alone and average (default: one official call pooling every sample)",
    )
    parser.add_argument(
        "--json", type=Path, help="write the metrics and per_waypoint lists (null: did not count) here"
    )
    args = parser.parse_args(argv)
    try:
        grids = load_grids(args.targets, args.predictions)
        results = occupancy_flow_metrics(**grids, pool_batch=not args.per_sample)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(_json(results), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
