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

**Shards** (:mod:`perception.data.sharding`), for a cluster::

    python tools/make_synthetic.py --out OUT --frames 100000 --seed 0 --shard I/N     (I = 0 .. N-1)
    python tools/make_synthetic.py --merge --out OUT

``--shard I/N`` (0-based) writes only shard I's part: the frame indices dealt round-robin among
the N shards (kitti layout, independent frames), or whole sequences (``--sequences``, and the
semantickitti layout: a sequence's frames share one cached world), with no coordination between
shards. It writes the frames' files and its manifest ``OUT/_shards/synthetic/shard-IIIII-of-NNNNN.json``
(the generation settings and its items), not the files that describe the whole set. ``--merge``
checks the N manifests (all present and finished, same N, same settings), then writes those
files from the settings in the manifests: ImageSets/train.txt, val.txt, synthetic.json and
sequences.json (kitti), synthetic.json (semantickitti), byte for byte what the unsharded run writes;
it takes no generation option (exit 2) and exits 1, writing nothing, naming the manifests, while a
shard is missing or unfinished.
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
from perception.data.sharding import Shard, parse_shard
from perception.data.synthetic.config import REALISM_SWITCHES

REALISM_NAMES = tuple(REALISM_SWITCHES)

TOOL = "make_synthetic"
JOB = "synthetic"

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
    p.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="write only shard I of N (0-based) and its manifest in OUT/_shards/synthetic/; "
        "the split and metadata files come from --merge",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="after all N shards: check their manifests, then write the split and metadata files "
        "(needs only OUT)",
    )
    p.add_argument(
        "--without",
        action="append",
        default=[],
        choices=[*REALISM_NAMES, "all"],
        help="turn one of generator 2's realism changes off (repeatable; 'all': generator 1's look), "
        "for the sim-to-real ablation",
    )
    p.add_argument(
        "--parking-bays",
        action="store_true",
        help="perpendicular and angled parking bays besides parallel rows (off by default)",
    )
    p.add_argument("--quiet", action="store_true", help="print only errors")
    return p


_GENERATION_OPTIONS = (
    "layout",
    "frames",
    "seed",
    "sequences",
    "val_fraction",
    "overwrite",
    "max_range",
    "azimuth_step",
    "beams",
    "shard",
)


def _shard_items(settings: dict) -> tuple[list[str], dict[str, int]]:
    """The items shards deal and their cost: frame ids ("000123"), or sequences ("0003"; "07" for
    semantickitti) costed by their frames."""
    from perception.data.synthetic import SequenceLayout
    from perception.data.synthetic.semantic_writer import sequence_name

    frames, sequences = settings["frames"], settings["sequences"]
    if settings["layout"] == "kitti" and sequences == 0:
        names = [f"{i:06d}" for i in range(frames)]
        return names, dict.fromkeys(names, 1)
    layout = SequenceLayout(frames, sequences)
    name = sequence_name if settings["layout"] == "semantickitti" else (lambda s: f"{s:04d}")
    cost = {name(s): int(hi - lo) for s in range(sequences) for lo, hi in [layout.bounds(s)]}
    return list(cost), cost


