"""Hilbert / z-order serialization: curve properties, a reference transform, backends, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from perception.ops import hilbert as H

CURVES = [(H.encode, H.decode), (H.encode_morton, H.decode_morton)]
ORDERS = ["hilbert", "hilbert-trans", "z", "z-trans"]


# ------------------------------------------------------------------------------------------------
# Reference: Skilling's transform ("Programming the Hilbert curve", AIP 2004), written plainly.
# Mapping to our convention: Skilling's X[0], X[1], X[2] = columns c0, c1, c2; the transposed
# index is read most significant bit first, X[0] first within each bit level.
# ------------------------------------------------------------------------------------------------


def skilling_encode(point: tuple[int, ...], bits: int) -> int:
    x = list(point)
    n = len(x)
    q = 1 << (bits - 1)
    while q > 1:  # inverse undo
        p = q - 1
        for i in range(n):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q >>= 1
    for i in range(1, n):  # Gray encode
        x[i] ^= x[i - 1]
    t = 0
    q = 1 << (bits - 1)
    while q > 1:
        if x[n - 1] & q:
            t ^= q - 1
        q >>= 1
    x = [xi ^ t for xi in x]
    code = 0
    for level in range(bits - 1, -1, -1):
        for i in range(n):
            code = code << 1 | (x[i] >> level) & 1
    return code


def skilling_decode(code: int, bits: int, n: int = 3) -> tuple[int, ...]:
    x = [0] * n
    for k in range(n * bits):  # untranspose: bit k from the top goes to axis k % n
        level = bits - 1 - k // n
        x[k % n] |= ((code >> (n * bits - 1 - k)) & 1) << level
    t = x[n - 1] >> 1  # Gray decode
    for i in range(n - 1, 0, -1):
        x[i] ^= x[i - 1]
    x[0] ^= t
    q = 2
    while q != 1 << bits:  # undo excess work
        p = q - 1
        for i in range(n - 1, -1, -1):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q <<= 1
    return tuple(x)


def all_cells(bits: int) -> np.ndarray:
    return np.array(list(itertools.product(range(1 << bits), repeat=3)), dtype=np.int64)


def random_cells(bits: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << bits, (n, 3), dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# The curve itself.
# ------------------------------------------------------------------------------------------------


def test_reference_is_a_bijection() -> None:
    for bits in (1, 2, 3):
        for p in all_cells(bits):
            assert skilling_decode(skilling_encode(tuple(p), bits), bits) == tuple(p)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hilbert_equals_skilling_exhaustive(bits: int) -> None:
    cells = all_cells(bits)
    expected = np.array([skilling_encode(tuple(p), bits) for p in cells])
    np.testing.assert_array_equal(H.encode(cells, bits), expected)


@pytest.mark.parametrize("bits", [5, 6, 7, 10, 11, 16, 20, 21])
def test_hilbert_equals_skilling_sampled(bits: int) -> None:
    cells = random_cells(bits, 300, seed=bits)
    codes = np.array([skilling_encode(tuple(p), bits) for p in cells])
    np.testing.assert_array_equal(H.encode(cells, bits), codes)
    np.testing.assert_array_equal(H.decode(codes, bits), cells)
    expected = np.array([skilling_decode(int(c), bits) for c in codes])
    np.testing.assert_array_equal(H.decode(codes, bits), expected)


def test_agrees_with_numpy_hilbert_curve() -> None:
    hilbert = pytest.importorskip("hilbert")  # numpy-hilbert-curve, same columns, same codes
    for bits in (3, 10, 21):
        cells = random_cells(bits, 1000, seed=bits)
        np.testing.assert_array_equal(H.encode(cells, bits), hilbert.encode(cells, 3, bits).astype(np.int64))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize(("enc", "dec"), CURVES)
def test_bijection_exhaustive(bits: int, enc, dec) -> None:
    cells = all_cells(bits)
    codes = enc(cells, bits)
    np.testing.assert_array_equal(np.sort(codes), np.arange(8**bits))
    np.testing.assert_array_equal(dec(codes, bits), cells)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("order", ["hilbert", "hilbert-trans"])
def test_consecutive_hilbert_cells_are_face_neighbours(bits: int, order: str) -> None:
    path = H.deserialize(np.arange(8**bits), order, bits)
    steps = np.abs(np.diff(path, axis=0)).sum(1)
    assert (steps == 1).all()


def test_orientation() -> None:
    for bits in (1, 2, 3, 5, 10, 21):
        path = H.decode(np.array([0, 1, 8**bits - 1]), bits)
        first_step = [[0, 0, 1], [0, 1, 0], [1, 0, 0]][(bits - 1) % 3]
        np.testing.assert_array_equal(path, [[0, 0, 0], first_step, [(1 << bits) - 1, 0, 0]])
    octants = H.decode(np.arange(8), 1)  # Gray-code order over (c0 c1 c2)
    np.testing.assert_array_equal(octants @ [4, 2, 1], [0, 1, 3, 2, 6, 7, 5, 4])


def test_morton_layout() -> None:
    np.testing.assert_array_equal(H.encode_morton(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), 1), [4, 2, 1])
    cells = random_cells(21, 200)
    expected = np.zeros(len(cells), np.int64)
    for k in range(21):
        for axis in range(3):
            expected |= ((cells[:, axis] >> k) & 1) << (3 * k + 2 - axis)
    np.testing.assert_array_equal(H.encode_morton(cells, 21), expected)


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(2, 21),
    order=st.sampled_from(ORDERS),
    fractions=st.lists(st.tuples(*[st.floats(0, 1, exclude_max=True)] * 3), min_size=1, max_size=20),
)
def test_codes_are_hierarchical(bits: int, order: str, fractions: list) -> None:
    cells = (np.array(fractions) * (1 << bits)).astype(np.int64)
    child = H.serialize(cells, order, bits)
    parent = H.serialize(cells >> 1, order, bits - 1)
    np.testing.assert_array_equal(child >> 3, parent)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 21), seed=st.integers(0, 2**32 - 1), order=st.sampled_from(ORDERS))
def test_round_trip_random(bits: int, seed: int, order: str) -> None:
    cells = random_cells(bits, 50, seed)
    codes = H.serialize(cells, order, bits)
    assert codes.dtype == np.int64 and ((codes >= 0) & (codes < 8**bits)).all()
    np.testing.assert_array_equal(H.deserialize(codes, order, bits), cells)


def test_largest_cell_at_21_bits() -> None:
    top = np.full((1, 3), (1 << 21) - 1, np.int32)
    for enc, dec in CURVES:
        code = enc(top, 21)
        assert 0 <= code[0] < 2**63
        np.testing.assert_array_equal(dec(code, 21), top)


def test_trans_orders_swap_first_two_columns() -> None:
    cells = random_cells(8, 100)
    swapped = cells[:, [1, 0, 2]]
    np.testing.assert_array_equal(H.serialize(cells, "hilbert-trans", 8), H.encode(swapped, 8))
    np.testing.assert_array_equal(H.serialize(cells, "z-trans", 8), H.encode_morton(swapped, 8))
    np.testing.assert_array_equal(H.serialize(cells, "z", 8), H.encode_morton(cells, 8))


# ------------------------------------------------------------------------------------------------
# Input types and backends.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.int16, np.uint16, np.uint32, np.uint64])
def test_integer_dtypes(dtype) -> None:
    cells = random_cells(8, 64)
    expected = H.encode(cells, 8)
    np.testing.assert_array_equal(H.encode(cells.astype(dtype), 8), expected)
    if np.iinfo(dtype).bits >= 32:  # codes need 24 bits
        np.testing.assert_array_equal(H.decode(expected.astype(dtype), 8), cells)


def test_non_contiguous_and_list_input() -> None:
    cells = random_cells(6, 100)
    np.testing.assert_array_equal(H.encode(cells[::2], 6), H.encode(cells, 6)[::2])
    np.testing.assert_array_equal(H.encode(np.asfortranarray(cells), 6), H.encode(cells, 6))
    assert H.encode([[1, 2, 3]], 2).tolist() == H.encode(np.array([[1, 2, 3]]), 2).tolist()


@pytest.mark.parametrize(("enc", "dec"), CURVES)
def test_empty_input(enc, dec) -> None:
    codes = enc(np.zeros((0, 3), np.int32), 5)
    assert codes.shape == (0,) and codes.dtype == np.int64
    cells = dec(np.zeros(0, np.int64), 5)
    assert cells.shape == (0, 3) and cells.dtype == np.int64
    t = enc(torch.zeros((0, 3), dtype=torch.int64), 5)
    assert t.shape == (0,) and t.dtype == torch.int64
    tc = dec(torch.zeros(0, dtype=torch.int64), 5)
    assert tc.shape == (0, 3) and tc.dtype == torch.int64


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16])
@pytest.mark.parametrize(("enc", "dec"), CURVES)
def test_torch_cpu_matches_numpy(dtype, enc, dec) -> None:
    cells = random_cells(10, 500)
    codes = enc(torch.from_numpy(cells).to(dtype), 10)
    assert isinstance(codes, torch.Tensor) and codes.dtype == torch.int64 and codes.device.type == "cpu"
    np.testing.assert_array_equal(codes.numpy(), enc(cells, 10))
    back = dec(codes, 10)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.int64
    np.testing.assert_array_equal(back.numpy(), cells)


@pytest.mark.parametrize("bits", [1, 2, 3, 9, 10, 20, 21])
@pytest.mark.parametrize("curve", [H._HILBERT, H._MORTON])
def test_pure_torch_path_matches_numba(bits: int, curve) -> None:
    cells = random_cells(bits, 400, seed=bits)
    expected = H._encode_numpy(cells, bits, curve, "coords")
    codes = H._encode_torch(torch.from_numpy(cells).to(torch.int32), bits, curve)
    np.testing.assert_array_equal(codes.numpy(), expected)
    np.testing.assert_array_equal(H._decode_torch(codes, bits, curve).numpy(), cells)


def _check_unrolled_kernels(bits: int, dtype) -> None:
    cells = random_cells(bits, H._UNROLL_MIN + 3, seed=bits).astype(dtype)  # large: unrolled kernels
    for enc, dec in CURVES:
        codes = enc(cells, bits)
        np.testing.assert_array_equal(codes[:500], enc(cells[:500], bits))  # small: generic kernel
        np.testing.assert_array_equal(dec(codes, bits), cells)
    with pytest.raises(ValueError, match="coords"):
        H.encode(np.concatenate([cells, [[0, 1 << bits, 0]]]).astype(dtype), bits)
    with pytest.raises(ValueError, match="codes"):
        H.decode(np.concatenate([codes, [-1]]), bits)


@pytest.mark.parametrize(("bits", "dtype"), [(3, np.int64), (10, np.int32), (10, np.int64), (21, np.int64)])
def test_unrolled_kernels(bits: int, dtype) -> None:
    _check_unrolled_kernels(bits, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("bits", range(1, 22))
def test_unrolled_kernels_all_bits(bits: int) -> None:
    _check_unrolled_kernels(bits, np.int64)


ALL_INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("n", [500, H._UNROLL_MIN + 5])  # generic and unrolled kernels
@pytest.mark.parametrize("bits", [4, 7, 10, 16, 21])
def test_every_input_dtype_gives_the_same_codes(bits: int, n: int) -> None:
    cells = random_cells(bits, n, seed=bits)
    for enc, dec in CURVES:
        expected = enc(cells, bits)
        for dtype in ALL_INT_DTYPES:
            if np.iinfo(dtype).max >= (1 << bits) - 1:
                np.testing.assert_array_equal(enc(cells.astype(dtype), bits), expected, err_msg=str(dtype))
                swapped = cells.astype(np.dtype(dtype).newbyteorder(">"))  # read through a native copy
                np.testing.assert_array_equal(enc(swapped, bits), expected, err_msg=f"big-endian {dtype}")
            if np.iinfo(dtype).max >= (1 << 3 * bits) - 1:
                np.testing.assert_array_equal(dec(expected.astype(dtype), bits), cells, err_msg=str(dtype))


@pytest.mark.parametrize("n", [300, H._UNROLL_MIN + 5])
@pytest.mark.parametrize(
    ("dtype", "bits"), [(np.int8, 9), (np.int16, 16), (np.int32, 21), (np.int64, 21), (np.uint64, 21)]
)
def test_negative_and_huge_inputs_are_rejected_for_every_width(dtype, bits: int, n: int) -> None:
    """Negative values must be caught even when bits reaches the dtype's width (sign bit set)."""
    cells = np.zeros((n, 3), dtype)
    bad = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else -1
    cells[n // 2, 1] = bad
    for enc, dec in CURVES:
        with pytest.raises(ValueError, match="coords"):
            enc(cells, bits)
        codes = np.zeros(n, dtype)
        codes[-1] = bad
        if np.dtype(dtype).kind == "i" or 3 * bits < 8 * np.dtype(dtype).itemsize:
            with pytest.raises(ValueError, match="codes"):
                dec(codes, bits)


@pytest.mark.parametrize("n", [200, H._UNROLL_MIN + 5])
@pytest.mark.parametrize("bits", [5, 10, 16, 21])
def test_output_into_preallocated_buffers(bits: int, n: int) -> None:
    cells = random_cells(bits, n, seed=n)
    for enc, dec in CURVES:
        expected = enc(cells, bits)
        for dtype in ALL_INT_DTYPES:
            info = np.iinfo(dtype)
            if info.max >= (1 << 3 * bits) - 1:
                out = np.full(n, 7, dtype)
                assert enc(cells, bits, out=out) is out
                np.testing.assert_array_equal(out, expected, err_msg=str(dtype))
                t_out = torch.zeros(n, dtype=getattr(torch, np.dtype(dtype).name))
                assert enc(torch.from_numpy(cells), bits, out=t_out) is t_out
                np.testing.assert_array_equal(t_out.numpy(), expected, err_msg=str(dtype))
            if info.max >= (1 << bits) - 1:
                out3 = np.full((n, 3), 7, dtype)
                assert dec(expected, bits, out=out3) is out3
                np.testing.assert_array_equal(out3, cells, err_msg=str(dtype))
                t_out3 = torch.zeros((n, 3), dtype=getattr(torch, np.dtype(dtype).name))
                assert dec(torch.from_numpy(expected), bits, out=t_out3) is t_out3
                np.testing.assert_array_equal(t_out3.numpy(), cells, err_msg=str(dtype))


def test_bad_output_buffers() -> None:
    cells = random_cells(10, 50)
    codes = H.encode(cells, 10)
    bad = [
        np.empty(49, np.int64),  # wrong length
        np.empty((50, 1), np.int64),  # wrong shape
        np.empty(50, np.int16),  # too narrow for 30-bit codes
        np.empty(0, np.int64),  # wrong length
        np.empty(100, np.int64)[::2],  # not contiguous
        np.empty(50, np.float64),
        torch.empty(50, dtype=torch.int64),  # torch for NumPy input
    ]
    for out in bad:
        with pytest.raises(ValueError, match="out"):
            H.encode(cells, 10, out=out)
    readonly = np.empty(50, np.int64)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        H.encode(cells, 10, out=readonly)
    with pytest.raises(ValueError, match="out"):
        H.encode(cells, 11, out=np.empty(50, np.uint32))  # 33-bit codes
    for out in (np.empty((50, 3), np.uint8), np.empty((50, 2), np.int64), np.empty(150, np.int64)):
        with pytest.raises(ValueError, match="out"):
            H.decode(codes, 10, out=out)
    with pytest.raises(ValueError, match="out"):
        H.decode(torch.from_numpy(codes), 10, out=np.empty((50, 3), np.int64))  # NumPy for torch input
    with pytest.raises(ValueError, match="out"):
        H.decode(torch.from_numpy(codes), 10, out=torch.empty((50, 3), dtype=torch.float32))


def test_pure_torch_path_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="coords"):
        H._encode_torch(torch.tensor([[0, 0, 4]]), 2, H._HILBERT)
    with pytest.raises(ValueError, match="coords"):
        H._encode_torch(torch.tensor([[0, -1, 0]]), 2, H._HILBERT)
    with pytest.raises(ValueError, match="codes"):
        H._decode_torch(torch.tensor([64]), 2, H._HILBERT)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    cells = random_cells(16, 10_000)
    cuda = torch.from_numpy(cells).cuda()
    for order in ORDERS:
        codes = H.serialize(cuda, order, 16)
        assert codes.device == cuda.device
        np.testing.assert_array_equal(codes.cpu().numpy(), H.serialize(cells, order, 16))
        np.testing.assert_array_equal(H.deserialize(codes, order, 16).cpu().numpy(), cells)
    xyz = torch.rand(5000, 3, device="cuda") * 50
    ser = H.serialize_points(xyz, 0.1)
    ref = H.serialize_points(xyz.cpu(), 0.1)
    np.testing.assert_array_equal(ser.codes.cpu().numpy(), ref.codes.numpy())


