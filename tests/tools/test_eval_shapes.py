"""The shape configs and tools: every pointnet_* config builds and trains a step, the CLI refuses a task
and data that disagree on classes or parts, and (slow) a tiny tools/train.py-style fit evaluated by
tools/eval.py into prediction files, ground truth and metrics.json that the metric's CLI reproduces."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from perception.cli import CONFIG_DIR, TaskCLI
from perception.cli import main as train_main
from perception.eval.shapes import main as shapes_cli

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_eval_shapes", REPO / "tools" / "eval.py")
eval_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_tool)

SHAPE_CONFIGS = sorted(CONFIG_DIR.glob("pointnet_*.yaml"))
TINY_NET = ["local_channels", "[8,8]", "global_channels", "[8,16]", "tnet_channels", "[8,16]",
            "tnet_fc_channels", "[16]", "head_channels", "[16]"]  # fmt: skip


def _tiny_args(config: str, out: Path, *extra: str) -> list[str]:
    """A fit of 2 steps of 8 shapes of 64 points with a PointNet of tiny widths, no workers."""
    net = [f"--model.init_args.model.init_args.{v}" if i % 2 == 0 else v for i, v in enumerate(TINY_NET)]
    return ["--config", config, *net,
            "--data.init_args.num_train", "16", "--data.init_args.num_val", "8",
            "--data.init_args.num_points", "64", "--data.init_args.batch_size", "8",
            "--data.init_args.num_workers", "0", "--trainer.max_steps", "2", "--trainer.accelerator", "cpu",
            "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out),
            *extra]  # fmt: skip


def _cli(args: list[str], monkeypatch) -> TaskCLI:
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # LightningCLI reads it too
    return TaskCLI(run=False, args=[*args, "--trainer.logger", "false"])


# ------------------------------------------------------------------------------------------------- fast


def test_the_four_shape_configs_exist_with_the_papers_settings():
    names = {p.name for p in SHAPE_CONFIGS}
    assert names == {"pointnet_cls_synthetic.yaml", "pointnet_cls_modelnet40.yaml",
                     "pointnet_partseg_synthetic.yaml", "pointnet_partseg_shapenet.yaml"}  # fmt: skip
    for path in SHAPE_CONFIGS:
        config = yaml.safe_load(path.read_text())
        assert config["seed_everything"] == 0 and config["model"]["init_args"]["lr"] == 0.001
        assert "TODO" not in path.read_text()  # each header says what was measured (or that it is untrained)
    modelnet = yaml.safe_load((CONFIG_DIR / "pointnet_cls_modelnet40.yaml").read_text())
    task, data = modelnet["model"]["init_args"], modelnet["data"]["init_args"]
    assert (task["scheduler"], task["step_epochs"], task["step_gamma"]) == ("step", 20, 0.7)
    assert (data["dataset"], data["num_points"], data["batch_size"]) == ("modelnet40_h5", 1024, 32)
    assert modelnet["trainer"]["max_epochs"] == 250
    shapenet = yaml.safe_load((CONFIG_DIR / "pointnet_partseg_shapenet.yaml").read_text())["data"][
        "init_args"
    ]
    assert (shapenet["num_points"], shapenet["use_normals"]) == (2048, False)


@pytest.mark.parametrize("config", SHAPE_CONFIGS, ids=[p.stem for p in SHAPE_CONFIGS])
def test_shape_config_builds_and_trains_one_step(config, monkeypatch):
    """The task's classes (taxonomy) are the data's; one loss and backward on two random shapes."""
    cli = _cli(["--config", str(config)], monkeypatch)
    task, data = cli.model, cli.datamodule
    from perception.structures.shapes import PointSet, collate_point_sets

    torch.manual_seed(0)
    points = torch.randn(2, 64, 3).numpy()
    if hasattr(data, "taxonomy"):
        assert task.taxonomy == data.taxonomy and task.model.num_parts == data.num_parts
        parts = [torch.full((64,), data.taxonomy.parts[k][0], dtype=torch.int64).numpy() for k in (0, 1)]
        shapes = [PointSet(shape_id=str(k), points=points[k], label=k, part_labels=parts[k]) for k in (0, 1)]
    else:
        assert task.class_names == list(data.class_names) and task.model.num_classes == data.num_classes
        shapes = [PointSet(shape_id=str(k), points=points[k], label=k) for k in (0, 1)]
    batch = collate_point_sets(shapes)
    args = (batch.points,) if not hasattr(data, "taxonomy") else (batch.points, batch.labels)
    losses = task.loss(*task._with_aux(*args), batch)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and "orthogonality" in losses
    task.eval()
    with torch.no_grad():
        assert len(task.predict_step(batch, 0)) == 2


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        ("pointnet_cls_synthetic.yaml", "modelnet40_off",
         r"model\.init_args\.class_names \['box', .* and the classes of data\.init_args\.dataset \(modelnet40_off\)"),
        ("pointnet_partseg_synthetic.yaml", "shapenet_part",
         r"model\.init_args\.taxonomy \(synthetic_parts\) and the taxonomy of data\.init_args\.dataset "
         r"\(shapenet_part: shapenet_part\)"),
    ],
)  # fmt: skip
def test_task_and_data_that_disagree_exit_2_naming_both_keys(
    config, override, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    with pytest.raises(SystemExit) as exit_:
        train_main(
            _tiny_args(
                config, tmp_path / "out", "--data.init_args.dataset", override, "--trainer.logger", "false"
            )
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train: error: "), err
    assert __import__("re").search(message, err[0]), err[0]
    assert not (tmp_path / "out").exists()  # nothing trained


def test_eval_needs_a_data_root_for_other_tasks_but_not_for_shapes(tmp_path, capsys):
    argv = ["--ckpt", str(tmp_path / "x.ckpt"), "--config", "pvt_synthetic.yaml"]
    assert eval_tool.main(argv) == 2
    assert "--data-root is required" in capsys.readouterr().err
    argv = ["--ckpt", str(tmp_path / "x.ckpt"), "--config", "pointnet_cls_synthetic.yaml"]
    assert eval_tool.main(argv) == 2  # no data root asked for: the missing checkpoint is the error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.ckpt: checkpoint not found" in err[0]
    argv += ["--frames", "1"]
    assert eval_tool.main(argv) == 2 and "--frames and --sequences do not apply" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """last.ckpt of a 2-step fit of each synthetic shape config (tiny widths, 16 training shapes)."""
    tmp = tmp_path_factory.mktemp("shape_runs")
    runs = {}
    argv0 = sys.argv
    try:
        for name in ("pointnet_cls_synthetic.yaml", "pointnet_partseg_synthetic.yaml"):
            out = tmp / Path(name).stem
            sys.argv = [argv0[0]]
            train_main(_tiny_args(name, out))
            runs[name] = out / "task" / "version_0" / "checkpoints" / "last.ckpt"
    finally:
        sys.argv = argv0
    return runs


@pytest.mark.slow
def test_eval_of_a_classification_checkpoint_writes_csvs_and_the_metrics_the_cli_gives(trained_runs, capsys):
    ckpt = trained_runs["pointnet_cls_synthetic.yaml"]
    run = ckpt.parent.parent
    assert "val/overall_accuracy" in (run / "metrics.csv").read_text().splitlines()[0]
    assert eval_tool.main(["--ckpt", str(ckpt), "--trainer.accelerator", "cpu"]) == 0
    out = run / "eval" / "val"
    printed = capsys.readouterr().out
    assert "OA" in printed and "mAcc" in printed and "8 shapes" in printed
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "shape_id,predicted_class,score" and len(rows) == 9
    assert len((out / "ground_truth.csv").read_text().splitlines()) == 9
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"overall_accuracy", "mean_class_accuracy", "accuracy/box"} <= set(metrics) and len(metrics) == 16
    cli_json = out / "cli.json"
    args = [
        "classification",
        str(out / "ground_truth.csv"),
        str(out / "predictions.csv"),
        "--json",
        str(cli_json),
    ]
    assert shapes_cli([*args, "--classes", str(_names_file(out, metrics))]) == 0
    assert json.loads(cli_json.read_text()) == metrics


def _names_file(out: Path, metrics: dict) -> Path:
    path = out / "classes.txt"
    path.write_text("".join(k.split("/", 1)[1] + "\n" for k in metrics if k.startswith("accuracy/")))
    return path


@pytest.mark.slow
def test_eval_of_a_part_checkpoint_writes_part_files_and_refuses_another_taxonomy(
    trained_runs, capsys, tmp_path
):
    ckpt = trained_runs["pointnet_partseg_synthetic.yaml"]
    out = tmp_path / "eval"
    argv = ["--ckpt", str(ckpt), "--out", str(out), "--split", "test", "--trainer.accelerator", "cpu"]
    assert eval_tool.main(argv) == 0
    assert "instance mIoU" in capsys.readouterr().out
    predictions = sorted(p.relative_to(out / "predictions") for p in (out / "predictions").rglob("*.txt"))
    truth = sorted(p.relative_to(out / "ground_truth") for p in (out / "ground_truth").rglob("*.txt"))
    assert len(predictions) == 8 and predictions == truth
    assert len((out / "predictions" / predictions[0]).read_text().split()) == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"instance_mIoU", "class_mIoU", "accuracy", "mIoU/chair"} <= set(metrics)
    cli_json = out / "cli.json"
    args = ["parts", str(out / "ground_truth"), str(out / "predictions"), "--taxonomy", "synthetic_parts"]
    assert shapes_cli([*args, "--json", str(cli_json)]) == 0
    assert json.loads(cli_json.read_text()) == metrics
    # the checkpoint with a config of another taxonomy: refused before anything is predicted
    argv = ["--ckpt", str(ckpt), "--config", "pointnet_partseg_shapenet.yaml", "--out", str(tmp_path / "x")]
    assert eval_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "trained with the part taxonomy 'synthetic_parts'" in err and "'shapenet_part'" in err
