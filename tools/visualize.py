#!/usr/bin/env python
"""Look at frames of a KITTI-layout dataset (real KITTI or synthetic), of converted Waymo data, or
scans of a SemanticKITTI-layout root, with labels and predictions; or draw occupancy forecasts.

    python tools/visualize.py --data-root DIR --frame ID [ID ...] [--split SPLIT]
        [--dataset auto|kitti|waymo|semantickitti]
        [--predictions DIR|FILE.bin | --ckpt PATH [--config NAME.yaml]] [--save OUT.png]
        [--view bev|chase|free [--pose FILE]] [--color height|intensity] [--bev]
        [--score-threshold S] [--width W --height H]
    python tools/visualize.py --data-root DIR (--sequence 08 [--scan 000000 ...] | --frames 08/000000 ...)
        [--color-by label|prediction|error|height|intensity] [--label-map NAME|FILE.yaml]
        [--predictions DIR | --ckpt PATH [--config NAME.yaml]] [--save OUT.png [--bev]] [--view ...]
    python tools/visualize.py --config OCCUPANCY.yaml [--ckpt PATH] --sample I [I ...] --out DIR
        [--data-root DIR] [--fps F]
    python tools/visualize.py --config POINTNET_CLS.yaml --ckpt PATH --sample I [I ...] --out DIR
        [--data-root DIR] [--grid G]

**KITTI layout** (``ROOT/{split}/velodyne``; ``--split`` default ``training``):

- **Ground truth** comes from ``ROOT/{split}/label_2`` where the split has labels (red boxes).
- **Predictions** (blue boxes) come from KITTI result files (``--predictions DIR``, one
  ``DIR/ID.txt`` per frame, 15 label fields + score), or from running a detection checkpoint on the
  frames (``--ckpt``; the task is rebuilt from ``--config`` or the ``config.yaml`` saved beside the
  checkpoint and its weights read with ``torch.load(weights_only=True)``, as ``tools/eval.py`` does).

**Converted Waymo** (``tools/convert_waymo.py``'s output: ``ROOT/ImageSets/<split>.txt`` of keys
``<context_name>/<timestamp_micros>``, frames ``ROOT/<split>/<context_name>/<timestamp_micros>.npz``):

- ``--dataset auto`` (the default) decides by the first non-empty split file ``ROOT/ImageSets/*.txt``
  (by name): Waymo where its first line is a frame key ``<context_name>/<timestamp_micros>``, KITTI
  where it is a bare id such as ``000123`` (KITTI ids never hold a ``/``). Without split files, a
  root with ``training/velodyne`` or ``testing/velodyne`` is KITTI, and one whose segment folders
  hold a converted segment's ``ROOT/<split>/<context_name>/index.json`` (``format``
  ``perception-waymo-converted``; one segment per split folder is read) is Waymo. Anything else is
  read as KITTI layout (and its errors say what KITTI needs). ``--dataset waymo`` / ``--dataset
  kitti`` skip the guess.
- ``--frame`` takes ``<context_name>/<timestamp_micros>`` (the split-file key) or
  ``<context_name>_<timestamp_micros>`` (a sample's ``frame_id``). Without ``--split`` each frame is
  looked up in ``val`` first, then in the other splits of the root (those with a split file or a
  folder), by its ``.npz`` file.
- Points are the converted ones (every lidar and return); ``--color intensity`` colours them by
  ``tanh(intensity)``, the intensity the Waymo models see (OpenPCDet's choice: the raw value is
  unbounded, with long tails from retro-reflectors); ``--color height`` spans z ∈ [-0.75, 3.25] m,
  KITTI's colormap range moved up by the height of KITTI's lidar (Waymo's vehicle frame has its
  origin on the ground).
- Ground truth: every labelled box of the frame, named ``VEHICLE``, ``PEDESTRIAN``, ``CYCLIST``,
  ``SIGN``.
- ``--predictions FILE.bin``: a Waymo submission file (a serialized ``metrics.Objects``, as
  ``tools/eval.py`` writes it), frames looked up by (context name, timestamp), types named as
  above. Frames of the file that are not in the root (no ``.npz`` in any split) are an error naming
  them; a requested frame the file holds nothing for shows no predictions (with a note: the format
  has no record of a frame without objects).
- ``--ckpt``: a checkpoint of a Waymo config (``data.dataset: waymo``, e.g. ``pvt_waymo.yaml``); its
  frames are read by the config's data module (exactly the requested ones), through the validation
  transforms, as in evaluation (:mod:`perception.inference`).

**SemanticKITTI layout** (``ROOT/sequences/NN/velodyne/NNNNNN.bin``, ``labels/NNNNNN.label``; the
synthetic segmentation set of ``tools/make_synthetic.py --layout semantickitti`` too): ``--dataset
auto`` takes a root with a ``sequences/NN/velodyne`` folder for one (``--dataset semantickitti``
skips the guess).

- **Scans**: ``--sequence 08 --scan 000000 [000001 ...]`` (no ``--scan``: every scan of the
  sequence), or ``--frames 08/000000 [...]`` (``--frame`` is the same option); numbers are zero-padded.
- **Class map** (``--label-map``): ``synthetic`` for a root with a ``synthetic.json`` (the generator's),
  else ``semantic-kitti``; or a SemanticKITTI-style YAML. With ``--ckpt`` the checkpoint's task's.
- **Predictions**: ``--predictions DIR``, a predictions root as
  :class:`~perception.tasks.writers.SemanticKittiLabelWriter` and ``tools/eval.py`` write it
  (``DIR/sequences/NN/predictions/NNNNNN.label``, raw ids), or, where ``DIR`` has no ``sequences``
  folder, a plain folder of ``NNNNNN.label`` files (one sequence's); or ``--ckpt`` runs a segmentation
  checkpoint (:func:`perception.inference.load_task`: the config given or the run's) on exactly the
  scans asked for, through the config's validation transforms and its trainer.
- **Colours** (``--color-by``, the same option as ``--color``): ``label`` (ground truth) and
  ``prediction`` in SemanticKITTI's official colours (:mod:`perception.viz.segmentation`; ignored
  points grey), ``error`` (correct green, wrong red, ignored grey), ``height`` or ``intensity``
  (remission). Default: ``prediction`` where predictions are given, else ``label`` where the
  sequence has labels, else ``height``. Class and error colourings come with a legend: beside the
  bird's-eye PNG, drawn in the top-left corner of Open3D renders, printed by the viewer.
- Errors (exit status 2, naming the file): a missing scan, a label or prediction file whose length
  is not the scan's point count, a missing prediction file, a missing label file where the colouring
  needs ground truth, raw ids the class map does not know.

**Occupancy forecasts** (``--sample``; an occupancy config such as ``p2p_occupancy_synthetic.yaml``,
or the checkpoint of one with its run's ``config.yaml``):

- **Samples** are validation samples of the config's data module, by index (its validation split and
  stride, as validation sees them), read from the config's data root or ``--data-root``; nothing is
  generated (a training run of the config generates the synthetic sequences).
- **Forecasts**: with ``--ckpt`` the checkpoint's (:func:`perception.inference.predict_occupancy`);
  without, only the label baselines the samples carry (``copy_forward``, ``constant_velocity``).
- **Files** (:func:`perception.viz.occupancy.save_occupancy`): ``DIR/occupancy_I.gif``, one frame
  per waypoint (``--fps``, default 2): the true grid beside the model's forecast, or beside both
  baselines without a checkpoint; ``DIR/occupancy_I_strip.png``, one column per waypoint, rows truth,
  model, baselines. Ego heading up; observed vehicles, pedestrians, cyclists and occluded agents in
  their colours (forecasts: colour strength is the probability), vehicle flow as arrows, the current
  sweep faint behind.

**What PointNet learned** (``--sample`` with a shape-classification config, a
:class:`~perception.tasks.classification.ClassificationTask` of a
:class:`~perception.models.pointnet.PointNetClassifier` such as ``pointnet_cls_synthetic.yaml``, or the
checkpoint of one with its run's ``config.yaml``):

- **Shapes** are validation samples of the config's data module, by index (its held-out split, through
  the validation transforms), read from the config's data root or ``--data-root``.
- **Files** (:mod:`perception.viz.shapes`): ``DIR/shape_I_critical.png``, three 3D panels as in the
  PointNet paper's Fig. 7: the input point set, its critical point set (the points that win the global
  max-pool, at most 1024) and its upper-bound shape (the nodes of a ``--grid``³ grid over the unit cube,
  default 40³, whose per-point features stay below the shape's global feature in every channel, with the
  shape's own T-Net transforms), titled with the true and the predicted class. Without ``--ckpt`` the
  config's initial (untrained) weights are drawn, with a note.

**Output** (all layouts):

- ``--save OUT.png`` renders headless with Open3D (EGL, no display needed); several frames give
  ``OUT_ID.png`` each (a Waymo ID is ``<context_name>_<timestamp_micros>``, a SemanticKITTI one
  ``NN_NNNNNN``). Where Open3D cannot
  render (missing system libraries) it writes the matplotlib bird's-eye PNG instead and says so.
  ``--bev`` asks for that PNG directly. The bird's-eye view frames the scene's extent
  (:meth:`~perception.viz.scene.Scene.view_range`: the 1st–99th percentiles of the points within
  80 m in x and y, grown to hold every box), so a Waymo frame is seen out to its points' reach
  (up to about ±75 m), every box included.
- Without ``--save`` an interactive Open3D window opens (N/P or arrow keys step through the frames,
  [ and ] change the score threshold, B/C switch bird's-eye / chase views); without a display it
  says so and suggests ``--save``.
- ``--view free --pose FILE``: a 4×4 extrinsic (sensor → camera, camera x right, y down, z forward)
  as 16 numbers in a text file.

Exit status 0 on success, 2 on a usage or data error (a missing frame, a predictions folder lacking
a frame's file, a Waymo predictions file naming frames the root does not have, a checkpoint of the
other dataset, no display for the viewer), printed without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from perception.viz.scene import Scene  # noqa: E402

if TYPE_CHECKING:
    from perception.eval.waymo import WaymoObjects
    from perception.structures import Frame
    from perception.structures.segmentation import LabelMap

WAYMO_HEIGHT_RANGE: tuple[float, float] = (-0.75, 3.25)
"""z range (metres, Waymo vehicle frame, origin on the ground) of the height colormap: KITTI's
:data:`~perception.viz.scene.HEIGHT_RANGE` moved up by the height of KITTI's lidar (1.73 m, rounded)."""

