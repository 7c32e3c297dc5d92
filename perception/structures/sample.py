"""What flows from the dataset to the model: a ``Sample`` per frame, a ``Batch`` per step.

``Frame`` (a reader's output) → transforms → :class:`Sample` (NumPy, one frame, augmented) →
:func:`collate` → :class:`Batch` (torch, several frames, points concatenated) → model.

Voxelization and serialization happen on the device inside the model, so a batch is just points with a
batch index, and the same batch works on the CPU and the GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from numpy.typing import NDArray

from perception.structures.kitti import KittiRecord
from perception.structures.occupancy import OccupancyForecast, OccupancyTargets
from perception.structures.segmentation import ScanRecord
from perception.structures.waymo import WaymoRecord

__all__ = ["Batch", "FrameRecord", "Sample", "collate"]

FrameRecord = KittiRecord | WaymoRecord | ScanRecord
"""A sample's dataset record: what a writer or metric needs besides points and training boxes."""


@dataclass(kw_only=True)
class Sample:
    """One frame ready for the model, in the sensor frame (x forward, y left, z up, metres).

    Attributes:
        frame_id: the dataset's frame id.
        points: (N, C) float32, x, y, z then attributes (KITTI: reflectance).
        boxes: (M, 7) float32 ``[x, y, z, l, w, h, yaw]`` of the training classes.
        labels: (M,) int64 index into the task's class names.
        difficulty: (M,) int32 (KITTI 0/1/2, -1 none), kept for evaluation.
        point_labels: (N,) int64 per-point training class ids for segmentation (0 ignored, 1..K the
            classes of the data's :class:`~perception.structures.segmentation.LabelMap`), or None.
        occupancy: the true occupancy-flow grids of an occupancy sample (NumPy), or None.
        record: the frame's dataset record (:class:`~perception.structures.kitti.KittiRecord`:
            calibration, image shape, every labelled object; :class:`~perception.structures.waymo.WaymoRecord`:
            context, timestamp, pose, every labelled object), as read, before any transform; what
            writers and metrics need. Never read by a model. None for data that has none.
    """

    frame_id: str
    points: NDArray[np.float32]
    boxes: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 7), np.float32))
    labels: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0,), np.int64))
    difficulty: NDArray[np.int32] = field(default_factory=lambda: np.zeros((0,), np.int32))
    point_labels: NDArray[np.int64] | None = None
    occupancy: OccupancyTargets | None = None
    record: FrameRecord | None = None

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] < 3:
            raise ValueError(f"sample {self.frame_id}: points must be (N, >=3), got {self.points.shape}")
        if self.point_labels is not None and self.point_labels.shape != (len(self.points),):
            raise ValueError(
                f"sample {self.frame_id}: point_labels {self.point_labels.shape} must be ({len(self.points)},)"
            )
        m = len(self.boxes)
        if self.boxes.shape != (m, 7) or len(self.labels) != m or len(self.difficulty) != m:
            raise ValueError(
                f"sample {self.frame_id}: boxes {self.boxes.shape}, labels {len(self.labels)} and "
                f"difficulty {len(self.difficulty)} must agree on M"
            )

    def replace(self, **changes) -> Sample:
        """A copy with some fields replaced (transforms return new samples, never edit in place)."""
        return replace(self, **changes)

    def select_points(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Sample:
        """A copy keeping only the points ``keep`` selects (with their labels, if any)."""
        labels = None if self.point_labels is None else self.point_labels[keep]
        return self.replace(points=self.points[keep], point_labels=labels)

    def select_boxes(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Sample:
        """A copy keeping only the boxes ``keep`` selects (with their labels and difficulty)."""
        return self.replace(
            boxes=self.boxes[keep], labels=self.labels[keep], difficulty=self.difficulty[keep]
        )


@dataclass(kw_only=True)
class Batch:
    """Several samples for one step, as torch tensors.

    Attributes:
        points: (N, C) float32, the points of all samples concatenated in sample order.
        batch_index: (N,) int64, the sample each point belongs to (non-decreasing).
        boxes: B tensors (M_b, 7) float32, per sample.
        labels: B tensors (M_b,) int64.
        frame_ids: B frame ids.
        difficulty: B tensors (M_b,) int32.
        point_labels: (N,) int64 per-point training class ids (0 ignored), or None when the samples
            have none.
        occupancy: the samples' occupancy targets stacked into torch tensors with a leading B axis
            (baselines too), or None.
        records: B records (or None), as in :class:`Sample`.
    """

    points: torch.Tensor
    batch_index: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    frame_ids: list[str]
    difficulty: list[torch.Tensor] = field(default_factory=list)
    point_labels: torch.Tensor | None = None
    occupancy: OccupancyTargets | None = None
    records: list[FrameRecord | None] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.frame_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch with every tensor on ``device`` (Lightning calls this through ``transfer_batch_to_device``)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            points=move(self.points),
            batch_index=move(self.batch_index),
            boxes=[move(b) for b in self.boxes],
            labels=[move(x) for x in self.labels],
            difficulty=[move(d) for d in self.difficulty],
            point_labels=None if self.point_labels is None else move(self.point_labels),
            occupancy=None if self.occupancy is None else _map_targets(self.occupancy, move),
        )

    def pin_memory(self) -> Batch:
        """Pinned host memory for faster copies to a GPU (the DataLoader calls this with ``pin_memory=True``)."""
        return replace(
            self,
            points=self.points.pin_memory(),
            batch_index=self.batch_index.pin_memory(),
            boxes=[b.pin_memory() for b in self.boxes],
            labels=[x.pin_memory() for x in self.labels],
            difficulty=[d.pin_memory() for d in self.difficulty],
            point_labels=None if self.point_labels is None else self.point_labels.pin_memory(),
            occupancy=None
            if self.occupancy is None
            else _map_targets(self.occupancy, torch.Tensor.pin_memory),
        )


def collate(samples: Sequence[Sample]) -> Batch:
    """Stack samples into a :class:`Batch` (the DataLoader's ``collate_fn``)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    widths = {s.points.shape[1] for s in samples}
    if len(widths) != 1:
        raise ValueError(
            f"samples have different point widths {sorted(widths)}; frames: {[s.frame_id for s in samples]}"
        )
    points = torch.from_numpy(np.concatenate([s.points for s in samples]).astype(np.float32, copy=False))
    batch_index = torch.from_numpy(
        np.concatenate([np.full(len(s.points), i, dtype=np.int64) for i, s in enumerate(samples)])
    )
    with_labels = {s.point_labels is not None for s in samples}
    if len(with_labels) != 1:
        raise ValueError(f"some samples have point labels and some do not: {[s.frame_id for s in samples]}")
    point_labels = None
    if with_labels.pop():
        point_labels = torch.from_numpy(np.concatenate([s.point_labels for s in samples]).astype(np.int64))
    with_occupancy = {s.occupancy is not None for s in samples}
    if len(with_occupancy) != 1:
        raise ValueError(
            f"some samples have occupancy targets and some do not: {[s.frame_id for s in samples]}"
        )
    occupancy = _stack_targets([s.occupancy for s in samples]) if with_occupancy.pop() else None
    return Batch(
        points=points,
        batch_index=batch_index,
        boxes=[torch.from_numpy(np.ascontiguousarray(s.boxes, dtype=np.float32)) for s in samples],
        labels=[torch.from_numpy(np.ascontiguousarray(s.labels, dtype=np.int64)) for s in samples],
        frame_ids=[s.frame_id for s in samples],
        difficulty=[torch.from_numpy(np.ascontiguousarray(s.difficulty, dtype=np.int32)) for s in samples],
        point_labels=point_labels,
        occupancy=occupancy,
        records=[s.record for s in samples],
    )


def _stack(arrays) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in arrays]))


def _stack_targets(targets: Sequence[OccupancyTargets]) -> OccupancyTargets:
    """One :class:`OccupancyTargets` of (B, ...) tensors from per-sample NumPy ones."""
    names = sorted(set.intersection(*(set(t.baselines) for t in targets)))
    return OccupancyTargets(
        waypoint_times=_stack([t.waypoint_times for t in targets]),
        observed=_stack([t.observed for t in targets]),
        occluded=_stack([t.occluded for t in targets]),
        flow=_stack([t.flow for t in targets]),
        flow_origin=_stack([t.flow_origin for t in targets]),
        current=_stack([t.current for t in targets]),
        baselines={
            n: OccupancyForecast(
                observed=_stack([t.baselines[n].observed for t in targets]),
                occluded=_stack([t.baselines[n].occluded for t in targets]),
                flow=_stack([t.baselines[n].flow for t in targets]),
            )
            for n in names
        },
    )


def _map_targets(t: OccupancyTargets, fn) -> OccupancyTargets:
    """The batched targets with ``fn`` applied to every tensor."""
    return OccupancyTargets(
        waypoint_times=fn(t.waypoint_times),
        observed=fn(t.observed),
        occluded=fn(t.occluded),
        flow=fn(t.flow),
        flow_origin=fn(t.flow_origin),
        current=fn(t.current),
        baselines={
            n: OccupancyForecast(observed=fn(f.observed), occluded=fn(f.occluded), flow=fn(f.flow))
            for n, f in t.baselines.items()
        },
    )
