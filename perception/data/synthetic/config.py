"""Every knob of the synthetic LiDAR generator, with KITTI-like defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["GENERATOR_VERSION", "REALISM_SWITCHES", "SyntheticConfig"]

GENERATOR_VERSION = "2.0.0"
"""Bumped whenever the same (config, seed, index) would give different files."""


REALISM_SWITCHES: dict[str, dict[str, object]] = {
    "kitti-intensity": {"intensity_model": "lambert"},
    "rounded-cars": {"vehicle_shape": "boxy"},
    "street-clutter": {"street_clutter": False},
    "crowds": {"crowds": False},
    "tight-labels": {"label_margin_xy": None, "label_margin_z": 0.03},
}
"""Generator 2's realism changes that are on by default (sim to real), by name → the config values
that turn each off (generator 1's look); ``tools/make_synthetic.py --without NAME`` and the ablation
use them. Parking bays (``parking_layouts``) are off by default and not listed."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Sensor, scene and labelling parameters (all lengths in metres, angles in degrees).

    The defaults model a Velodyne HDL-64E mounted as on the KITTI car. A config is frozen and
    hashable, so it can key caches; ``to_dict`` / ``from_dict`` round-trip it through JSON.
    """

    # --- sensor (HDL-64E-like) ---------------------------------------------------------------
    num_beams: int = 64
    """Lasers; split evenly between an upper, denser block and a lower block."""
    elevation_max_deg: float = 2.0
    """Elevation of the top laser."""
    upper_block_min_deg: float = -8.33
    """Elevation of the lowest laser of the upper block (the upper block is ~1/3° apart)."""
    lower_block_max_deg: float = -8.83
    """Elevation of the top laser of the lower block."""
    elevation_min_deg: float = -24.9
    """Elevation of the bottom laser (the lower block is ~1/2° apart)."""
    azimuth_step_deg: float = 0.17
    """Horizontal resolution; the column count is ``round(360 / step)`` (0.17° → 2118 columns)."""
    max_range: float = 120.0
    min_range: float = 1.0
    sensor_height: float = 1.73
    """Lidar height above the ground under the ego vehicle (ground at z ≈ -1.73 in the lidar frame)."""
    range_noise_std: float = 0.02
    """Gaussian range noise along the ray (1σ)."""
    range_noise_clip: float = 2.0
    """The noise is clipped at ± this many σ (a real sensor's error is bounded, and so label boxes can
    stay tight)."""
    dropout: float = 0.03
    """Probability that a return is lost at random."""
    min_return: float = 0.012
    """Returns whose (reflectance × cos incidence × falloff) is below this are lost (dark glass, tyres
    far away)."""
    intensity_noise_std: float = 0.02
    intensity_falloff_range: float = 150.0
    """The return's strength falls as ``1 / (1 + (r / falloff)^2)`` (what decides dropped returns;
    and the intensity itself with ``intensity_model="lambert"``)."""
    intensity_model: str = "kitti"
    """``"kitti"``: the reflectance the HDL-64E reports in KITTI, fitted to the real scans (see
    :func:`.lidar.kitti_intensity`): saturating in the incidence angle, falling steeply beyond
    ~40 m, zero below a floor, in 1/100 steps; with it, materials take KITTI's look (bright asphalt,
    mostly dark car paint). ``"lambert"``: generator 1's Lambertian strength (the ablation)."""
    intensity_knee: float = 0.15
    """``"kitti"``: the cosine of incidence above which the intensity no longer grows."""
    intensity_range: float = 40.0
    intensity_power: float = 4.0
    """``"kitti"``: the intensity falls as ``1 / (1 + (r / intensity_range)^intensity_power)``."""
    intensity_floor: float = 0.05
    """``"kitti"``: returns weaker than this report intensity 0 (45% of car points in KITTI do)."""
    vehicle_shape: str = "rounded"
    """``"rounded"``: cars with rounded noses and tails, a domed glass cabin that lets rays through
    onto the seats, and KITTI's body styles (saloon, hatchback, SUV); ``"boxy"``: generator 1's
    stacked boxes (the ablation)."""
    parking_layouts: bool = False
    """Parking strips with perpendicular and angled bays besides parallel rows (see
    :data:`.scene.PARKING_LAYOUTS`: 23.6% of the Cars then stand more than 30° off the road's axis,
    KITTI's labels have 24.5%). Off by default: with the quickstart's 15-minute budget the bays cost
    8.6 Car 3D AP on the real dev frames (parallel-parked, one drive) and 7 on the synthetic val
    split (docs/sim_to_real.md); ``make_synthetic.py --parking-bays`` turns them on."""
    crowds: bool = True
    """A third of the sidewalk's pedestrians in groups of 2-4 (side by side, or standing together),
    and, in independent frames, cyclists riding in the traffic lanes; False for generator 1's lone
    pedestrians and bike-lane cyclists (the ablation)."""
    street_clutter: bool = True
    """Fences, low walls, bollards, bins, benches and hedges along the sidewalk (real streets' false
    positives); False for generator 1's poles, trees, bushes and buildings only (the ablation)."""

    # --- ground ------------------------------------------------------------------------------
    ground_slope_max: float = 0.02
    """Largest slope of the ground plane along either world axis."""
    ground_bump_amplitude: float = 0.15
    """Total amplitude of the low-frequency unevenness (sum of three sinusoids)."""
    ground_bump_wavelength: tuple[float, float] = (30.0, 120.0)

    # --- road layout and traffic ------------------------------------------------------------
    lanes_per_direction: tuple[int, int] = (1, 2)
    lane_width: float = 3.5
    max_curvature: float = 1.0 / 300.0
    """Road curvature (1/m) is drawn in [-max, max] (0 for a straight road 40% of the time)."""
    car_density: float = 2.5
    """Moving vehicles per 100 m of lane."""
    parked_density: float = 10.0
    """Parked cars per 100 m of a parking strip."""
    pedestrian_density: float = 4.0
    """Pedestrians per 100 m of sidewalk."""
    cyclist_density: float = 1.5
    """Cyclists per 100 m of bike lane."""
    van_fraction: float = 0.1
    truck_fraction: float = 0.05
    scene_behind: float = 50.0
    """For independent frames, how far behind the ego vehicle the scene extends (it extends
    ``max_range`` ahead, so most objects are in front)."""

    # --- labels ------------------------------------------------------------------------------
    image_width: int = 1242
    image_height: int = 375
    min_points: int = 5
    """An object needs this many lidar points to be labelled."""
    max_truncation: float = 0.9
    """Objects more truncated than this (or behind the camera) are not labelled."""
    label_all_around: bool = False
    """Label objects all around the sensor, not only in the camera's view (occupancy data); those
    outside the image get an empty 2D box and no KITTI difficulty."""
    label_max_distance: float = 80.0
    """Objects farther than this are DontCare, not labelled."""
    occlusion_thresholds: tuple[float, float] = (0.15, 0.5)
    """Hidden fraction above which an object is occlusion level 1, resp. 2."""
    dontcare: bool = True
    """Write DontCare rectangles for visible objects too far or too sparse to be labelled."""
    label_margin_xy: float | None = 0.02
    """Gap between the object's geometry and its label box along x and y. 2 cm (the labels' 2-decimal
    rounding and a little): boxes hug the object as KITTI's annotators drew them (in the real dev scans
    the points reach the box's sides, and 2-5% of a car's points fall just outside it), so a few
    noisy returns land outside the box. None: ``range_noise_clip · range_noise_std + 0.015``, every
    return inside (generator 1; boxes 11 cm longer and wider than the car, which a model then
    predicts on real scans too)."""
    label_margin_z: float = 0.01
    """Gap below and above (generator 1: 0.03)."""
    calib_jitter: bool = True
    """Perturb the camera calibration slightly per frame (per sequence for sequences)."""

    # --- sequences ---------------------------------------------------------------------------
    frame_rate_hz: float = 10.0

    def __post_init__(self) -> None:
        if self.num_beams < 2:
            raise ValueError(f"num_beams must be ≥ 2, got {self.num_beams}")
        if not 0.01 <= self.azimuth_step_deg <= 5.0:
            raise ValueError(f"azimuth_step_deg must be in [0.01, 5], got {self.azimuth_step_deg}")
        if not 0 < self.min_range < self.max_range:
            raise ValueError(f"need 0 < min_range < max_range, got {self.min_range}, {self.max_range}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.range_noise_std < 0 or self.range_noise_clip < 0:
            raise ValueError("range noise std and clip must be non-negative")
        if self.min_points < 1:
            raise ValueError(f"min_points must be ≥ 1, got {self.min_points}")
        if self.intensity_model not in ("kitti", "lambert"):
            raise ValueError(f"intensity_model must be 'kitti' or 'lambert', got {self.intensity_model!r}")
        if self.vehicle_shape not in ("rounded", "boxy"):
            raise ValueError(f"vehicle_shape must be 'rounded' or 'boxy', got {self.vehicle_shape!r}")
        if self.sensor_height <= self.ground_bump_amplitude:
            raise ValueError("sensor_height must exceed the ground unevenness")

    @property
    def margin_xy(self) -> float:
        """Label-box margin along x and y (see ``label_margin_xy``)."""
        if self.label_margin_xy is not None:
            return float(self.label_margin_xy)
        return self.range_noise_clip * self.range_noise_std + 0.015

    @property
    def num_columns(self) -> int:
        """Azimuth columns of one revolution."""
        return round(360.0 / self.azimuth_step_deg)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SyntheticConfig keys: {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
