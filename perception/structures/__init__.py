"""Typed values every layer shares: frames, samples and batches, detections, voxel features, dataset records.

Readers produce a :class:`Frame`; datasets turn it into a :class:`Sample` whose ``record`` (a
:class:`KittiRecord` or :class:`WaymoRecord`) carries what writers and metrics need; :func:`collate`
stacks samples into a :class:`Batch`; encoders hand backbones :class:`VoxelFeatures`; detectors
return one :class:`Detections` per sample. Nothing here reads files or knows a model.
"""

from perception.structures.detections import Detections
from perception.structures.frame import Frame
from perception.structures.kitti import KITTI_CLASSES, KittiCalibration, KittiObjects, KittiRecord
from perception.structures.sample import Batch, FrameRecord, Sample, collate
from perception.structures.segmentation import SEMANTIC_KITTI, LabelMap, ScanRecord
from perception.structures.voxels import VoxelFeatures
from perception.structures.waymo import TYPE_CODES, FrameKey, WaymoObjects, WaymoRecord

__all__ = [
    "KITTI_CLASSES",
    "SEMANTIC_KITTI",
    "TYPE_CODES",
    "Batch",
    "Detections",
    "Frame",
    "FrameKey",
    "FrameRecord",
    "KittiCalibration",
    "KittiObjects",
    "KittiRecord",
    "LabelMap",
    "Sample",
    "ScanRecord",
    "VoxelFeatures",
    "WaymoObjects",
    "WaymoRecord",
    "collate",
]
