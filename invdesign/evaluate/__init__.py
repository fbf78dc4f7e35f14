"""Benchmark metrics for generated and reconstructed crystals, as CDVAE defines them.

* `generation_metrics`: validity, COV-R / COV-P (CrystalNN structure and Magpie composition
  fingerprints, per-dataset cutoffs `COV_CUTOFFS`), EMD of density and of #elements.
* `match_rate_and_rmse`: reconstruction match rate and normalised RMSE with
  ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)``.
* `fingerprint_structures`: the fingerprints COV uses; compute the reference's once and reuse.
* `sample_scores`: one benchmark row, validity, uniqueness and novelty with the metrics above.

No torch here; matminer is imported when fingerprints are first computed.
"""

from __future__ import annotations

from invdesign.evaluate.fingerprints import (
    COMPOSITION_FP_SIZE,
    STRUCTURE_FP_SIZE,
    Fingerprints,
    composition_fingerprint,
    fingerprint_structures,
    scale_composition_fingerprints,
    structure_fingerprint,
)
from invdesign.evaluate.generation import (
    COV_CUTOFFS,
    cov,
    cov_cutoffs,
    coverage,
    emd_density,
    emd_n_elements,
    generation_metrics,
    sample_scores,
)
from invdesign.evaluate.reconstruction import match_rate_and_rmse, rms_distances

__all__ = [
    "COMPOSITION_FP_SIZE",
    "COV_CUTOFFS",
    "STRUCTURE_FP_SIZE",
    "Fingerprints",
    "composition_fingerprint",
    "cov",
    "cov_cutoffs",
    "coverage",
    "emd_density",
    "emd_n_elements",
    "fingerprint_structures",
    "generation_metrics",
    "match_rate_and_rmse",
    "rms_distances",
    "sample_scores",
    "scale_composition_fingerprints",
    "structure_fingerprint",
]
