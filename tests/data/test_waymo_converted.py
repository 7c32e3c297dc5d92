"""Waymo conversion (tools/convert_waymo.py), the converted layout, its dataset and ground-truth database.

Two synthetic segments (2 + 1 frames, full-size range images, sparse scenes to stay quick) are
converted by the tool in a subprocess with 1 and 2 workers; the files must hold exactly what
``read_frames`` returns. The real record beside the repository has no range images (0 points).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from perception.data.database import GroundTruthDatabase
from perception.data.transforms import GlobalRotation, GlobalScaling, GroundTruthSampling, RandomFlip
from perception.data.waymo import WaymoFormatError, read_frames, write_frames_v2, write_records
from perception.data.waymo.convert import convert_segment, count_frames
from perception.data.waymo.converted import (
    FRAME_ARRAYS,
    frame_arrays,
    frame_file,
    load_frame_arrays,
    missing_waymo_message,
    model_points,
    read_segment_index,
)
from perception.data.waymo.database import build_waymo_gt_database
from perception.data.waymo.dataset import WaymoDetectionDataset
from perception.geometry.boxes import points_in_boxes_mask
from tests.support.waymo_synthetic import make_synthetic_frame

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "convert_waymo.py"
SEG_A = "segA_1000000000000000001_000_000_000_000"
SEG_B = "segB_2000000000000000002_000_000_000_000"
CLASSES = ("VEHICLE", "PEDESTRIAN", "CYCLIST")
T0 = 1_550_000_000_000_000
BOXES = np.array(
    [
        [12.0, 3.0, 0.9, 4.6, 2.0, 1.7, 0.3],
        [-6.0, -4.0, 0.9, 0.8, 0.7, 1.8, -2.5],
        [8.0, -7.5, 2.5, 0.1, 0.8, 0.8, 3.0],
        [20.0, 10.0, 0.8, 1.8, 0.6, 1.7, 1.2],
    ]
)


def run_tool(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """SRC/a.tfrecord (segment A, 2 frames), SRC/sub/b.tfrecord (segment B, 1 frame), and the frames read back."""
    src = tmp_path_factory.mktemp("src")
    protos = []
    for i in range(3):
        boxes = BOXES.copy()
        boxes[:, 1] += 12.0 * i  # objects at different places in each frame (room to paste them)
        protos.append(
            make_synthetic_frame(
                seed=i,
                fill=0.05,
                context_name=SEG_A if i < 2 else SEG_B,
                timestamp_micros=T0 + 100_000 * i,
                boxes=boxes,
                types=[1, 2, 3, 4],
                num_lidar_points=[200, 3, 0, 40],
            ).proto
        )
    write_records(src / "a.tfrecord", protos[:2], fsync=False)
    write_records(src / "sub" / "b.tfrecord", protos[2:], fsync=False)
    frames = {}
    for path in (src / "a.tfrecord", src / "sub" / "b.tfrecord"):
        for frame in read_frames(path):
            frames[frame.context_name, frame.timestamp_micros] = frame
    return {"src": src, "frames": frames, "protos": protos}


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory) -> dict[int, Path]:
    """The tool's output with --workers 1 and --workers 2."""
    outs = {}
    for workers in (1, 2):
        out = tmp_path_factory.mktemp(f"converted{workers}")
        result = run_tool("--src", source["src"], "--out", out, "--workers", workers)
        assert result.returncode == 0, result.stderr
        assert "3 frames (3 written" in result.stdout and "9 objects from 3 frames" in result.stdout
        outs[workers] = out
    return outs


