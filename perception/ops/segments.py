"""CPU kernels over segments (runs of consecutive rows): the max of each run, PointPillars' decoration,
and softmax attention of one query per run over the run's rows.

The encoders group points by voxel so that each voxel's points are one run of rows
(:mod:`perception.models.encoders.grouping`). ``torch.segment_reduce`` and friends reduce such runs on
any device, but on the CPU they take a pass over the rows per step and are slow for wide rows; these
numba kernels compute the same numbers, bit for bit, in fewer passes. Other devices, anything that
needs gradients, and anything ``torch.compile`` traces keep the torch ops.

- :func:`segment_max`: element-wise max of each run, ``torch.segment_reduce(x, "max", ...)``'s bits (a
  max picks one of its inputs; NaN propagates); bfloat16 compared as float32 and moved as bits.
- :func:`pillar_decoration`: ``[points, xyz - run mean, xyz - run centre]`` with ``segment_reduce``'s
  float32 mean (the run's sum in order, divided by its length).
- :func:`segment_attention`: for each run and head, ``Σ_i softmax_i(<q, k_i> / sqrt(d)) v_i`` with the
  arithmetic of :func:`perception.models.encoders.pvt.segment_attention`: the logits in the inputs'
  precision (bfloat16 inputs: each product and the sum rounded to bfloat16, as the eager ops round
  them), their d products summed in the order torch sums a row (eight interleaved partial sums, then
  in order; the same bits for d = 16, the quickstart's, and a float32 rounding at most otherwise);
  the exponentials by torch's own ``exp``; the softmax and the weighted sum in float32, point by
  point in run order. One kernel before the ``exp``, one after, the keys and values read in place.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

__all__ = ["pillar_decoration", "segment_attention", "segment_max"]


@numba.njit(cache=True, nogil=True)
def _segment_max_kernel(x, lengths):  # pragma: no cover - numba
    """(N, C) float32 / float64, or bfloat16 bits as uint16, (S,) run lengths → (S, C) the max of each
    run and column, as stored in ``x`` (NaN wins, as in torch)."""
    out = np.empty((lengths.shape[0], x.shape[1]), x.dtype)
    best = np.empty(x.shape[1], np.float64)
    start = 0
    for s in range(lengths.shape[0]):
        for c in range(x.shape[1]):
            out[s, c] = x[start, c]
            best[c] = _as_float(x[start, c])
        for i in range(start + 1, start + lengths[s]):
            for c in range(x.shape[1]):
                y = _as_float(x[i, c])
                if y > best[c] or y != y:
                    best[c] = y
                    out[s, c] = x[i, c]
        start += lengths[s]
    return out


def segment_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Element-wise max over each run of rows: ``torch.segment_reduce(x, "max", lengths=lengths)``.

    Args:
        x: (N, ...) float, runs of consecutive rows.
        lengths: (S,) int, each run's rows (>= 1), summing to N.

    Returns:
        (S, ...) in ``x``'s dtype. CPU tensors without gradients go through one numba pass; the
        rest (and anything ``torch.compile`` traces) through ``torch.segment_reduce``.
    """
    cpu = x.device.type == "cpu" and lengths.device.type == "cpu" and not torch.compiler.is_compiling()
    if not cpu or (x.requires_grad and torch.is_grad_enabled()) or x.ndim == 0 or not x.is_floating_point():
        return torch.segment_reduce(x, "max", lengths=lengths, axis=0, unsafe=True)
    if x.shape[0] == 0 or lengths.numel() == 0:
        return torch.segment_reduce(x, "max", lengths=lengths, axis=0, unsafe=True)
    rows = x.detach().reshape(x.shape[0], -1).contiguous()
    runs = lengths.to(torch.int64).contiguous().numpy()
    if x.dtype == torch.bfloat16:  # compared as float32, moved as bits
        out = torch.from_numpy(
            _segment_max_kernel(rows.view(torch.int16).numpy().view(np.uint16), runs).view(np.int16)
        )
        out = out.view(torch.bfloat16)
    elif x.dtype == torch.float16:
        out = torch.from_numpy(_segment_max_kernel(rows.float().numpy(), runs)).half()
    else:
        out = torch.from_numpy(_segment_max_kernel(rows.numpy(), runs))
    return out.reshape(lengths.shape[0], *x.shape[1:])


