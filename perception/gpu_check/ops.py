"""The op checks: every op of :mod:`perception.ops` and the PVT encoder's segment attention, CPU vs device.

Each builder makes its inputs once on the CPU (seeded) and returns a :class:`~perception.gpu_check.core.Case`
whose ``run(device)`` copies them to the device, runs the op there and hands the outputs back on the
CPU. Which code runs where: Hilbert codes and hard voxelization use numba kernels on the CPU and
pure-torch code on a GPU; rotated IoU, NMS and RoI point pooling likewise; sparse convolution runs
our exact kernels on the CPU and spconv's CUDA kernels on a GPU (:mod:`perception.ops.sparse`);
dynamic voxelization and segment attention are torch ops on both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from perception.gpu_check.compare import KeptBoxes, Rule
from perception.gpu_check.core import Case, CheckSpec, Options, timed, to_cpu
from perception.gpu_check.inputs import random_boxes, waymo_range, waymo_sized_frame
from perception.models.encoders.grouping import group_points
from perception.models.encoders.pvt import segment_attention
from perception.ops import hilbert
from perception.ops.iou3d import boxes_iou3d, boxes_iou_bev, nms_bev
from perception.ops.roi_points import points_in_roi_frame, roi_points
from perception.ops.sparse import SparseConv3d, SparseConvTensor, SparseInverseConv3d, SubMConv3d
from perception.ops.voxelize import dynamic_voxelize, voxelize

__all__ = ["OP_CHECKS"]

EXACT = Rule("exact", 0.0, "discrete: integer codes, cells, counts and indices computed by the same rules")
FORWARD = Rule(
    "close",
    1e-4,
    "float32 sums in another order (GPU reductions, spconv's GEMM tiles): ~1e-6 relative; a wrong "
    "offset, weight layout or row moves outputs by O(1)",
)
GRADIENT = Rule(
    "close",
    1e-3,
    "gradients sum over every site or point (atomics on a GPU, in any order): ~1e-5 relative, "
    "each tensor on its own scale (floor 1e-3 of the largest)",
)
IOU = Rule(
    "close",
    1e-4,
    "the GPU clips polygons in float32 around the first box's centre, the CPU in float64: IoU (<= 1) "
    "differs by ~1e-6",
)
GEOMETRY = Rule("close", 1e-5, "a rigid transform in float32: a few ulps of the largest coordinate")
ATTENTION = Rule("close", 1e-5, "segment softmax and sums over each voxel's points in float32")
NMS = Rule(
    "kept_boxes",
    0.99,
    "near-tied scores or an IoU within rounding of the threshold may keep another member of a "
    "cluster: the kept boxes must pair up one to one with BEV IoU >= 0.99",
)


def _sizes(options: Options, quick: int, full: int) -> int:
    return quick if options.quick else full


def _leaf(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fresh copy of ``t`` on ``device`` that collects its own gradient (never the CPU original's)."""
    return t.detach().to(device).clone().requires_grad_(True)


