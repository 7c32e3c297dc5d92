"""Occupancy-flow forecasts seen from above: true and predicted grids, flow arrows, animations.

- :func:`render_waypoint`: one waypoint as a row of panels, the true grid beside the forecast
  (and, when asked, the label baselines'), with flow arrows, the ego and the current sweep.
- :func:`bev_strip`: every waypoint at once: one column per waypoint, rows truth, model, baselines.
- :func:`forecast_frames`, :func:`gif_bytes`, :func:`write_gif`, :func:`save_occupancy`: the
  waypoints as an animated GIF (Pillow) and the strip as a PNG, written atomically. There is no MP4
  writer: neither imageio nor ffmpeg is installed, and a GIF plays in browsers and in W&B as it is.
- :func:`sample_targets`, :func:`sample_forecast`, :func:`sample_points`: one sample of a batch's
  torch tensors (leading B axis) as the NumPy values the renderers take.

Panels are drawn in grid coordinates, as :class:`~perception.structures.occupancy.OccupancyGrid` lays
the grids out: ego heading up, column ``-y · ppm + ego_col``, row ``-x · ppm + ego_row``. Each cell is a
block of pixels (nearest), so :func:`cell_pixel` says where a cell lands in an image. Colours
(:data:`OCCUPANCY_COLOURS`): vehicles, pedestrians and cyclists seen in the history, and occluded
agents of any class; truth cells take the full colour, forecast cells the colour in proportion to
the probability (white at 0). Flow arrows run from where a cell's content was at the previous
waypoint to the cell (the backward flow reversed) on a subsample of the cells a vehicle occupies
(truth) or probably occupies (p > 0.5, forecasts).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from numpy.typing import NDArray
from PIL import Image

from perception.structures.occupancy import OccupancyForecast, OccupancyGrid, OccupancyTargets
from perception.viz.scene import _numpy, atomic_write

__all__ = [
    "OCCUPANCY_COLOURS",
    "PANEL_WIDTH",
    "TITLE_HEIGHT",
    "bev_strip",
    "cell_pixel",
    "forecast_frames",
    "gif_bytes",
    "render_waypoint",
    "sample_forecast",
    "sample_points",
    "sample_targets",
    "save_occupancy",
    "write_gif",
]

OCCUPANCY_COLOURS: dict[str, tuple[float, float, float]] = {
    "vehicle": (0.12, 0.47, 0.71),
    "pedestrian": (0.17, 0.63, 0.17),
    "cyclist": (0.58, 0.40, 0.74),
    "occluded": (1.0, 0.50, 0.05),
}
"""RGB in [0, 1] of observed vehicles, pedestrians, cyclists and of occluded agents (any class)."""

PANEL_WIDTH = 256
"""Default width of one panel, pixels (its height follows the grid's aspect)."""

TITLE_HEIGHT = 24
"""Pixels of the title band above each panel's grid."""

LEGEND_HEIGHT = 40
"""Pixels of the legend band under every rendered image."""

POINT_COLOUR = (0.55, 0.55, 0.55)
_DPI = 100
_LAYERS = (("vehicle", 0), ("pedestrian", 1), ("cyclist", 2))  # observed channels drawn, in order


# ------------------------------------------------------------------------------------- batches


def _f32(value: Any) -> NDArray[np.float32]:
    return _numpy(value).astype(np.float32, copy=False)


def sample_targets(targets: OccupancyTargets, index: int = 0) -> OccupancyTargets:
    """Sample ``index`` of batched targets (torch or NumPy, a leading B axis) as NumPy float32,
    baselines included."""
    return OccupancyTargets(
        waypoint_times=_f32(targets.waypoint_times[index]),
        observed=_f32(targets.observed[index]),
        occluded=_f32(targets.occluded[index]),
        flow=_f32(targets.flow[index]),
        flow_origin=_f32(targets.flow_origin[index]),
        current=_f32(targets.current[index]),
        baselines={name: sample_forecast(f, index) for name, f in targets.baselines.items()},
    )


def sample_forecast(forecast: OccupancyForecast, index: int = 0) -> OccupancyForecast:
    """Sample ``index`` of a batched forecast (torch or NumPy, a leading B axis) as NumPy float32."""
    return OccupancyForecast(
        observed=_f32(forecast.observed[index]),
        occluded=_f32(forecast.occluded[index]),
        flow=_f32(forecast.flow[index]),
    )


def sample_points(points: Any, batch_index: Any, index: int = 0) -> NDArray[np.float32]:
    """(N_b, C) float32 points of sample ``index`` of a batch's (N, C) points and (N,) batch index."""
    return _f32(points)[_numpy(batch_index) == index]


# ------------------------------------------------------------------------------------- drawing


def _check(targets: OccupancyTargets, forecasts: Mapping[str, OccupancyForecast], grid: OccupancyGrid) -> int:
    """T, after checking every grid is (T, A, H, W) on ``grid`` with A ≥ 3 and flows (T, H, W, 2)."""
    t, a, h, w = np.shape(targets.observed)
    if (h, w) != (grid.height, grid.width) or a < len(_LAYERS):
        raise ValueError(
            f"targets are (T, A, H, W) = {np.shape(targets.observed)}, but the grid is "
            f"{grid.height} × {grid.width} with {len(_LAYERS)} agent classes"
        )
    for name, f in forecasts.items():
        for field, want in (("observed", (t, a, h, w)), ("occluded", (t, a, h, w)), ("flow", (t, h, w, 2))):
            if np.shape(getattr(f, field)) != want:
                raise ValueError(f"{name} {field} is {np.shape(getattr(f, field))}, the targets' is {want}")
    return t


def _raster(observed: NDArray, occluded: NDArray) -> NDArray[np.float32]:
    """(H, W, 4) RGBA of one waypoint: the observed classes then occluded agents composited "over"
    each other with their occupancy (0–1) as opacity; empty cells transparent."""
    h, w = observed.shape[-2:]
    rgba = np.zeros((h, w, 4), np.float32)
    layers = [(OCCUPANCY_COLOURS[name], observed[c]) for name, c in _LAYERS]
    layers.append((OCCUPANCY_COLOURS["occluded"], occluded.max(axis=0)))
    for colour, value in layers:
        v = np.clip(np.nan_to_num(value), 0.0, 1.0)[..., None]
        rgba[..., :3] = np.asarray(colour, np.float32) * v + rgba[..., :3] * (1.0 - v)
        rgba[..., 3:] = v + rgba[..., 3:] * (1.0 - v)
    # colours were accumulated premultiplied by opacity: undo it where anything is drawn
    alpha = rgba[..., 3:]
    np.divide(rgba[..., :3], alpha, out=rgba[..., :3], where=alpha > 0)
    return np.clip(rgba, 0.0, 1.0)


def _arrows(flow: NDArray, occupied: NDArray, min_cells: float = 0.1) -> NDArray[np.float64]:
    """(n, 4) quiver rows ``[x, y, u, v]`` (grid columns / rows): from where the content of an occupied
    cell was at the previous waypoint (cell + backward flow) to the cell, every ``s``-th row and
    column (``s`` so that at most about 24 arrows span the grid), moving cells only."""
    h, w = occupied.shape
    stride = max(1, round(max(h, w) / 24))
    rows, cols = np.mgrid[0:h, 0:w]
    dx, dy = flow[..., 0], flow[..., 1]
    keep = occupied & (np.hypot(dx, dy) > min_cells) & (rows % stride == 0) & (cols % stride == 0)
    r, c = rows[keep], cols[keep]
    return np.column_stack([c + dx[keep], r + dy[keep], -dx[keep], -dy[keep]]).astype(np.float64)


def _current_sweep(points: Any, grid: OccupancyGrid) -> NDArray[np.float64]:
    """(n, 2) (column, row) continuous grid coordinates of the current sweep's points on the grid.
    Points are (N, C) sensor frame; where C ≥ 5, column 4 is the sweep's Δt and only Δt = 0 is kept."""
    p = _numpy(points).astype(np.float64, copy=False)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"points must be (N, C ≥ 2), got {p.shape}")
    if p.shape[1] >= 5:
        p = p[np.abs(p[:, 4]) < 1e-3]
    col = -p[:, 1] * grid.pixels_per_meter + grid.ego_col
    row = -p[:, 0] * grid.pixels_per_meter + grid.ego_row
    keep = (col >= -0.5) & (col < grid.width - 0.5) & (row >= -0.5) & (row < grid.height - 0.5)
    return np.column_stack([col[keep], row[keep]])


