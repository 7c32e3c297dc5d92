"""Synthetic Waymo v1 ``Frame`` protos built from known points, for tests (and benchmarks).

:func:`make_synthetic_frame` builds a complete ``Frame`` proto (five lidars, TOP 64 × 2650 with
explicit inclinations and a per-pixel pose, four 200 × 600 with uniform inclinations, labels) from
known points by the inverse geometry
(:func:`~perception.data.waymo.range_image.points_to_range_image_pixels`), or from a random scene;
:class:`SyntheticFrame` holds it with the points a reader must recover. Only tests and
benchmarks need it, so it is not part of the library.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.data.waymo import protos as wpb
from perception.data.waymo.frame import WAYMO_CLASSES, decode_frame
from perception.data.waymo.range_image import (
    SHORT_RANGE_SHAPE,
    TOP_SHAPE,
    LidarCalibration,
    encode_matrix_float,
    euler_from_rotation,
    points_to_range_image_pixels,
    rotation_from_euler,
)

__all__ = ["SyntheticFrame", "default_lidar_calibrations", "make_synthetic_frame", "synthetic_top_pose"]


def _rigid(roll: float, pitch: float, yaw: float, translation: Sequence[float]) -> NDArray[np.float64]:
    out = np.eye(4)
    out[:3, :3] = rotation_from_euler(roll, pitch, yaw)
    out[:3, 3] = translation
    return out


def default_lidar_calibrations() -> dict[int, LidarCalibration]:
    """A plausible five-lidar rig: TOP with 64 explicit, non-uniform inclinations (-17.6° to +2.4°),
    four short-range lidars (front, sides, rear) with uniform inclinations from -83° to +29°; the
    extrinsics carry small roll and pitch, and yaws of about 0, 0, 90°, -90° and 180°."""
    u = np.linspace(0.0, 1.0, TOP_SHAPE[0])
    top = np.radians(-17.6 + 20.0 * u**1.4)
    short = dict(beam_inclinations=np.zeros(0), inclination_min=-1.45, inclination_max=0.5)
    return {
        1: LidarCalibration(
            name=1,
            extrinsic=_rigid(0.004, -0.003, 0.0125, (1.43, 0.0, 2.184)),
            beam_inclinations=top,
            inclination_min=float(top[0]),
            inclination_max=float(top[-1]),
        ),
        2: LidarCalibration(name=2, extrinsic=_rigid(0.01, 0.02, 0.0, (4.07, 0.0, 0.69)), **short),
        3: LidarCalibration(name=3, extrinsic=_rigid(-0.01, 0.015, np.pi / 2, (3.25, 1.03, 0.98)), **short),
        4: LidarCalibration(name=4, extrinsic=_rigid(0.012, -0.01, -np.pi / 2, (3.25, -1.03, 0.98)), **short),
        5: LidarCalibration(name=5, extrinsic=_rigid(0.0, 0.01, np.pi, (-1.15, 0.0, 0.47)), **short),
    }


def synthetic_top_pose(
    frame_pose: ArrayLike,
    shape: tuple[int, int] = TOP_SHAPE,
    speed: float = 10.0,
    yaw_rate: float = 0.2,
    sweep_seconds: float = 0.1,
) -> NDArray[np.float32]:
    """(H, W, 6) float32 per-pixel vehicle poses ``[roll, pitch, yaw, x, y, z]`` of a vehicle moving
    at ``speed`` m/s along its +x and turning at ``yaw_rate`` rad/s while the lidar sweeps its
    columns in ``sweep_seconds``, centred on ``frame_pose`` (the middle column's pose)."""
    height, width = shape
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    tau = ((np.arange(width) + 0.5) / width - 0.5) * sweep_seconds
    motion = np.zeros((width, 4, 4))
    motion[:, :3, :3] = rotation_from_euler(np.zeros(width), np.zeros(width), yaw_rate * tau)
    motion[:, 0, 3] = speed * tau
    motion[:, 3, 3] = 1.0
    poses = frame_pose @ motion
    params = np.concatenate([euler_from_rotation(poses[:, :3, :3]), poses[:, :3, 3]], axis=1)
    return np.broadcast_to(params[None].astype(np.float32), (height, width, 6)).copy()


@dataclass
class SyntheticFrame:
    """A synthetic Waymo frame and what a reader must recover from it.

    Attributes:
        proto: the ``Frame`` message (``proto.SerializeToString()`` is a record payload).
        points: (N, 8) float32 the encoded points in :data:`~perception.data.waymo.POINT_COLUMNS`
            and in reader order; from given points, their x, y, z are those points (recovered
            exactly where they lie on pixel rays); for a random scene, the points the official
            geometry decodes.
        calibrations: LaserName → :class:`LidarCalibration` used.
        pose: (4, 4) frame pose; top_pose: (64, 2650, 6) float32 TOP per-pixel poses.
        dropped: points not encoded because a nearer point took their pixel.
    """

    proto: object
    points: NDArray[np.float32]
    calibrations: dict[int, LidarCalibration]
    pose: NDArray[np.float64]
    top_pose: NDArray[np.float32]
    dropped: int = 0

    def payload(self) -> bytes:
        return self.proto.SerializeToString()


def _scene_points(
    rng: np.random.Generator,
    calibrations: Mapping[int, LidarCalibration],
    shapes: Mapping[int, tuple[int, int]],
    fill: float,
) -> dict[tuple[int, int], NDArray[np.float64]]:
    """A simple scene as range-image pixels: ground at z = 0 seen by downward beams within range,
    random obstacles elsewhere; the second return on a few pixels, a little farther."""
    out = {}
    for lidar, calibration in calibrations.items():
        height, width = shapes[lidar]
        max_range = 75.0 if lidar == 1 else 20.0
        inclination = calibration.row_inclinations(height)[:, None]
        sensor_height = calibration.extrinsic[2, 3]
        with np.errstate(divide="ignore"):
            ground = np.where(
                inclination < -0.01, sensor_height / np.maximum(-np.sin(inclination), 1e-9), np.inf
            )
        ranges = np.broadcast_to(ground, (height, width)).copy()
        obstacle = rng.uniform(2.0, max_range, (height, width))
        hit = rng.random((height, width)) < 0.3
        ranges = np.where(hit, np.minimum(ranges, obstacle), ranges)
        valid = (ranges < max_range) & (rng.random((height, width)) < fill)
        for ret in (0, 1):
            mask = valid if ret == 0 else valid & (rng.random((height, width)) < 0.05)
            rows, cols = np.nonzero(mask)
            r = ranges[rows, cols] + (0.0 if ret == 0 else rng.uniform(0.5, 3.0, len(rows)))
            out[lidar, ret] = np.column_stack(
                [
                    rows,
                    cols,
                    r,
                    rng.uniform(0, 1, len(rows)),
                    rng.uniform(0, 0.5, len(rows)),
                    -np.ones(len(rows)),
                ]
            )
    return out


def make_synthetic_frame(
    points: Mapping[tuple[int, int], ArrayLike] | None = None,
    *,
    seed: int = 0,
    fill: float = 0.35,
    context_name: str = "synthetic_0000000000000000000_000_000_000_000",
    timestamp_micros: int = 1_550_000_000_000_000,
    pose: ArrayLike | None = None,
    calibrations: Mapping[int, LidarCalibration] | None = None,
    top_pose: ArrayLike | None = None,
    ego_speed: float = 10.0,
    ego_yaw_rate: float = 0.2,
    boxes: ArrayLike | None = None,
    types: Sequence[int | str] | None = None,
    num_lidar_points: Sequence[int] | None = None,
    difficulty: Sequence[int] | None = None,
    time_of_day: str = "Day",
    location: str = "location_sf",
    weather: str = "sunny",
) -> SyntheticFrame:
    """Build a complete synthetic ``Frame`` proto from known points (or a random scene).

    Range images are TOP 64 × 2650 (explicit inclinations, a per-pixel pose on the first return)
    and 200 × 600 for the four short-range lidars (uniform inclinations), zlib-compressed
    ``MatrixFloat`` as in the released data; every lidar gets both returns (empty where no point).

    Args:
        points: ``(lidar, return) → (N, 3..6)`` ``x, y, z[, intensity, elongation, nlz]`` in the
            frame's vehicle frame (defaults 1.0, 0.0, -1.0). Each point takes the pixel whose ray
            is nearest (:func:`~perception.data.waymo.range_image.points_to_range_image_pixels`);
            two points on a pixel keep the nearer. Where None, a random scene from ``seed`` with
            about ``fill`` of the pixels (ground and obstacles; about 190 k first-return and 10 k
            second-return points at the default, the size of a real frame).
        pose: (4, 4) frame pose (default a yawed pose far from the world origin).
        calibrations: by default :func:`default_lidar_calibrations`.
        top_pose: (64, 2650, 6) TOP per-pixel poses; by default :func:`synthetic_top_pose` with
            ``ego_speed`` and ``ego_yaw_rate`` (0 and 0 give every pixel the frame pose).
        boxes, types, num_lidar_points, difficulty: the laser labels (``(M, 7)`` boxes, Label.Type
            values or class names, points per box, detection difficulty 0 unset / 1 / 2); by
            default four objects, one of each class (a pedestrian with 3 points, a sign with none).
    """
    rng = np.random.default_rng(seed)
    calibrations = dict(default_lidar_calibrations() if calibrations is None else calibrations)
    shapes = {lidar: TOP_SHAPE if lidar == 1 else SHORT_RANGE_SHAPE for lidar in calibrations}
    frame_pose = (
        _rigid(0.01, -0.02, 0.7, (1234.5, -876.25, 31.0)) if pose is None else np.asarray(pose, np.float64)
    )
    if top_pose is None:
        top_pose = synthetic_top_pose(frame_pose, TOP_SHAPE, ego_speed, ego_yaw_rate)
    top_pose = np.asarray(top_pose, dtype=np.float32)

    # pixels of every (lidar, return): rows, cols, range, intensity, elongation, nlz, and the points
    images: dict[tuple[int, int], NDArray[np.float32]] = {}
    expected = []
    dropped = 0
    if points is None:
        for (lidar, ret), pix in sorted(_scene_points(rng, calibrations, shapes, fill).items()):
            image = np.zeros(shapes[lidar] + (4,), np.float32)
            rows, cols = pix[:, 0].astype(np.int64), pix[:, 1].astype(np.int64)
            image[rows, cols] = pix[:, 2:6]
            images[lidar, ret] = image
    else:
        for key in sorted(points):
            lidar, ret = int(key[0]), int(key[1])
            if lidar not in calibrations or ret not in (0, 1):
                raise ValueError(
                    f"points key {key}: lidar must be calibrated ({sorted(calibrations)}), return 0 or 1"
                )
            given = np.asarray(points[key], dtype=np.float64)
            given = given.reshape(-1, given.shape[-1] if given.ndim == 2 else 3)
            attrs = np.tile([1.0, 0.0, -1.0], (len(given), 1))
            attrs[:, : min(given.shape[1], 6) - 3] = given[:, 3:6]
            height, width = shapes[lidar]
            pixel_pose = top_pose if lidar == 1 else None
            rows, cols, ranges = points_to_range_image_pixels(
                given[:, :3],
                calibrations[lidar],
                (height, width),
                pixel_pose,
                frame_pose if lidar == 1 else None,
            )
            flat = rows * width + cols
            order = np.lexsort((ranges, flat))  # by pixel, nearest first
            keep = (
                order[np.concatenate([[True], flat[order][1:] != flat[order][:-1]])] if len(order) else order
            )
            dropped += len(given) - len(keep)
            keep = keep[np.argsort(flat[keep], kind="stable")]
            image = images.setdefault((lidar, ret), np.zeros((height, width, 4), np.float32))
            image[rows[keep], cols[keep], 0] = ranges[keep]
            image[rows[keep], cols[keep], 1:] = attrs[keep]
            block = np.empty((len(keep), 8), np.float32)
            block[:, :3] = given[keep, :3]
            block[:, 3:6] = attrs[keep]
            block[:, 6], block[:, 7] = ret, lidar
            expected.append(block)

    frame = wpb.Frame(timestamp_micros=int(timestamp_micros))
    frame.context.name = context_name
    frame.context.stats.time_of_day = time_of_day
    frame.context.stats.location = location
    frame.context.stats.weather = weather
    for lidar in sorted(calibrations):
        frame.context.laser_calibrations.append(calibrations[lidar].to_proto())
    frame.pose.transform.extend(frame_pose.ravel().tolist())
    for lidar in sorted(calibrations):
        laser = frame.lasers.add(name=lidar)
        for ret, ri in ((0, laser.ri_return1), (1, laser.ri_return2)):
            image = images.get((lidar, ret), np.zeros(shapes[lidar] + (4,), np.float32))
            ri.range_image_compressed = zlib.compress(encode_matrix_float(image), 6)
        if lidar == 1:
            laser.ri_return1.range_image_pose_compressed = zlib.compress(encode_matrix_float(top_pose), 6)

    if boxes is None:
        boxes = [
            [12.0, 3.0, 0.9, 4.6, 2.0, 1.7, 0.3],
            [-6.0, -4.0, 0.9, 0.8, 0.7, 1.8, -2.5],
            [8.0, -7.5, 2.5, 0.1, 0.8, 0.8, np.pi - 1e-3],
            [20.0, 10.0, 0.8, 1.8, 0.6, 1.7, 1.2],
        ]
        types = [1, 2, 3, 4] if types is None else types
        num_lidar_points = [250, 3, 0, 40] if num_lidar_points is None else num_lidar_points
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    m = len(boxes)
    class_ids = {name: value for value, name in WAYMO_CLASSES.items()}
    type_ids = [
        class_ids[t] if isinstance(t, str) else int(t) for t in (types if types is not None else [1] * m)
    ]
    num_lidar_points = list(num_lidar_points) if num_lidar_points is not None else [100] * m
    difficulty = list(difficulty) if difficulty is not None else [0] * m
    for i in range(m):
        label = frame.laser_labels.add(type=type_ids[i], id=f"object_{i:03d}")
        x, y, z, length, width, height, heading = boxes[i]
        label.box.center_x, label.box.center_y, label.box.center_z = x, y, z
        label.box.length, label.box.width, label.box.height, label.box.heading = (
            length,
            width,
            height,
            heading,
        )
        label.num_lidar_points_in_box = int(num_lidar_points[i])
        label.num_top_lidar_points_in_box = int(num_lidar_points[i]) // 2
        if difficulty[i]:
            label.detection_difficulty_level = int(difficulty[i])
        if type_ids[i] == 1:
            label.metadata.speed_x, label.metadata.speed_y = 5.0 * math.cos(heading), 5.0 * math.sin(heading)
            label.metadata.accel_x = 0.5

    if points is None:
        decoded = decode_frame(frame, source="synthetic")
        points_out = decoded.points
    else:
        points_out = np.concatenate(expected) if expected else np.zeros((0, 8), np.float32)
    return SyntheticFrame(
        proto=frame,
        points=points_out,
        calibrations=calibrations,
        pose=frame_pose,
        top_pose=top_pose,
        dropped=dropped,
    )
