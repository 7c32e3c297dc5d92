"""The occupancy-flow grids against hand-derived cells and flows, and the label baselines."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.data.occupancy_targets import box_points, render_flow, render_occupancy, render_targets
from perception.structures.occupancy import OccupancyGrid, TrackedFrame

GRID = OccupancyGrid(height=64, width=64, pixels_per_meter=1.0, ego_col=32, ego_row=48)


def box(x, y, length=4.0, width=2.0, yaw=0.0):
    return np.array([[x, y, 0.0, length, width, 1.5, yaw]], np.float32)


def test_box_points_cover_the_footprint_edges_included():
    pts = box_points(box(0.0, 0.0))
    assert pts.shape == (1, 48 * 16, 2)
    assert np.isclose(pts[0, :, 0].min(), -2.0) and np.isclose(pts[0, :, 0].max(), 2.0)
    assert np.isclose(pts[0, :, 1].min(), -1.0) and np.isclose(pts[0, :, 1].max(), 1.0)


def test_axis_aligned_box_fills_the_hand_derived_cells():
    # x in [8, 12] → rows 48 - 12 .. 48 - 8; y in [-1, 1] → columns 31 .. 33
    occ = render_occupancy(box(10.0, 0.0), GRID)
    rows, cols = np.nonzero(occ)
    assert set(rows.tolist()) == set(range(36, 41))
    assert set(cols.tolist()) == {31, 32, 33}
    assert occ.sum() == 15 and occ.max() == 1.0


def test_turned_box_turns_its_footprint():
    occ = render_occupancy(box(10.0, 0.0, yaw=np.pi / 2), GRID)
    rows, cols = np.nonzero(occ)
    assert set(rows.tolist()) == {37, 38, 39} and set(cols.tolist()) == set(range(30, 35))


def test_boxes_off_the_grid_are_dropped():
    assert render_occupancy(box(500.0, 0.0), GRID).sum() == 0


@settings(max_examples=30, deadline=None)
@given(dx=st.integers(-6, 6), dy=st.integers(-6, 6), yaw=st.floats(-3.1, 3.1))
def test_flow_of_a_whole_cell_shift_is_the_shift_back(dx, dy, yaw):
    later = box(10.0, 3.0, yaw=yaw)
    earlier = later.copy()
    earlier[0, 0] -= dx  # the object moved +dx metres forward and +dy metres left
    earlier[0, 1] -= dy
    flow = render_flow(later, earlier, GRID)
    occ = render_occupancy(later, GRID) > 0
    # earlier − later in (column, row): moving forward lowers the row, moving left lowers the column
    assert np.allclose(flow[occ], [dy, dx])
    assert np.all(flow[~occ] == 0)


def tracked(t, boxes, ids, classes, ego_x=0.0):
    pose = np.eye(4)
    pose[0, 3] = ego_x
    b = np.asarray(boxes, np.float32).reshape(-1, 7).copy()
    b[:, 0] -= ego_x  # world → this frame's sensor frame (pure translation)
    return TrackedFrame(
        sequence="s",
        frame_id=f"{round(t * 10):+d}",
        timestamp_micros=round(t * 1e6),
        pose=pose,
        boxes=b,
        agent_class=np.asarray(classes, np.int64),
        track_ids=np.asarray(ids, dtype=str),
    )


def scene(t, ego_speed=5.0):
    """World: car a driving +x at 10 m/s, parked car b, pedestrian c; car d only after 0.75 s."""
    boxes = [box(20 + 10 * t, 0.0)[0], box(25.0, 6.0)[0], box(10.0, -5.0, 0.6, 0.6)[0]]
    ids, classes = ["a", "b", "c"], [0, 0, 1]
    if t > 0.75:
        boxes.append(box(30.0, -8.0)[0])
        ids.append("d")
        classes.append(0)
    return tracked(t, boxes, ids, classes, ego_x=ego_speed * t)


def targets(ego_speed=5.0):
    history = [scene(t, ego_speed) for t in (-0.4, -0.3, -0.2, -0.1, 0.0)]
    future = [scene(t, ego_speed) for t in (0.5, 1.0)]
    return render_targets(history, future, [0.5, 1.0], GRID)


def test_grids_are_fixed_to_the_current_pose():
    tg = targets()
    # the parked car stays in its cells although the ego vehicle drives on
    parked = render_occupancy(box(25.0, 6.0), GRID)
    for k in range(2):
        assert np.all(tg.observed[k, 0][parked > 0] == 1)
    # the moving car is 5 m further at 0.5 s: its cells are the current ones shifted 5 rows up
    now = render_occupancy(box(20.0, 0.0), GRID)
    assert np.array_equal(tg.observed[0, 0] * (1 - parked), np.roll(now, -5, axis=0))


def test_observed_occluded_and_classes():
    tg = targets()
    assert tg.observed.shape == (2, 3, 64, 64) and tg.flow.shape == (2, 64, 64, 2)
    assert tg.occluded[0].sum() == 0  # d appears after 0.75 s: occluded at 1 s only
    assert np.array_equal(tg.occluded[1, 0], render_occupancy(box(30.0, -8.0), GRID))
    assert tg.observed[:, 1].sum() > 0 and tg.observed[:, 2].sum() == 0  # the pedestrian's channel


def test_flow_and_flow_origin_follow_the_official_definitions():
    tg = targets()
    moving = render_occupancy(box(25.0, 0.0), GRID) > 0  # car a at 0.5 s
    assert np.allclose(tg.flow[0][moving], [0.0, 5.0])  # 5 m back = 5 rows down
    # d has no box at 0.5 s: no flow at 1 s on its cells
    assert np.all(tg.flow[1][tg.occluded[1, 0] > 0] == 0)
    assert np.array_equal(tg.flow_origin[0], tg.current[0])
    assert np.array_equal(tg.flow_origin[1], np.clip(tg.observed[0, 0] + tg.occluded[0, 0], 0, 1))


def test_baselines():
    tg = targets()
    copy = tg.baselines["copy_forward"]
    assert np.array_equal(copy.observed[1], tg.current) and not copy.flow.any()
    cv = tg.baselines["constant_velocity"]
    # constant velocity is exact for this scene's observed agents
    assert np.array_equal(cv.observed, tg.observed)
    moving = render_occupancy(box(25.0, 0.0), GRID) > 0
    assert np.allclose(cv.flow[0][moving], tg.flow[0][moving])
    assert not cv.occluded.any()