@numba.njit(cache=True, nogil=True)
def _decoration_kernel(points, lengths, centres):  # pragma: no cover - numba
    """(N, C) float32 points in runs, (S,) lengths, (S, 3) centres → (N, C + 6) float32."""
    n, c = points.shape
    out = np.empty((n, c + 6), np.float32)
    start = 0
    for s in range(lengths.shape[0]):
        end = start + lengths[s]
        for a in range(3):
            total = np.float32(0.0)
            for i in range(start, end):
                total += points[i, a]
            mean = total / np.float32(lengths[s])
            for i in range(start, end):
                out[i, c + a] = points[i, a] - mean
                out[i, c + 3 + a] = points[i, a] - centres[s, a]
        for i in range(start, end):
            for a in range(c):
                out[i, a] = points[i, a]
        start = end
    return out


def pillar_decoration(points: torch.Tensor, lengths: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """PointPillars' decoration of points grouped in runs (a voxel's points): each row followed by its
    x, y, z minus the mean x, y, z of its run and minus its run's centre.

    The mean is a float32 sum in run order divided by the run's length, as
    ``torch.segment_reduce(.., "mean")`` computes it, so the result is
    ``cat([points, xyz - mean[run], xyz - centres[run]], 1)`` to the bit.

    Args:
        points: (N, C >= 3) float32 CPU tensor, x, y, z first, in runs.
        lengths: (S,) int, each run's rows (>= 1), summing to N.
        centres: (S, 3) float32, a point per run (the voxel's centre).

    Returns:
        (N, C + 6) float32.
    """
    if points.dtype != torch.float32 or centres.dtype != torch.float32 or points.device.type != "cpu":
        raise ValueError("pillar_decoration takes float32 CPU tensors")
    out = _decoration_kernel(
        points.detach().contiguous().numpy(),
        lengths.to(torch.int64).contiguous().numpy(),
        centres.detach().contiguous().numpy(),
    )
    return torch.from_numpy(out)


@intrinsic
def _float_bits(typingctx, value):  # pragma: no cover - numba
    """The bits of a float32 as a uint32 (an LLVM bitcast)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, bits):  # pragma: no cover - numba
    """The float32 with these bits (an LLVM bitcast)."""
    if bits != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _round_bf16(value):  # pragma: no cover - numba
    """float32 → the nearest bfloat16 (ties to even), as a float32 (finite values)."""
    bits = _float_bits(value)
    bits = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return _bits_float(np.uint32(bits))


def _as_float(value):  # pragma: no cover - numba (typed by the overload below)
    """A float32 from a bfloat16's bits held in a uint16; a float32 or float64 as it is."""
    raise NotImplementedError


@overload(_as_float, inline="always")
def _as_float_overload(value):  # pragma: no cover - numba
    if value == types.uint16:
        return lambda value: _bits_float(np.uint32(np.uint32(value) << np.uint32(16)))
    if value in (types.float32, types.float64):
        return lambda value: value
    return None


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _logits_kernel(q, kv, k_start, lengths, heads, d, scale, bf16_logits):  # pragma: no cover - numba
    """(S, H·d) float32 queries, (N, W) keys (float32, or bfloat16 bits as uint16) in columns
    ``[k_start, k_start + H·d)``, (S,) run lengths → (N, H) float32 logits and (S, H) their run maxima.

    A logit's d products are summed as torch sums a row of them: eight interleaved partial sums
    (lane l takes products l, l + 8, ...), then the lanes in order. The products of a row are formed
    first, in one loop the compiler vectorizes; the sums of d = 16 (the usual 64 / 4) are spelt out.
    """
    s_count = q.shape[0]
    width = heads * d
    logits = np.empty((kv.shape[0], heads), np.float32)
    peak = np.empty((s_count, heads), np.float32)
    products = np.empty(width, np.float32)
    start = 0
    for s in range(s_count):
        qs = q[s]
        for h in range(heads):
            peak[s, h] = -np.inf
        for i in range(start, start + lengths[s]):
            row = kv[i, k_start : k_start + width]
            if bf16_logits:
                for j in range(width):
                    products[j] = _round_bf16(qs[j] * _as_float(row[j]))
            else:
                for j in range(width):
                    products[j] = qs[j] * _as_float(row[j])
            for h in range(heads):
                base = h * d
                if d == 16:
                    acc = products[base] + products[base + 8]
                    for lane in range(1, 8):
                        acc += products[base + lane] + products[base + lane + 8]
                else:
                    acc = np.float32(0.0)
                    for lane in range(8):
                        part = np.float32(0.0)
                        for j in range(base + lane, base + d, 8):
                            part += products[j]
                        acc = part if lane == 0 else acc + part
                if bf16_logits:
                    logit = _round_bf16(_round_bf16(acc) / scale)
                else:
                    logit = acc / scale
                logits[i, h] = logit
                if logit > peak[s, h]:
                    peak[s, h] = logit
        start += lengths[s]
    return logits, peak


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _weighted_sum_kernel(e, kv, v_start, lengths, dv):  # pragma: no cover - numba
    """(N, H) float32 exponentials, (N, W) values (float32, or bfloat16 bits as uint16) in columns
    ``[v_start, v_start + H·dv)``, (S,) run lengths → (S, H·dv) float32 ``Σ_i (e_i / Σ_j e_j) v_i``,
    summed point by point in run order (each point's weights spread over its H·dv columns first, so
    the accumulation is one loop the compiler vectorizes)."""
    s_count, heads = lengths.shape[0], e.shape[1]
    width = heads * dv
    out = np.zeros((s_count, width), np.float32)
    total = np.empty(heads, np.float32)
    weight = np.empty(width, np.float32)
    start = 0
    for s in range(s_count):
        end = start + lengths[s]
        for h in range(heads):
            total[h] = 0.0
        for i in range(start, end):
            for h in range(heads):
                total[h] += e[i, h]
        o = out[s]
        for i in range(start, end):
            row = kv[i, v_start : v_start + width]
            for h in range(heads):
                w = e[i, h] / total[h]
                for c in range(h * dv, (h + 1) * dv):
                    weight[c] = w
            for c in range(width):
                o[c] += weight[c] * _as_float(row[c])
        start = end
    return out


def segment_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """One query per run attending over the run's rows, multi-head (CPU, no gradients).

    Args:
        query: (S, H, d) float32 or bfloat16, one per run and head.
        key: (N, H, d), the rows (runs of consecutive rows), same dtype as ``query``.
        value: (N, H, d_v), same dtype. Keys and values are read where they lie: when both are
            column slices of one (N, W) tensor (a fused key/value projection), nothing is copied.
        lengths: (S,) int, each run's rows (>= 1), summing to N.

    Returns:
        (S, H, d_v) in ``value``'s dtype: ``Σ_i softmax_i(<q, k_i> / sqrt(d)) v_i`` per run and head
        (module docstring for the arithmetic).
    """
    dtypes = {query.dtype, key.dtype, value.dtype}
    if len(dtypes) != 1 or query.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(
            f"query, key and value must all be float32 or all bfloat16, got {sorted(map(str, dtypes))}"
        )
    s_count, heads, d = query.shape
    dv = value.shape[-1]
    if s_count == 0:
        return value.new_zeros(0, heads, dv)
    rows, k_start, v_start = _shared_rows(key.detach(), value.detach())
    if query.dtype == torch.bfloat16:
        rows = rows.view(torch.int16)  # the bits; the kernel widens them to float32
    kv = rows.numpy().view(np.uint16) if query.dtype == torch.bfloat16 else rows.numpy()
    runs = lengths.to(torch.int64).contiguous()
    logits, peak = _logits_kernel(
        query.detach().float().reshape(s_count, -1).contiguous().numpy(),
        kv,
        k_start,
        runs.numpy(),
        heads,
        d,
        np.float32(math.sqrt(d)),
        query.dtype == torch.bfloat16,
    )
    # the exponentials by torch's own exp (its float32 rounding differs from libm's now and then)
    peak_t = torch.from_numpy(peak)
    e = torch.exp(torch.from_numpy(logits) - peak_t.repeat_interleave(runs, dim=0, output_size=len(logits)))
    out = _weighted_sum_kernel(e.numpy(), kv, v_start, runs.numpy(), dv)
    return torch.from_numpy(out).to(value.dtype).view(s_count, heads, dv)


def _shared_rows(key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """An (N, W) tensor with contiguous rows holding the keys (flattened to H·d columns from
    ``k_start``) and the values (from ``v_start``): a view of the storage both lie in when they are
    column blocks of one row-major tensor (as a fused key/value projection gives them), else a copy.
    Decided from storage and strides (views made in inference mode carry no ``_base``)."""
    n, width = key.shape[0], key.stride(0)
    if (
        n > 0
        and key.dtype == value.dtype
        and key.untyped_storage().data_ptr() == value.untyped_storage().data_ptr()
        and value.stride(0) == width
        and key[0].is_contiguous()
        and value[0].is_contiguous()
    ):
        origin = min(key.storage_offset(), value.storage_offset())
        k_start, v_start = key.storage_offset() - origin, value.storage_offset() - origin
        size = key.untyped_storage().nbytes() // key.element_size()
        if max(k_start + key[0].numel(), v_start + value[0].numel()) <= width and origin + n * width <= size:
            return key.as_strided((n, width), (width, 1), origin), k_start, v_start
    rows = torch.cat([key.reshape(n, -1), value.reshape(n, -1)], dim=1).contiguous()
    return rows, 0, key[0].numel() if n else 0
