"""Waymo segments as sequences, over the converted layout (:mod:`perception.data.waymo.converted`).

One sequence a segment folder ``ROOT/<split>/<context_name>/`` that has an ``index.json`` (a
finished conversion); its frames are the index's, ordered by timestamp, with the timestamp
(microseconds, as a decimal string) as frame id.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from perception.data.sequences.base import WAYMO_AGENT_CLASSES, SequenceError, agent_class_of
from perception.data.waymo.converted import load_frame_arrays, missing_waymo_message, read_segment_index
from perception.structures.occupancy import TrackedFrame

__all__ = ["WaymoSequences"]

_LABELS = ("boxes", "types", "ids", "names", "pose", "speeds")


class WaymoSequences:
    """The segments of a converted Waymo split.

    Boxes ``[x, y, z, l, w, h, heading]`` and points are in the vehicle frame (the sensor frame of
    :class:`TrackedFrame`); ``pose`` is vehicle → world; types 1 vehicle, 2 pedestrian, 4 cyclist
    (3 sign and 0 unknown are no agent, -1); track ids are the labels' object ids; ``velocities`` (M, 2)
    the labels' ``speed_x, speed_y`` (m/s, vehicle frame, NaN for a label without metadata), or None
    for files converted before the speeds were kept.

    Args:
        root: the converted dataset's root.
        split: the split folder (``"train"``, ``"val"``, ...).

    Raises:
        SequenceError: ``ROOT/<split>`` does not exist (the message says how to convert the data).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train") -> None:
        self.root = Path(root)
        self.split = split
        self.folder = self.root / split
        if not self.folder.is_dir():
            raise SequenceError(missing_waymo_message(self.root, split))
        self._frames: dict[str, dict[str, str]] = {}  # context → {frame id: file name}, in time order
        for segment in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            index = read_segment_index(segment)
            if index is None:
                continue  # a conversion under way, or not a segment
            frames = sorted(index["frames"], key=lambda f: int(f["timestamp_micros"]))
            self._frames[segment.name] = {str(int(f["timestamp_micros"])): f["file"] for f in frames}

    def sequences(self) -> list[str]:
        """The context names of the split's converted segments, sorted."""
        return list(self._frames)

    def frame_ids(self, sequence: str) -> list[str]:
        """The segment's timestamps (microseconds, as strings), in time order."""
        return list(self._segment(sequence, "(any)"))

    def _segment(self, sequence: str, frame_id: str) -> dict[str, str]:
        if sequence not in self._frames:
            raise SequenceError(
                f"{self.folder}: sequence {sequence} frame {frame_id}: no converted segment of that name "
                f"(a folder with an index.json; have {len(self._frames)})"
            )
        return self._frames[sequence]

    def read(self, sequence: str, frame_id: str, *, points: bool = True) -> TrackedFrame:
        """One frame; ``points`` (N, 8) float32 as converted (:data:`~perception.data.waymo.POINT_COLUMNS`), not read with
        ``points=False``.

        Raises:
            SequenceError: no such segment or timestamp, the frame file is missing or malformed, or
                the frame has no pose (the message names the file, the segment and the timestamp).
        """
        files = self._segment(sequence, frame_id)
        where = f"sequence {sequence} frame {frame_id}"
        if frame_id not in files:
            raise SequenceError(
                f"{self.folder / sequence}: {where}: no such timestamp in the segment's index"
            )
        path = self.folder / sequence / files[frame_id]
        try:
            arrays = load_frame_arrays(path, _LABELS + (("points",) if points else ()))
        except (OSError, ValueError) as err:
            raise SequenceError(f"{path}: {where}: unreadable frame file ({err})") from None
        pose = arrays["pose"]
        if not np.isfinite(pose).all():
            raise SequenceError(f"{path}: {where}: the frame has no vehicle pose (NaN)")
        speeds = arrays.get("speeds")
        return TrackedFrame(
            sequence=sequence,
            frame_id=frame_id,
            timestamp_micros=int(frame_id),
            pose=np.asarray(pose, np.float64),
            boxes=np.asarray(arrays["boxes"], np.float32).reshape(-1, 7),
            agent_class=agent_class_of(arrays["types"].astype(np.int64), WAYMO_AGENT_CLASSES),
            track_ids=arrays["ids"].astype(np.str_),
            names=arrays["names"].astype(np.str_),
            points=np.asarray(arrays["points"], np.float32) if points else None,
            velocities=None if speeds is None else np.asarray(speeds, np.float32).reshape(-1, 2),
        )

    def __repr__(self) -> str:
        return f"WaymoSequences({str(self.root)!r}, split={self.split!r}, sequences={len(self._frames)})"
