"""What to draw, independent of the backend: a :class:`Scene` (points, boxes, occupancy) and colours.

Every viewer of the project (the Open3D renderer and viewer in :mod:`perception.viz.open3d`, the
matplotlib bird's-eye plots in :mod:`perception.viz.bev`, the W&B logger in :mod:`perception.viz.wandb`)
draws a :class:`Scene`, so a frame looks the same everywhere: points coloured by height (viridis over
z ∈ [-2.5, 1.5] m, as :func:`perception.viz.bev.plot_bev` always did), by intensity or by class, and
boxes in the class colours of :data:`CLASS_COLOURS`.

Frames and shapes follow DESIGN.md: points ``(N, C)`` with x, y, z first (sensor frame: x forward,
y left, z up, metres), boxes ``(M, 7)`` ``[x, y, z, l, w, h, yaw]`` with the box centre (z too), yaw
counter-clockwise from +x.

A scene comes from any reader's :class:`~perception.structures.Frame` (:meth:`Scene.from_frame`), from a
KITTI frame with a KITTI result file's objects (:meth:`Scene.from_kitti`), from a model's batch and
detections (:meth:`Scene.from_batch`), or from a segmentation scan with its ground-truth and / or
predicted training ids (:meth:`Scene.from_segmentation`: points coloured by ground-truth class, by
predicted class in SemanticKITTI's official colours, or by error; :meth:`Scene.legend` names the
colours shown).

This module imports no plotting backend (only :mod:`matplotlib.colors` and its colormaps), so importing
it leaves the matplotlib backend alone.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from numpy.typing import ArrayLike, NDArray

from perception.data.io import atomic_write_bytes
from perception.geometry.boxes import box_corners

if TYPE_CHECKING:
    from perception.data.kitti import KittiFrame, KittiObjects
    from perception.structures import Batch, Frame
    from perception.structures.segmentation import LabelMap

__all__ = [
    "CLASS_COLOURS",
    "GT_COLOUR",
    "HEIGHT_RANGE",
    "PRED_COLOUR",
    "ColourMode",
    "OccupancyGrid",
    "Scene",
    "atomic_write",
    "box_wireframes",
    "class_colour",
    "class_colours",
    "height_colours",
    "intensity_colours",
    "label_colours",
]

CLASS_COLOURS: dict[str, str] = {
    # KITTI
    "Car": "tab:red",
    "Van": "tab:pink",
    "Truck": "tab:brown",
    "Pedestrian": "tab:green",
    "Person_sitting": "tab:olive",
    "Cyclist": "tab:blue",
    "Tram": "tab:purple",
    "Misc": "tab:gray",
    # Waymo, in the colours of their KITTI counterparts
    "VEHICLE": "tab:red",
    "PEDESTRIAN": "tab:green",
    "CYCLIST": "tab:blue",
    "SIGN": "tab:orange",
}
"""Class name (as the dataset spells it) → matplotlib colour. Other names get a stable colour of
matplotlib's ``tab20`` chosen from the name (:func:`class_colour`)."""

GT_COLOUR: tuple[float, float, float] = (1.0, 0.25, 0.2)
"""RGB in [0, 1] of ground-truth boxes where boxes are coloured by source (red)."""

PRED_COLOUR: tuple[float, float, float] = (0.15, 0.65, 1.0)
"""RGB in [0, 1] of predicted boxes where boxes are coloured by source (sky blue)."""

HEIGHT_RANGE: tuple[float, float] = (-2.5, 1.5)
"""z range (metres, sensor frame) the height colormap spans; KITTI's ground lies near z = -1.7."""

ColourMode = Literal["height", "intensity", "class", "label", "prediction", "error", "uniform"]
"""How points are coloured: by z, by an intensity column, by per-point ground-truth labels (``"class"``
or its synonym ``"label"``), by predicted labels (``"prediction"``), by prediction error
(``"error"``: correct, wrong, ignored), or one grey."""

_COLOUR_MODES = ("height", "intensity", "class", "label", "prediction", "error", "uniform")

