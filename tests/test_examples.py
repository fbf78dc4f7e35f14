"""Reference crystals built in code (`invdesign.data.examples`)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from invdesign.data.examples import REFERENCES, reference_structures


def test_corundum_is_sapphire() -> None:
    """Al2O3 from the R-3c prototype: 30-atom hexagonal cell, 10-atom primitive, known density
    (3.99 g/cm^3) and the short Al-O bond of sapphire (1.86 A)."""
    s = reference_structures()["Al2O3"]
    sga = SpacegroupAnalyzer(s)
    assert sga.get_space_group_symbol() == "R-3c" and len(s) == 30
    assert len(sga.get_primitive_standard_structure()) == 10
    assert s.density == pytest.approx(3.99, abs=0.02)
    d = s.distance_matrix[np.triu_indices(len(s), 1)]
    assert d.min() == pytest.approx(1.855, abs=0.02)


@pytest.mark.parametrize("ref", REFERENCES, ids=lambda r: r.name)
def test_reference_has_the_formula_it_is_named_after(ref) -> None:
    s = ref.structure()
    assert s.is_ordered
    assert s.composition.reduced_formula == ref.name.removesuffix("-diamond")


def test_primitive_reference_cells_hold_the_same_crystal_in_fewer_atoms():
    """fcc/bcc metals reduce to 1 atom, diamond/rocksalt/zincblende to 2, corundum to 10,
    with the conventional cell's composition and density."""
    conventional, primitive = reference_structures(), reference_structures(primitive=True)
    assert primitive.keys() == conventional.keys()
    for name, cell in primitive.items():
        kind = next(r.prototype for r in REFERENCES if r.name == name)
        assert len(cell) == {"fcc": 1, "bcc": 1, "corundum": 10}.get(kind, 2), name
        assert cell.composition.reduced_formula == \
            conventional[name].composition.reduced_formula
        assert cell.density == pytest.approx(conventional[name].density, rel=1e-6)
