"""Single shapes as point sets: ModelNet40 and ShapeNet-part readers, the embedded synthetic shapes,
shape transforms and the classification / part-segmentation data modules.

The entry points are importable from here and load on first use (so ``import
perception.data.shapes.off`` does not import lightning or h5py)::

    from perception.data.shapes import ShapeClassificationDataModule, SyntheticShapes, ResamplePoints

Modules: :mod:`.mesh` (area-weighted surface sampling), :mod:`.off` (OFF meshes), :mod:`.modelnet`
(ModelNet40, OFF and HDF5), :mod:`.shapenet_part` (ShapeNet-part), :mod:`.synthetic` (generated shapes
and part shapes), :mod:`.transforms` (``PointSet`` transforms), :mod:`.datamodules`, :mod:`.errors`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SYNTHETIC_PARTS",
    "SYNTHETIC_PART_NAMES",
    "SYNTHETIC_SHAPE_CLASSES",
    "MeshError",
    "ModelNet40H5",
    "ModelNet40Off",
    "NormalizeUnitSphere",
    "PartSegmentationDataModule",
    "RandomJitter",
    "RandomPointDropout",
    "RandomRotationZ",
    "RandomScale",
    "ResamplePoints",
    "ShapeClassificationDataModule",
    "ShapeFormatError",
    "ShapeNetPart",
    "ShapeTransform",
    "ShufflePoints",
    "SyntheticPartShapes",
    "SyntheticShapes",
    "read_off",
    "sample_surface",
]

_WHERE = {
    "MeshError": "perception.data.shapes.mesh",
    "sample_surface": "perception.data.shapes.mesh",
    "ShapeFormatError": "perception.data.shapes.errors",
    "read_off": "perception.data.shapes.off",
    "ModelNet40H5": "perception.data.shapes.modelnet",
    "ModelNet40Off": "perception.data.shapes.modelnet",
    "ShapeNetPart": "perception.data.shapes.shapenet_part",
    "SYNTHETIC_PARTS": "perception.data.shapes.synthetic",
    "SYNTHETIC_PART_NAMES": "perception.data.shapes.synthetic",
    "SYNTHETIC_SHAPE_CLASSES": "perception.data.shapes.synthetic",
    "SyntheticPartShapes": "perception.data.shapes.synthetic",
    "SyntheticShapes": "perception.data.shapes.synthetic",
    "NormalizeUnitSphere": "perception.data.shapes.transforms",
    "RandomJitter": "perception.data.shapes.transforms",
    "RandomPointDropout": "perception.data.shapes.transforms",
    "RandomRotationZ": "perception.data.shapes.transforms",
    "RandomScale": "perception.data.shapes.transforms",
    "ResamplePoints": "perception.data.shapes.transforms",
    "ShapeTransform": "perception.data.shapes.transforms",
    "ShufflePoints": "perception.data.shapes.transforms",
    "PartSegmentationDataModule": "perception.data.shapes.datamodules",
    "ShapeClassificationDataModule": "perception.data.shapes.datamodules",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'perception.data.shapes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
