"""Rotated IoU and NMS: against shapely and a brute-force NMS, invariances, both backends, bad input."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import shapely
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perception.ops import iou3d
from perception.ops.iou3d import boxes_iou3d, boxes_iou_bev, boxes_overlap_bev, nms_bev, nms_bev_per_class

# ----------------------------------------------------------------------------------------------------
# References written out independently of the module


def ref_polygons(boxes: np.ndarray) -> np.ndarray:
    """Shapely rectangles of (M, 7) boxes: centre + R(yaw) · (±l/2, ±w/2)."""
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    local = signs[None] * boxes[:, None, 3:5] / 2  # (M, 4, 2)
    c, s = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    corners = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1]], -1)
    return shapely.polygons(corners + boxes[:, None, :2])


def ref_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return shapely.area(shapely.intersection(ref_polygons(a)[:, None], ref_polygons(b)[None, :]))


def ref_iou_bev(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = ref_overlap(a, b)
    union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def ref_iou3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iou = np.zeros((len(a), len(b)))
    area = ref_overlap(a, b)
    for i, box_a in enumerate(a):
        for j, box_b in enumerate(b):
            top = min(box_a[2] + box_a[5] / 2, box_b[2] + box_b[5] / 2)
            bottom = max(box_a[2] - box_a[5] / 2, box_b[2] - box_b[5] / 2)
            inter = area[i, j] * max(top - bottom, 0.0)
            union = np.prod(box_a[3:6]) + np.prod(box_b[3:6]) - inter
            iou[i, j] = inter / union if union > 0 else 0.0
    return iou


def ref_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Textbook greedy NMS with the shapely IoU: keep the best, drop those overlapping it, repeat."""
    iou = ref_iou_bev(boxes, boxes)
    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou[best, i] <= threshold]
    return keep


@contextlib.contextmanager
def torch_kernel_on_cpu():
    """Route CPU tensors through the vectorised torch kernel (the CUDA code path) instead of numba."""
    old, iou3d._TORCH_ON_CPU = iou3d._TORCH_ON_CPU, True
    try:
        yield
    finally:
        iou3d._TORCH_ON_CPU = old


# ----------------------------------------------------------------------------------------------------
# Strategies: small scenes where boxes overlap often, with exact grid values to hit touching and
# collinear edges, right angles and yaw ±π.

coord = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1.5]) | st.floats(-3, 3, allow_subnormal=False)
size = st.sampled_from([1.0, 2.0, 1e-3]) | st.floats(0.05, 4, allow_subnormal=False)
yaw = st.sampled_from([0.0, np.pi / 2, -np.pi / 2, np.pi, -np.pi, np.pi / 4]) | st.floats(
    -2 * np.pi, 2 * np.pi, allow_subnormal=False
)
row = st.tuples(coord, coord, coord, size, size, size, yaw)


def box_sets(min_size: int = 1, max_size: int = 6) -> st.SearchStrategy[np.ndarray]:
    return st.lists(row, min_size=min_size, max_size=max_size).map(
        lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 7)
    )


def random_boxes(rng: np.random.Generator, m: int, span: float = 4.0) -> np.ndarray:
    return np.column_stack(
        [
            rng.uniform(-span, span, (m, 2)),
            rng.uniform(-1, 1, m),
            rng.uniform(0.3, 4, (m, 3)),
            rng.uniform(-np.pi, np.pi, m),
        ]
    )


def rigid_motion(boxes: np.ndarray, theta: float, shift: tuple[float, float, float]) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    moved = boxes.copy()
    moved[:, 0] = c * boxes[:, 0] - s * boxes[:, 1] + shift[0]
    moved[:, 1] = s * boxes[:, 0] + c * boxes[:, 1] + shift[1]
    moved[:, 2] += shift[2]
    moved[:, 6] += theta
    return moved


# ----------------------------------------------------------------------------------------------------
# Against shapely


