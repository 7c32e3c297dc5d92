"""Datasets: KITTI-layout frames (real KITTI or the synthetic default) as augmented :class:`Sample`\\ s.

Reproducible augmentation: sample ``i`` of epoch ``e`` is transformed with
``np.random.default_rng([seed, e, i])``, so an epoch is the same whatever the number of DataLoader
workers or the order they run in. The epoch reaches the dataset in one of two ways:

- :class:`~perception.data.samplers.EpochSampler` (what :class:`~perception.data.datamodules.DetectionDataModule` uses) yields
  ``(epoch, index)`` keys, so the epoch travels with each index to whichever worker loads it —
  persistent workers included — and Lightning's fit loop calls its ``set_epoch`` every epoch;
- or ``dataset.set_epoch(e)`` followed by plain integer indices (for loops without a sampler).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from perception.data.kitti import frame_name, load_frame, read_split
from perception.data.samplers import EpochSampler
from perception.data.transforms import Compose, Transform
from perception.structures import KittiRecord, Sample

__all__ = ["EpochDataset", "EpochSampler", "KittiDetectionDataset", "missing_dataset_message"]


def missing_dataset_message(root: str | os.PathLike, split: str, split_folder: str = "training") -> str:
    """What to say when ``root`` holds no KITTI-layout dataset: where data goes and how to get it."""
    return (
        f"{root}: no dataset here (expected {Path(root) / 'ImageSets' / f'{split}.txt'} and "
        f"{Path(root) / split_folder / 'velodyne'}/). Datasets live under data/ (see data/README.md). "
        "For the synthetic default run "
        "`python tools/make_synthetic.py --out data/synthetic --frames 2000 --seed 0`; for real KITTI, "
        "download the velodyne, calib and label_2 archives of the KITTI 3D object benchmark, unzip them "
        "to data/kitti/training/{velodyne,calib,label_2} (and testing/{velodyne,calib}) and put the "
        "split files in data/kitti/ImageSets/{train,val,test}.txt."
    )


class EpochDataset(Dataset[Sample]):
    """The part every detection dataset shares: per-(seed, epoch, index) augmentation (module docstring).

    A subclass sets ``frame_ids``, ``split`` and calls :meth:`_init_transforms`; it implements
    :meth:`load` (sample ``index`` as read, before any transform).
    """

    frame_ids: list[str]
    split: str

    def _init_transforms(self, transforms: Transform | Sequence[Transform] | None, seed: int) -> None:
        if transforms is None or isinstance(transforms, Transform):
            self.transform = transforms
        else:
            self.transform = Compose(list(transforms))
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.frame_ids)

    def set_epoch(self, epoch: int) -> None:
        """The epoch integer indices use (keys from :class:`EpochSampler` carry their own)."""
        self.epoch = int(epoch)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The generator that augments sample ``index`` in ``epoch``."""
        return np.random.default_rng([self.seed, epoch, index])

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        """Sample ``key`` (an index, at the dataset's epoch) or ``(epoch, index)``, transformed."""
        if isinstance(key, (tuple, list)):
            epoch, index = (int(k) for k in key)
        else:
            epoch, index = self.epoch, int(key)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames of split '{self.split}'")
        index %= len(self)
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample, self.rng(epoch, index))
        return sample


class KittiDetectionDataset(EpochDataset):
    """Frames of one ImageSets split as :class:`Sample`\\ s for detection.

    Args:
        root: KITTI-layout root (``ROOT/ImageSets/{split}.txt``, ``ROOT/{split_folder}/velodyne``, ...).
        split: the ImageSets name (``train``, ``val``, ``test``, ...).
        class_names: the training classes; ``labels`` index into them. Objects of other types (Van,
            Truck, Person_sitting, Misc, ...) are not in ``boxes``; DontCare never is.
        transforms: applied in order with the sample's generator (a list or one transform).
        seed: augmentation seed (with the epoch and index, see the module docstring).
        split_folder: ``training`` or ``testing`` (no labels: every sample has M = 0).
        frame_ids: exactly these frames (ids as the velodyne files name them, ``"000123"``; ints are
            zero-padded) instead of the split file's; ``split`` then only names them in messages.

    A sample's ``record`` is a :class:`~perception.structures.KittiRecord`: the calibration, the
    image shape and every labelled object of the frame (all types, before any transform), what
    result-file writers and the KITTI metric need.

    Raises:
        FileNotFoundError: ``root``, the split file or a requested frame is missing; the message
            says where data goes and how to get it.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        class_names: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
        transforms: Transform | Sequence[Transform] | None = None,
        seed: int = 0,
        split_folder: str = "training",
        frame_ids: Sequence[str | int] | None = None,
    ) -> None:
        self.root = Path(root)
        velodyne = self.root / split_folder / "velodyne"
        if not velodyne.is_dir() or (
            frame_ids is None and not (self.root / "ImageSets" / f"{split}.txt").is_file()
        ):
            raise FileNotFoundError(missing_dataset_message(self.root, split, split_folder))
        self.split, self.split_folder = split, split_folder
        if frame_ids is None:
            self.frame_ids = read_split(self.root, split)
        else:
            self.frame_ids = [_scan_id(velodyne, f) for f in frame_ids]
            missing = [f for f in self.frame_ids if not (velodyne / f"{f}.bin").is_file()]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise FileNotFoundError(f"{velodyne}: no scan for frame(s) {shown}")
        self.class_names = tuple(class_names)
        self._init_transforms(transforms, seed)

    def load(self, index: int) -> Sample:
        """Sample ``index`` as read, before any transform (points (N, 4) float32, lidar frame)."""
        frame = load_frame(self.root, self.frame_ids[index], self.split_folder)
        known = np.isin(frame.names, self.class_names)
        label_of = {name: i for i, name in enumerate(self.class_names)}
        return Sample(
            frame_id=frame.frame_id,
            points=frame.points,
            boxes=frame.boxes[known],
            labels=np.array([label_of[n] for n in frame.names[known]], dtype=np.int64),
            difficulty=frame.difficulty[known],
            record=KittiRecord(
                calib=frame.calib,
                image_shape=frame.image_shape,
                objects=frame.objects(),
                boxes_lidar=frame.boxes,
                difficulty=frame.difficulty,
                dontcare_bbox=frame.dontcare_bbox,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"KittiDetectionDataset({str(self.root)!r}, split={self.split!r}, frames={len(self)}, "
            f"class_names={self.class_names}, transform={self.transform!r})"
        )


def _scan_id(velodyne: Path, frame: str | int) -> str:
    """``frame`` as the scans in ``velodyne`` name it: ``7`` and ``"7"`` are ``000007`` where that exists."""
    name = frame_name(frame)
    if not (velodyne / f"{name}.bin").is_file() and name.isdigit():
        padded = f"{int(name):06d}"
        if (velodyne / f"{padded}.bin").is_file():
            return padded
    return name
