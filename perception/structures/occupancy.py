"""Occupancy forecasting's typed values: a tracked frame of a sequence, the BEV grid, targets, forecasts.

A sequence reader (:mod:`perception.data.sequences`) returns :class:`TrackedFrame` s; the occupancy
dataset stacks the past sweeps and renders :class:`OccupancyTargets` on an :class:`OccupancyGrid` the
way the Waymo occupancy-flow grids define them; models and baselines return an
:class:`OccupancyForecast`; the metric (:mod:`perception.eval.occupancy`) compares the two.

Grid conventions (the official ``occupancy_flow_grids`` / renderer): the grid is fixed to the sensor
pose at the current time with the ego heading up; a point at (x forward, y left) metres of the current
sensor frame falls in column ``round(-y · ppm) + ego_col`` and row ``round(-x · ppm) + ego_row``.
Flow is *backward* flow in grid cells, channel order (dx, dy) = (column, row) offsets from a cell at
the later time to where its content was at the earlier time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "AGENT_CLASSES",
    "OccupancyForecast",
    "OccupancyGrid",
    "OccupancyTargets",
    "TrackedFrame",
]

AGENT_CLASSES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist")
"""The agent classes of the occupancy grids, in channel order (the official metric scores vehicles)."""


@dataclass(kw_only=True)
class TrackedFrame:
    """One frame of a sequence: a sweep (optional) and its labelled objects with track ids.

    Attributes:
        sequence: the sequence's name (KITTI tracking ``"0003"``, a Waymo context name, ...).
        frame_id: the frame's id within the sequence (file stem or timestamp).
        timestamp_micros: capture time, microseconds.
        pose: (4, 4) float64 sensor → world transform.
        boxes: (M, 7) float32 ``[x, y, z, l, w, h, yaw]`` in the sensor frame of this frame.
        agent_class: (M,) int64 index into :data:`AGENT_CLASSES`, -1 for objects of no agent class
            (signs, misc, ...).
        track_ids: (M,) str, each object's id, stable across the frames of its sequence.
        names: (M,) str class names as the dataset spells them.
        points: (N, C) float32 x, y, z, then the dataset's attributes, sensor frame; None when the
            reader was asked for labels only.
        velocities: (M, 2) float32 object velocity (m/s) in this frame's sensor axes where the dataset
            gives it (Waymo), else None.
    """

    sequence: str
    frame_id: str
    timestamp_micros: int
    pose: NDArray[np.float64]
    boxes: NDArray[np.float32]
    agent_class: NDArray[np.int64]
    track_ids: NDArray[np.str_]
    names: NDArray[np.str_] = field(default_factory=lambda: np.zeros(0, dtype="<U16"))
    points: NDArray[np.float32] | None = None
    velocities: NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        m = len(self.boxes)
        where = f"sequence {self.sequence} frame {self.frame_id}"
        if self.boxes.shape != (m, 7) or len(self.agent_class) != m or len(self.track_ids) != m:
            raise ValueError(
                f"{where}: boxes {self.boxes.shape}, agent_class {len(self.agent_class)} and track_ids "
                f"{len(self.track_ids)} must agree on M"
            )
        if self.pose.shape != (4, 4) or not np.all(np.isfinite(self.pose)):
            raise ValueError(f"{where}: pose must be a finite (4, 4) matrix")
        if self.points is not None and (self.points.ndim != 2 or self.points.shape[1] < 3):
            raise ValueError(f"{where}: points must be (N, >=3), got {self.points.shape}")
        if self.velocities is not None and self.velocities.shape != (m, 2):
            raise ValueError(f"{where}: velocities must be ({m}, 2), got {self.velocities.shape}")


@dataclass(frozen=True)
class OccupancyGrid:
    """A BEV grid fixed to the current sensor pose, ego heading up (Waymo's defaults).

    Attributes:
        height, width: cells (rows, columns).
        pixels_per_meter: cells per metre (3.2 → 0.3125 m cells).
        ego_col, ego_row: the cell of the sensor origin.
    """

    height: int = 256
    width: int = 256
    pixels_per_meter: float = 3.2
    ego_col: int = 128
    ego_row: int = 192

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1 or self.pixels_per_meter <= 0:
            raise ValueError(f"grid needs positive sizes and pixels_per_meter, got {self}")

    @property
    def cell_size(self) -> float:
        """Metres per cell."""
        return 1.0 / self.pixels_per_meter

    def to_image(self, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray]:
        """Sensor-frame metres (x forward, y left) → (column, row) as the official renderer rounds them.

        Rounding is half to even (``tf.round``); the results are float arrays of integers.
        """
        ppm = self.pixels_per_meter
        col = np.round(-np.asarray(y, np.float64) * ppm) + self.ego_col
        row = np.round(-np.asarray(x, np.float64) * ppm) + self.ego_row
        return col, row

    def inside(self, col: NDArray, row: NDArray) -> NDArray[np.bool_]:
        """Whether (column, row) lies on the grid."""
        return (col >= 0) & (row >= 0) & (col < self.width) & (row < self.height)

    def cell_centres(self) -> NDArray[np.float32]:
        """(H, W, 2) sensor-frame (x, y) metres of each cell's centre."""
        rows, cols = np.meshgrid(np.arange(self.height), np.arange(self.width), indexing="ij")
        x = (self.ego_row - rows) / self.pixels_per_meter
        y = (self.ego_col - cols) / self.pixels_per_meter
        return np.stack([x, y], -1).astype(np.float32)

    def extent(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, y_min, y_max)`` metres covered by the grid (cell edges), sensor frame."""
        c = self.cell_size
        return (
            (self.ego_row - self.height + 0.5) * c,
            (self.ego_row + 0.5) * c,
            (self.ego_col - self.width + 0.5) * c,
            (self.ego_col + 0.5) * c,
        )


@dataclass(kw_only=True)
class OccupancyForecast:
    """Occupancy and flow at T waypoints, one sample (NumPy) or a batch (torch, a leading B axis).

    Attributes:
        observed: (T, A, H, W) probability that an agent seen in the history occupies a cell,
            per agent class (:data:`AGENT_CLASSES`).
        occluded: (T, A, H, W) the same for agents not seen in the history.
        flow: (T, H, W, 2) backward flow of all vehicles in grid cells, (dx, dy) = (column, row).
    """

    observed: NDArray[np.float32]
    occluded: NDArray[np.float32]
    flow: NDArray[np.float32]


@dataclass(kw_only=True)
class OccupancyTargets:
    """The true grids of one sample at T waypoints (the official definitions).

    Attributes:
        waypoint_times: (T,) float32 seconds after the current sweep.
        observed: (T, A, H, W) float32 in {0, 1}: occupancy of agents valid at any history step.
        occluded: (T, A, H, W) float32 in {0, 1}: occupancy of agents not valid in the history.
        flow: (T, H, W, 2) float32 backward flow of all vehicles from waypoint k to waypoint k-1
            (the current time for k = 0), grid cells, (dx, dy) = (column, row).
        flow_origin: (T, H, W) float32 all-vehicle occupancy at the previous waypoint (the current
            time for k = 0).
        current: (A, H, W) float32 occupancy of every agent at the current time.
        baselines: forecasts of the label-based baselines (``copy_forward``, ``constant_velocity``)
            for the same sample, scored beside the model.
    """

    waypoint_times: NDArray[np.float32]
    observed: NDArray[np.float32]
    occluded: NDArray[np.float32]
    flow: NDArray[np.float32]
    flow_origin: NDArray[np.float32]
    current: NDArray[np.float32]
    baselines: dict[str, OccupancyForecast] = field(default_factory=dict)
