"""One table for a batch of candidates: validity, uniqueness and novelty per structure."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from invdesign.parallel import Progress, map_chunks
from invdesign.progress import StageProgress
from invdesign.validity.composition import OxidationStateSet, composition_validity
from invdesign.validity.geometry import (
    MAX_VOLUME_PER_ATOM,
    MIN_DISTANCE,
    MIN_VOLUME_PER_ATOM,
    structure_validity,
)
from invdesign.validity.uniqueness import (
    MatchSettings,
    PreparedStructure,
    ReferenceIndex,
    prepare_structure,
    unique_and_novel_masks,
)

logger = logging.getLogger(__name__)

PARALLEL_MIN_ITEMS = 2000  # batch size from which `n_jobs` > 1 pays for its processes
COLUMNS = ("formula", "n_atoms", "struct_valid", "comp_valid", "valid", "unique", "novel",
           "reason", "struct_valid_cdvae")


@dataclass(frozen=True)
class ValidityConfig:
    """Thresholds of the checks (defaults: CDVAE's distance, our volume range, SMACT 2 states).

    Attributes:
        min_distance: Smallest allowed interatomic distance in A, periodic images included.
        min_volume_per_atom: Smallest allowed volume per atom in A^3.
        max_volume_per_atom: Largest allowed volume per atom in A^3.
        oxidation_states: SMACT oxidation-state list, ``"smact14"`` (CDVAE) or ``"icsd24"``.
        match: StructureMatcher tolerances for uniqueness and novelty.
    """

    min_distance: float = MIN_DISTANCE
    min_volume_per_atom: float = MIN_VOLUME_PER_ATOM
    max_volume_per_atom: float = MAX_VOLUME_PER_ATOM
    oxidation_states: OxidationStateSet = "smact14"
    match: MatchSettings = field(default_factory=MatchSettings)


def as_structure(item: Any) -> Structure:
    """A pymatgen `Structure` from a `Structure` or an ASE `Atoms` object.

    Raises:
        TypeError: For anything else.
    """
    if isinstance(item, Structure):
        return item
    if hasattr(item, "get_cell") and hasattr(item, "get_chemical_symbols"):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(item)
    raise TypeError(f"expected a pymatgen Structure or ASE Atoms, got {type(item).__name__}")


def _error(stage: str, exc: Exception) -> str:
    return f"{stage} check failed: {type(exc).__name__}: {exc}"


def _check_one(item: Any,
               config: ValidityConfig) -> tuple[dict[str, Any], PreparedStructure | None]:
    """Row of the table for one item, plus its matching form (None when unusable)."""
    row: dict[str, Any] = {"formula": "", "n_atoms": 0, "struct_valid": False,
                           "struct_valid_cdvae": False, "comp_valid": False}
    try:
        structure = as_structure(item)
        with warnings.catch_warnings():  # pymatgen warns on elements without electronegativity
            warnings.simplefilter("ignore")
            row["formula"] = structure.composition.reduced_formula
        row["n_atoms"] = len(structure)
    except Exception as exc:
        return {**row, "reason": _error("input", exc)}, None
    reasons = []
    try:
        geometry = structure_validity(structure, min_distance=config.min_distance,
                                      min_volume_per_atom=config.min_volume_per_atom,
                                      max_volume_per_atom=config.max_volume_per_atom)
        row["struct_valid"], row["struct_valid_cdvae"] = geometry.valid, geometry.cdvae_valid
        if not geometry.valid:
            reasons.append(f"structure: {geometry.reason}")
    except Exception as exc:
        reasons.append(_error("structure", exc))
    try:
        composition = composition_validity(structure, oxidation_states=config.oxidation_states)
        row["comp_valid"] = composition.valid
        if not composition.valid:
            reasons.append(f"composition: {composition.reason}")
    except Exception as exc:
        reasons.append(_error("composition", exc))
    row["reason"] = "; ".join(reasons)
    return row, prepare_structure(structure)


def _check_chunk(items: list[Any], *, config: ValidityConfig
                 ) -> list[tuple[dict[str, Any], bool, Hashable]]:
    """In a worker: `_check_one` of each item as (row, usable, composition hash): the parent
    has the structure, and pickling it back would cost more than checking it."""
    checked = [_check_one(item, config) for item in items]
    return [(row, ready is not None, None if ready is None else ready.comp_hash)
            for row, ready in checked]


def _stage(progress: StageProgress | None, name: str) -> Progress | None:
    """`progress` for one stage, as a (done, total) callback."""
    return None if progress is None else partial(progress, name)


def check_structures(
    structures: Sequence[Any],
    *,
    reference: ReferenceIndex | Iterable[Structure] | None = None,
    config: ValidityConfig | None = None,
    progress: StageProgress | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Validity, uniqueness and novelty of every structure in a batch.

    One bad item never stops the batch: its flags are False and `reason` says what failed.

    Args:
        structures: pymatgen `Structure` or ASE `Atoms` objects.
        reference: Training structures (or a prebuilt `ReferenceIndex`) for novelty; without
            it the `novel` column is missing values (pandas ``NA``).
        config: Check thresholds; defaults as in `ValidityConfig`.
        progress: Called as ``progress(stage, done, total)`` while the stages "validity",
            "uniqueness" and "novelty" run (from inside worker processes too).
        n_jobs: Worker processes for batches of at least `PARALLEL_MIN_ITEMS` (validity) and
            for the uniqueness check (`unique_mask`); the table does not depend on it.

    Returns:
        One row per input with columns `COLUMNS`: `struct_valid` (ours: distances incl.
        self-images >= 0.5 A, volume per atom in range), `comp_valid` (CDVAE's SMACT rule),
        `valid` (both), `unique` (first occurrence in the batch), `novel` (matches no
        reference), `reason` (why a check failed, empty when all passed), and
        `struct_valid_cdvae` (CDVAE's structural criterion).
    """
    config = config or ValidityConfig()
    validity = _stage(progress, "validity")
    if n_jobs > 1 and len(structures) >= PARALLEL_MIN_ITEMS:
        hashed = map_chunks(partial(_check_chunk, config=config), structures, n_jobs,
                            progress=validity)
        checked = [(row, PreparedStructure.with_hash(as_structure(item), comp_hash)
                    if usable else None)
                   for item, (row, usable, comp_hash) in zip(structures, hashed, strict=True)]
    else:
        checked = []
        for done, item in enumerate(structures, start=1):
            checked.append(_check_one(item, config))
            if validity is not None:
                validity(done, len(structures))
    rows = [row for row, _ in checked]
    prepared = [ready for _, ready in checked]
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS
                                        if c not in ("valid", "unique", "novel")])
    table["valid"] = table["struct_valid"] & table["comp_valid"]
    usable = [i for i, p in enumerate(prepared) if p is not None]
    items = [prepared[i] for i in usable]
    index = (reference if isinstance(reference, ReferenceIndex) or reference is None
             else ReferenceIndex(reference, settings=config.match))
    unique, novel = unique_and_novel_masks(
        items, index, settings=config.match, n_jobs=n_jobs,
        unique_progress=_stage(progress, "uniqueness"),
        novel_progress=_stage(progress, "novelty") if index is not None else None)
    table["unique"] = np.zeros(len(table), dtype=bool)
    table.loc[usable, "unique"] = unique
    if novel is None:
        table["novel"] = pd.array([pd.NA] * len(table), dtype="boolean")
    else:
        table["novel"] = np.zeros(len(table), dtype=bool)
        table.loc[usable, "novel"] = novel
    logger.info("checked %d structures: %d valid, %d unique", len(table),
                int(table["valid"].sum()), int(table["unique"].sum()))
    return table.loc[:, list(COLUMNS)]


def validity_rates(table: pd.DataFrame) -> dict[str, float]:
    """CDVAE-style summary rates of a `check_structures` table.

    `struct_valid`, `comp_valid` and `valid` follow CDVAE's definitions (structural validity by
    `struct_valid_cdvae`) so they compare with published numbers; `struct_valid_strict` and
    `valid_strict` use our stricter structural criterion. `unique` and `novel` are fractions
    of all rows (`novel` is NaN without a reference).
    """
    n = len(table)
    if n == 0:
        return {"n": 0}
    struct_cdvae = table["struct_valid_cdvae"].to_numpy(dtype=bool)
    comp = table["comp_valid"].to_numpy(dtype=bool)
    novel = table["novel"]
    return {
        "n": n,
        "struct_valid": float(struct_cdvae.mean()),
        "comp_valid": float(comp.mean()),
        "valid": float((struct_cdvae & comp).mean()),
        "struct_valid_strict": float(table["struct_valid"].mean()),
        "valid_strict": float(table["valid"].mean()),
        "unique": float(table["unique"].mean()),
        "novel": float("nan") if novel.isna().all() else float(novel.fillna(False).mean()),
    }
