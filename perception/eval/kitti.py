"""KITTI object-detection metric: the devkit's AP (R11 and R40) for image, BEV and 3D boxes, and AOS.

The definition is the official devkit's (``evaluate_object_3d_offline.cpp``; OpenPCDet's
``kitti_object_eval_python/eval.py`` reproduces it), per class and difficulty:

- **Ground truth** (the devkit's ``cleanData``): a box of the class is *valid* when its occlusion ≤
  0 / 1 / 2, truncation ≤ 0.15 / 0.30 / 0.50 and image-box height ≥ 40 / 25 / 25 px (easy / moderate
  / hard; the official C++ ignores ``height < min``, OpenPCDet ``height <= min`` — we follow the C++,
  which differs only for a box exactly 25 or 40 px high). A box of the class too hard for the
  difficulty, a ``Van`` for ``Car`` and a ``Person_sitting`` for ``Pedestrian`` are *ignored*:
  a detection matched to one is neither TP nor FP, missing one is no FN. Other classes play no part;
  ``DontCare`` boxes are don't-care regions.
- **Detections**: any detection (of whatever class) whose image box is lower than the minimum height
  is *ignored* (it can still absorb a ground truth, as in the devkit); other detections of the class
  are evaluated, detections of other classes play no part.
- **Matching** (``computeStatistics``), frame by frame, ground truths in order: the first pass takes,
  among unassigned detections with IoU > threshold, the one with the highest score, and collects the
  scores of the true positives; the second pass, at each score threshold, takes the one with the
  highest IoU, preferring non-ignored detections. Unmatched evaluated detections are false positives,
  except those whose image box lies inside a ``DontCare`` region (intersection / detection area >
  threshold). The official C++ runs that test with the metric's own overlap, and ``DontCare``
  labels carry no 3D box (location −1000, size −1), so it can only fire for the ``image`` metric and
  AOS; like OpenPCDet we apply it there only.
- **Thresholds** (``getThresholds``): of the TP scores sorted descending, those nearest to recall
  0, 1/40, …, 1 (at most 41). Precision (and AOS: TP orientation similarity (1 + cos Δα)/2 summed
  over TP, over TP + FP) is computed at each, made monotone (max over the later ones), and
  ``AP_R40`` = mean of entries 1..40, ``AP_R11`` = mean of entries 0, 4, …, 40, ×100.
- **IoU**: ``image`` axis-aligned 2D IoU of the image boxes; ``bev`` rotated IoU in the camera x–z
  ground plane; ``3d`` BEV intersection × overlap of the vertical extents ``[y − h, y]`` / union
  volume (camera y points down, the label's y is the box bottom). Computed with
  :func:`perception.ops.iou3d.boxes_overlap_bev` in float64 (OpenPCDet's GPU kernel is float32).
- **IoU thresholds**: ``overlaps="strict"`` Car 0.7, Pedestrian 0.5, Cyclist 0.5 for all three
  metrics (the official set); ``"loose"``: image unchanged, BEV and 3D Car 0.5, Pedestrian / Cyclist
  0.25 (OpenPCDet's second table).

Choices where the devkit is silent or prints something unhelpful:

- The result always holds every key ``{class}_{image|bev|3d|aos}/{easy|moderate|hard}_{R11|R40}``
  (AP in percent). Where a class has **no valid ground truth** at a difficulty the AP is undefined
  and the value is NaN (the devkit prints 0); the CLI writes it as JSON ``null``. A class with ground
  truth but no detections gets 0.
- AOS is NaN when any detection carries the devkit's "no orientation" marker ``alpha == -10``
  (the devkit then skips AOS for the whole submission).
- A precision whose TP + FP is 0 at some threshold counts as 0 (the devkit would divide by zero).
- Detections without a 3D box (a negative size, as 2D-only result files write) overlap nothing in
  ``bev`` and ``3d``.
- float32 inputs (``read_label`` returns float32 image boxes, truncation and alpha) are read back through
  their shortest decimal form, so height and truncation limits compare exactly as the devkit does on
  the text (``0.15`` is not > 0.15).

Entry points: :func:`evaluate` (per-frame annotations in memory), :func:`evaluate_folders` (label
folders), :class:`KittiAP` (a ``torchmetrics.Metric``) and the command line
``python -m perception.eval.kitti GT_LABEL_DIR PRED_LABEL_DIR [--json OUT] [--split-file FILE]``.
Annotations are :class:`~perception.data.kitti.KittiObjects` (or ``KittiFrame``) or mappings; see
:func:`evaluate` for the fields.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from perception.data.kitti import KITTI_CLASSES, KittiCalibration, read_label
from perception.eval._inputs import FrameRowsMetric, as_numpy, field
from perception.geometry.camera import observation_angle, project_boxes_to_image
from perception.ops.iou3d import boxes_overlap_bev

__all__ = [
    "DEFAULT_CLASSES",
    "DIFFICULTIES",
    "METRICS",
    "MIN_OVERLAPS",
    "KittiAP",
    "evaluate",
    "evaluate_folders",
    "format_results",
    "main",
    "result_keys",
]

log = logging.getLogger(__name__)

DEFAULT_CLASSES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
DIFFICULTIES: tuple[str, ...] = ("easy", "moderate", "hard")
METRICS: tuple[str, ...] = ("image", "bev", "3d", "aos")

MIN_OVERLAPS: dict[str, dict[str, tuple[float, float, float]]] = {
    # class → IoU threshold for (image, bev, 3d); AOS uses the image threshold.
    "strict": {
        "Car": (0.7, 0.7, 0.7),
        "Pedestrian": (0.5, 0.5, 0.5),
        "Cyclist": (0.5, 0.5, 0.5),
        "Van": (0.7, 0.7, 0.7),
        "Person_sitting": (0.5, 0.5, 0.5),
        "Truck": (0.7, 0.7, 0.7),
    },
    "loose": {
        "Car": (0.7, 0.5, 0.5),
        "Pedestrian": (0.5, 0.25, 0.25),
        "Cyclist": (0.5, 0.25, 0.25),
        "Van": (0.7, 0.5, 0.5),
        "Person_sitting": (0.5, 0.25, 0.25),
        "Truck": (0.5, 0.5, 0.5),
    },
}
"""IoU thresholds: ``"strict"`` is the official set, ``"loose"`` OpenPCDet's second one."""