@settings(max_examples=150, deadline=None)
@given(box_sets(), box_sets())
def test_overlap_and_iou_bev_match_shapely(a, b):
    np.testing.assert_allclose(boxes_overlap_bev(a, b), ref_overlap(a, b), rtol=0, atol=1e-9)
    np.testing.assert_allclose(boxes_iou_bev(a, b), ref_iou_bev(a, b), rtol=0, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(box_sets(), box_sets())
def test_iou3d_matches_shapely_area_times_height(a, b):
    np.testing.assert_allclose(boxes_iou3d(a, b), ref_iou3d(a, b), rtol=0, atol=1e-9)


BOX = [0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3]


def shifted(dx: float = 0.0, dy: float = 0.0, dz: float = 0.0, **change: float) -> list[float]:
    box = dict(zip("x y z l w h yaw".split(), BOX, strict=True))
    box.update(x=box["x"] + dx, y=box["y"] + dy, z=box["z"] + dz, **change)
    return list(box.values())


TRICKY = {
    # name: (box a, box b, expected BEV IoU, expected 3D IoU)
    "identical": (BOX, BOX, 1.0, 1.0),
    "yaw_plus_pi": (BOX, shifted(yaw=BOX[6] + np.pi), 1.0, 1.0),
    "yaw_pi_vs_minus_pi": (shifted(yaw=np.pi), shifted(yaw=-np.pi), 1.0, 1.0),
    "rotated_90": (BOX, shifted(yaw=BOX[6] + np.pi / 2), 4.0 / 12.0, 4.0 / 12.0),
    "nested": (BOX, shifted(l=2.0, w=1.0, h=0.75), 0.25, 0.125),
    "nested_rotated": (BOX, shifted(l=1.0, w=1.0, yaw=1.0), 1.0 / 8.0, 1.0 / 8.0),
    "touching_edge": ([0, 0, 0, 2, 2, 1, 0], [2, 0, 0, 2, 2, 1, 0], 0.0, 0.0),
    "touching_corner": ([0, 0, 0, 2, 2, 1, 0], [2, 2, 0, 2, 2, 1, 0], 0.0, 0.0),
    "touching_rotated": (BOX, shifted(dx=4 * np.cos(0.3), dy=4 * np.sin(0.3)), 0.0, 0.0),
    "collinear_half": ([0, 0, 0, 2, 2, 1, 0], [1, 0, 0, 2, 2, 1, 0], 1.0 / 3.0, 1.0 / 3.0),
    "collinear_shared_side": ([0, 0, 0, 2, 2, 1, 0], [0, 0.5, 0, 2, 1, 1, 0], 0.5, 0.5),
    "far_apart": (BOX, shifted(dx=100.0), 0.0, 0.0),
    "stacked_vertically": (BOX, shifted(dz=1.5), 1.0, 0.0),
    "half_height": (BOX, shifted(dz=0.75), 1.0, 1.0 / 3.0),
    "tiny": ([5, 5, 0, 1e-3, 1e-3, 1e-3, 0], [5, 5, 0, 1e-3, 1e-3, 1e-3, np.pi / 4], None, None),
    "zero_length": (shifted(l=0.0), BOX, 0.0, 0.0),
    "zero_area_pair": (shifted(w=0.0), shifted(w=0.0), 0.0, 0.0),
    "zero_height": (shifted(h=0.0), BOX, 1.0, 0.0),
    "far_from_origin": ([1e4, -1e4, 0, 2, 1, 1, 0], [1e4 + 0.5, -1e4, 0, 2, 1, 1, 0], 0.6, 0.6),
    "diamond_in_square": ([0, 0, 0, 2, 2, 1, 0], [0, 0, 0, 2, 2, 1, np.pi / 4], None, None),
}


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("name", list(TRICKY))
def test_tricky_cases(name, backend):
    box_a, box_b, bev, iou3 = TRICKY[name]
    a, b = np.array([box_a], dtype=np.float64), np.array([box_b], dtype=np.float64)
    bev = ref_iou_bev(a, b)[0, 0] if bev is None else bev
    iou3 = ref_iou3d(a, b)[0, 0] if iou3 is None else iou3
    if backend == "numba":
        got = (boxes_iou_bev(a, b), boxes_iou3d(a, b), boxes_overlap_bev(a, b))
    else:
        with torch_kernel_on_cpu():
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            got = tuple(f(ta, tb).numpy() for f in (boxes_iou_bev, boxes_iou3d, boxes_overlap_bev))
    np.testing.assert_allclose(got[0], [[bev]], atol=1e-9)
    np.testing.assert_allclose(got[1], [[iou3]], atol=1e-9)
    np.testing.assert_allclose(got[2], ref_overlap(a, b), atol=1e-9)
    # Swapping the pair changes which box clips which; the result must not change.
    np.testing.assert_allclose(boxes_iou_bev(b, a), got[0].T, atol=1e-9)


# ----------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets())
def test_symmetry_and_range(a, b):
    for f in (boxes_iou_bev, boxes_iou3d, boxes_overlap_bev):
        np.testing.assert_allclose(f(a, b), f(b, a).T, rtol=0, atol=1e-12)
    for f in (boxes_iou_bev, boxes_iou3d):
        iou = f(a, b)
        assert iou.shape == (len(a), len(b)) and np.all((iou >= 0) & (iou <= 1))


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets(), st.floats(-np.pi, np.pi), st.tuples(*[st.floats(-50, 50)] * 3))
def test_invariant_under_common_rigid_motion(a, b, theta, shift):
    moved_a, moved_b = rigid_motion(a, theta, shift), rigid_motion(b, theta, shift)
    for f in (boxes_iou_bev, boxes_iou3d, boxes_overlap_bev):
        np.testing.assert_allclose(f(moved_a, moved_b), f(a, b), rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(box_sets(), box_sets(), st.lists(st.integers(-2, 2), min_size=6, max_size=6))
def test_invariant_under_yaw_plus_pi(a, b, turns):
    flipped = a.copy()
    flipped[:, 6] += np.pi * np.resize(turns, len(a))  # a box turned by kπ is the same box
    for f in (boxes_iou_bev, boxes_iou3d, boxes_overlap_bev):
        np.testing.assert_allclose(f(flipped, b), f(a, b), rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(box_sets(max_size=10))
def test_self_iou_diagonal_is_one(a):
    for f in (boxes_iou_bev, boxes_iou3d):
        np.testing.assert_allclose(np.diag(f(a, a)), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.diag(boxes_overlap_bev(a, a)), a[:, 3] * a[:, 4], rtol=1e-9)


# ----------------------------------------------------------------------------------------------------
# Backends, dtypes, devices


@settings(max_examples=60, deadline=None)
@given(box_sets(max_size=8), box_sets(max_size=8))
def test_torch_kernel_matches_numba(a, b):
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for f in (boxes_overlap_bev, boxes_iou_bev, boxes_iou3d):
        expected = f(a, b)
        routed = f(ta, tb)  # CPU tensors: numba and back
        with torch_kernel_on_cpu():
            vectorised = f(ta, tb)
            single = f(ta.float(), tb.float())
        assert routed.dtype == vectorised.dtype == torch.float64 and single.dtype == torch.float32
        np.testing.assert_array_equal(routed.numpy(), expected)
        np.testing.assert_allclose(vectorised.numpy(), expected, rtol=0, atol=1e-9)
        # float32 against float64 on the same (float32-rounded) boxes: only the arithmetic differs, and
        # its error grows with the elongation of the boxes (a 1 mm × 4 m sliver is ill-conditioned).
        expected = f(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
        sizes = np.concatenate([a, b])[:, 3:5]
        elongation = float((sizes.max(1) / sizes.min(1)).max())
        tol = 1e-5 * elongation * max(1.0, float(np.abs(expected).max(initial=0)))
        np.testing.assert_allclose(single.numpy(), expected, rtol=0, atol=tol)


def test_torch_kernel_chunks_many_pairs(monkeypatch):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 60), random_boxes(rng, 50)
    monkeypatch.setattr(iou3d, "_TORCH_CHUNK", 97)
    with torch_kernel_on_cpu():
        got = boxes_iou3d(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, boxes_iou3d(a, b), atol=1e-9)
    assert (got > 0).sum() > 97


def test_output_dtypes_follow_input():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 5), random_boxes(rng, 4)
    assert boxes_iou_bev(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    assert boxes_iou_bev(a, b).dtype == np.float64
    assert boxes_iou_bev(a.round().astype(np.int64), b.round().astype(np.int64)).dtype == np.float64
    assert boxes_iou3d(torch.from_numpy(a).float(), torch.from_numpy(b).float()).dtype == torch.float32
    assert boxes_iou_bev(a.tolist(), b.tolist()).shape == (5, 4)
    half_a, half_b = torch.from_numpy(a).bfloat16(), torch.from_numpy(b).bfloat16()
    expected = boxes_iou_bev(half_a.double().numpy(), half_b.double().numpy())
    for forced in (False, True):
        with torch_kernel_on_cpu() if forced else contextlib.nullcontext():
            got = boxes_iou_bev(half_a, half_b)
            assert got.dtype == torch.bfloat16
            np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-2)
            assert nms_bev(half_a, torch.ones(5), 0.5).dtype == torch.int64


def test_torch_kernel_is_differentiable():
    a = torch.tensor([[0.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.3]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.7, 0.4, 0.2, 3.0, 2.5, 1.0, -0.5]], dtype=torch.float64)
    # requires_grad routes CPU tensors to the torch kernel, which autograd can follow.
    assert torch.autograd.gradcheck(lambda x: boxes_iou3d(x, b), (a,))
    assert torch.autograd.gradcheck(lambda x: boxes_iou_bev(x, b), (a,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_numba():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 300), random_boxes(rng, 200)
    scores = rng.uniform(size=300)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        ta, tb = torch.tensor(a, dtype=dtype, device="cuda"), torch.tensor(b, dtype=dtype, device="cuda")
        for f in (boxes_overlap_bev, boxes_iou_bev, boxes_iou3d):
            got = f(ta, tb)
            assert got.device.type == "cuda" and got.dtype == dtype
            np.testing.assert_allclose(got.cpu().numpy(), f(a, b), atol=tol * 16)
    keep = nms_bev(torch.tensor(a, device="cuda"), torch.tensor(scores, device="cuda"), 0.3)
    assert keep.device.type == "cuda"
    np.testing.assert_array_equal(keep.cpu().numpy(), nms_bev(a, scores, 0.3))


# ----------------------------------------------------------------------------------------------------
# NMS


@settings(max_examples=60, deadline=None)
@given(
    box_sets(max_size=12),
    st.lists(st.sampled_from([0.1, 0.5, 0.9]) | st.floats(0, 1), min_size=12, max_size=12),
    st.sampled_from([0.01, 0.1, 0.3, 0.5, 0.7]),
)
def test_nms_matches_brute_force(boxes, score_list, threshold):
    scores = np.array(score_list[: len(boxes)])
    iou = ref_iou_bev(boxes, boxes)
    assume(np.all(np.abs(iou - threshold) > 1e-7))  # no decision left to rounding
    expected = ref_nms(boxes, scores, threshold)
    got = nms_bev(boxes, scores, threshold)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    np.testing.assert_array_equal(nms_bev(tb, ts, threshold).numpy(), expected)
    with torch_kernel_on_cpu():
        np.testing.assert_array_equal(nms_bev(tb, ts, threshold).numpy(), expected)


def test_nms_ties_pre_and_post_max_size():
    # Four copies of one box with tied scores, and two separate boxes.
    boxes = np.array([BOX, BOX, shifted(dx=20), BOX, shifted(dx=-20), BOX], dtype=np.float64)
    scores = np.array([0.5, 0.9, 0.2, 0.9, 0.3, 0.5])
    np.testing.assert_array_equal(nms_bev(boxes, scores, 0.5), [1, 4, 2])
    np.testing.assert_array_equal(nms_bev(boxes, scores, 1.0), [1, 3, 0, 5, 4, 2])  # nothing above 1
    np.testing.assert_array_equal(nms_bev(boxes, scores, 1.0, post_max_size=3), [1, 3, 0])
    np.testing.assert_array_equal(nms_bev(boxes, scores, 0.5, pre_max_size=4), [1])
    np.testing.assert_array_equal(nms_bev(boxes, scores, 0.5, pre_max_size=5), [1, 4])
    assert nms_bev(boxes, scores, 0.5, pre_max_size=0).shape == (0,)
    assert nms_bev(boxes, scores, 0.5, post_max_size=0).shape == (0,)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    for forced in (False, True):
        with torch_kernel_on_cpu() if forced else contextlib.nullcontext():
            np.testing.assert_array_equal(nms_bev(tb, ts, 0.5, post_max_size=2).numpy(), [1, 4])
            np.testing.assert_array_equal(nms_bev(tb, ts, 1.0, pre_max_size=3).numpy(), [1, 3, 0])


def per_class_loop(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, thresholds
) -> torch.Tensor:
    """The reference: ``nms_bev`` on each class's boxes, by ascending class."""
    kept = [torch.zeros(0, dtype=torch.long)]
    for c in labels.unique().tolist():
        index = (labels == c).nonzero().squeeze(1)
        kept.append(index[nms_bev(boxes[index], scores[index], thresholds[c])])
    return torch.cat(kept)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(0, 300), classes=st.integers(1, 4), ties=st.booleans())
