"""What DDP needs beyond Lightning's strategy so that many processes give the single-process answers.

- Writers: one process clears a folder while the others wait (:func:`on_rank_zero_then_wait`), and
  the per-process parts of an epoch's single file are gathered to rank 0, which writes it
  (:func:`gather_to_rank_zero`).
- :class:`BroadcastBuffers`: every process evaluates rank 0's BatchNorm statistics (those the
  checkpoint holds); each process's drift apart during training, where DDP syncs only gradients.

Both are no-ops in one process (or before ``torch.distributed`` is initialised), so writers call them
unconditionally. The samplers (:mod:`perception.data.samplers`) give each process a disjoint block, in
order, so parts gathered in rank order are the single-process order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import lightning as L
import torch.distributed as dist

__all__ = ["BroadcastBuffers", "gather_to_rank_zero", "is_distributed", "on_rank_zero_then_wait"]

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


class BroadcastBuffers(L.Callback):
    """Copies rank 0's buffers (BatchNorm running statistics) to every process before each validation and
    test, so that a fit's validations under DDP score the model its checkpoint holds.

    DDP broadcasts buffers at every training forward, but each process then updates its statistics
    with its own batches, so after the last step they differ; Lightning's validation does not run
    through the DDP wrapper and would evaluate each shard with its process's own statistics. A no-op
    in one process.
    """

    def _broadcast(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if is_distributed(trainer):
            for buffer in pl_module.buffers():
                dist.broadcast(buffer.data, src=0)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._broadcast(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._broadcast(trainer, pl_module)