def _run_shard(out: Path, shard: Shard, settings: dict, common: dict) -> int:
    """Write shard ``shard``'s frames (or sequences) and its manifest (pending first, then done)."""
    from perception.data.sharding import manifest_path, shard_items, write_manifest
    from perception.data.synthetic import SequenceLayout
    from perception.data.synthetic.semantic_writer import check_dataset_arguments, write_sequences
    from perception.data.synthetic.writer import generate_frames

    items, cost = _shard_items(settings)
    mine = shard_items(items, shard, cost)
    number = {name: i for i, name in enumerate(items)}  # frame index, or sequence number
    path = manifest_path(out, JOB, shard)
    manifest = {"tool": TOOL, "job": JOB, "shard": shard, "items": items, "settings": settings}
    frames, sequences, seed = settings["frames"], settings["sequences"], settings["seed"]
    args = {**common, "frames": frames, "sequences": sequences, "seed": seed}
    try:
        if settings["layout"] == "semantickitti":
            if not common["overwrite"]:
                check_dataset_arguments(
                    out, frames, sequences, settings["val_fraction"], seed, common["config"]
                )
            write_manifest(path, **manifest, outcomes={n: {"status": "pending"} for n in mine})
            done = write_sequences(out, which=[number[n] for n in mine], **args)
            outcomes = {
                n: {"status": "done", "scans": r["scans"], "generated": r["generated"]}
                for n, r in zip(mine, done, strict=True)
            }
        else:
            write_manifest(path, **manifest, outcomes={n: {"status": "pending"} for n in mine})
            if sequences:
                layout = SequenceLayout(frames, sequences)
                groups = {n: list(range(*layout.bounds(number[n]))) for n in mine}
            else:
                groups = {n: [number[n]] for n in mine}
            metas = iter(generate_frames(out, indices=[i for g in groups.values() for i in g], **args))
            outcomes = {}
            for n, group in groups.items():
                written = [next(metas) for _ in group]
                generated = sum(not m["skipped"] for m in written)
                outcomes[n] = {"status": "done", "frames": len(group), "generated": generated}
    except (OSError, ValueError) as err:
        print(f"make_synthetic: error: shard {shard}: {err}", file=sys.stderr)
        return 1
    write_manifest(path, **manifest, outcomes=outcomes)
    if common["progress"]:
        generated = sum(o["generated"] for o in outcomes.values())
        what = "sequences" if settings["layout"] == "semantickitti" or sequences else "frames"
        print(
            f"shard {shard}: {len(mine)} of {len(items)} {what}, {generated} frames generated; "
            f"{path}; merge with --merge when all shards are done"
        )
    return 0


def _merge(out: Path, quiet: bool) -> int:
    """Check the shard manifests, then write the files the unsharded run writes at its end."""
    from perception.data.sharding import ShardError, read_manifests, shards_folder
    from perception.data.synthetic import SyntheticConfig
    from perception.data.synthetic.semantic_writer import finish_semantickitti
    from perception.data.synthetic.writer import finish_dataset

    try:
        shards = read_manifests(shards_folder(out, JOB), tool=TOOL, job=JOB)
    except ShardError as err:
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 1
    if shards.failed:
        print(f"make_synthetic: error: {len(shards.failed)} items failed in their shards:", file=sys.stderr)
        for line in shards.failure_lines():
            print(f"  {line}", file=sys.stderr)
        return 1
    s = shards.settings
    try:
        config = SyntheticConfig.from_dict(s["config"])
        args = {"frames": s["frames"], "sequences": s["sequences"], "val_fraction": s["val_fraction"]}
        if s["layout"] == "semantickitti":
            summary = finish_semantickitti(out, seed=s["seed"], config=config, **args)
        else:
            summary = finish_dataset(out, seed=s["seed"], config=config, **args)
    except (KeyError, TypeError) as err:
        print(f"make_synthetic: error: {shards.manifests[0]}: malformed settings ({err!r})", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"make_synthetic: error: {err}", file=sys.stderr)
        return 1
    if not quiet:
        print(f"merged {shards.count} shards into {out}: {s['frames']} frames ({s['layout']} layout)")
        if s["layout"] == "semantickitti":
            print(f"{summary['num_points_mean']:.0f} points a scan; splits {json.dumps(summary['splits'])}")
        else:
            print(json.dumps(summary["class_counts"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.out_path is None) == (args.out is None):
        parser.error("give the dataset root once: OUT or --out OUT")
    out: Path = args.out or args.out_path
    if args.merge:
        given = [o for o in _GENERATION_OPTIONS if getattr(args, o) != parser.get_default(o)]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            parser.error(f"--merge takes no {flags}: the settings come from the shards' manifests")
        if out.exists() and not out.is_dir():
            parser.error(f"--out {out}: exists and is not a folder")
        return _merge(out, args.quiet)
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
    for name in REALISM_NAMES if "all" in args.without else args.without:
        overrides.update(REALISM_SWITCHES[name])
    if args.parking_bays:
        overrides["parking_layouts"] = True
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
    if args.shard is not None:
        val = args.val_fraction
        if val is None:
            val = spec.val_fraction if semantic else 0.2
        settings = {
            "layout": args.layout,
            "frames": frames,
            "seed": args.seed,
            "sequences": sequences,
            "val_fraction": val,
            "config": config.to_dict(),
        }
        return _run_shard(out, args.shard, settings, common)
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
