"""Applicability domain: compositions (`CompositionDomain`), element counts and label
ranges (`ApplicabilityDomain`)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from invdesign.featurize.composition import composition_descriptor, formula_descriptor
from invdesign.featurize.domain import MIN_FORMULAS, ApplicabilityDomain, CompositionDomain

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


def test_applicability_domain_says_why_a_row_is_outside():
    k = np.linspace(20, 300, len(TRAINING))
    domain = ApplicabilityDomain.from_training([*TRAINING, "not a formula"],
                                               {"bulk_modulus_vrh": [*k, np.nan]})
    assert domain.element_counts == (2, 2)
    assert domain.target_ranges["bulk_modulus_vrh"] == (20.0, 300.0)
    checked = domain.assess(["NaCl", "Cu", "MgAl2O4", "OF2", "MgO", "??"],
                            {"bulk_modulus_vrh": [24, 140, 200, 100, 900, np.nan]})
    assert checked["in_domain"].tolist() == [True, False, False, False, False, False]
    notes = checked["domain_note"].tolist()
    assert notes[0] == "" and checked["composition_distance"][0] == 0.0
    assert notes[1].startswith("1 element (trained on 2)")
    assert notes[2] == "3 elements (trained on 2)"
    assert notes[3].startswith("unfamiliar chemistry (distance")
    assert notes[4] == "bulk_modulus_vrh 900 outside training range 20-300"
    assert notes[5] == "unparsable formula; no bulk_modulus_vrh prediction"


def test_applicability_domain_round_trips_and_works_without_formulas():
    domain = ApplicabilityDomain.from_training(TRAINING, {"shear_modulus_vrh": [10.0, 50.0]})
    again = ApplicabilityDomain.from_dict(json.loads(json.dumps(domain.to_dict())))
    assert again == domain and len(again.formulas) == len(set(TRAINING))
    checked = again.assess(None, {"shear_modulus_vrh": [30.0, 60.0]}, n=2)
    assert checked["in_domain"].tolist() == [True, False]
    small = ApplicabilityDomain.from_training(["NaCl", "KCl"])
    assert small.composition is None  # too few formulas for a chemistry threshold
    assert small.assess(["RbCl", "Rb"])["in_domain"].tolist() == [True, False]
    with pytest.raises(ValueError, match="at least one training formula"):
        ApplicabilityDomain.from_training(["??"])


def test_unknown_domain_only_checks_that_predictions_are_finite():
    table = ApplicabilityDomain.unknown().assess(None, {"bulk_modulus_vrh": [1e4, math.nan]}, n=2)
    assert table["in_domain"].tolist() == [True, False]
    assert table["domain_note"].tolist() == ["", "no bulk_modulus_vrh prediction"]
