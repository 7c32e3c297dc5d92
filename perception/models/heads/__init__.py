"""Detection heads."""

from perception.models.heads.center_head import (
    CenterHead,
    CenterTargets,
    Detections,
    HeadOutput,
    gaussian_radius,
)

__all__ = ["CenterHead", "CenterTargets", "Detections", "HeadOutput", "gaussian_radius"]