# ------------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------------

BAD_COORDS = [
    (np.array([[0, -1, 0]]), 4, "coords"),
    (np.array([[0, 16, 0]]), 4, "coords"),
    (np.array([[2**63 - 1, 0, 0]]), 21, "coords"),
    (np.array([[2**64 - 1, 0, 0]], dtype=np.uint64), 21, "coords"),
    (np.array([[0, 0, 0]]), 0, "bits"),
    (np.array([[0, 0, 0]]), 22, "bits"),
    (np.array([[0, 0, 0]]), 2.0, "bits"),
    (np.array([[0, 0, 0]]), True, "bits"),
    (np.zeros((4, 2), np.int64), 4, "coords"),
    (np.zeros(3, np.int64), 4, "coords"),
    (np.zeros((2, 3, 3), np.int64), 4, "coords"),
    (np.zeros((4, 3), np.float32), 4, "coords"),
    (np.array([[np.nan, 0, 0]]), 4, "coords"),
    (np.zeros((4, 3), bool), 4, "coords"),
]


@pytest.mark.parametrize(("coords", "bits", "name"), BAD_COORDS)
@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize(("enc", "dec"), CURVES)
def test_bad_coords(coords, bits, name, as_torch: bool, enc, dec) -> None:
    if as_torch:
        if coords.dtype == np.uint64:
            pytest.skip("torch has no uint64 arithmetic")
        coords = torch.from_numpy(coords)
    with pytest.raises(ValueError, match=name):
        enc(coords, bits)


