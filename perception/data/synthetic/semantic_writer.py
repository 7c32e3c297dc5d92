"""Write synthetic sequences in SemanticKITTI's layout, resumably and in parallel over sequences.

Layout (what :mod:`perception.data.semantickitti` reads)::

    OUT/
      sequences/SS/velodyne/NNNNNN.bin    float32 x, y, z, remission (lidar frame)
      sequences/SS/labels/NNNNNN.label    uint32: SemanticKITTI raw id | (instance id << 16)
      sequences/SS/calib.txt              P0..P3, Tr (velodyne → camera 0)
      sequences/SS/times.txt              seconds from the sequence's start
      sequences/SS/poses.txt              camera-frame poses (the official convention)
      synthetic.json                      generator version, seed, arguments, config, train / val sequences

Raw ids come from :func:`semantic_kitti_ids` (the one place the generator's classes meet
SemanticKITTI's); the instance id is the object's track id + 1 (0 for stuff), stable across a
sequence. Sequence ``s`` holds frames ``SequenceLayout(frames, sequences).bounds(s)`` of the
generator, scan ``k`` being its ``k``-th frame, so every file is a pure function of the seed, the
arguments and the config: written byte for byte the same whatever the number of workers. Every file
is written atomically and ``poses.txt`` last; a sequence whose files all exist is skipped, a scan
whose two files exist is not generated again, so a killed run continues where it stopped.
:func:`write_semantickitti` is :func:`write_sequences` (any subset of the sequences: a shard's, with
``tools/make_synthetic.py --layout semantickitti --shard``) then :func:`finish_semantickitti`
(``synthetic.json``, from the files on disk).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.io import atomic_write_text
from perception.data.semantickitti import (
    SemanticKittiCalib,
    scan_path,
    write_calib,
    write_labels,
    write_poses,
    write_scan,
    write_times,
)
from perception.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from perception.data.synthetic.generator import SequenceLayout, SyntheticFrame, generate_frame, world_for
from perception.data.synthetic.shapes import SEMANTIC_CLASSES
from perception.data.synthetic.writer import split_frames

__all__ = [
    "MOVING_SPEED",
    "SEMANTIC_KITTI_IDS",
    "SyntheticSegmentation",
    "check_dataset_arguments",
    "finish_semantickitti",
    "semantic_kitti_ids",
    "semantic_kitti_labels",
    "sequence_name",
    "write_semantickitti",
    "write_sequences",
]

SEMANTIC_KITTI_IDS: dict[str, tuple[int, int | None]] = {
    "unlabelled": (0, None),
    "road": (40, None),
    "road paint": (60, None),  # lane-marking (road under learning_map)
    "sidewalk": (48, None),
    "terrain": (72, None),
    "building": (50, None),
    "pole": (80, None),
    "sign": (81, None),  # traffic-sign
    "vegetation": (70, None),
    "trunk": (71, None),
    "Car": (10, 252),  # car / moving-car
    "Van": (10, 252),
    "Truck": (18, 258),  # truck / moving-truck
    "Pedestrian": (30, 254),  # person / moving-person
    "Cyclist": (31, 253),  # bicyclist / moving-bicyclist
}
"""The generator's semantic classes (:data:`.shapes.SEMANTIC_CLASSES`) → SemanticKITTI raw ids
``(static, moving)``; moving is None for stuff.

Road 40, road paint 60 (lane-marking), sidewalk 48, terrain 72, building 50, pole 80, sign 81
(traffic-sign), vegetation 70, tree trunks 71; Car and Van → car 10, Truck → truck 18, Pedestrian →
person 30, Cyclist (rider and bicycle as one object) → bicyclist 31. An object faster than
:data:`MOVING_SPEED` gets the moving id (252 car, 258 truck, 254 person, 253 bicyclist), which
SemanticKITTI's ``learning_map`` folds back into the static class. Anything else (clutter,
``unlabelled``) is 0, unlabeled. Every raw id here is in the ``synthetic`` class map.
"""

MOVING_SPEED = 0.5
"""m/s: objects faster than this (world frame) get SemanticKITTI's moving ids."""

