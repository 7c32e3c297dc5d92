"""The model checks: one training step and one eval-mode forward of every model family, CPU vs device.

The families and their configs: detection (``pvt_synthetic.yaml``, ``pointpillars_synthetic.yaml``),
segmentation (``p2p_seg_synthetic.yaml``, ``sparse_unet_seg_synthetic.yaml``), occupancy
(``p2p_occupancy_synthetic.yaml``, ``bev_occupancy_synthetic.yaml``) and shapes
(``pointnet_cls_synthetic.yaml``, ``pointnet_partseg_synthetic.yaml``).

Each task is built from its config as the invariance certificate builds it
(:func:`perception.invariance.build_task`: the config's initial weights at the seed, normalisation
statistics and zero-initialised layers drawn at random); the inputs are the certificate's clouds for
the family (:meth:`task_family(task).inputs`), with made-up targets where a training step needs them:
the scene's own boxes (detection), random per-point classes (segmentation), random sparse occupancy
grids and flows (occupancy), random classes and parts of the right category (shapes). Targets only
have to be the same on both devices, not meaningful.

On each device the task is rebuilt and given the reference ``state_dict``; the batch is copied over.

- ``train/<config>``: train mode, ``training_step`` then ``backward`` (float32, no autocast, the
  global RNG seeded before the step). Compared: the loss, every parameter's gradient and the
  BatchNorm running statistics after the step. The optimiser's update is not compared: it is an
  element-wise function of the gradients. What would differ by chance is made deterministic: dropout
  off, and the refinement stage trains on exact copies of the true boxes only (no jitter: it is drawn
  from the device's generator, so on the CPU it would also move the CPU generator that picks the
  pooled points; and no first-stage proposals, which near-tied random heatmaps make device-dependent).
  The refiner's random point choice draws from the CPU generator on every device, seeded before the
  step, so both devices pool the same points.
- ``infer/<config>``: eval mode, no gradients: the detector head's dense maps, the per-point logits,
  the occupancy and flow grids, the class and part logits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from perception.cli import CONFIG_DIR
from perception.gpu_check.compare import Rule
from perception.gpu_check.core import Case, CheckSpec, Options, timed, to_cpu
from perception.invariance import DEFAULT_POINTS, Clouds, build_task, task_family
from perception.models import PointRefinementHead
from perception.structures import Batch, Sample, collate
from perception.structures.occupancy import AGENT_CLASSES, OccupancyTargets
from perception.structures.shapes import PointSet, PointSetBatch, collate_point_sets

__all__ = ["MODEL_CONFIGS", "model_checks", "training_batch"]

MODEL_CONFIGS: tuple[tuple[str, str], ...] = (
    ("detection", "pvt_synthetic.yaml"),
    ("detection", "pointpillars_synthetic.yaml"),
    ("segmentation", "p2p_seg_synthetic.yaml"),
    ("segmentation", "sparse_unet_seg_synthetic.yaml"),
    ("occupancy", "p2p_occupancy_synthetic.yaml"),
    ("occupancy", "bev_occupancy_synthetic.yaml"),
    ("shapes", "pointnet_cls_synthetic.yaml"),
    ("shapes", "pointnet_partseg_synthetic.yaml"),
)
"""(family, config) of every model checked, in the order they run."""

QUICK_POINTS = {
    "detection": 3000,
    "segmentation": 3000,
    "occupancy": 3000,
    "classification": 512,
    "part_segmentation": 512,
}
"""Points per cloud with ``--quick`` (else the invariance certificate's :data:`DEFAULT_POINTS`)."""

LOSS = Rule("close", 1e-4, "float32 sums over thousands of points and cells in another order")
MODEL_GRADIENT = Rule(
    "close",
    1e-3,
    "backward through the whole network (cuDNN, atomics): ~1e-5 relative per tensor; each tensor "
    "on its own scale, floor 1e-3 of the model's largest gradient (biases in front of a BatchNorm "
    "have rounding-noise gradients)",
)
RUNNING_STATS = Rule("close", 1e-4, "batch means and variances: float32 sums in another order")
MODEL_OUTPUT = Rule(
    "close", 1e-4, "float32 through 10–30 layers, ~1e-6 relative each (TF32 off); a wrong kernel is O(1)"
)


def _points(family: str, options: Options) -> int:
    return QUICK_POINTS[family] if options.quick else DEFAULT_POINTS[family]


def training_batch(task: nn.Module, family: str, clouds: Clouds, seed: int) -> Batch | PointSetBatch:
    """A training batch (CPU) for ``task`` of ``family`` (the invariance families) from its clouds.

    Detection: the clouds' objects as the true boxes; segmentation: (N,) random training ids in
    [0, K] (0 ignored); occupancy: per cloud (T, A, H, W) grids with 5 % of the cells occupied, flows
    N(0, 1) cells, on the model's grid and waypoints; classification: (B,) random classes;
    part segmentation: the clouds' categories and random parts of each category.
    """
    rng = np.random.default_rng(seed)
    if family in ("classification", "part_segmentation"):
        dense = clouds.dense().numpy()
        sets = []
        for i, points in enumerate(dense):
            if family == "classification":
                sets.append(
                    PointSet(shape_id=f"s{i}", points=points, label=int(rng.integers(task.model.num_classes)))
                )
            else:
                category = int(clouds.category[i])
                parts = rng.choice(np.asarray(task.taxonomy.parts[category]), len(points))
                sets.append(PointSet(shape_id=f"s{i}", points=points, label=category, part_labels=parts))
        return collate_point_sets(sets)
    points, index = clouds.points.numpy(), clouds.batch_index.numpy()
    samples = []
    for b in range(clouds.batch_size):
        cloud = points[index == b]
        extra: dict[str, Any] = {}
        if family == "detection":
            objects = clouds.objects[b]
            m = len(objects.boxes)
            extra = {
                "boxes": objects.boxes.numpy(),
                "labels": objects.labels.numpy(),
                "difficulty": np.zeros(m, np.int32),
            }
        elif family == "segmentation":
            extra = {"point_labels": rng.integers(0, task.label_map.num_classes + 1, len(cloud))}
        elif family == "occupancy":
            extra = {"occupancy": _occupancy_targets(task.model, rng)}
        samples.append(Sample(frame_id=f"cloud{b}", points=cloud, **extra))
    return collate(samples)


def _occupancy_targets(model: nn.Module, rng: np.random.Generator) -> OccupancyTargets:
    t, a = int(model.num_waypoints), len(AGENT_CLASSES)
    h, w = int(model.grid.height), int(model.grid.width)

    def grid(*shape: int) -> np.ndarray:
        return (rng.random(shape) < 0.05).astype(np.float32)

    return OccupancyTargets(
        waypoint_times=(0.5 * np.arange(1, t + 1)).astype(np.float32),
        observed=grid(t, a, h, w),
        occluded=grid(t, a, h, w),
        flow=rng.normal(0.0, 1.0, (t, h, w, 2)).astype(np.float32),
        flow_origin=grid(t, h, w),
        current=grid(a, h, w),
    )


def _deterministic_training(task: nn.Module) -> None:
    """Train mode without what would differ by chance between devices (module docstring)."""
    task.train()
    for m in task.modules():
        if isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d | nn.AlphaDropout):
            m.eval()
        if isinstance(m, PointRefinementHead):
            m.train_proposals = 0
            m._jitter = _exact_copies(m)  # draws nothing: the CPU RNG stays where the other device's is


