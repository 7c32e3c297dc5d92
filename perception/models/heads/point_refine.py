"""A second stage that refines first-stage boxes from the raw points inside them (LiDAR R-CNN style).

The first stage (:class:`~perception.models.heads.CenterHead`) sees the scene through 0.16–0.32 m
pillars; what it gets least right is what pillars blur: the box's vertical extent and its exact
length and heading. This stage looks at the points themselves. For every proposal box (a region of
interest, RoI) it

1. **pools points** (:func:`perception.ops.roi_points.roi_points`): up to ``points_per_roi`` points inside the RoI enlarged by
   ``enlarge_ratio`` and ``enlarge_margin``, chosen by a key — random while training, a hash of the
   point's coordinates otherwise, so the choice (and the output) does not depend on the order of the
   points; RoIs with fewer points repeat them, which a max-pool does not notice;
2. **canonicalises** them (:func:`canonical_point_features`): the points in the RoI's frame (origin
   at its centre, x along its heading; :func:`perception.ops.roi_points.points_in_roi_frame`), their offsets to the RoI's six faces (which tell the network
   the proposal's size: LiDAR R-CNN's "boundary offsets"), and the point attributes;
3. runs a **PointNet** (shared MLP, max over the RoI's points, permutation-invariant), adds the RoI's
   class and range, and predicts an **IoU score** and a **box residual** in the RoI's frame
   (:func:`perception.geometry.box_coder.encode_roi_residuals` / ``decode_roi_residuals``):
   ``[dx / d, dy / d, dz / h, log(l' / l), log(w' / w), log(h' / h), Δyaw]`` with ``d = sqrt(l² + w²)``.

Training (:meth:`PointRefinementHead.loss`) samples RoIs from the first stage's decoded detections
(detached: no gradient flows back) and from jittered copies of the ground truth (so the stage
learns from the first step on); each is matched to the same-class ground-truth box of highest 3D IoU.
The IoU score is trained with binary cross-entropy towards ``clamp((IoU - 0.25) / 0.5, 0, 1)`` on every
RoI, the residual with smooth L1 on RoIs of IoU ≥ ``regression_iou``. Heading targets are flip-aware: a
RoI whose heading is more than 90° off its match is pulled towards the match turned by π (the same
box), so the stage fixes the extent and never has to turn a box round.

At inference (:meth:`PointRefinementHead.refine`) each detection's box is replaced by the refined one and
its score by ``sqrt(score × IoU score)`` (CenterPoint's two-stage rescoring), then rotated NMS again.

Boxes are ``[x, y, z, l, w, h, yaw]`` in the lidar frame (metres, z the centre, yaw counter-clockwise
from +x). Everything runs in float32 whatever the surrounding autocast.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from perception.geometry.box_coder import decode_roi_residuals, encode_roi_residuals
from perception.geometry.boxes import wrap_angle
from perception.models.heads.center_head import class_thresholds, select_detections
from perception.models.inference_path import fast_path
from perception.ops.iou3d import boxes_iou3d
from perception.ops.roi_points import points_in_roi_frame, roi_points
from perception.ops.segments import segment_max
from perception.structures import Detections

__all__ = ["PointRefinementHead", "canonical_point_features"]


def canonical_point_features(points: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Point features in each RoI's frame.

    Args:
        points: (R, P, C) float, the RoI's pooled points, x, y, z then C - 3 attributes (lidar frame).
        rois: (R, 7) float boxes.

    Returns:
        (R, P, 9 + C - 3) float32: x, y, z in the RoI frame (origin at its centre, x along its
        heading, metres); the offsets to the faces ``l/2 - x, l/2 + x, w/2 - y, w/2 + y, h/2 - z, h/2 + z``;
        the attributes.
    """
    lx, ly, lz = points_in_roi_frame(points[..., :3].float(), rois.float()).unbind(-1)
    half = rois[:, None, 3:6].float() / 2  # (R, 1, 3)
    faces = [half[..., 0] - lx, half[..., 0] + lx, half[..., 1] - ly, half[..., 1] + ly]
    faces += [half[..., 2] - lz, half[..., 2] + lz]
    return torch.cat([torch.stack([lx, ly, lz, *faces], dim=-1), points[..., 3:].float()], dim=-1)


