"""Phonon quasi-harmonic thermal expansion (`invdesign.oracle.phonons`), on EMT metals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk

from invdesign.oracle import OracleConfig, get_calculator, run_oracle
from invdesign.oracle.calibration import Calibration, calibrated_results
from invdesign.oracle.phonons import phonon_thermal_expansion, supercell_repeats
from invdesign.oracle.relax import relax

EMT = get_calculator("emt")


def test_supercell_repeats_reach_the_length_between_opposite_faces():
    assert supercell_repeats(np.eye(3) * 4.0, 10.0) == (3, 3, 3)
    assert supercell_repeats(np.diag([2.0, 5.0, 10.0]), 10.0) == (5, 2, 1)
    fcc = bulk("Cu", "fcc", a=3.6).cell.array  # faces 3.6 / sqrt(3) = 2.08 A apart
    assert supercell_repeats(fcc, 10.0) == (5, 5, 5)


def test_copper_expands_like_copper_and_has_a_copper_gruneisen_parameter():
    """EMT copper: alpha of the order of copper's 16.5e-6 /K (EMT runs about 25 % high) and
    a thermodynamic Grueneisen parameter near copper's measured 1.9-2.0."""
    cu = relax(bulk("Cu", "fcc", a=3.6), EMT, fmax=1e-3).atoms
    res = phonon_thermal_expansion(cu, EMT, supercell_length=8.0)
    assert res.status == "ok" and res.supercell == (4, 4, 4) and res.n_displacements == 1
    assert 14e-6 < res.alpha < 26e-6
    assert 1.6 < res.gruneisen < 2.6
    assert res.min_frequency > -0.01  # only numerical noise at Gamma
    colder = phonon_thermal_expansion(cu, EMT, supercell_length=8.0, temperature=50.0)
    assert 0 < colder.alpha < res.alpha / 2  # expansion freezes out with the phonons
    cubic = relax(bulk("Cu", "fcc", a=3.6, cubic=True), EMT, fmax=1e-3).atoms  # 4 atoms
    same = phonon_thermal_expansion(cubic, EMT, supercell_length=7.0)
    assert same.alpha == pytest.approx(res.alpha, rel=0.05)  # energies per cell consistent


def test_imaginary_modes_give_a_status_not_a_number():
    bcc = relax(bulk("Cu", "bcc", a=2.87), EMT, fmax=1e-3).atoms  # unstable under EMT
    res = phonon_thermal_expansion(bcc, EMT, supercell_length=6.0)
    assert math.isnan(res.alpha) and res.status.startswith("dynamically unstable")
    assert res.min_frequency < -0.3


def test_oracle_row_with_phonon_qha_keeps_its_alpha_through_calibration():
    cfg = OracleConfig(thermal_method="phonon-qha", phonon_supercell=8.0)
    row = run_oracle(bulk("Cu", "fcc", a=3.6), calculator="emt", config=cfg)
    assert row.ok and row.method["thermal_method"] == "phonon-qha"
    assert 14e-6 < row.alpha_300K < 26e-6 and math.isnan(row.eos_V0)
    assert 250 < row.debye_temperature < 450  # elastic Debye temperature (Cu: 343 K)
    assert row.details["phonon_supercell"] == [4, 4, 4]
    agl = run_oracle(bulk("Cu", "fcc", a=3.6), calculator="emt")
    table = pd.DataFrame([row.to_row(), {**agl.to_row(), "id": "agl"}])
    moduli = {"K_vrh": [30, 50, 100, 200, 300], "G_vrh": [10, 20, 50, 100, 150]}
    identity = Calibration.fit(moduli, moduli, calculator="emt", fit_split="test")
    out = calibrated_results(table, identity)
    assert out["alpha_300K_calibrated"][0] == pytest.approx(row.alpha_300K)
    assert out["alpha_300K_calibrated"][1] == pytest.approx(agl.alpha_300K, rel=0.05)
    with pytest.raises(ValueError, match="thermal_method"):
        OracleConfig(thermal_method="phonons")  # type: ignore[arg-type]


def test_stable_block_is_the_run_of_stable_volumes_around_the_relaxed_one():
    from invdesign.oracle.phonons import _stable_block

    stable = np.array([False, True, True, True, False, True])
    assert _stable_block(stable, 2) == (1, 4)
    assert _stable_block(stable, 4) == (4, 4)  # the relaxed volume itself unstable: empty
    assert _stable_block(np.ones(7, dtype=bool), 3) == (0, 7)
