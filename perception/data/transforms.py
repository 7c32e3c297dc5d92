"""Transforms: small callables ``Sample -> Sample`` that augment and filter a frame.

Every transform is called as ``transform(sample, rng)`` with an explicit :class:`numpy.random.Generator`
and returns a new :class:`~perception.structures.Sample` (the input is never edited in place), so a
seed reproduces a run and the same sample can be augmented twice. They are plain classes with typed
``__init__`` arguments, so a LightningCLI config builds them with ``class_path`` / ``init_args``::

    train_transforms:
      - class_path: perception.data.transforms.GroundTruthSampling
        init_args: {database: data/synthetic/gt_database, sample_counts: {Car: 15, Pedestrian: 10, Cyclist: 10}}
      - class_path: perception.data.transforms.RandomFlip
      - class_path: perception.data.transforms.GlobalRotation
        init_args: {max_angle: 0.785}
      - class_path: perception.data.transforms.RangeFilter
        init_args: {point_cloud_range: [0, -40, -3, 70.4, 40, 1]}

Everything is in the sensor frame (x forward, y left, z up, metres); boxes are ``(M, 7)``
``[x, y, z, l, w, h, yaw]`` with yaw wrapped to [-π, π). The global motions are also available as
pure functions (:func:`rotate`, :func:`scale`, :func:`flip`, :func:`translate`) with the parameter
given instead of drawn. :class:`GroundTruthSampling` pastes objects from a
:class:`~perception.data.database.GroundTruthDatabase`.
"""

from __future__ import annotations

import abc
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from perception.data.database import GroundTruthDatabase
from perception.geometry.boxes import points_in_boxes, wrap_angle
from perception.ops.iou3d import boxes_iou_bev
from perception.structures import KittiRecord, Sample

__all__ = [
    "CameraFovFilter",
    "Compose",
    "GlobalRotation",
    "GlobalScaling",
    "GlobalTranslation",
    "GroundTruthSampling",
    "IntensityJitter",
    "IntensityNormalize",
    "ObjectNoise",
    "PointJitter",
    "PointShuffle",
    "RandomFlip",
    "RangeFilter",
    "SensorTilt",
    "Transform",
    "flip",
    "rotate",
    "scale",
    "tilt",
    "translate",
]


