"""The GPU check's moving parts: options, a check's definition, timing on a device, float32 strictness.

A check (:class:`CheckSpec`) builds its inputs once, on the CPU and seeded (:class:`Case`), and then
runs on a device: ``case.run(device)`` copies the inputs (and, for models, the same ``state_dict``)
to that device, runs, and returns its outputs as CPU tensors with the seconds of its timed part.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from perception.gpu_check.compare import Rule
from perception.ops import iou3d, roi_points
from perception.ops import voxelize as voxelize_module

__all__ = ["Case", "CheckSpec", "Options", "strict_float32", "synchronize", "tensor_paths", "timed", "to_cpu"]

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """What to run.

    Attributes:
        quick: smaller inputs and fewer repeats (the CPU half in well under a minute on 2 cores).
        seed: seeds every input and every model's weights.
        second: the device compared with the CPU: ``"cuda"``, ``"cpu"`` (the CPU against itself, the
            second run through the tensor code paths a GPU takes: for testing the check), or None
            (no second device: the CPU half only).
        only: run the checks whose name contains one of these words (all when empty).
        perturb: break the second run's outputs of the checks whose name contains this word (testing).
        speed: time the Waymo-sized detector.
    """

    quick: bool = False
    seed: int = 0
    second: str | None = None
    only: tuple[str, ...] = ()
    perturb: str | None = None
    speed: bool = True


@dataclass
class Case:
    """A check made ready to run.

    Attributes:
        inputs: the inputs in words (sizes).
        rules: how each output is compared, by output name.
        run: ``run(device) -> (outputs, seconds)``: outputs by name as CPU tensors (or dicts of them,
            or :class:`~perception.gpu_check.compare.KeptBoxes`), and the wall time of the timed part
            (the op or the training step, not the copies to the device).
        default: the rule of every output the reference run returns that ``rules`` does not name
            (for checks whose outputs are only known once run), or None.
    """

    inputs: str
    rules: dict[str, Rule]
    run: Callable[[torch.device], tuple[dict[str, Any], float]]
    default: Rule | None = None

    def rules_for(self, outputs: dict[str, Any]) -> dict[str, Rule]:
        """The rules of a run's ``outputs``: :attr:`rules`, then :attr:`default` for the others."""
        extra = (
            {}
            if self.default is None
            else dict.fromkeys((k for k in outputs if k not in self.rules), self.default)
        )
        return {**self.rules, **extra}


@dataclass(frozen=True)
class CheckSpec:
    """A named check: ``build(options)`` makes its :class:`Case` (inputs on the CPU, seeded).

    Attributes:
        name: ``hilbert``, ``sparse_conv``, ``train/pvt_synthetic``, ...
        group: ``op``, ``train`` (one training step of a model) or ``infer`` (an eval-mode forward).
        what: one line on what it runs.
        build: makes the case; errors here fail the check with their message.
        tags: what the check covers (the op modules, the model family) for the report.
    """

    name: str
    group: str
    what: str
    build: Callable[[Options], Case]
    tags: tuple[str, ...] = field(default_factory=tuple)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def to_cpu(value: Any) -> Any:
    """Tensors (and dicts of them) detached and copied to the CPU."""
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return value


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """float32 really float32 on a GPU: no TF32 in matmuls nor in cuDNN convolutions (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def tensor_paths(enabled: bool = True) -> Iterator[None]:
    """CPU tensors through the ops' pure-torch code, the path CUDA tensors take (hard voxelization,
    rotated IoU / NMS, RoI point pooling; their test switch ``_TORCH_ON_CPU``), restored after."""
    modules = (voxelize_module, iou3d, roi_points)
    saved = [m._TORCH_ON_CPU for m in modules]
    try:
        for m in modules:
            m._TORCH_ON_CPU = enabled
        yield
    finally:
        for m, value in zip(modules, saved, strict=True):
            m._TORCH_ON_CPU = value
