"""Ray-castable primitives (boxes, ellipsoids, cylinders) packed into flat arrays.

A primitive is one row of ``params`` (P, 8) float64 plus per-row attributes:

- ``BOX``: centre x, y, z, cos yaw, sin yaw, half extents hx, hy, hz (rotated about +z only).
- ``ELLIPSOID``: centre x, y, z, cos yaw, sin yaw, radii rx, ry, rz (rotated about +z only).
- ``CYLINDER``: centre x, y, z, unit axis ax, ay, az, half length, radius (any axis, flat caps).

Each row also has a reflectance in [0, 1], a retro-reflective flag (sign plates: bright and little
dependence on the incidence angle), a pass-through probability (vegetation lets some rays through)
and a semantic class (:data:`SEMANTIC_CLASSES`). Shapes are built in an object's local frame (x
forward, y left, z up, ground contact at z = 0) and moved with :func:`transform_shapes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BOX",
    "CYLINDER",
    "ELLIPSOID",
    "SEMANTIC_CLASSES",
    "ShapeBuilder",
    "Shapes",
    "shapes_aabb",
    "transform_shapes",
]

BOX, ELLIPSOID, CYLINDER = 0, 1, 2

SEMANTIC_CLASSES: tuple[str, ...] = (
    "unlabelled",
    "road",
    "sidewalk",
    "terrain",
    "building",
    "pole",
    "sign",
    "vegetation",
    "Car",
    "Van",
    "Truck",
    "Pedestrian",
    "Cyclist",
    "trunk",
    "road paint",
)
"""Per-point semantic classes (index = id): stuff, the five KITTI object types (8-12), then classes
added later at the end so that earlier ids keep their meaning (tree trunks, lane markings).
:mod:`.semantic_writer` maps them to SemanticKITTI's raw ids."""
SEM = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}


@dataclass
class Shapes:
    """A set of primitives (see the module docstring for the layout of ``params``)."""

    params: NDArray[np.float64]  # (P, 8)
    kind: NDArray[np.int8]  # (P,)
    reflectance: NDArray[np.float32]  # (P,)
    retro: NDArray[np.bool_]  # (P,)
    pass_through: NDArray[np.float32]  # (P,)
    semantic: NDArray[np.uint8]  # (P,)

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def concatenate(items: list[Shapes]) -> Shapes:
        if not items:
            return ShapeBuilder().build()
        return Shapes(
            params=np.concatenate([s.params for s in items]),
            kind=np.concatenate([s.kind for s in items]),
            reflectance=np.concatenate([s.reflectance for s in items]),
            retro=np.concatenate([s.retro for s in items]),
            pass_through=np.concatenate([s.pass_through for s in items]),
            semantic=np.concatenate([s.semantic for s in items]),
        )


