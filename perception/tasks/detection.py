"""``DetectionTask``: the LightningModule that trains and evaluates a 3D detector.

The model (:class:`perception.models.detector.Detector`) knows nothing of trainers; the task owns the
optimiser and schedule (AdamW + one-cycle), logging, the KITTI metric on validation, and writing
KITTI result files when predicting.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import torch

from perception.data.kitti import KittiObjects, as_written, objects_from_lidar_boxes, write_label
from perception.data.sample import Batch
from perception.eval.kitti import KittiAP
from perception.eval.waymo import WaymoAP, write_objects
from perception.models.detector import Detector

__all__ = ["DetectionTask"]

log = logging.getLogger(__name__)

# The KITTI metric's headline numbers, logged every validation (all keys go to the JSON report).
HEADLINE = ("3d/easy_R40", "3d/moderate_R40", "3d/hard_R40", "bev/moderate_R40")


class DetectionTask(L.LightningModule):
    """Train, validate and predict with a :class:`Detector`.

    Args:
        model: the detector (encoder → backbones → head).
        class_names: training classes, in label order (their KITTI spellings).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW weight decay.
        pct_start: share of the steps spent warming up.
        div_factor: initial lr = lr / div_factor; final lr = initial / 1e4 (one-cycle defaults).
        evaluate_kitti: run the KITTI AP on validation (needs each sample's ``meta["calib"]`` and
            ``meta["gt_objects"]``, as the KITTI datasets provide).
        evaluate_waymo: run the Waymo mAP / mAPH on validation (needs ``meta["gt_objects"]`` with
            ``boxes``, ``names``, ``difficulty``, ``num_lidar_points`` and ``meta["frame_key"]``, as
            the converted-Waymo dataset provides; class names are Waymo's: VEHICLE, PEDESTRIAN, ...).
        waymo_submission: where ``predict`` writes the predictions as a Waymo submission file (one
            serialized ``metrics.Objects``, written atomically at the end of the epoch).
        predictions_dir: where ``predict`` writes KITTI result files (one per frame).
        val_predictions_dir: where validation writes the KITTI result files of the frames it
            scores (one per frame, rewritten each validation: after a fit the folder holds the
            final validation's predictions, exactly what the metric saw); None for none.
        compile: run the model's forward through ``torch.compile`` (the weights and checkpoints are
            the same either way); off by default.
    """

    def __init__(
        self,
        model: Detector,
        class_names: list[str],
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        pct_start: float = 0.4,
        div_factor: float = 10.0,
        evaluate_kitti: bool = True,
        evaluate_waymo: bool = False,
        waymo_submission: str | None = None,
        predictions_dir: str | None = None,
        val_predictions_dir: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        # not a submodule: the compiled wrapper shares the weights, so the state dict stays the model's
        object.__setattr__(self, "_forward_model", torch.compile(model) if compile else model)
        self.class_names = list(class_names)
        self.kitti_ap = KittiAP(
            classes=[c for c in self.class_names if c in ("Car", "Pedestrian", "Cyclist")]
        )
        self.waymo_ap = WaymoAP(
            classes=[c for c in self.class_names if c in ("VEHICLE", "PEDESTRIAN", "CYCLIST", "SIGN")]
            or ["VEHICLE"]
        )
        self.last_metrics: dict[str, float] = {}
        self.last_curves: dict[str, np.ndarray] = {}  # KITTI precision at recall 0, 1/40, ..., 1
        self._submission: dict = {}

    # ------------------------------------------------------------------------------------------ steps

    def forward(self, batch: Batch):
        return self._forward_model(batch)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.model.loss(self(batch), batch)
        self.log_dict(
            {f"train/{k}": v.detach() for k, v in losses.items()},
            prog_bar=False,
            batch_size=batch.batch_size,
        )
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=batch.batch_size, logger=False)
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        output = self(batch)
        losses = self.model.loss(output, batch)
        self.log("val/loss", losses["loss"], prog_bar=True, batch_size=batch.batch_size, sync_dist=True)
        detections = None
        if self.hparams.evaluate_waymo:
            detections = self.model.predict(output, batch)
            self.waymo_ap.update(self._waymo_predictions(detections), [m["gt_objects"] for m in batch.meta])
        if self.hparams.evaluate_kitti or self.hparams.val_predictions_dir:
            detections = detections if detections is not None else self.model.predict(output, batch)
            rows = self._kitti_predictions(detections, batch)
            if self.hparams.evaluate_kitti:
                self.kitti_ap.update(rows, [m["gt_objects"] for m in batch.meta])
            if self.hparams.val_predictions_dir and not self.trainer.sanity_checking:
                self._write(Path(self.hparams.val_predictions_dir), batch.frame_ids, rows)

    def on_validation_epoch_end(self) -> None:
        if self.hparams.evaluate_waymo:
            results = self.waymo_ap.compute()
            self.waymo_ap.reset()
            self.last_metrics = {f"{k}/{m}": v for k, r in results.items() for m, v in r.items()}
            for key, result in results.items():
                if "RANGE" not in key:
                    self.log(f"val/{key}/mAPH", result["mAPH"], prog_bar=key == "VEHICLE_LEVEL_2")
                    self.log(f"val/{key}/mAP", result["mAP"])
        if not self.hparams.evaluate_kitti:
            return
        metrics = self.kitti_ap.compute()
        self.last_curves = dict(self.kitti_ap.last_curves)
        self.kitti_ap.reset()
        self.last_metrics = metrics
        for name in self.kitti_ap.classes:
            for key in HEADLINE:
                value = metrics.get(f"{name}_{key}", math.nan)
                if not math.isnan(value):
                    self.log(f"val/{name}_{key}", value, prog_bar=key == "3d/moderate_R40", sync_dist=False)

    def predict_step(self, batch: Batch, batch_idx: int) -> list:
        detections = self.model.predict(self(batch), batch)
        if self.hparams.waymo_submission:
            for det, meta in zip(self._waymo_predictions(detections), batch.meta, strict=True):
                self._submission[tuple(meta["frame_key"])] = det
        if "calib" not in (batch.meta[0] if batch.meta else {}):
            return self._waymo_predictions(detections)
        objects = self._kitti_predictions(detections, batch)
        if self.hparams.predictions_dir:
            self._write(Path(self.hparams.predictions_dir), batch.frame_ids, objects)
        return objects

    def on_predict_epoch_start(self) -> None:
        self._submission = {}

    def on_predict_epoch_end(self) -> None:
        if self.hparams.waymo_submission:
            write_objects(self.hparams.waymo_submission, self._submission)
            log.info(
                "wrote %d frames of predictions to %s", len(self._submission), self.hparams.waymo_submission
            )

    @staticmethod
    def _write(folder: Path, frame_ids: list[str], objects: list[KittiObjects]) -> None:
        """One KITTI result file per frame in ``folder`` (atomic writes)."""
        for frame_id, frame_objects in zip(frame_ids, objects, strict=True):
            write_label(folder / f"{frame_id}.txt", frame_objects, fsync=False)

    # ------------------------------------------------------------------------------------ optimiser

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.hparams.lr,
            total_steps=total,
            pct_start=self.hparams.pct_start,
            div_factor=self.hparams.div_factor,
            anneal_strategy="cos",
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -------------------------------------------------------------------------------------- helpers

    def _waymo_predictions(self, detections) -> list[dict]:
        """Detections as the Waymo metric's per-frame predictions (vehicle frame, class names as types)."""
        names = np.asarray(self.class_names)
        return [
            {
                "boxes": det.boxes.detach().double().cpu().numpy(),
                "types": names[det.labels.detach().cpu().numpy()] if len(det) else np.zeros(0, "<U16"),
                "scores": det.scores.detach().float().cpu().numpy(),
            }
            for det in detections
        ]

    def _kitti_predictions(self, detections, batch: Batch) -> list[KittiObjects]:
        """Detections as KITTI result rows (camera boxes, projected 2D boxes, alpha, scores) per frame.

        The metric and the result files see exactly the same rows: values rounded as the files
        hold them (:func:`~perception.data.kitti.as_written`), so ``tools/eval.py`` on the written
        files reproduces the validation AP.
        """
        names = np.asarray(self.class_names)
        rows = []
        for det, meta in zip(detections, batch.meta, strict=True):
            labels = det.labels.detach().cpu().numpy()
            rows.append(
                as_written(
                    objects_from_lidar_boxes(
                        det.boxes.detach().double().cpu().numpy(),
                        names[labels] if len(labels) else np.zeros(0, dtype="<U16"),
                        meta["calib"],
                        scores=det.scores.detach().float().cpu().numpy(),
                        image_shape=meta.get("image_shape") or (375, 1242),
                    )
                )
            )
        return rows
