"""Thermal expansion by the phonon quasi-harmonic approximation (phonopy), the slow option.

The Debye-Grueneisen model (`invdesign.oracle.thermal`) gives every phonon mode one Grueneisen
parameter derived from the bulk modulus and the Poisson ratio, so it cannot represent the
negative-Grueneisen acoustic modes that keep the expansion of Si or diamond small. Here every
mode counts:

1. The relaxed cell is scaled isotropically to `n_volumes` volumes from -`volume_range`/2 to
   +`volume_range` and the ions are relaxed at each fixed cell (`energy_volume_cells`, as
   for AGL's curve).
2. At each volume phonopy builds the harmonic force constants by finite displacements in a
   supercell at least `supercell_length` long along every axis (forces of the undisplaced
   supercell subtracted; translational and permutation symmetry imposed, which removes the
   spurious soft acoustic modes of noisy forces) and samples the phonons on a mesh.
3. `phonopy.run_qha` fits F(V, T) = E(V) + F_vib(V, T) at each temperature and differentiates
   the equilibrium volume: the volumetric alpha_V, and the linear alpha = alpha_V / 3 that the
   oracle reports (isotropic average); also the thermodynamic Grueneisen parameter.

A mode with an imaginary frequency below `-imaginary_tolerance` THz makes that volume's
harmonic free energy meaningless. Such volumes at the ends of the grid are left out (the grid
is redone inside the stable part when fewer than 5 remain); without 5 stable volumes around the
relaxed one the status says "dynamically unstable" instead of giving a number.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from invdesign.oracle.thermal import energy_volume_cells

__all__ = ["QHAResult", "phonon_thermal_expansion", "supercell_repeats"]

logger = logging.getLogger(__name__)

_T_STEP = 10.0  # K, temperature grid of the free energies


@dataclass(frozen=True)
class QHAResult:
    """Phonon QHA thermal expansion of one relaxed cell.

    Attributes:
        alpha: Linear thermal expansion at the temperature asked for, 1/K (NaN on failure).
        gruneisen: Thermodynamic Grueneisen parameter at that temperature.
        min_frequency: Lowest phonon frequency over every volume and mesh point, THz.
        supercell: Repeats of the cell along its three axes.
        n_displacements: Displaced supercells per volume.
        status: "ok" or the reason for NaN.
        steps: Ionic relaxation steps of the E(V) curve.
    """

    alpha: float
    gruneisen: float
    min_frequency: float
    supercell: tuple[int, int, int]
    n_displacements: int
    status: str
    steps: int


def supercell_repeats(cell: np.ndarray, length: float) -> tuple[int, int, int]:
    """Repeats along each axis so that the distance between opposite faces of the supercell
    is at least `length` (A)."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    spacing = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
               for i in range(3)]
    return tuple(max(1, math.ceil(length / s - 1e-9)) for s in spacing)  # type: ignore[return-value]


