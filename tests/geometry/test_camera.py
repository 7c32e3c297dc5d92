"""Camera ↔ lidar box conversion and projection."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.geometry import (
    box_corners,
    boxes_camera_to_lidar,
    boxes_lidar_to_camera,
    observation_angle,
    project_boxes_to_image,
    project_points,
    transform_points,
)

# The real KITTI calibration of frame 000000 (R0_rect · Tr_velo_to_cam and P2).
R0 = np.array(
    [
        [9.999128e-01, 1.009263e-02, -8.511932e-03],
        [-1.012729e-02, 9.999406e-01, -4.037671e-03],
        [8.470675e-03, 4.123522e-03, 9.999556e-01],
    ]
)
TR = np.array(
    [
        [6.927964e-03, -9.999722e-01, -2.757829e-03, -2.457729e-02],
        [-1.162982e-03, 2.749836e-03, -9.999955e-01, -6.127237e-02],
        [9.999753e-01, 6.931141e-03, -1.143899e-03, -3.321029e-01],
    ]
)
P2 = np.array(
    [
        [7.070493e02, 0.0, 6.040814e02, 4.575831e01],
        [0.0, 7.070493e02, 1.805066e02, -3.454157e-01],
        [0.0, 0.0, 1.0, 4.981016e-03],
    ]
)
LIDAR_TO_RECT = np.eye(4)
LIDAR_TO_RECT[:3, :3] = R0
LIDAR_TO_RECT = LIDAR_TO_RECT @ np.vstack([TR, [0, 0, 0, 1]])
RECT_TO_LIDAR = np.linalg.inv(LIDAR_TO_RECT)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_camera_lidar_round_trip(seed):
    rng = np.random.default_rng(seed)
    m = 10
    cam = np.column_stack(
        [rng.uniform(-20, 20, m), rng.uniform(0, 3, m), rng.uniform(2, 70, m), rng.uniform(0.5, 5, (m, 3)),
         rng.uniform(-np.pi, np.pi - 1e-6, m)]
    )  # fmt: skip
    lidar = boxes_camera_to_lidar(cam, RECT_TO_LIDAR)
    back = boxes_lidar_to_camera(lidar, LIDAR_TO_RECT)
    np.testing.assert_allclose(back, cam, atol=1e-9)


def test_conversion_conventions():
    """A car 10 m ahead of the camera facing camera +x (ry = 0) faces lidar -y: yaw = -π/2."""
    cam = np.array([[0.0, 1.5, 10.0, 4.0, 1.5, 1.6, 0.0]])
    lidar = boxes_camera_to_lidar(cam, RECT_TO_LIDAR)[0]
    assert 9.5 < lidar[0] < 11  # ahead in lidar x
    assert abs(lidar[1]) < 0.2
    # Bottom at camera y = 1.5 (≈ 1.5 m below the camera); the centre is h/2 higher.
    bottom = transform_points(cam[:, :3], RECT_TO_LIDAR)[0]
    assert lidar[2] == bottom[2] + 0.75
    np.testing.assert_allclose(lidar[3:6], [4.0, 1.6, 1.5])
    np.testing.assert_allclose(lidar[6], -np.pi / 2)
    # Heading check with corners: the front face (corners 0, 3) is toward lidar -y.
    corners = box_corners(lidar[None])[0]
    assert corners[[0, 3], 1].mean() < lidar[1] - 1.9


def test_observation_angle_definition():
    # An object straight ahead (x = 0) has alpha = ry; one at 45° to the right has alpha = ry - π/4.
    cam = np.array([[0, 1, 10, 4, 1.5, 1.6, 0.3], [10, 1, 10, 4, 1.5, 1.6, 0.3]])
    np.testing.assert_allclose(observation_angle(cam), [0.3, 0.3 - np.pi / 4])


def test_project_boxes_to_image_contains_projected_corners():
    p = P2 @ LIDAR_TO_RECT
    boxes = np.array([[20.0, 2.0, -0.9, 4.0, 1.6, 1.5, 0.4], [-10.0, 0.0, -0.9, 4.0, 1.6, 1.5, 0.0]])
    bbox, valid = project_boxes_to_image(boxes, p, image_shape=(375, 1242))
    assert valid.tolist() == [True, False]  # the second is behind the camera
    uv, depth = project_points(box_corners(boxes[:1]).reshape(-1, 3), p)
    assert (depth > 0).all()
    np.testing.assert_allclose(bbox[0], [uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
