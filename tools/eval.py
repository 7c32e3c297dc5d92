#!/usr/bin/env python
"""Evaluate a checkpoint: KITTI result files and AP, a Waymo submission file and mAP/mAPH,
SemanticKITTI prediction files and mIoU, or occupancy grids and the Waymo occupancy-flow metrics.

    python tools/eval.py --ckpt PATH [--data-root DIR] [--config NAME.yaml] [--split val]
        [--split-folder training] [--frames ID ...] [--sequences NN ...] [--out DIR] [--batch-size N]
        [--num-workers N]
        [LightningCLI overrides: --trainer.precision 16-mixed, --model.model.init_args.head.init_args.score_threshold 0.05, ...]

1. **Model**: :func:`perception.inference.load_task` — the config given or the run's ``config.yaml``,
   the weights read with ``torch.load(weights_only=True)`` and loaded strictly.
2. **Frames** (KITTI layout): ``ROOT/ImageSets/{split}.txt``; where that file is missing (a few
   downloaded frames), every scan in ``ROOT/{split-folder}/velodyne``; or exactly ``--frames 000000 7``.
3. **Predictions**: one KITTI result file per frame (15 label fields + score) in ``OUT/predictions/``
   (written by :class:`~perception.tasks.writers.KittiResultWriter`; files already there are removed
   first, so the folder holds this run only).
4. **Metrics**, when every frame has a label in ``ROOT/{split-folder}/label_2``: the devkit's AP
   (:func:`perception.eval.kitti.evaluate_folders`, scored from the written files) for the KITTI
   classes of the model, printed and written to ``OUT/metrics.json`` (keys
   ``{Car|Pedestrian|Cyclist}_{image|bev|3d|aos}/{easy|moderate|hard}_{R11|R40}``, AP in percent,
   ``null`` where undefined).

**Waymo** (a config whose ``data.dataset`` is ``waymo``; ``--data-root`` the converted root of
``tools/convert_waymo.py``): the split's predictions go to ``OUT/predictions.bin`` in the official
submission format (:class:`~perception.tasks.writers.WaymoSubmissionWriter`), its ground truth to
``OUT/ground_truth.bin``, and the official mAP / mAPH (scored from the written file) to the table and
``OUT/metrics.json`` (``{VEHICLE|PEDESTRIAN|CYCLIST}_LEVEL_{1|2}`` → ``{"mAP", "mAPH"}``).

**Segmentation** (a config whose ``model.class_path`` is a
:class:`~perception.tasks.segmentation.SegmentationTask`, e.g. the ``config.yaml`` of a
``p2p_seg_synthetic.yaml`` run; ``--data-root`` a SemanticKITTI-layout root, ``ROOT/sequences/NN``):
every scan of the split's sequences (``--split val|test``: the data module's, i.e. the root's
``synthetic.json`` splits or SemanticKITTI's official 08 / 11-21), or of ``--sequences 08 ...``, is
predicted through the config's validation transforms and written as one ``.label`` file of raw ids
in the official submission layout ``OUT/sequences/NN/predictions/NNNNNN.label``
(:class:`~perception.tasks.writers.SemanticKittiLabelWriter`; the ``.label`` files already there are
removed first). When every sequence has its ``labels`` folder, the written files are scored with
:func:`perception.eval.segmentation.semantic_iou_from_files` and the checkpoint's class map (the
numbers ``python -m perception.eval.segmentation ROOT OUT --label-map MAP`` gives), printed as a
table and written atomically to ``OUT/metrics.json`` (``{"mIoU", "IoU": {class: ..}, "accuracy"}``
in percent); SemanticKITTI's unlabelled test sequences give predictions only. ``--frames`` and
``--split-folder`` are detection's; ``--sequences`` is segmentation's.

**Occupancy** (a config whose ``model.class_path`` is an
:class:`~perception.tasks.occupancy.OccupancyTask`; ``--data-root`` a sequence root: synthetic,
KITTI tracking or converted Waymo): the data module's validation samples are forecast and scored by
the Waymo occupancy-flow metrics beside the copy-forward and constant-velocity baselines; the
per-waypoint table is printed and written with every result to ``OUT/metrics.json``, and the vehicle
grids go to ``OUT/{targets,predictions,baseline_<name>}.npz``
(:class:`~perception.tasks.writers.OccupancyGridWriter`), which ``python -m
perception.eval.occupancy OUT/targets.npz OUT/predictions.npz`` scores to the same numbers.

**Shapes** (a config whose ``model.class_path`` is a
:class:`~perception.tasks.classification.ClassificationTask` or
:class:`~perception.tasks.classification.PartSegmentationTask`; ``--data-root`` optional, replacing
the data module's ``root``, and unused by the synthetic shapes): every shape of the split (``--split
val|test``: the data module's held-out splits, ``train`` the training shapes without augmentation) is
predicted. Classification writes ``OUT/predictions.csv`` (``shape_id,predicted_class,score``) and
``OUT/ground_truth.csv`` (``shape_id,label``), :class:`~perception.tasks.shape_writers.ClassificationCsvWriter`;
part segmentation one file per shape with a global part id per line, ``OUT/predictions/<shape_id>.txt``
and ``OUT/ground_truth/<shape_id>.txt`` (:class:`~perception.tasks.shape_writers.PartLabelWriter`).
The written files are scored by :mod:`perception.eval.shapes` (the numbers ``python -m
perception.eval.shapes classification|parts`` gives for them): a table of the overall and mean class
accuracy and each class's (instance and class mIoU, each category's, point accuracy), and
``OUT/metrics.json`` with the evaluator's keys (percent, ``null`` where undefined).

``OUT`` defaults to ``RUN/eval/<split>`` (``RUN/eval/sequences_08_09`` with ``--sequences``) for a
checkpoint ``RUN/checkpoints/NAME.ckpt``. Exit status 0 on success, 2 on a usage or data error (a
missing dataset says where data goes; a malformed file is named with its problem), printed as one line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class EvalError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/eval.py",
        description="Predict KITTI result files (or a Waymo submission) for a split with a detection "
        "checkpoint, or SemanticKITTI .label files with a segmentation checkpoint, and, when the split "
        "has labels, evaluate them. Extra --section.key value arguments are LightningCLI overrides of "
        "the config.",
    )
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint (.ckpt) or saved state dict")
    p.add_argument(
        "--data-root", type=Path,
        help="KITTI-layout, converted Waymo or (segmentation) SemanticKITTI-layout root (required); shape "
        "checkpoints: replaces the config's data root (optional)",
    )  # fmt: skip
    p.add_argument(
        "--config",
        help="config YAML (a bare name is looked up in configs/); default: the config.yaml saved beside "
        "the checkpoint's run",
    )
    p.add_argument(
        "--split", default="val",
        help="ImageSets split (default val); segmentation: the data module's split, val or test; shapes: val, test or train",
    )  # fmt: skip
    p.add_argument(
        "--split-folder", default="training", help="folder of the scans: training (default) or testing"
    )
    p.add_argument("--frames", nargs="+", help="evaluate exactly these frame ids (instead of the split file)")
    p.add_argument(
        "--sequences",
        nargs="+",
        help="segmentation: evaluate every scan of these sequences (instead of the split's)",
    )
    p.add_argument("--out", type=Path, help="output folder (default RUN/eval/SPLIT beside RUN/checkpoints/)")
    p.add_argument("--batch-size", type=int, help="prediction batch size (default: the config's)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default: the config's)")
    return p


def default_out(ckpt: Path, split: str) -> Path:
    """``RUN/eval/<split>`` beside the run the checkpoint comes from (``RUN/checkpoints/x.ckpt``)."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return run / "eval" / split


