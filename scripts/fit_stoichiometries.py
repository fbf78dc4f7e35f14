"""Fit the stoichiometric patterns of a crystal VAE checkpoint's training crystals and decide
on its validation split whether sampling should keep to them.

The patterns (reduced amounts in electronegativity order, `StoichiometryPatterns`) come from
the checkpoint's training split only. The shipped sampler (seed 0, charge-balanced decoding)
is run without and with them, and both sample sets are scored (CDVAE validity, uniqueness,
novelty against the checkpoint's training file, COV-R/COV-P, EMDs) against the *validation*
crystals, or with `--part test` against the test crystals once the choice is made. `--apply`
stores the patterns in the checkpoint (`sample` then keeps to them by default) and records
the comparison in its card; do it only where the samples kept to the patterns score better.

    python scripts/fit_stoichiometries.py vae-perov5 --dataset perov_5 --apply
    python scripts/fit_stoichiometries.py vae-perov5 --dataset perov_5 --part test
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import numpy as np
import torch

from invdesign.api import Designer, charge_balanced
from invdesign.evaluate import fingerprint_structures, sample_scores
from invdesign.featurize.stoichiometry import StoichiometryPatterns, structure_counts
from invdesign.surrogate import resolve_checkpoint
from invdesign.train.vae_pipeline import split_structures

KEYS = ("struct_valid", "comp_valid", "unique", "novel", "cov_r", "cov_p", "emd_density",
        "emd_n_elements")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="VAE checkpoint (name or folder)")
    parser.add_argument("--dataset", default="mp_20", help="perov_5, carbon_24 or mp_20 (COV "
                                                          "cutoffs)")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--part", choices=["val", "test"], default="val",
                        help="crystals to score against (choose on val; report test once)")
    parser.add_argument("--apply", action="store_true", help="store the patterns in the model")
    args = parser.parse_args()
    if args.apply and args.part != "val":
        parser.error("--apply decides on the validation split: drop --part test")
    torch.set_num_threads(1)
    folder = resolve_checkpoint(args.model)
    designer = Designer.load(folder, surrogate=None)
    generator = designer.generator
    parts = split_structures(generator)
    train, held_out = parts.train, getattr(parts, args.part)
    patterns = StoichiometryPatterns.fit(train)
    seen = np.mean([patterns.allows(structure_counts(s)) for s in held_out])
    report: dict = {"date": str(date.today()), "n_train": len(train), "part": args.part,
                    "n_part": len(held_out), "n_patterns": len(patterns.patterns),
                    "part_with_a_training_pattern": float(seen)}
    print(f"{folder.name}: {len(patterns.patterns)} stoichiometric patterns in {len(train)} "
          f"training crystals; {seen:.1%} of the {len(held_out)} {args.part} crystals have one")
    generator.stoichiometries = patterns
    fingerprints = fingerprint_structures(held_out, n_jobs=args.jobs)
    print("| samples | with a training pattern | " + " | ".join(KEYS) + " |\n|---|---"
          + "|---" * len(KEYS) + "|")
    for name, keep in (("any stoichiometry", False), ("training patterns", True)):
        samples = generator.sample(args.n_samples, seed=0, accept=charge_balanced,
                                   stoichiometry=keep)[0]
        decoded = [s for s in samples if s is not None]
        share = float(np.mean([patterns.allows(structure_counts(s)) for s in decoded]))
        metrics = sample_scores(samples, held_out, args.dataset, reference=designer.reference,
                                held_out_fingerprints=fingerprints, n_jobs=args.jobs)
        report[name] = {"with_a_training_pattern": share} | {k: float(metrics[k])
                                                               for k in KEYS}
        print(f"| {name} | {share:.1%} | " + " | ".join(f"{metrics[k]:.4f}" for k in KEYS)
              + " |", flush=True)
    if args.apply:
        generator.meta["stoichiometries"] = {
            "command": f"python scripts/fit_stoichiometries.py {args.model} --dataset "
                       f"{args.dataset} --apply", "validation": report}
        generator.save(folder, weights=False)
        print(f"stored {folder / 'stoichiometries.json'}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
