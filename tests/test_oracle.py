"""Physics oracle: EMT-based checks of relaxation, elasticity, AGL thermal expansion, failure
statuses and the resumable executor. CHGNet/SevenNet runs are marked `slow`."""

from __future__ import annotations

import math
import sys
import types
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.eos import EquationOfState
from ase.units import GPa, kB
from pymatgen.core import DummySpecies, Lattice, Structure

from invdesign.oracle import (
    CSV_COLUMNS,
    BirchMurnaghan,
    OracleConfig,
    OracleResult,
    agl_debye_temperature,
    completed_ids,
    debye_gruneisen,
    elastic_tensor,
    get_calculator,
    quasi_harmonic,
    read_results,
    relax,
    run_many,
    run_oracle,
    thermal_expansion,
)
from invdesign.oracle import executor as executor_mod
from invdesign.oracle import oracle as oracle_mod
from invdesign.oracle.elastic import DEFAULT_STRAINS
from invdesign.oracle.relax import frac_rmsd, median_relaxation_rmsd, to_structure
from invdesign.properties.derived import debye_heat_capacity

EMT = get_calculator("emt")


def _fcc(symbol: str, a: float) -> Structure:
    """Primitive (1-atom) fcc cell."""
    return to_structure(bulk(symbol, "fcc", a=a))


@pytest.fixture(scope="module")
def cu_relaxed():
    """EMT-relaxed primitive Cu."""
    return relax(_fcc("Cu", 3.61), EMT).atoms


def test_get_calculator_cached_and_unknown_name():
    assert get_calculator("emt") is EMT
    with pytest.raises(ValueError, match="unknown calculator 'lj'"):
        get_calculator("lj")  # type: ignore[arg-type]


def test_relax_recovers_emt_lattice_constant(cu):
    strained = cu.copy()
    strained.apply_strain([0.03, -0.02, 0.01])
    strained.perturb(0.05, seed=0)
    res = relax(strained, EMT)
    a, b, c = res.atoms.cell.cellpar()[:3]
    assert res.converged and res.steps > 0
    assert all(3.585 < x < 3.61 for x in (a, b, c))
    assert np.abs(res.atoms.get_forces()).max() < 0.05
    assert np.abs(res.atoms.get_stress()).max() / GPa < 0.2
    assert 0.005 < res.rmsd < 0.2  # the perturbation is undone
    assert res.volume_change < 0 and -0.01 < res.energy_per_atom < 0.0


def test_relax_under_pressure_holds_that_pressure(cu):
    """At 10 GPa the relaxed cell's stress is hydrostatic -10 GPa, and Cu (K about 140 GPa
    for EMT) shrinks by about 7 % against its zero-pressure cell."""
    at_zero = relax(cu, EMT, fmax=0.01)
    at_ten = relax(cu, EMT, fmax=0.01, pressure=10.0)
    stress = at_ten.atoms.get_stress(voigt=False) / GPa
    assert at_ten.converged
    np.testing.assert_allclose(np.diag(stress), -10.0, atol=0.15)
    assert np.abs(stress - np.diag(np.diag(stress))).max() < 0.1
    ratio = at_ten.atoms.get_volume() / at_zero.atoms.get_volume()
    assert 0.92 < ratio < 0.95


def test_median_relaxation_rmsd_counts_failures_and_only_takes_n(cu):
    """A perturbed copy of Cu relaxes back by about its perturbation, a structure the
    relaxation cannot handle is counted as failed, and only the first n are relaxed."""
    perturbed = cu.copy()
    perturbed.perturb(0.1, seed=0)
    empty_cell = Structure(cu.lattice, [], [])
    summary = median_relaxation_rmsd([perturbed, perturbed, empty_cell, cu], EMT, n=3)
    assert summary["n"] == 2 and summary["failed"] == 1
    assert 0.03 < summary["median_rmsd_A"] < 0.2


def test_frac_rmsd_ignores_cell_change_and_translation():
    frac = np.random.default_rng(0).random((5, 3))
    cell = np.diag([4.0, 5.0, 6.0])
    assert frac_rmsd(frac, frac + np.array([0.3, -0.7, 1.0]), cell) == pytest.approx(0.0, abs=1e-12)
    moved = frac.copy()
    moved[0, 0] += 0.1  # 0.4 A along x, relative to the others
    expected = np.sqrt(((0.4 * 0.8) ** 2 + 4 * (0.4 * 0.2) ** 2) / 5)
    assert frac_rmsd(frac, moved, cell) == pytest.approx(expected)


