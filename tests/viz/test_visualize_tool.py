"""tools/visualize.py: headless renders of real KITTI frames and converted Waymo frames, predictions from
files or a checkpoint."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perception.viz.scene import PRED_COLOUR

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_visualize", REPO / "tools" / "visualize.py")
visualize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(visualize)


def not_blank(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.std() > 5
    return image


def test_saves_a_render_of_a_real_kitti_frame_with_predictions(kitti_root, tmp_path, capsys):
    preds = tmp_path / "preds"
    preds.mkdir()
    label = (kitti_root / "training" / "label_2" / "000002.txt").read_text().splitlines()
    # The labels as predictions, moved 1.5 m sideways (camera x): lines drawn exactly over the ground
    # truth's would hide one colour or the other at random.
    rows = []
    for line in label:
        fields = line.split()
        if fields[0] != "DontCare":
            fields[11] = f"{float(fields[11]) + 1.5:.2f}"
            rows.append(" ".join(fields) + " 0.9\n")
    (preds / "000002.txt").write_text("".join(rows))
    out = tmp_path / "out" / "frame.png"
    args = ["--data-root", str(kitti_root), "--frame", "2", "--predictions", str(preds), "--save", str(out)]
    assert visualize.main([*args, "--width", "400", "--height", "300", "--view", "chase"]) == 0
    image = not_blank(out)
    if "matplotlib bird's-eye view instead" not in capsys.readouterr().err:  # Open3D rendered it
        assert image.shape == (300, 400, 3)
        blue = np.abs(image.astype(int) - np.round(np.asarray(PRED_COLOUR) * 255)).max(axis=-1) <= 12
        assert blue.sum() > 20  # the predictions' boxes
    # The matplotlib bird's-eye PNG, coloured by intensity.
    assert (
        visualize.main([*args[:4], "--save", str(tmp_path / "bev.png"), "--bev", "--color", "intensity"]) == 0
    )
    not_blank(tmp_path / "bev.png")


def test_missing_prediction_files_name_the_frames(kitti_root, tmp_path):
    (tmp_path / "000000.txt").write_text("")
    cmd = [sys.executable, str(REPO / "tools" / "visualize.py"), "--data-root", str(kitti_root),
           "--frame", "000000", "000001", "2", "--predictions", str(tmp_path), "--save", str(tmp_path / "x.png")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "000001, 000002" in result.stderr and "000000," not in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


def test_usage_errors(kitti_root, tmp_path, monkeypatch, capsys):
    assert (
        visualize.main(
            ["--data-root", str(kitti_root), "--frame", "999999", "--save", str(tmp_path / "a.png")]
        )
        == 2
    )
    assert "999999" in capsys.readouterr().err
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert visualize.main(["--data-root", str(kitti_root), "--frame", "0"]) == 2
    assert "--save" in capsys.readouterr().err


TINY_CONFIG = """
model:
  model:
    class_path: perception.models.Detector
    init_args:
      encoder:
        class_path: perception.models.PointNetEncoder
        init_args: {in_channels: 4, voxel_size: [0.8, 0.8, 4.0], point_cloud_range: [0, -25.6, -3, 51.2, 25.6, 1], channels: [16]}
      backbone_3d: null
      backbone_2d:
        class_path: perception.models.BEVBackbone
        init_args: {in_channels: 16, channels: [16], blocks: [1], strides: [1], upsample_strides: [1], upsample_channels: [16]}
      head:
        class_path: perception.models.CenterHead
        init_args: {in_channels: 16, class_names: [Car, Pedestrian, Cyclist], point_cloud_range: [0, -25.6, -3, 51.2, 25.6, 1],
                    voxel_size: [0.8, 0.8, 4.0], out_stride: 1, shared_channels: 16, head_channels: 16, score_threshold: 0.0}
data:
  class_names: [Car, Pedestrian, Cyclist]
  point_cloud_range: [0, -25.6, -3, 51.2, 25.6, 1]
trainer:
  accelerator: cpu
