"""Detection heads."""

from perception.models.heads.center_head import (
    CenterHead,
    CenterTargets,
    Detections,
    HeadOutput,
    gaussian_radius,
)
from perception.models.heads.point_refine import PointRefinementHead

__all__ = [
    "CenterHead",
    "CenterTargets",
    "Detections",
    "HeadOutput",
    "PointRefinementHead",
    "gaussian_radius",
]