def _frame_points(options: Options, points: int, clouds: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 5) float32 LiDAR-like points of ``clouds`` frames in the Waymo range, and (N,) int64 frame index."""
    rng = np.random.default_rng(options.seed)
    frames = [waymo_sized_frame(rng, points)[0] for _ in range(clouds)]
    index = np.concatenate([np.full(len(f), b, np.int64) for b, f in enumerate(frames)])
    return torch.from_numpy(np.concatenate(frames)), torch.from_numpy(index)


# ------------------------------------------------------------------------------------------------------
# Hilbert codes and serialization


def hilbert_case(options: Options) -> Case:
    """Encode random 16-bit cells, decode the codes, and serialize LiDAR points (0.1 m grid, 2 frames)."""
    n = _sizes(options, 200_000, 2_000_000)
    bits = 16
    g = torch.Generator().manual_seed(options.seed)
    cells = torch.randint(0, 1 << bits, (n, 3), generator=g)
    points, batch = _frame_points(options, _sizes(options, 50_000, 170_000), clouds=2)

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        c, p, b = cells.to(device), points[:, :3].to(device), batch.to(device)

        def op() -> dict[str, Any]:
            codes = hilbert.encode(c, bits)
            serialized = hilbert.serialize_points(p, 0.1, "hilbert", batch=b)
            return {
                "encode": codes,
                "decode": hilbert.decode(codes, bits),
                "serialize.codes": serialized.codes,
                "serialize.order": serialized.order,
            }

        out, seconds = timed(device, op)
        return to_cpu(out), seconds

    rules = {"encode": EXACT, "decode": EXACT, "serialize.codes": EXACT, "serialize.order": EXACT}
    return Case(f"{n:,} cells of {bits} bits; {len(points):,} points in 2 frames", rules, run)


# ------------------------------------------------------------------------------------------------------
# Voxelization


def voxelize_case(options: Options) -> Case:
    """Hard voxelization (spconv ``PointToVoxel``'s semantics) of a Waymo-sized frame, 0.1 × 0.1 × 0.15 m."""
    points, _ = _frame_points(options, _sizes(options, 50_000, 170_000))
    voxel, max_points, max_voxels = [0.1, 0.1, 0.15], 5, _sizes(options, 40_000, 150_000)
    pcr = list(waymo_range())

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        p = points.to(device)
        (voxels, coords, num), seconds = timed(
            device, lambda: voxelize(p, voxel, pcr, max_points, max_voxels)
        )
        return to_cpu({"voxels": voxels, "coords": coords, "num_points": num}), seconds

    rules = {"voxels": EXACT, "coords": EXACT, "num_points": EXACT}
    return Case(
        f"{len(points):,} points, voxel {voxel} m, ≤ {max_points} points × {max_voxels:,} voxels", rules, run
    )


def dynamic_voxelize_case(options: Options) -> Case:
    """Dynamic voxelization (every point, no caps) of two frames on the PVT Waymo grid (0.2 × 0.2 × 6 m)."""
    points, batch = _frame_points(options, _sizes(options, 50_000, 170_000), clouds=2)
    voxel, pcr = [0.2, 0.2, 6.0], list(waymo_range())

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        p, b = points.to(device), batch.to(device)
        result, seconds = timed(device, lambda: dynamic_voxelize(p, voxel, pcr, b))
        outputs = {
            "point_voxel": result.point_voxel,
            "coords": result.coords,
            "num_points": result.num_points,
        }
        return to_cpu(outputs), seconds

    rules = {"point_voxel": EXACT, "coords": EXACT, "num_points": EXACT}
    return Case(f"{len(points):,} points in 2 frames, voxel {voxel} m", rules, run)


# ------------------------------------------------------------------------------------------------------
# Sparse convolution


def _site_order(indices: torch.Tensor) -> torch.Tensor:
    """Rows sorted by (b, z, y, x): spconv's strided outputs come in a hash-dependent order."""
    key = torch.zeros(indices.shape[0], dtype=torch.int64, device=indices.device)
    for col in range(4):
        key = key * (1 << 16) + indices[:, col].long()
    return torch.argsort(key)


def sparse_conv_case(options: Options) -> Case:
    """SubMConv3d → SparseConv3d (stride 2) → SparseInverseConv3d on the voxels of two LiDAR frames
    (0.1 × 0.1 × 0.15 m), forward and backward (loss ½ Σ of every layer's squared outputs): our exact
    kernels on the CPU, spconv's CUDA kernels on a GPU, with the same weights."""
    points, batch = _frame_points(options, _sizes(options, 20_000, 120_000), clouds=2)
    dyn = dynamic_voxelize(points, [0.1, 0.1, 0.15], list(waymo_range()), batch)
    indices, shape = dyn.coords.contiguous(), list(dyn.spatial_shape)
    g = torch.Generator().manual_seed(options.seed)
    features = torch.randn(len(indices), 16, generator=g)
    torch.manual_seed(options.seed)
    reference = _sparse_layers()
    state = {k: v.clone() for k, v in reference.state_dict().items()}

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        layers = _sparse_layers()
        layers.load_state_dict(state)
        layers.to(device)
        x = _leaf(features, device)
        idx = indices.to(device)

        def step() -> dict[str, Any]:
            t0 = SparseConvTensor(x, idx, shape, 2)
            t1 = layers[0](t0)
            t2 = layers[1](t1)
            t3 = layers[2](t2)
            loss = sum(0.5 * t.features.square().sum() for t in (t1, t2, t3))
            loss.backward()
            order = _site_order(t2.indices)
            return {
                "subm.features": t1.features,
                "strided.indices": t2.indices[order],
                "strided.features": t2.features[order],
                "inverse.features": t3.features,
                "grad.features": x.grad,
                "grad.parameters": {n: p.grad for n, p in layers.named_parameters()},
            }

        out, seconds = timed(device, step)
        return to_cpu(out), seconds

    rules = {
        "subm.features": FORWARD,
        "strided.indices": EXACT,
        "strided.features": FORWARD,
        "inverse.features": FORWARD,
        "grad.features": GRADIENT,
        "grad.parameters": GRADIENT,
    }
    return Case(f"{len(indices):,} sites on a {shape} grid, 16 → 32 → 64 → 32 channels", rules, run)


def _sparse_layers() -> torch.nn.ModuleList:
    return torch.nn.ModuleList(
        [
            SubMConv3d(16, 32, 3, indice_key="subm1"),
            SparseConv3d(32, 64, 3, stride=2, padding=1, indice_key="down1"),
            SparseInverseConv3d(64, 32, 3, indice_key="down1"),
        ]
    )


# ------------------------------------------------------------------------------------------------------
# Rotated IoU and NMS


def iou_case(options: Options) -> Case:
    """BEV and 3D IoU of every pair of two sets of overlapping boxes."""
    rng = np.random.default_rng(options.seed)
    n = _sizes(options, 300, 1000)
    a = torch.from_numpy(random_boxes(rng, n))
    b = torch.cat([a[: n // 10], torch.from_numpy(random_boxes(rng, n - n // 10))])  # some identical pairs

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        da, db = a.to(device), b.to(device)
        (bev, iou3d), seconds = timed(device, lambda: (boxes_iou_bev(da, db), boxes_iou3d(da, db)))
        return to_cpu({"iou_bev": bev, "iou_3d": iou3d}), seconds

    return Case(f"{n} × {n} boxes in a 40 m square", {"iou_bev": IOU, "iou_3d": IOU}, run)


def nms_case(options: Options) -> Case:
    """Rotated NMS (BEV IoU 0.5) over clusters of jittered boxes, some with near-duplicate, near-tied
    members (1 mm apart, scores 1e-7 apart)."""
    rng = np.random.default_rng(options.seed)
    clusters = _sizes(options, 150, 600)
    centres = random_boxes(rng, clusters, extent=120.0)
    members = rng.integers(1, 7, clusters)
    boxes = np.repeat(centres, members, axis=0)
    boxes[:, :2] += rng.normal(0.0, 0.3, (len(boxes), 2))
    boxes[:, 3:6] *= rng.uniform(0.9, 1.1, (len(boxes), 3))
    boxes[:, 6] += rng.normal(0.0, 0.15, len(boxes))
    scores = rng.uniform(0.1, 1.0, len(boxes))
    twins = rng.choice(len(boxes), len(boxes) // 10, replace=False)
    twin_boxes = boxes[twins].copy()
    twin_boxes[:, :2] += 1e-3
    boxes = np.concatenate([boxes, twin_boxes]).astype(np.float32)
    scores = np.concatenate([scores, scores[twins] + 1e-7]).astype(np.float32)
    t_boxes, t_scores = torch.from_numpy(boxes), torch.from_numpy(scores)

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        db, ds = t_boxes.to(device), t_scores.to(device)
        keep, seconds = timed(device, lambda: nms_bev(db, ds, 0.5, pre_max_size=4096, post_max_size=500))
        return {"keep": KeptBoxes(t_boxes, keep.cpu())}, seconds

    return Case(f"{len(boxes):,} boxes in {clusters} clusters", {"keep": NMS}, run)


# ------------------------------------------------------------------------------------------------------
# RoI point pooling


def roi_points_case(options: Options) -> Case:
    """The refiner's RoI point pooling (64 points a box, chosen by coordinate hash) on one LiDAR frame,
    RoIs the frame's objects and random boxes, and the pooled points in each RoI's frame."""
    rng = np.random.default_rng(options.seed)
    frame, objects, _ = waymo_sized_frame(rng, _sizes(options, 50_000, 170_000))
    rois = np.concatenate([objects, random_boxes(rng, _sizes(options, 60, 200), extent=80.0)])
    points, t_rois = torch.from_numpy(frame), torch.from_numpy(rois)

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        p, r = points.to(device), t_rois.to(device)

        def op() -> dict[str, Any]:
            index, count = roi_points(p, r, 64)
            return {"index": index, "count": count, "local": points_in_roi_frame(p[index], r)}

        out, seconds = timed(device, op)
        return to_cpu(out), seconds

    rules = {"index": EXACT, "count": EXACT, "local": GEOMETRY}
    return Case(f"{len(points):,} points, {len(rois)} RoIs × 64 points", rules, run)


# ------------------------------------------------------------------------------------------------------
# Segment attention (PVTransformer's point-to-voxel attention)


def segment_attention_case(options: Options) -> Case:
    """Group two frames' points by voxel on the device (the PVT Waymo grid), then multi-head attention
    of one query per voxel over its points, forward and backward (loss ½ Σ output²)."""
    points, batch = _frame_points(options, _sizes(options, 30_000, 170_000), clouds=2)
    voxel, pcr = [0.2, 0.2, 6.0], list(waymo_range())
    groups = group_points(points, batch, voxel, pcr, batch_size=2)
    heads, width = 4, 16
    g = torch.Generator().manual_seed(options.seed)
    query = torch.randn(groups.num_voxels, heads, width, generator=g)
    key = torch.randn(len(groups.points), heads, width, generator=g)
    value = torch.randn(len(groups.points), heads, width, generator=g)

    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        p, b = points.to(device), batch.to(device)
        q, k, v = (_leaf(t, device) for t in (query, key, value))

        def op() -> dict[str, Any]:
            grouped = group_points(p, b, voxel, pcr, batch_size=2)
            out = segment_attention(q, k, v, grouped)
            (0.5 * out.square().sum()).backward()
            return {
                "groups.coords": grouped.coords,
                "groups.points": grouped.points,
                "attention": out,
                "gradients": {"query": q.grad, "key": k.grad, "value": v.grad},
            }

        out, seconds = timed(device, op)
        return to_cpu(out), seconds

    rules = {"groups.coords": EXACT, "groups.points": EXACT, "attention": ATTENTION, "gradients": GRADIENT}
    inputs = f"{len(points):,} points in {groups.num_voxels:,} voxels, {heads} heads × {width}"
    return Case(inputs, rules, run)


OP_CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("hilbert", "op", "Hilbert encode / decode, serialize_points", hilbert_case, ("hilbert",)),
    CheckSpec("voxelize.hard", "op", "voxelize (PointToVoxel semantics)", voxelize_case, ("voxelize",)),
    CheckSpec(
        "voxelize.dynamic", "op", "dynamic_voxelize with a batch", dynamic_voxelize_case, ("voxelize",)
    ),
    CheckSpec(
        "sparse_conv",
        "op",
        "SubMConv3d / SparseConv3d / SparseInverseConv3d fwd + bwd: our CPU kernels vs spconv on the device",
        sparse_conv_case,
        ("sparse",),
    ),
    CheckSpec("iou", "op", "boxes_iou_bev, boxes_iou3d", iou_case, ("iou3d",)),
    CheckSpec("nms", "op", "nms_bev (rotated, BEV IoU 0.5)", nms_case, ("iou3d",)),
    CheckSpec("roi_points", "op", "roi_points, points_in_roi_frame", roi_points_case, ("roi_points",)),
    CheckSpec(
        "segment_attention",
        "op",
        "group_points + PVT segment_attention fwd + bwd",
        segment_attention_case,
        ("segment_attention",),
    ),
)
"""The op checks, in the order they run."""
