"""Point2PointBackbone: the contract (permutation equivariance, clouds independent), the sequence
machinery (cell tokens, curve order, parent pooling, boundaries) and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.models import Point2PointBackbone
from perception.models.backbones.point2point import PatchAttention, SequenceConv
from perception.ops.hilbert import serialize

ORDERS = ["hilbert", "hilbert-trans", "z", "z-trans", "random"]


def small(order="hilbert", mixer="conv", **kw) -> Point2PointBackbone:
    torch.manual_seed(0)
    args = dict(grid_size=0.5, order=order, channels=(8, 16, 32), enc_blocks=(1, 1, 1), dec_blocks=(1, 1))
    args.update(kw)
    return Point2PointBackbone(4, 12, mixer=mixer, patch_size=8, heads=2, **args)


def cloud(n: int, seed: int, spread: float = 6.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(n, 4, generator=g) * spread
    pts[:, 3] = torch.rand(n, generator=g)
    return pts


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def _trained(model: Point2PointBackbone) -> Point2PointBackbone:
    """A few training passes so BatchNorm's running statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for s in range(3):
            model(cloud(200, 100 + s), torch.zeros(200, dtype=torch.long))
    return model.eval()


@pytest.mark.parametrize("mixer", ["conv", "attention"])
@pytest.mark.parametrize("order", [*ORDERS, ("hilbert", "z-trans")])
def test_permuting_points_permutes_outputs(order, mixer):
    model = _trained(small(order, mixer))
    a, b = cloud(300, 0), cloud(150, 1)
    a[40:60, :3] = a[10, :3] + 0.01 * torch.rand(20, 3)  # many points in one cell
    a[60:70] = a[10]  # exact duplicates
    points = torch.cat([a, b])
    batch = torch.cat([torch.zeros(300), torch.ones(150)]).long()
    perm = torch.cat([torch.randperm(300), 300 + torch.randperm(150)])
    with torch.no_grad():
        out = model(points, batch)
        out_perm = model(points[perm], batch[perm])
    assert out.shape == (450, 12)
    assert relative(out[perm], out_perm) <= 1e-5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 120),
    seed=st.integers(0, 10_000),
    spread=st.sampled_from([0.05, 1.0, 20.0]),
    order=st.sampled_from(ORDERS),
)
def test_permutation_equivariance_property(n, seed, spread, order):
    model = small(order).eval()
    pts = cloud(n, seed, spread)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    zeros = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        out = model(pts, zeros)
        assert relative(out[perm], model(pts[perm], zeros)) <= 1e-5


@pytest.mark.parametrize("mixer", ["conv", "attention"])
@pytest.mark.parametrize("order", ["hilbert", "random", ("hilbert", "hilbert-trans")])
def test_clouds_do_not_affect_each_other(order, mixer):
    model = _trained(small(order, mixer))
    a, b, c = cloud(80, 2, spread=2.0), cloud(400, 3, spread=40.0), cloud(33, 4)
    with torch.no_grad():
        alone = model(a, torch.zeros(80, dtype=torch.long))
        # a between two clouds of other sizes and extents, with a gap in the batch indices
        batch = torch.cat([torch.zeros(400), torch.full((80,), 2), torch.full((33,), 5)]).long()
        together = model(torch.cat([b, a, c]), batch)
    assert relative(alone, together[400:480]) <= 1e-5


def test_sequence_conv_stops_at_cloud_ends():
    torch.manual_seed(0)
    conv = SequenceConv(4, 5)
    x = torch.randn(1, 4, 10)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 3, 3, 3])
    y = conv(x, batch)
    for lo, hi in [(0, 3), (3, 7), (7, 10)]:
        assert torch.allclose(y[..., lo:hi], conv(x[..., lo:hi], batch[lo:hi]), atol=1e-6)
    x2 = x.clone()
    x2[..., 3:7] = 100.0  # another cloud's values never reach the first cloud
    assert torch.allclose(conv(x2, batch)[..., :3], y[..., :3])


def test_patch_attention_stays_in_patches_of_one_cloud():
    torch.manual_seed(0)
    att = PatchAttention(8, patch_size=4, heads=2)
    x = torch.randn(1, 8, 11)
    batch = torch.tensor([0] * 6 + [1] * 5)
    y = att(x, batch)
    # cloud 0: patches [0:4], [4:6]; cloud 1: [6:10], [10:11]
    for lo, hi in [(0, 4), (4, 6), (6, 10), (10, 11)]:
        sub = att(x[..., lo:hi], torch.zeros(hi - lo, dtype=torch.long))
        assert torch.allclose(y[..., lo:hi], sub, atol=1e-5)


