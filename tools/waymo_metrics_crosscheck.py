"""Cross-check ``perception.eval.waymo`` against the official Waymo Open Dataset detection metrics.

THE DEFAULT ROUTE DOES NOT RUN IN THIS REPOSITORY'S ENVIRONMENT (it was written, not run): the
official metrics are C++ behind TensorFlow custom ops, shipped in the ``waymo-open-dataset-tf-2-*``
wheels (Linux x86-64, pinned TensorFlow and Python versions), which are not installed here. Run it
where they are, e.g. a fresh environment with ``pip install waymo-open-dataset-tf-2-12-0`` (which
brings its TensorFlow) plus this repository's requirements, from the repository root (route 3 below,
``--expected``, needs neither and was run here)::

    python tools/waymo_metrics_crosscheck.py --gt GT.bin --pred PRED.bin
    python tools/waymo_metrics_crosscheck.py --synthetic 50 --seed 0
    python tools/waymo_metrics_crosscheck.py --gt GT.bin --pred PRED.bin \\
        --official-binary bazel-bin/waymo_open_dataset/metrics/tools/compute_detection_metrics_main

``GT.bin`` and ``PRED.bin`` are submission-format files (one serialized ``waymo.open_dataset.Objects``
proto each); ``--synthetic N`` generates N frames instead
(:func:`benchmarks.waymo_metric.synthetic_objects`) and writes them to a temporary folder.

Three routes to the official numbers:

1. Default: the TensorFlow op ``waymo_open_dataset.metrics.ops.py_metrics_ops.detection_metrics``
   (what ``metrics.python.detection_metrics.get_detection_metric_ops`` and ``wod_detection_evaluator``
   call), run eagerly with the configuration of the official command-line tool
   (``metrics/tools/compute_detection_metrics_main.cc``, ``GetConfig``: OBJECT_TYPE and RANGE
   breakdowns at LEVEL_1 and LEVEL_2, Hungarian matcher, IoU thresholds 0.7 / 0.5 / 0.5 / 0.5, 3D
   boxes, score cutoffs 0, 0.01, ..., 1.0). The op does not preprocess the ground truth, so this script
   does what the tool does before calling it: drops boxes with ``num_lidar_points_in_box <= 0`` and sets
   an unset difficulty to LEVEL_2 for ≤ 5 points, else LEVEL_1. The op takes float32 boxes, so ours is
   given the same float32-rounded boxes. The files are parsed with the official ``metrics_pb2``, which
   also checks our reader.
2. ``--official-binary PATH``: the compiled ``compute_detection_metrics_main`` (``bazel build
   //waymo_open_dataset/metrics/tools:compute_detection_metrics_main`` in the official repository), run
   as ``PATH PRED.bin GT.bin``; its printed ``NAME: [mAP x] [mAPH y]`` lines are parsed. It reads the
   double-precision boxes of the files, as ours does.
3. ``--expected FILE``: official numbers already computed, as the tool prints them (``NAME: [mAP x]
   [mAPH y]`` lines, a leading ``//`` ignored). This route needs neither TensorFlow nor a build: the
   official repository ships ``metrics/tools/fake_ground_truths.bin`` and ``fake_predictions.bin``, and
   the comment at the top of ``compute_detection_metrics_main.cc`` lists the tool's results on them::

       python tools/waymo_metrics_crosscheck.py --gt fake_ground_truths.bin \\
           --pred fake_predictions.bin --expected compute_detection_metrics_main.cc

   Those listed numbers predate the current code: they differ from the official 1.6.4 op itself (and
   from ours) on four VEHICLE values, through one prediction that copies a ground-truth box with the
   heading turned by π (the 1.6.4 op matches it, as we do; made unmatchable, the op reproduces the
   listed numbers to 5e-7).

Measured (2026-11-27) with route 1 in a throw-away environment (Python 3.11.7; ``pip install
tensorflow==2.12.0 numpy==1.23.5 absl-py==1.4.0 immutabledict==2.2.0`` then the
``waymo-open-dataset-tf-2-12-0==1.6.4`` wheel with ``--no-deps``, since its ``numpy==1.23`` pin has no
Python 3.11 wheel; our module imports elsewhere, so ours ran in this project's environment on the same
``.bin`` files): the official fake files and two synthetic splits (150 and 100 frames, 6 k and 4 k
objects a side, edge cases included) agree on all 32 keys, mAP exactly and mAPH to 2.4e-7.

Both official routes evaluate predictions of frames absent from the ground truth as frames without
ground truth, so ours runs with ``unknown_frames="keep"``.

Output: one line per breakdown with ours, the official value and the difference, for mAP and mAPH;
exit status 1 when any difference exceeds ``--tolerance`` (default 1e-4), 0 otherwise. Expected
agreement is about 1e-6 (float32 sums of heading accuracy); a larger difference on a few keys can
come from ties in the assignment (two equally good predictions for one box), broken differently by the
two Hungarian implementations.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from perception.eval.waymo import (  # noqa: E402
    SCORE_CUTOFFS,
    WaymoObjects,
    evaluate,
    read_objects,
    write_objects,
)

_OBJECT_TYPE = re.compile(r"^OBJECT_TYPE_TYPE_([A-Z]+)_LEVEL_(\d)$")
_RANGE = re.compile(r"^RANGE_TYPE_([A-Z]+)_(\[.*\))_LEVEL_(\d)$")
_BINARY_LINE = re.compile(r"^(.+): \[mAP ([^\]]+)\] \[mAPH ([^\]]+)\]\s*$")


def our_key(official_name: str) -> str | None:
    """``OBJECT_TYPE_TYPE_VEHICLE_LEVEL_1`` → ``VEHICLE_LEVEL_1``; ``RANGE_TYPE_VEHICLE_[0, 30)_LEVEL_1``
    → ``VEHICLE_LEVEL_1_RANGE_[0, 30)``; None for other breakdowns."""
    match = _OBJECT_TYPE.match(official_name)
    if match:
        return f"{match[1]}_LEVEL_{match[2]}"
    match = _RANGE.match(official_name)
    if match:
        return f"{match[1]}_LEVEL_{match[3]}_RANGE_{match[2]}"
    return None


def official_config():
    """The official tool's ``GetConfig()`` as a ``metrics_pb2.Config``."""
    from waymo_open_dataset import label_pb2
    from waymo_open_dataset.protos import breakdown_pb2, metrics_pb2

    config = metrics_pb2.Config()
    for generator in (breakdown_pb2.Breakdown.OBJECT_TYPE, breakdown_pb2.Breakdown.RANGE):
        config.breakdown_generator_ids.append(generator)
        difficulty = config.difficulties.add()
        difficulty.levels.append(label_pb2.Label.LEVEL_1)
        difficulty.levels.append(label_pb2.Label.LEVEL_2)
    config.matcher_type = metrics_pb2.MatcherProto.TYPE_HUNGARIAN
    config.iou_thresholds.extend([0.0, 0.7, 0.5, 0.5, 0.5])  # indexed by Label.Type
    config.box_type = label_pb2.Label.Box.TYPE_3D
    config.score_cutoffs.extend([i * 0.01 for i in range(100)] + [1.0])
    return config


