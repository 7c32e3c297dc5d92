"""Exact, deterministic CPU sparse convolution with autograd: gather → GEMM → segment sum.

For a rulebook (:mod:`perception.ops._sparse_rules`) with ``P`` pairs, offset-major, and weight
``W`` of spconv's layout ``(C_out, K, C_in)`` (the kernel axes flattened):

- **forward**: ``Y_k = x[in_index_k] @ W_kᵀ`` per offset ``k`` into a ``(P, C_out)`` buffer; output
  row ``o`` is ``bias + x[o] @ W_centreᵀ (submanifold only) + Σ_{pairs of o, offsets ascending} Y[pair]``.
- **backward**: with ``G = grad_out[out_index]``, input gradients ``Z_k = G_k @ W_k`` summed per
  *input* row the same way (the transposed rulebook: a submanifold conv's mirrored offsets);
  weight gradients ``G_kᵀ @ x[in_index_k]``, one GEMM per offset; bias gradient a float64 column
  sum over fixed 4096-row chunks.

Threads and determinism: ``torch.get_num_threads()`` parts run on a small thread pool while torch
itself is held at one intra-op thread for the call, so each GEMM and gather is single-threaded
MKL / ATen code. Work is cut into fixed units that do not depend on the thread count — blocks of
at most ``BLOCK`` pairs inside one offset, whole offsets for weight gradients, output rows for the
sums (each row summed by one thread, offsets ascending) — so no value is ever accumulated with
atomics or in a thread-dependent order: results are bit-identical for any number of threads.
(Holding torch at one thread also keeps barrier-heavy small GEMMs off a busy shared CPU.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numba
import numpy as np
import torch

from perception.ops._sparse_rules import Rulebook, run_parallel, run_rows

__all__ = ["BLOCK", "sparse_conv"]

BLOCK = 8192  # pairs (or rows) per GEMM unit
_CHUNK = 4096  # rows per partial column sum


@numba.njit(cache=True, nogil=True)
def _segment_sum_(start, stop, out, buf, ptr, order):
    """``out[r] += Σ_j buf[order[j]]`` for ``j`` in ``[ptr[r], ptr[r + 1])``, in that order, rows ``[start, stop)``."""
    c = out.shape[1]
    for r in range(start, stop):
        for j in range(ptr[r], ptr[r + 1]):
            p = order[j]
            for q in range(c):
                out[r, q] += buf[p, q]


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


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


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


def _split(units: list, parts: int) -> list[list]:
    """Contiguous, nearly equal groups of ``units`` (at most ``parts``)."""
    parts = max(1, min(parts, len(units)))
    return [units[len(units) * j // parts : len(units) * (j + 1) // parts] for j in range(parts)]


def _offset_blocks(ptr: np.ndarray) -> list[tuple[int, int, int]]:
    """``(offset, start, stop)`` pair blocks: each offset's range cut every ``BLOCK`` pairs."""
    return [
        (k, s, min(s + BLOCK, int(ptr[k + 1])))
        for k in range(len(ptr) - 1)
        for s in range(int(ptr[k]), int(ptr[k + 1]), BLOCK)
    ]


def _gather_mm(
    src: torch.Tensor, index: np.ndarray, mats: torch.Tensor, ptr: np.ndarray, parts: int
) -> torch.Tensor:
    """``out[s:e] = src[index[s:e]] @ mats[k]`` over each offset's pairs; ``(P, mats.shape[2])``."""
    index_t = torch.from_numpy(index)
    gathered = src.new_empty(len(index), src.shape[1])
    out = src.new_empty(len(index), mats.shape[2])

    def work(blocks: list[tuple[int, int, int]]) -> None:
        for k, s, e in blocks:
            torch.index_select(src, 0, index_t[s:e], out=gathered[s:e])
            torch.mm(gathered[s:e], mats[k], out=out[s:e])

    run_parallel([lambda b=b: work(b) for b in _split(_offset_blocks(ptr), parts)])
    return out


def _rows_mm(a: torch.Tensor, mat: torch.Tensor, parts: int) -> torch.Tensor:
    """``a @ mat`` in fixed ``BLOCK``-row GEMMs."""
    out = a.new_empty(a.shape[0], mat.shape[1])

    def work(starts: list[int]) -> None:
        for s in starts:
            torch.mm(a[s : s + BLOCK], mat, out=out[s : s + BLOCK])

    run_parallel([lambda b=b: work(b) for b in _split(list(range(0, a.shape[0], BLOCK)), parts)])
    return out


