"""What writers need under DDP: one process clears a folder while the others wait, and the per-process
parts of an epoch's single file gathered to rank 0, which writes it.

Both are no-ops in one process (or before ``torch.distributed`` is initialised), so writers call them
unconditionally. The samplers (:mod:`perception.data.samplers`) give each process a disjoint block, in
order, so parts gathered in rank order are the single-process order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import lightning as L
import torch.distributed as dist

__all__ = ["gather_to_rank_zero", "is_distributed", "on_rank_zero_then_wait"]

T = TypeVar("T")


def is_distributed(trainer: L.Trainer) -> bool:
    """More than one process, with ``torch.distributed`` initialised."""
    return trainer.world_size > 1 and dist.is_available() and dist.is_initialized()


def on_rank_zero_then_wait(trainer: L.Trainer, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on rank 0 only, then hold every process until it is done (every rank must call)."""
    if trainer.global_rank == 0:
        fn()
    if is_distributed(trainer):
        trainer.strategy.barrier("perception.on_rank_zero_then_wait")


def gather_to_rank_zero(trainer: L.Trainer, part: T) -> list[T] | None:
    """Every process's ``part`` in rank order on rank 0, None on the others; ``[part]`` in one process.

    Every rank must call. Parts travel through ``torch.distributed.gather_object`` (in-memory
    messages between the run's own processes; nothing is read back from disk).
    """
    if not is_distributed(trainer):
        return [part]
    parts: list[Any] | None = [None] * trainer.world_size if trainer.global_rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    return parts
