"""Occupancy-flow forecasters: stacked sweeps → BEV features → occupancy and flow at every waypoint.

Two encoders share one BEV stage and one head, so a comparison measures the encoders:

- :class:`Point2PointOccupancyNet`: a :class:`~perception.models.backbones.Point2PointBackbone`
  over the stacked sweeps (x, y, z, intensity, Δt; the curve orders points of all sweeps together, so
  its 1D convolutions see an object's past and present side by side), per-point features max-pooled
  into the grid's cells;
- :class:`PillarOccupancyNet`: the BEV baseline, PointPillars' PointNet over the pillars of the same
  grid (MotionNet-like: time is a point feature, the 2D network does the rest).

Both return an :class:`~perception.structures.occupancy.OccupancyForecast` of *logits* for
occupancy and flow in grid cells; :func:`forecast_probabilities` turns logits into probabilities.
The grids' layout is :class:`~perception.structures.occupancy.OccupancyGrid`'s (ego heading up).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from perception.models.backbones.bev2d import BEVBackbone
from perception.models.backbones.point2point import Point2PointBackbone
from perception.models.backbones.scatter import PillarScatter
from perception.models.encoders.pointnet import PointNetEncoder
from perception.structures.occupancy import AGENT_CLASSES, OccupancyForecast, OccupancyGrid

__all__ = [
    "OccupancyFlowHead",
    "PillarOccupancyNet",
    "Point2PointOccupancyNet",
    "forecast_probabilities",
    "grid_cells",
]


def grid_cells(points: torch.Tensor, grid: OccupancyGrid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, col) int64 of each point's cell (the cell whose centre is nearest), and whether it is on the grid.

    Args:
        points: (N, ≥2) x, y metres in the current sensor frame.
    """
    ppm = grid.pixels_per_meter
    row = torch.floor(grid.ego_row + 0.5 - points[:, 0] * ppm).long()
    col = torch.floor(grid.ego_col + 0.5 - points[:, 1] * ppm).long()
    inside = (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    return row, col, inside


def forecast_probabilities(logits: OccupancyForecast) -> OccupancyForecast:
    """Occupancy logits → probabilities (flow unchanged)."""
    return OccupancyForecast(
        observed=torch.sigmoid(logits.observed), occluded=torch.sigmoid(logits.occluded), flow=logits.flow
    )


class OccupancyFlowHead(nn.Module):
    """BEV features → per waypoint: observed and occluded occupancy logits per agent class, vehicle flow.

    Args:
        in_channels: C of the BEV features.
        num_waypoints: T.
        num_classes: A agent classes (:data:`AGENT_CLASSES`).
        hidden: width of the shared 3×3 convolution.

    Shapes: ``forward((B, C, H, W)) -> OccupancyForecast`` with ``observed``/``occluded``
    (B, T, A, H, W) logits and ``flow`` (B, T, H, W, 2) grid cells.
    """

    def __init__(
        self, in_channels: int, num_waypoints: int, num_classes: int = len(AGENT_CLASSES), hidden: int = 64
    ):
        super().__init__()
        self.t, self.a = int(num_waypoints), int(num_classes)
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.occupancy = nn.Conv2d(hidden, 2 * self.t * self.a, 1)
        self.flow = nn.Conv2d(hidden, 2 * self.t, 1)
        nn.init.constant_(self.occupancy.bias, -4.0)  # a sparse prior: most cells are empty
        nn.init.normal_(self.flow.weight, std=1e-3)
        nn.init.zeros_(self.flow.bias)

    def forward(self, bev: torch.Tensor) -> OccupancyForecast:
        b, _, h, w = bev.shape
        x = self.shared(bev)
        occ = self.occupancy(x).view(b, 2, self.t, self.a, h, w)
        flow = self.flow(x).view(b, self.t, 2, h, w).permute(0, 1, 3, 4, 2)
        return OccupancyForecast(observed=occ[:, 0], occluded=occ[:, 1], flow=flow.contiguous())


def _bev_net(in_channels: int, channels: Sequence[int], blocks: Sequence[int]) -> BEVBackbone:
    n = len(channels)
    strides = (1,) + (2,) * (n - 1)
    ups = tuple(2**i for i in range(n))
    return BEVBackbone(in_channels, channels, blocks, strides, ups, (channels[0],) * n)


class Point2PointOccupancyNet(nn.Module):
    """Point2Point over the stacked sweeps, max-pooled into BEV cells, a BEV U-Net, the occupancy-flow head.

    Args:
        grid: the output grid.
        num_waypoints: T.
        in_channels: point width (x, y, z, intensity, Δt: 5).
        point_channels: Point2Point's per-point output width (the BEV input channels).
        backbone: the point backbone; None builds a Point2Point of 0.2 m cells, strides 4-4-2.
        bev_channels, bev_blocks: the BEV U-Net's stages (stride 1, 2, 4, ...).
        z_range: points outside this height band (metres) are ignored.

    Shapes: ``forward(points (N, in_channels), batch_index (N,), batch_size) -> OccupancyForecast``
    of logits. Permuting a sample's points leaves the output unchanged (eval mode).
    """

    def __init__(
        self,
        grid: OccupancyGrid,
        num_waypoints: int = 4,
        in_channels: int = 5,
        point_channels: int = 64,
        backbone: Point2PointBackbone | None = None,
        bev_channels: Sequence[int] = (64, 128, 128),
        bev_blocks: Sequence[int] = (2, 3, 3),
        z_range: tuple[float, float] = (-3.0, 3.0),
    ) -> None:
        super().__init__()
        self.grid = grid
        self.num_waypoints = int(num_waypoints)
        self.z_range = tuple(float(z) for z in z_range)
        self.backbone = backbone or Point2PointBackbone(
            in_channels,
            point_channels,
            grid_size=0.2,
            channels=(32, 64, 128),
            strides=(4, 4),
            enc_blocks=(1, 1, 2),
            dec_blocks=(1, 1),
        )
        c = self.backbone.out_channels
        self.bev = _bev_net(c, bev_channels, bev_blocks)
        self.head = OccupancyFlowHead(self.bev.out_channels, num_waypoints)

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> OccupancyForecast:
        row, col, inside = grid_cells(points, self.grid)
        inside &= (points[:, 2] >= self.z_range[0]) & (points[:, 2] < self.z_range[1])
        points, batch_index, row, col = points[inside], batch_index[inside], row[inside], col[inside]
        feats = self.backbone(points, batch_index)  # (N, C)
        g = self.grid
        cell = (batch_index * g.height + row) * g.width + col
        bev = feats.new_zeros(batch_size * g.height * g.width, feats.shape[1])
        index = cell[:, None].expand(-1, feats.shape[1])
        bev = bev.scatter_reduce(0, index, feats, "amax", include_self=False)
        bev = bev.view(batch_size, g.height, g.width, -1).permute(0, 3, 1, 2).contiguous()
        return self.head(self.bev(bev))


class PillarOccupancyNet(nn.Module):
    """The BEV baseline: PointNet over pillars of the grid's cells, a BEV U-Net, the occupancy-flow head.

    Args:
        grid: the output grid (the pillars are its cells).
        num_waypoints: T.
        in_channels: point width (x, y, z, intensity, Δt: 5).
        pillar_channels: the pillar PointNet's widths.
        bev_channels, bev_blocks: the BEV U-Net's stages.
        z_range: the pillars' height band (metres).

    Shapes: as :class:`Point2PointOccupancyNet`.
    """

    def __init__(
        self,
        grid: OccupancyGrid,
        num_waypoints: int = 4,
        in_channels: int = 5,
        pillar_channels: Sequence[int] = (64,),
        bev_channels: Sequence[int] = (64, 128, 128),
        bev_blocks: Sequence[int] = (2, 3, 3),
        z_range: tuple[float, float] = (-3.0, 3.0),
    ) -> None:
        super().__init__()
        self.grid = grid
        self.num_waypoints = int(num_waypoints)
        c = grid.cell_size
        x0, x1, y0, y1 = grid.extent()
        self.encoder = PointNetEncoder(
            in_channels,
            (c, c, z_range[1] - z_range[0]),
            (x0, y0, z_range[0], x1, y1, z_range[1]),
            pillar_channels,
        )
        self.scatter = PillarScatter()
        self.bev = _bev_net(self.encoder.out_channels, bev_channels, bev_blocks)
        self.head = OccupancyFlowHead(self.bev.out_channels, num_waypoints)

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> OccupancyForecast:
        bev = self.scatter(self.encoder(points, batch_index, batch_size))  # (B, C, ny, nx)
        bev = bev.transpose(-1, -2).flip(-1, -2)  # rows: x descending, columns: y descending
        g = self.grid
        bev = bev[..., : g.height, : g.width].contiguous()
        return self.head(self.bev(bev))
