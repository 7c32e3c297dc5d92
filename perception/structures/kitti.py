"""KITTI's typed values: calibration, label objects, and the per-frame record a ``Sample`` carries.

The file readers and writers are in :mod:`perception.data.kitti`; these types are here so that every
layer (datasets, metrics, writers, viewers) can share them without importing a reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.geometry.camera import (
    boxes_camera_to_lidar,
    boxes_lidar_to_camera,
    project_points,
    transform_points,
)

__all__ = ["KITTI_CLASSES", "KittiCalibration", "KittiObjects", "KittiRecord"]

KITTI_CLASSES: tuple[str, ...] = (
    "Car",
    "Van",
    "Truck",
    "Pedestrian",
    "Person_sitting",
    "Cyclist",
    "Tram",
    "Misc",
    "DontCare",
)
"""Object types the KITTI devkit defines; anything else in a label file is an error."""


def _homogeneous(m: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


@dataclass(frozen=True)
class KittiCalibration:
    """One frame's calibration. Matrices are float64.

    Attributes:
        P0, P1, P2, P3: (3, 4) projections from the rectified camera frame to each camera's pixels
            (P2 is the left colour camera, the one labels' 2D boxes refer to).
        R0_rect: (3, 3) rectifying rotation of the reference camera.
        Tr_velo_to_cam: (3, 4) lidar → (unrectified) reference camera.
        Tr_imu_to_velo: (3, 4) IMU → lidar, or None where the file has none.
    """

    P0: NDArray[np.float64]
    P1: NDArray[np.float64]
    P2: NDArray[np.float64]
    P3: NDArray[np.float64]
    R0_rect: NDArray[np.float64]
    Tr_velo_to_cam: NDArray[np.float64]
    Tr_imu_to_velo: NDArray[np.float64] | None = None

    @property
    def lidar_to_rect_matrix(self) -> NDArray[np.float64]:
        """(4, 4) lidar → rectified camera: ``R0_rect · Tr_velo_to_cam``."""
        return _homogeneous(self.R0_rect) @ _homogeneous(self.Tr_velo_to_cam)

    @property
    def rect_to_lidar_matrix(self) -> NDArray[np.float64]:
        """(4, 4) rectified camera → lidar (the inverse of ``lidar_to_rect_matrix``)."""
        return np.linalg.inv(self.lidar_to_rect_matrix)

    @property
    def lidar_to_image_matrix(self) -> NDArray[np.float64]:
        """(3, 4) lidar → image 2 pixels: ``P2 · R0_rect · Tr_velo_to_cam``."""
        return self.P2 @ self.lidar_to_rect_matrix

    def lidar_to_rect(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) lidar points → (N, 3) rectified camera coordinates."""
        return transform_points(xyz, self.lidar_to_rect_matrix)

    def rect_to_lidar(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) rectified camera points → (N, 3) lidar coordinates."""
        return transform_points(xyz, self.rect_to_lidar_matrix)

    # "camera" means the rectified camera frame, the one labels are in.
    lidar_to_camera = lidar_to_rect
    camera_to_lidar = rect_to_lidar

    def rect_to_image(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) rectified camera points → (N, 2) pixels of image 2 (meaningless for depth ≤ 0)."""
        return project_points(xyz, self.P2)[0]

    def lidar_to_image(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """(N, 3) lidar points → (N, 2) pixels of image 2 (meaningless for depth ≤ 0)."""
        return project_points(xyz, self.lidar_to_image_matrix)[0]

    def boxes_camera_to_lidar(self, boxes_camera: ArrayLike) -> NDArray[np.float64]:
        """(M, 7) camera boxes ``[x, y, z, l, h, w, ry]`` → (M, 7) lidar boxes."""
        return boxes_camera_to_lidar(boxes_camera, self.rect_to_lidar_matrix)

    def boxes_lidar_to_camera(self, boxes_lidar: ArrayLike) -> NDArray[np.float64]:
        """(M, 7) lidar boxes → (M, 7) camera boxes ``[x, y, z, l, h, w, ry]``."""
        return boxes_lidar_to_camera(boxes_lidar, self.lidar_to_rect_matrix)

    def to_text(self) -> str:
        """The calibration in the devkit's ``calib/*.txt`` format."""
        rows = [
            ("P0", self.P0),
            ("P1", self.P1),
            ("P2", self.P2),
            ("P3", self.P3),
            ("R0_rect", self.R0_rect),
            ("Tr_velo_to_cam", self.Tr_velo_to_cam),
        ]
        if self.Tr_imu_to_velo is not None:
            rows.append(("Tr_imu_to_velo", self.Tr_imu_to_velo))
        return "".join(f"{key}: " + " ".join(f"{v:.12e}" for v in m.ravel()) + "\n" for key, m in rows)


@dataclass
class KittiObjects:
    """The objects of one label file, as arrays of length M (DontCare rows included).

    Attributes:
        names: (M,) str type names, one of :data:`KITTI_CLASSES`.
        truncated: (M,) float32 in [0, 1] (-1 for DontCare and predictions).
        occluded: (M,) int32, 0 visible, 1 partly, 2 largely occluded, 3 unknown (-1 likewise).
        alpha: (M,) float32 observation angle, radians.
        bbox: (M, 4) float32 image-2 box ``[left, top, right, bottom]``, pixels.
        boxes_camera: (M, 7) float64 ``[x, y, z, l, h, w, ry]``: bottom centre in the rectified
            camera frame, extents, rotation about camera y.
        scores: (M,) float32 detection scores (result files), or None for ground truth.
    """

    names: NDArray[np.str_]
    truncated: NDArray[np.float32]
    occluded: NDArray[np.int32]
    alpha: NDArray[np.float32]
    bbox: NDArray[np.float32]
    boxes_camera: NDArray[np.float64]
    scores: NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def select(self, mask: ArrayLike) -> KittiObjects:
        """The objects where ``mask`` (bool (M,) or indices) selects."""
        return KittiObjects(
            names=self.names[mask],
            truncated=self.truncated[mask],
            occluded=self.occluded[mask],
            alpha=self.alpha[mask],
            bbox=self.bbox[mask],
            boxes_camera=self.boxes_camera[mask],
            scores=None if self.scores is None else self.scores[mask],
        )

    @classmethod
    def empty(cls, with_scores: bool = False) -> KittiObjects:
        return cls(
            names=np.zeros((0,), dtype="<U16"),
            truncated=np.zeros((0,), np.float32),
            occluded=np.zeros((0,), np.int32),
            alpha=np.zeros((0,), np.float32),
            bbox=np.zeros((0, 4), np.float32),
            boxes_camera=np.zeros((0, 7), np.float64),
            scores=np.zeros((0,), np.float32) if with_scores else None,
        )


@dataclass(frozen=True, kw_only=True)
class KittiRecord:
    """What a KITTI(-layout) sample carries besides its points and training boxes.

    Everything needed to write its predictions as devkit result files and to score them, read from
    the frame's files before any transform (augmentation never touches it).

    Attributes:
        calib: the frame's :class:`KittiCalibration`.
        image_shape: ``(height, width)`` of ``image_2`` in pixels, or None where the image is absent
            (result files then clip 2D boxes to KITTI's usual 375 × 1242).
        objects: every labelled object of the frame in file order, all types (Van, Truck, Misc,
            Person_sitting, ... as well as the training classes), DontCare excluded.
        boxes_lidar: (M, 7) float32 ``[x, y, z, l, w, h, yaw]`` of ``objects`` in the lidar frame.
        difficulty: (M,) int32 KITTI difficulty of ``objects`` (0 easy, 1 moderate, 2 hard, -1 none).
        dontcare_bbox: (K, 4) float32 image boxes of the frame's DontCare regions.
    """

    calib: KittiCalibration
    image_shape: tuple[int, int] | None = None
    objects: KittiObjects = field(default_factory=lambda: KittiObjects.empty())
    boxes_lidar: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    difficulty: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    dontcare_bbox: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def ground_truth(self) -> dict[str, NDArray]:
        """The objects as :func:`perception.eval.kitti.evaluate` takes ground truth (DontCare regions too)."""
        objects = self.objects
        return {
            "names": objects.names,
            "truncated": objects.truncated,
            "occluded": objects.occluded,
            "alpha": objects.alpha,
            "bbox": objects.bbox,
            "boxes_camera": objects.boxes_camera,
            "boxes_lidar": self.boxes_lidar,
            "difficulty": self.difficulty,
            "dontcare_bbox": self.dontcare_bbox,
        }
