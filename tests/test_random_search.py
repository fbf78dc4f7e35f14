"""Random-search baseline: SMACT charge-balanced compositions + pyxtal random structures."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from pymatgen.core import Structure

from invdesign.design.random_search import charge_balanced_compositions, random_structures
from invdesign.validity.composition import composition_validity

needs_pyxtal = pytest.mark.skipif(importlib.util.find_spec("pyxtal") is None,
                                  reason="pyxtal not installed")


def test_compositions_mg_o() -> None:
    comps = charge_balanced_compositions(["Mg", "O"], max_atoms=8)
    assert {"Mg": 1, "O": 1} in comps
    assert {"Mg": 2, "O": 2} in comps  # multiples are separate cells
    # No SMACT oxidation states make these neutral. (MgO2 is listed: O-1, magnesium peroxide.)
    assert {"Mg": 1, "O": 3} not in comps
    assert {"Mg": 3, "O": 1} not in comps
    assert all(sum(c.values()) <= 8 for c in comps)
    assert all(len(c) == 2 and min(c.values()) >= 1 for c in comps)
    assert comps == charge_balanced_compositions(["Mg", "O", "Mg"], max_atoms=8)  # deterministic


def test_compositions_respect_limits() -> None:
    comps = charge_balanced_compositions(["Mg", "O", "Si"], max_atoms=6, max_species=3)
    assert all(2 <= len(c) <= 3 and sum(c.values()) <= 6 for c in comps)
    assert any(len(c) == 3 for c in comps)
    assert all(composition_validity("".join(f"{e}{n}" for e, n in c.items())).valid
               for c in comps)
    assert not any(len(c) == 3 for c in charge_balanced_compositions(["Mg", "O", "Si"],
                                                                     max_atoms=6))


def test_all_metal_compositions_must_be_charge_balanced() -> None:
    # CDVAE's rule would accept every Mg-Al alloy; only charge balance counts here.
    assert charge_balanced_compositions(["Mg", "Al"], max_atoms=6) == []


def test_bad_elements_raise() -> None:
    with pytest.raises(ValueError, match="Xx"):
        charge_balanced_compositions(["Mg", "Xx"])
    with pytest.raises(ValueError, match="Xx"):
        random_structures(1, elements=["Xx"])
    with pytest.raises(ValueError, match="no charge-balanced"):
        random_structures(1, elements=["Mg", "Al"], max_atoms=4)


def _signature(structures: list[Structure]) -> list[tuple[str, tuple[float, ...]]]:
    return [(s.composition.formula, (*s.lattice.abc, *s.lattice.angles)) for s in structures]


@needs_pyxtal
def test_random_structures_reproducible_and_balanced() -> None:
    elements = ["Mg", "O", "Si"]
    structures = random_structures(3, elements=elements, max_atoms=8, seed=0)
    assert len(structures) == 3
    allowed = charge_balanced_compositions(elements, max_atoms=8)
    for s in structures:
        assert isinstance(s, Structure)
        counts = {el.symbol: int(n) for el, n in s.composition.element_composition.items()}
        assert counts in allowed
        assert len(s) <= 8
        assert composition_validity(s).valid
    again = random_structures(3, elements=elements, max_atoms=8, seed=0)
    first, second = _signature(structures), _signature(again)
    assert [f for f, _ in first] == [f for f, _ in second]
    np.testing.assert_allclose([p for _, p in first], [p for _, p in second])


@needs_pyxtal
def test_random_structures_time_limit_and_zero() -> None:
    assert random_structures(0, elements=["Mg", "O"]) == []
    assert random_structures(5, elements=["Mg", "O"], time_limit=0.0) == []
