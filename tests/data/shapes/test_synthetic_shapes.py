"""The embedded synthetic shapes: determinism, balance, normalisation, occlusion, part labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.data.shapes.synthetic import (
    SYNTHETIC_PART_NAMES,
    SYNTHETIC_PARTS,
    SYNTHETIC_SHAPE_CLASSES,
    SyntheticPartShapes,
    SyntheticShapes,
    generate_shape,
    occlusion_mask,
)
from perception.data.shapes.transforms import ShufflePoints
from perception.structures.shapes import PointSet


def _fibonacci(n: int) -> np.ndarray:
    """(n, 3) nearly uniform unit directions."""
    i = np.arange(n) + 0.5
    polar, azimuth = np.arccos(1 - 2 * i / n), math.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)])


_DIRECTIONS = _fibonacci(800)


def _largest_empty_cap(points: np.ndarray) -> float:
    """The largest angle (radians) from some direction to the nearest point's direction: the size of the
    biggest hole in the points as seen from the origin."""
    d = points / np.linalg.norm(points, axis=1, keepdims=True)
    cos = np.einsum("ij,kj->ik", _DIRECTIONS, d).max(axis=1)
    return float(np.arccos(np.clip(cos, -1, 1)).max())


def test_same_seed_and_index_give_the_same_bytes_and_others_differ() -> None:
    a = SyntheticShapes("train", num_shapes=20, num_points=256, use_normals=True, seed=3)
    b = SyntheticShapes("train", num_shapes=4, num_points=256, use_normals=True, seed=3)
    assert a.load(2).points.tobytes() == b.load(2).points.tobytes()  # a small set is a prefix
    assert a.load(2).points.tobytes() == a.load(2).points.tobytes()
    assert a.load(2).points.tobytes() != a.load(2 + len(SYNTHETIC_SHAPE_CLASSES)).points.tobytes()
    other_seed = SyntheticShapes("train", num_shapes=4, num_points=256, use_normals=True, seed=4)
    assert other_seed.load(2).points.tobytes() != a.load(2).points.tobytes()
    test_split = SyntheticShapes("test", num_shapes=4, num_points=256, use_normals=True, seed=3)
    assert test_split.load(2).points.tobytes() != a.load(2).points.tobytes()
    assert test_split.load(2).shape_id == "synthetic/test/2"


def test_every_class_is_generated_with_its_label_normalised_with_unit_normals() -> None:
    k = len(SYNTHETIC_SHAPE_CLASSES)
    assert k >= 10
    data = SyntheticShapes("val", num_shapes=2 * k, num_points=300, use_normals=True)
    assert len(data) == 2 * k
    labels = []
    for i in range(len(data)):
        shape = data[i]
        assert isinstance(shape, PointSet)
        assert shape.points.shape == (300, 6) and shape.points.dtype == np.float32
        assert shape.part_labels is None
        assert SYNTHETIC_SHAPE_CLASSES[shape.label] == data.category_of(i)
        xyz, normals = shape.points[:, :3].astype(np.float64), shape.points[:, 3:]
        np.testing.assert_allclose(xyz.mean(axis=0), 0, atol=1e-5)
        assert np.linalg.norm(xyz, axis=1).max() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-4)
        labels.append(shape.label)
    assert np.bincount(labels, minlength=k).tolist() == [2] * k  # balanced


def test_without_normals_points_are_xyz_and_transforms_apply() -> None:
    plain = SyntheticShapes("train", num_shapes=3, num_points=128)
    shuffled = SyntheticShapes("train", num_shapes=3, num_points=128, transforms=[ShufflePoints()])
    assert plain[1].points.shape == (128, 3)
    a, b = plain[1].points, shuffled[1].points
    assert not np.array_equal(a, b)
    assert np.array_equal(np.sort(a, axis=0), np.sort(b, axis=0))
    assert shuffled[(0, 1)].points.tobytes() != shuffled[(1, 1)].points.tobytes()  # per-epoch


def test_shapes_vary_within_a_class() -> None:
    data = SyntheticShapes(
        "train", num_shapes=3 * len(SYNTHETIC_SHAPE_CLASSES), num_points=512, occlusion=False
    )
    k = len(SYNTHETIC_SHAPE_CLASSES)
    table = SYNTHETIC_SHAPE_CLASSES.index("table")
    extents = [np.ptp(data.load(table + j * k).points, axis=0) for j in range(3)]
    assert max(np.abs(extents[0] - e).max() for e in extents[1:]) > 0.05


def test_occlusion_mask_keeps_most_points_and_removes_a_chunk() -> None:
    rng = np.random.default_rng(0)
    sphere = rng.normal(size=(2000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    assert _largest_empty_cap(sphere) < 0.2
    for seed in range(4):
        keep = occlusion_mask(sphere, sphere, np.random.default_rng(seed))
        assert keep.dtype == bool and keep.shape == (2000,)
        assert 0.7 <= keep.mean() < 0.96
        assert _largest_empty_cap(sphere[keep]) > 0.35  # a cap of the sphere is gone


def test_occluded_shapes_miss_a_chunk_of_the_whole_surface() -> None:
    for seed in range(3):
        occluded, _, _ = generate_shape("ellipsoid", np.random.default_rng(seed), 1024, occlusion=True)
        whole, _, _ = generate_shape("ellipsoid", np.random.default_rng(seed), 1024, occlusion=False)
        assert occluded.shape == whole.shape == (1024, 3)
        assert _largest_empty_cap(occluded) > _largest_empty_cap(whole) + 0.15


def test_part_taxonomy() -> None:
    assert SYNTHETIC_PARTS.name == "synthetic_parts"
    assert SYNTHETIC_PARTS.num_categories >= 6
    assert SYNTHETIC_PARTS.categories == tuple(SYNTHETIC_PART_NAMES)
    for names, parts in zip(SYNTHETIC_PART_NAMES.values(), SYNTHETIC_PARTS.parts, strict=True):
        assert 2 <= len(parts) == len(names) <= 4
    assert SYNTHETIC_PARTS.num_parts == sum(len(n) for n in SYNTHETIC_PART_NAMES.values())


def test_part_shapes_label_every_point_with_a_part_of_its_category() -> None:
    k = SYNTHETIC_PARTS.num_categories
    data = SyntheticPartShapes("train", num_shapes=3 * k, num_points=512, use_normals=True)
    complete = np.zeros(k)
    for i in range(len(data)):
        shape = data[i]
        assert shape.points.shape == (512, 6) and shape.points.dtype == np.float32
        assert shape.part_labels is not None and shape.part_labels.dtype == np.int64
        assert SYNTHETIC_PARTS.categories[shape.label] == data.category_of(i)
        own = SYNTHETIC_PARTS.parts[shape.label]
        assert np.isin(shape.part_labels, own).all()
        complete[shape.label] += set(np.unique(shape.part_labels)) == set(own)
    assert (complete >= 2).all(), complete  # every part present in most shapes


def test_part_shapes_of_some_categories() -> None:
    data = SyntheticPartShapes("test", num_shapes=4, num_points=64, categories=["mug", "lamp"])
    labels = [data[i].label for i in range(4)]
    assert [SYNTHETIC_PARTS.categories[c] for c in labels] == ["mug", "lamp", "mug", "lamp"]
    a = SyntheticPartShapes("test", num_shapes=2, num_points=64, seed=1).load(1)
    b = SyntheticPartShapes("test", num_shapes=2, num_points=64, seed=1).load(1)
    assert a.points.tobytes() == b.points.tobytes() and np.array_equal(a.part_labels, b.part_labels)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes("training")
    with pytest.raises(ValueError, match="num_points"):
        SyntheticShapes("train", num_shapes=2, num_points=0)
    with pytest.raises(ValueError, match="categories"):
        SyntheticPartShapes("train", categories=["teapot"])
    assert len(SyntheticShapes("train")) == 4000 and len(SyntheticShapes("val")) == 800
