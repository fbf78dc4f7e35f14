"""Composition + simple structure descriptors for the k-nearest-neighbour baseline.

Magpie-style statistics (fraction-weighted mean, mean absolute deviation, min, max) of element
properties, plus volume per atom, density and the number of elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from pymatgen.core import Structure

from invdesign.featurize.elements import raw_element_properties


@lru_cache(maxsize=1)
def _element_table() -> np.ndarray:
    raw = raw_element_properties()
    mean = np.nanmean(raw[1:], axis=0)
    filled = np.where(np.isnan(raw), mean, raw)
    return np.column_stack([np.arange(len(raw), dtype=float), filled])  # Z as first property


def composition_descriptor(structure: Structure, table: np.ndarray | None = None) -> np.ndarray:
    """Descriptor vector of one structure (length 4 * n_element_properties + 3)."""
    table = _element_table() if table is None else table
    comp = structure.composition.fractional_composition
    z = np.array([el.Z for el in comp.elements])
    w = np.array([comp[el] for el in comp.elements])
    props = table[z]
    mean = w @ props
    mad = w @ np.abs(props - mean)
    structural = [np.log(structure.volume / len(structure)), structure.density, len(z)]
    return np.concatenate([mean, mad, props.min(axis=0), props.max(axis=0), structural])


def composition_descriptors(structures: Sequence[Structure]) -> np.ndarray:
    """Descriptor matrix (n_structures, n_features)."""
    table = _element_table()
    return np.vstack([composition_descriptor(s, table) for s in structures])


def n_composition_features() -> int:
    """Length of `composition_descriptor`'s output."""
    return 4 * _element_table().shape[1] + 3
