"""Sequence readers for occupancy forecasting: synthetic, KITTI tracking and converted Waymo sequences.

Every layout is written here, small, in its exact on-disk form: a generated synthetic dataset (two
sequences), a hand-made KITTI tracking sequence with known OXTS poses, converted Waymo segments
(the real record, converted, and frame files written by the tests).
"""

from __future__ import annotations

import io
import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from perception.data.kitti import load_frame, read_velodyne
from perception.data.sequences import (
    KittiTrackingSequences,
    SequenceError,
    SequenceSource,
    SyntheticSequences,
    WaymoSequences,
    detect_layout,
    open_sequences,
)
from perception.data.sequences.kitti_tracking import EARTH_RADIUS, oxts_to_poses
from perception.data.synthetic import SequenceLayout, SyntheticConfig, generate_frame, write_dataset
from perception.data.waymo import read_frames
from perception.data.waymo.convert import convert_segment
from perception.data.waymo.converted import FORMAT, VERSION, load_frame_arrays
from perception.structures.occupancy import AGENT_CLASSES, TrackedFrame

VEHICLE, PEDESTRIAN, CYCLIST = (AGENT_CLASSES.index(c) for c in ("vehicle", "pedestrian", "cyclist"))


def world_centres(frame: TrackedFrame) -> np.ndarray:
    """(M, 3) box centres in the world frame."""
    return frame.boxes[:, :3].astype(np.float64) @ frame.pose[:3, :3].T + frame.pose[:3, 3]


# --------------------------------------------------------------------------------------------------
# synthetic

SYN_CONFIG = SyntheticConfig(num_beams=16, azimuth_step_deg=0.5)
SYN_SEED = 0
SYN_FRAMES = 12


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic_sequences")
    write_dataset(out, frames=SYN_FRAMES, sequences=2, config=SYN_CONFIG, seed=SYN_SEED)
    return out


