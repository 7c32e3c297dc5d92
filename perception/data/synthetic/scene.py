"""Scenes: a road with traffic, sidewalks and clutter on an uneven ground, and the ego vehicle's path.

A :class:`World` is sampled once per sequence (once per frame for independent frames) in the world
frame (the road starts at the origin heading +x). :meth:`World.at` gives the state at time ``t``:
the ego pose and every primitive moved into the lidar frame, grouped per object, ready for the ray
caster. Objects move along the road at constant speed (cars in lanes, cyclists in bike lanes,
pedestrians on sidewalks); clutter (buildings, poles, signs, trees, bushes) is static in the world.

Street cross-section, per side (d is the signed lateral offset, left positive; traffic on the right)::

    lanes | bike lane? | parking strip? | curb, sidewalk (poles, pedestrians) | green strip | buildings
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from perception.data.synthetic.actors import (
    STREET_FURNITURE,
    build_building,
    build_bush,
    build_cyclist,
    build_fence,
    build_hedge,
    build_pedestrian,
    build_pole,
    build_street_furniture,
    build_tree,
    build_vehicle,
    build_wall,
    sample_size,
)
from perception.data.synthetic.config import SyntheticConfig
from perception.data.synthetic.shapes import Shapes, shapes_aabb, transform_shapes
from perception.geometry.boxes import wrap_angle

__all__ = ["Actor", "Ground", "Road", "SceneAtTime", "World", "sample_world", "snap_yaw"]


@dataclass(frozen=True)
class Road:
    """Centre line from the origin heading +x with constant ``curvature`` (1/m, + turns left)."""

    curvature: float

    def heading(self, s: NDArray) -> NDArray:
        return self.curvature * np.asarray(s, dtype=np.float64)

    def point(self, s: NDArray, d: NDArray) -> tuple[NDArray, NDArray]:
        """World (X, Y) of road coordinates: arclength ``s`` along, ``d`` to the left of the centre line."""
        s, d = np.asarray(s, dtype=np.float64), np.asarray(d, dtype=np.float64)
        k = self.curvature
        if abs(k) < 1e-9:
            return s + 0.0 * d, d + 0.0 * s
        th = k * s
        return np.sin(th) / k - d * np.sin(th), (1.0 - np.cos(th)) / k + d * np.cos(th)

    def coords(self, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray]:
        """Inverse of :meth:`point`: (s, d) of world points."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        k = self.curvature
        if abs(k) < 1e-9:
            return x, y
        vx, vy = x, y - 1.0 / k
        d = 1.0 / k - np.sign(k) * np.hypot(vx, vy)
        v0y = -1.0 / k
        phi = np.arctan2(-v0y * vx, v0y * vy)
        return phi / k, d


@dataclass(frozen=True)
class Ground:
    """Height field ``z = a X + b Y + Σ A sin(kx X + ky Y + φ)`` in the world frame."""

    a: float
    b: float
    waves: NDArray[np.float64]  # (K, 4) kx, ky, amplitude, phase

    def height(self, x: NDArray, y: NDArray) -> NDArray:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        z = self.a * x + self.b * y
        for kx, ky, amp, ph in self.waves:
            z = z + amp * np.sin(kx * x + ky * y + ph)
        return z

    def in_lidar_frame(self, pose: NDArray) -> tuple[NDArray, NDArray, float, float]:
        """Kernel parameters ``(ground (3,), waves (K, 4), bump, slope_bound)`` for a level lidar at ``pose``."""
        c, s = pose[0, 0], pose[1, 0]
        tx, ty, tz = pose[:3, 3]
        ground = np.array([self.a * tx + self.b * ty - tz, self.a * c + self.b * s, -self.a * s + self.b * c])
        waves = self.waves.copy()
        kx, ky = self.waves[:, 0], self.waves[:, 1]
        waves[:, 0] = kx * c + ky * s
        waves[:, 1] = -kx * s + ky * c
        waves[:, 3] = kx * tx + ky * ty + self.waves[:, 3]
        bump = float(np.abs(self.waves[:, 2]).sum())
        slope = float(np.hypot(self.a, self.b) + (np.abs(self.waves[:, 2]) * np.hypot(kx, ky)).sum())
        return ground, waves, bump, slope


