"""ShapeNet-part (Yi et al. 2016) as the PointNet++ release with normals, for part segmentation.

The layout of ``shapenetcore_partanno_segmentation_benchmark_v0_normal/``::

    synsetoffset2category.txt                       "Airplane<TAB>02691156", one category a line
    02691156/1a04e3eab45ca15dd86060f189eb133.txt    one point a line: x y z nx ny nz part
    ...                                             (part: the GLOBAL part id 0..49, written as a float)
    train_test_split/shuffled_{train,val,test}_file_list.json
                                                    JSON lists of "shape_data/<synset>/<model_id>"

A shape's points are all the points of its file (2,000 to 3,000 or so); bringing them to one count is a
transform's job. The part ids are checked against the taxonomy's ranges on every read.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.datasets import EpochDataset
from perception.data.shapes.errors import ShapeFormatError
from perception.data.shapes.mesh import check_up_axis, to_z_up
from perception.data.shapes.modelnet import ShapeDataNotFoundError, missing_shape_data_message
from perception.data.transforms import Transform
from perception.structures.shapes import SHAPENET_PART, PartTaxonomy, PointSet

__all__ = ["ShapeNetPart", "missing_shapenet_part_message", "read_part_file"]

SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val",),
    "test": ("test",),
    "trainval": ("train", "val"),
}
"""Split name → the split files (``shuffled_<name>_file_list.json``) it joins, in this order."""


def missing_shapenet_part_message(root: str | os.PathLike, missing: str | os.PathLike) -> str:
    """What to say when the release is not at ``root`` (``missing``: the file or folder absent)."""
    return missing_shape_data_message(
        missing,
        "not found",
        "ShapeNet-part dataset",
        root,
        f"{Path(root) / 'synsetoffset2category.txt'}, train_test_split/ and one folder per synset",
        "unzip shapenetcore_partanno_segmentation_benchmark_v0_normal.zip (the PointNet++ authors' release "
        "of ShapeNet-part with normals) into data/shapenet_part/, so that data/shapenet_part/"
        "shapenetcore_partanno_segmentation_benchmark_v0_normal/synsetoffset2category.txt exists.",
    )


def read_part_file(path: str | os.PathLike) -> NDArray[np.float64]:
    """The (N, 7) rows ``x y z nx ny nz part`` of one ShapeNet-part point file, checked.

    Raises:
        ShapeFormatError: naming the file (and line): unreadable, empty, a row of other than 7 values,
            a non-numeric, NaN or infinite value, or a part id that is not an integer.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as error:
        raise ShapeFormatError(f"{path}: cannot read the point file ({error.strerror or error})") from None
    rows = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    if not rows:
        raise ShapeFormatError(f"{path}: empty point file (no 'x y z nx ny nz part' rows)")
    flat = _parse(text)
    if flat is None or flat.size != 7 * len(rows):
        for number, line in rows:
            tokens = line.split()
            if len(tokens) != 7:
                raise ShapeFormatError(
                    f"{path}, line {number}: {len(tokens)} values, expected 7 (x y z nx ny nz part)"
                )
            for token in tokens:
                try:
                    float(token)
                except ValueError:
                    raise ShapeFormatError(f"{path}, line {number}: non-numeric value {token!r}") from None
        raise ShapeFormatError(f"{path}: unreadable rows")  # pragma: no cover - the loop finds the row
    values = flat.reshape(-1, 7)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        lines = ", ".join(str(rows[i][0]) for i in bad[:5])
        raise ShapeFormatError(f"{path}: {len(bad)} row(s) with NaN or infinite values (line(s) {lines})")
    parts = values[:, 6]
    fractional = np.flatnonzero(parts != np.round(parts))
    if len(fractional):
        i = int(fractional[0])
        raise ShapeFormatError(f"{path}, line {rows[i][0]}: part id {parts[i]} is not an integer")
    return values


