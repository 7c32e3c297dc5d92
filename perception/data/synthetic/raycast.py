"""Numba ray caster: one ray per (beam, azimuth column) from the sensor origin, nearest hit wins.

Scene layout (all in the lidar frame):

- ground: the height field ``z = c + a x + b y + Σ_k A_k sin(kx_k x + ky_k y + φ_k)``, intersected by
  Newton steps from the plane's solution, with a safe ray march as fallback;
- primitives (see :mod:`.shapes`), grouped per object; a group has a beam-elevation interval and
  is listed under every azimuth column it can cover (CSR ``col_ptr`` / ``col_groups``), so a ray only
  tests the few groups that can be on it (spatial culling).

Kernels are serial (``cache=True``, no ``parallel``): numba's OpenMP layer breaks forked DataLoader
workers, and the generator parallelises over frames with processes instead.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["GROUND", "MISS", "cast_rays"]

GROUND = -1
MISS = -2

_EPS = 1e-6
_INF = np.inf


@numba.njit(cache=True, inline="always")
def _ground_f(t, dx, dy, dz, ground, waves):  # pragma: no cover - numba
    """f(t) = ray z − ground z at t, and f'(t)."""
    x, y = t * dx, t * dy
    g = ground[0] + ground[1] * x + ground[2] * y
    dg = ground[1] * dx + ground[2] * dy
    for k in range(waves.shape[0]):
        arg = waves[k, 0] * x + waves[k, 1] * y + waves[k, 3]
        g += waves[k, 2] * np.sin(arg)
        dg += waves[k, 2] * np.cos(arg) * (waves[k, 0] * dx + waves[k, 1] * dy)
    return t * dz - g, dz - dg


@numba.njit(cache=True)
def _ground_hit(dx, dy, dz, ground, waves, bump, slope_bound, t_max):  # pragma: no cover - numba
    """Nearest t > 0 where the ray meets the ground, or inf."""
    den = dz - ground[1] * dx - ground[2] * dy  # ray's climb over the mean plane, per metre
    # Height above the plane starts at -c; the bumps reach at most `bump` above the plane.
    if den >= 0.0:
        return _INF
    t_first = (-ground[0] - bump) / -den
    if t_first > t_max:
        return _INF
    # Newton from the plane's solution: two steps reach ~µm for all but grazing rays (checked).
    t = -ground[0] / -den
    if t > 2.0 * t_max:
        t = 2.0 * t_max
    f0, df0 = _ground_f(t, dx, dy, dz, ground, waves)
    if df0 < -1e-3:
        t1 = t - f0 / df0
        if t1 > 0.0:
            f1, df1 = _ground_f(t1, dx, dy, dz, ground, waves)
            if df1 < -1e-3 and abs(f1) < 2e-3 and abs(df1 - df0) < 0.5 * abs(df1):
                t2 = t1 - f1 / df1
                if t2 >= t_first * 0.999:
                    return t2 if t2 <= t_max else _INF
    # Fallback: march conservatively (never overshoots, as |f'| ≤ |dz| + slope_bound).
    t = max(t_first, 0.0)
    rate = abs(dz) + slope_bound
    for _ in range(200):
        f, _ = _ground_f(t, dx, dy, dz, ground, waves)
        if f < 1e-4:
            return t if t <= t_max else _INF
        t += max(f / rate, 0.01)
        if t > t_max:
            return _INF
    return _INF


@numba.njit(cache=True, inline="always")
def _hit_box(p, dx, dy, dz):  # pragma: no cover - numba
    c, s = p[3], p[4]
    ox = -(c * p[0] + s * p[1])
    oy = -(-s * p[0] + c * p[1])
    oz = -p[2]
    lx = c * dx + s * dy
    ly = -s * dx + c * dy
    lz = dz
    t0 = -_INF
    t1 = _INF
    for o, d, h in ((ox, lx, p[5]), (oy, ly, p[6]), (oz, lz, p[7])):
        if abs(d) < 1e-12:
            if o < -h or o > h:
                return _INF
        else:
            ta = (-h - o) / d
            tb = (h - o) / d
            if ta > tb:
                ta, tb = tb, ta
            if ta > t0:
                t0 = ta
            if tb < t1:
                t1 = tb
            if t0 > t1:
                return _INF
    if t0 > _EPS:
        return t0
    return _INF