_UNIFORM = (0.75, 0.75, 0.75)
_UNLABELLED = (0.5, 0.5, 0.5)


# --------------------------------------------------------------------------------------------------
# colours


def class_colour(name: str) -> tuple[float, float, float]:
    """RGB in [0, 1] of a class: :data:`CLASS_COLOURS`, else a stable ``tab20`` colour from the name."""
    if name in CLASS_COLOURS:
        r, g, b = to_rgb(CLASS_COLOURS[name])
        return float(r), float(g), float(b)
    table = colormaps["tab20"].colors
    r, g, b = table[zlib.crc32(name.encode()) % len(table)][:3]
    return float(r), float(g), float(b)


def class_colours(names: ArrayLike) -> NDArray[np.float64]:
    """(M, 3) RGB in [0, 1] for (M,) class names (see :func:`class_colour`)."""
    names = np.asarray(names).reshape(-1)
    lookup = {str(n): class_colour(str(n)) for n in np.unique(names)} if len(names) else {}
    return np.array([lookup[str(n)] for n in names], dtype=np.float64).reshape(-1, 3)


def height_colours(
    z: ArrayLike, z_range: tuple[float, float] = HEIGHT_RANGE, cmap: str = "viridis"
) -> NDArray[np.float64]:
    """(N, 3) RGB in [0, 1] for (N,) heights z (metres): ``cmap`` over ``z_range``, clipped at its ends."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    lo, hi = z_range
    t = np.clip((z - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return colormaps[cmap](t)[:, :3]


def intensity_colours(
    values: ArrayLike, scale: float | None = None, cmap: str = "inferno"
) -> NDArray[np.float64]:
    """(N, 3) RGB in [0, 1] for (N,) intensities, mapped through ``cmap`` after dividing by ``scale``.

    ``scale`` defaults to the 99th percentile of the values where that exceeds 1 (Waymo's raw
    intensity), else 1 (KITTI's reflectance in [0, 1]); values beyond it saturate.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if scale is None:
        p99 = float(np.percentile(v, 99)) if len(v) else 1.0
        scale = p99 if p99 > 1.0 else 1.0
    # A square root spreads the many dim returns over more of the colormap.
    t = np.sqrt(np.clip(v / max(scale, 1e-9), 0.0, 1.0))
    return colormaps[cmap](0.15 + 0.85 * t)[:, :3]  # inferno's first 15 % is near black


def label_colours(labels: ArrayLike, label_names: Sequence[str] | None = None) -> NDArray[np.float64]:
    """(N, 3) RGB in [0, 1] for (N,) integer point labels (segmentation).

    With ``label_names`` a label ``i`` takes the colour of class ``label_names[i]``
    (:func:`class_colour`); without, ``tab20`` by index. Negative labels (ignored / unlabelled) and
    labels beyond ``label_names`` are grey.
    """
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    out = np.tile(np.asarray(_UNLABELLED), (len(labels), 1))
    if label_names is not None:
        table = np.array([class_colour(str(n)) for n in label_names]).reshape(-1, 3)
    else:
        table = np.asarray(colormaps["tab20"].colors)[:, :3]
        labels = np.where(labels >= 0, labels % len(table), labels)
    ok = (labels >= 0) & (labels < len(table))
    out[ok] = table[labels[ok]]
    return out


# --------------------------------------------------------------------------------------------------
# geometry helpers


# A wireframe: the 12 edges over box_corners' order (bottom 0-3, top 4-7), then the heading mark
# from the centre (index 8) to the centre of the front face (index 9).
_EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7], [8, 9]],
    dtype=np.int64,
)


