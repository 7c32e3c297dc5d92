"""Waymo detection metric: hand-derived cases, invariances, the torchmetrics Metric, .bin files and the CLI.

How the official code turns counts into mAP (worth keeping in mind for every number below): at each
of the 101 score cutoffs 0, 0.01, ..., 1.0 the predictions scoring ≥ the cutoff are matched; precision
TP / (TP + FP) and recall TP / (TP + FN) (precision 1 where the recall is 0). The best precision per
recall (recall 0 → 1) is walked from the highest recall down with a running max; below a recall, points
every 0.05 carry that running max until within 0.05 of the next lower recall; the point at recall 0
takes the precision of the one before it; the area is the trapezoid sum. So a single operating point
(P, R) with everything above it at recall 0 gives P · R, and two points (P1, 1), (P2 ≥ P1, 0.5) give
0.45 · P1 + 0.05 · (P1 + P2) / 2 + 0.5 · P2.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.waymo_metric import synthetic_objects
from perception.eval.waymo import (
    DEFAULT_CLASSES,
    RANGE_SHARDS,
    SCORE_CUTOFFS,
    WaymoAP,
    WaymoObjects,
    compute_curves,
    evaluate,
    evaluate_files,
    main,
    mean_average_precision,
    read_objects,
    result_keys,
    write_objects,
)
from perception.ops.iou3d import boxes_iou3d

REPO = Path(__file__).resolve().parents[2]

CAR = (10.0, 0.0, 1.0, 4.0, 2.0, 1.5, 0.0)  # 10 m ahead: RANGE [0, 30)
CAR2 = (-10.0, 5.0, 1.0, 4.0, 2.0, 1.5, 0.5)
FAR_CAR = (40.0, -20.0, 1.0, 4.0, 2.0, 1.5, 0.0)  # overlaps nothing above
SQUARE = (10.0, 0.0, 1.0, 3.0, 3.0, 1.5, 0.3)  # a square footprint: IoU 1 when turned by π/2


def box(base=CAR, **changes: float) -> tuple[float, ...]:
    names = ("x", "y", "z", "l", "w", "h", "heading")
    return tuple(changes.get(n, v) for n, v in zip(names, base, strict=True))


def gt(*boxes, types="VEHICLE", points=100, difficulty=0) -> dict:
    b = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    n = len(b)
    return {
        "boxes": b,
        "types": np.broadcast_to(np.asarray(types), (n,)).copy(),
        "num_lidar_points": np.broadcast_to(np.asarray(points), (n,)).copy(),
        "difficulty": np.broadcast_to(np.asarray(difficulty), (n,)).copy(),
    }


def pd(*boxes, scores, types="VEHICLE", nlz=False) -> dict:
    b = np.array(boxes, dtype=np.float64).reshape(-1, 7)
    n = len(b)
    return {
        "boxes": b,
        "types": np.broadcast_to(np.asarray(types), (n,)).copy(),
        "scores": np.broadcast_to(np.asarray(scores, dtype=np.float32), (n,)).copy(),
        "overlap_with_nlz": np.broadcast_to(np.asarray(nlz), (n,)).copy(),
    }


def ap(result: dict, key: str = "VEHICLE_LEVEL_1") -> float:
    return result[key]["mAP"]


def counts_by_cutoff(*segments: tuple[int, int, int]) -> np.ndarray:
    """(101,) array from (first cutoff index, last cutoff index inclusive, value) segments."""
    out = np.zeros(len(SCORE_CUTOFFS), np.int64)
    for lo, hi, value in segments:
        out[lo : hi + 1] = value
    return out


# --------------------------------------------------------------------------------------------------
# The area under the curve


def test_mean_average_precision_by_hand():
    assert mean_average_precision([], []) == 0.0
    assert mean_average_precision([1.0] * 3, [0.0] * 3) == 0.0  # no recall at all
    assert mean_average_precision([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1.0, abs=1e-6)
    assert mean_average_precision([0.5], [1.0]) == pytest.approx(0.5, abs=1e-6)
    assert mean_average_precision([1.0], [0.5]) == pytest.approx(0.5, abs=1e-6)
    # Not monotone: the running max from high recall down lifts recall 0.5 to precision 1, and the
    # curve steps from 0.5 (recall 0.55) to 1 (recall 0.5) over one 0.05 interval.
    expected = 0.45 * 0.5 + 0.05 * (0.5 + 1.0) / 2 + 0.5 * 1.0
    assert mean_average_precision([0.5, 1.0], [1.0, 0.5]) == pytest.approx(expected, abs=1e-6)
    # A lower precision at a lower recall is lifted by the running max.
    assert mean_average_precision([0.8, 0.2], [1.0, 0.3]) == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(ValueError, match="recalls"):
        mean_average_precision([1.0], [1.0, 0.5])


# --------------------------------------------------------------------------------------------------
# Hand-derived cases


def test_perfect_prediction_gives_one_and_classes_without_ground_truth_zero():
    result = evaluate([gt(CAR)], [pd(CAR, scores=0.9)])
    assert list(result) == result_keys()
    for key in ("VEHICLE_LEVEL_1", "VEHICLE_LEVEL_2", "VEHICLE_LEVEL_2_RANGE_[0, 30)"):
        assert result[key]["mAP"] == pytest.approx(1.0, abs=1e-6)
        assert result[key]["mAPH"] == pytest.approx(1.0, abs=1e-6)
    # The official code returns an area of 0 where a shard has no ground truth.
    for key in ("PEDESTRIAN_LEVEL_1", "SIGN_LEVEL_2", "VEHICLE_LEVEL_2_RANGE_[30, 50)"):
        assert result[key] == {"mAP": 0.0, "mAPH": 0.0}
    # Ground truth without any prediction: 0 too.
    assert evaluate([gt(CAR)], [pd(scores=[])])["VEHICLE_LEVEL_1"] == {"mAP": 0.0, "mAPH": 0.0}


@pytest.mark.parametrize(
    ("gt_heading", "pd_heading", "heading_accuracy"),
    [
        (0.3, 0.3 + math.pi / 2, 0.5),
        (0.3, 0.3 + math.pi, 0.0),  # the same box facing backwards: a TP with no heading credit
        (3.1, -3.1, 1.0 - (2 * math.pi - 6.2) / math.pi),  # Δ wraps through ±π
    ],
)
def test_heading_accuracy_scales_maph(gt_heading, pd_heading, heading_accuracy):
    result = evaluate(
        [gt(box(SQUARE, heading=gt_heading))], [pd(box(SQUARE, heading=pd_heading), scores=0.9)]
    )
    assert ap(result) == pytest.approx(1.0, abs=1e-6)
    assert result["VEHICLE_LEVEL_1"]["mAPH"] == pytest.approx(heading_accuracy, abs=1e-5)


def test_false_positive_above_true_positives_pr_curve_by_hand():
    # Scores: TP 0.905 > FP 0.805 > TP 0.705, two ground truths.
    frame_gt = gt(CAR, CAR2)
    frame_pd = pd(CAR, FAR_CAR, CAR2, scores=[0.905, 0.805, 0.705])
    curve = compute_curves([frame_gt], [frame_pd])["VEHICLE_LEVEL_1"]
    # Cutoffs 0..0.70 (index 0-70): all three; 0.71-0.80: TP + FP; 0.81-0.90: TP; 0.91-1: none.
    np.testing.assert_array_equal(curve.num_tps, counts_by_cutoff((0, 70, 2), (71, 90, 1)))
    np.testing.assert_array_equal(curve.num_fps, counts_by_cutoff((0, 80, 1)))
    np.testing.assert_array_equal(curve.num_fns, counts_by_cutoff((71, 90, 1), (91, 100, 2)))
    assert curve.precision[0] == pytest.approx(2 / 3) and curve.recall[0] == 1.0
    assert curve.precision[75] == 0.5 and curve.recall[75] == 0.5
    assert curve.precision[85] == 1.0 and curve.precision[95] == 1.0 and curve.recall[95] == 0.0
    # Points (2/3, 1), (max(0.5, 1) = 1, 0.5), (1, 0): flat 2/3 from recall 1 to 0.55, a trapezoid to
    # 1 at 0.5, flat 1 down to 0.
    expected = 0.45 * (2 / 3) + 0.05 * (2 / 3 + 1) / 2 + 0.5 * 1.0
    assert curve.mAP == pytest.approx(expected, abs=1e-6)
    assert curve.mAPH == pytest.approx(expected, abs=1e-6)
    # One ground truth, a FP above its TP: precision 1/2 at recall 1, the area is 0.5.
    result = evaluate([gt(CAR)], [pd(CAR, FAR_CAR, scores=[0.5, 0.9])])
    assert ap(result) == pytest.approx(0.5, abs=1e-6)


def test_unset_difficulty_from_lidar_points():
    # A: 100 points → LEVEL_1, found. B: 3 points, unset → LEVEL_2, missed.
    result = evaluate([gt(CAR, CAR2, points=[100, 3])], [pd(CAR, scores=0.9)])
    assert ap(result, "VEHICLE_LEVEL_1") == pytest.approx(1.0, abs=1e-6)  # B is no miss at LEVEL_1
    assert ap(result, "VEHICLE_LEVEL_2") == pytest.approx(0.5, abs=1e-6)  # recall 1/2 at precision 1
    # 6 points → LEVEL_1; an explicit level wins over the point count.
    for points, difficulty in (([100, 6], 0), ([100, 3], [0, 1])):
        result = evaluate([gt(CAR, CAR2, points=points, difficulty=difficulty)], [pd(CAR, scores=0.9)])
        assert ap(result, "VEHICLE_LEVEL_1") == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="num_lidar_points"):
        evaluate([{"boxes": [CAR], "types": ["VEHICLE"]}], [pd(CAR, scores=0.9)])


@pytest.mark.parametrize("difficulty", [0, 1, 2])
def test_ground_truth_without_points_is_dropped(difficulty):
    # B has no lidar points: dropped (whatever its level), so the prediction on it (0.9) is a FP
    # above the TP on A (0.8): precision 1/2 at recall 1.
    frame_gt = gt(CAR, CAR2, points=[100, 0], difficulty=[0, difficulty])
    frame_pd = pd(CAR, CAR2, scores=[0.8, 0.9])
    for level in (1, 2):
        assert ap(evaluate([frame_gt], [frame_pd]), f"VEHICLE_LEVEL_{level}") == pytest.approx(0.5, abs=1e-6)
    # With one point B is a LEVEL_2 box and its prediction a TP.
    frame_gt = gt(CAR, CAR2, points=[100, 1])
    assert ap(evaluate([frame_gt], [frame_pd]), "VEHICLE_LEVEL_2") == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    ("cls", "base", "length", "matches"),
    [
        ("VEHICLE", CAR, 2.79, False),  # IoU 0.6975 < 0.7
        ("VEHICLE", CAR, 2.8, True),  # IoU 0.7: at the threshold matches (official: iou < thr fails)
        ("VEHICLE", CAR, 2.81, True),
        ("PEDESTRIAN", (5.0, 1.0, 1.0, 1.0, 1.0, 1.8, 0.0), 0.49, False),
        ("PEDESTRIAN", (5.0, 1.0, 1.0, 1.0, 1.0, 1.8, 0.0), 0.5, True),
    ],
)
def test_iou_threshold(cls, base, length, matches):
    shorter = box(base, l=length)  # same centre, inside the ground truth: IoU = length / l
    iou = boxes_iou3d(np.array([shorter]), np.array([base]))[0, 0]
    assert iou == pytest.approx(length / base[3])
    result = evaluate([gt(base, types=cls)], [pd(shorter, scores=0.9, types=cls)])
    assert ap(result, f"{cls}_LEVEL_1") == pytest.approx(1.0 if matches else 0.0, abs=1e-6)


def test_prediction_matched_to_level2_is_true_positive_at_level1():
    # B (3 points, LEVEL_2) found at 0.9, A (LEVEL_1) at 0.8. At LEVEL_1 the match on B is a TP, not
    # a FP: precision stays 1.
    result = compute_curves([gt(CAR, CAR2, points=[100, 3])], [pd(CAR, CAR2, scores=[0.8, 0.9])])
    level1 = result["VEHICLE_LEVEL_1"]
    assert level1.num_fps.sum() == 0
    np.testing.assert_array_equal(level1.num_tps, counts_by_cutoff((0, 80, 2), (81, 90, 1)))
    assert level1.mAP == pytest.approx(1.0, abs=1e-6)
    # Only a LEVEL_2 box, found: at LEVEL_1 one TP and no miss, so the official LEVEL_1 mAP is 1.
    result = evaluate([gt(CAR2, points=3)], [pd(CAR2, scores=0.9)])
    assert ap(result, "VEHICLE_LEVEL_1") == pytest.approx(1.0, abs=1e-6)


def test_hungarian_not_greedy_and_matching_redone_per_cutoff():
    # Pedestrians along x (width 1, height 1.8): 1D intervals, IoU = overlap / union of the lengths.
    # GT1 [10, 11], GT2 [9.8, 10.7] (heading π: the same box, facing backwards); A [10, 10.8]
    # (0.905), B [10.3, 11] (0.805). IoU: A–GT1 0.8, A–GT2 0.7, B–GT1 0.7, B–GT2 1/3 (< 0.5).
    # Greedy by score: A takes GT1, B is a FP. Maximum total IoU: A–GT2 + B–GT1 = 1.4 > 0.8.
    ped = (0.0, 0.0, 1.0, 1.0, 1.0, 1.8, 0.0)
    gt1, gt2 = box(ped, x=10.5, l=1.0), box(ped, x=10.25, l=0.9, heading=math.pi)
    a, b = box(ped, x=10.4, l=0.8), box(ped, x=10.65, l=0.7)
    iou = boxes_iou3d(np.array([a, b]), np.array([gt1, gt2]))
    np.testing.assert_allclose(iou, [[0.8, 0.7], [0.7, 1 / 3]], atol=1e-9)
    curve = compute_curves(
        [gt(gt1, gt2, types="PEDESTRIAN")], [pd(a, b, scores=[0.905, 0.805], types="PEDESTRIAN")]
    )["PEDESTRIAN_LEVEL_1"]
    np.testing.assert_array_equal(curve.num_tps, counts_by_cutoff((0, 80, 2), (81, 90, 1)))
    assert curve.num_fps.sum() == 0
    assert curve.mAP == pytest.approx(1.0, abs=1e-6)  # greedy would give 0.5
    # Heading accuracy shows who matched whom: at cutoffs ≤ 0.80 A is matched to GT2 (facing
    # backwards, accuracy 0) and B to GT1 (1); above, A alone is matched to GT1 (1).
    np.testing.assert_allclose(curve.sum_ha, counts_by_cutoff((0, 90, 1)), atol=1e-6)
    assert curve.mAPH == pytest.approx(0.45 * 0.5 + 0.05 * 0.75 + 0.5, abs=1e-6)


def test_overlap_with_no_label_zone_is_not_a_false_positive():
    frame_gt = gt(CAR)
    assert ap(evaluate([frame_gt], [pd(CAR, FAR_CAR, scores=[0.8, 0.9], nlz=[False, True])])) == (
        pytest.approx(1.0, abs=1e-6)
    )
    assert ap(evaluate([frame_gt], [pd(CAR, FAR_CAR, scores=[0.8, 0.9])])) == pytest.approx(0.5, abs=1e-6)


def test_range_breakdown_uses_3d_centre_distance():
    near = box(x=10.0)
    mid = box(x=29.0, z=8.0)  # 29 m in the x-y plane, 30.08 m in 3D: [30, 50)
    far = box(x=60.0)
    result = evaluate([gt(near, mid, far)], [pd(near, far, scores=[0.9, 0.8])])
    assert ap(result, "VEHICLE_LEVEL_1_RANGE_[0, 30)") == pytest.approx(1.0, abs=1e-6)
    assert ap(result, "VEHICLE_LEVEL_1_RANGE_[30, 50)") == 0.0
    assert ap(result, "VEHICLE_LEVEL_1_RANGE_[50, +inf)") == pytest.approx(1.0, abs=1e-6)
    assert ap(result, "VEHICLE_LEVEL_1") == pytest.approx(2 / 3, abs=1e-6)
    # Objects are sharded by their own box: a prediction at 29.95 m on a box at 30.05 m matches in
    # the per-type result, but in the range breakdown it is a FP in [0, 30) and the box a miss.
    result = evaluate([gt(box(x=30.05, z=0.0))], [pd(box(x=29.95, z=0.0), scores=0.9)])
    assert ap(result) == pytest.approx(1.0, abs=1e-6)
    assert ap(result, "VEHICLE_LEVEL_1_RANGE_[0, 30)") == 0.0
    assert ap(result, "VEHICLE_LEVEL_1_RANGE_[30, 50)") == 0.0
    only_type = evaluate([gt(near)], [pd(near, scores=0.9)], breakdowns=("OBJECT_TYPE",))
    assert list(only_type) == result_keys(breakdowns=("OBJECT_TYPE",))


def test_input_forms_and_errors():
    named = {"boxes": [CAR], "types": ["TYPE_VEHICLE"], "num_lidar_points": [50]}
    coded = {"boxes": np.array([CAR]), "types": np.array([1]), "difficulty": np.array([1])}
    preds = WaymoObjects(boxes=np.array([CAR]), types=np.array([1]), scores=np.array([0.7], np.float32))
    assert evaluate([named], [preds]) == evaluate([coded], [preds])
    with pytest.raises(ValueError, match="unknown types"):
        evaluate([{"boxes": [CAR], "types": ["Car"], "difficulty": [1]}], [preds])
    with pytest.raises(ValueError, match="scores"):
        evaluate([coded], [{"boxes": [CAR], "types": [1]}])
    with pytest.raises(ValueError, match="2 ground-truth frames"):
        evaluate([coded, coded], [preds])
    with pytest.raises(ValueError, match="unknown classes"):
        evaluate([coded], [preds], classes=("Car",))
    with pytest.raises(ValueError, match="negative sizes"):
        evaluate([coded], [pd(box(l=-1.0), scores=0.5)])


# --------------------------------------------------------------------------------------------------
# Invariances and the Metric


def _crowded_frames(rng: np.random.Generator, num_frames: int) -> tuple[dict, dict]:
    """Frames with pedestrians and cars packed closely, so that components of several pairs form,
    and scores drawn from a few values, so that many tie."""
    gts, preds = {}, {}
    for f in range(num_frames):
        n = int(rng.integers(1, 8))
        types = rng.choice([1, 2], n)
        size = np.where(types[:, None] == 1, [4.0, 2.0, 1.5], [0.8, 0.8, 1.8]) * rng.uniform(0.9, 1.1, (n, 3))
        centre = rng.uniform(-1.5, 1.5, (n, 3)) * [1, 1, 0.1] + [28.5, 0.0, 1.0]  # straddles 30 m
        boxes = np.column_stack([centre, size, rng.uniform(-np.pi, np.pi, n)])
        gts[("ctx", f)] = gt(
            *boxes, types=types, points=rng.integers(0, 20, n), difficulty=rng.integers(0, 3, n)
        )
        copies = rng.integers(0, n, int(rng.integers(0, 2 * n + 1)))
        det = boxes[copies] + rng.normal(0, 0.08, (len(copies), 7)) * [1, 1, 0.1, 0.2, 0.1, 0.1, 1]
        det[:, 3:6] = np.abs(det[:, 3:6])
        preds[("ctx", f)] = pd(
            *det,
            scores=rng.choice([0.3, 0.5, 0.505, 0.9, 1.0], len(det)),
            types=types[copies],
            nlz=rng.random(len(det)) < 0.1,
        )
    return gts, preds


def _permuted(frame: dict, order: np.ndarray) -> dict:
    return {k: np.asarray(v)[order] for k, v in frame.items()}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_order_of_predictions_and_frames_does_not_matter(seed):
    rng = np.random.default_rng(seed)
    gts, preds = _crowded_frames(rng, 4)
    expected = compute_curves(gts, preds)
    shuffled_preds = {k: _permuted(v, rng.permutation(len(v["boxes"]))) for k, v in preds.items()}
    shuffled_gts = {k: _permuted(gts[k], rng.permutation(len(gts[k]["boxes"]))) for k in reversed(list(gts))}
    got = compute_curves(shuffled_gts, shuffled_preds)
    for key, curve in expected.items():
        for field in ("num_tps", "num_fps", "num_fns"):
            np.testing.assert_array_equal(getattr(got[key], field), getattr(curve, field), err_msg=key)
        np.testing.assert_allclose(got[key].sum_ha, curve.sum_ha, atol=1e-9, err_msg=key)
        assert got[key].mAP == curve.mAP and got[key].mAPH == pytest.approx(curve.mAPH, abs=1e-6), key


def _reference_counts(gts: dict, preds: dict, breakdown: str) -> dict[int, dict[str, np.ndarray]]:
    """The official procedure written out literally: per frame, shard and score cutoff, drop the
    predictions under the cutoff and run the assignment on the whole remaining matrix."""
    from scipy.optimize import linear_sum_assignment

    thresholds = {1: 0.7, 2: 0.5, 3: 0.5, 4: 0.5}
    names = {"VEHICLE": 1, "PEDESTRIAN": 2, "SIGN": 3, "CYCLIST": 4}

    def codes(types):
        return np.array([names[t] if isinstance(t, str) else int(t) for t in np.asarray(types).tolist()], int)

    def shard(boxes, types):
        if breakdown == "OBJECT_TYPE":
            return types - 1
        distance = np.linalg.norm(boxes[:, :3], axis=1)
        return 3 * (types - 1) + (distance >= 30) + (distance >= 50)

    num_c = len(SCORE_CUTOFFS)
    out: dict[int, dict[str, np.ndarray]] = {}
    for key, g in gts.items():
        p = preds[key]
        points, level = np.asarray(g["num_lidar_points"]), np.asarray(g["difficulty"])
        keep = points > 0
        level = np.where(level == 0, np.where(points <= 5, 2, 1), level)[keep]
        gb, gtypes = np.asarray(g["boxes"])[keep], codes(g["types"])[keep]
        pb, ptypes = np.asarray(p["boxes"]).reshape(-1, 7), codes(p["types"])
        scores, nlz = np.asarray(p["scores"], np.float32), np.asarray(p["overlap_with_nlz"])
        iou = boxes_iou3d(pb, gb).astype(np.float32) if len(pb) and len(gb) else np.zeros((len(pb), len(gb)))
        ok_g, ok_p = (gb[:, 3:6] > 0.01).all(1), (pb[:, 3:6] > 0.01).all(1)
        can = (iou >= np.array([thresholds[t] for t in ptypes], np.float32)[:, None]) & (
            ptypes[:, None] == gtypes[None, :]
        )
        can &= ok_p[:, None] & ok_g[None, :]
        weight = np.where(can, np.floor(iou.astype(np.float64) * 1e6 + 0.5), 0)
        heading = 1 - np.abs((pb[:, None, 6] - gb[None, :, 6] + np.pi) % (2 * np.pi) - np.pi) / np.pi
        gs, ps = shard(gb, gtypes), shard(pb, ptypes)
        for s in set(gs.tolist()) | set(ps.tolist()):
            acc = out.setdefault(s, {k: np.zeros(num_c) for k in ("tp", "fp", "fn1", "fn2", "ha")})
            gi = np.flatnonzero(gs == s)
            for c, cutoff in enumerate(SCORE_CUTOFFS):
                pi = np.flatnonzero((ps == s) & (scores >= cutoff))
                sub = weight[np.ix_(pi, gi)]
                r, cc = linear_sum_assignment(sub, maximize=True)
                good = sub[r, cc] > 0
                r, cc = r[good], cc[good]
                acc["tp"][c] += len(r)
                acc["ha"][c] += heading[pi[r], gi[cc]].sum()
                unmatched_p = np.setdiff1d(np.arange(len(pi)), r)
                acc["fp"][c] += (~nlz[pi[unmatched_p]]).sum()
                missed = np.setdiff1d(np.arange(len(gi)), cc)
                acc["fn2"][c] += len(missed)
                acc["fn1"][c] += (level[gi[missed]] <= 1).sum()
    return out


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_counts_equal_the_literal_official_procedure(seed):
    gts, preds = _crowded_frames(np.random.default_rng(seed), 3)
    curves = compute_curves(gts, preds, classes=("VEHICLE", "PEDESTRIAN"))
    classes = {1: "VEHICLE", 2: "PEDESTRIAN"}
    for breakdown in ("OBJECT_TYPE", "RANGE"):
        for s, ref in _reference_counts(gts, preds, breakdown).items():
            code, shard = (s + 1, None) if breakdown == "OBJECT_TYPE" else (s // 3 + 1, s % 3)
            for lv in (1, 2):
                key = f"{classes[code]}_LEVEL_{lv}"
                if shard is not None:
                    key += f"_RANGE_{RANGE_SHARDS[shard]}"
                curve = curves[key]
                np.testing.assert_array_equal(curve.num_tps, ref["tp"], err_msg=key)
                np.testing.assert_array_equal(curve.num_fps, ref["fp"], err_msg=key)
                np.testing.assert_array_equal(curve.num_fns, ref[f"fn{lv}"], err_msg=key)
                np.testing.assert_allclose(curve.sum_ha, ref["ha"], atol=1e-5, err_msg=key)


def test_metric_equals_function():
    gts, preds = synthetic_objects(12, seed=3, gt_per_frame=15)
    keys = list(gts)
    metric = WaymoAP()
    for start in range(0, len(keys), 5):
        batch = keys[start : start + 5]
        metric.update([preds[k] for k in batch], [gts[k] for k in batch])
    expected = evaluate(gts, preds)
    assert metric.compute() == expected
    assert 0.0 < expected["VEHICLE_LEVEL_2"]["mAPH"] <= expected["VEHICLE_LEVEL_2"]["mAP"] < 1.0
    metric.reset()
    metric.update([preds[keys[0]]], [gts[keys[0]]])
    assert metric.compute() == evaluate([gts[keys[0]]], [preds[keys[0]]])
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = WaymoAP(classes=("CYCLIST",), breakdowns=("OBJECT_TYPE",)).compute()
    assert list(empty) == [
        "CYCLIST_LEVEL_1",
        "CYCLIST_LEVEL_2",
    ]


# --------------------------------------------------------------------------------------------------
# Submission files, unknown frames, the command line


def test_bin_round_trip(tmp_path):
    from perception.data.waymo.protos import Objects

    gts, preds = synthetic_objects(6, seed=1, gt_per_frame=10)
    gt_path, pd_path = tmp_path / "gt.bin", tmp_path / "sub" / "pred.bin"
    write_objects(gt_path, gts)
    write_objects(pd_path, preds)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["gt.bin", "pred.bin"]
    message = Objects()
    message.ParseFromString(gt_path.read_bytes())
    assert len(message.objects) == sum(len(g) for g in gts.values())
    assert message.objects[0].context_name == next(iter(gts))[0]
    for original, path in ((gts, gt_path), (preds, pd_path)):
        back = read_objects(path)
        assert list(back) == [k for k, v in original.items() if len(v)]
        for key, objects in back.items():
            source = original[key]
            np.testing.assert_array_equal(objects.boxes, source.boxes)
            np.testing.assert_array_equal(objects.types, source.types)
            if source.scores is not None:
                np.testing.assert_array_equal(objects.scores, source.scores)
                np.testing.assert_array_equal(objects.overlap_with_nlz, source.overlap_with_nlz)
            else:
                np.testing.assert_array_equal(objects.difficulty, source.difficulty)
                np.testing.assert_array_equal(objects.num_lidar_points, source.num_lidar_points)
                assert (objects.scores == 1.0).all()  # the proto default
    assert evaluate_files(gt_path, pd_path) == evaluate(gts, preds)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x0a\x05ab")
    with pytest.raises(ValueError, match="Objects"):
        read_objects(bad)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert read_objects(empty) == {}


def test_unknown_frames(caplog):
    frames_gt = {("seg-a", 1): gt(CAR)}
    frames_pd = {
        ("seg-a", 1): pd(CAR, scores=0.9),
        ("seg-b", 2): pd(CAR, scores=0.95),
        ("seg-c", 3): pd(CAR2, scores=0.3),
    }
    with pytest.raises(ValueError, match=r"2 frames that have no ground truth: seg-b@2, seg-c@3"):
        evaluate(frames_gt, frames_pd)
    with caplog.at_level(logging.WARNING, logger="perception.eval.waymo"):
        skipped = evaluate(frames_gt, frames_pd, unknown_frames="skip")
    assert "skipping predictions (2 objects) for 2 frames" in caplog.text and "seg-b@2" in caplog.text
    assert ap(skipped) == pytest.approx(1.0, abs=1e-6)
    # As the official tool: frames without ground truth, their predictions FPs (0.95 above the TP).
    assert ap(evaluate(frames_gt, frames_pd, unknown_frames="keep")) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="unknown_frames"):
        evaluate(frames_gt, frames_pd, unknown_frames="ignore")


def test_cli_writes_json_with_documented_keys(tmp_path, capsys):
    gts, preds = synthetic_objects(5, seed=2, gt_per_frame=12)
    gt_path, pd_path = tmp_path / "gt.bin", tmp_path / "pred.bin"
    write_objects(gt_path, gts)
    write_objects(pd_path, preds)
    out = tmp_path / "out" / "metrics.json"
    assert main([str(gt_path), str(pd_path), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == [
        f"{c}_LEVEL_{lv}" for c in ("VEHICLE", "PEDESTRIAN", "CYCLIST", "SIGN") for lv in (1, 2)
    ]
    expected = evaluate_files(gt_path, pd_path, breakdowns=("OBJECT_TYPE",))
    for key, value in data.items():
        assert set(value) == {"mAP", "mAPH"} and 0.0 <= value["mAPH"] <= value["mAP"] <= 1.0
        assert value == pytest.approx(expected[key])
    printed = capsys.readouterr().out
    assert "VEHICLE_LEVEL_2" in printed and "ALL_NS_LEVEL_2" in printed
    assert main([str(gt_path), str(pd_path), "--json", str(out), "--breakdown", "RANGE"]) == 0
    assert list(json.loads(out.read_text())) == result_keys(DEFAULT_CLASSES, ("OBJECT_TYPE", "RANGE"))
    # Errors: exit code 2 with the reason on stderr.
    write_objects(tmp_path / "extra.bin", {**preds, ("elsewhere", 7): pd(CAR, scores=0.5)})
    capsys.readouterr()
    assert main([str(gt_path), str(tmp_path / "extra.bin")]) == 2
    assert "elsewhere@7" in capsys.readouterr().err
    assert main([str(gt_path), str(tmp_path / "extra.bin"), "--unknown-frames", "keep"]) == 0
    assert main([str(tmp_path / "nowhere.bin"), str(pd_path)]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter importing torch and numba
def test_cli_module_entry(tmp_path):
    gt_path, pd_path = tmp_path / "gt.bin", tmp_path / "pred.bin"
    write_objects(gt_path, {("seg", 1): gt(CAR, CAR2)})
    write_objects(pd_path, {("seg", 1): pd(CAR, CAR2, scores=[0.9, 0.8])})
    out = tmp_path / "ap.json"
    proc = subprocess.run(
        [sys.executable, "-m", "perception.eval.waymo", str(gt_path), str(pd_path), "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["VEHICLE_LEVEL_1"]["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert data["SIGN_LEVEL_2"] == {"mAP": 0.0, "mAPH": 0.0}
