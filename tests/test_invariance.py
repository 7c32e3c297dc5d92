"""The invariance certificate: every config in configs/ passes it (found by glob, so a new config is
covered the day it lands), the certificate fails models that are not invariant (toys that read the
first point, a refiner that pools the first points of a box, a claim a model does not keep), and the
CLI's exit status and JSON."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from perception.cli import CONFIG_DIR
from perception.inference import InferenceError
from perception.invariance import (
    TOLERANCE,
    InvarianceError,
    check_config,
    check_model,
    claimed_invariances,
    format_report,
    relative_change,
)

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "perception_tools_check_invariance", REPO / "tools" / "check_invariance.py"
)
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)

# GPU-sized models: tens of seconds on two CPU cores (1500 points a cloud, one trial: pvt_waymo 35 s,
# p2p_occupancy_waymo 14 s, pvt_kitti 13 s, pointpillars_kitti 12 s, p2p_seg_semantickitti 11 s)
SLOW = {
    "pvt_waymo.yaml",
    "pvt_kitti.yaml",
    "pointpillars_kitti.yaml",
    "p2p_occupancy_waymo.yaml",
    "p2p_seg_semantickitti.yaml",
}


def _config_params() -> list:
    return [
        pytest.param(path, id=path.name, marks=[pytest.mark.slow] if path.name in SLOW else [])
        for path in sorted(CONFIG_DIR.glob("*.yaml"))
    ]


@pytest.mark.parametrize("config", _config_params())
def test_every_config_keeps_its_invariances(config: Path) -> None:
    # the slow ones are the GPU-sized detectors: enough points that every object holds more than the
    # refiner pools (128 a box for Waymo), so its choice of points is exercised
    slow = config.name in SLOW  # the default suite: one permutation a config (the models are exact)
    report = check_config(config, points=2000 if slow else 1000, trials=2 if slow else 1)
    if report.status == "not a model config":
        assert report.checks == [] and report.passed
        return
    assert report.status == "checked", report.message
    assert report.checks and {c.transformation for c in report.checks} >= {"permutation"}
    assert report.passed, format_report(report)
    if report.family == "detection":
        outputs = {c.output for c in report.checks}
        assert {"head.heatmap", "detections.scores"} <= outputs


def test_a_fragment_is_not_a_model_config(tmp_path: Path) -> None:
    fragment = tmp_path / "logger.yaml"
    fragment.write_text("trainer:\n  max_epochs: 1\n")
    report = check_config(fragment)
    assert report.status == "not a model config" and report.passed and not report.checks
    assert "SKIPPED" in format_report(report)


def test_relative_change() -> None:
    a = torch.tensor([1.0, -4.0, 2.0])
    assert relative_change(a, a.clone()) == 0.0
    assert relative_change(a, a + torch.tensor([0.0, 0.0, 0.4])) == pytest.approx(0.1)
    assert relative_change(torch.zeros(3), torch.full((3,), 1e-20)) == pytest.approx(1e-8)
    assert relative_change(a, a[:2]) == math.inf
    assert relative_change(torch.zeros(0), torch.zeros(0)) == 0.0


# ----------------------------------------------------------------------------------------------------
# The certificate can fail


class MaxPoolClassifier(nn.Module):
    """(B, N, 3) → (B, 4): a per-point MLP and a max over the points (invariant)."""

    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16))
        self.out = nn.Linear(16, 4)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return points

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(self.features(points)).amax(dim=1))


class FirstPointClassifier(MaxPoolClassifier):
    """Reads the first point besides the pooled feature: not invariant."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return super().forward(points) + self.out(self.mlp(points[:, 0]))


class CentredClassifier(MaxPoolClassifier):
    """Coordinates relative to the cloud's mean: invariant to translations too, and says so."""

    invariances = ("permutation", "translation")

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return points - points.mean(dim=1, keepdim=True)


class ClaimsTooMuch(MaxPoolClassifier):
    """Claims translation invariance on absolute coordinates: the certificate must refuse it."""

    invariances = ("permutation", "translation", "rotation_z")


class FlatClassifier(MaxPoolClassifier):
    """Only the height and the distance from the z axis: invariant to turns about z."""

    invariances = ("rotation_z",)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [points[..., :2].norm(dim=-1), points[..., 2], torch.zeros_like(points[..., 2])], -1
        )


class PerPointWithFirst(nn.Module):
    """Segmentation contract, (N, 4) + batch index → (N, 3), but every point sees its cloud's first point."""

    in_channels = 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(8, 3)

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        first = torch.zeros(int(batch_index[-1]) + 1, dtype=torch.long).scatter_reduce(
            0, batch_index, torch.arange(len(points)), "amin", include_self=False
        )
        return self.linear(torch.cat([points, points[first[batch_index]]], 1))


class PerPointLinear(PerPointWithFirst):
    """The same layer on each point alone (its own features twice): equivariant."""

    def forward(self, points: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([points, points], 1))


def _by_transformation(checks: list) -> dict[str, float]:
    return {c.transformation: c.worst for c in checks}


def test_an_invariant_toy_passes_and_one_that_reads_the_first_point_fails() -> None:
    good = check_model(MaxPoolClassifier(), "classification", points=64, trials=3)
    assert [(c.output, c.transformation) for c in good] == [("logits", "permutation")]
    assert good[0].passed and good[0].worst == 0.0
    bad = check_model(FirstPointClassifier(), "classification", points=64, trials=3)
    assert not bad[0].passed and bad[0].worst > 1e3 * TOLERANCE


def test_per_point_outputs_must_follow_the_points() -> None:
    (bad,) = check_model(PerPointWithFirst(), "segmentation", points=200, trials=2)
    assert bad.output == "logits" and not bad.passed
    (good,) = check_model(PerPointLinear(), "segmentation", points=200)
    assert good.passed and good.worst == 0.0


