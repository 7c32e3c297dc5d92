"""Hilbert and z-order (Morton) serialization of 3D integer grid coordinates.

Point Transformer V3 style serialization: points are quantised to a grid, each cell gets an integer
code along a space-filling curve, and sorting by code puts spatial neighbours next to each other.

Conventions (shared by every function here, both curves and both backends)
--------------------------------------------------------------------------
- **Coordinates** are ``(N, 3)`` non-negative integers below ``2**bits``, ``1 <= bits <= 21``
  (3·21 = 63 bits fit an int64). The columns are taken as given: call them ``(c0, c1, c2)``. The
  intended order is PTv3's ``grid_coord`` order ``(x, y, z)``; spconv's ``[z, y, x]`` voxel indices
  should be flipped with ``coords[:, ::-1]`` first if you want that order.
- **Codes** are ``(N,)`` int64 in ``[0, 8**bits)``. Each tree level contributes one 3-bit group,
  the coarsest level in the most significant group; inside a group column ``c0`` is the most
  significant bit. For z-order that means bit ``3k + 2`` of the code is bit ``k`` of ``c0``,
  ``3k + 1`` of ``c1`` and ``3k`` of ``c2``.
- **Hilbert curve.** The curve of Skilling's transform ("Programming the Hilbert curve", AIP 2004)
  with Skilling's axes ``X[0], X[1], X[2]`` = columns ``c0, c1, c2`` and his transposed index read
  most significant bit first, ``X[0]`` first in each group (numpy-hilbert-curve gives the same codes
  on the same columns). It starts at ``(0, 0, 0)``, visits the 8 top-level octants in Gray-code
  order ``(c0 c1 c2) = 000, 001, 011, 010, 110, 111, 101, 100`` and ends at ``(2**bits - 1, 0, 0)``;
  its first step is along ``c2``, ``c1``, ``c0`` for ``bits % 3 == 1, 2, 0``. Consecutive codes are
  face-adjacent cells.
- **Hierarchy.** For both curves ``encode(c >> 1, bits - 1) == encode(c, bits) >> 3``: dropping the
  last 3-bit group gives the parent cell's code, so equal ``code >> 3k`` runs are octree cells.
- **Transposed orders** ``"hilbert-trans"`` and ``"z-trans"`` swap columns ``c0`` and ``c1`` first.
- **Batches** are packed above the code bits: ``packed = code | batch << 3 * bits``.

Backends: NumPy in → NumPy out through numba kernels (single-threaded, ``nogil``, so callers may
split work across threads); torch in → torch out on the same device: CPU tensors share memory with
the numba path, other devices (CUDA) run a pure-torch version of the same lookup tables (its range
check costs one device synchronisation). Any integer dtype is accepted and read as it is (no
conversion copy; a non-contiguous array is copied once); results are int64, or written into an
``out`` array/tensor of any integer dtype wide enough (e.g. uint32 codes up to 10 bits, uint16
cells up to 16 bits). Empty input gives empty output: ``(0, 3)`` coordinates ↔ ``(0,)`` codes.

How it is fast: the curve is a finite state machine whose states are cube symmetries. At import
the state graph is derived from the 8 child transforms below, then tabulated three tree levels at
a time (512-entry uint32 rows indexed by a state and 3 bits of each axis), so a 10-bit encode is
4 table look-ups per point. Inputs of 16 Ki points or more use kernels compiled per step count with
the tables frozen in, written so that LLVM vectorises them 8 points wide with gathers (no 64-bit
loads, stores or reductions in the loop: 64-bit arrays are read and written as uint32 word pairs,
the range check runs as a separate pass over each cache-resident block). On one core of the
development machine (Intel Xeon, AVX-512; shared, so ±10 %), 4 M points, 10 bits: encode ~250-350
M points/s from uint16, ~300 from int32, ~190 from int64 (int64 codes out); decode ~320-345 into
a uint16 ``out``, ~130-150 into the default fresh int64 array (bound by writing 96 MB); at 16 bits
encode ~140-210, decode ~165 into uint16. HilbertSFC (another Hilbert curve, three-column input,
narrowest output dtype) timed beside it: 0.87-1.12x at 10 bits (0.93-1.12x with a matching
``out``), 1.2-1.7x at 16 bits (``python tools/benchmark.py hilbert --hilbertsfc PATH``); 14-19x a
numba Skilling transform on encode, 5-6x on decode.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

import numba
import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "MAX_BITS",
    "CurveOrder",
    "Serialization",
    "decode",
    "decode_morton",
    "deserialize",
    "encode",
    "encode_morton",
    "pack_batch",
    "serialize",
    "serialize_points",
    "unpack_batch",
]

MAX_BITS = 21
CurveOrder = Literal["hilbert", "hilbert-trans", "z", "z-trans"]
Array = TypeVar("Array", np.ndarray, torch.Tensor)

# --------------------------------------------------------------------------------------------------
# The curve as a state machine.
#
# A cube symmetry ``g = (perm, flip)`` maps an octant (bit vector v over the 3 axes) to
# ``g(v)[k] = v[perm[k]] ^ flip[k]``; on a sub-cube of side 2**m it acts the same way on every bit
# level (a flip is x -> 2**m - 1 - x). Being in state g means: the curve through the current cube is
# g applied to the base curve. The base curve visits child w in octant gray(w) (axis 0 the high bit)
# and runs through that child as the base curve transformed by _CHILD_TRANSFORMS[w]; so in state g,
# octant o holds child w = gray⁻¹(g⁻¹(o)) and the child's state is g ∘ _CHILD_TRANSFORMS[w].
# These 8 transforms make the curve of Skilling's transform (checked against it in the tests).
# --------------------------------------------------------------------------------------------------

_Symmetry = tuple[tuple[int, int, int], tuple[int, int, int]]
_IDENTITY: _Symmetry = ((0, 1, 2), (0, 0, 0))
_CHILD_TRANSFORMS: tuple[_Symmetry, ...] = (
    ((1, 2, 0), (0, 0, 0)),
    ((1, 0, 2), (0, 0, 0)),
    ((0, 1, 2), (0, 0, 0)),
    ((2, 1, 0), (1, 0, 1)),
    ((2, 1, 0), (0, 0, 0)),
    ((0, 1, 2), (0, 0, 0)),
    ((1, 0, 2), (1, 1, 0)),
    ((1, 2, 0), (1, 0, 1)),
)


def _compose(g: _Symmetry, h: _Symmetry) -> _Symmetry:
    """g ∘ h (apply h first)."""
    (pg, fg), (ph, fh) = g, h
    return (
        (ph[pg[0]], ph[pg[1]], ph[pg[2]]),
        (fh[pg[0]] ^ fg[0], fh[pg[1]] ^ fg[1], fh[pg[2]] ^ fg[2]),
    )


def _inverse(g: _Symmetry) -> _Symmetry:
    perm, flip = g
    inv_perm = [0, 0, 0]
    inv_flip = [0, 0, 0]
    for k in range(3):
        inv_perm[perm[k]] = k
        inv_flip[perm[k]] = flip[k]
    return (tuple(inv_perm), tuple(inv_flip))  # type: ignore[return-value]


def _apply(g: _Symmetry, octant: int) -> int:
    v = ((octant >> 2) & 1, (octant >> 1) & 1, octant & 1)
    perm, flip = g
    u = [v[perm[k]] ^ flip[k] for k in range(3)]
    return u[0] << 2 | u[1] << 1 | u[2]


def _gray_inverse(g: int) -> int:
    return g ^ (g >> 1) ^ (g >> 2)  # exact for 3-bit values


def _hilbert_levels() -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """One-level tables: child[s, octant], next_state[s, octant], and the pre-start state.

    The pre-start state P (child 0 from octant 0, then the identity) lets a bit count be padded
    with a leading zero level and still give the curve that starts at the identity (the lookup
    tables pad up to two levels; :func:`_pad_states` finds the states for that).
    """
    pre_start = _inverse(_CHILD_TRANSFORMS[0])
    states, index = [_IDENTITY, pre_start], {_IDENTITY: 0, pre_start: 1}
    child, nxt = [], []
    for g in states:  # grows while iterating: a breadth-first closure over reachable states
        g_inv = _inverse(g)
        row_child, row_next = [], []
        for octant in range(8):
            w = _gray_inverse(_apply(g_inv, octant))
            h = _compose(g, _CHILD_TRANSFORMS[w])
            if h not in index:
                index[h] = len(states)
                states.append(h)
            row_child.append(w)
            row_next.append(index[h])
        child.append(row_child)
        nxt.append(row_next)
    child_a, next_a = np.array(child), np.array(nxt)
    assert child_a[1, 0] == 0 and next_a[1, 0] == 0, "pre-start state must lead into the identity"
    return child_a, next_a, 1


def _pad_states(child: NDArray[np.int64], nxt: NDArray[np.int64], pads: int) -> tuple[int, ...]:
    """Start state for ``p = 0 .. pads`` zero levels padded on top of the coordinates.

    Entry p is a state that, fed p all-zero octants, takes child 0 each time and then stands in
    the identity (state 0): padding with it gives the same codes as starting at the identity.
    """
    starts = [0]
    for _ in range(pads):
        prev = starts[-1]
        starts.append(next(q for q in range(child.shape[0]) if child[q, 0] == 0 and nxt[q, 0] == prev))
    return tuple(starts)


_LEVELS = 3  # tree levels per table look-up: 3 bits of each axis, 9 code bits
_CHUNK = 3 * _LEVELS
_CHUNK_MASK = (1 << _CHUNK) - 1


class _Curve(NamedTuple):
    """Three-level lookup tables of one curve; row ``s`` of each table starts at index ``512 * s``.

    Encode: index ``512 s + (a0 << 6 | a1 << 3 | a2)``, ``a_k`` 3 bits of column k, gives
    ``512 × next state | three 3-bit code groups`` (``enc``). Decode: index ``512 s + 9 code bits``
    gives ``512 × next state | a0 << 6 | a1 << 3 | a2`` (``dec``). One uint32 look-up per 3 levels.
    """

    name: str
    enc: NDArray[np.uint32]
    dec: NDArray[np.uint32]
    row_mask: int  # selects the ``512 × next state`` part of an entry
    starts: tuple[int, ...]  # 512 × start state when 0, 1 or 2 zero levels are padded on top


def _three_level(name: str, child: NDArray[np.int64], nxt: NDArray[np.int64]) -> _Curve:
    n_states = child.shape[0]
    chunk = np.arange(1 << _CHUNK)
    axes = (chunk >> 6, (chunk >> 3) & 7, chunk & 7)
    state = np.repeat(np.arange(n_states), chunk.size)  # (n_states * 512,), row-major like the tables
    code = np.zeros_like(state)
    for level in range(_LEVELS - 1, -1, -1):
        octant = np.tile(
            ((axes[0] >> level) & 1) << 2 | ((axes[1] >> level) & 1) << 1 | ((axes[2] >> level) & 1), n_states
        )
        code = code << 3 | child[state, octant]
        state = nxt[state, octant]
    index = np.arange(state.size)
    enc = (state << _CHUNK | code).astype(np.uint32)
    dec = np.zeros_like(enc)
    dec[(index >> _CHUNK) << _CHUNK | code] = state << _CHUNK | (index & _CHUNK_MASK)
    row_mask = ((1 << (n_states - 1).bit_length()) - 1) << _CHUNK
    starts = tuple(s << _CHUNK for s in _pad_states(child, nxt, _LEVELS - 1))
    return _Curve(name, enc, dec, row_mask, starts)


def _hilbert_states() -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    child, nxt, _ = _hilbert_levels()
    return child, nxt


_HILBERT = _three_level("hilbert", *_hilbert_states())
# z-order is the one-state machine whose child index is the octant itself.
_MORTON = _three_level("z", np.arange(8)[None, :], np.zeros((1, 8), np.int64))


def _steps(bits: int) -> int:
    return -(-bits // _LEVELS)


def _start(curve: _Curve, bits: int) -> int:
    return curve.starts[_LEVELS * _steps(bits) - bits]


# --------------------------------------------------------------------------------------------------
# numba kernels.
#
# Arrays reach the kernels as flat unsigned views, read as they are: 8/16/32-bit integers as
# uint8/16/32 ("narrow"), 64-bit ones as pairs of uint32 words ("wide", _LO the low word). The
# loops then hold no 64-bit loads, stores or reductions, and LLVM vectorises them 8 points wide
# with AVX2/AVX-512 gathers for the table look-ups.
#
# Inputs of _UNROLL_MIN points or more use kernels compiled per step count, with the tables frozen
# in as constants (an argument might alias the output, which stops vectorisation): per block of
# _BLOCK points, one loop computes the codes (the three coordinates are first spread into one word
# whose 9-bit groups are the table chunks, so a step costs a shift, a mask and a look-up), then a
# second loop ORs the block's input together for the range check; a reduction inside the first
# loop halves its vector width. Small inputs share one generic kernel per dtype: fewer compilations.
# --------------------------------------------------------------------------------------------------

_UNROLL_MIN = 1 << 14
_BLOCK = 1024
_LO = 0 if sys.byteorder == "little" else 1  # index of the low uint32 word of a 64-bit integer
_HI = 1 - _LO
_U32 = np.uint32
_U64 = np.uint64


def _spread_rounds(groups: int) -> list[tuple[int, int]]:
    """``v = (v | v << shift) & mask`` rounds moving 3-bit group g of v from bit 3g to bit 9g."""
    rounds = []
    for r in range(max(groups - 1, 0).bit_length() - 1, -1, -1):  # largest moves first: no overlap
        mask = 0
        for g in range(groups):
            mask |= 7 << (3 * g + 6 * (g & ~((1 << r) - 1)))
        rounds.append((6 << r, mask))
    return rounds


@numba.njit(cache=True, nogil=True, inline="always")
def _spread(v, n_rounds, s0, m0, s1, m1, s2, m2):
    """The rounds of :func:`_spread_rounds` (constants once inlined into a kernel)."""
    if n_rounds > 0:
        v = (v | (v << s0)) & m0
    if n_rounds > 1:
        v = (v | (v << s1)) & m1
    if n_rounds > 2:
        v = (v | (v << s2)) & m2
    return v


# The kernels below are closures: numba's cache keys them by their closure values, which must
# therefore be plain numbers and arrays (a captured dispatcher would defeat the on-disk cache).
@functools.cache
def _encode_unrolled(name: str, steps: int, wide_in: bool, wide_out: bool):
    curve = _HILBERT if name == "hilbert" else _MORTON
    table, row_mask = curve.enc, _U64(curve.row_mask)
    rounds = _spread_rounds(steps) + [(0, 0)] * 3
    n_rounds = len(rounds) - 3
    (s0, m0), (s1, m1), (s2, m2) = ((_U64(s), _U64(m)) for s, m in rounds[:3])
    chunk_mask = _U64(_CHUNK_MASK)
    word_mask = _U64(0xFFFFFFFF)
    stride_in = 6 if wide_in else 3
    stride_out = 2 if wide_out else 1

    @numba.njit(cache=True, nogil=True)
    def kernel(coords, start, out):
        n = out.shape[0] // stride_out
        seen = _U32(0)  # OR of all coordinates (low words): reveals values out of range
        seen_hi = _U32(0)  # OR of the high words of 64-bit coordinates: reveals negatives
        for b0 in range(0, n, _BLOCK):
            b1 = min(b0 + _BLOCK, n)
            cb = coords[stride_in * b0 : stride_in * b1]
            ob = out[stride_out * b0 : stride_out * b1]
            for i in range(b1 - b0):
                if wide_in:
                    x, y, z = cb[6 * i + _LO], cb[6 * i + 2 + _LO], cb[6 * i + 4 + _LO]
                else:
                    x, y, z = cb[3 * i], cb[3 * i + 1], cb[3 * i + 2]
                w = (
                    (_spread(_U64(x), n_rounds, s0, m0, s1, m1, s2, m2) << _U64(6))
                    | (_spread(_U64(y), n_rounds, s0, m0, s1, m1, s2, m2) << _U64(3))
                    | _spread(_U64(z), n_rounds, s0, m0, s1, m1, s2, m2)
                )
                row = _U64(start)
                code = _U64(0)
                for k in range(steps - 1, -1, -1):
                    e = _U64(table[row | ((w >> _U64(_CHUNK * k)) & chunk_mask)])
                    code = (code << _U64(_CHUNK)) | (e & chunk_mask)
                    row = e & row_mask
                if wide_out:
                    ob[2 * i + _LO] = _U32(code & word_mask)
                    ob[2 * i + _HI] = _U32(code >> _U64(32))
                else:
                    ob[i] = code
            if wide_in:
                for j in range(3 * (b1 - b0)):
                    seen = _U32(seen | cb[2 * j + _LO])
                    seen_hi = _U32(seen_hi | cb[2 * j + _HI])
            else:
                for j in range(cb.shape[0]):
                    seen = _U32(seen | cb[j])
        return seen, seen_hi

    return kernel


@functools.cache
def _decode_unrolled(name: str, steps: int, wide_in: bool, wide_out: bool):
    curve = _HILBERT if name == "hilbert" else _MORTON
    table, row_mask = curve.dec, _U64(curve.row_mask)
    chunk_mask = _U64(_CHUNK_MASK)
    stride_in = 2 if wide_in else 1
    stride_out = 6 if wide_out else 3

    @numba.njit(cache=True, nogil=True)
    def kernel(codes, start, out):
        n = codes.shape[0] // stride_in
        seen = _U32(0)
        seen_hi = _U32(0)
        for b0 in range(0, n, _BLOCK):
            b1 = min(b0 + _BLOCK, n)
            cb = codes[stride_in * b0 : stride_in * b1]
            ob = out[stride_out * b0 : stride_out * b1]
            for i in range(b1 - b0):
                if wide_in:
                    h = _U64(cb[2 * i + _LO]) | (_U64(cb[2 * i + _HI]) << _U64(32))
                else:
                    h = _U64(cb[i])
                row = _U64(start)
                x = y = z = _U64(0)
                for k in range(steps - 1, -1, -1):
                    e = _U64(table[row | ((h >> _U64(_CHUNK * k)) & chunk_mask)])
                    x = (x << _U64(3)) | ((e >> _U64(6)) & _U64(7))
                    y = (y << _U64(3)) | ((e >> _U64(3)) & _U64(7))
                    z = (z << _U64(3)) | (e & _U64(7))
                    row = e & row_mask
                if wide_out:
                    ob[6 * i + _LO], ob[6 * i + _HI] = x, 0
                    ob[6 * i + 2 + _LO], ob[6 * i + 2 + _HI] = y, 0
                    ob[6 * i + 4 + _LO], ob[6 * i + 4 + _HI] = z, 0
                else:
                    ob[3 * i], ob[3 * i + 1], ob[3 * i + 2] = x, y, z
            if wide_in:
                for j in range(b1 - b0):
                    seen = _U32(seen | cb[2 * j + _LO])
                    seen_hi = _U32(seen_hi | cb[2 * j + _HI])
            else:
                for j in range(cb.shape[0]):
                    seen = _U32(seen | cb[j])
        return seen, seen_hi

    return kernel


@numba.njit(cache=True, nogil=True)
def _encode_small(coords, wide_in, wide_out, steps, table, row_mask, start, out):
    """Generic encode (step count at run time): same views and results as the unrolled kernels."""
    stride_out = 2 if wide_out else 1
    n = out.shape[0] // stride_out
    seen = np.uint64(0)
    seen_hi = np.uint64(0)
    for i in range(n):
        if wide_in:
            x, y, z = (
                np.uint64(coords[6 * i + _LO]),
                np.uint64(coords[6 * i + 2 + _LO]),
                np.uint64(coords[6 * i + 4 + _LO]),
            )
            seen_hi |= np.uint64(coords[6 * i + _HI] | coords[6 * i + 2 + _HI] | coords[6 * i + 4 + _HI])
        else:
            x, y, z = np.uint64(coords[3 * i]), np.uint64(coords[3 * i + 1]), np.uint64(coords[3 * i + 2])
        seen |= x | y | z
        row = np.uint64(start)
        code = np.uint64(0)
        for k in range(steps - 1, -1, -1):
            s = np.uint64(_LEVELS * k)
            idx = (
                row
                | ((x >> s) & np.uint64(7)) << np.uint64(6)
                | ((y >> s) & np.uint64(7)) << np.uint64(3)
                | ((z >> s) & np.uint64(7))
            )
            e = np.uint64(table[idx])
            code = (code << np.uint64(_CHUNK)) | (e & np.uint64(_CHUNK_MASK))
            row = e & np.uint64(row_mask)
        if wide_out:
            out[2 * i + _LO] = np.uint32(code & np.uint64(0xFFFFFFFF))
            out[2 * i + _HI] = np.uint32(code >> np.uint64(32))
        else:
            out[i] = code
    return np.uint32(seen & np.uint64(0xFFFFFFFF)), np.uint32(seen_hi & np.uint64(0xFFFFFFFF))


@numba.njit(cache=True, nogil=True)
def _decode_small(codes, wide_in, wide_out, steps, table, row_mask, start, out):
    """Generic decode (step count at run time): same views and results as the unrolled kernels."""
    stride_in = 2 if wide_in else 1
    n = codes.shape[0] // stride_in
    seen = np.uint64(0)
    seen_hi = np.uint64(0)
    for i in range(n):
        if wide_in:
            lo, hi = np.uint64(codes[2 * i + _LO]), np.uint64(codes[2 * i + _HI])
        else:
            lo, hi = np.uint64(codes[i]), np.uint64(0)
        seen |= lo
        seen_hi |= hi
        h = lo | (hi << np.uint64(32))
        row = np.uint64(start)
        x = y = z = np.uint64(0)
        for k in range(steps - 1, -1, -1):
            e = np.uint64(table[row | ((h >> np.uint64(_CHUNK * k)) & np.uint64(_CHUNK_MASK))])
            x = (x << np.uint64(3)) | ((e >> np.uint64(6)) & np.uint64(7))
            y = (y << np.uint64(3)) | ((e >> np.uint64(3)) & np.uint64(7))
            z = (z << np.uint64(3)) | (e & np.uint64(7))
            row = e & np.uint64(row_mask)
        if wide_out:
            out[6 * i + _LO], out[6 * i + _HI] = np.uint32(x), 0
            out[6 * i + 2 + _LO], out[6 * i + 2 + _HI] = np.uint32(y), 0
            out[6 * i + 4 + _LO], out[6 * i + 4 + _HI] = np.uint32(z), 0
        else:
            out[3 * i], out[3 * i + 1], out[3 * i + 2] = x, y, z
    return np.uint32(seen & np.uint64(0xFFFFFFFF)), np.uint32(seen_hi & np.uint64(0xFFFFFFFF))


def _words(a: NDArray) -> tuple[NDArray, bool]:
    """Flat unsigned view of a C-contiguous native-order integer array; 64-bit as uint32 pairs."""
    flat = a.reshape(-1)
    if a.dtype.itemsize == 8:
        return flat.view(np.uint32), True
    return flat.view(f"u{a.dtype.itemsize}"), False


def _value_bits(dtype: np.dtype) -> int:
    """Bits a non-negative value of ``dtype`` can use (the sign bit excluded)."""
    return 8 * dtype.itemsize - (dtype.kind == "i")


def _out_of_range(seen: tuple[int, int], dtype: np.dtype, value_bits: int) -> bool:
    """Whether the OR of all values (low words, high words) has a bit at or above ``value_bits``."""
    lo, hi = (int(s) for s in seen)
    return ((hi << 32 | lo) >> min(value_bits, _value_bits(dtype))) != 0


def _run_encode(coords: NDArray, bits: int, curve: _Curve, out: NDArray) -> tuple[int, int]:
    src, wide_in = _words(coords)
    dst, wide_out = _words(out)
    steps, start = _steps(bits), _start(curve, bits)
    if coords.shape[0] >= _UNROLL_MIN:
        return _encode_unrolled(curve.name, steps, wide_in, wide_out)(src, start, dst)
    return _encode_small(src, wide_in, wide_out, steps, curve.enc, curve.row_mask, start, dst)


def _run_decode(codes: NDArray, bits: int, curve: _Curve, out: NDArray) -> tuple[int, int]:
    src, wide_in = _words(codes)
    dst, wide_out = _words(out)
    steps, start = _steps(bits), _start(curve, bits)
    if codes.shape[0] >= _UNROLL_MIN:
        return _decode_unrolled(curve.name, steps, wide_in, wide_out)(src, start, dst)
    return _decode_small(src, wide_in, wide_out, steps, curve.dec, curve.row_mask, start, dst)


# --------------------------------------------------------------------------------------------------
# Pure-torch versions (any device): the same tables, one gather per step over all points.
# --------------------------------------------------------------------------------------------------


@functools.cache
def _torch_tables(name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    curve = _HILBERT if name == "hilbert" else _MORTON
    return tuple(torch.as_tensor(t.astype(np.int64), device=device) for t in (curve.enc, curve.dec))  # type: ignore[return-value]


def _encode_torch(coords: torch.Tensor, bits: int, curve: _Curve, name: str = "coords") -> torch.Tensor:
    """Pure-torch encode of a validated ``(N, 3)`` integer tensor; runs on any device."""
    enc, _ = _torch_tables(curve.name, coords.device)
    c = coords.to(torch.int64)
    if c.numel() and bool(((c >> bits) != 0).any()):
        raise ValueError(f"{name} must lie in [0, 2**bits) = [0, {1 << bits}) for bits={bits}")
    x, y, z = c.unbind(1)
    row = torch.full_like(x, _start(curve, bits))
    code = torch.zeros_like(x)
    for k in reversed(range(_steps(bits))):
        s = _LEVELS * k
        e = enc[row | ((x >> s) & 7) << 6 | ((y >> s) & 7) << 3 | ((z >> s) & 7)]
        code = (code << _CHUNK) | (e & _CHUNK_MASK)
        row = e & curve.row_mask
    return code


def _decode_torch(codes: torch.Tensor, bits: int, curve: _Curve, name: str = "codes") -> torch.Tensor:
    """Pure-torch decode of a validated ``(N,)`` integer tensor; runs on any device."""
    _, dec = _torch_tables(curve.name, codes.device)
    h = codes.to(torch.int64)
    if h.numel() and bool(((h >> (3 * bits)) != 0).any()):
        raise ValueError(f"{name} must lie in [0, 8**bits) = [0, {1 << 3 * bits}) for bits={bits}")
    row = torch.full_like(h, _start(curve, bits))
    x, y, z = torch.zeros_like(h), torch.zeros_like(h), torch.zeros_like(h)
    for k in reversed(range(_steps(bits))):
        e = dec[row | ((h >> (_CHUNK * k)) & _CHUNK_MASK)]
        x, y, z = (x << 3) | ((e >> 6) & 7), (y << 3) | ((e >> 3) & 7), (z << 3) | (e & 7)
        row = e & curve.row_mask
    return torch.stack([x, y, z], 1)


# --------------------------------------------------------------------------------------------------
# Validation and dispatch.
# --------------------------------------------------------------------------------------------------


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in [1, {MAX_BITS}], got {bits!r}")
    return int(bits)


def _check_integer_tensor(t: torch.Tensor, name: str, ndim: int) -> None:
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype, got {t.dtype} (floats/NaN are not grid cells)")
    if t.dim() != ndim or (ndim == 2 and t.shape[1] != 3):
        want = "(N, 3)" if ndim == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")


def _as_integer_array(a: object, name: str, ndim: int) -> NDArray[np.integer]:
    """Checks dtype and shape; returns the values as a C-contiguous native-order array, dtype kept."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must have an integer dtype, got {arr.dtype} (floats/NaN are not grid cells)"
        )
    if arr.ndim != ndim or (ndim == 2 and arr.shape[1] != 3):
        want = "(N, 3)" if ndim == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def _check_out(out: object, like: Array, shape: tuple[int, ...], value_bits: int) -> None:
    """``out`` must be a writable C-contiguous integer array/tensor like ``like`` holding ``value_bits``."""
    if isinstance(like, torch.Tensor):
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"out must be a torch.Tensor like the input, got {type(out).__name__}")
        if out.device != like.device:
            raise ValueError(f"out is on {out.device}, the input on {like.device}")
        if out.dtype.is_floating_point or out.dtype.is_complex or out.dtype == torch.bool:
            raise ValueError(f"out must have an integer dtype, got {out.dtype}")
        if not out.is_contiguous():
            raise ValueError("out must be contiguous")
        try:
            dtype = np.dtype(str(out.dtype).removeprefix("torch."))
        except TypeError:
            raise ValueError(f"out must have a plain integer dtype, got {out.dtype}") from None
    else:
        if not isinstance(out, np.ndarray):
            raise ValueError(f"out must be a NumPy array like the input, got {type(out).__name__}")
        if out.dtype == np.bool_ or not np.issubdtype(out.dtype, np.integer):
            raise ValueError(f"out must have an integer dtype, got {out.dtype}")
        if not (out.flags.c_contiguous and out.flags.writeable and out.dtype.isnative):
            raise ValueError("out must be a writable, C-contiguous, native-byte-order array")
        dtype = out.dtype
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    if _value_bits(dtype) < value_bits:
        raise ValueError(f"out dtype {dtype} cannot hold {value_bits}-bit values")


