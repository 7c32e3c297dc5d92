"""Transforms: geometry properties (hypothesis), reproducibility, filters, object noise, GT sampling."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.database import GroundTruthDatabase, build_gt_database
from perception.data.datasets import KittiDetectionDataset
from perception.data.synthetic import SyntheticConfig, write_dataset
from perception.data.transforms import (
    Compose,
    GlobalRotation,
    GlobalScaling,
    GlobalTranslation,
    GroundTruthSampling,
    IntensityJitter,
    IntensityNormalize,
    ObjectNoise,
    PointShuffle,
    RandomFlip,
    RangeFilter,
    SensorTilt,
    flip,
    rotate,
    scale,
    tilt,
    translate,
)
from perception.geometry.boxes import points_in_boxes, points_in_boxes_mask, rotation_z, wrap_angle
from perception.ops.iou3d import boxes_iou_bev
from perception.structures import Sample

SEEDS = st.integers(0, 2**32 - 1)


def scene(seed: int, m: int = 5, inside: int = 30, background: int = 300) -> Sample:
    """Non-overlapping boxes on a 12 m grid, points well inside them (10 % margin) and well outside."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(36, size=m, replace=False)
    centres = np.column_stack(
        [(cells % 6) * 12.0 - 30.0, (cells // 6) * 12.0 - 30.0, rng.uniform(-1.5, 0.5, m)]
    )
    dims = np.column_stack([rng.uniform(0.5, 6, m), rng.uniform(0.5, 3, m), rng.uniform(1, 3, m)])
    boxes = np.column_stack([centres, dims, rng.uniform(-np.pi, np.pi, m)])
    local = rng.uniform(-0.45, 0.45, (m, inside, 3)) * dims[:, None]
    pts_in = np.einsum("mij,mkj->mki", rotation_z(boxes[:, 6]), local) + centres[:, None]
    bg = rng.uniform([-40, -40, -3], [40, 40, 3], (background, 3))
    grown = boxes.copy()
    grown[:, 3:6] *= 1.2
    bg = bg[points_in_boxes(bg, grown) < 0]
    xyz = np.concatenate([pts_in.reshape(-1, 3), bg])
    points = np.column_stack([xyz, rng.uniform(0, 1, len(xyz))]).astype(np.float32)
    return Sample(
        frame_id=f"{seed}",
        points=points,
        boxes=boxes.astype(np.float32),
        labels=rng.integers(0, 3, m),
        difficulty=np.zeros(m, np.int32),
    )


def membership(s: Sample) -> np.ndarray:
    return points_in_boxes_mask(s.points, s.boxes)


def assert_same_boxes(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-4)
    np.testing.assert_allclose(wrap_angle(a[:, 6] - b[:, 6]), 0, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, angle=st.floats(-2 * np.pi, 2 * np.pi), factor=st.floats(0.5, 2.0))
def test_global_motions_keep_each_box_points_inside_it(seed, angle, factor):
    s = scene(seed)
    before = membership(s)
    assert before.sum() == 5 * 30  # the generator's points are where it says
    for out in (rotate(s, angle), scale(s, factor), flip(s, "x"), flip(s, "y"), translate(s, [3, -2, 1])):
        np.testing.assert_array_equal(membership(out), before)
        assert (out.boxes[:, 6] >= -np.pi).all() and (out.boxes[:, 6] < np.pi).all()
        assert out.points.dtype == np.float32 and out.boxes.dtype == np.float32


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, rng_seed=SEEDS)
def test_random_pipeline_keeps_membership_and_is_reproducible(seed, rng_seed):
    s = scene(seed)
    original = copy.deepcopy(s)
    pipeline = Compose(
        [
            ObjectNoise(),
            RandomFlip(("x", "y")),
            GlobalRotation(np.pi),
            GlobalScaling(0.9, 1.1),
            GlobalTranslation([0.5, 0.5, 0.2]),
        ]
    )
    a = pipeline(s, np.random.default_rng(rng_seed))
    b = pipeline(s, np.random.default_rng(rng_seed))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    # Each box's points are still in it (a moved box may also cover background points it moved onto).
    owner = points_in_boxes(a.points[: 5 * 30], a.boxes)
    np.testing.assert_array_equal(owner, np.repeat(np.arange(5), 30))
    # Nothing was edited in place.
    np.testing.assert_array_equal(s.points, original.points)
    np.testing.assert_array_equal(s.boxes, original.boxes)
    c = pipeline(s, np.random.default_rng(rng_seed + 1))
    assert not np.array_equal(a.boxes, c.boxes)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, turns=st.integers(-3, 3))
