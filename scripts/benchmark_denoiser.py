"""Choose a VAE checkpoint's denoising schedule on its validation split, report it on the test
split.

For each schedule (start noise level, number of steps, fresh noise or not, deterministic
(Euler or second-order multistep) or ancestral steps, cell refined or kept where the denoiser
learnt cell strains, passes down the noise ladder; with `--start random` the decoded positions
are replaced by uniform random ones in the decoded cell, DiffCSP-style) the same prior samples
are refined and scored like `benchmark_generation.py` scores samples (validity, uniqueness,
novelty against the training split, CDVAE COV and EMD) against the checkpoint's *validation*
crystals; the schedule with the best mean of COV-R and COV-P there (ties: validity) is then
scored once against the *test* crystals, beside the one-shot decoder. With `--within P`, the
fastest schedule whose mean COV lies within P points of the best is chosen instead. `--apply`
stores the chosen schedule in the checkpoint.

    python scripts/benchmark_denoiser.py --model vae-carbon24 --dataset carbon_24 --apply
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from invdesign.evaluate.fingerprints import fingerprint_structures
from invdesign.evaluate.generation import generation_metrics
from invdesign.generator import Generator, refine_structures
from invdesign.models.denoiser import SOLVERS
from invdesign.oracle.calculators import get_calculator
from invdesign.oracle.relax import median_relaxation_rmsd
from invdesign.runtime import keep_freed_memory
from invdesign.surrogate import resolve_checkpoint
from invdesign.train.vae_pipeline import split_structures
from invdesign.validity import ReferenceIndex, check_structures, validity_rates

SCHEDULE = ("sigma_start", "steps", "noise", "start", "stochastic", "cell", "passes", "solver")
CHECKS = ("valid", "unique", "novel")
KEYS = ("struct_valid", "comp_valid", "cov_r", "cov_p", "emd_density")


def checks(samples, training: ReferenceIndex) -> dict[str, float]:
    """Validity, uniqueness and novelty against `training` of one set of samples (the same
    whichever split COV is measured against, so computed once per set)."""
    rates = validity_rates(check_structures([s for s in samples if s is not None],
                                            reference=training))
    return {k: float(rates[k]) for k in CHECKS}


def score(samples, reference, dataset: str, jobs: int, fingerprints,
          sample_checks: dict[str, float]) -> dict[str, float]:
    """`sample_checks` (from `checks`) and CDVAE's COV / EMD against `reference`."""
    metrics = generation_metrics(samples, reference, dataset, n_jobs=jobs,
                                 reference_fingerprints=fingerprints)
    return {**sample_checks, **{k: float(metrics[k]) for k in KEYS}}


