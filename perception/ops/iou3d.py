"""Rotated-box overlap, IoU and NMS in bird's-eye view and 3D.

Boxes follow the project convention (see ``perception.geometry.boxes``): ``(M, 7)``
``[x, y, z, l, w, h, yaw]``, centre of the box, yaw counter-clockwise from +x, metres, lidar frame.

- ``boxes_overlap_bev(a, b)``: (M, K) area of the intersection of the BEV rectangles.
- ``boxes_iou_bev(a, b)``: (M, K) BEV IoU, intersection area / union area.
- ``boxes_iou3d(a, b)``: (M, K) 3D IoU, BEV intersection × vertical overlap / union volume
  (the KITTI / Waymo definition for boxes that only rotate about z).
- ``nms_bev(boxes, scores, iou_threshold, ...)``: greedy rotated NMS by BEV IoU.
- ``nms_bev_per_class(boxes, scores, labels, iou_thresholds)``: ``nms_bev`` within each class, with a
  threshold per class, all classes in one kernel call on the CPU.

Algorithm: Sutherland–Hodgman clipping of one rectangle by the four edges of the other (both
counter-clockwise), then the shoelace area of the clipped polygon. Each clip keeps the vertices on
the inner side (inclusive) and adds the crossing point of every edge whose ends lie on different
sides, ``p + t (q - p)`` with ``t = d_p / (d_p - d_q)``; ``d_p`` and ``d_q`` then have opposite signs, so
the division never cancels, and touching, collinear, identical, nested and zero-area boxes need no
special case (their polygons merely degenerate to zero area). Pairs are first rejected by their
circumscribed circles and axis-aligned bounding boxes. Coordinates are taken relative to the centre of
the first box of the pair, so boxes far from the origin lose no precision.

Backends: NumPy in → NumPy out through a numba kernel (float64 inside). Torch in → torch out on the
same device: on CUDA (or where an input requires grad) a vectorised, differentiable torch version of
the same clipping runs over all candidate pairs at once in the input dtype (float32 for half types);
CPU tensors go through the numba kernel and back. Outputs have the input's floating dtype (float64
for non-float NumPy input).

Input checks (``ValueError`` naming the argument): shape ``(M, 7)``, finite values, sizes ``>= 0``
(zero sizes make degenerate boxes: zero area gives BEV and 3D IoU 0, zero height gives 3D IoU 0),
and for two inputs the same array type, dtype and device. Empty inputs give an empty ``(M, K)`` result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numba
import numpy as np
import torch

from perception.geometry.boxes import boxes_bev_corners

__all__ = ["boxes_iou3d", "boxes_iou_bev", "boxes_overlap_bev", "nms_bev", "nms_bev_per_class"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# Run the torch kernel on CPU tensors too (tests and benchmarks flip this; normally CPU uses numba).
_TORCH_ON_CPU = False
# Candidate pairs the torch kernel clips at once (bounds its memory to a few hundred MB).
_TORCH_CHUNK = 1 << 17
# Unit BEV square in the project's corner order (counter-clockwise from front-left), (4, 2).
_UNIT_BEV = boxes_bev_corners(np.array([[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]]))[0]
# Sutherland–Hodgman at most doubles the vertex count per clip: 4 → 8 → 16 → 32 → 64 (in exact
# arithmetic a convex quad ends with at most 8; rounding on slivers can add more, never past this).
_MAX_VERTICES = 64
# What the pair kernels compute.
_AREA, _IOU_BEV, _IOU_3D = 0, 1, 2


# ----------------------------------------------------------------------------------------------------
# Input checks


def _check_boxes(boxes: Array, name: str) -> Array:
    """Validate one (M, 7) box array; NumPy input comes back as a float array (float64 if not float)."""
    if isinstance(boxes, torch.Tensor):
        if not boxes.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {boxes.dtype}")
        finite = bool(torch.isfinite(boxes).all())
    else:
        boxes = np.asarray(boxes)
        if not np.issubdtype(boxes.dtype, np.floating):
            boxes = boxes.astype(np.float64)
        finite = bool(np.isfinite(boxes).all())
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"{name} must have shape (M, 7) [x, y, z, l, w, h, yaw], got {tuple(boxes.shape)}")
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values")
    if bool((boxes[:, 3:6] < 0).any()):
        raise ValueError(f"{name} has negative sizes (columns l, w, h must be >= 0)")
    return boxes


def _check_pair(a: Array, b: Array) -> tuple[Array, Array]:
    if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
        raise ValueError(
            f"b must be the same array type as a, got a: {type(a).__name__}, b: {type(b).__name__}"
        )
    a, b = _check_boxes(a, "a"), _check_boxes(b, "b")
    if a.dtype != b.dtype:
        raise ValueError(f"b must have the same dtype as a, got a: {a.dtype}, b: {b.dtype}")
    if isinstance(a, torch.Tensor) and a.device != b.device:
        raise ValueError(f"b must be on the same device as a, got a: {a.device}, b: {b.device}")
    return a, b


def _use_torch_kernel(*tensors: torch.Tensor) -> bool:
    return _TORCH_ON_CPU or any(t.device.type != "cpu" or t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------------------------------
# numba kernel (CPU)


@numba.njit(cache=True)
def _clip_area(px, py, qx, qy, d, cx, cy):  # pragma: no cover - numba
    """Area of the convex polygon ``px[:4], py[:4]`` clipped by the CCW quad ``cx, cy``.

    ``px, py, qx, qy, d`` are scratch buffers of ``_MAX_VERTICES``; ``px, py`` hold the subject on entry.
    """
    n = 4
    for e in range(4):
        x0, y0 = cx[e], cy[e]
        ex, ey = cx[(e + 1) % 4] - x0, cy[(e + 1) % 4] - y0
        outside = 0
        for i in range(n):
            d[i] = ex * (py[i] - y0) - ey * (px[i] - x0)  # >= 0: left of the edge, inside
            outside += d[i] < 0.0
        if outside == 0:
            continue
        m = 0
        for i in range(n):
            j = i + 1 if i + 1 < n else 0
            if d[i] >= 0.0:
                qx[m], qy[m] = px[i], py[i]
                m += 1
            if (d[i] >= 0.0) != (d[j] >= 0.0):
                t = d[i] / (d[i] - d[j])
                qx[m] = px[i] + t * (px[j] - px[i])
                qy[m] = py[i] + t * (py[j] - py[i])
                m += 1
        if m < 3:
            return 0.0
        px, qx = qx, px
        py, qy = qy, py
        n = m
    area = 0.0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        area += px[i] * py[j] - px[j] * py[i]
    return max(0.5 * area, 0.0)


@numba.njit(cache=True)
def _row_values(a, i, b, js, mode, out):  # pragma: no cover - numba
    """``out[k]`` = value of the pair ``a[i]``, ``b[js[k]]`` (rows of ``_numba_inputs``) for each k.

    ``mode`` _AREA: BEV intersection area; _IOU_BEV: BEV IoU; _IOU_3D: 3D IoU. Pairs whose
    axis-aligned bounding boxes or circumscribed circles (or, for 3D, vertical extents) are apart are
    0 without clipping. A whole row per call keeps numba's per-call array overhead off the pair loop.
    """
    buf = np.empty((7, _MAX_VERTICES))
    px, py, qx, qy, d, cx, cy = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6]
    area_a, vol_a = a[i, 3] * a[i, 4], a[i, 3] * a[i, 4] * a[i, 5]
    for k in range(js.shape[0]):
        j = js[k]
        out[k] = 0.0
        dx, dy = b[j, 0] - a[i, 0], b[j, 1] - a[i, 1]
        if abs(dx) >= a[i, 15] + b[j, 15] or abs(dy) >= a[i, 16] + b[j, 16]:
            continue
        r = a[i, 17] + b[j, 17]
        if dx * dx + dy * dy >= r * r:
            continue
        height = min(a[i, 19], b[j, 19]) - max(a[i, 18], b[j, 18])
        if mode == _IOU_3D and height <= 0.0:
            continue
        # a[i] is the subject, clipped by b[j]; both relative to a[i]'s centre.
        for c in range(4):
            px[c], py[c] = a[i, 7 + 2 * c], a[i, 8 + 2 * c]
            cx[c], cy[c] = b[j, 7 + 2 * c] + dx, b[j, 8 + 2 * c] + dy
        inter = _clip_area(px, py, qx, qy, d, cx, cy)
        if mode == _AREA:
            out[k] = inter
            continue
        if mode == _IOU_BEV:
            union = area_a + b[j, 3] * b[j, 4] - inter
        else:
            inter *= height
            union = vol_a + b[j, 3] * b[j, 4] * b[j, 5] - inter
        if union > 0.0:
            out[k] = min(inter / union, 1.0)


@numba.njit(cache=True)
def _pairs_kernel(a, b, mode, out):  # pragma: no cover - numba
    js = np.arange(b.shape[0])
    for i in range(a.shape[0]):
        _row_values(a, i, b, js, mode, out[i])


@numba.njit(cache=True)
def _nms_kernel(boxes, threshold, max_keep):  # pragma: no cover - numba
    """Greedy NMS over boxes already sorted by descending score; IoU computed only against kept boxes."""
    keep = np.empty(boxes.shape[0], np.int64)
    iou = np.empty(boxes.shape[0])
    num = 0
    for i in range(boxes.shape[0]):
        if num >= max_keep:
            break
        _row_values(boxes, i, boxes, keep[:num], _IOU_BEV, iou)
        if num == 0 or iou[:num].max() <= threshold:
            keep[num] = i
            num += 1
    return keep[:num]


@numba.njit(cache=True)
def _nms_per_class_kernel(boxes, labels, thresholds):  # pragma: no cover - numba
    """Greedy NMS within each class over boxes sorted by descending score (rows of ``_numba_inputs``);
    a box meets only the kept boxes of its own class. (N,) bool: kept."""
    n = boxes.shape[0]
    kept = np.zeros(n, np.bool_)
    same = np.empty(n, np.int64)  # the kept boxes of the current box's class
    kept_by_class = np.empty((thresholds.shape[0], n), np.int64)
    count = np.zeros(thresholds.shape[0], np.int64)
    iou = np.empty(n)
    for i in range(n):
        c = labels[i]
        m = count[c]
        same[:m] = kept_by_class[c, :m]
        _row_values(boxes, i, boxes, same[:m], _IOU_BEV, iou)
        if m == 0 or iou[:m].max() <= thresholds[c]:
            kept[i] = True
            kept_by_class[c, m] = i
            count[c] = m + 1
    return kept


@numba.njit(cache=True)
def _nms_from_mask(over, max_keep):  # pragma: no cover - numba
    """Greedy NMS given ``over[i, j]`` = IoU(i, j) > threshold for boxes sorted by descending score."""
    n = over.shape[0]
    keep = np.empty(n, np.int64)
    removed = np.zeros(n, np.bool_)
    num = 0
    for i in range(n):
        if num >= max_keep:
            break
        if removed[i]:
            continue
        keep[num] = i
        num += 1
        for j in range(i + 1, n):
            removed[j] |= over[i, j]
    return keep[:num]


def _numba_inputs(boxes: np.ndarray) -> np.ndarray:
    """(M, 20) float64 rows for the kernels: the box (7), its BEV corner offsets from the centre
    (8: x0, y0, ..., x3, y3), AABB half-extents (2), circumscribed radius, bottom z and top z."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centred = boxes.copy()
    centred[:, :3] = 0.0
    offsets = boxes_bev_corners(centred)  # (M, 4, 2)
    radius = 0.5 * np.hypot(boxes[:, 3], boxes[:, 4])
    z = boxes[:, 2:3] + 0.5 * boxes[:, 5:6] * np.array([-1.0, 1.0])
    return np.ascontiguousarray(
        np.column_stack([boxes, offsets.reshape(-1, 8), np.abs(offsets).max(axis=1), radius, z])
    )


