"""Elastic tensor by finite strains, Voigt-Reuss-Hill moduli and Born stability.

Each of the six Voigt strain components is applied at a few small magnitudes to the relaxed
cell, ions are relaxed at the fixed strained cell (relaxed-ion tensor, which matters wherever
atoms do not sit on inversion centres, e.g. diamond Si), the stress is read from the
calculator and C_ij = d sigma_i / d epsilon_j is the slope of a straight-line fit through the
strained points and the unstrained reference. Engineering shear strains are used
(epsilon_4 = 2 epsilon_yz), so C is the usual 6x6 Voigt matrix, symmetrised.

Crystal symmetry saves most of the work: if R is a rotation of the crystal's point group, the
response to the strain R e R^T is R s R^T. A Voigt component whose unit strain lies in the span
of rotated strains already computed is skipped (cubic: 2 of 6 components, hexagonal 3,
tetragonal 4), and C is the least-squares fit to every computed strain and its rotations, which
also makes it exactly invariant under the point group.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.units import GPa

from invdesign.oracle.relax import relax_ions

__all__ = ["ElasticResult", "elastic_tensor", "point_group_rotations", "strain_matrix",
           "vrh_moduli"]

logger = logging.getLogger(__name__)

# +-1 % per component (a central difference; see OracleConfig for why not more points).
DEFAULT_STRAINS: tuple[float, ...] = (-0.01, 0.01)
# Voigt index -> Cartesian pair (ASE stress order xx yy zz yz xz xy).
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# Rotations found within a symmetry tolerance are orthogonal to ~1e-4 in a relaxed cell, so a
# rotated unit strain has spurious components of that order: smaller ones do not count.
_RANK_TOL = 1e-2


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
        components: Voigt components (0..5) actually strained; the rest follow by symmetry.
    """

    tensor: np.ndarray
    K_vrh: float
    G_vrh: float
    eigenvalues: np.ndarray
    mechanically_stable: bool
    max_residual: float
    calls: int
    steps: int
    components: tuple[int, ...] = (0, 1, 2, 3, 4, 5)


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


def _voigt_strain(eps: np.ndarray) -> np.ndarray:
    """3x3 symmetric strain -> Voigt vector with engineering shear."""
    return np.array([eps[i, j] * (1.0 if i == j else 2.0) for i, j in _VOIGT_PAIRS])


def _voigt_stress(sigma: np.ndarray) -> np.ndarray:
    """3x3 symmetric stress -> Voigt vector."""
    return np.array([sigma[i, j] for i, j in _VOIGT_PAIRS])


def _stress_matrix(voigt: np.ndarray) -> np.ndarray:
    """Voigt stress -> 3x3 symmetric matrix."""
    m = np.zeros((3, 3))
    for (i, j), v in zip(_VOIGT_PAIRS, voigt, strict=True):
        m[i, j] = m[j, i] = v
    return m