@dataclass
class Actor:
    """A labelled object moving at constant ``speed`` along the road (negative: towards -s).

    ``heading_offset`` is its yaw relative to the road's tangent (π for oncoming traffic).
    Pedestrians and cyclists are rebuilt each frame for their gait (``phase`` advancing with the
    distance travelled); vehicles and standing pedestrians keep ``shapes``.
    """

    track_id: int
    cls: str
    size: tuple[float, float, float]
    s0: float
    d: float
    speed: float
    heading_offset: float
    shape_seed: int
    phase0: float = 0.0
    shapes: Shapes | None = None

    def shapes_at(self, t: float, config: SyntheticConfig) -> Shapes:
        if self.shapes is not None:
            return self.shapes
        rng = np.random.default_rng(self.shape_seed)
        travelled = abs(self.speed) * t
        if self.cls == "Pedestrian":
            phase = self.phase0 + 2.0 * np.pi * travelled / 1.4
            return build_pedestrian(rng, self.size, config.margin_xy, config.label_margin_z, phase, 1.0)
        phase = self.phase0 + travelled / 0.7  # crank turns per metre (gear ratio ~ 2)
        return build_cyclist(rng, self.size, config.margin_xy, config.label_margin_z, phase)


@dataclass
class SceneAtTime:
    """A world's state at one time, in the lidar frame, packed for :func:`.raycast.cast_rays`.

    Attributes:
        pose: (4, 4) lidar → world.
        shapes: all primitives, sorted by group; ``group_start``/``group_end`` (G,) their ranges;
            ``group_object`` (G,) the index into ``actors`` or -1 for clutter.
        actors: the actors near enough to be seen; ``boxes`` (A, 7) their label boxes in the lidar
            frame; ``velocity_world`` (A, 2) their velocity in the world frame (m/s).
        ground: kernel parameters from :meth:`Ground.in_lidar_frame`.
    """

    pose: NDArray[np.float64]
    shapes: Shapes
    group_start: NDArray[np.int64]
    group_end: NDArray[np.int64]
    group_object: NDArray[np.int64]
    actors: list[Actor]
    boxes: NDArray[np.float64]
    velocity_world: NDArray[np.float64]
    ground: tuple[NDArray, NDArray, float, float]


def snap_yaw(yaw: NDArray) -> NDArray:
    """Nearest yaw whose KITTI ``rotation_y = -yaw - π/2`` has exactly two decimals (labels keep two)."""
    ry = np.round(wrap_angle(-np.asarray(yaw) - np.pi / 2.0), 2)
    return wrap_angle(-ry - np.pi / 2.0)