def copy_synthetic(synthetic: Path, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(synthetic, root)
    return root


def test_synthetic_lists_splits_and_reads_what_the_detection_reader_reads(synthetic):
    index = json.loads((synthetic / "sequences.json").read_text())["sequences"]
    source = open_sequences(synthetic)
    assert isinstance(source, SyntheticSequences) and isinstance(source, SequenceSource)
    assert source.root == synthetic and source.sequences() == ["0000", "0001"]
    train, val = SyntheticSequences(synthetic, "train"), SyntheticSequences(synthetic, "val")
    assert sorted(train.sequences() + val.sequences()) == ["0000", "0001"]
    assert [index[s]["split"] for s in val.sequences()] == ["val"]

    names = set()
    for sequence in source.sequences():
        ids = source.frame_ids(sequence)
        assert ids == index[sequence]["frames"] and len(ids) == SYN_FRAMES // 2
        for k, frame_id in enumerate(ids):
            frame = source.read(sequence, frame_id)
            kitti = load_frame(synthetic, frame_id)
            assert (frame.sequence, frame.frame_id) == (sequence, frame_id)
            assert frame.timestamp_micros == index[sequence]["timestamps_micros"][k]
            np.testing.assert_array_equal(frame.points, read_velodyne(kitti_path(synthetic, frame_id)))
            np.testing.assert_array_equal(frame.boxes, kitti.boxes)  # lidar frame, DontCare dropped
            np.testing.assert_array_equal(frame.names, kitti.names)
            np.testing.assert_array_equal(frame.pose, kitti.pose)
            assert frame.track_ids.tolist() == [str(t) for t in index[sequence]["track_ids"][k]]
            assert frame.velocities is None and frame.boxes.dtype == np.float32
            expected = [
                {
                    "Car": VEHICLE,
                    "Van": VEHICLE,
                    "Truck": VEHICLE,
                    "Pedestrian": PEDESTRIAN,
                    "Cyclist": CYCLIST,
                }[n]
                for n in frame.names
            ]
            np.testing.assert_array_equal(frame.agent_class, expected)
            names.update(frame.names.tolist())
            labels_only = source.read(sequence, frame_id, points=False)
            assert labels_only.points is None
            np.testing.assert_array_equal(labels_only.boxes, frame.boxes)
    assert "Car" in names and len(names & {"Pedestrian", "Cyclist"}) >= 1


def kitti_path(root: Path, frame_id: str) -> Path:
    return root / "training" / "velodyne" / f"{frame_id}.bin"


def test_synthetic_labels_only_read_opens_no_scan(synthetic, tmp_path):
    root = copy_synthetic(synthetic, tmp_path)
    frame_id = SyntheticSequences(root).frame_ids("0001")[2]
    kitti_path(root, frame_id).write_bytes(b"not a scan")  # 10 bytes: unreadable
    frame = SyntheticSequences(root).read("0001", frame_id, points=False)
    assert frame.points is None and len(frame.boxes) > 0
    with pytest.raises(SequenceError, match=rf"sequence 0001 frame {frame_id}: .*{frame_id}\.bin"):
        SyntheticSequences(root).read("0001", frame_id)


def test_synthetic_poses_and_boxes_agree_on_world_motion(synthetic):
    """pose @ box centre moves between frames as the generator moved each object in the world.

    The finite difference of the world centres of each track over consecutive frames must match the
    generator's true world velocity (it knows them; the files do not hold them), parked objects stay
    put while the sensor drives on, and a box's world heading follows its motion.
    """
    source = SyntheticSequences(synthetic)
    layout = SequenceLayout(SYN_FRAMES, 2)
    dt = 1.0 / SYN_CONFIG.frame_rate_hz
    checked = static = moving = 0
    ego_steps = []
    for sequence in source.sequences():
        ids = source.frame_ids(sequence)
        frames = [source.read(sequence, f, points=False) for f in ids]
        truth = [generate_frame(SYN_CONFIG, SYN_SEED, int(f), layout) for f in ids]
        ego_steps.append(np.linalg.norm(frames[1].pose[:2, 3] - frames[0].pose[:2, 3]))
        for frame, generated in zip(frames, truth, strict=True):
            np.testing.assert_array_equal(frame.track_ids, generated.track_ids.astype(str))
        for a, b, ta, tb in zip(frames, frames[1:], truth, truth[1:], strict=False):
            assert b.timestamp_micros - a.timestamp_micros == 100_000
            ca, cb = world_centres(a), world_centres(b)
            in_b = {track: j for j, track in enumerate(b.track_ids)}
            for i, track in enumerate(a.track_ids):
                if track not in in_b:
                    continue
                j = in_b[track]
                measured = (cb[j, :2] - ca[i, :2]) / dt
                true = (ta.velocity[i] + tb.velocity[j]) / 2.0
                # label files round to 1 cm: 2 cm over 0.1 s is 0.2 m/s
                np.testing.assert_allclose(measured, true, atol=0.3, err_msg=f"track {track}")
                checked += 1
                speed = np.linalg.norm(true)
                if speed == 0.0:
                    static += 1
                    assert np.linalg.norm(cb[j] - ca[i]) < 0.03
                elif speed > 3.0:
                    moving += 1
                    heading = a.boxes[i, 6] + math.atan2(a.pose[1, 0], a.pose[0, 0])
                    off = (math.atan2(true[1], true[0]) - heading + np.pi / 2) % np.pi - np.pi / 2
                    assert abs(off) < 0.05, f"track {track}: heading {heading:.3f} vs motion"
    # parked objects stay put while the sensor drives on (a wrong pose would move them)
    assert checked > 50 and static > 10 and moving > 5 and max(ego_steps) > 0.3


def test_synthetic_bad_index_entries(synthetic, tmp_path):
    root = copy_synthetic(synthetic, tmp_path)
    index_path = root / "sequences.json"
    doc = json.loads(index_path.read_text())

    broken = json.loads(json.dumps(doc))
    del broken["sequences"]["0001"]["timestamps_micros"]
    index_path.write_text(json.dumps(broken))
    with pytest.raises(
        SequenceError, match=rf"{index_path}: sequence 0001: the entry lacks timestamps_micros"
    ):
        SyntheticSequences(root)

    broken = json.loads(json.dumps(doc))
    last = broken["sequences"]["0000"]["frames"][-1]
    broken["sequences"]["0000"]["track_ids"].pop()
    index_path.write_text(json.dumps(broken))
    with pytest.raises(
        SequenceError, match=rf"{index_path}: sequence 0000 frame {last}: 6 frames, 6 timestamps and 5"
    ):
        SyntheticSequences(root)

    broken = json.loads(json.dumps(doc))
    frame_id = broken["sequences"]["0001"]["frames"][1]
    broken["sequences"]["0001"]["track_ids"][1].pop()
    index_path.write_text(json.dumps(broken))
    source = SyntheticSequences(root)
    with pytest.raises(
        SequenceError, match=rf"label_2/{frame_id}\.txt: sequence 0001 frame {frame_id}: .* track ids"
    ):
        source.read("0001", frame_id, points=False)
    with pytest.raises(
        SequenceError, match=rf"{index_path}: sequence 0001 frame 999999: .*not in the sequence"
    ):
        source.read("0001", "999999")
    with pytest.raises(SequenceError, match=r"sequence 0007 frame 000001: no such sequence"):
        source.read("0007", "000001")

    (root / "sequences.json").write_text("{")
    with pytest.raises(SequenceError, match=rf"{index_path}: not a readable synthetic sequence index"):
        SyntheticSequences(root)
    with pytest.raises(ValueError, match="split"):
        SyntheticSequences(synthetic, "test")


def test_synthetic_bad_frame_files_name_file_sequence_and_frame(synthetic, tmp_path):
    root = copy_synthetic(synthetic, tmp_path)
    source = SyntheticSequences(root)
    a, b, c = source.frame_ids("0000")[:3]
    pose = root / "training" / "pose" / f"{a}.txt"
    pose.unlink()
    with pytest.raises(SequenceError, match=rf"sequence 0000 frame {a}: {pose}: pose file does not exist"):
        source.read("0000", a, points=False)

    pose = root / "training" / "pose" / f"{b}.txt"
    pose.write_text("nan " * 12)
    with pytest.raises(
        SequenceError, match=rf"sequence 0000 frame {b}: {pose}: pose must be 12 finite numbers"
    ):
        source.read("0000", b, points=False)

    label = root / "training" / "label_2" / f"{c}.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join([lines[0], " ".join(lines[1].split()[:14]), *lines[2:]]) + "\n")
    with pytest.raises(SequenceError, match=rf"sequence 0000 frame {c}: {label}:2: 14 fields"):
        source.read("0000", c, points=False)


# --------------------------------------------------------------------------------------------------
# KITTI tracking, written by hand: a car drives north at 10 m/s past a parked car and a walker

LAT0, LON0, ALT = 49.011, 8.423, 112.0
IMU_TO_VELO_T = np.array([-0.81, 0.32, -0.80])  # IMU origin in the lidar frame (KITTI's values, rounded)
PARKED = np.array([20.0, 3.0, -0.9])  # world centre (frame-0 IMU frame: x north here, y west, z up)
PARKED_SIZE = (4.0, 1.8, 1.5)  # l, w, h
FRAMES = 5


def north_of(lat0: float, metres: float) -> float:
    """The latitude ``metres`` north of ``lat0`` on the devkit's Mercator map (scale cos(lat0))."""
    scale = math.cos(math.radians(lat0))
    my = scale * EARTH_RADIUS * math.log(math.tan(math.radians(90.0 + lat0) / 2.0)) + metres
    return math.degrees(2.0 * math.atan(math.exp(my / (scale * EARTH_RADIUS)))) - 90.0


def oxts_row(lat: float, lon: float, yaw: float) -> str:
    values = [f"{lat:.12f}", f"{lon:.12f}", f"{ALT}", "0", "0", f"{yaw:.12f}"]
    values += ["0.0"] * 17  # velocities, accelerations, angular rates
    values += ["0.05", "0.02", "4", "10", "5", "5", "5"]  # accuracies, navstat, numsats, modes
    return " ".join(values)


def label_row(frame: int, track: int, kind: str, velo_bottom: np.ndarray, lwh, yaw_lidar: float) -> str:
    """A label_02 row for a box whose bottom centre is ``velo_bottom`` in the lidar frame.

    The calibration below has R_rect = I and Tr_velo_cam the plain axis swap, so the rectified
    camera coordinates are (-y, -z, x) of the lidar's, and rotation_y = -yaw - pi/2.
    """
    x, y, z = velo_bottom
    l, w, h = lwh
    cam = (-y, -z, x)
    ry = -yaw_lidar - np.pi / 2
    fields = [frame, track, kind, 0, 0, -1.5, 100.0, 150.0, 200.0, 250.0, h, w, l, *cam, ry]
    return " ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in fields)


def write_tracking(root: Path, sequence: str = "0003") -> Path:
    training = root / "training"
    for sub in ("velodyne/" + sequence, "label_02", "calib", "oxts"):
        (training / sub).mkdir(parents=True, exist_ok=True)
    p = "7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03"
    imu = np.column_stack([np.eye(3), IMU_TO_VELO_T]).ravel()
    (training / "calib" / f"{sequence}.txt").write_text(
        "".join(f"P{i}: {p}\n" for i in range(4))
        + "R_rect 1 0 0 0 1 0 0 0 1\n"
        + "Tr_velo_cam 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
        + "Tr_imu_velo "
        + " ".join(f"{v:.6e}" for v in imu)
        + "\n"
    )
    (training / "oxts" / f"{sequence}.txt").write_text(
        "".join(oxts_row(north_of(LAT0, float(i)), LON0, np.pi / 2) + "\n" for i in range(FRAMES))
    )
    rows = []
    for i in range(FRAMES):
        sensor = np.array([i, 0.0, 0.0]) - IMU_TO_VELO_T  # lidar origin in the world
        parked = PARKED - sensor - [0.0, 0.0, PARKED_SIZE[2] / 2]
        walker = np.array([8.0, -4.0 + 0.15 * i, -1.7]) - sensor  # crosses the road at 1.5 m/s
        rows.append(label_row(i, 0, "Car", parked, PARKED_SIZE, 0.3))
        rows.append(label_row(i, 1, "Pedestrian", walker, (0.8, 0.6, 1.7), np.pi / 2))
        rows.append(
            f"{i} -1 DontCare -1 -1 -10.000000 300.0 150.0 330.0 170.0 -1000 -1000 -1000 -1000 -1000 -1000 -10"
        )
        points = np.array([[5.0, 0.0, -1.7, 0.3], [10.0 + i, 1.0, -1.0, 0.5]], dtype="<f4")
        points.tofile(training / "velodyne" / sequence / f"{i:06d}.bin")
    (training / "label_02" / f"{sequence}.txt").write_text("\n".join(rows) + "\n")
    return root


def test_oxts_to_poses_axes():
    """Driving 1 m north while heading north is 1 m forward; heading east, it is 1 m to the left."""
    for yaw, expected in ((np.pi / 2, [1.0, 0.0, 0.0]), (0.0, [0.0, 1.0, 0.0])):
        rows = np.array([[LAT0, LON0, ALT, 0, 0, yaw], [north_of(LAT0, 1.0), LON0, ALT + 0.5, 0, 0, yaw]])
        poses = oxts_to_poses(rows)
        np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
        np.testing.assert_allclose(poses[1, :3, 3], [*expected[:2], 0.5], atol=1e-6)
        np.testing.assert_allclose(poses[1, :3, :3], np.eye(3), atol=1e-12)
    # Rz(yaw) Ry(pitch) Rx(roll): a rolled IMU's y axis tilts up, a pitched one's x axis tilts down
    roll, pitch = 0.1, 0.2
    pose = oxts_to_poses(np.array([[LAT0, LON0, ALT, 0, 0, 0], [LAT0, LON0, ALT, roll, pitch, 0.3]]))[1]
    c, s = math.cos, math.sin
    rz = np.array([[c(0.3), -s(0.3), 0], [s(0.3), c(0.3), 0], [0, 0, 1]])
    ry = np.array([[c(pitch), 0, s(pitch)], [0, 1, 0], [-s(pitch), 0, c(pitch)]])
    rx = np.array([[1, 0, 0], [0, c(roll), -s(roll)], [0, s(roll), c(roll)]])
    np.testing.assert_allclose(pose[:3, :3], rz @ ry @ rx, atol=1e-12)


def test_kitti_tracking_poses_boxes_and_ids(tmp_path):
    root = write_tracking(tmp_path)
    source = open_sequences(root)
    assert isinstance(source, KittiTrackingSequences) and detect_layout(root) == "kitti_tracking"
    assert source.sequences() == ["0003"]
    ids = source.frame_ids("0003")
    assert ids == [f"{i:06d}" for i in range(FRAMES)]
    frames = [source.read("0003", f) for f in ids]
    for i, frame in enumerate(frames):
        assert frame.timestamp_micros == i * 100_000
        # the lidar pose: IMU pose (1 m north, i.e. forward, a frame) · inv(Tr_imu_velo)
        np.testing.assert_allclose(frame.pose[:3, :3], np.eye(3), atol=1e-9)
        np.testing.assert_allclose(frame.pose[:3, 3], [i - IMU_TO_VELO_T[0], *-IMU_TO_VELO_T[1:]], atol=1e-5)
        assert frame.track_ids.tolist() == ["0", "1"]  # DontCare dropped
        assert frame.names.tolist() == ["Car", "Pedestrian"]
        np.testing.assert_array_equal(frame.agent_class, [VEHICLE, PEDESTRIAN])
        np.testing.assert_allclose(frame.boxes[0, 3:], [*PARKED_SIZE, 0.3], atol=1e-5)  # l w h yaw
        np.testing.assert_allclose(frame.boxes[1, 6], np.pi / 2, atol=1e-5)
        assert frame.points.shape == (2, 4) and frame.points[1, 0] == 10.0 + i
    centres = np.array([world_centres(f) for f in frames])  # (F, M, 3)
    np.testing.assert_allclose(centres[:, 0], np.tile(PARKED, (FRAMES, 1)), atol=1e-4)  # it stays put
    np.testing.assert_allclose(
        np.diff(centres[:, 1], axis=0), np.tile([0, 0.15, 0], (FRAMES - 1, 1)), atol=1e-4
    )
    # in the sensor frame the parked car comes 1 m closer each frame
    np.testing.assert_allclose(np.diff([f.boxes[0, 0] for f in frames]), -1.0, atol=1e-4)

    labels_only = source.read("0003", "000002", points=False)
    assert labels_only.points is None
    np.testing.assert_array_equal(labels_only.boxes, frames[2].boxes)
    assert KittiTrackingSequences(root, sequences=["0003"]).sequences() == ["0003"]
    with pytest.raises(SequenceError, match=r"sequence 0009 .*no such folder"):
        KittiTrackingSequences(root, sequences=["0009"])


def test_kitti_tracking_missing_scan_is_an_error_only_with_points(tmp_path):
    root = write_tracking(tmp_path)
    scan = root / "training" / "velodyne" / "0003" / "000002.bin"
    scan.unlink()  # a gap in the numbering; the labels still list frame 2
    source = KittiTrackingSequences(root)
    assert source.frame_ids("0003") == ["000000", "000001", "000003", "000004"]
    with pytest.raises(SequenceError, match=rf"{scan}: sequence 0003 frame 000002: no velodyne scan"):
        source.read("0003", "000002")
    frame = source.read("0003", "000002", points=False)
    assert frame.points is None and frame.track_ids.tolist() == ["0", "1"]


def test_kitti_tracking_bad_files_name_file_sequence_and_frame(tmp_path):
    root = write_tracking(tmp_path)
    training = root / "training"
    oxts = training / "oxts" / "0003.txt"
    rows = oxts.read_text().splitlines()

    oxts.write_text("\n".join(rows[:3]) + "\n")  # fewer rows than frames
    with pytest.raises(SequenceError, match=rf"{oxts}: sequence 0003 frame 000004: the OXTS file has 3 rows"):
        KittiTrackingSequences(root).frame_ids("0003")
    with pytest.raises(SequenceError, match=rf"{oxts}: sequence 0003 frame 000003: the OXTS file has 3 rows"):
        KittiTrackingSequences(root).read("0003", "000003", points=False)
    assert KittiTrackingSequences(root).read("0003", "000002").frame_id == "000002"

    nan_roll = " ".join([*rows[2].split()[:3], "nan", *rows[2].split()[4:]])
    oxts.write_text("\n".join([*rows[:2], nan_roll, *rows[3:]]) + "\n")
    with pytest.raises(SequenceError, match=rf"{oxts}:3: sequence 0003 frame 000002: non-finite pose"):
        KittiTrackingSequences(root).read("0003", "000000")
    oxts.write_text("\n".join([*rows[:1], " ".join(rows[1].split()[:25]), *rows[2:]]) + "\n")
    with pytest.raises(SequenceError, match=rf"{oxts}:2: sequence 0003 frame 000001: 25 fields, expected 30"):
        KittiTrackingSequences(root).read("0003", "000000")
    oxts.write_text("\n".join(rows) + "\n")

    label = training / "label_02" / "0003.txt"
    lines = label.read_text().splitlines()
    label.write_text("\n".join([*lines[:4], " ".join(lines[4].split()[:16]), *lines[5:]]) + "\n")
    with pytest.raises(
        SequenceError, match=rf"{label}:5: sequence 0003 frame 000001: 16 fields, expected 17"
    ):
        KittiTrackingSequences(root).read("0003", "000000")
    label.write_text("\n".join([*lines[:4], lines[4].replace("Pedestrian", "Walker"), *lines[5:]]) + "\n")
    with pytest.raises(
        SequenceError, match=rf"{label}:5: sequence 0003 frame 000001: unknown object type 'Walker'"
    ):
        KittiTrackingSequences(root).read("0003", "000001", points=False)
    label.unlink()
    with pytest.raises(SequenceError, match=rf"{label}: sequence 0003 .*label file does not exist"):
        KittiTrackingSequences(root).read("0003", "000001")

    calib = training / "calib" / "0003.txt"
    calib.write_text("\n".join(line for line in calib.read_text().splitlines() if "imu" not in line) + "\n")
    with pytest.raises(SequenceError, match=rf"{calib}: sequence 0003 frame 000000: no Tr_imu_velo"):
        KittiTrackingSequences(root).read("0003", "000000")
    with pytest.raises(SequenceError, match=r"sequence 0003 frame 12: not a 6-digit frame id"):
        KittiTrackingSequences(root).read("0003", "12")


# --------------------------------------------------------------------------------------------------
# converted Waymo

CONTEXT = "seg_100000000000000001_000_000_000_000"
T0 = 1_550_000_000_000_000
SPEEDS = np.array([[0, 0], [1.2, 0], [np.nan, np.nan], [3, -1]], np.float32)  # NaN: no metadata


def write_waymo_frame(folder: Path, timestamp: int, *, pose=None, speeds=True, corrupt_points=False) -> str:
    """A frame file of the converted layout; ``speeds=False`` writes one as the converter did before."""
    shift = (timestamp - T0) / 1e5  # the vehicle drives 1 m along world x each 0.1 s
    arrays = {
        "points": np.arange(24, dtype=np.float32).reshape(3, 8),
        "boxes": np.array(
            [[10 - shift, 2, 1, 4.5, 2, 1.6, 0.1], [5, -3, 1, 0.8, 0.7, 1.8, 0]] * 2, np.float32
        ),
        "types": np.array([1, 2, 3, 4], np.int8),
        "names": np.array(["VEHICLE", "PEDESTRIAN", "SIGN", "CYCLIST"]),
        "ids": np.array(["car", "walker", "sign", "bike"]),
        "num_lidar_points": np.array([100, 20, 3, 8], np.int32),
        "difficulty": np.array([1, 1, 2, 2], np.int8),
        "pose": np.array(
            [[1, 0, 0, 100.0 + shift], [0, 1, 0, 50], [0, 0, 1, 3], [0, 0, 0, 1]] if pose is None else pose
        ),
    }
    if speeds:
        arrays["speeds"] = SPEEDS
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    if corrupt_points:  # the points member rewritten as garbage: only a read of the points fails
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out := io.BytesIO(), "w") as dst:
            for item in src.namelist():
                dst.writestr(item, b"garbage" if item == "points.npy" else src.read(item))
        data = out.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{timestamp}.npz").write_bytes(data)
    return f"{timestamp}.npz"


