"""KITTI multi-object tracking sequences (the tracking benchmark's devkit layout).

Layout read::

    ROOT/training/ (or testing/)
      velodyne/SSSS/NNNNNN.bin   float32 x, y, z, reflectance per point (lidar frame)
      label_02/SSSS.txt          one object a line, every frame of the sequence (training only):
                                 frame track_id type truncated occluded alpha bbox(l t r b)
                                 h w l x y z rotation_y [score]   (17 fields, 18 in result files;
                                 location: bottom centre in the rectified camera frame)
      calib/SSSS.txt             P0..P3 (``P0: ...``), R_rect, Tr_velo_cam, Tr_imu_velo (no colon)
      oxts/SSSS.txt              one GPS/IMU row a frame, 30 fields: lat lon alt roll pitch yaw vn ve
                                 vf vl vu ax ay az af al au wx wy wz wf wl wu pos_accuracy
                                 vel_accuracy navstat numsats posmode velmode orimode

Poses follow the KITTI raw devkit (``convertOxtsToPose``): a Mercator projection whose scale is
``cos(lat)`` of the sequence's first row, ``t = (mx, my, alt)`` (east, north, up), rotation
``Rz(yaw) Ry(pitch) Rx(roll)`` (IMU x forward, y left, z up; yaw 0 = east, counter-clockwise),
each IMU pose taken relative to the first (``inv(T_0) T_i``). The world frame is therefore the IMU
frame of the sequence's frame 0, and the lidar pose is ``pose_imu · inv(Tr_imu_velo)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.kitti import read_calib, read_velodyne
from perception.data.sequences.base import KITTI_AGENT_CLASSES, SequenceError, agent_class_of
from perception.structures import KITTI_CLASSES, KittiCalibration
from perception.structures.occupancy import TrackedFrame

__all__ = ["FRAME_PERIOD_MICROS", "KittiTrackingSequences", "oxts_to_poses"]

FRAME_PERIOD_MICROS = 100_000
"""The tracking benchmark's frames are 10 Hz; a frame's timestamp is its index times this."""

EARTH_RADIUS = 6378137.0
"""Metres: the devkit's Mercator radius (WGS-84 equatorial)."""

_LABEL_FIELDS = "frame track_id type truncated occluded alpha bbox(4) h w l x y z rotation_y [score]"
_OXTS_FIELDS = 30


