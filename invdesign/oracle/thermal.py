"""Thermal expansion by the quasi-harmonic Debye-Grueneisen model of AFLOW-AGL.

Following Blanco et al. (GIBBS, Comput. Phys. Commun. 158, 57, 2004) and Toher et al.
(AGL, Phys. Rev. B 90, 174107, 2014):

1. E(V): the relaxed cell is scaled isotropically to `n_volumes` volumes within +-`volume_range`
   and the ions are relaxed at each fixed cell.
2. A third-order Birch-Murnaghan fit gives E0, V0, B0, B' and the static bulk modulus
   B(V) = V d2E/dV2 at any volume.
3. theta_D = (hbar/k_B) (6 pi^2 V^(1/2) n)^(1/3) f(nu) sqrt(B/M) with the Poisson ratio nu,
   f(nu) = {3 [2 (2/3 (1+nu)/(1-2nu))^(3/2) + (1/3 (1+nu)/(1-nu))^(3/2)]^-1}^(1/3),
   V and M per cell (Toher 2014, eqs. 3-4). This is the isotropic Anderson Debye temperature
   with G = 3B(1-2nu)/(2(1+nu)), so `invdesign.properties.derived.debye_temperature` computes it.
4. Its volume dependence, by `gruneisen`:
   - "poisson" (default): theta_D(V) = theta_D(V0) (V0/V)^gamma with gamma = 1.5 (1+nu)/(2-3nu)
     (Belomestnykh; `derived.gruneisen_from_poisson`), robust to wiggles in E(V);
   - "slater": theta_D(V) from the static B(V) of the fit (full AGL), which makes
     gamma = -1/6 + B'/2 (Slater) and so hinges on the fitted B'. Machine-learned potentials
     give E(V) curves whose B' is often far off (CHGNet: B' = -0.9 for NaCl, 9 for Si).
5. F(V, T) = E(V) + n k_B T [9 theta/(8T) + 3 ln(1 - exp(-theta/T)) - D(theta/T)] is minimised
   over V at T - dT, T, T + dT; alpha_V = d ln V / dT and the linear alpha = alpha_V / 3.
6. theta_D and gamma = -d ln theta_D / d ln V are reported at the static V0.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.units import GPa, kB
from scipy.optimize import minimize_scalar

from invdesign.oracle.relax import relax_ions
from invdesign.properties.derived import debye_temperature, gruneisen_from_poisson

__all__ = [
    "DEFAULT_N_VOLUMES",
    "BirchMurnaghan",
    "DebyeGruneisen",
    "GruneisenModel",
    "ThermalResult",
    "agl_debye_temperature",
    "debye_function",
    "debye_gruneisen",
    "energy_volume_cells",
    "energy_volume_curve",
    "quasi_harmonic",
    "thermal_expansion",
    "vibrational_free_energy",
]

logger = logging.getLogger(__name__)

_AMU_G = 1.66053906660e-24  # g per atomic mass unit
_A3_CM3 = 1e-24  # cm^3 per A^3
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)
_X_MAX = 60.0  # theta/T above which the Debye integral has converged to pi^4/15
DEFAULT_N_VOLUMES = 7  # on +-10 % (see OracleConfig for why not more)
_MAX_EOS_RMS = 0.005  # eV/atom: worse fits are flagged
_B1_RANGE = (1.0, 15.0)  # plausible B' (pressure derivative of B), checked for "slater"

GruneisenModel = Literal["poisson", "slater"]


@dataclass(frozen=True)
class BirchMurnaghan:
    """Third-order Birch-Murnaghan equation of state.

    Attributes:
        e0: Minimum energy, eV (per cell).
        v0: Equilibrium volume, A^3 (per cell).
        b0: Bulk modulus at v0, eV/A^3.
        b1: Pressure derivative of the bulk modulus, dimensionless.
    """

    e0: float
    v0: float
    b0: float
    b1: float

    @classmethod
    def fit(cls, volumes: np.ndarray, energies: np.ndarray) -> BirchMurnaghan:
        """Least-squares fit (pymatgen `EOS`); raises pymatgen's `EOSError` on failure."""
        from pymatgen.analysis.eos import EOS

        eos = EOS("birch_murnaghan").fit(list(volumes), list(energies))
        return cls(e0=float(eos.e0), v0=float(eos.v0), b0=float(eos.b0), b1=float(eos.b1))

    def energy(self, v: np.ndarray | float) -> np.ndarray:
        """E(V), eV, for volumes in A^3."""
        s = (self.v0 / np.asarray(v, float)) ** (2.0 / 3.0) - 1.0
        return self.e0 + 9.0 * self.v0 * self.b0 / 16.0 * (self.b1 * s**3 + s**2 * (2.0 - 4.0 * s))

    def bulk_modulus(self, v: np.ndarray | float) -> np.ndarray:
        """Static B(V) = -V dP/dV, eV/A^3, for volumes in A^3."""
        x = (self.v0 / np.asarray(v, float)) ** (1.0 / 3.0)
        c = 0.75 * (self.b1 - 4.0)
        # P = 3/2 B0 (x^7 - x^5) (1 + c (x^2 - 1)) and B = -V dP/dV = (x/3) dP/dx.
        dp_dx = (7 * x**6 - 5 * x**4) * (1 + c * (x**2 - 1)) + (x**7 - x**5) * 2 * c * x
        return 0.5 * self.b0 * x * dp_dx


