"""Shape metrics: ModelNet40's OA / mAcc and ShapeNet-part's instance / class mIoU.

Hand-derived cases, a plain NumPy transcription of PointNet's scripts (``evaluate.py``,
``part_seg/test.py``) checked on random data, DDP-style merging, the files and the command line.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.eval.shapes import (
    ClassificationEvaluator,
    PartSegmentationEvaluator,
    classification_csv,
    classification_from_files,
    main,
    part_file,
    part_segmentation_from_files,
    part_taxonomy,
    read_part_file,
    taxonomy_spec,
    write_part_file,
)
from perception.structures.shapes import MODELNET40_CLASSES, SHAPENET_PART, PartTaxonomy
from tests.support.shapes import run_parts_cli

# two categories: "mug" owns parts 0, 1, 2; "cup" owns 3, 4
TINY = PartTaxonomy(name="tiny", categories=("mug", "cup"), parts=((0, 1, 2), (3, 4)))


# --------------------------------------------------------------------------------------------------
# NumPy transcriptions of PointNet's scripts


def reference_classification(pred: np.ndarray, gt: np.ndarray, k: int) -> tuple[float, float]:
    """(OA, mAcc) in percent, counted shape by shape as evaluate.py does (classes with shapes only)."""
    correct_class, seen_class = np.zeros(k), np.zeros(k)
    for p, g in zip(pred, gt, strict=True):
        seen_class[g] += 1
        correct_class[g] += p == g
    seen = seen_class > 0
    return 100 * float(np.mean(pred == gt)), 100 * float(np.mean(correct_class[seen] / seen_class[seen]))


def reference_parts(preds, gts, categories, taxonomy) -> tuple[float, float, float]:
    """(instance mIoU, class mIoU, accuracy) in percent, shape by shape as part_seg/test.py does."""
    per_category: dict[int, list[float]] = {}
    shape_ious, correct, points = [], 0, 0
    for pred, gt, cat in zip(preds, gts, categories, strict=True):
        total = 0.0
        for part in taxonomy.parts[cat]:
            n_pred, n_gt = np.sum(pred == part), np.sum(gt == part)
            n_inter = np.sum((pred == part) & (gt == part))
            n_union = n_pred + n_gt - n_inter
            total += 1.0 if n_union == 0 else n_inter / n_union
        iou = total / len(taxonomy.parts[cat])
        shape_ious.append(iou)
        per_category.setdefault(cat, []).append(iou)
        correct += np.sum(pred == gt)
        points += len(gt)
    class_miou = np.mean([np.mean(v) for v in per_category.values()])
    return 100 * float(np.mean(shape_ious)), 100 * float(class_miou), 100 * correct / points


# --------------------------------------------------------------------------------------------------
# classification


def test_hand_derived_confusion_accuracies():
    # class a: 4 shapes, 3 right; class b: 2 shapes, 1 right (one called c); class c: 1 shape, wrong
    gt = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 2, 0])
    metric = ClassificationEvaluator(["a", "b", "c"])
    metric.update(pred, gt)
    expected = torch.zeros(3, 3, dtype=torch.int64)  # [ground truth, prediction]
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 2], expected[2, 0] = 3, 1, 1, 1, 1
    assert torch.equal(metric.confusion, expected)
    results = metric.compute()
    assert results["overall_accuracy"] == pytest.approx(100 * 4 / 7)
    assert results["accuracy/a"] == pytest.approx(75.0) and results["accuracy/b"] == pytest.approx(50.0)
    assert results["accuracy/c"] == 0.0
    assert results["mean_class_accuracy"] == pytest.approx(100 * (0.75 + 0.5 + 0.0) / 3)


def test_classes_absent_from_the_ground_truth_are_in_no_mean_but_wrong_predictions_of_them_count():
    metric = ClassificationEvaluator(["a", "b", "c"])
    metric.update(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))  # nothing is class c; c predicted once
    results = metric.compute()
    assert math.isnan(results["accuracy/c"])
    assert results["mean_class_accuracy"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert results["overall_accuracy"] == pytest.approx(100 * 2 / 3)
    assert "accuracy/c" not in metric.headline(results) and metric.progress_key == "overall_accuracy"


def test_logits_score_as_their_argmax_and_an_empty_metric_is_undefined():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    a, b = ClassificationEvaluator(["x", "y", "z"]), ClassificationEvaluator(["x", "y", "z"])
    a.update(logits, torch.tensor([1, 1, 2]))
    b.update(torch.tensor([1, 0, 2]), torch.tensor([1, 1, 2]))
    assert a.compute() == pytest.approx(b.compute(), nan_ok=True)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert all(math.isnan(v) for v in ClassificationEvaluator(["x"]).compute().values())


def test_classification_refuses_bad_input_and_rebinding_to_other_classes():
    metric = ClassificationEvaluator()
    with pytest.raises(RuntimeError, match="bind"):
        metric.update(torch.tensor([0]), torch.tensor([0]))
    metric.bind(["a", "b"])
    metric.bind(("a", "b"))  # the same names again: fine
    with pytest.raises(ValueError, match="bound to classes"):
        metric.bind(["a", "c"])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        metric.update(torch.tensor([2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="logits must be"):
        metric.update(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="distinct"):
        ClassificationEvaluator(["a", "a"])


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(2, 6),
    data=st.data(),
)
def test_classification_matches_pointnets_evaluate_script(k, data):
    n = data.draw(st.integers(1, 40))
    gt = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    pred = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    metric = ClassificationEvaluator([f"c{i}" for i in range(k)])
    split = data.draw(st.integers(0, n))  # added in two batches
    metric.update(torch.from_numpy(pred[:split]), torch.from_numpy(gt[:split]))
    metric.update(torch.from_numpy(pred[split:]), torch.from_numpy(gt[split:]))
    oa, macc = reference_classification(pred, gt, k)
    results = metric.compute()
    assert results["overall_accuracy"] == pytest.approx(oa, rel=1e-12)
    assert results["mean_class_accuracy"] == pytest.approx(macc, rel=1e-12)


def test_classification_states_sum_when_merged_as_ddp_does():
    rng = np.random.default_rng(0)
    gt, pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    names = list("abcd")
    a, b, whole = (
        ClassificationEvaluator(names),
        ClassificationEvaluator(names),
        ClassificationEvaluator(names),
    )
    a.update(torch.from_numpy(pred[:20]), torch.from_numpy(gt[:20]))
    b.update(torch.from_numpy(pred[20:]), torch.from_numpy(gt[20:]))
    whole.update(torch.from_numpy(pred), torch.from_numpy(gt))
    a.merge_state(b)  # each state's dist_reduce_fx, as the DDP sync applies it
    assert a.compute() == whole.compute()


# --------------------------------------------------------------------------------------------------
# part segmentation


def test_hand_derived_part_ious_with_absent_parts_counting_one():
    metric = PartSegmentationEvaluator(TINY)
    # a mug: part 0 IoU 1/2, part 1 IoU 2/3, part 2 in neither → 1
    metric.update(torch.tensor([[0, 1, 1, 1]]), torch.tensor([[0, 0, 1, 1]]), torch.tensor([0]))
    # a cup, all right; a second cup where part 4 is predicted nowhere: part 3 IoU 2/3, part 4 IoU 0
    metric.update(
        torch.tensor([[3, 3, 4], [3, 3, 3]]), torch.tensor([[3, 3, 4], [3, 3, 4]]), torch.tensor([1, 1])
    )
    mug, cup1, cup2 = (0.5 + 2 / 3 + 1) / 3, 1.0, (2 / 3 + 0) / 2
    results = metric.compute()
    assert results["mIoU/mug"] == pytest.approx(100 * mug)
    assert results["mIoU/cup"] == pytest.approx(100 * (cup1 + cup2) / 2)
    assert results["instance_mIoU"] == pytest.approx(100 * (mug + cup1 + cup2) / 3)
    assert results["class_mIoU"] == pytest.approx(100 * (mug + (cup1 + cup2) / 2) / 2)
    assert results["accuracy"] == pytest.approx(100 * 8 / 10)
    assert metric.progress_key == "instance_mIoU"


def test_logits_are_restricted_to_the_shapes_category():
    metric = PartSegmentationEvaluator(TINY)
    logits = torch.full((1, 2, 5), -1.0)
    logits[0, :, 4] = 9.0  # a cup part would win an unmasked argmax
    logits[0, 0, 1], logits[0, 1, 2] = 1.0, 0.5  # among the mug's own parts: 1, then 2
    assert metric.predict(logits, torch.tensor([0])).tolist() == [[1, 2]]
    metric.update(logits, torch.tensor([[1, 2]]), torch.tensor([0]))
    assert metric.compute()["instance_mIoU"] == pytest.approx(100.0)


def test_predicted_ids_of_another_category_are_misses():
    metric = PartSegmentationEvaluator(TINY)
    metric.update(torch.tensor([[4, 0]]), torch.tensor([[0, 0]]), torch.tensor([0]))
    # part 0: inter 1, union 2 (the point predicted 4 counts in part 0's ground truth only); 1, 2 absent
    assert metric.compute()["instance_mIoU"] == pytest.approx(100 * (0.5 + 1 + 1) / 3)


def test_part_labels_outside_the_shapes_category_are_an_error_naming_them():
    metric = PartSegmentationEvaluator(TINY)
    with pytest.raises(ValueError, match="category mug has point 1 labelled part 3"):
        metric.update(torch.tensor([[0, 0]]), torch.tensor([[0, 3]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"outside 0\.\.4"):
        metric.update(torch.tensor([[5, 0]]), torch.tensor([[0, 0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="must be"):
        metric.update(torch.tensor([[0, 0]]), torch.tensor([[0, 0, 0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="bound to the tiny taxonomy"):
        metric.bind(SHAPENET_PART)
    with pytest.raises(RuntimeError, match="bind"):
        PartSegmentationEvaluator().update(torch.tensor([[0]]), torch.tensor([[0]]), torch.tensor([0]))
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert all(math.isnan(v) for v in PartSegmentationEvaluator(TINY).compute().values())


@st.composite
def part_case(draw):
    """Shapes of random categories of a random taxonomy, their labels and predicted ids (some of
    other categories' parts)."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    starts = np.cumsum([0, *sizes])
    taxonomy = PartTaxonomy(
        name="random",
        categories=tuple(f"k{i}" for i in range(len(sizes))),
        parts=tuple(tuple(range(starts[i], starts[i + 1])) for i in range(len(sizes))),
    )
    b, n = draw(st.integers(1, 6)), draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    categories = rng.integers(0, len(sizes), b)
    gt = np.stack([rng.integers(starts[c], starts[c + 1], n) for c in categories])
    own = np.stack([rng.integers(starts[c], starts[c + 1], n) for c in categories])
    pred = np.where(rng.random((b, n)) < 0.15, rng.integers(0, starts[-1], (b, n)), own)
    return taxonomy, gt, pred, categories


@settings(max_examples=40, deadline=None)
@given(case=part_case())
def test_part_segmentation_matches_pointnets_test_script(case):
    taxonomy, gt, pred, categories = case
    metric = PartSegmentationEvaluator(taxonomy)
    metric.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(categories))
    instance, klass, accuracy = reference_parts(pred, gt, categories, taxonomy)
    results = metric.compute()
    assert results["instance_mIoU"] == pytest.approx(instance, rel=1e-9)
    assert results["class_mIoU"] == pytest.approx(klass, rel=1e-9)
    assert results["accuracy"] == pytest.approx(accuracy, rel=1e-12)


