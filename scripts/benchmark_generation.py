"""CDVAE-style table for the shipped crystal VAEs, on each checkpoint's held-out test split.

For each model: reconstruction (match rate, RMSE), generation metrics of prior samples (validity,
COV-R/P, EMDs, uniqueness, novelty), sampling throughput (n samples decoded, validity-checked
and de-duplicated), median CHGNet relaxation RMSD of valid samples, and for K/G-conditioned
models the conditional-sampling error measured with the surrogate ensemble.

Samples come from the checkpoint's default sampler (the mixture fitted to its training
encodings when it has one). The sampler table sets them beside the VAE's Gaussian prior and
beside real crystals: `--n-samples` crystals drawn from the training split, scored exactly like
samples against the same test split. Real crystals show what COV and the EMDs can reach on a
test split of this size (COV-P falls and COV-R rises as the test split shrinks).

    python scripts/benchmark_generation.py --out runs/benchmark_generation.json
    python scripts/benchmark_generation.py --models vae-mp-binary --n-samples 500
    python scripts/benchmark_generation.py --reconstruction-only
    python scripts/benchmark_generation.py --throughput-only --jobs 2
    python scripts/benchmark_generation.py --models vae-carbon24 --relaxed-coverage 200

`--relaxed-coverage N` scores N samples of the shipped sampler twice: as decoded and after a
CHGNet relaxation of each (cell and ions, `invdesign.screening.relax_structures`; results stream
to `runs/relaxed-coverage-<model>.csv`, so a rerun resumes) at the pressure the checkpoint's
card records for its data: 10 GPa for vae-carbon24, the pressure of the random search that
produced Carbon-24 (Pickard 2020); at zero pressure CHGNet expands them far below the
dataset's densities. A failed relaxation leaves its sample out of the relaxed set (counted
invalid). This is a post-processing step, not CDVAE's protocol, which scores raw samples.

Reconstruction encodes with latent refinement (`--refine-steps`, our encoder) and also reports
the one-shot encoder alone, CDVAE's protocol.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from invdesign.api import Designer, charge_balanced
from invdesign.evaluate import fingerprint_structures, generation_metrics, sample_scores
from invdesign.generator import SCREEN
from invdesign.oracle.calculators import get_calculator
from invdesign.oracle.relax import median_relaxation_rmsd
from invdesign.runtime import keep_freed_memory
from invdesign.screening import relax_structures
from invdesign.train.vae_pipeline import (
    evaluate_reconstruction,
    split_structures,
)
from invdesign.validity import check_structures, validity_rates

DATASETS = {"vae-perov5": "perov_5", "vae-carbon24": "carbon_24", "vae-mp-binary": "mp_20"}


def dataset_of(name: str, meta: dict) -> str:
    """The COV cutoffs' dataset of a checkpoint: by shipped name, else by its training file's
    folder (perov_5, carbon_24), else MP-20's."""
    if name in DATASETS:
        return DATASETS[name]
    folder = Path(str(meta.get("data", {}).get("path", ""))).parent.name
    return folder if folder in ("perov_5", "carbon_24") else "mp_20"


def throughput(designer: Designer, n: int, jobs: int, balance: bool = True
               ) -> dict[str, float]:
    """Seconds to sample n crystals, check validity and de-duplicate them (`jobs` processes);
    `balance`: the shipped sampler (charge-balanced decoding, the checkpoint's stoichiometric
    patterns and best-of-k choice); else the raw decoder, one code per sample."""
    start = time.perf_counter()
    structures = designer.generator.sample(n, seed=123, n_jobs=jobs,
                                           accept=charge_balanced if balance else None,
                                           stoichiometry=None if balance else False,
                                           best_of=None if balance else 1)[0]
    decoded = time.perf_counter()
    table = check_structures([s for s in structures if s is not None], n_jobs=jobs)
    checked = time.perf_counter()
    return {"n": n, "sample_s": decoded - start, "validity_and_unique_s": checked - decoded,
            "total_s": checked - start, "unique": float(table["unique"].mean())}


