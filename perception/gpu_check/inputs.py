"""Seeded inputs for the GPU check, made on the CPU: LiDAR-like frames in the Waymo range, boxes.

Points are in the vehicle frame (x forward, y left, z up, metres); boxes ``[x, y, z, l, w, h, yaw]``
with the centre in the middle of the box. The frames come from the invariance certificate's scene
generator (:func:`perception.invariance.scene`: box-shaped objects sampled on their surfaces over a
ground plane) plus a ground ring whose density falls with range as a spinning LiDAR's does, so that
near voxels hold many points and far ones few.
"""

from __future__ import annotations

import functools

import numpy as np

from perception.cli import CONFIG_DIR
from perception.inference import read_config
from perception.invariance import scene

__all__ = ["WAYMO_CONFIG", "WAYMO_POINTS", "config_range", "random_boxes", "waymo_range", "waymo_sized_frame"]

WAYMO_CONFIG = "pvt_waymo.yaml"
"""The config whose detector and range the Waymo-sized timings use."""

WAYMO_POINTS = 170_000
"""Points in a Waymo frame (all five lidars, both returns: ~150–200 k; docs/REFERENCES.md)."""


@functools.cache
def config_range(config: str) -> tuple[float, float, float, float, float, float]:
    """``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres of a detection config's data section."""
    values = read_config(CONFIG_DIR / config)["data"]["point_cloud_range"]
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def waymo_range() -> tuple[float, float, float, float, float, float]:
    """The point cloud range of :data:`WAYMO_CONFIG` (±75.2 m, z from -2 to 4 m)."""
    return config_range(WAYMO_CONFIG)


def waymo_sized_frame(
    rng: np.random.Generator,
    points: int = WAYMO_POINTS,
    objects: int = 40,
    point_cloud_range: tuple[float, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One LiDAR-like frame inside ``point_cloud_range`` (default :func:`waymo_range`).

    Half the points lie on a ground ring around the range's centre (the sensor; ±75.2 m: the
    origin), from 2 m to the nearest edge, denser near the sensor (the range is the edge times the
    square of a uniform draw); half come from :func:`~perception.invariance.scene`: ``objects`` cars,
    pedestrians and cyclists within 50 m holding 60 % of them, and ground spread over the range.

    Returns:
        points (N, 5) float32 ``[x, y, z, intensity, elongation]`` (attributes uniform in [0, 1));
        boxes (M, 7) float32 the objects' boxes; labels (M,) int64 0 car, 1 pedestrian, 2 cyclist.
    """
    x0, y0, z0, x1, y1, z1 = point_cloud_range if point_cloud_range is not None else waymo_range()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ground_z = z0 + 0.05 * (z1 - z0)
    reach = min(x1 - x0, y1 - y0) / 2 - 0.5
    ring = points // 2
    radius = 2.0 + (reach - 2.0) * rng.uniform(0.0, 1.0, ring) ** 2
    angle = rng.uniform(-np.pi, np.pi, ring)
    ground = np.column_stack(
        [cx + radius * np.cos(angle), cy + radius * np.sin(angle), ground_z + rng.normal(0.0, 0.03, ring)]
    )
    near = min(50.0, reach)
    objects_scene = scene(
        rng,
        points - ring,
        (cx - near, cx + near, cy - near, cy + near),
        ground_z,
        objects=objects,
        ground_window=(x0 + 0.5, x1 - 0.5, y0 + 0.5, y1 - 0.5),
        repeats=0.0,
    )
    xyz = np.concatenate([ground, objects_scene.points[:, :3]])
    attributes = rng.uniform(0.0, 1.0, (len(xyz), 2))
    frame = np.column_stack([xyz, attributes]).astype(np.float32)
    return frame, objects_scene.boxes.astype(np.float32), objects_scene.labels.astype(np.int64)


def random_boxes(rng: np.random.Generator, n: int, extent: float = 40.0) -> np.ndarray:
    """(n, 7) float32 boxes in a square of side ``extent`` metres around the origin: car-, cyclist- and
    pedestrian-like sizes (±20 %), any yaw, z near the ground; dense enough that many pairs overlap."""
    base = np.array([[4.0, 1.8, 1.6], [1.8, 0.6, 1.7], [0.8, 0.7, 1.8]])[rng.integers(0, 3, n)]
    size = base * rng.uniform(0.8, 1.2, (n, 3))
    centre = np.column_stack([rng.uniform(-extent / 2, extent / 2, (n, 2)), rng.uniform(-1.0, 0.0, n)])
    yaw = rng.uniform(-np.pi, np.pi, n)
    return np.column_stack([centre, size, yaw]).astype(np.float32)
