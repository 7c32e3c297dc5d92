"""The PVTransformer claim over seeds: attention against PointNet's max-pool in the point-to-voxel stage.

Each (encoder config, seed) trains one detection config (by default ``pvt_synthetic.yaml``, the
quickstart, and ``pointpillars_synthetic.yaml``, which differ only in the encoder) through
``tools/train.py`` in its own process, with the seed given to the model (``seed_everything``) and to the
data (``data.seed``: shuffle and augmentation), at the configs' own budget (3 epochs = 900 steps of
batch 4 on the 1,500-frame synthetic set). The last validation's KITTI AP R40 at moderate difficulty
(3D and BEV per class, :mod:`perception.eval.kitti`) is read from the run's CSV log and kept in
``OUT/<config stem>-seed<seed>/result.json``; a finished run is not repeated, so a killed comparison
resumes. :func:`summarise` gives mean ± standard deviation and min–max per config and metric, and
:func:`paired_differences` the per-seed differences between two configs.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.runs import load_result, read_last_validation, save_result, train_run

__all__ = ["METRICS", "paired_differences", "run_comparison", "summarise"]

METRICS = tuple(f"{c}_{v}" for c in ("Car", "Pedestrian", "Cyclist") for v in ("3d", "bev"))
"""The reported metrics: KITTI AP R40 at moderate difficulty, ``val/<metric>/moderate_R40`` in the log."""


def run_comparison(
    out: str | os.PathLike,
    configs: Sequence[str] = ("pvt_synthetic.yaml", "pointpillars_synthetic.yaml"),
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    python: str = sys.executable,
    log=print,
) -> list[dict]:
    """Train every (config, seed) not done yet; one result dict per run (see the module docstring)."""
    out = Path(out)
    results = []
    for seed in seeds:
        for config in configs:
            name = Path(config).stem
            run_dir = out / f"{name}-seed{seed}"
            done = load_result(run_dir)
            if done is not None:
                results.append(done)
                log(f"{name} seed {seed}: done before")
                continue
            args = ["--seed_everything", str(seed), "--data.seed", str(seed), *overrides]
            seconds = train_run(run_dir, config, args, python, log, label=f"{name} seed {seed}")
            metrics = read_last_validation(run_dir, key="val/Car_3d/moderate_R40")
            result = {
                "config": config,
                "seed": seed,
                "AP": {m: metrics[f"val/{m}/moderate_R40"] for m in METRICS},
                "train_s": seconds,
                "overrides": list(overrides),
            }
            save_result(run_dir, result)
            results.append(result)
            log(f"{name} seed {seed}: " + ", ".join(f"{m} {v:.1f}" for m, v in result["AP"].items()))
    return results


def _stats(values: Sequence[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def _mean_minutes(seconds: Sequence[float]) -> float | None:
    return sum(seconds) / len(seconds) / 60.0 if seconds else None


def summarise(results: Sequence[dict]) -> list[dict]:
    """Per config: runs, seeds and, per metric, mean ± standard deviation (n − 1), min and max."""
    rows = []
    for config in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == config]
        rows.append(
            {
                "config": config,
                "runs": len(runs),
                "seeds": [r["seed"] for r in runs],
                "AP": {m: _stats([r["AP"][m] for r in runs]) for m in METRICS},
                "train_min": _mean_minutes([r["train_s"] for r in runs if r.get("train_s") is not None]),
            }
        )
    return rows


def paired_differences(results: Sequence[dict], a: str, b: str) -> dict[str, list[float]]:
    """Per metric, ``AP(a) − AP(b)`` for every seed both configs ran, in seed order."""
    by = {(r["config"], r["seed"]): r["AP"] for r in results}
    seeds = sorted(s for (c, s) in by if c == a and (b, s) in by)
    return {m: [by[(a, s)][m] - by[(b, s)][m] for s in seeds] for m in METRICS}
