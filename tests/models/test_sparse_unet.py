"""SparseUNet: the Point2PointBackbone contract (shapes, eval-mode permutation equivariance, no batch
mixing), its voxelization (per-cloud grids, nothing dropped), gradients on the CPU, a tiny overfit, and
CPU/GPU agreement where spconv's CUDA build and a GPU are present."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perception.models import SparseUNet
from perception.models.backbones.sparse_unet import voxelize_clouds
from perception.ops.sparse import spconv_cuda_available

SMALL = {"channels": (8, 16, 16), "blocks": (1, 1, 1), "out_channels": 12, "voxel_size": 0.2}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 0, **kwargs) -> SparseUNet:
    """A small SparseUNet with non-trivial BatchNorm statistics (so eval mode is not the identity)."""
    torch.manual_seed(seed)
    model = SparseUNet(4, **{**SMALL, **kwargs})
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@functools.cache
def shared_model() -> SparseUNet:
    return make_model(seed=3)


def cloud(n: int, seed: int, extent: float = 3.0, shift: float = 0.0) -> torch.Tensor:
    """(n, 4) float32 points: x, y, z in a box of ``extent`` metres (+ shift), reflectance in [0, 1);
    a quarter of them exact duplicates of others, another quarter in the same voxels as others."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(n, 4, generator=g)
    pts[:, :3] = pts[:, :3] * extent - extent / 2 + shift
    q = n // 4
    src = torch.randint(0, n - 2 * q, (2 * q,), generator=g)
    pts[n - 2 * q : n - q] = pts[src[:q]]  # exact duplicates
    pts[n - q :] = pts[src[q:]]
    pts[n - q :, :3] += torch.rand(q, 3, generator=g) * 0.01  # same voxel (mostly), other coordinates
    pts[n - q :, 3] = torch.rand(q, generator=g)
    return pts


def batch_of(*clouds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(clouds)])
    return torch.cat(clouds), index


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    scale = float(expected.abs().max().clamp_min(1e-12))
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def test_output_shape_and_public_attributes() -> None:
    model = make_model()
    points, index = batch_of(cloud(300, 0), cloud(200, 1, extent=8.0))
    with torch.no_grad():
        out = model(points, index)
    assert out.shape == (500, 12) and out.dtype == torch.float32
    assert model.out_channels == 12 and model.voxel_size == (0.2, 0.2, 0.2)
    per_axis = make_model(voxel_size=(0.2, 0.3, 0.5), point_skip=False, decoder_blocks=(0, 2))
    assert per_axis(points, index).shape == (500, 12)
    default = SparseUNet(4)
    assert default.out_channels == 64 and default.voxel_size == (0.1, 0.1, 0.1)
    assert sum(p.numel() for p in default.parameters()) == 7_188_352


def test_empty_input_and_bad_input() -> None:
    model = make_model()
    assert model(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 12)
    points, index = batch_of(cloud(40, 0), cloud(40, 1))
    with pytest.raises(ValueError, match="non-decreasing"):
        model(points, index.flip(0))
    with pytest.raises(ValueError, match="in_channels"):
        model(points[:, :3], index)
    with pytest.raises(ValueError, match="batch_index"):
        model(points, index[:-1])
    bad = points.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        model(bad, index)
    far = points.clone()
    far[0, 0] = 1e6
    with pytest.raises(ValueError, match="spans"):
        model(far, index)


def test_voxelization_is_per_cloud_and_drops_nothing() -> None:
    a, b = cloud(200, 0), cloud(150, 1, extent=5.0, shift=-40.0)
    points, index = batch_of(a, b)
    size = torch.tensor([0.2, 0.25, 0.5])
    point_voxel, indices, shape, batch_size = voxelize_clouds(points, index, size, multiple=4)
    assert batch_size == 2 and all(s % 4 == 0 for s in shape)
    cells = torch.floor(points[:, :3] / size).long()
    expected = {(int(i), *c.tolist()) for i, c in zip(index, cells, strict=True)}
    assert len(indices) == len(expected)  # one voxel per occupied (cloud, cell): nothing dropped
    key = indices.long()
    assert bool((key[1:] > key[:-1]).any(1).all())  # strictly sorted by (b, z, y, x) ...
    flat = ((key[:, 0] * shape[0] + key[:, 1]) * shape[1] + key[:, 2]) * shape[2] + key[:, 3]
    assert bool((flat[1:] > flat[:-1]).all())
    for i in range(2):  # ... each cloud's grid starts at 0
        assert indices[indices[:, 0] == i, 1:].amin(0).tolist() == [0, 0, 0]
    # the point → voxel map: same voxel iff same (cloud, cell)
    zyx = indices[point_voxel, 1:].long().flip(1)
    for i, sub in ((0, a), (1, b)):
        mine = index == i
        sub_cells = torch.floor(sub[:, :3] / size).long()
        torch.testing.assert_close(zyx[mine], sub_cells - sub_cells.amin(0))


