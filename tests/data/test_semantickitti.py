"""SemanticKITTI files and dataset (perception.data.semantickitti) and the synthetic data in its layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.data.semantickitti import (
    SemanticKittiCalib,
    SemanticKittiDataset,
    SemanticKittiFormatError,
    list_scans,
    read_calib,
    read_labels,
    read_poses,
    read_scan,
    read_times,
    scan_path,
    write_calib,
    write_labels,
    write_poses,
    write_scan,
    write_times,
)
from perception.data.synthetic import SequenceLayout, generate_frame
from perception.data.synthetic.actors import build_tree
from perception.data.synthetic.semantic_writer import (
    MOVING_SPEED,
    SEMANTIC_KITTI_IDS,
    semantic_kitti_ids,
    write_semantickitti,
)
from perception.data.synthetic.shapes import SEM, SEMANTIC_CLASSES
from perception.structures.segmentation import SEMANTIC_KITTI, SYNTHETIC, LabelMap, UnknownLabelError

RAW_IDS = np.array(sorted(SEMANTIC_KITTI.labels), np.uint32)


def rigid(rng: np.random.Generator) -> np.ndarray:
    """A random (4, 4) rigid transform."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    m = np.eye(4)
    m[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    m[:3, 3] = rng.normal(0, 5, 3)
    return m


def official_yaml(path: Path) -> Path:
    """A class map file in the format of semantic-kitti-api's config/semantic-kitti.yaml."""
    doc = {
        "labels": {int(k): v for k, v in SEMANTIC_KITTI.labels.items()},
        "color_map": {int(k): [0, 0, 0] for k in SEMANTIC_KITTI.labels},
        "content": {int(k): 0.01 for k in SEMANTIC_KITTI.labels},
        "learning_map": {int(k): int(v) for k, v in SEMANTIC_KITTI.learning_map.items()},
        "learning_map_inv": {int(k): int(v) for k, v in SEMANTIC_KITTI.learning_map_inv.items()},
        "learning_ignore": {i: i == 0 for i in range(20)},
        "split": {"train": [0, 1, 2, 3, 4, 5, 6, 7, 9, 10], "valid": [8], "test": list(range(11, 22))},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def root(tmp_path: Path) -> tuple[Path, dict]:
    """Two sequences (00 with 3 scans, 01 with 2) in the official layout; returns the root and the truth."""
    rng = np.random.default_rng(0)
    truth: dict = {"points": {}, "labels": {}, "poses": {}}
    for seq, n_scans in (("00", 3), ("01", 2)):
        folder = tmp_path / "sequences" / seq
        calib = SemanticKittiCalib(P=rng.normal(size=(4, 3, 4)), Tr=rigid(rng))
        write_calib(folder / "calib.txt", calib)
        poses = np.array([np.linalg.inv(rigid(rng)) @ rigid(rng) for _ in range(n_scans)])
        poses[0] = np.eye(4)
        write_poses(folder / "poses.txt", poses, calib)
        write_times(folder / "times.txt", np.arange(n_scans) * 0.1)
        truth["poses"][seq] = poses
        for k in range(n_scans):
            n = int(rng.integers(50, 200))
            points = rng.normal(0, 10, (n, 4)).astype(np.float32)
            semantic = rng.choice(RAW_IDS, n)
            instance = rng.integers(0, 5, n)
            write_scan(scan_path(tmp_path, seq, k), points)
            write_labels(scan_path(tmp_path, seq, k, "labels"), semantic, instance)
            truth["points"][f"{seq}/{k:06d}"] = points
            truth["labels"][f"{seq}/{k:06d}"] = (semantic, instance)
    return tmp_path, truth


# --------------------------------------------------------------------------------------------------
# files


def test_official_layout_reads_back_through_a_yaml_class_map(root, tmp_path):
    path, truth = root
    yaml_map = LabelMap.from_yaml(official_yaml(tmp_path / "semantic-kitti.yaml"))
    assert yaml_map.class_names == SEMANTIC_KITTI.class_names
    assert list_scans(path, "00") == ["000000", "000001", "000002"]
    ds = SemanticKittiDataset(path, ["00", 1], label_map=str(tmp_path / "semantic-kitti.yaml"))
    assert ds.frame_ids == ["00/000000", "00/000001", "00/000002", "01/000000", "01/000001"]
    for i, frame_id in enumerate(ds.frame_ids):
        s = ds[i]
        semantic, instance = truth["labels"][frame_id]
        np.testing.assert_array_equal(s.points, truth["points"][frame_id])
        np.testing.assert_array_equal(s.point_labels, SEMANTIC_KITTI.train_ids(semantic))
        assert s.point_labels.dtype == np.int64
        seq, scan = frame_id.split("/")
        assert (s.record.sequence, s.record.scan, s.record.num_points) == (seq, scan, len(semantic))
        np.testing.assert_allclose(s.record.pose, truth["poses"][seq][int(scan)], atol=1e-9)
        words = read_labels(scan_path(path, seq, scan, "labels"), len(semantic))
        np.testing.assert_array_equal(words & 0xFFFF, semantic)
        np.testing.assert_array_equal(words >> 16, instance)
    np.testing.assert_allclose(read_times(path / "sequences" / "00" / "times.txt"), [0.0, 0.1, 0.2])


def test_poses_round_trip_in_the_camera_convention(tmp_path):
    rng = np.random.default_rng(1)
    calib = SemanticKittiCalib(P=rng.normal(size=(4, 3, 4)), Tr=rigid(rng))
    write_calib(tmp_path / "calib.txt", calib)
    back = read_calib(tmp_path / "calib.txt")
    np.testing.assert_array_equal(back.P, calib.P)
    np.testing.assert_array_equal(back.Tr, calib.Tr)
    lidar = np.array([rigid(rng) for _ in range(4)])
    write_poses(tmp_path / "poses.txt", lidar, calib)
    # The file holds camera poses Tr @ pose @ inv(Tr), one 3×4 row a line.
    rows = np.loadtxt(tmp_path / "poses.txt").reshape(-1, 3, 4)
    np.testing.assert_allclose(rows, (calib.Tr @ lidar @ np.linalg.inv(calib.Tr))[:, :3], atol=1e-10)
    np.testing.assert_allclose(read_poses(tmp_path / "poses.txt", back), lidar, atol=1e-10)


def test_moving_ids_map_to_their_static_classes():
    for moving, static in (
        (252, 10),
        (253, 31),
        (254, 30),
        (255, 32),
        (256, 16),
        (257, 13),
        (258, 18),
        (259, 20),
    ):
        for m in (SEMANTIC_KITTI, SYNTHETIC):
            assert m.train_ids(np.array([moving]))[0] == m.train_ids(np.array([static]))[0]
    assert (
        SEMANTIC_KITTI.train_ids(np.array([252 | (7 << 16)]))[0]
        == SEMANTIC_KITTI.class_names.index("car") + 1
    )


# --------------------------------------------------------------------------------------------------
# bad input names the file


def test_missing_root_and_sequence_say_where_data_goes(tmp_path, root):
    with pytest.raises(
        FileNotFoundError, match=r"nowhere.*data/semantickitti.*make_synthetic.py --layout semantickitti"
    ):
        SemanticKittiDataset(tmp_path / "nowhere", ["00"])
    path, _ = root
    with pytest.raises(FileNotFoundError, match=r"sequences/05.*make_synthetic"):
        SemanticKittiDataset(path, ["00", "05"])


def test_label_count_mismatch_names_file_and_counts(root):
    path, truth = root
    label = scan_path(path, "00", 1, "labels")
    n = len(truth["labels"]["00/000001"][0])
    write_labels(label, np.full(n - 3, 40))
    ds = SemanticKittiDataset(path, ["00"])
    with pytest.raises(
        SemanticKittiFormatError, match=rf"{label}: holds {n - 3} labels but its scan has {n} points"
    ):
        ds[1]
    label.write_bytes(b"\x00" * 7)
    with pytest.raises(SemanticKittiFormatError, match=rf"{label}: size 7 bytes"):
        ds[1]


def test_unknown_raw_ids_name_the_label_file(root):
    path, truth = root
    label = scan_path(path, "01", 0, "labels")
    n = len(truth["labels"]["01/000000"][0])
    write_labels(label, np.full(n, 123), np.full(n, 2))
    ds = SemanticKittiDataset(path, ["01"], label_map="semantic-kitti")
    with pytest.raises(UnknownLabelError, match=rf"{label}: raw label ids \[123\]"):
        ds[0]


def test_short_poses_file_names_the_file_and_the_first_scan_without_pose(root):
    path, _ = root
    poses = path / "sequences" / "00" / "poses.txt"
    poses.write_text("\n".join(poses.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(SemanticKittiFormatError, match=rf"{poses}: 2 poses for 3 scans; scan 000002"):
        SemanticKittiDataset(path, ["00"])
    poses.write_text("1 2 3\n")
    with pytest.raises(SemanticKittiFormatError, match=rf"{poses}:1: pose must be 12"):
        SemanticKittiDataset(path, ["00"])


def test_empty_or_corrupt_scan_names_the_file(root):
    path, _ = root
    scan = scan_path(path, "00", 2)
    ds = SemanticKittiDataset(path, ["00"])
    scan.write_bytes(b"")
    with pytest.raises(SemanticKittiFormatError, match=rf"{scan}: scan is empty"):
        ds[2]
    scan.write_bytes(b"\x00" * 20)
    with pytest.raises(SemanticKittiFormatError, match=rf"{scan}: size 20 bytes is not a multiple of 16"):
        read_scan(scan)


def test_calib_without_tr_names_the_file(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("".join(f"P{i}: " + " ".join(["1"] * 12) + "\n" for i in range(4)))
    with pytest.raises(SemanticKittiFormatError, match=rf"{path}: calibration is missing Tr"):
        read_calib(path)


def test_test_split_without_labels_and_non_finite_points(root):
    path, truth = root
    for f in (path / "sequences" / "01" / "labels").iterdir():
        f.unlink()
    (path / "sequences" / "01" / "labels").rmdir()
    with pytest.raises(FileNotFoundError, match="with_labels=False"):
        SemanticKittiDataset(path, ["01"])
    ds = SemanticKittiDataset(path, ["01"], with_labels=None)
    assert not ds.with_labels and ds[0].point_labels is None
    # A NaN point is dropped with its label; the record keeps the file's point count.
    points = truth["points"]["00/000000"].copy()
    points[3, 1] = np.nan
    write_scan(scan_path(path, "00", 0), points)
    s = SemanticKittiDataset(path, ["00"])[0]
    assert len(s.points) == len(points) - 1 and s.record.num_points == len(points)
    expected = np.delete(SEMANTIC_KITTI.train_ids(truth["labels"]["00/000000"][0]), 3)
    np.testing.assert_array_equal(s.point_labels, expected)


# --------------------------------------------------------------------------------------------------
# synthetic data in the SemanticKITTI layout

TINY = {"num_beams": 16, "azimuth_step_deg": 2.0}


def tiny_config():
    from perception.data.synthetic import SyntheticConfig

    return SyntheticConfig(**TINY)


def test_every_generator_class_has_an_id_the_synthetic_map_knows():
    assert set(SEMANTIC_KITTI_IDS) == set(SEMANTIC_CLASSES)
    ids = semantic_kitti_ids(np.arange(len(SEMANTIC_CLASSES)))
    moving = semantic_kitti_ids(np.arange(len(SEMANTIC_CLASSES)), np.full(len(SEMANTIC_CLASSES), 2.0))
    train = SYNTHETIC.train_ids(ids)
    np.testing.assert_array_equal(SYNTHETIC.train_ids(moving), train)  # moving folds back
    name = dict(
        zip(SEMANTIC_CLASSES, [SYNTHETIC.class_names[t - 1] if t else None for t in train], strict=True)
    )
    assert name == {
        "unlabelled": None, "road": "road", "road paint": "road", "sidewalk": "sidewalk",
        "terrain": "terrain", "building": "building", "pole": "pole", "sign": "traffic-sign",
        "vegetation": "vegetation", "trunk": "trunk", "Car": "car", "Van": "car", "Truck": "truck",
        "Pedestrian": "person", "Cyclist": "bicyclist",
    }  # fmt: skip
    assert moving[SEM["Car"]] == 252 and moving[SEM["Pedestrian"]] == 254 and moving[SEM["road"]] == 40
    assert semantic_kitti_ids([SEM["Truck"]] * 2, [MOVING_SPEED, MOVING_SPEED + 0.01]).tolist() == [18, 258]
    # Tree trunks are their own class; crowns stay vegetation.
    tree = build_tree(np.random.default_rng(0), 2.0)
    assert tree.semantic[0] == SEM["trunk"] and (tree.semantic[1:] == SEM["vegetation"]).all()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_seg")
    summary = write_semantickitti(out, frames=6, sequences=2, val_fraction=0.5, seed=3, config=tiny_config())
    return out, summary


def test_synthetic_labels_agree_with_the_generator(synthetic_root):
    out, summary = synthetic_root
    config, layout = tiny_config(), SequenceLayout(6, 2)
    assert summary["generated"] == 6 and summary["layout"] == "semantickitti"
    meta = json.loads((out / "synthetic.json").read_text())
    assert sorted(meta["splits"]["train"] + meta["splits"]["val"]) == ["00", "01"]
    assert len(meta["splits"]["val"]) == 1 and meta["seed"] == 3 and meta["args"]["frames"] == 6
    moving = 0
    for seq in ("00", "01"):
        lo, hi = layout.bounds(int(seq))
        calib = read_calib(out / "sequences" / seq / "calib.txt")
        poses = read_poses(out / "sequences" / seq / "poses.txt", calib)
        assert len(poses) == hi - lo == len(list_scans(out, seq))
        np.testing.assert_allclose(
            read_times(out / "sequences" / seq / "times.txt"), np.arange(hi - lo) * 0.1
        )
        first = None
        for k, index in enumerate(range(lo, hi)):
            frame = generate_frame(config, 3, index, layout)
            first = frame.pose if first is None else first
            points = read_scan(scan_path(out, seq, k))
            np.testing.assert_array_equal(points, frame.points)
            words = read_labels(scan_path(out, seq, k, "labels"), len(points))
            np.testing.assert_array_equal(
                words & 0xFFFF, semantic_kitti_ids(frame.point_semantic, frame.point_speed)
            )
            np.testing.assert_array_equal(
                (words >> 16).astype(np.int64) - 1, np.maximum(frame.point_track, -1)
            )
            np.testing.assert_allclose(poses[k], np.linalg.inv(first) @ frame.pose, atol=1e-9)
            np.testing.assert_allclose(calib.Tr[:3], frame.calib.Tr_velo_to_cam, atol=1e-11)
            moving += int(np.isin(words & 0xFFFF, [252, 253, 254, 258]).sum())
    assert moving > 0
    ds = SemanticKittiDataset(out, ["00", "01"], label_map="synthetic")
    labels = np.concatenate([ds[i].point_labels for i in range(len(ds))])
    assert set(np.unique(labels)) >= {SYNTHETIC.class_names.index(c) + 1 for c in ("road", "car", "building")}


def test_synthetic_writer_resumes_and_refuses_other_arguments(synthetic_root):
    out, _ = synthetic_root
    label = scan_path(out, "01", 1, "labels")
    before, poses_before = label.read_bytes(), (out / "sequences" / "01" / "poses.txt").read_bytes()
    again = write_semantickitti(out, frames=6, sequences=2, val_fraction=0.5, seed=3, config=tiny_config())
    assert again["generated"] == 0 and again["skipped"] == 6
    label.unlink()
    (out / "sequences" / "01" / "poses.txt").unlink()
    again = write_semantickitti(out, frames=6, sequences=2, val_fraction=0.5, seed=3, config=tiny_config())
    assert again["generated"] == 1
    assert label.read_bytes() == before
    assert (out / "sequences" / "01" / "poses.txt").read_bytes() == poses_before
    with pytest.raises(ValueError, match=r"synthetic\.json.*other arguments"):
        write_semantickitti(out, frames=6, sequences=2, val_fraction=0.5, seed=4, config=tiny_config())


@pytest.mark.slow
def test_synthetic_writer_is_worker_count_independent(synthetic_root, tmp_path):
    out, _ = synthetic_root
    write_semantickitti(
        tmp_path, frames=6, sequences=2, val_fraction=0.5, seed=3, config=tiny_config(), workers=2
    )
    for a in sorted((out / "sequences").rglob("*.*")):
        assert a.read_bytes() == (tmp_path / a.relative_to(out)).read_bytes(), a


def test_cli_writes_the_semantickitti_layout(tmp_path, capsys):
    import sys

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "tools"))
    try:
        import make_synthetic
    finally:
        sys.path.remove(str(repo / "tools"))
    argv = [str(tmp_path / "seg"), "--layout", "semantickitti", "--frames", "4", "--sequences", "2"]
    assert make_synthetic.main([*argv, "--beams", "16", "--azimuth-step", "2", "--seed", "3", "--quiet"]) == 0
    meta = json.loads((tmp_path / "seg" / "synthetic.json").read_text())
    assert meta["config"]["num_beams"] == 16 and meta["args"] == {
        "frames": 4,
        "sequences": 2,
        "val_fraction": 1 / 6,
    }
    assert list_scans(tmp_path / "seg", "01") == ["000000", "000001"]
    assert (tmp_path / "seg" / "sequences" / "01" / "labels" / "000001.label").is_file()
    for bad in ([*argv, "--sequences", "0"], [*argv, "--out", str(tmp_path)], ["--layout", "semantickitti"]):
        with pytest.raises(SystemExit) as err:
            make_synthetic.main(bad)
        assert err.value.code == 2
