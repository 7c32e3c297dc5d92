"""Ground-truth database: the points of every labelled training object, for ground-truth sampling.

Built once from the training split (never from the val split: pasting val objects into training
frames would leak them) by :func:`build_gt_database` or ``tools/build_gt_database.py``::

    OUT/                           default ROOT/gt_database
      index.json                   the index (JSON, no pickle), written last and atomically
      Car/000001_003.npy           (P, C) float32: object 3 of frame 000001, the points inside its box,
      Pedestrian/...               x, y, z relative to the box centre (translation only, sensor axes),
                                   then the scan's attributes (KITTI: reflectance)

``index.json`` holds ``format``, ``version``, the build settings (``source_root``, ``split``,
``split_folder``, ``class_names``, ``frames``), ``point_dim`` and ``objects``: one record per object
with ``name``, ``box`` (7 floats ``[x, y, z, l, w, h, yaw]``, sensor frame of its source frame),
``num_points``, ``difficulty`` (KITTI 0/1/2, -1 none), ``frame_id`` and ``path`` (relative to OUT).

:class:`GroundTruthDatabase` loads the index, filters it (points per class, difficulty) and draws
objects with an explicit generator; :class:`~perception.data.transforms.GroundTruthSampling` pastes
them into training frames.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.io import atomic_write_bytes, atomic_write_text
from perception.data.kitti import load_frame, read_split
from perception.geometry.boxes import points_in_boxes_mask

__all__ = ["INDEX_NAME", "DatabaseObject", "GroundTruthDatabase", "build_gt_database"]

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
_FORMAT = "perception-gt-database"
_VERSION = 1


# --------------------------------------------------------------------------------------------------
# building


def _npy_bytes(array: NDArray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _check_not_val(root: Path, split: str, frame_ids: list[str], val_split: str | None) -> None:
    if val_split is None:
        return
    if split == val_split:
        raise ValueError(
            f"the ground-truth database must come from training frames, not the '{val_split}' split"
        )
    val_file = root / "ImageSets" / f"{val_split}.txt"
    if val_file.is_file():
        shared = sorted(set(frame_ids) & set(read_split(root, val_split)))
        if shared:
            raise ValueError(
                f"split '{split}' shares {len(shared)} frames with '{val_split}' (e.g. {shared[:5]}); "
                "the ground-truth database must not hold validation objects"
            )


def _read_index(path: Path) -> dict | None:
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return index if isinstance(index, dict) and index.get("format") == _FORMAT else None


def build_gt_database(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    split: str = "train",
    class_names: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
    split_folder: str = "training",
    val_split: str | None = "val",
    overwrite: bool = False,
) -> dict:
    """Write the ground-truth database of ``split`` (see the module docstring for the layout).

    Args:
        root: KITTI-layout dataset root (real KITTI or synthetic).
        out: database folder; default ``ROOT/gt_database``.
        split: the ImageSets split to read objects from (a training split).
        class_names: object types to store, as spelt in the label files.
        split_folder: ``training`` (the folder with labels).
        val_split: a split whose frames must not appear in ``split`` (checked when its file exists);
            None skips the check.
        overwrite: rebuild even when an index with the same settings and all its files exist.

    Returns:
        A summary: ``path`` (the index), ``frames``, ``objects``, ``class_counts`` and ``skipped``
        (True where an up-to-date database was found and left as it was).

    Re-running is safe: object files and then the index are written atomically, so a killed build
    leaves the previous index (or none) valid; files of the previous index that the new one no
    longer lists are removed after the new index is in place.
    """
    root = Path(root)
    out = Path(out) if out is not None else root / "gt_database"
    frame_ids = read_split(root, split)
    _check_not_val(root, split, frame_ids, val_split)
    settings = {
        "source_root": str(root.resolve()),
        "split": split,
        "split_folder": split_folder,
        "class_names": list(class_names),
        "frames": frame_ids,
    }
    index_path = out / INDEX_NAME
    old = _read_index(index_path)
    if (
        not overwrite
        and old is not None
        and all(old.get(k) == v for k, v in settings.items())
        and all((out / o["path"]).is_file() for o in old["objects"])
    ):
        return _summary(index_path, old, skipped=True)

    wanted = set(class_names)
    objects: list[dict] = []
    point_dim = None
    for frame_id in frame_ids:
        frame = load_frame(root, frame_id, split_folder)
        point_dim = frame.points.shape[1]
        keep = np.flatnonzero(np.isin(frame.names, list(wanted)))
        if not len(keep):
            continue
        boxes = frame.boxes[keep]
        inside = points_in_boxes_mask(frame.points, boxes)
        for k, j in enumerate(keep):
            name = str(frame.names[j])
            pts = frame.points[inside[:, k]].copy()
            pts[:, :3] -= boxes[k, :3]
            rel = f"{name}/{frame.frame_id}_{j:03d}.npy"
            atomic_write_bytes(out / rel, _npy_bytes(pts.astype(np.float32)), fsync=False)
            objects.append(
                {
                    "name": name,
                    "box": [float(v) for v in boxes[k]],
                    "num_points": len(pts),
                    "difficulty": int(frame.difficulty[j]),
                    "frame_id": frame.frame_id,
                    "path": rel,
                }
            )
    index = {"format": _FORMAT, "version": _VERSION, **settings, "point_dim": point_dim, "objects": objects}
    atomic_write_text(index_path, json.dumps(index, separators=(",", ":")) + "\n")
    if old is not None:
        current = {o["path"] for o in objects}
        for o in old.get("objects", []):
            if o["path"] not in current:
                (out / o["path"]).unlink(missing_ok=True)
    log.debug("ground-truth database %s: %d objects from %d frames", out, len(objects), len(frame_ids))
    return _summary(index_path, index, skipped=False)


def _summary(index_path: Path, index: dict, skipped: bool) -> dict:
    names = [o["name"] for o in index["objects"]]
    return {
        "path": str(index_path),
        "frames": len(index["frames"]),
        "objects": len(names),
        "class_counts": {c: names.count(c) for c in index["class_names"]},
        "skipped": skipped,
    }


# --------------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class DatabaseObject:
    """One stored object.

    Attributes:
        name: its class, as spelt in the label files.
        box: (7,) float32 ``[x, y, z, l, w, h, yaw]`` where it was, in its source frame's sensor frame.
        num_points: points stored.
        difficulty: KITTI level 0/1/2, -1 none.
        frame_id: the source frame.
        path: its ``.npy`` file.
    """

    name: str
    box: NDArray[np.float32]
    num_points: int
    difficulty: int
    frame_id: str
    path: Path

    def load_points(self) -> NDArray[np.float32]:
        """(P, C) float32 points, x, y, z relative to the box centre, then the attributes."""
        points = np.load(self.path, allow_pickle=False)
        if points.ndim != 2 or len(points) != self.num_points:
            raise ValueError(f"{self.path}: expected ({self.num_points}, C) points, got {points.shape}")
        return points.astype(np.float32, copy=False)


class GroundTruthDatabase:
    """The objects of a ground-truth database, optionally filtered.

    Args:
        path: the database folder (or its ``index.json``).
        min_points: per class, the fewest points an object needs to be kept (classes not named: no
            limit), e.g. ``{"Car": 5, "Pedestrian": 5}``.
        difficulties: keep only these levels (e.g. ``(0, 1, 2)`` drops KITTI's "none of them", -1);
            None keeps all.
        class_names: keep only these classes; None keeps all stored ones.

    Attributes (K objects, the same order):
        names: (K,) str; boxes: (K, 7) float32; num_points: (K,) int64; difficulty: (K,) int32;
        frame_ids: (K,) str; files: (K,) str paths relative to ``folder``.
        folder: the database folder; split: the split it was built from; point_dim: C.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        min_points: Mapping[str, int] | None = None,
        difficulties: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        path = Path(path)
        index_path = path if path.suffix == ".json" else path / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(
                f"{index_path}: no ground-truth database; build it with "
                f"`python tools/build_gt_database.py --root DATASET_ROOT --out {index_path.parent}`"
            )
        index = _read_index(index_path)
        if index is None or index.get("version") != _VERSION:
            raise ValueError(f"{index_path}: not a version-{_VERSION} ground-truth database index")
        self.folder = index_path.parent
        self.split: str = index["split"]
        self.point_dim: int | None = index["point_dim"]
        objects = index["objects"]
        self.names = np.array([o["name"] for o in objects], dtype=str)
        self.boxes = np.array([o["box"] for o in objects], dtype=np.float32).reshape(-1, 7)
        self.num_points = np.array([o["num_points"] for o in objects], dtype=np.int64)
        self.difficulty = np.array([o["difficulty"] for o in objects], dtype=np.int32)
        self.frame_ids = np.array([o["frame_id"] for o in objects], dtype=str)
        self.files = np.array([o["path"] for o in objects], dtype=str)
        self._select(self._filter_mask(min_points, difficulties, class_names))

    def filtered(
        self,
        min_points: Mapping[str, int] | None = None,
        difficulties: Sequence[int] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> GroundTruthDatabase:
        """A copy keeping the objects that pass the filters (arguments as in the constructor)."""
        out = copy.copy(self)
        out._select(self._filter_mask(min_points, difficulties, class_names))
        return out

    def _filter_mask(
        self,
        min_points: Mapping[str, int] | None,
        difficulties: Sequence[int] | None,
        class_names: Sequence[str] | None,
    ) -> NDArray[np.bool_]:
        keep = np.ones(len(self.names), bool)
        for name, least in (min_points or {}).items():
            keep &= (self.names != name) | (self.num_points >= least)
        if difficulties is not None:
            keep &= np.isin(self.difficulty, list(difficulties))
        if class_names is not None:
            keep &= np.isin(self.names, list(class_names))
        return keep

    def _select(self, keep: NDArray[np.bool_]) -> None:
        for attr in ("names", "boxes", "num_points", "difficulty", "frame_ids", "files"):
            setattr(self, attr, getattr(self, attr)[keep])
        self._by_class = {str(c): np.flatnonzero(self.names == c) for c in np.unique(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> DatabaseObject:
        return DatabaseObject(
            name=str(self.names[i]),
            box=self.boxes[i],
            num_points=int(self.num_points[i]),
            difficulty=int(self.difficulty[i]),
            frame_id=str(self.frame_ids[i]),
            path=self.folder / str(self.files[i]),
        )

    def __repr__(self) -> str:
        return (
            f"GroundTruthDatabase({str(self.folder)!r}, split={self.split!r}, counts={self.class_counts()})"
        )

    def class_counts(self) -> dict[str, int]:
        """Objects per class after filtering."""
        return {name: len(idx) for name, idx in self._by_class.items()}

    def indices(self, name: str) -> NDArray[np.int64]:
        """(K_name,) int64 positions of the objects of class ``name`` (empty if none)."""
        return self._by_class.get(name, np.zeros(0, np.int64))

    def sample(self, name: str, k: int, rng: np.random.Generator) -> list[DatabaseObject]:
        """``min(k, available)`` distinct objects of class ``name``, drawn uniformly with ``rng``."""
        idx = self.indices(name)
        if k <= 0 or not len(idx):
            return []
        return [self[int(i)] for i in rng.choice(idx, size=min(k, len(idx)), replace=False)]
