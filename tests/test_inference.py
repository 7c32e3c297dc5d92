"""perception.inference: config lookup, weights-only checkpoints, a rebuilt task, predictions over frame ids."""

from __future__ import annotations

import argparse
import sys

import pytest
import torch

from perception.cli import CONFIG_DIR, DetectionCLI
from perception.inference import (
    InferenceError,
    Predictor,
    find_config,
    load_task,
    read_checkpoint,
    read_config,
)
from perception.structures import Detections


def test_config_is_found_beside_the_run_or_by_name(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    with pytest.raises(InferenceError, match="pass the training config"):
        find_config(ckpt, None)
    (tmp_path / "run" / "config.yaml").write_text("model: {}\n")
    assert find_config(ckpt, None) == tmp_path / "run" / "config.yaml"
    assert find_config(ckpt, "pvt_kitti") == CONFIG_DIR / "pvt_kitti.yaml"
    with pytest.raises(InferenceError, match="not found as a path nor in"):
        find_config(ckpt, "no_such.yaml")


def test_saved_fit_config_keys_are_dropped(tmp_path):
    saved = tmp_path / "saved.yaml"
    saved.write_text("seed_everything: 0\nmodel: {lr: 0.1}\nckpt_path: null\nweights_only: null\n")
    assert read_config(saved) == {"seed_everything": 0, "model": {"lr": 0.1}}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(InferenceError, match="expected a mapping"):
        read_config(tmp_path / "list.yaml")


def test_checkpoints_load_with_weights_only(tmp_path):
    weights = {"model.encoder.w": torch.ones(2)}
    torch.save({"state_dict": weights, "hyper_parameters": {"class_names": ["Car"]}}, tmp_path / "a.ckpt")
    state, hparams = read_checkpoint(tmp_path / "a.ckpt")
    assert list(state) == ["model.encoder.w"] and hparams == {"class_names": ["Car"]}
    # a torch.compile-d model's keys are unwrapped; a bare state dict works too
    torch.save({"model._orig_mod.encoder.w": torch.ones(2)}, tmp_path / "b.pt")
    assert list(read_checkpoint(tmp_path / "b.pt")[0]) == ["model.encoder.w"]
    # pickled objects are refused with a clear message
    torch.save({"state_dict": weights, "hyper_parameters": argparse.Namespace(a=1)}, tmp_path / "c.ckpt")
    with pytest.raises(InferenceError, match=r"weights_only=True"):
        read_checkpoint(tmp_path / "c.ckpt")
    with pytest.raises(InferenceError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A bare state dict of pointpillars_synthetic's task with perturbed weights, and the task."""
    sys_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = DetectionCLI(run=False, args=["--config", str(CONFIG_DIR / "pointpillars_synthetic.yaml")])
    finally:
        sys.argv = sys_argv
    torch.manual_seed(1)
    with torch.no_grad():
        for p in cli.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "task.pt"
    torch.save(cli.model.state_dict(), path)
    return path, cli.model


def test_load_task_puts_the_checkpoint_weights_in(untrained):
    path, task = untrained
    loaded = load_task(path, "pointpillars_synthetic", ["--trainer.accelerator", "cpu"])
    assert not loaded.task.training and loaded.dataset == "kitti" and loaded.checkpoint == path
    for (k, a), (_, b) in zip(task.state_dict().items(), loaded.task.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(InferenceError, match="trained for classes"):
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": {"class_names": ["Car"]}},
                   path.with_name("car.ckpt"))  # fmt: skip
        load_task(path.with_name("car.ckpt"), "pointpillars_synthetic")
    with pytest.raises(InferenceError, match="does not fit the model"):
        load_task(path, "pvt_synthetic")


def test_predictor_predicts_exactly_the_frames_asked_for(untrained, kitti_root):
    path, _ = untrained
    loaded = load_task(path, "pointpillars_synthetic", ["--trainer.accelerator", "cpu"], data_root=kitti_root)
    predictor = Predictor(loaded)
    both = predictor.run(["000002", "0"], split_folder="training")
    assert predictor.frames().frame_ids == ["000002", "000000"]
    assert len(both) == 2 and all(isinstance(d, Detections) for d in both)
    alone = predictor.run(["000000"], split_folder="training")
    torch.testing.assert_close(alone[0].boxes, both[1].boxes)
    torch.testing.assert_close(alone[0].scores, both[1].scores)
    with pytest.raises(FileNotFoundError, match="000099"):
        predictor.run(["000099"], split_folder="training")