def _encode_numpy(
    coords: object, bits: int, curve: _Curve, name: str, out: NDArray | None = None
) -> NDArray[np.integer]:
    arr = _as_integer_array(coords, name, 2)
    if out is None:
        out = np.empty(arr.shape[0], np.int64)
    seen = _run_encode(arr, bits, curve, out)
    if _out_of_range(seen, arr.dtype, bits):
        raise ValueError(f"{name} must lie in [0, 2**bits) = [0, {1 << bits}) for bits={bits}")
    return out


def _decode_numpy(
    codes: object, bits: int, curve: _Curve, name: str, out: NDArray | None = None
) -> NDArray[np.integer]:
    arr = _as_integer_array(codes, name, 1)
    if out is None:
        out = np.empty((arr.shape[0], 3), np.int64)
    seen = _run_decode(arr, bits, curve, out)
    if _out_of_range(seen, arr.dtype, 3 * bits):
        raise ValueError(f"{name} must lie in [0, 8**bits) = [0, {1 << 3 * bits}) for bits={bits}")
    return out


def _encode(coords: Array, bits: int, curve: _Curve, name: str = "coords", out: Array | None = None) -> Array:
    bits = _check_bits(bits)
    if isinstance(coords, torch.Tensor):
        _check_integer_tensor(coords, name, 2)
        if out is not None:
            _check_out(out, coords, (coords.shape[0],), 3 * bits)
        if coords.device.type != "cpu":
            codes = _encode_torch(coords, bits, curve, name)
            return codes if out is None else out.copy_(codes)
        result = _encode_numpy(coords.numpy(), bits, curve, name, None if out is None else out.numpy())
        return torch.from_numpy(result) if out is None else out
    arr = _as_integer_array(coords, name, 2)
    if out is not None:
        _check_out(out, arr, (arr.shape[0],), 3 * bits)
    return _encode_numpy(arr, bits, curve, name, out)


