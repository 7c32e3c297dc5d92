"""Speed of :mod:`perception.ops.hilbert` against two public peers, on the same input.

Peers: a straightforward numba port of Skilling's transform (written here, one point at a time)
and ``numpy-hilbert-curve`` (PyPI, module ``hilbert``; skipped with a note if not installed).
Slow peers run on a prefix of the same random coordinates. Every peer's codes are checked against
ours. Called from ``tools/benchmark.py``; runnable alone with ``python -m benchmarks.hilbert``.

Optionally, side by side with HilbertSFC (github.com/remcofl/HilbertSFC, MIT; Python >= 3.12, so
not installable here): ``python tools/benchmark.py hilbert --hilbertsfc /path/to/copy`` imports
``hilbertsfc`` from a local copy of its source (the folder holding the ``hilbertsfc`` package, or
the repository with ``src/``; on Python 3.11 its PEP 695 ``type X = ...`` aliases and generic
``def f[T, **P]`` parameters must first be rewritten as plain assignments / plain functions) and
times both libraries on the same coordinates, one thread, best of 7. Nothing is imported from it
unless the option is given.

HilbertSFC draws a different 3D Hilbert curve: its codes are not ours under any of the 48 axis
permutations and flips, nor reversed (checked at 2-6, 10, 11, 16 and 21 bits); its end corner
moves with the bit count's parity, so ``encode(c >> 1, bits - 1) == encode(c, bits) >> 3`` does
not hold for it. Both are one table look-up per chunk of tree levels, so the work per point is
comparable; instead of comparing codes the side-by-side checks each library's round trip, and
that our codes are the same from every input dtype and through ``out=``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
from numpy.typing import NDArray

from benchmarks.timing import best_seconds, time_in_turns
from perception.ops import hilbert

__all__ = ["bench_hilbert", "bench_hilbertsfc"]


@numba.njit(cache=True, nogil=True)
def _skilling_encode_nb(coords, bits, out):
    """Skilling's AxesToTranspose per point (3 axes), index read X[0] first, MSB first."""
    for i in range(coords.shape[0]):
        x0, x1, x2 = np.int64(coords[i, 0]), np.int64(coords[i, 1]), np.int64(coords[i, 2])
        q = np.int64(1) << (bits - 1)
        while q > 1:  # inverse undo, axes 0, 1, 2 in turn
            p = q - 1
            if x0 & q:
                x0 ^= p
            if x1 & q:
                x0 ^= p
            else:
                t = (x0 ^ x1) & p
                x0 ^= t
                x1 ^= t
            if x2 & q:
                x0 ^= p
            else:
                t = (x0 ^ x2) & p
                x0 ^= t
                x2 ^= t
            q >>= 1
        x1 ^= x0  # Gray encode
        x2 ^= x1
        t = np.int64(0)
        q = np.int64(1) << (bits - 1)
        while q > 1:
            if x2 & q:
                t ^= q - 1
            q >>= 1
        x0 ^= t
        x1 ^= t
        x2 ^= t
        code = np.int64(0)
        for level in range(bits - 1, -1, -1):
            code = (code << 3) | ((x0 >> level) & 1) << 2 | ((x1 >> level) & 1) << 1 | ((x2 >> level) & 1)
        out[i] = code


@numba.njit(cache=True, nogil=True)
def _skilling_decode_nb(codes, bits, out):
    """Skilling's TransposeToAxes per point (3 axes)."""
    for i in range(codes.shape[0]):
        code = np.int64(codes[i])
        x0 = x1 = x2 = np.int64(0)
        for level in range(bits - 1, -1, -1):
            group = code >> (3 * level)
            x0 |= ((group >> 2) & 1) << level
            x1 |= ((group >> 1) & 1) << level
            x2 |= (group & 1) << level
        t = x2 >> 1  # Gray decode
        x2 ^= x1
        x1 ^= x0
        x0 ^= t
        q = np.int64(2)
        while q != np.int64(1) << bits:  # undo excess work, axes 2, 1, 0 in turn
            p = q - 1
            if x2 & q:
                x0 ^= p
            else:
                t = (x0 ^ x2) & p
                x0 ^= t
                x2 ^= t
            if x1 & q:
                x0 ^= p
            else:
                t = (x0 ^ x1) & p
                x0 ^= t
                x1 ^= t
            if x0 & q:
                x0 ^= p
            q <<= 1
        out[i, 0] = x0
        out[i, 1] = x1
        out[i, 2] = x2


