"""SegmentationDataModule: splits, embedded synthetic data, labels aligned with points through augmentation.

Lightning stays out of the module's top level (DataLoader workers import test modules): the data
module is imported inside :func:`datamodule`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.data.semantickitti import (
    SemanticKittiCalib,
    scan_path,
    write_calib,
    write_labels,
    write_poses,
    write_scan,
)
from perception.data.synthetic.semantic_writer import SyntheticSegmentation
from perception.data.transforms import GlobalRotation, GlobalScaling, PointJitter, PointShuffle, RandomFlip
from perception.structures import Sample, ScanRecord
from perception.structures.segmentation import SEMANTIC_KITTI, SYNTHETIC

# Height levels whose ranges stay apart under scaling by [0.9, 1.1] and a 5 cm jitter, and the raw
# id of the points at each: road 40, car 10, building 50, vegetation 70.
LEVELS = np.array([-3.0, 1.0, 3.0, 6.0])
RAW = np.array([40, 10, 50, 70])
CUTS = np.array([-1.0, 2.0, 4.5])


def datamodule(**kwargs):
    from perception.data.segmentation import SegmentationDataModule

    return SegmentationDataModule(**kwargs)


def constructed_root(root: Path, sequences=("00", "01"), scans: int = 3, labels: bool = True) -> Path:
    """Scans whose label is a function of height (:data:`LEVELS`), in the official layout."""
    rng = np.random.default_rng(5)
    for seq in sequences:
        folder = root / "sequences" / seq
        calib = SemanticKittiCalib(P=np.tile(np.eye(3, 4), (4, 1, 1)), Tr=np.eye(4))
        write_calib(folder / "calib.txt", calib)
        write_poses(folder / "poses.txt", np.tile(np.eye(4), (scans, 1, 1)), calib)
        for k in range(scans):
            n = int(rng.integers(300, 500))
            level = rng.integers(0, len(LEVELS), n)
            points = np.column_stack(
                [rng.uniform(-40, 40, (n, 2)), LEVELS[level] + rng.uniform(-0.05, 0.05, n), rng.random(n)]
            ).astype(np.float32)
            write_scan(scan_path(root, seq, k), points)
            if labels:
                write_labels(scan_path(root, seq, k, "labels"), RAW[level])
    return root


def expected_labels(points: torch.Tensor) -> np.ndarray:
    """The training id each point's height says it has, under the official map."""
    return SEMANTIC_KITTI.train_ids(RAW[np.searchsorted(CUTS, points[:, 2].numpy())])


def test_labels_follow_their_points_through_augmentation(tmp_path):
    root = constructed_root(tmp_path)
    dm = datamodule(
        root=str(root),
        label_map="semantic-kitti",
        train_sequences=["00", "01"],
        val_sequences=["01"],
        batch_size=2,
    )
    assert [type(t) for t in dm.train_transforms] == [
        RandomFlip,
        GlobalRotation,
        GlobalScaling,
        PointJitter,
        PointShuffle,
    ]
    dm.setup("fit")
    moved = 0
    for epoch in range(2):
        dm.set_epoch(epoch)
        for batch in dm.train_dataloader():
            assert batch.point_labels is not None and len(batch.point_labels) == len(batch.points)
            np.testing.assert_array_equal(batch.point_labels.numpy(), expected_labels(batch.points))
            for i, frame_id in enumerate(batch.frame_ids):
                raw = dm.train_set.load(dm.train_set.frame_ids.index(frame_id))
                pts = batch.points[batch.batch_index == i].numpy()
                assert len(pts) == len(raw.points)  # nothing dropped
                # Shuffled and rotated: the points are not where (or in the order) they were read.
                moved += not np.allclose(pts[:, :2], raw.points[:, :2], atol=1.0)
                r_in, r_out = np.hypot(*raw.points[:, :2].T), np.hypot(*pts[:, :2].T)
                scale = np.median(r_out) / np.median(r_in)  # rotation and flips keep the radius
                assert 0.89 < scale < 1.11
                np.testing.assert_allclose(np.sort(r_out), scale * np.sort(r_in), atol=0.1)
    assert moved == 12
    # Validation: no transform, every point in file order with its label.
    val = list(dm.val_dataloader())
    assert sum(b.batch_size for b in val) == 3
    for batch in val:
        np.testing.assert_array_equal(batch.point_labels.numpy(), expected_labels(batch.points))
        assert [r.num_points for r in batch.records] == torch.bincount(batch.batch_index).tolist()
        assert all(isinstance(r, ScanRecord) for r in batch.records)