def _decode(codes: Array, bits: int, curve: _Curve, name: str = "codes", out: Array | None = None) -> Array:
    bits = _check_bits(bits)
    if isinstance(codes, torch.Tensor):
        _check_integer_tensor(codes, name, 1)
        if out is not None:
            _check_out(out, codes, (codes.shape[0], 3), bits)
        if codes.device.type != "cpu":
            cells = _decode_torch(codes, bits, curve, name)
            return cells if out is None else out.copy_(cells)
        result = _decode_numpy(codes.numpy(), bits, curve, name, None if out is None else out.numpy())
        return torch.from_numpy(result) if out is None else out
    arr = _as_integer_array(codes, name, 1)
    if out is not None:
        _check_out(out, arr, (arr.shape[0], 3), bits)
    return _decode_numpy(arr, bits, curve, name, out)


# --------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------


def encode(coords: Array, bits: int, out: Array | None = None) -> Array:
    """Hilbert codes of grid cells.

    Args:
        coords: ``(N, 3)`` integer array or tensor, columns ``(c0, c1, c2)`` (``x, y, z`` by
            convention), each in ``[0, 2**bits)``.
        bits: bits per axis, 1..21.
        out: optional ``(N,)`` C-contiguous integer array or tensor (same kind and device as
            ``coords``) to write the codes into; any integer dtype that holds ``3 * bits`` bits
            (int64 always; uint32 up to 10 bits). Its contents are unspecified if this raises.

    Returns:
        ``(N,)`` int64 codes in ``[0, 8**bits)`` (``out`` when given), NumPy for NumPy input, a
        tensor on the input's device for tensor input.

    Raises:
        ValueError: non-integer dtype, wrong shape, coordinates out of range, bad ``bits`` or ``out``.
    """
    return _encode(coords, bits, _HILBERT, out=out)


