"""SECOND-style sparse 3D backbone: submanifold blocks and strided sparse downsampling, then BEV.

Stage 0 runs ``blocks[0]`` submanifold 3×3×3 convolutions at the input resolution; each later stage i
first downsamples with a strided ``SparseConv3d`` (kernel 3, padding 1, ``strides[i - 1]``) and then
runs ``blocks[i] - 1`` submanifold convolutions. Every convolution is followed by BatchNorm1d and
ReLU. Optionally a last ``SparseConv3d`` with kernel (3, 1, 1), stride (2, 1, 1) compresses z (SECOND's
``conv_out``). The result is made dense and its z slices stacked into channels:
(B, C·D', H', W'), channel ``c * D' + z``.

With kernel 3 and padding 1 a stride-s axis of n cells becomes ``(n - 1) // s + 1`` = ceil(n / s).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from perception.ops.sparse import SparseConv3d, SparseConvTensor, SparseSequential, SubMConv3d
from perception.structures import VoxelFeatures

__all__ = ["SparseBackbone3d"]

Stride3 = int | Sequence[int]


def _triple(s: Stride3) -> tuple[int, int, int]:
    t = (s, s, s) if isinstance(s, int) else tuple(int(v) for v in s)
    if len(t) != 3 or min(t) < 1:
        raise ValueError(f"a stride must be an int or three ints >= 1 (z, y, x), got {s!r}")
    return t  # type: ignore[return-value]


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01), nn.ReLU(inplace=True)]


class SparseBackbone3d(nn.Module):
    """Sparse voxel features → dense BEV feature map (SECOND's ``VoxelBackBone8x`` in shape).

    Args:
        in_channels: the voxel features' width.
        channels: width of each stage (SECOND: 16, 32, 64, 64).
        blocks: convolutions per stage (stage 0: submanifold only; later: 1 strided + the rest
            submanifold). SECOND: 1, 3, 3, 3.
        strides: (z, y, x) stride of each downsampling, ``len(channels) - 1`` of them.
        out_channels: if given, a final z-compressing ``SparseConv3d`` (kernel (3, 1, 1), stride
            (2, 1, 1), no padding) to this width, as SECOND's ``conv_out`` (128).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (16, 32, 64, 64),
        blocks: Sequence[int] = (1, 2, 2, 2),
        strides: Sequence[Stride3] = (2, 2, 2),
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if len(blocks) != len(channels) or len(strides) != len(channels) - 1:
            raise ValueError(
                f"need len(blocks) == len(channels) == len(strides) + 1, got {len(blocks)}, "
                f"{len(channels)}, {len(strides)}"
            )
        if min(blocks) < 1:
            raise ValueError(f"every stage needs at least one convolution, got blocks={list(blocks)}")
        self.strides = [_triple(s) for s in strides]
        stages: list[SparseSequential] = []
        c_in = in_channels
        for i, (c, n) in enumerate(zip(channels, blocks, strict=True)):
            layers: list[nn.Module] = []
            if i > 0:
                layers += [
                    SparseConv3d(
                        c_in, c, 3, self.strides[i - 1], padding=1, bias=False, indice_key=f"down{i}"
                    ),
                    *_norm_act(c),
                ]
                n -= 1
                c_in = c
            for _ in range(n):
                layers += [
                    SubMConv3d(c_in, c, 3, padding=1, bias=False, indice_key=f"subm{i}"),
                    *_norm_act(c),
                ]
                c_in = c
            stages.append(SparseSequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.conv_out = None
        if out_channels is not None:
            self.conv_out = SparseSequential(
                SparseConv3d(
                    c_in, out_channels, (3, 1, 1), (2, 1, 1), padding=0, bias=False, indice_key="out"
                ),
                *_norm_act(out_channels),
            )
            c_in = out_channels
        self.final_channels = c_in

    @property
    def out_stride(self) -> int:
        """The total stride in x (and y, when equal): BEV cells per output cell."""
        stride = 1
        for s in self.strides:
            stride *= s[2]
        return stride

    def output_shape(self, spatial_shape: Sequence[int]) -> tuple[int, int, int]:
        """The BEV map's ``(C·D', H', W')`` for an input grid ``(D, H, W)`` (for configuring the 2D backbone)."""
        d, h, w = (int(v) for v in spatial_shape)
        for sz, sy, sx in self.strides:
            d, h, w = (d - 1) // sz + 1, (h - 1) // sy + 1, (w - 1) // sx + 1
        if self.conv_out is not None:
            d = (d - 3) // 2 + 1
        return self.final_channels * d, h, w

    def forward(self, voxels: VoxelFeatures | SparseConvTensor) -> torch.Tensor:
        """(V, C_in) voxel features on the ``(D, H, W)`` grid → (B, C·D', H', W') float BEV map."""
        x = voxels.to_sparse() if isinstance(voxels, VoxelFeatures) else voxels
        for stage in self.stages:
            x = stage(x)
        if self.conv_out is not None:
            x = self.conv_out(x)
        dense = x.dense()  # (B, C, D', H', W')
        b, c, d, h, w = dense.shape
        return dense.reshape(b, c * d, h, w)
