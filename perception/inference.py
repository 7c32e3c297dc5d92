"""One way to load a trained task — a checkpoint with its config — and to predict over frame ids or scans.

``tools/eval.py``, ``tools/visualize.py`` and the benchmarks all load through :func:`load_task` and
predict through :class:`Predictor`, so a checkpoint means the same thing everywhere:

1. **Config.** The task is rebuilt from a config (the detector tree is an ``nn.Module`` argument, so it
   is not in the checkpoint's hyperparameters): the one given (a path, or a bare name looked up in
   ``configs/``), else the ``config.yaml`` LightningCLI saved beside the run
   (``RUN/config.yaml`` for ``RUN/checkpoints/last.ckpt``). Top-level keys of a saved ``fit`` config
   that are not sections (``ckpt_path``, ...) are dropped. A detection config (its ``model`` section
   the :class:`DetectionTask`'s arguments) is built by :class:`~perception.cli.DetectionCLI`; a config
   whose ``model`` and ``data`` name their classes (``class_path``/``init_args``, e.g. a
   :class:`~perception.tasks.segmentation.SegmentationTask` run) by :class:`~perception.cli.TaskCLI`,
   the CLI that trained it.
2. **Weights.** ``torch.load(ckpt, weights_only=True)`` (a Lightning checkpoint, or a bare state dict
   ``torch.save(task.state_dict(), PATH)``), loaded strictly; a ``torch.compile``-d model's keys are
   unwrapped; a checkpoint trained for other classes (or another class map) than the config names is
   refused.
3. **Frames.** :class:`Predictor` predicts exactly the frames asked for (datasets take
   ``frame_ids=``; segmentation: whole sequences, or a split's), through the config's validation
   transforms and the trainer's precision (what validation saw), and hands the predictions
   (:class:`~perception.structures.Detections`, or per scan (N,) training ids) to prediction-writer
   callbacks or back to the caller. Loading never generates data: a segmentation data module's
   ``generate`` is turned off.
4. **Shapes.** A :class:`~perception.tasks.classification.ClassificationTask` or
   :class:`~perception.tasks.classification.PartSegmentationTask` config predicts a split of its shape
   data module (``val`` and ``test`` are the module's held-out splits); a checkpoint trained for other
   classes, or another part taxonomy, is refused.
5. **Occupancy.** :func:`occupancy_samples` takes samples of an occupancy config's validation split by
   index (stacked sweeps and true grids with the label baselines) and :func:`predict_occupancy`
   forecasts them with the loaded task (for ``tools/visualize.py --sample``).

Errors a user can fix (no config, a checkpoint that is not one, one for another model) raise
:class:`InferenceError` with a one-line message.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from perception.cli import CONFIG_DIR, DetectionCLI, TaskCLI
from perception.data.datamodules import DetectionDataModule
from perception.structures import Detections, Sample
from perception.structures.occupancy import OccupancyForecast
from perception.structures.segmentation import label_map as resolve_label_map
from perception.tasks.detection import DetectionTask
from perception.tasks.segmentation import SegmentationTask

__all__ = [
    "SHAPE_KINDS",
    "InferenceError",
    "LoadedTask",
    "Predictor",
    "config_dataset",
    "config_kind",
    "find_config",
    "load_task",
    "occupancy_samples",
    "predict_occupancy",
    "read_checkpoint",
    "read_config",
]

# Top-level keys of a config that are sections of the CLI (a saved ``fit`` config has others).
_CONFIG_SECTIONS = ("seed_everything", "trainer", "model", "data", "checkpoint", "optimizer", "lr_scheduler")


class InferenceError(Exception):
    """A user-facing error of loading or running a checkpoint (one line; tools exit with status 2)."""


def find_config(ckpt: str | os.PathLike | None, config: str | os.PathLike | None = None) -> Path:
    """The config to rebuild the task from: ``config`` (a path or a name in ``configs/``), else the
    ``config.yaml`` of the run ``ckpt`` belongs to (beside it, or one folder up)."""
    if config is not None:
        path = Path(config)
        if path.is_file():
            return path
        candidate = CONFIG_DIR / path
        candidate = candidate if candidate.suffix else candidate.with_suffix(".yaml")
        if candidate.is_file():
            return candidate
        known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
        raise InferenceError(
            f"config {str(config)!r} not found as a path nor in {CONFIG_DIR} (there: {known})"
        )
    if ckpt is None:
        raise InferenceError("give a checkpoint or a config")
    ckpt = Path(ckpt)
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    raise InferenceError(
        f"no config.yaml beside {ckpt} (looked in {ckpt.parent} and {ckpt.parent.parent}); "
        "pass the training config (--config NAME.yaml)"
    )


def read_config(config: Path) -> dict[str, Any]:
    """The CLI sections of a config file (``model``, ``data``, ``trainer``, ...)."""
    try:
        content = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise InferenceError(f"{config}: not a readable YAML config: {err}") from err
    if not isinstance(content, dict):
        raise InferenceError(f"{config}: expected a mapping with model / data / trainer sections")
    return {k: v for k, v in content.items() if k in _CONFIG_SECTIONS}


def _named_class(section: Any) -> str | None:
    """The ``class_path`` a config section names (a TaskCLI config), or None (a DetectionCLI one)."""
    if isinstance(section, dict) and "class_path" in section:
        return str(section["class_path"])
    return None


def _import_class(class_path: str, config: Path) -> type:
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise InferenceError(f"{config}: class_path {class_path!r} does not name a class ({err})") from err
    if not isinstance(found, type):
        raise InferenceError(f"{config}: class_path {class_path!r} is not a class")
    return found


def config_kind(config: Path) -> str:
    """The task a config trains: ``segmentation`` (its ``model.class_path`` a
    :class:`~perception.tasks.segmentation.SegmentationTask`), ``occupancy`` (an
    :class:`~perception.tasks.occupancy.OccupancyTask`), ``classification`` / ``part_segmentation``
    (the shape tasks of :mod:`perception.tasks.classification`) or ``detection``; known before anything
    is built."""
    class_path = _named_class(read_config(config).get("model"))
    if class_path is not None:
        task_class = _import_class(class_path, config)
        if issubclass(task_class, SegmentationTask):
            return "segmentation"
        if _is_occupancy_task(task_class):
            return "occupancy"
        shape = _shape_kind(task_class)
        if shape is not None:
            return shape
    return "detection"


SHAPE_KINDS = ("classification", "part_segmentation")
"""The kinds of the shape tasks (:mod:`perception.tasks.classification`)."""


def _shape_kind(task_class: type) -> str | None:
    """``classification`` / ``part_segmentation`` for (a subclass of) the shape tasks, known by name so
    that other tasks never import them; else None."""
    names = {"ClassificationTask": "classification", "PartSegmentationTask": "part_segmentation"}
    for c in task_class.__mro__:
        if c.__module__ == "perception.tasks.classification" and c.__name__ in names:
            return names[c.__name__]
    return None


def _is_occupancy_task(task_class: type) -> bool:
    """Whether a class is (a subclass of) :class:`~perception.tasks.occupancy.OccupancyTask`, known by
    name so that other tasks never import the occupancy stack."""
    return any(
        c.__module__ == "perception.tasks.occupancy" and c.__name__ == "OccupancyTask"
        for c in task_class.__mro__
    )


def config_dataset(config: Path) -> str:
    """The dataset kind a config's data module reads (``data.dataset``: ``kitti`` unless it says ``waymo``;
    ``semantickitti`` for a segmentation config), known before anything is built: a checkpoint of the
    other kind would not even load."""
    data = read_config(config).get("data") or {}
    if _named_class(data) is not None:
        dataset = (data.get("init_args") or {}).get("dataset")
        if dataset is not None:
            return str(dataset)
        kind = config_kind(config)
        return "semantickitti" if kind == "segmentation" else "synthetic" if kind in SHAPE_KINDS else "kitti"
    return str(data.get("dataset", "kitti"))


def read_checkpoint(ckpt: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, hyper_parameters)`` of a Lightning checkpoint or a bare state dict, read with
    ``weights_only=True``; a ``torch.compile``-d model's keys (``model._orig_mod.``) are unwrapped."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise InferenceError(f"{ckpt}: checkpoint not found")
    try:
        content = torch.load(ckpt, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise InferenceError(
            f"{ckpt}: does not load with torch.load(weights_only=True) (the project loads no pickled "
            f"objects); save plain tensors and Python values, e.g. torch.save(task.state_dict(), PATH). "
            f"torch said: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(content, dict):
        raise InferenceError(
            f"{ckpt}: expected a checkpoint dict or a state dict, got {type(content).__name__}"
        )
    state = content.get("state_dict", content)
    hparams = content.get("hyper_parameters", {}) if "state_dict" in content else {}
    state = {k.replace("model._orig_mod.", "model.", 1): v for k, v in state.items()}
    return state, hparams


@dataclass
class LoadedTask:
    """A task rebuilt from its config with the checkpoint's weights, its data module and a trainer.

    Attributes:
        task: the :class:`~perception.tasks.detection.DetectionTask` (or the config's task, e.g. a
            :class:`~perception.tasks.segmentation.SegmentationTask`), in eval mode.
        datamodule: the config's data module (``data.root`` replaced where asked).
        trainer: a one-device trainer with the config's precision, no logger, no batch limits.
        config: the config file the task was built from.
        checkpoint: the checkpoint the weights came from (None: initial weights).
    """

    task: DetectionTask | L.LightningModule
    datamodule: DetectionDataModule | L.LightningDataModule
    trainer: L.Trainer
    config: Path
    checkpoint: Path | None

    @property
    def kind(self) -> str:
        """``segmentation`` for a :class:`~perception.tasks.segmentation.SegmentationTask`, ``occupancy``
        for an :class:`~perception.tasks.occupancy.OccupancyTask`, ``classification`` /
        ``part_segmentation`` for the shape tasks, else ``detection``."""
        if isinstance(self.task, SegmentationTask):
            return "segmentation"
        if _is_occupancy_task(type(self.task)):
            return "occupancy"
        return _shape_kind(type(self.task)) or "detection"

    @property
    def dataset(self) -> str:
        """The data module's dataset kind (``kitti`` or ``waymo``; ``semantickitti`` for segmentation)."""
        found = getattr(self.datamodule, "dataset", None)
        if found is None:
            return "semantickitti" if self.kind == "segmentation" else "kitti"
        return str(found)