@dataclass
class World:
    """A sampled scene (see the module docstring)."""

    config: SyntheticConfig
    road: Road
    ground: Ground
    ego_d: float
    ego_speed: float
    ego_yaw_offset: float
    actors: list[Actor]
    clutter: Shapes  # world frame
    clutter_group: NDArray[np.int64]  # (P,) group of each clutter primitive, sorted
    info: dict = field(default_factory=dict)

    def ego_pose(self, t: float) -> NDArray[np.float64]:
        """(4, 4) lidar → world at time ``t``: on the road at the sensor height, level, heading along the lane."""
        s = self.ego_speed * t
        x, y = self.road.point(s, self.ego_d)
        yaw = float(self.road.heading(s)) + self.ego_yaw_offset
        z = float(self.ground.height(x, y)) + self.config.sensor_height
        pose = np.eye(4)
        c, sn = np.cos(yaw), np.sin(yaw)
        pose[:2, :2] = [[c, -sn], [sn, c]]
        pose[:3, 3] = [float(x), float(y), z]
        return pose

    def at(self, t: float) -> SceneAtTime:
        """The scene at time ``t`` (seconds) in the lidar frame."""
        cfg = self.config
        pose = self.ego_pose(t)
        ego_yaw = np.arctan2(pose[1, 0], pose[0, 0])
        rot_t = pose[:3, :3].T

        # Actors: road state at t, then into the lidar frame; drop those out of reach.
        shapes_list: list[Shapes] = []
        yaws: list[NDArray] = []
        trans: list[NDArray] = []
        actors: list[Actor] = []
        boxes: list[NDArray] = []
        vel: list[NDArray] = []
        if self.actors:
            s0 = np.array([a.s0 for a in self.actors])
            speed = np.array([a.speed for a in self.actors])
            d = np.array([a.d for a in self.actors])
            s = s0 + speed * t
            x, y = self.road.point(s, d)
            z = self.ground.height(x, y)
            yaw_w = self.road.heading(s) + np.array([a.heading_offset for a in self.actors])
            local = (np.stack([x, y, z], 1) - pose[:3, 3]) @ rot_t.T
            yaw_l = snap_yaw(yaw_w - ego_yaw)
            tangent = np.stack([np.cos(self.road.heading(s)), np.sin(self.road.heading(s))], 1)
            near = np.hypot(local[:, 0], local[:, 1]) < cfg.max_range + 15.0
            for i in np.flatnonzero(near):
                a = self.actors[i]
                sh = a.shapes_at(t, cfg)
                shapes_list.append(sh)
                yaws.append(np.full(len(sh), yaw_l[i]))
                trans.append(np.broadcast_to(local[i], (len(sh), 3)))
                actors.append(a)
                l, w, h = a.size
                boxes.append(
                    np.array([*local[i, :2], local[i, 2] - cfg.label_margin_z + h / 2, l, w, h, yaw_l[i]])
                )
                vel.append(tangent[i] * speed[i])
        n_actor_prims = [len(sh) for sh in shapes_list]
        if shapes_list:
            act = Shapes.concatenate(shapes_list)
            act.params = transform_shapes(act.params, act.kind, np.concatenate(yaws), np.concatenate(trans))
        else:
            act = Shapes.concatenate([])

        # Clutter: world → lidar, culled by distance.
        clut = self.clutter
        inv_yaw = np.full(len(clut), -ego_yaw)
        offset = np.broadcast_to(-(rot_t @ pose[:3, 3]), (len(clut), 3))
        params = transform_shapes(clut.params, clut.kind, inv_yaw, offset)
        keep = np.hypot(params[:, 0], params[:, 1]) < cfg.max_range + 60.0
        clut = Shapes(
            params=params[keep],
            kind=clut.kind[keep],
            reflectance=clut.reflectance[keep],
            retro=clut.retro[keep],
            pass_through=clut.pass_through[keep],
            semantic=clut.semantic[keep],
        )
        clut_group = self.clutter_group[keep]

        shapes = Shapes.concatenate([act, clut])
        # Group ranges: actors first (one group each), then clutter groups in order.
        ends_a = np.cumsum(n_actor_prims, dtype=np.int64)
        starts_a = ends_a - np.asarray(n_actor_prims, dtype=np.int64)
        if len(clut_group):
            change = np.flatnonzero(np.diff(clut_group)) + 1
            starts_c = np.concatenate([[0], change]).astype(np.int64) + len(act)
            ends_c = np.concatenate([change, [len(clut_group)]]).astype(np.int64) + len(act)
        else:
            starts_c = ends_c = np.zeros(0, np.int64)
        group_start = np.concatenate([starts_a, starts_c])
        group_end = np.concatenate([ends_a, ends_c])
        group_object = np.concatenate([np.arange(len(actors)), np.full(len(starts_c), -1)]).astype(np.int64)
        return SceneAtTime(
            pose=pose,
            shapes=shapes,
            group_start=group_start,
            group_end=group_end,
            group_object=group_object,
            actors=actors,
            boxes=np.array(boxes).reshape(-1, 7),
            velocity_world=np.array(vel).reshape(-1, 2),
            ground=self.ground.in_lidar_frame(pose),
        )


# --------------------------------------------------------------------------------------------------
# sampling


