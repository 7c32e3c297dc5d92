"""The inference path (eval mode, no gradients) against the modules' own layers, bit for bit: the CenterPoint
head's stacked branches, the PVT encoder's fused attention, the refiner's distinct rows, and a whole
quickstart-shaped detector's predictions, in float32 and under bf16 autocast; when the path is taken and
when its cached weights are rebuilt; and that it adds nothing to a checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

from perception.models import BEVBackbone, CenterHead, Detector, PointRefinementHead, PVTEncoder
from perception.models.heads.center_head import HeadOutput
from perception.models.inference_path import LayerWeights, WeightCache, fast_path, reference_path
from perception.structures import Batch, Detections

RANGE = [0.0, -9.6, -2.0, 19.2, 9.6, 2.0]
VOXEL = [0.32, 0.32, 4.0]
CLASSES = ["Car", "Pedestrian", "Cyclist"]
PRECISIONS = ["float32", "bf16-autocast"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def precision(name: str) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", torch.bfloat16, enabled=name == "bf16-autocast")


def randomize_norms(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so eval mode is not an identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return module


def both_paths(fn, precision_name: str):
    """``fn()`` on the inference path and on the reference path, in inference mode at ``precision_name``."""
    with torch.inference_mode(), precision(precision_name):
        fast = fn()
        with reference_path():
            reference = fn()
    return fast, reference


def scene(seed: int, n: int = 6000, batch_size: int = 2) -> Batch:
    """``batch_size`` clouds in (and a little around) RANGE: clutter plus dense box-shaped clusters."""
    g = torch.Generator().manual_seed(seed)
    clouds = []
    lo, hi = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
    for _ in range(batch_size):
        clutter = lo - 0.5 + torch.rand(n, 3, generator=g) * (hi - lo + 1.0)
        centres = lo[:2] + torch.rand(6, 2, generator=g) * (hi - lo)[:2]
        blobs = centres.repeat_interleave(150, 0) + torch.randn(900, 2, generator=g) * 0.6
        blobs = torch.cat([blobs, torch.rand(900, 1, generator=g) * 1.6 - 1.5], dim=1)
        xyz = torch.cat([clutter, blobs])
        clouds.append(torch.cat([xyz, torch.rand(len(xyz), 1, generator=g)], dim=1))
    return Batch(
        points=torch.cat(clouds),
        batch_index=torch.cat([torch.full((len(c),), b) for b, c in enumerate(clouds)]),
        boxes=[torch.zeros(0, 7)] * batch_size,
        labels=[torch.zeros(0, dtype=torch.long)] * batch_size,
        frame_ids=[str(b) for b in range(batch_size)],
    )


def assert_same_detections(fast: list[Detections], reference: list[Detections]) -> None:
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference, strict=True):
        assert (
            torch.equal(a.boxes, b.boxes)
            and torch.equal(a.scores, b.scores)
            and torch.equal(a.labels, b.labels)
        )


# ----------------------------------------------------------------------------------------------------
# When the path is taken


def test_the_inference_path_is_eval_mode_without_gradients_outside_the_reference_context() -> None:
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        assert not fast_path(module)  # training mode
        module.eval()
        assert fast_path(module)
        with reference_path():
            assert not fast_path(module)
        assert fast_path(module)
    assert not fast_path(module)  # gradients on
    with torch.inference_mode():
        assert fast_path(module)


def test_the_head_trains_through_its_own_layers() -> None:
    """Training (and eval with gradients) never takes the stacked path: gradients reach every branch."""
    head = CenterHead(16, CLASSES, RANGE, VOXEL, out_stride=2, shared_channels=8, head_channels=8)
    bev = torch.randn(1, 16, *head.map_shape)
    for mode in (True, False):
        head.train(mode).zero_grad()
        out = head(bev)
        sum(m.sum() for m in (out.heatmap, out.offset, out.z, out.log_dims, out.rot)).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_the_weight_cache_rebuilds_when_weights_change() -> None:
    module = torch.nn.Linear(3, 2)
    cache, builds = WeightCache(), []

    def build() -> torch.Tensor:
        builds.append(1)
        return module.weight.detach().clone()

    first = cache.get(module, build, torch.float32)
    assert cache.get(module, build, torch.float32) is first and len(builds) == 1
    cache.get(module, build, torch.bfloat16)  # another dtype
    assert len(builds) == 2
    module.weight.grad = torch.ones_like(module.weight)
    torch.optim.SGD(module.parameters(), lr=0.1).step()  # in place: a new version
    assert torch.equal(cache.get(module, build, torch.bfloat16), module.weight.detach())
    assert len(builds) == 3
    module.load_state_dict({"weight": torch.zeros(2, 3), "bias": torch.zeros(2)})
    assert torch.equal(cache.get(module, build, torch.bfloat16), torch.zeros(2, 3))
    assert len(builds) == 4


def test_the_inference_path_adds_nothing_to_the_state_dict() -> None:
    """Old checkpoints load strictly, and new ones have the same keys (the caches are plain attributes)."""
    detector = quickstart_like()
    keys = set(detector.state_dict())
    with torch.inference_mode():
        detector.eval().predict(detector(scene(0)), scene(0))
    assert set(detector.state_dict()) == keys
    assert not any("stacked" in k or "cache" in k for k in keys)
    fresh = quickstart_like()
    fresh.load_state_dict(detector.state_dict(), strict=True)


def test_stacking_needs_matching_layers() -> None:
    a = LayerWeights(torch.ones(2, 3), None, None)
    b = LayerWeights(torch.ones(2, 3), torch.zeros(2), None)
    with pytest.raises(ValueError, match="bias"):
        LayerWeights.stack([a, b])


# ----------------------------------------------------------------------------------------------------
# The head's stacked branches


@pytest.mark.parametrize("precision_name", PRECISIONS)
@pytest.mark.parametrize("head_convs", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [True, False])
def test_stacked_head_gives_the_branches_bits(
    precision_name: str, head_convs: int, channels_last: bool
) -> None:
    torch.manual_seed(head_convs)
    head = CenterHead(
        24, CLASSES, RANGE, VOXEL, out_stride=2, shared_channels=16, head_channels=8, head_convs=head_convs
    )
    head = randomize_norms(head).eval()
    bev = torch.randn(2, 24, *head.map_shape).relu()
    if channels_last:
        bev = bev.contiguous(memory_format=torch.channels_last)
    fast, reference = both_paths(lambda: head(bev), precision_name)
    for name in HeadOutput.__dataclass_fields__:
        a, b = getattr(fast, name), getattr(reference, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert torch.equal(a, b), name


@pytest.mark.parametrize("precision_name", PRECISIONS)
def test_head_behind_the_bev_backbone_gives_the_same_bits(precision_name: str) -> None:
    """As in the detector: the backbone's channels-last output into the head."""
    torch.manual_seed(0)
    backbone = randomize_norms(BEVBackbone(16, (16, 32), (1, 1), (2, 2), (1, 2), (16, 16))).eval()
    head = randomize_norms(CenterHead(32, CLASSES, RANGE, VOXEL, 2, 16, 8), seed=1).eval()
    ny, nx = head.map_shape
    bev = torch.randn(1, 16, 2 * ny, 2 * nx).relu().contiguous(memory_format=torch.channels_last)
    fast, reference = both_paths(lambda: head(backbone(bev)), precision_name)
    assert torch.equal(fast.heatmap, reference.heatmap) and torch.equal(fast.rot, reference.rot)


