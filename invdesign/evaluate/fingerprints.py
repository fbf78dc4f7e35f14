"""Structure and composition fingerprints for CDVAE's coverage (COV) metrics.

As CDVAE (``scripts/compute_metrics.py::Crystal.get_fingerprints``):

* structure fingerprint: the mean over sites of matminer's
  ``CrystalNNFingerprint.from_preset("ops")`` site fingerprint (61 values);
* composition fingerprint: matminer's ``ElementProperty.from_preset("magpie")`` of the
  composition (132 values), raw; `scale_composition_fingerprints` applies CDVAE's fixed
  standardisation before distances are taken. Missing element data stay NaN (no imputation, as
  in the matminer CDVAE ran on) and become 0 after scaling, as in CDVAE.

When CrystalNN fails on a structure CDVAE sets both fingerprints to None and marks the crystal
invalid. Here such an item (or a None, empty or non-finite structure, or one whose Magpie
featurisation raises) gets NaN rows in both arrays and its error message; `Fingerprints.ok`
is False for it. So does a cell too dense to be a crystal: under 0.1 A^3 (CDVAE does not build
it) or under `MIN_VOLUME_PER_ATOM`, where some pair of atoms must be closer than CDVAE's
0.5 A and CrystalNN's neighbour lists would run to millions of images (a decoded 0.02 A cell
once took a worker past 20 GB).

Speed: CrystalNN dominates, roughly 20-50 ms per site (~0.1-0.25 s for a 5-atom perovskite on
one busy core); Magpie takes ~5 ms per composition. Use ``n_jobs`` for large batches.
matminer is imported on first use (a few seconds).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from invdesign.evaluate._magpie_scaler import MAGPIE_MEANS, MAGPIE_STDS

logger = logging.getLogger(__name__)

STRUCTURE_FP_SIZE = 61  # CrystalNN "ops" site fingerprint length
COMPOSITION_FP_SIZE = 132  # Magpie: 22 element properties x 6 statistics
MIN_VOLUME = 0.1  # A^3: CDVAE does not build a smaller cell ("unrealistically small lattice")
# A^3 per atom: the densest packing of points 0.5 A apart; any denser cell has a closer pair
MIN_VOLUME_PER_ATOM = 0.5**3 / np.sqrt(2)


@cache
def _crystalnn() -> Any:
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops")


@cache
def _magpie() -> Any:
    from matminer.featurizers.composition.composite import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=False)


def structure_fingerprint(structure: Structure) -> np.ndarray:
    """Mean over sites of the CrystalNN "ops" site fingerprints, shape (61,).

    Raises:
        ValueError: If the structure has no sites or a non-finite lattice or coordinates.
        Exception: Whatever CrystalNN raises on a structure it cannot handle.
    """
    if len(structure) == 0:
        raise ValueError("structure has no sites")
    if not (np.isfinite(structure.lattice.matrix).all()
            and np.isfinite(structure.frac_coords).all()):
        raise ValueError("structure has a non-finite lattice or coordinates")
    featurizer = _crystalnn()
    with warnings.catch_warnings():  # CrystalNN warns for every site without oxidation states
        warnings.simplefilter("ignore")
        sites = [featurizer.featurize(structure, i) for i in range(len(structure))]
    return np.asarray(sites, dtype=float).mean(axis=0)


def composition_fingerprint(composition: Composition | Structure) -> np.ndarray:
    """Raw Magpie ElementProperty features of a composition, shape (132,).

    Entries for element properties Magpie lacks are NaN (not imputed). Oxidation states are
    dropped first.
    """
    if isinstance(composition, Structure):
        composition = composition.composition
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = _magpie().featurize(composition.element_composition)
    return np.asarray(values, dtype=float)


def scale_composition_fingerprints(fingerprints: np.ndarray | Sequence[Sequence[float]]
                                   ) -> np.ndarray:
    """CDVAE's ``CompScaler``: (x - mean) / std with its fixed Magpie statistics, NaN -> 0.

    Args:
        fingerprints: Raw Magpie fingerprints, shape (n, 132).

    Returns:
        Scaled fingerprints, shape (n, 132), without NaN.
    """
    values = np.asarray(fingerprints, dtype=float)
    if values.shape[-1] != COMPOSITION_FP_SIZE:
        raise ValueError(f"composition fingerprints must have {COMPOSITION_FP_SIZE} columns, "
                         f"got shape {values.shape}")
    scaled = (values - np.asarray(MAGPIE_MEANS)) / np.asarray(MAGPIE_STDS)
    return np.where(np.isnan(scaled), 0.0, scaled)


@dataclass(frozen=True)
class Fingerprints:
    """Fingerprints of a batch, one row per item.

    Attributes:
        structure: Mean CrystalNN "ops" fingerprints, shape (n, 61); NaN rows where failed.
        composition: Raw Magpie fingerprints, shape (n, 132); NaN rows where failed (single NaN
            entries elsewhere are missing element data, not failures).
        errors: Why fingerprinting failed, "" where it worked.
    """

    structure: np.ndarray
    composition: np.ndarray
    errors: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask: True where both fingerprints were computed."""
        return np.array([not e for e in self.errors], dtype=bool)

    def take(self, indices: Sequence[int] | np.ndarray) -> Fingerprints:
        """The fingerprints of the items at `indices` (or a boolean mask), in that order."""
        index = np.asarray(indices)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return Fingerprints(self.structure[index], self.composition[index],
                            tuple(self.errors[i] for i in index))


