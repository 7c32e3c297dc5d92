"""Write a synthetic dataset in the KITTI layout, resumably and in parallel over frames.

Layout::

    OUT/
      training/velodyne/NNNNNN.bin     float32 x, y, z, reflectance
      training/label_2/NNNNNN.txt      KITTI labels (objects, then DontCare rows)
      training/calib/NNNNNN.txt        P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo
      training/pose/NNNNNN.txt         lidar → world, 3×4 (sequences only)
      ImageSets/train.txt, val.txt     frame ids (split by sequence for sequences)
      sequences.json                   sequences only: frame ids, timestamps, track ids
      synthetic.json                   generator version, seed, arguments, config, class counts
      .synthetic/NNNNNN.json           per-frame metadata (track ids, counts); also the "frame done" mark

Every file is written atomically; a frame whose files all exist is skipped, so a killed run
continues where it stopped (frames are pure functions of the seed and index). Everything written is
independent of the number of workers, byte for byte. :func:`write_dataset` is
:func:`generate_frames` (any subset of the frames: a shard's, with ``tools/make_synthetic.py --shard``)
then :func:`finish_dataset` (the split files and the two JSON files, from the frames' metadata).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from perception.data.io import atomic_write_text
from perception.data.kitti import (
    frame_path,
    write_calib,
    write_label,
    write_pose,
    write_split,
    write_velodyne,
)
from perception.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from perception.data.synthetic.generator import SequenceLayout, SyntheticFrame, generate_frame

__all__ = [
    "finish_dataset",
    "frame_files",
    "generate_frames",
    "read_frame_meta",
    "split_frames",
    "write_dataset",
    "write_frame",
]


_META_DIR = ".synthetic"


def frame_files(out: Path, index: int, sequences: bool) -> list[Path]:
    """Every file that frame ``index`` writes (the metadata file last)."""
    kinds = ["velodyne", "label_2", "calib"] + (["pose"] if sequences else [])
    return [frame_path(out, index, k) for k in kinds] + [out / _META_DIR / f"{index:06d}.json"]


def _frame_meta(frame: SyntheticFrame) -> dict:
    return {
        "frame_id": frame.frame_id,
        "sequence": frame.sequence,
        "step": frame.step,
        "timestamp_micros": frame.timestamp_micros,
        "num_points": frame.num_points,
        "names": frame.names.tolist(),
        "track_ids": frame.track_ids.tolist(),
        "num_dontcare": len(frame.dontcare_bbox),
    }


def write_frame(out: Path, frame: SyntheticFrame, sequences: bool) -> dict:
    """Write one frame's files; returns its metadata."""
    paths = frame_files(out, frame.frame_index, sequences)
    write_velodyne(paths[0], frame.points, fsync=False)
    write_label(paths[1], frame.label_objects(), fsync=False)
    write_calib(paths[2], frame.calib, fsync=False)
    if sequences:
        write_pose(paths[3], frame.pose, fsync=False)
    meta = _frame_meta(frame)
    atomic_write_text(paths[-1], json.dumps(meta, sort_keys=True) + "\n", fsync=False)
    return meta


def _job(args: tuple) -> dict:
    out, config, seed, index, layout, overwrite = args
    sequences = layout.sequences > 0
    paths = frame_files(out, index, sequences)
    if not overwrite and all(p.is_file() for p in paths):
        try:
            return {**json.loads(paths[-1].read_text()), "skipped": True}
        except (OSError, json.JSONDecodeError):
            pass  # a damaged metadata file: regenerate the frame
    frame = generate_frame(config, seed, index, layout)
    return {**write_frame(out, frame, sequences), "skipped": False}


def split_frames(frames: int, sequences: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and val frame indices.

    Independent frames are split at random (seeded); sequences are split whole, the val share of
    sequences drawn at random, at least one of each when there are two or more sequences.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B17]))
    layout = SequenceLayout(frames, sequences)
    if sequences:
        n_val = round(sequences * val_fraction)
        if val_fraction > 0 and sequences >= 2:
            n_val = min(max(n_val, 1), sequences - 1)
        val_seq = set(rng.permutation(sequences)[:n_val].tolist())
        val = [i for s in sorted(val_seq) for i in range(*layout.bounds(s))]
    else:
        n_val = round(frames * val_fraction)
        if val_fraction > 0 and frames >= 2:
            n_val = min(max(n_val, 1), frames - 1)
        val = rng.permutation(frames)[:n_val].tolist()
    val_set = set(val)
    return [i for i in range(frames) if i not in val_set], sorted(val_set)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"{out}: cannot create the output folder ({err.strerror})") from None
    if not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: output folder is not writable")


def _check_arguments(frames: int, sequences: int, val_fraction: float, workers: int = 1) -> None:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if not 0 <= sequences <= frames:
        raise ValueError(f"sequences must be in [0, frames={frames}], got {sequences}")
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")


