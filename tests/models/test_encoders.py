"""Point-to-voxel encoders: decoration, permutation invariance within a voxel, no mixing between voxels or
samples, no empty voxels, gradients to every parameter, and the padding-free attention against a loop."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perception.models.encoders import PointNetEncoder, PVTEncoder, group_points, grouping
from perception.models.encoders.grouping import PointGroups, canonical_order
from perception.models.encoders.pvt import segment_attention, segment_softmax
from perception.ops import voxelize
from perception.structures import VoxelFeatures

VOXEL = [1.0, 1.0, 1.0]
RANGE = [0.0, 0.0, -1.0, 4.0, 3.0, 1.0]  # grid (D, H, W) = (2, 3, 4): few voxels, many points each


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_points(n: int, seed: int, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4) points in and a little around RANGE (some outside), and (n,) batch indices."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
    xyz = lo - 0.3 + torch.rand(n, 3, generator=g) * (hi - lo + 0.6)
    points = torch.cat([xyz, torch.rand(n, 1, generator=g)], dim=1)
    return points, torch.randint(0, batch_size, (n,), generator=g)


ENCODERS = {
    "pointnet": lambda: PointNetEncoder(4, VOXEL, RANGE, channels=(16,)),
    "pointnet-2layer": lambda: PointNetEncoder(4, VOXEL, RANGE, channels=(8, 16)),
    "pvt-residual": lambda: PVTEncoder(4, VOXEL, RANGE, width=16, depth=2, num_heads=4, query="residual"),
    "pvt-latent": lambda: PVTEncoder(
        4, VOXEL, RANGE, width=16, depth=2, num_heads=2, query="latent", out_channels=8
    ),
}


def build(name: str, train: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    encoder = ENCODERS[name]()
    for m in encoder.modules():  # non-trivial BatchNorm running statistics for eval mode
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return encoder.train(train)


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31 - 1))
def test_permutation_invariant_within_voxels(name: str, train: bool, n: int, seed: int) -> None:
    encoder = build(name, train)
    points, batch = make_points(n, seed)
    if train:  # BatchNorm cannot train on a single point (torch raises)
        assume(len(group_points(points, batch, VOXEL, RANGE).points) >= 2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        a = encoder(points, batch, 2)
        b = encoder(points[perm], batch[perm], 2)
    # voxels are sorted by (b, z, y, x): the same set of voxels comes back in the same order
    assert torch.equal(a.coords, b.coords)
    torch.testing.assert_close(a.features, b.features, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_output_voxels_are_exactly_the_occupied_ones(name: str) -> None:
    encoder = build(name, train=False)
    points, batch = make_points(200, seed=3)
    out = encoder(points, batch, 2)
    assert isinstance(out, VoxelFeatures)
    assert out.spatial_shape == (2, 3, 4) and out.batch_size == 2
    assert out.coords.dtype == torch.int32 and out.coords.shape == (out.num_voxels, 4)
    assert out.features.shape == (out.num_voxels, encoder.out_channels)
    cell = torch.floor((points[:, :3] - torch.tensor(RANGE[:3])) / torch.tensor(VOXEL)).long()
    inside = ((cell >= 0) & (cell < torch.tensor([4, 3, 2]))).all(1)
    expected = {
        (int(b), int(c[2]), int(c[1]), int(c[0])) for b, c in zip(batch[inside], cell[inside], strict=True)
    }
    assert {tuple(r) for r in out.coords.tolist()} == expected
    assert len(out.coords) == len(expected)  # each once, none empty
    assert torch.isfinite(out.features).all()


@pytest.mark.parametrize("name", list(ENCODERS))
def test_voxels_and_samples_do_not_mix(name: str) -> None:
    """Changing the points of one voxel (or of one sample) leaves every other voxel's feature unchanged."""
    encoder = build(name, train=False)
    points, batch = make_points(300, seed=5)
    with torch.no_grad():
        base = encoder(points, batch, 2)
        # 1) move the points of voxel (b=0, z=1, y=1, x=2) around inside it and change their attribute
        cell = torch.floor((points[:, :3] - torch.tensor(RANGE[:3])) / torch.tensor(VOXEL)).long()
        target = (batch == 0) & (cell == torch.tensor([2, 1, 1])).all(1)
        assert target.sum() >= 2
        moved = points.clone()
        moved[target, :3] = torch.tensor([2.0, 1.0, 0.0]) + torch.rand(int(target.sum()), 3) * 0.99
        moved[target, 3] = 5.0
        out = encoder(moved, batch, 2)
        assert torch.equal(out.coords, base.coords)
        row = (base.coords == torch.tensor([0, 1, 1, 2], dtype=torch.int32)).all(1)
        assert not torch.allclose(out.features[row], base.features[row])
        torch.testing.assert_close(out.features[~row], base.features[~row], atol=1e-6, rtol=1e-6)
        # 2) sample 1 alone gives sample 1's features of the batch
        alone = encoder(points[batch == 1], torch.zeros(int((batch == 1).sum()), dtype=torch.long), 1)
        in_batch = base.coords[:, 0] == 1
        assert torch.equal(alone.coords[:, 1:], base.coords[in_batch, 1:])
        torch.testing.assert_close(alone.features, base.features[in_batch], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_gradients_reach_every_parameter(name: str) -> None:
    encoder = build(name, train=True)
    points, batch = make_points(300, seed=7)
    out = encoder(points, batch, 2)
    weights = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(0))
    (out.features * weights).sum().backward()
    for pname, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(ENCODERS))
