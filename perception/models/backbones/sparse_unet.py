"""MinkUNet-style sparse voxel U-Net for per-point features (the segmentation baseline).

Same contract as ``Point2PointBackbone``: ``forward(points (N, C), batch_index (N,)) -> (N, C')``. In
eval mode a permutation of a cloud's points permutes its outputs the same way, and no cloud's outputs
depend on another cloud of the batch.

1. **Voxelization, on the points' device, no fixed range.** A point's cell is
   ``floor(xyz / voxel_size)`` minus the **per-cloud minimum** of those cells, so every cloud's grid
   starts at 0 whatever its extent (no point is ever dropped, and a cloud gets the same cells alone
   as in any batch). Voxels are the unique ``(b, z, y, x)`` sites, sorted by them (spconv's
   ``[b, z, y, x]`` int32 indices); the grid is the largest extent in the batch per axis, rounded up
   to a multiple of ``2 ** (levels - 1)`` so that no kernel-2 stride-2 downsampling drops a border
   cell. Clouds whose extent needs more than 2**20 cells an axis (e.g. an outlier kilometres away)
   are rejected with a ``ValueError`` rather than silently clipped.
2. **Voxel features.** Each point gets ``[its C input features, its offset from its voxel's centre
   (3, metres)]``; a voxel's feature is the mean of its points' (``C + 3`` channels). The mean is
   taken over the points sorted by (voxel, then every input column, exactly), so it does not depend
   on the order in which the points came (a plain scatter-mean would add them in input order and
   differ in the last bits).
3. **Encoder.** A 3×3×3 submanifold stem to ``channels[0]``, then per level ``blocks[i]`` residual
   blocks (``SubMConv3d → BN → ReLU → SubMConv3d → BN``, plus the input, or its ``Linear → BN``
   projection when the width changes, then ReLU); levels after the first start with a
   ``SparseConv3d`` of kernel 2, stride 2 (→ BN → ReLU).
4. **Decoder.** From the deepest level up: ``SparseInverseConv3d`` (kernel 2, the matching
   downsampling run backwards: exactly the finer level's sites, in its rows) → BN → ReLU to
   ``channels[i]``, the encoder's level-i features concatenated, ``decoder_blocks[i]`` residual blocks.
5. **Points.** Each point takes its voxel's level-0 decoder feature; with ``point_skip`` (default), a
   point MLP (``Linear → BN → ReLU`` of the point's ``C + 3`` features, SPVCNN's point branch) is
   concatenated; ``Linear → BN → ReLU`` to ``out_channels``.

BatchNorm normalises over voxels (over points in the point branch and the output); in training its
statistics are taken over the whole batch, as in every BN network (and, as ever with BatchNorm, a
training batch needs more than one voxel at the deepest level). Sparse convolution runs through
:mod:`perception.ops.sparse`: exact kernels with autograd on the CPU, spconv on CUDA. Rulebook keys
carry the batch index, so no convolution mixes clouds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from perception.ops.sparse import (
    SparseConv3d,
    SparseConvTensor,
    SparseInverseConv3d,
    SparseSequential,
    SubMConv3d,
)

__all__ = ["SparseUNet", "voxelize_clouds"]

_MAX_CELLS_PER_AXIS = 1 << 20


def _bn(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


class _ResidualBlock(nn.Module):
    """Two 3×3×3 submanifold convolutions with BN, a residual connection, ReLU (MinkUNet's BasicBlock)."""

    def __init__(self, c_in: int, c_out: int, indice_key: str) -> None:
        super().__init__()
        self.convs = SparseSequential(
            SubMConv3d(c_in, c_out, 3, bias=False, indice_key=indice_key),
            _bn(c_out),
            nn.ReLU(inplace=True),
            SubMConv3d(c_out, c_out, 3, bias=False, indice_key=indice_key),
            _bn(c_out),
        )
        self.shortcut = (
            nn.Identity() if c_in == c_out else nn.Sequential(nn.Linear(c_in, c_out, bias=False), _bn(c_out))
        )

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        y = self.convs(x)
        return y.replace_feature(torch.relu(y.features + self.shortcut(x.features)))


def _stage(c_in: int, c_out: int, blocks: int, indice_key: str) -> nn.Sequential:
    return nn.Sequential(
        *(_ResidualBlock(c_in if i == 0 else c_out, c_out, indice_key) for i in range(blocks))
    )


def _check_inputs(points: torch.Tensor, batch_index: torch.Tensor, in_channels: int) -> None:
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or not points.is_floating_point():
        raise ValueError(f"points: expected an (N, C) float tensor, got {_describe(points)}")
    if points.shape[1] != in_channels:
        raise ValueError(f"points: {points.shape[1]} columns but in_channels={in_channels}")
    if (
        not isinstance(batch_index, torch.Tensor)
        or batch_index.shape != points.shape[:1]
        or batch_index.dtype.is_floating_point
        or batch_index.dtype == torch.bool
    ):
        raise ValueError(
            f"batch_index: expected an ({points.shape[0]},) integer tensor, got {_describe(batch_index)}"
        )
    if batch_index.device != points.device:
        raise ValueError(f"batch_index: on {batch_index.device} but points on {points.device}")
    if len(points) == 0:
        return
    if int(batch_index[0]) < 0 or bool((batch_index[1:] < batch_index[:-1]).any()):
        raise ValueError("batch_index: expected non-negative and non-decreasing values")
    if not bool(torch.isfinite(points[:, :3]).all()):
        raise ValueError("points: x, y, z must be finite (drop NaN/inf points first)")


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"shape {tuple(x.shape)} dtype {x.dtype}"
    return type(x).__name__


def _lexsort_by_voxel(point_voxel: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Order of the points by voxel, ties broken by every column of ``keys`` (exact float compares).

    Stable sorts from the least to the most significant key, so the order is a function of the
    multiset of (voxel, key row) pairs: points equal in every column are interchangeable.
    """
    order = torch.arange(len(point_voxel), device=point_voxel.device)
    for col in range(keys.shape[1] - 1, -1, -1):
        order = order[torch.sort(keys[order, col], stable=True).indices]
    return order[torch.sort(point_voxel[order], stable=True).indices]


def voxelize_clouds(
    points: torch.Tensor, batch_index: torch.Tensor, voxel_size: torch.Tensor, multiple: int = 1
) -> tuple[torch.Tensor, torch.Tensor, list[int], int]:
    """Voxels of a batch of clouds, each on its own grid starting at its minimum cell (any device).

    Args:
        points: (N, C) float, x, y, z metres then attributes.
        batch_index: (N,) integer, non-decreasing, the cloud of each point.
        voxel_size: (3,) float ``[dx, dy, dz]`` metres, on the points' device.
        multiple: the grid's size per axis is rounded up to a multiple of this.

    Returns:
        ``point_voxel`` (N,) int64 row of each point's voxel; ``indices`` (V, 4) int32 ``[b, z, y, x]``
        sorted by (b, z, y, x), no duplicates; ``spatial_shape`` ``[D, H, W]``; ``batch_size`` B.
    """
    b = batch_index.long()
    batch_size = int(b[-1]) + 1
    cell = torch.floor(points[:, :3] / voxel_size.to(points.dtype)).long()  # (N, 3) x, y, z
    lo = torch.full((batch_size, 3), torch.iinfo(torch.int64).max, dtype=torch.long, device=cell.device)
    lo = lo.scatter_reduce(0, b[:, None].expand(-1, 3), cell, "amin", include_self=True)
    cell = cell - lo[b]
    extent = (cell.max(0).values + 1).tolist()  # x, y, z
    if max(extent) > _MAX_CELLS_PER_AXIS:
        raise ValueError(
            f"points: a cloud spans {extent} voxels (x, y, z) of {voxel_size.tolist()} m; at most "
            f"{_MAX_CELLS_PER_AXIS} an axis (drop far outliers or use larger voxels)"
        )
    nx, ny, nz = (multiple * math.ceil(e / multiple) for e in extent)
    if batch_size * nx * ny * nz >= 2**62:
        raise ValueError(f"points: a grid of {[nz, ny, nx]} cells × {batch_size} clouds is too large")
    key = ((b * nz + cell[:, 2]) * ny + cell[:, 1]) * nx + cell[:, 0]
    sites, point_voxel = torch.unique(key, return_inverse=True)
    x = sites % nx
    y = sites // nx % ny
    z = sites // (nx * ny) % nz
    indices = torch.stack([sites // (nx * ny * nz), z, y, x], dim=1).to(torch.int32)
    return point_voxel, indices, [nz, ny, nx], batch_size


class SparseUNet(nn.Module):
    """Points → per-point features through a sparse voxel U-Net (MinkUNet-like; see the module doc).

    Args:
        in_channels: C, the points' columns (x, y, z, then attributes).
        out_channels: C', the width of the per-point output features.
        voxel_size: metres, one number or ``(dx, dy, dz)``. The default 0.1 m keeps a 120 k-point
            scan near 80 k voxels, which the exact CPU kernels train on in seconds a scan.
        channels: width of each level (level i has stride ``2 ** i``); MinkUNet's are 32 … 256.
        blocks: residual blocks per encoder level.
        decoder_blocks: residual blocks per decoder level ``0 .. levels - 2`` (default one each).
        point_skip: concatenate a per-point MLP feature to the gathered voxel feature.

    Attributes:
        out_channels: C'.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 64,
        voxel_size: float | Sequence[float] = 0.1,
        channels: Sequence[int] = (32, 64, 128, 256),
        blocks: Sequence[int] = (1, 1, 1, 1),
        decoder_blocks: Sequence[int] | None = None,
        point_skip: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 3:
            raise ValueError(f"in_channels: expected an int >= 3 (x, y, z, ...), got {in_channels!r}")
        vs = (
            (float(voxel_size),) * 3 if isinstance(voxel_size, int | float) else tuple(map(float, voxel_size))
        )
        if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
            raise ValueError(f"voxel_size: expected one or three finite numbers > 0, got {voxel_size!r}")
        levels = len(channels)
        if levels < 1 or len(blocks) != levels or min(channels) < 1 or min(blocks) < 0:
            raise ValueError(
                f"channels and blocks: one entry per level, widths >= 1 and blocks >= 0, got "
                f"{list(channels)} and {list(blocks)}"
            )
        decoder_blocks = (1,) * (levels - 1) if decoder_blocks is None else tuple(decoder_blocks)
        if len(decoder_blocks) != levels - 1 or (decoder_blocks and min(decoder_blocks) < 0):
            raise ValueError(
                f"decoder_blocks: expected {levels - 1} entries >= 0, got {list(decoder_blocks)}"
            )
        self.in_channels, self.out_channels = in_channels, int(out_channels)
        self.voxel_size = vs
        self.levels = levels
        c_point = in_channels + 3
        self.stem = SparseSequential(
            SubMConv3d(c_point, channels[0], 3, bias=False, indice_key="subm0"),
            _bn(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList([_stage(channels[0], channels[0], blocks[0], "subm0")])
        for i in range(1, levels):
            self.down.append(
                SparseSequential(
                    SparseConv3d(channels[i - 1], channels[i], 2, 2, bias=False, indice_key=f"down{i}"),
                    _bn(channels[i]),
                    nn.ReLU(inplace=True),
                )
            )
            self.encoder.append(_stage(channels[i], channels[i], blocks[i], f"subm{i}"))
        # decoder level i (i = levels - 2 .. 0): up from level i + 1, concatenate the skip, blocks
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(levels - 1):
            self.up.append(
                SparseSequential(
                    SparseInverseConv3d(
                        channels[i + 1], channels[i], 2, indice_key=f"down{i + 1}", bias=False
                    ),
                    _bn(channels[i]),
                    nn.ReLU(inplace=True),
                )
            )
            n = decoder_blocks[i]
            self.decoder.append(
                _stage(2 * channels[i], channels[i], n, f"subm{i}")
                if n
                else nn.Sequential(_Project(2 * channels[i], channels[i]))
            )
        self.point_mlp = (
            nn.Sequential(
                nn.Linear(c_point, channels[0], bias=False), _bn(channels[0]), nn.ReLU(inplace=True)
            )
            if point_skip
            else None
        )
        c_final = channels[0] * (2 if point_skip else 1)
        self.head = nn.Sequential(
            nn.Linear(c_final, self.out_channels, bias=False), _bn(self.out_channels), nn.ReLU(inplace=True)
        )

    def extra_repr(self) -> str:
        return f"voxel_size={self.voxel_size}"

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """(N, C) float points, (N,) non-decreasing cloud index → (N, out_channels) per-point features."""
        _check_inputs(points, batch_index, self.in_channels)
        if len(points) == 0:
            return points.new_zeros(0, self.out_channels)
        voxel_size = torch.tensor(self.voxel_size, dtype=points.dtype, device=points.device)
        with torch.no_grad():
            point_voxel, indices, shape, batch_size = voxelize_clouds(
                points, batch_index, voxel_size, multiple=2 ** (self.levels - 1)
            )
        xyz = points[:, :3]
        offset = xyz - (torch.floor(xyz / voxel_size) + 0.5) * voxel_size
        point_features = torch.cat([points, offset], dim=1)  # (N, C + 3)

        order = _lexsort_by_voxel(point_voxel, points.detach())
        counts = torch.bincount(point_voxel, minlength=len(indices))
        voxel_features = torch.segment_reduce(
            point_features[order], "mean", lengths=counts, axis=0, unsafe=True
        )

        x = self.stem(SparseConvTensor(voxel_features, indices, shape, batch_size))
        skips = []
        for i in range(self.levels):
            if i > 0:
                x = self.down[i - 1](x)
            x = self.encoder[i](x)
            skips.append(x)
        for i in range(self.levels - 2, -1, -1):
            up = self.up[i](x)
            x = up.replace_feature(torch.cat([up.features, skips[i].features], dim=1))
            x = self.decoder[i](x)

        out = x.features[point_voxel]
        if self.point_mlp is not None:
            out = torch.cat([out, self.point_mlp(point_features)], dim=1)
        return self.head(out)


class _Project(nn.Module):
    """Decoder level without blocks: ``Linear → BN → ReLU`` of the concatenated features."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(c_in, c_out, bias=False), _bn(c_out), nn.ReLU(inplace=True))

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        return x.replace_feature(self.mlp(x.features))
