#!/usr/bin/env python
"""How a detection checkpoint does on real KITTI frames beside its synthetic validation split.

    python tools/sim_to_real.py --ckpt PATH [--real NAME=ROOT ...] [--synthetic ROOT | --no-synthetic]
        [--synthetic-limit N] [--config NAME.yaml] [--out DIR] [--markdown] [--batch-size N]
        [--num-workers N] [LightningCLI overrides: --trainer.accelerator cpu, ...]

Each dataset is run through ``tools/eval.py``'s own path (:func:`run` of that tool: the checkpoint
loaded by :func:`perception.inference.load_task`, its result files in ``OUT/<name>/predictions``, the
devkit's AP from :func:`perception.eval.kitti.evaluate_folders` in ``OUT/<name>/metrics.json``), so the
numbers are the ones ``tools/eval.py --data-root ROOT`` gives. Datasets: every ``--real NAME=ROOT``
(default, where the folders exist: ``dev=../shared/data/kitti_real_dev``, its ``ImageSets/val.txt``,
and ``kitti3=tests/data/kitti``, the three shipped frames, every scan as there is no split file) and
the synthetic ``val`` split (``--synthetic``, default ``data/synthetic``; ``--synthetic-limit N`` its
first N frames). Relative paths are taken from the repository root.

Prints a table, one row a dataset: frames, moderate ground-truth objects a class (those the moderate
AP counts: easy or moderate by :func:`perception.data.kitti.kitti_difficulty`, DontCare aside) and
AP R40 moderate 3D and BEV a class ("–" where the class has no moderate object or the AP is
undefined); ``--markdown`` also prints it as the README's table (``| data | Car 3D (BEV) | ...``).
Everything goes to ``OUT/sim_to_real.json`` (written atomically); ``OUT`` defaults to
``outputs/sim_to_real/<run>`` for a checkpoint ``.../<run>/checkpoints/NAME.ckpt``. Exit status 0, or
2 on a usage or data error (a missing root is named), printed as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

CLASSES = ("Car", "Pedestrian", "Cyclist")
METRICS = ("3d", "bev")
DASH = "–"
DEFAULT_REAL = (
    ("dev", "../shared/data/kitti_real_dev"),
    ("kitti3", "tests/data/kitti"),
)
FALLBACK_KITTI3 = "../shared/data/kitti"  # the same three frames, where tests/data lacks them


def _load_eval_tool() -> ModuleType:
    """``tools/eval.py`` as a module (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location("perception_tools_eval", REPO / "tools" / "eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


eval_tool = _load_eval_tool()


class SimToRealError(eval_tool.EvalError):
    """A user-facing error: printed as one line, exit status 2."""


@dataclass
class Dataset:
    """One KITTI-layout root to evaluate."""

    name: str
    root: Path
    kind: str  # "real" or "synthetic"
    split: str = "val"
    frames: list[str] | None = None  # None: the split file, or every scan where it is missing


@dataclass
class Row:
    """What one dataset gives: its frames, moderate ground truth and AP R40 moderate."""

    name: str
    kind: str
    root: str
    split: str
    frame_list: str  # where the frames come from
    frames: int
    moderate_gt: dict[str, int] | None  # None: the frames have no labels
    ap_r40_moderate: dict[str, dict[str, float | None]] = field(default_factory=dict)
    predictions: str = ""
    metrics: str | None = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/sim_to_real.py",
        description="KITTI AP R40 moderate (3D, BEV) of a detection checkpoint on real KITTI roots beside "
        "its synthetic validation split, through tools/eval.py. Extra --section.key value arguments are "
        "LightningCLI overrides of the config.",
    )
    p.add_argument(
        "--ckpt", required=True, type=Path, help="detection checkpoint (.ckpt) or saved state dict"
    )
    p.add_argument(
        "--real", action="append", default=[], metavar="NAME=ROOT",
        help="a real KITTI-layout root (repeatable); default: dev=../shared/data/kitti_real_dev and "
        "kitti3=tests/data/kitti where they exist",
    )  # fmt: skip
    p.add_argument("--synthetic", type=Path, help="synthetic root, split val (default data/synthetic)")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic validation split")
    p.add_argument("--synthetic-limit", type=int, help="only the first N synthetic val frames (default all)")
    p.add_argument("--config", help="config YAML (default: the config.yaml of the checkpoint's run)")
    p.add_argument("--out", type=Path, help="output folder (default outputs/sim_to_real/<run>)")
    p.add_argument("--markdown", action="store_true", help="also print the rows as a markdown table")
    p.add_argument("--batch-size", type=int, help="prediction batch size (default: the config's)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers (default: the config's)")
    return p


def repo_path(path: str | Path) -> Path:
    """``path``, relative ones taken from the repository root."""
    path = Path(path).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else REPO / path))