_NOT_SPLITS = ("ImageSets", "gt_database")  # folders of a converted root that hold no frames


class VisualizeError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/visualize.py",
        description="Show or render frames of a KITTI-layout dataset or of converted Waymo data with their "
        "labels and predictions (from result files or a checkpoint).",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        help="KITTI-layout, converted Waymo or SemanticKITTI-layout root (required but with --sample, "
        "where it replaces the occupancy config's data root)",
    )
    p.add_argument(
        "--frame",
        "--frames",
        dest="frame",
        nargs="+",
        help="frame id(s): KITTI 000123 (or 123); Waymo <context_name>/<timestamp_micros> "
        "(or <context_name>_<timestamp_micros>); SemanticKITTI <sequence>/<scan> (08/000000)",
    )
    p.add_argument("--sequence", help="SemanticKITTI layout: the sequence (08)")
    p.add_argument(
        "--scan", nargs="+", help="SemanticKITTI layout: scan(s) of --sequence (000000; default all)"
    )
    p.add_argument(
        "--label-map",
        help="SemanticKITTI layout: class map, semantic-kitti, synthetic or a YAML (default: synthetic for "
        "a root with synthetic.json, else semantic-kitti; with --ckpt the checkpoint's)",
    )
    p.add_argument(
        "--split",
        help="KITTI: folder of the frames, training (default) or testing; Waymo: the split (default: "
        "val where the frame is there, else the other splits of the root)",
    )
    p.add_argument(
        "--dataset",
        choices=("auto", "kitti", "waymo", "semantickitti"),
        default="auto",
        help="layout of --data-root (default auto: SemanticKITTI where it has sequences/NN/velodyne; "
        "converted Waymo where its split files hold <context>/<timestamp> keys or its segments have a "
        "converted index.json; else KITTI)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--predictions",
        type=Path,
        help="KITTI: folder of result files (ID.txt with scores); Waymo: a submission file (.bin); "
        "SemanticKITTI: a predictions root (sequences/NN/predictions/NNNNNN.label) or a folder of .label files",
    )
    source.add_argument("--ckpt", type=Path, help="detection (segmentation) checkpoint to run on the frames")
    p.add_argument(
        "--config", help="config of --ckpt (a bare name is looked up in configs/; default: the run's)"
    )
    p.add_argument("--save", type=Path, help="write a PNG (headless) instead of opening the viewer")
    p.add_argument(
        "--view",
        choices=("bev", "chase", "free"),
        help="camera (default: bev with --save, chase in the viewer)",
    )
    p.add_argument("--pose", type=Path, help="--view free: text file with a 4x4 extrinsic (16 numbers)")
    p.add_argument(
        "--color",
        "--color-by",
        dest="color",
        choices=("height", "intensity", "label", "prediction", "error"),
        help="point colours (default height; SemanticKITTI: prediction with predictions, else label where "
        "there are labels); label, prediction and error are for SemanticKITTI-layout roots",
    )
    p.add_argument("--bev", action="store_true", help="with --save: the matplotlib bird's-eye PNG")
    p.add_argument("--score-threshold", type=float, default=0.0, help="hide predictions below it")
    p.add_argument(
        "--sample",
        nargs="+",
        type=int,
        help="occupancy or shape classification: validation sample index(es) of the config's data module "
        "(writes to --out)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="occupancy: folder of occupancy_I.gif and occupancy_I_strip.png; shapes: of shape_I_critical.png",
    )
    p.add_argument(
        "--grid",
        type=int,
        default=40,
        help="shapes: grid points per axis of the upper-bound candidates over the unit cube (default 40)",
    )
    p.add_argument("--fps", type=float, default=2.0, help="occupancy: GIF frames (waypoints) a second")
    p.add_argument("--width", type=int, default=1280, help="image width, pixels (default 1280)")
    p.add_argument("--height", type=int, default=960, help="image height, pixels (default 960)")
    return p


