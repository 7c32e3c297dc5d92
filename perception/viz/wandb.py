"""Weights & Biases logging of detection, segmentation and occupancy runs: scenes, images, metrics.

- :class:`WandbDetectionLogger`, a Lightning callback: on every N-th validation batch it logs the
  batch's first sample as a ``wandb.Object3D`` (type ``lidar/beta``: subsampled points in their scene
  colours, ground-truth boxes in :data:`~perception.viz.scene.GT_COLOUR` and predictions in
  :data:`~perception.viz.scene.PRED_COLOUR` with label, colour and score, and heading vectors) and a
  bird's-eye ``wandb.Image``; after each validation it logs the task's ``last_metrics`` (its
  evaluators' results, e.g. the KITTI AP) as a ``wandb.Table`` and its ``last_curves``
  as precision–recall plots (3D and BEV, every class and difficulty). With any logger but a
  ``WandbLogger`` it does nothing.
- :class:`WandbSegmentationLogger`, its segmentation counterpart: on every N-th validation batch the
  first scan's points as ``wandb.Object3D`` point clouds ``[x, y, z, r, g, b]`` coloured by ground-truth
  class, by predicted class (SemanticKITTI's official colours,
  :func:`~perception.viz.segmentation.class_palette`) and by error, plus a bird's-eye image of the
  prediction with its legend; after each validation the per-class IoU table (``last_metrics``:
  ``IoU/<class>``, ``mIoU``). It does nothing unless the module is a
  :class:`~perception.tasks.segmentation.SegmentationTask` and a ``WandbLogger`` is configured, so a
  CLI can add it to every task.
- :class:`WandbOccupancyLogger`, for occupancy forecasting: on every N-th validation batch the first
  sample's BEV strip (truth, model and baselines at every waypoint) as a ``wandb.Image`` and its
  forecast animated over the waypoints as a GIF ``wandb.Video``; after each validation the metrics
  table. Idle unless the module is an :class:`~perception.tasks.occupancy.OccupancyTask` and a
  ``WandbLogger`` is configured.
- :func:`wandb_logger`: a ``WandbLogger`` that runs offline (``WANDB_MODE=offline``: files under
  ``WANDB_DIR``, to ``wandb sync`` later) where no API key is configured, so a run never waits on
  the network for a login.

In a config::

    trainer:
      logger:
        class_path: lightning.pytorch.loggers.WandbLogger
        init_args: {project: perception, offline: true}
      callbacks:
        - class_path: perception.viz.wandb.WandbDetectionLogger
          init_args: {every_n_val_steps: 50, max_scenes: 4}
        - class_path: perception.viz.wandb.WandbSegmentationLogger
          init_args: {every_n_val_steps: 25, max_scenes: 4}
        - class_path: perception.viz.wandb.WandbOccupancyLogger
          init_args: {every_n_val_steps: 25, max_scenes: 2}
"""

from __future__ import annotations

import importlib
import logging
import math
import netrc
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from numpy.typing import NDArray

from perception.geometry.boxes import rotation_z
from perception.viz.scene import GT_COLOUR, PRED_COLOUR, Scene, _numpy

__all__ = [
    "AutoWandbLogger",
    "WandbDetectionLogger",
    "WandbOccupancyLogger",
    "WandbSegmentationLogger",
    "object3d_payload",
    "segmentation_points",
    "wandb_configured",
    "wandb_corners",
    "wandb_logger",
    "wandb_logger_of",
]

log = logging.getLogger(__name__)

# wandb's corner order (its ``box3d``): itertools.product over (-1, 1) for x, then y, then z.
_WANDB_UNIT_CORNERS = 0.5 * np.array(
    [[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)], dtype=np.float64
)