def valid_only(structures) -> list:
    present = [s for s in structures if s is not None]
    table = check_structures(present)
    return [s for s, ok in zip(present, table["valid"], strict=True) if ok]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True, help="perov_5, carbon_24 or mp_20 (COV "
                                                         "cutoffs)")
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="scale of the latent noise of the prior samples")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.2, 0.35, 0.5, 0.7, 1.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--noise", choices=["yes", "no", "both"], default="both")
    parser.add_argument("--start", choices=["decoded", "random"], default="decoded")
    parser.add_argument("--stochastic", choices=["yes", "no", "both"], default="no")
    parser.add_argument("--solvers", nargs="+", choices=list(SOLVERS), default=["euler"],
                        help="deterministic step rules: Euler, second-order multistep or both")
    parser.add_argument("--cell", choices=["yes", "no", "both"], default="yes",
                        help="refine the cell (denoisers trained with --lattice-noise only)")
    parser.add_argument("--passes", type=int, nargs="+", default=[1],
                        help="times the whole noise ladder is walked, each from the last result")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--relax-n", type=int, default=0,
                        help="also the median CHGNet relaxation RMSD of this many valid samples")
    parser.add_argument("--within", type=float, default=0.0,
                        help="choose the fastest schedule within this many points (percent) "
                             "of the best mean COV; 0: the best")
    parser.add_argument("--apply", action="store_true",
                        help="store the chosen schedule in the checkpoint")
    parser.add_argument("--out", type=Path, default=Path("runs/denoiser"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the CLI does: timings comparable with `invdesign sample`

    generator = Generator.load(args.model)
    if generator.denoiser is None:
        raise SystemExit(f"{args.model} has no denoiser: run `invdesign train denoiser "
                         f"--model {args.model}` first")
    train, val, test = split_structures(generator)
    training = ReferenceIndex(train)
    val_fps, test_fps = (fingerprint_structures(part, n_jobs=args.jobs) for part in (val, test))
    samples = generator.sample(args.n_samples, seed=0, temperature=args.temperature,
                               denoise=False)[0]
    flags = {"yes": [True], "no": [False], "both": [False, True]}
    noises = [False] if args.start == "random" else flags[args.noise]
    cells = flags[args.cell] if generator.denoiser.config.lattice_noise else [False]
    schedules = [{"sigma_start": sigma, "steps": steps, "noise": noise, "start": args.start,
                  "stochastic": stochastic, "cell": cell, "passes": passes, "solver": solver}
                 for sigma, steps, noise, stochastic, cell, passes, solver in itertools.product(
                     args.sigmas, args.steps, noises, flags[args.stochastic], cells,
                     args.passes, args.solvers)
                 if not (stochastic and solver != "euler")]  # multistep: deterministic only
    rows, refined_sets = [], []
    for schedule in schedules:
        start = time.perf_counter()
        refined = refine_structures(generator.denoiser, samples, seed=0, **schedule)
        seconds = time.perf_counter() - start
        row = {**schedule, "seconds_per_1000": 1000 * seconds / len(samples),
               **score(refined, val, args.dataset, args.jobs, val_fps,
                       checks(refined, training))}
        rows.append(row)
        refined_sets.append(refined)
        print(json.dumps(row), flush=True)
    mean_cov = [(row["cov_r"] + row["cov_p"]) / 2 for row in rows]
    best_index = max(range(len(rows)), key=lambda i: (mean_cov[i], rows[i]["valid"]))
    if args.within > 0:
        close = [i for i in range(len(rows))
                 if mean_cov[i] >= mean_cov[best_index] - args.within / 100]
        best_index = min(close, key=lambda i: rows[i]["steps"] * rows[i]["passes"])
    best = rows[best_index]
    chosen_schedule = {k: best[k] for k in SCHEDULE}
    chosen = refined_sets[best_index]
    one_shot = checks(samples, training)
    result = {
        "model": args.model, "n_samples": args.n_samples, "validation": rows,
        "chosen": chosen_schedule,
        "test": {"one-shot decoder": score(samples, test, args.dataset, args.jobs, test_fps,
                                           one_shot),
                 "denoised (chosen schedule)": score(
                     chosen, test, args.dataset, args.jobs, test_fps,
                     {k: best[k] for k in CHECKS})},
        "validation_one_shot": score(samples, val, args.dataset, args.jobs, val_fps, one_shot),
    }
    if args.relax_n:
        calculator = get_calculator("chgnet")
        result["relaxation"] = {
            name: median_relaxation_rmsd(valid_only(structures), calculator, args.relax_n)
            for name, structures in (("one-shot decoder", samples),
                                     ("denoised (chosen schedule)", chosen))}
    print(json.dumps(result["test"], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{Path(args.model).name}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.apply:
        generator.denoiser.config = replace(generator.denoiser.config,
                                            refine_sigma=best["sigma_start"],
                                            refine_steps=best["steps"],
                                            refine_noise=best["noise"],
                                            refine_start=best["start"],
                                            refine_stochastic=best["stochastic"],
                                            refine_cell=best["cell"],
                                            refine_passes=best["passes"],
                                            refine_solver=best["solver"])
        card = generator.meta.setdefault("denoiser", {})
        card["config"] = generator.denoiser.config.to_dict()
        card["schedule"] = {
            **result["chosen"], "chosen_on": (
                "validation split, mean of COV-R and COV-P" if args.within <= 0 else
                f"validation split, fewest network evaluations within {args.within} points "
                "of the best mean of COV-R and COV-P"),
            "test": result["test"], "n_samples": args.n_samples,
            "command": " ".join(["python scripts/benchmark_denoiser.py", *sys.argv[1:]])}
        generator.save(resolve_checkpoint(args.model), weights=False)
    print(json.dumps({"chosen": result["chosen"],
                      "test_denoised": result["test"]["denoised (chosen schedule)"],
                      "relaxation": result.get("relaxation")}))


if __name__ == "__main__":
    main()
