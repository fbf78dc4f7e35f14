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
        rows = {}
        for formula in formulas:
            try:
                rows.setdefault(_key(formula), formula_descriptor(formula))
            except (ValueError, KeyError, AttributeError, TypeError):
                continue
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
        out = []
        for formula in formulas:
            try:
                x = (formula_descriptor(formula) - self.mean) / self.scale
            except (ValueError, KeyError, AttributeError, TypeError):
                out.append(np.inf)
                continue
            out.append(float(self.tree.query(x)[0]))
        return np.array(out, dtype=float)

    def contains(self, formulas: Iterable[str]) -> np.ndarray:
        """True where a formula lies within `threshold` of the training compositions."""
        return self.distance(formulas) <= self.threshold


def _key(formula: str) -> str:
    return Composition(formula).reduced_formula
