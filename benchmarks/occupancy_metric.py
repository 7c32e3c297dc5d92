"""The occupancy-flow metric on a validation-sized set, beside a plain NumPy peer (``python -m benchmarks.occupancy_metric``).

- **ours**: :class:`perception.eval.occupancy.OccupancyFlowMetric` (pooled, as the official call),
  ``update`` over ``samples`` samples of ``waypoints`` × ``size``² grids in batches of ``batch``, then
  ``compute``; the batches cycle through a pool of synthetic samples (the work does not depend on the
  values), made before the clock starts.
- **peer**: :func:`reference_metrics`, a straightforward NumPy transcription of the official code
  (one waypoint at a time, the 100 thresholds compared one by one with a float64 strict ``>``, the
  warp as four masked corner reads), timed on ``reference_samples`` samples and extrapolated
  linearly to ``samples``. The rows also give the largest difference between the two on those samples.

:func:`reference_metrics` is also the tests' independent reference (``rule="keras"`` counts a value
on a threshold the way Keras' float32 bucketing does; ``rule="strict"`` is the textbook ``p > t``).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch

from perception.eval.occupancy import METRICS

__all__ = [
    "bench_occupancy_metric",
    "reference_auc",
    "reference_metrics",
    "reference_warp",
    "synthetic_grids",
]

THRESHOLDS = np.array([-1e-7, *[i / 99 for i in range(1, 99)], 1 + 1e-7])
"""Keras ``AUC(num_thresholds=100)``'s thresholds, float64."""

KEYS = METRICS  # the metric names compared (the reference's arithmetic stays its own)


def reference_auc(y: np.ndarray, p: np.ndarray, rule: str = "strict") -> float:
    """Keras' interpolated PR AUC of all the cells, threshold by threshold.

    Predictions are cast to float32 and clipped to [0, 1], labels are ``y != 0``. ``rule="strict"``:
    positive at threshold t iff ``float64(p) > t``; ``rule="keras"``: iff t's index ≤ the bucket
    ``max(ceil(p · 99) − 1, 0)`` computed in float32 (Keras' evenly-spaced path).
    """
    label = np.asarray(y).reshape(-1) != 0
    p32 = np.clip(np.asarray(p, dtype=np.float32).reshape(-1), np.float32(0), np.float32(1))
    tp, fp = np.zeros(len(THRESHOLDS)), np.zeros(len(THRESHOLDS))
    if rule == "strict":
        p64 = p32.astype(np.float64)
        above_at = [p64 > t for t in THRESHOLDS]
    elif rule == "keras":
        bucket = np.maximum(np.ceil(p32 * np.float32(99)) - np.float32(1), np.float32(0))
        above_at = [bucket >= i for i in range(len(THRESHOLDS))]
    else:
        raise ValueError(f"rule must be 'strict' or 'keras', got {rule!r}")
    for i, above in enumerate(above_at):
        tp[i] = np.count_nonzero(above & label)
        fp[i] = np.count_nonzero(above & ~label)
    positives = np.count_nonzero(label)
    if positives == 0:
        return 0.0
    area = 0.0
    for i in range(len(THRESHOLDS) - 1):
        pa, pb = tp[i] + fp[i], tp[i + 1] + fp[i + 1]
        d_tp, d_p = tp[i] - tp[i + 1], pa - pb
        slope = d_tp / d_p if d_p > 0 else 0.0
        intercept = tp[i + 1] - slope * pb
        log = math.log(pa / pb) if pa > 0 and pb > 0 else 0.0
        area += slope * (d_tp + intercept * log) / positives
    return area


