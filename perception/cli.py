"""The LightningCLI behind ``tools/train.py`` and ``tools/eval.py``.

A config is one YAML file with ``model`` (the :class:`DetectionTask` and, inside it, the detector tree
as ``class_path``/``init_args``), ``data`` (the :class:`DetectionDataModule`) and ``trainer`` sections.
A bare config name (``pvt_synthetic.yaml``) is looked up in the repository's ``configs/`` folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import lightning as L
import numpy as np
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from perception.data.datamodules import DetectionDataModule
from perception.data.kitti import KittiFormatError
from perception.data.semantickitti import SemanticKittiFormatError
from perception.data.sequences.base import SequenceError
from perception.data.shapes.errors import ShapeFormatError
from perception.data.waymo import WaymoFormatError
from perception.structures.segmentation import UnknownLabelError
from perception.tasks.ddp import BroadcastBuffers
from perception.tasks.detection import DetectionTask
from perception.tasks.resume import RngState, StepCheckpoint, find_last_checkpoint
from perception.viz.wandb import WandbDetectionLogger, WandbOccupancyLogger, WandbSegmentationLogger

__all__ = [
    "CONFIG_DIR",
    "DATA_ERRORS",
    "ConfigError",
    "DetectionCLI",
    "TaskCLI",
    "check_shape_labels",
    "config_task",
    "error_message",
    "resolve_config_args",
    "resolve_last_checkpoint",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SUBCOMMANDS = ("fit", "validate", "test", "predict")


class ConfigError(ValueError):
    """Two places of a config disagree (the message names both)."""


DATA_ERRORS: tuple[type[Exception], ...] = (
    FileNotFoundError,
    KittiFormatError,
    WaymoFormatError,
    SemanticKittiFormatError,
    UnknownLabelError,
    ShapeFormatError,
    SequenceError,
    ConfigError,
)
"""The errors a tool reports as one line and exit status 2: missing data or config, malformed files."""


def error_message(err: BaseException) -> str:
    """``err``'s message as a user should read it: one line naming the file and the problem.

    An error raised in a DataLoader worker reaches the main process with the worker's traceback in
    its message ("Caught KittiFormatError in DataLoader worker process 0. Original Traceback ...");
    this gives back the original one-line message.
    """
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(err).__name__}: "
        text = last[len(prefix) :] if last.startswith(prefix) else last.split(": ", 1)[-1]
    return text.strip()


def resolve_config_args(argv: list[str], default_subcommand: str = "fit") -> list[str]:
    """Put a subcommand first if none is given, and resolve bare config names in ``configs/``.

    ``["--config", "pvt_synthetic.yaml"]`` → ``["fit", "--config", "/…/configs/pvt_synthetic.yaml"]``.
    A config that exists neither as given nor in ``configs/`` raises ``FileNotFoundError`` listing the
    configs there.
    """
    args = list(argv)
    if not args or args[0] not in SUBCOMMANDS:
        args.insert(0, default_subcommand)
    for i, arg in enumerate(args):
        value = None
        if arg in ("--config", "-c") and i + 1 < len(args):
            value, index = args[i + 1], i + 1
        elif arg.startswith("--config="):
            value, index = arg.split("=", 1)[1], i
        if value is None or Path(value).exists():
            continue
        candidate = CONFIG_DIR / value
        if not candidate.suffix:
            candidate = candidate.with_suffix(".yaml")
        if not candidate.is_file():
            known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
            raise FileNotFoundError(
                f"config {value!r} not found as a path nor in {CONFIG_DIR} (there: {known})"
            )
        args[index] = str(candidate) if index == i + 1 else f"--config={candidate}"
    return args


def _trainer_defaults(name: str, callbacks: list) -> dict:
    return {
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "outputs", "name": name},
        },
        "callbacks": [
            RichProgressBar(leave=True),
            LearningRateMonitor(logging_interval="step"),
            RngState(),
            BroadcastBuffers(),
            *callbacks,
        ],
    }


def _add_checkpoint(parser) -> None:
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.set_defaults(
        {
            "checkpoint.monitor": "val/loss",
            "checkpoint.save_last": True,
            "checkpoint.filename": "best",
            # step_checkpoint writes the same last.ckpt: overwrite it rather than add last-v1.ckpt
            "checkpoint.enable_version_counter": False,
        }
    )
    parser.add_lightning_class_args(StepCheckpoint, "step_checkpoint")


def resolve_last_checkpoint(cli: LightningCLI) -> None:
    """``--ckpt_path last``: the newest ``last.ckpt`` of any earlier version of the run
    (:func:`~perception.tasks.resume.find_last_checkpoint`). A fit with none starts afresh (so one
    command line serves the first start and every requeue); other subcommands need one.

    Raises:
        ConfigError: ``validate``/``test``/``predict`` with ``--ckpt_path last`` and no checkpoint.
    """
    subcommand = cli.subcommand
    if subcommand is None or cli.config_init[subcommand].get("ckpt_path") != "last":
        return
    found = find_last_checkpoint(cli.trainer)
    if found is None and subcommand != "fit":
        raise ConfigError(
            f"--ckpt_path last: no last.ckpt under {cli.trainer.log_dir or cli.trainer.default_root_dir} "
            "or its sibling versions: give a checkpoint path"
        )
    cli.config_init[subcommand]["ckpt_path"] = None if found is None else str(found)
    rank_zero_info(
        f"--ckpt_path last: {'resuming from ' + str(found) if found else 'none yet, starting afresh'}"
    )


class DetectionCLI(LightningCLI):
    """LightningCLI for :class:`DetectionTask` + :class:`DetectionDataModule`.

    ``data.class_names`` is linked to ``model.class_names``, so classes are named once. Defaults: a
    rich progress bar, a CSV logger under ``outputs/``, checkpoints of the last and the best epoch by
    the validation loss, ``last.ckpt`` also every 200 training steps (``--step_checkpoint.
    every_n_train_steps``; :mod:`perception.tasks.resume`, with the random states in every
    checkpoint, so ``--ckpt_path last`` resumes exactly), rank 0's BatchNorm statistics for every
    evaluation under DDP, the learning rate logged every step, and
    :class:`~perception.viz.wandb.WandbDetectionLogger` (3D scenes and BEV images of validation
    batches; idle unless a W&B logger is configured, e.g. with ``--config wandb.yaml``).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault(
            "trainer_defaults",
            _trainer_defaults("detection", [WandbDetectionLogger(every_n_val_steps=25, max_scenes=4)]),
        )
        super().__init__(DetectionTask, DetectionDataModule, *args, **kwargs)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        check_config(self.model, self.datamodule)
        resolve_last_checkpoint(self)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.class_names", "model.class_names")
        _add_checkpoint(parser)


