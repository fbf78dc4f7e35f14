"""Reference crystals built in code, with textbook bulk moduli and thermal expansion.

Used by `invdesign examples` (so the README's first command has structures to predict on), by
tests, and as sanity checks for surrogates and the oracle. Reference values: experimental, near
room temperature (bulk modulus in GPa, linear thermal expansion in 1e-6/K).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Lattice, Structure


@dataclass(frozen=True)
class Reference:
    """A prototype crystal: space group, cubic lattice constant (A), species and sites."""

    name: str
    spacegroup: str
    a: float
    species: tuple[str, ...]
    coords: tuple[tuple[float, float, float], ...]
    bulk_modulus: float | None  # GPa, experiment
    thermal_expansion: float | None  # 1e-6/K, experiment

    def structure(self) -> Structure:
        return Structure.from_spacegroup(self.spacegroup, Lattice.cubic(self.a),
                                         list(self.species), [list(c) for c in self.coords])


_O, _Q, _H = (0.0, 0.0, 0.0), (0.25, 0.25, 0.25), (0.5, 0.5, 0.5)
REFERENCES = (
    Reference("Al", "Fm-3m", 4.05, ("Al",), (_O,), 76, 23.1),
    Reference("Cu", "Fm-3m", 3.61, ("Cu",), (_O,), 140, 16.5),
    Reference("Ag", "Fm-3m", 4.09, ("Ag",), (_O,), 100, 18.9),
    Reference("W", "Im-3m", 3.165, ("W",), (_O,), 310, 4.5),
    Reference("Fe", "Im-3m", 2.87, ("Fe",), (_O,), 170, 11.8),
    Reference("Si", "Fd-3m", 5.43, ("Si",), (_O,), 98, 2.6),
    Reference("C-diamond", "Fd-3m", 3.567, ("C",), (_O,), 443, 1.0),
    Reference("NaCl", "Fm-3m", 5.64, ("Na", "Cl"), (_O, _H), 24, 40),
    Reference("MgO", "Fm-3m", 4.21, ("Mg", "O"), (_O, _H), 160, 10.5),
    Reference("SiC", "F-43m", 4.36, ("Si", "C"), (_O, _Q), 225, 4.0),
    Reference("TiC", "Fm-3m", 4.33, ("Ti", "C"), (_O, _H), 242, 7.4),
    Reference("GaAs", "F-43m", 5.65, ("Ga", "As"), (_O, _Q), 75, 5.7),
)


def reference_structures() -> dict[str, Structure]:
    """Name -> conventional-cell Structure of every reference crystal."""
    return {ref.name: ref.structure() for ref in REFERENCES}


def write_examples(folder: str | Path) -> Path:
    """Write one CIF per reference crystal plus `properties.csv` (experimental values)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for ref in REFERENCES:
        ref.structure().to(filename=str(folder / f"{ref.name}.cif"))
    with open(folder / "properties.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "bulk_modulus_exp", "thermal_expansion_exp_1e-6_per_K"])
        for ref in REFERENCES:
            writer.writerow([ref.name, ref.bulk_modulus, ref.thermal_expansion])
    return folder
