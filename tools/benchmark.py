#!/usr/bin/env python
"""Benchmarks that print our speed beside a peer measured in the same run.

    python tools/benchmark.py geometry            # points-in-boxes: numba kernel vs vectorised NumPy
    python tools/benchmark.py hilbert             # Hilbert encode/decode vs numba Skilling, numpy-hilbert-curve
    python tools/benchmark.py hilbert --hilbertsfc /path/to/HilbertSFC
                                                  # ... and side by side with a local HilbertSFC source copy
    python tools/benchmark.py voxelize            # hard voxelization vs spconv PointToVoxel
    python tools/benchmark.py sparse              # sparse convolution vs spconv's CPU build
    python tools/benchmark.py iou                 # rotated BEV/3D IoU: numba vs shapely 2
    python tools/benchmark.py ops                 # the four ops sections above
    python tools/benchmark.py kitti_eval          # KITTI AP (R11/R40, image/bev/3d/aos) on 3,769 frames
    python tools/benchmark.py waymo_eval          # Waymo mAP/mAPH on ~40 k GT and ~40 k predictions
    python tools/benchmark.py waymo_convert       # Waymo v1 TFRecord → npz conversion, frames/s per core
    python tools/benchmark.py synthetic           # synthetic LiDAR generator, frames/s
    python tools/benchmark.py segmentation        # Point2Point vs the sparse-conv U-Net: forward ms, training samples/s
    python tools/benchmark.py occupancy_metric    # Waymo occupancy-flow metrics, 1,000 × 8 × 256² vs a NumPy peer
    python tools/benchmark.py occupancy           # Point2Point vs the BEV baseline forecaster: forward ms, training samples/s
    python tools/benchmark.py shapes              # OFF read + area-weighted surface sampling vs trimesh
    python tools/benchmark.py pointnet [--peer /path/to/pointnet.pytorch]
                                                  # PointNet classifier: eval forward and train step ms,
                                                  # ours alone or beside fxia22's PointNetCls (local copy)
    python tools/benchmark.py detector [--configs A B] [--ckpts A.ckpt B.ckpt] [--threads 2] [--reference]
                                                  # detector inference, ms/frame (data, model) on the real
                                                  # KITTI scans against PointPillars and the 50 ms budget;
                                                  # --reference: also the models on their own layers
    python tools/benchmark.py all [--json OUT]

Timings are medians over repeats on this machine; the README's performance table is their output.
The benchmarks themselves live in the repository's top-level ``benchmarks/`` package (one module per
subject, timing helpers in ``benchmarks/timing.py``); this script only runs them and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

console = Console(width=150)


def bench_geometry() -> list[dict]:
    from benchmarks.geometry import bench_geometry as run

    return run()


def bench_synthetic(frames: int = 20) -> list[dict]:
    from benchmarks.synthetic import benchmark_synthetic

    result = benchmark_synthetic(frames=frames, seed=0)
    return [{"op": "synthetic LiDAR", "input": f"{frames} frames", **result}]


def bench_hilbert(hilbertsfc: Path | None = None) -> list[dict]:
    from benchmarks.hilbert import bench_hilbert as run
    from benchmarks.hilbert import bench_hilbertsfc

    if hilbertsfc is not None:  # only then is anything imported from the user's copy
        return bench_hilbertsfc(hilbertsfc, verbose=False)
    return run(verbose=False)


def bench_segmentation() -> list[dict]:
    from benchmarks.segmentation import bench_segmentation as run

    return run()


def bench_occupancy_metric() -> list[dict]:
    from benchmarks.occupancy_metric import bench_occupancy_metric as run

    return run()


def bench_occupancy() -> list[dict]:
    from benchmarks.occupancy import bench_occupancy as run

    return run()


def bench_iou() -> list[dict]:
    from benchmarks.iou import bench_iou as run

    return run()


def bench_voxelize() -> list[dict]:
    from benchmarks.voxelize import bench_voxelize as run

    return run()


def bench_sparse() -> list[dict]:
    from benchmarks.sparse import bench_sparse as run

    return run(verbose=False)


def bench_kitti_eval() -> list[dict]:
    from benchmarks.kitti_metric import bench_kitti_eval as run

    return run()


def bench_waymo_convert() -> list[dict]:
    from benchmarks.waymo_conversion import bench_waymo_convert as run

    return run()


def bench_waymo_eval() -> list[dict]:
    from benchmarks.waymo_metric import bench_waymo_eval as run

    return run()


def bench_shapes() -> list[dict]:
    from benchmarks.shapes import bench_shapes as run

    return run()


def bench_pointnet(peer: Path | None = None) -> list[dict]:
    from benchmarks.pointnet import bench_pointnet as run

    return run(peer)  # the peer is imported from the user's copy only when given


def bench_detector(args: argparse.Namespace) -> list[dict]:
    from benchmarks.detector import bench_detector as run

    ckpts = args.ckpts or None
    if ckpts is not None and len(ckpts) != len(args.configs):
        raise SystemExit(f"--ckpts needs one checkpoint per config ({len(args.configs)}), got {len(ckpts)}")
    return run(args.configs, ckpts, threads=args.threads, reference=args.reference)


# name → (title, function); "ops" runs the four ops sections, "all" everything.
SECTIONS: dict[str, tuple[str, Callable[[argparse.Namespace], list[dict]]]] = {
    "geometry": ("points in boxes (median of 7; peer median of 3)", lambda a: bench_geometry()),
    "hilbert": (
        "Hilbert serialization, 10 bits per axis (best of 3); with --hilbertsfc: vs HilbertSFC, 4 M points (best of 7)",
        lambda a: bench_hilbert(a.hilbertsfc),
    ),
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
    "segmentation": (
        "segmentation backbones, KITTI 000000 (115 k points), 2 threads (median of 5)",
        lambda a: bench_segmentation(),
    ),
    "occupancy_metric": (
        "occupancy-flow metrics, 1,000 samples × 8 waypoints × 256², 2 threads (peer extrapolated from 2 samples)",
        lambda a: bench_occupancy_metric(),
    ),
    "occupancy": (
        "occupancy forecasters, synthetic samples (5 sweeps, ≤ 30 k points, 128², 4 waypoints), 2 threads (median of 5)",
        lambda a: bench_occupancy(),
    ),
    "detector": (
        "detector inference on the real KITTI scans, batch 1, the trainer's precision (median of 5); budget 50 ms",
        bench_detector,
    ),
    "shapes": (
        "OFF mesh read + surface sampling vs trimesh, 82 k and 328 k faces (median of 5)",
        lambda a: bench_shapes(),
    ),
    "pointnet": (
        "PointNet classifier, 32 × 1024 points, float32, 2 threads (best/median of 3); --peer: fxia22 PointNetCls",
        lambda a: bench_pointnet(a.peer),
    ),
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
    parser.add_argument(
        "--reference",
        action="store_true",
        help="detector: also time the models on their own layers (the reference path), in the same turns",
    )
    parser.add_argument(
        "--hilbertsfc",
        type=Path,
        help="hilbert: time against a local HilbertSFC source copy instead of the default peers",
    )
    parser.add_argument(
        "--peer",
        type=Path,
        help="pointnet: time beside fxia22/pointnet.pytorch's PointNetCls from this local copy",
    )
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
