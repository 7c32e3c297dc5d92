"""Models: plain ``nn.Module`` parts (encoders, backbones, heads) and their composition, the detector."""

from perception.models.backbones import (
    BEVBackbone,
    PillarScatter,
    Point2PointBackbone,
    SparseBackbone3d,
    SparseUNet,
)
from perception.models.detector import Detector
from perception.models.encoders import PointNetEncoder, PVTEncoder
from perception.models.heads import CenterHead, HeadOutput, PointRefinementHead

__all__ = [
    "BEVBackbone",
    "CenterHead",
    "Detector",
    "HeadOutput",
    "PVTEncoder",
    "PillarScatter",
    "Point2PointBackbone",
    "PointNetEncoder",
    "PointRefinementHead",
    "SparseBackbone3d",
    "SparseUNet",
]
