"""Shape transforms: small callables ``PointSet, rng -> PointSet`` that normalise, resample and augment one
shape.

They follow :mod:`perception.data.transforms`' convention (called as ``transform(point_set, rng)`` with an
explicit :class:`numpy.random.Generator`, returning a new set, the input never edited) and subclass its
:class:`~perception.data.transforms.Transform`, so :class:`~perception.data.transforms.Compose` and
:class:`~perception.data.datasets.EpochDataset` take them as they are and a LightningCLI config builds
them from ``class_path`` / ``init_args``.

Points are ``(N, C)`` float32 in the shape's frame (z up): x, y, z, then, where C ≥ 6, the unit normals
nx, ny, nz in columns 3-5 (transforms that move points move the normals consistently; further columns
are kept as they are). Every transform keeps float32 and keeps ``part_labels`` aligned with the points.
"""

from __future__ import annotations

import abc
import math

import numpy as np
from numpy.typing import NDArray

from perception.data.transforms import Transform
from perception.structures.shapes import PointSet

__all__ = [
    "NormalizeUnitSphere",
    "RandomJitter",
    "RandomPointDropout",
    "RandomRotationZ",
    "RandomScale",
    "ResamplePoints",
    "ShapeTransform",
    "ShufflePoints",
    "rotate_z",
]


class ShapeTransform(Transform):
    """A ``PointSet -> PointSet`` step; randomness only from the generator passed in."""

    @abc.abstractmethod
    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:  # type: ignore[override]
        """A new point set (``sample`` itself is left unchanged)."""


def _has_normals(points: NDArray) -> bool:
    return points.shape[1] >= 6


def _unit(normals: NDArray) -> NDArray[np.float32]:
    """(N, 3) rows scaled to unit length (zero rows stay zero)."""
    length = np.sqrt((normals * normals).sum(axis=1, keepdims=True))
    return (normals / np.where(length > 0, length, 1)).astype(np.float32)


class NormalizeUnitSphere(ShapeTransform):
    """Centre the shape and scale it so that its farthest point is at distance 1 (normals unchanged).

    Args:
        center: ``"mean"`` (the points' centroid, PointNet's) or ``"bbox"`` (the bounding box's centre).
    """

    def __init__(self, center: str = "mean") -> None:
        if center not in ("mean", "bbox"):
            raise ValueError(f"center must be 'mean' or 'bbox', got {center!r}")
        self.center = center

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        xyz = sample.points[:, :3].astype(np.float64)
        if len(xyz) == 0:
            return sample
        if self.center == "mean":
            origin = xyz.mean(axis=0)
        else:
            origin = (xyz.min(axis=0) + xyz.max(axis=0)) / 2
        centred = xyz - origin
        radius = float(np.sqrt((centred * centred).sum(axis=1).max()))
        points = sample.points.copy()
        points[:, :3] = centred / radius if radius > 0 else centred
        return sample.replace(points=points)


class ResamplePoints(ShapeTransform):
    """Exactly ``num_points`` points, in random order (part labels follow their points).

    With at least ``num_points`` points, a random subset drawn without replacement; with fewer, every
    point once plus ``num_points - N`` draws with replacement (so no point is lost, and some repeat).

    Raises:
        ValueError: the set has no points.
    """

    def __init__(self, num_points: int) -> None:
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.num_points = int(num_points)

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        n = len(sample.points)
        if n == 0:
            raise ValueError(f"shape {sample.shape_id}: no points to resample")
        if n >= self.num_points:
            index = rng.choice(n, self.num_points, replace=False)
        else:
            index = rng.permutation(np.concatenate([np.arange(n), rng.integers(0, n, self.num_points - n)]))
        return sample.select_points(index)


def rotate_z(sample: PointSet, angle: float) -> PointSet:
    """``sample`` rotated counter-clockwise by ``angle`` radians about z (points and normals)."""
    c, s = math.cos(angle), math.sin(angle)
    points = sample.points.copy()
    columns = (0, 3) if _has_normals(points) else (0,)
    for k in columns:
        x, y = sample.points[:, k].astype(np.float64), sample.points[:, k + 1].astype(np.float64)
        points[:, k] = c * x - s * y
        points[:, k + 1] = s * x + c * y
    return sample.replace(points=points)


class RandomRotationZ(ShapeTransform):
    """Rotate about the up axis (z) by an angle uniform in [-``max_angle``, ``max_angle``] radians."""

    def __init__(self, max_angle: float = math.pi) -> None:
        if max_angle < 0:
            raise ValueError(f"max_angle must be >= 0, got {max_angle}")
        self.max_angle = float(max_angle)

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        return rotate_z(sample, float(rng.uniform(-self.max_angle, self.max_angle)))


class RandomScale(ShapeTransform):
    """Scale by factors uniform in [``low``, ``high``]: one per axis (``anisotropic``) or one for all.

    Normals are transformed by the inverse transpose of the scaling (divided by the factors) and
    renormalised, so they stay perpendicular to the scaled surface.
    """

    def __init__(self, low: float = 0.8, high: float = 1.25, anisotropic: bool = True) -> None:
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got {low}, {high}")
        self.low, self.high, self.anisotropic = float(low), float(high), bool(anisotropic)

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        factors = rng.uniform(self.low, self.high, 3 if self.anisotropic else 1) * np.ones(3)
        points = sample.points.copy()
        points[:, :3] = sample.points[:, :3] * factors.astype(np.float32)
        if _has_normals(points) and self.anisotropic:
            points[:, 3:6] = _unit(sample.points[:, 3:6] / factors.astype(np.float32))
        return sample.replace(points=points)


class RandomJitter(ShapeTransform):
    """Move every point by its own offset from N(0, ``sigma``²) per axis, clipped to ±``clip`` (x, y, z
    only; normals and labels stay)."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        if sigma < 0 or clip < 0:
            raise ValueError(f"sigma and clip must be >= 0, got {sigma}, {clip}")
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        noise = np.clip(rng.normal(0.0, self.sigma, (len(sample.points), 3)), -self.clip, self.clip)
        points = sample.points.copy()
        points[:, :3] = sample.points[:, :3] + noise.astype(np.float32)
        return sample.replace(points=points)


class RandomPointDropout(ShapeTransform):
    """PointNet++'s random input dropout: draw a ratio uniform in [0, ``max_ratio``], then replace each
    point with that probability by the first point (its part label too), so N stays the same."""

    def __init__(self, max_ratio: float = 0.875) -> None:
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = float(max_ratio)

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        n = len(sample.points)
        ratio = rng.uniform(0.0, self.max_ratio)
        index = np.arange(n)
        index[rng.random(n) <= ratio] = 0
        return sample.select_points(index)


class ShufflePoints(ShapeTransform):
    """Permute the points at random (with their part labels)."""

    def __call__(self, sample: PointSet, rng: np.random.Generator) -> PointSet:
        return sample.select_points(rng.permutation(len(sample.points)))
