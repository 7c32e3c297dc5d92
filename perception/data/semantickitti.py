"""SemanticKITTI files (semantic-kitti-api's layout), both ways, and the segmentation dataset.

Layout read and written::

    ROOT/sequences/NN/
      velodyne/NNNNNN.bin      float32 x, y, z, remission per point (lidar frame)
      labels/NNNNNN.label      uint32 per point: semantic id in the low 16 bits, instance id in the high 16
      poses.txt                one 3×4 row-major matrix a scan: its left-camera pose in the camera frame
                               of scan 0
      calib.txt                P0..P3 (3×4 projections), Tr (3×4 velodyne → camera 0)
      times.txt                one timestamp a scan, seconds from the sequence's start

Poses are read as the official tools compute them, in the lidar frame: ``inv(Tr) @ P @ Tr`` (scan →
scan 0), and :func:`write_poses` inverts that exactly. Raw label ids go through a
:class:`~perception.structures.segmentation.LabelMap` (``learning_map``) to training ids.

Every malformed file raises :class:`SemanticKittiFormatError` (a ``ValueError``) naming the file and
the problem; a raw id the class map does not know raises its
:class:`~perception.structures.segmentation.UnknownLabelError`. Points with a non-finite coordinate
are dropped with their labels, with a logged count (the only repair made).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.data.datasets import EpochDataset
from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.data.transforms import Transform
from perception.structures import Sample, ScanRecord
from perception.structures.segmentation import LabelMap
from perception.structures.segmentation import label_map as resolve_label_map

__all__ = [
    "OFFICIAL_SPLITS",
    "SemanticKittiCalib",
    "SemanticKittiDataset",
    "SemanticKittiFormatError",
    "list_scans",
    "missing_data_message",
    "read_calib",
    "read_labels",
    "read_poses",
    "read_scan",
    "read_times",
    "scan_path",
    "write_calib",
    "write_labels",
    "write_poses",
    "write_scan",
    "write_times",
]

log = logging.getLogger(__name__)

OFFICIAL_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{i:02d}" for i in range(11, 22)),
}
"""SemanticKITTI's official sequences: train 00-07, 09, 10; val 08; test 11-21 (no labels)."""


class SemanticKittiFormatError(ValueError):
    """A SemanticKITTI file is malformed or missing a part; the message names the file."""


def missing_data_message(root: str | os.PathLike, sequence: str | None = None) -> str:
    """What to say when ``root`` (or one of its sequences) holds no data: where data goes, how to get it."""
    where = Path(root) / "sequences" / (sequence if sequence is not None else "NN")
    return (
        f"{where}: no SemanticKITTI data here (expected {where}/velodyne/NNNNNN.bin). SemanticKITTI "
        "goes in data/semantickitti/sequences/NN/{velodyne,labels} with poses.txt, calib.txt and "
        "times.txt (see docs/segmentation_data.md). For the synthetic default run "
        "`python tools/make_synthetic.py --layout semantickitti --out data/synthetic_seg` (the "
        "SegmentationDataModule also generates it into its default root data/synthetic_seg)."
    )


def scan_path(root: str | os.PathLike, sequence: str, scan: str | int, kind: str = "velodyne") -> Path:
    """``ROOT/sequences/SS/velodyne/NNNNNN.bin`` (``kind="labels"``: ``labels/NNNNNN.label``)."""
    name = f"{scan:06d}" if isinstance(scan, (int, np.integer)) else str(scan)
    ext = {"velodyne": ".bin", "labels": ".label"}[kind]
    return Path(root) / "sequences" / sequence / kind / f"{name}{ext}"


# --------------------------------------------------------------------------------------------------
# scans and labels


