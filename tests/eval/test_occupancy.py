"""Waymo occupancy-flow metrics: the official unit tests' golden values, Keras' float32 bucketing, the
warp's conventions, a plain NumPy reference, properties, the torchmetrics state, the task's plug-in,
MotionNet's displacement errors and the command line.

The definitions (docs/OCCUPANCY.md §1.2; waymo_open_dataset ``occupancy_flow_metrics.py`` and
Keras ``AUC``): see perception/eval/occupancy.py. The reference is benchmarks/occupancy_metric.py's
NumPy transcription, threshold by threshold.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.occupancy_metric import reference_auc, reference_metrics, reference_warp, synthetic_grids
from perception.eval.occupancy import (
    COUNTS,
    METRICS,
    OccupancyEvaluator,
    OccupancyFlowMetric,
    flow_epe,
    flow_warp,
    main,
    motion_displacement_errors,
    occupancy_auc,
    occupancy_flow_metrics,
    occupancy_flow_stats,
    occupancy_soft_iou,
    per_waypoint,
)
from perception.structures.occupancy import OccupancyForecast, OccupancyTargets

REPO = Path(__file__).resolve().parents[2]
ARGS = (
    "true_observed",
    "true_occluded",
    "true_flow",
    "true_flow_origin",
    "pred_observed",
    "pred_occluded",
    "pred_flow",
)


def patch(rows: slice, cols: slice, shape=(2, 100, 100)) -> np.ndarray:
    grid = np.zeros(shape, np.float32)
    grid[:, rows, cols] = 1.0
    return grid


def grids(b=2, t=3, h=6, w=5, seed=0) -> dict[str, np.ndarray]:
    """Small random float32 grids (binary truths, scores k/255, flows on a half-cell lattice)."""
    rng = np.random.default_rng(seed)
    occ = lambda: (rng.random((b, t, h, w)) < 0.3).astype(np.float32)  # noqa: E731
    score = lambda: rng.integers(0, 256, (b, t, h, w)).astype(np.float32) / np.float32(255)  # noqa: E731
    flow = np.stack([rng.integers(-4, 5, (b, t, h, w)) / 2, rng.integers(-2, 3, (b, t, h, w))], -1)
    true_flow = np.stack([rng.integers(-3, 4, (b, t, h, w)), rng.integers(-3, 4, (b, t, h, w))], -1)
    return {
        "true_observed": occ(),
        "true_occluded": occ(),
        "true_flow": true_flow.astype(np.float32),
        "true_flow_origin": occ(),
        "pred_observed": score(),
        "pred_occluded": score(),
        "pred_flow": flow.astype(np.float32),
    }


def headline(results: dict[str, float]) -> dict[str, float]:
    return {k: results[k] for k in (*METRICS, *COUNTS)}


# --------------------------------------------------------------------------------------------------
# the official unit tests (occupancy_flow_metrics_test.py), golden values


GT = patch(slice(10, 20), slice(10, 20))
AUC_CASES = {
    "both zero": (np.zeros((2, 100, 100)), np.zeros((2, 100, 100)), 0.0),
    "both one": (np.ones((2, 100, 100)), np.ones((2, 100, 100)), 1.0),
    "truth 0, prediction 1": (np.zeros((2, 100, 100)), np.ones((2, 100, 100)), 0.0),
    "patch vs zeros": (GT, np.zeros((2, 100, 100)), 0.01),
    "disjoint patches": (GT, patch(slice(30, 40), slice(30, 40)), 0.009),
    "50% overlap": (GT, patch(slice(15, 25), slice(10, 20)), 0.26404),
    "linear transform": (GT, GT / 2 + 0.25, 1.0),
}
IOU_CASES = {
    "both zero": (np.zeros((2, 100, 100)), np.zeros((2, 100, 100)), 0.0),
    "both one": (np.ones((2, 100, 100)), np.ones((2, 100, 100)), 1.0),
    "truth 0, prediction 1": (np.zeros((2, 100, 100)), np.ones((2, 100, 100)), 0.0),
    "patch vs zeros": (GT, np.zeros((2, 100, 100)), 0.0),
    "disjoint patches": (GT, patch(slice(30, 40), slice(30, 40)), 0.0),
    "50% overlap": (GT, patch(slice(15, 25), slice(10, 20)), 0.333),
    "linear transform": (GT, GT / 2 + 0.25, 0.029),
}


@pytest.mark.parametrize("case", list(AUC_CASES))
def test_auc_golden_values(case):
    true, pred, expected = AUC_CASES[case]
    assert occupancy_auc(true, pred) == pytest.approx(expected, abs=1e-3)
    assert occupancy_auc(true, pred) == pytest.approx(reference_auc(true, pred, "keras"), abs=1e-12)


@pytest.mark.parametrize("case", list(IOU_CASES))
def test_soft_iou_golden_values(case):
    true, pred, expected = IOU_CASES[case]
    assert occupancy_soft_iou(true, pred) == pytest.approx(expected, abs=1e-3)


def test_flow_epe_golden_values():
    assert flow_epe(np.zeros((4, 100, 100, 2)), np.zeros((4, 100, 100, 2))) == 0.0
    assert flow_epe(np.ones((4, 100, 100, 2)), np.ones((4, 100, 100, 2))) == 0.0
    three_four = np.ones((4, 10, 10, 2)) * np.array([3.0, -4.0])
    assert flow_epe(three_four, np.zeros((4, 10, 10, 2))) == pytest.approx(5.0, abs=1e-6)
    # cells with no true flow are left out, however wrong the prediction there
    true = np.zeros((1, 2, 2, 2))
    true[0, 0, 0] = (3.0, 4.0)
    assert flow_epe(true, np.full((1, 2, 2, 2), 100.0)) == pytest.approx(math.hypot(97, 96))


def full_call_grids() -> dict[str, np.ndarray]:
    """The official full-call test: 4 × 256², two 20×20 boxes with 25 % overlap, 8 waypoints."""
    true = np.zeros((4, 8, 256, 256), np.float32)
    true[:, :, 100:120, 100:120] = 1.0
    pred = np.zeros((4, 8, 256, 256), np.float32)
    pred[:, :, 110:130, 110:130] = 1.0
    base_flow = np.ones((4, 8, 256, 256, 2), np.float32)
    return {
        "true_observed": true,
        "true_occluded": true * np.float32(0.2),
        "true_flow": base_flow * np.float32(0.5),
        "true_flow_origin": true,
        "pred_observed": pred,
        "pred_occluded": pred * np.float32(0.2),
        "pred_flow": base_flow * np.float32(3.5),
    }


def test_full_call_golden_values():
    results = occupancy_flow_metrics(**full_call_grids())
    golden = {
        "observed_auc": 0.07,
        "occluded_auc": 0.07,
        "observed_iou": 0.14,
        "occluded_iou": 0.02,
        "flow_epe": 4.24,
        "flow_grounded_auc": 0.13,
        "flow_grounded_iou": 0.10,
    }
    for name, value in golden.items():
        assert results[name] == pytest.approx(value, abs=0.01), name
    # the tighter values of a scratch re-derivation (docs/OCCUPANCY.md §1.2) and 3√2
    tight = [0.0717, 0.0717, 0.1429, 0.0256, 3 * math.sqrt(2), 0.1319, 0.1056]
    assert [results[n] for n in METRICS] == pytest.approx(tight, abs=1e-4)
    assert [results[n] for n in COUNTS] == [8, 8, 8]
    assert per_waypoint(results)["flow_epe"] == pytest.approx([3 * math.sqrt(2)] * 8)


# --------------------------------------------------------------------------------------------------
# Keras' AUC: the float32 bucket rule, clipping, binary labels


def test_quantised_scores_fall_in_keras_float32_buckets_not_the_strict_ones():
    k = np.arange(256)
    p = (k.astype(np.float32) / np.float32(255)).reshape(1, 1, 16, 16)  # the submission's uint8 / 255
    y = (k % 3 == 0).astype(np.float32).reshape(1, 1, 16, 16)
    zero, flow = np.zeros_like(p), np.zeros((1, 1, 16, 16, 2), np.float32)
    stats = occupancy_flow_stats(
        true_observed=y,
        true_occluded=zero,
        true_flow=flow,
        true_flow_origin=zero,
        pred_observed=p,
        pred_occluded=zero,
        pred_flow=flow,
    )
    counts = stats.buckets[0, 0, 0].sum(0).numpy()  # cells per bucket, negatives and positives
    # the bucket rule written out: max(ceil(float32(p) · 99) − 1, 0), float32 throughout
    keras = np.maximum(np.ceil(p.reshape(-1) * np.float32(99)) - 1, 0).astype(int)
    np.testing.assert_array_equal(counts, np.bincount(keras, minlength=100))
    # 85/255 and 170/255 as float32 lie just above 1/3 and 2/3, yet 99·p rounds to 33.0 and 66.0
    assert np.float64(np.float32(85) / np.float32(255)) > 33 / 99
    assert keras[85] == 32 and keras[170] == 65
    strict = np.array(
        [np.sum(np.float64(v) > np.array([-1e-7, *np.arange(1, 99) / 99])) - 1 for v in p.ravel()]
    )
    assert strict[85] == 33 and strict[170] == 66  # where a float64 p > t would put them
    assert np.count_nonzero(strict != keras) == 2
    ours = occupancy_auc(y, p)
    assert ours == pytest.approx(reference_auc(y, p, "keras"), abs=1e-12)
    assert abs(ours - reference_auc(y, p, "strict")) > 1e-5


def test_predictions_are_clipped_and_labels_binarised_for_the_auc_but_not_the_iou():
    rng = np.random.default_rng(1)
    y = (rng.random((2, 20, 20)) < 0.2).astype(np.float32)
    p = rng.uniform(-0.5, 1.5, (2, 20, 20)).astype(np.float32)
    assert occupancy_auc(y, p) == occupancy_auc(y, np.clip(p, 0, 1))
    assert occupancy_auc(y * 0.2, p) == occupancy_auc(y, p)  # a true value ≠ 0 is a positive
    assert occupancy_soft_iou(y * 0.2, p) != occupancy_soft_iou(y, p)  # the IoU reads raw values
    raw = float(np.sum(p * y) / (np.sum(p) + np.sum(y) - np.sum(p * y)))
    assert occupancy_soft_iou(y, p) == pytest.approx(raw, rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 300))
def test_auc_ignores_the_order_of_cells_and_a_perfect_forecast_scores_one(seed, n):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.random()).astype(np.float32)
    p = rng.random(n).astype(np.float32)
    perm = rng.permutation(n)
    assert occupancy_auc(y[perm], p[perm]) == occupancy_auc(y, p)
    assert occupancy_auc(y, p) == pytest.approx(reference_auc(y, p, "keras"), abs=1e-12)
    if y.any():
        assert occupancy_auc(y, y) == pytest.approx(1.0, abs=1e-12)
        assert occupancy_soft_iou(y, y) == 1.0


# --------------------------------------------------------------------------------------------------
# the warp


def test_warp_reads_the_origin_at_cell_plus_flow_with_zeros_outside():
    h, w = 8, 10
    origin = np.zeros((h, w), np.float32)
    origin[5, 7] = 1.0
    origin[3, w - 1] = 1.0
    flow = np.zeros((h, w, 2), np.float32)
    flow[6, 5] = (2.0, -1.0)  # dx = column offset, dy = row offset: reads (row 5, column 7)
    flow[1, 1] = (6.5, 4.0)  # half way between columns 7 and 8 of row 5
    flow[3, w - 2] = (1.5, 0.0)  # half a cell past the last column: half of it
    flow[0, 0] = (1000.0, -1000.0)  # far outside
    flow[5, 0] = (-1.0, 0.0)  # column −1
    warped = flow_warp(origin, flow).numpy()
    assert warped[6, 5] == 1.0
    assert warped[1, 1] == 0.5
    assert warped[3, w - 2] == 0.5
    assert warped[0, 0] == 0.0 and warped[5, 0] == 0.0
    assert warped[5, 7] == 1.0  # zero flow: the origin itself
    np.testing.assert_allclose(warped, reference_warp(origin, flow), atol=1e-6)


def test_warp_matches_the_plain_bilinear_reference_on_random_flows():
    rng = np.random.default_rng(3)
    origin = rng.random((3, 12, 9)).astype(np.float32)
    flow = rng.normal(0, 4, (3, 12, 9, 2)).astype(np.float32)
    warped = flow_warp(origin, flow).numpy()
    expected = np.stack([reference_warp(o, f) for o, f in zip(origin, flow, strict=True)])
    np.testing.assert_allclose(warped, expected, atol=2e-6)


# --------------------------------------------------------------------------------------------------
# the whole call against the NumPy reference; waypoint rules; pooling


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 3),
    t=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    empty=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_metrics_match_the_threshold_by_threshold_reference(seed, b, t, h, w, empty):
    g = grids(b, t, h, w, seed)
    for k in range(t):  # empty some waypoints to exercise which ones count
        if empty[k]:
            g["true_observed"][:, k] = 0
        if empty[3 + k]:
            g["true_occluded"][:, k] = 0
    ours, ref = occupancy_flow_metrics(**g), reference_metrics(**g, rule="keras")
    for name in METRICS:  # AUCs exactly (scores k/255, warps on a half-cell lattice), the rest to float32
        assert ours[name] == pytest.approx(ref[name], abs=1e-12 if "auc" in name else 1e-5), name
    has_obs = [bool(g["true_observed"][:, k].any()) for k in range(t)]
    has_occ = [bool(g["true_occluded"][:, k].any()) for k in range(t)]
    assert ours["num_waypoints_with_observed_occupancy"] == sum(has_obs)
    assert ours["num_waypoints_with_occluded_occupancy"] == sum(has_occ)
    flows = [
        (has_obs[k] and (k == 0 or has_obs[k - 1])) or (has_occ[k] and (k == 0 or has_occ[k - 1]))
        for k in range(t)
    ]
    assert ours["num_waypoints_with_flow"] == sum(flows)


def test_metrics_match_the_reference_on_plausible_grids():
    g = synthetic_grids(2, waypoints=3, size=48, seed=5)
    ours, ref = occupancy_flow_metrics(**g), reference_metrics(**g, rule="keras")
    assert [ours[n] for n in METRICS] == pytest.approx([ref[n] for n in METRICS], abs=1e-5)


def test_flow_counts_where_the_same_family_is_occupied_at_k_and_before():
    # the official rule: (observed at k and k−1) or (occluded at k and k−1); k = −1 counts as occupied.
    # Waypoint 1 has observed vehicles (not at 0) and waypoint 0 occluded ones (not at 1): all-vehicle
    # occupancy is non-empty at both, yet the official code skips waypoint 1's flow.
    g = grids(b=1, t=2, h=4, w=4)
    g["true_observed"][:] = 0
    g["true_observed"][0, 1, 1, 1] = 1
    g["true_occluded"][:] = 0
    g["true_occluded"][0, 0, 2, 2] = 1
    results = occupancy_flow_metrics(**g)
    assert results["num_waypoints_with_observed_occupancy"] == 1
    assert results["num_waypoints_with_occluded_occupancy"] == 1
    assert results["num_waypoints_with_flow"] == 1
    table = per_waypoint(results)
    assert math.isnan(table["flow_epe"][1]) and not math.isnan(table["flow_epe"][0])
    assert math.isnan(table["observed_auc"][0]) and math.isnan(table["occluded_auc"][1])
    assert results["observed_auc"] == table["observed_auc"][1]


def test_no_counted_waypoint_scores_zero():
    g = grids(b=1, t=2, h=4, w=4)
    g["true_occluded"][:] = 0
    results = occupancy_flow_metrics(**g)
    assert results["occluded_auc"] == results["occluded_iou"] == 0.0
    assert results["num_waypoints_with_occluded_occupancy"] == 0


def test_pooled_is_one_curve_over_the_batch_and_per_sample_is_the_mean_over_samples():
    g = grids(b=3, t=2, h=5, w=5, seed=2)
    g["true_occluded"][1] = 0  # sample 1 has no occluded vehicles: left out of that mean
    pooled = occupancy_flow_metrics(**g)
    assert pooled["observed_auc"] == pytest.approx(reference_metrics(**g, rule="keras")["observed_auc"])
    singles = [occupancy_flow_metrics(**{k: v[i : i + 1] for k, v in g.items()}) for i in range(3)]
    per_sample = occupancy_flow_metrics(**g, pool_batch=False)
    assert per_sample["observed_auc"] == pytest.approx(np.mean([s["observed_auc"] for s in singles]))
    assert per_sample["occluded_auc"] == pytest.approx(
        np.mean([singles[0]["occluded_auc"], singles[2]["occluded_auc"]])
    )
    assert per_sample["num_waypoints_with_occluded_occupancy"] == sum(
        s["num_waypoints_with_occluded_occupancy"] for s in singles
    )
    assert pooled["observed_auc"] != pytest.approx(per_sample["observed_auc"])


def test_numpy_torch_and_float64_inputs_agree_and_inputs_are_left_alone():
    g = grids(b=2, t=2, h=7, w=6, seed=4)
    expected = occupancy_flow_metrics(**g)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in g.items()}
    assert occupancy_flow_metrics(**tensors) == expected
    for k, v in tensors.items():
        np.testing.assert_array_equal(v.numpy(), g[k], err_msg=k)
    assert occupancy_flow_metrics(**{k: v.astype(np.float64) for k, v in g.items()}) == expected
    chunked = occupancy_flow_stats(**g, chunk_cells=1)
    whole = occupancy_flow_stats(**g)
    for a, b in zip(chunked, whole, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_inputs_are_named():
    g = grids(b=1, t=2, h=4, w=4)
    bad = dict(g, pred_occluded=g["pred_occluded"][:, :1])
    with pytest.raises(ValueError, match="pred_occluded has shape"):
        occupancy_flow_metrics(**bad)
    bad = dict(g, pred_flow=g["pred_flow"][..., :1])
    with pytest.raises(ValueError, match="pred_flow has shape"):
        occupancy_flow_metrics(**bad)
    for name in ("pred_observed", "pred_flow", "true_flow_origin"):
        bad = dict(g, **{name: g[name].copy()})
        bad[name][0, 1, 2] = np.nan
        with pytest.raises(ValueError, match=f"{name} has NaN .*sample 0, waypoint 1"):
            occupancy_flow_metrics(**bad)


# --------------------------------------------------------------------------------------------------
# torchmetrics and the task's plug-in


def split(g: dict[str, np.ndarray], i: int) -> tuple[dict, dict]:
    return {k: torch.from_numpy(v[:i]) for k, v in g.items()}, {
        k: torch.from_numpy(v[i:]) for k, v in g.items()
    }


def assert_same(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-9, nan_ok=True), k


@pytest.mark.parametrize("pool_batch", [True, False])
def test_metric_over_two_updates_equals_one_call_on_the_concatenation(pool_batch):
    g = grids(b=4, t=3, h=6, w=6, seed=7)
    g["true_occluded"][:2, 1] = 0  # waypoint 1's occluded is empty in the first update only
    first, second = split(g, 2)
    metric = OccupancyFlowMetric(num_waypoints=3, pool_batch=pool_batch)
    metric.update(**first)
    metric.update(**second)
    expected = occupancy_flow_metrics(**g, pool_batch=pool_batch)
    assert_same(metric.compute(), expected)
    if pool_batch:  # the waypoint counts on the whole set, though the first update alone skips it
        assert occupancy_flow_metrics(**first)["num_waypoints_with_occluded_occupancy"] == 2
        assert expected["num_waypoints_with_occluded_occupancy"] == 3
    metric.reset()
    metric.update(**second)
    assert_same(metric.compute(), occupancy_flow_metrics(**second, pool_batch=pool_batch))
    with pytest.raises(ValueError, match="waypoints"):
        OccupancyFlowMetric(num_waypoints=2).update(**first)


def test_evaluator_scores_the_vehicle_channel_of_the_model_and_the_baselines():
    g = grids(b=2, t=2, h=5, w=5, seed=8)
    t = {k: torch.from_numpy(v) for k, v in g.items()}
    classes = lambda x: torch.stack([x, torch.rand_like(x), torch.rand_like(x)], 2)  # noqa: E731
    forecast = OccupancyForecast(
        observed=classes(t["pred_observed"]), occluded=classes(t["pred_occluded"]), flow=t["pred_flow"]
    )
    copy = OccupancyForecast(
        observed=classes(t["true_flow_origin"]),
        occluded=classes(0 * t["true_occluded"]),
        flow=0 * t["true_flow"],
    )
    targets = OccupancyTargets(
        waypoint_times=torch.tensor([[1.0, 2.0]] * 2),
        observed=classes(t["true_observed"]),
        occluded=classes(t["true_occluded"]),
        flow=t["true_flow"],
        flow_origin=t["true_flow_origin"],
        current=torch.zeros(2, 3, 5, 5),
        baselines={"copy_forward": copy},
    )
    evaluator = OccupancyEvaluator(num_waypoints=2)
    evaluator.update([forecast], SimpleNamespace(occupancy=targets))
    results = evaluator.compute()
    assert_same({k: results[k] for k in (*METRICS, *COUNTS)}, headline(occupancy_flow_metrics(**g)))
    assert results["copy_forward/flow_epe"] == pytest.approx(
        occupancy_flow_metrics(**dict(g, pred_flow=0 * g["pred_flow"]))["flow_epe"]
    )
    assert not any(k.startswith("constant_velocity/") for k in results)
    shown = evaluator.headline(results)
    assert "flow_grounded_auc" in shown and "copy_forward/flow_grounded_auc" in shown
    assert not any("/waypoint_" in k for k in shown)
    assert evaluator.progress_key == "flow_grounded_auc"
    evaluator.reset()
    per_sample = [
        OccupancyForecast(observed=forecast.observed[i], occluded=forecast.occluded[i], flow=forecast.flow[i])
        for i in range(2)
    ]
    evaluator.update(per_sample, SimpleNamespace(occupancy=targets))
    assert_same({k: evaluator.compute()[k] for k in METRICS}, {k: results[k] for k in METRICS})
    with pytest.raises(ValueError, match="no occupancy targets"):
        evaluator.update([forecast], SimpleNamespace(occupancy=None))


# --------------------------------------------------------------------------------------------------
# MotionNet


def test_motion_displacement_errors_by_speed_group():
    cell = 0.25  # metres per cell; horizon 1 s, so a cell's true displacement is its speed
    true = np.array([[0.0, 0.0], [0.6, 0.4], [8.0, 0.0], [0.0, 12.0], [100.0, 0.0], [0.0, 0.2]])
    # speeds (m/s): 0 and 0.25·√0.52 = 0.18 (static), 2 and 3 (slow), 25 (ignored), 0.05 (static, invalid)
    pred = np.array([[0.0, 4.0], [0.6, 0.4], [5.0, 4.0], [0.0, 12.0], [0.0, 0.0], [0.0, 4.2]])
    valid = np.array([True, True, True, True, True, False])
    r = motion_displacement_errors(true, pred, valid, cell)
    # errors (m): 1.0 and 0.0 static; 1.25 (a 3-4-5 triangle of cells) and 0.0 slow; none fast
    assert r["static/mean"] == pytest.approx(0.5) and r["static/median"] == pytest.approx(0.5)
    assert r["slow/mean"] == pytest.approx(0.625) and r["slow/median"] == pytest.approx(0.625)
    assert (r["static/count"], r["slow/count"], r["fast/count"]) == (2, 2, 0)
    assert math.isnan(r["fast/mean"]) and math.isnan(r["fast/median"])
    # over a 0.5 s horizon the same displacements are twice the speed: 0, 0.36, 4, 6, 50 m/s
    half = motion_displacement_errors(true, pred, valid, cell, horizon_s=0.5)
    assert (half["static/count"], half["slow/count"], half["fast/count"]) == (1, 2, 1)
    assert half["fast/median"] == 0.0 and half["slow/mean"] == pytest.approx(0.625)
    # the group from a given 1-s displacement; every cell valid (the last one: static, error 1 m)
    given_1s = motion_displacement_errors(true, pred, None, cell, true_disp_1s=true * 2)
    assert (given_1s["static/count"], given_1s["slow/count"], given_1s["fast/count"]) == (2, 2, 1)
    assert given_1s["static/mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="valid"):
        motion_displacement_errors(true, pred, valid[:2], cell)


# --------------------------------------------------------------------------------------------------
# files and the command line


def write(tmp_path: Path, g: dict[str, np.ndarray], **overrides) -> tuple[Path, Path]:
    targets = {"observed": g["true_observed"], "occluded": g["true_occluded"], "flow": g["true_flow"]}
    targets["flow_origin"] = g["true_flow_origin"]
    preds = {"observed": g["pred_observed"], "occluded": g["pred_occluded"], "flow": g["pred_flow"]}
    for key, value in overrides.items():
        side, name = key.split("__")
        (targets if side == "t" else preds).pop(name)
        if value is not None:
            (targets if side == "t" else preds)[name] = value
    np.savez(tmp_path / "targets.npz", **targets)
    np.savez(tmp_path / "preds.npz", **preds)
    return tmp_path / "targets.npz", tmp_path / "preds.npz"


def test_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    g = grids(b=2, t=3, h=6, w=6, seed=9)
    g["true_occluded"][:, 2] = 0
    targets, preds = write(tmp_path, g)
    out = tmp_path / "out" / "metrics.json"
    assert main([str(targets), str(preds), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "flow_grounded_auc" in table and "num_waypoints_with_flow" in table
    saved = json.loads(out.read_text())
    expected = occupancy_flow_metrics(**g)
    assert {k: saved[k] for k in (*METRICS, *COUNTS)} == pytest.approx(headline(expected))
    assert saved["per_waypoint"]["occluded_auc"][2] is None
    assert saved["per_waypoint"]["observed_auc"] == pytest.approx(per_waypoint(expected)["observed_auc"])
    assert main([str(targets), str(preds), "--per-sample"]) == 0


def test_cli_reads_the_submission_quantisation_and_the_agent_class_axis(tmp_path, capsys):
    g = grids(b=2, t=2, h=5, w=5, seed=10)
    g["pred_flow"] = np.round(g["pred_flow"])
    q = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    classes = lambda a: np.stack([a, 1 - a, a * 0], 2)  # noqa: E731
    targets, preds = write(
        tmp_path,
        g,
        t__observed=classes(g["true_observed"]),
        p__observed=q(classes(g["pred_observed"])),
        p__occluded=q(g["pred_occluded"]),
        p__flow=g["pred_flow"].astype(np.int8),
    )
    out = tmp_path / "m.json"
    assert main([str(targets), str(preds), "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert {k: saved[k] for k in METRICS} == pytest.approx(
        {k: occupancy_flow_metrics(**g)[k] for k in METRICS}
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"t__flow_origin": None}, r"targets.npz: no array 'flow_origin'"),
        ({"p__observed": np.zeros((2, 3, 6))}, r"preds.npz: 'observed' has shape \(2, 3, 6\)"),
        ({"p__flow": np.zeros((2, 3, 6, 6, 3), np.float32)}, r"preds.npz: 'flow' has shape"),
        ({"p__occluded": np.zeros((2, 3, 6, 6), np.int32)}, r"preds.npz: 'occluded' has dtype int32"),
        ({"p__flow": np.zeros((2, 3, 6, 6, 2), np.int16)}, r"preds.npz: 'flow' has dtype int16"),
        ({"p__observed": np.full((2, 3, 6, 6), 2.0)}, r"preds.npz: 'observed' has values in \[2.0, 2.0\]"),
        ({"t__flow": np.full((2, 3, 6, 6, 2), np.nan)}, r"targets.npz: 'flow' has NaN"),
        ({"p__observed": np.full((2, 3, 6, 6), None)}, r"preds.npz: .*pickle"),
    ],
)
def test_cli_errors_name_the_file_and_the_array(tmp_path, capsys, override, message):
    targets, preds = write(tmp_path, grids(b=2, t=3, h=6, w=6), **override)
    assert main([str(targets), str(preds)]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_cli_errors_on_missing_or_unreadable_files(tmp_path, capsys):
    targets, preds = write(tmp_path, grids(b=1, t=1, h=3, w=3))
    assert main([str(tmp_path / "nope.npz"), str(preds)]) == 2
    assert "nope.npz: no such file" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main([str(targets), str(tmp_path / "junk.npz")]) == 2
    assert "junk.npz: not a readable .npz" in capsys.readouterr().err
    np.save(tmp_path / "one.npy", np.zeros(3))
    assert main([str(targets), str(tmp_path / "one.npy")]) == 2
    assert "one.npy: a single .npy array" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter importing torch: seconds
def test_cli_runs_as_a_module(tmp_path):
    targets, preds = write(tmp_path, grids(b=1, t=2, h=4, w=4))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception.eval.occupancy",
            str(targets),
            str(preds),
            "--json",
            str(tmp_path / "o.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads((tmp_path / "o.json").read_text())) == {*METRICS, *COUNTS, "per_waypoint"}
