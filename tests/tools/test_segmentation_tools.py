"""tools/train.py and tools/eval.py with a segmentation config (TaskCLI): a tiny fit, its checkpoint
evaluated into SemanticKITTI submission files and metrics.json, and the one-line errors (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from perception.cli import main as train_main
from perception.eval.segmentation import main as segmentation_cli

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_eval_seg", REPO / "tools" / "eval.py")
eval_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_tool)

TINY_SET = '{"frames": 6, "sequences": 3, "seed": 5, "num_beams": 4, "azimuth_step_deg": 2.0}'
TINY_MODEL = [
    "--model.init_args.backbone.init_args.channels", "[8,16]",
    "--model.init_args.backbone.init_args.enc_blocks", "[1,1]",
    "--model.init_args.backbone.init_args.strides", "[2]",
    "--model.init_args.backbone.init_args.dec_blocks", "[1]",
    "--model.init_args.backbone.init_args.out_channels", "8",
    "--model.init_args.backbone.init_args.grid_size", "0.5",
]  # fmt: skip


def _train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", "p2p_seg_synthetic.yaml", "--data.init_args.root", str(root),
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2", *TINY_MODEL,
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.accelerator", "cpu",
            "--trainer.default_root_dir", str(out), *extra]  # fmt: skip


# ------------------------------------------------------------------------------------- fast (< 10 s)


def test_mismatched_label_maps_exit_2_naming_both_keys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # LightningCLI reads it too
    args = _train_args(tmp_path / "data", tmp_path / "out", "--data.init_args.label_map", "semantic-kitti",
                       "--data.init_args.generate", "false", "--trainer.logger", "false")  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        train_main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train: error: "), err
    assert "model.init_args.label_map (synthetic)" in err[0]
    assert "data.init_args.label_map (semantic-kitti)" in err[0]
    assert not (tmp_path / "data").exists()  # nothing generated, nothing trained


def test_missing_data_root_with_generation_off_exits_2_saying_where_data_goes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # LightningCLI reads it too
    missing = tmp_path / "data" / "semantickitti"
    args = _train_args(
        missing, tmp_path / "out", "--data.init_args.generate", "false", "--trainer.logger", "false"
    )
    with pytest.raises(SystemExit) as exit_:
        train_main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train: error: "), err
    assert str(missing / "sequences") in err[0] and "no SemanticKITTI data here" in err[0]
    assert "docs/segmentation_data.md" in err[0] and "Traceback" not in err[0]
    assert not missing.exists()


def test_eval_of_a_segmentation_checkpoint_without_data_says_where_data_goes(tmp_path, capsys):
    missing = tmp_path / "semantickitti"
    argv = [
        "--ckpt",
        str(tmp_path / "x.ckpt"),
        "--config",
        "p2p_seg_synthetic.yaml",
        "--data-root",
        str(missing),
    ]
    assert eval_tool.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eval: error: "), err
    assert "no SemanticKITTI data here" in err[0] and "docs/segmentation_data.md" in err[0]


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, last.ckpt) of a 2-step fit of p2p_seg_synthetic (tiny backbone) on a tiny synthetic
    set that the data module generates (sequences 00-02, one of them val)."""
    tmp = tmp_path_factory.mktemp("seg_e2e")
    data, out = tmp / "data", tmp / "run"
    cmd = [sys.executable, str(REPO / "tools/train.py"),
           *_train_args(data, out, "--data.init_args.synthetic", TINY_SET,
                        "--trainer.logger.init_args.save_dir", str(out))]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True, cwd=tmp)
    return data, out / "task" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_train_writes_a_checkpoint_and_config_then_eval_scores_the_written_files(trained_run, capsys):
    data, ckpt = trained_run
    run = ckpt.parent.parent
    assert ckpt.is_file() and (run / "config.yaml").is_file() and (data / "synthetic.json").is_file()
    assert "val/mIoU" in (run / "metrics.csv").read_text().splitlines()[0]
    # the config saved beside the run, the default split (val), the default output folder
    argv = ["--ckpt", str(ckpt), "--data-root", str(data), "--trainer.accelerator", "cpu"]
    assert eval_tool.main(argv) == 0
    out = run / "eval" / "val"
    val = json.loads((data / "synthetic.json").read_text())["splits"]["val"]
    written = sorted(p.relative_to(out).as_posix() for p in out.glob("sequences/*/predictions/*.label"))
    scans = sorted(p.name for s in val for p in (data / "sequences" / s / "velodyne").glob("*.bin"))
    assert len(written) == len(scans) > 0 and all(w.split("/")[1] in val for w in written)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"mIoU", "IoU", "accuracy"} and len(metrics["IoU"]) == 12
    printed = capsys.readouterr().out
    assert "mIoU" in printed and f"{len(scans)} prediction files" in printed
    # the same numbers as the command line scores from the written files
    cli_json = out / "cli.json"
    assert segmentation_cli([str(data), str(out), "--label-map", "synthetic", "--json", str(cli_json)]) == 0
    assert json.loads(cli_json.read_text()) == metrics

    # --sequences: every scan of those, into their own folder; stale files of another run are removed
    other = out.parent / "mine"
    stale = other / "sequences" / "09" / "predictions" / "000000.label"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0\0\0\0")
    argv = ["--ckpt", str(ckpt), "--data-root", str(data), "--sequences", "0", "1", "--out", str(other),
            "--trainer.accelerator", "cpu", "--batch-size", "3"]  # fmt: skip
    assert eval_tool.main(argv) == 0
    assert {p.parent.parent.name for p in other.glob("sequences/*/predictions/*.label")} == {"00", "01"}
    assert not stale.exists()
    assert set(json.loads((other / "metrics.json").read_text())) == {"mIoU", "IoU", "accuracy"}
    # a sequence without labels: predictions only, no metrics.json
    capsys.readouterr()
    labels = data / "sequences" / "00" / "labels"
    labels.rename(labels.with_name("labels.hidden"))
    argv = ["--ckpt", str(ckpt), "--data-root", str(data), "--sequences", "00", "--out", str(other),
            "--trainer.accelerator", "cpu"]  # fmt: skip
    assert eval_tool.main(argv) == 0
    assert {p.parent.parent.name for p in other.glob("sequences/*/predictions/*.label")} == {"00"}
    assert not (other / "metrics.json").exists() and "predictions only" in capsys.readouterr().out
