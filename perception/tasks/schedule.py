"""The optimiser every task here uses: AdamW with a one-cycle learning rate (cosine), stepped per batch."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch

__all__ = ["adamw_one_cycle", "adamw_one_cycle_from_hparams"]


def adamw_one_cycle(
    module: L.LightningModule,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float,
    pct_start: float,
    div_factor: float,
) -> dict:
    """``configure_optimizers``' return value: AdamW over ``params`` and a one-cycle schedule over the
    trainer's estimated steps (peak ``lr`` after ``pct_start`` of them, from ``lr / div_factor``)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    total = max(int(module.trainer.estimated_stepping_batches), 1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=lr,
        total_steps=total,
        pct_start=pct_start,
        div_factor=div_factor,
        anneal_strategy="cos",
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def adamw_one_cycle_from_hparams(module: L.LightningModule) -> dict:
    """:func:`adamw_one_cycle` over all of ``module``'s parameters, with the ``lr``, ``weight_decay``,
    ``pct_start`` and ``div_factor`` of its ``hparams``."""
    hp = module.hparams
    return adamw_one_cycle(module, module.parameters(), hp.lr, hp.weight_decay, hp.pct_start, hp.div_factor)
