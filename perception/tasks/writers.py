"""Prediction writers: Lightning callbacks that write a task's outputs as dataset files.

The task never writes files; it returns one prediction per sample from ``predict_step`` (and from
``validation_step`` / ``test_step``): a :class:`~perception.structures.Detections` for detection, a
(N_b,) tensor of training ids for segmentation. These callbacks turn them into the files users submit
or score:

- :class:`KittiResultWriter`: one KITTI result file per frame (15 label fields + score), the rows the
  KITTI evaluator scores (:func:`~perception.eval.detection.kitti_result_objects`), so scoring the
  folder reproduces the metric. On predict, and optionally on validation / test.
- :class:`WaymoSubmissionWriter`: one Waymo submission file (a serialized ``metrics.Objects``) for the
  whole prediction epoch.
- :class:`SemanticKittiLabelWriter`: one SemanticKITTI ``.label`` file of raw ids per scan, in the
  official submission layout ``sequences/NN/predictions/NNNNNN.label``, the files
  ``python -m perception.eval.segmentation`` scores. On predict, and optionally on validation / test.
- :class:`OccupancyGridWriter`: the vehicle grids of an occupancy task's forecasts, its targets and
  the label baselines as ``.npz`` files, the files ``python -m perception.eval.occupancy`` scores. On
  validation and test.

All write atomically (a temporary name, then rename). Under DDP each process writes the per-sample
files of its own samples (rank 0 clears a folder first while the others wait) and the one-file
writers gather every process's part to rank 0, which writes the file (:mod:`perception.tasks.ddp`). In a config::

    trainer:
      callbacks:
        - class_path: perception.tasks.writers.KittiResultWriter
          init_args: {output_dir: outputs/predictions, on_validation: true}
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from perception.data.io import atomic_write_bytes
from perception.data.kitti import write_label
from perception.data.waymo.submission import write_objects
from perception.eval.detection import kitti_result_objects, waymo_objects
from perception.structures import (
    Batch,
    Detections,
    FrameKey,
    KittiRecord,
    LabelMap,
    ScanRecord,
    WaymoObjects,
    WaymoRecord,
)
from perception.structures.occupancy import OccupancyForecast
from perception.tasks.ddp import gather_to_rank_zero, is_distributed, on_rank_zero_then_wait

__all__ = ["KittiResultWriter", "OccupancyGridWriter", "SemanticKittiLabelWriter", "WaymoSubmissionWriter"]

log = logging.getLogger(__name__)


def _class_names(pl_module: L.LightningModule) -> Sequence[str]:
    names = getattr(pl_module, "class_names", None)
    if names is None:
        raise ValueError(f"{type(pl_module).__name__} has no class_names to name the detections' labels")
    return names


def _check_outputs(outputs: Any, batch: Batch, writer: str, what: str = "Detections") -> Sequence[Any]:
    if not isinstance(outputs, (list, tuple)) or len(outputs) != batch.batch_size:
        raise ValueError(
            f"{writer}: expected the task to return one {what} per sample ({batch.batch_size}), "
            f"got {type(outputs).__name__}"
        )
    return outputs


class _FolderWriter(BasePredictionWriter):
    """What the writers of one file per sample share: where and when they write, and clearing.

    Subclasses implement :meth:`stale_files` and :meth:`write_outputs`; see :class:`KittiResultWriter`
    for the arguments.
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

    def stale_files(self, folder: Path) -> Iterable[Path]:
        """The files of an earlier run in ``folder``, removed before a run writes its first file there."""
        raise NotImplementedError

    def clear_once(self, folder: Path) -> None:
        """Remove :meth:`stale_files` the first time this run writes to ``folder`` (when ``clear``)."""
        if self.clear and folder not in self._cleared:
            for stale in list(self.stale_files(folder)) if folder.is_dir() else ():
                stale.unlink()
            self._cleared.add(folder)

    def write_outputs(self, folder: Path, outputs: Any, batch: Batch, pl_module: L.LightningModule) -> None:
        """What a task's step returned for ``batch``, checked, as files in ``folder``."""
        raise NotImplementedError

    def begin_epoch(self, trainer: L.Trainer, folder: Path) -> None:
        """An epoch will write to ``folder``: clear it again (lazily, at the first write, in one process;
        under DDP rank 0 clears it now while the others wait, so no process removes another's files)."""
        self._cleared.discard(folder)
        if is_distributed(trainer):
            on_rank_zero_then_wait(trainer, lambda: self.clear_once(folder))
            self._cleared.add(folder)

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.begin_epoch(trainer, self.output_dir)

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
        if self.on_validation and not trainer.sanity_checking:
            self.begin_epoch(trainer, self.validation_dir)

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
        if self.on_test:
            self.begin_epoch(trainer, self.output_dir)

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


