"""Waymo submission files: one serialized ``metrics.Objects`` proto holding the objects of many frames.

:func:`read_objects` groups a ``.bin`` file's objects by frame ``(context_name, timestamp_micros)``
into :class:`~perception.structures.WaymoObjects`; :func:`write_objects` writes per-frame objects
(mappings or objects with ``boxes``, ``types`` and the optional fields) atomically. The checks of
those objects (:func:`object_boxes`, :func:`type_codes`, :func:`object_vector`) are the ones
:mod:`perception.eval.waymo` applies to the objects it scores.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from numpy.typing import NDArray

from perception.data.io import atomic_write_bytes
from perception.data.waymo import protos as wpb
from perception.structures.waymo import TYPE_CODES, FrameKey, WaymoObjects

__all__ = ["frame_name", "object_boxes", "object_vector", "read_objects", "type_codes", "write_objects"]


def _field(obj: Any, *keys: str) -> Any:
    """The first of ``keys`` that ``obj`` (mapping or object) has and is not None, else None."""
    for key in keys:
        value = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
        if value is not None:
            return value
    return None


def _as_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array (tensors detached and moved to the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def type_codes(values: Any, n: int, what: str) -> NDArray[np.int64]:
    """(n,) ``Label.Type`` codes from codes or names (``VEHICLE``, ``TYPE_VEHICLE``, any case)."""
    if values is None:
        raise ValueError(f"{what}: needs 'types' (Label.Type codes or names, one per box)")
    array = _as_numpy(values).reshape(-1)
    if len(array) != n:
        raise ValueError(f"{what}: {len(array)} types for {n} boxes")
    if array.dtype.kind in "iub" or (array.dtype.kind == "f" and np.all(array == np.round(array))):
        codes = array.astype(np.int64)
        bad = sorted(set(codes[(codes < 0) | (codes > 4)].tolist()))
        if bad:
            raise ValueError(f"{what}: unknown type codes {bad}; expected Label.Type values 0-4")
        return codes
    names = [str(v).upper().removeprefix("TYPE_") for v in array]
    unknown = sorted({v for v in names if v not in TYPE_CODES})
    if unknown:
        raise ValueError(f"{what}: unknown types {unknown}; expected one of {list(TYPE_CODES)}")
    return np.array([TYPE_CODES[v] for v in names], dtype=np.int64)


def object_boxes(obj: Any, what: str) -> NDArray[np.float64]:
    """(M, 7) float64 ``boxes`` (or ``boxes_lidar``) of a frame's objects, checked (finite, sizes ≥ 0);
    ``what`` names the objects in errors."""
    boxes = _field(obj, "boxes", "boxes_lidar")
    if boxes is None:
        raise ValueError(f"{what}: needs 'boxes' ((M, 7) [x, y, z, l, w, h, heading])")
    boxes = _as_numpy(boxes).astype(np.float64)
    if boxes.size == 0:
        return np.zeros((0, 7))
    if boxes.ndim != 2 or boxes.shape[1] != 7:
        raise ValueError(f"{what}: boxes must be (M, 7) [x, y, z, l, w, h, heading], got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{what}: boxes contain NaN or infinite values")
    if (boxes[:, 3:6] < 0).any():
        raise ValueError(f"{what}: boxes have negative sizes (columns l, w, h must be >= 0)")
    return boxes


def object_vector(value: Any, n: int, dtype: Any, what: str, name: str) -> np.ndarray:
    """``value`` as an (n,) array of ``dtype``: one per box (``name`` says what, in the error)."""
    array = _as_numpy(value).reshape(-1)
    if len(array) != n:
        raise ValueError(f"{what}: {len(array)} {name} for {n} boxes")
    return array.astype(dtype)


def frame_name(key: Any) -> str:
    """A frame key for messages: ``context@timestamp`` for a ``(context_name, timestamp_micros)`` key."""
    if isinstance(key, tuple) and len(key) == 2:
        return f"{key[0]}@{key[1]}"
    return str(key)


def read_objects(path: str | os.PathLike) -> dict[FrameKey, WaymoObjects]:
    """Read a ``.bin`` file holding one serialized ``metrics.Objects`` proto, grouped by frame.

    Returns:
        ``{(context_name, frame_timestamp_micros): WaymoObjects}`` in order of first appearance.
        Scores are the proto's (1.0 where unset), difficulty 0 where unset.

    Raises:
        FileNotFoundError: no such file. ValueError: the bytes are not an ``Objects`` proto.
    """
    path = Path(path)
    message = wpb.Objects()
    try:
        message.ParseFromString(path.read_bytes())
    except DecodeError as err:
        raise ValueError(f"{path}: not a serialized waymo.open_dataset.Objects proto ({err})") from None
    n = len(message.objects)
    boxes = np.empty((n, 7))
    ints = np.empty((n, 4), np.int64)  # type, difficulty, num points, timestamp
    scores = np.empty(n, np.float32)
    nlz = np.empty(n, bool)
    contexts, ids = [], []
    for i, obj in enumerate(message.objects):
        label = obj.object
        box = label.box
        boxes[i] = (box.center_x, box.center_y, box.center_z, box.length, box.width, box.height, box.heading)
        ints[i] = (label.type, label.detection_difficulty_level, label.num_lidar_points_in_box,
                   obj.frame_timestamp_micros)  # fmt: skip
        scores[i] = obj.score
        nlz[i] = obj.overlap_with_nlz
        contexts.append(obj.context_name)
        ids.append(label.id)
    if n == 0:
        return {}
    index: dict[FrameKey, int] = {}
    frame = np.array([index.setdefault((c, int(t)), len(index)) for c, t in zip(contexts, ints[:, 3], strict=True)],
                     dtype=np.int64)  # fmt: skip
    order = np.argsort(frame, kind="stable")
    splits = np.cumsum(np.bincount(frame, minlength=len(index)))[:-1]
    id_array = np.array(ids, dtype=str)
    out = {}
    for key, rows in zip(index, np.split(order, splits), strict=True):
        out[key] = WaymoObjects(
            boxes=boxes[rows],
            types=ints[rows, 0],
            scores=scores[rows],
            difficulty=ints[rows, 1],
            num_lidar_points=ints[rows, 2],
            overlap_with_nlz=nlz[rows],
            ids=id_array[rows],
        )
    return out


def write_objects(path: str | os.PathLike, frames: Mapping[FrameKey, Any], fsync: bool = True) -> Path:
    """Write per-frame objects as one serialized ``metrics.Objects`` proto, atomically.

    Args:
        path: the ``.bin`` file (written to a temporary name in the same folder, then renamed).
        frames: ``{(context_name, frame_timestamp_micros): objects}``; objects as
            :func:`perception.eval.waymo.evaluate` takes them (mappings or objects with ``boxes`` and
            ``types``). ``scores``, ``difficulty`` (non-zero values), ``num_lidar_points``,
            ``overlap_with_nlz`` (true values) and ``ids`` are written where given. A frame without
            objects leaves no trace in the file (the format has no frame records).
        fsync: flush to disk before the rename.
    """
    message = wpb.Objects()
    for key, obj in frames.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"frame keys must be (context_name, timestamp_micros) tuples, got {key!r}")
        context, timestamp = str(key[0]), int(key[1])
        what = f"frame {frame_name(key)}"
        boxes = object_boxes(obj, what)
        n = len(boxes)
        if n == 0:
            continue
        types = type_codes(_field(obj, "types", "type", "names"), n, what).tolist()
        optional = {}
        for name, keys, dtype in (
            ("scores", ("scores", "score"), np.float32),
            ("difficulty", ("difficulty", "detection_difficulty_level"), np.int64),
            ("points", ("num_lidar_points", "num_lidar_points_in_box"), np.int64),
            ("nlz", ("overlap_with_nlz",), bool),
            ("ids", ("ids",), str),
        ):
            value = _field(obj, *keys)
            optional[name] = None if value is None else object_vector(value, n, dtype, what, name).tolist()
        rows = boxes.tolist()
        for i in range(n):
            out = message.objects.add()
            out.context_name = context
            out.frame_timestamp_micros = timestamp
            label = out.object
            box = label.box
            (box.center_x, box.center_y, box.center_z, box.length, box.width, box.height,
             box.heading) = rows[i]  # fmt: skip
            label.type = types[i]
            if optional["scores"] is not None:
                out.score = optional["scores"][i]
            if optional["difficulty"] is not None and optional["difficulty"][i]:
                label.detection_difficulty_level = optional["difficulty"][i]
            if optional["points"] is not None:
                label.num_lidar_points_in_box = optional["points"][i]
            if optional["nlz"] is not None and optional["nlz"][i]:
                out.overlap_with_nlz = True
            if optional["ids"] is not None and optional["ids"][i]:
                label.id = optional["ids"][i]
    return atomic_write_bytes(path, message.SerializeToString(), fsync=fsync)