def _pairs_numba(a: np.ndarray, b: np.ndarray, mode: int) -> np.ndarray:
    """(M, K) float64 values of ``mode`` for (M, 7) × (K, 7) boxes, through the numba kernel."""
    out = np.empty((a.shape[0], b.shape[0]))
    if out.size:
        _pairs_kernel(_numba_inputs(a), _numba_inputs(b), mode, out)
    return out


# ----------------------------------------------------------------------------------------------------
# torch kernel (any device, differentiable)


def _torch_offsets(boxes: torch.Tensor) -> torch.Tensor:
    """(M, 4, 2) BEV corner offsets from the centre, in ``_UNIT_BEV``'s order."""
    unit = torch.as_tensor(_UNIT_BEV, dtype=boxes.dtype, device=boxes.device)
    local = unit * boxes[:, None, 3:5]
    c, s = torch.cos(boxes[:, 6, None]), torch.sin(boxes[:, 6, None])
    return torch.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1]], -1)


def _torch_clip_area(subject: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """Sutherland–Hodgman over P pairs at once: (P, 4, 2) subject clipped by (P, 4, 2) CCW clip → (P,)."""
    poly, count = subject, torch.full(subject.shape[:1], 4, device=subject.device)
    for e in range(4):
        start, edge = clip[:, e, None], clip[:, (e + 1) % 4, None] - clip[:, e, None]  # (P, 1, 2)
        slot = torch.arange(poly.shape[1], device=poly.device)
        valid = slot < count[:, None]
        nxt = torch.where(slot + 1 < count[:, None], slot + 1, 0)  # (P, W)
        rel = poly - start
        dist = edge[..., 0] * rel[..., 1] - edge[..., 1] * rel[..., 0]  # (P, W), >= 0 inside
        dist_next = dist.gather(1, nxt)
        inside, inside_next = dist >= 0, dist_next >= 0
        crosses = inside != inside_next
        t = dist / torch.where(crosses, dist - dist_next, torch.ones_like(dist))
        poly_next = poly.gather(1, nxt[..., None].expand(-1, -1, 2))
        crossing = poly + t[..., None] * (poly_next - poly)
        # Each vertex emits itself if inside, then its edge's crossing point: interleave, then compact.
        candidates = torch.stack([poly, crossing], 2).flatten(1, 2)  # (P, 2W, 2)
        emit = torch.stack([inside & valid, crosses & valid], 2).flatten(1, 2)  # (P, 2W)
        count = emit.sum(1)
        width = max(int(count.max()), 3) if count.numel() else 3
        target = torch.where(emit, emit.cumsum(1) - 1, width)  # non-emitted → a spill slot, dropped
        out = poly.new_zeros(poly.shape[0], width + 1, 2)
        poly = out.scatter(1, target[..., None].expand(-1, -1, 2), candidates)[:, :width]
    slot = torch.arange(poly.shape[1], device=poly.device)
    nxt = torch.where(slot + 1 < count[:, None], slot + 1, 0)
    poly_next = poly.gather(1, nxt[..., None].expand(-1, -1, 2))
    twice = poly[..., 0] * poly_next[..., 1] - poly_next[..., 0] * poly[..., 1]
    area = 0.5 * torch.where(slot < count[:, None], twice, 0).sum(1)
    return torch.where(count >= 3, area, 0).clamp_min(0)


def _overlap_torch(a: torch.Tensor, b: torch.Tensor, use_z: bool) -> torch.Tensor:
    out = a.new_zeros(a.shape[0], b.shape[0])
    if out.numel() == 0:
        return out
    oa, ob = _torch_offsets(a), _torch_offsets(b)
    ha, hb = oa.detach().abs().amax(1), ob.detach().abs().amax(1)  # (M, 2) AABB half-extents
    ra, rb = 0.5 * a[:, 3:5].detach().norm(dim=1), 0.5 * b[:, 3:5].detach().norm(dim=1)
    delta = (b[None, :, :2] - a[:, None, :2]).detach()  # (M, K, 2)
    near = ((delta.abs() < ha[:, None] + hb[None]).all(-1)) & (
        delta.square().sum(-1) < (ra[:, None] + rb[None]).square()
    )
    if use_z:
        za, zb = a[:, 2].detach(), b[:, 2].detach()
        top = torch.minimum((za + 0.5 * a[:, 5].detach())[:, None], (zb + 0.5 * b[:, 5].detach())[None])
        bottom = torch.maximum((za - 0.5 * a[:, 5].detach())[:, None], (zb - 0.5 * b[:, 5].detach())[None])
        near &= top > bottom
    ii, jj = near.nonzero(as_tuple=True)
    areas = []
    for start in range(0, ii.numel(), _TORCH_CHUNK):
        i, j = ii[start : start + _TORCH_CHUNK], jj[start : start + _TORCH_CHUNK]
        clip = ob[j] + (b[j, None, :2] - a[i, None, :2])
        areas.append(_torch_clip_area(oa[i], clip))
    if areas:
        out = out.index_put((ii, jj), torch.cat(areas))
    return out


def _pairs_torch(a: torch.Tensor, b: torch.Tensor, mode: int) -> torch.Tensor:
    """(M, K) values of ``mode`` (as ``_row_values``) with the torch kernel, in the inputs' dtype."""
    inter = _overlap_torch(a, b, use_z=mode == _IOU_3D)
    if mode == _AREA:
        return inter
    if mode == _IOU_BEV:
        union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None, :] - inter
    else:
        # Vertical extents relative to a's centre, so float32 keeps the precision of thin boxes.
        dz, half_a, half_b = b[None, :, 2] - a[:, None, 2], 0.5 * a[:, None, 5], 0.5 * b[None, :, 5]
        height = torch.minimum(half_a, dz + half_b) - torch.maximum(-half_a, dz - half_b)
        inter = inter * height.clamp_min(0)
        union = (a[:, 3] * a[:, 4] * a[:, 5])[:, None] + (b[:, 3] * b[:, 4] * b[:, 5])[None, :] - inter
    # clamp_min keeps the gradient finite where the union is empty (degenerate boxes; inter is 0 there).
    iou = inter / union.clamp_min(torch.finfo(union.dtype).tiny)
    return torch.where(union > 0, iou, 0).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------
