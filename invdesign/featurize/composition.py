"""Composition + simple structure descriptors (Magpie-style) for the surrogate and kNN baseline.

Fraction-weighted mean, mean absolute deviation, min and max of element properties, plus the
number of elements; the kNN descriptor adds volume per atom and density.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Composition, Element, Structure

from invdesign.featurize.elements import MAX_Z, atomic_masses, raw_element_properties

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660  # 1 amu/A^3 in g/cm^3


@lru_cache(maxsize=1)
def _element_table() -> np.ndarray:
    raw = raw_element_properties()
    mean = np.nanmean(raw[1:], axis=0)
    filled = np.where(np.isnan(raw), mean, raw)
    return np.column_stack([np.arange(len(raw), dtype=float), filled])  # Z as first property


def atomic_numbers(structure: Structure) -> np.ndarray:
    """(n_atoms,) int64 atomic numbers of an ordered structure."""
    return np.fromiter((site.specie.Z for site in structure), dtype=np.int64,
                       count=len(structure))


def density(z: np.ndarray, volume: float) -> float:
    """Mass density in g/cm^3 from atomic numbers and the cell volume in A^3."""
    return float(atomic_masses()[z].sum() / volume * AMU_PER_A3_TO_G_PER_CM3)


def composition_descriptor(z: np.ndarray) -> np.ndarray:
    """Descriptor of a composition given its atoms' atomic numbers (n_composition_features,)."""
    elements, counts = np.unique(z, return_counts=True)
    return _descriptor(elements, counts)


def formula_descriptor(composition: Composition | str) -> np.ndarray:
    """`composition_descriptor` of a formula or pymatgen Composition (fractions suffice).

    Raises:
        ValueError: For an empty or unparsable formula, or an element beyond the table.
    """
    amounts = Composition(composition).get_el_amt_dict()
    if not amounts:
        raise ValueError(f"empty composition: {composition!r}")
    elements = np.array([Element(symbol).Z for symbol in amounts])
    if elements.max() > MAX_Z:
        raise ValueError(f"{composition!r}: no element properties beyond Z = {MAX_Z}")
    return _descriptor(elements, np.array(list(amounts.values()), dtype=float))


def _descriptor(elements: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    w = amounts / amounts.sum()
    props = _element_table()[elements]
    mean = w @ props
    mad = w @ np.abs(props - mean)
    return np.concatenate([mean, mad, props.min(axis=0), props.max(axis=0), [len(elements)]])


def n_composition_features() -> int:
    """Length of `composition_descriptor`'s output."""
    return 4 * _element_table().shape[1] + 1


def composition_descriptors(structures: Sequence[Structure]) -> np.ndarray:
    """kNN descriptor matrix (n_structures, n_composition_features + 2): composition statistics,
    ln(volume per atom / A^3) and density (g/cm^3)."""
    rows = []
    for s in structures:
        z = atomic_numbers(s)
        rows.append(np.concatenate([composition_descriptor(z),
                                    [np.log(s.volume / len(z)), density(z, s.volume)]]))
    return np.vstack(rows)