def _force_constants_phonopy(atoms: Atoms, calc: Calculator, repeats: tuple[int, int, int],
                             displacement: float):
    """A Phonopy object of `atoms` (its own cell taken as primitive) with force constants."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell),
                        scaled_positions=atoms.get_scaled_positions())
    phonon = Phonopy(unit, supercell_matrix=np.diag(repeats), primitive_matrix="P")
    phonon.generate_displacements(distance=displacement)

    def forces(cell) -> np.ndarray:
        supercell = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions,
                          pbc=True)
        supercell.calc = calc
        return supercell.get_forces()

    residual = forces(phonon.supercell)  # drift of the undisplaced supercell
    phonon.forces = [forces(cell) - residual for cell in phonon.supercells_with_displacements]
    phonon.produce_force_constants()
    phonon.symmetrize_force_constants(show_drift=False)  # acoustic sum rule: no fake soft modes
    return phonon


def phonon_thermal_expansion(atoms: Atoms, calc: Calculator, *, temperature: float = 300.0,
                             volume_range: float = 0.08, n_volumes: int = 7,
                             fmax: float = 0.01, steps: int = 100,
                             supercell_length: float = 8.0, displacement: float = 0.03,
                             mesh: float = 50.0, imaginary_tolerance: float = 0.3
                             ) -> QHAResult:
    """Linear thermal expansion of a relaxed cell by the phonon quasi-harmonic approximation.

    Volumes run from -`volume_range`/2 to +`volume_range` around the relaxed one (crystals
    expand as they warm). Volumes with imaginary modes at the ends of the grid are dropped
    while at least 5 contiguous stable volumes around the relaxed one remain; with 3 or 4,
    the grid is redone, as finely, between the outermost stable volumes (a stiff crystal
    such as W expands by well under 1 % by 300 K).

    Args:
        atoms: Relaxed structure (not modified); the phonon primitive cell.
        calc: ASE calculator.
        temperature: T, K.
        volume_range: Largest relative expansion of the grid (compression: half of it).
        n_volumes: Number of volumes (at least 5).
        fmax: Ionic force tolerance at each volume, eV/A.
        steps: Maximum ionic steps per volume.
        supercell_length: Smallest distance between opposite supercell faces, A.
        displacement: Finite displacement, A. 0.03 rather than phonopy's 0.01: at 0.01 the
            force noise of machine-learned potentials (float32, graph cut-offs) fakes
            imaginary modes (CHGNet fcc Cu at +5 % volume: 1.5i THz at 0.01 A, none at 0.03).
        mesh: Phonopy's q-point mesh density (length in A).
        imaginary_tolerance: Imaginary frequencies smaller than this (THz) count as noise.

    Returns:
        `QHAResult`; failures (imaginary modes, a failed fit) give NaN and a status.

    Raises:
        ValueError: Fewer than 5 volumes.
    """
    import phonopy

    if n_volumes < 5:
        raise ValueError(f"phonon QHA needs at least 5 volumes, got {n_volumes}")
    repeats = supercell_repeats(np.asarray(atoms.cell), supercell_length)

    def on_grid(scales: np.ndarray) -> tuple[list, np.ndarray, list, np.ndarray, int, int, int]:
        """Cells, energies, phonons and lowest frequencies on a volume grid, and the stable
        block [lo, hi) around the relaxed volume."""
        scales = scales.copy()
        scales[np.argmin(np.abs(scales))] = 0.0  # the relaxed cell itself is on the grid
        cells, energies, steps_taken = energy_volume_cells(atoms, calc, scales=scales,
                                                           fmax=fmax, steps=steps)
        phonons, lowest = [], np.zeros(len(cells))
        for i, cell in enumerate(cells):
            phonon = _force_constants_phonopy(cell, calc, repeats, displacement)
            phonon.run_mesh(mesh, is_gamma_center=True)
            lowest[i] = float(np.min(phonon.mesh.frequencies))
            phonons.append(phonon)
        lo, hi = _stable_block(lowest >= -imaginary_tolerance, int(np.argmin(np.abs(scales))))
        return cells, energies, phonons, lowest, steps_taken, lo, hi

    scales = np.linspace(-volume_range / 2, volume_range, n_volumes)
    cells, energies, phonons, lowest, n_steps, lo, hi = on_grid(scales)
    if 3 <= hi - lo < 5:  # unstable towards the ends: a finer grid inside the stable part
        finer = np.linspace(scales[lo], scales[hi - 1], n_volumes)
        cells, energies, phonons, lowest, more, lo, hi = on_grid(finer)
        n_steps += more
    n_disp = len(phonons[0].supercells_with_displacements)
    if hi - lo < 5:
        worst = float(lowest.min())
        return QHAResult(math.nan, math.nan, worst, repeats, n_disp,
                         f"dynamically unstable (imaginary mode {-worst:.2g}i THz)", n_steps)
    phonons, energies, cells = phonons[lo:hi], energies[lo:hi], cells[lo:hi]
    floor = float(lowest[lo:hi].min())
    temperatures = np.arange(0.0, temperature + 3 * _T_STEP, _T_STEP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lattice fits of low-symmetry cells, mesh fallbacks
        result = phonopy.run_qha(phonons, temperatures, internal_energies=energies, mesh=mesh)
    t = np.asarray(result.temperatures, dtype=float)
    if len(t) < 2 or t[-1] < temperature:
        return QHAResult(math.nan, math.nan, floor, repeats, n_disp,
                         "unphysical fit: F(V, T) has no minimum inside the volume range",
                         n_steps)
    v_eq = np.asarray(result.equilibrium_volumes, dtype=float)[t <= temperature + _T_STEP]
    volumes = np.array([c.get_volume() for c in cells])
    if not (np.all(np.isfinite(v_eq)) and volumes.min() <= v_eq.min()
            and v_eq.max() <= volumes.max()):
        return QHAResult(math.nan, math.nan, floor, repeats, n_disp,
                         "unphysical fit: V(T) outside the volume grid", n_steps)
    beta = float(np.interp(temperature, t, np.asarray(result.thermal_expansion)))
    gamma = float(np.interp(temperature, t, np.asarray(result.gruneisen_parameters)))
    logger.debug("phonon QHA: alpha=%.3g 1/K, gamma=%.2f, supercell %s, %d displacements, "
                 "volumes %d-%d of %d", beta / 3, gamma, repeats, n_disp, lo, hi, n_volumes)
    return QHAResult(beta / 3.0, gamma, floor, repeats, n_disp, "ok", n_steps)


def _stable_block(stable: np.ndarray, centre: int) -> tuple[int, int]:
    """[lo, hi) of the run of stable volumes around `centre` (empty when it is unstable)."""
    if not stable[centre]:
        return centre, centre
    lo, hi = centre, centre + 1
    while lo > 0 and stable[lo - 1]:
        lo -= 1
    while hi < len(stable) and stable[hi]:
        hi += 1
    return lo, hi