def run_name(ckpt: Path) -> str:
    """The run a checkpoint ``RUN/checkpoints/x.ckpt`` comes from, as one folder name: ``RUN``'s path
    below ``outputs/`` joined by ``-`` (``quickstart-detection-version_0``), else ``RUN``'s name; ``run``
    for a checkpoint outside a ``checkpoints`` folder."""
    ckpt = repo_path(ckpt).resolve()
    if ckpt.parent.name != "checkpoints":
        return "run"
    run = ckpt.parent.parent
    parts = run.parts
    if "outputs" in parts:
        below = parts[len(parts) - parts[::-1].index("outputs") :]
        if below:
            return "-".join(below)
    return run.name


def _kitti3_default() -> Path | None:
    """``tests/data/kitti`` where it holds the three shipped frames, else ``../shared/data/kitti``."""
    for root in (repo_path(dict(DEFAULT_REAL)["kitti3"]), repo_path(FALLBACK_KITTI3)):
        velodyne = root / "training" / "velodyne"
        if all((velodyne / f"00000{i}.bin").is_file() for i in range(3)):
            return root
    return None


def _parse_real(spec: str) -> tuple[str, Path]:
    name, sep, root = spec.partition("=")
    name = name.strip()
    if not sep or not name or not root:
        raise SimToRealError(f"--real {spec!r}: expected NAME=ROOT")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise SimToRealError(f"--real {spec!r}: NAME becomes a folder name, so no slashes")
    return name, repo_path(root)


def datasets(args: argparse.Namespace) -> list[Dataset]:
    """The datasets to evaluate, in order: the real roots, then the synthetic val split.

    Raises:
        SimToRealError: a root given explicitly that does not exist (named), a malformed or repeated
            name, or no dataset at all.
    """
    chosen: list[Dataset] = []
    if args.real:
        for spec in args.real:
            name, root = _parse_real(spec)
            if not root.exists():
                raise SimToRealError(f"--real {name}: {root} does not exist")
            chosen.append(Dataset(name, root, "real"))
    else:
        dev = repo_path(dict(DEFAULT_REAL)["dev"])
        if (dev / "training" / "velodyne").is_dir():
            chosen.append(Dataset("dev", dev, "real"))
        kitti3 = _kitti3_default()
        if kitti3 is not None:
            chosen.append(Dataset("kitti3", kitti3, "real"))
    if not args.no_synthetic:
        root = repo_path(args.synthetic if args.synthetic is not None else "data/synthetic")
        if root.exists():
            frames = None
            if args.synthetic_limit is not None:
                from perception.data.kitti import read_split

                if args.synthetic_limit < 1:
                    raise SimToRealError(f"--synthetic-limit {args.synthetic_limit}: give at least 1 frame")
                if not (root / "ImageSets" / "val.txt").is_file():
                    raise SimToRealError(f"{root / 'ImageSets' / 'val.txt'}: no synthetic val split")
                frames = read_split(root, "val")[: args.synthetic_limit]
            chosen.append(Dataset("synthetic", root, "synthetic", frames=frames))
        elif args.synthetic is not None:
            raise SimToRealError(f"--synthetic: {root} does not exist")
        else:
            print(f"sim_to_real: {root} not found; no synthetic row", file=sys.stderr)
    names = [d.name for d in chosen]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SimToRealError(f"dataset name(s) {repeated} given twice")
    if not chosen:
        raise SimToRealError("no dataset to evaluate: pass --real NAME=ROOT or --synthetic ROOT")
    return chosen


