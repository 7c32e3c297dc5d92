#!/usr/bin/env python
"""Generate the synthetic LiDAR dataset in the KITTI layout.

    python tools/make_synthetic.py --out data/synthetic --frames 1000 --seed 0 [--sequences 20]
        [--val-fraction 0.2] [--workers 2] [--overwrite] [--max-range 120] [--azimuth-step 0.17]

Re-running with the same arguments skips frames already written (a killed run continues);
``--overwrite`` regenerates them. See :mod:`perception.data.synthetic.writer` for the layout.
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
    p.add_argument("--out", required=True, type=Path, help="dataset root to write")
    p.add_argument("--frames", required=True, type=_positive_int, help="number of frames")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="dataset seed (default 0)")
    p.add_argument(
        "--sequences",
        type=_non_negative_int,
        default=0,
        help="split the frames into this many 10 Hz sequences (default 0: independent frames)",
    )
    p.add_argument(
        "--val-fraction", type=_fraction, default=0.2, help="share in ImageSets/val.txt (default 0.2)"
    )
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="regenerate frames that already exist")
    p.add_argument("--max-range", type=float, default=None, help="sensor range in metres (default 120)")
    p.add_argument("--azimuth-step", type=float, default=None, help="azimuth step in degrees (default 0.17)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sequences > args.frames:
        parser.error(f"--sequences ({args.sequences}) cannot exceed --frames ({args.frames})")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        parser.error(f"--out {out}: {probe} is not writable")

    from perception.data.synthetic import SyntheticConfig, write_dataset

    overrides = {}
    if args.max_range is not None:
        overrides["max_range"] = args.max_range
    if args.azimuth_step is not None:
        overrides["azimuth_step_deg"] = args.azimuth_step
    try:
        config = SyntheticConfig(**overrides)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(message)s")
    try:
        summary = write_dataset(
            out,
            frames=args.frames,
            seed=args.seed,
            sequences=args.sequences,
            val_fraction=args.val_fraction,
            workers=args.workers,
            overwrite=args.overwrite,
            config=config,
            progress=not args.quiet,
        )
    except OSError as err:
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        rate = summary["generated"] / summary["seconds"] if summary["seconds"] > 0 else float("nan")
        print(
            f"wrote {summary['generated']} frames, skipped {summary['skipped']} existing, "
            f"in {summary['seconds']:.1f} s ({rate:.1f} frames/s) to {out}"
        )
        print(json.dumps(summary["class_counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
