"""``Detections``: the 3D boxes a detector predicts for one sample, what metrics, writers and viewers read."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Detections"]


@dataclass
class Detections:
    """The detections of one sample, by descending score.

    Attributes:
        boxes: (K, 7) float32 ``[x, y, z, l, w, h, yaw]``, lidar frame, metres, yaw in [-π, π).
        scores: (K,) float32 in (0, 1).
        labels: (K,) int64 class index into the head's ``class_names``.

    Not frozen: Lightning moves a step's outputs between devices by rebuilding the dataclass.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