def test_elastic_cu_cubic_stable_and_matches_eos(cu_relaxed):
    res = elastic_tensor(cu_relaxed, EMT)
    c = res.tensor
    assert c[0, 0] == pytest.approx(c[1, 1], rel=1e-3) == pytest.approx(c[2, 2], rel=1e-3)
    assert c[0, 1] == pytest.approx(c[0, 2], rel=1e-3) == pytest.approx(c[1, 2], rel=1e-3)
    assert c[3, 3] == pytest.approx(c[4, 4], rel=1e-3) == pytest.approx(c[5, 5], rel=1e-3)
    off_diagonal_shear = c[3:, 3:] - np.diag(np.diag(c[3:, 3:]))
    assert np.abs(c[:3, 3:]).max() < 0.5 and np.abs(off_diagonal_shear).max() < 0.5
    assert res.mechanically_stable and res.eigenvalues.min() > 0
    # Independent check: an EOS fit of E(V) on isotropically scaled cells.
    atoms, cell = cu_relaxed.copy(), np.asarray(cu_relaxed.cell)
    atoms.calc = EMT
    volumes, energies = [], []
    for f in np.linspace(0.98, 1.02, 9):
        atoms.set_cell(cell * f, scale_atoms=True)
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    k_eos = EquationOfState(volumes, energies).fit()[2] / GPa
    assert 130 < k_eos < 140
    assert res.K_vrh == pytest.approx(k_eos, rel=0.15)
    assert res.K_vrh == pytest.approx((c[0, 0] + 2 * c[0, 1]) / 3, rel=1e-6)  # cubic
    assert 40 < res.G_vrh < 70


