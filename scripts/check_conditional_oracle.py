"""Conditional sampling judged by physics: the CHGNet oracle's K of conditional samples.

`benchmark_generation.py` judges conditional samples with the surrogate ensemble, and the
default sampler screens decoded crystals with the VAE's own encoder and property head. Both
learned from the same DFT moduli, so this script asks an independent judge: the CHGNet oracle
relaxes the first `--n` valid samples of each group and computes their elastic tensor (no
thermal stage). Groups:
conditional samples with the screen (default), without it, and unconditional samples, at the
same three requested bulk moduli (20th, 50th, 90th percentile of the training data) and seeds
as the benchmark. K is used where the oracle found the relaxed cell mechanically stable.

    python scripts/check_conditional_oracle.py --model vae-mp-binary --n 10 --workers 2

The per-structure oracle CSV under `--out` is resumable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from invdesign.generator import SCREEN, Generator
from invdesign.oracle import OracleConfig, run_many
from invdesign.validity import check_structures

NAME = "bulk_modulus_vrh"


def valid_first(structures, n: int) -> list:
    """The first n structures that pass the validity checks (decoded, SMACT, distances)."""
    decoded = [s for s in structures if s is not None]
    table = check_structures(decoded)
    return [s for s, ok in zip(decoded, table["valid"].to_numpy(bool), strict=True) if ok][:n]


def groups(generator: Generator, n_samples: int, n: int) -> dict[str, list]:
    """(group name -> first n valid samples) for each target and sampler, plus unconditional."""
    bank = generator.to_physical(generator.model.condition_bank.numpy())
    targets = np.percentile(bank[:, generator.condition_index(NAME)], [20, 50, 90])
    out = {"unconditional": valid_first(generator.sample(n_samples, seed=7)[0], n)}
    for target in targets:
        for label, screen in (("screened", SCREEN), ("unscreened", 1)):
            samples = generator.sample(n_samples, {NAME: float(target)}, seed=8,
                                       screen=screen)[0]
            out[f"{label} K={target:.1f}"] = valid_first(samples, n)
    return out


def summary(results: pd.DataFrame, members: dict[str, list[str]]) -> str:
    """Markdown: oracle K of each group against each requested value (MAE log10)."""
    ok = results[results["mechanically_stable"].astype(str) == "True"].set_index("id")
    free = np.log10(ok.loc[[i for i in members["unconditional"] if i in ok.index], "K_vrh"]
                    .astype(float).to_numpy())
    lines = ["| requested K (GPa) | sampler | stable / run | oracle K median (GPa) "
             "| MAE log10 (oracle K vs request) | unconditional samples' MAE log10 | ratio |",
             "|" + "---|" * 7]
    for group, ids in members.items():
        if group == "unconditional":
            continue
        label, target = group.split(" K=")
        target = float(target)
        k = ok.loc[[i for i in ids if i in ok.index], "K_vrh"].astype(float).to_numpy()
        mae = float(np.mean(np.abs(np.log10(k) - np.log10(target)))) if len(k) else np.nan
        base = float(np.mean(np.abs(free - np.log10(target))))
        lines.append(f"| {target:.1f} | {label} | {len(k)} / {len(ids)} | "
                     f"{np.median(k) if len(k) else np.nan:.0f} | {mae:.3f} | {base:.3f} | "
                     f"{base / mae:.1f}x |")
    lines.append(f"\nunconditional: {len(free)} / {len(members['unconditional'])} stable, "
                 f"oracle K median {10 ** np.median(free):.0f} GPa")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vae-mp-binary")
    parser.add_argument("--n", type=int, default=10, help="valid samples per group")
    parser.add_argument("--n-samples", type=int, default=300,
                        help="samples drawn per group (as in benchmark_generation)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/conditional_oracle"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = Generator.load(args.model)
    members: dict[str, list[str]] = {}
    items = []
    for group, structures in groups(generator, args.n_samples, args.n).items():
        ids = [f"{group.replace(' ', '_')}-{i}" for i in range(len(structures))]
        members[group] = ids
        items += list(zip(ids, structures, strict=True))
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_many(items, args.out / "oracle.csv", workers=args.workers,
                       config=OracleConfig(thermal=False))
    print(summary(results, members))


if __name__ == "__main__":
    main()
