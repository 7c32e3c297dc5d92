"""Shape transforms: each one's property, float32 and aligned part labels throughout."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.shapes.mesh import sample_surface
from perception.data.shapes.synthetic import box
from perception.data.shapes.transforms import (
    NormalizeUnitSphere,
    RandomJitter,
    RandomPointDropout,
    RandomRotationZ,
    RandomScale,
    ResamplePoints,
    ShufflePoints,
    rotate_z,
)
from perception.data.transforms import Compose
from perception.structures.shapes import PointSet


def _labelled(n: int = 200, seed: int = 0, normals: bool = True) -> PointSet:
    """A random set whose part label is a function of the point (its index), to check alignment."""
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3))
    nrm = rng.normal(size=(n, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    points = np.concatenate([xyz, nrm], axis=1) if normals else xyz
    return PointSet(shape_id="s", points=points.astype(np.float32), label=2, part_labels=np.arange(n))


def _box_surface(size: tuple[float, float, float], n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = box(size, (0.0, 0.0, 0.0))
    return sample_surface(vertices, faces, n, np.random.default_rng(1))


ALL = [
    NormalizeUnitSphere(),
    NormalizeUnitSphere("bbox"),
    ResamplePoints(150),
    ResamplePoints(300),
    RandomRotationZ(),
    RandomScale(),
    RandomScale(anisotropic=False),
    RandomJitter(),
    RandomPointDropout(0.5),
    ShufflePoints(),
]


@pytest.mark.parametrize("transform", ALL, ids=repr)
def test_float32_labels_aligned_input_untouched(transform) -> None:
    sample = _labelled()
    before = sample.points.copy()
    out = transform(sample, np.random.default_rng(3))
    assert isinstance(out, PointSet) and out.points.dtype == np.float32
    assert out.points.shape[1] == 6 and out.label == 2
    assert np.array_equal(sample.points, before)  # never edited in place
    # the part label is the original index: each output point's normal is its source point's normal,
    # up to rotation and scale, so check with the transforms that leave normals alone
    if not isinstance(transform, (RandomRotationZ, RandomScale)):
        np.testing.assert_array_equal(out.points[:, 3:], sample.points[out.part_labels, 3:])
    again = transform(sample, np.random.default_rng(3))
    assert np.array_equal(out.points, again.points)  # the generator decides everything


def test_normalize_unit_sphere() -> None:
    sample = _labelled(normals=False)
    sample = sample.replace(points=sample.points * 7 + np.float32(3))
    out = NormalizeUnitSphere()(sample, np.random.default_rng())
    np.testing.assert_allclose(out.points.mean(axis=0), 0, atol=1e-5)
    assert np.linalg.norm(out.points, axis=1).max() == pytest.approx(1, abs=1e-6)
    bbox = NormalizeUnitSphere("bbox")(sample, np.random.default_rng())
    np.testing.assert_allclose(bbox.points.min(axis=0) + bbox.points.max(axis=0), 0, atol=1e-5)


def test_resample_without_and_with_replacement() -> None:
    sample = _labelled(100)
    fewer = ResamplePoints(60)(sample, np.random.default_rng(0))
    assert len(fewer.points) == 60 and len(np.unique(fewer.part_labels)) == 60  # no repeats
    np.testing.assert_array_equal(fewer.points, sample.points[fewer.part_labels])
    more = ResamplePoints(250)(sample, np.random.default_rng(0))
    assert len(more.points) == 250
    assert set(more.part_labels.tolist()) == set(range(100))  # every point kept, some repeated
    np.testing.assert_array_equal(more.points, sample.points[more.part_labels])
    with pytest.raises(ValueError, match="no points"):
        ResamplePoints(5)(sample.select_points(np.zeros(100, bool)), np.random.default_rng(0))


@settings(max_examples=40, deadline=None)
@given(angle=st.floats(-2 * math.pi, 2 * math.pi), seed=st.integers(0, 2**31))
def test_rotation_keeps_norms_and_turns_normals_with_points(angle: float, seed: int) -> None:
    sample = _labelled(50, seed)
    out = rotate_z(sample, angle)
    p, q = sample.points.astype(np.float64), out.points.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(q[:, :3], axis=1), np.linalg.norm(p[:, :3], axis=1), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(q[:, 3:], axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(q[:, 2], p[:, 2], atol=1e-6)  # about z
    np.testing.assert_allclose(q[:, 5], p[:, 5], atol=1e-6)
    # the angle between a point's horizontal position and its normal's is kept
    cross = lambda a, b: a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]  # noqa: E731
    dot = lambda a, b: a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]  # noqa: E731
    np.testing.assert_allclose(cross(q[:, :3], q[:, 3:]), cross(p[:, :3], p[:, 3:]), atol=1e-4)
    np.testing.assert_allclose(dot(q[:, :3], q[:, 3:]), dot(p[:, :3], p[:, 3:]), atol=1e-4)
    expected = math.atan2(q[0, 1], q[0, 0]) - math.atan2(p[0, 1], p[0, 0])
    assert math.remainder(expected - angle, 2 * math.pi) == pytest.approx(0, abs=1e-3)


def test_random_rotation_stays_within_its_range() -> None:
    sample = PointSet(shape_id="s", points=np.array([[1.0, 0, 0]], np.float32), label=0)
    angles = [
        math.atan2(*RandomRotationZ(0.3)(sample, np.random.default_rng(s)).points[0, [1, 0]])
        for s in range(50)
    ]
    assert max(abs(a) for a in angles) <= 0.3 + 1e-6 and max(angles) - min(angles) > 0.2


def test_anisotropic_scale_keeps_a_box_s_normals_perpendicular_to_its_faces() -> None:
    points, normals = _box_surface((1.0, 0.6, 0.4))
    sample = PointSet(shape_id="box", points=np.concatenate([points, normals], 1), label=0)
    out = RandomScale(0.5, 2.0)(sample, np.random.default_rng(5))
    factors = out.points[:, :3].max(axis=0) / points.max(axis=0)
    assert np.ptp(factors) > 0.1  # anisotropic
    np.testing.assert_allclose(np.linalg.norm(out.points[:, 3:], axis=1), 1, atol=1e-5)
    # a box's faces stay axis-aligned: each normal is still ±e_k, and its point lies on face k
    scaled_half = np.asarray([1.0, 0.6, 0.4]) / 2 * factors
    axis = np.abs(out.points[:, 3:]).argmax(axis=1)
    np.testing.assert_allclose(np.abs(out.points[:, 3:]).max(axis=1), 1, atol=1e-5)
    on_face = np.abs(out.points[np.arange(len(axis)), axis]) / scaled_half[axis]
    np.testing.assert_allclose(on_face, 1, atol=1e-4)


def test_scale_turns_slanted_normals_by_the_inverse_transpose() -> None:
    # points on the plane x + y = 1 (normal (1, 1, 0) / √2): after any scaling the normal must stay
    # perpendicular to the scaled plane, which scaling the normal by the factors would not do
    t = np.linspace(0, 1, 10)
    s = 0.5**0.5
    plane = np.column_stack([t, 1 - t, t * 0.3, np.full(10, s), np.full(10, s), np.zeros(10)])
    sample = PointSet(shape_id="p", points=plane.astype(np.float32), label=0)
    out = RandomScale(0.5, 2.0)(sample, np.random.default_rng(7)).points.astype(np.float64)
    fx, fy = out[-1, 0] / plane[-1, 0], out[0, 1] / plane[0, 1]  # (1, 0, .3) and (0, 1, 0) scaled
    assert abs(fx - fy) > 0.05  # anisotropic
    along = out[1:, :3] - out[0, :3]  # directions within the scaled plane
    np.testing.assert_allclose(along @ out[0, 3:], 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out[:, 3:], axis=1), 1, atol=1e-6)
    uniform = RandomScale(2.0, 2.0)(sample, np.random.default_rng(0))
    np.testing.assert_allclose(uniform.points[:, 3:], plane[:, 3:], atol=1e-6)


def test_jitter_moves_only_xyz_within_clip() -> None:
    sample = _labelled()
    out = RandomJitter(0.05, 0.02)(sample, np.random.default_rng(0))
    moved = out.points[:, :3] - sample.points[:, :3]
    assert np.abs(moved).max() <= 0.02 + 1e-6 and np.abs(moved).max() > 0.01
    np.testing.assert_array_equal(out.points[:, 3:], sample.points[:, 3:])


def test_dropout_keeps_n_and_replaces_by_the_first_point() -> None:
    sample = _labelled(400)
    out = RandomPointDropout(0.8)(sample, np.random.default_rng(1))
    assert out.points.shape == sample.points.shape and out.part_labels.shape == (400,)
    dropped = out.part_labels != np.arange(400)
    assert dropped.any()
    assert (out.part_labels[dropped] == 0).all()
    np.testing.assert_array_equal(
        out.points[dropped], np.broadcast_to(sample.points[0], out.points[dropped].shape)
    )
    with pytest.raises(ValueError):
        RandomPointDropout(1.0)


def test_shuffle_and_compose() -> None:
    sample = _labelled()
    pipeline = Compose(
        [ResamplePoints(120), RandomRotationZ(), RandomScale(), RandomJitter(), ShufflePoints()]
    )
    out = pipeline(sample, np.random.default_rng(0))
    assert out.points.shape == (120, 6) and out.points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.points[:, 3:], axis=1), 1, atol=1e-5)
    shuffled = ShufflePoints()(sample, np.random.default_rng(0))
    assert sorted(shuffled.part_labels.tolist()) == list(range(200))
    np.testing.assert_array_equal(shuffled.points, sample.points[shuffled.part_labels])
