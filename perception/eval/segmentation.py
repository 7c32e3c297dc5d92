"""Semantic segmentation metric: SemanticKITTI's official IoU, mIoU and accuracy.

The definition is the official semantic-kitti-api's (``evaluate_semantics.py`` with
``auxiliary/np_ioueval.py``), which we reproduce quirk for quirk:

- **Both sides mapped.** Labels *and* predictions are ``.label`` files of raw ids; the semantic id is
  the low 16 bits (``word & 0xFFFF``), mapped through the class map's ``learning_map`` to training ids
  0..K. So a prediction written as a moving class (``252`` moving-car) scores as its static class
  (``car``), and a prediction of a raw id that maps to 0 (``0`` unlabeled, ``52`` other-structure)
  is a prediction of the ignore class.
- **Confusion** over all K + 1 training ids, ignore class 0 included, indexed ``[prediction, ground
  truth]`` (rows predictions, columns ground truth, as ``np_ioueval.addBatch``).
- **Ignored ground truth counts nowhere.** ``getStats`` zeroes the ignore class's *column*
  (``conf[:, ignore] = 0``): whatever is predicted on a point whose ground truth is 0 is neither a
  true nor a false positive of any class. The *row* is kept: a point of a real class predicted as 0
  is a false negative of its class (and a "false positive" of class 0, which is in no mean).
- **IoU** per class ``tp / (tp + fp + fn + 1e-15)``, with ``tp`` the diagonal, ``fp`` row sums − tp,
  ``fn`` column sums − tp. **mIoU** is the plain mean over the included classes 1..K; a class absent
  from both ground truth and predictions has IoU 0 (0 / 1e-15) and *is* in the mean.
- **Accuracy** ``Σ tp / (Σ_included tp + Σ_included fp + 1e-15)``: the denominator counts the points
  with a non-ignored ground truth *predicted as a real class*, so a real-class point predicted as 0
  is left out of the accuracy altogether (numerator and denominator), while it lowers its class's IoU.

Where we differ from the script, deliberately, failing loudly instead of scoring something else:
its ``remap_lut`` silently maps raw ids it does not know to 0 (and crashes on ids past its end);
:meth:`~perception.structures.LabelMap.train_ids` rejects them, naming the file. The script pairs
label and prediction files by their sorted order (asserting only equal counts); we pair them by name
and name the missing or stray file, and a prediction whose length is not its label file's is an error.

Units: :func:`iou_from_confusion` returns fractions, as ``np_ioueval`` does; everything else
(:class:`SemanticIoU`, :class:`SegmentationEvaluator`, :func:`semantic_iou_from_files`, the command
line and its JSON) reports **percent** (the fraction × 100), as docs/DESIGN.md promises.

Entry points: :func:`iou_from_confusion` (a confusion matrix), :class:`SemanticIoU` (a
``torchmetrics.Metric`` on training ids), :class:`SegmentationEvaluator` (the segmentation task's
plug-in), :func:`semantic_iou_from_files` (``.label`` folders) and the command line
``python -m perception.eval.segmentation GT_DIR PRED_DIR [--label-map NAME|PATH] [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray
from torchmetrics import Metric

from perception.data.io import atomic_write_text
from perception.eval.base import BaseEvaluator
from perception.structures import Batch, LabelMap, ScanRecord
from perception.structures.segmentation import label_map as as_label_map

__all__ = [
    "EPS",
    "SegmentationEvaluator",
    "SemanticIoU",
    "SemanticScores",
    "confusion_matrix",
    "format_results",
    "iou_from_confusion",
    "label_file_pairs",
    "main",
    "read_label_file",
    "semantic_iou_from_files",
]

log = logging.getLogger(__name__)

EPS = 1e-15
"""The official script's guard in every division (``np_ioueval``)."""


class SemanticScores(NamedTuple):
    """What :func:`iou_from_confusion` returns, in fractions (0..1).

    Attributes:
        iou: (C,) float64 IoU of every class, the ignored ones included (as ``getIoU`` returns them).
        miou: the mean IoU over the included classes.
        accuracy: the official accuracy (see the module docstring).
    """

    iou: NDArray[np.float64]
    miou: float
    accuracy: float