def wandb_corners(boxes: Any) -> NDArray[np.float64]:
    """(M, 8, 3) corners of (M, 7) boxes ``[x, y, z, l, w, h, yaw]`` in the order ``wandb.box3d`` uses
    (the local ±l/2, ±w/2, ±h/2 corners with x slowest, z fastest)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    local = _WANDB_UNIT_CORNERS[None] * boxes[:, None, 3:6]
    return np.einsum("mij,mkj->mki", rotation_z(boxes[:, 6]), local) + boxes[:, None, :3]


def object3d_payload(scene: Scene, max_points: int = 20_000, seed: int = 0) -> dict[str, Any]:
    """The ``lidar/beta`` dict of ``wandb.Object3D`` for a scene.

    Returns:
        ``{"type": "lidar/beta", "points": (n, 6) [x, y, z, r, g, b] (colours 0–255),
        "boxes": object array of {"corners": 8 × [x, y, z], "label", "color": [r, g, b] in [0, 1]
        (as ``wandb.box3d``), "score"}, "vectors": object array of {"start", "end"}}`` (heading marks
        from each box's centre to its front face). At most ``max_points`` points (uniform subsample).
    """
    scene = scene.subsample(max_points, seed)
    points = np.column_stack([scene.points[:, :3], np.round(scene.point_colours() * 255.0)])
    boxes: list[dict[str, Any]] = []
    vectors: list[dict[str, Any]] = []
    assert scene.gt_names is not None and scene.pred_names is not None and scene.pred_scores is not None
    groups = (
        (scene.gt_boxes, scene.gt_names, None, GT_COLOUR),
        (scene.pred_boxes, scene.pred_names, scene.pred_scores, PRED_COLOUR),
    )
    for group_boxes, names, scores, colour in groups:
        corners = wandb_corners(group_boxes)
        for i, box in enumerate(np.asarray(group_boxes, dtype=np.float64)):
            entry: dict[str, Any] = {
                "corners": corners[i].tolist(),
                "label": str(names[i]) if scores is None else f"{names[i]} {float(scores[i]):.2f}",
                "color": list(colour),
            }
            if scores is not None:
                entry["score"] = float(scores[i])
            boxes.append(entry)
            front = box[:3] + 0.5 * box[3] * np.array([math.cos(box[6]), math.sin(box[6]), 0.0])
            vectors.append({"start": box[:3].tolist(), "end": front.tolist()})
    return {
        "type": "lidar/beta",
        "points": points.astype(np.float64),
        "boxes": np.array(boxes, dtype=object),
        "vectors": np.array(vectors, dtype=object),
    }


_KEY = re.compile(r"^(?P<cls>[^_]+)_(?P<metric>[^/]+)/(?P<difficulty>[^_]+)_(?P<sampling>R\d+)$")


def _metrics_rows(metrics: Mapping[str, float]) -> list[list[Any]]:
    """``[class, metric, difficulty, sampling, value]`` rows (value None where NaN) of a metrics dict
    with keys like ``Car_3d/moderate_R40``; other keys keep their name as the class."""
    rows = []
    for key, value in metrics.items():
        number = float(value)
        number_or_none = None if math.isnan(number) else number
        match = _KEY.match(key)
        if match:
            rows.append([*match.group("cls", "metric", "difficulty", "sampling"), number_or_none])
        else:
            rows.append([key, "", "", "", number_or_none])
    return rows


class _ValidationLogger(Callback):
    """What the W&B validation callbacks share: how often and how much they log, under which prefix."""

    def __init__(
        self,
        every_n_val_steps: int,
        max_points: int,
        max_scenes: int,
        log_bev: bool,
        log_metrics: bool,
        prefix: str,
    ) -> None:
        super().__init__()
        if every_n_val_steps < 1 or max_points < 1 or max_scenes < 0:
            raise ValueError(
                f"need every_n_val_steps >= 1, max_points >= 1, max_scenes >= 0; got "
                f"{every_n_val_steps}, {max_points}, {max_scenes}"
            )
        self.every_n_val_steps = every_n_val_steps
        self.max_points = max_points
        self.max_scenes = max_scenes
        self.log_bev = log_bev
        self.log_metrics = log_metrics
        self.prefix = prefix
        self._logged = 0

    task: tuple[str, str] | None = None
    """``(module, class)`` of the task whose validation a subclass draws (imported only when a W&B
    logger is there, so other tasks never load it); None: any task."""

    @classmethod
    def active_logger(cls, trainer: L.Trainer, pl_module: Any) -> WandbLogger | None:
        """The ``WandbLogger`` to log to, or None: no W&B logger, not rank 0, or not the callback's task."""
        logger = wandb_logger_of(trainer)
        if logger is None or cls.task is None:
            return logger
        module, name = cls.task
        return logger if isinstance(pl_module, getattr(importlib.import_module(module), name)) else None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged = 0

    def metrics_table(self, metrics: dict[str, float]) -> tuple[str, list[str], list[list]] | None:
        """``(key, columns, rows)`` of the table :meth:`on_validation_end` logs from the task's
        ``last_metrics``; None logs none."""
        return None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's on_validation_epoch_end, so ``last_metrics`` is this validation's.
        if trainer.sanity_checking or not self.log_metrics:
            return
        logger = self.active_logger(trainer, pl_module)
        metrics = getattr(pl_module, "last_metrics", None)
        if logger is None or not metrics:
            return
        try:
            import wandb

            table = self.metrics_table(metrics)
            if table is not None:
                key, columns, rows = table
                logger.experiment.log(
                    {f"{self.prefix}/{key}": wandb.Table(columns=columns, data=rows),
                     "trainer/global_step": trainer.global_step}
                )  # fmt: skip
        except Exception as err:  # logging must never stop training
            log.warning("%s: could not log the metrics table: %r", type(self).__name__, err)


class WandbDetectionLogger(_ValidationLogger):
    """Logs validation scenes and the KITTI metrics of a detection task to W&B.

    Active only where one of the trainer's loggers is a ``lightning.pytorch.loggers.WandbLogger``
    (on global rank 0); with other loggers, or none, every hook returns at once. Nothing is logged
    during the sanity check. A failure to build or log a scene is reported as a warning and never
    stops training.

    Args:
        every_n_val_steps: log the batches whose index in the validation epoch is a multiple of it.
        max_points: points per logged 3D scene (a uniform subsample; ~62 bytes a point in the run).
        score_threshold: predictions below it are left out.
        max_scenes: at most this many scenes per validation epoch.
        log_bev: also log the bird's-eye matplotlib image of each scene.
        log_metrics: log ``pl_module.last_metrics`` as a table after each validation.
        prefix: key prefix (``val/scene3d``, ``val/bev``, ``val/kitti_metrics``).

    Detections are what the task's ``validation_step`` returned for the batch (one
    :class:`~perception.structures.Detections` per sample; the model is not run again), named by
    the task's class names (``pl_module.class_names``).
    """

    def __init__(
        self,
        every_n_val_steps: int = 50,
        max_points: int = 20_000,
        score_threshold: float = 0.3,
        max_scenes: int = 4,
        log_bev: bool = True,
        log_metrics: bool = True,
        prefix: str = "val",
    ) -> None:
        super().__init__(every_n_val_steps, max_points, max_scenes, log_bev, log_metrics, prefix)
        self.score_threshold = score_threshold

    @staticmethod
    def wandb_logger_of(trainer: L.Trainer) -> WandbLogger | None:
        """The trainer's ``WandbLogger`` on global rank 0, or None (:func:`wandb_logger_of`)."""
        return wandb_logger_of(trainer)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or batch_idx % self.every_n_val_steps or self._logged >= self.max_scenes:
            return
        logger = self.wandb_logger_of(trainer)
        if logger is None:
            return
        try:
            scene = self._scene(pl_module, batch, outputs)
            self._log_scene(logger, scene, trainer.global_step)
        except Exception as err:  # logging must never stop training
            log.warning("WandbDetectionLogger: could not log batch %d: %r", batch_idx, err)
            return
        self._logged += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's on_validation_epoch_end (callbacks' epoch-end hooks run before it), so
        # ``last_metrics`` is this validation's.
        if trainer.sanity_checking or not self.log_metrics:
            return
        logger = self.wandb_logger_of(trainer)
        metrics = getattr(pl_module, "last_metrics", None)
        if logger is None or not metrics:
            return
        try:
            import wandb

            table = wandb.Table(
                columns=["class", "metric", "difficulty", "sampling", "AP"], data=_metrics_rows(metrics)
            )
            payload: dict[str, Any] = {f"{self.prefix}/kitti_metrics": table}
            curves = getattr(pl_module, "last_curves", None) or {}
            for metric in ("3d", "bev"):
                chosen = {k: v for k, v in curves.items() if f"_{metric}/" in k}
                if chosen:
                    payload[f"{self.prefix}/pr_curves_{metric}"] = self._pr_image(chosen, metric)
            payload["trainer/global_step"] = trainer.global_step
            logger.experiment.log(payload)
        except Exception as err:
            log.warning("WandbDetectionLogger: could not log the metrics table: %r", err)

    @staticmethod
    def _pr_image(curves: Mapping[str, Any], metric: str) -> Any:
        """A ``wandb.Image`` of the KITTI precision–recall curves of one metric (all classes, difficulties)."""
        import wandb

        from perception.viz.bev import plot_pr_curves, plt

        figure = plot_pr_curves(curves, title=f"KITTI {metric} precision–recall (R40 points)")
        try:
            return wandb.Image(_figure_array(figure), caption=f"{metric} PR curves")
        finally:
            plt.close(figure)

    # -------------------------------------------------------------------------------------- helpers

    def _scene(self, pl_module: L.LightningModule, batch: Any, detections: Any) -> Scene:
        if not isinstance(detections, (list, tuple)) or len(detections) != batch.batch_size:
            raise ValueError(
                f"validation_step returned {type(detections).__name__}, not one Detections per sample"
            )
        class_names = getattr(pl_module, "class_names", None)
        scene = Scene.from_batch(batch, 0, detections, class_names)
        return scene.with_score_threshold(self.score_threshold)

    def _log_scene(self, logger: WandbLogger, scene: Scene, step: int) -> None:
        import wandb

        payload: dict[str, Any] = {
            f"{self.prefix}/scene3d": wandb.Object3D(object3d_payload(scene, self.max_points, seed=step)),
        }
        if self.log_bev:
            from perception.viz.bev import plot_scene, plt

            figure = plot_scene(scene.subsample(max(self.max_points, 50_000), seed=step))
            try:
                payload[f"{self.prefix}/bev"] = wandb.Image(
                    _figure_array(figure), caption=f"frame {scene.frame_id}"
                )
            finally:
                plt.close(figure)
        payload["trainer/global_step"] = step
        logger.experiment.log(payload)