def test_part_states_sum_when_merged_as_ddp_does():
    rng = np.random.default_rng(1)
    categories = rng.integers(0, 2, 9)
    spans = [(0, 3), (3, 5)]
    gt = np.stack([rng.integers(*spans[c], 20) for c in categories])
    pred = np.stack([rng.integers(*spans[c], 20) for c in categories])
    a, b, whole = (PartSegmentationEvaluator(TINY) for _ in range(3))
    a.update(torch.from_numpy(pred[:4]), torch.from_numpy(gt[:4]), torch.from_numpy(categories[:4]))
    b.update(torch.from_numpy(pred[4:]), torch.from_numpy(gt[4:]), torch.from_numpy(categories[4:]))
    whole.update(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(categories))
    a.merge_state(b)
    merged, expected = a.compute(), whole.compute()
    assert merged.keys() == expected.keys()
    assert all(merged[k] == pytest.approx(expected[k], rel=1e-12) for k in expected)


def test_taxonomies_resolve_by_name_file_and_mapping(tmp_path):
    assert part_taxonomy("shapenet_part") is SHAPENET_PART and taxonomy_spec(SHAPENET_PART) == "shapenet_part"
    spec = taxonomy_spec(TINY)  # not a known name: its fields, as plain lists
    assert spec == {"name": "tiny", "categories": ["mug", "cup"], "parts": [[0, 1, 2], [3, 4]], "synsets": []}
    assert part_taxonomy(spec) == TINY
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(spec))
    assert part_taxonomy(str(path)) == TINY
    with pytest.raises(ValueError, match=r"unknown part taxonomy 'nope'.*shapenet_part"):
        part_taxonomy("nope")


