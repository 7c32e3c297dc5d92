"""Detection evaluators: the metric plug-ins a task takes by ``class_path`` (KITTI AP, Waymo mAP/mAPH).

An evaluator owns its metric and the conversion from the task's outputs (one
:class:`~perception.structures.Detections` per sample, labels indexing the task's class names) and the
batch's records (:class:`~perception.structures.KittiRecord`, :class:`~perception.structures.WaymoRecord`)
into that metric's input. A task calls :meth:`Evaluator.bind` once with its class names, then
``update`` for every evaluated batch and ``compute`` / ``reset`` at the end of the epoch. Evaluators are
``nn.Module``\\ s, so their ``torchmetrics`` states follow the task to its device and gather under DDP;
they hold no weights (a checkpoint's keys are the same with or without them).

The same conversions serve the prediction writers (:mod:`perception.tasks.writers`), so a metric and
the files written from the same detections always agree: :func:`kitti_result_objects` (rounded as a
result file holds them) and :func:`waymo_objects`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
from torchmetrics import Metric

from perception.data.kitti import as_written, objects_from_lidar_boxes
from perception.eval.base import BaseEvaluator
from perception.eval.kitti import MIN_OVERLAPS, KittiAP
from perception.eval.waymo import BREAKDOWNS, IOU_THRESHOLDS, WaymoAP
from perception.structures import (
    TYPE_CODES,
    Batch,
    Detections,
    KittiObjects,
    KittiRecord,
    WaymoObjects,
    WaymoRecord,
)

__all__ = [
    "DEFAULT_IMAGE_SHAPE",
    "Evaluator",
    "KittiEvaluator",
    "WaymoEvaluator",
    "kitti_result_objects",
    "waymo_objects",
]

DEFAULT_IMAGE_SHAPE: tuple[int, int] = (375, 1242)
"""``(height, width)`` of KITTI's image 2, used to clip 2D boxes where a frame has no image."""


def _labels_to_names(detections: Detections, class_names: Sequence[str]) -> np.ndarray:
    labels = detections.labels.detach().cpu().numpy()
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"detection labels {sorted(set(labels.tolist()))} do not index {list(class_names)}")
    return np.asarray(class_names, dtype="<U16")[labels] if len(labels) else np.zeros(0, dtype="<U16")


def kitti_result_objects(
    detections: Detections, record: KittiRecord, class_names: Sequence[str]
) -> KittiObjects:
    """One sample's detections as KITTI result rows, rounded exactly as the result file holds them.

    Camera boxes through the record's calibration, 2D boxes projected and clipped to its image (KITTI's
    375 × 1242 where it has none), alpha from the camera box, scores; truncation and occlusion -1 as
    the devkit asks of result files. A metric fed these rows gives the AP of the written files.
    """
    return as_written(
        objects_from_lidar_boxes(
            detections.boxes.detach().double().cpu().numpy(),
            _labels_to_names(detections, class_names),
            record.calib,
            scores=detections.scores.detach().float().cpu().numpy(),
            image_shape=record.image_shape or DEFAULT_IMAGE_SHAPE,
        )
    )


def waymo_objects(detections: Detections, class_names: Sequence[str]) -> WaymoObjects:
    """One sample's detections as the objects of a Waymo submission (vehicle frame, Label.Type codes).

    Raises:
        ValueError: a class name is not a Waymo type (``VEHICLE``, ``PEDESTRIAN``, ``SIGN``, ``CYCLIST``).
    """
    unknown = sorted(set(class_names) - set(TYPE_CODES))
    if unknown:
        raise ValueError(f"classes {unknown} are not Waymo types {sorted(TYPE_CODES)}")
    names = _labels_to_names(detections, class_names)
    return WaymoObjects(
        boxes=detections.boxes.detach().double().cpu().numpy().reshape(-1, 7),
        types=np.array([TYPE_CODES[n] for n in names], dtype=np.int64),
        scores=detections.scores.detach().float().cpu().numpy(),
    )


class Evaluator(BaseEvaluator):
    """A detection task's metric plug-in (see the module docstring and
    :class:`~perception.eval.base.BaseEvaluator`).

    Subclasses set ``kind`` (the record their samples carry), ``known`` (the classes their metric
    defines) and implement :meth:`make_metric` and :meth:`update`; :attr:`progress_key` names the result
    for the progress bar. ``classes`` chooses what to score: None for every class of the task the
    metric defines.
    """

    def __init__(self, classes: Sequence[str] | None = None) -> None:
        super().__init__()
        self.classes = None if classes is None else tuple(classes)

    def known(self) -> Collection[str]:
        """The class names the metric defines."""
        raise NotImplementedError

    def make_metric(self, classes: tuple[str, ...]) -> Metric:
        """The metric over ``classes`` (called by :meth:`bind`)."""
        raise NotImplementedError

    def bind(self, class_names: Sequence[str]) -> None:
        """Called once by the task with its class names (detection labels index into them).

        Raises:
            ValueError: ``classes`` names classes the task does not have, or (``classes`` None) no
                class of the task is one the metric defines.
        """
        name, known = type(self).__name__, self.known()
        self.class_names = tuple(class_names)
        if self.classes is None:
            classes = tuple(c for c in self.class_names if c in known)
            if not classes:
                raise ValueError(
                    f"{name}: none of the task's classes {list(self.class_names)} is one it scores "
                    f"({sorted(known)}); name the classes to score"
                )
        else:
            missing = sorted(set(self.classes) - set(self.class_names))
            if missing:
                raise ValueError(f"{name}: classes {missing} are not the task's {list(self.class_names)}")
            classes = self.classes
        self.metric = self.make_metric(classes)

    def update(self, detections: Sequence[Detections], batch: Batch) -> None:
        """Add one batch: ``detections[i]`` are the predictions for ``batch``'s sample i."""
        raise NotImplementedError