def decode(codes: Array, bits: int, out: Array | None = None) -> Array:
    """Inverse of :func:`encode`: ``(N,)`` integer codes in ``[0, 8**bits)`` → ``(N, 3)`` int64 cells.

    ``out``: optional ``(N, 3)`` C-contiguous integer array or tensor to write the cells into, any
    integer dtype that holds ``bits`` bits (e.g. uint16 up to 16 bits); it is returned.
    """
    return _decode(codes, bits, _HILBERT, out=out)


def encode_morton(coords: Array, bits: int, out: Array | None = None) -> Array:
    """Z-order (Morton) codes: same arguments, conventions and result as :func:`encode`."""
    return _encode(coords, bits, _MORTON, out=out)


def decode_morton(codes: Array, bits: int, out: Array | None = None) -> Array:
    """Inverse of :func:`encode_morton`: ``(N,)`` codes → ``(N, 3)`` int64 cells (or ``out``)."""
    return _decode(codes, bits, _MORTON, out=out)


def _check_order(order: str) -> None:
    if order not in ("hilbert", "hilbert-trans", "z", "z-trans"):
        raise ValueError(f"order must be one of 'hilbert', 'hilbert-trans', 'z', 'z-trans', got {order!r}")


def _swap_c0_c1(coords: Array) -> Array:
    return coords[:, [1, 0, 2]]


