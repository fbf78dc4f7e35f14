"""Thermal expansion of the reference crystals: AGL's Debye-Grueneisen model vs phonon QHA.

Runs the oracle (relax, elastic tensor, thermal expansion) on the experimental reference
crystals (`invdesign.data.examples.REFERENCES`, primitive cells) once per potential and per
thermal method (`OracleConfig.thermal_method`: "agl" and "phonon-qha"), and prints alpha at
300 K against experiment: the share within a factor 2 and the Spearman correlation over the 11
crystals with experimental alpha in ../shared/data/README.md, and over all 13. Results stream
to `--out/<calculator>-<method>.csv` (a rerun resumes). `--exclude` does not run these crystals
(a result already in the file still counts; a missing one counts as a failure).

    python scripts/benchmark_phonon_qha.py --calculators sevenn-l3i5 chgnet --workers 2
"""

from __future__ import annotations

import argparse
import math
import time
from datetime import date
from pathlib import Path

import pandas as pd
from benchmark_oracle import reference_rows, reference_stats

from invdesign.data.examples import REFERENCES, reference_structures
from invdesign.oracle import OracleConfig, run_many

METHODS = ("agl", "phonon-qha")


def run(calculator: str, method: str, out: Path, workers: int,
        exclude: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Oracle results of the reference crystals (bar `exclude`) with one potential and
    thermal method."""
    cells = reference_structures(primitive=True)
    table = run_many([(r.name, cells[r.name]) for r in REFERENCES if r.name not in exclude],
                     out / f"{calculator}-{method}.csv", calculator=calculator,
                     workers=workers, config=OracleConfig(thermal_method=method),
                     progress=False)
    return table.drop_duplicates("id", keep="last")


def fmt(value: float, spec: str = ".1f") -> str:
    return "-" if not math.isfinite(value) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calculators", nargs="+", default=["sevenn-l3i5"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("runs/phonon_qha"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="reference crystals not to run (results already on file are used)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n_atoms = {name: len(s) for name, s in reference_structures(primitive=True).items()}
    rows, summary = {}, []
    for calculator in args.calculators:
        for method in args.methods:
            start = time.perf_counter()
            table = run(calculator, method, args.out, args.workers, frozenset(args.exclude))
            wall = time.perf_counter() - start
            key = f"{calculator} {method}"
            rows[key] = reference_rows(table, REFERENCES, n_atoms)
            listed, every = (reference_stats(rows[key], listed_only=flag)
                             for flag in (True, False))
            summary.append(
                f"| {calculator} | {method} | {listed['within_factor_2']}/"
                f"{listed['n_references']} | {fmt(listed['alpha']['spearman'], '.2f')} | "
                f"{every['within_factor_2']}/{every['n_references']} | "
                f"{fmt(every['alpha']['spearman'], '.2f')} | "
                f"{fmt(float(table['seconds'].median()), '.0f')} | {fmt(wall, '.0f')} |")
    print(f"\n## Thermal expansion at 300 K: AGL vs phonon QHA ({date.today()})\n")
    print("| potential | method | within 2x (11 listed) | Spearman (11) | within 2x (all 13) | "
          "Spearman (13) | median s per crystal | wall s (this run) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))
    keys = list(rows)
    print("\nalpha (1e-6/K) per crystal; status other than ok in brackets:\n")
    print("| crystal | exp | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for i, ref in enumerate(REFERENCES):
        cells = []
        for key in keys:
            r = rows[key][i]
            why = r["status"].removeprefix("failed: ").split(" (")[0]
            cells.append(fmt(r["alpha_oracle"]) if r["status"] == "ok" else f"({why})")
        name = ref.name + ("" if getattr(ref, "listed", True) else " (extra)")
        print(f"| {name} | {fmt(rows[keys[0]][i]['alpha_exp'])} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
