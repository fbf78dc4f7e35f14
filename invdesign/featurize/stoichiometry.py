"""Stoichiometric patterns: which kinds of formula a training set holds.

A composition's pattern is its reduced element amounts in order of Pauling electronegativity,
the order pymatgen writes formulas in: BaTiO3 and SrZrO3 are both (1, 1, 3), cation, cation,
three anions, while the same atoms arranged as RhO3F are (1, 3, 1). The elements themselves do
not enter, so a generator kept to the patterns of its training crystals can still place any
element anywhere; it only stops drawing kinds of formula that no training crystal has (a
perovskite generator drawing four-atom cells or anion-rich ABX3 look-alikes).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache, reduce
from pathlib import Path

from pymatgen.core import Element, Structure

Pattern = tuple[int, ...]


def stoichiometry_pattern(counts: Mapping[int, int]) -> Pattern:
    """Reduced amounts of {atomic number: count}, most electropositive element first (ties,
    and elements without an electronegativity, by atomic number)."""
    return _pattern(tuple(sorted((int(z), int(n)) for z, n in counts.items() if n)))


@lru_cache(maxsize=65536)
def _pattern(counts: tuple[tuple[int, int], ...]) -> Pattern:
    ordered = sorted(counts, key=lambda zn: (_electronegativity(zn[0]), zn[0]))
    divisor = reduce(math.gcd, (n for _, n in ordered), 0) or 1
    return tuple(n // divisor for _, n in ordered)


@cache
def _electronegativity(z: int) -> float:
    with warnings.catch_warnings():  # pymatgen warns where it has no value
        warnings.simplefilter("ignore", UserWarning)
        x = Element.from_Z(z).X
    return x if math.isfinite(x) else math.inf  # noble gases: pymatgen gives NaN


def structure_counts(structure: Structure) -> dict[int, int]:
    """{atomic number: count} of a structure's cell."""
    return {el.Z: round(n) for el, n in structure.composition.element_composition.items()}


@dataclass(frozen=True)
class StoichiometryPatterns:
    """The stoichiometric patterns seen in a set of training crystals."""

    patterns: frozenset[Pattern]

    @classmethod
    def fit(cls, structures: Iterable[Structure]) -> StoichiometryPatterns:
        """The patterns of these crystals.

        Raises:
            ValueError: When there are no structures.
        """
        patterns = frozenset(stoichiometry_pattern(structure_counts(s)) for s in structures)
        if not patterns:
            raise ValueError("fitting stoichiometric patterns needs at least one structure")
        return cls(patterns)

    def allows(self, counts: Mapping[int, int]) -> bool:
        """Whether {atomic number: count} has one of the patterns."""
        return stoichiometry_pattern(counts) in self.patterns

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(list(p) for p in self.patterns)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StoichiometryPatterns:
        """Read a saved set; a malformed file raises ValueError naming it."""
        try:
            rows = json.loads(Path(path).read_text())
            patterns = frozenset(tuple(int(n) for n in row) for row in rows)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: not a list of stoichiometric patterns ({err})") from err
        if not patterns or any(not p or min(p) < 1 for p in patterns):
            raise ValueError(f"{path}: patterns must be non-empty lists of positive counts")
        return cls(patterns)
