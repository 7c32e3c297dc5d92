"""tools/train.py: config resolution, and a tiny end-to-end fit through LightningCLI."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from perception.cli import CONFIG_DIR, resolve_config_args
from perception.data.synthetic import write_dataset

REPO = Path(__file__).resolve().parents[2]


def test_resolve_config_args_finds_bare_names_and_adds_fit():
    args = resolve_config_args(["--config", "pointpillars_synthetic.yaml", "--trainer.max_epochs", "1"])
    assert args[0] == "fit" and args[2] == str(CONFIG_DIR / "pointpillars_synthetic.yaml")
    assert resolve_config_args(["validate", "--config=pointpillars_synthetic"])[1] == (
        f"--config={CONFIG_DIR / 'pointpillars_synthetic.yaml'}"
    )
    with pytest.raises(FileNotFoundError, match="not found as a path nor in"):
        resolve_config_args(["--config", "no_such_config.yaml"])


@pytest.mark.slow
def test_train_pointpillars_synthetic_end_to_end(tmp_path):
    data = tmp_path / "synthetic"
    write_dataset(data, frames=8, seed=3)
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--config", "pointpillars_synthetic.yaml",
           "--data.root", str(data), "--data.database", str(data / "gt_database"), "--data.num_workers", "0",
           "--data.batch_size", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
           "--trainer.limit_val_batches", "1", "--trainer.logger.init_args.save_dir", str(out),
           "--trainer.default_root_dir", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)
    version = out / "detection" / "version_0"
    assert (version / "checkpoints" / "last.ckpt").stat().st_size > 1_000_000
    with open(version / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("val/loss") for row in rows)
    assert "val/Car_3d/moderate_R40" in rows[0]
    assert (data / "gt_database" / "index.json").is_file()  # built by prepare_data from the train split
    # `test` is a real subcommand: the evaluators on data.test_split (default: the val split)
    test = [sys.executable, str(REPO / "tools/train.py"), "test", "--config", "pointpillars_synthetic.yaml",
            "--data.root", str(data), "--data.database", "null", "--data.num_workers", "0",
            "--data.batch_size", "2", "--trainer.logger", "false",
            "--ckpt_path", str(version / "checkpoints" / "last.ckpt")]  # fmt: skip
    done = subprocess.run(test, check=True, timeout=600, capture_output=True, text=True)
    assert "test/Car_3d/moderate_R40" in done.stdout and "test/loss" in done.stdout


@pytest.mark.slow
def test_train_with_the_wandb_overlay_logs_3d_scenes_offline(tmp_path):
    """``--config wandb.yaml`` on top of a model config: an offline W&B run holding Object3D scenes."""
    import os

    import yaml

    data = tmp_path / "synthetic"
    write_dataset(data, frames=6, seed=4)
    out = tmp_path / "run"
    overlay = yaml.safe_load((CONFIG_DIR / "wandb.yaml").read_text())
    for logger in overlay["trainer"]["logger"]:
        logger["init_args"]["save_dir"] = str(out)
    (tmp_path / "wandb.yaml").write_text(yaml.safe_dump(overlay))
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--config", "pointpillars_synthetic.yaml",
           "--config", str(tmp_path / "wandb.yaml"),
           "--data.root", str(data), "--data.database", "null", "--data.num_workers", "0",
           "--data.batch_size", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
           "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(out)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env |= {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "NETRC": str(tmp_path / "no-netrc")}
    subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True, env=env)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(out.rglob("*"))[:20]
    scenes = list(runs[0].rglob("*.pts.json"))
    assert scenes, sorted(p.name for p in runs[0].rglob("*"))
    assert (out / "detection" / "version_0" / "metrics.csv").is_file()  # the CSV logger still writes


@pytest.mark.parametrize("config", ["pvt_waymo.yaml", "pvt_kitti.yaml"])
def test_train_without_data_says_where_it_goes_without_a_traceback(config, tmp_path):
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--config", config, "--trainer.logger", "false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "train: error:" in result.stderr
    expected = (
        "tools/convert_waymo.py --src data/waymo/raw/training" if "waymo" in config else "data/README.md"
    )
    assert expected in result.stderr
