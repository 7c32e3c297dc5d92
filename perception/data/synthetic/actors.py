"""Geometry of objects and clutter, built from primitives in the object's local frame.

Local frame: x forward (the heading), y left, z up, the ground contact at z = 0 and the label box
centred on x = y = 0. Object builders take the label box's size ``(l, w, h)`` and keep all geometry
inside it less the margins (``mxy`` on the sides, ``mz`` below and above, the box bottom being at
``z = -mz``), so every lidar return off the object — range noise included — lies in its label box.
Sizes follow KITTI's label statistics.
"""

from __future__ import annotations

import numpy as np

from perception.data.synthetic.shapes import ShapeBuilder, Shapes

__all__ = [
    "CAR_STYLES",
    "KITTI_SIZES",
    "STREET_FURNITURE",
    "build_building",
    "build_bush",
    "build_cyclist",
    "build_fence",
    "build_hedge",
    "build_pedestrian",
    "build_pole",
    "build_rounded_car",
    "build_street_furniture",
    "build_tree",
    "build_vehicle",
    "build_wall",
    "sample_size",
]

KITTI_SIZES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # class: ((mean l, w, h), (std l, w, h)), from the KITTI training labels
    "Car": ((3.9, 1.6, 1.53), (0.4, 0.1, 0.1)),
    "Van": ((5.1, 1.9, 2.2), (0.5, 0.12, 0.2)),
    "Truck": ((10.0, 2.6, 3.3), (2.0, 0.15, 0.3)),
    "Pedestrian": ((0.85, 0.65, 1.75), (0.1, 0.07, 0.1)),
    "Cyclist": ((1.76, 0.6, 1.73), (0.1, 0.05, 0.08)),
}
_SIZE_LIMITS = {
    "Car": ((3.0, 1.4, 1.3), (5.0, 1.9, 1.8)),
    "Van": ((4.2, 1.7, 1.8), (6.2, 2.2, 2.6)),
    "Truck": ((6.5, 2.3, 2.7), (14.0, 2.9, 3.9)),
    "Pedestrian": ((0.6, 0.5, 1.5), (1.1, 0.8, 1.95)),
    "Cyclist": ((1.55, 0.5, 1.55), (1.95, 0.72, 1.9)),
}


def sample_size(rng: np.random.Generator, cls: str) -> tuple[float, float, float]:
    """A label box size ``(l, w, h)`` for ``cls``, Gaussian around KITTI's means, clipped, rounded up to cm."""
    mean, std = KITTI_SIZES[cls]
    lo, hi = _SIZE_LIMITS[cls]
    size = np.clip(rng.normal(mean, std), lo, hi)
    return tuple(float(v) for v in np.ceil(size * 100.0 - 1e-6) / 100.0)


def _paint(rng: np.random.Generator, kitti: bool = False) -> float:
    """A paint's reflectance: dark, mid or light. ``kitti``: as KITTI's sensor sees car paint (the
    real dev scans: median intensity 0.09 on cars within 10 m, 45% of car points at 0, the brightest
    tenth above 0.4), so half dark (under the intensity floor), 35% mid, 15% light."""
    if kitti:
        u = rng.random()
        lo, hi = (0.01, 0.05) if u < 0.5 else (0.05, 0.2) if u < 0.85 else (0.2, 0.45)
        return float(rng.uniform(lo, hi))
    lo, hi = ((0.08, 0.2), (0.25, 0.45), (0.5, 0.75))[int(rng.integers(3))]
    return float(rng.uniform(lo, hi))


