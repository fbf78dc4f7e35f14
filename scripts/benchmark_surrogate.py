"""Benchmark the elastic-moduli surrogate: train the ensemble, score it on the held-out split.

Prints a markdown table (ensemble vs kNN baseline test MAE in log10 GPa, Spearman of ensemble std
vs |error|, training wall time, inference throughput) and writes a parity plot.

    python scripts/benchmark_surrogate.py --out checkpoints/surrogate-elastic

With --evaluate-only the checkpoint in --out is scored on the test split recorded in its card.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from invdesign.data import Split, load_dataset, shared_data_dir
from invdesign.data.examples import REFERENCES
from invdesign.plots import parity
from invdesign.surrogate import Surrogate, to_model_space
from invdesign.train.pipeline import (
    SurrogateRunConfig,
    evaluate_predictions,
    knn_baseline_metrics,
    save_run,
    train_surrogate,
)
from invdesign.train.surrogate import TrainConfig

TARGETS = ("bulk_modulus_vrh", "shear_modulus_vrh")


def _default_data() -> Path | None:
    root = shared_data_dir()
    return root / "mp_binary_elasticity" / "mp-binary-pbe-elasticity-dev.json.gz" if root else None


def throughput(surrogate: Surrogate, structures, repeats: int = 3) -> float:
    """Structures per second for `predict` (featurisation + ensemble + derived properties)."""
    surrogate.predict(structures[:64])  # warm-up
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        surrogate.predict(structures)
        best = min(best, time.perf_counter() - start)
    return len(structures) / best


def reference_table(surrogate: Surrogate) -> str:
    """Markdown table: predicted K and Debye-Grueneisen alpha vs experiment for the reference
    crystals (none of them is in the training set; the elements are not binaries at all)."""
    names = [ref.name for ref in REFERENCES]
    pred = surrogate.predict([ref.structure() for ref in REFERENCES], names)
    lines = ["| crystal | K pred (GPa) | K std | K exp | alpha pred (1e-6/K) | alpha exp |",
             "|---|---|---|---|---|---|"]
    for ref, (_, row) in zip(REFERENCES, pred.iterrows(), strict=True):
        lines.append(f"| {ref.name} | {row['bulk_modulus_vrh']:.0f} | "
                     f"{row['bulk_modulus_vrh_std']:.0f} | {ref.bulk_modulus} | "
                     f"{row['thermal_expansion'] * 1e6:.1f} | {ref.thermal_expansion} |")
    k_pred = pred["bulk_modulus_vrh"].to_numpy()
    k_exp = np.array([ref.bulk_modulus for ref in REFERENCES], dtype=float)
    mae_log = float(np.mean(np.abs(np.log10(k_pred) - np.log10(k_exp))))
    lines.append(f"\nreference crystals: MAE log10 K = {mae_log:.3f} vs experiment")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=_default_data())
    parser.add_argument("--out", type=Path, default=Path("runs/surrogate-elastic"))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=["composition", "random"], default="composition")
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.data is None:
        raise SystemExit("no --data given and ../shared/data not found")
    torch.set_num_threads(2)

    dataset = load_dataset(args.data, properties=list(TARGETS))
    if args.evaluate_only:
        surrogate = Surrogate.load(args.out)
        split = Split.from_dict(surrogate.meta["split"])
        train_seconds = surrogate.meta["metrics"]["train_seconds"]
    else:
        config = SurrogateRunConfig(targets=TARGETS, split=args.split, seed=args.seed,
                                    n_members=args.members, workers=args.workers,
                                    train=TrainConfig(epochs=args.epochs, seed=args.seed))
        run = train_surrogate(args.data, config, cache_dir=Path(".cache/graphs"))
        save_run(run, args.out)
        surrogate, split, train_seconds = run.surrogate, run.split, run.metrics["train_seconds"]

    y = to_model_space(TARGETS, dataset.targets(TARGETS))
    test_structures = [dataset[int(i)].structure for i in split.test]
    members = surrogate.predict_members(surrogate.featurize(test_structures), physical=False)
    test = evaluate_predictions(TARGETS, members, y[split.test])
    knn = knn_baseline_metrics(dataset, split, y, TARGETS)
    parity(y[split.test], members.mean(0), members.std(0), ["log10 K", "log10 G"],
           args.out / "parity.png")
    small = [s for s in dataset.structures if len(s) <= 20][:2000]
    rate = throughput(surrogate, small)

    rows = [f"| {name} | {test[name]['mae']:.4f} | {knn[name]:.4f} | "
            f"{100 * (1 - test[name]['mae'] / knn[name]):.0f} % | "
            f"{test[name]['spearman_std_vs_abs_error']:.2f} |" for name in TARGETS]
    print(f"\n## Surrogate benchmark ({date.today()}, {args.split} split seed {args.seed}: "
          f"train/val/test = {len(split.train)}/{len(split.val)}/{len(split.test)})\n")
    print("| target | ensemble MAE (log10 GPa) | kNN MAE | reduction | Spearman(std, |err|) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nensemble members: {surrogate.n_members}; training wall time: "
          f"{train_seconds / 60:.1f} min; inference: {rate:.0f} structures/s "
          f"({len(small)} cells of <= 20 atoms, featurisation included, "
          f"{torch.get_num_threads()} threads)")
    print("\n" + reference_table(surrogate))
    summary = {"date": str(date.today()), "test": test, "knn": knn, "train_seconds": train_seconds,
               "structures_per_second": rate, "split_sizes": [len(split.train), len(split.val),
                                                              len(split.test)]}
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
