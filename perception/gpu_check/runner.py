"""Running the checks on the CPU and the second device, the report, its table and its JSON."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import torch

import perception
from perception.gpu_check.compare import Comparison, compare_outputs, perturb_outputs
from perception.gpu_check.core import Case, CheckSpec, Options, strict_float32, tensor_paths
from perception.gpu_check.inputs import WAYMO_POINTS
from perception.gpu_check.models import model_checks
from perception.gpu_check.ops import OP_CHECKS
from perception.gpu_check.speed import SpeedResult, SpeedSetup, detector_speed
from perception.ops.sparse import spconv_cuda_available

__all__ = [
    "NO_GPU",
    "CheckResult",
    "Report",
    "all_checks",
    "environment",
    "format_environment",
    "format_report",
    "run_checks",
    "select_checks",
    "speed_setups",
    "write_json",
]

NO_GPU = "no CUDA GPU: ran the CPU half only; the GPU path is unrun"
"""What the check says on a machine without a GPU (it then exits 0)."""

JSON_VERSION = 1


def all_checks() -> tuple[CheckSpec, ...]:
    """Every check, ops first, then each model's training step and forward (a fresh set of specs)."""
    return (*OP_CHECKS, *model_checks())


def select_checks(checks: Sequence[CheckSpec], only: Sequence[str]) -> list[CheckSpec]:
    """The checks whose name contains one of ``only`` (all of them when ``only`` is empty).

    Raises:
        ValueError: a word that matches no check (a typo would otherwise run nothing and pass).
    """
    if not only:
        return list(checks)
    unknown = [w for w in only if not any(w in c.name for c in checks)]
    if unknown:
        names = ", ".join(c.name for c in checks)
        raise ValueError(f"--only {', '.join(unknown)} matches no check (checks: {names})")
    return [c for c in checks if any(w in c.name for w in only)]


@dataclass
class CheckResult:
    """One check's outcome.

    Attributes:
        name, group, what: the check's (:class:`~perception.gpu_check.core.CheckSpec`).
        inputs: the inputs in words.
        cpu_ms: the reference (CPU) run's time, ms; second_ms: the second device's, or None.
        comparisons: one per output (none without a second device).
        error: why the check could not run (it then fails); detail: the traceback.
    """

    name: str
    group: str
    what: str
    inputs: str = ""
    cpu_ms: float | None = None
    second_ms: float | None = None
    comparisons: list[Comparison] = field(default_factory=list)
    error: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and all(c.passed for c in self.comparisons)

    @property
    def status(self) -> str:
        if not self.passed:
            return "FAILED"
        return "PASS" if self.comparisons else "CPU ONLY"

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "group": self.group,
            "what": self.what,
            "inputs": self.inputs,
            "cpu_ms": _rounded(self.cpu_ms),
            "second_ms": _rounded(self.second_ms),
            "status": self.status,
            "passed": self.passed,
            "error": self.error,
            "detail": self.detail,
            "outputs": [c.to_dict() for c in self.comparisons],
        }