def test_frame_files_hold_what_read_frames_returns(source, converted):
    for out in converted.values():
        assert (out / "ImageSets" / "train.txt").read_text().split() == [
            f"{SEG_A}/{T0}",
            f"{SEG_A}/{T0 + 100_000}",
            f"{SEG_B}/{T0 + 200_000}",
        ]
        for (context, timestamp), frame in source["frames"].items():
            path = frame_file(out, "train", context, timestamp)
            with np.load(path, allow_pickle=False) as npz:  # nothing pickled
                assert sorted(npz.files) == sorted(FRAME_ARRAYS)
                arrays = {k: npz[k] for k in npz.files}
            expected = frame_arrays(frame)
            for name, dtype in FRAME_ARRAYS.items():
                assert arrays[name].dtype.kind == "U" if dtype == "str" else arrays[name].dtype == dtype
                np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)
            np.testing.assert_array_equal(arrays["points"], frame.points)
            np.testing.assert_array_equal(arrays["names"], ["VEHICLE", "PEDESTRIAN", "SIGN", "CYCLIST"])
            assert len(frame.points) > 10_000

        index = read_segment_index(out / "train" / SEG_A)
        assert index["context_name"] == SEG_A and index["source_name"] == "a.tfrecord"
        assert (index["time_of_day"], index["location"], index["weather"]) == ("Day", "location_sf", "sunny")
        assert [f["timestamp_micros"] for f in index["frames"]] == [T0, T0 + 100_000]
        assert [f["points"] for f in index["frames"]] == [
            len(source["frames"][SEG_A, t].points) for t in (T0, T0 + 100_000)
        ]
        assert [f["boxes"] for f in index["frames"]] == [4, 4]
        assert index["class_counts"] == {"CYCLIST": 2, "PEDESTRIAN": 2, "SIGN": 2, "VEHICLE": 2}

    # the number of workers changes nothing
    one, two = converted[1], converted[2]
    for path in sorted(one.rglob("*.npz")):
        a, b = load_frame_arrays(path), load_frame_arrays(two / path.relative_to(one))
        assert a.keys() == b.keys()
        for k in a:  # NaN-aware: speeds are NaN where a label has no metadata
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    gt = [json.loads((o / "gt_database" / "index.json").read_text()) for o in (one, two)]
    assert gt[0]["objects"] == gt[1]["objects"]


