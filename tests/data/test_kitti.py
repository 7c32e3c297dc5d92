"""KITTI reader and writer, on the three real frames in tests/data/kitti and on broken copies."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from perception.data.kitti import (
    KittiFormatError,
    kitti_difficulty,
    list_frames,
    load_frame,
    objects_from_lidar_boxes,
    read_calib,
    read_label,
    read_split,
    read_velodyne,
    write_label,
    write_split,
)
from perception.geometry import points_in_boxes_mask, project_boxes_to_image

FRAMES = ["000000", "000001", "000002"]


def iou_2d(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture
def kitti_copy(kitti_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample root (without images) to break files in."""
    dst = tmp_path / "kitti"
    for sub in ("velodyne", "label_2", "calib"):
        shutil.copytree(kitti_root / "training" / sub, dst / "training" / sub)
    return dst


def test_load_frame_shapes_and_types(kitti_root):
    frame = load_frame(kitti_root, "000001")
    assert frame.frame_id == "000001"
    assert frame.points.dtype == np.float32 and frame.points.shape[1] == 4
    assert frame.points.shape[0] == (kitti_root / "training/velodyne/000001.bin").stat().st_size // 16
    m = len(frame.names)
    assert frame.names.tolist() == ["Truck", "Car", "Cyclist"]  # DontCare kept apart
    assert frame.boxes_lidar.shape == (m, 7) and frame.bbox.shape == (m, 4) and frame.difficulty.shape == (m,)
    assert frame.dontcare_bbox.shape == (4, 4)
    assert frame.image_shape == (375, 1242)
    assert frame.boxes_lidar is frame.boxes
    # Integer ids work too.
    assert load_frame(kitti_root, 1).frame_id == "000001"


def test_boxes_are_in_lidar_convention(kitti_root):
    frame = load_frame(kitti_root, "000002")
    car = frame.boxes_lidar[frame.names.tolist().index("Car")]
    # Label: h w l = 1.41 1.58 4.36, camera (3.18, 2.27, 34.38), ry -1.58.
    np.testing.assert_allclose(car[3:6], [4.36, 1.58, 1.41], atol=1e-6)
    assert 34 < car[0] < 35.5 and -4 < car[1] < -2.5  # ahead, to the right
    assert -1.6 < car[2] < -1.0  # centre ≈ 0.7 m above the ground, which is ≈ 2 m below the lidar there
    np.testing.assert_allclose(car[6], 1.58 - np.pi / 2, atol=1e-6)


@pytest.mark.parametrize("frame_id", FRAMES)
def test_projected_boxes_land_on_annotated_2d_boxes(kitti_root, frame_id):
    frame = load_frame(kitti_root, frame_id)
    projected, valid = project_boxes_to_image(
        frame.boxes_lidar, frame.calib.lidar_to_image_matrix, frame.image_shape
    )
    assert valid.all()
    for proj, ann in zip(projected, frame.bbox, strict=True):
        assert iou_2d(proj, ann) > 0.8, (frame_id, proj, ann)
        centre_gap = np.abs((proj[:2] + proj[2:]) / 2 - (ann[:2] + ann[2:]) / 2)
        assert centre_gap.max() < 8.0


def test_calibration_lidar_to_image_matches_devkit_formula(kitti_root):
    calib = read_calib(kitti_root / "training/calib/000000.txt")
    xyz = np.array([[10.0, 1.0, -1.0], [30.0, -5.0, 0.5]])
    rt = np.eye(4)
    rt[:3, :3] = calib.R0_rect
    tr = np.vstack([calib.Tr_velo_to_cam, [0, 0, 0, 1]])
    hom = (calib.P2 @ rt @ tr @ np.column_stack([xyz, np.ones(2)]).T).T
    np.testing.assert_allclose(calib.lidar_to_image(xyz), hom[:, :2] / hom[:, 2:], rtol=1e-12)
    np.testing.assert_allclose(calib.rect_to_lidar(calib.lidar_to_rect(xyz)), xyz, atol=1e-9)
    np.testing.assert_allclose(calib.camera_to_lidar(calib.lidar_to_camera(xyz)), xyz, atol=1e-9)
    np.testing.assert_allclose(calib.rect_to_image(calib.lidar_to_rect(xyz)), calib.lidar_to_image(xyz))


