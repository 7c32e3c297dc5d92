"""Waymo v2 parquet components read into (and written from) the same :class:`WaymoFrame` objects.

:func:`read_frames_v2` reads the components ``lidar``, ``lidar_calibration``, ``lidar_pose``,
``vehicle_pose``, ``lidar_box`` (and ``stats`` where present) of one segment, laid out as
``ROOT/<component>/<segment>.parquet`` with the official column names; :func:`write_frames_v2`
writes that layout from v1 frames. ``pyarrow`` is imported only when they run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.io import atomic_write_bytes
from perception.data.waymo import protos as wpb
from perception.data.waymo.frame import WaymoFrame, _decode_points, _Labels, _lidar_ids, _returns
from perception.data.waymo.range_image import (
    _NO_EXTRINSIC,
    LIDAR_NAMES,
    LidarCalibration,
    _decode_image,
    _transform,
)
from perception.data.waymo.records import WaymoFormatError

__all__ = ["V2_COMPONENTS", "list_segments_v2", "read_frames_v2", "write_frames_v2"]

V2_COMPONENTS: tuple[str, ...] = (
    "lidar",
    "lidar_calibration",
    "lidar_pose",
    "vehicle_pose",
    "lidar_box",
    "stats",
)
"""The v2 components read here; each is ``ROOT/<component>/<segment>.parquet``."""

_SEG, _TS, _LASER, _OBJ = (
    "key.segment_context_name",
    "key.frame_timestamp_micros",
    "key.laser_name",
    "key.laser_object_id",
)
_LIDAR = "[LiDARComponent]"
_CALIB = "[LiDARCalibrationComponent]"
_LPOSE = "[LiDARPoseComponent]"
_VPOSE = "[VehiclePoseComponent].world_from_vehicle.transform"
_BOX = "[LiDARBoxComponent]"
_STATS = "[StatsComponent]"


def _v2_path(root: str | os.PathLike, component: str, segment: str) -> Path:
    return Path(root) / component / f"{segment}.parquet"


def list_segments_v2(root: str | os.PathLike) -> list[str]:
    """The segment names that have a ``lidar`` component under ``root``, sorted."""
    return sorted(p.stem for p in (Path(root) / "lidar").glob("*.parquet"))


def _list_rows(table: object, name: str) -> list[NDArray | None]:
    """One NumPy array per row of a list column (None for null rows, or where the column is absent)."""
    if name not in table.column_names:
        return [None] * table.num_rows
    return [
        None if not scalar.is_valid else scalar.values.to_numpy(zero_copy_only=False)
        for scalar in table.column(name)
    ]


def _column(table: object, name: str, default: object = None) -> list:
    if name not in table.column_names:
        return [default] * table.num_rows
    return table.column(name).to_pylist()


def _v2_image(values: NDArray | None, shape: NDArray | None, what: str) -> NDArray[np.float32] | None:
    if values is None:
        return None
    dims = [] if shape is None else [int(d) for d in shape]
    if not dims or math.prod(dims) != values.size:
        raise WaymoFormatError(
            f"{what}: {values.size} values do not fit the shape {dims}; the file is corrupt"
        )
    return np.asarray(values, dtype=np.float32).reshape(dims)


def read_frames_v2(
    root: str | os.PathLike,
    segment: str | None = None,
    lidars: Iterable[int | str] | None = None,
    returns: Iterable[int] = (0, 1),
    *,
    unknown_labels: str = "error",
) -> Iterator[WaymoFrame]:
    """Iterate the frames of one v2 segment, in timestamp order, as :class:`WaymoFrame` objects.

    Reads ``ROOT/{lidar,lidar_calibration,lidar_pose,vehicle_pose,lidar_box}/<segment>.parquet``
    (``lidar_pose``, ``lidar_box`` and ``stats`` may be absent), one frame's range images at a
    time. ``segment`` may be left out where ``ROOT`` holds one segment. The points, labels and
    errors are those of :func:`~perception.data.waymo.frame.read_frames` on the same data.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if segment is None:
        segments = list_segments_v2(root)
        if len(segments) != 1:
            raise ValueError(f"{root}: name a segment; found {len(segments)}: {segments[:5]}")
        segment = segments[0]
    wanted, wanted_returns = _lidar_ids(lidars), _returns(returns)
    lidar_path = _v2_path(root, "lidar", segment)
    for component in ("lidar", "lidar_calibration", "vehicle_pose"):
        if not _v2_path(root, component, segment).is_file():
            raise FileNotFoundError(f"{_v2_path(root, component, segment)}: v2 component missing")

    calib_table = pq.read_table(_v2_path(root, "lidar_calibration", segment))
    calibrations = {}
    for lidar, transform, values, lo, hi in zip(
        _column(calib_table, _LASER),
        _column(calib_table, f"{_CALIB}.extrinsic.transform"),
        _list_rows(calib_table, f"{_CALIB}.beam_inclination.values"),
        _column(calib_table, f"{_CALIB}.beam_inclination.min", 0.0),
        _column(calib_table, f"{_CALIB}.beam_inclination.max", 0.0),
        strict=True,
    ):
        extrinsic = _transform(
            transform or [],
            f"{_v2_path(root, 'lidar_calibration', segment)}: {LIDAR_NAMES.get(lidar)} extrinsic",
        )
        calibrations[int(lidar)] = LidarCalibration(
            name=int(lidar),
            extrinsic=_NO_EXTRINSIC if extrinsic is None else extrinsic,
            beam_inclinations=np.zeros(0) if values is None else np.asarray(values, np.float64),
            inclination_min=float(lo or 0.0),
            inclination_max=float(hi or 0.0),
        )
    vpose_table = pq.read_table(_v2_path(root, "vehicle_pose", segment))
    vehicle_poses = dict(zip(_column(vpose_table, _TS), _column(vpose_table, _VPOSE), strict=True))

    boxes_by_ts: dict[int, list[dict]] = {}
    box_path = _v2_path(root, "lidar_box", segment)
    if box_path.is_file():
        for row in pq.read_table(box_path).to_pylist():
            boxes_by_ts.setdefault(row[_TS], []).append(row)
    stats_by_ts: dict[int, dict] = {}
    stats_path = _v2_path(root, "stats", segment)
    if stats_path.is_file():
        stats_by_ts = {row[_TS]: row for row in pq.read_table(stats_path).to_pylist()}
    pose_path = _v2_path(root, "lidar_pose", segment)

    timestamps = sorted(set(pq.read_table(lidar_path, columns=[_TS]).column(_TS).to_pylist()))
    for timestamp in timestamps:
        frame_id = f"{segment}_{timestamp}"
        where = f"{Path(root)} (v2): frame {frame_id}"
        selector = pc.field(_TS) == timestamp
        table = pq.read_table(lidar_path, filters=selector)
        range_images = {}
        for ret in wanted_returns:
            column = f"{_LIDAR}.range_image_return{ret + 1}"
            for lidar, values, shape in zip(
                _column(table, _LASER),
                _list_rows(table, f"{column}.values"),
                _column(table, f"{column}.shape"),
                strict=True,
            ):
                if lidar not in LIDAR_NAMES:
                    raise WaymoFormatError(f"{where}: range image of an unknown lidar (LaserName {lidar})")
                name = LIDAR_NAMES[lidar]
                image = _v2_image(values, shape, f"{where}: lidar {name} return {ret + 1}")
                if lidar in wanted and image is not None and image.size:
                    range_images[int(lidar), ret] = image
        pose_images = {}
        if pose_path.is_file():
            pose_table = pq.read_table(pose_path, filters=selector)
            for lidar, values, shape in zip(
                _column(pose_table, _LASER),
                _list_rows(pose_table, f"{_LPOSE}.range_image_return1.values"),
                _column(pose_table, f"{_LPOSE}.range_image_return1.shape"),
                strict=True,
            ):
                image = _v2_image(values, shape, f"{where}: lidar {LIDAR_NAMES.get(lidar)} per-pixel pose")
                if image is not None and any(key[0] == lidar for key in range_images):
                    pose_images[int(lidar)] = image
        transform = vehicle_poses.get(timestamp)
        frame_pose = None if transform is None else _transform(transform, f"{where}: vehicle pose")
        points = _decode_points(range_images, pose_images, calibrations, frame_pose, where)

        labels = _Labels()
        for i, row in enumerate(boxes_by_ts.get(timestamp, [])):

            def vec(prefix: str, row: dict = row) -> tuple[float, float, float] | None:
                values = [row.get(f"{_BOX}.{prefix}.{axis}") for axis in "xyz"]
                return None if all(v is None for v in values) else tuple(float(v or 0.0) for v in values)

            center, size, heading = vec("box.center"), vec("box.size"), row.get(f"{_BOX}.box.heading")
            if center is None or size is None or heading is None:
                raise WaymoFormatError(
                    f"{box_path}: frame {frame_id}: lidar box {i} has no centre, size or heading"
                )
            type_ = int(row.get(f"{_BOX}.type") or 0)
            labels.add(
                where,
                i,
                type_=type_,
                raw_type=type_,
                object_id=row.get(_OBJ) or "",
                box=(*center, *size, float(heading)),
                num_points=int(row.get(f"{_BOX}.num_lidar_points_in_box") or 0),
                num_top_points=int(row.get(f"{_BOX}.num_top_lidar_points_in_box") or 0),
                detection=int(row.get(f"{_BOX}.difficulty_level.detection") or 0),
                tracking=int(row.get(f"{_BOX}.difficulty_level.tracking") or 0),
                speed=vec("speed"),
                accel=vec("acceleration"),
                unknown_labels=unknown_labels,
            )
        stats = stats_by_ts.get(timestamp, {})
        yield WaymoFrame(
            frame_id=frame_id,
            points=points,
            pose=frame_pose,
            timestamp_micros=int(timestamp),
            context_name=segment,
            laser_calibrations=dict(calibrations),
            time_of_day=stats.get(f"{_STATS}.time_of_day") or "",
            location=stats.get(f"{_STATS}.location") or "",
            weather=stats.get(f"{_STATS}.weather") or "",
            **labels.fields(where),
        )


