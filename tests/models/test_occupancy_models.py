"""The occupancy forecasters: shapes, the grid's layout, permutation invariance, batch independence, learning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.models.backbones.point2point import Point2PointBackbone
from perception.models.occupancy import (
    OccupancyFlowHead,
    PillarOccupancyNet,
    Point2PointOccupancyNet,
    forecast_probabilities,
    grid_cells,
)
from perception.structures.occupancy import OccupancyGrid

GRID = OccupancyGrid(height=16, width=16, pixels_per_meter=1.0, ego_col=8, ego_row=12)


def p2p(grid=GRID, t=2):
    backbone = Point2PointBackbone(
        5, 16, grid_size=0.5, channels=(8, 16), strides=(2,), enc_blocks=(1, 1), dec_blocks=(1,)
    )
    return Point2PointOccupancyNet(grid, t, backbone=backbone, bev_channels=(8, 16), bev_blocks=(1, 1))


def pillars(grid=GRID, t=2):
    return PillarOccupancyNet(grid, t, pillar_channels=(8,), bev_channels=(8, 16), bev_blocks=(1, 1))


MODELS = {"point2point": p2p, "pillars": pillars}


def cloud(n, seed):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 5, generator=g)
    pts[:, 0] = pts[:, 0] * 15 - 3  # x in [-3, 12): on the grid (rows 0..15)
    pts[:, 1] = pts[:, 1] * 15 - 7
    pts[:, 2] = pts[:, 2] * 2 - 1
    pts[:, 4] = -0.1 * torch.randint(0, 5, (n,), generator=g)
    return pts


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_grid_cells_match_the_official_rounding():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.49, -0.49], [100.0, 0.0]])
    row, col, inside = grid_cells(pts, GRID)
    assert row[:4].tolist() == [12, 11, 12, 12] and col[:4].tolist() == [8, 8, 7, 8]
    assert inside.tolist() == [True, True, True, True, False]


@pytest.mark.parametrize("name", MODELS)
def test_shapes(name):
    model = MODELS[name]().eval()
    pts = torch.cat([cloud(200, 0), cloud(100, 1)])
    batch = torch.cat([torch.zeros(200), torch.ones(100)]).long()
    with torch.no_grad():
        out = forecast_probabilities(model(pts, batch, 2))
    assert out.observed.shape == out.occluded.shape == (2, 2, 3, 16, 16)
    assert out.flow.shape == (2, 2, 16, 16, 2)
    assert 0 <= float(out.observed.min()) and float(out.observed.max()) <= 1


def test_pillars_put_a_point_in_its_grid_cell():
    model = pillars().eval()
    feats = {}
    model.bev.register_forward_hook(lambda m, i, o: feats.update(bev_in=i[0]))
    with torch.no_grad():
        model(torch.tensor([[3.0, 2.0, 0.0, 0.5, 0.0]]), torch.zeros(1, dtype=torch.long), 1)
    occupied = feats["bev_in"][0].abs().sum(0).nonzero().tolist()
    row, col, _ = grid_cells(torch.tensor([[3.0, 2.0]]), GRID)
    assert occupied == [[int(row), int(col)]]


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 150), seed=st.integers(0, 1000), name=st.sampled_from(sorted(MODELS)))
def test_permuting_the_points_changes_nothing(n, seed, name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    pts = cloud(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    zeros = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        a, b = model(pts, zeros, 1), model(pts[perm], zeros, 1)
    for x, y in ((a.observed, b.observed), (a.occluded, b.occluded), (a.flow, b.flow)):
        assert relative(y, x) <= 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_samples_do_not_affect_each_other(name):
    model = MODELS[name]().eval()
    a, b = cloud(120, 3), cloud(80, 4)
    with torch.no_grad():
        alone = model(a, torch.zeros(120, dtype=torch.long), 1)
        both = model(torch.cat([b, a]), torch.cat([torch.zeros(80), torch.ones(120)]).long(), 2)
    assert relative(both.observed[1], alone.observed[0]) <= 1e-5
    assert relative(both.flow[1], alone.flow[0]) <= 1e-5


def test_head_layout():
    head = OccupancyFlowHead(4, num_waypoints=3)
    out = head(torch.randn(2, 4, 5, 6))
    assert out.observed.shape == (2, 3, 3, 5, 6) and out.flow.shape == (2, 3, 5, 6, 2)