def moderate_gt(root: Path, frame_ids: list[str], split_folder: str = "training") -> dict[str, int] | None:
    """Objects a class that the devkit's moderate AP counts (easy or moderate; DontCare and other
    classes aside) in the frames' labels; None where a frame has no label file."""
    import numpy as np

    from perception.data.kitti import frame_path, kitti_difficulty, read_label

    counts = dict.fromkeys(CLASSES, 0)
    for frame_id in frame_ids:
        path = frame_path(root, frame_id, "label_2", split_folder)
        if not path.is_file():
            return None
        objects = read_label(path)
        care = objects.names != "DontCare"
        levels = kitti_difficulty(objects.bbox[care], objects.occluded[care], objects.truncated[care])
        names = objects.names[care]
        for name in CLASSES:
            counts[name] += int(np.count_nonzero((names == name) & (levels >= 0) & (levels <= 1)))
    return counts


def _ap(results: dict[str, float] | None) -> dict[str, dict[str, float | None]]:
    """AP R40 moderate a class and metric from eval's results (None where undefined or not scored)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in CLASSES:
        out[name] = {}
        for metric in METRICS:
            value = None if results is None else results.get(f"{name}_{metric}/moderate_R40")
            out[name][metric] = None if value is None or math.isnan(value) else float(value)
    return out


def evaluate(dataset: Dataset, args: argparse.Namespace, overrides: list[str], out: Path) -> Row:
    """``tools/eval.py``'s run on one dataset (result files and metrics in ``out``) and its row."""
    argv = ["--ckpt", str(args.ckpt), "--data-root", str(dataset.root), "--split", dataset.split,
            "--out", str(out)]  # fmt: skip
    for flag, value in (("--config", args.config), ("--batch-size", args.batch_size),
                        ("--num-workers", args.num_workers)):  # fmt: skip
        if value is not None:
            argv += [flag, str(value)]
    if dataset.frames is not None:
        argv += ["--frames", *dataset.frames]
    eval_args = eval_tool.build_parser().parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # eval's own report is progress; the table is ours
        results = eval_tool.run(eval_args, list(overrides))
    predictions = out / "predictions"
    frame_ids = sorted(p.stem for p in predictions.glob("*.txt"))  # eval writes exactly its frames
    metrics = out / "metrics.json"
    return Row(
        name=dataset.name,
        kind=dataset.kind,
        root=str(dataset.root),
        split=dataset.split,
        frame_list=_frame_list(dataset),
        frames=len(frame_ids),
        moderate_gt=None if results is None else moderate_gt(dataset.root, frame_ids),
        ap_r40_moderate=_ap(results),
        predictions=str(predictions),
        metrics=str(metrics) if metrics.is_file() else None,
    )


def _frame_list(dataset: Dataset) -> str:
    """Where eval took the frames from (see ``tools/eval.py``'s ``select_frames``)."""
    split_file = f"ImageSets/{dataset.split}.txt"
    if dataset.frames is not None:
        return f"the first {len(dataset.frames)} of {split_file}"
    if (dataset.root / split_file).is_file():
        return split_file
    return "every scan in training/velodyne (no split file)"


def _cell(row: Row, name: str, metric: str) -> str:
    value = row.ap_r40_moderate.get(name, {}).get(metric)
    if value is None or not row.moderate_gt or row.moderate_gt.get(name, 0) == 0:
        return DASH
    return f"{value:.1f}"