def test_killed_run_resumes_rewriting_only_what_is_missing(converted, source, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(converted[1], out)  # copy2 keeps the mtimes
    lost = frame_file(out, "train", SEG_A, T0 + 100_000)
    lost.unlink()
    (out / "train" / SEG_A / "index.json").unlink()
    stale = out / "train" / SEG_A / ".1550000000200000.npz.abcd.tmp"  # as a kill leaves it
    stale.write_bytes(b"half")
    files = [p for p in out.rglob("*") if p.is_file() and p != stale]
    before = {p: p.stat().st_mtime_ns for p in files}

    result = run_tool("--src", source["src"], "--out", out, "--workers", 1)
    assert result.returncode == 0, result.stderr
    assert "1 already up to date" in result.stdout and "3 frames (1 written, 2 kept)" in result.stdout
    assert lost.is_file() and not stale.exists()
    changed = sorted(str(p.relative_to(out)) for p in files if p.stat().st_mtime_ns != before[p])
    # every converted file is untouched; the split file is rewritten (same content), and the gt
    # database rebuilt because it records the dataset's (new, copied) absolute root
    assert [c for c in changed if not c.startswith("gt_database/")] == ["ImageSets/train.txt"]
    assert (out / "ImageSets" / "train.txt").read_text() == (
        converted[1] / "ImageSets" / "train.txt"
    ).read_text()
    restored = load_frame_arrays(lost)
    np.testing.assert_array_equal(restored["points"], source["frames"][SEG_A, T0 + 100_000].points)
    assert read_segment_index(out / "train" / SEG_A) == read_segment_index(converted[1] / "train" / SEG_A)


def test_corrupt_record_fails_its_segment_and_names_the_file(source, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(source["src"], src)
    data = bytearray((src / "a.tfrecord").read_bytes())
    second = 16 + int.from_bytes(data[:8], "little")  # byte offset of record 1
    data[second + 12 + 1000] ^= 0xFF
    (src / "a.tfrecord").write_bytes(bytes(data))

    out = tmp_path / "out"
    result = run_tool("--src", src, "--out", out, "--workers", 1, "--no-gt-database")
    assert result.returncode == 1
    assert f"{src / 'a.tfrecord'}: record 1 at byte offset {second}" in result.stderr
    assert "corrupt" in result.stderr and "1 of 2 segments failed" in result.stderr
    assert read_segment_index(out / "train" / SEG_B) is not None  # the other segment went on
    assert read_segment_index(out / "train" / SEG_A) is None  # no index: the segment is not done
    assert (out / "ImageSets" / "train.txt").read_text().split() == [f"{SEG_B}/{T0 + 200_000}"]
    assert not (out / "gt_database").exists()

    with pytest.raises(WaymoFormatError, match=rf"a\.tfrecord: record 1 at byte offset {second}"):
        convert_segment(src / "a.tfrecord", tmp_path / "direct")


def test_bad_source_folders_exit_2_naming_them(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_tool("--src", missing, "--out", tmp_path / "out")
    assert result.returncode == 2 and str(missing) in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_tool("--src", tmp_path / "empty", "--out", tmp_path / "out")
    assert result.returncode == 2 and str(tmp_path / "empty") in result.stderr and "tfrecord" in result.stderr


def test_dataset_samples_labels_columns_and_reproducible_augmentation(converted, source):
    out = converted[2]
    ds = WaymoDetectionDataset(out, "train")
    assert len(ds) == 3 and ds.class_names == CLASSES
    assert ds.frame_ids[2] == f"{SEG_B}/{T0 + 200_000}"
    sample = ds.load(2)
    frame = source["frames"][SEG_B, T0 + 200_000]
    assert sample.frame_id == frame.frame_id and sample.points.shape == (len(frame.points), 5)
    np.testing.assert_array_equal(sample.points[:, [0, 1, 2, 4]], frame.points[:, [0, 1, 2, 4]])
    np.testing.assert_allclose(sample.points[:, 3], np.tanh(frame.points[:, 3]), rtol=1e-6)
    np.testing.assert_array_equal(sample.labels, [0, 1, 2])  # VEHICLE, PEDESTRIAN, CYCLIST; SIGN dropped
    np.testing.assert_array_equal(sample.boxes, frame.boxes[[0, 1, 3]])
    np.testing.assert_array_equal(sample.difficulty, frame.difficulty[[0, 1, 3]])
    record = sample.record
    assert record.frame_key == (SEG_B, T0 + 200_000)
    np.testing.assert_array_equal(record.pose, frame.pose)
    assert list(record.names) == ["VEHICLE", "PEDESTRIAN", "SIGN", "CYCLIST"]
    np.testing.assert_array_equal(record.objects.boxes, frame.boxes)
    np.testing.assert_array_equal(record.boxes_lidar, frame.boxes)
    np.testing.assert_array_equal(record.objects.num_lidar_points, [200, 3, 0, 40])
    np.testing.assert_array_equal(record.objects.difficulty, [1, 2, 2, 1])
    np.testing.assert_array_equal(record.objects.ids, frame.ids)

    raw = WaymoDetectionDataset(out, "train", class_names=("SIGN",), point_columns=8, intensity_tanh=False)
    np.testing.assert_array_equal(raw.load(2).points, frame.points)
    np.testing.assert_array_equal(raw.load(2).labels, [0])

    transforms = [RandomFlip(("x", "y")), GlobalRotation(), GlobalScaling()]
    a = WaymoDetectionDataset(out, "train", transforms=transforms, seed=5)
    b = WaymoDetectionDataset(out, "train", transforms=transforms, seed=5)
    s1, s2, s3 = a[(1, 0)], b[(1, 0)], a[(2, 0)]
    np.testing.assert_array_equal(s1.points, s2.points)
    np.testing.assert_array_equal(s1.boxes, s2.boxes)
    assert not np.array_equal(s1.points, s3.points)
    a.set_epoch(1)
    np.testing.assert_array_equal(a[0].points, s1.points)
    np.testing.assert_array_equal(a[-3].points, s1.points)
    with pytest.raises(IndexError):
        a[3]


def test_gt_database_holds_the_train_objects_points(converted, source):
    db = GroundTruthDatabase(converted[1] / "gt_database")
    assert db.split == "train" and db.point_dim == 5
    assert db.class_counts() == {"VEHICLE": 3, "PEDESTRIAN": 3, "CYCLIST": 3}
    total = 0
    for i in range(len(db)):
        obj = db[i]
        frame = next(f for f in source["frames"].values() if f.frame_id == obj.frame_id)
        j = list(frame.names).index(obj.name)
        np.testing.assert_array_equal(obj.box, frame.boxes[j])
        points = model_points(frame.points)
        expected = points[points_in_boxes_mask(points, frame.boxes[j : j + 1])[:, 0]]
        expected[:, :3] -= frame.boxes[j, :3]
        np.testing.assert_array_equal(obj.load_points(), expected)
        assert obj.difficulty == frame.difficulty[j]
        total += len(expected)
    assert total > 0

    # what GroundTruthSampling pastes fits the dataset's samples
    ds = WaymoDetectionDataset(converted[1], "train")
    sampler = GroundTruthSampling(
        converted[1] / "gt_database",
        {"VEHICLE": 3, "CYCLIST": 3},
        class_names=CLASSES,
        min_points={"VEHICLE": 0, "CYCLIST": 0},
    )
    sample = ds.load(0)
    pasted = sampler(sample, np.random.default_rng(0))
    assert len(pasted.boxes) > len(sample.boxes) and pasted.points.shape[1] == 5

    with pytest.raises(ValueError, match="training frames"):
        build_waymo_gt_database(converted[1], "val")


def test_every_v2_and_frame_counts(source, tmp_path):
    src = source["src"]
    assert count_frames(src / "a.tfrecord") == 2 and count_frames(src / "a.tfrecord", every=2) == 1
    summary = convert_segment(src / "a.tfrecord", tmp_path / "every", every=2)
    assert summary["frames"] == summary["written"] == 1
    assert [p.name for p in (tmp_path / "every" / "train" / SEG_A).glob("*.npz")] == [f"{T0}.npz"]
    again = convert_segment(src / "a.tfrecord", tmp_path / "every", every=2)
    assert again["up_to_date"] and again["written"] == 0

    # other point settings: the frames are converted again, not kept
    first = convert_segment(src / "a.tfrecord", tmp_path / "returns", returns=(0,))
    both = convert_segment(src / "a.tfrecord", tmp_path / "returns")
    assert first["written"] == both["written"] == 2 and first["points"] < both["points"]
    got = load_frame_arrays(frame_file(tmp_path / "returns", "train", SEG_A, T0))["points"]
    np.testing.assert_array_equal(got, source["frames"][SEG_A, T0].points)

    write_frames_v2(tmp_path / "v2", source["protos"][:2], fsync=False)
    assert count_frames(tmp_path / "v2", segment=SEG_A) == 2
    summary = convert_segment(tmp_path / "v2", tmp_path / "from_v2", "val", segment=SEG_A)
    assert summary["written"] == 2 and summary["class_counts"]["VEHICLE"] == 2
    for timestamp in (T0, T0 + 100_000):
        got = load_frame_arrays(frame_file(tmp_path / "from_v2", "val", SEG_A, timestamp))
        expected = frame_arrays(source["frames"][SEG_A, timestamp])
        for name in FRAME_ARRAYS:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)  # same decoding


def test_missing_data_message_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        WaymoDetectionDataset(tmp_path / "converted", "val")
    message = str(info.value)
    assert message == missing_waymo_message(tmp_path / "converted", "val")
    assert (
        "python tools/convert_waymo.py --src data/waymo/raw/training --out data/waymo/converted --split train"
        in message
    )
    assert "--src data/waymo/raw/validation --out data/waymo/converted --split val" in message
    assert "waymo.com/open" in message and "licence" in message and "v1.4" in message
    assert str(tmp_path / "converted" / "ImageSets" / "val.txt") in message


def test_real_record_converts(waymo_record, tmp_path):
    summary = convert_segment(waymo_record, tmp_path, "val")
    assert summary["frames"] == summary["written"] == 1 and summary["points"] == 0
    context = "1071392229495085036_1844_790_1864_790"
    (path,) = (tmp_path / "val" / context).glob("*.npz")
    arrays = load_frame_arrays(path)
    assert arrays["points"].shape == (0, 8) and arrays["boxes"].shape == (18, 7)
    assert Counter(arrays["names"].tolist()) == {"SIGN": 17, "VEHICLE": 1}
    assert np.isfinite(arrays["pose"]).all() and os.path.getsize(path) > 0
    frame = next(read_frames(waymo_record))
    for name, value in frame_arrays(frame).items():
        np.testing.assert_array_equal(arrays[name], value)