def _sequence_names(sequences: list[str]) -> list[str]:
    """SemanticKITTI sequence folder names: ``8`` → ``08``."""
    return [f"{int(s):02d}" if s.isdigit() else s for s in sequences]


def select_frames(root: Path, split: str, split_folder: str, frames: list[str] | None) -> list[str] | None:
    """The KITTI frames to evaluate: ``frames``, or None for the split file, or every scan where the
    split file is missing."""
    from perception.data.datasets import missing_dataset_message
    from perception.data.kitti import list_frames

    velodyne = root / split_folder / "velodyne"
    if not velodyne.is_dir():
        raise EvalError(missing_dataset_message(root, split, split_folder))
    if frames:
        return frames
    if (root / "ImageSets" / f"{split}.txt").is_file():
        return None
    ids = list_frames(root, split_folder)
    if not ids:
        raise EvalError(f"{velodyne}: no scans (*.bin)")
    print(f"eval: {root / 'ImageSets' / f'{split}.txt'} not found; using all {len(ids)} scans in {velodyne}",
          file=sys.stderr)  # fmt: skip
    return ids


def run_kitti(args: argparse.Namespace, predictor, out: Path) -> dict | None:
    """KITTI-layout data: result files in ``OUT/predictions`` and, with labels, the devkit's AP."""
    from perception.eval.detection import KittiEvaluator
    from perception.eval.kitti import evaluate_folders, format_results
    from perception.tasks.writers import KittiResultWriter

    frames = select_frames(args.data_root, args.split, args.split_folder, args.frames)
    predictions = out / "predictions"
    (out / "metrics.json").unlink(missing_ok=True)
    predictor.run(
        frames, split=args.split, split_folder=args.split_folder,
        callbacks=[KittiResultWriter(str(predictions))], return_predictions=False,
    )  # fmt: skip
    dataset = predictor.frames()
    frame_ids = list(dataset.frame_ids)
    written = {p.stem for p in predictions.glob("*.txt")}
    missing = sorted(set(frame_ids) - written)
    if missing:
        raise EvalError(f"{predictions}: no result file for {len(missing)} frames, e.g. {missing[:5]}")
    print(f"eval: {len(frame_ids)} result files in {predictions}")

    evaluator = KittiEvaluator()
    try:
        evaluator.bind(predictor.class_names)
    except ValueError:
        print(f"eval: no KITTI classes among {predictor.class_names}; predictions only")
        return None
    classes = list(evaluator.scored_classes)
    labels = args.data_root / args.split_folder / "label_2"
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


