"""Sparse 3D convolution with spconv 2.x's API: spconv's CUDA kernels on a GPU, exact ones on the CPU.

``SparseConvTensor``, ``SubMConv3d``, ``SparseConv3d``, ``SparseInverseConv3d`` and ``SparseSequential``
take spconv 2.3's constructor arguments and hold **spconv's weight layout** ``(C_out, kD, kH, kW, C_in)``
(its "KRSC"; bias ``(C_out,)``), so one ``state_dict`` loads into either library.

Backends (chosen per call from the features' device):

- **CUDA tensors** with spconv's CUDA build installed: the layer runs spconv's own module, sharing
  this module's parameters (rulebooks are then spconv's objects in ``indice_dict``).
- **CPU tensors**: our kernels (:mod:`perception.ops._sparse_rules`, :mod:`perception.ops._sparse_kernels`):
  float32 / float64, exact (no approximation: gather → GEMM → fixed-order sums) and deterministic
  for any thread count, with autograd for features, weight and bias. spconv 2.3.8's CPU build is
  not used: its backward asks for a CUDA stream (a one-line run-time patch makes it run; see
  ``benchmarks/sparse.py`` in the repository) and its CPU scatter-add races with more than one thread.

Geometry is spconv's (checked against ``torch.nn.functional.conv3d`` and spconv's CPU forward):

- ``SubMConv3d``: output sites = input sites, same rows, same order; odd kernel sizes only; the
  kernel is centred, ``stride`` and ``padding`` are accepted and ignored (as spconv does).
- ``SparseConv3d``: output grid ``(in + 2 padding - dilation (k - 1) - 1) // stride + 1`` per axis;
  output sites are those receiving at least one input, **sorted by (b, z, y, x)** (spconv's order
  is hash-dependent; compare index sets, not rows).
- ``SparseInverseConv3d``: the ``SparseConv3d`` with the same ``indice_key`` run backwards: its
  output is that convolution's input sites, rows in the same order, on the input grid.
- **Kernel volume 1** (``kernel_size=1`` submanifold or inverse, or ``SparseConv3d`` with stride 1)
  reproduces spconv 2.3's pointwise path bit for bit: ``out = features @ weight.reshape(C_in, C_out) + bias``.
  Note that this reads the stored ``(C_out, 1, 1, 1, C_in)`` weight as ``(C_in, C_out)`` (spconv
  issue #450), unlike every larger kernel; it is kept so that checkpoints and GPU/CPU results agree.
  Such layers store no rulebook under their ``indice_key``.

Rulebooks are cached in ``SparseConvTensor.indice_dict`` under ``indice_key``: a ``SubMConv3d`` reuses
an existing submanifold entry of the same key (kernel size, dilation, grid and row count must match,
else ``ValueError``); a ``SparseConv3d`` adds its entry (a key already present is an error, as in spconv);
a ``SparseInverseConv3d`` requires one. Output tensors get a shallow copy of the input's dict.

Input checks (``ValueError`` naming the argument): features ``(V, C)`` floating, indices ``(V, 4)`` int32
on the same device, ``spatial_shape`` three positive ints, ``batch_size`` ≥ 1; on the CPU also every
index in range and, when a rulebook is built, no duplicate sites. A layer checks that the features'
channels, dtype and device match its weight. Empty tensors (``V = 0``) are valid: every layer returns
``(0, C_out)`` features with ``(0, 4)`` indices on its output grid, and zero gradients.
``groups`` other than 1 raise ``ValueError`` (spconv has no grouped sparse convolution either).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from perception.ops._sparse_kernels import sparse_conv
from perception.ops._sparse_rules import (
    Rulebook,
    build_strided,
    build_submanifold,
    check_indices,
    conv_output_shape,
)

__all__ = [
    "SparseConv3d",
    "SparseConvTensor",
    "SparseInverseConv3d",
    "SparseModule",
    "SparseSequential",
    "SubMConv3d",
    "spconv_cuda_available",
]

Size3 = int | Sequence[int]
_CPU_DTYPES = (torch.float32, torch.float64)


@dataclass(eq=False)
class SparseConvTensor:
    """A batch of sparse voxel features, spconv's ``SparseConvTensor`` in shape and behaviour.

    Attributes:
        features: ``(V, C)`` floating features, one row per active voxel.
        indices: ``(V, 4)`` int32 ``[b, z, y, x]`` voxel sites, same device, no duplicates.
        spatial_shape: ``[D, H, W]`` grid size (z, y, x).
        batch_size: number of batch items; ``0 <= b < batch_size``.
        indice_dict: rulebooks cached by ``indice_key`` (filled by the convolution layers).
    """

    features: torch.Tensor
    indices: torch.Tensor
    spatial_shape: list[int]
    batch_size: int
    indice_dict: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f, idx = self.features, self.indices
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or not f.is_floating_point():
            raise ValueError(f"features: expected a (V, C) floating tensor, got {_describe(f)}")
        if not isinstance(idx, torch.Tensor) or idx.ndim != 2 or idx.shape[1] != 4:
            raise ValueError(f"indices: expected a (V, 4) [b, z, y, x] tensor, got {_describe(idx)}")
        if idx.dtype != torch.int32:
            raise ValueError(f"indices: expected dtype int32 (spconv's), got {idx.dtype}")
        if idx.device != f.device:
            raise ValueError(f"indices: on {idx.device} but features on {f.device}")
        if idx.shape[0] != f.shape[0]:
            raise ValueError(f"features: {f.shape[0]} rows but indices has {idx.shape[0]}")
        shape = list(self.spatial_shape)
        if len(shape) != 3 or any(int(s) != s or s <= 0 for s in shape):
            raise ValueError(
                f"spatial_shape: expected three positive ints [D, H, W], got {self.spatial_shape}"
            )
        self.spatial_shape = [int(s) for s in shape]
        if (
            isinstance(self.batch_size, bool)
            or int(self.batch_size) != self.batch_size
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size: expected an int >= 1, got {self.batch_size!r}")
        self.batch_size = int(self.batch_size)
        if idx.device.type == "cpu" and idx.shape[0]:
            check_indices(idx.contiguous(), self.spatial_shape, self.batch_size)

    @classmethod
    def _trusted(
        cls,
        features: torch.Tensor,
        indices: torch.Tensor,
        spatial_shape: list[int],
        batch_size: int,
        indice_dict: dict,
    ) -> SparseConvTensor:
        """Construct without the O(V) checks (for outputs of layers, whose indices are known good)."""
        out = cls.__new__(cls)
        out.features, out.indices, out.spatial_shape = features, indices, [int(s) for s in spatial_shape]
        out.batch_size, out.indice_dict = batch_size, indice_dict
        return out

    def replace_feature(self, features: torch.Tensor) -> SparseConvTensor:
        """The same sites (and the same ``indice_dict`` object) with new ``(V, C')`` features."""
        if (
            not isinstance(features, torch.Tensor)
            or features.ndim != 2
            or features.shape[0] != self.indices.shape[0]
        ):
            raise ValueError(
                f"features: expected ({self.indices.shape[0]}, C) rows, got {_describe(features)}"
            )
        return self._trusted(features, self.indices, self.spatial_shape, self.batch_size, self.indice_dict)

    def find_indice_pair(self, key: str | None) -> Any:
        """The rulebook cached under ``key``, or None (spconv's name)."""
        return None if key is None else self.indice_dict.get(key)

    def dense(self, channels_first: bool = True) -> torch.Tensor:
        """Scatter into a zero grid: ``(B, C, D, H, W)``, or ``(B, D, H, W, C)`` if not channels_first.

        Differentiable; inactive sites are 0.
        """
        f = self.features
        grid = f.new_zeros(self.batch_size, *self.spatial_shape, f.shape[1])
        idx = self.indices.long()
        grid = grid.index_put((idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]), f)
        return grid.permute(0, 4, 1, 2, 3).contiguous() if channels_first else grid

    def __repr__(self) -> str:
        return (
            f"SparseConvTensor(features={tuple(self.features.shape)} {self.features.dtype}, "
            f"spatial_shape={self.spatial_shape}, batch_size={self.batch_size}, "
            f"indice_keys={list(self.indice_dict)}, device={self.features.device})"
        )


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"shape {tuple(x.shape)} dtype {x.dtype}"
    return type(x).__name__


