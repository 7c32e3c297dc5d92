"""Exact resume: a fit killed at any point and resumed with ``--ckpt_path last`` ends with the weights an
uninterrupted run ends with (same seed, CPU).

Lightning's checkpoint already holds the weights, the optimiser and scheduler states and the loops'
progress; the data modules add where in its epoch the fit was (:meth:`EpochDataModule.state_dict
<perception.data.datamodules.EpochDataModule.state_dict>`, so the resumed epoch skips the batches
trained on) and augmentation is keyed by ``(seed, epoch, index)``. This module adds the rest:

- :class:`RngState`: the global random states (torch, CUDA, NumPy, Python; dropout and the refinement
  stage's box jitter draw from them) in every checkpoint, restored at the first training batch after
  resuming;
- :class:`StepCheckpoint`: ``last.ckpt`` every N training steps, so a kill loses at most N steps;
- :func:`find_last_checkpoint`: what ``--ckpt_path last`` means in the CLIs — the newest ``last.ckpt``
  of *any* earlier version of the run's logger, or SLURM's time-limit checkpoint (Lightning's own
  ``"last"`` looks only in the new version's empty folder).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["RngState", "StepCheckpoint", "find_last_checkpoint", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """The global random states as tensors and plain values (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 (the global state is what is saved)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where as many devices are present)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


class RngState(L.Callback):
    """Saves the global random states in every checkpoint and restores them when training resumes.

    They are restored at the first training batch after loading, not at loading: between the two
    Lightning runs the sanity check and starts the loaders, which an uninterrupted run did not do at
    that point. (The data modules' loaders draw from their own generators, so nothing between a
    checkpoint and the next training batch draws from the global ones.) Under DDP the checkpoint holds
    rank 0's states and every rank resumes with them.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) if state_dict else None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            set_rng_state(self._pending)
            self._pending = None


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` training steps, mid-epoch included (and nothing else:
    the epoch checkpoints keep the best and the last of each epoch).

    Args:
        every_n_train_steps: steps between saves; 0 saves only at the end of every epoch.
        dirpath: the folder (default: the logger's ``version_N/checkpoints``, where the epoch
            checkpoints go).

    Writes are atomic (Lightning writes a temporary file and moves it), so a kill while saving leaves
    the previous ``last.ckpt``.
    """

    def __init__(self, every_n_train_steps: int = 200, dirpath: str | None = None) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"step_checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps or None,
            enable_version_counter=False,  # the epoch checkpoint writes the same last.ckpt
        )


def _last_files(folder: Path) -> list[Path]:
    return [p for p in folder.glob("last*.ckpt") if p.is_file()]


def find_last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest ``last*.ckpt`` a fit of this configuration wrote, or None.

    Looks in every :class:`ModelCheckpoint`'s explicit ``dirpath``, in ``<save_dir>/<name>/*/checkpoints``
    of the first logger (every version of the run: each start of a fit logs to a new one), in
    ``<default_root_dir>/checkpoints`` when there is no logger, and at the ``hpc_ckpt_<n>.ckpt`` files
    Lightning's SLURM plug-in writes into ``default_root_dir`` when warned of the time limit
    (SIGUSR1); the newest file wins.
    """
    candidates: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            candidates += _last_files(Path(callback.dirpath))
    if trainer.loggers:
        logger = trainer.loggers[0]
        save_dir = logger.save_dir or trainer.default_root_dir
        name = logger.name or ""
        for folder in (Path(save_dir) / name).glob("*/checkpoints"):
            candidates += _last_files(folder)
    else:
        candidates += _last_files(Path(trainer.default_root_dir) / "checkpoints")
    candidates += [p for p in Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt") if p.is_file()]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, str(p)))