def write_waymo_index(folder: Path, timestamps: list[int]) -> None:
    frames = [{"timestamp_micros": t, "file": f"{t}.npz", "record": i} for i, t in enumerate(timestamps)]
    index = {
        "format": FORMAT,
        "version": VERSION,
        "context_name": folder.name,
        "split": "train",
        "frames": frames,
    }
    (folder / "index.json").write_text(json.dumps(index))


def test_waymo_sequences_from_written_frames(tmp_path):
    folder = tmp_path / "train" / CONTEXT
    stamps = [T0 + 200_000, T0, T0 + 100_000]  # the index need not be in time order
    for t in stamps:
        write_waymo_frame(folder, t, speeds=t != T0 + 100_000, corrupt_points=t == T0 + 200_000)
    write_waymo_index(folder, stamps)
    (tmp_path / "train" / "under_way").mkdir()  # a segment folder without an index is no sequence
    write_waymo_frame(tmp_path / "train" / "under_way", T0)

    source = open_sequences(tmp_path)
    assert isinstance(source, WaymoSequences) and detect_layout(tmp_path) == "waymo"
    assert source.sequences() == [CONTEXT]
    assert source.frame_ids(CONTEXT) == [str(T0), str(T0 + 100_000), str(T0 + 200_000)]
    frames = [source.read(CONTEXT, f, points=f != str(T0 + 200_000)) for f in source.frame_ids(CONTEXT)]
    first = frames[0]
    assert first.timestamp_micros == T0 and first.points.shape == (3, 8)
    np.testing.assert_array_equal(first.agent_class, [VEHICLE, PEDESTRIAN, -1, CYCLIST])
    assert first.track_ids.tolist() == ["car", "walker", "sign", "bike"]
    assert first.names.tolist() == ["VEHICLE", "PEDESTRIAN", "SIGN", "CYCLIST"]
    np.testing.assert_array_equal(first.velocities, SPEEDS)
    assert frames[1].velocities is None  # converted before speeds were kept: still readable
    assert frames[2].points is None  # labels only: the (corrupt) points are never read
    np.testing.assert_allclose([world_centres(f)[0] for f in frames], [[110, 52, 4]] * 3)  # parked car
    with pytest.raises(SequenceError, match=rf"{T0 + 200_000}\.npz: sequence {CONTEXT} frame {T0 + 200_000}"):
        source.read(CONTEXT, str(T0 + 200_000))
    with pytest.raises(SequenceError, match=rf"sequence {CONTEXT} frame 12: no such timestamp"):
        source.read(CONTEXT, "12")
    assert set(load_frame_arrays(folder / f"{T0}.npz", ["boxes", "speeds"])) == {"boxes", "speeds"}
    assert "speeds" not in load_frame_arrays(folder / f"{T0 + 100_000}.npz")