@numba.njit(cache=True, inline="always")
def _hit_ellipsoid(p, dx, dy, dz):  # pragma: no cover - numba
    c, s = p[3], p[4]
    ox = -(c * p[0] + s * p[1]) / p[5]
    oy = -(-s * p[0] + c * p[1]) / p[6]
    oz = -p[2] / p[7]
    lx = (c * dx + s * dy) / p[5]
    ly = (-s * dx + c * dy) / p[6]
    lz = dz / p[7]
    a = lx * lx + ly * ly + lz * lz
    b = ox * lx + oy * ly + oz * lz
    cc = ox * ox + oy * oy + oz * oz - 1.0
    disc = b * b - a * cc
    if disc < 0.0:
        return _INF
    t = (-b - np.sqrt(disc)) / a
    if t > _EPS:
        return t
    return _INF


@numba.njit(cache=True, inline="always")
def _hit_cylinder(p, dx, dy, dz):  # pragma: no cover - numba
    ax, ay, az, hl, r = p[3], p[4], p[5], p[6], p[7]
    ox, oy, oz = -p[0], -p[1], -p[2]
    oa = ox * ax + oy * ay + oz * az
    da = dx * ax + dy * ay + dz * az
    bx, by, bz = ox - oa * ax, oy - oa * ay, oz - oa * az
    ex, ey, ez = dx - da * ax, dy - da * ay, dz - da * az
    best = _INF
    a = ex * ex + ey * ey + ez * ez
    if a > 1e-12:
        b = bx * ex + by * ey + bz * ez
        c = bx * bx + by * by + bz * bz - r * r
        disc = b * b - a * c
        if disc >= 0.0:
            t = (-b - np.sqrt(disc)) / a
            if t > _EPS and abs(oa + t * da) <= hl:
                best = t
    if abs(da) > 1e-12:
        for sign in (-1.0, 1.0):
            t = (sign * hl - oa) / da
            if _EPS < t < best:
                qx, qy, qz = bx + t * ex, by + t * ey, bz + t * ez
                if qx * qx + qy * qy + qz * qz <= r * r:
                    best = t
    return best


@numba.njit(cache=True, inline="always")
def _hit(kind, p, dx, dy, dz):  # pragma: no cover - numba
    if kind == 0:
        return _hit_box(p, dx, dy, dz)
    if kind == 1:
        return _hit_ellipsoid(p, dx, dy, dz)
    return _hit_cylinder(p, dx, dy, dz)


@numba.njit(cache=True)
def _cos_incidence(kind, p, hx, hy, hz, dx, dy, dz):  # pragma: no cover - numba
    """|cos| of the angle between the ray and the surface normal at hit point (hx, hy, hz)."""
    if kind == 2:
        ax, ay, az = p[3], p[4], p[5]
        rx, ry, rz = hx - p[0], hy - p[1], hz - p[2]
        along = rx * ax + ry * ay + rz * az
        if abs(along) >= p[6] - 1e-6:
            nx, ny, nz = ax, ay, az
        else:
            nx, ny, nz = rx - along * ax, ry - along * ay, rz - along * az
    else:
        c, s = p[3], p[4]
        rx, ry, rz = hx - p[0], hy - p[1], hz - p[2]
        lx = (c * rx + s * ry) / p[5]
        ly = (-s * rx + c * ry) / p[6]
        lz = rz / p[7]
        if kind == 0:
            ux, uy, uz = abs(lx), abs(ly), abs(lz)
            mx, my, mz = 0.0, 0.0, 0.0
            if ux >= uy and ux >= uz:
                mx = 1.0
            elif uy >= uz:
                my = 1.0
            else:
                mz = 1.0
        else:
            mx, my, mz = lx / p[5], ly / p[6], lz / p[7]
        nx = c * mx - s * my
        ny = s * mx + c * my
        nz = mz
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    if norm < 1e-12:
        return 1.0
    return abs(nx * dx + ny * dy + nz * dz) / norm


