"""3D boxes in the sensor (lidar / vehicle) frame.

Convention (fixed across the project, see DESIGN.md): a box is ``[x, y, z, l, w, h, yaw]`` with
``(x, y, z)`` the centre of the box (z too, not the bottom), ``l`` the extent along the heading,
``w`` across it, ``h`` vertical, and ``yaw`` counter-clockwise from +x about +z, wrapped to [-π, π).
Frames: x forward, y left, z up, metres.

Everything here is NumPy on the CPU; ``points_in_boxes`` uses a numba kernel with a per-box
bounding-box rejection, so a 120 k-point scan against tens of boxes takes a few milliseconds.
:func:`wrap_angle` and :func:`rotate_xy` also take torch tensors (torch in, torch out, on the tensor's
device and in its dtype); this module does not import torch itself.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, overload

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

__all__ = [
    "box_corners",
    "boxes_bev_corners",
    "points_in_boxes",
    "points_in_boxes_mask",
    "rotate_xy",
    "rotation_z",
    "wrap_angle",
]


def _is_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch: no tensor exists before torch is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


@overload
def wrap_angle(angle: torch.Tensor) -> torch.Tensor: ...
@overload
def wrap_angle(angle: ArrayLike) -> NDArray[np.float64]: ...
def wrap_angle(angle):
    """Wrap angles (radians, any shape) to [-π, π), elementwise.

    NumPy / array-likes give a float64 array; a torch tensor gives a tensor on its device, in its
    (floating) dtype, where π is that dtype's rounding of π. Angles already in [-π, π) come back
    unchanged, bit for bit; the others as ``(angle + π) mod 2π - π`` (with π itself mapped to -π).
    """
    if _is_tensor(angle):
        import torch

        wrapped = torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
        # the remainder can round up to exactly 2π for values a hair below a multiple of 2π
        wrapped = torch.where(wrapped >= math.pi, wrapped - 2 * math.pi, wrapped)
        return torch.where((angle >= -math.pi) & (angle < math.pi), angle, wrapped)
    angle = np.asarray(angle, dtype=np.float64)
    wrapped = np.mod(angle + np.pi, 2.0 * np.pi) - np.pi
    # np.mod can round up to exactly 2π for values a hair below a multiple of 2π.
    wrapped = np.where(wrapped >= np.pi, wrapped - 2.0 * np.pi, wrapped)
    return np.where((angle >= -np.pi) & (angle < np.pi), angle, wrapped)


@overload
def rotate_xy(xy: torch.Tensor, angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def rotate_xy(xy: ArrayLike, angle: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]: ...
def rotate_xy(xy, angle):
    """Rotate (…, 2) vectors counter-clockwise about +z by ``angle`` (radians, broadcastable to …).

    Returns the rotated x and y, each of shape …: ``(x cos a - y sin a, x sin a + y cos a)``.
    Rotating by ``-yaw`` takes offsets from a box's centre into the box's frame (x along its heading).
    NumPy in, float64 NumPy out; torch in, torch out (``xy`` and ``angle`` both tensors).
    """
    if _is_tensor(xy):
        import torch

        c, s = torch.cos(angle), torch.sin(angle)
    else:
        xy, angle = np.asarray(xy, dtype=np.float64), np.asarray(angle, dtype=np.float64)
        c, s = np.cos(angle), np.sin(angle)
    return xy[..., 0] * c - xy[..., 1] * s, xy[..., 0] * s + xy[..., 1] * c


def rotation_z(yaw: ArrayLike) -> NDArray[np.float64]:
    """Rotation matrices about +z, (..., 3, 3) for yaw of shape (...)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    zeros, ones = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack(
        [np.stack([c, -s, zeros], -1), np.stack([s, c, zeros], -1), np.stack([zeros, zeros, ones], -1)],
        -2,
    )


def _check_boxes(boxes: ArrayLike, name: str = "boxes") -> NDArray[np.float64]:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"{name} must have shape (M, 7) [x, y, z, l, w, h, yaw], got {boxes.shape}")
    return boxes


