"""Timing helpers shared by the benchmarks (``tools/benchmark.py`` and ``benchmarks/*.py``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

__all__ = ["best_seconds", "median_seconds", "time_in_turns"]


def time_in_turns(
    fns: Sequence[Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    reduce: Callable[[list[float]], float] = statistics.median,
) -> list[float]:
    """Wall time of each ``fn()`` in seconds, reduced over ``repeats`` (median by default).

    Every function is called ``warmup`` times first (numba compilation or cache load, allocators);
    then the functions take turns within each repeat, so load from other processes on the machine
    falls on all of them alike — the fair way to time ours beside a peer.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - t0)
    return [reduce(t) for t in times]


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    return time_in_turns([fn], repeats, warmup)[0]


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    return time_in_turns([fn], repeats, warmup, reduce=min)[0]