# Public API


def _pairs(a: Array, b: Array, mode: int) -> Array:
    """Check the inputs and compute ``mode`` for all pairs with the backend they call for."""
    a, b = _check_pair(a, b)
    if not isinstance(a, torch.Tensor):
        return _pairs_numba(a, b, mode).astype(a.dtype, copy=False)
    if _use_torch_kernel(a, b):
        if a.dtype in (torch.float16, torch.bfloat16):  # too coarse for the clipping: compute in float32
            return _pairs_torch(a.float(), b.float(), mode).to(a.dtype)
        return _pairs_torch(a, b, mode)
    out = _pairs_numba(a.double().numpy(), b.double().numpy(), mode)
    return torch.from_numpy(out).to(a.dtype)


def boxes_overlap_bev(a: Array, b: Array) -> Array:
    """Area of the intersection of the bird's-eye-view rectangles of every pair of boxes.

    Args:
        a: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``, NumPy array or torch tensor (float).
        b: (K, 7) boxes of the same type, dtype (and device, for tensors) as ``a``.

    Returns:
        (M, K) intersection areas in square metres, same type, dtype and device as the inputs.
        Empty inputs give an empty (M, K) result.
    """
    return _pairs(a, b, _AREA)


def boxes_iou_bev(a: Array, b: Array) -> Array:
    """Bird's-eye-view IoU of every pair of boxes: rotated-rectangle intersection area / union area.

    Args:
        a: (M, 7) boxes ``[x, y, z, l, w, h, yaw]``, NumPy array or torch tensor (float).
        b: (K, 7) boxes of the same type, dtype (and device, for tensors) as ``a``.

    Returns:
        (M, K) IoU in [0, 1], same type, dtype and device as the inputs; 0 for zero-area boxes.
        Empty inputs give an empty (M, K) result.
    """
    return _pairs(a, b, _IOU_BEV)


