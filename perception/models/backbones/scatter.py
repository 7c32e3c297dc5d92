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
        """(V, C) features at ``[b, z, y, x]`` → (B, C·D, H, W) float, rows y, columns x, in
        channels-last memory (strides ``(H·W·C·D, 1, W·C·D, C·D)``: each cell's channels side by side,
        which is how the features are written and the layout oneDNN's convolutions run fastest on)."""
        d, h, w = voxels.spatial_shape
        f = voxels.features
        b, c = voxels.batch_size, f.shape[1]
        canvas = f.new_zeros(b, d, h, w, c)
        idx = voxels.coords.long().unbind(1)
        canvas = canvas.index_put(idx, f)  # coords are unique: a plain put
        if d == 1:  # pillars: the canvas already holds each cell's channels side by side
            return canvas[:, 0].permute(0, 3, 1, 2)
        return canvas.permute(0, 2, 3, 4, 1).reshape(b, h, w, c * d).permute(0, 3, 1, 2)
