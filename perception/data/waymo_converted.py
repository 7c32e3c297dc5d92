"""Waymo Open Dataset converted once to per-frame ``.npz`` files, and the dataset that reads them.

Decoding a frame's range images costs about 0.1 s, too much for every epoch, so
``tools/convert_waymo.py`` decodes each frame once (:func:`convert_segment`) into this layout::

    OUT/
      <split>/<context_name>/<timestamp_micros>.npz   one frame (arrays below; nothing pickled)
      <split>/<context_name>/index.json               the segment's index, written last and atomically
      ImageSets/<split>.txt                           frame keys "<context_name>/<timestamp_micros>"
      gt_database/                                    objects of the train split, for ground-truth
                                                      sampling (format of perception.data.database)

**Frame files.** ``points`` (N, 8) float32, the columns of :data:`~perception.data.waymo.POINT_COLUMNS`
as :func:`~perception.data.waymo.read_frames` returns them (x, y, z in the vehicle frame, intensity,
elongation, nlz, return, lidar; all five lidars and both returns by default); ``boxes`` (M, 7)
float32 ``[x, y, z, l, w, h, heading]``; ``types`` (M,) int8 Label.Type; ``names`` (M,) str;
``ids`` (M,) str; ``num_lidar_points`` (M,) int32; ``difficulty`` (M,) int8 (1 LEVEL_1, 2 LEVEL_2,
as the official metric decides it); ``pose`` (4, 4) float64 vehicle → world (NaN where the frame
has none). Written to a temporary name, then renamed: a file that exists is complete.

**Segment index** (``index.json``): ``format``, ``version``, ``context_name``, ``split``,
``source`` (the TFRecord file, or the v2 root and segment), ``source_name`` and ``source_bytes``
(to tell a finished segment from the same file), the conversion settings (``every``, ``lidars``,
``returns``, ``unknown_labels``), ``time_of_day``, ``location``, ``weather`` (the context's stats,
from its first frame), ``class_counts`` and ``frames``: one record per frame with
``timestamp_micros``, ``file`` (relative to the segment folder), ``record`` (its position in the
source), ``points`` and ``boxes`` (counts). It is written after every frame file, so a segment with
an index is complete; a killed conversion continues where it stopped (frames whose file exists are
not decoded again).

**Split file.** ``ImageSets/<split>.txt`` lists the frames of every segment of ``OUT/<split>`` that
has an index (:func:`write_split_file`), by context name, then timestamp.

**Ground-truth database** (:func:`build_waymo_gt_database`): the format that
:class:`~perception.data.database.GroundTruthDatabase` reads — the points inside each box of the
training classes, x, y, z relative to the box centre (translation only, vehicle axes), then the
dataset's attributes, one ``.npy`` per object, and a JSON index. The stored points have the columns
that :class:`WaymoDetectionDataset` gives with the same ``point_columns`` / ``intensity_tanh``
(the default: x, y, z, tanh(intensity), elongation), so
:class:`~perception.data.transforms.GroundTruthSampling` can paste them into its samples. Built from
the train split only (never from val: that would leak validation objects into training).

**Dataset** (:class:`WaymoDetectionDataset`): the KITTI dataset's API and reproducible augmentation
(sample ``i`` of epoch ``e`` is transformed with ``np.random.default_rng([seed, e, i])``; see
:mod:`perception.data.datasets`).
"""

from __future__ import annotations

import io
import json
import logging
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
from numpy.typing import NDArray

from perception.data import database as gt_database_format
from perception.data.database import INDEX_NAME
from perception.data.datasets import EpochDataset
from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.data.transforms import Transform
from perception.data.waymo import (
    POINT_COLUMNS,
    WaymoFormatError,
    WaymoFrame,
    decode_frame,
    read_frames_v2,
    read_records,
)
from perception.structures import Sample, WaymoObjects, WaymoRecord

__all__ = [
    "FORMAT",
    "FRAME_ARRAYS",
    "SOURCE_FOLDERS",
    "VERSION",
    "WaymoDetectionDataset",
    "build_waymo_gt_database",
    "convert_segment",
    "count_frames",
    "frame_arrays",
    "frame_file",
    "frame_key",
    "load_frame_arrays",
    "missing_waymo_message",
    "model_points",
    "parse_frame_key",
    "read_segment_index",
    "run_jobs",
    "write_split_file",
]

log = logging.getLogger(__name__)

