"""CenterPoint's detection head: a class heatmap of object centres on the BEV grid, boxes regressed there.

Grid: the head's map has ``H' = ceil(ny / out_stride)`` rows (y) and ``W' = ceil(nx / out_stride)``
columns (x), where ``(nz, ny, nx)`` is the voxel grid of ``point_cloud_range`` / ``voxel_size``. Cell
``(iy, ix)`` covers ``x in [x_min + ix·cx, x_min + (ix + 1)·cx)`` with ``cx = voxel_size[0]·out_stride``
(y likewise). Boxes are ``[x, y, z, l, w, h, yaw]`` in the lidar frame (metres, yaw counter-clockwise
from +x, wrapped to [-π, π)).

Targets (:meth:`CenterHead.encode_targets`), per object of a training class whose centre cell lies on
the map: a Gaussian on its class's heatmap, centred on that cell, with CornerNet's radius
(:func:`gaussian_radius`, at least ``min_radius`` cells) and σ = (2r + 1) / 6, merged by maximum; and at
the centre cell the regression target ``[x/cx - ix, y/cy - iy, z, log l, log w, log h, sin yaw, cos yaw]``
(the first two relative to the map's corner): the sub-cell offset (in cells, [0, 1)), z, log dims, yaw
(:func:`perception.geometry.box_coder.encode_centerpoint`; decoded by ``decode_centerpoint``).

Loss (:meth:`CenterHead.loss`): CenterNet's focal loss on the heatmap (α = 2, β = 4, predictions
clamped to [1e-4, 1 - 1e-4], summed and divided by the number of objects) plus
``regression_weight`` × Σ_dims ``code_weights`` · L1 at the centre cells / number of objects.

Decoding (:meth:`CenterHead.decode`): sigmoid heatmap (optionally only 3×3 local maxima), the top
``pre_nms_top_k`` (class, cell) pairs per sample over ``score_threshold`` (equal scores taken by
ascending class, then cell: :func:`top_k_by_index`, so the boxes do not hang on ``torch.topk``'s
tie-breaking), boxes from the regression at those cells, then rotated BEV NMS per class
(:func:`perception.ops.iou3d.nms_bev_per_class`) and the best ``post_nms_top_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from perception.geometry.box_coder import CENTERPOINT_CHANNELS, decode_centerpoint, encode_centerpoint
from perception.models.inference_path import (
    LayerWeights,
    WeightCache,
    compute_dtype,
    conv_bn_relu_blocks,
    fast_path,
    layer_weights,
)
from perception.ops.iou3d import nms_bev_per_class
from perception.ops.voxelize import grid_shape
from perception.structures import Detections

__all__ = [
    "CenterHead",
    "CenterTargets",
    "HeadOutput",
    "class_thresholds",
    "gaussian_radius",
    "select_detections",
    "top_k_by_index",
]

# Regression channels in the order of ``HeadOutput.regression()`` and ``CenterTargets.regression``.
REGRESSION_CHANNELS = CENTERPOINT_CHANNELS


@dataclass(frozen=True)
class HeadOutput:
    """The head's dense maps on the (H', W') BEV grid (see the module docstring for the cells).

    Attributes:
        heatmap: (B, K, H', W') float logits of an object centre of each of the K classes.
        offset: (B, 2, H', W') the centre's x, y offset from the cell's corner, in cells.
        z: (B, 1, H', W') the centre's z, metres.
        log_dims: (B, 3, H', W') log of l, w, h (metres).
        rot: (B, 2, H', W') sin and cos of the yaw.
    """

    heatmap: torch.Tensor
    offset: torch.Tensor
    z: torch.Tensor
    log_dims: torch.Tensor
    rot: torch.Tensor

    def regression(self) -> torch.Tensor:
        """(B, 8, H', W'): offset, z, log dims, sin, cos stacked (``REGRESSION_CHANNELS``)."""
        return torch.cat([self.offset, self.z, self.log_dims, self.rot], dim=1)


@dataclass(frozen=True)
class CenterTargets:
    """Training targets for a batch; the M objects that landed on the map, concatenated over samples.

    Attributes:
        heatmap: (B, K, H', W') float, Gaussians in [0, 1], exactly 1 at each object's centre cell.
        batch: (M,) int64, each object's sample.
        cell: (M,) int64, its centre cell ``iy * W' + ix``.
        labels: (M,) int64 class index.
        regression: (M, 8) float, as ``HeadOutput.regression()`` should read at the centre cell.
    """

    heatmap: torch.Tensor
    batch: torch.Tensor
    cell: torch.Tensor
    labels: torch.Tensor
    regression: torch.Tensor

    @property
    def num_objects(self) -> int:
        return int(self.batch.shape[0])


def class_thresholds(value: float | Sequence[float] | None, num_classes: int) -> list[float] | None:
    """A per-class NMS threshold list from one value for all classes, one per class, or None (no NMS)."""
    if value is None:
        return None
    if isinstance(value, Sequence):
        if len(value) != num_classes:
            raise ValueError(
                f"nms_iou_threshold needs one value per class ({num_classes}), got {list(value)}"
            )
        return [float(t) for t in value]
    return [float(value)] * num_classes


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    nms_thresholds: Sequence[float] | None,
    top_k: int | None = None,
) -> Detections:
    """Rotated BEV NMS per class (thresholds indexed by label; None for none), then the best ``top_k``
    by descending score (ties keep their order)."""
    if nms_thresholds is not None and len(scores):
        index = nms_bev_per_class(boxes, scores, labels, nms_thresholds)
        boxes, scores, labels = boxes[index], scores[index], labels[index]
    order = torch.sort(scores, descending=True, stable=True).indices[:top_k]
    return Detections(boxes[order].float(), scores[order].float(), labels[order].long())


def top_k_by_index(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``values.topk(k, dim=1)`` with ties broken by the lower index, on any device.

    ``torch.topk`` leaves the choice among equal values to its algorithm, which depends on the other
    values: two score maps equal in their tied cells but a rounding apart elsewhere (the same cloud in
    another point order) could pick different tied cells, hence different boxes. Here the cells kept
    and their order are a function of the values alone: every value above the k-th largest, then the
    equal ones by ascending index; the result by descending value, equal values by ascending index.

    Args:
        values: (B, M) float, no NaN.
        k: 0 <= k <= M.

    Returns:
        (B, k) values and (B, k) int64 indices into ``values``' rows.
    """
    if k == 0:
        return values[:, :0], torch.zeros(values.shape[0], 0, dtype=torch.long, device=values.device)
    kth = values.topk(k, dim=1).values[:, -1:]  # (B, 1)
    above, tied = values > kth, values == kth
    need = k - above.sum(1, keepdim=True)  # tied cells to take, lowest indices first
    keep = above | (tied & (tied.cumsum(1) <= need))
    index = keep.nonzero()[:, 1].view(values.shape[0], k)  # ascending per row
    kept = values.gather(1, index)
    order = torch.sort(kept, dim=1, descending=True, stable=True).indices
    return kept.gather(1, order), index.gather(1, order)


