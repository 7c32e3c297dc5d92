"""Detection heads."""

from perception.models.heads.center_head import (
    CenterHead,
    CenterTargets,
    HeadOutput,
    gaussian_radius,
)
from perception.models.heads.point_refine import PointRefinementHead

__all__ = [
    "CenterHead",
    "CenterTargets",
    "HeadOutput",
    "PointRefinementHead",
    "gaussian_radius",
]
