"""Headless Open3D renders (EGL): box colours land where the camera model projects the boxes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from perception.viz.open3d import Renderer, RenderUnavailable, camera_for, look_at, render, show
from perception.viz.scene import GT_COLOUR, PRED_COLOUR, Scene

W, H = 320, 240
GT_BOX = [15.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.3]  # ahead and to the left
PRED_BOX = [5.0, -5.0, -1.0, 4.0, 2.0, 1.5, -0.5]  # closer and to the right


@pytest.fixture(scope="module")
def renderer():
    try:
        r = Renderer(W, H, line_width=3.0)
    except RenderUnavailable as err:
        pytest.skip(f"Open3D cannot render headless here: {err}")
    yield r
    r.close()


@pytest.fixture(scope="module")
def scene() -> Scene:
    rng = np.random.default_rng(0)
    # A few ground points far from both boxes (left behind the sensor), so they cannot mask them.
    points = np.column_stack(
        [rng.uniform(-8, -2, 200), rng.uniform(2, 8, 200), np.full(200, -1.7), rng.uniform(0, 1, 200)]
    )
    return Scene(
        points=points,
        gt_boxes=[GT_BOX],
        gt_names=["Car"],
        pred_boxes=[PRED_BOX],
        pred_names=["Car"],
        pred_scores=[0.8],
    )


def colour_mask(image: np.ndarray, rgb: tuple[float, float, float], tol: int = 12) -> np.ndarray:
    return np.abs(image.astype(int) - np.round(np.asarray(rgb) * 255).astype(int)).max(axis=-1) <= tol


def projected_bbox(scene: Scene, box, camera: str, pose=None) -> tuple[np.ndarray, np.ndarray]:
    from perception.geometry.boxes import box_corners

    uv, depth = camera_for(scene, camera, W, H, pose).project(box_corners(np.array([box]))[0])
    assert (depth > 0).all()
    return uv.min(axis=0), uv.max(axis=0)


def assert_box_drawn(image: np.ndarray, scene: Scene, box, rgb, camera: str, pose=None) -> None:
    mask = colour_mask(image, rgb)
    assert mask.sum() >= 20, f"colour {rgb} barely present ({mask.sum()} pixels)"
    rows, cols = np.nonzero(mask)
    lo, hi = projected_bbox(scene, box, camera, pose)
    margin = 4  # line width and rasterisation
    inside = (
        (cols >= lo[0] - margin)
        & (cols <= hi[0] + margin)
        & (rows >= lo[1] - margin)
        & (rows <= hi[1] + margin)
    )
    assert inside.mean() > 0.98, (lo, hi, cols.min(), cols.max(), rows.min(), rows.max())
    # The outline reaches the projected extent (not just a dot inside it).
    assert cols.max() - cols.min() >= 0.7 * (hi[0] - lo[0]) and rows.max() - rows.min() >= 0.7 * (
        hi[1] - lo[1]
    )


def test_birds_eye_render_puts_the_boxes_where_they_project(renderer, scene, tmp_path):
    path = renderer.save(scene, tmp_path / "bev" / "scene.png", "bev")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (H, W, 3)
    assert image.std() > 1 and (image.max(axis=-1) > 30).sum() > 200  # not blank: points and lines
    assert_box_drawn(image, scene, GT_BOX, GT_COLOUR, "bev")
    assert_box_drawn(image, scene, PRED_BOX, PRED_COLOUR, "bev")
    # Forward is up and left is left: seen from the sensor (the origin's pixel), the ground truth
    # (x 15, y +5) is up and to the left, the prediction (x 5, y -5) to the right and below it.
    ((u0, v0),), _ = camera_for(scene, "bev", W, H).project([[0.0, 0.0, -1.0]])
    gt_rows, gt_cols = np.nonzero(colour_mask(image, GT_COLOUR))
    pred_rows, pred_cols = np.nonzero(colour_mask(image, PRED_COLOUR))
    assert gt_rows.mean() < v0 and gt_cols.mean() < u0
    assert pred_rows.mean() < v0 and pred_cols.mean() > u0 and pred_rows.mean() > gt_rows.mean()
    # The points (height colours: viridis, no red or sky blue) are drawn too, behind-left of the ego.
    assert (image[int(v0) :, : int(u0)].max(axis=-1) > 30).sum() > 50


def test_chase_and_free_cameras(renderer, scene, tmp_path):
    chase = renderer.image(scene, "chase")
    free = renderer.image(scene, "free")
    assert np.abs(chase.astype(int) - free.astype(int)).mean() > 1.0
    assert_box_drawn(chase, scene, GT_BOX, GT_COLOUR, "chase")
    # A free pose looking at the ground truth from its right side: its box fills the middle.
    pose = look_at([15.0, -10.0, 2.0], GT_BOX[:3])
    side = renderer.image(scene, "free", pose)
    assert_box_drawn(side, scene, GT_BOX, GT_COLOUR, "free", pose)
    rows, cols = np.nonzero(colour_mask(side, GT_COLOUR))
    assert abs(cols.mean() - W / 2) < W / 8 and abs(rows.mean() - H / 2) < H / 8
    assert not np.array_equal(side, free)
    with pytest.raises(ValueError, match="proper rotation"):
        renderer.image(scene, "free", np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="camera='free'"):
        renderer.image(scene, "bev", pose)


def test_render_one_scene_to_png_with_class_colours_and_occupancy(scene, tmp_path):
    from perception.viz.scene import OccupancyGrid, class_colour

    grid = np.zeros((10, 10))
    grid[2:4, 6:8] = 1.0
    scene_occ = Scene(
        points=scene.points, gt_boxes=scene.gt_boxes, gt_names=["Cyclist"],
        occupancy=OccupancyGrid(values=grid, point_cloud_range=(0, -10, -3, 20, 10, 1)),
    )  # fmt: skip
    try:
        path = render(scene_occ, tmp_path / "one.png", "bev", W, H, box_colours="class")
    except RenderUnavailable as err:
        pytest.skip(f"Open3D cannot render headless here: {err}")
    image = np.asarray(Image.open(path).convert("RGB"))
    assert colour_mask(image, class_colour("Cyclist")).sum() >= 20
    assert not colour_mask(image, GT_COLOUR).any()
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_show_without_a_display_says_so(monkeypatch, scene):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(RenderUnavailable, match=r"no display.*--save"):
        show([scene])


def test_show_steps_frames_and_threshold_with_keys(renderer, scene, monkeypatch, capsys):
    """The viewer's key handling, driven headless: a visualizer whose ``run`` presses keys."""
    import open3d as o3d

    import perception.viz.open3d as viewer

    keys = [ord("N"), ord("N"), 262, ord("P"), ord("]"), ord("B"), 263, 263]

    class ScriptedVisualizer:  # a headless Visualizer (pybind classes do not subclass) that types keys
        def __init__(self) -> None:
            self.vis = o3d.visualization.Visualizer()
            self.callbacks = {}

        def __getattr__(self, name):
            return getattr(self.vis, name)

        def create_window(self, window_name="", width=640, height=480, visible=True):
            return self.vis.create_window(window_name=window_name, width=width, height=height, visible=False)

        def register_key_callback(self, key, callback):
            self.callbacks[key] = callback

        def run(self):
            for key in keys:
                self.callbacks[key](self)

    fake = type("FakeOpen3D", (), {})()
    for name in ("geometry", "utility", "camera", "io"):
        setattr(fake, name, getattr(o3d, name))
    fake.visualization = type("V", (), {"VisualizerWithKeyCallback": ScriptedVisualizer})
    monkeypatch.setattr(viewer, "_open3d", lambda: fake)
    monkeypatch.setattr(viewer, "has_display", lambda: True)
    loaded = []

    def load(index: int) -> Scene:
        loaded.append(index)
        return Scene(
            points=scene.points, gt_boxes=scene.gt_boxes, pred_boxes=scene.pred_boxes,
            pred_scores=[0.8], frame_id=f"f{index}",
        )  # fmt: skip

    viewer.show(load, 3, width=160, height=120, score_threshold=0.75, threshold_step=0.1)
    # Start at 0; N, N, → (stays at the last), P; ] raises the threshold over 0.8; B keeps the frame;
    # ←, ← go back to the first. Each frame is loaded when stepped to, once.
    assert loaded == [0, 1, 2, 1, 0]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    frames = [line.split()[2].rstrip(":") for line in lines]
    assert frames == ["f0", "f1", "f2", "f1", "f1", "f1", "f0"]
    assert "1/1 predictions ≥ 0.75" in lines[0] and "0/1 predictions ≥ 0.85" in lines[4]


def test_prediction_scores_are_written_beside_their_boxes(renderer, scene):
    with_scores = renderer.image(scene, "chase")
    renderer.score_labels = False
    try:
        without = renderer.image(scene, "chase")
    finally:
        renderer.score_labels = True
    changed = np.abs(with_scores.astype(int) - without.astype(int)).max(axis=-1) > 30
    assert changed.sum() > 15  # the text "0.80"
    rows, cols = np.nonzero(changed)
    top = np.asarray(PRED_BOX[:3]) + np.array([0.0, 0.0, PRED_BOX[5] / 2])
    ((u, v),), _ = camera_for(scene, "chase", W, H).project([top])
    assert abs(cols.mean() - (u + 12)) < 20 and abs(rows.mean() - (v - 6)) < 12  # right above the box top