@pytest.mark.parametrize("frame_id", FRAMES)
def test_labelled_objects_hold_lidar_points(kitti_root, frame_id):
    frame = load_frame(kitti_root, frame_id)
    counts = points_in_boxes_mask(frame.points, frame.boxes_lidar).sum(axis=0)
    # 000001's Car at ~61 m has only ~9 points; every labelled object has some.
    assert (counts >= 5).all(), dict(zip(frame.names, counts, strict=True))
    # Points of an object project into its annotated 2D box (allowing a few pixels of slack).
    for j in range(frame.num_boxes):
        inside = points_in_boxes_mask(frame.points, frame.boxes_lidar[j : j + 1])[:, 0]
        uv = frame.calib.lidar_to_image(frame.points[inside, :3])
        l, t, r, b = frame.bbox[j]
        ok = (uv[:, 0] > l - 5) & (uv[:, 0] < r + 5) & (uv[:, 1] > t - 5) & (uv[:, 1] < b + 5)
        assert ok.mean() > 0.9


def test_difficulty_official_rules(kitti_root):
    assert load_frame(kitti_root, "000000").difficulty.tolist() == [0]  # 165 px tall, visible
    # Truck 32.9 px → moderate; Car 21.6 px → none; Cyclist occluded=3 → none.
    assert load_frame(kitti_root, "000001").difficulty.tolist() == [1, -1, -1]
    bbox = np.array(
        [[0, 0, 10, 40], [0, 0, 10, 39.9], [0, 0, 10, 25], [0, 0, 10, 24.9], [0, 0, 10, 50], [0, 0, 10, 50]]
    )
    occ = np.array([0, 0, 2, 0, 0, 1])
    trunc = np.array([0.15, 0.0, 0.5, 0.0, 0.51, 0.16])
    assert kitti_difficulty(bbox, occ, trunc).tolist() == [0, 1, 2, -1, -1, 1]


def test_label_round_trip_ground_truth(kitti_root, tmp_path):
    for frame_id in FRAMES:
        original = read_label(kitti_root / f"training/label_2/{frame_id}.txt")
        out = write_label(tmp_path / f"{frame_id}.txt", original)
        again = read_label(out)
        assert again.names.tolist() == original.names.tolist()
        for attr in ("truncated", "occluded", "alpha", "bbox", "boxes_camera"):
            np.testing.assert_allclose(getattr(again, attr), getattr(original, attr), atol=1e-6)
        assert again.scores is None


def test_predictions_round_trip_through_result_files(kitti_copy):
    """Lidar boxes with scores → result file → load_frame gives the same boxes back (2-decimal files)."""
    frame = load_frame(kitti_copy, "000002")
    scores = np.array([0.9, 0.55], np.float32)
    objects = objects_from_lidar_boxes(
        frame.boxes_lidar, frame.names, frame.calib, scores=scores, image_shape=(375, 1242)
    )
    write_label(kitti_copy / "training/label_2/000002.txt", objects)
    text = (kitti_copy / "training/label_2/000002.txt").read_text().splitlines()
    assert all(len(line.split()) == 16 for line in text)
    again = load_frame(kitti_copy, "000002")
    np.testing.assert_allclose(again.boxes_lidar, frame.boxes_lidar, atol=0.011)
    np.testing.assert_allclose(again.scores, scores, atol=1e-4)
    np.testing.assert_allclose(again.alpha, frame.alpha, atol=0.011)
    # The 2D boxes computed from the 3D boxes are close to the annotated ones.
    for a, b in zip(again.bbox, frame.bbox, strict=True):
        assert iou_2d(a, b) > 0.8


def test_split_files_round_trip(tmp_path):
    write_split(tmp_path, "train", [0, 1, 5])
    write_split(tmp_path, "val", ["000002"])
    assert read_split(tmp_path, "train") == ["000000", "000001", "000005"]
    assert read_split(tmp_path, "val") == ["000002"]
    with pytest.raises(FileNotFoundError, match=r"ImageSets/test\.txt"):
        read_split(tmp_path, "test")


def test_list_frames(kitti_root):
    assert list_frames(kitti_root) == FRAMES


# ---------------------------------------------------------------------------------------------- bad input


def test_velodyne_size_not_multiple_of_16(kitti_copy):
    path = kitti_copy / "training/velodyne/000000.bin"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(KittiFormatError, match=r"000000\.bin.*not a multiple of 16"):
        load_frame(kitti_copy, "000000")


