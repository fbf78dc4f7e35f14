"""Two sets of oracle settings on the same crystals: how far K, G and alpha move, and the time.

Runs the oracle twice on each crystal, once with the current defaults (`OracleConfig()`) and
once with the settings given on the command line (by default the ones used before 2026-12-01:
strains of +-0.5 and +-1 %, 11 volumes, every Voigt component strained), on the reference
crystals of `invdesign.data.examples` and a random sample of MP binaries:

    python scripts/compare_oracle_settings.py --calculator sevenn-l3i5 --n 25 --max-atoms 8 \
        --workers 2 --out runs/oracle_settings

Writes `<out>/runs.csv` (one row per crystal and setting, streamed: a rerun skips done rows)
and prints the median and largest |log10| change of each quantity and the median time ratio.
The alternative runs first on each crystal, so neither setting profits from a warm cache.
"""

from __future__ import annotations

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from invdesign.data import load_dataset, shared_mp_elasticity
from invdesign.data.examples import reference_structures
from invdesign.oracle import OracleConfig
from invdesign.oracle.calculators import CalculatorName

QUANTITIES = ("K_vrh", "G_vrh", "alpha_300K")
FIELDS = ("id", "setting", "n_atoms", *QUANTITIES, "status", "seconds")


def _one(job: tuple[str, Any, str, dict[str, Any]]) -> list[dict[str, Any]]:
    import torch

    from invdesign.oracle import run_oracle

    torch.set_num_threads(1)
    sid, structure, calculator, alternative = job
    rows = []
    for setting, cfg in (("alternative", OracleConfig(**alternative)), ("default", OracleConfig())):
        r = run_oracle(structure, structure_id=sid, calculator=calculator, config=cfg)
        rows.append({"id": sid, "setting": setting, "n_atoms": len(structure),
                     **{q: getattr(r, q) for q in QUANTITIES}, "status": r.status,
                     "seconds": r.seconds})
    return rows


def summary(runs: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Median and largest |log10(alternative / default)| per quantity, over crystals where
    both settings give a finite, positive value; and the median ratio of their times."""
    wide = runs.pivot_table(index="id", columns="setting", values=[*QUANTITIES, "seconds"])
    rows = []
    for q in QUANTITIES:
        a, d = wide[(q, "alternative")], wide[(q, "default")]
        keep = np.isfinite(a) & np.isfinite(d) & (a > 0) & (d > 0)
        change = np.abs(np.log10(a[keep] / d[keep]))
        rows.append({"quantity": q, "n": int(keep.sum()),
                     "median |dlog10|": float(change.median()),
                     "max |dlog10|": float(change.max())})
    ratio = wide[("seconds", "alternative")] / wide[("seconds", "default")]
    return pd.DataFrame(rows), float(ratio.median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calculator", default="sevenn-l3i5", choices=get_args(CalculatorName))
    parser.add_argument("--n", type=int, default=25, help="MP binaries to sample")
    parser.add_argument("--max-atoms", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--strains", default="-0.01,-0.005,0.005,0.01",
                        help="alternative strain magnitudes, comma-separated")
    parser.add_argument("--n-volumes", type=int, default=11, help="alternative E(V) points")
    parser.add_argument("--symmetry", action=argparse.BooleanOptionalAction, default=False,
                        help="alternative: strain only the components symmetry leaves open")
    parser.add_argument("--ionic-fmax", type=float, default=OracleConfig().ionic_fmax,
                        help="alternative force tolerance in strained and scaled cells, eV/A")
    parser.add_argument("--out", type=Path, default=Path("runs/oracle_settings"))
    args = parser.parse_args()
    alternative = {"strains": tuple(float(v) for v in args.strains.split(",")),
                   "n_volumes": args.n_volumes, "symmetry": args.symmetry,
                   "ionic_fmax": args.ionic_fmax}
    jobs = list(reference_structures(primitive=True).items())
    data = shared_mp_elasticity()
    if data is None:
        raise SystemExit("../shared/data not found: the MP binaries come from there")
    records = [r for r in load_dataset(data) if len(r.structure) <= args.max_atoms]
    rng = np.random.default_rng(args.seed)
    jobs += [(records[i].id, records[i].structure)
             for i in rng.choice(len(records), min(args.n, len(records)), replace=False)]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "runs.csv"
    done = set(pd.read_csv(path)["id"]) if path.exists() else set()
    todo = [(sid, s, args.calculator, alternative) for sid, s in jobs if sid not in done]
    print(f"{len(jobs)} crystals ({len(done)} done), alternative settings {alternative}")
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if not done:
            writer.writeheader()
        with ProcessPoolExecutor(args.workers) as pool:
            for rows in pool.map(_one, todo):
                writer.writerows(rows)
                fh.flush()
    runs = pd.read_csv(path)
    statuses = runs.pivot_table(index="id", columns="setting", values="status", aggfunc="first")
    changed = statuses[statuses["alternative"] != statuses["default"]]
    table, time_ratio = summary(runs)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    print(f"\nmedian time, alternative / default: {time_ratio:.2f}x")
    print(f"status differs for {len(changed)} of {len(statuses)} crystals")
    for sid, row in changed.iterrows():
        print(f"  {sid}: {row['alternative']} -> {row['default']}")


if __name__ == "__main__":
    main()
