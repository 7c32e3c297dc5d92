"""The virtual KITTI camera: calibration, and each object's 2D box, truncation and alpha."""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from perception.data.kitti import KittiCalibration
from perception.geometry.boxes import box_corners
from perception.geometry.camera import project_points

__all__ = ["base_calibration", "image_boxes", "sample_calibration"]

# A real KITTI object-benchmark calibration (the colour camera P2 looks forward, 1242 × 375 pixels).
_F, _CU, _CV = 707.0493, 604.0814, 180.5066
_P = {
    "P0": [[_F, 0.0, _CU, 0.0], [0.0, _F, _CV, 0.0], [0.0, 0.0, 1.0, 0.0]],
    "P1": [[_F, 0.0, _CU, -379.7842], [0.0, _F, _CV, 0.0], [0.0, 0.0, 1.0, 0.0]],
    "P2": [[_F, 0.0, _CU, 45.75831], [0.0, _F, _CV, -0.3454157], [0.0, 0.0, 1.0, 0.004981016]],
    "P3": [[_F, 0.0, _CU, -334.1081], [0.0, _F, _CV, 2.33066], [0.0, 0.0, 1.0, 0.003201153]],
}
_R0_RECT = [
    [0.9999128, 0.01009263, -0.008511932],
    [-0.01012729, 0.9999406, -0.004037671],
    [0.008470675, 0.004123522, 0.9999556],
]
_TR_VELO_TO_CAM = [
    [0.006927964, -0.9999722, -0.002757829, -0.02457729],
    [-0.001162982, 0.002749836, -0.9999955, -0.06127237],
    [0.9999753, 0.006931141, -0.001143899, -0.3321029],
]
_TR_IMU_TO_VELO = [
    [0.9999976, 0.0007553071, -0.002035826, -0.8086759],
    [-0.0007854027, 0.9998898, -0.01482298, 0.3195559],
    [0.002024406, 0.01482454, 0.9998881, -0.7997231],
]


def base_calibration() -> KittiCalibration:
    """The unperturbed calibration (KITTI's, drive 2011_09_26)."""
    return KittiCalibration(
        **{k: np.array(v, dtype=np.float64) for k, v in _P.items()},
        R0_rect=np.array(_R0_RECT),
        Tr_velo_to_cam=np.array(_TR_VELO_TO_CAM),
        Tr_imu_to_velo=np.array(_TR_IMU_TO_VELO),
    )


def _small_rotation(rng: np.random.Generator, sigma: float) -> NDArray[np.float64]:
    """A rotation by a random axis-angle with components ~ N(0, sigma) (Rodrigues)."""
    w = rng.normal(0.0, sigma, 3)
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3)
    k = w / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def sample_calibration(rng: np.random.Generator, jitter: bool) -> KittiCalibration:
    """KITTI's calibration, with the lidar → camera extrinsics perturbed by ~0.1° and ~1 cm if ``jitter``."""
    calib = base_calibration()
    if not jitter:
        return calib
    tr = calib.Tr_velo_to_cam.copy()
    tr[:, :3] = _small_rotation(rng, np.deg2rad(0.1)) @ tr[:, :3]
    tr[:, 3] += rng.normal(0.0, 0.01, 3)
    return dataclasses.replace(calib, Tr_velo_to_cam=tr)


def image_boxes(
    boxes_lidar: NDArray, calib: KittiCalibration, image_shape: tuple[int, int]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """2D boxes and truncation of (A, 7) lidar boxes seen by camera 2.

    Returns:
        ``(bbox, truncation, in_front)``: (A, 4) ``[left, top, right, bottom]`` clipped to the image;
        (A,) truncation in [0, 1], the fraction of the projected box outside the image (KITTI's
        meaning), or for a box crossing the camera plane the fraction of its volume (sampled on a
        5³ grid) that is behind the camera or projects outside; (A,) whether the box's centre is in
        front of the camera.
    """
    height, width = image_shape
    boxes = np.asarray(boxes_lidar, dtype=np.float64).reshape(-1, 7)
    a = len(boxes)
    bbox = np.zeros((a, 4))
    trunc = np.ones(a)
    if a == 0:
        return bbox, trunc, np.zeros(0, bool)
    proj = calib.lidar_to_image_matrix
    _, centre_depth = project_points(boxes[:, :3], proj)
    in_front = centre_depth > 0.5
    corners = box_corners(boxes)
    uv, depth = project_points(corners.reshape(-1, 3), proj)
    uv, depth = uv.reshape(a, 8, 2), depth.reshape(a, 8)
    g = (np.arange(5) + 0.5) / 5 - 0.5
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    for i in np.flatnonzero(in_front):
        if np.all(depth[i] > 0.1):
            lo, hi = uv[i].min(0), uv[i].max(0)
            full = max((hi[0] - lo[0]) * (hi[1] - lo[1]), 1e-9)
            clo = np.clip(lo, 0, [width - 1, height - 1])
            chi = np.clip(hi, 0, [width - 1, height - 1])
            inside = max(chi[0] - clo[0], 0.0) * max(chi[1] - clo[1], 0.0)
            trunc[i] = float(np.clip(1.0 - inside / full, 0.0, 1.0))
            bbox[i] = [clo[0], clo[1], chi[0], chi[1]]
        else:
            l, w, h, yaw = boxes[i, 3:7]
            c, s = np.cos(yaw), np.sin(yaw)
            local = grid * [l, w, h]
            pts = np.stack(
                [c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], 1
            )
            pts = np.concatenate([pts + boxes[i, :3], corners[i]])
            puv, pdepth = project_points(pts, proj)
            ok = pdepth > 0.1
            vis = (
                ok
                & (puv[:, 0] >= 0)
                & (puv[:, 0] <= width - 1)
                & (puv[:, 1] >= 0)
                & (puv[:, 1] <= height - 1)
            )
            trunc[i] = 1.0 - vis.mean()
            if ok.any():
                lo, hi = puv[ok].min(0), puv[ok].max(0)
                bbox[i] = [*np.clip(lo, 0, [width - 1, height - 1]), *np.clip(hi, 0, [width - 1, height - 1])]
    return bbox, trunc, in_front
