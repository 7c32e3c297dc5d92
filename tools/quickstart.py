#!/usr/bin/env python
"""The main job on the embedded default: generate the synthetic dataset if missing, then show it.

    python tools/quickstart.py [--data data/synthetic] [--frames 500] [--seed 0] [--workers 2]

Prints what is in the dataset (points a frame, objects by class and KITTI difficulty) and writes a
bird's-eye-view picture of a validation frame with its labelled boxes. Re-running finds the dataset and
only summarises it. Training joins this command when the detection task lands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from perception.data.kitti import (  # noqa: E402
    frame_path,
    kitti_difficulty,
    load_frame,
    read_label,
    read_split,
)
from perception.data.synthetic import write_dataset  # noqa: E402
from perception.viz.bev import save_bev  # noqa: E402

console = Console(width=110)
LEVELS = ("easy", "moderate", "hard", "none")


def ensure_dataset(root: Path, frames: int, seed: int, workers: int) -> dict:
    """Generate ``frames`` frames into ``root`` unless they are already there (resumable)."""
    meta_path = root / "synthetic.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("seed") == seed and meta.get("args", {}).get("frames", 0) >= frames:
            console.print(f"[green]found[/] {root} ({meta['args']['frames']} frames, seed {seed})")
            return {"generated": 0, "seconds": 0.0}
    console.print(f"generating {frames} synthetic LiDAR frames into {root} with {workers} worker(s)")
    return write_dataset(root, frames=frames, seed=seed, workers=workers, progress=True)


def summarise(root: Path) -> tuple[Table, dict]:
    """A table of objects by class and difficulty over the train and val splits."""
    counts: dict[str, Counter] = {}
    stats = {}
    for split in ("train", "val"):
        ids = read_split(root, split)
        sizes = [frame_path(root, i, "velodyne").stat().st_size // 16 for i in ids]
        stats[split] = {"frames": len(ids), "points_mean": sum(sizes) / max(len(ids), 1)}
        for frame_id in ids:
            objects = read_label(frame_path(root, frame_id, "label_2"))
            care = objects.names != "DontCare"
            levels = kitti_difficulty(objects.bbox[care], objects.occluded[care], objects.truncated[care])
            for name, level in zip(objects.names[care], levels, strict=True):
                counts.setdefault(name, Counter())[(split, LEVELS[level])] += 1
    table = Table(title=f"{root}: labelled objects by KITTI difficulty (train / val)")
    table.add_column("class")
    for level in LEVELS:
        table.add_column(level, justify="right")
    table.add_column("total", justify="right")
    for name in sorted(counts):
        c = counts[name]
        cells = [f"{c[('train', lv)]} / {c[('val', lv)]}" for lv in LEVELS]
        total = f"{sum(v for (s, _), v in c.items() if s == 'train')} / {sum(v for (s, _), v in c.items() if s == 'val')}"
        table.add_row(name, *cells, total)
    return table, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO / "data" / "synthetic", help="dataset root")
    parser.add_argument("--frames", type=int, default=500, help="frames to generate (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "quickstart", help="where pictures go")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be ≥ 1, got {args.frames}")

    start = time.perf_counter()
    result = ensure_dataset(args.data, args.frames, args.seed, args.workers)
    if result["generated"]:
        rate = result["generated"] / result["seconds"]
        console.print(
            f"generated {result['generated']} frames in {result['seconds']:.1f} s "
            f"([bold]{rate:.1f} frames/s[/] with {args.workers} worker(s))"
        )

    table, stats = summarise(args.data)
    console.print(table)
    for split, s in stats.items():
        console.print(f"{split}: {s['frames']} frames, {s['points_mean']:,.0f} points a frame on average")

    frame_id = read_split(args.data, "val")[0]
    frame = load_frame(args.data, frame_id)
    picture = save_bev(
        args.out / f"bev_{frame_id}.png",
        frame.points,
        frame.boxes_lidar,
        frame.names,
        title=f"synthetic {frame_id}: {frame.num_points:,} points, {frame.num_boxes} labelled objects",
    )
    console.print(f"bird's-eye view of val frame {frame_id} with its labels: [bold]{picture}[/]")
    console.print(
        f"done in {time.perf_counter() - start:.1f} s. The dataset is in the KITTI layout: "
        "perception.data.kitti.load_frame reads it. Training joins this command with the detection task."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