@dataclass(frozen=True)
class ThermalResult:
    """Quasi-harmonic Debye-Grueneisen result (per cell where extensive).

    Attributes:
        alpha: Linear thermal expansion coefficient at `temperature`, 1/K.
        debye_temperature: theta_D at the static V0, K.
        gruneisen: -d ln theta_D / d ln V at V0, dimensionless.
        V0: Static equilibrium volume, A^3.
        B0: Static bulk modulus, GPa.
        B1: Its pressure derivative B', dimensionless.
        volume_at_t: Equilibrium volume at `temperature`, A^3.
        eos_rms: RMS residual of the EOS fit, eV/atom.
        status: "ok" or "unphysical fit: <reason>".
        volumes: Sampled volumes, A^3.
        energies: Relaxed energies at those volumes, eV.
        steps: Ionic relaxation steps summed over volumes.
    """

    alpha: float
    debye_temperature: float
    gruneisen: float
    V0: float
    B0: float
    B1: float
    volume_at_t: float
    eos_rms: float
    status: str
    volumes: np.ndarray = field(repr=False)
    energies: np.ndarray = field(repr=False)
    steps: int = 0


def debye_function(x: np.ndarray | float) -> np.ndarray:
    """Debye function D(x) = 3/x^3 int_0^x t^3/(e^t - 1) dt, by 64-point Gauss-Legendre."""
    x = np.asarray(x, float)
    upper = np.minimum(x, _X_MAX)
    t = upper[..., None] * (0.5 * (_GL_NODES + 1.0))
    f = -(t**3) * np.exp(-t) / np.expm1(-t)
    return 3.0 * (0.5 * upper * (f @ _GL_WEIGHTS)) / x**3


def vibrational_free_energy(theta: np.ndarray | float, T: float, n_atoms: int) -> np.ndarray:
    """Debye vibrational free energy per cell, eV (zero-point energy included).

    Args:
        theta: Debye temperature, K.
        T: Temperature, K (> 0).
        n_atoms: Atoms per cell.
    """
    x = np.asarray(theta, float) / T
    return n_atoms * kB * T * (9.0 * x / 8.0 + 3.0 * np.log1p(-np.exp(-x)) - debye_function(x))


def agl_debye_temperature(bulk_modulus: np.ndarray | float, volume: np.ndarray | float,
                          n_atoms: int, mass_amu: float, poisson: float) -> np.ndarray:
    """AGL Debye temperature (K) from the bulk modulus (GPa) and volume (A^3) per cell.

    Args:
        bulk_modulus: B, GPa.
        volume: Cell volume, A^3.
        n_atoms: Atoms per cell.
        mass_amu: Cell mass, atomic mass units.
        poisson: Poisson ratio, in (-1, 0.5).
    """
    b = np.asarray(bulk_modulus, float)
    g = 3.0 * b * (1.0 - 2.0 * poisson) / (2.0 * (1.0 + poisson))
    density = mass_amu * _AMU_G / (np.asarray(volume, float) * _A3_CM3)
    return debye_temperature(b, g, density, np.asarray(volume, float) / n_atoms)


