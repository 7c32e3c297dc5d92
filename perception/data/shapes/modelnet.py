"""ModelNet40 classification datasets: the official OFF meshes and the PointNet HDF5 release.

- :class:`ModelNet40Off` reads ``ModelNet40.zip`` as unzipped (``ROOT/<class>/<split>/<class>_NNNN.off``)
  and samples each mesh's surface, area-weighted, with a generator seeded from the shape (so a shape
  always gives the same points; augmentation is the transforms' job). Sampled points can be cached
  as ``.npy``.
- :class:`ModelNet40H5` reads ``modelnet40_ply_hdf5_2048/`` (2,048 points per shape, already sampled
  and normalised to the unit sphere), all of it into memory at construction.

Both give :class:`~perception.structures.shapes.PointSet`\\ s in the shape's own frame (z up) with
``label`` the class index, and both derive from :class:`~perception.data.datasets.EpochDataset`:
``dataset[i]`` is ``load(i)`` transformed with ``default_rng([seed, epoch, i])``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.datasets import EpochDataset
from perception.data.shapes.errors import ShapeFormatError
from perception.data.shapes.mesh import check_up_axis, sample_surface, to_z_up
from perception.data.shapes.off import read_off
from perception.data.transforms import Transform
from perception.structures.shapes import MODELNET40_CLASSES, PointSet

__all__ = [
    "ModelNet40H5",
    "ModelNet40Off",
    "ShapeDataNotFoundError",
    "missing_modelnet40_h5_message",
    "missing_modelnet40_message",
    "missing_shape_data_message",
]


class ShapeDataNotFoundError(ShapeFormatError, FileNotFoundError):
    """A shape dataset's folder (or one of its index files) is missing; the message says where data goes.

    Both a :class:`ShapeFormatError` and a :class:`FileNotFoundError`, so either ``except`` catches it.
    """


def missing_shape_data_message(
    missing: str | os.PathLike, problem: str, what: str, root: str | os.PathLike, expected: str, how: str
) -> str:
    """What a shape reader says when its data is not at ``root``: ``<missing>: <problem>, so no <what> at
    <root> (expected <expected>). Datasets live under data/ (see data/README.md): <how>``."""
    return (
        f"{missing}: {problem}, so no {what} at {root} (expected {expected}). "
        f"Datasets live under data/ (see data/README.md): {how}"
    )


def missing_modelnet40_message(root: str | os.PathLike, missing: str | os.PathLike) -> str:
    """What to say when the OFF release is not at ``root`` (``missing``: the folder that is absent)."""
    return missing_shape_data_message(
        missing,
        "no such folder",
        "ModelNet40 meshes",
        root,
        f"{Path(root) / 'airplane' / 'train' / 'airplane_0001.off'} and the like",
        "download ModelNet40.zip from Princeton's ModelNet page (https://modelnet.cs.princeton.edu/) and "
        "unzip it so that its ModelNet40/ folder is data/modelnet40/ "
        "(data/modelnet40/<class>/{train,test}/<class>_NNNN.off).",
    )


def missing_modelnet40_h5_message(root: str | os.PathLike, missing: str | os.PathLike) -> str:
    """What to say when the HDF5 release is not at ``root`` (``missing``: the file or folder absent)."""
    return missing_shape_data_message(
        missing,
        "not found",
        "ModelNet40 HDF5 release",
        root,
        f"{Path(root) / 'train_files.txt'}, test_files.txt, shape_names.txt and ply_data_*.h5",
        "unzip modelnet40_ply_hdf5_2048.zip (the PointNet authors' release) so that "
        "data/modelnet40_ply_hdf5_2048/train_files.txt exists.",
    )


class _ModelNet40(EpochDataset):
    """What both ModelNet40 readers share: the checks and settings of their common arguments."""

    def _init_common(
        self, root: str | os.PathLike, split: str, num_points: int, use_normals: bool, up_axis: str
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"ModelNet40 split must be 'train' or 'test', got {split!r}")
        if num_points < 1:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.root, self.split = Path(root), split
        self.num_points, self.use_normals = int(num_points), bool(use_normals)
        self.up_axis = check_up_axis(up_axis)


class ModelNet40Off(_ModelNet40):
    """ModelNet40's OFF meshes, each sampled to ``num_points`` surface points.

    Args:
        root: the unzipped ``ModelNet40/`` folder (``ROOT/<class>/<split>/<class>_NNNN.off``).
        split: ``train`` or ``test``.
        num_points: N, points sampled per shape (area-weighted, uniform within each triangle).
        use_normals: also give the sampled points' face normals (points (N, 6)).
        classes: the classes to read, in label order (label = index in this list).
        transforms: applied to each :class:`PointSet` with its generator (a list or one transform).
        seed: seeds both the surface sampling (with the shape id, fixed over epochs) and augmentation.
        cache_dir: where sampled points are kept as ``.npy`` (one file per shape, seed and N) and
            reused; None samples on every load.
        up_axis: the meshes' up axis (``"z"``: the Princeton meshes); points come out z-up.

    Attributes:
        frame_ids: the shape ids ``<class>/<file stem>``, sorted; ``labels`` (S,) int64 their classes.

    Raises:
        ShapeDataNotFoundError: ``root`` or a class folder is missing (the message says where the data
            goes). Reading a corrupt mesh raises ShapeFormatError naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_points: int = 1024,
        use_normals: bool = False,
        classes: Sequence[str] = MODELNET40_CLASSES,
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        up_axis: str = "z",
    ) -> None:
        self._init_common(root, split, num_points, use_normals, up_axis)
        self.classes = tuple(classes)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if not self.root.is_dir():
            raise ShapeDataNotFoundError(missing_modelnet40_message(self.root, self.root))
        shapes: list[tuple[str, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name / split
            if not folder.is_dir():
                raise ShapeDataNotFoundError(missing_modelnet40_message(self.root, folder))
            shapes += [(f"{name}/{p.stem}", label) for p in folder.iterdir() if p.suffix == ".off"]
        shapes.sort()
        self.frame_ids = [s for s, _ in shapes]
        self.labels = np.array([label for _, label in shapes], np.int64)
        self._init_transforms(transforms, seed)

    def mesh_path(self, index: int) -> Path:
        """The OFF file of shape ``index``."""
        name, stem = self.frame_ids[index].split("/")
        return self.root / name / self.split / f"{stem}.off"

    def load(self, index: int) -> PointSet:
        """Shape ``index`` as sampled, before any transform: points (N, 3) or (N, 6) float32."""
        shape_id = self.frame_ids[index]
        cache = self._cache_path(shape_id)
        points = _read_cached(cache, self.num_points) if cache is not None else None
        if points is None:
            points = self._sample(index)
            if cache is not None:
                _save_atomic(cache, points)
        points = to_z_up(points, self.up_axis)
        if not self.use_normals:
            points = np.ascontiguousarray(points[:, :3])
        return PointSet(shape_id=shape_id, points=points, label=int(self.labels[index]))

    def _sample(self, index: int) -> NDArray[np.float32]:
        """(N, 6) float32 points and normals on the mesh of shape ``index``, seeded by the shape."""
        path = self.mesh_path(index)
        vertices, faces = read_off(path)
        rng = np.random.default_rng([self.seed, zlib.crc32(self.frame_ids[index].encode())])
        points, normals = sample_surface(vertices, faces, self.num_points, rng, name=str(path))
        return np.concatenate([points, normals], axis=1)

    def _cache_path(self, shape_id: str) -> Path | None:
        if self.cache_dir is None:
            return None
        name, stem = shape_id.split("/")
        return self.cache_dir / name / f"{stem}.n{self.num_points}.seed{self.seed}.npy"

    def __repr__(self) -> str:
        return (
            f"ModelNet40Off({str(self.root)!r}, split={self.split!r}, shapes={len(self)}, "
            f"num_points={self.num_points}, use_normals={self.use_normals}, transform={self.transform!r})"
        )


def _read_cached(path: Path, num_points: int) -> NDArray[np.float32] | None:
    """The cached (N, 6) points, or None if absent or not what this dataset would sample."""
    try:
        points = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if points.shape != (num_points, 6) or points.dtype != np.float32:
        return None
    return points


def _save_atomic(path: Path, points: NDArray[np.float32]) -> None:
    """Write ``points`` as ``.npy`` under a temporary name, then rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, points)
    os.replace(tmp, path)


class ModelNet40H5(_ModelNet40):
    """ModelNet40 as the PointNet HDF5 release (``modelnet40_ply_hdf5_2048/``), held in memory.

    The release: ``train_files.txt`` / ``test_files.txt`` list the ``ply_data_{train0..4,test0..1}.h5``
    files (by a relative path, resolved by its base name in ``root``), ``shape_names.txt`` names the
    classes in label order; each file has ``data`` (B, 2048, 3) float32, ``label`` (B, 1) or (B,)
    integers and optionally ``normal`` (B, 2048, 3).

    Args:
        root: the release folder.
        split: ``train`` or ``test``.
        num_points: N, the first N of each shape's points (what PointNet's training takes).
        use_normals: points (N, 6) with the ``normal`` arrays.
        transforms: applied to each :class:`PointSet` with its generator (a list or one transform).
        seed: augmentation seed.
        up_axis: the release's up axis (``"y"``, as PointNet's augmentation rotates about y); points
            come out z-up.

    Attributes:
        frame_ids: shape ids ``<file>.h5:<row>``; ``classes``: the names of ``shape_names.txt``;
        ``points`` (S, N, 3|6) float32 and ``labels`` (S,) int64, all shapes of the split.

    Raises:
        ShapeDataNotFoundError: ``root`` or a list / names / listed file is missing.
        ShapeFormatError: naming the file: not HDF5, no ``data`` or ``label``, arrays that disagree,
            labels outside ``shape_names.txt``, fewer points than ``num_points``, no ``normal``
            although ``use_normals``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_points: int = 1024,
        use_normals: bool = False,
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        up_axis: str = "y",
    ) -> None:
        self._init_common(root, split, num_points, use_normals, up_axis)
        names_file, list_file = self.root / "shape_names.txt", self.root / f"{split}_files.txt"
        for needed in (self.root, list_file, names_file):
            if not needed.exists():
                raise ShapeDataNotFoundError(missing_modelnet40_h5_message(self.root, needed))
        self.classes = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
        files = [self.root / Path(line.strip()).name for line in list_file.read_text().splitlines()]
        files = [f for f in files if f.name]
        if not files:
            raise ShapeFormatError(f"{list_file}: lists no HDF5 files")
        points, labels, ids = [], [], []
        for path in files:
            if not path.is_file():
                raise ShapeDataNotFoundError(
                    f"{path}: listed in {list_file} but missing. "
                    + missing_modelnet40_h5_message(self.root, path)
                )
            p, lab = self._read(path)
            points.append(p)
            labels.append(lab)
            ids += [f"{path.name}:{row}" for row in range(len(lab))]
        self.points: NDArray[np.float32] = np.concatenate(points)
        self.labels: NDArray[np.int64] = np.concatenate(labels)
        self.frame_ids = ids
        self._init_transforms(transforms, seed)

    def _read(self, path: Path) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(B, N, 3|6) points and (B,) labels of one file, checked."""
        import h5py  # here, so that importing the module (and ShapeNet-part's) does not load HDF5

        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in ("data", "label") if k not in f]
                if self.use_normals and "normal" not in f:
                    missing.append("normal (use_normals=True)")
                if missing:
                    raise ShapeFormatError(
                        f"{path}: no {', '.join(missing)} dataset in the HDF5 file (has {sorted(f.keys())})"
                    )
                data, label = f["data"], f["label"]
                if data.ndim != 3 or data.shape[2] != 3:
                    raise ShapeFormatError(f"{path}: data has shape {data.shape}, expected (B, P, 3)")
                count, available = data.shape[:2]
                if label.shape not in ((count,), (count, 1)):
                    raise ShapeFormatError(
                        f"{path}: label has shape {label.shape} but data {data.shape} ({count} shapes)"
                    )
                if self.num_points > available:
                    raise ShapeFormatError(
                        f"shape 0 of {path} has {available} points, {self.num_points} asked"
                    )
                points = np.asarray(data[:, : self.num_points], np.float32)
                labels = np.asarray(label[()], np.int64).reshape(-1)
                if self.use_normals:
                    normal = f["normal"]
                    if normal.shape != data.shape:
                        raise ShapeFormatError(
                            f"{path}: normal has shape {normal.shape} but data {data.shape}"
                        )
                    normals = np.asarray(normal[:, : self.num_points], np.float32)
                    points = np.concatenate([points, normals], axis=2)
        except OSError as error:
            raise ShapeFormatError(f"{path}: not a readable HDF5 file ({error})") from None
        if not np.isfinite(points).all():
            raise ShapeFormatError(f"{path}: NaN or infinite values in data or normal")
        bad = np.flatnonzero((labels < 0) | (labels >= len(self.classes)))
        if len(bad):
            raise ShapeFormatError(
                f"{path}: label(s) {sorted(set(labels[bad].tolist()))[:10]} of shape(s) {bad[:10].tolist()} "
                f"outside the {len(self.classes)} classes of {self.root / 'shape_names.txt'}"
            )
        return points, labels

    def load(self, index: int) -> PointSet:
        """Shape ``index`` before any transform: points (N, 3) or (N, 6) float32 (a copy)."""
        points = to_z_up(self.points[index], self.up_axis)  # a new array unless already z-up
        return PointSet(
            shape_id=self.frame_ids[index],
            points=points.copy() if self.up_axis == "z" else points,
            label=int(self.labels[index]),
        )

    def __repr__(self) -> str:
        return (
            f"ModelNet40H5({str(self.root)!r}, split={self.split!r}, shapes={len(self)}, "
            f"num_points={self.num_points}, use_normals={self.use_normals}, transform={self.transform!r})"
        )
