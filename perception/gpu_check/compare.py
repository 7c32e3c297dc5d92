"""Comparing what one check computed on two devices, output by output, by a rule stated per output.

A check's run returns named outputs; each name has a :class:`Rule`:

- ``exact``: discrete outputs (Hilbert codes, voxel coordinates, point counts, gather indices): the
  same shape and dtype kind, every element equal.
- ``close``: floating outputs. The difference is ``max|a - b| / max(max|a|, floor)``, relative to the
  reference's largest magnitude; it must be finite and at most the tolerance. A ``dict`` of tensors
  (a model's gradients) is measured tensor by tensor, each on its own scale but never on a scale below
  ``floor_fraction`` × the largest magnitude in the whole dict (a bias in front of a BatchNorm has a
  gradient that is rounding noise on both devices, and noise over noise is not a mismatch); the worst
  tensor counts and is named.
- ``kept_boxes``: rotated NMS results (:class:`KeptBoxes`). With near-tied scores or an IoU within
  rounding of the threshold the two devices may keep different members of a cluster, so the indices
  are not compared: the kept boxes of each side are matched one to one to the other side's by BEV
  IoU, and every kept box must find a partner with IoU ≥ the rule's tolerance.

Everything here is device-agnostic: the outputs are CPU tensors whichever device made them, and the
comparison is tested on CPU-versus-CPU runs (``tests/tools/test_gpu_check.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from perception.ops.iou3d import boxes_iou_bev

__all__ = ["Comparison", "KeptBoxes", "Rule", "compare_outputs", "perturb_outputs"]

TINY = 1e-30
"""The smallest scale a relative difference is taken on (an all-zero reference)."""

RuleKind = Literal["exact", "close", "kept_boxes"]


@dataclass(frozen=True)
class Rule:
    """How one output is compared (see the module docstring).

    Attributes:
        kind: ``exact``, ``close`` or ``kept_boxes``.
        tolerance: ``close``: the largest relative difference allowed; ``kept_boxes``: the smallest
            BEV IoU of a matched pair; ``exact``: 0.
        why: the reason for the tolerance, in words (shown in docs/gpu_check.md and the JSON).
        floor_fraction: ``close`` on a dict of tensors: no tensor is measured on a scale below this
            fraction of the dict's largest magnitude.
    """

    kind: RuleKind
    tolerance: float = 0.0
    why: str = ""
    floor_fraction: float = 1e-3


@dataclass(frozen=True)
class KeptBoxes:
    """An NMS result: ``boxes`` (N, 7) float ``[x, y, z, l, w, h, yaw]`` (lidar frame, metres) and the
    indices it kept, ``keep`` (S,) int64 into ``boxes``."""

    boxes: torch.Tensor
    keep: torch.Tensor


@dataclass(frozen=True)
class Comparison:
    """One output of one check, compared.

    Attributes:
        output: the output's name.
        rule: the rule's kind.
        tolerance: the rule's tolerance.
        max_abs: ``exact`` / ``close``: the largest absolute difference; ``kept_boxes``: the number of
            kept boxes without a partner. None where the outputs could not be paired (shapes differ).
        max_rel: ``close``: the relative difference the tolerance bounds; ``exact``: ``max_abs`` over
            the reference's largest magnitude; ``kept_boxes``: 1 − the smallest matched IoU.
        passed: whether the rule holds.
        note: what was seen (the worst tensor of a dict, differing indices, a shape mismatch).
    """

    output: str
    rule: str
    tolerance: float
    max_abs: float | None
    max_rel: float | None
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        def number(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "output": self.output,
            "rule": self.rule,
            "tolerance": self.tolerance,
            "max_abs": number(self.max_abs),
            "max_rel": number(self.max_rel),
            "passed": self.passed,
            "note": self.note,
        }


def _as_cpu(x: torch.Tensor) -> torch.Tensor:
    return x.detach().cpu()


def _exact(name: str, rule: Rule, a: torch.Tensor, b: torch.Tensor) -> Comparison:
    a, b = _as_cpu(a), _as_cpu(b)
    if a.shape != b.shape:
        note = f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
        return Comparison(name, rule.kind, rule.tolerance, None, None, False, note)
    if a.numel() == 0:
        return Comparison(name, rule.kind, rule.tolerance, 0.0, 0.0, True)
    if a.is_floating_point() or b.is_floating_point():
        da, db = a.double(), b.double()
    else:
        da, db = a.long(), b.long()
    diff = (da - db).abs()
    differing = int((diff != 0).sum())
    max_abs = float(diff.max())
    max_rel = max_abs / max(float(da.abs().max()), TINY)
    note = f"{differing} of {a.numel()} elements differ" if differing else ""
    return Comparison(name, rule.kind, rule.tolerance, max_abs, max_rel, differing == 0, note)


def _close(name: str, rule: Rule, a: Any, b: Any) -> Comparison:
    a_parts = a if isinstance(a, dict) else {"": a}
    b_parts = b if isinstance(b, dict) else {"": b}
    if set(a_parts) != set(b_parts):
        only = sorted(set(a_parts) ^ set(b_parts))
        note = f"{len(only)} tensors on one side only: {', '.join(only[:3])}"
        return Comparison(name, rule.kind, rule.tolerance, None, None, False, note)
    for key in a_parts:
        if a_parts[key].shape != b_parts[key].shape:
            note = f"{key or name}: shapes differ: {tuple(a_parts[key].shape)} vs {tuple(b_parts[key].shape)}"
            return Comparison(name, rule.kind, rule.tolerance, None, None, False, note)
    biggest = max(
        (float(_as_cpu(t).double().abs().max()) for t in a_parts.values() if t.numel()), default=0.0
    )
    floor = rule.floor_fraction * biggest if isinstance(a, dict) else 0.0
    worst_abs, worst_rel, worst_key, bad = 0.0, 0.0, "", []
    for key in a_parts:
        ta, tb = _as_cpu(a_parts[key]).double(), _as_cpu(b_parts[key]).double()
        if ta.numel() == 0:
            continue
        if not (bool(torch.isfinite(ta).all()) and bool(torch.isfinite(tb).all())):
            bad.append(key or name)
            continue
        max_abs = float((ta - tb).abs().max())
        rel = max_abs / max(float(ta.abs().max()), floor, TINY)
        worst_abs = max(worst_abs, max_abs)
        if rel >= worst_rel:
            worst_rel, worst_key = rel, key
    if bad:
        note = f"non-finite values in {', '.join(bad[:3])}"
        return Comparison(name, rule.kind, rule.tolerance, math.inf, math.inf, False, note)
    note = f"worst: {worst_key}" if isinstance(a, dict) and worst_key else ""
    passed = worst_rel <= rule.tolerance
    return Comparison(name, rule.kind, rule.tolerance, worst_abs, worst_rel, passed, note)


def _kept_boxes(name: str, rule: Rule, a: KeptBoxes, b: KeptBoxes) -> Comparison:
    ka, kb = _as_cpu(a.keep).long(), _as_cpu(b.keep).long()
    if ka.shape == kb.shape and bool(torch.equal(ka, kb)):
        return Comparison(name, rule.kind, rule.tolerance, 0.0, 0.0, True, f"{len(ka)} kept, same indices")
    boxes_a = _as_cpu(a.boxes).double().numpy()[ka.numpy()]
    boxes_b = _as_cpu(b.boxes).double().numpy()[kb.numpy()]
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        unmatched = len(boxes_a) + len(boxes_b)
        note = f"kept {len(boxes_a)} vs {len(boxes_b)}"
        return Comparison(name, rule.kind, rule.tolerance, float(unmatched), 1.0, False, note)
    iou = np.asarray(boxes_iou_bev(boxes_a, boxes_b))
    rows, cols = linear_sum_assignment(-iou)
    good = iou[rows, cols] >= rule.tolerance
    matched = int(good.sum())
    unmatched = (len(boxes_a) - matched) + (len(boxes_b) - matched)
    worst = 1.0 - float(iou[rows, cols][good].min()) if matched else 1.0
    differing = len(set(ka.tolist()) ^ set(kb.tolist()))
    note = (
        f"kept {len(boxes_a)} vs {len(boxes_b)}; {differing} indices differ; "
        f"{unmatched} boxes without a partner of IoU >= {rule.tolerance:g}"
    )
    return Comparison(name, rule.kind, rule.tolerance, float(unmatched), worst, unmatched == 0, note)


def compare_outputs(
    expected: dict[str, Any], got: dict[str, Any], rules: dict[str, Rule]
) -> list[Comparison]:
    """Compare two runs of one check, output by output.

    Args:
        expected: the reference run's outputs (the CPU's): tensors, dicts of tensors (``close``) or
            :class:`KeptBoxes`, on any device.
        got: the other run's outputs, the same names.
        rules: the rule of every output name.

    Returns:
        One :class:`Comparison` per rule, in the rules' order; an output missing on either side fails.
    """
    out = []
    for name, rule in rules.items():
        if name not in expected or name not in got:
            side = "reference" if name not in expected else "second"
            out.append(
                Comparison(name, rule.kind, rule.tolerance, None, None, False, f"missing in the {side} run")
            )
            continue
        a, b = expected[name], got[name]
        if rule.kind == "exact":
            out.append(_exact(name, rule, a, b))
        elif rule.kind == "close":
            out.append(_close(name, rule, a, b))
        elif rule.kind == "kept_boxes":
            out.append(_kept_boxes(name, rule, a, b))
        else:
            raise ValueError(f"unknown rule kind {rule.kind!r}")
    return out


def _perturb_tensor(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().clone()
    if t.numel() == 0:
        return t
    flat = t.view(-1)
    if t.is_floating_point():
        flat[0] += 0.05 * max(float(t.abs().max()), 1.0)
    else:
        flat[0] += 1
    return t


def perturb_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``outputs`` with every output broken enough to fail its rule (for testing the check
    itself): element 0 of each tensor moved by 5 % of the tensor's scale (or by 1 for integers), every
    tensor of a dict, and the last kept box of an NMS result dropped."""
    out: dict[str, Any] = {}
    for name, value in outputs.items():
        if isinstance(value, KeptBoxes):
            out[name] = KeptBoxes(value.boxes, value.keep[:-1])
        elif isinstance(value, dict):
            out[name] = {k: _perturb_tensor(v) for k, v in value.items()}
        else:
            out[name] = _perturb_tensor(value)
    return out