def iou_from_confusion(conf: Any, ignore: Iterable[int] = (0,)) -> SemanticScores:
    """SemanticKITTI's IoU, mIoU and accuracy of a confusion matrix, in fractions.

    Args:
        conf: (C, C) integer counts indexed ``[prediction, ground truth]`` (NumPy array or tensor).
        ignore: the ignored class ids; their ground-truth *columns* are zeroed before counting
            (``conf[:, ignore] = 0``) and they are left out of the mean and the accuracy.

    The formulas are ``np_ioueval``'s ``getStats`` / ``getIoU`` / ``getacc``; see the module docstring.
    """
    if isinstance(conf, torch.Tensor):
        conf = conf.detach().cpu().numpy()
    conf = np.array(conf, dtype=np.int64, copy=True)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got {conf.shape}")
    c = conf.shape[0]
    ignored = sorted({int(i) for i in ignore})
    if any(not 0 <= i < c for i in ignored):
        raise ValueError(f"ignored classes {ignored} outside 0..{c - 1}")
    include = np.array([i for i in range(c) if i not in ignored], dtype=np.int64)
    conf[:, ignored] = 0
    tp = np.diag(conf)
    fp = conf.sum(axis=1) - tp
    fn = conf.sum(axis=0) - tp
    iou = tp / (tp + fp + fn + EPS)
    miou = float(iou[include].mean()) if len(include) else float("nan")
    accuracy = float(tp.sum() / (tp[include].sum() + fp[include].sum() + EPS))
    return SemanticScores(iou=iou, miou=miou, accuracy=accuracy)


def confusion_matrix(pred: NDArray, target: NDArray, num_classes: int) -> NDArray[np.int64]:
    """(K + 1, K + 1) int64 counts ``[prediction, ground truth]`` of training ids 0..K (NumPy).

    Raises:
        ValueError: the two differ in length, or an id is outside 0..K.
    """
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    size = num_classes + 1
    if pred.shape != target.shape:
        raise ValueError(f"{len(pred)} predictions for {len(target)} labels")
    for name, ids in (("predictions", pred), ("labels", target)):
        if ids.size and (ids.min() < 0 or ids.max() >= size):
            raise ValueError(f"{name}: training ids {ids.min()}..{ids.max()} outside 0..{num_classes}")
    index = pred.astype(np.int64) * size + target.astype(np.int64)
    return np.bincount(index, minlength=size * size).reshape(size, size)


def _percent(scores: SemanticScores, class_names: Sequence[str]) -> tuple[float, dict[str, float], float]:
    iou = {name: 100.0 * float(scores.iou[i + 1]) for i, name in enumerate(class_names)}
    return 100.0 * scores.miou, iou, 100.0 * scores.accuracy


# --------------------------------------------------------------------------------------------------
# torchmetrics


class SemanticIoU(Metric):
    """SemanticKITTI's IoU as a ``torchmetrics.Metric`` on training ids (0 ignored, 1..K the classes).

    The state is one (K + 1, K + 1) int64 confusion matrix ``[prediction, ground truth]`` with
    ``dist_reduce_fx="sum"``, so it sums across processes under DDP; ``update`` adds a batch to it
    on the tensors' device.

    ``compute()`` returns, in **percent**: ``mIoU``, ``accuracy`` and ``IoU/<class>`` for each of the
    K classes (see the module docstring for the official definitions it follows). With nothing added
    every value is 0, as the official formulas give.

    Args:
        num_classes: K.
        class_names: the names of training ids 1..K (default ``"1"``..``"K"``).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confusion: torch.Tensor

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"SemanticIoU: num_classes must be at least 1, got {num_classes}")
        names = (
            tuple(str(i) for i in range(1, num_classes + 1)) if class_names is None else tuple(class_names)
        )
        if len(names) != num_classes or len(set(names)) != num_classes:
            raise ValueError(f"SemanticIoU: need {num_classes} distinct class names, got {list(names)}")
        self.num_classes, self.classes = num_classes, names
        size = num_classes + 1
        self.add_state("confusion", default=torch.zeros(size, size, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add points: ``pred`` and ``target`` (N,) integer training ids (``pred`` 1..K from a model,
        0 allowed, as a mapped prediction file may hold; ``target`` 0..K, 0 ignored)."""
        pred, target = torch.as_tensor(pred).reshape(-1), torch.as_tensor(target).reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"SemanticIoU: {len(pred)} predictions for {len(target)} labels")
        size = self.num_classes + 1
        for name, ids in (("predictions", pred), ("labels", target)):
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ValueError(f"SemanticIoU: {name} must be integer training ids, got {ids.dtype}")
            if ids.numel():
                lo, hi = torch.aminmax(ids)
                if lo < 0 or hi >= size:
                    raise ValueError(
                        f"SemanticIoU: {name} hold training ids {int(lo)}..{int(hi)} outside 0..{self.num_classes}"
                    )
        device = self.confusion.device
        index = pred.to(device, torch.int64) * size + target.to(device, torch.int64)
        self.confusion += torch.bincount(index, minlength=size * size).reshape(size, size)

    def compute(self) -> dict[str, float]:
        miou, iou, accuracy = _percent(iou_from_confusion(self.confusion, ignore=(0,)), self.classes)
        return {"mIoU": miou, "accuracy": accuracy} | {f"IoU/{name}": v for name, v in iou.items()}


