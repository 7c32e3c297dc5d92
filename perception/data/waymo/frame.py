"""Waymo v1 ``Frame`` protos decoded into :class:`WaymoFrame`: points from every lidar, and the labels.

``WaymoFrame.points`` is ``(N, 8)`` float32 with the columns :data:`POINT_COLUMNS`:
``x, y, z`` (metres, vehicle frame; the geometry is :mod:`perception.data.waymo.range_image`'s),
``intensity``, ``elongation`` (as stored), ``nlz`` (the no-label-zone channel as stored: -1 outside
every zone, 1 inside, in the released data), ``return`` (0 first, 1 second) and ``lidar`` (LaserName
1 TOP, 2 FRONT, 3 SIDE_LEFT, 4 SIDE_RIGHT, 5 REAR). Points are ordered by lidar, then return, then
pixel (row-major).

**Labels.** ``boxes`` ``(M, 7)`` ``[x, y, z, l, w, h, yaw]`` from ``laser_labels`` (box centre,
``length, width, height``, heading wrapped to [-π, π)). ``difficulty`` is the detection difficulty
the official metrics use (``compute_detection_metrics_main.cc``): the label's
``detection_difficulty_level`` where set, else LEVEL_2 (2) for ≤ 5 lidar points and LEVEL_1 (1)
above. Boxes with no lidar points are kept, with ``no_lidar_points`` True: the official metrics
drop such ground truths. A label of an unknown type (not VEHICLE, PEDESTRIAN, SIGN, CYCLIST,
including TYPE_UNKNOWN and values outside the enum) raises :class:`WaymoFormatError`, or with
``unknown_labels="skip"`` is dropped and counted in a logged warning.

**Errors.** Every malformed input raises :class:`WaymoFormatError` naming the file, the record,
the frame and, for sensor data, the lidar: a range image without its lidar's calibration, an
explicit inclination list whose length is not the image height, a corrupt zlib stream or matrix,
a per-pixel pose without a frame pose. Nothing is repaired silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from perception.data.waymo import protos as wpb
from perception.data.waymo.range_image import (
    LIDAR_IDS,
    LIDAR_NAMES,
    LidarCalibration,
    _decode_image,
    _transform,
    range_image_to_points,
)
from perception.data.waymo.records import WaymoFormatError, read_records
from perception.geometry.boxes import wrap_angle
from perception.structures import Frame

__all__ = [
    "LEVEL_2_MAX_POINTS",
    "POINT_COLUMNS",
    "WAYMO_CLASSES",
    "WaymoFrame",
    "decode_frame",
    "read_frames",
]

log = logging.getLogger(__name__)

WAYMO_CLASSES: dict[int, str] = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
"""Label.Type enum values → the class names frames carry in ``names``."""

POINT_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "elongation", "nlz", "return", "lidar")
"""The columns of ``WaymoFrame.points``."""

LEVEL_2_MAX_POINTS = 5
"""A label without a set difficulty is LEVEL_2 with at most this many lidar points (official rule)."""


@dataclass(kw_only=True)
class WaymoFrame(Frame):
    """A Waymo frame: :class:`Frame` plus the dataset's per-object and per-segment fields.

    ``frame_id`` is ``f"{context_name}_{timestamp_micros}"``; ``points`` is (N, 8) float32 with
    the columns :data:`POINT_COLUMNS`; ``names`` the class names of :data:`WAYMO_CLASSES`;
    ``difficulty`` (M,) int32 1 (LEVEL_1) or 2 (LEVEL_2) as the official metrics decide it;
    ``pose`` (4, 4) vehicle → world.

    Attributes:
        context_name: the segment's name.
        types: (M,) int32 Label.Type values (1 VEHICLE, 2 PEDESTRIAN, 3 SIGN, 4 CYCLIST).
        ids: (M,) str object ids, unique within a segment.
        num_lidar_points: (M,) int32 lidar points in each box (all lidars); num_top_lidar_points:
            (M,) int32 those of TOP.
        no_lidar_points: (M,) bool, True where a box has no lidar points (the official metrics
            drop these ground truths).
        tracking_difficulty: (M,) int32 the label's tracking difficulty as stored (0 unset).
        speed, accel: (M, 3) float32 object velocity (m/s) and acceleration (m/s²) in the vehicle
            frame, NaN where the label has no metadata.
        laser_calibrations: LaserName value → :class:`LidarCalibration`, for every lidar of the
            context.
        time_of_day, location, weather: the context's stats ("" where absent).
    """

    context_name: str
    types: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    ids: NDArray[np.str_] = field(default_factory=lambda: np.zeros((0,), dtype="<U1"))
    num_lidar_points: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    num_top_lidar_points: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    no_lidar_points: NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0,), bool))
    tracking_difficulty: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    speed: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    accel: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    laser_calibrations: dict[int, LidarCalibration] = field(default_factory=dict)
    time_of_day: str = ""
    location: str = ""
    weather: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        m = len(self.boxes)
        for name in (
            "types",
            "ids",
            "num_lidar_points",
            "num_top_lidar_points",
            "no_lidar_points",
            "tracking_difficulty",
            "speed",
            "accel",
        ):
            if len(getattr(self, name)) != m:
                raise ValueError(
                    f"frame {self.frame_id}: {name} has {len(getattr(self, name))} rows, boxes {m}"
                )


def _lidar_ids(lidars: Iterable[int | str] | None) -> tuple[int, ...]:
    if lidars is None:
        return tuple(LIDAR_NAMES)
    out = []
    for lidar in lidars:
        value = LIDAR_IDS.get(lidar.upper()) if isinstance(lidar, str) else int(lidar)
        if value not in LIDAR_NAMES:
            raise ValueError(f"unknown lidar {lidar!r}; expected one of {LIDAR_NAMES}")
        out.append(value)
    return tuple(sorted(set(out)))


def _returns(returns: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(r) for r in returns}))
    if not set(out) <= {0, 1}:
        raise ValueError(f"returns must be a subset of (0, 1), got {returns!r}")
    return out


def _decode_points(
    range_images: Mapping[tuple[int, int], NDArray[np.float32]],
    pose_images: Mapping[int, NDArray[np.float32]],
    calibrations: Mapping[int, LidarCalibration],
    frame_pose: NDArray[np.float64] | None,
    where: str,
) -> NDArray[np.float32]:
    """(N, 8) points of the given range images, keyed (lidar, return), in (lidar, return) order."""
    parts = []
    for lidar, ret in sorted(range_images):
        image = range_images[lidar, ret]
        name = LIDAR_NAMES.get(lidar, f"lidar {lidar}")
        what = f"{where}: lidar {name} return {ret + 1}"
        calibration = calibrations.get(lidar)
        if calibration is None:
            raise WaymoFormatError(
                f"{what}: the frame has a range image for lidar {name} but no calibration for it "
                f"(calibrated lidars: {sorted(LIDAR_NAMES.get(k, k) for k in calibrations)})"
            )
        if not np.isfinite(calibration.extrinsic).all():
            raise WaymoFormatError(
                f"{what}: the calibration of lidar {name} has no (or a non-finite) extrinsic"
            )
        if image.ndim != 3 or image.shape[2] < 4:
            raise WaymoFormatError(f"{what}: range image must be [H, W, 4], got {list(image.shape)}")
        pose = pose_images.get(lidar)
        if pose is not None and pose.shape != (*image.shape[:2], 6):
            raise WaymoFormatError(
                f"{what}: per-pixel pose shape {list(pose.shape)} does not match the range image "
                f"{list(image.shape)}"
            )
        if pose is not None and frame_pose is None:
            raise WaymoFormatError(f"{what}: a per-pixel pose needs the frame pose, which is missing")
        try:
            xyz, channels, _ = range_image_to_points(image, calibration, pose, frame_pose)
        except ValueError as e:
            raise WaymoFormatError(f"{what}: {e}") from e
        out = np.empty((len(xyz), len(POINT_COLUMNS)), np.float32)
        out[:, :3] = xyz
        out[:, 3:6] = channels[:, :3]
        out[:, 6] = ret
        out[:, 7] = lidar
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros((0, len(POINT_COLUMNS)), np.float32)


def _raw_enum(message: object, number: int) -> int | None:
    """A closed enum field's out-of-range value, which proto2 parsing keeps as an unknown field."""
    try:
        from google.protobuf import unknown_fields

        for item in unknown_fields.UnknownFieldSet(message):
            if item.field_number == number:
                return int(item.data)
    except Exception:  # pragma: no cover - API differences between protobuf versions
        return None
    return None


