"""Benchmark of the KITTI evaluation on a synthetic validation split of KITTI's size.

``bench_kitti_eval()`` returns rows for ``tools/benchmark.py``; ``python -m benchmarks.kitti_metric``
prints them. The labels are generated here (:func:`synthetic_labels`): 3,769 frames with about 14 k
ground-truth lines (DontCare included, class mix and difficulty spread like KITTI's) and about 100 k
detections (jittered copies of the ground truth, duplicates and random false positives, with
projected image boxes and scores). Timed: :func:`~perception.eval.kitti.evaluate` in memory, and
:func:`~perception.eval.kitti.evaluate_folders` on the same labels written to label folders (file
reading included). The first call also compiles (or loads from numba's cache) the kernels; it is
timed separately as the warm-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from perception.data.kitti import KITTI_CLASSES, KittiCalibration, KittiObjects, write_label
from perception.data.synthetic.camera import base_calibration
from perception.eval.kitti import evaluate, evaluate_folders
from perception.geometry.camera import observation_angle, project_boxes_to_image

IMAGE_SHAPE = (375, 1242)
# Class mix of KITTI's training labels (DontCare ~ 28 %), and their sizes (l, h, w) in metres.
_CLASSES = KITTI_CLASSES  # the draw below follows this order
_CLASS_P = (0.55, 0.055, 0.02, 0.085, 0.005, 0.03, 0.01, 0.02, 0.225)
_SIZE = {
    "Car": (3.9, 1.5, 1.6),
    "Van": (5.1, 2.2, 1.9),
    "Truck": (10.1, 3.3, 2.6),
    "Pedestrian": (0.8, 1.75, 0.65),
    "Person_sitting": (0.8, 1.25, 0.6),
    "Cyclist": (1.75, 1.75, 0.6),
    "Tram": (16.0, 3.5, 2.5),
    "Misc": (3.0, 1.9, 1.5),
}
_DETECTED = ("Car", "Pedestrian", "Cyclist")


def _image_boxes(boxes_camera: np.ndarray, calib: KittiCalibration) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4) image boxes of camera boxes, clipped to the image, and (M,) which are visible."""
    lidar = calib.boxes_camera_to_lidar(boxes_camera)
    return project_boxes_to_image(lidar, calib.lidar_to_image_matrix, IMAGE_SHAPE)


