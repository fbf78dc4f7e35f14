"""Applicability domain: where a model's training data lets its predictions be trusted.

A surrogate trained on Materials Project binaries has almost never seen a compound made only of
gas-forming elements (3 of 3,353: KrF2, NH3, HN), yet it will happily predict a bulk modulus of
160 GPa for OF; an optimiser then chases that error. `CompositionDomain` measures the distance of
a composition to its nearest training composition in standardised composition-descriptor space
(`formula_descriptor`: element-property statistics) and calls it inside when that distance is
no larger than what held-out chemistry shows: the `quantile` of the same distance from each
training formula to its nearest *other* formula (leave one formula out).

`ApplicabilityDomain` adds the number of elements and the range of each training label, and is
stored in a surrogate checkpoint's card, so `invdesign predict` can say which predictions are
extrapolations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
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


@dataclass(frozen=True)
class ApplicabilityDomain:
    """Element counts, chemistry and label ranges of a model's training data.

    Attributes:
        formulas: Distinct reduced training formulas.
        element_counts: Fewest and most elements of a training formula.
        target_ranges: Smallest and largest training label of each target (physical units).
    """

    formulas: tuple[str, ...]
    element_counts: tuple[int, int]
    target_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_training(cls, formulas: Iterable[str],
                      targets: Mapping[str, Iterable[float]] | None = None
                      ) -> ApplicabilityDomain:
        """The domain of training formulas and their labels (NaN labels ignored).

        Raises:
            ValueError: When no formula parses.
        """
        reduced = sorted({key for f in formulas if (key := _reduced(f)) is not None})
        if not reduced:
            raise ValueError("an applicability domain needs at least one training formula")
        counts = [len(Composition(f)) for f in reduced]
        ranges = {}
        for name, values in (targets or {}).items():
            array = np.asarray(list(values), dtype=float)
            if np.isfinite(array).any():
                ranges[name] = (float(np.nanmin(array)), float(np.nanmax(array)))
        return cls(tuple(reduced), (min(counts), max(counts)), ranges)

    @classmethod
    def unknown(cls) -> ApplicabilityDomain:
        """A domain with no training data on record: `assess(None, predictions)` then only
        checks that each prediction is finite."""
        return cls((), (0, 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for a checkpoint card)."""
        return {"element_counts": list(self.element_counts),
                "target_ranges": {k: list(v) for k, v in self.target_ranges.items()},
                "formulas": list(self.formulas)}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ApplicabilityDomain:
        lo, hi = payload["element_counts"]
        return cls(tuple(payload["formulas"]), (int(lo), int(hi)),
                   {k: (float(v[0]), float(v[1]))
                    for k, v in payload.get("target_ranges", {}).items()})

    @cached_property
    def composition(self) -> CompositionDomain | None:
        """Nearest-composition check; None with fewer than `MIN_FORMULAS` formulas."""
        if len(self.formulas) < MIN_FORMULAS:
            return None
        return CompositionDomain(self.formulas)

    def assess(self, formulas: Iterable[str] | None,
               predictions: Mapping[str, Iterable[float]] | None = None, *,
               n: int | None = None) -> pd.DataFrame:
        """Per row: `composition_distance`, `in_domain` and `domain_note` (why not, empty
        when inside).

        A row is inside when its number of elements is within `element_counts`, its
        composition within the `CompositionDomain` threshold, and each prediction given
        finite and, for targets with a training range, within it. Without `formulas` (then
        `n` rows) only the predictions are checked.
        """
        if formulas is None:
            return self._assess_predictions(n or 0, predictions)
        formulas = ["" if not isinstance(f, str) else f for f in formulas]
        lo, hi = self.element_counts
        n_elements = np.array([_n_elements(f) for f in formulas])
        notes: list[list[str]] = [[] for _ in formulas]
        for i, n in enumerate(n_elements):
            if n == 0:
                notes[i].append("unparsable formula")
            elif not lo <= n <= hi:
                trained = f"{lo}" if lo == hi else f"{lo}-{hi}"
                notes[i].append(f"{n} element{'s' if n > 1 else ''} (trained on {trained})")
        distance = np.full(len(formulas), np.nan)
        domain = self.composition
        if domain is not None:
            distance = domain.distance(formulas)
            for i in np.flatnonzero(distance > domain.threshold):
                if n_elements[i] and math.isfinite(distance[i]):
                    notes[i].append(f"unfamiliar chemistry (distance {distance[i]:.2f} > "
                                    f"{domain.threshold:.2f})")
                elif n_elements[i]:
                    notes[i].append("element without descriptors")
        self._note_predictions(notes, predictions)
        return _table(distance, notes)

    def _assess_predictions(self, n: int, predictions: Mapping[str, Iterable[float]] | None
                            ) -> pd.DataFrame:
        notes: list[list[str]] = [[] for _ in range(n)]
        self._note_predictions(notes, predictions)
        return _table(np.full(n, np.nan), notes)

    def _note_predictions(self, notes: list[list[str]],
                          predictions: Mapping[str, Iterable[float]] | None) -> None:
        for name, values in (predictions or {}).items():
            value = np.asarray(list(values), dtype=float)
            bounds = self.target_ranges.get(name)
            for i, v in enumerate(value):
                if not math.isfinite(v):
                    notes[i].append(f"no {name} prediction")
                elif bounds is not None and not bounds[0] <= v <= bounds[1]:
                    notes[i].append(f"{name} {v:.3g} outside training range "
                                    f"{bounds[0]:.3g}-{bounds[1]:.3g}")


def _table(distance: np.ndarray, notes: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame({"composition_distance": distance,
                         "in_domain": np.array([not n for n in notes], dtype=bool),
                         "domain_note": ["; ".join(n) for n in notes]})


def _n_elements(formula: str) -> int:
    try:
        return len(Composition(formula)) if formula else 0
    except _UNPARSABLE:
        return 0
