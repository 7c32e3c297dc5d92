"""``VoxelFeatures``: one feature vector per non-empty voxel, what a point-to-voxel encoder gives a backbone."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perception.ops.sparse import SparseConvTensor

__all__ = ["VoxelFeatures"]


@dataclass(frozen=True)
class VoxelFeatures:
    """One feature vector per non-empty voxel: what an encoder gives a backbone.

    Attributes:
        features: (V, C) float, one row per voxel.
        coords: (V, 4) int32 ``[b, z, y, x]`` voxel coordinates, sorted by ``(b, z, y, x)``, no duplicates.
        spatial_shape: the grid's ``(D, H, W)`` = ``(nz, ny, nx)``.
        batch_size: B, the number of samples (some may have no voxels).
    """

    features: torch.Tensor
    coords: torch.Tensor
    spatial_shape: tuple[int, int, int]
    batch_size: int

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    def to_sparse(self) -> SparseConvTensor:
        """The same voxels as a :class:`~perception.ops.sparse.SparseConvTensor` (shares the tensors)."""
        return SparseConvTensor(self.features, self.coords, list(self.spatial_shape), self.batch_size)
