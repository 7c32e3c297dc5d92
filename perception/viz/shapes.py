"""What PointNet learned, drawn as in the paper's Fig. 7, and plain point sets coloured by part.

- :func:`unit_grid`: dense candidate points in the unit cube ([-1, 1]³, the paper's edge-length-2 cube)
  or the unit ball, the space a normalised shape lives in.
- :func:`critical_sets`: for one shape and a (trained, eval-mode) PointNet, the critical point set
  ``C_S`` (:func:`~perception.models.pointnet.critical_point_indices`) and the upper-bound shape
  ``N_S``: the grid points whose per-point features stay below the shape's global feature in every
  channel (:func:`~perception.models.pointnet.upper_bound_mask`, the shape's own T-Net transforms
  held fixed), so that any of them could be added without changing the global feature.
- :func:`plot_critical_sets` / :func:`save_critical_sets`: three 3D panels, the input point set, its
  critical points and its upper-bound shape.
- :func:`plot_point_set` / :func:`save_point_set`: one point set, coloured by part label (part
  segmentation) or by height.

Shapes are drawn in their own frame (z up) with equal axes over the unit cube. Matplotlib's Agg
canvas, no pyplot state; PNGs are written to a temporary file and renamed, so a reader never sees half
a file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike, NDArray
from torch import nn

from perception.models.pointnet import critical_point_indices, upper_bound_mask
from perception.viz.scene import atomic_write

__all__ = [
    "CriticalSets",
    "critical_sets",
    "part_colours",
    "plot_critical_sets",
    "plot_point_set",
    "save_critical_sets",
    "save_point_set",
    "unit_grid",
]

INPUT_COLOUR = "#4c72b0"
CRITICAL_COLOUR = "#c44e52"


def unit_grid(resolution: int = 40, region: Literal["cube", "sphere"] = "cube") -> NDArray[np.float32]:
    """(M, 3) float32 nodes of a regular ``resolution``³ grid over [-1, 1]³ (``linspace(-1, 1,
    resolution)`` per axis, the faces included); ``sphere`` keeps those within the unit ball."""
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    if region not in ("cube", "sphere"):
        raise ValueError(f"region must be cube or sphere, got {region!r}")
    axis = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    if region == "sphere":
        grid = grid[np.linalg.norm(grid, axis=1) <= 1.0 + 1e-6]
    return np.ascontiguousarray(grid)


@dataclass
class CriticalSets:
    """One shape and what a PointNet learned of it.

    Attributes:
        points: (N, C) float32, the shape (x, y, z first).
        critical: (K,) int64 sorted indices into ``points``: the critical point set, K ≤ the global
            feature's width (1024).
        upper_bound: (U, 3) float32 candidate points in the upper-bound shape.
        num_candidates: M, the candidates tested.
    """

    points: NDArray[np.float32]
    critical: NDArray[np.int64]
    upper_bound: NDArray[np.float32]
    num_candidates: int

    @property
    def critical_points(self) -> NDArray[np.float32]:
        """(K, C) the critical points themselves."""
        return self.points[self.critical]


def critical_sets(
    model: nn.Module,
    points: ArrayLike | torch.Tensor,
    candidates: ArrayLike | torch.Tensor | None = None,
    *,
    resolution: int = 40,
    region: Literal["cube", "sphere"] = "cube",
    chunk: int = 8192,
) -> CriticalSets:
    """The critical point set and the upper-bound shape of one shape.

    Args:
        model: a PointNet (:class:`~perception.models.pointnet.PointNetClassifier`, ``...PartSegmenter``
            or ``...Features``) in eval mode; run without gradients on its own device.
        points: (N, C) one shape.
        candidates: (M, 3) or (M, C) points to test for the upper bound; default
            :func:`unit_grid` (``resolution``, ``region``).
        chunk: candidates per forward pass.
    """
    device = next(model.parameters()).device
    shape = _tensor(points, device)
    if shape.ndim != 2:
        raise ValueError(f"points must be one shape (N, C), got {tuple(shape.shape)}")
    if candidates is None:
        candidates = unit_grid(resolution, region)
    grid = _tensor(candidates, device)
    critical = critical_point_indices(model, shape)[0]
    inside = upper_bound_mask(model, shape, grid, chunk=chunk)
    return CriticalSets(
        points=shape.cpu().numpy(),
        critical=critical.cpu().numpy().astype(np.int64),
        upper_bound=grid[inside][:, :3].cpu().numpy(),
        num_candidates=len(grid),
    )


def _tensor(values: ArrayLike | torch.Tensor, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(values):
        values = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return values.to(device=device, dtype=torch.float32)


def _subsample(points: NDArray, max_points: int | None, seed: int = 0) -> NDArray:
    """At most ``max_points`` rows, the same ones every time (a drawing, not a statistic)."""
    if max_points is None or len(points) <= max_points:
        return points
    keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
    return points[keep]


def _setup_axes(ax: Axes, title: str, extent: float) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_zlim(-extent, extent)
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=20, azim=-60)
    ax.set_xlabel("x", labelpad=-8)
    ax.set_ylabel("y", labelpad=-8)
    ax.set_zlabel("z", labelpad=-8)
    ax.tick_params(labelsize=6, pad=-2)


def _extent(*clouds: NDArray) -> float:
    """Half the side of a centred cube holding every cloud (at least the unit cube)."""
    reach = [float(np.abs(c[:, :3]).max()) for c in clouds if len(c)]
    return max([1.0, *reach]) * 1.02


def plot_critical_sets(
    sets: CriticalSets,
    title: str | None = None,
    max_points: int | None = 6000,
    size: tuple[float, float] = (13.5, 4.8),
    dpi: int = 100,
) -> Figure:
    """Three 3D panels: the input point set, its critical points, its upper-bound shape.

    Args:
        sets: from :func:`critical_sets`.
        title: the figure's title (e.g. the shape id and its predicted class).
        max_points: draw at most this many points per panel (the upper bound of a 40³ grid can hold
            tens of thousands; counts in the titles are the full ones).
    """
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    xyz = sets.points[:, :3]
    critical = xyz[sets.critical]
    upper = sets.upper_bound
    extent = _extent(xyz, upper)
    panels = (
        (xyz, INPUT_COLOUR, f"input point set ({len(xyz)})"),
        (critical, CRITICAL_COLOUR, f"critical points C_S ({len(critical)})"),
        (upper, None, f"upper-bound shape N_S ({len(upper)} of {sets.num_candidates})"),
    )
    for i, (cloud, colour, label) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        shown = _subsample(cloud, max_points)
        if len(shown) and i == 2:  # a volume: coloured by height so that its depth reads
            dot = 3.0 if len(shown) > 3000 else 7.0
            ax.scatter(*shown.T, s=dot, c=shown[:, 2], cmap="viridis", alpha=0.6, linewidths=0)
        elif len(shown):
            ax.scatter(*shown.T, s=4.0 if i == 0 else 9.0, c=colour, alpha=0.9, linewidths=0)
        _setup_axes(ax, label, extent)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.88, wspace=0.02)
    return fig


def _png(fig: Figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


def save_critical_sets(
    path: str | os.PathLike, sets: CriticalSets, title: str | None = None, **kwargs
) -> Path:
    """Write :func:`plot_critical_sets`'s figure as a PNG at ``path`` (folders created; atomically)."""
    return _png(plot_critical_sets(sets, title, **kwargs), path)