"""


def test_runs_a_checkpoint_on_a_synthetic_frame(tmp_path, monkeypatch):
    import torch

    from perception.data.synthetic import SyntheticConfig, write_dataset

    root = tmp_path / "synthetic"
    write_dataset(root, frames=2, seed=4, config=SyntheticConfig(azimuth_step_deg=1.0))
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("data:\n", f"data:\n  root: {root}\n"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    from perception.cli import DetectionCLI

    task = DetectionCLI(run=False, args=["--config", str(config), "--trainer.logger", "false"]).model
    torch.save(task.state_dict(), tmp_path / "weights.pt")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = visualize.CheckpointPredictor(tmp_path / "weights.pt", str(config), root)
        boxes, names, scores = predictor.predict("000001", "training")
    finally:
        torch.set_num_threads(threads)
    assert boxes.shape == (len(names), 7) and len(scores) == len(names) > 0
    assert set(names) <= {"Car", "Pedestrian", "Cyclist"}
    out = tmp_path / "ckpt.png"
    argv = ["--data-root", str(root), "--frame", "1", "--ckpt", str(tmp_path / "weights.pt"), "--config", str(config),
            "--save", str(out), "--bev", "--score-threshold", "0.05"]  # fmt: skip
    assert visualize.main(argv) == 0
    not_blank(out)


def test_a_bad_pose_file_is_a_usage_error(kitti_root, tmp_path, capsys):
    (tmp_path / "pose.txt").write_text("1 0 0\n")
    argv = ["--data-root", str(kitti_root), "--frame", "0", "--save", str(tmp_path / "p.png"), "--view", "free",
            "--pose", str(tmp_path / "pose.txt")]  # fmt: skip
    assert visualize.main(argv) == 2
    assert "16 numbers" in capsys.readouterr().err


def test_falls_back_to_the_matplotlib_png_without_open3d(kitti_root, tmp_path, monkeypatch, capsys):
    import perception.viz.open3d as o3d_viz

    def unavailable(*args, **kwargs):
        raise o3d_viz.RenderUnavailable("no EGL here (test)")

    monkeypatch.setattr(o3d_viz, "Renderer", unavailable)
    out = tmp_path / "fallback.png"
    assert visualize.main(["--data-root", str(kitti_root), "--frame", "0", "--save", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no EGL here (test)" in err and "matplotlib bird's-eye view instead" in err
    assert not_blank(out).shape[:2] != (960, 1280)  # the matplotlib figure, not a render


# ------------------------------------------------------------------------------ converted Waymo data

WAYMO_VAL = "valseg_0000000000000000001_000_000_000_000"
WAYMO_TRAIN = "trainseg_0000000000000000002_000_000_000_000"
WAYMO_T0 = 1_550_000_000_000_000
WAYMO_BOXES = np.array(
    [
        [12.0, 3.0, 0.9, 4.6, 2.0, 1.7, 0.3],
        [-6.0, -4.0, 0.9, 0.8, 0.7, 1.8, -2.5],
        [20.0, 10.0, 0.8, 1.8, 0.6, 1.7, 1.2],
        [8.0, -9.0, 2.0, 0.6, 0.6, 0.8, 0.0],
    ]
)


@pytest.fixture(scope="module")
def waymo_root(tmp_path_factory) -> Path:
    """A converted root from synthetic records: val (segment WAYMO_VAL, 2 frames), train (WAYMO_TRAIN, 1)."""
    from perception.data.waymo import write_records
    from perception.data.waymo.convert import convert_segment
    from perception.data.waymo.converted import write_split_file
    from tests.support.waymo_synthetic import make_synthetic_frame

    tmp = tmp_path_factory.mktemp("waymo")
    root = tmp / "converted"
    for split, context, seeds in (("val", WAYMO_VAL, (0, 1)), ("train", WAYMO_TRAIN, (2,))):
        protos = [
            make_synthetic_frame(
                seed=i,
                fill=0.05,
                context_name=context,
                timestamp_micros=WAYMO_T0 + 100_000 * i,
                boxes=WAYMO_BOXES,
                types=[1, 2, 4, 3],
                num_lidar_points=[200, 30, 40, 5],
            ).proto
            for i in seeds
        ]
        write_records(tmp / f"{split}.tfrecord", protos, fsync=False)
        convert_segment(tmp / f"{split}.tfrecord", root, split)
        write_split_file(root, split)
    return root


def _blue_pixels(image: np.ndarray) -> int:
    return int((np.abs(image.astype(int) - np.round(np.asarray(PRED_COLOUR) * 255)).max(axis=-1) <= 12).sum())


def test_detects_a_converted_waymo_root(waymo_root, tmp_path):
    assert visualize.is_waymo_root(waymo_root)
    # Without split files, a converted segment's index.json says so.
    bare = tmp_path / "bare"
    shutil.copytree(waymo_root / "val", bare / "val")
    assert visualize.is_waymo_root(bare)
    kitti = tmp_path / "kitti"
    (kitti / "training" / "velodyne").mkdir(parents=True)
    (kitti / "ImageSets").mkdir()
    (kitti / "ImageSets" / "train.txt").write_text("000000\n000001\n")
    assert not visualize.is_waymo_root(kitti)
    assert visualize.parse_waymo_frame(f"{WAYMO_VAL}/{WAYMO_T0}") == (WAYMO_VAL, WAYMO_T0)
    assert visualize.parse_waymo_frame(f"{WAYMO_VAL}_{WAYMO_T0}") == (WAYMO_VAL, WAYMO_T0)
    assert visualize.parse_waymo_frame("000123") is None


def test_saves_renders_of_converted_waymo_frames(waymo_root, tmp_path, capsys):
    out = tmp_path / "waymo.png"
    train_frame = f"{WAYMO_TRAIN}_{WAYMO_T0 + 200_000}"  # the sample frame_id form, found in train
    argv = ["--data-root", str(waymo_root), "--frame", f"{WAYMO_VAL}/{WAYMO_T0}", train_frame,
            "--save", str(out), "--width", "320", "--height", "240"]  # fmt: skip
    assert visualize.main(argv) == 0
    err = capsys.readouterr()
    for frame in (f"{WAYMO_VAL}_{WAYMO_T0}", train_frame):
        not_blank(tmp_path / f"waymo_{frame}.png")
        assert frame in err.out
    # The matplotlib bird's-eye PNG, coloured by tanh(intensity); an explicit --dataset and --split.
    argv = ["--data-root", str(waymo_root), "--dataset", "waymo", "--split", "val", "--frame",
            f"{WAYMO_VAL}/{WAYMO_T0 + 100_000}", "--save", str(tmp_path / "bev.png"), "--bev", "--color", "intensity"]  # fmt: skip
    assert visualize.main(argv) == 0
    not_blank(tmp_path / "bev.png")
    # A frame that is not there, or not in the split asked for.
    argv = [
        "--data-root",
        str(waymo_root),
        "--frame",
        train_frame,
        "--split",
        "val",
        "--save",
        str(tmp_path / "x.png"),
    ]
    assert visualize.main(argv) == 2
    assert f"{WAYMO_TRAIN}/{WAYMO_T0 + 200_000}" in capsys.readouterr().err
    assert (
        visualize.main(["--data-root", str(waymo_root), "--frame", "123", "--save", str(tmp_path / "x.png")])
        == 2
    )
    assert "not a Waymo frame key" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_shows_waymo_predictions_from_a_submission_file(waymo_root, tmp_path, capsys):
    from perception.data.waymo.converted import frame_file, load_frame_arrays
    from perception.eval.waymo import write_objects

    gt = load_frame_arrays(frame_file(waymo_root, "val", WAYMO_VAL, WAYMO_T0))
    # The ground truth as predictions, moved 1.5 m to the left: lines drawn exactly over the ground
    # truth's fight it for the depth test, and either may win.
    boxes = gt["boxes"] + np.array([0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 0.0], np.float32)
    pred = tmp_path / "pred.bin"
    write_objects(pred, {(WAYMO_VAL, WAYMO_T0): {"boxes": boxes, "types": gt["types"],
                                                  "scores": np.full(len(boxes), 0.9)}}, fsync=False)  # fmt: skip
    out = tmp_path / "pred.png"
    argv = ["--data-root", str(waymo_root), "--frame", f"{WAYMO_VAL}/{WAYMO_T0}", f"{WAYMO_VAL}/{WAYMO_T0 + 100_000}",
            "--predictions", str(pred), "--save", str(out), "--width", "400", "--height", "300"]  # fmt: skip
    assert visualize.main(argv) == 0
    err = capsys.readouterr().err
    # The second frame has no objects in the file: no predictions, and a note.
    assert f"no predictions for frame {WAYMO_VAL}/{WAYMO_T0 + 100_000}" in err
    with_pred = not_blank(tmp_path / f"pred_{WAYMO_VAL}_{WAYMO_T0}.png")
    without = not_blank(tmp_path / f"pred_{WAYMO_VAL}_{WAYMO_T0 + 100_000}.png")
    if "matplotlib bird's-eye view instead" not in err:  # Open3D rendered them
        assert with_pred.shape == (300, 400, 3)
        assert _blue_pixels(with_pred) > 20 and _blue_pixels(without) == 0
    # Above every score: none drawn.
    assert visualize.main([*argv[:4], "--predictions", str(pred), "--save", str(tmp_path / "hi.png"),
                           "--width", "400", "--height", "300", "--score-threshold", "0.95"]) == 0  # fmt: skip
    if "matplotlib bird's-eye view instead" not in capsys.readouterr().err:
        assert _blue_pixels(not_blank(tmp_path / "hi.png")) == 0


def test_a_submission_with_frames_the_root_lacks_is_an_error(waymo_root, tmp_path, capsys):
    from perception.eval.waymo import write_objects

    pred = tmp_path / "pred.bin"
    box = {"boxes": WAYMO_BOXES[:1], "types": [1], "scores": [0.5]}
    write_objects(pred, {(WAYMO_VAL, WAYMO_T0): box, ("ghost_segment", 42): box}, fsync=False)
    out = tmp_path / "x.png"
    argv = ["--data-root", str(waymo_root), "--frame", f"{WAYMO_VAL}/{WAYMO_T0}", "--predictions", str(pred),
            "--save", str(out)]  # fmt: skip
    assert visualize.main(argv) == 2
    err = capsys.readouterr().err
    assert "ghost_segment/42" in err and f"{WAYMO_VAL}/{WAYMO_T0}" not in err and not out.exists()
    # A folder is the KITTI form.
    assert visualize.main([*argv[:4], "--predictions", str(tmp_path), "--save", str(out)]) == 2
    assert "submission file" in capsys.readouterr().err


TINY_WAYMO_CONFIG = """
model:
  model:
    class_path: perception.models.Detector
    init_args:
      encoder:
        class_path: perception.models.PointNetEncoder
        init_args: {in_channels: 5, voxel_size: [1.6, 1.6, 6.0], point_cloud_range: [-25.6, -25.6, -2, 25.6, 25.6, 4], channels: [16]}
      backbone_3d: null
      backbone_2d:
        class_path: perception.models.BEVBackbone
        init_args: {in_channels: 16, channels: [16], blocks: [1], strides: [1], upsample_strides: [1], upsample_channels: [16]}
      head:
        class_path: perception.models.CenterHead
        init_args: {in_channels: 16, class_names: [VEHICLE, PEDESTRIAN, CYCLIST], point_cloud_range: [-25.6, -25.6, -2, 25.6, 25.6, 4],
                    voxel_size: [1.6, 1.6, 6.0], out_stride: 1, shared_channels: 16, head_channels: 16, score_threshold: 0.0}
