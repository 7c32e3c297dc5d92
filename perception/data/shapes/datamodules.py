"""The shape DataModules: classification (synthetic shapes, ModelNet40) and part segmentation (synthetic
part shapes, ShapeNet-part), augmented, in loaders of :class:`~perception.structures.shapes.PointSetBatch`\\ es.

Epochs, workers and numba are handled as in :mod:`perception.data.datamodules` (an
:class:`~perception.data.datasets.EpochSampler` for training, so shape ``i`` of epoch ``e`` is augmented
with ``default_rng([seed, e, i])`` whatever the workers; workers from a ``forkserver``; the same
helpers build the loaders, with :func:`~perception.structures.shapes.collate_point_sets` as the collate
function). The default ``dataset="synthetic"`` needs no files: its shapes are generated on the fly
(:mod:`perception.data.shapes.synthetic`, about a millisecond per shape), so a shape config trains on a
fresh clone; the real datasets are read from ``root`` (data/README.md says where they go).

The training augmentation is PointNet's: a rotation about the up axis (z), an anisotropic scale in
[0.8, 1.25], a 1 cm jitter clipped at 5 cm (in unit-sphere units) and a shuffle; validation, test and
prediction only normalise (and resample, for part segmentation: a ShapeNet-part shape has all its
points, so both pipelines bring it to ``num_points``).
"""

from __future__ import annotations

import math
from pathlib import Path

from perception.data.datamodules import EpochDataModule
from perception.data.datasets import EpochDataset, EpochSampler
from perception.data.shapes.synthetic import (
    SYNTHETIC_PARTS,
    SYNTHETIC_SHAPE_CLASSES,
    SyntheticPartShapes,
    SyntheticShapes,
)
from perception.data.shapes.transforms import (
    NormalizeUnitSphere,
    RandomJitter,
    RandomRotationZ,
    RandomScale,
    ResamplePoints,
    ShapeTransform,
    ShufflePoints,
)
from perception.structures.shapes import (
    MODELNET40_CLASSES,
    SHAPENET_PART,
    PartTaxonomy,
    collate_point_sets,
)

__all__ = [
    "CLASSIFICATION_DATASETS",
    "DEFAULT_ROOTS",
    "PART_DATASETS",
    "PartSegmentationDataModule",
    "ShapeClassificationDataModule",
]

CLASSIFICATION_DATASETS = ("synthetic", "modelnet40_off", "modelnet40_h5")
PART_DATASETS = ("synthetic", "shapenet_part")
DEFAULT_ROOTS: dict[str, str] = {
    "modelnet40_off": "data/modelnet40",
    "modelnet40_h5": "data/modelnet40_ply_hdf5_2048",
    "shapenet_part": "data/shapenet_part/shapenetcore_partanno_segmentation_benchmark_v0_normal",
}
"""Where each real dataset is read from when ``root`` is not given (see data/README.md)."""


def _augmentation(rotate: bool) -> list[ShapeTransform]:
    """PointNet's augmentation (module docstring); ``rotate``: also turn about z."""
    steps: list[ShapeTransform] = [RandomRotationZ(math.pi)] if rotate else []
    return [*steps, RandomScale(0.8, 1.25, anisotropic=True), RandomJitter(0.01, 0.05), ShufflePoints()]


