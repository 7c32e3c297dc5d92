"""Voxelization of point clouds: hard (spconv ``PointToVoxel``'s semantics) and dynamic.

Frames and units: points are ``(N, C)`` floats in the lidar frame, columns x, y, z (metres) then
attributes; ``voxel_size`` is ``(3,)`` ``[dx, dy, dz]`` metres and ``point_cloud_range`` ``(6,)``
``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres. Voxel coordinates are ``int32`` ``[z, y, x]``
(spconv's order), with a batch column in front where batched: ``[b, z, y, x]``.

The grid (both kinds, identical to spconv ``PointToVoxel``, checked element for element in the tests)
-----------------------------------------------------------------------------------------------------
All arithmetic is float32, on the coordinates rounded to float32, as in spconv:

- grid size per axis ``n = floor(q + 0.5)`` with ``q = float32(max - min) / voxel_size``: the
  range is *rounded* to whole voxels (ties up), not truncated; ``grid_shape`` gives ``(nz, ny, nx)``.
- a point's cell is ``c = floor(float32(p - min) / voxel_size)`` per axis, and the point is kept
  when ``0 <= c < n`` on all three axes. The test is on the cell, not on ``p < max``: a point exactly
  on ``max`` is dropped, one on ``min`` kept, and where rounding made the grid reach past ``max``
  points up to the grid's edge are kept.

Hard voxelization (``voxelize``): spconv ``PointToVoxel.__call__`` exactly
----------------------------------------------------------------------------
Points are visited in input order. A point in a cell not seen before opens a new voxel while fewer
than ``max_voxels`` exist, else it is dropped; so voxels come in order of first appearance and the
first ``max_voxels`` of them are kept. Once the limit is reached, later points of *existing* voxels
are still added. Each voxel keeps its first ``max_points_per_voxel`` points in input order (all C
columns, unchanged); unused slots are zeros. Outputs: ``voxels (V, P, C)`` in the points' dtype,
``coords (V, 3)`` int32 zyx, ``num_points (V,)`` int32 in ``[1, P]``. spconv's ``empty_mean``
option is not offered. Unlike spconv, outputs are fresh arrays (spconv returns views of a buffer
that its next call overwrites).

Dynamic voxelization (``dynamic_voxelize``, torch only)
---------------------------------------------------------
Every point in the grid belongs to its voxel, with no caps. Voxels are sorted by their linear index
``((b * nz + z) * ny + y) * nx + x``, i.e. by (batch, z, y, x), so the result depends only on the
*set* of points: permuting the points permutes ``point_voxel`` and nothing else. ``scatter_mean`` and
``scatter_max`` reduce per-point features into those voxels, deterministically (segment reductions
over points sorted by voxel, no atomics) and with autograd.

Grouping by voxel (``group_by_voxel``, the encoders' first step on the CPU)
---------------------------------------------------------------------------
``dynamic_voxelize``'s voxels, with the points inside the grid sorted by voxel and, within a voxel,
by a key computed from the row's values alone (x as an ordered unsigned integer, then a 31-bit FNV-1a
hash of the row's float32 words; equal keys by input position): the order of
:func:`perception.models.encoders.grouping.canonical_order`, which the encoders' segment reductions
need to be bitwise independent of the input order. One numba call: cells with spconv's float32
arithmetic, a counting sort by cell over a dense per-cell table where the grid (times the batch) has
at most ``max(4 N, 2**22)`` cells (else a stable sort of the cell keys), then a sort of each voxel's
run by the key (insertion sort for short runs).

Backends (hard voxelization): NumPy in → NumPy out through one numba kernel; torch in → torch out
on the same device: CPU tensors share memory with the numba kernel, other devices (CUDA), or inputs
that require grad, run a pure-torch version (``torch.unique`` + stable sorts) that gives the same
result and is differentiable w.r.t. the point features copied into ``voxels``.

How the numba kernel is fast: one pass over the points computes each point's voxel and its slot in
that voxel; cell → voxel lookups use a dense ``int32`` table when the grid is small (pillars, ~0.2 M
cells, and at most 16 cells a point), otherwise an open-addressing hash table sized by the point count
(Fibonacci hashing, linear probing, at most half full, an ``int64`` key + value pair per slot, a few
MB), never a table over the whole grid (a 1504×1504×40 Waymo grid has 90 M cells). A last-hit cache
skips the lookup for runs of points in one cell. A second pass copies the kept points into the zeroed
output.

Input checks (``ValueError`` naming the argument): points ``(N, C)``, ``C >= 3``, floating dtype,
finite x, y, z (NaN or inf coordinates are an error, not a silent drop; the attribute columns are not
checked); voxel sizes finite and ``> 0``; range finite with ``min < max`` and at least one voxel per
axis; ``max_points_per_voxel >= 1`` and ``max_voxels >= 1`` integers; tensors on one device. Empty
input, or no point inside the range, gives empty outputs of the documented shapes and dtypes:
``(0, P, C)``, ``(0, 3)`` int32, ``(0,)`` int32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numba
import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "DynamicVoxels",
    "dynamic_voxelize",
    "grid_shape",
    "group_by_voxel",
    "scatter_max",
    "scatter_mean",
    "voxelize",
    "voxelize_batch",
]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Run the pure-torch hard voxelization on CPU tensors too (tests and benchmarks flip this).
_TORCH_ON_CPU = False
# The numba kernel uses a dense cell → voxel table (4 bytes a cell, filled each call) for grids of at
# most this many cells and at most _DENSE_CELLS_PER_POINT cells a point; else a hash table.
_DENSE_MAX_CELLS = 1 << 21
_DENSE_CELLS_PER_POINT = 16
# group_by_voxel counts points per cell in a dense table up to this many cells (or 4 a point).
_GROUP_DENSE_CELLS = 1 << 22


# ----------------------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class _Grid:
    """A validated grid: float32 origin and voxel size (x, y, z), and the cell counts (x, y, z)."""

    lo: NDArray[np.float32]
    size: NDArray[np.float32]
    shape_xyz: tuple[int, int, int]

    @property
    def num_cells(self) -> int:
        nx, ny, nz = self.shape_xyz
        return nx * ny * nz


def _as_floats(value: object, name: str, length: int) -> NDArray[np.float64]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be {length} numbers, got {value!r}") from err
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _make_grid(voxel_size: object, point_cloud_range: object) -> _Grid:
    size64 = _as_floats(voxel_size, "voxel_size", 3)
    rng64 = _as_floats(point_cloud_range, "point_cloud_range", 6)
    if (size64 <= 0).any():
        raise ValueError(f"voxel_size must be > 0 on every axis, got {size64.tolist()}")
    if (rng64[:3] >= rng64[3:]).any():
        raise ValueError(f"point_cloud_range must have min < max on every axis, got {rng64.tolist()}")
    size, rng = size64.astype(np.float32), rng64.astype(np.float32)
    if (size <= 0).any():
        raise ValueError(f"voxel_size underflows float32: {size64.tolist()}")
    with np.errstate(over="ignore"):
        shape = np.floor((rng[3:] - rng[:3]) / size + np.float32(0.5))  # float32 throughout, as spconv
    if (shape < 1).any() or (shape > 2**31 - 1).any():
        raise ValueError(
            f"point_cloud_range {rng64.tolist()} / voxel_size {size64.tolist()} gives grid {shape.tolist()} "
            "(x, y, z): every axis needs 1 .. 2**31 - 1 voxels"
        )
    nx, ny, nz = (int(n) for n in shape)
    if nx * ny * nz >= 2**62:
        raise ValueError(f"grid of {nx}×{ny}×{nz} cells is too large for int64 voxel indices")
    return _Grid(lo=rng[:3].copy(), size=size, shape_xyz=(nx, ny, nz))


def grid_shape(voxel_size: Sequence[float], point_cloud_range: Sequence[float]) -> tuple[int, int, int]:
    """The voxel grid's ``(nz, ny, nx)`` (spconv's ``grid_size`` / a ``SparseConvTensor``'s spatial shape).

    Args:
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
    """
    nx, ny, nz = _make_grid(voxel_size, point_cloud_range).shape_xyz
    return nz, ny, nx


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


_NON_FINITE = "points has NaN or infinite x, y, z coordinates; drop or fix those points first"


def _check_points(points: object, check_finite: bool = True) -> np.ndarray | torch.Tensor:
    """Validate ``(N, C >= 3)`` floating points (with finite x, y, z if asked; the numba kernel checks
    them itself); NumPy input comes back as an array."""
    name = "points"
    if isinstance(points, torch.Tensor):
        if not points.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {points.dtype}")
        finite = lambda xyz: bool(torch.isfinite(xyz).all())  # noqa: E731
    else:
        points = np.asarray(points)
        if not np.issubdtype(points.dtype, np.floating):
            raise ValueError(f"{name} must have a floating dtype, got {points.dtype}")
        finite = lambda xyz: bool(np.isfinite(xyz).all())  # noqa: E731
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(
            f"{name} must have shape (N, C) with C >= 3 (x, y, z, ...), got {tuple(points.shape)}"
        )
    if check_finite and not finite(points[:, :3]):
        raise ValueError(_NON_FINITE)
    return points


# ----------------------------------------------------------------------------------------------------
# Hard voxelization: numba kernel


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_slot(key: np.int64, shift: np.uint64) -> np.int64:
    """Fibonacci hashing of a non-negative int64 key into ``[0, 2**(64 - shift))``."""
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> shift)


@numba.njit(cache=True, nogil=True)
def _voxelize_kernel(points, lo, size, nx, ny, nz, max_points, max_voxels, dense):  # pragma: no cover
    """Numba kernel of ``voxelize`` (see the module docstring for the semantics)."""
    n, c = points.shape
    cap_voxels = min(n, max_voxels)
    coords = np.empty((cap_voxels, 3), np.int32)
    counts = np.zeros(cap_voxels, np.int32)
    point_voxel = np.empty(n, np.int32)
    point_slot = np.empty(n, np.int32)
    if dense:
        table = np.full(nx * ny * nz, -1, np.int32)
        keys = np.empty(0, np.int64)
        mask = np.int64(0)
        shift = np.uint64(0)
    else:
        bits = 4
        while (1 << bits) < 2 * cap_voxels:
            bits += 1
        cap = 1 << bits
        table = np.empty(0, np.int32)
        keys = np.full(2 * cap, -1, np.int64)  # (key, voxel) pairs side by side: one cache line a probe
        mask = np.int64(cap - 1)
        shift = np.uint64(64 - bits)
    lo_x, lo_y, lo_z = lo[0], lo[1], lo[2]
    s_x, s_y, s_z = size[0], size[1], size[2]
    num_voxels = 0
    last_key, last_voxel = np.int64(-1), -1
    for i in range(n):
        point_voxel[i] = -1
        fx = np.floor((np.float32(points[i, 0]) - lo_x) / s_x)
        fy = np.floor((np.float32(points[i, 1]) - lo_y) / s_y)
        fz = np.floor((np.float32(points[i, 2]) - lo_z) / s_z)
        if not (fx >= 0 and fy >= 0 and fz >= 0 and fx < nx and fy < ny and fz < nz):
            if not (np.isfinite(points[i, 0]) and np.isfinite(points[i, 1]) and np.isfinite(points[i, 2])):
                return np.empty((0, max_points, c), points.dtype), coords[:0], counts[:0], i
            continue
        x, y, z = np.int64(fx), np.int64(fy), np.int64(fz)
        key = (z * ny + y) * nx + x
        if key == last_key:
            v = last_voxel
        elif dense:
            v = table[key]
            if v < 0 and num_voxels < cap_voxels:
                v = num_voxels
                table[key] = v
        else:
            h = _hash_slot(key, shift)
            while True:
                k = keys[2 * h]
                if k == key:
                    v = np.int32(keys[2 * h + 1])
                    break
                if k < 0:
                    v = -1
                    if num_voxels < cap_voxels:
                        v = num_voxels
                        keys[2 * h] = key
                        keys[2 * h + 1] = v
                    break
                h = (h + 1) & mask
        if v < 0:
            continue
        if v == num_voxels:
            coords[v, 0], coords[v, 1], coords[v, 2] = z, y, x
            num_voxels += 1
        last_key, last_voxel = key, v
        point_voxel[i] = v
        point_slot[i] = counts[v]
        counts[v] += 1
    voxels = np.zeros((num_voxels, max_points, c), points.dtype)
    for i in range(n):
        v = point_voxel[i]
        if v >= 0 and point_slot[i] < max_points:
            voxels[v, point_slot[i], :] = points[i, :]
    num_points = counts[:num_voxels].copy()
    for v in range(num_voxels):
        num_points[v] = min(num_points[v], max_points)
    return voxels, coords[:num_voxels].copy(), num_points, -1


def _voxelize_numpy(
    points: np.ndarray, grid: _Grid, max_points: int, max_voxels: int
) -> tuple[np.ndarray, NDArray[np.int32], NDArray[np.int32]]:
    if len(points) == 0:  # numba would need a compiled variant for nothing
        return (
            np.zeros((0, max_points, points.shape[1]), points.dtype),
            np.zeros((0, 3), np.int32),
            np.zeros(0, np.int32),
        )
    nx, ny, nz = grid.shape_xyz
    voxels, coords, num_points, bad = _voxelize_kernel(
        np.ascontiguousarray(points),
        grid.lo,
        grid.size,
        nx,
        ny,
        nz,
        max_points,
        max_voxels,
        grid.num_cells <= min(_DENSE_MAX_CELLS, _DENSE_CELLS_PER_POINT * len(points)),
    )
    if bad >= 0:
        raise ValueError(f"{_NON_FINITE} (point {bad}: {points[bad, :3].tolist()})")
    return voxels, coords, num_points


# ----------------------------------------------------------------------------------------------------
# Pure-torch pieces (any device)


def _cells_torch(xyz: torch.Tensor, grid: _Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell of each point, spconv's float32 arithmetic: (indices of points inside (M,), (M, 3) xyz int64)."""
    dev = xyz.device
    lo = torch.as_tensor(grid.lo, device=dev)
    size = torch.as_tensor(grid.size, device=dev)
    shape = torch.as_tensor(grid.shape_xyz, dtype=torch.float32, device=dev)
    cell = torch.floor((xyz.detach().to(torch.float32) - lo) / size)
    inside = ((cell >= 0) & (cell < shape)).all(dim=1)
    index = inside.nonzero().squeeze(1)
    return index, cell[index].long()


