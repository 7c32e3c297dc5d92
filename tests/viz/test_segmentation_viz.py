"""Segmentation in the viewers: SemanticKITTI's colour map, segmentation scenes and their legends, the
bird's-eye PNG, tools/visualize.py on a SemanticKITTI-layout root, and the W&B segmentation callback."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perception.data.semantickitti import scan_path, write_labels, write_scan
from perception.structures.segmentation import SEMANTIC_KITTI, SYNTHETIC, LabelMap
from perception.viz.bev import plot_scene, save_figure
from perception.viz.scene import Scene
from perception.viz.segmentation import (
    ERROR_COLOURS,
    IGNORED_COLOUR,
    SEMANTIC_KITTI_COLOURS,
    class_palette,
    error_codes,
    raw_colours,
)

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "perception_tools_visualize_seg", REPO / "tools" / "visualize.py"
)
visualize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(visualize)

# Raw id → (x, y) centre of a 3 m square of points in the test scan.
CLUSTERS = {10: (10.0, 5.0), 40: (10.0, -5.0), 70: (-5.0, 0.0)}


def rgb(raw: int) -> np.ndarray:
    return np.asarray(SEMANTIC_KITTI_COLOURS[raw], dtype=np.float64) / 255.0


# ------------------------------------------------------------------------------------------- colours


def test_colour_map_is_the_official_one_in_rgb():
    # semantic-kitti.yaml stores BGR: car [245, 150, 100], building [0, 200, 255], person [30, 30, 255]
    assert SEMANTIC_KITTI_COLOURS[10] == (100, 150, 245)  # car: light blue
    assert SEMANTIC_KITTI_COLOURS[252] == SEMANTIC_KITTI_COLOURS[10]  # moving-car
    assert SEMANTIC_KITTI_COLOURS[50] == (255, 200, 0)  # building: orange-yellow
    assert SEMANTIC_KITTI_COLOURS[30] == (255, 30, 30)  # person: red
    assert SEMANTIC_KITTI_COLOURS[40] == (255, 0, 255)  # road: magenta
    assert SEMANTIC_KITTI_COLOURS[70] == (0, 175, 0)  # vegetation: green
    assert SEMANTIC_KITTI_COLOURS[72] == (150, 240, 80)  # terrain
    assert SEMANTIC_KITTI_COLOURS[81] == (255, 0, 0)  # traffic-sign
    assert SEMANTIC_KITTI_COLOURS[0] == (0, 0, 0)
    assert set(SEMANTIC_KITTI_COLOURS) == set(SEMANTIC_KITTI.labels)  # every raw id of the class map


def test_raw_colours_read_the_semantic_bits():
    words = np.array([10, (7 << 16) | 10, 40, 12345], dtype=np.uint32)  # instance bits, an unknown id
    colours = raw_colours(words)
    np.testing.assert_allclose(colours[0], rgb(10))
    np.testing.assert_allclose(colours[1], rgb(10))
    np.testing.assert_allclose(colours[2], rgb(40))
    np.testing.assert_allclose(colours[3], IGNORED_COLOUR)


def test_class_palettes_follow_learning_map_inv():
    palette = class_palette(SEMANTIC_KITTI)
    assert palette.shape == (20, 3)
    np.testing.assert_allclose(palette[0], IGNORED_COLOUR)
    for train_id, raw in SEMANTIC_KITTI.learning_map_inv.items():
        if train_id:
            np.testing.assert_allclose(palette[train_id], rgb(raw))
    synthetic = class_palette(SYNTHETIC)
    assert synthetic.shape == (13, 3)
    np.testing.assert_allclose(synthetic[SYNTHETIC.class_names.index("road") + 1], rgb(40))
    # A raw id the official map lacks takes a stable colour from its class name.
    custom = LabelMap("custom", {0: "unlabeled", 10: "car", 900: "robot"}, {0: 0, 10: 1, 900: 2},
                      {0: 0, 1: 10, 2: 900}, ("car", "robot"))  # fmt: skip
    palette = class_palette(custom)
    np.testing.assert_allclose(palette[1], rgb(10))
    np.testing.assert_allclose(palette[2], class_palette(custom)[2])
    assert not np.allclose(palette[2], IGNORED_COLOUR)


def test_error_codes():
    codes = error_codes([0, 1, 2, 3, -1], [1, 1, 3, 3, 2])
    assert codes.tolist() == [2, 0, 1, 0, 2]
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        error_codes([1, 2, 3], [1, 2])


# -------------------------------------------------------------------------------------------- scenes


def test_segmentation_scene_colours_and_legend():
    points = np.zeros((5, 4), np.float32)
    labels = np.array([1, 1, 9, 0, 15])  # car, car, road, ignored, vegetation (SemanticKITTI ids)
    predictions = np.array([1, 9, 9, 9, 15])
    scene = Scene.from_segmentation(points, labels, predictions, SEMANTIC_KITTI, frame_id="08/000000")
    np.testing.assert_allclose(
        scene.point_colours()[[0, 2, 3, 4]], [rgb(10), rgb(40), IGNORED_COLOUR, rgb(70)]
    )
    assert scene.legend() == [
        ("car", tuple(rgb(10))),
        ("road", tuple(rgb(40))),
        ("vegetation", tuple(rgb(70))),
        ("ignored", IGNORED_COLOUR),
    ]
    pred = Scene.from_segmentation(points, labels, predictions, SEMANTIC_KITTI, colour_by="prediction")
    np.testing.assert_allclose(pred.point_colours()[1], rgb(40))
    assert [name for name, _ in pred.legend()] == ["car", "road", "vegetation"]
    error = Scene.from_segmentation(points, labels, predictions, SEMANTIC_KITTI, colour_by="error")
    np.testing.assert_allclose(
        error.point_colours(),
        [ERROR_COLOURS[k] for k in ("correct", "wrong", "correct", "ignored", "correct")],
    )
    assert [name for name, _ in error.legend()] == ["correct (75.0 %)", "wrong (25.0 %)", "ignored"]
    assert Scene.from_segmentation(points, labels, colour_by="height").legend() == []
    # subsampling keeps labels and predictions with their points
    big = Scene.from_segmentation(
        np.arange(300, dtype=np.float32).reshape(100, 3), np.arange(100) % 5, np.arange(100) % 7
    )
    small = big.subsample(10, seed=1)
    np.testing.assert_array_equal(small.point_labels, (small.points[:, 0] // 3).astype(int) % 5)
    np.testing.assert_array_equal(small.pred_labels, (small.points[:, 0] // 3).astype(int) % 7)
    with pytest.raises(ValueError, match="needs pred_labels"):
        Scene.from_segmentation(points, labels, colour_by="error")
    with pytest.raises(ValueError, match="needs point_labels"):
        Scene.from_segmentation(points, None, predictions, colour_by="label")
    with pytest.raises(ValueError, match="4 predicted labels for 5 points"):
        Scene.from_segmentation(points, labels, predictions[:4])


def labelled_scan(points_per_class: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) points in three 3 m squares (:data:`CLUSTERS`) and their (N,) raw ids."""
    rng = np.random.default_rng(seed)
    points, raw = [], []
    for raw_id, (x, y) in CLUSTERS.items():
        n = points_per_class
        points.append(
            np.column_stack([
                rng.uniform(x - 1.5, x + 1.5, n), rng.uniform(y - 1.5, y + 1.5, n),
                rng.uniform(-1.5, 0.0, n), rng.uniform(0.0, 1.0, n),
            ])
        )  # fmt: skip
        raw.append(np.full(n, raw_id, np.uint32))
    return np.concatenate(points).astype(np.float32), np.concatenate(raw)