# --------------------------------------------------------------------------------------------------
# files and the command line


def write_csv(path, header, rows):
    path.write_text(classification_csv(rows, header))


def test_classification_files_and_cli_give_the_metrics_numbers(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    write_csv(gt, ("shape_id", "label"), [("s1", "chair"), ("s,2", "table"), ("s3", "chair")])
    write_csv(pred, ("shape_id", "predicted_class", "score"),
              [("s3", "table", 0.6), ("s1", "chair", 0.9), ("s,2", "table", 0.7)])  # fmt: skip
    results = classification_from_files(gt, pred, "modelnet40")
    assert results["overall_accuracy"] == pytest.approx(200 / 3)
    assert results["mean_class_accuracy"] == pytest.approx((50 + 100) / 2)
    assert len([k for k in results if k.startswith("accuracy/")]) == len(MODELNET40_CLASSES)
    assert main(["classification", str(gt), str(pred), "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "OA" in printed and "mAcc" in printed and "chair" in printed
    saved = json.loads((tmp_path / "m.json").read_text())
    assert set(saved) == {"overall_accuracy", "mean_class_accuracy", "accuracy/chair", "accuracy/table"}
    assert saved["overall_accuracy"] == pytest.approx(results["overall_accuracy"])


def test_classification_file_errors_exit_2_naming_the_file(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    write_csv(gt, ("shape_id", "label"), [("a", "x"), ("b", "y")])
    write_csv(pred, ("shape_id", "predicted_class"), [("a", "x")])
    assert main(["classification", str(gt), str(pred)]) == 2
    assert "no prediction for 1 shapes" in capsys.readouterr().err
    write_csv(pred, ("shape_id", "predicted_class"), [("a", "x"), ("b", "y"), ("c", "x")])
    with pytest.raises(ValueError, match="not in"):
        classification_from_files(gt, pred)
    write_csv(pred, ("shape_id", "predicted_class"), [("a", "x"), ("b", "sofa")])
    with pytest.raises(ValueError, match="sofa"):
        classification_from_files(gt, pred, ["x", "y"])
    pred.write_text("a,x\n")
    with pytest.raises(ValueError, match="header"):
        classification_from_files(gt, pred)


def test_part_files_and_cli_give_the_metrics_numbers(tmp_path, capsys):
    rng = np.random.default_rng(3)
    metric = PartSegmentationEvaluator(TINY)
    for i, cat in enumerate([0, 1, 1, 0]):
        lo, hi = [(0, 3), (3, 5)][cat]
        n = 10 + i  # shapes of different sizes
        gt, pred = rng.integers(lo, hi, n), rng.integers(lo, hi, n)
        shape_id = f"{cat}/shape{i}"  # a sub-folder per category, as ShapeNet's synset/model
        write_part_file(part_file(tmp_path / "gt", shape_id), gt)
        write_part_file(part_file(tmp_path / "pred", shape_id), torch.from_numpy(pred))
        metric.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None], torch.tensor([cat]))
    assert (tmp_path / "gt" / "1" / "shape1.txt").is_file()
    assert read_part_file(tmp_path / "gt" / "1" / "shape1.txt").shape == (11,)
    results = part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    assert results == pytest.approx(metric.compute())
    saved = run_parts_cli(tmp_path / "gt", tmp_path / "pred", taxonomy_spec(TINY), tmp_path)
    assert "instance mIoU" in capsys.readouterr().out
    assert saved == pytest.approx(results)


def test_part_file_errors_name_the_file(tmp_path, capsys):
    write_part_file(tmp_path / "gt" / "a.txt", np.array([0, 1]))
    write_part_file(tmp_path / "pred" / "a.txt", np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"a\.txt: 3 part ids for the 2"):
        part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    write_part_file(tmp_path / "pred" / "a.txt", np.array([0, 7]))
    with pytest.raises(ValueError, match=r"part ids 0..7 outside 0..4"):
        part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    write_part_file(tmp_path / "gt" / "a.txt", np.array([0, 3]))
    write_part_file(tmp_path / "pred" / "a.txt", np.array([0, 3]))
    with pytest.raises(ValueError, match="2 categories"):
        part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    write_part_file(tmp_path / "gt" / "b.txt", np.array([0]))
    assert main(["parts", str(tmp_path / "gt"), str(tmp_path / "pred"), "--taxonomy", "nope"]) == 2
    assert "unknown part taxonomy" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"b\.txt"):
        part_segmentation_from_files(tmp_path / "gt", tmp_path / "pred", TINY)
    (tmp_path / "pred" / "a.txt").write_text("0\nx\n")
    with pytest.raises(ValueError, match=r"a\.txt:2: 'x' is not a part id"):
        read_part_file(tmp_path / "pred" / "a.txt")
    for bad in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(ValueError, match="cannot name a file"):
            part_file(tmp_path, bad)