@functools.cache
def spconv_cuda_available() -> bool:
    """True when spconv's CUDA build is importable and a GPU is visible (the GPU backend's condition)."""
    if not torch.cuda.is_available():
        return False
    try:
        import spconv.pytorch  # noqa: F401
        from spconv.cppconstants import CPU_ONLY_BUILD
    except ImportError:
        return False
    return not CPU_ONLY_BUILD


def _triple(name: str, value: Size3, minimum: int) -> tuple[int, int, int]:
    t = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(t) != 3 or any(not isinstance(v, int) or v < minimum for v in t):
        raise ValueError(f"{name}: expected an int or three ints >= {minimum}, got {value!r}")
    return t  # type: ignore[return-value]


class SparseModule(nn.Module):
    """Marker base: :class:`SparseSequential` passes a whole :class:`SparseConvTensor` to these."""


class _SparseConvolution(SparseModule):
    """Shared machinery of the three layers: parameters, checks, backend choice, rulebook cache."""

    _spconv_class = ""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3,
        stride: Size3 = 1,
        padding: Size3 = 0,
        dilation: Size3 = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        subm: bool = False,
        inverse: bool = False,
        indice_key: str | None = None,
        spconv_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"groups: only groups=1 is supported (as in spconv), got {groups}")
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _triple("kernel_size", kernel_size, 1)
        self.stride = _triple("stride", stride, 1)
        self.padding = _triple("padding", padding, 0)
        self.dilation = _triple("dilation", dilation, 1)
        self.groups, self.subm, self.inverse, self.indice_key = groups, subm, inverse, indice_key
        if subm and any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size: submanifold convolution needs odd sizes, got {self.kernel_size}")
        if inverse and indice_key is None:
            raise ValueError("indice_key: SparseInverseConv3d needs the indice_key of a SparseConv3d")
        volume = math.prod(self.kernel_size)
        self.pointwise = volume == 1 and (subm or inverse or self.stride == (1, 1, 1))
        if self.pointwise and not (subm or inverse) and self.padding != (0, 0, 0):
            raise ValueError(
                f"padding: must be 0 for a kernel_size=1, stride=1 convolution, got {self.padding}"
            )
        self._spconv_kwargs = spconv_kwargs or {}
        self.weight = nn.Parameter(torch.empty(out_channels, *self.kernel_size, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """spconv's initialisation: weight and bias uniform in ±1/sqrt(C_in · kD · kH · kW)."""
        bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if not self.inverse:
            s += f", stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
        return s + f", bias={self.bias is not None}, indice_key={self.indice_key!r}"

    # ---------------------------------------------------------------------------------------------

    def forward(self, input: SparseConvTensor) -> SparseConvTensor:
        """Convolve ``input`` (``(V, C_in)`` features) → a new tensor with ``(V', C_out)`` features."""
        if not isinstance(input, SparseConvTensor):
            raise ValueError(
                f"input: expected a perception.ops.sparse.SparseConvTensor, got {type(input).__name__}"
            )
        f = input.features
        if f.shape[1] != self.in_channels:
            raise ValueError(
                f"features: {f.shape[1]} channels but the layer expects in_channels={self.in_channels}"
            )
        if f.device != self.weight.device:
            raise ValueError(f"features: on {f.device} but weight on {self.weight.device}")
        if f.dtype != self.weight.dtype:
            raise ValueError(f"features: dtype {f.dtype} does not match weight dtype {self.weight.dtype}")
        if f.device.type == "cuda":
            if not spconv_cuda_available():
                raise RuntimeError("CUDA features need spconv's CUDA build (pip install spconv-cu120)")
            return self._forward_spconv(input)
        if f.device.type != "cpu":
            raise ValueError(f"features: device {f.device} is not supported (CPU, or CUDA with spconv)")
        if f.dtype not in _CPU_DTYPES:
            raise ValueError(f"features: dtype {f.dtype} is not supported on the CPU (float32, float64)")
        return self._forward_cpu(input)

    def _forward_cpu(self, x: SparseConvTensor) -> SparseConvTensor:
        if self.pointwise:  # spconv's kernel-volume-1 path, weight read as (C_in, C_out); see module doc
            w = self.weight.reshape(self.in_channels, self.out_channels)
            out = torch.addmm(self.bias, x.features, w) if self.bias is not None else x.features @ w
            shape = x.spatial_shape if (self.subm or self.inverse) else self._out_shape(x.spatial_shape)
            return SparseConvTensor._trusted(out, x.indices, shape, x.batch_size, dict(x.indice_dict))
        indice_dict = dict(x.indice_dict)
        rules = self._rulebook(x, indice_dict)
        if self.inverse:
            rules = rules.transposed()
        out = sparse_conv(x.features, self.weight, self.bias, rules)
        return SparseConvTensor._trusted(
            out, rules.out_indices, rules.out_spatial_shape, x.batch_size, indice_dict
        )

    def _out_shape(self, shape: list[int]) -> list[int]:
        return conv_output_shape(shape, self.kernel_size, self.stride, self.padding, self.dilation)

    def _rulebook(self, x: SparseConvTensor, indice_dict: dict) -> Rulebook:
        key = self.indice_key
        cached = indice_dict.get(key) if key is not None else None
        if cached is not None and not isinstance(cached, Rulebook):
            raise ValueError(
                f"indice_key: {key!r} holds a rulebook of another backend ({type(cached).__name__})"
            )
        name = type(self).__name__
        if self.inverse:
            if cached is None or cached.subm:
                raise ValueError(
                    f"indice_key: {name} needs a SparseConv3d rulebook under {key!r}, found {cached!r}"
                )
            if cached.kernel_size != self.kernel_size:
                raise ValueError(
                    f"kernel_size: {self.kernel_size} differs from {key!r}'s {cached.kernel_size}"
                )
            if x.spatial_shape != cached.out_spatial_shape or x.indices.shape[0] != cached.num_out:
                raise ValueError(
                    f"input: {name} expects the {cached.num_out} sites on grid {cached.out_spatial_shape} "
                    f"made by {key!r}, got {x.indices.shape[0]} on {x.spatial_shape}"
                )
            return cached
        if self.subm and cached is not None:
            if not cached.subm or cached.kernel_size != self.kernel_size or cached.dilation != self.dilation:
                raise ValueError(f"indice_key: {key!r} was built for another kernel: {_geometry(cached)}")
            if x.spatial_shape != cached.spatial_shape or x.indices.shape[0] != cached.num_in:
                raise ValueError(
                    f"input: {key!r} was built for {cached.num_in} sites on {cached.spatial_shape}, "
                    f"got {x.indices.shape[0]} on {x.spatial_shape}"
                )
            return cached
        if cached is not None:
            raise ValueError(
                f"indice_key: {key!r} already exists in this tensor; only SubMConv3d reuses a key"
            )
        indices = x.indices.contiguous()
        if self.subm:
            rules = build_submanifold(indices, x.spatial_shape, x.batch_size, self.kernel_size, self.dilation)
        else:
            rules = build_strided(
                indices,
                x.spatial_shape,
                x.batch_size,
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
            )
        if key is not None:
            indice_dict[key] = rules
        return rules

    def _forward_spconv(self, x: SparseConvTensor) -> SparseConvTensor:
        """Run spconv's own module (CUDA build) on this module's parameters. Untested without a GPU."""
        import spconv.pytorch as spconv

        module = self.__dict__.get("_spconv_module")
        if module is None:
            module = self._make_spconv_module(spconv)
            self.__dict__["_spconv_module"] = module  # not a submodule: stays out of state_dict / .to()
        module._parameters["weight"] = self.weight
        module._parameters["bias"] = self.bias
        module.train(self.training)
        sp_in = spconv.SparseConvTensor(
            x.features, x.indices, x.spatial_shape, x.batch_size, indice_dict=dict(x.indice_dict)
        )
        y = module(sp_in)
        return SparseConvTensor._trusted(
            y.features, y.indices, list(y.spatial_shape), x.batch_size, y.indice_dict
        )

    def _make_spconv_module(self, spconv: Any) -> nn.Module:
        cls = getattr(spconv, self._spconv_class)
        common = {"bias": self.bias is not None, "indice_key": self.indice_key, **self._spconv_kwargs}
        if self.inverse:
            return cls(self.in_channels, self.out_channels, self.kernel_size, **common)
        return cls(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            **common,
        )


def _geometry(r: Rulebook) -> str:
    return f"subm={r.subm}, kernel_size={r.kernel_size}, stride={r.stride}, dilation={r.dilation}"


class SubMConv3d(_SparseConvolution):
    """Submanifold 3D convolution: outputs only at the input sites (spconv's ``SubMConv3d``).

    ``weight`` ``(C_out, kD, kH, kW, C_in)``, ``bias`` ``(C_out,)``; odd kernel sizes; ``stride`` and
    ``padding`` are accepted for spconv compatibility and ignored. Output rows = input rows.
    ``algo``, ``fp32_accum``, ``large_kernel_fast_algo`` and ``name`` are passed to spconv on a GPU.
    """

    _spconv_class = "SubMConv3d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3,
        stride: Size3 = 1,
        padding: Size3 = 0,
        dilation: Size3 = 1,
        groups: int = 1,
        bias: bool = True,
        indice_key: str | None = None,
        algo: Any = None,
        fp32_accum: bool | None = None,
        large_kernel_fast_algo: bool = False,
        name: str | None = None,
    ) -> None:
        extra = {
            "algo": algo,
            "fp32_accum": fp32_accum,
            "large_kernel_fast_algo": large_kernel_fast_algo,
            "name": name,
        }
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            subm=True, indice_key=indice_key, spconv_kwargs=extra,
        )  # fmt: skip


