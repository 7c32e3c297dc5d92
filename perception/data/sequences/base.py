"""What every sequence reader shares: the protocol, the error, and the class → agent-class maps."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.structures.occupancy import AGENT_CLASSES, TrackedFrame

__all__ = [
    "KITTI_AGENT_CLASSES",
    "WAYMO_AGENT_CLASSES",
    "SequenceError",
    "SequenceSource",
    "agent_class_of",
]

KITTI_AGENT_CLASSES: dict[str, str] = {
    "Car": "vehicle",
    "Van": "vehicle",
    "Truck": "vehicle",
    "Tram": "vehicle",
    "Bus": "vehicle",
    "Pedestrian": "pedestrian",
    "Person_sitting": "pedestrian",
    "Cyclist": "cyclist",
}
"""KITTI type names (object and tracking labels, the synthetic generator) → an agent class of
:data:`~perception.structures.occupancy.AGENT_CLASSES`; any other name (``Misc``) is no agent."""

WAYMO_AGENT_CLASSES: dict[int, str] = {1: "vehicle", 2: "pedestrian", 4: "cyclist"}
"""Waymo Label.Type values → agent class; 3 (sign) and 0 (unknown) are no agent."""


class SequenceError(ValueError):
    """A sequence dataset is malformed or lacks a part; the message names the dataset root or the
    file, the sequence and the frame."""


@runtime_checkable
class SequenceSource(Protocol):
    """A dataset of sequences of tracked frames (what the occupancy dataset reads).

    Attributes:
        root: the dataset's root folder.
    """

    root: Path

    def sequences(self) -> list[str]:
        """The sequences' names, sorted."""
        ...

    def frame_ids(self, sequence: str) -> list[str]:
        """The frame ids of a sequence, in time order."""
        ...

    def read(self, sequence: str, frame_id: str, *, points: bool = True) -> TrackedFrame:
        """One frame; ``points=False`` reads labels and pose only (no point file is opened)."""
        ...


def agent_class_of(names: ArrayLike, table: dict) -> NDArray[np.int64]:
    """(M,) int64 index into ``AGENT_CLASSES`` of each class name or type code by ``table``, -1 if none."""
    index = {key: AGENT_CLASSES.index(agent) for key, agent in table.items()}
    return np.array([index.get(n, -1) for n in np.asarray(names).tolist()], dtype=np.int64)