class SegmentationEvaluator(BaseEvaluator):
    """The segmentation task's metric plug-in: :class:`SemanticIoU` over every class of the task.

    ``update(predictions, batch)`` takes, per sample of ``batch``, a (N_b,) int64 tensor of predicted
    training ids (1..K, in the sample's point order) and scores it against ``batch.point_labels``
    (0 ignored). ``compute()`` gives ``mIoU``, ``accuracy`` and ``IoU/<class>`` in percent.

    Args:
        per_class: also log each class's IoU every epoch (:meth:`headline`); ``compute`` always
            returns them.
    """

    kind = ScanRecord

    def __init__(self, per_class: bool = True) -> None:
        super().__init__()
        self.per_class = per_class

    def bind(self, class_names: Sequence[str]) -> None:
        """Called once by the task with the names of training ids 1..K."""
        self.class_names = tuple(class_names)
        self.metric = SemanticIoU(len(self.class_names), self.class_names)

    def update(self, predictions: Sequence[torch.Tensor], batch: Batch) -> None:
        """Add one batch: ``predictions[i]`` (N_i,) training ids for the points of ``batch``'s sample i.

        Raises:
            ValueError: the batch has no point labels, or the predictions do not match its samples
                one for one and point for point.
        """
        metric, name = self.bound(), type(self).__name__
        if batch.point_labels is None:
            raise ValueError(f"{name}: the batch has no point_labels to score predictions against")
        if len(predictions) != batch.batch_size:
            raise ValueError(
                f"{name}: {len(predictions)} predictions for a batch of {batch.batch_size} samples"
            )
        counts = torch.bincount(batch.batch_index, minlength=batch.batch_size).tolist()
        for frame_id, pred, n in zip(batch.frame_ids, predictions, counts, strict=True):
            if tuple(pred.shape) != (n,):
                raise ValueError(
                    f"{name}: sample {frame_id} has {n} points but predictions of shape {tuple(pred.shape)}"
                )
        pred = torch.cat(list(predictions)) if predictions else batch.point_labels[:0]
        metric.update(pred, batch.point_labels)

    @property
    def progress_key(self) -> str | None:
        return "mIoU"

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in super().headline(results).items() if self.per_class or "/" not in k}


# --------------------------------------------------------------------------------------------------
# Files


def read_label_file(path: str | Path) -> NDArray[np.uint32]:
    """(N,) the uint32 words of a ``.label`` file (semantic id in the low 16 bits, instance above).

    Raises:
        ValueError: the file's size is not a multiple of 4 bytes.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) % 4:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of uint32 labels")
    return np.frombuffer(data, dtype="<u4")


def _label_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder does not exist")
    return {p.stem: p for p in sorted(folder.glob("*.label"))}


def _names(paths: Sequence[Path], limit: int = 5) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")


def _folder_pairs(gt: Path, pred: Path) -> list[tuple[Path, Path]]:
    labels = _label_files(gt, "label")
    if not labels:
        raise ValueError(f"{gt}: no .label files")
    predictions = _label_files(pred, "prediction")
    missing = [pred / f"{stem}.label" for stem in labels if stem not in predictions]
    if missing:
        raise FileNotFoundError(f"no prediction file for a label file of {gt}: {_names(missing)}")
    strays = [p for stem, p in predictions.items() if stem not in labels]
    if strays:
        raise ValueError(f"prediction files with no label file in {gt}: {_names(strays)}")
    return [(labels[stem], predictions[stem]) for stem in labels]


def label_file_pairs(
    gt_dir: str | Path, pred_dir: str | Path, sequences: Sequence[str] | None = None
) -> list[tuple[Path, Path]]:
    """The (label file, prediction file) pairs to score, paired by name.

    Two layouts:

    - ``gt_dir`` holds ``sequences/`` (a SemanticKITTI root): labels ``gt_dir/sequences/NN/labels``,
      predictions ``pred_dir/sequences/NN/predictions`` (the official submission layout), for
      ``sequences`` (default: every sequence with ``.label`` files in ``pred_dir``).
    - otherwise two folders of ``.label`` files.

    Raises:
        FileNotFoundError: a folder, or the prediction file of a label file, does not exist.
        ValueError: no label files, or prediction files without a label file.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    if not (gt_dir / "sequences").is_dir():
        if sequences:
            raise ValueError(f"{gt_dir}: sequences are chosen in a SemanticKITTI root (with sequences/)")
        return _folder_pairs(gt_dir, pred_dir)
    if not (pred_dir / "sequences").is_dir():
        raise FileNotFoundError(
            f"{pred_dir}: no sequences/ folder; predictions of a SemanticKITTI root go to "
            "PRED_DIR/sequences/NN/predictions/NNNNNN.label"
        )
    if sequences is None:
        sequences = sorted(
            {p.parent.parent.name for p in (pred_dir / "sequences").glob("*/predictions/*.label")}
        )
        if not sequences:
            raise ValueError(f"{pred_dir}: no sequences/NN/predictions/*.label files")
    pairs = []
    for seq in sequences:
        seq = f"{int(seq):02d}" if str(seq).isdigit() else str(seq)
        labels = gt_dir / "sequences" / seq / "labels"
        if not labels.is_dir():
            raise FileNotFoundError(f"{labels}: no labels for sequence {seq} (is it a test sequence?)")
        pairs += _folder_pairs(labels, pred_dir / "sequences" / seq / "predictions")
    return pairs


