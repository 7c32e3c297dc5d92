"""Speed of :mod:`perception.ops.sparse` on the CPU against spconv 2.3.8's CPU build, on a real LiDAR frame.

Input: KITTI ``training/velodyne/000000.bin`` voxelized at [0.05, 0.05, 0.1] m over
[0, -40, -3, 70.4, 40, 1] (unique ``floor((p - min) / voxel)`` cells, computed here with numpy),
32 float32 random features a voxel. Cases: ``SubMConv3d`` 32→32 k=3 and ``SparseConv3d`` 32→64
k=3 stride 2 padding 1. Phases, each the median of ``repeats`` runs: rulebook build alone, forward
with the rulebook reused, forward + backward (features, weight, bias) with the rulebook reused.

Peer: spconv's own ops (``ops.get_indice_pairs``, ``ops.indice_conv``), pairs reused, in a child
process started with ``OMP_NUM_THREADS=1``: its kernels use a bundled libgomp that ignores
``torch.set_num_threads`` and races with 2 threads, so 1 thread is the only setting where it is
right. spconv's CPU backward raises ("Torch not compiled with CUDA enabled"), so the fwd+bwd rows
carry spconv's *forward* time as ``peer_ms`` with ``speedup`` None: not a like-for-like ratio.
Our forward output is checked against spconv's (``agrees``). Called from ``tools/benchmark.py``;
runnable alone with ``python -m perception.ops._bench_sparse``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from perception.benchmarking import median_seconds
from perception.ops._sparse_kernels import sparse_conv
from perception.ops._sparse_rules import Rulebook, build_strided, build_submanifold

__all__ = ["bench_sparse", "kitti_voxels"]

KITTI_SCAN = Path(__file__).resolve().parents[2].parent / "shared/data/kitti/training/velodyne/000000.bin"
VOXEL = np.array([0.05, 0.05, 0.1])
RANGE = np.array([0.0, -40.0, -3.0, 70.4, 40.0, 1.0])
CASES = {  # name: (C_in, C_out, kernel, stride, padding, subm)
    "SubMConv3d 32→32 k3": (32, 32, 3, 1, 0, True),
    "SparseConv3d 32→64 k3 s2 p1": (32, 64, 3, 2, 1, False),
}


def kitti_voxels(scan: Path = KITTI_SCAN) -> tuple[torch.Tensor, list[int]]:
    """``(V, 4)`` int32 ``[0, z, y, x]`` occupied voxels of one scan and the ``[D, H, W]`` grid."""
    from perception.data.kitti import read_velodyne

    pts = read_velodyne(scan)[:, :3].astype(np.float64)
    lo, hi = RANGE[:3], RANGE[3:]
    pts = pts[np.all((pts >= lo) & (pts < hi), axis=1)]
    cells = np.unique(np.floor((pts - lo) / VOXEL).astype(np.int64), axis=0)[:, ::-1]  # z, y, x
    shape = np.round((hi - lo) / VOXEL).astype(int)[::-1].tolist()
    idx = np.concatenate([np.zeros((len(cells), 1), np.int64), cells], axis=1).astype(np.int32)
    return torch.from_numpy(idx), shape


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return median_seconds(fn, repeats) * 1e3


def _case_setup(name: str, seed: int = 0):
    c_in, c_out, k, s, p, subm = CASES[name]
    g = torch.Generator().manual_seed(seed)
    weight = (torch.rand(c_out, k, k, k, c_in, generator=g) - 0.5) / np.sqrt(c_in * k**3)
    bias = torch.rand(c_out, generator=g) - 0.5
    return weight, bias, k, s, p, subm


def _ours(name: str, idx: torch.Tensor, shape: list[int], feats: torch.Tensor, repeats: int) -> dict:
    weight, bias, k, s, p, subm = _case_setup(name)

    def build() -> Rulebook:
        if subm:
            return build_submanifold(idx, shape, 1, (k,) * 3, (1,) * 3)
        return build_strided(idx, shape, 1, (k,) * 3, (s,) * 3, (p,) * 3, (1,) * 3)

    rules = build()
    f, w, b = (t.clone().requires_grad_() for t in (feats, weight, bias))

    def fwd_bwd() -> None:
        f.grad = w.grad = b.grad = None
        sparse_conv(f, w, b, rules).sum().backward()

    with torch.no_grad():
        out = sparse_conv(feats, weight, bias, rules)
    return {
        "rulebook": _median_ms(build, repeats),
        "fwd": _median_ms(lambda: _no_grad(sparse_conv, feats, weight, bias, rules), repeats),
        "fwd+bwd": _median_ms(fwd_bwd, repeats),
        "out": out,
        "out_indices": rules.out_indices,
        "pairs": rules.num_pairs + (rules.num_in if rules.identity_offset >= 0 else 0),
    }


def _no_grad(fn: Callable, *args: object) -> object:
    with torch.no_grad():
        return fn(*args)


def _spconv_child(in_path: str, out_path: str) -> None:
    """Child process (``OMP_NUM_THREADS=1``): time spconv's rulebook and forward ops."""
    torch.set_num_threads(1)
    from spconv.core import ConvAlgo
    from spconv.pytorch import ops

    data = np.load(in_path)
    idx, shape, feats = (
        torch.from_numpy(data["indices"]),
        data["shape"].tolist(),
        torch.from_numpy(data["features"]),
    )
    repeats = int(data["repeats"])
    result: dict = {}
    for j, name in enumerate(CASES):
        weight, bias, k, s, p, subm = _case_setup(name)

        def pairs(k=k, s=s, p=p, subm=subm):
            return ops.get_indice_pairs(
                idx, 1, shape, ConvAlgo.Native, [k] * 3, [s] * 3, [p] * 3, [1] * 3, [0] * 3, subm, False
            )

        out_ids, ip, num = pairs()
        n_out = out_ids.shape[0]

        def fwd(ip=ip, num=num, n_out=n_out, subm=subm, weight=weight, bias=bias):
            with torch.no_grad():
                return ops.indice_conv(feats, weight, ip, num, n_out, False, subm, ConvAlgo.Native) + bias

        result[name] = {"rulebook": _median_ms(pairs, repeats), "fwd": _median_ms(fwd, repeats)}
        np.save(Path(out_path).with_suffix(f".{j}.features.npy"), fwd().numpy())
        np.save(Path(out_path).with_suffix(f".{j}.indices.npy"), out_ids.numpy())
        f = feats.clone().requires_grad_()
        try:
            from spconv.pytorch import functional as Fsp

            Fsp.indice_conv(f, weight, ip, num, n_out, ConvAlgo.Native).sum().backward()
            result[name]["bwd"] = "ran"
        except Exception as e:  # its CPU backward asks for a CUDA stream
            result[name]["bwd"] = f"raises {type(e).__name__}: {e}"[:120]
    Path(out_path).write_text(json.dumps(result))


