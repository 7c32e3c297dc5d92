"""The synthetic LiDAR generator: sensor model, labels, KITTI layout, sequences, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.data.kitti import list_frames, load_frame, read_pose, read_split
from perception.data.synthetic import (
    SequenceLayout,
    SyntheticConfig,
    beam_elevations,
    generate_frame,
    split_frames,
    write_dataset,
)
from perception.data.synthetic.actors import build_cyclist, build_pedestrian, build_vehicle, sample_size
from perception.data.synthetic.shapes import SEMANTIC_CLASSES, shapes_aabb
from perception.geometry import points_in_boxes_mask, wrap_angle
from perception.geometry.camera import observation_angle, transform_points

REPO = Path(__file__).resolve().parents[2]
CONFIG = SyntheticConfig()
SEED = 7
GROUND = [SEMANTIC_CLASSES.index(c) for c in ("road", "sidewalk", "terrain")]


@pytest.fixture(scope="module")
def frames():
    return [generate_frame(CONFIG, SEED, i) for i in range(4)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = write_dataset(out, frames=6, seed=SEED, val_fraction=0.34)
    return out, summary


@pytest.fixture(scope="module")
def sequence_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_seq")
    summary = write_dataset(out, frames=12, seed=SEED, sequences=2, val_fraction=0.5)
    return out, summary


# --------------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_frame_different_seed_different(frames):
    again = generate_frame(CONFIG, SEED, 1)
    f = frames[1]
    for name in (
        "points",
        "boxes",
        "point_object",
        "point_track",
        "point_semantic",
        "bbox",
        "truncated",
        "occluded",
    ):
        np.testing.assert_array_equal(getattr(again, name), getattr(f, name), err_msg=name)
    assert list(again.names) == list(f.names)
    other = generate_frame(CONFIG, SEED + 1, 1)
    assert other.points.shape != f.points.shape or not np.array_equal(other.points, f.points)
    # Another index of the same seed is another scene too.
    assert not np.array_equal(frames[0].points[:1000], frames[1].points[:1000])


# --------------------------------------------------------------------------------------------------
# sensor model


def test_beam_pattern_is_hdl64_like():
    el = beam_elevations(CONFIG)
    assert len(el) == 64
    assert el[0] == pytest.approx(2.0) and el[-1] == pytest.approx(-24.9)
    gaps = -np.diff(el)
    assert np.all(gaps > 0)
    # The upper block is denser than the lower one.
    assert gaps[:31].mean() < gaps[33:].mean()


def test_sensor_rings_azimuth_range_and_ground(frames):
    for f in frames:
        p = f.points.astype(np.float64)
        assert p.dtype != object and f.points.dtype == np.float32
        assert 100_000 <= len(p) <= 145_000
        # Rings: every point's elevation is one of the 64 beam elevations (noise is along the ray).
        el = np.degrees(np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1])))
        beams = beam_elevations(CONFIG)
        nearest = np.abs(el[:, None] - beams[None]).argmin(1)
        assert np.abs(el - beams[nearest]).max() < 0.01
        np.testing.assert_array_equal(nearest, f.point_ring)
        assert len(np.unique(nearest)) >= 60
        # Azimuths sit on a 0.17°-ish grid of ~2118 columns.
        step = 360.0 / CONFIG.num_columns
        assert 0.16 < step < 0.18
        az = np.degrees(np.arctan2(p[:, 1], p[:, 0]))
        col = (az + 180.0) / step - 0.5
        assert np.abs(col - np.round(col)).max() < 0.02
        assert len(np.unique(np.round(col))) > 0.9 * CONFIG.num_columns
        # Range.
        r = np.linalg.norm(p[:, :3], axis=1)
        clip = CONFIG.range_noise_clip * CONFIG.range_noise_std
        assert r.max() <= CONFIG.max_range + clip + 1e-3
        assert r.min() >= CONFIG.min_range - clip - 1e-3
        # Ground near the car at about -1.73 m (the sensor height).
        ground = np.isin(f.point_semantic, GROUND) & (np.hypot(p[:, 0], p[:, 1]) < 12.0)
        assert ground.sum() > 10_000
        assert np.median(p[ground, 2]) == pytest.approx(-CONFIG.sensor_height, abs=0.08)
        # Intensity in [0, 1], varied, and brighter on retro-reflective road paint than asphalt.
        assert f.points[:, 3].min() >= 0.0 and f.points[:, 3].max() <= 1.0
        assert f.points[:, 3].std() > 0.05


def test_range_noise_is_small_and_unbiased():
    # (the same label margin keeps the scene's geometry the same)
    margin = CONFIG.margin_xy
    clean = generate_frame(
        SyntheticConfig(range_noise_std=0.0, dropout=0.0, min_return=0.0, label_margin_xy=margin), SEED, 0
    )
    noisy = generate_frame(SyntheticConfig(dropout=0.0, min_return=0.0), SEED, 0)
    assert len(clean.points) == len(noisy.points)
    diff = np.linalg.norm(noisy.points[:, :3], axis=1) - np.linalg.norm(clean.points[:, :3], axis=1)
    assert abs(diff.mean()) < 0.002
    assert 0.012 < diff.std() < 0.02  # 2 cm, clipped at 2σ
    assert np.abs(diff).max() <= 0.04 + 1e-4
    # Dropout removes about its share of returns.
    assert (
        0.02
        < 1 - len(generate_frame(SyntheticConfig(min_return=0.0), SEED, 0).points) / len(noisy.points)
        < 0.04
    )


# --------------------------------------------------------------------------------------------------
# geometry of objects


@pytest.mark.parametrize("cls", ["Car", "Van", "Truck", "Pedestrian", "Cyclist"])
def test_object_geometry_stays_inside_its_box_less_margins(cls):
    rng = np.random.default_rng(0)
    mxy, mz = CONFIG.margin_xy, CONFIG.label_margin_z
    for _ in range(30):
        size = sample_size(rng, cls)
        if cls == "Pedestrian":
            sh = build_pedestrian(rng, size, mxy, mz, float(rng.uniform(0, 6.3)), 1.0)
        elif cls == "Cyclist":
            sh = build_cyclist(rng, size, mxy, mz, float(rng.uniform(0, 6.3)))
        else:
            sh = build_vehicle(rng, cls, size, mxy, mz)
        lo, hi = shapes_aabb(sh.params, sh.kind)
        l, w, h = size
        assert lo[:, 0].min() >= -l / 2 + mxy - 1e-9 and hi[:, 0].max() <= l / 2 - mxy + 1e-9
        assert lo[:, 1].min() >= -w / 2 + mxy - 1e-9 and hi[:, 1].max() <= w / 2 - mxy + 1e-9
        assert lo[:, 2].min() >= -1e-9 and hi[:, 2].max() <= h - 2 * mz + 1e-9
        # Not just a cuboid, and it fills its box (a pedestrian's length depends on its stride).
        assert len(sh) >= 5
        if cls != "Pedestrian":
            assert hi[:, 0].max() - lo[:, 0].min() > 0.8 * (l - 2 * mxy)
        assert hi[:, 2].max() > 0.95 * (h - 2 * mz)


# --------------------------------------------------------------------------------------------------
# the written dataset


def test_written_dataset_loads_and_boxes_contain_their_points(dataset):
    out, _ = dataset
    assert list_frames(out) == [f"{i:06d}" for i in range(6)]
    inside_own = own_total = 0
    inside_box = inside_box_own = 0
    for i in range(6):
        gen = generate_frame(CONFIG, SEED, i)
        frame = load_frame(out, i)
        np.testing.assert_array_equal(frame.points, gen.points)
        assert list(frame.names) == list(gen.names)
        assert len(frame.names) >= 3
        # Labels keep 2 decimals: boxes come back within half a centimetre, yaw exactly.
        np.testing.assert_allclose(frame.boxes_lidar[:, :6], gen.boxes_lidar[:, :6], atol=0.0101)
        np.testing.assert_allclose(wrap_angle(frame.boxes_lidar[:, 6] - gen.boxes_lidar[:, 6]), 0, atol=1e-5)
        mask = points_in_boxes_mask(frame.points, frame.boxes_lidar)
        # Boxes hug the geometry (2 cm), so some noisy returns fall just outside, as in KITTI (a face
        # seen head-on loses ~16%: P(noise > 2 cm)); every return lies within the range-noise bound.
        grown = frame.boxes_lidar.copy()
        noise = CONFIG.range_noise_clip * CONFIG.range_noise_std
        grown[:, 3:5] += 2 * (noise - CONFIG.margin_xy + 0.006)
        grown[:, 5] += 2 * (noise * np.sin(np.radians(25.0)) - CONFIG.label_margin_z + 0.006)
        within_bound = points_in_boxes_mask(frame.points, grown)
        for j in range(len(frame.names)):
            own = gen.point_object == j
            assert own.sum() >= CONFIG.min_points
            assert within_bound[own, j].all(), (i, j, frame.names[j])
            assert mask[own, j].mean() >= 0.75, (i, j, frame.names[j])
            inside_own += mask[own, j].sum()
            own_total += own.sum()
            inside_box += mask[:, j].sum()
            inside_box_own += (gen.point_object[mask[:, j]] == j).sum()
        np.testing.assert_allclose(frame.calib.Tr_velo_to_cam, gen.calib.Tr_velo_to_cam, atol=1e-11)
    assert inside_own / own_total >= 0.98
    # Conversely, most points inside a labelled box are that object's (the rest: ground under it).
    assert inside_box_own / inside_box >= 0.85
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["seed"] == SEED and meta["version"] and meta["args"]["frames"] == 6
    assert sum(meta["class_counts"].values()) == sum(len(load_frame(out, i).names) for i in range(6))
    assert not (out / "training" / "pose").exists()
    assert not (out / "training" / "image_2").exists()


def test_labels_are_kitti_like(dataset):
    out, _ = dataset
    frames = [load_frame(out, i) for i in range(6)]
    difficulty = np.concatenate([f.difficulty for f in frames])
    assert {0, 1, 2} <= set(difficulty.tolist())
    occluded = np.concatenate([f.occluded for f in frames])
    assert {0, 1, 2} <= set(occluded.tolist())
    truncated = np.concatenate([f.truncated for f in frames])
    assert truncated.min() >= 0.0 and truncated.max() <= CONFIG.max_truncation
    assert (truncated > 0).any()
    names = set(np.concatenate([f.names for f in frames]).tolist())
    assert {"Car", "Pedestrian"} <= names and names <= {"Car", "Van", "Truck", "Pedestrian", "Cyclist"}
    for f in frames:
        b = f.bbox
        assert (
            (b[:, 0] >= 0).all()
            and (b[:, 2] <= 1241).all()
            and (b[:, 1] >= 0).all()
            and (b[:, 3] <= 374).all()
        )
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        # alpha is KITTI's observation angle; boxes are in front of the camera, within 80 m.
        np.testing.assert_allclose(wrap_angle(f.alpha - observation_angle(f.boxes_camera)), 0, atol=0.011)
        assert (f.boxes_camera[:, 2] > 0).all()
        assert (np.hypot(f.boxes_lidar[:, 0], f.boxes_lidar[:, 1]) <= CONFIG.label_max_distance + 0.01).all()
        # Boxes stand on the ground: bottom ≈ -1.73 m nearby (ground is uneven farther away).
        near = np.hypot(f.boxes_lidar[:, 0], f.boxes_lidar[:, 1]) < 15
        bottom = f.boxes_lidar[near, 2] - f.boxes_lidar[near, 5] / 2
        assert np.all(np.abs(bottom + CONFIG.sensor_height) < 0.45)
        # Cars are aligned with the road (the ego drives along it) or stand in bays across it.
        cars = f.names == "Car"
        rel = np.abs(wrap_angle(2 * f.boxes_lidar[cars, 6])) / 2
        assert np.all((rel < 0.3) | (rel > np.pi / 4 - 0.3))
        # No two boxes overlap in BEV (checked on their centres' distance vs sizes, conservatively).
        for j in range(len(f.names)):
            corners = np.array(
                [
                    [sx * f.boxes_lidar[j, 3] / 2, sy * f.boxes_lidar[j, 4] / 2]
                    for sx in (-1, 1)
                    for sy in (-1, 1)
                ]
            )
            c, s = np.cos(f.boxes_lidar[j, 6]), np.sin(f.boxes_lidar[j, 6])
            pts = corners @ np.array([[c, s], [-s, c]]) + f.boxes_lidar[j, :2]
            pts3 = np.column_stack([pts, np.full(4, f.boxes_lidar[j, 2])])
            m = points_in_boxes_mask(pts3, f.boxes_lidar)
            m[:, j] = False
            assert not m.any()


def test_splits_cover_all_frames_without_overlap(dataset):
    out, _ = dataset
    train, val = read_split(out, "train"), read_split(out, "val")
    assert sorted(train + val) == [f"{i:06d}" for i in range(6)]
    assert not set(train) & set(val)
    assert len(val) == 2
    tr, va = split_frames(10, 3, 0.34, 0)
    assert sorted(tr + va) == list(range(10))
    layout = SequenceLayout(10, 3)
    val_seqs = {layout.locate(i)[0] for i in va}
    assert all(layout.locate(i)[0] not in val_seqs for i in tr)


def test_resume_skips_existing_frames_and_overwrite_regenerates(tmp_path):
    out = tmp_path / "ds"
    first = write_dataset(out, frames=3, seed=1)
    assert first["generated"] == 3
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    (out / "training" / "velodyne" / "000001.bin").unlink()
    again = write_dataset(out, frames=3, seed=1)
    assert again["generated"] == 1 and again["skipped"] == 2
    assert {p: p.read_bytes() for p in files} == before
    forced = write_dataset(out, frames=3, seed=1, overwrite=True)
    assert forced["generated"] == 3
    assert {p: p.read_bytes() for p in files} == before


# --------------------------------------------------------------------------------------------------
# sequences


def test_sequences_index_poses_and_tracks(sequence_dataset):
    out, _ = sequence_dataset
    doc = json.loads((out / "sequences.json").read_text())
    assert doc["frame_rate_hz"] == 10.0
    seqs = doc["sequences"]
    assert list(seqs) == ["0000", "0001"]
    all_frames = [f for s in seqs.values() for f in s["frames"]]
    assert all_frames == [f"{i:06d}" for i in range(12)]
    # Split by sequence, not by frame.
    val = set(read_split(out, "val"))
    assert {s["split"] for s in seqs.values()} == {"train", "val"}
    for s in seqs.values():
        assert {f in val for f in s["frames"]} == {s["split"] == "val"}
        assert np.all(np.diff(s["timestamps_micros"]) == 100_000)
        for fid, tracks in zip(s["frames"], s["track_ids"], strict=True):
            assert len(tracks) == len(load_frame(out, fid).names)
        # Track ids persist from frame to frame.
        common = set(s["track_ids"][0]) & set(s["track_ids"][1])
        assert len(common) >= 0.6 * len(s["track_ids"][0])
        # Poses: smooth (constant speed along a gentle curve) and level.
        poses = np.stack([read_pose(out / "training" / "pose" / f"{f}.txt") for f in s["frames"]])
        steps = np.diff(poses[:, :3, 3], axis=0)
        assert np.abs(np.diff(steps[:, :2], axis=0)).max() < 0.01
        assert np.linalg.norm(steps[:, :2], axis=1).max() < 2.0  # < 20 m/s
        yaw = np.arctan2(poses[:, 1, 0], poses[:, 0, 0])
        assert np.abs(np.diff(yaw)).max() < 0.01
        np.testing.assert_allclose(poses[:, 2, :3], [[0, 0, 1]] * len(poses), atol=1e-9)


def test_sequence_objects_move_with_their_velocity():
    layout = SequenceLayout(12, 2)
    a, b = generate_frame(CONFIG, SEED, 2, layout), generate_frame(CONFIG, SEED, 3, layout)
    assert a.sequence == b.sequence == 0 and (a.step, b.step) == (2, 3)
    moving = 0
    for j, tid in enumerate(a.track_ids):
        k = np.flatnonzero(b.track_ids == tid)
        if not len(k):
            continue
        ca = transform_points(a.boxes_lidar[j : j + 1, :3], a.pose)[0]
        cb = transform_points(b.boxes_lidar[k[0] : k[0] + 1, :3], b.pose)[0]
        np.testing.assert_allclose((cb - ca)[:2], a.velocity[j] * 0.1, atol=0.02)
        assert abs(cb[2] - ca[2]) < 0.1
        assert a.names[j] == b.names[k[0]]
        moving += np.linalg.norm(a.velocity[j]) > 1.0
    assert moving >= 1
    # Static clutter stays put in the world: the same building/pole points re-appear.
    assert np.linalg.norm(b.pose[:3, 3] - a.pose[:3, 3]) < 2.0


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="frames"):
        write_dataset(tmp_path / "x", frames=0)
    with pytest.raises(ValueError, match="frames"):
        write_dataset(tmp_path / "x", frames=-3)
    with pytest.raises(ValueError, match="sequences"):
        write_dataset(tmp_path / "x", frames=2, sequences=3)
    with pytest.raises(ValueError, match="val_fraction"):
        write_dataset(tmp_path / "x", frames=2, val_fraction=1.5)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="file"):
        write_dataset(blocker / "sub", frames=1)
    with pytest.raises(ValueError, match="min_range"):
        SyntheticConfig(min_range=200.0)


def test_cli_rejects_bad_input(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_synthetic
    finally:
        sys.path.remove(str(REPO / "tools"))
    for argv in (
        ["--out", str(tmp_path), "--frames", "0"],
        ["--out", str(tmp_path), "--frames", "-1"],
        ["--out", str(tmp_path), "--frames", "x"],
        ["--out", str(tmp_path), "--frames", "2", "--sequences", "3"],
        ["--out", str(tmp_path), "--frames", "2", "--val-fraction", "1"],
        ["--frames", "2"],
    ):
        with pytest.raises(SystemExit) as err:
            make_synthetic.main(argv)
        assert err.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        make_synthetic.main(["--out", str(blocker), "--frames", "1"])
    assert "not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# end to end (slow)


@pytest.mark.slow
def test_cli_end_to_end_with_workers_is_deterministic(tmp_path):
    def run(out, workers):
        cmd = [sys.executable, str(REPO / "tools" / "make_synthetic.py"), "--out", str(out), "--frames", "20"]
        cmd += ["--seed", "3", "--sequences", "2", "--workers", str(workers), "--quiet"]
        subprocess.run(cmd, check=True, cwd=REPO, timeout=600)

    run(tmp_path / "a", 2)
    out = tmp_path / "a"
    for i in range(20):
        frame = load_frame(out, i)
        assert 100_000 <= len(frame.points) <= 145_000
        assert frame.pose is not None
    assert (out / "sequences.json").is_file()
    run(tmp_path / "b", 1)
    files_a = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 80
    for rel in files_a:
        assert (out / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
