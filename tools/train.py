#!/usr/bin/env python
"""Train a detector from a config: ``python tools/train.py --config pvt_synthetic.yaml [--section.key value ...]``.

A bare config name is looked up in ``configs/``; every LightningCLI override works
(``--trainer.max_epochs 5``, ``--data.batch_size 8``, ``--model.lr 1e-3``). ``fit`` is the default
subcommand; ``validate`` and ``predict`` work too (``python tools/train.py validate --config ... --ckpt_path ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.cli import main

if __name__ == "__main__":
    main()