def gaussian_radius(length: torch.Tensor, width: torch.Tensor, min_overlap: float = 0.1) -> torch.Tensor:
    """CornerNet's Gaussian radius, as CenterNet and CenterPoint compute it.

    The smallest of the three radii from CornerNet's cases (both corners inside, both outside, one of
    each) at which a box displaced by the radius still has IoU ``min_overlap`` with the object; each is
    the larger root of ``a r² - b r + c = 0`` written, as in those implementations, ``(b + sqrt(b² - 4ac)) / 2``:

    - ``a = 1``, ``b = h + w``, ``c = w h (1 - o) / (1 + o)``;
    - ``a = 4``, ``b = 2 (h + w)``, ``c = (1 - o) w h``;
    - ``a = 4 o``, ``b = -2 o (h + w)``, ``c = (o - 1) w h``.

    Args:
        length, width: (M,) float object extents in heatmap cells.
        min_overlap: o.

    Returns:
        (M,) float radii in cells (not rounded).
    """
    h, w, o = length, width, min_overlap
    b1, c1 = h + w, w * h * (1 - o) / (1 + o)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - o) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * o, -2 * o * (h + w), (o - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _branch(c_in: int, c_mid: int, c_out: int, num_convs: int, bias: float | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs - 1):
        layers += [
            nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
        ]
        c_in = c_mid
    last = nn.Conv2d(c_in, c_out, 3, padding=1)
    if bias is not None:
        nn.init.constant_(last.bias, bias)
    return nn.Sequential(*layers, last)


class CenterHead(nn.Module):
    """CenterPoint head: shared 3×3 conv, then per-output branches (heatmap, offset, z, log dims, rot).

    Args:
        in_channels: channels of the BEV feature map.
        class_names: the K training classes, in label order.
        point_cloud_range: (6,) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres (the encoder's).
        voxel_size: (3,) metres (the encoder's).
        out_stride: voxel cells per map cell (the 3D and 2D backbones' strides multiplied).
        shared_channels: width of the shared conv.
        head_channels: width of each branch's hidden convs.
        head_convs: convs per branch, the last one the output (CenterPoint: 2).
        heatmap_weight: weight of the focal loss.
        regression_weight: weight of the L1 loss (CenterPoint: 0.25 KITTI, 2 Waymo).
        code_weights: (8,) per-channel L1 weights (``REGRESSION_CHANNELS`` order).
        gaussian_overlap: CornerNet's min overlap for the radius.
        min_radius: the smallest Gaussian radius, cells.
        max_objects: objects per sample kept for the targets (the first ones).
        score_threshold: detections below are dropped.
        nms_iou_threshold: rotated-NMS BEV IoU threshold, one for all classes or one per class; None
            for no NMS (then use ``peak_max_pool``).
        pre_nms_top_k: candidates per sample before NMS.
        post_nms_top_k: detections per sample after NMS.
        peak_max_pool: keep only heatmap cells that are the maximum of their 3×3 neighbourhood.
    """

    def __init__(
        self,
        in_channels: int,
        class_names: Sequence[str],
        point_cloud_range: Sequence[float],
        voxel_size: Sequence[float],
        out_stride: int,
        shared_channels: int = 64,
        head_channels: int = 64,
        head_convs: int = 2,
        heatmap_weight: float = 1.0,
        regression_weight: float = 0.25,
        code_weights: Sequence[float] = (1.0,) * 8,
        gaussian_overlap: float = 0.1,
        min_radius: int = 2,
        max_objects: int = 500,
        score_threshold: float = 0.1,
        nms_iou_threshold: float | Sequence[float] | None = 0.7,
        pre_nms_top_k: int = 1000,
        post_nms_top_k: int = 100,
        peak_max_pool: bool = False,
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        k = len(self.class_names)
        if k == 0:
            raise ValueError("class_names must name at least one class")
        if len(code_weights) != len(REGRESSION_CHANNELS):
            raise ValueError(f"code_weights needs {len(REGRESSION_CHANNELS)} values, got {len(code_weights)}")
        if out_stride < 1 or head_convs < 1:
            raise ValueError(f"out_stride and head_convs must be >= 1, got {out_stride}, {head_convs}")
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.out_stride = int(out_stride)
        _, ny, nx = grid_shape(self.voxel_size, self.point_cloud_range)
        self.map_shape = (-(-ny // out_stride), -(-nx // out_stride))
        self.cell_size = (self.voxel_size[0] * out_stride, self.voxel_size[1] * out_stride)
        self.heatmap_weight, self.regression_weight = heatmap_weight, regression_weight
        self.register_buffer(
            "code_weights", torch.tensor(code_weights, dtype=torch.float32), persistent=False
        )
        self.gaussian_overlap, self.min_radius, self.max_objects = gaussian_overlap, min_radius, max_objects
        self.score_threshold = score_threshold
        # per class, or None for no NMS
        self.nms_iou_threshold = class_thresholds(nms_iou_threshold, k)
        self.pre_nms_top_k, self.post_nms_top_k = pre_nms_top_k, post_nms_top_k
        self.peak_max_pool = peak_max_pool

        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, shared_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(shared_channels),
            nn.ReLU(inplace=True),
        )
        c, m = shared_channels, head_channels
        self.heatmap = _branch(c, m, k, head_convs, bias=-2.19)
        self.offset = _branch(c, m, 2, head_convs)
        self.z = _branch(c, m, 1, head_convs)
        self.log_dims = _branch(c, m, 3, head_convs)
        self.rot = _branch(c, m, 2, head_convs)
        self._stacked_layers = WeightCache()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------------------------------------

    def forward(self, bev: torch.Tensor) -> HeadOutput:
        """(B, in_channels, H', W') BEV features → :class:`HeadOutput` on the same grid."""
        if tuple(bev.shape[2:]) != self.map_shape:
            raise ValueError(
                f"the BEV map is {tuple(bev.shape[2:])} but point_cloud_range / voxel_size / out_stride="
                f"{self.out_stride} give {self.map_shape}: check out_stride against the backbones' strides"
            )
        if fast_path(self):  # the same numbers, the branches stacked (perception.models.inference_path)
            stacked = self._forward_stacked(bev)
            if stacked is not None:
                return stacked
        x = self.shared(bev)
        return HeadOutput(self.heatmap(x), self.offset(x), self.z(x), self.log_dims(x), self.rot(x))

    # ------------------------------------------------------------------------------ inference path

    _BRANCHES = ("heatmap", "offset", "z", "log_dims", "rot")

    def _stacked(
        self, dtype: torch.dtype, input_shape: tuple[int, ...]
    ) -> tuple[LayerWeights, LayerWeights, list[list[LayerWeights]], list[int]] | None:
        """The head's layers for computing in ``dtype``: the shared convolution; the five branches'
        first convolutions, which all read the shared features, stacked into one (with their
        BatchNorms; with ``head_convs = 1`` these are the output convolutions); each branch's later
        convolutions; and the channels each branch takes of the stacked output. The shared and the
        stacked convolutions are packed for oneDNN and inputs of ``input_shape``. None for layers
        changed since construction (the head then runs its own layers)."""
        branches = [list(getattr(self, name)) for name in self._BRANCHES]
        depths = {len(b) for b in branches}
        if not conv_bn_relu_blocks(self.shared) or len(depths) != 1:
            return None
        if not all(conv_bn_relu_blocks(b, last_conv=True) for b in branches):
            return None
        shared = layer_weights(self.shared[0].weight, None, self.shared[1], dtype, self.shared[0])
        if len(branches[0]) == 1:  # head_convs = 1: the output convolutions read the shared features
            firsts = [layer_weights(b[0].weight, b[0].bias, None, dtype, b[0]) for b in branches]
            rest: list[list[LayerWeights]] = [[] for _ in branches]
        else:
            firsts = [layer_weights(b[0].weight, None, b[1], dtype, b[0]) for b in branches]
            rest = [
                [layer_weights(b[i].weight, None, b[i + 1], dtype, b[i]) for i in range(3, len(b) - 1, 3)]
                + [layer_weights(b[-1].weight, b[-1].bias, None, dtype, b[-1])]
                for b in branches
            ]
        widths = [int(layer.weight.shape[0]) for layer in firsts]
        first = LayerWeights.stack(firsts).packed_for(shared.output_shape(input_shape))
        return shared.packed_for(input_shape), first, rest, widths

    def _forward_stacked(self, bev: torch.Tensor) -> HeadOutput | None:
        """:meth:`forward` with the branches' first convolutions as one (:meth:`_stacked`): one
        64 → 5 × 32 convolution instead of five 64 → 32 ones costs on a CPU little more than one of
        them. Each output channel is the dot product its branch's own convolution computes over the
        same inputs, so the maps are the same bits; the later convolutions run per branch on its
        channels of the stacked output (a grouped convolution is not always the same bits)."""
        dtype = compute_dtype(bev)
        key = (dtype, tuple(bev.shape))
        layers = self._stacked_layers.get(self, lambda: self._stacked(*key), *key)
        if layers is None:
            return None
        shared, first, rest, widths = layers
        x = shared.normalize(shared.conv2d(bev.to(dtype))).relu_()
        x = first.normalize(first.conv2d(x))
        x = x.relu_() if rest[0] else x  # hidden layers (head_convs > 1) end in a ReLU
        maps, start = [], 0
        for width, layers in zip(widths, rest, strict=True):
            y = x[:, start : start + width]
            start += width
            if layers:
                for layer in layers[:-1]:
                    y = layer.normalize(layer.conv2d(y)).relu_()
                y = layers[-1].conv2d(y)
            maps.append(y)
        return HeadOutput(*maps)

    # ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_targets(
        self,
        boxes: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        device: torch.device | str | None = None,
    ) -> CenterTargets:
        """Heatmaps and centre-cell regression targets for a batch.

        Args:
            boxes: B tensors (M_b, 7) float ``[x, y, z, l, w, h, yaw]``, lidar frame, metres.
            labels: B tensors (M_b,) int64 class indices; objects with a label outside [0, K) are ignored.
            device: where the targets go (default the boxes').

        Returns:
            :class:`CenterTargets` on the map of ``map_shape``.
        """
        h, w = self.map_shape
        k = self.num_classes
        device = device if device is not None else (boxes[0].device if len(boxes) else "cpu")
        heatmap = torch.zeros(len(boxes), k, h, w, device=device)
        per_sample = []
        for b, (bx, lb) in enumerate(zip(boxes, labels, strict=True)):
            bx, lb = bx.to(device=device, dtype=torch.float32), lb.to(device=device, dtype=torch.long)
            cells, regression = encode_centerpoint(bx, self.point_cloud_range[:2], self.cell_size)
            ix, iy = cells.unbind(1)
            keep = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (lb >= 0) & (lb < k)
            index = keep.nonzero().squeeze(1)[: self.max_objects]
            bx, lb, ix, iy, regression = bx[index], lb[index], ix[index], iy[index], regression[index]
            dims = bx[:, 3:6].clamp(min=1e-3)
            radius = gaussian_radius(
                dims[:, 0] / self.cell_size[0], dims[:, 1] / self.cell_size[1], self.gaussian_overlap
            )
            radius = radius.floor().clamp(min=self.min_radius).long()
            self._draw_gaussians(heatmap[b], lb, iy, ix, radius)
            cell = iy * w + ix
            per_sample.append((torch.full_like(lb, b), cell, lb, regression))
        if not per_sample:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return CenterTargets(heatmap, empty, empty, empty, torch.zeros(0, 8, device=device))
        batch, cell, lbl, reg = (torch.cat(parts) for parts in zip(*per_sample, strict=True))
        return CenterTargets(heatmap, batch, cell, lbl, reg)

    @staticmethod
    def _draw_gaussians(
        heatmap: torch.Tensor, labels: torch.Tensor, iy: torch.Tensor, ix: torch.Tensor, radius: torch.Tensor
    ) -> None:
        """Max-merge one Gaussian per object into ``heatmap`` (K, H', W') in place, all objects at once."""
        if labels.numel() == 0:
            return
        _, h, w = heatmap.shape
        r_max = int(radius.max())
        d = torch.arange(-r_max, r_max + 1, device=heatmap.device)
        dy, dx = torch.meshgrid(d, d, indexing="ij")
        dy, dx = dy.reshape(1, -1), dx.reshape(1, -1)  # (1, P)
        sigma = (2 * radius + 1).float().unsqueeze(1) / 6  # (M, 1)
        values = torch.exp(-(dx**2 + dy**2).float() / (2 * sigma**2))  # (M, P)
        y, x = iy.unsqueeze(1) + dy, ix.unsqueeze(1) + dx
        r = radius.unsqueeze(1)
        valid = (dy.abs() <= r) & (dx.abs() <= r) & (y >= 0) & (y < h) & (x >= 0) & (x < w)
        valid &= values >= torch.finfo(values.dtype).eps  # CenterNet zeroes the far tail
        flat = (labels.unsqueeze(1) * h + y) * w + x
        heatmap.view(-1).scatter_reduce_(0, flat[valid], values[valid], reduce="amax")

    # ------------------------------------------------------------------------------------------------

    def loss(
        self, output: HeadOutput, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Focal heatmap loss + weighted L1 regression at the centre cells.

        Args:
            output: the head's maps for the batch.
            boxes, labels: the batch's ground truth, as for :meth:`encode_targets`.

        Returns:
            ``"loss"`` (the weighted total, scalar), ``"loss_heatmap"``, ``"loss_regression"`` (unweighted),
            and the unweighted L1 parts ``"loss_offset"``, ``"loss_z"``, ``"loss_dims"``, ``"loss_rot"``.
        """
        targets = self.encode_targets(boxes, labels, output.heatmap.device)
        return self.loss_from_targets(output, targets)

    def loss_from_targets(self, output: HeadOutput, targets: CenterTargets) -> dict[str, torch.Tensor]:
        """:meth:`loss` with the targets already encoded."""
        num = max(targets.num_objects, 1)
        heatmap_loss = focal_loss(output.heatmap, targets.heatmap) / num
        reg = output.regression().flatten(2).transpose(1, 2)[targets.batch, targets.cell].float()  # (M, 8)
        l1 = (reg - targets.regression.float()).abs().sum(0) / num  # (8,)
        weighted = (l1 * self.code_weights).sum()
        return {
            "loss": self.heatmap_weight * heatmap_loss + self.regression_weight * weighted,
            "loss_heatmap": heatmap_loss,
            "loss_regression": weighted,
            "loss_offset": l1[0:2].sum(),
            "loss_z": l1[2],
            "loss_dims": l1[3:6].sum(),
            "loss_rot": l1[6:8].sum(),
        }

    # ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, output: HeadOutput) -> list[Detections]:
        """Boxes from the maps: peaks over the score threshold, then rotated NMS per class.

        Returns:
            B :class:`Detections`, boxes in the lidar frame, by descending score.
        """
        scores = torch.sigmoid(output.heatmap.float())  # (B, K, H', W')
        if self.peak_max_pool:
            scores = scores * (scores == F.max_pool2d(scores, 3, stride=1, padding=1))
        b, k, h, w = scores.shape
        top_scores, top_index = top_k_by_index(scores.flatten(1), min(self.pre_nms_top_k, k * h * w))
        labels, cell = top_index // (h * w), top_index % (h * w)
        reg = output.regression().float().flatten(2)  # (B, 8, H'W')
        reg = torch.gather(reg, 2, cell.unsqueeze(1).expand(-1, reg.shape[1], -1)).transpose(
            1, 2
        )  # (B, T, 8)
        cells = torch.stack([cell % w, cell // w], dim=-1)  # (B, T, 2) [ix, iy]
        boxes = decode_centerpoint(reg, cells, self.point_cloud_range[:2], self.cell_size)
        return [self._select(boxes[i], top_scores[i], labels[i]) for i in range(b)]

    def _select(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> Detections:
        """Threshold, NMS per class and keep the best ``post_nms_top_k`` of one sample's candidates."""
        keep = scores > self.score_threshold
        return select_detections(
            boxes[keep], scores[keep], labels[keep], self.nms_iou_threshold, self.post_nms_top_k
        )


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed (divide by the number of objects yourself).

    Args:
        logits: (B, K, H, W) heatmap logits.
        target: (B, K, H, W) Gaussian heatmap in [0, 1], exactly 1 at object centres.
        alpha, beta: the focusing and penalty-reduction exponents.

    Returns:
        Scalar: ``-Σ_pos (1 - p)^α log p - Σ_neg (1 - y)^β p^α log(1 - p)``, ``p = sigmoid`` clamped to
        [1e-4, 1 - 1e-4].
    """
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    target = target.float()
    pos = target.eq(1).float()
    pos_loss = torch.log(p) * (1 - p) ** alpha * pos
    neg_loss = torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum())
