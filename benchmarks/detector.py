"""Detector inference speed on KITTI-sized scans (``python tools/benchmark.py detector``).

Per frame, batch size 1, in eval mode without gradients, on the CPU: reading the scan and the
validation transforms (camera field of view, range), then the model (voxelization, point-to-voxel
encoder, BEV backbone, CenterPoint head, decoding with rotated NMS, and the point refinement stage
where the config has one). Each config is timed beside ``pointpillars_synthetic.yaml`` in the same run
(PointPillars' max-pool encoder is the peer of the attention encoder), and against the issue's budget
of 0.5 s a frame. The task is loaded as every tool loads one (:func:`perception.inference.load_task`):
weights from a checkpoint when one is given (the number of boxes decoded, and so NMS, depends on
them), otherwise the config's initial weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks import REPO
from benchmarks.timing import time_in_turns

__all__ = ["bench_detector"]

KITTI = REPO / "tests" / "data" / "kitti"
BUDGET_S = 0.5


def bench_detector(
    configs: Sequence[str] = ("pvt_synthetic", "pointpillars_synthetic"),
    checkpoints: Sequence[str | None] | None = None,
    frames: Sequence[str] = ("000000", "000001", "000002"),
    root: str | os.PathLike = KITTI,
    repeats: int = 5,
    threads: int | None = None,
) -> list[dict]:
    """Median seconds a frame for each config on the KITTI scans of ``root`` (see the module docstring).

    Returns:
        One row per config: points per scan (before/after the filters), data and model milliseconds,
        frames per second, the time relative to PointPillars' and to the budget.
    """
    from perception.data.kitti import read_velodyne
    from perception.inference import load_task
    from perception.structures import collate

    if threads is not None:
        torch.set_num_threads(threads)
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(configs)
    models, datasets = [], []
    for config, ckpt in zip(configs, checkpoints, strict=True):
        loaded = load_task(ckpt, config, ["--trainer.accelerator", "cpu"], data_root=root)
        models.append(loaded.task.model)
        datasets.append(loaded.datamodule.make_dataset("bench", folder="training", frame_ids=list(frames)))
    raw_points = len(read_velodyne(Path(root) / "training" / "velodyne" / f"{frames[0]}.bin"))

    def run(model, dataset) -> None:
        with torch.no_grad():
            for i in range(len(dataset)):
                batch = collate([dataset[i]])
                model.predict(model(batch), batch)

    def load(dataset) -> None:
        for i in range(len(dataset)):
            collate([dataset[i]])

    fns = [lambda m=m, d=d: run(m, d) for m, d in zip(models, datasets, strict=True)]
    fns += [lambda d=d: load(d) for d in datasets]
    times = time_in_turns(fns, repeats=repeats, warmup=1)
    n = len(frames)
    peer = next((i for i, c in enumerate(configs) if "pointpillars" in str(c)), None)
    rows = []
    for i, config in enumerate(configs):
        total, data = times[i] / n, times[len(configs) + i] / n
        sample = datasets[i][0]
        rows.append(
            {
                "model": config,
                "weights": "checkpoint" if checkpoints[i] else "initial",
                "points in → used": f"{raw_points} → {sample.points.shape[0]}",
                "data_ms": data * 1e3,
                "model_ms": (total - data) * 1e3,
                "frame_ms": total * 1e3,
                "fps": 1.0 / total,
                "pointpillars_time_ratio": times[i] / times[peer] if peer is not None else float("nan"),
                "budget_0.5s": total / BUDGET_S,
                "threads": torch.get_num_threads(),
            }
        )
    return rows


def _main() -> None:  # pragma: no cover - manual use
    t0 = time.perf_counter()
    for row in bench_detector():
        print(row)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