def test_nan_points_are_dropped_with_a_logged_count(kitti_copy, caplog):
    path = kitti_copy / "training/velodyne/000000.bin"
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    points[[3, 10, 20], 0] = np.nan
    points[7, 2] = np.inf
    points.tofile(path)
    with caplog.at_level(logging.WARNING, logger="perception.data.kitti"):
        loaded = read_velodyne(path)
    assert len(loaded) == len(points) - 4
    assert np.isfinite(loaded).all()
    assert "dropped 4 of" in caplog.text and "000000.bin" in caplog.text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Car 0.00 0 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49", "14 fields"),
        (
            "Automobile 0.00 0 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57",
            "unknown object type 'Automobile'",
        ),
        ("Car 0.00 0 1.85 387.63 181.54 423.81 abc 1.67 1.87 3.69 -16.53 2.39 58.49 1.57", "not a number"),
        (
            "Car 0.00 0 1.85 387.63 181.54 423.81 203.12 nan 1.87 3.69 -16.53 2.39 58.49 1.57",
            "NaN or infinite",
        ),
    ],
)
def test_bad_label_lines(kitti_copy, line, message):
    path = kitti_copy / "training/label_2/000002.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(KittiFormatError, match=message) as info:
        load_frame(kitti_copy, "000002")
    assert "label_2/000002.txt:3" in str(info.value)


def test_calibration_missing_a_matrix(kitti_copy):
    path = kitti_copy / "training/calib/000001.txt"
    path.write_text(
        "".join(line + "\n" for line in path.read_text().splitlines() if not line.startswith("R0_rect"))
    )
    with pytest.raises(KittiFormatError, match=r"calib/000001\.txt: calibration is missing R0_rect"):
        load_frame(kitti_copy, "000001")


def test_calibration_with_too_few_values(kitti_copy):
    path = kitti_copy / "training/calib/000001.txt"
    path.write_text(path.read_text().replace("P2: 7.215377000000e+02 ", "P2: "))
    with pytest.raises(KittiFormatError, match=r"000001\.txt:3: P2 has 11 values, expected 12"):
        read_calib(path)


def test_missing_frame_and_missing_root(kitti_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"velodyne/000042\.bin: frame 000042 does not exist"):
        load_frame(kitti_copy, 42)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_frame(tmp_path / "nowhere", 0)
    (kitti_copy / "training/calib/000000.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"calib/000000\.txt"):
        load_frame(kitti_copy, 0)
    with pytest.raises(ValueError, match="frame_id"):
        load_frame(kitti_copy, -1)


def test_testing_split_without_labels(kitti_root, tmp_path):
    root = tmp_path / "k"
    for sub in ("velodyne", "calib"):
        (root / "testing" / sub).mkdir(parents=True)
        shutil.copy(
            kitti_root / "training" / sub / f"000000.{'bin' if sub == 'velodyne' else 'txt'}",
            root / "testing" / sub,
        )
    frame = load_frame(root, "000000", split="testing")
    assert frame.num_boxes == 0 and frame.boxes_lidar.shape == (0, 7) and len(frame.points) > 0


def test_as_written_is_what_a_result_file_reads_back(tmp_path):
    from perception.data.kitti import KittiObjects, as_written

    rng = np.random.default_rng(0)
    n = 20
    objects = KittiObjects(
        names=np.array(["Car"] * n, dtype="<U16"),
        truncated=np.full(n, -1, np.float32),
        occluded=np.full(n, -1, np.int32),
        alpha=rng.uniform(-3, 3, n).astype(np.float32),
        bbox=rng.uniform(0, 1000, (n, 4)).astype(np.float32),
        boxes_camera=rng.uniform(-20, 20, (n, 7)),
        scores=rng.uniform(0, 1, n).astype(np.float32),
    )
    write_label(tmp_path / "a.txt", objects)
    back, rounded = read_label(tmp_path / "a.txt"), as_written(objects)
    for field in ("alpha", "bbox", "boxes_camera", "scores", "truncated", "occluded"):
        np.testing.assert_array_equal(getattr(back, field), getattr(rounded, field))
    assert not np.array_equal(rounded.boxes_camera, objects.boxes_camera)  # it did round
    write_label(tmp_path / "b.txt", rounded)  # and rounding again changes nothing
    assert (tmp_path / "b.txt").read_text() == (tmp_path / "a.txt").read_text()
