"""Seconds to refine decoded samples with a checkpoint's denoiser, with or without the CLI's
malloc setting (`invdesign.runtime.keep_freed_memory`).

Decodes n samples of the shipped sampler (seed 0, not timed), then times their refinement
in this process. Run each variant in a fresh process, alternating, to compare:

    python scripts/time_denoiser.py --model vae-carbon24 --n 300 --passes 2
    python scripts/time_denoiser.py --model vae-carbon24 --n 300 --passes 2 --keep-freed-memory
    python scripts/time_denoiser.py --model vae-mp-binary --n 10000 --keep-freed-memory --jobs 2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from invdesign.api import Designer, charge_balanced
from invdesign.runtime import keep_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae-carbon24")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--passes", type=int, default=None,
                        help="passes down the noise ladder (default: the card's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="apply the CLI's malloc setting first")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes of one torch thread each (as `sample --jobs`)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory() if args.keep_freed_memory else False
    generator = Designer.load(args.model).generator
    structures, _, _ = generator.sample(args.n, seed=0, denoise=False, accept=charge_balanced)
    start = time.perf_counter()
    generator.denoise(structures, seed=0, passes=args.passes, n_jobs=args.jobs)
    print(json.dumps({"model": args.model, "n": args.n, "passes": args.passes,
                      "jobs": args.jobs, "keep_freed_memory": kept,
                      "seconds": round(time.perf_counter() - start, 2)}))


if __name__ == "__main__":
    main()
