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
from perception.models.pointnet import (
    PointNetClassifier,
    PointNetFeatures,
    PointNetOutput,
    PointNetPartSegmenter,
    TNet,
)

__all__ = [
    "BEVBackbone",
    "CenterHead",
    "Detector",
    "HeadOutput",
    "PVTEncoder",
    "PillarScatter",
    "Point2PointBackbone",
    "PointNetClassifier",
    "PointNetEncoder",
    "PointNetFeatures",
    "PointNetOutput",
    "PointNetPartSegmenter",
    "PointRefinementHead",
    "SparseBackbone3d",
    "SparseUNet",
    "TNet",
]
