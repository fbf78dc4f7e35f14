"""Why a crystal VAE falls short: composition fit on training vs held-out crystals, where its
encodings sit relative to the prior, and what sampling from the encodings themselves gives.

    python scripts/diagnose_vae.py --model vae-perov5 --dataset perov_5
    python scripts/diagnose_vae.py --model vae-carbon24 --dataset carbon_24 --n-samples 500

Measures, on the checkpoint's stored split:
- exact-composition accuracy of one-shot reconstruction (encoder mean, decoded counts) on up to
  `--n-train` training crystals and on the test crystals: a gap means the pair memorises;
- the offset of the training encodings from the conditional prior's mean, |mu - prior(y)|,
  against sqrt(latent), the norm of a typical prior draw, and the share of the encodings'
  variance in their top 5 principal directions;
- generation metrics (validity, uniqueness, novelty, COV, EMDs against the test split) of
  samples drawn from the training crystals' own posteriors, z = mu_i + T sigma_i eps, at each
  `--temperatures`, beside samples from the prior.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from invdesign.api import Designer
from invdesign.evaluate import generation_metrics
from invdesign.train.vae_pipeline import split_structures
from invdesign.validity import check_structures, validity_rates


def composition_accuracy(designer: Designer, structures) -> float:
    decoded = designer.generator.reconstruct(structures, refine_steps=0)
    same = [d is not None and d.composition == s.composition
            for d, s in zip(decoded, structures, strict=True)]
    return float(np.mean(same)) if same else float("nan")


def sample_metrics(designer: Designer, samples, test, dataset: str, jobs: int) -> dict:
    table = check_structures([s for s in samples if s is not None], reference=designer.reference)
    rates = validity_rates(table)
    metrics = generation_metrics(samples, test, dataset, n_jobs=jobs)
    keys = ("valid", "unique", "novel")
    return {**{k: float(rates[k]) for k in keys},
            **{k: float(metrics[k]) for k in ("cov_r", "cov_p", "emd_density",
                                               "emd_n_elements")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vae-perov5")
    parser.add_argument("--dataset", default="perov_5", help="COV cutoffs: perov_5, carbon_24, "
                        "mp_20")
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/diagnose_vae.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    designer = Designer.load(args.model)
    generator = designer.generator
    train, _, test = split_structures(generator)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(train), min(args.n_train, len(train)), replace=False)
    train = [train[i] for i in pick]
    result: dict = {"model": args.model, "n_train": len(train), "n_test": len(test)}
    result["composition_accuracy"] = {"train": composition_accuracy(designer, train),
                                      "test": composition_accuracy(designer, test)}
    mu, logvar = generator.encode(train)
    with torch.no_grad():
        z = torch.from_numpy(mu)
        offset = (z - generator.model.prior_mean(generator.model.predict_conditions(z))).numpy()
    eig = np.sort(np.linalg.eigvalsh(np.cov(offset.T)))[::-1]
    result["latent"] = {"mean_offset_norm": float(np.linalg.norm(offset, axis=1).mean()),
                        "norm_of_the_mean_offset": float(np.linalg.norm(offset.mean(0))),
                        "prior_draw_norm": float(np.sqrt(mu.shape[1])),
                        "top5_variance_share": float(eig[:5].sum() / eig.sum()),
                        "median_posterior_std": float(np.median(np.exp(0.5 * logvar)))}
    prior = generator.sample(args.n_samples, seed=0)[0]
    result["prior"] = sample_metrics(designer, prior, test, args.dataset, args.jobs)
    for t in args.temperatures:
        idx = rng.integers(len(mu), size=args.n_samples)
        noise = rng.standard_normal((args.n_samples, mu.shape[1]))
        zs = (mu[idx] + t * np.exp(0.5 * logvar[idx]) * noise).astype(np.float32)
        result[f"posteriors_T{t:g}"] = sample_metrics(designer, generator.decode(zs), test,
                                                      args.dataset, args.jobs)
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
