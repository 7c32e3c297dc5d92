"""The detection DataModule: datasets, augmentation and loaders for a KITTI-layout root.

Two choices worth knowing:

- **Epochs.** The train loader's sampler is an :class:`~perception.data.datasets.EpochSampler`: it
  yields ``(epoch, index)`` keys and Lightning's fit loop calls its ``set_epoch`` at every epoch
  start, so sample ``i`` of epoch ``e`` is augmented with ``default_rng([seed, e, i])`` whatever the
  number of workers (persistent ones included). Outside Lightning call :meth:`DetectionDataModule.set_epoch`.
- **Workers and numba.** numba's ``parallel=True`` kernels run on GNU OpenMP here, and a process
  forked after the parent used it dies when it uses it again ("fork() called from a process
  already using GNU OpenMP"). Workers therefore start from a ``forkserver`` by default: a clean
  process that never ran OpenMP forks them, whatever the parent did, and numba's threading layer
  stays OpenMP (the fast, thread-safe one) for the rest of the program. The server preloads
  lightning, torch and perception, so a worker starts in well under a second once the server is up
  (a few seconds, started in :meth:`~DetectionDataModule.setup` so it overlaps building the model);
  ``persistent_workers=True`` (the default) keeps them for the whole fit. As with ``spawn``, the
  main script must guard its entry point with ``if __name__ == "__main__":`` and transforms must be
  picklable (plain classes are). Pass ``multiprocessing_context="fork"`` for the fastest start when
  nothing in the parent uses numba's OpenMP layer, or when ``NUMBA_THREADING_LAYER=workqueue`` is
  set before numba's first parallel call.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.forkserver
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from perception.data.database import INDEX_NAME, build_gt_database
from perception.data.datasets import KittiDetectionDataset
from perception.data.samplers import EpochSampler, ShardSampler
from perception.data.transforms import (
    CameraFovFilter,
    GlobalRotation,
    GlobalScaling,
    GlobalTranslation,
    GroundTruthSampling,
    IntensityJitter,
    PointJitter,
    PointShuffle,
    RandomFlip,
    RangeFilter,
    SensorTilt,
    Transform,
)
from perception.structures import collate

__all__ = [
    "DetectionDataModule",
    "EpochDataModule",
    "default_train_transforms",
    "default_val_transforms",
    "make_loader",
    "worker_context",
]

KITTI_RANGE: tuple[float, ...] = (0.0, -40.0, -3.0, 70.4, 40.0, 1.0)
"""OpenPCDet's KITTI point-cloud range ``[x_min, y_min, z_min, x_max, y_max, z_max]``, metres."""

_SAMPLE_COUNTS = {"Car": 15, "Pedestrian": 10, "Cyclist": 10, "VEHICLE": 15, "PEDESTRIAN": 10, "CYCLIST": 10}
DATASETS = ("kitti", "waymo")


def default_train_transforms(
    point_cloud_range: Sequence[float],
    class_names: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
    database: str | None = None,
    camera_fov_only: bool = True,
    domain_randomization: bool = False,
) -> list[Transform]:
    """The usual KITTI augmentation (OpenPCDet's SECOND / PV-RCNN configs).

    The camera field-of-view filter (``camera_fov_only``), ground-truth sampling (when ``database``
    is given; Car 15, Pedestrian 10, Cyclist 10, other classes 10, objects with ≥ 5 points and a
    KITTI difficulty), flip across the x axis, rotation in ±π/4, scaling in [0.95, 1.05], the range
    filter, point shuffle.

    ``domain_randomization`` (for training on the simulator and predicting on a real sensor) adds,
    before the range filter: sensor height N(0, 0.08²) m (:class:`GlobalTranslation` in z), pitch and
    roll in ±0.5° (:class:`SensorTilt`), intensity gain, floor and noise (:class:`IntensityJitter`)
    and point jitter of 1 cm (:class:`PointJitter`).
    """
    transforms: list[Transform] = [CameraFovFilter()] if camera_fov_only else []
    if database is not None:
        counts = {name: _SAMPLE_COUNTS.get(name, 10) for name in class_names}
        transforms.append(GroundTruthSampling(database, counts, class_names=class_names))
    transforms += [RandomFlip(("x",)), GlobalRotation(math.pi / 4), GlobalScaling(0.95, 1.05)]
    if domain_randomization:
        transforms += [
            GlobalTranslation((0.0, 0.0, 0.08)),
            SensorTilt(0.5),
            IntensityJitter(),
            PointJitter(0.01, 0.03),
        ]
    return [*transforms, RangeFilter(point_cloud_range), PointShuffle()]


