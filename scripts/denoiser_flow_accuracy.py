"""How closely does a refinement schedule follow the denoiser's flow? Distance of each refined
sample from a fine-step reference (the same flow solved with many Euler steps).

Decodes n samples of a checkpoint (seed 0, charge-balanced, not denoised), refines them with
the checkpoint's schedule except for the solver and the number of steps per pass, and prints,
per schedule, the seconds taken and the median / 90th percentile / largest RMS distance of
the atoms from the reference (minimum image, A), and of the cell where it is refined:

    python scripts/denoiser_flow_accuracy.py --model vae-mp-binary --n 1000 \\
        --schedules euler:20 euler:10 multistep:10 multistep:8
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from invdesign.api import charge_balanced
from invdesign.generator import Generator, padded_batches
from invdesign.models.denoiser import SOLVERS, PaddedCrystals
from invdesign.runtime import keep_freed_memory


def distances(got: PaddedCrystals, reference: PaddedCrystals) -> tuple[np.ndarray, np.ndarray]:
    """Per crystal: RMS atom distance (fractional difference, minimum image, in the reference
    cell) and the norm of the cell difference, A."""
    delta = got.frac_coords() - reference.frac_coords()
    delta -= np.round(delta)
    cart = delta @ reference.lattice.double().numpy()
    mask = reference.mask.numpy()
    rms = np.sqrt(((cart ** 2).sum(-1) * mask).sum(1) / mask.sum(1))
    cell = np.linalg.norm((got.lattice - reference.lattice).double().numpy(), axis=(1, 2))
    return rms, cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae-mp-binary")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reference-steps", type=int, default=200,
                        help="Euler steps per pass of the reference solution")
    parser.add_argument("--schedules", nargs="+", default=["euler:20", "multistep:10"],
                        help="SOLVER:STEPS per pass")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    generator = Generator.load(args.model)
    if generator.denoiser is None:
        raise SystemExit(f"{args.model} has no denoiser")
    denoiser = generator.denoiser
    samples, _, _ = generator.sample(args.n, seed=0, denoise=False, accept=charge_balanced)
    work = [batch for _, batch in padded_batches(samples)]  # as sampling refines them
    reference = [denoiser.refine(b, steps=args.reference_steps, solver="euler") for b in work]
    for schedule in args.schedules:
        solver, steps = schedule.split(":")
        if solver not in SOLVERS:
            raise SystemExit(f"unknown solver {solver!r}; one of {SOLVERS}")
        start = time.perf_counter()
        refined = [denoiser.refine(b, steps=int(steps), solver=solver) for b in work]
        seconds = time.perf_counter() - start
        pairs = [distances(r, ref) for r, ref in zip(refined, reference, strict=True)]
        rms = np.concatenate([p[0] for p in pairs])
        cells = np.concatenate([p[1] for p in pairs])
        row = {"model": args.model, "n": len(rms), "solver": solver, "steps": int(steps),
               "passes": denoiser.config.refine_passes, "seconds": round(seconds, 2),
               "rms_median": round(float(np.median(rms)), 4),
               "rms_p90": round(float(np.percentile(rms, 90)), 4),
               "rms_max": round(float(rms.max()), 3)}
        if denoiser.config.refines_cell:
            row.update(cell_median=round(float(np.median(cells)), 4),
                       cell_p90=round(float(np.percentile(cells, 90)), 4))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
