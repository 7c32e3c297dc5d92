"""The invariance certificate: every model a config names, checked against the symmetries it claims.

Permutation invariance is the thread through every model here: a point cloud is a set, so permuting
its points must not change what a model says about it (or, for per-point outputs, must permute them
the same way). :func:`check_config` proves it for one config, ``tools/check_invariance.py`` for any or
all of ``configs/``; ``docs/invariance.md`` is the manual.

1. **Model.** The task is rebuilt from the config by :func:`~perception.inference.load_task` (the
   model section only matters: nothing reads the dataset), with the checkpoint's weights when one is
   given, else the config's initial weights at a fixed seed, with the normalisation statistics and the
   zero-initialised layers (the refiner's residual, ...) drawn at random so that no branch is a
   constant (:func:`randomize_weights`). Eval mode, float32, no autocast.
2. **Family.** What the model's contract is decides the inputs and how each output must transform
   (:data:`FAMILIES`): ``detection`` (a :class:`~perception.models.Detector`), ``segmentation`` (a
   :class:`~perception.tasks.segmentation.SegmentationTask`: per-point logits), ``occupancy`` (an
   occupancy forecaster's grids), ``classification`` / ``part_segmentation`` (PointNet on (B, N, C)).
3. **Inputs.** Seeded synthetic clouds inside the model's range: a ground plane and box-shaped
   objects (cars, pedestrians, cyclists) whose surfaces hold most points, so voxels and pillars hold
   several points each and the heads have something to find, and 5 % of the object points repeated
   at the same x, y, z with other attributes (two returns); 2 clouds a batch; stacked sweeps with a
   time channel and moving objects for occupancy; a unit-ball cloud for PointNet. No model caps the
   points of a voxel or the voxels of a cloud (the refiner's points per box are chosen by a hash of
   their coordinates), so the check is fair at any size.
4. **Transformations.** Each cloud's points permuted independently (``trials`` random permutations),
   plus whatever else the model's class claims in its ``invariances`` attribute (:data:`TRANSFORMATIONS`:
   ``translation``, ``translation_z``, ``rotation_z``, each drawn per cloud). Every model is held to
   ``"permutation"``, claimed or not.
5. **Comparison.** For every output the worst relative change over the trials,
   ``max|expected - got| / max(max|expected|, tiny)``, against :data:`TOLERANCE` (float32). Dense and
   global outputs must not change; per-point outputs must be permuted as the points were; detections
   are compared as sets (matched one to one per class, the counts must agree; centres, sizes, yaws
   and scores each on its own scale). A detector's refinement stage is also run on the scene's true
   objects as RoIs (``refined_objects``): they hold more points than it pools.

A model may claim more than permutation with a class attribute, e.g.::

    class CentredClassifier(nn.Module):
        invariances = ("permutation", "translation")

Claims are only checked where an output's transformation is defined (global and per-point outputs:
invariant; detections: boxes moved with the cloud); a claim on a model with grid outputs (the
detection head's maps, occupancy grids) is refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from perception.cli import CONFIG_DIR
from perception.geometry.boxes import rotate_xy, wrap_angle
from perception.inference import InferenceError, load_task, read_config
from perception.models.detector import Detector
from perception.models.pointnet import PointNetClassifier, PointNetPartSegmenter
from perception.structures import Batch, Detections

__all__ = [
    "FAMILIES",
    "TOLERANCE",
    "TRANSFORMATIONS",
    "Check",
    "ConfigReport",
    "InvarianceError",
    "check_config",
    "check_model",
    "claimed_invariances",
    "format_report",
    "model_configs",
    "randomize_weights",
    "relative_change",
]

TOLERANCE = 1e-5
"""The largest relative change an output may show (float32: summation order moves the last bits,
~1e-7 relative, and a few layers amplify it; a real order dependence moves outputs by 1e-3 or more)."""

TINY = 1e-12
"""The floor of the denominator of a relative change (an all-zero output)."""

TRANSFORMATIONS = ("permutation", "translation", "translation_z", "rotation_z")
"""The transformations a model may claim: each cloud's points permuted; the cloud shifted in 3D
(up to 5 m per axis) or along z only (up to 1 m); the cloud turned about the z axis (any angle)."""

FAMILIES = ("detection", "segmentation", "occupancy", "classification", "part_segmentation")

CLOUDS = 2
"""Clouds per batch (so that a batch's clouds are permuted independently)."""

DEFAULT_POINTS = {
    "detection": 6000,
    "segmentation": 4000,
    "occupancy": 6000,
    "classification": 1024,
    "part_segmentation": 1024,
}
"""Points per cloud by family (``points=`` replaces it)."""

# (l, w, h) metres: a car, a pedestrian, a cyclist
_OBJECT_SIZES = ((3.9, 1.6, 1.56), (0.8, 0.6, 1.73), (1.76, 0.6, 1.73))


class InvarianceError(Exception):
    """A user-facing error (a model the certificate has no family for, a claim it cannot check)."""


# ------------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Check:
    """One output under one transformation.

    Attributes:
        output: the output's name (``head.heatmap``, ``detections.boxes``, ``logits``, ...).
        transformation: one of :data:`TRANSFORMATIONS`.
        worst: the largest relative change over the trials (``inf`` where the outputs cannot even be
            paired: a different number of detections, another class).
        tolerance: the largest allowed.
        trials: how many transformed inputs were compared.
        note: why a check failed structurally (counts), or what it saw.
    """

    output: str
    transformation: str
    worst: float
    tolerance: float
    trials: int
    note: str = ""

    @property
    def passed(self) -> bool:
        return math.isfinite(self.worst) and self.worst <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "transformation": self.transformation,
            "worst_relative_change": self.worst if math.isfinite(self.worst) else None,
            "tolerance": self.tolerance,
            "trials": self.trials,
            "passed": self.passed,
            "note": self.note,
        }