def _official_arrays(path: Path, is_gt: bool) -> dict[str, np.ndarray | list]:
    """Objects of a .bin file parsed with the official ``metrics_pb2``; ground truth preprocessed as
    ``compute_detection_metrics_main.cc`` does."""
    from waymo_open_dataset.protos import metrics_pb2

    objects = metrics_pb2.Objects()
    objects.ParseFromString(path.read_bytes())
    keys, boxes, types, scores, nlz, levels = [], [], [], [], [], []
    for o in objects.objects:
        label = o.object
        points = label.num_lidar_points_in_box
        level = label.detection_difficulty_level
        if is_gt:
            if points <= 0:
                continue
            if level == 0:
                level = 2 if points <= 5 else 1
        b = label.box
        keys.append((o.context_name, o.frame_timestamp_micros))
        boxes.append((b.center_x, b.center_y, b.center_z, b.length, b.width, b.height, b.heading))
        types.append(label.type)
        scores.append(o.score)
        nlz.append(o.overlap_with_nlz)
        levels.append(level)
    return {
        "keys": keys,
        "boxes": np.array(boxes, dtype=np.float32).reshape(-1, 7),
        "types": np.array(types, dtype=np.uint8),
        "scores": np.array(scores, dtype=np.float32),
        "nlz": np.array(nlz, dtype=bool),
        "levels": np.array(levels, dtype=np.uint8),
    }


