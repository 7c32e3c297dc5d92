"""Box codings: what a head regresses instead of a box, and back (torch, any device).

Boxes are ``[x, y, z, l, w, h, yaw]`` in the lidar frame (metres, ``(x, y, z)`` the centre, yaw
counter-clockwise from +x, see :mod:`perception.geometry.boxes`). Every function computes in the
floating dtype of its inputs (the heads pass float32; the round-trip tests float64) on their device.

Two codings, each an ``encode_*`` / ``decode_*`` pair:

- **CenterPoint** (:func:`encode_centerpoint` / :func:`decode_centerpoint`), a box at a cell of a BEV
  grid with corner ``origin`` and cells of ``cell_size`` metres: the 8 channels of
  :data:`CENTERPOINT_CHANNELS`, ``[x/cx - ix, y/cy - iy, z, log l, log w, log h, sin yaw, cos yaw]``
  with x, y measured from ``origin``, ``(ix, iy)`` the cell holding the centre (the first two: the
  sub-cell offset in cells, in [0, 1)).
- **RoI residual** (:func:`encode_roi_residuals` / :func:`decode_roi_residuals`), a box relative to a
  region of interest (a proposal box): ``[dx / d, dy / d, dz / h, log(l' / l), log(w' / w),
  log(h' / h), Δyaw]`` with ``(dx, dy)`` the centre offset rotated into the RoI's frame (x along its
  heading), ``d = sqrt(l² + w²)`` the RoI's BEV diagonal, ``l, w, h`` the RoI's extents and ``Δyaw`` the
  heading difference folded to [-π/2, π/2) (a box turned by π is the same box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from perception.geometry.boxes import rotate_xy, wrap_angle

__all__ = [
    "CENTERPOINT_CHANNELS",
    "decode_centerpoint",
    "decode_roi_residuals",
    "encode_centerpoint",
    "encode_roi_residuals",
]

# The channels of the CenterPoint code, in order.
CENTERPOINT_CHANNELS = ("offset_x", "offset_y", "z", "log_l", "log_w", "log_h", "sin_yaw", "cos_yaw")


def encode_centerpoint(
    boxes: torch.Tensor, origin: Sequence[float], cell_size: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The BEV cell of each box's centre and the box's CenterPoint code at that cell.

    Args:
        boxes: (M, 7) float boxes, lidar frame.
        origin: ``(x_min, y_min)`` metres, the grid's corner (cell (0, 0) starts there).
        cell_size: ``(cx, cy)`` metres per cell.

    Returns:
        cells: (M, 2) int64 ``[ix, iy]``, the cell holding each centre (outside the grid for centres
        outside it: check the bounds);
        codes: (M, 8) float, :data:`CENTERPOINT_CHANNELS` (extents clamped to at least 1 mm first).
    """
    fx = (boxes[:, 0] - origin[0]) / cell_size[0]
    fy = (boxes[:, 1] - origin[1]) / cell_size[1]
    ix, iy = torch.floor(fx), torch.floor(fy)
    log_dims = boxes[:, 3:6].clamp(min=1e-3).log()
    yaw = boxes[:, 6]
    codes = torch.stack(
        [fx - ix, fy - iy, boxes[:, 2], *log_dims.unbind(1), torch.sin(yaw), torch.cos(yaw)], dim=1
    )
    return torch.stack([ix, iy], dim=1).long(), codes


def decode_centerpoint(
    codes: torch.Tensor,
    cells: torch.Tensor,
    origin: Sequence[float],
    cell_size: Sequence[float],
    max_log_dim: float = 8.0,
) -> torch.Tensor:
    """Boxes from CenterPoint codes at their cells; the inverse of :func:`encode_centerpoint`.

    Args:
        codes: (..., 8) float, :data:`CENTERPOINT_CHANNELS`.
        cells: (..., 2) integer ``[ix, iy]``, the cell each code was read at.
        origin, cell_size: the grid, as for :func:`encode_centerpoint`.
        max_log_dim: log extents are clamped to at most this before ``exp`` (an untrained head's
            outputs must not overflow).

    Returns:
        (..., 7) boxes in the codes' dtype, lidar frame, yaw ``atan2(sin, cos)`` wrapped to [-π, π).
    """
    ix, iy = cells[..., 0].to(codes.dtype), cells[..., 1].to(codes.dtype)
    x = (ix + codes[..., 0]) * cell_size[0] + origin[0]
    y = (iy + codes[..., 1]) * cell_size[1] + origin[1]
    dims = codes[..., 3:6].clamp(max=max_log_dim).exp()
    yaw = wrap_angle(torch.atan2(codes[..., 6], codes[..., 7]))  # atan2 gives (-π, π]: π becomes -π
    return torch.cat([x.unsqueeze(-1), y.unsqueeze(-1), codes[..., 2:3], dims, yaw.unsqueeze(-1)], dim=-1)


def encode_roi_residuals(rois: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The residuals of ``boxes`` relative to ``rois`` (module docstring), in each RoI's frame.

    Args:
        rois: (R, 7) float boxes, lidar frame.
        boxes: (R, 7) float boxes, lidar frame, one per RoI (its target).

    Returns:
        (R, 7) float ``[dx / d, dy / d, dz / h, log(l' / l), log(w' / w), log(h' / h), Δyaw]``,
        Δyaw in [-π/2, π/2) (extents, d and h clamped to at least 1 mm).
    """
    diagonal = rois[:, 3:5].norm(dim=1).clamp(min=1e-3)
    dx, dy = rotate_xy(boxes[:, :2] - rois[:, :2], -rois[:, 6])
    dz = (boxes[:, 2] - rois[:, 2]) / rois[:, 5].clamp(min=1e-3)
    dims = torch.log(boxes[:, 3:6].clamp(min=1e-3) / rois[:, 3:6].clamp(min=1e-3))
    dyaw = wrap_angle(boxes[:, 6] - rois[:, 6])
    dyaw = torch.remainder(dyaw + math.pi / 2, math.pi) - math.pi / 2
    return torch.stack([dx / diagonal, dy / diagonal, dz, *dims.unbind(1), dyaw], dim=1)


def decode_roi_residuals(
    rois: torch.Tensor, residuals: torch.Tensor, max_log_ratio: float = 3.0
) -> torch.Tensor:
    """Boxes from RoIs and residuals; the inverse of :func:`encode_roi_residuals`.

    Args:
        rois: (R, 7) float boxes, lidar frame.
        residuals: (R, 7) float, as :func:`encode_roi_residuals` gives.
        max_log_ratio: log extent ratios are clamped to at most this before ``exp``.

    Returns:
        (R, 7) float boxes, lidar frame, yaw in [-π, π) (the decoded box is the target turned by π
        where the target's heading was more than a quarter turn off the RoI's).
    """
    diagonal = rois[:, 3:5].norm(dim=1).clamp(min=1e-3)
    dx, dy = rotate_xy(residuals[:, :2] * diagonal[:, None], rois[:, 6])
    z = rois[:, 2] + residuals[:, 2] * rois[:, 5]
    dims = rois[:, 3:6] * residuals[:, 3:6].clamp(max=max_log_ratio).exp()
    yaw = wrap_angle(rois[:, 6] + residuals[:, 6])
    return torch.cat([torch.stack([rois[:, 0] + dx, rois[:, 1] + dy, z], 1), dims, yaw[:, None]], dim=1)
