"""The converted Waymo layout: one ``.npz`` a frame, a segment index, split files, and their helpers.

``tools/convert_waymo.py`` decodes each frame once (:mod:`perception.data.waymo.convert`) into::

    OUT/
      <split>/<context_name>/<timestamp_micros>.npz   one frame (arrays below; nothing pickled)
      <split>/<context_name>/index.json               the segment's index, written last and atomically
      ImageSets/<split>.txt                           frame keys "<context_name>/<timestamp_micros>"
      gt_database/                                    objects of the train split, for ground-truth
                                                      sampling (:mod:`perception.data.waymo.database`)

**Frame files.** ``points`` (N, 8) float32, the columns of :data:`~perception.data.waymo.POINT_COLUMNS`
as :func:`~perception.data.waymo.read_frames` returns them (x, y, z in the vehicle frame, intensity,
elongation, nlz, return, lidar; all five lidars and both returns by default); ``boxes`` (M, 7)
float32 ``[x, y, z, l, w, h, heading]``; ``types`` (M,) int8 Label.Type; ``names`` (M,) str;
``ids`` (M,) str; ``num_lidar_points`` (M,) int32; ``difficulty`` (M,) int8 (1 LEVEL_1, 2 LEVEL_2,
as the official metric decides it); ``pose`` (4, 4) float64 vehicle → world (NaN where the frame
has none); ``speeds`` (M, 2) float32 the labels' ``speed_x, speed_y`` (m/s, vehicle frame; NaN where
a label has no metadata). ``speeds`` is optional (:data:`OPTIONAL_ARRAYS`): files converted before
it was added lack it and stay readable. Written to a temporary name, then renamed: a file that
exists is complete.

**Segment index** (``index.json``): ``format``, ``version``, ``context_name``, ``split``,
``source`` (the TFRecord file, or the v2 root and segment), ``source_name`` and ``source_bytes``
(to tell a finished segment from the same file), the conversion settings (``every``, ``lidars``,
``returns``, ``unknown_labels``), ``time_of_day``, ``location``, ``weather`` (the context's stats,
from its first frame), ``class_counts`` and ``frames``: one record per frame with
``timestamp_micros``, ``file`` (relative to the segment folder), ``record`` (its position in the
source), ``points`` and ``boxes`` (counts). It is written after every frame file, so a segment with
an index is complete.

**Split file.** ``ImageSets/<split>.txt`` lists the frames of every segment of ``OUT/<split>`` that
has an index (:func:`write_split_file`), by context name, then timestamp.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.io import atomic_write_text
from perception.data.waymo.frame import POINT_COLUMNS, WaymoFrame

__all__ = [
    "FORMAT",
    "FRAME_ARRAYS",
    "OPTIONAL_ARRAYS",
    "SEGMENT_INDEX",
    "SOURCE_FOLDERS",
    "VERSION",
    "frame_arrays",
    "frame_file",
    "frame_key",
    "load_frame_arrays",
    "missing_waymo_message",
    "model_points",
    "parse_frame_key",
    "read_segment_index",
    "read_split",
    "split_file",
    "write_split_file",
]

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
    "speeds": "float32",
}
"""The arrays of a frame file and their dtypes."""

OPTIONAL_ARRAYS: frozenset[str] = frozenset({"speeds"})
"""Arrays of :data:`FRAME_ARRAYS` that files converted by an earlier version may lack."""

SOURCE_FOLDERS: dict[str, str] = {"train": "training", "val": "validation", "test": "testing"}
"""Split name → the folder of the Waymo release it is converted from."""

SEGMENT_INDEX = "index.json"
"""The name of a segment folder's index."""

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


def split_file(root: str | os.PathLike, split: str) -> Path:
    """``ROOT/ImageSets/<split>.txt``."""
    return Path(root) / "ImageSets" / f"{split}.txt"


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """The frame keys of ``ROOT/ImageSets/<split>.txt``, in file order."""
    return [line.strip() for line in split_file(root, split).read_text().splitlines() if line.strip()]


def missing_waymo_message(root: str | os.PathLike, split: str) -> str:
    """What to say when ``root`` holds no converted ``split``: where the files go and how to make them."""
    root = Path(root)
    source = SOURCE_FOLDERS.get(split, split)
    return (
        f"{root}: no converted Waymo split '{split}' here (expected {split_file(root, split)} and "
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
        "speeds": np.asarray(frame.speed, dtype=np.float32).reshape(m, 3)[:, :2].copy(),
    }


def load_frame_arrays(path: str | os.PathLike, arrays: Iterable[str] | None = None) -> dict[str, NDArray]:
    """The arrays of a frame file (:data:`FRAME_ARRAYS`), loaded without pickle.

    Args:
        arrays: the names to load (default: all); the others are not read (a labels-only read
            skips ``points``). An optional array (:data:`OPTIONAL_ARRAYS`) the file lacks is left
            out of the result.
    """
    names = list(FRAME_ARRAYS) if arrays is None else list(arrays)
    unknown = sorted(set(names) - set(FRAME_ARRAYS))
    if unknown:
        raise ValueError(f"unknown frame arrays {unknown}; a frame file holds {list(FRAME_ARRAYS)}")
    with np.load(path, allow_pickle=False) as npz:
        missing = set(FRAME_ARRAYS) - OPTIONAL_ARRAYS - set(npz.files)
        if missing:
            raise ValueError(f"{path}: not a converted Waymo frame (missing arrays {sorted(missing)})")
        out = {name: npz[name] for name in names if name in npz.files}
    broken = sorted(name for name, value in out.items() if not isinstance(value, np.ndarray))
    if broken:  # np.load hands back the raw bytes of a member that is no .npy array
        raise ValueError(f"{path}: corrupt frame file ({', '.join(broken)} not a .npy array)")
    return out


def read_segment_index(folder: str | os.PathLike) -> dict | None:
    """A segment folder's ``index.json`` as a dict, or None where it is absent or not ours."""
    try:
        index = json.loads((Path(folder) / SEGMENT_INDEX).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        return None
    return index


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
    atomic_write_text(split_file(root, split), "".join(k + "\n" for k in keys))
    return keys


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
