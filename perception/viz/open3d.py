"""Open3D views of a :class:`~perception.viz.scene.Scene`: headless PNG renders and an interactive viewer.

- :func:`render` draws a scene to a PNG without a display, through Open3D's legacy
  ``Visualizer(visible=False)``, which falls back to an EGL offscreen context (Mesa works, no X
  server; ~50 ms a frame on a CPU). :class:`Renderer` keeps one context open for many frames.
- :func:`show` opens a window stepping through a sequence of scenes with the keyboard.

Cameras (:func:`camera_for`) are pinhole cameras given to Open3D as ``PinholeCameraParameters``, so
:meth:`Camera.project` says exactly where a point of the sensor frame lands in the image:

- ``"bev"``: bird's eye, looking straight down over :meth:`Scene.view_range` with a narrow (20°)
  field of view, so nearly orthographic; forward (+x) is up in the image, left (+y) is left.
- ``"chase"``: behind and above the ego vehicle (10 m back, 7 m up) looking forward, 60° field of view.
- ``"free"``: any 4×4 extrinsic ``pose`` (sensor frame → camera, camera axes x right, y down, z
  forward, as OpenCV and Open3D's ``PinholeCameraParameters.extrinsic``), 60° field of view; without
  a pose, an oblique view from the rear left over the scene's centre.

Each prediction's score is written above its box on headless renders (``score_labels``) and listed
in the console by the viewer (the legacy renderer draws no text). Likewise a segmentation scene's
legend (:meth:`~perception.viz.scene.Scene.legend`: its classes' colours, or the error kinds) is drawn
onto the top-left corner of headless renders (``legend``) and printed by the viewer. Ground truth
and predictions are line sets (12 edges and a heading mark from the centre to the front
face), by default in two colours (:data:`~perception.viz.scene.GT_COLOUR` red,
:data:`~perception.viz.scene.PRED_COLOUR` blue); ``box_colours="class"`` colours both by class.

Where Open3D cannot open a context (not installed, a missing system library, no display and no EGL)
the functions raise :class:`RenderUnavailable`, whose message says what to install; callers fall back
to the matplotlib bird's-eye PNG of :mod:`perception.viz.bev`.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import PIL.Image
import PIL.ImageDraw
from numpy.typing import ArrayLike, NDArray

from perception.viz.scene import (
    GT_COLOUR,
    PRED_COLOUR,
    Scene,
    atomic_write,
    box_wireframes,
    class_colours,
    height_colours,
)

__all__ = [
    "Camera",
    "CameraName",
    "RenderUnavailable",
    "Renderer",
    "camera_for",
    "has_display",
    "look_at",
    "render",
    "render_image",
    "scene_geometries",
    "show",
]

CameraName = Literal["bev", "chase", "free"]
BoxColours = Literal["source", "class"]

_INSTALL_HINT = (
    "Open3D renders headless through EGL: on Debian/Ubuntu install the system libraries with "
    "`apt-get install libegl1 libgl1 libgl1-mesa-dri libusb-1.0-0` (and `pip install open3d`), or run "
    "where a display is set (DISPLAY / WAYLAND_DISPLAY)"
)


class RenderUnavailable(RuntimeError):
    """Open3D cannot render here (not importable, or no window / EGL context could be created)."""


def _open3d() -> ModuleType:
    """The ``open3d`` module, quiet; :class:`RenderUnavailable` where it does not import."""
    try:
        import open3d as o3d
    except (ImportError, OSError) as err:  # OSError: a missing shared library (libusb, libGL, ...)
        raise RenderUnavailable(f"open3d does not import ({err}). {_INSTALL_HINT}.") from err
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


# --------------------------------------------------------------------------------------------------
# cameras


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over an image of ``width`` × ``height`` pixels.

    Attributes:
        intrinsic: (3, 3) float64 ``[[f, 0, cx], [0, f, cy], [0, 0, 1]]``, pixels; the principal point
            is the image centre (``cx = width / 2 - 0.5``), as Open3D's legacy renderer requires.
        extrinsic: (4, 4) float64 sensor frame → camera frame (x right, y down, z forward, metres).
        width, height: the image size, pixels.
    """

    intrinsic: NDArray[np.float64]
    extrinsic: NDArray[np.float64]
    width: int
    height: int

    def project(self, xyz: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Pixels of sensor-frame points: ``(uv (N, 2) [column, row], depth (N,) metres)``.

        Pixel ``(u, v)`` is the centre of image column u, row v; points with depth ≤ 0 are behind the
        camera and their ``uv`` is meaningless.
        """
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        cam = xyz @ self.extrinsic[:3, :3].T + self.extrinsic[:3, 3]
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ self.intrinsic.T)[:, :2] / depth[:, None]
        return uv, depth

    @property
    def position(self) -> NDArray[np.float64]:
        """(3,) the camera's centre in the sensor frame."""
        r, t = self.extrinsic[:3, :3], self.extrinsic[:3, 3]
        return -r.T @ t


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> NDArray[np.float64]:
    """(4, 4) extrinsic (sensor → camera, x right, y down, z forward) of a camera at ``eye`` looking
    at ``target`` with ``up`` pointing up in the image. All three in the sensor frame, metres."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"look_at: up {up} is parallel to the viewing direction {forward}")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = np.stack([right, down, forward])
    extrinsic[:3, 3] = -extrinsic[:3, :3] @ eye
    return extrinsic


def _intrinsic(width: int, height: int, fov_deg: float) -> NDArray[np.float64]:
    """Square pixels, a vertical field of view of ``fov_deg`` (Open3D accepts 5°–90°)."""
    f = height / (2.0 * np.tan(np.radians(fov_deg) / 2.0))
    return np.array([[f, 0.0, width / 2.0 - 0.5], [0.0, f, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


_BEV_FOV = 20.0
_PERSPECTIVE_FOV = 60.0
_CHASE_EYE = (-10.0, 0.0, 7.0)
_CHASE_TARGET = (15.0, 0.0, 0.0)


def camera_for(
    scene: Scene,
    camera: CameraName = "bev",
    width: int = 1280,
    height: int = 960,
    pose: ArrayLike | None = None,
) -> Camera:
    """The camera of a preset (see the module docstring) for ``scene`` and an image size.

    Args:
        scene: the scene (``"bev"`` and the default ``"free"`` view frame :meth:`Scene.view_range`).
        camera: ``"bev"``, ``"chase"`` or ``"free"``.
        width, height: image size, pixels.
        pose: (4, 4) extrinsic (sensor → camera, x right, y down, z forward) for ``"free"``.
    """
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8 × 8 pixels, got {width} × {height}")
    if pose is not None and camera != "free":
        raise ValueError(f"a pose is for camera='free', not {camera!r}")
    if camera == "bev":
        x0, y0, x1, y1 = scene.view_range()
        tan_half = np.tan(np.radians(_BEV_FOV) / 2.0)
        ground = float(scene.z_range[0])
        # Fit x (image rows) and y (image columns) at the ground plane.
        distance = max((x1 - x0) / 2.0 / tan_half, (y1 - y0) / 2.0 / (tan_half * width / height))
        eye = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0, ground + distance])
        extrinsic = np.eye(4)
        extrinsic[:3, :3] = [[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]  # right=-y, down=-x
        extrinsic[:3, 3] = -extrinsic[:3, :3] @ eye
        return Camera(_intrinsic(width, height, _BEV_FOV), extrinsic, width, height)
    if camera == "chase":
        return Camera(
            _intrinsic(width, height, _PERSPECTIVE_FOV), look_at(_CHASE_EYE, _CHASE_TARGET), width, height
        )
    if camera == "free":
        if pose is None:
            x0, y0, x1, y1 = scene.view_range()
            centre, size = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0, 0.0]), max(x1 - x0, y1 - y0)
            extrinsic = look_at(centre + np.array([-0.6, 0.6, 0.5]) * size, centre)
        else:
            extrinsic = np.asarray(pose, dtype=np.float64)
            if extrinsic.shape != (4, 4) or not np.isfinite(extrinsic).all():
                raise ValueError(f"pose must be a finite (4, 4) extrinsic, got shape {extrinsic.shape}")
            r = extrinsic[:3, :3]
            if not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
                raise ValueError("pose's rotation block (pose[:3, :3]) must be a proper rotation")
        return Camera(_intrinsic(width, height, _PERSPECTIVE_FOV), extrinsic, width, height)
    raise ValueError(f"camera must be 'bev', 'chase' or 'free', got {camera!r}")


# --------------------------------------------------------------------------------------------------
# geometry


def _line_set(o3d: ModuleType, boxes: NDArray, colours: NDArray[np.float64]) -> Any:
    vertices, lines = box_wireframes(boxes)
    line_set = o3d.geometry.LineSet(
        o3d.utility.Vector3dVector(vertices), o3d.utility.Vector2iVector(lines.astype(np.int32))
    )
    line_set.colors = o3d.utility.Vector3dVector(np.repeat(colours.reshape(-1, 3), 13, axis=0))
    return line_set


# Cuboid faces over box_corners' corner order (bottom 0-3 counter-clockwise from above, top 4-7),
# two triangles a face, wound counter-clockwise seen from outside.
_FACES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
     [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]],
    dtype=np.int32,
)  # fmt: skip
_UNIT = np.array(
    [[0.5, 0.5, -0.5], [-0.5, 0.5, -0.5], [-0.5, -0.5, -0.5], [0.5, -0.5, -0.5],
     [0.5, 0.5, 0.5], [-0.5, 0.5, 0.5], [-0.5, -0.5, 0.5], [0.5, -0.5, 0.5]]
)  # fmt: skip


def _occupancy_mesh(o3d: ModuleType, scene: Scene, threshold: float) -> Any | None:
    """The occupied cells (value ≥ ``threshold``) as coloured cuboids (magma by value), or None."""
    assert scene.occupancy is not None
    centres, values = scene.occupancy.occupied(threshold)
    if not len(centres):
        return None
    size = np.asarray(scene.occupancy.voxel_size)
    if scene.occupancy.values.ndim == 2:
        size = np.array([size[0], size[1], min(size[0], size[1])])  # a flat tile, one cell high
        centres = centres.copy()
        centres[:, 2] = scene.z_range[0]
    vertices = (centres[:, None, :] + _UNIT[None] * size).reshape(-1, 3)
    faces = (_FACES[None] + 8 * np.arange(len(centres), dtype=np.int32)[:, None, None]).reshape(-1, 3)
    lo, hi = float(values.min()), float(values.max())
    t = (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)
    colours = height_colours(0.25 + 0.75 * t, (0.0, 1.0), cmap="magma")
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(faces))
    mesh.vertex_colors = o3d.utility.Vector3dVector(np.repeat(colours, 8, axis=0))
    mesh.compute_vertex_normals()
    return mesh


def scene_geometries(
    scene: Scene, box_colours: BoxColours = "source", occupancy_threshold: float = 0.5
) -> list[Any]:
    """The Open3D geometries drawing ``scene``: a point cloud, line sets of the ground-truth and predicted
    boxes, and the occupied cells of its occupancy grid as a mesh (empty parts are left out).

    Args:
        scene: what to draw.
        box_colours: ``"source"`` (ground truth red, predictions blue) or ``"class"`` (class colours).
        occupancy_threshold: cells with a value at or above it are drawn.
    """
    o3d = _open3d()
    geometries: list[Any] = []
    if scene.num_points:
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(scene.points[:, :3].astype(np.float64)))
        cloud.colors = o3d.utility.Vector3dVector(scene.point_colours())
        geometries.append(cloud)
    for boxes, names, colour in (
        (scene.gt_boxes, scene.gt_names, GT_COLOUR),
        (scene.pred_boxes, scene.pred_names, PRED_COLOUR),
    ):
        if len(boxes):
            colours = class_colours(names) if box_colours == "class" else np.tile(colour, (len(boxes), 1))
            geometries.append(_line_set(o3d, boxes, colours))
    if scene.occupancy is not None:
        mesh = _occupancy_mesh(o3d, scene, occupancy_threshold)
        if mesh is not None:
            geometries.append(mesh)
    return geometries


# --------------------------------------------------------------------------------------------------
# headless rendering


def _apply_camera(o3d: ModuleType, vis: Any, camera: Camera) -> None:
    """Put ``camera`` into the visualizer (after the geometry is added: adding resets the view)."""
    params = o3d.camera.PinholeCameraParameters()
    params.intrinsic = o3d.camera.PinholeCameraIntrinsic(camera.width, camera.height, camera.intrinsic)
    params.extrinsic = camera.extrinsic
    control = vis.get_view_control()
    if not control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
        raise RenderUnavailable("Open3D refused the camera parameters (window size mismatch?)")
    # Open3D derives the clipping planes from the geometry's bounding box and a zoom; fix them so
    # nothing between 0.1 m and beyond the scene is ever clipped.
    far = float(np.linalg.norm(camera.position)) + 1000.0
    control.set_constant_z_near(0.1)
    control.set_constant_z_far(far)


def _style(vis: Any, point_size: float, line_width: float, background: Sequence[float]) -> None:
    option = vis.get_render_option()
    option.background_color = np.asarray(background, dtype=np.float64)
    option.point_size = float(point_size)
    option.line_width = float(line_width)
    option.light_on = True


class Renderer:
    """A headless Open3D context that renders scenes to images, reused frame after frame.

    Args:
        width, height: image size, pixels.
        point_size: point diameter, pixels.
        line_width: box line width, pixels.
        background: RGB in [0, 1].
        box_colours: ``"source"`` (ground truth red, predictions blue) or ``"class"``.
        score_labels: write each prediction's score next to its box (the legacy renderer draws no
            text, so the labels are drawn on the captured image at the box's projected top centre).
        legend: draw the scene's legend (segmentation classes or error kinds with their colours) onto
            the captured image's top-left corner.

    Raises:
        RenderUnavailable: Open3D does not import or cannot create an (EGL) context.

    Use as a context manager (``with Renderer() as r: r.save(scene, "a.png")``) or call :meth:`close`.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 960,
        point_size: float = 2.0,
        line_width: float = 3.0,
        background: Sequence[float] = (0.0, 0.0, 0.0),
        box_colours: BoxColours = "source",
        score_labels: bool = True,
        legend: bool = True,
    ) -> None:
        self._o3d = _open3d()
        self.score_labels = bool(score_labels)
        self.legend = bool(legend)
        self.width, self.height = int(width), int(height)
        self.point_size, self.line_width = point_size, line_width
        self.background, self.box_colours = tuple(background), box_colours
        self._vis = self._o3d.visualization.Visualizer()
        if not self._vis.create_window(
            window_name="perception", width=self.width, height=self.height, visible=False
        ):
            self._vis = None
            raise RenderUnavailable(
                f"Open3D could not create an offscreen window or EGL context. {_INSTALL_HINT}."
            )

    def image(
        self, scene: Scene, camera: CameraName = "bev", pose: ArrayLike | None = None
    ) -> NDArray[np.uint8]:
        """(height, width, 3) uint8 RGB render of ``scene`` through the camera preset (:func:`camera_for`)."""
        if self._vis is None:
            raise RuntimeError("the renderer is closed")
        cam = camera_for(scene, camera, self.width, self.height, pose)
        vis = self._vis
        vis.clear_geometries()
        for geometry in scene_geometries(scene, self.box_colours):
            vis.add_geometry(geometry, reset_bounding_box=True)
        _style(vis, self.point_size, self.line_width, self.background)
        _apply_camera(self._o3d, vis, cam)
        vis.poll_events()
        vis.update_renderer()
        buffer = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        image = (np.clip(buffer, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if self.score_labels:
            image = _draw_scores(image, scene, cam)
        return _draw_legend(image, scene.legend()) if self.legend else image

    def save(
        self, scene: Scene, path: str | os.PathLike, camera: CameraName = "bev", pose: ArrayLike | None = None
    ) -> Path:
        """Render ``scene`` to a PNG at ``path`` (folders created; written to a temporary file, then
        renamed, so a reader never sees half a file)."""
        image = self.image(scene, camera, pose)
        buffer = io.BytesIO()
        PIL.Image.fromarray(image).save(buffer, format="PNG")
        return atomic_write(path, buffer.getvalue())

    def close(self) -> None:
        if self._vis is not None:
            self._vis.destroy_window()
            self._vis = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _draw_scores(image: NDArray[np.uint8], scene: Scene, camera: Camera) -> NDArray[np.uint8]:
    """``image`` with each prediction's score written above its box (boxes in front of the camera)."""
    if scene.pred_scores is None or not len(scene.pred_boxes):
        return image
    boxes = np.asarray(scene.pred_boxes, dtype=np.float64).reshape(-1, 7)
    tops = boxes[:, :3] + np.column_stack([np.zeros((len(boxes), 2)), boxes[:, 5] / 2])
    uv, depth = camera.project(tops)
    picture = PIL.Image.fromarray(image)
    draw = PIL.ImageDraw.Draw(picture)
    colour = tuple(round(c * 255) for c in PRED_COLOUR)
    for (u, v), z, score in zip(uv, depth, np.asarray(scene.pred_scores), strict=True):
        if z > 0 and 0 <= u < camera.width and 0 <= v < camera.height:
            draw.text((float(u) + 3, float(v) - 12), f"{float(score):.2f}", fill=colour)
    return np.asarray(picture)


def _draw_legend(
    image: NDArray[np.uint8], entries: Sequence[tuple[str, Sequence[float]]]
) -> NDArray[np.uint8]:
    """``image`` with a legend in its top-left corner: a colour swatch and a name per entry, on a dark
    panel (PIL's default font, 14 px rows)."""
    if not entries:
        return image
    picture = PIL.Image.fromarray(image)
    draw = PIL.ImageDraw.Draw(picture)
    row, swatch, pad = 14, 10, 6
    width = pad * 3 + swatch + max(int(draw.textlength(str(name))) for name, _ in entries)
    height = pad * 2 + row * len(entries)
    draw.rectangle((0, 0, width, height), fill=(24, 24, 24))
    for i, (name, rgb) in enumerate(entries):
        top = pad + i * row
        colour = tuple(round(float(c) * 255) for c in rgb)
        draw.rectangle((pad, top + 1, pad + swatch - 1, top + swatch), fill=colour)
        draw.text((pad * 2 + swatch, top - 1), str(name), fill=(235, 235, 235))
    return np.asarray(picture)


def render_image(
    scene: Scene,
    camera: CameraName = "bev",
    width: int = 1280,
    height: int = 960,
    pose: ArrayLike | None = None,
    **style: Any,
) -> NDArray[np.uint8]:
    """(height, width, 3) uint8 RGB render of one scene (see :func:`render`)."""
    with Renderer(width, height, **style) as renderer:
        return renderer.image(scene, camera, pose)


def render(
    scene: Scene,
    path: str | os.PathLike,
    camera: CameraName = "bev",
    width: int = 1280,
    height: int = 960,
    pose: ArrayLike | None = None,
    **style: Any,
) -> Path:
    """Render one scene headless to a PNG.

    Args:
        scene: what to draw.
        path: the PNG (folders created; written atomically).
        camera: ``"bev"``, ``"chase"`` or ``"free"`` (see :func:`camera_for`).
        width, height: image size, pixels.
        pose: (4, 4) extrinsic (sensor → camera, x right, y down, z forward) for ``camera="free"``.
        style: :class:`Renderer` options (``point_size``, ``line_width``, ``background``,
            ``box_colours``).

    Returns:
        ``path``.

    Raises:
        RenderUnavailable: Open3D cannot render here; the message says what to install.
    """
    with Renderer(width, height, **style) as renderer:
        return renderer.save(scene, path, camera, pose)


# --------------------------------------------------------------------------------------------------
# interactive viewer

# GLFW key codes (the legacy visualizer passes them to key callbacks).
_KEY_RIGHT, _KEY_LEFT = 262, 263
_HELP = """perception viewer keys:
  N / →   next frame            P / ←   previous frame
  ]       raise score threshold  [       lower score threshold (steps of 0.05)
  B       bird's-eye view        C       chase view
  R       reset view (Open3D)    Q / Esc quit        H  Open3D's own key help"""


def has_display() -> bool:
    """Whether a window can be shown: on Linux, DISPLAY or WAYLAND_DISPLAY is set."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def show(
    scenes: Sequence[Scene] | Callable[[int], Scene],
    num_scenes: int | None = None,
    *,
    start: int = 0,
    width: int = 1600,
    height: int = 1000,
    camera: CameraName = "chase",
    pose: ArrayLike | None = None,
    score_threshold: float = 0.0,
    threshold_step: float = 0.05,
    point_size: float = 2.0,
    line_width: float = 2.0,
    box_colours: BoxColours = "source",
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> None:
    """An interactive window stepping through scenes (keys: N/P or →/←, [ and ] for the score
    threshold, B/C for bird's-eye / chase views; printed when it opens). Returns when closed.

    Args:
        scenes: a sequence of scenes, or a callable ``index -> Scene`` loading each on demand (then
            ``num_scenes`` says how many; only the scene on screen is held).
        num_scenes: the number of scenes (default: ``len(scenes)``).
        start: the first scene shown.
        camera: the initial view (:func:`camera_for`); a view the user moves to is kept from frame
            to frame.
        pose: (4, 4) extrinsic of the initial view for ``camera="free"``.
        score_threshold: predictions below it are hidden; ``threshold_step`` is what [ and ] change.

    Raises:
        RenderUnavailable: no display (render to a PNG with :func:`render` instead), or Open3D cannot
            open a window.
    """
    if not has_display():
        raise RenderUnavailable(
            "no display: the interactive viewer needs one (DISPLAY or WAYLAND_DISPLAY is unset). "
            "Render to a PNG instead (perception.viz.open3d.render, or tools/visualize.py --save out.png)"
        )
    o3d = _open3d()
    if callable(scenes) and not isinstance(scenes, Sequence):
        if num_scenes is None:
            raise ValueError("show: pass num_scenes with a callable of scenes")
        load: Callable[[int], Scene] = scenes
    else:
        sequence = scenes
        num_scenes = len(sequence) if num_scenes is None else num_scenes
        load = sequence.__getitem__
    if num_scenes < 1:
        raise ValueError("show: no scenes to show")

    state: dict[str, Any] = {
        "index": min(max(start, 0), num_scenes - 1),
        "threshold": float(score_threshold),
        "scene": None,
        "first": True,
    }
    vis = o3d.visualization.VisualizerWithKeyCallback()
    if not vis.create_window(window_name="perception viewer", width=width, height=height, visible=True):
        raise RenderUnavailable(f"Open3D could not open a window. {_INSTALL_HINT}.")

    def draw(vis: Any, preset: CameraName | None = None) -> bool:
        control = vis.get_view_control()
        kept = None if state["first"] else control.convert_to_pinhole_camera_parameters()
        if state["scene"] is None:
            started = time.perf_counter()
            state["scene"] = load(state["index"])
            loaded_in = time.perf_counter() - started
        else:
            loaded_in = 0.0
        scene: Scene = state["scene"]
        shown = scene.with_score_threshold(state["threshold"])
        vis.clear_geometries()
        for geometry in scene_geometries(shown, box_colours):
            vis.add_geometry(geometry, reset_bounding_box=state["first"])
        _style(vis, point_size, line_width, background)
        if state["first"] or preset is not None:
            cam = camera_for(scene, preset or camera, width, height, None if preset else pose)
            _apply_camera(o3d, vis, cam)
        elif kept is not None:
            control.convert_from_pinhole_camera_parameters(kept, allow_arbitrary=True)
        state["first"] = False
        print(
            f"[{state['index'] + 1}/{num_scenes}] frame {scene.frame_id or state['index']}: "
            f"{scene.num_points} points, {len(scene.gt_boxes)} ground-truth boxes, "
            f"{len(shown.pred_boxes)}/{len(scene.pred_boxes)} predictions ≥ {state['threshold']:.2f}"
            + (f" (loaded in {loaded_in:.2f} s)" if loaded_in else ""),
            flush=True,
        )
        legend = scene.legend()
        if legend:  # the window draws no text
            print("    colours: " + ", ".join(
                f"{name} #{''.join(f'{round(c * 255):02x}' for c in rgb)}" for name, rgb in legend
            ), flush=True)  # fmt: skip
        if shown.pred_scores is not None and len(shown.pred_boxes):  # the window draws no text
            for name, box, score in zip(shown.pred_names, shown.pred_boxes, shown.pred_scores, strict=True):
                x, y, z = (float(v) for v in box[:3])
                print(f"    {name} {float(score):.2f} at x {x:.1f} y {y:.1f} z {z:.1f}", flush=True)
        return True

    def step(delta: int) -> Callable[[Any], bool]:
        def callback(vis: Any) -> bool:
            index = min(max(state["index"] + delta, 0), num_scenes - 1)
            if index == state["index"]:
                return False
            state["index"], state["scene"] = index, None
            return draw(vis)

        return callback

    def threshold(delta: float) -> Callable[[Any], bool]:
        def callback(vis: Any) -> bool:
            state["threshold"] = float(np.clip(state["threshold"] + delta, 0.0, 1.0))
            return draw(vis)

        return callback

    for key in (ord("N"), _KEY_RIGHT):
        vis.register_key_callback(key, step(+1))
    for key in (ord("P"), _KEY_LEFT):
        vis.register_key_callback(key, step(-1))
    vis.register_key_callback(ord("]"), threshold(+threshold_step))
    vis.register_key_callback(ord("["), threshold(-threshold_step))
    vis.register_key_callback(ord("B"), lambda v: draw(v, "bev"))
    vis.register_key_callback(ord("C"), lambda v: draw(v, "chase"))
    print(_HELP, flush=True)
    try:
        draw(vis)
        vis.run()
    finally:
        vis.destroy_window()