def _linear(cell_xyz: torch.Tensor, grid: _Grid) -> torch.Tensor:
    nx, ny, _ = grid.shape_xyz
    return (cell_xyz[:, 2] * ny + cell_xyz[:, 1]) * nx + cell_xyz[:, 0]


def _unlinear_zyx(key: torch.Tensor, grid: _Grid) -> torch.Tensor:
    """(V,) linear index ``((b * nz + z) * ny + y) * nx + x`` → (V, 3) zyx int64 and the batch (V,)."""
    nx, ny, nz = grid.shape_xyz
    x, rest = key % nx, key // nx
    y, rest = rest % ny, rest // ny
    z, b = rest % nz, rest // nz
    return torch.stack([b, z, y, x], dim=1)


def _rank_in_group(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Position of each element among the elements of its group, in input order; and group sizes."""
    order = torch.sort(group, stable=True).indices
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(len(group), device=group.device) - starts[group[order]]
    return rank, counts


def _voxelize_torch(
    points: torch.Tensor, grid: _Grid, max_points: int, max_voxels: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard voxelization with torch ops only: the numba kernel's result, on any device."""
    dev, n = points.device, len(points)
    index, cell = _cells_torch(points[:, :3], grid)
    cells, inverse = torch.unique(_linear(cell, grid), return_inverse=True)
    first = torch.full((len(cells),), n, dtype=torch.long, device=dev)
    first.scatter_reduce_(0, inverse, index, reduce="amin")  # first point of each voxel
    by_appearance = torch.argsort(first)[:max_voxels]  # the first points are distinct: no ties
    num_voxels = len(by_appearance)
    voxel_of_cell = torch.full((len(cells),), -1, dtype=torch.long, device=dev)
    voxel_of_cell[by_appearance] = torch.arange(num_voxels, device=dev)
    voxel = voxel_of_cell[inverse]
    kept = voxel >= 0
    index, voxel = index[kept], voxel[kept]
    slot, counts = _rank_in_group(voxel, num_voxels)
    stored = slot < max_points
    voxels = points.new_zeros((num_voxels, max_points, points.shape[1]))
    voxels = voxels.index_put((voxel[stored], slot[stored]), points[index[stored]])
    coords = _unlinear_zyx(cells[by_appearance], grid)[:, 1:]
    return voxels, coords.to(torch.int32), counts.clamp(max=max_points).to(torch.int32)


# ----------------------------------------------------------------------------------------------------
# Hard voxelization: public


def voxelize(
    points: Array,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    max_points_per_voxel: int,
    max_voxels: int,
) -> tuple[Array, Array, Array]:
    """Hard voxelization with spconv ``PointToVoxel``'s exact semantics (see the module docstring).

    Args:
        points: (N, C) float, C >= 3, columns x, y, z (metres, lidar frame) then attributes.
            NumPy or torch (any device).
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
        max_points_per_voxel: P, the points a voxel keeps (its first P, in input order).
        max_voxels: the voxels kept (the first to appear).

    Returns:
        ``voxels`` (V, P, C) in the points' dtype, the voxel's points then zeros;
        ``coords`` (V, 3) int32 ``[z, y, x]``; ``num_points`` (V,) int32 in [1, P].
        Voxels are in order of first appearance. Same array type (and device) as ``points``.

    Raises:
        ValueError: naming the bad argument (see the module docstring).
    """
    use_torch = isinstance(points, torch.Tensor) and (
        points.device.type != "cpu" or points.requires_grad or _TORCH_ON_CPU
    )
    points = _check_points(points, check_finite=use_torch)
    grid = _make_grid(voxel_size, point_cloud_range)
    max_points = _check_count(max_points_per_voxel, "max_points_per_voxel")
    max_voxels = _check_count(max_voxels, "max_voxels")
    if use_torch:
        return _voxelize_torch(points, grid, max_points, max_voxels)
    if not isinstance(points, torch.Tensor):
        return _voxelize_numpy(points, grid, max_points, max_voxels)
    voxels, coords, num = _voxelize_numpy(points.numpy(), grid, max_points, max_voxels)
    return torch.from_numpy(voxels), torch.from_numpy(coords), torch.from_numpy(num)


def voxelize_batch(
    points: Sequence[Array],
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    max_points_per_voxel: int,
    max_voxels: int,
) -> tuple[Array, Array, Array]:
    """``voxelize`` each sample of a batch and concatenate, with the sample index as a batch column.

    Args:
        points: B point sets, (N_b, C) each, all NumPy or all torch on one device, same C.
        voxel_size, point_cloud_range, max_points_per_voxel: as in ``voxelize``.
        max_voxels: the limit *per sample* (as with one ``PointToVoxel`` call per sample).

    Returns:
        ``voxels`` (V, P, C), ``coords`` (V, 4) int32 ``[b, z, y, x]``, ``num_points`` (V,) int32;
        sample 0's voxels first, each sample's in order of first appearance.
    """
    if isinstance(points, np.ndarray | torch.Tensor) or len(points) == 0:
        raise ValueError("points must be a non-empty list of (N_b, C) point sets")
    is_torch = [isinstance(p, torch.Tensor) for p in points]
    if any(is_torch) and not all(is_torch):
        raise ValueError("points must be all NumPy arrays or all torch tensors")
    if all(is_torch) and len({p.device for p in points}) > 1:
        raise ValueError(f"points are on different devices: {sorted({str(p.device) for p in points})}")
    if len({p.shape[1] if p.ndim == 2 else -1 for p in points}) > 1:
        raise ValueError(
            f"points must all have the same shape (N_b, C), got {[tuple(p.shape) for p in points]}"
        )
    parts = [voxelize(p, voxel_size, point_cloud_range, max_points_per_voxel, max_voxels) for p in points]
    if all(is_torch):
        coords = [torch.cat([torch.full_like(c[:, :1], b), c], dim=1) for b, (_, c, _) in enumerate(parts)]
        return torch.cat([v for v, _, _ in parts]), torch.cat(coords), torch.cat([n for _, _, n in parts])
    coords_np = [np.pad(c, ((0, 0), (1, 0)), constant_values=b) for b, (_, c, _) in enumerate(parts)]
    return (
        np.concatenate([v for v, _, _ in parts]),
        np.concatenate(coords_np),
        np.concatenate([n for _, _, n in parts]),
    )


# ----------------------------------------------------------------------------------------------------
# Dynamic voxelization


@dataclass(frozen=True)
class DynamicVoxels:
    """Every point's voxel, with no caps (``dynamic_voxelize``'s result).

    Attributes:
        point_voxel: (N,) int64, the voxel of each point, ``-1`` for points outside the grid.
        coords: (V, 3) int32 ``[z, y, x]``, or (V, 4) ``[b, z, y, x]`` when a batch was given; sorted by
            linear index ``((b * nz + z) * ny + y) * nx + x``, each voxel once.
        num_points: (V,) int32, the points in each voxel (>= 1).
        spatial_shape: the grid's ``(nz, ny, nx)``.
    """

    point_voxel: torch.Tensor
    coords: torch.Tensor
    num_points: torch.Tensor
    spatial_shape: tuple[int, int, int]

    @property
    def num_voxels(self) -> int:
        return len(self.coords)

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """``scatter_mean(features, self.point_voxel, self.num_voxels)``: (N, ...) → (V, ...)."""
        return scatter_mean(features, self.point_voxel, self.num_voxels)

    def max(self, features: torch.Tensor) -> torch.Tensor:
        """``scatter_max(features, self.point_voxel, self.num_voxels)``: (N, ...) → (V, ...)."""
        return scatter_max(features, self.point_voxel, self.num_voxels)


def dynamic_voxelize(
    points: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    batch: torch.Tensor | None = None,
) -> DynamicVoxels:
    """Assign every point to its voxel (the grid of ``voxelize``; any device, torch ops only).

    Args:
        points: (N, C) float tensor, columns x, y, z metres (lidar frame) then attributes (unused here).
        voxel_size: (3,) ``[dx, dy, dz]`` metres.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres.
        batch: optional (N,) integer tensor, the sample of each point (>= 0), on the points' device.

    Returns:
        A ``DynamicVoxels``; voxels sorted by (batch, z, y, x), so permuting the points permutes only
        ``point_voxel``.
    """
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"points must be a torch tensor, got {type(points).__name__}")
    points = _check_points(points)
    grid = _make_grid(voxel_size, point_cloud_range)
    if batch is not None:
        if not isinstance(batch, torch.Tensor) or batch.dtype.is_floating_point or batch.dtype == torch.bool:
            raise ValueError("batch must be an integer tensor of shape (N,)")
        if batch.shape != (len(points),):
            raise ValueError(f"batch must have shape ({len(points)},), got {tuple(batch.shape)}")
        if batch.device != points.device:
            raise ValueError(f"batch is on {batch.device}, points on {points.device}")
        if len(batch) and int(batch.min()) < 0:
            raise ValueError("batch must be >= 0")
    index, cell = _cells_torch(points[:, :3], grid)
    key = _linear(cell, grid)
    if batch is not None:
        key = key + batch[index].long() * grid.num_cells
    cells, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    point_voxel = torch.full((len(points),), -1, dtype=torch.long, device=points.device)
    point_voxel[index] = inverse
    coords = _unlinear_zyx(cells, grid)
    coords = coords if batch is not None else coords[:, 1:]
    nx, ny, nz = grid.shape_xyz
    return DynamicVoxels(point_voxel, coords.to(torch.int32), counts.to(torch.int32), (nz, ny, nx))


