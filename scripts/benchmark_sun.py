"""Stable, unique and novel (S.U.N.) share of generated crystals, judged by CHGNet.

Samples `--n` crystals from a shipped generator (default sampler, seed 0), relaxes each valid
one with CHGNet (`invdesign.screening.relax_structures`), runs the validity, uniqueness and
novelty checks again on the relaxed crystals (a sample that relaxes into a training crystal is
not novel), and places each against the CHGNet hull of `checkpoints/oracle-labels/` (94
elements and the labelled MP binaries). MatterGen's S.U.N. rate uses DFT and the full Materials
Project hull; this one uses CHGNet and an incomplete set of known phases (binaries only), so
its "stable" share is an upper bound, and for ternaries (perov5) a loose one.

    python scripts/benchmark_sun.py --model vae-mp-binary --n 100 --out runs/sun_mp
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from invdesign.api import Designer
from invdesign.oracle.stability import STABLE_E_HULL, hull_from_folder
from invdesign.screening import relax_structures
from invdesign.surrogate import checkpoints_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vae-mp-binary")
    parser.add_argument("--n", type=int, default=100, help="crystals to sample")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    designer = Designer.load(args.model, surrogate=None)
    sampled = designer.sample(args.n, seed=0)
    valid = sampled.table["valid"].to_numpy(bool)
    relaxed = relax_structures([sampled.structures[i] for i in np.flatnonzero(valid)],
                               workers=args.workers, cache=args.out / "relaxations.csv")
    ok = np.array([r.status == "ok" for r in relaxed], bool)
    structures = [r.structure for r in relaxed if r.structure is not None]
    after = designer.assess(structures, prefix="relaxed").table
    hull = hull_from_folder(checkpoints_dir() / "oracle-labels", "chgnet")
    after["energy_per_atom"] = [r.energy_per_atom for r in relaxed if r.structure is not None]
    after = hull.annotate(after, relaxed=np.ones(len(after), bool))
    e_hull = after["e_above_hull"].to_numpy(dtype=float)
    stable = np.nan_to_num(e_hull, nan=np.inf) <= STABLE_E_HULL
    unique = after["unique"].to_numpy(bool)
    novel = after["novel"].fillna(False).to_numpy(bool)
    n = args.n
    rmsd = [r.rmsd for r in relaxed if r.status == "ok"]
    summary = {
        "model": args.model, "n_sampled": n, "seed": 0,
        "valid": float(valid.sum() / n),
        "relaxed": float(ok.sum() / n),
        "median_relax_rmsd_A": float(np.median(rmsd)) if rmsd else float("nan"),
        "valid_after_relaxation": float(after["valid"].sum() / n),
        "stable": float(stable.sum() / n),
        "unique_after_relaxation": float(unique.sum() / n),
        "novel_after_relaxation": float(novel.sum() / n),
        "stable_unique_novel": float((stable & unique & novel
                                      & after["valid"].to_numpy(bool)).sum() / n),
        "median_e_above_hull": float(np.nanmedian(e_hull)) if len(e_hull) else float("nan"),
        "seconds": time.perf_counter() - start,
        "hull_references": len(hull),
    }
    after.to_csv(args.out / "relaxed_samples.csv", index=False)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
