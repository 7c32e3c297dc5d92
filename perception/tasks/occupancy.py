"""``OccupancyTask``: the LightningModule that trains and evaluates occupancy-flow forecasting.

Any forecaster with the contract ``forward(points (N, C), batch_index (N,), batch_size) ->
OccupancyForecast`` of logits (:class:`~perception.models.occupancy.Point2PointOccupancyNet`,
:class:`~perception.models.occupancy.PillarOccupancyNet`). Loss, per waypoint and summed:

- binary cross-entropy of observed and occluded occupancy, every agent class, plus one minus their
  Soft-IoU (the metric itself, pooled over the batch per waypoint and class, where the truth has an
  occupied cell);
- L1 of the vehicle flow over the cells a vehicle truly occupies (moving or not);
- the flow-trace loss of Mahjourian et al. (2022): the true occupancy of the previous waypoint
  warped by the predicted flow, times the predicted occupancy, against the true occupancy (binary
  cross-entropy, and one minus its Soft-IoU) — it ties flow to occupancy the way the flow-grounded
  metric does.

Metrics are evaluator plug-ins (:class:`~perception.eval.occupancy.OccupancyEvaluator`: the Waymo
occupancy-flow metrics of the model and of the label baselines the batch carries, per waypoint).
Every predicting step returns an :class:`~perception.structures.occupancy.OccupancyForecast` of
probabilities with a leading batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from perception.eval.occupancy import OccupancyEvaluator, format_comparison
from perception.models.occupancy import forecast_probabilities
from perception.structures import Batch
from perception.structures.occupancy import OccupancyForecast, OccupancyTargets
from perception.tasks.evaluation import finish_evaluation, log_stage_loss, stage_losses
from perception.tasks.schedule import adamw_one_cycle

__all__ = ["OccupancyTask", "soft_iou_loss", "warp_by_flow"]


def warp_by_flow(origin: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Differentiable backward warp: ``origin`` sampled bilinearly at each cell + its flow, zeros outside.

    Args:
        origin: (B, T, H, W) occupancy at the earlier time.
        flow: (B, T, H, W, 2) backward flow, (dx, dy) = (column, row) cells.

    Returns:
        (B, T, H, W): what each cell held at the earlier time.
    """
    b, t, h, w = origin.shape
    rows = torch.arange(h, device=origin.device, dtype=flow.dtype).view(1, 1, h, 1)
    cols = torch.arange(w, device=origin.device, dtype=flow.dtype).view(1, 1, 1, w)
    x = (cols + flow[..., 0]) * (2.0 / max(w - 1, 1)) - 1.0
    y = (rows + flow[..., 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([x, y], -1).view(b * t, h, w, 2)
    out = F.grid_sample(
        origin.reshape(b * t, 1, h, w), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    return out.view(b, t, h, w)


def soft_iou_loss(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 − Soft-IoU`` over the (waypoint, class) pairs whose truth has an occupied cell.

    Args:
        p, y: (B, T, A, H, W) predicted probabilities and true occupancy; Soft-IoU pools the batch's
            cells, as the metric pools a waypoint's.
    """
    inter = (p * y).sum((0, 3, 4))
    union = p.sum((0, 3, 4)) + y.sum((0, 3, 4)) - inter
    present = y.sum((0, 3, 4)) > 0
    if not bool(present.any()):
        return p.sum() * 0.0
    return (1.0 - inter[present] / union[present].clamp_min(1e-6)).mean()


class OccupancyTask(L.LightningModule):
    """Train, validate, test and predict occupancy and flow at future waypoints from past sweeps.

    Args:
        model: the forecaster (see the module docstring).
        evaluators: metrics on validation and test; default one
            :class:`~perception.eval.occupancy.OccupancyEvaluator` over the model's ``num_waypoints``.
        lr, weight_decay, pct_start, div_factor: AdamW with a one-cycle schedule (cosine).
        occupancy_weight, flow_weight, trace_weight: the three loss terms' weights.
        pos_weight: BCE weight of occupied cells (1: calibrated probabilities, which Soft-IoU needs;
            4 made the predicted mass 2.5 times the true one).
        iou_weight: weight of the Soft-IoU terms (0 turns them off).

    After each validation (test) epoch ``last_metrics`` holds the evaluators' results; after each
    validation of a fit the per-waypoint table of the model beside the baselines is printed (rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        evaluators: Sequence[OccupancyEvaluator] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        pct_start: float = 0.15,
        div_factor: float = 10.0,
        occupancy_weight: float = 1.0,
        flow_weight: float = 0.1,
        trace_weight: float = 1.0,
        pos_weight: float = 1.0,
        iou_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model", "evaluators"])
        self.model = model
        if evaluators is None:
            evaluators = [OccupancyEvaluator(num_waypoints=int(getattr(model, "num_waypoints", 8)))]
        self.evaluators = nn.ModuleList(evaluators)
        self.stage_losses = stage_losses()
        self.last_metrics: dict[str, float] = {}

    def forward(self, batch: Batch) -> OccupancyForecast:
        """Logits of occupancy and the flow (see :class:`OccupancyForecast`)."""
        return self.model(batch.points, batch.batch_index, batch.batch_size)

    def loss(self, logits: OccupancyForecast, targets: OccupancyTargets) -> dict[str, torch.Tensor]:
        """The three terms (module docstring) and their weighted sum ``loss``."""
        hp = self.hparams
        pw = torch.tensor(hp.pos_weight, device=logits.observed.device)
        occ = F.binary_cross_entropy_with_logits(
            logits.observed.float(), targets.observed, pos_weight=pw
        ) + F.binary_cross_entropy_with_logits(logits.occluded.float(), targets.occluded, pos_weight=pw)
        vehicles = (targets.observed[:, :, 0] + targets.occluded[:, :, 0]).clamp(max=1.0)  # (B, T, H, W)
        err = (logits.flow.float() - targets.flow).abs().sum(-1)
        flow = (err * vehicles).sum() / vehicles.sum().clamp_min(1.0)
        p_vehicle = (torch.sigmoid(logits.observed[:, :, 0]) + torch.sigmoid(logits.occluded[:, :, 0])).clamp(
            1e-6, 1 - 1e-6
        )
        traced = (warp_by_flow(targets.flow_origin, logits.flow.float()) * p_vehicle).clamp(1e-6, 1 - 1e-6)
        trace = F.binary_cross_entropy(traced, vehicles)
        losses = {"occupancy": occ, "flow": flow, "trace": trace}
        total = hp.occupancy_weight * occ + hp.flow_weight * flow + hp.trace_weight * trace
        if hp.iou_weight > 0:
            p_obs = torch.sigmoid(logits.observed.float())
            iou = soft_iou_loss(p_obs, targets.observed) + soft_iou_loss(
                traced[:, :, None], vehicles[:, :, None]
            )
            losses["soft_iou"] = iou
            total = total + hp.iou_weight * iou
        losses["loss"] = total
        return losses

    def _targets(self, batch: Batch) -> OccupancyTargets:
        if batch.occupancy is None:
            raise ValueError(f"frames {batch.frame_ids[:3]}...: occupancy needs target grids")
        return batch.occupancy

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.loss(self(batch), self._targets(batch))
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch.batch_size)
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=batch.batch_size, logger=False)
        return losses["loss"]

    def _evaluation_step(self, batch: Batch, stage: str) -> OccupancyForecast:
        logits = self(batch)
        forecast = forecast_probabilities(logits)
        if batch.occupancy is not None:
            loss = self.loss(logits, batch.occupancy)["loss"]
            log_stage_loss(self, stage, loss, batch.batch_size)
            for evaluator in self.evaluators:
                evaluator.update([forecast], batch)
        return forecast

    def validation_step(self, batch: Batch, batch_idx: int) -> OccupancyForecast:
        """The batch's forecast, probabilities (writers and loggers reuse it)."""
        return self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> OccupancyForecast:
        return self._evaluation_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> OccupancyForecast:
        return forecast_probabilities(self(batch))

    def on_validation_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "val")
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking and self.last_metrics:
            times = getattr(getattr(self.trainer, "datamodule", None), "hparams", {}).get("waypoint_times")
            rank_zero_info(
                f"occupancy, epoch {self.current_epoch} (model beside the label baselines):\n"
                + format_comparison(self.last_metrics, waypoint_times=times)
            )

    def on_test_epoch_end(self) -> None:
        self.last_metrics = finish_evaluation(self, self.evaluators, "test")

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_one_cycle(self, self.parameters(), hp.lr, hp.weight_decay, hp.pct_start, hp.div_factor)
