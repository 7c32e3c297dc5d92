"""CenterPoint head: Gaussian radius by hand, target heatmaps, encode → perfect prediction → decode round
trip (range edges, yaw ±π, an empty sample), the focal loss at its optimum and away from it, NMS per class."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from perception.models.heads import CenterHead, HeadOutput, gaussian_radius
from perception.models.heads.center_head import focal_loss, top_k_by_index
from perception.structures import Detections

RANGE = [0.0, -8.0, -3.0, 19.2, 8.0, 1.0]
VOXEL = [0.1, 0.1, 4.0]
STRIDE = 4  # cells 0.4 m; map (H', W') = (40, 48)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_head(**kwargs: object) -> CenterHead:
    torch.manual_seed(0)
    return CenterHead(
        8, ["Car", "Pedestrian"], RANGE, VOXEL, STRIDE, shared_channels=8, head_channels=8, **kwargs
    )


def gt() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Three samples: several boxes (one near each edge, yaw ±π, one out of range), none, one."""
    boxes0 = torch.tensor(
        [
            [5.0, 2.0, -1.0, 4.0, 1.8, 1.6, 0.3],
            [12.3, -4.1, -0.9, 4.2, 1.9, 1.5, math.pi],  # yaw π (wraps to -π)
            [15.0, 5.0, -1.0, 0.8, 0.7, 1.7, -math.pi],
            [19.15, 7.95, -1.2, 4.0, 1.7, 1.5, 1.0],  # centre in the last cell of x and y
            [0.01, -7.99, -1.0, 0.6, 0.6, 1.8, -1.5],  # centre in the first cell
            [25.0, 0.0, -1.0, 4.0, 1.8, 1.6, 0.0],  # outside the range: no target
        ]
    )
    labels0 = torch.tensor([0, 0, 1, 0, 1, 0])
    boxes2 = torch.tensor([[9.0, 0.0, -1.0, 4.5, 2.0, 1.6, -2.0]])
    return [boxes0, torch.zeros(0, 7), boxes2], [labels0, torch.zeros(0, dtype=torch.long), torch.tensor([0])]


def perfect_output(head: CenterHead, boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> HeadOutput:
    """Maps that decode to the targets: heatmap logits of the target heatmap (≈1 at peaks), regression
    equal to the targets at the centre cells (zeros elsewhere)."""
    t = head.encode_targets(boxes, labels)
    b, _, h, w = t.heatmap.shape
    reg = torch.zeros(b, 8, h * w)
    reg[t.batch, :, t.cell] = t.regression
    reg = reg.view(b, 8, h, w)
    heatmap = torch.logit(t.heatmap.clamp(1e-6, 1 - 1e-6))
    return HeadOutput(heatmap, reg[:, 0:2], reg[:, 2:3], reg[:, 3:6], reg[:, 6:8])


def test_gaussian_radius_hand_values() -> None:
    # 10 × 10 cells, overlap 0.1: case 3 (a = 0.4, b = -4, c = -90) gives (-4 + sqrt(16 + 144)) / 2
    r = gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), 0.1)
    torch.testing.assert_close(
        r, torch.tensor([(-4 + math.sqrt(160)) / 2])
    )  # 4.3246; cases 1, 2: 14.26, 26.32
    # 4 × 2 cells: case 3 (a = 0.4, b = -1.2, c = -7.2): (-1.2 + sqrt(1.44 + 11.52)) / 2 = (-1.2 + 3.6) / 2
    r = gaussian_radius(torch.tensor([4.0]), torch.tensor([2.0]), 0.1)
    torch.testing.assert_close(r, torch.tensor([1.2]))
    # overlap 0.7, 10 × 10: the three cases written out
    o = 0.7
    r1 = (20 + math.sqrt(400 - 4 * 100 * (1 - o) / (1 + o))) / 2
    r2 = (40 + math.sqrt(1600 - 16 * (1 - o) * 100)) / 2
    r3 = (-2 * o * 20 + math.sqrt((2 * o * 20) ** 2 + 16 * o * (1 - o) * 100)) / 2
    expected = min(r1, r2, r3)
    torch.testing.assert_close(
        gaussian_radius(torch.tensor([10.0]), torch.tensor([10.0]), o), torch.tensor([expected])
    )