def _skilling_encode(coords: NDArray, bits: int) -> NDArray[np.int64]:
    out = np.empty(coords.shape[0], np.int64)
    _skilling_encode_nb(coords, bits, out)
    return out


def _skilling_decode(codes: NDArray[np.int64], bits: int) -> NDArray[np.int64]:
    out = np.empty((codes.shape[0], 3), np.int64)
    _skilling_decode_nb(codes, bits, out)
    return out


def _two_threads(
    pool: ThreadPoolExecutor, fn: Callable[[NDArray, int], NDArray], data: NDArray, bits: int
) -> Callable[[], object]:
    """The same op on two halves in two threads (the numba kernels release the GIL)."""
    half = data.shape[0] // 2

    def run() -> object:
        return list(pool.map(lambda part: fn(part, bits), (data[:half], data[half:])))

    return run


def bench_hilbert(
    n: int = 10_000_000,
    bits: int = 10,
    repeats: int = 3,
    skilling_points: int = 2_000_000,
    numpy_hilbert_points: int = 200_000,
    verbose: bool = True,
) -> list[dict]:
    """Encode / decode throughput of ours vs the peers, single-threaded unless ``threads`` says 2.

    Returns one dict per measurement: ``impl``, ``op``, ``dtype``, ``points``, ``threads``,
    ``seconds`` (best of ``repeats``), ``mpts_per_s`` and, for peers, ``ours_over_peer`` (our
    single-thread Mpts/s on the same op and dtype divided by theirs) and ``agrees`` (codes equal ours).
    """
    rng = np.random.default_rng(0)
    base = rng.integers(0, 1 << bits, (n, 3), dtype=np.int64)
    rows: list[dict] = []

    def record(impl: str, op: str, dtype: str, points: int, threads: int, seconds: float, **extra) -> dict:
        row = {"impl": impl, "op": op, "dtype": dtype, "points": points, "threads": threads}
        row |= {"seconds": seconds, "mpts_per_s": points / seconds / 1e6, **extra}
        rows.append(row)
        return row

    ours: dict[tuple[str, str], float] = {}
    for dtype in ("int32", "int64"):
        coords = base.astype(dtype)
        codes = hilbert.encode(coords, bits)
        for op, fn, data in (
            ("encode", hilbert.encode, coords),
            ("decode", hilbert.decode, codes),
            ("encode_morton", hilbert.encode_morton, coords),
        ):
            row = record("ours", op, dtype, n, 1, best_seconds(lambda fn=fn, d=data: fn(d, bits), repeats))
            ours[op, dtype] = row["mpts_per_s"]
            with ThreadPoolExecutor(2) as pool:
                seconds = best_seconds(_two_threads(pool, fn, data, bits), repeats)
            record("ours", op, dtype, n, 2, seconds)

        m = min(skilling_points, n)
        sk_codes = _skilling_encode(coords[:m], bits)
        agrees = bool((sk_codes == codes[:m]).all() and (_skilling_decode(codes[:m], bits) == base[:m]).all())
        for op, fn, data in (
            ("encode", _skilling_encode, coords[:m]),
            ("decode", _skilling_decode, codes[:m]),
        ):
            seconds = best_seconds(lambda fn=fn, d=data: fn(d, bits), repeats)
            row = record("numba-skilling", op, dtype, m, 1, seconds, agrees=agrees)
            row["ours_over_peer"] = ours[op, dtype] / row["mpts_per_s"]

        try:
            import hilbert as numpy_hilbert  # numpy-hilbert-curve
        except ImportError:
            rows.append(
                {"impl": "numpy-hilbert-curve", "note": "not installed (pip install numpy-hilbert-curve)"}
            )
        else:
            k = min(numpy_hilbert_points, n)
            part, part_codes = np.ascontiguousarray(coords[:k]), codes[:k].astype(np.uint64)
            agrees = bool((numpy_hilbert.encode(part, 3, bits).astype(np.int64) == codes[:k]).all())
            for op, call in (
                ("encode", lambda p=part: numpy_hilbert.encode(p, 3, bits)),
                ("decode", lambda c=part_codes: numpy_hilbert.decode(c, 3, bits)),
            ):
                row = record("numpy-hilbert-curve", op, dtype, k, 1, best_seconds(call, 1), agrees=agrees)
                row["ours_over_peer"] = ours[op, dtype] / row["mpts_per_s"]
        del coords, codes

    if verbose:
        print(f"Hilbert serialization, {bits} bits per axis, numba threads unused (no prange)")
        print(
            f"{'impl':<20} {'op':<14} {'dtype':<6} {'points':>10} {'thr':>3} {'Mpts/s':>9} {'ours/peer':>10}"
        )
        for r in rows:
            if "note" in r:
                print(f"{r['impl']:<20} {r['note']}")
                continue
            ratio = f"{r['ours_over_peer']:.1f}x" if "ours_over_peer" in r else ""
            ok = "" if r.get("agrees", True) else "  DISAGREES WITH OURS"
            print(
                f"{r['impl']:<20} {r['op']:<14} {r['dtype']:<6} {r['points']:>10} {r['threads']:>3} "
                f"{r['mpts_per_s']:>9.1f} {ratio:>10}{ok}"
            )
    return rows


