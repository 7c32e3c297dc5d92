"""Prediction writers of the shape tasks: the files ``python -m perception.eval.shapes`` scores.

- :class:`ClassificationCsvWriter`: one CSV per run, ``shape_id,predicted_class,score`` (the class
  name and its probability), from a :class:`~perception.tasks.classification.ClassificationTask`'s
  :class:`~perception.tasks.classification.ClassPrediction`\\ s; optionally the batches' labels as a
  ground-truth CSV ``shape_id,label`` beside it.
- :class:`PartLabelWriter`: one text file per shape, ``OUT/<shape_id>.txt`` with one global part id
  per line in the point order, from a :class:`~perception.tasks.classification.PartSegmentationTask`'s
  :class:`~perception.tasks.classification.PartPrediction`\\ s; optionally the batches' part labels
  as ground-truth files in the same format.

Both write on predict and, where asked, on validation (not during the sanity check) and test; every
file is written atomically (a temporary name, then rename). In a config::

    trainer:
      callbacks:
        - class_path: perception.tasks.shape_writers.ClassificationCsvWriter
          init_args: {path: outputs/predictions.csv, on_validation: true}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from perception.data.io import atomic_write_text
from perception.eval.shapes import (
    GROUND_TRUTH_HEADER,
    PREDICTION_HEADER,
    classification_csv,
    part_file,
    write_part_file,
)
from perception.structures.shapes import PointSetBatch
from perception.tasks.classification import ClassPrediction, PartPrediction
from perception.tasks.ddp import gather_to_rank_zero, on_rank_zero_then_wait

__all__ = ["ClassificationCsvWriter", "PartLabelWriter"]

log = logging.getLogger(__name__)


def _checked(outputs: Any, batch: PointSetBatch, kind: type, writer: str) -> Sequence[Any]:
    """The step's outputs, one ``kind`` per shape of ``batch`` in its order."""
    if (
        not isinstance(outputs, (list, tuple))
        or len(outputs) != len(batch)
        or not all(isinstance(o, kind) for o in outputs)
    ):
        raise ValueError(
            f"{writer}: expected the task to return one {kind.__name__} per shape ({len(batch)}), "
            f"got {type(outputs).__name__}"
        )
    ids = [o.shape_id for o in outputs]
    if ids != list(batch.shape_ids):
        raise ValueError(
            f"{writer}: predictions of shapes {ids[:3]}... for a batch of {batch.shape_ids[:3]}..."
        )
    return outputs


