"""RoI point pooling: the points inside each region of interest (a box), and those points in its frame.

A two-stage detector's second stage looks at the raw points of each first-stage proposal (LiDAR
R-CNN, PointRCNN's RoI point pool). :func:`roi_points` picks, for each RoI enlarged by a ratio and a
margin, up to ``num_points`` of the points inside it, by a key: random (training) or a fixed hash of
the point's coordinates (inference; points at the same coordinates, e.g. two returns, then by their
other columns), so the choice does not depend on the order of the points. RoIs
holding fewer points repeat them (a max-pool over the points does not notice). Finding the points in
the RoIs runs a numba kernel on the CPU (points sorted by x once, each RoI scans the slab within its
circumscribed radius) and tensor ops on other devices; both give the same (RoI, point) pairs. The
hash-keyed choice then runs per RoI in a second kernel on the CPU (a sort of each RoI's pairs, ties
by the columns), the tensor path as a chain of stable sorts over all pairs; both give the same
indices. :func:`points_in_roi_frame` then expresses the pooled points in each RoI's frame.

Boxes are ``[x, y, z, l, w, h, yaw]`` in the lidar frame (metres, ``(x, y, z)`` the centre, yaw
counter-clockwise from +x; :mod:`perception.geometry.boxes`). A RoI's frame has its origin at the
RoI's centre, x along its heading, y to its left, z up.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from perception.geometry.boxes import rotate_xy

__all__ = ["points_in_roi_frame", "roi_points"]

# Tests set this to route CPU tensors through the tensor path (the one other devices take).
_TORCH_ON_CPU = False


def _coordinate_hash(xyz: torch.Tensor) -> torch.Tensor:
    """(N, 3) → (N,) float64 in [0, 1): a fixed pseudo-random key of each point's coordinates."""
    v = xyz.double()
    h = torch.sin(v[:, 0] * 12.9898 + v[:, 1] * 78.233 + v[:, 2] * 37.719) * 43758.5453
    return h - torch.floor(h)