def _trainer_args(out_dir: str | os.PathLike | None) -> list[str]:
    """What every inference run sets: no logger, one device, no batch limits."""
    args = [
        "--trainer.logger", "false",
        "--trainer.devices", "1",
        "--trainer.num_nodes", "1",
        "--trainer.strategy", "auto",
        "--trainer.fast_dev_run", "false",  # a training run's batch limits do not apply here
        "--trainer.limit_train_batches", "null",
        "--trainer.limit_val_batches", "null",
        "--trainer.limit_test_batches", "null",
        "--trainer.limit_predict_batches", "null",
    ]  # fmt: skip
    if out_dir is not None:
        args += ["--trainer.default_root_dir", str(out_dir)]
    return args


def _parameters(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters)


def _section_args(
    config: dict[str, Any],
    path: Path,
    data_root: str | os.PathLike | None,
    batch_size: int | None,
    num_workers: int | None,
) -> tuple[type[DetectionCLI] | type[TaskCLI], list[str]]:
    """The CLI that builds ``config`` and the ``model`` / ``data`` arguments inference sets.

    A detection config: no ``torch.compile``, no ground-truth database (else ``prepare_data`` would
    build the train split's). A TaskCLI config: the same where its classes take them
    (``compile``, ``database``), and no generated data (``generate``).
    """
    model_class, data_class = _named_class(config.get("model")), _named_class(config.get("data"))
    if model_class is None:
        args = ["--model.compile", "false", "--data.database", "null"]
        prefix, data_params = "--data.", {"root", "val_batch_size", "num_workers"}
        cli: type[DetectionCLI] | type[TaskCLI] = DetectionCLI
    else:
        if data_class is None:
            raise InferenceError(
                f"{path}: model names its class_path but data does not; a task config names both"
            )
        model_params = _parameters(_import_class(model_class, path))
        data_params = _parameters(_import_class(data_class, path))
        args = ["--model.init_args.compile", "false"] if "compile" in model_params else []
        args += ["--data.init_args.database", "null"] if "database" in data_params else []
        args += ["--data.init_args.generate", "false"] if "generate" in data_params else []
        prefix, cli = "--data.init_args.", TaskCLI
    for key, value in (("root", data_root), ("val_batch_size", batch_size), ("num_workers", num_workers)):
        if value is None:
            continue
        if key not in data_params:
            raise InferenceError(f"{path}: the data module {data_class} takes no {key}")
        args += [f"{prefix}{key}", str(value)]
    return cli, args


