"""The ablation Point2Point rests on: the same network and budget, only the sequence order changes.

Each (order, seed) trains ``configs/p2p_seg_synthetic.yaml`` (or any segmentation config) through
``tools/train.py`` in its own process with ``--model.init_args.backbone.init_args.order ORDER``, the seed
given to both the model (``seed_everything``) and the data (``data.init_args.seed``: augmentation and
sampling), and the same extra overrides for every run. The last validation's mIoU and per-class IoU
(the SemanticKITTI definitions, :mod:`perception.eval.segmentation`) are read from the run's CSV log
and kept in ``OUT/<order>-seed<seed>/result.json``; a run whose result exists is not repeated, so a
killed ablation resumes. :func:`summarise` gives mean ± standard deviation and min–max per order.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.runs import load_result, read_last_validation, save_result, train_run

__all__ = ["read_last_validation", "run_ablation", "summarise"]


def run_ablation(
    out: str | os.PathLike,
    orders: Sequence[str] = ("hilbert", "z", "random"),
    seeds: Sequence[int] = (0, 1, 2),
    config: str = "p2p_seg_synthetic.yaml",
    overrides: Sequence[str] = (),
    python: str = sys.executable,
    log=print,
) -> list[dict]:
    """Train every (order, seed) not done yet; returns one result dict per run (see the module docstring)."""
    out = Path(out)
    results = []
    for seed in seeds:
        for order in orders:
            run_dir = out / f"{order}-seed{seed}"
            done = load_result(run_dir)
            if done is not None:
                results.append(done)
                log(f"{order} seed {seed}: done before, mIoU {done['mIoU']:.1f}")
                continue
            args = [
                "--seed_everything",
                str(seed),
                "--data.init_args.seed",
                str(seed),
                "--model.init_args.backbone.init_args.order",
                order,
                *overrides,
            ]
            seconds = train_run(run_dir, config, args, python, log, label=f"{order} seed {seed}")
            metrics = read_last_validation(run_dir)
            result = {
                "order": order,
                "seed": seed,
                "mIoU": metrics["val/mIoU"],
                "IoU": {
                    k.removeprefix("val/IoU/"): v for k, v in metrics.items() if k.startswith("val/IoU/")
                },
                "train_s": seconds,
                "overrides": list(overrides),
                "config": config,
            }
            save_result(run_dir, result)
            results.append(result)
            log(f"{order} seed {seed}: mIoU {result['mIoU']:.1f} in {result['train_s']:.0f} s")
    return results


def summarise(results: Sequence[dict]) -> list[dict]:
    """Per order: runs, mIoU mean ± standard deviation (n − 1), min and max, and each class's mean IoU."""
    rows = []
    for order in dict.fromkeys(r["order"] for r in results):
        runs = [r for r in results if r["order"] == order]
        m = [r["mIoU"] for r in runs]
        mean = sum(m) / len(m)
        std = math.sqrt(sum((v - mean) ** 2 for v in m) / (len(m) - 1)) if len(m) > 1 else 0.0
        classes = list(runs[0]["IoU"])
        rows.append(
            {
                "order": order,
                "runs": len(runs),
                "mIoU_mean": mean,
                "mIoU_std": std,
                "mIoU_min": min(m),
                "mIoU_max": max(m),
                "seeds": [r["seed"] for r in runs],
                "IoU_mean": {c: sum(r["IoU"][c] for r in runs) / len(runs) for c in classes},
            }
        )
    return rows