def _parse(text: str) -> NDArray[np.float64] | None:
    """All numbers of ``text`` in one C-level pass, or None if a token is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


class ShapeNetPart(EpochDataset):
    """ShapeNet-part shapes as :class:`PointSet`\\ s with global part labels.

    Args:
        root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal/`` folder.
        split: ``train``, ``val``, ``test`` or ``trainval`` (train then val).
        categories: category names to keep (default: all of the taxonomy's); labels stay the
            taxonomy's category indices whatever is kept.
        taxonomy: categories and their global part ids.
        use_normals: points (N, 6) x, y, z, nx, ny, nz instead of (N, 3).
        transforms: applied to each :class:`PointSet` with its generator (a list or one transform).
        seed: augmentation seed.
        up_axis: the files' up axis (``"y"``: ShapeNet's); points come out z-up.

    Attributes:
        frame_ids: shape ids ``<synset>/<model_id>`` in the split files' order; ``labels`` (S,) int64
        their category indices in ``taxonomy``.

    Raises:
        ShapeDataNotFoundError: ``root``, ``synsetoffset2category.txt`` or a split file is missing (the
            message says where the data goes).
        ShapeFormatError: naming the file: a malformed category or split file, a synset the category
            file does not name, shapes whose point files are missing. Reading a shape raises it for
            malformed rows and part ids outside the shape's category.
        ValueError: an unknown category name or split.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        categories: Sequence[str] | None = None,
        taxonomy: PartTaxonomy = SHAPENET_PART,
        use_normals: bool = False,
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        up_axis: str = "y",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"ShapeNet-part split must be one of {list(SPLITS)}, got {split!r}")
        self.root, self.split, self.taxonomy = Path(root), split, taxonomy
        self.use_normals = bool(use_normals)
        self.up_axis = check_up_axis(up_axis)
        catalog = self.root / "synsetoffset2category.txt"
        for needed in (self.root, catalog):
            if not needed.exists():
                raise ShapeDataNotFoundError(missing_shapenet_part_message(self.root, needed))
        category_of = _read_catalog(catalog, taxonomy)
        names = taxonomy.categories if categories is None else tuple(categories)
        unknown = [n for n in names if n not in taxonomy.categories]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; {taxonomy.name} has {list(taxonomy.categories)}")
        self.categories = names
        wanted = {taxonomy.categories.index(n) for n in names}

        shapes: list[tuple[str, str]] = []
        for part in SPLITS[split]:
            for synset, model in _read_split(self.root, part):
                if synset not in category_of:
                    raise ShapeFormatError(
                        f"{_split_path(self.root, part)}: unknown synset {synset!r} (shape {model}); "
                        f"{catalog} names {sorted(category_of)}"
                    )
                if category_of[synset] in wanted:
                    shapes.append((synset, model))
        self._check_files(shapes)
        self.frame_ids = [f"{synset}/{model}" for synset, model in shapes]
        self.labels = np.array([category_of[synset] for synset, _ in shapes], np.int64)
        self._init_transforms(transforms, seed)

    def _check_files(self, shapes: Sequence[tuple[str, str]]) -> None:
        """Every shape's point file exists (one directory listing per synset)."""
        listed: dict[str, set[str]] = {}
        missing = []
        for synset, model in shapes:
            if synset not in listed:
                folder = self.root / synset
                if not folder.is_dir():
                    raise ShapeFormatError(f"{folder}: synset folder missing (its shapes are in the split)")
                listed[synset] = set(os.listdir(folder))
            if f"{model}.txt" not in listed[synset]:
                missing.append(str(self.root / synset / f"{model}.txt"))
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ShapeFormatError(f"{len(missing)} point file(s) of split '{self.split}' missing: {shown}")

    def point_file(self, index: int) -> Path:
        """The text file of shape ``index``."""
        return self.root / f"{self.frame_ids[index]}.txt"

    def load(self, index: int) -> PointSet:
        """Shape ``index`` before any transform: all its points (N, 3|6) float32, part ids (N,) int64."""
        path = self.point_file(index)
        values = read_part_file(path)
        label = int(self.labels[index])
        parts = values[:, 6].astype(np.int64)
        allowed = self.taxonomy.parts[label]
        outside = ~np.isin(parts, allowed)
        if outside.any():
            bad = sorted(set(parts[outside].tolist()))
            raise ShapeFormatError(
                f"{path}: part labels {bad[:10]} outside the parts of "
                f"{self.taxonomy.categories[label]}, {min(allowed)}..{max(allowed)} ({self.taxonomy.name})"
            )
        points = to_z_up(values[:, :6] if self.use_normals else values[:, :3], self.up_axis)
        return PointSet(
            shape_id=self.frame_ids[index], points=points.astype(np.float32), label=label, part_labels=parts
        )

    def __repr__(self) -> str:
        return (
            f"ShapeNetPart({str(self.root)!r}, split={self.split!r}, shapes={len(self)}, "
            f"categories={len(self.categories)}, use_normals={self.use_normals}, transform={self.transform!r})"
        )


def _split_path(root: Path, part: str) -> Path:
    return root / "train_test_split" / f"shuffled_{part}_file_list.json"


def _read_split(root: Path, part: str) -> list[tuple[str, str]]:
    """(synset, model id) of every entry of one split file."""
    path = _split_path(root, part)
    if not path.is_file():
        raise ShapeDataNotFoundError(missing_shapenet_part_message(root, path))
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ShapeFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise ShapeFormatError(f"{path}: expected a JSON list of 'shape_data/<synset>/<model_id>' strings")
    shapes = []
    for entry in entries:
        pieces = entry.strip("/").split("/") if isinstance(entry, str) else []
        if len(pieces) < 2 or not all(pieces[-2:]):
            raise ShapeFormatError(f"{path}: entry {entry!r} is not 'shape_data/<synset>/<model_id>'")
        shapes.append((pieces[-2], pieces[-1]))
    return shapes


def _read_catalog(path: Path, taxonomy: PartTaxonomy) -> dict[str, int]:
    """Synset → category index in ``taxonomy``, from ``synsetoffset2category.txt``."""
    category_of: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != 2:
            raise ShapeFormatError(f"{path}, line {number}: {line.strip()!r} is not '<Category> <synset>'")
        name, synset = tokens
        if name not in taxonomy.categories:
            raise ShapeFormatError(
                f"{path}, line {number}: category {name!r} is not one of {taxonomy.name}'s "
                f"{list(taxonomy.categories)}"
            )
        k = taxonomy.categories.index(name)
        if taxonomy.synsets and taxonomy.synsets[k] != synset:
            raise ShapeFormatError(
                f"{path}, line {number}: {name} is synset {synset}, but {taxonomy.name} says {taxonomy.synsets[k]}"
            )
        category_of[synset] = k
    return category_of
