"""Waymo Open Dataset 3D detection metric: mAP and mAPH per class and difficulty level (and range).

The definition is the official one, read from the C++ of ``waymo-research/waymo-open-dataset``
(``waymo_open_dataset/metrics/``) with the configuration of its command-line tool
(``metrics/tools/compute_detection_metrics_main.cc``, ``GetConfig``):

- **Ground truth** (``compute_detection_metrics_main.cc``): a box with ``num_lidar_points_in_box <= 0``
  is dropped, whatever its difficulty. An unset (or ``UNKNOWN`` = 0) detection difficulty becomes
  ``LEVEL_2`` for ≤ 5 points, else ``LEVEL_1``.
- **Frames** are keyed by context name and timestamp (the tool adds the camera name, unset for lidar
  objects). Each frame is matched on its own; counts are summed over frames (``detection_metrics.cc``).
- **Breakdowns** (``breakdown_generator.cc``): ``OBJECT_TYPE`` shards objects by their type;
  ``RANGE`` by type and the distance of the box centre from the origin of the vehicle frame, in 3D
  (``sqrt(x² + y² + z²)``, not in the x–y plane), shards ``[0, 30)``, ``[30, 50)``, ``[50, +inf)`` m.
  Ground truths *and* predictions are sharded by their own box, and matching runs inside a shard
  (neither breakdown is "ground-truth only"), so a prediction at 29.9 m can not match a ground truth
  at 30.1 m in the range breakdown (it is a FP in one shard and the ground truth a miss in the other),
  while it matches in the per-type result. ``TYPE_UNKNOWN`` objects are in no shard.
- **Score cutoffs** ``0, 0.01, …, 0.99, 1.0`` (float32); a prediction takes part at a cutoff when
  its score ≥ the cutoff (``metrics_utils.cc``, ``BuildSubsets``). Matching is redone at every
  cutoff, on the predictions that pass it (``ComputeDetectionMeasurementsPerBreakdownShard``).
- **Matching** (``matcher.cc``, ``HungarianMatcher``): per frame and shard, a maximum-weight
  assignment of predictions to ground truths with integer weights ``round(IoU · 10⁶)`` (IoU as float32,
  ``QuantizedIoU``), where pairs with ``IoU < threshold`` (compared in float32; Vehicle 0.7,
  Pedestrian 0.5, Sign 0.5, Cyclist 0.5; a pair *at* the threshold can match) or of different types
  weigh 0; assigned pairs that can not match are dropped. IoU (``iou.cc``, ``TYPE_3D``): rotated BEV
  intersection × vertical overlap / union volume, computed here by
  :func:`perception.ops.iou3d.boxes_iou3d`; 0 when a length, width or height of either box is
  ≤ 0.01 m or ≥ 10⁶ m.
- **Counts** (``detection_metrics.cc``, ``ComputeDetectionMeasurementFromMatchingResult``): a matched
  prediction is a TP at every level, whatever its ground truth's level; an unmatched one is a FP unless
  ``overlap_with_nlz`` is set (then it is nothing); an unmatched ground truth is a FN at level L only
  when its own level ≤ L. So LEVEL_1 and LEVEL_2 differ only in their FN, and a prediction matched
  to a LEVEL_2 ground truth is a TP at LEVEL_1 too.
- **Heading accuracy** of a TP (``metrics_utils.cc``, ``ComputeHeadingAccuracy``): both headings
  wrapped to [-π, π), ``Δ = |a − b|``, ``Δ = 2π − Δ`` when ``Δ > π``, then ``clip(1 − Δ/π, 0, 1)``.
  ``min_heading_accuracy`` is −1 by default (``protos/metrics.proto``), so every TP counts.
- **Precision and recall** at each cutoff (``ToDetectionMetrics``), float32: ``P = TP / (TP + FP)``
  (0 when TP + FP = 0), ``P_H = ΣHA / (TP + FP)``, ``R = TP / (TP + FN)`` (0 when TP + FN = 0), the
  same recall for mAPH (``recalls_ha_weighted`` uses TP); where the recall is 0 the precision is
  set to 1. ``min_precision`` is 0 by default, so no precision is zeroed.
- **Area** (``metrics_utils.cc``, ``ComputeMeanAveragePrecision``, ``desired_recall_delta`` 0.05): a
  map recall → max precision (recall 0 starts at precision 1), walked from the highest recall down
  keeping the running max of the precision (the monotone curve); where two consecutive recalls are
  more than 0.05 (+1e-6) apart, points are inserted every 0.05 below the higher one, carrying its
  running max, so the curve steps down within 0.05 of each recall; the point at recall 0 takes the
  precision of the point after it; the area is the trapezoid sum over these points, from recall 0 to
  the highest recall reached. It is *not* an interpolation at fixed recall points. Computed in
  float32 as the official code does; the result is clipped to [0, 1] (the float32 sum can reach
  1.0000001).
- **No ground truth** in a shard (at a level): every recall is 0, the map holds only recall 0, and
  the official code returns an area of 0: mAP = mAPH = 0 (not NaN). Likewise with ground truth and no
  true positive.

Choices and differences:

- Ties in the assignment (equal total weight, e.g. two identical predictions) are broken by
  :func:`scipy.optimize.linear_sum_assignment` on objects sorted by score, box and flags, so the
  result does not depend on the input order; the official Hungarian may break them otherwise, which can
  change only which of two equally good predictions is the TP (its heading, its score).
- IoU is the exact rotated-box overlap (agrees with shapely). Cross-checked against the official
  package (``waymo-open-dataset-tf-2-12-0`` 1.6.4, its TF op ``py_metrics_ops.detection_metrics`` in a
  throw-away Python 3.11 environment with tensorflow 2.12 and numpy 1.23.5; ``tools/waymo_metrics_crosscheck.py``)
  on the official ``fake_ground_truths.bin`` / ``fake_predictions.bin`` (20 frames, 1,010 / 2,263
  objects) and on two synthetic splits of 4–6 k objects a side with edge cases (heading flips,
  duplicates, 0–6-point boxes, explicit levels, boxes at exactly 30 and 50 m, scores at the cutoffs,
  prediction-only frames): all 32 keys × mAP and mAPH agree, mAP exactly, mAPH to 2.4e-7. (The results
  listed in the comment of ``compute_detection_metrics_main.cc`` are older than the 1.6.4 code: they
  differ from both on four VEHICLE values, by one heading-flipped exact-copy prediction.)
- Sums of heading accuracy are accumulated in float64 (the official code sums float32 per frame), so
  mAPH can differ in the 7th digit.
- Predictions for frames with no ground truth: the official tool evaluates them as frames without
  ground truth (all FPs). Here that is an error by default (a submission for the wrong split is a
  common mistake), ``unknown_frames="skip"`` leaves them out with a logged count and some frame names,
  ``"keep"`` does what the official tool does. A ``.bin`` file holds objects, not frames: a frame
  whose ground truth has no objects at all is absent from the ground-truth file, so its predictions
  look unknown; use ``"keep"`` for a split with such frames.

Result keys (:func:`result_keys`): ``{VEHICLE|PEDESTRIAN|CYCLIST|SIGN}_LEVEL_{1|2}`` for the
``OBJECT_TYPE`` breakdown (the official name is ``OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1``) and
``{CLASS}_LEVEL_{1|2}_RANGE_{[0, 30)|[30, 50)|[50, +inf)}`` for ``RANGE`` (official:
``RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_1``), each ``{"mAP": float, "mAPH": float}`` in [0, 1].

Entry points: :func:`evaluate` (per-frame objects in memory), :func:`compute_curves` (the same with
the per-cutoff counts and PR curves), :func:`evaluate_files` (submission ``.bin`` files),
:func:`read_objects` / :func:`write_objects` (``metrics.Objects`` protos, from
:mod:`perception.data.waymo.submission`), :class:`WaymoAP` (a ``torchmetrics.Metric``),
:func:`mean_average_precision` (the official area of a PR curve) and the command line
``python -m perception.eval.waymo GT.bin PRED.bin [--json OUT] [--breakdown RANGE]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from perception.data.io import atomic_write_bytes
from perception.data.waymo.submission import (
    frame_name,
    object_boxes,
    object_vector,
    read_objects,
    type_codes,
    write_objects,
)
from perception.eval._inputs import FrameRowsMetric, field
from perception.ops.iou3d import boxes_iou3d
from perception.structures.waymo import TYPE_CODES, FrameKey, WaymoObjects

__all__ = [
    "BREAKDOWNS",
    "DEFAULT_CLASSES",
    "IOU_THRESHOLDS",
    "RANGE_SHARDS",
    "SCORE_CUTOFFS",
    "TYPE_CODES",
    "FrameKey",
    "PRCurve",
    "WaymoAP",
    "WaymoObjects",
    "compute_curves",
    "evaluate",
    "evaluate_files",
    "format_results",
    "main",
    "mean_average_precision",
    "read_objects",
    "result_keys",
    "write_objects",
]

log = logging.getLogger(__name__)

_TYPE_NAMES = {code: name for name, code in TYPE_CODES.items()}

DEFAULT_CLASSES: tuple[str, ...] = ("VEHICLE", "PEDESTRIAN", "CYCLIST", "SIGN")
IOU_THRESHOLDS: dict[str, float] = {"VEHICLE": 0.7, "PEDESTRIAN": 0.5, "CYCLIST": 0.5, "SIGN": 0.5}
"""3D IoU a prediction needs to match a ground truth (the official tool's ``iou_thresholds``)."""

SCORE_CUTOFFS: NDArray[np.float32] = np.append(np.arange(100) * 0.01, 1.0).astype(np.float32)
"""The 101 score cutoffs ``0, 0.01, ..., 0.99, 1.0`` as the official tool sets them (float32)."""

BREAKDOWNS: tuple[str, ...] = ("OBJECT_TYPE", "RANGE")
RANGE_SHARDS: tuple[str, ...] = ("[0, 30)", "[30, 50)", "[50, +inf)")
"""Range shards of the ``RANGE`` breakdown: centre distance ``sqrt(x² + y² + z²)`` in metres."""
_RANGE_EDGES = (30.0, 50.0)
_LEVELS = (1, 2)
_DESIRED_RECALL_DELTA = 0.05
_MAX_IOU = np.float32(1000 * 1000)  # iou.cc kMaxIoU: IoU quantised to integers for the Hungarian
_MIN_BOX_DIM, _MAX_BOX_DIM = 1e-2, 1e6  # iou.cc: IoU 0 for boxes with a side <= 1e-2 or >= 1e6
_LEVEL2_MAX_POINTS = 5  # compute_detection_metrics_main.cc kDetectionLevel2NumPointsThreshold
_UNKNOWN_FRAMES = ("error", "skip", "keep")

# Threshold per type code (float32, as the official config stores it); type 0 never matches.
_THRESHOLDS32 = np.array([np.inf] + [IOU_THRESHOLDS[_TYPE_NAMES[c]] for c in (1, 2, 3, 4)], dtype=np.float32)

# Per-object rows (float64). Ground truth: box (7), type, level. Predictions: box (7), type, score,
# overlap_with_nlz.
_GT_COLS, _PD_COLS = 9, 10


# --------------------------------------------------------------------------------------------------
# Per-frame objects


def _gt_rows(obj: Any, what: str = "ground truth") -> NDArray[np.float64]:
    """(k, 9) ground-truth rows of one frame: box, type, level (the official tool's preprocessing:
    boxes without lidar points dropped, unset difficulty from the point count)."""
    boxes = object_boxes(obj, what)
    n = len(boxes)
    types = type_codes(field(obj, "types", "type", "names"), n, what) if n else np.zeros(0, np.int64)
    difficulty = field(obj, "difficulty", "detection_difficulty_level")
    level = (
        np.zeros(n, np.int64)
        if difficulty is None
        else object_vector(difficulty, n, np.int64, what, "levels")
    )
    bad = sorted(set(level[(level < 0) | (level > 2)].tolist()))
    if bad:
        raise ValueError(f"{what}: difficulty levels must be 0 (unset), 1 or 2, got {bad}")
    points = field(obj, "num_lidar_points", "num_lidar_points_in_box")
    if points is None:
        if (level == 0).any():
            raise ValueError(
                f"{what}: unset difficulty (0) needs 'num_lidar_points' to derive the level from"
            )
        keep = np.ones(n, bool)
    else:
        points = object_vector(points, n, np.int64, what, "point counts")
        keep = points > 0
        level = np.where(level == 0, np.where(points <= _LEVEL2_MAX_POINTS, 2, 1), level)
    rows = np.column_stack([boxes, types, level]).reshape(-1, _GT_COLS)
    return rows[keep]


def _pd_rows(obj: Any, what: str = "predictions") -> NDArray[np.float64]:
    """(k, 10) prediction rows of one frame: box, type, score (float32 value), overlap_with_nlz."""
    boxes = object_boxes(obj, what)
    n = len(boxes)
    if n == 0:
        return np.zeros((0, _PD_COLS))
    types = type_codes(field(obj, "types", "type", "names"), n, what)
    scores = field(obj, "scores", "score")
    if scores is None:
        raise ValueError(f"{what}: needs 'scores' (one confidence per box)")
    scores = object_vector(scores, n, np.float32, what, "scores")
    if np.isnan(scores).any():
        raise ValueError(f"{what}: scores contain NaN")
    nlz = field(obj, "overlap_with_nlz")
    nlz = np.zeros(n, bool) if nlz is None else object_vector(nlz, n, bool, what, "overlap_with_nlz flags")
    return np.column_stack([boxes, types, scores.astype(np.float64), nlz])


def _names_list(keys: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(frame_name(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _stack(rows: list[np.ndarray], cols: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    return (np.concatenate(rows) if rows else np.zeros((0, cols))).reshape(-1, cols), counts


def _frames_to_rows(
    gt: Mapping[Any, Any] | Sequence[Any], pred: Mapping[Any, Any] | Sequence[Any], unknown_frames: str
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Rows and per-frame counts of ground truth and predictions, frame by frame."""
    if unknown_frames not in _UNKNOWN_FRAMES:
        raise ValueError(f"unknown_frames must be one of {_UNKNOWN_FRAMES}, got {unknown_frames!r}")
    empty: dict[str, Any] = {"boxes": np.zeros((0, 7)), "types": np.zeros(0, np.int64)}
    if isinstance(gt, Mapping) and isinstance(pred, Mapping):
        unknown = [key for key in pred if key not in gt]
        keys = list(gt)
        if unknown:
            num_objects = sum(
                len(object_boxes(pred[k], f"predictions of frame {frame_name(k)}")) for k in unknown
            )
            message = (
                f"predictions ({num_objects} objects) for {len(unknown)} frames that have no ground truth: "
                f"{_names_list(unknown)}"
            )
            if unknown_frames == "error":
                raise ValueError(
                    f"{message}; unknown_frames='skip' leaves them out, 'keep' counts them as frames "
                    "without ground truth (the official tool's behaviour; a frame whose ground truth "
                    "has no objects is absent from a .bin file)"
                )
            if unknown_frames == "skip":
                log.warning("skipping %s", message)
            else:
                log.info("evaluating %s as frames without ground truth", message)
                keys += unknown
        gt_frames = [gt.get(k, empty) for k in keys]
        pd_frames = [pred.get(k, empty) for k in keys]
        names = [frame_name(k) for k in keys]
    elif isinstance(gt, Mapping) or isinstance(pred, Mapping):
        raise TypeError("gt and pred must both be mappings (frame key → objects) or both sequences")
    else:
        if len(gt) != len(pred):
            raise ValueError(f"{len(gt)} ground-truth frames but {len(pred)} prediction frames")
        gt_frames, pd_frames = list(gt), list(pred)
        names = [str(i) for i in range(len(gt_frames))]
    gt_rows, gt_counts = _stack(
        [_gt_rows(g, f"ground truth of frame {n}") for g, n in zip(gt_frames, names, strict=True)], _GT_COLS
    )
    pd_rows, pd_counts = _stack(
        [_pd_rows(p, f"predictions of frame {n}") for p, n in zip(pd_frames, names, strict=True)], _PD_COLS
    )
    return gt_rows, gt_counts, pd_rows, pd_counts


# --------------------------------------------------------------------------------------------------
# Matching


def _offsets(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def _box_ok(boxes: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Boxes whose IoU the official code computes (sides in (0.01, 1e6) m); others have IoU 0."""
    dims = boxes[:, 3:6]
    return ((dims > _MIN_BOX_DIM) & (dims < _MAX_BOX_DIM)).all(axis=1)


def _normalize_angle(angle: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.mod(angle + np.pi, 2 * np.pi) - np.pi


def _heading_accuracy(pd_heading: NDArray[np.float64], gt_heading: NDArray[np.float64]) -> NDArray:
    """``ComputeHeadingAccuracy`` (float32 like the official code), as float64."""
    a = _normalize_angle(pd_heading).astype(np.float32)
    b = _normalize_angle(gt_heading).astype(np.float32)
    diff = np.abs(a - b).astype(np.float64)
    diff = np.where(diff > np.pi, (2.0 * np.pi - diff).astype(np.float32), diff)
    return np.clip(1.0 - diff / np.pi, 0.0, 1.0).astype(np.float32).astype(np.float64)


@dataclass
class _Edges:
    """Prediction–ground-truth pairs that can match (same frame and type, IoU ≥ threshold)."""

    pd: NDArray[np.int64]  # (E,) prediction row
    gt: NDArray[np.int64]  # (E,) ground-truth row
    weight: NDArray[np.int64]  # (E,) round(IoU · 1e6), > 0
    ha: NDArray[np.float64]  # (E,) heading accuracy of the pair


def _edges(gt: NDArray, gt_counts: NDArray, pd: NDArray, pd_counts: NDArray) -> _Edges:
    gt_off, pd_off = _offsets(gt_counts), _offsets(pd_counts)
    gt_types, pd_types = gt[:, 7].astype(np.int64), pd[:, 7].astype(np.int64)
    gt_ok = _box_ok(gt[:, :7]) & (gt_types > 0)
    pd_ok = _box_ok(pd[:, :7]) & (pd_types > 0)
    threshold = _THRESHOLDS32[pd_types]
    gt_boxes, pd_boxes = np.ascontiguousarray(gt[:, :7]), np.ascontiguousarray(pd[:, :7])
    parts_pd, parts_gt, parts_iou = [], [], []
    for f in range(len(gt_counts)):
        g0, g1, p0, p1 = gt_off[f], gt_off[f + 1], pd_off[f], pd_off[f + 1]
        if g0 == g1 or p0 == p1:
            continue
        iou = boxes_iou3d(pd_boxes[p0:p1], gt_boxes[g0:g1]).astype(np.float32)
        can = iou >= threshold[p0:p1, None]
        can &= pd_types[p0:p1, None] == gt_types[None, g0:g1]
        can &= pd_ok[p0:p1, None] & gt_ok[None, g0:g1]
        pi, gi = np.nonzero(can)
        if len(pi):
            parts_pd.append(pi + p0)
            parts_gt.append(gi + g0)
            parts_iou.append(iou[pi, gi])
    if not parts_pd:
        z = np.zeros(0, np.int64)
        return _Edges(z, z, z, np.zeros(0))
    e_pd, e_gt = np.concatenate(parts_pd), np.concatenate(parts_gt)
    iou = np.concatenate(parts_iou)
    # QuantizedIoU: std::round(float IoU * kMaxIoU) (half away from zero; values are >= 0).
    weight = np.floor((iou * _MAX_IOU).astype(np.float64) + 0.5).astype(np.int64)
    ha = _heading_accuracy(pd[e_pd, 6], gt[e_gt, 6])
    return _Edges(e_pd, e_gt, weight, ha)


def _shards(rows: NDArray[np.float64], breakdown: str) -> NDArray[np.int64]:
    """(N,) shard of each object in ``breakdown`` (-1: in none), as ``breakdown_generator.cc``."""
    types = rows[:, 7].astype(np.int64)
    if breakdown == "OBJECT_TYPE":
        shard = types - 1
    elif breakdown == "RANGE":
        distance = np.sqrt(rows[:, 0] ** 2 + rows[:, 1] ** 2 + rows[:, 2] ** 2)
        shard = 3 * (types - 1) + (distance >= _RANGE_EDGES[0]) + (distance >= _RANGE_EDGES[1])
    else:
        raise ValueError(f"unknown breakdown {breakdown!r}; supported: {BREAKDOWNS}")
    return np.where(types > 0, shard, -1).astype(np.int64)


def _num_shards(breakdown: str) -> int:
    return 4 if breakdown == "OBJECT_TYPE" else 12


@dataclass
class _Counts:
    """Per shard and score cutoff: TP, FP, FN at LEVEL_1 and LEVEL_2, and the TPs' heading accuracy."""

    tp: NDArray[np.int64]  # (S, C)
    fp: NDArray[np.int64]
    fn1: NDArray[np.int64]
    fn2: NDArray[np.int64]
    sum_ha: NDArray[np.float64]


def _count(gt: NDArray, pd: NDArray, edges: _Edges, breakdown: str, cutoffs: NDArray[np.float32]) -> _Counts:
    """Matching at every cutoff for every frame and shard, summed per shard.

    A prediction takes part at cutoffs ``c < level`` with ``level`` the number of cutoffs ≤ its score.
    Matching is a maximum-weight assignment, so it splits over the connected components of the graph
    of pairs that can match (within a frame and shard): a ground truth or prediction alone is a FN or
    FP at every cutoff it takes part in; a component of one pair is a TP while its prediction takes
    part and a FN after; larger components are matched with ``linear_sum_assignment`` once per
    distinct set of their predictions that pass a cutoff (at most one per prediction). Contributions
    over ranges of cutoffs go into difference arrays, summed at the end.
    """
    num_gt, num_pd, num_c = len(gt), len(pd), len(cutoffs)
    num_s = _num_shards(breakdown)
    gt_shard, pd_shard = _shards(gt, breakdown), _shards(pd, breakdown)
    gt_level = gt[:, 8].astype(np.int64)
    scores = pd[:, 8].astype(np.float32)
    pd_cut = np.searchsorted(cutoffs, scores, side="right").astype(np.int64)  # present at c < pd_cut
    nlz = pd[:, 9] != 0

    keep = (gt_shard[edges.gt] == pd_shard[edges.pd]) & (gt_shard[edges.gt] >= 0)
    e_gt, e_pd, e_w, e_ha = edges.gt[keep], edges.pd[keep], edges.weight[keep], edges.ha[keep]
    gt_deg = np.bincount(e_gt, minlength=num_gt)
    pd_deg = np.bincount(e_pd, minlength=num_pd)

    width = num_c + 1
    diff = {k: np.zeros(num_s * width) for k in ("tp", "fp", "fn1", "fn2", "ha")}

    def add(name: str, shard: NDArray, lo: NDArray, hi: NDArray, value: NDArray | float) -> None:
        value = np.broadcast_to(np.asarray(value, dtype=np.float64), shard.shape)
        np.add.at(diff[name], shard * width + lo, value)
        np.add.at(diff[name], shard * width + hi, -value)

    # Ground truths that can match nothing: a miss at every cutoff.
    lone = (gt_deg == 0) & (gt_shard >= 0)
    s, lv = gt_shard[lone], gt_level[lone]
    zero, full = np.zeros(len(s), np.int64), np.full(len(s), num_c)
    add("fn2", s, zero, full, 1.0)
    add("fn1", s, zero, full, (lv <= 1).astype(np.float64))
    # Predictions that can match nothing: a FP while they take part (unless in a no-label zone).
    lone = (pd_deg == 0) & (pd_shard >= 0) & ~nlz
    add("fp", pd_shard[lone], np.zeros(lone.sum(), np.int64), pd_cut[lone], 1.0)
    # Components of a single pair.
    single = (gt_deg[e_gt] == 1) & (pd_deg[e_pd] == 1)
    g, p = e_gt[single], e_pd[single]
    s, cut = gt_shard[g], pd_cut[p]
    zero, full = np.zeros(len(s), np.int64), np.full(len(s), num_c)
    add("tp", s, zero, cut, 1.0)
    add("ha", s, zero, cut, e_ha[single])
    add("fn2", s, cut, full, 1.0)
    add("fn1", s, cut, full, (gt_level[g] <= 1).astype(np.float64))
    # Larger components.
    rows = _match_components(
        e_gt[~single], e_pd[~single], e_w[~single], e_ha[~single], gt, pd, num_gt, num_pd, pd_cut, num_c
    )
    if len(rows):
        s, lo, hi = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2].astype(np.int64)
        s = gt_shard[s]
        for j, name in enumerate(("tp", "ha", "fp", "fn1", "fn2")):
            add(name, s, lo, hi, rows[:, 3 + j])

    def total(name: str) -> np.ndarray:
        return np.cumsum(diff[name].reshape(num_s, width), axis=1)[:, :num_c]

    return _Counts(
        tp=np.rint(total("tp")).astype(np.int64),
        fp=np.rint(total("fp")).astype(np.int64),
        fn1=np.rint(total("fn1")).astype(np.int64),
        fn2=np.rint(total("fn2")).astype(np.int64),
        sum_ha=total("ha"),
    )


def _match_components(
    e_gt: NDArray,
    e_pd: NDArray,
    e_w: NDArray,
    e_ha: NDArray,
    gt: NDArray,
    pd: NDArray,
    num_gt: int,
    num_pd: int,
    pd_cut: NDArray,
    num_c: int,
) -> NDArray[np.float64]:
    """Hungarian matching of the components with more than one pair, once per distinct prediction set.

    Returns (K, 8) rows ``[a ground-truth row of the component, lo, hi, tp, sum_ha, fp, fn1, fn2]``:
    the counts hold for cutoffs ``lo <= c < hi``.
    """
    if len(e_gt) == 0:
        return np.zeros((0, 8))
    graph = coo_matrix((np.ones(len(e_gt)), (e_gt, num_gt + e_pd)), shape=(num_gt + num_pd,) * 2)
    _, label = connected_components(graph, directed=False)
    comp = label[e_gt]
    order = np.argsort(comp, kind="stable")
    comp, e_gt, e_pd, e_w, e_ha = comp[order], e_gt[order], e_pd[order], e_w[order], e_ha[order]
    bounds = np.flatnonzero(np.diff(comp)) + 1
    starts, ends = np.concatenate([[0], bounds]), np.concatenate([bounds, [len(comp)]])
    gt_level, nlz, scores = gt[:, 8], pd[:, 9] != 0, pd[:, 8]
    out: list[tuple[float, ...]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        gs, gi = np.unique(e_gt[a:b], return_inverse=True)
        ps, pi = np.unique(e_pd[a:b], return_inverse=True)
        # Deterministic order, independent of the input order: predictions by cutoff level and score
        # (descending), then box and flag; ground truths by box and level.
        p_order = np.lexsort((nlz[ps], *pd[ps, 6::-1].T, -scores[ps], -pd_cut[ps]))
        g_order = np.lexsort((gt_level[gs], *gt[gs, 6::-1].T))
        p_rank, g_rank = np.empty_like(p_order), np.empty_like(g_order)
        p_rank[p_order], g_rank[g_order] = np.arange(len(ps)), np.arange(len(gs))
        weight = np.zeros((len(ps), len(gs)), np.int64)
        ha = np.zeros((len(ps), len(gs)))
        weight[p_rank[pi], g_rank[gi]] = e_w[a:b]
        ha[p_rank[pi], g_rank[gi]] = e_ha[a:b]
        cut = pd_cut[ps[p_order]]
        p_nlz = nlz[ps[p_order]]
        g_level1 = gt_level[gs[g_order]] <= 1
        num_g, num_p = len(gs), len(ps)
        anchor = float(gs[0])
        for k in range(num_p + 1):
            hi = num_c if k == 0 else int(cut[k - 1])
            lo = 0 if k == num_p else int(cut[k])
            if lo >= hi:
                continue
            if k == 0:
                out.append((anchor, lo, hi, 0.0, 0.0, 0.0, float(g_level1.sum()), float(num_g)))
                continue
            sub = weight[:k]
            r, c = linear_sum_assignment(sub, maximize=True)
            matched = sub[r, c] > 0
            r, c = r[matched], c[matched]
            p_matched = np.zeros(k, bool)
            p_matched[r] = True
            g_matched = np.zeros(num_g, bool)
            g_matched[c] = True
            out.append(
                (
                    anchor,
                    lo,
                    hi,
                    float(len(r)),
                    float(ha[r, c].sum()),
                    float((~p_matched & ~p_nlz[:k]).sum()),
                    float((~g_matched & g_level1).sum()),
                    float(num_g - len(r)),
                )
            )
    return np.array(out, dtype=np.float64).reshape(-1, 8)


# --------------------------------------------------------------------------------------------------
# Precision, recall, area


def mean_average_precision(
    precisions: Sequence[float] | NDArray,
    recalls: Sequence[float] | NDArray,
    recall_delta: float = _DESIRED_RECALL_DELTA,
) -> float:
    """Area under a PR curve as the official ``ComputeMeanAveragePrecision`` computes it (float32).

    ``precisions[i]``, ``recalls[i]``: one operating point each (any order). The best precision per
    recall (recall 0 starts at precision 1) is walked from the highest recall down with a running
    max; below each recall more than ``recall_delta`` (+1e-6) under the previous one, points are
    inserted every ``recall_delta`` carrying the running max; the point at recall 0 takes the precision
    of the point before it; the area is the sum of trapezoids. 0 for an empty curve or one whose
    recalls are all 0. Clipped to [0, 1]: the float32 sum can pass 1 by a rounding error (1.0000001).
    """
    f32 = np.float32
    precisions = np.asarray(precisions, dtype=np.float32).reshape(-1)
    recalls = np.asarray(recalls, dtype=np.float32).reshape(-1)
    if len(precisions) != len(recalls):
        raise ValueError(f"{len(precisions)} precisions but {len(recalls)} recalls")
    if not 0 < recall_delta <= 1:
        raise ValueError(f"recall_delta must be in (0, 1], got {recall_delta}")
    if len(precisions) == 0:
        return 0.0
    best: dict[float, np.float32] = {0.0: f32(1.0)}
    for p, r in zip(precisions.tolist(), recalls.tolist(), strict=True):
        best[r] = max(best.get(r, f32(0.0)), f32(p))
    delta = f32(recall_delta)
    step = f32(delta + f32(1e-6))
    keys = sorted(best)
    last = f32(keys[0])
    max_p = f32(0.0)
    curve: list[list[np.float32]] = []  # [precision, recall], recall descending
    for r in reversed(keys):
        r = f32(r)
        while f32(last - r) > step:
            last = f32(last - delta)
            curve.append([max_p, last])
        max_p = max(best[float(r)], max_p)
        curve.append([max_p, r])
        last = r
    if len(curve) < 2:
        return 0.0  # only recall 0 (the official code then reads out of bounds, and sums nothing)
    curve[-1][0] = curve[-2][0]
    area = f32(0.0)
    for (p0, r0), (p1, r1) in itertools.pairwise(curve):
        area = f32(float(area) + 0.5 * float(f32(r0 - r1)) * float(f32(p0 + p1)))
    return min(max(float(area), 0.0), 1.0)  # the float32 sum can pass 1 by a rounding error


@dataclass
class PRCurve:
    """Counts, precision and recall per score cutoff of one breakdown shard at one level, and the areas.

    Arrays are (C,) over :data:`SCORE_CUTOFFS`; precision, recall and ``precision_ha`` are float32 as
    the official ``DetectionMetrics`` (precision 1 where the recall is 0).
    """

    score_cutoffs: NDArray[np.float32]
    num_tps: NDArray[np.int64]
    num_fps: NDArray[np.int64]
    num_fns: NDArray[np.int64]
    sum_ha: NDArray[np.float64]
    precision: NDArray[np.float32]
    recall: NDArray[np.float32]
    precision_ha: NDArray[np.float32]
    mAP: float
    mAPH: float


def _curve(tp: NDArray, fp: NDArray, fn: NDArray, sum_ha: NDArray, cutoffs: NDArray) -> PRCurve:
    f32 = np.float32
    tp_fp, tp_fn = tp + fp, tp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp_fp > 0, tp.astype(f32) / tp_fp.astype(f32), f32(0)).astype(f32)
        precision_ha = np.where(tp_fp > 0, sum_ha.astype(f32) / tp_fp.astype(f32), f32(0)).astype(f32)
        recall = np.where(tp_fn > 0, tp.astype(f32) / tp_fn.astype(f32), f32(0)).astype(f32)
    precision[recall == 0] = 1.0
    precision_ha[recall == 0] = 1.0
    return PRCurve(
        score_cutoffs=cutoffs.copy(),
        num_tps=tp,
        num_fps=fp,
        num_fns=fn,
        sum_ha=sum_ha,
        precision=precision,
        recall=recall,
        precision_ha=precision_ha,
        mAP=mean_average_precision(precision, recall),
        mAPH=mean_average_precision(precision_ha, recall),
    )


# --------------------------------------------------------------------------------------------------
# Evaluation


def result_keys(
    classes: Sequence[str] = DEFAULT_CLASSES, breakdowns: Sequence[str] = BREAKDOWNS
) -> list[str]:
    """Keys of the result, in order: ``{CLASS}_LEVEL_{1|2}`` (OBJECT_TYPE), then
    ``{CLASS}_LEVEL_{1|2}_RANGE_{shard}`` (RANGE)."""
    _check_options(classes, breakdowns)
    keys = []
    if "OBJECT_TYPE" in breakdowns:
        keys += [f"{cls}_LEVEL_{lv}" for cls in classes for lv in _LEVELS]
    if "RANGE" in breakdowns:
        keys += [f"{cls}_LEVEL_{lv}_RANGE_{r}" for cls in classes for lv in _LEVELS for r in RANGE_SHARDS]
    return keys


def _check_options(classes: Sequence[str], breakdowns: Sequence[str]) -> None:
    if isinstance(classes, str) or isinstance(breakdowns, str):
        raise TypeError("classes and breakdowns are sequences of names, not a single string")
    unknown = [c for c in classes if c not in IOU_THRESHOLDS]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; supported: {list(IOU_THRESHOLDS)}")
    unknown = [b for b in breakdowns if b not in BREAKDOWNS]
    if unknown:
        raise ValueError(f"unknown breakdowns {unknown}; supported: {list(BREAKDOWNS)}")


def _evaluate_rows(
    gt: NDArray,
    gt_counts: NDArray,
    pd: NDArray,
    pd_counts: NDArray,
    classes: Sequence[str],
    breakdowns: Sequence[str],
) -> dict[str, PRCurve]:
    _check_options(classes, breakdowns)
    if len(gt_counts) != len(pd_counts):
        raise ValueError(f"{len(gt_counts)} ground-truth frames but {len(pd_counts)} prediction frames")
    edges = _edges(gt, gt_counts, pd, pd_counts)
    curves: dict[str, PRCurve] = {}
    for breakdown in BREAKDOWNS:
        if breakdown not in breakdowns:
            continue
        counts = _count(gt, pd, edges, breakdown, SCORE_CUTOFFS)
        for cls in classes:
            code = TYPE_CODES[cls]
            for lv in _LEVELS:
                fn = counts.fn1 if lv == 1 else counts.fn2
                if breakdown == "OBJECT_TYPE":
                    shards = [(code - 1, f"{cls}_LEVEL_{lv}")]
                else:
                    shards = [
                        (3 * (code - 1) + i, f"{cls}_LEVEL_{lv}_RANGE_{r}")
                        for i, r in enumerate(RANGE_SHARDS)
                    ]
                for s, key in shards:
                    curves[key] = _curve(counts.tp[s], counts.fp[s], fn[s], counts.sum_ha[s], SCORE_CUTOFFS)
    return {key: curves[key] for key in result_keys(classes, breakdowns)}


def compute_curves(
    gt: Mapping[Any, Any] | Sequence[Any],
    pred: Mapping[Any, Any] | Sequence[Any],
    classes: Sequence[str] = DEFAULT_CLASSES,
    breakdowns: Sequence[str] = BREAKDOWNS,
    unknown_frames: str = "error",
) -> dict[str, PRCurve]:
    """:func:`evaluate` with the per-cutoff counts and PR curves behind each value (:class:`PRCurve`)."""
    _check_options(classes, breakdowns)
    rows = _frames_to_rows(gt, pred, unknown_frames)
    return _evaluate_rows(*rows, classes, breakdowns)


def evaluate(
    gt: Mapping[Any, Any] | Sequence[Any],
    pred: Mapping[Any, Any] | Sequence[Any],
    classes: Sequence[str] = DEFAULT_CLASSES,
    breakdowns: Sequence[str] = BREAKDOWNS,
    unknown_frames: str = "error",
) -> dict[str, dict[str, float]]:
    """The official Waymo 3D detection metric (see the module docstring) of predictions against ground truth.

    Args:
        gt: per-frame ground truth: a mapping frame key (e.g. ``(context_name, timestamp_micros)``)
            → objects, or a sequence of objects aligned with ``pred``. Objects: a :class:`WaymoObjects`
            or anything with (attributes or keys) ``boxes`` (M, 7) ``[x, y, z, l, w, h, heading]``
            (vehicle frame, box centre), ``types`` (M,) (``Label.Type`` codes or names such as
            ``"VEHICLE"``), ``difficulty`` (M,) (0 unset, 1, 2; default 0) and ``num_lidar_points``
            (M,) (needed where the difficulty is unset; boxes with 0 points are dropped). NumPy
            arrays or tensors.
        pred: per-frame predictions, in the same form: ``boxes``, ``types``, ``scores`` (M,),
            optional ``overlap_with_nlz`` (M,) bool.
        classes: class names of :data:`IOU_THRESHOLDS` to report.
        breakdowns: ``"OBJECT_TYPE"`` and/or ``"RANGE"``.
        unknown_frames: what to do with prediction frames absent from ``gt`` (mappings only):
            ``"error"`` (a ``ValueError`` naming some of them), ``"skip"`` (logged with their count),
            ``"keep"`` (evaluated as frames without ground truth, as the official tool does).

    Returns:
        ``{key: {"mAP": float, "mAPH": float}}`` with the keys of :func:`result_keys`; values in
        [0, 1], 0 where a shard has no ground truth.
    """
    curves = compute_curves(gt, pred, classes, breakdowns, unknown_frames)
    return {key: {"mAP": c.mAP, "mAPH": c.mAPH} for key, c in curves.items()}


def evaluate_files(
    gt_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    classes: Sequence[str] = DEFAULT_CLASSES,
    breakdowns: Sequence[str] = BREAKDOWNS,
    unknown_frames: str = "error",
) -> dict[str, dict[str, float]]:
    """:func:`evaluate` on two submission-format ``.bin`` files (ground truth, predictions)."""
    _check_options(classes, breakdowns)
    gt, pred = read_objects(gt_path), read_objects(pred_path)
    if not gt:
        raise ValueError(f"{gt_path}: the ground-truth file holds no objects")
    try:
        return evaluate(gt, pred, classes, breakdowns, unknown_frames)
    except ValueError as err:
        raise ValueError(f"{pred_path}: {err}") from None


# --------------------------------------------------------------------------------------------------
# torchmetrics


class WaymoAP(FrameRowsMetric):
    """The official Waymo mAP / mAPH as a ``torchmetrics.Metric`` (see :func:`evaluate`).

    ``update(preds, targets)`` takes one batch: per-frame predictions and ground truths in the forms
    :func:`evaluate` accepts (each pair one frame). Objects are stored as flat float64 rows in list
    states with ``dist_reduce_fx="cat"`` (with per-frame counts), so the states gather under DDP; the
    evaluation runs once, in :meth:`compute`, on the CPU. A frame seen twice (a padded distributed
    sampler) counts twice.

    ``compute()`` returns the dict of :func:`evaluate`.
    """

    gt_cols, pred_cols, pred_state = _GT_COLS, _PD_COLS, "pd"

    def __init__(
        self,
        classes: Sequence[str] = DEFAULT_CLASSES,
        breakdowns: Sequence[str] = BREAKDOWNS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_options(classes, breakdowns)
        self.classes, self.breakdowns = tuple(classes), tuple(breakdowns)

    def frame_rows(self, pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        return _gt_rows(target), _pd_rows(pred)

    def compute(self) -> dict[str, dict[str, float]]:
        gt, gt_counts, pd, pd_counts = self.gathered()
        curves = _evaluate_rows(gt, gt_counts, pd, pd_counts, self.classes, self.breakdowns)
        return {key: {"mAP": c.mAP, "mAPH": c.mAPH} for key, c in curves.items()}


# --------------------------------------------------------------------------------------------------
# Command line


def format_results(results: Mapping[str, Mapping[str, float]]) -> str:
    """A table: one line per key with mAP and mAPH, then the mean over VEHICLE, PEDESTRIAN and CYCLIST
    per level where all three are present (the leaderboard's ``ALL_NS``, not part of the JSON)."""
    width = max([len(k) for k in results] + [16])
    lines = [f"{'':<{width}}  {'mAP':>8}  {'mAPH':>8}"]
    for key, value in results.items():
        lines.append(f"{key:<{width}}  {value['mAP']:8.4f}  {value['mAPH']:8.4f}")
    for lv in _LEVELS:
        keys = [f"{c}_LEVEL_{lv}" for c in ("VEHICLE", "PEDESTRIAN", "CYCLIST")]
        if all(k in results for k in keys):
            ap = sum(results[k]["mAP"] for k in keys) / 3
            aph = sum(results[k]["mAPH"] for k in keys) / 3
            lines.append(f"{f'ALL_NS_LEVEL_{lv}':<{width}}  {ap:8.4f}  {aph:8.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perception.eval.waymo GT.bin PRED.bin [--json OUT] [--breakdown RANGE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.eval.waymo",
        description="Waymo Open Dataset 3D detection metric (official mAP / mAPH, LEVEL_1 and LEVEL_2) "
        "on submission-format files (serialized waymo.open_dataset.Objects protos).",
    )
    parser.add_argument("gt", type=Path, help="ground truth .bin (Objects proto)")
    parser.add_argument("pred", type=Path, help="predictions .bin (Objects proto)")
    parser.add_argument("--json", type=Path, help='write {key: {"mAP": ..., "mAPH": ...}} here')
    parser.add_argument(
        "--breakdown",
        action="append",
        choices=BREAKDOWNS,
        default=[],
        help="add a breakdown (RANGE: keys {CLASS}_LEVEL_{1|2}_RANGE_[0, 30) ...); OBJECT_TYPE always",
    )
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES), choices=list(IOU_THRESHOLDS))
    parser.add_argument(
        "--unknown-frames",
        choices=_UNKNOWN_FRAMES,
        default="error",
        help="predictions of frames absent from the ground truth: error (default), skip them "
        "(logged), or keep them as frames without ground truth (the official tool)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    breakdowns = tuple(b for b in BREAKDOWNS if b == "OBJECT_TYPE" or b in args.breakdown)
    try:
        results = evaluate_files(args.gt, args.pred, args.classes, breakdowns, args.unknown_frames)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json is not None:
        clean = {k: {m: (None if math.isnan(x) else x) for m, x in v.items()} for k, v in results.items()}
        atomic_write_bytes(args.json, (json.dumps(clean, indent=1) + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
