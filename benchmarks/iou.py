"""Benchmark of rotated BEV IoU: our numba kernel and our torch kernel (on CPU) against shapely 2.

``bench_iou()`` returns rows for ``tools/benchmark.py``; ``python -m benchmarks.iou`` prints them.
Shapely is the peer: its vectorised ``intersection`` over (M, 1) × (1, K) polygon arrays, then ``area``.
Every case checks that the three agree before timing. Takes about 10 s.
"""

from __future__ import annotations

import numpy as np
import shapely
import torch

from benchmarks.timing import median_seconds
from perception.geometry.boxes import boxes_bev_corners
from perception.ops import iou3d
from perception.ops.iou3d import boxes_iou_bev, nms_bev


def _shapely_iou_bev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The peer: BEV IoU from shapely 2's vectorised polygon intersection."""
    pa, pb = shapely.polygons(boxes_bev_corners(a)), shapely.polygons(boxes_bev_corners(b))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None, :] - inter
    return inter / union


def _torch_kernel_iou_bev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Our vectorised torch kernel (the CUDA code path), forced on CPU tensors."""
    old, iou3d._TORCH_ON_CPU = iou3d._TORCH_ON_CPU, True
    try:
        return boxes_iou_bev(a, b)
    finally:
        iou3d._TORCH_ON_CPU = old


def _scene(
    rng: np.random.Generator, num_gt: int, per_gt: int, num_random: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ground truths over ±50 m and predictions: ``per_gt`` jittered copies of each plus random ones."""

    def boxes(n: int) -> np.ndarray:
        sizes = rng.uniform([3.5, 1.6, 1.4], [5.0, 2.1, 1.8], (n, 3))  # car-like
        return np.column_stack(
            [rng.uniform(-50, 50, (n, 2)), rng.uniform(-1, 0, n), sizes, rng.uniform(-np.pi, np.pi, n)]
        )

    gt = boxes(num_gt)
    pred = np.repeat(gt, per_gt, axis=0)
    pred[:, :3] += rng.normal(0, 0.5, (len(pred), 3))
    pred[:, 3:6] *= rng.uniform(0.85, 1.15, (len(pred), 3))
    pred[:, 6] += rng.normal(0, 0.2, len(pred))
    return np.concatenate([pred, boxes(num_random)]), gt


def bench_iou() -> list[dict]:
    """Time BEV IoU of predictions × ground truths: ours (numba; torch kernel on CPU) vs shapely 2.

    Returns:
        One dict per (case, implementation): op, input, ours (backend), ours_ms, ours_pairs_per_s,
        peer, peer_ms, peer_pairs_per_s and speedup (peer time / our time); plus a row timing ``nms_bev``.
    """
    rng = np.random.default_rng(0)
    cases = [
        ("200 pred × 200 GT (KITTI-eval-like)", *_scene(rng, num_gt=200, per_gt=1, num_random=0), 7),
        ("4k proposals × 100 GT", *_scene(rng, num_gt=100, per_gt=36, num_random=400), 3),
        ("500 × 500 in 10 crowds of 50", *_scene(rng, num_gt=10, per_gt=50, num_random=0)[:1] * 2, 3),
    ]
    rows = []
    for name, pred, gt, repeats in cases:
        pairs = len(pred) * len(gt)
        tp, tg = torch.from_numpy(pred), torch.from_numpy(gt)
        peer_ref = _shapely_iou_bev(pred, gt)
        np.testing.assert_allclose(boxes_iou_bev(pred, gt), peer_ref, atol=1e-9)
        np.testing.assert_allclose(_torch_kernel_iou_bev(tp, tg).numpy(), peer_ref, atol=1e-9)
        peer_s = median_seconds(lambda p=pred, g=gt: _shapely_iou_bev(p, g), repeats)
        ours = {
            "numba (NumPy in)": median_seconds(lambda p=pred, g=gt: boxes_iou_bev(p, g), max(repeats, 5)),
            "torch kernel (CPU)": median_seconds(lambda p=tp, g=tg: _torch_kernel_iou_bev(p, g), repeats),
        }
        for backend, ours_s in ours.items():
            rows.append(
                {
                    "op": "boxes_iou_bev",
                    "input": f"{name}: {pairs / 1e3:.0f} k pairs",
                    "ours": backend,
                    "ours_ms": ours_s * 1e3,
                    "ours_pairs_per_s": pairs / ours_s,
                    "peer": "shapely 2 vectorised",
                    "peer_ms": peer_s * 1e3,
                    "peer_pairs_per_s": pairs / peer_s,
                    "speedup": peer_s / ours_s,
                }
            )
    boxes, _ = _scene(rng, num_gt=100, per_gt=40, num_random=96)
    scores = rng.uniform(size=len(boxes))
    nms_s = median_seconds(lambda: nms_bev(boxes, scores, 0.5), 5)
    kept = len(nms_bev(boxes, scores, 0.5))
    rows.append(
        {
            "op": "nms_bev",
            "input": f"{len(boxes)} boxes, IoU > 0.5",
            "ours": "numba (NumPy in)",
            "ours_ms": nms_s * 1e3,
            "kept": kept,
        }
    )
    return rows


if __name__ == "__main__":
    for r in bench_iou():
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
