"""Add a number-of-elements head to a crystal VAE trained without one, in place.

The head is fitted on the frozen decoder over the checkpoint's own training split (every other
weight is unchanged) and reported on its validation split; the card records how. New models
train the head jointly (`invdesign train vae`), so this is for older checkpoints.

    python scripts/fit_species_head.py checkpoints/vae-mp-binary
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from invdesign.generator import Generator
from invdesign.train.vae import fit_species_head
from invdesign.train.vae_pipeline import checkpoint_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="VAE checkpoint folder (rewritten)")
    parser.add_argument("--data", type=Path, help="its training file, if moved")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model)
    if generator.config.max_species:
        raise SystemExit(f"{args.model} already has a number-of-elements head")
    start = time.perf_counter()
    train, val = checkpoint_examples(generator, args.data)
    model, accuracy = fit_species_head(generator.model, train, val, epochs=args.epochs)
    seconds = time.perf_counter() - start
    generator.model = model.eval()
    generator.meta["species_head"] = {
        "fitted": "after training, on the frozen decoder (scripts/fit_species_head.py)",
        "epochs": args.epochs, "n_train": len(train), "n_val": len(val),
        "val_accuracy": accuracy, "seconds": seconds}
    generator.save(args.model)
    print(f"{args.model}: number-of-elements head, validation accuracy {accuracy:.1%} "
          f"({len(val)} crystals), {seconds:.0f} s")


if __name__ == "__main__":
    main()