class _ShapeDataModule(EpochDataModule):
    """What both shape modules share: the loaders' collate, the checks and the loader settings."""

    preload = ("lightning", "perception.data.shapes.datamodules", "trimesh.creation")
    collate_fn = staticmethod(collate_point_sets)

    def _init_common(self, choices: tuple[str, ...]) -> None:
        """Check and keep the arguments both modules take, read from ``hparams`` (so call it right after
        ``save_hyperparameters``)."""
        hp = self.hparams
        if hp.dataset not in choices:
            raise ValueError(f"dataset must be one of {choices}, got {hp.dataset!r}")
        batch_size, val_batch_size, num_workers = hp.batch_size, hp.val_batch_size, hp.num_workers
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1) or num_workers < 0:
            raise ValueError(
                f"need batch sizes >= 1 and num_workers >= 0, got {batch_size}, {val_batch_size}, {num_workers}"
            )
        if hp.num_points < 1 or hp.num_train < 0 or hp.num_val < 0:
            raise ValueError(
                f"need num_points >= 1 and sizes >= 0, got {hp.num_points}, {hp.num_train}, {hp.num_val}"
            )
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.seed = hp.seed
        self.num_workers = num_workers
        self.pin_memory = hp.pin_memory
        self.persistent_workers = hp.persistent_workers
        self.multiprocessing_context = hp.multiprocessing_context
        self.train_set: EpochDataset | None = None
        self.val_set: EpochDataset | None = None
        self.test_set: EpochDataset | None = None
        self.predict_set: EpochDataset | None = None
        self._epoch = 0
        self._train_sampler: EpochSampler | None = None
        self.dataset = hp.dataset
        self.root = hp.root if hp.root is not None else DEFAULT_ROOTS.get(hp.dataset)
        self.num_points, self.use_normals = hp.num_points, hp.use_normals
        self.num_train, self.num_val = hp.num_train, hp.num_val
        self.augment, self.occlusion = hp.augment, hp.occlusion

    def _synthetic_args(self, split: str, transforms: list[ShapeTransform]) -> dict:
        """The keyword arguments of a synthetic set of ``split``."""
        return {
            "num_shapes": self.num_train if split == "train" else self.num_val,
            "num_points": self.num_points,
            "use_normals": self.use_normals,
            "seed": self.seed,
            "transforms": transforms,
            "occlusion": self.occlusion,
        }

    def make_dataset(self, split: str, train: bool) -> EpochDataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build the sets the stage needs (validation, test and prediction read the same held-out split)."""
        if self.num_workers > 0:
            self._worker_context()  # start the forkserver early, while the model is being built
        if stage in (None, "fit"):
            self.train_set = self.make_dataset("train", train=True)
        if stage in (None, "fit", "validate"):
            self.val_set = self.make_dataset(self.val_split, train=False)
        if stage in (None, "test"):
            self.test_set = self.make_dataset(self.test_split, train=False)
        if stage in (None, "predict"):
            self.predict_set = self.make_dataset(self.test_split, train=False)


class ShapeClassificationDataModule(_ShapeDataModule):
    """Shape classification data: the embedded synthetic shapes (default) or ModelNet40.

    Args:
        dataset: ``"synthetic"`` (:class:`~perception.data.shapes.synthetic.SyntheticShapes`, 14
            classes, generated on the fly), ``"modelnet40_off"`` (the OFF meshes, sampled:
            :class:`~perception.data.shapes.modelnet.ModelNet40Off`) or ``"modelnet40_h5"`` (PointNet's
            HDF5 release: :class:`~perception.data.shapes.modelnet.ModelNet40H5`).
        root: the real dataset's folder (default: ``data/modelnet40`` or
            ``data/modelnet40_ply_hdf5_2048``); unused for ``synthetic``.
        num_points: N, points per shape.
        use_normals: points (N, 6) with normals (the HDF5 release needs its ``normal`` arrays).
        num_train, num_val: synthetic shapes in the training and the held-out set (only ``synthetic``).
        batch_size: training batch size; val_batch_size: the others (default the same).
        seed: the synthetic shapes', the augmentation's and the shuffle's seed.
        num_workers, pin_memory, persistent_workers, multiprocessing_context: as
            :class:`~perception.data.datamodules.DetectionDataModule`'s.
        augment: PointNet's training augmentation (module docstring); False trains on the shapes as read.
        occlusion: synthetic shapes are partial views (else whole surfaces).
        cache_dir: where ``modelnet40_off`` keeps sampled points (``.npy``; None: sample on every read).

    Validation, test and prediction all read the held-out split (ModelNet40's ``test``, the synthetic
    ``test`` split).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        num_points: int = 1024,
        use_normals: bool = False,
        num_train: int = 4000,
        num_val: int = 800,
        batch_size: int = 32,
        val_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        multiprocessing_context: str | None = "forkserver",
        augment: bool = True,
        occlusion: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._init_common(CLASSIFICATION_DATASETS)
        self.cache_dir = cache_dir
        self.val_split = self.test_split = "test"
        self._class_names: tuple[str, ...] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        """The class names, label order (ModelNet40 HDF5: its ``shape_names.txt``, once read)."""
        if self._class_names is not None:
            return self._class_names
        return SYNTHETIC_SHAPE_CLASSES if self.dataset == "synthetic" else MODELNET40_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def train_transforms(self) -> list[ShapeTransform]:
        """Normalisation (real data), then PointNet's augmentation when ``augment``."""
        return self.val_transforms() + (_augmentation(rotate=True) if self.augment else [])

    def val_transforms(self) -> list[ShapeTransform]:
        """Normalisation to the unit sphere (the synthetic shapes are generated normalised: none)."""
        return [] if self.dataset == "synthetic" else [NormalizeUnitSphere()]

    def make_dataset(self, split: str, train: bool) -> EpochDataset:
        """The set of ``split`` (``train`` or ``test``) with the training or the held-out transforms."""
        transforms = self.train_transforms() if train else self.val_transforms()
        if self.dataset == "synthetic":
            return SyntheticShapes(split, **self._synthetic_args(split, transforms))
        from perception.data.shapes.modelnet import ModelNet40H5, ModelNet40Off

        root = str(self.root)
        if self.dataset == "modelnet40_h5":
            data = ModelNet40H5(root, split, self.num_points, self.use_normals, transforms, seed=self.seed)
            self._class_names = tuple(data.classes)
            return data
        return ModelNet40Off(
            root,
            split,
            self.num_points,
            self.use_normals,
            transforms=transforms,
            seed=self.seed,
            cache_dir=self.cache_dir,
        )