def default_val_transforms(
    point_cloud_range: Sequence[float], camera_fov_only: bool = True
) -> list[Transform]:
    """Validation and prediction: the camera field-of-view and range filters (no randomness)."""
    return (
        [CameraFovFilter(), RangeFilter(point_cloud_range)]
        if camera_fov_only
        else [RangeFilter(point_cloud_range)]
    )


def worker_context(
    name: str | None, preload: Sequence[str] = ("lightning", "perception.data.datasets")
) -> multiprocessing.context.BaseContext:
    """The multiprocessing context DataLoader workers start from (``forkserver``, ``spawn``, ``fork``;
    None: the platform's default). A forkserver is started here with ``preload`` imported once, so
    every worker forks with them loaded (module docstring); preloading has no effect once the
    server runs."""
    context = multiprocessing.get_context(name)
    if name == "forkserver":
        # The server imports lightning, torch and perception once and every worker forks from it
        # with them loaded (else each worker imports them again when it re-imports the main
        # script: seconds each, for every loader). Started here, it loads them in the background
        # while this process goes on; preloading has no effect once the server runs.
        # ("__main__" is not preloaded: Python < 3.14 ignores it for scripts.)
        context.set_forkserver_preload(list(preload))
        multiprocessing.forkserver.ensure_running()
    return context


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | None,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = True,
    multiprocessing_context: str | None = "forkserver",
    preload: Sequence[str] = ("lightning", "perception.data.datasets"),
    collate_fn: Callable[[list[Any]], Any] = collate,
    seed: int | None = None,
) -> DataLoader:
    """A DataLoader of :class:`~perception.structures.Batch`\\ es (or of what ``collate_fn`` makes of a
    list of samples) in ``sampler``'s order (or the dataset's), with workers started as
    :func:`worker_context` starts them. With ``seed`` the loader draws its workers' base seed from a
    generator of its own instead of torch's global one, so starting an epoch leaves the global random
    state alone (exact resume, :mod:`perception.tasks.resume`)."""
    workers = {}
    if num_workers > 0:
        workers = {
            "multiprocessing_context": worker_context(multiprocessing_context, preload),
            "persistent_workers": persistent_workers,
        }
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        generator=None if seed is None else torch.Generator().manual_seed(int(seed)),
        **workers,
    )


