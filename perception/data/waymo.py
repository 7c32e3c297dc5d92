"""Waymo Open Dataset: v1 TFRecords of ``Frame`` protos and v2 parquet components, without TensorFlow.

Only ``protobuf`` (messages built at run time in :mod:`perception.data.waymo_protos`),
``google-crc32c``, NumPy and, for v2, ``pyarrow`` are needed.

**Records (v1).** A ``.tfrecord`` file is a sequence of records: uint64 length (little-endian),
uint32 masked CRC32C of the 8 length bytes, the payload (one serialized ``Frame``), uint32 masked
CRC32C of the payload; ``mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`` (mod 2³²).
:func:`read_records` checks both CRCs and raises :class:`WaymoFormatError` (a ``ValueError``)
naming the file, the record and its byte offset on a mismatch ("CRC ... corrupt") or a short file
("truncated"); :func:`write_records` writes the same framing atomically.

**Points.** Each lidar return is a range image ``[H, W, 4]`` (range, intensity, elongation,
no-label-zone channel), zlib over a serialized ``MatrixFloat``. The official geometry
(``range_image_utils.compute_range_image_polar`` / ``compute_range_image_cartesian``):

- row inclinations: the calibration's ``beam_inclinations`` where given (TOP), else ``H`` values
  at bin centres ``min + (i + 0.5) (max - min) / H``; both lists ascend, and are reversed so that
  row 0 is the highest beam;
- column azimuth: ``π - (w + 0.5) 2π / W - atan2(E[1, 0], E[0, 0])`` for column ``w`` of ``W``
  (column centres from +π down to -π, minus the extrinsic ``E``'s yaw);
- sensor point ``r (cos i cos a, cos i sin a, sin i)``, then ``E`` (lidar → vehicle);
- where a return has a per-pixel pose (``range_image_pose_compressed``, TOP; the first return's
  serves both), each point goes to the world with its pixel's vehicle pose ``[roll, pitch, yaw,
  x, y, z]`` (3-2-1 Euler: ``Rz(yaw) Ry(pitch) Rx(roll)``), then back with the inverse frame pose,
  correcting the rolling shutter;
- valid pixels: range > 0, taken in row-major order.

``WaymoFrame.points`` is ``(N, 8)`` float32 with the columns :data:`POINT_COLUMNS`:
``x, y, z`` (metres, vehicle frame), ``intensity``, ``elongation`` (as stored), ``nlz`` (the
no-label-zone channel as stored: -1 outside every zone, 1 inside, in the released data),
``return`` (0 first, 1 second) and ``lidar`` (LaserName 1 TOP, 2 FRONT, 3 SIDE_LEFT,
4 SIDE_RIGHT, 5 REAR). Points are ordered by lidar, then return, then pixel (row-major).

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

**v2.** :func:`read_frames_v2` reads the parquet components ``lidar``, ``lidar_calibration``,
``lidar_pose``, ``vehicle_pose``, ``lidar_box`` (and ``stats`` where present) of one segment,
laid out as ``ROOT/<component>/<segment>.parquet`` with the official column names, into the same
:class:`WaymoFrame` objects; :func:`write_frames_v2` writes that layout from v1 frames.

**Synthetic frames.** :func:`make_synthetic_frame` builds a complete ``Frame`` proto (five lidars,
TOP 64 × 2650 with explicit inclinations and a per-pixel pose, four 200 × 600 with uniform
inclinations, labels) from known points by the inverse geometry, for tests and benchmarks.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import ArrayLike, NDArray

from perception.data import waymo_protos as wpb
from perception.data.io import atomic_write_bytes
from perception.geometry.boxes import wrap_angle
from perception.structures import Frame

__all__ = [
    "LEVEL_2_MAX_POINTS",
    "LIDAR_IDS",
    "LIDAR_NAMES",
    "POINT_COLUMNS",
    "SHORT_RANGE_SHAPE",
    "TOP_SHAPE",
    "V2_COMPONENTS",
    "WAYMO_CLASSES",
    "LidarCalibration",
    "SyntheticFrame",
    "WaymoFormatError",
    "WaymoFrame",
    "decode_frame",
    "decode_matrix_float",
    "default_lidar_calibrations",
    "encode_matrix_float",
    "euler_from_rotation",
    "list_segments_v2",
    "make_synthetic_frame",
    "masked_crc32c",
    "points_to_range_image_pixels",
    "pose_image_to_matrices",
    "range_image_azimuths",
    "range_image_to_points",
    "read_frames",
    "read_frames_v2",
    "read_records",
    "rotation_from_euler",
    "synthetic_top_pose",
    "write_frames_v2",
    "write_records",
]

log = logging.getLogger(__name__)

LIDAR_NAMES: dict[int, str] = {1: "TOP", 2: "FRONT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT", 5: "REAR"}
"""LaserName enum values → names (the ``lidar`` column of ``points`` holds the value)."""
LIDAR_IDS: dict[str, int] = {name: lidar for lidar, name in LIDAR_NAMES.items()}

WAYMO_CLASSES: dict[int, str] = {1: "VEHICLE", 2: "PEDESTRIAN", 3: "SIGN", 4: "CYCLIST"}
"""Label.Type enum values → the class names frames carry in ``names``."""

POINT_COLUMNS: tuple[str, ...] = ("x", "y", "z", "intensity", "elongation", "nlz", "return", "lidar")
"""The columns of ``WaymoFrame.points``."""

LEVEL_2_MAX_POINTS = 5
"""A label without a set difficulty is LEVEL_2 with at most this many lidar points (official rule)."""

TOP_SHAPE: tuple[int, int] = (64, 2650)
SHORT_RANGE_SHAPE: tuple[int, int] = (200, 600)


class WaymoFormatError(ValueError):
    """A Waymo file is malformed; the message names the file (record, frame, lidar) and the problem."""


# --------------------------------------------------------------------------------------------------
# TFRecord framing

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    """The TFRecord masked CRC32C of ``data``: ``((c >> 15) | (c << 17)) + 0xA282EAD8`` mod 2³²."""
    crc = google_crc32c.value(bytes(data))
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(path: str | os.PathLike, check_crc: bool = True) -> Iterator[bytes]:
    """Yield the payloads of a TFRecord file, one record at a time (the file is streamed).

    Raises:
        FileNotFoundError: the file does not exist.
        WaymoFormatError: a length or data CRC does not match ("CRC", "corrupt"), or the file ends
            inside a record ("truncated"); the message names the file, the record index and the
            byte offset where the record starts.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            where = f"{path}: record {index} at byte offset {offset}"
            if len(header) < 12:
                raise WaymoFormatError(
                    f"{where}: the file is truncated ({len(header)} of the 12 header bytes, file size {size})"
                )
            (length,) = _LENGTH.unpack_from(header)
            (length_crc,) = _CRC.unpack_from(header, 8)
            if check_crc and masked_crc32c(header[:8]) != length_crc:
                raise WaymoFormatError(f"{where}: CRC mismatch of the length field; the file is corrupt")
            end = offset + 12 + length + 4
            if end > size:
                raise WaymoFormatError(
                    f"{where}: the file is truncated (the record needs {length} payload bytes and ends "
                    f"at byte {end}, the file has {size})"
                )
            payload = f.read(length)
            footer = f.read(4)
            if len(payload) != length or len(footer) != 4:
                raise WaymoFormatError(f"{where}: the file is truncated (short read)")
            if check_crc and masked_crc32c(payload) != _CRC.unpack(footer)[0]:
                raise WaymoFormatError(
                    f"{where}: CRC mismatch of the {length}-byte payload (bytes {offset + 12} to "
                    f"{offset + 12 + length}); the file is corrupt"
                )
            yield payload
            offset = end
            index += 1


