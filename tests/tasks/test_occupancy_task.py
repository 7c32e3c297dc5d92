"""The occupancy task: its loss, the differentiable warp against the metric's exact one, a fit end to end."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import pytest
import torch

from perception.data.occupancy import SYNTHETIC_OCCUPANCY, OccupancyDataModule
from perception.data.synthetic.writer import write_dataset
from perception.eval.occupancy import flow_warp
from perception.models.backbones.point2point import Point2PointBackbone
from perception.models.occupancy import PillarOccupancyNet, Point2PointOccupancyNet
from perception.structures.occupancy import OccupancyGrid
from perception.tasks.occupancy import OccupancyTask, warp_by_flow

GRID = OccupancyGrid(height=32, width=32, pixels_per_meter=1.0, ego_col=16, ego_row=24)


def test_warp_by_flow_is_the_metric_warp():
    g = torch.Generator().manual_seed(0)
    origin = (torch.rand(2, 3, 12, 10, generator=g) > 0.7).float()
    flow = torch.randn(2, 3, 12, 10, 2, generator=g) * 3
    exact = flow_warp(origin, flow)
    assert torch.allclose(warp_by_flow(origin, flow), exact.reshape(origin.shape), atol=1e-4)


def test_warp_of_a_whole_cell_shift():
    origin = torch.zeros(1, 1, 8, 8)
    origin[0, 0, 5, 3] = 1.0
    flow = torch.zeros(1, 1, 8, 8, 2)
    flow[..., 1] = 2.0  # every cell looks two rows down
    out = warp_by_flow(origin, flow)
    assert float(out[0, 0, 3, 3]) == pytest.approx(1.0, abs=1e-5) and float(out.sum()) == pytest.approx(
        1.0, abs=1e-5
    )


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("occ")
    write_dataset(
        root, frames=40, sequences=2, config=replace(SYNTHETIC_OCCUPANCY, num_beams=8), val_fraction=0.5
    )
    return root


def tiny_models():
    backbone = Point2PointBackbone(
        5, 16, grid_size=0.5, channels=(8, 16), strides=(2,), enc_blocks=(1, 1), dec_blocks=(1,)
    )
    return {
        "point2point": Point2PointOccupancyNet(
            GRID, 2, backbone=backbone, bev_channels=(8, 16), bev_blocks=(1, 1)
        ),
        "pillars": PillarOccupancyNet(GRID, 2, pillar_channels=(8,), bev_channels=(8, 16), bev_blocks=(1, 1)),
    }


@pytest.mark.parametrize("name", ["point2point", "pillars"])
def test_fit_and_validate_with_the_baselines(tiny_root, name, tmp_path):
    torch.manual_seed(0)
    dm = OccupancyDataModule(
        root=str(tiny_root),
        grid=GRID,
        waypoint_times=(0.5, 1.0),
        max_points=3000,
        val_stride=4,
        num_workers=0,
    )
    task = OccupancyTask(tiny_models()[name], lr=3e-3)
    trainer = L.Trainer(
        max_steps=6, limit_val_batches=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, dm)
    m = task.last_metrics
    for prefix in ("", "copy_forward/", "constant_velocity/"):
        assert 0.0 <= m[f"{prefix}observed_auc"] <= 1.0
        assert m[f"{prefix}num_waypoints_with_observed_occupancy"] == 2
    assert m["constant_velocity/observed_iou"] > m["copy_forward/observed_iou"]


def test_training_fits_one_batch(tiny_root):
    """A learning test: 60 steps on one batch take the vehicles' Soft-IoU from ~0.01 past 0.35."""
    torch.manual_seed(0)
    dm = OccupancyDataModule(
        root=str(tiny_root), grid=GRID, waypoint_times=(0.5,), max_points=3000, num_workers=0
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    model = tiny_models()["pillars"]
    model.head = type(model.head)(model.bev.out_channels, 1)
    task = OccupancyTask(model)
    opt = torch.optim.Adam(task.parameters(), 3e-3)

    def soft_iou() -> float:
        p = torch.sigmoid(task(batch).observed[:, :, 0])
        y = batch.occupancy.observed[:, :, 0]
        return float((p * y).sum() / (p.sum() + y.sum() - (p * y).sum()))

    before = soft_iou()
    for _ in range(60):
        loss = task.loss(task(batch), batch.occupancy)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = soft_iou()  # train mode: BatchNorm's running statistics need more than 60 steps
    assert before < 0.05 and after > 0.35, (before, after)
