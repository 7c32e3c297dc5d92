"""Where a detector's boxes go wrong: localisation errors of matched detections, and oracle studies.

Two diagnostics over a KITTI-layout split and a folder of KITTI result files (what ``tools/eval.py``
writes), both in the lidar frame:

- :func:`localization_errors`: each ground-truth object of one class and of the given KITTI
  difficulties is matched to the same-class detection of highest BEV IoU (at least ``min_bev_iou``);
  reported are the share of matches reaching BEV and 3D IoU 0.7, and the mean, mean absolute and
  median absolute error of each box parameter ``x y z l w h yaw`` (yaw wrapped to [-π, π)).
- :func:`oracle_predictions`: the result files with some box parameters replaced by those of the
  matched ground truth (any class, BEV IoU > ``min_bev_iou``); evaluating them tells how much AP
  each parameter's error costs (e.g. ``z,h`` lifted the first-stage synthetic Car 3D AP from 43.6 to 80.7).

``tools/analyze_detections.py`` is the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perception.data.kitti import load_frame, read_calib, read_label, write_label
from perception.geometry.boxes import wrap_angle
from perception.ops.iou3d import boxes_iou3d, boxes_iou_bev

__all__ = ["BOX_FIELDS", "localization_errors", "oracle_predictions"]

BOX_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw")


def _predictions_lidar(pred_dir: Path, root: Path, frame_id: str, split_folder: str):
    """(objects, (K, 7) lidar boxes) of one result file; a missing file means no detections."""
    path = pred_dir / f"{frame_id}.txt"
    if not path.is_file():
        return None, np.zeros((0, 7))
    objects = read_label(path)
    if not len(objects):
        return objects, np.zeros((0, 7))
    calib = read_calib(root / split_folder / "calib" / f"{frame_id}.txt")
    return objects, calib.boxes_camera_to_lidar(objects.boxes_camera)


def localization_errors(
    root: str | os.PathLike,
    pred_dir: str | os.PathLike,
    frame_ids: Sequence[str],
    class_name: str = "Car",
    difficulties: Sequence[int] = (0, 1),
    min_bev_iou: float = 0.5,
    split_folder: str = "training",
) -> dict:
    """Errors of the detections matched to the ground truth of ``class_name`` (module docstring).

    Returns:
        ``{"matched": n, "ground_truth": m, "bev_iou_0.7": share, "3d_iou_0.7": share,
        "mean": {field: metres|radians}, "mae": {...}, "median_abs": {...}}`` (NaN without matches).
    """
    root, pred_dir = Path(root), Path(pred_dir)
    errors, bev, iou3d, total = [], [], [], 0
    for frame_id in frame_ids:
        frame = load_frame(root, frame_id, split_folder)
        keep = (frame.names == class_name) & np.isin(frame.difficulty, list(difficulties))
        gt = frame.boxes_lidar[keep].astype(np.float64)
        total += len(gt)
        objects, boxes = _predictions_lidar(pred_dir, root, frame_id, split_folder)
        if objects is None or not len(gt) or not len(boxes):
            continue
        boxes = boxes[objects.names == class_name]
        if not len(boxes):
            continue
        bev_iou, iou_3d = boxes_iou_bev(gt, boxes), boxes_iou3d(gt, boxes)
        best = bev_iou.argmax(axis=1)
        for i, j in enumerate(best):
            if bev_iou[i, j] < min_bev_iou:
                continue
            d = boxes[j] - gt[i]
            d[6] = wrap_angle(d[6])
            errors.append(d)
            bev.append(bev_iou[i, j])
            iou3d.append(iou_3d[i, j])
    e = np.asarray(errors).reshape(-1, 7)
    nan = dict.fromkeys(BOX_FIELDS, float("nan"))

    def per_field(values: np.ndarray) -> dict[str, float]:
        return dict(zip(BOX_FIELDS, values.tolist(), strict=True)) if len(e) else dict(nan)

    return {
        "matched": len(e),
        "ground_truth": total,
        "bev_iou_0.7": float(np.mean(np.asarray(bev) >= 0.7)) if len(e) else float("nan"),
        "3d_iou_0.7": float(np.mean(np.asarray(iou3d) >= 0.7)) if len(e) else float("nan"),
        "mean": per_field(e.mean(axis=0) if len(e) else e),
        "mae": per_field(np.abs(e).mean(axis=0) if len(e) else e),
        "median_abs": per_field(np.median(np.abs(e), axis=0) if len(e) else e),
    }


def oracle_predictions(
    root: str | os.PathLike,
    pred_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    frame_ids: Sequence[str],
    fields: Sequence[str],
    min_bev_iou: float = 0.3,
    split_folder: str = "training",
) -> Path:
    """Write result files with ``fields`` (of :data:`BOX_FIELDS`) taken from the matched ground truth.

    Each detection is matched to the ground-truth object (any labelled class) of highest BEV IoU; where
    that IoU exceeds ``min_bev_iou`` the chosen fields are replaced. Names, scores and the rest stay.
    """
    unknown = sorted(set(fields) - set(BOX_FIELDS))
    if unknown:
        raise ValueError(f"unknown box fields {unknown}; choose from {list(BOX_FIELDS)}")
    columns = [BOX_FIELDS.index(f) for f in fields]
    root, pred_dir, out_dir = Path(root), Path(pred_dir), Path(out_dir)
    for frame_id in frame_ids:
        objects, boxes = _predictions_lidar(pred_dir, root, frame_id, split_folder)
        if objects is None:
            continue
        if len(boxes):
            frame = load_frame(root, frame_id, split_folder)
            gt = frame.boxes_lidar.astype(np.float64)
            if len(gt):
                iou = boxes_iou_bev(boxes, gt)
                best = iou.argmax(axis=1)
                hit = iou[np.arange(len(boxes)), best] > min_bev_iou
                boxes[np.ix_(hit, columns)] = gt[np.ix_(best[hit], columns)]
                objects.boxes_camera[:] = frame.calib.boxes_lidar_to_camera(boxes)
        write_label(out_dir / f"{frame_id}.txt", objects, fsync=False)
    return out_dir
