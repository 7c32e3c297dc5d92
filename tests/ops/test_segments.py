"""Segment kernels against the torch ops they replace, bit for bit: the max of each run of rows
(``torch.segment_reduce``) and the PVT encoder's segment attention, in float32 and bfloat16."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.models.encoders.grouping import PointGroups
from perception.models.encoders.pvt import segment_attention as eager_attention
from perception.ops.segments import _shared_rows, pillar_decoration, segment_attention, segment_max


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def runs(seed: int, num_runs: int, longest: int) -> torch.Tensor:
    """(S,) run lengths in [1, longest], mostly short with a few long ones."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max(2, longest // 8), (num_runs,), generator=g)
    lengths[torch.randint(0, num_runs, (max(1, num_runs // 20),), generator=g)] = longest
    return lengths


def groups_of(lengths: torch.Tensor) -> PointGroups:
    """A :class:`PointGroups` with these runs (only ``voxel`` and ``num_points`` matter here)."""
    voxel = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    empty = torch.zeros(0)
    return PointGroups(
        empty,
        voxel,
        lengths,
        torch.zeros(len(lengths), 4, dtype=torch.int32),
        (1, 1, 1),
        1,
        (1.0,) * 3,
        (0.0,) * 3,
    )


# ----------------------------------------------------------------------------------------------------
# segment_max


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    shape=st.sampled_from([(), (1,), (7,), (64,), (4, 16)]),
)
def test_segment_max_is_torchs(seed: int, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    lengths = runs(seed, 50, 40)
    x = torch.randn(int(lengths.sum()), *shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    expected = torch.segment_reduce(x, "max", lengths=lengths, axis=0, unsafe=True)
    got = segment_max(x, lengths)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(got, expected)


def test_segment_max_propagates_nan_and_keeps_infinities() -> None:
    x = torch.tensor([[1.0, -math.inf], [math.nan, -2.0], [3.0, math.inf], [0.0, 5.0], [-0.0, 1.0]])
    lengths = torch.tensor([3, 2])
    expected = torch.segment_reduce(x, "max", lengths=lengths, axis=0, unsafe=True)
    got = segment_max(x, lengths)
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())


def test_segment_max_keeps_gradients_through_torch() -> None:
    x = torch.randn(6, 3, requires_grad=True)
    out = segment_max(x, torch.tensor([2, 4]))
    out.sum().backward()
    assert x.grad is not None and x.grad.sum() == 6


def test_segment_max_of_nothing() -> None:
    assert segment_max(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).shape == (0, 5)


# ----------------------------------------------------------------------------------------------------
# segment_attention


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    heads=st.sampled_from([1, 2, 4]),
    shared=st.booleans(),
)
def test_segment_attention_is_the_eager_ops_bits(
    seed: int, dtype: torch.dtype, heads: int, shared: bool
) -> None:
    """16 channels a head (the quickstart's 64 / 4): the same bits as the eager ops, keys and values
    read from one fused projection (``shared``) or from separate tensors."""
    g = torch.Generator().manual_seed(seed)
    lengths = runs(seed, 60, 50)
    n, d = int(lengths.sum()), 16
    q = (torch.randn(len(lengths), heads, d, generator=g) * 2).to(dtype)
    if shared:
        kv = (torch.randn(n, 2 * heads * d, generator=g) * 2).to(dtype)
        k, v = kv.view(n, 2, heads, d).unbind(1)
    else:
        k = (torch.randn(n, heads, d, generator=g) * 2).to(dtype)
        v = torch.randn(n, heads, d, generator=g).to(dtype)
    expected = eager_attention(q, k, v, groups_of(lengths))
    got = segment_attention(q, k, v, lengths)
    assert got.dtype == expected.dtype == dtype and got.shape == expected.shape
    assert torch.equal(got, expected)


@pytest.mark.parametrize("d", [4, 8, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_segment_attention_other_head_widths(d: int, dtype: torch.dtype) -> None:
    """Other widths: the softmax and the weighted sum are the eager ones; a float32 logit may sum its
    products in another order (a float32 rounding), a bfloat16 one rounds to the same value."""
    g = torch.Generator().manual_seed(d)
    lengths = runs(d, 40, 30)
    n = int(lengths.sum())
    q = torch.randn(len(lengths), 2, d, generator=g).to(dtype)
    k, v = torch.randn(n, 2, d, generator=g).to(dtype), torch.randn(n, 2, d, generator=g).to(dtype)
    expected = eager_attention(q, k, v, groups_of(lengths)).float()
    got = segment_attention(q, k, v, lengths).float()
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)


def test_segment_attention_single_points_and_no_runs() -> None:
    """A run of one point attends to it alone (weight 1: its value); no runs give (0, H, d_v)."""
    v = torch.randn(5, 2, 3)
    got = segment_attention(torch.randn(5, 2, 3), torch.randn(5, 2, 3), v, torch.ones(5, dtype=torch.long))
    assert torch.equal(got, v)
    empty = segment_attention(
        torch.zeros(0, 2, 3), torch.zeros(0, 2, 3), torch.zeros(0, 2, 3), torch.zeros(0)
    )
    assert empty.shape == (0, 2, 3)


def test_segment_attention_rejects_mixed_dtypes() -> None:
    with pytest.raises(ValueError, match="float32"):
        segment_attention(
            torch.zeros(1, 1, 2), torch.zeros(1, 1, 2).double(), torch.zeros(1, 1, 2), torch.ones(1)
        )


def test_keys_and_values_of_one_projection_are_read_in_place() -> None:
    """Column blocks of one row-major tensor are read where they lie, in inference mode too (whose
    views carry no ``_base``); anything else is copied side by side."""
    kv = torch.randn(10, 2 * 2 * 4)
    with torch.inference_mode():
        k, v = kv.clone().view(10, 2, 2, 4).unbind(1)
        rows, k_start, v_start = _shared_rows(k, v)
        assert rows.data_ptr() == k.data_ptr() and (k_start, v_start) == (0, 8)
    rows, k_start, v_start = _shared_rows(v, k)  # values first in memory
    assert rows.data_ptr() == k.data_ptr() and (k_start, v_start) == (8, 0)
    k2, v2 = torch.randn(10, 2, 4), torch.randn(10, 2, 4)
    rows, k_start, v_start = _shared_rows(k2, v2)
    assert torch.equal(rows[:, :8], k2.reshape(10, 8)) and torch.equal(rows[:, 8:], v2.reshape(10, 8))
    assert (k_start, v_start) == (0, 8)


# ----------------------------------------------------------------------------------------------------
# pillar_decoration


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), channels=st.integers(3, 6))
def test_pillar_decoration_is_the_torch_ops_bits(seed: int, channels: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lengths = runs(seed, 80, 60)
    points = torch.randn(int(lengths.sum()), channels, generator=g) * 30
    centres = torch.randn(len(lengths), 3, generator=g) * 30
    voxel = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    xyz = points[:, :3]
    mean = torch.segment_reduce(xyz, "mean", lengths=lengths, axis=0, unsafe=True)
    expected = torch.cat([points, xyz - mean[voxel], xyz - centres[voxel]], dim=1)
    assert torch.equal(pillar_decoration(points, lengths, centres), expected)