def part_colours(num: int) -> NDArray[np.float64]:
    """(num, 4) RGBA colours for part ids 0..num-1: tab10 up to 10 parts, tab20 up to 20, then a
    repeating cycle of tab20 (ShapeNet-part's 50 global ids; a shape holds at most 6)."""
    from matplotlib import colormaps

    base = colormaps["tab10" if num <= 10 else "tab20"]
    colours = base.colors if isinstance(base, ListedColormap) else base(np.linspace(0, 1, 20))
    return np.asarray([(*colours[i % len(colours)][:3], 1.0) for i in range(num)], dtype=np.float64)


def plot_point_set(
    points: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    names: Sequence[str] | None = None,
    title: str | None = None,
    max_points: int | None = None,
    size: tuple[float, float] = (5.5, 5.0),
    dpi: int = 100,
) -> Figure:
    """One point set in 3D: coloured by ``labels`` ((N,) int part ids, with a legend naming the parts
    present, by ``names[id]`` where given) or, without labels, by height.

    Args:
        points: (N, ≥3) x, y, z first.
        labels: (N,) int, or None.
        names: the label names, indexed by label.
        title: the panel's title.
        max_points: draw at most this many points.
    """
    cloud = np.asarray(points, dtype=np.float32)
    if cloud.ndim != 2 or cloud.shape[1] < 3:
        raise ValueError(f"points must be (N, >=3), got {cloud.shape}")
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1, projection="3d")
    keep = np.arange(len(cloud))
    if max_points is not None and len(cloud) > max_points:
        keep = _subsample(keep, max_points)
    xyz = cloud[keep, :3]
    if labels is None:
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], s=5, c=xyz[:, 2], cmap="viridis", linewidths=0)
    else:
        ids = np.asarray(labels).astype(np.int64).reshape(-1)
        if ids.shape != (len(cloud),):
            raise ValueError(f"labels must be ({len(cloud)},), got {ids.shape}")
        if len(ids) and ids.min() < 0:
            raise ValueError("labels must be non-negative part ids")
        present = np.unique(ids)
        palette = part_colours(int(present.max()) + 1 if len(present) else 1)
        shown = ids[keep]
        ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], s=5, c=palette[shown], linewidths=0)
        handles = [
            Line2D([], [], marker="o", linestyle="", color=palette[p], label=_label_name(p, names))
            for p in present
        ]
        ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False)
    _setup_axes(ax, title or f"{len(cloud)} points", _extent(cloud))
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=0.92)
    return fig


def _label_name(label: int, names: Sequence[str] | None) -> str:
    if names is not None and 0 <= label < len(names):
        return f"{label}: {names[label]}"
    return f"part {label}"


def save_point_set(
    path: str | os.PathLike, points: ArrayLike, labels: ArrayLike | None = None, **kwargs
) -> Path:
    """Write :func:`plot_point_set`'s figure as a PNG at ``path`` (folders created; atomically)."""
    return _png(plot_point_set(points, labels, **kwargs), path)