def test_tokens_follow_the_curve_and_parents_are_runs():
    model = small("hilbert", channels=(8, 16, 32, 64), enc_blocks=(1, 1, 1, 1), dec_blocks=(1, 1, 1))
    g = torch.arange(8)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)  # a full 8³ block
    points = torch.cat([(grid.float() + 0.5) * 0.5, torch.zeros(len(grid), 1)], 1)
    levels, point_cell, _ = model._serialize(points, torch.zeros(len(points), dtype=torch.long))
    assert len(levels[0].batch) == 512
    steps = (levels[0].coords[1:] - levels[0].coords[:-1]).abs().sum(1)
    assert bool((steps == 1).all())  # consecutive tokens of a Hilbert order are face neighbours
    expected = serialize(levels[0].coords, "hilbert", 16)
    assert bool((expected[1:] > expected[:-1]).all())
    for lvl, nxt in itertools.pairwise(levels):
        assert bool((lvl.parent[1:] >= lvl.parent[:-1]).all())  # runs: pooling is along the sequence
        assert torch.equal(nxt.coords[lvl.parent], lvl.coords >> 1)
    assert [len(lv.batch) for lv in levels] == [512, 64, 8, 1]
    assert torch.equal(levels[0].coords[point_cell], grid)


def test_random_order_is_a_fixed_shuffle_of_the_same_cells():
    points = cloud(500, 7, spread=3.0)
    zeros = torch.zeros(500, dtype=torch.long)
    rand, _, _ = small("random")._serialize(points, zeros)
    hil, _, _ = small("hilbert")._serialize(points, zeros)
    key = lambda c: set(map(tuple, c.tolist()))  # noqa: E731
    assert key(rand[0].coords) == key(hil[0].coords)
    steps = lambda c: float((c[1:] - c[:-1]).abs().sum(1).float().mean())  # noqa: E731
    assert steps(rand[0].coords) > 2 * steps(hil[0].coords)
    again, _, _ = small("random")._serialize(points[torch.randperm(500)], zeros)
    assert torch.equal(again[0].coords, rand[0].coords)


def test_every_parameter_gets_a_gradient():
    model = small(("hilbert", "z"))
    model.train()
    out = model(cloud(300, 5), torch.zeros(300, dtype=torch.long))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_edge_cases_have_documented_behaviour():
    model = small()
    empty = model(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, 12)
    model.train()
    one = model(cloud(1, 0), torch.zeros(1, dtype=torch.long))  # a single token trains
    assert one.shape == (1, 12) and bool(torch.isfinite(one).all())
    same = torch.zeros(50, 4)
    same[:, 3] = torch.linspace(0, 1, 50)  # all points in one cell
    out = model(same, torch.zeros(50, dtype=torch.long))
    assert out.shape == (50, 12) and bool(torch.isfinite(out).all())


def test_bad_input_is_refused_with_a_clear_error():
    model = small()
    zeros = torch.zeros(10, dtype=torch.long)
    bad = cloud(10, 0)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(bad, zeros)
    wide = cloud(10, 0)
    wide[0, 0] = 1e5  # 2e5 cells of 0.5 m: more than 2**16
    with pytest.raises(ValueError, match="cells"):
        model(wide, zeros)
    with pytest.raises(ValueError, match="non-decreasing"):
        model(cloud(10, 0), torch.tensor([1, 1, 1, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model(torch.zeros(10, 3), zeros)
    with pytest.raises(ValueError, match="order"):
        Point2PointBackbone(order="peano")
    with pytest.raises(ValueError, match="enc_blocks"):
        Point2PointBackbone(channels=(8, 16), enc_blocks=(1,), dec_blocks=(1,))
    with pytest.raises(ValueError, match="powers of 2"):
        Point2PointBackbone(channels=(8, 16), enc_blocks=(1, 1), dec_blocks=(1,), strides=(3,))


def test_strides_pool_several_octree_levels_at_once():
    model = small("hilbert", strides=(4, 2))
    g = torch.arange(8)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    points = torch.cat([(grid.float() + 0.5) * 0.5, torch.zeros(len(grid), 1)], 1)
    levels, _, _ = model._serialize(points, torch.zeros(len(points), dtype=torch.long))
    assert [len(lv.batch) for lv in levels] == [512, 8, 1]
    assert torch.equal(levels[1].coords[levels[0].parent], levels[0].coords >> 2)
    assert bool((levels[0].parent[1:] >= levels[0].parent[:-1]).all())  # code >> 6 runs
    out = model.eval()(points, torch.zeros(len(points), dtype=torch.long))
    assert out.shape == (512, 12)


@pytest.mark.slow
@pytest.mark.parametrize("mixer", ["conv", "attention"])
def test_learns_a_spatial_labelling(mixer):
    """Labels that depend on position (height bands, and a sphere) are learnt well above chance."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-4, 4, (3000, 3)).astype(np.float32)
    labels = (pts[:, 2] > 0).astype(np.int64) + 2 * (np.linalg.norm(pts, axis=1) < 2.5)
    points = torch.from_numpy(np.concatenate([pts, np.zeros((3000, 1), np.float32)], 1))
    target = torch.from_numpy(labels)
    model = small(mixer=mixer, grid_size=0.25)
    cls = torch.nn.Linear(12, 4)
    opt = torch.optim.Adam([*model.parameters(), *cls.parameters()], lr=1e-2)
    zeros = torch.zeros(3000, dtype=torch.long)
    for _ in range(80):
        loss = torch.nn.functional.cross_entropy(cls(model(points, zeros)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((cls(model(points, zeros)).argmax(1) == target).float().mean())
    assert acc > 0.9
