"""Fit additive atomic volumes for a crystal VAE checkpoint and decide on its validation split
whether decoded cells should take their volume from them.

The volumes are fitted on the checkpoint's training split (`AtomicVolumes.fit`). The same prior
samples (seed 0, the checkpoint's shipped sampler) are scored as decoded and with each cell
scaled to the predicted volume (CDVAE validity, COV-R/COV-P, EMD of density) against the
*validation* crystals, or with `--part test` against the test crystals once the choice is
made. `--apply` stores the volumes in the checkpoint (`decode` and `sample` then use them) and
records the comparison in its card; do it only where the scaled samples score better.

    python scripts/fit_atomic_volumes.py vae-mp-binary --dataset mp_20 --apply
    python scripts/fit_atomic_volumes.py vae-mp-binary --dataset mp_20 --part test
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import numpy as np
import torch

from invdesign.api import charge_balanced
from invdesign.evaluate.generation import generation_metrics
from invdesign.featurize.volume import AtomicVolumes
from invdesign.generator import Generator
from invdesign.surrogate import resolve_checkpoint
from invdesign.train.vae_pipeline import split_structures

KEYS = ("struct_valid", "comp_valid", "cov_r", "cov_p", "emd_density")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="VAE checkpoint (name or folder)")
    parser.add_argument("--dataset", default="mp_20", help="perov_5, carbon_24 or mp_20 (COV "
                                                          "cutoffs)")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--part", choices=["val", "test"], default="val",
                        help="crystals to score against (choose on val; report test once)")
    parser.add_argument("--apply", action="store_true", help="store the volumes in the model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = resolve_checkpoint(args.model)
    generator = Generator.load(folder)
    if args.apply and args.part != "val":
        parser.error("--apply decides on the validation split: drop --part test")
    parts = split_structures(generator)
    train, val = parts.train, getattr(parts, args.part)
    volumes = AtomicVolumes.fit(train)
    relative = np.array([volumes.predict(s.composition) / s.volume - 1 for s in val])
    error = float(np.nanmedian(np.abs(relative)))
    report: dict = {"date": str(date.today()), "n_train": len(train), "part": args.part,
                    "n_part": len(val), "median_abs_relative_volume_error": error}
    print(f"{folder.name}: volumes of {len(volumes.volumes)} elements from {len(train)} training "
          f"crystals; {args.part} crystals' volumes within {error:.1%} (median)")
    generator.volumes = None
    decoded = generator.sample(args.n_samples, seed=0, accept=charge_balanced)[0]
    ratio = np.array([s.volume / volumes.predict(s.composition) for s in decoded
                      if s is not None])
    q1, median, q3 = np.nanpercentile(ratio, [25, 50, 75])
    report["decoded_over_predicted_volume"] = {"median": float(median), "q1": float(q1),
                                               "q3": float(q3)}
    print(f"decoded cell volume / predicted volume: median {median:.3f}, middle half "
          f"{q1:.3f}-{q3:.3f}")
    generator.volumes = volumes
    scaled = generator.sample(args.n_samples, seed=0, accept=charge_balanced)[0]
    print("| samples | " + " | ".join(KEYS) + " |\n|---" + "|---" * len(KEYS) + "|")
    for name, samples in (("as decoded", decoded), ("scaled to atomic volumes", scaled)):
        metrics = generation_metrics(samples, val, args.dataset, n_jobs=args.jobs)
        report[name] = {k: float(metrics[k]) for k in KEYS}
        print(f"| {name} | " + " | ".join(f"{metrics[k]:.3f}" for k in KEYS) + " |")
    if args.apply:
        generator.meta["atomic_volumes"] = {
            "command": f"python scripts/fit_atomic_volumes.py {args.model} --dataset "
                       f"{args.dataset} --apply", "validation": report}
        generator.save(folder, weights=False)
        print(f"stored {folder / 'atomic_volumes.json'}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