def run_waymo(args: argparse.Namespace, predictor, out: Path) -> dict:
    """Converted Waymo data: a submission-format ``predictions.bin``, ``ground_truth.bin`` and mAP/mAPH."""
    from perception.eval.detection import WaymoEvaluator
    from perception.eval.waymo import evaluate, format_results, read_objects, write_objects
    from perception.tasks.writers import WaymoSubmissionWriter

    submission = out / "predictions.bin"
    submission.unlink(missing_ok=True)
    predictor.run(
        args.frames,
        split=args.split,
        callbacks=[WaymoSubmissionWriter(str(submission))],
        return_predictions=False,
    )
    dataset = predictor.frames()
    ground_truth = {}
    for i in range(len(dataset)):
        record = dataset.load(i).record
        ground_truth[record.frame_key] = record.objects
    write_objects(out / "ground_truth.bin", ground_truth, fsync=False)
    predictions = read_objects(submission)  # what a submission holds: scored from the file itself
    print(f"eval: predictions of {len(dataset)} frames in {submission} (Waymo submission format)")
    evaluator = WaymoEvaluator()
    try:
        evaluator.bind(predictor.class_names)
    except ValueError as err:
        raise EvalError(str(err)) from err
    results = evaluate(
        ground_truth, predictions, classes=list(evaluator.scored_classes), unknown_frames="error"
    )
    print(format_results(results))
    (out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"eval: metrics in {out / 'metrics.json'}")
    return results


def run_segmentation(args: argparse.Namespace, predictor, out: Path) -> dict | None:
    """SemanticKITTI-layout data: ``OUT/sequences/NN/predictions/*.label`` and, with labels, the mIoU."""
    from perception.data.io import atomic_write_text
    from perception.eval.segmentation import format_results, semantic_iou_from_files
    from perception.tasks.writers import SemanticKittiLabelWriter

    if args.frames:
        raise EvalError("segmentation evaluates whole sequences: use --sequences NN ... instead of --frames")
    (out / "metrics.json").unlink(missing_ok=True)
    predictor.run(
        split=args.split, sequences=args.sequences,
        callbacks=[SemanticKittiLabelWriter(str(out))], return_predictions=False,
    )  # fmt: skip
    dataset = predictor.frames()
    expected = [out / "sequences" / seq / "predictions" / f"{scan}.label"
                for seq, scan in (f.split("/") for f in dataset.frame_ids)]  # fmt: skip
    missing = [str(p) for p in expected if not p.is_file()]
    if missing:
        raise EvalError(
            f"{out / 'sequences'}: no prediction file for {len(missing)} scans, e.g. {missing[:3]}"
        )
    sequences = list(dataset.sequences)
    print(f"eval: {len(expected)} prediction files of sequences {' '.join(sequences)} in {out / 'sequences'}")
    if not dataset.with_labels:
        print(
            f"eval: sequences {' '.join(sequences)} of {args.data_root} have no labels; predictions only, no metrics"
        )
        return None
    label_map = predictor.loaded.task.label_map
    try:
        results = semantic_iou_from_files(args.data_root, out, label_map, sequences)
    except (OSError, ValueError) as err:  # e.g. a label file of the wrong size, named
        raise EvalError(f"evaluation failed: {err}") from err
    print(format_results(results))
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=1) + "\n")
    print(f"eval: metrics in {out / 'metrics.json'} (class map {label_map.name})")
    return results