def _exact_copies(head: PointRefinementHead) -> Callable[[torch.Tensor], torch.Tensor]:
    """The refiner's training RoIs without jitter: ``gt_jitter_copies`` exact copies of (M, 7) boxes."""

    def copies(boxes: torch.Tensor) -> torch.Tensor:
        return boxes.float().repeat(head.gt_jitter_copies, 1)

    return copies


def _clouds_to(clouds: Clouds, device: torch.device) -> Clouds:
    category = None if clouds.category is None else clouds.category.to(device)
    return replace(
        clouds, points=clouds.points.to(device), batch_index=clouds.batch_index.to(device), category=category
    )


@dataclass
class _Model:
    """One config's reference weights and inputs (CPU), and its task built on each device so far."""

    path: Path
    family: str
    seed: int
    state: dict[str, torch.Tensor]
    clouds: Clouds
    batch: Batch | PointSetBatch
    tasks: dict[str, nn.Module] = field(default_factory=dict)

    def task_on(self, device: torch.device) -> nn.Module:
        """The task on ``device`` with the reference weights (reloaded on every call)."""
        key = str(device)
        if key not in self.tasks:
            self.tasks[key] = build_task(self.path, seed=self.seed).to(device)
        task = self.tasks[key]
        task.load_state_dict(self.state)
        task.zero_grad(set_to_none=True)
        return task


