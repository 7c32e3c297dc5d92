"""Speed of ModelNet-style mesh loading: our ``read_off`` + ``sample_surface`` against trimesh.

The input is generated: a subdivided icosphere with jittered radii (so the faces differ in area),
written as an OFF file at two sizes (81,920 and 327,680 triangles; ModelNet40's largest meshes are
of this order). Peer: ``trimesh.load(path, process=False)`` and ``trimesh.sample.sample_surface``
(area-weighted too) plus the sampled faces' normals, since ours returns normals. Before timing, the
two readers' vertices and faces are checked to be equal. All calls take turns (``time_in_turns``),
median of ``repeats``. ``bench_shapes()`` returns rows for ``tools/benchmark.py``;
``python -m benchmarks.shapes`` prints them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import trimesh

from benchmarks.timing import time_in_turns
from perception.data.shapes.mesh import sample_surface
from perception.data.shapes.off import read_off, write_off

__all__ = ["bench_shapes"]


def _sphere_off(folder: Path, subdivisions: int) -> tuple[Path, int]:
    """A jittered icosphere as an OFF file; returns its path and face count."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(subdivisions)
    vertices = sphere.vertices * rng.uniform(0.9, 1.1, (len(sphere.vertices), 1))
    path = folder / f"icosphere{subdivisions}.off"
    write_off(path, vertices, sphere.faces)
    return path, len(sphere.faces)


def _ours(path: Path, num_points: int) -> object:
    vertices, faces = read_off(path)
    return sample_surface(vertices, faces, num_points, np.random.default_rng(0), name=str(path))


def _peer(path: Path, num_points: int) -> object:
    mesh = trimesh.load(path, process=False)
    points, face_index = trimesh.sample.sample_surface(mesh, num_points, seed=0)
    return points, mesh.face_normals[face_index]


def bench_shapes(
    subdivisions: tuple[int, ...] = (6, 7), num_points: int = 1024, repeats: int = 5
) -> list[dict]:
    """Read one OFF mesh and sample ``num_points`` surface points with normals: ours vs trimesh.

    Returns:
        One dict per (mesh, op) with op, input, ours_ms, peer, peer_ms and speedup (peer / ours);
        ops are ``read_off`` alone and ``read_off + sample_surface`` (a ModelNet40Off load).
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in subdivisions:
            path, num_faces = _sphere_off(Path(tmp), level)
            vertices, faces = read_off(path)
            reference = trimesh.load(path, process=False)
            if not (np.array_equal(vertices, reference.vertices) and np.array_equal(faces, reference.faces)):
                raise AssertionError(f"{path}: read_off and trimesh disagree")
            size = f"{path.stat().st_size / 1e6:.1f} MB"
            cases = [
                ("read_off", lambda p=path: read_off(p), lambda p=path: trimesh.load(p, process=False)),
                (
                    f"read_off + sample_surface({num_points})",
                    lambda p=path: _ours(p, num_points),
                    lambda p=path: _peer(p, num_points),
                ),
            ]
            for op, ours, peer in cases:
                ours_s, peer_s = time_in_turns([ours, peer], repeats)
                rows.append(
                    {
                        "op": op,
                        "input": f"icosphere {num_faces:,} faces, {len(vertices):,} vertices ({size})",
                        "ours_ms": ours_s * 1e3,
                        "peer": f"trimesh {trimesh.__version__}",
                        "peer_ms": peer_s * 1e3,
                        "speedup": peer_s / ours_s,
                    }
                )
    return rows


if __name__ == "__main__":
    for row in bench_shapes():
        print(
            f"{row['op']:<32} {row['input']:<52} ours {row['ours_ms']:8.1f} ms  "
            f"{row['peer']} {row['peer_ms']:8.1f} ms  ×{row['speedup']:.2f}"
        )