def serialize(coords: Array, order: CurveOrder, bits: int, batch: Array | None = None) -> Array:
    """Codes of ``(N, 3)`` grid cells along one of PTv3's four orders, batch packed on top.

    ``"hilbert"`` / ``"z"`` encode the columns as given, ``"hilbert-trans"`` / ``"z-trans"`` with
    columns ``c0`` and ``c1`` swapped. With ``batch`` (``(N,)`` integer, same kind and device as
    ``coords``) the result is ``code | batch << 3 * bits`` (see :func:`pack_batch`).

    Returns:
        ``(N,)`` int64, NumPy or torch like ``coords``.
    """
    _check_order(order)
    if order.endswith("-trans"):
        if isinstance(coords, torch.Tensor):
            _check_integer_tensor(coords, "coords", 2)
        else:
            coords = _as_integer_array(coords, "coords", 2)
        coords = _swap_c0_c1(coords)
    curve = _HILBERT if order.startswith("hilbert") else _MORTON
    codes = _encode(coords, bits, curve)
    return codes if batch is None else pack_batch(codes, batch, bits)


def deserialize(codes: Array, order: CurveOrder, bits: int) -> Array:
    """Inverse of :func:`serialize` without batch (unpack first): ``(N,)`` → ``(N, 3)`` int64."""
    _check_order(order)
    coords = _decode(codes, bits, _HILBERT if order.startswith("hilbert") else _MORTON)
    return _swap_c0_c1(coords) if order.endswith("-trans") else coords