def conditional_error(designer: Designer, n: int, prior: str = "auto", screen: int = SCREEN
                      ) -> dict[str, object]:
    """|surrogate K - requested K| of conditioned vs unconditional samples at 3 targets.

    `screen`: latent draws per conditional sample, screened by the VAE's own property head
    (1: none); the surrogate that judges the samples takes no part in sampling."""
    surrogate = designer.surrogate
    name = "bulk_modulus_vrh"
    bank = designer.generator.to_physical(designer.generator.model.condition_bank.numpy())
    col = designer.generator.condition_index(name)
    targets = np.percentile(bank[:, col], [20, 50, 90])
    free = [s for s in designer.generator.sample(n, seed=7, prior=prior)[0] if s is not None]
    free_k = surrogate.predict(free, derived=False)[name].to_numpy()
    rows = []
    for target in targets:
        cond = [s for s in designer.generator.sample(n, {name: float(target)}, seed=8,
                                                     prior=prior, screen=screen)[0]
                if s is not None]
        k = surrogate.predict(cond, derived=False)[name].to_numpy()
        table = check_structures(cond, reference=designer.reference)
        vun = (table["valid"] & table["unique"] & table["novel"].fillna(False)).to_numpy(bool)
        rows.append({"target_GPa": float(target), "valid_unique_novel": float(vun.mean()),
                     "conditional_mae_log10": float(np.mean(np.abs(np.log10(k / target)))),
                     "unconditional_mae_log10": float(np.mean(np.abs(np.log10(free_k
                                                                                / target)))),
                     "n": len(k)})
    lo, hi = float(targets[0]), float(targets[1])
    ranged = [s for s in designer.generator.sample(n, {name: (lo, hi)}, seed=9,
                                                   prior=prior, screen=screen)[0]
              if s is not None]
    k = surrogate.predict(ranged, derived=False)[name].to_numpy()
    return {"targets": rows, "range": {"lo": lo, "hi": hi, "n": len(k),
                                       "share_inside": float(np.mean((k >= lo) & (k <= hi))),
                                       "share_inside_unconditional": float(
                                           np.mean((free_k >= lo) & (free_k <= hi)))}}


def scorer(designer: Designer, test, dataset: str, jobs: int
           ) -> Callable[[Sequence[Structure | None]], dict[str, float]]:
    """`sample_scores` of sample sets against `test`, its fingerprints computed once."""
    fingerprints = fingerprint_structures(test, n_jobs=jobs)
    return lambda samples: sample_scores(samples, test, dataset, reference=designer.reference,
                                         held_out_fingerprints=fingerprints, n_jobs=jobs)


def sampler_comparison(designer: Designer, train, test, dataset: str, args: argparse.Namespace
                       ) -> dict[str, dict[str, float]]:
    """The shipped sampler (charge-balanced decoding, kept to the checkpoint's stoichiometric
    patterns where it has them, its best-of-k choice), the fitted latent prior and the
    Gaussian prior with the raw decoder (none of these, one code per sample: the figures
    comparable with CDVAE's), and real training crystals."""
    generator = designer.generator
    score = scorer(designer, test, dataset, args.jobs)
    shipped = generator.sample(args.n_samples, seed=0, accept=charge_balanced)[0]
    rows = {"shipped sampler (charge-balanced decoding)": score(shipped)}
    if generator.latent_prior is not None:
        raw = generator.sample(args.n_samples, seed=0, prior="fitted", stoichiometry=False,
                               best_of=1)[0]
        same = all((a is None and b is None) or (a is not None and b is not None and a == b)
                   for a, b in zip(shipped, raw, strict=True))  # nothing needed balancing
        rows["fitted prior, raw decoder"] = (
            rows["shipped sampler (charge-balanced decoding)"] if same
            else score(raw))
    if not args.baselines:
        return rows
    rows["Gaussian prior, raw decoder"] = score(
        generator.sample(args.n_samples, seed=0, prior="gaussian", stoichiometry=False,
                         best_of=1)[0])
    pick = np.random.default_rng(0).choice(len(train), min(args.n_samples, len(train)),
                                           replace=False)
    rows["real crystals (training split)"] = score([train[i] for i in pick])
    return rows


def relaxed_coverage(designer: Designer, name: str, test, dataset: str,
                     args: argparse.Namespace) -> dict[str, object]:
    """Generation metrics of `args.relaxed_coverage` samples as decoded and after a CHGNet
    relaxation of each, with the relaxations' success rate, median RMSD and seconds."""
    samples = designer.generator.sample(args.relaxed_coverage, seed=0,
                                        accept=charge_balanced)[0]
    decoded = [s for s in samples if s is not None]
    pressure = designer.generator.data_pressure  # the card's: 10 GPa for vae-carbon24
    start = time.perf_counter()
    relaxed = relax_structures(decoded, "chgnet", workers=args.jobs, pressure=pressure,
                               cache=Path("runs") / f"relaxed-coverage-{name}.csv")
    seconds = time.perf_counter() - start
    ok = [r for r in relaxed if r.status == "ok"]
    rmsd = [r.rmsd for r in ok if np.isfinite(r.rmsd)]
    score = scorer(designer, test, dataset, args.jobs)
    return {"n": len(samples), "decoded": len(decoded), "pressure_GPa": pressure,
            "relaxed_ok": len(ok),
            "median_rmsd_A": float(np.median(rmsd)) if rmsd else float("nan"),
            "relax_seconds": seconds,
            "as_decoded": score(samples),
            "relaxed": score([r.structure for r in relaxed]
                             + [None] * (len(samples) - len(decoded)))}


