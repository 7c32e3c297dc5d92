"""Geometry in the sensor frame: boxes, corners, points in boxes, camera ↔ lidar conversions."""

from perception.geometry.boxes import (
    box_corners,
    boxes_bev_corners,
    points_in_boxes,
    points_in_boxes_mask,
    rotate_xy,
    rotation_z,
    wrap_angle,
)
from perception.geometry.camera import (
    boxes_camera_to_lidar,
    boxes_lidar_to_camera,
    observation_angle,
    project_boxes_to_image,
    project_points,
    transform_points,
)

__all__ = [
    "box_corners",
    "boxes_bev_corners",
    "boxes_camera_to_lidar",
    "boxes_lidar_to_camera",
    "observation_angle",
    "points_in_boxes",
    "points_in_boxes_mask",
    "project_boxes_to_image",
    "project_points",
    "rotate_xy",
    "rotation_z",
    "transform_points",
    "wrap_angle",
]
