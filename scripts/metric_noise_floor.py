"""The floor a held-out split sets under CDVAE's generation metrics: how real crystals score.

A perfect generator samples from the data distribution itself. For a VAE checkpoint's recorded
split this draws `--n-samples` real crystals from the training part `--repeats` times (as if they
were samples) and scores each draw against

* the held-out part (`--part`, test by default), and
* a disjoint random subset of other training crystals of the same size: the same distribution,
  so whatever COV misses and whatever distance the EMDs measure is the noise of a reference set
  that small.

It prints COV-R, COV-P, EMD of density and of the number of elements (mean and sd over the
repeats), and, where the checkpoint ships additive atomic volumes, the density EMD of the same
draws with each cell at the volume they predict (whether the volumes explain a density gap).
A generated batch cannot be expected to score better than these rows; a target below them is
out of reach on this split.

    python scripts/metric_noise_floor.py vae-perov5 --dataset perov_5
    python scripts/metric_noise_floor.py vae-mp-binary --dataset mp_20
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure
from scipy.stats import wasserstein_distance

from invdesign.evaluate.fingerprints import Fingerprints, fingerprint_structures
from invdesign.evaluate.generation import cov_cutoffs, coverage
from invdesign.generator import Generator
from invdesign.surrogate import resolve_checkpoint
from invdesign.train.vae_pipeline import split_structures

KEYS = ("cov_r", "cov_p", "emd_density", "emd_n_elements")


@dataclass(frozen=True)
class Crystals:
    """What the metrics need of a set of crystals."""

    fps: Fingerprints
    density: np.ndarray
    n_elements: np.ndarray

    @classmethod
    def of(cls, structures: list[Structure], jobs: int) -> Crystals:
        return cls(fingerprint_structures(structures, n_jobs=jobs),
                   np.array([s.density for s in structures]),
                   np.array([len(s.composition.element_composition.elements)
                             for s in structures], dtype=float))

    def __getitem__(self, index: np.ndarray) -> Crystals:
        return Crystals(self.fps.take(index), self.density[index], self.n_elements[index])


def scores(samples: Crystals, reference: Crystals, cutoffs: tuple[float, float]
           ) -> dict[str, float]:
    """COV-R, COV-P and the two EMDs of `samples` against `reference`."""
    result = coverage(samples.fps.structure, samples.fps.composition,
                      reference.fps.structure, reference.fps.composition, *cutoffs)
    return {"cov_r": result["cov_r"], "cov_p": result["cov_p"],
            "emd_density": float(wasserstein_distance(samples.density, reference.density)),
            "emd_n_elements": float(wasserstein_distance(samples.n_elements,
                                                         reference.n_elements))}


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="VAE checkpoint (name or folder): its split is used")
    parser.add_argument("--dataset", default="mp_20", help="perov_5, carbon_24 or mp_20 (COV "
                                                          "cutoffs)")
    parser.add_argument("--part", choices=["val", "test"], default="test")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    folder = resolve_checkpoint(args.model)
    generator = Generator.load(folder)
    parts = split_structures(generator)
    n_ref = len(getattr(parts, args.part))
    n_samples = min(args.n_samples, len(parts.train) - n_ref)
    if n_samples < 1:
        parser.error(f"the training part ({len(parts.train)}) is too small for {n_ref} "
                     "reference crystals plus samples")
    cutoffs = cov_cutoffs(args.dataset)
    train = Crystals.of(parts.train, args.jobs)
    held_out = Crystals.of(getattr(parts, args.part), args.jobs)
    volumes = generator.volumes  # where shipped: the same draws at the additive volumes
    at_volumes = None if volumes is None else np.array(
        [s.density * s.volume / volumes.predict(s.composition) for s in parts.train])
    draws: dict[str, list[dict[str, float]]] = {f"{args.part} part": [],
                                                "other training crystals": []}
    volume_emds = []
    for repeat in range(args.repeats):
        order = np.random.default_rng(repeat).permutation(len(parts.train))
        picked = order[n_ref:n_ref + n_samples]
        samples = train[picked]
        draws[f"{args.part} part"].append(scores(samples, held_out, cutoffs))
        draws["other training crystals"].append(scores(samples, train[order[:n_ref]],
                                                       cutoffs))
        if at_volumes is not None:
            volume_emds.append(wasserstein_distance(at_volumes[picked], held_out.density))
    print(f"{folder.name}: {n_samples} real training crystals against {n_ref} reference "
          f"crystals, {args.repeats} draws, COV cutoffs {cutoffs}")
    print("| reference | " + " | ".join(KEYS) + " |\n|---" + "|---" * len(KEYS) + "|")
    summary = {}
    for name, rows in draws.items():
        summary[name] = {k: mean_sd([row[k] for row in rows]) for k in KEYS}
        print(f"| {name} ({n_ref}) | " + " | ".join(
            f"{summary[name][k]['mean']:.4f} +- {summary[name][k]['sd']:.4f}" for k in KEYS)
            + " |")
    if volume_emds:
        emd = summary["atomic volumes"] = {"emd_density": mean_sd(volume_emds)}
        print(f"EMD density of the same draws against the {args.part} part, each cell at the "
              f"checkpoint's additive atomic volume: {emd['emd_density']['mean']:.4f} +- "
              f"{emd['emd_density']['sd']:.4f}")
    print(json.dumps({"model": folder.name, "part": args.part, "n_samples": n_samples,
                      "n_reference": n_ref, "repeats": args.repeats, "summary": summary}))


if __name__ == "__main__":
    main()
