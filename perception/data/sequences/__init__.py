"""Sequence readers for occupancy forecasting: tracked frames of a dataset's sequences, in time order.

Each source lists its sequences and their frames and reads one frame as a
:class:`~perception.structures.occupancy.TrackedFrame` (boxes in the sensor frame, the sensor →
world pose, track ids stable over a sequence, the agent class of each object); ``points=False``
reads labels and pose only, which is what the occupancy dataset asks of future frames. Three
layouts, each in its own module:

- :class:`SyntheticSequences`: the synthetic generator's ``--sequences`` output (``sequences.json``);
- :class:`KittiTrackingSequences`: the KITTI tracking benchmark (``training/label_02``, OXTS poses);
- :class:`WaymoSequences`: converted Waymo segments (``<split>/<context>/index.json``).

:func:`open_sequences` picks the one a root holds. Every malformed or missing part raises
:class:`SequenceError`, naming the root or file, the sequence and the frame.
"""

from __future__ import annotations

import os
from pathlib import Path

from perception.data.sequences.base import (
    KITTI_AGENT_CLASSES,
    WAYMO_AGENT_CLASSES,
    SequenceError,
    SequenceSource,
)
from perception.data.sequences.kitti_tracking import KittiTrackingSequences
from perception.data.sequences.synthetic import SEQUENCES_FILE, SyntheticSequences
from perception.data.sequences.waymo import WaymoSequences
from perception.data.waymo.converted import SEGMENT_INDEX, read_segment_index

__all__ = [
    "KITTI_AGENT_CLASSES",
    "SOURCES",
    "WAYMO_AGENT_CLASSES",
    "KittiTrackingSequences",
    "SequenceError",
    "SequenceSource",
    "SyntheticSequences",
    "WaymoSequences",
    "detect_layout",
    "open_sequences",
]

SOURCES: dict[str, type] = {
    "synthetic": SyntheticSequences,
    "kitti_tracking": KittiTrackingSequences,
    "waymo": WaymoSequences,
}
"""Layout name → its reader class."""


def detect_layout(root: str | os.PathLike) -> str:
    """The layout of ``root``: ``"synthetic"`` where ``sequences.json`` exists, ``"kitti_tracking"``
    where ``training/label_02`` does, ``"waymo"`` where some ``<split>/<context>/index.json`` is a
    converted segment's index.

    Raises:
        SequenceError: none of these (the message names the root and what was looked for).
    """
    root = Path(root)
    if (root / SEQUENCES_FILE).is_file():
        return "synthetic"
    if (root / "training" / "label_02").is_dir():
        return "kitti_tracking"
    if root.is_dir() and any(read_segment_index(p.parent) for p in root.glob(f"*/*/{SEGMENT_INDEX}")):
        return "waymo"
    state = "" if root.is_dir() else " (the folder does not exist)"
    raise SequenceError(
        f"{root}: no sequence dataset found{state}; looked for {root / SEQUENCES_FILE} (synthetic), "
        f"{root / 'training' / 'label_02'} (KITTI tracking) and {root}/<split>/<context_name>/{SEGMENT_INDEX} "
        "(converted Waymo) (sequence: none, frame: none)"
    )


def open_sequences(root: str | os.PathLike, kind: str | None = None, **kwargs: object) -> SequenceSource:
    """The sequence reader of ``root``: ``kind`` (a key of :data:`SOURCES`) or the detected layout.

    ``kwargs`` go to the reader (``split=``, ``sequences=`` for KITTI tracking).
    """
    if kind is None:
        kind = detect_layout(root)
    if kind not in SOURCES:
        raise ValueError(f"kind must be one of {sorted(SOURCES)} or None, got {kind!r}")
    return SOURCES[kind](root, **kwargs)