def boxes_iou3d(a: Array, b: Array) -> Array:
    """3D IoU of every pair of boxes (KITTI / Waymo definition for boxes rotated about z only).

    Intersection volume = BEV intersection area × overlap of the vertical extents ``z ± h / 2``;
    IoU = intersection / (vol_a + vol_b − intersection).

    Args:
        a: (M, 7) boxes ``[x, y, z, l, w, h, yaw]`` (z is the centre), NumPy array or torch tensor (float).
        b: (K, 7) boxes of the same type, dtype (and device, for tensors) as ``a``.

    Returns:
        (M, K) IoU in [0, 1], same type, dtype and device as the inputs; 0 for zero-volume boxes.
        Empty inputs give an empty (M, K) result.
    """
    return _pairs(a, b, _IOU_3D)


def nms_bev(
    boxes: Array,
    scores: Array,
    iou_threshold: float,
    pre_max_size: int | None = None,
    post_max_size: int | None = None,
) -> Array:
    """Rotated non-maximum suppression by BEV IoU.

    Boxes are visited by descending score (ties: lower index first); a box is kept unless its BEV IoU
    with an already kept box is strictly greater than ``iou_threshold``.

    Args:
        boxes: (N, 7) boxes ``[x, y, z, l, w, h, yaw]``, NumPy array or torch tensor (float).
        scores: (N,) finite scores, same type (and device) as ``boxes``.
        iou_threshold: suppression threshold on the BEV IoU.
        pre_max_size: if given, only the ``pre_max_size`` highest-scoring boxes take part.
        post_max_size: if given, at most this many indices are returned.

    Returns:
        (S,) int64 indices into ``boxes`` of the kept boxes, by descending score; NumPy or torch
        (on the boxes' device) as the input. Empty input gives an empty result.
    """
    boxes = _check_boxes(boxes, "boxes")
    is_torch = isinstance(boxes, torch.Tensor)
    if isinstance(scores, torch.Tensor) != is_torch:
        raise ValueError(f"scores must be the same array type as boxes, got {type(scores).__name__}")
    if is_torch and scores.device != boxes.device:
        raise ValueError(
            f"scores must be on the same device as boxes, got {scores.device} and {boxes.device}"
        )
    if not is_torch:
        scores = np.asarray(scores, dtype=np.float64)
    if tuple(scores.shape) != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all() if is_torch else np.isfinite(scores).all()):
        raise ValueError("scores contains NaN or infinite values")
    iou_threshold = float(iou_threshold)
    if not np.isfinite(iou_threshold):
        raise ValueError(f"iou_threshold must be finite, got {iou_threshold}")
    for name, size in (("pre_max_size", pre_max_size), ("post_max_size", post_max_size)):
        if size is not None and size < 0:
            raise ValueError(f"{name} must be >= 0 or None, got {size}")
    max_keep = boxes.shape[0] if post_max_size is None else post_max_size

    if is_torch:
        order = torch.sort(scores.detach(), descending=True, stable=True).indices[:pre_max_size]
        if _use_torch_kernel(boxes):
            sorted_boxes = boxes.detach()[order]
            over = (boxes_iou_bev(sorted_boxes, sorted_boxes) > iou_threshold).cpu().numpy()
            keep = _nms_from_mask(over, max_keep)
        else:
            keep = _nms_kernel(_numba_inputs(boxes.detach()[order].double().numpy()), iou_threshold, max_keep)
        return order[torch.from_numpy(keep).to(order.device)]
    order = np.argsort(-scores, kind="stable")[:pre_max_size]
    keep = _nms_kernel(_numba_inputs(boxes[order]), iou_threshold, max_keep)
    return order[keep].astype(np.int64, copy=False)


