"""CDVAE's generation metrics: validity, coverage (COV-R / COV-P) and EMDs.

Definitions follow CDVAE (Xie et al. 2021), ``scripts/compute_metrics.py::GenEval`` and
``scripts/eval_utils.py::compute_cov``:

* validity: `struct_valid` (distinct sites >= 0.5 A apart, cell volume >= 0.1 A^3) and
  `comp_valid` (SMACT) are fractions of *all* samples; a sample is `valid` when both hold and
  its CrystalNN fingerprint could be computed (CDVAE marks fingerprint failures invalid).
* COV is computed over *all* samples (``compute_cov(self.crys, ...)``, not only valid ones):
  samples without fingerprints are dropped from the distance matrices, but COV-P still divides
  by the number of all samples. A reference crystal is covered (COV-R) when its nearest sample
  in structure space (Euclidean distance of CrystalNN fingerprints) is within the structure
  cutoff *and* its nearest sample in composition space (Euclidean distance of Magpie
  fingerprints standardised with CDVAE's fixed ``CompScaler`` statistics, NaN -> 0) is within
  the composition cutoff; the two nearest samples may differ, as in CDVAE. COV-P is the same
  test from each sample to the reference set, divided by the number of all samples. Cutoffs
  are compared with ``<=``.
* EMD (``scipy.stats.wasserstein_distance``) of density (g/cm^3) and of the number of distinct
  elements, between a random subset of ``n_valid_samples`` (CDVAE: 1000) *valid* samples and
  *all* reference crystals.

Differences, all for robustness: CDVAE raises when fewer than 1000 samples are valid; here all
valid samples are used (with a warning). CDVAE crashes when a reference crystal has no
fingerprint; here it is dropped from COV-R (with a warning). CDVAE draws the EMD subset with
the unseeded global numpy generator; here it is seeded (``seed``).

COV cutoffs: CDVAE's code uses 0.2 / 4 for Perov-5 (so do DiffCSP and later evaluations
derived from it); that is what produced the published numbers, so it is the default here even
where the Perov-5 composition cutoff is quoted as 6. Pass ``cutoffs=(0.2, 6.0)`` for the latter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from invdesign.evaluate.fingerprints import (
    Fingerprints,
    fingerprint_structures,
    scale_composition_fingerprints,
)
from invdesign.validity import (
    cdvae_structure_valid,
    check_structures,
    composition_validity,
    validity_rates,
)

logger = logging.getLogger(__name__)

# (structure cutoff, composition cutoff), from CDVAE's ``COV_Cutoffs`` in
# scripts/compute_metrics.py. Perov-5 uses 4 for composition in CDVAE's code (and DiffCSP's).
COV_CUTOFFS: dict[str, tuple[float, float]] = {
    "perov_5": (0.2, 4.0),
    "carbon_24": (0.2, 4.0),
    "mp_20": (0.4, 10.0),
}
_CHUNK = 2048  # sample rows per block of the distance matrices


def cov_cutoffs(dataset: str) -> tuple[float, float]:
    """(structure, composition) COV cutoffs of a benchmark dataset.

    Raises:
        ValueError: For a dataset CDVAE defines no cutoffs for; the message lists the known ones.
    """
    try:
        return COV_CUTOFFS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r} for COV cutoffs; known: "
                         f"{', '.join(sorted(COV_CUTOFFS))}") from None


def _usable_rows(struct_fps: np.ndarray, comp_fps: np.ndarray, what: str) -> np.ndarray:
    if struct_fps.ndim != 2 or comp_fps.ndim != 2 or len(struct_fps) != len(comp_fps):
        raise ValueError(f"{what}: structure and composition fingerprints must be 2-D with the "
                         f"same number of rows, got {struct_fps.shape} and {comp_fps.shape}")
    return ~np.isnan(struct_fps).any(axis=1) & ~np.isnan(comp_fps).all(axis=1)


def coverage(pred_struct_fps: np.ndarray, pred_comp_fps: np.ndarray, gt_struct_fps: np.ndarray,
             gt_comp_fps: np.ndarray, struct_cutoff: float, comp_cutoff: float
             ) -> dict[str, float]:
    """COV-R, COV-P and CDVAE's mean minimum distances (AMSD, AMCD).

    Args:
        pred_struct_fps: Sample structure fingerprints, shape (n, 61); rows with NaN are
            samples without fingerprints (dropped, but counted in COV-P's denominator).
        pred_comp_fps: Raw (unscaled) Magpie fingerprints of the samples, shape (n, 132).
        gt_struct_fps: Reference structure fingerprints, shape (m, 61).
        gt_comp_fps: Raw Magpie fingerprints of the reference, shape (m, 132).
        struct_cutoff: Largest structure-fingerprint distance that counts as covered.
        comp_cutoff: Largest scaled composition-fingerprint distance that counts as covered.

    Returns:
        ``cov_r``, ``cov_p``, ``amsd_r``, ``amsd_p``, ``amcd_r``, ``amcd_p`` (NaN where undefined).

    Raises:
        ValueError: On inconsistent shapes or when no reference row has fingerprints.
    """
    pred_s, pred_c = np.asarray(pred_struct_fps, float), np.asarray(pred_comp_fps, float)
    gt_s, gt_c = np.asarray(gt_struct_fps, float), np.asarray(gt_comp_fps, float)
    n_generated = len(pred_s)
    keep = _usable_rows(pred_s, pred_c, "samples")
    gt_keep = _usable_rows(gt_s, gt_c, "reference")
    if not gt_keep.any():
        raise ValueError("no reference structure has fingerprints; COV is undefined")
    if not gt_keep.all():
        logger.warning("%d reference structures without fingerprints are left out of COV",
                       int((~gt_keep).sum()))
    gt_s, gt_c = gt_s[gt_keep], scale_composition_fingerprints(gt_c[gt_keep])
    pred_s, pred_c = pred_s[keep], scale_composition_fingerprints(pred_c[keep])
    # CDVAE thresholds the nearest structure distance and the nearest composition distance
    # separately (each may come from a different neighbour); mirrored here.
    recall_s = np.full(len(gt_s), np.inf)
    recall_c = np.full(len(gt_s), np.inf)
    precision_s, precision_c = [], []
    for start in range(0, len(pred_s), _CHUNK):
        d_s = cdist(pred_s[start:start + _CHUNK], gt_s)
        d_c = cdist(pred_c[start:start + _CHUNK], gt_c)
        recall_s = np.minimum(recall_s, d_s.min(axis=0))
        recall_c = np.minimum(recall_c, d_c.min(axis=0))
        precision_s.append(d_s.min(axis=1))
        precision_c.append(d_c.min(axis=1))
    prec_s = np.concatenate(precision_s) if precision_s else np.empty(0)
    prec_c = np.concatenate(precision_c) if precision_c else np.empty(0)
    cov_r = float(np.mean((recall_s <= struct_cutoff) & (recall_c <= comp_cutoff)))
    covered = int(np.sum((prec_s <= struct_cutoff) & (prec_c <= comp_cutoff)))
    nan = float("nan")
    return {
        "cov_r": cov_r if len(pred_s) else 0.0,
        "cov_p": covered / n_generated if n_generated else nan,
        "amsd_r": float(recall_s.mean()) if len(pred_s) else nan,
        "amsd_p": float(prec_s.mean()) if len(prec_s) else nan,
        "amcd_r": float(recall_c.mean()) if len(pred_s) else nan,
        "amcd_p": float(prec_c.mean()) if len(prec_c) else nan,
    }


def cov(pred_struct_fps: np.ndarray, pred_comp_fps: np.ndarray, gt_struct_fps: np.ndarray,
        gt_comp_fps: np.ndarray, struct_cutoff: float, comp_cutoff: float
        ) -> tuple[float, float]:
    """(COV-R, COV-P) exactly as CDVAE's ``compute_cov``; see `coverage` for the arguments."""
    result = coverage(pred_struct_fps, pred_comp_fps, gt_struct_fps, gt_comp_fps,
                      struct_cutoff, comp_cutoff)
    return result["cov_r"], result["cov_p"]


def _values(items: Sequence[Any], of_structure: Any) -> np.ndarray:
    return np.asarray([of_structure(x) if isinstance(x, Structure) else x for x in items],
                      dtype=float)


def _n_elements(structure: Structure) -> int:
    return len(structure.composition.element_composition.elements)


def emd_density(pred: Sequence[Structure] | Sequence[float],
                gt: Sequence[Structure] | Sequence[float]) -> float:
    """Wasserstein distance between density distributions (g/cm^3); structures or numbers."""
    return float(wasserstein_distance(_values(pred, lambda s: s.density),
                                      _values(gt, lambda s: s.density)))


def emd_n_elements(pred: Sequence[Structure] | Sequence[int],
                   gt: Sequence[Structure] | Sequence[int]) -> float:
    """Wasserstein distance between distributions of the number of distinct elements."""
    return float(wasserstein_distance(_values(pred, _n_elements), _values(gt, _n_elements)))


def _validity_flags(samples: Sequence[Structure | None],
                    validity: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """CDVAE's structural and compositional validity per sample (None: invalid)."""
    if validity is not None:
        if len(validity) != len(samples):
            raise ValueError(f"validity table has {len(validity)} rows for {len(samples)} samples")
        return (validity["struct_valid_cdvae"].to_numpy(dtype=bool),
                validity["comp_valid"].to_numpy(dtype=bool))
    struct = np.zeros(len(samples), dtype=bool)
    comp = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        if sample is None:
            continue
        try:
            struct[i] = cdvae_structure_valid(sample)
        except Exception as exc:  # an odd lattice is invalid, not fatal
            logger.debug("structure check failed for sample %d: %s", i, exc)
        comp[i] = composition_validity(sample).valid
    return struct, comp


def _emd_subset(valid: np.ndarray, n_valid_samples: int | None, seed: int) -> np.ndarray:
    """Indices of the valid samples the EMDs use: a random subset of size n, as CDVAE."""
    indices = np.flatnonzero(valid)
    if n_valid_samples is None or len(indices) <= n_valid_samples:
        if n_valid_samples is not None and len(indices) < n_valid_samples:
            logger.warning("only %d valid samples (CDVAE uses %d); EMDs use all of them",
                           len(indices), n_valid_samples)
        return indices
    chosen = np.random.default_rng(seed).choice(len(indices), n_valid_samples, replace=False)
    return indices[chosen]


def generation_metrics(
    samples: Sequence[Structure | None],
    reference: Sequence[Structure],
    dataset: str | None,
    *,
    cutoffs: tuple[float, float] | None = None,
    n_valid_samples: int | None = 1000,
    seed: int = 0,
    validity: pd.DataFrame | None = None,
    sample_fingerprints: Fingerprints | None = None,
    reference_fingerprints: Fingerprints | None = None,
    n_jobs: int = 1,
    progress: bool = False,
) -> dict[str, float]:
    """CDVAE's generation metrics of samples against reference (test) crystals.

    Args:
        samples: Generated structures; None for a sample that could not be built (invalid,
            without fingerprints, still counted in every denominator).
        reference: Reference crystals (CDVAE: the test split).
        dataset: ``"perov_5"``, ``"carbon_24"`` or ``"mp_20"``, selecting CDVAE's COV cutoffs;
            may be None when `cutoffs` is given.
        cutoffs: (structure, composition) COV cutoffs overriding the dataset's.
        n_valid_samples: Size of the random subset of valid samples for the EMDs (CDVAE: 1000);
            None uses all valid samples.
        seed: Seed of that random subset.
        validity: A `invdesign.validity.check_structures` table of `samples` to reuse.
        sample_fingerprints: Precomputed `fingerprint_structures(samples)`.
        reference_fingerprints: Precomputed `fingerprint_structures(reference)` (reuse it when
            scoring several sample sets against one test split).
        n_jobs: Worker processes for fingerprinting.
        progress: Show progress bars.

    Returns:
        ``struct_valid``, ``comp_valid``, ``valid`` (fractions of all samples), ``cov_r``,
        ``cov_p``, ``amsd_r``, ``amsd_p``, ``amcd_r``, ``amcd_p``, ``emd_density``,
        ``emd_n_elements`` (NaN without valid samples), ``n_samples``, ``n_valid``,
        ``n_emd``, ``n_fingerprint_failed``.

    Raises:
        ValueError: For an unknown dataset, empty inputs or fingerprints of the wrong length.
    """
    if cutoffs is None:
        if dataset is None:
            raise ValueError("give a dataset name or explicit cutoffs")
        cutoffs = cov_cutoffs(dataset)
    elif dataset is not None:
        cov_cutoffs(dataset)  # still reject unknown names
    if not samples or not reference:
        raise ValueError(f"need samples and reference structures, got {len(samples)} and "
                         f"{len(reference)}")
    if sample_fingerprints is None:
        sample_fingerprints = fingerprint_structures(samples, n_jobs=n_jobs, progress=progress)
    if reference_fingerprints is None:
        reference_fingerprints = fingerprint_structures(reference, n_jobs=n_jobs,
                                                        progress=progress)
    for name, fps, items in (("sample", sample_fingerprints, samples),
                             ("reference", reference_fingerprints, reference)):
        if len(fps) != len(items):
            raise ValueError(f"{name} fingerprints have {len(fps)} rows for {len(items)} items")
    struct_valid, comp_valid = _validity_flags(samples, validity)
    valid = struct_valid & comp_valid & sample_fingerprints.ok
    chosen = _emd_subset(valid, n_valid_samples, seed)
    picked = [samples[i] for i in chosen]
    nan = float("nan")
    metrics: dict[str, float] = {
        "n_samples": len(samples),
        "n_valid": int(valid.sum()),
        "n_emd": len(chosen),
        "n_fingerprint_failed": int((~sample_fingerprints.ok).sum()),
        "struct_valid": float(struct_valid.mean()),
        "comp_valid": float(comp_valid.mean()),
        "valid": float(valid.mean()),
        "emd_density": emd_density(picked, reference) if picked else nan,
        "emd_n_elements": emd_n_elements(picked, reference) if picked else nan,
    }
    metrics.update(coverage(sample_fingerprints.structure, sample_fingerprints.composition,
                            reference_fingerprints.structure, reference_fingerprints.composition,
                            *cutoffs))
    return metrics


def sample_scores(samples: Sequence[Structure | None], held_out: Sequence[Structure],
                  dataset: str, *, reference: Any = None,
                  held_out_fingerprints: Fingerprints | None = None, n_jobs: int = 1
                  ) -> dict[str, float]:
    """Validity, uniqueness, novelty and CDVAE's generation metrics of one set of samples
    against held-out crystals: what a benchmark row reports.

    `reference` (training structures or a `ReferenceIndex`) is what novelty is judged
    against; `held_out_fingerprints` as `reference_fingerprints` in `generation_metrics`.
    `valid`, `unique` and `novel` are fractions of the decoded samples; `valid_unique_novel`
    and the CDVAE metrics are fractions of all samples.
    """
    table = check_structures([s for s in samples if s is not None], reference=reference,
                             n_jobs=n_jobs)
    rates = validity_rates(table)
    vun = (table["valid"].to_numpy(dtype=bool) & table["unique"].to_numpy(dtype=bool)
           & table["novel"].fillna(False).to_numpy(dtype=bool))
    metrics = generation_metrics(samples, held_out, dataset,
                                 reference_fingerprints=held_out_fingerprints, n_jobs=n_jobs)
    return {**{k: float(rates[k]) for k in ("valid", "unique", "novel")},
            "valid_unique_novel": float(vun.sum() / len(samples)),
            **{k: float(metrics[k]) for k in ("struct_valid", "comp_valid", "cov_r", "cov_p",
                                               "emd_density", "emd_n_elements")}}
