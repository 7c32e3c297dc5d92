#!/usr/bin/env python
"""PVTransformer's attention against PointNet's max-pool in the point-to-voxel stage, over seeds:
train both synthetic detection configs with each seed and print KITTI AP R40 (moderate) mean ± spread
(``benchmarks/encoder_comparison.py`` does the work).

    python tools/encoder_comparison.py [--out outputs/encoder_comparison] [--seeds 0 1 2]
        [--configs pvt_synthetic.yaml pointpillars_synthetic.yaml] [-- TRAIN OVERRIDES ...]

Everything after ``--`` goes to every ``tools/train.py`` run. Finished runs are kept in
``OUT/<config>-seed<seed>/result.json`` and not repeated; the table goes to ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.encoder_comparison import METRICS, paired_differences, run_comparison, summarise
from benchmarks.runs import split_overrides


def main(argv: list[str] | None = None) -> int:
    argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python tools/encoder_comparison.py", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=Path("outputs/encoder_comparison"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--configs", nargs=2, default=["pvt_synthetic.yaml", "pointpillars_synthetic.yaml"])
    args = p.parse_args(argv)
    results = run_comparison(args.out, args.configs, args.seeds, overrides)
    rows = summarise(results)
    print(
        f"\nKITTI AP R40 moderate, mean ± std (min–max) over seeds\n{'config':<28} {'runs':>4} "
        + " ".join(f"{m:>20}" for m in METRICS)
    )
    for r in rows:
        cells = [
            f"{s['mean']:.1f} ± {s['std']:.1f} ({s['min']:.1f}–{s['max']:.1f})" for s in r["AP"].values()
        ]
        print(f"{r['config']:<28} {r['runs']:>4} " + " ".join(f"{c:>20}" for c in cells))
    diffs = paired_differences(results, *args.configs)
    print(f"\npaired differences {args.configs[0]} − {args.configs[1]} per seed")
    for m, d in diffs.items():
        print(f"  {m:<16} " + " ".join(f"{v:+.1f}" for v in d))
    summary = {"rows": rows, "paired_differences": diffs}
    tmp = args.out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    tmp.replace(args.out / "summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