def generate_frames(
    out: str | os.PathLike,
    frames: int,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    sequences: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    config: SyntheticConfig | None = None,
    progress: bool = False,
) -> list[dict]:
    """Write the files of frames ``indices`` of a ``frames``-frame dataset (no split or JSON files).

    Args:
        out: dataset root (created if missing).
        frames: the dataset's number of frames (it sets the sequence layout).
        indices: the frames to write, each in ``[0, frames)`` (default: all), in the order given.
        seed, sequences, workers, overwrite, config, progress: as :func:`write_dataset`.

    Returns:
        Per frame of ``indices``, its metadata (``.synthetic/NNNNNN.json``) plus ``skipped`` (its
        files were there already).
    """
    _check_arguments(frames, sequences, 0.0, workers)
    config = config or SyntheticConfig()
    out = Path(out)
    _check_writable(out)
    indices = list(range(frames)) if indices is None else [int(i) for i in indices]
    outside = [i for i in indices if not 0 <= i < frames]
    if outside:
        raise ValueError(f"frame indices outside [0, {frames}): {outside[:5]}")
    layout = SequenceLayout(int(frames), int(sequences))
    jobs = [(out, config, int(seed), i, layout, overwrite) for i in indices]

    metas: list[dict] = []
    if workers == 1 or len(jobs) <= 1:
        results = map(_job, jobs)
        pool = None
    else:
        # Contiguous chunks keep a sequence's frames on one worker (its world is cached there).
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        chunk = max(1, min(16, len(jobs) // (4 * workers)))
        results = pool.map(_job, jobs, chunksize=chunk)
    bar = Progress(
        TextColumn("synthetic"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    try:
        with bar:
            task = bar.add_task("frames", total=len(jobs))
            for meta in results:
                metas.append(meta)
                bar.advance(task)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return metas


def read_frame_meta(out: str | os.PathLike, index: int) -> dict:
    """Frame ``index``'s metadata, ``OUT/.synthetic/NNNNNN.json`` (written last of its files).

    Raises:
        FileNotFoundError: the frame was not written (the message names the file).
        ValueError: the file is not valid JSON.
    """
    path = Path(out) / _META_DIR / f"{int(index):06d}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (frame {int(index):06d} was not generated)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); generate the frame again") from None


def finish_dataset(
    out: str | os.PathLike,
    frames: int,
    seed: int = 0,
    sequences: int = 0,
    val_fraction: float = 0.2,
    config: SyntheticConfig | None = None,
    metas: Sequence[dict] | None = None,
) -> dict:
    """Write ``ImageSets/{train,val}.txt``, ``synthetic.json`` and (sequences) ``sequences.json``.

    Args:
        out, frames, seed, sequences, val_fraction, config: as :func:`write_dataset`.
        metas: every frame's metadata, frame 0 first, as :func:`generate_frames` returns it; None:
            read from the frames' ``.synthetic/NNNNNN.json`` (every frame must have been written).

    Returns:
        The content of ``synthetic.json``.
    """
    _check_arguments(frames, sequences, val_fraction)
    config = config or SyntheticConfig()
    out = Path(out)
    if metas is None:
        metas = [read_frame_meta(out, i) for i in range(frames)]
    if len(metas) != frames:
        raise ValueError(f"{out}: metadata of {len(metas)} frames for a {frames}-frame dataset")
    layout = SequenceLayout(int(frames), int(sequences))
    train, val = split_frames(frames, sequences, val_fraction, seed)
    write_split(out, "train", train)
    write_split(out, "val", val)
    counts = Counter(name for m in metas for name in m["names"])
    summary = {
        "generator": "perception.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "args": {"frames": int(frames), "sequences": int(sequences), "val_fraction": float(val_fraction)},
        "config": config.to_dict(),
        "class_counts": {k: counts[k] for k in sorted(counts)},
        "dontcare_count": sum(m["num_dontcare"] for m in metas),
        "num_points_mean": float(np.mean([m["num_points"] for m in metas])),
        "splits": {"train": len(train), "val": len(val)},
    }
    atomic_write_text(out / "synthetic.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if sequences:
        val_set = set(val)
        index = {}
        for s in range(sequences):
            lo, hi = layout.bounds(s)
            index[f"{s:04d}"] = {
                "frames": [metas[i]["frame_id"] for i in range(lo, hi)],
                "timestamps_micros": [metas[i]["timestamp_micros"] for i in range(lo, hi)],
                "track_ids": [metas[i]["track_ids"] for i in range(lo, hi)],
                "split": "val" if lo in val_set else "train",
            }
        doc = {"frame_rate_hz": config.frame_rate_hz, "sequences": index}
        atomic_write_text(out / "sequences.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return summary


def write_dataset(
    out: str | os.PathLike,
    frames: int,
    seed: int = 0,
    sequences: int = 0,
    val_fraction: float = 0.2,
    workers: int = 1,
    overwrite: bool = False,
    config: SyntheticConfig | None = None,
    progress: bool = False,
) -> dict:
    """Generate ``frames`` frames into ``out`` (see the module docstring for the layout).

    Args:
        out: dataset root (created if missing).
        frames: number of frames (≥ 1).
        seed: the dataset's seed; the same seed and arguments give byte-identical files.
        sequences: 0 for independent frames, else the number of sequences of consecutive frames.
        val_fraction: share of frames (of sequences, for sequences) in ``ImageSets/val.txt``.
        workers: processes (spawned, so numba and fork never mix); 1 runs in this process.
        overwrite: regenerate frames whose files already exist.
        config: generator knobs (defaults: :class:`SyntheticConfig`).
        progress: show a progress bar (rich) on the terminal.

    Returns:
        The content of ``synthetic.json`` plus ``generated`` / ``skipped`` counts and ``seconds``.
    """
    _check_arguments(frames, sequences, val_fraction, workers)
    start = time.perf_counter()
    metas = generate_frames(out, frames, None, seed, sequences, workers, overwrite, config, progress)
    seconds = time.perf_counter() - start
    summary = finish_dataset(out, frames, seed, sequences, val_fraction, config, metas)
    skipped = sum(m["skipped"] for m in metas)
    return {**summary, "generated": len(metas) - skipped, "skipped": skipped, "seconds": seconds}