def official_by_op(gt_path: Path, pred_path: Path) -> dict[str, dict[str, float]]:
    """Official mAP / mAPH through the TensorFlow op, keyed like ours."""
    import tensorflow as tf
    from waymo_open_dataset.metrics.ops import py_metrics_ops
    from waymo_open_dataset.metrics.python import config_util_py as config_util

    gt, pd = _official_arrays(gt_path, is_gt=True), _official_arrays(pred_path, is_gt=False)
    frame_ids: dict[tuple[str, int], int] = {}
    gt_frame = np.array([frame_ids.setdefault(k, len(frame_ids)) for k in gt["keys"]], dtype=np.int64)
    pd_frame = np.array([frame_ids.setdefault(k, len(frame_ids)) for k in pd["keys"]], dtype=np.int64)
    config = official_config()
    ap, aph = py_metrics_ops.detection_metrics(
        prediction_bbox=tf.constant(pd["boxes"], tf.float32),
        prediction_type=tf.constant(pd["types"], tf.uint8),
        prediction_score=tf.constant(pd["scores"], tf.float32),
        prediction_frame_id=tf.constant(pd_frame, tf.int64),
        prediction_overlap_nlz=tf.constant(pd["nlz"], tf.bool),
        ground_truth_bbox=tf.constant(gt["boxes"], tf.float32),
        ground_truth_type=tf.constant(gt["types"], tf.uint8),
        ground_truth_frame_id=tf.constant(gt_frame, tf.int64),
        ground_truth_difficulty=tf.constant(gt["levels"], tf.uint8),
        config=config.SerializeToString(),
    )[:2]  # 5 outputs before 1.6, 7 since; AP and APH first
    names = config_util.get_breakdown_names_from_config(config)
    out = {}
    for name, a, h in zip(names, np.asarray(ap).tolist(), np.asarray(aph).tolist(), strict=True):
        key = our_key(name)
        if key is not None:
            out[key] = {"mAP": float(a), "mAPH": float(h)}
    return out


def official_by_binary(binary: Path, gt_path: Path, pred_path: Path) -> dict[str, dict[str, float]]:
    """Official mAP / mAPH from the compiled ``compute_detection_metrics_main`` (prediction file first)."""
    proc = subprocess.run(
        [str(binary), str(pred_path), str(gt_path)], capture_output=True, text=True, check=True
    )
    out = parse_metric_lines(proc.stdout)
    if not out:
        raise RuntimeError(f"no metric lines in the output of {binary}:\n{proc.stdout}\n{proc.stderr}")
    return out


def parse_metric_lines(text: str) -> dict[str, dict[str, float]]:
    """``NAME: [mAP x] [mAPH y]`` lines (the official tool's output; a leading ``//`` is ignored, so
    the expected-results comment of ``compute_detection_metrics_main.cc`` parses too), keyed like ours."""
    out = {}
    for line in text.splitlines():
        match = _BINARY_LINE.match(line.strip().removeprefix("//").strip())
        if match and (key := our_key(match[1])) is not None:
            out[key] = {"mAP": float(match[2]), "mAPH": float(match[3])}
    return out


def _float32_boxes(frames: dict) -> dict:
    """The frames with boxes rounded to float32 (what the TensorFlow op sees)."""
    out = {}
    for key, objects in frames.items():
        out[key] = WaymoObjects(
            boxes=objects.boxes.astype(np.float32).astype(np.float64),
            types=objects.types,
            scores=objects.scores,
            difficulty=objects.difficulty,
            num_lidar_points=objects.num_lidar_points,
            overlap_with_nlz=objects.overlap_with_nlz,
            ids=objects.ids,
        )
    return out


