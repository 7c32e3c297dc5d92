"""KITTI object-detection files: velodyne scans, labels, calibration, split files.

Layout read and written (the devkit's, plus two optional extensions the synthetic generator uses)::

    ROOT/
      ImageSets/{train,val,test}.txt      frame ids, one a line
      training/ (or testing/)
        velodyne/NNNNNN.bin               float32 x, y, z, reflectance (lidar frame)
        label_2/NNNNNN.txt                one object a line, 15 fields (+ score in result files)
        calib/NNNNNN.txt                  P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo
        image_2/NNNNNN.png                optional; only its size is read
        pose/NNNNNN.txt                   optional: 12 floats, the 3×4 lidar → world transform

Boxes are converted to the project convention on read (lidar frame, centre, ``[x, y, z, l, w, h,
yaw]``) and back on write; see :mod:`perception.geometry.camera` for the exact conversion.
``DontCare`` regions are not objects: they are kept apart in ``KittiFrame.dontcare_bbox``.

Every malformed file raises :class:`KittiFormatError` (a ``ValueError``) naming the file and the
problem; non-finite points are dropped with a logged count (the only repair made).
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.geometry.camera import (
    observation_angle,
    project_boxes_to_image,
)
from perception.structures import KITTI_CLASSES, Frame, KittiCalibration, KittiObjects

__all__ = [
    "KITTI_CLASSES",
    "KittiCalibration",
    "KittiFormatError",
    "KittiFrame",
    "KittiObjects",
    "as_written",
    "frame_name",
    "frame_path",
    "kitti_difficulty",
    "list_frames",
    "load_frame",
    "objects_from_lidar_boxes",
    "parse_label",
    "read_calib",
    "read_label",
    "read_pose",
    "read_split",
    "read_velodyne",
    "write_calib",
    "write_label",
    "write_pose",
    "write_split",
    "write_velodyne",
]

log = logging.getLogger(__name__)

# Official difficulty thresholds (devkit evaluate_object.cpp): min bbox height in pixels,
# max occlusion level, max truncation, for easy / moderate / hard.
_MIN_HEIGHT = (40.0, 25.0, 25.0)
_MAX_OCCLUSION = (0, 1, 2)
_MAX_TRUNCATION = (0.15, 0.30, 0.50)


class KittiFormatError(ValueError):
    """A KITTI file is malformed; the message names the file and the problem."""


def frame_name(frame_id: int | str) -> str:
    """A frame id as file names spell it: ints zero-padded to six digits, strings as given (checked)."""
    if isinstance(frame_id, (int, np.integer)):
        if frame_id < 0:
            raise ValueError(f"frame_id must be non-negative, got {frame_id}")
        return f"{int(frame_id):06d}"
    name = str(frame_id)
    if not name or os.sep in name or name.startswith("."):
        raise ValueError(f"frame_id must be a plain id like '000123', got {frame_id!r}")
    return name


def frame_path(root: str | os.PathLike, frame_id: int | str, kind: str, split: str = "training") -> Path:
    """Path of one frame's file, e.g. ``kind="velodyne"`` → ``ROOT/training/velodyne/000123.bin``."""
    ext = {"velodyne": ".bin", "label_2": ".txt", "calib": ".txt", "image_2": ".png", "pose": ".txt"}[kind]
    return Path(root) / split / kind / f"{frame_name(frame_id)}{ext}"


# --------------------------------------------------------------------------------------------------
# velodyne