def test_claimed_invariances_are_checked_and_can_fail() -> None:
    assert claimed_invariances(MaxPoolClassifier()) == ("permutation",)
    assert claimed_invariances(CentredClassifier()) == ("permutation", "translation")
    assert claimed_invariances(FlatClassifier()) == ("permutation", "rotation_z")
    centred = _by_transformation(check_model(CentredClassifier(), "classification", points=64))
    assert set(centred) == {"permutation", "translation"} and max(centred.values()) <= TOLERANCE
    flat = _by_transformation(check_model(FlatClassifier(), "classification", points=64))
    assert flat["rotation_z"] <= TOLERANCE
    too_much = _by_transformation(check_model(ClaimsTooMuch(), "classification", points=64))
    assert too_much["permutation"] == 0.0
    assert too_much["translation"] > 1e3 * TOLERANCE and too_much["rotation_z"] > 1e3 * TOLERANCE


def test_an_unknown_claim_or_family_is_refused() -> None:
    class Odd(MaxPoolClassifier):
        invariances = ("permutation", "scale")

    with pytest.raises(InvarianceError, match="scale"):
        claimed_invariances(Odd())
    with pytest.raises(InvarianceError, match="family"):
        check_model(MaxPoolClassifier(), "regression")


def test_a_claim_on_grid_outputs_is_refused() -> None:
    """Occupancy grids are fixed to the sensor: a translation claim cannot be checked on them."""
    from perception.structures.occupancy import OccupancyForecast, OccupancyGrid

    class MovingGrid(nn.Module):
        invariances = ("translation",)
        grid = OccupancyGrid(height=8, width=8, pixels_per_meter=0.25, ego_col=4, ego_row=6)
        num_waypoints, in_channels = 1, 5

        def forward(
            self, points: torch.Tensor, batch_index: torch.Tensor, batch_size: int
        ) -> OccupancyForecast:
            peak = torch.zeros(batch_size).scatter_reduce(0, batch_index, points[:, 3], "amax")
            grid = peak.view(-1, 1, 1, 1, 1).expand(-1, 1, 3, 8, 8)
            return OccupancyForecast(observed=grid, occluded=grid, flow=grid[:, :, :2].permute(0, 1, 3, 4, 2))

    with pytest.raises(InvarianceError, match="grid fixed to the sensor"):
        check_model(MovingGrid(), "occupancy", points=100)
    MovingGrid.invariances = ()
    assert all(c.passed for c in check_model(MovingGrid(), "occupancy", points=100))


def test_a_refiner_that_pools_the_first_points_of_a_box_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The classic capacity bug (spconv's first P points of a voxel, here of a RoI): the refiner keys
    its choice of points by their position instead of a hash of their coordinates."""
    from perception.ops import roi_points

    monkeypatch.setattr(
        roi_points,
        "_coordinate_hash",
        lambda xyz: torch.arange(len(xyz), dtype=torch.float64) / (len(xyz) + 1),
    )
    report = check_config("pointpillars_synthetic.yaml", points=1000, trials=1)
    failed = {c.output for c in report.checks if not c.passed}
    assert report.status == "checked" and not report.passed
    assert {"refined_objects.sizes", "refined_objects.scores"} <= failed
    assert all(c.passed for c in report.checks if c.output.startswith("head."))  # the first stage is fine


# ----------------------------------------------------------------------------------------------------
# The CLI


def test_cli_passes_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certificate.json"
    args = [
        "--config",
        "p2p_seg_synthetic.yaml",
        "--config",
        "wandb.yaml",
        "--points",
        "300",
        "--trials",
        "1",
    ]
    assert cli.main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "logits" in printed and "PASS" in printed and "not a model config" in printed
    content = json.loads(out.read_text())
    assert content["passed"] is True and content["tolerance"] == TOLERANCE
    seg, fragment = content["configs"]
    assert seg["config"] == "p2p_seg_synthetic.yaml" and seg["family"] == "segmentation"
    assert seg["status"] == "checked" and seg["passed"] is True and seg["seconds"] > 0
    (check,) = seg["checks"]
    assert check["output"] == "logits" and check["transformation"] == "permutation"
    assert check["passed"] is True and check["worst_relative_change"] <= TOLERANCE
    assert check["tolerance"] == TOLERANCE and check["trials"] == 1
    assert fragment["status"] == "not a model config" and fragment["checks"] == []


def test_cli_exit_status_1_on_a_failing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perception.tasks.segmentation import SegmentationTask

    def forward(self, batch):  # every point's logits shifted by its cloud's first point's: not equivariant
        logits = self.classifier(self.backbone(batch.points, batch.batch_index))
        first = torch.searchsorted(batch.batch_index, batch.batch_index)
        return logits + logits[first]

    monkeypatch.setattr(SegmentationTask, "forward", forward)
    out = tmp_path / "certificate.json"
    args = ["--config", "sparse_unet_seg_synthetic.yaml", "--points", "300", "--trials", "2"]
    assert cli.main([*args, "--json", str(out)]) == 1
    (report,) = json.loads(out.read_text())["configs"]
    assert report["passed"] is False and report["checks"][0]["passed"] is False
    assert report["checks"][0]["worst_relative_change"] > TOLERANCE


def test_cli_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", "no_such_config.yaml"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a checkpoint belongs to one config
        cli.main(["--all", "--ckpt", "model.ckpt"])
    assert exit_info.value.code == 2
    with pytest.raises(InferenceError, match="checkpoint not found"):
        check_config("pvt_synthetic.yaml", "no_such.ckpt")
