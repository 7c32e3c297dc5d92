"""tools/visualize.py: headless renders of real KITTI frames, predictions from files or a checkpoint."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    (preds / "000002.txt").write_text(
        "".join(f"{line} 0.9\n" for line in label if not line.startswith("DontCare"))
    )
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
        with visualize.CheckpointPredictor(
            tmp_path / "weights.pt", str(config), root, "training", ["000001"]
        ) as p:
            boxes, names, scores = p.predict("000001")
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
