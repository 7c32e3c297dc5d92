"""The detector end to end: built from a LightningCLI-style YAML tree, and two tiny detectors (PointPillars
style and PVT + sparse 3D backbone) overfitting one synthetic batch on the CPU until `predict` finds the boxes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from perception.models import (
    BEVBackbone,
    CenterHead,
    Detector,
    HeadOutput,
    PointNetEncoder,
    PVTEncoder,
    SparseBackbone3d,
)
from perception.ops.iou3d import boxes_iou_bev
from perception.structures import Batch, Detections

RANGE = [0.0, -9.6, -2.0, 19.2, 9.6, 2.0]
CLASSES = ["Car", "Pedestrian"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def box_points(box: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 3) points inside ``box``, half of them on its side faces (as a LiDAR sees a car)."""
    u = torch.rand(n, 3, generator=g) - 0.5
    axis = torch.randint(0, 2, (n,), generator=g)
    side = torch.where(torch.rand(n, generator=g) < 0.5, -0.5, 0.5)
    on_face = torch.rand(n, generator=g) < 0.5
    u[on_face, axis[on_face]] = side[on_face]
    local = u * box[3:6]
    c, s = torch.cos(box[6]), torch.sin(box[6])
    x = c * local[:, 0] - s * local[:, 1] + box[0]
    y = s * local[:, 0] + c * local[:, 1] + box[1]
    return torch.stack([x, y, local[:, 2] + box[2]], dim=1)


def synthetic_batch(seed: int = 0) -> Batch:
    """Two scenes in RANGE: a few cars and pedestrians over a flat ground, (N, 4) points x, y, z, intensity."""
    g = torch.Generator().manual_seed(seed)
    boxes = [
        torch.tensor(
            [
                [5.0, 2.0, -1.0, 4.0, 1.8, 1.6, 0.3],
                [12.0, -4.0, -0.9, 4.2, 1.9, 1.5, -2.5],
                [15.0, 5.0, -1.0, 0.8, 0.7, 1.7, 1.0],
            ]
        ),
        torch.tensor([[8.0, -6.0, -1.0, 4.0, 1.8, 1.6, 3.1], [3.0, 6.0, -1.0, 0.7, 0.6, 1.7, -1.2]]),
    ]
    labels = [torch.tensor([0, 0, 1]), torch.tensor([0, 1])]
    clouds = []
    for bx in boxes:
        parts = [box_points(b, 300, g) for b in bx]
        ground = torch.rand(1500, 3, generator=g) * torch.tensor([19.2, 19.2, 0.05]) + torch.tensor(
            [0.0, -9.6, -1.8]
        )
        xyz = torch.cat([*parts, ground])
        clouds.append(torch.cat([xyz, torch.rand(len(xyz), 1, generator=g)], dim=1))
    return Batch(
        points=torch.cat(clouds),
        batch_index=torch.cat([torch.full((len(c),), i) for i, c in enumerate(clouds)]),
        boxes=boxes,
        labels=labels,
        frame_ids=["a", "b"],
    )


def pointpillars() -> Detector:
    voxel = [0.2, 0.2, 4.0]
    backbone = BEVBackbone(
        32,
        channels=(32, 32),
        blocks=(1, 1),
        strides=(2, 2),
        upsample_strides=(1, 2),
        upsample_channels=(32, 32),
    )
    head = CenterHead(
        64, CLASSES, RANGE, voxel, out_stride=2, shared_channels=32, head_channels=32, regression_weight=1.0
    )
    return Detector(PointNetEncoder(4, voxel, RANGE, channels=(32,)), None, backbone, head)


def pvt_sparse() -> Detector:
    voxel = [0.2, 0.2, 0.25]
    sparse = SparseBackbone3d(32, channels=(16, 32), blocks=(1, 1), strides=(2,))
    bev_channels, _, _ = sparse.output_shape((16, 96, 96))  # 32 channels × 8 z slices
    backbone = BEVBackbone(
        bev_channels,
        channels=(32, 32),
        blocks=(1, 1),
        strides=(1, 2),
        upsample_strides=(1, 2),
        upsample_channels=(32, 32),
    )
    head = CenterHead(
        64, CLASSES, RANGE, voxel, out_stride=2, shared_channels=32, head_channels=32, regression_weight=1.0
    )
    encoder = PVTEncoder(4, voxel, RANGE, width=32, depth=1, num_heads=4, query="residual")
    return Detector(encoder, sparse, backbone, head)