def wandb_logger_of(trainer: L.Trainer) -> WandbLogger | None:
    """The trainer's ``WandbLogger`` on global rank 0, or None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger
    return None


# ------------------------------------------------------------------------------------------------------
# segmentation


def segmentation_points(scene: Scene, max_points: int = 20_000, seed: int = 0) -> NDArray[np.float64]:
    """(n, 6) ``[x, y, z, r, g, b]`` (colours 0–255) of a scene in its colouring, the array
    ``wandb.Object3D`` takes; at most ``max_points`` points (a uniform subsample, the same points for
    every colouring of the same scene and seed)."""
    scene = scene.subsample(max_points, seed)
    return np.column_stack([scene.points[:, :3], np.round(scene.point_colours() * 255.0)]).astype(np.float64)


def _iou_rows(metrics: Mapping[str, float]) -> list[list[Any]]:
    """``[class, IoU]`` rows of a segmentation task's ``last_metrics`` (``IoU/<class>`` in order, then
    ``mIoU``); values in percent, None where NaN."""

    def number(value: Any) -> float | None:
        v = float(value)
        return None if math.isnan(v) else v

    rows = [[key[len("IoU/") :], number(v)] for key, v in metrics.items() if key.startswith("IoU/")]
    if "mIoU" in metrics:
        rows.append(["mIoU", number(metrics["mIoU"])])
    return rows


class WandbSegmentationLogger(_ValidationLogger):
    """Logs validation point clouds and the per-class IoU of a segmentation task to W&B.

    Active only where the module is a :class:`~perception.tasks.segmentation.SegmentationTask` and one
    of the trainer's loggers is a ``WandbLogger`` (on global rank 0); otherwise every hook returns at
    once. Nothing is logged during the sanity check; a failure to log is a warning, never an error.

    On the validation batches whose index is a multiple of ``every_n_val_steps`` (at most ``max_scenes``
    an epoch) the batch's first scan is logged as ``wandb.Object3D`` point clouds of ``[x, y, z, r, g,
    b]`` rows (a uniform subsample of ``max_points``, the same points in each): ``PREFIX/seg_gt``
    coloured by ground-truth class (where the batch has labels), ``PREFIX/seg_pred`` by the predicted
    class (what ``validation_step`` returned; the model is not run again), ``PREFIX/seg_error`` by error
    (correct green, wrong red, ignored grey), and ``PREFIX/seg_bev``, a bird's-eye image of the
    prediction with the legend of its classes. After each validation, ``PREFIX/iou`` is a
    ``wandb.Table`` of ``[class, IoU]`` (percent) from ``pl_module.last_metrics`` (``IoU/<class>``
    in class order, then ``mIoU``).

    Args:
        every_n_val_steps: log the batches whose index in the validation epoch is a multiple of it.
        max_points: points per logged point cloud (~20 k keeps a run small: ~60 bytes a point).
        max_scenes: at most this many scans per validation epoch.
        log_error: also log the cloud coloured by error.
        log_bev: also log the bird's-eye image of the prediction.
        log_metrics: log the IoU table after each validation.
        prefix: key prefix.
    """

    def __init__(
        self,
        every_n_val_steps: int = 25,
        max_points: int = 20_000,
        max_scenes: int = 4,
        log_error: bool = True,
        log_bev: bool = True,
        log_metrics: bool = True,
        prefix: str = "val",
    ) -> None:
        super().__init__(every_n_val_steps, max_points, max_scenes, log_bev, log_metrics, prefix)
        self.log_error = log_error

    task = ("perception.tasks.segmentation", "SegmentationTask")

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or batch_idx % self.every_n_val_steps or self._logged >= self.max_scenes:
            return
        logger = self.active_logger(trainer, pl_module)
        if logger is None:
            return
        try:
            self._log_scan(logger, self.scene(pl_module, batch, outputs), trainer.global_step)
        except Exception as err:  # logging must never stop training
            log.warning("WandbSegmentationLogger: could not log batch %d: %r", batch_idx, err)
            return
        self._logged += 1

    def metrics_table(self, metrics: dict[str, float]) -> tuple[str, list[str], list[list]]:
        return "iou", ["class", "IoU"], _iou_rows(metrics)

    @staticmethod
    def scene(pl_module: Any, batch: Any, outputs: Any, index: int = 0) -> Scene:
        """Scan ``index`` of a validation batch with its labels (if any) and predicted training ids,
        coloured by prediction, in the task's class map colours."""
        if not isinstance(outputs, (list, tuple)) or len(outputs) != batch.batch_size:
            raise ValueError(
                f"validation_step returned {type(outputs).__name__}, not one (N_b,) prediction per sample"
            )
        mask = _numpy(batch.batch_index) == index
        labels = None if batch.point_labels is None else _numpy(batch.point_labels)[mask]
        return Scene.from_segmentation(
            _numpy(batch.points)[mask],
            labels,
            _numpy(outputs[index]),
            getattr(pl_module, "label_map", None),
            colour_by="prediction",
            frame_id=str(batch.frame_ids[index]),
        )

    def _log_scan(self, logger: WandbLogger, scene: Scene, step: int) -> None:
        import wandb

        scene = scene.subsample(self.max_points, seed=step)
        modes = ["prediction"]
        if scene.point_labels is not None:
            modes = ["label", "prediction"] + (["error"] if self.log_error else [])
        keys = {"label": "seg_gt", "prediction": "seg_pred", "error": "seg_error"}
        payload: dict[str, Any] = {
            f"{self.prefix}/{keys[mode]}": wandb.Object3D(
                segmentation_points(replace(scene, colour_by=mode), self.max_points)
            )
            for mode in modes
        }
        if self.log_bev:
            from perception.viz.bev import plot_scene, plt

            figure = plot_scene(scene, title=f"scan {scene.frame_id}: prediction")
            try:
                payload[f"{self.prefix}/seg_bev"] = wandb.Image(_figure_array(figure), caption=scene.frame_id)
            finally:
                plt.close(figure)
        payload["trainer/global_step"] = step
        logger.experiment.log(payload)


