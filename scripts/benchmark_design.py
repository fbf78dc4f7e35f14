"""Inverse-design benchmark: success rates of our latent-space optimisers vs random prior
sampling and a pyxtal + SMACT random-search peer, all scored by the same surrogate ensemble.

For each objective: the training set's objective distribution (DFT K and G of the generator's
training file through the same derived-property formulas), then for each method the top-50
valid, unique, novel candidates by surrogate-predicted objective. SR5 / SR10 / SR15 = share of
those 50 at or above the training set's 95th / 90th / 85th percentile (CDVAE's success rate);
hits per 1,000 candidates and per wall-clock minute (2 cores) for every method.

    python scripts/benchmark_design.py --out runs/benchmark_design.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from invdesign.api import Designer, design_ready
from invdesign.design.random_search import random_structures
from invdesign.design.scoring import Scorer
from invdesign.validity import check_structures

TOP = 50
PERCENTILES = {"SR5": 95, "SR10": 90, "SR15": 85}


def success(values: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    top = np.sort(values[np.isfinite(values)])[::-1][:TOP]
    out = {k: float(np.mean(top >= t)) if len(top) else 0.0 for k, t in thresholds.items()}
    out["n_top"] = len(top)
    out["top_median"] = float(np.median(top)) if len(top) else float("nan")
    return out


def hits(values: np.ndarray, thresholds: dict[str, float], n: int, seconds: float) -> dict:
    out = {}
    for k, t in thresholds.items():
        count = int(np.sum(values >= t))
        out[f"{k}_hits_per_1000"] = 1000.0 * count / max(n, 1)
        out[f"{k}_hits_per_minute"] = 60.0 * count / max(seconds, 1e-9)
    return out


def vun_objective(designer: Designer, structures, scorer: Scorer) -> tuple[np.ndarray, int]:
    """Surrogate objective of the structures that pass what `optimize` demands of its own
    (prepared as its search prepares them, `design_ready`: squeezed cells expanded; then
    plausible, in the surrogate's domain, valid; uniqueness among those; novel); and their
    count."""
    structures = [s for s in map(design_ready, structures) if s is not None]
    t = designer.assess(structures, prefix="x", scorer=scorer).table
    eligible = np.flatnonzero(
        (t["valid"] & t["plausible"] & t.get("in_domain", False)).to_numpy(dtype=bool))
    if not len(eligible):
        return np.zeros(0), 0
    flags = check_structures([structures[i] for i in eligible], reference=designer.reference)
    keep = (flags["unique"] & flags["novel"].fillna(False).astype(bool)).to_numpy(dtype=bool)
    return t["objective"].to_numpy(dtype=float)[eligible][keep], int(keep.sum())


def run_objective(designer: Designer, objective: str, elements: list[str], args) -> dict:
    scorer = Scorer.parse(objective)
    labels = designer.reference_properties
    train_values = scorer.objective.evaluate({c: labels[c].to_numpy() for c in labels.columns
                                              if c not in ("id", "formula")})
    train_values = train_values[np.isfinite(train_values)]
    thresholds = {k: float(np.percentile(train_values, p)) for k, p in PERCENTILES.items()}
    result: dict = {"objective": objective, "thresholds": thresholds,
                    "train": {"n": len(train_values),
                              "median": float(np.median(train_values)),
                              "p95": thresholds["SR5"]}}
    for method in ("cmaes", "gradient", "both"):
        start = time.perf_counter()
        best = designer.optimize(objective, n=TOP, method=method, budget=args.budget,
                                 elements=elements, max_atoms=20, seed=args.seed)
        seconds = time.perf_counter() - start
        values = best.table["objective"].to_numpy(dtype=float) if len(best) else np.zeros(0)
        result[method] = {"seconds": seconds, "budget": args.budget,
                          **success(values, thresholds),
                          **hits(values, thresholds, args.budget, seconds)}
        print(method, json.dumps(result[method]), flush=True)
    budget_s = result["both"]["seconds"]
    start = time.perf_counter()
    prior = designer.generator.sample(args.budget, seed=args.seed, elements=elements,
                                      max_atoms=20, prior=args.prior)[0]
    values, n_vun = vun_objective(designer, prior, scorer)
    seconds = time.perf_counter() - start
    result["prior_sampling"] = {"seconds": seconds, "n": args.budget, "n_vun": n_vun,
                                **success(values, thresholds),
                                **hits(values, thresholds, args.budget, seconds)}
    start = time.perf_counter()
    peer = random_structures(args.budget, elements=elements, max_atoms=20, seed=args.seed,
                             time_limit=budget_s)
    values, n_vun = vun_objective(designer, peer, scorer)
    seconds = time.perf_counter() - start
    result["random_search_pyxtal_smact"] = {
        "seconds": seconds, "time_limit_s": budget_s, "n": len(peer), "n_vun": n_vun,
        **success(values, thresholds), **hits(values, thresholds, len(peer), seconds)}
    print("peer", json.dumps(result["random_search_pyxtal_smact"]), flush=True)
    return result


def markdown(results: dict) -> str:
    """One table per objective, for BENCHMARKS.md."""
    out = []
    for r in results["objectives"]:
        out += [f"Objective `{r['objective']}`: training set n = {r['train']['n']}, median "
                f"{r['train']['median']:.3g}, 95th percentile {r['train']['p95']:.3g}.", "",
                "| method | seconds | candidates | top-50 median | SR5 | SR10 | SR15 "
                "| SR5 hits / 1000 | SR5 hits / min |", "|" + "---|" * 9]
        for method in ("cmaes", "gradient", "both", "prior_sampling",
                       "random_search_pyxtal_smact"):
            m = r[method]
            n = m.get("n", m.get("budget"))
            out.append(f"| {method} | {m['seconds']:.0f} | {n} | {m['top_median']:.3g} | "
                       f"{m['SR5']:.2f} | {m['SR10']:.2f} | {m['SR15']:.2f} | "
                       f"{m['SR5_hits_per_1000']:.1f} | {m['SR5_hits_per_minute']:.2f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mp-binary")
    parser.add_argument("--objectives", nargs="+", default=["E * alpha", "hardness * toughness"])
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--n-elements", type=int, default=30,
                        help="both searches use the most frequent training elements")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior", default="gaussian", choices=["auto", "fitted", "gaussian"],
                        help="latent prior of the prior-sampling baseline")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_design.json"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    designer = Designer.load(args.model)
    counts = Counter(e.symbol for s in designer.reference_structures for e in s.composition)
    vocab = {int(z) for z in designer.generator.model.vocab}
    from pymatgen.core import Element

    elements = [e for e, _ in counts.most_common() if Element(e).Z in vocab][:args.n_elements]
    results = {"model": args.model, "elements": elements, "top": TOP,
               "objectives": [run_objective(designer, o, elements, args)
                              for o in args.objectives]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