_missing = sorted(set(SEMANTIC_CLASSES) - set(SEMANTIC_KITTI_IDS))
assert not _missing, f"generator classes without a SemanticKITTI id: {_missing}"
_STATIC = np.array([SEMANTIC_KITTI_IDS[c][0] for c in SEMANTIC_CLASSES], np.uint32)
_MOVING = np.array(
    [SEMANTIC_KITTI_IDS[c][1] or SEMANTIC_KITTI_IDS[c][0] for c in SEMANTIC_CLASSES], np.uint32
)


def semantic_kitti_ids(point_semantic: NDArray, point_speed: NDArray | None = None) -> NDArray[np.uint32]:
    """(N,) SemanticKITTI raw ids of points of generator classes ``point_semantic`` (N,) hitting
    objects of speed ``point_speed`` (N,) m/s (None: all static); see :data:`SEMANTIC_KITTI_IDS`."""
    sem = np.asarray(point_semantic, np.int64)
    if point_speed is None:
        return _STATIC[sem]
    return np.where(np.asarray(point_speed) > MOVING_SPEED, _MOVING[sem], _STATIC[sem])


def semantic_kitti_labels(frame: SyntheticFrame) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """A frame's ``(semantic, instance)`` ids, each (N,) uint32: raw ids (:func:`semantic_kitti_ids`)
    and track id + 1 for points on an object (0 for stuff)."""
    semantic = semantic_kitti_ids(frame.point_semantic, frame.point_speed)
    instance = np.where(frame.point_track >= 0, frame.point_track.astype(np.int64) + 1, 0)
    if instance.max(initial=0) > 0xFFFF:
        raise ValueError(f"frame {frame.frame_index}: track id {instance.max() - 1} does not fit 16 bits")
    return semantic, instance.astype(np.uint32)


def sequence_name(sequence: int) -> str:
    """Sequence ``s``'s folder name: two digits (``"07"``), more past 99."""
    return f"{sequence:02d}"


@dataclass(frozen=True)
class SyntheticSegmentation:
    """What :func:`write_semantickitti` writes by default (and the segmentation DataModule generates).

    The defaults give 801 training scans in 267 sequences of 3 and 159 validation scans in 53 other
    sequences (many short sequences: many different streets, which the rare classes — people,
    cyclists, trucks, poles — need more than consecutive views of one street), from a 32-beam sensor
    with a 0.4° azimuth step: about 27 600 points a scan, a quarter of the HDL-64E default, so a
    model trains on the CPU in minutes. Generation takes about 15 ms a scan on one core, plus writing
    (about 0.55 MB a scan, 530 MB in all; 24 s here).

    Attributes:
        frames: scans in all.
        sequences: sequences (the scans split into runs of consecutive frames, sizes within 1).
        val_fraction: share of the sequences that are validation (whole sequences).
        seed: the dataset's seed.
        num_beams, azimuth_step_deg, max_range: the sensor (:class:`.config.SyntheticConfig`).
        workers: processes that write it.
    """

    frames: int = 960
    sequences: int = 320
    val_fraction: float = 1 / 6
    seed: int = 0
    num_beams: int = 32
    azimuth_step_deg: float = 0.4
    max_range: float = 120.0
    workers: int = 1

    def config(self) -> SyntheticConfig:
        """The generator config these knobs give."""
        return SyntheticConfig(
            num_beams=self.num_beams, azimuth_step_deg=self.azimuth_step_deg, max_range=self.max_range
        )

    def write(self, out: str | os.PathLike, progress: bool = False) -> dict:
        """:func:`write_semantickitti` with these arguments."""
        return write_semantickitti(
            out,
            frames=self.frames,
            sequences=self.sequences,
            val_fraction=self.val_fraction,
            seed=self.seed,
            workers=self.workers,
            config=self.config(),
            progress=progress,
        )


def _sequence_files(out: Path, name: str) -> list[Path]:
    folder = out / "sequences" / name
    return [folder / "calib.txt", folder / "times.txt", folder / "poses.txt"]  # poses.txt last