def _mlp(channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _sample_rows(points: torch.Tensor, batch_index: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Each sample's rows of ``points``, in order: ``points[batch_index == b]`` for every b; slices
    (no copies) where ``batch_index`` is non-decreasing, as a collated batch's is."""
    if len(batch_index) and bool((batch_index[1:] >= batch_index[:-1]).all()):
        bounds = torch.searchsorted(batch_index, torch.arange(batch_size + 1, device=batch_index.device))
        edges = bounds.tolist()
        return [points[a:b] for a, b in itertools.pairwise(edges)]
    return [points[batch_index == b] for b in range(batch_size)]


class PointRefinementHead(nn.Module):
    """PointNet over the points of each proposal: an IoU score and a refined box (module docstring).

    Args:
        num_classes: K, the first stage's classes (a RoI's label is an input).
        point_channels: C of the points (x, y, z + attributes).
        points_per_roi: P.
        mlp_channels: widths of the shared per-point MLP (its max over the RoI is the RoI feature).
        fc_channels: widths of the RoI MLP before the two outputs.
        enlarge_ratio, enlarge_margin: how much larger than the RoI the pooling region is.
        train_proposals: first-stage detections per sample used as RoIs in training (the best-scored).
        gt_jitter_copies: jittered copies of each ground-truth box used as RoIs in training.
        jitter_std: (7,) standard deviations of the jitter, ``[x, y, z]`` and ``[l, w, h]`` as fractions of
            the box's extents, yaw in radians.
        regression_iou: RoIs at or above this 3D IoU with their match learn the residual.
        score_iou_range: (low, high) 3D IoUs mapped to IoU-score targets 0 and 1 (linear between).
        regression_weight, score_weight: loss weights.
        nms_iou_threshold: rotated BEV NMS after refinement, per class or one for all; None for none.
        score_fusion: ``"sqrt"`` (``sqrt(score · IoU score)``), ``"iou"`` (the IoU score alone) or
            ``"first"`` (keep the first stage's score).
    """

    def __init__(
        self,
        num_classes: int,
        point_channels: int = 4,
        points_per_roi: int = 64,
        mlp_channels: Sequence[int] = (64, 128, 256),
        fc_channels: Sequence[int] = (256, 256),
        enlarge_ratio: float = 1.2,
        enlarge_margin: float = 0.2,
        train_proposals: int = 32,
        gt_jitter_copies: int = 2,
        jitter_std: Sequence[float] = (0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.1),
        regression_iou: float = 0.55,
        score_iou_range: Sequence[float] = (0.25, 0.75),
        regression_weight: float = 1.0,
        score_weight: float = 1.0,
        nms_iou_threshold: float | Sequence[float] | None = 0.7,
        score_fusion: str = "sqrt",
    ) -> None:
        super().__init__()
        if score_fusion not in ("sqrt", "iou", "first"):
            raise ValueError(f"score_fusion must be 'sqrt', 'iou' or 'first', got {score_fusion!r}")
        if point_channels < 3 or points_per_roi < 1 or num_classes < 1:
            raise ValueError(
                f"need point_channels >= 3, points_per_roi >= 1, num_classes >= 1; got "
                f"{point_channels}, {points_per_roi}, {num_classes}"
            )
        if len(jitter_std) != 7 or len(score_iou_range) != 2:
            raise ValueError("jitter_std needs 7 values and score_iou_range 2")
        self.num_classes, self.point_channels, self.points_per_roi = (
            num_classes,
            point_channels,
            points_per_roi,
        )
        self.enlarge_ratio, self.enlarge_margin = enlarge_ratio, enlarge_margin
        self.train_proposals, self.gt_jitter_copies = train_proposals, gt_jitter_copies
        self.register_buffer("jitter_std", torch.tensor(jitter_std, dtype=torch.float32), persistent=False)
        self.regression_iou = regression_iou
        self.score_iou_range = (float(score_iou_range[0]), float(score_iou_range[1]))
        self.regression_weight, self.score_weight = regression_weight, score_weight
        self.nms_iou_threshold = class_thresholds(nms_iou_threshold, num_classes)
        self.score_fusion = score_fusion

        features = 9 + point_channels - 3
        self.point_mlp = _mlp([features, *mlp_channels])
        self.roi_mlp = _mlp([mlp_channels[-1] + num_classes + 1, *fc_channels])
        self.score = nn.Linear(fc_channels[-1], 1)
        self.residual = nn.Linear(fc_channels[-1], 7)
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    # -------------------------------------------------------------------------------------- network

    def forward(
        self,
        points: torch.Tensor,
        batch_index: torch.Tensor,
        rois: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        random: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """IoU-score logits and residuals for the RoIs of a batch.

        Args:
            points: (N, C) float, all samples' points (lidar frame); batch_index: (N,) int64 sample of each.
            rois: B tensors (R_b, 7) float boxes; labels: B tensors (R_b,) int64 class indices.
            random: pool points at random (training) rather than by coordinate hash.

        Returns:
            score_logits (R,) and residuals (R, 7) float32, the RoIs of all samples concatenated.
        """
        device = points.device
        with torch.autocast(device_type=device.type, enabled=False):
            pooled, roi_list, label_list = [], [], []
            for b, (roi, label) in enumerate(zip(rois, labels, strict=True)):
                sample_points = points[batch_index == b].float()
                index, count = roi_points(
                    sample_points,
                    roi,
                    self.points_per_roi,
                    self.enlarge_ratio,
                    self.enlarge_margin,
                    random=random,
                )
                feats = canonical_point_features(sample_points[index], roi.float())  # (R, P, F)
                feats = feats * (count > 0)[:, None, None].float()
                pooled.append(feats)
                roi_list.append(roi.float())
                label_list.append(label.long())
            feats = torch.cat(pooled) if pooled else points.new_zeros(0, self.points_per_roi, 9)
            all_rois = torch.cat(roi_list) if roi_list else points.new_zeros(0, 7)
            all_labels = (
                torch.cat(label_list) if label_list else torch.zeros(0, dtype=torch.long, device=device)
            )
            r, p, f = feats.shape
            if r == 0:
                return points.new_zeros(0), points.new_zeros(0, 7)
            x = self.point_mlp(feats.reshape(r * p, f)).reshape(r, p, -1).amax(dim=1)
            return self._outputs(x, all_rois, all_labels)

    def _outputs(
        self, pooled: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoI MLP on (R, C) max-pooled point features with each RoI's class and range: (R,) IoU-score
        logits and (R, 7) residuals."""
        context = torch.cat(
            [
                F.one_hot(labels.clamp(0, self.num_classes - 1), self.num_classes).float(),
                rois[:, :2].norm(dim=1, keepdim=True) / 50.0,
            ],
            dim=1,
        )
        x = self.roi_mlp(torch.cat([pooled, context], dim=1))
        return self.score(x).squeeze(1), self.residual(x)

    # ------------------------------------------------------------------------------ inference path

    def _forward_distinct(
        self,
        points: torch.Tensor,
        batch_index: torch.Tensor,
        rois: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with ``random=False``, each RoI's distinct points through the MLP once.

        A RoI holding fewer than P points repeats them, and a RoI holding none has P rows of zeros;
        the point MLP works row by row and the max over a RoI's rows does not see repeats, so each
        distinct row goes through the MLP once and the max runs over each RoI's ``min(count, P)``
        rows (one row of zeros for an empty RoI).
        """
        device = points.device
        samples = _sample_rows(points, batch_index, len(rois))
        with torch.autocast(device_type=device.type, enabled=False):
            feats, lengths, roi_list, label_list = [], [], [], []
            for sample_points, roi, label in zip(samples, rois, labels, strict=True):
                sample_points = sample_points.float()
                index, count = roi_points(
                    sample_points, roi, self.points_per_roi, self.enlarge_ratio, self.enlarge_margin
                )
                rows = count.clamp(min=1, max=self.points_per_roi)  # (R,) distinct rows of each RoI
                roi_of_row = torch.repeat_interleave(torch.arange(len(roi), device=device), rows)
                slot = (
                    torch.arange(len(roi_of_row), device=device) - (torch.cumsum(rows, 0) - rows)[roi_of_row]
                )
                chosen = sample_points[index[roi_of_row, slot]][:, None]  # (Q, 1, C)
                row_feats = canonical_point_features(chosen, roi.float()[roi_of_row])[:, 0]
                feats.append(row_feats * (count > 0)[roi_of_row, None].float())
                lengths.append(rows)
                roi_list.append(roi.float())
                label_list.append(label.long())
            if not roi_list or sum(len(r) for r in roi_list) == 0:
                return points.new_zeros(0), points.new_zeros(0, 7)
            pooled = segment_max(self.point_mlp(torch.cat(feats)), torch.cat(lengths))
            return self._outputs(pooled, torch.cat(roi_list), torch.cat(label_list))

    # ------------------------------------------------------------------------------------- training

    def _jitter(self, boxes: torch.Tensor) -> torch.Tensor:
        """``gt_jitter_copies`` noisy copies of (M, 7) boxes → (M · copies, 7).

        Training draws the noise from the global random state; evaluation (the validation loss) from a
        generator seeded with 0 for every sample, so a validation loss does not depend on what ran
        before it (nor on how samples are split across processes).
        """
        boxes = boxes.float().repeat(self.gt_jitter_copies, 1)
        generator = None if self.training else torch.Generator(boxes.device).manual_seed(0)
        noise = torch.randn(boxes.shape, generator=generator, device=boxes.device, dtype=boxes.dtype)
        noise = noise * self.jitter_std.to(boxes.device)
        out = boxes.clone()
        out[:, 0:3] += noise[:, 0:3] * boxes[:, 3:6]
        out[:, 3:6] *= noise[:, 3:6].exp()
        out[:, 6] = wrap_angle(boxes[:, 6] + noise[:, 6])
        return out

    @torch.no_grad()
    def sample_rois(
        self,
        detections: Sequence[Detections],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Training RoIs of each sample with their match: (rois, labels, IoU, matched box) per sample.

        RoIs are the best ``train_proposals`` detections and ``gt_jitter_copies`` jittered copies of
        each ground-truth box of a training class; each is matched to the same-class ground-truth
        box of highest 3D IoU (IoU 0 and a copy of the RoI when there is none).
        """
        rois, labels, ious, matched = [], [], [], []
        for det, gt, gl in zip(detections, gt_boxes, gt_labels, strict=True):
            gt, gl = gt.float(), gl.long()
            keep = (gl >= 0) & (gl < self.num_classes)
            gt, gl = gt[keep], gl[keep]
            roi = torch.cat([det.boxes[: self.train_proposals].float().to(gt.device), self._jitter(gt)])
            label = torch.cat(
                [det.labels[: self.train_proposals].long().to(gt.device), gl.repeat(self.gt_jitter_copies)]
            )
            iou, box = self._match(roi, label, gt, gl)
            rois.append(roi)
            labels.append(label)
            ious.append(iou)
            matched.append(box)
        return rois, labels, ious, matched

    @staticmethod
    def _match(
        roi: torch.Tensor, label: torch.Tensor, gt: torch.Tensor, gt_label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(R,) best same-class 3D IoU and (R, 7) the matched box (the RoI itself where none)."""
        if roi.shape[0] == 0 or gt.shape[0] == 0:
            return roi.new_zeros(roi.shape[0]), roi.clone()
        iou = boxes_iou3d(roi, gt)
        iou = torch.where(label[:, None] == gt_label[None, :], iou, torch.zeros_like(iou))
        best, index = iou.max(dim=1)
        box = torch.where(best[:, None] > 0, gt[index], roi)
        return best, box

    def loss(
        self,
        points: torch.Tensor,
        batch_index: torch.Tensor,
        detections: Sequence[Detections],
        gt_boxes: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Score (BCE) and residual (smooth L1) losses on the sampled RoIs of a batch.

        Args:
            points, batch_index: the batch's points (N, C) and their sample (N,).
            detections: the first stage's detections per sample (used detached).
            gt_boxes, gt_labels: per sample (M_b, 7) boxes and (M_b,) class indices.

        Returns:
            ``"loss_refine"`` (weighted sum), ``"loss_refine_score"``, ``"loss_refine_box"``, and
            ``"refine_fg"`` (the number of RoIs that learn a residual, a float tensor).
        """
        rois, labels, ious, matched = self.sample_rois(detections, gt_boxes, gt_labels)
        # training pools RoI points at random; evaluation by the coordinate hash inference uses, so a
        # validation loss is the same in any process and whatever ran before it
        logits, residuals = self(points, batch_index, rois, labels, random=self.training)
        if logits.numel() == 0:
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return {
                "loss_refine": zero,
                "loss_refine_score": zero,
                "loss_refine_box": zero,
                "refine_fg": zero.detach(),
            }
        iou, box, roi = torch.cat(ious), torch.cat(matched), torch.cat(rois)
        low, high = self.score_iou_range
        score_target = ((iou - low) / (high - low)).clamp(0, 1)
        score_loss = F.binary_cross_entropy_with_logits(logits, score_target)
        fg = iou >= self.regression_iou
        if fg.any():
            target = encode_roi_residuals(roi[fg].float(), box[fg].float())
            box_loss = F.smooth_l1_loss(residuals[fg], target, beta=1.0 / 9.0, reduction="sum") / fg.sum()
        else:
            box_loss = residuals.sum() * 0.0
        return {
            "loss_refine": self.score_weight * score_loss + self.regression_weight * box_loss,
            "loss_refine_score": score_loss.detach(),
            "loss_refine_box": box_loss.detach(),
            "refine_fg": fg.sum().float(),
        }

    # ------------------------------------------------------------------------------------ inference

    @torch.no_grad()
    def refine(
        self, points: torch.Tensor, batch_index: torch.Tensor, detections: Sequence[Detections]
    ) -> list[Detections]:
        """Refined boxes and fused scores for each sample's detections, NMS'd again, by descending score."""
        rois = [d.boxes.float() for d in detections]
        labels = [d.labels.long() for d in detections]
        if fast_path(self):
            logits, residuals = self._forward_distinct(points, batch_index, rois, labels)
        else:
            logits, residuals = self(points, batch_index, rois, labels, random=False)
        out, start = [], 0
        for det in detections:
            n = len(det)
            if n == 0:
                out.append(det)
                continue
            boxes = decode_roi_residuals(det.boxes.float(), residuals[start : start + n].float())
            iou_score = torch.sigmoid(logits[start : start + n])
            start += n
            if self.score_fusion == "sqrt":
                scores = torch.sqrt(det.scores.float().clamp(min=0) * iou_score)
            elif self.score_fusion == "iou":
                scores = iou_score
            else:
                scores = det.scores.float()
            out.append(select_detections(boxes, scores, det.labels, self.nms_iou_threshold))
        return out
