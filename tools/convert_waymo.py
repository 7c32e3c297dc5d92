#!/usr/bin/env python
"""Convert Waymo Open Dataset TFRecords (or v2 parquet segments) to per-frame .npz files, once.

    python tools/convert_waymo.py --src data/waymo/raw/training --out data/waymo/converted --split train
    python tools/convert_waymo.py --src data/waymo/raw/validation --out data/waymo/converted --split val
        [--workers N] [--every K] [--v2] [--no-gt-database] [--compress] [--skip-unknown-labels] [--quiet]

Finds every ``*.tfrecord`` under --src (with --v2: the segments of a v2 root, ``SRC/lidar/*.parquet``
beside the other components), decodes each frame once (no TensorFlow) into
``OUT/<split>/<context>/<timestamp>.npz`` with a per-segment ``index.json``, then writes
``OUT/ImageSets/<split>.txt`` and, for the train split, the ground-truth database ``OUT/gt_database``;
see :mod:`perception.data.waymo.converted` for the layout. Segments are converted in parallel in
--workers spawned processes. Resumable: re-running skips finished segments and frames already
written, so a killed run continues where it stopped. A corrupt file is reported as failed (naming
the file and byte offset) and the others go on; the split file and the ground-truth database are
still written from the segments that converted, and the exit status is 1. Bad arguments: 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.arguments import int_at_least


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--src", required=True, type=Path, help="folder of *.tfrecord files (or a v2 root with --v2)"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="converted dataset root (e.g. data/waymo/converted)"
    )
    p.add_argument("--split", default="train", help="split to write: train (default), val, test, ...")
    p.add_argument("--workers", type=int_at_least(1), default=1, help="processes (default 1)")
    p.add_argument("--every", type=int_at_least(1), default=1, help="keep every K-th frame (default 1: all)")
    p.add_argument("--v2", action="store_true", help="--src is a Waymo v2 parquet root")
    p.add_argument("--no-gt-database", action="store_true", help="do not build OUT/gt_database (train split)")
    p.add_argument("--compress", action="store_true", help="compressed .npz (smaller, slower to write)")
    p.add_argument(
        "--skip-unknown-labels", action="store_true", help="drop labels of unknown type instead of failing"
    )
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def _fail(message: str) -> int:
    print(f"convert_waymo: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src: Path = args.src
    out: Path = args.out
    if not src.is_dir():
        return _fail(f"--src {src}: no such folder (put the Waymo *.tfrecord files there)")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return _fail(f"--out {out}: {probe} is not writable")
    if not args.split or "/" in args.split or args.split in (".", "..", "ImageSets", "gt_database"):
        return _fail(f"--split {args.split!r}: not a split name")

    if args.v2:
        from perception.data.waymo import list_segments_v2

        segments = list_segments_v2(src)
        if not segments:
            return _fail(f"--src {src}: no Waymo v2 segments (expected {src / 'lidar'}/<segment>.parquet)")
        sources = [(src, s) for s in segments]
    else:
        files = sorted(p for p in src.rglob("*.tfrecord") if p.is_file())
        if not files:
            hint = " (it holds parquet files: pass --v2)" if any(src.rglob("*.parquet")) else ""
            return _fail(f"--src {src}: no *.tfrecord files in this folder or below{hint}")
        files.sort(key=lambda p: -p.stat().st_size)  # largest first: better balance across workers
        sources = [(f, None) for f in files]

    from perception.data.waymo.convert import convert_segment, count_frames, run_jobs
    from perception.data.waymo.converted import write_split_file
    from perception.data.waymo.database import build_waymo_gt_database

    show = not args.quiet
    total = sum(count_frames(path, args.every, segment) for path, segment in sources)
    kwargs = {
        "every": args.every,
        "compress": args.compress,
        "unknown_labels": "skip" if args.skip_unknown_labels else "error",
    }
    jobs = [((path, out, args.split), {**kwargs, "segment": segment}) for path, segment in sources]
    start = time.perf_counter()
    results = run_jobs(convert_segment, jobs, args.workers, total, f"convert {args.split}", show=show)
    seconds = time.perf_counter() - start

    done = [r for ok, r in results if ok]
    failed = [
        (f"{path} (v2 segment {segment})" if segment else str(path), error)
        for ((path, segment), (ok, error)) in zip(sources, results, strict=True)
        if not ok
    ]
    keys = write_split_file(out, args.split)
    frames = sum(r["frames"] for r in done)
    written = sum(r["written"] for r in done)
    counts: Counter[str] = Counter()
    for r in done:
        counts.update(r["class_counts"])
    if show:
        up_to_date = sum(r["up_to_date"] for r in done)
        rate = written / seconds if seconds > 0 else float("nan")
        print(
            f"{args.split}: {len(done)} segments converted ({up_to_date} already up to date), {len(failed)} failed; "
            f"{frames} frames ({written} written, {frames - written} kept), "
            f"{sum(r['points'] for r in done) / max(frames, 1):,.0f} points/frame; "
            f"{seconds:.1f} s, {rate:.2f} frames/s written with {args.workers} worker(s)"
        )
        print(f"objects by class: {json.dumps(dict(sorted(counts.items())))}")
        print(f"{out / 'ImageSets' / (args.split + '.txt')}: {len(keys)} frames")

    if args.split == "train" and not args.no_gt_database and keys:
        try:
            summary = build_waymo_gt_database(out, "train", workers=args.workers, show_progress=show)
        except (OSError, ValueError) as err:
            print(f"convert_waymo: error: ground-truth database: {err}", file=sys.stderr)
            return 1
        if show:
            state = "up to date, left as it was" if summary["skipped"] else "built"
            print(
                f"{summary['path']}: {summary['objects']} objects from {summary['frames']} frames, {state}; "
                f"{json.dumps(summary['class_counts'])}"
            )

    if failed:
        print(f"convert_waymo: {len(failed)} of {len(sources)} segments failed:", file=sys.stderr)
        for name, error in failed:
            message = str(error) if isinstance(error, (OSError, ValueError)) else repr(error)
            print(f"  {name}: {message}", file=sys.stderr)
        print("fix or remove them and run the same command again (it resumes)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
