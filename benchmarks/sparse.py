"""Speed of :mod:`perception.ops.sparse` on the CPU against spconv 2.3.8's CPU build, on a real LiDAR frame.

Input: KITTI ``training/velodyne/000000.bin`` voxelized at [0.05, 0.05, 0.1] m over
[0, -40, -3, 70.4, 40, 1] (unique ``floor((p - min) / voxel)`` cells, computed here with numpy),
32 float32 random features a voxel. Cases: ``SubMConv3d`` 32→32 k=3 and ``SparseConv3d`` 32→64
k=3 stride 2 padding 1. Phases, each the median of ``repeats`` runs: rulebook build alone, forward
with the rulebook reused, forward + backward (features, weight, bias) with the rulebook reused.

Peer: spconv's own ops (``ops.get_indice_pairs``, ``ops.indice_conv``; for fwd+bwd its autograd
functions ``functional.indice_subm_conv`` / ``indice_conv`` plus the bias added in torch, as its
modules do on the CPU), pairs reused, in a child process started with ``OMP_NUM_THREADS=1``: its
kernels use a bundled libgomp that ignores ``torch.set_num_threads`` and races with 2 threads, so
1 thread is the only setting where it is right.

**spconv CPU-backward patch** (applied at run time in that child only, never to site-packages):
unpatched, spconv 2.3.8's CPU backward raises "Torch not compiled with CUDA enabled", because
``spconv/pytorch/ops.py::indice_conv_backward`` runs ``stream = get_current_stream()`` — i.e.
``torch.cuda.current_stream().cuda_stream``, imported into ``ops`` from ``spconv.pytorch.cppcore`` —
unconditionally, before its ``if not features.is_cuda`` CPU branch (gather → mm → scatter_add), which
never uses the stream (its forward guards the same call with ``if features.is_cuda``). The patch,
``spconv.pytorch.ops.get_current_stream = lambda: 0`` when ``torch.cuda`` is unavailable, makes the
backward run; its three gradients (features, weight, bias of ``(out * probe).sum()``) are checked
against ours (within 1e-4 of the largest magnitude, float32), and only then do the fwd+bwd rows carry
spconv's fwd+bwd time and a ``speedup``. Were the backward to raise or disagree, those rows fall back
to spconv's forward time with ``speedup`` None and say why in ``peer``. Upstream fix: guard that
call with ``if features.is_cuda`` as ``indice_conv`` does.

Our forward output is checked against spconv's (``agrees``). Called from ``tools/benchmark.py``;
runnable alone with ``python -m benchmarks.sparse``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks import REPO
from benchmarks.timing import time_in_turns
from perception.ops._sparse_kernels import sparse_conv
from perception.ops._sparse_rules import Rulebook, build_strided, build_submanifold

__all__ = ["bench_sparse", "kitti_voxels"]

KITTI_SCAN = REPO / "tests/data/kitti/training/velodyne/000000.bin"
VOXEL = np.array([0.05, 0.05, 0.1])
RANGE = np.array([0.0, -40.0, -3.0, 70.4, 40.0, 1.0])
PATCH_NOTE = "fwd+bwd; backward run via a run-time patch: ops.get_current_stream -> 0 on CPU"
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


def _case_setup(name: str, seed: int = 0):
    c_in, c_out, k, s, p, subm = CASES[name]
    g = torch.Generator().manual_seed(seed)
    weight = (torch.rand(c_out, k, k, k, c_in, generator=g) - 0.5) / np.sqrt(c_in * k**3)
    bias = torch.rand(c_out, generator=g) - 0.5
    return weight, bias, k, s, p, subm


def _ours(name: str, idx: torch.Tensor, shape: list[int], feats: torch.Tensor) -> dict:
    """Our phase functions (``rulebook``, ``fwd``, ``fwd+bwd``; rulebook reused) and results to compare."""
    weight, bias, k, s, p, subm = _case_setup(name)

    def build() -> Rulebook:
        if subm:
            return build_submanifold(idx, shape, 1, (k,) * 3, (1,) * 3)
        return build_strided(idx, shape, 1, (k,) * 3, (s,) * 3, (p,) * 3, (1,) * 3)

    rules = build()
    f, w, b = (t.clone().requires_grad_() for t in (feats, weight, bias))

    def fwd() -> None:
        with torch.no_grad():
            sparse_conv(feats, weight, bias, rules)

    def fwd_bwd() -> None:
        f.grad = w.grad = b.grad = None
        sparse_conv(f, w, b, rules).sum().backward()

    with torch.no_grad():
        out = sparse_conv(feats, weight, bias, rules)
    (sparse_conv(f, w, b, rules) * _probe(rules.out_indices, weight.shape[0])).sum().backward()
    return {
        "phases": {"rulebook": build, "fwd": fwd, "fwd+bwd": fwd_bwd},
        "features": out,
        "indices": rules.out_indices,
        "grad_features": f.grad,
        "grad_weight": w.grad,
        "grad_bias": b.grad,
        "pairs": rules.num_pairs + (rules.num_in if rules.identity_offset >= 0 else 0),
    }


def _patch_spconv_cpu_backward() -> None:
    """Let spconv 2.3.8's CPU backward run (the run-time patch this benchmark applies; see the module doc).

    ``spconv.pytorch.ops.indice_conv_backward`` calls ``get_current_stream()`` (bound in ``ops`` from
    ``spconv.pytorch.cppcore``: ``torch.cuda.current_stream().cuda_stream``) before it branches on
    ``features.is_cuda``; its CPU branch never uses the stream. Rebinding that one name in ``ops`` to
    return the null stream 0 (what the C++ path of ``ops`` itself passes for CPU tensors) on
    CPU-only torch is the whole patch. Only this child process is patched; site-packages is untouched.
    """
    from spconv.pytorch import ops

    if not torch.cuda.is_available():
        ops.get_current_stream = lambda: 0


def _probe(indices: torch.Tensor, channels: int) -> torch.Tensor:
    """A fixed pseudo-random ``d loss / d out`` in ``[-0.5, 0.5)``, a function of each output *site*
    (spconv's strided output rows are in another order than ours), for comparing gradients."""
    i = indices.numpy().astype(np.uint64)
    key = ((i[:, 0] * np.uint64(4096) + i[:, 1]) * np.uint64(4096) + i[:, 2]) * np.uint64(4096) + i[:, 3]
    h = key[:, None] * np.uint64(0x9E3779B97F4A7C15) + np.arange(channels, dtype=np.uint64) * np.uint64(
        0xBF58476D1CE4E5B9
    )
    h ^= h >> np.uint64(31)
    h *= np.uint64(0x94D049BB133111EB)
    return torch.from_numpy((h >> np.uint64(40)).astype(np.float32) / 2**24 - 0.5)


def _spconv_child(in_path: str, out_dir: str) -> None:
    """Child process (``OMP_NUM_THREADS=1``): spconv's rulebook, forward and forward + backward.

    Writes each case's outputs and gradients to ``out_dir``, prints one JSON line (the backward's
    status per case), then serves the parent: for each line ``"<case> <phase>"`` on stdin it runs that
    phase once and prints its wall time in seconds, until stdin closes.
    """
    torch.set_num_threads(1)
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as Fsp
    from spconv.pytorch import ops

    _patch_spconv_cpu_backward()
    data = np.load(in_path)
    idx, shape, feats = (
        torch.from_numpy(data["indices"]),
        data["shape"].tolist(),
        torch.from_numpy(data["features"]),
    )
    status: dict = {}
    phases: dict = {}
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

        conv = Fsp.indice_subm_conv if subm else Fsp.indice_conv  # its autograd functions; bias added
        f, w, b = (t.clone().requires_grad_() for t in (feats, weight, bias))  # as its modules do on CPU

        def fwd_bwd(conv=conv, ip=ip, num=num, n_out=n_out, f=f, w=w, b=b, probe=None):
            f.grad = w.grad = b.grad = None
            out = conv(f, w, ip, num, n_out, ConvAlgo.Native) + b
            (out.sum() if probe is None else (out * probe).sum()).backward()

        phases[j] = {"rulebook": pairs, "fwd": fwd}
        stem = Path(out_dir) / str(j)
        np.save(f"{stem}.features.npy", fwd().numpy())
        np.save(f"{stem}.indices.npy", out_ids.numpy())
        try:
            fwd_bwd(probe=_probe(out_ids, weight.shape[0]))
            for t, tag in ((f, "grad_features"), (w, "grad_weight"), (b, "grad_bias")):
                np.save(f"{stem}.{tag}.npy", t.grad.numpy())
            phases[j]["fwd+bwd"] = fwd_bwd
            status[name] = "ran"
        except Exception as e:  # unpatched, its CPU backward asks for a CUDA stream
            status[name] = f"raises {type(e).__name__}: {e}"[:120]
    print(json.dumps(status), flush=True)
    for line in sys.stdin:
        j, phase = line.split(maxsplit=1)
        fn = phases[int(j)][phase.strip()]
        t0 = time.perf_counter()
        fn()
        print(time.perf_counter() - t0, flush=True)


class _SpconvPeer:
    """spconv in a child process (``OMP_NUM_THREADS=1``) that runs one phase per request, so that its
    runs can take turns with ours (:func:`time_in_turns`); the times are the child's own."""

    def __init__(self, idx: torch.Tensor, shape: list[int], feats: torch.Tensor) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        tmp = Path(self._tmp.name)
        np.savez(tmp / "in.npz", indices=idx.numpy(), shape=np.array(shape), features=feats.numpy())
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.sparse",
            "--spconv-child",
            str(tmp / "in.npz"),
            str(tmp),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self._proc = subprocess.Popen(  # cwd: `-m benchmarks.sparse` resolves from the repository root
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read()
            self.close()
            raise RuntimeError("spconv child failed: " + err[-300:])
        self.bwd = json.loads(line)
        self.results: dict[str, dict] = {}
        for j, name in enumerate(CASES):
            self.results[name] = {}
            for tag in ("features", "indices", "grad_features", "grad_weight", "grad_bias"):
                path = tmp / f"{j}.{tag}.npy"
                if path.exists():
                    self.results[name][tag] = torch.from_numpy(np.load(path))

    def run(self, name: str, phase: str) -> float:
        """Run one phase in the child; its wall time in seconds."""
        self._proc.stdin.write(f"{list(CASES).index(name)} {phase}\n")
        self._proc.stdin.flush()
        return float(self._proc.stdout.readline())

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        self._tmp.cleanup()


def _start_peer(idx: torch.Tensor, shape: list[int], feats: torch.Tensor) -> _SpconvPeer | str:
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        return "spconv not installed"
    try:
        return _SpconvPeer(idx, shape, feats)
    except RuntimeError as e:
        return str(e)


def _timed(fn: Callable[[], object], threads: int, times: list[float]) -> Callable[[], None]:
    """``fn`` at ``threads`` torch threads, its wall time appended to ``times``."""

    def run() -> None:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)

    return run


def _sorted(indices: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    key = ((indices[:, 0].long() * 2048 + indices[:, 1]) * 2048 + indices[:, 2]) * 2048 + indices[:, 3]
    order = torch.argsort(key)
    return indices[order], values[order]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    """float32 results of differently ordered sums: max |a - b| within ``rel`` of b's largest magnitude."""
    return a.shape == b.shape and float((a - b).abs().max()) <= rel * max(1.0, float(b.abs().max()))


def bench_sparse(repeats: int = 5, threads: tuple[int, ...] = (1, 2), verbose: bool = True) -> list[dict]:
    """Our CPU sparse convolutions at each thread count vs spconv's CPU build at one thread.

    Returns one dict per (case, phase, threads): ``op`` (case and phase), ``input`` (voxel count),
    ``threads``, ``ours_ms`` (median), ``peer``, ``peer_ms`` (spconv at 1 thread; None if unavailable),
    ``speedup`` (peer_ms / ours_ms where the phases are comparable, else None) and ``agrees``
    (our forward output equals spconv's: same index set, values within 1e-4; on fwd+bwd rows also
    the three gradients of ``(out * probe).sum()``, within 1e-4 of the largest magnitude).
    """
    idx, shape = kitti_voxels()
    feats = torch.randn(len(idx), 32, generator=torch.Generator().manual_seed(0))
    old = torch.get_num_threads()
    peer = _start_peer(idx, shape, feats)
    ours: dict[str, dict] = {}
    ms: dict[tuple, float] = {}  # (name, phase, threads or "peer") -> median ms
    try:
        for name in CASES:
            torch.set_num_threads(threads[0])
            ours[name] = _ours(name, idx, shape, feats)
            for phase, fn in ours[name]["phases"].items():
                times: dict = {t: [] for t in threads}
                fns = [_timed(fn, t, times[t]) for t in threads]
                if isinstance(peer, _SpconvPeer) and (phase != "fwd+bwd" or peer.bwd[name] == "ran"):
                    times["peer"] = []
                    fns.append(
                        lambda name=name, phase=phase, out=times["peer"]: out.append(peer.run(name, phase))
                    )
                time_in_turns(fns, repeats)  # each run appends its own time; the first is the warm-up
                ms |= {(name, phase, t): statistics.median(v[1:]) * 1e3 for t, v in times.items()}
    finally:
        torch.set_num_threads(old)
        if isinstance(peer, _SpconvPeer):
            peer.close()
    rows: list[dict] = []
    for name in CASES:
        mine = ours[name]
        theirs = peer.results[name] if isinstance(peer, _SpconvPeer) else None
        agrees = grads_agree = None
        if theirs is not None:
            (a_idx, a_val), (b_idx, b_val) = (
                _sorted(mine["indices"], mine["features"]),
                _sorted(theirs["indices"], theirs["features"]),
            )
            agrees = bool(torch.equal(a_idx, b_idx) and torch.allclose(a_val, b_val, atol=1e-4, rtol=1e-4))
            if peer.bwd[name] == "ran":
                grads_agree = agrees and all(
                    _close(mine[tag], theirs[tag]) for tag in ("grad_features", "grad_weight", "grad_bias")
                )
        for phase in ("rulebook", "fwd", "fwd+bwd"):
            for t in threads:
                label, peer_ms, row_agrees = "spconv 2.3.8 CPU, 1 thread", None, agrees
                if theirs is not None and phase != "fwd+bwd":
                    peer_ms = ms[name, phase, "peer"]
                elif theirs is not None and grads_agree:
                    label += f" ({PATCH_NOTE})"
                    peer_ms, row_agrees = ms[name, phase, "peer"], grads_agree
                elif theirs is not None:  # its backward did not run, or its gradients differ from ours
                    ran = peer.bwd[name] == "ran"
                    label += f" (fwd only; {'its gradients differ' if ran else 'backward ' + peer.bwd[name]})"
                    peer_ms, row_agrees = ms[name, "fwd", "peer"], grads_agree
                comparable = peer_ms is not None and (phase != "fwd+bwd" or bool(grads_agree))
                rows.append({
                    "op": f"{name} {phase}",
                    "input": f"KITTI 000000, {len(idx)} voxels, {mine['pairs']} pairs",
                    "threads": t,
                    "ours_ms": round(ms[name, phase, t], 2),
                    "peer": label if theirs is not None else str(peer),
                    "peer_ms": None if peer_ms is None else round(peer_ms, 2),
                    "speedup": round(peer_ms / ms[name, phase, t], 2) if comparable else None,
                    "agrees": row_agrees,
                })  # fmt: skip
    if verbose:
        print(
            f"Sparse conv on the CPU, KITTI 000000 ({len(idx)} voxels, grid {shape}), median of {repeats}, "
            "ours and spconv's runs taking turns"
        )
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
