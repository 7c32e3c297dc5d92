"""ModelNet40Off (OFF meshes, sampled) and ModelNet40H5 (the HDF5 release) on tiny trees written here."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh

from perception.data.shapes.errors import ShapeFormatError
from perception.data.shapes.mesh import sample_surface
from perception.data.shapes.modelnet import ModelNet40H5, ModelNet40Off, ShapeDataNotFoundError
from perception.data.shapes.off import read_off, write_off
from perception.data.transforms import Transform
from perception.structures.shapes import MODELNET40_CLASSES, PointSet

CLASSES = ("airplane", "bed")
# two triangles far apart in z, of areas 0.5 and 1.5
TWO_TRIANGLES = (
    np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 5], [3, 0, 5], [0, 1, 5]], float),
    np.array([[0, 1, 2], [3, 4, 5]]),
)


class Jitter(Transform):
    """Adds N(0, 0.01) to the points, from the generator given."""

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        return sample.replace(
            points=sample.points + rng.normal(0, 0.01, sample.points.shape).astype(np.float32)
        )


def unit_cube() -> tuple[np.ndarray, np.ndarray]:
    box = trimesh.creation.box((1.0, 1.0, 1.0))  # vertices at ±0.5, faces wound outward
    return np.asarray(box.vertices), np.asarray(box.faces)


@pytest.fixture(scope="module")
def off_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ModelNet40")
    sphere = trimesh.creation.icosphere(subdivisions=1)
    meshes = {
        "airplane/train/airplane_0002.off": TWO_TRIANGLES,
        "airplane/train/airplane_0001.off": unit_cube(),
        "bed/train/bed_0001.off": (sphere.vertices, sphere.faces),
        "airplane/test/airplane_0627.off": unit_cube(),
        "bed/test/bed_0516.off": TWO_TRIANGLES,
    }
    for name, (vertices, faces) in meshes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_off(root / name, vertices, faces)
    (root / "airplane" / "train" / "notes.txt").write_text("not a mesh")
    return root


def test_index_labels_and_ids(off_root):
    train = ModelNet40Off(off_root, "train", classes=CLASSES)
    assert train.frame_ids == ["airplane/airplane_0001", "airplane/airplane_0002", "bed/bed_0001"]
    assert train.labels.tolist() == [0, 0, 1] and train.split == "train" and len(train) == 3
    test = ModelNet40Off(off_root, "test", classes=("bed", "airplane"))
    assert test.frame_ids == ["airplane/airplane_0627", "bed/bed_0516"]
    assert test.labels.tolist() == [1, 0]
    assert test.mesh_path(1) == off_root / "bed" / "test" / "bed_0516.off"


def test_points_and_normals(off_root):
    plain = ModelNet40Off(off_root, classes=CLASSES, num_points=256)[2]
    assert isinstance(plain, PointSet)
    assert plain.shape_id == "bed/bed_0001" and plain.label == 1 and plain.part_labels is None
    assert plain.points.shape == (256, 3) and plain.points.dtype == np.float32
    with_normals = ModelNet40Off(off_root, classes=CLASSES, num_points=256, use_normals=True)[2]
    assert with_normals.points.shape == (256, 6)
    np.testing.assert_array_equal(with_normals.points[:, :3], plain.points)


def test_sampling_is_the_documented_seeded_draw(off_root):
    ds = ModelNet40Off(off_root, classes=CLASSES, num_points=100, use_normals=True, seed=7)
    vertices, faces = read_off(ds.mesh_path(1))
    rng = np.random.default_rng([7, zlib.crc32(b"airplane/airplane_0002")])
    points, normals = sample_surface(vertices, faces, 100, rng)
    np.testing.assert_array_equal(ds.load(1).points, np.concatenate([points, normals], axis=1))


def test_deterministic_per_seed_not_per_epoch(off_root):
    a = ModelNet40Off(off_root, classes=CLASSES, num_points=64, seed=3)
    b = ModelNet40Off(off_root, classes=CLASSES, num_points=64, seed=3)
    c = ModelNet40Off(off_root, classes=CLASSES, num_points=64, seed=4)
    np.testing.assert_array_equal(a[0].points, b[0].points)
    np.testing.assert_array_equal(a[(0, 0)].points, a[(5, 0)].points)  # no transforms: epoch changes nothing
    assert not np.array_equal(a[0].points, c[0].points)
    assert not np.array_equal(a[0].points, a[1].points[:64])


def test_transforms_vary_with_epoch(off_root):
    ds = ModelNet40Off(off_root, classes=CLASSES, num_points=32, transforms=[Jitter()], seed=1)
    np.testing.assert_array_equal(ds[(2, 0)].points, ds[(2, 0)].points)
    assert not np.array_equal(ds[(1, 0)].points, ds[(2, 0)].points)
    assert np.abs(ds[(1, 0)].points - ds.load(0).points).max() < 0.1


def test_points_on_the_cube_surface_with_outward_unit_normals(off_root):
    sample = ModelNet40Off(off_root, classes=CLASSES, num_points=2000, use_normals=True)[0]
    points, normals = sample.points[:, :3].astype(np.float64), sample.points[:, 3:].astype(np.float64)
    assert np.abs(points).max() <= 0.5 + 1e-6
    on_face = np.abs(np.abs(points) - 0.5) < 1e-6
    assert (on_face.sum(axis=1) >= 1).all()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    axis = np.argmax(on_face, axis=1)
    rows = np.arange(len(points))
    np.testing.assert_allclose(normals[rows, axis], np.sign(points[rows, axis]), atol=1e-6)  # outward
    # the face's plane: each normal is perpendicular to the face (zero on the two other axes)
    others = np.abs(normals).sum(axis=1) - np.abs(normals[rows, axis])
    assert others.max() < 1e-6
    # each of the six faces (equal areas) gets about a sixth of the points
    counts = np.bincount(axis * 2 + (points[rows, axis] > 0), minlength=6)
    std = np.sqrt(2000 * (1 / 6) * (5 / 6))
    assert np.abs(counts - 2000 / 6).max() < 4 * std


def test_area_weighting(off_root):
    n = 4000
    sample = ModelNet40Off(off_root, classes=CLASSES, num_points=n, use_normals=True)[1]
    upper = sample.points[:, 2] > 2.5
    std = np.sqrt(0.75 * 0.25 / n)
    assert abs(upper.mean() - 0.75) < 4 * std  # areas 0.5 : 1.5
    assert np.allclose(np.abs(sample.points[:, 5]), 1.0) and np.allclose(sample.points[:, 3:5], 0.0)
    lower = sample.points[~upper]
    assert (lower[:, 0] >= -1e-6).all() and (lower[:, 1] >= -1e-6).all()
    assert (lower[:, 0] + lower[:, 1] <= 1 + 1e-6).all()  # inside the triangle


def test_cache_is_written_atomically_and_reused(off_root, tmp_path):
    cache = tmp_path / "cache"
    ds = ModelNet40Off(off_root, classes=CLASSES, num_points=50, use_normals=True, cache_dir=cache, seed=2)
    first = ds.load(0).points
    path = cache / "airplane" / "airplane_0001.n50.seed2.npy"
    assert path.is_file() and not list(cache.rglob("*.tmp"))
    np.testing.assert_array_equal(np.load(path), first)
    marker = np.full((50, 6), 0.25, np.float32)
    np.save(path, marker)  # a cached file is read back, not resampled
    np.testing.assert_array_equal(ds.load(0).points, marker)
    xyz = ModelNet40Off(off_root, classes=CLASSES, num_points=50, cache_dir=cache, seed=2).load(0)
    np.testing.assert_array_equal(xyz.points, marker[:, :3])
    other = ModelNet40Off(off_root, classes=CLASSES, num_points=60, cache_dir=cache, seed=2).load(0)
    assert other.points.shape == (60, 3)  # another N: its own file
    path.write_bytes(b"truncated")  # an unreadable cache entry is resampled and rewritten
    np.testing.assert_array_equal(ds.load(0).points, first)
    np.testing.assert_array_equal(np.load(path), first)


def test_missing_root_says_where_data_goes(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(ShapeDataNotFoundError) as info:
        ModelNet40Off(root)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ShapeFormatError)
    message = str(info.value)
    assert str(root) in message and "ModelNet40.zip" in message and "data/modelnet40" in message


def test_missing_class_folder(off_root):
    with pytest.raises(FileNotFoundError, match=re.escape(str(off_root / "chair" / "train"))):
        ModelNet40Off(off_root, classes=("airplane", "chair"))


def test_corrupt_mesh_names_the_file(tmp_path):
    folder = tmp_path / "root" / "cup" / "test"
    folder.mkdir(parents=True)
    (folder / "cup_0001.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n")
    ds = ModelNet40Off(tmp_path / "root", "test", classes=("cup",))
    with pytest.raises(ShapeFormatError, match=r"cup_0001\.off"):
        ds.load(0)
    with pytest.raises(ValueError, match="split"):
        ModelNet40Off(tmp_path / "root", "val", classes=("cup",))


# ---------------------------------------------------------------------------------------------
# the HDF5 release


def write_h5(path: Path, **arrays: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def release_arrays(seed: int, count: int, points: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "data": rng.normal(size=(count, points, 3)).astype(np.float32),
        "label": rng.integers(0, 40, (count, 1)).astype(np.uint8),
        "normal": rng.normal(size=(count, points, 3)).astype(np.float32),
    }


@pytest.fixture
def h5_root(tmp_path) -> Path:
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    train0, train1, test0 = release_arrays(0, 3), release_arrays(1, 2), release_arrays(2, 2)
    train1["label"] = train1["label"].reshape(-1)  # some files store (B,)
    write_h5(root / "ply_data_train0.h5", **train0)
    write_h5(root / "ply_data_train1.h5", **train1)
    write_h5(root / "ply_data_test0.h5", **test0)
    prefix = "data/modelnet40_ply_hdf5_2048/"
    (root / "train_files.txt").write_text(f"{prefix}ply_data_train0.h5\n{prefix}ply_data_train1.h5\n")
    (root / "test_files.txt").write_text(f"{prefix}ply_data_test0.h5\n")
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    return root


def test_h5_values_read_back_exactly(h5_root):
    train0, train1 = release_arrays(0, 3), release_arrays(1, 2)
    ds = ModelNet40H5(h5_root, "train", num_points=8, up_axis="z")  # the file's own frame
    assert ds.classes == MODELNET40_CLASSES and len(ds) == 5 and ds.split == "train"
    assert ds.frame_ids == [
        *(f"ply_data_train0.h5:{i}" for i in range(3)),
        "ply_data_train1.h5:0",
        "ply_data_train1.h5:1",
    ]
    np.testing.assert_array_equal(ds.points, np.concatenate([train0["data"], train1["data"]])[:, :8])
    assert ds.labels.tolist() == [*train0["label"][:, 0].tolist(), *train1["label"][:, 0].tolist()]
    sample = ds[3]
    assert sample.shape_id == "ply_data_train1.h5:0" and sample.label == int(train1["label"][0, 0])
    assert sample.points.shape == (8, 3) and sample.points.dtype == np.float32
    sample.points[:] = 0  # a copy: the dataset is unchanged
    np.testing.assert_array_equal(ds[3].points, train1["data"][0, :8])

    normals = ModelNet40H5(h5_root, "test", num_points=16, use_normals=True, up_axis="z")
    test0 = release_arrays(2, 2)
    np.testing.assert_array_equal(
        normals[1].points, np.concatenate([test0["data"][1], test0["normal"][1]], 1)
    )


def test_h5_release_is_y_up_and_comes_out_z_up(h5_root):
    """PointNet's HDF5 release is y-up (its augmentation rotates about y): read as (x, -z, y)."""
    data = release_arrays(0, 3)["data"][1, :8]
    points = ModelNet40H5(h5_root, "train", num_points=8)[1].points
    np.testing.assert_array_equal(points, np.stack([data[:, 0], -data[:, 2], data[:, 1]], 1))
    assert np.isclose(np.linalg.det(np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])), 1.0)  # a rotation