@pytest.mark.parametrize(
    ("codes", "bits", "name"),
    [
        (np.array([64]), 2, "codes"),
        (np.array([-1]), 2, "codes"),
        (np.zeros((2, 1), np.int64), 2, "codes"),
        (np.zeros(2, np.float64), 2, "codes"),
        (np.zeros(2, np.int64), 22, "bits"),
    ],
)
@pytest.mark.parametrize(("enc", "dec"), CURVES)
def test_bad_codes(codes, bits, name, enc, dec) -> None:
    for value in (codes, torch.from_numpy(codes)):
        with pytest.raises(ValueError, match=name):
            dec(value, bits)


def test_bad_order() -> None:
    with pytest.raises(ValueError, match="order"):
        H.serialize(np.zeros((1, 3), np.int64), "peano", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        H.deserialize(np.zeros(1, np.int64), "hilbert_trans", 4)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Batch packing and point serialization.
# ------------------------------------------------------------------------------------------------


def test_pack_unpack_round_trip_and_sort() -> None:
    cells = random_cells(5, 200)
    batch = np.random.default_rng(1).integers(0, 4, 200)
    codes = H.encode(cells, 5)
    packed = H.pack_batch(codes, batch, 5)
    np.testing.assert_array_equal(packed, H.serialize(cells, "hilbert", 5, batch=batch))
    got_codes, got_batch = H.unpack_batch(packed, 5)
    np.testing.assert_array_equal(got_codes, codes)
    np.testing.assert_array_equal(got_batch, batch)
    np.testing.assert_array_equal(np.argsort(packed, kind="stable"), np.lexsort((codes, batch)))
    t_packed = H.pack_batch(torch.from_numpy(codes), torch.from_numpy(batch).int(), 5)
    np.testing.assert_array_equal(t_packed.numpy(), packed)


@pytest.mark.parametrize(
    ("batch", "bits"),
    [
        (np.array([0, 1]), 4),  # wrong length
        (np.array([0.0, 1.0, 2.0]), 4),  # float
        (np.array([0, -1, 0]), 4),  # negative
        (np.array([0, 1, 0]), 21),  # no room above 63 code bits
        (np.array([0, 2**15, 0]), 16),  # 48 code bits leave 15 for the batch
        (torch.zeros(3, dtype=torch.int64), 4),  # torch batch with NumPy codes
    ],
)
def test_bad_batch(batch, bits: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        H.pack_batch(np.zeros(3, np.int64), batch, bits)


def test_batch_must_match_torch_codes() -> None:
    with pytest.raises(ValueError, match="batch"):
        H.pack_batch(torch.zeros(3, dtype=torch.int64), np.zeros(3, np.int64), 4)
    with pytest.raises(ValueError, match="batch"):
        H.pack_batch(torch.zeros(3, dtype=torch.int64), torch.zeros(3, device="meta", dtype=torch.int64), 4)


def test_serialize_points_single_cloud() -> None:
    xyz = np.array([[0.05, 0.0, -1.0], [1.0, 0.35, -1.0], [0.06, 0.01, -0.99], [0.35, 0.0, -1.0]])
    ser = H.serialize_points(xyz, 0.1, order="z")
    np.testing.assert_array_equal(ser.grid_coords, [[0, 0, 0], [10, 3, 0], [0, 0, 0], [3, 0, 0]])
    assert ser.bits == 4 and ser.curve == "z"
    np.testing.assert_array_equal(ser.codes, H.encode_morton(ser.grid_coords, 4))
    np.testing.assert_array_equal(ser.order, [0, 2, 3, 1])  # stable: equal cells keep input order
    np.testing.assert_array_equal(ser.order[ser.inverse], np.arange(4))
    assert (np.diff(ser.codes[ser.order]) >= 0).all()
    t = H.serialize_points(torch.from_numpy(xyz).float(), 0.1, order="z")
    for field in ("codes", "order", "inverse", "grid_coords"):
        np.testing.assert_array_equal(getattr(t, field).numpy(), getattr(ser, field))


@pytest.mark.parametrize("order", ORDERS)
def test_serialize_points_batches(order: str) -> None:
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-20, 20, (300, 4)).astype(np.float32)
    shifted = cloud + np.array([100.0, -50.0, 3.0, 0.0], np.float32)
    xyz = np.concatenate([shifted, cloud])
    batch = np.repeat([1, 0], 300)
    ser = H.serialize_points(xyz, (0.5, 0.5, 0.25), order=order, batch=batch)
    alone = H.serialize_points(cloud, (0.5, 0.5, 0.25), order=order, bits=ser.bits)
    # Per-cloud minimum: the shifted copy gets (nearly) the same grid; float rounding may move a few.
    assert (ser.grid_coords[:300] == alone.grid_coords).all(1).mean() > 0.95
    np.testing.assert_array_equal(ser.grid_coords[300:], alone.grid_coords)
    codes, b = H.unpack_batch(ser.codes, ser.bits)
    np.testing.assert_array_equal(b, batch)
    np.testing.assert_array_equal(ser.order, np.lexsort((np.arange(600), codes, batch)))
    assert (ser.order[:300] >= 300).all()  # cloud 0 first
    np.testing.assert_array_equal(ser.inverse[ser.order], np.arange(600))

    t = H.serialize_points(
        torch.from_numpy(xyz), (0.5, 0.5, 0.25), order=order, batch=torch.from_numpy(batch)
    )
    for field in ("codes", "order", "inverse", "grid_coords"):
        np.testing.assert_array_equal(getattr(t, field).numpy(), getattr(ser, field))
    assert t.bits == ser.bits


def test_serialize_points_empty() -> None:
    ser = H.serialize_points(np.zeros((0, 3), np.float32), 0.1)
    assert ser.codes.shape == (0,) and ser.order.shape == (0,) and ser.grid_coords.shape == (0, 3)
    assert ser.bits == 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"xyz": np.array([[0.0, np.nan, 0.0]])}, "xyz"),
        ({"xyz": np.zeros((3, 2))}, "xyz"),
        ({"xyz": np.zeros((3, 3), np.int64)}, "xyz"),
        ({"grid_size": 0.0}, "grid_size"),
        ({"grid_size": (0.1, -0.1, 0.1)}, "grid_size"),
        ({"grid_size": 1e-9}, "grid_size"),
        ({"bits": 2}, "bits"),
        ({"bits": 22}, "bits"),
        ({"batch": np.array([0, 0])}, "batch"),
        ({"batch": np.array([0, -1, 0])}, "batch"),
        ({"order": "hilbert-transposed"}, "order"),
    ],
)
def test_serialize_points_bad_input(kwargs: dict, name: str) -> None:
    args = {"xyz": np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.5, 0.5, 0.5]]), "grid_size": 0.1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        H.serialize_points(**args)