CAR_STYLES: dict[str, tuple[float, tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    # style: (share, trunk deck length, rear window reach, belt height / H)
    "saloon": (0.5, (0.55, 0.9), (0.45, 0.75), (0.5, 0.58)),
    "hatchback": (0.3, (0.12, 0.3), (0.25, 0.45), (0.5, 0.58)),
    "suv": (0.2, (0.06, 0.2), (0.12, 0.28), (0.55, 0.63)),
}
"""Body styles of :func:`build_rounded_car` (KITTI's cars are mostly saloons, hatchbacks and
estates / SUVs)."""


def build_rounded_car(
    rng: np.random.Generator, size, mxy: float, mz: float, kitti_paint: bool = True
) -> Shapes:
    """A Car with a rounded body: nose and tail are half-ellipsoids (round in plan and in profile,
    as real cars' bumpers are), the glass cabin has a sloped windshield and rear window (ellipsoid
    caps) and lets about half the rays through onto the seats or out through the far side, an opaque
    roof, wheels and number plates. The style (saloon, hatchback, SUV), hood and deck lengths,
    roundness and paint are drawn from ``rng``; all geometry stays in the label box less the margins.
    """
    l, w, h = size
    L, W, H = l - 2 * mxy, w - 2 * mxy, h - 2 * mz
    paint = _paint(rng, kitti_paint)
    glass = 0.03 if kitti_paint else 0.07
    names = list(CAR_STYLES)
    style = names[int(rng.choice(len(names), p=[CAR_STYLES[n][0] for n in names]))]
    _, deck_range, rear_range, belt_range = CAR_STYLES[style]
    sb = ShapeBuilder()
    r = float(rng.uniform(0.29, 0.35))
    clear = float(rng.uniform(0.14, 0.2))
    half_tyre = 0.1
    y_wheel = W / 2 - half_tyre - 0.02
    overhang = float(rng.uniform(0.75, 0.95))
    for x in (L / 2 - overhang, -(L / 2 - overhang)):
        for side in (-1.0, 1.0):
            y = side * y_wheel
            sb.cylinder((x, y - half_tyre, r), (x, y + half_tyre, r), r, reflectance=0.05, semantic="Car")
    nose = L / 2 - 0.012  # plates stick out 12 mm from the body
    belt = H * float(rng.uniform(*belt_range))
    hb = belt - clear
    zc, rz = clear + 0.45 * hb, 0.55 * hb
    front, rear = float(rng.uniform(0.25, 0.8)), float(rng.uniform(0.15, 0.6))
    sb.box_span((-nose + rear, -W / 2, clear), (nose - front, W / 2, belt), reflectance=paint, semantic="Car")
    sb.ellipsoid((nose - front, 0.0, zc), (front, W / 2, rz), reflectance=paint, semantic="Car")
    sb.ellipsoid((-nose + rear, 0.0, zc), (rear, W / 2, rz), reflectance=paint, semantic="Car")
    for sign in (-1.0, 1.0):
        sb.box(
            (sign * (L / 2 - 0.006), 0.0, zc),
            (0.012, 0.52, 0.12),
            reflectance=0.9,
            retro=True,
            semantic="Car",
        )
    # Cabin: windshield cap, glass box, rear-window cap; roof on top; seats inside.
    inset = float(rng.uniform(0.06, 0.14))
    ry, rc = W / 2 - inset, H - belt
    hood = float(rng.uniform(0.85, 1.3)) if style != "suv" else float(rng.uniform(0.8, 1.1))
    screen = float(rng.uniform(0.55, 0.9))
    deck, reach = float(rng.uniform(*deck_range)), float(rng.uniform(*rear_range))
    x_front = nose - hood - screen  # the roof's front edge
    x_back = -nose + deck + reach  # the roof's back edge
    if x_front - x_back < 0.4:  # short cars: shrink the caps, keep a roof
        excess = 0.4 - (x_front - x_back)
        screen -= excess / 2
        reach -= excess / 2
        x_front, x_back = nose - hood - screen, -nose + deck + reach
    pt = float(rng.uniform(0.35, 0.65))
    sb.ellipsoid((x_front, 0.0, belt), (screen, ry, rc), reflectance=glass, semantic="Car", pass_through=pt)
    sb.ellipsoid((x_back, 0.0, belt), (reach, ry, rc), reflectance=glass, semantic="Car", pass_through=pt)
    sb.box_span(
        (x_back, -ry, belt), (x_front, ry, H - 0.04), reflectance=glass, semantic="Car", pass_through=pt
    )
    sb.box_span(
        (x_back - 0.05, -ry + 0.03, H - 0.04),
        (x_front + 0.05, ry - 0.03, H),
        reflectance=paint,
        semantic="Car",
    )
    seat_top = belt + float(rng.uniform(0.2, 0.45)) * rc
    sb.box_span(
        (x_back - 0.2, -ry + 0.12, belt - 0.1),
        (x_front + 0.2, ry - 0.12, seat_top),
        reflectance=float(rng.uniform(0.05, 0.25)),
        semantic="Car",
    )
    return sb.build()


def build_vehicle(
    rng: np.random.Generator,
    cls: str,
    size,
    mxy: float,
    mz: float,
    shape: str = "boxy",
    kitti_paint: bool = False,
) -> Shapes:
    """A Car, Van or Truck: body, cabin (glass with a roof), wheels, number plates.

    ``shape="rounded"`` builds Cars with :func:`build_rounded_car` (Vans and Trucks stay boxy);
    ``kitti_paint`` draws the paint as KITTI's sensor sees it (see :func:`_paint`).
    """
    if cls == "Car" and shape == "rounded":
        return build_rounded_car(rng, size, mxy, mz, kitti_paint)
    l, w, h = size
    L, W, H = l - 2 * mxy, w - 2 * mxy, h - 2 * mz
    paint = _paint(rng, kitti_paint)
    sb = ShapeBuilder()
    r = float(np.clip(rng.uniform(0.29, 0.35) * (1.25 if cls == "Truck" else 1.0), 0.25, 0.5))
    clear = float(rng.uniform(0.14, 0.2) * (1.4 if cls == "Truck" else 1.0))
    half_tyre = 0.1 if cls == "Car" else 0.12
    y_wheel = W / 2 - half_tyre - 0.02
    overhang = float(rng.uniform(0.75, 0.95)) if cls != "Truck" else 1.3
    axles = [L / 2 - overhang, -(L / 2 - overhang)]
    if cls == "Truck":
        axles.append(-(L / 2 - overhang) + 1.35)
    for x in axles:
        for side in (-1.0, 1.0):
            y = side * y_wheel
            sb.cylinder((x, y - half_tyre, r), (x, y + half_tyre, r), r, reflectance=0.05, semantic=cls)
    nose = L / 2 - 0.012  # plates stick out 12 mm from the body
    plate_z = clear + 0.22
    for sign in (-1.0, 1.0):
        sb.box(
            (sign * (L / 2 - 0.006), 0.0, plate_z),
            (0.012, 0.52, 0.12),
            reflectance=0.9,
            retro=True,
            semantic=cls,
        )
    if cls == "Truck":
        cab_len = float(rng.uniform(1.9, 2.3))
        cab_top = H * float(rng.uniform(0.8, 0.95))
        sb.box_span(
            (nose - cab_len, -W / 2, clear), (nose, W / 2, cab_top * 0.62), reflectance=paint, semantic=cls
        )
        sb.box_span(
            (nose - cab_len + 0.05, -W / 2 + 0.05, cab_top * 0.62),
            (nose - 0.35, W / 2 - 0.05, cab_top),
            reflectance=0.07,
            semantic=cls,
        )
        sb.box_span(
            (-L / 2, -W / 2, clear + 0.35),
            (nose - cab_len - 0.15, W / 2, H),
            reflectance=float(rng.uniform(0.3, 0.7)),
            semantic=cls,
        )
        # Chassis rail under the cargo box.
        sb.box_span(
            (-L / 2 + 0.3, -W / 2 + 0.35, clear),
            (nose - cab_len, W / 2 - 0.35, clear + 0.35),
            reflectance=0.1,
            semantic=cls,
        )
        return sb.build()
    belt = H * (float(rng.uniform(0.5, 0.58)) if cls == "Car" else float(rng.uniform(0.42, 0.5)))
    sb.box_span((-nose, -W / 2, clear), (nose, W / 2, belt), reflectance=paint, semantic=cls)
    if cls == "Car":
        cab_len = L * float(rng.uniform(0.44, 0.54))
        cab_x = -L * float(rng.uniform(0.02, 0.1))
        inset = float(rng.uniform(0.06, 0.12))
        # Hood-to-windshield wedge, as a lower glass box in front of the cabin.
        sb.box_span(
            (cab_x + cab_len / 2, -W / 2 + inset + 0.05, belt),
            (cab_x + cab_len / 2 + 0.35, W / 2 - inset - 0.05, belt + 0.45 * (H - belt)),
            reflectance=0.07,
            semantic=cls,
        )
    else:
        cab_len = L * float(rng.uniform(0.78, 0.88))
        cab_x = -L / 2 + cab_len / 2 + 0.02
        inset = 0.04
    sb.box_span(
        (cab_x - cab_len / 2, -W / 2 + inset, belt),
        (cab_x + cab_len / 2, W / 2 - inset, H - 0.05),
        reflectance=0.07,
        semantic=cls,
    )
    sb.box_span(
        (cab_x - cab_len / 2 + 0.02, -W / 2 + inset + 0.02, H - 0.05),
        (cab_x + cab_len / 2 - 0.02, W / 2 - inset - 0.02, H),
        reflectance=paint,
        semantic=cls,
    )
    return sb.build()


def _tilted_cylinder_down(sb, top, angle, length, radius, reflectance, semantic):
    """A limb hanging from ``top`` with a swing ``angle`` (radians, + forward) about the y axis."""
    bottom = (top[0] + length * np.sin(angle), top[1], top[2] - length * np.cos(angle))
    sb.cylinder(top, bottom, radius, reflectance=reflectance, semantic=semantic)


def build_pedestrian(
    rng: np.random.Generator, size, mxy: float, mz: float, phase: float, swing: float
) -> Shapes:
    """Legs and arms (cylinders), torso (ellipsoid), head (sphere); ``swing`` ∈ [0, 1] scales the gait."""
    l, w, h = size
    L, W, H = l - 2 * mxy, w - 2 * mxy, h - 2 * mz
    sb = ShapeBuilder()
    cloth_top = float(rng.uniform(0.1, 0.5))
    cloth_leg = float(rng.uniform(0.08, 0.4))
    r_leg, r_arm, r_head = 0.065, 0.045, min(0.11, 0.065 * H)
    hip = 0.52 * H
    # Largest swing that keeps the feet inside the box: hip · tan(a) + r ≤ L / 2.
    max_leg = np.arctan(max(L / 2 - r_leg - 0.01, 0.0) / hip)
    a_leg = swing * min(0.38, float(max_leg)) * np.sin(phase)
    y_leg = min(0.1, W / 2 - r_leg - 0.01)
    for side, a in ((1.0, a_leg), (-1.0, -a_leg)):
        # The lowest point of the tilted cap is r·sin|a| below the axis end: put it on the ground.
        length = (hip - r_leg * abs(np.sin(a))) / np.cos(a)
        _tilted_cylinder_down(sb, (0.0, side * y_leg, hip), a, length, r_leg, cloth_leg, "Pedestrian")
    shoulder = 0.8 * H
    y_arm = W / 2 - r_arm - 0.005
    arm_len = 0.36 * H
    max_arm = np.arcsin(np.clip((L / 2 - r_arm - 0.01) / arm_len, 0.0, 0.6))
    a_arm = swing * min(0.3, float(max_arm)) * np.sin(phase)
    for side, a in ((1.0, -a_arm), (-1.0, a_arm)):
        _tilted_cylinder_down(sb, (0.0, side * y_arm, shoulder), a, arm_len, r_arm, cloth_top, "Pedestrian")
    torso_z = (hip + shoulder + 0.04) / 2
    sb.ellipsoid(
        (0.0, 0.0, torso_z),
        (min(0.13, L / 2 - 0.01), y_arm - r_arm - 0.01, (shoulder + 0.06 - hip) / 2 + 0.02),
        reflectance=cloth_top,
        semantic="Pedestrian",
    )
    sb.ellipsoid(
        (0.02, 0.0, H - r_head), (r_head, r_head * 0.9, r_head), reflectance=0.35, semantic="Pedestrian"
    )
    return sb.build()


def build_cyclist(rng: np.random.Generator, size, mxy: float, mz: float, phase: float) -> Shapes:
    """A bicycle (two wheels, frame tubes, handlebar) and its rider (torso, head, arms, legs)."""
    l, w, h = size
    L, W, H = l - 2 * mxy, w - 2 * mxy, h - 2 * mz
    sb = ShapeBuilder()
    metal = float(rng.uniform(0.2, 0.5))
    cloth = float(rng.uniform(0.1, 0.5))
    r = min(0.34, 0.2 * L)
    xw = L / 2 - r
    for x in (-xw, xw):
        sb.cylinder((x, -0.025, r), (x, 0.025, r), r, reflectance=0.08, semantic="Cyclist")
    bb = (0.0, 0.0, r)
    seat = (-0.22, 0.0, 0.55 * H)
    bar = (xw - 0.12, 0.0, 0.6 * H)
    for a, b in (
        ((-xw, 0.0, r), seat),
        (bb, seat),
        (bb, bar),
        (seat, bar),
        (bar, (xw, 0.0, r)),
        ((-xw, 0.0, r), bb),
    ):
        sb.cylinder(a, b, 0.022, reflectance=metal, semantic="Cyclist")
    grip = min(0.2, W / 2 - 0.05)
    sb.cylinder((bar[0], -grip, bar[2]), (bar[0], grip, bar[2]), 0.02, reflectance=metal, semantic="Cyclist")
    hip = (seat[0], 0.0, seat[2] + 0.08)
    shoulder = (hip[0] + 0.3, 0.0, H - 0.33)
    sb.cylinder(hip, shoulder, 0.14, reflectance=cloth, semantic="Cyclist")
    r_head = 0.11
    sb.ellipsoid(
        (shoulder[0] + 0.06, 0.0, H - r_head),
        (r_head, r_head * 0.9, r_head),
        reflectance=0.3,
        semantic="Cyclist",
    )
    y_arm = min(0.17, W / 2 - 0.05)
    for side in (-1.0, 1.0):
        sb.cylinder(
            (shoulder[0], side * y_arm, shoulder[2] - 0.02),
            (bar[0], side * (grip - 0.02), bar[2] + 0.03),
            0.04,
            reflectance=cloth,
            semantic="Cyclist",
        )
    crank = 0.17
    for side, ph in ((1.0, phase), (-1.0, phase + np.pi)):
        pedal = (bb[0] + crank * np.cos(ph), side * 0.1, bb[2] + crank * np.sin(ph))
        knee = ((hip[0] + pedal[0]) / 2 + 0.2, side * 0.11, (hip[2] + pedal[2]) / 2 + 0.08)
        sb.cylinder((hip[0], side * 0.1, hip[2]), knee, 0.065, reflectance=cloth, semantic="Cyclist")
        sb.cylinder(knee, pedal, 0.05, reflectance=cloth, semantic="Cyclist")
    return sb.build()


# --------------------------------------------------------------------------------------------------
# clutter (static, built in its own local frame like objects)


def build_building(rng: np.random.Generator, length: float, depth: float, height: float) -> Shapes:
    """A facade block: x along the street, y away from it (the facade at y = 0), base 1 m below ground."""
    sb = ShapeBuilder()
    refl = float(rng.uniform(0.15, 0.5))
    sb.box_span((-length / 2, 0.0, -1.0), (length / 2, depth, height), reflectance=refl, semantic="building")
    if rng.random() < 0.5:
        # A shop front / entrance recess: a darker, lower block in front of the facade.
        sb.box_span(
            (-length / 2 + 0.5, -0.4, -1.0),
            (length / 2 - 0.5, 0.0, 3.0),
            reflectance=float(rng.uniform(0.05, 0.2)),
            semantic="building",
        )
    return sb.build()


def build_pole(rng: np.random.Generator, with_sign: bool) -> Shapes:
    """A lamp / sign post, with a retro-reflective plate facing -x (oncoming traffic) if ``with_sign``."""
    sb = ShapeBuilder()
    height = float(rng.uniform(3.0, 8.0))
    radius = float(rng.uniform(0.05, 0.13))
    sb.cylinder(
        (0.0, 0.0, -0.3),
        (0.0, 0.0, height),
        radius,
        reflectance=float(rng.uniform(0.2, 0.4)),
        semantic="pole",
    )
    if with_sign:
        size = float(rng.uniform(0.5, 0.9))
        z = min(height - size / 2, float(rng.uniform(2.5, 3.2)) + size / 2)
        sb.box((-radius - 0.02, 0.0, z), (0.03, size, size), reflectance=0.95, retro=True, semantic="sign")
    return sb.build()


def build_tree(rng: np.random.Generator, crown_radius: float) -> Shapes:
    """Trunk cylinder and a crown of 2-4 ellipsoids that let some rays through."""
    sb = ShapeBuilder()
    trunk_h = float(rng.uniform(2.5, 4.0))
    sb.cylinder(
        (0.0, 0.0, -0.3),
        (0.0, 0.0, trunk_h + 0.5),
        float(rng.uniform(0.1, 0.25)),
        reflectance=0.3,
        semantic="trunk",
    )
    for _ in range(int(rng.integers(2, 5))):
        rr = crown_radius * float(rng.uniform(0.55, 0.8))
        rz = rr * float(rng.uniform(0.7, 1.0))
        off = rng.uniform(-1.0, 1.0, 2) * (crown_radius - rr)
        # The crown's bottom stays above ~2.2 m, over pedestrians' and parked vans' heads.
        sb.ellipsoid(
            (off[0], off[1], trunk_h + rz * float(rng.uniform(0.9, 1.2))),
            (rr, rr * float(rng.uniform(0.8, 1.0)), rz),
            yaw=float(rng.uniform(-np.pi, np.pi)),
            reflectance=float(rng.uniform(0.3, 0.55)),
            semantic="vegetation",
            pass_through=float(rng.uniform(0.2, 0.5)),
        )
    return sb.build()


def build_bush(rng: np.random.Generator, radius: float) -> Shapes:
    """1-3 low ellipsoids with stochastic pass-through."""
    sb = ShapeBuilder()
    for _ in range(int(rng.integers(1, 4))):
        rr = radius * float(rng.uniform(0.5, 1.0))
        off = rng.uniform(-1.0, 1.0, 2) * (radius - rr)
        sb.ellipsoid(
            (off[0], off[1], rr * float(rng.uniform(0.3, 0.7))),
            (rr, rr * float(rng.uniform(0.6, 1.0)), rr * float(rng.uniform(0.5, 0.9))),
            yaw=float(rng.uniform(-np.pi, np.pi)),
            reflectance=float(rng.uniform(0.3, 0.55)),
            semantic="vegetation",
            pass_through=float(rng.uniform(0.15, 0.4)),
        )
    return sb.build()


def build_fence(rng: np.random.Generator, length: float) -> Shapes:
    """A fence along x: posts every 2-3 m and either two rails or a mesh panel that lets most rays
    through (chain link, railings); 0.9-1.8 m high."""
    sb = ShapeBuilder()
    height = float(rng.uniform(0.9, 1.8))
    refl = float(rng.uniform(0.15, 0.5))
    spacing = float(rng.uniform(2.0, 3.0))
    n_posts = max(2, int(length / spacing) + 1)
    for x in np.linspace(-length / 2, length / 2, n_posts):
        sb.cylinder((x, 0.0, -0.2), (x, 0.0, height), 0.04, reflectance=refl, semantic="unlabelled")
    if rng.random() < 0.5:
        for z in (0.35 * height, 0.92 * height):
            sb.box((0.0, 0.0, z), (length, 0.05, 0.06), reflectance=refl, semantic="unlabelled")
    else:
        sb.box(
            (0.0, 0.0, height / 2),
            (length, 0.03, height),
            reflectance=refl,
            semantic="unlabelled",
            pass_through=float(rng.uniform(0.5, 0.85)),
        )
    return sb.build()


def build_wall(rng: np.random.Generator, length: float) -> Shapes:
    """A low wall or barrier along x (0.4-1.3 m high, 0.15-0.4 m thick): garden walls, walls at lane
    edges, concrete barriers."""
    sb = ShapeBuilder()
    height = float(rng.uniform(0.4, 1.3))
    thick = float(rng.uniform(0.15, 0.4))
    sb.box(
        (0.0, 0.0, height / 2 - 0.15),
        (length, thick, height + 0.3),
        reflectance=float(rng.uniform(0.15, 0.45)),
        semantic="building",
    )
    return sb.build()


def build_hedge(rng: np.random.Generator, length: float) -> Shapes:
    """A hedge along x: a row of overlapping ellipsoids of leaves (0.7-1.9 m high) that rays partly enter."""
    sb = ShapeBuilder()
    height = float(rng.uniform(0.7, 1.9))
    depth = float(rng.uniform(0.5, 1.2))
    n = max(1, int(length / 1.2))
    for x in np.linspace(-length / 2 + 0.6, length / 2 - 0.6, n):
        h = height * float(rng.uniform(0.85, 1.1))
        sb.ellipsoid(
            (x + float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.1, 0.1)), h / 2),
            (0.9, depth / 2 * float(rng.uniform(0.8, 1.1)), h / 2),
            yaw=float(rng.uniform(-0.2, 0.2)),
            reflectance=float(rng.uniform(0.3, 0.55)),
            semantic="vegetation",
            pass_through=float(rng.uniform(0.1, 0.35)),
        )
    return sb.build()


