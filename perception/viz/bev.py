"""Bird's-eye-view plots and precision–recall curves with matplotlib (headless: the Agg backend).

- :func:`plot_bev` / :func:`save_bev`: points (by height, or any per-point colours), ground-truth boxes
  (solid) and predictions (dashed, with their scores), and an occupancy heatmap, seen from above.
- :func:`plot_scene` / :func:`save_scene`: the same for a :class:`~perception.viz.scene.Scene`; a
  segmentation scene's classes (or error kinds) get a legend of their colours beside the plot.
- :func:`plot_pr_curves` / :func:`save_pr_curves`: precision–recall curves per class / difficulty.

The plot's horizontal axis is the sensor's -y (right is right), its vertical axis x (forward is up).
PNGs are written to a temporary file and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike, NDArray

from perception.geometry.boxes import boxes_bev_corners
from perception.viz.scene import CLASS_COLOURS, HEIGHT_RANGE, OccupancyGrid, Scene, atomic_write, class_colour

__all__ = [
    "CLASS_COLOURS",
    "R40_RECALL",
    "ap_r40",
    "plot_bev",
    "plot_pr_curves",
    "plot_scene",
    "save_bev",
    "save_figure",
    "save_pr_curves",
    "save_scene",
]

R40_RECALL: NDArray[np.float64] = np.linspace(0.0, 1.0, 41)
"""The 41 recall points of the KITTI devkit's sampled precision (R40 averages all but recall 0)."""


def save_figure(fig: Figure, path: str | os.PathLike, close: bool = True) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders created; atomically) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    if close:
        plt.close(fig)
    return atomic_write(path, buffer.getvalue())