def ours(gt_path: Path, pred_path: Path, float32_boxes: bool) -> dict[str, dict[str, float]]:
    gt, pred = read_objects(gt_path), read_objects(pred_path)
    if float32_boxes:
        gt, pred = _float32_boxes(gt), _float32_boxes(pred)
    return evaluate(gt, pred, unknown_frames="keep")


def compare(mine: dict, official: dict, tolerance: float) -> int:
    """Print both and the differences; the number of values off by more than ``tolerance``."""
    keys = [k for k in official if k in mine]
    missing = sorted(set(official) ^ set(mine))
    width = max([len(k) for k in keys] + [10])
    print(
        f"{'':<{width}}  {'ours mAP':>9} {'official':>9} {'diff':>9}   {'ours mAPH':>9} {'official':>9} {'diff':>9}"
    )
    bad = 0
    for key in keys:
        row = [f"{key:<{width}} "]
        for metric in ("mAP", "mAPH"):
            a, b = mine[key][metric], official[key][metric]
            diff = a - b
            flag = "*" if abs(diff) > tolerance else " "
            bad += abs(diff) > tolerance
            row.append(f" {a:9.6f} {b:9.6f} {diff:+9.2e}{flag}")
        print(" ".join(row))
    if missing:
        print(f"keys in only one of the two: {missing}")
    worst = max((abs(mine[k][m] - official[k][m]) for k in keys for m in ("mAP", "mAPH")), default=0.0)
    print(f"\n{len(keys)} keys compared, largest difference {worst:.3e}, {bad} above {tolerance:g}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gt", type=Path, help="ground truth .bin (Objects proto)")
    parser.add_argument("--pred", type=Path, help="predictions .bin (Objects proto)")
    parser.add_argument("--synthetic", type=int, metavar="N", help="generate N frames instead of --gt/--pred")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--official-binary", type=Path, help="compute_detection_metrics_main to run instead of the TF op"
    )
    parser.add_argument(
        "--expected", type=Path, help="official results as printed by the tool (NAME: [mAP x] [mAPH y] lines)"
    )
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.synthetic is None and (args.gt is None or args.pred is None):
        parser.error("give --gt and --pred, or --synthetic N")
    print(f"{len(SCORE_CUTOFFS)} score cutoffs; official config: OBJECT_TYPE + RANGE, LEVEL_1 + LEVEL_2")
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = args.gt, args.pred
        if args.synthetic is not None:
            from benchmarks.waymo_metric import synthetic_objects

            gts, preds = synthetic_objects(args.synthetic, args.seed)
            gt_path, pred_path = Path(tmp) / "gt.bin", Path(tmp) / "pred.bin"
            write_objects(gt_path, gts, fsync=False)
            write_objects(pred_path, preds, fsync=False)
            print(f"synthetic: {args.synthetic} frames (seed {args.seed}) written to {tmp}")
        if args.expected is not None:
            official = parse_metric_lines(args.expected.read_text())
            if not official:
                parser.error(f"{args.expected}: no 'NAME: [mAP x] [mAPH y]' lines")
            mine = ours(gt_path, pred_path, float32_boxes=False)
        elif args.official_binary is not None:
            official = official_by_binary(args.official_binary, gt_path, pred_path)
            mine = ours(gt_path, pred_path, float32_boxes=False)
        else:
            try:
                official = official_by_op(gt_path, pred_path)
            except ImportError as err:
                print(
                    f"error: the official metrics are not importable here ({err}); install a "
                    "waymo-open-dataset-tf-2-* wheel (it brings TensorFlow), or pass --official-binary",
                    file=sys.stderr,
                )
                return 2
            mine = ours(gt_path, pred_path, float32_boxes=True)
        return 1 if compare(mine, official, args.tolerance) else 0


if __name__ == "__main__":
    sys.exit(main())