def _prepare(config: str, options: Options) -> _Model:
    path = CONFIG_DIR / config
    task = build_task(path, seed=options.seed)
    family = task_family(task)
    clouds = family.inputs(
        np.random.default_rng(options.seed), _points(family.name, options), torch.device("cpu")
    )
    batch = training_batch(task, family.name, clouds, options.seed)
    state = {k: v.detach().clone() for k, v in task.state_dict().items()}
    return _Model(path, family.name, options.seed, state, clouds, batch)


def _describe(model: _Model) -> str:
    sizes = torch.bincount(model.clouds.batch_index, minlength=model.clouds.batch_size).tolist()
    return f"{model.family}: {model.clouds.batch_size} clouds of {'/'.join(map(str, sizes))} points"


def _train_case(model: _Model) -> Case:
    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        task = model.task_on(device)
        _deterministic_training(task)
        batch = model.batch.to(device)
        torch.manual_seed(model.seed)

        def step() -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # self.log without a trainer
                loss = task.training_step(batch, 0)
            loss.backward()
            return loss

        loss, seconds = timed(device, step)
        gradients = {n: p.grad for n, p in task.named_parameters() if p.grad is not None}
        stats = {n: b for n, b in task.named_buffers() if n.endswith(("running_mean", "running_var"))}
        outputs = {"loss": loss, "gradients": gradients}
        if stats:
            outputs["batchnorm"] = stats
        return to_cpu(outputs), seconds

    rules = {"loss": LOSS, "gradients": MODEL_GRADIENT}
    if any(k.endswith(("running_mean", "running_var")) for k in model.state):
        rules["batchnorm"] = RUNNING_STATS
    return Case(_describe(model), rules, run)


def _eval_outputs(task: nn.Module, model: _Model, device: torch.device) -> dict[str, torch.Tensor]:
    family = task_family(task)
    if model.family == "detection":
        maps = family.core(model.batch.to(device))
        return {f"head.{n}": getattr(maps, n) for n in ("heatmap", "offset", "z", "log_dims", "rot")}
    outputs = family.outputs(_clouds_to(model.clouds, device))
    return {name: o.value for name, o in outputs.items() if o.kind != "detections"}


def _infer_case(model: _Model) -> Case:
    def run(device: torch.device) -> tuple[dict[str, Any], float]:
        task = _eval_task(model, device)
        with torch.no_grad():
            outputs, seconds = timed(device, lambda: _eval_outputs(task, model, device))
        return to_cpu(outputs), seconds

    return Case(_describe(model), {}, run, default=MODEL_OUTPUT)


def _eval_task(model: _Model, device: torch.device) -> nn.Module:
    return model.task_on(device).eval()


def model_checks() -> tuple[CheckSpec, ...]:
    """``train/<config>`` and ``infer/<config>`` for every :data:`MODEL_CONFIGS` entry. The two checks
    of a config share its prepared weights, inputs and per-device tasks (for this set of specs only)."""
    prepared: dict[str, _Model] = {}

    def shared(config: str, options: Options) -> _Model:
        if config not in prepared:
            prepared[config] = _prepare(config, options)
        return prepared[config]

    def builder(config: str, make: Callable[[_Model], Case]) -> Callable[[Options], Case]:
        return lambda options: make(shared(config, options))

    specs = []
    for family, config in MODEL_CONFIGS:
        stem = Path(config).stem
        specs.append(
            CheckSpec(
                f"train/{stem}",
                "train",
                f"{config}: training_step + backward",
                builder(config, _train_case),
                (family,),
            )
        )
        specs.append(
            CheckSpec(
                f"infer/{stem}",
                "infer",
                f"{config}: eval-mode forward",
                builder(config, _infer_case),
                (family,),
            )
        )
    return tuple(specs)