def test_no_points_in_range(name: str) -> None:
    encoder = build(name, train=True)
    points = torch.tensor([[10.0, 10.0, 0.0, 0.5], [-5.0, 1.0, 0.0, 0.5]])
    out = encoder(points, torch.zeros(2, dtype=torch.long), 3)
    assert out.features.shape == (0, encoder.out_channels) and out.coords.shape == (0, 4)
    assert out.batch_size == 3


def test_decoration_offsets_to_voxel_mean_and_centre() -> None:
    points = torch.tensor([[0.2, 0.1, -0.9, 7.0], [0.6, 0.5, -0.1, 8.0], [3.5, 2.5, 0.5, 9.0]])
    groups = group_points(points, torch.zeros(3, dtype=torch.long), VOXEL, RANGE)
    assert groups.coords.tolist() == [[0, 0, 0, 0], [0, 1, 2, 3]]
    assert groups.num_points.tolist() == [2, 1]
    expected = torch.tensor(
        [
            [0.2, 0.1, -0.9, 7.0, -0.2, -0.2, -0.4, -0.3, -0.4, -0.4],
            [0.6, 0.5, -0.1, 8.0, 0.2, 0.2, 0.4, 0.1, 0.0, 0.4],
            [3.5, 2.5, 0.5, 9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(groups.decorated(), expected)


def test_segment_attention_matches_a_per_voxel_loop() -> None:
    """The padding-free segment softmax / attention equals softmax attention voxel by voxel."""
    g = torch.Generator().manual_seed(0)
    points, batch = make_points(120, seed=11)
    groups = group_points(points, batch, VOXEL, RANGE)
    v, n, h, d = groups.num_voxels, len(groups.points), 3, 5
    q = torch.randn(v, h, d, generator=g) * 3
    k = torch.randn(n, h, d, generator=g) * 3
    val = torch.randn(n, h, 4, generator=g)
    out = segment_attention(q, k, val, groups)
    weights = segment_softmax((groups.broadcast(q) * k).sum(-1) / math.sqrt(d), groups)
    start = 0
    for i, count in enumerate(groups.num_points.tolist()):
        ks, vs = k[start : start + count], val[start : start + count]  # (P, h, d)
        logits = torch.einsum("hd,phd->ph", q[i], ks) / math.sqrt(d)
        ref_w = torch.softmax(logits, dim=0)
        torch.testing.assert_close(weights[start : start + count], ref_w)
        torch.testing.assert_close(out[i], torch.einsum("ph,phe->he", ref_w, vs))
        start += count
    assert start == n


def test_pvt_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        PVTEncoder(4, VOXEL, RANGE, width=10, num_heads=4)
    with pytest.raises(ValueError, match="query"):
        PVTEncoder(4, VOXEL, RANGE, query="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latent"):
        PVTEncoder(4, VOXEL, RANGE, depth=0, query="latent")


def test_attention_and_broadcast_gradients_are_exact() -> None:
    """gradcheck (float64) of the padding-free attention, including the custom broadcast's backward."""
    g = torch.Generator().manual_seed(0)
    points, batch = make_points(40, seed=13)
    groups = group_points(points.double(), batch, VOXEL, RANGE)
    v, n = groups.num_voxels, len(groups.points)
    q = torch.randn(v, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(n, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    val = torch.randn(n, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, val: segment_attention(q, k, val, groups), (q, k, val))
    assert torch.autograd.gradgradcheck(groups.broadcast, (q,))


# ----------------------------------------------------------------------------------------------------
# Bitwise the same for any order (found by tools/check_invariance.py: sums over a voxel's points in input
# order moved the features by ~1e-7, which the refinement stage's point-in-box tests turned into
# different detection scores)


@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize("seed", range(3))
def test_eval_features_are_bitwise_the_same_for_any_order(name: str, seed: int) -> None:
    encoder = build(name, train=False)
    points, batch = make_points(600, seed)  # ~25 points a voxel
    twins = points[:100].clone()  # the same x, y, z with another attribute (two returns)
    twins[:, 3] = torch.rand(100, generator=torch.Generator().manual_seed(seed))
    points, batch = torch.cat([points, twins]), torch.cat([batch, batch[:100]])
    with torch.no_grad():
        a = encoder(points, batch, 2)
        for k in range(3):
            perm = torch.randperm(len(points), generator=torch.Generator().manual_seed(100 * seed + k))
            b = encoder(points[perm], batch[perm], 2)
            assert torch.equal(a.coords, b.coords) and torch.equal(a.features, b.features)


def test_canonical_order_is_by_voxel_then_x_and_ignores_the_input_order() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(500, 3, generator=g), torch.rand(500, 2, generator=g)], 1)
    points[250:, :3] = points[:250, :3]  # pairs at the same x, y, z with other attributes
    voxel = torch.randint(0, 7, (500,), generator=g)
    voxel[250:] = voxel[:250]
    rows = points[canonical_order(points, voxel)]
    keys = voxel[canonical_order(points, voxel)]
    assert bool((keys[1:] >= keys[:-1]).all())
    same = keys[1:] == keys[:-1]
    assert bool((rows[1:, 0][same] >= rows[:-1, 0][same]).all())  # x ascending within a voxel (negatives too)
    for _ in range(3):
        perm = torch.randperm(500, generator=g)
        assert torch.equal(points[perm][canonical_order(points[perm], voxel[perm])], rows)


# ----------------------------------------------------------------------------------------------------
# Grouping on the CPU: one numba pass (perception.ops.voxelize.group_by_voxel) gives the torch path's groups


@contextlib.contextmanager
def torch_grouping() -> Iterator[None]:
    old, grouping._TORCH_ON_CPU = grouping._TORCH_ON_CPU, True
    try:
        yield
    finally:
        grouping._TORCH_ON_CPU = old


def assert_same_groups(a: PointGroups, b: PointGroups) -> None:
    for field in ("points", "voxel", "num_points", "coords"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and torch.equal(x, y), field
    assert a.spatial_shape == b.spatial_shape and a.batch_size == b.batch_size


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(0, 3000),
    batch_size=st.integers(1, 3),
    voxel=st.sampled_from([[1.0, 1.0, 1.0], [0.25, 0.25, 2.0], [0.05, 0.05, 0.05], [4.0, 4.0, 4.0]]),
    ties=st.booleans(),
    dense=st.booleans(),
)
def test_grouping_kernel_gives_the_torch_paths_groups(
    seed: int, n: int, batch_size: int, voxel: list[float], ties: bool, dense: bool
) -> None:
    """Dense-table and sorted-key cell orders, short and long runs (insertion sort and merge sort),
    rows with equal x, identical rows, negative coordinates and -0.0, points outside the range."""
    points, batch = make_points(n, seed, batch_size)
    if ties and n > 10:
        g = torch.Generator().manual_seed(seed)
        points[: n // 3, 0] = points[n // 3 : 2 * (n // 3), 0]  # equal x, other columns differ
        dup = torch.randint(0, n, (n // 5,), generator=g)
        points[-(n // 5) :], batch[-(n // 5) :] = points[dup], batch[dup]  # identical rows
        points[::7, 0] = -0.0
    old, voxelize._GROUP_DENSE_CELLS = (
        voxelize._GROUP_DENSE_CELLS,
        voxelize._GROUP_DENSE_CELLS if dense else 0,
    )
    try:
        a = group_points(points, batch, voxel, RANGE, batch_size)
    finally:
        voxelize._GROUP_DENSE_CELLS = old
    with torch_grouping():
        b = group_points(points, batch, voxel, RANGE, batch_size)
    assert_same_groups(a, b)


def test_grouping_kernel_on_a_kitti_sized_cloud() -> None:
    g = torch.Generator().manual_seed(0)
    points = torch.rand(60000, 4, generator=g) * torch.tensor([60.0, 60.0, 5.0, 1.0]) - torch.tensor(
        [5.0, 30.0, 3.5, 0.0]
    )
    batch = torch.randint(0, 2, (60000,), generator=g)
    grid = ([0.32, 0.32, 4.0], [0.0, -25.6, -3.0, 51.2, 25.6, 1.0])
    a = group_points(points, batch, *grid)
    with torch_grouping():
        assert_same_groups(a, group_points(points, batch, *grid))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_grouping_refuses_non_finite_coordinates_on_both_paths(bad: float) -> None:
    points, batch = make_points(200, 0)
    points[17, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        group_points(points, batch, VOXEL, RANGE, 2)
    with torch_grouping(), pytest.raises(ValueError, match="NaN or infinite"):
        group_points(points, batch, VOXEL, RANGE, 2)