@dataclass
class ConfigReport:
    """The certificate of one config.

    Attributes:
        config: the config's file name.
        status: ``"checked"``, ``"not a model config"`` (a fragment such as ``wandb.yaml``: skipped)
            or ``"error"`` (building or running the model failed: ``message`` says how).
        family: the model family (:data:`FAMILIES`), None where none was found.
        model: the model's composition in words.
        weights: ``"random (seed S)"`` or the checkpoint's path.
        inputs: the inputs in words (clouds × points).
        checks: one per output and transformation.
        seconds: wall time of the whole check (build, inputs, every forward).
        message: the error, or what the model produced (detections per cloud).
    """

    config: str
    status: str
    family: str | None = None
    model: str = ""
    weights: str = ""
    inputs: str = ""
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""

    @property
    def passed(self) -> bool:
        """Every check passed (a fragment passes vacuously; an error fails)."""
        return self.status != "error" and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "status": self.status,
            "family": self.family,
            "model": self.model,
            "weights": self.weights,
            "inputs": self.inputs,
            "seconds": round(self.seconds, 2),
            "passed": self.passed,
            "message": self.message,
            "checks": [c.to_dict() for c in self.checks],
        }


def relative_change(expected: torch.Tensor, got: torch.Tensor) -> float:
    """``max|expected - got| / max(max|expected|, TINY)`` (0 for empty tensors; inf for other shapes)."""
    if expected.shape != got.shape:
        return math.inf
    if expected.numel() == 0:
        return 0.0
    a, b = expected.detach().double(), got.detach().double()
    return float((a - b).abs().max()) / max(float(a.abs().max()), TINY)


# ------------------------------------------------------------------------------------------------------
# inputs and transformations


@dataclass(frozen=True)
class Clouds:
    """A batch of clouds, flat: ``points`` (N, C) float32 with the clouds concatenated in order and
    ``batch_index`` (N,) int64 non-decreasing; ``category`` (B,) int64 for part segmentation;
    ``objects`` per cloud, the boxes its objects were drawn from (with made-up scores), for detection."""

    points: torch.Tensor
    batch_index: torch.Tensor
    batch_size: int
    category: torch.Tensor | None = None
    objects: tuple[Detections, ...] = ()

    def dense(self) -> torch.Tensor:
        """(B, N, C), for clouds of equal size."""
        return self.points.view(self.batch_size, -1, self.points.shape[1])


@dataclass(frozen=True)
class Transformed:
    """Transformed clouds and what was done: ``source`` (N,) the input row of each new row (a
    permutation within each cloud); ``angle`` (B,) radians about z and ``shift`` (B, 3) metres per
    cloud (rotation first, then the shift)."""

    clouds: Clouds
    source: torch.Tensor
    angle: torch.Tensor
    shift: torch.Tensor


