"""Box geometry: yaw wrapping and rotation (NumPy and torch), corners (against shapely), points in boxes
(against a brute-force reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perception.geometry import (
    box_corners,
    boxes_bev_corners,
    points_in_boxes,
    points_in_boxes_mask,
    rotate_xy,
    rotation_z,
    wrap_angle,
)

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, st.integers(1, 50), elements=finite))
def test_wrap_angle_range_and_equivalence(angles):
    wrapped = wrap_angle(angles)
    assert np.all(wrapped >= -np.pi) and np.all(wrapped < np.pi)
    # Same direction: sin and cos agree.
    np.testing.assert_allclose(np.sin(wrapped), np.sin(angles), atol=1e-9)
    np.testing.assert_allclose(np.cos(wrapped), np.cos(angles), atol=1e-9)


def test_wrap_angle_edges():
    np.testing.assert_allclose(
        wrap_angle([np.pi, -np.pi, 3 * np.pi, 0.0, 2 * np.pi]), [-np.pi, -np.pi, -np.pi, 0, 0]
    )


def whole_turns(delta: np.ndarray, scale: np.ndarray) -> None:
    """``delta`` is a whole number of turns (2π k), up to the rounding of angles of size ``scale``."""
    turns = delta / (2 * np.pi)
    np.testing.assert_allclose(
        turns, np.round(turns), rtol=0, atol=1e-12 + 4e-16 * float(np.max(scale, initial=1))
    )


@given(arrays(np.float64, st.integers(1, 50), elements=finite))
def test_wrap_angle_is_the_input_modulo_a_turn(angles):
    wrapped = wrap_angle(angles)
    assert wrapped.dtype == np.float64 and wrapped.shape == angles.shape
    assert np.all(wrapped >= -np.pi) and np.all(wrapped < np.pi)
    whole_turns(angles - wrapped, np.abs(angles))
    inside = (angles >= -np.pi) & (angles < np.pi)
    np.testing.assert_array_equal(wrapped[inside], angles[inside])  # bit for bit


@given(arrays(np.float64, st.integers(1, 50), elements=finite))
def test_wrap_angle_on_tensors_agrees_with_numpy(angles):
    tensor = torch.from_numpy(angles)
    wrapped = wrap_angle(tensor)
    assert isinstance(wrapped, torch.Tensor) and wrapped.dtype == torch.float64
    assert bool((wrapped >= -math.pi).all()) and bool((wrapped < math.pi).all())
    whole_turns(angles - wrapped.numpy(), np.abs(angles))
    # the same angle as the NumPy path (both may round differently next to ±π: compare on the circle)
    gap = wrap_angle(wrapped.numpy() - wrap_angle(angles))
    np.testing.assert_allclose(gap, 0, rtol=0, atol=1e-12 + 4e-16 * float(np.abs(angles).max()))
    assert torch.equal(wrap_angle(wrapped), wrapped)  # idempotent


@given(arrays(np.float32, st.integers(1, 50), elements=st.floats(-1e3, 1e3, width=32)))
def test_wrap_angle_keeps_a_float32_tensor_float32(angles):
    wrapped = wrap_angle(torch.from_numpy(angles))
    assert wrapped.dtype == torch.float32
    pi = torch.tensor(math.pi, dtype=torch.float32)  # float32's π, a hair above π
    assert bool((wrapped >= -pi).all()) and bool((wrapped < pi).all())
    np.testing.assert_allclose(np.sin(wrapped.double().numpy()), np.sin(angles.astype(np.float64)), atol=2e-4)
    np.testing.assert_allclose(np.cos(wrapped.double().numpy()), np.cos(angles.astype(np.float64)), atol=2e-4)


def test_wrap_angle_tensor_edges_and_shape():
    angles = torch.tensor([[math.pi, -math.pi, 3 * math.pi], [0.0, 2 * math.pi, -2.5]], dtype=torch.float64)
    expected = torch.tensor([[-math.pi, -math.pi, -math.pi], [0.0, 0.0, -2.5]], dtype=torch.float64)
    torch.testing.assert_close(wrap_angle(angles), expected, atol=1e-12, rtol=0)
    # atan2 gives (-π, π]: π, in float32 too, becomes -π and the rest is unchanged
    yaw = torch.atan2(torch.tensor([0.0, -0.0, 1.0, -1.0]), torch.tensor([-1.0, -1.0, 0.3, -0.3]))
    wrapped = wrap_angle(yaw)
    assert wrapped[0] == -torch.tensor(math.pi) and torch.equal(wrapped[1:], yaw[1:])


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 20), elements=finite),
    arrays(np.float64, (2,), elements=st.floats(-100, 100)),
)
def test_rotate_xy_numpy_torch_and_rotation_matrices_agree(angles, xy):
    vectors = np.broadcast_to(xy, (len(angles), 2))
    x, y = rotate_xy(vectors, angles)
    expected = np.einsum("mij,mj->mi", rotation_z(angles)[:, :2, :2], vectors)
    np.testing.assert_allclose(np.stack([x, y], -1), expected, atol=1e-9)
    tx, ty = rotate_xy(torch.from_numpy(vectors.copy()), torch.from_numpy(angles))
    assert isinstance(tx, torch.Tensor) and tx.dtype == torch.float64
    np.testing.assert_allclose(np.stack([tx.numpy(), ty.numpy()], -1), expected, atol=1e-9)


def random_boxes(rng: np.random.Generator, m: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.uniform(-30, 30, (m, 2)),
            rng.uniform(-2, 1, m),
            rng.uniform(0.3, 6, (m, 3)),
            rng.uniform(-np.pi, np.pi, m),
        ]
    )


def test_box_corners_known_box():
    box = np.array([[1.0, 2.0, 3.0, 4.0, 2.0, 1.0, np.pi / 2]])
    c = box_corners(box)[0]
    # Heading +y: the front-left corner is at +l/2 along y and +w/2 along -x.
    np.testing.assert_allclose(c[0], [1.0 - 1.0, 2.0 + 2.0, 2.5], atol=1e-12)
    np.testing.assert_allclose(c[4], [0.0, 4.0, 3.5], atol=1e-12)
    np.testing.assert_allclose(c.mean(axis=0), box[0, :3], atol=1e-12)


def test_bev_corners_match_shapely_rotated_rectangle():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 50)
    corners = boxes_bev_corners(boxes)
    for box, quad in zip(boxes, corners, strict=True):
        poly = shapely.Polygon(quad)
        ref = shapely.affinity.rotate(
            shapely.box(-box[3] / 2, -box[4] / 2, box[3] / 2, box[4] / 2),
            box[6],
            origin=(0, 0),
            use_radians=True,
        )
        ref = shapely.affinity.translate(ref, box[0], box[1])
        assert poly.is_valid and shapely.Polygon(quad).exterior.is_ccw
        assert poly.symmetric_difference(ref).area < 1e-9
        assert poly.area == pytest.approx(box[3] * box[4])


def reference_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Brute force in each box's local frame, the definition written out."""
    local = points[:, None, :3] - boxes[None, :, :3]  # (N, M, 3)
    rot = rotation_z(-boxes[:, 6])  # world → box
    local = np.einsum("mij,nmj->nmi", rot, local)
    return np.all(np.abs(local) <= boxes[None, :, 3:6] / 2 + 1e-9, axis=2)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 8))
