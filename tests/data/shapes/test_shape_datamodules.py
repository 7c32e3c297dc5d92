"""The shape data modules: loaders of PointSetBatches from the synthetic shapes and from tiny real-format
files (ModelNet40 OFF and HDF5, ShapeNet-part), with per-epoch augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.data.datasets import EpochSampler
from perception.data.shapes import PartSegmentationDataModule, ShapeClassificationDataModule
from perception.data.shapes.synthetic import SYNTHETIC_PARTS, SYNTHETIC_SHAPE_CLASSES
from perception.structures.shapes import MODELNET40_CLASSES, SHAPENET_PART, PointSetBatch

LOADING = {"num_workers": 0, "batch_size": 4}


def test_synthetic_classification_loaders() -> None:
    dm = ShapeClassificationDataModule(num_points=64, num_train=8, num_val=6, val_batch_size=3, **LOADING)
    assert dm.class_names == SYNTHETIC_SHAPE_CLASSES and dm.num_classes == len(SYNTHETIC_SHAPE_CLASSES)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler)
    batches = list(loader)
    assert [len(b) for b in batches] == [4, 4]
    batch = batches[0]
    assert isinstance(batch, PointSetBatch)
    assert batch.points.shape == (4, 64, 3) and batch.points.dtype == torch.float32
    assert batch.labels.dtype == torch.int64 and batch.part_labels is None
    for shape_id, label in zip(batch.shape_ids, batch.labels.tolist(), strict=True):
        assert shape_id.startswith("synthetic/train/")
        assert label == int(shape_id.rsplit("/", 1)[1]) % len(SYNTHETIC_SHAPE_CLASSES)
    val = list(dm.val_dataloader())
    assert [b.points.shape for b in val] == [(3, 64, 3), (3, 64, 3)]
    assert all(s.startswith("synthetic/test/") for b in val for s in b.shape_ids)
    # validation shapes are as generated: normalised to the unit sphere
    norms = torch.linalg.vector_norm(val[0].points, dim=-1).amax(dim=1)
    torch.testing.assert_close(norms, torch.ones(3), atol=1e-5, rtol=0)


def test_training_augmentation_changes_with_the_epoch() -> None:
    dm = ShapeClassificationDataModule(num_points=32, num_train=4, num_val=4, use_normals=True, **LOADING)
    dm.setup("fit")
    first = next(iter(dm.train_dataloader()))
    assert first.points.shape == (4, 32, 6)
    normals = first.points[..., 3:]
    torch.testing.assert_close(
        torch.linalg.vector_norm(normals, dim=-1), torch.ones(4, 32), atol=1e-5, rtol=0
    )
    again = next(iter(dm.train_dataloader()))
    assert torch.equal(first.points, again.points)  # the same epoch gives the same batch
    dm.set_epoch(1)
    later = next(iter(dm.train_dataloader()))
    assert not torch.equal(first.points, later.points)
    plain = ShapeClassificationDataModule(num_points=32, num_train=4, num_val=4, augment=False, **LOADING)
    assert plain.train_transforms() == [] and len(dm.train_transforms()) == 4


def test_synthetic_part_segmentation_loaders() -> None:
    dm = PartSegmentationDataModule(num_points=96, num_train=8, num_val=4, **LOADING)
    assert dm.taxonomy is SYNTHETIC_PARTS
    assert dm.num_parts == SYNTHETIC_PARTS.num_parts and dm.num_categories == SYNTHETIC_PARTS.num_categories
    dm.setup(None)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        batch = next(iter(loader))
        assert isinstance(batch, PointSetBatch)
        assert batch.points.shape == (4, 96, 3) and batch.part_labels.shape == (4, 96)
        mask = torch.from_numpy(SYNTHETIC_PARTS.part_mask())[batch.labels]  # (B, P) the shapes' parts
        assert torch.gather(mask, 1, batch.part_labels).all()


def test_part_segmentation_categories_and_bad_arguments() -> None:
    dm = PartSegmentationDataModule(num_points=32, num_train=4, num_val=2, categories=["table"], **LOADING)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert set(batch.labels.tolist()) == {SYNTHETIC_PARTS.categories.index("table")}
    with pytest.raises(ValueError, match="categories"):
        PartSegmentationDataModule(categories=["teapot"])
    with pytest.raises(ValueError, match="dataset"):
        ShapeClassificationDataModule(dataset="modelnet10")
    with pytest.raises(ValueError, match="batch"):
        PartSegmentationDataModule(batch_size=0)


# --------------------------------------------------------------------------------------------------
# the real formats, from tiny files


def _write_off(path: Path, scale: float) -> None:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float) * scale
    faces = ["3 0 2 1", "3 0 1 3", "3 0 3 2", "3 1 2 3"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "OFF\n4 4 0\n" + "".join(f"{x} {y} {z}\n" for x, y, z in vertices) + "\n".join(faces) + "\n"
    )


def test_modelnet40_off_module(tmp_path: Path) -> None:
    pytest.importorskip("perception.data.shapes.modelnet")
    for k, name in enumerate(MODELNET40_CLASSES):
        for split in ("train", "test"):
            if k < 2 or split == "train":  # two test shapes in all
                _write_off(tmp_path / name / split / f"{name}_0001.off", 1 + k)
            else:
                (tmp_path / name / split).mkdir(parents=True)
    dm = ShapeClassificationDataModule("modelnet40_off", root=str(tmp_path), num_points=48, **LOADING)
    assert dm.class_names == MODELNET40_CLASSES
    dm.setup(None)
    assert len(dm.train_set) == 40 and len(dm.val_set) == 2
    batch = next(iter(dm.val_dataloader()))
    assert batch.points.shape == (2, 48, 3) and batch.labels.tolist() == [0, 1]
    radius = torch.linalg.vector_norm(batch.points, dim=-1).amax(dim=1)
    torch.testing.assert_close(radius, torch.ones(2), atol=1e-5, rtol=0)  # normalised
    train = next(iter(dm.train_dataloader()))
    assert train.points.shape == (4, 48, 3)


def test_modelnet40_h5_module(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("perception.data.shapes.modelnet")
    names = ["cone", "cup", "vase"]
    (tmp_path / "shape_names.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("test", 3)):
        with h5py.File(tmp_path / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = rng.uniform(-0.5, 0.5, (count, 40, 3)).astype(np.float32)
            f["label"] = (np.arange(count) % 3).astype(np.uint8)[:, None]
        (tmp_path / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}0.h5\n")
    dm = ShapeClassificationDataModule("modelnet40_h5", root=str(tmp_path), num_points=32, **LOADING)
    dm.setup("fit")
    assert dm.class_names == tuple(names) and dm.num_classes == 3
    batch = next(iter(dm.train_dataloader()))
    assert batch.points.shape == (4, 32, 3)
    val = next(iter(dm.val_dataloader()))
    assert val.labels.tolist() == [0, 1, 2] and val.shape_ids[0] == "ply_data_test0.h5:0"


def test_shapenet_part_module(tmp_path: Path) -> None:
    pytest.importorskip("perception.data.shapes.shapenet_part")
    mug, table = SHAPENET_PART.categories.index("Mug"), SHAPENET_PART.categories.index("Table")
    (tmp_path / "synsetoffset2category.txt").write_text(
        f"Mug\t{SHAPENET_PART.synsets[mug]}\nTable\t{SHAPENET_PART.synsets[table]}\n"
    )
    rng = np.random.default_rng(0)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, (category, count) in enumerate([(mug, 70), (table, 50), (mug, 30), (table, 90)]):
        synset, model = SHAPENET_PART.synsets[category], f"model{i}"
        parts = rng.choice(SHAPENET_PART.parts[category], count)
        rows = np.column_stack([rng.normal(size=(count, 3)), np.tile([0, 0, 1], (count, 1)), parts])
        (tmp_path / synset).mkdir(exist_ok=True)
        np.savetxt(tmp_path / synset / f"{model}.txt", rows, fmt="%.6f")
        splits[("train", "train", "val", "test")[i]].append(f"shape_data/{synset}/{model}")
    (tmp_path / "train_test_split").mkdir()
    for split, entries in splits.items():
        (tmp_path / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    dm = PartSegmentationDataModule(
        "shapenet_part", root=str(tmp_path), num_points=64, use_normals=True, **LOADING
    )
    assert dm.taxonomy is SHAPENET_PART and dm.num_parts == 50 and dm.num_categories == 16
    dm.setup(None)
    batch = next(iter(dm.train_dataloader()))  # 70 and 50 points both resampled to 64
    assert batch.points.shape == (2, 64, 6) and batch.part_labels.shape == (2, 64)
    assert sorted(batch.labels.tolist()) == [mug, table]
    mask = torch.from_numpy(SHAPENET_PART.part_mask())[batch.labels]
    assert torch.gather(mask, 1, batch.part_labels).all()
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    assert val.labels.tolist() == [mug] and test.labels.tolist() == [table]
    assert val.points.shape == test.points.shape == (1, 64, 6)