@numba.njit(cache=True, nogil=True)
def _pairs_in_rois(xyz, rois, half, by_point=True):  # pragma: no cover - numba
    """(roi, point) index pairs of the points inside each enlarged RoI, by RoI then point (CPU); with
    ``by_point=False`` each RoI's points come in no particular order.

    ``xyz`` (N, 3), ``rois`` (R, 7) and ``half`` (R, 3) half extents are float64 arrays. The points
    are bucketed once into square bird's-eye-view cells (about half the mean circumscribed radius of
    the RoIs a side); each RoI tests only the points of the cells its circumscribed circle's bounding
    square touches.
    """
    n, r = xyz.shape[0], rois.shape[0]
    roi_out = np.empty(0, np.int64)
    point_out = np.empty(0, np.int64)
    if n == 0 or r == 0:
        return roi_out, point_out
    radius = np.empty(r, np.float64)
    for j in range(r):
        radius[j] = np.sqrt(half[j, 0] ** 2 + half[j, 1] ** 2)
    cell = min(max(radius.mean() / 2.0, 0.25), 8.0)
    x0, y0 = xyz[:, 0].min(), xyz[:, 1].min()
    nx = int((xyz[:, 0].max() - x0) / cell) + 1
    ny = int((xyz[:, 1].max() - y0) / cell) + 1
    if nx * ny > 4 * n + 1024:  # sparse points over a wide area: coarser cells
        cell *= np.sqrt(nx * ny / (4.0 * n + 1024.0))
        nx = int((xyz[:, 0].max() - x0) / cell) + 1
        ny = int((xyz[:, 1].max() - y0) / cell) + 1
    start = np.zeros(nx * ny + 1, np.int64)  # points by cell, each cell's in index order
    cell_of = np.empty(n, np.int64)
    for i in range(n):
        c = min(int((xyz[i, 0] - x0) / cell), nx - 1) * ny + min(int((xyz[i, 1] - y0) / cell), ny - 1)
        cell_of[i] = c
        start[c + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    by_cell = np.empty(n, np.int64)
    for i in range(n):
        by_cell[fill[cell_of[i]]] = i
        fill[cell_of[i]] += 1
    bucketed = np.empty((n, 3), np.float64)  # the coordinates in that order: a cell is one run of rows
    for k in range(n):
        bucketed[k] = xyz[by_cell[k]]
    capacity = max(16, 4 * n)
    roi_out = np.empty(capacity, np.int64)
    point_out = np.empty(capacity, np.int64)
    pos = 0
    for j in range(r):
        cx, cy, cz = rois[j, 0], rois[j, 1], rois[j, 2]
        c, s = np.cos(rois[j, 6]), np.sin(rois[j, 6])
        hx, hy, hz = half[j, 0], half[j, 1], half[j, 2]
        r2 = hx * hx + hy * hy
        lo_x = max(int(np.floor((cx - radius[j] - x0) / cell)), 0)
        hi_x = min(int(np.floor((cx + radius[j] - x0) / cell)), nx - 1)
        lo_y = max(int(np.floor((cy - radius[j] - y0) / cell)), 0)
        hi_y = min(int(np.floor((cy + radius[j] - y0) / cell)), ny - 1)
        first = pos
        for gx in range(lo_x, hi_x + 1):
            for gy in range(lo_y, hi_y + 1):
                g = gx * ny + gy
                for k in range(start[g], start[g + 1]):
                    dx, dy, dz = bucketed[k, 0] - cx, bucketed[k, 1] - cy, bucketed[k, 2] - cz
                    if abs(dz) > hz or dx * dx + dy * dy > r2:
                        continue
                    lx, ly = dx * c + dy * s, -dx * s + dy * c
                    if abs(lx) <= hx and abs(ly) <= hy:
                        if pos == capacity:
                            capacity *= 2
                            grown_roi = np.empty(capacity, np.int64)
                            grown_point = np.empty(capacity, np.int64)
                            grown_roi[:pos] = roi_out[:pos]
                            grown_point[:pos] = point_out[:pos]
                            roi_out, point_out = grown_roi, grown_point
                        roi_out[pos] = j
                        point_out[pos] = by_cell[k]
                        pos += 1
        if by_point:
            point_out[first:pos].sort()  # by point index within the RoI, as the tensor path
    return roi_out[:pos].copy(), point_out[:pos].copy()


@numba.njit(cache=True, inline="always")
def _before(a, b, sort_key, points, point_index):  # pragma: no cover - numba
    """Whether pair ``a`` of a RoI comes before pair ``b``: by key, then by the point's columns, then
    by point index (the order the tensor path's stable sorts leave)."""
    if sort_key[a] != sort_key[b]:
        return sort_key[a] < sort_key[b]
    pa, pb = point_index[a], point_index[b]
    for c in range(points.shape[1]):
        if points[pa, c] != points[pb, c]:
            return points[pa, c] < points[pb, c]
    return pa < pb


@numba.njit(cache=True, nogil=True)
def _choose_by_key(roi_index, point_index, key, points, num_rois, num_points):  # pragma: no cover - numba
    """:func:`roi_points`' deterministic choice on the CPU, from the pairs of :func:`_pairs_in_rois`.

    Each RoI's pairs are ordered by ``2 · roi + key[point]`` (float64, as the tensor path computes
    it), equal values by the point's columns, then by point index (the tensor path's stable sorts);
    the first ``num_points`` are taken, repeated in order when the RoI holds fewer. Returns the
    (R, P) indices and the (R,) counts.
    """
    count = np.zeros(num_rois, np.int64)
    for q in range(roi_index.shape[0]):
        count[roi_index[q]] += 1
    index = np.zeros((num_rois, num_points), np.int64)
    sort_key = np.empty(max(1, count.max() if num_rois else 1), np.float64)
    start = 0
    for j in range(num_rois):
        n = count[j]
        if n == 0:
            continue
        pairs = point_index[start : start + n]
        for q in range(n):
            sort_key[q] = np.float64(j) * 2.0 + key[pairs[q]]
        if n > num_points:  # only the first num_points matter: those with a key up to the P-th smallest
            kth = np.partition(sort_key[:n], num_points - 1)[num_points - 1]
            candidates = np.flatnonzero(sort_key[:n] <= kth)
            order = candidates[np.argsort(sort_key[candidates])]
        else:
            order = np.argsort(sort_key[:n])
        m = order.shape[0]
        q = 1
        while q < m:  # runs of equal keys (points at one x, y, z): by their columns, then index
            if sort_key[order[q]] != sort_key[order[q - 1]]:
                q += 1
                continue
            first = q - 1
            while q < m and sort_key[order[q]] == sort_key[order[first]]:
                q += 1
            for a in range(first + 1, q):  # insertion sort of the (short) run
                item, b = order[a], a - 1
                while b >= first and _before(item, order[b], sort_key, points, pairs):
                    order[b + 1] = order[b]
                    b -= 1
                order[b + 1] = item
        for slot in range(num_points):
            index[j, slot] = pairs[order[slot % m]]
        start += n
    return index, count


def _pairs_torch(
    xyz: torch.Tensor, rois: torch.Tensor, half: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_pairs_in_rois` with tensor ops (any device): a circle test in BEV, then the exact
    rotated test on the survivors. (N, 3), (R, 7), (R, 3) → two (Q,) int64, by RoI then point."""
    radius = half[:, :2].norm(dim=1)  # (R,)
    dxy = xyz[None, :, :2] - rois[:, None, :2]  # (R, N, 2)
    near = (dxy.square().sum(-1) <= radius[:, None].square()) & (
        (xyz[None, :, 2] - rois[:, None, 2]).abs() <= half[:, None, 2]
    )
    roi_index, point_index = near.nonzero(as_tuple=True)
    lx, ly = rotate_xy(dxy[roi_index, point_index], -rois[roi_index, 6])
    inside = (lx.abs() <= half[roi_index, 0]) & (ly.abs() <= half[roi_index, 1])
    return roi_index[inside], point_index[inside]


def roi_points(
    points: torch.Tensor,
    rois: torch.Tensor,
    num_points: int,
    enlarge_ratio: float = 1.2,
    enlarge_margin: float = 0.2,
    generator: torch.Generator | None = None,
    random: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose up to ``num_points`` points inside each RoI of one sample (enlarged), repeating when fewer.

    Args:
        points: (N, C) float, the sample's points, x, y, z first (lidar frame, metres).
        rois: (R, 7) float boxes (lidar frame).
        num_points: P, points per RoI.
        enlarge_ratio, enlarge_margin: a point is in RoI r when, in the RoI's frame, each coordinate's
            magnitude is at most ``extent / 2 · enlarge_ratio + enlarge_margin`` (faces inclusive).
        generator: random keys come from it (``random=True``; a CPU generator).
        random: choose the points at random (training); otherwise by a hash of their coordinates,
            equal hashes by the points' columns (deterministic and independent of the points' order).

    Returns:
        index: (R, P) int64 indices into ``points`` (0 where the RoI holds no point), on the points'
        device; each RoI's first ``min(P, count)`` entries are distinct, then they repeat in order;
        count: (R,) int64 number of points found in each RoI (before capping at P).
    """
    r, device = rois.shape[0], points.device
    if r == 0 or points.shape[0] == 0:
        return (
            torch.zeros(r, num_points, dtype=torch.long, device=device),
            torch.zeros(r, dtype=torch.long, device=device),
        )
    xyz = points[:, :3].float()
    rois = rois.float()
    half = rois[:, 3:6] / 2 * enlarge_ratio + enlarge_margin  # (R, 3)
    if device.type == "cpu" and not _TORCH_ON_CPU:
        # the hash-keyed choice orders each RoI's points itself (ties by point index)
        roi_np, point_np = _pairs_in_rois(
            xyz.double().numpy(), rois.double().numpy(), half.double().numpy(), random
        )
        roi_index, point_index = torch.from_numpy(roi_np), torch.from_numpy(point_np)
    else:
        roi_index, point_index = _pairs_torch(xyz, rois, half)
    if not random and device.type == "cpu" and not _TORCH_ON_CPU:
        key = _coordinate_hash(xyz)
        values = (
            points.detach() if points.dtype in (torch.float32, torch.float64) else points.detach().float()
        )
        index_np, count_np = _choose_by_key(
            roi_np, point_np, key.numpy(), values.contiguous().numpy(), r, num_points
        )
        return torch.from_numpy(index_np), torch.from_numpy(count_np)
    if random:
        key = torch.rand(point_index.shape[0], generator=generator, dtype=torch.float64, device="cpu")
        key = key.to(device)
    else:
        key = _coordinate_hash(xyz)[point_index]
    order = torch.arange(point_index.numel(), device=device)
    if not random:  # equal keys (points at the same x, y, z) by their columns, never by their order
        values = points[point_index]
        for col in range(points.shape[1] - 1, -1, -1):
            order = order[torch.sort(values[order, col], stable=True).indices]
    order = order[torch.sort((roi_index.double() * 2 + key)[order], stable=True).indices]  # by RoI, key
    point_index = point_index[order]
    count = torch.bincount(roi_index, minlength=r)
    start = torch.cumsum(count, 0) - count
    slot = torch.arange(num_points, device=device)
    position = start[:, None] + slot[None, :] % count.clamp(min=1)[:, None]
    if point_index.numel() == 0:
        return torch.zeros(r, num_points, dtype=torch.long, device=device), count
    index = point_index[position.clamp(max=point_index.numel() - 1)]
    index = torch.where(count[:, None] > 0, index, torch.zeros_like(index))
    return index, count


def points_in_roi_frame(points: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Points in the frame of their RoI (a rigid transform: translate by -centre, rotate by -yaw).

    Args:
        points: (R, P, ≥3) float, each RoI's points, x, y, z first (lidar frame); further columns
            are ignored.
        rois: (R, 7) float boxes (lidar frame).

    Returns:
        (R, P, 3) in the inputs' (promoted) dtype: x along the RoI's heading, y to its left, z up,
        metres from its centre.
    """
    local = points[..., :3] - rois[:, None, :3]
    lx, ly = rotate_xy(local[..., :2], -rois[:, None, 6])
    return torch.stack([lx, ly, local[..., 2]], dim=-1)
