"""Learning curve of the elastic-moduli surrogate: held-out MAE against training-set size.

Trains the shipped configuration on seeded subsets of the composition split's training part
(validation and test parts unchanged), fits MAE = a * n^-b per target and says how many training
crystals the fit needs to reach a target MAE. Answers "is the G error a model or a data limit?".

    python scripts/surrogate_learning_curve.py --fractions 0.125 0.25 0.5 1 --members 2
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path

import numpy as np

from invdesign.data import shared_mp_elasticity
from invdesign.featurize.graph import GraphConfig
from invdesign.train.pipeline import SurrogateRunConfig, train_surrogate

SHORT = {"bulk_modulus_vrh": "K", "shear_modulus_vrh": "G"}
GOALS = {"bulk_modulus_vrh": 0.065, "shear_modulus_vrh": 0.090}  # issue #2's targets


def power_law(n: np.ndarray, mae: np.ndarray) -> tuple[float, float]:
    """(a, b) of the least-squares fit log MAE = log a - b log n."""
    slope, intercept = np.polyfit(np.log(n), np.log(mae), 1)
    return float(np.exp(intercept)), float(-slope)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=shared_mp_elasticity())
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--angular", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/learning_curve.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows = []
    for fraction in sorted(args.fractions):
        config = SurrogateRunConfig(seed=args.seed, n_members=args.members, workers=args.workers,
                                    train_fraction=fraction,
                                    graph=GraphConfig(angular=args.angular))
        run = train_surrogate(args.data, config, cache_dir=Path(".cache/graphs"))
        test = run.metrics["test"]
        rows.append({"fraction": fraction, "n_train": len(run.split.train),
                     "train_seconds": run.metrics["train_seconds"],
                     **{t: test[t]["mae"] for t in SHORT},
                     **{f"{t}_knn": run.metrics["knn_baseline_test_mae"][t] for t in SHORT}})
        print(f"fraction {fraction}: {rows[-1]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))

    n = np.array([r["n_train"] for r in rows], dtype=float)
    print(f"\n## Surrogate learning curve ({date.today()}, {args.data.name}, composition split "
          f"seed {args.seed}, {args.members}-member ensembles, same val/test parts)\n")
    print("| training crystals | " + " | ".join(f"{s} MAE (log10) | {s} kNN" for s in
                                               SHORT.values()) + " | train min |")
    print("|---" * (2 + 2 * len(SHORT)) + "|")
    for r in rows:
        print(f"| {r['n_train']} | " + " | ".join(f"{r[t]:.4f} | {r[t + '_knn']:.4f}"
                                                 for t in SHORT)
              + f" | {r['train_seconds'] / 60:.1f} |")
    if len(rows) >= 2:
        print()
        for t, short in SHORT.items():
            a, b = power_law(n, np.array([r[t] for r in rows]))
            need = (a / GOALS[t]) ** (1 / b)
            print(f"{short}: MAE = {a:.3f} n^-{b:.3f}; {2 ** -b:.3f}x per doubling of the data; "
                  f"MAE {GOALS[t]} at about {need:,.0f} training crystals "
                  f"({need / n.max():.1f}x the largest run)")


if __name__ == "__main__":
    main()
