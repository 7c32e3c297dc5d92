"""Scene: construction from frames and KITTI result files, colours, wireframes, occupancy grids."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from perception.data.kitti import load_frame, read_label
from perception.geometry.boxes import box_corners
from perception.structures import Frame
from perception.viz.bev import CLASS_COLOURS as BEV_CLASS_COLOURS
from perception.viz.scene import (
    CLASS_COLOURS,
    OccupancyGrid,
    Scene,
    box_wireframes,
    class_colour,
    height_colours,
    intensity_colours,
    label_colours,
)


def test_class_colours_are_the_bev_colours_and_stable_for_unknown_names():
    assert BEV_CLASS_COLOURS is CLASS_COLOURS
    assert class_colour("Car") == to_rgb("tab:red")
    assert class_colour("VEHICLE") == class_colour("Car")
    assert class_colour("Bollard") == class_colour("Bollard")
    np.testing.assert_allclose(
        label_colours([0, 1, -1], ["Car", "Pedestrian"])[:2], [to_rgb("tab:red"), to_rgb("tab:green")]
    )
    assert tuple(label_colours([-1])[0]) == (0.5, 0.5, 0.5)


def test_height_and_intensity_colours_span_their_colormaps():
    c = height_colours([-10.0, -2.5, 1.5, 10.0])
    np.testing.assert_allclose(c[0], c[1])  # clipped below
    np.testing.assert_allclose(c[2], c[3])  # and above
    assert not np.allclose(c[1], c[2])
    bright, dim = intensity_colours([1.0, 0.0])
    assert bright.sum() > dim.sum()
    # Waymo-like raw intensity is scaled by its 99th percentile rather than saturating.
    raw = intensity_colours(np.linspace(0, 5000, 101))
    assert len({tuple(np.round(r, 3)) for r in raw}) > 50


def test_box_wireframes_edges_and_heading_mark():
    boxes = np.array([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, 0.5], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]])
    vertices, lines = box_wireframes(boxes)
    assert vertices.shape == (20, 3) and lines.shape == (26, 2)
    np.testing.assert_allclose(vertices[:8], box_corners(boxes[:1])[0])
    start, end = vertices[lines[12]]
    np.testing.assert_allclose(start, boxes[0, :3])
    np.testing.assert_allclose(end, boxes[0, :3] + 2.0 * np.array([np.cos(0.5), np.sin(0.5), 0.0]))
    assert lines[13:].min() == 10


def test_scene_from_kitti_frame_with_result_file(kitti_root, tmp_path):
    frame = load_frame(kitti_root, "000002")
    label = (kitti_root / "training" / "label_2" / "000002.txt").read_text().splitlines()
    (tmp_path / "000002.txt").write_text("".join(f"{line} 0.6\n" for line in label))
    scene = Scene.from_kitti(frame, read_label(tmp_path / "000002.txt"))
    assert scene.frame_id == "000002" and scene.num_points == frame.num_points
    # The result file's boxes are the frame's labels: converted to the lidar frame, DontCare dropped.
    np.testing.assert_allclose(scene.pred_boxes, frame.boxes, atol=1e-4)
    assert scene.pred_names.tolist() == frame.names.tolist()
    np.testing.assert_allclose(scene.pred_scores, 0.6)
    assert len(scene.with_score_threshold(0.7).pred_boxes) == 0
    assert scene.subsample(1000).num_points == 1000
    x0, y0, x1, y1 = scene.view_range()
    corners = box_corners(frame.boxes)
    assert (corners[..., 0] > x0).all() and (corners[..., 0] < x1).all()
    assert (corners[..., 1] > y0).all() and (corners[..., 1] < y1).all()


def test_scene_from_any_frame_and_validation():
    frame = Frame(frame_id="x", points=np.zeros((5, 3), np.float32))
    scene = Scene.from_frame(frame, np.zeros((1, 7)), ["Car"], [0.4])
    assert scene.point_colours().shape == (5, 3) and scene.pred_scores.tolist() == [pytest.approx(0.4)]
    with pytest.raises(ValueError, match="needs point_labels"):
        Scene(points=np.zeros((5, 3)), colour_by="class")
    with pytest.raises(ValueError, match="column 3"):
        Scene(points=np.zeros((5, 3)), colour_by="intensity")
    with pytest.raises(ValueError, match="2 scores for 1 predictions"):
        Scene(points=np.zeros((5, 3)), pred_boxes=np.zeros((1, 7)), pred_scores=[0.1, 0.2])
    seg = Scene(
        points=np.zeros((3, 3)), colour_by="class", point_labels=[0, 1, -1], label_names=["Car", "Cyclist"]
    )
    np.testing.assert_allclose(seg.point_colours()[1], to_rgb("tab:blue"))


def test_occupancy_grid_cells():
    values = np.zeros((4, 2, 2))
    values[3, 1, 0] = 0.9
    grid = OccupancyGrid(values=values, point_cloud_range=(0, -2, -1, 8, 2, 1))
    assert grid.voxel_size == (2.0, 2.0, 1.0)
    centres, v = grid.occupied(0.5)
    np.testing.assert_allclose(centres, [[7.0, 1.0, -0.5]])
    assert v.tolist() == [0.9] and grid.bev().shape == (4, 2)
    with pytest.raises(ValueError):
        OccupancyGrid(values=np.zeros(3), point_cloud_range=(0, 0, 0, 1, 1, 1))
