"""RoI point pooling: the points found against the geometry reference, the numba and tensor paths
against each other, the choice independent of the order of the points, and the RoI frame."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.geometry.boxes import points_in_boxes_mask
from perception.ops import roi_points as rp
from perception.ops.roi_points import points_in_roi_frame, roi_points


@contextlib.contextmanager
def tensor_path_on_cpu() -> Iterator[None]:
    """Route CPU tensors through the tensor path (the one GPUs take) instead of numba."""
    old, rp._TORCH_ON_CPU = rp._TORCH_ON_CPU, True
    try:
        yield
    finally:
        rp._TORCH_ON_CPU = old


def random_boxes(g: torch.Generator, n: int) -> torch.Tensor:
    """(n, 7) float32 boxes in x [0, 40], y [-20, 20], extents 0.5-4.5 m, any heading."""
    low = torch.tensor([0.0, -20.0, -2.0, 0.5, 0.5, 0.5, -math.pi])
    span = torch.tensor([40.0, 40.0, 2.0, 4.0, 2.0, 2.0, 2 * math.pi])
    return torch.rand(n, 7, generator=g, dtype=torch.float64).float() * span + low


def scene(g: torch.Generator, rois: torch.Tensor, background: int, per_box: int) -> torch.Tensor:
    """(N, 4) points: uniform clutter over the boxes' area plus ``per_box`` points in each box (x, y, z, i)."""
    clutter = torch.rand(background, 3, generator=g) * torch.tensor([44.0, 44.0, 4.0]) + torch.tensor(
        [-2.0, -22.0, -3.0]
    )
    u = (torch.rand(len(rois), per_box, 3, generator=g) - 0.5) * rois[:, None, 3:6]
    c, s = torch.cos(rois[:, None, 6]), torch.sin(rois[:, None, 6])
    inside = (
        torch.stack([c * u[..., 0] - s * u[..., 1], s * u[..., 0] + c * u[..., 1], u[..., 2]], dim=-1)
        + rois[:, None, :3]
    )
    xyz = torch.cat([clutter, inside.reshape(-1, 3)])
    return torch.cat([xyz, torch.rand(len(xyz), 1, generator=g)], dim=1)


# ----------------------------------------------------------------------------------------------------
# Which points


def test_roi_points_are_the_points_in_the_enlarged_boxes() -> None:
    g = torch.Generator().manual_seed(2)
    rois = random_boxes(g, 12)
    points = scene(g, rois, 20000, 0)
    ratio, margin = 1.2, 0.2
    index, count = roi_points(points, rois, 64, ratio, margin)
    assert index.shape == (12, 64) and index.dtype == count.dtype == torch.int64
    enlarged = rois.clone().double()
    enlarged[:, 3:6] = enlarged[:, 3:6] * ratio + 2 * margin
    reference = points_in_boxes_mask(points.double().numpy(), enlarged.numpy())  # (N, R)
    np.testing.assert_array_equal(count.numpy(), reference.sum(0))
    for r in range(len(rois)):
        chosen = index[r].tolist()
        inside = set(np.flatnonzero(reference[:, r]).tolist())
        if count[r] == 0:
            assert set(chosen) == {0}
        else:
            k = min(64, int(count[r]))
            # the first k are distinct points of the RoI, then they repeat in the same order
            assert set(chosen[:k]) <= inside and len(set(chosen[:k])) == k
            assert chosen == [chosen[i % k] for i in range(64)]


def test_empty_inputs_and_empty_rois() -> None:
    g = torch.Generator().manual_seed(0)
    rois = random_boxes(g, 3)
    index, count = roi_points(torch.zeros(0, 4), rois, 8)
    assert index.shape == (3, 8) and not index.any() and count.tolist() == [0, 0, 0]
    index, count = roi_points(scene(g, rois, 100, 5), torch.zeros(0, 7), 8)
    assert index.shape == (0, 8) and count.shape == (0,)
    far = torch.tensor([[500.0, 500.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    index, count = roi_points(scene(g, rois, 100, 5), far, 8)
    assert count.tolist() == [0] and index.tolist() == [[0] * 8]


# ----------------------------------------------------------------------------------------------------
# numba (CPU) and tensor paths


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rois=st.integers(0, 12))
def test_pairs_agree_between_the_numba_and_tensor_paths(seed: int, rois: int) -> None:
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(g, rois).double()
    points = scene(g, boxes.float(), 3000, 30)[:, :3].double()
    half = boxes[:, 3:6] * 0.6 + 0.2
    r_nb, p_nb = rp._pairs_in_rois(points.numpy(), boxes.numpy(), half.numpy())
    r_t, p_t = rp._pairs_torch(points, boxes, half)
    # the same pairs in the same order: by RoI, then by point index
    assert r_nb.tolist() == r_t.tolist() and p_nb.tolist() == p_t.tolist()
    assert len(r_nb) >= 30 * rois


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), random=st.booleans())
def test_roi_points_are_the_same_on_both_paths(seed: int, random: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 8)
    points = scene(g, rois, 2000, 100)
    numba_path = roi_points(points, rois, 32, generator=torch.Generator().manual_seed(1), random=random)
    with tensor_path_on_cpu():
        tensor_path = roi_points(points, rois, 32, generator=torch.Generator().manual_seed(1), random=random)
    assert torch.equal(numba_path[0], tensor_path[0]) and torch.equal(numba_path[1], tensor_path[1])


