"""Samplers that give the same answers in one process or many, and resume mid-epoch.

- :class:`EpochSampler` (training): ``(epoch, index)`` keys in a per-epoch order that every process
  computes alike; under DDP each of R processes takes every R-th key of that order, padded by wrapping
  to a multiple of R so that all take the same number of steps (as ``DistributedSampler`` does). After
  :meth:`EpochSampler.resume` it skips the keys of an epoch already trained on, so a run resumed from
  a mid-epoch checkpoint sees the batches the killed run would have seen next.
- :class:`ShardSampler` (validation, test, prediction): each process a contiguous block of the
  indices, blocks differing in size by at most one, **unpadded**: every sample is evaluated and
  written exactly once, and the blocks concatenated in rank order are the single-process order.

Both subclass ``DistributedSampler`` so that Lightning uses them as they are under DDP (it wraps any
other sampler in one of its own, which pads evaluation with duplicates); they never touch
``torch.distributed`` themselves: the data module passes the rank and world size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import DistributedSampler

__all__ = ["EpochSampler", "ShardSampler", "shard_bounds"]


def _check_rank(num_replicas: int, rank: int) -> tuple[int, int]:
    num_replicas, rank = int(num_replicas), int(rank)
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} of {num_replicas} processes: need 0 <= rank < num_replicas")
    return num_replicas, rank


class EpochSampler(DistributedSampler):
    """Yields ``(epoch, index)`` keys over ``num_samples`` samples, shuffled per epoch when asked.

    The order of an epoch is ``default_rng([seed, epoch]).permutation(num_samples)`` (or
    ``0..n-1``), the same in every process; process ``rank`` of ``num_replicas`` takes positions
    ``rank, rank + R, ...`` of it after padding by wrapping to a multiple of R (so its length is
    ``ceil(n / R)``). Lightning calls :meth:`set_epoch` at the start of every training epoch.

    Args:
        num_samples: the dataset's length.
        shuffle: permute each epoch (else ``0..n-1``).
        seed: the permutation's seed.
        num_replicas, rank: the number of processes and this one's rank (1 and 0 outside DDP).
    """

    def __init__(
        self, num_samples: int, shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        # DistributedSampler.__init__ is not called: it would ask torch.distributed for the rank.
        self.num_replicas, self.rank = _check_rank(num_replicas, rank)
        self.dataset_size, self.shuffle, self.seed = int(num_samples), bool(shuffle), int(seed)
        self.drop_last = False
        self.num_samples = math.ceil(self.dataset_size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, done: int) -> None:
        """Skip the first ``done`` keys of this process's share of ``epoch`` (the samples a resumed
        checkpoint already trained on); other epochs are whole."""
        if done < 0 or done > self.num_samples:
            raise ValueError(f"cannot skip {done} of the {self.num_samples} samples of an epoch")
        self._resume = (int(epoch), int(done))

    def __len__(self) -> int:
        """This process's samples in a whole epoch (a resumed epoch yields fewer)."""
        return self.num_samples

    def epoch_order(self) -> np.ndarray:
        """(num_samples,) this process's dataset indices for the current epoch, before any skip."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.dataset_size)
        else:
            order = np.arange(self.dataset_size)
        if self.total_size > len(order) and len(order):
            order = np.resize(order, self.total_size)  # wraps around: the first ones again
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.epoch_order()
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1] :]
        epoch = self.epoch
        return iter([(epoch, int(i)) for i in order])


def shard_bounds(num_samples: int, num_replicas: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of process ``rank``'s contiguous block of ``num_samples`` indices: the first
    ``num_samples % R`` blocks hold one more, so sizes differ by at most one and cover every index once."""
    num_replicas, rank = _check_rank(num_replicas, rank)
    base, extra = divmod(int(num_samples), num_replicas)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class ShardSampler(DistributedSampler):
    """Yields process ``rank``'s contiguous block of ``0..num_samples-1`` (:func:`shard_bounds`), in
    order, unpadded: over all processes every index exactly once, in the single-process order.

    Processes may get different numbers of batches; evaluation has no per-batch collective, so that is
    safe (metric states and logged means are gathered once, at the epoch's end).
    """

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.num_replicas, self.rank = _check_rank(num_replicas, rank)
        self.dataset_size = int(num_samples)
        self.start, self.stop = shard_bounds(self.dataset_size, self.num_replicas, self.rank)
        self.shuffle, self.drop_last, self.seed, self.epoch = False, False, 0, 0
        self.num_samples = self.stop - self.start
        self.total_size = self.dataset_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))