def _check_classes(task: L.LightningModule, hparams: dict[str, Any], ckpt: Any, path: Path) -> None:
    """Refuse a checkpoint trained for other classes (detection, classification), another class map
    (segmentation) or another part taxonomy (part segmentation)."""
    _check_taxonomy(task, hparams, ckpt, path)
    trained = hparams.get("class_names")
    if trained is not None and list(trained) != list(task.class_names):
        raise InferenceError(
            f"{ckpt} was trained for classes {list(trained)} but {path} names {task.class_names}"
        )
    trained_map, config_map = hparams.get("label_map"), getattr(task, "label_map", None)
    if isinstance(trained_map, str) and config_map is not None:
        try:
            trained_names = list(resolve_label_map(trained_map).class_names)
        except (OSError, ValueError):  # a class map file that is gone: the weights' shapes still check
            return
        if trained_names != list(config_map.class_names):
            raise InferenceError(
                f"{ckpt} was trained with the class map {trained_map!r} {trained_names} but {path} "
                f"names {config_map.name!r} {list(config_map.class_names)}"
            )


def _check_taxonomy(task: L.LightningModule, hparams: dict[str, Any], ckpt: Any, path: Path) -> None:
    """Refuse a part-segmentation checkpoint trained with another part taxonomy than the config's."""
    trained, config_taxonomy = hparams.get("taxonomy"), getattr(task, "taxonomy", None)
    if trained is None or config_taxonomy is None:
        return
    from perception.eval.shapes import part_taxonomy

    try:
        trained = part_taxonomy(trained)
    except ValueError:  # a taxonomy this version no longer knows: the weights' shapes still check
        return
    if trained != config_taxonomy:
        raise InferenceError(
            f"{ckpt} was trained with the part taxonomy {trained.name!r} ({trained.num_categories} categories, "
            f"{trained.num_parts} parts) but {path} names {config_taxonomy.name!r} "
            f"({config_taxonomy.num_categories} categories, {config_taxonomy.num_parts} parts)"
        )