def _figure_pixels(fig: Figure, height: int, width: int) -> NDArray[np.uint8]:
    """(height, width, 3) uint8 RGB of an Agg figure drawn at its size (cropped / padded by a pixel
    where the canvas rounds the other way)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[:height, :width, :3]
    out = np.full((height, width, 3), 255, np.uint8)
    out[: pixels.shape[0], : pixels.shape[1]] = pixels
    return out


def _panel(
    grid: OccupancyGrid,
    observed: NDArray,
    occluded: NDArray,
    flow: NDArray,
    vehicles: NDArray[np.bool_],
    points: NDArray | None,
    title: str,
    width: int,
) -> NDArray[np.uint8]:
    """(TITLE_HEIGHT + h, width, 3) uint8 of one grid: title band, then the cells (h = width · H / W)."""
    h = _grid_height(grid, width)
    fig = Figure(figsize=(width / _DPI, (h + TITLE_HEIGHT) / _DPI), dpi=_DPI, facecolor="white")
    ax = fig.add_axes((0.0, 0.0, 1.0, h / (h + TITLE_HEIGHT)))
    ax.set_axis_off()
    extent = (-0.5, grid.width - 0.5, grid.height - 0.5, -0.5)
    if points is not None and len(points):
        ax.scatter(points[:, 0], points[:, 1], s=0.4, c=[POINT_COLOUR], alpha=0.5, linewidths=0, zorder=1)
    ax.imshow(_raster(observed, occluded), extent=extent, interpolation="nearest", aspect="auto", zorder=2)
    arrows = _arrows(flow, vehicles)
    if len(arrows):
        ax.quiver(
            *arrows.T, angles="xy", scale_units="xy", scale=1.0, color="black", width=0.004,
            headwidth=3.5, headlength=4.0, minlength=0.0, zorder=3,
        )  # fmt: skip
    ax.plot([grid.ego_col], [grid.ego_row], marker="^", ms=6, color="red", mec="black", mew=0.5, zorder=4)
    ax.add_patch(Rectangle((-0.5, -0.5), grid.width, grid.height, fill=False, ec="0.75", lw=1.0, zorder=5))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    fig.text(0.5, 1.0 - 0.5 * TITLE_HEIGHT / (h + TITLE_HEIGHT), title, ha="center", va="center", fontsize=9)
    return _figure_pixels(fig, h + TITLE_HEIGHT, width)


def _legend(width: int) -> NDArray[np.uint8]:
    """(LEGEND_HEIGHT, width, 3) uint8: the colours, the flow arrow and the ego marker."""
    fig = Figure(figsize=(width / _DPI, LEGEND_HEIGHT / _DPI), dpi=_DPI, facecolor="white")
    handles = [
        Patch(color=OCCUPANCY_COLOURS["vehicle"], label="vehicle"),
        Patch(color=OCCUPANCY_COLOURS["pedestrian"], label="pedestrian"),
        Patch(color=OCCUPANCY_COLOURS["cyclist"], label="cyclist"),
        Patch(color=OCCUPANCY_COLOURS["occluded"], label="occluded (any class)"),
        Line2D([], [], color="black", marker=">", ms=4, label="flow since previous waypoint"),
        Line2D([], [], color="red", marker="^", ls="", mec="black", label="ego (heading up)"),
    ]
    fig.legend(handles=handles, loc="center", ncol=3, fontsize=7, frameon=False, handlelength=1.5)
    return _figure_pixels(fig, LEGEND_HEIGHT, width)


def _grid_height(grid: OccupancyGrid, width: int) -> int:
    return max(1, round(width * grid.height / grid.width))


def cell_pixel(
    grid: OccupancyGrid,
    row: int,
    col: int,
    *,
    panel: int = 0,
    strip_row: int = 0,
    panel_width: int = PANEL_WIDTH,
) -> tuple[int, int]:
    """``(y, x)`` pixel of the centre of cell (``row``, ``col``) in panel ``panel`` (from the left) of
    :func:`render_waypoint`'s image, or of row ``strip_row`` of :func:`bev_strip`'s."""
    h = _grid_height(grid, panel_width)
    y = strip_row * (h + TITLE_HEIGHT) + TITLE_HEIGHT + (row + 0.5) * h / grid.height
    x = panel * panel_width + (col + 0.5) * panel_width / grid.width
    return int(y), int(x)


def _forecasts(
    targets: OccupancyTargets, forecast: OccupancyForecast | None, baselines: bool | Sequence[str], name: str
) -> dict[str, OccupancyForecast]:
    """The forecasts to draw, in order: the model's (as ``name``), then the baselines asked for."""
    chosen: dict[str, OccupancyForecast] = {} if forecast is None else {name: forecast}
    names = list(targets.baselines) if baselines is True else [] if baselines is False else list(baselines)
    missing = [n for n in names if n not in targets.baselines]
    if missing:
        raise ValueError(f"no baseline {missing} in the targets (they have {sorted(targets.baselines)})")
    chosen.update({n: targets.baselines[n] for n in names})
    return chosen