def _sample_ground(rng: np.random.Generator, cfg: SyntheticConfig) -> Ground:
    a, b = rng.uniform(-cfg.ground_slope_max, cfg.ground_slope_max, 2)
    amps = rng.uniform(0.2, 1.0, 3)
    amps *= cfg.ground_bump_amplitude * rng.uniform(0.3, 1.0) / amps.sum()
    lam = rng.uniform(*cfg.ground_bump_wavelength, 3)
    direction = rng.uniform(-np.pi, np.pi, 3)
    k = 2.0 * np.pi / lam
    waves = np.stack([k * np.cos(direction), k * np.sin(direction), amps, rng.uniform(-np.pi, np.pi, 3)], 1)
    return Ground(float(a), float(b), waves)


def _overlaps_circle(s: float, d: float, v: float, r: float, others: list, times: NDArray) -> bool:
    for s2, d2, v2, r2 in others:
        ds = (s - s2) + (v - v2) * times
        if np.any(ds * ds + (d - d2) ** 2 < (r + r2) ** 2):
            return True
    return False


PARKING_LAYOUTS: dict[str, float] = {"parallel": 0.78, "perpendicular": 0.13, "angled": 0.09}
"""Shares of the parking strips' layouts (``parking_layouts=True``, off by default). A quarter of
KITTI's labelled Cars (24.5%) stand more than 30° off the road's axis
(``kitti_labels/label_2_all.txt``): bays, car parks, turning traffic; these shares give 23.6%."""


def _parking_layout(rng: np.random.Generator, cfg: SyntheticConfig) -> str:
    """The layout of one parking strip: always ``"parallel"`` unless ``cfg.parking_layouts``."""
    u = rng.random()  # drawn whatever the config, so the draws after it do not move
    if not cfg.parking_layouts:
        return "parallel"
    names = list(PARKING_LAYOUTS)
    cum = np.cumsum([PARKING_LAYOUTS[n] for n in names])
    return names[int(np.searchsorted(cum, u, side="right").clip(0, len(names) - 1))]


def _add_traffic_cyclists(rng, actors: list, add, edge: float, ahead: float, behind: float) -> None:
    """Cyclists riding in the traffic lanes, at the outer lanes' edges (independent frames only: a
    frame is one instant, so a cyclist only has to clear the vehicles where they stand). About one
    per 100 m of each outer lane, kept clear of every vehicle's footprint by 0.3 m."""
    for direction in (1, -1):
        n = rng.poisson((ahead + behind) / 100.0)
        for _ in range(int(n)):
            size = sample_size(rng, "Cyclist")
            s0 = float(rng.uniform(-behind, ahead))
            d = -direction * (edge - 0.45 - float(rng.uniform(0.0, 0.5)))
            heading = (0.0 if direction == 1 else np.pi) + float(np.clip(rng.normal(0.0, 0.04), -0.1, 0.1))
            phase = float(rng.uniform(0, 6.3))
            vehicles = [a for a in actors if a.cls in ("Car", "Van", "Truck", "Cyclist")]
            clear = abs(s0) > 8.0 and all(  # and clear of the ego vehicle
                abs(v.s0 - s0) > (v.size[0] + size[0]) / 2 + 0.3
                or abs(v.d - d) > (v.size[1] + size[1]) / 2 + 0.3
                for v in vehicles
            )
            if clear:
                add("Cyclist", size, s0, d, direction * float(rng.uniform(3.0, 7.0)), heading, phase0=phase)