def benchmark(name: str, args: argparse.Namespace) -> dict[str, object]:
    designer = Designer.load(name, surrogate="auto")
    meta = designer.generator.meta
    parts = split_structures(designer.generator)
    test = getattr(parts, args.part)
    dataset = dataset_of(name, meta)
    result: dict[str, object] = {"model": name, "split": meta["split"]["sizes"],
                                 "scored_on": args.part,
                                 "train_seconds": meta.get("train_seconds")}
    if args.relaxed_coverage:
        result["relaxed_coverage"] = relaxed_coverage(designer, name, test, dataset, args)
        return result
    if args.throughput_only:
        result["throughput"] = throughput(designer, args.throughput_n, args.jobs,
                                          args.charge_balance)
        return result
    if args.conditional_only:
        return result | conditional_variants(designer, args.n_conditional)
    if args.samplers_only:
        result["samplers"] = sampler_comparison(designer, parts.train, test, dataset, args)
        return result
    denoise = {"auto": None, "yes": True, "no": False}[args.denoise_reconstruction]
    result["reconstruction"] = evaluate_reconstruction(designer.generator, test,
                                                       refine_steps=args.refine_steps,
                                                       denoise=denoise)
    if args.reconstruction_only:
        return result
    samples = designer.generator.sample(args.n_samples, seed=0, accept=charge_balanced)[0]
    table = check_structures([s for s in samples if s is not None],
                             reference=designer.reference)
    result["validity"] = validity_rates(table) | {
        "decoded": float(np.mean([s is not None for s in samples]))}
    result["generation"] = generation_metrics(samples, test, dataset, n_jobs=args.jobs)
    valid = [s for s in samples if s is not None]
    ok = table["valid"].to_numpy(dtype=bool)
    vun = ok & table["unique"].to_numpy(dtype=bool) & table["novel"].fillna(False).to_numpy(
        dtype=bool)
    result["valid_unique_novel"] = float(vun.sum() / len(samples))
    result["throughput"] = throughput(designer, args.throughput_n, args.jobs)
    if args.relax_n:
        result["relaxation"] = median_relaxation_rmsd(
            [s for s, good in zip(valid, ok, strict=True) if good], get_calculator("chgnet"),
            args.relax_n)
    result["samplers"] = sampler_comparison(designer, parts.train, test, dataset, args)
    result.update(conditional_variants(designer, args.n_conditional))
    return result


def conditional_variants(designer: Designer, n: int) -> dict[str, dict]:
    """Conditional error of the default sampler, without the head screen, and with the
    Gaussian prior (K-conditioned models with a surrogate only)."""
    if designer.surrogate is None or "bulk_modulus_vrh" not in designer.generator.conditions:
        return {}
    out = {"conditional": conditional_error(designer, n),
           "conditional_unscreened": conditional_error(designer, n, screen=1)}
    if designer.generator.latent_prior is not None:
        out["conditional_gaussian_prior"] = conditional_error(designer, n, prior="gaussian")
    return out


def conditional_markdown(results: dict[str, dict]) -> str:
    """Conditional against unconditional error (MAE log10 K) per sampler and target."""
    lines = ["| model | sampler | requested K (GPa) | conditional | unconditional | ratio "
             "| valid+unique+novel |", "|" + "---|" * 7]
    for name, r in results.items():
        for key in ("conditional", "conditional_unscreened", "conditional_gaussian_prior"):
            for row in r.get(key, {}).get("targets", []):
                c, u = row["conditional_mae_log10"], row["unconditional_mae_log10"]
                lines.append(f"| {name} | {key} | {row['target_GPa']:.1f} | {c:.3f} | {u:.3f} "
                             f"| {u / c:.1f}x | {row['valid_unique_novel']:.1%} |")
            if key in r:
                rng = r[key]["range"]
                lines.append(f"| {name} | {key} | range {rng['lo']:.1f}-{rng['hi']:.1f}: "
                             f"share inside | {rng['share_inside']:.1%} | "
                             f"{rng['share_inside_unconditional']:.1%} | | |")
    return "\n".join(lines)


def reconstruction_markdown(results: dict[str, dict]) -> str:
    """Reconstruction of each model's test split, refined and one-shot encoder."""
    lines = ["| model | test n | match rate | RMSE | one-shot match rate | one-shot RMSE "
             "| test crystals valid (ceiling) | match, validity not required "
             "| refine steps | seconds (refined) |", "|" + "---|" * 10]
    for name, r in results.items():
        rec = r["reconstruction"]
        lines.append(f"| {name} | {rec['n']} | {rec['match_rate']:.1%} | {rec['rmse']:.4f} | "
                     f"{rec['amortised_match_rate']:.1%} | {rec['amortised_rmse']:.4f} | "
                     f"{rec['ground_truth_valid']:.1%} | {rec['match_rate_any_validity']:.1%} | "
                     f"{rec['refine_steps']} | {rec['decode_seconds']:.1f} |")
    return "\n".join(lines)