def _truth_panel(targets: OccupancyTargets, k: int, grid: OccupancyGrid, points: Any, width: int) -> NDArray:
    observed, occluded = _f32(targets.observed[k]), _f32(targets.occluded[k])
    vehicles = np.maximum(observed[0], occluded[0]) > 0.5
    return _panel(
        grid,
        observed,
        occluded,
        _f32(targets.flow[k]),
        vehicles,
        points,
        f"truth · {_time(targets, k)}",
        width,
    )


def _forecast_panel(
    f: OccupancyForecast,
    name: str,
    targets: OccupancyTargets,
    k: int,
    grid: OccupancyGrid,
    points: Any,
    width: int,
) -> NDArray:
    observed, occluded = _f32(f.observed[k]), _f32(f.occluded[k])
    vehicles = np.clip(observed[0] + occluded[0], 0.0, 1.0) > 0.5
    return _panel(
        grid, observed, occluded, _f32(f.flow[k]), vehicles, points, f"{name} · {_time(targets, k)}", width
    )


def _time(targets: OccupancyTargets, k: int) -> str:
    return f"t = {float(_numpy(targets.waypoint_times)[k]):g} s"


def render_waypoint(
    targets: OccupancyTargets,
    forecast: OccupancyForecast | None,
    k: int,
    grid: OccupancyGrid,
    points: Any = None,
    *,
    baselines: bool | Sequence[str] = False,
    name: str = "model",
    panel_width: int = PANEL_WIDTH,
) -> NDArray[np.uint8]:
    """Waypoint ``k`` as a row of panels: truth, then the forecast, then the baselines asked for.

    Args:
        targets: one sample's true grids (NumPy or torch, no batch axis; :func:`sample_targets`):
            ``observed`` / ``occluded`` (T, A, H, W), ``flow`` (T, H, W, 2) backward flow in cells.
        forecast: the model's forecast of the sample (probabilities, the same shapes), or None to
            draw only the truth and the baselines.
        k: the waypoint, 0 ≤ k < T.
        grid: the grids' layout (H × W, ego cell, cells per metre).
        points: (N, C) the sensor-frame points behind the grids (faint grey), or None; where C ≥ 5
            (the occupancy samples' x, y, z, intensity, Δt) only the current sweep (Δt = 0) is drawn.
        baselines: True for every baseline of ``targets.baselines``, or the names to draw.
        name: the forecast's panel title.
        panel_width: pixels of one panel (height ``panel_width · H / W`` + :data:`TITLE_HEIGHT`).

    Returns:
        (TITLE_HEIGHT + h + LEGEND_HEIGHT, n · panel_width, 3) uint8 RGB, n panels side by side with
        the legend under them; titles name the panel and the waypoint time (seconds after the
        current sweep).
    """
    forecasts = _forecasts(targets, forecast, baselines, name)
    t = _check(targets, forecasts, grid)
    if not 0 <= k < t:
        raise ValueError(f"waypoint {k} out of range for {t} waypoints")
    cells = None if points is None else _current_sweep(points, grid)
    panels = [_truth_panel(targets, k, grid, cells, panel_width)]
    panels += [_forecast_panel(f, n, targets, k, grid, cells, panel_width) for n, f in forecasts.items()]
    row = np.concatenate(panels, axis=1)
    return np.concatenate([row, _legend(row.shape[1])], axis=0)