class KittiResultWriter(_FolderWriter):
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

    def stale_files(self, folder: Path) -> Iterable[Path]:
        return folder.glob("*.txt")

    def write(
        self, folder: Path, detections: Sequence[Detections], batch: Batch, class_names: Sequence[str]
    ) -> None:
        """One result file per sample of ``batch`` in ``folder``."""
        self.clear_once(folder)
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
        parts = gather_to_rank_zero(trainer, self._frames)  # DDP: rank 0 writes every process's frames
        self._frames = {}
        if parts is None:
            return
        frames = {key: objects for part in parts for key, objects in part.items()}
        write_objects(self.path, frames)
        log.info("wrote %d frames of predictions to %s", len(frames), self.path)


def _label_map(pl_module: L.LightningModule) -> LabelMap:
    lm = getattr(pl_module, "label_map", None)
    if not isinstance(lm, LabelMap):
        raise ValueError(
            f"{type(pl_module).__name__} has no label_map (a LabelMap) to turn training ids into raw label ids"
        )
    return lm


class SemanticKittiLabelWriter(_FolderWriter):
    """Writes ``OUTPUT_DIR/sequences/NN/predictions/NNNNNN.label`` from a segmentation task's outputs.

    The official SemanticKITTI submission layout, scored by ``python -m perception.eval.segmentation
    ROOT OUTPUT_DIR`` (and by the official ``evaluate_semantics.py``): one uint32 raw label id per point
    of the scan file, in its order, each sample's predicted training ids turned into raw ids with the
    task's ``label_map`` (``learning_map_inv``; :meth:`~perception.structures.LabelMap.raw_ids`).

    The task's step returns, per sample, a (N_b,) integer tensor of training ids 1..K for every point
    of the scan; the task exposes ``label_map``; samples carry a
    :class:`~perception.structures.ScanRecord` (sequence, scan, the scan file's point count).

    Args:
        output_dir: the root the prediction run's ``sequences/`` go under.
        on_validation: also write the scans every validation scores, under ``validation_dir``
            (rewritten each validation). Not during the sanity check.
        validation_dir: where validation writes (default ``output_dir``).
        on_test: likewise for ``trainer.test`` (under ``output_dir``).
        clear: remove the ``sequences/*/predictions/*.label`` files already under a root before the
            first file of a run is written there, so it holds exactly one run's scans.
    """

    def stale_files(self, folder: Path) -> Iterable[Path]:
        return folder.glob("sequences/*/predictions/*.label")

    def write(
        self, folder: Path, predictions: Sequence[torch.Tensor], batch: Batch, label_map: LabelMap
    ) -> None:
        """One ``.label`` file per sample of ``batch`` under ``folder``.

        Raises:
            ValueError: a sample without a :class:`ScanRecord`, or whose predictions are not one
                training id 1..K for each point of its scan file (a transform that drops points cannot
                be written).
        """
        self.clear_once(folder)
        for frame_id, pred, record in zip(batch.frame_ids, predictions, batch.records, strict=True):
            if not isinstance(record, ScanRecord):
                raise ValueError(
                    f"SemanticKittiLabelWriter: frame {frame_id} carries {type(record).__name__}, not a "
                    "ScanRecord (the scan's sequence and point count)"
                )
            where = f"scan {record.sequence}/{record.scan}"
            ids = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
            if ids.shape != (record.num_points,):
                raise ValueError(
                    f"SemanticKittiLabelWriter: {where} has {record.num_points} points in its file but "
                    f"predictions of shape {ids.shape}; a prediction file needs one label per point "
                    "(drop transforms that remove points, such as range filters, when writing predictions)"
                )
            if not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(
                    f"SemanticKittiLabelWriter: {where}: predictions must be integer ids, got {ids.dtype}"
                )
            if ids.size and (ids.min() < 1 or ids.max() > label_map.num_classes):
                raise ValueError(
                    f"SemanticKittiLabelWriter: {where}: training ids {ids.min()}..{ids.max()} outside "
                    f"1..{label_map.num_classes} of the {label_map.name} class map"
                )
            path = folder / "sequences" / record.sequence / "predictions" / f"{record.scan}.label"
            atomic_write_bytes(path, label_map.raw_ids(ids).astype("<u4").tobytes(), fsync=False)

    def write_outputs(self, folder: Path, outputs: Any, batch: Batch, pl_module: L.LightningModule) -> None:
        """What a task's step returned for ``batch``, checked, as ``.label`` files under ``folder``."""
        predictions = _check_outputs(outputs, batch, "SemanticKittiLabelWriter", "tensor of training ids")
        self.write(folder, predictions, batch, _label_map(pl_module))


