"""Speed of the synthetic LiDAR generator (:mod:`perception.data.synthetic`): simulation alone, and end to
end with file writing."""

from __future__ import annotations

import tempfile
import time

import numpy as np

from perception.data.synthetic.config import SyntheticConfig
from perception.data.synthetic.generator import generate_frame
from perception.data.synthetic.writer import write_dataset

__all__ = ["benchmark_synthetic"]


def benchmark_synthetic(frames: int = 50, seed: int = 0, workers: tuple[int, ...] = (1, 2)) -> dict:
    """Time ``frames`` frames (after a warm-up frame that loads the numba cache).

    Returns:
        ``simulation_fps`` and ``simulation_ms_per_frame`` (``generate_frame`` in this process, wall
        clock), ``simulation_cpu_ms_per_frame`` (CPU time: robust to other load on the machine),
        ``points_per_frame`` (mean), ``labels_per_frame`` (mean), and for each worker count W
        ``write_fps_wW``: frames a second of :func:`write_dataset` into a temporary folder,
        process start-up included.
    """
    if frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {frames}")
    config = SyntheticConfig()
    generate_frame(config, seed, frames)  # warm-up: numba cache / compile
    start, cpu_start = time.perf_counter(), time.process_time()
    points, labels = [], []
    for i in range(frames):
        f = generate_frame(config, seed, i)
        points.append(len(f.points))
        labels.append(len(f.names))
    sim = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    result = {
        "frames": frames,
        "simulation_fps": frames / sim,
        "simulation_ms_per_frame": 1000.0 * sim / frames,
        "simulation_cpu_ms_per_frame": 1000.0 * cpu / frames,
        "points_per_frame": float(np.mean(points)),
        "labels_per_frame": float(np.mean(labels)),
    }
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_dataset(tmp, frames=frames, seed=seed, workers=w)
            result[f"write_fps_w{w}"] = frames / (time.perf_counter() - start)
    return result
