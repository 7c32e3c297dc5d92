#!/usr/bin/env python
"""Build the ground-truth database (for ground-truth sampling) from a KITTI-layout training split.

    python tools/build_gt_database.py --root data/synthetic [--split train]
        [--classes Car Pedestrian Cyclist] [--out data/synthetic/gt_database] [--overwrite]

Exit status 2 on a data error (a missing split, a malformed file), printed as one line. Stores, for every labelled object of the classes, the points inside its box (relative to the box
centre, float32 .npy) and a JSON index; see :mod:`perception.data.database`. Re-running with the same
arguments finds the database up to date and leaves it; ``--overwrite`` rebuilds it. The split must
not share frames with ImageSets/val.txt (validation objects would leak into training).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, type=Path, help="KITTI-layout dataset root")
    p.add_argument("--split", default="train", help="ImageSets split to read (default train)")
    p.add_argument(
        "--classes", nargs="+", default=["Car", "Pedestrian", "Cyclist"], help="object types to store"
    )
    p.add_argument("--out", type=Path, default=None, help="database folder (default ROOT/gt_database)")
    p.add_argument("--val-split", default="val", help="split that must not overlap --split (default val)")
    p.add_argument("--overwrite", action="store_true", help="rebuild even when up to date")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from perception.data.database import build_gt_database
    from perception.data.datasets import missing_dataset_message

    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    if not (args.root / "ImageSets" / f"{args.split}.txt").is_file():
        print(f"build_gt_database: error: {missing_dataset_message(args.root, args.split)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        summary = build_gt_database(
            args.root, args.out, args.split, args.classes, val_split=args.val_split, overwrite=args.overwrite
        )
    except (OSError, ValueError) as err:
        print(f"build_gt_database: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        what = (
            "up to date, left as it was"
            if summary["skipped"]
            else f"built in {time.perf_counter() - start:.1f} s"
        )
        print(f"{summary['path']}: {summary['objects']} objects from {summary['frames']} frames, {what}")
        print(json.dumps(summary["class_counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