def test_waymo_frame_without_pose_is_an_error(tmp_path):
    folder = tmp_path / "val" / CONTEXT
    write_waymo_frame(folder, T0, pose=np.full((4, 4), np.nan))
    write_waymo_index(folder, [T0])
    with pytest.raises(SequenceError, match=rf"{T0}\.npz: sequence {CONTEXT} frame {T0}: .*no vehicle pose"):
        WaymoSequences(tmp_path, "val").read(CONTEXT, str(T0), points=False)
    with pytest.raises(SequenceError, match=r"no converted Waymo split 'train'"):
        WaymoSequences(tmp_path)


def test_waymo_sequences_over_the_real_record(waymo_record, tmp_path):
    convert_segment(waymo_record, tmp_path, "val")
    expected = next(read_frames(waymo_record))
    source = open_sequences(tmp_path, split="val")
    assert source.sequences() == [expected.context_name]
    (frame_id,) = source.frame_ids(expected.context_name)
    assert frame_id == str(expected.timestamp_micros)
    frame = source.read(expected.context_name, frame_id)
    assert frame.points.shape == (0, 8) and frame.boxes.shape == (18, 7)
    np.testing.assert_array_equal(frame.boxes, expected.boxes)
    np.testing.assert_array_equal(frame.pose, expected.pose)
    assert frame.track_ids.tolist() == expected.ids.tolist()
    assert sorted(frame.agent_class.tolist()) == [-1] * 17 + [VEHICLE]
    np.testing.assert_array_equal(frame.velocities, expected.speed[:, :2])
    assert np.isfinite(frame.velocities).all()


# --------------------------------------------------------------------------------------------------
# layout detection


def test_unknown_layout_names_the_root_and_what_was_looked_for(tmp_path):
    (tmp_path / "training" / "velodyne").mkdir(parents=True)  # KITTI object layout: no sequences
    with pytest.raises(SequenceError) as info:
        open_sequences(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "sequences.json" in message and "label_02" in message and "index.json" in message
    with pytest.raises(SequenceError, match="does not exist"):
        open_sequences(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="kind must be one of"):
        open_sequences(tmp_path, kind="nuscenes")
    write_tracking(tmp_path)
    assert isinstance(open_sequences(tmp_path, "kitti_tracking", sequences=["0003"]), KittiTrackingSequences)
