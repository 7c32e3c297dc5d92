"""Sparse convolution: dense conv3d references in float64, determinism on 2 threads, spconv parity, bad input.

spconv 2.3.8's CPU build is the layout reference. Its kernels run on a libgomp bundled with the
wheel that ignores ``torch.set_num_threads`` and races with 2 threads, so its forward is computed in
a child process started with ``OMP_NUM_THREADS=1`` (this file's ``__main__``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops import sparse as S
from perception.ops.sparse import SparseConv3d, SparseConvTensor, SparseInverseConv3d, SubMConv3d

TOL = 1e-10
REPEATS = 20
SHAPE = [6, 7, 8]
BATCH = 2


@pytest.fixture(autouse=True)
def tiny_work_units(monkeypatch):
    """Work units of 16 rows (and 16-row thread splits) so that small test inputs exercise the threaded split."""
    from perception.ops import _sparse_rules

    monkeypatch.setattr(_sparse_rules, "UNIT", 16)
    monkeypatch.setattr(_sparse_rules, "MIN_ROWS", 16)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch and numba intra-op threads set to ``n`` for the block."""
    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)


def random_sites(
    seed: int, n: int = 70, shape: list[int] = SHAPE, batch: int = BATCH, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, channels)`` float64 features and ``(n, 4)`` int32 distinct sites in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    cells = torch.randperm(batch * int(np.prod(shape)), generator=g)[:n]
    idx = torch.stack(torch.unravel_index(cells, (batch, *shape)), 1).int()
    return torch.randn(n, channels, generator=g, dtype=torch.float64), idx


