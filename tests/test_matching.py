"""`fit_reduced` gives pymatgen's `StructureMatcher.fit` answer on reduced cells."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from invdesign.validity.matching import MatchCell, fit_reduced
from invdesign.validity.uniqueness import MatchSettings, prepare_structure, unique_mask

SETTINGS = MatchSettings()


def _fits(first: Structure, second: Structure) -> tuple[bool, bool]:
    """(pymatgen's answer, fit_reduced's answer) for two cells reduced as uniqueness does."""
    a, b = prepare_structure(first), prepare_structure(second)
    expected = SETTINGS.matcher().fit(a.reduced, b.reduced, skip_structure_reduction=True)
    got = fit_reduced(a.cell, b.cell, ltol=SETTINGS.ltol, stol=SETTINGS.stol,
                      angle_tol=SETTINGS.angle_tol)
    return bool(expected), got


def _low_symmetry(rng: np.random.Generator) -> Structure:
    """A triclinic Mg2O4 cell with sites at least 1.6 A apart."""
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81, 97, 104)
    coords: list[np.ndarray] = []
    while len(coords) < 6:
        trial = rng.random(3)
        if all(lattice.get_distance_and_image(trial, c)[0] > 1.6 for c in coords):
            coords.append(trial)
    return Structure(lattice, ["Mg", "Mg", "O", "O", "O", "O"], coords)


def _variant(structure: Structure, rng: np.random.Generator, sigma: float,
             strain: float) -> Structure:
    """Shuffled sites, shifted origin, strained cell and Gaussian displacements (A)."""
    order = rng.permutation(len(structure))
    deform = np.eye(3) + rng.uniform(-strain, strain, (3, 3))
    lattice = Lattice(structure.lattice.matrix @ deform)
    frac = structure.frac_coords[order] + rng.random(3)
    copy = Structure(lattice, [structure.species[i] for i in order], frac)
    for i in range(len(copy)):
        copy.translate_sites([i], rng.normal(0, sigma, 3), frac_coords=False)
    return copy


@pytest.mark.parametrize("sigma", [0.0, 0.15, 0.35, 0.6])
def test_same_answer_as_pymatgen_on_distorted_copies(sigma, nacl, si, cu):
    rng = np.random.default_rng(7)
    bases = [prepare_structure(s).reduced for s in (nacl, si, cu, _low_symmetry(rng))]
    for base in bases:  # primitive cells, so that the distorted copies keep their size
        for strain in (0.0, 0.08, 0.2):
            for _ in range(3):
                expected, got = _fits(base, _variant(base, rng, sigma, strain))
                assert got == expected, (base.formula, sigma, strain)
                if sigma == 0.0 and strain == 0.0:
                    assert got  # a shuffled, shifted copy is the same crystal


def test_both_answers_occur_near_the_site_tolerance():
    """Displacements around stol give matches and non-matches; both must agree."""
    rng = np.random.default_rng(3)
    base = _low_symmetry(rng)
    answers = []
    for sigma in np.linspace(0.2, 0.9, 24):
        expected, got = _fits(base, _variant(base, rng, float(sigma), 0.05))
        assert got == expected
        answers.append(expected)
    assert any(answers) and not all(answers)


def test_different_crystals_and_species_orders(nacl, si):
    zincblende = Structure.from_spacegroup("F-43m", Lattice.cubic(5.64), ["Na", "Cl"],
                                           [[0, 0, 0], [0.25, 0.25, 0.25]])
    swapped = nacl.copy()
    swapped.replace_species({"Na": "Cl", "Cl": "Na"})  # the same rocksalt, labels exchanged
    for first, second, same in [(nacl, zincblende, None), (nacl, swapped, True),
                                (si, zincblende, False)]:
        # same reduced size, so both are compared (uniqueness's prefilter key)
        assert len(prepare_structure(first).reduced) == len(prepare_structure(second).reduced)
        expected, got = _fits(first, second)
        assert got == expected
        if same is not None:
            assert got is same


def test_species_counts_must_agree():
    lattice = Lattice.cubic(4.0)
    coords = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    a2b2 = MatchCell(Structure(lattice, ["Na", "Na", "Cl", "Cl"], coords))
    ab3 = MatchCell(Structure(lattice, ["Na", "Cl", "Cl", "Cl"], coords))
    assert not fit_reduced(a2b2, ab3, ltol=0.3, stol=0.5, angle_tol=10)


def test_refuses_cells_of_different_size(nacl):
    primitive = MatchCell(nacl.get_primitive_structure())
    with pytest.raises(ValueError, match="same number of sites"):
        fit_reduced(primitive, MatchCell(nacl), ltol=0.3, stol=0.5, angle_tol=10)


def test_disordered_cells_go_to_pymatgen(nacl):
    disordered = nacl.copy()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    assert prepare_structure(disordered).cell is None
    assert prepare_structure(nacl).cell is not None
    shifted = disordered.copy()
    shifted.translate_sites(range(len(shifted)), [0.1, 0.2, 0.3])
    assert unique_mask([disordered, shifted, nacl]).tolist() == [True, False, True]


def test_both_answers_occur_near_the_length_tolerance():
    """Stretching one axis moves the cell lengths across ltol (after volume scaling)."""
    base = _low_symmetry(np.random.default_rng(5))
    answers = []
    for stretch in np.linspace(1.7, 2.5, 24):
        strained = base.copy()
        strained.lattice = Lattice(base.lattice.matrix * [[stretch], [1], [1]])
        expected, got = _fits(base, strained)
        assert got == expected
        answers.append(expected)
    assert any(answers) and not all(answers)


def test_both_answers_occur_near_the_angle_tolerance():
    """Shearing the cell moves an angle across angle_tol."""
    base = prepare_structure(_low_symmetry(np.random.default_rng(5))).reduced
    a, b, c, alpha, beta, gamma = base.lattice.parameters
    answers = []
    for shift in np.linspace(4, 16, 24):
        sheared = Structure(Lattice.from_parameters(a, b, c, alpha, beta, gamma + shift),
                            base.species, base.frac_coords)
        expected, got = _fits(base, sheared)
        assert got == expected
        answers.append(expected)
    assert any(answers) and not all(answers)


def test_lll_shortcut_only_where_pymatgen_changes_nothing():
    from invdesign.validity.matching import _lll_many

    rng = np.random.default_rng(11)
    shortcuts = 0
    matrices = np.array([np.diag(rng.uniform(2, 6, 3)) + rng.normal(0, 0.8, (3, 3))
                         for _ in range(200)])
    for matrix, reduced, mapping in zip(matrices, *_lll_many(matrices), strict=True):
        lattice = Lattice(matrix)
        if mapping is None:
            shortcuts += 1
            np.testing.assert_array_equal(lattice.lll_mapping, np.identity(3))
            np.testing.assert_array_equal(lattice.lll_matrix, matrix)
        else:
            np.testing.assert_array_equal(reduced, lattice.lll_matrix)
    assert 10 < shortcuts < 190  # both paths taken