class ShapeBuilder:
    """Collects primitives one at a time, then :meth:`build` packs them into :class:`Shapes`."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, tuple[float, ...], float, bool, float, int]] = []

    def box(
        self,
        center,
        size,
        yaw: float = 0.0,
        reflectance: float = 0.3,
        semantic: str = "unlabelled",
        retro: bool = False,
        pass_through: float = 0.0,
    ) -> ShapeBuilder:
        """A box of full ``size`` (dx, dy, dz) centred at ``center``, rotated by ``yaw`` about +z."""
        hx, hy, hz = (0.5 * float(v) for v in size)
        row = (*map(float, center), math.cos(yaw), math.sin(yaw), hx, hy, hz)
        self._rows.append((BOX, row, reflectance, retro, pass_through, SEM[semantic]))
        return self

    def box_span(self, lo, hi, **kw) -> ShapeBuilder:
        """An axis-aligned box from corner ``lo`` to corner ``hi``."""
        center = tuple((float(a) + float(b)) / 2 for a, b in zip(lo, hi, strict=True))
        size = tuple(float(b) - float(a) for a, b in zip(lo, hi, strict=True))
        return self.box(center, size, **kw)

    def ellipsoid(
        self,
        center,
        radii,
        yaw: float = 0.0,
        reflectance: float = 0.3,
        semantic: str = "unlabelled",
        pass_through: float = 0.0,
    ) -> ShapeBuilder:
        row = (*map(float, center), math.cos(yaw), math.sin(yaw), *map(float, radii))
        self._rows.append((ELLIPSOID, row, reflectance, False, pass_through, SEM[semantic]))
        return self

    def cylinder(
        self,
        p0,
        p1,
        radius: float,
        reflectance: float = 0.3,
        semantic: str = "unlabelled",
        retro: bool = False,
    ) -> ShapeBuilder:
        """A solid cylinder whose axis runs from ``p0`` to ``p1`` (flat caps)."""
        ax, ay, az = (float(p1[i]) - float(p0[i]) for i in range(3))
        length = math.sqrt(ax * ax + ay * ay + az * az)
        if length < 1e-9:
            raise ValueError("cylinder with zero length")
        row = (
            (float(p0[0]) + float(p1[0])) / 2,
            (float(p0[1]) + float(p1[1])) / 2,
            (float(p0[2]) + float(p1[2])) / 2,
            ax / length,
            ay / length,
            az / length,
            0.5 * length,
            float(radius),
        )
        self._rows.append((CYLINDER, row, reflectance, retro, 0.0, SEM[semantic]))
        return self

    def build(self) -> Shapes:
        n = len(self._rows)
        return Shapes(
            params=np.array([r[1] for r in self._rows], dtype=np.float64).reshape(n, 8),
            kind=np.array([r[0] for r in self._rows], dtype=np.int8),
            reflectance=np.array([r[2] for r in self._rows], dtype=np.float32),
            retro=np.array([r[3] for r in self._rows], dtype=np.bool_),
            pass_through=np.array([r[4] for r in self._rows], dtype=np.float32),
            semantic=np.array([r[5] for r in self._rows], dtype=np.uint8),
        )


def shapes_aabb(params: NDArray[np.float64], kind: NDArray[np.int8]) -> tuple[NDArray, NDArray]:
    """Axis-aligned bounds of each primitive: ``(lo, hi)``, each (P, 3)."""
    p = params
    ext = np.zeros((len(p), 3))
    c, s = np.abs(p[:, 3]), np.abs(p[:, 4])
    box = kind == BOX
    ext[box, 0] = c[box] * p[box, 5] + s[box] * p[box, 6]
    ext[box, 1] = s[box] * p[box, 5] + c[box] * p[box, 6]
    ext[box, 2] = p[box, 7]
    ell = kind == ELLIPSOID
    ext[ell, 0] = np.hypot(c[ell] * p[ell, 5], s[ell] * p[ell, 6])
    ext[ell, 1] = np.hypot(s[ell] * p[ell, 5], c[ell] * p[ell, 6])
    ext[ell, 2] = p[ell, 7]
    cyl = kind == CYLINDER
    axis = p[cyl, 3:6]
    ext[cyl] = np.abs(axis) * p[cyl, 6:7] + p[cyl, 7:8] * np.sqrt(np.clip(1.0 - axis**2, 0.0, None))
    return p[:, :3] - ext, p[:, :3] + ext


def transform_shapes(
    params: NDArray[np.float64], kind: NDArray[np.int8], yaw: NDArray, translation: NDArray
) -> NDArray[np.float64]:
    """Rotate primitives about +z by ``yaw`` (P,) then translate by ``translation`` (P, 3)."""
    out = params.copy()
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = params[:, 0], params[:, 1]
    out[:, 0] = c * x - s * y + translation[:, 0]
    out[:, 1] = s * x + c * y + translation[:, 1]
    out[:, 2] = params[:, 2] + translation[:, 2]
    yawed = kind != CYLINDER
    c0, s0 = params[:, 3], params[:, 4]
    out[yawed, 3] = (c0 * c - s0 * s)[yawed]
    out[yawed, 4] = (s0 * c + c0 * s)[yawed]
    cyl = ~yawed
    out[cyl, 3] = (c * c0 - s * s0)[cyl]
    out[cyl, 4] = (s * c0 + c * s0)[cyl]
    return out