# ------------------------------------------------------------------------------------------- frames


def _frame_ids(root: Path, split: str, frames: list[str]) -> list[str]:
    """The requested ids as the velodyne folder spells them (``7`` → ``000007``)."""
    from perception.data.datasets import missing_dataset_message

    velodyne = root / split / "velodyne"
    if not velodyne.is_dir():
        raise VisualizeError(missing_dataset_message(root, "val", split))
    ids, missing = [], []
    for frame in frames:
        if (velodyne / f"{frame}.bin").is_file():
            ids.append(frame)
        elif frame.isdigit() and (velodyne / f"{int(frame):06d}.bin").is_file():
            ids.append(f"{int(frame):06d}")
        else:
            missing.append(frame)
    if missing:
        raise VisualizeError(f"no scan for frame(s) {', '.join(missing)} in {velodyne}")
    return ids


def _check_predictions(folder: Path, frame_ids: list[str]) -> None:
    if not folder.is_dir():
        raise VisualizeError(f"--predictions {folder}: no such folder")
    missing = [f for f in frame_ids if not (folder / f"{f}.txt").is_file()]
    if missing:
        raise VisualizeError(
            f"--predictions {folder} has no result file for frame(s) {', '.join(missing)} "
            f"(expected {folder / (missing[0] + '.txt')})"
        )


# ------------------------------------------------------------------------------------ waymo frames


class WaymoFrameRef(NamedTuple):
    """A frame of a converted Waymo root: its split and ``(context_name, timestamp_micros)``."""

    split: str
    context_name: str
    timestamp_micros: int

    @property
    def key(self) -> str:
        """The split-file key ``<context_name>/<timestamp_micros>``."""
        return f"{self.context_name}/{self.timestamp_micros}"

    @property
    def frame_id(self) -> str:
        """A sample's ``frame_id``, ``<context_name>_<timestamp_micros>`` (also the PNG name suffix)."""
        return f"{self.context_name}_{self.timestamp_micros}"


def is_waymo_root(root: Path) -> bool:
    """Whether ``root`` is a converted Waymo root (the rule is in the module docstring).

    A split file decides first (its first key: ``<context>/<timestamp>`` → Waymo, a bare id →
    KITTI); then a KITTI ``velodyne`` folder; then the ``index.json`` of one segment folder per split.
    """
    for split_file in sorted((root / "ImageSets").glob("*.txt")):
        try:
            with split_file.open() as f:
                first = next((line.strip() for line in f if line.strip()), None)
        except (OSError, UnicodeDecodeError):
            continue
        if first is None:
            continue
        if "/" not in first:  # a KITTI id (and no import of torch for a KITTI root)
            return False
        from perception.data.waymo.converted import parse_frame_key

        try:
            parse_frame_key(first)
        except ValueError:
            return False
        return True
    if any((root / folder / "velodyne").is_dir() for folder in ("training", "testing")):
        return False
    for split in _split_folders(root):
        try:
            segment = next((d for d in sorted(split.iterdir()) if (d / "index.json").is_file()), None)
        except OSError:
            continue
        if segment is not None:
            from perception.data.waymo.converted import read_segment_index

            if read_segment_index(segment) is not None:
                return True
    return False


def _split_folders(root: Path) -> list[Path]:
    try:
        return sorted(
            d
            for d in root.iterdir()
            if d.is_dir() and d.name not in _NOT_SPLITS and not d.name.startswith(".")
        )
    except OSError:
        return []


def waymo_splits(root: Path) -> list[str]:
    """The splits of a converted root (its folders but ``ImageSets`` and ``gt_database``), ``val``
    first, then by name."""
    return sorted((d.name for d in _split_folders(root)), key=lambda name: (name != "val", name))


def parse_waymo_frame(text: str) -> tuple[str, int] | None:
    """``(context_name, timestamp_micros)`` of ``<context>/<timestamp>`` or ``<context>_<timestamp>``."""
    from perception.data.waymo.converted import parse_frame_key

    text = text.strip()
    if "/" in text:
        try:
            return parse_frame_key(text)
        except ValueError:
            return None
    context, sep, timestamp = text.rpartition("_")
    if not sep or not context or not timestamp.isdigit():
        return None
    return context, int(timestamp)


