"""Applicability domain: how far a candidate's chemistry lies from the training data's.

A surrogate trained on Materials Project binaries has almost never seen a compound made only of
gas-forming elements (3 of 3,353: KrF2, NH3, HN), yet it will happily predict a bulk modulus of
160 GPa for OF; an optimiser then chases that error. `CompositionDomain` measures the distance of
a composition to its nearest training composition in standardised composition-descriptor space
(`formula_descriptor`: element-property statistics) and calls it inside when that distance is
no larger than what held-out chemistry shows: the `quantile` of the same distance from each
training formula to its nearest *other* formula (leave one formula out).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pymatgen.core import Composition
from scipy.spatial import cKDTree

from invdesign.featurize.composition import formula_descriptor

MIN_FORMULAS = 50  # fewer distinct training formulas: no reliable threshold, no domain check


class CompositionDomain:
    """Nearest-training-composition distance and the threshold that bounds the domain."""

    def __init__(self, formulas: Iterable[str], quantile: float = 0.99):
        """
        Args:
            formulas: Training formulas (repeats and unparsable entries are ignored).
            quantile: Share of leave-one-formula-out distances inside the domain.

        Raises:
            ValueError: With fewer than `MIN_FORMULAS` distinct usable formulas.
        """
        rows: dict[str, np.ndarray] = {}
        for formula in formulas:
            key = _reduced(formula)
            if key is not None and key not in rows:
                x = _descriptor(formula)
                if x is not None:
                    rows[key] = x
        if len(rows) < MIN_FORMULAS:
            raise ValueError(f"a composition domain needs at least {MIN_FORMULAS} distinct "
                             f"formulas, got {len(rows)}")
        table = np.vstack(list(rows.values()))
        self.mean = table.mean(axis=0)
        self.scale = np.where(table.std(axis=0) > 1e-12, table.std(axis=0), 1.0)
        self.tree = cKDTree((table - self.mean) / self.scale)
        nearest_other = self.tree.query(self.tree.data, k=2)[0][:, 1]
        self.threshold = float(np.quantile(nearest_other, quantile))

    def distance(self, formulas: Iterable[str]) -> np.ndarray:
        """Distance of each formula to the nearest training one (inf when unparsable)."""
        rows = [_descriptor(formula) for formula in formulas]
        out = np.full(len(rows), np.inf)
        usable = [i for i, x in enumerate(rows) if x is not None]
        if usable:
            x = (np.vstack([rows[i] for i in usable]) - self.mean) / self.scale
            out[usable] = self.tree.query(x)[0]
        return out

    def contains(self, formulas: Iterable[str]) -> np.ndarray:
        """True where a formula lies within `threshold` of the training compositions."""
        return self.distance(formulas) <= self.threshold


_UNPARSABLE = (ValueError, KeyError, AttributeError, TypeError)


def _reduced(formula: str) -> str | None:
    try:
        return Composition(formula).reduced_formula
    except _UNPARSABLE:
        return None


def _descriptor(formula: str) -> np.ndarray | None:
    try:
        return formula_descriptor(formula)
    except _UNPARSABLE:
        return None