# Corner order: bottom face counter-clockwise seen from above starting at front-left, then the top face
# in the same order. Index k and k + 4 are the same corner at the bottom and top.
_UNIT_CORNERS = np.array(
    [
        [0.5, 0.5, -0.5],
        [-0.5, 0.5, -0.5],
        [-0.5, -0.5, -0.5],
        [0.5, -0.5, -0.5],
        [0.5, 0.5, 0.5],
        [-0.5, 0.5, 0.5],
        [-0.5, -0.5, 0.5],
        [0.5, -0.5, 0.5],
    ]
)


def box_corners(boxes: ArrayLike) -> NDArray[np.float64]:
    """Corners of boxes.

    Args:
        boxes: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``.

    Returns:
        (M, 8, 3) corners in the boxes' frame. Corners 0-3 are the bottom face (front-left,
        rear-left, rear-right, front-right: counter-clockwise seen from above), 4-7 the top face in
        the same order; "front" is +l along the heading.
    """
    boxes = _check_boxes(boxes)
    local = _UNIT_CORNERS[None] * boxes[:, None, 3:6]  # (M, 8, 3)
    rot = rotation_z(boxes[:, 6])  # (M, 3, 3)
    return np.einsum("mij,mkj->mki", rot, local) + boxes[:, None, 0:3]


def boxes_bev_corners(boxes: ArrayLike) -> NDArray[np.float64]:
    """(M, 4, 2) bird's-eye-view corners (x, y), counter-clockwise, of (M, 7) boxes."""
    return box_corners(boxes)[:, :4, :2]


@numba.njit(cache=True)
def _points_in_boxes_kernel(points, boxes, out_index, out_mask, write_mask):  # pragma: no cover - numba
    n = points.shape[0]
    m = boxes.shape[0]
    for j in range(m):
        cx, cy, cz = boxes[j, 0], boxes[j, 1], boxes[j, 2]
        hl, hw, hh = 0.5 * boxes[j, 3], 0.5 * boxes[j, 4], 0.5 * boxes[j, 5]
        c, s = np.cos(boxes[j, 6]), np.sin(boxes[j, 6])
        # Radius of the BEV footprint for a cheap axis-aligned rejection.
        r = np.sqrt(hl * hl + hw * hw)
        for i in range(n):
            dx = points[i, 0] - cx
            if dx > r or dx < -r:
                continue
            dy = points[i, 1] - cy
            if dy > r or dy < -r:
                continue
            dz = points[i, 2] - cz
            if dz > hh or dz < -hh:
                continue
            lx = c * dx + s * dy
            if lx > hl or lx < -hl:
                continue
            ly = -s * dx + c * dy
            if ly > hw or ly < -hw:
                continue
            if write_mask:
                out_mask[i, j] = True
            if out_index[i] < 0:
                out_index[i] = j


def _run_points_in_boxes(points: ArrayLike, boxes: ArrayLike, want_mask: bool):
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must have shape (N, >=3), got {pts.shape}")
    pts = np.ascontiguousarray(pts[:, :3], dtype=np.float64)
    boxes = np.ascontiguousarray(_check_boxes(boxes))
    index = np.full(pts.shape[0], -1, dtype=np.int64)
    mask = np.zeros((pts.shape[0], boxes.shape[0]) if want_mask else (0, 0), dtype=np.bool_)
    if pts.shape[0] and boxes.shape[0]:
        _points_in_boxes_kernel(pts, boxes, index, mask, want_mask)
    return index, mask


def points_in_boxes(points: ArrayLike, boxes: ArrayLike) -> NDArray[np.int64]:
    """Index of the box holding each point.

    Args:
        points: (N, C) points, the first three columns x, y, z in the boxes' frame.
        boxes: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``.

    Returns:
        (N,) int64: the lowest index of a box containing the point (faces inclusive), or -1.
    """
    return _run_points_in_boxes(points, boxes, want_mask=False)[0]


def points_in_boxes_mask(points: ArrayLike, boxes: ArrayLike) -> NDArray[np.bool_]:
    """(N, M) bool: ``mask[i, j]`` is True where point i lies in box j (faces inclusive)."""
    return _run_points_in_boxes(points, boxes, want_mask=True)[1]
