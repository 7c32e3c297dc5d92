"""``Frame``: the dataset-agnostic LiDAR sweep with its 3D labels that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Frame"]


@dataclass(kw_only=True)
class Frame:
    """One LiDAR sweep with its 3D labels, in the sensor (vehicle) frame.

    Attributes:
        frame_id: the dataset's id of the frame (KITTI: ``"000123"``).
        points: (N, C) float32, columns x, y, z (metres; x forward, y left, z up), then the
            dataset's attributes (KITTI: reflectance in [0, 1]).
        boxes: (M, 7) float32 ``[x, y, z, l, w, h, yaw]``, box centres, yaw in [-π, π).
        names: (M,) str, class names as the dataset spells them.
        difficulty: (M,) int32, the dataset's difficulty level (KITTI: 0 easy, 1 moderate, 2 hard,
            -1 none of them); -1 where unknown.
        pose: (4, 4) float64 sensor → world transform, or None where the dataset has none.
        timestamp_micros: capture time in microseconds, or None.
    """

    frame_id: str
    points: NDArray[np.float32]
    boxes: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    names: NDArray[np.str_] = field(default_factory=lambda: np.zeros((0,), dtype="<U16"))
    difficulty: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    pose: NDArray[np.float64] | None = None
    timestamp_micros: int | None = None

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] < 3:
            raise ValueError(f"frame {self.frame_id}: points must be (N, >=3), got {self.points.shape}")
        m = len(self.boxes)
        if self.boxes.shape != (m, 7) or len(self.names) != m or len(self.difficulty) != m:
            raise ValueError(
                f"frame {self.frame_id}: boxes {self.boxes.shape}, names {len(self.names)} and "
                f"difficulty {len(self.difficulty)} must agree on M"
            )

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])
