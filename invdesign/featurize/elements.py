"""Element descriptor table: standardised physical properties + one-hot row/group/block.

The table is a plain array indexed by atomic number (row 0 unused), so models can keep it as a
buffer and stay free of pymatgen.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from pymatgen.core import Element

from invdesign.data.validate import MAX_Z

NUMERIC_PROPERTIES = (
    "X",  # Pauling electronegativity
    "atomic_radius",  # A
    "atomic_mass",  # amu
    "ionization_energy",  # eV
    "electron_affinity",  # eV
    "mendeleev_no",
    "molar_volume",  # cm^3/mol
    "melting_point",  # K
    "average_ionic_radius",  # A
    "van_der_waals_radius",  # A
)
BLOCKS = ("s", "p", "d", "f")


def _element_value(element: Element, name: str) -> float:
    try:
        value = getattr(element, name)
        return float(value) if value is not None else np.nan
    except (AttributeError, TypeError, ValueError):
        return np.nan


def _valence_counts(element: Element) -> list[float]:
    """Electrons in the outermost s, p, d, f subshells of the ground-state configuration."""
    counts = dict.fromkeys(BLOCKS, 0.0)
    try:
        config = element.full_electronic_structure
    except (ValueError, KeyError, AttributeError):
        return [np.nan] * 4
    outer_n = max(n for n, _, _ in config)
    for n, shell, occ in config:
        if (shell in "sp" and n == outer_n) or (shell == "d" and n == outer_n - 1) or (
                shell == "f" and n == outer_n - 2):
            counts[shell] = float(occ)
    return [counts[b] for b in BLOCKS]


@lru_cache(maxsize=1)
def raw_element_properties() -> np.ndarray:
    """Array (MAX_Z + 1, n_numeric + 4): raw properties and valence counts, NaN if unknown."""
    rows = [np.full(len(NUMERIC_PROPERTIES) + 4, np.nan)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            values = [_element_value(el, name) for name in NUMERIC_PROPERTIES]
            rows.append(np.array(values + _valence_counts(el)))
    table = np.vstack(rows)
    table[:, NUMERIC_PROPERTIES.index("melting_point")] = np.log1p(
        table[:, NUMERIC_PROPERTIES.index("melting_point")])
    return table


@lru_cache(maxsize=1)
def element_feature_table() -> np.ndarray:
    """Array (MAX_Z + 1, n_features) of float32 element features for atom embeddings.

    Numeric properties are standardised over elements 1..MAX_Z with missing values set to 0 (the
    mean); row (1-9), group (1-18) and block (s, p, d, f) are one-hot encoded.
    """
    raw = raw_element_properties()
    mean = np.nanmean(raw[1:], axis=0)
    std = np.nanstd(raw[1:], axis=0) + 1e-8
    numeric = np.nan_to_num((raw - mean) / std, nan=0.0)
    onehot = np.zeros((MAX_Z + 1, 9 + 18 + len(BLOCKS)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            onehot[z, min(el.row, 9) - 1] = 1.0
            onehot[z, 9 + el.group - 1] = 1.0
            if el.block in BLOCKS:
                onehot[z, 27 + BLOCKS.index(el.block)] = 1.0
    table = np.hstack([numeric, onehot]).astype(np.float32)
    table[0] = 0.0
    return table


@lru_cache(maxsize=1)
def atomic_masses() -> np.ndarray:
    """(MAX_Z + 1,) atomic masses in amu indexed by atomic number (index 0 unused)."""
    return np.nan_to_num(raw_element_properties()[:, NUMERIC_PROPERTIES.index("atomic_mass")])
