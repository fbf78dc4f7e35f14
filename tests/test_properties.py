"""Tests for invdesign.properties: registry, transforms and derived-property physics."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.integrate import quad

from invdesign.properties import (
    PROPERTIES,
    Property,
    UnknownPropertyError,
    canonical_name,
    debye_heat_capacity,
    debye_temperature,
    derive_all,
    fracture_toughness,
    get_property,
    gruneisen_from_poisson,
    hardness_chen,
    hardness_tian,
    inverse_transform,
    is_known,
    poisson_ratio,
    pugh_ratio,
    thermal_expansion,
    transform,
    youngs_modulus,
)

# name: (K GPa, G GPa, density g/cm^3, volume per atom A^3, theta_D K, alpha 1e-6/K), textbook.
MATERIALS = {
    "diamond": (443.0, 535.0, 3.515, 5.67, 2230.0, 1.0),
    "Cu": (140.0, 48.0, 8.96, 11.8, 343.0, 16.5),
    "NaCl": (24.0, 15.0, 2.165, 22.4, 321.0, 40.0),
    "Al": (76.0, 26.0, 2.70, 16.6, 428.0, 23.1),
}
DIAMOND_K, DIAMOND_G, DIAMOND_RHO, DIAMOND_V = MATERIALS["diamond"][:4]


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("K", "bulk_modulus_vrh"),
        ("bulk_modulus", "bulk_modulus_vrh"),
        ("K_vrh", "bulk_modulus_vrh"),
        ("G", "shear_modulus_vrh"),
        ("E", "youngs_modulus"),
        ("nu", "poisson_ratio"),
        ("hardness", "hardness_chen"),
        ("H", "hardness_chen"),
        ("toughness", "fracture_toughness"),
        ("K_IC", "fracture_toughness"),
        ("theta_D", "debye_temperature"),
        ("gamma", "gruneisen"),
        ("alpha", "thermal_expansion"),
        ("alpha_300K", "thermal_expansion"),
        ("heat_ref", "heat_ref"),
    ],
)
def test_aliases_resolve(alias: str, name: str) -> None:
    assert canonical_name(alias) == name
    assert get_property(alias).name == name
    assert is_known(alias)


def test_registry_contents() -> None:
    expected = {
        "bulk_modulus_vrh", "shear_modulus_vrh", "youngs_modulus", "poisson_ratio",
        "pugh_ratio", "hardness_chen", "hardness_tian", "fracture_toughness",
        "debye_temperature", "gruneisen", "thermal_expansion", "density", "volume_per_atom",
        "heat_ref", "heat_all", "dir_gap", "ind_gap", "energy_per_atom", "heat_capacity",
    }  # fmt: skip
    assert expected <= set(PROPERTIES)
    k = get_property("K")
    assert isinstance(k, Property)
    assert (k.unit, k.transform, k.derived) == ("GPa", "log10", False)
    assert get_property("E").derived
    assert get_property("alpha").unit == "1/K"
    with pytest.raises(AttributeError):
        k.unit = "Pa"  # type: ignore[misc]  # frozen


def test_names_are_case_sensitive_and_unknown_names_fail_clearly() -> None:
    assert not is_known("k")
    assert not is_known("not_a_property")
    with pytest.raises(UnknownPropertyError, match=r"'not_a_property'.*bulk_modulus_vrh"):
        get_property("not_a_property")
    # Usable both as a failed lookup and as bad user input.
    with pytest.raises(KeyError):
        canonical_name("k")
    with pytest.raises(ValueError, match="known names"):
        canonical_name("k")


def test_log10_transform_round_trip() -> None:
    values = np.array([1.0, 24.0, 443.0, np.nan])
    t = transform("K", values)
    np.testing.assert_allclose(t[:3], np.log10(values[:3]))
    assert np.isnan(t[3])  # a missing label stays missing
    np.testing.assert_allclose(inverse_transform("bulk_modulus_vrh", t), values)
    ident = transform("nu", [0.1, -0.2])
    np.testing.assert_array_equal(ident, [0.1, -0.2])
    np.testing.assert_array_equal(inverse_transform("nu", ident), [0.1, -0.2])


def test_log10_transform_rejects_non_positive_naming_property() -> None:
    with pytest.raises(ValueError, match="shear_modulus_vrh"):
        transform("G", [10.0, 0.0])
    with pytest.raises(ValueError, match="bulk_modulus_vrh"):
        transform("K", -3.0)


# --- elastic relations and hardness ---------------------------------------------------------


def test_youngs_modulus_poisson_pugh_diamond() -> None:
    assert youngs_modulus(DIAMOND_K, DIAMOND_G) == pytest.approx(1144.3, abs=0.5)
    assert poisson_ratio(DIAMOND_K, DIAMOND_G) == pytest.approx(0.0695, abs=1e-4)
    assert pugh_ratio(DIAMOND_K, DIAMOND_G) == pytest.approx(443 / 535)
    # Incompressible limit and the identity E = 2G(1 + nu) = 3K(1 - 2 nu).
    K, G = np.array([76.0, 140.0, 1e6]), np.array([26.0, 48.0, 1.0])
    E, nu = youngs_modulus(K, G), poisson_ratio(K, G)
    np.testing.assert_allclose(E, 2 * G * (1 + nu))
    np.testing.assert_allclose(E, 3 * K * (1 - 2 * nu))
    assert nu[-1] == pytest.approx(0.5, abs=1e-6)


def test_hardness_models_diamond() -> None:
    assert 93.0 <= hardness_chen(DIAMOND_K, DIAMOND_G) <= 96.0  # Chen 2011 table: 93.6
    assert 90.0 <= hardness_tian(DIAMOND_K, DIAMOND_G) <= 100.0
    # Soft, ductile solids: the Chen fit would go negative and is clipped at 0.
    assert hardness_chen(40.0, 5.0) == 0.0
    assert hardness_tian(40.0, 5.0) > 0.0


def test_fracture_toughness_diamond() -> None:
    kic = fracture_toughness(DIAMOND_K, DIAMOND_G, DIAMOND_V)
    assert 6.3 <= kic <= 6.6
    assert fracture_toughness(DIAMOND_K, DIAMOND_G, DIAMOND_V, enhancement=2.0) == (
        pytest.approx(2 * kic)
    )


# --- Debye model -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MATERIALS))
def test_debye_temperature_textbook(name: str) -> None:
    K, G, rho, v, theta_exp, _ = MATERIALS[name]
    assert debye_temperature(K, G, rho, v) == pytest.approx(theta_exp, rel=0.15)


def test_debye_heat_capacity_limits() -> None:
    theta = 400.0
    assert debye_heat_capacity(0.0, theta) == 0.0
    assert debye_heat_capacity(1e5, theta) == pytest.approx(3.0, rel=1e-6)  # Dulong-Petit
    low_t = np.array([0.5, 2.0, 5.0])
    np.testing.assert_allclose(
        debye_heat_capacity(low_t, theta), 12 * np.pi**4 / 5 * (low_t / theta) ** 3, rtol=1e-6
    )
    # Very large theta/T does not overflow.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0.0 < debye_heat_capacity(1e-3, 1e4) < 1e-15


def test_debye_heat_capacity_matches_quadrature() -> None:
    def reference(t: float, theta: float) -> float:
        x_d = theta / t
        integral = quad(lambda x: x**4 * np.exp(-x) / np.expm1(-x) ** 2, 0.0, x_d, limit=200)[0]
        return 9.0 * integral / x_d**3

    temps = np.array([3.0, 30.0, 100.0, 300.0, 1000.0])
    thetas = np.array([[300.0], [2200.0]])
    got = debye_heat_capacity(temps, thetas)
    assert got.shape == (2, 5)
    want = np.array([[reference(t, th) for t in temps] for th in thetas[:, 0]])
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_gruneisen_from_poisson() -> None:
    assert gruneisen_from_poisson(0.25) == pytest.approx(1.5 * 1.25 / 1.25)
    assert gruneisen_from_poisson(0.0) == pytest.approx(0.75)
    assert np.isnan(gruneisen_from_poisson(0.7))


@pytest.mark.parametrize("name", ["Al", "Cu", "NaCl", "diamond"])
def test_thermal_expansion_within_factor_two(name: str) -> None:
    K, G, rho, v, _, alpha_exp = MATERIALS[name]
    alpha = thermal_expansion(K, G, rho, v) / 1e-6
    assert 0.5 * alpha_exp <= alpha <= 2.0 * alpha_exp


def test_thermal_expansion_grows_with_temperature() -> None:
    K, G, rho, v = MATERIALS["Al"][:4]
    alphas = thermal_expansion(K, G, rho, v, T=np.array([0.0, 50.0, 300.0, 1000.0]))
    assert alphas[0] == 0.0
    assert np.all(np.diff(alphas) > 0)


# --- derive_all and invalid input ------------------------------------------------------------


def test_derive_all_keys_and_consistency() -> None:
    K, G, rho, v = (np.array([m[i] for m in MATERIALS.values()]) for i in range(4))
    out = derive_all(K, G, density=rho, volume_per_atom=v)
    for name, values in out.items():
        assert is_known(name), name
        assert values.shape == (4,)
    assert {"youngs_modulus", "thermal_expansion", "fracture_toughness"} <= set(out)
    np.testing.assert_allclose(out["youngs_modulus"], youngs_modulus(K, G))
    np.testing.assert_allclose(out["thermal_expansion"], thermal_expansion(K, G, rho, v))
    only_moduli = derive_all(100.0, 50.0)
    assert "thermal_expansion" not in only_moduli
    assert "fracture_toughness" not in only_moduli
    assert "hardness_chen" in only_moduli
    assert "fracture_toughness" in derive_all(100.0, 50.0, volume_per_atom=10.0)


def test_invalid_moduli_give_nan_never_raise() -> None:
    K = np.array([100.0, 0.0, -5.0, np.nan, 100.0, np.inf])
    G = np.array([50.0, 50.0, 50.0, 50.0, -1.0, 50.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarnings either
        out = derive_all(K, G, density=3.0, volume_per_atom=10.0)
        bad_rho = derive_all(100.0, 50.0, density=-1.0, volume_per_atom=10.0)
    for name, values in out.items():
        if name in {"bulk_modulus_vrh", "shear_modulus_vrh", "density", "volume_per_atom"}:
            continue
        assert np.isfinite(values[0]), name
        assert np.all(np.isnan(values[1:])), name
    assert np.isnan(bad_rho["debye_temperature"])
    assert np.isnan(bad_rho["thermal_expansion"])
    assert np.isfinite(bad_rho["youngs_modulus"])


def test_package_imports_no_heavy_dependencies() -> None:
    code = (
        "import sys, invdesign.properties\n"
        "bad = [m for m in ('torch', 'pymatgen', 'invdesign.data', 'invdesign.models') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