def table(rows: list[Row], title: str) -> Table:
    """The rich table: frames, moderate ground truth and AP R40 moderate 3D / BEV a class."""
    t = Table(title=title)
    t.add_column("data")
    t.add_column("frames", justify="right")
    for name in CLASSES:
        t.add_column(f"{name} GT", justify="right")
    for name in CLASSES:
        for metric in METRICS:
            t.add_column(f"{name} {metric.upper() if metric == 'bev' else '3D'}", justify="right")
    for row in rows:
        gt = [DASH if row.moderate_gt is None else str(row.moderate_gt[n]) for n in CLASSES]
        ap = [_cell(row, n, m) for n in CLASSES for m in METRICS]
        t.add_row(row.name, str(row.frames), *gt, *ap)
    return t


def markdown(rows: list[Row]) -> str:
    """The rows as the README's table: ``| data | Car 3D (BEV) | Pedestrian 3D (BEV) | Cyclist 3D (BEV) |``."""
    lines = ["| data | " + " | ".join(f"{n} 3D (BEV)" for n in CLASSES) + " |",
             "| --- |" + " ---: |" * len(CLASSES)]  # fmt: skip
    for row in rows:
        cells = []
        for name in CLASSES:
            ap3d, bev = _cell(row, name, "3d"), _cell(row, name, "bev")
            cells.append(DASH if ap3d == DASH and bev == DASH else f"{ap3d} ({bev})")
        what = f"{row.name} ({row.kind}, {row.frames} frames)"
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check_detection(args: argparse.Namespace) -> None:
    """Refuse a checkpoint whose config is not a KITTI-style detection one (before any data is read)."""
    from perception.inference import config_dataset, config_kind, find_config

    if not repo_path(args.ckpt).is_file():
        raise SimToRealError(f"--ckpt: {repo_path(args.ckpt)} does not exist")
    config = find_config(repo_path(args.ckpt), args.config)
    kind, dataset = config_kind(config), config_dataset(config)
    if kind != "detection" or dataset == "waymo":
        raise SimToRealError(
            f"{config}: a {kind} config on {dataset} data; sim_to_real takes KITTI detection"
        )


def run(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """Evaluate every dataset; print the table (and markdown); write ``OUT/sim_to_real.json``."""
    from perception.data.io import atomic_write_text

    chosen = datasets(args)  # a missing root fails before anything is loaded
    _check_detection(args)
    args.ckpt = repo_path(args.ckpt)
    out = (
        repo_path(args.out)
        if args.out is not None
        else REPO / "outputs" / "sim_to_real" / run_name(args.ckpt)
    )
    rows = [evaluate(d, args, overrides, out / d.name) for d in chosen]
    report = {
        "checkpoint": str(args.ckpt),
        "metric": "KITTI AP R40, moderate, percent (null where undefined)",
        "moderate_gt": "objects easy or moderate by kitti_difficulty, DontCare aside",
        "rows": [asdict(r) for r in rows],
    }
    path = atomic_write_text(out / "sim_to_real.json", json.dumps(report, indent=1) + "\n")
    console = Console(width=140)
    shown = args.ckpt.relative_to(REPO) if args.ckpt.is_relative_to(REPO) else args.ckpt
    console.print(table(rows, f"{shown}: KITTI AP R40 moderate, real beside synthetic val"))
    if args.markdown:
        print(markdown(rows))
    print(f"sim_to_real: {path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if any(not a.startswith("--") for a in overrides[:1]) or any(
        a.startswith("-") and not a.startswith("--") for a in overrides
    ):
        parser.error(
            f"unrecognized arguments: {' '.join(overrides)} (overrides look like --section.key value)"
        )
    from perception.cli import DATA_ERRORS, error_message
    from perception.inference import InferenceError

    try:
        run(args, overrides)
    except (eval_tool.EvalError, InferenceError, *DATA_ERRORS) as err:
        print(f"sim_to_real: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