def semantic_iou_from_files(
    gt_dir: str | Path,
    pred_dir: str | Path,
    label_map: str | LabelMap = "semantic-kitti",
    sequences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The official metric of prediction files against label files (see :func:`label_file_pairs`).

    Both are ``.label`` files of raw ids, mapped through ``label_map``'s ``learning_map``.

    Returns:
        ``{"mIoU": float, "IoU": {class name: float}, "accuracy": float}``, in percent.

    Raises:
        FileNotFoundError, ValueError: as :func:`label_file_pairs`; a prediction whose length is not
            its label file's; a file size that is not a whole number of labels; raw ids the class map
            does not know (:class:`~perception.structures.segmentation.UnknownLabelError`). Each
            message names the file.
    """
    lm = as_label_map(label_map)
    pairs = label_file_pairs(gt_dir, pred_dir, sequences)
    conf = np.zeros((lm.num_classes + 1,) * 2, np.int64)
    for gt_path, pred_path in pairs:
        target = lm.train_ids(read_label_file(gt_path), source=str(gt_path))
        pred = lm.train_ids(read_label_file(pred_path), source=str(pred_path))
        if len(pred) != len(target):
            raise ValueError(
                f"{pred_path}: {len(pred)} predictions for the {len(target)} points of {gt_path}"
            )
        conf += confusion_matrix(pred, target, lm.num_classes)
    log.info("scored %d scans, %d points", len(pairs), int(conf.sum()))
    miou, iou, accuracy = _percent(iou_from_confusion(conf, ignore=(0,)), lm.class_names)
    return {"mIoU": miou, "IoU": iou, "accuracy": accuracy}


# --------------------------------------------------------------------------------------------------
# Command line


def format_results(results: dict[str, Any]) -> str:
    """A table of :func:`semantic_iou_from_files`'s results: per-class IoU, then mIoU and accuracy (%)."""
    width = max([len(n) for n in results["IoU"]] + [8])
    lines = [f"{'class':<{width}}  IoU (%)"]
    lines += [f"{name:<{width}}  {value:7.2f}" for name, value in results["IoU"].items()]
    lines.append("-" * (width + 9))
    lines.append(f"{'mIoU':<{width}}  {results['mIoU']:7.2f}")
    lines.append(f"{'accuracy':<{width}}  {results['accuracy']:7.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perception.eval.segmentation GT_DIR PRED_DIR [--label-map M] [--json OUT]``."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.eval.segmentation",
        description="SemanticKITTI semantic segmentation evaluation (the official IoU, mIoU, accuracy).",
    )
    parser.add_argument(
        "gt_dir", help="a SemanticKITTI root (sequences/NN/labels) or a folder of .label files"
    )
    parser.add_argument(
        "pred_dir", help="its predictions root (sequences/NN/predictions) or a folder of .label files"
    )
    parser.add_argument(
        "--label-map",
        default="semantic-kitti",
        help="semantic-kitti (default), synthetic, or a SemanticKITTI-style YAML file",
    )
    parser.add_argument(
        "--sequences", nargs="+", help="sequences to score in a root (default: those PRED_DIR has)"
    )
    parser.add_argument("--json", type=Path, help='write {"mIoU", "IoU": {class: ..}, "accuracy"} in percent')
    args = parser.parse_args(argv)
    try:
        results = semantic_iou_from_files(args.gt_dir, args.pred_dir, args.label_map, args.sequences)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
