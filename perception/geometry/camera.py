"""Camera ↔ lidar conversions of points and boxes, for rectified pinhole cameras (KITTI style).

Camera boxes use the KITTI label convention, stored as (M, 7) ``[x, y, z, l, h, w, ry]``:
``(x, y, z)`` the *bottom* centre in the rectified camera frame (x right, y down, z forward),
``l, h, w`` the extents, ``ry`` the rotation about the camera's y axis (0 = facing camera +x).

Lidar boxes follow the project convention ``[x, y, z, l, w, h, yaw]`` (centre, yaw about +z).

The conversion is the one the KITTI tooling uses (OpenPCDet, mmdetection3d): the bottom centre is
mapped with the rigid transform and raised by h/2 along lidar +z, and ``yaw = -ry - π/2``. It is
exact both ways (a round trip returns the same numbers), which lets predictions be written as label
files and read back unchanged.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.geometry.boxes import box_corners, wrap_angle

__all__ = [
    "boxes_camera_to_lidar",
    "boxes_lidar_to_camera",
    "observation_angle",
    "project_boxes_to_image",
    "project_points",
    "transform_points",
]


def transform_points(points: ArrayLike, transform: ArrayLike) -> NDArray[np.float64]:
    """Apply a (4, 4) or (3, 4) rigid/affine transform to (N, 3) points; returns (N, 3) float64."""
    pts = np.asarray(points, dtype=np.float64)[..., :3]
    t = np.asarray(transform, dtype=np.float64)
    return pts @ t[:3, :3].T + t[:3, 3]


def project_points(
    points: ArrayLike, projection: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Project (N, 3) points with a (3, 4) matrix.

    Returns:
        ``(uv, depth)``: (N, 2) pixel coordinates and (N,) depth (the third homogeneous
        coordinate). Points with depth ≤ 0 are behind the camera; their uv is meaningless.
    """
    pts = np.asarray(points, dtype=np.float64)[..., :3]
    p = np.asarray(projection, dtype=np.float64)
    hom = pts @ p[:, :3].T + p[:, 3]
    depth = hom[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = hom[:, :2] / depth[:, None]
    return uv, depth


def boxes_camera_to_lidar(boxes_camera: ArrayLike, rect_to_lidar: ArrayLike) -> NDArray[np.float64]:
    """(M, 7) camera boxes ``[x, y, z, l, h, w, ry]`` → (M, 7) lidar boxes ``[x, y, z, l, w, h, yaw]``.

    ``rect_to_lidar`` is the (4, 4) transform from the rectified camera frame to the lidar frame.
    """
    cam = np.asarray(boxes_camera, dtype=np.float64).reshape(-1, 7)
    xyz = transform_points(cam[:, :3], rect_to_lidar)
    l, h, w, ry = cam[:, 3], cam[:, 4], cam[:, 5], cam[:, 6]
    xyz[:, 2] += h / 2.0
    yaw = wrap_angle(-ry - np.pi / 2.0)
    return np.column_stack([xyz, l, w, h, yaw])


def boxes_lidar_to_camera(boxes_lidar: ArrayLike, lidar_to_rect: ArrayLike) -> NDArray[np.float64]:
    """(M, 7) lidar boxes → (M, 7) camera boxes ``[x, y, z, l, h, w, ry]`` (inverse of the above)."""
    lid = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    bottom = lid[:, :3].copy()
    bottom[:, 2] -= lid[:, 5] / 2.0
    xyz = transform_points(bottom, lidar_to_rect)
    l, w, h, yaw = lid[:, 3], lid[:, 4], lid[:, 5], lid[:, 6]
    ry = wrap_angle(-yaw - np.pi / 2.0)
    return np.column_stack([xyz, l, h, w, ry])


def observation_angle(boxes_camera: ArrayLike) -> NDArray[np.float64]:
    """KITTI's ``alpha``: ``ry`` minus the azimuth of the box centre seen from the camera, in [-π, π)."""
    cam = np.asarray(boxes_camera, dtype=np.float64).reshape(-1, 7)
    return wrap_angle(cam[:, 6] - np.arctan2(cam[:, 0], cam[:, 2]))


def project_boxes_to_image(
    boxes_lidar: ArrayLike,
    lidar_to_image: ArrayLike,
    image_shape: tuple[int, int] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """2D image boxes of 3D lidar boxes: the bounding rectangle of the projected corners.

    Args:
        boxes_lidar: (M, 7) lidar boxes.
        lidar_to_image: (3, 4) projection from lidar coordinates to pixels.
        image_shape: ``(height, width)``; when given, rectangles are clipped to the image.

    Returns:
        ``(bbox, valid)``: (M, 4) ``[left, top, right, bottom]`` pixels, and (M,) bool, False for a
        box with a corner behind the camera (its rectangle is then not meaningful) or, with
        ``image_shape``, one whose rectangle falls entirely outside the image.
    """
    corners = box_corners(boxes_lidar)  # (M, 8, 3)
    m = corners.shape[0]
    uv, depth = project_points(corners.reshape(-1, 3), lidar_to_image)
    uv, depth = uv.reshape(m, 8, 2), depth.reshape(m, 8)
    valid = np.all(depth > 1e-3, axis=1)
    safe = np.where(valid[:, None, None], uv, 0.0)
    bbox = np.concatenate([safe.min(axis=1), safe.max(axis=1)], axis=1)
    if image_shape is not None:
        height, width = image_shape
        inside = (
            (bbox[:, 2] >= 0) & (bbox[:, 0] <= width - 1) & (bbox[:, 3] >= 0) & (bbox[:, 1] <= height - 1)
        )
        valid &= inside
        bbox[:, [0, 2]] = np.clip(bbox[:, [0, 2]], 0, width - 1)
        bbox[:, [1, 3]] = np.clip(bbox[:, [1, 3]], 0, height - 1)
    return bbox, valid