def energy_volume_cells(atoms: Atoms, calc: Calculator, *, volume_range: float = 0.10,
                        n_volumes: int = DEFAULT_N_VOLUMES, fmax: float = 0.01,
                        steps: int = 100, scales: np.ndarray | None = None
                        ) -> tuple[list[Atoms], np.ndarray, int]:
    """Isotropically scaled copies of a relaxed cell, ions relaxed at each volume.

    Volumes are done outwards from the relaxed one, each starting from ionic positions
    extrapolated from its two inner neighbours, which saves ionic steps where atoms have free
    coordinates.

    Args:
        atoms: Relaxed structure (not modified).
        calc: ASE calculator.
        volume_range: Largest relative volume change (0.10 is -10 % .. +10 %).
        n_volumes: Number of volumes.
        fmax: Ionic force tolerance, eV/A.
        steps: Maximum ionic steps per volume.
        scales: Relative volume changes instead of the even grid on +-`volume_range`
            (ascending, one of them 0).

    Returns:
        (cells from the smallest volume up, energies in eV per cell, total ionic steps).
    """
    cell0 = np.asarray(atoms.cell)
    if scales is None:
        scales = np.linspace(-volume_range, volume_range, n_volumes)
    n_volumes = len(scales)
    cells: list[Atoms | None] = [None] * n_volumes
    energies = np.zeros(n_volumes)
    relaxed: dict[int, np.ndarray] = {}  # index -> relaxed fractional positions
    total = 0
    for i in np.argsort(np.abs(scales), kind="stable"):  # outwards from the relaxed volume
        scaled = atoms.copy()
        scaled.set_cell(cell0 * (1.0 + scales[i]) ** (1.0 / 3.0), scale_atoms=True)
        inward = i - 1 if scales[i] > 0 else i + 1  # the neighbour nearer the relaxed volume
        if inward in relaxed:  # warm start: extrapolate the ionic positions along the curve
            before = relaxed.get(2 * inward - i, relaxed[inward])
            scaled.set_scaled_positions(2 * relaxed[inward] - before)
        total += relax_ions(scaled, calc, fmax=fmax, steps=steps)[1]
        relaxed[i] = scaled.get_scaled_positions(wrap=False)
        energies[i] = scaled.get_potential_energy()
        cells[i] = scaled
    return [c for c in cells if c is not None], energies, total


def energy_volume_curve(atoms: Atoms, calc: Calculator, *, volume_range: float = 0.10,
                        n_volumes: int = DEFAULT_N_VOLUMES, fmax: float = 0.01,
                        steps: int = 100) -> tuple[np.ndarray, np.ndarray, int]:
    """Relaxed-ion energies on isotropically scaled copies of a relaxed cell
    (`energy_volume_cells`): (volumes in A^3, energies in eV per cell, total ionic steps)."""
    cells, energies, total = energy_volume_cells(atoms, calc, volume_range=volume_range,
                                                 n_volumes=n_volumes, fmax=fmax, steps=steps)
    return np.array([c.get_volume() for c in cells]), energies, total


def _equilibrium_volume(free_energy, v_lo: float, v_hi: float) -> float:
    """argmin of F(V) on [v_lo, v_hi], A^3; NaN when the minimum is at the boundary."""
    grid = np.linspace(v_lo, v_hi, 241)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = free_energy(grid)
    if not np.all(np.isfinite(values)):
        return float("nan")
    k = int(np.argmin(values))
    if k in (0, len(grid) - 1):
        return float("nan")
    res = minimize_scalar(free_energy, bounds=(grid[k - 1], grid[k + 1]), method="bounded",
                          options={"xatol": 1e-10 * v_hi})
    return float(res.x)


def _fit_status(eos: BirchMurnaghan, volumes: np.ndarray, rms: float, check_b1: bool) -> str:
    if not (eos.b0 > 0 and np.isfinite(eos.b0)):
        return f"unphysical fit: B0 = {eos.b0 / GPa:.3g} GPa"
    if check_b1 and not _B1_RANGE[0] < eos.b1 < _B1_RANGE[1]:
        return f"unphysical fit: B' = {eos.b1:.3g}"
    if not volumes.min() < eos.v0 < volumes.max():
        return "unphysical fit: EOS minimum outside the volume grid"
    if rms > _MAX_EOS_RMS:
        return f"unphysical fit: EOS residual {1000 * rms:.1f} meV/atom"
    return "ok"


