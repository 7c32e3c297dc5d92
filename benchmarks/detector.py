"""Detector inference speed on KITTI-sized scans (``python tools/benchmark.py detector``).

Per frame, batch size 1, on the CPU: reading the scan and the validation transforms (camera field of
view, range) — the *data* time — then the *model*: voxelization, point-to-voxel encoder, BEV
backbone, CenterPoint head, decoding with rotated NMS, and the point refinement stage where the config
has one. The model runs as prediction runs it (``tools/eval.py``, :class:`perception.inference.Predictor`):
eval mode under ``torch.inference_mode`` and the trainer's precision (the quickstart configs' bf16
autocast), so the timed path is the one whose AP ``tools/eval.py`` reports: the inference path of
:mod:`perception.models.inference_path` (the modules' own numbers, bit for bit, with fewer passes).
With ``reference=True`` the same models are also timed on their own layers
(:func:`~perception.models.inference_path.reference_path`), in the same turns.

Each config is timed beside ``pointpillars_synthetic.yaml`` in the same run (PointPillars' max-pool
encoder is the peer of the attention encoder), the functions taking turns (:func:`time_in_turns`),
and against the real-time budget: a spinning LiDAR's 10 scans a second with half to spare, 50 ms a
frame end to end. The task is loaded as every tool loads one (:func:`perception.inference.load_task`):
weights from a checkpoint when one is given (the number of boxes decoded, and so NMS and the
refinement, depends on them), otherwise the config's initial weights.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks import REPO
from benchmarks.timing import time_in_turns

__all__ = ["bench_detector"]

KITTI = REPO / "tests" / "data" / "kitti"
BUDGET_S = 0.05  # 10 scans a second with half the time to spare


def bench_detector(
    configs: Sequence[str] = ("pvt_synthetic", "pointpillars_synthetic"),
    checkpoints: Sequence[str | None] | None = None,
    frames: Sequence[str] = ("000000", "000001", "000002"),
    root: str | os.PathLike = KITTI,
    repeats: int = 5,
    threads: int | None = None,
    reference: bool = False,
) -> list[dict]:
    """Median milliseconds a frame for each config on the KITTI scans of ``root`` (module docstring).

    Returns:
        One row per config: points per scan (before/after the filters), the precision, data and model
        milliseconds, the frame's total, frames per second, the time relative to PointPillars' and to
        the 50 ms budget, and with ``reference`` the model's milliseconds on its own layers.
    """
    from perception.data.kitti import read_velodyne
    from perception.inference import load_task
    from perception.models.inference_path import reference_path
    from perception.structures import collate

    if threads is not None:
        torch.set_num_threads(threads)
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(configs)
    loaded = []
    for config, ckpt in zip(configs, checkpoints, strict=True):
        task = load_task(ckpt, config, ["--trainer.accelerator", "cpu"], data_root=root)
        dataset = task.datamodule.make_dataset("bench", folder="training", frame_ids=list(frames))
        loaded.append((task.task.model, dataset, task.trainer))
    raw_points = len(read_velodyne(Path(root) / "training" / "velodyne" / f"{frames[0]}.bin"))

    def run(model, dataset, trainer, eager: bool) -> None:
        with torch.inference_mode(), trainer.precision_plugin.forward_context():
            with reference_path() if eager else contextlib.nullcontext():
                for i in range(len(dataset)):
                    batch = collate([dataset[i]])
                    model.predict(model(batch), batch)

    def load(dataset) -> None:
        for i in range(len(dataset)):
            collate([dataset[i]])

    fns = [lambda m=m, d=d, t=t: run(m, d, t, False) for m, d, t in loaded]
    fns += [lambda d=d: load(d) for _, d, _ in loaded]
    if reference:
        fns += [lambda m=m, d=d, t=t: run(m, d, t, True) for m, d, t in loaded]
    times = time_in_turns(fns, repeats=repeats, warmup=1)
    n, k = len(frames), len(configs)
    peer = next((i for i, c in enumerate(configs) if "pointpillars" in str(c)), None)
    rows = []
    for i, config in enumerate(configs):
        total, data = times[i] / n, times[k + i] / n
        sample = loaded[i][1][0]
        row = {
            "model": config,
            "weights": "checkpoint" if checkpoints[i] else "initial",
            "points in → used": f"{raw_points} → {sample.points.shape[0]}",
            "precision": str(loaded[i][2].precision),
            "data_ms": data * 1e3,
            "model_ms": (total - data) * 1e3,
            "frame_ms": total * 1e3,
            "fps": 1.0 / total,
            "pointpillars_time_ratio": times[i] / times[peer] if peer is not None else float("nan"),
            "budget_50ms": total / BUDGET_S,
            "threads": torch.get_num_threads(),
        }
        if reference:
            row["reference_model_ms"] = (times[2 * k + i] / n - data) * 1e3
        rows.append(row)
    return rows


def _main() -> None:  # pragma: no cover - manual use
    t0 = time.perf_counter()
    for row in bench_detector():
        print(row)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
