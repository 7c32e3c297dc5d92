"""Weights & Biases logging of detection runs: 3D scenes, bird's-eye images and the KITTI metrics.

- :class:`WandbDetectionLogger`, a Lightning callback: on every N-th validation batch it logs the
  batch's first sample as a ``wandb.Object3D`` (type ``lidar/beta``: subsampled points in their scene
  colours, ground-truth boxes in :data:`~perception.viz.scene.GT_COLOUR` and predictions in
  :data:`~perception.viz.scene.PRED_COLOUR` with label, colour and score, and heading vectors) and a
  bird's-eye ``wandb.Image``; after each validation it logs the task's ``last_metrics`` (its
  evaluators' results, e.g. the KITTI AP) as a ``wandb.Table`` and its ``last_curves``
  as precision–recall plots (3D and BEV, every class and difficulty). With any logger but a
  ``WandbLogger`` it does nothing.
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
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from numpy.typing import NDArray

from perception.geometry.boxes import rotation_z
from perception.viz.scene import GT_COLOUR, PRED_COLOUR, Scene

__all__ = [
    "AutoWandbLogger",
    "WandbDetectionLogger",
    "object3d_payload",
    "wandb_configured",
    "wandb_corners",
    "wandb_logger",
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


class WandbDetectionLogger(Callback):
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
        super().__init__()
        if every_n_val_steps < 1 or max_points < 1 or max_scenes < 0:
            raise ValueError(
                f"need every_n_val_steps >= 1, max_points >= 1, max_scenes >= 0; got "
                f"{every_n_val_steps}, {max_points}, {max_scenes}"
            )
        self.every_n_val_steps = every_n_val_steps
        self.max_points = max_points
        self.score_threshold = score_threshold
        self.max_scenes = max_scenes
        self.log_bev = log_bev
        self.log_metrics = log_metrics
        self.prefix = prefix
        self._logged = 0

    @staticmethod
    def wandb_logger_of(trainer: L.Trainer) -> WandbLogger | None:
        """The trainer's ``WandbLogger`` on global rank 0, or None."""
        if not trainer.is_global_zero:
            return None
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                return logger
        return None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._logged = 0

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
