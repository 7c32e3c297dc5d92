"""Occupancy-flow drawings: panels on hand-made grids (cell colours where the boxes are), strips, GIFs
written atomically, the W&B callback, and tools/visualize.py --sample on tiny synthetic sequences."""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perception.structures.occupancy import OccupancyForecast, OccupancyGrid, OccupancyTargets
from perception.viz.occupancy import (
    LEGEND_HEIGHT,
    OCCUPANCY_COLOURS,
    TITLE_HEIGHT,
    bev_strip,
    cell_pixel,
    forecast_frames,
    render_waypoint,
    sample_forecast,
    sample_points,
    sample_targets,
    save_occupancy,
    write_gif,
)

GRID = OccupancyGrid(height=32, width=32, pixels_per_meter=1.0, ego_col=16, ego_row=24)
WIDTH = 128  # pixels of a panel: 4 per cell
VEHICLE = (slice(4, 10), slice(4, 8))  # rows, columns of the vehicle at waypoint 0
PEDESTRIAN = (20, 26)
OCCLUDED = (12, 12)  # an occluded cyclist
EMPTY = (29, 2)


def make_targets() -> OccupancyTargets:
    """T = 2 waypoints: a vehicle moving two rows up (forward), a standing pedestrian, an occluded
    cyclist; baselines that copy the truth of waypoint 0 and that are the truth."""
    t, a, h, w = 2, 3, GRID.height, GRID.width
    observed = np.zeros((t, a, h, w), np.float32)
    occluded = np.zeros((t, a, h, w), np.float32)
    flow = np.zeros((t, h, w, 2), np.float32)
    observed[0, 0][VEHICLE] = 1.0
    observed[1, 0, 2:8, 4:8] = 1.0
    flow[1, 2:8, 4:8, 1] = 2.0  # backward flow: the content came from two rows down
    observed[:, 1][(slice(None), *PEDESTRIAN)] = 1.0
    occluded[:, 2][(slice(None), *OCCLUDED)] = 1.0
    truth = OccupancyForecast(observed=observed.copy(), occluded=occluded.copy(), flow=flow.copy())
    copy = OccupancyForecast(
        observed=np.repeat(observed[:1], t, 0), occluded=np.zeros_like(occluded), flow=np.zeros_like(flow)
    )
    return OccupancyTargets(
        waypoint_times=np.array([0.5, 1.0], np.float32),
        observed=observed,
        occluded=occluded,
        flow=flow,
        flow_origin=np.zeros((t, h, w), np.float32),
        current=observed[0].copy(),
        baselines={"copy_forward": copy, "constant_velocity": truth},
    )


def make_forecast(targets: OccupancyTargets) -> OccupancyForecast:
    """Half the truth's probability everywhere it is occupied."""
    return OccupancyForecast(
        observed=0.5 * targets.observed, occluded=0.5 * targets.occluded, flow=targets.flow.copy()
    )


def colour(image: np.ndarray, cell: tuple[int, int], panel: int = 0, strip_row: int = 0) -> np.ndarray:
    y, x = cell_pixel(GRID, *cell, panel=panel, strip_row=strip_row, panel_width=WIDTH)
    return image[y, x].astype(np.float64)


def share(
    image: np.ndarray, rows: slice, cols: slice, rgb: np.ndarray, panel: int = 0, strip_row: int = 0
) -> float:
    """The share of the pixels of a block of cells within 3 of ``rgb`` (arrows cover part of a cell)."""
    y0, x0 = cell_pixel(GRID, rows.start, cols.start, panel=panel, strip_row=strip_row, panel_width=WIDTH)
    y1, x1 = cell_pixel(
        GRID, rows.stop - 1, cols.stop - 1, panel=panel, strip_row=strip_row, panel_width=WIDTH
    )
    half = WIDTH // GRID.width // 2
    block = image[y0 - half + 1 : y1 + half, x0 - half + 1 : x1 + half].astype(np.float64)
    return float(np.mean(np.all(np.abs(block - rgb) <= 3, axis=-1)))


def rgb255(name: str, strength: float = 1.0) -> np.ndarray:
    """The pixel of a class colour drawn with ``strength`` over white."""
    return 255.0 * (strength * np.asarray(OCCUPANCY_COLOURS[name]) + (1.0 - strength))