def _calib(frame_calib) -> SemanticKittiCalib:
    tr = np.eye(4)
    tr[:3] = frame_calib.Tr_velo_to_cam
    return SemanticKittiCalib(
        P=np.stack([frame_calib.P0, frame_calib.P1, frame_calib.P2, frame_calib.P3]), Tr=tr
    )


def _write_sequence(args: tuple) -> dict:
    """Write one sequence (skipping the scans already there); its name, scans written, points."""
    out, config, seed, layout, sequence, overwrite = args
    name = sequence_name(sequence)
    lo, hi = layout.bounds(sequence)
    seq_files = _sequence_files(out, name)
    scans = [(scan_path(out, name, k), scan_path(out, name, k, "labels")) for k in range(hi - lo)]
    done = all(p.is_file() for p in seq_files) and all(a.is_file() and b.is_file() for a, b in scans)
    if done and not overwrite:
        return {"sequence": name, "generated": 0, "scans": hi - lo}
    generated = 0
    poses, times = [], []
    calib = None
    for k, index in enumerate(range(lo, hi)):
        bin_path, label_path = scans[k]
        if overwrite or not (bin_path.is_file() and label_path.is_file()):
            frame = generate_frame(config, seed, index, layout)
            semantic, instance = semantic_kitti_labels(frame)
            write_labels(label_path, semantic, instance, fsync=False)
            write_scan(bin_path, frame.points, fsync=False)
            pose, frame_calib = frame.pose, frame.calib
            generated += 1
        else:  # the pose without ray casting: the world is cached per sequence
            world, frame_calib, _, _, t = world_for(config, seed, index, layout)
            pose = world.ego_pose(t)
        if calib is None:
            calib = _calib(frame_calib)
        poses.append(pose)
        times.append(k / config.frame_rate_hz)
    relative = np.linalg.inv(poses[0]) @ np.asarray(poses)  # scan → scan 0, lidar frame
    write_calib(seq_files[0], calib, fsync=False)
    write_times(seq_files[1], times, fsync=False)
    write_poses(seq_files[2], relative, calib, fsync=False)
    return {"sequence": name, "generated": generated, "scans": hi - lo}


def _check_arguments(frames: int, sequences: int, workers: int = 1) -> None:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    if not 1 <= sequences <= frames:
        raise ValueError(f"sequences must be in [1, frames={frames}], got {sequences}")
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")


def _summary(frames: int, sequences: int, val_fraction: float, seed: int, config: SyntheticConfig) -> dict:
    """``synthetic.json``'s content but ``num_points_mean``."""
    layout = SequenceLayout(int(frames), int(sequences))
    _, val_frames = split_frames(frames, sequences, val_fraction, seed)
    val = sorted({sequence_name(layout.locate(i)[0]) for i in val_frames})
    train = [sequence_name(s) for s in range(sequences) if sequence_name(s) not in val]
    return {
        "generator": "perception.data.synthetic",
        "layout": "semantickitti",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "args": {"frames": int(frames), "sequences": int(sequences), "val_fraction": float(val_fraction)},
        "config": config.to_dict(),
        "label_map": "synthetic",
        "splits": {"train": train, "val": val},
    }


def check_dataset_arguments(
    out: str | os.PathLike,
    frames: int,
    sequences: int,
    val_fraction: float,
    seed: int,
    config: SyntheticConfig | None = None,
) -> None:
    """Refuse (ValueError, naming the file) a folder whose ``synthetic.json`` records other arguments."""
    _check_existing(Path(out), _summary(frames, sequences, val_fraction, seed, config or SyntheticConfig()))


def _check_existing(out: Path, summary: dict) -> None:
    meta = out / "synthetic.json"
    if not meta.is_file():
        return
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return
    keys = ("layout", "version", "seed", "args", "config")
    if isinstance(old, dict) and any(old.get(k) != summary[k] for k in keys):
        raise ValueError(
            f"{meta}: {out} holds a synthetic dataset made with other arguments "
            f"({ {k: old.get(k) for k in keys if old.get(k) != summary[k]} }); use another folder or overwrite"
        )