def _alpha(eos: BirchMurnaghan, theta, n_atoms: int, bounds: tuple[float, float],
           temperature: float, delta_t: float) -> tuple[float, float, str]:
    """(linear alpha in 1/K, V(T) in A^3, status) from minimising F(V, T) near `temperature`
    over volumes within `bounds` (A^3)."""
    temps = (max(temperature - delta_t, 0.5 * temperature), temperature, temperature + delta_t)
    vols = []
    for t in temps:
        def free_energy(v, t=t):
            return eos.energy(v) + vibrational_free_energy(theta(v), t, n_atoms)

        vols.append(_equilibrium_volume(free_energy, *bounds))
    if not np.all(np.isfinite(vols)):
        return float("nan"), float("nan"), "unphysical fit: V(T) outside the volume grid"
    alpha = float(np.log(vols[2] / vols[0]) / (temps[2] - temps[0]) / 3.0)
    if not alpha > 0:
        return alpha, vols[1], f"unphysical fit: negative alpha ({alpha:.3g} 1/K)"
    return alpha, vols[1], "ok"


def _theta_of_volume(eos: BirchMurnaghan, n_atoms: int, mass_amu: float, poisson: float,
                     model: GruneisenModel):
    """theta_D(V) in K for volumes in A^3, by the chosen Grueneisen model."""
    if model == "slater":
        def theta(v):
            return agl_debye_temperature(eos.bulk_modulus(v) / GPa, v, n_atoms, mass_amu, poisson)

        return theta
    theta0 = agl_debye_temperature(eos.b0 / GPa, eos.v0, n_atoms, mass_amu, poisson)
    gamma = gruneisen_from_poisson(poisson)

    def theta(v):
        return theta0 * (eos.v0 / np.asarray(v, float)) ** gamma

    return theta


def quasi_harmonic(volumes: np.ndarray, energies: np.ndarray, *, n_atoms: int, mass_amu: float,
                   poisson: float = 0.25, temperature: float = 300.0, delta_t: float = 10.0,
                   gruneisen: GruneisenModel = "poisson") -> ThermalResult:
    """AGL analysis of an E(V) curve: alpha, theta_D and gamma (see the module docstring).

    Args:
        volumes: Cell volumes, A^3.
        energies: Energies per cell, eV.
        n_atoms: Atoms per cell.
        mass_amu: Cell mass, atomic mass units.
        poisson: Poisson ratio (0.25 when unknown).
        temperature: T, K (> 0).
        delta_t: Half-width of the temperature step for d ln V / dT, K.
        gruneisen: Volume dependence of theta_D: "poisson" or "slater".

    Returns:
        The result; `status` is "ok" or "unphysical fit: ..." (alpha and V(T) are NaN when the
        fit failed before they could be computed).

    Raises:
        pymatgen.analysis.eos.EOSError: The EOS fit failed (e.g. no minimum in the data).
        ValueError: Unknown `gruneisen` model.
    """
    if gruneisen not in ("poisson", "slater"):
        raise ValueError(f"gruneisen must be 'poisson' or 'slater', not {gruneisen!r}")
    volumes, energies = np.asarray(volumes, float), np.asarray(energies, float)
    eos = BirchMurnaghan.fit(volumes, energies)
    rms = float(np.sqrt(np.mean((eos.energy(volumes) - energies) ** 2)) / n_atoms)
    dg = debye_gruneisen(eos, n_atoms=n_atoms, mass_amu=mass_amu, poisson=poisson,
                         temperature=temperature, bounds=(volumes.min(), volumes.max()),
                         delta_t=delta_t, gruneisen=gruneisen)
    status = _fit_status(eos, volumes, rms, check_b1=gruneisen == "slater")
    alpha, volume_t = float("nan"), float("nan")
    if status == "ok":
        alpha, volume_t, status = dg.alpha, dg.volume_at_t, dg.status
    return ThermalResult(alpha=alpha, debye_temperature=dg.debye_temperature,
                         gruneisen=dg.gruneisen, V0=eos.v0, B0=eos.b0 / GPa, B1=eos.b1,
                         volume_at_t=volume_t, eos_rms=rms, status=status, volumes=volumes,
                         energies=energies)


