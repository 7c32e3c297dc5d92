"""Converting Waymo segments (v1 TFRecords or v2 parquet) into the converted layout, in parallel.

Decoding a frame's range images costs about 0.1 s, too much for every epoch, so
``tools/convert_waymo.py`` decodes each frame once with :func:`convert_segment` into the layout of
:mod:`perception.data.waymo.converted`. Resumable: a killed conversion continues where it stopped
(frames whose file exists are not decoded again). :func:`run_jobs` runs such jobs in spawned
processes with a progress bar (the ground-truth database uses it too).
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import queue
import struct
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.data.waymo import protos as wpb
from perception.data.waymo.converted import (
    FORMAT,
    FRAME_ARRAYS,
    OPTIONAL_ARRAYS,
    SEGMENT_INDEX,
    VERSION,
    frame_arrays,
    frame_file,
    read_segment_index,
)
from perception.data.waymo.frame import WaymoFrame, decode_frame
from perception.data.waymo.records import WaymoFormatError, read_records
from perception.data.waymo.v2 import read_frames_v2

__all__ = ["convert_segment", "count_frames", "run_jobs"]


def _write_frame(path: Path, arrays: dict[str, NDArray], compress: bool) -> None:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, allow_pickle=False, **arrays)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def _frame_summary(path: Path) -> tuple[int, list[str]] | None:
    """(points, class names) of an existing frame file, reading only the points header; None if unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("points.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape = read_header(f)[0]
            with archive.open("names.npy") as f:
                names = np.lib.format.read_array(f, allow_pickle=False)
            required = set(FRAME_ARRAYS) - OPTIONAL_ARRAYS  # files from before `speeds` are kept
            if not {f"{name}.npy" for name in required} <= set(archive.namelist()):
                return None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return int(shape[0]), [str(n) for n in names]


# --------------------------------------------------------------------------------------------------
# segment conversion


_HEADER = struct.Struct("<QI")


def count_frames(path: str | os.PathLike, every: int = 1, segment: str | None = None) -> int:
    """Frames :func:`convert_segment` would take from a TFRecord file (its record headers only), or
    from a v2 segment (its timestamps); 0 where the file can not be read (for progress bars only)."""
    try:
        if segment is not None:
            import pyarrow.parquet as pq

            column = "key.frame_timestamp_micros"
            table = pq.read_table(Path(path) / "lidar" / f"{segment}.parquet", columns=[column])
            n = len(set(table.column(column).to_pylist()))
        else:
            n = 0
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = 0
                while offset + 12 <= size:
                    f.seek(offset)
                    (length, _) = _HEADER.unpack(f.read(12))
                    offset += 16 + length
                    n += offset <= size
    except Exception:  # progress only: a corrupt file fails properly when it is converted
        return 0
    return math.ceil(n / every)


def _settings(every: int, lidars: Sequence[int] | None, returns: Sequence[int], unknown_labels: str) -> dict:
    return {
        "every": int(every),
        "lidars": None if lidars is None else sorted(int(x) for x in lidars),
        "returns": sorted(int(r) for r in returns),
        "unknown_labels": unknown_labels,
    }


def _up_to_date(folder: Path, index: dict | None, source: dict, settings: dict) -> bool:
    if index is None:
        return False
    if any(index.get(k) != v for k, v in {**settings, **source}.items() if k != "source"):
        return False
    return all((folder / f["file"]).is_file() for f in index.get("frames", []))


def _v1_frames(
    path: Path, every: int
) -> Iterator[tuple[int, str, int, Callable[..., WaymoFrame], Callable[[], dict]]]:
    """(record, context, timestamp, decode(**kw), stats()) of every ``every``-th record of a TFRecord file.

    Only the proto is parsed here (milliseconds); the range images are decoded when ``decode`` is called.
    """
    offset = 0
    for record, payload in enumerate(read_records(path)):
        where = f"{path}: record {record} at byte offset {offset}"
        offset += 16 + len(payload)
        if record % every:
            continue
        try:
            proto = wpb.Frame.FromString(payload)
        except DecodeError as e:
            raise WaymoFormatError(f"{where}: corrupt Frame proto ({e})") from e

        def decode(proto: object = proto, where: str = where, **kw: object) -> WaymoFrame:
            return decode_frame(proto, source=where, **kw)

        def stats(proto: object = proto) -> dict:
            s = proto.context.stats
            return {"time_of_day": s.time_of_day, "location": s.location, "weather": s.weather}

        yield record, proto.context.name, int(proto.timestamp_micros), decode, stats


def _v2_frames(
    root: Path, segment: str, every: int, **kw: object
) -> Iterator[tuple[int, str, int, Callable[..., WaymoFrame], Callable[[], dict]]]:
    """The same for one v2 segment (each frame is decoded as it is read: v2 has no cheaper way in)."""
    for record, frame in enumerate(read_frames_v2(root, segment, **kw)):
        if record % every:
            continue
        stats = {"time_of_day": frame.time_of_day, "location": frame.location, "weather": frame.weather}
        yield (
            record,
            frame.context_name,
            int(frame.timestamp_micros),
            lambda frame=frame, **_: frame,
            lambda stats=stats: stats,
        )


def convert_segment(
    path: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "train",
    every: int = 1,
    *,
    segment: str | None = None,
    lidars: Sequence[int] | None = None,
    returns: Sequence[int] = (0, 1),
    unknown_labels: str = "error",
    compress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Convert one segment (a v1 TFRecord file, or a v2 segment) into ``OUT/<split>/<context>/``.

    Resumable: a segment whose index is up to date (same source name and size, same settings, every
    frame file present) is left as it is without reading its frames; otherwise frames whose file
    exists are skipped (their proto is parsed for the timestamp, their range images are not decoded),
    the others are decoded and written (temporary name, then rename), and the index is written last.
    Where the segment's index records other ``lidars``, ``returns`` or ``unknown_labels``, every
    frame is converted again (a killed run leaves no index: resume it with the same settings).

    Args:
        path: a ``.tfrecord`` file; with ``segment``, a v2 root (``ROOT/<component>/<segment>.parquet``).
        out: the converted dataset's root.
        split: the split folder to write (``train``, ``val``, ...).
        every: keep every ``every``-th frame (records 0, every, 2 every, ...).
        segment: the v2 segment name (None: ``path`` is a v1 TFRecord file). v2 frames are decoded
            as they are read, skipped ones too (slower to resume than v1).
        lidars, returns, unknown_labels: as :func:`~perception.data.waymo.read_frames`.
        compress: write compressed ``.npz`` (about 40 % smaller on real scans, 0.2 s more per frame).
        progress: called with the number of frames done (written or skipped) as the work goes.

    Returns:
        ``context_name``, ``source``, ``index`` (path), ``frames``, ``written``, ``skipped``,
        ``points`` (sum over the frames), ``class_counts``, ``up_to_date`` (nothing was read),
        ``seconds``.

    Raises:
        FileNotFoundError: no such file.
        WaymoFormatError: a corrupt record or frame (the message names the file, the record and its
            byte offset), or a file mixing segments or repeating a timestamp. The frames written
            before it stay; the index is not written.
    """
    start = time.perf_counter()
    path, out = Path(path), Path(out)
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    settings = _settings(every, lidars, returns, unknown_labels)
    if segment is None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such TFRecord file")
        source = {"source": str(path), "source_name": path.name, "source_bytes": path.stat().st_size}
        frames = _v1_frames(path, every)
    else:
        lidar_file = path / "lidar" / f"{segment}.parquet"
        if not lidar_file.is_file():
            raise FileNotFoundError(f"{lidar_file}: no such v2 segment")
        source = {
            "source": f"{path} (v2 segment {segment})",
            "source_name": segment,
            "source_bytes": lidar_file.stat().st_size,
        }
        frames = _v2_frames(
            path, segment, every, lidars=lidars, returns=returns, unknown_labels=unknown_labels
        )
    report = progress or (lambda n: None)

    # A finished segment: its context is in the first record (v1) or its name (v2).
    context = segment
    if context is None:
        records_iter = read_records(path)
        try:
            first = next(records_iter, None)
        except WaymoFormatError:
            first = None  # fails below, with the file and offset
        finally:
            records_iter.close()
        if first is not None:
            try:
                context = wpb.Frame.FromString(first).context.name
            except Exception:  # a corrupt first record fails below, with the file and offset
                context = None
    # Frame files written with other point or label settings (an index says so) are not kept.
    keep_existing = True
    if context:
        folder = out / split / context
        index = read_segment_index(folder)
        if _up_to_date(folder, index, source, settings):
            report(len(index["frames"]))
            return _segment_summary(folder / SEGMENT_INDEX, index, 0, len(index["frames"]), True, start)
        if index is not None:
            keep_existing = all(index.get(k) == settings[k] for k in ("lidars", "returns", "unknown_labels"))

    records: list[dict] = []
    counts: Counter[str] = Counter()
    written = skipped = 0
    folder = None
    stats = {"time_of_day": "", "location": "", "weather": ""}
    seen: set[int] = set()
    for record, context_name, timestamp, decode, frame_stats in frames:
        if folder is None:
            context = context_name
            folder = out / split / context
            stats = frame_stats()
            for stale in folder.glob(".*.tmp"):  # left by a killed run
                stale.unlink(missing_ok=True)
        elif context_name != context:
            raise WaymoFormatError(
                f"{source['source']}: record {record} belongs to segment {context_name!r}, the file's "
                f"first frame to {context!r}; one file must hold one segment"
            )
        if timestamp in seen:
            raise WaymoFormatError(f"{source['source']}: record {record} repeats timestamp {timestamp}")
        seen.add(timestamp)
        target = frame_file(out, split, context, timestamp)
        existing = _frame_summary(target) if keep_existing and target.is_file() else None
        if existing is not None:
            num_points, names = existing
            skipped += 1
        else:
            frame = decode(lidars=lidars, returns=returns, unknown_labels=unknown_labels)
            arrays = frame_arrays(frame)
            _write_frame(target, arrays, compress)
            num_points, names = len(arrays["points"]), [str(n) for n in arrays["names"]]
            written += 1
        counts.update(names)
        records.append(
            {
                "timestamp_micros": timestamp,
                "file": target.name,
                "record": record,
                "points": num_points,
                "boxes": len(names),
            }
        )
        report(1)
    if folder is None:
        raise WaymoFormatError(f"{source['source']}: no frames (the file holds no records)")
    index = {
        "format": FORMAT,
        "version": VERSION,
        "context_name": context,
        "split": split,
        **source,
        **settings,
        **stats,
        "class_counts": dict(sorted(counts.items())),
        "frames": records,
    }
    index_path = folder / SEGMENT_INDEX
    atomic_write_text(index_path, json.dumps(index, indent=1) + "\n")
    return _segment_summary(index_path, index, written, skipped, False, start)


def _segment_summary(
    index_path: Path, index: dict, written: int, skipped: int, up_to_date: bool, start: float
) -> dict:
    return {
        "context_name": index["context_name"],
        "source": index["source"],
        "index": str(index_path),
        "frames": len(index["frames"]),
        "written": written,
        "skipped": skipped,
        "points": sum(f["points"] for f in index["frames"]),
        "class_counts": dict(index.get("class_counts", {})),
        "up_to_date": up_to_date,
        "seconds": time.perf_counter() - start,
    }


# --------------------------------------------------------------------------------------------------
# parallel jobs with a progress bar

_REPORT: Callable[[int], None] | None = None


def _init_worker(progress_queue: object) -> None:
    global _REPORT
    _REPORT = progress_queue.put


def _report(n: int) -> None:
    if _REPORT is not None and n:
        _REPORT(n)


def _call(fn: Callable, args: tuple, kwargs: dict) -> object:
    return fn(*args, **kwargs, progress=_report)


def run_jobs(
    fn: Callable,
    jobs: Sequence[tuple[tuple, dict]],
    workers: int = 1,
    total: int | None = None,
    description: str = "",
    unit: str = "frames",
    show: bool = False,
) -> list[tuple[bool, object]]:
    """Run ``fn(*args, **kwargs, progress=...)`` for each ``(args, kwargs)`` of ``jobs``.

    ``workers`` > 1 runs them in that many spawned processes (numba's OpenMP and fork do not mix:
    see :mod:`perception.data.datamodules`); 1 runs them here. ``fn`` reports its progress by calling
    ``progress(n)``; a rich bar over ``total`` shows it when ``show``. A job that raises does not stop
    the others.

    Returns:
        ``(True, result)`` or ``(False, exception)`` per job, in the order of ``jobs``.
    """
    global _REPORT
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    results: list[tuple[bool, object]] = [(False, RuntimeError("not run"))] * len(jobs)
    bar = Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not show,
    )
    with bar:
        task = bar.add_task(description, total=total)
        if workers <= 1 or len(jobs) <= 1:
            previous, _REPORT = _REPORT, (lambda n: bar.advance(task, n))
            try:
                for i, (args, kwargs) in enumerate(jobs):
                    try:
                        results[i] = (True, _call(fn, args, kwargs))
                    except Exception as e:
                        results[i] = (False, e)
            finally:
                _REPORT = previous
            return results
        ctx = multiprocessing.get_context("spawn")
        progress_queue = ctx.Queue()

        def drain() -> None:
            while True:
                try:
                    bar.advance(task, progress_queue.get_nowait())
                except queue.Empty:
                    return

        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(progress_queue,),
        )
        try:
            futures = {pool.submit(_call, fn, args, kwargs): i for i, (args, kwargs) in enumerate(jobs)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for future in done:
                    error = future.exception()
                    results[futures[future]] = (True, future.result()) if error is None else (False, error)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        time.sleep(0.05)  # the feeder threads of finished workers flush their last reports
        drain()
    return results