@numba.njit(cache=True, nogil=True, inline="always")
def _row_key(points, i):  # pragma: no cover - numba
    """The within-voxel key of row ``i``: x's float32 bits as an ordered unsigned integer (31 bits up),
    then a 31-bit FNV-1a hash of the row's float32 words."""
    words = points[i].view(np.uint32)
    x = np.int64(words[0])
    x_key = x ^ np.int64(0xFFFFFFFF) if x >= np.int64(1) << 31 else x | (np.int64(1) << 31)
    h = np.int64(0x811C9DC5)
    for c in range(words.shape[0]):
        h = ((h ^ np.int64(words[c])) * np.int64(0x01000193)) & np.int64(0xFFFFFFFF)
    h = (h ^ (h >> 16)) & np.int64(0x7FFFFFFF)
    return (x_key << 31) | h


@numba.njit(cache=True, nogil=True)
def _group_kernel(points, batch, lo, size, nx, ny, nz, num_batches, dense):  # pragma: no cover - numba
    """Numba kernel of ``group_by_voxel``: (index (N',), voxel (N',), counts (V,), cell keys (V,), the
    first point with a non-finite x, y or z or -1)."""
    n = points.shape[0]
    num_cells = np.int64(nx) * np.int64(ny) * np.int64(nz)
    key = np.empty(n, np.int64)
    inside = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        fx = np.floor((points[i, 0] - lo[0]) / size[0])
        fy = np.floor((points[i, 1] - lo[1]) / size[1])
        fz = np.floor((points[i, 2] - lo[2]) / size[2])
        if not (fx >= 0 and fy >= 0 and fz >= 0 and fx < nx and fy < ny and fz < nz):
            if not (np.isfinite(points[i, 0]) and np.isfinite(points[i, 1]) and np.isfinite(points[i, 2])):
                empty = np.empty(0, np.int64)
                return empty, empty, empty, empty, i
            continue
        key[m] = ((np.int64(fz) * ny + np.int64(fy)) * nx + np.int64(fx)) + batch[i] * num_cells
        inside[m] = i
        m += 1
    key, inside = key[:m], inside[:m]
    # by cell, equal cells in input order
    if dense:
        table = np.zeros(num_batches * num_cells + 1, np.int64)
        for q in range(m):
            table[key[q] + 1] += 1
        for c in range(1, table.shape[0]):
            table[c] += table[c - 1]
        order = np.empty(m, np.int64)
        for q in range(m):
            order[table[key[q]]] = q
            table[key[q]] += 1
    else:
        order = np.argsort(key, kind="mergesort")
    cells = np.empty(m, np.int64)
    counts = np.zeros(m, np.int64)
    voxel = np.empty(m, np.int64)
    index = np.empty(m, np.int64)
    v = -1
    for q in range(m):
        k = key[order[q]]
        if v < 0 or k != cells[v]:
            v += 1
            cells[v] = k
        counts[v] += 1
        voxel[q] = v
        index[q] = inside[order[q]]
    num_voxels = v + 1
    # within each voxel by the row key, equal keys in input order
    row_key = np.empty(m, np.int64)
    for q in range(m):
        row_key[q] = _row_key(points, index[q])
    start = 0
    for v in range(num_voxels):
        end = start + counts[v]
        if end - start <= 32:
            for a in range(start + 1, end):
                rk, item, b = row_key[a], index[a], a - 1
                while b >= start and row_key[b] > rk:
                    row_key[b + 1], index[b + 1] = row_key[b], index[b]
                    b -= 1
                row_key[b + 1], index[b + 1] = rk, item
        else:
            run = np.argsort(row_key[start:end], kind="mergesort")
            index[start:end] = index[start:end][run]
        start = end
    return index, voxel, counts[:num_voxels].copy(), cells[:num_voxels].copy(), -1


