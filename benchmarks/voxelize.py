"""Benchmark of hard voxelization: our numba kernel against spconv's C++ ``PointToVoxel`` on the CPU.

``bench_voxelize()`` returns rows for ``tools/benchmark.py``; ``python -m benchmarks.voxelize``
prints them. Both run at one thread (``torch.set_num_threads(1)``; spconv's CPU ``PointToVoxel`` is a
serial loop over the points with a dense cell table that it allocates once, in its constructor, so
its construction is left out of its time, as a user would build it once). Each case first checks that
the two agree element for element. Also timed, for information: our pure-torch path (the CUDA code)
on CPU tensors, and ``dynamic_voxelize`` + ``scatter_mean`` of the points. Takes about 30 s.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import REPO
from benchmarks.timing import time_in_turns
from perception.ops import voxelize as vx

KITTI_VELODYNE = REPO / "tests" / "data" / "kitti" / "training" / "velodyne"

# (name, voxel_size, point_cloud_range, max_points_per_voxel, max_voxels)
KITTI_VOXEL = ("voxel 0.05×0.05×0.1, P=5, 40k", [0.05, 0.05, 0.1], [0, -40, -3, 70.4, 40, 1], 5, 40000)
KITTI_PILLAR = ("pillar 0.16, P=32, 12k", [0.16, 0.16, 4], [0, -39.68, -3, 69.12, 39.68, 1], 32, 12000)
WAYMO_RANGE = [-75.2, -75.2, -2, 75.2, 75.2, 4]
WAYMO_VOXEL = ("voxel 0.1×0.1×0.15, P=5, 150k", [0.1, 0.1, 0.15], WAYMO_RANGE, 5, 150000)
WAYMO_PILLAR = ("pillar 0.32, P=20, 150k", [0.32, 0.32, 6], WAYMO_RANGE, 20, 150000)


def _inputs() -> list[tuple[str, np.ndarray, tuple]]:
    """(input name, (N, 4) float32 points, settings) for every case."""
    from perception.data.kitti import read_velodyne
    from perception.data.synthetic import SyntheticConfig, generate_frame

    cases = []
    for path in sorted(KITTI_VELODYNE.glob("*.bin")):
        points = read_velodyne(path)
        for settings in (KITTI_VOXEL, KITTI_PILLAR):
            cases.append((f"KITTI {path.stem} ({len(points) // 1000}k pts), {settings[0]}", points, settings))
    frame = generate_frame(SyntheticConfig(azimuth_step_deg=0.12), seed=0, index=0)
    points = frame.points[(np.abs(frame.points[:, :2]) < 75.2).all(axis=1)].astype(np.float32)
    for settings in (WAYMO_VOXEL, WAYMO_PILLAR):
        cases.append((f"synthetic Waymo-sized ({len(points) // 1000}k pts), {settings[0]}", points, settings))
    return cases


def bench_voxelize(repeats: int = 15) -> list[dict]:
    """Time ``voxelize`` (numba) against spconv ``PointToVoxel`` (CPU, C++) at one thread.

    Returns:
        One dict per case: op, input, ours_ms, peer, peer_ms, speedup (peer time / our time), and,
        for information, torch_path_ms (our pure-torch path on CPU) and dynamic_ms
        (``dynamic_voxelize`` + ``scatter_mean`` of the point features).
    """
    from spconv.pytorch.utils import PointToVoxel

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for name, points, (_, size, pc_range, max_points, max_voxels) in _inputs():
            tensor = torch.from_numpy(points)
            peer = PointToVoxel(size, pc_range, points.shape[1], max_voxels, max_points, torch.device("cpu"))
            ours = vx.voxelize(points, size, pc_range, max_points, max_voxels)
            theirs = peer(tensor)
            if not all(np.array_equal(a, b.numpy()) for a, b in zip(ours, theirs, strict=True)):
                raise AssertionError(f"voxelize and spconv PointToVoxel disagree on {name}")
            ours_s, peer_s = time_in_turns(
                [
                    lambda: vx.voxelize(points, size, pc_range, max_points, max_voxels),  # noqa: B023
                    lambda: peer(tensor),  # noqa: B023
                ],
                repeats,
            )

            def torch_path() -> object:
                vx._TORCH_ON_CPU = True
                try:
                    return vx.voxelize(tensor, size, pc_range, max_points, max_voxels)  # noqa: B023
                finally:
                    vx._TORCH_ON_CPU = False

            def dynamic() -> torch.Tensor:
                return vx.dynamic_voxelize(tensor, size, pc_range).mean(tensor)  # noqa: B023

            torch_s, dynamic_s = time_in_turns([torch_path, dynamic], max(1, repeats // 3))
            rows.append(
                {
                    "op": "voxelize",
                    "input": f"{name} → {len(ours[0])} voxels",
                    "ours_ms": ours_s * 1e3,
                    "peer": "spconv PointToVoxel (CPU)",
                    "peer_ms": peer_s * 1e3,
                    "speedup": peer_s / ours_s,
                    "torch_path_ms": torch_s * 1e3,
                    "dynamic_ms": dynamic_s * 1e3,
                }
            )
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    for row in bench_voxelize():
        print(
            f"{row['input']:<80} ours {row['ours_ms']:7.2f} ms  spconv {row['peer_ms']:7.2f} ms  "
            f"×{row['speedup']:.2f}   torch path {row['torch_path_ms']:7.1f} ms  "
            f"dynamic+mean {row['dynamic_ms']:7.1f} ms"
        )