def _check_batch(batch: object, like: Array, name: str = "batch") -> Array:
    """``batch`` as an int64 array/tensor matching ``like``'s length, kind and device."""
    n = like.shape[0]
    if isinstance(like, torch.Tensor):
        if not isinstance(batch, torch.Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor like the other input, got {type(batch).__name__}"
            )
        if batch.device != like.device:
            raise ValueError(f"{name} is on {batch.device}, the other input on {like.device}")
        _check_integer_tensor(batch, name, 1)
        out = batch.to(torch.int64)
    else:
        if isinstance(batch, torch.Tensor):
            raise ValueError(f"{name} must be a NumPy array like the other input, got a torch.Tensor")
        out = _as_integer_array(batch, name, 1).astype(np.int64, copy=False)
    if out.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(out.shape)}")
    return out


def pack_batch(codes: Array, batch: Array, bits: int) -> Array:
    """Put batch indices above the code bits: ``codes | batch << 3 * bits``.

    Args:
        codes: ``(N,)`` int64 codes in ``[0, 8**bits)``.
        batch: ``(N,)`` integers in ``[0, 2**(63 - 3 * bits))``, same kind/device as ``codes``.
        bits: bits per axis the codes were made with.

    Returns:
        ``(N,)`` int64; sorting it sorts by ``(batch, code)``.
    """
    bits = _check_bits(bits)
    b = _check_batch(batch, codes)
    limit = 1 << (63 - 3 * bits)
    if b.shape[0] and (int(b.min()) < 0 or int(b.max()) >= limit):
        raise ValueError(f"batch must lie in [0, {limit}) to fit above {3 * bits} code bits in an int64")
    return codes | (b << (3 * bits))