def nms_bev_per_class(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_thresholds: Sequence[float]
) -> torch.Tensor:
    """``nms_bev`` within each class: for every class present, by ascending class, the indices that
    ``nms_bev(boxes[of c], scores[of c], iou_thresholds[c])`` keeps, mapped back and concatenated.

    Args:
        boxes: (N, 7) float tensor; scores: (N,) finite; labels: (N,) int in ``[0, len(iou_thresholds))``.
        iou_thresholds: the suppression threshold of each class.

    Returns:
        (S,) int64 indices into ``boxes``, class by class, each class's by descending score (ties: lower
        index first). CPU tensors: one numba pass over all classes (each box meets only the kept boxes
        of its class, so the result is the per-class one); other devices call ``nms_bev`` per class.
    """
    if labels.shape != scores.shape:
        raise ValueError(f"labels must have shape {tuple(scores.shape)}, got {tuple(labels.shape)}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(iou_thresholds)):
        raise ValueError(f"labels must lie in [0, {len(iou_thresholds)}), one threshold per class")
    if _use_torch_kernel(boxes) or len(labels) == 0:
        kept = [torch.zeros(0, dtype=torch.long, device=boxes.device)]
        for c in labels.unique().tolist():
            index = (labels == c).nonzero().squeeze(1)
            kept.append(index[nms_bev(boxes[index], scores[index], iou_thresholds[c])])
        return torch.cat(kept)
    boxes = _check_boxes(boxes, "boxes")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contains NaN or infinite values")
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    sorted_labels = labels[order]
    kept = _nms_per_class_kernel(
        _numba_inputs(boxes.detach()[order].double().numpy()),
        sorted_labels.to(torch.int64).numpy(),
        np.asarray(iou_thresholds, dtype=np.float64),
    )
    kept = torch.from_numpy(kept)
    # by class, each class's kept boxes in descending score (a stable sort keeps the score order)
    by_class = torch.sort(sorted_labels[kept], stable=True).indices
    return order[kept.nonzero().squeeze(1)[by_class]]
