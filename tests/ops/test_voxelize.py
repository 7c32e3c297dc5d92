"""Voxelization: element for element against spconv PointToVoxel, numba == torch path, dynamic
voxelization against hard voxelization and slow references, permutation invariance, bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.kitti import read_velodyne
from perception.ops import voxelize as vx
from perception.ops.voxelize import (
    DynamicVoxels,
    dynamic_voxelize,
    grid_shape,
    scatter_max,
    scatter_mean,
    voxelize,
    voxelize_batch,
)

KITTI_VOXEL = ([0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1])
KITTI_PILLAR = ([0.16, 0.16, 4], [0, -39.68, -3, 69.12, 39.68, 1])


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch's threaded sort/unique crawl on a busy 2-core machine; one thread keeps the tests short."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def torch_path() -> Iterator[None]:
    """Force the pure-torch (CUDA) code path on CPU tensors."""
    old, vx._TORCH_ON_CPU = vx._TORCH_ON_CPU, True
    try:
        yield
    finally:
        vx._TORCH_ON_CPU = old


def spconv_voxelize(points: np.ndarray, size, pc_range, max_points: int, max_voxels: int, peer=None):
    """spconv's PointToVoxel on the CPU, outputs copied out of its reused buffers."""
    spconv_utils = pytest.importorskip("spconv.pytorch.utils")
    if peer is None:
        peer = spconv_utils.PointToVoxel(
            size, pc_range, points.shape[1], max_voxels, max_points, device=torch.device("cpu")
        )
    return tuple(t.numpy().copy() for t in peer(torch.from_numpy(points)))


def both_paths(points: np.ndarray, *args) -> list[tuple[np.ndarray, ...]]:
    """voxelize through numba (NumPy in), numba (CPU tensor in) and the torch path, as NumPy."""
    numpy_out = voxelize(points, *args)
    tensor_out = voxelize(torch.from_numpy(points), *args)
    with torch_path():
        torch_out = voxelize(torch.from_numpy(points), *args)
    return [numpy_out, tuple(t.numpy() for t in tensor_out), tuple(t.numpy() for t in torch_out)]


def assert_same(got: tuple, want: tuple) -> None:
    for name, g, w in zip(("voxels", "coords", "num_points"), got, want, strict=True):
        assert g.dtype == w.dtype, name
        assert g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)


# ----------------------------------------------------------------------------------------------------
# Hand-worked semantics (no spconv needed)


def test_semantics_by_hand():
    """1 m voxels over [0, 4)³ → grid 4×4×4; max 2 voxels, 2 points each."""
    pts = np.array(
        [
            [0.5, 0.5, 0.5, 1],  # voxel 0
            [0.0, 0.0, 0.0, 2],  # on the range minimum: kept, voxel 0
            [4.0, 0.0, 0.0, 3],  # on the range maximum: dropped
            [3.999, 0.5, 0.5, 4],  # voxel 1 (x = 3)
            [-1e-6, 0.5, 0.5, 5],  # just below the minimum: dropped
            [0.6, 0.6, 0.6, 6],  # voxel 0 is full: dropped
            [1.5, 0.5, 0.5, 7],  # a third voxel, over max_voxels: dropped
            [3.5, 0.5, 0.5, 8],  # voxel 1 again, after the limit: still added
        ],
        np.float32,
    )
    for voxels, coords, num in both_paths(pts, [1, 1, 1], [0, 0, 0, 4, 4, 4], 2, 2):
        np.testing.assert_array_equal(coords, [[0, 0, 0], [0, 0, 3]])
        np.testing.assert_array_equal(num, [2, 2])
        np.testing.assert_array_equal(voxels, pts[[[0, 1], [3, 7]]])


def test_grid_rounds_range_to_whole_voxels():
    # 4.4 → 4, 4.5 → 5 (ties up), 4.6 → 5 voxels; the grid past 4.6 m keeps points up to 5 m.
    assert grid_shape([1, 1, 1], [0, 0, 0, 4.4, 4.5, 4.6]) == (5, 5, 4)
    pts = np.array([[0.5, 0.5, 4.8, 0]], np.float32)  # z = 4.8 > z_max = 4.6, but inside voxel 4
    _, coords, _ = voxelize(pts, [1, 1, 1], [0, 0, 0, 4.4, 4.5, 4.6], 1, 10)
    np.testing.assert_array_equal(coords, [[4, 0, 0]])
    assert grid_shape(*KITTI_VOXEL) == (40, 1600, 1408)
    assert grid_shape(*KITTI_PILLAR) == (1, 496, 432)


