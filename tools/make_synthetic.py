#!/usr/bin/env python
"""Generate the synthetic LiDAR dataset in the KITTI layout (detection) or SemanticKITTI's (segmentation).

    python tools/make_synthetic.py --out data/synthetic --frames 1000 --seed 0 [--sequences 20]
        [--val-fraction 0.2] [--workers 2] [--overwrite] [--max-range 120] [--azimuth-step 0.17]
    python tools/make_synthetic.py --layout semantickitti data/synthetic_seg [--frames 960]
        [--sequences 320] [--val-fraction 0.17] [--seed 0] [--workers 2] [--beams 32] [--azimuth-step 0.4]

Re-running with the same arguments skips frames already written (a killed run continues);
``--overwrite`` regenerates them. See :mod:`perception.data.synthetic.writer` and
:mod:`perception.data.synthetic.semantic_writer` for the layouts; the semantickitti defaults are the
SegmentationDataModule's embedded set (:class:`~perception.data.synthetic.SyntheticSegmentation`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.arguments import int_at_least

_positive_int = int_at_least(1)
_non_negative_int = int_at_least(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_path", nargs="?", type=Path, metavar="OUT", help="dataset root to write (or --out)")
    p.add_argument("--out", type=Path, help="dataset root to write")
    p.add_argument(
        "--layout",
        choices=("kitti", "semantickitti"),
        default="kitti",
        help="kitti: detection, KITTI object layout (default); semantickitti: segmentation, "
        "sequences/NN/{velodyne,labels}",
    )
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=None,
        help="number of frames (kitti: required; semantickitti: 960)",
    )
    p.add_argument("--seed", type=_non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--sequences",
        type=_non_negative_int,
        default=None,
        help="split the frames into this many 10 Hz sequences (kitti default 0: independent frames; "
        "semantickitti default 320)",
    )
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        default=None,
        help="share in the validation split (kitti default 0.2; semantickitti: of sequences, default 1/6)",
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="regenerate frames that already exist")
    p.add_argument("--max-range", type=float, default=None, help="sensor range in metres (default 120)")
    p.add_argument(
        "--azimuth-step",
        type=float,
        default=None,
        help="azimuth step in degrees (kitti 0.17, semantickitti 0.4)",
    )
    p.add_argument("--beams", type=_positive_int, default=None, help="lasers (kitti 64, semantickitti 32)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.out_path is None) == (args.out is None):
        parser.error("give the dataset root once: OUT or --out OUT")
    out: Path = args.out or args.out_path
    semantic = args.layout == "semantickitti"
    if args.frames is None and not semantic:
        parser.error("--frames is required for the kitti layout")
    if semantic and args.sequences == 0:
        parser.error("--sequences must be >= 1 for the semantickitti layout")
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        parser.error(f"--out {out}: {probe} is not writable")

    from perception.data.synthetic import (
        SyntheticConfig,
        SyntheticSegmentation,
        write_dataset,
        write_semantickitti,
    )

    spec = SyntheticSegmentation()
    frames = args.frames if args.frames is not None else spec.frames
    sequences = args.sequences if args.sequences is not None else (spec.sequences if semantic else 0)
    if sequences > frames:
        parser.error(f"--sequences ({sequences}) cannot exceed --frames ({frames})")
    overrides = {}
    if semantic:
        overrides = {"num_beams": spec.num_beams, "azimuth_step_deg": spec.azimuth_step_deg}
    if args.max_range is not None:
        overrides["max_range"] = args.max_range
    if args.azimuth_step is not None:
        overrides["azimuth_step_deg"] = args.azimuth_step
    if args.beams is not None:
        overrides["num_beams"] = args.beams
    try:
        config = SyntheticConfig(**overrides)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    common = {
        "frames": frames,
        "seed": args.seed,
        "sequences": sequences,
        "workers": args.workers,
        "overwrite": args.overwrite,
        "config": config,
        "progress": not args.quiet,
    }
    try:
        if semantic:
            val = spec.val_fraction if args.val_fraction is None else args.val_fraction
            summary = write_semantickitti(out, val_fraction=val, **common)
        else:
            val = 0.2 if args.val_fraction is None else args.val_fraction
            summary = write_dataset(out, val_fraction=val, **common)
    except (OSError, ValueError) as err:
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        rate = summary["generated"] / summary["seconds"] if summary["seconds"] > 0 else float("nan")
        print(
            f"wrote {summary['generated']} frames, skipped {summary['skipped']} existing, "
            f"in {summary['seconds']:.1f} s ({rate:.1f} frames/s) to {out}"
        )
        if semantic:
            print(f"{summary['num_points_mean']:.0f} points a scan; splits {json.dumps(summary['splits'])}")
        else:
            print(json.dumps(summary["class_counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