def _rotation(roll: float, pitch: float, yaw: float) -> NDArray[np.float64]:
    """``Rz(yaw) Ry(pitch) Rx(roll)``: the IMU's axes in the east-north-up frame."""
    c, s = np.cos([roll, pitch, yaw]), np.sin([roll, pitch, yaw])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, c[0], -s[0]], [0.0, s[0], c[0]]])
    ry = np.array([[c[1], 0.0, s[1]], [0.0, 1.0, 0.0], [-s[1], 0.0, c[1]]])
    rz = np.array([[c[2], -s[2], 0.0], [s[2], c[2], 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def oxts_to_poses(oxts: NDArray[np.float64]) -> NDArray[np.float64]:
    """(F, 4, 4) IMU → world poses from (F, ≥6) OXTS rows ``lat lon alt roll pitch yaw ...``.

    Degrees for latitude and longitude, metres for altitude, radians for the angles; the world
    frame is the first row's IMU frame (so the first pose is the identity). See the module docstring.
    """
    oxts = np.asarray(oxts, dtype=np.float64)
    scale = np.cos(np.deg2rad(oxts[0, 0]))
    poses = np.zeros((len(oxts), 4, 4))
    for i, (lat, lon, alt, roll, pitch, yaw) in enumerate(oxts[:, :6]):
        poses[i, :3, :3] = _rotation(roll, pitch, yaw)
        poses[i, 0, 3] = scale * np.deg2rad(lon) * EARTH_RADIUS
        poses[i, 1, 3] = scale * EARTH_RADIUS * np.log(np.tan(np.deg2rad(90.0 + lat) / 2.0))
        poses[i, 2, 3] = alt
        poses[i, 3, 3] = 1.0
    return np.linalg.inv(poses[0]) @ poses if len(poses) else poses


@dataclass
class _Labels:
    """A label_02 file, DontCare rows dropped: per row its frame, track id, type and camera box."""

    frames: NDArray[np.int64]
    track_ids: NDArray[np.int64]
    names: NDArray[np.str_]
    boxes_camera: NDArray[np.float64]  # (K, 7) [x, y, z, l, h, w, ry], bottom centre


class KittiTrackingSequences:
    """The sequences of a KITTI tracking split.

    Frame ids are the scans' 6-digit stems; ``timestamp_micros`` is the frame index ×
    :data:`FRAME_PERIOD_MICROS` (10 Hz, the tracking data has no per-scan times). Boxes are converted
    to the lidar frame with the sequence's calibration (the label's location is the box's bottom
    centre); DontCare rows (track id -1) are dropped; track ids are the label file's, as str.
    Each sequence's label, calibration and OXTS files are parsed once and kept.

    Args:
        root: the dataset root (holding ``training/``, ``testing/``).
        split: the folder, ``"training"`` or ``"testing"`` (a split without ``label_02`` has no objects).
        sequences: the sequences to use (``["0000", "0003"]``); None: every folder of ``velodyne/``.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "training", sequences: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.folder = self.root / split
        velodyne = self.folder / "velodyne"
        if not velodyne.is_dir():
            raise SequenceError(
                f"{velodyne}: no such folder; expected a KITTI tracking root with {split}/velodyne/SSSS/NNNNNN.bin"
            )
        found = sorted(p.name for p in velodyne.iterdir() if p.is_dir())
        if sequences is not None:
            unknown = sorted(set(sequences) - set(found))
            if unknown:
                raise SequenceError(
                    f"{velodyne}: sequence {', '.join(unknown)} frame (any): no such folder "
                    f"(have {', '.join(found) or 'none'})"
                )
            found = sorted(set(sequences))
        self._sequences = found
        self._labels: dict[str, _Labels] = {}
        self._poses: dict[str, NDArray[np.float64]] = {}
        self._calib: dict[str, KittiCalibration] = {}

    def sequences(self) -> list[str]:
        """The sequences' names, sorted (``"0000"``, ``"0001"``, ...)."""
        return list(self._sequences)

    def frame_ids(self, sequence: str) -> list[str]:
        """The 6-digit stems of the sequence's scans, in time order.

        Raises:
            SequenceError: the OXTS file has fewer rows than the last scan needs.
        """
        self._check_sequence(sequence, "(any)")
        ids = sorted(
            p.stem for p in (self.folder / "velodyne" / sequence).glob("*.bin") if _is_frame_id(p.stem)
        )
        if ids:
            self._pose(sequence, ids[-1])
        return ids

    def read(self, sequence: str, frame_id: str, *, points: bool = True) -> TrackedFrame:
        """One frame: boxes (M, 7) in the lidar frame, the lidar → world pose, track ids.

        ``points`` (N, 4) float32 x, y, z, reflectance (lidar frame); ``points=False`` reads no scan.

        Raises:
            SequenceError: no such sequence or frame, the frame's scan is missing (with ``points``), a
                file is missing or malformed, or the OXTS file has no row for the frame (the message
                names the file, the sequence and the frame).
        """
        self._check_sequence(sequence, frame_id)
        if not _is_frame_id(frame_id):
            raise SequenceError(
                f"{self.folder}: sequence {sequence} frame {frame_id}: not a 6-digit frame id"
            )
        scan = None
        if points:
            path = self.folder / "velodyne" / sequence / f"{frame_id}.bin"
            if not path.is_file():
                raise SequenceError(
                    f"{path}: sequence {sequence} frame {frame_id}: no velodyne scan (a frame the labels "
                    "list, or a gap in the scans' numbering)"
                )
            try:
                scan = read_velodyne(path)
            except ValueError as err:
                raise SequenceError(f"sequence {sequence} frame {frame_id}: {err}") from None
        pose = self._pose(sequence, frame_id)
        labels = self._read_labels(sequence)
        rows = labels.frames == int(frame_id)
        boxes = self._calibration(sequence, frame_id).boxes_camera_to_lidar(labels.boxes_camera[rows])
        return TrackedFrame(
            sequence=sequence,
            frame_id=frame_id,
            timestamp_micros=int(frame_id) * FRAME_PERIOD_MICROS,
            pose=pose,
            boxes=boxes.astype(np.float32).reshape(-1, 7),
            agent_class=agent_class_of(labels.names[rows], KITTI_AGENT_CLASSES),
            track_ids=labels.track_ids[rows].astype(np.str_),
            names=labels.names[rows],
            points=scan,
        )

    # ----------------------------------------------------------------------------------------------

    def _check_sequence(self, sequence: str, frame_id: str) -> None:
        if sequence not in self._sequences:
            raise SequenceError(
                f"{self.folder}: sequence {sequence} frame {frame_id}: no such sequence "
                f"(have {', '.join(self._sequences) or 'none'})"
            )

    def _calibration(self, sequence: str, frame_id: str) -> KittiCalibration:
        if sequence not in self._calib:
            path = self.folder / "calib" / f"{sequence}.txt"
            try:
                calib = read_calib(path)
            except (OSError, ValueError) as err:
                raise SequenceError(f"sequence {sequence} frame {frame_id}: {err}") from None
            if calib.Tr_imu_to_velo is None:
                raise SequenceError(
                    f"{path}: sequence {sequence} frame {frame_id}: no Tr_imu_velo (needed for the poses)"
                )
            self._calib[sequence] = calib
        return self._calib[sequence]

    def _pose(self, sequence: str, frame_id: str) -> NDArray[np.float64]:
        """(4, 4) lidar → world of a frame (the sequence's OXTS file parsed once)."""
        path = self.folder / "oxts" / f"{sequence}.txt"
        if sequence not in self._poses:
            where = f"sequence {sequence} frame {frame_id}"
            if not path.is_file():
                raise SequenceError(f"{path}: {where}: OXTS file does not exist")
            rows = []
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                frame = f"{len(rows):06d}"
                if len(fields) != _OXTS_FIELDS:
                    raise SequenceError(
                        f"{path}:{lineno}: sequence {sequence} frame {frame}: {len(fields)} fields, "
                        f"expected {_OXTS_FIELDS} (lat lon alt roll pitch yaw ...)"
                    )
                try:
                    values = [float(v) for v in fields[:6]]
                except ValueError as err:
                    raise SequenceError(
                        f"{path}:{lineno}: sequence {sequence} frame {frame}: not a number ({err})"
                    ) from None
                if not np.isfinite(values).all():
                    raise SequenceError(
                        f"{path}:{lineno}: sequence {sequence} frame {frame}: non-finite pose"
                    )
                rows.append(values)
            imu_to_velo = np.eye(4)
            imu_to_velo[:3] = self._calibration(sequence, frame_id).Tr_imu_to_velo
            poses = oxts_to_poses(np.array(rows).reshape(-1, 6)) @ np.linalg.inv(imu_to_velo)
            self._poses[sequence] = poses
        poses = self._poses[sequence]
        index = int(frame_id)
        if index >= len(poses):
            raise SequenceError(
                f"{path}: sequence {sequence} frame {frame_id}: the OXTS file has {len(poses)} rows, "
                f"fewer than the frames (row {index} needed)"
            )
        return poses[index]

    def _read_labels(self, sequence: str) -> _Labels:
        if sequence in self._labels:
            return self._labels[sequence]
        path = self.folder / "label_02" / f"{sequence}.txt"
        if not path.parent.is_dir():  # a split without labels (testing)
            labels = _Labels(
                np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, "<U16"), np.zeros((0, 7))
            )
        else:
            if not path.is_file():
                raise SequenceError(f"{path}: sequence {sequence} frame (any): label file does not exist")
            labels = _parse_labels(path, sequence)
        self._labels[sequence] = labels
        return labels

    def __repr__(self) -> str:
        return (
            f"KittiTrackingSequences({str(self.root)!r}, split={self.split!r}, "
            f"sequences={len(self._sequences)})"
        )


def _is_frame_id(stem: str) -> bool:
    return len(stem) == 6 and stem.isdigit()


def _parse_labels(path: Path, sequence: str) -> _Labels:
    """A ``label_02/SSSS.txt`` file, DontCare rows dropped; errors name the line, sequence and frame."""
    frames, tracks, names, numbers = [], [], [], []
    counts: set[int] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        frame = f"{int(fields[0]):06d}" if fields[0].isdigit() else f"{fields[0]!r} (not a number)"
        where = f"{path}:{lineno}: sequence {sequence} frame {frame}"
        if len(fields) not in (17, 18):
            raise SequenceError(
                f"{where}: {len(fields)} fields, expected 17 ({_LABEL_FIELDS}) or 18 with a score"
            )
        counts.add(len(fields))
        if len(counts) > 1:
            raise SequenceError(f"{where}: lines mix 17 and 18 fields (ground truth and scored results)")
        if fields[2] not in KITTI_CLASSES:
            raise SequenceError(
                f"{where}: unknown object type {fields[2]!r}; expected one of {KITTI_CLASSES}"
            )
        try:
            ids = int(fields[0]), int(fields[1])
            values = [float(v) for v in fields[3:17]]
        except ValueError as err:
            raise SequenceError(f"{where}: a field is not a number ({err})") from None
        if not np.isfinite(values).all():
            raise SequenceError(f"{where}: NaN or infinite value")
        if fields[2] == "DontCare" or ids[1] < 0:
            continue
        frames.append(ids[0])
        tracks.append(ids[1])
        names.append(fields[2])
        numbers.append(values)
    v = np.array(numbers, dtype=np.float64).reshape(-1, 14)
    # values: truncated occluded alpha bbox(4) h w l x y z ry → camera box [x, y, z, l, h, w, ry]
    h, w, l = v[:, 7], v[:, 8], v[:, 9]
    return _Labels(
        frames=np.array(frames, dtype=np.int64),
        track_ids=np.array(tracks, dtype=np.int64),
        names=np.array(names, dtype="<U16"),
        boxes_camera=np.column_stack([v[:, 10:13], l, h, w, v[:, 13]]),
    )