def _names_of(keys: list[str], limit: int = 8) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def waymo_frames(root: Path, split: str | None, frames: list[str]) -> list[WaymoFrameRef]:
    """The requested frames of a converted root: in ``split``, or else the first split (``val``
    first) holding the frame's ``.npz``."""
    from perception.data.waymo.converted import frame_file, missing_waymo_message

    if split is not None and not (root / split).is_dir():
        raise VisualizeError(missing_waymo_message(root, split))
    splits = [split] if split is not None else waymo_splits(root)
    if not splits:
        raise VisualizeError(missing_waymo_message(root, "val"))
    bad = [f for f in frames if parse_waymo_frame(f) is None]
    if bad:
        raise VisualizeError(
            f"--frame {', '.join(bad)}: not a Waymo frame key; expected <context_name>/<timestamp_micros> "
            "(as in ROOT/ImageSets/<split>.txt) or <context_name>_<timestamp_micros>"
        )
    refs, missing = [], []
    for text in frames:
        context, timestamp = parse_waymo_frame(text)  # type: ignore[misc]
        found = next((s for s in splits if frame_file(root, s, context, timestamp).is_file()), None)
        if found is None:
            missing.append(f"{context}/{timestamp}")
        else:
            refs.append(WaymoFrameRef(found, context, timestamp))
    if missing:
        where = f"split '{split}'" if split is not None else f"split(s) {', '.join(splits)}"
        raise VisualizeError(
            f"no frame {_names_of(missing)} in {root} (looked for "
            f"<split>/<context_name>/<timestamp_micros>.npz in {where})"
        )
    return refs


