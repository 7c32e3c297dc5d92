#!/usr/bin/env python
"""Convert Waymo Open Dataset TFRecords (or v2 parquet segments) to per-frame .npz files, once.

    python tools/convert_waymo.py --src data/waymo/raw/training --out data/waymo/converted --split train
    python tools/convert_waymo.py --src data/waymo/raw/validation --out data/waymo/converted --split val
        [--workers N] [--every K] [--v2] [--no-gt-database] [--compress] [--skip-unknown-labels] [--quiet]
    # on a cluster: N shards anywhere, in any order, then one merge
    python tools/convert_waymo.py --src ... --out OUT --split train --shard I/N      (I = 0 .. N-1)
    python tools/convert_waymo.py --merge --out OUT --split train [--no-gt-database] [--workers N]

Finds every ``*.tfrecord`` under --src (with --v2: the segments of a v2 root, ``SRC/lidar/*.parquet``
beside the other components), decodes each frame once (no TensorFlow) into
``OUT/<split>/<context>/<timestamp>.npz`` with a per-segment ``index.json``, then writes
``OUT/ImageSets/<split>.txt`` and, for the train split, the ground-truth database ``OUT/gt_database``;
see :mod:`perception.data.waymo.converted` for the layout. Segments are converted in parallel in
--workers spawned processes. Resumable: re-running skips finished segments and frames already
written, so a killed run continues where it stopped. A corrupt file is reported as failed (naming
the file and byte offset) and the others go on; the split file and the ground-truth database are
still written from the segments that converted, and the exit status is 1. Bad arguments: 2.

**Shards** (:mod:`perception.data.sharding`). ``--shard I/N`` (0-based) converts only shard I's
segments: every shard lists the same segments and deals them round-robin by decreasing file size
(ties by name), so N jobs on any nodes (a SLURM array: ``--shard $SLURM_ARRAY_TASK_ID/N``) share
the work with no coordination, as long as they see the same --src. A shard writes its manifest
``OUT/_shards/<split>/shard-IIIII-of-NNNNN.json`` (its segments and how each went; rewritten when
the shard ends) and nothing else of the split: no split file, no ground-truth database; it exits 1
when one of its segments failed. ``--merge`` then checks the N manifests (all present, finished,
from one run: same N, same segment list, same --every / --v2 / --compress / --skip-unknown-labels)
and writes the split file and the ground-truth database exactly as an unsharded run does, from
the same files; it refuses (exit 1, writing nothing) while a shard is missing or did not finish,
naming the manifests, and like the unsharded run it still writes them, then exits 1 naming the
files, when segments failed. The merged result is the unsharded run's. Re-running a shard resumes
it; re-running the merge is harmless.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.arguments import int_at_least
from perception.data.sharding import Shard, parse_shard

TOOL = "convert_waymo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--src", type=Path, help="folder of *.tfrecord files (or a v2 root with --v2); not with --merge"
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
    p.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="convert only shard I of N (0-based) and write its manifest in OUT/_shards/<split>/; "
        "no split file, no ground-truth database (see --merge)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="after all N shards: check their manifests, then write the split file and the "
        "ground-truth database (needs only --out and --split)",
    )
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


def _fail(message: str) -> int:
    print(f"convert_waymo: error: {message}", file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> dict:
    """The options that change what is converted: equal in every shard of one conversion."""
    return {
        "every": args.every,
        "v2": args.v2,
        "compress": args.compress,
        "unknown_labels": "skip" if args.skip_unknown_labels else "error",
    }


def _sources(src: Path, v2: bool) -> list[tuple[str, Path, str | None, int]] | str:
    """``(item name, path, v2 segment or None, bytes)`` of every segment, largest first; or what is wrong."""
    if v2:
        from perception.data.waymo import list_segments_v2

        segments = list_segments_v2(src)
        if not segments:
            return f"--src {src}: no Waymo v2 segments (expected {src / 'lidar'}/<segment>.parquet)"
        sources = [(s, src, s, (src / "lidar" / f"{s}.parquet").stat().st_size) for s in segments]
    else:
        files = sorted(p for p in src.rglob("*.tfrecord") if p.is_file())
        if not files:
            hint = " (it holds parquet files: pass --v2)" if any(src.rglob("*.parquet")) else ""
            return f"--src {src}: no *.tfrecord files in this folder or below{hint}"
        sources = [(f.relative_to(src).as_posix(), f, None, f.stat().st_size) for f in files]
    sources.sort(key=lambda s: (-s[3], s[0]))  # largest first: better balance across workers
    return sources


def _label(path: Path, segment: str | None) -> str:
    return f"{path} (v2 segment {segment})" if segment else str(path)


def _convert(
    sources: list[tuple[str, Path, str | None, int]], args: argparse.Namespace, show: bool
) -> tuple[list[tuple[bool, object]], float]:
    """Convert ``sources``: per source ``(True, summary)`` or ``(False, error)``, and the seconds taken."""
    from perception.data.waymo.convert import convert_segment, count_frames, run_jobs

    total = sum(count_frames(path, args.every, segment) for _, path, segment, _ in sources)
    kwargs = {
        "every": args.every,
        "compress": args.compress,
        "unknown_labels": "skip" if args.skip_unknown_labels else "error",
    }
    jobs = [((path, args.out, args.split), {**kwargs, "segment": segment}) for _, path, segment, _ in sources]
    start = time.perf_counter()
    results = run_jobs(convert_segment, jobs, args.workers, total, f"convert {args.split}", show=show)
    return results, time.perf_counter() - start


def _error_text(error: object) -> str:
    return str(error) if isinstance(error, (OSError, ValueError)) else repr(error)


def _print_converted(args: argparse.Namespace, done: list[dict], failed: int, seconds: float) -> None:
    frames = sum(r["frames"] for r in done)
    written = sum(r["written"] for r in done)
    counts: Counter[str] = Counter()
    for r in done:
        counts.update(r["class_counts"])
    up_to_date = sum(r["up_to_date"] for r in done)
    rate = written / seconds if seconds > 0 else float("nan")
    where = f" (shard {args.shard})" if args.shard else ""
    print(
        f"{args.split}{where}: {len(done)} segments converted ({up_to_date} already up to date), {failed} failed; "
        f"{frames} frames ({written} written, {frames - written} kept), "
        f"{sum(r['points'] for r in done) / max(frames, 1):,.0f} points/frame; "
        f"{seconds:.1f} s, {rate:.2f} frames/s written with {args.workers} worker(s)"
    )
    print(f"objects by class: {json.dumps(dict(sorted(counts.items())))}")


def _finish(args: argparse.Namespace, show: bool) -> int:
    """The split file and (train split) the ground-truth database, from the segments in OUT/<split>."""
    from perception.data.waymo.converted import split_file, write_split_file
    from perception.data.waymo.database import build_waymo_gt_database

    keys = write_split_file(args.out, args.split)
    if show:
        print(f"{split_file(args.out, args.split)}: {len(keys)} frames")
    if args.split == "train" and not args.no_gt_database and keys:
        try:
            summary = build_waymo_gt_database(args.out, "train", workers=args.workers, show_progress=show)
        except (OSError, ValueError) as err:
            print(f"convert_waymo: error: ground-truth database: {err}", file=sys.stderr)
            return 1
        if show:
            state = "up to date, left as it was" if summary["skipped"] else "built"
            print(
                f"{summary['path']}: {summary['objects']} objects from {summary['frames']} frames, {state}; "
                f"{json.dumps(summary['class_counts'])}"
            )
    return 0


def _run_all(args: argparse.Namespace, sources: list, show: bool) -> int:
    """The unsharded run: convert every segment, then the split file and the ground-truth database."""
    results, seconds = _convert(sources, args, show)
    done = [r for ok, r in results if ok]
    failed = [(_label(p, seg), r) for (_, p, seg, _), (ok, r) in zip(sources, results, strict=True) if not ok]
    if show:
        _print_converted(args, done, len(failed), seconds)
    status = _finish(args, show)
    if failed:
        print(f"convert_waymo: {len(failed)} of {len(sources)} segments failed:", file=sys.stderr)
        for name, error in failed:
            print(f"  {name}: {_error_text(error)}", file=sys.stderr)
        print("fix or remove them and run the same command again (it resumes)", file=sys.stderr)
        return 1
    return status


def _run_shard(args: argparse.Namespace, sources: list, show: bool) -> int:
    """Convert shard ``args.shard``'s segments and write its manifest (pending first, then outcomes)."""
    from perception.data.sharding import manifest_path, shard_items, write_manifest

    shard: Shard = args.shard
    by_name = {s[0]: s for s in sources}
    mine = shard_items(list(by_name), shard, cost={name: s[3] for name, s in by_name.items()})
    path = manifest_path(args.out, args.split, shard)
    info = {"src": str(args.src.resolve()), "host": socket.gethostname()}
    info.update({k.lower(): v for k, v in os.environ.items() if k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID")})
    manifest = {
        "tool": TOOL,
        "job": args.split,
        "shard": shard,
        "items": list(by_name),
        "settings": _settings(args),
    }
    write_manifest(path, **manifest, outcomes={n: {"status": "pending"} for n in mine}, info=info)

    chosen = [by_name[n] for n in mine]
    results, seconds = _convert(chosen, args, show)
    done = [r for ok, r in results if ok]
    failed = [(_label(p, seg), r) for (_, p, seg, _), (ok, r) in zip(chosen, results, strict=True) if not ok]
    outcomes: dict[str, dict] = {}
    for name, (ok, r) in zip(mine, results, strict=True):
        if ok:
            outcomes[name] = {
                "status": "done",
                **{k: r[k] for k in ("context_name", "frames", "points", "class_counts")},
            }
        else:
            outcomes[name] = {
                "status": "failed",
                "source": _label(*by_name[name][1:3]),
                "error": _error_text(r),
            }
    write_manifest(path, **manifest, outcomes=outcomes, info={**info, "seconds": round(seconds, 3)})
    if show:
        _print_converted(args, done, len(failed), seconds)
        print(
            f"{path}: shard {shard}, {len(chosen)} of {len(sources)} segments; merge with --merge when all are done"
        )
    if failed:
        print(
            f"convert_waymo: {len(failed)} of {len(chosen)} segments of shard {shard} failed:",
            file=sys.stderr,
        )
        for name, error in failed:
            print(f"  {name}: {_error_text(error)}", file=sys.stderr)
        print(
            "fix them and run this shard again (it resumes); if you remove a file instead, run every "
            "shard again (their finished segments are kept) before --merge",
            file=sys.stderr,
        )
        return 1
    return 0


def _merge(args: argparse.Namespace, show: bool) -> int:
    """Check the shard manifests of the split, then write what the unsharded run writes at its end."""
    from perception.data.sharding import ShardError, read_manifests, shards_folder

    try:
        shards = read_manifests(shards_folder(args.out, args.split), tool=TOOL, job=args.split)
    except ShardError as err:
        print(f"convert_waymo: error: {err}", file=sys.stderr)
        return 1
    done = [o for o in shards.outcomes.values() if o["status"] == "done"]
    failed = shards.failure_lines()
    if show:
        frames = sum(o["frames"] for o in done)
        counts: Counter[str] = Counter()
        for o in done:
            counts.update(o["class_counts"])
        print(
            f"{args.split}: merging {shards.count} shards: {len(done)} segments converted, {len(failed)} failed; "
            f"{frames} frames, {sum(o['points'] for o in done) / max(frames, 1):,.0f} points/frame"
        )
        print(f"objects by class: {json.dumps(dict(sorted(counts.items())))}")
    status = _finish(args, show)
    if failed:
        print(
            f"convert_waymo: {len(failed)} of {len(shards.items)} segments failed in their shards:",
            file=sys.stderr,
        )
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        print("fix them, run their shards again (they resume), then merge again", file=sys.stderr)
        return 1
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return _fail(f"--out {out}: {probe} is not writable")
    if (
        not args.split
        or "/" in args.split
        or args.split in (".", "..", "ImageSets", "gt_database", "_shards")
    ):
        return _fail(f"--split {args.split!r}: not a split name")
    show = not args.quiet

    if args.merge:
        given = [
            flag
            for flag, value in (
                ("--src", args.src is not None),
                ("--shard", args.shard is not None),
                ("--every", args.every != 1),
                ("--v2", args.v2),
                ("--compress", args.compress),
                ("--skip-unknown-labels", args.skip_unknown_labels),
            )
            if value
        ]
        if given:
            return _fail(
                f"--merge takes no {', '.join(given)}: the shards' manifests hold the conversion settings "
                "(--merge needs only --out and --split)"
            )
        return _merge(args, show)

    src: Path | None = args.src
    if src is None:
        return _fail("--src is required (a folder of *.tfrecord files), unless --merge")
    if not src.is_dir():
        return _fail(f"--src {src}: no such folder (put the Waymo *.tfrecord files there)")
    if args.shard is not None and args.no_gt_database:
        return _fail("--no-gt-database is for --merge: a shard never builds the ground-truth database")
    sources = _sources(src, args.v2)
    if isinstance(sources, str):
        return _fail(sources)
    if args.shard is not None:
        return _run_shard(args, sources, show)
    return _run_all(args, sources, show)


if __name__ == "__main__":
    sys.exit(main())