@dataclass
class _Labels:
    boxes: list[list[float]] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    num_points: list[int] = field(default_factory=list)
    num_top_points: list[int] = field(default_factory=list)
    detection: list[int] = field(default_factory=list)
    tracking: list[int] = field(default_factory=list)
    speed: list[list[float]] = field(default_factory=list)
    accel: list[list[float]] = field(default_factory=list)
    skipped: int = 0

    def add(
        self,
        where: str,
        index: int,
        *,
        type_: int,
        raw_type: int | None,
        object_id: str,
        box: Sequence[float],
        num_points: int,
        num_top_points: int,
        detection: int,
        tracking: int,
        speed: Sequence[float] | None,
        accel: Sequence[float] | None,
        unknown_labels: str,
    ) -> None:
        if type_ not in WAYMO_CLASSES:
            if unknown_labels == "skip":
                self.skipped += 1
                return
            shown = raw_type if raw_type is not None else type_
            raise WaymoFormatError(
                f"{where}: laser label {index} (id {object_id!r}) has unknown type {shown}; expected one of "
                f"{WAYMO_CLASSES} (pass unknown_labels='skip' to drop such labels)"
            )
        self.boxes.append(list(box))
        self.types.append(type_)
        self.ids.append(object_id)
        self.num_points.append(num_points)
        self.num_top_points.append(num_top_points)
        if detection not in (1, 2):  # unset / UNKNOWN: the official rule
            detection = 2 if num_points <= LEVEL_2_MAX_POINTS else 1
        self.detection.append(detection)
        self.tracking.append(tracking)
        self.speed.append(list(speed) if speed is not None else [np.nan] * 3)
        self.accel.append(list(accel) if accel is not None else [np.nan] * 3)

    def fields(self, where: str) -> dict[str, object]:
        if self.skipped:
            log.warning("%s: skipped %d laser labels of unknown type", where, self.skipped)
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7)
        boxes[:, 6] = wrap_angle(boxes[:, 6])
        num_points = np.asarray(self.num_points, dtype=np.int32)
        return dict(
            boxes=boxes.astype(np.float32),
            names=np.asarray([WAYMO_CLASSES[t] for t in self.types], dtype="<U16"),
            difficulty=np.asarray(self.detection, dtype=np.int32),
            types=np.asarray(self.types, dtype=np.int32),
            ids=np.asarray(self.ids, dtype=np.str_) if self.ids else np.zeros((0,), "<U1"),
            num_lidar_points=num_points,
            num_top_lidar_points=np.asarray(self.num_top_points, dtype=np.int32),
            no_lidar_points=num_points <= 0,
            tracking_difficulty=np.asarray(self.tracking, dtype=np.int32),
            speed=np.asarray(self.speed, dtype=np.float32).reshape(-1, 3),
            accel=np.asarray(self.accel, dtype=np.float32).reshape(-1, 3),
        )


