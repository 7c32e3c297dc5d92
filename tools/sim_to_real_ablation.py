#!/usr/bin/env python
"""Train the quickstart detector on the simulator and measure it on real KITTI frames, once for
generator 2 as it is and once with each realism change turned off: the sim-to-real ablation.

    python tools/sim_to_real_ablation.py [--rows NAME ...] [--frames 1500] [--seed 0]
        [--data-dir data/ablation] [--out outputs/sim_to_real_ablation] [--workers 2]
        [--real NAME=ROOT ...] [--dry-run]

Each row:

1. generates the synthetic dataset with ``tools/make_synthetic.py --without ...`` into
   ``DATA_DIR/<row>`` (kept: a second run reuses it);
2. trains ``configs/pvt_synthetic.yaml`` on it with ``tools/quickstart.py`` (the README's main
   command, same budget and seeds) into ``OUT/<row>/``;
3. measures the checkpoint with ``tools/sim_to_real.py`` (real KITTI roots beside the row's own
   synthetic val split) into ``OUT/<row>/eval/sim_to_real.json``.

A row whose ``sim_to_real.json`` exists is not run again, so an interrupted ablation resumes. The
table (Car / Pedestrian / Cyclist 3D and BEV AP R40 moderate a dataset) is printed and written to
``OUT/ablation.md`` and ``OUT/ablation.json``. Rows (``--rows``, default all): ``generator-2``
(everything on; ``--rows generator-2`` is the one command to measure a change), ``no-<change>``
for each of :data:`perception.data.synthetic.REALISM_SWITCHES` and ``no-domain-randomization``
(the training transforms), ``with-parking-bays`` (the one change left off by default), and
``generator-1`` (everything off). One row takes about 16 minutes
on 2 CPU cores. Exit status 0, 1 if a step failed (its log is named), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from perception.data.io import atomic_write_text  # noqa: E402
from perception.data.synthetic.config import REALISM_SWITCHES  # noqa: E402

ROWS: dict[str, tuple[list[str], list[str]]] = {
    "generator-2": ([], []),
    **{f"no-{name}": (["--without", name], []) for name in REALISM_SWITCHES},
    "no-domain-randomization": ([], ["--data.domain_randomization", "false"]),
    "with-parking-bays": (["--parking-bays"], []),
    "generator-1": (["--without", "all"], ["--data.domain_randomization", "false"]),
}
"""Row name → (``make_synthetic.py`` arguments, training overrides)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run (default all)"
    )
    p.add_argument(
        "--frames", type=int, default=1500, help="frames a dataset (default 1500, the quickstart's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--data-dir", type=Path, default=REPO / "data" / "ablation")
    p.add_argument("--out", type=Path, default=REPO / "outputs" / "sim_to_real_ablation")
    p.add_argument("--real", action="append", default=[], help="NAME=ROOT, passed to tools/sim_to_real.py")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p


def commands(row: str, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The row's three steps as ``(log name, argv)``."""
    gen_args, overrides = ROWS[row]
    data, out = args.data_dir / row, args.out / row
    py = sys.executable
    generate = [py, str(REPO / "tools/make_synthetic.py"), "--out", str(data), "--frames", str(args.frames),
                "--seed", str(args.seed), "--workers", str(args.workers), "--quiet", *gen_args]  # fmt: skip
    train = [py, str(REPO / "tools/quickstart.py"), "--data", str(data), "--frames", str(args.frames),
             "--seed", str(args.seed), "--run-dir", str(out), "--out", str(out)]  # fmt: skip
    if overrides:
        train += ["--", *overrides]
    ckpt = out / "detection" / "version_0" / "checkpoints" / "last.ckpt"
    measure = [py, str(REPO / "tools/sim_to_real.py"), "--ckpt", str(ckpt), "--synthetic", str(data),
               "--out", str(out / "eval"), "--markdown"]  # fmt: skip
    for spec in args.real:
        measure += ["--real", spec]
    steps = [("train", train), ("measure", measure)]
    if not (data / "synthetic.json").is_file():
        steps.insert(0, ("generate", generate))
    return steps


def run_row(row: str, args: argparse.Namespace) -> dict | None:
    """Run the row's steps (logs in ``OUT/<row>/<step>.log``); its ``sim_to_real.json``, or None."""
    result = args.out / row / "eval" / "sim_to_real.json"
    if result.is_file():
        print(f"{row}: done before ({result})")
        return json.loads(result.read_text())
    (args.out / row).mkdir(parents=True, exist_ok=True)
    for name, argv in commands(row, args):
        if args.dry_run:
            print(" ".join(argv))
            continue
        log = args.out / row / f"{name}.log"
        print(f"{row}: {name} (log: {log})", flush=True)
        with open(log, "w") as f:
            code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        if code != 0:
            print(f"{row}: {name} failed with exit status {code}; see {log}", file=sys.stderr)
            return None
    return None if args.dry_run else json.loads(result.read_text())


def cell(dataset: dict, cls: str) -> str:
    """``3D (BEV)`` of one class in one ``sim_to_real.json`` row; "–" where undefined."""
    ap = dataset.get("ap_r40_moderate", {}).get(cls, {})
    a3, bev = ap.get("3d"), ap.get("bev")
    if a3 is None and bev is None:
        return "–"
    return f"{'–' if a3 is None else f'{a3:.1f}'} ({'–' if bev is None else f'{bev:.1f}'})"


def ablation_table(results: dict[str, dict]) -> str:
    """Markdown: one line a (row, dataset)."""
    lines = [
        "| row | data | Car 3D (BEV) | Pedestrian 3D (BEV) | Cyclist 3D (BEV) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row, result in results.items():
        for dataset in result.get("rows", []):
            cells = " | ".join(cell(dataset, c) for c in ("Car", "Pedestrian", "Cyclist"))
            lines.append(f"| {row} | {dataset['name']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames < 1:
        print(f"sim_to_real_ablation: --frames must be >= 1, got {args.frames}", file=sys.stderr)
        return 2
    results, failed = {}, False
    for row in args.rows:
        result = run_row(row, args)
        if result is None:
            failed = failed or not args.dry_run
            continue
        results[row] = result
    if results:
        text = ablation_table(results)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "ablation.md", text + "\n")
        atomic_write_text(args.out / "ablation.json", json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
