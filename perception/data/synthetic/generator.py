"""One synthetic frame: sample (or reuse) the world, ray cast the sweep, apply the sensor model, label.

A frame is a pure function of ``(config, seed, index, layout)``: the world comes from
``SeedSequence([seed, index, 0])`` for an independent frame, or ``SeedSequence([seed, SEQUENCE_TAG,
sequence])`` for a frame of a sequence (shared by its frames), and the sensor's randomness
(noise, dropout, pass-through) from ``SeedSequence([seed, index, 1])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from perception.data.kitti import KittiFrame, KittiObjects, kitti_difficulty
from perception.data.synthetic.camera import image_boxes, sample_calibration
from perception.data.synthetic.config import SyntheticConfig
from perception.data.synthetic.lidar import beam_pattern, finish_returns, sample_range_noise
from perception.data.synthetic.raycast import cast_rays
from perception.data.synthetic.scene import SceneAtTime, World, group_bounds, sample_world
from perception.geometry.boxes import wrap_angle
from perception.geometry.camera import observation_angle

__all__ = ["SEQUENCE_TAG", "SequenceLayout", "SyntheticFrame", "generate_frame", "world_for"]

SEQUENCE_TAG = 0x5E0
_OBJECT_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Cyclist")


@dataclass(frozen=True)
class SequenceLayout:
    """How ``frames`` frames split into ``sequences`` runs of consecutive frames (sizes differ by ≤ 1).

    ``sequences=0`` means independent frames (every frame its own scene, no motion).
    """

    frames: int
    sequences: int = 0

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be ≥ 1, got {self.frames}")
        if not 0 <= self.sequences <= self.frames:
            raise ValueError(f"sequences must be in [0, frames={self.frames}], got {self.sequences}")

    def bounds(self, sequence: int) -> tuple[int, int]:
        """First and one-past-last frame index of a sequence."""
        return sequence * self.frames // self.sequences, (sequence + 1) * self.frames // self.sequences

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(sequence, step, length)`` of a frame; ``(-1, 0, 1)`` for independent frames."""
        if not 0 <= index < self.frames:
            raise IndexError(f"frame index {index} out of range [0, {self.frames})")
        if self.sequences == 0:
            return -1, 0, 1
        seq = ((index + 1) * self.sequences - 1) // self.frames
        while self.bounds(seq)[0] > index:
            seq -= 1
        while self.bounds(seq)[1] <= index:
            seq += 1
        start, end = self.bounds(seq)
        return seq, index - start, end - start


@dataclass(kw_only=True)
class SyntheticFrame(KittiFrame):
    """A generated frame: a :class:`KittiFrame` (what ``load_frame`` would return, before the label
    files' rounding) plus the generator's ground truth.

    Attributes:
        frame_index: index in the dataset; sequence: sequence id (-1 for an independent frame);
            step: index within the sequence.
        point_object: (N,) int32 index of the labelled object (into ``boxes_lidar``) each point hit, or -1.
        point_track: (N,) int32 track id of the object hit (labelled or not), or -1 (ground, clutter).
        point_semantic: (N,) uint8 class of the surface hit (:data:`.shapes.SEMANTIC_CLASSES`).
        point_ring: (N,) uint8 laser index, 0 = top beam.
        point_speed: (N,) float32 speed (m/s, world frame) of the object each point hit, labelled or
            not; 0 for ground and clutter. None for frames built without it.
        track_ids: (M,) int64 track id of each labelled object (stable across a sequence's frames).
        points_per_object: (M,) int32 lidar points on each labelled object.
        hidden_fraction: (M,) float32 share of the object's rays blocked by something nearer.
        velocity: (M, 2) float32 velocity in the world frame (m/s).
        dontcare_track_ids: (K,) track ids of the DontCare regions' objects.
    """

    frame_index: int
    sequence: int = -1
    step: int = 0
    point_object: NDArray[np.int32]
    point_track: NDArray[np.int32]
    point_semantic: NDArray[np.uint8]
    point_ring: NDArray[np.uint8]
    track_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    points_per_object: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    hidden_fraction: NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    velocity: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    dontcare_track_ids: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    point_speed: NDArray[np.float32] | None = None

    def label_objects(self) -> KittiObjects:
        """The label file's rows: the objects, then one DontCare row per ``dontcare_bbox``."""
        k = len(self.dontcare_bbox)
        dc = KittiObjects(
            names=np.full(k, "DontCare", dtype="<U16"),
            truncated=np.full(k, -1, np.float32),
            occluded=np.full(k, -1, np.int32),
            alpha=np.full(k, -10, np.float32),
            bbox=self.dontcare_bbox,
            boxes_camera=np.tile([-1000.0, -1000.0, -1000.0, -1.0, -1.0, -1.0, -10.0], (k, 1)),
        )
        objs = self.objects()
        return KittiObjects(
            names=np.concatenate([objs.names, dc.names]),
            truncated=np.concatenate([objs.truncated, dc.truncated]),
            occluded=np.concatenate([objs.occluded, dc.occluded]),
            alpha=np.concatenate([objs.alpha, dc.alpha]),
            bbox=np.concatenate([objs.bbox, dc.bbox]).astype(np.float32),
            boxes_camera=np.concatenate([objs.boxes_camera, dc.boxes_camera]),
        )


