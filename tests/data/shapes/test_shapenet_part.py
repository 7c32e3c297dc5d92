"""ShapeNetPart on a two-category tree in the release's layout, written here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from perception.data.shapes.errors import ShapeFormatError
from perception.data.shapes.modelnet import ShapeDataNotFoundError
from perception.data.shapes.shapenet_part import ShapeNetPart, read_part_file
from perception.data.transforms import Transform
from perception.structures.shapes import SHAPENET_PART, PointSet

AIRPLANE, BAG = "02691156", "02773838"  # categories 0 (parts 0..3) and 1 (parts 4..5)
SPLITS = {
    "train": [(AIRPLANE, "a1"), (BAG, "b1"), (AIRPLANE, "a2")],
    "val": [(BAG, "b2")],
    "test": [(AIRPLANE, "a3")],
}


class Shift(Transform):
    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        return sample.replace(points=sample.points + np.float32(rng.uniform(-1, 1)))


def shape_rows(synset: str, model: str) -> np.ndarray:
    """(N, 7) rows of one shape: random points, unit normals, parts of its category."""
    rng = np.random.default_rng(sum(map(ord, synset + model)))
    n = int(rng.integers(20, 40))
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    parts = rng.integers(0, 4, n) if synset == AIRPLANE else rng.integers(4, 6, n)
    return np.column_stack([rng.normal(size=(n, 3)).astype(np.float32), normals.astype(np.float32), parts])


def write_rows(path: Path, rows: np.ndarray) -> None:
    lines = [" ".join(f"{v:.6f}" for v in row) for row in rows]  # as the release writes them
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text(f"Airplane\t{AIRPLANE}\nBag\t{BAG}\n")
    for split, shapes in SPLITS.items():
        entries = [f"shape_data/{synset}/{model}" for synset, model in shapes]
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
        for synset, model in shapes:
            (root / synset).mkdir(exist_ok=True)
            write_rows(root / synset / f"{model}.txt", shape_rows(synset, model))
    return root


def test_values_read_back_exactly(root):
    ds = ShapeNetPart(root, "train", up_axis="z")  # the file's own frame
    assert ds.frame_ids == [f"{AIRPLANE}/a1", f"{BAG}/b1", f"{AIRPLANE}/a2"] and ds.split == "train"
    assert ds.labels.tolist() == [0, 1, 0] and len(ds) == 3
    sample = ds[1]
    rows = np.loadtxt(root / BAG / "b1.txt")
    assert sample.shape_id == f"{BAG}/b1" and sample.label == 1
    assert sample.points.dtype == np.float32 and sample.points.shape == (len(rows), 3)
    np.testing.assert_array_equal(sample.points, rows[:, :3].astype(np.float32))
    assert sample.part_labels.dtype == np.int64
    np.testing.assert_array_equal(sample.part_labels, rows[:, 6].astype(np.int64))
    normals = ShapeNetPart(root, "train", use_normals=True, up_axis="z")[1]
    np.testing.assert_array_equal(normals.points, rows[:, :6].astype(np.float32))
    np.testing.assert_allclose(np.linalg.norm(normals.points[:, 3:], axis=1), 1.0, atol=1e-5)


def test_y_up_files_come_out_z_up(root):
    """ShapeNet is y-up: by default (x, y, z) reads as (x, -z, y), normals too, so +y becomes +z."""
    rows = np.loadtxt(root / BAG / "b1.txt")
    sample = ShapeNetPart(root, "train", use_normals=True)[1]
    for c in (0, 3):
        np.testing.assert_array_equal(sample.points[:, c], rows[:, c].astype(np.float32))
        np.testing.assert_array_equal(sample.points[:, c + 1], -rows[:, c + 2].astype(np.float32))
        np.testing.assert_array_equal(sample.points[:, c + 2], rows[:, c + 1].astype(np.float32))
    with pytest.raises(ValueError, match="up_axis"):
        ShapeNetPart(root, "train", up_axis="x")


def test_splits_and_category_filter(root):
    assert ShapeNetPart(root, "val").frame_ids == [f"{BAG}/b2"]
    assert ShapeNetPart(root, "test").frame_ids == [f"{AIRPLANE}/a3"]
    trainval = ShapeNetPart(root, "trainval")
    assert trainval.frame_ids == [f"{AIRPLANE}/a1", f"{BAG}/b1", f"{AIRPLANE}/a2", f"{BAG}/b2"]
    bags = ShapeNetPart(root, "trainval", categories=["Bag"])
    assert bags.frame_ids == [f"{BAG}/b1", f"{BAG}/b2"] and bags.categories == ("Bag",)
    assert bags.labels.tolist() == [1, 1] and bags[0].label == 1  # the full 16-category index
    assert len(ShapeNetPart(root, "train", categories=["Chair"])) == 0
    with pytest.raises(ValueError, match="unknown categories"):
        ShapeNetPart(root, categories=["Plane"])
    with pytest.raises(ValueError, match="split"):
        ShapeNetPart(root, "everything")


def test_transforms_use_the_sample_generator(root):
    ds = ShapeNetPart(root, "train", transforms=[Shift()], seed=3)
    np.testing.assert_array_equal(ds[(4, 2)].points, ds[(4, 2)].points)
    assert not np.array_equal(ds[(4, 2)].points, ds[(5, 2)].points)
    np.testing.assert_array_equal(ds[(4, 2)].part_labels, ds.load(2).part_labels)


def test_missing_data_says_where_it_goes(tmp_path, root):
    absent = tmp_path / "absent"
    with pytest.raises(ShapeDataNotFoundError) as info:
        ShapeNetPart(absent)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and str(absent) in message
    assert "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip" in message
    split_file = root / "train_test_split" / "shuffled_val_file_list.json"
    split_file.unlink()
    with pytest.raises(ShapeFormatError, match=re.escape(str(split_file))):
        ShapeNetPart(root, "trainval")
    (root / "synsetoffset2category.txt").unlink()
    with pytest.raises(ShapeFormatError, match=r"synsetoffset2category\.txt"):
        ShapeNetPart(root, "train")


def test_missing_point_file_and_synset_folder(root):
    (root / BAG / "b1.txt").unlink()
    with pytest.raises(ShapeFormatError, match=r"1 point file\(s\) of split 'train' missing: .*b1\.txt"):
        ShapeNetPart(root, "train")
    assert len(ShapeNetPart(root, "train", categories=["Airplane"])) == 2
    for path in (root / BAG).iterdir():
        path.unlink()
    (root / BAG).rmdir()
    with pytest.raises(ShapeFormatError, match=re.escape(f"{root / BAG}: synset folder missing")):
        ShapeNetPart(root, "val")


def test_unknown_synset_and_bad_split_entries(root):
    split_file = root / "train_test_split" / "shuffled_test_file_list.json"
    split_file.write_text(json.dumps(["shape_data/09999999/x1"]))
    with pytest.raises(ShapeFormatError, match=re.escape(f"{split_file}: unknown synset '09999999'")):
        ShapeNetPart(root, "test")
    split_file.write_text(json.dumps(["x1"]))
    with pytest.raises(ShapeFormatError, match=re.escape("is not 'shape_data/<synset>/<model_id>'")):
        ShapeNetPart(root, "test")
    split_file.write_text("[not json")
    with pytest.raises(ShapeFormatError, match="not valid JSON"):
        ShapeNetPart(root, "test")


def test_bad_catalog(root):
    catalog = root / "synsetoffset2category.txt"
    catalog.write_text(f"Airplane\t{AIRPLANE}\nPlane\t01234567\n")
    with pytest.raises(ShapeFormatError, match="line 2: category 'Plane'"):
        ShapeNetPart(root)
    catalog.write_text(f"Airplane\t{BAG}\n")
    with pytest.raises(
        ShapeFormatError, match=f"Airplane is synset {BAG}, but shapenet_part says {AIRPLANE}"
    ):
        ShapeNetPart(root)


GOOD = "0.1 0.2 0.3 0.0 0.0 1.0 1.000000\n"
BAD_FILES = {
    "empty": ("\n\n", "empty point file"),
    "six columns": (GOOD + "0.1 0.2 0.3 0.0 0.0 1.0\n", "line 2: 6 values, expected 7"),
    "eight columns": ("0.1 0.2 0.3 0.0 0.0 1.0 1 1\n" + GOOD, "line 1: 8 values, expected 7"),
    "non-numeric": (GOOD + "0.1 0.2 abc 0.0 0.0 1.0 1\n", "line 2: non-numeric value 'abc'"),
    "NaN": (GOOD * 2 + "0.1 nan 0.3 0.0 0.0 1.0 1\n", "row(s) with NaN or infinite values (line(s) 3)"),
    "fractional part": (GOOD + "0.1 0.2 0.3 0.0 0.0 1.0 1.5\n", "line 2: part id 1.5 is not an integer"),
    "part of another category": (
        GOOD + "0 0 0 0 0 1 4.0\n0 0 0 0 0 1 7\n",
        "part labels [4, 7] outside the parts of Airplane, 0..3",
    ),
    "negative part": (GOOD + "0 0 0 0 0 1 -1\n", "part labels [-1] outside"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_malformed_point_files_raise_naming_the_file(root, case):
    text, expected = BAD_FILES[case]
    path = root / AIRPLANE / "a2.txt"
    path.write_text(text)
    ds = ShapeNetPart(root, "train")
    with pytest.raises(ShapeFormatError) as info:
        ds.load(2)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_read_part_file(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("x y z nx ny nz part\n")
    with pytest.raises(ShapeFormatError, match="line 1: non-numeric value 'x'"):
        read_part_file(path)
    path.write_text("1 2 3 4 5 6 7\r\n\r\n8 9 10 11 12 13 14\r\n")
    np.testing.assert_array_equal(read_part_file(path), np.arange(1, 15).reshape(2, 7))
    with pytest.raises(ShapeFormatError, match="cannot read"):
        read_part_file(tmp_path / "absent.txt")
    assert SHAPENET_PART.parts[1] == (4, 5)  # the ranges these tests assume