# ------------------------------------------------------------------------------------------------------
# occupancy


def _metric_rows(metrics: Mapping[str, float]) -> list[list[Any]]:
    """``[metric, value]`` rows of a task's ``last_metrics`` in their order (None where NaN)."""
    rows = []
    for key, value in metrics.items():
        number = float(value)
        rows.append([key, None if math.isnan(number) else number])
    return rows


class WandbOccupancyLogger(_ValidationLogger):
    """Logs validation forecasts of an occupancy task to W&B: a BEV strip and an animation per sample.

    Active only where the module is a :class:`~perception.tasks.occupancy.OccupancyTask` and one of
    the trainer's loggers is a ``WandbLogger`` (on global rank 0); otherwise every hook returns at
    once. Nothing is logged during the sanity check; a failure to log is a warning, never an error.

    On the validation batches whose index is a multiple of ``every_n_val_steps`` (at most
    ``max_scenes`` an epoch) the batch's first sample is drawn (:mod:`perception.viz.occupancy`) from
    its targets and what ``validation_step`` returned (the forecast's probabilities; the model is not
    run again), on the model's grid (``pl_module.model.grid``, else the data module's):
    ``PREFIX/occupancy_strip``, a ``wandb.Image`` of :func:`~perception.viz.occupancy.bev_strip`
    (rows truth, model, the label baselines; one column per waypoint), and
    ``PREFIX/occupancy_forecast``, a ``wandb.Video`` of the GIF over the waypoints (truth beside the
    model). The current sweep (at most ``max_points`` points, a uniform subsample) is drawn faintly
    behind the grids. After each validation ``PREFIX/occupancy_metrics`` is a ``wandb.Table`` of
    ``[metric, value]`` from ``pl_module.last_metrics`` (the model's and the baselines' metrics).

    Args:
        every_n_val_steps: log the batches whose index in the validation epoch is a multiple of it.
        max_points: points of the current sweep drawn behind the grids.
        max_scenes: at most this many samples per validation epoch.
        log_bev: log the strip image.
        log_video: log the GIF.
        log_metrics: log the metrics table after each validation.
        fps: frames (waypoints) per second of the GIF.
        panel_width: pixels of one grid panel.
        prefix: key prefix.
    """

    def __init__(
        self,
        every_n_val_steps: int = 25,
        max_points: int = 20_000,
        max_scenes: int = 2,
        log_bev: bool = True,
        log_video: bool = True,
        log_metrics: bool = True,
        fps: float = 2.0,
        panel_width: int = 192,
        prefix: str = "val",
    ) -> None:
        super().__init__(every_n_val_steps, max_points, max_scenes, log_bev, log_metrics, prefix)
        if fps <= 0 or panel_width < 16:
            raise ValueError(f"need fps > 0 and panel_width >= 16, got {fps}, {panel_width}")
        self.log_video = log_video
        self.fps = fps
        self.panel_width = panel_width

    task = ("perception.tasks.occupancy", "OccupancyTask")

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or batch_idx % self.every_n_val_steps or self._logged >= self.max_scenes:
            return
        if not (self.log_bev or self.log_video):
            return
        logger = self.active_logger(trainer, pl_module)
        if logger is None:
            return
        try:
            grid = self.grid_of(trainer, pl_module)
            logger.experiment.log(
                {**self.payload(batch, outputs, grid), "trainer/global_step": trainer.global_step}
            )
        except Exception as err:  # logging must never stop training
            log.warning("WandbOccupancyLogger: could not log batch %d: %r", batch_idx, err)
            return
        self._logged += 1

    def metrics_table(self, metrics: dict[str, float]) -> tuple[str, list[str], list[list]]:
        return "occupancy_metrics", ["metric", "value"], _metric_rows(metrics)

    @staticmethod
    def grid_of(trainer: Any, pl_module: Any) -> Any:
        """The forecaster's :class:`~perception.structures.occupancy.OccupancyGrid` (``pl_module.model.grid``),
        else the data module's (``trainer.datamodule.grid``)."""
        from perception.structures.occupancy import OccupancyGrid

        for owner in (getattr(pl_module, "model", None), getattr(trainer, "datamodule", None)):
            grid = getattr(owner, "grid", None)
            if isinstance(grid, OccupancyGrid):
                return grid
        raise ValueError("neither the forecaster nor the data module has an OccupancyGrid `grid`")

    def payload(self, batch: Any, outputs: Any, grid: Any, index: int = 0) -> dict[str, Any]:
        """The ``wandb.Image`` strip and ``wandb.Video`` GIF (as asked) of sample ``index`` of a validation
        batch with its forecast (an :class:`~perception.structures.occupancy.OccupancyForecast` of
        probabilities with a leading batch axis)."""
        import io

        import wandb

        from perception.structures.occupancy import OccupancyForecast
        from perception.viz.occupancy import (
            bev_strip,
            forecast_frames,
            gif_bytes,
            sample_forecast,
            sample_points,
            sample_targets,
        )

        if not isinstance(outputs, OccupancyForecast):
            raise ValueError(f"validation_step returned {type(outputs).__name__}, not an OccupancyForecast")
        if batch.occupancy is None:
            raise ValueError("the batch has no occupancy targets")
        targets = sample_targets(batch.occupancy, index)
        forecast = sample_forecast(outputs, index)
        points = sample_points(batch.points, batch.batch_index, index)
        if points.shape[1] >= 5:
            points = points[np.abs(points[:, 4]) < 1e-3]  # the current sweep
        if len(points) > self.max_points:
            rng = np.random.default_rng(len(points))
            points = points[np.sort(rng.choice(len(points), self.max_points, replace=False))]
        frame_id = str(batch.frame_ids[index])
        payload: dict[str, Any] = {}
        if self.log_bev:
            strip = bev_strip(targets, forecast, grid, points, baselines=True, panel_width=self.panel_width)
            payload[f"{self.prefix}/occupancy_strip"] = wandb.Image(strip, caption=frame_id)
        if self.log_video:
            frames = forecast_frames(targets, forecast, grid, points, panel_width=self.panel_width)
            gif = io.BytesIO(gif_bytes(frames, self.fps))
            payload[f"{self.prefix}/occupancy_forecast"] = wandb.Video(gif, caption=frame_id, format="gif")
        return payload


