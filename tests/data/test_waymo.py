"""Waymo reader without TensorFlow: record framing, protos, range-image geometry, labels, v2 parquet.

The real record (tests/data/waymo, the ``waymo_record`` fixture) has its range images stripped, so
points are checked on synthetic frames: known points on pixel rays, computed here by hand from the
official geometry, go through the inverse geometry into range images and must come back to ~1 cm.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from perception.data.waymo import (
    LIDAR_NAMES,
    POINT_COLUMNS,
    SHORT_RANGE_SHAPE,
    TOP_SHAPE,
    LidarCalibration,
    WaymoFormatError,
    WaymoFrame,
    decode_frame,
    decode_matrix_float,
    encode_matrix_float,
    euler_from_rotation,
    masked_crc32c,
    points_to_range_image_pixels,
    range_image_azimuths,
    range_image_to_points,
    read_frames,
    read_frames_v2,
    read_records,
    rotation_from_euler,
    write_frames_v2,
    write_records,
)
from perception.data.waymo import protos as wpb
from tests.support.waymo_synthetic import default_lidar_calibrations, make_synthetic_frame, synthetic_top_pose

CONTEXT = "1071392229495085036_1844_790_1864_790"


# --------------------------------------------------------------------------------------------------
# hand-written official geometry (the specification the reader must meet)


def rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def ry(a: float) -> np.ndarray:
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def rx(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def hand_points(
    calib: LidarCalibration, shape, rows, cols, ranges, top_pose=None, frame_pose=None
) -> np.ndarray:
    """Vehicle-frame points of pixels, one at a time, straight from REFERENCES.md."""
    height, width = shape
    e = calib.extrinsic
    yaw = math.atan2(e[1, 0], e[0, 0])
    out = []
    for row, col, r in zip(rows, cols, ranges, strict=True):
        if len(calib.beam_inclinations):
            incl = calib.beam_inclinations[height - 1 - row]  # ascending list, row 0 = highest
        else:
            step = (calib.inclination_max - calib.inclination_min) / height
            incl = calib.inclination_min + (height - 1 - row + 0.5) * step
        az = math.pi - (col + 0.5) * 2 * math.pi / width - yaw
        sensor = np.array(
            [r * math.cos(incl) * math.cos(az), r * math.cos(incl) * math.sin(az), r * math.sin(incl)]
        )
        p = e[:3, :3] @ sensor + e[:3, 3]
        if top_pose is not None:
            roll, pitch, pyaw, x, y, z = top_pose[row, col].astype(np.float64)
            world = rz(pyaw) @ ry(pitch) @ rx(roll) @ p + np.array([x, y, z])
            inv = np.linalg.inv(frame_pose)
            p = inv[:3, :3] @ world + inv[:3, 3]
        out.append(p)
    return np.array(out).reshape(-1, 3)


def known_scene(seed: int, top_pose, frame_pose, per_image: int = 300):
    """Known points on pixel rays for every lidar and return; returns (points dict, expected (N, 8))."""
    rng = np.random.default_rng(seed)
    calibs = default_lidar_calibrations()
    points, expected = {}, []
    for lidar in sorted(calibs):
        shape = TOP_SHAPE if lidar == 1 else SHORT_RANGE_SHAPE
        max_range = 75.0 if lidar == 1 else 20.0
        for ret in (0, 1):
            flat = np.sort(rng.choice(shape[0] * shape[1], size=per_image, replace=False))
            rows, cols = np.divmod(flat, shape[1])
            ranges = rng.uniform(1.0, max_range, per_image).astype(np.float32).astype(np.float64)
            attrs = np.column_stack(
                [
                    rng.uniform(0, 2, per_image),
                    rng.uniform(0, 1, per_image),
                    rng.choice([-1.0, 1.0], per_image),
                ]
            ).astype(np.float32)
            xyz = hand_points(
                calibs[lidar], shape, rows, cols, ranges, top_pose if lidar == 1 else None, frame_pose
            )
            points[lidar, ret] = np.column_stack([xyz, attrs])
            block = np.zeros((per_image, 8), np.float32)
            block[:, :3], block[:, 3:6], block[:, 6], block[:, 7] = xyz, attrs, ret, lidar
            expected.append(block)
    return points, np.concatenate(expected)


FRAME_POSE = np.eye(4)
FRAME_POSE[:3, :3] = rz(0.7) @ ry(-0.02) @ rx(0.01)
FRAME_POSE[:3, 3] = (1234.5, -876.25, 31.0)


@pytest.fixture(scope="module", params=[(10.0, 0.2), (0.0, 0.0)], ids=["moving", "still"])
def synthetic(request):
    speed, yaw_rate = request.param
    top_pose = synthetic_top_pose(FRAME_POSE, TOP_SHAPE, speed, yaw_rate)
    points, expected = known_scene(1, top_pose, FRAME_POSE)
    synth = make_synthetic_frame(points, pose=FRAME_POSE, top_pose=top_pose)
    return synth, expected, speed


@pytest.fixture(scope="module")
def small_synthetic():
    """A synthetic frame with a few points a lidar (fast), default labels and ego motion."""
    top_pose = synthetic_top_pose(FRAME_POSE)
    points, _ = known_scene(2, top_pose, FRAME_POSE, per_image=20)
    return make_synthetic_frame(points, pose=FRAME_POSE, top_pose=top_pose)


# --------------------------------------------------------------------------------------------------
# the real record


def test_real_record_framing(waymo_record: Path):
    data = waymo_record.read_bytes()
    payloads = list(read_records(waymo_record))
    assert len(payloads) == 1
    length = int.from_bytes(data[:8], "little")
    assert len(data) == 12 + length + 4 == 12 + len(payloads[0]) + 4
    assert masked_crc32c(data[:8]) == int.from_bytes(data[8:12], "little")
    assert masked_crc32c(payloads[0]) == int.from_bytes(data[-4:], "little")


def test_write_records_reproduces_the_real_file(waymo_record: Path, tmp_path: Path):
    payload = next(read_records(waymo_record))
    out = write_records(tmp_path / "copy.tfrecord", [payload])
    assert out.read_bytes() == waymo_record.read_bytes()


def test_real_frame_protos_keep_every_byte(waymo_record: Path):
    payload = next(read_records(waymo_record))
    frame = wpb.Frame.FromString(payload)
    assert frame.context.name == CONTEXT
    assert len(frame.context.camera_calibrations) == 5
    assert len(frame.laser_labels) == 18
    # unknown fields (e.g. keypoints, newer fields) survive a parse / serialize round trip
    assert len(frame.SerializeToString()) == len(payload)
    assert wpb.Frame.FromString(frame.SerializeToString()) == frame


def test_real_frame(waymo_record: Path):
    frames = list(read_frames(waymo_record))
    assert len(frames) == 1
    f = frames[0]
    assert isinstance(f, WaymoFrame)
    assert f.context_name == CONTEXT
    assert f.frame_id == f"{CONTEXT}_{f.timestamp_micros}"
    assert f.timestamp_micros > 1_000_000_000_000_000
    # range images are stripped: no points, but the columns are there
    assert f.points.shape == (0, len(POINT_COLUMNS)) and f.points.dtype == np.float32
    # calibrations: TOP 64 explicit inclinations, the other four none
    assert sorted(f.laser_calibrations) == [1, 2, 3, 4, 5]
    top = f.laser_calibrations[1]
    assert len(top.beam_inclinations) == 64
    assert np.all(np.diff(top.beam_inclinations) > 0)
    assert top.row_inclinations(64)[0] == top.beam_inclinations[-1]
    for lidar in (2, 3, 4, 5):
        c = f.laser_calibrations[lidar]
        assert len(c.beam_inclinations) == 0 and c.inclination_min < c.inclination_max
    for c in f.laser_calibrations.values():
        r = c.extrinsic[:3, :3]
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
        np.testing.assert_array_equal(c.extrinsic[3], [0, 0, 0, 1])
    # pose: a rigid transform
    r = f.pose[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(f.pose[3], [0, 0, 0, 1])
    # labels: 17 signs and 1 vehicle with 15 points
    assert f.num_boxes == 18
    assert sorted(f.names.tolist()) == ["SIGN"] * 17 + ["VEHICLE"]
    vehicle = int(np.flatnonzero(f.names == "VEHICLE")[0])
    assert f.types[vehicle] == 1 and f.num_lidar_points[vehicle] == 15
    assert np.all(f.types[f.names == "SIGN"] == 3)
    assert f.boxes.dtype == np.float32 and np.isfinite(f.boxes).all()
    assert np.all((f.boxes[:, 6] >= -np.pi) & (f.boxes[:, 6] < np.pi))
    assert np.all(f.boxes[:, 3:6] > 0)
    assert set(f.difficulty.tolist()) <= {1, 2}
    raw = wpb.Frame.FromString(next(read_records(waymo_record))).laser_labels
    for i, label in enumerate(raw):
        assert f.ids[i] == label.id
        assert f.boxes[i, 3] == pytest.approx(label.box.length) and f.boxes[i, 4] == pytest.approx(
            label.box.width
        )
        if label.detection_difficulty_level == 0:
            assert f.difficulty[i] == (2 if label.num_lidar_points_in_box <= 5 else 1)
        else:
            assert f.difficulty[i] == label.detection_difficulty_level
    np.testing.assert_array_equal(f.no_lidar_points, f.num_lidar_points <= 0)
    assert len(set(f.ids.tolist())) == 18


def test_corrupt_byte_raises_crc_error_with_file_and_offset(waymo_record: Path, tmp_path: Path):
    data = bytearray(waymo_record.read_bytes())
    # two records, the second corrupted in its payload
    path = write_records(tmp_path / "two.tfrecord", [bytes(data[12:-4]), bytes(data[12:-4])])
    broken = bytearray(path.read_bytes())
    second = len(data)
    broken[second + 12 + 100] ^= 0x01
    bad = tmp_path / "corrupt.tfrecord"
    bad.write_bytes(bytes(broken))
    it = read_records(bad)
    next(it)  # the first record is fine
    with pytest.raises(WaymoFormatError, match="CRC") as err:
        next(it)
    assert str(bad) in str(err.value) and f"offset {second}" in str(err.value) and "corrupt" in str(err.value)
    # a corrupted length field is caught by its own CRC
    broken = bytearray(data)
    broken[2] ^= 0x10
    bad.write_bytes(bytes(broken))
    with pytest.raises(WaymoFormatError, match=r"CRC.*length|length.*CRC") as err:
        list(read_records(bad))
    assert "offset 0" in str(err.value)
    with pytest.raises(WaymoFormatError, match="CRC"):
        list(read_frames(bad))


@pytest.mark.parametrize("keep", [5, 12, 500, -1])
def test_truncated_file_raises(waymo_record: Path, tmp_path: Path, keep: int):
    data = waymo_record.read_bytes()
    bad = tmp_path / "truncated.tfrecord"
    bad.write_bytes(data[:keep])
    with pytest.raises(WaymoFormatError, match="truncated") as err:
        list(read_records(bad))
    assert str(bad) in str(err.value) and "offset 0" in str(err.value)


def test_records_round_trip(tmp_path: Path):
    payloads = [b"", b"abc", bytes(range(256)) * 40]
    path = write_records(tmp_path / "r.tfrecord", payloads)
    assert list(read_records(path)) == payloads
    assert path.stat().st_size == sum(16 + len(p) for p in payloads)
    assert list(read_records(write_records(tmp_path / "empty.tfrecord", []))) == []


# --------------------------------------------------------------------------------------------------
# protos


def test_proto_schema_numbers_and_names():
    box = wpb.Label.Box.DESCRIPTOR.fields_by_name
    assert [
        box[n].number for n in ("center_x", "center_y", "center_z", "width", "length", "height", "heading")
    ] == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
    ]
    label = wpb.Label.DESCRIPTOR.fields_by_name
    assert {
        n: label[n].number
        for n in (
            "id",
            "detection_difficulty_level",
            "tracking_difficulty_level",
            "num_lidar_points_in_box",
            "most_visible_camera_name",
            "camera_synced_box",
            "num_top_lidar_points_in_box",
        )
    } == {
        "id": 4,
        "detection_difficulty_level": 5,
        "tracking_difficulty_level": 6,
        "num_lidar_points_in_box": 7,
        "most_visible_camera_name": 11,
        "camera_synced_box": 12,
        "num_top_lidar_points_in_box": 13,
    }
    frame = wpb.Frame.DESCRIPTOR.fields_by_name
    assert {n: frame[n].number for n in frame} == {
        "context": 1,
        "timestamp_micros": 2,
        "pose": 3,
        "images": 4,
        "lasers": 5,
        "laser_labels": 6,
        "no_label_zones": 7,
        "camera_labels": 8,
        "projected_lidar_labels": 9,
    }
    ri = wpb.RangeImage.DESCRIPTOR.fields_by_name
    assert ri["range_image_compressed"].number == 2 and ri["range_image_pose_compressed"].number == 4
    obj = wpb.Object.DESCRIPTOR.fields_by_name
    assert {n: obj[n].number for n in obj} == {
        "object": 1,
        "score": 2,
        "overlap_with_nlz": 3,
        "context_name": 4,
        "frame_timestamp_micros": 5,
        "camera_name": 6,
    }
    assert wpb.Frame.DESCRIPTOR.full_name == "waymo.open_dataset.Frame"
    assert wpb.Label.TYPE_SIGN == 3 and wpb.Label.Type.Name(4) == "TYPE_CYCLIST"
    assert wpb.LaserName.TOP == 1 and wpb.LaserName.Name.Name(5) == "REAR"
    assert wpb.Label.LEVEL_2 == 2
    assert wpb.Object().score == pytest.approx(1.0)  # the schema's default
    assert wpb.MatrixFloat.DESCRIPTOR.fields_by_name["data"].GetOptions().packed


def test_objects_round_trip_and_unknown_fields():
    objects = wpb.Objects()
    o = objects.objects.add(score=0.25, context_name="ctx", frame_timestamp_micros=7)
    o.object.box.center_x, o.object.box.length, o.object.box.heading = 1.5, 4.0, -0.5
    o.object.type = wpb.Label.TYPE_VEHICLE
    data = objects.SerializeToString()
    assert wpb.Objects.FromString(data) == objects
    # a label with an undeclared field (8: laser_keypoints) keeps it through parse / serialize
    label_bytes = wpb.Label(id="a").SerializeToString() + b"\x42\x03\x0a\x01\x00"
    label = wpb.Label.FromString(label_bytes)
    assert label.id == "a" and label.SerializeToString() == label_bytes


def test_matrix_float_codec():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    raw = encode_matrix_float(a)
    message = wpb.MatrixFloat.FromString(raw)
    assert list(message.shape.dims) == [2, 3, 4]
    np.testing.assert_array_equal(np.asarray(message.data, np.float32), a.ravel())
    np.testing.assert_array_equal(decode_matrix_float(raw), a)
    # bytes written by protobuf itself, and a layout the fast path does not take (unknown field)
    official = wpb.MatrixFloat(
        data=a.ravel().tolist(), shape=wpb.MatrixShape(dims=[2, 3, 4])
    ).SerializeToString()
    np.testing.assert_array_equal(decode_matrix_float(official), a)
    np.testing.assert_array_equal(decode_matrix_float(b"\x18\x05" + official), a)
    with pytest.raises(ValueError):
        decode_matrix_float(raw[:-3])
    with pytest.raises(ValueError):
        decode_matrix_float(encode_matrix_float(a)[:50] + b"\x12\x03\x08\x05\x00")


# --------------------------------------------------------------------------------------------------
# conventions on hand-derived pixels


def test_inclination_and_azimuth_conventions():
    uniform = LidarCalibration(
        name=2, extrinsic=np.eye(4), beam_inclinations=np.zeros(0), inclination_min=-0.5, inclination_max=0.5
    )
    np.testing.assert_allclose(uniform.row_inclinations(4), [0.375, 0.125, -0.125, -0.375])
    explicit = LidarCalibration(
        name=1,
        extrinsic=np.eye(4),
        beam_inclinations=np.array([-0.3, -0.1, 0.05]),
        inclination_min=-0.3,
        inclination_max=0.05,
    )
    np.testing.assert_allclose(explicit.row_inclinations(3), [0.05, -0.1, -0.3])
    with pytest.raises(ValueError, match="3 beam inclinations"):
        explicit.row_inclinations(4)
    np.testing.assert_allclose(
        range_image_azimuths(4, np.eye(4)), [3 * np.pi / 4, np.pi / 4, -np.pi / 4, -3 * np.pi / 4]
    )
    yawed = np.eye(4)
    yawed[:3, :3] = rz(0.3)
    np.testing.assert_allclose(range_image_azimuths(4, yawed), np.array([3, 1, -1, -3]) * np.pi / 4 - 0.3)


def test_one_pixel_to_point_by_hand():
    extrinsic = np.eye(4)
    extrinsic[:3, :3] = rz(np.pi / 2)
    extrinsic[:3, 3] = (1.0, 2.0, 3.0)
    calib = LidarCalibration(
        name=3, extrinsic=extrinsic, beam_inclinations=np.zeros(0), inclination_min=-0.5, inclination_max=0.5
    )
    image = np.zeros((4, 4, 4), np.float32)
    image[1, 0] = (10.0, 0.5, 0.25, -1.0)  # row 1: inclination 0.125; column 0: 3π/4 in the vehicle frame
    xyz, channels, index = range_image_to_points(image, calib)
    incl, az = 0.125, 3 * np.pi / 4
    want = np.array([1.0, 2.0, 3.0]) + 10 * np.array(
        [np.cos(incl) * np.cos(az), np.cos(incl) * np.sin(az), np.sin(incl)]
    )
    np.testing.assert_allclose(xyz, [want], atol=1e-9)
    np.testing.assert_array_equal(channels, [[0.5, 0.25, -1.0]])
    assert index.tolist() == [4]
    rows, cols, ranges = points_to_range_image_pixels(xyz, calib, (4, 4))
    assert (rows[0], cols[0]) == (1, 0) and ranges[0] == pytest.approx(10.0)
    # a per-pixel pose: the vehicle turned by 90° and 10 m along world x at that pixel; the frame at the origin
    pose = np.zeros((4, 4, 6), np.float32)
    pose[1, 0] = (0, 0, np.pi / 2, 10, 0, 0)
    moved, _, _ = range_image_to_points(image, calib, pose, np.eye(4))
    np.testing.assert_allclose(moved[0], rz(np.pi / 2) @ want + [10, 0, 0], atol=1e-5)


def test_euler_convention():
    roll, pitch, yaw = 0.1, -0.2, 2.5
    np.testing.assert_allclose(
        rotation_from_euler(roll, pitch, yaw), rz(yaw) @ ry(pitch) @ rx(roll), atol=1e-12
    )
    np.testing.assert_allclose(
        euler_from_rotation(rz(yaw) @ ry(pitch) @ rx(roll)), [roll, pitch, yaw], atol=1e-12
    )


# --------------------------------------------------------------------------------------------------
# synthetic round trip


def test_synthetic_round_trip_every_lidar_and_return(synthetic, tmp_path: Path):
    synth, expected, speed = synthetic
    assert synth.dropped == 0
    np.testing.assert_array_equal(synth.points, expected)
    path = write_records(tmp_path / "synth.tfrecord", [synth.payload()])
    (frame,) = list(read_frames(path))
    assert frame.points.shape == expected.shape
    np.testing.assert_array_equal(frame.points[:, 3:], expected[:, 3:])
    for lidar in LIDAR_NAMES:
        for ret in (0, 1):
            sel = (expected[:, 7] == lidar) & (expected[:, 6] == ret)
            assert sel.sum() == 300
            err = np.linalg.norm(frame.points[sel, :3] - expected[sel, :3], axis=1)
            assert err.max() < 0.01, (LIDAR_NAMES[lidar], ret, err.max())
    # the chosen lidars and returns only
    (top2,) = list(read_frames(path, lidars=["TOP"], returns=(1,)))
    sel = (expected[:, 7] == 1) & (expected[:, 6] == 1)
    np.testing.assert_allclose(top2.points, frame.points[sel], atol=0)
    # without the per-pixel pose TOP's points move by the ego motion (when there is any)
    proto = wpb.Frame.FromString(synth.payload())
    proto.lasers[0].ri_return1.ClearField("range_image_pose_compressed")
    unposed = decode_frame(proto)
    top = expected[:, 7] == 1
    shift = np.linalg.norm(unposed.points[top, :3] - expected[top, :3], axis=1)
    if speed:
        assert shift.max() > 0.2
    else:
        assert shift.max() < 0.01


def test_synthetic_labels_and_difficulty(small_synthetic, tmp_path: Path):
    frame = decode_frame(small_synthetic.payload(), source="mem")
    assert frame.names.tolist() == ["VEHICLE", "PEDESTRIAN", "SIGN", "CYCLIST"]
    assert frame.types.tolist() == [1, 2, 3, 4]
    assert frame.num_lidar_points.tolist() == [250, 3, 0, 40]
    assert frame.difficulty.tolist() == [1, 2, 2, 1]
    assert frame.no_lidar_points.tolist() == [False, False, True, False]
    assert frame.ids.tolist() == ["object_000", "object_001", "object_002", "object_003"]
    assert np.isfinite(frame.speed[0]).all() and np.isnan(frame.speed[1:]).all()
    assert (frame.time_of_day, frame.location, frame.weather) == ("Day", "location_sf", "sunny")
    np.testing.assert_allclose(frame.pose, FRAME_POSE)
    # explicit difficulty wins; headings are wrapped to [-π, π)
    synth = make_synthetic_frame(
        {(2, 0): [[8.0, 0.0, 0.5]]},
        boxes=[[1, 2, 3, 4, 2, 1.5, 4.0], [0, 0, 0, 1, 1, 1, -np.pi]],
        types=["CYCLIST", 2],
        num_lidar_points=[40, 9],
        difficulty=[2, 0],
    )
    f = decode_frame(synth.payload())
    assert f.difficulty.tolist() == [2, 1] and f.names.tolist() == ["CYCLIST", "PEDESTRIAN"]
    assert f.boxes[0, 6] == pytest.approx(4.0 - 2 * np.pi) and f.boxes[1, 6] == pytest.approx(-np.pi)


def test_random_scene_frame():
    synth = make_synthetic_frame(seed=3, fill=0.3)
    frame = decode_frame(synth.payload())
    assert len(frame.points) > 50_000
    np.testing.assert_array_equal(frame.points, synth.points)
    assert set(np.unique(frame.points[:, 7]).tolist()) == {1, 2, 3, 4, 5}
    assert set(np.unique(frame.points[:, 6]).tolist()) == {0, 1}
    assert np.isfinite(frame.points).all()


# --------------------------------------------------------------------------------------------------
# errors


def test_unknown_label_type(small_synthetic, tmp_path: Path, caplog):
    proto = wpb.Frame.FromString(small_synthetic.payload())
    proto.laser_labels[1].ClearField("type")
    proto.laser_labels[1].MergeFromString(b"\x18\x09")  # type = 9: outside the enum, kept as unknown field
    path = write_records(tmp_path / "unknown.tfrecord", [proto])
    with pytest.raises(WaymoFormatError, match="unknown type 9") as err:
        list(read_frames(path))
    assert str(path) in str(err.value) and "object_001" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="perception.data.waymo"):
        (frame,) = list(read_frames(path, unknown_labels="skip"))
    assert frame.names.tolist() == ["VEHICLE", "SIGN", "CYCLIST"]
    assert "skipped 1 laser labels" in caplog.text
    proto = wpb.Frame.FromString(small_synthetic.payload())
    proto.laser_labels[1].type = wpb.Label.TYPE_UNKNOWN
    with pytest.raises(WaymoFormatError, match="unknown type 0"):
        decode_frame(proto)


def test_missing_calibration(small_synthetic, tmp_path: Path):
    proto = wpb.Frame.FromString(small_synthetic.payload())
    kept = [
        wpb.LaserCalibration.FromString(c.SerializeToString())
        for c in proto.context.laser_calibrations
        if c.name != wpb.LaserName.SIDE_LEFT
    ]
    del proto.context.laser_calibrations[:]
    proto.context.laser_calibrations.extend(kept)
    path = write_records(tmp_path / "nocalib.tfrecord", [proto])
    with pytest.raises(WaymoFormatError, match="no calibration") as err:
        list(read_frames(path))
    message = str(err.value)
    assert (
        str(path) in message
        and "SIDE_LEFT" in message
        and f"frame {proto.context.name}_{proto.timestamp_micros}" in message
    )
    (frame,) = list(read_frames(path, lidars=["TOP", "FRONT"]))  # the lidars asked for are calibrated
    assert set(np.unique(frame.points[:, 7]).tolist()) == {1, 2}


def test_corrupt_range_image_and_inclination_count(small_synthetic):
    proto = wpb.Frame.FromString(small_synthetic.payload())
    proto.lasers[2].ri_return2.range_image_compressed = zlib.compress(b"\x0a\xff")
    with pytest.raises(WaymoFormatError, match=r"SIDE_LEFT return 2.*corrupt"):
        decode_frame(proto, source="file.tfrecord: record 0")
    proto = wpb.Frame.FromString(small_synthetic.payload())
    del proto.context.laser_calibrations[0].beam_inclinations[-1]
    with pytest.raises(WaymoFormatError, match=r"TOP.*63 beam inclinations.*64 rows"):
        decode_frame(proto)


# --------------------------------------------------------------------------------------------------
# v2 parquet


def test_v2_round_trip_equals_v1(small_synthetic, tmp_path: Path):
    import pyarrow.parquet as pq

    second = wpb.Frame.FromString(small_synthetic.payload())
    second.timestamp_micros += 100_000
    del second.laser_labels[0]
    protos = [second, small_synthetic.proto]  # out of order on purpose
    written = write_frames_v2(tmp_path / "v2", protos)
    segment = small_synthetic.proto.context.name
    assert {p.parent.name for p in written} == {
        "lidar",
        "lidar_calibration",
        "lidar_pose",
        "vehicle_pose",
        "lidar_box",
        "stats",
    }
    names = pq.read_schema(tmp_path / "v2" / "lidar" / f"{segment}.parquet").names
    assert {
        "key.segment_context_name",
        "key.frame_timestamp_micros",
        "key.laser_name",
        "[LiDARComponent].range_image_return1.values",
        "[LiDARComponent].range_image_return1.shape",
    } <= set(names)
    v2 = list(read_frames_v2(tmp_path / "v2", segment))
    v1 = [decode_frame(p) for p in sorted(protos, key=lambda p: p.timestamp_micros)]
    assert [f.timestamp_micros for f in v2] == [f.timestamp_micros for f in v1]
    for a, b in zip(v2, v1, strict=True):
        assert a.frame_id == b.frame_id and a.context_name == b.context_name
        np.testing.assert_allclose(a.points, b.points, atol=1e-6)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        for name in (
            "names",
            "types",
            "ids",
            "difficulty",
            "num_lidar_points",
            "num_top_lidar_points",
            "no_lidar_points",
            "tracking_difficulty",
            "speed",
            "accel",
        ):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_array_equal(a.pose, b.pose)
        assert (a.time_of_day, a.location, a.weather) == (b.time_of_day, b.location, b.weather)
        assert sorted(a.laser_calibrations) == sorted(b.laser_calibrations)
        for k, c in a.laser_calibrations.items():
            np.testing.assert_array_equal(c.extrinsic, b.laser_calibrations[k].extrinsic)
            np.testing.assert_array_equal(c.beam_inclinations, b.laser_calibrations[k].beam_inclinations)
    # a subset of lidars / returns, and the segment found on its own
    (one, _) = list(read_frames_v2(tmp_path / "v2", lidars=[5], returns=(0,)))
    sel = (v1[0].points[:, 7] == 5) & (v1[0].points[:, 6] == 0)
    np.testing.assert_allclose(one.points, v1[0].points[sel], atol=1e-6)
