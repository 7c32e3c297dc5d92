"""Shape classification and part-segmentation metrics: ModelNet40's accuracies, ShapeNet-part's mIoU.

The definitions are the benchmarks' own, as PointNet's scripts compute them:

- **Classification** (PointNet's ``evaluate.py``). *Overall accuracy* (OA): correctly classified shapes
  over all shapes. *Mean class accuracy* (mAcc): the mean over the classes present in the ground truth
  of each class's recall (its correctly classified shapes over its shapes); a class with no shape in
  the ground truth is in no mean (the script would divide by zero there). ``accuracy/<class>`` is that
  recall (NaN for a class with no shape).
- **Part segmentation** (ShapeNet-part, PointNet's ``part_seg/test.py``). Per shape and for every part
  ``p`` of the shape's category: ``IoU_p = |pred = p ∧ gt = p| / |pred = p ∨ gt = p|``, and a part that
  neither the prediction nor the ground truth holds counts as IoU 1. The shape's IoU is the mean over
  its category's parts. *Instance mIoU*: the mean over all shapes; *class mIoU*: the mean over the
  categories present of the mean shape IoU within each; ``mIoU/<category>`` that per-category mean
  (NaN where the category has no shape); ``accuracy``: correctly labelled points over all points.
  Predictions from logits are the argmax over the shape's *own category's* parts only (the other
  categories' part logits are masked, :meth:`~perception.structures.shapes.PartTaxonomy.part_mask`),
  as the benchmark's evaluation does; predicted ids are scored as given.

Everything is reported in **percent**.

Entry points: :class:`ClassificationEvaluator` and :class:`PartSegmentationEvaluator`
(``torchmetrics.Metric``\\ s with sum-reduced states, so they merge across DDP processes; also the
plug-ins the classification and part-segmentation tasks take), :func:`classification_from_files`,
:func:`part_segmentation_from_files` and the command line::

    python -m perception.eval.shapes classification GT.csv PRED.csv [--classes modelnet40|FILE] [--json OUT]
    python -m perception.eval.shapes parts GT_DIR PRED_DIR [--taxonomy shapenet_part|NAME|FILE.json] [--json OUT]

**File formats.**

- Classification: CSV files with a header row. Ground truth ``shape_id,label``; predictions
  ``shape_id,predicted_class,score`` (the score column is optional and not scored). Labels are class
  names; rows are paired by shape id (every ground-truth shape needs one prediction, and a prediction
  of a shape the ground truth does not have is an error).
- Part segmentation: two folders of per-shape text files ``<shape_id>.txt`` (a shape id with ``/``,
  such as ShapeNet's ``synset/model``, is a sub-folder), each with one **global** part id (0..P-1 of
  the taxonomy) per line, in the shape's point order; files are paired by their path relative to the
  folder. Each shape's category is the one its ground-truth part ids belong to.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torchmetrics import Metric

from perception.data.io import atomic_write_text
from perception.structures.shapes import MODELNET40_CLASSES, SHAPENET_PART, PartTaxonomy

__all__ = [
    "GROUND_TRUTH_HEADER",
    "PREDICTION_HEADER",
    "ClassificationEvaluator",
    "PartSegmentationEvaluator",
    "class_list",
    "classification_csv",
    "classification_from_files",
    "format_classification",
    "format_part_segmentation",
    "main",
    "part_file",
    "part_segmentation_from_files",
    "part_taxonomy",
    "read_class_csv",
    "read_part_file",
    "results_json",
    "taxonomy_spec",
    "write_part_file",
]

GROUND_TRUTH_HEADER = ("shape_id", "label")
"""The header of a classification ground-truth CSV."""
PREDICTION_HEADER = ("shape_id", "predicted_class", "score")
"""The header of a classification prediction CSV (the score is the predicted class's probability)."""

_CLASS_LISTS = {"modelnet40": MODELNET40_CLASSES}


# --------------------------------------------------------------------------------------------------
# names of classes and taxonomies


def _taxonomies_in_data() -> dict[str, PartTaxonomy]:
    """The taxonomies ``perception.data.shapes`` defines (the synthetic shapes'), by name and constant
    name; imported only when a taxonomy is asked for by a name the structures do not define."""
    try:
        module = importlib.import_module("perception.data.shapes")
    except ImportError:
        return {}
    found = {}
    for attr in getattr(module, "__all__", dir(module)):
        if not attr.isupper():  # constants only (the package loads its modules on first use)
            continue
        value = getattr(module, attr, None)
        if isinstance(value, PartTaxonomy):
            found[value.name] = found[attr.lower()] = value
    return found


def part_taxonomy(spec: PartTaxonomy | str | Mapping[str, Any]) -> PartTaxonomy:
    """A :class:`PartTaxonomy` from itself, a name (``shapenet_part``; ``synthetic_parts`` and the other
    taxonomies of ``perception.data.shapes``), a JSON file of one, or a mapping of its fields.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or a malformed mapping.
    """
    if isinstance(spec, PartTaxonomy):
        return spec
    if isinstance(spec, Mapping):
        try:
            return PartTaxonomy(
                name=str(spec["name"]),
                categories=tuple(str(c) for c in spec["categories"]),
                parts=tuple(tuple(int(p) for p in ps) for ps in spec["parts"]),
                synsets=tuple(str(s) for s in spec.get("synsets", ())),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"a part taxonomy needs name, categories and parts; got {dict(spec)}") from err
    name = str(spec)
    if name == SHAPENET_PART.name:
        return SHAPENET_PART
    if name.endswith(".json") and Path(name).is_file():
        return part_taxonomy(json.loads(Path(name).read_text()))
    known = _taxonomies_in_data()
    if name in known:
        return known[name]
    names = sorted({SHAPENET_PART.name, *(t.name for t in known.values())})
    raise ValueError(f"unknown part taxonomy {name!r}: known are {', '.join(names)} (or a JSON file of one)")


def taxonomy_spec(taxonomy: PartTaxonomy) -> str | dict[str, Any]:
    """What names ``taxonomy`` in a config or a checkpoint's hyperparameters: its name where
    :func:`part_taxonomy` resolves that name to the same taxonomy, else its fields as plain lists."""
    try:
        if part_taxonomy(taxonomy.name) == taxonomy:
            return taxonomy.name
    except ValueError:
        pass
    return {
        "name": taxonomy.name,
        "categories": list(taxonomy.categories),
        "parts": [list(p) for p in taxonomy.parts],
        "synsets": list(taxonomy.synsets),
    }


def class_list(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Class names from a list, a known name (``modelnet40``: ModelNet40's ``shape_names.txt`` order)
    or a text file of one name per line (as ``shape_names.txt``).

    Raises:
        ValueError: an unknown name, no names, or the same name twice.
    """
    if isinstance(spec, str):
        if spec in _CLASS_LISTS:
            names = _CLASS_LISTS[spec]
        elif Path(spec).is_file():
            names = tuple(line.strip() for line in Path(spec).read_text().splitlines() if line.strip())
        else:
            raise ValueError(
                f"unknown class list {spec!r}: known are {', '.join(_CLASS_LISTS)}, or a file of names"
            )
    else:
        names = tuple(str(n) for n in spec)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct and at least one, got {list(names)}")
    return names


def _nan_mean(values: NDArray[np.float64]) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def _integer_ids(ids: torch.Tensor, what: str, owner: str) -> torch.Tensor:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{owner}: {what} must be integer ids, got {ids.dtype}")
    return ids.long()


def _check_range(ids: torch.Tensor, size: int, what: str, owner: str) -> None:
    if ids.numel():
        lo, hi = torch.aminmax(ids)
        if lo < 0 or hi >= size:
            raise ValueError(f"{owner}: {what} {int(lo)}..{int(hi)} outside 0..{size - 1}")


# --------------------------------------------------------------------------------------------------
# classification


class ClassificationEvaluator(Metric):
    """Overall and mean class accuracy of shape classification (see the module docstring).

    The state is one (K, K) int64 confusion matrix indexed ``[ground truth, prediction]``, summed across
    processes under DDP. ``compute()`` returns, in percent, ``overall_accuracy``,
    ``mean_class_accuracy`` and ``accuracy/<class>`` for each of the K classes (NaN where undefined:
    nothing added, or a class with no shape).

    Also the classification task's evaluator plug-in: the task calls :meth:`bind` with its class names
    (so ``class_names`` may be left out in a config) and :meth:`update` with its logits and the batch's
    labels; :meth:`headline` and :attr:`progress_key` say what it logs.

    Args:
        class_names: the K classes (labels index into them); None: given later by :meth:`bind`.
        per_class: log each class's accuracy every epoch too (``compute`` always returns them).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confusion: torch.Tensor

    def __init__(
        self, class_names: Sequence[str] | None = None, per_class: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.per_class = per_class
        self.class_names: tuple[str, ...] = ()
        if class_names is not None:
            self.bind(class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def bind(self, class_names: Sequence[str]) -> None:
        """Name the K classes (once; again with the same names is a no-op).

        Raises:
            ValueError: names that are not distinct, or other names than those already bound.
        """
        names = class_list(list(class_names))
        if self.class_names:
            if names != self.class_names:
                raise ValueError(
                    f"ClassificationEvaluator: bound to classes {list(self.class_names)}, not {list(names)}"
                )
            return
        self.class_names = names
        k = len(names)
        self.add_state("confusion", default=torch.zeros(k, k, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add shapes: ``preds`` (B, K) logits (or probabilities) or (B,) predicted class ids;
        ``target`` (B,) class ids.

        Raises:
            ValueError: before :meth:`bind`, mismatched sizes, or ids outside 0..K-1.
        """
        owner, k = "ClassificationEvaluator", self.num_classes
        if not k:
            raise RuntimeError(f"{owner}: bind(class_names) first (the task does)")
        preds, target = torch.as_tensor(preds), torch.as_tensor(target).reshape(-1)
        if preds.is_floating_point():
            if preds.ndim != 2 or preds.shape[1] != k:
                raise ValueError(f"{owner}: logits must be (B, {k}), got {tuple(preds.shape)}")
            preds = preds.argmax(1)
        preds = _integer_ids(preds.reshape(-1), "predictions", owner)
        target = _integer_ids(target, "labels", owner)
        if preds.shape != target.shape:
            raise ValueError(f"{owner}: {len(preds)} predictions for {len(target)} labels")
        _check_range(preds, k, "predicted classes", owner)
        _check_range(target, k, "labels", owner)
        device = self.confusion.device
        index = target.to(device) * k + preds.to(device)
        self.confusion += torch.bincount(index, minlength=k * k).reshape(k, k)

    def compute(self) -> dict[str, float]:
        conf = self.confusion.detach().cpu().numpy().astype(np.float64)
        total, shapes = conf.sum(), conf.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(shapes > 0, np.diag(conf) / shapes, np.nan)
        overall = float(np.trace(conf) / total) if total else float("nan")
        results = {"overall_accuracy": 100.0 * overall, "mean_class_accuracy": 100.0 * _nan_mean(recall)}
        return results | {
            f"accuracy/{n}": 100.0 * float(r) for n, r in zip(self.class_names, recall, strict=True)
        }

    @property
    def progress_key(self) -> str | None:
        return "overall_accuracy"

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        """What the task logs each epoch: every finite result (per class ones when ``per_class``)."""
        return {k: v for k, v in results.items() if not math.isnan(v) and (self.per_class or "/" not in k)}


# --------------------------------------------------------------------------------------------------
# part segmentation


class PartSegmentationEvaluator(Metric):
    """ShapeNet-part's instance and class mIoU (see the module docstring).

    States, summed across processes under DDP: per category the sum of its shapes' IoU (float64) and
    their count, and the correctly labelled and all points. ``compute()`` returns, in percent,
    ``instance_mIoU``, ``class_mIoU``, ``mIoU/<category>`` for each category and ``accuracy`` (NaN where
    undefined).

    Also the part-segmentation task's evaluator plug-in: the task calls :meth:`bind` with its taxonomy
    (so ``taxonomy`` may be left out in a config) and :meth:`update` with its logits, the batch's part
    labels and categories.

    Args:
        taxonomy: the categories and their parts (a :class:`PartTaxonomy` or a name for
            :func:`part_taxonomy`); None: given later by :meth:`bind`.
        per_category: log each category's mIoU every epoch too (``compute`` always returns them).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    iou_sum: torch.Tensor
    shapes: torch.Tensor
    correct: torch.Tensor
    points: torch.Tensor

    def __init__(
        self,
        taxonomy: PartTaxonomy | str | Mapping[str, Any] | None = None,
        per_category: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.per_category = per_category
        self.taxonomy: PartTaxonomy | None = None
        if taxonomy is not None:
            self.bind(taxonomy)

    def bind(self, taxonomy: PartTaxonomy | str | Mapping[str, Any]) -> None:
        """Set the taxonomy (once; again with the same one is a no-op).

        Raises:
            ValueError: another taxonomy than the one already bound.
        """
        taxonomy = part_taxonomy(taxonomy)
        if self.taxonomy is not None:
            if taxonomy != self.taxonomy:
                raise ValueError(
                    f"PartSegmentationEvaluator: bound to the {self.taxonomy.name} taxonomy, not {taxonomy.name}"
                )
            return
        self.taxonomy = taxonomy
        k = taxonomy.num_categories
        self.register_buffer("part_mask", torch.from_numpy(taxonomy.part_mask()), persistent=False)
        self.register_buffer("part_category", torch.from_numpy(taxonomy.part_category()), persistent=False)
        self.add_state("iou_sum", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("shapes", default=torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("points", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def bound(self) -> PartTaxonomy:
        if self.taxonomy is None:
            raise RuntimeError("PartSegmentationEvaluator: bind(taxonomy) first (the task does)")
        return self.taxonomy

    def predict(self, logits: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, N) global part ids: the argmax of ``logits`` (B, N, P) over each shape's category's parts."""
        mask = self.part_mask.to(logits.device)[category.long()]  # (B, P)
        return logits.masked_fill(~mask[:, None, :], float("-inf")).argmax(-1)

    def update(self, preds: torch.Tensor, target: torch.Tensor, category: torch.Tensor) -> None:
        """Add shapes: ``preds`` (B, N, P) logits or (B, N) global part ids, ``target`` (B, N) global
        part ids, ``category`` (B,) category indices.

        Raises:
            ValueError: before :meth:`bind`, mismatched shapes, ids out of range, or a ground-truth part
                that is not of its shape's category (a wrong taxonomy, or labels of another dataset).
        """
        taxonomy, owner = self.bound(), "PartSegmentationEvaluator"
        p, k = taxonomy.num_parts, taxonomy.num_categories
        device = self.iou_sum.device
        preds, target = torch.as_tensor(preds).to(device), torch.as_tensor(target).to(device)
        category = _integer_ids(torch.as_tensor(category).to(device).reshape(-1), "categories", owner)
        _check_range(category, k, "categories", owner)
        if preds.is_floating_point():
            if preds.ndim != 3 or preds.shape[-1] != p:
                raise ValueError(f"{owner}: logits must be (B, N, {p}), got {tuple(preds.shape)}")
            preds = self.predict(preds, category)
        preds = _integer_ids(preds, "predicted parts", owner)
        target = _integer_ids(target, "part labels", owner)
        if preds.ndim != 2 or preds.shape != target.shape or len(category) != len(target):
            raise ValueError(
                f"{owner}: predictions {tuple(preds.shape)}, labels {tuple(target.shape)} and categories "
                f"{tuple(category.shape)} must be (B, N), (B, N) and (B,)"
            )
        _check_range(preds, p, "predicted parts", owner)
        _check_range(target, p, "part labels", owner)
        b = len(target)
        if b == 0:
            return
        stray = self.part_category[target] != category[:, None]
        if bool(stray.any()):
            shape, point = (int(i) for i in stray.nonzero()[0])
            raise ValueError(
                f"{owner}: shape {shape} of category {taxonomy.categories[int(category[shape])]} has point "
                f"{point} labelled part {int(target[shape, point])}, which is not one of its category's parts "
                f"{list(taxonomy.parts[int(category[shape])])} in the {taxonomy.name} taxonomy"
            )
        offset = torch.arange(b, device=device)[:, None] * p
        hit = preds == target
        n_pred = torch.bincount((offset + preds).reshape(-1), minlength=b * p).reshape(b, p)
        n_gt = torch.bincount((offset + target).reshape(-1), minlength=b * p).reshape(b, p)
        inter = torch.bincount((offset + target)[hit], minlength=b * p).reshape(b, p)
        union = n_pred + n_gt - inter
        iou = torch.where(union > 0, inter.double() / union.clamp_min(1).double(), 1.0)
        own = self.part_mask[category]  # (B, P) the parts each shape is scored on
        shape_iou = (iou * own).sum(1) / own.sum(1)
        self.iou_sum.index_add_(0, category, shape_iou)
        self.shapes += torch.bincount(category, minlength=k)
        self.correct += hit.sum()
        self.points += target.numel()

    def compute(self) -> dict[str, float]:
        taxonomy = self.bound()
        sums = self.iou_sum.detach().cpu().numpy()
        counts = self.shapes.detach().cpu().numpy().astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_category = np.where(counts > 0, sums / counts, np.nan)
        total, points = counts.sum(), int(self.points)
        results = {
            "instance_mIoU": 100.0 * float(sums.sum() / total) if total else float("nan"),
            "class_mIoU": 100.0 * _nan_mean(per_category),
            "accuracy": 100.0 * int(self.correct) / points if points else float("nan"),
        }
        return results | {
            f"mIoU/{c}": 100.0 * float(v) for c, v in zip(taxonomy.categories, per_category, strict=True)
        }

    @property
    def progress_key(self) -> str | None:
        return "instance_mIoU"

    def headline(self, results: dict[str, float]) -> dict[str, float]:
        """What the task logs each epoch: every finite result (per category ones when ``per_category``)."""
        return {k: v for k, v in results.items() if not math.isnan(v) and (self.per_category or "/" not in k)}


# --------------------------------------------------------------------------------------------------
# files


def classification_csv(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """CSV text of ``header`` then ``rows`` (ids quoted where they need it); floats with 6 decimals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def read_class_csv(path: str | Path) -> dict[str, str]:
    """``{shape_id: class name}`` of a ground-truth (``shape_id,label``) or prediction
    (``shape_id,predicted_class[,score]``) CSV: the first two columns, after the header row.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a row with fewer than two columns, or a shape id twice (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CSV file")
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows or rows[0][:1] != ["shape_id"]:
        raise ValueError(f"{path}: expected a header row starting with shape_id")
    labels: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2:
            raise ValueError(f"{path}:{line}: expected shape_id,class, got {row}")
        if row[0] in labels:
            raise ValueError(f"{path}:{line}: shape {row[0]!r} appears twice")
        labels[row[0]] = row[1].strip()
    return labels


def _names(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def classification_from_files(
    gt_csv: str | Path, pred_csv: str | Path, class_names: str | Sequence[str] | None = None
) -> dict[str, float]:
    """:class:`ClassificationEvaluator`'s results for a prediction CSV against a ground-truth CSV.

    Args:
        class_names: the classes (:func:`class_list`: a list, ``modelnet40`` or a file); default the
            sorted names found in the two files.

    Raises:
        FileNotFoundError, ValueError: a missing file, a ground-truth shape without a prediction, a
            prediction of a shape not in the ground truth, or a class not in ``class_names``.
    """
    gt, pred = read_class_csv(gt_csv), read_class_csv(pred_csv)
    if not gt:
        raise ValueError(f"{gt_csv}: no shapes")
    missing = [s for s in gt if s not in pred]
    if missing:
        raise ValueError(
            f"{pred_csv}: no prediction for {len(missing)} shapes of {gt_csv}: {_names(missing)}"
        )
    strays = [s for s in pred if s not in gt]
    if strays:
        raise ValueError(f"{pred_csv}: predictions of shapes not in {gt_csv}: {_names(strays)}")
    names = class_list(sorted({*gt.values(), *pred.values()}) if class_names is None else class_names)
    index = {n: i for i, n in enumerate(names)}
    for path, labels in ((gt_csv, gt), (pred_csv, pred)):
        unknown = sorted({v for v in labels.values() if v not in index})
        if unknown:
            raise ValueError(
                f"{path}: classes {_names(unknown)} are not among the {len(names)} classes scored"
            )
    metric = ClassificationEvaluator(names)
    ids = list(gt)
    metric.update(torch.tensor([index[pred[s]] for s in ids]), torch.tensor([index[gt[s]] for s in ids]))
    return metric.compute()


def part_file(folder: str | Path, shape_id: str) -> Path:
    """``folder/<shape_id>.txt``, the per-shape part file of ``shape_id`` (``a/b`` → ``folder/a/b.txt``).

    Raises:
        ValueError: an id that is empty, absolute, or has empty, ``.`` or ``..`` path components.
    """
    parts = shape_id.split("/")
    if not shape_id or any(p in ("", ".", "..") for p in parts) or "\\" in shape_id or "\0" in shape_id:
        raise ValueError(f"shape id {shape_id!r} cannot name a file (empty, absolute or with . / .. parts)")
    return Path(folder, *parts[:-1], parts[-1] + ".txt")


def write_part_file(path: str | Path, part_ids: Any) -> None:
    """Write (N,) integer part ids, one per line, atomically."""
    ids = np.asarray(part_ids.detach().cpu() if isinstance(part_ids, torch.Tensor) else part_ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: part ids must be a 1D integer array, got {ids.dtype} {ids.shape}")
    atomic_write_text(path, "".join(f"{int(i)}\n" for i in ids), fsync=False)


def read_part_file(path: str | Path) -> NDArray[np.int64]:
    """(N,) int64 part ids of a per-shape part file (one integer per line; blank lines skipped).

    Raises:
        ValueError: a line that is not an integer (named with its number).
    """
    path = Path(path)
    text = path.read_text()
    try:
        return np.array([int(line) for line in text.split() if line], dtype=np.int64)
    except ValueError:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.strip().lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: {line.strip()!r} is not a part id") from None
        raise


def _part_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder does not exist")
    return {p.relative_to(folder).with_suffix("").as_posix(): p for p in sorted(folder.rglob("*.txt"))}


def part_segmentation_from_files(
    gt_dir: str | Path, pred_dir: str | Path, taxonomy: PartTaxonomy | str | Mapping[str, Any] = SHAPENET_PART
) -> dict[str, float]:
    """:class:`PartSegmentationEvaluator`'s results for a folder of per-shape prediction files against
    a folder of ground-truth files (see the module docstring for the format).

    Raises:
        FileNotFoundError, ValueError: a missing folder; no ground-truth files; a shape without a
            prediction file, or a prediction file without a ground-truth one; files of different
            lengths; ids outside the taxonomy, or ground truth spanning two categories (each message
            names the file).
    """
    taxonomy = part_taxonomy(taxonomy)
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt_files, pred_files = _part_files(gt_dir, "ground-truth"), _part_files(pred_dir, "prediction")
    if not gt_files:
        raise ValueError(f"{gt_dir}: no .txt part files")
    missing = [str(part_file(pred_dir, s)) for s in gt_files if s not in pred_files]
    if missing:
        raise FileNotFoundError(f"no prediction file for a shape of {gt_dir}: {_names(missing)}")
    strays = [str(p) for s, p in pred_files.items() if s not in gt_files]
    if strays:
        raise ValueError(f"prediction files with no ground truth in {gt_dir}: {_names(strays)}")
    metric = PartSegmentationEvaluator(taxonomy)
    part_category = taxonomy.part_category()
    for shape_id, gt_path in gt_files.items():
        target, pred = read_part_file(gt_path), read_part_file(pred_files[shape_id])
        if len(pred) != len(target):
            raise ValueError(
                f"{pred_files[shape_id]}: {len(pred)} part ids for the {len(target)} of {gt_path}"
            )
        for path, ids in ((gt_path, target), (pred_files[shape_id], pred)):
            if ids.size and (ids.min() < 0 or ids.max() >= taxonomy.num_parts):
                raise ValueError(
                    f"{path}: part ids {ids.min()}..{ids.max()} outside 0..{taxonomy.num_parts - 1} "
                    f"of the {taxonomy.name} taxonomy"
                )
        categories = np.unique(part_category[target])
        if len(categories) != 1:
            names = [taxonomy.categories[c] for c in categories]
            raise ValueError(
                f"{gt_path}: its part ids belong to {len(categories)} categories {names}, not one"
            )
        metric.update(
            torch.from_numpy(pred)[None], torch.from_numpy(target)[None], torch.tensor([int(categories[0])])
        )
    return metric.compute()


# --------------------------------------------------------------------------------------------------
# tables and the command line


def _table(rows: list[tuple[str, float]], header: str, totals: list[tuple[str, float]]) -> str:
    width = max([len(n) for n, _ in rows + totals] + [8])
    lines = [f"{header.split('|')[0]:<{width}}  {header.split('|')[1]}"]
    lines += [f"{name:<{width}}  {value:7.2f}" for name, value in rows]
    lines.append("-" * (width + 9))
    lines += [f"{name:<{width}}  {value:7.2f}" for name, value in totals]
    return "\n".join(lines)


def format_classification(results: Mapping[str, float]) -> str:
    """A table of classification results: per-class accuracy (classes with shapes), then OA and mAcc."""
    rows = [
        (k.split("/", 1)[1], v) for k, v in results.items() if k.startswith("accuracy/") and not math.isnan(v)
    ]
    totals = [("OA", results["overall_accuracy"]), ("mAcc", results["mean_class_accuracy"])]
    return _table(rows, "class|acc (%)", totals)


def format_part_segmentation(results: Mapping[str, float]) -> str:
    """A table of part-segmentation results: per-category mIoU (categories with shapes), then the
    instance and class mIoU and the point accuracy."""
    rows = [
        (k.split("/", 1)[1], v) for k, v in results.items() if k.startswith("mIoU/") and not math.isnan(v)
    ]
    totals = [
        ("instance mIoU", results["instance_mIoU"]),
        ("class mIoU", results["class_mIoU"]),
        ("accuracy", results["accuracy"]),
    ]
    return _table(rows, "category|mIoU (%)", totals)


def results_json(results: Mapping[str, float]) -> str:
    """``results`` as JSON, NaN (undefined) as null."""
    return json.dumps({k: None if math.isnan(v) else v for k, v in results.items()}, indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perception.eval.shapes {classification,parts} GT PRED [...] [--json OUT]``."""
    parser = argparse.ArgumentParser(
        prog="python -m perception.eval.shapes",
        description="Shape classification (OA, mAcc) and ShapeNet-part segmentation (instance / class mIoU) "
        "evaluation of prediction files against ground truth.",
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    cls = sub.add_parser(
        "classification", help="two CSV files: shape_id,label and shape_id,predicted_class[,score]"
    )
    cls.add_argument("gt_csv", type=Path)
    cls.add_argument("pred_csv", type=Path)
    cls.add_argument(
        "--classes", help="modelnet40 or a file of class names (default: the names in the files)"
    )
    parts = sub.add_parser("parts", help="two folders of <shape_id>.txt files, one global part id per line")
    parts.add_argument("gt_dir", type=Path)
    parts.add_argument("pred_dir", type=Path)
    parts.add_argument(
        "--taxonomy",
        default=SHAPENET_PART.name,
        help="shapenet_part (default), synthetic_parts or a JSON file",
    )
    for p in (cls, parts):
        p.add_argument("--json", type=Path, help="write the results (percent; null where undefined)")
    args = parser.parse_args(argv)
    try:
        if args.kind == "classification":
            results = classification_from_files(args.gt_csv, args.pred_csv, args.classes)
            table = format_classification(results)
        else:
            results = part_segmentation_from_files(args.gt_dir, args.pred_dir, args.taxonomy)
            table = format_part_segmentation(results)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table)
    if args.json is not None:
        atomic_write_text(args.json, results_json(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
