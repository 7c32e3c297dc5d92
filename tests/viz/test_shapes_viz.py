"""What PointNet learned, drawn: the candidate grid, the critical and upper-bound sets of a shape, the
three-panel figure and the part-coloured point set as PNGs, and tools/visualize.py --sample on a
shape-classification config."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perception.models import PointNetClassifier
from perception.viz.shapes import (
    CriticalSets,
    critical_sets,
    part_colours,
    save_critical_sets,
    save_point_set,
    unit_grid,
)

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ellipsoid(n: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return (points * [0.9, 0.6, 0.4]).astype(np.float32)


def test_unit_grid():
    cube = unit_grid(5)
    assert cube.shape == (125, 3) and cube.dtype == np.float32
    assert cube.min() == -1.0 and cube.max() == 1.0
    ball = unit_grid(5, "sphere")
    assert 0 < len(ball) < 125 and (np.linalg.norm(ball, axis=1) <= 1.0 + 1e-6).all()
    with pytest.raises(ValueError):
        unit_grid(1)
    with pytest.raises(ValueError):
        unit_grid(4, "torus")


def test_critical_sets_of_an_untrained_classifier_and_their_figure(tmp_path):
    torch.manual_seed(0)
    model = PointNetClassifier(10).eval()  # the paper's widths: a 1024-d global feature
    shape = ellipsoid()
    sets = critical_sets(model, shape, resolution=10)
    assert isinstance(sets, CriticalSets) and sets.num_candidates == 1000
    assert 1 <= len(sets.critical) <= min(1024, len(shape))
    assert np.array_equal(sets.critical, np.unique(sets.critical))
    assert sets.critical_points.shape == (len(sets.critical), 3)
    assert sets.upper_bound.shape[1] == 3 and len(sets.upper_bound) <= 1000

    path = save_critical_sets(tmp_path / "figures" / "shape.png", sets, title="an ellipsoid")
    assert path.is_file() and path.stat().st_size > 20_000
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 900 and image.std() > 5
    red = (image[..., 0] > 150) & (image[..., 1] < 120) & (image[..., 2] < 120)
    assert red.sum() > 50  # the critical points are drawn


def test_an_empty_upper_bound_still_draws(tmp_path):
    sets = CriticalSets(ellipsoid(50), np.arange(5), np.zeros((0, 3), np.float32), num_candidates=8)
    path = save_critical_sets(tmp_path / "empty.png", sets)
    assert Image.open(path).size[0] > 900


def test_point_set_coloured_by_part(tmp_path):
    shape = ellipsoid(400)
    labels = (shape[:, 2] > 0).astype(np.int64) + 2 * (shape[:, 0] > 0.3)
    path = save_point_set(tmp_path / "parts.png", shape, labels, names=["a", "b", "c", "d"], title="parts")
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert path.stat().st_size > 10_000 and image.std() > 5
    for colour in part_colours(4):  # every part's colour is on the image
        rgb = np.round(colour[:3] * 255).astype(int)
        assert (np.abs(image - rgb).sum(axis=2) < 40).sum() > 10
    plain = save_point_set(tmp_path / "plain.png", shape)  # by height
    assert Image.open(plain).size == Image.open(path).size
    with pytest.raises(ValueError, match="labels"):
        save_point_set(tmp_path / "bad.png", shape, labels[:10])
    with pytest.raises(ValueError, match="points"):
        save_point_set(tmp_path / "bad.png", shape[:, :2])


# ----------------------------------------------------------------------------------------------- tool

TINY_CLASSIFICATION = """\
seed_everything: 0
model:
  class_path: perception.tasks.classification.ClassificationTask
  init_args:
    class_names: [box, ellipsoid, cylinder, cone, capsule, torus, bottle, mug, table, stool, chair, lamp, airplane, rocket]
    model:
      class_path: perception.models.PointNetClassifier
      init_args:
        num_classes: 14
        head_channels: [32, 16]
        local_channels: [16, 16]
        global_channels: [16, 32, 64]
        tnet_channels: [16, 32, 64]
        tnet_fc_channels: [32, 16]
data:
  class_path: perception.data.shapes.ShapeClassificationDataModule
  init_args:
    num_points: 128
    num_train: 2
    num_val: 3
    num_workers: 0
trainer:
  accelerator: cpu
"""


def _visualize_tool():
    spec = importlib.util.spec_from_file_location(
        "perception_tools_visualize_shapes", REPO / "tools" / "visualize.py"
    )
    visualize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(visualize)
    return visualize


def test_visualize_draws_what_a_classifier_learned(tmp_path, monkeypatch, capsys):
    from perception.cli import TaskCLI

    visualize = _visualize_tool()
    config = tmp_path / "tiny_pointnet_cls.yaml"
    config.write_text(TINY_CLASSIFICATION)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    task = TaskCLI(run=False, args=["--config", str(config), "--trainer.logger", "false"]).model
    torch.save(task.state_dict(), tmp_path / "weights.pt")
    out = tmp_path / "out"
    argv = ["--config", str(config), "--ckpt", str(tmp_path / "weights.pt"), "--out", str(out)]
    assert visualize.main([*argv, "--sample", "2", "--grid", "8"]) == 0
    assert Image.open(out / "shape_2_critical.png").size[0] > 900
    printed = capsys.readouterr().out
    assert "shape sample 2" in printed and "critical points" in printed and "of 512 grid points" in printed

    assert visualize.main([*argv, "--sample", "7"]) == 2
    assert "outside the validation split" in capsys.readouterr().err
    assert visualize.main([*argv[:4], "--sample", "0"]) == 2  # no --out
    assert "--out" in capsys.readouterr().err
    assert visualize.main([*argv, "--sample", "0", "--frame", "0"]) == 2
    assert "--frame is not for shape samples" in capsys.readouterr().err