def run_occupancy(args: argparse.Namespace, loaded, out: Path) -> dict:
    """Sequence data: the validation samples' forecasts, scored beside the baselines; the grids as ``.npz``."""
    from perception.data.io import atomic_write_text
    from perception.eval.occupancy import format_comparison
    from perception.tasks.writers import OccupancyGridWriter

    if args.frames or args.sequences:
        raise EvalError(
            "occupancy evaluates the data module's validation samples: --frames and --sequences do not apply"
        )
    (out / "metrics.json").unlink(missing_ok=True)
    loaded.trainer.callbacks.append(OccupancyGridWriter(str(out)))
    loaded.trainer.validate(loaded.task, datamodule=loaded.datamodule, verbose=False)
    results = dict(loaded.task.last_metrics)
    times = list(getattr(loaded.datamodule.hparams, "waypoint_times", [])) or None
    print(format_comparison(results, waypoint_times=times))
    if times:
        motion = _motion_errors(out, times, loaded.datamodule.grid.cell_size)
        results["motion"] = motion
        print(
            f"MotionNet's displacement errors (m) of the vehicle flow over the interval ending at {motion['time_s']:g} s:"
        )
        for name, groups in motion["forecasters"].items():
            print(f"  {name:<18} " + "  ".join(
                f"{g} {groups[g + '/mean']:.3f} / {groups[g + '/median']:.3f} (n={groups[g + '/count']:.0f})"
                for g in ("static", "slow", "fast")
            ))  # fmt: skip
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=1, allow_nan=True) + "\n")
    n = len(loaded.datamodule.val_set)
    print(
        f"eval: {n} samples; grids in {out}/{{targets,predictions,baseline_*}}.npz, metrics in {out / 'metrics.json'}"
    )
    return results


def _motion_errors(out: Path, times: list[float], cell_size: float) -> dict:
    """MotionNet's speed-grouped errors of each forecaster's flow at the waypoint nearest 1 s, over
    the cells a vehicle truly occupies there (speed = true flow over the waypoint's interval)."""
    import numpy as np

    from perception.eval.occupancy import motion_displacement_errors

    k = min(range(len(times)), key=lambda i: abs(times[i] - 1.0))
    interval = times[k] - (times[k - 1] if k > 0 else 0.0)
    with np.load(out / "targets.npz") as t:
        true_flow = t["flow"][:, k]
        valid = (t["observed"][:, k] + t["occluded"][:, k]) > 0
    forecasters = {}
    for path in [out / "predictions.npz", *sorted(out.glob("baseline_*.npz"))]:
        with np.load(path) as p:
            name = "model" if path.stem == "predictions" else path.stem.removeprefix("baseline_")
            forecasters[name] = motion_displacement_errors(
                true_flow, p["flow"][:, k], valid, cell_size, horizon_s=interval
            )
    return {"time_s": times[k], "interval_s": interval, "forecasters": forecasters}


def _missing_root(args: argparse.Namespace) -> EvalError:
    """Where data goes, for the kind of data the checkpoint's config reads."""
    from perception.inference import InferenceError, config_dataset, config_kind, find_config

    try:
        config = find_config(args.ckpt, args.config)
        kind, dataset = config_kind(config), config_dataset(config)
    except InferenceError:
        kind = dataset = None
    if kind == "occupancy":
        return EvalError(
            f"{args.data_root}: no sequence data; generate the synthetic sequences with "
            "`python tools/train.py --config p2p_occupancy_synthetic.yaml` (data/synthetic_occ), "
            "or point --data-root at a KITTI tracking or converted Waymo root (docs/occupancy.md)"
        )
    if kind == "segmentation":
        from perception.data.semantickitti import missing_data_message

        return EvalError(missing_data_message(args.data_root))
    if dataset == "waymo":
        from perception.data.waymo.converted import missing_waymo_message

        return EvalError(missing_waymo_message(args.data_root, args.split))
    from perception.data.datasets import missing_dataset_message

    return EvalError(missing_dataset_message(args.data_root, args.split, args.split_folder))