def test_points_in_boxes_matches_reference(seed, m):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, m)
    points = rng.uniform([-35, -35, -4], [35, 35, 4], (2000, 3))
    # Put some points right inside each box so hits are not rare.
    if m:
        inner = (rng.uniform(-0.49, 0.49, (m, 20, 3)) * boxes[:, None, 3:6]) @ np.transpose(
            rotation_z(boxes[:, 6]), (0, 2, 1)
        ) + boxes[:, None, :3]
        points = np.concatenate([points, inner.reshape(-1, 3)])
    ref = reference_points_in_boxes(points, boxes)
    mask = points_in_boxes_mask(points, boxes)
    np.testing.assert_array_equal(mask, ref)
    idx = points_in_boxes(points, boxes)
    first = ref.argmax(axis=1) if m else np.zeros(len(points), np.int64)
    expected = np.where(ref.any(axis=1), first, -1)
    np.testing.assert_array_equal(idx, expected)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_points_in_boxes_is_permutation_equivariant(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 5)
    points = rng.uniform(-30, 30, (500, 3))
    perm = rng.permutation(len(points))
    np.testing.assert_array_equal(points_in_boxes(points[perm], boxes), points_in_boxes(points, boxes)[perm])


def test_points_in_boxes_rigid_motion_invariance():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 6)
    points = rng.uniform(-30, 30, (3000, 3))
    theta, shift = 0.7, np.array([5.0, -3.0, 0.5])
    moved_points = points @ rotation_z(theta).T + shift
    moved_boxes = boxes.copy()
    moved_boxes[:, :3] = boxes[:, :3] @ rotation_z(theta).T + shift
    moved_boxes[:, 6] = wrap_angle(boxes[:, 6] + theta)
    a, b = points_in_boxes_mask(points, boxes), points_in_boxes_mask(moved_points, moved_boxes)
    # Points exactly on a face may flip by rounding; none are here with random floats.
    np.testing.assert_array_equal(a, b)


def test_points_in_boxes_empty_and_bad_shapes():
    assert points_in_boxes(np.zeros((0, 4)), np.zeros((3, 7))).shape == (0,)
    assert points_in_boxes_mask(np.zeros((5, 3)), np.zeros((0, 7))).shape == (5, 0)
    np.testing.assert_array_equal(points_in_boxes(np.zeros((5, 3)), np.zeros((0, 7))), -1)
    with pytest.raises(ValueError, match=r"boxes must have shape \(M, 7\)"):
        points_in_boxes(np.zeros((5, 3)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="points must have shape"):
        points_in_boxes(np.zeros((5, 2)), np.zeros((2, 7)))