def _list_array(arrays: Sequence[NDArray | None], value_type: object) -> object:
    """A pyarrow list array from per-row NumPy arrays (None → null)."""
    import pyarrow as pa

    lengths = [0 if a is None else len(a) for a in arrays]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    present = [np.asarray(a) for a in arrays if a is not None]
    values = np.concatenate(present) if present else np.zeros(0)
    mask = pa.array([a is None for a in arrays], pa.bool_())
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(values, value_type),
        mask=mask if any(a is None for a in arrays) else None,
    )


def _fixed_list(rows: Sequence[Sequence[float] | None], value_type: object, size: int) -> object:
    import pyarrow as pa

    return pa.array([None if r is None else list(r) for r in rows], pa.list_(value_type, size))


def _write_table(path: Path, columns: dict[str, object], fsync: bool) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes(), fsync=fsync)


def write_frames_v2(
    root: str | os.PathLike, frames: Iterable[bytes | object], fsync: bool = True
) -> list[Path]:
    """Write v1 ``Frame`` protos (serialized or parsed) as v2 parquet components under ``root``.

    One file per component and segment (``ROOT/<component>/<segment>.parquet``, atomically) with
    the official column names and arrow types, for :data:`V2_COMPONENTS`. The calibration is
    taken from each segment's first frame. Meant for tests and small conversions: each segment is
    held in memory.
    """
    import pyarrow as pa

    segments: dict[str, list] = {}
    for frame in frames:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            frame = wpb.Frame.FromString(bytes(frame))
        segments.setdefault(frame.context.name, []).append(frame)
    written = []
    for segment, protos in segments.items():
        lidar: dict[str, list] = {k: [] for k in ("ts", "laser", "v1", "s1", "v2", "s2")}
        lpose: dict[str, list] = {k: [] for k in ("ts", "laser", "v", "s")}
        boxes: list[dict] = []
        for frame in protos:
            ts = int(frame.timestamp_micros)
            for laser in frame.lasers:
                images = []
                for ri in (laser.ri_return1, laser.ri_return2):
                    raw = ri.range_image_compressed
                    images.append(_decode_image(raw, f"{segment} {ts} {laser.name}") if raw else None)
                lidar["ts"].append(ts)
                lidar["laser"].append(int(laser.name))
                for k, image in zip(("1", "2"), images, strict=True):
                    lidar["v" + k].append(None if image is None else image.ravel())
                    lidar["s" + k].append(None if image is None else list(image.shape))
                if laser.ri_return1.range_image_pose_compressed:
                    pose = _decode_image(laser.ri_return1.range_image_pose_compressed, f"{segment} {ts} pose")
                    lpose["ts"].append(ts)
                    lpose["laser"].append(int(laser.name))
                    lpose["v"].append(pose.ravel())
                    lpose["s"].append(list(pose.shape))
            for label in frame.laser_labels:
                b, m = label.box, label.metadata
                has_m = label.HasField("metadata")
                boxes.append(
                    {
                        _TS: ts,
                        _OBJ: label.id,
                        f"{_BOX}.box.center.x": b.center_x,
                        f"{_BOX}.box.center.y": b.center_y,
                        f"{_BOX}.box.center.z": b.center_z,
                        f"{_BOX}.box.size.x": b.length,
                        f"{_BOX}.box.size.y": b.width,
                        f"{_BOX}.box.size.z": b.height,
                        f"{_BOX}.box.heading": b.heading,
                        f"{_BOX}.type": int(label.type),
                        f"{_BOX}.num_lidar_points_in_box": int(label.num_lidar_points_in_box),
                        f"{_BOX}.num_top_lidar_points_in_box": int(label.num_top_lidar_points_in_box),
                        f"{_BOX}.speed.x": m.speed_x if has_m else None,
                        f"{_BOX}.speed.y": m.speed_y if has_m else None,
                        f"{_BOX}.speed.z": m.speed_z if has_m else None,
                        f"{_BOX}.acceleration.x": m.accel_x if has_m else None,
                        f"{_BOX}.acceleration.y": m.accel_y if has_m else None,
                        f"{_BOX}.acceleration.z": m.accel_z if has_m else None,
                        f"{_BOX}.difficulty_level.detection": int(label.detection_difficulty_level),
                        f"{_BOX}.difficulty_level.tracking": int(label.tracking_difficulty_level),
                    }
                )
        n = len(lidar["ts"])
        shape_type = pa.list_(pa.int32(), 3)
        tables = {
            "lidar": {
                _SEG: pa.array([segment] * n, pa.string()),
                _TS: pa.array(lidar["ts"], pa.int64()),
                _LASER: pa.array(lidar["laser"], pa.int8()),
                f"{_LIDAR}.range_image_return1.values": _list_array(lidar["v1"], pa.float32()),
                f"{_LIDAR}.range_image_return1.shape": _fixed_list(lidar["s1"], pa.int32(), 3),
                f"{_LIDAR}.range_image_return2.values": _list_array(lidar["v2"], pa.float32()),
                f"{_LIDAR}.range_image_return2.shape": _fixed_list(lidar["s2"], pa.int32(), 3),
            },
            "lidar_pose": {
                _SEG: pa.array([segment] * len(lpose["ts"]), pa.string()),
                _TS: pa.array(lpose["ts"], pa.int64()),
                _LASER: pa.array(lpose["laser"], pa.int8()),
                f"{_LPOSE}.range_image_return1.values": _list_array(lpose["v"], pa.float32()),
                f"{_LPOSE}.range_image_return1.shape": pa.array(lpose["s"], shape_type),
            },
            "vehicle_pose": {
                _SEG: pa.array([segment] * len(protos), pa.string()),
                _TS: pa.array([int(f.timestamp_micros) for f in protos], pa.int64()),
                _VPOSE: _fixed_list([list(f.pose.transform) or None for f in protos], pa.float64(), 16),
            },
            "stats": {
                _SEG: pa.array([segment] * len(protos), pa.string()),
                _TS: pa.array([int(f.timestamp_micros) for f in protos], pa.int64()),
                f"{_STATS}.time_of_day": pa.array([f.context.stats.time_of_day for f in protos], pa.string()),
                f"{_STATS}.location": pa.array([f.context.stats.location for f in protos], pa.string()),
                f"{_STATS}.weather": pa.array([f.context.stats.weather for f in protos], pa.string()),
            },
        }
        calibs = list(protos[0].context.laser_calibrations)
        tables["lidar_calibration"] = {
            _SEG: pa.array([segment] * len(calibs), pa.string()),
            _LASER: pa.array([int(c.name) for c in calibs], pa.int8()),
            f"{_CALIB}.extrinsic.transform": _fixed_list(
                [list(c.extrinsic.transform) or None for c in calibs], pa.float64(), 16
            ),
            f"{_CALIB}.beam_inclination.min": pa.array(
                [c.beam_inclination_min for c in calibs], pa.float64()
            ),
            f"{_CALIB}.beam_inclination.max": pa.array(
                [c.beam_inclination_max for c in calibs], pa.float64()
            ),
            f"{_CALIB}.beam_inclination.values": _list_array(
                [
                    np.asarray(c.beam_inclinations, np.float64) if len(c.beam_inclinations) else None
                    for c in calibs
                ],
                pa.float64(),
            ),
        }
        box_types = {
            _TS: pa.int64(),
            _OBJ: pa.string(),
            f"{_BOX}.type": pa.int8(),
            f"{_BOX}.num_lidar_points_in_box": pa.int64(),
            f"{_BOX}.num_top_lidar_points_in_box": pa.int64(),
            f"{_BOX}.difficulty_level.detection": pa.int8(),
            f"{_BOX}.difficulty_level.tracking": pa.int8(),
        }
        box_columns = [_TS, _OBJ] + [
            f"{_BOX}.{name}"
            for name in (
                "box.center.x",
                "box.center.y",
                "box.center.z",
                "box.size.x",
                "box.size.y",
                "box.size.z",
                "box.heading",
                "type",
                "num_lidar_points_in_box",
                "num_top_lidar_points_in_box",
                "speed.x",
                "speed.y",
                "speed.z",
                "acceleration.x",
                "acceleration.y",
                "acceleration.z",
                "difficulty_level.detection",
                "difficulty_level.tracking",
            )
        ]
        tables["lidar_box"] = {_SEG: pa.array([segment] * len(boxes), pa.string())} | {
            name: pa.array([b[name] for b in boxes], box_types.get(name, pa.float64()))
            for name in box_columns
        }
        for component, columns in tables.items():
            written.append(_write_table(_v2_path(root, component, segment), columns, fsync))
    return written
