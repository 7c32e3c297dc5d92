"""The occupancy dataset: sweeps stacked in the current frame, the sample index's rules, batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.data.occupancy import OccupancyDataModule, OccupancyDataset, stack_sweeps
from perception.data.sequences import SequenceError
from perception.structures import collate
from perception.structures.occupancy import OccupancyGrid, TrackedFrame

GRID = OccupancyGrid(height=32, width=32, pixels_per_meter=1.0, ego_col=16, ego_row=24)
STATIC_WORLD = np.array([[10.0, 2.0, 0.5], [15.0, -3.0, 1.0], [5.0, 5.0, -1.0]])


def pose(t):
    """The sensor drives forward at 5 m/s while turning at 0.2 rad/s."""
    p = np.eye(4)
    yaw = 0.2 * t
    p[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    p[:3, 3] = [5.0 * t, 0.5 * t, 0.0]
    return p


class FakeSource:
    """In-memory sequences: a static world seen from a moving sensor, a car driving at 8 m/s."""

    root = Path("memory")

    def __init__(self, times_s):
        self.times = {"a": list(times_s)}

    def sequences(self):
        return ["a"]

    def frame_ids(self, sequence):
        return [f"{i:06d}" for i in range(len(self.times[sequence]))]

    def read(self, sequence, frame_id, *, points=True):
        t = self.times[sequence][int(frame_id)]
        p = pose(t)
        inv = np.linalg.inv(p)
        local = STATIC_WORLD @ inv[:3, :3].T + inv[:3, 3]
        car = np.array([[20.0 + 8.0 * t, 0.0, 0.0, 1]]) @ inv.T
        yaw = -0.2 * t
        boxes = np.array([[car[0, 0], car[0, 1], 0.0, 4.0, 2.0, 1.5, yaw]], np.float32)
        pts = np.column_stack([local, np.full(len(local), 0.3)]).astype(np.float32)
        return TrackedFrame(
            sequence=sequence,
            frame_id=frame_id,
            timestamp_micros=round(t * 1e6),
            pose=p,
            boxes=boxes,
            agent_class=np.array([0]),
            track_ids=np.array(["car"]),
            points=pts if points else None,
        )


def test_stacked_sweeps_of_a_static_world_coincide():
    src = FakeSource([0.0, 0.1, 0.2, 0.3])
    frames = [src.read("a", f) for f in src.frame_ids("a")]
    pts = stack_sweeps(frames)
    assert pts.shape == (12, 5)
    current = frames[-1].points[:, :3]
    for k in range(4):
        assert np.allclose(pts[3 * k : 3 * k + 3, :3], current, atol=1e-5)
    assert np.allclose(pts[:, 4], np.repeat([-0.3, -0.2, -0.1, 0.0], 3), atol=1e-6)
    assert np.allclose(pts[:, 3], 0.3)


def test_index_needs_full_history_and_every_waypoint():
    src = FakeSource([0.1 * i for i in range(12)])
    ds = OccupancyDataset(src, history=3, waypoint_times=(0.2, 0.4), grid=GRID)
    # current frames 2..7: two history frames before, a frame 0.4 s after
    assert [i for _, i, _ in ds.index] == [2, 3, 4, 5, 6, 7]
    assert ds.index[0][2] == [4, 6]
    assert ds.skipped == 6
    strided = OccupancyDataset(src, history=3, waypoint_times=(0.2, 0.4), grid=GRID, stride=2)
    assert [i for _, i, _ in strided.index] == [2, 4, 6]


def test_a_gap_in_the_sequence_removes_the_samples_across_it():
    times = [0.1 * i for i in range(12)]
    del times[5]  # frame at 0.5 s missing
    ds = OccupancyDataset(FakeSource(times), history=3, waypoint_times=(0.2,), grid=GRID)
    currents = [round(ds.source.times["a"][i], 1) for _, i, _ in ds.index]
    assert 0.6 not in currents and 0.3 not in currents  # 0.6 has the gap in its history, 0.3 lacks 0.5 s
    assert 0.2 in currents and 0.8 in currents


def test_non_increasing_timestamps_are_an_error_naming_the_frame():
    with pytest.raises(SequenceError, match="sequence a frame 000002"):
        OccupancyDataset(FakeSource([0.0, 0.1, 0.1, 0.2]), history=2, waypoint_times=(0.1,), grid=GRID)


def test_samples_and_batches():
    ds = OccupancyDataset(
        FakeSource([0.1 * i for i in range(10)]), history=3, waypoint_times=(0.2, 0.4), grid=GRID
    )
    s = ds[0]
    assert s.frame_id == "a/000002" and s.points.shape[1] == 5
    assert s.occupancy.observed.shape == (2, 3, 32, 32)
    assert s.occupancy.observed[:, 0].sum() > 0
    batch = collate([ds[0], ds[1]])
    assert batch.occupancy.observed.shape == (2, 2, 3, 32, 32)
    assert batch.occupancy.flow.shape == (2, 2, 32, 32, 2)
    assert set(batch.occupancy.baselines) == {"copy_forward", "constant_velocity"}
    # the car drives 8 m/s ahead of a 5 m/s ego: constant velocity is exact, copy-forward is not
    t = batch.occupancy
    cv = t.baselines["constant_velocity"].observed[:, :, 0]
    inter = (cv * t.observed[:, :, 0]).sum()
    union = (cv + t.observed[:, :, 0]).clamp(max=1).sum()
    assert float(inter / union) > 0.8


def test_max_points_keeps_a_seeded_subset():
    ds = OccupancyDataset(
        FakeSource([0.1 * i for i in range(10)]), history=3, waypoint_times=(0.2,), grid=GRID, max_points=4
    )
    a, b = ds[0].points, ds[0].points
    assert len(a) == 4 and np.array_equal(a, b)


def test_data_module_on_synthetic_sequences(tmp_path):
    from dataclasses import replace

    from perception.data.occupancy import SYNTHETIC_OCCUPANCY
    from perception.data.synthetic.writer import write_dataset

    write_dataset(
        tmp_path, frames=30, sequences=2, config=replace(SYNTHETIC_OCCUPANCY, num_beams=8), val_fraction=0.5
    )
    dm = OccupancyDataModule(
        root=str(tmp_path), grid=GRID, waypoint_times=(0.5,), val_stride=1, num_workers=0
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 15 - 4 - 5 and len(dm.val_set) == 15 - 4 - 5
    batch = next(iter(dm.train_dataloader()))
    assert batch.points.shape[1] == 5 and batch.occupancy.observed.shape == (2, 1, 3, 32, 32)