class DebyeGruneisen(NamedTuple):
    """alpha (1/K), theta_D (K) and gamma at V0, V(T) (A^3) and status of an EOS + Poisson ratio."""

    alpha: float
    debye_temperature: float
    gruneisen: float
    volume_at_t: float
    status: str


def debye_gruneisen(eos: BirchMurnaghan, *, n_atoms: int, mass_amu: float, poisson: float,
                    temperature: float = 300.0, bounds: tuple[float, float] | None = None,
                    delta_t: float = 10.0, gruneisen: GruneisenModel = "poisson",
                    ) -> DebyeGruneisen:
    """Steps 3-6 of the module docstring on a fitted EOS: no potential calls, so the thermal
    expansion can be recomputed cheaply for another Poisson ratio (e.g. from calibrated moduli).

    Args:
        eos: Static equation of state of the cell.
        n_atoms: Atoms per cell.
        mass_amu: Cell mass, atomic mass units.
        poisson: Poisson ratio.
        temperature: T, K (> 0).
        bounds: Volumes (A^3) within which V(T) must lie; default V0 (1 -+ 0.10).
        delta_t: Half-width of the temperature step for d ln V / dT, K.
        gruneisen: Volume dependence of theta_D: "poisson" or "slater".
    """
    bounds = bounds or (0.9 * eos.v0, 1.1 * eos.v0)
    theta = _theta_of_volume(eos, n_atoms, mass_amu, poisson, gruneisen)
    h = 1e-4
    with np.errstate(invalid="ignore", divide="ignore"):
        theta0 = float(theta(eos.v0))
        ratio = theta(eos.v0 * (1 + h)) / theta(eos.v0 * (1 - h))
        gamma = float(-np.log(ratio) / np.log((1 + h) / (1 - h)))
    if not (eos.b0 > 0 and np.isfinite(theta0) and np.isfinite(gamma)):
        status = f"unphysical fit: Debye temperature (Poisson ratio {poisson:.3g})"
        return DebyeGruneisen(float("nan"), theta0, gamma, float("nan"), status)
    alpha, volume_t, status = _alpha(eos, theta, n_atoms, bounds, temperature, delta_t)
    return DebyeGruneisen(alpha, theta0, gamma, volume_t, status)


def thermal_expansion(atoms: Atoms, calc: Calculator, *, poisson: float = 0.25,
                      temperature: float = 300.0, volume_range: float = 0.10,
                      n_volumes: int = DEFAULT_N_VOLUMES, fmax: float = 0.01, steps: int = 100,
                      gruneisen: GruneisenModel = "poisson") -> ThermalResult:
    """Linear thermal expansion, Debye temperature and Grueneisen parameter of a relaxed cell.

    Args:
        atoms: Relaxed structure (not modified).
        calc: ASE calculator.
        poisson: Poisson ratio from the elastic tensor (0.25 when unknown).
        temperature: T, K.
        volume_range: Largest relative volume change of the E(V) curve.
        n_volumes: Number of volumes.
        fmax: Ionic force tolerance, eV/A.
        steps: Maximum ionic steps per volume.
        gruneisen: Volume dependence of theta_D: "poisson" or "slater".

    Returns:
        `ThermalResult` (alpha in 1/K, theta_D in K, B0 in GPa).
    """
    volumes, energies, n = energy_volume_curve(atoms, calc, volume_range=volume_range,
                                               n_volumes=n_volumes, fmax=fmax, steps=steps)
    mass = float(np.sum(atoms.get_masses()))
    res = quasi_harmonic(volumes, energies, n_atoms=len(atoms), mass_amu=mass, poisson=poisson,
                         temperature=temperature, gruneisen=gruneisen)
    logger.debug("thermal: alpha=%.3g 1/K, theta=%.0f K, gamma=%.2f, B0=%.1f GPa, B'=%.2f (%s)",
                 res.alpha, res.debye_temperature, res.gruneisen, res.B0, res.B1, res.status)
    return dataclasses.replace(res, steps=n)
