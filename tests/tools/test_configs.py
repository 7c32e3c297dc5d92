"""Every config in configs/ parses with the CLI's parser, builds its model and runs a forward pass.

Detection configs (``model:`` holds the DetectionTask's arguments) go through ``DetectionCLI``; task
configs (``model: {class_path: ...}``, segmentation) through ``TaskCLI``.

The fast forward runs on a 16 × 16-cell window of each config's grid (x / y cut down, z, voxel size
and every layer kept), so channel and stride wiring is checked in well under a second per config;
the slow one runs the full grid.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from perception.cli import CONFIG_DIR, DetectionCLI, TaskCLI
from perception.models import Detector
from perception.models.heads.center_head import HeadOutput
from perception.structures import Sample, collate

REPO = Path(__file__).resolve().parents[2]
# model configs (overlays such as wandb.yaml, which only add loggers, are tested where they are used)
MODEL_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if "model" in yaml.safe_load(p.read_text()))
CONFIGS = [p for p in MODEL_CONFIGS if "class_path" not in yaml.safe_load(p.read_text())["model"]]
TASK_CONFIGS = [p for p in MODEL_CONFIGS if p not in CONFIGS]
WINDOW_CELLS = 16  # divisible by any stride product up to 16


def _cli(config: Path, monkeypatch) -> DetectionCLI:
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # LightningCLI reads args, not pytest's argv
    return DetectionCLI(run=False, args=["--config", str(config), "--trainer.logger", "false"])


def _windowed(config: Path, folder: Path) -> Path:
    """``config`` with the encoder's, head's and data's range cut to WINDOW_CELLS × WINDOW_CELLS cells."""
    content = yaml.safe_load(config.read_text())
    parts = content["model"]["model"]["init_args"]
    encoder = parts["encoder"]["init_args"]
    x0, y0, z0, _, _, z1 = encoder["point_cloud_range"]
    vx, vy = encoder["voxel_size"][:2]
    window = [x0, y0, z0, x0 + WINDOW_CELLS * vx, y0 + WINDOW_CELLS * vy, z1]
    for section in (encoder, parts["head"]["init_args"], content["data"]):
        section["point_cloud_range"] = window
    path = folder / config.name
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _batch(detector: Detector, points_per_frame=(300, 80), with_box: bool = True, seed: int = 0):
    """Random points inside the detector's range (C = the encoder's columns) and one box per frame."""
    rng = np.random.default_rng(seed)
    lo, hi = np.split(np.asarray(detector.encoder.point_cloud_range, dtype=np.float32), 2)
    columns = detector.encoder.in_channels
    samples = []
    for i, n in enumerate(points_per_frame):
        xyz = rng.uniform(lo + 0.01, hi - 0.01, (n, 3))
        points = np.concatenate([xyz, rng.uniform(0, 1, (n, columns - 3))], axis=1).astype(np.float32)
        centre = (lo + hi) / 2
        boxes = (
            np.array([[*centre, 4.0, 1.8, 1.5, 0.3]], np.float32)
            if with_box
            else np.zeros((0, 7), np.float32)
        )
        samples.append(
            Sample(
                frame_id=f"{i:06d}",
                points=points,
                boxes=boxes,
                labels=np.zeros(len(boxes), np.int64),
                difficulty=np.zeros(len(boxes), np.int32),
            )
        )
    return collate(samples)


