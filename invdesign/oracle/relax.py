"""Structure relaxation (cell and ions, or ions at a fixed cell) through an ASE calculator."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS, FIRE
from ase.units import GPa
from pymatgen.core import Lattice, Structure

__all__ = ["RelaxResult", "frac_rmsd", "median_relaxation_rmsd", "relax", "relax_ions", "to_atoms",
           "to_structure"]

logger = logging.getLogger(__name__)

Optimizer = Literal["FIRE", "BFGS"]
_OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS}


@dataclass(frozen=True)
class RelaxResult:
    """Outcome of a relaxation.

    Attributes:
        atoms: Relaxed atoms, with the calculator attached.
        energy_per_atom: Potential energy of the relaxed cell, eV/atom.
        rmsd: Root-mean-square displacement between input and relaxed positions, A
            (see `frac_rmsd`).
        volume_change: Relaxed volume / input volume - 1, dimensionless.
        converged: Whether the largest force (and scaled stress) fell below fmax.
        steps: Optimiser steps taken.
    """

    atoms: Atoms
    energy_per_atom: float
    rmsd: float
    volume_change: float
    converged: bool
    steps: int

    @property
    def structure(self) -> Structure:
        """The relaxed structure as a pymatgen Structure."""
        return to_structure(self.atoms)


def to_atoms(structure: Structure) -> Atoms:
    """ASE Atoms (periodic, same site order) from an ordered pymatgen Structure."""
    symbols = [getattr(sp, "element", sp).symbol for sp in structure.species]
    return Atoms(symbols=symbols, cell=structure.lattice.matrix,
                 scaled_positions=structure.frac_coords, pbc=True)


def to_structure(atoms: Atoms) -> Structure:
    """Pymatgen Structure (same site order) from ASE Atoms."""
    return Structure(Lattice(np.asarray(atoms.cell)), atoms.get_chemical_symbols(),
                     atoms.get_scaled_positions(wrap=False))


def frac_rmsd(frac_in: np.ndarray, frac_out: np.ndarray, cell: np.ndarray) -> float:
    """RMSD in A of fractional displacements measured on one lattice.

    The input fractional coordinates are placed on the relaxed lattice, so a pure change of
    cell shape or volume gives 0 (reported separately as `RelaxResult.volume_change`).
    Displacements are wrapped to the nearest periodic image and the mean (a rigid translation)
    is removed before converting to Cartesian A.

    Args:
        frac_in: (n, 3) input fractional coordinates.
        frac_out: (n, 3) relaxed fractional coordinates, same site order.
        cell: (3, 3) relaxed lattice vectors as rows, A.
    """
    d = np.asarray(frac_out, float) - np.asarray(frac_in, float)
    d -= np.round(d)
    d -= d.mean(axis=0)
    cart = d @ np.asarray(cell, float)
    return float(np.sqrt(np.mean(np.sum(cart**2, axis=1))))


class RelaxationRunawayError(RuntimeError):
    """The cell volume changed by more than MAX_VOLUME_RATIO (either way) while relaxing."""


class RelaxationTimeoutError(RelaxationRunawayError):
    """One relaxation ran longer than MAX_RELAX_SECONDS or reached forces beyond MAX_FORCE
    (not retried: a second attempt would only spend as long again)."""


MAX_VOLUME_RATIO = 3.0  # a relaxation that triples or thirds the cell volume is stopped
# A cell that collapses or shears into a very oblique basis makes every step slow (the
# potential's neighbour search covers ever more images): measured, a 4-atom decoded BC cell
# still relaxing after 11 minutes. A relaxation of <= 20 atoms normally takes seconds.
MAX_RELAX_SECONDS = 300.0
# Optimiser forces this large (stress included) mean a collapsing cell or atoms: the same BC
# cell reached 1.8e3 at step 19 and 3.7e5 at step 30, each step slower than the last.
MAX_FORCE = 1000.0  # eV/A


# Harmless warnings raised at every step: the cell filter's matrix logarithm at 1e-13
# accuracy, and CHGNet converting its stress tensor to a float.
_NOISE = ("logm result may be inaccurate", "Converting a tensor with requires_grad=True")


class _GuardedCellFilter(FrechetCellFilter):
    """A `FrechetCellFilter` that refuses to evaluate the potential on a cell whose volume has
    left (1/MAX_VOLUME_RATIO, MAX_VOLUME_RATIO) x the starting one. The observer in `_optimise`
    only sees a cell after its forces were computed, and one optimiser step on a badly strained
    cell can shrink it ten-fold: the potential's neighbour lists on such a cell exhaust memory
    (measured: 6.6 GB to relax a 2-atom NiH cell, 0.5 GB with this guard)."""

    def __init__(self, atoms: Atoms, **kwargs) -> None:
        super().__init__(atoms, **kwargs)
        self._volume_in = atoms.get_volume()

    def _refuse_runaway(self) -> None:
        ratio = self.atoms.get_volume() / self._volume_in
        if not 1.0 / MAX_VOLUME_RATIO < ratio < MAX_VOLUME_RATIO:
            raise RelaxationRunawayError(f"relaxation ran away: volume x{ratio:.2f} (before "
                                         f"evaluating it)")

    def get_forces(self, *args, **kwargs):
        self._refuse_runaway()
        return super().get_forces(*args, **kwargs)

    def get_potential_energy(self, *args, **kwargs):
        self._refuse_runaway()
        return super().get_potential_energy(*args, **kwargs)


def _optimise(target: Atoms | FrechetCellFilter, optimizer: Optimizer, fmax: float,
              steps: int) -> tuple[bool, int]:
    opt = _OPTIMIZERS[optimizer](target, logfile=None)
    atoms = target.atoms if isinstance(target, FrechetCellFilter) else target
    started = time.perf_counter()

    def guard() -> None:
        """Stop a relaxation whose forces or time run away (a runaway volume was already
        refused by `_GuardedCellFilter`: ASE computes forces before calling observers)."""
        # the optimiser's own forces: with a cell filter, stress enters them (~2 GPa per eV/A)
        force = float(np.abs(target.get_forces()).max()) if len(atoms) else 0.0
        if not force < MAX_FORCE:
            raise RelaxationTimeoutError(f"relaxation ran away: forces {force:.3g} eV/A after "
                                         f"{opt.nsteps} steps (cell or atoms collapsing)")
        if time.perf_counter() - started > MAX_RELAX_SECONDS:
            raise RelaxationTimeoutError(f"relaxation ran away: still running after "
                                         f"{MAX_RELAX_SECONDS:.0f} s ({opt.nsteps} steps)")

    opt.attach(guard, interval=1)
    with warnings.catch_warnings():
        for message in _NOISE:
            warnings.filterwarnings("ignore", message=message)
        converged = bool(opt.run(fmax=fmax, steps=steps))
    return converged, int(opt.nsteps)


def relax_ions(atoms: Atoms, calc: Calculator, *, fmax: float = 0.01, steps: int = 100,
               optimizer: Optimizer = "BFGS") -> tuple[bool, int]:
    """Relax ionic positions in place at a fixed cell.

    A structure whose forces already fall below `fmax` (e.g. every atom on an inversion centre)
    costs a single force call.

    Args:
        atoms: Atoms to relax (modified in place; `calc` is attached).
        calc: ASE calculator.
        fmax: Force tolerance, eV/A.
        steps: Maximum optimiser steps.
        optimizer: "BFGS" or "FIRE".

    Returns:
        (converged, steps taken).
    """
    atoms.calc = calc
    if len(atoms) == 1:  # no internal degrees of freedom beyond a translation
        return True, 0
    return _optimise(atoms, optimizer, fmax, steps)


def relax(structure: Structure | Atoms, calc: Calculator, *, fmax: float = 0.05,
          stress_tol: float = 0.1, steps: int = 200, optimizer: Optimizer = "BFGS",
          pressure: float = 0.0) -> RelaxResult:
    """Relax cell and ions together (ASE `FrechetCellFilter`) under a hydrostatic `pressure`.

    The filter's cell factor is set so that its force criterion means |stress| < `stress_tol`
    (ASE's default, the number of atoms, allows about fmax/V_atom, ~0.5 GPa: a few % in volume
    for soft solids).

    Args:
        structure: Input structure (not modified).
        calc: ASE calculator.
        fmax: Force tolerance, eV/A.
        stress_tol: Stress tolerance, GPa.
        steps: Maximum optimiser steps.
        optimizer: "BFGS" (fewest steps near a minimum) or "FIRE".
        pressure: External pressure, GPa (e.g. 10 for Carbon-24, whose crystals were found
            by random search at 10 GPa). The reported energy stays the potential energy, not
            the enthalpy.

    Returns:
        The relaxed atoms, energy per atom (eV/atom), RMSD (A), volume change, convergence flag
        and step count.
    """
    atoms = structure.copy() if isinstance(structure, Atoms) else to_atoms(structure)
    atoms.calc = None
    frac_in = atoms.get_scaled_positions(wrap=False)
    volume_in = atoms.get_volume()
    start = atoms.copy()
    atoms.calc = calc
    cell_factor = volume_in * stress_tol * GPa / fmax
    try:
        converged, n_steps = _optimise(_GuardedCellFilter(atoms, exp_cell_factor=cell_factor,
                                                          scalar_pressure=pressure * GPa),
                                       optimizer, fmax, steps)
    except RelaxationTimeoutError:
        raise
    except RelaxationRunawayError as err:
        # A small cell factor lets the optimiser take huge strain steps on a badly strained
        # cell; retry once with ASE's stiffer default (n_atoms), which takes smaller ones.
        logger.info("%s; retrying with the default cell factor", err)
        atoms = start
        atoms.calc = calc
        converged, n_steps = _optimise(_GuardedCellFilter(atoms, scalar_pressure=pressure * GPa),
                                       optimizer, fmax, steps)
    energy = float(atoms.get_potential_energy()) / len(atoms)
    rmsd = frac_rmsd(frac_in, atoms.get_scaled_positions(wrap=False), np.asarray(atoms.cell))
    logger.debug("relaxed %s in %d steps (converged=%s), E=%.4f eV/atom, rmsd=%.3f A",
                 atoms.get_chemical_formula(), n_steps, converged, energy, rmsd)
    return RelaxResult(atoms=atoms, energy_per_atom=energy, rmsd=rmsd,
                       volume_change=atoms.get_volume() / volume_in - 1.0,
                       converged=converged, steps=n_steps)


def median_relaxation_rmsd(structures: Sequence[Structure], calc: Calculator, n: int
                           ) -> dict[str, float]:
    """How far the first n structures sit from a local minimum: the median RMSD (A) between
    each and its relaxation (the CDVAE/MatterGen metric). A relaxation that raises or returns
    a non-finite RMSD is counted in `failed`, not raised."""
    rmsd, failed = [], 0
    for structure in structures[:n]:
        try:
            result = relax(structure, calc)
        except Exception as err:  # one bad sample must not end the benchmark
            logger.warning("relaxation failed: %s", err)
            failed += 1
            continue
        if np.isfinite(result.rmsd):
            rmsd.append(result.rmsd)
        else:
            failed += 1
    return {"n": len(rmsd), "failed": failed,
            "median_rmsd_A": float(np.median(rmsd)) if rmsd else float("nan")}
