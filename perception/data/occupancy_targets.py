"""True occupancy-flow grids and the label-based baselines, rendered as the Waymo grids define them.

Boxes are sampled on a uniform ``48 × 16`` grid of interior points (edges included), the points are
rounded into the BEV grid, occupancy is their scatter clipped to 1, and backward flow is the mean over
a cell of (earlier − later) rounded image coordinates of the same box point, written at the later
time's cell (the official ``occupancy_flow_renderer``). All boxes are in the current sensor frame.

The baselines use the labels of the history only: *copy-forward* repeats the current occupancy with
zero flow; *constant velocity* moves every current box with the velocity of its track between the last
two sweeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perception.geometry.boxes import wrap_angle
from perception.structures.occupancy import (
    AGENT_CLASSES,
    OccupancyForecast,
    OccupancyGrid,
    OccupancyTargets,
    TrackedFrame,
)

__all__ = [
    "AgentStates",
    "box_points",
    "boxes_in_frame",
    "render_flow",
    "render_occupancy",
    "render_targets",
]

POINTS_PER_SIDE = (48, 16)
"""Interior sample points along a box's length and width (the challenge config)."""


def box_points(boxes: NDArray, per_side: tuple[int, int] = POINTS_PER_SIDE) -> NDArray[np.float64]:
    """(M, P, 2) x, y of ``per_side[0] × per_side[1]`` points spread over each box's footprint, edges included.

    Args:
        boxes: (M, ≥7) ``[x, y, z, l, w, h, yaw, ...]``.
    """
    nl, nw = per_side
    ul = np.linspace(-0.5, 0.5, nl) if nl > 1 else np.zeros(1)
    uw = np.linspace(-0.5, 0.5, nw) if nw > 1 else np.zeros(1)
    ux, uy = (a.ravel() for a in np.meshgrid(ul, uw, indexing="ij"))
    b = np.asarray(boxes, np.float64)
    c, s = np.cos(b[:, 6:7]), np.sin(b[:, 6:7])
    lx, wy = b[:, 3:4] * ux, b[:, 4:5] * uy
    return np.stack([c * lx - s * wy + b[:, 0:1], s * lx + c * wy + b[:, 1:2]], -1)


def render_occupancy(boxes: NDArray, grid: OccupancyGrid) -> NDArray[np.float32]:
    """(H, W) float32 in {0, 1}: the cells any sample point of ``boxes`` (M, 7) falls in."""
    out = np.zeros((grid.height, grid.width), np.float32)
    if len(boxes) == 0:
        return out
    pts = box_points(boxes).reshape(-1, 2)
    col, row = grid.to_image(pts[:, 0], pts[:, 1])
    keep = grid.inside(col, row)
    out[row[keep].astype(np.int64), col[keep].astype(np.int64)] = 1.0
    return out