def load_task(
    ckpt: str | os.PathLike | None,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    data_root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
) -> LoadedTask:
    """Rebuild the task of ``ckpt`` (see the module docstring) ready to predict.

    Args:
        ckpt: a checkpoint (``.ckpt``) or saved state dict; None for the config's initial weights.
        config: the config (path or name in ``configs/``); default the run's ``config.yaml``.
        overrides: LightningCLI overrides (``--section.key value`` ...).
        data_root: replaces ``data.root`` (``data.init_args.root`` in a TaskCLI config).
        out_dir: the trainer's ``default_root_dir``, where the config is saved as ``config.yaml``
            (None: the config's default root, and no config is saved).
        batch_size, num_workers: replace ``data.val_batch_size`` / ``data.num_workers``.

    Raises:
        InferenceError: no config, an unreadable checkpoint, or weights that do not fit the model.
    """
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    path = find_config(ckpt, config)
    state, hparams = read_checkpoint(ckpt) if ckpt is not None else ({}, {})
    sections = read_config(path)
    cli_class, section_args = _section_args(sections, path, data_root, batch_size, num_workers)
    args = ["--config", yaml.safe_dump(sections, sort_keys=False), *_trainer_args(out_dir), *section_args]
    argv0, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when args and sys.argv both hold some
    try:
        # the config is saved beside the outputs (OUT/config.yaml), never into the working directory
        save = {} if out_dir is not None else {"save_config_callback": None}
        cli = cli_class(run=False, args=[*args, *overrides], **save)
    finally:
        sys.argv = argv0
    task = cli.model
    _check_classes(task, hparams, ckpt, path)
    if ckpt is not None:
        try:
            task.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise InferenceError(f"{ckpt} does not fit the model of {path}: {err}") from err
    return LoadedTask(task.eval(), cli.datamodule, cli.trainer, path, None if ckpt is None else Path(ckpt))


