"""Where the time of de-duplicating generated crystals goes, and whether a cheap prefilter could
cut it (issue #4's speed target).

Samples a checkpoint, runs `unique_mask` in one process with every structure comparison timed
and recorded (`fit_reduced` since session 22, pymatgen's `StructureMatcher.fit` before), then
asks of the recorded pairs:

* would a fingerprint tell matches from non-matches? (Gaussian-smoothed radial distribution of
  each reduced cell at one cubic angstrom per site, L1 distance; AUC of "closer means match");
* how many non-matching pairs an exact lattice bound rules out: `fit(a, b)` needs vectors of
  a's lattice within a factor 1 + ltol of each of b's cell lengths, so a's successive minima
  (its Niggli cell lengths, sorted) must lie below (1 + ltol) x b's sorted lengths, after both
  are scaled to the same volume.

    python scripts/profile_uniqueness.py --model vae-carbon24 --n 2000 --seed 123
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure
from scipy.stats import mannwhitneyu

from invdesign.generator import Generator
from invdesign.validity.uniqueness import (
    MatchSettings,
    ReferenceIndex,
    prepare_structure,
    unique_mask,
)

GRID = np.linspace(0.0, 2.5, 51)  # radial grid, units of (volume per site)^(1/3)
WIDTH = 0.08


def radial_fingerprint(structure: Structure) -> np.ndarray:
    """Smoothed pair-distance distribution per site, at one cubic angstrom per site."""
    scaled = structure.copy()
    scaled.scale_lattice(len(scaled))
    _, _, _, dist = scaled.get_neighbor_list(GRID[-1] + 3 * WIDTH)
    dist = dist[dist > 1e-8]
    return np.exp(-0.5 * ((GRID[None] - dist[:, None]) / WIDTH) ** 2).sum(0) / len(scaled)


def scaled_lengths(structure: Structure, niggli: bool) -> np.ndarray:
    """Sorted cell lengths (successive minima with `niggli`) over the cube root of the volume."""
    lattice = structure.lattice.get_niggli_reduced_lattice() if niggli else structure.lattice
    return np.sort(lattice.abc) / structure.volume ** (1 / 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae-carbon24")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/profile_uniqueness.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generator = Generator.load(args.model)
    start = time.perf_counter()
    samples = [s for s in generator.sample(args.n, seed=args.seed)[0] if s is not None]
    sample_s = time.perf_counter() - start
    start = time.perf_counter()
    items = [item for item in map(prepare_structure, samples) if item.reduced is not None]
    reduced = [item.reduced for item in items]
    reduce_s = time.perf_counter() - start
    index_of = {id(item): i for i, item in enumerate(items)}

    pairs: list[tuple[int, int, bool, float]] = []
    fits = ReferenceIndex._fits

    def timed_fits(self, first, second):
        tic = time.perf_counter()
        matched = fits(self, first, second)
        pairs.append((index_of[id(first)], index_of[id(second)], bool(matched),
                      time.perf_counter() - tic))
        return matched

    ReferenceIndex._fits = timed_fits
    try:
        start = time.perf_counter()
        unique = unique_mask(items)
        unique_s = time.perf_counter() - start
    finally:
        ReferenceIndex._fits = fits

    a, b = (np.array([p[i] for p in pairs], dtype=int) for i in (0, 1))
    matched = np.array([p[2] for p in pairs], dtype=bool)
    seconds = np.array([p[3] for p in pairs])
    fingerprints = np.array([radial_fingerprint(r) for r in reduced])
    distance = np.abs(fingerprints[a] - fingerprints[b]).sum(1) * (GRID[1] - GRID[0])
    auc = (mannwhitneyu(-distance[matched], -distance[~matched]).statistic
           / (matched.sum() * (~matched).sum())) if matched.any() and (~matched).any() else None
    minima = np.array([scaled_lengths(r, niggli=True) for r in reduced])
    lengths = np.array([scaled_lengths(r, niggli=False) for r in reduced])
    ltol = MatchSettings().ltol
    possible = np.all(minima[a] < (1 + ltol) * lengths[b] * (1 + 1e-3), axis=1)
    report = {
        "model": args.model, "n": args.n, "decoded": len(samples), "seed": args.seed,
        "sample_s": round(sample_s, 1), "reduce_s": round(reduce_s, 1),
        "unique_s_one_process": round(unique_s, 1), "unique": float(unique.mean()),
        "fits": len(pairs), "matches": int(matched.sum()),
        "match_s": round(float(seconds[matched].sum()), 1),
        "non_match_s": round(float(seconds[~matched].sum()), 1),
        "ms_per_non_match": round(1e3 * float(seconds[~matched].mean()), 2),
        "rdf_l1_median_match": float(np.median(distance[matched])),
        "rdf_l1_median_non_match": float(np.median(distance[~matched])),
        "rdf_auc": None if auc is None else float(auc),
        "lattice_bound_matches_ruled_out": int((matched & ~possible).sum()),
        "lattice_bound_non_matches_ruled_out": float((~possible[~matched]).mean()),
        "lattice_bound_time_saved": float(seconds[~possible].sum() / seconds.sum()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
