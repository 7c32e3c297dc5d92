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
check costs one device synchronisation). Any integer dtype is accepted (int32 and int64 are used as
they are, others converted); results are always int64. Empty input gives empty output:
``(0, 3)`` coordinates ↔ ``(0,)`` codes.

How it is fast: the curve is a finite state machine whose states are cube symmetries. At import
the state graph is derived from the 8 child transforms below, then tabulated two tree levels at a
time (64-entry rows indexed by a state and 2 bits of each axis), so a 10-bit encode is 5 table
look-ups per point. Inputs of 16 Ki points or more use kernels compiled per step count, whose
loop unrolls: on one core of the development AMD EPYC, ~190 M points/s encode and ~170 M decode at
10 bits (``benchmarks/hilbert.py`` in the repository), 8-10x a numba Skilling transform.
"""

from __future__ import annotations

import functools
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

    The pre-start state P (child 0 from octant 0, then the identity) lets an odd bit count be
    padded with one leading zero level and still give the curve that starts at the identity.
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


_LANE = 21  # decode accumulates the three axes in 21-bit lanes of one int64: c0 << 42 | c1 << 21 | c2
_LANE_MASK = (1 << _LANE) - 1


class _Curve(NamedTuple):
    """Two-level lookup tables of one curve. Row ``s`` of each table starts at index ``64 * s``.

    Encode: index ``64 s + (a0 << 4 | a1 << 2 | a2)`` with ``a_k`` 2 bits of column k →
    ``enc_state`` (64 × next state, uint16) and ``enc_code`` (two 3-bit groups, uint8).
    Decode: index ``64 s + code chunk`` → ``dec_state`` and ``dec_lanes`` (the 2-bit pieces of
    the three columns placed in their lanes, int64).
    """

    name: str
    enc_state: NDArray[np.uint16]
    enc_code: NDArray[np.uint8]
    dec_state: NDArray[np.uint16]
    dec_lanes: NDArray[np.int64]
    start_even: int  # 64 × start state when bits is even
    start_odd: int  # 64 × start state when bits is odd (one zero level padded on top)


def _two_level(name: str, child: NDArray[np.int64], nxt: NDArray[np.int64], pre_start: int) -> _Curve:
    n_states = child.shape[0]
    enc_state = np.zeros(64 * n_states, np.uint16)
    enc_code = np.zeros(64 * n_states, np.uint8)
    dec_state = np.zeros(64 * n_states, np.uint16)
    dec_lanes = np.zeros(64 * n_states, np.int64)
    for s in range(n_states):
        for chunk in range(64):  # chunk = a0 << 4 | a1 << 2 | a2, 2 bits per axis (hi level first)
            a = (chunk >> 4, (chunk >> 2) & 3, chunk & 3)
            hi = (a[0] >> 1) << 2 | (a[1] >> 1) << 1 | (a[2] >> 1)
            lo = (a[0] & 1) << 2 | (a[1] & 1) << 1 | (a[2] & 1)
            s1 = nxt[s, hi]
            s2 = nxt[s1, lo]
            code = int(child[s, hi]) << 3 | int(child[s1, lo])
            enc_state[64 * s + chunk] = 64 * s2
            enc_code[64 * s + chunk] = code
            dec_state[64 * s + code] = 64 * s2
            dec_lanes[64 * s + code] = a[0] << (2 * _LANE) | a[1] << _LANE | a[2]
    return _Curve(name, enc_state, enc_code, dec_state, dec_lanes, 0, 64 * pre_start)


_HILBERT = _two_level("hilbert", *_hilbert_levels())
# z-order is the one-state machine whose child index is the octant itself.
_MORTON = _two_level("z", np.arange(8)[None, :], np.zeros((1, 8), np.int64), 0)


# --------------------------------------------------------------------------------------------------
# numba kernels. The loops take the step count (2 bits per axis per step) as an argument; inputs of
# _UNROLL_MIN points or more go through a variant compiled per step count, where the step loop
# unrolls (about 1.5x faster). Small inputs share one generic kernel: fewer compilations.
# --------------------------------------------------------------------------------------------------

_UNROLL_MIN = 1 << 14


@numba.njit(cache=True, nogil=True, inline="always")
def _encode_loop(coords, steps, state_table, code_table, start, out):
    seen = np.int64(0)  # OR of all coordinates: reveals negatives and out-of-range values
    for i in range(coords.shape[0]):
        x = np.int64(coords[i, 0])
        y = np.int64(coords[i, 1])
        z = np.int64(coords[i, 2])
        seen |= x | y | z
        row = np.int64(start)
        code = np.int64(0)
        for k in range(steps - 1, -1, -1):
            s = 2 * k
            idx = row | ((x >> s) & 3) << 4 | ((y >> s) & 3) << 2 | ((z >> s) & 3)
            row = np.int64(state_table[idx])
            code = (code << 6) | np.int64(code_table[idx])
        out[i] = code
    return seen


@numba.njit(cache=True, nogil=True, inline="always")
def _decode_loop(codes, steps, state_table, lane_table, start, out):
    seen = np.int64(0)  # OR of all codes
    for i in range(codes.shape[0]):
        code = codes[i]
        seen |= code
        row = np.int64(start)
        lanes = np.int64(0)
        for k in range(steps - 1, -1, -1):
            idx = row | ((code >> (6 * k)) & 63)
            row = np.int64(state_table[idx])
            lanes = (lanes << 2) | lane_table[idx]
        out[i, 0] = lanes >> (2 * _LANE)
        out[i, 1] = (lanes >> _LANE) & _LANE_MASK
        out[i, 2] = lanes & _LANE_MASK
    return seen


@functools.cache
def _encode_unrolled(steps: int):
    @numba.njit(cache=True, nogil=True)
    def kernel(coords, state_table, code_table, start, out):
        return _encode_loop(coords, steps, state_table, code_table, start, out)

    return kernel


@functools.cache
def _decode_unrolled(steps: int):
    @numba.njit(cache=True, nogil=True)
    def kernel(codes, state_table, lane_table, start, out):
        return _decode_loop(codes, steps, state_table, lane_table, start, out)

    return kernel


def _run_encode(coords: NDArray, steps: int, curve: _Curve, start: int, out: NDArray[np.int64]) -> int:
    if coords.shape[0] >= _UNROLL_MIN:
        return _encode_unrolled(steps)(coords, curve.enc_state, curve.enc_code, start, out)
    return _encode_loop(coords, steps, curve.enc_state, curve.enc_code, start, out)


def _run_decode(
    codes: NDArray[np.int64], steps: int, curve: _Curve, start: int, out: NDArray[np.int64]
) -> int:
    if codes.shape[0] >= _UNROLL_MIN:
        return _decode_unrolled(steps)(codes, curve.dec_state, curve.dec_lanes, start, out)
    return _decode_loop(codes, steps, curve.dec_state, curve.dec_lanes, start, out)


# --------------------------------------------------------------------------------------------------
# Pure-torch versions (any device): the same tables, one gather per step over all points.
# --------------------------------------------------------------------------------------------------


@functools.cache
def _torch_tables(name: str, device: torch.device) -> tuple[torch.Tensor, ...]:
    curve = _HILBERT if name == "hilbert" else _MORTON
    return tuple(
        torch.as_tensor(t.astype(np.int64), device=device)
        for t in (curve.enc_state, curve.enc_code, curve.dec_state, curve.dec_lanes)
    )


def _encode_torch(coords: torch.Tensor, bits: int, curve: _Curve, name: str = "coords") -> torch.Tensor:
    """Pure-torch encode of a validated ``(N, 3)`` integer tensor; runs on any device."""
    enc_state, enc_code, _, _ = _torch_tables(curve.name, coords.device)
    c = coords.to(torch.int64)
    if c.numel() and bool(((c >> bits) != 0).any()):
        raise ValueError(f"{name} must lie in [0, 2**bits) = [0, {1 << bits}) for bits={bits}")
    x, y, z = c.unbind(1)
    row = torch.full_like(x, curve.start_odd if bits % 2 else curve.start_even)
    code = torch.zeros_like(x)
    for k in reversed(range((bits + 1) // 2)):
        s = 2 * k
        idx = row | ((x >> s) & 3) << 4 | ((y >> s) & 3) << 2 | ((z >> s) & 3)
        row = enc_state[idx]
        code = (code << 6) | enc_code[idx]
    return code


def _decode_torch(codes: torch.Tensor, bits: int, curve: _Curve, name: str = "codes") -> torch.Tensor:
    """Pure-torch decode of a validated ``(N,)`` integer tensor; runs on any device."""
    _, _, dec_state, dec_lanes = _torch_tables(curve.name, codes.device)
    h = codes.to(torch.int64)
    if h.numel() and bool(((h >> (3 * bits)) != 0).any()):
        raise ValueError(f"{name} must lie in [0, 8**bits) = [0, {1 << 3 * bits}) for bits={bits}")
    row = torch.full_like(h, curve.start_odd if bits % 2 else curve.start_even)
    lanes = torch.zeros_like(h)
    for k in reversed(range((bits + 1) // 2)):
        idx = row | ((h >> (6 * k)) & 63)
        row = dec_state[idx]
        lanes = (lanes << 2) | dec_lanes[idx]
    return torch.stack([lanes >> (2 * _LANE), (lanes >> _LANE) & _LANE_MASK, lanes & _LANE_MASK], 1)


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


def _as_integer_array(a: object, name: str, ndim: int) -> NDArray[np.int32] | NDArray[np.int64]:
    """Checks dtype and shape; returns a C-contiguous int32 or int64 array."""
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must have an integer dtype, got {arr.dtype} (floats/NaN are not grid cells)"
        )
    if arr.ndim != ndim or (ndim == 2 and arr.shape[1] != 3):
        want = "(N, 3)" if ndim == 2 else "(N,)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.dtype not in (np.int32, np.int64):
        arr = arr.astype(np.int64)  # uint64 above 2**63 wraps negative and is rejected below
    return np.ascontiguousarray(arr)


def _encode_numpy(coords: object, bits: int, curve: _Curve, name: str) -> NDArray[np.int64]:
    arr = _as_integer_array(coords, name, 2)
    out = np.empty(arr.shape[0], np.int64)
    start = curve.start_odd if bits % 2 else curve.start_even
    seen = _run_encode(arr, (bits + 1) // 2, curve, start, out)
    if seen >> bits:
        raise ValueError(f"{name} must lie in [0, 2**bits) = [0, {1 << bits}) for bits={bits}")
    return out


def _decode_numpy(codes: object, bits: int, curve: _Curve, name: str) -> NDArray[np.int64]:
    arr = _as_integer_array(codes, name, 1).astype(np.int64, copy=False)
    out = np.empty((arr.shape[0], 3), np.int64)
    start = curve.start_odd if bits % 2 else curve.start_even
    seen = _run_decode(arr, (bits + 1) // 2, curve, start, out)
    if seen >> (3 * bits):
        raise ValueError(f"{name} must lie in [0, 8**bits) = [0, {1 << 3 * bits}) for bits={bits}")
    return out


def _encode(coords: Array, bits: int, curve: _Curve, name: str = "coords") -> Array:
    bits = _check_bits(bits)
    if isinstance(coords, torch.Tensor):
        _check_integer_tensor(coords, name, 2)
        if coords.device.type != "cpu":
            return _encode_torch(coords, bits, curve, name)
        return torch.from_numpy(_encode_numpy(coords.numpy(), bits, curve, name))
    return _encode_numpy(coords, bits, curve, name)


def _decode(codes: Array, bits: int, curve: _Curve, name: str = "codes") -> Array:
    bits = _check_bits(bits)
    if isinstance(codes, torch.Tensor):
        _check_integer_tensor(codes, name, 1)
        if codes.device.type != "cpu":
            return _decode_torch(codes, bits, curve, name)
        return torch.from_numpy(_decode_numpy(codes.numpy(), bits, curve, name))
    return _decode_numpy(codes, bits, curve, name)


# --------------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------------


def encode(coords: Array, bits: int) -> Array:
    """Hilbert codes of grid cells.

    Args:
        coords: ``(N, 3)`` integer array or tensor, columns ``(c0, c1, c2)`` (``x, y, z`` by
            convention), each in ``[0, 2**bits)``.
        bits: bits per axis, 1..21.

    Returns:
        ``(N,)`` int64 codes in ``[0, 8**bits)``, NumPy for NumPy input, a tensor on the input's
        device for tensor input.

    Raises:
        ValueError: non-integer dtype, wrong shape, coordinates out of range, bad ``bits``.
    """
    return _encode(coords, bits, _HILBERT)


def decode(codes: Array, bits: int) -> Array:
    """Inverse of :func:`encode`: ``(N,)`` integer codes in ``[0, 8**bits)`` → ``(N, 3)`` int64 cells."""
    return _decode(codes, bits, _HILBERT)


def encode_morton(coords: Array, bits: int) -> Array:
    """Z-order (Morton) codes: same arguments, conventions and result as :func:`encode`."""
    return _encode(coords, bits, _MORTON)


def decode_morton(codes: Array, bits: int) -> Array:
    """Inverse of :func:`encode_morton`: ``(N,)`` codes → ``(N, 3)`` int64 cells."""
    return _decode(codes, bits, _MORTON)


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