def test_h5_transforms(h5_root):
    ds = ModelNet40H5(h5_root, "test", transforms=Jitter(), seed=5, num_points=4)
    np.testing.assert_array_equal(ds[(1, 0)].points, ds[(1, 0)].points)
    assert not np.array_equal(ds[(1, 0)].points, ds[(2, 0)].points)


def _corrupt(case: str, path: Path) -> tuple[dict, str]:
    """(ModelNet40H5 keyword arguments, expected message part) after breaking ``path``."""
    arrays = release_arrays(1, 2)
    kwargs: dict = {"num_points": 8}
    if case == "not HDF5":
        path.write_bytes(b"this is not an HDF5 file at all")
        return kwargs, "not a readable HDF5 file"
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:600])
        return kwargs, "not a readable HDF5 file"
    if case == "no data":
        del arrays["data"]
        expected = "no data dataset"
    elif case == "no label":
        del arrays["label"]
        expected = "no label dataset"
    elif case == "label count":
        arrays["label"] = np.zeros((3, 1), np.uint8)
        expected = "label has shape (3, 1) but data (2, 16, 3)"
    elif case == "data not xyz":
        arrays["data"] = arrays["data"][..., :2]
        expected = "data has shape (2, 16, 2)"
    elif case == "label outside":
        arrays["label"] = np.array([[3], [40]], np.uint8)
        expected = "label(s) [40] of shape(s) [1] outside the 40 classes"
    elif case == "too few points":
        arrays = release_arrays(1, 2, points=6)
        expected = f"shape 0 of {path} has 6 points, 8 asked"
    elif case == "no normals":
        del arrays["normal"]
        kwargs["use_normals"] = True
        expected = "no normal (use_normals=True) dataset"
    elif case == "normal shape":
        arrays["normal"] = arrays["normal"][:, :10]
        kwargs["use_normals"] = True
        expected = "normal has shape (2, 10, 3) but data (2, 16, 3)"
    elif case == "NaN":
        arrays["data"][1, 3, 0] = np.nan
        expected = "NaN or infinite"
    else:
        raise AssertionError(case)
    path.unlink()
    write_h5(path, **arrays)
    return kwargs, expected