def test_output_types_and_devices():
    pts = np.random.default_rng(0).uniform(0, 4, (50, 5))  # float64, 5 columns
    voxels, coords, num = voxelize(pts, [1, 1, 1], [0, 0, 0, 4, 4, 4], 3, 100)
    assert isinstance(voxels, np.ndarray) and voxels.dtype == np.float64 and voxels.shape[1:] == (3, 5)
    assert coords.dtype == np.int32 and num.dtype == np.int32
    for path in (contextlib.nullcontext(), torch_path()):
        with path:
            out = voxelize(torch.from_numpy(pts), [1, 1, 1], [0, 0, 0, 4, 4, 4], 3, 100)
        assert [t.dtype for t in out] == [torch.float64, torch.int32, torch.int32]
        assert_same(tuple(t.numpy() for t in out), (voxels, coords, num))


def test_torch_path_gradient():
    pts = torch.tensor([[0.5, 0.5, 0.5, 1.0], [0.6, 0.5, 0.5, 2.0], [2.5, 0.5, 0.5, 3.0]], requires_grad=True)
    voxels, _, _ = voxelize(pts, [1, 1, 1], [0, 0, 0, 4, 4, 4], 1, 10)  # routes to the torch path
    voxels.sum().backward()
    np.testing.assert_array_equal(pts.grad.numpy(), [[1] * 4, [0] * 4, [1] * 4])  # point 1 did not fit


# ----------------------------------------------------------------------------------------------------
# Against spconv PointToVoxel: real KITTI frames


@pytest.mark.parametrize(
    ("settings_", "max_points", "max_voxels"),
    [
        (KITTI_VOXEL, 5, 16000),
        (KITTI_VOXEL, 5, 40000),
        (KITTI_VOXEL, 5, 700),
        (KITTI_PILLAR, 32, 12000),
        (KITTI_PILLAR, 32, 40000),
        (KITTI_PILLAR, 3, 900),
    ],
    ids=["voxel-16k", "voxel-40k", "voxel-700", "pillar-12k", "pillar-40k", "pillar-P3-900"],
)
def test_matches_spconv_on_kitti(kitti_root, settings_, max_points, max_voxels):
    spconv_utils = pytest.importorskip("spconv.pytorch.utils")
    size, pc_range = settings_
    peer = spconv_utils.PointToVoxel(size, pc_range, 4, max_voxels, max_points, device=torch.device("cpu"))
    frames = sorted((kitti_root / "training" / "velodyne").glob("*.bin"))
    assert frames
    for path in frames:
        points = read_velodyne(path)
        want = spconv_voxelize(points, size, pc_range, max_points, max_voxels, peer)
        for got in both_paths(points, size, pc_range, max_points, max_voxels):
            assert_same(got, want)


# ----------------------------------------------------------------------------------------------------
# Against spconv: random points on voxel and range boundaries