FORMAT = "perception-waymo-converted"
VERSION = 1

FRAME_ARRAYS: dict[str, str] = {
    "points": "float32",
    "boxes": "float32",
    "types": "int8",
    "names": "str",
    "ids": "str",
    "num_lidar_points": "int32",
    "difficulty": "int8",
    "pose": "float64",
}
"""The arrays of a frame file and their dtypes."""

SOURCE_FOLDERS: dict[str, str] = {"train": "training", "val": "validation", "test": "testing"}
"""Split name → the folder of the Waymo release it is converted from."""

_NO_POSE = np.full((4, 4), np.nan)


# --------------------------------------------------------------------------------------------------
# layout


def frame_key(context_name: str, timestamp_micros: int) -> str:
    """The split-file key of a frame, ``"<context_name>/<timestamp_micros>"``."""
    return f"{context_name}/{int(timestamp_micros)}"


def parse_frame_key(key: str) -> tuple[str, int]:
    """``(context_name, timestamp_micros)`` of a split-file key."""
    context, sep, timestamp = key.strip().rpartition("/")
    if not sep or not context or not timestamp.isdigit():
        raise ValueError(f"not a frame key '<context_name>/<timestamp_micros>': {key!r}")
    return context, int(timestamp)


def frame_file(root: str | os.PathLike, split: str, context_name: str, timestamp_micros: int) -> Path:
    """``ROOT/<split>/<context_name>/<timestamp_micros>.npz``."""
    return Path(root) / split / context_name / f"{int(timestamp_micros)}.npz"


def _split_file(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / "ImageSets" / f"{split}.txt"


def missing_waymo_message(root: str | os.PathLike, split: str) -> str:
    """What to say when ``root`` holds no converted ``split``: where the files go and how to make them."""
    root = Path(root)
    source = SOURCE_FOLDERS.get(split, split)
    return (
        f"{root}: no converted Waymo split '{split}' here (expected {_split_file(root, split)} and "
        f"{root / split}/<context_name>/<timestamp_micros>.npz). Download the Waymo Open Dataset v1.4.x "
        "perception TFRecords (the `training` and `validation` folders) from waymo.com/open (you must "
        "sign in and accept the dataset's licence first), put the *.tfrecord files in "
        f"data/waymo/raw/training and data/waymo/raw/validation (here: data/waymo/raw/{source}), and "
        "convert them once (no TensorFlow needed): "
        "`python tools/convert_waymo.py --src data/waymo/raw/training --out data/waymo/converted --split train` "
        "and `python tools/convert_waymo.py --src data/waymo/raw/validation --out data/waymo/converted "
        "--split val` (add `--workers N` for N processes, `--every 5` for every 5th frame as OpenPCDet "
        "trains; a killed run continues where it stopped)."
    )


# --------------------------------------------------------------------------------------------------
# frame files


def frame_arrays(frame: WaymoFrame) -> dict[str, NDArray]:
    """The arrays a frame file stores (:data:`FRAME_ARRAYS`), from a decoded frame."""
    m = len(frame.boxes)
    return {
        "points": np.ascontiguousarray(frame.points, dtype=np.float32),
        "boxes": np.ascontiguousarray(frame.boxes, dtype=np.float32).reshape(m, 7),
        "types": np.asarray(frame.types, dtype=np.int8).reshape(m),
        "names": np.asarray(frame.names, dtype=np.str_).reshape(m),
        "ids": np.asarray(frame.ids, dtype=np.str_).reshape(m),
        "num_lidar_points": np.asarray(frame.num_lidar_points, dtype=np.int32).reshape(m),
        "difficulty": np.asarray(frame.difficulty, dtype=np.int8).reshape(m),
        "pose": _NO_POSE.copy() if frame.pose is None else np.asarray(frame.pose, dtype=np.float64),
    }


def _write_frame(path: Path, arrays: dict[str, NDArray], compress: bool) -> None:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, allow_pickle=False, **arrays)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def load_frame_arrays(path: str | os.PathLike) -> dict[str, NDArray]:
    """The arrays of a frame file (:data:`FRAME_ARRAYS`), loaded without pickle."""
    with np.load(path, allow_pickle=False) as npz:
        missing = set(FRAME_ARRAYS) - set(npz.files)
        if missing:
            raise ValueError(f"{path}: not a converted Waymo frame (missing arrays {sorted(missing)})")
        return {name: npz[name] for name in FRAME_ARRAYS}


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
            if not {f"{name}.npy" for name in FRAME_ARRAYS} <= set(archive.namelist()):
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


