"""Triangle meshes to point sets: area-weighted surface sampling with face normals.

The sampler draws faces with probability proportional to their area, then a uniform point in each drawn
triangle (the square-root barycentric rule), from the generator given, so a (mesh, seed) pair always
gives the same points. ModelNet's OFF meshes and the synthetic shapes are sampled by it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from perception.data.shapes.errors import ShapeFormatError

__all__ = ["UP_AXES", "MeshError", "check_up_axis", "face_areas", "sample_surface", "to_z_up"]

UP_AXES = ("z", "y")
"""The up axes a shape file can have: ModelNet's OFF meshes are z-up; the HDF5 release and ShapeNet are y-up."""


class MeshError(ShapeFormatError):
    """A mesh that cannot be sampled (no faces, zero area, bad indices); the message names it."""


def face_areas(vertices: NDArray[np.floating], faces: NDArray[np.integer]) -> NDArray[np.float64]:
    """(F,) areas of the triangles ``faces`` (F, 3) index into ``vertices`` (V, 3)."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces, np.int64)]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def sample_surface(
    vertices: NDArray[np.floating],
    faces: NDArray[np.integer],
    num_points: int,
    rng: np.random.Generator,
    name: str = "mesh",
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``num_points`` points uniformly distributed over the mesh surface, with their faces' unit normals.

    Args:
        vertices: (V, 3) vertex positions.
        faces: (F, 3) vertex indices of triangles (polygons triangulated by the reader).
        num_points: how many points.
        rng: the generator (seed it from the shape for deterministic sampling).
        name: the mesh's name for error messages (its file).

    Returns:
        points (num_points, 3) float32 and normals (num_points, 3) float32 (right-hand rule of the
        face's vertex order; zero-area faces are never drawn).

    Raises:
        MeshError: no faces, face indices outside the vertices, or zero total area.
    """
    faces = np.asarray(faces)
    vertices = np.asarray(vertices, np.float64)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshError(f"{name}: the mesh has no triangle faces (faces {faces.shape}), nothing to sample")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"{name}: face indices run outside the {len(vertices)} vertices")
    areas = face_areas(vertices, faces)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise MeshError(f"{name}: the mesh has zero (or non-finite) surface area")
    chosen = rng.choice(len(faces), size=int(num_points), p=areas / total)
    tri = vertices[faces[chosen]]
    r1 = np.sqrt(rng.random(int(num_points)))[:, None]
    r2 = rng.random(int(num_points))[:, None]
    points = (1 - r1) * tri[:, 0] + r1 * (1 - r2) * tri[:, 1] + r1 * r2 * tri[:, 2]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return points.astype(np.float32), normals.astype(np.float32)


def check_up_axis(up_axis: str) -> str:
    """``up_axis`` if it is one of :data:`UP_AXES`; else ValueError."""
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {UP_AXES}, got {up_axis!r}")
    return up_axis


def to_z_up(points: NDArray[np.float32], up_axis: str) -> NDArray[np.float32]:
    """Points (N, 3) or (N, 6) with normals, from a file whose up axis is ``up_axis``, in the z-up object
    frame every :class:`~perception.structures.shapes.PointSet` uses.

    ``"y"`` (ShapeNet, the ModelNet40 HDF5 release) rotates +90° about x: ``(x, y, z) → (x, -z, y)``, so
    +y becomes +z and the frame stays right-handed; normals turn with the points. ``"z"`` is a no-op.
    """
    if check_up_axis(up_axis) == "z":
        return points
    out = points.copy()
    for c in range(0, points.shape[1] - 2, 3):  # xyz, then normals
        out[:, c + 1] = -points[:, c + 2]
        out[:, c + 2] = points[:, c + 1]
    return out