def point_group_rotations(atoms: Atoms, symprec: float = 0.01) -> list[np.ndarray]:
    """Cartesian rotation matrices of the crystal's point group (spglib).

    Args:
        atoms: Periodic structure.
        symprec: Distance tolerance of the symmetry search, A.

    Returns:
        Distinct 3x3 orthogonal matrices, the identity among them; just the identity when
        spglib finds no symmetry.
    """
    import spglib

    lattice = np.asarray(atoms.cell)
    cell = (lattice, atoms.get_scaled_positions(), atoms.numbers)
    rotations = [np.eye(3)]
    with warnings.catch_warnings():  # spglib's notice about its error-handling switch
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            sym = spglib.get_symmetry(cell, symprec=symprec)
        except spglib.SpglibError:
            sym = None
    if sym is None:
        return rotations
    inv_t = np.linalg.inv(lattice.T)
    for w in sym["rotations"]:
        r = lattice.T @ w @ inv_t  # fractional (columns) -> Cartesian
        if np.allclose(r @ r.T, np.eye(3), atol=1e-3) and \
                not any(np.allclose(r, q, atol=1e-6) for q in rotations):
            rotations.append(r)
    return rotations


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
                   relax: bool = True, symmetry: bool = True,
                   symprec: float = 0.01) -> ElasticResult:
    """Relaxed-ion elastic tensor of a (relaxed) structure by finite strains.

    Args:
        atoms: Relaxed structure (not modified).
        calc: ASE calculator.
        strains: Strain magnitudes applied to each Voigt component (dimensionless), symmetric
            about zero so that the fitted slope ignores any residual stress.
        relax_ions_fmax: Force tolerance for ionic relaxation in strained cells, eV/A.
        relax_steps: Maximum ionic steps per strained cell.
        relax: Relax ions in strained cells (False gives the clamped-ion tensor).
        symmetry: Skip the components that the point group determines (see module docstring).
        symprec: Tolerance of the symmetry search, A.

    Returns:
        The tensor (GPa), VRH moduli (GPa), eigenvalues and Born stability.
    """
    ref = atoms.copy()
    s0, steps = _stress_gpa(ref, calc, relax_ions_fmax, relax_steps, relax)
    cell0 = np.asarray(ref.cell)
    frac0 = ref.get_scaled_positions(wrap=False)
    rotations = point_group_rotations(ref, symprec) if symmetry else [np.eye(3)]
    span = np.zeros((0, 6))
    x_rows, y_rows, components = [], [], []
    for j in range(6):
        unit = _voigt_strain(strain_matrix(j, 1.0))
        if np.linalg.matrix_rank(np.vstack([span, unit]), tol=_RANK_TOL) == len(span):
            continue  # determined by the strains computed so far and the point group
        components.append(j)
        # Internal relaxation is linear in a small strain: once one strain is done, the
        # others start from its ionic shift scaled to their magnitude (a step or two).
        shift_per_strain = np.zeros_like(frac0)
        for k, e in enumerate(sorted(strains, key=lambda v: (abs(v), -v))):
            eps = strain_matrix(j, e)
            strained = ref.copy()
            strained.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
            strained.set_scaled_positions(frac0 + e * shift_per_strain)
            s, n = _stress_gpa(strained, calc, relax_ions_fmax, relax_steps, relax)
            if k == 0 and e != 0:
                shift_per_strain = (strained.get_scaled_positions(wrap=False) - frac0) / e
            steps += n
            dsigma = _stress_matrix(s - s0)
            for r in rotations:
                x_rows.append(_voigt_strain(r @ eps @ r.T))
                y_rows.append(_voigt_stress(r @ dsigma @ r.T))
        rotated = [_voigt_strain(r @ strain_matrix(j, 1.0) @ r.T) for r in rotations]
        span = _basis(np.vstack([span, *rotated]))
    x, y = np.asarray(x_rows), np.asarray(y_rows)
    tensor = np.linalg.lstsq(x, y, rcond=None)[0].T  # sigma = C eps
    max_res = float(np.abs(y - x @ tensor.T).max())
    tensor = 0.5 * (tensor + tensor.T)
    eig = np.linalg.eigvalsh(tensor)
    k, g = vrh_moduli(tensor)
    logger.debug("elastic: K=%.1f G=%.1f GPa, min eig %.1f GPa, residual %.2f GPa, components %s",
                 k, g, eig[0], max_res, components)
    return ElasticResult(tensor=tensor, K_vrh=k, G_vrh=g, eigenvalues=eig,
                         mechanically_stable=bool(np.all(eig > 0)), max_residual=max_res,
                         calls=len(components) * len(strains) + 1, steps=steps,
                         components=tuple(components))


def _basis(vectors: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning the row space of `vectors`."""
    _, sv, vt = np.linalg.svd(vectors, full_matrices=False)
    return vt[sv > _RANK_TOL]
