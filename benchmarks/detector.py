"""Detector inference speed on KITTI-sized scans (``python tools/benchmark.py detector``).

Per frame, batch size 1, in eval mode without gradients, on the CPU: reading the scan and the
validation transforms (camera field of view, range), then the model (voxelization, point-to-voxel
encoder, BEV backbone, CenterPoint head, decoding with rotated NMS, and the point refinement stage
where the config has one). Each config is timed beside ``pointpillars_synthetic.yaml`` in the same run
(PointPillars' max-pool encoder is the peer of the attention encoder), and against the issue's budget
of 0.5 s a frame. Weights come from a checkpoint when one is given (the number of boxes decoded, and
so NMS, depends on them); otherwise the freshly initialised model is timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from benchmarks import REPO
from benchmarks.timing import time_in_turns

__all__ = ["bench_detector", "build_detector"]

KITTI = REPO.parent / "shared" / "data" / "kitti"
BUDGET_S = 0.5


def build_detector(config: str | os.PathLike, checkpoint: str | os.PathLike | None = None):
    """The ``model.model`` tree of a training config as a :class:`~perception.models.Detector`.

    Args:
        config: a config YAML path, or a bare name in ``configs/``.
        checkpoint: optional Lightning checkpoint (or task state dict) whose ``model.*`` weights to load
            (``weights_only=True``).

    Returns:
        (detector in eval mode, the config's ``data`` section as a dict).
    """
    from jsonargparse import ArgumentParser

    from perception.cli import CONFIG_DIR
    from perception.models import Detector

    path = Path(config)
    if not path.is_file():
        path = (CONFIG_DIR / path).with_suffix(".yaml")
    content = yaml.safe_load(path.read_text())
    parser = ArgumentParser()
    parser.add_argument("--model", type=Detector)
    detector = parser.instantiate(parser.parse_object({"model": content["model"]["model"]})).model
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        detector.load_state_dict(state, strict=True)
    return detector.eval(), content.get("data", {})


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
    from perception.data.datamodules import default_val_transforms
    from perception.structures import collate

    if threads is not None:
        torch.set_num_threads(threads)
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(configs)
    models, datasets = [], []
    for config, ckpt in zip(configs, checkpoints, strict=True):
        detector, data = build_detector(config, ckpt)
        transforms = default_val_transforms(data.get("point_cloud_range"))
        models.append(detector)
        datasets.append(_FrameDataset(root, frames, data.get("class_names", ["Car"]), transforms))

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
                "points in → used": f"{datasets[i].raw_points} → {sample.points.shape[0]}",
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


class _FrameDataset:
    """The given frames of a KITTI-layout root with the validation transforms (no split file needed)."""

    def __init__(self, root, frames, class_names, transforms) -> None:
        import tempfile

        from perception.data.kitti import read_velodyne, write_split

        self._tmp = tempfile.TemporaryDirectory(prefix="perception-bench-")
        view = Path(self._tmp.name)
        (view / "training").mkdir()
        for folder in ("velodyne", "calib", "label_2", "image_2"):
            if (Path(root) / "training" / folder).is_dir():
                (view / "training" / folder).symlink_to(Path(root).resolve() / "training" / folder)
        write_split(view, "bench", list(frames))
        from perception.data.datasets import KittiDetectionDataset

        self.dataset = KittiDetectionDataset(view, "bench", class_names, transforms)
        self.raw_points = len(read_velodyne(Path(root) / "training" / "velodyne" / f"{frames[0]}.bin"))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def _main() -> None:  # pragma: no cover - manual use
    t0 = time.perf_counter()
    for row in bench_detector():
        print(row)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
