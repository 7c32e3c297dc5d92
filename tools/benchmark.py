#!/usr/bin/env python
"""Benchmarks that print our speed beside a peer measured in the same run.

    python tools/benchmark.py geometry            # points-in-boxes: numba kernel vs vectorised NumPy
    python tools/benchmark.py hilbert             # Hilbert encode/decode vs numba Skilling, numpy-hilbert-curve
    python tools/benchmark.py voxelize            # hard voxelization vs spconv PointToVoxel
    python tools/benchmark.py sparse              # sparse convolution vs spconv's CPU build
    python tools/benchmark.py iou                 # rotated BEV/3D IoU: numba vs shapely 2
    python tools/benchmark.py ops                 # the four ops sections above
    python tools/benchmark.py kitti_eval          # KITTI AP (R11/R40, image/bev/3d/aos) on 3,769 frames
    python tools/benchmark.py waymo_eval          # Waymo mAP/mAPH on ~40 k GT and ~40 k predictions
    python tools/benchmark.py waymo_convert       # Waymo v1 TFRecord → npz conversion, frames/s per core
    python tools/benchmark.py synthetic           # synthetic LiDAR generator, frames/s
    python tools/benchmark.py detector [--configs A B] [--ckpts A.ckpt B.ckpt]
                                                  # detector inference, s/frame on the real KITTI scans
    python tools/benchmark.py all [--json OUT]

Timings are medians over repeats on this machine; the README's performance table is their output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception.benchmarking import median_seconds  # noqa: E402
from perception.geometry.boxes import points_in_boxes_mask, rotation_z  # noqa: E402

console = Console(width=150)


def numpy_points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The peer: the definition vectorised over all point-box pairs with NumPy (as commonly written)."""
    local = points[:, None, :3] - boxes[None, :, :3]
    local = np.einsum("mij,nmj->nmi", rotation_z(-boxes[:, 6]), local)
    return np.all(np.abs(local) <= boxes[None, :, 3:6] / 2, axis=2)


def _inputs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = []
    kitti = REPO.parent / "shared" / "data" / "kitti"
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
    rows = []
    for name, points, boxes in _inputs():
        ours = median_seconds(lambda p=points, b=boxes: points_in_boxes_mask(p, b))
        peer = median_seconds(lambda p=points, b=boxes: numpy_points_in_boxes(p, b), repeats=3)
        assert np.array_equal(points_in_boxes_mask(points, boxes), numpy_points_in_boxes(points, boxes))
        rows.append({"op": "points_in_boxes", "input": name, "ours_ms": ours * 1e3, "peer": "NumPy vectorised",
                     "peer_ms": peer * 1e3, "speedup": peer / ours})  # fmt: skip
    return rows


def bench_synthetic(frames: int = 20) -> list[dict]:
    from perception.data.synthetic.benchmark import benchmark_synthetic

    result = benchmark_synthetic(frames=frames, seed=0)
    return [{"op": "synthetic LiDAR", "input": f"{frames} frames", **result}]


def bench_hilbert() -> list[dict]:
    from perception.ops._bench_hilbert import bench_hilbert as run

    return run(verbose=False)


def bench_iou() -> list[dict]:
    from perception.ops._bench_iou import bench_iou as run

    return run()


def bench_voxelize() -> list[dict]:
    from perception.ops._bench_voxelize import bench_voxelize as run

    return run()


def bench_sparse() -> list[dict]:
    from perception.ops._bench_sparse import bench_sparse as run

    return run(verbose=False)


def bench_kitti_eval() -> list[dict]:
    from perception.eval._bench_kitti import bench_kitti_eval as run

    return run()


def bench_waymo_convert() -> list[dict]:
    from perception.data._bench_waymo import bench_waymo_convert as run

    return run()


def bench_waymo_eval() -> list[dict]:
    from perception.eval._bench_waymo import bench_waymo_eval as run

    return run()


def bench_detector(args: argparse.Namespace) -> list[dict]:
    from perception.models._bench_detector import bench_detector as run

    ckpts = args.ckpts or None
    if ckpts is not None and len(ckpts) != len(args.configs):
        raise SystemExit(f"--ckpts needs one checkpoint per config ({len(args.configs)}), got {len(ckpts)}")
    return run(args.configs, ckpts, threads=args.threads)


# name → (title, function); "ops" runs the four ops sections, "all" everything.
SECTIONS: dict[str, tuple[str, Callable[[argparse.Namespace], list[dict]]]] = {
    "geometry": ("points in boxes (median of 7; peer median of 3)", lambda a: bench_geometry()),
    "hilbert": ("Hilbert serialization, 10 bits per axis (best of 3)", lambda a: bench_hilbert()),
    "voxelize": ("hard voxelization vs spconv PointToVoxel, 1 thread (median)", lambda a: bench_voxelize()),
    "sparse": ("sparse convolution vs spconv CPU at 1 thread (median of 5)", lambda a: bench_sparse()),
    "iou": ("rotated IoU (BEV and 3D) vs shapely 2 (median)", lambda a: bench_iou()),
    "kitti_eval": ("KITTI AP on a val-sized split (3,769 frames)", lambda a: bench_kitti_eval()),
    "waymo_convert": (
        "Waymo conversion, full-size synthetic frames (TOP 64×2650 + 4 × 200×600)",
        lambda a: bench_waymo_convert(),
    ),
    "waymo_eval": ("Waymo mAP/mAPH, 1,000 frames, ~40 k objects a side", lambda a: bench_waymo_eval()),
    "synthetic": ("synthetic LiDAR generator", lambda a: bench_synthetic(a.frames)),
    "detector": ("detector inference on the real KITTI scans, batch 1 (median of 5)", bench_detector),
}
GROUPS = {"ops": ["hilbert", "voxelize", "sparse", "iou"], "all": list(SECTIONS)}


def print_rows(title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*(f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=[*SECTIONS, *GROUPS])
    parser.add_argument("--frames", type=int, default=20, help="frames for the synthetic benchmark")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--configs", nargs="+", default=["pvt_synthetic", "pointpillars_synthetic"], help="detector configs"
    )
    parser.add_argument(
        "--ckpts", nargs="+", help="detector checkpoints, one per config (default: initial weights)"
    )
    parser.add_argument("--threads", type=int, help="torch threads for the detector benchmark")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {}
    for name in GROUPS.get(args.what, [args.what]):
        title, run = SECTIONS[name]
        results[name] = run(args)
        print_rows(title, results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
