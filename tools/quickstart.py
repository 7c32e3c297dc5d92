#!/usr/bin/env python
"""The main job on the embedded default: generate the synthetic dataset, show it, train, evaluate.

    python tools/quickstart.py [--data data/synthetic] [--frames 1500] [--seed 0] [--workers 2]
                               [--config pvt_synthetic.yaml] [--epochs N] [--max-time DD:HH:MM:SS]
                               [--no-train] [-- LIGHTNING_CLI_OVERRIDES ...]

1. Generates the synthetic dataset if missing (re-running finds it and only summarises it).
2. Prints what is in it (points a frame, objects by class and KITTI difficulty) and writes a
   bird's-eye-view picture of a validation frame with its labelled boxes.
3. Trains ``--config`` (default ``pvt_synthetic.yaml``: the PVTransformer encoder and the point
   refinement stage, sized to train on a CPU in about 13 minutes) through the same LightningCLI as
   ``tools/train.py``, with the data root pointed at ``--data``; then prints the KITTI AP table (R40 and R11) of the final validation and
   where the checkpoint and the metrics are. ``--no-train`` stops after step 2; anything after ``--``
   is passed to the CLI as overrides (``-- --data.batch_size 8 --trainer.limit_val_batches 10``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
from perception.data.synthetic import GENERATOR_VERSION, write_dataset  # noqa: E402
from perception.eval.kitti import format_results  # noqa: E402
from perception.viz.bev import save_bev  # noqa: E402

console = Console(width=110)
LEVELS = ("easy", "moderate", "hard", "none")


def ensure_dataset(root: Path, frames: int, seed: int, workers: int) -> dict:
    """Generate ``frames`` frames into ``root`` unless they are already there (resumable)."""
    meta_path = root / "synthetic.json"
    overwrite = False
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != GENERATOR_VERSION:
            # An older generator's frames (generator 1 did not look like KITTI): regenerate them all.
            console.print(
                f"[yellow]{root} was written by generator {meta.get('version')}[/]; "
                f"regenerating it with generator {GENERATOR_VERSION}"
            )
            overwrite = True
            shutil.rmtree(root / "gt_database", ignore_errors=True)  # built from the old frames
        elif meta.get("seed") == seed and meta.get("args", {}).get("frames", 0) >= frames:
            console.print(f"[green]found[/] {root} ({meta['args']['frames']} frames, seed {seed})")
            return {"generated": 0, "seconds": 0.0}
    console.print(f"generating {frames} synthetic LiDAR frames into {root} with {workers} worker(s)")
    return write_dataset(root, frames=frames, seed=seed, workers=workers, progress=True, overwrite=overwrite)


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


def train(args: argparse.Namespace) -> dict:
    """Fit ``args.config`` on ``args.data`` through :class:`perception.cli.DetectionCLI`, in this process.

    Returns the final validation's KITTI metrics (``{class}_{metric}/{level}_{R40|R11}`` → AP in
    percent), the checkpoint paths and the run folder.
    """
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    from perception.cli import DetectionCLI, resolve_config_args
    from perception.eval.detection import KittiEvaluator

    overrides = ["--data.root", str(args.data), "--data.database", str(args.data / "gt_database"),
                 "--trainer.default_root_dir", str(args.run_dir),
                 "--trainer.logger.init_args.save_dir", str(args.run_dir),
                 # the final validation's result files, written by the KITTI result writer
                 "--trainer.callbacks+=perception.tasks.writers.KittiResultWriter",
                 "--trainer.callbacks.output_dir", str(args.run_dir / "predictions" / "val"),
                 "--trainer.callbacks.on_validation", "true"]  # fmt: skip
    if args.epochs is not None:
        overrides += ["--trainer.max_epochs", str(args.epochs)]
    if args.max_time:
        overrides += ["--trainer.max_time", args.max_time]
    cli_args = resolve_config_args(["fit", "--config", args.config, *overrides, *args.overrides])
    console.print(f"training {args.config} on {args.data}: python tools/train.py {' '.join(cli_args[1:])}")
    start = time.perf_counter()
    cli = DetectionCLI(args=cli_args)
    seconds = time.perf_counter() - start
    checkpoint = cli.trainer.checkpoint_callback
    return {
        "metrics": dict(cli.model.last_metrics),
        "classes": [
            c for e in cli.model.evaluators if isinstance(e, KittiEvaluator) for c in e.scored_classes
        ],
        "seconds": seconds,
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "last": getattr(checkpoint, "last_model_path", "") or "",
        "best": getattr(checkpoint, "best_model_path", "") or "",
        "log_dir": cli.trainer.log_dir,
        "predictions": str(args.run_dir / "predictions" / "val"),
    }


def report_training(result: dict) -> None:
    """Print the KITTI AP table of the final validation and where the run's files are."""
    metrics = result["metrics"]
    console.print(
        f"trained {result['epochs']} epoch(s), {result['steps']} steps in {result['seconds'] / 60:.1f} min"
    )
    if metrics:
        console.print("KITTI AP of the final validation (easy / moderate / hard, percent):")
        console.print(format_results(metrics, result["classes"]), markup=False, highlight=False)
        headline = ", ".join(
            f"{c} {metrics.get(f'{c}_3d/moderate_R40', float('nan')):.1f}" for c in result["classes"]
        )
        console.print(f"3D AP R40 moderate: [bold]{headline}[/]")
    else:
        console.print("[yellow]no validation ran[/] (no KITTI metrics to show)")
    console.print(
        f"checkpoint: [bold]{result['last'] or result['best']}[/]; metrics.csv in {result['log_dir']}"
    )
    console.print(f"the final validation's KITTI result files: {result['predictions']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO / "data" / "synthetic", help="dataset root")
    parser.add_argument("--frames", type=int, default=1500, help="frames to generate (default 1500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "quickstart", help="where pictures go")
    parser.add_argument("--config", default="pvt_synthetic.yaml", help="the config to train (in configs/)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    parser.add_argument(
        "--max-time",
        default="00:00:14:00",
        help="stop training after DD:HH:MM:SS (default 14 min; '' for none)",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=REPO / "outputs" / "quickstart", help="logs and checkpoints go here"
    )
    parser.add_argument("--no-train", action="store_true", help="generate, summarise and draw only")
    parser.add_argument("overrides", nargs="*", help="after --: LightningCLI overrides for the training")
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
    if not args.no_train:
        report_training(train(args))
    console.print(
        f"done in {time.perf_counter() - start:.1f} s. The dataset is in the KITTI layout: "
        "perception.data.kitti.load_frame reads it; python tools/train.py --config NAME.yaml trains on it."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
