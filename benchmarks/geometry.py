"""Benchmark of :func:`perception.geometry.boxes.points_in_boxes_mask` (numba) against vectorised NumPy.

``bench_geometry()`` returns rows for ``tools/benchmark.py``; ``python -m benchmarks.geometry`` prints them.
Inputs: KITTI ``000001`` (the real scans shipped in ``tests/data/kitti``) and a Waymo-sized random cloud.
Every case checks that the two masks are equal.
"""

from __future__ import annotations

import numpy as np

from benchmarks import REPO
from benchmarks.timing import median_seconds
from perception.geometry.boxes import points_in_boxes_mask, rotation_z

__all__ = ["bench_geometry", "numpy_points_in_boxes"]


def numpy_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The peer: the definition vectorised over all point-box pairs with NumPy (as commonly written)."""
    local = points[:, None, :3] - boxes[None, :, :3]
    local = np.einsum("mij,nmj->nmi", rotation_z(-boxes[:, 6]), local)
    return np.all(np.abs(local) <= boxes[None, :, 3:6] / 2, axis=2)


def _inputs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = []
    kitti = REPO / "tests" / "data" / "kitti"
    if (kitti / "training" / "velodyne").is_dir():
        from perception.data.kitti import load_frame

        frame = load_frame(kitti, "000001")
        cases.append(
            ("KITTI 000001 (120 k pts, 3 boxes)", frame.points[:, :3].astype(np.float64), frame.boxes_lidar)
        )
    rng = np.random.default_rng(0)
    points = rng.uniform([-75, -75, -3], [75, 75, 3], (180_000, 3))
    boxes = np.column_stack(
        [
            rng.uniform(-70, 70, (60, 2)),
            rng.uniform(-1, 0, 60),
            rng.uniform(0.5, 5, (60, 3)),
            rng.uniform(-3, 3, 60),
        ]
    )
    cases.append(("Waymo-sized (180 k pts ±75 m, 60 boxes)", points, boxes))
    return cases


def bench_geometry() -> list[dict]:
    """Median milliseconds of ours (of 7) and of the NumPy peer (of 3) for each input."""
    rows = []
    for name, points, boxes in _inputs():
        ours = median_seconds(lambda p=points, b=boxes: points_in_boxes_mask(p, b))
        peer = median_seconds(lambda p=points, b=boxes: numpy_points_in_boxes(p, b), repeats=3)
        assert np.array_equal(points_in_boxes_mask(points, boxes), numpy_points_in_boxes(points, boxes))
        rows.append({"op": "points_in_boxes", "input": name, "ours_ms": ours * 1e3, "peer": "NumPy vectorised",
                     "peer_ms": peer * 1e3, "speedup": peer / ours})  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in bench_geometry():
        print(row)