def ink(image: np.ndarray) -> np.ndarray:
    """The mean colour of the non-white pixels of an RGB image region, as a unit vector of 255 - rgb."""
    pixels = 255.0 - image.reshape(-1, 3).astype(np.float64)
    pixels = pixels[pixels.sum(axis=1) > 30]
    assert len(pixels) > 50, "no points drawn here"
    mean = pixels.mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_bev_png_has_the_class_colours_where_the_points_are(tmp_path):
    points, raw = labelled_scan()
    scene = Scene.from_segmentation(
        points, SEMANTIC_KITTI.train_ids(raw), None, SEMANTIC_KITTI, frame_id="08/0"
    )
    figure = plot_scene(scene)
    ax = figure.axes[0]
    figure.canvas.draw()
    height = figure.canvas.get_width_height()[1]
    boxes = {}
    for raw_id, (x, y) in CLUSTERS.items():  # the plot's horizontal axis is -y, its vertical axis x
        (u0, v0), (u1, v1) = ax.transData.transform([[-(y + 1.2), x - 1.2], [-(y - 1.2), x + 1.2]])
        boxes[raw_id] = (int(height - v1), int(height - v0), int(u0), int(u1))
    legend_names = [t.get_text() for t in ax.get_legend().texts]
    path = save_figure(figure, tmp_path / "bev.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert legend_names == ["car", "road", "vegetation"]
    for raw_id, (r0, r1, c0, c1) in boxes.items():
        expected = (1.0 - rgb(raw_id)) / np.linalg.norm(1.0 - rgb(raw_id))
        found = ink(image[r0:r1, c0:c1])
        assert found @ expected > 0.97, (raw_id, found, expected)
        for other in set(CLUSTERS) - {raw_id}:
            unlike = (1.0 - rgb(other)) / np.linalg.norm(1.0 - rgb(other))
            assert found @ unlike < found @ expected - 0.05
    # between the squares: nothing drawn
    r0, r1, c0, c1 = boxes[70]
    assert (image[r0 - 120 : r0 - 60, c0:c1] > 250).all()


# --------------------------------------------------------------------------------- tools/visualize.py


@pytest.fixture
def sk_root(tmp_path) -> tuple[Path, Path, Path]:
    """A SemanticKITTI-layout root with sequence 08 (scans 000000, 000001 with labels), a predictions
    root as the label writer makes it, and a plain folder of prediction files."""
    root = tmp_path / "root"
    preds_root, plain = tmp_path / "preds", tmp_path / "plain"
    for scan in (0, 1):
        points, raw = labelled_scan(800, seed=scan)
        write_scan(scan_path(root, "08", scan), points, fsync=False)
        write_labels(scan_path(root, "08", scan, "labels"), raw, np.arange(len(raw)) % 3, fsync=False)
        predicted = raw.copy()
        predicted[:200] = 40  # a corner of the car square predicted as road
        path = preds_root / "sequences" / "08" / "predictions" / f"{scan:06d}.label"
        write_labels(path, predicted, fsync=False)
        write_labels(plain / f"{scan:06d}.label", predicted, fsync=False)
    return root, preds_root, plain


def colour_pixels(image: Path | np.ndarray, colour: tuple[float, float, float], tolerance: int = 12) -> int:
    if isinstance(image, Path):
        image = np.asarray(Image.open(image).convert("RGB"))
    distance = np.abs(image.astype(int) - np.round(np.asarray(colour) * 255)).max(axis=-1)
    return int((distance <= tolerance).sum())


def test_visualize_saves_segmentation_pngs(sk_root, tmp_path, capsys):
    root, preds_root, plain = sk_root
    out = tmp_path / "out"
    base = ["--data-root", str(root), "--width", "320", "--height", "240"]
    # labels (the default colouring of a labelled root), the matplotlib bird's-eye PNG
    assert (
        visualize.main([*base, "--sequence", "8", "--scan", "0", "--save", str(out / "bev.png"), "--bev"])
        == 0
    )
    assert ink(np.asarray(Image.open(out / "bev.png").convert("RGB"))) @ np.ones(3) > 0  # drawn
    # errors from a predictions root, rendered with Open3D (or its bird's-eye fallback)
    args = [
        "--data-root",
        str(root),
        "--frames",
        "08/000000",
        "--predictions",
        str(preds_root),
        "--color-by",
        "error",
    ]
    assert visualize.main([*args, "--save", str(out / "error.png"), "--width", "640", "--height", "480"]) == 0
    image = np.asarray(Image.open(out / "error.png").convert("RGB"))
    if "matplotlib bird's-eye view instead" not in capsys.readouterr().err:  # Open3D rendered it
        assert image.shape == (480, 640, 3)
        assert tuple(image[2, 2]) == (24, 24, 24)  # the legend's panel, top left
        image = image.copy()
        image[:50, :160] = 0  # blank the legend (two 14 px rows): only points count
    assert colour_pixels(image, ERROR_COLOURS["wrong"]) > 20
    assert colour_pixels(image, ERROR_COLOURS["correct"]) > 200
    # a plain folder of predictions, two scans, coloured by prediction: OUT_08_000000.png, ...
    two = [*base, "--sequence", "08", "--predictions", str(plain), "--save", str(out / "pred.png"), "--bev"]
    assert visualize.main(two) == 0
    for scan in ("000000", "000001"):
        assert colour_pixels(out / f"pred_08_{scan}.png", tuple(rgb(40)), 2) > 20  # road: in the legend too


def test_visualize_segmentation_errors_exit_2(sk_root, tmp_path, capsys):
    root, preds_root, plain = sk_root
    save = ["--save", str(tmp_path / "x.png"), "--bev"]

    def fails(*args: str) -> str:
        assert visualize.main(["--data-root", str(root), *args, *save]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    assert str(scan_path(root, "08", 7)) in fails("--sequence", "08", "--scan", "7")
    assert "no SemanticKITTI data here" in fails("--frames", "09/000000")
    (plain / "000001.label").unlink()
    err = fails("--sequence", "08", "--predictions", str(plain))
    assert f"{plain / '000001.label'}: prediction file does not exist" in err and "08/000001" in err
    # a label file of the wrong length names the file and both counts
    label = scan_path(root, "08", 0, "labels")
    label.write_bytes(label.read_bytes()[:-8])
    err = fails("--frames", "08/000000")
    assert f"{label}: holds 2398 labels but its scan has 2400 points" in err
    # a prediction file of the wrong length
    pred = preds_root / "sequences" / "08" / "predictions" / "000001.label"
    pred.write_bytes(pred.read_bytes()[:-4])
    assert f"{pred}: holds 2399 labels" in fails("--frames", "08/000001", "--predictions", str(preds_root))
    assert "needs predictions" in fails("--frames", "08/000001", "--color-by", "error")
    assert "--scan needs --sequence" in fails("--scan", "0")
    assert "<sequence>/<scan>" in fails("--frames", "000000")
    # label colourings on a detection root are refused
    assert visualize.main(["--data-root", str(tmp_path), "--frame", "0", "--color-by", "label", *save]) == 2
    assert "SemanticKITTI-layout roots" in capsys.readouterr().err


def test_visualize_picks_the_synthetic_class_map(sk_root, tmp_path, monkeypatch):
    root, _, _ = sk_root
    (root / "synthetic.json").write_text("{}")
    seen = []
    original = Scene.from_segmentation.__func__

    def spy(cls, points, labels=None, predictions=None, label_map=None, **kwargs):
        seen.append(label_map.name)
        return original(cls, points, labels, predictions, label_map, **kwargs)

    monkeypatch.setattr(Scene, "from_segmentation", classmethod(spy))
    args = ["--data-root", str(root), "--frames", "8/0", "--save", str(tmp_path / "s.png"), "--bev"]
    assert visualize.main(args) == 0
    assert visualize.main([*args, "--label-map", "semantic-kitti"]) == 0
    assert seen == ["synthetic", "semantic-kitti"]


def test_visualize_runs_a_segmentation_checkpoint(tmp_path, capsys):
    import sys

    import torch
    import yaml

    from perception.cli import CONFIG_DIR, TaskCLI
    from perception.data.synthetic.semantic_writer import SyntheticSegmentation

    data = tmp_path / "data"
    SyntheticSegmentation(
        frames=2, sequences=1, val_fraction=0.0, seed=1, num_beams=4, azimuth_step_deg=2.0
    ).write(data)
    config = yaml.safe_load((CONFIG_DIR / "p2p_seg_synthetic.yaml").read_text())
    config["model"]["init_args"]["backbone"]["init_args"].update(
        channels=[8, 16], strides=[2], enc_blocks=[1, 1], dec_blocks=[1], out_channels=8, grid_size=0.5
    )
    config["data"]["init_args"].update(num_workers=0)
    config["trainer"].update(accelerator="cpu")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = TaskCLI(run=False, args=["--config", str(tmp_path / "run" / "config.yaml")])
    finally:
        sys.argv = argv
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": cli.model.state_dict(), "hyper_parameters": dict(cli.model.hparams)}, ckpt)
    out = tmp_path / "ckpt.png"
    args = [
        "--data-root",
        str(data),
        "--frames",
        "00/000001",
        "--ckpt",
        str(ckpt),
        "--save",
        str(out),
        "--bev",
    ]
    assert visualize.main(args) == 0
    assert out.is_file()
    assert "frame 00_000001" in capsys.readouterr().out
    assert visualize.main([*args[:-3], "--label-map", "semantic-kitti", "--save", str(out), "--bev"]) == 2
    assert "names other classes than the checkpoint's class map synthetic" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ W&B


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


def test_segmentation_callback_idles_without_wandb_or_a_segmentation_task(tmp_path, offline_wandb):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from perception.viz.wandb import WandbSegmentationLogger

    callback = WandbSegmentationLogger(every_n_val_steps=1)
    trainer = L.Trainer(logger=CSVLogger(tmp_path), accelerator="cpu", devices=1, enable_progress_bar=False)
    # With no W&B logger nothing is touched: a module and batch of None would fail if they were.
    callback.on_validation_batch_end(trainer, None, None, None, 0)
    callback.on_validation_end(trainer, None)
    logger = WandbLogger(project="perception-test", save_dir=str(offline_wandb), offline=True)
    trainer = L.Trainer(logger=logger, accelerator="cpu", devices=1, enable_progress_bar=False)
    assert callback.active_logger(trainer, L.LightningModule()) is None  # another task: idle
    with pytest.raises(ValueError, match="every_n_val_steps"):
        WandbSegmentationLogger(every_n_val_steps=0)


def test_task_cli_adds_the_segmentation_logger():
    import sys

    from perception.cli import CONFIG_DIR, TaskCLI
    from perception.viz.wandb import WandbSegmentationLogger

    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = TaskCLI(
            run=False,
            args=["--config", str(CONFIG_DIR / "p2p_seg_synthetic.yaml"), "--data.init_args.generate", "false",
                  "--trainer.accelerator", "cpu"],
        )  # fmt: skip
    finally:
        sys.argv = argv
    assert any(isinstance(c, WandbSegmentationLogger) for c in cli.trainer.callbacks)


def test_segmentation_callback_logs_point_clouds_and_the_iou_table_offline(tmp_path, offline_wandb):
    import lightning as L
    import torch
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from perception.data.segmentation import SegmentationDataModule
    from perception.data.synthetic.semantic_writer import SyntheticSegmentation
    from perception.models import Point2PointBackbone
    from perception.tasks.segmentation import SegmentationTask
    from perception.viz.wandb import WandbSegmentationLogger

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path / "seg"
        SyntheticSegmentation(frames=4, sequences=2, seed=1, num_beams=4, azimuth_step_deg=2.0).write(root)
        data = SegmentationDataModule(str(root), "synthetic", batch_size=2, num_workers=0, generate=False)
        backbone = Point2PointBackbone(
            4, out_channels=8, grid_size=0.5, channels=(8, 16), enc_blocks=(1, 1), dec_blocks=(1,)
        )
        task = SegmentationTask(backbone, "synthetic")
        logger = WandbLogger(project="perception-test", save_dir=str(offline_wandb), offline=True)
        callback = WandbSegmentationLogger(every_n_val_steps=1, max_points=500, max_scenes=1)
        trainer = L.Trainer(
            max_steps=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=logger,
            callbacks=[callback], accelerator="cpu", devices=1, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        )  # fmt: skip
        trainer.fit(task, datamodule=data)
        run_dir = Path(logger.experiment.dir)  # RUN/files
        wandb.finish()
    finally:
        torch.set_num_threads(threads)

    clouds = {
        key: sorted((run_dir / "media" / "object3D" / "val").glob(f"{key}_*.pts.json"))
        for key in ("seg_gt", "seg_pred", "seg_error")
    }
    assert all(len(files) == 1 for files in clouds.values()), clouds
    gt, pred, error = (np.asarray(json.loads(files[0].read_text())) for files in clouds.values())
    assert gt.shape == pred.shape == error.shape and gt.shape[1] == 6 and 0 < len(gt) <= 500
    np.testing.assert_array_equal(gt[:, :3], pred[:, :3])  # the same points, coloured three ways
    palette = np.round(class_palette(SYNTHETIC) * 255)
    assert {tuple(c) for c in gt[:, 3:]} <= {tuple(c) for c in palette}
    assert {tuple(c) for c in pred[:, 3:]} <= {tuple(c) for c in palette[1:]}  # predictions: 1..K
    assert {tuple(c) for c in error[:, 3:]} <= {
        tuple(np.round(np.asarray(c) * 255)) for c in ERROR_COLOURS.values()
    }
    assert list((run_dir / "media" / "images" / "val").glob("seg_bev_*.png"))
    tables = list((run_dir / "media" / "table" / "val").glob("iou_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["class", "IoU"]
    assert [row[0] for row in table["data"]] == [*SYNTHETIC.class_names, "mIoU"]
    assert all(row[1] is None or 0.0 <= row[1] <= 100.0 for row in table["data"])


def test_viewer_prints_the_legend(monkeypatch, capsys):
    """The interactive viewer draws no text: it prints the classes' colours (driven headless)."""
    o3d = pytest.importorskip("open3d")

    import perception.viz.open3d as viewer

    class HeadlessVisualizer:  # pybind classes do not subclass: wrap one that opens no window
        def __init__(self) -> None:
            self.vis = o3d.visualization.Visualizer()

        def __getattr__(self, name):
            return getattr(self.vis, name)

        def create_window(self, window_name="", width=640, height=480, visible=True):
            return self.vis.create_window(window_name=window_name, width=width, height=height, visible=False)

        def register_key_callback(self, key, callback):
            pass

        def run(self):
            pass

    fake = type("FakeOpen3D", (), {})()
    for name in ("geometry", "utility", "camera", "io"):
        setattr(fake, name, getattr(o3d, name))
    fake.visualization = type("V", (), {"VisualizerWithKeyCallback": HeadlessVisualizer})
    monkeypatch.setattr(viewer, "_open3d", lambda: fake)
    monkeypatch.setattr(viewer, "has_display", lambda: True)
    points, raw = labelled_scan(100)
    scene = Scene.from_segmentation(
        points, SEMANTIC_KITTI.train_ids(raw), None, SEMANTIC_KITTI, frame_id="08/0"
    )
    viewer.show([scene], width=160, height=120)
    assert "colours: car #6496f5, road #ff00ff, vegetation #00af00" in capsys.readouterr().out
