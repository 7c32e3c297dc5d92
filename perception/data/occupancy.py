"""Occupancy-forecasting samples: the past K sweeps in the current sensor frame, and the future grids.

:class:`OccupancyDataset` turns any :class:`~perception.data.sequences.SequenceSource` (the synthetic
generator's sequences, KITTI tracking, converted Waymo) into :class:`~perception.structures.Sample`\\ s:
``points`` (N, 5) are the K sweeps ending at the current frame, ego-motion compensated into its sensor
frame, columns x, y, z, intensity, and the sweep's time relative to the current one (seconds, ≤ 0);
``occupancy`` holds the true grids at each waypoint and the label-based baselines
(:mod:`perception.data.occupancy_targets`). :class:`OccupancyDataModule` wires splits and loaders.

A sample needs all K history frames, consecutive (no gap wider than 1.5 frame periods), and a frame
within a quarter period of every waypoint time; current frames without them are left out of the
index (counted in :attr:`OccupancyDataset.skipped`), so sequence starts, ends and gaps give fewer
samples rather than padded ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from perception.data.datamodules import EpochDataModule
from perception.data.datasets import EpochDataset
from perception.data.occupancy_targets import render_targets
from perception.data.sequences import SequenceError, SequenceSource, detect_layout, open_sequences
from perception.data.synthetic.config import SyntheticConfig
from perception.data.synthetic.writer import write_dataset
from perception.structures import Sample
from perception.structures.occupancy import OccupancyGrid, TrackedFrame

__all__ = [
    "DEFAULT_ROOT",
    "SYNTHETIC_OCCUPANCY",
    "OccupancyDataModule",
    "OccupancyDataset",
    "stack_sweeps",
]

DEFAULT_ROOT = "data/synthetic_occ"
"""Where the embedded synthetic occupancy sequences live (generated on first use)."""

SYNTHETIC_OCCUPANCY = SyntheticConfig(
    num_beams=32, azimuth_step_deg=0.35, label_all_around=True, min_points=1
)
"""The generator settings of the embedded occupancy data: a 32-beam sensor, objects labelled all
around while the lidar sees them (one point is enough), so that *observed* means seen."""


def stack_sweeps(
    frames: Sequence[TrackedFrame], intensity_column: int = 3, intensity_tanh: bool = False
) -> NDArray[np.float32]:
    """(N, 5) the sweeps of ``frames`` in the last frame's sensor frame: x, y, z, intensity, Δt (s, ≤ 0).

    Each sweep is moved by ``inv(pose_current) · pose_sweep`` (ego-motion compensation); intensity
    is column ``intensity_column`` (0 where the sweep has none), through ``tanh`` when asked (Waymo).
    """
    current = frames[-1]
    to_current = np.linalg.inv(current.pose)
    parts = []
    for f in frames:
        if f.points is None:
            raise SequenceError(f"sequence {f.sequence} frame {f.frame_id}: read without points")
        t = to_current @ f.pose
        xyz = f.points[:, :3].astype(np.float64) @ t[:3, :3].T + t[:3, 3]
        inten = (
            f.points[:, intensity_column] if f.points.shape[1] > intensity_column else np.zeros(len(f.points))
        )
        if intensity_tanh:
            inten = np.tanh(inten)
        dt = np.full(len(xyz), (f.timestamp_micros - current.timestamp_micros) * 1e-6)
        parts.append(np.column_stack([xyz, inten, dt]).astype(np.float32))
    return np.concatenate(parts) if parts else np.zeros((0, 5), np.float32)


class OccupancyDataset(EpochDataset):
    """Samples of occupancy forecasting over the sequences of a source (no augmentation).

    Args:
        source: the sequences (:func:`~perception.data.sequences.open_sequences`).
        history: K, the sweeps per sample (the current one included).
        waypoint_times: seconds after the current sweep of each waypoint.
        grid: the BEV grid of the targets.
        stride: use every ``stride``-th eligible frame of a sequence as a current frame.
        max_points: keep at most this many points of the stacked sweeps (a seeded random subset;
            None keeps all).
        z_range: keep points with z in this range (metres, current sensor frame).
        intensity_tanh: squash intensity with ``tanh`` (Waymo's is unbounded).
        max_samples: keep only the first this many samples (quick runs).
        seed: the subsampling seed.
        split: the split's name, for messages.

    ``frame_ids`` are ``"<sequence>/<current frame id>"``, one per sample.
    """

    def __init__(
        self,
        source: SequenceSource,
        history: int = 5,
        waypoint_times: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
        grid: OccupancyGrid | None = None,
        stride: int = 1,
        max_points: int | None = None,
        z_range: tuple[float, float] = (-3.0, 3.0),
        intensity_tanh: bool = False,
        max_samples: int | None = None,
        seed: int = 0,
        split: str = "all",
    ) -> None:
        if history < 1 or stride < 1 or not waypoint_times:
            raise ValueError(
                f"need history ≥ 1, stride ≥ 1 and waypoints, got {history}, {stride}, {waypoint_times}"
            )
        times = np.asarray(waypoint_times, np.float64)
        if np.any(times <= 0) or np.any(np.diff(times) <= 0):
            raise ValueError(f"waypoint_times must be positive and increasing, got {list(waypoint_times)}")
        self.source = source
        self.history = int(history)
        self.waypoint_times = times
        self.grid = grid or OccupancyGrid()
        self.max_points = max_points
        self.z_range = z_range
        self.intensity_tanh = intensity_tanh
        self.split = split
        self._init_transforms(None, seed)
        self._labels: dict[str, list[TrackedFrame]] = {}
        self.index: list[tuple[str, int, list[int]]] = []
        self.skipped = 0
        for seq in source.sequences():
            frames = [source.read(seq, fid, points=False) for fid in source.frame_ids(seq)]
            self._labels[seq] = frames
            eligible = self._eligible(frames)
            self.skipped += len(frames) - len(eligible)
            self.index.extend((seq, i, fut) for i, fut in eligible[::stride])
        if max_samples is not None:
            self.index = self.index[:max_samples]
        self.frame_ids = [f"{seq}/{self._labels[seq][i].frame_id}" for seq, i, _ in self.index]

    def _eligible(self, frames: list[TrackedFrame]) -> list[tuple[int, list[int]]]:
        """``(current, [future frame per waypoint])`` of each frame with a full history and future."""
        if not frames:
            return []
        ts = np.array([f.timestamp_micros for f in frames], np.int64)
        if len(ts) > 1 and np.any(np.diff(ts) <= 0):
            bad = int(np.flatnonzero(np.diff(ts) <= 0)[0]) + 1
            raise SequenceError(
                f"{self.source.root}: sequence {frames[0].sequence} frame {frames[bad].frame_id}: "
                "timestamps do not increase"
            )
        period = float(np.median(np.diff(ts))) if len(ts) > 1 else 1e5
        out = []
        for i in range(self.history - 1, len(frames)):
            span = ts[i - self.history + 1 : i + 1]
            if len(span) > 1 and np.diff(span).max() > 1.5 * period:
                continue
            targets = ts[i] + np.round(self.waypoint_times * 1e6).astype(np.int64)
            j = np.clip(np.searchsorted(ts, targets), 0, len(ts) - 1)
            j_prev = np.clip(j - 1, 0, len(ts) - 1)
            pick = np.where(np.abs(ts[j_prev] - targets) < np.abs(ts[j] - targets), j_prev, j)
            if np.all(np.abs(ts[pick] - targets) <= 0.25 * period) and np.all(pick > i):
                out.append((i, pick.tolist()))
        return out

    def load(self, index: int) -> Sample:
        """Sample ``index``: stacked sweeps and the targets."""
        seq, i, future = self.index[index]
        labels = self._labels[seq]
        history = [
            self.source.read(seq, labels[j].frame_id, points=True) for j in range(i - self.history + 1, i + 1)
        ]
        points = stack_sweeps(history, intensity_tanh=self.intensity_tanh)
        x0, x1, y0, y1 = self.grid.extent()
        keep = (
            (points[:, 0] >= x0) & (points[:, 0] < x1) & (points[:, 1] >= y0) & (points[:, 1] < y1)
            & (points[:, 2] >= self.z_range[0]) & (points[:, 2] < self.z_range[1])
        )  # fmt: skip
        points = points[keep]
        if self.max_points is not None and len(points) > self.max_points:
            rng = np.random.default_rng([self.seed, index])
            points = points[np.sort(rng.choice(len(points), self.max_points, replace=False))]
        targets = render_targets(history, [labels[j] for j in future], self.waypoint_times, self.grid)
        return Sample(frame_id=self.frame_ids[index], points=points, occupancy=targets)


class OccupancyDataModule(EpochDataModule):
    """Occupancy data: sequences from a synthetic, KITTI-tracking or converted-Waymo root, in loaders.

    Args:
        root: the dataset root; the default ``data/synthetic_occ`` is generated by
            :meth:`prepare_data` (``synthetic_frames`` frames in ``synthetic_sequences`` sequences of
            the generator with :data:`SYNTHETIC_OCCUPANCY`, resumably).
        kind: the layout (``synthetic``, ``kitti_tracking``, ``waymo``); None detects it.
        train_split, val_split: split names of the layout (synthetic ``train``/``val`` from its
            ``sequences.json``; Waymo ``train``/``val`` folders; KITTI tracking takes
            ``train_sequences``/``val_sequences``).
        train_sequences, val_sequences: KITTI tracking sequence names (``"0000"``).
        history, waypoint_times, grid, max_points, z_range: as :class:`OccupancyDataset`'s.
        train_stride, val_stride: current-frame strides of the two splits.
        max_train_samples, max_val_samples: keep only the first this many samples.
        batch_size, val_batch_size, num_workers, seed, pin_memory, persistent_workers,
            multiprocessing_context: as the other data modules'.
        synthetic_frames, synthetic_sequences: the size of the generated default data.
        generate: let :meth:`prepare_data` generate the synthetic data.
    """

    preload = ("lightning", "perception.data.occupancy")

    def __init__(
        self,
        root: str = DEFAULT_ROOT,
        kind: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        train_sequences: list[str] | None = None,
        val_sequences: list[str] | None = None,
        history: int = 5,
        waypoint_times: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
        grid: OccupancyGrid | None = None,
        max_points: int | None = 40000,
        z_range: tuple[float, float] = (-3.0, 3.0),
        train_stride: int = 1,
        val_stride: int = 4,
        max_train_samples: int | None = None,
        max_val_samples: int | None = None,
        batch_size: int = 2,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        multiprocessing_context: str | None = "forkserver",
        synthetic_frames: int = 6000,
        synthetic_sequences: int = 150,
        generate: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.root = root
        self.kind = kind
        self.grid = grid or OccupancyGrid(height=128, width=128, pixels_per_meter=2.0, ego_col=64, ego_row=96)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = multiprocessing_context
        self.generate = generate and Path(root).resolve() == Path(DEFAULT_ROOT).resolve()

    def prepare_data(self) -> None:
        """Generate (or finish generating) the default synthetic sequences."""
        if not self.generate:
            return
        done = Path(self.root) / "sequences.json"
        if done.is_file():
            meta = json.loads((Path(self.root) / "synthetic.json").read_text())
            if meta.get("args", {}).get("frames") == self.hparams.synthetic_frames:
                return
        write_dataset(
            self.root,
            frames=self.hparams.synthetic_frames,
            sequences=self.hparams.synthetic_sequences,
            seed=self.seed,
            workers=max(1, min(2, self.num_workers or 2)),
            config=SYNTHETIC_OCCUPANCY,
            progress=True,
        )

    def make_dataset(self, split: str, stride: int, max_samples: int | None) -> OccupancyDataset:
        hp = self.hparams
        kind = self.kind or detect_layout(self.root)
        if kind == "kitti_tracking":
            seqs = hp.train_sequences if split == hp.train_split else hp.val_sequences
            source = open_sequences(self.root, kind, sequences=seqs)
        else:
            source = open_sequences(self.root, kind, split=split)
        return OccupancyDataset(
            source,
            history=hp.history,
            waypoint_times=hp.waypoint_times,
            grid=self.grid,
            stride=stride,
            max_points=hp.max_points,
            z_range=tuple(hp.z_range),
            intensity_tanh=kind == "waymo",
            max_samples=max_samples,
            seed=self.seed,
            split=split,
        )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.num_workers > 0:
            self._worker_context()
        if stage in (None, "fit"):
            self.train_set = self.make_dataset(hp.train_split, hp.train_stride, hp.max_train_samples)
        if stage in (None, "fit", "validate", "test", "predict"):
            self.val_set = self.make_dataset(hp.val_split, hp.val_stride, hp.max_val_samples)
            self.test_set = self.predict_set = self.val_set