data:
  dataset: waymo
  class_names: [VEHICLE, PEDESTRIAN, CYCLIST]
  point_cloud_range: [-25.6, -25.6, -2, 25.6, 25.6, 4]
trainer:
  accelerator: cpu
"""


def test_runs_a_waymo_checkpoint_on_a_converted_frame(waymo_root, tmp_path, monkeypatch, capsys):
    import torch

    config = tmp_path / "tiny_waymo.yaml"
    config.write_text(TINY_WAYMO_CONFIG.replace("data:\n", f"data:\n  root: {waymo_root}\n"))
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    from perception.cli import DetectionCLI

    task = DetectionCLI(run=False, args=["--config", str(config), "--trainer.logger", "false"]).model
    torch.save(task.state_dict(), tmp_path / "weights.pt")

    key = f"{WAYMO_TRAIN}/{WAYMO_T0 + 200_000}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = visualize.CheckpointPredictor(tmp_path / "weights.pt", str(config), waymo_root, "waymo")
        boxes, names, scores = predictor.predict(key, "train")
        assert boxes.shape == (len(names), 7) and len(scores) == len(names) > 0
        assert set(names) <= {"VEHICLE", "PEDESTRIAN", "CYCLIST"}
        out = tmp_path / "ckpt.png"
        argv = ["--data-root", str(waymo_root), "--frame", key, "--ckpt", str(tmp_path / "weights.pt"),
                "--config", str(config), "--save", str(out), "--bev", "--score-threshold", "0.05"]  # fmt: skip
        assert visualize.main(argv) == 0
        not_blank(out)
        # A KITTI config's checkpoint does not fit converted Waymo data.
        kitti_config = tmp_path / "tiny_kitti.yaml"
        kitti_config.write_text(TINY_CONFIG)
        argv[argv.index(str(config))] = str(kitti_config)
        assert visualize.main(argv) == 2
        assert "'kitti' config" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