def test_eval_mode_is_permutation_equivariant_within_each_cloud() -> None:
    model = make_model()
    a, b = cloud(400, 0), cloud(300, 1, extent=6.0)
    points, index = batch_of(a, b)
    g = torch.Generator().manual_seed(7)
    perm = torch.cat([torch.randperm(400, generator=g), 400 + torch.randperm(300, generator=g)])
    with torch.no_grad():
        out = model(points, index)
        permuted = model(points[perm], index)
    assert_close_relative(permuted, out[perm])


def test_no_batch_mixing() -> None:
    """A cloud's outputs are the same alone and batched with a cloud of another size and extent."""
    model = make_model()
    a, b = cloud(300, 0), cloud(520, 1, extent=9.0, shift=20.0)
    with torch.no_grad():
        alone_a = model(*batch_of(a))
        alone_b = model(*batch_of(b))
        ab = model(*batch_of(a, b))
        ba = model(*batch_of(b, a))
    assert_close_relative(ab[:300], alone_a)
    assert_close_relative(ab[300:], alone_b)
    assert_close_relative(ba[:520], alone_b)
    assert_close_relative(ba[520:], alone_a)


@pytest.mark.parametrize("kwargs", [{}, {"point_skip": False, "decoder_blocks": (0, 1), "blocks": (0, 1, 2)}])
def test_gradients_reach_every_parameter_on_the_cpu(kwargs: dict) -> None:
    model = make_model(**kwargs).train()
    points, index = batch_of(cloud(300, 0), cloud(250, 1, extent=5.0))
    points.requires_grad_(True)
    out = model(points, index)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert points.grad is not None and bool(torch.isfinite(points.grad).all())


def test_overfits_a_labelling_by_position() -> None:
    """400 points, 4 classes from the signs of x and z: ~100 Adam steps fit them (chance: 25 %)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    points = torch.rand(400, 4, generator=g)
    points[:, :3] = points[:, :3] * 4 - 2
    labels = (points[:, 0] > 0).long() + 2 * (points[:, 2] > 0.3).long()
    index = torch.zeros(400, dtype=torch.long)
    model = SparseUNet(4, out_channels=16, voxel_size=0.25, channels=(16, 32, 32), blocks=(1, 1, 1))
    classifier = torch.nn.Linear(16, 4)
    optimizer = torch.optim.Adam([*model.parameters(), *classifier.parameters()], lr=1e-2)
    for _ in range(100):
        logits = classifier(model(points, index))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = float((logits.argmax(1) == labels).float().mean())
    assert accuracy > 0.9, (accuracy, float(loss))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    grid=st.sampled_from([0.05, 0.1, 0.3]),
)
def test_permutation_equivariance_property(sizes: list[int], seed: int, grid: float) -> None:
    """Random small clouds on a coarse lattice (many points share voxels, some are duplicates)."""
    g = torch.Generator().manual_seed(seed)
    clouds = []
    for n in sizes:
        xyz = torch.randint(-15, 15, (n, 3), generator=g).float() * grid
        refl = torch.randint(0, 3, (n, 1), generator=g).float() / 2
        clouds.append(torch.cat([xyz, refl], dim=1))
    points, index = batch_of(*clouds)
    offsets = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    perm = torch.cat([o + torch.randperm(n, generator=g) for o, n in zip(offsets, sizes, strict=False)])
    model = shared_model()
    with torch.no_grad():
        out = model(points, index)
        permuted = model(points[perm], index)
    assert_close_relative(permuted, out[perm])


@pytest.mark.skipif(not spconv_cuda_available(), reason="needs spconv's CUDA build and a GPU")
def test_gpu_matches_cpu() -> None:
    model = make_model()
    points, index = batch_of(cloud(400, 0), cloud(300, 1, extent=6.0))
    with torch.no_grad():
        cpu = model(points, index)
        gpu = model.cuda()(points.cuda(), index.cuda()).cpu()
    assert_close_relative(gpu, cpu, rel=1e-3)
    model.train()
    out = model(points.cuda(), index.cuda())
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