def at_sites(grid: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of a ``(B, C, D, H, W)`` grid at ``(V, 4)`` sites → ``(V, C)``."""
    i = idx.long()
    return grid[i[:, 0], :, i[:, 1], i[:, 2], i[:, 3]]


def dense_weight(w: torch.Tensor) -> torch.Tensor:
    """spconv's ``(C_out, kD, kH, kW, C_in)`` → conv3d's ``(C_out, C_in, kD, kH, kW)``."""
    return w.permute(0, 4, 1, 2, 3)


def sorted_rows(idx: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    key = ((idx[:, 0].long() * 1000 + idx[:, 1]) * 1000 + idx[:, 2]) * 1000 + idx[:, 3]
    order = torch.argsort(key)
    return (idx[order], *(v[order] for v in values))


def run_with_grads(layers, feats, idx, probe_seed=7):
    """Forward through ``layers`` and backward of ``(out * R).sum()``: out tensor, grads of input and layers."""
    f = feats.clone().requires_grad_()
    for m in layers:
        m.zero_grad(set_to_none=True)
    x = SparseConvTensor(f, idx, SHAPE, BATCH)
    for m in layers:
        x = m(x)
    g = torch.Generator().manual_seed(probe_seed)
    probe = torch.randn(x.features.shape, generator=g, dtype=x.features.dtype)
    (x.features * probe).sum().backward()
    grads = [f.grad] + [p.grad for m in layers for p in (m.weight, m.bias)]
    return x, probe, grads


def assert_repeatable(fn, n: int = REPEATS) -> None:
    """``fn()`` returns tensors; every run on 2 threads must give the same bits."""
    with threads(2):
        first = fn()
        for _ in range(n - 1):
            again = fn()
            for a, b in zip(first, again, strict=True):
                assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# Against dense torch convolutions (float64)

SUBM_CASES = [(3, 1), ((3, 1, 1), 1), ((1, 3, 5), 1), (3, 2), ((3, 1, 5), (1, 1, 2))]


@pytest.mark.parametrize(("kernel", "dilation"), SUBM_CASES)
def test_subm_matches_dense_conv3d_and_is_deterministic(kernel, dilation):
    feats, idx = random_sites(1)
    conv = SubMConv3d(3, 4, kernel, dilation=dilation).double()
    out, probe, grads = run_with_grads([conv], feats, idx)
    assert torch.equal(out.indices, idx) and out.spatial_shape == SHAPE

    f = feats.clone().requires_grad_()
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    pad = [(k - 1) * d // 2 for k, d in zip(conv.kernel_size, conv.dilation, strict=True)]
    dense_in = SparseConvTensor(f, idx, SHAPE, BATCH).dense()
    ref = at_sites(F.conv3d(dense_in, dense_weight(w), b, padding=pad, dilation=conv.dilation), idx)
    (ref * probe).sum().backward()
    torch.testing.assert_close(out.features, ref, atol=TOL, rtol=0)
    for ours, theirs in zip(grads, (f.grad, w.grad, b.grad), strict=True):
        torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)

    assert_repeatable(lambda: (lambda o, _, g: (o.features, *g))(*run_with_grads([conv], feats, idx)))


STRIDED_CASES = [(3, 2, 1, 1), (3, 1, 0, 1), ((3, 1, 1), (2, 1, 1), (1, 0, 0), 1), (2, 2, 0, 1), (3, 2, 1, 2)]


def receptive_sites(idx: torch.Tensor, conv: SparseConv3d) -> set[tuple[int, ...]]:
    """Output cells whose receptive field holds an input site (a conv3d of the occupancy with ones)."""
    occ = torch.zeros(BATCH, 1, *SHAPE, dtype=torch.float64)
    i = idx.long()
    occ[i[:, 0], 0, i[:, 1], i[:, 2], i[:, 3]] = 1
    ones = torch.ones(1, 1, *conv.kernel_size, dtype=torch.float64)
    hit = F.conv3d(occ, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)[:, 0] > 0
    return set(map(tuple, hit.nonzero().tolist()))


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), STRIDED_CASES)
def test_sparse_conv_matches_dense_conv3d_and_is_deterministic(kernel, stride, padding, dilation):
    feats, idx = random_sites(2)
    conv = SparseConv3d(3, 4, kernel, stride, padding, dilation).double()
    out, probe, grads = run_with_grads([conv], feats, idx)
    assert set(map(tuple, out.indices.tolist())) == receptive_sites(idx, conv)
    assert torch.equal(out.indices, torch.unique(out.indices, dim=0))  # documented: sorted by (b, z, y, x)

    f = feats.clone().requires_grad_()
    w = conv.weight.detach().clone().requires_grad_()
    b = conv.bias.detach().clone().requires_grad_()
    dense_in = SparseConvTensor(f, idx, SHAPE, BATCH).dense()
    dense_out = F.conv3d(dense_in, dense_weight(w), b, conv.stride, conv.padding, conv.dilation)
    assert list(dense_out.shape[2:]) == out.spatial_shape
    ref = at_sites(dense_out, out.indices)
    (ref * probe).sum().backward()
    torch.testing.assert_close(out.features, ref, atol=TOL, rtol=0)
    for ours, theirs in zip(grads, (f.grad, w.grad, b.grad), strict=True):
        torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)

    assert_repeatable(
        lambda: (lambda o, _, g: (o.features, o.indices, *g))(*run_with_grads([conv], feats, idx))
    )


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(3, 2, 1), (2, 2, 0), ((3, 1, 1), (2, 1, 1), (1, 0, 0))]
)
def test_inverse_conv_is_conv_transpose3d_on_the_original_sites(kernel, stride, padding):
    feats, idx = random_sites(3)
    down = SparseConv3d(3, 4, kernel, stride, padding, indice_key="down").double()
    up = SparseInverseConv3d(4, 2, kernel, indice_key="down").double()
    out, probe, grads = run_with_grads([down, up], feats, idx)
    assert torch.equal(out.indices, idx) and out.spatial_shape == SHAPE

    f = feats.clone().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in (down.weight, down.bias, up.weight, up.bias)]
    mid = SparseConvTensor(f, idx, SHAPE, BATCH).dense()
    mid = F.conv3d(mid, dense_weight(params[0]), params[1], down.stride, down.padding)
    mask = torch.zeros(mid.shape[0], 1, *mid.shape[2:], dtype=torch.float64)
    for b, z, y, x in receptive_sites(idx, down):
        mask[b, 0, z, y, x] = 1
    mid = mid * mask  # the sparse intermediate: only active sites carry bias
    # conv_transpose3d's weight is (C_in, C_out, k...): the inverse layer's (C_out, k..., C_in) permuted
    size = [
        (n - 1) * s - 2 * p + k
        for n, s, p, k in zip(mid.shape[2:], down.stride, down.padding, down.kernel_size, strict=True)
    ]
    extra = [t - n for t, n in zip(SHAPE, size, strict=True)]
    up_dense = F.conv_transpose3d(mid, params[2].permute(4, 0, 1, 2, 3), params[3], down.stride, down.padding,
                                  output_padding=[max(e, 0) for e in extra])  # fmt: skip
    ref = at_sites(up_dense[:, :, : SHAPE[0], : SHAPE[1], : SHAPE[2]], idx)
    (ref * probe).sum().backward()
    torch.testing.assert_close(out.features, ref, atol=TOL, rtol=0)
    for ours, theirs in zip(grads, (f.grad, *(p.grad for p in params)), strict=True):
        torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)

    assert_repeatable(lambda: (lambda o, _, g: (o.features, *g))(*run_with_grads([down, up], feats, idx)))


def test_float32_and_thread_count_invariance():
    """One and two threads give the same bits (work units and sum orders do not depend on threads)."""
    feats, idx = random_sites(4, n=300, shape=SHAPE)
    layers = [SubMConv3d(3, 8, 3, indice_key="s"), SparseConv3d(8, 8, 3, 2, 1, indice_key="d"),
              SubMConv3d(8, 8, 3), SparseInverseConv3d(8, 4, 3, indice_key="d")]  # fmt: skip
    results = []
    for n in (1, 2):
        with threads(n):
            out, _, grads = run_with_grads(layers, feats.float(), idx)
        assert out.features.dtype == torch.float32
        results.append((out.features, *grads))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------------
# Against spconv 2.3.8 (CPU forward, one OpenMP thread, in a child process)

SPCONV_CASES = {
    "subm3": ("SubMConv3d", {"kernel_size": 3}),
    "subm311": ("SubMConv3d", {"kernel_size": (3, 1, 1)}),
    "subm_dilated": ("SubMConv3d", {"kernel_size": 3, "dilation": 2}),
    "subm1": ("SubMConv3d", {"kernel_size": 1}),
    "conv_s2p1": ("SparseConv3d", {"kernel_size": 3, "stride": 2, "padding": 1, "indice_key": "d"}),
    "conv_s1p0": ("SparseConv3d", {"kernel_size": 3}),
    "conv1": ("SparseConv3d", {"kernel_size": 1}),
    "conv1_s2": ("SparseConv3d", {"kernel_size": 1, "stride": 2}),
}


def spconv_forward(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Child process body: each case's spconv output, plus the inverse of ``conv_s2p1``."""
    import spconv.pytorch as spconv

    feats, idx = torch.from_numpy(inputs["features"]), torch.from_numpy(inputs["indices"])
    results = {}
    for name, (cls, kwargs) in SPCONV_CASES.items():
        conv = getattr(spconv, cls)(3, 4, **kwargs).double()
        conv.load_state_dict(
            {k[len(name) + 1 :]: torch.from_numpy(v) for k, v in inputs.items() if k.startswith(name + ".")}
        )
        y = conv(spconv.SparseConvTensor(feats, idx, SHAPE, BATCH))
        results[name + ".features"], results[name + ".indices"] = y.features.numpy(), y.indices.numpy()
        results[name + ".shape"] = np.array(y.spatial_shape)
        if name == "conv_s2p1":
            inv = spconv.SparseInverseConv3d(4, 2, 3, indice_key="d").double()
            inv.load_state_dict(
                {k[4:]: torch.from_numpy(v) for k, v in inputs.items() if k.startswith("inv.")}
            )
            z = inv(y)
            results["inv.features"], results["inv.indices"] = z.features.numpy(), z.indices.numpy()
    return results


def test_forward_matches_spconv_cpu(tmp_path):
    pytest.importorskip("spconv.pytorch")
    feats, idx = random_sites(5, n=120)
    ours = {name: getattr(S, cls)(3, 4, **kwargs).double() for name, (cls, kwargs) in SPCONV_CASES.items()}
    inverse = SparseInverseConv3d(4, 2, 3, indice_key="d").double()
    arrays = {"features": feats.numpy(), "indices": idx.numpy()}
    for prefix, m in [*ours.items(), ("inv", inverse)]:
        arrays |= {f"{prefix}.{k}": v.detach().numpy() for k, v in m.state_dict().items()}
    np.savez(tmp_path / "in.npz", **arrays)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]
    child = subprocess.run(cmd, env=env, timeout=120, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-3000:]
    theirs = dict(np.load(tmp_path / "out.npz"))

    x = SparseConvTensor(feats, idx, SHAPE, BATCH)
    for name, m in ours.items():
        y = m(x)
        assert y.spatial_shape == theirs[name + ".shape"].tolist(), name
        t_idx, t_feat = sorted_rows(
            torch.from_numpy(theirs[name + ".indices"]), torch.from_numpy(theirs[name + ".features"])
        )
        o_idx, o_feat = sorted_rows(y.indices, y.features)
        assert torch.equal(o_idx, t_idx), name
        torch.testing.assert_close(o_feat, t_feat, atol=TOL, rtol=0, msg=name)
        if name == "conv_s2p1":
            z = inverse(y)
            assert torch.equal(z.indices, torch.from_numpy(theirs["inv.indices"]))
            torch.testing.assert_close(z.features, torch.from_numpy(theirs["inv.features"]), atol=TOL, rtol=0)