def _rotate_xy(xy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """(…, 2) vectors turned by ``angle`` about z, stacked back (geometry's :func:`rotate_xy`)."""
    return torch.stack(rotate_xy(xy, angle), dim=-1)


def _moved_boxes(boxes: torch.Tensor, angle: float, shift: torch.Tensor) -> torch.Tensor:
    """Boxes (M, 7) after the cloud was turned by ``angle`` about z, then shifted."""
    out = boxes.double().clone()
    out[:, :2] = _rotate_xy(out[:, :2], torch.tensor(angle, dtype=torch.float64))
    out[:, :3] += shift
    out[:, 6] = wrap_angle(out[:, 6] + angle)
    return out


def transform(clouds: Clouds, name: str, generator: torch.Generator) -> Transformed:
    """``clouds`` with each cloud's points permuted at random and, for a rigid ``name``, moved.

    Every transformation permutes too (a rigid motion of a set is checked on a shuffled set).
    """
    if name not in TRANSFORMATIONS:
        raise InvarianceError(f"unknown transformation {name!r}; known: {', '.join(TRANSFORMATIONS)}")
    b = clouds.batch_size
    counts = torch.bincount(clouds.batch_index.cpu(), minlength=b)
    starts = torch.cumsum(counts, 0) - counts
    source = torch.cat(
        [int(s) + torch.randperm(int(n), generator=generator) for s, n in zip(starts, counts, strict=True)]
    )
    angle, shift = torch.zeros(b, dtype=torch.float64), torch.zeros(b, 3, dtype=torch.float64)
    if name == "rotation_z":
        angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    elif name == "translation":
        shift = (torch.rand(b, 3, generator=generator, dtype=torch.float64) * 2 - 1) * 5.0
    elif name == "translation_z":
        shift[:, 2] = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 - 1) * 1.0
    device = clouds.points.device
    points = clouds.points[source.to(device)].clone()
    if name != "permutation":
        cloud = clouds.batch_index[source.to(device)].cpu()
        xyz = points[:, :3].cpu().double()
        xyz[:, :2] = _rotate_xy(xyz[:, :2], angle[cloud])
        xyz = xyz + shift[cloud]
        points[:, :3] = xyz.to(device, points.dtype)
    objects = tuple(
        replace(d, boxes=_moved_boxes(d.boxes.cpu(), float(angle[b]), shift[b]).to(d.boxes))
        for b, d in enumerate(clouds.objects)
    )
    moved = replace(clouds, points=points, batch_index=clouds.batch_index[source.to(device)], objects=objects)
    return Transformed(moved, source, angle, shift)


def _surface_points(rng: np.random.Generator, n: int, size: Sequence[float]) -> np.ndarray:
    """(n, 3) points on the four sides and the top of a box of ``size`` (l, w, h) centred at 0."""
    l, w, h = size
    faces = np.array([w * h, w * h, l * h, l * h, l * w])  # ±x, ±y sides, top
    face = rng.choice(5, size=n, p=faces / faces.sum())
    u, v = rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n)
    out = np.zeros((n, 3))
    side_x, side_y = face < 2, (face >= 2) & (face < 4)
    out[side_x] = np.stack([np.where(face[side_x] == 0, 0.5, -0.5) * l, u[side_x] * w, v[side_x] * h], 1)
    out[side_y] = np.stack([u[side_y] * l, np.where(face[side_y] == 2, 0.5, -0.5) * w, v[side_y] * h], 1)
    top = face == 4
    out[top] = np.stack([u[top] * l, v[top] * w, np.full(top.sum(), 0.5 * h)], 1)
    return out + rng.normal(0.0, 0.01, out.shape)


@dataclass(frozen=True)
class Scene:
    """Synthetic points and the objects they were drawn from: ``points`` (n, 4) float64
    ``[x, y, z, t]``; ``boxes`` (M, 7) ``[x, y, z, l, w, h, yaw]`` at t = 0 and ``labels`` (M,) in
    0 (car), 1 (pedestrian), 2 (cyclist)."""

    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def scene(
    rng: np.random.Generator,
    n: int,
    window: Sequence[float],
    ground_z: float,
    objects: int = 6,
    velocity: float = 0.0,
    times: Sequence[float] = (0.0,),
    ground_window: Sequence[float] | None = None,
    repeats: float = 0.05,
) -> Scene:
    """A ground plane and box-shaped objects inside ``window``, sampled on their surfaces.

    Args:
        window: ``(x_min, x_max, y_min, y_max)`` metres; objects stay 3 m inside it.
        ground_z: the ground's height, metres (objects stand on it).
        objects: how many (cars, pedestrians and cyclists in turn); they hold 60 % of the points.
        velocity: objects move along their heading at up to this speed (m/s) between sweeps.
        times: sweep times (seconds, ≤ 0): each sweep sees the objects where they were then.
        ground_window: where the ground points lie (default ``window``).
        repeats: this share of the object points comes twice, at the same x, y, z (two returns, two
            lidars; the attributes drawn later differ), so that ties of anything keyed on the
            coordinates alone are exercised. The scene then holds ``n + repeats · 0.6 n`` points.
    """
    x0, x1, y0, y1 = window
    gx0, gx1, gy0, gy1 = ground_window if ground_window is not None else window
    centres = np.stack([rng.uniform(x0 + 3, x1 - 3, objects), rng.uniform(y0 + 3, y1 - 3, objects)], 1)
    yaw = rng.uniform(-math.pi, math.pi, objects)
    speed = rng.uniform(0.0, velocity, objects)
    per_sweep = np.diff(np.linspace(0, n, len(times) + 1).round().astype(int))
    parts = []
    repeated = []
    for t, m in zip(times, per_sweep, strict=True):
        on_objects = int(0.6 * m)
        counts = np.diff(np.linspace(0, on_objects, objects + 1).round().astype(int))
        for k, c in enumerate(counts):
            size = _OBJECT_SIZES[k % len(_OBJECT_SIZES)]
            local = _surface_points(rng, int(c), size)
            cos, sin = math.cos(yaw[k]), math.sin(yaw[k])
            xy = local[:, :2] @ np.array([[cos, sin], [-sin, cos]]) + centres[k]
            xy = xy + speed[k] * t * np.array([cos, sin])
            z = local[:, 2] + ground_z + size[2] / 2
            parts.append(np.column_stack([xy, z, np.full(len(z), t)]))
            repeated.append(parts[-1][rng.random(len(z)) < repeats])
        g = m - on_objects
        ground = np.column_stack(
            [
                rng.uniform(gx0, gx1, g),
                rng.uniform(gy0, gy1, g),
                ground_z + rng.normal(0.0, 0.02, g),
                np.full(g, t),
            ]
        )
        parts.append(ground)
    labels = np.arange(objects) % len(_OBJECT_SIZES)
    sizes = np.array([_OBJECT_SIZES[k] for k in labels]).reshape(objects, 3)
    boxes = np.column_stack([centres, ground_z + sizes[:, 2] / 2, sizes, yaw])
    return Scene(np.concatenate(parts + repeated), boxes, labels)


