"""Prediction writers: Lightning callbacks that write a detection task's outputs as dataset files.

The task never writes files; it returns one :class:`~perception.structures.Detections` per sample from
``predict_step`` (and from ``validation_step`` / ``test_step``), and these callbacks turn them into
the files users submit or score:

- :class:`KittiResultWriter`: one KITTI result file per frame (15 label fields + score), the rows the
  KITTI evaluator scores (:func:`~perception.eval.detection.kitti_result_objects`), so scoring the
  folder reproduces the metric. On predict, and optionally on validation / test.
- :class:`WaymoSubmissionWriter`: one Waymo submission file (a serialized ``metrics.Objects``) for the
  whole prediction epoch.

Both write atomically (a temporary name, then rename). In a config::

    trainer:
      callbacks:
        - class_path: perception.tasks.writers.KittiResultWriter
          init_args: {output_dir: outputs/predictions, on_validation: true}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from perception.data.kitti import write_label
from perception.data.waymo.submission import write_objects
from perception.eval.detection import kitti_result_objects, waymo_objects
from perception.structures import Batch, Detections, FrameKey, KittiRecord, WaymoObjects, WaymoRecord

__all__ = ["KittiResultWriter", "WaymoSubmissionWriter"]

log = logging.getLogger(__name__)


def _class_names(pl_module: L.LightningModule) -> Sequence[str]:
    names = getattr(pl_module, "class_names", None)
    if names is None:
        raise ValueError(f"{type(pl_module).__name__} has no class_names to name the detections' labels")
    return names


def _check_outputs(outputs: Any, batch: Batch, writer: str) -> Sequence[Detections]:
    if not isinstance(outputs, (list, tuple)) or len(outputs) != batch.batch_size:
        raise ValueError(
            f"{writer}: expected the task to return one Detections per sample ({batch.batch_size}), "
            f"got {type(outputs).__name__}"
        )
    return outputs


class KittiResultWriter(BasePredictionWriter):
    """Writes ``OUTPUT_DIR/<frame_id>.txt`` KITTI result files from a detection task's outputs.

    Args:
        output_dir: the folder of the prediction run's result files.
        on_validation: also write the frames every validation scores, to ``validation_dir`` (the
            files are rewritten each validation, so after a fit it holds the final validation's
            predictions, the rows the KITTI evaluator scored). Not during the sanity check.
        validation_dir: where validation writes (default ``output_dir``).
        on_test: likewise for ``trainer.test`` (to ``output_dir``).
        clear: remove the ``*.txt`` files already in a folder before the first file of a run is
            written there, so the folder holds exactly one run's frames.

    Samples must carry a :class:`~perception.structures.KittiRecord` (the frame's calibration).
    """

    def __init__(
        self,
        output_dir: str,
        on_validation: bool = False,
        validation_dir: str | None = None,
        on_test: bool = False,
        clear: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.validation_dir = Path(validation_dir) if validation_dir is not None else self.output_dir
        self.on_validation, self.on_test, self.clear = on_validation, on_test, clear
        self._cleared: set[Path] = set()

    def write(
        self, folder: Path, detections: Sequence[Detections], batch: Batch, class_names: Sequence[str]
    ) -> None:
        """One result file per sample of ``batch`` in ``folder``."""
        if self.clear and folder not in self._cleared:
            for stale in folder.glob("*.txt") if folder.is_dir() else ():
                stale.unlink()
            self._cleared.add(folder)
        for frame_id, det, record in zip(batch.frame_ids, detections, batch.records, strict=True):
            if not isinstance(record, KittiRecord):
                raise ValueError(
                    f"KittiResultWriter: frame {frame_id} carries {type(record).__name__}, not a KittiRecord "
                    "(KITTI result files need the frame's calibration)"
                )
            write_label(
                folder / f"{frame_id}.txt", kitti_result_objects(det, record, class_names), fsync=False
            )

    def write_outputs(self, folder: Path, outputs: Any, batch: Batch, pl_module: L.LightningModule) -> None:
        """What a task's step returned for ``batch``, checked, as result files in ``folder``."""
        detections = _check_outputs(outputs, batch, "KittiResultWriter")
        self.write(folder, detections, batch, _class_names(pl_module))

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cleared.discard(self.output_dir)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.write_outputs(self.output_dir, prediction, batch, pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cleared.discard(self.validation_dir)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self.write_outputs(self.validation_dir, outputs, batch, pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cleared.discard(self.output_dir)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.on_test:
            self.write_outputs(self.output_dir, outputs, batch, pl_module)


class WaymoSubmissionWriter(BasePredictionWriter):
    """Writes a prediction epoch's detections as one Waymo submission file (``metrics.Objects``).

    Frames are keyed by their record's ``(context_name, timestamp_micros)``; the file is written at
    the end of the epoch (atomically). Samples must carry a :class:`~perception.structures.WaymoRecord`.

    Args:
        path: the submission file (``.bin``).
    """

    def __init__(self, path: str) -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self._frames: dict[FrameKey, WaymoObjects] = {}

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._frames = {}

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        detections = _check_outputs(prediction, batch, "WaymoSubmissionWriter")
        class_names = _class_names(pl_module)
        for frame_id, det, record in zip(batch.frame_ids, detections, batch.records, strict=True):
            if not isinstance(record, WaymoRecord):
                raise ValueError(
                    f"WaymoSubmissionWriter: frame {frame_id} carries {type(record).__name__}, not a WaymoRecord"
                )
            self._frames[record.frame_key] = waymo_objects(det, class_names)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        write_objects(self.path, self._frames)
        log.info("wrote %d frames of predictions to %s", len(self._frames), self.path)