@pytest.mark.parametrize("build", [pointpillars, pvt_sparse], ids=["pointpillars", "pvt-sparse"])
def test_overfits_one_batch_and_finds_the_boxes(build: Callable[[], Detector]) -> None:
    torch.manual_seed(0)
    model, batch = build(), synthetic_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses = model.loss(model(batch), batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["loss"].detach()))
    assert history[-1] < history[0] / 10, history
    # Predict from the training-mode forward: after 40 steps BatchNorm's running statistics (momentum
    # 0.01) have not caught up with the batch statistics, which is all that this overfit checks.
    with torch.no_grad():
        output = model(batch)
    assert isinstance(output, HeadOutput)
    detections = model.predict(output, batch)
    assert len(detections) == batch.batch_size
    for det, boxes, labels in zip(detections, batch.boxes, batch.labels, strict=True):
        assert isinstance(det, Detections) and len(det) >= len(boxes)
        iou = boxes_iou_bev(boxes, det.boxes)  # (M, K)
        best = iou.argmax(dim=1)
        assert (iou.max(dim=1).values > 0.5).all(), iou.max(dim=1).values
        assert torch.equal(det.labels[best], labels)


DETECTOR_YAML = """
model:
  class_path: perception.models.Detector
  init_args:
    encoder:
      class_path: perception.models.PVTEncoder
      init_args: {in_channels: 4, voxel_size: [0.2, 0.2, 4.0], point_cloud_range: [0, -9.6, -2, 19.2, 9.6, 2],
                  width: 16, depth: 1, num_heads: 2, query: latent}
    backbone_3d:
      class_path: perception.models.PillarScatter
    backbone_2d:
      class_path: perception.models.BEVBackbone
      init_args: {in_channels: 16, channels: [16, 16], blocks: [1, 1], strides: [1, 2],
                  upsample_strides: [1, 2], upsample_channels: [8, 8]}
    head:
      class_path: perception.models.CenterHead
      init_args: {in_channels: 16, class_names: [Car, Pedestrian], point_cloud_range: [0, -9.6, -2, 19.2, 9.6, 2],
                  voxel_size: [0.2, 0.2, 4.0], out_stride: 1, nms_iou_threshold: [0.7, 0.5], regression_weight: 2.0}
"""


def test_builds_from_a_lightning_cli_style_yaml_tree() -> None:
    parser = ArgumentParser()
    parser.add_argument("--model", type=Detector)
    config = parser.parse_object(yaml.safe_load(DETECTOR_YAML))
    model = parser.instantiate(config).model
    assert isinstance(model, Detector) and isinstance(model.encoder, PVTEncoder)
    assert model.head.nms_iou_threshold == [0.7, 0.5] and model.head.regression_weight == 2.0
    batch = synthetic_batch()
    output = model(batch)
    assert output.heatmap.shape == (2, 2, 96, 96)
    losses = model.loss(output, batch)
    assert torch.isfinite(losses["loss"])
    model.eval()
    with torch.no_grad():
        assert len(model.predict(model(batch), batch)) == 2


@pytest.mark.slow
def test_compiled_task_trains_and_keeps_the_eager_state_dict() -> None:
    """``DetectionTask(compile=True)``: inductor on the CPU, same outputs and checkpoint keys as eager."""
    from perception.tasks.detection import DetectionTask

    torch.manual_seed(0)
    task = DetectionTask(pointpillars(), CLASSES, compile=True)
    batch = synthetic_batch()
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = task.model.loss(task(batch), batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert list(task.state_dict()) == list(DetectionTask(pointpillars(), CLASSES).state_dict())
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(task(batch).heatmap, task.model(batch).heatmap, atol=1e-5, rtol=1e-5)