def test_rotation_by_whole_turns_is_identity(seed, turns):
    s = scene(seed)
    out = rotate(s, 2 * np.pi * turns)
    np.testing.assert_allclose(out.points, s.points, atol=1e-4)
    assert_same_boxes(out.boxes, s.boxes)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, axis=st.sampled_from(["x", "y"]))
def test_flip_twice_is_identity(seed, axis):
    s = scene(seed)
    out = flip(flip(s, axis), axis)
    np.testing.assert_array_equal(out.points, s.points)
    assert_same_boxes(out.boxes, s.boxes)


def test_flip_conventions():
    s = Sample(
        frame_id="f",
        points=np.array([[1, 2, 3, 0.5]], np.float32),
        boxes=np.array([[10, 5, 0, 4, 2, 1.5, 0.3]], np.float32),
        labels=np.zeros(1, np.int64),
        difficulty=np.zeros(1, np.int32),
    )
    fx, fy = flip(s, "x"), flip(s, "y")
    np.testing.assert_allclose(fx.points[0], [1, -2, 3, 0.5])
    np.testing.assert_allclose(fx.boxes[0], [10, -5, 0, 4, 2, 1.5, -0.3], atol=1e-6)
    np.testing.assert_allclose(fy.boxes[0], [-10, 5, 0, 4, 2, 1.5, np.pi - 0.3], atol=1e-6)
    r = rotate(s, np.pi / 2)
    np.testing.assert_allclose(r.boxes[0, :3], [-5, 10, 0], atol=1e-5)
    np.testing.assert_allclose(r.boxes[0, 6], 0.3 + np.pi / 2, atol=1e-6)
    with pytest.raises(ValueError, match="flip axis"):
        flip(s, "z")


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, rng_seed=SEEDS)
def test_point_shuffle_is_a_permutation(seed, rng_seed):
    s = scene(seed)
    out = PointShuffle()(s, np.random.default_rng(rng_seed))
    order_in, order_out = np.lexsort(s.points.T), np.lexsort(out.points.T)
    np.testing.assert_array_equal(out.points[order_out], s.points[order_in])
    np.testing.assert_array_equal(out.boxes, s.boxes)
    np.testing.assert_array_equal(out.labels, s.labels)


def test_range_filter_half_open_and_box_centres_in_bev():
    pcr = [0, -10, -3, 20, 10, 1]
    points = np.array(
        [[0, 0, 0, 1], [20, 0, 0, 1], [5, -10, -3, 1], [5, 9.99, 0.99, 1], [5, 0, 1, 1], [-0.1, 0, 0, 1]],
        np.float32,
    )
    boxes = np.array(
        [[1, 1, 5, 1, 1, 1, 0], [19.9, 0, 0, 4, 2, 2, 0], [20, 0, 0, 1, 1, 1, 0], [5, -11, 0, 1, 1, 1, 0]],
        np.float32,
    )  # the first box's centre is above z_max: kept, the test is in BEV
    s = Sample(
        frame_id="r", points=points, boxes=boxes, labels=np.arange(4), difficulty=np.arange(4, dtype=np.int32)
    )
    out = RangeFilter(pcr)(s, np.random.default_rng(0))
    np.testing.assert_array_equal(out.points, points[[0, 2, 3]])
    assert out.labels.tolist() == [0, 1] and out.difficulty.tolist() == [0, 1]
    with pytest.raises(ValueError, match="min < max"):
        RangeFilter([0, 0, 0, 0, 1, 1])


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, pitch=st.floats(-0.05, 0.05), roll=st.floats(-0.05, 0.05))
def test_sensor_tilt_is_a_rotation_that_keeps_box_centres_with_their_points(seed, pitch, roll):
    s = scene(seed)
    out = tilt(s, pitch, roll)
    # Rigid about the sensor: ranges kept; a box's points keep their offset from its centre.
    np.testing.assert_allclose(
        np.linalg.norm(out.points[:, :3], axis=1),
        np.linalg.norm(s.points[:, :3], axis=1),
        rtol=1e-5,
        atol=1e-4,
    )
    inside = points_in_boxes(s.points, s.boxes)
    k = inside >= 0
    before = np.linalg.norm(s.points[k, :3] - s.boxes[inside[k], :3], axis=1)
    after = np.linalg.norm(out.points[k, :3] - out.boxes[inside[k], :3], axis=1)
    np.testing.assert_allclose(after, before, atol=1e-4)
    np.testing.assert_array_equal(out.boxes[:, 3:], s.boxes[:, 3:])  # sizes and yaw: upright boxes
    assert_same_boxes(tilt(s, 0.0, 0.0).boxes, s.boxes)
    # A pitch up lowers what is ahead: z of a point 10 m ahead drops by 10 sin(pitch).
    p = Sample(frame_id="p", points=np.array([[10.0, 0, 0, 0.5]], np.float32))
    assert tilt(p, 0.01, 0.0).points[0, 2] == pytest.approx(-10 * math.sin(0.01), abs=1e-5)
    drawn = SensorTilt(1.0)(s, np.random.default_rng(seed))
    assert np.abs(drawn.points[:, :3] - s.points[:, :3]).max() <= 40 * math.sqrt(2) * math.radians(1.0) * 1.5
    with pytest.raises(ValueError, match="max_degrees"):
        SensorTilt(20.0)


