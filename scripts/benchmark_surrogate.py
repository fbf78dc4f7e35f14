"""Benchmark the elastic-moduli surrogate: train the ensemble, score it on the held-out split.

Prints a markdown table (ensemble vs kNN baseline test MAE in log10 GPa, Spearman of ensemble std
vs |error|, training wall time, inference throughput) and writes a parity plot.

    python scripts/benchmark_surrogate.py --out checkpoints/surrogate-elastic

With --evaluate-only the checkpoint in --out is scored on the test split recorded in its card;
`--record-domain` also writes the applicability domain of its training part into the card
(checkpoints trained before cards carried one). The test crystals are scored inside and outside
that domain separately: `invdesign predict` flags the rows outside it.

With --labels (an oracle label table from `invdesign label`) the ensemble also learns the
oracle's thermal expansion (`thermal_expansion_oracle`) where the table has it, by default
transferred from the shipped K/G checkpoint with frozen convolutions; the same composition
split applies, so its alpha test rows are the labelled crystals of the test part:

    python scripts/benchmark_surrogate.py --out checkpoints/surrogate-elastic \
        --labels checkpoints/oracle-labels/mp-binary-chgnet.csv --init-from surrogate-elastic \
        --freeze-conv --epochs 60 --patience 20
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from invdesign.data import Split, read_labels, shared_mp_elasticity
from invdesign.data.examples import REFERENCES
from invdesign.featurize.graph import GraphConfig
from invdesign.oracle import LABEL_PROPERTIES
from invdesign.plots import parity
from invdesign.surrogate import Surrogate, to_model_space, to_physical
from invdesign.train.pipeline import (
    SurrogateRunConfig,
    evaluate_predictions,
    knn_baseline_metrics,
    load_training_data,
    save_run,
    train_surrogate,
    training_domain,
)
from invdesign.train.surrogate import TrainConfig

TARGETS = ("bulk_modulus_vrh", "shear_modulus_vrh")
ALPHA_ORACLE = "thermal_expansion_oracle"
SHORT = {"bulk_modulus_vrh": "K", "shear_modulus_vrh": "G", ALPHA_ORACLE: "alpha_oracle"}


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
    crystals (the elements and MgO are in no MP binary split; NaCl, SiC, TiC, GaAs and Al2O3
    are in the mp_binary_elasticity data, so they test alpha, not held-out K)."""
    names = [ref.name for ref in REFERENCES]
    pred = surrogate.predict([ref.structure() for ref in REFERENCES], names)
    learned = ALPHA_ORACLE in surrogate.targets
    extra = " learned alpha_oracle (1e-6/K) |" if learned else ""
    lines = ["| crystal | K pred (GPa) | K std | K exp | alpha pred (1e-6/K) |" + extra
             + " alpha exp |", "|---|---|---|---|---|" + ("---|" if learned else "") + "---|"]
    for ref, (_, row) in zip(REFERENCES, pred.iterrows(), strict=True):
        cell = f" {row[ALPHA_ORACLE] * 1e6:.1f} |" if learned else ""
        lines.append(f"| {ref.name} | {row['bulk_modulus_vrh']:.0f} | "
                     f"{row['bulk_modulus_vrh_std']:.0f} | {ref.bulk_modulus} | "
                     f"{row['thermal_expansion'] * 1e6:.1f} |{cell} {ref.thermal_expansion} |")
    k_pred = pred["bulk_modulus_vrh"].to_numpy()
    k_exp = np.array([ref.bulk_modulus for ref in REFERENCES], dtype=float)
    a_exp = np.array([ref.thermal_expansion for ref in REFERENCES], dtype=float) * 1e-6
    mae_log = float(np.mean(np.abs(np.log10(k_pred) - np.log10(k_exp))))
    lines.append(f"\nreference crystals: MAE log10 K = {mae_log:.3f} vs experiment")
    for column in ("thermal_expansion", ALPHA_ORACLE) if learned else ("thermal_expansion",):
        ratio = pred[column].to_numpy() / a_exp
        within = int(np.sum((ratio >= 0.5) & (ratio <= 2)))
        rho = spearmanr(pred[column], a_exp).statistic
        lines.append(f"{column}: within 2x of experiment {within}/{len(ratio)}, "
                     f"Spearman {rho:.2f}")
    return "\n".join(lines)


