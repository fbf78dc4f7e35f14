"""Choose, on the validation split, how many latent codes a crystal VAE checkpoint's sampler
draws per sample (`Generator.sample(best_of=k)`: the decoded crystal that encodes back
closest to its code is kept).

For each k the shipped sampler (seed 0, charge-balanced decoding, the checkpoint's patterns,
volumes and denoiser) draws `--n-samples` crystals, scored for CDVAE validity, uniqueness,
novelty against the checkpoint's training file, COV-R/COV-P and the EMDs against the
*validation* crystals (or, with `--part test`, the test crystals once the choice is made),
with the seconds the sampling took. `--apply` records in the card the k with the best mean of
COV-R and COV-P (the fixed rule), which `sample` then uses by default.

    python scripts/choose_best_of.py vae-perov5 --dataset perov_5 --best-of 1 2 3 --apply
    python scripts/choose_best_of.py vae-perov5 --dataset perov_5 --best-of 1 2 --part test
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date

import torch

from invdesign.api import Designer, charge_balanced
from invdesign.evaluate import fingerprint_structures, sample_scores
from invdesign.surrogate import resolve_checkpoint
from invdesign.train.vae_pipeline import split_structures

KEYS = ("struct_valid", "comp_valid", "unique", "novel", "cov_r", "cov_p", "emd_density",
        "emd_n_elements", "seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="VAE checkpoint (name or folder)")
    parser.add_argument("--dataset", default="mp_20", help="perov_5, carbon_24 or mp_20 (COV "
                                                          "cutoffs)")
    parser.add_argument("--best-of", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--part", choices=["val", "test"], default="val",
                        help="crystals to score against (choose on val; report test once)")
    parser.add_argument("--apply", action="store_true", help="record the choice in the card")
    args = parser.parse_args()
    if args.apply and args.part != "val":
        parser.error("--apply decides on the validation split: drop --part test")
    torch.set_num_threads(1)
    folder = resolve_checkpoint(args.model)
    designer = Designer.load(folder, surrogate=None)
    generator = designer.generator
    held_out = getattr(split_structures(generator), args.part)
    fingerprints = fingerprint_structures(held_out, n_jobs=args.jobs)
    report: dict = {"date": str(date.today()), "part": args.part, "n_part": len(held_out),
                    "n_samples": args.n_samples, "rows": {}}
    print("| best of | " + " | ".join(KEYS) + " |\n|---" + "|---" * len(KEYS) + "|")
    for k in args.best_of:
        start = time.perf_counter()
        samples = generator.sample(args.n_samples, seed=0, accept=charge_balanced, best_of=k)[0]
        seconds = time.perf_counter() - start
        metrics = sample_scores(samples, held_out, args.dataset, reference=designer.reference,
                                held_out_fingerprints=fingerprints, n_jobs=args.jobs)
        metrics["seconds"] = seconds
        report["rows"][str(k)] = {key: float(metrics[key]) for key in KEYS}
        print(f"| {k} | " + " | ".join(f"{metrics[key]:.4f}" for key in KEYS) + " |",
              flush=True)
    rows = report["rows"]
    chosen = max(rows, key=lambda k: (rows[k]["cov_r"] + rows[k]["cov_p"]) / 2)
    report["chosen"] = int(chosen)
    print(f"best mean of COV-R and COV-P: best of {chosen}")
    if args.apply:
        generator.meta["sampling"] = {
            "best_of": int(chosen),
            "command": f"python scripts/choose_best_of.py {args.model} --dataset {args.dataset} "
                       f"--best-of {' '.join(map(str, args.best_of))} --apply",
            "validation": report}
        generator.save(folder, weights=False)
        print(f"recorded best_of {chosen} in {folder / 'card.json'}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
