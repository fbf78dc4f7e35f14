"""Validity, uniqueness and novelty of generated crystal structures (no torch here).

* `composition_validity`: CDVAE's SMACT rule (single element / alloy / charge neutral with a
  passing Pauling test), never raising on elements SMACT lacks.
* `structure_validity`: distances >= 0.5 A including periodic self-images and a sane volume per
  atom; CDVAE's looser criterion is reported beside it (`cdvae_valid`).
* `unique_mask`, `novel_mask`, `ReferenceIndex`: StructureMatcher(ltol=0.3, stol=0.5,
  angle_tol=10) behind an exact prefilter (composition, reduced-cell size).
* `check_structures`, `validity_rates`: one table per batch and CDVAE-style rates.
"""

from __future__ import annotations

from invdesign.validity.composition import composition_key, composition_validity
from invdesign.validity.geometry import (
    MAX_VOLUME_PER_ATOM,
    MIN_BOND_RATIO,
    MIN_DISTANCE,
    MIN_VOLUME_PER_ATOM,
    TYPICAL_BOND_RATIO,
    cdvae_structure_valid,
    expand_to_bond_ratio,
    min_bond_ratio,
    min_bond_ratios,
    structure_validity,
)
from invdesign.validity.report import COLUMNS, ValidityConfig, check_structures, validity_rates
from invdesign.validity.result import StructureValidity, ValidityResult
from invdesign.validity.uniqueness import (
    MatchSettings,
    PreparedStructure,
    ReferenceIndex,
    novel_mask,
    prepare_structure,
    unique_mask,
)

__all__ = [
    "COLUMNS",
    "MAX_VOLUME_PER_ATOM",
    "MIN_BOND_RATIO",
    "MIN_DISTANCE",
    "MIN_VOLUME_PER_ATOM",
    "TYPICAL_BOND_RATIO",
    "MatchSettings",
    "PreparedStructure",
    "ReferenceIndex",
    "StructureValidity",
    "ValidityConfig",
    "ValidityResult",
    "cdvae_structure_valid",
    "check_structures",
    "composition_key",
    "composition_validity",
    "expand_to_bond_ratio",
    "min_bond_ratio",
    "min_bond_ratios",
    "novel_mask",
    "prepare_structure",
    "structure_validity",
    "unique_mask",
    "validity_rates",
]