def unpack_batch(packed: Array, bits: int) -> tuple[Array, Array]:
    """Split :func:`pack_batch` output into ``(codes, batch)``, both ``(N,)`` int64."""
    bits = _check_bits(bits)
    return packed & ((1 << (3 * bits)) - 1), packed >> (3 * bits)


@dataclass(frozen=True)
class Serialization:
    """Points serialized along a curve (all arrays NumPy or all torch on one device).

    Attributes:
        codes: ``(N,)`` int64 packed codes ``code | batch << 3 * bits``, in input point order.
        order: ``(N,)`` int64 permutation sorting the points by ``(batch, code)``, stable:
            ``codes[order]`` is non-decreasing.
        inverse: ``(N,)`` int64 inverse permutation: ``order[inverse] == arange(N)``.
        grid_coords: ``(N, 3)`` int64 cells ``floor(xyz / grid_size) - per-batch minimum``.
        bits: bits per axis used for the codes.
        curve: which of the four orders made the codes.
    """

    codes: np.ndarray | torch.Tensor
    order: np.ndarray | torch.Tensor
    inverse: np.ndarray | torch.Tensor
    grid_coords: np.ndarray | torch.Tensor
    bits: int
    curve: CurveOrder


def serialize_points(
    xyz: Array,
    grid_size: float | tuple[float, float, float],
    order: CurveOrder = "hilbert",
    batch: Array | None = None,
    bits: int | None = None,
) -> Serialization:
    """Quantise points to a grid and sort them along a curve.

    Args:
        xyz: ``(N, 3)`` (or ``(N, C >= 3)``, first three columns used) float points, metres.
        grid_size: cell size, one float or one per axis, > 0.
        order: ``"hilbert"``, ``"hilbert-trans"``, ``"z"`` or ``"z-trans"``.
        batch: ``(N,)`` non-negative integer cloud index per point; ``None`` means one cloud.
        bits: bits per axis; ``None`` picks the fewest that hold the largest grid coordinate.

    Returns:
        A :class:`Serialization`; everything NumPy or torch (on ``xyz``'s device) like ``xyz``.

    Raises:
        ValueError: bad shapes/dtypes, NaN or infinite points, non-positive ``grid_size``, a grid
        needing more than 21 bits per axis, ``bits`` too small, bad ``batch``.
    """
    _check_order(order)
    is_torch = isinstance(xyz, torch.Tensor)
    pts = xyz if is_torch else np.asarray(xyz)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"xyz must have shape (N, 3) or (N, C >= 3), got {tuple(pts.shape)}")
    if not (pts.dtype.is_floating_point if is_torch else np.issubdtype(pts.dtype, np.floating)):
        raise ValueError(f"xyz must be floating point, got {pts.dtype}")
    pts = pts[:, :3]
    if not bool((torch.isfinite(pts) if is_torch else np.isfinite(pts)).all()):
        raise ValueError("xyz contains NaN or infinite values")
    size = np.broadcast_to(np.asarray(grid_size, np.float64), (3,)).copy()
    if not (np.isfinite(size).all() and (size > 0).all()):
        raise ValueError(f"grid_size must be positive and finite, got {grid_size!r}")
    n = pts.shape[0]

    if is_torch:
        cells = torch.floor(pts / torch.as_tensor(size, dtype=pts.dtype, device=pts.device)).to(torch.int64)
    else:
        cells = np.floor(pts / size).astype(np.int64)

    if batch is None:  # one cloud: subtract its minimum
        grid = cells - (cells.amin(0) if is_torch else cells.min(0)) if n else cells
    else:
        batch = _check_batch(batch, pts)
        if n and int(batch.min()) < 0:
            raise ValueError("batch must be non-negative")
        n_batch = int(batch.max()) + 1 if n else 0
        if is_torch:
            lows = torch.zeros((n_batch, 3), dtype=torch.int64, device=pts.device)
            lows = lows.scatter_reduce(0, batch[:, None].expand(-1, 3), cells, "amin", include_self=False)
        else:
            lows = np.full((n_batch, 3), np.iinfo(np.int64).max, np.int64)
            np.minimum.at(lows, batch, cells)
        grid = cells - lows[batch]

    top = int(grid.max()) if n else 0
    if bits is None:
        bits = max(1, top.bit_length())
        if bits > MAX_BITS:
            raise ValueError(
                f"grid_size {grid_size!r} gives a grid of 2**{bits} cells per axis; at most 2**21"
            )
    else:
        bits = _check_bits(bits)
        if top >= 1 << bits:
            raise ValueError(f"bits={bits} cannot hold grid coordinate {top}; need {top.bit_length()}")

    codes = serialize(grid, order, bits, batch=batch)
    if is_torch:
        perm = torch.sort(codes, stable=True).indices
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n, device=perm.device)
    else:
        perm = np.argsort(codes, kind="stable")
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(n)
    return Serialization(codes=codes, order=perm, inverse=inverse, grid_coords=grid, bits=bits, curve=order)