def test_waypoint_panels_colour_the_occupied_cells():
    targets = make_targets()
    image = render_waypoint(targets, make_forecast(targets), 0, GRID, panel_width=WIDTH)
    assert image.dtype == np.uint8 and image.shape == (TITLE_HEIGHT + WIDTH + LEGEND_HEIGHT, 2 * WIDTH, 3)
    vehicle = (6, 5)
    np.testing.assert_allclose(colour(image, vehicle), rgb255("vehicle"), atol=2)
    np.testing.assert_allclose(colour(image, PEDESTRIAN), rgb255("pedestrian"), atol=2)
    np.testing.assert_allclose(colour(image, OCCLUDED), rgb255("occluded"), atol=2)
    np.testing.assert_allclose(colour(image, EMPTY), [255, 255, 255], atol=1)
    # the forecast panel: the same cells at half strength
    np.testing.assert_allclose(colour(image, vehicle, panel=1), rgb255("vehicle", 0.5), atol=3)
    np.testing.assert_allclose(colour(image, OCCLUDED, panel=1), rgb255("occluded", 0.5), atol=3)
    np.testing.assert_allclose(colour(image, EMPTY, panel=1), [255, 255, 255], atol=1)
    # the ego marker (red) sits on the ego cell
    ego = colour(image, (GRID.ego_row, GRID.ego_col))
    assert ego[0] > 200 and ego[1] < 80 and ego[2] < 80
    # the title band holds text
    assert image[:TITLE_HEIGHT].min() < 128


def test_flow_arrows_and_the_current_sweep():
    targets = make_targets()
    still = render_waypoint(targets, None, 0, GRID, panel_width=WIDTH)  # no flow at waypoint 0
    moving = render_waypoint(targets, None, 1, GRID, panel_width=WIDTH)
    # arrows on the moved vehicle (rows 2..7, from two rows further down): dark pixels in its cells
    y0, x0 = cell_pixel(GRID, 2, 4, panel_width=WIDTH)
    y1, x1 = cell_pixel(GRID, 9, 7, panel_width=WIDTH)
    assert moving[y0 : y1 + 1, x0 : x1 + 1].min() < 60
    assert still[cell_pixel(GRID, 6, 5, panel_width=WIDTH)].min() > 20  # vehicle blue, no arrow
    # points: the current sweep (Δt = 0) drawn grey, an older sweep (Δt < 0) left out
    x, y = GRID.ego_row - EMPTY[0], GRID.ego_col - EMPTY[1]  # metres of the empty cell's centre
    old = (GRID.ego_row - 30, GRID.ego_col - 28)
    points = np.array([[x, y, 0.0, 0.5, 0.0], [old[0], old[1], 0.0, 0.5, -0.1]], np.float32)
    drawn = render_waypoint(targets, None, 0, GRID, points, panel_width=WIDTH)
    yy, xx = cell_pixel(GRID, *EMPTY, panel_width=WIDTH)
    assert drawn[yy - 1 : yy + 2, xx - 1 : xx + 2].min() < 245
    yy, xx = cell_pixel(GRID, 30, 28, panel_width=WIDTH)
    assert drawn[yy - 2 : yy + 3, xx - 2 : xx + 3].min() == 255


def test_strip_has_a_row_per_forecast_and_a_column_per_waypoint():
    targets = make_targets()
    forecast = make_forecast(targets)
    panel = TITLE_HEIGHT + WIDTH
    strip = bev_strip(targets, forecast, GRID, panel_width=WIDTH)
    assert strip.shape == (4 * panel + LEGEND_HEIGHT, 2 * WIDTH, 3)  # truth, model, two baselines
    # waypoint 1 (second column): the vehicle moved to rows 2..7 in truth and constant velocity,
    # copy-forward keeps it at rows 4..9
    moved, left = (slice(2, 8), slice(4, 8)), (slice(8, 10), slice(4, 8))  # at waypoint 1
    blue, half_blue, white = rgb255("vehicle"), rgb255("vehicle", 0.5), np.full(3, 255.0)
    assert share(strip, *moved, blue, panel=1, strip_row=0) > 0.3  # truth (arrows cover the rest)
    assert share(strip, *moved, white, panel=1, strip_row=0) == 0.0
    assert share(strip, *left, blue, panel=1, strip_row=0) == 0.0  # only arrow tails there
    assert share(strip, *moved, half_blue, panel=1, strip_row=1) == 1.0  # model: p = 0.5, no arrows
    assert share(strip, *left, blue, panel=1, strip_row=2) == 1.0  # copy-forward: still at rows 4..9
    assert share(strip, slice(2, 4), slice(4, 8), white, panel=1, strip_row=2) == 1.0
    assert share(strip, *moved, blue, panel=1, strip_row=3) > 0.3  # constant velocity: the truth
    assert (
        bev_strip(targets, forecast, GRID, baselines=False, panel_width=WIDTH).shape[0]
        == 2 * panel + LEGEND_HEIGHT
    )
    no_model = bev_strip(targets, None, GRID, baselines=["copy_forward"], panel_width=WIDTH)
    assert no_model.shape[0] == 2 * panel + LEGEND_HEIGHT
    with pytest.raises(ValueError, match="no baseline"):
        bev_strip(targets, None, GRID, baselines=["oracle"])
    with pytest.raises(ValueError, match="grid"):
        bev_strip(targets, forecast, OccupancyGrid(height=16, width=16))
    with pytest.raises(ValueError, match="waypoint 2"):
        render_waypoint(targets, forecast, 2, GRID)