class EpochDataModule(L.LightningDataModule):
    """What the data modules share: per-epoch augmentation through an :class:`EpochSampler`, one
    loader per split, DDP and exact resume.

    Under DDP (the rank and world size come from the attached trainer) training takes an
    :class:`~perception.data.samplers.EpochSampler` share of each epoch and evaluation a
    :class:`~perception.data.samplers.ShardSampler` block, unpadded, so metrics and written files
    cover every sample once. Every checkpoint holds :meth:`state_dict` (where in its epoch the fit
    was); resuming from it skips the batches already trained on.

    A subclass sets ``train_set``, ``val_set``, ``test_set`` and ``predict_set`` in ``setup`` and has
    ``batch_size``, ``val_batch_size``, ``seed``, ``num_workers``, ``pin_memory``,
    ``persistent_workers`` and ``multiprocessing_context``.
    """

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    test_set: Dataset | None = None
    predict_set: Dataset | None = None
    _epoch: int = 0
    _train_sampler: EpochSampler | None = None

    preload: tuple[str, ...] = ("lightning", "perception.data.datasets")
    """Modules the workers' forkserver imports once (:func:`worker_context`)."""

    collate_fn: Callable[[list[Any]], Any] = staticmethod(collate)
    """How the loaders stack samples (detection :class:`~perception.structures.Batch`\\ es by default)."""

    def _worker_context(self) -> multiprocessing.context.BaseContext:
        return worker_context(self.multiprocessing_context, self.preload)

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None) -> DataLoader:
        return make_loader(
            dataset,
            batch_size,
            sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            multiprocessing_context=self.multiprocessing_context,
            preload=self.preload,
            collate_fn=self.collate_fn,
            seed=self.seed,
        )

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation the train loader gives next (Lightning sets it itself)."""
        self._epoch = int(epoch)
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    def replicas(self) -> tuple[int, int]:
        """(number of processes, this one's rank) of the trainer this module is attached to: (1, 0)
        outside DDP."""
        trainer = getattr(self, "trainer", None)
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs:
            return 1, 0
        return int(kwargs["num_replicas"]), int(kwargs["rank"])

    # ------------------------------------------------------------------------------- resuming

    def state_dict(self) -> dict[str, Any]:
        """Where in its epoch a fit is, saved in every checkpoint: ``{"epoch", "batches", "batch_size",
        "replicas"}`` (the training batches this process has taken of the epoch). Empty outside a fit."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {
            "epoch": int(trainer.current_epoch),
            "batches": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed),
            "batch_size": int(self.batch_size),
            "replicas": self.replicas()[0],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from a checkpoint: the next train loader skips the batches of the saved epoch that the
        checkpoint's weights were trained on (a checkpoint saved at the end of an epoch skips none).
        The train loader raises ``ValueError`` if the checkpoint was saved mid-epoch with another batch
        size or number of processes (the rest of the epoch could not be the same batches).
        """
        self._resume = dict(state_dict) if state_dict else None

    def _train_skip(self) -> tuple[int, int] | None:
        state = getattr(self, "_resume", None)
        if not state:
            return None
        saved = (state["batch_size"], state["replicas"])
        if saved != (int(self.batch_size), self.replicas()[0]) and state["batches"] > 0:
            raise ValueError(
                f"the checkpoint was saved after {state['batches']} batches of epoch {state['epoch']} "
                f"with batch_size {saved[0]} on {saved[1]} process(es); resuming with batch_size "
                f"{self.batch_size} on {self.replicas()[0]} cannot continue that epoch with the same "
                "batches: resume with the same data.batch_size and devices, or from an end-of-epoch checkpoint"
            )
        return int(state["epoch"]), int(state["batches"]) * int(self.batch_size)

    # ------------------------------------------------------------------------------- loaders

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        replicas, rank = self.replicas()
        self._train_sampler = EpochSampler(
            len(self.train_set), shuffle=True, seed=self.seed, num_replicas=replicas, rank=rank
        )
        self._train_sampler.set_epoch(self._epoch)
        skip = self._train_skip()
        if skip is not None:
            self._train_sampler.resume(*skip)
        return self._loader(self.train_set, self.batch_size, self._train_sampler)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        replicas, rank = self.replicas()
        return self._loader(dataset, self.val_batch_size, ShardSampler(len(dataset), replicas, rank))

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        assert self.val_set is not None
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        assert self.test_set is not None
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_set is None:
            self.setup("predict")
        assert self.predict_set is not None
        return self._eval_loader(self.predict_set)


class DetectionDataModule(EpochDataModule):
    """Detection data from a KITTI-layout root (real KITTI or the synthetic default) or converted Waymo.

    Args:
        root: dataset root (see data/README.md).
        class_names: training classes; labels index into them.
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres, for the default
            transforms' range filter.
        train_split, val_split: ImageSets names.
        test_split: ImageSets name for ``test_dataloader`` (``trainer.test``; default: ``val_split``).
        predict_split: ImageSets name for ``predict_dataloader`` (default: ``val_split``).
        predict_split_folder: its folder (``testing`` for the KITTI test set; default ``split_folder``).
        predict_frame_ids: predict exactly these frames (KITTI ids ``000123``; converted-Waymo keys
            ``<context_name>/<timestamp_micros>``) of ``predict_split_folder`` (Waymo: of the folder
            ``predict_split``) instead of a split file's.
        train_transforms: the training pipeline; None gives :func:`default_train_transforms`.
        val_transforms: validation / prediction pipeline; None gives :func:`default_val_transforms`.
        database: ground-truth database folder (e.g. ``data/synthetic/gt_database``). Used by the
            default train transforms; :meth:`prepare_data` builds it from ``train_split`` when missing.
        camera_fov_only: the default transforms keep only the points in the camera's view (KITTI
            labels objects only there); no effect on explicit transforms.
        domain_randomization: the default train transforms add sensor height, tilt, intensity and
            jitter randomisation (:func:`default_train_transforms`; for training on the simulator
            and predicting on a real sensor); no effect on explicit transforms.
        batch_size: training batch size; val_batch_size: validation / prediction (default the same).
        num_workers: DataLoader workers (0: load in the main process).
        seed: augmentation and shuffle seed.
        pin_memory: pin batches for faster copies to a GPU.
        persistent_workers: keep workers between epochs (only with ``num_workers > 0``).
        multiprocessing_context: how workers start: ``forkserver`` (default, see the module
            docstring), ``spawn`` or ``fork``.
        split_folder: ``training``.
        dataset: ``"kitti"`` (a KITTI-layout root: :class:`~perception.data.datasets.KittiDetectionDataset`)
            or ``"waymo"`` (``tools/convert_waymo.py``'s output:
            :class:`~perception.data.waymo.dataset.WaymoDetectionDataset`; no camera filter, the
            database built with :func:`~perception.data.waymo.database.build_waymo_gt_database`).
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        class_names: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
        point_cloud_range: Sequence[float] = KITTI_RANGE,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_split: str | None = None,
        predict_split_folder: str | None = None,
        predict_frame_ids: list[str] | None = None,
        train_transforms: list[Transform] | None = None,
        val_transforms: list[Transform] | None = None,
        database: str | None = None,
        camera_fov_only: bool = True,
        domain_randomization: bool = False,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        multiprocessing_context: str | None = "forkserver",
        split_folder: str = "training",
        dataset: str = "kitti",
    ) -> None:
        super().__init__()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1) or num_workers < 0:
            raise ValueError(
                f"need batch sizes >= 1 and num_workers >= 0, got {batch_size}, {val_batch_size}, {num_workers}"
            )
        if dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
        camera_fov_only = camera_fov_only and dataset == "kitti"  # Waymo labels all around
        self.save_hyperparameters(ignore=["train_transforms", "val_transforms"])
        self.root, self.dataset = root, dataset
        self.class_names = tuple(class_names)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.train_split, self.val_split = train_split, val_split
        self.test_split = test_split or val_split
        self.predict_split = predict_split or val_split
        self.predict_frame_ids = None if predict_frame_ids is None else [str(f) for f in predict_frame_ids]
        self.predict_split_folder = predict_split_folder or split_folder
        self.database = database
        self.train_transforms = (
            list(train_transforms)
            if train_transforms is not None
            else default_train_transforms(
                self.point_cloud_range, self.class_names, database, camera_fov_only, domain_randomization
            )
        )
        self.val_transforms = (
            list(val_transforms)
            if val_transforms is not None
            else default_val_transforms(self.point_cloud_range, camera_fov_only)
        )
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = multiprocessing_context
        self.split_folder = split_folder
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: Dataset | None = None
        self._epoch = 0
        self._train_sampler: EpochSampler | None = None

    def make_dataset(
        self,
        split: str,
        transforms: list[Transform] | None = None,
        folder: str | None = None,
        frame_ids: list[str] | None = None,
    ) -> Dataset:
        """A dataset of this module's root and classes: ``split``'s frames (or exactly ``frame_ids``),
        through ``transforms`` (default: the validation transforms); ``folder``: KITTI's
        ``training``/``testing`` (default ``split_folder``)."""
        transforms = self.val_transforms if transforms is None else transforms
        if self.dataset == "waymo":
            from perception.data.waymo.dataset import WaymoDetectionDataset

            return WaymoDetectionDataset(
                self.root, split, self.class_names, transforms, seed=self.seed, frame_ids=frame_ids
            )
        return KittiDetectionDataset(
            self.root,
            split,
            self.class_names,
            transforms,
            seed=self.seed,
            split_folder=folder or self.split_folder,
            frame_ids=frame_ids,
        )

    def prepare_data(self) -> None:
        """Build the ground-truth database from the train split when ``database`` is set and missing."""
        if self.database is not None and not (Path(self.database) / INDEX_NAME).is_file():
            self.make_dataset(self.train_split, [])  # a missing root fails here with the helpful message
            if self.dataset == "waymo":
                from perception.data.waymo.database import build_waymo_gt_database

                build_waymo_gt_database(
                    self.root, self.train_split, self.database, self.class_names, val_split=self.val_split
                )
                return
            build_gt_database(
                self.root,
                self.database,
                self.train_split,
                self.class_names,
                self.split_folder,
                self.val_split,
            )

    def setup(self, stage: str | None = None) -> None:
        if self.num_workers > 0:
            self._worker_context()  # start the forkserver early, while the model is being built
        if stage in (None, "fit"):
            self.train_set = self.make_dataset(self.train_split, self.train_transforms)
        if stage in (None, "fit", "validate"):
            self.val_set = self.make_dataset(self.val_split, self.val_transforms)
        if stage in (None, "test"):
            self.test_set = self.make_dataset(self.test_split, self.val_transforms)
        if stage in (None, "predict"):
            self.predict_set = self.make_dataset(
                self.predict_split, self.val_transforms, self.predict_split_folder, self.predict_frame_ids
            )
