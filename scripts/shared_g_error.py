"""Do the surrogate and the physics oracle miss DFT G on the same held-out crystals?

The surrogate (trained on DFT labels) and the oracle (a universal potential, calibrated) are
independent routes to G. Where their errors against DFT correlate, part of the error is shared:
the DFT label, or physics both find hard. Scores the shipped surrogate's test crystals that the
oracle label table covers:

    python scripts/shared_g_error.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import pearsonr

from invdesign.data import load_dataset, shared_mp_elasticity
from invdesign.data.splits import Split
from invdesign.oracle.calibration import Calibration, usable_moduli
from invdesign.surrogate import Surrogate

SOFT = 30.0  # GPa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="surrogate-elastic")
    parser.add_argument("--labels", default="checkpoints/oracle-labels/mp-binary-sevenn-l3i5.csv")
    parser.add_argument("--calibration",
                        default="checkpoints/oracle-calibration/sevenn-l3i5.json")
    args = parser.parse_args()
    data = shared_mp_elasticity()
    if data is None:
        raise SystemExit("../shared/data not found: the DFT moduli come from there")
    dataset = load_dataset(data)
    surrogate = Surrogate.load(args.model)
    test = Split.from_dict(surrogate.meta["split"]).test
    table = surrogate.predict([dataset.structures[i] for i in test],
                              [dataset.ids[i] for i in test], derived=False)
    table["G_dft"] = [dataset.records[i].properties["shear_modulus_vrh"] for i in test]
    labels = pd.read_csv(args.labels)
    labels = labels[usable_moduli(labels)].copy()
    calibration = Calibration.load(args.calibration)
    labels["G_oracle"] = calibration.apply_table(
        {"K_vrh": labels["K_vrh"].to_numpy(), "G_vrh": labels["G_vrh"].to_numpy()})["G_vrh"]
    both = table.merge(labels[["id", "G_oracle"]], on="id")
    dft = np.log10(both["G_dft"].to_numpy())
    surrogate_error = np.log10(both["shear_modulus_vrh"].to_numpy()) - dft
    oracle_error = np.log10(both["G_oracle"].to_numpy()) - dft
    rest = ~table["id"].isin(both["id"]).to_numpy()
    rest_error = np.abs(np.log10(table["shear_modulus_vrh"].to_numpy()[rest])
                        - np.log10(table["G_dft"].to_numpy()[rest]))
    print(f"{len(both)} of {len(test)} test crystals have an oracle G ({args.labels}); "
          f"surrogate G MAE log10 on the other {rest.sum()}: {rest_error.mean():.3f} "
          f"(median cell {np.median([len(dataset.structures[i]) for i in test[rest]]):.0f} "
          f"atoms, against {np.median([len(dataset.structures[i]) for i in test[~rest]]):.0f})\n")
    print("| test crystals | n | surrogate vs DFT, MAE log10 | oracle vs DFT | surrogate vs "
          "oracle | Pearson of the two errors |\n|---|---|---|---|---|---|")
    soft = both["G_dft"].to_numpy() < SOFT
    for name, sel in (("all", np.ones(len(both), bool)), (f"DFT G < {SOFT:g} GPa", soft),
                      (f"DFT G >= {SOFT:g} GPa", ~soft)):
        s, o = surrogate_error[sel], oracle_error[sel]
        print(f"| {name} | {sel.sum()} | {np.abs(s).mean():.3f} | {np.abs(o).mean():.3f} | "
              f"{np.abs(s - o).mean():.3f} | {pearsonr(s, o).statistic:.2f} |")


if __name__ == "__main__":
    main()
