#!/usr/bin/env python
"""One-shot GPU check: every op and one training step of each model family on the GPU and on the CPU
with the same inputs and weights, the differences, and the detector's GPU timings on Waymo-sized frames.

    python tools/gpu_check.py [--quick] [--json OUT.json] [--only WORD ...]

Prints the environment (torch, CUDA, the GPU, spconv and whether its CUDA build is in use, perception),
a table (check, output, CPU ms, GPU ms, max abs / rel difference, tolerance, result) and the timings
(training and inference frames/s, peak GPU memory). Exit status 0 when everything agrees, or on a
machine without a GPU after the CPU half ("no CUDA GPU: ran the CPU half only; the GPU path is
unrun"); 1 on a mismatch or a check that cannot run; 2 on bad arguments. docs/gpu_check.md is the manual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from perception.gpu_check import (
    Options,
    all_checks,
    environment,
    format_environment,
    format_report,
    run_checks,
    select_checks,
    write_json,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats (CPU half < 1 min)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write every result as JSON (atomically)")
    p.add_argument(
        "--only", nargs="+", default=[], metavar="WORD", help="run the checks whose name contains a WORD"
    )
    p.add_argument("--no-speed", action="store_true", help="skip the detector timings")
    p.add_argument("--seed", type=int, default=0, help="seeds every input and weight (default 0)")
    p.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="the device compared with the CPU: auto (cuda when present, else none), cuda, or cpu "
        "(the CPU against its own tensor code paths: for testing the check)",
    )
    # hidden, for the tests: break the second run's outputs of the checks whose name contains WORD
    p.add_argument("--perturb", metavar="WORD", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        p.error("--device cuda: torch sees no CUDA GPU here")
    if args.perturb is not None and args.device == "auto" and not cuda:
        p.error("--perturb needs a second device (--device cpu on a machine without a GPU)")
    second = {"auto": "cuda" if cuda else None, "cuda": "cuda", "cpu": "cpu"}[args.device]
    try:
        select_checks(all_checks(), args.only)
    except ValueError as err:
        p.error(str(err))

    options = Options(
        quick=args.quick,
        seed=args.seed,
        second=second,
        only=tuple(args.only),
        perturb=args.perturb,
        speed=not args.no_speed,
    )
    print("environment:\n" + format_environment(environment()) + "\n", flush=True)
    report = run_checks(options, log=lambda line: print(line, flush=True))
    print("\n" + format_report(report, with_environment=False), flush=True)
    if args.json is not None:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