def read_segment_index(folder: str | os.PathLike) -> dict | None:
    """A segment folder's ``index.json`` as a dict, or None where it is absent or not ours."""
    try:
        index = json.loads((Path(folder) / INDEX_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        return None
    return index


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
    from google.protobuf.message import DecodeError

    from perception.data import waymo_protos as wpb

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
            from perception.data import waymo_protos as wpb

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
            return _segment_summary(folder / INDEX_NAME, index, 0, len(index["frames"]), True, start)
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
    index_path = folder / INDEX_NAME
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


def write_split_file(root: str | os.PathLike, split: str) -> list[str]:
    """Write ``ROOT/ImageSets/<split>.txt`` (atomically): the frame keys of every segment of
    ``ROOT/<split>`` that has an index, by context name then timestamp. Returns the keys."""
    keys = []
    folder = Path(root) / split
    for segment in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        index = read_segment_index(segment)
        if index is None:
            continue
        keys += [frame_key(index["context_name"], f["timestamp_micros"]) for f in index["frames"]]
    keys.sort(key=parse_frame_key)
    atomic_write_text(_split_file(root, split), "".join(k + "\n" for k in keys))
    return keys


def _read_split(root: Path, split: str) -> list[str]:
    return [line.strip() for line in _split_file(root, split).read_text().splitlines() if line.strip()]


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


# --------------------------------------------------------------------------------------------------
# points as the model sees them


def model_points(points: NDArray[np.float32], point_columns: int = 5, intensity_tanh: bool = True) -> NDArray:
    """(N, point_columns) float32: the first columns of converted points, intensity through ``tanh``.

    Waymo's intensity is unbounded (mostly in [0, 1], with long tails from retro-reflectors);
    ``tanh`` squashes it into [0, 1) as OpenPCDet's Waymo dataset does (``points[:, 3] =
    np.tanh(points[:, 3])`` where it loads a frame) — a dataset choice, not a reader one, so the
    converted files keep the intensity as stored.
    """
    if not 3 <= point_columns <= len(POINT_COLUMNS):
        raise ValueError(f"point_columns must be in [3, {len(POINT_COLUMNS)}], got {point_columns}")
    out = np.array(points[:, :point_columns], dtype=np.float32, copy=True, order="C")
    if intensity_tanh and point_columns > 3:
        np.tanh(out[:, 3], out=out[:, 3])
    return out


# --------------------------------------------------------------------------------------------------
# ground-truth database


def _gt_segment(
    root: Path,
    split: str,
    context: str,
    timestamps: Sequence[int],
    out: Path,
    class_names: Sequence[str],
    point_columns: int,
    intensity_tanh: bool,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """The database objects of one segment's frames (their ``.npy`` written), in frame order."""
    from perception.geometry.boxes import points_in_boxes_mask

    objects = []
    for timestamp in timestamps:
        arrays = load_frame_arrays(frame_file(root, split, context, timestamp))
        keep = np.flatnonzero(np.isin(arrays["names"], list(class_names)))
        if len(keep):
            points = model_points(arrays["points"], point_columns, intensity_tanh)
            boxes = arrays["boxes"][keep]
            inside = points_in_boxes_mask(points, boxes)
            frame_id = f"{context}_{timestamp}"
            for k, j in enumerate(keep):
                name = str(arrays["names"][j])
                pts = points[inside[:, k]]
                pts[:, :3] -= boxes[k, :3]
                rel = f"{name}/{frame_id}_{j:03d}.npy"
                atomic_write_bytes(out / rel, gt_database_format._npy_bytes(pts), fsync=False)
                objects.append(
                    {
                        "name": name,
                        "box": [float(v) for v in boxes[k]],
                        "num_points": len(pts),
                        "difficulty": int(arrays["difficulty"][j]),
                        "frame_id": frame_id,
                        "path": rel,
                    }
                )
        if progress is not None:
            progress(1)
    return objects


def build_waymo_gt_database(
    root: str | os.PathLike,
    split: str = "train",
    out: str | os.PathLike | None = None,
    class_names: Sequence[str] = ("VEHICLE", "PEDESTRIAN", "CYCLIST"),
    point_columns: int = 5,
    intensity_tanh: bool = True,
    val_split: str | None = "val",
    workers: int = 1,
    overwrite: bool = False,
    show_progress: bool = False,
) -> dict:
    """Write the ground-truth database of a converted training split (see the module docstring).

    The format is :mod:`perception.data.database`'s (``index.json`` with ``format``, ``version``,
    the settings and one record per object; ``<NAME>/<context>_<timestamp>_<j>.npy`` (P, C) float32
    points relative to the box centre); the index also records ``dataset`` ("waymo"),
    ``point_columns`` and ``intensity_tanh``. Object files are written first, the index last and
    atomically; an index with the same settings whose files all exist is left as it is (unless
    ``overwrite``); files the new index no longer lists are removed afterwards.

    Args:
        root: the converted dataset's root.
        split: the split to read (a training split; ``val_split`` itself is refused).
        out: database folder; default ``ROOT/gt_database``.
        class_names: classes to store, as spelt in the frames (``VEHICLE``, ``PEDESTRIAN``, ...).
        point_columns, intensity_tanh: the point columns stored, as :func:`model_points` makes them
            (they must match the dataset's for ground-truth sampling).
        val_split: a split whose frames must not be in ``split`` (checked where its file exists).
        workers: processes (spawned); segments are shared among them.

    Returns:
        ``path``, ``frames``, ``objects``, ``class_counts``, ``skipped`` (up to date, left as it was).
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "gt_database"
    if val_split is not None and split == val_split:
        raise ValueError(
            f"the ground-truth database must come from training frames, not the '{val_split}' split"
        )
    if not _split_file(root, split).is_file():
        raise FileNotFoundError(missing_waymo_message(root, split))
    keys = _read_split(root, split)
    if val_split is not None and _split_file(root, val_split).is_file():
        shared = sorted(set(keys) & set(_read_split(root, val_split)))
        if shared:
            raise ValueError(
                f"split '{split}' shares {len(shared)} frames with '{val_split}' (e.g. {shared[:3]}); "
                "the ground-truth database must not hold validation objects"
            )
    settings = {
        "source_root": str(root.resolve()),
        "split": split,
        "split_folder": split,
        "class_names": list(class_names),
        "frames": keys,
        "dataset": "waymo",
        "point_columns": int(point_columns),
        "intensity_tanh": bool(intensity_tanh),
    }
    index_path = out / INDEX_NAME
    old = gt_database_format._read_index(index_path)
    if (
        not overwrite
        and old is not None
        and all(old.get(k) == v for k, v in settings.items())
        and all((out / o["path"]).is_file() for o in old["objects"])
    ):
        return gt_database_format._summary(index_path, old, skipped=True)

    segments: dict[str, list[int]] = {}
    for key in keys:
        context, timestamp = parse_frame_key(key)
        segments.setdefault(context, []).append(timestamp)
    jobs = [
        ((root, split, context, stamps, out, tuple(class_names), point_columns, intensity_tanh), {})
        for context, stamps in segments.items()
    ]
    results = run_jobs(_gt_segment, jobs, workers, len(keys), "gt database", show=show_progress)
    objects: list[dict] = []
    for ok, result in results:
        if not ok:
            raise result
        objects += result
    index = {
        "format": gt_database_format._FORMAT,
        "version": gt_database_format._VERSION,
        **settings,
        "point_dim": int(point_columns),
        "objects": objects,
    }
    atomic_write_text(index_path, json.dumps(index, separators=(",", ":")) + "\n")
    if old is not None:
        current = {o["path"] for o in objects}
        for o in old.get("objects", []):
            if o["path"] not in current:
                (out / o["path"]).unlink(missing_ok=True)
    return gt_database_format._summary(index_path, index, skipped=False)


# --------------------------------------------------------------------------------------------------
# dataset


class WaymoDetectionDataset(EpochDataset):
    """Converted Waymo frames of one split as :class:`Sample`\\ s for detection.

    Args:
        root: the converted root (``ROOT/ImageSets/<split>.txt``, ``ROOT/<split>/<context>/<ts>.npz``).
        split: ``train``, ``val``, ...
        class_names: the training classes (``labels`` index into them); objects of other classes
            (SIGN by default) are not in ``boxes`` but are in the record.
        transforms: applied in order with the sample's generator (a list or one transform).
        seed: augmentation seed: sample ``i`` of epoch ``e`` uses ``default_rng([seed, e, i])``.
        point_columns: how many of the point columns to keep (default 5: x, y, z, intensity,
            elongation; up to 8 adds nlz, return, lidar).
        intensity_tanh: squash the intensity with ``tanh``, as OpenPCDet does for Waymo
            (:func:`model_points`).
        frame_ids: exactly these frames (keys ``"<context_name>/<timestamp_micros>"``, each of which
            must have its ``.npz`` in ``ROOT/<split>/``) instead of the split file's.

    ``frame_ids`` are the split file's keys ``"<context_name>/<timestamp_micros>"``; a sample's
    ``frame_id`` is ``"<context_name>_<timestamp_micros>"`` (as
    :class:`~perception.data.waymo.WaymoFrame`'s); ``difficulty`` the official LEVEL_1 / LEVEL_2
    (1 / 2); ``record`` a :class:`~perception.structures.WaymoRecord`: context name, timestamp and
    pose, and every labelled object of the frame before any transform (boxes, Label.Type codes,
    difficulty, lidar point counts, ids, and the type names) — what the Waymo metric and submission
    writer need, and what :class:`~perception.data.transforms.GroundTruthSampling` keeps pasted
    objects clear of.

    Raises:
        FileNotFoundError: ``root`` or the split is missing; the message (:func:`missing_waymo_message`)
            says where the files go, where to download them and which command converts them.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_names: Sequence[str] = ("VEHICLE", "PEDESTRIAN", "CYCLIST"),
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        point_columns: int = 5,
        intensity_tanh: bool = True,
        frame_ids: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / split).is_dir() or (
            frame_ids is None and not _split_file(self.root, split).is_file()
        ):
            raise FileNotFoundError(missing_waymo_message(self.root, split))
        if not 3 <= point_columns <= len(POINT_COLUMNS):
            raise ValueError(f"point_columns must be in [3, {len(POINT_COLUMNS)}], got {point_columns}")
        self.split = split
        self.frame_ids = _read_split(self.root, split) if frame_ids is None else [str(k) for k in frame_ids]
        self._keys = [parse_frame_key(k) for k in self.frame_ids]
        if frame_ids is not None:
            missing = [
                k
                for k, key in zip(self.frame_ids, self._keys, strict=True)
                if not frame_file(self.root, split, *key).is_file()
            ]
            if missing:
                raise FileNotFoundError(
                    f"{self.root / split}: no converted frame {', '.join(missing[:5])}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                )
        self.class_names = tuple(class_names)
        self.point_columns, self.intensity_tanh = int(point_columns), bool(intensity_tanh)
        self._init_transforms(transforms, seed)

    def load(self, index: int) -> Sample:
        """Sample ``index`` as converted, before any transform (points (N, point_columns) float32)."""
        context, timestamp = self._keys[index]
        path = frame_file(self.root, self.split, context, timestamp)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: frame {self.frame_ids[index]} of {_split_file(self.root, self.split)} is missing; "
                "re-run tools/convert_waymo.py (it resumes) or rewrite the split file"
            )
        arrays = load_frame_arrays(path)
        names = arrays["names"]
        known = np.isin(names, self.class_names)
        label_of = {name: i for i, name in enumerate(self.class_names)}
        pose = arrays["pose"]
        record = WaymoRecord(
            context_name=context,
            timestamp_micros=timestamp,
            pose=pose if np.isfinite(pose).all() else None,
            objects=WaymoObjects(
                boxes=np.asarray(arrays["boxes"], np.float64).reshape(-1, 7),
                types=np.asarray(arrays["types"], np.int64),
                difficulty=np.asarray(arrays["difficulty"], np.int64),
                num_lidar_points=np.asarray(arrays["num_lidar_points"], np.int64),
                ids=np.asarray(arrays["ids"]).astype(str),
            ),
            names=np.asarray(names).astype(str),
        )
        return Sample(
            frame_id=f"{context}_{timestamp}",
            points=model_points(arrays["points"], self.point_columns, self.intensity_tanh),
            boxes=np.ascontiguousarray(arrays["boxes"][known], dtype=np.float32),
            labels=np.array([label_of[n] for n in names[known]], dtype=np.int64),
            difficulty=arrays["difficulty"][known].astype(np.int32),
            record=record,
        )

    def __repr__(self) -> str:
        return (
            f"WaymoDetectionDataset({str(self.root)!r}, split={self.split!r}, frames={len(self)}, "
            f"class_names={self.class_names}, point_columns={self.point_columns}, "
            f"intensity_tanh={self.intensity_tanh}, transform={self.transform!r})"
        )