def write_records(path: str | os.PathLike, payloads: Iterable[bytes | object], fsync: bool = True) -> Path:
    """Write payloads (bytes, or protos, serialized) as a TFRecord file with masked CRCs, atomically."""
    chunks: list[bytes] = []
    for payload in payloads:
        data = payload.SerializeToString() if hasattr(payload, "SerializeToString") else bytes(payload)
        length = _LENGTH.pack(len(data))
        chunks += [length, _CRC.pack(masked_crc32c(length)), data, _CRC.pack(masked_crc32c(data))]
    return atomic_write_bytes(path, b"".join(chunks), fsync=fsync)


# --------------------------------------------------------------------------------------------------
# matrices (MatrixFloat on the wire)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_matrix_float(values: ArrayLike) -> bytes:
    """Serialize an array as a ``MatrixFloat`` (float32 data, packed; its shape in ``shape.dims``)."""
    array = np.ascontiguousarray(values, dtype="<f4")
    data = array.tobytes()
    shape = wpb.MatrixShape(dims=list(array.shape)).SerializeToString()
    out = b""
    if data:
        out += b"\x0a" + _varint_bytes(len(data)) + data
    return out + b"\x12" + _varint_bytes(len(shape)) + shape


class _OtherLayout(Exception):
    """The bytes are not laid out as the fast path expects; parse them with the message class."""