def _figure_array(figure: Any) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB pixels of a matplotlib figure (Agg)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


# ------------------------------------------------------------------------------------------------------
# the logger


def wandb_configured() -> bool:
    """Whether W&B has credentials here without asking the network: ``WANDB_API_KEY`` is set, or the
    netrc file (``NETRC``, else ``~/.netrc``) has an entry for the W&B host (``WANDB_BASE_URL``, default
    ``https://api.wandb.ai``), which is where ``wandb login`` saves the key."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return bool(host) and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_logger(project: str = "perception", offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A ``WandbLogger`` that never waits on a login: :class:`AutoWandbLogger` (see there).

    Args:
        project: the W&B project.
        offline: run offline (files under ``save_dir``, uploaded later with ``wandb sync``). None
            decides: offline where ``WANDB_MODE`` says ``offline`` / ``dryrun``, or where W&B has no
            credentials (:func:`wandb_configured`); else online.
        kwargs: other ``WandbLogger`` arguments (``save_dir``, ``name``, ``log_model``, ...).
    """
    return AutoWandbLogger(project=project, offline=offline, **kwargs)


class AutoWandbLogger(WandbLogger):
    """``WandbLogger`` that goes offline by itself where W&B has no credentials (for configs).

    ``offline=None`` (the default) decides as :func:`wandb_logger` does: offline where ``WANDB_MODE``
    is ``offline``/``dryrun`` or no API key is configured; online otherwise. Offline runs are written
    under ``save_dir`` (``outputs/wandb/offline-run-*``) and uploaded later with ``wandb sync DIR``.

    Args:
        project: the W&B project.
        offline: True / False to force; None to decide as above.
        save_dir: where the run folder goes.
        kwargs: other ``lightning.pytorch.loggers.WandbLogger`` arguments (``name``, ``log_model``, ...).
    """

    def __init__(
        self,
        project: str = "perception",
        offline: bool | None = None,
        save_dir: str = "outputs",
        **kwargs: Any,
    ) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "").lower()
            offline = mode in ("offline", "dryrun") or (mode != "online" and not wandb_configured())
            if offline and mode not in ("offline", "dryrun", "disabled"):
                log.info("W&B: no credentials (WANDB_API_KEY or `wandb login`); logging offline")
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(project=project, offline=offline, save_dir=save_dir, **kwargs)
