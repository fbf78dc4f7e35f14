"""Properties derived from isotropic elastic moduli, density and volume per atom.

All functions are vectorised (floats or arrays, broadcast together) and never raise for bad
numbers: a non-positive or non-finite modulus, density or volume gives NaN for that entry.
Inputs use the units of the property registry: K and G in GPa, density in g/cm^3, volume per
atom in A^3, temperature in K.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "debye_heat_capacity",
    "debye_temperature",
    "derive_all",
    "fracture_toughness",
    "gruneisen_from_poisson",
    "hardness_chen",
    "hardness_tian",
    "poisson_ratio",
    "pugh_ratio",
    "thermal_expansion",
    "youngs_modulus",
]

# CODATA 2018 exact SI values.
_H = 6.62607015e-34  # Planck constant, J s
_KB = 1.380649e-23  # Boltzmann constant, J/K
_GPA = 1e9  # Pa per GPa
_A3 = 1e-30  # m^3 per A^3
_G_CM3 = 1e3  # kg/m^3 per g/cm^3

# Fixed Gauss-Legendre rule for the Debye heat-capacity integral on [0, min(x_D, _X_MAX)];
# above _X_MAX = theta_D/T the neglected tail is < 1e-17 of the full integral.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(96)
_X_MAX = 60.0


def _positive(x: ArrayLike) -> np.ndarray:
    """Float array with NaN wherever ``x`` is not finite and > 0."""
    arr = np.asarray(x, dtype=float)
    return np.where(np.isfinite(arr) & (arr > 0), arr, np.nan)


def youngs_modulus(K: ArrayLike, G: ArrayLike) -> np.ndarray:
    """Isotropic Young's modulus E = 9KG/(3K+G).

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.

    Returns:
        E in GPa (NaN where K or G is invalid).
    """
    K, G = _positive(K), _positive(G)
    return 9.0 * K * G / (3.0 * K + G)


def poisson_ratio(K: ArrayLike, G: ArrayLike) -> np.ndarray:
    """Isotropic Poisson ratio nu = (3K-2G)/(2(3K+G)), dimensionless, in (-1, 0.5).

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
    """
    K, G = _positive(K), _positive(G)
    return (3.0 * K - 2.0 * G) / (2.0 * (3.0 * K + G))


def pugh_ratio(K: ArrayLike, G: ArrayLike) -> np.ndarray:
    """Pugh ratio K/G, dimensionless (ductile above about 1.75).

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
    """
    return _positive(K) / _positive(G)


def hardness_chen(K: ArrayLike, G: ArrayLike) -> np.ndarray:
    """Vickers hardness from Chen et al., Intermetallics 19, 1275 (2011).

    Hv = 2 (k^2 G)^0.585 - 3 with Pugh's modulus ratio k = G/K. The fit goes negative for soft,
    ductile solids (small k^2 G); such values are clipped to 0 GPa.

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.

    Returns:
        Hv in GPa, >= 0 (NaN where K or G is invalid).
    """
    K, G = _positive(K), _positive(G)
    k = G / K
    return np.maximum(2.0 * (k * k * G) ** 0.585 - 3.0, 0.0)


def hardness_tian(K: ArrayLike, G: ArrayLike) -> np.ndarray:
    """Vickers hardness from Tian et al., Int. J. Refract. Met. Hard Mater. 33, 93 (2012).

    Hv = 0.92 k^1.137 G^0.708 with k = G/K; always positive.

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.

    Returns:
        Hv in GPa (NaN where K or G is invalid).
    """
    K, G = _positive(K), _positive(G)
    return 0.92 * (G / K) ** 1.137 * G**0.708


def fracture_toughness(
    K: ArrayLike, G: ArrayLike, volume_per_atom: ArrayLike, *, enhancement: ArrayLike = 1.0
) -> np.ndarray:
    """Fracture toughness from Niu, Oganov et al., J. Appl. Phys. 125, 065105 (2019).

    K_IC = alpha0^(-1/2) V0^(1/6) G (K/G)^(1/2), with V0 in m^3 and moduli in Pa, giving
    Pa m^1/2. We use the covalent/ionic form, alpha0 = 1. The paper's enhancement factor for
    metals and intermetallics (from the density of states at the Fermi level and the
    electronegativities) is not implemented, since we could not confirm its exact form; the
    model therefore underestimates metals. A caller that has such a factor can pass it as
    ``enhancement`` (a plain multiplier, 1 for covalent and ionic solids). Diamond
    (K=443, G=535 GPa, V0=5.67 A^3) gives about 6.5 MPa m^1/2.

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
        volume_per_atom: V0, A^3.
        enhancement: Dimensionless multiplier (default 1: covalent/ionic model).

    Returns:
        K_IC in MPa m^1/2 (NaN where an input is invalid).
    """
    K, G = _positive(K) * _GPA, _positive(G) * _GPA
    v0 = _positive(volume_per_atom) * _A3
    return _positive(enhancement) * v0 ** (1.0 / 6.0) * np.sqrt(K * G) * 1e-6


def debye_temperature(
    K: ArrayLike, G: ArrayLike, density: ArrayLike, volume_per_atom: ArrayLike
) -> np.ndarray:
    """Debye temperature from the isotropic mean sound velocity (Anderson 1963).

    theta_D = (h/k_B) (3/(4 pi V_atom))^(1/3) v_m with v_t = sqrt(G/rho),
    v_l = sqrt((K + 4G/3)/rho) and v_m = [(2/v_t^3 + 1/v_l^3)/3]^(-1/3), all in SI units.

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
        density: Mass density, g/cm^3.
        volume_per_atom: Volume per atom, A^3.

    Returns:
        theta_D in K (NaN where an input is invalid).
    """
    K, G = _positive(K) * _GPA, _positive(G) * _GPA
    rho = _positive(density) * _G_CM3
    v_atom = _positive(volume_per_atom) * _A3
    v_t = np.sqrt(G / rho)
    v_l = np.sqrt((K + 4.0 * G / 3.0) / rho)
    v_m = ((2.0 / v_t**3 + 1.0 / v_l**3) / 3.0) ** (-1.0 / 3.0)
    return (_H / _KB) * (3.0 / (4.0 * np.pi * v_atom)) ** (1.0 / 3.0) * v_m


def gruneisen_from_poisson(nu: ArrayLike) -> np.ndarray:
    """Acoustic Grueneisen parameter gamma = 1.5 (1+nu)/(2-3nu) (Belomestnykh; AFLOW-AGL).

    Args:
        nu: Poisson ratio, dimensionless; values outside (-1, 0.5) give NaN.

    Returns:
        gamma, dimensionless.
    """
    nu = np.asarray(nu, dtype=float)
    nu = np.where(np.isfinite(nu) & (nu > -1.0) & (nu < 0.5), nu, np.nan)
    return 1.5 * (1.0 + nu) / (2.0 - 3.0 * nu)


def debye_heat_capacity(T: ArrayLike, theta_D: ArrayLike) -> np.ndarray:
    """Debye-model isochoric heat capacity per atom, in units of k_B.

    C_V/k_B = 9 (T/theta_D)^3 * integral_0^(theta_D/T) x^4 e^x/(e^x-1)^2 dx, evaluated with a
    fixed 96-point Gauss-Legendre rule vectorised over arrays (relative error < 1e-10). Tends
    to 3 (Dulong-Petit) for T >> theta_D and to (12 pi^4/5)(T/theta_D)^3 for T << theta_D;
    T = 0 gives 0.

    Args:
        T: Temperature, K (>= 0).
        theta_D: Debye temperature, K (> 0).

    Returns:
        C_V in k_B per atom, in [0, 3] (NaN where T < 0, theta_D <= 0 or non-finite).
    """
    T = np.asarray(T, dtype=float)
    theta = _positive(theta_D)
    T = np.where(np.isfinite(T) & (T >= 0), T, np.nan)
    T, theta = np.broadcast_arrays(T, theta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x_d = theta / T  # +inf at T = 0
        upper = np.minimum(x_d, _X_MAX)
        x = upper[..., None] * (0.5 * (_GL_NODES + 1.0))
        # x^4 e^x/(e^x-1)^2 rewritten with e^-x so that it never overflows.
        f = x**4 * np.exp(-x) / np.expm1(-x) ** 2
        integral = 0.5 * upper * (f @ _GL_WEIGHTS)
        return 9.0 * integral / x_d**3  # 0 at T = 0 (x_d = inf)


def thermal_expansion(
    K: ArrayLike,
    G: ArrayLike,
    density: ArrayLike,
    volume_per_atom: ArrayLike,
    T: ArrayLike = 300.0,
) -> np.ndarray:
    """Linear thermal expansion coefficient from the Debye-Grueneisen model.

    alpha = gamma C_V / (3 K V_atom) in SI units (C_V in J/K per atom, K in Pa, V in m^3), with
    gamma from the Poisson ratio (:func:`gruneisen_from_poisson`) and C_V from the Debye model
    at the Debye temperature of :func:`debye_temperature`. Typically within a factor of 2 of
    experiment for simple solids (Al: about 2.1e-5/K vs. 2.31e-5/K measured).

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
        density: Mass density, g/cm^3.
        volume_per_atom: Volume per atom, A^3.
        T: Temperature, K.

    Returns:
        alpha in 1/K (NaN where an input is invalid).
    """
    gamma = gruneisen_from_poisson(poisson_ratio(K, G))
    theta = debye_temperature(K, G, density, volume_per_atom)
    c_v = debye_heat_capacity(T, theta) * _KB
    k_pa = _positive(K) * _GPA
    v_atom = _positive(volume_per_atom) * _A3
    return gamma * c_v / (3.0 * k_pa * v_atom)


def derive_all(
    K: ArrayLike,
    G: ArrayLike,
    *,
    density: ArrayLike | None = None,
    volume_per_atom: ArrayLike | None = None,
    T: float = 300.0,
) -> dict[str, np.ndarray]:
    """Every derived property, keyed by canonical registry name.

    The inputs are included too (``bulk_modulus_vrh``, ``shear_modulus_vrh`` and, when given,
    ``density``, ``volume_per_atom``) so the result can be passed straight to
    ``Objective.evaluate``. ``fracture_toughness`` needs ``volume_per_atom``;
    ``debye_temperature``, ``heat_capacity_debye`` and ``thermal_expansion`` need both
    ``density`` and ``volume_per_atom``. Invalid entries give NaN; nothing raises.

    Args:
        K: Bulk modulus, GPa.
        G: Shear modulus, GPa.
        density: Mass density, g/cm^3 (optional).
        volume_per_atom: Volume per atom, A^3 (optional).
        T: Temperature for heat capacity and thermal expansion, K.

    Returns:
        Mapping name -> float array, all broadcast to one shape.
    """
    out: dict[str, np.ndarray] = {
        "bulk_modulus_vrh": np.asarray(K, dtype=float),
        "shear_modulus_vrh": np.asarray(G, dtype=float),
    }
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out["youngs_modulus"] = youngs_modulus(K, G)
        out["poisson_ratio"] = nu = poisson_ratio(K, G)
        out["pugh_ratio"] = pugh_ratio(K, G)
        out["hardness_chen"] = hardness_chen(K, G)
        out["hardness_tian"] = hardness_tian(K, G)
        out["gruneisen"] = gruneisen_from_poisson(nu)
        if volume_per_atom is not None:
            out["volume_per_atom"] = np.asarray(volume_per_atom, dtype=float)
            out["fracture_toughness"] = fracture_toughness(K, G, volume_per_atom)
        if density is not None:
            out["density"] = np.asarray(density, dtype=float)
        if density is not None and volume_per_atom is not None:
            theta = debye_temperature(K, G, density, volume_per_atom)
            out["debye_temperature"] = theta
            out["heat_capacity_debye"] = debye_heat_capacity(T, theta)
            out["thermal_expansion"] = thermal_expansion(K, G, density, volume_per_atom, T)
    shape = np.broadcast_shapes(*(v.shape for v in out.values()))
    return {name: np.broadcast_to(v, shape).copy() for name, v in out.items()}