def decode_matrix_float(raw: bytes) -> NDArray[np.float32]:
    """Parse a serialized ``MatrixFloat`` into a float32 array of its ``shape.dims``.

    The usual layout (packed data, then the shape) is read straight from the bytes with
    ``np.frombuffer``; anything else goes through the message class.

    Raises:
        ValueError: the bytes are not a MatrixFloat, or the data size is not the shape's product.
    """
    chunks: list[NDArray[np.float32]] = []
    dims: list[int] = []
    pos, n = 0, len(raw)
    try:
        while pos < n:
            key, pos = _varint(raw, pos)
            if key == 0x0A:  # field 1 (data), packed
                length, pos = _varint(raw, pos)
                if length % 4 or pos + length > n:
                    raise ValueError("bad packed float data")
                chunks.append(np.frombuffer(raw, dtype="<f4", count=length // 4, offset=pos))
                pos += length
            elif key == 0x12:  # field 2 (shape)
                length, pos = _varint(raw, pos)
                if pos + length > n:
                    raise ValueError("bad shape")
                dims.extend(wpb.MatrixShape.FromString(raw[pos : pos + length]).dims)
                pos += length
            else:
                raise _OtherLayout  # another layout: let the message class parse it
    except _OtherLayout:
        try:
            message = wpb.MatrixFloat.FromString(raw)
        except DecodeError as e:
            raise ValueError(f"not a serialized MatrixFloat ({e})") from e
        chunks, dims = [np.asarray(message.data, dtype=np.float32)], list(message.shape.dims)
    except (IndexError, DecodeError) as e:
        raise ValueError(f"not a serialized MatrixFloat ({e})") from e
    if len(chunks) == 1:
        values = chunks[0]
    else:
        values = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not dims or any(d < 0 for d in dims) or math.prod(dims) != values.size:
        raise ValueError(f"MatrixFloat with {values.size} values does not fit its shape {dims}")
    return values.astype(np.float32, copy=False).reshape(dims)


# --------------------------------------------------------------------------------------------------
# geometry


def rotation_from_euler(roll: ArrayLike, pitch: ArrayLike, yaw: ArrayLike) -> NDArray[np.float64]:
    """(..., 3, 3) rotations ``Rz(yaw) Ry(pitch) Rx(roll)`` (3-2-1 Euler angles, radians)."""
    roll, pitch, yaw = (np.asarray(a, dtype=np.float64) for a in (roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            np.stack([-sp, cp * sr, cp * cr], -1),
        ],
        -2,
    )


def euler_from_rotation(rotation: ArrayLike) -> NDArray[np.float64]:
    """(..., 3) ``[roll, pitch, yaw]`` of (..., 3, 3) rotations (inverse of :func:`rotation_from_euler`)."""
    r = np.asarray(rotation, dtype=np.float64)
    roll = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    pitch = np.arctan2(-r[..., 2, 0], np.hypot(r[..., 0, 0], r[..., 1, 0]))
    yaw = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([roll, pitch, yaw], -1)


def pose_image_to_matrices(pose: ArrayLike) -> NDArray[np.float64]:
    """(..., 6) ``[roll, pitch, yaw, x, y, z]`` vehicle → world poses → (..., 4, 4) transforms."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros((*pose.shape[:-1], 4, 4))
    out[..., :3, :3] = rotation_from_euler(pose[..., 0], pose[..., 1], pose[..., 2])
    out[..., :3, 3] = pose[..., 3:6]
    out[..., 3, 3] = 1.0
    return out


def _yaw_of(extrinsic: NDArray[np.float64]) -> float:
    return math.atan2(extrinsic[1, 0], extrinsic[0, 0])


def range_image_azimuths(width: int, extrinsic: ArrayLike) -> NDArray[np.float64]:
    """(W,) sensor-frame azimuth of each column: ``π - (w + 0.5) 2π / W`` minus the extrinsic's yaw."""
    extrinsic = np.asarray(extrinsic, dtype=np.float64)
    return np.pi - (np.arange(width) + 0.5) * (2.0 * np.pi / width) - _yaw_of(extrinsic)


@dataclass(frozen=True)
class LidarCalibration:
    """One lidar's calibration (``LaserCalibration`` / v2 ``LiDARCalibrationComponent``).

    Attributes:
        name: LaserName value, 1 TOP .. 5 REAR.
        extrinsic: (4, 4) float64 lidar → vehicle transform (NaN where the calibration has none;
            decoding points of that lidar then raises).
        beam_inclinations: (K,) float64 radians as stored (ascending), or empty where the beams are
            uniform between ``inclination_min`` and ``inclination_max``.
        inclination_min, inclination_max: radians.
    """

    name: int
    extrinsic: NDArray[np.float64]
    beam_inclinations: NDArray[np.float64]
    inclination_min: float
    inclination_max: float

    @property
    def lidar_name(self) -> str:
        return LIDAR_NAMES.get(self.name, f"lidar {self.name}")

    def row_inclinations(self, height: int) -> NDArray[np.float64]:
        """(H,) inclination of each range-image row, row 0 the highest beam.

        Raises:
            ValueError: explicit inclinations whose count is not ``height``.
        """
        if len(self.beam_inclinations):
            if len(self.beam_inclinations) != height:
                raise ValueError(
                    f"{self.lidar_name} has {len(self.beam_inclinations)} beam inclinations "
                    f"but its range image has {height} rows"
                )
            ascending = np.asarray(self.beam_inclinations, dtype=np.float64)
        else:
            step = (self.inclination_max - self.inclination_min) / height
            ascending = self.inclination_min + (np.arange(height) + 0.5) * step
        return ascending[::-1].copy()

    @classmethod
    def from_proto(cls, message: object, where: str = "") -> LidarCalibration:
        extrinsic = _transform(
            message.extrinsic.transform, f"{where}: {LIDAR_NAMES.get(message.name)} extrinsic"
        )
        return cls(
            name=int(message.name),
            extrinsic=_NO_EXTRINSIC if extrinsic is None else extrinsic,
            beam_inclinations=np.asarray(message.beam_inclinations, dtype=np.float64),
            inclination_min=float(message.beam_inclination_min),
            inclination_max=float(message.beam_inclination_max),
        )

    def to_proto(self) -> object:
        message = wpb.LaserCalibration(
            name=self.name,
            beam_inclinations=[float(v) for v in self.beam_inclinations],
            beam_inclination_min=self.inclination_min,
            beam_inclination_max=self.inclination_max,
        )
        message.extrinsic.transform.extend(np.asarray(self.extrinsic, np.float64).ravel().tolist())
        return message


_NO_EXTRINSIC = np.full((4, 4), np.nan)
"""The extrinsic of a calibration that has none: NaN, refused where points are computed."""


def _transform(values: Sequence[float], what: str) -> NDArray[np.float64] | None:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    if values.size != 16:
        raise WaymoFormatError(f"{what}: a transform needs 16 values, got {values.size}")
    return values.reshape(4, 4)


def range_image_to_points(
    range_image: ArrayLike,
    calibration: LidarCalibration,
    pixel_pose: ArrayLike | None = None,
    frame_pose: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float32], NDArray[np.int64]]:
    """The points of a range image's valid pixels (range > 0), in row-major order.

    Args:
        range_image: (H, W, C) range image, channel 0 the range in metres.
        calibration: the lidar's calibration.
        pixel_pose: optional (H, W, 6) ``[roll, pitch, yaw, x, y, z]`` vehicle → world pose of
            each pixel (TOP); then ``frame_pose`` is required.
        frame_pose: (4, 4) vehicle → world pose of the frame whose vehicle frame the points are
            returned in.

    Returns:
        xyz: (K, 3) float64 points in the vehicle frame.
        channels: (K, C - 1) float32, the other channels (intensity, elongation, nlz).
        index: (K,) int64 flat pixel index ``row * W + col``.
    """
    ri = np.asarray(range_image)
    if ri.ndim != 3:
        raise ValueError(f"range image must be (H, W, C), got {ri.shape}")
    height, width = ri.shape[:2]
    flat = ri.reshape(height * width, ri.shape[2])
    index = np.flatnonzero(flat[:, 0] > 0)
    rows, cols = np.divmod(index, width)
    r = flat[index, 0].astype(np.float64)
    inclination = calibration.row_inclinations(height)[rows]
    azimuth = range_image_azimuths(width, calibration.extrinsic)[cols]
    cos_incl = np.cos(inclination)
    sensor = np.stack(
        [r * cos_incl * np.cos(azimuth), r * cos_incl * np.sin(azimuth), r * np.sin(inclination)], -1
    )
    extrinsic = calibration.extrinsic
    xyz = sensor @ extrinsic[:3, :3].T + extrinsic[:3, 3]
    if pixel_pose is not None:
        if frame_pose is None:
            raise ValueError("frame_pose is required with a per-pixel pose")
        pose = np.asarray(pixel_pose)
        if pose.shape != (height, width, 6):
            raise ValueError(f"per-pixel pose must be ({height}, {width}, 6), got {pose.shape}")
        params = pose.reshape(height * width, 6)[index].astype(np.float64)
        rotation = rotation_from_euler(params[:, 0], params[:, 1], params[:, 2])
        world = np.einsum("kij,kj->ki", rotation, xyz) + params[:, 3:6]
        world_to_vehicle = np.linalg.inv(np.asarray(frame_pose, dtype=np.float64))
        xyz = world @ world_to_vehicle[:3, :3].T + world_to_vehicle[:3, 3]
    return xyz, flat[index, 1:].astype(np.float32), index


def points_to_range_image_pixels(
    xyz: ArrayLike,
    calibration: LidarCalibration,
    shape: tuple[int, int],
    pixel_pose: ArrayLike | None = None,
    frame_pose: ArrayLike | None = None,
    max_iterations: int = 20,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Inverse of :func:`range_image_to_points`: the pixel whose ray carries each point.

    Each point goes to the sensor frame, and takes the row of the nearest beam inclination and the
    column of the nearest column azimuth. With a per-pixel pose the pixel and its pose depend on
    each other; the pixel is found by fixed-point iteration from the frame pose (a few steps for
    real ego motion).

    Args:
        xyz: (N, 3) points in the vehicle frame (of ``frame_pose`` where ``pixel_pose`` is given).
        shape: ``(H, W)`` of the range image.

    Returns:
        rows, cols: (N,) int64 pixel of each point; ranges: (N,) float64 distance to the sensor.
    """
    height, width = shape
    points = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    ascending = calibration.row_inclinations(height)[::-1]
    vehicle_to_lidar = np.linalg.inv(calibration.extrinsic)
    yaw = _yaw_of(calibration.extrinsic)

    def locate(p: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        s = p @ vehicle_to_lidar[:3, :3].T + vehicle_to_lidar[:3, 3]
        ranges = np.linalg.norm(s, axis=1)
        inclination = np.arctan2(s[:, 2], np.hypot(s[:, 0], s[:, 1]))
        if height > 1:
            j = np.clip(np.searchsorted(ascending, inclination), 1, height - 1)
            j = np.where(inclination - ascending[j - 1] <= ascending[j] - inclination, j - 1, j)
        else:
            j = np.zeros(len(p), np.int64)
        azimuth = np.arctan2(s[:, 1], s[:, 0]) + yaw
        cols = np.mod(np.rint((np.pi - azimuth) * width / (2.0 * np.pi) - 0.5).astype(np.int64), width)
        return (height - 1 - j).astype(np.int64), cols, ranges

    if pixel_pose is None:
        return locate(points)
    if frame_pose is None:
        raise ValueError("frame_pose is required with a per-pixel pose")
    pose = np.asarray(pixel_pose, dtype=np.float64)
    if pose.shape != (height, width, 6):
        raise ValueError(f"per-pixel pose must be ({height}, {width}, 6), got {pose.shape}")
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    world = points @ frame_pose[:3, :3].T + frame_pose[:3, 3]
    rows, cols, ranges = locate(points)
    for _ in range(max_iterations):
        params = pose[rows, cols]
        rotation = rotation_from_euler(params[:, 0], params[:, 1], params[:, 2])
        local = np.einsum("kji,kj->ki", rotation, world - params[:, 3:6])  # R^T (world - t)
        new_rows, new_cols, ranges = locate(local)
        if np.array_equal(new_rows, rows) and np.array_equal(new_cols, cols):
            break
        rows, cols = new_rows, new_cols
    else:
        log.warning("per-pixel pose inversion did not settle in %d steps", max_iterations)
    return rows, cols, ranges


# --------------------------------------------------------------------------------------------------
# frames


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


def _decode_image(raw: bytes, what: str) -> NDArray[np.float32]:
    try:
        return decode_matrix_float(zlib.decompress(raw))
    except (zlib.error, ValueError) as e:
        raise WaymoFormatError(f"{what}: corrupt data ({e})") from e


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


# --------------------------------------------------------------------------------------------------
# v2 (parquet components)

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
    errors are those of :func:`read_frames` on the same data.
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


# --------------------------------------------------------------------------------------------------
# synthetic frames


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
        points: (N, 8) float32 the encoded points in :data:`POINT_COLUMNS` and in reader order;
            from given points, their x, y, z are those points (recovered exactly where they lie on
            pixel rays); for a random scene, the points the official geometry decodes.
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
            is nearest (:func:`points_to_range_image_pixels`); two points on a pixel keep the
            nearer. Where None, a random scene from ``seed`` with about ``fill`` of the pixels
            (ground and obstacles; about 190 k first-return and 10 k second-return points at
            the default, the size of a real frame).
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
