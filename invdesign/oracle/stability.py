"""Thermodynamic stability: energy above the convex hull of the oracle's own energies.

A decoded crystal can relax to a local minimum and still be far above the competing phases
of its chemical system, so it would decompose. The hull here is built from energies computed
with the same potential and settings as the candidate's (mixing potentials or DFT and ML
energies would shift it): elemental ground states (`elemental_references`, the lowest of a
few prototypes per element relaxed by the oracle) and known compounds (the oracle label table
of the MP binaries). `Hull.e_above_hull` then gives the distance of any (formula, energy per
atom) from that hull and the phases it would decompose into, through pymatgen's
`PhaseDiagram`. This is the ML analogue of the E_hull < 0.1 eV/atom stability criterion used
by MatterGen and DiffCSP (with DFT); its accuracy is the potential's.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, vdw_radii
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element

from invdesign.oracle.calculators import CalculatorName, get_calculator
from invdesign.oracle.relax import RelaxationRunawayError, relax, relax_ions

__all__ = ["STABLE_E_HULL", "Hull", "HullResult", "elemental_prototypes",
           "elemental_references", "hull_from_folder"]

logger = logging.getLogger(__name__)

STABLE_E_HULL = 0.1  # eV/atom: the usual "stable or metastable" cut (MatterGen, DiffCSP)
_DIATOMIC = ("H", "N", "O", "F", "Cl", "Br", "I")  # molecular elements: a molecule in a box
_BOX = 12.0  # A, edge of the molecule's box


@dataclass(frozen=True)
class HullResult:
    """Distance from the hull (eV/atom; NaN when unknown) and the phases the crystal would
    decompose into (or why the distance is unknown)."""

    e_above_hull: float
    decomposition: str


class Hull:
    """Convex hulls of reference energies, one pymatgen `PhaseDiagram` per chemical system.

    Args:
        formulas: Reference formulas (elements and compounds).
        energies_per_atom: Their energies, eV/atom, from the same potential as the candidates.
        labels: Optional names of the references (e.g. mp-ids), used in decompositions.
    """

    def __init__(self, formulas: Sequence[str], energies_per_atom: Sequence[float],
                 labels: Sequence[str] | None = None) -> None:
        energies = np.asarray(energies_per_atom, float)
        if len(formulas) != len(energies):
            raise ValueError(f"{len(formulas)} formulas but {len(energies)} energies")
        labels = list(labels) if labels is not None else list(formulas)
        self._entries: list[PDEntry] = []
        for formula, energy, label in zip(formulas, energies, labels, strict=True):
            if not math.isfinite(energy):
                continue
            comp = Composition(formula)
            self._entries.append(PDEntry(comp, energy * comp.num_atoms, name=str(label)))
        self.elements = frozenset(str(e) for entry in self._entries
                                  for e in entry.composition.elements
                                  if len(entry.composition.elements) == 1)
        self._diagram = lru_cache(maxsize=512)(self._build)

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def from_tables(cls, tables: Iterable[pd.DataFrame]) -> Hull:
        """From oracle result tables (`formula`, `energy_per_atom`, optional `id`, `K_vrh`):
        rows whose relaxation converged (the elastic stage ran, so `K_vrh` is finite when the
        column exists) and whose energy is finite."""
        frames = []
        for table in tables:
            keep = pd.to_numeric(table["energy_per_atom"], errors="coerce").notna()
            if "K_vrh" in table:
                keep &= pd.to_numeric(table["K_vrh"], errors="coerce").notna()
            frames.append(table[keep])
        rows = pd.concat(frames, ignore_index=True)
        ids = rows["id"].astype(str) if "id" in rows else rows["formula"]
        return cls(rows["formula"].tolist(), rows["energy_per_atom"].astype(float).tolist(),
                   ids.tolist())

    def annotate(self, results: pd.DataFrame, relaxed: np.ndarray | None = None
                 ) -> pd.DataFrame:
        """A table with `formula` and `energy_per_atom` (e.g. oracle results), with
        `e_above_hull` (eV/atom) and `decomposition` columns added; NaN (and "not relaxed")
        outside `relaxed`, by default the rows whose relaxation converged (finite energy and
        `K_vrh`)."""
        energy = pd.to_numeric(results["energy_per_atom"], errors="coerce")
        if relaxed is None:
            relaxed = energy.notna() & pd.to_numeric(results["K_vrh"], errors="coerce").notna()
        scored = [self.e_above_hull(str(f), float(e)) if ok else HullResult(math.nan,
                                                                          "not relaxed")
                  for f, e, ok in zip(results["formula"], energy, relaxed, strict=True)]
        return results.assign(e_above_hull=[r.e_above_hull for r in scored],
                              decomposition=[r.decomposition for r in scored])

    def _build(self, system: frozenset[str], exclude: str | None = None) -> PhaseDiagram:
        """The phase diagram of the references within `system`, without `exclude`."""
        return PhaseDiagram([e for e in self._entries if e.name != exclude
                             and {str(x) for x in e.composition.elements} <= system])

    def e_above_hull(self, formula: str, energy_per_atom: float,
                     exclude: str | None = None) -> HullResult:
        """Energy of `formula` at `energy_per_atom` (eV/atom) above the hull of the references
        (negative: below it, i.e. more stable than every known combination). `exclude` leaves
        out the reference with that label (leave-one-out checks of known compounds)."""
        if not math.isfinite(energy_per_atom):
            return HullResult(math.nan, "no energy")
        try:
            comp = Composition(formula)
        except (ValueError, KeyError) as err:
            return HullResult(math.nan, f"bad formula: {err}")
        system = frozenset(e.symbol for e in comp.elements)
        missing = sorted(system - self.elements)
        if missing:
            return HullResult(math.nan, f"no reference for {', '.join(missing)}")
        diagram = self._diagram(system) if exclude is None else self._build(system, exclude)
        entry = PDEntry(comp, energy_per_atom * comp.num_atoms)
        decomposition, e_hull = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
        products = " + ".join(sorted(d.composition.reduced_formula for d in decomposition))
        return HullResult(float(e_hull), products)


def hull_from_folder(folder: Path, calculator: str) -> Hull | None:
    """The hull of the references in `folder` for `calculator` (`elements-<calculator>.csv`
    and the MP-binary label table `mp-binary-<calculator>.csv`, as shipped in
    `checkpoints/oracle-labels/`), or None when either is missing."""
    from invdesign.oracle.executor import read_results

    elements, labels = (folder / f"{kind}-{calculator}.csv" for kind in ("elements", "mp-binary"))
    if not (elements.exists() and labels.exists()):
        return None
    return Hull.from_tables([pd.read_csv(elements), read_results(labels)])


def elemental_prototypes(symbol: str) -> list[tuple[str, Atoms, bool]]:
    """Starting structures for an element's ground state: (name, atoms, relax the cell?).

    Metals: fcc, bcc and hcp at twice the metallic radius; other solids: diamond, simple
    cubic, and graphite for carbon, at twice the covalent radius; noble gases: fcc at twice the
    van der Waals radius; each with ASE's reference structure where it has one. H, N, O, F and
    the heavier halogens: a diatomic molecule in a 12 A box (ions only), the gas or
    molecular-solid reference. Starting cells are never compressed below these radii: a
    collapsing cell makes the potential's neighbour lists, and memory, explode.
    """
    element = Element(symbol)
    z = atomic_numbers[symbol]
    if symbol in _DIATOMIC:
        d = 2.0 * covalent_radii[z]
        molecule = Atoms(2 * symbol, positions=[(0, 0, 0), (0, 0, d)], cell=[_BOX] * 3,
                         pbc=True)
        molecule.translate([_BOX / 2] * 3)
        return [("diatomic molecule", molecule, False)]
    if element.is_noble_gas:
        return [("fcc", bulk(symbol, "fcc", a=2.0 * vdw_radii[z] * math.sqrt(2)), True)]
    out: list[tuple[str, Atoms, bool]] = []
    if element.is_metal:
        with warnings.catch_warnings():  # pymatgen warns when it has no metallic radius
            warnings.simplefilter("ignore")
            d = 2.0 * float(element.metallic_radius or covalent_radii[z])
        out += [("fcc", bulk(symbol, "fcc", a=d * math.sqrt(2)), True),
                ("bcc", bulk(symbol, "bcc", a=d * 2 / math.sqrt(3)), True),
                ("hcp", bulk(symbol, "hcp", a=d, c=d * math.sqrt(8 / 3)), True)]
    else:
        d = 2.0 * covalent_radii[z]
        out += [("diamond", bulk(symbol, "diamond", a=d * 4 / math.sqrt(3)), True),
                ("sc", bulk(symbol, "sc", a=d), True)]
        if symbol == "C":
            out.append(("graphite", _graphite(), True))
    with contextlib.suppress(ValueError, KeyError, RuntimeError, TypeError):  # none in ASE
        reference = bulk(symbol)
        if reference.get_volume() / len(reference) > 0.5 * d**3:
            out.append(("ase-reference", reference, True))
    return out


def _graphite() -> Atoms:
    """AB-stacked graphite, a = 2.46 A, c = 6.71 A (4 atoms)."""
    a, c = 2.46, 6.71
    cell = [[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]]
    frac = [(0, 0, 0.25), (0, 0, 0.75), (1 / 3, 2 / 3, 0.25), (2 / 3, 1 / 3, 0.75)]
    return Atoms("C4", scaled_positions=frac, cell=cell, pbc=True)


def elemental_references(elements: Iterable[str], calculator: CalculatorName = "chgnet",
                         *, fmax: float = 0.05, steps: int = 200) -> pd.DataFrame:
    """The lowest relaxed energy per atom of each element's prototypes.

    Returns:
        One row per element: `id` ("element:<symbol>:<prototype>"), `formula`,
        `energy_per_atom` (eV/atom; NaN when every prototype failed), `prototype` and
        `prototypes_tried`.
    """
    calc = get_calculator(calculator)
    rows = []
    for symbol in elements:
        best = (math.inf, "")
        tried = 0
        for name, atoms, cell in elemental_prototypes(symbol):
            tried += 1
            try:
                if cell:
                    result = relax(atoms, calc, fmax=fmax, steps=steps)
                    ok, energy = result.converged, result.energy_per_atom
                else:
                    ok = relax_ions(atoms, calc, fmax=fmax, steps=steps)[0]
                    energy = float(atoms.get_potential_energy()) / len(atoms)
            except (RelaxationRunawayError, RuntimeError, ValueError) as err:
                logger.info("%s %s: %s", symbol, name, err)
                continue
            if ok and math.isfinite(energy) and energy < best[0]:
                best = (energy, name)
        rows.append({"id": f"element:{symbol}:{best[1] or 'none'}", "formula": symbol,
                     "energy_per_atom": best[0] if best[1] else math.nan,
                     "prototype": best[1], "prototypes_tried": tried})
        logger.info("%s: %.4f eV/atom (%s)", symbol, best[0], best[1] or "all failed")
    return pd.DataFrame(rows)