@lru_cache(maxsize=4)
def _sequence_world(config: SyntheticConfig, seed: int, sequence: int, length: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, SEQUENCE_TAG, sequence]))
    calib = sample_calibration(rng, config.calib_jitter)
    world = sample_world(rng, config, duration=(length - 1) / config.frame_rate_hz)
    return world, calib


def world_for(config: SyntheticConfig, seed: int, index: int, layout: SequenceLayout | None = None):
    """``(world, calibration, sequence, step, time_s)`` of a frame."""
    layout = layout or SequenceLayout(index + 1, 0)
    seq, step, length = layout.locate(index)
    if seq < 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, index, 0]))
        calib = sample_calibration(rng, config.calib_jitter)
        return sample_world(rng, config, 0.0), calib, -1, 0, 0.0
    world, calib = _sequence_world(config, seed, seq, length)
    return world, calib, seq, step, step / config.frame_rate_hz


def _culling(scene: SceneAtTime, config: SyntheticConfig):
    """Per-group sin-elevation intervals and the column → groups CSR."""
    pattern = beam_pattern(config)
    n_cols = len(pattern.azimuth)
    lo, hi = group_bounds(scene.shapes, scene.group_start, scene.group_end)
    g = len(lo)
    corners_x = np.stack([lo[:, 0], hi[:, 0], hi[:, 0], lo[:, 0]], 1)
    corners_y = np.stack([lo[:, 1], lo[:, 1], hi[:, 1], hi[:, 1]], 1)
    rho_max = np.hypot(corners_x, corners_y).max(1)
    nx = np.clip(0.0, lo[:, 0], hi[:, 0])
    ny = np.clip(0.0, lo[:, 1], hi[:, 1])
    rho_min = np.hypot(nx, ny)
    el = np.arctan2(
        np.stack([lo[:, 2], lo[:, 2], hi[:, 2], hi[:, 2]], 1), np.stack([rho_min, rho_max] * 2, 1)
    )
    el_lo = np.sin(el.min(1)) - 1e-4
    el_hi = np.sin(el.max(1)) + 1e-4

    centre = np.arctan2((lo[:, 1] + hi[:, 1]) / 2, (lo[:, 0] + hi[:, 0]) / 2)
    rel = wrap_angle(np.arctan2(corners_y, corners_x) - centre[:, None])
    c0 = pattern.column_of(centre + rel.min(1)) - 1
    c1 = pattern.column_of(centre + rel.max(1)) + 1
    count = np.mod(c1 - c0, n_cols) + 1
    around = rho_min < 0.05
    count[around] = n_cols
    c0[around] = 0
    keep = rho_min <= config.max_range
    count = np.where(keep, np.minimum(count, n_cols), 0)
    total = int(count.sum())
    groups = np.repeat(np.arange(g), count)
    starts = np.repeat(np.cumsum(count) - count, count)
    cols = np.mod(np.repeat(c0, count) + np.arange(total) - starts, n_cols)
    order = np.argsort(cols, kind="stable")
    col_groups = groups[order].astype(np.int64)
    col_ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n_cols))]).astype(np.int64)
    return el_lo, el_hi, col_ptr, col_groups