def _place_street_clutter(
    rng, place, side: float, curb: float, walk: float, lo: float, hi: float, peds: list, times: NDArray
) -> None:
    """Fences, low walls and hedges behind the sidewalk, bollard runs at the curb, and street
    furniture on the sidewalk clear of the pedestrians ``peds`` (``(s, d, speed, radius)`` over
    ``times``), on one ``side`` (-1 right, +1 left) of the road between ``s`` = lo and hi;
    ``place(shapes, s, d, yaw_offset)`` adds one item. Nothing reaches a labelled object's box."""
    back = curb + walk + 0.15  # just behind the sidewalk (pedestrians stay 0.6 m inside it)
    s = lo + float(rng.uniform(0.0, 15.0))
    while s < hi:  # runs of fence, wall or hedge, with gaps (driveways, entrances)
        length = float(rng.uniform(4.0, 25.0))
        u = rng.random()
        if u < 0.35:
            place(build_fence(rng, length), s + length / 2, side * back, 0.0)
        elif u < 0.6:
            place(build_wall(rng, length), s + length / 2, side * back, 0.0)
        elif u < 0.85:
            place(build_hedge(rng, length), s + length / 2, side * (back + 0.6), 0.0)
        s += length + float(rng.uniform(2.0, 25.0))
    if rng.random() < 0.3:  # a run of bollards at the curb
        s = lo + float(rng.uniform(0.0, hi - lo))
        for k in range(int(rng.integers(3, 12))):
            place(build_street_furniture(rng, "bollard"), s + 1.8 * k, side * (curb + 0.35), 0.0)
    n = rng.poisson(3.0 * (hi - lo) / 100.0)  # furniture: 3 per 100 m of sidewalk
    for _ in range(int(n)):
        kind = STREET_FURNITURE[1 + int(rng.integers(len(STREET_FURNITURE) - 1))]
        radius = 2.4 if kind == "kiosk" else 1.2
        d = side * float(
            rng.uniform(curb + 0.6 + radius / 2, max(curb + 0.7 + radius / 2, back - 0.2 - radius / 2))
        )
        s0 = float(rng.uniform(lo, hi))
        if not _overlaps_circle(s0, d, 0.0, radius, peds, times):
            place(build_street_furniture(rng, kind), s0, d, float(rng.uniform(-0.1, 0.1)))


