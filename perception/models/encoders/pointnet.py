"""PointNet voxel / pillar encoder: PointPillars' Pillar Feature Net (PFN).

Per point: PointPillars' decoration ``[x, y, z, attributes, xyz - voxel mean, xyz - voxel centre]``,
then a shared ``Linear → BatchNorm1d → ReLU``, then the max over the voxel's points. With several
layers, every layer but the last concatenates its per-point output with the voxel's max of it (as
PointPillars' two-layer PFN), so the next layer sees each point alongside its voxel's summary.

The voxel feature is a max over the voxel's points of per-point functions, so it is invariant to the
order of the points within a voxel. Note that in training mode BatchNorm's statistics are taken over
all points of the batch (as in PointPillars), the only place where voxels see each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from perception.models.encoders.grouping import group_points
from perception.structures import VoxelFeatures

__all__ = ["PointNetEncoder"]


class PointNetEncoder(nn.Module):
    """Points → one feature per voxel (or pillar) by a shared per-point MLP and a max over the voxel.

    Args:
        in_channels: C, the point columns (x, y, z + attributes; KITTI 4). The MLP sees C + 6.
        voxel_size: (3,) ``[dx, dy, dz]`` metres; pillars have ``dz`` = the range's height.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
        channels: the per-point width of each PFN layer; the output has ``channels[-1]`` channels.
            Layer i > 0 sees ``2 * channels[i - 1]`` (its predecessor's output and that output's voxel max).
        norm_eps, norm_momentum: BatchNorm1d's (PointPillars' 1e-3, 0.01).
    """

    def __init__(
        self,
        in_channels: int,
        voxel_size: Sequence[float],
        point_cloud_range: Sequence[float],
        channels: Sequence[int] = (64,),
        norm_eps: float = 1e-3,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if in_channels < 3:
            raise ValueError(f"in_channels must be >= 3 (x, y, z, ...), got {in_channels}")
        if len(channels) == 0:
            raise ValueError("channels must name at least one layer width")
        self.in_channels = in_channels
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        widths = [in_channels + 6] + [2 * c for c in channels[:-1]]
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Linear(c_in, c_out, bias=False),
                nn.BatchNorm1d(c_out, eps=norm_eps, momentum=norm_momentum),
                nn.ReLU(inplace=True),
            )
            for c_in, c_out in zip(widths, channels, strict=True)
        )
        self.out_channels = int(channels[-1])

    def forward(
        self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int | None = None
    ) -> VoxelFeatures:
        """Encode a batch of point clouds.

        Args:
            points: (N, C) float32, x, y, z metres (lidar frame) then attributes; any device.
            batch_index: (N,) int64, each point's sample.
            batch_size: B (by default ``batch_index.max() + 1``).

        Returns:
            :class:`VoxelFeatures` with (V, channels[-1]) features for the V non-empty voxels.
        """
        groups = group_points(points, batch_index, self.voxel_size, self.point_cloud_range, batch_size)
        x = groups.decorated()
        for i, layer in enumerate(self.layers):
            x = layer(x)
            pooled = groups.max(x)
            if i < len(self.layers) - 1:
                x = torch.cat([x, groups.broadcast(pooled)], dim=1)
        return VoxelFeatures(pooled, groups.coords, groups.spatial_shape, groups.batch_size)
