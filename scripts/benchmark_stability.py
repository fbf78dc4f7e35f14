"""Energy above the oracle's convex hull: how known crystals and design candidates sit.

The hull (`invdesign.oracle.stability.Hull`) is built from the elemental references
(`scripts/build_hull_references.py`) and the oracle label table of the MP binaries, all relaxed
by the same potential. Known MP binaries are scored leave-one-out (each against the hull
without itself): a sound hull puts most of them within 0.1 eV/atom, since they are
synthesised or DFT-stable compounds. Candidate tables (`invdesign verify` / `generate
--verify` / `scripts/verify_design.py` oracle CSVs) are scored against the full hull: the share
within 0.1 eV/atom is the "stable" part of MatterGen's stable-unique-novel rate, judged by the
potential instead of DFT.

    python scripts/benchmark_stability.py --candidates runs/verify-design-after/oracle.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from invdesign.oracle import read_results
from invdesign.oracle.stability import STABLE_E_HULL, Hull

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "checkpoints" / "oracle-labels" / "mp-binary-chgnet.csv"
ELEMENTS = ROOT / "checkpoints" / "oracle-labels" / "elements-chgnet.csv"
CUTS = (0.0, 0.05, 0.1, 0.2)


def converged(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose relaxation converged (the elastic stage ran) with a finite energy."""
    keep = table["energy_per_atom"].notna() & table["K_vrh"].notna()
    return table[keep]


def summary(e_hull: np.ndarray) -> dict[str, float]:
    """Count, median, 90th percentile and the share at or below each cut (eV/atom)."""
    e = e_hull[np.isfinite(e_hull)]
    out = {"n": len(e), "median": float(np.median(e)) if len(e) else float("nan"),
           "p90": float(np.percentile(e, 90)) if len(e) else float("nan")}
    out |= {f"share <= {c:g}": float(np.mean(e <= c + 1e-9)) if len(e) else float("nan")
            for c in CUTS}
    return out


def summary_row(name: str, s: dict[str, float]) -> str:
    cells = [name, str(s["n"]), f"{s['median']:+.3f}", f"{s['p90']:+.3f}",
             *[f"{100 * s[f'share <= {c:g}']:.0f} %" for c in CUTS],
             f"{100 * s.get('stable share of all rows', s['share <= 0.1']):.0f} %"]
    return "| " + " | ".join(cells) + " |"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--elements", type=Path, default=ELEMENTS)
    parser.add_argument("--candidates", type=Path, nargs="*", default=[],
                        help="oracle results CSVs of candidates")
    parser.add_argument("--top", type=int, default=20, help="rows shown per candidate table")
    parser.add_argument("--out", type=Path, default=Path("runs/stability"))
    args = parser.parse_args(argv)

    labels = converged(read_results(args.labels))
    elements = pd.read_csv(args.elements)
    hull = Hull.from_tables([elements, labels])
    loo = np.array([hull.e_above_hull(f, e, exclude=i).e_above_hull for f, e, i in
                    zip(labels["formula"], labels["energy_per_atom"], labels["id"],
                        strict=True)])
    known = summary(loo)
    header = ("| structures | n | median E_hull (eV/atom) | 90th percentile | "
              + " | ".join(f"<= {c:g}" for c in CUTS) + f" | <= {STABLE_E_HULL:g}, share of all "
              "rows (unrelaxed count as unstable) |")
    print(f"\n## Energy above the CHGNet hull ({date.today()})\n")
    print(f"Hull: {len(elements)} elemental references ({args.elements.name}) and "
          f"{len(labels)} converged MP-binary relaxations ({args.labels.name}).\n")
    print(header)
    print("|" + "---|" * (5 + len(CUTS)))
    print(summary_row("known MP binaries, leave-one-out", known))
    results = {"known_leave_one_out": known, "candidates": {}}
    tables = []
    for path in args.candidates:
        table = hull.annotate(converged(read_results(path)))
        s = summary(table["e_above_hull"].to_numpy(float))
        all_rows = len(read_results(path))
        s["stable share of all rows"] = float(
            (table["e_above_hull"] <= STABLE_E_HULL + 1e-9).sum() / max(all_rows, 1))
        print(summary_row(f"`{path}` ({len(table)} of {all_rows} relaxed)", s))
        results["candidates"][str(path)] = s | {"rows": all_rows}
        tables.append((path, table))
    for path, table in tables:
        print(f"\n`{path}`: first {args.top} rows\n")
        print("| id | formula | status | E_hull (eV/atom) | decomposes to |")
        print("|---|---|---|---|---|")
        for r in table.head(args.top).itertuples():
            print(f"| {r.id} | {r.formula} | {str(r.status).split(' (')[0]} | "
                  f"{r.e_above_hull:+.3f} | {r.decomposition} |")
    print(f"\nStable or metastable: E_hull <= {STABLE_E_HULL} eV/atom. Leave-one-out: each "
          f"known binary against the hull without its own entry (its polymorphs stay).")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(results, indent=1))
    pd.DataFrame({"id": labels["id"], "formula": labels["formula"],
                  "e_above_hull_loo": loo}).to_csv(args.out / "known_loo.csv", index=False)


if __name__ == "__main__":
    main()