def write_sequences(
    out: str | os.PathLike,
    frames: int = 960,
    sequences: int = 320,
    which: Sequence[int] | None = None,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    config: SyntheticConfig | None = None,
    progress: bool = False,
) -> list[dict]:
    """Write the files of sequences ``which`` (default: all) of the dataset; no ``synthetic.json``.

    Args:
        out, frames, sequences, seed, workers, overwrite, config, progress: as
            :func:`write_semantickitti`.
        which: sequence numbers in ``[0, sequences)``, written in the order given.

    Returns:
        Per sequence of ``which``: ``sequence`` (its name), ``generated`` (scans written now), ``scans``.
    """
    _check_arguments(frames, sequences, workers)
    config = config or SyntheticConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    which = list(range(sequences)) if which is None else [int(s) for s in which]
    outside = [s for s in which if not 0 <= s < sequences]
    if outside:
        raise ValueError(f"sequences outside [0, {sequences}): {outside[:5]}")
    layout = SequenceLayout(int(frames), int(sequences))
    jobs = [(out, config, int(seed), layout, s, overwrite) for s in which]
    if workers == 1 or len(jobs) <= 1:
        results_iter = map(_write_sequence, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        results_iter = pool.map(_write_sequence, jobs)
    try:
        if progress:
            from rich.progress import track

            results_iter = track(results_iter, total=len(jobs), description="synthetic sequences")
        return list(results_iter)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def finish_semantickitti(
    out: str | os.PathLike,
    frames: int = 960,
    sequences: int = 320,
    val_fraction: float = 1 / 6,
    seed: int = 0,
    config: SyntheticConfig | None = None,
) -> dict:
    """Write ``synthetic.json`` (arguments, config, train / val sequences, mean points a scan).

    The mean is over the scans on disk, so call it once every sequence is written.

    Returns:
        ``synthetic.json``'s content.
    """
    _check_arguments(frames, sequences)
    config = config or SyntheticConfig()
    out = Path(out)
    summary = _summary(frames, sequences, val_fraction, seed, config)
    sizes = [p.stat().st_size // 16 for p in (out / "sequences").glob("*/velodyne/*.bin")]
    summary["num_points_mean"] = float(np.mean(sizes)) if sizes else 0.0
    atomic_write_text(out / "synthetic.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def write_semantickitti(
    out: str | os.PathLike,
    frames: int = 960,
    sequences: int = 320,
    val_fraction: float = 1 / 6,
    seed: int = 0,
    workers: int = 1,
    overwrite: bool = False,
    config: SyntheticConfig | None = None,
    progress: bool = False,
) -> dict:
    """Generate ``frames`` scans in ``sequences`` sequences into ``out`` (module docstring's layout).

    Args:
        out: dataset root (created if missing).
        frames: scans in all (≥ 1); sequences: 1..frames.
        val_fraction: share of sequences listed as validation in ``synthetic.json`` (whole sequences,
            drawn as :func:`.writer.split_frames` draws them, at least one of each with ≥ 2 sequences).
        seed: the dataset's seed; the same seed, arguments and config give byte-identical files.
        workers: processes (spawned); 1 runs in this process.
        overwrite: regenerate scans that already exist.
        config: generator knobs (default :class:`.config.SyntheticConfig`).
        progress: show a progress bar on the terminal.

    Returns:
        ``synthetic.json``'s content plus ``generated`` (scans written now), ``skipped`` and ``seconds``.

    Raises:
        ValueError: bad arguments, or ``out`` holds a synthetic dataset made with other arguments.
    """
    _check_arguments(frames, sequences, workers)
    config = config or SyntheticConfig()
    out = Path(out)
    expected = _summary(frames, sequences, val_fraction, seed, config)  # checks val_fraction too
    if not overwrite:
        _check_existing(out, expected)
    start = time.perf_counter()
    results = write_sequences(out, frames, sequences, None, seed, workers, overwrite, config, progress)
    seconds = time.perf_counter() - start
    summary = finish_semantickitti(out, frames, sequences, val_fraction, seed, config)
    generated = sum(r["generated"] for r in results)
    return {**summary, "generated": generated, "skipped": int(frames) - generated, "seconds": seconds}
