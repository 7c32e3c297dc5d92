"""The second stage: residual coding, point pooling against the geometry reference, permutation
invariance, and a refiner that learns to pull jittered boxes onto the objects."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_detector import box_points, pointpillars, synthetic_batch

from perception.geometry.boxes import points_in_boxes_mask
from perception.models import Detector, PointRefinementHead
from perception.models.heads.point_refine import (
    canonical_point_features,
    decode_residuals,
    encode_residuals,
    roi_points,
)
from perception.ops.iou3d import boxes_iou3d
from perception.structures import Detections


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_boxes(g: torch.Generator, n: int) -> torch.Tensor:
    low = torch.tensor([0.0, -20.0, -2.0, 0.5, 0.5, 0.5, -math.pi])
    span = torch.tensor([40.0, 40.0, 2.0, 4.0, 2.0, 2.0, 2 * math.pi])
    return torch.rand(n, 7, generator=g, dtype=torch.float64).float() * span + low


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), flip=st.booleans())
def test_residuals_round_trip_and_stay_within_a_quarter_turn(seed: int, flip: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    rois = random_boxes(g, 20)
    boxes = rois.clone()
    boxes[:, :3] += torch.randn(20, 3, generator=g) * 0.3
    boxes[:, 3:6] *= torch.exp(torch.randn(20, 3, generator=g) * 0.1)
    boxes[:, 6] += torch.randn(20, generator=g) * 0.2 + (math.pi if flip else 0.0)
    residuals = encode_residuals(rois, boxes)
    assert (residuals[:, 6].abs() <= math.pi / 2 + 1e-6).all()
    decoded = decode_residuals(rois, residuals)
    torch.testing.assert_close(decoded[:, :6], boxes[:, :6], atol=1e-4, rtol=1e-5)
    # the same box, possibly turned by π: the 3D IoU is 1
    iou = boxes_iou3d(decoded.double(), boxes.double()).diagonal()
    assert (iou > 0.999).all(), iou
    assert ((decoded[:, 6] >= -math.pi) & (decoded[:, 6] < math.pi)).all()


def test_zero_residual_decodes_to_the_roi() -> None:
    rois = random_boxes(torch.Generator().manual_seed(1), 10)
    torch.testing.assert_close(decode_residuals(rois, torch.zeros(10, 7)), rois, atol=1e-5, rtol=0)


def test_canonical_features_put_a_box_corner_on_its_faces() -> None:
    roi = torch.tensor([[3.0, 4.0, -1.0, 4.0, 2.0, 1.5, math.pi / 2]])
    # the front-left-top corner: 2 m along the heading (+y), 1 m to its left (-x), 0.75 m up
    corner = torch.tensor([[[3.0 - 1.0, 4.0 + 2.0, -1.0 + 0.75, 0.5]]])
    f = canonical_point_features(corner, roi)[0, 0]
    torch.testing.assert_close(f[:3], torch.tensor([2.0, 1.0, 0.75]), atol=1e-5, rtol=0)
    torch.testing.assert_close(f[3:9], torch.tensor([0.0, 4.0, 0.0, 2.0, 0.0, 1.5]), atol=1e-5, rtol=0)
    assert f[9] == 0.5


def test_roi_points_are_the_points_in_the_enlarged_boxes() -> None:
    g = torch.Generator().manual_seed(2)
    rois = random_boxes(g, 12)
    points = torch.rand(20000, 4, generator=g) * torch.tensor([44.0, 44.0, 4.0, 1.0]) + torch.tensor(
        [-2.0, -22.0, -3.0, 0.0]
    )
    ratio, margin = 1.2, 0.2
    index, count = roi_points(points, rois, 64, ratio, margin)
    enlarged = rois.clone().double()
    enlarged[:, 3:6] = enlarged[:, 3:6] * ratio + 2 * margin
    reference = points_in_boxes_mask(points.double().numpy(), enlarged.numpy())  # (N, R)
    np.testing.assert_array_equal(count.numpy(), reference.sum(0))
    for r in range(len(rois)):
        chosen = set(index[r].tolist())
        inside = set(np.flatnonzero(reference[:, r]).tolist())
        if count[r] == 0:
            assert chosen == {0}
        else:
            assert chosen <= inside and len(chosen) == min(64, int(count[r]))


def test_roi_points_choice_does_not_depend_on_the_order_of_the_points() -> None:
    g = torch.Generator().manual_seed(3)
    box = torch.tensor([5.0, 1.0, -1.0, 4.0, 1.8, 1.6, 0.4])
    points = torch.cat([box_points(box, 500, g), torch.rand(500, 1, generator=g)], dim=1)
    perm = torch.randperm(len(points), generator=g)
    a, _ = roi_points(points, box[None], 32)
    b, _ = roi_points(points[perm], box[None], 32)
    assert {tuple(p) for p in points[a[0]].tolist()} == {tuple(p) for p in points[perm][b[0]].tolist()}


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


def test_roi_point_pairs_agree_between_the_numba_and_tensor_paths() -> None:
    from perception.models.heads.point_refine import _pairs_in_rois, _pairs_torch

    g = torch.Generator().manual_seed(4)
    rois = random_boxes(g, 9).double()
    low = torch.tensor([-2.0, -22.0, -3.0], dtype=torch.float64)
    points = torch.rand(5000, 3, generator=g, dtype=torch.float64) * torch.tensor([44.0, 44.0, 4.0]) + low
    half = rois[:, 3:6] * 0.6 + 0.2
    r_nb, p_nb = _pairs_in_rois(points.numpy(), rois.numpy(), half.numpy())
    r_t, p_t = _pairs_torch(points, rois, half)
    pairs_nb = sorted(zip(r_nb.tolist(), p_nb.tolist(), strict=True))
    assert pairs_nb == sorted(zip(r_t.tolist(), p_t.tolist(), strict=True))
    assert len(r_nb) > 0
