"""SemanticKITTI's segmentation metric: hand-derived cases, a plain reference, properties, files and CLI.

The official definition (semantic-kitti-api ``evaluate_semantics.py`` + ``auxiliary/np_ioueval.py``):
confusion ``[prediction, ground truth]`` over 0..K, the ignore class's ground-truth column zeroed,
IoU = tp / (tp + fp + fn + 1e-15), mean over 1..K with absent classes as 0, accuracy = Σtp / (Σtp +
Σfp over 1..K). See perception/eval/segmentation.py.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.eval.segmentation import (
    SegmentationEvaluator,
    SemanticIoU,
    confusion_matrix,
    iou_from_confusion,
    main,
    semantic_iou_from_files,
)
from perception.structures import SEMANTIC_KITTI, Batch, ScanRecord
from perception.structures.segmentation import SYNTHETIC, UnknownLabelError

REPO = Path(__file__).resolve().parents[2]

# A hand-made case, K = 3 (training ids 1..3, 0 ignored), points as (prediction, ground truth):
HAND = (
    [(1, 1)] * 2  # class 1 right: tp1 += 2
    + [(2, 1)]  # class 1 called 2: fn1, fp2
    + [(2, 2)]  # class 2 right: tp2
    + [(1, 0)] * 3  # ignored ground truth: counts nowhere (column 0 zeroed)
    + [(0, 2)]  # class 2 predicted as ignore: fn2 (row 0 kept), and left out of the accuracy
)  # class 3 appears on neither side: IoU 0, still in the mean
HAND_IOU = np.array([0.0, 2 / 3, 1 / 3, 0.0])  # class 0's own "IoU" is 0/(1 fp + eps)
HAND_MIOU = (2 / 3 + 1 / 3 + 0.0) / 3
HAND_ACCURACY = 3 / 4  # tp 2 + 1 over (tp 3 + fp 1 of class 2); the point predicted 0 is in neither


def hand_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    pred, gt = zip(*HAND, strict=True)
    return torch.tensor(pred), torch.tensor(gt)


def reference(pred: np.ndarray, gt: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """The official numbers, class by class from their definitions (no confusion matrix): (K,) IoU,
    mIoU, accuracy, fractions."""
    valid = gt != 0
    iou = []
    for c in range(1, k + 1):
        tp = np.sum((pred == c) & (gt == c))
        fp = np.sum((pred == c) & (gt != c) & valid)
        fn = np.sum((gt == c) & (pred != c))
        iou.append(tp / (tp + fp + fn + 1e-15))
    accuracy = np.sum((pred == gt) & valid) / (np.sum(valid & (pred != 0)) + 1e-15)
    return np.array(iou), float(np.mean(iou)), float(accuracy)


# --------------------------------------------------------------------------------------------------
# the definition


def test_hand_derived_confusion_matrix_and_scores():
    pred, gt = hand_tensors()
    conf = confusion_matrix(pred.numpy(), gt.numpy(), 3)
    expected = np.zeros((4, 4), np.int64)  # [prediction, ground truth]
    expected[1, 1], expected[2, 1], expected[2, 2], expected[1, 0], expected[0, 2] = 2, 1, 1, 3, 1
    np.testing.assert_array_equal(conf, expected)
    scores = iou_from_confusion(conf)
    np.testing.assert_allclose(scores.iou, HAND_IOU, rtol=1e-12)
    assert scores.miou == pytest.approx(HAND_MIOU, rel=1e-12)
    assert scores.accuracy == pytest.approx(HAND_ACCURACY, rel=1e-12)
    # the torch metric gives the same, in percent
    metric = SemanticIoU(3, ["a", "b", "c"])
    metric.update(pred, gt)
    np.testing.assert_array_equal(metric.confusion.numpy(), expected)
    result = metric.compute()
    assert result == pytest.approx(
        {"mIoU": 100 * HAND_MIOU, "accuracy": 75.0, "IoU/a": 200 / 3, "IoU/b": 100 / 3, "IoU/c": 0.0}
    )


def test_ignored_ground_truth_counts_nowhere_whatever_is_predicted():
    pred, gt = hand_tensors()
    base = SemanticIoU(3)
    base.update(pred, gt)
    more = SemanticIoU(3)
    more.update(pred, gt)
    more.update(torch.tensor([1, 2, 3, 3, 0]), torch.zeros(5, dtype=torch.int64))
    assert more.compute() == base.compute()


def test_a_real_point_predicted_as_ignore_is_a_false_negative_but_not_in_the_accuracy():
    metric = SemanticIoU(2)
    metric.update(torch.tensor([1, 0, 2]), torch.tensor([1, 1, 2]))
    result = metric.compute()
    assert result["IoU/1"] == pytest.approx(50.0)  # tp 1, fn 1 (the point predicted 0)
    assert result["IoU/2"] == pytest.approx(100.0)
    assert result["accuracy"] == pytest.approx(100.0)  # 2 / 2: the point predicted 0 is left out


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_absent_classes_count_as_zero_and_an_empty_metric_scores_zero():
    metric = SemanticIoU(4)
    metric.update(torch.tensor([1, 2]), torch.tensor([1, 2]))
    result = metric.compute()
    assert result["IoU/3"] == result["IoU/4"] == 0.0
    assert result["mIoU"] == pytest.approx(50.0)  # (100 + 100 + 0 + 0) / 4
    empty = SemanticIoU(2).compute()
    assert empty == {"mIoU": 0.0, "accuracy": 0.0, "IoU/1": 0.0, "IoU/2": 0.0}  # 0 / 1e-15


def test_iou_from_confusion_ignores_the_given_classes():
    conf = np.array([[5, 1, 0], [2, 3, 1], [0, 4, 6]])
    # nothing ignored: every class in the mean, no column zeroed
    scores = iou_from_confusion(conf, ignore=())
    tp, fp, fn = np.diag(conf), conf.sum(1) - np.diag(conf), conf.sum(0) - np.diag(conf)
    np.testing.assert_allclose(scores.iou, tp / (tp + fp + fn))
    assert scores.accuracy == pytest.approx(tp.sum() / conf.sum())
    with pytest.raises(ValueError, match="square"):
        iou_from_confusion(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        iou_from_confusion(conf, ignore=(3,))


@pytest.mark.parametrize("seed", range(5))
def test_metric_matches_a_plain_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 20))
    n = int(rng.integers(0, 5000))
    gt = rng.integers(0, k + 1, n)
    pred = np.where(rng.random(n) < 0.6, gt, rng.integers(0, k + 1, n))  # mostly right, some 0
    metric = SemanticIoU(k)
    for chunk in np.array_split(np.arange(n), 3):
        metric.update(torch.from_numpy(pred[chunk]), torch.from_numpy(gt[chunk]))
    iou, miou, accuracy = reference(pred, gt, k)
    result = metric.compute()
    assert result["mIoU"] == pytest.approx(100 * miou, rel=1e-12, abs=1e-12)
    assert result["accuracy"] == pytest.approx(100 * accuracy, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose([result[f"IoU/{c}"] for c in range(1, k + 1)], 100 * iou, rtol=1e-12)


points = st.integers(1, 6).flatmap(
    lambda k: st.tuples(
        st.just(k),
        st.lists(st.tuples(st.integers(0, k), st.integers(0, k)), max_size=120),
        st.randoms(use_true_random=False),
        st.lists(st.integers(0, 120), max_size=4),
    )
)


@settings(max_examples=60, deadline=None)
@given(points)
def test_invariant_under_permutation_and_additive_over_batches(case):
    k, pairs, rnd, cuts = case
    pred = torch.tensor([p for p, _ in pairs], dtype=torch.int64)
    gt = torch.tensor([g for _, g in pairs], dtype=torch.int64)
    whole = SemanticIoU(k)
    whole.update(pred, gt)
    order = list(range(len(pairs)))
    rnd.shuffle(order)
    permuted = SemanticIoU(k)
    permuted.update(pred[order], gt[order])
    batched = SemanticIoU(k)
    bounds = [0, *sorted(min(c, len(pairs)) for c in cuts), len(pairs)]
    for a, b in itertools.pairwise(bounds):
        batched.update(pred[a:b], gt[a:b])
    for other in (permuted, batched):
        assert torch.equal(other.confusion, whole.confusion)
        assert other.compute() == whole.compute()
    assert int(whole.confusion.sum()) == len(pairs)


def test_states_sum_when_merged_as_ddp_does():
    pred, gt = hand_tensors()
    a, b, whole = SemanticIoU(3), SemanticIoU(3), SemanticIoU(3)
    a.update(pred[:4], gt[:4])
    b.update(pred[4:], gt[4:])
    whole.update(pred, gt)
    a.merge_state(b)  # applies each state's dist_reduce_fx, as the DDP sync does
    assert torch.equal(a.confusion, whole.confusion)


def test_update_refuses_bad_inputs():
    metric = SemanticIoU(3)
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        metric.update(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"predictions hold training ids 1\.\.4 outside 0\.\.3"):
        metric.update(torch.tensor([1, 4]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="labels hold training ids -1"):
        metric.update(torch.tensor([1, 2]), torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="integer"):
        metric.update(torch.tensor([1.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="distinct class names"):
        SemanticIoU(2, ["a", "a"])


# --------------------------------------------------------------------------------------------------
# the evaluator plug-in


def make_batch(labels: list[list[int]]) -> Batch:
    n = [len(x) for x in labels]
    return Batch(
        points=torch.zeros(sum(n), 4),
        batch_index=torch.repeat_interleave(torch.arange(len(n)), torch.tensor(n)),
        boxes=[torch.zeros(0, 7)] * len(n),
        labels=[torch.zeros(0, dtype=torch.int64)] * len(n),
        frame_ids=[f"08/{i:06d}" for i in range(len(n))],
        point_labels=torch.tensor([v for x in labels for v in x], dtype=torch.int64),
        records=[ScanRecord(sequence="08", scan=f"{i:06d}", num_points=m) for i, m in enumerate(n)],
    )


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_evaluator_scores_the_batch_point_labels():
    evaluator = SegmentationEvaluator()
    evaluator.bind(["car", "road", "pole"])
    assert evaluator.scored_classes == ("car", "road", "pole") and evaluator.progress_key == "mIoU"
    pred, gt = hand_tensors()
    batch = make_batch([gt[:5].tolist(), gt[5:].tolist()])
    evaluator.update([pred[:5], pred[5:]], batch)
    results = evaluator.compute()
    assert results == pytest.approx(
        {"mIoU": 100 * HAND_MIOU, "accuracy": 75.0, "IoU/car": 200 / 3, "IoU/road": 100 / 3, "IoU/pole": 0.0}
    )
    assert evaluator.headline(results) == results
    assert SegmentationEvaluator(per_class=False).headline(results) == {
        "mIoU": results["mIoU"],
        "accuracy": results["accuracy"],
    }
    evaluator.reset()
    assert evaluator.compute()["mIoU"] == 0.0
    assert not dict(evaluator.state_dict())  # no weights: checkpoints are the same with or without it


def test_evaluator_refuses_mismatched_predictions():
    evaluator = SegmentationEvaluator()
    with pytest.raises(RuntimeError, match="bind"):
        evaluator.update([], make_batch([[1]]))
    evaluator.bind(["car", "road"])
    batch = make_batch([[1, 2, 0], [2]])
    with pytest.raises(ValueError, match="1 predictions for a batch of 2"):
        evaluator.update([torch.tensor([1, 2, 1])], batch)
    with pytest.raises(ValueError, match=r"sample 08/000000 has 3 points but predictions of shape \(2,\)"):
        evaluator.update([torch.tensor([1, 2]), torch.tensor([1, 2])], batch)
    batch.point_labels = None
    with pytest.raises(ValueError, match="no point_labels"):
        evaluator.update([torch.tensor([1, 2, 1]), torch.tensor([2])], batch)


# --------------------------------------------------------------------------------------------------
# files and the command line


def write_label(path: Path, words) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.asarray(words, dtype="<u4").tobytes())
    return path


def official_layout(tmp_path: Path, seed: int = 0, scans: int = 3, points: int = 500):
    """A SemanticKITTI root with sequences/08/labels and a predictions root with sequences/08/predictions
    (raw ids with instance bits, moving classes among them); also the training ids of both."""
    rng = np.random.default_rng(seed)
    raw = np.array(sorted(SEMANTIC_KITTI.learning_map), dtype=np.uint32)
    gt_root, pred_root = tmp_path / "kitti", tmp_path / "submission"
    gts, preds = [], []
    for i in range(scans):
        gt_raw = rng.choice(raw, points)
        # predictions: mostly the label's class written as learning_map_inv would, some random raw ids
        train = SEMANTIC_KITTI.train_ids(gt_raw)
        pred_raw = SEMANTIC_KITTI.raw_ids(np.where(train == 0, 1, train))
        noise = rng.random(points) < 0.3
        pred_raw[noise] = rng.choice(raw, int(noise.sum()))
        instance = rng.integers(0, 50, points).astype(np.uint32) << 16
        write_label(gt_root / "sequences" / "08" / "labels" / f"{i:06d}.label", gt_raw | instance)
        write_label(pred_root / "sequences" / "08" / "predictions" / f"{i:06d}.label", pred_raw | instance)
        gts.append(SEMANTIC_KITTI.train_ids(gt_raw))
        preds.append(SEMANTIC_KITTI.train_ids(pred_raw))
    return gt_root, pred_root, np.concatenate(gts), np.concatenate(preds)


def test_cli_scores_the_official_layout_and_writes_json(tmp_path, capsys):
    gt_root, pred_root, gt, pred = official_layout(tmp_path)
    out = tmp_path / "out" / "metrics.json"
    assert main([str(gt_root), str(pred_root), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "accuracy" in printed and "traffic-sign" in printed
    results = json.loads(out.read_text())
    assert set(results) == {"mIoU", "IoU", "accuracy"}
    assert list(results["IoU"]) == list(SEMANTIC_KITTI.class_names)
    iou, miou, accuracy = reference(pred, gt, SEMANTIC_KITTI.num_classes)
    assert results["mIoU"] == pytest.approx(100 * miou, rel=1e-12)
    assert results["accuracy"] == pytest.approx(100 * accuracy, rel=1e-12)
    np.testing.assert_allclose(list(results["IoU"].values()), 100 * iou, rtol=1e-12)
    assert 10 < results["mIoU"] < 95  # a real number, not a degenerate one
    assert results == semantic_iou_from_files(gt_root, pred_root)
    assert not list(out.parent.glob(".*.tmp"))  # written through a temporary name


def test_cli_scores_two_plain_folders_matched_by_name(tmp_path, capsys):
    write_label(tmp_path / "gt" / "a.label", [10, 10, 40, 0])
    write_label(tmp_path / "gt" / "b.label", [50, 50])
    write_label(tmp_path / "pred" / "b.label", [50, 70])  # listed first on purpose: paired by name
    write_label(tmp_path / "pred" / "a.label", [10, 40, 40, 10])
    assert main([str(tmp_path / "gt"), str(tmp_path / "pred"), "--label-map", "synthetic"]) == 0
    results = semantic_iou_from_files(tmp_path / "gt", tmp_path / "pred", "synthetic")
    assert list(results["IoU"]) == list(SYNTHETIC.class_names)
    assert results["IoU"]["car"] == pytest.approx(50.0)  # tp 1, fn 1 (the point on ignored gt is nowhere)
    assert results["IoU"]["road"] == pytest.approx(50.0)  # tp 1, fp 1
    assert results["IoU"]["building"] == pytest.approx(50.0)  # tp 1, fn 1
    assert results["IoU"]["vegetation"] == 0.0  # fp 1
    assert results["mIoU"] == pytest.approx(150 / 12)
    assert results["accuracy"] == pytest.approx(300 / 5)


def test_moving_classes_score_as_their_static_classes(tmp_path):
    moving_to_static = {252: 10, 253: 31, 254: 30, 255: 32, 256: 20, 257: 20, 258: 18, 259: 20}
    gt = list(moving_to_static)  # moving classes in the labels ...
    pred = list(moving_to_static.values())  # ... predicted as the static class, and the other way
    write_label(tmp_path / "gt" / "000000.label", gt + pred)
    write_label(tmp_path / "pred" / "000000.label", pred + gt)
    results = semantic_iou_from_files(tmp_path / "gt", tmp_path / "pred")
    present = {"car", "bicyclist", "person", "motorcyclist", "other-vehicle", "truck"}
    assert {c for c, v in results["IoU"].items() if v == pytest.approx(100.0)} == present
    assert results["accuracy"] == pytest.approx(100.0)
    assert results["mIoU"] == pytest.approx(100 * len(present) / 19)


def test_a_yaml_label_map_gives_the_same_numbers(tmp_path):
    yaml = pytest.importorskip("yaml")
    gt_root, pred_root, _, _ = official_layout(tmp_path, seed=3, scans=1)
    doc = {
        "labels": dict(SEMANTIC_KITTI.labels),
        "learning_map": dict(SEMANTIC_KITTI.learning_map),
        "learning_map_inv": dict(SEMANTIC_KITTI.learning_map_inv),
    }
    path = tmp_path / "semantic-kitti.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert semantic_iou_from_files(gt_root, pred_root, str(path)) == semantic_iou_from_files(
        gt_root, pred_root
    )


def run_errors(capsys, *args: str) -> str:
    assert main([str(a) for a in args]) == 2
    return capsys.readouterr().err


def test_cli_errors_name_the_file(tmp_path, capsys):
    gt_root, pred_root, _, _ = official_layout(tmp_path, scans=2, points=20)
    preds = pred_root / "sequences" / "08" / "predictions"
    labels = gt_root / "sequences" / "08" / "labels"

    (preds / "000001.label").rename(tmp_path / "moved.label")
    err = run_errors(capsys, gt_root, pred_root)
    assert "no prediction file" in err and str(preds / "000001.label") in err
    (tmp_path / "moved.label").rename(preds / "000001.label")

    write_label(preds / "000002.label", [10])
    err = run_errors(capsys, gt_root, pred_root)
    assert "no label file" in err and "000002.label" in err
    (preds / "000002.label").unlink()

    write_label(preds / "000001.label", [10] * 19)
    err = run_errors(capsys, gt_root, pred_root)
    assert "19 predictions for the 20 points" in err and str(preds / "000001.label") in err

    write_label(preds / "000001.label", [10] * 19 + [77])
    err = run_errors(capsys, gt_root, pred_root)
    assert "[77]" in err and str(preds / "000001.label") in err

    (preds / "000001.label").write_bytes(b"\x0a\x00\x00")
    err = run_errors(capsys, gt_root, pred_root)
    assert "not a whole number" in err and str(preds / "000001.label") in err

    write_label(labels / "000001.label", [10] * 19 + [1 << 16 | 300])  # instance bits are no excuse
    err = run_errors(capsys, gt_root, pred_root)
    assert "[300]" in err and str(labels / "000001.label") in err

    (tmp_path / "empty").mkdir()
    assert "no .label files" in run_errors(capsys, tmp_path / "empty", tmp_path / "empty")
    assert "does not exist" in run_errors(capsys, tmp_path / "nowhere", tmp_path / "empty")
    assert "no sequences/NN/predictions/*.label" in run_errors(capsys, gt_root, tmp_path / "kitti")
    assert "unknown label map" in run_errors(capsys, gt_root, pred_root, "--label-map", "nuscenes")
    err = run_errors(capsys, gt_root, pred_root, "--sequences", "11")
    assert "sequences/11/labels" in err


def test_unknown_raw_ids_raise_the_label_map_error(tmp_path):
    write_label(tmp_path / "gt" / "0.label", [10])
    write_label(tmp_path / "pred" / "0.label", [77])
    with pytest.raises(UnknownLabelError, match="pred"):
        semantic_iou_from_files(tmp_path / "gt", tmp_path / "pred")


def test_runs_as_a_module_and_loads_only_its_layer(tmp_path):
    gt_root, pred_root, _, _ = official_layout(tmp_path, scans=1, points=50)
    code = (
        "import runpy, sys; sys.argv = ['x', *sys.argv[1:]];\n"
        "try:\n    runpy.run_module('perception.eval.segmentation', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith('perception.'))\n"
        "    print('LOADED', ' '.join(loaded)); raise\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(gt_root), str(pred_root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "mIoU" in done.stdout
    loaded = done.stdout.split("LOADED", 1)[1].split()
    data = [
        m
        for m in loaded
        if m.startswith("perception.data") and m not in ("perception.data", "perception.data.io")
    ]
    assert not data and not [m for m in loaded if m.startswith(("perception.models", "perception.tasks"))]
    assert "perception.eval.kitti" not in loaded  # the detection metrics are not loaded for segmentation
