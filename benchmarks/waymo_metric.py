"""Benchmark of the Waymo detection metric on a synthetic split of about 40 k objects each side.

``bench_waymo_eval()`` returns rows for ``tools/benchmark.py``; ``python -m benchmarks.waymo_metric``
prints them. The objects are generated here (:func:`synthetic_objects`): 1,000 frames of about 40
ground-truth boxes each (Waymo's class mix, up to 75 m away, lidar point counts falling with range,
so some boxes are LEVEL_2 and a few have no points) and about 40 predictions per frame (jittered copies
of 85 % of the ground truth, some duplicated, a few with the heading flipped, plus random false
positives), with scores. Timed: :func:`~perception.eval.waymo.evaluate` in memory with both
breakdowns (OBJECT_TYPE and RANGE), and the same from submission ``.bin`` files
(:func:`~perception.eval.waymo.write_objects`, then :func:`~perception.eval.waymo.evaluate_files`,
reading included). The first call also compiles (or loads from numba's cache) the IoU kernel; it is
timed separately as the warm-up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from perception.eval.waymo import FrameKey, WaymoObjects, evaluate, evaluate_files, write_objects

# Label.Type codes 1 vehicle, 2 pedestrian, 3 sign, 4 cyclist: share of the labels and sizes (l, w, h).
_TYPES = np.array([1, 2, 3, 4])
_TYPE_P = (0.6, 0.3, 0.07, 0.03)
_SIZE = {1: (4.6, 2.0, 1.7), 2: (0.9, 0.85, 1.75), 3: (0.25, 0.7, 0.8), 4: (1.8, 0.8, 1.7)}


def _boxes(rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
    """(M, 7) boxes of the given types around the vehicle, up to 75 m away."""
    m = len(types)
    size = np.array([_SIZE[int(t)] for t in types]).reshape(m, 3) * rng.normal(1.0, 0.08, (m, 3))
    distance = 75.0 * np.sqrt(rng.uniform(0.002, 1.0, m))
    azimuth = rng.uniform(-np.pi, np.pi, m)
    z = rng.normal(1.0, 0.3, m)
    return np.column_stack(
        [distance * np.cos(azimuth), distance * np.sin(azimuth), z, size, rng.uniform(-np.pi, np.pi, m)]
    )


def synthetic_objects(
    num_frames: int = 1000, seed: int = 0, gt_per_frame: float = 40.0
) -> tuple[dict[FrameKey, WaymoObjects], dict[FrameKey, WaymoObjects]]:
    """Ground truth and noisy predictions, keyed by ``(context_name, timestamp_micros)``."""
    rng = np.random.default_rng(seed)
    gts: dict[FrameKey, WaymoObjects] = {}
    preds: dict[FrameKey, WaymoObjects] = {}
    for f in range(num_frames):
        key = (f"segment-{f // 200:05d}_synthetic", 1_550_000_000_000_000 + 100_000 * f)
        n = int(rng.poisson(gt_per_frame))
        types = rng.choice(_TYPES, size=n, p=_TYPE_P)
        boxes = _boxes(rng, types)
        distance = np.hypot(boxes[:, 0], boxes[:, 1])
        points = rng.poisson(4000.0 / (1.0 + distance) ** 1.5 * boxes[:, 3:6].prod(axis=1))
        difficulty = np.where(rng.random(n) < 0.1, 2, 0)  # mostly unset: decided by the point count
        gts[key] = WaymoObjects(
            boxes=boxes, types=types, difficulty=difficulty, num_lidar_points=points.astype(np.int64)
        )

        found = np.flatnonzero(rng.random(n) < 0.85)
        copies = np.repeat(found, np.where(rng.random(len(found)) < 0.08, 2, 1))
        det = boxes[copies].copy()
        scale = det[:, 3:6].mean(axis=1, keepdims=True)
        det[:, :3] += rng.normal(0.0, 0.04, (len(det), 3)) * scale
        det[:, 3:6] *= rng.normal(1.0, 0.04, (len(det), 3))
        det[:, 6] += rng.normal(0.0, 0.08, len(det)) + np.pi * (rng.random(len(det)) < 0.03)
        scores = rng.beta(5, 2, len(det))
        num_fp = int(rng.poisson(0.12 * gt_per_frame))
        fp_types = rng.choice(_TYPES, size=num_fp, p=_TYPE_P)
        preds[key] = WaymoObjects(
            boxes=np.concatenate([det, _boxes(rng, fp_types)]),
            types=np.concatenate([types[copies], fp_types]),
            scores=np.concatenate([scores, rng.beta(1.5, 5, num_fp)]).astype(np.float32),
            overlap_with_nlz=np.concatenate([np.zeros(len(det), bool), rng.random(num_fp) < 0.05]),
        )
    return gts, preds


def bench_waymo_eval(num_frames: int = 1000, seed: int = 0) -> list[dict]:
    """Seconds to evaluate about 40 k ground truths against 40 k predictions, in memory and from files."""
    gts, preds = synthetic_objects(num_frames, seed)
    sizes = {
        "frames": num_frames,
        "ground_truths": sum(len(g) for g in gts.values()),
        "predictions": sum(len(p) for p in preds.values()),
    }
    rows = []
    warm = list(gts)[:10]
    t0 = time.perf_counter()
    evaluate({k: gts[k] for k in warm}, {k: preds[k] for k in warm})
    rows.append({"name": "waymo_eval_warmup_10_frames", **sizes, "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    result = evaluate(gts, preds)
    rows.append({"name": "waymo_eval_in_memory", **sizes, "seconds": time.perf_counter() - t0})
    rows[-1]["vehicle_l2_mAPH"] = result["VEHICLE_LEVEL_2"]["mAPH"]
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = Path(tmp) / "gt.bin", Path(tmp) / "pred.bin"
        t0 = time.perf_counter()
        write_objects(gt_path, gts, fsync=False)
        write_objects(pred_path, preds, fsync=False)
        rows.append({"name": "waymo_write_bin", **sizes, "seconds": time.perf_counter() - t0})
        t0 = time.perf_counter()
        from_files = evaluate_files(gt_path, pred_path)
        rows.append({"name": "waymo_eval_bin_files", **sizes, "seconds": time.perf_counter() - t0})
        rows[-1]["vehicle_l2_mAPH"] = from_files["VEHICLE_LEVEL_2"]["mAPH"]
    return rows


if __name__ == "__main__":
    for row in bench_waymo_eval():
        print(row)
