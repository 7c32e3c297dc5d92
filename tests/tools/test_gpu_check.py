"""tools/gpu_check.py and perception.gpu_check: the CPU half here, the comparison on CPU-vs-CPU runs.

Without a GPU the tool runs every check on the CPU, says the GPU path is unrun and exits 0. The
comparison itself is device-agnostic, so it is tested against the CPU as the second device (the
second run takes the pure-torch paths a GPU takes) and with a second run broken on purpose
(``--perturb``), which must fail with exit status 1.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.gpu_check import NO_GPU, KeptBoxes, Rule, compare_outputs, perturb_outputs
from perception.gpu_check.models import MODEL_CONFIGS
from perception.gpu_check.ops import OP_CHECKS
from perception.gpu_check.speed import SpeedSetup, detector_speed

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("perception_tools_gpu_check", REPO / "tools" / "gpu_check.py")
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

OPS = {
    "hilbert",
    "voxelize.hard",
    "voxelize.dynamic",
    "sparse_conv",
    "iou",
    "nms",
    "roi_points",
    "segment_attention",
}
STEMS = [Path(config).stem for _, config in MODEL_CONFIGS]
# cheap checks for the CPU-vs-CPU run of the default suite (the whole set: test_full_cpu_against_cpu)
CHEAP = ["hilbert", "voxelize", "sparse_conv", "iou", "nms", "roi_points", "segment_attention", "pointnet"]


def _run_tool(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the CPU half, whatever the machine has
    cmd = [sys.executable, str(REPO / "tools" / "gpu_check.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)


# ------------------------------------------------------------------------------------------------------
# the tool


def test_quick_without_a_gpu_runs_the_cpu_half_says_so_and_writes_json(tmp_path):
    out = tmp_path / "results" / "gpu_check.json"
    done = _run_tool("--quick", "--json", str(out), tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert NO_GPU in done.stdout
    assert "spconv_cuda_in_use" in done.stdout and "torch" in done.stdout  # the environment is printed
    report = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # atomic: no temporary file left
    assert report["gpu_path"] == "unrun" and report["second_device"] is None and report["passed"]
    assert report["mode"] == "quick" and report["speed"] == []
    names = [c["check"] for c in report["checks"]]
    assert OPS <= set(names)
    for stem in STEMS:
        assert f"train/{stem}" in names and f"infer/{stem}" in names
    assert {family for family, _ in MODEL_CONFIGS} == {"detection", "segmentation", "occupancy", "shapes"}
    for check in report["checks"]:
        assert check["status"] == "CPU ONLY" and check["error"] == "", check
        assert check["cpu_ms"] > 0 and check["second_ms"] is None
    env = report["environment"]
    assert env["cuda_available"] is False and env["perception"] and env["torch"] == torch.__version__


def test_cpu_against_cpu_agrees_on_every_output(tmp_path):
    out = tmp_path / "cpu.json"
    code = cli.main(["--quick", "--device", "cpu", "--no-speed", "--only", *CHEAP, "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["second_device"] == "cpu" and report["gpu_path"] == "unrun" and report["passed"]
    names = {c["check"] for c in report["checks"]}
    assert OPS <= names and "train/pointnet_cls_synthetic" in names
    for check in report["checks"]:
        assert check["status"] == "PASS" and check["outputs"], check
        for output in check["outputs"]:
            assert output["passed"], (check["check"], output)


@pytest.mark.parametrize("check", ["hilbert", "iou", "nms", "train/pointnet_cls"])
def test_a_perturbed_second_run_is_a_mismatch_with_status_1(tmp_path, check, capsys):
    out = tmp_path / "perturbed.json"
    code = cli.main(
        ["--quick", "--device", "cpu", "--no-speed", "--only", check, "--perturb", check, "--json", str(out)]
    )
    assert code == 1
    printed = capsys.readouterr().out
    assert "GPU check: FAILED" in printed and check in printed.splitlines()[-2]
    report = json.loads(out.read_text())
    assert not report["passed"]
    (result,) = [c for c in report["checks"] if c["check"].startswith(check)]
    assert result["status"] == "FAILED" and not any(o["passed"] for o in result["outputs"])


def test_only_the_perturbed_check_fails(tmp_path):
    out = tmp_path / "two.json"
    assert cli.main(["--quick", "--device", "cpu", "--no-speed", "--only", "hilbert", "iou", "--perturb", "iou", "--json", str(out)]) == 1  # fmt: skip
    status = {c["check"]: c["status"] for c in json.loads(out.read_text())["checks"]}
    assert status == {"hilbert": "PASS", "iou": "FAILED"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--only", "no_such_check"],
        ["--device", "gpu"],
        ["--perturb", "iou"],  # no second device to break
        ["--quick", "--seed", "x"],
    ],
)
def test_bad_arguments_exit_2(argv, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


def test_device_cuda_without_a_gpu_is_a_bad_argument(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_agrees_with_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    assert cli.main(["--quick", "--device", "cuda", "--no-speed", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["gpu_path"] == "run" and all(c["status"] == "PASS" for c in report["checks"])


@pytest.mark.slow
def test_full_cpu_against_cpu(tmp_path):
    out = tmp_path / "full.json"
    assert cli.main(["--device", "cpu", "--no-speed", "--json", str(out)]) == 0
    assert all(c["status"] == "PASS" for c in json.loads(out.read_text())["checks"])


# ------------------------------------------------------------------------------------------------------
# the comparison


EXACT, CLOSE, KEPT = Rule("exact"), Rule("close", 1e-4), Rule("kept_boxes", 0.99)


def test_exact_rule():
    a = torch.arange(10)
    (same,) = compare_outputs({"x": a}, {"x": a.clone()}, {"x": EXACT})
    assert same.passed and same.max_abs == 0
    b = a.clone()
    b[3] += 2
    (off,) = compare_outputs({"x": a}, {"x": b}, {"x": EXACT})
    assert not off.passed and off.max_abs == 2 and "1 of 10" in off.note
    (shape,) = compare_outputs({"x": a}, {"x": a[:-1]}, {"x": EXACT})
    assert not shape.passed and shape.max_abs is None and "shapes differ" in shape.note


def test_close_rule_is_relative_to_the_reference_scale():
    a = torch.linspace(-100, 100, 50)
    (near,) = compare_outputs({"y": a}, {"y": a + 1e-3}, {"y": CLOSE})
    assert near.passed and math.isclose(near.max_rel, 1e-5, rel_tol=1e-3)
    (far,) = compare_outputs({"y": a}, {"y": a + 0.1}, {"y": CLOSE})
    assert not far.passed and far.max_rel > 1e-4
    nan = a.clone()
    nan[0] = float("nan")
    (bad,) = compare_outputs({"y": a}, {"y": nan}, {"y": CLOSE})
    assert not bad.passed and "non-finite" in bad.note


def test_close_rule_on_gradients_has_a_floor_but_names_the_worst_tensor():
    big = torch.ones(100)
    noise = torch.full((3,), 1e-9)
    ok = compare_outputs({"g": {"w": big, "b": noise}}, {"g": {"w": big, "b": -noise}}, {"g": CLOSE})[0]
    assert ok.passed  # noise over noise, far below 1e-3 of the largest gradient
    small = torch.full((3,), 0.1)
    wrong = compare_outputs(
        {"g": {"w": big, "b": small}}, {"g": {"w": big, "b": small * 1.01}}, {"g": CLOSE}
    )[0]
    assert not wrong.passed and wrong.note == "worst: b" and math.isclose(wrong.max_rel, 0.01, rel_tol=1e-5)
    (missing,) = compare_outputs({"g": {"w": big}}, {"g": {"w": big, "extra": big}}, {"g": CLOSE})
    assert not missing.passed and "one side only" in missing.note


def test_kept_boxes_rule_pairs_near_duplicates():
    boxes = torch.tensor([[0, 0, 0, 4, 2, 1.5, 0], [0.001, 0, 0, 4, 2, 1.5, 0], [10, 0, 0, 4, 2, 1.5, 1.0]])
    (same,) = compare_outputs({"k": KeptBoxes(boxes, torch.tensor([0, 2]))}, {"k": KeptBoxes(boxes, torch.tensor([0, 2]))}, {"k": KEPT})  # fmt: skip
    assert same.passed and "same indices" in same.note
    (twin,) = compare_outputs({"k": KeptBoxes(boxes, torch.tensor([0, 2]))}, {"k": KeptBoxes(boxes, torch.tensor([1, 2]))}, {"k": KEPT})  # fmt: skip
    assert twin.passed and "2 indices differ" in twin.note  # the other twin kept: the same box
    (lost,) = compare_outputs({"k": KeptBoxes(boxes, torch.tensor([0, 2]))}, {"k": KeptBoxes(boxes, torch.tensor([0]))}, {"k": KEPT})  # fmt: skip
    assert not lost.passed and lost.max_abs == 1


def test_a_missing_output_fails_and_perturbation_breaks_every_kind():
    outputs = {
        "codes": torch.arange(5),
        "values": torch.rand(5),
        "grads": {"w": torch.rand(3)},
        "kept": KeptBoxes(
            torch.tensor([[0.0, 0, 0, 1, 1, 1, 0], [5.0, 0, 0, 1, 1, 1, 0]]), torch.tensor([0, 1])
        ),
    }
    rules = {"codes": EXACT, "values": CLOSE, "grads": CLOSE, "kept": KEPT}
    assert all(c.passed for c in compare_outputs(outputs, outputs, rules))
    broken = compare_outputs(outputs, perturb_outputs(outputs), rules)
    assert [c.passed for c in broken] == [False] * 4
    (missing,) = compare_outputs({}, outputs, {"codes": EXACT})
    assert not missing.passed and "reference" in missing.note


# ------------------------------------------------------------------------------------------------------
# pieces


def test_op_checks_build_their_inputs_once_and_run_on_a_device():
    from perception.gpu_check.core import Options

    (spec,) = [s for s in OP_CHECKS if s.name == "iou"]
    case = spec.build(Options(quick=True))
    first, seconds = case.run(torch.device("cpu"))
    again, _ = case.run(torch.device("cpu"))
    assert seconds > 0 and set(first) == set(case.rules) == {"iou_bev", "iou_3d"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert first["iou_bev"].shape == (300, 300) and float(first["iou_bev"].diagonal()[:30].min()) > 0.999


def test_detector_speed_times_training_and_inference_on_the_cpu():
    setup = SpeedSetup(frames=1, points=3000, steps=1, warmup=0, precisions=("float32", "bf16-mixed"))
    rows = detector_speed(torch.device("cpu"), setup, config="pvt_synthetic.yaml")
    assert [r.precision for r in rows] == ["float32", "bf16-mixed"]
    for r in rows:
        assert r.error is None, r.error
        assert r.train_fps > 0 and r.infer_fps > 0 and r.train_peak_mib is None
        assert r.to_dict()["points_per_frame"] == 3000


def test_waymo_sized_frame_lies_in_the_waymo_range():
    from perception.gpu_check.inputs import WAYMO_POINTS, waymo_range, waymo_sized_frame

    points, boxes, labels = waymo_sized_frame(np.random.default_rng(0))
    x0, y0, z0, x1, y1, z1 = waymo_range()
    assert points.shape == (WAYMO_POINTS, 5) and points.dtype == np.float32
    inside = (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
    inside &= (points[:, 2] >= z0) & (points[:, 2] < z1)
    assert inside.mean() > 0.99
    assert boxes.shape == (len(labels), 7) and set(labels.tolist()) <= {0, 1, 2}
