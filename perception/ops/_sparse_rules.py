"""Rulebooks for sparse 3D convolution on the CPU: which input voxel feeds which output voxel.

A rulebook lists the ``(src row, dst row)`` pairs of every kernel offset ``k`` (offsets in the
row-major order of the weight's ``(kD, kH, kW)`` axes), in two directions (:class:`PairList`):
``fwd`` (src = input row, dst = output row; what the forward pass sums) and ``bwd`` (src = output
row, dst = input row; what the input-gradient pass sums). Its invariant, which the kernels in
:mod:`perception.ops._sparse_kernels` rely on for determinism: **within one offset, every input row and
every output row occurs at most once** (an output site and an offset fix the input site, and back).

Geometry, per spatial axis (spconv's arithmetic, checked against ``torch.nn.functional.conv3d``):

- **Submanifold** (``SubMConv3d``, odd kernel sizes only): output sites = input sites, and output site
  ``p`` reads input site ``p + (k - (K - 1) / 2) * dilation`` (cross-correlation, centred kernel;
  stride and padding are ignored, as spconv does). The centre offset pairs every site with itself;
  it is kept out of the pair lists (``identity_offset``) and done as plain GEMMs. Offsets ``k`` and
  ``K - 1 - k`` are mirror images, so each neighbour is looked up once, and the ``bwd`` list is the
  ``fwd`` list read with its offsets reversed (no second copy).
- **Strided** (``SparseConv3d``): input ``i`` feeds output ``o = (i + padding - k * dilation) / stride``
  where that is an integer in ``[0, out)``, ``out = (in + 2 padding - dilation (K - 1) - 1) // stride + 1``.
  Output sites are those that receive at least one input, **sorted by (b, z, y, x)**.
- **Inverse** (``SparseInverseConv3d``): the strided rulebook with inputs and outputs swapped.

Layout of a :class:`PairList`: pairs offset-major, dst rows ascending within an offset. The dst rows
are cut into fixed **units** of ``UNIT`` consecutive rows (a rulebook property, independent of the
thread count); ``unit_ptr[u, k] : unit_ptr[u + 1, k]`` are offset ``k``'s pairs whose dst row lies
in unit ``u``. A unit is the kernels' work item: it owns its dst rows, so no two threads ever add
into the same row, and each row's terms are added in a fixed order.

Voxel keys: ``((b * D + z) * H + y) * W + x`` as int64, in an open-addressing hash table (linear
probing, multiplicative hash, power-of-two size, load ≤ 1/4, key and value side by side).
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
    "UNIT",
    "PairList",
    "Rulebook",
    "build_strided",
    "build_submanifold",
    "check_indices",
    "conv_output_shape",
    "run_parallel",
    "run_rows",
    "run_units",
]

Triple = tuple[int, int, int]
_EMPTY = np.int64(-1)
MIN_ROWS = 4096  # rows per thread below which a kernel runs inline
UNIT = 4096  # dst rows per work unit of the convolution kernels (fixed when a rulebook is built)
_MAX_ROWS = 2**31 - 1  # rows are stored as int32


@dataclass(frozen=True, eq=False)
class PairList:
    """The pairs of one direction of a rulebook, grouped by offset and by units of dst rows.

    Attributes:
        src: ``(P,)`` int32 rows read (input rows in the forward direction).
        dst: ``(P,)`` int32 rows written, ascending within each offset.
        unit_ptr: ``(U + 1, K)`` int64; offset ``k``'s pairs with dst in unit ``u`` (rows
            ``[u * unit, (u + 1) * unit)``) are ``[unit_ptr[u, k], unit_ptr[u + 1, k])``.
        unit: rows per unit; ``num_dst``: number of dst rows (``U = ceil(num_dst / unit)``).
    """

    src: NDArray[np.int32]
    dst: NDArray[np.int32]
    unit_ptr: NDArray[np.int64]
    unit: int
    num_dst: int

    @property
    def num_units(self) -> int:
        return int(self.unit_ptr.shape[0]) - 1


@dataclass(frozen=True, eq=False)
class Rulebook:
    """Pairs of one sparse convolution, plus what is needed to check and invert its reuse.

    Attributes:
        fwd: pairs input row → output row (what the forward pass sums into each output row).
        bwd: the same pairs output row → input row (what the input gradient sums into each input row).
        identity_offset: the offset whose pairs are ``i -> i`` for every row and are *not* listed
            (the submanifold centre), or ``-1``.
        indices, out_indices: ``(num_in, 4)`` and ``(num_out, 4)`` int32 ``[b, z, y, x]`` sites.
        spatial_shape, out_spatial_shape: ``[D, H, W]`` of the input and output grids.
        kernel_size, stride, padding, dilation: the geometry it was built for.
        subm: built for a submanifold convolution.
    """

    fwd: PairList
    bwd: PairList
    identity_offset: int
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
        """Listed pairs (the identity offset's ``num_in`` pairs not included)."""
        return int(self.fwd.src.shape[0])

    def transposed(self) -> Rulebook:
        """The same pairs read backwards (inputs ↔ outputs): the rulebook of the inverse convolution."""
        return replace(
            self,
            fwd=self.bwd,
            bwd=self.fwd,
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
def _hash_insert(keys, table, bits):
    """Insert ``keys[i] -> i`` in order into ``table`` (``(2^bits, 2)`` [key, value]); first duplicate row or -1."""
    mask = (np.int64(1) << bits) - 1
    for i in range(keys.shape[0]):
        key = keys[i]
        s = _slot(key, bits)
        while True:
            k = table[s, 0]
            if k == _EMPTY:
                table[s, 0] = key
                table[s, 1] = i
                break
            if k == key:
                return i
            s = (s + 1) & mask
    return -1


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_find(key, table, bits):
    mask = (np.int64(1) << bits) - 1
    s = _slot(key, bits)
    while True:
        k = table[s, 0]
        if k == key:
            return table[s, 1]
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
def _subm_neighbors(start, stop, indices, shape, offsets, center, table, bits, nbr):
    """Sites ``v`` in ``[start, stop)``: for each offset ``k < center`` with an input ``u`` at
    ``site(v) + offsets[k]``, set ``nbr[k, v] = u`` and its mirror ``nbr[K - 1 - k, u] = v``.

    ``nbr`` (``(K, V)`` int32) must be -1 beforehand. Each entry has one writer (the pair fixes it),
    so ranges may run concurrently.
    """
    nk = offsets.shape[0]
    d, h, w = shape[0], shape[1], shape[2]
    for v in range(start, stop):
        b, z, y, x = indices[v, 0], indices[v, 1], indices[v, 2], indices[v, 3]
        base = np.int64(b) * d
        for k in range(center):
            zz, yy, xx = z + offsets[k, 0], y + offsets[k, 1], x + offsets[k, 2]
            if zz < 0 or zz >= d or yy < 0 or yy >= h or xx < 0 or xx >= w:
                continue
            u = _hash_find(((base + zz) * h + yy) * w + xx, table, bits)
            if u >= 0:
                nbr[k, v] = u
                nbr[nk - 1 - k, u] = v


@numba.njit(cache=True, nogil=True)
def _strided_targets(start, stop, indices, out_shape, kernel, stride, padding, dilation, out):
    """``out[k, i]``: packed output site that input ``i`` feeds through offset ``k``; ``out`` is -1 beforehand.

    Per axis, ``t = coord + padding - a * dilation`` feeds output ``t / stride`` when that is an
    integer in ``[0, out)``. With ``coord + padding = q * stride + r`` and ``a * dilation = qa * stride
    + ra`` (tabulated), that is ``r == ra`` and output ``q - qa``: one division per axis and input.
    """
    kmax = max(kernel[0], max(kernel[1], kernel[2]))
    rem = np.empty((3, kmax), np.int64)
    quo = np.empty((3, kmax), np.int64)
    for ax in range(3):
        for a in range(kernel[ax]):
            rem[ax, a] = (a * dilation[ax]) % stride[ax]
            quo[ax, a] = (a * dilation[ax]) // stride[ax]
    hit = np.empty((3, kmax), np.int64)  # per axis: kernel index a of each valid tap
    pos = np.empty((3, kmax), np.int64)  # ... and the output coordinate it feeds
    cnt = np.empty(3, np.int64)
    kh, kw = kernel[1], kernel[2]
    od, oh, ow = out_shape[0], out_shape[1], out_shape[2]
    for i in range(start, stop):
        for ax in range(3):
            t = indices[i, ax + 1] + padding[ax]
            q, r = t // stride[ax], t % stride[ax]
            n = 0
            for a in range(kernel[ax]):
                o = q - quo[ax, a]
                if rem[ax, a] == r and o >= 0 and o < out_shape[ax]:
                    hit[ax, n] = a
                    pos[ax, n] = o
                    n += 1
            cnt[ax] = n
        b = np.int64(indices[i, 0]) * od
        for jz in range(cnt[0]):
            kz, zo = hit[0, jz] * kh, (b + pos[0, jz]) * oh
            for jy in range(cnt[1]):
                ky, yo = (kz + hit[1, jy]) * kw, (zo + pos[1, jy]) * ow
                for jx in range(cnt[2]):
                    out[ky + hit[2, jx], i] = yo + pos[2, jx]


@numba.njit(cache=True, nogil=True)
def _unique_keys(targets, bits, slots):
    """Distinct keys ≥ 0 of ``targets`` (in first-seen order) and the hash table holding them;
    ``slots[k, i]`` := the table slot of ``targets[k, i]`` (left alone where that is -1).

    Returns ``(keys, table, True)``, or ``(_, _, False)`` as soon as the table is half full (the
    caller retries with a larger ``bits``).
    """
    table = np.full((np.int64(1) << bits, 2), -1, np.int64)
    mask = (np.int64(1) << bits) - 1
    limit = np.int64(1) << (bits - 1)
    nk, n_in = targets.shape
    found = np.empty(targets.size, np.int64)
    n = 0
    for k in range(nk):
        for i in range(n_in):
            key = targets[k, i]
            if key < 0:
                continue
            s = _slot(key, bits)
            while True:
                t = table[s, 0]
                if t == key:
                    break
                if t == _EMPTY:
                    table[s, 0] = key
                    found[n] = key
                    n += 1
                    if n > limit:
                        return found[:0].copy(), table, False
                    break
                s = (s + 1) & mask
            slots[k, i] = s
    return found[:n].copy(), table, True


@numba.njit(cache=True, nogil=True)
def _set_ranks(sorted_keys, table, bits):
    """Value of each key in ``table`` := its position in ``sorted_keys``."""
    mask = (np.int64(1) << bits) - 1
    for j in range(sorted_keys.shape[0]):
        key = sorted_keys[j]
        s = _slot(key, bits)
        while table[s, 0] != key:
            s = (s + 1) & mask
        table[s, 1] = j


@numba.njit(cache=True, nogil=True)
def _strided_rows(start, stop, slots, table, by_in, by_out):
    """Inputs ``i`` in ``[start, stop)``: ``by_in[k, i] = o`` (the output row in slot ``slots[k, i]``)
    and ``by_out[k, o] = i``. Both must be -1 beforehand; each entry has one writer."""
    for k in range(slots.shape[0]):
        for i in range(start, stop):
            s = slots[k, i]
            if s >= 0:
                o = table[s, 1]
                by_in[k, i] = o
                by_out[k, o] = i


@numba.njit(cache=True, nogil=True)
def _unit_counts(start, stop, table, unit, counts):
    """``counts[u + 1, k]``: entries ≥ 0 of row ``k`` of ``table`` in columns of unit ``u``, for ``k`` in range."""
    n = table.shape[1]
    for k in range(start, stop):
        for v in range(n):
            if table[k, v] >= 0:
                counts[v // unit + 1, k] += 1


@numba.njit(cache=True, nogil=True)
def _compact(start, stop, table, ptr, src, dst):
    """Offsets ``k`` in range: the entries ≥ 0 of ``table[k]`` → ``src`` (value), ``dst`` (column), from ``ptr[0, k]``."""
    n = table.shape[1]
    for k in range(start, stop):
        p = ptr[0, k]
        for v in range(n):
            t = table[k, v]
            if t >= 0:
                src[p] = t
                dst[p] = v
                p += 1


def run_rows(
    kernel: Callable[..., None], n: int, *args: object, min_rows: int | None = None, parts: int | None = None
) -> None:
    """``kernel(start, stop, *args)`` over ``[0, n)``, split into ``parts`` contiguous ranges.

    ``parts`` defaults to ``torch.get_num_threads()``; ranges under ``min_rows`` (default ``MIN_ROWS``)
    rows are merged. The kernels are ``nogil`` numba functions whose result does not depend on the
    split (disjoint writes). Parts run on a shared thread pool (numba's OpenMP ``prange`` pool is
    avoided: its spin-waits fight torch's when the CPU is shared).
    """
    min_rows = MIN_ROWS if min_rows is None else min_rows
    parts = max(1, min(parts or torch.get_num_threads(), n // max(min_rows, 1)))
    if parts == 1:
        kernel(0, n, *args)
        return
    bounds = [n * j // parts for j in range(parts + 1)]
    run_parallel([functools.partial(kernel, bounds[j], bounds[j + 1], *args) for j in range(parts)])


def run_units(work: Callable[[int], None], n: int, parts: int) -> None:
    """``work(u)`` for every ``u`` in ``[0, n)`` on up to ``parts`` threads, each taking the next free unit.

    Which thread runs a unit never changes what the unit computes, so the result is the same for
    any ``parts`` (and dynamic hand-out keeps a thread that was descheduled from stalling the rest).
    """
    if parts <= 1 or n <= 1:
        for u in range(n):
            work(u)
        return
    units = iter(range(n))

    def worker() -> None:
        for u in units:  # next() on a range iterator is atomic under the GIL
            work(u)

    run_parallel([worker] * min(parts, n))


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


def _table_bits(n: int) -> int:
    return max(4, int(4 * max(n, 1) - 1).bit_length())  # load factor ≤ 1/4: short probes for misses


def _hash_table(keys: NDArray[np.int64], indices: torch.Tensor) -> tuple[NDArray, int]:
    bits = _table_bits(len(keys))
    table = np.full((1 << bits, 2), -1, np.int64)
    dup = _hash_insert(keys, table, bits)
    if dup >= 0:
        first = int(np.flatnonzero(keys == keys[dup])[0])
        raise ValueError(
            f"indices: duplicate site {indices[dup].tolist()} at rows {first} and {dup}; "
            "merge duplicate voxels before building a SparseConvTensor"
        )
    return table, bits


def _kernel_offsets(kernel_size: Triple) -> NDArray[np.int64]:
    return np.array(list(itertools.product(*(range(k) for k in kernel_size))), np.int64).reshape(-1, 3)


def _check_key_range(batch_size: int, shape: list[int]) -> None:
    if batch_size * int(np.prod(shape, dtype=object)) >= 2**62:
        raise ValueError(
            f"spatial_shape: batch_size × D × H × W of {batch_size} × {shape} overflows int64 keys"
        )


def _check_rows(n: int) -> None:
    if n > _MAX_ROWS:
        raise ValueError(f"indices: {n} rows; at most {_MAX_ROWS} are supported on the CPU")


def _pair_list(table: NDArray[np.int32]) -> PairList:
    """Pairs ``(src = table[k, v], dst = v)`` for the entries ≥ 0 of a ``(K, N)`` table, in units of ``UNIT``."""
    nk, n = table.shape
    unit = UNIT
    n_units = -(-n // unit)
    counts = np.zeros((n_units + 1, nk), np.int64)
    run_rows(_unit_counts, nk, table, unit, counts, min_rows=1)
    cum = np.cumsum(counts, axis=0)
    starts = np.concatenate([[0], np.cumsum(cum[-1])[:-1]]).astype(np.int64)
    unit_ptr = cum + starts
    total = int(cum[-1].sum())
    src, dst = np.empty(total, np.int32), np.empty(total, np.int32)
    run_rows(_compact, nk, table, unit_ptr, src, dst, min_rows=1)
    return PairList(src, dst, np.ascontiguousarray(unit_ptr), unit, n)


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
    _check_rows(idx.shape[0])
    d, h, w = spatial_shape
    table, bits = _hash_table(_pack(idx, d, h, w), indices)
    grid = _kernel_offsets(kernel_size)
    offsets = (grid - (np.array(kernel_size) - 1) // 2) * np.array(dilation)
    center = (offsets.shape[0] - 1) // 2
    nbr = np.full((offsets.shape[0], idx.shape[0]), -1, np.int32)  # nbr[k, out row] = in row
    shape = np.array(spatial_shape, np.int64)
    run_rows(_subm_neighbors, idx.shape[0], idx, shape, offsets, center, table, bits, nbr)
    fwd = _pair_list(nbr)
    # offset k's pairs read backwards are offset K-1-k's pairs: the same arrays, offsets reversed
    bwd = replace(fwd, unit_ptr=np.ascontiguousarray(fwd.unit_ptr[:, ::-1]))
    three = (1, 1, 1)
    return Rulebook(
        fwd, bwd, center, indices, indices, list(spatial_shape), list(spatial_shape),
        kernel_size, three, (0, 0, 0), dilation, True,
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
    n_in = idx.shape[0]
    _check_rows(n_in)
    _hash_table(_pack(idx, *spatial_shape), indices)  # duplicate check
    arr = lambda t: np.array(t, np.int64)  # noqa: E731
    nk = int(np.prod(kernel_size))
    targets = np.full((nk, n_in), -1, np.int64)
    geometry = (arr(out_shape), arr(kernel_size), arr(stride), arr(padding), arr(dilation))
    run_rows(_strided_targets, n_in, idx, *geometry, targets)
    slots = np.full((nk, n_in), -1, np.int32)
    bits = _table_bits(n_in)  # room for 2 n_in outputs at load 1/2 (a downsampling conv has fewer)
    while True:
        unique_keys, table, fits = _unique_keys(targets, bits, slots)
        if fits:
            break
        bits += 1
    unique_keys.sort()
    _set_ranks(unique_keys, table, bits)
    n_out = len(unique_keys)
    _check_rows(n_out)
    by_in = np.full((nk, n_in), -1, np.int32)  # by_in[k, in row] = out row
    by_out = np.full((nk, n_out), -1, np.int32)  # by_out[k, out row] = in row
    run_rows(_strided_rows, n_in, slots, table, by_in, by_out)
    fwd, bwd = _pair_list(by_out), _pair_list(by_in)
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
    return Rulebook(
        fwd, bwd, -1, indices, torch.from_numpy(out_idx), list(spatial_shape), out_shape,
        kernel_size, stride, padding, dilation, False,
    )  # fmt: skip
