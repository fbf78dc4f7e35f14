"""Fit the latent prior (a Gaussian mixture over [z, y] of the training encodings) of a crystal
VAE checkpoint trained without one, in place.

The mixture is fitted to the posterior means of the checkpoint's own training split; its number
of components is chosen by the log-likelihood of the validation split's encodings. No weight
changes. New trainings (`invdesign train vae`) fit it themselves.

    python scripts/fit_latent_prior.py checkpoints/vae-perov5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invdesign.generator import Generator
from invdesign.train.vae_pipeline import PRIOR_REFINE_STEPS, fit_checkpoint_latent_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="VAE checkpoint folder (rewritten)")
    parser.add_argument("--data", type=Path, help="its training file, if moved")
    parser.add_argument("--refine-steps", type=int, default=PRIOR_REFINE_STEPS,
                        help="fit the mixture to latent codes refined by this many steps on "
                             "each crystal's reconstruction error (0: posterior means)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model)
    report = fit_checkpoint_latent_prior(generator, args.data, refine_steps=args.refine_steps)
    generator.save(args.model, weights=False)
    print(f"{args.model}: latent prior with {report['components']} components "
          f"({report['n_train']} training encodings, {report['seconds']:.0f} s)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