class PartSegmentationDataModule(_ShapeDataModule):
    """Part segmentation data: the embedded synthetic part shapes (default) or ShapeNet-part.

    Args:
        dataset: ``"synthetic"`` (:class:`~perception.data.shapes.synthetic.SyntheticPartShapes`: 8
            categories, 21 parts, generated on the fly) or ``"shapenet_part"``
            (:class:`~perception.data.shapes.shapenet_part.ShapeNetPart`: 16 categories, 50 parts).
        root: ShapeNet-part's folder (default
            ``data/shapenet_part/shapenetcore_partanno_segmentation_benchmark_v0_normal``); unused for
            ``synthetic``.
        num_points: N, points per shape (ShapeNet-part shapes are resampled to it,
            :class:`~perception.data.shapes.transforms.ResamplePoints`).
        categories: only these categories (labels and part ids stay the whole taxonomy's).
        use_normals: points (N, 6) with normals.
        num_train, num_val: synthetic shapes in the training and the held-out set (only ``synthetic``).
        batch_size, val_batch_size, seed, num_workers, pin_memory, persistent_workers,
            multiprocessing_context, augment, occlusion: as :class:`ShapeClassificationDataModule`'s
            (the augmentation turns no shape: part segmentation keeps the data's orientation).

    Validation reads ShapeNet-part's ``val`` split, test and prediction its ``test`` split; the
    synthetic data has one held-out split (``test``) for all three.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        num_points: int = 2048,
        categories: list[str] | None = None,
        use_normals: bool = False,
        num_train: int = 4000,
        num_val: int = 800,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        multiprocessing_context: str | None = "forkserver",
        augment: bool = True,
        occlusion: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._init_common(PART_DATASETS)
        self.categories = None if categories is None else [str(c) for c in categories]
        unknown = [c for c in self.categories or () if c not in self.taxonomy.categories]
        if unknown:
            raise ValueError(
                f"unknown categories {unknown}; {self.taxonomy.name} has {self.taxonomy.categories}"
            )
        self.val_split, self.test_split = ("test", "test") if dataset == "synthetic" else ("val", "test")

    @property
    def taxonomy(self) -> PartTaxonomy:
        """The categories and their global part ids (labels and part labels index into them)."""
        return SYNTHETIC_PARTS if self.dataset == "synthetic" else SHAPENET_PART

    @property
    def num_parts(self) -> int:
        return self.taxonomy.num_parts

    @property
    def num_categories(self) -> int:
        return self.taxonomy.num_categories

    def train_transforms(self) -> list[ShapeTransform]:
        """The held-out transforms, then scale, jitter and shuffle when ``augment``."""
        return self.val_transforms() + (_augmentation(rotate=False) if self.augment else [])

    def val_transforms(self) -> list[ShapeTransform]:
        """ShapeNet-part: normalise all of a shape's points, then resample them to ``num_points``; the
        synthetic shapes are generated normalised, at ``num_points``: none."""
        if self.dataset == "synthetic":
            return []
        return [NormalizeUnitSphere(), ResamplePoints(self.num_points)]

    def make_dataset(self, split: str, train: bool) -> EpochDataset:
        """The set of ``split`` with the training or the held-out transforms."""
        transforms = self.train_transforms() if train else self.val_transforms()
        if self.dataset == "synthetic":
            return SyntheticPartShapes(
                split, categories=self.categories, **self._synthetic_args(split, transforms)
            )
        from perception.data.shapes.shapenet_part import ShapeNetPart

        return ShapeNetPart(
            Path(str(self.root)),
            split,
            categories=self.categories,
            use_normals=self.use_normals,
            transforms=transforms,
            seed=self.seed,
        )
