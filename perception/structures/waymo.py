"""Waymo's typed values: per-frame objects as the official files hold them, and a sample's record.

The readers are in :mod:`perception.data.waymo`, the metric in :mod:`perception.eval.waymo`; these
types are here so every layer can share them without importing either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["TYPE_CODES", "FrameKey", "WaymoObjects", "WaymoRecord"]

FrameKey = tuple[str, int]
"""A frame: ``(context_name, frame_timestamp_micros)``."""

TYPE_CODES: dict[str, int] = {"UNKNOWN": 0, "VEHICLE": 1, "PEDESTRIAN": 2, "SIGN": 3, "CYCLIST": 4}
"""``Label.Type`` values (``label.proto``), by name without the ``TYPE_`` prefix."""


@dataclass
class WaymoObjects:
    """The objects of one frame, as a ``metrics.Objects`` file holds them.

    Attributes:
        boxes: (M, 7) float64 ``[x, y, z, l, w, h, heading]``, box centre in the vehicle frame, metres,
            heading counter-clockwise from +x in radians.
        types: (M,) int64 ``Label.Type`` codes (:data:`TYPE_CODES`: 1 vehicle, 2 pedestrian, 3 sign,
            4 cyclist).
        scores: (M,) float32 confidences (predictions; 1.0 for ground truth, the proto default).
        difficulty: (M,) int64 ``detection_difficulty_level``: 0 unset, 1 ``LEVEL_1``, 2 ``LEVEL_2``.
        num_lidar_points: (M,) int64 ``num_lidar_points_in_box``.
        overlap_with_nlz: (M,) bool, whether a prediction overlaps a no-label zone.
        ids: (M,) str object ids (``Label.id``), "" where unset.
    """

    boxes: NDArray[np.float64]
    types: NDArray[np.int64]
    scores: NDArray[np.float32] | None = None
    difficulty: NDArray[np.int64] | None = None
    num_lidar_points: NDArray[np.int64] | None = None
    overlap_with_nlz: NDArray[np.bool_] | None = None
    ids: NDArray[np.str_] | None = None

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True, kw_only=True)
class WaymoRecord:
    """What a Waymo sample carries besides its points and training boxes (before any transform).

    Attributes:
        context_name: the segment's context name.
        timestamp_micros: the frame's timestamp, microseconds.
        pose: (4, 4) float64 vehicle → world transform, or None where unknown.
        objects: every labelled object of the frame (all types, SIGN included), vehicle frame:
            ``boxes`` (M, 7), ``types`` Label.Type codes, ``difficulty`` (the official
            detection_difficulty_level), ``num_lidar_points``, ``ids``.
        names: (M,) str type names of ``objects`` (``VEHICLE``, ``PEDESTRIAN``, ``SIGN``, ``CYCLIST``).
    """

    context_name: str
    timestamp_micros: int
    pose: NDArray[np.float64] | None = None
    objects: WaymoObjects = field(
        default_factory=lambda: WaymoObjects(boxes=np.zeros((0, 7)), types=np.zeros(0, np.int64))
    )
    names: NDArray[np.str_] = field(default_factory=lambda: np.zeros((0,), dtype="<U16"))

    @property
    def frame_key(self) -> FrameKey:
        """``(context_name, timestamp_micros)``: the key of the frame in submission files and metrics."""
        return (self.context_name, self.timestamp_micros)

    @property
    def boxes_lidar(self) -> NDArray[np.float32]:
        """(M, 7) float32 boxes of every labelled object, vehicle frame."""
        return np.asarray(self.objects.boxes, dtype=np.float32).reshape(-1, 7)
