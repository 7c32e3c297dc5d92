"""Matplotlib bird's-eye plots with predictions and occupancy, and precision-recall curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from perception.viz.bev import ap_r40, plot_bev, save_bev, save_pr_curves, save_scene
from perception.viz.scene import OccupancyGrid, Scene


def png(path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.std() > 5  # not blank
    return image


def test_bev_with_predictions_and_occupancy(tmp_path):
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 40, 3000), rng.uniform(-20, 20, 3000), rng.uniform(-2, 1, 3000)])
    grid = np.zeros((20, 20, 4))
    grid[5:8, 10:12, 1] = 0.8
    scene = Scene(
        points=points,
        gt_boxes=[[10.0, 2.0, -1.0, 4.0, 2.0, 1.5, 0.2]],
        gt_names=["Car"],
        pred_boxes=[[10.5, 2.0, -1.0, 4.0, 2.0, 1.5, 0.25], [30.0, -5.0, -1.0, 0.8, 0.8, 1.7, 0.0]],
        pred_names=["Car", "Pedestrian"],
        pred_scores=[0.9, 0.2],
        occupancy=OccupancyGrid(values=grid, point_cloud_range=(0, -20, -3, 40, 20, 1)),
    )
    fig = plot_bev(
        scene.points, scene.gt_boxes, scene.gt_names, pred_boxes=scene.pred_boxes,
        pred_names=scene.pred_names, pred_scores=scene.pred_scores, score_threshold=0.5, occupancy=scene.occupancy,
    )  # fmt: skip
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.90"]  # the 0.2 prediction is below the threshold
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == 2  # outline and heading tick of the kept prediction
    assert len(ax.images) == 1  # the occupancy heatmap
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"Car", "Car (pred)"}
    png(save_scene(tmp_path / "scene.png", scene))
    # The original call keeps working: points, boxes, names, scores.
    png(save_bev(tmp_path / "old.png", points, scene.gt_boxes, scene.gt_names, [0.5], title="t"))


def test_pr_curves_from_r40_precision_and_recall_pairs(tmp_path):
    recall = np.linspace(0, 1, 41)
    curves = {
        "Car 3d moderate": np.clip(1.0 - recall**2, 0, 1),  # 41 precision values at R40 recall
        "Car 3d hard": np.clip(0.9 - recall**2, 0, 1),
        "Pedestrian 3d moderate": (recall[:30], np.linspace(0.9, 0.5, 30)),  # (recall, precision)
    }
    image = png(save_pr_curves(tmp_path / "pr.png", curves, title="val"))
    assert image.shape[0] > 100
    # R40 AP: the mean of the 40 precisions after recall 0; zero beyond a curve's last recall.
    assert ap_r40(recall, curves["Car 3d moderate"]) == pytest.approx(
        100 * curves["Car 3d moderate"][1:].mean()
    )
    assert ap_r40(*curves["Pedestrian 3d moderate"]) < 100 * 29 / 40
    with pytest.raises(ValueError, match="AP values only"):
        save_pr_curves(tmp_path / "bad.png", {"Car_3d/moderate_R40": 71.2})