def group_by_voxel(
    points: torch.Tensor,
    voxel_size: Sequence[float],
    point_cloud_range: Sequence[float],
    batch: torch.Tensor,
    num_batches: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    """The points inside the grid grouped by voxel, in the within-voxel order of the module docstring.

    Args:
        points: (N, C) float CPU tensor, x, y, z metres then attributes (hashed as float32 words).
        voxel_size, point_cloud_range: the grid, as for ``dynamic_voxelize``.
        batch: (N,) int CPU tensor, each point's sample (>= 0).
        num_batches: B (> every batch index); by default ``batch.max() + 1``.

    Returns:
        ``index`` (N',) int64 into ``points``: the points inside, by (voxel, key, input position);
        ``voxel`` (N',) int64 each of them's voxel, non-decreasing; ``num_points`` (V,) int64;
        ``coords`` (V, 4) int32 ``[b, z, y, x]``, sorted (``dynamic_voxelize``'s voxels and order);
        the grid's ``(nz, ny, nx)``.
    """
    # float32 coordinates are checked for finiteness by the kernel, as it meets them
    points = _check_points(points, check_finite=points.dtype != torch.float32)
    if points.device.type != "cpu" or batch.device.type != "cpu":
        raise ValueError("group_by_voxel runs on CPU tensors; use dynamic_voxelize elsewhere")
    grid = _make_grid(voxel_size, point_cloud_range)
    if batch.shape != (len(points),) or batch.dtype.is_floating_point or batch.dtype == torch.bool:
        raise ValueError(f"batch must be an integer tensor of shape ({len(points)},)")
    if len(batch) and int(batch.min()) < 0:
        raise ValueError("batch must be >= 0")
    if num_batches is None:
        num_batches = int(batch.max()) + 1 if len(batch) else 1
    nx, ny, nz = grid.shape_xyz
    words = points.detach().to(torch.float32).contiguous().numpy()
    table = num_batches * grid.num_cells
    index, voxel, counts, cells, bad = _group_kernel(
        words,
        batch.detach().to(torch.int64).contiguous().numpy(),
        grid.lo,
        grid.size,
        nx,
        ny,
        nz,
        num_batches,
        table <= max(4 * len(points), _GROUP_DENSE_CELLS),
    )
    if bad >= 0:
        raise ValueError(f"{_NON_FINITE} (point {bad}: {points[bad, :3].tolist()})")
    cells_t = torch.from_numpy(cells)
    coords = _unlinear_zyx(cells_t, grid).to(torch.int32)
    return torch.from_numpy(index), torch.from_numpy(voxel), torch.from_numpy(counts), coords, (nz, ny, nx)


def _segments(
    features: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate, then the features of the points inside, sorted by voxel, and each voxel's point count."""
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        raise ValueError("features must be a floating-point tensor of shape (N, ...)")
    if not isinstance(point_voxel, torch.Tensor) or point_voxel.dtype not in (torch.int32, torch.int64):
        raise ValueError("point_voxel must be an int32 or int64 tensor of shape (N,)")
    if features.ndim < 1 or point_voxel.shape != features.shape[:1]:
        raise ValueError(
            f"point_voxel must have shape (N,) with N = len(features) = {len(features)}, "
            f"got {tuple(point_voxel.shape)}"
        )
    if point_voxel.device != features.device:
        raise ValueError(f"point_voxel is on {point_voxel.device}, features on {features.device}")
    if isinstance(num_voxels, bool) or not isinstance(num_voxels, int | np.integer) or num_voxels < 0:
        raise ValueError(f"num_voxels must be an int >= 0, got {num_voxels!r}")
    if len(point_voxel) and not bool(((point_voxel >= -1) & (point_voxel < num_voxels)).all()):
        raise ValueError(f"point_voxel must lie in [-1, num_voxels) = [-1, {num_voxels})")
    voxel = point_voxel.long()
    order = torch.sort(voxel, stable=True).indices
    order = order[voxel[order] >= 0]
    counts = torch.bincount(voxel[order], minlength=num_voxels)
    return features[order], counts


def scatter_mean(features: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Mean of the features of each voxel's points; differentiable, deterministic, any device.

    Args:
        features: (N, ...) float, one row per point.
        point_voxel: (N,) int, each point's voxel in ``[0, num_voxels)``, or ``-1`` (ignored).
        num_voxels: V.

    Returns:
        (V, ...) in the features' dtype; zeros for voxels without points.
    """
    sorted_features, counts = _segments(features, point_voxel, num_voxels)
    return torch.segment_reduce(sorted_features, "mean", lengths=counts, axis=0, unsafe=True, initial=0.0)


def scatter_max(features: torch.Tensor, point_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Element-wise max of the features of each voxel's points; differentiable, deterministic.

    Arguments as for ``scatter_mean``. Returns (V, ...), zeros for voxels without points. The gradient
    of a max shared by several points is split evenly between them.
    """
    sorted_features, counts = _segments(features, point_voxel, num_voxels)
    out = torch.segment_reduce(sorted_features, "max", lengths=counts, axis=0, unsafe=True)
    empty = (counts == 0).view(-1, *([1] * (out.ndim - 1)))
    return out.masked_fill(empty, 0.0)
