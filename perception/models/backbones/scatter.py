"""Pillar scatter: per-voxel features → a dense bird's-eye-view image (PointPillars' pseudo-image)."""

from __future__ import annotations

import torch
from torch import nn

from perception.structures import VoxelFeatures

__all__ = ["PillarScatter"]


class PillarScatter(nn.Module):
    """Scatter voxel features into a dense BEV grid, zeros where no voxel is.

    The grid's size comes from the voxels' ``spatial_shape`` (the encoder's range and voxel size), so
    nothing is configured here. For pillars (D = 1) the output is PointPillars' pseudo-image
    (B, C, H, W); for D > 1 the z slices are stacked into channels as a sparse backbone's ``.dense()``
    reshape does: (B, C·D, H, W), channel ``c * D + z``.
    """

    def forward(self, voxels: VoxelFeatures) -> torch.Tensor:
        """(V, C) features at ``[b, z, y, x]`` → (B, C·D, H, W) float, rows y, columns x."""
        d, h, w = voxels.spatial_shape
        f = voxels.features
        canvas = f.new_zeros(voxels.batch_size, d, h, w, f.shape[1])
        idx = voxels.coords.long().unbind(1)
        canvas = canvas.index_put(idx, f)  # coords are unique: a plain put
        return canvas.permute(0, 4, 1, 2, 3).reshape(voxels.batch_size, f.shape[1] * d, h, w)
