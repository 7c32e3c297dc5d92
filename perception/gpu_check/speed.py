"""Training and inference speed of the Waymo detector (``configs/pvt_waymo.yaml``) on Waymo-sized frames.

The detector is the config's (PVTransformer encoder on 0.2 m pillars over ±75.2 m, BEV backbone,
CenterPoint head, point refinement stage), built with random weights at the seed; the heatmap is
then calibrated as the invariance certificate does (:meth:`task_family(task).calibrate`: 0.5 % of
the cells above the score threshold), so that decoding and NMS see a plausible number of proposals
rather than every cell at the threshold. Frames are :func:`~perception.gpu_check.inputs.waymo_sized_frame`
(170 k points each, objects as true boxes).

- **Inference**: eval mode, no gradients: the forward, then ``predict`` (decode, NMS, refinement).
- **Training**: train mode, ``training_step`` + ``backward`` + an AdamW step (lr 1e-4).

Inference runs first (training moves the weights). Frames/s is the batch size over the median step
time, after warm-up steps; peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps
(None on the CPU). float32 uses PyTorch's defaults (cuDNN may use TF32 for convolutions); bf16-mixed
is ``torch.autocast(dtype=torch.bfloat16)``, as ``--trainer.precision bf16-mixed`` trains.
"""

from __future__ import annotations

import contextlib
import statistics
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from perception.cli import CONFIG_DIR
from perception.gpu_check.core import timed
from perception.gpu_check.inputs import WAYMO_CONFIG, config_range, waymo_sized_frame
from perception.invariance import Clouds, build_task, task_family
from perception.structures import Batch, Sample, collate

__all__ = ["SpeedResult", "SpeedSetup", "detector_speed"]


@dataclass(frozen=True)
class SpeedSetup:
    """How much to time: ``frames`` per batch of ``points`` each, ``warmup`` then ``steps`` timed steps
    per mode, at each of ``precisions`` (``float32``, ``bf16-mixed``)."""

    frames: int
    points: int
    steps: int
    warmup: int
    precisions: tuple[str, ...] = ("float32",)


@dataclass
class SpeedResult:
    """One precision's timings on one device.

    Attributes:
        device: ``cpu`` or ``cuda``.
        config: the detector's config.
        precision: ``float32`` or ``bf16-mixed``.
        frames: frames per batch; points_per_frame: points in each.
        steps: timed steps per mode (after ``warmup``).
        infer_fps, train_fps: frames per second (batch / median step time).
        infer_peak_mib, train_peak_mib: peak GPU memory allocated during the timed steps, MiB (None on the CPU).
        error: why it did not run (None when it did).
    """

    device: str
    config: str
    precision: str
    frames: int
    points_per_frame: int
    steps: int
    warmup: int
    infer_fps: float | None = None
    train_fps: float | None = None
    infer_peak_mib: float | None = None
    train_peak_mib: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "float32":
        return torch.autocast(device.type, enabled=False)
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be float32 or bf16-mixed, got {precision!r}")


def _median_seconds(
    device: torch.device, fn: Callable[[], object], setup: SpeedSetup
) -> tuple[float, float | None]:
    """Median seconds of ``fn`` over the timed steps, and the peak MiB allocated during them (CUDA)."""
    for _ in range(setup.warmup):
        timed(device, fn)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = [timed(device, fn)[1] for _ in range(setup.steps)]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(seconds), peak


def _batch(setup: SpeedSetup, seed: int, config: str, channels: int) -> Batch:
    """Waymo-sized frames inside ``config``'s range, their first ``channels`` point columns."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(setup.frames):
        points, boxes, labels = waymo_sized_frame(rng, setup.points, point_cloud_range=config_range(config))
        samples.append(
            Sample(
                frame_id=f"frame{i}",
                points=np.ascontiguousarray(points[:, :channels]),
                boxes=boxes,
                labels=labels,
                difficulty=np.zeros(len(boxes), np.int32),
            )
        )
    return collate(samples)


def detector_speed(
    device: torch.device, setup: SpeedSetup, seed: int = 0, config: str = WAYMO_CONFIG
) -> list[SpeedResult]:
    """Time a detection config's detector on ``device`` (module docstring; default
    :data:`~perception.gpu_check.inputs.WAYMO_CONFIG`, frames inside the config's range).

    Returns:
        One :class:`SpeedResult` per precision; a precision that fails (out of memory, an op that
        does not run on the device) carries its error instead of numbers.
    """
    results = [
        SpeedResult(str(device.type), config, p, setup.frames, setup.points, setup.steps, setup.warmup)
        for p in setup.precisions
    ]
    try:
        task: nn.Module = build_task(CONFIG_DIR / config, seed=seed).to(device)
        channels = int(getattr(task.model.encoder, "in_channels", 5))
        batch = _batch(setup, seed, config, channels).to(device)
        with torch.no_grad():
            task_family(task).calibrate(Clouds(batch.points, batch.batch_index, batch.batch_size))
    except Exception as err:  # the whole section could not start: every row says why
        for r in results:
            r.error = f"{type(err).__name__}: {err}".splitlines()[0]
        return results

    def infer() -> object:
        output = task(batch)
        return task.model.predict(output, batch)

    task.eval()
    for r in results:
        try:
            with torch.no_grad(), _autocast(device, r.precision):
                seconds, r.infer_peak_mib = _median_seconds(device, infer, setup)
            r.infer_fps = setup.frames / seconds
        except Exception as err:
            r.error = f"inference: {type(err).__name__}: {err}".splitlines()[0]

    task.train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)

    def train_step(precision: str) -> Callable[[], object]:
        def step() -> object:
            optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings(), _autocast(device, precision):
                warnings.simplefilter("ignore")  # self.log without a trainer
                loss = task.training_step(batch, 0)
            loss.backward()
            optimizer.step()
            return loss

        return step

    for r in results:
        if r.error is not None:
            continue
        try:
            seconds, r.train_peak_mib = _median_seconds(device, train_step(r.precision), setup)
            r.train_fps = setup.frames / seconds
        except Exception as err:
            r.error = f"training: {type(err).__name__}: {err}".splitlines()[0]
    return results