def box_wireframes(boxes: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Line segments drawing boxes, with a heading mark.

    Args:
        boxes: (M, 7) ``[x, y, z, l, w, h, yaw]`` in any frame.

    Returns:
        ``(vertices (10 M, 3), lines (13 M, 2))``: for box ``m`` vertices ``10 m .. 10 m + 7`` are
        its corners (:func:`~perception.geometry.boxes.box_corners` order), ``10 m + 8`` its centre and
        ``10 m + 9`` the centre of its front face (+l along the heading); the lines are its 12 edges,
        then the heading mark from the centre to the front face.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    m = len(boxes)
    if m == 0:
        return np.zeros((0, 3)), np.zeros((0, 2), np.int64)
    corners = box_corners(boxes)  # (M, 8, 3)
    centre = boxes[:, :3]
    front = centre + 0.5 * boxes[:, 3:4] * np.stack(
        [np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(m)], axis=1
    )
    vertices = np.concatenate([corners, centre[:, None], front[:, None]], axis=1).reshape(-1, 3)
    lines = (_EDGES[None] + 10 * np.arange(m)[:, None, None]).reshape(-1, 2)
    return vertices, lines


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` (an encoded image) to ``path``: folders created, a temporary file renamed into
    place (a reader never sees half a file), the usual permissions (0666 less the umask)."""
    path = atomic_write_bytes(path, data, fsync=False)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def _numpy(value: Any) -> np.ndarray:
    """A NumPy array from an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


# --------------------------------------------------------------------------------------------------
# occupancy


@dataclass(kw_only=True)
class OccupancyGrid:
    """An occupancy grid over an axis-aligned range of the sensor frame.

    Attributes:
        values: (X, Y) bird's-eye or (X, Y, Z) float (probabilities in [0, 1]) or bool. Cell
            ``[i, j(, k)]`` covers ``x ∈ [x_min + i vx, x_min + (i + 1) vx)`` and likewise in y (and z);
            a 2D grid covers the whole z range.
        point_cloud_range: ``(x_min, y_min, z_min, x_max, y_max, z_max)`` metres, the grid's extent.
    """

    values: NDArray[np.floating] | NDArray[np.bool_]
    point_cloud_range: tuple[float, float, float, float, float, float]

    def __post_init__(self) -> None:
        self.values = _numpy(self.values)
        if self.values.ndim not in (2, 3) or 0 in self.values.shape:
            raise ValueError(f"occupancy values must be (X, Y) or (X, Y, Z), got {self.values.shape}")
        r = tuple(float(v) for v in np.asarray(self.point_cloud_range).reshape(-1))
        if len(r) != 6 or not (r[0] < r[3] and r[1] < r[4] and r[2] < r[5]):
            raise ValueError(f"point_cloud_range must be (x_min, y_min, z_min, x_max, y_max, z_max), got {r}")
        self.point_cloud_range = r  # type: ignore[assignment]

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """``(vx, vy, vz)`` metres; a 2D grid's vz is the whole z range."""
        r, shape = self.point_cloud_range, self.values.shape
        nz = shape[2] if len(shape) == 3 else 1
        return (r[3] - r[0]) / shape[0], (r[4] - r[1]) / shape[1], (r[5] - r[2]) / nz

    def bev(self) -> NDArray[np.float64]:
        """(X, Y) float64: the grid seen from above (the maximum over z of a 3D grid)."""
        v = self.values.astype(np.float64)
        return v.max(axis=2) if v.ndim == 3 else v

    def occupied(self, threshold: float = 0.5) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Cells with a value ≥ ``threshold``: ``(centres (K, 3) metres, values (K,))``.

        A 2D grid's cells are centred at mid-height of the range.
        """
        v = self.values.astype(np.float64)
        v3 = v[..., None] if v.ndim == 2 else v
        index = np.argwhere(v3 >= threshold)
        r, size = np.asarray(self.point_cloud_range), np.asarray(self.voxel_size)
        centres = r[:3] + (index + 0.5) * size
        return centres, v3[tuple(index.T)]


# --------------------------------------------------------------------------------------------------
# the scene


def _names(values: Any, n: int, what: str) -> NDArray[np.str_]:
    if values is None:
        return np.full(n, "Misc", dtype="<U16") if n else np.zeros(0, dtype="<U16")
    names = np.asarray(_numpy(values)).astype(str).reshape(-1)
    if len(names) != n:
        raise ValueError(f"{what}: {len(names)} names for {n} boxes")
    return names


@dataclass(kw_only=True)
class Scene:
    """One frame to draw: points, ground-truth and predicted boxes, optional occupancy or labels.

    All geometry is in the sensor frame (x forward, y left, z up, metres). Arrays may be given as any
    array-like or torch tensor; they are stored as NumPy.

    Attributes:
        points: (N, C ≥ 3) float32, x, y, z then the dataset's attributes.
        colour_by: point colours: ``"height"`` (z), ``"intensity"`` (column ``intensity_column``),
            ``"class"`` / ``"label"`` (``point_labels``), ``"prediction"`` (``pred_labels``),
            ``"error"`` (both: correct, wrong or ignored, :data:`~perception.viz.segmentation.ERROR_COLOURS`)
            or ``"uniform"``.
        point_labels: (N,) int64 per-point ground-truth labels (segmentation), -1 for none; needed by
            ``colour_by="class"``, ``"label"`` and ``"error"``.
        pred_labels: (N,) int64 per-point predicted labels; needed by ``"prediction"`` and ``"error"``.
        label_names: names of the label indices, for class colours (else ``tab20`` by index) and the
            legend.
        label_palette: (L, 3) RGB in [0, 1] of label indices 0..L-1, instead of colours by name (a
            segmentation scene's :func:`~perception.viz.segmentation.class_palette`); other labels grey.
        ignore_label: the label of points that are not scored (segmentation: training id 0); negative
            labels are never scored either.
        intensity_column: the column of ``points`` holding intensity (KITTI reflectance: 3).
        z_range: the heights the height colormap spans (metres).
        gt_boxes: (M, 7) float32 ground-truth boxes ``[x, y, z, l, w, h, yaw]``; gt_names: (M,) str.
        pred_boxes: (K, 7) float32 predicted boxes; pred_names: (K,) str; pred_scores: (K,) float32
            (1 where not given).
        occupancy: an optional :class:`OccupancyGrid` to overlay.
        frame_id: the frame's id, for titles.
    """

    points: NDArray[np.float32]
    colour_by: ColourMode = "height"
    point_labels: NDArray[np.int64] | None = None
    pred_labels: NDArray[np.int64] | None = None
    label_names: Sequence[str] | None = None
    label_palette: NDArray[np.float64] | None = None
    ignore_label: int = -1
    intensity_column: int = 3
    z_range: tuple[float, float] = HEIGHT_RANGE
    gt_boxes: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    gt_names: NDArray[np.str_] | None = None
    pred_boxes: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    pred_names: NDArray[np.str_] | None = None
    pred_scores: NDArray[np.float32] | None = None
    occupancy: OccupancyGrid | None = None
    frame_id: str = ""

    def __post_init__(self) -> None:
        self.points = np.asarray(_numpy(self.points), dtype=np.float32)
        if self.points.ndim != 2 or self.points.shape[1] < 3:
            raise ValueError(f"scene {self.frame_id}: points must be (N, >=3), got {self.points.shape}")
        self.gt_boxes = np.asarray(_numpy(self.gt_boxes), dtype=np.float32).reshape(-1, 7)
        self.pred_boxes = np.asarray(_numpy(self.pred_boxes), dtype=np.float32).reshape(-1, 7)
        self.gt_names = _names(self.gt_names, len(self.gt_boxes), "gt_names")
        self.pred_names = _names(self.pred_names, len(self.pred_boxes), "pred_names")
        k = len(self.pred_boxes)
        if self.pred_scores is None:
            self.pred_scores = np.ones(k, np.float32)
        self.pred_scores = np.asarray(_numpy(self.pred_scores), dtype=np.float32).reshape(-1)
        if len(self.pred_scores) != k:
            raise ValueError(f"scene {self.frame_id}: {len(self.pred_scores)} scores for {k} predictions")
        if self.colour_by not in _COLOUR_MODES:
            raise ValueError(f"colour_by must be one of {', '.join(_COLOUR_MODES)}, got {self.colour_by!r}")
        for name, what in (("point_labels", "point labels"), ("pred_labels", "predicted labels")):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(_numpy(value)).astype(np.int64).reshape(-1)
            if len(value) != len(self.points):
                raise ValueError(f"scene {self.frame_id}: {len(value)} {what} for {len(self.points)} points")
            setattr(self, name, value)
        if self.point_labels is None and self.colour_by in ("class", "label", "error"):
            raise ValueError(f"scene {self.frame_id}: colour_by={self.colour_by!r} needs point_labels")
        if self.pred_labels is None and self.colour_by in ("prediction", "error"):
            raise ValueError(f"scene {self.frame_id}: colour_by={self.colour_by!r} needs pred_labels")
        if self.label_palette is not None:
            self.label_palette = np.asarray(self.label_palette, dtype=np.float64).reshape(-1, 3)
        if self.colour_by == "intensity" and self.points.shape[1] <= self.intensity_column:
            raise ValueError(
                f"scene {self.frame_id}: colour_by='intensity' reads column {self.intensity_column}, "
                f"but points have {self.points.shape[1]} columns"
            )

    # ------------------------------------------------------------------------------------ derived

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    def point_colours(self) -> NDArray[np.float64]:
        """(N, 3) RGB in [0, 1], by ``colour_by``."""
        if self.colour_by == "height":
            return height_colours(self.points[:, 2], self.z_range)
        if self.colour_by == "intensity":
            return intensity_colours(self.points[:, self.intensity_column])
        if self.colour_by in ("class", "label"):
            assert self.point_labels is not None
            return self._label_rgb(self.point_labels)
        if self.colour_by == "prediction":
            assert self.pred_labels is not None
            return self._label_rgb(self.pred_labels)
        if self.colour_by == "error":
            from perception.viz.segmentation import ERROR_COLOURS

            table = np.array([ERROR_COLOURS[k] for k in ("correct", "wrong", "ignored")])
            return table[self.error_codes()]
        return np.tile(np.asarray(_UNIFORM), (self.num_points, 1))

    def _label_rgb(self, labels: NDArray[np.int64]) -> NDArray[np.float64]:
        if self.label_palette is None:
            return label_colours(labels, self.label_names)
        out = np.tile(np.asarray(_UNLABELLED), (len(labels), 1))
        ok = (labels >= 0) & (labels < len(self.label_palette))
        out[ok] = self.label_palette[labels[ok]]
        return out

    def _label_name(self, label: int) -> str:
        if label < 0 or label == self.ignore_label:
            return "ignored"
        if self.label_names is not None and label < len(self.label_names):
            return str(self.label_names[label])
        return str(label)

    def error_codes(self) -> NDArray[np.int64]:
        """(N,) per point: 0 prediction correct, 1 wrong, 2 ignored (ground truth ``ignore_label`` or
        negative). Needs ``point_labels`` and ``pred_labels``."""
        from perception.viz.segmentation import error_codes

        if self.point_labels is None or self.pred_labels is None:
            raise ValueError(f"scene {self.frame_id}: errors need point_labels and pred_labels")
        return error_codes(self.point_labels, self.pred_labels, self.ignore_label)

    def legend(self) -> list[tuple[str, tuple[float, float, float]]]:
        """``[(name, (r, g, b) in [0, 1]), ...]`` of the point colours shown, for a legend.

        By class (``"class"``, ``"label"``, ``"prediction"``): each label present, by index, named by
        ``label_names`` (``"ignored"`` for ``ignore_label`` and negative labels, listed last). By
        error: ``correct`` and ``wrong`` with their share of the scored points, and ``ignored``, those
        present. Other colourings: empty (a colormap, not classes).
        """
        if self.colour_by == "error":
            from perception.viz.segmentation import ERROR_COLOURS

            counts = np.bincount(self.error_codes(), minlength=3)
            scored = max(int(counts[0] + counts[1]), 1)
            entries = []
            for code, key in enumerate(("correct", "wrong", "ignored")):
                if counts[code]:
                    share = f" ({100.0 * counts[code] / scored:.1f} %)" if code < 2 else ""
                    entries.append((f"{key}{share}", ERROR_COLOURS[key]))
            return entries
        if self.colour_by in ("class", "label", "prediction"):
            labels = self.pred_labels if self.colour_by == "prediction" else self.point_labels
            assert labels is not None
            present = np.unique(labels)
            ignored = [int(v) for v in present if v < 0 or v == self.ignore_label]
            shown = [int(v) for v in present if v >= 0 and v != self.ignore_label] + ignored[:1]
            colours = self._label_rgb(np.asarray(shown, dtype=np.int64))
            return [
                (self._label_name(v), (float(c[0]), float(c[1]), float(c[2])))
                for v, c in zip(shown, colours, strict=True)
            ]
        return []

    def view_range(self, margin: float = 2.0, max_range: float = 80.0) -> tuple[float, float, float, float]:
        """``(x_min, y_min, x_max, y_max)`` metres framing the scene from above.

        The 1st–99th percentiles of the points within ``max_range`` of the sensor in x and y, grown to
        hold every box and the occupancy grid, plus ``margin``; at least 10 m a side.
        """
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        xy = self.points[:, :2].astype(np.float64)
        xy = xy[np.abs(xy).max(axis=1) <= max_range] if len(xy) else xy
        if len(xy):
            lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
        boxes = np.concatenate([self.gt_boxes, self.pred_boxes]).astype(np.float64)
        if len(boxes):
            corners = box_corners(boxes)[:, :4, :2].reshape(-1, 2)
            lo, hi = np.minimum(lo, corners.min(axis=0)), np.maximum(hi, corners.max(axis=0))
        if self.occupancy is not None:
            r = self.occupancy.point_cloud_range
            lo, hi = np.minimum(lo, [r[0], r[1]]), np.maximum(hi, [r[3], r[4]])
        if not np.isfinite(lo).all():
            lo, hi = np.full(2, -10.0), np.full(2, 10.0)
        lo, hi = lo - margin, hi + margin
        centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 5.0)
        return (
            float(centre[0] - half[0]),
            float(centre[1] - half[1]),
            float(centre[0] + half[0]),
            float(centre[1] + half[1]),
        )

    # ------------------------------------------------------------------------------- derived scenes

    def with_score_threshold(self, threshold: float) -> Scene:
        """A copy keeping the predictions whose score is ≥ ``threshold``."""
        assert self.pred_scores is not None and self.pred_names is not None
        keep = self.pred_scores >= threshold
        return replace(
            self,
            pred_boxes=self.pred_boxes[keep],
            pred_names=self.pred_names[keep],
            pred_scores=self.pred_scores[keep],
        )

    def subsample(self, max_points: int, seed: int = 0) -> Scene:
        """A copy with at most ``max_points`` points, drawn uniformly without replacement (in order)."""
        if self.num_points <= max_points:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(self.num_points, max_points, replace=False))
        labels = None if self.point_labels is None else self.point_labels[keep]
        predicted = None if self.pred_labels is None else self.pred_labels[keep]
        return replace(self, points=self.points[keep], point_labels=labels, pred_labels=predicted)

    # -------------------------------------------------------------------------------- constructors

    @classmethod
    def from_frame(
        cls,
        frame: Frame,
        pred_boxes: ArrayLike | None = None,
        pred_names: ArrayLike | None = None,
        pred_scores: ArrayLike | None = None,
        **kwargs: Any,
    ) -> Scene:
        """The scene of any reader's :class:`~perception.structures.Frame`: its points and labelled
        boxes as ground truth, and optional predictions ((K, 7) lidar boxes, (K,) names and scores).
        ``kwargs`` are :class:`Scene` fields (``colour_by``, ``occupancy``, ...)."""
        return cls(
            points=frame.points,
            gt_boxes=frame.boxes,
            gt_names=frame.names,
            pred_boxes=np.zeros((0, 7), np.float32) if pred_boxes is None else pred_boxes,
            pred_names=pred_names,
            pred_scores=pred_scores,
            frame_id=str(frame.frame_id),
            **kwargs,
        )

    @classmethod
    def from_segmentation(
        cls,
        points: ArrayLike,
        labels: ArrayLike | None = None,
        predictions: ArrayLike | None = None,
        label_map: LabelMap | None = None,
        *,
        colour_by: ColourMode = "label",
        frame_id: str = "",
        **kwargs: Any,
    ) -> Scene:
        """The scene of a segmentation scan: points with ground-truth and / or predicted training ids.

        Args:
            points: (N, ≥3) the scan's points (x, y, z, remission, ...).
            labels: (N,) ground-truth training ids 0..K (0 ignored), or None.
            predictions: (N,) predicted training ids 1..K (as the segmentation task returns them), or None.
            label_map: the class map (a :class:`~perception.structures.segmentation.LabelMap`): its class
                names name the legend, and class ``i`` takes the official SemanticKITTI colour of its
                ``learning_map_inv`` raw id (:func:`~perception.viz.segmentation.class_palette`). None:
                ``tab20`` colours by index and the ids as names.
            colour_by: ``"label"`` (ground truth), ``"prediction"``, ``"error"``, ``"height"``, ...
            frame_id: the scan, ``"08/000000"``.
            kwargs: other :class:`Scene` fields.
        """
        palette, names = None, None
        if label_map is not None:
            from perception.viz.segmentation import class_palette

            palette, names = class_palette(label_map), ("ignored", *label_map.class_names)
        return cls(
            points=points,
            point_labels=labels,
            pred_labels=predictions,
            label_names=names,
            label_palette=palette,
            ignore_label=0,
            colour_by=colour_by,
            frame_id=frame_id,
            **kwargs,
        )

    @classmethod
    def from_kitti(cls, frame: KittiFrame, predictions: KittiObjects | None = None, **kwargs: Any) -> Scene:
        """The scene of a KITTI frame, with a KITTI result file's objects as predictions.

        The predictions' camera boxes are converted to the lidar frame with the frame's calibration;
        DontCare rows are dropped, and scores are 1 where the file has none.
        """
        if predictions is None or len(predictions) == 0:
            return cls.from_frame(frame, **kwargs)
        predictions = predictions.select(predictions.names != "DontCare")
        boxes = frame.calib.boxes_camera_to_lidar(predictions.boxes_camera).astype(np.float32)
        return cls.from_frame(frame, boxes, predictions.names, predictions.scores, **kwargs)

    @classmethod
    def from_batch(
        cls,
        batch: Batch,
        index: int = 0,
        detections: Sequence[Any] | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Scene:
        """Sample ``index`` of a model's :class:`~perception.structures.Batch`, with its detections.

        Args:
            batch: the batch (tensors on any device).
            index: which sample.
            detections: the model's per-sample detections (objects with ``boxes`` (K, 7), ``scores``
                (K,), ``labels`` (K,)), e.g. ``model.predict(model(batch), batch)``.
            class_names: names of the label indices (else the indices as text).
        """

        def names(labels: Any) -> NDArray[np.str_]:
            labels = _numpy(labels).astype(np.int64).reshape(-1)
            if class_names is None:
                return labels.astype(str)
            return np.asarray(class_names, dtype=str)[labels] if len(labels) else np.zeros(0, "<U16")

        mask = _numpy(batch.batch_index) == index
        det = detections[index] if detections is not None else None
        return cls(
            points=_numpy(batch.points)[mask],
            gt_boxes=batch.boxes[index],
            gt_names=names(batch.labels[index]),
            pred_boxes=np.zeros((0, 7), np.float32) if det is None else det.boxes,
            pred_names=None if det is None else names(det.labels),
            pred_scores=None if det is None else det.scores,
            frame_id=str(batch.frame_ids[index]),
            **kwargs,
        )