def _import_hilbertsfc(path: str | Path):
    """``hilbertsfc`` from a local source copy (the package's parent folder or the repository)."""
    root = Path(path).expanduser().resolve()
    for candidate in (root, root / "src", root.parent):
        if (candidate / "hilbertsfc" / "__init__.py").is_file():
            sys.path.insert(0, str(candidate))
            break
    else:
        raise SystemExit(
            f"no hilbertsfc package under {root} (expected hilbertsfc/__init__.py or src/hilbertsfc/)"
        )
    import hilbertsfc

    return hilbertsfc


def bench_hilbertsfc(
    path: str | Path,
    n: int = 4_000_000,
    bits_list: tuple[int, ...] = (10, 16),
    repeats: int = 7,
    dtypes: tuple[str, ...] = ("uint16", "int32", "uint32", "int64"),
    verbose: bool = True,
) -> list[dict]:
    """Ours beside HilbertSFC, one thread, best of ``repeats``, all calls taking turns.

    Per (op, bits, input dtype) one row of Mpts/s:

    - ``ours``: the default call (``(N, 3)`` array in, int64 codes out; decode: int64 codes in,
      ``(N, 3)`` int64 cells out, freshly allocated like every default call here).
    - ``ours_out``: ours writing into a preallocated array of HilbertSFC's output width (encode:
      uint32 codes up to 10 bits, else int64; decode: ``(N, 3)`` uint16 cells).
    - ``hilbertsfc``: HilbertSFC on three contiguous columns of the same dtype (its best layout;
      encode output the smallest unsigned type, decode from its own codes to three uint16 arrays).
    - ``hilbertsfc_views``: HilbertSFC handed the three columns of our ``(N, 3)`` array as views
      (the same memory ours reads; encode only).

    ``ours_over_hilbertsfc`` = ours / hilbertsfc, ``matched`` = ours_out / hilbertsfc.
    """
    sfc = _import_hilbertsfc(path)
    numba.set_num_threads(1)  # HilbertSFC runs serially unless parallel=True; ours never uses threads
    rows: list[dict] = []
    for bits in bits_list:
        rows += _sfc_one_bits(sfc, bits, n, repeats, dtypes)
    if verbose:
        print(f"perception.ops.hilbert vs HilbertSFC ({sfc.__file__})")
        print(f"{n:,} points, 1 thread, best of {repeats}, Mpts/s (see bench_hilbertsfc's docstring)")
        head = ("op", "bits", "input", "ours", "ours_out", "HilbertSFC", "HSFC_views", "ours/HSFC", "matched")
        print("{:<7} {:>4} {:<7} {:>8} {:>9} {:>11} {:>11} {:>10} {:>8}".format(*head))
        for r in rows:
            views = f"{r['hilbertsfc_views']:.1f}" if "hilbertsfc_views" in r else "-"
            ok = "" if r["round_trip"] else "  ROUND TRIP FAILED"
            print(
                f"{r['op']:<7} {r['bits']:>4} {r['dtype']:<7} {r['ours']:>8.1f} {r['ours_out']:>9.1f} "
                f"{r['hilbertsfc']:>11.1f} {views:>11} {r['ours_over_hilbertsfc']:>9.2f}x {r['matched']:>7.2f}x{ok}"
            )
        print(
            "HilbertSFC's codes differ from ours by design (another Hilbert curve); round trips are checked."
        )
    return rows