class KittiEvaluator(Evaluator):
    """The KITTI devkit's AP (:class:`~perception.eval.kitti.KittiAP`) on samples carrying a :class:`KittiRecord`.

    Predictions are the result rows :func:`kitti_result_objects` makes (what the result files hold);
    ground truth is every labelled object of the record (all types, so Vans and Person_sitting are
    ignored as the devkit ignores them, and DontCare regions).

    Args:
        classes: the classes to score; None scores every class of the task the devkit has thresholds
            for (:data:`~perception.eval.kitti.MIN_OVERLAPS`: Car, Pedestrian, Cyclist, Van,
            Person_sitting, Truck).
        overlaps: ``"strict"`` (the official IoU thresholds) or ``"loose"``.
        headline: the result keys (without the class) logged every validation.
    """

    kind = KittiRecord

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        overlaps: str = "strict",
        headline: Sequence[str] = ("3d/easy_R40", "3d/moderate_R40", "3d/hard_R40", "bev/moderate_R40"),
    ) -> None:
        super().__init__(classes)
        if overlaps not in MIN_OVERLAPS:
            raise ValueError(
                f"KittiEvaluator: overlaps must be one of {sorted(MIN_OVERLAPS)}, got {overlaps!r}"
            )
        self.overlaps = overlaps
        self.headline_keys = tuple(headline)

    def known(self) -> Collection[str]:
        return MIN_OVERLAPS[self.overlaps]

    def make_metric(self, classes: tuple[str, ...]) -> KittiAP:
        return KittiAP(classes=classes, overlaps=self.overlaps)

    def update(self, detections: Sequence[Detections], batch: Batch) -> None:
        records = self.records(batch)
        rows = [
            kitti_result_objects(d, r, self.class_names) for d, r in zip(detections, records, strict=True)
        ]
        self.bound().update(rows, [r.ground_truth() for r in records])

    @property
    def progress_key(self) -> str | None:
        return f"{self.scored_classes[0]}_3d/moderate_R40" if self.scored_classes else None

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        keys = [f"{c}_{k}" for c in self.scored_classes for k in self.headline_keys]
        return {k: results[k] for k in keys if k in results and not math.isnan(results[k])}

    def curves(self) -> dict[str, np.ndarray]:
        return dict(self.bound().last_curves)


class WaymoEvaluator(Evaluator):
    """The official Waymo mAP / mAPH (:class:`~perception.eval.waymo.WaymoAP`) on samples carrying a
    :class:`WaymoRecord`: detections as :func:`waymo_objects`, ground truth every labelled object of
    the record (its official difficulty levels and lidar point counts).

    Results are flat: ``{CLASS}_LEVEL_{1|2}/mAP`` and ``/mAPH`` (and the ``RANGE`` breakdown's keys
    when asked for).

    Args:
        classes: the classes to score; None: every class of the task that is a Waymo type.
        breakdowns: ``OBJECT_TYPE`` (always) and optionally ``RANGE``.
    """

    kind = WaymoRecord

    def __init__(
        self, classes: Sequence[str] | None = None, breakdowns: Sequence[str] = ("OBJECT_TYPE",)
    ) -> None:
        super().__init__(classes)
        unknown = sorted(set(breakdowns) - set(BREAKDOWNS))
        if unknown:
            raise ValueError(f"WaymoEvaluator: unknown breakdowns {unknown}; choose from {list(BREAKDOWNS)}")
        self.breakdowns = tuple(b for b in BREAKDOWNS if b == "OBJECT_TYPE" or b in breakdowns)

    def known(self) -> Collection[str]:
        return IOU_THRESHOLDS

    def make_metric(self, classes: tuple[str, ...]) -> WaymoAP:
        return WaymoAP(classes=classes, breakdowns=self.breakdowns)

    def update(self, detections: Sequence[Detections], batch: Batch) -> None:
        records = self.records(batch)
        preds = [waymo_objects(d, self.class_names) for d in detections]
        self.bound().update(preds, [r.objects for r in records])

    def compute(self) -> dict[str, float]:
        return {f"{key}/{m}": v for key, r in self.bound().compute().items() for m, v in r.items()}

    @property
    def progress_key(self) -> str | None:
        return f"{self.scored_classes[0]}_LEVEL_2/mAPH" if self.scored_classes else None

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in results.items() if "RANGE" not in k and not math.isnan(v)}
