"""Rulebooks for sparse 3D convolution on the CPU: which input voxel feeds which output voxel.

A rulebook lists the ``(input row, output row)`` pairs of every kernel offset ``k`` (offsets in the
row-major order of the weight's ``(kD, kH, kW)`` axes). Its invariant, which the kernels in
:mod:`perception.ops._sparse_kernels` rely on for determinism: **within one offset, every input row and
every output row occurs at most once** (an output site and an offset fix the input site, and back).

Geometry, per spatial axis (spconv's arithmetic, checked against ``torch.nn.functional.conv3d``):

- **Submanifold** (``SubMConv3d``, odd kernel sizes only): output sites = input sites, and output site
  ``p`` reads input site ``p + (k - (K - 1) / 2) * dilation`` (cross-correlation, centred kernel;
  stride and padding are ignored, as spconv does). The centre offset pairs every site with itself;
  it is kept out of the pair lists (``identity_offset``) and done as one plain GEMM.
- **Strided** (``SparseConv3d``): input ``i`` feeds output ``o = (i + padding - k * dilation) / stride``
  where that is an integer in ``[0, out)``, ``out = (in + 2 padding - dilation (K - 1) - 1) // stride + 1``.
  Output sites are those that receive at least one input, **sorted by (b, z, y, x)**.
- **Inverse** (``SparseInverseConv3d``): the strided rulebook with inputs and outputs swapped.

Pairs are stored offset-major (``offset_ptr``), in increasing output row within an offset for
submanifold rulebooks and increasing input row for strided ones. Two CSR views sort the same pairs by
output row and by input row (``out_ptr``/``out_order``, ``in_ptr``/``in_order``), offsets ascending
inside each row: the forward pass sums a row's terms in that order, the input-gradient pass uses the
other view, so no pass ever scatters with conflicts.

Voxel keys: ``((b * D + z) * H + y) * W + x`` as int64, looked up in a linear-probing hash table.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numba
import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "Rulebook",
    "build_strided",
    "build_submanifold",
    "check_indices",
    "conv_output_shape",
    "run_parallel",
    "run_rows",
]

Triple = tuple[int, int, int]
_EMPTY = np.int64(-1)
MIN_ROWS = 4096  # rows per thread below which a kernel runs inline


@dataclass(frozen=True, eq=False)
class Rulebook:
    """Pairs of one sparse convolution, plus what is needed to check and invert its reuse.

    Attributes:
        in_index, out_index: ``(P,)`` int64 input and output rows of each pair, offset-major.
        offset_ptr: ``(K + 1,)`` int64; offset ``k``'s pairs are ``[offset_ptr[k], offset_ptr[k + 1])``.
        identity_offset: the offset whose pairs are ``i -> i`` for every row and are *not* listed
            (the submanifold centre), or ``-1``.
        out_ptr, out_order: ``(num_out + 1,)``, ``(P,)`` int64: pairs of output row ``o`` are
            ``out_order[out_ptr[o]:out_ptr[o + 1]]``, offsets ascending; ``in_ptr``, ``in_order`` the same by input row.
        indices, out_indices: ``(num_in, 4)`` and ``(num_out, 4)`` int32 ``[b, z, y, x]`` sites.
        spatial_shape, out_spatial_shape: ``[D, H, W]`` of the input and output grids.
        kernel_size, stride, padding, dilation: the geometry it was built for.
        subm: built for a submanifold convolution.
    """

    in_index: NDArray[np.int64]
    out_index: NDArray[np.int64]
    offset_ptr: NDArray[np.int64]
    identity_offset: int
    out_ptr: NDArray[np.int64]
    out_order: NDArray[np.int64]
    in_ptr: NDArray[np.int64]
    in_order: NDArray[np.int64]
    indices: torch.Tensor
    out_indices: torch.Tensor
    spatial_shape: list[int]
    out_spatial_shape: list[int]
    kernel_size: Triple
    stride: Triple
    padding: Triple
    dilation: Triple
    subm: bool

    @property
    def num_in(self) -> int:
        return int(self.indices.shape[0])

    @property
    def num_out(self) -> int:
        return int(self.out_indices.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.in_index.shape[0])

    def transposed(self) -> Rulebook:
        """The same pairs read backwards (inputs ↔ outputs): the rulebook of the inverse convolution."""
        return replace(
            self,
            in_index=self.out_index,
            out_index=self.in_index,
            out_ptr=self.in_ptr,
            out_order=self.in_order,
            in_ptr=self.out_ptr,
            in_order=self.out_order,
            indices=self.out_indices,
            out_indices=self.indices,
            spatial_shape=self.out_spatial_shape,
            out_spatial_shape=self.spatial_shape,
        )


# --------------------------------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _check_indices_nb(indices, batch_size, d, h, w):
    """First row with a coordinate out of range and the offending column, or (-1, -1)."""
    bounds = (batch_size, d, h, w)
    for i in range(indices.shape[0]):
        for j in range(4):
            v = indices[i, j]
            if v < 0 or v >= bounds[j]:
                return i, j
    return -1, -1


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(key, bits):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(64 - bits))


@numba.njit(cache=True, nogil=True)
def _hash_insert(keys, table_keys, table_vals, bits):
    """Insert ``keys[i] -> i`` in order; the first row whose key is already present, or -1."""
    mask = (np.int64(1) << bits) - 1
    for i in range(keys.shape[0]):
        key = keys[i]
        s = _slot(key, bits)
        while True:
            k = table_keys[s]
            if k == _EMPTY:
                table_keys[s] = key
                table_vals[s] = i
                break
            if k == key:
                return i
            s = (s + 1) & mask
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_find(key, table_keys, table_vals, bits):
    mask = (np.int64(1) << bits) - 1
    s = _slot(key, bits)
    while True:
        k = table_keys[s]
        if k == key:
            return table_vals[s]
        if k == _EMPTY:
            return -1
        s = (s + 1) & mask


@numba.njit(cache=True, nogil=True)
def _pack(indices, d, h, w):
    keys = np.empty(indices.shape[0], np.int64)
    for i in range(indices.shape[0]):
        keys[i] = ((np.int64(indices[i, 0]) * d + indices[i, 1]) * h + indices[i, 2]) * w + indices[i, 3]
    return keys


@numba.njit(cache=True, nogil=True)
def _subm_neighbors(start, stop, indices, shape, offsets, center, table_keys, table_vals, bits, nbr):
    """``nbr[v, k]``: row of the input at ``site(v) + offsets[k]``, or -1; ``nbr[v, center] = v``."""
    nk = offsets.shape[0]
    d, h, w = shape[0], shape[1], shape[2]
    for v in range(start, stop):
        b, z, y, x = indices[v, 0], indices[v, 1], indices[v, 2], indices[v, 3]
        for k in range(nk):
            if k == center:
                nbr[v, k] = v
                continue
            zz, yy, xx = z + offsets[k, 0], y + offsets[k, 1], x + offsets[k, 2]
            if zz < 0 or zz >= d or yy < 0 or yy >= h or xx < 0 or xx >= w:
                nbr[v, k] = -1
            else:
                key = ((np.int64(b) * d + zz) * h + yy) * w + xx
                nbr[v, k] = _hash_find(key, table_keys, table_vals, bits)


@numba.njit(cache=True, nogil=True)
def _strided_targets(start, stop, indices, out_shape, kernel, stride, padding, dilation, out):
    """``key[i, k]``: packed output site that input ``i`` feeds through offset ``k``, or -1."""
    kd, kh, kw = kernel[0], kernel[1], kernel[2]
    od, oh, ow = out_shape[0], out_shape[1], out_shape[2]
    for i in range(start, stop):
        b = np.int64(indices[i, 0])
        k = 0
        for a in range(kd):
            tz = indices[i, 1] + padding[0] - a * dilation[0]
            vz = tz >= 0 and tz % stride[0] == 0 and tz // stride[0] < od
            for c in range(kh):
                ty = indices[i, 2] + padding[1] - c * dilation[1]
                vy = ty >= 0 and ty % stride[1] == 0 and ty // stride[1] < oh
                for e in range(kw):
                    tx = indices[i, 3] + padding[2] - e * dilation[2]
                    vx = tx >= 0 and tx % stride[2] == 0 and tx // stride[2] < ow
                    if vz and vy and vx:
                        out[i, k] = ((b * od + tz // stride[0]) * oh + ty // stride[1]) * ow + tx // stride[2]
                    else:
                        out[i, k] = -1
                    k += 1


@numba.njit(cache=True, nogil=True)
def _pairs_from_table(table, skip):
    """Offset-major pairs from a ``(rows, K)`` table whose entries ≥ 0 are partners, column ``skip`` left out.

    Returns ``(row, partner, offset_ptr)``: the rows ascending within each offset.
    """
    n, nk = table.shape
    counts = np.zeros(nk, np.int64)
    for k in range(nk):
        if k != skip:
            c = 0
            for v in range(n):
                c += table[v, k] >= 0
            counts[k] = c
    ptr = np.zeros(nk + 1, np.int64)
    for k in range(nk):
        ptr[k + 1] = ptr[k] + counts[k]
    rows = np.empty(ptr[nk], np.int64)
    partners = np.empty(ptr[nk], np.int64)
    for k in range(nk):
        if k != skip:
            p = ptr[k]
            for v in range(n):
                if table[v, k] >= 0:
                    rows[p] = v
                    partners[p] = table[v, k]
                    p += 1
    return rows, partners, ptr


@numba.njit(cache=True, nogil=True)
def _csr(target, n):
    """Stable counting sort of pair ids by ``target`` row: ``(ptr (n + 1,), order (P,))``."""
    ptr = np.zeros(n + 1, np.int64)
    for p in range(target.shape[0]):
        ptr[target[p] + 1] += 1
    for i in range(n):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    order = np.empty(target.shape[0], np.int64)
    for p in range(target.shape[0]):
        t = target[p]
        order[fill[t]] = p
        fill[t] += 1
    return ptr, order


def run_rows(
    kernel: Callable[..., None], n: int, *args: object, min_rows: int | None = None, parts: int | None = None
) -> None:
    """``kernel(start, stop, *args)`` over ``[0, n)``, split into ``parts`` contiguous ranges.

    ``parts`` defaults to ``torch.get_num_threads()``; ranges under ``min_rows`` (default ``MIN_ROWS``)
    rows are merged. The
    kernels are ``nogil`` numba functions writing disjoint rows, so the split changes nothing in the
    result. Parts run on a shared thread pool (numba's OpenMP ``prange`` pool is avoided: its
    spin-waits fight torch's when the CPU is shared).
    """
    min_rows = MIN_ROWS if min_rows is None else min_rows
    parts = max(1, min(parts or torch.get_num_threads(), n // max(min_rows, 1)))
    if parts == 1:
        kernel(0, n, *args)
        return
    bounds = [n * j // parts for j in range(parts + 1)]
    run_parallel([functools.partial(kernel, bounds[j], bounds[j + 1], *args) for j in range(parts)])


def run_parallel(tasks: list[Callable[[], object]]) -> None:
    """Run ``tasks`` (independent, GIL-releasing) on the shared pool, the first one inline; wait for all."""
    futures = [_pool().submit(t) for t in tasks[1:]]
    if tasks:
        tasks[0]()
    for f in futures:
        f.result()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sparse-conv")


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def check_indices(indices: torch.Tensor, spatial_shape: list[int], batch_size: int) -> None:
    """Raise ``ValueError`` naming ``indices`` when a batch index or coordinate is out of range (CPU)."""
    row, col = _check_indices_nb(indices.numpy(), batch_size, *spatial_shape)
    if row >= 0:
        what = ("batch index", "z", "y", "x")[col]
        bound = (batch_size, *spatial_shape)[col]
        raise ValueError(
            f"indices: row {row} {indices[row].tolist()} has {what} {int(indices[row, col])} "
            f"outside [0, {bound}) (batch_size={batch_size}, spatial_shape={spatial_shape})"
        )


def _hash_table(keys: NDArray[np.int64], indices: torch.Tensor) -> tuple[NDArray, NDArray, int]:
    bits = max(4, int(2 * max(len(keys), 1) - 1).bit_length())  # load factor ≤ 1/2
    table_keys = np.full(1 << bits, -1, np.int64)
    table_vals = np.empty(1 << bits, np.int64)
    dup = _hash_insert(keys, table_keys, table_vals, bits)
    if dup >= 0:
        first = int(np.flatnonzero(keys == keys[dup])[0])
        raise ValueError(
            f"indices: duplicate site {indices[dup].tolist()} at rows {first} and {dup}; "
            "merge duplicate voxels before building a SparseConvTensor"
        )
    return table_keys, table_vals, bits


def _kernel_offsets(kernel_size: Triple) -> NDArray[np.int64]:
    return np.array(list(itertools.product(*(range(k) for k in kernel_size))), np.int64).reshape(-1, 3)


def _check_key_range(batch_size: int, shape: list[int]) -> None:
    if batch_size * int(np.prod(shape, dtype=object)) >= 2**62:
        raise ValueError(
            f"spatial_shape: batch_size × D × H × W of {batch_size} × {shape} overflows int64 keys"
        )


def build_submanifold(
    indices: torch.Tensor, spatial_shape: list[int], batch_size: int, kernel_size: Triple, dilation: Triple
) -> Rulebook:
    """Rulebook of a submanifold convolution (output sites = input sites, same rows).

    Args:
        indices: ``(V, 4)`` int32 CPU ``[b, z, y, x]``, in range, no duplicates (ValueError otherwise).
        kernel_size: odd sizes ``(kD, kH, kW)``; dilation ``(dD, dH, dW)`` ≥ 1.
    """
    _check_key_range(batch_size, spatial_shape)
    idx = indices.numpy()
    d, h, w = spatial_shape
    table = _hash_table(_pack(idx, d, h, w), indices)
    grid = _kernel_offsets(kernel_size)
    offsets = (grid - (np.array(kernel_size) - 1) // 2) * np.array(dilation)
    center = (offsets.shape[0] - 1) // 2
    nbr = np.empty((idx.shape[0], offsets.shape[0]), np.int64)
    shape = np.array(spatial_shape, np.int64)
    run_rows(_subm_neighbors, idx.shape[0], idx, shape, offsets, center, *table, nbr)
    out_rows, in_rows, ptr = _pairs_from_table(nbr, center)
    n = idx.shape[0]
    out_ptr, out_order = _csr(out_rows, n)
    in_ptr, in_order = _csr(in_rows, n)
    three = (1, 1, 1)
    return Rulebook(
        in_rows, out_rows, ptr, center, out_ptr, out_order, in_ptr, in_order, indices, indices,
        list(spatial_shape), list(spatial_shape), kernel_size, three, (0, 0, 0), dilation, True,
    )  # fmt: skip


def conv_output_shape(
    spatial_shape: list[int], kernel_size: Triple, stride: Triple, padding: Triple, dilation: Triple
) -> list[int]:
    """spconv's ``(in + 2 p - d (k - 1) - 1) // s + 1`` per axis."""
    return [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(spatial_shape, kernel_size, stride, padding, dilation, strict=True)
    ]


def build_strided(
    indices: torch.Tensor,
    spatial_shape: list[int],
    batch_size: int,
    kernel_size: Triple,
    stride: Triple,
    padding: Triple,
    dilation: Triple,
) -> Rulebook:
    """Rulebook of a regular (strided) sparse convolution; output sites sorted by ``(b, z, y, x)``.

    Raises ``ValueError`` (``spatial_shape``) when the output grid would be empty along an axis.
    """
    out_shape = conv_output_shape(spatial_shape, kernel_size, stride, padding, dilation)
    if min(out_shape) <= 0:
        raise ValueError(
            f"spatial_shape: {spatial_shape} gives an empty output grid {out_shape} for kernel_size="
            f"{kernel_size}, stride={stride}, padding={padding}, dilation={dilation}"
        )
    _check_key_range(batch_size, spatial_shape)
    _check_key_range(batch_size, out_shape)
    idx = indices.numpy()
    _hash_table(_pack(idx, *spatial_shape), indices)  # duplicate check
    arr = lambda t: np.array(t, np.int64)  # noqa: E731
    targets = np.empty((idx.shape[0], int(np.prod(kernel_size))), np.int64)
    geometry = (arr(out_shape), arr(kernel_size), arr(stride), arr(padding), arr(dilation))
    run_rows(_strided_targets, idx.shape[0], idx, *geometry, targets)
    in_rows, out_keys, ptr = _pairs_from_table(targets, -1)
    unique_keys = np.unique(out_keys)
    out_rows = np.searchsorted(unique_keys, out_keys).astype(np.int64)
    od, oh, ow = out_shape
    out_idx = np.stack(
        [
            unique_keys // (od * oh * ow),
            unique_keys // (oh * ow) % od,
            unique_keys // ow % oh,
            unique_keys % ow,
        ],
        axis=1,
    ).astype(np.int32)
    out_ptr, out_order = _csr(out_rows, len(unique_keys))
    in_ptr, in_order = _csr(in_rows, idx.shape[0])
    return Rulebook(
        in_rows, out_rows, ptr, -1, out_ptr, out_order, in_ptr, in_order, indices,
        torch.from_numpy(out_idx), list(spatial_shape), out_shape, kernel_size, stride, padding, dilation, False,
    )  # fmt: skip
