"""Ground-truth database: build from a tiny synthetic training split, load, filter, sample, CLI."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from perception.data.database import GroundTruthDatabase, build_gt_database
from perception.data.kitti import load_frame, read_split, write_split
from perception.data.synthetic import SyntheticConfig, write_dataset
from perception.geometry.boxes import points_in_boxes_mask

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("Car", "Pedestrian", "Cyclist")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, frames=8, seed=3, config=SyntheticConfig(azimuth_step_deg=0.5))
    return root


def test_objects_lie_in_their_boxes_and_counts_match_labels(tiny, tmp_path):
    summary = build_gt_database(tiny, tmp_path / "db")
    assert not summary["skipped"]
    index = json.loads((tmp_path / "db" / "index.json").read_text())
    assert index["split"] == "train" and index["point_dim"] == 4
    train = read_split(tiny, "train")
    frames = {f: load_frame(tiny, f) for f in train}
    expected = Counter(n for f in frames.values() for n in f.names if n in CLASSES)
    assert summary["class_counts"] == {c: expected[c] for c in CLASSES} and sum(expected.values()) > 10

    db = GroundTruthDatabase(tmp_path / "db")
    assert len(db) == summary["objects"] and db.class_counts() == {c: n for c, n in expected.items() if n}
    assert set(db.frame_ids) <= set(train)  # never a val frame
    for i in range(len(db)):
        obj = db[i]
        pts = obj.load_points()
        assert pts.dtype == np.float32 and pts.shape == (obj.num_points, 4)
        absolute = pts.copy()
        absolute[:, :3] += obj.box[:3]
        assert points_in_boxes_mask(absolute, obj.box[None]).all()
        frame = frames[obj.frame_id]
        j = int(np.flatnonzero(np.abs(frame.boxes - obj.box).max(axis=1) < 1e-5)[0])
        assert frame.names[j] == obj.name and frame.difficulty[j] == obj.difficulty
        assert points_in_boxes_mask(frame.points, frame.boxes[j : j + 1]).sum() == obj.num_points


def test_rebuild_is_idempotent_and_cleans_stale_files(tiny, tmp_path):
    out = tmp_path / "db"
    first = build_gt_database(tiny, out)
    stamp = (out / "index.json").stat().st_mtime_ns
    again = build_gt_database(tiny, out)
    assert again["skipped"] and (out / "index.json").stat().st_mtime_ns == stamp
    assert {k: v for k, v in again.items() if k != "skipped"} == {
        k: v for k, v in first.items() if k != "skipped"
    }

    cars_only = build_gt_database(tiny, out, class_names=["Car"])
    assert not cars_only["skipped"] and set(GroundTruthDatabase(out).class_counts()) == {"Car"}
    assert not list(out.glob("Pedestrian/*.npy")) and len(list(out.glob("Car/*.npy"))) == cars_only["objects"]
    assert not list(out.rglob("*.tmp"))
    assert not build_gt_database(tiny, out, class_names=["Car"], overwrite=True)["skipped"]


def test_refuses_validation_frames(tiny, tmp_path):
    with pytest.raises(ValueError, match="training frames"):
        build_gt_database(tiny, tmp_path / "db", split="val")
    write_split(tiny, "leaky", read_split(tiny, "train") + read_split(tiny, "val")[:1])
    with pytest.raises(ValueError, match="shares 1 frames with 'val'"):
        build_gt_database(tiny, tmp_path / "db", split="leaky")


def test_filters_and_sampling(tiny, tmp_path):
    build_gt_database(tiny, tmp_path / "db")
    db = GroundTruthDatabase(tmp_path / "db")
    strict = GroundTruthDatabase(tmp_path / "db", min_points={"Car": 50}, difficulties=[0, 1])
    assert (strict.num_points[strict.names == "Car"] >= 50).all()
    assert np.isin(strict.difficulty, [0, 1]).all() and len(strict) < len(db)
    assert db.filtered(class_names=["Pedestrian"]).class_counts().keys() == {"Pedestrian"}
    assert len(db) == len(GroundTruthDatabase(tmp_path / "db" / "index.json"))  # filtered() made a copy

    cars = db.class_counts()["Car"]
    drawn = db.sample("Car", 5, np.random.default_rng(1))
    assert len(drawn) == 5 and len({o.path for o in drawn}) == 5 and all(o.name == "Car" for o in drawn)
    again = db.sample("Car", 5, np.random.default_rng(1))
    assert [o.path for o in drawn] == [o.path for o in again]
    assert len(db.sample("Car", cars + 10, np.random.default_rng(2))) == cars
    assert (
        db.sample("Tram", 3, np.random.default_rng(0)) == []
        and db.sample("Car", 0, np.random.default_rng(0)) == []
    )


def test_missing_database_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tools/build_gt_database\.py"):
        GroundTruthDatabase(tmp_path / "nothing")


def test_command_line(tiny, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "build_gt_database", REPO / "tools" / "build_gt_database.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "db"
    assert tool.main(["--root", str(tiny), "--out", str(out), "--classes", "Car", "Cyclist"]) == 0
    assert "objects from" in capsys.readouterr().out
    assert set(GroundTruthDatabase(out).class_counts()) <= {"Car", "Cyclist"}
    assert tool.main(["--root", str(tiny), "--out", str(out), "--classes", "Car", "Cyclist"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert tool.main(["--root", str(tiny), "--split", "val", "--out", str(out)]) == 2
    assert tool.main(["--root", str(tmp_path / "absent")]) == 2
    assert "make_synthetic.py" in capsys.readouterr().err