class Predictor:
    """Predictions of a :class:`LoadedTask` for chosen frames of its data root.

    Frames go through the config's validation transforms and the trainer (its precision, the task's
    ``predict_step``), exactly as validation sees them. Detection: one
    :class:`~perception.structures.Detections` per frame. Segmentation: one (N,) int64 tensor of
    training ids 1..K per scan, for every scan of the sequences asked for (or of a split).

    Args:
        loaded: the task, data module and trainer (:func:`load_task`).
    """

    def __init__(self, loaded: LoadedTask) -> None:
        self.loaded = loaded

    @property
    def class_names(self) -> list[str]:
        return list(self.loaded.task.class_names)

    def run(
        self,
        frame_ids: Sequence[str] | None = None,
        split: str | None = None,
        split_folder: str | None = None,
        callbacks: Sequence[Callback] = (),
        return_predictions: bool = True,
        sequences: Sequence[str] | None = None,
    ) -> list[Detections] | list[torch.Tensor] | None:
        """Predict ``frame_ids`` (or the whole split file ``split``) and pass them to ``callbacks``.

        Args:
            frame_ids: KITTI ids (``000123``) or converted-Waymo keys (``<context>/<timestamp>``);
                None for every frame of ``split``'s split file. Not for segmentation.
            split: KITTI: the split file's name (``val``); Waymo: the split folder holding the frames;
                segmentation: the data module's split (``train``, ``val``, ``test``) whose sequences
                are predicted (default: its ``predict`` sequences).
            split_folder: KITTI only: the frames' folder (``training`` / ``testing``).
            callbacks: e.g. :class:`~perception.tasks.writers.KittiResultWriter` (segmentation:
                :class:`~perception.tasks.writers.SemanticKittiLabelWriter`), for this run only.
            return_predictions: return the predictions (one per frame, in order) or nothing.
            sequences: segmentation only: predict every scan of these sequences (``["08"]``).
        """
        if self.loaded.kind == "segmentation":
            return self._run_segmentation(frame_ids, split, sequences, callbacks, return_predictions)
        if self.loaded.kind in SHAPE_KINDS:
            if frame_ids is not None or sequences is not None or split_folder is not None:
                raise InferenceError("shape tasks predict a split of their data module: pass split only")
            return self._run_shapes(split, callbacks, return_predictions)
        if sequences is not None:
            raise InferenceError("sequences are chosen for segmentation; detection predicts frame_ids")
        datamodule = self.loaded.datamodule
        if split is not None:
            datamodule.predict_split = split
        if split_folder is not None:
            datamodule.predict_split_folder = split_folder
        datamodule.predict_frame_ids = None if frame_ids is None else [str(f) for f in frame_ids]
        return self._predict(callbacks, return_predictions, datamodule=datamodule)

    def _run_segmentation(
        self,
        frame_ids: Sequence[str] | None,
        split: str | None,
        sequences: Sequence[str] | None,
        callbacks: Sequence[Callback],
        return_predictions: bool,
    ) -> list[torch.Tensor] | None:
        """Every scan of ``sequences`` (or of ``split``'s), through the validation transforms, in
        sequence and scan order. The data module builds the loader; nothing is generated."""
        from perception.data.semantickitti import SemanticKittiDataset

        if frame_ids is not None:
            raise InferenceError("segmentation predicts whole sequences: pass sequences (or a split)")
        datamodule = self.loaded.datamodule
        if sequences is None:
            sequences = datamodule.sequences(split or "predict")
        names = [f"{int(s):02d}" if str(s).isdigit() and len(str(s)) < 2 else str(s) for s in sequences]
        datamodule.predict_set = SemanticKittiDataset(
            datamodule.root,
            names,
            datamodule.label_map,
            datamodule.val_transforms,
            seed=datamodule.seed,
            with_labels=None,
        )
        return self._predict(callbacks, return_predictions, dataloaders=datamodule.predict_dataloader())

    def _run_shapes(
        self, split: str | None, callbacks: Sequence[Callback], return_predictions: bool
    ) -> list | None:
        """Every shape of ``split`` through the held-out transforms, in the dataset's order: ``val`` and
        ``test`` are the data module's validation and test splits (ModelNet40 and the synthetic shapes
        hold out one split for both), other names the dataset's own (``train``)."""
        datamodule = self.loaded.datamodule
        named = {"val": datamodule.val_split, "test": datamodule.test_split}
        datamodule.predict_set = datamodule.make_dataset(named.get(split or "test", split), train=False)
        return self._predict(callbacks, return_predictions, dataloaders=datamodule.predict_dataloader())

    def _predict(self, callbacks: Sequence[Callback], return_predictions: bool, **source: Any) -> list | None:
        trainer = self.loaded.trainer
        added = [c for c in callbacks if c not in trainer.callbacks]
        trainer.callbacks.extend(added)
        try:
            outputs = trainer.predict(self.loaded.task, return_predictions=return_predictions, **source)
        finally:
            for callback in added:
                trainer.callbacks.remove(callback)
        if not return_predictions:
            return None
        return [item for batch in outputs or [] for item in batch]

    def frames(self) -> Any:
        """The dataset of the last :meth:`run` (its samples as the model saw them)."""
        return self.loaded.datamodule.predict_set