def read_scan(path: str | os.PathLike) -> NDArray[np.float32]:
    """A ``velodyne/*.bin`` scan as stored: (N, 4) float32 x, y, z, remission (lidar frame).

    Raises:
        FileNotFoundError: the file does not exist.
        SemanticKittiFormatError: it is empty, or its size is not a multiple of 16 bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scan does not exist")
    size = path.stat().st_size
    if size == 0:
        raise SemanticKittiFormatError(f"{path}: scan is empty (0 bytes)")
    if size % 16:
        raise SemanticKittiFormatError(
            f"{path}: size {size} bytes is not a multiple of 16 (4 float32 a point); the file is corrupt"
        )
    return np.fromfile(path, dtype="<f4").reshape(-1, 4).astype(np.float32, copy=False)


def write_scan(path: str | os.PathLike, points: ArrayLike, fsync: bool = True) -> Path:
    """Write (N, 4) float32 x, y, z, remission as a ``.bin`` scan (atomically)."""
    pts = np.asarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"{path}: points must be (N, 4) x, y, z, remission, got {pts.shape}")
    return atomic_write_bytes(path, pts.tobytes(), fsync=fsync)


def read_labels(path: str | os.PathLike, num_points: int | None = None) -> NDArray[np.uint32]:
    """A ``labels/*.label`` file: (N,) uint32 words (semantic id ``& 0xFFFF``, instance id ``>> 16``).

    Args:
        num_points: the scan's point count; the file must hold exactly this many labels.

    Raises:
        FileNotFoundError: the file does not exist.
        SemanticKittiFormatError: its size is not a multiple of 4 bytes, or it holds a different
            number of labels than the scan has points (both counts named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file does not exist")
    size = path.stat().st_size
    if size % 4:
        raise SemanticKittiFormatError(
            f"{path}: size {size} bytes is not a multiple of 4 (one uint32 a point); the file is corrupt"
        )
    labels = np.fromfile(path, dtype="<u4").astype(np.uint32, copy=False)
    if num_points is not None and len(labels) != num_points:
        raise SemanticKittiFormatError(
            f"{path}: holds {len(labels)} labels but its scan has {num_points} points"
        )
    return labels


def write_labels(
    path: str | os.PathLike, semantic: ArrayLike, instance: ArrayLike | None = None, fsync: bool = True
) -> Path:
    """Write a ``.label`` file (atomically): ``semantic`` (N,) raw ids < 2^16, ``instance`` (N,) ids
    < 2^16 in the high bits (default 0). ``semantic`` may also be full uint32 words (no ``instance``)."""
    sem = np.asarray(semantic)
    if instance is None:
        words = sem.astype("<u4")
    else:
        inst = np.asarray(instance)
        if sem.shape != inst.shape:
            raise ValueError(f"{path}: semantic {sem.shape} and instance {inst.shape} ids differ in shape")
        if sem.size and (sem.min() < 0 or sem.max() > 0xFFFF or inst.min() < 0 or inst.max() > 0xFFFF):
            raise ValueError(f"{path}: semantic and instance ids must be in [0, 65535]")
        words = (inst.astype(np.uint32) << np.uint32(16)) | sem.astype(np.uint32)
    if words.ndim != 1:
        raise ValueError(f"{path}: labels must be (N,), got {words.shape}")
    return atomic_write_bytes(path, words.astype("<u4").tobytes(), fsync=fsync)


# --------------------------------------------------------------------------------------------------
# calibration, poses, times


@dataclass(frozen=True)
class SemanticKittiCalib:
    """A sequence's ``calib.txt``.

    Attributes:
        P: (4, 3, 4) float64 projection matrices P0..P3 (rectified camera 0 → image i).
        Tr: (4, 4) float64 velodyne → camera 0 (homogeneous).
    """

    P: NDArray[np.float64]
    Tr: NDArray[np.float64]


def _numbers(path: Path, lineno: int, key: str, text: str, count: int) -> NDArray[np.float64]:
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as err:
        raise SemanticKittiFormatError(
            f"{path}:{lineno}: {key} has a value that is not a number ({err})"
        ) from None
    if values.size != count or not np.isfinite(values).all():
        raise SemanticKittiFormatError(
            f"{path}:{lineno}: {key} must be {count} finite numbers, got {values.size}"
        )
    return values


def read_calib(path: str | os.PathLike) -> SemanticKittiCalib:
    """Read a sequence's ``calib.txt`` (``P0:`` .. ``P3:``, ``Tr:``, 12 numbers each).

    Raises:
        FileNotFoundError: the file does not exist.
        SemanticKittiFormatError: a matrix is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file does not exist")
    found: dict[str, NDArray[np.float64]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        key, sep, rest = line.partition(":")
        key = key.strip()
        if sep and key in ("P0", "P1", "P2", "P3", "Tr"):
            found[key] = _numbers(path, lineno, key, rest, 12).reshape(3, 4)
    missing = [k for k in ("P0", "P1", "P2", "P3", "Tr") if k not in found]
    if missing:
        raise SemanticKittiFormatError(f"{path}: calibration is missing {', '.join(missing)}")
    tr = np.eye(4)
    tr[:3] = found["Tr"]
    return SemanticKittiCalib(P=np.stack([found[f"P{i}"] for i in range(4)]), Tr=tr)


def _row(m: NDArray) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(m, np.float64)[:3, :4].reshape(-1))


def write_calib(path: str | os.PathLike, calib: SemanticKittiCalib, fsync: bool = True) -> Path:
    """Write ``calib.txt`` (atomically); numbers in full precision, so they read back exactly."""
    lines = [f"P{i}: {_row(calib.P[i])}" for i in range(4)] + [f"Tr: {_row(calib.Tr)}"]
    return atomic_write_text(path, "\n".join(lines) + "\n", fsync=fsync)


def read_poses(path: str | os.PathLike, calib: SemanticKittiCalib) -> NDArray[np.float64]:
    """(S, 4, 4) lidar-frame poses (scan → scan 0) from ``poses.txt``: ``inv(Tr) @ P @ Tr``, as
    semantic-kitti-api's ``parse_poses`` computes them.

    Raises:
        FileNotFoundError: the file does not exist.
        SemanticKittiFormatError: a line does not hold 12 finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: poses file does not exist")
    tr, tr_inv = calib.Tr, np.linalg.inv(calib.Tr)
    poses = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        p = np.eye(4)
        p[:3] = _numbers(path, lineno, "pose", line, 12).reshape(3, 4)
        poses.append(tr_inv @ p @ tr)
    return np.array(poses, dtype=np.float64).reshape(-1, 4, 4)


def write_poses(
    path: str | os.PathLike, poses: ArrayLike, calib: SemanticKittiCalib, fsync: bool = True
) -> Path:
    """Write (S, 4, 4) lidar-frame poses (scan → scan 0) as ``poses.txt`` in the camera-frame
    convention (``Tr @ pose @ inv(Tr)``), so :func:`read_poses` gives them back (atomically)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    tr, tr_inv = calib.Tr, np.linalg.inv(calib.Tr)
    text = "".join(_row(tr @ p @ tr_inv) + "\n" for p in poses)
    return atomic_write_text(path, text, fsync=fsync)


def read_times(path: str | os.PathLike) -> NDArray[np.float64]:
    """(S,) float64 seconds from ``times.txt``, one a scan."""
    path = Path(path)
    try:
        return np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
    except ValueError as err:
        raise SemanticKittiFormatError(f"{path}: a time is not a number ({err})") from None


def write_times(path: str | os.PathLike, seconds: ArrayLike, fsync: bool = True) -> Path:
    """Write ``times.txt`` (atomically), one time a line in the official ``%e`` format."""
    text = "".join(f"{float(t):.6e}\n" for t in np.asarray(seconds, np.float64).reshape(-1))
    return atomic_write_text(path, text, fsync=fsync)


def list_scans(root: str | os.PathLike, sequence: str) -> list[str]:
    """The scan names (``"000000"``, ...) of a sequence, sorted.

    Raises:
        FileNotFoundError: the sequence has no ``velodyne`` folder (the message says where data goes).
    """
    velodyne = Path(root) / "sequences" / sequence / "velodyne"
    if not velodyne.is_dir():
        raise FileNotFoundError(missing_data_message(root, sequence))
    return sorted(p.stem for p in velodyne.glob("*.bin"))


# --------------------------------------------------------------------------------------------------
# the dataset


class SemanticKittiDataset(EpochDataset):
    """SemanticKITTI-layout scans as :class:`~perception.structures.Sample`\\ s for segmentation.

    Args:
        root: the dataset root (``ROOT/sequences/NN/...``).
        sequences: sequence folder names (``["00", "01"]``; ints are zero-padded to two digits).
        label_map: the class map, a name (``"semantic-kitti"``, ``"synthetic"``), a YAML path or a
            :class:`~perception.structures.segmentation.LabelMap`.
        transforms: applied in order with the sample's generator (a list or one transform).
        seed: augmentation seed (with the epoch and index, see :mod:`perception.data.datasets`).
        with_labels: read ``labels/`` (True), or not (False: the test split; ``point_labels`` is
            None); None: True when every sequence has a ``labels`` folder, False when none has.
        max_scans: keep only the first this many scans (in sequence order), for quick runs.

    A sample's ``frame_id`` is ``"NN/NNNNNN"``, its ``points`` (N, 4) float32 x, y, z, remission,
    its ``point_labels`` (N,) int64 training ids (0 ignored), its ``record`` a
    :class:`~perception.structures.ScanRecord` (sequence, scan, points in the file, lidar pose).

    Raises:
        FileNotFoundError: the root or a sequence is missing (the message says where data goes
            and which command makes synthetic data); a labels folder is missing with ``with_labels``.
        SemanticKittiFormatError: a sequence's ``poses.txt`` has fewer poses than it has scans, or a
            scan / label file is malformed (when read).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        sequences: Sequence[str | int],
        label_map: str | LabelMap = "semantic-kitti",
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        with_labels: bool | None = True,
        max_scans: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / "sequences").is_dir():
            raise FileNotFoundError(missing_data_message(self.root))
        self.sequences = [f"{s:02d}" if isinstance(s, (int, np.integer)) else str(s) for s in sequences]
        self.split = ",".join(self.sequences)
        self.label_map = resolve_label_map(label_map)
        has_labels = [(self.root / "sequences" / s / "labels").is_dir() for s in self.sequences]
        if with_labels is None:
            if any(has_labels) and not all(has_labels):
                unlabelled = [s for s, h in zip(self.sequences, has_labels, strict=True) if not h]
                raise FileNotFoundError(
                    f"{self.root}: sequences {unlabelled} have no "
                    "labels folder while the others do; pass with_labels explicitly"
                )
            with_labels = all(has_labels) and bool(has_labels)
        self.with_labels = bool(with_labels)
        self.frame_ids: list[str] = []
        self._poses: list[NDArray[np.float64] | None] = []  # per frame
        for seq, labelled in zip(self.sequences, has_labels, strict=True):
            scans = list_scans(self.root, seq)
            if self.with_labels and not labelled:
                raise FileNotFoundError(
                    f"{self.root / 'sequences' / seq / 'labels'}: no labels folder (a test sequence? "
                    "use with_labels=False)"
                )
            poses = self._read_sequence_poses(seq, scans)
            self._poses += [None] * len(scans) if poses is None else list(poses[: len(scans)])
            self.frame_ids += [f"{seq}/{s}" for s in scans]
        if max_scans is not None:
            self.frame_ids = self.frame_ids[: int(max_scans)]
            self._poses = self._poses[: int(max_scans)]
        self._init_transforms(transforms, seed)

    def _read_sequence_poses(self, seq: str, scans: list[str]) -> NDArray[np.float64] | None:
        """The sequence's lidar poses, one a scan in order (None without a ``poses.txt``)."""
        folder = self.root / "sequences" / seq
        if not (folder / "poses.txt").is_file():
            return None
        poses = read_poses(folder / "poses.txt", read_calib(folder / "calib.txt"))
        if len(poses) < len(scans):
            raise SemanticKittiFormatError(
                f"{folder / 'poses.txt'}: {len(poses)} poses for {len(scans)} scans; scan "
                f"{scans[len(poses)]} and later have no pose line"
            )
        return poses

    def load(self, index: int) -> Sample:
        """Sample ``index`` as read, before any transform."""
        frame_id = self.frame_ids[index]
        seq, scan = frame_id.split("/")
        path = scan_path(self.root, seq, scan)
        points = read_scan(path)
        num_points = len(points)
        point_labels = None
        if self.with_labels:
            label_path = scan_path(self.root, seq, scan, "labels")
            raw = read_labels(label_path, num_points)
            point_labels = self.label_map.train_ids(raw, source=str(label_path))
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            log.warning(
                "%s: dropped %d of %d points with NaN or infinite values", path, (~finite).sum(), num_points
            )
            points = points[finite]
            point_labels = None if point_labels is None else point_labels[finite]
        return Sample(
            frame_id=frame_id,
            points=np.ascontiguousarray(points),
            point_labels=point_labels,
            record=ScanRecord(sequence=seq, scan=scan, num_points=num_points, pose=self._poses[index]),
        )

    def __repr__(self) -> str:
        return (
            f"SemanticKittiDataset({str(self.root)!r}, sequences={self.sequences}, scans={len(self)}, "
            f"label_map={self.label_map.name!r}, transform={self.transform!r})"
        )
