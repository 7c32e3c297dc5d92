"""``WaymoDetectionDataset``: converted Waymo frames of one split as samples for detection.

The KITTI dataset's API and reproducible augmentation (sample ``i`` of epoch ``e`` is transformed with
``np.random.default_rng([seed, e, i])``; see :mod:`perception.data.datasets`), on the layout of
:mod:`perception.data.waymo.converted`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perception.data.datasets import EpochDataset
from perception.data.transforms import Transform
from perception.data.waymo.converted import (
    frame_file,
    load_frame_arrays,
    missing_waymo_message,
    model_points,
    parse_frame_key,
    read_split,
    split_file,
)
from perception.data.waymo.frame import POINT_COLUMNS
from perception.structures import Sample, WaymoObjects, WaymoRecord

__all__ = ["WaymoDetectionDataset"]


class WaymoDetectionDataset(EpochDataset):
    """Converted Waymo frames of one split as :class:`Sample`\\ s for detection.

    Args:
        root: the converted root (``ROOT/ImageSets/<split>.txt``, ``ROOT/<split>/<context>/<ts>.npz``).
        split: ``train``, ``val``, ...
        class_names: the training classes (``labels`` index into them); objects of other classes
            (SIGN by default) are not in ``boxes`` but are in the record.
        transforms: applied in order with the sample's generator (a list or one transform).
        seed: augmentation seed: sample ``i`` of epoch ``e`` uses ``default_rng([seed, e, i])``.
        point_columns: how many of the point columns to keep (default 5: x, y, z, intensity,
            elongation; up to 8 adds nlz, return, lidar).
        intensity_tanh: squash the intensity with ``tanh``, as OpenPCDet does for Waymo
            (:func:`~perception.data.waymo.converted.model_points`).
        frame_ids: exactly these frames (keys ``"<context_name>/<timestamp_micros>"``, each of which
            must have its ``.npz`` in ``ROOT/<split>/``) instead of the split file's.

    ``frame_ids`` are the split file's keys ``"<context_name>/<timestamp_micros>"``; a sample's
    ``frame_id`` is ``"<context_name>_<timestamp_micros>"`` (as
    :class:`~perception.data.waymo.WaymoFrame`'s); ``difficulty`` the official LEVEL_1 / LEVEL_2
    (1 / 2); ``record`` a :class:`~perception.structures.WaymoRecord`: context name, timestamp and
    pose, and every labelled object of the frame before any transform (boxes, Label.Type codes,
    difficulty, lidar point counts, ids, and the type names) — what the Waymo metric and submission
    writer need, and what :class:`~perception.data.transforms.GroundTruthSampling` keeps pasted
    objects clear of.

    Raises:
        FileNotFoundError: ``root`` or the split is missing; the message
            (:func:`~perception.data.waymo.converted.missing_waymo_message`) says where the files go,
            where to download them and which command converts them.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_names: Sequence[str] = ("VEHICLE", "PEDESTRIAN", "CYCLIST"),
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        point_columns: int = 5,
        intensity_tanh: bool = True,
        frame_ids: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / split).is_dir() or (
            frame_ids is None and not split_file(self.root, split).is_file()
        ):
            raise FileNotFoundError(missing_waymo_message(self.root, split))
        if not 3 <= point_columns <= len(POINT_COLUMNS):
            raise ValueError(f"point_columns must be in [3, {len(POINT_COLUMNS)}], got {point_columns}")
        self.split = split
        self.frame_ids = read_split(self.root, split) if frame_ids is None else [str(k) for k in frame_ids]
        self._keys = [parse_frame_key(k) for k in self.frame_ids]
        if frame_ids is not None:
            missing = [
                k
                for k, key in zip(self.frame_ids, self._keys, strict=True)
                if not frame_file(self.root, split, *key).is_file()
            ]
            if missing:
                raise FileNotFoundError(
                    f"{self.root / split}: no converted frame {', '.join(missing[:5])}"
                    + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                )
        self.class_names = tuple(class_names)
        self.point_columns, self.intensity_tanh = int(point_columns), bool(intensity_tanh)
        self._init_transforms(transforms, seed)

    def load(self, index: int) -> Sample:
        """Sample ``index`` as converted, before any transform (points (N, point_columns) float32)."""
        context, timestamp = self._keys[index]
        path = frame_file(self.root, self.split, context, timestamp)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: frame {self.frame_ids[index]} of {split_file(self.root, self.split)} is missing; "
                "re-run tools/convert_waymo.py (it resumes) or rewrite the split file"
            )
        arrays = load_frame_arrays(path)
        names = arrays["names"]
        known = np.isin(names, self.class_names)
        label_of = {name: i for i, name in enumerate(self.class_names)}
        pose = arrays["pose"]
        record = WaymoRecord(
            context_name=context,
            timestamp_micros=timestamp,
            pose=pose if np.isfinite(pose).all() else None,
            objects=WaymoObjects(
                boxes=np.asarray(arrays["boxes"], np.float64).reshape(-1, 7),
                types=np.asarray(arrays["types"], np.int64),
                difficulty=np.asarray(arrays["difficulty"], np.int64),
                num_lidar_points=np.asarray(arrays["num_lidar_points"], np.int64),
                ids=np.asarray(arrays["ids"]).astype(str),
            ),
            names=np.asarray(names).astype(str),
        )
        return Sample(
            frame_id=f"{context}_{timestamp}",
            points=model_points(arrays["points"], self.point_columns, self.intensity_tanh),
            boxes=np.ascontiguousarray(arrays["boxes"][known], dtype=np.float32),
            labels=np.array([label_of[n] for n in names[known]], dtype=np.int64),
            difficulty=arrays["difficulty"][known].astype(np.int32),
            record=record,
        )

    def __repr__(self) -> str:
        return (
            f"WaymoDetectionDataset({str(self.root)!r}, split={self.split!r}, frames={len(self)}, "
            f"class_names={self.class_names}, point_columns={self.point_columns}, "
            f"intensity_tanh={self.intensity_tanh}, transform={self.transform!r})"
        )