def decode_frame(
    frame: bytes | object,
    *,
    lidars: Iterable[int | str] | None = None,
    returns: Iterable[int] = (0, 1),
    unknown_labels: str = "error",
    source: str = "<memory>",
) -> WaymoFrame:
    """A :class:`WaymoFrame` from one serialized (or parsed) ``Frame`` proto.

    Args:
        lidars: LaserName values or names to take points from (default all five).
        returns: which returns to take, 0 (first) and/or 1 (second).
        unknown_labels: ``"error"`` (default) or ``"skip"`` (drop and count in a logged warning).
        source: where the frame comes from, for error messages (file and record).
    """
    if unknown_labels not in ("error", "skip"):
        raise ValueError(f"unknown_labels must be 'error' or 'skip', got {unknown_labels!r}")
    wanted, wanted_returns = _lidar_ids(lidars), _returns(returns)
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            frame = wpb.Frame.FromString(bytes(frame))
        except DecodeError as e:
            raise WaymoFormatError(f"{source}: corrupt Frame proto ({e})") from e
    context_name = frame.context.name
    timestamp = int(frame.timestamp_micros)
    frame_id = f"{context_name}_{timestamp}"
    where = f"{source}: frame {frame_id}"
    calibrations = {
        int(c.name): LidarCalibration.from_proto(c, where) for c in frame.context.laser_calibrations
    }
    frame_pose = _transform(frame.pose.transform, f"{where}: frame pose")

    range_images: dict[tuple[int, int], NDArray[np.float32]] = {}
    pose_images: dict[int, NDArray[np.float32]] = {}
    for laser in frame.lasers:
        lidar = int(laser.name)
        returns_present = [
            (ret, ri)
            for ret, ri in ((0, laser.ri_return1), (1, laser.ri_return2))
            if ret in wanted_returns and ri.range_image_compressed
        ]
        if not returns_present:
            continue
        name = LIDAR_NAMES.get(lidar, f"unknown lidar {lidar}")
        if lidar not in LIDAR_NAMES:
            raise WaymoFormatError(f"{where}: range image of an unknown lidar (LaserName {lidar})")
        if lidar not in wanted:
            continue
        for ret, ri in returns_present:
            range_images[lidar, ret] = _decode_image(
                ri.range_image_compressed, f"{where}: lidar {name} return {ret + 1} range image"
            )
        if laser.ri_return1.range_image_pose_compressed:
            pose_images[lidar] = _decode_image(
                laser.ri_return1.range_image_pose_compressed, f"{where}: lidar {name} per-pixel pose"
            )
    points = _decode_points(range_images, pose_images, calibrations, frame_pose, where)

    labels = _Labels()
    for i, label in enumerate(frame.laser_labels):
        box = label.box
        metadata = label.metadata if label.HasField("metadata") else None
        labels.add(
            where,
            i,
            type_=int(label.type),
            raw_type=_raw_enum(label, 3) if label.type not in WAYMO_CLASSES else None,
            object_id=label.id,
            box=(box.center_x, box.center_y, box.center_z, box.length, box.width, box.height, box.heading),
            num_points=int(label.num_lidar_points_in_box),
            num_top_points=int(label.num_top_lidar_points_in_box),
            detection=int(label.detection_difficulty_level),
            tracking=int(label.tracking_difficulty_level),
            speed=None if metadata is None else (metadata.speed_x, metadata.speed_y, metadata.speed_z),
            accel=None if metadata is None else (metadata.accel_x, metadata.accel_y, metadata.accel_z),
            unknown_labels=unknown_labels,
        )
    stats = frame.context.stats
    return WaymoFrame(
        frame_id=frame_id,
        points=points,
        pose=frame_pose,
        timestamp_micros=timestamp,
        context_name=context_name,
        laser_calibrations=calibrations,
        time_of_day=stats.time_of_day,
        location=stats.location,
        weather=stats.weather,
        **labels.fields(where),
    )


def read_frames(
    path: str | os.PathLike,
    lidars: Iterable[int | str] | None = None,
    returns: Iterable[int] = (0, 1),
    *,
    unknown_labels: str = "error",
    check_crc: bool = True,
) -> Iterator[WaymoFrame]:
    """Iterate the frames of a v1 ``.tfrecord`` file as :class:`WaymoFrame` objects.

    See :func:`decode_frame` for the arguments and the module docstring for the point columns,
    the geometry and the label rules.
    """
    path = Path(path)
    for index, payload in enumerate(read_records(path, check_crc=check_crc)):
        yield decode_frame(
            payload,
            lidars=lidars,
            returns=returns,
            unknown_labels=unknown_labels,
            source=f"{path}: record {index}",
        )
