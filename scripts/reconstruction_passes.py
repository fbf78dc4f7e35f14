"""One-shot reconstruction match rate against the number of denoiser passes, on the validation
and test parts of a checkpoint's split: the evidence for `Generator.reconstruct` taking one pass
whatever number the card gives sampling.

    python scripts/reconstruction_passes.py --model vae-carbon24 --passes 0 1 2 4 12
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from invdesign.evaluate.reconstruction import match_rate_and_rmse
from invdesign.generator import Generator
from invdesign.train.vae_pipeline import split_structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae-carbon24")
    parser.add_argument("--passes", type=int, nargs="+", default=[0, 1, 2, 4, 12],
                        help="passes down the denoiser's ladder (0: not denoised)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/reconstruction_passes.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model)
    if generator.denoiser is None:
        raise SystemExit(f"{args.model} has no denoiser")
    parts = split_structures(generator)
    report: dict[str, dict[str, dict[str, float]]] = {}
    for part in ("val", "test"):
        crystals = getattr(parts, part)
        mu, _ = generator.encode(crystals, refine_steps=0)
        decoded = generator.decode(mu, denoise=False)
        report[part] = {}
        for passes in args.passes:
            refined = decoded if passes == 0 else generator.denoise(decoded, passes=passes)
            report[part][str(passes)] = match_rate_and_rmse(refined, crystals)
            print(part, passes, json.dumps(report[part][str(passes)]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