def test_nms_per_class_is_nms_within_each_class(seed: int, m: int, classes: int, ties: bool) -> None:
    """One kernel call gives the per-class loop's indices in its order (overlapping boxes of other
    classes never suppress each other; tied scores keep the lower index first)."""
    rng = np.random.default_rng(seed)
    boxes = torch.from_numpy(random_boxes(rng, m, span=6.0)).float()
    scores = torch.from_numpy(rng.choice([0.2, 0.5, 0.7], m) if ties else rng.random(m)).float()
    labels = torch.from_numpy(rng.integers(0, classes, m))
    thresholds = [0.1, 0.5, 0.7, 0.3][:classes]
    expected = per_class_loop(boxes, scores, labels, thresholds)
    got = nms_bev_per_class(boxes, scores, labels, thresholds)
    assert got.dtype == torch.int64 and torch.equal(got, expected)
    with torch_kernel_on_cpu():
        assert torch.equal(nms_bev_per_class(boxes, scores, labels, thresholds), expected)


def test_nms_per_class_rejects_labels_without_a_threshold() -> None:
    boxes = torch.tensor([BOX, BOX], dtype=torch.float32)
    with pytest.raises(ValueError, match="one threshold per class"):
        nms_bev_per_class(boxes, torch.ones(2), torch.tensor([0, 2]), [0.5, 0.5])


