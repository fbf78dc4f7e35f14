"""Two oracle potentials on the same MP binaries: K and G against DFT, raw and calibrated.

Takes the `comparison.csv` of a `benchmark_oracle.py` run (its sample, halves and DFT moduli)
and an oracle label table of another potential (`invdesign label`), keeps the crystals where both
give a Born-stable tensor with positive K and G, fits each potential's calibration on its own
calibration-half rows and scores both on the held-out rows:

    python scripts/compare_oracles.py runs/oracle_l3i5/comparison.csv \
        checkpoints/oracle-labels/mp-binary-chgnet.csv
"""

from __future__ import annotations

import argparse

import pandas as pd

from invdesign.oracle.calibration import MODULI, Calibration, agreement, usable_moduli


def scores(frame: pd.DataFrame, unbiased: bool) -> dict[str, float]:
    """Held-out MAE log10 (raw and calibrated) and calibrated Spearman of K and G."""
    fit = frame[frame["part"] == "calibration"]
    held = frame[frame["part"] == "held-out"]
    cal = Calibration.fit({m: fit[m] for m in MODULI},
                          {"K_vrh": fit["K_dft"], "G_vrh": fit["G_dft"]}, unbiased=unbiased,
                          calculator="compared", fit_split="calibration half")
    mapped = cal.apply_table({m: held[m] for m in MODULI})
    out = {"n held-out": len(held)}
    for m in MODULI:
        dft = held[m[0] + "_dft"]
        out[f"{m[0]} raw"] = agreement(held[m], dft)["mae_log10"]
        calibrated = agreement(mapped[m], dft)
        out[f"{m[0]} cal"] = calibrated["mae_log10"]
        out[f"{m[0]} Spearman cal"] = calibrated["spearman"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("comparison", help="comparison.csv of a benchmark_oracle.py run")
    parser.add_argument("labels", help="label table of the other potential")
    parser.add_argument("--names", nargs=2, default=("benchmark run", "label table"))
    args = parser.parse_args()
    run = pd.read_csv(args.comparison)
    labels = pd.read_csv(args.labels).drop_duplicates("id", keep="last").set_index("id")
    other = run[["id", "part", "K_dft", "G_dft"]].join(
        labels[["K_vrh", "G_vrh", "mechanically_stable"]], on="id")
    both = usable_moduli(run) & usable_moduli(other)
    print(f"{len(run)} crystals in the run, {int(other['K_vrh'].notna().sum())} in the label "
          f"table, {int(both.sum())} usable in both\n")
    rows = []
    for name, frame in zip(args.names, (run, other), strict=True):
        for unbiased in (True, False):
            rows.append({"potential": name, "map": "unbiased" if unbiased else "least squares",
                         **scores(frame[both], unbiased)})
    header = list(rows[0])
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                                for v in row.values()) + " |")


if __name__ == "__main__":
    main()
