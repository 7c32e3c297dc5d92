"""Point sets of single shapes (ModelNet, ShapeNet-part, the synthetic shapes) and their batches.

A reader gives one :class:`PointSet` per shape, in the shape's own frame (z up, centred and scaled to
the unit sphere by the dataset's transforms); :func:`collate_point_sets` stacks sets of equal size into
a :class:`PointSetBatch` (``(B, N, C)``, the layout PointNet takes). A :class:`PartTaxonomy` names the
categories of a part-segmentation dataset and the global part ids each category owns (ShapeNet-part:
16 categories, 50 parts), the ranges both the metric and the part-label checks use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "MODELNET40_CLASSES",
    "SHAPENET_PART",
    "PartTaxonomy",
    "PointSet",
    "PointSetBatch",
    "collate_point_sets",
]

MODELNET40_CLASSES: tuple[str, ...] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip
"""ModelNet40's classes in the order of its ``shape_names.txt`` (label i of the HDF5 release is class i)."""


@dataclass(frozen=True)
class PartTaxonomy:
    """Categories of a part-segmentation dataset and the global part ids of each.

    Attributes:
        categories: K category names.
        parts: per category, the global part ids it owns (consecutive, disjoint over categories).
        synsets: per category, its ShapeNet synset folder name ("" where none).
    """

    name: str
    categories: tuple[str, ...]
    parts: tuple[tuple[int, ...], ...]
    synsets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.categories):
            raise ValueError(
                f"taxonomy {self.name}: {len(self.categories)} categories but {len(self.parts)} part lists"
            )
        flat = [p for ps in self.parts for p in ps]
        if sorted(flat) != list(range(len(flat))):
            raise ValueError(f"taxonomy {self.name}: part ids must cover 0..P-1 once each, got {flat}")

    @property
    def num_parts(self) -> int:
        """P, the number of global part ids."""
        return sum(len(p) for p in self.parts)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def part_category(self) -> NDArray[np.int64]:
        """(P,) the category index of every global part id."""
        out = np.zeros(self.num_parts, np.int64)
        for k, ps in enumerate(self.parts):
            out[list(ps)] = k
        return out

    def part_mask(self) -> NDArray[np.bool_]:
        """(K, P) True where part p belongs to category k (to restrict logits to a shape's parts)."""
        mask = np.zeros((self.num_categories, self.num_parts), bool)
        for k, ps in enumerate(self.parts):
            mask[k, list(ps)] = True
        return mask


def _consecutive(sizes: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    out, start = [], 0
    for s in sizes:
        out.append(tuple(range(start, start + s)))
        start += s
    return tuple(out)


SHAPENET_PART = PartTaxonomy(
    name="shapenet_part",
    categories=(
        "Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife",
        "Lamp", "Laptop", "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table",
    ),
    parts=_consecutive((4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)),
    synsets=(
        "02691156", "02773838", "02954340", "02958343", "03001627", "03261776", "03467517", "03624134",
        "03636649", "03642806", "03790512", "03797390", "03948459", "04099429", "04225943", "04379243",
    ),
)  # fmt: skip
"""ShapeNet-part (Yi et al. 2016, the benchmark PointNet reports): 16 categories, 50 parts, part ids
in the order of the benchmark's ``synsetoffset2category.txt`` and its usual ``seg_classes`` table."""


@dataclass(kw_only=True)
class PointSet:
    """One shape as a point set.

    Attributes:
        shape_id: the dataset's id of the shape (file stem, ``synset/model``, ``h5file:row``).
        points: (N, C) float32, x, y, z (object frame, z up) then optional normals nx, ny, nz.
        label: the class index (classification) or the category index (part segmentation).
        part_labels: (N,) int64 global part ids (part segmentation), or None.
    """

    shape_id: str
    points: NDArray[np.float32]
    label: int
    part_labels: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] < 3:
            raise ValueError(f"shape {self.shape_id}: points must be (N, >=3), got {self.points.shape}")
        if self.part_labels is not None and self.part_labels.shape != (len(self.points),):
            raise ValueError(
                f"shape {self.shape_id}: part_labels {self.part_labels.shape} must be ({len(self.points)},)"
            )

    def replace(self, **changes) -> PointSet:
        """A copy with some fields replaced (transforms return new sets, never edit in place)."""
        return replace(self, **changes)

    def select_points(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> PointSet:
        """A copy keeping only the points ``keep`` selects (with their part labels, if any)."""
        parts = None if self.part_labels is None else self.part_labels[keep]
        return self.replace(points=self.points[keep], part_labels=parts)


@dataclass
class PointSetBatch:
    """B point sets of N points each, as torch tensors.

    Attributes:
        shape_ids: B ids.
        points: (B, N, C) float32.
        labels: (B,) int64 class (or category) indices.
        part_labels: (B, N) int64 global part ids, or None.
    """

    shape_ids: list[str]
    points: torch.Tensor
    labels: torch.Tensor
    part_labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.shape_ids)

    def to(self, device: torch.device | str) -> PointSetBatch:
        parts = None if self.part_labels is None else self.part_labels.to(device)
        return PointSetBatch(self.shape_ids, self.points.to(device), self.labels.to(device), parts)


def collate_point_sets(samples: Sequence[PointSet]) -> PointSetBatch:
    """Stack point sets of the same size and channels into a :class:`PointSetBatch`.

    Raises:
        ValueError: if the sets differ in size or channels (resample them to one size first), or only
            some carry part labels.
    """
    if not samples:
        raise ValueError("collate_point_sets needs at least one point set")
    shapes = {s.points.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"point sets of different shapes {sorted(shapes)} cannot be stacked: resample first")
    with_parts = [s.part_labels is not None for s in samples]
    if any(with_parts) and not all(with_parts):
        raise ValueError("some point sets carry part labels and some do not")
    points = torch.from_numpy(np.stack([s.points for s in samples]).astype(np.float32, copy=False))
    labels = torch.tensor([int(s.label) for s in samples], dtype=torch.int64)
    parts = (
        torch.from_numpy(np.stack([s.part_labels for s in samples]).astype(np.int64))
        if all(with_parts)
        else None
    )
    return PointSetBatch([s.shape_id for s in samples], points, labels, parts)
