"""Point-to-voxel encoders: points (N, C) with a batch index → one feature per non-empty voxel."""

from perception.models.encoders.grouping import PointGroups, group_points
from perception.models.encoders.pointnet import PointNetEncoder
from perception.models.encoders.pvt import PVTEncoder

__all__ = ["PVTEncoder", "PointGroups", "PointNetEncoder", "group_points"]
