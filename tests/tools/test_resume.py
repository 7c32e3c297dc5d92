"""Exact resume: a fit SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends with the weights of
an uninterrupted run; plus the pieces (random states, finding the last checkpoint) on their own."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.data.synthetic import write_dataset
from perception.tasks.resume import rng_state, set_rng_state

REPO = Path(__file__).resolve().parents[2]


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)  # noqa: NPY002
    torch.save({"rng": rng_state()}, tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.manual_seed(9), np.random.seed(9), random.seed(9)  # noqa: NPY002
    set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def _fit(data: Path, out: Path, *extra: str) -> list[str]:
    # PVTransformer with the refinement stage: its box jitter draws from the global random state
    return [sys.executable, str(REPO / "tools/train.py"), "--config", "pvt_synthetic.yaml",
            "--data.root", str(data), "--data.database", str(data / "gt_database"), "--data.num_workers", "0",
            "--data.batch_size", "2", "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1",
            "--step_checkpoint.every_n_train_steps", "2", "--trainer.logger.init_args.save_dir", str(out),
            *extra]  # fmt: skip


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, frames=12, seed=3)  # 10 training frames: 5 steps an epoch at batch size 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(_fit(data, whole), check=True, timeout=600, capture_output=True, env=env)
    reference = _weights(whole / "detection" / "version_0" / "checkpoints" / "last.ckpt")

    killed = tmp_path / "killed"
    last = killed / "detection" / "version_0" / "checkpoints" / "last.ckpt"
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen(_fit(data, killed), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # the first step checkpoint (step 2 of 5) is on disk
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] % 5 != 0, "the kill must come mid-epoch"
    assert saved["DetectionDataModule"]["batches"] == saved["global_step"] % 5

    done = subprocess.run(
        _fit(data, killed, "--ckpt_path", "last"), timeout=600, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from" in done.stdout + done.stderr and str(last) in done.stdout + done.stderr
    resumed = _weights(killed / "detection" / "version_1" / "checkpoints" / "last.ckpt")
    assert resumed.keys() == reference.keys()
    differ = [k for k in reference if not torch.equal(reference[k], resumed[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:5]}"


def test_last_means_the_newest_last_checkpoint_of_any_version_or_slurms(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from perception.tasks.resume import StepCheckpoint, find_last_checkpoint

    trainer = L.Trainer(
        logger=CSVLogger(tmp_path, name="task"), default_root_dir=tmp_path, callbacks=[StepCheckpoint(5)]
    )
    assert find_last_checkpoint(trainer) is None
    older = tmp_path / "task" / "version_0" / "checkpoints" / "last.ckpt"
    newer = tmp_path / "task" / "version_1" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((older, newer)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, ns=(10**18 + i, 10**18 + i))
    assert find_last_checkpoint(trainer) == newer
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # written by Lightning's SLURM plug-in at the time-limit warning
    hpc.write_bytes(b"x")
    os.utime(hpc, ns=(10**18 + 5, 10**18 + 5))
    assert find_last_checkpoint(trainer) == hpc
    with pytest.raises(ValueError, match=">= 0"):
        StepCheckpoint(-1)


def test_validate_with_ckpt_path_last_and_no_checkpoint_exits_2_saying_so(tmp_path, capsys):
    from perception.cli import main

    argv = ["validate", "--config", "pointpillars_synthetic.yaml", "--data.root", str(tmp_path / "none"),
            "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.default_root_dir", str(tmp_path),
            "--ckpt_path", "last"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "--ckpt_path last: no last.ckpt under" in capsys.readouterr().err
