#!/usr/bin/env python
"""Where a detector's boxes go wrong, on a KITTI-layout split and a folder of KITTI result files.

    python tools/analyze_detections.py --data-root DIR --predictions DIR [--split val] [--class Car]
        [--difficulties 0 1] [--oracle z,h [--oracle yaw ...]] [--out DIR]

Prints the localisation errors of the detections matched to the ground truth of one class
(:func:`perception.eval.localization.localization_errors`: the share of matches at BEV / 3D IoU 0.7,
and the mean, mean absolute and median absolute error of x y z l w h yaw) and the class's KITTI AP.
Each ``--oracle FIELDS`` writes the result files with those box fields taken from the matched ground
truth (:func:`~perception.eval.localization.oracle_predictions`) to ``OUT/oracle_FIELDS`` and prints
their AP: how much each error costs. Exit status 2 on a usage or data error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, type=Path, help="KITTI-layout dataset root")
    p.add_argument("--predictions", required=True, type=Path, help="folder of KITTI result files")
    p.add_argument("--split", default="val", help="ImageSets split (default val)")
    p.add_argument("--class", dest="class_name", default="Car", help="class to analyse (default Car)")
    p.add_argument("--difficulties", type=int, nargs="+", default=[0, 1], help="KITTI levels (default 0 1)")
    p.add_argument("--oracle", action="append", default=[], help="comma-separated box fields, e.g. z,h")
    p.add_argument("--out", type=Path, help="where oracle result files go (default: beside --predictions)")
    args = p.parse_args(argv)

    from perception.data.kitti import read_split
    from perception.eval.kitti import evaluate_folders
    from perception.eval.localization import BOX_FIELDS, localization_errors, oracle_predictions

    try:
        frame_ids = read_split(args.data_root, args.split)
        if not args.predictions.is_dir():
            raise FileNotFoundError(f"{args.predictions}: no such predictions folder")
        stats = localization_errors(
            args.data_root, args.predictions, frame_ids, args.class_name, args.difficulties
        )
        labels = args.data_root / "training" / "label_2"
        key = f"{args.class_name}_3d/moderate_R40"

        def ap(folder: Path) -> float:
            return evaluate_folders(labels, folder, frame_ids, classes=[args.class_name])[key]

        print(
            f"{args.class_name}: {stats['matched']} of {stats['ground_truth']} objects matched (BEV IoU ≥ 0.5); "
            f"BEV IoU ≥ 0.7: {stats['bev_iou_0.7']:.1%}, 3D IoU ≥ 0.7: {stats['3d_iou_0.7']:.1%}"
        )
        print("field       " + " ".join(f"{f:>8}" for f in BOX_FIELDS))
        for name in ("mean", "mae", "median_abs"):
            print(f"{name:<11} " + " ".join(f"{stats[name][f]:8.3f}" for f in BOX_FIELDS))
        print(f"3D AP R40 moderate: {ap(args.predictions):.2f}")
        out = args.out or args.predictions.parent
        for fields in args.oracle:
            chosen = [f.strip() for f in fields.split(",") if f.strip()]
            folder = oracle_predictions(
                args.data_root, args.predictions, out / f"oracle_{'_'.join(chosen)}", frame_ids, chosen
            )
            value = ap(folder)
            print(
                f"oracle {','.join(chosen)}: 3D AP R40 moderate {value:.2f}" if not math.isnan(value) else ""
            )
    except (OSError, ValueError) as err:
        print(f"analyze_detections: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