@st.composite
def boundary_scenes(draw):
    """A small grid (sizes and ranges that round), points on / next to voxel faces and range ends."""
    size = np.array([draw(st.sampled_from([0.05, 0.1, 0.16, 0.3, 1.0, 0.07])) for _ in range(3)])
    cells = np.array([draw(st.integers(1, 12)) for _ in range(3)])
    lo = np.array([draw(st.sampled_from([0.0, -3.0, -39.68, 1.7, -0.35])) for _ in range(3)])
    hi = lo + (cells + draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, -0.3]))) * size
    pc_range = np.round(np.concatenate([lo, hi]), 6).tolist()
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(0, 300))
    channels = draw(st.integers(3, 5))
    rng = np.random.default_rng(seed)
    lo32, size32 = np.float32(lo), np.float32(size)
    k = rng.integers(-2, cells + 3, size=(n, 3))
    xyz = (lo32 + k * size32).astype(np.float32)  # on voxel faces (up to float32 rounding)
    ulps = rng.integers(-2, 3, size=(n, 3)) * rng.integers(0, 2, size=(n, 3))
    xyz = (xyz + ulps * np.spacing(np.abs(xyz))).astype(np.float32)
    hi32 = np.float32(hi)
    ends = rng.random((n, 3))
    xyz = np.where(ends < 0.05, lo32, np.where(ends > 0.95, hi32, xyz))  # exactly on the range ends
    repeat = rng.integers(0, max(n, 1), size=n // 3)  # repeated cells to fill voxels
    if n:
        xyz[n - len(repeat) :] = xyz[repeat]
    points = np.concatenate([xyz, rng.normal(size=(n, channels - 3))], axis=1).astype(np.float32)
    return points, size.tolist(), pc_range, draw(st.integers(1, 6)), draw(st.integers(1, 60))


@settings(max_examples=60, deadline=None)
@given(boundary_scenes())
def test_matches_spconv_on_boundaries(scene):
    points, size, pc_range, max_points, max_voxels = scene
    pytest.importorskip("spconv.pytorch.utils")
    want = spconv_voxelize(points, size, pc_range, max_points, max_voxels) if len(points) else None
    for got in both_paths(points, size, pc_range, max_points, max_voxels):
        if want is None:
            assert got[0].shape == (0, max_points, points.shape[1])
            continue
        assert_same(got, want)


@settings(max_examples=40, deadline=None)
@given(boundary_scenes())
def test_grid_shape_matches_spconv(scene):
    spconv_utils = pytest.importorskip("spconv.pytorch.utils")
    _, size, pc_range, _, _ = scene
    peer = spconv_utils.PointToVoxel(size, pc_range, 3, 1, 1, device=torch.device("cpu"))
    assert grid_shape(size, pc_range) == tuple(peer.grid_size)


@settings(max_examples=30, deadline=None)
@given(boundary_scenes())
def test_numba_equals_torch_path_float64(scene):
    points, size, pc_range, max_points, max_voxels = scene
    results = both_paths(points.astype(np.float64), size, pc_range, max_points, max_voxels)
    for got in results[1:]:
        assert_same(got, results[0])


def test_hash_table_and_dense_table_agree(monkeypatch):
    rng = np.random.default_rng(1)
    points = rng.uniform([0, -40, -3, 0], [70.4, 40, 1, 1], (20000, 4)).astype(np.float32)
    points[10000:] = points[rng.integers(0, 10000, 10000)]  # shared cells
    dense = voxelize(points, *KITTI_PILLAR, 4, 3000)
    monkeypatch.setattr(vx, "_DENSE_MAX_CELLS", 0)
    assert_same(voxelize(points, *KITTI_PILLAR, 4, 3000), dense)


# ----------------------------------------------------------------------------------------------------
# Batches


def test_voxelize_batch():
    rng = np.random.default_rng(2)
    clouds = [rng.uniform(0, 4, (n, 4)).astype(np.float32) for n in (30, 0, 50)]
    args = ([1, 1, 1], [0, 0, 0, 4, 4, 4], 3, 20)
    voxels, coords, num = voxelize_batch(clouds, *args)
    parts = [voxelize(c, *args) for c in clouds]
    np.testing.assert_array_equal(voxels, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(num, np.concatenate([p[2] for p in parts]))
    assert coords.dtype == np.int32 and coords.shape == (len(voxels), 4)
    np.testing.assert_array_equal(coords[:, 0], np.repeat([0, 1, 2], [len(p[1]) for p in parts]))
    np.testing.assert_array_equal(coords[:, 1:], np.concatenate([p[1] for p in parts]))
    got = voxelize_batch([torch.from_numpy(c) for c in clouds], *args)
    assert_same(tuple(t.numpy() for t in got), (voxels, coords, num))
    with pytest.raises(ValueError, match="points"):
        voxelize_batch([clouds[0], torch.from_numpy(clouds[1])], *args)
    with pytest.raises(ValueError, match="points"):
        voxelize_batch([], *args)
    with pytest.raises(ValueError, match="points"):
        voxelize_batch([torch.zeros(3, 4), torch.zeros(3, 4, device="meta")], *args)


# ----------------------------------------------------------------------------------------------------
# Dynamic voxelization


def _cloud(seed: int, n: int = 400) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-0.5, 4.5, (n, 3))  # some outside [0, 4)
    xyz[n // 2 :] = xyz[rng.integers(0, n // 2, n - n // 2)]  # shared voxels
    return torch.from_numpy(np.column_stack([xyz, rng.normal(size=(n, 2))]).astype(np.float32))


def test_dynamic_consistent_with_hard():
    points = _cloud(3)
    size, pc_range = [0.5, 0.5, 1.0], [0, 0, 0, 4, 4, 4]
    dyn = dynamic_voxelize(points, size, pc_range)
    voxels, coords, num = voxelize(points, size, pc_range, len(points), len(points))
    hard = {tuple(c): (n, v[:n]) for c, n, v in zip(coords.tolist(), num.tolist(), voxels, strict=True)}
    assert set(hard) == {tuple(c) for c in dyn.coords.tolist()}
    for v, c in enumerate(dyn.coords.tolist()):
        members = points[dyn.point_voxel == v]
        assert int(dyn.num_points[v]) == hard[tuple(c)][0] == len(members)
        torch.testing.assert_close(members, hard[tuple(c)][1], rtol=0, atol=0)  # same points, same order
    inside = dyn.point_voxel >= 0
    assert int(inside.sum()) == int(num.sum())


def test_dynamic_order_and_batch():
    a, b = _cloud(4), _cloud(5)
    points = torch.cat([a, b])
    batch = torch.cat([torch.zeros(len(a), dtype=torch.long), torch.ones(len(b), dtype=torch.long)])
    size, pc_range = [0.5, 0.5, 1.0], [0, 0, 0, 4, 4, 4]
    dyn = dynamic_voxelize(points, size, pc_range, batch=batch)
    assert isinstance(dyn, DynamicVoxels) and dyn.spatial_shape == (4, 8, 8)
    assert dyn.coords.dtype == torch.int32 and dyn.coords.shape[1] == 4
    assert dyn.point_voxel.dtype == torch.int64 and dyn.num_points.dtype == torch.int32
    keys = [tuple(c) for c in dyn.coords.tolist()]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # (b, z, y, x) order, each once
    inside = dyn.point_voxel >= 0
    assert torch.equal(dyn.coords[dyn.point_voxel[inside], 0].long(), batch[inside])
    for sample, cloud in ((0, a), (1, b)):  # each sample's part equals the unbatched result
        alone = dynamic_voxelize(cloud, size, pc_range)
        mine = dyn.coords[:, 0] == sample
        assert torch.equal(dyn.coords[mine, 1:], alone.coords)
        assert torch.equal(dyn.num_points[mine], alone.num_points)


def test_dynamic_cells_match_hard_grid_on_boundaries():
    rng = np.random.default_rng(6)
    k = rng.integers(-1, 10, (500, 3)).astype(np.float32)
    points = torch.from_numpy(np.float32(-39.68) + k * np.float32(0.16))  # on voxel faces
    size, pc_range = [0.16, 0.16, 0.16], [-39.68, -39.68, -39.68, -38.4, -38.4, -38.4]
    dyn = dynamic_voxelize(points, size, pc_range)
    _, coords, num = voxelize(points, size, pc_range, 500, 500)
    assert {tuple(c) for c in coords.tolist()} == {tuple(c) for c in dyn.coords.tolist()}
    assert int(num.sum()) == int((dyn.point_voxel >= 0).sum())


def ref_scatter(features: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int, reduce: str):
    out = torch.zeros((num_voxels, *features.shape[1:]), dtype=features.dtype)
    for v in range(num_voxels):
        rows = features[point_voxel == v]
        if len(rows):
            out[v] = rows.mean(0) if reduce == "mean" else rows.max(0).values
    return out


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_scatter_against_reference(reduce):
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(200, 6, dtype=torch.float64, generator=gen)
    point_voxel = torch.randint(-1, 25, (200,), generator=gen)
    point_voxel[point_voxel == 3] = -1  # voxel 3 empty
    fn = scatter_mean if reduce == "mean" else scatter_max
    got = fn(features, point_voxel, 30)  # voxels 25..29 empty too
    torch.testing.assert_close(got, ref_scatter(features, point_voxel, 30, reduce))
    assert torch.equal(got, fn(features, point_voxel, 30))  # deterministic
    assert torch.equal(fn(features[:, 0], point_voxel, 30), got[:, 0])  # (N,) features too
    leaf = features.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: fn(f, point_voxel, 30), (leaf,))
    fn(leaf, point_voxel, 30).sum().backward()
    assert torch.all(leaf.grad[point_voxel < 0] == 0)


def test_scatter_max_ties_share_gradient():
    features = torch.tensor([[1.0], [1.0], [0.0]], requires_grad=True)
    scatter_max(features, torch.tensor([0, 0, 0]), 1).sum().backward()
    torch.testing.assert_close(features.grad, torch.tensor([[0.5], [0.5], [0.0]]))


def test_dynamic_mean_of_empty_and_outside():
    points = torch.tensor([[9.0, 9.0, 9.0, 1.0]])  # outside
    dyn = dynamic_voxelize(points, [1, 1, 1], [0, 0, 0, 4, 4, 4])
    assert dyn.num_voxels == 0 and dyn.point_voxel.tolist() == [-1]
    assert dyn.mean(points).shape == (0, 4) and dyn.max(points).shape == (0, 4)
    empty = dynamic_voxelize(torch.zeros(0, 4), [1, 1, 1], [0, 0, 0, 4, 4, 4])
    assert empty.coords.shape == (0, 3) and empty.coords.dtype == torch.int32
    assert empty.point_voxel.shape == (0,) and empty.num_points.shape == (0,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), batched=st.booleans())