class TaskCLI(LightningCLI):
    """LightningCLI for every task whose config names its classes: ``model: {class_path:
    perception.tasks.SegmentationTask, init_args: ...}`` and ``data: {class_path: ..., init_args: ...}``
    (overrides then read ``--model.init_args.lr 1e-3``). Same defaults as :class:`DetectionCLI` (CSV
    logger under ``outputs/<task>``, last and best checkpoints by the validation loss, the learning
    rate logged) and :class:`~perception.viz.wandb.WandbSegmentationLogger` (validation point clouds
    and the IoU table of a segmentation task) and :class:`~perception.viz.wandb.WandbOccupancyLogger`
    (BEV strips and GIFs of an occupancy task's forecasts), each idle for other tasks and without a
    W&B logger. After
    instantiation, values both sections name must agree (the class map, the occupancy grid, a shape
    task's class names or part taxonomy).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # the segmentation logger idles unless the model is a SegmentationTask (and W&B is configured)
        segmentation = WandbSegmentationLogger(every_n_val_steps=25, max_scenes=4)
        occupancy = WandbOccupancyLogger(every_n_val_steps=25, max_scenes=2)  # idles unless an OccupancyTask
        kwargs.setdefault("trainer_defaults", _trainer_defaults("task", [segmentation, occupancy]))
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            *args,
            subclass_mode_model=True,
            subclass_mode_data=True,
            **kwargs,
        )

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        task_map = getattr(self.model, "label_map", None)
        data_map = getattr(self.datamodule, "label_map", None)
        if task_map is not None and data_map is not None and task_map != data_map:
            raise ConfigError(
                f"model.init_args.label_map ({task_map.name}) and data.init_args.label_map "
                f"({data_map.name}) differ: the classifier would be trained on the wrong classes"
            )
        check_shape_labels(self.model, self.datamodule)
        model_grid = getattr(getattr(self.model, "model", None), "grid", None)
        data_grid = getattr(self.datamodule, "grid", None)
        if model_grid is not None and data_grid is not None and model_grid != data_grid:
            raise ConfigError(
                f"model.init_args.model.init_args.grid ({model_grid}) and data.init_args.grid ({data_grid}) "
                "differ: the forecaster would predict on another grid than its targets'"
            )
        resolve_last_checkpoint(self)

    def add_arguments_to_parser(self, parser) -> None:
        _add_checkpoint(parser)


def check_shape_labels(task: L.LightningModule, datamodule: L.LightningDataModule) -> None:
    """The shape tasks' labels must be the data's: a classification task's ``class_names`` the data
    module's (in label order), a part-segmentation task's ``taxonomy`` the data module's.

    Raises:
        ConfigError: naming both config keys and their values.
    """
    task_names, data_names = getattr(task, "class_names", None), getattr(datamodule, "class_names", None)
    if task_names is not None and data_names is not None and list(task_names) != list(data_names):
        raise ConfigError(
            f"model.init_args.class_names {list(task_names)} and the classes of data.init_args.dataset "
            f"({getattr(datamodule, 'dataset', '?')}) {list(data_names)} differ: the labels would name the "
            "wrong classes"
        )
    task_parts, data_parts = getattr(task, "taxonomy", None), getattr(datamodule, "taxonomy", None)
    if task_parts is not None and data_parts is not None and task_parts != data_parts:
        raise ConfigError(
            f"model.init_args.taxonomy ({task_parts.name}) and the taxonomy of data.init_args.dataset "
            f"({getattr(datamodule, 'dataset', '?')}: {data_parts.name}) differ: the part ids would name "
            "the wrong parts"
        )


def config_task(args: list[str]) -> str | None:
    """The ``model.class_path`` the given ``--config`` files name (the last one that does), or None
    (a detection config, whose ``model`` section is the :class:`DetectionTask`'s arguments)."""
    found = None
    for i, arg in enumerate(args):
        path = args[i + 1] if arg in ("--config", "-c") and i + 1 < len(args) else None
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        if path is None or not Path(path).is_file():
            continue
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError:
            continue  # LightningCLI reports it
        model = doc.get("model") if isinstance(doc, dict) else None
        if isinstance(model, dict) and "class_path" in model:
            found = str(model["class_path"])
    return found


def check_config(task: DetectionTask, datamodule: DetectionDataModule) -> None:
    """Values a config names in two sections must agree: the data's point-cloud range (its range
    filter) and the encoder's grid. Class names need no check (``data.class_names`` is linked to the
    task's), and the model checks its own parts.

    Raises:
        ConfigError: naming both config keys and their values.
    """
    encoder = getattr(task.model, "encoder", None)
    ranges = getattr(encoder, "point_cloud_range", None)
    data_range = datamodule.point_cloud_range
    if ranges is None:
        return
    if len(ranges) != len(data_range) or not np.allclose(ranges, data_range, rtol=0, atol=1e-6):
        raise ConfigError(
            f"data.point_cloud_range {list(data_range)} differs from "
            f"model.model.init_args.encoder.init_args.point_cloud_range {list(ranges)}: the range filter "
            "would drop points the model's grid covers, or keep points outside it"
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python tools/train.py [fit|validate|predict] --config NAME.yaml [overrides]``.

    A missing dataset or config, or a malformed data file, ends with its message on stderr and exit
    status 2 (no traceback): the messages say where data goes and how to get or convert it.
    """
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    try:
        args = resolve_config_args(sys.argv[1:] if argv is None else argv)
        cli = TaskCLI if config_task(args) else DetectionCLI
        if argv is None:
            # LightningCLI reads sys.argv itself; giving it the resolved list there avoids its
            # "args and command line both given" warning.
            sys.argv = [sys.argv[0], *args]
            cli()
        else:
            cli(args=args)
    except DATA_ERRORS as err:
        print(f"train: error: {error_message(err)}", file=sys.stderr)
        raise SystemExit(2) from None