def test_target_heatmap_is_a_gaussian_with_min_radius() -> None:
    head = make_head()
    assert head.map_shape == (40, 48)
    box = torch.tensor([[5.0, 2.0, -1.0, 1.6, 0.8, 1.6, 0.0]])  # 4 × 2 cells: radius 1.2 → min_radius 2
    t = head.encode_targets([box], [torch.tensor([1])])
    ix, iy = int(5.0 / 0.4), int(10.0 / 0.4)
    assert t.cell.tolist() == [iy * 48 + ix] and t.labels.tolist() == [1]
    hm = t.heatmap[0, 1]
    assert hm[iy, ix] == 1.0 and t.heatmap[0, 0].sum() == 0
    sigma = 5 / 6  # (2r + 1) / 6 with r = 2
    torch.testing.assert_close(hm[iy, ix + 1], torch.tensor(math.exp(-1 / (2 * sigma**2))))
    torch.testing.assert_close(hm[iy + 2, ix - 2], torch.tensor(math.exp(-8 / (2 * sigma**2))))
    assert hm[iy + 3, ix] == 0 and hm[iy, ix - 3] == 0
    assert int((hm > 0).sum()) == 25
    offset = t.regression[0, :2]
    torch.testing.assert_close(offset, torch.tensor([5.0 / 0.4 - ix, 10.0 / 0.4 - iy]))


def test_encode_then_decode_a_perfect_prediction_recovers_the_boxes() -> None:
    head = make_head(peak_max_pool=True)
    boxes, labels = gt()
    detections = head.decode(perfect_output(head, boxes, labels))
    assert len(detections) == 3
    for det, bx, lb in zip(detections, boxes, labels, strict=True):
        inside = (bx[:, 0] >= RANGE[0]) & (bx[:, 0] < RANGE[3])
        bx, lb = bx[inside], lb[inside]
        assert isinstance(det, Detections)
        assert det.boxes.dtype == torch.float32 and det.labels.dtype == torch.int64
        assert det.boxes.shape == (len(bx), 7) and det.scores.shape == (len(bx),)
        assert (det.scores > 0.99).all()
        assert (det.boxes[:, 6] >= -math.pi).all() and (det.boxes[:, 6] < math.pi).all()
        for box, label in zip(bx, lb, strict=True):
            match = (det.boxes[:, :2] - box[:2]).norm(dim=1).argmin()
            assert det.labels[match] == label
            torch.testing.assert_close(det.boxes[match, :6], box[:6], atol=1e-4, rtol=0)
            dyaw = (det.boxes[match, 6] - box[6] + math.pi) % (2 * math.pi) - math.pi
            assert abs(float(dyaw)) < 1e-4


def test_yaw_pi_decodes_to_minus_pi() -> None:
    head = make_head(peak_max_pool=True)
    box = torch.tensor([[9.0, 0.0, -1.0, 4.0, 2.0, 1.6, math.pi]])
    det = head.decode(perfect_output(head, [box], [torch.tensor([0])]))[0]
    assert len(det) == 1
    assert -math.pi <= float(det.boxes[0, 6]) < -math.pi + 1e-4


def test_focal_loss_is_zero_at_the_optimum_and_positive_elsewhere() -> None:
    head = make_head()
    boxes, labels = gt()
    t = head.encode_targets(boxes, labels)
    best = torch.where(t.heatmap == 1, 20.0, -20.0)  # p → 1 at centres, 0 elsewhere
    assert float(focal_loss(best, t.heatmap)) < 1e-6
    assert float(focal_loss(torch.zeros_like(best), t.heatmap)) > 1.0  # p = 0.5 everywhere
    assert float(focal_loss(-best, t.heatmap)) > 100.0  # inverted
    out = perfect_output(head, boxes, labels)
    out = HeadOutput(best, out.offset, out.z, out.log_dims, out.rot)
    losses = head.loss(out, boxes, labels)
    assert set(losses) >= {"loss", "loss_heatmap", "loss_regression"}
    assert float(losses["loss"]) < 1e-6


def test_loss_normalisation_and_gradients() -> None:
    head = make_head(regression_weight=2.0, code_weights=(1, 1, 1, 1, 1, 1, 0.5, 0.5))
    boxes, labels = gt()
    out = perfect_output(head, boxes, labels)
    t = head.encode_targets(boxes, labels)
    assert t.num_objects == 6
    shifted = HeadOutput(out.heatmap, out.offset, out.z + 0.5, out.log_dims, out.rot + 1.0)
    losses = head.loss(shifted, boxes, labels)
    # per object: z |0.5| · 1 + rot (|1| + |1|) · 0.5 = 1.5, summed over 6 objects / 6; × regression weight 2
    torch.testing.assert_close(losses["loss_regression"], torch.tensor(1.5))
    torch.testing.assert_close(losses["loss_z"], torch.tensor(0.5))
    torch.testing.assert_close(losses["loss"] - losses["loss_heatmap"], torch.tensor(3.0))
    # real forward: gradients reach every parameter
    head.train()
    features = torch.randn(3, 8, *head.map_shape)
    losses = head.loss(head(features), boxes, labels)
    losses["loss"].backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_no_objects_anywhere() -> None:
    head = make_head()
    empty = [torch.zeros(0, 7), torch.zeros(0, 7)]
    no_labels = [torch.zeros(0, dtype=torch.long)] * 2
    out = head(torch.randn(2, 8, *head.map_shape))
    losses = head.loss(out, empty, no_labels)
    assert torch.isfinite(losses["loss"]) and float(losses["loss_regression"].detach()) == 0.0
    losses["loss"].backward()
    best = HeadOutput(torch.full_like(out.heatmap, -20.0), out.offset, out.z, out.log_dims, out.rot)
    assert float(head.loss(best, empty, no_labels)["loss"].detach()) < 1e-6
    for det in head.decode(best):
        assert det.boxes.shape == (0, 7) and det.scores.shape == (0,) and det.labels.shape == (0,)
        assert det.boxes.dtype == torch.float32 and det.labels.dtype == torch.int64


