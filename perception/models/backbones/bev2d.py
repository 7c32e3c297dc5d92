"""2D BEV backbone with multi-scale fusion (SECOND / PointPillars' RPN).

Stage i: a 3×3 convolution with stride ``strides[i]`` then ``blocks[i]`` 3×3 convolutions, each
Conv → BatchNorm2d → ReLU. Each stage's output is brought to a common stride by a
``ConvTranspose2d`` (kernel = stride = ``upsample_strides[i]``; 1 is a 1×1 convolution) → BN → ReLU,
and the results are concatenated: (B, Σ upsample_channels, H / s, W / s) with
``s = prod(strides[:i + 1]) / upsample_strides[i]``, the same for every stage.

Odd sizes: a stride-2 convolution maps n cells to ceil(n / 2), while upsampling multiplies, so deeper
branches can come back a cell larger (``u · ceil(n / (u s)) >= ceil(n / s)``); every branch is cropped
to ceil(n / s) cells (cell ``j`` of a transposed convolution covers cells ``[u j, u j + u)``, so cropping
at the far edge keeps the alignment).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from perception.models.inference_path import (
    LayerWeights,
    WeightCache,
    compute_dtype,
    conv_bn_relu_blocks,
    fast_path,
    layer_weights,
)

__all__ = ["BEVBackbone"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    ]


class BEVBackbone(nn.Module):
    """Dense BEV features → multi-scale fused BEV features.

    Args:
        in_channels: channels of the input map (a scatter's C, or a sparse backbone's C·D').
        channels: width of each stage (SECOND: 128, 256; PointPillars: 64, 128, 256).
        blocks: extra 3×3 convolutions per stage after the strided one (PointPillars: 3, 5, 5).
        strides: stride of each stage's first convolution (PointPillars: 2, 2, 2).
        upsample_strides: per stage, the factor its output is upsampled by (PointPillars: 1, 2, 4).
        upsample_channels: per stage, the channels after upsampling (PointPillars: 128, 128, 128).

    Attributes:
        out_channels: Σ ``upsample_channels``.
        out_stride: the output's stride relative to the input map.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 256),
        blocks: Sequence[int] = (3, 5, 5),
        strides: Sequence[int] = (1, 2, 2),
        upsample_strides: Sequence[int] = (1, 2, 4),
        upsample_channels: Sequence[int] = (128, 128, 128),
    ) -> None:
        super().__init__()
        n = len(channels)
        if not (len(blocks) == len(strides) == len(upsample_strides) == len(upsample_channels) == n >= 1):
            raise ValueError(
                "channels, blocks, strides, upsample_strides and upsample_channels need one entry per stage"
            )
        total, common = 1, set()
        for s, u in zip(strides, upsample_strides, strict=True):
            total *= s
            if u < 1 or total % u:
                raise ValueError(
                    f"upsample_strides {list(upsample_strides)} must be >= 1 and divide the stages' "
                    f"strides {list(strides)} cumulated"
                )
            common.add(total // u)
        if len(common) != 1:
            raise ValueError(
                f"stages must upsample to one common stride; strides {list(strides)} with upsample_strides "
                f"{list(upsample_strides)} give {sorted(common)}"
            )
        self.out_stride = common.pop()
        self.out_channels = int(sum(upsample_channels))
        stages, ups = [], []
        c_in = in_channels
        for c, b, s, u, cu in zip(
            channels, blocks, strides, upsample_strides, upsample_channels, strict=True
        ):
            layers = _conv_bn_relu(c_in, c, s)
            for _ in range(b):
                layers += _conv_bn_relu(c, c)
            stages.append(nn.Sequential(*layers))
            ups.append(
                nn.Sequential(
                    nn.ConvTranspose2d(c, cu, u, stride=u, bias=False),
                    nn.BatchNorm2d(cu, eps=1e-3, momentum=0.01),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        self.stages = nn.ModuleList(stages)
        self.upsample = nn.ModuleList(ups)
        self._packed = WeightCache()

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → (B, out_channels, ceil(H / out_stride), ceil(W / out_stride)).

        On the inference path (:func:`~perception.models.inference_path.fast_path`) the stages'
        convolutions run on weights packed once for oneDNN (:meth:`_packed_stages`): the same bits.
        """
        outs = []
        plan = None
        if fast_path(self):
            dtype = compute_dtype(bev)
            key = (dtype, tuple(bev.shape))
            plan = self._packed.get(self, lambda: self._packed_stages(*key), *key)
        if plan is not None:
            x = bev.to(dtype)
            for stage, up in zip(plan, self.upsample, strict=True):
                for layer in stage:
                    x = layer.normalize(layer.conv2d(x)).relu_()
                outs.append(up(x))
        else:
            x = bev
            for stage, up in zip(self.stages, self.upsample, strict=True):
                x = stage(x)
                outs.append(up(x))
        h, w = -(-bev.shape[2] // self.out_stride), -(-bev.shape[3] // self.out_stride)  # ceil
        return torch.cat([o[:, :, :h, :w] for o in outs], dim=1)

    def _packed_stages(
        self, dtype: torch.dtype, input_shape: tuple[int, ...]
    ) -> list[list[LayerWeights]] | None:
        """Each stage's Conv → BatchNorm pairs for computing in ``dtype``, the convolutions packed for
        the shapes that reach them from an input of ``input_shape``; None for stages changed since
        construction (the module then runs its own layers)."""
        if not all(conv_bn_relu_blocks(stage) for stage in self.stages):
            return None
        stages, shape = [], input_shape
        for stage in self.stages:
            layers = list(stage)
            packed = []
            for conv, norm in zip(layers[0::3], layers[1::3], strict=True):
                layer = layer_weights(conv.weight, conv.bias, norm, dtype, conv)
                packed.append(layer.packed_for(shape))
                shape = layer.output_shape(shape)
            stages.append(packed)
        return stages