def test_an_epoch_is_reproducible(tmp_path):
    root = constructed_root(tmp_path)
    dm = datamodule(
        root=str(root), label_map="semantic-kitti", train_sequences=["00", "01"], val_sequences=["01"]
    )
    dm.setup("fit")
    a = [(b.frame_ids, b.points.clone()) for b in dm.train_dataloader()]
    b = [(b.frame_ids, b.points.clone()) for b in dm.train_dataloader()]
    for (fa, pa), (fb, pb) in zip(a, b, strict=True):
        assert fa == fb and torch.equal(pa, pb)
    dm.set_epoch(1)
    c = [(b.frame_ids, b.points.clone()) for b in dm.train_dataloader()]
    assert any(x[0] != y[0] or not torch.equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_jitter_moves_points_a_little_and_keeps_labels():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(1000, 4)).astype(np.float32)
    s = Sample(frame_id="x", points=points, point_labels=np.arange(1000))
    out = PointJitter(0.01, 0.03)(s, np.random.default_rng(1))
    d = out.points[:, :3] - points[:, :3]
    assert 0.008 < d.std() < 0.012 and np.abs(d).max() <= 0.03 + 1e-6
    np.testing.assert_array_equal(out.points[:, 3], points[:, 3])
    np.testing.assert_array_equal(out.point_labels, np.arange(1000))


def test_default_sequences_official_or_from_synthetic_json(tmp_path):
    dm = datamodule(root=str(tmp_path / "sk"), label_map="semantic-kitti")
    assert dm.synthetic is None
    assert dm.sequences("train") == ["00", "01", "02", "03", "04", "05", "06", "07", "09", "10"]
    assert dm.sequences("val") == ["08"] and dm.sequences("test") == [f"{i}" for i in range(11, 22)]
    assert dm.sequences("predict") == dm.sequences("test")
    (tmp_path / "sk").mkdir()
    (tmp_path / "sk" / "synthetic.json").write_text(
        json.dumps({"splits": {"train": ["00", "02"], "val": ["01"]}})
    )
    assert dm.sequences("train") == ["00", "02"] and dm.sequences("val") == dm.sequences("test") == ["01"]
    assert datamodule(root=str(tmp_path / "sk"), val_sequences=[3]).sequences("val") == ["03"]
    # A missing root says where data goes.
    with pytest.raises(FileNotFoundError, match=r"make_synthetic\.py --layout semantickitti"):
        datamodule(root=str(tmp_path / "none"), generate=False).setup("fit")


def test_test_sequences_without_labels_give_unlabelled_batches(tmp_path):
    constructed_root(tmp_path, ("00", "01"))
    constructed_root(tmp_path, ("11",), labels=False)
    dm = datamodule(root=str(tmp_path), label_map="semantic-kitti", test_sequences=["11"], val_batch_size=3)
    batches = list(dm.test_dataloader())
    assert len(batches) == 1 and batches[0].point_labels is None and batches[0].frame_ids[0] == "11/000000"
    assert next(iter(dm.predict_dataloader())).frame_ids == batches[0].frame_ids


def test_prepare_data_generates_the_synthetic_set(tmp_path):
    spec = SyntheticSegmentation(frames=4, sequences=2, val_fraction=0.5, num_beams=16, azimuth_step_deg=2.0)
    dm = datamodule(root=str(tmp_path / "seg"), synthetic=spec, batch_size=2)
    assert dm.class_names == SYNTHETIC.class_names and dm.num_classes == 12
    dm.prepare_data()
    dm.prepare_data()  # resumes: nothing to do
    dm.setup("fit")
    meta = json.loads((tmp_path / "seg" / "synthetic.json").read_text())
    assert dm.train_set.sequences == meta["splits"]["train"] and dm.val_set.sequences == meta["splits"]["val"]
    batch = next(iter(dm.train_dataloader()))
    assert (
        batch.batch_size == 2
        and batch.point_labels.max() <= 12
        and (batch.point_labels > 0).float().mean() > 0.95
    )
    from perception.data.segmentation import DEFAULT_ROOT, SegmentationDataModule

    assert (
        SegmentationDataModule().synthetic == SyntheticSegmentation() and DEFAULT_ROOT == "data/synthetic_seg"
    )


@pytest.mark.slow
def test_workers_give_the_same_batches(tmp_path):
    root = constructed_root(tmp_path)
    kw = {
        "root": str(root),
        "label_map": "semantic-kitti",
        "train_sequences": ["00", "01"],
        "val_sequences": ["01"],
    }
    plain = datamodule(**kw)
    workers = datamodule(**kw, num_workers=2)
    for dm in (plain, workers):
        dm.setup("fit")
        dm.set_epoch(3)
    a, b = list(plain.train_dataloader()), list(workers.train_dataloader())
    for x, y in zip(a, b, strict=True):
        assert x.frame_ids == y.frame_ids and torch.equal(x.points, y.points)
        assert torch.equal(x.point_labels, y.point_labels)
