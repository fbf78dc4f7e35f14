"""Applicability domain of compositions (`CompositionDomain`)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from invdesign.design.domain import MIN_FORMULAS, CompositionDomain
from invdesign.featurize.composition import composition_descriptor, formula_descriptor

METALS = ["Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ti", "Zr", "Fe", "Ni", "Cu", "Zn"]
ANIONS = ["O", "F", "Cl", "S", "N"]
TRAINING = [f"{m}{a}{n}" for m, a, n in itertools.product(METALS, ANIONS, ("", "2"))]


def test_formula_descriptor_matches_the_structure_descriptor():
    z = np.array([12, 8, 8, 12])  # Mg2O2
    np.testing.assert_allclose(formula_descriptor("MgO"), composition_descriptor(z))
    with pytest.raises(ValueError, match=r"formula|empty"):
        formula_descriptor("")


def test_metal_compounds_are_inside_and_molecular_gases_outside():
    domain = CompositionDomain(TRAINING)
    assert domain.distance(["NaCl", "Na2Cl2"]).tolist() == [0.0, 0.0]  # known: distance 0
    inside = domain.contains(["Al2O3", "Fe3O4", "Ti3N4", "Li3N"])  # unseen, familiar chemistry
    outside = domain.contains(["OF2", "NF3", "HN3", "KBr"])  # gases only; an unseen element
    assert inside.all() and not outside.any()
    assert domain.threshold > 0


def test_unparsable_formulas_are_outside_and_small_sets_are_refused():
    domain = CompositionDomain([*TRAINING, "not a formula", float("nan")])
    assert np.isinf(domain.distance(["Xx2", "", float("nan"), "Og2"])).all()
    assert not domain.contains(["Xx2"]).any()
    with pytest.raises(ValueError, match=f"at least {MIN_FORMULAS}"):
        CompositionDomain(TRAINING[:10] * 10)