class OccupancyGridWriter(L.Callback):
    """Collects an occupancy task's validation (test) forecasts and writes, at the epoch's end::

        OUT/targets.npz                       observed, occluded, flow_origin (B, T, H, W), flow (B, T, H, W, 2)
        OUT/predictions.npz                   observed, occluded (B, T, H, W) probabilities, flow
        OUT/baseline_<name>.npz               each label baseline's grids, as predictions.npz
        OUT/frames.txt                        the samples' frame ids, in the files' order

    Vehicle channel only (what the official metric scores), float32 (float16 with ``half``). Each
    file is written atomically; ``python -m perception.eval.occupancy OUT/targets.npz
    OUT/predictions.npz`` gives the numbers the validation logged (pooled over the same samples).
    """

    def __init__(self, output_dir: str, half: bool = False) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.half = half
        self._parts: dict[str, dict[str, list[np.ndarray]]] = {}
        self._frames: list[str] = []

    def _reset(self) -> None:
        self._parts, self._frames = {}, []

    def _add(self, name: str, arrays: dict[str, torch.Tensor]) -> None:
        dtype = np.float16 if self.half else np.float32
        store = self._parts.setdefault(name, {})
        for key, value in arrays.items():
            store.setdefault(key, []).append(value.detach().float().cpu().numpy().astype(dtype))

    def _collect(self, outputs: Any, batch: Batch) -> None:
        targets = batch.occupancy
        if targets is None or not isinstance(outputs, OccupancyForecast):
            raise ValueError(f"{type(self).__name__}: needs an occupancy task's forecast and targets")
        self._add("targets", {
            "observed": targets.observed[:, :, 0], "occluded": targets.occluded[:, :, 0],
            "flow_origin": targets.flow_origin, "flow": targets.flow,
        })  # fmt: skip
        forecasts = {"predictions": outputs} | {f"baseline_{k}": v for k, v in targets.baselines.items()}
        for name, f in forecasts.items():
            self._add(
                name, {"observed": f.observed[:, :, 0], "occluded": f.occluded[:, :, 0], "flow": f.flow}
            )
        self._frames.extend(batch.frame_ids)

    def _write(self, trainer: L.Trainer) -> None:
        gathered = gather_to_rank_zero(trainer, (self._parts, self._frames))  # DDP: rank 0 writes all
        self._reset()
        if gathered is None:
            return
        frames = [frame for _, part_frames in gathered for frame in part_frames]
        if not frames:
            return
        names = dict.fromkeys(name for parts, _ in gathered for name in parts)
        for name in names:
            keys = dict.fromkeys(k for parts, _ in gathered for k in parts.get(name, {}))
            arrays = {
                k: np.concatenate([a for parts, _ in gathered for a in parts.get(name, {}).get(k, [])])
                for k in keys
            }
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            atomic_write_bytes(self.output_dir / f"{name}.npz", buffer.getvalue())
        atomic_write_bytes(self.output_dir / "frames.txt", ("\n".join(frames) + "\n").encode())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs, batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)