def _random_boxes(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    """(M, 7) camera boxes ``[x, y, z, l, h, w, ry]`` in front of the camera, sized by class."""
    m = len(names)
    size = np.array([_SIZE.get(n, (1.0, 1.0, 1.0)) for n in names]).reshape(m, 3)
    size *= rng.normal(1.0, 0.08, (m, 3))
    z = rng.uniform(4.0, 70.0, m)
    x = rng.uniform(-0.6, 0.6, m) * z + rng.normal(0, 1, m)
    y = 1.7 + rng.normal(0, 0.1, m)
    return np.column_stack([x, y, z, size, rng.uniform(-np.pi, np.pi, m)])


def _objects(
    names: np.ndarray,
    boxes: np.ndarray,
    bbox: np.ndarray,
    truncated: np.ndarray,
    occluded: np.ndarray,
    scores: np.ndarray | None,
) -> KittiObjects:
    """KittiObjects with every value rounded as a label file writes it (2 decimals, scores 4)."""
    return KittiObjects(
        names=names.astype("<U16"),
        truncated=truncated.round(2).astype(np.float32),
        occluded=occluded.astype(np.int32),
        alpha=observation_angle(boxes).round(2).astype(np.float32),
        bbox=bbox.round(2).astype(np.float32),
        boxes_camera=boxes.round(2),
        scores=None if scores is None else scores.round(4).astype(np.float32),
    )


def synthetic_labels(
    num_frames: int = 3769, seed: int = 0, dets_per_frame: float = 27.0
) -> tuple[list[KittiObjects], list[KittiObjects]]:
    """Ground truth and noisy detections for ``num_frames`` frames (KITTI-like, see the module doc)."""
    rng = np.random.default_rng(seed)
    calib = base_calibration()
    gts, dts = [], []
    for _ in range(num_frames):
        n = rng.poisson(3.8)
        names = rng.choice(_CLASSES, size=n, p=_CLASS_P)
        boxes = _random_boxes(rng, names)
        bbox, visible = _image_boxes(boxes, calib)
        names, boxes, bbox = names[visible], boxes[visible], bbox[visible]
        n = len(names)
        truncated = np.where(rng.random(n) < 0.8, 0.0, rng.uniform(0, 0.7, n))
        occluded = rng.choice(4, size=n, p=(0.55, 0.25, 0.15, 0.05))
        dc = names == "DontCare"
        boxes[dc], truncated[dc], occluded[dc] = (-1000, -1000, -1000, -1, -1, -1, -10), -1, -1
        gts.append(_objects(names, boxes, bbox, truncated, occluded, None))

        # Detections: 1-3 jittered copies of real objects (Van sometimes called Car), then random FPs.
        real = np.flatnonzero(np.isin(names, (*_DETECTED, "Van")) & (rng.random(n) < 0.9))
        copies = np.repeat(real, rng.integers(1, 4, len(real)))
        det_names = names[copies].copy()
        det_names[det_names == "Van"] = "Car"
        det = boxes[copies].copy()
        scale = det[:, 3:6].mean(axis=1, keepdims=True)
        det[:, [0, 2]] += rng.normal(0, 0.06, (len(det), 2)) * scale
        det[:, 1] += rng.normal(0, 0.05, len(det)) * scale[:, 0]
        det[:, 3:6] *= rng.normal(1.0, 0.05, (len(det), 3))
        det[:, 6] += rng.normal(0, 0.1, len(det)) + np.pi * (rng.random(len(det)) < 0.05)
        scores = rng.beta(5, 2, len(det))
        num_fp = max(int(rng.poisson(dets_per_frame)) - len(det), 0)
        fp_names = rng.choice(_DETECTED, size=num_fp, p=(0.6, 0.25, 0.15))
        det_names = np.concatenate([det_names, fp_names])
        det = np.concatenate([det, _random_boxes(rng, fp_names)])
        scores = np.concatenate([scores, rng.beta(1.5, 5, num_fp)])
        det_bbox, visible = _image_boxes(det, calib)
        keep = visible & (det_bbox[:, 3] - det_bbox[:, 1] > 1)
        m = int(keep.sum())
        dts.append(
            _objects(
                det_names[keep], det[keep], det_bbox[keep], -np.ones(m), -np.ones(m, np.int32), scores[keep]
            )
        )
    return gts, dts


def write_folders(root: Path, gts: list[KittiObjects], dts: list[KittiObjects]) -> tuple[Path, Path]:
    """Write ``root/gt/NNNNNN.txt`` and ``root/pred/NNNNNN.txt``; returns the two folders."""
    gt_dir, pred_dir = root / "gt", root / "pred"
    for i, (gt, dt) in enumerate(zip(gts, dts, strict=True)):
        write_label(gt_dir / f"{i:06d}.txt", gt, fsync=False)
        write_label(pred_dir / f"{i:06d}.txt", dt, fsync=False)
    return gt_dir, pred_dir


def bench_kitti_eval(num_frames: int = 3769, seed: int = 0) -> list[dict]:
    """Seconds to evaluate a KITTI-val-sized split, in memory and from label folders."""
    gts, dts = synthetic_labels(num_frames, seed)
    sizes = {
        "frames": num_frames,
        "ground_truths": sum(len(g) for g in gts),
        "predictions": sum(len(d) for d in dts),
    }
    rows = []
    t0 = time.perf_counter()
    evaluate(gts[:20], dts[:20])
    rows.append({"name": "kitti_eval_warmup_20_frames", **sizes, "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    result = evaluate(gts, dts)
    rows.append({"name": "kitti_eval_in_memory", **sizes, "seconds": time.perf_counter() - t0})
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pred_dir = write_folders(Path(tmp), gts, dts)
        t0 = time.perf_counter()
        from_files = evaluate_folders(gt_dir, pred_dir)
        rows.append({"name": "kitti_eval_folders", **sizes, "seconds": time.perf_counter() - t0})
    rows[-1]["car_3d_moderate_R40"] = from_files["Car_3d/moderate_R40"]
    rows[-2]["car_3d_moderate_R40"] = result["Car_3d/moderate_R40"]
    return rows


if __name__ == "__main__":
    for row in bench_kitti_eval():
        print(row)
