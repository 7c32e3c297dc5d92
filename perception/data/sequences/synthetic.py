"""Sequences of the synthetic generator (``tools/make_synthetic.py --sequences N``).

The layout is KITTI object detection's (:mod:`perception.data.kitti`) with a lidar → world pose a
frame, plus ``sequences.json`` (:func:`perception.data.synthetic.writer.write_dataset`)::

    ROOT/
      training/{velodyne,label_2,calib,pose}/NNNNNN.*   one file a frame, frame ids unique over the dataset
      sequences.json    {"frame_rate_hz": .., "sequences": {"0000": {"frames": [ids], "timestamps_micros":
                        [..], "track_ids": [[one a label row, DontCare rows excluded], ..],
                        "split": "train" | "val"}, ..}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from perception.data.kitti import frame_path, read_calib, read_label, read_pose, read_velodyne
from perception.data.sequences.base import KITTI_AGENT_CLASSES, SequenceError, agent_class_of
from perception.structures.occupancy import TrackedFrame

__all__ = ["SEQUENCES_FILE", "SyntheticSequences"]

SEQUENCES_FILE = "sequences.json"
"""The name of the synthetic dataset's sequence index, at its root."""

_SPLITS = ("train", "val")


class SyntheticSequences:
    """The sequences of a synthetic dataset, from its ``sequences.json`` and KITTI-layout files.

    Boxes are read from the label files (rectified camera frame, 2 decimals) and converted to the
    lidar frame with each frame's calibration; DontCare rows are dropped. Track ids and timestamps
    come from ``sequences.json``, poses from ``training/pose/NNNNNN.txt``.

    Args:
        root: the dataset root (holding ``sequences.json``).
        split: ``"train"`` or ``"val"``: the sequences whose ``split`` field says so; None: all.

    Raises:
        SequenceError: ``sequences.json`` is missing, unreadable, or a sequence's entry lacks a field
            or has lists of different lengths (the message names the file and the sequence).
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None) -> None:
        self.root = Path(root)
        if split is not None and split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS} or None, got {split!r}")
        self.split = split
        self.index_path = self.root / SEQUENCES_FILE
        try:
            doc = json.loads(self.index_path.read_text())
            entries = doc["sequences"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise SequenceError(
                f"{self.index_path}: not a readable synthetic sequence index ({type(err).__name__}: {err}); "
                "write one with `python tools/make_synthetic.py --sequences N`"
            ) from None
        self._entries: dict[str, dict] = {}
        self._position: dict[str, dict[str, int]] = {}
        for name in sorted(entries):
            entry = self._check(name, entries[name])
            if split is None or entry["split"] == split:
                self._entries[name] = entry
                self._position[name] = {f: i for i, f in enumerate(entry["frames"])}

    def _check(self, name: str, entry: object) -> dict:
        where = f"{self.index_path}: sequence {name}"
        keys = ("frames", "timestamps_micros", "track_ids") + (("split",) if self.split else ())
        missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise SequenceError(f"{where}: the entry lacks {', '.join(missing)} (for every frame)")
        frames, stamps, tracks = entry["frames"], entry["timestamps_micros"], entry["track_ids"]
        if not len(frames) == len(stamps) == len(tracks):
            first = min(len(frames), len(stamps), len(tracks))
            frame = frames[first] if first < len(frames) else f"after {frames[-1] if frames else 'none'}"
            raise SequenceError(
                f"{where} frame {frame}: {len(frames)} frames, {len(stamps)} timestamps and {len(tracks)} "
                "track-id lists must agree"
            )
        for i in range(1, len(stamps)):
            if not stamps[i] > stamps[i - 1]:
                raise SequenceError(f"{where} frame {frames[i]}: timestamps are not increasing")
        return {**entry, "frames": [str(f) for f in frames]}

    def sequences(self) -> list[str]:
        """The sequences of the split, sorted (``"0000"``, ``"0001"``, ...)."""
        return list(self._entries)

    def frame_ids(self, sequence: str) -> list[str]:
        """The sequence's frame ids (``"000012"``), in time order."""
        return list(self._entry(sequence, "?")["frames"])

    def _entry(self, sequence: str, frame_id: str) -> dict:
        if sequence not in self._entries:
            raise SequenceError(
                f"{self.index_path}: sequence {sequence} frame {frame_id}: no such sequence in split "
                f"{self.split or 'all'} (have {', '.join(self._entries) or 'none'})"
            )
        return self._entries[sequence]

    def read(self, sequence: str, frame_id: str, *, points: bool = True) -> TrackedFrame:
        """One frame: boxes (M, 7) in the lidar frame, its pose (lidar → world) and track ids.

        ``points`` (N, 4) float32 x, y, z, reflectance (lidar frame); with ``points=False`` the scan
        is not read.

        Raises:
            SequenceError: the frame is not in the sequence, a file is missing or malformed, or the
                label file's object rows and ``sequences.json``'s track ids disagree in number (the
                message names the file, the sequence and the frame).
        """
        entry = self._entry(sequence, frame_id)
        position = self._position[sequence].get(frame_id)
        where = f"sequence {sequence} frame {frame_id}"
        if position is None:
            raise SequenceError(f"{self.index_path}: {where}: the frame is not in the sequence")
        try:
            objects = read_label(frame_path(self.root, frame_id, "label_2"))
            calib = read_calib(frame_path(self.root, frame_id, "calib"))
            pose_path = frame_path(self.root, frame_id, "pose")
            if not pose_path.is_file():
                raise FileNotFoundError(f"{pose_path}: pose file does not exist")
            pose = read_pose(pose_path)
            scan = read_velodyne(frame_path(self.root, frame_id, "velodyne")) if points else None
        except (OSError, ValueError) as err:
            raise SequenceError(f"{where}: {err}") from None
        objects = objects.select(objects.names != "DontCare")
        track_ids = [str(t) for t in entry["track_ids"][position]]
        if len(track_ids) != len(objects):
            raise SequenceError(
                f"{frame_path(self.root, frame_id, 'label_2')}: {where}: {len(objects)} object rows, but "
                f"{self.index_path} lists {len(track_ids)} track ids"
            )
        return TrackedFrame(
            sequence=sequence,
            frame_id=frame_id,
            timestamp_micros=int(entry["timestamps_micros"][position]),
            pose=pose,
            boxes=calib.boxes_camera_to_lidar(objects.boxes_camera).astype(np.float32).reshape(-1, 7),
            agent_class=agent_class_of(objects.names, KITTI_AGENT_CLASSES),
            track_ids=np.array(track_ids, dtype=np.str_).reshape(len(track_ids)),
            names=objects.names,
            points=scan,
        )

    def __repr__(self) -> str:
        return f"SyntheticSequences({str(self.root)!r}, split={self.split!r}, sequences={len(self._entries)})"
