"""Occupancy forecasters on real-shaped samples, CPU (``python -m benchmarks.occupancy``).

Point2Point (``configs/p2p_occupancy_synthetic.yaml``'s model) against the BEV baseline
(``bev_occupancy_synthetic.yaml``'s), timed on the same input in the same run, taking turns:

- the input: a short sequence of the synthetic generator with the embedded data's settings (40
  frames, written to a temporary folder), its first samples as the occupancy dataset makes them (5
  sweeps stacked in the current frame, at most 30,000 points, the 128 × 128 grid of 0.5 m, 4
  waypoints);
- **forward**: one sample, eval mode, no gradients; median of ``repeats``;
- **training**: a batch of ``train_batch`` samples through the task's loss, backward and an AdamW
  step; samples a second is ``train_batch`` over the median step time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import torch
from torch import nn

from benchmarks.timing import time_in_turns

__all__ = ["FORECASTERS", "bench_occupancy"]

GRID = {"height": 128, "width": 128, "pixels_per_meter": 2.0, "ego_col": 64, "ego_row": 96}


def point2point() -> nn.Module:
    from perception.models.occupancy import Point2PointOccupancyNet
    from perception.structures.occupancy import OccupancyGrid

    return Point2PointOccupancyNet(OccupancyGrid(**GRID), 4)


def pillars() -> nn.Module:
    from perception.models.occupancy import PillarOccupancyNet
    from perception.structures.occupancy import OccupancyGrid

    return PillarOccupancyNet(OccupancyGrid(**GRID), 4)


FORECASTERS: dict[str, Callable[[], nn.Module]] = {"point2point": point2point, "bev_pillars": pillars}


def _samples(count: int):
    from perception.data.occupancy import SYNTHETIC_OCCUPANCY, OccupancyDataset
    from perception.data.sequences import open_sequences
    from perception.data.synthetic.writer import write_dataset
    from perception.structures.occupancy import OccupancyGrid

    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(tmp, frames=40, sequences=1, config=SYNTHETIC_OCCUPANCY, val_fraction=0.0)
        ds = OccupancyDataset(open_sequences(tmp), grid=OccupancyGrid(**GRID), max_points=30000)
        return [ds[i] for i in range(0, 4 * count, 4)]


def bench_occupancy(threads: int = 2, repeats: int = 5, train_batch: int = 2) -> list[dict]:
    """Forward milliseconds on one sample and training samples/s, one row per forecaster (module doc)."""
    from perception.structures import collate
    from perception.tasks.occupancy import OccupancyTask

    samples = _samples(train_batch)
    one, batch = collate(samples[:1]), collate(samples)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        tasks = {n: OccupancyTask(build()) for n, build in FORECASTERS.items()}
        optimizers = {n: torch.optim.AdamW(t.parameters(), 1e-3) for n, t in tasks.items()}

        def forward(name: str) -> None:
            task = tasks[name].eval()
            with torch.no_grad():
                task(one)

        def train_step(name: str) -> None:
            task = tasks[name].train()
            loss = task.loss(task(batch), batch.occupancy)["loss"]
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()

        names = list(tasks)
        fwd_s = time_in_turns([lambda n=n: forward(n) for n in names], repeats=repeats)
        train_s = time_in_turns([lambda n=n: train_step(n) for n in names], repeats=repeats)
    finally:
        torch.set_num_threads(previous)
    return [
        {
            "forecaster": name,
            "params": sum(p.numel() for p in tasks[name].parameters()),
            "points": len(one.points),
            "forward_ms": fwd_s[i] * 1e3,
            f"train_step_ms (batch {train_batch})": train_s[i] * 1e3,
            "train_samples_per_s": train_batch / train_s[i],
            f"forward_vs_{names[-1]}": fwd_s[i] / fwd_s[-1],
            "threads": threads,
        }
        for i, name in enumerate(names)
    ]


if __name__ == "__main__":
    for row in bench_occupancy():
        print(row)
