"""Check the top of a design run with the physics oracle: do the surrogate's best candidates
survive relaxation, and do they keep the moduli and objective the surrogate promised?

Runs `invdesign generate` with `--objective` (or reads an existing output folder ranked by that
objective, `--candidates`), then the CHGNet oracle (relaxation, elastic tensor, AGL thermal
expansion) on the first `--top` ranked candidates. The oracle's K and G are mapped to the DFT
scale with the shipped calibration and compared with the surrogate's (MAE log10, Spearman);
the objective is recomputed from the calibrated oracle moduli through the same derived-property
formulas (with the candidate's density and volume per atom as written: decoded, or relaxed by
`generate --relax`). "Oracle SR5" is the share of the top rows whose oracle-derived objective
reaches the training set's 95th percentile (failed rows count as misses): the design
benchmark's success rate, judged by physics instead of the surrogate. "Stable" rows lie within
0.1 eV/atom of the CHGNet hull (`invdesign.oracle.stability`); `oracle_SR5_ok_and_stable`
counts only hits that are also Born-stable and stable.

    python scripts/verify_design.py --objective "E * alpha" --out runs/verify_design
    python scripts/verify_design.py --objective "E * alpha" --candidates candidates --out runs/v
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from invdesign.api import Designer, generate
from invdesign.data import load_dataset
from invdesign.oracle import CalculatorName, run_many
from invdesign.oracle.calibration import Calibration, agreement, calibrated_results
from invdesign.oracle.stability import STABLE_E_HULL, hull_from_folder
from invdesign.properties import Objective, derive_all
from invdesign.surrogate import G_NAME, K_NAME, checkpoints_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", required=True, help="the design objective")
    parser.add_argument("--candidates", type=Path,
                        help="an existing generate output folder (default: run generate)")
    parser.add_argument("-n", type=int, default=100, help="candidates generate returns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=20, help="ranked rows to verify")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--calculator", default="chgnet", choices=get_args(CalculatorName),
                        help="oracle potential (its shipped calibration and hull are used)")
    parser.add_argument("--model", default="mp-binary", help="generator (training labels)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.candidates or args.out / "candidates"
    if args.candidates is None:
        generate(args.objective, args.n, out=folder, seed=args.seed, plot=False)
    table = pd.read_csv(folder / "candidates.csv", keep_default_na=False, na_values=[""])
    objective_text = args.objective
    top = table.head(args.top)
    dataset = load_dataset(folder / "candidates.csv")
    structures = {r.id: r.structure for r in dataset}
    # earlier runs wrote CHGNet's results to oracle.csv; keep resuming them
    name = "oracle.csv" if args.calculator == "chgnet" else f"oracle-{args.calculator}.csv"
    results = run_many([(i, structures[i]) for i in top["id"] if i in structures],
                       args.out / name, calculator=args.calculator, workers=args.workers,
                       progress=False)
    shipped = checkpoints_dir() / "oracle-calibration" / f"{args.calculator}.json"
    hull = hull_from_folder(checkpoints_dir() / "oracle-labels", args.calculator)
    if hull is None:
        raise SystemExit(f"no shipped hull references for {args.calculator} under "
                         f"{checkpoints_dir() / 'oracle-labels'}")
    oracle = hull.annotate(calibrated_results(results, Calibration.load(shipped)))
    columns = ["status", "relax_rmsd", "K_vrh_calibrated", "G_vrh_calibrated", "e_above_hull",
               "decomposition"]
    # a screened run (`generate --relax`) has its own relax_rmsd: the oracle's wins here
    merged = top.drop(columns=columns, errors="ignore").merge(
        oracle[["id", *columns]], on="id", how="left")
    ok = merged["status"].eq("ok").to_numpy()
    k_pred, g_pred = (merged[c].to_numpy(dtype=float) for c in (K_NAME, G_NAME))
    k_orc, g_orc = (merged[c].to_numpy(dtype=float) for c in ("K_vrh_calibrated",
                                                              "G_vrh_calibrated"))
    objective = Objective.parse(objective_text)
    derived = derive_all(k_orc, g_orc, density=merged["density"].to_numpy(dtype=float),
                         volume_per_atom=merged["volume_per_atom"].to_numpy(dtype=float))
    oracle_objective = np.where(ok, objective.evaluate(derived), np.nan)
    labels = Designer.load(args.model, surrogate=None).reference_properties
    train = objective.evaluate({c: labels[c].to_numpy() for c in labels.columns
                                if c not in ("id", "formula")})
    p95 = float(np.nanpercentile(train, 95))
    predicted = merged["objective"].to_numpy(dtype=float)
    rmsd = merged["relax_rmsd"].to_numpy(dtype=float)
    stable = np.nan_to_num(merged["e_above_hull"].to_numpy(dtype=float), nan=np.inf) \
        <= STABLE_E_HULL
    summary = {
        "candidates": str(folder), "objective": objective_text, "n": len(merged),
        "status": merged["status"].fillna("missing").str.replace(r"\s*\(.*", "", regex=True)
        .value_counts().to_dict(),
        "ok_share": float(ok.mean()),
        "median_relax_rmsd_all": float(np.nanmedian(rmsd)),
        "median_relax_rmsd_ok": float(np.nanmedian(rmsd[ok])) if ok.any() else float("nan"),
        "K_mae_log10_ok": agreement(k_pred[ok], k_orc[ok])["mae_log10"],
        "G_mae_log10_ok": agreement(g_pred[ok], g_orc[ok])["mae_log10"],
        "K_spearman_ok": agreement(k_pred[ok], k_orc[ok])["spearman"],
        "G_mean_ratio_ok": float(np.nanmean(g_orc[ok] / g_pred[ok])) if ok.any() else None,
        "surrogate_objective_median": float(np.nanmedian(predicted)),
        "oracle_objective_median_ok": float(np.nanmedian(oracle_objective[ok]))
        if ok.any() else float("nan"),
        "train_p95": p95,
        "surrogate_SR5": float(np.mean(predicted >= p95)),
        "oracle_SR5": float(np.mean(np.nan_to_num(oracle_objective, nan=-np.inf) >= p95)),
        "stable_share": float(np.mean(stable)),
        "ok_and_stable_share": float(np.mean(ok & stable)),
        "oracle_SR5_ok_and_stable": float(np.mean(
            ok & stable & (np.nan_to_num(oracle_objective, nan=-np.inf) >= p95))),
        "median_density": float(merged["density"].median()),
    }
    merged["oracle_objective"] = oracle_objective
    merged.to_csv(args.out / "verified.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
