"""Synthetic shapes generated on the fly: a ModelNet-like classification set and a ShapeNet-part-like
part-segmentation set, with no files.

Every shape is built from primitive triangle meshes (trimesh builds a few unit primitives once per
process; boxes, cylinders, frustums, cones, capsules, ellipsoids, tori and tubes are placed, stretched
and deformed from them with NumPy) and sampled by :func:`~perception.data.shapes.mesh.sample_surface`,
one call per part with a point count drawn in proportion to the part's area, so the density is uniform
over the whole shape and every point knows the part it came from.

An instance draws its proportions (a table's top, leg section and height; a mug's wall and handle), an
anisotropic scale in [0.8, 1.25] per axis and a rotation about the up axis (z), then a partial view
(:func:`occlusion_mask`: a half-space cut and thinned back faces, keeping at least 70 % of the points),
is resampled to ``num_points``, jittered, and centred at its mean and scaled so that its farthest point
is at distance 1. Shape ``index`` of a split is generated from
``np.random.default_rng([SALT, seed, split code, index])`` alone (the class is ``index % K``), so a
(seed, split, index) triple always gives the same points, splits never share a shape, and a small set
is a prefix of a large one. One shape of 1,024 points takes about a millisecond on one core.

Classes (:data:`SYNTHETIC_SHAPE_CLASSES`) come in look-alike groups, so that telling them apart takes
the shape and not one statistic: box / table / stool, cylinder / capsule / bottle / rocket, cone / lamp,
chair / table, ellipsoid / capsule, torus / mug.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from perception.data.datasets import EpochDataset
from perception.data.shapes.mesh import sample_surface
from perception.data.transforms import Transform
from perception.structures.shapes import PartTaxonomy, PointSet

__all__ = [
    "SPLITS",
    "SYNTHETIC_PARTS",
    "SYNTHETIC_PART_NAMES",
    "SYNTHETIC_SHAPE_CLASSES",
    "SyntheticPartShapes",
    "SyntheticShapes",
    "generate_shape",
    "occlusion_mask",
]

SALT = 0x5A4E  # keeps the shape generators' streams apart from EpochDataset's [seed, epoch, index]
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""The splits and their codes in the generator's seed (disjoint streams)."""

DEFAULT_SIZES: dict[str, int] = {"train": 4000, "val": 800, "test": 800}
"""Shapes per split when ``num_shapes`` is not given: sized for training on a CPU in minutes."""

Mesh = tuple[NDArray[np.float64], NDArray[np.int64]]
"""(V, 3) float64 vertices and (F, 3) int64 triangles, outward-facing (right-hand rule)."""

Part = tuple[int, Mesh]
"""A mesh and the category-local index of the part it belongs to."""


# --------------------------------------------------------------------------------------------------
# primitives: unit meshes built once per process by trimesh, placed and deformed with NumPy


@functools.cache
def _unit(name: str) -> Mesh:
    """A unit primitive: ``box`` (edge 1, centred), ``cylinder`` (radius 1, z in [-0.5, 0.5]), ``cone``
    (radius 1, base at z = 0, apex at z = 1), ``capsule`` (radius 1, hemispheres centred at z = ±0.5),
    ``sphere`` (radius 1), ``torus`` (major radius 1, minor 0.25, around z), ``tube`` (annulus of radii
    0.5 and 1, z in [-0.5, 0.5])."""
    from trimesh import creation  # only here: the primitives are built once per process

    mesh = {
        "box": lambda: creation.box(),
        "cylinder": lambda: creation.cylinder(radius=1.0, height=1.0, sections=24),
        "cone": lambda: creation.cone(radius=1.0, height=1.0, sections=24),
        "capsule": lambda: creation.capsule(height=1.0, radius=1.0, count=[12, 12]),
        "sphere": lambda: creation.icosphere(subdivisions=2),
        "torus": lambda: creation.torus(1.0, 0.25, major_sections=24, minor_sections=10),
        "tube": lambda: creation.annulus(r_min=0.5, r_max=1.0, height=1.0, sections=24),
    }[name]()
    vertices = np.ascontiguousarray(mesh.vertices, np.float64)
    faces = np.ascontiguousarray(mesh.faces, np.int64)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces


@functools.cache
def _unit_normals(name: str) -> NDArray[np.float64]:
    """(F, 3) unit face normals of :func:`_unit`'s mesh ``name`` (to drop caps and hidden faces)."""
    v, f = _unit(name)
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _rotation(axis: str, angle: float) -> NDArray[np.float64]:
    """(3, 3) counter-clockwise rotation by ``angle`` radians about ``axis`` (x, y or z)."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_TO_AXIS = {"z": np.eye(3), "x": _rotation("y", math.pi / 2), "y": _rotation("x", -math.pi / 2)}
"""Rotations taking a primitive's z axis to x, y or z."""


def _move(vertices: NDArray, rotation: NDArray | None, center: Sequence[float]) -> NDArray[np.float64]:
    """``vertices`` rotated about the origin, then translated to ``center``. (An einsum, not ``@``: a
    BLAS call costs more than the product for a few hundred vertices on a busy machine.)"""
    v = vertices if rotation is None else np.einsum("ij,nj->ni", rotation, vertices)
    return v + np.asarray(center, np.float64)


def _keep_faces(name: str, drop: Sequence[str]) -> NDArray[np.int64]:
    """The faces of unit primitive ``name`` less those facing ``drop`` (``"top"``: +z, ``"bottom"``: -z,
    ``"caps"``: both) — hidden faces that would put points inside a shape."""
    faces = _unit(name)[1]
    if not drop:
        return faces
    nz = _unit_normals(name)[:, 2]
    keep = np.ones(len(faces), bool)
    if "top" in drop or "caps" in drop:
        keep &= nz < 0.9
    if "bottom" in drop or "caps" in drop:
        keep &= nz > -0.9
    return faces[keep]


def box(
    size: Sequence[float], center: Sequence[float], rotation: NDArray | None = None, drop: Sequence[str] = ()
) -> Mesh:
    """A box of edge lengths ``size`` (x, y, z) centred at ``center``, rotated about its centre."""
    v = _unit("box")[0] * np.asarray(size, np.float64)
    return _move(v, rotation, center), _keep_faces("box", drop)


def cylinder(
    radius: float,
    height: float,
    center: Sequence[float],
    radius_top: float | None = None,
    axis: str = "z",
    drop: Sequence[str] = (),
    rotation: NDArray | None = None,
) -> Mesh:
    """A cylinder (a frustum when ``radius_top`` differs) of ``height`` along ``axis``, centred at
    ``center``; ``drop`` removes caps (``"top"``, ``"bottom"``, ``"caps"``) for open tubes and joins."""
    v = _unit("cylinder")[0].copy()
    top = radius if radius_top is None else radius_top
    v[:, :2] *= (radius + (top - radius) * (v[:, 2:] + 0.5)).clip(1e-6)
    v[:, 2] *= height
    rot = _TO_AXIS[axis] if rotation is None else rotation
    return _move(v, rot, center), _keep_faces("cylinder", drop)


def segment(p0: Sequence[float], p1: Sequence[float], radius: float, drop: Sequence[str] = ()) -> Mesh:
    """A cylinder of ``radius`` from point ``p0`` to point ``p1`` (a leg, a strut)."""
    a, b = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    d = b - a
    length = float(np.linalg.norm(d))
    return cylinder(radius, length, (a + b) / 2, drop=drop, rotation=_rotation_from_z(d / length))


