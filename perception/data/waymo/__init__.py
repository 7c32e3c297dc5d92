"""Waymo Open Dataset without TensorFlow: v1 TFRecords of ``Frame`` protos and v2 parquet components.

Only ``protobuf`` (messages built at run time in :mod:`~perception.data.waymo.protos`),
``google-crc32c``, NumPy and, for v2, ``pyarrow`` are needed. This package exports the readers:
:func:`read_frames` (v1, :mod:`~perception.data.waymo.frame`) and :func:`read_frames_v2`
(:mod:`~perception.data.waymo.v2`) give :class:`WaymoFrame` objects; the record framing is in
:mod:`~perception.data.waymo.records`, the range-image geometry in
:mod:`~perception.data.waymo.range_image`, the submission ``.bin`` files in
:mod:`~perception.data.waymo.submission`.

The converted on-disk format (:mod:`~perception.data.waymo.converted`), the converter
(:mod:`~perception.data.waymo.convert`), the ground-truth database
(:mod:`~perception.data.waymo.database`) and the training dataset
(:mod:`~perception.data.waymo.dataset`) are imported from their modules; importing this package
loads none of them.
"""

from perception.data.waymo.frame import (
    LEVEL_2_MAX_POINTS,
    POINT_COLUMNS,
    WAYMO_CLASSES,
    WaymoFrame,
    decode_frame,
    read_frames,
)
from perception.data.waymo.range_image import (
    LIDAR_IDS,
    LIDAR_NAMES,
    SHORT_RANGE_SHAPE,
    TOP_SHAPE,
    LidarCalibration,
    decode_matrix_float,
    encode_matrix_float,
    euler_from_rotation,
    points_to_range_image_pixels,
    pose_image_to_matrices,
    range_image_azimuths,
    range_image_to_points,
    rotation_from_euler,
)
from perception.data.waymo.records import WaymoFormatError, masked_crc32c, read_records, write_records
from perception.data.waymo.v2 import V2_COMPONENTS, list_segments_v2, read_frames_v2, write_frames_v2

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
    "WaymoFormatError",
    "WaymoFrame",
    "decode_frame",
    "decode_matrix_float",
    "encode_matrix_float",
    "euler_from_rotation",
    "list_segments_v2",
    "masked_crc32c",
    "points_to_range_image_pixels",
    "pose_image_to_matrices",
    "range_image_azimuths",
    "range_image_to_points",
    "read_frames",
    "read_frames_v2",
    "read_records",
    "rotation_from_euler",
    "write_frames_v2",
    "write_records",
]
