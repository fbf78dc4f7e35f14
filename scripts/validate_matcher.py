"""Check `fit_reduced` against pymatgen's `StructureMatcher.fit` and time both.

Takes generated samples of a checkpoint (or the structures of a dataset), reduces them as
uniqueness does, and compares the two on random pairs that share a prefilter key (the pairs
uniqueness and novelty actually test). `--jitter` adds, for each structure drawn, a copy with
its sites shuffled, its origin shifted and every atom moved by a Gaussian of that many
angstroms, so that both answers near the `stol` boundary are exercised.

    python scripts/validate_matcher.py --model vae-carbon24 --n 1000 --pairs 4000
    python scripts/validate_matcher.py --model vae-mp-binary --n 1000 --pairs 4000 --jitter 0.3
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from invdesign.data import load_dataset
from invdesign.generator import Generator
from invdesign.validity.matching import fit_reduced
from invdesign.validity.uniqueness import MatchSettings, PreparedStructure, prepare_structure


def jittered(structure: Structure, sigma: float, rng: np.random.Generator) -> Structure:
    """`structure` with shuffled sites, a shifted origin and Gaussian displacements."""
    order = rng.permutation(len(structure))
    cart = structure.cart_coords[order] + rng.normal(0, sigma, (len(structure), 3))
    copy = Structure(structure.lattice, [structure.species[i] for i in order], cart,
                     coords_are_cartesian=True)
    copy.translate_sites(range(len(copy)), rng.random(3), to_unit_cell=True)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint to sample")
    source.add_argument("--data", type=Path, help="dataset file whose structures to compare")
    parser.add_argument("--n", type=int, default=1000, help="samples (or structures) to draw")
    parser.add_argument("--pairs", type=int, default=4000, help="pairs to compare")
    parser.add_argument("--jitter", type=float, default=0.0, help="A; 0 for no jittered copies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    if args.model:
        structures = [s for s in Generator.load(args.model).sample(args.n, seed=args.seed)[0]
                      if s is not None]
    else:
        records = load_dataset(args.data).records
        picks = rng.permutation(len(records))[:args.n]
        structures = [records[i].structure for i in picks]
    items = [prepare_structure(s) for s in structures]
    if args.jitter > 0:
        items += [prepare_structure(jittered(s, args.jitter, rng)) for s in structures]
    items = [item for item in items if item.cell is not None]

    groups: dict = defaultdict(list)
    for i, item in enumerate(items):
        groups[item.key].append(i)
    pairs = [(a, b) for group in groups.values() for a in group for b in group if a != b]
    random.Random(args.seed).shuffle(pairs)
    pairs = pairs[:args.pairs]

    settings = MatchSettings()
    matcher = settings.matcher()

    def reference(first: PreparedStructure, second: PreparedStructure) -> bool:
        return matcher.fit(first.reduced, second.reduced, skip_structure_reduction=True)

    def batched(first: PreparedStructure, second: PreparedStructure) -> bool:
        return fit_reduced(first.cell, second.cell, ltol=settings.ltol, stol=settings.stol,
                           angle_tol=settings.angle_tol)

    answers, seconds = {}, {}
    for name, fit in (("pymatgen", reference), ("fit_reduced", batched)):
        start = time.perf_counter()
        answers[name] = np.array([fit(items[a], items[b]) for a, b in pairs])
        seconds[name] = time.perf_counter() - start
    differ = np.nonzero(answers["pymatgen"] != answers["fit_reduced"])[0]
    sizes = np.array([len(items[a].cell) for a, _ in pairs])
    report = {
        "source": args.model or str(args.data), "n": args.n, "jitter": args.jitter,
        "seed": args.seed, "structures": len(items), "pairs": len(pairs),
        "median_sites": float(np.median(sizes)) if len(sizes) else None,
        "matches": int(answers["pymatgen"].sum()), "disagreements": len(differ),
        "disagreeing_pairs": [  # the cells themselves, to reproduce
            {"pymatgen": bool(answers["pymatgen"][i]),
             "first": items[pairs[i][0]].reduced.as_dict(),
             "second": items[pairs[i][1]].reduced.as_dict()} for i in differ[:10]],
        "pymatgen_ms_per_pair": round(1e3 * seconds["pymatgen"] / max(len(pairs), 1), 3),
        "fit_reduced_ms_per_pair": round(1e3 * seconds["fit_reduced"] / max(len(pairs), 1), 3),
        "speedup": round(seconds["pymatgen"] / max(seconds["fit_reduced"], 1e-9), 2),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