class Transform(abc.ABC):
    """A ``Sample -> Sample`` step; randomness only from the generator passed in."""

    @abc.abstractmethod
    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """A new sample (``sample`` itself is left unchanged)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


# --------------------------------------------------------------------------------------------------
# the global motions as pure functions


def _turn(xy: NDArray, angle: float) -> NDArray[np.float64]:
    """(N, 2) x, y rotated counter-clockwise by ``angle`` about the origin, in float64.

    Written out rather than as ``xy @ R.T``: a (N, 3) × (3, 3) product goes through BLAS, whose
    threads cost tens of milliseconds on a busy machine.
    """
    c, s = math.cos(angle), math.sin(angle)
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    return np.column_stack([c * x - s * y, s * x + c * y])


def _finish(sample: Sample, points: NDArray[np.float32], boxes: NDArray[np.float64]) -> Sample:
    boxes[:, 6] = wrap_angle(boxes[:, 6])
    return sample.replace(points=points, boxes=boxes.astype(np.float32))


def rotate(sample: Sample, angle: float) -> Sample:
    """Rotate the whole frame by ``angle`` radians about +z (counter-clockwise seen from above)."""
    points = sample.points.copy()
    points[:, :2] = _turn(sample.points, angle)
    boxes = sample.boxes.astype(np.float64)
    boxes[:, :2] = _turn(boxes, angle)
    boxes[:, 6] += angle
    return _finish(sample, points, boxes)


def scale(sample: Sample, factor: float) -> Sample:
    """Scale the frame about the sensor origin: coordinates and box sizes times ``factor`` (> 0)."""
    if not factor > 0:
        raise ValueError(f"scale factor must be > 0, got {factor}")
    points = sample.points.copy()
    points[:, :3] = sample.points[:, :3].astype(np.float64) * factor
    boxes = sample.boxes.astype(np.float64)
    boxes[:, :6] *= factor
    return _finish(sample, points, boxes)


def flip(sample: Sample, axis: str) -> Sample:
    """Mirror the frame: ``"x"`` across the x axis (y → −y, yaw → −yaw), ``"y"`` across the y axis
    (x → −x, yaw → π − yaw)."""
    if axis not in ("x", "y"):
        raise ValueError(f"flip axis must be 'x' or 'y', got {axis!r}")
    col = 1 if axis == "x" else 0
    points = sample.points.copy()
    points[:, col] = -points[:, col]
    boxes = sample.boxes.astype(np.float64)
    boxes[:, col] = -boxes[:, col]
    boxes[:, 6] = -boxes[:, 6] if axis == "x" else np.pi - boxes[:, 6]
    return _finish(sample, points, boxes)


def translate(sample: Sample, offset: ArrayLike) -> Sample:
    """Shift the frame (points and box centres) by the (3,) ``offset`` in metres."""
    offset = np.asarray(offset, dtype=np.float64).reshape(3)
    points = sample.points.copy()
    points[:, :3] = sample.points[:, :3].astype(np.float64) + offset
    boxes = sample.boxes.astype(np.float64)
    boxes[:, :3] += offset
    return _finish(sample, points, boxes)


def tilt(sample: Sample, pitch: float, roll: float) -> Sample:
    """Tilt the sensor: rotate the points and the box centres by ``roll`` about +x, then ``pitch``
    about +y (radians; a few degrees at most). Boxes stay upright with their yaw: a tilted sensor
    sees a tilted world, and labels keep gravity's up."""
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)

    def turn(xyz: NDArray) -> NDArray[np.float64]:
        x, y, z = (xyz[:, i].astype(np.float64) for i in range(3))
        y, z = cr * y - sr * z, sr * y + cr * z
        return np.column_stack([cp * x + sp * z, y, -sp * x + cp * z])

    points = sample.points.copy()
    points[:, :3] = turn(sample.points)
    boxes = sample.boxes.astype(np.float64)
    boxes[:, :3] = turn(boxes)
    return _finish(sample, points, boxes)


# --------------------------------------------------------------------------------------------------
# random global augmentation


class SensorTilt(Transform):
    """Tilt the sensor (:func:`tilt`) by a pitch and a roll each drawn uniformly from
    ``[−max_degrees, max_degrees]``: mounting and road-slope differences between the simulator
    and a real car (KITTI's ground rises and falls by a degree or two across a scan)."""

    def __init__(self, max_degrees: float = 1.0) -> None:
        if not 0 <= max_degrees <= 10:
            raise ValueError(f"max_degrees must be in [0, 10], got {max_degrees}")
        self.max_angle = math.radians(float(max_degrees))

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        pitch, roll = rng.uniform(-self.max_angle, self.max_angle, 2)
        return tilt(sample, float(pitch), float(roll))


class GlobalRotation(Transform):
    """Rotate the frame about +z by an angle drawn uniformly from [−max_angle, max_angle] radians."""

    def __init__(self, max_angle: float = math.pi / 4) -> None:
        if max_angle < 0:
            raise ValueError(f"max_angle must be >= 0, got {max_angle}")
        self.max_angle = float(max_angle)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return rotate(sample, float(rng.uniform(-self.max_angle, self.max_angle)))


class GlobalScaling(Transform):
    """Scale the frame about the origin by a factor drawn uniformly from [min_scale, max_scale]."""

    def __init__(self, min_scale: float = 0.95, max_scale: float = 1.05) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return scale(sample, float(rng.uniform(self.min_scale, self.max_scale)))