def test_batched_torch_values_unbatch_to_numpy():
    torch = pytest.importorskip("torch")
    from perception.structures import Sample, collate

    targets = make_targets()
    points = np.zeros((3, 5), np.float32)
    batch = collate([Sample(frame_id=f"s/{i}", points=points[: i + 1], occupancy=targets) for i in range(2)])
    one = sample_targets(batch.occupancy, 1)
    assert isinstance(one.observed, np.ndarray) and one.observed.shape == targets.observed.shape
    np.testing.assert_array_equal(
        one.baselines["copy_forward"].observed, targets.baselines["copy_forward"].observed
    )
    forecast = OccupancyForecast(
        observed=torch.from_numpy(np.stack([targets.observed] * 2)).to(torch.bfloat16),
        occluded=torch.from_numpy(np.stack([targets.occluded] * 2)),
        flow=torch.from_numpy(np.stack([targets.flow] * 2)),
    )
    assert sample_forecast(forecast, 0).observed.dtype == np.float32
    assert sample_points(batch.points, batch.batch_index, 1).shape == (2, 5)


def test_gif_has_a_frame_per_waypoint_and_is_written_atomically(tmp_path, monkeypatch):
    targets = make_targets()
    frames = forecast_frames(targets, make_forecast(targets), GRID, panel_width=WIDTH)
    assert len(frames) == 2
    path = write_gif(frames, tmp_path / "out" / "a.gif", fps=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 2 and gif.size == (frames[0].shape[1], frames[0].shape[0])
        assert gif.info["duration"] == 250 and gif.info["loop"] == 0
    assert os.listdir(tmp_path / "out") == ["a.gif"]  # no temporary file left

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_gif(frames, tmp_path / "out" / "b.gif")
    assert os.listdir(tmp_path / "out") == ["a.gif"]  # neither b.gif nor its temporary file
    monkeypatch.undo()
    with pytest.raises(ValueError, match="one size"):
        write_gif([frames[0], frames[1][:-1]], tmp_path / "c.gif")
    with pytest.raises(ValueError, match="at least one frame"):
        write_gif([], tmp_path / "c.gif")

    gif, strip = save_occupancy(tmp_path / "saved", "occupancy_3", targets, None, GRID, panel_width=WIDTH)
    assert gif.name == "occupancy_3.gif" and strip.name == "occupancy_3_strip.png"
    with Image.open(gif) as image:
        assert image.n_frames == 2 and image.size[0] == 3 * WIDTH  # truth beside both baselines
    assert sorted(os.listdir(tmp_path / "saved")) == ["occupancy_3.gif", "occupancy_3_strip.png"]


# ---------------------------------------------------------------------------------------------- W&B


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """W&B offline, every file it writes under tmp_path, no credentials."""
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        (tmp_path / name.lower()).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path / "wandb_dir"


def test_occupancy_callback_idles_without_wandb_or_an_occupancy_task(tmp_path, offline_wandb):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from perception.viz.wandb import WandbOccupancyLogger

    callback = WandbOccupancyLogger(every_n_val_steps=1)
    trainer = L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", devices=1, enable_progress_bar=False)
    # With no W&B logger nothing is touched: a module and batch of None would fail if they were.
    callback.on_validation_batch_end(trainer, None, None, None, 0)
    callback.on_validation_end(trainer, None)
    logger = WandbLogger(project="perception-test", save_dir=str(offline_wandb), offline=True)
    trainer = L.Trainer(logger=logger, accelerator="cpu", devices=1, enable_progress_bar=False)
    assert callback.active_logger(trainer, L.LightningModule()) is None  # another task: idle
    with pytest.raises(ValueError, match="every_n_val_steps"):
        WandbOccupancyLogger(every_n_val_steps=0)


class _Experiment:
    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log(self, payload: dict) -> None:
        self.logged.append(payload)


class _Logger:
    def __init__(self) -> None:
        self.experiment = _Experiment()


def test_occupancy_callback_logs_a_strip_and_a_gif(monkeypatch, offline_wandb):
    wandb = pytest.importorskip("wandb")
    from types import SimpleNamespace

    import torch

    from perception.structures import Sample, collate
    from perception.viz.wandb import WandbOccupancyLogger

    targets = make_targets()
    batch = collate([Sample(frame_id="seq/000007", points=np.zeros((4, 5), np.float32), occupancy=targets)])
    forecast = make_forecast(targets)
    outputs = OccupancyForecast(
        observed=torch.from_numpy(forecast.observed[None]),
        occluded=torch.from_numpy(forecast.occluded[None]),
        flow=torch.from_numpy(forecast.flow[None]),
    )
    logger = _Logger()
    monkeypatch.setattr(WandbOccupancyLogger, "active_logger", staticmethod(lambda trainer, module: logger))
    callback = WandbOccupancyLogger(every_n_val_steps=2, max_scenes=1, panel_width=64)
    trainer = SimpleNamespace(sanity_checking=False, global_step=11, datamodule=None)
    module = SimpleNamespace(
        model=SimpleNamespace(grid=GRID), last_metrics={"observed_auc": 0.5, "flow_epe": float("nan")}
    )
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 1)  # not a multiple of 2: skipped
    callback.on_validation_batch_end(trainer, module, outputs, batch, 0)
    callback.on_validation_batch_end(trainer, module, outputs, batch, 2)  # max_scenes reached
    (payload,) = logger.experiment.logged
    assert payload["trainer/global_step"] == 11
    assert isinstance(payload["val/occupancy_strip"], wandb.Image)
    video = payload["val/occupancy_forecast"]
    assert isinstance(video, wandb.Video) and video._format == "gif"
    with Image.open(video._path) as gif:
        assert gif.n_frames == 2
    callback.on_validation_end(trainer, module)
    table = logger.experiment.logged[-1]["val/occupancy_metrics"]
    assert isinstance(table, wandb.Table) and table.data == [["observed_auc", 0.5], ["flow_epe", None]]
    # a forecast of the wrong kind is a warning, not an error
    callback.on_validation_epoch_start(trainer, module)
    callback.on_validation_batch_end(trainer, module, [outputs], batch, 0)
    assert len(logger.experiment.logged) == 2