# ----------------------------------------------------------------------------------------------------
# Empty and bad input


@pytest.mark.parametrize("kind", ["numpy", "torch", "torch_kernel"])
def test_empty_inputs(kind):
    wrap = np.asarray if kind == "numpy" else torch.as_tensor
    with torch_kernel_on_cpu() if kind == "torch_kernel" else contextlib.nullcontext():
        for m, k in ((0, 3), (3, 0), (0, 0)):
            a, b = (
                wrap(random_boxes(np.random.default_rng(0), m)),
                wrap(random_boxes(np.random.default_rng(1), k)),
            )
            for f in (boxes_overlap_bev, boxes_iou_bev, boxes_iou3d):
                out = f(a, b)
                assert tuple(out.shape) == (m, k) and type(out) is type(a)
        keep = nms_bev(wrap(np.zeros((0, 7))), wrap(np.zeros(0)), 0.5)
        assert tuple(keep.shape) == (0,) and keep.dtype in (np.int64, torch.int64)


GOOD = np.array([BOX, shifted(dx=1.0)])


def with_value(row: int, col: int, value: float) -> np.ndarray:
    boxes = GOOD.copy()
    boxes[row, col] = value
    return boxes


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((2, 6)), GOOD, r"a must have shape \(M, 7\)"),
        (GOOD, np.zeros(7), r"b must have shape \(M, 7\)"),
        (GOOD, np.zeros((1, 2, 7)), r"b must have shape"),
        (with_value(1, 0, np.nan), GOOD, "a contains NaN"),
        (GOOD, with_value(0, 6, np.inf), "b contains NaN or infinite"),
        (GOOD, with_value(0, 4, -1.0), "b has negative sizes"),
        (GOOD, GOOD.astype(np.float32), "b must have the same dtype as a"),
        (torch.from_numpy(GOOD), GOOD, "b must be the same array type as a"),
        (torch.from_numpy(GOOD), torch.from_numpy(GOOD).float(), "b must have the same dtype"),
        (torch.from_numpy(GOOD).long(), torch.from_numpy(GOOD).long(), "a must be a floating-point tensor"),
        (torch.from_numpy(with_value(0, 2, np.nan)), torch.from_numpy(GOOD), "a contains NaN"),
    ],
)
def test_bad_pairs_raise_naming_the_argument(a, b, match):
    for f in (boxes_overlap_bev, boxes_iou_bev, boxes_iou3d):
        with pytest.raises(ValueError, match=match):
            f(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mismatched_devices_raise():
    with pytest.raises(ValueError, match="b must be on the same device as a"):
        boxes_iou_bev(torch.from_numpy(GOOD), torch.from_numpy(GOOD).cuda())


@pytest.mark.parametrize(
    ("boxes", "scores", "kwargs", "match"),
    [
        (np.zeros((2, 5)), np.ones(2), {}, r"boxes must have shape \(M, 7\)"),
        (with_value(0, 0, np.nan), np.ones(2), {}, "boxes contains NaN"),
        (GOOD, np.ones(3), {}, r"scores must have shape \(2,\)"),
        (GOOD, np.array([0.5, np.nan]), {}, "scores contains NaN"),
        (GOOD, torch.ones(2), {}, "scores must be the same array type as boxes"),
        (GOOD, np.ones(2), {"pre_max_size": -1}, "pre_max_size must be >= 0"),
        (GOOD, np.ones(2), {"post_max_size": -2}, "post_max_size must be >= 0"),
        (GOOD, np.ones(2), {"iou_threshold": np.nan}, "iou_threshold must be finite"),
    ],
)
def test_bad_nms_input_raises(boxes, scores, kwargs, match):
    kwargs = {"iou_threshold": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        nms_bev(boxes, scores, **kwargs)