H5_CASES = [
    "not HDF5",
    "truncated",
    "no data",
    "no label",
    "label count",
    "data not xyz",
    "label outside",
    "too few points",
    "no normals",
    "normal shape",
    "NaN",
]


@pytest.mark.parametrize("case", H5_CASES)
def test_h5_corrupt_files_raise_naming_the_file(h5_root, case):
    path = h5_root / "ply_data_train1.h5"
    kwargs, expected = _corrupt(case, path)
    with pytest.raises(ShapeFormatError) as info:
        ModelNet40H5(h5_root, "train", **kwargs)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_h5_missing_release(tmp_path, h5_root):
    with pytest.raises(ShapeDataNotFoundError) as info:
        ModelNet40H5(tmp_path / "absent")
    message = str(info.value)
    assert str(tmp_path / "absent") in message and "modelnet40_ply_hdf5_2048.zip" in message
    assert "data/modelnet40_ply_hdf5_2048" in message
    (h5_root / "test_files.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_files\.txt"):
        ModelNet40H5(h5_root, "test")
    (h5_root / "ply_data_train0.h5").unlink()
    with pytest.raises(ShapeDataNotFoundError, match=r"ply_data_train0\.h5: listed in .*train_files\.txt"):
        ModelNet40H5(h5_root, "train")