def reference_warp(origin: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """(H, W) ``origin`` read bilinearly at (column + dx, row + dy), zeros outside, float64."""
    h, w = origin.shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x, y = cols + flow[..., 0].astype(np.float64), rows + flow[..., 1].astype(np.float64)
    x0, y0 = np.floor(x), np.floor(y)
    out = np.zeros((h, w))
    for dy in (0, 1):
        for dx in (0, 1):
            cx, cy = x0 + dx, y0 + dy
            weight = (1 - np.abs(x - cx)) * (1 - np.abs(y - cy))
            inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
            value = np.zeros((h, w))
            value[inside] = origin[cy[inside].astype(int), cx[inside].astype(int)]
            out += weight * value
    return out


def _iou(y: np.ndarray, p: np.ndarray) -> float:
    inter, union = np.sum(p * y), np.sum(p) + np.sum(y) - np.sum(p * y)
    return float(inter / union) if union else 0.0


def reference_metrics(
    *,
    true_observed: np.ndarray,
    true_occluded: np.ndarray,
    true_flow: np.ndarray,
    true_flow_origin: np.ndarray,
    pred_observed: np.ndarray,
    pred_occluded: np.ndarray,
    pred_flow: np.ndarray,
    rule: str = "strict",
) -> dict[str, float]:
    """The official ``compute_occupancy_flow_metrics`` on (B, T, H, W[, 2]) NumPy grids, plainly.

    One waypoint at a time over the whole batch; float64 arithmetic (predictions become float32 only
    where the AUC reads them, as Keras casts them); the waypoint rules of the official loop.
    """
    f64 = {
        k: np.asarray(v, np.float64)
        for k, v in {
            "to": true_observed,
            "tc": true_occluded,
            "tf": true_flow,
            "origin": true_flow_origin,
            "po": pred_observed,
            "pc": pred_occluded,
            "pf": pred_flow,
        }.items()
    }
    values: dict[str, list[float]] = {k: [] for k in KEYS}
    has_obs, has_occ = {-1: True}, {-1: True}
    for k in range(f64["to"].shape[1]):
        to, tc, po, pc = (f64[n][:, k] for n in ("to", "tc", "po", "pc"))
        has_obs[k], has_occ[k] = bool(to.max() > 0), bool(tc.max() > 0)
        if has_obs[k]:
            values["observed_auc"].append(reference_auc(to, po, rule))
            values["observed_iou"].append(_iou(to, po))
        if has_occ[k]:
            values["occluded_auc"].append(reference_auc(tc, pc, rule))
            values["occluded_iou"].append(_iou(tc, pc))
        if (has_obs[k] and has_obs[k - 1]) or (has_occ[k] and has_occ[k - 1]):
            tf, pf = f64["tf"][:, k], f64["pf"][:, k]
            moving = (tf[..., 0] != 0) | (tf[..., 1] != 0)
            err = np.sqrt(np.sum((tf - pf) ** 2, axis=-1))
            values["flow_epe"].append(float(err[moving].mean()) if moving.any() else 0.0)
            warped = np.stack([reference_warp(o, f) for o, f in zip(f64["origin"][:, k], pf, strict=True)])
            true_all = np.clip(to + tc, 0, 1)
            grounded = np.clip(po + pc, 0, 1) * warped
            values["flow_grounded_auc"].append(reference_auc(true_all, grounded, rule))
            values["flow_grounded_iou"].append(_iou(true_all, grounded))
    return {k: float(np.mean(v)) if v else 0.0 for k, v in values.items()}


def synthetic_grids(
    samples: int, waypoints: int = 8, size: int = 256, seed: int = 0
) -> dict[str, np.ndarray]:
    """Plausible float32 grids: ~24 moving boxes a sample (a few of them occluded), their backward
    flow and flow origins, and a forecast (blurred noisy occupancy, noisy flow) — the keyword
    arguments of ``occupancy_flow_metrics``."""
    rng = np.random.default_rng(seed)
    shape = (samples, waypoints + 1, size, size)
    occupancy = np.zeros((2, *shape), np.float32)  # [observed | occluded], step 0 = the current time
    flow = np.zeros((*shape, 2), np.float32)
    for b in range(samples):
        for i in range(24):
            kind = int(i >= 20)
            r, c = rng.uniform(0, size, 2)
            vr, vc = rng.normal(0, 3, 2)
            hh, ww = rng.integers(4, 16, 2)
            for k in range(waypoints + 1):
                r0, c0 = int(r + vr * k), int(c + vc * k)
                rs, cs = slice(max(r0, 0), max(r0 + hh, 0)), slice(max(c0, 0), max(c0 + ww, 0))
                occupancy[kind, b, k, rs, cs] = 1.0
                flow[b, k, rs, cs] = (-vc, -vr)
    true_all = np.clip(occupancy[0] + occupancy[1], 0, 1)
    noise = rng.uniform(0, 1, (2, 2, samples, waypoints, size, size)).astype(np.float32)
    future = occupancy[:, :, 1:]
    pred = future * (0.3 + 0.7 * noise[0]) + (1 - future) * 0.6 * noise[1] ** 3  # overlapping scores
    pred_flow = flow[:, 1:] + rng.normal(0, 0.7, flow[:, 1:].shape).astype(np.float32)
    return {
        "true_observed": occupancy[0, :, 1:],
        "true_occluded": occupancy[1, :, 1:],
        "true_flow": flow[:, 1:] * (true_all[:, 1:, ..., None] > 0),
        "true_flow_origin": true_all[:, :-1],
        "pred_observed": pred[0],
        "pred_occluded": pred[1],
        "pred_flow": pred_flow,
    }


def bench_occupancy_metric(
    samples: int = 1000,
    waypoints: int = 8,
    size: int = 256,
    batch: int = 8,
    reference_samples: int = 2,
    pool: int = 16,
    threads: int = 2,
) -> list[dict[str, Any]]:
    """Seconds to score ``samples`` samples, ours and the NumPy peer (module docstring); one row each."""
    from perception.eval.occupancy import OccupancyFlowMetric, occupancy_flow_metrics

    pool = max(pool, batch)
    grids = synthetic_grids(max(pool, reference_samples), waypoints, size)
    tensors = {k: torch.from_numpy(v) for k, v in grids.items()}
    batches = [{k: v[i : i + batch] for k, v in tensors.items()} for i in range(0, pool - batch + 1, batch)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        metric = OccupancyFlowMetric(num_waypoints=waypoints)
        t0 = time.perf_counter()
        done = 0
        while done < samples:
            part = batches[(done // batch) % len(batches)]
            n = min(batch, samples - done)
            metric.update(**{k: v[:n] for k, v in part.items()})
            done += n
        metric.compute()
        ours = time.perf_counter() - t0
        subset = {k: v[:reference_samples] for k, v in grids.items()}
        t0 = time.perf_counter()
        ref = reference_metrics(**subset)
        peer = time.perf_counter() - t0
        mine = occupancy_flow_metrics(**subset)
    finally:
        torch.set_num_threads(previous)
    diff = max(abs(mine[k] - ref[k]) for k in KEYS)
    peer_full = peer * samples / reference_samples
    cells = f"{samples} × {waypoints} × {size}²"
    return [
        {
            "implementation": "ours: OccupancyFlowMetric (torch, bucketed)",
            "scored": cells,
            "seconds": ours,
            "s per 1000 samples": ours * 1000 / samples,
            "vs ours": 1.0,
            "threads": threads,
        },
        {
            "implementation": "peer: NumPy, per-threshold > (extrapolated)",
            "scored": f"{reference_samples} × {waypoints} × {size}² → {samples}",
            "seconds": peer_full,
            "s per 1000 samples": peer_full * 1000 / samples,
            "vs ours": peer_full / ours,
            "threads": threads,
            "max |Δ metric| on the subset": diff,
        },
    ]


def _main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--waypoints", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reference-samples", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for row in bench_occupancy_metric(
        args.samples, args.waypoints, args.size, args.batch, args.reference_samples, threads=args.threads
    ):
        print(row)


if __name__ == "__main__":  # pragma: no cover
    _main()
