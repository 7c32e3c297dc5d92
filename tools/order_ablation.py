#!/usr/bin/env python
"""Point2Point's order ablation: train one segmentation config with each sequence order and seed,
print mIoU mean ± spread per order (``benchmarks/order_ablation.py`` does the work).

    python tools/order_ablation.py [--out outputs/order_ablation] [--orders hilbert z random]
        [--seeds 0 1 2] [--config p2p_seg_synthetic.yaml] [-- TRAIN OVERRIDES ...]

Everything after ``--`` goes to every ``tools/train.py`` run (e.g. ``--trainer.max_epochs 2``). Finished
runs are kept in ``OUT/<order>-seed<seed>/result.json`` and not repeated; the table is also written to
``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.order_ablation import run_ablation, summarise
from benchmarks.runs import split_overrides


def main(argv: list[str] | None = None) -> int:
    argv, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python tools/order_ablation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/order_ablation"))
    p.add_argument("--orders", nargs="+", default=["hilbert", "z", "random"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--config", default="p2p_seg_synthetic.yaml")
    args = p.parse_args(argv)
    results = run_ablation(args.out, args.orders, args.seeds, args.config, overrides)
    rows = summarise(results)
    print(f"\n{'order':<14} {'runs':>4} {'mIoU mean ± std':>16} {'min–max':>13}")
    for r in rows:
        spread = f"{r['mIoU_min']:.1f}–{r['mIoU_max']:.1f}"
        print(f"{r['order']:<14} {r['runs']:>4} {r['mIoU_mean']:>9.1f} ± {r['mIoU_std']:<4.1f} {spread:>13}")
    classes = list(rows[0]["IoU_mean"]) if rows else []
    if classes:
        print("\nper-class IoU (mean over seeds)")
        print(f"{'order':<14} " + " ".join(f"{c[:9]:>9}" for c in classes))
        for r in rows:
            print(f"{r['order']:<14} " + " ".join(f"{r['IoU_mean'][c]:>9.1f}" for c in classes))
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