# ----------------------------------------------------------------------------------------------------
# The choice


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_points=st.sampled_from([1, 16, 64]))
def test_the_choice_does_not_depend_on_the_order_of_the_points(seed: int, num_points: int) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 6)
    points = scene(g, rois, 3000, 100)  # most RoIs hold more than num_points: the hash decides
    perm = torch.randperm(len(points), generator=g)
    a, count_a = roi_points(points, rois, num_points)
    b, count_b = roi_points(points[perm], rois, num_points)
    assert torch.equal(count_a, count_b)
    # the same points (as coordinates; their indices differ) in the same slots
    torch.testing.assert_close(points[a], points[perm][b], atol=0, rtol=0)


@pytest.mark.parametrize("num_points", [1, 3, 63])
def test_points_at_the_same_coordinates_are_chosen_by_their_other_columns(num_points: int) -> None:
    """Two returns at one x, y, z have one hash key: the tie goes by the attributes, not by the order
    (found by tools/check_invariance.py: the refined scores moved when the points were permuted)."""
    g = torch.Generator().manual_seed(0)
    rois = random_boxes(g, 6)
    points = scene(g, rois, 1000, 100)
    twins = points.clone()
    twins[:, 3] = torch.rand(len(points), generator=g)
    points = torch.cat([points, twins])
    a, count_a = roi_points(points, rois, num_points)
    for _ in range(8):
        perm = torch.randperm(len(points), generator=g)
        b, count_b = roi_points(points[perm], rois, num_points)
        assert torch.equal(count_a, count_b)
        torch.testing.assert_close(points[a], points[perm][b], atol=0, rtol=0)
        with tensor_path_on_cpu():
            c, _ = roi_points(points[perm], rois, num_points)
        torch.testing.assert_close(points[a], points[perm][c], atol=0, rtol=0)


def test_random_choice_follows_the_generator() -> None:
    g = torch.Generator().manual_seed(5)
    rois = random_boxes(g, 4)
    points = scene(g, rois, 1000, 200)
    first, count = roi_points(points, rois, 16, generator=torch.Generator().manual_seed(3), random=True)
    again, _ = roi_points(points, rois, 16, generator=torch.Generator().manual_seed(3), random=True)
    other, _ = roi_points(points, rois, 16, generator=torch.Generator().manual_seed(4), random=True)
    assert torch.equal(first, again) and not torch.equal(first, other)
    every, _ = roi_points(points, rois, int(count.max()))  # with room for all: every point of each RoI
    for r in range(len(rois)):
        assert count[r] >= 200 and len(set(first[r].tolist())) == 16
        assert set(first[r].tolist()) <= set(every[r].tolist())


@pytest.mark.parametrize("num_points", [1, 5, 64])
def test_identical_points_are_chosen_alike_on_both_paths(num_points: int) -> None:
    """Rows equal in every column (a point listed twice) tie all the way: both paths take them in input
    order, so the same indices come out."""
    g = torch.Generator().manual_seed(3)
    rois = random_boxes(g, 6)
    points = scene(g, rois, 1000, 40)
    points = torch.cat([points, points[torch.randint(0, len(points), (600,), generator=g)]])
    a, count_a = roi_points(points, rois, num_points)
    with tensor_path_on_cpu():
        b, count_b = roi_points(points, rois, num_points)
    assert torch.equal(count_a, count_b) and torch.equal(a, b)


# ----------------------------------------------------------------------------------------------------
# The RoI frame


def test_a_box_corner_in_the_roi_frame() -> None:
    roi = torch.tensor([[3.0, 4.0, -1.0, 4.0, 2.0, 1.5, math.pi / 2]])
    # the front-left-top corner: 2 m along the heading (+y), 1 m to its left (-x), 0.75 m up
    corner = torch.tensor([[[3.0 - 1.0, 4.0 + 2.0, -1.0 + 0.75, 0.5]]])
    local = points_in_roi_frame(corner, roi)
    assert local.shape == (1, 1, 3) and local.dtype == torch.float32
    torch.testing.assert_close(local[0, 0], torch.tensor([2.0, 1.0, 0.75]), atol=1e-5, rtol=0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), theta=st.floats(-4.0, 4.0), shift=st.floats(-50.0, 50.0))
def test_the_roi_frame_is_invariant_under_rigid_motions(seed: int, theta: float, shift: float) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 5)
    points = torch.randn(5, 20, 3, generator=g) * 3 + rois[:, None, :3]
    c, s = math.cos(theta), math.sin(theta)
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    offset = torch.tensor([shift, -0.5 * shift, 0.1 * shift])
    moved_rois = rois.clone()
    moved_rois[:, :3] = rois[:, :3] @ rotation.T + offset
    moved_rois[:, 6] = rois[:, 6] + theta
    moved = points_in_roi_frame(points @ rotation.T + offset, moved_rois)
    torch.testing.assert_close(moved, points_in_roi_frame(points, rois), atol=2e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_roi_frame_keeps_the_dtype_and_inverts(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(8)
    rois = random_boxes(g, 4).to(dtype)
    points = (torch.randn(4, 10, 3, generator=g) * 2).to(dtype) + rois[:, None, :3]
    local = points_in_roi_frame(points, rois)
    assert local.dtype == dtype
    c, s = torch.cos(rois[:, None, 6]), torch.sin(rois[:, None, 6])
    back = torch.stack(
        [c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]], -1
    )
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(back + rois[:, None, :3], points, atol=tolerance, rtol=0)