def _rotation_from_z(d: NDArray[np.float64]) -> NDArray[np.float64]:
    """(3, 3) the rotation taking +z to the unit vector ``d`` (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, d)
    s, c = float(np.linalg.norm(axis)), float(d[2])
    if s < 1e-9:
        return np.eye(3) if c > 0 else _rotation("x", math.pi)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def cone(radius: float, height: float, base_center: Sequence[float], drop: Sequence[str] = ()) -> Mesh:
    """A cone with its base disc (radius ``radius``) at ``base_center`` and its apex ``height`` above."""
    v = _unit("cone")[0] * np.array([radius, radius, height])
    return _move(v, None, base_center), _keep_faces("cone", drop)


def capsule(radius: float, length: float, center: Sequence[float], axis: str = "z") -> Mesh:
    """A capsule: a cylinder of ``radius`` and ``length`` along ``axis`` capped by hemispheres."""
    v = _unit("capsule")[0].copy()
    z = v[:, 2]
    v[:, 2] = np.sign(z) * ((np.abs(z) - 0.5) * radius + length / 2)
    v[:, :2] *= radius
    return _move(v, _TO_AXIS[axis], center), _unit("capsule")[1]


def ellipsoid(radii: Sequence[float], center: Sequence[float]) -> Mesh:
    """An ellipsoid of semi-axes ``radii`` (x, y, z) centred at ``center``."""
    return _move(_unit("sphere")[0] * np.asarray(radii, np.float64), None, center), _unit("sphere")[1]


def torus(major: float, minor: float, center: Sequence[float], axis: str = "z", half: bool = False) -> Mesh:
    """A torus around ``axis`` (ring radius ``major``, tube radius ``minor``); ``half``: only the half
    on the +x side (before the axis turn for ``axis="z"``; a mug's handle with ``axis="y"``)."""
    v = _unit("torus")[0]
    ring = v.copy()
    ring[:, 2] = 0.0
    ring /= np.linalg.norm(ring, axis=1, keepdims=True).clip(1e-9)
    v = ring * major + (v - ring) * (minor / 0.25)
    faces = _unit("torus")[1]
    if half:
        faces = faces[v[faces].mean(axis=1)[:, 0] > 0]
    return _move(v, _TO_AXIS[axis], center), faces


def tube(outer: float, inner: float, height: float, center: Sequence[float]) -> Mesh:
    """A thick-walled open tube (annulus) of radii ``outer`` > ``inner`` and ``height`` along z."""
    v = _unit("tube")[0].copy()
    rho = np.linalg.norm(v[:, :2], axis=1, keepdims=True)
    v[:, :2] *= np.where(rho < 0.75, inner / 0.5, outer)
    v[:, 2] *= height
    return _move(v, None, center), _unit("tube")[1]


# --------------------------------------------------------------------------------------------------
# the shape builders: rng -> parts (category-local part index, mesh), z up, base near z = 0


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _box_shape(rng: np.random.Generator) -> list[Part]:
    size = rng.uniform(0.3, 1.0, 3)
    return [(0, box(size, (0, 0, size[2] / 2)))]


def _ellipsoid_shape(rng: np.random.Generator) -> list[Part]:
    radii = rng.uniform(0.25, 0.6, 3)
    return [(0, ellipsoid(radii, (0, 0, radii[2])))]


def _cylinder_shape(rng: np.random.Generator) -> list[Part]:
    r, h = _u(rng, 0.15, 0.5), _u(rng, 0.4, 1.5)
    if rng.random() < 0.3:  # lying
        return [(0, cylinder(r, h, (0, 0, r), axis="x"))]
    return [(0, cylinder(r, h, (0, 0, h / 2)))]


def _cone_shape(rng: np.random.Generator) -> list[Part]:
    r, h = _u(rng, 0.2, 0.55), _u(rng, 0.4, 1.3)
    return [(0, cone(r, h, (0, 0, 0)))]


def _capsule_shape(rng: np.random.Generator) -> list[Part]:
    r, length = _u(rng, 0.12, 0.35), _u(rng, 0.2, 1.2)
    if rng.random() < 0.3:
        return [(0, capsule(r, length, (0, 0, r), axis="x"))]
    return [(0, capsule(r, length, (0, 0, length / 2 + r)))]


def _torus_shape(rng: np.random.Generator) -> list[Part]:
    major = _u(rng, 0.35, 0.6)
    minor = major * _u(rng, 0.12, 0.45)
    return [(0, torus(major, minor, (0, 0, minor)))]


def _bottle_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 body (with the shoulder), 1 neck, 2 cap."""
    r, hb = _u(rng, 0.12, 0.3), _u(rng, 0.45, 1.0)
    rn, hs, hn = r * _u(rng, 0.25, 0.5), r * _u(rng, 0.4, 1.2), _u(rng, 0.08, 0.3)
    rc, hc = rn * _u(rng, 1.05, 1.3), _u(rng, 0.03, 0.08)
    return [
        (0, cylinder(r, hb, (0, 0, hb / 2), drop=("top",))),
        (0, cylinder(r, hs, (0, 0, hb + hs / 2), radius_top=rn, drop=("caps",))),
        (1, cylinder(rn, hn, (0, 0, hb + hs + hn / 2), drop=("caps",))),
        (2, cylinder(rc, hc, (0, 0, hb + hs + hn + hc / 2))),
    ]


def _mug_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 body (wall and floor), 1 handle."""
    ro, h = _u(rng, 0.25, 0.45), _u(rng, 0.5, 1.1)
    ri, tf = ro * _u(rng, 0.8, 0.93), _u(rng, 0.03, 0.08)
    major = h * _u(rng, 0.22, 0.36)
    minor = major * _u(rng, 0.18, 0.32)
    return [
        (0, tube(ro, ri, h, (0, 0, h / 2))),
        (0, cylinder(ri, tf, (0, 0, tf / 2), drop=("bottom",))),
        (0, cylinder(ri, 1e-3, (0, 0, 5e-4), drop=("top",))),  # the outside of the floor
        (1, torus(major, minor, (ro, 0, h * _u(rng, 0.45, 0.6)), axis="y", half=True)),
    ]


def _legs(
    rng: np.random.Generator, corners: NDArray, height: float, section: float, round_legs: bool
) -> list[Mesh]:
    """Vertical legs from z = 0 to ``height`` at the (L, 2) ``corners``, round or square."""
    if round_legs:
        return [segment((x, y, 0), (x, y, height), section / 2, drop=("top",)) for x, y in corners]
    return [box((section, section, height), (x, y, height / 2), drop=("top",)) for x, y in corners]


def _table_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 top, 1 legs."""
    length, width, height = _u(rng, 0.9, 2.0), _u(rng, 0.5, 1.2), _u(rng, 0.55, 1.0)
    thick, section = _u(rng, 0.03, 0.1), _u(rng, 0.04, 0.12)
    round_top, round_legs = rng.random() < 0.25, rng.random() < 0.4
    if round_top:
        radius = width / 2 + 0.2
        top = cylinder(radius, thick, (0, 0, height - thick / 2))
        a = math.pi / 4 + np.arange(4) * math.pi / 2
        corners = (radius - section) * _u(rng, 0.6, 0.9) * np.column_stack([np.cos(a), np.sin(a)])
    else:
        top = box((length, width, thick), (0, 0, height - thick / 2))
        inset = section / 2 + _u(rng, 0.0, 0.12)
        corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * [length / 2 - inset, width / 2 - inset]
    legs = _legs(rng, corners, height - thick, section, round_legs)
    return [(0, top)] + [(1, leg) for leg in legs]


def _stool_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 seat, 1 legs (3 or 4, splayed)."""
    r, thick, height = _u(rng, 0.15, 0.3), _u(rng, 0.03, 0.08), _u(rng, 0.45, 0.8)
    n, leg_r, splay = int(rng.integers(3, 5)), _u(rng, 0.015, 0.035), _u(rng, 1.0, 1.5)
    a = rng.uniform(0, 2 * math.pi) + np.arange(n) * 2 * math.pi / n
    seat_z = height - thick
    legs = [
        segment(
            (0.75 * r * splay * math.cos(t), 0.75 * r * splay * math.sin(t), 0),
            (0.7 * r * math.cos(t), 0.7 * r * math.sin(t), seat_z),
            leg_r,
            drop=("top",),
        )
        for t in a
    ]
    return [(0, cylinder(r, thick, (0, 0, height - thick / 2)))] + [(1, leg) for leg in legs]


def _chair_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 seat, 1 back, 2 legs (x forward, the back at -x)."""
    width, depth, seat_h = _u(rng, 0.4, 0.65), _u(rng, 0.4, 0.6), _u(rng, 0.38, 0.55)
    thick, back_h, back_t = _u(rng, 0.03, 0.08), _u(rng, 0.3, 0.65), _u(rng, 0.025, 0.07)
    tilt, section = _u(rng, 0.0, 0.3), _u(rng, 0.03, 0.06)
    seat = box((depth, width, thick), (0, 0, seat_h - thick / 2))
    top = seat_h
    back_center = (
        -depth / 2 + back_t / 2 - back_h / 2 * math.sin(tilt),
        0,
        top + back_h / 2 * math.cos(tilt),
    )
    back = box((back_t, width, back_h), back_center, rotation=_rotation("y", -tilt), drop=("bottom",))
    inset = section / 2 + _u(rng, 0.0, 0.05)
    corners = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * [depth / 2 - inset, width / 2 - inset]
    legs = _legs(rng, corners, seat_h - thick, section, rng.random() < 0.3)
    return [(0, seat), (1, back)] + [(2, leg) for leg in legs]


def _lamp_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 base, 1 pole, 2 shade (an open frustum)."""
    rb, hb = _u(rng, 0.12, 0.3), _u(rng, 0.03, 0.08)
    rp, hp = _u(rng, 0.012, 0.03), _u(rng, 0.5, 1.1)
    rs, hs = _u(rng, 0.18, 0.38), _u(rng, 0.18, 0.4)
    rt = rs * _u(rng, 0.35, 0.8)
    shade_z = hb + hp - hs * _u(rng, 0.2, 0.5) + hs / 2
    return [
        (0, cylinder(rb, hb, (0, 0, hb / 2))),
        (1, cylinder(rp, hp, (0, 0, hb + hp / 2), drop=("caps",))),
        (2, cylinder(rs, hs, (0, 0, shade_z), radius_top=rt, drop=("caps",))),
    ]


def _airplane_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 fuselage (along x, nose at +x), 1 wings, 2 tail (fin and stabilisers)."""
    rf, lf = _u(rng, 0.05, 0.11), _u(rng, 0.9, 1.6)
    span, chord, sweep = lf * _u(rng, 0.7, 1.1), _u(rng, 0.12, 0.3), _u(rng, 0.0, 0.5)
    wing_x, thick = lf * _u(rng, -0.1, 0.15), 0.02
    parts: list[Part] = [(0, capsule(rf, lf, (0, 0, 0), axis="x"))]
    for side in (1.0, -1.0):
        rot = _rotation("z", side * sweep)
        center = np.array([wing_x, 0.0, -rf * 0.3]) + rot @ np.array([0.0, side * (span / 4 + rf / 2), 0.0])
        parts.append((1, box((chord, span / 2, thick), center, rotation=rot)))
    tail_chord, fin_h, stab = chord * _u(rng, 0.5, 0.9), _u(rng, 0.12, 0.3), span * _u(rng, 0.2, 0.4)
    tail_x = -lf / 2 - rf * 0.5 + tail_chord / 2
    parts.append((2, box((tail_chord, thick, fin_h), (tail_x, 0, rf * 0.7 + fin_h / 2), drop=("bottom",))))
    parts.append((2, box((tail_chord * 0.8, stab, thick), (tail_x, 0, 0))))
    return parts


def _rocket_shape(rng: np.random.Generator) -> list[Part]:
    """Parts: 0 body, 1 nose cone, 2 fins (3 or 4)."""
    r, h = _u(rng, 0.07, 0.16), _u(rng, 0.7, 1.4)
    hn, n = r * _u(rng, 1.5, 3.5), int(rng.integers(3, 5))
    extent, fin_h, fin_t = r * _u(rng, 0.8, 2.0), h * _u(rng, 0.12, 0.3), 0.015
    parts: list[Part] = [
        (0, cylinder(r, h, (0, 0, h / 2), drop=("top",))),
        (1, cone(r, hn, (0, 0, h), drop=("bottom",))),
    ]
    for t in rng.uniform(0, 2 * math.pi) + np.arange(n) * 2 * math.pi / n:
        rot = _rotation("z", float(t))
        center = rot @ np.array([r + extent / 2 - 0.01, 0.0, 0.0]) + np.array([0.0, 0.0, fin_h / 2])
        parts.append((2, box((extent, fin_t, fin_h), center, rotation=rot)))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "box": _box_shape,
    "ellipsoid": _ellipsoid_shape,
    "cylinder": _cylinder_shape,
    "cone": _cone_shape,
    "capsule": _capsule_shape,
    "torus": _torus_shape,
    "bottle": _bottle_shape,
    "mug": _mug_shape,
    "table": _table_shape,
    "stool": _stool_shape,
    "chair": _chair_shape,
    "lamp": _lamp_shape,
    "airplane": _airplane_shape,
    "rocket": _rocket_shape,
}

SYNTHETIC_SHAPE_CLASSES: tuple[str, ...] = tuple(_BUILDERS)
"""The 14 classes of :class:`SyntheticShapes` (label i is class i): six primitives and eight composed
shapes."""

SYNTHETIC_PART_NAMES: dict[str, tuple[str, ...]] = {
    "airplane": ("fuselage", "wings", "tail"),
    "bottle": ("body", "neck", "cap"),
    "chair": ("seat", "back", "legs"),
    "lamp": ("base", "pole", "shade"),
    "mug": ("body", "handle"),
    "rocket": ("body", "nose", "fins"),
    "stool": ("seat", "legs"),
    "table": ("top", "legs"),
}
"""The part names of each category of :data:`SYNTHETIC_PARTS`, in the order of its part ids."""


def _taxonomy() -> PartTaxonomy:
    parts, start = [], 0
    for names in SYNTHETIC_PART_NAMES.values():
        parts.append(tuple(range(start, start + len(names))))
        start += len(names)
    return PartTaxonomy(name="synthetic_parts", categories=tuple(SYNTHETIC_PART_NAMES), parts=tuple(parts))


SYNTHETIC_PARTS = _taxonomy()
"""The part taxonomy of :class:`SyntheticPartShapes`: 8 categories, 21 parts (global ids consecutive per
category in :data:`SYNTHETIC_PART_NAMES`'s order)."""


# --------------------------------------------------------------------------------------------------
# one shape


def occlusion_mask(
    points: NDArray[np.floating],
    normals: NDArray[np.floating],
    rng: np.random.Generator,
    *,
    max_cut: float = 0.2,
    max_back_drop: float = 0.6,
    min_keep: float = 0.7,
) -> NDArray[np.bool_]:
    """Which points a partial view of a shape keeps: (N,) bool, at least ``ceil(min_keep * N)`` True.

    Two effects, both drawn from ``rng``: a half-space cut removes the fraction in [0.05, ``max_cut``]
    of the points farthest along a random direction (a missing chunk, as where a scan was occluded),
    then a random share in [0.2, ``max_back_drop``] of the remaining points whose normal faces away from
    a random viewpoint (azimuth uniform, elevation in [-15°, 60°]) is dropped, as many as ``min_keep``
    allows.

    Args:
        points: (N, 3) positions (any frame; the shape's).
        normals: (N, 3) unit outward normals, same frame.
        rng: the generator.
    """
    n = len(points)
    budget = n - math.ceil(min_keep * n)  # how many points may go
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    proj = points[:, 0] * direction[0] + points[:, 1] * direction[1] + points[:, 2] * direction[2]
    cut = min(int(rng.uniform(0.05, max_cut) * n), budget)
    keep = np.ones(n, bool)
    if cut > 0:
        keep[np.argpartition(proj, n - cut)[n - cut :]] = False
    azimuth, elevation = rng.uniform(0, 2 * math.pi), rng.uniform(-math.pi / 12, math.pi / 3)
    view = (
        math.cos(azimuth) * math.cos(elevation),
        math.sin(azimuth) * math.cos(elevation),
        math.sin(elevation),
    )
    facing = normals[:, 0] * view[0] + normals[:, 1] * view[1] + normals[:, 2] * view[2]
    back = np.flatnonzero(keep & (facing < 0))
    drop = min(int(rng.uniform(0.2, max_back_drop) * len(back)), budget - cut)
    if drop > 0:
        keep[rng.choice(back, drop, replace=False)] = False
    return keep


def _merge(parts: Sequence[Part]) -> list[Part]:
    """One mesh per part index (a table's four legs become one mesh: one sampling call, not four)."""
    merged: dict[int, list[Mesh]] = {}
    for index, mesh in parts:
        merged.setdefault(index, []).append(mesh)
    out: list[Part] = []
    for index, meshes in sorted(merged.items()):
        offsets = np.cumsum([0] + [len(v) for v, _ in meshes[:-1]])
        vertices = np.concatenate([v for v, _ in meshes])
        faces = np.concatenate([f + o for (_, f), o in zip(meshes, offsets, strict=True)])
        out.append((index, (vertices, faces)))
    return out


def _area(mesh: Mesh) -> float:
    """The surface area of ``mesh`` (the cross product written out: np.cross costs more for small meshes)."""
    v, f = mesh
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    u, w = b - a, c - a
    cx = u[:, 1] * w[:, 2] - u[:, 2] * w[:, 1]
    cy = u[:, 2] * w[:, 0] - u[:, 0] * w[:, 2]
    cz = u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]
    return 0.5 * float(np.sqrt(cx * cx + cy * cy + cz * cz).sum())


def _sample_parts(
    parts: Sequence[Part], num_points: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """``num_points`` points over all parts by area (one :func:`sample_surface` call per part index),
    with normals and each point's part index."""
    parts = _merge(parts)
    areas = np.array([_area(mesh) for _, mesh in parts])
    counts = rng.multinomial(num_points, areas / areas.sum())
    xyz, nrm, part = [], [], []
    for (index, (v, f)), count in zip(parts, counts, strict=True):
        if count == 0:
            continue
        p, n = sample_surface(v, f, int(count), rng, name=f"synthetic part {index}")
        xyz.append(p)
        nrm.append(n)
        part.append(np.full(count, index, np.int64))
    return np.concatenate(xyz), np.concatenate(nrm), np.concatenate(part)


def _normalize(points: NDArray[np.float32]) -> NDArray[np.float32]:
    centred = points - points.mean(axis=0)
    return centred / np.sqrt((centred**2).sum(axis=1).max())


def generate_shape(
    name: str, rng: np.random.Generator, num_points: int = 1024, occlusion: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """One instance of class ``name`` drawn from ``rng`` (proportions, scale, rotation, view, jitter).

    Args:
        name: one of :data:`SYNTHETIC_SHAPE_CLASSES`.
        rng: the generator; everything about the shape comes from it.
        num_points: N.
        occlusion: a partial view: 1.5 N points are drawn over the surface, :func:`occlusion_mask` keeps
            at least 70 % of them, and N of those are chosen (else N points over the whole surface).

    Returns:
        points (num_points, 3) float32 centred at their mean, the farthest at distance 1 (object frame,
        z up); normals (num_points, 3) float32 unit outward normals of the faces the points lie on;
        parts (num_points,) int64 category-local part index of each point (0 for one-part shapes).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown synthetic shape {name!r}; the classes are {SYNTHETIC_SHAPE_CLASSES}")
    parts = _BUILDERS[name](rng)
    scale = rng.uniform(0.8, 1.25, 3)
    turn = _rotation("z", rng.uniform(0, 2 * math.pi)) * scale  # scale, then turn about z
    parts = [(i, (np.einsum("ij,nj->ni", turn, v), f)) for i, (v, f) in parts]
    drawn = num_points + num_points // 2 if occlusion else num_points
    points, normals, labels = _sample_parts(parts, drawn, rng)
    if occlusion:  # a random subset of the kept points, in random order
        chosen = rng.choice(np.flatnonzero(occlusion_mask(points, normals, rng)), num_points, replace=False)
    else:
        chosen = rng.permutation(num_points)
    points, normals, labels = points[chosen], normals[chosen], labels[chosen]
    points = _normalize(points)
    jitter = np.clip(rng.normal(0.0, 0.004, points.shape), -0.012, 0.012)
    points = _normalize((points + jitter).astype(np.float32))
    return points.astype(np.float32), normals, labels


# --------------------------------------------------------------------------------------------------
# the datasets


class _GeneratedShapes(EpochDataset):
    """What both synthetic datasets share: split, size, ids, the per-shape generator."""

    categories: tuple[str, ...]

    def __init__(
        self,
        split: str,
        num_shapes: int | None,
        num_points: int,
        use_normals: bool,
        seed: int,
        transforms: Transform | Sequence[Transform] | None,
        occlusion: bool,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        num_shapes = DEFAULT_SIZES[split] if num_shapes is None else int(num_shapes)
        if num_shapes < 0 or num_points < 1:
            raise ValueError(f"need num_shapes >= 0 and num_points >= 1, got {num_shapes}, {num_points}")
        self.split, self.num_points = split, int(num_points)
        self.use_normals, self.occlusion = bool(use_normals), bool(occlusion)
        self.frame_ids = [f"synthetic/{split}/{i}" for i in range(num_shapes)]
        self._init_transforms(transforms, seed)

    def category_of(self, index: int) -> str:
        """The class (category) of shape ``index``: the classes in turn, so every split is balanced."""
        return self.categories[index % len(self.categories)]

    def _generate(self, index: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        rng = np.random.default_rng([SALT, self.seed, SPLITS[self.split], index])
        points, normals, parts = generate_shape(self.category_of(index), rng, self.num_points, self.occlusion)
        if self.use_normals:
            points = np.concatenate([points, normals], axis=1)
        return points, parts

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, num_shapes={len(self)}, num_points={self.num_points}, "
            f"use_normals={self.use_normals}, seed={self.seed}, occlusion={self.occlusion}, "
            f"transform={self.transform!r})"
        )


class SyntheticShapes(_GeneratedShapes):
    """A ModelNet-like classification set of the 14 :data:`SYNTHETIC_SHAPE_CLASSES`, generated on the fly.

    Shape ``index`` is of class ``index % 14`` and is the same for a given (seed, split, index) whatever
    the set's size (module docstring). Splits ``train``, ``val`` and ``test`` never share a shape.

    Args:
        split: ``train``, ``val`` or ``test``.
        num_shapes: shapes in the set (default: 4,000 for train, 800 for val and test).
        num_points: N, points per shape.
        use_normals: points are (N, 6) x, y, z, nx, ny, nz (else (N, 3)).
        seed: the generator's seed (shapes) and the augmentation's (with the epoch, as
            :class:`~perception.data.datasets.EpochDataset`'s).
        transforms: augmentation applied after generation (``transform(point_set, rng)``).
        occlusion: generate partial views (:func:`occlusion_mask`) instead of whole surfaces.

    A sample is a :class:`~perception.structures.shapes.PointSet` with ``shape_id``
    ``synthetic/<split>/<index>``, points (N, 3 or 6) float32 in the unit sphere (object frame, z up),
    ``label`` the class index and no part labels.
    """

    categories = SYNTHETIC_SHAPE_CLASSES

    def __init__(
        self,
        split: str = "train",
        num_shapes: int | None = None,
        num_points: int = 1024,
        use_normals: bool = False,
        seed: int = 0,
        transforms: Transform | Sequence[Transform] | None = None,
        occlusion: bool = True,
    ) -> None:
        super().__init__(split, num_shapes, num_points, use_normals, seed, transforms, occlusion)

    @property
    def class_names(self) -> tuple[str, ...]:
        return SYNTHETIC_SHAPE_CLASSES

    def load(self, index: int) -> PointSet:
        """Shape ``index`` as generated, before any transform."""
        points, _ = self._generate(index)
        return PointSet(shape_id=self.frame_ids[index], points=points, label=index % len(self.categories))


class SyntheticPartShapes(_GeneratedShapes):
    """A ShapeNet-part-like part-segmentation set of the composed shapes of :data:`SYNTHETIC_PARTS`.

    Every point is labelled with the global part id of the primitive it was sampled from (a table's top
    or legs, a lamp's base, pole or shade, ...).

    Args:
        split, num_shapes, num_points, use_normals, seed, transforms, occlusion: as
            :class:`SyntheticShapes`'s (4,000 train and 800 val / test shapes by default).
        categories: only these categories (names of :data:`SYNTHETIC_PARTS`), in turn; labels and part
            ids stay those of the whole taxonomy.

    A sample's ``label`` is the category index in :data:`SYNTHETIC_PARTS` and ``part_labels`` (N,) int64
    the global part ids, all within the category's parts.
    """

    taxonomy = SYNTHETIC_PARTS

    def __init__(
        self,
        split: str = "train",
        num_shapes: int | None = None,
        num_points: int = 2048,
        use_normals: bool = False,
        seed: int = 0,
        transforms: Transform | Sequence[Transform] | None = None,
        occlusion: bool = True,
        categories: Sequence[str] | None = None,
    ) -> None:
        chosen = SYNTHETIC_PARTS.categories if categories is None else tuple(categories)
        unknown = [c for c in chosen if c not in SYNTHETIC_PARTS.categories]
        if unknown or not chosen:
            raise ValueError(f"categories must be some of {SYNTHETIC_PARTS.categories}, got {list(chosen)}")
        self.categories = chosen
        super().__init__(split, num_shapes, num_points, use_normals, seed, transforms, occlusion)

    def load(self, index: int) -> PointSet:
        """Shape ``index`` as generated, before any transform."""
        name = self.category_of(index)
        label = SYNTHETIC_PARTS.categories.index(name)
        points, local = self._generate(index)
        first = SYNTHETIC_PARTS.parts[label][0]
        return PointSet(shape_id=self.frame_ids[index], points=points, label=label, part_labels=local + first)
