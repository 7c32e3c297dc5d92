"""The detector's inference path: the same numbers as the modules' own layers, computed with fewer passes.

In eval mode with gradients off (validation, prediction, the benchmarks: :func:`fast_path`) some
modules compute their outputs another way: :class:`~perception.models.heads.CenterHead` runs its five
branches as one stacked convolution chain, :class:`~perception.models.encoders.PVTEncoder`'s attention
runs as fused segment kernels (:mod:`perception.ops.segments`), and
:class:`~perception.models.heads.PointRefinementHead` pushes each RoI's distinct points once through its
MLP. Each rewrite computes every output element with the same floating-point operations in the same
order as the layers it replaces, float32 or under bf16 autocast, so the inference path gives their
bits (the tests compare the two paths with ``torch.equal``). Training and anything that needs
gradients take the modules' own layers; parameters and checkpoints are the same.
:func:`reference_path` turns the inference path off, for the tests and the benchmark's reference.

BatchNorms stay separate steps (:class:`LayerWeights`): folding one into the layer before it changes
the rounding (under bf16 autocast by a bf16 rounding of the weights, enough to move a box's printed
digits), and on this CPU it saved nothing measurable (oneDNN's convolution dominates; a BatchNorm on
a channels-last map is one cheap pass).

:class:`WeightCache` keeps what a module derives from its weights (stacked kernels, copies in autocast's
dtype) and derives it again when any parameter or buffer of the module has changed: an optimiser step
or ``load_state_dict`` (in-place updates bump a tensor's version), a ``.to()`` (new storage). Changes
made through ``tensor.data`` are not seen (they bypass the version counter); nothing here makes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LayerWeights",
    "WeightCache",
    "compute_dtype",
    "conv_bn_relu_blocks",
    "fast_path",
    "layer_weights",
    "reference_path",
]

_reference_depth = 0


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Within this context every module runs its own layers (the reference the tests compare to)."""
    global _reference_depth
    _reference_depth += 1
    try:
        yield
    finally:
        _reference_depth -= 1


def fast_path(module: nn.Module) -> bool:
    """Whether ``module`` takes the inference path: eval mode, gradients off, not within
    :func:`reference_path`, and not while ``torch.compile`` traces it (the compiler gets the modules'
    own layers)."""
    return (
        not module.training
        and not torch.is_grad_enabled()
        and _reference_depth == 0
        and not torch.compiler.is_compiling()
    )


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution or linear layer computes in for input ``x``: autocast's, else ``x``'s."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def _packing_available() -> bool:
    mkldnn = torch.ops.mkldnn
    try:
        return torch.backends.mkldnn.is_available() and all(
            hasattr(mkldnn, op) for op in ("_reorder_convolution_weight", "_convolution_pointwise")
        )
    except (AttributeError, RuntimeError):  # a build without oneDNN's ops
        return False


_PACKING = _packing_available()