def test_permuting_points_permutes_only_point_voxel(seed, n, batched):
    rng = np.random.default_rng(seed)
    xyz = np.float32(-1) + rng.integers(0, 12, (n, 3)).astype(np.float32) * np.float32(0.25)
    xyz += rng.choice([0, 0.1, 0.25], (n, 3)).astype(np.float32)  # faces and interiors
    points = torch.from_numpy(np.column_stack([xyz, rng.normal(size=(n, 2))]).astype(np.float64))
    batch = torch.from_numpy(rng.integers(0, 3, n)) if batched else None
    perm = torch.from_numpy(rng.permutation(n))
    size, pc_range = [0.25, 0.25, 0.5], [-1, -1, -1, 1.5, 1.2, 1.7]
    dyn = dynamic_voxelize(points, size, pc_range, batch)
    dyn_p = dynamic_voxelize(points[perm], size, pc_range, None if batch is None else batch[perm])
    assert torch.equal(dyn_p.coords, dyn.coords)
    assert torch.equal(dyn_p.num_points, dyn.num_points)
    assert torch.equal(dyn_p.point_voxel, dyn.point_voxel[perm])
    torch.testing.assert_close(dyn_p.mean(points[perm]), dyn.mean(points))
    assert torch.equal(dyn_p.max(points[perm]), dyn.max(points))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 200))