@numba.njit(cache=True, inline="always")
def _hash_unit(seed, a, b):  # pragma: no cover - numba
    """Deterministic uniform [0, 1) from three integers (splitmix64 finaliser)."""
    z = (
        np.uint64(seed)
        ^ (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15))
        ^ (np.uint64(b) * np.uint64(0xBF58476D1CE4E5B9))
    )
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def cast_rays(
    el_sin,
    el_cos,
    az_cos,
    az_sin,
    ground,
    waves,
    bump,
    slope_bound,
    t_max,
    params,
    kind,
    pass_through,
    group_start,
    group_end,
    group_el_lo,
    group_el_hi,
    group_object,
    col_ptr,
    col_groups,
    seed,
    out_t,
    out_prim,
    out_cos,
    own_hits,
    first_hits,
):  # pragma: no cover - numba
    """Cast all B × C rays.

    Args:
        el_sin, el_cos: (B,) beam elevations; az_cos, az_sin: (C,) column azimuths.
        ground: (3,) ``c, a, b``; waves: (K, 4) ``kx, ky, amplitude, phase``; bump: Σ|A_k|;
            slope_bound: a bound on the ground's gradient; t_max: max range.
        params, kind, pass_through: the primitives (see :mod:`.shapes`), sorted by group.
        group_start, group_end: (G,) primitive ranges; group_el_lo, group_el_hi: (G,) sin of the
            elevation interval; group_object: (G,) object index or -1 (clutter).
        col_ptr: (C + 1,), col_groups: (E,) groups listed under each column.
        seed: int for the pass-through hash.
        out_t: (C, B) range or inf; out_prim: (C, B) primitive index, GROUND or MISS;
        out_cos: (C, B) |cos incidence|.
        own_hits: (O,) rays that would hit each object were nothing else there (ground excepted);
        first_hits: (O,) rays whose first hit is the object.
    """
    nb = el_sin.shape[0]
    nc = az_cos.shape[0]
    for ci in range(nc):
        ca, sa = az_cos[ci], az_sin[ci]
        g0, g1 = col_ptr[ci], col_ptr[ci + 1]
        for bi in range(nb):
            dz = el_sin[bi]
            dx = el_cos[bi] * ca
            dy = el_cos[bi] * sa
            ray = ci * nb + bi
            tg = _ground_hit(dx, dy, dz, ground, waves, bump, slope_bound, t_max)
            best = tg
            best_prim = GROUND if tg < _INF else MISS
            best_obj = -1
            for gi in range(g0, g1):
                g = col_groups[gi]
                if dz < group_el_lo[g] or dz > group_el_hi[g]:
                    continue
                obj = group_object[g]
                obj_t = _INF
                obj_prim = -1
                for pi in range(group_start[g], group_end[g]):
                    t = _hit(kind[pi], params[pi], dx, dy, dz)
                    if t < obj_t:
                        if pass_through[pi] > 0.0 and _hash_unit(seed, ray, pi) < pass_through[pi]:
                            continue
                        obj_t = t
                        obj_prim = pi
                if obj_prim < 0:
                    continue
                if obj >= 0 and obj_t < tg and obj_t <= t_max:
                    own_hits[obj] += 1
                if obj_t < best:
                    best = obj_t
                    best_prim = obj_prim
                    best_obj = obj
            if best_obj >= 0 and best <= t_max:
                first_hits[best_obj] += 1
            if best > t_max:
                best = _INF
                best_prim = MISS
            out_t[ci, bi] = best
            out_prim[ci, bi] = best_prim
            if best_prim >= 0:
                out_cos[ci, bi] = _cos_incidence(
                    kind[best_prim], params[best_prim], best * dx, best * dy, best * dz, dx, dy, dz
                )
            elif best_prim == GROUND:
                x, y = best * dx, best * dy
                gx, gy = ground[1], ground[2]
                for k in range(waves.shape[0]):
                    cw = waves[k, 2] * np.cos(waves[k, 0] * x + waves[k, 1] * y + waves[k, 3])
                    gx += cw * waves[k, 0]
                    gy += cw * waves[k, 1]
                out_cos[ci, bi] = abs(-gx * dx - gy * dy + dz) / np.sqrt(gx * gx + gy * gy + 1.0)
