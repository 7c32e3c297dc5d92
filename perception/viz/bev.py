"""Bird's-eye-view plots with matplotlib (headless: the Agg backend, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from perception.geometry.boxes import boxes_bev_corners

__all__ = ["CLASS_COLOURS", "plot_bev", "save_bev"]

CLASS_COLOURS: dict[str, str] = {
    "Car": "tab:red",
    "Van": "tab:pink",
    "Truck": "tab:brown",
    "Pedestrian": "tab:green",
    "Person_sitting": "tab:olive",
    "Cyclist": "tab:blue",
    "Tram": "tab:purple",
    "Misc": "tab:gray",
}


def plot_bev(
    points: ArrayLike,
    boxes: ArrayLike | None = None,
    names: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    xlim: tuple[float, float] = (-20.0, 80.0),
    ylim: tuple[float, float] = (-40.0, 40.0),
    title: str | None = None,
    max_points: int = 200_000,
) -> Figure:
    """Draw points (coloured by height) and boxes seen from above.

    Args:
        points: (N, ≥3) points in the sensor frame (x forward, y left, metres).
        boxes: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``; drawn as outlines with a heading tick.
        names: (M,) class names, for colours and the legend.
        scores: (M,) scores, written beside each box (predictions).
        xlim, ylim: the window, metres. The plot's x axis is the sensor's y (left is left).
    """
    pts = np.asarray(points)[:, :3]
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
    fig, ax = plt.subplots(figsize=(8, 8 * (xlim[1] - xlim[0]) / (ylim[1] - ylim[0])), dpi=120)
    # Sensor y points left, so plot -y on the horizontal axis to keep left on the left.
    ax.scatter(-pts[:, 1], pts[:, 0], c=pts[:, 2], s=0.2, cmap="viridis", vmin=-2.5, vmax=1.5, linewidths=0)
    if boxes is not None and len(boxes):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
        names = np.asarray(names if names is not None else ["Misc"] * len(boxes))
        seen: set[str] = set()
        for i, quad in enumerate(boxes_bev_corners(boxes)):
            colour = CLASS_COLOURS.get(str(names[i]), "black")
            label = None if names[i] in seen else str(names[i])
            seen.add(str(names[i]))
            closed = np.vstack([quad, quad[:1]])
            ax.plot(-closed[:, 1], closed[:, 0], color=colour, lw=1.0, label=label)
            front = quad[[0, 3]].mean(axis=0)  # centre of the front face
            ax.plot([-boxes[i, 1], -front[1]], [boxes[i, 0], front[0]], color=colour, lw=1.0)
            if scores is not None:
                ax.text(
                    -quad[:, 1].min(), quad[:, 0].max(), f"{float(np.asarray(scores)[i]):.2f}", fontsize=6
                )
        ax.legend(loc="upper right", fontsize=7)
    ax.set_xlim(-ylim[1], -ylim[0])
    ax.set_ylim(*xlim)
    ax.set_aspect("equal")
    ax.set_xlabel("-y (m, right)")
    ax.set_ylabel("x (m, forward)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_bev(path: str | os.PathLike, *args, **kwargs) -> Path:
    """:func:`plot_bev` written to a PNG at ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_bev(*args, **kwargs)
    fig.savefig(path)
    plt.close(fig)
    return path
