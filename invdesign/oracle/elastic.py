"""Elastic tensor by finite strains, Voigt-Reuss-Hill moduli and Born stability.

Each of the six Voigt strain components is applied at a few small magnitudes to the relaxed
cell, ions are relaxed at the fixed strained cell (relaxed-ion tensor, which matters wherever
atoms do not sit on inversion centres, e.g. diamond Si), the stress is read from the
calculator and C_ij = d sigma_i / d epsilon_j is the least-squares slope of the stress change
from the unstrained reference against the strain. Engineering shear strains are used
(epsilon_4 = 2 epsilon_yz), so C is the usual 6x6 Voigt matrix, symmetrised.

Crystal symmetry saves most of the work: if R is a rotation of the crystal's point group, the
response to the strain R e R^T is R s R^T. A Voigt component whose unit strain lies in the span
of rotated strains already computed is skipped (cubic: 2 of 6 components, hexagonal 3,
tetragonal 4), and C is the least-squares fit to every computed strain and its rotations, which
also makes it exactly invariant under the point group. A strain along a generic direction
checks that the response really has that symmetry (`elastic_tensor`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress
from ase.units import GPa

from invdesign.oracle.relax import relax_ions

__all__ = ["SYMMETRY_CHECK", "ElasticResult", "elastic_tensor", "independent_components",
           "point_group_rotations", "strain_matrix", "vrh_moduli"]

logger = logging.getLogger(__name__)

# +-1 % per component (a central difference; see OracleConfig for why not more points).
DEFAULT_STRAINS: tuple[float, ...] = (-0.01, 0.01)
# Voigt index -> Cartesian pair (ASE stress order xx yy zz yz xz xy).
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# A generic strain direction (no symmetry maps it onto itself) that checks a symmetry-built
# tensor, and the relative stress mismatch allowed (noise of ionic relaxation, non-linearity).
_CHECK_STRAIN = np.array([[1.0, 0.5, -0.2], [0.5, -0.6, 0.3], [-0.2, 0.3, 0.4]])
SYMMETRY_CHECK = 0.1
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
        symmetry_mismatch: Relative stress error of the symmetry-built tensor on the check
            strain (NaN when every component was strained from the start).
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
    symmetry_mismatch: float = math.nan


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


def independent_components(rotations: Sequence[np.ndarray]) -> tuple[int, ...]:
    """Voigt components whose strains, with their images under `rotations`, span every strain
    (in order 0..5, each kept only if the earlier ones and their images do not give it)."""
    span = np.zeros((0, 6))
    components = []
    for j in range(6):
        unit = _voigt_strain(strain_matrix(j, 1.0))
        if np.linalg.matrix_rank(np.vstack([span, unit]), tol=_RANK_TOL) == len(span):
            continue
        components.append(j)
        rotated = [_voigt_strain(r @ strain_matrix(j, 1.0) @ r.T) for r in rotations]
        span = _basis(np.vstack([span, *rotated]))
    return tuple(components)


def elastic_tensor(atoms: Atoms, calc: Calculator, *, strains: Sequence[float] = DEFAULT_STRAINS,
                   relax_ions_fmax: float = 0.01, relax_steps: int = 100,
                   relax: bool = True, symmetry: bool = True,
                   symprec: float = 0.01) -> ElasticResult:
    """Relaxed-ion elastic tensor of a (relaxed) structure by finite strains.

    With `symmetry`, two more cells, strained along a generic direction, check the tensor
    built from symmetry: if its stress is off the prediction by more than `SYMMETRY_CHECK`
    (relative, plus 0.05 GPa), the crystal's response does not have the symmetry of its
    structure (ions that relax into a lower symmetry under strain, e.g. a saddle point), and
    every component is strained and fitted directly instead.

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
    probe = _Probe(ref, calc, s0, relax_ions_fmax, relax_steps, relax)
    rotations = point_group_rotations(ref, symprec) if symmetry else [np.eye(3)]
    components = independent_components(rotations)
    samples = {j: probe.responses(strain_matrix(j, 1.0), strains) for j in components}
    tensor = _fit([pair for j in components for pair in samples[j]], rotations)
    mismatch = math.nan
    if len(components) < 6:
        size = max(abs(e) for e in strains)
        check = probe.responses(_CHECK_STRAIN, [size, -size])  # central: no curvature
        eps = check[0][0]
        dsigma = 0.5 * (check[0][1] - check[1][1])
        error = np.linalg.norm(dsigma - voigt_6_to_full_3x3_stress(tensor @ _voigt_strain(eps)))
        mismatch = float(error / max(np.linalg.norm(dsigma), 1e-12))
        if error > SYMMETRY_CHECK * np.linalg.norm(dsigma) + 0.05:
            logger.info("elastic: response off the point group's by %.0f %%: all components",
                        100 * mismatch)
            samples |= {j: probe.responses(strain_matrix(j, 1.0), strains)
                        for j in range(6) if j not in components}
            components = tuple(range(6))
            pairs = [pair for j in components for pair in samples[j]] + check
            tensor = _fit(pairs, [np.eye(3)])
    x = np.asarray([_voigt_strain(e) for j in components for e, _ in samples[j]])
    y = np.asarray([full_3x3_to_voigt_6_stress(d) for j in components for _, d in samples[j]])
    max_res = float(np.abs(y - x @ tensor.T).max())
    tensor = 0.5 * (tensor + tensor.T)
    eig = np.linalg.eigvalsh(tensor)
    k, g = vrh_moduli(tensor)
    logger.debug("elastic: K=%.1f G=%.1f GPa, min eig %.1f GPa, residual %.2f GPa, components %s",
                 k, g, eig[0], max_res, components)
    return ElasticResult(tensor=tensor, K_vrh=k, G_vrh=g, eigenvalues=eig,
                         mechanically_stable=bool(np.all(eig > 0)), max_residual=max_res,
                         calls=probe.calls + 1, steps=steps + probe.steps,
                         components=components, symmetry_mismatch=mismatch)