def sample_world(rng: np.random.Generator, cfg: SyntheticConfig, duration: float = 0.0) -> World:
    """Sample a street scene for a drive of ``duration`` seconds (0 for a single frame)."""
    road = Road(0.0 if rng.random() < 0.4 else float(rng.uniform(-cfg.max_curvature, cfg.max_curvature)))
    ground = _sample_ground(rng, cfg)
    mxy, mz = cfg.margin_xy, cfg.label_margin_z
    lanes = int(rng.integers(cfg.lanes_per_direction[0], cfg.lanes_per_direction[1] + 1))
    lw = cfg.lane_width
    edge = lanes * lw

    ego_lane = int(rng.integers(lanes))
    ego_d = -(ego_lane + 0.5) * lw + float(rng.uniform(-0.2, 0.2))
    ego_speed = 0.0 if rng.random() < 0.15 else float(rng.uniform(4.0, 14.0))
    ego_yaw_offset = float(rng.normal(0.0, 0.01))
    behind = cfg.scene_behind
    ahead = cfg.max_range
    ego_end = ego_speed * duration

    actors: list[Actor] = []
    vehicle_style = (cfg.vehicle_shape, cfg.intensity_model == "kitti")

    def add(cls, size, s0, d, speed, heading, static_shapes=None, phase0=0.0):
        actors.append(
            Actor(
                track_id=len(actors),
                cls=cls,
                size=size,
                s0=float(s0),
                d=float(d),
                speed=float(speed),
                heading_offset=float(heading),
                shape_seed=int(rng.integers(2**63)),
                phase0=float(phase0),
                shapes=static_shapes,
            )
        )

    def window(speed: float, margin: float = 0.0) -> tuple[float, float]:
        """s0 range of objects at ``speed`` that come within the sensor's reach during the drive."""
        rel = (speed - ego_speed) * duration
        return -behind - max(rel, 0.0) - margin, ahead - min(rel, 0.0) + margin

    def vehicle_class() -> str:
        u = rng.random()
        return (
            "Truck"
            if u < cfg.truck_fraction
            else "Van"
            if u < cfg.truck_fraction + cfg.van_fraction
            else "Car"
        )

    # --- moving traffic, one lane at a time (a lane shares one speed, so cars never collide) ----
    for direction in (1, -1):
        for lane in range(lanes):
            d_lane = -direction * (lane + 0.5) * lw
            if direction == 1 and lane == ego_lane:
                speed = ego_speed
            elif direction == 1:
                speed = max(0.0, ego_speed + float(rng.uniform(-3.0, 3.0)))
            else:
                speed = -float(rng.uniform(6.0, 14.0))
            lo, hi = window(speed)
            s = lo + float(rng.exponential(100.0 / cfg.car_density))
            prev_half = 0.0
            while True:
                cls = vehicle_class()
                size = sample_size(rng, cls)
                s += prev_half + size[0] / 2 + 2.0
                if s > hi:
                    break
                prev_half = size[0] / 2
                if direction == 1 and lane == ego_lane and abs(s - (ego_d * 0.0)) < size[0] / 2 + 5.0:
                    s += size[0] / 2 + 6.0  # leave room for the ego vehicle
                    continue
                heading = (0.0 if direction == 1 else np.pi) + float(
                    np.clip(rng.normal(0.0, 0.008), -0.015, 0.015)
                )
                d = d_lane + float(rng.uniform(-0.15, 0.15))
                add(cls, size, s, d, speed, heading, build_vehicle(rng, cls, size, mxy, mz, *vehicle_style))
                s += float(rng.exponential(100.0 / cfg.car_density))

    if cfg.crowds and duration == 0.0:
        _add_traffic_cyclists(rng, actors, add, edge, ahead, behind)

    # --- per side: bike lane, parking strip, sidewalk, green strip, buildings -----------------------
    clutter: list[Shapes] = []
    clutter_pose: list[tuple[float, float, float]] = []  # (s, d, yaw offset) of each clutter item

    def place_clutter(sh: Shapes, s: float, d: float, yaw_offset: float) -> None:
        clutter.append(sh)
        clutter_pose.append((s, d, yaw_offset))

    lo_static, hi_static = -behind - 15.0, ego_end + ahead + 15.0
    side_info = {}
    for side in (-1.0, 1.0):  # right (with the ego's traffic), left
        direction = 1 if side < 0 else -1
        offset = edge
        bike = rng.random() < 0.6
        if bike:
            d_bike = side * (offset + 0.75)
            speed = direction * float(rng.uniform(3.0, 7.0))
            lo, hi = window(speed)
            s = lo + float(rng.exponential(100.0 / cfg.cyclist_density))
            while s < hi:
                size = sample_size(rng, "Cyclist")
                heading = (0.0 if direction == 1 else np.pi) + float(
                    np.clip(rng.normal(0.0, 0.03), -0.08, 0.08)
                )
                add(
                    "Cyclist",
                    size,
                    s,
                    d_bike + rng.uniform(-0.15, 0.15),
                    speed,
                    heading,
                    phase0=rng.uniform(0, 6.3),
                )
                s += size[0] + 3.0 + float(rng.exponential(100.0 / cfg.cyclist_density))
            offset += 1.5
        parking = rng.random() < 0.55
        layout = _parking_layout(rng, cfg)
        if parking and layout == "parallel":
            d_park = side * (offset + 1.1)
            s = lo_static + float(rng.uniform(0.0, 10.0))
            prev_half = 0.0
            while True:
                cls = "Van" if rng.random() < 0.15 else "Car"
                size = sample_size(rng, cls)
                s += prev_half + size[0] / 2 + float(rng.uniform(0.6, 2.5))
                if s > hi_static:
                    break
                prev_half = size[0] / 2
                tilt = float(rng.uniform(-0.15, 0.15)) if rng.random() < 0.1 else float(rng.normal(0.0, 0.02))
                heading = (0.0 if rng.random() < 0.7 * (side < 0) + 0.3 * (side > 0) else np.pi) + tilt
                extent = size[0] * abs(np.sin(tilt)) + size[1] * np.cos(tilt)
                d = d_park + side * float(rng.uniform(-0.1, 0.1)) * (2.2 - extent > 0.2)
                add(cls, size, s, d, 0.0, heading, build_vehicle(rng, cls, size, mxy, mz, *vehicle_style))
                s += size[0] * abs(np.sin(tilt)) + float(
                    rng.exponential(max(100.0 / cfg.parked_density - 5.5, 0.1))
                )
            offset += 2.2
        elif parking:  # bays at an angle to the curb: perpendicular (90°) or angled (45-65°)
            depth = 5.8
            angle = np.pi / 2 if layout == "perpendicular" else float(rng.uniform(np.pi / 4, 0.36 * np.pi))
            lean = 1.0 if rng.random() < 0.5 else -1.0  # which way angled bays lean
            s = lo_static + float(rng.uniform(0.0, 10.0))
            occupancy = float(rng.uniform(0.5, 0.95))
            while s < hi_static:
                cls = "Van" if rng.random() < 0.1 else "Car"
                size = sample_size(rng, cls)
                a = angle + float(rng.normal(0.0, 0.04))
                along = size[0] * abs(np.cos(a)) + size[1] * abs(np.sin(a))
                across = size[0] * abs(np.sin(a)) + size[1] * abs(np.cos(a))
                pitch = max(along, 2.4 / max(abs(np.sin(a)), 0.5)) + float(rng.uniform(0.3, 0.9))
                if rng.random() < occupancy and across < depth - 0.1:
                    # nose in or backed in; the car's front points into the bay or out of it
                    heading = lean * a + (np.pi if rng.random() < 0.5 else 0.0)
                    slack = (depth - across) / 2
                    d = side * (offset + depth / 2 + float(rng.uniform(-slack, slack)) * 0.8)
                    add(
                        cls,
                        size,
                        s + pitch / 2,
                        d,
                        0.0,
                        heading,
                        build_vehicle(rng, cls, size, mxy, mz, *vehicle_style),
                    )
                s += pitch
            offset += depth
        curb = offset
        walk = float(rng.uniform(2.5, 4.5))
        # Poles and signs at the curb.
        s = lo_static + float(rng.uniform(0.0, 20.0))
        while s < hi_static:
            sign = rng.random() < 0.35
            place_clutter(build_pole(rng, sign), s, side * (curb + 0.25), 0.0 if side < 0 else np.pi)
            s += float(rng.uniform(12.0, 35.0))
        # Pedestrians on the sidewalk (no two ever closer than their footprints during the drive).
        peds: list[tuple[float, float, float, float]] = []
        times = np.linspace(0.0, duration, max(2, int(duration * 2) + 1))
        n_peds = rng.poisson(cfg.pedestrian_density * (hi_static - lo_static) / 100.0)
        for _ in range(int(n_peds)):
            walking = rng.random() < 0.7
            speed = float(rng.uniform(0.8, 1.6)) * (1 if rng.random() < 0.5 else -1) if walking else 0.0
            # People in groups of 2-4, side by side (walking) or around a spot (standing).
            group = int(rng.integers(2, 5)) if cfg.crowds and rng.random() < 0.35 else 1
            gap = 0.9 if walking else 1.15
            lo, hi = window(speed)
            room = walk - 1.55 - gap * (group - 1)
            if room < 0:
                group, room = 1, walk - 1.55
            radius = 0.6 + gap * (group - 1) / 2
            for _try in range(8):
                s0 = float(rng.uniform(lo, hi))
                d0 = curb + 0.95 + float(rng.uniform(0.0, room))
                centre = side * (d0 + gap * (group - 1) / 2)
                if not _overlaps_circle(s0, centre, speed, radius, peds, times):
                    break
            else:
                continue
            peds.append((s0, centre, speed, radius))
            for member in range(group):
                d = side * (d0 + gap * member)
                s_m = s0 + (float(rng.uniform(-0.15, 0.15)) if member else 0.0)
                size = sample_size(rng, "Pedestrian")
                if walking:
                    heading = (0.0 if speed > 0 else np.pi) + float(
                        rng.normal(0.0, 0.03 if group > 1 else 0.05)
                    )
                    add("Pedestrian", size, s_m, d, speed, heading, phase0=rng.uniform(0, 6.3))
                else:
                    heading = float(rng.uniform(-np.pi, np.pi))
                    pose_swing = float(rng.uniform(0.0, 0.5))
                    sh = build_pedestrian(rng, size, mxy, mz, float(rng.uniform(0, 6.3)), pose_swing)
                    add("Pedestrian", size, s_m, d, 0.0, heading, sh)
        if cfg.street_clutter:
            _place_street_clutter(rng, place_clutter, side, curb, walk, lo_static, hi_static, peds, times)
        # Green strip: trees and bushes.
        green = 0.0 if rng.random() < 0.3 else float(rng.uniform(1.0, 6.0))
        inner = curb + walk
        if green >= 1.5:
            s = lo_static + float(rng.uniform(0.0, 10.0))
            while s < hi_static:
                crown = float(min(rng.uniform(1.2, 3.0), walk - 0.2))
                place_clutter(
                    build_tree(rng, crown), s, side * (inner + float(rng.uniform(0.5, green - 0.5))), 0.0
                )
                s += float(rng.uniform(6.0, 16.0))
        if green >= 1.0:
            s = lo_static + float(rng.uniform(0.0, 6.0))
            while s < hi_static:
                radius = float(min(rng.uniform(0.4, 1.2), green / 2 - 0.1))
                place_clutter(build_bush(rng, radius), s, side * (inner + green / 2), 0.0)
                s += float(rng.uniform(3.0, 12.0))
        # Buildings.
        if rng.random() < 0.85:
            facade = inner + green + float(rng.uniform(0.0, 2.0))
            s = lo_static - float(rng.uniform(0.0, 20.0))
            while s < hi_static + 20.0:
                length = float(rng.uniform(8.0, 40.0))
                depth = float(rng.uniform(8.0, 15.0))
                height = float(rng.uniform(4.0, 20.0))
                d = side * (facade + float(rng.uniform(0.0, 1.5)))
                place_clutter(
                    build_building(rng, length, depth, height), s + length / 2, d, np.pi if side < 0 else 0.0
                )
                gap = float(rng.uniform(0.5, 3.0)) if rng.random() < 0.5 else float(rng.uniform(5.0, 20.0))
                s += length + gap
        side_info["right" if side < 0 else "left"] = {
            "bike_lane": bike,
            "parking": parking,
            "curb": curb,
            "sidewalk": walk,
            "green": green,
        }

    # Clutter into the world frame, one group per item.
    if clutter:
        poses = np.array(clutter_pose)
        x, y = road.point(poses[:, 0], poses[:, 1])
        z = ground.height(x, y)
        yaw = road.heading(poses[:, 0]) + poses[:, 2]
        counts = np.array([len(c) for c in clutter])
        allc = Shapes.concatenate(clutter)
        allc.params = transform_shapes(
            allc.params, allc.kind, np.repeat(yaw, counts), np.repeat(np.stack([x, y, z], 1), counts, axis=0)
        )
        groups = np.repeat(np.arange(len(clutter)), counts).astype(np.int64)
    else:
        allc, groups = Shapes.concatenate([]), np.zeros(0, np.int64)
    info = {
        "lanes_per_direction": lanes,
        "road_edge": edge,
        "curvature": road.curvature,
        "ego_speed": ego_speed,
        # KITTI's road reads ~0.27 up to 20 m (the real dev scans); Lambertian asphalt is dark.
        "asphalt": float(
            rng.uniform(0.2, 0.34) if cfg.intensity_model == "kitti" else rng.uniform(0.06, 0.14)
        ),
        **side_info,
    }
    return World(cfg, road, ground, ego_d, ego_speed, ego_yaw_offset, actors, allc, groups, info)


def group_bounds(shapes: Shapes, group_start: NDArray, group_end: NDArray) -> tuple[NDArray, NDArray]:
    """(G, 3) lower and upper corners of each group's axis-aligned bounding box."""
    lo, hi = shapes_aabb(shapes.params, shapes.kind)
    if len(group_start) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return np.minimum.reduceat(lo, group_start, axis=0), np.maximum.reduceat(hi, group_start, axis=0)
