#!/usr/bin/env python
"""Evaluate a detection checkpoint: KITTI result files and AP, or a Waymo submission file and mAP/mAPH.

    python tools/eval.py --ckpt PATH --data-root DIR [--config NAME.yaml] [--split val]
        [--split-folder training] [--frames ID ...] [--out DIR] [--batch-size N] [--num-workers N]
        [LightningCLI overrides: --trainer.precision 16-mixed, --model.model.init_args.head.init_args.score_threshold 0.05, ...]

What it does:

1. **Model.** The task is rebuilt from a config (the detector tree is an ``nn.Module`` argument, so
   it is not in the checkpoint's hyperparameters): ``--config`` if given (a bare name is looked up in
   ``configs/``), else the ``config.yaml`` LightningCLI saved beside the checkpoint
   (``RUN/config.yaml`` for ``RUN/checkpoints/last.ckpt``). The weights are then read with
   ``torch.load(PATH, weights_only=True)`` (Lightning checkpoints hold only tensors, numbers,
   strings, lists and dicts, so they load that way) and put in with ``load_state_dict`` (strict).
   A bare state dict (``torch.save(task.state_dict(), PATH)``) works too.
2. **Frames.** ``ROOT/ImageSets/{split}.txt``; when that file is missing (e.g. a few downloaded frames),
   every scan in ``ROOT/{split-folder}/velodyne``; or exactly ``--frames 000000 000001``.
3. **Predictions.** One KITTI result file per frame (15 label fields + score) in ``OUT/predictions/``
   (result files already there are removed first, so the folder holds this run only).
4. **Metrics.** When every frame has a label in ``ROOT/{split-folder}/label_2``: the devkit's AP
   (:func:`perception.eval.kitti.evaluate_folders`) for the model's KITTI classes, printed as a table
   and written to ``OUT/metrics.json`` (keys ``{Car|Pedestrian|Cyclist}_{image|bev|3d|aos}/
   {easy|moderate|hard}_{R11|R40}``, AP in percent, ``null`` where undefined). The config that was
   evaluated is saved as ``OUT/config.yaml`` (with frames chosen without a split file, its
   ``data.root`` names the temporary split view this run read the data root through).

**Waymo** (a config whose ``data.dataset`` is ``waymo``, e.g. ``pvt_waymo.yaml``; ``--data-root`` the
converted root of ``tools/convert_waymo.py``): the split's predictions go to ``OUT/predictions.bin`` in
the official submission format (one serialized ``metrics.Objects``), its ground truth to
``OUT/ground_truth.bin``, and the official mAP / mAPH (LEVEL_1/LEVEL_2, range breakdown;
:mod:`perception.eval.waymo`, scored from the written file) to the table and ``OUT/metrics.json``
(``{VEHICLE|PEDESTRIAN|CYCLIST}_LEVEL_{1|2}`` → ``{"mAP", "mAPH"}``).

``OUT`` defaults to ``RUN/eval/<split>`` for a checkpoint ``RUN/checkpoints/NAME.ckpt``. Exit status 0 on success, 2 on a
usage or data error (a missing dataset explains where data goes; see data/README.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Keys LightningCLI writes at the top of a saved ``fit`` config that are not part of the model, data
# or trainer (``ckpt_path``, ``weights_only``, ...) are dropped before the config is parsed again.
_CONFIG_SECTIONS = ("seed_everything", "trainer", "model", "data", "checkpoint", "optimizer", "lr_scheduler")


class EvalError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/eval.py",
        description="Predict KITTI result files for a split with a detection checkpoint and, when the "
        "split has labels, evaluate them (KITTI AP R11/R40). Extra --section.key value arguments are "
        "LightningCLI overrides of the config.",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint (.ckpt) or saved state dict")
    p.add_argument("--data-root", required=True, type=Path, help="KITTI-layout dataset root")
    p.add_argument(
        "--config",
        help="config YAML (a bare name is looked up in configs/); default: the config.yaml saved beside "
        "the checkpoint's run",
    )
    p.add_argument("--split", default="val", help="ImageSets split (default val)")
    p.add_argument(
        "--split-folder", default="training", help="folder of the scans: training (default) or testing"
    )
    p.add_argument("--frames", nargs="+", help="evaluate exactly these frame ids (instead of the split file)")
    p.add_argument("--out", type=Path, help="output folder (default RUN/eval/SPLIT beside RUN/checkpoints/)")
    p.add_argument("--batch-size", type=int, help="prediction batch size (default: the config's)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default: the config's)")
    return p


# ---------------------------------------------------------------------------------------------- config


def find_config(ckpt: Path, config: str | None) -> Path:
    """The config to rebuild the task from: ``config`` (a path or a name in configs/) or the run's."""
    from perception.cli import CONFIG_DIR

    if config is not None:
        path = Path(config)
        if path.is_file():
            return path
        candidate = CONFIG_DIR / config
        candidate = candidate if candidate.suffix else candidate.with_suffix(".yaml")
        if candidate.is_file():
            return candidate
        known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
        raise EvalError(f"config {config!r} not found as a path nor in {CONFIG_DIR} (there: {known})")
    for folder in (ckpt.parent, ckpt.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    raise EvalError(
        f"no config.yaml beside {ckpt} (looked in {ckpt.parent} and {ckpt.parent.parent}); "
        "pass the training config with --config NAME.yaml"
    )


def clean_config(config: Path, folder: Path) -> Path:
    """A copy of ``config`` in ``folder`` without the top-level keys of a saved ``fit`` config."""
    import yaml

    try:
        content = yaml.safe_load(config.read_text())
    except yaml.YAMLError as err:
        raise EvalError(f"{config}: not valid YAML: {err}") from err
    if not isinstance(content, dict):
        raise EvalError(f"{config}: expected a mapping with model / data / trainer sections")
    content = {k: v for k, v in content.items() if k in _CONFIG_SECTIONS}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ checkpoint


def load_state_dict(ckpt: Path) -> tuple[dict, dict]:
    """``(state_dict, hyper_parameters)`` of a Lightning checkpoint (or a bare state dict), read with
    ``weights_only=True``; a ``torch.compile``-d model's keys (``model._orig_mod.``) are unwrapped."""
    import pickle

    import torch

    if not ckpt.is_file():
        raise EvalError(f"{ckpt}: checkpoint not found")
    try:
        content = torch.load(ckpt, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise EvalError(
            f"{ckpt}: does not load with torch.load(weights_only=True) (the project loads no pickled "
            f"objects); save plain tensors and Python values, e.g. torch.save(task.state_dict(), PATH). "
            f"torch said: {str(err).splitlines()[0]}"
        ) from err
    if not isinstance(content, dict):
        raise EvalError(f"{ckpt}: expected a checkpoint dict or a state dict, got {type(content).__name__}")
    state = content.get("state_dict", content)
    hparams = content.get("hyper_parameters", {}) if "state_dict" in content else {}
    state = {k.replace("model._orig_mod.", "model.", 1): v for k, v in state.items()}
    return state, hparams


# -------------------------------------------------------------------------------------------- frames


def _frame_id(root: Path, split_folder: str, frame: str) -> str:
    velodyne = root / split_folder / "velodyne"
    if (velodyne / f"{frame}.bin").is_file():
        return frame
    if frame.isdigit() and (velodyne / f"{int(frame):06d}.bin").is_file():
        return f"{int(frame):06d}"
    raise EvalError(f"frame {frame!r}: no scan {velodyne / f'{frame}.bin'}")


def select_frames(
    root: Path, split: str, split_folder: str, frames: list[str] | None
) -> tuple[list[str], bool]:
    """``(frame ids, whether they come from ROOT/ImageSets/{split}.txt)``."""
    from perception.data.datasets import missing_dataset_message
    from perception.data.kitti import list_frames, read_split

    if not (root / split_folder / "velodyne").is_dir():
        raise EvalError(missing_dataset_message(root, split, split_folder))
    if frames:
        return [_frame_id(root, split_folder, f) for f in frames], False
    if (root / "ImageSets" / f"{split}.txt").is_file():
        return read_split(root, split), True
    ids = list_frames(root, split_folder)
    if not ids:
        raise EvalError(f"{root / split_folder / 'velodyne'}: no scans (*.bin)")
    print(
        f"eval: {root / 'ImageSets' / f'{split}.txt'} not found; using all {len(ids)} scans in "
        f"{root / split_folder / 'velodyne'}",
        file=sys.stderr,
    )
    return ids, False


def frame_view(root: Path, split_folder: str, frame_ids: list[str], folder: Path) -> tuple[Path, str]:
    """A KITTI-layout root in ``folder`` whose split ``eval`` lists ``frame_ids``: ``ImageSets/eval.txt``
    and a link to ``ROOT/{split_folder}`` (the data module reads splits from ImageSets only)."""
    from perception.data.kitti import write_split

    view = folder / "view"
    view.mkdir()
    (view / split_folder).symlink_to((root / split_folder).resolve(), target_is_directory=True)
    write_split(view, "eval", frame_ids)
    return view, "eval"


# --------------------------------------------------------------------------------------------- main


def _default_out(ckpt: Path, split: str) -> Path:
    """``RUN/eval/<split>`` beside the run the checkpoint comes from (``RUN/checkpoints/x.ckpt``)."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "eval" / split


def _config_dataset(config: Path) -> str:
    """The ``data.dataset`` a config names (``kitti`` unless it says ``waymo``)."""
    import yaml

    try:
        content = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError as err:
        raise EvalError(f"{config}: not valid YAML: {err}") from err
    return str((content.get("data") or {}).get("dataset", "kitti"))


def _trainer_args(out: Path, args: argparse.Namespace) -> list[str]:
    """The CLI arguments every evaluation run adds: no logger, one device, no batch limits, loaders."""
    loaders = []
    if args.batch_size is not None:
        loaders += ["--data.val_batch_size", str(args.batch_size)]
    if args.num_workers is not None:
        loaders += ["--data.num_workers", str(args.num_workers)]
    return [
        *loaders,
        "--model.compile", "false",
        "--trainer.logger", "false",
        "--trainer.devices", "1",
        "--trainer.num_nodes", "1",
        "--trainer.strategy", "auto",
        "--trainer.default_root_dir", str(out),
        "--trainer.fast_dev_run", "false",  # a training run's batch limits do not apply here
        "--trainer.limit_train_batches", "null",
        "--trainer.limit_val_batches", "null",
        "--trainer.limit_predict_batches", "null",
    ]  # fmt: skip


def build_task(
    cli_args: list[str], overrides: list[str], ckpt: Path, config: Path, state: dict, hparams: dict
):
    """The task, data module and trainer of ``config`` with the checkpoint's weights in (strict).

    Raises:
        EvalError: the checkpoint was trained for other classes, or its weights do not fit the model.
    """
    from perception.cli import DetectionCLI

    argv0, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when args and sys.argv both hold some
    try:
        cli = DetectionCLI(run=False, args=cli_args + overrides)
    finally:
        sys.argv = argv0
    task = cli.model
    trained = hparams.get("class_names")
    if trained is not None and list(trained) != list(task.class_names):
        raise EvalError(
            f"{ckpt} was trained for classes {list(trained)} but {config} names {task.class_names}"
        )
    try:
        task.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise EvalError(f"{ckpt} does not fit the model of {config}: {err}") from err
    return task, cli.datamodule, cli.trainer


def run_waymo(args: argparse.Namespace, overrides: list[str], config: Path) -> dict:
    """Converted Waymo data: a submission-format ``predictions.bin``, ``ground_truth.bin`` and mAP/mAPH."""
    from perception.eval.waymo import evaluate, format_results, read_objects, write_objects

    root, ckpt = args.data_root, args.ckpt
    if args.frames:
        raise EvalError(
            "--frames selects KITTI frame ids; for Waymo data evaluate a converted split (--split)"
        )
    state, hparams = load_state_dict(ckpt)
    out = args.out or _default_out(ckpt, args.split)
    submission = out / "predictions.bin"
    with tempfile.TemporaryDirectory(prefix="perception-eval-") as tmp:
        cli_args = [
            "--config", str(clean_config(config, Path(tmp))),
            "--data.root", str(root),
            "--data.predict_split", args.split,
            "--data.database", "null",
            "--model.waymo_submission", str(submission),
            *_trainer_args(out, args),
        ]  # fmt: skip
        task, datamodule, trainer = build_task(cli_args, overrides, ckpt, config, state, hparams)
        try:
            datamodule.setup("predict")
        except FileNotFoundError as err:
            raise EvalError(str(err)) from err
        out.mkdir(parents=True, exist_ok=True)
        submission.unlink(missing_ok=True)
        trainer.predict(task, datamodule=datamodule, return_predictions=False)
    dataset = datamodule.predict_set
    ground_truth = {}
    for i in range(len(dataset)):
        meta = dataset.load(i).meta
        ground_truth[tuple(meta["frame_key"])] = meta["gt_objects"]
    write_objects(out / "ground_truth.bin", ground_truth, fsync=False)
    predictions = read_objects(submission)  # what a submission holds: scored from the file itself
    print(f"eval: predictions of {len(dataset)} frames in {submission} (Waymo submission format)")
    classes = [c for c in task.class_names if c in ("VEHICLE", "PEDESTRIAN", "CYCLIST", "SIGN")]
    if not classes:
        raise EvalError(f"no Waymo classes among {task.class_names}")
    results = evaluate(ground_truth, predictions, classes=classes, unknown_frames="error")
    print(format_results(results))
    (out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"eval: metrics in {out / 'metrics.json'}")
    return results


def run(args: argparse.Namespace, overrides: list[str]) -> dict | None:
    """Predict (and evaluate); returns the metrics, or None when the split has no labels."""
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    root, ckpt = args.data_root, args.ckpt
    try:
        found = find_config(ckpt, args.config)
    except EvalError:
        found = None  # reported below, after a missing data root
    if found is not None and _config_dataset(found) == "waymo":
        if not root.exists():
            from perception.data.waymo_converted import missing_waymo_message

            raise EvalError(missing_waymo_message(root, args.split))
        return run_waymo(args, overrides, found)
    if not root.exists():
        from perception.data.datasets import missing_dataset_message

        raise EvalError(missing_dataset_message(root, args.split, args.split_folder))
    config = find_config(ckpt, args.config)
    frame_ids, from_split = select_frames(root, args.split, args.split_folder, args.frames)
    state, hparams = load_state_dict(ckpt)
    out = args.out or _default_out(ckpt, args.split)
    predictions = out / "predictions"

    from perception.eval.kitti import evaluate_folders, format_results

    with tempfile.TemporaryDirectory(prefix="perception-eval-") as tmp:
        data_root, split = (
            (root, args.split) if from_split else frame_view(root, args.split_folder, frame_ids, Path(tmp))
        )
        cli_args = [
            "--config", str(clean_config(config, Path(tmp))),
            "--data.root", str(data_root),
            "--data.predict_split", split,
            "--data.predict_split_folder", args.split_folder,
            "--data.database", "null",  # else prepare_data would build the train split's database
            "--model.predictions_dir", str(predictions),
            *_trainer_args(out, args),
        ]  # fmt: skip
        task, datamodule, trainer = build_task(cli_args, overrides, ckpt, config, state, hparams)
        predictions.mkdir(parents=True, exist_ok=True)
        for stale in [*predictions.glob("*.txt"), out / "metrics.json"]:  # this run's results only
            stale.unlink(missing_ok=True)
        trainer.predict(task, datamodule=datamodule, return_predictions=False)

    written = sorted(p.stem for p in predictions.glob("*.txt"))
    missing = sorted(set(frame_ids) - set(written))
    if missing:
        raise EvalError(f"{predictions}: no result file for {len(missing)} frames, e.g. {missing[:5]}")
    print(f"eval: {len(written)} result files in {predictions}")

    labels = root / args.split_folder / "label_2"
    classes = list(task.kitti_ap.classes)
    if not classes:
        print(f"eval: no KITTI classes among {task.class_names}; predictions only")
        return None
    if not labels.is_dir() or any(not (labels / f"{f}.txt").is_file() for f in frame_ids):
        print(f"eval: {labels} does not label every frame; predictions only, no metrics")
        return None
    try:
        results = evaluate_folders(labels, predictions, frame_ids, classes=classes)
    except (OSError, ValueError) as err:  # e.g. a malformed label file, named with its line
        raise EvalError(f"evaluation failed: {err}") from err
    print(format_results(results, classes))
    clean = {k: (None if math.isnan(v) else v) for k, v in results.items()}
    (out / "metrics.json").write_text(json.dumps(clean, indent=1) + "\n")
    print(f"eval: metrics in {out / 'metrics.json'}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    stray = [a for a in overrides if a.startswith("-") and not a.startswith("--")]
    if stray or (overrides and not overrides[0].startswith("--")):
        parser.error(
            f"unrecognized arguments: {' '.join(overrides)} (overrides look like --section.key value)"
        )
    try:
        run(args, overrides)
    except EvalError as err:
        print(f"eval: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