def render_flow(later: NDArray, earlier: NDArray, grid: OccupancyGrid) -> NDArray[np.float32]:
    """(H, W, 2) backward flow from boxes ``later`` (M, 7) to the same objects' boxes ``earlier`` (M, 7).

    Each box point's (earlier − later) rounded image coordinates, (dx, dy) = (column, row), averaged
    over the points landing in a cell at the later time; cells no point reaches hold 0.
    """
    flow = np.zeros((grid.height, grid.width, 2), np.float32)
    if len(later) == 0:
        return flow
    p1 = box_points(later).reshape(-1, 2)
    p0 = box_points(earlier).reshape(-1, 2)
    c1, r1 = grid.to_image(p1[:, 0], p1[:, 1])
    c0, r0 = grid.to_image(p0[:, 0], p0[:, 1])
    keep = grid.inside(c1, r1)
    cell = r1[keep].astype(np.int64) * grid.width + c1[keep].astype(np.int64)
    n = grid.height * grid.width
    count = np.bincount(cell, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        for ch, d in enumerate(((c0 - c1)[keep], (r0 - r1)[keep])):
            total = np.bincount(cell, weights=d, minlength=n)
            flow[..., ch] = np.where(count > 0, total / np.maximum(count, 1), 0.0).reshape(
                grid.height, grid.width
            )
    return flow


def boxes_in_frame(frame: TrackedFrame, world_to_current: NDArray[np.float64]) -> NDArray[np.float32]:
    """(M, 7) the frame's boxes moved into the current sensor frame (centre transformed, yaw turned)."""
    b = np.asarray(frame.boxes, np.float64).copy()
    if len(b) == 0:
        return b.astype(np.float32)
    t = world_to_current @ frame.pose
    b[:, :3] = b[:, :3] @ t[:3, :3].T + t[:3, 3]
    b[:, 6] = wrap_angle(b[:, 6] + np.arctan2(t[1, 0], t[0, 0]))
    return b.astype(np.float32)


@dataclass
class AgentStates:
    """Every track's box at each time step, current sensor frame.

    Attributes:
        track_ids: (N,) str.
        agent_class: (N,) int64 index into :data:`AGENT_CLASSES`.
        boxes: (S, N, 7) float64 boxes per step (NaN where the track is not labelled).
        valid: (S, N) bool.
    """

    track_ids: NDArray[np.str_]
    agent_class: NDArray[np.int64]
    boxes: NDArray[np.float64]
    valid: NDArray[np.bool_]

    @classmethod
    def from_frames(
        cls, frames: Sequence[TrackedFrame], world_to_current: NDArray[np.float64]
    ) -> AgentStates:
        """States of the agents (objects with an agent class) over ``frames``, in their order."""
        ids: dict[str, int] = {}
        classes: list[int] = []
        for f in frames:
            for tid, a in zip(f.track_ids.tolist(), f.agent_class.tolist(), strict=True):
                if a >= 0 and tid not in ids:
                    ids[tid] = len(ids)
                    classes.append(int(a))
        boxes = np.full((len(frames), len(ids), 7), np.nan)
        valid = np.zeros((len(frames), len(ids)), bool)
        for s, f in enumerate(frames):
            b = boxes_in_frame(f, world_to_current)
            for j, (tid, a) in enumerate(zip(f.track_ids.tolist(), f.agent_class.tolist(), strict=True)):
                if a >= 0:
                    boxes[s, ids[tid]] = b[j]
                    valid[s, ids[tid]] = True
        return cls(np.array(list(ids), dtype=str), np.array(classes, np.int64), boxes, valid)


def _occupancy(boxes: NDArray, valid: NDArray, classes: NDArray, grid: OccupancyGrid) -> NDArray[np.float32]:
    """(A, H, W) occupancy per agent class of the valid boxes."""
    return np.stack(
        [render_occupancy(boxes[valid & (classes == a)], grid) for a in range(len(AGENT_CLASSES))]
    )


def _vehicle_flow(later: NDArray, earlier: NDArray, valid: NDArray, classes: NDArray, grid: OccupancyGrid):
    keep = valid & (classes == 0)
    return render_flow(later[keep], earlier[keep], grid)


def render_targets(
    history: Sequence[TrackedFrame],
    future: Sequence[TrackedFrame],
    waypoint_times: Sequence[float],
    grid: OccupancyGrid,
) -> OccupancyTargets:
    """The true grids at each waypoint and the two baselines' forecasts, for one sample.

    Args:
        history: the K input frames, oldest first; the last is the current frame (its sensor pose
            fixes the grid). Their labels decide which agents are *observed*.
        future: one frame per waypoint, in order (labels only are needed).
        waypoint_times: (T,) seconds after the current frame of each waypoint.
        grid: the BEV grid.
    """
    if len(future) != len(waypoint_times):
        raise ValueError(f"{len(future)} future frames for {len(waypoint_times)} waypoints")
    current = history[-1]
    world_to_current = np.linalg.inv(current.pose)
    states = AgentStates.from_frames([*history, *future], world_to_current)
    k_hist = len(history)
    cls_ = states.agent_class
    observed_agent = states.valid[:k_hist].any(0)
    t_count = len(future)
    a_count = len(AGENT_CLASSES)
    shape = (t_count, a_count, grid.height, grid.width)
    observed = np.zeros(shape, np.float32)
    occluded = np.zeros(shape, np.float32)
    flow = np.zeros((t_count, grid.height, grid.width, 2), np.float32)
    origin = np.zeros((t_count, grid.height, grid.width), np.float32)

    cur_boxes, cur_valid = states.boxes[k_hist - 1], states.valid[k_hist - 1]
    now = _occupancy(cur_boxes, cur_valid, cls_, grid)
    prev_boxes, prev_valid = cur_boxes, cur_valid
    prev_all_vehicles = now[0]
    for k in range(t_count):
        b, v = states.boxes[k_hist + k], states.valid[k_hist + k]
        observed[k] = _occupancy(b, v & observed_agent, cls_, grid)
        occluded[k] = _occupancy(b, v & ~observed_agent, cls_, grid)
        flow[k] = _vehicle_flow(b, prev_boxes, v & prev_valid, cls_, grid)
        origin[k] = prev_all_vehicles
        prev_all_vehicles = np.clip(observed[k, 0] + occluded[k, 0], 0.0, 1.0)
        prev_boxes, prev_valid = b, v

    times = np.asarray(waypoint_times, np.float32)
    baselines = {
        "copy_forward": OccupancyForecast(
            observed=np.broadcast_to(now, shape).copy(),
            occluded=np.zeros(shape, np.float32),
            flow=np.zeros_like(flow),
        ),
        "constant_velocity": _constant_velocity(history, states, times, grid),
    }
    return OccupancyTargets(
        waypoint_times=times,
        observed=observed,
        occluded=occluded,
        flow=flow,
        flow_origin=origin,
        current=now,
        baselines=baselines,
    )


def _constant_velocity(
    history: Sequence[TrackedFrame], states: AgentStates, times: NDArray, grid: OccupancyGrid
) -> OccupancyForecast:
    """Every current box moved with its track's velocity between the last two sweeps (0 without one)."""
    k_hist = len(history)
    cur, valid = states.boxes[k_hist - 1], states.valid[k_hist - 1]
    velocity = np.zeros((len(cur), 2))
    if k_hist >= 2:
        dt = (history[-1].timestamp_micros - history[-2].timestamp_micros) * 1e-6
        prev, pvalid = states.boxes[k_hist - 2], states.valid[k_hist - 2]
        both = valid & pvalid
        if dt > 0:
            velocity[both] = (cur[both, :2] - prev[both, :2]) / dt
    a_count = len(AGENT_CLASSES)
    shape = (len(times), a_count, grid.height, grid.width)
    observed = np.zeros(shape, np.float32)
    flow = np.zeros((len(times), grid.height, grid.width, 2), np.float32)
    earlier = cur
    for k, t in enumerate(times):
        moved = cur.copy()
        moved[:, :2] += velocity * float(t)
        observed[k] = _occupancy(moved, valid, states.agent_class, grid)
        flow[k] = _vehicle_flow(moved, earlier, valid, states.agent_class, grid)
        earlier = moved
    return OccupancyForecast(observed=observed, occluded=np.zeros(shape, np.float32), flow=flow)
