"""Box codings: encode → decode is the identity (float64, 1e-9), the codes' ranges and hand values,
the RoI residual's quarter-turn fold, and dtype kept."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.geometry.box_coder import (
    CENTERPOINT_CHANNELS,
    decode_centerpoint,
    decode_roi_residuals,
    encode_centerpoint,
    encode_roi_residuals,
)
from perception.geometry.boxes import wrap_angle
from perception.ops.iou3d import boxes_iou3d

ORIGIN, CELL = (-51.2, -40.0), (0.32, 0.4)


def random_boxes(g: torch.Generator, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(n, 7) boxes: centres in x [-50, 50], y [-40, 40], z [-3, 1], extents 0.3-6.3 m, yaw in [-π, π)."""
    low = torch.tensor([-50.0, -40.0, -3.0, 0.3, 0.3, 0.3, -math.pi], dtype=torch.float64)
    span = torch.tensor([100.0, 80.0, 4.0, 6.0, 6.0, 6.0, 2 * math.pi], dtype=torch.float64)
    boxes = torch.rand(n, 7, generator=g, dtype=torch.float64) * span + low
    boxes[:, 6] = wrap_angle(boxes[:, 6])
    return boxes.to(dtype)


def assert_same_boxes(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    """Equal boxes, yaw compared on the circle."""
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=atol, rtol=0)
    torch.testing.assert_close(wrap_angle(a[:, 6] - b[:, 6]), torch.zeros_like(a[:, 6]), atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------------------
# CenterPoint


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_centerpoint_round_trip(seed: int) -> None:
    boxes = random_boxes(torch.Generator().manual_seed(seed), 64)
    cells, codes = encode_centerpoint(boxes, ORIGIN, CELL)
    assert cells.dtype == torch.int64 and cells.shape == (64, 2)
    assert codes.dtype == torch.float64 and codes.shape == (64, len(CENTERPOINT_CHANNELS))
    assert ((codes[:, :2] >= 0) & (codes[:, :2] < 1)).all()  # the sub-cell offset, in cells
    torch.testing.assert_close(codes[:, 6:].square().sum(1), torch.ones(64, dtype=torch.float64))
    decoded = decode_centerpoint(codes, cells, ORIGIN, CELL)
    assert_same_boxes(decoded, boxes, atol=1e-9)
    assert ((decoded[:, 6] >= -math.pi) & (decoded[:, 6] < math.pi)).all()


def test_centerpoint_hand_values_and_batched_decode() -> None:
    box = torch.tensor([[0.0, 1.0, -1.0, 4.0, 2.0, 1.5, math.pi]], dtype=torch.float64)
    cells, codes = encode_centerpoint(box, ORIGIN, CELL)
    # x: 51.2 / 0.32 = 160 cells exactly; y: 41 / 0.4 = 102.5 cells
    assert cells.tolist() == [[160, 102]]
    torch.testing.assert_close(codes[0, :2], torch.tensor([0.0, 0.5], dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(codes[0, 3:6], torch.tensor([4.0, 2.0, 1.5], dtype=torch.float64).log())
    decoded = decode_centerpoint(codes[None], cells[None], ORIGIN, CELL)  # (1, 1, 8) → (1, 1, 7)
    assert decoded.shape == (1, 1, 7)
    assert -math.pi <= float(decoded[0, 0, 6]) < -math.pi + 1e-9  # yaw π comes back as -π


def test_centerpoint_decode_clamps_the_log_extents() -> None:
    codes = torch.tensor([[0.5, 0.5, 0.0, 50.0, 0.0, -1.0, 0.0, 1.0]])
    boxes = decode_centerpoint(codes, torch.zeros(1, 2, dtype=torch.long), ORIGIN, CELL, max_log_dim=8.0)
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 3:6], torch.tensor([math.exp(8.0), 1.0, math.exp(-1.0)]))


# ----------------------------------------------------------------------------------------------------
# RoI residuals


def perturbed(g: torch.Generator, rois: torch.Tensor, yaw_std: float, flip: bool = False) -> torch.Tensor:
    n = len(rois)
    boxes = rois.clone()
    boxes[:, :3] += torch.randn(n, 3, generator=g, dtype=rois.dtype) * 0.3
    boxes[:, 3:6] *= torch.exp(torch.randn(n, 3, generator=g, dtype=rois.dtype) * 0.1)
    boxes[:, 6] = wrap_angle(
        boxes[:, 6] + torch.randn(n, generator=g, dtype=rois.dtype) * yaw_std + flip * math.pi
    )
    return boxes


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_roi_residuals_round_trip(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 64)
    boxes = perturbed(g, rois, yaw_std=0.3)
    boxes[:, 6] = rois[:, 6] + wrap_angle(boxes[:, 6] - rois[:, 6]).clamp(-1.5, 1.5)  # within a quarter turn
    boxes[:, 6] = wrap_angle(boxes[:, 6])
    residuals = encode_roi_residuals(rois, boxes)
    assert residuals.dtype == torch.float64
    assert_same_boxes(decode_roi_residuals(rois, residuals), boxes, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), flip=st.booleans())
def test_roi_residuals_fold_the_heading_to_a_quarter_turn(seed: int, flip: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 20, torch.float32)
    boxes = perturbed(g, rois, yaw_std=0.2, flip=flip)
    residuals = encode_roi_residuals(rois, boxes)
    assert residuals.dtype == torch.float32
    assert (residuals[:, 6].abs() <= math.pi / 2 + 1e-6).all()
    decoded = decode_roi_residuals(rois, residuals)
    torch.testing.assert_close(decoded[:, :6], boxes[:, :6], atol=1e-4, rtol=1e-5)
    # the same box, possibly turned by π: the 3D IoU is 1
    iou = boxes_iou3d(decoded.double(), boxes.double()).diagonal()
    assert (iou > 0.999).all(), iou
    assert ((decoded[:, 6] >= -math.pi) & (decoded[:, 6] < math.pi)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_zero_residual_decodes_to_the_roi(dtype: torch.dtype) -> None:
    rois = random_boxes(torch.Generator().manual_seed(1), 10, dtype)
    decoded = decode_roi_residuals(rois, torch.zeros(10, 7, dtype=dtype))
    assert decoded.dtype == dtype
    torch.testing.assert_close(decoded, rois, atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)


def test_roi_residual_hand_values() -> None:
    roi = torch.tensor([[10.0, 5.0, -1.0, 4.0, 3.0, 2.0, math.pi / 2]], dtype=torch.float64)
    # 1 m ahead along the heading (+y), 0.5 m to its right (+x), 0.5 m up; twice as long; turned 0.1
    box = torch.tensor([[10.5, 6.0, -0.5, 8.0, 3.0, 2.0, math.pi / 2 + 0.1]], dtype=torch.float64)
    expected = torch.tensor(
        [[1.0 / 5.0, -0.5 / 5.0, 0.25, math.log(2.0), 0.0, 0.0, 0.1]], dtype=torch.float64
    )
    torch.testing.assert_close(encode_roi_residuals(roi, box), expected, atol=1e-12, rtol=0)
