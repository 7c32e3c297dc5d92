"""A 3D detector composed from parts: encoder → (3D backbone or scatter) → 2D backbone → head.

Each part is a plain ``nn.Module`` built by LightningCLI from ``class_path`` / ``init_args``; the parts
talk through typed values only:

``Batch`` (points (N, C), batch_index (N,)) ──encoder──▶ :class:`VoxelFeatures` ──backbone_3d──▶
BEV map (B, C', H, W) ──backbone_2d──▶ (B, C'', H', W') ──head──▶ :class:`HeadOutput`
──decode──▶ :class:`Detections` ──refiner (optional)──▶ refined :class:`Detections`.

The optional second stage (:class:`~perception.models.heads.PointRefinementHead`) refines the head's
boxes from the raw points inside them; it trains on the head's detached detections, so the first
stage's losses and gradients are the same with or without it.

The detector owns no optimisers (the task does); it forwards ``loss`` and ``predict`` to the heads
with the batch's ground truth.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from perception.models.backbones.scatter import PillarScatter
from perception.models.heads.center_head import CenterHead, HeadOutput
from perception.models.heads.point_refine import PointRefinementHead
from perception.structures import Batch, Detections

__all__ = ["Detector"]


class Detector(nn.Module):
    """encoder → backbone_3d → backbone_2d → head.

    Args:
        encoder: ``(points (N, C), batch_index (N,), batch_size) -> VoxelFeatures``
            (:class:`~perception.models.encoders.PointNetEncoder`, :class:`~perception.models.encoders.PVTEncoder`).
        backbone_3d: ``VoxelFeatures -> (B, C', H, W)`` BEV map: a
            :class:`~perception.models.backbones.SparseBackbone3d`, or a
            :class:`~perception.models.backbones.PillarScatter`; None means a ``PillarScatter``.
        backbone_2d: ``(B, C', H, W) -> (B, C'', H', W')``, e.g. :class:`~perception.models.backbones.BEVBackbone`.
        head: a :class:`~perception.models.heads.CenterHead` whose ``out_stride`` is the product of the
            backbones' strides, ``in_channels`` = C''.
        refiner: an optional second stage refining the head's boxes from the points in them.
    """

    def __init__(
        self,
        encoder: nn.Module,
        backbone_3d: nn.Module | None,
        backbone_2d: nn.Module,
        head: CenterHead,
        refiner: PointRefinementHead | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.backbone_3d = backbone_3d if backbone_3d is not None else PillarScatter()
        self.backbone_2d = backbone_2d
        self.head = head
        self.refiner = refiner
        for name in ("point_cloud_range", "voxel_size"):
            ours, heads = getattr(encoder, name, None), getattr(head, name, None)
            if ours is None or heads is None:
                continue
            if len(ours) != len(heads) or not np.allclose(ours, heads, rtol=0, atol=1e-6):
                raise ValueError(
                    f"the encoder's {name} {list(ours)} (model.model.init_args.encoder.init_args.{name}) "
                    f"differs from the head's {list(heads)} (model.model.init_args.head.init_args.{name})"
                )
        if refiner is not None and refiner.num_classes != head.num_classes:
            raise ValueError(
                f"the refiner's {refiner.num_classes} classes (model.model.init_args.refiner.init_args.num_classes) "
                f"differ from the head's {head.num_classes} {head.class_names} "
                "(model.model.init_args.head.init_args.class_names)"
            )

    def forward(self, batch: Batch) -> HeadOutput:
        """The head's dense maps for ``batch`` (on the model's device)."""
        voxels = self.encoder(batch.points, batch.batch_index, batch.batch_size)
        return self.head(self.backbone_2d(self.backbone_3d(voxels)))

    def loss(self, output: HeadOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """The heads' losses against ``batch.boxes`` / ``batch.labels``; ``"loss"`` is the total to minimise.

        With a refiner, its RoIs come from the head's decoded detections (no gradient to the head)
        and its ``"loss_refine"`` is added to ``"loss"``.
        """
        losses = self.head.loss(output, batch.boxes, batch.labels)
        if self.refiner is not None:
            refine = self.refiner.loss(
                batch.points, batch.batch_index, self.head.decode(output), batch.boxes, batch.labels
            )
            losses = {**losses, **refine, "loss": losses["loss"] + refine["loss_refine"]}
        return losses

    def predict(self, output: HeadOutput, batch: Batch) -> list[Detections]:
        """One :class:`Detections` per sample of ``batch`` (boxes in the lidar frame)."""
        detections = self.head.decode(output)
        if len(detections) != batch.batch_size:
            raise ValueError(f"output has {len(detections)} samples but the batch {batch.batch_size}")
        if self.refiner is not None:
            detections = self.refiner.refine(batch.points, batch.batch_index, detections)
        return detections