@pytest.mark.parametrize(
    ("ours", "theirs", "args"),
    [
        ("SubMConv3d", "SubMConv3d", (5, 7, (3, 1, 3))),
        ("SparseConv3d", "SparseConv3d", (5, 7, 3, 2, 1)),
        ("SparseInverseConv3d", "SparseInverseConv3d", (5, 7, 3, "k")),
    ],
)
def test_state_dict_round_trip_with_spconv(ours, theirs, args):
    spconv = pytest.importorskip("spconv.pytorch")
    a, b = getattr(S, ours)(*args), getattr(spconv, theirs)(*args)
    assert a.weight.shape == b.weight.shape == (7, *a.kernel_size, 5)  # (C_out, kD, kH, kW, C_in)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    c = getattr(S, ours)(*args)
    c.load_state_dict(b.state_dict())
    assert all(torch.equal(c.state_dict()[k], v) for k, v in a.state_dict().items())


# --------------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 60))
def test_permuting_rows_permutes_subm_output_and_keeps_strided_output(seed, n):
    feats, idx = random_sites(seed, n=n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    subm = SubMConv3d(3, 4, 3).double()
    y, y_perm = (
        subm(SparseConvTensor(feats, idx, SHAPE, BATCH)),
        subm(SparseConvTensor(feats[perm], idx[perm], SHAPE, BATCH)),
    )
    assert torch.equal(y_perm.indices, idx[perm])
    torch.testing.assert_close(y_perm.features, y.features[perm], atol=1e-12, rtol=0)
    down = SparseConv3d(3, 4, 3, 2, 1).double()
    z, z_perm = (
        down(SparseConvTensor(feats, idx, SHAPE, BATCH)),
        down(SparseConvTensor(feats[perm], idx[perm], SHAPE, BATCH)),
    )
    assert torch.equal(z.indices, z_perm.indices)  # sorted output order does not depend on input order
    torch.testing.assert_close(z_perm.features, z.features, atol=1e-12, rtol=0)


def test_batch_items_never_mix():
    """The same sites in two batch items: each item's output equals that item convolved alone."""
    feats, idx = random_sites(6, n=50, batch=1)
    other = torch.randn_like(feats)
    both_idx = torch.cat([idx, idx.clone().index_fill_(1, torch.tensor([0]), 1)])
    layers = [SubMConv3d(3, 4, 3).double(), SparseConv3d(3, 4, 3, 2, 1).double()]
    for m in layers:
        both = m(SparseConvTensor(torch.cat([feats, other]), both_idx, SHAPE, 2))
        for b, f in ((0, feats), (1, other)):
            alone = m(SparseConvTensor(f, idx, SHAPE, 1))
            mine = both.indices[:, 0] == b
            o_idx, o_feat = sorted_rows(both.indices[mine], both.features[mine])
            a_idx, a_feat = sorted_rows(alone.indices, alone.features)
            assert torch.equal(o_idx[:, 1:], a_idx[:, 1:])
            torch.testing.assert_close(o_feat, a_feat, atol=1e-12, rtol=0)


def test_subm_reuses_its_rulebook_and_checks_the_key():
    feats, idx = random_sites(7)
    x = SparseConvTensor(feats, idx, SHAPE, BATCH)
    a, b = SubMConv3d(3, 3, 3, indice_key="s").double(), SubMConv3d(3, 3, 3, indice_key="s").double()
    y = a(x)
    assert "s" not in x.indice_dict and "s" in y.indice_dict
    z = b(y)
    assert z.indice_dict["s"] is y.indice_dict["s"]
    with pytest.raises(ValueError, match="indice_key"):
        SubMConv3d(3, 3, (3, 1, 1), indice_key="s").double()(y)
    down = SparseConv3d(3, 3, 3, 2, 1, indice_key="s").double()
    with pytest.raises(ValueError, match="indice_key"):
        down(y)
    with pytest.raises(ValueError, match="indice_key"):
        SparseInverseConv3d(3, 3, 3, indice_key="missing").double()(y)
    d = SparseConv3d(3, 3, 3, 2, 1, indice_key="d").double()(x)
    with pytest.raises(ValueError, match="kernel_size"):
        SparseInverseConv3d(3, 3, 2, indice_key="d").double()(d)


def test_sparse_sequential_and_dense():
    feats, idx = random_sites(8)
    net = S.SparseSequential(
        SubMConv3d(3, 8, 3, indice_key="s"), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
        SparseConv3d(8, 8, 3, 2, 1, indice_key="d"), SparseInverseConv3d(8, 4, 3, indice_key="d"),
    ).double()  # fmt: skip
    y = net(SparseConvTensor(feats, idx, SHAPE, BATCH))
    assert y.features.shape == (len(idx), 4) and torch.equal(y.indices, idx)
    dense = y.dense()
    assert dense.shape == (BATCH, 4, *SHAPE)
    torch.testing.assert_close(at_sites(dense, idx), y.features)
    assert y.dense(channels_first=False).shape == (BATCH, *SHAPE, 4)
    empty = net(SparseConvTensor(feats[:0], idx[:0], SHAPE, BATCH))
    assert empty.features.shape == (0, 4)


@pytest.mark.parametrize(
    "layers",
    [
        lambda: [SubMConv3d(3, 4, 3)],
        lambda: [SparseConv3d(3, 4, 3, 2, 1)],
        lambda: [SparseConv3d(3, 4, 3, 2, 1, indice_key="d"), SparseInverseConv3d(4, 2, 3, indice_key="d")],
        lambda: [SubMConv3d(3, 4, 1)],
    ],
)
def test_empty_input_gives_empty_output(layers):
    layers = [m.double() for m in layers()]
    f = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    x = SparseConvTensor(f, torch.zeros(0, 4, dtype=torch.int32), SHAPE, BATCH)
    for m in layers:
        x = m(x)
    assert x.features.shape == (0, layers[-1].out_channels) and x.indices.shape == (0, 4)
    x.features.sum().backward()
    assert f.grad.shape == (0, 3) and torch.equal(layers[0].weight.grad, torch.zeros_like(layers[0].weight))


def _bad(**change):
    feats, idx = random_sites(9, n=10)
    args = {"features": feats, "indices": idx, "spatial_shape": SHAPE, "batch_size": BATCH} | change
    return args


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (_bad(indices=torch.tensor([[0, 0, 0, SHAPE[2]]] * 10, dtype=torch.int32)), "indices"),
        (_bad(indices=torch.tensor([[0, -1, 0, 0]] * 10, dtype=torch.int32)), "indices"),
        (_bad(indices=torch.tensor([[BATCH, 0, 0, 0]] * 10, dtype=torch.int32)), "indices"),
        (_bad(indices=torch.zeros(10, 4, dtype=torch.int64)), "indices"),
        (_bad(indices=torch.zeros(10, 3, dtype=torch.int32)), "indices"),
        (_bad(features=torch.zeros(9, 3, dtype=torch.float64)), "features"),
        (_bad(features=torch.zeros(10, dtype=torch.float64)), "features"),
        (_bad(features=torch.zeros(10, 3, dtype=torch.int64)), "features"),
        (_bad(spatial_shape=[4, 4]), "spatial_shape"),
        (_bad(spatial_shape=[4, 0, 4]), "spatial_shape"),
        (_bad(batch_size=0), "batch_size"),
    ],
)
def test_bad_tensor_raises_naming_the_argument(args, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        SparseConvTensor(**args)


def test_duplicates_and_layer_mismatches_raise():
    feats, idx = random_sites(10, n=10)
    dup = idx.clone()
    dup[3] = dup[7]
    x = SparseConvTensor(feats, dup, SHAPE, BATCH)
    for m in (SubMConv3d(3, 4, 3), SparseConv3d(3, 4, 3, 2, 1)):
        with pytest.raises(ValueError, match=r"^indices: duplicate"):
            m.double()(x)
    good = SparseConvTensor(feats, idx, SHAPE, BATCH)
    with pytest.raises(ValueError, match=r"^features: dtype"):
        SubMConv3d(3, 4, 3)(good)  # float32 weight, float64 features
    with pytest.raises(ValueError, match=r"^features: 3 channels"):
        SubMConv3d(5, 4, 3).double()(good)
    with pytest.raises(ValueError, match=r"^features: on"):
        SubMConv3d(3, 4, 3).double().to("meta")(good)
    for bad in ({"groups": 2}, {"kernel_size": 2}, {"kernel_size": 0}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad))}"):
            SubMConv3d(3, 4, **({"kernel_size": 3} | bad))
    with pytest.raises(ValueError, match=r"^padding"):
        SparseConv3d(3, 4, 1, padding=1)