def markdown(results: dict[str, dict]) -> str:
    """The CDVAE-style table of all models, for BENCHMARKS.md."""
    lines = ["| model | split (train/val/test) | match rate | RMSE | one-shot match "
             "| struct valid | comp valid "
             "| COV-R | COV-P | EMD density | EMD #elements | unique | novel | valid+unique+novel "
             "| median CHGNet RMSD (A) | train min |",
             "|" + "---|" * 16]
    for name, r in results.items():
        g, v, rec = r["generation"], r["validity"], r["reconstruction"]
        relax = r.get("relaxation", {}).get("median_rmsd_A", float("nan"))
        lines.append(
            f"| {name} | {'/'.join(map(str, r['split']))} | {rec['match_rate']:.1%} | "
            f"{rec['rmse']:.4f} | {rec['amortised_match_rate']:.1%} | "
            f"{g['struct_valid']:.1%} | {g['comp_valid']:.1%} | "
            f"{g['cov_r']:.1%} | {g['cov_p']:.1%} | {g['emd_density']:.3f} | "
            f"{g['emd_n_elements']:.4f} | {v['unique']:.1%} | {v['novel']:.1%} | "
            f"{r['valid_unique_novel']:.1%} | {relax:.3f} | {r['train_seconds'] / 60:.1f} |")
    return "\n".join(lines)


def samplers_markdown(results: dict[str, dict]) -> str:
    """Each model's samplers beside real crystals of its training split."""
    lines = ["| model | sampler | struct valid | comp valid | valid | unique | novel "
             "| valid+unique+novel | COV-R | COV-P | EMD density | EMD #elements |",
             "|" + "---|" * 12]
    for name, r in results.items():
        for sampler, m in r.get("samplers", {}).items():
            lines.append(
                f"| {name} | {sampler} | {m['struct_valid']:.1%} | {m['comp_valid']:.1%} | "
                f"{m['valid']:.1%} | {m['unique']:.1%} | "
                f"{m['novel']:.1%} | {m['valid_unique_novel']:.1%} | {m['cov_r']:.1%} | "
                f"{m['cov_p']:.1%} | {m['emd_density']:.3f} | {m['emd_n_elements']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DATASETS))
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--throughput-n", type=int, default=10000)
    parser.add_argument("--relax-n", type=int, default=20)
    parser.add_argument("--n-conditional", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_generation.json"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--refine-steps", type=int, default=200,
                        help="latent refinement steps when reconstructing (0: one-shot only)")
    parser.add_argument("--denoise-reconstruction", choices=["auto", "yes", "no"],
                        default="auto", help="denoise latent-refined reconstructions (auto: "
                        "no; one-shot reconstructions are denoised when the checkpoint can)")
    parser.add_argument("--reconstruction-only", action="store_true",
                        help="only the reconstruction table")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the sampling throughput (JSON)")
    parser.add_argument("--conditional-only", action="store_true",
                        help="only the conditional-sampling error table")
    parser.add_argument("--charge-balance", action=argparse.BooleanOptionalAction,
                        default=True, help="throughput with charge-balanced decoding (the "
                        "shipped sampler) or the raw decoder")
    parser.add_argument("--part", choices=["test", "val"], default="test",
                        help="held-out part scored against: the test split (reported figures) "
                             "or the validation split (for choosing between variants)")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                        help="sampler table: also the Gaussian prior and real crystals (their "
                             "rows do not depend on the fitted prior)")
    parser.add_argument("--samplers-only", action="store_true",
                        help="only the sampler comparison table")
    parser.add_argument("--relaxed-coverage", type=int, default=0, metavar="N",
                        help="only: N samples scored as decoded and after CHGNet relaxation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the CLI does: timings comparable with `invdesign sample`
    results = {}
    for name in args.models:
        results[name] = benchmark(name, args)
        print(json.dumps(results[name], indent=1, default=float), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))
    if args.throughput_only or args.relaxed_coverage:
        return
    if args.conditional_only:
        print(conditional_markdown(results))
    elif args.reconstruction_only:
        print(reconstruction_markdown(results))
    elif args.samplers_only:
        print(samplers_markdown(results))
    else:
        print(markdown(results))
        print(samplers_markdown(results))
        print(conditional_markdown(results))


if __name__ == "__main__":
    main()