def _sfc_one_bits(sfc, bits: int, n: int, repeats: int, dtypes: tuple[str, ...]) -> list[dict]:
    rows = []
    base = np.random.default_rng(bits).integers(0, 1 << bits, (n, 3), dtype=np.int64)
    codes = hilbert.encode(base, bits)
    out_codes = np.empty(n, np.uint32 if 3 * bits <= 32 else np.int64)
    for dtype in dtypes:
        coords = base.astype(dtype)
        cols = [np.ascontiguousarray(coords[:, k]) for k in range(3)]
        views = [coords[:, k] for k in range(3)]
        seconds = time_in_turns(
            [
                lambda c=coords: hilbert.encode(c, bits),
                lambda c=coords: hilbert.encode(c, bits, out=out_codes),
                lambda c=cols: sfc.hilbert_encode_3d(*c, nbits=bits),
                lambda c=views: sfc.hilbert_encode_3d(*c, nbits=bits),
            ],
            repeats,
            reduce=min,
        )
        ok = bool((hilbert.encode(coords, bits) == codes).all() and (out_codes == codes).all())
        rows.append(_sfc_row("encode", bits, dtype, n, seconds, ok))
    sfc_codes = sfc.hilbert_encode_3d(*(np.ascontiguousarray(base[:, k]) for k in range(3)), nbits=bits)
    out16 = np.empty((n, 3), np.uint16)
    seconds = time_in_turns(
        [
            lambda: hilbert.decode(codes, bits),
            lambda: hilbert.decode(codes, bits, out=out16),
            lambda: sfc.hilbert_decode_3d(sfc_codes, nbits=bits),
        ],
        repeats,
        reduce=min,
    )
    sfc_back = np.stack([np.asarray(a, np.int64) for a in sfc.hilbert_decode_3d(sfc_codes, nbits=bits)], 1)
    ok = bool(
        (hilbert.decode(codes, bits) == base).all() and (out16 == base).all() and (sfc_back == base).all()
    )
    rows.append(_sfc_row("decode", bits, "int64", n, seconds, ok, sfc_input=str(sfc_codes.dtype)))
    return rows


def _sfc_row(op: str, bits: int, dtype: str, n: int, seconds: list[float], round_trip: bool, **extra) -> dict:
    rate = [n / s / 1e6 for s in seconds]
    row = {"op": op, "bits": bits, "dtype": dtype, "points": n, "ours": rate[0], "ours_out": rate[1]}
    row["hilbertsfc"] = rate[2]
    if len(rate) > 3:
        row["hilbertsfc_views"] = rate[3]
    row |= {"ours_over_hilbertsfc": rate[0] / rate[2], "matched": rate[1] / rate[2], "round_trip": round_trip}
    return row | extra


if __name__ == "__main__":
    if len(sys.argv) > 1:
        bench_hilbertsfc(sys.argv[1])
    else:
        bench_hilbert()