_MIN_HEIGHT = (40.0, 25.0, 25.0)
_MAX_OCCLUSION = (0, 1, 2)
_MAX_TRUNCATION = (0.15, 0.3, 0.5)
_NEIGHBOUR = {"Car": "Van", "Pedestrian": "Person_sitting"}
_N_SAMPLE_PTS = 41
_NO_ALPHA = -10.0
_NO_DETECTION = -10000000.0  # the devkit's sentinel score: detections scoring below it never match

_CODES = {name.lower(): code for code, name in enumerate(KITTI_CLASSES)}
_DONTCARE = _CODES["dontcare"]

# Per-object rows (float64). Ground truth: class code, truncated, occluded, alpha, bbox (4),
# boxes_camera (7). Detections: class code, alpha, bbox (4), boxes_camera (7), score.
_GT_COLS, _DT_COLS = 15, 14


# --------------------------------------------------------------------------------------------------
# Annotations → rows


def _decimal(value: Any, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """float64 of ``value``; float32 goes through its shortest decimal form (the text it came from)."""
    array = as_numpy(value)
    if array.dtype == np.float32:
        array = array.astype(str)
    return np.asarray(array, dtype=np.float64).reshape(shape)


def _codes(names: Any, n: int, what: str) -> NDArray[np.float64]:
    names = [str(v) for v in np.asarray(names).reshape(-1)]
    if len(names) != n:
        raise ValueError(f"{what}: {len(names)} names for {n} objects")
    unknown = sorted({v for v in names if v.lower() not in _CODES})
    if unknown:
        raise ValueError(f"{what}: unknown class names {unknown}; expected one of {KITTI_CLASSES}")
    return np.array([_CODES[v.lower()] for v in names], dtype=np.float64)


def _boxes_camera(obj: Any, n: int, what: str) -> NDArray[np.float64]:
    """(n, 7) ``[x, y, z, l, h, w, ry]`` from ``boxes_camera``, OpenPCDet's location / dimensions /
    rotation_y, or ``boxes_lidar`` + ``calib``."""
    boxes = field(obj, "boxes_camera")
    if boxes is None and field(obj, "location") is not None:
        loc, dims, ry = (as_numpy(field(obj, k)) for k in ("location", "dimensions", "rotation_y"))
        boxes = np.column_stack([loc.reshape(-1, 3), dims.reshape(-1, 3), ry.reshape(-1)])
    if boxes is None and field(obj, "boxes_lidar") is not None:
        calib = field(obj, "calib")
        if not isinstance(calib, KittiCalibration):
            raise ValueError(f"{what}: boxes_lidar needs a KittiCalibration under 'calib'")
        boxes = calib.boxes_lidar_to_camera(as_numpy(field(obj, "boxes_lidar")).astype(np.float64))
    if boxes is None:
        raise ValueError(
            f"{what}: needs boxes_camera (or location/dimensions/rotation_y, or boxes_lidar + calib)"
        )
    boxes = as_numpy(boxes).astype(np.float64)
    if boxes.shape != (n, 7):
        raise ValueError(f"{what}: boxes must be ({n}, 7) [x, y, z, l, h, w, ry], got {boxes.shape}")
    return boxes


def _bbox(obj: Any, boxes_camera: NDArray[np.float64], n: int, what: str) -> NDArray[np.float64]:
    bbox = field(obj, "bbox")
    if bbox is None:
        calib = field(obj, "calib")
        if not isinstance(calib, KittiCalibration):
            raise ValueError(f"{what}: needs bbox (image boxes), or calib to project the 3D boxes")
        lidar = calib.boxes_camera_to_lidar(boxes_camera)
        bbox, _ = project_boxes_to_image(lidar, calib.lidar_to_image_matrix, field(obj, "image_shape"))
    return _decimal(bbox, (n, 4))


def _alpha(obj: Any, boxes_camera: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    alpha = field(obj, "alpha")
    if alpha is None:
        return observation_angle(boxes_camera)
    return _decimal(alpha, (n,))


def _num_objects(obj: Any, what: str) -> int:
    names = field(obj, "names", "name")
    if names is None:
        raise ValueError(f"{what}: needs 'names' (class names, one per object)")
    return int(np.asarray(names).size)


def _gt_rows(obj: Any, what: str = "ground truth") -> NDArray[np.float64]:
    """(n, 15) ground-truth rows of one frame; a ``dontcare_bbox`` field adds DontCare rows."""
    n = _num_objects(obj, what)
    rows = np.zeros((0, _GT_COLS))
    if n:
        boxes = _boxes_camera(obj, n, what)
        truncated, occluded = field(obj, "truncated"), field(obj, "occluded")
        if truncated is None or occluded is None:
            raise ValueError(f"{what}: needs 'truncated' and 'occluded' (the difficulty depends on them)")
        rows = np.column_stack(
            [
                _codes(field(obj, "names", "name"), n, what),
                _decimal(truncated, (n,)),
                as_numpy(occluded).astype(np.float64).reshape(n),
                _alpha(obj, boxes, n),
                _bbox(obj, boxes, n, what),
                boxes,
            ]
        )
    dontcare = field(obj, "dontcare_bbox")
    if dontcare is not None and len(dontcare):
        dc = _decimal(dontcare, (-1, 4))
        extra = np.tile(
            [_DONTCARE, -1, -1, _NO_ALPHA, 0, 0, 0, 0, -1000, -1000, -1000, -1, -1, -1, -10.0], (len(dc), 1)
        )
        extra[:, 4:8] = dc
        rows = np.concatenate([rows, extra])
    return rows


def _dt_rows(obj: Any, what: str = "predictions") -> NDArray[np.float64]:
    """(n, 14) detection rows of one frame."""
    n = _num_objects(obj, what)
    scores = field(obj, "scores", "score")
    if scores is None:
        if n == 0:
            return np.zeros((0, _DT_COLS))
        raise ValueError(f"{what}: needs 'scores' (detection scores, one per object)")
    boxes = _boxes_camera(obj, n, what)
    return np.column_stack(
        [
            _codes(field(obj, "names", "name"), n, what),
            _alpha(obj, boxes, n),
            _bbox(obj, boxes, n, what),
            boxes,
            as_numpy(scores).astype(np.float64).reshape(n),
        ]
    )


# --------------------------------------------------------------------------------------------------
# Overlaps


@numba.njit(cache=True)
def _pair_offsets(gt_off, dt_off):  # pragma: no cover - numba
    """Start of each frame's (num_dt, num_gt) overlap block in the flat overlap arrays, (F + 1,)."""
    out = np.zeros(gt_off.shape[0], np.int64)
    for f in range(gt_off.shape[0] - 1):
        out[f + 1] = out[f] + (gt_off[f + 1] - gt_off[f]) * (dt_off[f + 1] - dt_off[f])
    return out


@numba.njit(cache=True)
def _image_iou(gt_bbox, dt_bbox, gt_off, dt_off, ov_off):  # pragma: no cover - numba
    """Flat per-frame (num_dt, num_gt) blocks of 2D IoU between image boxes."""
    out = np.zeros(ov_off[-1])
    for f in range(gt_off.shape[0] - 1):
        ng = gt_off[f + 1] - gt_off[f]
        k = ov_off[f]
        for j in range(dt_off[f], dt_off[f + 1]):
            d = dt_bbox[j]
            for i in range(gt_off[f], gt_off[f] + ng):
                g = gt_bbox[i]
                w = min(d[2], g[2]) - max(d[0], g[0])
                h = min(d[3], g[3]) - max(d[1], g[1])
                if w > 0 and h > 0:
                    inter = w * h
                    union = (d[2] - d[0]) * (d[3] - d[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                    out[k] = inter / union
                k += 1
    return out


def _ground_boxes(boxes_camera: NDArray[np.float64]) -> NDArray[np.float64]:
    """Camera boxes ``[x, y, z, l, h, w, ry]`` (bottom centre) → boxes for :mod:`perception.ops.iou3d`.

    The frame (x_cam, z_cam, −y_cam) is right-handed with the third axis up, so ``[x, z, −y + h/2,
    l, w, h, −ry]`` is the same box as a centre box ``[x, y, z, l, w, h, yaw]`` there (heading
    (cos ry, −sin ry) in the x–z plane), and IoUs are unchanged.
    """
    x, y, z, l, h, w, ry = boxes_camera.T
    return np.column_stack([x, z, -y + h / 2, l, w, h, -ry])


def _bev_3d_iou(gt: NDArray, dt: NDArray, gt_off: NDArray, dt_off: NDArray, ov_off: NDArray):
    """Flat per-frame (num_dt, num_gt) blocks of BEV IoU and 3D IoU (0 for DontCare ground truth and
    for boxes with a negative size)."""
    gt_box, dt_box = _ground_boxes(gt[:, 8:15]), _ground_boxes(dt[:, 6:13])
    gt_ok = (gt[:, 0] != _DONTCARE) & (gt_box[:, 3:6] >= 0).all(axis=1)
    dt_ok = (dt_box[:, 3:6] >= 0).all(axis=1)
    inter = np.zeros(ov_off[-1])
    for f in range(len(gt_off) - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], dt_off[f], dt_off[f + 1]
        gi, di = np.flatnonzero(gt_ok[g0:g1]), np.flatnonzero(dt_ok[d0:d1])
        if len(gi) and len(di):
            try:
                area = boxes_overlap_bev(dt_box[d0 + di], gt_box[g0 + gi])
            except ValueError as err:
                raise ValueError(f"frame {f}: {err}") from None
            block = inter[ov_off[f] : ov_off[f + 1]].reshape(d1 - d0, g1 - g0)
            block[np.ix_(di, gi)] = area
    gt_idx, dt_idx = _pair_index(gt_off, dt_off, ov_off)
    gb, db = gt_box[gt_idx], dt_box[dt_idx]
    union = gb[:, 3] * gb[:, 4] + db[:, 3] * db[:, 4] - inter
    bev = np.divide(inter, union, out=np.zeros_like(inter), where=(inter > 0) & (union > 0))
    # Vertical extents [z - h/2, z + h/2] in the up-pointing frame = [−y, −y + h] in the camera's.
    top = np.minimum(gb[:, 2] + gb[:, 5] / 2, db[:, 2] + db[:, 5] / 2)
    bottom = np.maximum(gb[:, 2] - gb[:, 5] / 2, db[:, 2] - db[:, 5] / 2)
    inter_vol = inter * np.maximum(top - bottom, 0.0)
    union_vol = gb[:, 3] * gb[:, 4] * gb[:, 5] + db[:, 3] * db[:, 4] * db[:, 5] - inter_vol
    iou3d = np.divide(inter_vol, union_vol, out=np.zeros_like(inter), where=(inter_vol > 0) & (union_vol > 0))
    return bev, iou3d


@numba.njit(cache=True)
def _pair_index(gt_off, dt_off, ov_off):  # pragma: no cover - numba
    """Ground-truth and detection row of each entry of the flat overlap arrays."""
    gt_idx = np.empty(ov_off[-1], np.int64)
    dt_idx = np.empty(ov_off[-1], np.int64)
    for f in range(gt_off.shape[0] - 1):
        k = ov_off[f]
        for j in range(dt_off[f], dt_off[f + 1]):
            for i in range(gt_off[f], gt_off[f + 1]):
                gt_idx[k], dt_idx[k] = i, j
                k += 1
    return gt_idx, dt_idx


# --------------------------------------------------------------------------------------------------
# Matching (the devkit's computeStatistics) and thresholds


@numba.njit(cache=True)
def _frame_statistics(
    ov, ig_gt, ig_dt, scores, min_overlap, compute_fp, thresh, dc_bbox, dt_bbox, gt_alpha, dt_alpha,
    compute_aos, assigned, tp_scores,
):  # fmt: skip  # pragma: no cover - numba
    """Match one frame's detections to its ground truth, as the devkit's ``computeStatistics``.

    ``ov`` (num_dt, num_gt) overlaps; ``ig_gt`` / ``ig_dt`` 0 evaluated, 1 ignored, -1 not part of it.
    Without ``compute_fp`` a ground truth takes the best-scoring unassigned detection above
    ``min_overlap`` and the TP scores go to ``tp_scores``; with it, detections scoring below
    ``thresh`` are left out, a ground truth takes the best-overlapping one (non-ignored first), and
    FPs (less those inside a DontCare box of ``dc_bbox``) and the orientation similarity are counted.
    Returns ``(tp, fp, fn, similarity, num_tp_scores)``; similarity is -1 with neither TP nor FP.
    """
    nd, ng = ov.shape
    for j in range(nd):
        assigned[j] = False
    tp, fp, fn, num_scores, similarity = 0, 0, 0, 0, 0.0
    for i in range(ng):
        if ig_gt[i] == -1:
            continue
        det, best_score, best_overlap, det_ignored = -1, _NO_DETECTION, 0.0, False
        for j in range(nd):
            if ig_dt[j] == -1 or assigned[j] or (compute_fp and scores[j] < thresh):
                continue
            overlap = ov[j, i]
            if overlap <= min_overlap:
                continue
            if not compute_fp:
                if scores[j] > best_score:
                    det, best_score = j, scores[j]
            elif ig_dt[j] == 0:
                if overlap > best_overlap or det_ignored:
                    det, best_overlap, det_ignored = j, overlap, False
            elif det == -1:
                det, det_ignored = j, True
        if det == -1:
            if ig_gt[i] == 0:
                fn += 1
        elif ig_gt[i] == 1 or ig_dt[det] == 1:
            assigned[det] = True
        else:
            tp += 1
            tp_scores[num_scores] = scores[det]
            num_scores += 1
            if compute_aos:
                similarity += (1.0 + math.cos(gt_alpha[i] - dt_alpha[det])) / 2.0
            assigned[det] = True
    if compute_fp:
        for j in range(nd):
            if not assigned[j] and ig_dt[j] == 0 and scores[j] >= thresh:
                fp += 1
        # Detections inside a DontCare region: intersection / detection area > min_overlap.
        for k in range(dc_bbox.shape[0]):
            c = dc_bbox[k]
            for j in range(nd):
                if assigned[j] or ig_dt[j] != 0 or scores[j] < thresh:
                    continue
                d = dt_bbox[j]
                w = min(d[2], c[2]) - max(d[0], c[0])
                h = min(d[3], c[3]) - max(d[1], c[1])
                if w > 0 and h > 0 and w * h / ((d[2] - d[0]) * (d[3] - d[1])) > min_overlap:
                    assigned[j] = True
                    fp -= 1
        if compute_aos and tp == 0 and fp == 0:
            similarity = -1.0
    return tp, fp, fn, similarity, num_scores


@numba.njit(cache=True)
def _first_pass(ov, ov_off, gt_off, dt_off, ig_gt, ig_dt, scores, min_overlap):  # pragma: no cover - numba
    """Scores of all true positives when each ground truth takes its best-scoring detection."""
    out = np.empty(gt_off[-1])
    num = 0
    assigned = np.empty(dt_off[-1], np.bool_)
    empty_bbox = np.zeros((0, 4))
    empty = np.zeros(0)
    for f in range(gt_off.shape[0] - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], dt_off[f], dt_off[f + 1]
        if g1 == g0 or d1 == d0:
            continue
        block = ov[ov_off[f] : ov_off[f + 1]].reshape(d1 - d0, g1 - g0)
        res = _frame_statistics(
            block, ig_gt[g0:g1], ig_dt[d0:d1], scores[d0:d1], min_overlap, False, 0.0,
            empty_bbox, empty_bbox, empty, empty, False, assigned, out[num:],
        )  # fmt: skip
        num += res[4]
    return out[:num]


@numba.njit(cache=True)
def _second_pass(
    ov, ov_off, gt_off, dt_off, dc_off, ig_gt, ig_dt, scores, thresholds, min_overlap, dc_bbox, dt_bbox,
    gt_alpha, dt_alpha, compute_aos,
):  # fmt: skip  # pragma: no cover - numba
    """(T, 4) sums of TP, FP, FN and orientation similarity over all frames at each score threshold."""
    pr = np.zeros((thresholds.shape[0], 4))
    assigned = np.empty(dt_off[-1], np.bool_)
    scratch = np.empty(gt_off[-1] + 1)
    for f in range(gt_off.shape[0] - 1):
        g0, g1, d0, d1 = gt_off[f], gt_off[f + 1], dt_off[f], dt_off[f + 1]
        fd, fg = ig_dt[d0:d1], ig_gt[g0:g1]
        if not ((fd == 0).any() or (fg != -1).any()):
            continue
        block = ov[ov_off[f] : ov_off[f + 1]].reshape(d1 - d0, g1 - g0)
        dc = dc_bbox[dc_off[f] : dc_off[f + 1]]
        for t in range(thresholds.shape[0]):
            tp, fp, fn, sim, _ = _frame_statistics(
                block, fg, fd, scores[d0:d1], min_overlap, True, thresholds[t], dc, dt_bbox[d0:d1],
                gt_alpha[g0:g1], dt_alpha[d0:d1], compute_aos, assigned, scratch,
            )  # fmt: skip
            pr[t, 0] += tp
            pr[t, 1] += fp
            pr[t, 2] += fn
            if sim != -1.0:
                pr[t, 3] += sim
    return pr


@numba.njit(cache=True)
def _score_thresholds(scores, num_gt):  # pragma: no cover - numba
    """The devkit's ``getThresholds``: TP scores (descending) nearest to recall 0, 1/40, ..., 1."""
    v = np.sort(scores)[::-1]
    out = np.empty(v.shape[0])
    num, current = 0, 0.0
    for i in range(v.shape[0]):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < v.shape[0] - 1 else left
        if right - current < current - left and i < v.shape[0] - 1:
            continue
        out[num] = v[i]
        num += 1
        current += 1.0 / (_N_SAMPLE_PTS - 1.0)
    return out[:num]


def _monotone_curve(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """(41,) the devkit's precision (or AOS) at recall 0, 1/40, ..., 1, made monotone (0 beyond the data)."""
    curve = np.zeros(_N_SAMPLE_PTS)
    n = min(len(values), _N_SAMPLE_PTS)
    curve[:n] = np.maximum.accumulate(values[:n][::-1])[::-1]
    return curve


def _sampled_ap(values: NDArray[np.float64]) -> tuple[float, float]:
    """(R11, R40) AP in percent from per-threshold precision (or AOS), made monotone first."""
    curve = _monotone_curve(values)
    return float(curve[::4].sum() / 11 * 100), float(curve[1:].sum() / 40 * 100)


# --------------------------------------------------------------------------------------------------
# The evaluation over rows


def _offsets(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def result_keys(classes: Sequence[str] = DEFAULT_CLASSES) -> list[str]:
    """The result keys, in order: ``{class}_{image|bev|3d|aos}/{easy|moderate|hard}_{R11|R40}``."""
    return [
        f"{cls}_{metric}/{diff}_{sampling}"
        for cls in classes
        for metric in METRICS
        for diff in DIFFICULTIES
        for sampling in ("R11", "R40")
    ]


def _check_options(classes: Sequence[str], overlaps: str) -> None:
    if overlaps not in MIN_OVERLAPS:
        raise ValueError(f"overlaps must be one of {sorted(MIN_OVERLAPS)}, got {overlaps!r}")
    unknown = [c for c in classes if c not in MIN_OVERLAPS[overlaps]]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; supported: {list(MIN_OVERLAPS[overlaps])}")


def _clean_data(cls: str, difficulty: int, gt: NDArray, dt: NDArray) -> tuple[NDArray, NDArray]:
    """The devkit's ``cleanData`` for all rows: (N,) ``ig_gt`` and (M,) ``ig_dt`` int64, each 0
    (evaluated), 1 (ignored: may absorb a match, never counts) or -1 (not part of this class)."""
    code = _CODES[cls.lower()]
    neighbour = _CODES[_NEIGHBOUR[cls].lower()] if cls in _NEIGHBOUR else -1
    gt_code, dt_code = gt[:, 0].astype(np.int64), dt[:, 0].astype(np.int64)
    too_hard = (
        (gt[:, 2] > _MAX_OCCLUSION[difficulty])
        | (gt[:, 1] > _MAX_TRUNCATION[difficulty])
        | (gt[:, 7] - gt[:, 5] < _MIN_HEIGHT[difficulty])  # official C++: height < min (OpenPCDet: <=)
    )
    ig_gt = np.full(len(gt), -1, np.int64)
    ig_gt[(gt_code == code) | (gt_code == neighbour)] = 1
    ig_gt[(gt_code == code) & ~too_hard] = 0
    # Any detection lower than the minimum height is ignored, whatever its class (as in the devkit).
    too_small = np.abs(dt[:, 5] - dt[:, 3]) < _MIN_HEIGHT[difficulty]
    ig_dt = np.where(too_small, 1, np.where(dt_code == code, 0, -1)).astype(np.int64)
    return ig_gt, ig_dt


def _evaluate_rows(
    gt: NDArray[np.float64],
    gt_counts: NDArray[np.int64],
    dt: NDArray[np.float64],
    dt_counts: NDArray[np.int64],
    classes: Sequence[str],
    overlaps: str,
    curves: dict[str, NDArray[np.float64]] | None = None,
) -> dict[str, float]:
    """The evaluation over all frames' rows: ``gt`` (N, 15) and ``dt`` (M, 14) with per-frame counts.

    Where ``curves`` is a dict, it receives ``{class}_{image|bev|3d}/{difficulty}`` → (41,) the monotone
    precision at recall 0, 1/40, ..., 1 that the R40 AP averages (from index 1).
    """
    _check_options(classes, overlaps)
    gt_off, dt_off = _offsets(gt_counts), _offsets(dt_counts)
    ov_off = _pair_offsets(gt_off, dt_off)
    gt_bbox, dt_bbox = np.ascontiguousarray(gt[:, 4:8]), np.ascontiguousarray(dt[:, 2:6])
    image = _image_iou(gt_bbox, dt_bbox, gt_off, dt_off, ov_off)
    bev, iou3d = _bev_3d_iou(gt, dt, gt_off, dt_off, ov_off)
    per_metric = {"image": image, "bev": bev, "3d": iou3d}

    is_dc = gt[:, 0] == _DONTCARE
    dc_bbox = np.ascontiguousarray(gt_bbox[is_dc])
    gt_frame = np.repeat(np.arange(len(gt_counts)), gt_counts)
    dc_off = _offsets(np.bincount(gt_frame[is_dc], minlength=len(gt_counts)))
    gt_alpha, dt_alpha, scores = gt[:, 3].copy(), dt[:, 1].copy(), dt[:, 13].copy()
    compute_aos = not bool(np.any(dt_alpha == _NO_ALPHA))

    results: dict[str, float] = {}
    for cls in classes:
        for d, diff in enumerate(DIFFICULTIES):
            ig_gt, ig_dt = _clean_data(cls, d, gt, dt)
            num_gt = int((ig_gt == 0).sum())
            for m, metric in enumerate(("image", "bev", "3d")):
                is_image = metric == "image"
                ap = aos = (math.nan, math.nan)
                if num_gt:
                    min_overlap = MIN_OVERLAPS[overlaps][cls][m]
                    ov = per_metric[metric]
                    tp_scores = _first_pass(ov, ov_off, gt_off, dt_off, ig_gt, ig_dt, scores, min_overlap)
                    thresholds = _score_thresholds(tp_scores, num_gt)
                    pr = _second_pass(
                        ov, ov_off, gt_off, dt_off, dc_off if is_image else np.zeros_like(dc_off),
                        ig_gt, ig_dt, scores, thresholds, min_overlap, dc_bbox, dt_bbox, gt_alpha,
                        dt_alpha, is_image and compute_aos,
                    )  # fmt: skip
                    denominator = np.where(pr[:, 0] + pr[:, 1] > 0, pr[:, 0] + pr[:, 1], np.inf)
                    ap = _sampled_ap(pr[:, 0] / denominator)  # 0 where TP + FP = 0
                    if curves is not None:
                        curves[f"{cls}_{metric}/{diff}"] = _monotone_curve(pr[:, 0] / denominator)
                    if compute_aos:
                        aos = _sampled_ap(pr[:, 3] / denominator)
                results[f"{cls}_{metric}/{diff}_R11"], results[f"{cls}_{metric}/{diff}_R40"] = ap
                if is_image:
                    results[f"{cls}_aos/{diff}_R11"], results[f"{cls}_aos/{diff}_R40"] = aos
    return {key: results[key] for key in result_keys(classes)}


def _stack(rows: list[NDArray[np.float64]], cols: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    return (np.concatenate(rows) if rows else np.zeros((0, cols))).reshape(-1, cols), counts


# --------------------------------------------------------------------------------------------------
# Public functions


def evaluate(
    gt_annos: Sequence[Any],
    dt_annos: Sequence[Any],
    classes: Sequence[str] = DEFAULT_CLASSES,
    overlaps: str = "strict",
) -> dict[str, float]:
    """The KITTI devkit's evaluation of per-frame detections against per-frame ground truth.

    Args:
        gt_annos: one entry per frame, a :class:`~perception.data.kitti.KittiObjects` (DontCare
            rows included, as :func:`~perception.data.kitti.read_label` gives them), a ``KittiFrame``
            (its ``dontcare_bbox`` becomes DontCare rows) or a mapping with ``names`` (M,) str,
            ``truncated`` (M,), ``occluded`` (M,), ``bbox`` (M, 4) image boxes ``[left, top, right,
            bottom]`` px, ``boxes_camera`` (M, 7) ``[x, y, z, l, h, w, ry]`` (bottom centre, rectified
            camera frame; or OpenPCDet's ``location`` / ``dimensions`` (l, h, w) / ``rotation_y``, or
            ``boxes_lidar`` (M, 7) with ``calib``), optional ``alpha`` (M,) (default: from the box)
            and ``dontcare_bbox`` (K, 4). NumPy arrays or tensors.
        dt_annos: one entry per frame, in the same order: ``names``, ``scores`` (M,), ``boxes_camera``
            (or its alternatives), ``bbox`` (or ``calib`` to project the 3D boxes, clipped to an
            optional ``image_shape``), optional ``alpha``.
        classes: classes to evaluate (of ``MIN_OVERLAPS[overlaps]``).
        overlaps: ``"strict"`` (official IoU thresholds) or ``"loose"``.

    Returns:
        ``{class}_{image|bev|3d|aos}/{easy|moderate|hard}_{R11|R40}`` → AP in percent; NaN where the
        class has no valid ground truth at that difficulty, or for AOS where a detection has
        ``alpha == -10``.
    """
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f"{len(gt_annos)} ground-truth frames but {len(dt_annos)} prediction frames")
    _check_options(classes, overlaps)
    gt, gt_counts = _stack(
        [_gt_rows(a, f"ground truth of frame {i}") for i, a in enumerate(gt_annos)], _GT_COLS
    )
    dt, dt_counts = _stack(
        [_dt_rows(a, f"predictions of frame {i}") for i, a in enumerate(dt_annos)], _DT_COLS
    )
    return _evaluate_rows(gt, gt_counts, dt, dt_counts, classes, overlaps)


def _label_ids(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: label folder does not exist")
    return sorted(p.stem for p in folder.glob("*.txt"))


def _names_list(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def evaluate_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    frame_ids: Sequence[str] | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
    overlaps: str = "strict",
) -> dict[str, float]:
    """:func:`evaluate` on two ``label_2``-style folders of ``NNNNNN.txt`` files.

    Args:
        gt_dir: ground-truth labels (15 fields a line).
        pred_dir: results (16 fields a line, the last the score). A frame without a file here has
            no detections; an empty file likewise.
        frame_ids: frames to evaluate (e.g. a split file's ids; ints become ``NNNNNN``); default:
            every file in ``gt_dir``.
            Result files of ground-truth frames outside ``frame_ids`` are left out.

    Raises:
        FileNotFoundError: a folder, or the ground truth of a requested frame, does not exist.
        ValueError: result files for frames that have no ground truth (named), or result lines
            without a score.
        KittiFormatError: a malformed label file (the reader's message names file and line).
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt_ids, pred_ids = _label_ids(gt_dir), _label_ids(pred_dir)
    gt_set = set(gt_ids)
    strays = [i for i in pred_ids if i not in gt_set]
    if strays:
        raise ValueError(
            f"{pred_dir}: result files for frames with no ground truth in {gt_dir}: {_names_list(strays)}"
        )
    if frame_ids is None:
        frame_ids = gt_ids
    frame_ids = [f"{i:06d}" if isinstance(i, (int, np.integer)) else str(i).strip() for i in frame_ids]
    missing = [i for i in frame_ids if i not in gt_set]
    if missing:
        raise FileNotFoundError(f"{gt_dir}: no ground-truth label for frames {_names_list(missing)}")
    wanted, pred_set = set(frame_ids), set(pred_ids)
    skipped = len(pred_set - wanted)
    if skipped:
        log.info("%s: %d result files outside the evaluated frames are left out", pred_dir, skipped)
    gt_annos, dt_annos = [], []
    for frame in frame_ids:
        gt_annos.append(read_label(gt_dir / f"{frame}.txt"))
        if frame in pred_set:
            objects = read_label(pred_dir / f"{frame}.txt")
            if objects.scores is None and len(objects):
                raise ValueError(f"{pred_dir / f'{frame}.txt'}: result lines need a 16th field, the score")
            dt_annos.append(objects)
        else:
            dt_annos.append({"names": []})
    return evaluate(gt_annos, dt_annos, classes=classes, overlaps=overlaps)


# --------------------------------------------------------------------------------------------------
# torchmetrics


class KittiAP(FrameRowsMetric):
    """The KITTI devkit's AP as a ``torchmetrics.Metric`` (see :func:`evaluate` for the definition).

    ``update(preds, targets)`` takes one batch: per-frame predictions and ground truths in the forms
    :func:`evaluate` accepts. Each frame's objects are stored as flat float64 rows in list states
    with ``dist_reduce_fx="cat"`` (with per-frame counts), so the states gather under DDP; the
    evaluation itself runs once, in :meth:`compute`, on the CPU.

    ``compute()`` returns the dict of :func:`evaluate` (Python floats, NaN where undefined); the
    precision–recall curves of that computation are left in ``last_curves``
    (``{class}_{image|bev|3d}/{difficulty}`` → (41,) precision at recall 0, 1/40, ..., 1), e.g. for
    :func:`perception.viz.bev.plot_pr_curves`.
    """

    gt_cols, pred_cols, pred_state = _GT_COLS, _DT_COLS, "dt"

    def __init__(
        self, classes: Sequence[str] = DEFAULT_CLASSES, overlaps: str = "strict", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        _check_options(classes, overlaps)
        self.classes, self.overlaps = tuple(classes), overlaps
        self.last_curves: dict[str, NDArray[np.float64]] = {}

    def frame_rows(self, pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        return _gt_rows(target), _dt_rows(pred)

    def compute(self) -> dict[str, float]:
        gt, gt_counts, dt, dt_counts = self.gathered()
        self.last_curves = {}
        return _evaluate_rows(gt, gt_counts, dt, dt_counts, self.classes, self.overlaps, self.last_curves)


# --------------------------------------------------------------------------------------------------
# Command line


def format_results(results: Mapping[str, float], classes: Sequence[str] = DEFAULT_CLASSES) -> str:
    """A devkit-like table: one line per class, metric and sampling, easy / moderate / hard."""
    lines = []
    for cls in classes:
        for sampling in ("R40", "R11"):
            lines.append(f"{cls} AP_{sampling}:")
            for metric in METRICS:
                values = [results[f"{cls}_{metric}/{d}_{sampling}"] for d in DIFFICULTIES]
                lines.append(f"  {metric:>5}  " + "  ".join(f"{v:8.4f}" for v in values))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perception.eval.kitti GT_LABEL_DIR PRED_LABEL_DIR [--json OUT] [--split-file F]``."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.eval.kitti",
        description="KITTI object detection evaluation (the devkit's AP R11/R40, image/bev/3d/aos).",
    )
    parser.add_argument("gt_dir", help="ground-truth label folder (label_2)")
    parser.add_argument("pred_dir", help="result folder: label files with a 16th column, the score")
    parser.add_argument("--json", type=Path, help="write {key: AP in percent} here (null where undefined)")
    parser.add_argument(
        "--split-file", type=Path, help="evaluate only the frame ids listed here (ImageSets/val.txt)"
    )
    parser.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--overlaps", choices=sorted(MIN_OVERLAPS), default="strict")
    args = parser.parse_args(argv)
    try:
        frame_ids = None
        if args.split_file is not None:
            if not args.split_file.is_file():
                raise FileNotFoundError(f"{args.split_file}: split file does not exist")
            frame_ids = [line.strip() for line in args.split_file.read_text().splitlines() if line.strip()]
        results = evaluate_folders(args.gt_dir, args.pred_dir, frame_ids, args.classes, args.overlaps)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results, args.classes))
    if args.json is not None:
        clean = {k: (None if math.isnan(v) else v) for k, v in results.items()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(clean, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