def _base(
    rows: torch.Tensor, mat: torch.Tensor | None, bias: torch.Tensor | None, n: int, c: int, parts: int
):
    """Starting value of the sums: ``rows @ mat`` (identity offset) and/or the bias, else zeros."""
    if mat is not None:
        out = _rows_mm(rows, mat, parts)
        if bias is not None:
            out += bias
        return out
    if bias is not None:
        return bias.expand(n, c).contiguous()
    return rows.new_zeros(n, c)


def _segment_sum(base: torch.Tensor, buf: torch.Tensor, ptr: np.ndarray, order: np.ndarray, parts: int):
    if buf.shape[0] and base.shape[1]:
        run_rows(_segment_sum_, base.shape[0], _np(base), _np(buf), ptr, order, parts=parts)
    return base


class _SparseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, weight, bias, rules: Rulebook):  # type: ignore[override]
        c_out, _, _ = weight.shape
        centre = rules.identity_offset
        features, weight = features.detach().contiguous(), weight.detach()
        bias = bias.detach() if bias is not None else None
        with _torch_single_threaded() as parts:
            w_t = weight.permute(1, 2, 0).contiguous()  # (K, C_in, C_out): x_k @ w_t[k]
            mat = w_t[centre] if centre >= 0 else None
            out = _base(features, mat, bias, rules.num_out, c_out, parts)
            if rules.num_pairs:
                products = _gather_mm(features, rules.in_index, w_t, rules.offset_ptr, parts)
                _segment_sum(out, products, rules.out_ptr, rules.out_order, parts)
        ctx.save_for_backward(features, weight)
        ctx.rules = rules
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        features, weight = ctx.saved_tensors
        rules: Rulebook = ctx.rules
        _, k, c_in = weight.shape
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        centre = rules.identity_offset
        with _torch_single_threaded() as parts:
            grad_out = grad_out.detach().contiguous()
            if need_x:
                w_k = weight.permute(1, 0, 2).contiguous()  # (K, C_out, C_in): g_k @ w_k[k]
                mat = w_k[centre] if centre >= 0 else None
                grad_x = _base(grad_out, mat, None, rules.num_in, c_in, parts)
                if rules.num_pairs:
                    products = _gather_mm(grad_out, rules.out_index, w_k, rules.offset_ptr, parts)
                    _segment_sum(grad_x, products, rules.in_ptr, rules.in_order, parts)
            if need_w:
                grad_w = _weight_grad(features, grad_out, rules, k, parts)
            if need_b and ctx.has_bias:
                grad_b = torch.from_numpy(_column_sum(_np(grad_out))).to(grad_out.dtype)
        return grad_x, grad_w, grad_b, None


def _weight_grad(features: torch.Tensor, grad_out: torch.Tensor, rules: Rulebook, k: int, parts: int):
    """``(C_out, K, C_in)``: offset ``j`` gets ``grad_out[out_j]ᵀ @ features[in_j]``, one GEMM per offset."""
    grad_w = grad_out.new_zeros(k, grad_out.shape[1], features.shape[1])
    ptr, in_t, out_t = rules.offset_ptr, torch.from_numpy(rules.in_index), torch.from_numpy(rules.out_index)

    def work(offsets: list[int]) -> None:
        for j in offsets:
            if j == rules.identity_offset:
                torch.mm(grad_out.t(), features, out=grad_w[j])
                continue
            s, e = int(ptr[j]), int(ptr[j + 1])
            if e > s:
                g = grad_out.index_select(0, out_t[s:e])
                torch.mm(g.t(), features.index_select(0, in_t[s:e]), out=grad_w[j])

    sizes = np.diff(ptr).astype(np.int64)
    if rules.identity_offset >= 0:
        sizes[rules.identity_offset] = rules.num_in
    order = [int(j) for j in np.argsort(-sizes, kind="stable") if sizes[j] > 0]
    groups = [order[j::parts] for j in range(parts)]  # largest first, dealt round-robin
    run_parallel([lambda g=g: work(g) for g in groups if g])
    return grad_w.permute(1, 0, 2)


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
