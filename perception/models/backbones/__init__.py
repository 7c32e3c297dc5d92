"""Backbones: voxel features → dense BEV maps (scatter, sparse 3D), and BEV → BEV (2D)."""

from perception.models.backbones.bev2d import BEVBackbone
from perception.models.backbones.point2point import Point2PointBackbone
from perception.models.backbones.scatter import PillarScatter
from perception.models.backbones.sparse3d import SparseBackbone3d
from perception.models.backbones.sparse_unet import SparseUNet

__all__ = ["BEVBackbone", "PillarScatter", "Point2PointBackbone", "SparseBackbone3d", "SparseUNet"]