def test_task_cli_adds_the_occupancy_logger():
    from perception.cli import CONFIG_DIR, TaskCLI
    from perception.viz.wandb import WandbOccupancyLogger

    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = TaskCLI(
            run=False,
            args=["--config", str(CONFIG_DIR / "bev_occupancy_synthetic.yaml"), "--data.init_args.generate",
                  "false", "--trainer.accelerator", "cpu", "--trainer.logger", "false"],
        )  # fmt: skip
    finally:
        sys.argv = argv
    assert any(isinstance(c, WandbOccupancyLogger) for c in cli.trainer.callbacks)


# --------------------------------------------------------------------------------------------- tool

REPO = Path(__file__).resolve().parents[2]

TINY_OCCUPANCY = """\
model:
  class_path: perception.tasks.occupancy.OccupancyTask
  init_args:
    model:
      class_path: perception.models.occupancy.PillarOccupancyNet
      init_args:
        grid: {height: 32, width: 32, pixels_per_meter: 1.0, ego_col: 16, ego_row: 24}
        num_waypoints: 2
        in_channels: 5
        pillar_channels: [8]
        bev_channels: [8, 8]
        bev_blocks: [1, 1]
data:
  class_path: perception.data.occupancy.OccupancyDataModule
  init_args:
    root: ROOT
    val_split: train
    grid: {height: 32, width: 32, pixels_per_meter: 1.0, ego_col: 16, ego_row: 24}
    history: 2
    waypoint_times: [0.2, 0.4]
    max_points: 2000
    batch_size: 1
    num_workers: 0
trainer:
  accelerator: cpu
"""


