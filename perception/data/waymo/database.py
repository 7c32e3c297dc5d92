"""The ground-truth database of a converted Waymo training split, for ground-truth sampling.

:func:`build_waymo_gt_database` writes the format that
:class:`~perception.data.database.GroundTruthDatabase` reads — the points inside each box of the
training classes, x, y, z relative to the box centre (translation only, vehicle axes), then the
dataset's attributes, one ``.npy`` per object, and a JSON index. The stored points have the columns
that :class:`~perception.data.waymo.dataset.WaymoDetectionDataset` gives with the same
``point_columns`` / ``intensity_tanh`` (the default: x, y, z, tanh(intensity), elongation), so
:class:`~perception.data.transforms.GroundTruthSampling` can paste them into its samples. Built from
the train split only (never from val: that would leak validation objects into training).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from perception.data import database as gt_database_format
from perception.data.database import INDEX_NAME
from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.data.waymo.convert import run_jobs
from perception.data.waymo.converted import (
    frame_file,
    load_frame_arrays,
    missing_waymo_message,
    model_points,
    parse_frame_key,
    read_split,
    split_file,
)

__all__ = ["build_waymo_gt_database"]


def _gt_segment(
    root: Path,
    split: str,
    context: str,
    timestamps: Sequence[int],
    out: Path,
    class_names: Sequence[str],
    point_columns: int,
    intensity_tanh: bool,
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """The database objects of one segment's frames (their ``.npy`` written), in frame order."""
    from perception.geometry.boxes import points_in_boxes_mask

    objects = []
    for timestamp in timestamps:
        arrays = load_frame_arrays(frame_file(root, split, context, timestamp))
        keep = np.flatnonzero(np.isin(arrays["names"], list(class_names)))
        if len(keep):
            points = model_points(arrays["points"], point_columns, intensity_tanh)
            boxes = arrays["boxes"][keep]
            inside = points_in_boxes_mask(points, boxes)
            frame_id = f"{context}_{timestamp}"
            for k, j in enumerate(keep):
                name = str(arrays["names"][j])
                pts = points[inside[:, k]]
                pts[:, :3] -= boxes[k, :3]
                rel = f"{name}/{frame_id}_{j:03d}.npy"
                atomic_write_bytes(out / rel, gt_database_format._npy_bytes(pts), fsync=False)
                objects.append(
                    {
                        "name": name,
                        "box": [float(v) for v in boxes[k]],
                        "num_points": len(pts),
                        "difficulty": int(arrays["difficulty"][j]),
                        "frame_id": frame_id,
                        "path": rel,
                    }
                )
        if progress is not None:
            progress(1)
    return objects


def build_waymo_gt_database(
    root: str | os.PathLike,
    split: str = "train",
    out: str | os.PathLike | None = None,
    class_names: Sequence[str] = ("VEHICLE", "PEDESTRIAN", "CYCLIST"),
    point_columns: int = 5,
    intensity_tanh: bool = True,
    val_split: str | None = "val",
    workers: int = 1,
    overwrite: bool = False,
    show_progress: bool = False,
) -> dict:
    """Write the ground-truth database of a converted training split (see the module docstring).

    The format is :mod:`perception.data.database`'s (``index.json`` with ``format``, ``version``,
    the settings and one record per object; ``<NAME>/<context>_<timestamp>_<j>.npy`` (P, C) float32
    points relative to the box centre); the index also records ``dataset`` ("waymo"),
    ``point_columns`` and ``intensity_tanh``. Object files are written first, the index last and
    atomically; an index with the same settings whose files all exist is left as it is (unless
    ``overwrite``); files the new index no longer lists are removed afterwards.

    Args:
        root: the converted dataset's root.
        split: the split to read (a training split; ``val_split`` itself is refused).
        out: database folder; default ``ROOT/gt_database``.
        class_names: classes to store, as spelt in the frames (``VEHICLE``, ``PEDESTRIAN``, ...).
        point_columns, intensity_tanh: the point columns stored, as
            :func:`~perception.data.waymo.converted.model_points` makes them (they must match the
            dataset's for ground-truth sampling).
        val_split: a split whose frames must not be in ``split`` (checked where its file exists).
        workers: processes (spawned); segments are shared among them.

    Returns:
        ``path``, ``frames``, ``objects``, ``class_counts``, ``skipped`` (up to date, left as it was).
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "gt_database"
    if val_split is not None and split == val_split:
        raise ValueError(
            f"the ground-truth database must come from training frames, not the '{val_split}' split"
        )
    if not split_file(root, split).is_file():
        raise FileNotFoundError(missing_waymo_message(root, split))
    keys = read_split(root, split)
    if val_split is not None and split_file(root, val_split).is_file():
        shared = sorted(set(keys) & set(read_split(root, val_split)))
        if shared:
            raise ValueError(
                f"split '{split}' shares {len(shared)} frames with '{val_split}' (e.g. {shared[:3]}); "
                "the ground-truth database must not hold validation objects"
            )
    settings = {
        "source_root": str(root.resolve()),
        "split": split,
        "split_folder": split,
        "class_names": list(class_names),
        "frames": keys,
        "dataset": "waymo",
        "point_columns": int(point_columns),
        "intensity_tanh": bool(intensity_tanh),
    }
    index_path = out / INDEX_NAME
    old = gt_database_format._read_index(index_path)
    if (
        not overwrite
        and old is not None
        and all(old.get(k) == v for k, v in settings.items())
        and all((out / o["path"]).is_file() for o in old["objects"])
    ):
        return gt_database_format._summary(index_path, old, skipped=True)

    segments: dict[str, list[int]] = {}
    for key in keys:
        context, timestamp = parse_frame_key(key)
        segments.setdefault(context, []).append(timestamp)
    jobs = [
        ((root, split, context, stamps, out, tuple(class_names), point_columns, intensity_tanh), {})
        for context, stamps in segments.items()
    ]
    results = run_jobs(_gt_segment, jobs, workers, len(keys), "gt database", show=show_progress)
    objects: list[dict] = []
    for ok, result in results:
        if not ok:
            raise result
        objects += result
    index = {
        "format": gt_database_format._FORMAT,
        "version": gt_database_format._VERSION,
        **settings,
        "point_dim": int(point_columns),
        "objects": objects,
    }
    atomic_write_text(index_path, json.dumps(index, separators=(",", ":")) + "\n")
    if old is not None:
        current = {o["path"] for o in objects}
        for o in old.get("objects", []):
            if o["path"] not in current:
                (out / o["path"]).unlink(missing_ok=True)
    return gt_database_format._summary(index_path, index, skipped=False)