class _Probe:
    """Stress responses of a relaxed reference cell to strains, with relaxed ions."""

    def __init__(self, ref: Atoms, calc: Calculator, s0: np.ndarray, fmax: float, steps: int,
                 relax: bool) -> None:
        self.ref, self.calc, self.s0 = ref, calc, s0
        self.fmax, self.max_steps, self.relax = fmax, steps, relax
        self.cell0 = np.asarray(ref.cell)
        self.frac0 = ref.get_scaled_positions(wrap=False)
        self.calls = self.steps = 0

    def responses(self, direction: np.ndarray, magnitudes: Sequence[float]
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(3x3 strain, 3x3 stress change in GPa) for `direction` times each magnitude.

        Internal relaxation is linear in a small strain: once one strain is done, the others
        start from its ionic shift scaled to their magnitude (a step or two).
        """
        out = []
        shift_per_strain = np.zeros_like(self.frac0)
        for k, e in enumerate(sorted(magnitudes, key=lambda v: (abs(v), -v))):
            eps = e * direction
            strained = self.ref.copy()
            strained.set_cell(self.cell0 @ (np.eye(3) + eps), scale_atoms=True)
            strained.set_scaled_positions(self.frac0 + e * shift_per_strain)
            s, n = _stress_gpa(strained, self.calc, self.fmax, self.max_steps, self.relax)
            if k == 0 and e != 0:
                shift_per_strain = (strained.get_scaled_positions(wrap=False) - self.frac0) / e
            self.calls += 1
            self.steps += n
            out.append((eps, voigt_6_to_full_3x3_stress(s - self.s0)))
        return out


def _fit(pairs: Sequence[tuple[np.ndarray, np.ndarray]],
         rotations: Sequence[np.ndarray]) -> np.ndarray:
    """Least-squares C (6x6, GPa) with sigma = C eps over every pair and its rotated images."""
    x = [_voigt_strain(r @ eps @ r.T) for eps, _ in pairs for r in rotations]
    y = [full_3x3_to_voigt_6_stress(r @ dsigma @ r.T) for _, dsigma in pairs for r in rotations]
    return np.linalg.lstsq(np.asarray(x), np.asarray(y), rcond=None)[0].T


def _basis(vectors: np.ndarray) -> np.ndarray:
    """Orthonormal rows spanning the row space of `vectors`."""
    _, sv, vt = np.linalg.svd(vectors, full_matrices=False)
    return vt[sv > _RANK_TOL]