def _rounded(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


@dataclass
class Report:
    """Everything one run found.

    Attributes:
        options: what was asked.
        environment: versions and devices (:func:`environment`).
        checks: one per check run.
        speed: the detector's timings (empty when not asked).
        seconds: wall time of the whole run.
    """

    options: Options
    environment: dict[str, Any]
    checks: list[CheckResult]
    speed: list[SpeedResult]
    seconds: float = 0.0

    @property
    def second(self) -> str | None:
        return self.options.second

    @property
    def gpu_path_run(self) -> bool:
        return self.second == "cuda"

    @property
    def passed(self) -> bool:
        """Every check passed (or ran on the CPU without error) and every timing ran."""
        return all(c.passed for c in self.checks) and all(s.error is None for s in self.speed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "mode": "quick" if self.options.quick else "full",
            "seed": self.options.seed,
            "second_device": self.second,
            "gpu_path": "run" if self.gpu_path_run else "unrun",
            "passed": self.passed,
            "seconds": round(self.seconds, 1),
            "environment": self.environment,
            "checks": [c.to_dict() for c in self.checks],
            "speed": [s.to_dict() for s in self.speed],
        }


# ------------------------------------------------------------------------------------------------------
# environment


def _distribution(prefix: str) -> str | None:
    """``name version`` of the installed distribution whose name starts with ``prefix`` (spconv's CUDA
    builds are ``spconv-cu120``, ...), or None."""
    found = sorted(
        f"{d.metadata['Name']} {d.version}"
        for d in importlib.metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith(prefix)
    )
    return ", ".join(found) or None


def _spconv_cuda_build() -> bool | None:
    """Whether the installed spconv is a CUDA build (None: spconv does not import)."""
    try:
        from spconv.cppconstants import CPU_ONLY_BUILD
    except Exception:
        return None
    return not CPU_ONLY_BUILD


def _spconv_allow_tf32() -> bool | None:
    """spconv's own TF32 switch (``spconv.constants.SPCONV_ALLOW_TF32``; None where spconv does not import)."""
    try:
        from spconv.constants import SPCONV_ALLOW_TF32
    except Exception:
        return None
    return bool(SPCONV_ALLOW_TF32)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Versions and devices: Python, torch and its CUDA / cuDNN, the GPU, spconv (and whether its CUDA
    build is what a CUDA tensor would use), numba, perception and its git commit."""
    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "perception": perception.__version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_available": cuda,
        "gpu": None,
        "gpu_memory_gib": None,
        "gpu_capability": None,
        "numba": numba.__version__,
        "spconv": _distribution("spconv"),
        "cumm": _distribution("cumm"),
        "spconv_cuda_build": _spconv_cuda_build(),
        "spconv_cuda_in_use": spconv_cuda_available(),
        "spconv_allow_tf32": _spconv_allow_tf32(),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["gpu_capability"] = f"{props.major}.{props.minor}"
    return env


def format_environment(env: dict[str, Any]) -> str:
    """The environment as ``key: value`` lines."""
    width = max(len(k) for k in env)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in env.items())


# ------------------------------------------------------------------------------------------------------
# running


def _message(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__


def _repeats(options: Options, device: torch.device) -> int:
    """Timed runs after the first: none for the CPU in quick mode (its first run is timed)."""
    if device.type == "cpu":
        return 0 if options.quick else 2
    return 2 if options.quick else 5


def _run(case: Case, device: torch.device, options: Options) -> tuple[dict[str, Any], float]:
    """The first run's outputs and the median seconds of the timed runs (the first's when none)."""
    outputs, seconds = case.run(device)
    times = [case.run(device)[1] for _ in range(_repeats(options, device))]
    return outputs, statistics.median(times) if times else seconds


def run_check(spec: CheckSpec, options: Options) -> CheckResult:
    """Build one check's inputs, run it on the CPU and (when asked) on ``options.second``, compare.

    Nothing raises: an error at any stage fails the check with its message (and the traceback in
    ``detail``); a check that cannot run on the second device is a failure, not a skip.
    """
    result = CheckResult(spec.name, spec.group, spec.what)
    stage = "inputs"
    try:
        case = spec.build(options)
        result.inputs = case.inputs
        stage = "cpu"
        expected, seconds = _run(case, torch.device("cpu"), options)
        result.cpu_ms = 1e3 * seconds
        if options.second is None:
            return result
        second = torch.device(options.second)
        stage = options.second
        with tensor_paths(second.type == "cpu"):
            got, seconds = _run(case, second, options)
        result.second_ms = 1e3 * seconds
        if options.perturb is not None and options.perturb in spec.name:
            got = perturb_outputs(got)
        stage = "compare"
        result.comparisons = compare_outputs(expected, got, case.rules_for(expected))
    except Exception as err:
        result.error = f"{stage}: {_message(err)}"
        result.detail = traceback.format_exc()
    finally:
        if options.second == "cuda":
            torch.cuda.empty_cache()
    return result


def speed_setups(options: Options, device: torch.device) -> SpeedSetup | None:
    """How much to time on ``device``: Waymo-sized frames; on the CPU one frame and one step, in full
    mode only (a Waymo-sized training step takes tens of seconds on 2 cores: None in quick mode)."""
    if device.type == "cpu":
        return None if options.quick else SpeedSetup(frames=1, points=WAYMO_POINTS, steps=1, warmup=0)
    if options.quick:
        return SpeedSetup(
            frames=2, points=WAYMO_POINTS, steps=3, warmup=1, precisions=("float32", "bf16-mixed")
        )
    return SpeedSetup(frames=4, points=WAYMO_POINTS, steps=10, warmup=3, precisions=("float32", "bf16-mixed"))


def run_checks(
    options: Options, checks: Sequence[CheckSpec] | None = None, log: Callable[[str], None] | None = None
) -> Report:
    """Run ``checks`` (default :func:`all_checks` filtered by ``options.only``) and the timings.

    The comparisons run with TF32 off (:func:`~perception.gpu_check.core.strict_float32`); the timings
    with PyTorch's defaults. ``log`` gets one line per finished check (progress).
    """
    start = time.perf_counter()
    specs = select_checks(checks if checks is not None else all_checks(), options.only)
    report = Report(options, environment(), [], [])
    with strict_float32():
        for spec in specs:
            result = run_check(spec, options)
            report.checks.append(result)
            if log is not None:
                log(_progress(result, options))
    if options.speed:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if options.second == "cuda" else [])
        for device in devices:
            setup = speed_setups(options, device)
            if setup is None:
                if log is not None:
                    log(f"speed {device.type}: not timed in quick mode")
                continue
            rows = detector_speed(device, setup, seed=options.seed)
            report.speed.extend(rows)
            if log is not None:
                for r in rows:
                    log(f"speed {r.device} {r.precision}: " + (r.error or "done"))
    report.seconds = time.perf_counter() - start
    return report


def _progress(result: CheckResult, options: Options) -> str:
    times = f"cpu {result.cpu_ms:.0f} ms" if result.cpu_ms is not None else "cpu -"
    if options.second is not None and result.second_ms is not None:
        times += f", {options.second} {result.second_ms:.0f} ms"
    line = f"{result.name}: {result.status} ({times})"
    return line + (f" {result.error}" if result.error else "")


# ------------------------------------------------------------------------------------------------------
# output


def _number(x: float | None, fmt: str = ".1e") -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return "inf"
    return format(x, fmt)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def format_report(report: Report, with_environment: bool = True) -> str:
    """The report as text: the environment (unless ``with_environment`` is False), one table row per
    output of each check (CPU ms, second device ms, max abs / rel difference, tolerance, result), the
    timings, and the verdict."""
    second = report.second
    lines = ["environment:", format_environment(report.environment), ""] if with_environment else []
    header = [
        "check",
        "output",
        "CPU ms",
        "CPU2 ms" if second == "cpu" else "GPU ms",
        "max abs",
        "max rel",
        "tol",
        "result",
    ]
    rows: list[list[str]] = []
    for c in report.checks:
        if c.error:
            rows.append([c.name, "-", _ms(c.cpu_ms), _ms(c.second_ms), "-", "-", "-", f"FAILED: {c.error}"])
            continue
        if not c.comparisons:
            rows.append([c.name, "(not compared)", _ms(c.cpu_ms), "-", "-", "-", "-", c.status])
            continue
        for i, cmp in enumerate(c.comparisons):
            verdict = "pass" if cmp.passed else "FAILED" + (f": {cmp.note}" if cmp.note else "")
            if cmp.passed and cmp.note and cmp.rule == "kept_boxes":
                verdict += f" ({cmp.note})"
            rows.append(
                [
                    c.name if i == 0 else "",
                    cmp.output,
                    _ms(c.cpu_ms) if i == 0 else "",
                    _ms(c.second_ms) if i == 0 else "",
                    _number(cmp.max_abs),
                    _number(cmp.max_rel),
                    f"{cmp.tolerance:g}",
                    verdict,
                ]
            )
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [r[k].ljust(widths[k]) if k < 2 else r[k].rjust(widths[k]) for k in range(len(widths))]
        lines.append("  ".join(cells) + "  " + r[-1])
    if report.options.speed and not report.speed:
        lines += ["", "detector timings: none (no GPU, and the CPU is timed in full mode only)"]
    if report.speed:
        lines += ["", f"detector timings ({report.speed[0].config}):"]
        for s in report.speed:
            what = f"  {s.device:<4} {s.precision:<10} {s.frames} × {s.points_per_frame:,} points, {s.steps} steps"
            if s.error:
                lines.append(f"{what}: FAILED: {s.error}")
                continue
            peak = ""
            if s.train_peak_mib is not None:
                peak = (
                    f"; peak memory train {s.train_peak_mib:,.0f} MiB, inference {s.infer_peak_mib:,.0f} MiB"
                )
            lines.append(
                f"{what}: training {s.train_fps:.2f} frames/s, inference {s.infer_fps:.2f} frames/s{peak}"
            )
    lines.append("")
    lines.append(verdict_line(report))
    return "\n".join(lines)


def verdict_line(report: Report) -> str:
    """The last line: the GPU path's verdict, or :data:`NO_GPU`."""
    failed = [c.name for c in report.checks if not c.passed] + [
        f"speed {s.device} {s.precision}" for s in report.speed if s.error
    ]
    took = f"{report.seconds:.0f} s"
    n = len(report.checks)
    checks = f"{n} check{'' if n == 1 else 's'}"
    if failed:
        return f"GPU check: FAILED ({', '.join(failed)}) in {took}"
    if report.second is None:
        return f"{NO_GPU} ({checks} ran on the CPU in {took})"
    against = "the GPU" if report.second == "cuda" else "the CPU's tensor paths"
    return f"GPU check: PASS — {checks}, the CPU against {against}, in {took}"


def write_json(report: Report, path: Path) -> None:
    """Write ``report.to_dict()`` to ``path`` atomically: a temporary file beside it, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_dict(), indent=1) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
