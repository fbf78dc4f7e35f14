"""Re-score a VAE checkpoint's held-out reconstruction and store it in its card.

A card's `metrics.test_reconstruction` is written when the model is trained; heads and priors
fitted later (`fit_species_head.py`, `fit_latent_prior.py`) change what the checkpoint does, so
`invdesign models` would show stale figures. This recomputes them on the same stored test split
(latent refinement as `invdesign evaluate reconstruction`) and writes them to the card (the
checkpoint's record; the weights file is left as it is).

    python scripts/rescore_vae_card.py checkpoints/vae-perov5 checkpoints/vae-mp-binary
"""

from __future__ import annotations

import argparse
import json
from datetime import date

import torch

from invdesign.generator import REFINE_STEPS, Generator
from invdesign.models.checkpoint import update_card_meta
from invdesign.train.vae_pipeline import evaluate_reconstruction, held_out_structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--refine-steps", type=int, default=REFINE_STEPS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for folder in args.folders:
        generator = Generator.load(folder)
        result = evaluate_reconstruction(generator, held_out_structures(generator),
                                         refine_steps=args.refine_steps)
        metrics = generator.meta.setdefault("metrics", {})
        metrics["test_reconstruction"] = result | {"scored": str(date.today())}
        update_card_meta(folder, generator.meta)
        print(folder, json.dumps(result))


if __name__ == "__main__":
    main()