def _fingerprint_one(item: Structure | None) -> tuple[np.ndarray, np.ndarray, str]:
    failed = (np.full(STRUCTURE_FP_SIZE, np.nan), np.full(COMPOSITION_FP_SIZE, np.nan))
    if item is None:
        return (*failed, "no structure")
    if len(item) and item.volume < MIN_VOLUME:
        return (*failed, f"unrealistically small lattice ({item.volume:.3g} A^3)")
    if len(item) and item.volume / len(item) < MIN_VOLUME_PER_ATOM:
        return (*failed, f"too dense for a crystal ({item.volume / len(item):.3g} A^3 per atom)")
    try:
        struct_fp = structure_fingerprint(item)
        comp_fp = composition_fingerprint(item)
    except Exception as exc:  # CrystalNN and Magpie raise many kinds of errors
        return (*failed, f"{type(exc).__name__}: {exc}")
    if struct_fp.shape != (STRUCTURE_FP_SIZE,) or np.isnan(struct_fp).any():
        return (*failed, "CrystalNN fingerprint has unexpected shape or NaN")
    return struct_fp, comp_fp, ""


def _progress(items: Iterable[Any], total: int, progress: bool) -> Iterable[Any]:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description="Fingerprinting", total=total)


def fingerprint_structures(structures: Sequence[Structure | None], *, n_jobs: int = 1,
                           progress: bool = False) -> Fingerprints:
    """CrystalNN structure and Magpie composition fingerprints of a batch.

    One bad item never stops the batch: its rows are NaN and its error is recorded.

    Args:
        structures: Structures; None (e.g. a sample that could not be decoded) counts as failed.
        n_jobs: Worker processes (1: in this process).
        progress: Show a progress bar (rich).

    Returns:
        The fingerprints, one row per input, in input order.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    items = list(structures)
    if n_jobs == 1 or len(items) < 2:
        results = list(_progress(map(_fingerprint_one, items), len(items), progress))
    else:
        chunk = max(1, min(64, len(items) // (4 * n_jobs)))
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            results = list(_progress(pool.map(_fingerprint_one, items, chunksize=chunk),
                                     len(items), progress))
    errors = tuple(r[2] for r in results)
    n_failed = sum(1 for e in errors if e)
    if n_failed:
        logger.warning("fingerprints failed for %d of %d structures", n_failed, len(items))
    if not results:
        return Fingerprints(np.empty((0, STRUCTURE_FP_SIZE)), np.empty((0, COMPOSITION_FP_SIZE)),
                            ())
    return Fingerprints(np.stack([r[0] for r in results]), np.stack([r[1] for r in results]),
                        errors)