@pytest.mark.parametrize("precision_name", PRECISIONS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_bev_backbone_on_packed_weights_gives_the_same_bits(precision_name: str, channels_last: bool) -> None:
    """Odd map sizes (cropped upsampling), a batch of two, then another size (the packing is per shape)."""
    torch.manual_seed(0)
    backbone = randomize_norms(
        BEVBackbone(8, (16, 24, 24), (1, 2, 1), (2, 2, 2), (1, 2, 4), (8, 8, 8))
    ).eval()
    for shape in ((2, 8, 37, 29), (1, 8, 40, 40)):
        bev = torch.randn(*shape).relu()
        if channels_last:
            bev = bev.contiguous(memory_format=torch.channels_last)
        fast, reference = both_paths(lambda bev=bev: backbone(bev), precision_name)
        assert fast.dtype == reference.dtype and fast.shape == reference.shape
        assert torch.equal(fast, reference)


def test_modules_whose_layers_were_changed_run_their_own_layers() -> None:
    """A BatchNorm fused away or replaced after construction: the inference path would not be that
    module any more, so it steps aside."""
    torch.manual_seed(0)
    backbone = randomize_norms(BEVBackbone(8, (16, 16), (1, 1), (2, 2), (1, 2), (8, 8))).eval()
    head = randomize_norms(CenterHead(16, CLASSES, RANGE, VOXEL, 2, 8, 8)).eval()
    backbone.stages[0][1] = torch.nn.Identity()
    head.offset[1] = torch.nn.Identity()
    bev = torch.randn(1, 8, 2 * head.map_shape[0], 2 * head.map_shape[1]).contiguous(
        memory_format=torch.channels_last
    )
    fast, reference = both_paths(lambda: head(backbone(bev)), "float32")
    for name in HeadOutput.__dataclass_fields__:
        assert torch.equal(getattr(fast, name), getattr(reference, name)), name


# ----------------------------------------------------------------------------------------------------
# The PVT encoder's fused attention


@pytest.mark.parametrize("precision_name", PRECISIONS)
@pytest.mark.parametrize("query", ["residual", "latent"])
def test_pvt_encoder_fused_attention_gives_the_same_bits(precision_name: str, query: str) -> None:
    torch.manual_seed(0)
    encoder = PVTEncoder(4, VOXEL, RANGE, width=32, depth=2, num_heads=2, query=query, out_channels=16)
    encoder = randomize_norms(encoder).eval()
    batch = scene(1)
    fast, reference = both_paths(lambda: encoder(batch.points, batch.batch_index, 2), precision_name)
    assert torch.equal(fast.coords, reference.coords)
    assert fast.features.dtype == reference.features.dtype
    assert torch.equal(fast.features, reference.features)


# ----------------------------------------------------------------------------------------------------
# The refiner's distinct rows


def refiner_inputs(seed: int) -> tuple[Batch, list[Detections]]:
    """A two-cloud scene and detections on it: boxes on the clusters, boxes in clutter, a box far away
    (no points), and a sample with no detections at all."""
    batch = scene(seed, batch_size=3)
    g = torch.Generator().manual_seed(seed)
    detections = []
    for b in range(2):
        points = batch.points[batch.batch_index == b]
        centres = points[torch.randperm(len(points), generator=g)[:30], :3]
        sizes = torch.rand(30, 3, generator=g) * torch.tensor([4.0, 2.0, 1.5]) + 0.5
        yaw = torch.rand(30, 1, generator=g) * 6.28 - 3.14
        boxes = torch.cat([torch.cat([centres, sizes, yaw], 1), torch.tensor([[500.0, 0, 0, 4, 2, 1.5, 0]])])
        scores = torch.rand(len(boxes), generator=g).sort(descending=True).values
        detections.append(Detections(boxes, scores, torch.randint(0, 3, (len(boxes),), generator=g)))
    detections.append(Detections(torch.zeros(0, 7), torch.zeros(0), torch.zeros(0, dtype=torch.long)))
    return batch, detections


@pytest.mark.parametrize("precision_name", PRECISIONS)
@pytest.mark.parametrize("points_per_roi", [8, 64])
def test_refiner_distinct_rows_give_the_same_bits(precision_name: str, points_per_roi: int) -> None:
    torch.manual_seed(0)
    refiner = randomize_norms(PointRefinementHead(3, 4, points_per_roi=points_per_roi)).eval()
    torch.nn.init.normal_(refiner.residual.weight, std=0.05)  # (zero at initialisation)
    batch, detections = refiner_inputs(2)
    fast, reference = both_paths(
        lambda: refiner.refine(batch.points, batch.batch_index, detections), precision_name
    )
    assert_same_detections(fast, reference)
    assert len(fast[0]) > 0 and len(fast[2]) == 0
    shuffled = torch.randperm(len(batch.points), generator=torch.Generator().manual_seed(0))
    points, batch_index = batch.points[shuffled], batch.batch_index[shuffled]  # samples interleaved
    fast, reference = both_paths(lambda: refiner.refine(points, batch_index, detections), precision_name)
    assert_same_detections(fast, reference)


# ----------------------------------------------------------------------------------------------------
# A whole detector


def quickstart_like() -> Detector:
    """pvt_synthetic.yaml's architecture on a smaller grid, every detection kept (score threshold 0)."""
    torch.manual_seed(0)
    encoder = PVTEncoder(4, VOXEL, RANGE, width=32, depth=2, num_heads=4, query="residual", ffn_ratio=2.0)
    backbone = BEVBackbone(32, (32, 64, 64), (1, 2, 2), (2, 2, 2), (1, 2, 4), (32, 32, 32))
    head = CenterHead(96, CLASSES, RANGE, VOXEL, out_stride=2, shared_channels=32, head_channels=16)
    head.score_threshold = 0.0
    refiner = PointRefinementHead(3, 4, points_per_roi=64, nms_iou_threshold=0.5)
    torch.nn.init.normal_(refiner.residual.weight, std=0.05)
    return randomize_norms(Detector(encoder, None, backbone, head, refiner))


@pytest.mark.parametrize("precision_name", PRECISIONS)
def test_detector_predictions_are_the_same_bits_on_the_inference_path(precision_name: str) -> None:
    detector = quickstart_like().eval()
    batch = scene(3)

    def predict() -> list[Detections]:
        return detector.predict(detector(batch), batch)

    fast, reference = both_paths(predict, precision_name)
    assert all(len(d) > 0 for d in fast)
    assert_same_detections(fast, reference)
