"""Elastic tensor by finite strains, Voigt-Reuss-Hill moduli and Born stability.

Each of the six Voigt strain components is applied at a few small magnitudes to the relaxed
cell, ions are relaxed at the fixed strained cell (relaxed-ion tensor, which matters wherever
atoms do not sit on inversion centres, e.g. diamond Si), the stress is read from the
calculator and C_ij = d sigma_i / d epsilon_j is the slope of a straight-line fit through the
strained points and the unstrained reference. Engineering shear strains are used
(epsilon_4 = 2 epsilon_yz), so C is the usual 6x6 Voigt matrix, symmetrised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.units import GPa

from invdesign.oracle.relax import relax_ions

__all__ = ["ElasticResult", "elastic_tensor", "strain_matrix", "vrh_moduli"]

logger = logging.getLogger(__name__)

DEFAULT_STRAINS: tuple[float, ...] = (-0.01, -0.005, 0.005, 0.01)
# Voigt index -> Cartesian pair (ASE stress order xx yy zz yz xz xy).
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclass(frozen=True)
class ElasticResult:
    """Elastic constants of a relaxed structure.

    Attributes:
        tensor: (6, 6) Voigt elastic tensor, GPa, symmetrised.
        K_vrh: Voigt-Reuss-Hill bulk modulus, GPa.
        G_vrh: Voigt-Reuss-Hill shear modulus, GPa.
        eigenvalues: Eigenvalues of `tensor`, GPa, ascending.
        mechanically_stable: Born criterion: every eigenvalue > 0.
        max_residual: Largest deviation of a stress from its straight-line fit, GPa (noise
            or non-linearity of the potential at the chosen strains).
        calls: Number of strained cells evaluated.
        steps: Ionic relaxation steps summed over strained cells.
    """

    tensor: np.ndarray
    K_vrh: float
    G_vrh: float
    eigenvalues: np.ndarray
    mechanically_stable: bool
    max_residual: float
    calls: int
    steps: int


def strain_matrix(index: int, magnitude: float) -> np.ndarray:
    """Symmetric 3x3 strain for one Voigt component (engineering shear for 3..5).

    Args:
        index: Voigt component, 0..5 (xx, yy, zz, yz, xz, xy).
        magnitude: Strain (dimensionless); for shear the engineering strain 2 eps_ij.
    """
    i, j = _VOIGT_PAIRS[index]
    eps = np.zeros((3, 3))
    eps[i, j] += magnitude if i == j else magnitude / 2.0
    if i != j:
        eps[j, i] += magnitude / 2.0
    return eps


def vrh_moduli(tensor: np.ndarray) -> tuple[float, float]:
    """Voigt-Reuss-Hill K and G (GPa) of a 6x6 Voigt tensor, via pymatgen's `ElasticTensor`.

    Returns NaN for a singular tensor.
    """
    from pymatgen.analysis.elasticity import ElasticTensor

    try:
        et = ElasticTensor.from_voigt(np.asarray(tensor, float))
        return float(et.k_vrh), float(et.g_vrh)
    except (np.linalg.LinAlgError, ValueError):
        return float("nan"), float("nan")


def _stress_gpa(atoms: Atoms, calc: Calculator, fmax: float, steps: int,
                relax: bool) -> tuple[np.ndarray, int]:
    """Voigt stress (GPa, ASE sign: tension positive) after optional ionic relaxation."""
    n = relax_ions(atoms, calc, fmax=fmax, steps=steps)[1] if relax else 0
    atoms.calc = calc
    return np.asarray(atoms.get_stress(voigt=True), float) / GPa, n


def elastic_tensor(atoms: Atoms, calc: Calculator, *, strains: Sequence[float] = DEFAULT_STRAINS,
                   relax_ions_fmax: float = 0.01, relax_steps: int = 100,
                   relax: bool = True) -> ElasticResult:
    """Relaxed-ion elastic tensor of a (relaxed) structure by finite strains.

    Args:
        atoms: Relaxed structure (not modified).
        calc: ASE calculator.
        strains: Strain magnitudes applied to each Voigt component (dimensionless).
        relax_ions_fmax: Force tolerance for ionic relaxation in strained cells, eV/A.
        relax_steps: Maximum ionic steps per strained cell.
        relax: Relax ions in strained cells (False gives the clamped-ion tensor).

    Returns:
        The tensor (GPa), VRH moduli (GPa), eigenvalues and Born stability.
    """
    ref = atoms.copy()
    s0, steps = _stress_gpa(ref, calc, relax_ions_fmax, relax_steps, relax)
    cell0 = np.asarray(ref.cell)
    x = np.concatenate([[0.0], np.asarray(strains, float)])
    tensor = np.zeros((6, 6))
    max_res = 0.0
    for j in range(6):
        stresses = [s0]
        for e in strains:
            strained = ref.copy()
            strained.set_cell(cell0 @ (np.eye(3) + strain_matrix(j, e)), scale_atoms=True)
            s, n = _stress_gpa(strained, calc, relax_ions_fmax, relax_steps, relax)
            stresses.append(s)
            steps += n
        y = np.asarray(stresses)  # (n_strains + 1, 6)
        coef = np.polyfit(x, y, 1)  # (2, 6): slope, intercept
        tensor[:, j] = coef[0]
        max_res = max(max_res, float(np.abs(y - np.outer(x, coef[0]) - coef[1]).max()))
    tensor = 0.5 * (tensor + tensor.T)
    eig = np.linalg.eigvalsh(tensor)
    k, g = vrh_moduli(tensor)
    logger.debug("elastic: K=%.1f G=%.1f GPa, min eig %.1f GPa, residual %.2f GPa",
                 k, g, eig[0], max_res)
    return ElasticResult(tensor=tensor, K_vrh=k, G_vrh=g, eigenvalues=eig,
                         mechanically_stable=bool(np.all(eig > 0)), max_residual=max_res,
                         calls=6 * len(strains) + 1, steps=steps)