class RandomFlip(Transform):
    """Flip across each of ``axes`` (``"x"``: y → −y; ``"y"``: x → −x) with ``probability`` each.

    KITTI sees only the front half (x > 0), so it flips across the x axis only (the default);
    360° sensors (Waymo) flip across both.
    """

    def __init__(self, axes: Sequence[str] = ("x",), probability: float = 0.5) -> None:
        bad = [a for a in axes if a not in ("x", "y")]
        if bad:
            raise ValueError(f"flip axes must be 'x' or 'y', got {bad}")
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        self.axes, self.probability = tuple(axes), float(probability)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for axis in self.axes:
            if rng.random() < self.probability:  # drawn for every axis, so draws don't depend on outcomes
                sample = flip(sample, axis)
        return sample


class GlobalTranslation(Transform):
    """Shift the frame by an offset drawn from N(0, std²) per axis; ``std`` in metres, one or three."""

    def __init__(self, std: float | Sequence[float] = 0.2) -> None:
        std_arr = np.broadcast_to(np.asarray(std, dtype=np.float64), (3,))
        if (std_arr < 0).any():
            raise ValueError(f"std must be >= 0, got {std}")
        self.std = tuple(float(s) for s in std_arr)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return translate(sample, rng.normal(0.0, self.std))


class PointJitter(Transform):
    """Move every point by its own offset from N(0, std²) per axis, clipped to ±``clip`` (metres).

    Only x, y, z change (attributes, boxes and per-point labels stay), as Pointcept's
    ``RandomJitter`` does for segmentation.
    """

    def __init__(self, std: float = 0.01, clip: float = 0.05) -> None:
        if std < 0 or clip < 0:
            raise ValueError(f"std and clip must be >= 0, got {std}, {clip}")
        self.std, self.clip = float(std), float(clip)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        noise = np.clip(rng.normal(0.0, self.std, (len(sample.points), 3)), -self.clip, self.clip)
        points = sample.points.copy()
        points[:, :3] = sample.points[:, :3] + noise.astype(np.float32)
        return sample.replace(points=points)


