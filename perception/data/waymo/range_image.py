"""Range images to points: the official Waymo lidar geometry, and the ``MatrixFloat`` codec.

Each lidar return is a range image ``[H, W, 4]`` (range, intensity, elongation, no-label-zone
channel), zlib over a serialized ``MatrixFloat``. The official geometry
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

:func:`points_to_range_image_pixels` inverts it (tests build range images from known points with it).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import ArrayLike, NDArray

from perception.data.waymo import protos as wpb
from perception.data.waymo.records import WaymoFormatError

__all__ = [
    "LIDAR_IDS",
    "LIDAR_NAMES",
    "SHORT_RANGE_SHAPE",
    "TOP_SHAPE",
    "LidarCalibration",
    "decode_matrix_float",
    "encode_matrix_float",
    "euler_from_rotation",
    "points_to_range_image_pixels",
    "pose_image_to_matrices",
    "range_image_azimuths",
    "range_image_to_points",
    "rotation_from_euler",
]

log = logging.getLogger(__name__)

LIDAR_NAMES: dict[int, str] = {1: "TOP", 2: "FRONT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT", 5: "REAR"}
"""LaserName enum values → names (the ``lidar`` column of ``points`` holds the value)."""
LIDAR_IDS: dict[str, int] = {name: lidar for lidar, name in LIDAR_NAMES.items()}

TOP_SHAPE: tuple[int, int] = (64, 2650)
SHORT_RANGE_SHAPE: tuple[int, int] = (200, 600)
"""Range-image ``(H, W)`` of TOP and of the four short-range lidars in the released data."""


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


def _decode_image(raw: bytes, what: str) -> NDArray[np.float32]:
    try:
        return decode_matrix_float(zlib.decompress(raw))
    except (zlib.error, ValueError) as e:
        raise WaymoFormatError(f"{what}: corrupt data ({e})") from e


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