class SparseConv3d(_SparseConvolution):
    """Regular (strided) sparse 3D convolution (spconv's ``SparseConv3d``).

    Output grid ``(in + 2 padding - dilation (k - 1) - 1) // stride + 1`` per axis; output sites are
    the grid cells receiving at least one input, sorted by ``(b, z, y, x)``. With an ``indice_key``
    the rulebook is kept for a :class:`SparseInverseConv3d`. Weight ``(C_out, kD, kH, kW, C_in)``.
    """

    _spconv_class = "SparseConv3d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3,
        stride: Size3 = 1,
        padding: Size3 = 0,
        dilation: Size3 = 1,
        groups: int = 1,
        bias: bool = True,
        indice_key: str | None = None,
        algo: Any = None,
        fp32_accum: bool | None = None,
        record_voxel_count: bool = False,
        large_kernel_fast_algo: bool = False,
        name: str | None = None,
    ) -> None:
        extra = {
            "algo": algo,
            "fp32_accum": fp32_accum,
            "record_voxel_count": record_voxel_count,
            "large_kernel_fast_algo": large_kernel_fast_algo,
            "name": name,
        }
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            indice_key=indice_key, spconv_kwargs=extra,
        )  # fmt: skip


class SparseInverseConv3d(_SparseConvolution):
    """Inverse of the :class:`SparseConv3d` stored under ``indice_key`` (spconv's ``SparseInverseConv3d``).

    Output = that convolution's input sites (same rows, same grid); values are ``conv_transpose3d``
    of the input restricted to those sites. ``kernel_size`` must equal the forward convolution's.
    Weight ``(C_out, kD, kH, kW, C_in)`` with this layer's own in / out channels.
    """

    _spconv_class = "SparseInverseConv3d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size3,
        indice_key: str,
        bias: bool = True,
        algo: Any = None,
        fp32_accum: bool | None = None,
        large_kernel_fast_algo: bool = False,
        name: str | None = None,
    ) -> None:
        extra = {
            "algo": algo,
            "fp32_accum": fp32_accum,
            "large_kernel_fast_algo": large_kernel_fast_algo,
            "name": name,
        }
        super().__init__(
            in_channels, out_channels, kernel_size, bias=bias, inverse=True, indice_key=indice_key,
            spconv_kwargs=extra,
        )  # fmt: skip


class SparseSequential(SparseModule):
    """spconv's ``SparseSequential``: sparse modules get the tensor, other modules its ``.features``.

    Built like ``nn.Sequential`` (modules, or one ``OrderedDict``, or keyword modules). Plain modules
    (``BatchNorm1d``, ``ReLU``, ...) are skipped on empty tensors (``V = 0``), as spconv does.
    """

    def __init__(self, *args: nn.Module, **kwargs: nn.Module) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)
        for key, module in kwargs.items():
            if key in self._modules:
                raise ValueError(f"kwargs: module name {key!r} already used")
            self.add_module(key, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, i: int) -> nn.Module:
        return list(self._modules.values())[i]

    def add(self, module: nn.Module, name: str | None = None) -> None:
        """Append ``module`` (named by its position unless ``name`` is given)."""
        self.add_module(str(len(self._modules)) if name is None else name, module)

    def forward(self, input: SparseConvTensor | torch.Tensor) -> SparseConvTensor | torch.Tensor:
        for module in self._modules.values():
            if isinstance(module, SparseModule) or not isinstance(input, SparseConvTensor):
                input = module(input)
            elif input.indices.shape[0]:
                input = input.replace_feature(module(input.features))
        return input
