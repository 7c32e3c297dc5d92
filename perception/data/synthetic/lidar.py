"""The spinning multi-beam sensor: beam pattern, and the return model (noise, dropout, intensity)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from numpy.typing import NDArray

from perception.data.synthetic.config import SyntheticConfig

__all__ = [
    "BeamPattern",
    "beam_elevations",
    "beam_pattern",
    "finish_returns",
    "intensity",
    "kitti_intensity",
    "sample_range_noise",
]


def beam_elevations(config: SyntheticConfig) -> NDArray[np.float64]:
    """(B,) laser elevations in degrees, top laser first, as on an HDL-64E.

    The upper half of the lasers spans ``elevation_max_deg`` .. ``upper_block_min_deg`` (~1/3° apart),
    the lower half ``lower_block_max_deg`` .. ``elevation_min_deg`` (~1/2° apart).
    """
    n_upper = config.num_beams // 2 + config.num_beams % 2
    n_lower = config.num_beams - n_upper
    upper = np.linspace(config.elevation_max_deg, config.upper_block_min_deg, n_upper)
    lower = np.linspace(config.lower_block_max_deg, config.elevation_min_deg, n_lower)
    return np.concatenate([upper, lower])


@dataclass(frozen=True)
class BeamPattern:
    """Ray directions of one revolution: B beams × C columns.

    Attributes:
        elevation: (B,) radians; azimuth: (C,) radians in [-π, π), column j at ``-π + (j + ½) · step``.
        step: azimuth step, radians.
    """

    elevation: NDArray[np.float64]
    azimuth: NDArray[np.float64]
    step: float

    @property
    def directions(self) -> NDArray[np.float64]:
        """(C, B, 3) unit ray directions (column-major, like the sensor's firing order)."""
        ce, se = np.cos(self.elevation), np.sin(self.elevation)
        ca, sa = np.cos(self.azimuth), np.sin(self.azimuth)
        return np.stack(
            [ca[:, None] * ce[None], sa[:, None] * ce[None], np.broadcast_to(se[None], (len(ca), len(ce)))],
            -1,
        )

    def column_of(self, angle: NDArray) -> NDArray[np.int64]:
        """Column index (wrapped into [0, C)) whose azimuth bin holds each angle (radians)."""
        c = len(self.azimuth)
        return np.mod(np.floor((np.asarray(angle) + np.pi) / self.step).astype(np.int64), c)


@lru_cache(maxsize=8)
def beam_pattern(config: SyntheticConfig) -> BeamPattern:
    """The (cached) :class:`BeamPattern` of a config."""
    c = config.num_columns
    step = 2.0 * np.pi / c
    azimuth = -np.pi + (np.arange(c) + 0.5) * step
    return BeamPattern(np.deg2rad(beam_elevations(config)), azimuth, step)


def sample_range_noise(rng: np.random.Generator, n: int, config: SyntheticConfig) -> NDArray[np.float32]:
    """(n,) Gaussian range errors (m), clipped at ± ``range_noise_clip`` σ."""
    noise = rng.standard_normal(n, dtype=np.float32)
    clip = np.float32(config.range_noise_clip)
    return np.clip(noise, -clip, clip) * np.float32(config.range_noise_std)


def intensity(
    reflectance: NDArray,
    cos_incidence: NDArray,
    retro: NDArray,
    ranges: NDArray,
    config: SyntheticConfig,
) -> NDArray[np.float64]:
    """Noise-free return strength in [0, 1] (before the intensity noise).

    Lambertian surfaces return ``ρ (0.15 + 0.85 cos θ)``; retro-reflectors ``ρ (0.8 + 0.2 cos θ)``
    (they send light back whatever the angle); both fall as ``1 / (1 + (r / r0)²)``.
    """
    lambert = np.where(retro, 0.8 + 0.2 * cos_incidence, 0.15 + 0.85 * cos_incidence)
    falloff = 1.0 / (1.0 + (ranges / config.intensity_falloff_range) ** 2)
    return np.clip(reflectance * lambert * falloff, 0.0, 1.0)


def kitti_intensity(
    reflectance: NDArray, cos_incidence: NDArray, retro: NDArray, ranges: NDArray, config: SyntheticConfig
) -> NDArray[np.float64]:
    """Noise-free reflectance as KITTI's HDL-64E reports it, in [0, 1] (before the intensity noise,
    the floor and the 1/100 steps).

    ``ρ · min(1, cos θ / knee) / (1 + (r / r0)^p)``; retro-reflectors ignore the angle. Fitted to the
    ten real dev scans: the road reads ~0.27 up to 20 m whatever the grazing angle and falls to
    ~0.11 at 20-40 m and 0 beyond 40 m (the knee: the sensor's gain saturates), walls ~0.3 up to
    40 m, and 45% of the points on cars read 0 (dark paint and glass under the floor).
    """
    angle = np.where(retro, 1.0, np.minimum(1.0, cos_incidence / config.intensity_knee))
    falloff = 1.0 / (1.0 + (ranges / config.intensity_range) ** config.intensity_power)
    return np.clip(reflectance * angle * falloff, 0.0, 1.0)


@numba.njit(cache=True)
def _kitti_strength(refl, cos_inc, retro, r, knee, r0, power):  # pragma: no cover - numba
    angle = 1.0 if retro else min(1.0, cos_inc / knee)
    v = refl * angle / (1.0 + (r / r0) ** power)
    return min(max(v, 0.0), 1.0)


@numba.njit(cache=True)
def _strength(refl, cos_inc, retro, r, falloff_range):  # pragma: no cover - numba
    lam = 0.8 + 0.2 * cos_inc if retro else 0.15 + 0.85 * cos_inc
    q = r / falloff_range
    v = refl * lam / (1.0 + q * q)
    return min(max(v, 0.0), 1.0)


@numba.njit(cache=True)
def _ground_material(x, y, z, pose, road):  # pragma: no cover - numba
    """(reflectance, retro, semantic) of the ground at lidar point (x, y, z); see ``road_params``.

    Semantic ids are :data:`.shapes.SEMANTIC_CLASSES`' (literals: numba's cache would not see a
    change to a global): 1 road, 14 road paint, 2 sidewalk, 3 terrain.
    """
    wx = pose[0, 0] * x + pose[0, 1] * y + pose[0, 2] * z + pose[0, 3]
    wy = pose[1, 0] * x + pose[1, 1] * y + pose[1, 2] * z + pose[1, 3]
    k = road[0]
    if abs(k) < 1e-9:
        s, d = wx, wy
    else:
        vx, vy = wx, wy - 1.0 / k
        d = 1.0 / k - np.sign(k) * np.sqrt(vx * vx + vy * vy)
        v0y = -1.0 / k
        s = np.arctan2(-v0y * vx, v0y * vy) / k
    asphalt, lane_w, edge = road[1], road[2], road[3]
    if d < 0.0:
        curb, walk, dd = road[4], road[5], -d
    else:
        curb, walk, dd = road[6], road[7], d
    if dd < curb:
        lane_line = abs(dd - np.round(dd / lane_w) * lane_w) < 0.075
        dashed = (s - 9.0 * np.floor(s / 9.0)) < 3.0 or dd < 0.5
        if (lane_line and dashed and dd < edge - 1.0) or abs(dd - edge) < 0.075:
            return 0.6, True, 14  # road paint (glass beads make it retro-reflective)
        return asphalt, False, 1
    if dd < curb + walk:
        return 0.25, False, 2
    return 0.35, False, 3


@numba.njit(cache=True)
def finish_returns(
    out_t,
    out_prim,
    out_cos,
    el_sin,
    el_cos,
    az_cos,
    az_sin,
    drop_u,
    noise,
    inten_noise,
    prim_refl,
    prim_retro,
    prim_sem,
    prim_obj,
    pose,
    road,
    min_range,
    dropout,
    min_return,
    falloff_range,
    kitti_model,
    knee,
    inten_range,
    inten_power,
    inten_floor,
    points,
    point_obj,
    point_sem,
    point_ray,
):  # pragma: no cover - numba
    """Turn ray hits into returns: drop, add range noise, compute intensity; returns the count N.

    Whether a return is lost always follows the Lambertian strength (with ``kitti_model``, of a
    reflectance of at least 0.1: dark paint still returns, at intensity 0). The intensity is that
    strength plus noise (``kitti_model`` False), or :func:`kitti_intensity` plus noise, zero below
    ``inten_floor`` and rounded to 1/100 as KITTI's files are (``kitti_model`` True).

    Args:
        out_t, out_prim, out_cos: (C, B) from :func:`.raycast.cast_rays`.
        drop_u, noise, inten_noise: (C·B,) per-ray uniform draws, range errors, intensity errors.
        prim_refl, prim_retro, prim_sem, prim_obj: per-primitive reflectance, retro flag,
            semantic class and object index (-1 for clutter).
        pose: (4, 4) lidar → world; road: (8,) ground-material parameters (``road_params``).
        points: (C·B, 4) float32 out, the first N rows filled; point_obj, point_sem, point_ray:
            (C·B,) per-point object index, semantic class and ray index (column · B + beam).
    """
    nc, nb = out_t.shape
    n = 0
    for ci in range(nc):
        for bi in range(nb):
            ray = ci * nb + bi
            p = out_prim[ci, bi]
            t = out_t[ci, bi]
            if p == -2 or t < min_range:
                continue
            dx = el_cos[bi] * az_cos[ci]
            dy = el_cos[bi] * az_sin[ci]
            dz = el_sin[bi]
            if p >= 0:
                refl, retro, sem, obj = prim_refl[p], prim_retro[p], prim_sem[p], prim_obj[p]
            else:
                refl, retro, sem = _ground_material(t * dx, t * dy, t * dz, pose, road)
                obj = -1
            detect_refl = max(refl, 0.1) if kitti_model else refl
            strength = _strength(detect_refl, out_cos[ci, bi], retro, t, falloff_range)
            if drop_u[ray] < dropout or strength < min_return:
                continue
            r = t + noise[ray]
            points[n, 0] = r * dx
            points[n, 1] = r * dy
            points[n, 2] = r * dz
            if kitti_model:
                v = _kitti_strength(refl, out_cos[ci, bi], retro, t, knee, inten_range, inten_power)
                v = v * (1.0 + inten_noise[ray])
                v = 0.0 if v < inten_floor else np.round(min(v, 1.0) * 100.0) / 100.0
                points[n, 3] = v
            else:
                points[n, 3] = min(max(strength + inten_noise[ray], 0.0), 1.0)
            point_obj[n] = obj
            point_sem[n] = sem
            point_ray[n] = ray
            n += 1
    return n