def test_intensity_jitter_gain_floor_and_noise():
    rng = np.random.default_rng(0)
    v = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    s = Sample(frame_id="j", points=np.column_stack([np.zeros((101, 3), np.float32), v]))
    same = IntensityJitter(1.0, 1.0, 0.0, 0.0)(s, rng)
    np.testing.assert_allclose(same.points[:, 3], v, atol=1e-6)
    out = IntensityJitter(2.0, 2.0, 0.0, 0.0)(s, rng)
    np.testing.assert_allclose(out.points[:, 3], np.clip(2 * v, 0, 1), atol=1e-6)
    many = [IntensityJitter()(s, np.random.default_rng(k)).points[:, 3] for k in range(50)]
    assert all(m.min() >= 0 and m.max() <= 1 for m in many)
    assert np.mean([m[2] == 0 for m in many]) > 0.3  # 0.02 is under most drawn floors
    assert len({round(float(m[50]), 4) for m in many}) > 40  # gain and noise vary per frame
    np.testing.assert_array_equal(
        IntensityJitter()(s, np.random.default_rng(3)).points,
        IntensityJitter()(s, np.random.default_rng(3)).points,
    )
    np.testing.assert_array_equal(out.points[:, :3], s.points[:, :3])
    with pytest.raises(ValueError, match="min_gain"):
        IntensityJitter(1.5, 1.0)
    with pytest.raises(ValueError, match="no column 4"):
        IntensityJitter(column=4)(s, rng)


def test_intensity_normalize():
    s = Sample(frame_id="i", points=np.array([[0, 0, 0, 255.0], [0, 0, 0, 0]], np.float32))
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(IntensityNormalize(255.0)(s, rng).points[:, 3], [1, 0])
    np.testing.assert_allclose(IntensityNormalize(255.0, mode="tanh")(s, rng).points[:, 3], [math.tanh(1), 0])
    assert s.points[0, 3] == 255.0
    with pytest.raises(ValueError, match="no column 4"):
        IntensityNormalize(column=4)(s, rng)


def test_object_noise_moves_boxes_without_collisions():
    rng = np.random.default_rng(3)
    # Three boxes side by side with 0.2 m gaps: large noise must still leave them apart.
    boxes = np.array([[0, y, 0, 4, 2, 1.5, 0] for y in (-2.2, 0, 2.2)], np.float32)
    local = rng.uniform(-0.45, 0.45, (3, 40, 3)) * boxes[:, None, 3:6]
    points = np.concatenate([(local + boxes[:, None, :3]).reshape(-1, 3), rng.uniform(-30, 30, (50, 3))])
    s = Sample(
        frame_id="n",
        points=np.column_stack([points, np.zeros(len(points))]).astype(np.float32),
        boxes=boxes,
        labels=np.zeros(3, np.int64),
        difficulty=np.zeros(3, np.int32),
    )
    noise = ObjectNoise(rotation_max=0.5, translation_std=1.0, num_tries=20)
    moved = 0
    for seed in range(20):
        out = noise(s, np.random.default_rng(seed))
        iou = boxes_iou_bev(out.boxes, out.boxes)
        assert (iou[~np.eye(3, dtype=bool)] == 0).all()
        assert (points_in_boxes(out.points[:120], out.boxes) == np.repeat(np.arange(3), 40)).all()
        np.testing.assert_array_equal(out.points[120:], s.points[120:])  # background stays
        np.testing.assert_array_equal(out.boxes[:, 3:6], s.boxes[:, 3:6])
        moved += int((np.abs(out.boxes - s.boxes).max(axis=1) > 1e-6).sum())
    assert moved > 10  # most objects found a free place


