"""What the multi-run studies share (the order ablation, the encoder comparison): one training run in its
own process, its last validation read back from the CSV log, and its result kept so a killed study resumes.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import REPO

__all__ = ["load_result", "read_last_validation", "save_result", "split_overrides", "train_run"]


def read_last_validation(run_dir: Path, key: str = "val/mIoU") -> dict[str, float]:
    """The last row with ``key`` of the newest ``metrics.csv`` under ``run_dir``: ``{key: value}``
    for every ``val/...`` column that row fills (``val/mIoU``, ``val/IoU/<class>``, ``val/accuracy``)."""
    logs = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise FileNotFoundError(f"{run_dir}: no metrics.csv (did the run validate?)")
    last: dict[str, float] | None = None
    with logs[-1].open() as f:
        for row in csv.DictReader(f):
            if row.get(key):
                last = {k: float(v) for k, v in row.items() if k.startswith("val/") and v != ""}
    if last is None:
        raise ValueError(f"{logs[-1]}: no validation row with {key}")
    return last


def train_run(
    run_dir: Path,
    config: str,
    args: Sequence[str],
    python: str = sys.executable,
    log: Callable[[str], object] = print,
    label: str = "",
) -> float:
    """Train ``config`` with ``args`` through ``tools/train.py fit`` in a child process, its logs and
    checkpoints under ``run_dir`` (output in ``run_dir/train.log``); returns the wall-clock seconds.

    Raises:
        subprocess.CalledProcessError: the run failed (its log says why).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        python,
        str(REPO / "tools" / "train.py"),
        "fit",
        "--config",
        config,
        *args,
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.logger.init_args.save_dir",
        str(run_dir),
    ]
    log(f"{label}: training ({' '.join(cmd[2:])})")
    t0 = time.perf_counter()
    with (run_dir / "train.log").open("w") as logfile:
        subprocess.run(cmd, check=True, cwd=REPO, stdout=logfile, stderr=subprocess.STDOUT)
    return time.perf_counter() - t0


def load_result(run_dir: Path) -> dict | None:
    """The run's kept ``result.json``, or None when it has not finished."""
    path = run_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def save_result(run_dir: Path, result: dict) -> None:
    """Keep ``result`` as ``run_dir/result.json`` (a temporary name, then renamed)."""
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(run_dir / "result.json")


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[own args..., "--", train overrides...]`` → (own args, overrides)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]
