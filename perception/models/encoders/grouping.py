"""Points grouped by voxel, and the voxel features the encoders hand to the backbones.

Both point-to-voxel encoders (:mod:`.pointnet`, :mod:`.pvt`) start the same way: voxelize the batch on
its device with :func:`perception.ops.voxelize.dynamic_voxelize` (no caps: every point in the range
belongs to its voxel), sort the points so each voxel's points are contiguous (and, within a voxel, in
an order given by their values, not by where they came in: :func:`canonical_order`), and decorate every point
with PointPillars' offsets. :class:`PointGroups` carries that grouping with the segment reductions the
encoders need (sum, max, mean over each voxel's points, and broadcasting a voxel value back to its
points), so variable numbers of points per voxel need **no padding**: a voxel is a run of rows.

Frames and units: points are in the lidar frame (x forward, y left, z up, metres); voxel coordinates are
int32 ``[b, z, y, x]`` (spconv's order), sorted by ``(b, z, y, x)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from perception.ops.segments import pillar_decoration, segment_max
from perception.ops.voxelize import dynamic_voxelize, group_by_voxel

__all__ = ["PointGroups", "canonical_order", "group_points"]

# Tests set this to group CPU tensors with torch ops (the path other devices take) instead of numba.
_TORCH_ON_CPU = False


@dataclass(frozen=True)
class PointGroups:
    """The points of a batch that fall in the grid, sorted so each voxel's points form one run of rows.

    Attributes:
        points: (N', C) float, the input points inside the grid, sorted by voxel, within a voxel by
            :func:`canonical_order` (x, then a hash of the whole row; not the input order, so sums over
            a voxel run in the same order for any permutation of the input). Columns as the input:
            x, y, z (metres, lidar frame), then attributes.
        voxel: (N',) int64, each point's voxel, non-decreasing, in ``[0, V)``.
        num_points: (V,) int64, the points of each voxel (>= 1); sums to N'.
        coords: (V, 4) int32 ``[b, z, y, x]``, sorted by ``(b, z, y, x)``.
        spatial_shape: the grid's ``(D, H, W)``.
        batch_size: B.
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        range_min: (3,) ``[x_min, y_min, z_min]`` metres, the grid's corner.
    """

    points: torch.Tensor
    voxel: torch.Tensor
    num_points: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int
    voxel_size: tuple[float, float, float]
    range_min: tuple[float, float, float]

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    # Segment reductions over each voxel's run of points: deterministic (no atomics), with autograd.

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """(N', ...) per-point values → (V, ...) per-voxel sums."""
        return torch.segment_reduce(x, "sum", lengths=self.num_points, axis=0, unsafe=True)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        """(N', ...) → (V, ...) element-wise maxima (every voxel has a point, so no -inf); on the CPU
        without gradients one numba pass (:func:`perception.ops.segments.segment_max`, the same values)."""
        return segment_max(x, self.num_points)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """(N', ...) → (V, ...) means."""
        return torch.segment_reduce(x, "mean", lengths=self.num_points, axis=0, unsafe=True)

    def broadcast(self, x: torch.Tensor) -> torch.Tensor:
        """(V, ...) per-voxel values → (N', ...), each point getting its voxel's row.

        The gradient is a segment sum over each voxel's points (not ``index_select``'s atomic
        ``index_add``), so the backward pass is deterministic on a GPU too.
        """
        return _Broadcast.apply(x, self.voxel, self.num_points)

    def voxel_centres(self) -> torch.Tensor:
        """(V, 3) float32 ``[x, y, z]`` metres: the centre of each voxel."""
        zyx = self.coords[:, 1:].to(torch.float32)
        size = torch.tensor(self.voxel_size, dtype=torch.float32, device=zyx.device)
        lo = torch.tensor(self.range_min, dtype=torch.float32, device=zyx.device)
        return (zyx.flip(1) + 0.5) * size + lo

    def decorated(self) -> torch.Tensor:
        """(N', C + 6) PointPillars' decoration of each point, in the points' dtype:
        ``[x, y, z, attributes..., xyz - voxel's point mean (3), xyz - voxel centre (3)]``; float32 CPU
        points without gradients in one numba pass (:func:`perception.ops.segments.pillar_decoration`,
        the same bits)."""
        exact_kernel = (
            self.points.device.type == "cpu"
            and self.points.dtype == torch.float32
            and not torch.compiler.is_compiling()
        )
        if exact_kernel and not (self.points.requires_grad and torch.is_grad_enabled()):
            return pillar_decoration(self.points, self.num_points, self.voxel_centres())
        xyz = self.points[:, :3]
        to_mean = xyz - self.broadcast(self.mean(xyz))
        to_centre = xyz - self.broadcast(self.voxel_centres().to(xyz.dtype))
        return torch.cat([self.points, to_mean, to_centre], dim=1)


class _Broadcast(torch.autograd.Function):
    """``x.index_select(0, voxel)`` for a non-decreasing ``voxel``, with a segment-sum backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, voxel: torch.Tensor, num_points: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(num_points)
        return x.index_select(0, voxel)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (num_points,) = ctx.saved_tensors
        return torch.segment_reduce(grad, "sum", lengths=num_points, axis=0, unsafe=True), None, None


def canonical_order(points: torch.Tensor, voxel: torch.Tensor) -> torch.Tensor:
    """An order of the points by voxel, within a voxel by x, then by a 31-bit hash of the whole row.

    The order is a function of the rows' values, not of their positions: permuting the input permutes
    the result's indices but not the rows they pick (equal rows are interchangeable; two different rows
    of one voxel with the same x and the same hash, a 2**-31 chance, would keep their input order). So
    the segment sums and means over a voxel add the same numbers in the same order whatever the input
    order, and the encoders' features are bitwise the same for any permutation of a cloud.

    Args:
        points: (N, C) float, x first.
        voxel: (N,) int64, each point's voxel (>= 0).

    Returns:
        (N,) int64 indices into ``points``.
    """
    if points.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    words = points.detach().float().contiguous().view(torch.int32).long() & 0xFFFFFFFF  # (N, C) float32 bits
    x = words[:, 0]
    x_key = torch.where(x >= 1 << 31, x ^ 0xFFFFFFFF, x | (1 << 31))  # unsigned, ordered as the floats
    h = torch.full_like(x, 0x811C9DC5)
    for c in range(words.shape[1]):  # FNV-1a over the row's 32-bit words
        h = ((h ^ words[:, c]) * 0x01000193) & 0xFFFFFFFF
    h = (h ^ (h >> 16)) & 0x7FFFFFFF
    order = torch.sort((x_key << 31) | h, stable=True).indices
    return order[torch.sort(voxel[order], stable=True).indices]


def group_points(
    points: torch.Tensor,
    batch_index: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    batch_size: int | None = None,
) -> PointGroups:
    """Voxelize a batch on its device and group the points by voxel (points outside the range dropped).

    Args:
        points: (N, C) float, C >= 3, x, y, z metres (lidar frame) then attributes; any device.
        batch_index: (N,) int, the sample of each point (>= 0), same device.
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
        batch_size: B; by default ``batch_index.max() + 1`` (a device sync), or 1 for no points.

    Returns:
        A :class:`PointGroups`. Permuting the input points (with their batch indices) changes nothing:
        voxels, their coordinates and each voxel's run of points come out the same.
    """
    if batch_size is None:
        batch_size = int(batch_index.max()) + 1 if batch_index.numel() else 1
    if points.device.type == "cpu" and not _TORCH_ON_CPU and not torch.compiler.is_compiling():
        # one numba pass, the same result (torch.compile traces the torch ops instead)
        index, voxel, num_points, coords, spatial_shape = group_by_voxel(
            points, voxel_size, point_cloud_range, batch_index
        )
    else:
        dyn = dynamic_voxelize(points, voxel_size, point_cloud_range, batch_index)
        inside = (dyn.point_voxel >= 0).nonzero().squeeze(1)
        voxel = dyn.point_voxel[inside]
        order = canonical_order(points[inside], voxel)
        index, voxel = inside[order], voxel[order]
        num_points, coords, spatial_shape = dyn.num_points.long(), dyn.coords, dyn.spatial_shape
    return PointGroups(
        points=points[index],
        voxel=voxel,
        num_points=num_points,
        coords=coords,
        spatial_shape=spatial_shape,
        batch_size=int(batch_size),
        voxel_size=tuple(float(v) for v in voxel_size),  # type: ignore[arg-type]
        range_min=tuple(float(v) for v in point_cloud_range[:3]),  # type: ignore[arg-type]
    )