def alpha_agreement(surrogate: Surrogate, structures, alpha_oracle: np.ndarray) -> dict:
    """Learned and Debye-Grueneisen alpha against the oracle's alpha on labelled crystals."""
    pred = surrogate.predict(structures)
    truth = np.log10(alpha_oracle)
    out = {"n": len(structures)}
    for column in ("thermal_expansion", ALPHA_ORACLE):
        if column in pred:
            log_pred = np.log10(pred[column].to_numpy())
            out[column] = {"mae_log10": float(np.mean(np.abs(log_pred - truth))),
                           "spearman": float(spearmanr(log_pred, truth).statistic)}
    return out


def domain_errors(surrogate: Surrogate, structures: list, members: np.ndarray,
                  truth: np.ndarray) -> dict | None:
    """Test MAE (model space) inside and outside the checkpoint's applicability domain, and
    the commonest reasons for lying outside; None when the card records no domain."""
    domain = surrogate.domain
    if domain is None:
        return None
    point = members.mean(0)
    physical = to_physical(surrogate.targets, point)
    checked = domain.assess([s.composition.reduced_formula for s in structures],
                            {t: physical[:, j] for j, t in enumerate(surrogate.targets)})
    inside = checked["in_domain"].to_numpy(dtype=bool)
    mae = {}
    for j, name in enumerate(surrogate.targets):
        err = np.abs(point[:, j] - truth[:, j])
        have = np.isfinite(err)
        mae[name] = {part: float(np.mean(err[have & mask])) if (have & mask).any() else None
                     for part, mask in (("inside", inside), ("outside", ~inside))}
    reasons = Counter(re.sub(r"\d[\d.e+-]*", "#", note)  # numbers out: reasons by kind
                      for notes in checked["domain_note"] if notes for note in notes.split("; "))
    return {"n": len(inside), "inside": int(inside.sum()), "mae": mae,
            "reasons": reasons.most_common()}


def error_breakdown(structures: list, members: np.ndarray, truth: np.ndarray,
                    targets: list[str]) -> list[dict]:
    """Test MAE (model space) of K and G by chemistry (all metals or not) and by DFT G range:
    where the surrogate's error bars hold and where they do not."""
    k, g = targets.index("bulk_modulus_vrh"), targets.index("shear_modulus_vrh")
    metal = np.array([all(el.is_metal for el in s.composition.elements) for s in structures])
    shear = 10.0 ** truth[:, g]
    groups = {"intermetallics (all metals)": metal, "with a non-metal": ~metal,
              "DFT G < 30 GPa": shear < 30, "DFT G 30-80 GPa": (shear >= 30) & (shear < 80),
              "DFT G >= 80 GPa": shear >= 80}
    err = np.abs(members.mean(0) - truth)
    return [{"group": name, "n": int(mask.sum()),
             "K": float(np.nanmean(err[mask, k])), "G": float(np.nanmean(err[mask, g]))}
            for name, mask in groups.items() if mask.any()]


