"""perception.inference: config lookup, weights-only checkpoints, a rebuilt task, predictions over frame ids."""

from __future__ import annotations

import argparse
import sys

import pytest
import torch
import yaml

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


# ------------------------------------------------------------------------------ segmentation (TaskCLI)

TINY_P2P = [
    "--model.init_args.backbone.init_args.channels", "[8,16]",
    "--model.init_args.backbone.init_args.enc_blocks", "[1,1]",
    "--model.init_args.backbone.init_args.strides", "[2]",
    "--model.init_args.backbone.init_args.dec_blocks", "[1]",
    "--model.init_args.backbone.init_args.out_channels", "8",
    "--model.init_args.backbone.init_args.grid_size", "0.5",
]  # fmt: skip


@pytest.fixture(scope="module")
def segmentation_run(tmp_path_factory):
    """A run folder as TaskCLI leaves it: ``RUN/config.yaml`` (tiny p2p_seg_synthetic) and
    ``RUN/checkpoints/last.ckpt`` (perturbed weights, the task's hyperparameters); the tiny data root."""
    from perception.cli import TaskCLI
    from perception.data.synthetic.semantic_writer import SyntheticSegmentation

    tmp = tmp_path_factory.mktemp("seg_inference")
    data = tmp / "data"
    SyntheticSegmentation(frames=4, sequences=2, seed=1, num_beams=4, azimuth_step_deg=2.0).write(data)
    config = yaml.safe_load((CONFIG_DIR / "p2p_seg_synthetic.yaml").read_text())
    backbone = config["model"]["init_args"]["backbone"]["init_args"]
    backbone.update(
        channels=[8, 16], strides=[2], enc_blocks=[1, 1], dec_blocks=[1], out_channels=8, grid_size=0.5
    )
    config["data"]["init_args"].update(root=str(tmp / "elsewhere"), num_workers=0)
    config["ckpt_path"] = None  # a saved fit config's extra keys are dropped
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    sys_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        cli = TaskCLI(run=False, args=["--config", str(CONFIG_DIR / "p2p_seg_synthetic.yaml"), *TINY_P2P])
    finally:
        sys.argv = sys_argv
    torch.manual_seed(2)
    with torch.no_grad():
        for p in cli.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    ckpt = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": cli.model.state_dict(), "hyper_parameters": dict(cli.model.hparams)}, ckpt)
    return ckpt, cli.model, data


def test_load_task_rebuilds_a_segmentation_run_from_its_saved_config(segmentation_run):
    from perception.inference import config_dataset, config_kind
    from perception.tasks.segmentation import SegmentationTask

    ckpt, task, data = segmentation_run
    config = find_config(ckpt)
    assert config_kind(config) == "segmentation" and config_dataset(config) == "semantickitti"
    assert config_kind(CONFIG_DIR / "pointpillars_synthetic.yaml") == "detection"
    loaded = load_task(ckpt, None, ["--trainer.accelerator", "cpu"], data_root=data, batch_size=3)
    assert isinstance(loaded.task, SegmentationTask) and not loaded.task.training
    assert loaded.kind == "segmentation" and loaded.dataset == "semantickitti"
    assert loaded.datamodule.root == str(data) and loaded.datamodule.val_batch_size == 3
    assert loaded.datamodule.synthetic is None  # loading never generates data
    for (k, a), (_, b) in zip(task.state_dict().items(), loaded.task.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # another class map: refused by name, before the weights (whose shapes differ too) are tried
    with pytest.raises(InferenceError, match="class map 'semantic-kitti'"):
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": {"label_map": "semantic-kitti"}},
                   ckpt.with_name("kitti.ckpt"))  # fmt: skip
        load_task(ckpt.with_name("kitti.ckpt"))
    with pytest.raises(InferenceError, match="does not fit the model"):
        load_task(ckpt, "p2p_seg_synthetic")  # the full-size backbone


def test_predictor_predicts_every_scan_of_the_sequences_asked_for(segmentation_run):
    ckpt, _, data = segmentation_run
    loaded = load_task(ckpt, None, ["--trainer.accelerator", "cpu"], data_root=data)
    predictor = Predictor(loaded)
    both = predictor.run(sequences=["0", "01"])
    assert predictor.frames().frame_ids == ["00/000000", "00/000001", "01/000000", "01/000001"]
    for pred, i in zip(both, range(4), strict=True):
        assert pred.dtype == torch.int64 and len(pred) == predictor.frames().load(i).record.num_points
        assert 1 <= int(pred.min()) and int(pred.max()) <= loaded.task.label_map.num_classes
    (val_sequence,) = loaded.datamodule.sequences("val")  # from the root's synthetic.json
    val = predictor.run(split="val")
    assert predictor.frames().frame_ids == [f"{val_sequence}/000000", f"{val_sequence}/000001"]
    start = 2 * int(val_sequence)
    assert all(torch.equal(a, b) for a, b in zip(val, both[start : start + 2], strict=True))
    with pytest.raises(InferenceError, match="whole sequences"):
        predictor.run(["00/000000"])
    with pytest.raises(FileNotFoundError, match="no SemanticKITTI data here"):
        predictor.run(sequences=["07"])