# ------------------------------------------------------------------------------------------------------
# families


@dataclass
class _Output:
    """An output and how it transforms: ``"invariant"`` (a global output, e.g. class logits: must not
    change), ``"grid"`` (a dense map on a grid fixed to the sensor: must not change under a
    permutation; it would move under a rigid motion, which is not checked), ``"per_point"`` (rows
    follow the points; (N, ...) flat over the batch) or ``"detections"`` (B sets of boxes, which move
    with the cloud)."""

    value: Any
    kind: str


class _Family:
    """How one model family is fed and read. Subclasses set ``name`` and implement the three methods."""

    name = ""

    def __init__(self, model: Callable[..., Any], core: nn.Module) -> None:
        self.model, self.core = model, core

    def describe(self) -> str:
        return type(self.core).__name__

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        raise NotImplementedError

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        raise NotImplementedError

    def calibrate(self, clouds: Clouds) -> None:
        """Adjust randomly initialised weights to the inputs where a family needs it (default: no)."""

    def note(self, outputs: dict[str, _Output]) -> str:
        return ""


def _attribute(module: nn.Module, names: Sequence[str], default: Any = None) -> Any:
    """The first of ``names`` that ``module`` has (dotted paths allowed), else ``default``."""
    for name in names:
        value: Any = module
        for part in name.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if value is not None:
            return value
    return default


def _with_attributes(xyzt: np.ndarray, channels: int, rng: np.random.Generator, timed: bool) -> np.ndarray:
    """x, y, z, then attributes in [0, 1) up to ``channels`` columns (the last one Δt where ``timed``)."""
    n = len(xyzt)
    extra = rng.uniform(0.0, 1.0, (n, max(channels - 3, 0)))
    if timed and channels >= 5:
        extra[:, -1] = xyzt[:, 3]
    return np.column_stack([xyzt[:, :3], extra])[:, :channels]


def _flat(clouds: list[np.ndarray], device: torch.device) -> Clouds:
    points = torch.from_numpy(np.concatenate(clouds).astype(np.float32)).to(device)
    index = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(clouds)])
    return Clouds(points, index.to(device), len(clouds))


def _batch(clouds: Clouds) -> Batch:
    b = clouds.batch_size
    empty = clouds.points.new_zeros(0, 7)
    labels = torch.zeros(0, dtype=torch.long, device=clouds.points.device)
    return Batch(
        points=clouds.points,
        batch_index=clouds.batch_index,
        boxes=[empty] * b,
        labels=[labels] * b,
        frame_ids=[f"cloud{i}" for i in range(b)],
    )