def _visualize_tool():
    spec = importlib.util.spec_from_file_location(
        "perception_tools_visualize", REPO / "tools" / "visualize.py"
    )
    visualize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(visualize)
    return visualize


def test_visualize_writes_gifs_and_strips_of_occupancy_samples(tmp_path, monkeypatch, capsys):
    import torch

    from perception.cli import TaskCLI
    from perception.data.occupancy import SYNTHETIC_OCCUPANCY
    from perception.data.synthetic.writer import write_dataset

    visualize = _visualize_tool()

    root = tmp_path / "occ"
    write_dataset(root, frames=40, sequences=1, config=SYNTHETIC_OCCUPANCY)
    config = tmp_path / "tiny_occupancy.yaml"
    config.write_text(TINY_OCCUPANCY.replace("ROOT", str(root)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "baselines"
        assert visualize.main(["--config", str(config), "--sample", "0", "2", "--out", str(out)]) == 0
        with Image.open(out / "occupancy_2.gif") as gif:
            assert gif.n_frames == 2 and gif.size[0] == 3 * 256  # truth beside both baselines
        strip = np.asarray(Image.open(out / "occupancy_0_strip.png").convert("RGB"))
        assert strip.shape == (3 * (TITLE_HEIGHT + 256) + LEGEND_HEIGHT, 2 * 256, 3) and strip.std() > 5

        monkeypatch.setattr(sys, "argv", [sys.argv[0]])
        task = TaskCLI(run=False, args=["--config", str(config), "--trainer.logger", "false"]).model
        torch.save(task.state_dict(), tmp_path / "weights.pt")
        out = tmp_path / "model"
        argv = [
            "--config",
            str(config),
            "--ckpt",
            str(tmp_path / "weights.pt"),
            "--sample",
            "1",
            "--out",
            str(out),
        ]
        assert visualize.main(argv) == 0
        with Image.open(out / "occupancy_1.gif") as gif:
            assert gif.n_frames == 2 and gif.size[0] == 2 * 256  # truth beside the model
        strip = Image.open(out / "occupancy_1_strip.png")
        assert strip.size[1] == 4 * (TITLE_HEIGHT + 256) + LEGEND_HEIGHT  # truth, model, two baselines
        assert "occupancy sample 1" in capsys.readouterr().out

        assert visualize.main(["--config", str(config), "--sample", "99", "--out", str(out)]) == 2
        assert "outside the validation split" in capsys.readouterr().err
        assert visualize.main(["--config", str(config), "--sample", "0"]) == 2  # no --out
        assert "--out" in capsys.readouterr().err
        assert (
            visualize.main(["--config", "pointpillars_synthetic.yaml", "--sample", "0", "--out", str(out)])
            == 2
        )
        assert "occupancy" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_visualize_occupancy_usage_errors(tmp_path, capsys):
    from perception.cli import CONFIG_DIR
    from perception.inference import config_kind

    visualize = _visualize_tool()
    assert config_kind(CONFIG_DIR / "p2p_occupancy_synthetic.yaml") == "occupancy"
    assert visualize.main(["--frame", "0"]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert visualize.main(["--data-root", str(tmp_path), "--frame", "0", "--out", str(tmp_path)]) == 2
    assert "--out is for occupancy samples" in capsys.readouterr().err
    assert visualize.main(["--sample", "0", "--out", str(tmp_path)]) == 2
    assert "occupancy config" in capsys.readouterr().err
    argv = ["--config", "p2p_occupancy_synthetic.yaml", "--sample", "0", "--out", str(tmp_path)]
    assert visualize.main([*argv, "--frame", "0"]) == 2
    assert "--frame is not for occupancy samples" in capsys.readouterr().err
    assert visualize.main([*argv, "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "no occupancy data there" in capsys.readouterr().err


def test_gif_bytes_play_in_pillow():
    from perception.viz.occupancy import gif_bytes

    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    with Image.open(io.BytesIO(gif_bytes(frames, fps=2))) as gif:
        assert gif.n_frames == 3