def road_params(world: World) -> NDArray[np.float64]:
    """(8,) ground-material parameters for :func:`.lidar.finish_returns`: curvature, asphalt
    reflectance, lane width, road edge, then curb offset and sidewalk width right and left."""
    info = world.info
    return np.array(
        [
            world.road.curvature,
            info["asphalt"],
            world.config.lane_width,
            info["road_edge"],
            info["right"]["curb"],
            info["right"]["sidewalk"],
            info["left"]["curb"],
            info["left"]["sidewalk"],
        ]
    )


def generate_frame(
    config: SyntheticConfig, seed: int, index: int, layout: SequenceLayout | None = None
) -> SyntheticFrame:
    """Generate frame ``index`` of a dataset (see the module docstring for the seeding).

    Args:
        config: the generator's knobs.
        seed: the dataset's seed.
        index: frame index (its file name is ``f"{index:06d}"``).
        layout: the sequence layout; None for an independent frame.
    """
    world, calib, seq, step, t = world_for(config, seed, index, layout)
    scene = world.at(t)
    pattern = beam_pattern(config)
    n_beams, n_cols = len(pattern.elevation), len(pattern.azimuth)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))

    el_lo, el_hi, col_ptr, col_groups = _culling(scene, config)
    ground, waves, bump, slope = scene.ground
    n_obj = len(scene.actors)
    out_t = np.empty((n_cols, n_beams))
    out_prim = np.empty((n_cols, n_beams), np.int32)
    out_cos = np.ones((n_cols, n_beams))
    own_hits = np.zeros(n_obj, np.int64)
    first_hits = np.zeros(n_obj, np.int64)
    sh = scene.shapes
    cast_rays(
        np.sin(pattern.elevation),
        np.cos(pattern.elevation),
        np.cos(pattern.azimuth),
        np.sin(pattern.azimuth),
        ground,
        waves,
        bump,
        slope,
        config.max_range,
        np.ascontiguousarray(sh.params),
        sh.kind,
        sh.pass_through,
        scene.group_start,
        scene.group_end,
        el_lo,
        el_hi,
        scene.group_object,
        col_ptr,
        col_groups,
        int(rng.integers(2**62)),
        out_t,
        out_prim,
        out_cos,
        own_hits,
        first_hits,
    )

    # --- sensor model -----------------------------------------------------------------------
    n_rays = n_cols * n_beams
    drop_u = rng.random(n_rays, dtype=np.float32)
    noise = sample_range_noise(rng, n_rays, config)
    # Additive noise for the Lambertian model; relative (5σ as large) for KITTI's.
    inten_std = config.intensity_noise_std * (5.0 if config.intensity_model == "kitti" else 1.0)
    inten_noise = rng.standard_normal(n_rays, dtype=np.float32) * np.float32(inten_std)
    group_of_prim = np.repeat(np.arange(len(scene.group_start)), scene.group_end - scene.group_start)
    prim_obj = scene.group_object[group_of_prim] if len(group_of_prim) else np.zeros(0, np.int64)
    buf = np.empty((n_rays, 4), np.float32)
    actor = np.empty(n_rays, np.int64)
    sem = np.empty(n_rays, np.uint8)
    ray = np.empty(n_rays, np.int64)
    n = finish_returns(
        out_t,
        out_prim,
        out_cos,
        np.sin(pattern.elevation),
        np.cos(pattern.elevation),
        np.cos(pattern.azimuth),
        np.sin(pattern.azimuth),
        drop_u,
        noise,
        inten_noise,
        sh.reflectance,
        sh.retro,
        sh.semantic,
        prim_obj,
        scene.pose,
        road_params(world),
        config.min_range,
        config.dropout,
        config.min_return,
        config.intensity_falloff_range,
        config.intensity_model == "kitti",
        config.intensity_knee,
        config.intensity_range,
        config.intensity_power,
        config.intensity_floor,
        buf,
        actor,
        sem,
        ray,
    )
    points = buf[:n].copy()
    actor, sem, ray = actor[:n], sem[:n].copy(), ray[:n]

    # --- labels -----------------------------------------------------------------------------
    image_shape = (config.image_height, config.image_width)
    npts = np.bincount(actor[actor >= 0], minlength=n_obj)
    hidden = np.where(own_hits > 0, 1.0 - first_hits / np.maximum(own_hits, 1), 1.0)
    bbox, trunc, in_front = image_boxes(scene.boxes, calib, image_shape)
    dist = np.hypot(scene.boxes[:, 0], scene.boxes[:, 1])
    visible = (
        in_front & (trunc < config.max_truncation) & (bbox[:, 2] > bbox[:, 0]) & (bbox[:, 3] > bbox[:, 1])
    )
    if config.label_all_around:
        bbox = np.where(visible[:, None], bbox, 0.0)
        trunc = np.where(visible, trunc, 1.0)
        visible = np.ones(n_obj, bool)
    labelled = visible & (npts >= config.min_points) & (dist <= config.label_max_distance)
    dontcare = visible & (npts >= 1) & ~labelled if config.dontcare else np.zeros(n_obj, bool)
    lab = np.flatnonzero(labelled)
    occ_t = config.occlusion_thresholds
    occlusion = np.where(hidden[lab] > occ_t[1], 2, np.where(hidden[lab] > occ_t[0], 1, 0)).astype(np.int32)
    boxes = scene.boxes[lab]
    cam = calib.boxes_lidar_to_camera(boxes)
    label_of_actor = np.full(n_obj + 1, -1, np.int32)
    label_of_actor[lab] = np.arange(len(lab), dtype=np.int32)
    track_of_actor = np.array([a.track_id for a in scene.actors] + [-1], dtype=np.int32)
    speed_of_actor = np.append(np.hypot(*scene.velocity_world.reshape(-1, 2).T), 0.0).astype(np.float32)
    names = np.array([scene.actors[i].cls for i in lab], dtype="<U16")
    trunc_l = np.round(trunc[lab], 2).astype(np.float32)
    bbox_l = np.round(bbox[lab], 2).astype(np.float32)
    return SyntheticFrame(
        frame_id=f"{index:06d}",
        frame_index=index,
        sequence=seq,
        step=step,
        points=points,
        boxes=boxes.astype(np.float32),
        names=names,
        difficulty=kitti_difficulty(bbox_l, occlusion, trunc_l),
        pose=scene.pose,
        timestamp_micros=_timestamp(seq, step, config),
        bbox=bbox_l,
        truncated=trunc_l,
        occluded=occlusion,
        alpha=observation_angle(cam).astype(np.float32),
        boxes_camera=cam,
        dontcare_bbox=np.round(bbox[dontcare], 2).astype(np.float32),
        calib=calib,
        image_shape=image_shape,
        point_object=label_of_actor[actor],
        point_track=track_of_actor[actor],
        point_semantic=sem,
        point_ring=np.mod(ray, n_beams).astype(np.uint8),
        track_ids=track_of_actor[lab].astype(np.int64),
        points_per_object=npts[lab].astype(np.int32),
        hidden_fraction=hidden[lab].astype(np.float32),
        velocity=scene.velocity_world[lab].astype(np.float32),
        dontcare_track_ids=track_of_actor[np.flatnonzero(dontcare)].astype(np.int64),
        point_speed=speed_of_actor[actor],
    )


def _timestamp(seq: int, step: int, config: SyntheticConfig) -> int:
    """Microseconds: sequences start an hour apart; frames are ``1 / frame_rate_hz`` apart."""
    return max(seq, 0) * 3_600_000_000 + round(step * 1e6 / config.frame_rate_hz)


def object_classes() -> tuple[str, ...]:
    """The KITTI types the generator labels."""
    return _OBJECT_CLASSES
