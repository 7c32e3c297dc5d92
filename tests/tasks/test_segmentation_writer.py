"""SemanticKittiLabelWriter: a segmentation task's predictions as official submission files, on predict,
validation and test, through a real Trainer with a tiny fake task."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from perception.eval.segmentation import main as evaluate_main
from perception.eval.segmentation import semantic_iou_from_files
from perception.structures import SEMANTIC_KITTI, Sample, ScanRecord, collate
from perception.structures.segmentation import SYNTHETIC
from perception.tasks.writers import SemanticKittiLabelWriter

SCANS = [("08", "000000", 30), ("08", "000001", 17), ("09", "000005", 25)]


def samples(label_map=SEMANTIC_KITTI, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [
        Sample(
            frame_id=f"{seq}/{scan}",
            points=rng.normal(size=(n, 4)).astype(np.float32),
            point_labels=rng.integers(0, label_map.num_classes + 1, n),
            record=ScanRecord(sequence=seq, scan=scan, num_points=n),
        )
        for seq, scan, n in SCANS
    ]


class FakeSegmentationTask(L.LightningModule):
    """Predicts each point's own label (1 where it is ignored), or drops its last point when asked."""

    def __init__(self, label_map=SEMANTIC_KITTI, drop_one: bool = False) -> None:
        super().__init__()
        self.label_map, self.drop_one = label_map, drop_one
        self.layer = torch.nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx):
        labels = batch.point_labels.clamp(min=1)
        counts = torch.bincount(batch.batch_index, minlength=batch.batch_size).tolist()
        out = list(torch.split(labels, counts))
        return [p[:-1] for p in out] if self.drop_one else out

    def validation_step(self, batch, batch_idx):
        return self.predict_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        return self.predict_step(batch, batch_idx)


def loader(items: list[Sample]) -> DataLoader:
    return DataLoader(items, batch_size=2, collate_fn=collate)


def trainer(*callbacks) -> L.Trainer:
    return L.Trainer(
        logger=False, callbacks=list(callbacks), accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip


def expected_gt(items: list[Sample], root, label_map=SEMANTIC_KITTI) -> None:
    """Write the samples' labels as a SemanticKITTI root's ground truth (raw ids)."""
    for s in items:
        path = root / "sequences" / s.record.sequence / "labels" / f"{s.record.scan}.label"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(label_map.raw_ids(s.point_labels).astype("<u4").tobytes())


def test_predict_writes_raw_ids_in_the_official_layout_and_clears_stale_files(tmp_path):
    out = tmp_path / "submission"
    stale = out / "sequences" / "00" / "predictions" / "000042.label"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0\0\0\0")
    items = samples()
    trainer(SemanticKittiLabelWriter(str(out))).predict(
        FakeSegmentationTask(), loader(items), return_predictions=False
    )
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.label"))
    assert written == [f"sequences/{seq}/predictions/{scan}.label" for seq, scan, _ in SCANS]
    assert not list(out.rglob(".*.tmp"))
    for s in items:
        raw = np.fromfile(
            out / "sequences" / s.record.sequence / "predictions" / f"{s.record.scan}.label", "<u4"
        )
        assert raw.shape == (s.record.num_points,)
        expected = SEMANTIC_KITTI.raw_ids(np.maximum(s.point_labels, 1))
        np.testing.assert_array_equal(raw, expected)
        assert set(raw.tolist()) <= set(SEMANTIC_KITTI.learning_map_inv.values()) - {0}
    # the files score as what was predicted: every labelled point right
    gt_root = tmp_path / "kitti"
    expected_gt(items, gt_root)
    results = semantic_iou_from_files(gt_root, out)
    assert results["accuracy"] == pytest.approx(100.0)
    assert evaluate_main([str(gt_root), str(out), "--sequences", "08", "09"]) == 0


def test_validation_and_test_write_where_their_flags_say(tmp_path):
    items = samples(SYNTHETIC, seed=1)
    task = FakeSegmentationTask(SYNTHETIC)
    writer = SemanticKittiLabelWriter(
        str(tmp_path / "test"), on_validation=True, validation_dir=str(tmp_path / "val"), on_test=True
    )
    t = trainer(writer)
    t.validate(task, loader(items))
    t.test(task, loader(items[:1]))
    assert len(list((tmp_path / "val").rglob("*.label"))) == 3
    assert [p.name for p in (tmp_path / "test").rglob("*.label")] == ["000000.label"]
    raw = np.fromfile(tmp_path / "val" / "sequences" / "09" / "predictions" / "000005.label", "<u4")
    np.testing.assert_array_equal(raw, SYNTHETIC.raw_ids(np.maximum(items[2].point_labels, 1)))
    # without the flags nothing is written
    quiet = tmp_path / "quiet"
    trainer(SemanticKittiLabelWriter(str(quiet))).validate(task, loader(items))
    assert not quiet.exists()


def test_a_prediction_shorter_than_its_scan_is_an_error(tmp_path):
    with pytest.raises(
        ValueError, match=r"scan 08/000000 has 30 points in its file but predictions of shape \(29,\)"
    ):
        trainer(SemanticKittiLabelWriter(str(tmp_path))).predict(
            FakeSegmentationTask(drop_one=True), loader(samples()), return_predictions=False
        )
    assert not list(tmp_path.rglob("*.label"))


def test_the_writer_refuses_what_it_cannot_write(tmp_path):
    writer = SemanticKittiLabelWriter(str(tmp_path))
    batch = collate(samples()[:1])
    task = FakeSegmentationTask()
    good = [torch.ones(30, dtype=torch.int64)]
    with pytest.raises(ValueError, match="one tensor of training ids per sample"):
        writer.write_outputs(tmp_path, good * 2, batch, task)
    with pytest.raises(ValueError, match=r"training ids 0\.\.1 outside 1\.\.19"):
        writer.write_outputs(
            tmp_path, [torch.zeros(30, dtype=torch.int64).index_fill(0, torch.tensor([1]), 1)], batch, task
        )
    with pytest.raises(ValueError, match="integer"):
        writer.write_outputs(tmp_path, [torch.ones(30)], batch, task)
    task.label_map = None
    with pytest.raises(ValueError, match="no label_map"):
        writer.write_outputs(tmp_path, good, batch, task)
    batch.records = [None]
    with pytest.raises(ValueError, match="not a ScanRecord"):
        writer.write_outputs(tmp_path, good, batch, FakeSegmentationTask())