def test_nms_is_per_class() -> None:
    head = make_head(nms_iou_threshold=[0.5, 0.5])
    h, w = head.map_shape
    heatmap = torch.full((1, 2, h, w), -20.0)
    # two neighbouring peaks of class 0 (same box → suppressed), one of class 1 at the same place (kept)
    heatmap[0, 0, 20, 20], heatmap[0, 0, 20, 21], heatmap[0, 1, 20, 20] = 5.0, 4.0, 3.0
    reg = torch.zeros(1, 8, h, w)
    reg[0, 0, 20, 21] = -1.0  # the second peak's box has the same centre as the first's
    reg[0, 3:6] = math.log(2.0)
    reg[0, 7] = 1.0
    det = head.decode(HeadOutput(heatmap, reg[:, :2], reg[:, 2:3], reg[:, 3:6], reg[:, 6:]))[0]
    assert det.labels.tolist() == [0, 1]
    torch.testing.assert_close(det.scores, torch.sigmoid(torch.tensor([5.0, 3.0])))
    no_nms = make_head(nms_iou_threshold=None)
    assert len(no_nms.decode(HeadOutput(heatmap, reg[:, :2], reg[:, 2:3], reg[:, 3:6], reg[:, 6:]))[0]) == 3


def test_wrong_map_size_is_a_clear_error() -> None:
    head = make_head()
    with pytest.raises(ValueError, match="out_stride"):
        head(torch.randn(1, 8, 80, 96))


# ----------------------------------------------------------------------------------------------------
# Ties in decoding (found by tools/check_invariance.py: torch.topk's choice among equal scores moved
# with rounding-level changes elsewhere in the map, so the same cloud in another point order decoded
# to other boxes)


@pytest.mark.parametrize("seed", range(5))
def test_top_k_by_index_is_a_stable_descending_sort(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 5, (3, 200), generator=g).float()  # many ties
    for k in (0, 1, 7, 100, 200):
        got_values, got_index = top_k_by_index(values, k)
        expected = torch.sort(values, dim=1, descending=True, stable=True)
        assert torch.equal(got_values, expected.values[:, :k])
        assert torch.equal(got_index, expected.indices[:, :k])


def test_decode_takes_tied_cells_by_class_then_cell_whatever_the_rest_of_the_map() -> None:
    head = make_head(nms_iou_threshold=None, pre_nms_top_k=5, score_threshold=0.0)
    h, w = head.map_shape
    heatmap = torch.full((1, 2, h, w), 1.0)  # every cell tied, as empty space is
    heatmap[0, 1, 30, 30] = 4.0  # one peak: always first
    reg = torch.zeros(1, 8, h, w)
    reg[0, 7] = 1.0
    maps = HeadOutput(heatmap, reg[:, :2], reg[:, 2:3], reg[:, 3:6], reg[:, 6:])
    first = head.decode(maps)[0]
    corners = torch.tensor([0.0, 1.0, 2.0, 3.0]) * head.cell_size[0] + head.point_cloud_range[0]
    assert first.labels.tolist() == [1, 0, 0, 0, 0]
    torch.testing.assert_close(first.boxes[1:, 0], corners)  # class 0, cells 0..3 of row 0 (offset 0)
    for shift in (1e-7, -1e-7, 1e-3):  # rounding-level (or larger) changes away from the tied cells
        other = heatmap.clone()
        other[0, 1, 30, 30] += shift
        other[0, 0, 10:20, 10:20] = 0.5
        again = head.decode(HeadOutput(other, maps.offset, maps.z, maps.log_dims, maps.rot))[0]
        assert torch.equal(again.boxes, first.boxes) and torch.equal(again.labels, first.labels)