def _config_kind(args: argparse.Namespace) -> str | None:
    """The kind of task the checkpoint's config trains (None: no readable config; loading says why)."""
    from perception.inference import InferenceError, config_kind, find_config

    try:
        return config_kind(find_config(args.ckpt, args.config))
    except InferenceError:
        return None


def run_shapes(args: argparse.Namespace, overrides: list[str], kind: str) -> dict:
    """Shape data: prediction and ground-truth files of a split, scored from the files."""
    from perception.data.io import atomic_write_text
    from perception.eval import shapes
    from perception.inference import Predictor, load_task
    from perception.tasks.shape_writers import ClassificationCsvWriter, PartLabelWriter

    if args.frames or args.sequences:
        raise EvalError(
            "shape checkpoints evaluate a split (--split val|test|train): --frames and --sequences do not apply"
        )
    out = args.out or default_out(args.ckpt, args.split)
    loaded = load_task(
        args.ckpt, args.config, overrides, data_root=args.data_root, out_dir=out,
        batch_size=args.batch_size, num_workers=args.num_workers,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").unlink(missing_ok=True)
    if kind == "classification":
        pred, truth = out / "predictions.csv", out / "ground_truth.csv"
        writer = ClassificationCsvWriter(str(pred), ground_truth_path=str(truth))
    else:
        pred, truth = out / "predictions", out / "ground_truth"
        writer = PartLabelWriter(str(pred), ground_truth_dir=str(truth))
    Predictor(loaded).run(split=args.split, callbacks=[writer], return_predictions=False)
    n = len(loaded.datamodule.predict_set)
    try:
        if kind == "classification":
            results = shapes.classification_from_files(truth, pred, loaded.task.class_names)
            print(shapes.format_classification(results))
        else:
            results = shapes.part_segmentation_from_files(truth, pred, loaded.task.taxonomy)
            print(shapes.format_part_segmentation(results))
    except (OSError, ValueError) as err:
        raise EvalError(f"evaluation failed: {err}") from err
    atomic_write_text(out / "metrics.json", shapes.results_json(results))
    print(
        f"eval: {n} shapes; predictions in {pred}, ground truth in {truth}, metrics in {out / 'metrics.json'}"
    )
    return results


def run(args: argparse.Namespace, overrides: list[str]) -> dict | None:
    """Predict (and evaluate); returns the metrics, or None when the split has no labels."""
    from perception.inference import SHAPE_KINDS, Predictor, load_task

    kind = _config_kind(args)
    if kind in SHAPE_KINDS:
        return run_shapes(args, overrides, kind)
    if args.data_root is None:
        raise EvalError("--data-root is required: the dataset root to evaluate the checkpoint on")
    if not args.data_root.exists():  # say where data goes before anything else can fail
        raise _missing_root(args)
    if args.sequences:
        args.sequences = _sequence_names(args.sequences)
    label = f"sequences_{'_'.join(args.sequences)}" if args.sequences else args.split
    out = args.out or default_out(args.ckpt, label)
    loaded = load_task(
        args.ckpt, args.config, overrides, data_root=args.data_root, out_dir=out,
        batch_size=args.batch_size, num_workers=args.num_workers,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if loaded.kind == "occupancy":
        return run_occupancy(args, loaded, out)
    predictor = Predictor(loaded)
    if loaded.kind == "segmentation":
        return run_segmentation(args, predictor, out)
    if args.sequences:
        raise EvalError("--sequences is for segmentation checkpoints; detection takes --split or --frames")
    if loaded.dataset == "waymo":
        return run_waymo(args, predictor, out)
    return run_kitti(args, predictor, out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    stray = [a for a in overrides if a.startswith("-") and not a.startswith("--")]
    if stray or (overrides and not overrides[0].startswith("--")):
        parser.error(
            f"unrecognized arguments: {' '.join(overrides)} (overrides look like --section.key value)"
        )
    from perception.cli import DATA_ERRORS, error_message
    from perception.inference import InferenceError

    try:
        run(args, overrides)
    except (EvalError, InferenceError, *DATA_ERRORS) as err:
        print(f"eval: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
