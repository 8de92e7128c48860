"""Starter weights vs random initialisation on real handwritten digits with few labels.

For each labels-per-class budget and scenario, trains from both starting points over several
seeds (different labelled subsets) and prints the mean validation accuracy. The validation set
is the same 20% of every class each time.

    .venv/bin/python bench/bench_starter.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.train.data import digits  # noqa: E402
from core.train.transfer import TrainConfig, fit  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    data = digits(32)
    print(f"{'labels/class':>12} {'scenario':>9} {'random':>8} {'starter':>8}")
    for lpc in (2, 5, 10, 20):
        for scenario in ("3", "1", "finetune"):
            accs = {}
            for w in ("random", "starter"):
                vals = []
                for seed in range(a.seeds):
                    cfg = TrainConfig(dataset="digits", arch="resnet18", weights=w, scenario=scenario,
                                      labels_per_class=lpc, epochs=10 if scenario != "3" else 1, batch_size=32,
                                      lr=3e-3 if scenario != "finetune" else 1e-3, lr_body=1e-4,
                                      augment=scenario == "finetune", seed=seed)
                    vals.append(fit(cfg, data).val_acc)
                accs[w] = statistics.mean(vals)
            print(f"{lpc:>12} {scenario:>9} {accs['random']:>8.1%} {accs['starter']:>8.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
