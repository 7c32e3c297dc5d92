"""Exact, deterministic CPU sparse convolution with autograd: fused gather → GEMM → ordered scatter.

For a rulebook (:mod:`perception.ops._sparse_rules`) and weight ``W`` of spconv's layout
``(C_out, K, C_in)`` (the kernel axes flattened), one **pass** over a :class:`PairList` computes, for
every dst row ``r``, ``out[r] = init[r] + Σ_k Σ_{(s, r) in offset k} src[s] @ M_k``:

- **forward**: ``src = x``, ``M_k = W_kᵀ``, the ``fwd`` pairs; ``init`` = bias, plus ``x @ W_centreᵀ``
  for a submanifold convolution (its centre offset is the identity and is not listed).
- **backward**: ``src = grad_out``, ``M_k = W_k``, the ``bwd`` pairs (input rows as dst) give the input
  gradient; the same pass gathers ``x`` at the dst rows and adds ``grad_out[s]ᵀ x[r]`` per offset into
  a per-unit partial weight gradient; the bias gradient is a float64 column sum over fixed chunks.

A pass works one **unit** (``UNIT`` consecutive dst rows, fixed in the rulebook) at a time: numba
gathers the unit's source rows of all offsets into one small buffer, one single-threaded GEMM per
offset turns them into products, and numba adds the products into the unit's rows, offsets in
ascending order. The buffers are a unit's worth (a few MB), so they stay in cache instead of making
``(pairs, C)`` round trips through memory, and there is one Python-level GEMM call per (unit, offset).

Threads and determinism: ``torch.get_num_threads()`` workers take units from a shared counter on a
small thread pool while torch itself is held at one intra-op thread for the call (so every GEMM is
single-threaded MKL code, and torch's barrier-heavy intra-op threads stay off a busy shared CPU).
What a unit computes — which rows, which GEMM shapes, which buffer offsets, the order of the adds —
depends only on the rulebook, never on the thread count or on which thread runs it; a unit alone
writes its rows (and its own slice of the partial weight gradients, which are then summed over units
in unit order). No value is accumulated with atomics or in a thread-dependent order: results are
bit-identical for any number of threads and any scheduling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np
import torch

from perception.ops._sparse_rules import PairList, Rulebook, run_units

__all__ = ["sparse_conv"]

_CHUNK = 4096  # rows per partial column sum


@numba.njit(cache=True, nogil=True)
def _gather(buf, src, rows, lo, hi):
    """``buf[j] = src[rows[p]]`` for ``p`` over ``[lo[k], hi[k])``, offsets ``k`` in order, ``j = 0, 1, ...``."""
    c = src.shape[1]
    j = 0
    for k in range(lo.shape[0]):
        for p in range(lo[k], hi[k]):
            r = rows[p]
            for q in range(c):
                buf[j, q] = src[r, q]
            j += 1


@numba.njit(cache=True, nogil=True)
def _gather2(buf, src, rows, buf2, src2, rows2, lo, hi):
    """:func:`_gather` of ``src`` at ``rows`` and of ``src2`` at ``rows2`` over the same pairs."""
    c, c2 = src.shape[1], src2.shape[1]
    j = 0
    for k in range(lo.shape[0]):
        for p in range(lo[k], hi[k]):
            r, r2 = rows[p], rows2[p]
            for q in range(c):
                buf[j, q] = src[r, q]
            for q in range(c2):
                buf2[j, q] = src2[r2, q]
            j += 1


@numba.njit(cache=True, nogil=True)
def _scatter_add(out, buf, rows, lo, hi):
    """``out[rows[p]] += buf[j]`` in the order of :func:`_gather` (offsets ascending)."""
    c = out.shape[1]
    j = 0
    for k in range(lo.shape[0]):
        for p in range(lo[k], hi[k]):
            r = rows[p]
            for q in range(c):
                out[r, q] += buf[j, q]
            j += 1


@numba.njit(cache=True, nogil=True)
def _column_sum(x):
    """``x.sum(0)`` in float64 over fixed row chunks combined in order."""
    n, c = x.shape
    chunks = (n + _CHUNK - 1) // _CHUNK
    total = np.zeros(c, np.float64)
    partial = np.zeros(c, np.float64)
    for b in range(chunks):
        partial[:] = 0.0
        for r in range(b * _CHUNK, min(n, (b + 1) * _CHUNK)):
            for q in range(c):
                partial[q] += x[r, q]
        total += partial
    return total


@contextlib.contextmanager
def _torch_single_threaded() -> Iterator[int]:
    """Yield the caller's torch thread count while torch runs one intra-op thread."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield 1
        return
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def _unit_pass(
    src: torch.Tensor,
    mats: torch.Tensor,
    pairs: PairList,
    identity: int,
    parts: int,
    out: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    x: torch.Tensor | None = None,
    partial: torch.Tensor | None = None,
) -> None:
    """One pass over ``pairs`` (see the module doc), unit by unit on ``parts`` threads.

    ``out`` (``(num_dst, C)``, optional): ``init + Σ src[s] @ mats[k]``. ``partial`` (``(U, K, C_src,
    C_x)`` zeros, optional): ``partial[u, k] = Σ_{pairs of unit u, offset k} src[s]ᵀ x[r]``.
    """
    unit, ptr, n = pairs.unit, pairs.unit_ptr, pairs.num_dst
    src_np = src.numpy()
    out_np = out.numpy() if out is not None else None
    x_np = x.numpy() if x is not None else None
    mat_list = mats.unbind(0)

    def work(u: int) -> None:
        s, e = u * unit, min(n, (u + 1) * unit)
        lo, hi = ptr[u], ptr[u + 1]
        counts = (hi - lo).tolist()
        ks = [k for k, c in enumerate(counts) if c]
        sizes = [counts[k] for k in ks]
        total = sum(sizes)
        if out is not None:
            rows = out[s:e]
            if identity >= 0:
                torch.mm(src[s:e], mat_list[identity], out=rows)
                if bias is not None:
                    rows += bias
            elif bias is not None:
                rows.copy_(bias.expand_as(rows))
            else:
                rows.zero_()
        part = partial[u].unbind(0) if partial is not None else None
        if part is not None and identity >= 0:
            torch.mm(src[s:e].t(), x[s:e], out=part[identity])
        if total == 0:
            return
        buf = src.new_empty(total, src.shape[1])
        if part is not None:
            xbuf = x.new_empty(total, x.shape[1])
            _gather2(buf.numpy(), src_np, pairs.src, xbuf.numpy(), x_np, pairs.dst, lo, hi)
            for k, g, xk in zip(ks, buf.split(sizes), xbuf.split(sizes), strict=True):
                torch.mm(g.t(), xk, out=part[k])
        else:
            _gather(buf.numpy(), src_np, pairs.src, lo, hi)
        if out is not None:
            prod = src.new_empty(total, mats.shape[2])
            for k, g, pk in zip(ks, buf.split(sizes), prod.split(sizes), strict=True):
                torch.mm(g, mat_list[k], out=pk)
            _scatter_add(out_np, prod.numpy(), pairs.dst, lo, hi)

    run_units(work, pairs.num_units, parts)


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, weight, bias, rules: Rulebook):  # type: ignore[override]
        c_out = weight.shape[0]
        features, weight = features.detach().contiguous(), weight.detach()
        bias = bias.detach() if bias is not None else None
        out = features.new_empty(rules.num_out, c_out)
        with _torch_single_threaded() as parts:
            w_t = weight.permute(1, 2, 0).contiguous()  # (K, C_in, C_out): x_k @ w_t[k]
            _unit_pass(features, w_t, rules.fwd, rules.identity_offset, parts, out=out, bias=bias)
        ctx.save_for_backward(features, weight)
        ctx.rules = rules
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        features, weight = ctx.saved_tensors
        rules: Rulebook = ctx.rules
        c_out, k, c_in = weight.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        with _torch_single_threaded() as parts:
            grad_out = grad_out.detach().contiguous()
            if need_x or need_w:
                w_k = weight.permute(1, 0, 2).contiguous()  # (K, C_out, C_in): g_k @ w_k[k]
                grad_x = features.new_empty(rules.num_in, c_in) if need_x else None
                pairs = rules.bwd
                partial = features.new_zeros(pairs.num_units, k, c_out, c_in) if need_w else None
                _unit_pass(
                    grad_out, w_k, pairs, rules.identity_offset, parts,
                    out=grad_x, x=features if need_w else None, partial=partial,
                )  # fmt: skip
                if need_w:
                    total = features.new_zeros(k, c_out, c_in)
                    for u in range(partial.shape[0]):  # fixed order: unit 0, 1, ...
                        total += partial[u]
                    grad_w = total.permute(1, 0, 2)
            if need_b and ctx.has_bias:
                grad_b = torch.from_numpy(_column_sum(grad_out.numpy())).to(grad_out.dtype)
        return grad_x, grad_w, grad_b, None


def sparse_conv(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rules: Rulebook
) -> torch.Tensor:
    """Output features of one sparse convolution on the CPU, differentiable in all three tensors.

    Args:
        features: ``(rules.num_in, C_in)`` float32 / float64 CPU.
        weight: ``(C_out, kD, kH, kW, C_in)`` (spconv's layout), same dtype; ``K = kD·kH·kW`` must
            match the rulebook's kernel.
        bias: ``(C_out,)`` or None.
        rules: the rulebook (:func:`build_submanifold`, :func:`build_strided`, or a ``transposed()`` one).

    Returns:
        ``(rules.num_out, C_out)`` features, rows in the order of ``rules.out_indices``.
    """
    w = weight.reshape(weight.shape[0], -1, weight.shape[-1])
    return _SparseConv.apply(features, w, bias, rules)