STREET_FURNITURE = ("bollard", "bin", "bench", "utility box", "planter", "kiosk")
"""The kinds of :func:`build_street_furniture`."""


def build_street_furniture(rng: np.random.Generator, kind: str) -> Shapes:
    """One piece of street furniture (:data:`STREET_FURNITURE`), in its own frame (x along the street).

    Bollards are poles to the semantic labels; the rest is unlabelled clutter, car-, person- and
    cyclist-sized, which a detector must learn to leave alone.
    """
    sb = ShapeBuilder()
    refl = float(rng.uniform(0.1, 0.5))
    if kind == "bollard":
        r, h = float(rng.uniform(0.06, 0.12)), float(rng.uniform(0.7, 1.1))
        sb.cylinder((0.0, 0.0, -0.1), (0.0, 0.0, h), r, reflectance=refl, semantic="pole")
    elif kind == "bin":
        if rng.random() < 0.5:
            r, h = float(rng.uniform(0.25, 0.4)), float(rng.uniform(0.8, 1.1))
            sb.cylinder((0.0, 0.0, 0.0), (0.0, 0.0, h), r, reflectance=refl, semantic="unlabelled")
        else:  # wheelie bin
            sb.box((0.0, 0.0, 0.53), (0.6, 0.6, 1.06), reflectance=refl, semantic="unlabelled")
    elif kind == "bench":
        length = float(rng.uniform(1.5, 2.2))
        sb.box((0.0, 0.0, 0.43), (length, 0.45, 0.06), reflectance=refl, semantic="unlabelled")
        sb.box((0.0, 0.22, 0.7), (length, 0.05, 0.45), reflectance=refl, semantic="unlabelled")
        for x in (-length / 2 + 0.15, length / 2 - 0.15):
            sb.box((x, 0.0, 0.2), (0.06, 0.45, 0.4), reflectance=refl, semantic="unlabelled")
    elif kind == "utility box":
        sb.box(
            (0.0, 0.0, 0.65),
            (float(rng.uniform(0.5, 1.2)), float(rng.uniform(0.3, 0.5)), 1.3),
            reflectance=refl,
            semantic="unlabelled",
        )
    elif kind == "planter":
        size = float(rng.uniform(0.8, 1.6))
        sb.box((0.0, 0.0, 0.3), (size, size, 0.6), reflectance=refl, semantic="unlabelled")
        sb.ellipsoid(
            (0.0, 0.0, 0.9),
            (size / 2, size / 2, 0.45),
            reflectance=0.4,
            semantic="vegetation",
            pass_through=0.25,
        )
    elif kind == "kiosk":
        length, depth, h = (
            float(rng.uniform(2.0, 4.5)),
            float(rng.uniform(1.5, 2.5)),
            float(rng.uniform(2.2, 3.0)),
        )
        sb.box((0.0, 0.0, h / 2), (length, depth, h), reflectance=refl, semantic="unlabelled")
    else:
        raise ValueError(f"unknown street furniture {kind!r}; expected one of {STREET_FURNITURE}")
    return sb.build()
