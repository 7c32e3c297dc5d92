#!/usr/bin/env python
"""Look at frames of a KITTI-layout dataset (real KITTI or synthetic), with labels and predictions.

    python tools/visualize.py --data-root DIR --frame ID [ID ...] [--split training]
        [--predictions DIR | --ckpt PATH [--config NAME.yaml]] [--save OUT.png]
        [--view bev|chase|free [--pose FILE]] [--color height|intensity] [--bev]
        [--score-threshold S] [--width W --height H]

- **Ground truth** comes from ``ROOT/{split}/label_2`` where the split has labels (red boxes).
- **Predictions** (blue boxes) come from KITTI result files (``--predictions DIR``, one
  ``DIR/ID.txt`` per frame, 15 label fields + score), or from running a detection checkpoint on the
  frames (``--ckpt``; the task is rebuilt from ``--config`` or the ``config.yaml`` saved beside the
  checkpoint and its weights read with ``torch.load(weights_only=True)``, as ``tools/eval.py`` does).
- ``--save OUT.png`` renders headless with Open3D (EGL, no display needed); several frames give
  ``OUT_ID.png`` each. Where Open3D cannot render (missing system libraries) it writes the matplotlib
  bird's-eye PNG instead and says so. ``--bev`` asks for that PNG directly.
- Without ``--save`` an interactive Open3D window opens (N/P or arrow keys step through the frames,
  [ and ] change the score threshold, B/C switch bird's-eye / chase views); without a display it
  says so and suggests ``--save``.
- ``--view free --pose FILE``: a 4×4 extrinsic (sensor → camera, camera x right, y down, z forward)
  as 16 numbers in a text file.

Exit status 0 on success, 2 on a usage or data error (a missing frame, a predictions folder lacking
a frame's file, no display for the viewer), printed without a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from perception.viz.scene import Scene  # noqa: E402


class VisualizeError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/visualize.py",
        description="Show or render frames of a KITTI-layout dataset with their labels and predictions "
        "(from result files or a checkpoint).",
    )
    p.add_argument("--data-root", required=True, type=Path, help="KITTI-layout dataset root")
    p.add_argument("--frame", required=True, nargs="+", help="frame id(s), e.g. 000123 (or 123)")
    p.add_argument("--split", default="training", help="folder of the frames: training (default) or testing")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--predictions", type=Path, help="folder of KITTI result files (ID.txt with scores)")
    source.add_argument("--ckpt", type=Path, help="detection checkpoint to run on the frames")
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
    p.add_argument("--color", choices=("height", "intensity"), default="height", help="point colours")
    p.add_argument("--bev", action="store_true", help="with --save: the matplotlib bird's-eye PNG")
    p.add_argument("--score-threshold", type=float, default=0.0, help="hide predictions below it")
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


def _load_eval_tool() -> ModuleType:
    """tools/eval.py as a module (its checkpoint and config helpers are reused here)."""
    spec = importlib.util.spec_from_file_location(
        "perception_tools_eval", Path(__file__).with_name("eval.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CheckpointPredictor:
    """A detection checkpoint run on single frames of a KITTI-layout root.

    The task is rebuilt like ``tools/eval.py`` does (its ``find_config``, ``clean_config`` and
    ``load_state_dict``, weights read with ``weights_only=True``); each frame goes through the config's
    validation transforms, as in evaluation. Call :meth:`close` (or use ``with``) to remove the
    temporary split view.
    """

    def __init__(
        self, ckpt: Path, config: str | None, root: Path, split_folder: str, frame_ids: list[str]
    ) -> None:
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
        eval_tool = _load_eval_tool()
        try:
            config_path = eval_tool.find_config(ckpt, config)
            state, hparams = eval_tool.load_state_dict(ckpt)
        except eval_tool.EvalError as err:
            raise VisualizeError(str(err)) from err
        self._tmp = tempfile.TemporaryDirectory(prefix="perception-visualize-")
        try:
            self._build(eval_tool, ckpt, config_path, state, hparams, root, split_folder, frame_ids)
        except BaseException:
            self._tmp.cleanup()
            raise

    def _build(
        self,
        eval_tool: ModuleType,
        ckpt: Path,
        config_path: Path,
        state: dict,
        hparams: dict,
        root: Path,
        split_folder: str,
        frame_ids: list[str],
    ) -> None:
        tmp = Path(self._tmp.name)
        view, split = eval_tool.frame_view(root, split_folder, frame_ids, tmp)

        from perception.cli import DetectionCLI
        from perception.data.datasets import KittiDetectionDataset

        cli_args = [
            "--config", str(eval_tool.clean_config(config_path, tmp)),
            "--data.root", str(view),
            "--data.val_split", split,
            "--data.split_folder", split_folder,
            "--data.database", "null",
            "--data.num_workers", "0",
            "--model.compile", "false",
            "--trainer.logger", "false",
            "--trainer.devices", "1",
            "--trainer.num_nodes", "1",
            "--trainer.strategy", "auto",
            "--trainer.default_root_dir", str(tmp),
        ]  # fmt: skip
        argv0, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when args and sys.argv both hold some
        try:
            cli = DetectionCLI(run=False, args=cli_args)
        finally:
            sys.argv = argv0
        task = cli.model
        trained = hparams.get("class_names")
        if trained is not None and list(trained) != list(task.class_names):
            raise VisualizeError(
                f"{ckpt} was trained for classes {list(trained)} but {config_path} names {task.class_names}"
            )
        try:
            task.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise VisualizeError(f"{ckpt} does not fit the model of {config_path}: {err}") from err
        self.task = task.eval()
        self.class_names = list(task.class_names)
        self.dataset = KittiDetectionDataset(
            view, split, self.class_names, cli.datamodule.val_transforms, split_folder=split_folder
        )
        self._index = {f: i for i, f in enumerate(self.dataset.frame_ids)}

    def predict(self, frame_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (K, 7) lidar frame, names (K,), scores (K,))`` of one frame."""
        import torch

        from perception.data.sample import collate

        batch = collate([self.dataset[self._index[frame_id]]])
        with torch.no_grad():
            detections = self.task.model.predict(self.task.model(batch), batch)[0]
        labels = detections.labels.cpu().numpy()
        names = np.asarray(self.class_names)[labels] if len(labels) else np.zeros(0, "<U16")
        return detections.boxes.float().cpu().numpy(), names, detections.scores.float().cpu().numpy()

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> CheckpointPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scene_loader(args: argparse.Namespace, frame_ids: list[str]) -> tuple[Callable[[int], Scene], Any]:
    """``(index -> Scene, a resource to close or None)`` for the requested frames."""
    from perception.data.kitti import KittiFormatError, load_frame, read_label

    predictor = None
    if args.ckpt is not None:
        predictor = CheckpointPredictor(args.ckpt, args.config, args.data_root, args.split, frame_ids)
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
                scene = Scene.from_frame(frame, *predictor.predict(frame_id), colour_by=args.color)
            else:
                scene = Scene.from_frame(frame, colour_by=args.color)
        except (FileNotFoundError, KittiFormatError) as err:
            raise VisualizeError(str(err)) from err
        return scene.with_score_threshold(args.score_threshold)

    return load, predictor


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
    if args.bev and args.save is None:
        raise VisualizeError("--bev writes a PNG: give --save OUT.png")
    if not args.data_root.exists():
        from perception.data.datasets import missing_dataset_message

        raise VisualizeError(missing_dataset_message(args.data_root, "val", args.split))
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
    load, resource = scene_loader(args, frame_ids)
    try:
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
    finally:
        if resource is not None:
            resource.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except VisualizeError as err:
        print(f"visualize: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
