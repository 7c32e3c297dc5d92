#!/usr/bin/env python
"""The invariance certificate of a config's model: permuted (and, where the model claims it, moved)
input clouds must leave its outputs unchanged, or permute per-point outputs the same way.

    python tools/check_invariance.py --config pvt_synthetic.yaml [--ckpt RUN/checkpoints/last.ckpt]
    python tools/check_invariance.py --all [--json outputs/invariance.json]

Prints, per config, every output with its transformation, the worst relative change over the trials,
the tolerance (1e-5) and PASS/FAIL; a fragment such as ``wandb.yaml`` is reported as not a model
config. Exit status 0 when every check passes, 1 when one fails (or a model does not run), 2 for a
config or checkpoint that cannot be read. No dataset is read. docs/invariance.md is the manual.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.inference import InferenceError
from perception.invariance import TOLERANCE, check_config, format_report, model_configs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/check_invariance.py", description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", action="append", help="a config (path or name in configs/); repeatable")
    which.add_argument("--all", action="store_true", help="every config in configs/")
    p.add_argument("--ckpt", help="the checkpoint's weights (one --config); default random weights")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    p.add_argument("--points", type=int, help="points per cloud (default by family: 6000 detection, ...)")
    p.add_argument("--trials", type=int, default=3, help="random transformations per check (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, the clouds and the permutations")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = p.parse_args(argv)
    if args.ckpt is not None and (args.all or len(args.config) != 1):
        p.error("--ckpt goes with exactly one --config")
    if args.trials < 1 or (args.points is not None and args.points < 1):
        p.error("--trials and --points must be >= 1")
    configs = model_configs() if args.all else args.config

    reports = []
    try:
        for config in configs:
            report = check_config(
                config, args.ckpt, points=args.points, trials=args.trials, seed=args.seed, device=args.device
            )
            reports.append(report)
            print(format_report(report) + "\n", flush=True)
    except InferenceError as err:
        print(f"check_invariance: error: {err}", file=sys.stderr)
        return 2

    passed = all(r.passed for r in reports)
    if len(reports) > 1:
        print(f"{'config':<32} {'family':<18} {'checks':>6} {'seconds':>8}  result")
        for r in reports:
            verdict = {"not a model config": "SKIPPED", "error": "ERROR"}.get(
                r.status, "PASS" if r.passed else "FAIL"
            )
            n = f"{sum(c.passed for c in r.checks)}/{len(r.checks)}" if r.checks else "-"
            print(f"{r.config:<32} {r.family or '-':<18} {n:>6} {r.seconds:>8.1f}  {verdict}")
    print(f"\ninvariance certificate: {'PASS' if passed else 'FAIL'} (tolerance {TOLERANCE:g})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        content = {"tolerance": TOLERANCE, "passed": passed, "configs": [r.to_dict() for r in reports]}
        args.json.write_text(json.dumps(content, indent=1) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
