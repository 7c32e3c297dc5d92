"""tools/eval.py: checkpoint loading (weights_only=True), frame selection, result files and metrics.json."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception.cli import CONFIG_DIR, DetectionCLI
from perception.data.kitti import read_split, write_split
from perception.data.synthetic import write_dataset
from perception.eval.kitti import DEFAULT_CLASSES, result_keys

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_eval", REPO / "tools" / "eval.py")
eval_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_tool)


def _result_fields(folder: Path) -> set[int]:
    return {len(line.split()) for p in folder.glob("*.txt") for line in p.read_text().splitlines()}


def _untrained_checkpoint(config: str, path: Path, monkeypatch) -> Path:
    """A bare state dict of the config's task with its initial weights (what eval.py also accepts)."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    cli = DetectionCLI(run=False, args=["--config", str(CONFIG_DIR / config), "--trainer.logger", "false"])
    torch.save(cli.model.state_dict(), path)
    return path


# ------------------------------------------------------------------------------------- fast (< 10 s)


def test_missing_data_root_says_where_data_goes(tmp_path, capsys):
    code = eval_tool.main(["--ckpt", str(tmp_path / "x.ckpt"), "--data-root", str(tmp_path / "data/kitti")])
    err = capsys.readouterr().err
    assert code == 2
    assert "no dataset here" in err and "data/README.md" in err and "make_synthetic.py" in err


def test_frames_from_split_file_velodyne_or_list(kitti_root, capsys):
    assert eval_tool.select_frames(kitti_root, "val", "training", None) == ["000000", "000001", "000002"]
    assert "using all 3 scans" in capsys.readouterr().err  # no ImageSets: every scan
    assert eval_tool.select_frames(kitti_root, "val", "training", ["1", "000002"]) == ["1", "000002"]
    with pytest.raises(eval_tool.EvalError, match="no dataset here"):
        eval_tool.select_frames(kitti_root, "val", "testing", None)


def _truncated_copy(kitti_root: Path, root: Path) -> Path:
    """A KITTI root whose 000001 scan lost its last 10 bytes (a broken download)."""
    for folder in ("velodyne", "calib", "label_2"):
        shutil.copytree(kitti_root / "training" / folder, root / "training" / folder)
    scan = root / "training" / "velodyne" / "000001.bin"
    scan.write_bytes(scan.read_bytes()[:-10])
    return scan


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_truncated_scan_ends_with_one_line_naming_the_users_file(
    tmp_path, kitti_root, monkeypatch, capsys, workers
):
    ckpt = _untrained_checkpoint("pointpillars_synthetic.yaml", tmp_path / "init.pt", monkeypatch)
    scan = _truncated_copy(kitti_root, tmp_path / "kitti")
    argv = ["--ckpt", str(ckpt), "--config", "pointpillars_synthetic.yaml", "--data-root",
            str(tmp_path / "kitti"), "--out", str(tmp_path / "out"), "--num-workers", workers,
            "--trainer.accelerator", "cpu"]  # fmt: skip
    assert eval_tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "using all 3 scans" in err[0]  # the only other line: no split file, every scan
    assert len(err) == 2 and err[1].startswith("eval: error: "), err
    assert str(scan) in err[1] and "multiple of 16" in err[1] and "Traceback" not in err[1]


def test_eval_untrained_pointpillars_kitti_on_real_frames(tmp_path, kitti_root, monkeypatch, capsys):
    ckpt = _untrained_checkpoint("pointpillars_kitti.yaml", tmp_path / "init.pt", monkeypatch)
    out = tmp_path / "eval"
    argv = ["--ckpt", str(ckpt), "--config", "pointpillars_kitti.yaml", "--data-root", str(kitti_root),
            "--frames", "000000", "000001", "--out", str(out), "--batch-size", "2", "--num-workers", "0",
            "--trainer.accelerator", "cpu", "--data.pin_memory", "false"]  # fmt: skip
    assert eval_tool.main(argv) == 0
    assert sorted(p.name for p in (out / "predictions").glob("*.txt")) == ["000000.txt", "000001.txt"]
    assert _result_fields(out / "predictions") == {16}
    assert set(json.loads((out / "metrics.json").read_text())) == set(result_keys(DEFAULT_CLASSES))
    assert "Car AP_R40:" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(synthetic data root, last.ckpt) of a 2-batch fit on 6 synthetic frames (2 of them val)."""
    tmp = tmp_path_factory.mktemp("eval_e2e")
    data, out = tmp / "synthetic", tmp / "run"
    write_dataset(data, frames=6, seed=3, val_fraction=0.34)
    cmd = [sys.executable, str(REPO / "tools/train.py"), "--config", "pointpillars_synthetic.yaml",
           "--data.root", str(data), "--data.database", str(data / "gt_database"), "--data.num_workers", "0",
           "--data.batch_size", "2", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
           "--trainer.limit_val_batches", "1", "--trainer.logger.init_args.save_dir", str(out),
           "--trainer.default_root_dir", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)
    return data, out / "detection" / "version_0" / "checkpoints" / "last.ckpt"


def _eval(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tools/eval.py"), *args]
    return subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)


@pytest.mark.slow
def test_eval_trained_checkpoint_on_synthetic_val(trained_run):
    data, ckpt = trained_run
    done = _eval("--ckpt", str(ckpt), "--data-root", str(data), "--batch-size", "2")  # config beside the run
    out = ckpt.parent.parent / "eval" / "val"
    val = read_split(data, "val")
    assert len(val) == 2
    assert sorted(p.stem for p in (out / "predictions").glob("*.txt")) == sorted(val)
    assert _result_fields(out / "predictions") <= {16}
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == set(result_keys(DEFAULT_CLASSES))
    assert all(v is None or 0.0 <= v <= 100.0 for v in metrics.values())
    assert "Car AP_R40:" in done.stdout and f"{len(val)} result files" in done.stdout
    assert (out / "config.yaml").is_file()


@pytest.mark.slow
def test_eval_trained_checkpoint_on_real_kitti_frames(trained_run, kitti_root, tmp_path):
    _, ckpt = trained_run
    out = tmp_path / "kitti"
    done = _eval("--ckpt", str(ckpt), "--data-root", str(kitti_root), "--out", str(out))
    assert "using all 3 scans" in done.stderr
    assert sorted(p.name for p in (out / "predictions").glob("*.txt")) == [
        "000000.txt", "000001.txt", "000002.txt",
    ]  # fmt: skip
    assert _result_fields(out / "predictions") <= {16}
    assert set(json.loads((out / "metrics.json").read_text())) == set(result_keys(DEFAULT_CLASSES))


@pytest.mark.slow
def test_eval_unlabelled_testing_folder_writes_predictions_only(trained_run, kitti_root, tmp_path):
    _, ckpt = trained_run
    root = tmp_path / "kitti"  # the real frames as a KITTI test set: no label_2
    (root / "testing").mkdir(parents=True)
    for folder in ("velodyne", "calib", "image_2"):
        shutil.copytree(kitti_root / "training" / folder, root / "testing" / folder)
    write_split(root, "test", ["000001", "000002"])
    out = tmp_path / "out"
    done = _eval("--ckpt", str(ckpt), "--data-root", str(root), "--split", "test", "--split-folder", "testing",
                 "--out", str(out), "--num-workers", "1")  # fmt: skip
    assert sorted(p.stem for p in (out / "predictions").glob("*.txt")) == ["000001", "000002"]
    assert not (out / "metrics.json").exists() and "predictions only" in done.stdout