def _fmt(mae: float | None) -> str:
    """An MAE to four decimals, or 'none' for a part with no crystals."""
    return "none" if mae is None else f"{mae:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=shared_mp_elasticity())
    parser.add_argument("--out", type=Path, default=Path("runs/surrogate-elastic"))
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=["composition", "random"], default="composition")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--labels", type=Path, default=None,
                        help="oracle label table: also learn thermal_expansion_oracle")
    parser.add_argument("--init-from", default=None, help="checkpoint to transfer from")
    parser.add_argument("--freeze-conv", action="store_true")
    parser.add_argument("--patience", type=int, default=40)
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="train on a seeded subset of the training part (learning curve)")
    parser.add_argument("--angular", type=int, default=0,
                        help="bond-angle descriptor Gaussians per edge (0: distances only)")
    parser.add_argument("--record-domain", action="store_true",
                        help="with --evaluate-only: write the training part's applicability "
                             "domain into the checkpoint's card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.data is None:
        raise SystemExit("no --data given and ../shared/data not found")
    torch.set_num_threads(2)

    if args.evaluate_only:
        surrogate = Surrogate.load(args.out)
        targets = tuple(surrogate.targets)
        split = Split.from_dict(surrogate.meta["split"])
        train_seconds = surrogate.meta["metrics"]["train_seconds"]
        label_path = args.labels or surrogate.meta["data"].get("labels", {}).get("path")
    else:
        targets = TARGETS + ((ALPHA_ORACLE,) if args.labels else ())
        label_path = args.labels
    labels = None if label_path is None else read_labels(
        label_path, LABEL_PROPERTIES, positive=tuple(LABEL_PROPERTIES.values()))
    config = SurrogateRunConfig(
        targets=targets, split=args.split, seed=args.seed, n_members=args.members,
        graph=GraphConfig(angular=args.angular), train_fraction=args.train_fraction,
        workers=args.workers, train=TrainConfig(epochs=args.epochs, patience=args.patience,
                                                seed=args.seed,
                                                freeze_convolutions=args.freeze_conv))
    dataset = load_training_data(args.data, config, labels)
    if not args.evaluate_only:
        init = Surrogate.load(args.init_from) if args.init_from else None
        run = train_surrogate(args.data, config, init_from=init, labels=labels,
                              cache_dir=Path(".cache/graphs"))
        save_run(run, args.out)
        surrogate, split, train_seconds = run.surrogate, run.split, run.metrics["train_seconds"]

    if args.evaluate_only and args.record_domain:
        surrogate.meta["domain"] = training_domain(dataset, split, targets).to_dict()
        surrogate.save(args.out)
    y = to_model_space(targets, dataset.targets(targets))
    test_structures = [dataset[int(i)].structure for i in split.test]
    members = surrogate.predict_members(surrogate.featurize(test_structures), physical=False)
    test = evaluate_predictions(targets, members, y[split.test])
    by_domain = domain_errors(surrogate, test_structures, members, y[split.test])
    breakdown = (error_breakdown(test_structures, members, y[split.test], list(targets))
                 if {"bulk_modulus_vrh", "shear_modulus_vrh"} <= set(targets) else [])
    knn = knn_baseline_metrics(dataset, split, y, targets)
    parity(y[split.test], members.mean(0), members.std(0),
           [f"log10 {SHORT.get(t, t)}" for t in targets], args.out / "parity.png",
           unit="log10(GPa) or log10(1/K)" if ALPHA_ORACLE in targets else "log10(GPa)")
    small = [s for s in dataset.structures if len(s) <= 20][:2000]
    rate = throughput(surrogate, small)

    rows = [f"| {name} | {test[name]['mae']:.4f} | {knn[name]:.4f} | "
            f"{100 * (1 - test[name]['mae'] / knn[name]):.0f} % | "
            f"{test[name]['spearman_std_vs_abs_error']:.2f} | "
            f"{int(np.isfinite(y[split.test, j]).sum())} |" for j, name in enumerate(targets)]
    print(f"\n## Surrogate benchmark ({date.today()}, {args.split} split seed {args.seed}: "
          f"train/val/test = {len(split.train)}/{len(split.val)}/{len(split.test)})\n")
    print("| target | ensemble MAE (log10) | kNN MAE | reduction | Spearman(std, |err|) | "
          "test rows |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    alpha = None
    if ALPHA_ORACLE in targets:
        j = targets.index(ALPHA_ORACLE)
        have = np.isfinite(y[split.test, j])
        alpha = alpha_agreement(surrogate, [s for s, h in zip(test_structures, have,
                                                               strict=True) if h],
                                10.0 ** y[split.test, j][have])
        print(f"\nalpha against the oracle on the {alpha['n']} labelled test crystals "
              "(MAE log10, Spearman): " + "; ".join(
                  f"{c} {alpha[c]['mae_log10']:.3f}, {alpha[c]['spearman']:.2f}"
                  for c in ("thermal_expansion", ALPHA_ORACLE)))
    if breakdown:
        print("\n| test crystals | n | K MAE (log10) | G MAE (log10) |\n|---|---|---|---|")
        print("\n".join(f"| {b['group']} | {b['n']} | {b['K']:.4f} | {b['G']:.4f} |"
                        for b in breakdown))
    if by_domain is not None:
        print(f"\ntest crystals inside the training domain: {by_domain['inside']} of "
              f"{by_domain['n']}; MAE (log10) inside / outside: " + "; ".join(
                  f"{SHORT.get(t, t)} {_fmt(v['inside'])} / {_fmt(v['outside'])}"
                  for t, v in by_domain["mae"].items()))
        if by_domain["reasons"]:
            print("outside because: " + "; ".join(f"{r} ({c})" for r, c in by_domain["reasons"]))
    print(f"\nensemble members: {surrogate.n_members}; training wall time: "
          f"{train_seconds / 60:.1f} min; inference: {rate:.0f} structures/s "
          f"({len(small)} cells of <= 20 atoms, featurisation included, "
          f"{torch.get_num_threads()} threads)")
    print("\n" + reference_table(surrogate))
    summary = {"date": str(date.today()), "test": test, "knn": knn, "alpha_vs_oracle": alpha,
               "test_by_domain": by_domain, "test_by_group": breakdown,
               "train_seconds": train_seconds,
               "structures_per_second": rate, "split_sizes": [len(split.train), len(split.val),
                                                              len(split.test)]}
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
