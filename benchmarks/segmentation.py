"""Per-point segmentation backbones on a real KITTI scan, CPU (``python -m benchmarks.segmentation``).

Every backbone has the ``Point2PointBackbone`` contract, ``forward(points (N, C), batch_index (N,))
-> (N, C')``, and is timed on the same input in the same run, the functions taking turns:

- **forward**: KITTI ``training/velodyne/000000.bin`` (115,384 points, x, y, z, reflectance, the whole
  360° scan, no range filter), batch of 1, eval mode, no gradients; median of ``repeats``.
- **training**: a batch of ``train_batch`` scans (000000, 000001, ...) in train mode: backbone, a
  ``Linear`` classifier to ``num_classes``, cross-entropy against labels made from each point's height
  (fixed bands, the labels do not matter for speed), backward, one SGD step; samples a second is
  ``train_batch`` over the median step time.

Each backbone is one entry of :data:`BACKBONES`: a name and a function ``in_channels -> nn.Module``
building it with its default settings. To add one (Point2Point, ...), write that function and add it
there; the rows gain its numbers and its time relative to the first backbone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from benchmarks import REPO
from benchmarks.timing import time_in_turns

__all__ = ["BACKBONES", "bench_segmentation", "kitti_scans"]

VELODYNE = REPO / "tests" / "data" / "kitti" / "training" / "velodyne"


def point2point(in_channels: int) -> nn.Module:
    """Point2Point as ``configs/p2p_seg_synthetic.yaml`` has it (0.1 m cells, Hilbert order, 1D
    convolutions of kernel 5, widths 32-64-128-256, level strides 4-4-2)."""
    from perception.models import Point2PointBackbone

    return Point2PointBackbone(in_channels, 64, grid_size=0.1, strides=(4, 4, 2))


def point2point_stride2(in_channels: int) -> nn.Module:
    """Point2Point at the class defaults (every level a stride of 2: more tokens at the coarse levels)."""
    from perception.models import Point2PointBackbone

    return Point2PointBackbone(in_channels, 64, grid_size=0.1)


def sparse_unet(in_channels: int) -> nn.Module:
    """The MinkUNet-like baseline at its defaults (0.1 m voxels, widths 32-64-128-256, one block a level)."""
    from perception.models import SparseUNet

    return SparseUNet(in_channels)


BACKBONES: dict[str, Callable[[int], nn.Module]] = {
    "point2point": point2point,
    "point2point_stride2": point2point_stride2,
    "sparse_unet": sparse_unet,
}


def kitti_scans(frames: Sequence[str]) -> list[torch.Tensor]:
    """The shipped KITTI scans as (N, 4) float32 tensors."""
    from perception.data.kitti import read_velodyne

    return [torch.from_numpy(read_velodyne(VELODYNE / f"{f}.bin")) for f in frames]


def _batch(clouds: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(clouds)])
    return torch.cat(list(clouds)), index


def bench_segmentation(
    backbones: Sequence[str] | None = None,
    threads: int = 2,
    repeats: int = 5,
    train_batch: int = 2,
    num_classes: int = 20,
) -> list[dict]:
    """Forward milliseconds on one scan and training samples/s, one row per backbone (module doc).

    Args:
        backbones: names from :data:`BACKBONES` (default: all).
        threads: ``torch.set_num_threads`` for the run (restored afterwards).
        repeats: timed runs per phase (after one warm-up run).
        train_batch: scans per training step (at most the 3 shipped scans).
    """
    names = list(BACKBONES) if backbones is None else list(backbones)
    scans = kitti_scans(("000000", "000001", "000002")[: max(1, train_batch)])
    fwd_points, fwd_index = _batch(scans[:1])
    train_points, train_index = _batch(scans[:train_batch])
    bands = torch.tensor(np.linspace(-2.0, 3.0, num_classes - 1), dtype=torch.float32)
    labels = torch.bucketize(train_points[:, 2].contiguous(), bands)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        models = {n: BACKBONES[n](fwd_points.shape[1]) for n in names}
        classifiers = {n: nn.Linear(m.out_channels, num_classes) for n, m in models.items()}
        optimizers = {
            n: torch.optim.SGD([*models[n].parameters(), *classifiers[n].parameters()], lr=1e-3, momentum=0.9)
            for n in names
        }

        def forward(name: str) -> None:
            model = models[name].eval()
            with torch.no_grad():
                model(fwd_points, fwd_index)

        def train_step(name: str) -> None:
            model = models[name].train()
            logits = classifiers[name](model(train_points, train_index))
            loss = nn.functional.cross_entropy(logits, labels)
            optimizers[name].zero_grad()
            loss.backward()
            optimizers[name].step()

        fwd_s = time_in_turns([lambda n=n: forward(n) for n in names], repeats=repeats)
        train_s = time_in_turns([lambda n=n: train_step(n) for n in names], repeats=repeats)
    finally:
        torch.set_num_threads(previous)

    rows = []
    for i, name in enumerate(names):
        rows.append(
            {
                "backbone": name,
                "params": sum(p.numel() for p in models[name].parameters()),
                "points": len(fwd_points),
                "forward_ms": fwd_s[i] * 1e3,
                f"train_step_ms (batch {train_batch})": train_s[i] * 1e3,
                "train_samples_per_s": train_batch / train_s[i],
                f"forward_vs_{names[0]}": fwd_s[i] / fwd_s[0],
                "threads": threads,
            }
        )
    return rows


def _main() -> None:  # pragma: no cover - manual use
    t0 = time.perf_counter()
    for row in bench_segmentation():
        print(row)
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