def _expected_map(detector: Detector) -> tuple[int, int]:
    lo, hi = np.split(np.asarray(detector.encoder.point_cloud_range), 2)
    cells = np.round((hi - lo) / np.asarray(detector.encoder.voxel_size)).astype(int)
    stride = detector.head.out_stride
    return -(-cells[1] // stride), -(-cells[0] // stride)


def test_there_are_configs_for_each_dataset():
    names = {p.name for p in CONFIGS}
    assert {"pointpillars_kitti.yaml", "pvt_kitti.yaml", "pvt_waymo.yaml"} <= names
    tasks = {p.name for p in TASK_CONFIGS}
    assert {"p2p_seg_synthetic.yaml", "p2p_seg_semantickitti.yaml", "sparse_unet_seg_synthetic.yaml"} <= tasks
    assert {
        "p2p_occupancy_synthetic.yaml",
        "bev_occupancy_synthetic.yaml",
        "p2p_occupancy_waymo.yaml",
    } <= tasks


SEGMENTATION_CONFIGS = [
    p for p in TASK_CONFIGS if "occupancy" not in p.stem and not p.stem.startswith("pointnet_")
]
OCCUPANCY_CONFIGS = [p for p in TASK_CONFIGS if "occupancy" in p.stem]


@pytest.mark.parametrize("config", OCCUPANCY_CONFIGS, ids=[p.stem for p in OCCUPANCY_CONFIGS])
def test_occupancy_config_builds_and_trains_one_step(config, monkeypatch, tmp_path):
    """An occupancy config: the model's grid and waypoints are the data's; one loss and backward on
    random sweeps with one true vehicle cell per waypoint; probabilities out."""
    from perception.structures.occupancy import OccupancyTargets

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    cli = TaskCLI(
        run=False,
        args=["--config", str(config), "--trainer.logger", "false", "--data.init_args.root", str(tmp_path)],
    )
    task, data = cli.model, cli.datamodule
    grid, t = task.model.grid, task.model.num_waypoints
    assert grid == data.grid and t == len(data.hparams.waypoint_times)
    rng = np.random.default_rng(0)
    x0, x1, y0, y1 = grid.extent()
    points = rng.uniform([x0, y0, -2, 0, -0.4], [x1, y1, 2, 1, 0], (3000, 5)).astype(np.float32)
    occupied = np.zeros((t, 3, grid.height, grid.width), np.float32)
    occupied[:, 0, grid.ego_row - 10, grid.ego_col] = 1.0
    empty = np.zeros_like(occupied)
    targets = OccupancyTargets(
        waypoint_times=np.arange(1, t + 1, dtype=np.float32), observed=occupied, occluded=empty,
        flow=np.zeros((t, grid.height, grid.width, 2), np.float32), flow_origin=occupied[:, 0],
        current=occupied[0],
    )  # fmt: skip
    batch = collate([Sample(frame_id="a", points=points, occupancy=targets)])
    task.train()
    losses = task.loss(task(batch), batch.occupancy)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    task.eval()
    with torch.no_grad():
        forecast = task.predict_step(batch, 0)
    assert forecast.observed.shape == (1, t, 3, grid.height, grid.width)
    assert 0 <= float(forecast.observed.min()) and float(forecast.observed.max()) <= 1


@pytest.mark.parametrize("config", SEGMENTATION_CONFIGS, ids=[p.stem for p in SEGMENTATION_CONFIGS])
def test_task_config_builds_and_trains_one_step(config, monkeypatch, tmp_path):
    """A segmentation config: the task and data agree on the class map; one loss and backward on a
    small random scan (labels a function of height), one prediction per point."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    cli = TaskCLI(
        run=False,
        args=["--config", str(config), "--trainer.logger", "false", "--data.init_args.root", str(tmp_path)],
    )
    task, data = cli.model, cli.datamodule
    assert task.label_map == data.label_map
    k = task.label_map.num_classes
    rng = np.random.default_rng(0)
    points = rng.uniform([-20, -20, -2, 0], [20, 20, 3, 1], (3000, 4)).astype(np.float32)
    labels = np.clip(((points[:, 2] + 2) / 5 * k).astype(np.int64) + 1, 1, k)
    batch = collate([Sample(frame_id="a", points=points, point_labels=labels)])
    task.train()
    losses = task.loss(task(batch), batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and task.classifier.weight.grad is not None
    task.eval()
    with torch.no_grad():
        (pred,) = task.predict_step(batch, 0)
    assert pred.shape == (3000,) and int(pred.min()) >= 1 and int(pred.max()) <= k


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_links_classes(config, monkeypatch):
    cli = _cli(config, monkeypatch)
    task, data = cli.model, cli.datamodule
    assert isinstance(task.model, Detector)
    head, encoder = task.model.head, task.model.encoder
    assert list(data.class_names) == task.class_names == head.class_names
    assert head.point_cloud_range == encoder.point_cloud_range == data.point_cloud_range
    assert head.voxel_size[:2] == encoder.voxel_size[:2]
    assert head.map_shape == _expected_map(task.model)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_forward_loss_and_predict_on_a_window(config, monkeypatch, tmp_path):
    cli = _cli(_windowed(config, tmp_path), monkeypatch)
    detector = cli.model.model
    batch = _batch(detector)
    detector.train()
    output = detector(batch)
    assert isinstance(output, HeadOutput)
    assert output.heatmap.shape == (2, len(cli.model.class_names), *_expected_map(detector))
    losses = detector.loss(output, batch)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in detector.head.parameters() if p.requires_grad)
    detector.eval()
    with torch.no_grad():
        detections = detector.predict(detector(batch), batch)
    assert len(detections) == 2 and all(d.boxes.shape[1] == 7 for d in detections)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_forward_on_the_full_grid(config, monkeypatch):
    detector = _cli(config, monkeypatch).model.model.eval()
    batch = _batch(detector, points_per_frame=(200,), with_box=False)
    with torch.no_grad():
        output = detector(batch)
    assert output.heatmap.shape[-2:] == _expected_map(detector) == detector.head.map_shape


@pytest.mark.parametrize("name", ["pointpillars_kitti.yaml", "pvt_kitti.yaml"])
def test_kitti_configs_read_data_kitti_with_its_database(name, monkeypatch):
    cli = _cli(CONFIG_DIR / name, monkeypatch)
    data = cli.datamodule
    assert (data.root, data.database) == ("data/kitti", "data/kitti/gt_database")
    assert data.point_cloud_range == (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)
    assert cli.model.model.encoder.voxel_size[:2] == (0.16, 0.16)
    assert data.batch_size == 4 and cli.trainer.max_epochs == 80
    assert cli.model.model.encoder.in_channels == 4  # x, y, z, reflectance


def test_waymo_config_without_data_says_where_files_go_and_how_to_convert(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no data/ here
    cli = _cli(CONFIG_DIR / "pvt_waymo.yaml", monkeypatch)
    data = cli.datamodule
    assert (data.root, data.dataset) == ("data/waymo/converted", "waymo")
    assert data.point_cloud_range == (-75.2, -75.2, -2.0, 75.2, 75.2, 4.0)
    assert [type(e).__name__ for e in cli.model.evaluators] == ["WaymoEvaluator"]
    assert cli.model.model.encoder.in_channels == 5 and cli.model.model.refiner.point_channels == 5
    with pytest.raises(FileNotFoundError) as err:
        data.setup("fit")
    message = str(err.value)
    assert "data/waymo/converted" in message and "data/waymo/raw/training" in message
    assert "python tools/convert_waymo.py --src data/waymo/raw/training --out data/waymo/converted" in message
    readme = (REPO / "data" / "README.md").read_text()
    waymo_row = next(line for line in readme.splitlines() if line.startswith("| `data/waymo/`"))
    assert "convert_waymo.py" in waymo_row


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--data.point_cloud_range", "[0, -25.6, -3, 40, 25.6, 1]"],
         r"data\.point_cloud_range .* differs from model\.model\.init_args\.encoder\.init_args\.point_cloud_range"),
        (["--model.model.init_args.head.init_args.voxel_size", "[0.16, 0.16, 4.0]"],
         r"encoder's voxel_size .* differs from the head's"),
        (["--model.model.init_args.head.init_args.class_names", "[Car, Pedestrian]"],
         r"model\.model\.init_args\.head\.init_args\.class_names"),
    ],
)  # fmt: skip
def test_values_written_twice_must_agree_and_the_error_names_both_places(override, message, monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    args = [
        "--config",
        str(CONFIG_DIR / "pointpillars_synthetic.yaml"),
        "--trainer.logger",
        "false",
        *override,
    ]
    with pytest.raises((ValueError, SystemExit)) as err:  # jsonargparse may wrap a constructor's error
        DetectionCLI(run=False, args=args)
    text = str(err.value) if isinstance(err.value, ValueError) else str(err.value.__context__)
    assert re.search(message, text), text