def _draw_boxes(
    ax: Axes,
    boxes: ArrayLike,
    names: ArrayLike | None,
    scores: ArrayLike | None,
    seen: set[str],
    dashed: bool,
) -> None:
    """Box outlines with a heading tick (centre → front face); scores written at the top-left corner."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    if not len(boxes):
        return
    names = np.asarray(names if names is not None else ["Misc"] * len(boxes)).astype(str)
    score_values = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    style = "--" if dashed else "-"
    for i, quad in enumerate(boxes_bev_corners(boxes)):
        name = str(names[i])
        colour = CLASS_COLOURS.get(name, class_colour(name))
        key = f"{name} (pred)" if dashed else name
        label = None if key in seen else key
        seen.add(key)
        closed = np.vstack([quad, quad[:1]])
        ax.plot(-closed[:, 1], closed[:, 0], color=colour, lw=1.0, ls=style, label=label)
        front = quad[[0, 3]].mean(axis=0)  # centre of the front face
        ax.plot([-boxes[i, 1], -front[1]], [boxes[i, 0], front[0]], color=colour, lw=1.0, ls=style)
        if score_values is not None:
            ax.text(
                -quad[:, 1].min(),
                quad[:, 0].max(),
                f"{score_values[i]:.2f}",
                fontsize=6,
                color=colour if dashed else "black",
                clip_on=True,
            )


def _draw_occupancy(ax: Axes, occupancy: OccupancyGrid, alpha: float) -> None:
    """The grid from above as a heatmap (magma, 0 → 1); empty cells transparent."""
    bev = occupancy.bev()
    x0, y0, _, x1, y1, _ = occupancy.point_cloud_range
    # Rows follow x upwards; columns follow -y, so the grid's y axis is flipped.
    image = np.ma.masked_less_equal(bev[:, ::-1], 0.0)
    handle = ax.imshow(
        image,
        origin="lower",
        extent=(-y1, -y0, x0, x1),
        cmap="magma",
        vmin=0.0,
        vmax=max(1.0, float(bev.max())),
        alpha=alpha,
        interpolation="nearest",
        zorder=0,
    )
    ax.figure.colorbar(handle, ax=ax, fraction=0.03, pad=0.01, label="occupancy")


def plot_bev(
    points: ArrayLike,
    boxes: ArrayLike | None = None,
    names: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    xlim: tuple[float, float] = (-20.0, 80.0),
    ylim: tuple[float, float] = (-40.0, 40.0),
    title: str | None = None,
    max_points: int = 200_000,
    *,
    pred_boxes: ArrayLike | None = None,
    pred_names: ArrayLike | None = None,
    pred_scores: ArrayLike | None = None,
    score_threshold: float = 0.0,
    point_colours: ArrayLike | None = None,
    occupancy: OccupancyGrid | None = None,
    occupancy_alpha: float = 0.6,
    legend: Sequence[tuple[str, Sequence[float]]] | None = None,
) -> Figure:
    """Draw points (coloured by height) and boxes seen from above.

    Args:
        points: (N, ≥3) points in the sensor frame (x forward, y left, metres).
        boxes: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``; drawn as outlines with a heading tick.
        names: (M,) class names, for colours and the legend.
        scores: (M,) scores, written beside each box (predictions).
        xlim, ylim: the window, metres. The plot's x axis is the sensor's y (left is left).
        max_points: points beyond it are subsampled (uniformly, fixed seed).
        pred_boxes: (K, 7) predicted boxes, drawn dashed in their class colours with their scores.
        pred_names: (K,) class names; pred_scores: (K,) scores (predictions below
            ``score_threshold`` are left out).
        point_colours: (N, 3) RGB in [0, 1] per point, instead of the height colormap.
        occupancy: a grid to overlay as a heatmap (a 3D grid by its maximum over z).
        occupancy_alpha: the heatmap's opacity.
        legend: ``[(name, (r, g, b) in [0, 1]), ...]``: a legend of point colours (segmentation
            classes), drawn beside the plot (outside the axes, so it hides no point).
    """
    pts = np.asarray(points)[:, :3]
    colours = None if point_colours is None else np.asarray(point_colours, dtype=np.float64).reshape(-1, 3)
    if colours is not None and len(colours) != len(pts):
        raise ValueError(f"point_colours has {len(colours)} rows for {len(pts)} points")
    if len(pts) > max_points:
        keep = np.random.default_rng(0).choice(len(pts), max_points, replace=False)
        pts = pts[keep]
        colours = None if colours is None else colours[keep]
    aspect = (xlim[1] - xlim[0]) / (ylim[1] - ylim[0])
    fig, ax = plt.subplots(figsize=(8 + (2.0 if legend else 0.0), 8 * aspect), dpi=120)
    if occupancy is not None:
        _draw_occupancy(ax, occupancy, occupancy_alpha)
    # Sensor y points left, so plot -y on the horizontal axis to keep left on the left.
    if colours is None:
        lo, hi = HEIGHT_RANGE
        ax.scatter(-pts[:, 1], pts[:, 0], c=pts[:, 2], s=0.2, cmap="viridis", vmin=lo, vmax=hi, linewidths=0)
    else:
        ax.scatter(-pts[:, 1], pts[:, 0], c=colours, s=0.2, linewidths=0)
    seen: set[str] = set()
    _draw_boxes(ax, boxes if boxes is not None else np.zeros((0, 7)), names, scores, seen, dashed=False)
    if pred_boxes is not None:
        pred = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 7)
        pscores = (
            np.ones(len(pred)) if pred_scores is None else np.asarray(pred_scores, np.float64).reshape(-1)
        )
        keep = pscores >= score_threshold
        pnames = None if pred_names is None else np.asarray(pred_names).reshape(-1)[keep]
        _draw_boxes(ax, pred[keep], pnames, pscores[keep], seen, dashed=True)
    if seen:
        box_legend = ax.legend(loc="upper right", fontsize=7)
        if legend:
            ax.add_artist(box_legend)  # a second legend would replace it
    if legend:
        patches = [Patch(facecolor=tuple(rgb), edgecolor="none", label=str(name)) for name, rgb in legend]
        ax.legend(
            handles=patches, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False,
            borderaxespad=0.0, handlelength=1.2,
        )  # fmt: skip
    ax.set_xlim(-ylim[1], -ylim[0])
    ax.set_ylim(*xlim)
    ax.set_aspect("equal")
    ax.set_xlabel("-y (m, right)")
    ax.set_ylabel("x (m, forward)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_bev(path: str | os.PathLike, *args: Any, **kwargs: Any) -> Path:
    """:func:`plot_bev` written to a PNG at ``path`` (folders created)."""
    return save_figure(plot_bev(*args, **kwargs), path)


def plot_scene(
    scene: Scene,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
    score_threshold: float = 0.0,
    **kwargs: Any,
) -> Figure:
    """:func:`plot_bev` of a :class:`Scene`: its points in its colours, ground truth, predictions
    (dashed, with scores) and occupancy.

    ``xlim`` / ``ylim`` default to :meth:`Scene.view_range`; the title to the frame id. Other keyword
    arguments go to :func:`plot_bev`.
    """
    if xlim is None or ylim is None:
        x0, y0, x1, y1 = scene.view_range()
        xlim, ylim = xlim or (x0, x1), ylim or (y0, y1)
    return plot_bev(
        scene.points,
        scene.gt_boxes,
        scene.gt_names,
        None,
        xlim,
        ylim,
        title if title is not None else (f"frame {scene.frame_id}" if scene.frame_id else None),
        pred_boxes=scene.pred_boxes,
        pred_names=scene.pred_names,
        pred_scores=scene.pred_scores,
        score_threshold=score_threshold,
        point_colours=(
            None if scene.colour_by == "height" and scene.z_range == HEIGHT_RANGE else scene.point_colours()
        ),
        occupancy=scene.occupancy,
        **({"legend": scene.legend()} | kwargs),
    )


def save_scene(path: str | os.PathLike, scene: Scene, **kwargs: Any) -> Path:
    """:func:`plot_scene` written to a PNG at ``path`` (folders created; atomically)."""
    return save_figure(plot_scene(scene, **kwargs), path)


# --------------------------------------------------------------------------------------------------
# precision-recall curves


def ap_r40(recall: ArrayLike, precision: ArrayLike) -> float:
    """AP in percent over the 40 recall points 1/40 … 1 (KITTI's R40), interpolated: at each point the
    highest precision at that recall or above (0 where the curve never gets there)."""
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    total = 0.0
    for r in R40_RECALL[1:]:
        reached = precision[recall >= r - 1e-9]
        total += float(reached.max()) if len(reached) else 0.0
    return total / 40.0 * 100.0


def _curve(name: str, value: Any) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if isinstance(value, (int, float, np.number)):
        raise ValueError(
            f"curve {name!r} is a number ({value}), not a curve: perception.eval.kitti.evaluate returns AP "
            "values only. Pass precision arrays (41 values at the R40 recall points) or (recall, precision) pairs"
        )
    if isinstance(value, tuple) and len(value) == 2:
        recall, precision = (np.asarray(v, dtype=np.float64).reshape(-1) for v in value)
    else:
        array = np.asarray(value, dtype=np.float64)
        if array.ndim == 2 and array.shape[0] == 2:
            recall, precision = array
        elif array.ndim == 1:
            precision = array
            recall = np.linspace(0.0, 1.0, len(array)) if len(array) > 1 else np.zeros(1)
        else:
            raise ValueError(
                f"curve {name!r}: expected (P,) precision or (recall, precision), got shape {array.shape}"
            )
    if recall.shape != precision.shape:
        raise ValueError(f"curve {name!r}: {len(recall)} recall values but {len(precision)} precision values")
    return recall, precision


def plot_pr_curves(
    curves: Mapping[str, Any],
    title: str | None = None,
    percent: bool = False,
    show_ap: bool = True,
) -> Figure:
    """Precision–recall curves, one line each.

    Args:
        curves: name (e.g. ``"Car 3d moderate"``) → either a (P,) precision array sampled at ``P``
            evenly spaced recall points from 0 to 1 (the KITTI devkit's 41 points, :data:`R40_RECALL`),
            or a ``(recall (P,), precision (P,))`` pair (or a (2, P) array).
            (:class:`perception.eval.kitti.KittiAP` leaves such curves in ``last_curves`` after
            ``compute()``; an AP number here is an error that says so.)
        title: the plot's title.
        percent: precision values are in percent (0–100) rather than [0, 1].
        show_ap: write each curve's R40 AP (:func:`ap_r40`) in the legend.
    """
    if not curves:
        raise ValueError("plot_pr_curves: no curves given")
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    styles = ("-", "--", ":", "-.")
    uses: dict[str, int] = {}  # curves of one class share its colour and differ in line style
    for i, (name, value) in enumerate(curves.items()):
        recall, precision = _curve(name, value)
        if percent:
            precision = precision / 100.0
        label = f"{name} (AP {ap_r40(recall, precision):.1f})" if show_ap else str(name)
        first = str(name).replace("_", " ").replace("/", " ").split()[0] if str(name).strip() else ""
        colour = CLASS_COLOURS[first] if first in CLASS_COLOURS else f"C{i % 10}"
        style = styles[uses.get(colour, 0) % len(styles)]
        uses[colour] = uses.get(colour, 0) + 1
        ax.plot(recall, precision, color=colour, ls=style, lw=1.2, label=label)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_pr_curves(path: str | os.PathLike, curves: Mapping[str, Any], **kwargs: Any) -> Path:
    """:func:`plot_pr_curves` written to a PNG at ``path`` (folders created; atomically)."""
    return save_figure(plot_pr_curves(curves, **kwargs), path)