def bev_strip(
    targets: OccupancyTargets,
    forecast: OccupancyForecast | None,
    grid: OccupancyGrid,
    points: Any = None,
    baselines: bool | Sequence[str] = True,
    *,
    name: str = "model",
    panel_width: int = PANEL_WIDTH,
) -> NDArray[np.uint8]:
    """Every waypoint of one sample: one column per waypoint, rows truth, the forecast (unless None)
    and each baseline asked for (True: all of ``targets.baselines``), the legend at the bottom.

    Arguments as :func:`render_waypoint`'s. Returns (r · (TITLE_HEIGHT + h) + LEGEND_HEIGHT,
    T · panel_width, 3) uint8 RGB for r rows.
    """
    forecasts = _forecasts(targets, forecast, baselines, name)
    t = _check(targets, forecasts, grid)
    cells = None if points is None else _current_sweep(points, grid)
    rows = [np.concatenate([_truth_panel(targets, k, grid, cells, panel_width) for k in range(t)], axis=1)]
    for n, f in forecasts.items():
        rows.append(
            np.concatenate(
                [_forecast_panel(f, n, targets, k, grid, cells, panel_width) for k in range(t)], axis=1
            )
        )
    strip = np.concatenate(rows, axis=0)
    return np.concatenate([strip, _legend(strip.shape[1])], axis=0)


