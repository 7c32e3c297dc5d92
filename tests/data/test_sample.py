"""Sample validation and collation into a Batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.structures import Sample, collate


def make(i: int, n: int, m: int) -> Sample:
    rng = np.random.default_rng(i)
    return Sample(
        frame_id=f"{i:06d}",
        points=rng.normal(size=(n, 4)).astype(np.float32),
        boxes=rng.normal(size=(m, 7)).astype(np.float32),
        labels=np.arange(m, dtype=np.int64),
        difficulty=np.zeros(m, np.int32),
    )


def test_collate_concatenates_points_in_sample_order():
    samples = [make(0, 5, 2), make(1, 0, 0), make(2, 3, 1)]
    batch = collate(samples)
    assert batch.batch_size == 3 and batch.frame_ids == ["000000", "000001", "000002"]
    assert batch.points.shape == (8, 4) and batch.points.dtype == torch.float32
    assert batch.batch_index.tolist() == [0] * 5 + [2] * 3
    torch.testing.assert_close(batch.points[5:], torch.from_numpy(samples[2].points))
    assert [b.shape[0] for b in batch.boxes] == [2, 0, 1]
    assert batch.labels[0].dtype == torch.int64 and batch.records == [None] * 3
    moved = batch.to("cpu")
    assert moved.points.device.type == "cpu" and moved.frame_ids == batch.frame_ids


def test_select_boxes_keeps_fields_aligned():
    s = make(0, 5, 4).select_boxes(np.array([True, False, True, False]))
    assert s.boxes.shape == (2, 7) and s.labels.tolist() == [0, 2] and len(s.difficulty) == 2


def test_bad_samples_and_batches():
    with pytest.raises(ValueError, match="must agree on M"):
        Sample(frame_id="x", points=np.zeros((3, 4), np.float32), boxes=np.zeros((2, 7), np.float32))
    with pytest.raises(ValueError, match=r"points must be \(N, >=3\)"):
        Sample(frame_id="x", points=np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="different point widths"):
        collate([make(0, 3, 0), Sample(frame_id="y", points=np.zeros((2, 5), np.float32))])
    with pytest.raises(ValueError, match="at least one sample"):
        collate([])