# ------------------------------------------------------------------------------------------------------
# occupancy


def occupancy_samples(loaded: LoadedTask, indices: Sequence[int]) -> list[Sample]:
    """Validation samples ``indices`` of an occupancy config's data module (its validation split and
    stride, as validation sees them): ``points`` (N, 5) the stacked sweeps in the current sensor frame,
    ``occupancy`` the true grids and the label baselines (NumPy). Nothing is generated.

    Raises:
        InferenceError: not an occupancy config, no sequence data at the data root, or an index
            outside the split.
    """
    from perception.data.sequences import SequenceError

    if loaded.kind != "occupancy":
        raise InferenceError(f"{loaded.config} is a {loaded.kind} config, not an occupancy one")
    datamodule = loaded.datamodule
    try:
        datamodule.setup("validate")
    except SequenceError as err:
        raise InferenceError(str(err)) from err
    dataset = datamodule.val_set
    outside = [int(i) for i in indices if not 0 <= int(i) < len(dataset)]
    if outside:
        has = f"{len(dataset)} samples (0..{len(dataset) - 1})" if len(dataset) else "no samples"
        raise InferenceError(
            f"sample(s) {outside} outside the validation split of {datamodule.root}, which has {has}"
        )
    return [dataset[int(i)] for i in indices]


def predict_occupancy(loaded: LoadedTask, samples: Sequence[Sample]) -> list[OccupancyForecast]:
    """The loaded occupancy task's forecast of each sample, through its trainer (precision, device)
    and ``predict_step``: NumPy float32 probabilities ``observed`` / ``occluded`` (T, A, H, W) and
    ``flow`` (T, H, W, 2), no batch axis."""
    from torch.utils.data import DataLoader

    from perception.structures import collate

    loader = DataLoader(list(samples), batch_size=1, collate_fn=collate)
    outputs = loaded.trainer.predict(loaded.task, dataloaders=loader) or []

    def numpy(value: torch.Tensor) -> Any:
        return value[0].detach().float().cpu().numpy()

    return [
        OccupancyForecast(observed=numpy(f.observed), occluded=numpy(f.occluded), flow=numpy(f.flow))
        for f in outputs
    ]
