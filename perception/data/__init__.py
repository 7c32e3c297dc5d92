"""Datasets, transforms and data modules; readers and writers of each dataset's files.

The main entry points are importable from here; they load on first use, so that ``import
perception.data.kitti`` (DataLoader workers, tools) does not import lightning::

    from perception.data import SegmentationDataModule, SemanticKittiDataset
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DetectionDataModule",
    "EpochDataset",
    "EpochSampler",
    "KittiDetectionDataset",
    "SegmentationDataModule",
    "SemanticKittiDataset",
]

_WHERE = {
    "DetectionDataModule": "perception.data.datamodules",
    "EpochDataset": "perception.data.datasets",
    "EpochSampler": "perception.data.datasets",
    "KittiDetectionDataset": "perception.data.datasets",
    "SegmentationDataModule": "perception.data.segmentation",
    "SemanticKittiDataset": "perception.data.semantickitti",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'perception.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