def forecast_frames(
    targets: OccupancyTargets,
    forecast: OccupancyForecast | None,
    grid: OccupancyGrid,
    points: Any = None,
    baselines: bool | Sequence[str] = False,
    *,
    name: str = "model",
    panel_width: int = PANEL_WIDTH,
) -> list[NDArray[np.uint8]]:
    """:func:`render_waypoint` of every waypoint, in order: the frames of an animation."""
    t = int(np.shape(targets.observed)[0])
    return [
        render_waypoint(
            targets, forecast, k, grid, points, baselines=baselines, name=name, panel_width=panel_width
        )
        for k in range(t)
    ]


# ------------------------------------------------------------------------------------- files


def gif_bytes(frames: Sequence[NDArray[np.uint8]], fps: float = 2.0) -> bytes:
    """An animated GIF (looping; Pillow) of (H, W, 3) uint8 frames of one size, ``fps`` frames a second."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) of one size, got {sorted(shapes)}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
    )
    return buffer.getvalue()


def write_gif(frames: Sequence[NDArray[np.uint8]], path: str | os.PathLike, fps: float = 2.0) -> Path:
    """Write :func:`gif_bytes` to ``path`` (folders created; a temporary file renamed into place)."""
    return atomic_write(path, gif_bytes(frames, fps))


def _png_bytes(image: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_occupancy(
    out: str | os.PathLike,
    stem: str,
    targets: OccupancyTargets,
    forecast: OccupancyForecast | None,
    grid: OccupancyGrid,
    points: Any = None,
    *,
    fps: float = 2.0,
    panel_width: int = PANEL_WIDTH,
) -> tuple[Path, Path]:
    """Write ``OUT/STEM.gif`` (the waypoints animated: truth beside the forecast, or beside every
    baseline where ``forecast`` is None) and ``OUT/STEM_strip.png`` (:func:`bev_strip` with every
    baseline); returns the two paths."""
    frames = forecast_frames(
        targets, forecast, grid, points, baselines=forecast is None, panel_width=panel_width
    )
    gif = write_gif(frames, Path(out) / f"{stem}.gif", fps)
    strip = bev_strip(targets, forecast, grid, points, baselines=True, panel_width=panel_width)
    png = atomic_write(Path(out) / f"{stem}_strip.png", _png_bytes(strip))
    return gif, png