def load_waymo_frame(root: Path, ref: WaymoFrameRef) -> Frame:
    """The frame's converted arrays as a :class:`~perception.structures.Frame`; the intensity column
    (3) through ``tanh``, as the Waymo models see it (see the module docstring)."""
    from perception.data.waymo.converted import frame_file, load_frame_arrays
    from perception.structures import Frame

    path = frame_file(root, ref.split, ref.context_name, ref.timestamp_micros)
    try:
        arrays = load_frame_arrays(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise VisualizeError(f"{path}: can not read the converted frame ({err})") from err
    points = np.array(arrays["points"], dtype=np.float32, copy=True)
    if points.ndim == 2 and points.shape[1] > 3:
        np.tanh(points[:, 3], out=points[:, 3])
    pose = arrays["pose"]
    try:
        return Frame(
            frame_id=ref.frame_id,
            points=points,
            boxes=np.asarray(arrays["boxes"], np.float32).reshape(-1, 7),
            names=np.asarray(arrays["names"]).astype(str),
            difficulty=np.asarray(arrays["difficulty"], np.int32),
            pose=pose if np.isfinite(pose).all() else None,
            timestamp_micros=ref.timestamp_micros,
        )
    except ValueError as err:
        raise VisualizeError(f"{path}: {err}") from err


def waymo_predictions(
    path: Path, root: Path, refs: list[WaymoFrameRef]
) -> dict[tuple[str, int], WaymoObjects]:
    """The submission file's objects by frame, checked against the root.

    Frames of the file that no split of the root holds are an error naming them; requested frames
    the file has no objects for get none (with a note on stderr).
    """
    from perception.data.waymo.converted import frame_file, parse_frame_key
    from perception.eval.waymo import read_objects

    if path.is_dir():
        raise VisualizeError(
            f"--predictions {path} is a folder; for converted Waymo data give a submission file "
            "(.bin, a serialized metrics.Objects as tools/eval.py writes it)"
        )
    try:
        objects = read_objects(path)
    except FileNotFoundError as err:
        raise VisualizeError(f"--predictions {path}: no such file") from err
    except (OSError, ValueError) as err:
        raise VisualizeError(f"--predictions {path}: {err}") from err
    splits = waymo_splits(root)
    known: set[tuple[str, int]] = set()
    for split in splits:
        split_file = root / "ImageSets" / f"{split}.txt"
        if split_file.is_file():
            for line in split_file.read_text().splitlines():
                try:
                    known.add(parse_frame_key(line))
                except ValueError:
                    continue
    unknown = [
        f"{c}/{t}"
        for c, t in objects
        if (c, t) not in known and not any(frame_file(root, s, c, t).is_file() for s in splits)
    ]
    if unknown:
        raise VisualizeError(
            f"--predictions {path} holds predictions for {len(unknown)} frame(s) that are not in {root}: "
            f"{_names_of(unknown)}"
        )
    for ref in refs:
        if (ref.context_name, ref.timestamp_micros) not in objects:
            print(
                f"visualize: note: {path} has no predictions for frame {ref.key}; showing none",
                file=sys.stderr,
            )
    return objects


class CheckpointPredictor:
    """A detection checkpoint run on chosen frames of a KITTI-layout or converted Waymo root.

    The task is loaded by :func:`perception.inference.load_task` (the config given or the run's, the
    weights read with ``weights_only=True``) and each frame is predicted by
    :class:`perception.inference.Predictor` through the config's validation transforms, as in
    evaluation; predictions are made on first use and kept.

    Args:
        ckpt, config: the checkpoint and its config (None: the ``config.yaml`` beside the run).
        root: the dataset root.
        dataset: ``"kitti"`` or ``"waymo"``; the config's ``data.dataset`` must be the same.
    """

    def __init__(self, ckpt: Path, config: str | None, root: Path, dataset: str = "kitti") -> None:
        from perception.inference import InferenceError, Predictor, config_dataset, find_config, load_task

        try:
            path = find_config(ckpt, config)
            kind = config_dataset(path)
            if kind != dataset:
                layout = "converted Waymo data" if dataset == "waymo" else "a KITTI-layout dataset"
                raise VisualizeError(
                    f"{path} is a '{kind}' config (data.dataset) but {root} is {layout}; "
                    f"give the checkpoint of a {dataset} config (or its config with --config)"
                )
            loaded = load_task(ckpt, path, ["--data.num_workers", "0"], data_root=root)
        except InferenceError as err:
            raise VisualizeError(str(err)) from err
        self.predictor = Predictor(loaded)
        self.class_names = self.predictor.class_names
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def predict(self, frame_id: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (K, 7) lidar frame, names (K,), scores (K,))`` of one frame.

        ``frame_id``: a KITTI id (``split`` its folder, ``training``) or a converted-Waymo key
        ``<context_name>/<timestamp_micros>`` (``split`` the split holding it).
        """
        from perception.cli import DATA_ERRORS, error_message

        if (frame_id, split) not in self._cache:
            kitti = self.predictor.loaded.dataset == "kitti"
            try:
                (det,) = self.predictor.run(
                    [frame_id], split=None if kitti else split, split_folder=split if kitti else None
                )
            except DATA_ERRORS as err:
                raise VisualizeError(error_message(err)) from err
            labels = det.labels.cpu().numpy()
            names = np.asarray(self.class_names)[labels] if len(labels) else np.zeros(0, "<U16")
            self._cache[frame_id, split] = (
                det.boxes.float().cpu().numpy(),
                names,
                det.scores.float().cpu().numpy(),
            )
        return self._cache[frame_id, split]


def scene_loader(args: argparse.Namespace, frame_ids: list[str]) -> Callable[[int], Scene]:
    """``index -> Scene`` for the requested KITTI-layout frames."""
    from perception.data.kitti import KittiFormatError, load_frame, read_label

    predictor = None
    if args.ckpt is not None:
        predictor = CheckpointPredictor(args.ckpt, args.config, args.data_root)
    elif args.config is not None:
        raise VisualizeError("--config is for --ckpt")

    def load(index: int) -> Scene:
        frame_id = frame_ids[index]
        try:
            frame = load_frame(args.data_root, frame_id, args.split)
            if args.predictions is not None:
                scene = Scene.from_kitti(
                    frame, read_label(args.predictions / f"{frame_id}.txt"), colour_by=args.color
                )
            elif predictor is not None:
                scene = Scene.from_frame(
                    frame, *predictor.predict(frame_id, args.split), colour_by=args.color
                )
            else:
                scene = Scene.from_frame(frame, colour_by=args.color)
        except (FileNotFoundError, KittiFormatError) as err:
            raise VisualizeError(str(err)) from err
        return scene.with_score_threshold(args.score_threshold)

    return load


def waymo_scene_loader(
    args: argparse.Namespace,
    refs: list[WaymoFrameRef],
    predictions: Mapping[tuple[str, int], WaymoObjects] | None,
) -> Callable[[int], Scene]:
    """``index -> Scene`` for frames of a converted Waymo root."""
    from perception.eval.waymo import TYPE_CODES

    type_names = {code: name for name, code in TYPE_CODES.items()}
    predictor = None
    if args.ckpt is not None:
        predictor = CheckpointPredictor(args.ckpt, args.config, args.data_root, dataset="waymo")
    elif args.config is not None:
        raise VisualizeError("--config is for --ckpt")

    def load(index: int) -> Scene:
        ref = refs[index]
        frame = load_waymo_frame(args.data_root, ref)
        style = {"colour_by": args.color, "z_range": WAYMO_HEIGHT_RANGE}
        objects = None if predictions is None else predictions.get((ref.context_name, ref.timestamp_micros))
        if objects is not None:
            names = np.array([type_names.get(int(t), f"TYPE_{int(t)}") for t in objects.types], dtype=str)
            scene = Scene.from_frame(frame, objects.boxes.astype(np.float32), names, objects.scores, **style)
        elif predictor is not None:
            scene = Scene.from_frame(frame, *predictor.predict(ref.key, ref.split), **style)
        else:
            scene = Scene.from_frame(frame, **style)
        return scene.with_score_threshold(args.score_threshold)

    return load


# ----------------------------------------------------------------------------- SemanticKITTI scans


def is_semantickitti_root(root: Path) -> bool:
    """Whether ``root`` is SemanticKITTI-layout: a ``sequences/NN/velodyne`` folder."""
    try:
        return any((d / "velodyne").is_dir() for d in (root / "sequences").iterdir())
    except OSError:
        return False


def _padded(text: str, width: int) -> str:
    text = text.strip()
    return f"{int(text):0{width}d}" if text.isdigit() else text


def semantickitti_scans(root: Path, args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(sequence, scan)`` of the scans asked for (``--sequence``/``--scan`` or ``--frames``), each
    with its ``velodyne/*.bin`` checked; a missing one is an error naming its file."""
    from perception.data.semantickitti import list_scans, missing_data_message, scan_path

    if not (root / "sequences").is_dir():
        raise VisualizeError(missing_data_message(root))
    if args.frame and (args.sequence is not None or args.scan):
        raise VisualizeError(
            "give either --frames SEQ/SCAN ... or --sequence SEQ [--scan SCAN ...], not both"
        )
    if args.frame:
        bad = [f for f in args.frame if f.count("/") != 1 or not all(f.split("/"))]
        if bad:
            raise VisualizeError(
                f"--frames {', '.join(bad)}: not a SemanticKITTI scan; expected <sequence>/<scan> (08/000000)"
            )
        scans = [(_padded(f.split("/")[0], 2), _padded(f.split("/")[1], 6)) for f in args.frame]
    elif args.sequence is not None:
        sequence = _padded(args.sequence, 2)
        if args.scan:
            scans = [(sequence, _padded(s, 6)) for s in args.scan]
        else:
            try:
                scans = [(sequence, s) for s in list_scans(root, sequence)]
            except FileNotFoundError as err:
                raise VisualizeError(str(err)) from err
            if not scans:
                raise VisualizeError(f"{root / 'sequences' / sequence / 'velodyne'}: no scans (*.bin)")
    elif args.scan:
        raise VisualizeError("--scan needs --sequence (or give --frames 08/000000)")
    else:
        raise VisualizeError("give the scan(s) to show: --sequence 08 --scan 000000, or --frames 08/000000")
    for sequence in dict.fromkeys(s for s, _ in scans):
        if not (root / "sequences" / sequence / "velodyne").is_dir():
            raise VisualizeError(missing_data_message(root, sequence))
    missing = [scan_path(root, s, c) for s, c in scans if not scan_path(root, s, c).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise VisualizeError(f"{missing[0]}: scan does not exist{more}")
    return scans


def semantickitti_prediction_files(folder: Path, scans: list[tuple[str, str]]) -> dict[tuple[str, str], Path]:
    """The prediction file of every scan: ``DIR/sequences/NN/predictions/NNNNNN.label`` where ``DIR``
    has a ``sequences`` folder, else ``DIR/NNNNNN.label``. A missing one is an error naming it."""
    if not folder.is_dir():
        raise VisualizeError(f"--predictions {folder}: no such folder")
    official = (folder / "sequences").is_dir()
    files = {
        (s, c): folder / "sequences" / s / "predictions" / f"{c}.label" if official else folder / f"{c}.label"
        for s, c in scans
    }
    missing = [key for key, path in files.items() if not path.is_file()]
    if missing:
        raise VisualizeError(
            f"{files[missing[0]]}: prediction file does not exist (--predictions {folder} lacks scan(s) "
            f"{_names_of([f'{s}/{c}' for s, c in missing])})"
        )
    return files


class SegmentationCheckpointPredictor:
    """A segmentation checkpoint run on chosen scans of a SemanticKITTI-layout root.

    The task is loaded by :func:`perception.inference.load_task` (the config given or the run's, the
    weights read with ``weights_only=True``, no data generated); each scan is read by a
    :class:`~perception.data.semantickitti.SemanticKittiDataset` through the config's validation
    transforms and predicted by the loaded trainer (its precision, the task's ``predict_step``), as
    :class:`perception.inference.Predictor` does for whole sequences, but only the scans asked for.
    """

    def __init__(self, ckpt: Path, config: str | None, root: Path) -> None:
        from perception.inference import InferenceError, config_kind, find_config, load_task

        try:
            path = find_config(ckpt, config)
            if config_kind(path) != "segmentation":
                raise VisualizeError(
                    f"{path} is a detection config but {root} is a SemanticKITTI-layout root; give the "
                    "checkpoint of a segmentation config (or its config with --config)"
                )
            self.loaded = load_task(ckpt, path, data_root=root, num_workers=0)
        except InferenceError as err:
            raise VisualizeError(str(err)) from err
        self.root = root
        self.label_map = self.loaded.task.label_map

    def predict(self, sequence: str, scan: str, num_points: int) -> np.ndarray:
        """(N,) int64 predicted training ids 1..K of one scan, one per point of its file."""
        from torch.utils.data import DataLoader, Subset

        from perception.data.semantickitti import SemanticKittiDataset
        from perception.structures import collate

        datamodule = self.loaded.datamodule
        dataset = SemanticKittiDataset(
            self.root,
            [sequence],
            self.label_map,
            datamodule.val_transforms,
            seed=datamodule.seed,
            with_labels=False,
        )
        index = dataset.frame_ids.index(f"{sequence}/{scan}")
        loader = DataLoader(Subset(dataset, [index]), batch_size=1, collate_fn=collate)
        (outputs,) = self.loaded.trainer.predict(self.loaded.task, dataloaders=loader)
        prediction = outputs[0].cpu().numpy().astype(np.int64)
        if len(prediction) != num_points:
            raise VisualizeError(
                f"scan {sequence}/{scan}: the checkpoint predicted {len(prediction)} points of the file's "
                f"{num_points} (its validation transforms drop points, or the scan has non-finite points)"
            )
        return prediction


def semantickitti_scene_loader(
    args: argparse.Namespace,
    scans: list[tuple[str, str]],
    label_map: LabelMap,
    prediction_files: Mapping[tuple[str, str], Path] | None,
    predictor: SegmentationCheckpointPredictor | None,
) -> Callable[[int], Scene]:
    """``index -> Scene`` of the requested scans: points, labels where the sequence has them,
    predictions from files or the checkpoint; points with non-finite values dropped (with a note)."""
    from perception.data.semantickitti import read_labels, read_scan, scan_path

    def load(index: int) -> Scene:
        sequence, scan = scans[index]
        points = read_scan(scan_path(args.data_root, sequence, scan))
        n = len(points)
        labels = predictions = None
        label_path = scan_path(args.data_root, sequence, scan, "labels")
        if label_path.is_file():
            labels = label_map.train_ids(read_labels(label_path, n), source=str(label_path))
        elif args.color in ("label", "error"):
            raise VisualizeError(
                f"{label_path}: label file does not exist (--color-by {args.color} needs the ground truth)"
            )
        if prediction_files is not None:
            path = prediction_files[sequence, scan]
            predictions = label_map.train_ids(read_labels(path, n), source=str(path))
        elif predictor is not None:
            predictions = predictor.predict(sequence, scan, n)
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            print(
                f"visualize: note: scan {sequence}/{scan}: dropped {int((~finite).sum())} of {n} points "
                "with NaN or infinite values",
                file=sys.stderr,
            )
            points = points[finite]
            labels = None if labels is None else labels[finite]
            predictions = None if predictions is None else predictions[finite]
        return Scene.from_segmentation(
            points, labels, predictions, label_map, colour_by=args.color, frame_id=f"{sequence}/{scan}"
        )

    return load


def run_semantickitti(args: argparse.Namespace) -> None:
    """Show or render scans of a SemanticKITTI-layout root (see the module docstring)."""
    from perception.structures.segmentation import label_map as resolve_label_map

    root = args.data_root
    if args.split is not None or args.score_threshold:
        raise VisualizeError(
            "--split and --score-threshold are for detection roots; choose scans with --sequence"
        )
    scans = semantickitti_scans(root, args)
    prediction_files = None
    if args.predictions is not None:
        prediction_files = semantickitti_prediction_files(args.predictions, scans)
    elif args.config is not None and args.ckpt is None:
        raise VisualizeError("--config is for --ckpt")
    if args.color in ("prediction", "error") and args.predictions is None and args.ckpt is None:
        raise VisualizeError(f"--color-by {args.color} needs predictions: --predictions DIR or --ckpt PATH")
    if args.color is None:
        labelled = (root / "sequences" / scans[0][0] / "labels").is_dir()
        args.color = "prediction" if args.predictions or args.ckpt else "label" if labelled else "height"
    if args.save is None:  # fail fast, before loading a checkpoint
        from perception.viz.open3d import has_display

        if not has_display():
            raise VisualizeError(
                "no display for the interactive viewer (DISPLAY / WAYLAND_DISPLAY unset); render to a "
                "PNG instead with --save OUT.png (add --bev for the matplotlib bird's-eye view)"
            )
    predictor = None
    if args.ckpt is not None:
        predictor = SegmentationCheckpointPredictor(args.ckpt, args.config, root)
        label_map = predictor.label_map
        if args.label_map is not None:
            try:
                given = resolve_label_map(args.label_map)
            except ValueError as err:
                raise VisualizeError(f"--label-map: {err}") from err
            if given.class_names != label_map.class_names:
                raise VisualizeError(
                    f"--label-map {args.label_map} names other classes than the checkpoint's class map "
                    f"{label_map.name} ({', '.join(label_map.class_names)}); leave --label-map out"
                )
    else:
        spec = args.label_map or ("synthetic" if (root / "synthetic.json").is_file() else "semantic-kitti")
        try:
            label_map = resolve_label_map(spec)
        except ValueError as err:
            raise VisualizeError(f"--label-map: {err}") from err
    load = semantickitti_scene_loader(args, scans, label_map, prediction_files, predictor)
    names = [f"{s}_{c}" for s, c in scans]
    if args.save is not None:
        save(args, load, names)
        return
    from perception.viz.open3d import RenderUnavailable, show

    try:
        show(
            load,
            len(scans),
            camera=args.view or "chase",
            pose=_pose(args),
            width=args.width,
            height=args.height,
        )
    except RenderUnavailable as err:
        raise VisualizeError(f"{err}. Use --save OUT.png to render to a file instead.") from err


# ---------------------------------------------------------------------------------------- occupancy


def _check_sample_options(args: argparse.Namespace, samples: str, writes: str) -> None:
    """``--sample`` writes ``writes`` to ``--out``: refuse the viewer's options, ask for ``--out``
    (``samples``: what the messages call the samples)."""
    for option, value in (
        ("--frame", args.frame), ("--sequence", args.sequence), ("--scan", args.scan),
        ("--label-map", args.label_map), ("--split", args.split), ("--predictions", args.predictions),
        ("--save", args.save), ("--view", args.view), ("--pose", args.pose), ("--color", args.color),
    ):  # fmt: skip
        if value is not None:
            raise VisualizeError(f"{option} is not for {samples} (--sample writes {writes} to --out)")
    if args.bev or args.dataset != "auto":
        raise VisualizeError(f"--bev and --dataset are not for {samples} (--sample)")
    if args.out is None:
        raise VisualizeError("--sample writes files: give --out DIR")


def run_occupancy(args: argparse.Namespace) -> None:
    """Write the GIF and the strip of each ``--sample`` (see the module docstring)."""
    from perception.inference import (
        InferenceError,
        config_kind,
        find_config,
        load_task,
        occupancy_samples,
        predict_occupancy,
        read_config,
    )
    from perception.viz.occupancy import save_occupancy

    _check_sample_options(args, "occupancy samples", "GIFs and PNGs")
    if args.ckpt is None and args.config is None:
        raise VisualizeError(
            "--sample needs an occupancy config (--config p2p_occupancy_synthetic.yaml) or --ckpt"
        )
    if args.fps <= 0:
        raise VisualizeError(f"--fps must be positive, got {args.fps}")
    try:
        config = find_config(args.ckpt, args.config)
        kind = config_kind(config)
        if kind != "occupancy":
            raise VisualizeError(f"{config} is a {kind} config; --sample needs an occupancy one")
        data = read_config(config).get("data") or {}
        root = args.data_root or (data.get("init_args") or {}).get("root")
        if root is not None and not Path(root).exists():
            raise VisualizeError(
                f"{root}: no occupancy data there (a training run generates the synthetic sequences: "
                f"python tools/train.py --config {config}; or give --data-root DIR)"
            )
        loaded = load_task(args.ckpt, config, data_root=args.data_root, num_workers=0)
        samples = occupancy_samples(loaded, args.sample)
        forecasts = predict_occupancy(loaded, samples) if args.ckpt is not None else [None] * len(samples)
    except InferenceError as err:
        raise VisualizeError(str(err)) from err
    grid = loaded.datamodule.grid
    for index, sample, forecast in zip(args.sample, samples, forecasts, strict=True):
        gif, strip = save_occupancy(
            args.out, f"occupancy_{index}", sample.occupancy, forecast, grid, sample.points, fps=args.fps
        )
        print(f"visualize: occupancy sample {index} ({sample.frame_id}) → {gif}, {strip}")


# ------------------------------------------------------------------------------------------- shapes


def is_shape_classification(args: argparse.Namespace) -> bool:
    """Whether ``--sample`` names a shape-classification config (else it is an occupancy one; errors
    finding the config are left to the occupancy path, which reports them)."""
    from perception.inference import InferenceError, config_kind, find_config

    if args.ckpt is None and args.config is None:
        return False
    try:
        return config_kind(find_config(args.ckpt, args.config)) == "classification"
    except InferenceError:
        return False


def run_shapes(args: argparse.Namespace) -> None:
    """Write the critical-point figure of each ``--sample`` (see the module docstring)."""
    import torch

    from perception.inference import InferenceError, find_config, load_task
    from perception.models.pointnet import PointNetClassifier
    from perception.viz.shapes import critical_sets, save_critical_sets

    _check_sample_options(args, "shape samples", "PNGs")
    if args.grid < 2:
        raise VisualizeError(f"--grid must be at least 2, got {args.grid}")
    try:
        config = find_config(args.ckpt, args.config)
        loaded = load_task(args.ckpt, config, data_root=args.data_root, num_workers=0)
    except InferenceError as err:
        raise VisualizeError(str(err)) from err
    model = getattr(loaded.task, "model", None)
    if not isinstance(model, PointNetClassifier):
        raise VisualizeError(
            f"{config}: the task's model is a {type(model).__name__}; critical points are drawn for a "
            "PointNetClassifier"
        )
    if args.ckpt is None:
        print("visualize: note: no --ckpt: drawing the config's initial (untrained) weights", file=sys.stderr)
    datamodule = loaded.datamodule
    datamodule.setup("validate")
    dataset = datamodule.val_set
    outside = [i for i in args.sample if not 0 <= i < len(dataset)]
    if outside:
        has = f"{len(dataset)} shapes (0..{len(dataset) - 1})" if len(dataset) else "no shapes"
        raise VisualizeError(f"sample(s) {outside} outside the validation split, which has {has}")
    names = list(getattr(loaded.task, "class_names", None) or [])

    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else str(label)

    model.eval()
    device = next(model.parameters()).device
    for index in args.sample:
        shape = dataset[index]
        sets = critical_sets(model, shape.points, resolution=args.grid)
        with torch.no_grad():
            probabilities = model(torch.from_numpy(sets.points)[None].to(device)).softmax(-1)[0]
        predicted = int(probabilities.argmax())
        title = (
            f"{shape.shape_id}: {name(int(shape.label))}, predicted {name(predicted)} "
            f"({float(probabilities[predicted]):.0%})"
        )
        path = save_critical_sets(args.out / f"shape_{index}_critical.png", sets, title)
        print(
            f"visualize: shape sample {index} ({shape.shape_id}): {len(sets.critical)} critical points, "
            f"{len(sets.upper_bound)} of {sets.num_candidates} grid points in the upper bound → {path}"
        )


# --------------------------------------------------------------------------------------------- main


def _outputs(save: Path, frame_ids: list[str]) -> list[Path]:
    if len(frame_ids) == 1:
        return [save]
    suffix = save.suffix or ".png"
    return [save.with_name(f"{save.stem}_{f}{suffix}") for f in frame_ids]


def _pose(args: argparse.Namespace) -> np.ndarray | None:
    if args.pose is None:
        return None
    if args.view != "free":
        raise VisualizeError("--pose is for --view free")
    try:
        values = np.loadtxt(args.pose, dtype=np.float64).reshape(-1)
    except (OSError, ValueError) as err:
        raise VisualizeError(f"--pose {args.pose}: {err}") from err
    if values.size != 16:
        raise VisualizeError(f"--pose {args.pose}: expected 16 numbers (a 4x4 extrinsic), got {values.size}")
    return values.reshape(4, 4)


def save(args: argparse.Namespace, load: Callable[[int], Scene], frame_ids: list[str]) -> list[Path]:
    """Render every frame to its PNG; the matplotlib bird's-eye PNG with ``--bev`` or without Open3D."""
    from perception.viz.bev import save_scene

    outputs = _outputs(args.save, frame_ids)
    pose = _pose(args)
    renderer = None
    if not args.bev:
        from perception.viz.open3d import Renderer, RenderUnavailable

        try:
            renderer = Renderer(args.width, args.height)
        except RenderUnavailable as err:
            print(
                f"visualize: note: {err}\nvisualize: writing the matplotlib bird's-eye view instead",
                file=sys.stderr,
            )
    try:
        for index, out in enumerate(outputs):
            scene = load(index)
            if renderer is not None:
                try:
                    renderer.save(scene, out, args.view or "bev", pose)
                except ValueError as err:
                    raise VisualizeError(str(err)) from err
            else:
                save_scene(out, scene)
            print(f"visualize: frame {frame_ids[index]} → {out}")
    finally:
        if renderer is not None:
            renderer.close()
    return outputs


def run(args: argparse.Namespace) -> None:
    if args.sample is not None:
        if is_shape_classification(args):
            run_shapes(args)
        else:
            run_occupancy(args)
        return
    if args.out is not None:
        raise VisualizeError(
            "--out is for occupancy samples (--sample); frames and scans take --save OUT.png"
        )
    if args.data_root is None:
        raise VisualizeError("give --data-root DIR (or --sample I with an occupancy --config for forecasts)")
    if args.bev and args.save is None:
        raise VisualizeError("--bev writes a PNG: give --save OUT.png")
    if args.dataset == "semantickitti" or (args.dataset == "auto" and is_semantickitti_root(args.data_root)):
        run_semantickitti(args)
        return
    for option, value in (
        ("--sequence", args.sequence),
        ("--scan", args.scan),
        ("--label-map", args.label_map),
    ):
        if value is not None:
            raise VisualizeError(f"{option} is for SemanticKITTI-layout roots (ROOT/sequences/NN/velodyne)")
    if args.color in ("label", "prediction", "error"):
        raise VisualizeError(
            f"--color-by {args.color} is for SemanticKITTI-layout roots; boxes take height or intensity"
        )
    args.color = args.color or "height"
    if not args.frame:
        raise VisualizeError("give the frame(s) to show with --frame ID [ID ...]")
    waymo = args.dataset == "waymo" or (
        args.dataset == "auto" and args.data_root.is_dir() and is_waymo_root(args.data_root)
    )
    if not args.data_root.exists():
        if waymo:
            from perception.data.waymo.converted import missing_waymo_message

            raise VisualizeError(missing_waymo_message(args.data_root, args.split or "val"))
        from perception.data.datasets import missing_dataset_message

        raise VisualizeError(missing_dataset_message(args.data_root, "val", args.split or "training"))
    predictions = None
    if waymo:
        refs = waymo_frames(args.data_root, args.split, args.frame)
        frame_ids = [r.frame_id for r in refs]
        if args.predictions is not None:
            predictions = waymo_predictions(args.predictions, args.data_root, refs)
    else:
        args.split = args.split or "training"
        frame_ids = _frame_ids(args.data_root, args.split, args.frame)
        if args.predictions is not None:
            _check_predictions(args.predictions, frame_ids)
    if args.save is None:  # fail fast, before loading a checkpoint
        from perception.viz.open3d import has_display

        if not has_display():
            raise VisualizeError(
                "no display for the interactive viewer (DISPLAY / WAYLAND_DISPLAY unset); render to a "
                "PNG instead with --save OUT.png (add --bev for the matplotlib bird's-eye view)"
            )
    load = waymo_scene_loader(args, refs, predictions) if waymo else scene_loader(args, frame_ids)
    if args.save is not None:
        save(args, load, frame_ids)
        return
    from perception.viz.open3d import RenderUnavailable, show

    try:
        show(
            load,
            len(frame_ids),
            camera=args.view or "chase",
            pose=_pose(args),
            width=args.width,
            height=args.height,
        )
    except RenderUnavailable as err:
        raise VisualizeError(f"{err}. Use --save OUT.png to render to a file instead.") from err


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from perception.cli import DATA_ERRORS, error_message

    try:
        run(args)
    except (VisualizeError, *DATA_ERRORS) as err:
        print(f"visualize: error: {error_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