def _channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is a (B, C, H, W) map laid out channels-last with exactly its strides."""
    if x.ndim != 4:
        return False
    _, c, h, w = x.shape
    return x.stride() == (h * w * c, 1, w * c, c)


@dataclass(frozen=True)
class LayerWeights:
    """A convolution's or linear layer's weights in its compute dtype, and the eval-mode BatchNorm
    after it, for the inference path.

    Attributes:
        weight: the layer's weight in the compute dtype (what autocast would cast it to).
        bias: (C_out,) in the compute dtype, or None.
        norm: the BatchNorm's ``(running_mean, running_var, weight, bias, eps)``, or None.
        stride, padding, groups: a convolution's (square kernels, no dilation).
        packed: a 2-d convolution's weight reordered once for oneDNN (:meth:`packed_for`), or None.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    norm: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, float] | None
    stride: int = 1
    padding: int = 1
    groups: int = 1
    packed: torch.Tensor | None = None

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        """The layer's output ``y`` through its BatchNorm (eval mode, the module's arithmetic), or ``y``."""
        if self.norm is None:
            return y
        mean, var, weight, bias, eps = self.norm
        return F.batch_norm(y, mean, var, weight, bias, False, 0.0, eps)

    def conv2d(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` (no BatchNorm): ``F.conv2d`` with the layer's weights, or, for a
        channels-last CPU map in the weights' dtype, oneDNN's convolution on the packed weight — the
        primitive ``F.conv2d`` runs, less reordering the weight on every call: the same bits."""
        p, s = [self.padding] * 2, [self.stride] * 2
        if (
            self.packed is not None
            and x.device.type == "cpu"
            and x.dtype == self.packed.dtype
            and _channels_last(x)
        ):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, p, s, [1, 1], self.groups, "none", [], ""
            )
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)

    def packed_for(self, input_shape: Sequence[int]) -> LayerWeights:
        """This 2-d convolution with its weight packed for oneDNN and (B, C, H, W) inputs of
        ``input_shape`` (where this build has the ops; other shapes still compute right)."""
        if not _PACKING or self.weight.ndim != 4 or self.weight.device.type != "cpu":
            return self
        if self.weight.dtype not in (torch.float32, torch.bfloat16):
            return self
        p, s = [self.padding] * 2, [self.stride] * 2
        try:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.weight, p, s, [1, 1], self.groups, list(input_shape)
            )
        except RuntimeError:  # oneDNN declined: the plain convolution it is
            return self
        return dataclasses.replace(self, packed=packed)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """(B, C_out, H', W') of this 2-d convolution (3 × 3 or any square kernel) for ``input_shape``."""
        b, _, h, w = input_shape
        k = self.weight.shape[-1]
        return (
            b,
            self.weight.shape[0],
            (h + 2 * self.padding - k) // self.stride + 1,
            (w + 2 * self.padding - k) // self.stride + 1,
        )

    @staticmethod
    def stack(layers: Sequence[LayerWeights]) -> LayerWeights:
        """Layers side by side, their outputs concatenated: weights, biases and BatchNorms stacked
        along the output channels (a BatchNorm is per channel, so each keeps its arithmetic)."""
        if (
            len({layer.norm is None for layer in layers}) != 1
            or len({layer.bias is None for layer in layers}) != 1
            or len({(layer.stride, layer.padding, layer.groups) for layer in layers}) != 1
        ):
            raise ValueError(
                "stacked layers must all have a BatchNorm or none, a bias or none, and one stride, "
                "padding and grouping"
            )
        weight = torch.cat([layer.weight for layer in layers])
        bias = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers])
        norm = None
        if layers[0].norm is not None:
            eps = {layer.norm[4] for layer in layers}
            if len(eps) != 1:
                raise ValueError(f"stacked BatchNorms must share eps, got {sorted(eps)}")
            parts = list(zip(*(layer.norm[:4] for layer in layers), strict=True))
            mean, var, scale, shift = (
                None if any(t is None for t in part) else torch.cat(part) for part in parts
            )
            norm = (mean, var, scale, shift, eps.pop())
        first = layers[0]
        return LayerWeights(weight, bias, norm, first.stride, first.padding, first.groups)


def layer_weights(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    norm: nn.BatchNorm1d | nn.BatchNorm2d | None,
    dtype: torch.dtype,
    conv: nn.Conv2d | None = None,
) -> LayerWeights:
    """A layer's weight and bias cast to ``dtype`` (as autocast casts them) and its BatchNorm; with
    ``conv``, that convolution's stride, padding and groups (square, undilated)."""
    if norm is not None and (norm.running_mean is None or norm.running_var is None):
        raise ValueError("the inference path needs BatchNorms with running statistics")
    with torch.no_grad():
        weight = weight.detach().to(dtype)
        kept = None
        if norm is not None:
            kept = (norm.running_mean, norm.running_var, norm.weight, norm.bias, float(norm.eps))
        bias = None if bias is None else bias.detach().to(dtype)
        if conv is None:
            return LayerWeights(weight, bias, kept)
        if len(set(conv.stride)) != 1 or len(set(conv.padding)) != 1 or set(conv.dilation) != {1}:
            raise ValueError(f"the inference path takes square, undilated convolutions, got {conv}")
        return LayerWeights(weight, bias, kept, int(conv.stride[0]), int(conv.padding[0]), int(conv.groups))


def conv_bn_relu_blocks(layers: Sequence[nn.Module], last_conv: bool = False) -> bool:
    """Whether ``layers`` are ``Conv2d → BatchNorm2d (running statistics) → ReLU`` blocks (then one
    ``Conv2d`` if ``last_conv``): the structure the inference paths rebuild. A module whose layers
    were changed after construction (fused, replaced) takes its own layers instead."""
    layers = list(layers)
    tail = [layers.pop()] if last_conv and layers else []
    if len(layers) % 3 or (last_conv and not isinstance(tail[0] if tail else None, nn.Conv2d)):
        return False
    for conv, norm, relu in zip(layers[0::3], layers[1::3], layers[2::3], strict=True):
        if not (
            isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
        ):
            return False
        if norm.running_mean is None or norm.running_var is None:
            return False
    return True


class WeightCache:
    """Tensors derived from a module's weights, derived again when those weights change.

    The key is every parameter's and buffer's storage and version, plus what the caller adds (the
    compute dtype, say). Built with gradients off.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Any = None

    def get(self, module: nn.Module, build: Callable[[], Any], *extra: Any) -> Any:
        """The cached ``build()`` for ``module``'s current weights and ``extra``."""
        try:
            tensors = itertools.chain(module.parameters(), module.buffers())
            key = (extra, tuple((t.data_ptr(), t._version) for t in tensors))
        except RuntimeError:  # inference tensors carry no version: derive every time
            key = None
        if key is None or key != self._key:
            with torch.no_grad():
                value = build()
            if key is None:
                return value
            self._key, self._value = key, value
        return self._value
