"""Backbones: output shapes for given ranges and voxel sizes, the scatter's placement, forward + backward
of the sparse 3D backbone on the CPU, and no mixing between batch items."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from perception.models.backbones import BEVBackbone, PillarScatter, SparseBackbone3d
from perception.ops.voxelize import grid_shape
from perception.structures import VoxelFeatures


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_voxels(
    spatial_shape: tuple[int, int, int], batch_size: int, per_sample: int, channels: int, seed: int = 0
) -> VoxelFeatures:
    """Distinct random sites per sample, sorted by (b, z, y, x), with random features."""
    g = torch.Generator().manual_seed(seed)
    d, h, w = spatial_shape
    coords = []
    for b in range(batch_size):
        linear = torch.randperm(d * h * w, generator=g)[:per_sample].sort().values
        zyx = torch.stack([linear // (h * w), linear // w % h, linear % w], dim=1)
        coords.append(torch.cat([torch.full((per_sample, 1), b), zyx], dim=1))
    c = torch.cat(coords).to(torch.int32)
    return VoxelFeatures(torch.randn(len(c), channels, generator=g), c, spatial_shape, batch_size)


def test_pillar_scatter_places_features_at_their_cells() -> None:
    _, ny, nx = grid_shape([0.16, 0.16, 4.0], [0, -39.68, -3, 69.12, 39.68, 1])
    assert (ny, nx) == (496, 432)
    vox = random_voxels((1, ny, nx), batch_size=2, per_sample=50, channels=8)
    bev = PillarScatter()(vox)
    assert bev.shape == (2, 8, 496, 432)
    b, _, y, x = vox.coords.long().unbind(1)
    torch.testing.assert_close(bev[b, :, y, x], vox.features)
    assert int((bev.abs().sum(1) > 0).sum()) == vox.num_voxels  # zeros elsewhere


def test_pillar_scatter_stacks_z_like_a_dense_sparse_tensor() -> None:
    vox = random_voxels((3, 5, 6), batch_size=2, per_sample=20, channels=4)
    dense = vox.to_sparse().dense()  # (B, C, D, H, W)
    torch.testing.assert_close(PillarScatter()(vox), dense.reshape(2, 4 * 3, 5, 6))


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_pillar_scatter_hands_over_a_true_channels_last_map(depth: int, batch_size: int) -> None:
    """Strides ``(H·W·C, 1, W·C, C)`` for every batch size: with a stray batch stride (a reshape's, at
    B = 1) oneDNN copied the map to NCHW first and ran the whole BEV backbone there, 2.5× slower under
    bf16 on a 2-core CPU (the same bits under bf16; float32 convolutions move by a rounding)."""
    vox = random_voxels((depth, 6, 7), batch_size=batch_size, per_sample=10, channels=4)
    bev = PillarScatter()(vox)
    c = 4 * depth
    assert bev.shape == (batch_size, c, 6, 7)
    assert bev.stride() == (6 * 7 * c, 1, 7 * c, c)


def test_sparse_backbone_shapes_for_the_kitti_grid() -> None:
    """SECOND's grid (41, 1600, 1408) → a (B, 128·2, 200, 176) BEV map, computed without running it."""
    shape = grid_shape([0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1])
    assert shape == (40, 1600, 1408)
    backbone = SparseBackbone3d(4, out_channels=128)
    assert backbone.output_shape(shape) == (128 * 2, 200, 176)
    assert backbone.out_stride == 8
    assert SparseBackbone3d(4).output_shape((41, 1600, 1408)) == (64 * 6, 200, 176)


def test_sparse_backbone_forward_backward_on_cpu() -> None:
    torch.manual_seed(0)
    backbone = SparseBackbone3d(4, channels=(8, 16, 16, 16), blocks=(1, 2, 2, 2), out_channels=16)
    vox = random_voxels((24, 24, 20), batch_size=2, per_sample=300, channels=4)
    features = vox.features.clone().requires_grad_(True)
    vox = VoxelFeatures(features, vox.coords, vox.spatial_shape, vox.batch_size)
    bev = backbone(vox)
    c, h, w = backbone.output_shape((24, 24, 20))
    assert bev.shape == (2, c, h, w) == (2, 16 * 1, 3, 3)
    (bev * torch.randn_like(bev)).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    for name, p in backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sparse_backbone_does_not_mix_batch_items() -> None:
    torch.manual_seed(0)
    backbone = SparseBackbone3d(4, channels=(8, 16, 16), blocks=(1, 2, 1), strides=(2, (1, 2, 2))).eval()
    vox = random_voxels((8, 16, 16), batch_size=2, per_sample=200, channels=4, seed=1)
    with torch.no_grad():
        both = backbone(vox)
        for b in range(2):
            mine = vox.coords[:, 0] == b
            coords = vox.coords[mine].clone()
            coords[:, 0] = 0
            alone = backbone(VoxelFeatures(vox.features[mine], coords, vox.spatial_shape, 1))
            torch.testing.assert_close(alone[0], both[b], atol=1e-5, rtol=1e-5)


def test_bev_backbone_fuses_scales_to_a_common_stride() -> None:
    backbone = BEVBackbone(
        16,
        channels=(8, 16, 32),
        blocks=(1, 1, 1),
        strides=(2, 2, 2),
        upsample_strides=(1, 2, 4),
        upsample_channels=(8, 8, 8),
    )
    assert backbone.out_stride == 2 and backbone.out_channels == 24
    out = backbone(torch.randn(2, 16, 64, 48))
    assert out.shape == (2, 24, 32, 24)
    # sizes not divisible by the deepest stride: deeper branches are cropped to ceil(n / out_stride)
    assert backbone(torch.randn(1, 16, 50, 43)).shape == (1, 24, 25, 22)
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_bev_backbone_rejects_mismatched_strides() -> None:
    with pytest.raises(ValueError, match="common stride"):
        BEVBackbone(
            8,
            channels=(8, 8),
            blocks=(0, 0),
            strides=(1, 2),
            upsample_strides=(1, 1),
            upsample_channels=(8, 8),
        )
    with pytest.raises(ValueError, match="one entry per stage"):
        BEVBackbone(
            8, channels=(8, 8), blocks=(0,), strides=(1, 2), upsample_strides=(1, 2), upsample_channels=(8, 8)
        )
