"""The second stage: its point features, permutation invariance, and a refiner that learns to pull
jittered boxes onto the objects (the RoI pooling op: tests/ops/test_roi_points.py; the residual
coding: tests/geometry/test_box_coder.py)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_detector import pointpillars, synthetic_batch

from perception.models import Detector, PointRefinementHead
from perception.models.heads.point_refine import canonical_point_features
from perception.ops.iou3d import boxes_iou3d
from perception.structures import Detections


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_canonical_features_put_a_box_corner_on_its_faces() -> None:
    roi = torch.tensor([[3.0, 4.0, -1.0, 4.0, 2.0, 1.5, math.pi / 2]])
    # the front-left-top corner: 2 m along the heading (+y), 1 m to its left (-x), 0.75 m up
    corner = torch.tensor([[[3.0 - 1.0, 4.0 + 2.0, -1.0 + 0.75, 0.5]]])
    f = canonical_point_features(corner, roi)[0, 0]
    torch.testing.assert_close(f[:3], torch.tensor([2.0, 1.0, 0.75]), atol=1e-5, rtol=0)
    torch.testing.assert_close(f[3:9], torch.tensor([0.0, 4.0, 0.0, 2.0, 0.0, 1.5]), atol=1e-5, rtol=0)
    assert f[9] == 0.5


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_refined_boxes_and_scores_are_permutation_invariant(seed: int) -> None:
    torch.manual_seed(0)
    head = PointRefinementHead(num_classes=2, points_per_roi=32).eval()
    torch.nn.init.normal_(head.residual.weight, std=0.05)  # make the residual depend on the points
    batch = synthetic_batch()
    g = torch.Generator().manual_seed(seed)
    detections = [
        Detections(b + torch.randn(b.shape, generator=g) * 0.05, torch.rand(len(b), generator=g), lb)
        for b, lb in zip(batch.boxes, batch.labels, strict=True)
    ]
    # permute within each sample (points stay grouped by sample)
    perms = []
    for b in range(batch.batch_size):
        idx = (batch.batch_index == b).nonzero().squeeze(1)
        perms.append(idx[torch.randperm(len(idx), generator=g)])
    perm = torch.cat(perms)
    first = head.refine(batch.points, batch.batch_index, detections)
    second = head.refine(batch.points[perm], batch.batch_index[perm], detections)
    for x, y in zip(first, second, strict=True):
        torch.testing.assert_close(x.boxes, y.boxes, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x.scores, y.scores, atol=1e-6, rtol=1e-5)


def test_refiner_learns_to_correct_jittered_boxes() -> None:
    torch.manual_seed(0)
    batch = synthetic_batch()
    head = PointRefinementHead(
        num_classes=2,
        points_per_roi=64,
        mlp_channels=(32, 64, 128),
        fc_channels=(128, 128),
        gt_jitter_copies=8,
    )
    # A cosine decay to lr 0 makes the end point insensitive to the training noise (random jitter and
    # pooling): over training seeds 0-9 the mean IoU after refinement lies in 0.78-0.83 against the bar's
    # 0.66, where a constant lr for 150 steps gave 0.66-0.79 over seeds 0-4 (seed 0 under the bar).
    steps = 200
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    no_detections = [Detections(torch.zeros(0, 7), torch.zeros(0), torch.zeros(0, dtype=torch.long))] * 2
    history = []
    for _ in range(steps):
        losses = head.loss(batch.points, batch.batch_index, no_detections, batch.boxes, batch.labels)
        optimizer.zero_grad()
        losses["loss_refine"].backward()
        optimizer.step()
        schedule.step()
        history.append(float(losses["loss_refine_box"]))
    assert np.mean(history[-10:]) < np.mean(history[:10]) / 2, (history[:10], history[-10:])
    head.eval()
    g = torch.Generator().manual_seed(7)
    noisy = [
        b + torch.randn(b.shape, generator=g) * torch.tensor([0.2, 0.2, 0.15, 0.0, 0.0, 0.0, 0.08])
        for b in batch.boxes
    ]
    detections = [
        Detections(n, torch.full((len(n),), 0.5), lb) for n, lb in zip(noisy, batch.labels, strict=True)
    ]
    refined = head.refine(batch.points, batch.batch_index, detections)
    before = torch.cat([boxes_iou3d(n, b).diagonal() for n, b in zip(noisy, batch.boxes, strict=True)])
    after = []
    for det, gt in zip(refined, batch.boxes, strict=True):
        after.append(boxes_iou3d(det.boxes, gt).max(dim=0).values)  # refined boxes are re-sorted by score
    after = torch.cat(after)
    assert after.mean() > before.mean() + 0.1, (before, after)


def test_detector_with_a_refiner_trains_and_predicts_and_steps_on_empty_frames() -> None:
    torch.manual_seed(0)
    base = pointpillars()
    model = Detector(base.encoder, None, base.backbone_2d, base.head, PointRefinementHead(num_classes=2))
    batch = synthetic_batch()
    losses = model.loss(model(batch), batch)
    assert {"loss_refine", "loss_refine_score", "loss_refine_box"} <= losses.keys()
    losses["loss"].backward()
    assert model.refiner.score.weight.grad is not None and model.refiner.score.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        detections = model.predict(model(batch), batch)
    assert len(detections) == 2 and all(isinstance(d, Detections) for d in detections)
    # frames without objects (and without points in any RoI) still give a finite loss with a gradient
    model.train()
    empty = synthetic_batch()
    empty.boxes = [torch.zeros(0, 7), torch.zeros(0, 7)]
    empty.labels = [torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)]
    losses = model.loss(model(empty), empty)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_refiner_and_head_must_agree_on_the_classes() -> None:
    base = pointpillars()
    with pytest.raises(ValueError, match="classes"):
        Detector(base.encoder, None, base.backbone_2d, base.head, PointRefinementHead(num_classes=3))
