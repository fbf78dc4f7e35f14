"""The MP binaries on one potential's hull that another potential's label table still lacks.

A hull needs each chemical system's stable phases: a system with none labelled gives a
formation energy, not a distance to the hull. This writes the binaries that lie on the hull of
`--hull-calculator` (its label table and elemental ground states in `checkpoints/oracle-labels`,
e_above_hull <= `--tolerance`), at most `--max-atoms` atoms, not yet in `--exclude`, smallest
cells first, as a subset of the MP file that `invdesign label --data` reads:

    python scripts/hull_vertex_subset.py --hull-calculator chgnet \
        --exclude checkpoints/oracle-labels/mp-binary-sevenn-l3i5.csv \
        --out runs/hull-vertices.json.gz
    invdesign label --data runs/hull-vertices.json.gz --calculator sevenn-l3i5 --workers 2 \
        --out checkpoints/oracle-labels/mp-binary-sevenn-l3i5.csv
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pandas as pd

from invdesign.data import shared_mp_elasticity
from invdesign.oracle.stability import hull_from_folder

LABELS = Path(__file__).resolve().parents[1] / "checkpoints" / "oracle-labels"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hull-calculator", default="chgnet")
    parser.add_argument("--exclude", type=Path, help="label table whose ids to leave out")
    parser.add_argument("--data", type=Path, help="MP binary file (default: ../shared/data's)")
    parser.add_argument("--tolerance", type=float, default=0.001, help="eV/atom above the hull")
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = args.data or shared_mp_elasticity()
    if data is None:
        raise SystemExit("no --data given and ../shared/data not found")
    hull = hull_from_folder(LABELS, args.hull_calculator)
    if hull is None:
        raise SystemExit(f"no {args.hull_calculator} hull references in {LABELS}")
    with gzip.open(data, "rt") as fh:
        records = {r["mp_id"]: r for r in json.load(fh)}
    sites = {i: len(r["structure"]["sites"]) for i, r in records.items()}
    table = pd.read_csv(LABELS / f"mp-binary-{args.hull_calculator}.csv")
    table = table.assign(sites=table["id"].map(sites))
    table = table[table["sites"] <= args.max_atoms]
    scored = hull.annotate(table)
    on_hull = scored[scored["e_above_hull"] <= args.tolerance]
    done = set(pd.read_csv(args.exclude)["id"]) if args.exclude else set()
    order = on_hull[~on_hull["id"].isin(done)].sort_values("sites", kind="stable")["id"]
    subset = [records[i] for i in order]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt") as fh:
        json.dump(subset, fh)
    print(f"{len(on_hull)} of {len(scored)} {args.hull_calculator} rows (<= {args.max_atoms} "
          f"atoms) on the hull; {len(subset)} not in {args.exclude or 'nothing'}: {args.out}")


if __name__ == "__main__":
    main()