def test_hard_voxel_sets_are_permutation_invariant_without_caps(seed, n):
    """With P and max_voxels >= N, permuting the points permutes voxels and their point lists only."""
    rng = np.random.default_rng(seed)
    points = (rng.integers(0, 6, (n, 4)) * 0.5 + rng.choice([0, 0.2], (n, 4))).astype(np.float32)
    perm = rng.permutation(n)

    def voxel_sets(p):
        voxels, coords, num = voxelize(p, [1, 1, 1], [0, 0, 0, 3, 3, 3], n, n)
        return {
            tuple(c): sorted(map(tuple, v[:k].tolist()))
            for c, v, k in zip(coords.tolist(), voxels, num.tolist(), strict=True)
        }

    assert voxel_sets(points) == voxel_sets(points[perm])


# ----------------------------------------------------------------------------------------------------
# Bad input and empty results

GOOD = ([1, 1, 1], [0, 0, 0, 4, 4, 4], 2, 10)


@pytest.mark.parametrize("kind", ["numpy", "tensor", "torch-path", "float64", "dynamic"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_raise(kind, bad):
    pts = np.array([[0.5, 0.5, 0.5, 1.0], [1.5, 0.5, 0.5, 2.0]], np.float32)
    pts[1, 1] = bad
    with contextlib.ExitStack() as stack, pytest.raises(ValueError, match="points"):
        if kind == "numpy":
            voxelize(pts, *GOOD)
        elif kind == "float64":
            voxelize(pts.astype(np.float64), *GOOD)
        elif kind == "dynamic":
            dynamic_voxelize(torch.from_numpy(pts), *GOOD[:2])
        else:
            if kind == "torch-path":
                stack.enter_context(torch_path())
            voxelize(torch.from_numpy(pts), *GOOD)


def test_non_finite_attributes_are_carried():
    pts = np.array([[0.5, 0.5, 0.5, np.nan]], np.float32)
    voxels, _, _ = voxelize(pts, *GOOD)
    assert np.isnan(voxels[0, 0, 3])


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((np.zeros((5, 2), np.float32), *GOOD), "points"),
        ((np.zeros(5, np.float32), *GOOD), "points"),
        ((np.zeros((5, 4), np.int32), *GOOD), "points"),
        ((np.zeros((5, 4), np.float32), [1, 1], *GOOD[1:]), "voxel_size"),
        ((np.zeros((5, 4), np.float32), [1, 0, 1], *GOOD[1:]), "voxel_size"),
        ((np.zeros((5, 4), np.float32), [1, -1, 1], *GOOD[1:]), "voxel_size"),
        ((np.zeros((5, 4), np.float32), [1, np.nan, 1], *GOOD[1:]), "voxel_size"),
        ((np.zeros((5, 4), np.float32), GOOD[0], [0, 0, 0, 4, 4], *GOOD[2:]), "point_cloud_range"),
        ((np.zeros((5, 4), np.float32), GOOD[0], [0, 0, 4, 4, 4, 4], *GOOD[2:]), "point_cloud_range"),
        ((np.zeros((5, 4), np.float32), GOOD[0], [0, 0, 5, 4, 4, 4], *GOOD[2:]), "point_cloud_range"),
        ((np.zeros((5, 4), np.float32), GOOD[0], [0, 0, 0, 4, 4, 0.4], *GOOD[2:]), "point_cloud_range"),
        ((np.zeros((5, 4), np.float32), *GOOD[:2], 0, 10), "max_points_per_voxel"),
        ((np.zeros((5, 4), np.float32), *GOOD[:2], 1.5, 10), "max_points_per_voxel"),
        ((np.zeros((5, 4), np.float32), *GOOD[:2], True, 10), "max_points_per_voxel"),
        ((np.zeros((5, 4), np.float32), *GOOD[:3], 0), "max_voxels"),
    ],
)
def test_bad_arguments_raise(args, name):
    with pytest.raises(ValueError, match=name):
        voxelize(*args)
    if name != "points" or (args[0].ndim == 2 and args[0].dtype.kind == "f"):
        with pytest.raises(ValueError, match=name):
            voxelize(torch.from_numpy(args[0]), *args[1:])


@pytest.mark.parametrize("points", [np.zeros((0, 4), np.float32), np.full((7, 4), 9.0, np.float32)])
def test_empty_and_all_outside_give_empty_results(points):
    for voxels, coords, num in both_paths(points, *GOOD):
        assert voxels.shape == (0, 2, 4) and voxels.dtype == np.float32
        assert coords.shape == (0, 3) and coords.dtype == np.int32
        assert num.shape == (0,) and num.dtype == np.int32


def test_mismatched_devices_raise():
    points = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="batch"):
        dynamic_voxelize(points, *GOOD[:2], batch=torch.zeros(4, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="batch"):
        dynamic_voxelize(points, *GOOD[:2], batch=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="point_voxel"):
        scatter_mean(points, torch.zeros(4, dtype=torch.long, device="meta"), 1)
    with pytest.raises(ValueError, match="point_voxel"):
        scatter_max(points, torch.full((4,), 5), 2)
    with pytest.raises(ValueError, match="features"):
        scatter_mean(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), 1)