class _Detection(_Family):
    """A :class:`~perception.models.Detector`: the head's dense maps (invariant), the decoded
    proposals and, with a refiner, the refined detections (sets)."""

    name = "detection"

    def describe(self) -> str:
        d = self.core
        parts = [d.encoder, d.backbone_3d, d.backbone_2d, d.head] + ([d.refiner] if d.refiner else [])
        return " → ".join(type(p).__name__ for p in parts)

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        encoder = self.core.encoder
        channels = int(_attribute(encoder, ("in_channels",), 4))
        x0, y0, z0, x1, y1, z1 = _attribute(encoder, ("point_cloud_range",), (0, -40, -3, 70, 40, 1))
        half = min(20.0, (x1 - x0) / 2 - 1.0, (y1 - y0) / 2 - 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        window = (cx - half, cx + half, cy - half, cy + half)
        everywhere = (x0 + 0.5, x1 - 0.5, y0 + 0.5, y1 - 0.5)
        ground = z0 + 0.3 * (z1 - z0)
        scenes = [scene(rng, points, window, ground, ground_window=everywhere) for _ in range(CLOUDS)]
        clouds = _flat([_with_attributes(sc.points, channels, rng, False) for sc in scenes], device)
        classes = self.core.head.num_classes
        objects = tuple(
            Detections(
                torch.from_numpy(sc.boxes).float().to(device),
                torch.from_numpy(rng.uniform(0.3, 0.9, len(sc.boxes))).float().to(device),
                torch.from_numpy(np.minimum(sc.labels, classes - 1)).long().to(device),
            )
            for sc in scenes
        )
        return replace(clouds, objects=objects)

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        detector: Detector = self.core
        batch = _batch(clouds)
        maps = detector(batch)
        out = {
            f"head.{name}": _Output(getattr(maps, name), "grid")
            for name in ("heatmap", "offset", "z", "log_dims", "rot")
        }
        proposals = detector.head.decode(maps)
        stage = "proposals" if detector.refiner is not None else "detections"
        out[stage] = _Output(proposals, "detections")
        if detector.refiner is not None:
            out["detections"] = _Output(detector.predict(maps, batch), "detections")
            # the objects themselves as RoIs: hundreds of points each, more than the refiner pools
            refined = detector.refiner.refine(clouds.points, clouds.batch_index, list(clouds.objects))
            out["refined_objects"] = _Output(refined, "detections")
        return out

    def calibrate(self, clouds: Clouds) -> None:
        """Give a randomly initialised heatmap a trained one's spread, in place: per class, the median
        logit goes 3 below the score threshold's logit and the 0.5 % of cells furthest from the median
        (on the side of the longer tail) 1 above it, by rescaling the last heatmap convolution. Random
        weights otherwise give every cell nearly the same score (about the threshold: the bias is
        -2.19), and the proposals would be any of the cells, most of them tied."""
        head = self.core.head
        last = head.heatmap[-1] if isinstance(head.heatmap, nn.Sequential) else None
        if not isinstance(last, nn.Conv2d) or last.bias is None:
            return
        threshold = min(max(float(head.score_threshold), 1e-4), 1 - 1e-4)
        base = math.log(threshold / (1 - threshold))
        logits = self.core(_batch(clouds)).heatmap.double()  # (B, K, H, W)
        for c in range(logits.shape[1]):
            d = logits[:, c].flatten()
            middle = float(d.median())
            high, low = float(torch.quantile(d, 0.995)) - middle, float(torch.quantile(d, 0.005)) - middle
            spread = high if high >= -low else low
            scale = 4.0 / spread if abs(spread) > TINY else 1.0
            last.weight[c] *= scale
            last.bias[c] = scale * (float(last.bias[c]) - middle) + base - 3.0

    def note(self, outputs: dict[str, _Output]) -> str:
        words = []
        for stage in ("proposals", "detections", "refined_objects"):
            if stage in outputs:
                counts = "+".join(str(len(d)) for d in outputs[stage].value)
                words.append(f"{stage} per cloud {counts}")
        return ", ".join(words)


class _PerPoint(_Family):
    """Points (N, C) with a batch index → (N, K) per-point outputs (a segmentation task's logits)."""

    name = "segmentation"

    def describe(self) -> str:
        return type(self.core).__name__

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        channels = int(_attribute(self.core, ("in_channels",), 4))
        return _flat(
            [
                _with_attributes(scene(rng, points, (-15, 15, -15, 15), -1.7).points, channels, rng, False)
                for _ in range(CLOUDS)
            ],
            device,
        )

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        return {"logits": _Output(self.model(clouds.points, clouds.batch_index), "per_point")}


class _Occupancy(_Family):
    """Stacked sweeps (x, y, z, attributes, Δt) → occupancy and flow grids (invariant)."""

    name = "occupancy"

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        channels = int(
            _attribute(self.core, ("in_channels", "backbone.in_channels", "encoder.in_channels"), 5)
        )
        grid = self.core.grid
        x0, x1, y0, y1 = grid.extent()
        half = min(25.0, (x1 - x0) / 2 - 1.0, (y1 - y0) / 2 - 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        z_lo, z_hi = _attribute(self.core, ("z_range",), (-3.0, 3.0))
        times = tuple(-0.1 * k for k in range(5))
        window = (cx - half, cx + half, cy - half, cy + half)
        ground = z_lo + 0.3 * (z_hi - z_lo)
        return _flat(
            [
                _with_attributes(
                    scene(rng, points, window, ground, velocity=8.0, times=times).points, channels, rng, True
                )
                for _ in range(CLOUDS)
            ],
            device,
        )

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        forecast = self.model(clouds.points, clouds.batch_index, clouds.batch_size)
        return {name: _Output(getattr(forecast, name), "grid") for name in ("observed", "occluded", "flow")}


class _Classification(_Family):
    """PointNet: points (B, N, C) → logits (B, K) (invariant)."""

    name = "classification"

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        channels = int(_attribute(self.core, ("in_channels", "features.in_channels"), 3))
        clouds = []
        for _ in range(CLOUDS):
            xyz = rng.normal(size=(points, 3))
            xyz *= (rng.uniform(0, 1, (points, 1)) ** (1 / 3)) / np.linalg.norm(xyz, axis=1, keepdims=True)
            clouds.append(np.column_stack([xyz, rng.uniform(-1, 1, (points, max(channels - 3, 0)))]))
        return _flat([c[:, :channels] for c in clouds], device)

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        return {"logits": _Output(self.model(clouds.dense()), "invariant")}


class _PartSegmentation(_Classification):
    """PointNet part segmentation: points (B, N, C) and category (B,) → (B, N, P) (per point)."""

    name = "part_segmentation"

    def inputs(self, rng: np.random.Generator, points: int, device: torch.device) -> Clouds:
        clouds = super().inputs(rng, points, device)
        k = int(_attribute(self.core, ("num_categories", "taxonomy.num_categories"), 16))
        category = torch.from_numpy(rng.integers(0, k, clouds.batch_size)).to(device)
        return replace(clouds, category=category)

    def outputs(self, clouds: Clouds) -> dict[str, _Output]:
        logits = self.model(clouds.dense(), clouds.category)
        return {"part_logits": _Output(logits.reshape(-1, *logits.shape[2:]), "per_point")}


_FAMILY_CLASSES: dict[str, type[_Family]] = {
    f.name: f for f in (_Detection, _PerPoint, _Occupancy, _Classification, _PartSegmentation)
}


def task_family(task: nn.Module) -> _Family:
    """The family adapter of a task (or a bare model) built from a config.

    Raises:
        InvarianceError: a model none of :data:`FAMILIES` describes.
    """
    from perception.tasks.segmentation import SegmentationTask

    inner = getattr(task, "model", None)
    if isinstance(task, Detector):
        return _Detection(task, task)
    if isinstance(inner, Detector):
        return _Detection(inner, inner)
    if isinstance(task, SegmentationTask):

        def logits(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            return task(_batch(Clouds(points, index, int(index[-1]) + 1)))

        return _PerPoint(logits, task.backbone)
    if inner is not None and hasattr(inner, "grid") and hasattr(inner, "num_waypoints"):
        return _Occupancy(inner, inner)
    for module in task.modules():
        if isinstance(module, PointNetPartSegmenter):
            return _PartSegmentation(module, module)
        if isinstance(module, PointNetClassifier):
            return _Classification(module, module)
    raise InvarianceError(
        f"no invariance family for {type(task).__name__} (known: a Detector, a SegmentationTask, an "
        "occupancy forecaster, PointNetClassifier, PointNetPartSegmenter)"
    )


def claimed_invariances(model: nn.Module) -> tuple[str, ...]:
    """The transformations ``model`` is checked under: ``"permutation"``, then what its class's
    ``invariances`` attribute adds.

    Raises:
        InvarianceError: a claim that is not one of :data:`TRANSFORMATIONS`.
    """
    claims = tuple(getattr(type(model), "invariances", ()) or ())
    unknown = [c for c in claims if c not in TRANSFORMATIONS]
    if unknown:
        raise InvarianceError(
            f"{type(model).__name__}.invariances names {unknown}; known: {', '.join(TRANSFORMATIONS)}"
        )
    return ("permutation", *(c for c in claims if c != "permutation"))


# ------------------------------------------------------------------------------------------------------
# comparing


_BOX_PARTS = (("centres", slice(0, 3)), ("sizes", slice(3, 6)), ("yaws", slice(6, 7)))
"""How a box is compared: each part on its own scale (a centre 50 m out must not hide a size's change)."""


def _compare_detections(
    expected: Sequence[Detections], got: Sequence[Detections], moved: Transformed
) -> tuple[dict[str, float], str]:
    """The worst relative change of each box part and of the scores, and a note, over the clouds;
    each cloud's detections are matched one to one within a class (inf where the counts or the
    classes differ)."""
    worst = dict.fromkeys([*(name for name, _ in _BOX_PARTS), "scores"], 0.0)
    notes = []
    for b, (e, g) in enumerate(zip(expected, got, strict=True)):
        if len(e) != len(g):
            notes.append(f"cloud {b}: {len(e)} vs {len(g)} detections")
            worst = dict.fromkeys(worst, math.inf)
            continue
        if len(e) == 0:
            continue
        eb = _moved_boxes(e.boxes.cpu(), float(moved.angle[b]), moved.shift[b])
        gb = g.boxes.cpu().double()
        es, gs = e.scores.cpu().double(), g.scores.cpu().double()
        diff = (eb[:, None, :] - gb[None, :, :]).abs()
        diff[..., 6] = wrap_angle(eb[:, None, 6] - gb[None, :, 6]).abs()
        cost = torch.maximum(diff.amax(-1), (es[:, None] - gs[None, :]).abs())
        other_class = e.labels.cpu()[:, None] != g.labels.cpu()[None, :]
        cost = torch.where(other_class, torch.full_like(cost, 1e9), cost)
        rows, cols = linear_sum_assignment(cost.numpy())
        if bool(other_class[rows, cols].any()):
            notes.append(f"cloud {b}: the classes differ")
            worst = dict.fromkeys(worst, math.inf)
            continue
        pairs = diff[rows, cols]  # (M, 7)
        for name, part in _BOX_PARTS:
            scale = max(float(eb[:, part].abs().max()), TINY)
            worst[name] = max(worst[name], float(pairs[:, part].max()) / scale)
        scale = max(float(es.abs().max()), TINY)
        worst["scores"] = max(worst["scores"], float((es[rows] - gs[cols]).abs().max()) / scale)
    return worst, "; ".join(notes)


def _compare(
    name: str, expected: _Output, got: _Output, moved: Transformed, transformation: str
) -> list[tuple[str, float, str]]:
    """[(output name, relative change, note)] for one output."""
    if expected.kind == "detections":
        worst, note = _compare_detections(expected.value, got.value, moved)
        return [(f"{name}.{part}", change, note) for part, change in worst.items()]
    if expected.kind == "per_point":
        reference = expected.value[moved.source.to(expected.value.device)]
        return [(name, relative_change(reference, got.value), "")]
    if expected.kind == "grid" and transformation != "permutation":
        raise InvarianceError(
            f"{name} is a map on a grid fixed to the sensor: a {transformation} claim is not checkable"
        )
    return [(name, relative_change(expected.value, got.value), "")]


@contextlib.contextmanager
def _float32() -> Iterator[None]:
    """No gradients and no autocast (the certificate is for float32)."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def check_family(
    family: _Family,
    *,
    points: int | None = None,
    trials: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    calibrate: bool = False,
) -> tuple[list[Check], str, str]:
    """Run every claimed transformation ``trials`` times: (checks, inputs in words, note).

    ``calibrate``: the weights are random; let the family shape them to the inputs first.
    """
    device = torch.device(device)
    claims = claimed_invariances(family.core)
    n = int(points if points is not None else DEFAULT_POINTS[family.name])
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    clouds = family.inputs(rng, n, device)
    with _float32():
        if calibrate:
            family.calibrate(clouds)
        reference = family.outputs(clouds)
        worst: dict[tuple[str, str], float] = {}
        notes: dict[tuple[str, str], str] = {}
        for transformation in claims:
            for _ in range(trials):
                moved = transform(clouds, transformation, generator)
                got = family.outputs(moved.clouds)
                for name, expected in reference.items():
                    for output, change, note in _compare(name, expected, got[name], moved, transformation):
                        key = (output, transformation)
                        worst[key] = max(worst.get(key, 0.0), change)
                        if note and key not in notes:
                            notes[key] = note
    checks = [
        Check(output, t, change, TOLERANCE, trials, notes.get((output, t), ""))
        for (output, t), change in worst.items()
    ]
    sizes = torch.bincount(clouds.batch_index.cpu(), minlength=clouds.batch_size).tolist()
    inputs = f"{clouds.batch_size} clouds of {'/'.join(map(str, sizes))} points × {clouds.points.shape[1]} channels"
    return checks, inputs, family.note(reference)


def check_model(
    model: nn.Module,
    family: str,
    *,
    points: int | None = None,
    trials: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[Check]:
    """Check a bare model of a family (:data:`FAMILIES`) with the family's contract, in eval mode.

    ``detection``: a :class:`~perception.models.Detector`; ``segmentation``: ``forward(points (N, C),
    batch_index (N,)) -> (N, K)``; ``occupancy``: ``forward(points, batch_index, batch_size) ->
    OccupancyForecast`` with ``grid``; ``classification``: ``forward((B, N, C)) -> (B, K)``;
    ``part_segmentation``: ``forward((B, N, C), category (B,)) -> (B, N, P)``. The inputs' width is the
    model's ``in_channels`` where it has one.
    """
    if family not in _FAMILY_CLASSES:
        raise InvarianceError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    model = model.to(device).eval()
    checks, _, _ = check_family(
        _FAMILY_CLASSES[family](model, model), points=points, trials=trials, seed=seed, device=device
    )
    return checks


# ------------------------------------------------------------------------------------------------------
# configs


def randomize_weights(module: nn.Module, seed: int = 0) -> None:
    """Draw what initialisation leaves constant, in place and seeded: normalisation statistics and
    affine parameters (eval-mode BatchNorm is otherwise the identity) and every all-zero parameter
    (zero-initialised output layers: the refiner's residual, biases), so every branch of the model
    carries signal that an order dependence could disturb."""
    g = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        t.copy_(fn(torch.empty(t.shape, dtype=torch.float64)).to(t.dtype))

    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    with torch.no_grad():
        seen = set()
        for m in module.modules():
            if not isinstance(m, norms):
                continue
            if getattr(m, "running_mean", None) is not None:
                draw(m.running_mean, lambda t: t.normal_(0.0, 0.1, generator=g))
                draw(m.running_var, lambda t: t.uniform_(0.5, 2.0, generator=g))
            if getattr(m, "weight", None) is not None:
                draw(m.weight, lambda t: t.uniform_(0.5, 1.5, generator=g))
                seen.add(id(m.weight))
            if getattr(m, "bias", None) is not None:
                draw(m.bias, lambda t: t.normal_(0.0, 0.1, generator=g))
                seen.add(id(m.bias))
        for p in module.parameters():
            if id(p) not in seen and p.is_floating_point() and not bool(p.any()):
                draw(p, lambda t: t.normal_(0.0, 0.05, generator=g))


def not_model_config_reason(config: Path) -> str | None:
    """Why ``config`` is not a model config (a fragment without a ``model`` section), or None."""
    if not read_config(config).get("model"):
        return "not a model config (no model section: a fragment to combine with one)"
    return None


def model_configs(folder: Path = CONFIG_DIR) -> list[Path]:
    """Every YAML file of ``folder`` (fragments included: :func:`check_config` reports them)."""
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's and the CLI's chatter off while a task is built."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def build_task(config: Path, ckpt: str | os.PathLike | None = None, seed: int = 0) -> nn.Module:
    """The task ``config`` names, in eval mode and float32: the checkpoint's weights, else the initial
    ones at ``seed`` with :func:`randomize_weights`. Reads no data."""
    with _quiet():
        loaded = load_task(ckpt, config, overrides=["--seed_everything", str(seed)])
    task = loaded.task.float().eval()
    if ckpt is None:
        randomize_weights(task, seed)
    return task


def check_config(
    config: str | os.PathLike,
    ckpt: str | os.PathLike | None = None,
    *,
    points: int | None = None,
    trials: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ConfigReport:
    """The certificate of one config (a path, or a name in ``configs/``).

    Raises:
        InferenceError: the config is not found or not YAML, the checkpoint does not load or fit.
    """
    start = time.perf_counter()
    path = Path(config)
    if not path.is_file() and (CONFIG_DIR / path).is_file():
        path = CONFIG_DIR / path
    if not path.is_file():
        raise InferenceError(f"config {str(config)!r} not found as a path nor in {CONFIG_DIR}")
    reason = not_model_config_reason(path)
    if reason is not None:
        return ConfigReport(path.name, "not a model config", message=reason)
    report = ConfigReport(path.name, "checked")
    report.weights = str(ckpt) if ckpt is not None else f"random (seed {seed})"
    try:
        task = build_task(path, ckpt, seed).to(device)
        family = task_family(task)
        report.family, report.model = family.name, family.describe()
        report.checks, report.inputs, report.message = check_family(
            family, points=points, trials=trials, seed=seed, device=device, calibrate=ckpt is None
        )
    except InferenceError:
        raise
    except Exception as err:  # a model that does not even run fails its certificate, with the reason
        report.status = "error"
        report.message = f"{type(err).__name__}: {err}".splitlines()[0]
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------------------------------
# output


def format_report(report: ConfigReport) -> str:
    """A config's certificate as a table (one line for a skipped fragment or an error)."""
    head = f"{report.config}"
    if report.status == "not a model config":
        return f"{head}: SKIPPED, {report.message}"
    if report.status == "error":
        return f"{head}: ERROR ({report.seconds:.1f} s) {report.message}"
    lines = [
        f"{head}: {report.family} — {report.model}",
        f"  weights {report.weights}; {report.inputs}; {report.seconds:.1f} s"
        + (f"; {report.message}" if report.message else ""),
    ]
    width = max([len("output"), *(len(c.output) for c in report.checks)])
    lines.append(
        f"  {'output':<{width}}  {'transformation':<14}  {'worst rel. change':>17}  {'tolerance':>9}  result"
    )
    for c in report.checks:
        value = f"{c.worst:.2e}" if math.isfinite(c.worst) else "inf"
        verdict = "PASS" if c.passed else "FAIL" + (f" ({c.note})" if c.note else "")
        lines.append(
            f"  {c.output:<{width}}  {c.transformation:<14}  {value:>17}  {c.tolerance:>9.0e}  {verdict}"
        )
    lines.append(f"  => {'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines)