# --------------------------------------------------------------------------------------------------
# ground-truth sampling on a tiny synthetic dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, frames=8, seed=5, config=SyntheticConfig(azimuth_step_deg=0.5))
    build_gt_database(root)
    return root


def test_ground_truth_sampling_pastes_without_collisions(tiny):
    db = GroundTruthDatabase(tiny / "gt_database")
    counts = {"Car": 25, "Pedestrian": 12, "Cyclist": 12}
    paste = GroundTruthSampling(db, counts, min_points={"Car": 5}, difficulties=None)
    ds = KittiDetectionDataset(tiny, "val")
    total_pasted = 0
    for i in range(len(ds)):
        s = ds.load(i)
        out = paste(s, np.random.default_rng(i))
        m = len(s.boxes)
        np.testing.assert_array_equal(out.boxes[:m], s.boxes)
        new = out.boxes[m:]
        total_pasted += len(new)
        assert len(new) > 0
        iou = boxes_iou_bev(out.boxes.astype(np.float64), new.astype(np.float64))
        iou[m + np.arange(len(new)), np.arange(len(new))] = 0  # a box with itself
        assert (iou == 0).all()
        for name, target in counts.items():  # never more than the target (unless the scene has more)
            label = ds.class_names.index(name)
            assert (out.labels == label).sum() <= max(target, (s.labels == label).sum())
        # Each pasted box holds exactly its object's points: the scene's points there were removed.
        owner = points_in_boxes(out.points, new)
        stored = {tuple(np.round(b, 4)): n for b, n in zip(db.boxes, db.num_points, strict=True)}
        for k, box in enumerate(new):
            assert (owner == k).sum() == stored[tuple(np.round(box, 4))]
        assert out.points.shape[1] == 4 and out.difficulty.dtype == np.int32
        np.testing.assert_array_equal(s.points, ds.load(i).points)  # input untouched
    assert total_pasted > 10
    a = paste(ds.load(0), np.random.default_rng(7))
    b = paste(ds.load(0), np.random.default_rng(7))
    np.testing.assert_array_equal(a.points, b.points)


def test_ground_truth_sampling_keeps_clear_of_objects_of_other_classes(tiny):
    """Vans and Trucks are not training boxes, but a pasted Car must not land on one either."""
    db = GroundTruthDatabase(tiny / "gt_database")
    paste = GroundTruthSampling(db, {"Car": 40, "Pedestrian": 20}, difficulties=None)
    ds = KittiDetectionDataset(tiny, "val", class_names=("Car", "Pedestrian"))
    checked = 0
    for i in range(len(ds)):
        s = ds.load(i)
        others = s.record.boxes_lidar[~np.isin(s.record.objects.names, ("Car", "Pedestrian"))].astype(
            np.float64
        )
        if not len(others):
            continue
        out = paste(s, np.random.default_rng(i))
        new = out.boxes[len(s.boxes) :].astype(np.float64)
        assert (boxes_iou_bev(new, others) == 0).all()
        checked += len(others)
    assert checked > 0  # the tiny dataset has Vans, Trucks or Cyclists to avoid


def test_ground_truth_sampling_from_path_and_checks(tiny):
    paste = GroundTruthSampling(str(tiny / "gt_database"), {"Pedestrian": 50}, fill=False)
    s = KittiDetectionDataset(tiny, "val").load(0)
    out = paste(s, np.random.default_rng(0))
    assert len(out.labels) > len(s.labels) and set(out.labels[len(s.boxes) :].tolist()) == {1}
    assert (out.difficulty[len(s.boxes) :] >= 0).all()  # default: objects with a KITTI difficulty
    with pytest.raises(ValueError, match="not in class_names"):
        GroundTruthSampling(str(tiny / "gt_database"), {"Van": 3})