class _ShapeWriter(BasePredictionWriter):
    """Calls :meth:`begin`, :meth:`add` (each batch) and :meth:`end` for every epoch it writes: predict
    always, validation when ``on_validation`` (not the sanity check), test when ``on_test``."""

    def __init__(self, on_validation: bool, on_test: bool) -> None:
        super().__init__(write_interval="batch")
        self.on_validation, self.on_test = on_validation, on_test
        self._stage: str | None = None
        self._trainer: L.Trainer | None = None  # the running epoch's (DDP: rank and world size)

    def begin(self, stage: str) -> None:
        raise NotImplementedError

    def add(self, outputs: Any, batch: PointSetBatch, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """The epoch is over (files written per batch need nothing here)."""

    def _begin(self, trainer: L.Trainer, stage: str) -> None:
        self._stage, self._trainer = stage, trainer
        self.begin(stage)

    def _end(self) -> None:
        if self._stage is not None:
            self.end()
        self._stage = None

    # predict
    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._begin(trainer, "predict")

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self.add(prediction, batch, pl_module)

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end()

    # validation
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_validation and not trainer.sanity_checking:
            self._begin(trainer, "validation")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self._stage == "validation":
            self.add(outputs, batch, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stage == "validation":
            self._end()

    # test
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.on_test:
            self._begin(trainer, "test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._stage == "test":
            self.add(outputs, batch, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stage == "test":
            self._end()


class ClassificationCsvWriter(_ShapeWriter):
    """Writes an epoch's class predictions to one CSV, ``shape_id,predicted_class,score``, at its end.

    Args:
        path: the prediction run's CSV (and the test run's).
        ground_truth_path: also write the batches' labels there, ``shape_id,label`` (the file the
            predictions are scored against); None: not.
        on_validation: also write every validation's predictions (rewritten each time, so after a fit
            it holds the final validation's), to ``validation_path`` (default ``path``).
        validation_path: see ``on_validation``.
        on_test: also write ``trainer.test``'s predictions, to ``path``.

    The task exposes ``class_names`` (its labels index into them).
    """

    def __init__(
        self,
        path: str,
        ground_truth_path: str | None = None,
        on_validation: bool = False,
        validation_path: str | None = None,
        on_test: bool = False,
    ) -> None:
        super().__init__(on_validation, on_test)
        self.path = Path(path)
        self.ground_truth_path = None if ground_truth_path is None else Path(ground_truth_path)
        self.validation_path = self.path if validation_path is None else Path(validation_path)
        self._rows: list[tuple[str, str, float]] = []
        self._truth: list[tuple[str, str]] = []
        self._target = self.path

    def begin(self, stage: str) -> None:
        self._rows, self._truth = [], []
        self._target = self.validation_path if stage == "validation" else self.path

    def add(self, outputs: Any, batch: PointSetBatch, pl_module: L.LightningModule) -> None:
        predictions = _checked(outputs, batch, ClassPrediction, type(self).__name__)
        names = list(pl_module.class_names)
        self._rows += [(p.shape_id, names[p.label], p.score) for p in predictions]
        if self.ground_truth_path is not None:
            self._truth += [
                (s, names[int(k)]) for s, k in zip(batch.shape_ids, batch.labels.tolist(), strict=True)
            ]

    def end(self) -> None:
        parts = [(self._rows, self._truth)]
        if self._trainer is not None:  # DDP: rank 0 writes every process's rows, in rank order
            parts = gather_to_rank_zero(self._trainer, (self._rows, self._truth))
        self._rows, self._truth = [], []
        if parts is None:
            return
        rows = [row for part_rows, _ in parts for row in part_rows]
        truth = [row for _, part_truth in parts for row in part_truth]
        atomic_write_text(self._target, classification_csv(rows, PREDICTION_HEADER), fsync=False)
        if self.ground_truth_path is not None:
            atomic_write_text(
                self.ground_truth_path, classification_csv(truth, GROUND_TRUTH_HEADER), fsync=False
            )
        log.info("wrote the predicted classes of %d shapes to %s", len(rows), self._target)


class PartLabelWriter(_ShapeWriter):
    """Writes ``OUTPUT_DIR/<shape_id>.txt``, one global part id per line, for every predicted shape.

    Args:
        output_dir: the prediction run's folder (and the test run's).
        ground_truth_dir: also write the batches' part labels there in the same format; None: not.
        on_validation: also write every validation's predictions, to ``validation_dir`` (default
            ``output_dir``; rewritten each validation).
        validation_dir: see ``on_validation``.
        on_test: also write ``trainer.test``'s predictions, to ``output_dir``.
        clear: remove the ``*.txt`` files (any depth) already in a folder when an epoch starts writing
            there, so it holds exactly one run's shapes.
    """

    def __init__(
        self,
        output_dir: str,
        ground_truth_dir: str | None = None,
        on_validation: bool = False,
        validation_dir: str | None = None,
        on_test: bool = False,
        clear: bool = True,
    ) -> None:
        super().__init__(on_validation, on_test)
        self.output_dir = Path(output_dir)
        self.ground_truth_dir = None if ground_truth_dir is None else Path(ground_truth_dir)
        self.validation_dir = self.output_dir if validation_dir is None else Path(validation_dir)
        self.clear = clear
        self._folder = self.output_dir
        self._written = 0

    def begin(self, stage: str) -> None:
        self._folder = self.validation_dir if stage == "validation" else self.output_dir
        self._written = 0
        if self.clear:
            folders = (self._folder, self.ground_truth_dir)

            def clear() -> None:
                for folder in folders:
                    for stale in (
                        sorted(folder.rglob("*.txt")) if folder is not None and folder.is_dir() else ()
                    ):
                        stale.unlink()

            if self._trainer is None:
                clear()
            else:  # DDP: rank 0 clears while the others wait, so no process removes another's files
                on_rank_zero_then_wait(self._trainer, clear)

    def add(self, outputs: Any, batch: PointSetBatch, pl_module: L.LightningModule) -> None:
        predictions = _checked(outputs, batch, PartPrediction, type(self).__name__)
        for p in predictions:
            write_part_file(part_file(self._folder, p.shape_id), p.parts)
        if self.ground_truth_dir is not None:
            if batch.part_labels is None:
                raise ValueError(
                    f"{type(self).__name__}: the batch has no part labels to write as ground truth"
                )
            for shape_id, labels in zip(batch.shape_ids, batch.part_labels, strict=True):
                write_part_file(part_file(self.ground_truth_dir, shape_id), labels)
        self._written += len(predictions)

    def end(self) -> None:
        log.info("wrote the part labels of %d shapes to %s", self._written, self._folder)