def _spconv(idx: torch.Tensor, shape: list[int], feats: torch.Tensor, repeats: int) -> dict | str:
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return "spconv not installed"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, indices=idx.numpy(), shape=np.array(shape), features=feats.numpy(), repeats=repeats)
        cmd = [sys.executable, "-m", "perception.ops._bench_sparse", "--spconv-child", str(src), str(dst)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        child = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if child.returncode != 0:
            return "spconv child failed: " + child.stderr[-300:]
        result = json.loads(dst.read_text())
        for j, name in enumerate(CASES):
            result[name]["out"] = torch.from_numpy(np.load(dst.with_suffix(f".{j}.features.npy")))
            result[name]["out_indices"] = torch.from_numpy(np.load(dst.with_suffix(f".{j}.indices.npy")))
    return result


def _sorted(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    key = ((indices[:, 0].long() * 2048 + indices[:, 1]) * 2048 + indices[:, 2]) * 2048 + indices[:, 3]
    order = torch.argsort(key)
    return indices[order], values[order]


def bench_sparse(repeats: int = 5, threads: tuple[int, ...] = (1, 2), verbose: bool = True) -> list[dict]:
    """Our CPU sparse convolutions at each thread count vs spconv's CPU build at one thread.

    Returns one dict per (case, phase, threads): ``op`` (case and phase), ``input`` (voxel count),
    ``threads``, ``ours_ms`` (median), ``peer``, ``peer_ms`` (spconv at 1 thread; None if unavailable),
    ``speedup`` (peer_ms / ours_ms where the phases are comparable, else None) and ``agrees``
    (our forward output equals spconv's: same index set, values within 1e-4).
    """
    idx, shape = kitti_voxels()
    feats = torch.randn(len(idx), 32, generator=torch.Generator().manual_seed(0))
    old = torch.get_num_threads()
    ours: dict[tuple[str, int], dict] = {}
    try:
        for t in threads:
            torch.set_num_threads(t)
            for name in CASES:
                ours[name, t] = _ours(name, idx, shape, feats, repeats)
    finally:
        torch.set_num_threads(old)
    peer = _spconv(idx, shape, feats, repeats)
    rows: list[dict] = []
    for name in CASES:
        theirs = peer.get(name) if isinstance(peer, dict) else None
        agrees = None
        if theirs is not None:
            mine = ours[name, threads[0]]
            (a_idx, a_val), (b_idx, b_val) = (
                _sorted(mine["out_indices"], mine["out"]),
                _sorted(theirs["out_indices"], theirs["out"]),
            )
            agrees = bool(torch.equal(a_idx, b_idx) and torch.allclose(a_val, b_val, atol=1e-4, rtol=1e-4))
        for phase in ("rulebook", "fwd", "fwd+bwd"):
            for t in threads:
                mine = ours[name, t]
                peer_ms = None if theirs is None else theirs["fwd" if phase == "fwd+bwd" else phase]
                comparable = peer_ms is not None and phase != "fwd+bwd"
                label = "spconv 2.3.8 CPU, 1 thread"
                if phase == "fwd+bwd":
                    label += f" (fwd only; backward {theirs['bwd']})" if theirs else ""
                rows.append({
                    "op": f"{name} {phase}",
                    "input": f"KITTI 000000, {len(idx)} voxels, {mine['pairs']} pairs",
                    "threads": t,
                    "ours_ms": round(mine[phase], 2),
                    "peer": label if theirs else str(peer),
                    "peer_ms": None if peer_ms is None else round(peer_ms, 2),
                    "speedup": round(peer_ms / mine[phase], 2) if comparable else None,
                    "agrees": agrees,
                })  # fmt: skip
    if verbose:
        print(f"Sparse conv on the CPU, KITTI 000000 ({len(idx)} voxels, grid {shape}), median of {repeats}")
        print(f"{'op':<42} {'thr':>3} {'ours ms':>9} {'spconv ms':>10} {'speedup':>8}  agrees")
        for r in rows:
            peer_ms = "" if r["peer_ms"] is None else f"{r['peer_ms']:.1f}"
            ratio = "" if r["speedup"] is None else f"{r['speedup']:.2f}x"
            print(
                f"{r['op']:<42} {r['threads']:>3} {r['ours_ms']:>9.1f} {peer_ms:>10} {ratio:>8}  {r['agrees']}"
            )
        if rows:
            print(f"fwd+bwd peer column: {rows[-1]['peer']}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--spconv-child":
        _spconv_child(sys.argv[2], sys.argv[3])
    else:
        bench_sparse()