@pytest.mark.skipif(not S.spconv_cuda_available(), reason="needs a GPU and spconv's CUDA build")
def test_gpu_backend_agrees_with_cpu():
    feats, idx = random_sites(11, n=200)
    layers = [SubMConv3d(3, 8, 3, indice_key="s"), SparseConv3d(8, 8, 3, 2, 1, indice_key="d"),
              SparseInverseConv3d(8, 4, 3, indice_key="d")]  # fmt: skip
    cpu = torch.nn.Sequential(*layers).float()
    x = SparseConvTensor(feats.float(), idx, SHAPE, BATCH)
    y_cpu = x
    for m in layers:
        y_cpu = m(y_cpu)
    gpu = cpu.cuda()
    y_gpu = SparseConvTensor(feats.float().cuda(), idx.cuda(), SHAPE, BATCH)
    for m in gpu:
        y_gpu = m(y_gpu)
    assert torch.equal(y_gpu.indices.cpu(), idx)
    torch.testing.assert_close(y_gpu.features.cpu(), y_cpu.features, atol=1e-4, rtol=1e-4)


if __name__ == "__main__":  # the spconv reference child of test_forward_matches_spconv_cpu
    torch.set_num_threads(1)
    with torch.no_grad():
        np.savez(sys.argv[2], **spconv_forward(dict(np.load(sys.argv[1]))))