def read_velodyne(path: str | os.PathLike) -> NDArray[np.float32]:
    """Read a ``velodyne/*.bin`` scan: (N, 4) float32 x, y, z, reflectance in the lidar frame.

    Raises:
        FileNotFoundError: the file does not exist.
        KittiFormatError: its size is not a multiple of 16 bytes (4 float32 a point).
    Points with a non-finite coordinate or reflectance are dropped, and the count is logged.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: velodyne scan does not exist")
    size = path.stat().st_size
    if size % 16:
        raise KittiFormatError(
            f"{path}: size {size} bytes is not a multiple of 16 (4 float32 a point); the file is corrupt"
        )
    points = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        dropped = int((~finite).sum())
        log.warning("%s: dropped %d of %d points with NaN or infinite values", path, dropped, len(points))
        points = points[finite]
    return np.ascontiguousarray(points, dtype=np.float32)


def write_velodyne(path: str | os.PathLike, points: ArrayLike, fsync: bool = True) -> Path:
    """Write (N, 4) points as a little-endian float32 ``.bin`` scan (atomically)."""
    pts = np.asarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must be (N, 4) x, y, z, reflectance, got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{path}: refusing to write non-finite points")
    return atomic_write_bytes(path, pts.tobytes(), fsync=fsync)


# --------------------------------------------------------------------------------------------------
# calibration


_CALIB_SHAPES = {
    "P0": (3, 4),
    "P1": (3, 4),
    "P2": (3, 4),
    "P3": (3, 4),
    "R0_rect": (3, 3),
    "Tr_velo_to_cam": (3, 4),
    "Tr_imu_to_velo": (3, 4),
}
_CALIB_REQUIRED = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam")
# Spellings used by the KITTI tracking/raw calib files.
_CALIB_ALIASES = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam", "Tr_imu_velo": "Tr_imu_to_velo"}


def read_calib(path: str | os.PathLike) -> KittiCalibration:
    """Read a ``calib/*.txt`` file.

    Raises:
        FileNotFoundError: the file does not exist.
        KittiFormatError: a required matrix is missing, has the wrong number of values, or a value
            is not a finite number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file does not exist")
    values: dict[str, NDArray[np.float64]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            # Tracking-style files separate the key with a space.
            key, _, rest = line.partition(" ")
        key = _CALIB_ALIASES.get(key.strip(), key.strip())
        if key not in _CALIB_SHAPES:
            continue
        try:
            numbers = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError as err:
            raise KittiFormatError(
                f"{path}:{lineno}: {key} has a value that is not a number ({err})"
            ) from None
        shape = _CALIB_SHAPES[key]
        if numbers.size != shape[0] * shape[1]:
            raise KittiFormatError(
                f"{path}:{lineno}: {key} has {numbers.size} values, expected {shape[0] * shape[1]}"
            )
        if not np.isfinite(numbers).all():
            raise KittiFormatError(f"{path}:{lineno}: {key} has non-finite values")
        values[key] = numbers.reshape(shape)
    missing = [k for k in _CALIB_REQUIRED if k not in values]
    if missing:
        raise KittiFormatError(f"{path}: calibration is missing {', '.join(missing)}")
    return KittiCalibration(**values)


def write_calib(path: str | os.PathLike, calib: KittiCalibration, fsync: bool = True) -> Path:
    """Write a calibration in the devkit format (atomically)."""
    return atomic_write_text(path, calib.to_text(), fsync=fsync)


# --------------------------------------------------------------------------------------------------
# labels


def read_label(path: str | os.PathLike) -> KittiObjects:
    """Read a ``label_2/*.txt`` file (ground truth: 15 fields; results: 16, the last a score).

    All lines of one file must have the same field count.

    Raises:
        FileNotFoundError: the file does not exist.
        KittiFormatError: a line with another field count than 15 or 16, an unknown type, a field
            that is not a number, or a non-finite value.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file does not exist")
    return parse_label(path.read_text(), source=str(path))


def parse_label(text: str, source: str = "<label>") -> KittiObjects:
    """:func:`read_label` on the text of a label file; errors name ``source`` and the line."""
    rows: list[list[str]] = []
    linenos: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise KittiFormatError(
                f"{source}:{lineno}: {len(fields)} fields, expected 15 (ground truth) or 16 (with score)"
            )
        if fields[0] not in KITTI_CLASSES:
            raise KittiFormatError(
                f"{source}:{lineno}: unknown object type {fields[0]!r}; expected one of {', '.join(KITTI_CLASSES)}"
            )
        rows.append(fields)
        linenos.append(lineno)
    if not rows:
        return KittiObjects.empty()
    counts = {len(r) for r in rows}
    if len(counts) > 1:
        raise KittiFormatError(f"{source}: lines mix 15 and 16 fields (ground truth and scored results)")
    try:
        numbers = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    except ValueError as err:
        bad = next(n for n, r in zip(linenos, rows, strict=True) if not _all_numbers(r[1:]))
        raise KittiFormatError(f"{source}:{bad}: a field is not a number ({err})") from None
    if not np.isfinite(numbers).all():
        bad = linenos[int(np.argwhere(~np.isfinite(numbers))[0, 0])]
        raise KittiFormatError(f"{source}:{bad}: NaN or infinite value")
    h, w, l = numbers[:, 7], numbers[:, 8], numbers[:, 9]
    loc, ry = numbers[:, 10:13], numbers[:, 13]
    return KittiObjects(
        names=np.array([r[0] for r in rows], dtype="<U16"),
        truncated=numbers[:, 0].astype(np.float32),
        occluded=numbers[:, 1].astype(np.int32),
        alpha=numbers[:, 2].astype(np.float32),
        bbox=numbers[:, 3:7].astype(np.float32),
        boxes_camera=np.column_stack([loc, l, h, w, ry]),
        scores=numbers[:, 14].astype(np.float32) if counts == {16} else None,
    )


def as_written(objects: KittiObjects) -> KittiObjects:
    """``objects`` with every value rounded exactly as a label file holds it (2 decimals, scores 4).

    What :func:`read_label` returns for the file :func:`write_label` writes: a metric fed these rows
    gives the same AP as one reading the written result files.
    """
    return parse_label(format_label(objects)) if len(objects) else objects


def _all_numbers(fields: list[str]) -> bool:
    try:
        [float(v) for v in fields]
    except ValueError:
        return False
    return True


def format_label(objects: KittiObjects) -> str:
    """The devkit's text for ``objects``: 15 fields a line, a 16th (score) when ``scores`` is set."""
    lines = []
    for i in range(len(objects)):
        x, y, z, l, h, w, ry = objects.boxes_camera[i]
        line = (
            f"{objects.names[i]} {objects.truncated[i]:.2f} {int(objects.occluded[i])} {objects.alpha[i]:.2f} "
            + " ".join(f"{v:.2f}" for v in objects.bbox[i])
            + f" {h:.2f} {w:.2f} {l:.2f} {x:.2f} {y:.2f} {z:.2f} {ry:.2f}"
        )
        if objects.scores is not None:
            line += f" {objects.scores[i]:.4f}"
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def write_label(path: str | os.PathLike, objects: KittiObjects, fsync: bool = True) -> Path:
    """Write a label (or, with scores, a result) file in the devkit format, atomically."""
    unknown = sorted(set(objects.names.tolist()) - set(KITTI_CLASSES))
    if unknown:
        raise ValueError(f"{path}: unknown object types {unknown}; expected KITTI types {KITTI_CLASSES}")
    return atomic_write_text(path, format_label(objects), fsync=fsync)


def objects_from_lidar_boxes(
    boxes_lidar: ArrayLike,
    names: ArrayLike,
    calib: KittiCalibration,
    scores: ArrayLike | None = None,
    bbox: ArrayLike | None = None,
    image_shape: tuple[int, int] | None = None,
    truncated: ArrayLike | None = None,
    occluded: ArrayLike | None = None,
) -> KittiObjects:
    """Objects for a label/result file from lidar boxes (e.g. a detector's predictions).

    Args:
        boxes_lidar: (M, 7) ``[x, y, z, l, w, h, yaw]`` in the lidar frame.
        names: (M,) KITTI type names.
        calib: the frame's calibration.
        scores: (M,) detection scores, or None for ground truth.
        bbox: (M, 4) image boxes; by default the projected 3D box's rectangle, clipped to
            ``image_shape`` when given.
        truncated, occluded: by default -1 (unknown), as the devkit asks of result files.
    """
    boxes_lidar = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    m = len(boxes_lidar)
    cam = calib.boxes_lidar_to_camera(boxes_lidar)
    if bbox is None:
        bbox, _ = project_boxes_to_image(boxes_lidar, calib.lidar_to_image_matrix, image_shape)
    return KittiObjects(
        names=np.asarray(names, dtype="<U16").reshape(m),
        truncated=np.full(m, -1, np.float32) if truncated is None else np.asarray(truncated, np.float32),
        occluded=np.full(m, -1, np.int32) if occluded is None else np.asarray(occluded, np.int32),
        alpha=observation_angle(cam).astype(np.float32),
        bbox=np.asarray(bbox, dtype=np.float32).reshape(m, 4),
        boxes_camera=cam,
        scores=None if scores is None else np.asarray(scores, dtype=np.float32).reshape(m),
    )


def kitti_difficulty(bbox: ArrayLike, occluded: ArrayLike, truncated: ArrayLike) -> NDArray[np.int32]:
    """Difficulty by the devkit's rules: 0 easy, 1 moderate, 2 hard, -1 none of them.

    An object is at the easiest level whose three limits it meets: image-box height
    ≥ 40 / 25 / 25 px, occlusion ≤ 0 / 1 / 2, truncation ≤ 0.15 / 0.30 / 0.50.
    """
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    height = bbox[:, 3] - bbox[:, 1]
    occluded = np.asarray(occluded)
    truncated = np.asarray(truncated, dtype=np.float64)
    level = np.full(len(bbox), -1, dtype=np.int32)
    for lvl in (2, 1, 0):  # hardest first, so the easiest level met wins
        ok = (
            (height >= _MIN_HEIGHT[lvl])
            & (occluded <= _MAX_OCCLUSION[lvl])
            & (truncated <= _MAX_TRUNCATION[lvl])
        )
        level[ok] = lvl
    return level


# --------------------------------------------------------------------------------------------------
# poses and split files


def read_pose(path: str | os.PathLike) -> NDArray[np.float64]:
    """Read a ``pose/*.txt`` file (12 floats, 3×4 row-major lidar → world) as a (4, 4) matrix."""
    path = Path(path)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as err:
        raise KittiFormatError(f"{path}: pose has a value that is not a number ({err})") from None
    if values.size != 12 or not np.isfinite(values).all():
        raise KittiFormatError(f"{path}: pose must be 12 finite numbers (3×4), got {values.size}")
    pose = np.eye(4)
    pose[:3] = values.reshape(3, 4)
    return pose


def write_pose(path: str | os.PathLike, pose: ArrayLike, fsync: bool = True) -> Path:
    """Write a (4, 4) or (3, 4) lidar → world pose as one line of 12 floats (atomically)."""
    m = np.asarray(pose, dtype=np.float64)[:3, :4]
    return atomic_write_text(path, " ".join(f"{v:.9e}" for v in m.ravel()) + "\n", fsync=fsync)


def read_split(root: str | os.PathLike, name: str) -> list[str]:
    """Frame ids listed in ``ROOT/ImageSets/{name}.txt``."""
    path = Path(root) / "ImageSets" / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file does not exist (expected ROOT/ImageSets/{name}.txt)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_split(root: str | os.PathLike, name: str, frame_ids: list[str] | list[int]) -> Path:
    """Write ``ROOT/ImageSets/{name}.txt`` (atomically)."""
    text = "".join(frame_name(f) + "\n" for f in frame_ids)
    return atomic_write_text(Path(root) / "ImageSets" / f"{name}.txt", text)


def list_frames(root: str | os.PathLike, split: str = "training") -> list[str]:
    """Ids of all scans in ``ROOT/{split}/velodyne``, sorted."""
    folder = Path(root) / split / "velodyne"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no velodyne folder; is {root} a KITTI-layout root?")
    return sorted(p.stem for p in folder.glob("*.bin"))


def _png_shape(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG header, without decoding the image; None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(height), int(width)


# --------------------------------------------------------------------------------------------------
# frames


@dataclass(kw_only=True)
class KittiFrame(Frame):
    """A KITTI frame: :class:`Frame` plus the label file's image-side fields.

    All per-object arrays hold the M real objects, DontCare excluded, in file order.

    Attributes:
        boxes_lidar: (M, 7) alias of ``boxes``.
        bbox: (M, 4) float32 image-2 boxes ``[left, top, right, bottom]``.
        truncated: (M,) float32; occluded: (M,) int32; alpha: (M,) float32.
        boxes_camera: (M, 7) float64 ``[x, y, z, l, h, w, ry]`` as in the file (bottom centre).
        scores: (M,) float32 when the label file is a result file, else None.
        dontcare_bbox: (K, 4) float32 image boxes of the DontCare regions.
        calib: the frame's :class:`KittiCalibration`.
        image_shape: ``(height, width)`` of ``image_2`` when the image exists, else None.
    """

    bbox: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    truncated: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0,), np.float32))
    occluded: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    alpha: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0,), np.float32))
    boxes_camera: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 7), np.float64))
    scores: NDArray[np.float32] | None = None
    dontcare_bbox: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    calib: KittiCalibration
    image_shape: tuple[int, int] | None = None

    @property
    def boxes_lidar(self) -> NDArray[np.float32]:
        """(M, 7) float32 boxes in the lidar frame (the same array as ``boxes``)."""
        return self.boxes

    def objects(self) -> KittiObjects:
        """The frame's objects (DontCare excluded) for :func:`write_label`."""
        return KittiObjects(
            names=self.names,
            truncated=self.truncated,
            occluded=self.occluded,
            alpha=self.alpha,
            bbox=self.bbox,
            boxes_camera=self.boxes_camera,
            scores=self.scores,
        )


def load_frame(root: str | os.PathLike, frame_id: int | str, split: str = "training") -> KittiFrame:
    """Load one KITTI frame: scan, calibration and (where the split has labels) objects.

    Args:
        root: dataset root holding ``training/`` and/or ``testing/``.
        frame_id: ``"000123"`` or ``123``.
        split: ``"training"`` or ``"testing"`` (the folder name).

    Returns:
        A :class:`KittiFrame`: ``points`` (N, 4) float32 in the lidar frame, ``boxes_lidar`` (M, 7),
        ``names``, ``bbox`` (M, 4), ``difficulty`` (M,) and ``calib``. A split without a
        ``label_2`` folder (the test split) gives M = 0.

    Raises:
        FileNotFoundError: the root, split or frame does not exist (the message names the path).
        KittiFormatError: a file of the frame is malformed (the message names the file).
    """
    root = Path(root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"{split_dir}: no such folder; expected a KITTI root with {split}/velodyne, ..."
        )
    name = frame_name(frame_id)
    velo = frame_path(root, name, "velodyne", split)
    if not velo.is_file():
        raise FileNotFoundError(f"{velo}: frame {name} does not exist in {split_dir}")
    points = read_velodyne(velo)
    calib = read_calib(frame_path(root, name, "calib", split))

    label_path = frame_path(root, name, "label_2", split)
    if label_path.parent.is_dir():
        objects = read_label(label_path)
    else:
        objects = KittiObjects.empty()
    care = objects.names != "DontCare"
    dontcare_bbox = objects.bbox[~care]
    objects = objects.select(care)

    image_path = frame_path(root, name, "image_2", split)
    image_shape = _png_shape(image_path) if image_path.is_file() else None
    pose_path = frame_path(root, name, "pose", split)
    pose = read_pose(pose_path) if pose_path.is_file() else None

    return KittiFrame(
        frame_id=name,
        points=points,
        boxes=calib.boxes_camera_to_lidar(objects.boxes_camera).astype(np.float32),
        names=objects.names,
        difficulty=kitti_difficulty(objects.bbox, objects.occluded, objects.truncated),
        pose=pose,
        bbox=objects.bbox,
        truncated=objects.truncated,
        occluded=objects.occluded,
        alpha=objects.alpha,
        boxes_camera=objects.boxes_camera,
        scores=objects.scores,
        dontcare_bbox=dontcare_bbox,
        calib=calib,
        image_shape=image_shape,
    )
