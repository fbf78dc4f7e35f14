"""Held-out error of log-linear G calibrations over many reduced-formula splits of a label table.

For each set of oracle covariates, fits log10 G_dft on one half of the formulas (least squares,
and the same map stretched to be unbiased across the range, as `Calibration` does) and scores
the other half; repeats over `--splits` random halvings and prints the mean and spread of the
held-out MAE in log10, with the mean signed error of crystals stiffer than 150 GPa:

    python scripts/calibration_splits.py checkpoints/oracle-labels/mp-binary-sevenn-l3i5.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from invdesign.data import load_dataset, shared_mp_elasticity
from invdesign.oracle.calibration import usable_moduli

COVARIATE_SETS = {
    "G only": ["log_G"],
    "G, K (shipped)": ["log_G", "log_K"],
    "G, K, Poisson ratio": ["log_G", "log_K", "poisson"],
    "G, K, volume per atom": ["log_G", "log_K", "log_volume"],
    "G, K, energy per atom": ["log_G", "log_K", "energy_per_atom"],
    "G, K, mass per atom": ["log_G", "log_K", "log_mass"],
}


def table(labels: pd.DataFrame) -> pd.DataFrame:
    """Usable label rows joined to the DFT moduli and reduced formulas of the MP file."""
    path = shared_mp_elasticity()
    if path is None:
        raise SystemExit("../shared/data not found: the DFT moduli come from there")
    dft = {r.id: (r.properties["shear_modulus_vrh"], r.structure.composition.reduced_formula)
           for r in load_dataset(path)}
    rows = labels[usable_moduli(labels) & labels["id"].isin(dft)].copy()
    rows["G_dft"] = rows["id"].map(lambda i: dft[i][0])
    rows["reduced_formula"] = rows["id"].map(lambda i: dft[i][1])
    rows = rows[rows["G_dft"] > 0]
    return rows.assign(log_G=np.log10(rows["G_vrh"]), log_K=np.log10(rows["K_vrh"]),
                       log_volume=np.log10(rows["eos_V0"] / rows["n_atoms"]),
                       log_mass=np.log10(rows["mass_amu"] / rows["n_atoms"]))


def split_scores(rows: pd.DataFrame, columns: list[str], splits: int, seed: int
                 ) -> dict[str, float]:
    """Mean and std of held-out MAE log10 for both maps, and their bias above 150 GPa."""
    rng = np.random.default_rng(seed)
    rows = rows[np.isfinite(rows[columns].to_numpy(float)).all(axis=1)]  # older rows lack some
    formulas = rows["reduced_formula"].unique()
    x = np.column_stack([rows[c].to_numpy(float) for c in columns] + [np.ones(len(rows))])
    y = np.log10(rows["G_dft"].to_numpy(float))
    out: dict[str, list[float]] = {k: [] for k in ("ls", "unbiased", "ls_stiff", "unb_stiff")}
    for _ in range(splits):
        half = set(rng.permutation(formulas)[: len(formulas) // 2])
        fit = rows["reduced_formula"].isin(half).to_numpy()
        coef = np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
        stretch, shift = np.polyfit(y[fit], x[fit] @ coef, 1)
        unbiased = coef / stretch
        unbiased[-1] -= shift / stretch
        stiff = y[~fit] >= np.log10(150.0)
        for name, c in (("ls", coef), ("unbiased", unbiased)):
            err = x[~fit] @ c - y[~fit]
            out[name].append(float(np.abs(err).mean()))
            out[f"{'ls' if name == 'ls' else 'unb'}_stiff"].append(float(err[stiff].mean()))
    return {"least squares": np.mean(out["ls"]), "+-": np.std(out["ls"]),
            "unbiased": np.mean(out["unbiased"]), "+- ": np.std(out["unbiased"]),
            "bias >= 150 GPa, least squares": np.mean(out["ls_stiff"]),
            "bias >= 150 GPa, unbiased": np.mean(out["unb_stiff"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("labels", help="an `invdesign label` table of the MP binaries")
    parser.add_argument("--splits", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = table(pd.read_csv(args.labels))
    print(f"{len(rows)} usable rows, {rows['reduced_formula'].nunique()} formulas, "
          f"{args.splits} splits; held-out MAE log10 of G and mean signed error above 150 GPa\n")
    result = pd.DataFrame({name: split_scores(rows, cols, args.splits, args.seed)
                           for name, cols in COVARIATE_SETS.items()}).T
    print(result.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