def _rotated(atoms, degrees: float):
    """Copy of `atoms` rigidly rotated about a generic axis (cell and positions)."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_rotvec(np.radians(degrees) * np.array([1.0, 2.0, 3.0]) / np.sqrt(14))
    out = atoms.copy()
    out.set_cell(np.asarray(atoms.cell) @ rot.as_matrix().T, scale_atoms=True)
    return out


@pytest.mark.parametrize(("name", "expected_components"), [
    ("fcc", (0, 3)),  # cubic: xx gives yy, zz; yz gives xz, xy
    ("hcp", (0, 2, 3)),  # hexagonal: xx gives yy and xy; yz gives xz
    ("orthorhombic", (0, 1, 2, 3, 4, 5)),  # mmm relates no two components
])
def test_symmetry_reduced_elastic_tensor_equals_the_full_one(name, expected_components):
    """Straining only the components the point group does not determine gives the tensor of
    all six, also for a crystal rotated away from the Cartesian axes (then no component is
    saved, the rotated group mixing them all) and for a cell off its symmetry by 1e-5 A."""
    atoms = {"fcc": bulk("Cu", "fcc", a=3.6), "hcp": bulk("Cu", "hcp", a=2.55, c=4.17),
             "orthorhombic": bulk("Cu", "bcc", a=2.9, orthorhombic=True)}[name]
    relaxed = relax(atoms, EMT, fmax=0.01).atoms
    if name == "orthorhombic":  # stretched off cubic (the tensor of a stressed cell will do)
        relaxed.set_cell(np.asarray(relaxed.cell) * [1.0, 1.05, 0.97], scale_atoms=True)
    full = elastic_tensor(relaxed, EMT, symmetry=False)
    reduced = elastic_tensor(relaxed, EMT)
    assert full.components == (0, 1, 2, 3, 4, 5)
    assert reduced.components == expected_components
    checked = len(expected_components) < 6  # two more cells check a symmetry-built tensor
    assert reduced.calls == 1 + len(DEFAULT_STRAINS) * len(expected_components) + 2 * checked
    assert (reduced.symmetry_mismatch < 0.02) if checked else math.isnan(reduced.symmetry_mismatch)
    np.testing.assert_allclose(reduced.tensor, full.tensor, atol=0.5)  # GPa, of ~100
    noisy = relaxed.copy()
    noisy.positions += np.random.default_rng(0).normal(0.0, 1e-5, noisy.positions.shape)
    assert elastic_tensor(noisy, EMT).components == expected_components
    turned = elastic_tensor(_rotated(relaxed, 17.0), EMT)
    assert turned.K_vrh == pytest.approx(full.K_vrh, rel=5e-3)  # the stressed cell: not exact
    assert turned.G_vrh == pytest.approx(full.G_vrh, rel=5e-3)


class _StiffAlongY(Calculator):
    """EMT plus 50 GPa of extra stiffness against yy strain: a response with less symmetry
    than the (cubic) structure."""

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, cell0: np.ndarray) -> None:
        super().__init__()
        self.cell0 = np.asarray(cell0)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        inner = self.atoms.copy()
        inner.calc = get_calculator("emt")
        stress = inner.get_stress(voigt=True).copy()
        strain = np.linalg.solve(self.cell0, np.asarray(self.atoms.cell)) - np.eye(3)
        stress[1] += 50.0 * GPa * strain[1, 1]
        self.results = {"energy": inner.get_potential_energy(), "forces": inner.get_forces(),
                        "stress": stress}


def test_symmetry_check_falls_back_to_every_component():
    cu = relax(bulk("Cu", "fcc", a=3.6, cubic=True), EMT, fmax=0.01).atoms
    plain = elastic_tensor(cu, EMT)
    res = elastic_tensor(cu, _StiffAlongY(cu.cell))
    assert plain.components == (0, 3) and plain.symmetry_mismatch < 0.02
    assert res.components == (0, 1, 2, 3, 4, 5) and res.symmetry_mismatch > 0.1
    assert res.tensor[1, 1] - res.tensor[0, 0] == pytest.approx(50.0, abs=1.0)
    assert res.tensor[2, 2] == pytest.approx(plain.tensor[2, 2], abs=1.0)


def test_bcc_cu_is_mechanically_unstable_under_emt():
    bcc = Structure(Lattice.cubic(2.87), ["Cu", "Cu"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    res = run_oracle(bcc, calculator="emt")
    assert res.status.startswith("failed: mechanically unstable")
    assert res.mechanically_stable is False and math.isfinite(res.K_vrh)
    assert math.isnan(res.alpha_300K)


def test_agl_debye_temperature_matches_toher_formula():
    hbar, kb, amu = 1.054571817e-34, 1.380649e-23, 1.66053906660e-27
    b, v, n, m, nu = 140.0, 47.0, 4, 4 * 63.546, 0.34
    f = (3 / (2 * ((2 / 3) * (1 + nu) / (1 - 2 * nu)) ** 1.5
              + ((1 / 3) * (1 + nu) / (1 - nu)) ** 1.5)) ** (1 / 3)
    theta = hbar / kb * (6 * np.pi**2 * (v * 1e-30) ** 0.5 * n) ** (1 / 3) * f
    theta *= np.sqrt(b * 1e9 / (m * amu))
    assert float(agl_debye_temperature(b, v, n, m, nu)) == pytest.approx(theta, rel=1e-9)
    assert 300 < theta < 400  # copper: 343 K measured


def _bm_curve(b1: float = 5.0, v0: float = 20.0, b0_gpa: float = 100.0):
    eos = BirchMurnaghan(e0=-5.0, v0=v0, b0=b0_gpa * GPa, b1=b1)
    volumes = v0 * np.linspace(0.94, 1.06, 11)
    return volumes, eos.energy(volumes)


def test_quasi_harmonic_slater_gamma_and_gruneisen_relation():
    volumes, energies = _bm_curve(b1=5.0)
    res = quasi_harmonic(volumes, energies, n_atoms=1, mass_amu=50.0, poisson=0.3,
                         gruneisen="slater")
    assert res.status == "ok"
    assert abs(res.B0 - 100.0) < 0.01 and abs(res.B1 - 5.0) < 0.005  # GPa, dimensionless
    assert res.gruneisen == pytest.approx(-1 / 6 + 5.0 / 2, rel=1e-3)
    # alpha agrees with the Grueneisen relation gamma C_V / (3 B V) to within anharmonic terms.
    c_v = debye_heat_capacity(300.0, res.debye_temperature) * kB  # eV/K per atom
    alpha_dg = res.gruneisen * c_v / (3 * res.B0 * GPa * res.V0)
    assert res.alpha == pytest.approx(alpha_dg, rel=0.2)


def test_quasi_harmonic_poisson_gamma_and_flags():
    volumes, energies = _bm_curve(b1=-1.0)  # unphysical B': flagged only for "slater"
    poisson = quasi_harmonic(volumes, energies, n_atoms=1, mass_amu=50.0, poisson=0.25)
    assert poisson.status == "ok" and poisson.gruneisen == pytest.approx(1.5, rel=1e-4)
    slater = quasi_harmonic(volumes, energies, n_atoms=1, mass_amu=50.0, poisson=0.25,
                            gruneisen="slater")
    assert slater.status.startswith("unphysical fit: B'") and math.isnan(slater.alpha)
    hot = quasi_harmonic(*_bm_curve(b0_gpa=2.0), n_atoms=1, mass_amu=50.0, temperature=3000.0)
    assert hot.status == "unphysical fit: V(T) outside the volume grid"


def test_debye_gruneisen_on_the_fitted_eos_reproduces_quasi_harmonic():
    volumes, energies = _bm_curve(b1=5.0)
    res = quasi_harmonic(volumes, energies, n_atoms=1, mass_amu=50.0, poisson=0.3)
    eos = BirchMurnaghan(e0=0.0, v0=res.V0, b0=res.B0 * GPa, b1=res.B1)
    again = debye_gruneisen(eos, n_atoms=1, mass_amu=50.0, poisson=0.3,
                            bounds=(volumes.min(), volumes.max()))
    assert again.status == "ok" and again.alpha == pytest.approx(res.alpha, rel=1e-4)
    assert again.debye_temperature == pytest.approx(res.debye_temperature, rel=1e-6)
    # A stiffer shear modulus (smaller Poisson ratio) lowers gamma and alpha, raises theta_D.
    stiff = debye_gruneisen(eos, n_atoms=1, mass_amu=50.0, poisson=0.2)
    assert stiff.gruneisen < again.gruneisen and stiff.alpha < again.alpha
    assert stiff.debye_temperature > again.debye_temperature


def test_debye_gruneisen_copper_from_its_measured_eos_and_poisson_ratio():
    """Cu: V0 11.81 A^3/atom, B0 140 GPa, B' 5.4, nu 0.34, 63.55 amu; measured theta_D 343 K,
    alpha(300 K) 16.5e-6/K. The isotropic model is known to be good to tens of percent."""
    eos = BirchMurnaghan(e0=0.0, v0=11.81, b0=140.0 * GPa, b1=5.4)
    res = debye_gruneisen(eos, n_atoms=1, mass_amu=63.55, poisson=0.34)
    assert res.status == "ok"
    assert 0.7 * 343 < res.debye_temperature < 1.3 * 343
    assert 0.7 * 16.5e-6 < res.alpha < 1.5 * 16.5e-6


@pytest.mark.parametrize(("symbol", "a"), [("Cu", 3.61), ("Al", 4.05)])
def test_agl_thermal_expansion_emt_metals(symbol, a):
    atoms = relax(_fcc(symbol, a), EMT).atoms
    res = thermal_expansion(atoms, EMT, poisson=0.33)
    assert res.status == "ok"
    assert 1e-5 < res.alpha < 5e-5
    assert 150 < res.debye_temperature < 500 and 1.0 < res.gruneisen < 3.0
    assert res.volumes.min() < res.V0 < res.volume_at_t < res.volumes.max()


def test_energy_volume_curve_warm_starts_reach_the_cold_start_minima():
    """Ionic positions extrapolated from the inner volumes reach the same relaxed energies as
    relaxing every scaled cell from the input positions, in fewer steps."""
    from invdesign.oracle.relax import relax_ions
    from invdesign.oracle.thermal import energy_volume_curve

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.positions += np.random.default_rng(1).normal(0.0, 0.05, atoms.positions.shape)
    volumes, energies, steps = energy_volume_curve(atoms, EMT, n_volumes=7)
    cold_steps = 0
    for v, e in zip(volumes, energies, strict=True):
        cold = atoms.copy()
        cold.set_cell(np.asarray(atoms.cell) * (v / atoms.get_volume()) ** (1 / 3),
                      scale_atoms=True)
        cold_steps += relax_ions(cold, EMT, fmax=0.01)[1]
        assert cold.get_potential_energy() == pytest.approx(e, abs=2e-4)  # eV per cell
    assert np.all(np.diff(volumes) > 0) and steps < cold_steps


def test_run_oracle_cu_ok_row():
    res = run_oracle(_fcc("Cu", 3.61), structure_id="cu", calculator="emt")
    assert res.ok, res.status
    row = res.to_row()
    assert tuple(row) == CSV_COLUMNS and row["id"] == "cu" and row["formula"] == "Cu"
    assert row["n_atoms"] == 1 and row["mass_amu"] == pytest.approx(63.546)
    assert 0.3 < row["poisson"] < 0.45 and row["eos_B0"] == pytest.approx(res.K_vrh, rel=0.1)
    assert 130 < res.K_vrh < 140 and res.E > res.G_vrh > 0
    assert 1e-5 < res.alpha_300K < 3e-5 and res.mechanically_stable is True
    assert res.method["calculator"] == "emt" and res.method["temperature"] == 300.0
    assert res.seconds > 0


def test_run_oracle_without_the_thermal_stage_gives_moduli_only():
    res = run_oracle(_fcc("Cu", 3.61), calculator="emt", config=OracleConfig(thermal=False))
    assert res.ok and 130 < res.K_vrh < 140 and math.isnan(res.alpha_300K)
    assert res.method["thermal"] is False


def _cube(a: float, species: list, coords: list) -> Structure:
    return Structure(Lattice.cubic(a), species, coords)


@pytest.mark.parametrize(("structure", "status"), [
    (_cube(3.6, ["Cu", "Cu"], [[0, 0, 0], [0.05, 0, 0]]), "failed: atoms overlap"),
    (_cube(0.3, ["Cu"], [[0, 0, 0]]), "failed: atoms overlap"),  # periodic image at 0.3 A
    (_cube(1000.0, ["Cu"], [[0, 0, 0]]), "failed: isolated atoms"),
    (_cube(2.87, ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]), "failed: unsupported element: Fe"),
    (_cube(3.0, [DummySpecies("X")], [[0, 0, 0]]), "failed: unsupported element: X"),
    (_cube(3.6, [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]]), "failed: disordered structure"),
    (_cube(3.6, [], []), "failed: empty structure"),
])
def test_bad_structures_give_status_without_calling_the_calculator(monkeypatch, structure,
                                                                   status):
    def boom(*args, **kwargs):
        raise AssertionError("calculator must not be called")

    monkeypatch.setattr(oracle_mod, "relax", boom)
    res = run_oracle(structure, structure_id="bad", calculator="emt")
    assert res.status.startswith(status), res.status
    assert res.id == "bad" and math.isnan(res.K_vrh) and res.mechanically_stable is None


def test_stage_exceptions_and_non_convergence_become_statuses(monkeypatch):
    stretched = _fcc("Cu", 3.9)
    res = run_oracle(stretched, calculator="emt", steps=1)
    assert res.status == "failed: no convergence (relaxation, 1 steps)"
    assert math.isfinite(res.energy_per_atom)

    def broken(*args, **kwargs):
        raise RuntimeError("potential\nexploded")

    monkeypatch.setattr(oracle_mod, "elastic_tensor", broken)
    res = run_oracle(stretched, calculator="emt")
    assert res.status == "failed: error: RuntimeError: potential exploded"
    assert math.isfinite(res.energy_per_atom) and math.isnan(res.K_vrh)
    with pytest.raises(ValueError, match="temperature"):
        run_oracle(stretched, calculator="emt", temperature=0.0)
    with pytest.raises(ValueError, match="gruneisen"):
        OracleConfig(gruneisen="debye")  # type: ignore[arg-type]


@pytest.fixture
def counted(monkeypatch):
    """Replace the oracle inside the executor by a fast fake that records the ids it sees."""
    calls: list[str] = []

    def fake(structure, *, structure_id, **kwargs):
        calls.append(structure_id)
        return OracleResult(id=structure_id, formula=structure.composition.reduced_formula,
                            K_vrh=1.0, status="ok", seconds=0.01)

    monkeypatch.setattr(executor_mod, "run_oracle", fake)
    return calls


def _items():
    return [("cu", _fcc("Cu", 3.61)), ("al", _fcc("Al", 4.05)), ("ni", _fcc("Ni", 3.52))]


def test_run_many_writes_rows_and_skips_done_ids(tmp_path):
    out = tmp_path / "verify.csv"
    df = run_many(_items(), out, calculator="emt", progress=False)
    assert list(df.columns) == list(CSV_COLUMNS)
    assert sorted(df["id"]) == ["al", "cu", "ni"] and (df["status"] == "ok").all()
    assert df["alpha_300K"].between(5e-6, 5e-5).all()
    assert df["mechanically_stable"].tolist() == [True, True, True]
    assert out.read_text().count("\n") == 4


def test_run_many_resumes_after_restart_and_kill(tmp_path, counted):
    out = tmp_path / "verify.csv"
    run_many(_items(), out, calculator="emt", progress=False)
    assert counted == ["cu", "al", "ni"]
    run_many(_items(), out, calculator="emt", progress=False)
    assert counted == ["cu", "al", "ni"]  # nothing recomputed
    # A killed run: the last row was only half written.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:-1]) + lines[-1][:7])
    assert completed_ids(out) == {"cu", "al"}
    df = run_many([*_items(), ("cu", _fcc("Cu", 3.61))], out, calculator="emt", progress=False)
    assert counted == ["cu", "al", "ni", "ni"]
    assert sorted(df["id"]) == ["al", "cu", "ni"]


def test_run_many_writes_the_relaxed_structures(tmp_path):
    from pymatgen.core import Structure as PmgStructure

    stretched = _fcc("Cu", 3.61 * 1.05)
    bad = _fcc("Cu", 3.61)
    bad.replace_species({"Cu": "Og"})  # refused before any calculation: no structure
    df = run_many([("cu/1", stretched), ("og", bad)], tmp_path / "v.csv", calculator="emt",
                  progress=False, structures_dir=tmp_path / "relaxed")
    assert sorted(p.name for p in (tmp_path / "relaxed").iterdir()) == ["cu_1.cif"]
    relaxed = PmgStructure.from_file(tmp_path / "relaxed" / "cu_1.cif")
    assert relaxed.volume < stretched.volume * 0.9  # EMT's Cu, a = 3.59 A: it shrank
    assert "_relaxed_cif" not in df.columns and len(df) == 2


def test_results_of_an_older_version_are_upgraded_on_resume(tmp_path, counted):
    out = tmp_path / "verify.csv"
    run_many(_items()[:2], out, calculator="emt", progress=False)
    old = CSV_COLUMNS[:13]  # the columns before n_atoms, mass_amu, poisson and the EOS
    frame = read_results(out)
    frame[list(old)].to_csv(out, index=False)
    assert read_results(out)["eos_V0"].isna().all()  # readable as it is
    df = run_many(_items(), out, calculator="emt", progress=False)
    assert counted == ["cu", "al", "ni"]  # only ni is new
    assert out.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    assert sorted(df["id"]) == ["al", "cu", "ni"] and (df["K_vrh"] == 1.0).all()
    assert (df["status"] == "ok").all() and df["eos_V0"].isna().all()


def test_run_many_rejects_foreign_csv_and_bad_arguments(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not an oracle results file"):
        run_many(_items(), out, calculator="emt", progress=False)
    with pytest.raises(ValueError, match="unknown calculator"):
        run_many(_items(), tmp_path / "x.csv", calculator="lj", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        run_many(_items(), tmp_path / "x.csv", calculator="emt", workers=0, progress=False)


def test_run_many_ray_path_with_a_fake_cluster(tmp_path, monkeypatch, counted):
    class Ref:
        def __init__(self, fn, job):
            self.fn, self.job = fn, job

    class RayError(Exception):
        pass

    def remote(**options):
        return lambda fn: types.SimpleNamespace(remote=lambda job: Ref(fn, job))

    def get(ref):
        if ref.job.id == "al":
            raise RayError("node died")
        return ref.fn(ref.job)

    fake = types.SimpleNamespace(
        init=lambda **kw: None, remote=remote, get=get, cluster_resources=lambda: {"CPU": 2},
        wait=lambda refs, num_returns: (refs[:1], refs[1:]),
        exceptions=types.SimpleNamespace(RayError=RayError))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(executor_mod, "_limit_threads", lambda n=1: None)
    df = run_many(_items(), tmp_path / "r.csv", calculator="emt", ray_address="auto",
                  progress=False).set_index("id")
    assert df.loc["al", "status"] == "failed: worker crashed (RayError)"
    assert (df.loc[["cu", "ni"], "status"] == "ok").all()
    monkeypatch.setitem(sys.modules, "ray", None)  # not installed
    with pytest.raises(ImportError, match="needs ray"):
        run_many(_items(), tmp_path / "r2.csv", calculator="emt", ray_address="auto",
                 progress=False)


def test_run_many_process_pool(tmp_path):
    df = run_many(_items(), tmp_path / "p.csv", calculator="emt", workers=2, progress=False)
    assert sorted(df["id"]) == ["al", "cu", "ni"] and (df["status"] == "ok").all()


def test_run_many_survives_a_crashing_worker(tmp_path, monkeypatch, counted):
    class CrashingPool:  # stands in for a process pool whose worker dies on "al"
        def __init__(self, workers):
            pass

        def submit(self, fn, job):
            future = Future()
            if job.id == "al":
                future.set_exception(BrokenProcessPool("worker died"))
            else:
                future.set_result(fn(job))
            return future

        def shutdown(self, **kwargs):
            pass

    monkeypatch.setattr(executor_mod, "process_pool", CrashingPool)
    df = run_many(_items(), tmp_path / "c.csv", calculator="emt", workers=2,
                  progress=False).set_index("id")
    assert df.loc["al", "status"] == "failed: worker crashed"
    assert (df.loc[["cu", "ni"], "status"] == "ok").all() and sorted(counted) == ["cu", "ni"]


@pytest.mark.slow
def test_chgnet_silicon():
    pytest.importorskip("chgnet")
    import torch

    torch.set_num_threads(1)
    res = run_oracle(to_structure(bulk("Si", "diamond", a=5.43)), calculator="chgnet")
    assert res.ok, res.status
    # CHGNet is soft: K = 75 GPa vs 88 GPa (PBE, mp-149) and 98 GPa (experiment).
    assert res.K_vrh == pytest.approx(88.0, rel=0.2)
    assert res.alpha_300K > 0
    americium = to_structure(bulk("Cu", "fcc", a=3.6))
    americium.replace_species({"Cu": "Am"})  # Z = 95: outside CHGNet's embedding
    assert run_oracle(americium, calculator="chgnet").status == "failed: unsupported element: Am"


@pytest.mark.slow
def test_sevenn_silicon():
    pytest.importorskip("sevenn")
    res = run_oracle(to_structure(bulk("Si", "diamond", a=5.43)), calculator="sevenn")
    assert res.ok, res.status
    assert res.K_vrh == pytest.approx(98.0, rel=0.15) and res.alpha_300K > 0


def test_runaway_relaxation_is_stopped_with_a_status(monkeypatch):
    """A cell whose volume leaves the allowed ratio stops early with a clear status."""
    import importlib

    relax_module = importlib.import_module("invdesign.oracle.relax")
    monkeypatch.setattr(relax_module, "MAX_VOLUME_RATIO", 1.05)
    atoms = bulk("Cu", "fcc", a=3.61 * 1.15)
    with pytest.raises(relax_module.RelaxationRunawayError, match="ran away"):
        relax_module.relax(atoms, EMT)


def test_a_collapsed_cell_is_refused_before_the_potential_sees_it():
    """One optimiser step can shrink a strained cell ten-fold; the potential's neighbour lists
    on it would exhaust memory, so the filter checks the volume before evaluating."""
    from ase.calculators.calculator import Calculator

    from invdesign.oracle.relax import RelaxationRunawayError, _GuardedCellFilter

    class Untouchable(Calculator):
        implemented_properties = ("energy", "forces", "stress")

        def calculate(self, *args, **kwargs):
            raise AssertionError("the potential was called on a collapsed cell")

    atoms = bulk("Cu", "fcc", a=3.61)
    atoms.calc = Untouchable()
    guarded = _GuardedCellFilter(atoms)
    atoms.set_cell(atoms.cell * 0.5, scale_atoms=True)  # volume x0.125
    with pytest.raises(RelaxationRunawayError, match=r"volume x0\.12 \(before evaluating it\)"):
        guarded.get_forces()
    with pytest.raises(RelaxationRunawayError):
        guarded.get_potential_energy()


def test_a_relaxation_past_its_time_limit_is_stopped_with_a_status(monkeypatch):
    """A relaxation that keeps going (here: any, with a zero time limit) ends as a failed row
    saying so, not as a stalled batch."""
    import importlib

    relax_module = importlib.import_module("invdesign.oracle.relax")
    monkeypatch.setattr(relax_module, "MAX_RELAX_SECONDS", 0.0)
    res = run_oracle(to_structure(bulk("Cu", "fcc", a=3.61 * 1.05)), calculator="emt")
    assert res.status.startswith("failed: no convergence (relaxation ran away: still running")


def test_a_collapsing_cell_is_stopped_by_its_forces(monkeypatch):
    import importlib

    relax_module = importlib.import_module("invdesign.oracle.relax")
    monkeypatch.setattr(relax_module, "MAX_FORCE", 1e-6)  # any real force counts as runaway
    res = run_oracle(to_structure(bulk("Cu", "fcc", a=3.61 * 1.05)), calculator="emt")
    assert "relaxation ran away: forces" in res.status and "collapsing" in res.status


def test_coincident_atoms_are_an_overlap_not_a_calculation():
    """Two distinct atoms at one position (distance 0) must be caught before the potential."""
    from pymatgen.core import Lattice

    twin = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0, 0, 0]])
    res = run_oracle(twin, calculator="emt")
    assert res.status.startswith("failed: atoms overlap (distance 0.00 A")


def test_cli_help_names_every_potential() -> None:
    from typing import get_args

    from invdesign import cli
    from invdesign.oracle import DEFAULT_CALCULATOR, CalculatorName

    assert set(cli._POTENTIALS.replace(" or ", ", ").split(", ")) == set(get_args(CalculatorName))
    assert cli._DEFAULT_POTENTIAL == DEFAULT_CALCULATOR and cli._SCREEN_POTENTIAL in \
        get_args(CalculatorName)


def test_a_results_file_never_mixes_two_potentials(tmp_path):
    """Each row records its potential and thermal model; resuming a file with another one is
    refused before anything runs, and a file from before the columns existed is upgraded,
    not refused."""
    out = tmp_path / "r.csv"
    table = run_many(_items()[:1], out, calculator="emt", progress=False)
    assert table["calculator"].tolist() == ["emt"]
    assert table["thermal_method"].tolist() == ["agl"]
    with pytest.raises(ValueError, match="holds results of calculator emt; this run uses sevenn"):
        run_many(_items(), out, calculator="sevenn", progress=False)
    with pytest.raises(ValueError, match="thermal_method agl; this run uses phonon-qha"):
        run_many(_items(), out, calculator="emt", progress=False,
                 config=OracleConfig(thermal_method="phonon-qha"))
    old = tmp_path / "old.csv"
    header, row = out.read_text().splitlines()[:2]
    old.write_text(header.removesuffix(",calculator,thermal_method") + "\n"
                   + row.removesuffix(",emt,agl") + "\n")
    assert completed_ids(old, "sevenn", "phonon-qha") == {table["id"].iloc[0]}
    assert read_results(old)[["calculator", "thermal_method"]].values.tolist() == [["", ""]]


def test_default_potential_gets_aluminium_bulk_modulus():
    """The default oracle potential (SevenNet-l3i5, bundled weights) loads offline and puts
    fcc Al near its experimental K of 76 GPa (relaxation and moduli only: a few seconds)."""
    from invdesign.oracle import DEFAULT_CALCULATOR, OracleConfig

    res = run_oracle(to_structure(bulk("Al", "fcc", a=4.05)),
                     config=OracleConfig(thermal=False))
    assert res.ok and res.calculator == DEFAULT_CALCULATOR, res.status
    assert res.K_vrh == pytest.approx(76.0, rel=0.15) and res.G_vrh > 0