class PointShuffle(Transform):
    """Permute the points at random (the point set, boxes and labels are unchanged)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return sample.select_points(rng.permutation(len(sample.points)))


# --------------------------------------------------------------------------------------------------
# filters


class RangeFilter(Transform):
    """Keep the points inside ``point_cloud_range`` and the boxes whose centre is inside it in BEV.

    ``point_cloud_range`` is ``[x_min, y_min, z_min, x_max, y_max, z_max]`` metres. Intervals are
    half-open, ``[min, max)``, as the voxel grid's cells are: every kept point and every kept box
    centre falls in a cell of the grid (a box centre is tested on x and y only, so a box is kept
    whatever its height; OpenPCDet's ``mask_boxes_outside_range`` with its centre test does the same
    in BEV).
    """

    def __init__(self, point_cloud_range: Sequence[float]) -> None:
        pcr = np.asarray(point_cloud_range, dtype=np.float64)
        if pcr.shape != (6,) or not (pcr[:3] < pcr[3:]).all():
            raise ValueError(
                f"point_cloud_range must be [x_min, y_min, z_min, x_max, y_max, z_max] with min < max, "
                f"got {list(point_cloud_range)}"
            )
        self.point_cloud_range = tuple(float(v) for v in pcr)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        r = self.point_cloud_range
        p, b = sample.points, sample.boxes
        keep_points = np.ones(len(p), bool)
        for axis in range(3):  # column by column: a third of the time of a (N, 3) comparison
            keep_points &= (p[:, axis] >= r[axis]) & (p[:, axis] < r[axis + 3])
        keep_boxes = (b[:, 0] >= r[0]) & (b[:, 0] < r[3]) & (b[:, 1] >= r[1]) & (b[:, 1] < r[4])
        return sample.select_boxes(keep_boxes).select_points(keep_points)


class CameraFovFilter(Transform):
    """Keep the points that project into the camera image (in front of it, inside its borders).

    KITTI labels objects only in the front camera's view, so points outside it would teach a model
    that the unlabelled cars there are background (OpenPCDet's ``FOV_POINTS_ONLY``). Uses the frame's
    record's calibration and image shape (:class:`~perception.structures.KittiRecord`),
    or ``image_shape`` where the frame has no image (the synthetic data: KITTI's 375 × 1242). The
    calibration describes the frame as read, so this must come before any geometric augmentation.
    Boxes are kept (labelled objects are in view).
    """

    def __init__(self, image_shape: tuple[int, int] = (375, 1242)) -> None:
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        record = sample.record
        if not isinstance(record, KittiRecord):
            raise ValueError(
                f"sample {sample.frame_id}: CameraFovFilter needs a KittiRecord (a camera calibration), "
                f"got {type(record).__name__}"
            )
        height, width = record.image_shape or self.image_shape
        p = record.calib.lidar_to_image_matrix
        x, y, z = (sample.points[:, k].astype(np.float64) for k in range(3))
        u, v, w = (p[r, 0] * x + p[r, 1] * y + p[r, 2] * z + p[r, 3] for r in range(3))
        # u / w in [0, width) and v / w in [0, height), in front of the camera (w > 0).
        keep = (w > 0) & (u >= 0) & (u < width * w) & (v >= 0) & (v < height * w)
        return sample.select_points(keep)


def _check_attribute_column(column: int) -> None:
    """An intensity-like transform's ``column`` must be an attribute column (x, y, z are 0-2)."""
    if column < 3:
        raise ValueError(f"column must be an attribute column (>= 3), got {column}")


def _require_column(sample: Sample, column: int) -> None:
    """The sample's points must have ``column`` (the message names the sample)."""
    if sample.points.shape[1] <= column:
        raise ValueError(
            f"sample {sample.frame_id}: points have {sample.points.shape[1]} columns, no column {column}"
        )


class IntensityJitter(Transform):
    """Randomise the intensity column as another sensor (or its gain) would report it.

    Per frame: a gain drawn from ``[min_gain, max_gain]`` and a floor from ``[0, max_floor]``; per
    point: relative noise N(0, ``noise``²). Values under the floor become 0 and the result is clipped
    to [0, 1] (KITTI's reflectance range); the gain and floor make a model lean less on one sensor's
    exact intensity response.
    """

    def __init__(
        self,
        min_gain: float = 0.7,
        max_gain: float = 1.3,
        max_floor: float = 0.08,
        noise: float = 0.1,
        column: int = 3,
    ) -> None:
        if not 0 < min_gain <= max_gain:
            raise ValueError(f"need 0 < min_gain <= max_gain, got {min_gain}, {max_gain}")
        if max_floor < 0 or noise < 0:
            raise ValueError(f"max_floor and noise must be >= 0, got {max_floor}, {noise}")
        _check_attribute_column(column)
        self.min_gain, self.max_gain = float(min_gain), float(max_gain)
        self.max_floor, self.noise, self.column = float(max_floor), float(noise), int(column)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _require_column(sample, self.column)
        gain = rng.uniform(self.min_gain, self.max_gain)
        floor = rng.uniform(0.0, self.max_floor)
        jitter = 1.0 + rng.normal(0.0, self.noise, len(sample.points))
        points = sample.points.copy()
        v = points[:, self.column].astype(np.float64) * gain * jitter
        points[:, self.column] = np.where(v < floor, 0.0, np.clip(v, 0.0, 1.0))
        return sample.replace(points=points)


class IntensityNormalize(Transform):
    """Normalise the intensity column: ``v / scale`` (``mode="linear"``) or ``tanh(v / scale)``.

    KITTI reflectance is already in [0, 1] (``scale=1`` leaves it); Waymo intensity is unbounded and
    usually squashed with ``mode="tanh"``. The result is clipped to ``[0, clip]`` when ``clip`` is set.
    """

    def __init__(
        self, scale: float = 1.0, column: int = 3, mode: str = "linear", clip: float | None = None
    ) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if mode not in ("linear", "tanh"):
            raise ValueError(f"mode must be 'linear' or 'tanh', got {mode!r}")
        _check_attribute_column(column)
        self.scale, self.column, self.mode, self.clip = float(scale), int(column), mode, clip

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _require_column(sample, self.column)
        points = sample.points.copy()
        v = points[:, self.column] / np.float32(self.scale)
        if self.mode == "tanh":
            v = np.tanh(v)
        if self.clip is not None:
            v = np.clip(v, 0.0, self.clip)
        points[:, self.column] = v
        return sample.replace(points=points)


# --------------------------------------------------------------------------------------------------
# per-object augmentation


class ObjectNoise(Transform):
    """Move each object (its box and the points inside it) by its own random rigid motion.

    For each box in turn, ``num_tries`` candidate motions are drawn: a rotation about the box's
    vertical axis uniform in [−rotation_max, rotation_max] radians and a translation from
    N(0, translation_std²) per axis (metres). The first candidate whose moved box does not overlap
    (BEV IoU > 0) any other box, at its current place, is applied; if none fits, the object stays.
    A point inside several boxes moves with the first of them (lowest index).
    """

    def __init__(
        self,
        rotation_max: float = math.pi / 20,
        translation_std: float | Sequence[float] = 0.25,
        num_tries: int = 100,
    ) -> None:
        if rotation_max < 0 or num_tries < 1:
            raise ValueError(f"need rotation_max >= 0 and num_tries >= 1, got {rotation_max}, {num_tries}")
        self.rotation_max = float(rotation_max)
        self.translation_std = tuple(
            float(s) for s in np.broadcast_to(np.asarray(translation_std, np.float64), (3,))
        )
        self.num_tries = int(num_tries)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        m = len(sample.boxes)
        if m == 0:
            return sample.replace()
        boxes = sample.boxes.astype(np.float64)
        xyz = sample.points[:, :3].astype(np.float64)
        owner = points_in_boxes(xyz, boxes)
        # All draws up front: the stream consumed does not depend on which candidates fit.
        shifts = rng.normal(0.0, self.translation_std, size=(m, self.num_tries, 3))
        turns = rng.uniform(-self.rotation_max, self.rotation_max, size=(m, self.num_tries))
        for i in range(m):
            candidates = np.repeat(boxes[i : i + 1], self.num_tries, axis=0)
            candidates[:, :3] += shifts[i]
            candidates[:, 6] = wrap_angle(candidates[:, 6] + turns[i])
            others = np.delete(boxes, i, axis=0)
            free = np.ones(self.num_tries, bool)
            if len(others):
                free = boxes_iou_bev(candidates, others).max(axis=1) <= 0
            if not free.any():
                continue
            j = int(np.argmax(free))
            inside = owner == i
            centre = boxes[i, :3]
            moved = xyz[inside] - centre
            moved[:, :2] = _turn(moved, turns[i, j])
            xyz[inside] = moved + centre + shifts[i, j]
            boxes[i] = candidates[j]
        points = sample.points.copy()
        points[:, :3] = xyz
        return sample.replace(points=points, boxes=boxes.astype(np.float32))


class GroundTruthSampling(Transform):
    """Paste objects from a ground-truth database into the frame, without collisions.

    For each class in ``sample_counts``, ``count − (objects of that class already in the frame)``
    objects are drawn (``count`` itself with ``fill=False``), where they were in their source frame.
    Candidates are accepted in order when their BEV IoU with every box of the frame and every box
    accepted before is 0. "Every box of the frame" includes the objects of other classes (Van,
    Truck, Misc, ... — not in ``sample.boxes``) that the sample's record lists in
    ``record.boxes_lidar``: those boxes are in the frame as read, so this transform
    must come before any geometric augmentation (as in :func:`~perception.data.datamodules.default_train_transforms`). The scene points inside an accepted box are removed and the object's points
    added; labels are the class's index in ``class_names``, difficulty the database's.

    Args:
        database: the database folder (loaded on first use, so a config or a DataLoader worker only
            carries the path) or a loaded :class:`~perception.data.database.GroundTruthDatabase`.
        sample_counts: class name → target count, e.g. ``{"Car": 15, "Pedestrian": 10, "Cyclist": 10}``.
        class_names: the task's classes (labels index into them); every key of ``sample_counts``
            must be one of them.
        min_points: class → fewest points a stored object needs to be drawn (default 5 for each
            class in ``sample_counts``).
        difficulties: draw only objects of these levels (default 0, 1, 2: not KITTI's "none").
        fill: count what the frame already has towards ``sample_counts``.
    """

    def __init__(
        self,
        database: str | os.PathLike | GroundTruthDatabase,
        sample_counts: Mapping[str, int],
        class_names: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
        min_points: Mapping[str, int] | None = None,
        difficulties: Sequence[int] | None = (0, 1, 2),
        fill: bool = True,
    ) -> None:
        unknown = sorted(set(sample_counts) - set(class_names))
        if unknown:
            raise ValueError(f"sample_counts names {unknown}, not in class_names {list(class_names)}")
        self.database = database if isinstance(database, GroundTruthDatabase) else str(database)
        self.sample_counts = {str(k): int(v) for k, v in sample_counts.items()}
        self.class_names = tuple(class_names)
        self.min_points = dict(min_points) if min_points is not None else dict.fromkeys(sample_counts, 5)
        self.difficulties = None if difficulties is None else tuple(difficulties)
        self.fill = bool(fill)
        self._db: GroundTruthDatabase | None = None

    def _database(self) -> GroundTruthDatabase:
        if self._db is None:
            if isinstance(self.database, GroundTruthDatabase):
                self._db = self.database.filtered(self.min_points, self.difficulties)
            else:
                self._db = GroundTruthDatabase(self.database, self.min_points, self.difficulties)
        return self._db

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        if not isinstance(self.database, GroundTruthDatabase):
            state["_db"] = None  # workers load it from the path themselves
        return state

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        db = self._database()
        candidates = []
        for name, count in self.sample_counts.items():
            label = self.class_names.index(name)
            k = count - int((sample.labels == label).sum()) if self.fill else count
            candidates += [(label, obj) for obj in db.sample(name, k, rng)]
        if not candidates:
            return sample.replace()
        boxes = np.stack([obj.box for _, obj in candidates]).astype(np.float64)
        scene_boxes = sample.boxes.astype(np.float64)
        others = sample.record.boxes_lidar if sample.record is not None else None
        if others is not None and len(others):
            scene_boxes = np.concatenate([scene_boxes, np.asarray(others, np.float64).reshape(-1, 7)])
        hit_scene = boxes_iou_bev(boxes, scene_boxes).max(axis=1, initial=0.0) > 0
        overlap = boxes_iou_bev(boxes, boxes) > 0
        accepted: list[int] = []
        for i in range(len(candidates)):
            if not hit_scene[i] and not overlap[i, accepted].any():
                accepted.append(i)
        if not accepted:
            return sample.replace()

        pasted = boxes[accepted]
        scene = sample.points[points_in_boxes(sample.points, pasted) < 0]
        pieces = [scene]
        for i in accepted:
            pts = candidates[i][1].load_points()
            if pts.shape[1] != scene.shape[1]:
                raise ValueError(
                    f"database {db.folder} stores {pts.shape[1]} point columns, the frame has {scene.shape[1]}"
                )
            pts = pts.copy()
            pts[:, :3] += boxes[i, :3].astype(np.float32)
            pieces.append(pts)
        return sample.replace(
            points=np.concatenate(pieces),
            boxes=np.concatenate([sample.boxes, pasted.astype(np.float32)]),
            labels=np.concatenate([sample.labels, np.array([candidates[i][0] for i in accepted], np.int64)]),
            difficulty=np.concatenate(
                [sample.difficulty, np.array([candidates[i][1].difficulty for i in accepted], np.int32)]
            ),
        )
