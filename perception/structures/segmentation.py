"""Semantic segmentation's typed values: a dataset's class map and a scan's record.

:class:`LabelMap` is a SemanticKITTI-style class map (its ``config/semantic-kitti.yaml``): raw label ids
(the low 16 bits of a ``.label`` word) → ``learning_map`` → training ids, 0 ignored, 1..K the classes;
``learning_map_inv`` back to raw ids for prediction files. :data:`SEMANTIC_KITTI` is the official map;
:func:`LabelMap.restricted` keeps a subset of its classes (the synthetic generator's map is one).
Readers are in :mod:`perception.data.semantickitti`, the metric in :mod:`perception.eval.segmentation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["SEMANTIC_KITTI", "SYNTHETIC", "LabelMap", "ScanRecord", "UnknownLabelError", "label_map"]


class UnknownLabelError(ValueError):
    """A label file holds raw ids its class map does not know."""


# The official SemanticKITTI class map (semantic-kitti-api, config/semantic-kitti.yaml).
_SK_LABELS: dict[int, str] = {
    0: "unlabeled", 1: "outlier", 10: "car", 11: "bicycle", 13: "bus", 15: "motorcycle",
    16: "on-rails", 18: "truck", 20: "other-vehicle", 30: "person", 31: "bicyclist",
    32: "motorcyclist", 40: "road", 44: "parking", 48: "sidewalk", 49: "other-ground",
    50: "building", 51: "fence", 52: "other-structure", 60: "lane-marking", 70: "vegetation",
    71: "trunk", 72: "terrain", 80: "pole", 81: "traffic-sign", 99: "other-object",
    252: "moving-car", 253: "moving-bicyclist", 254: "moving-person", 255: "moving-motorcyclist",
    256: "moving-on-rails", 257: "moving-bus", 258: "moving-truck", 259: "moving-other-vehicle",
}  # fmt: skip
_SK_LEARNING_MAP: dict[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9,
    44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19,
    99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}  # fmt: skip
_SK_LEARNING_MAP_INV: dict[int, int] = {
    0: 0, 1: 10, 2: 11, 3: 15, 4: 18, 5: 20, 6: 30, 7: 31, 8: 32, 9: 40, 10: 44, 11: 48, 12: 49,
    13: 50, 14: 51, 15: 70, 16: 71, 17: 72, 18: 80, 19: 81,
}  # fmt: skip


@dataclass(frozen=True)
class LabelMap:
    """A class map in SemanticKITTI's form.

    Attributes:
        name: what the map is called (``"semantic-kitti"``, ``"synthetic"``, a file's name).
        labels: raw id → raw class name (every id a label file may hold).
        learning_map: raw id → training id; 0 is ignored (unlabeled, outlier, ...).
        learning_map_inv: training id → the raw id written for it in prediction files.
        class_names: (K,) names of training ids 1..K (index ``i`` is training id ``i + 1``).
    """

    name: str
    labels: Mapping[int, str]
    learning_map: Mapping[int, int]
    learning_map_inv: Mapping[int, int]
    class_names: tuple[str, ...]
    _lut: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.learning_map) - set(self.labels))
        if unknown:
            raise ValueError(
                f"label map {self.name}: learning_map names raw ids {unknown} absent from labels"
            )
        k = self.num_classes
        bad = sorted({v for v in self.learning_map.values() if not 0 <= v <= k})
        if bad:
            raise ValueError(f"label map {self.name}: training ids {bad} outside 0..{k}")
        missing = sorted(set(range(k + 1)) - set(self.learning_map_inv))
        if missing:
            raise ValueError(f"label map {self.name}: learning_map_inv lacks training ids {missing}")
        lut = np.full(1 << 16, -1, np.int64)
        for raw, train in self.learning_map.items():
            lut[raw] = train
        object.__setattr__(self, "_lut", lut)

    @property
    def num_classes(self) -> int:
        """K, the number of training classes (ignore not counted)."""
        return len(self.class_names)

    def train_ids(self, raw: NDArray, source: str = "labels") -> NDArray[np.int64]:
        """(N,) training ids 0..K of raw ``.label`` words (the low 16 bits are the semantic id).

        Raises:
            UnknownLabelError: naming ``source`` and the ids the map does not know.
        """
        semantic = np.asarray(raw).astype(np.uint32, copy=False) & np.uint32(0xFFFF)
        out = self._lut[semantic]
        if (out < 0).any():
            ids = np.unique(semantic[out < 0])
            raise UnknownLabelError(
                f"{source}: raw label ids {ids[:10].tolist()} are not in the {self.name} class map "
                f"({int((out < 0).sum())} points)"
            )
        return out

    def raw_ids(self, train: NDArray) -> NDArray[np.uint32]:
        """(N,) raw ids written for training ids 0..K (``learning_map_inv``)."""
        lut = np.zeros(self.num_classes + 1, np.uint32)
        for t, raw in self.learning_map_inv.items():
            lut[t] = raw
        train = np.asarray(train)
        if train.size and (train.min() < 0 or train.max() > self.num_classes):
            raise ValueError(
                f"training ids must be in 0..{self.num_classes}, got {train.min()}..{train.max()}"
            )
        return lut[train]

    def restricted(self, keep: Sequence[str], name: str) -> LabelMap:
        """The same raw ids, with only the training classes ``keep`` (renumbered 1..len(keep) in that
        order); every other class maps to 0 (ignored)."""
        index = {n: i + 1 for i, n in enumerate(self.class_names)}
        missing = [k for k in keep if k not in index]
        if missing:
            raise ValueError(f"label map {self.name} has no classes {missing}")
        renumber = {0: 0} | {index[n]: i + 1 for i, n in enumerate(keep)}
        return LabelMap(
            name=name,
            labels=dict(self.labels),
            learning_map={raw: renumber.get(t, 0) for raw, t in self.learning_map.items()},
            learning_map_inv={0: 0} | {i + 1: self.learning_map_inv[index[n]] for i, n in enumerate(keep)},
            class_names=tuple(keep),
        )

    @staticmethod
    def from_yaml(path: str | Path) -> LabelMap:
        """Read a class map in the format of SemanticKITTI's ``config/semantic-kitti.yaml``
        (``labels``, ``learning_map``, ``learning_map_inv``; training class names from
        ``labels[learning_map_inv[i]]``)."""
        import yaml

        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
            labels = {int(k): str(v) for k, v in doc["labels"].items()}
            learning_map = {int(k): int(v) for k, v in doc["learning_map"].items()}
            inv = {int(k): int(v) for k, v in doc["learning_map_inv"].items()}
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{path}: not a SemanticKITTI class map ({type(e).__name__}: {e})") from e
        k = max(inv)
        names = tuple(labels.get(inv[i], str(inv[i])) for i in range(1, k + 1))
        return LabelMap(path.stem, labels, learning_map, inv, names)


SEMANTIC_KITTI = LabelMap(
    name="semantic-kitti",
    labels=_SK_LABELS,
    learning_map=_SK_LEARNING_MAP,
    learning_map_inv=_SK_LEARNING_MAP_INV,
    class_names=tuple(_SK_LABELS[_SK_LEARNING_MAP_INV[i]] for i in range(1, 20)),
)
"""The official SemanticKITTI map: 34 raw ids (moving classes included) → 19 classes + ignore."""

SYNTHETIC = SEMANTIC_KITTI.restricted(
    (
        "car",
        "truck",
        "person",
        "bicyclist",
        "road",
        "sidewalk",
        "building",
        "vegetation",
        "trunk",
        "terrain",
        "pole",
        "traffic-sign",
    ),
    name="synthetic",
)
"""SemanticKITTI's raw ids with the 12 classes the synthetic generator draws (the rest ignored)."""

_NAMED = {m.name: m for m in (SEMANTIC_KITTI, SYNTHETIC)}


def label_map(spec: str | LabelMap) -> LabelMap:
    """A class map from a name (``"semantic-kitti"``, ``"synthetic"``) or a YAML file path."""
    if isinstance(spec, LabelMap):
        return spec
    if spec in _NAMED:
        return _NAMED[spec]
    if Path(spec).is_file():
        return LabelMap.from_yaml(spec)
    raise ValueError(
        f"unknown label map {spec!r}: use one of {sorted(_NAMED)} or a path to a SemanticKITTI-style YAML"
    )


@dataclass(frozen=True, kw_only=True)
class ScanRecord:
    """What a segmentation sample carries besides its points and point labels (before any transform).

    Attributes:
        sequence: the sequence folder name (``"08"``).
        scan: the scan's file stem (``"000000"``).
        num_points: points in the scan file; a prediction file must have exactly this many labels.
        pose: (4, 4) float64 scan → first-scan transform from ``poses.txt`` (lidar frame), or None.
    """

    sequence: str
    scan: str
    num_points: int
    pose: NDArray[np.float64] | None = None
