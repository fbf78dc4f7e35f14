"""Energy above the convex hull (pymatgen PhaseDiagram over the oracle's own energies) and the
elemental references it needs (EMT here: fast and offline)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from invdesign.oracle.stability import Hull, elemental_prototypes, elemental_references


@pytest.fixture()
def hull() -> Hull:
    # A-B: elements at 0 eV/atom, AB on the hull at -1 eV/atom, a metastable AB polymorph.
    return Hull(["Cu", "Al", "CuAl", "CuAl", "Ni"], [0.0, 0.0, -1.0, -0.95, 0.0],
                ["cu", "al", "mp-1", "mp-2", "ni"])


def test_e_above_hull_of_a_known_geometry(hull):
    # CuAl2 (x_Al = 2/3): the hull is the line from CuAl (-1) to Al (0): -2/3 eV/atom there.
    res = hull.e_above_hull("CuAl2", -0.5)
    assert res.e_above_hull == pytest.approx(1 / 6)
    assert res.decomposition == "Al + AlCu"
    assert hull.e_above_hull("CuAl", -0.95).e_above_hull == pytest.approx(0.05)
    below = hull.e_above_hull("CuAl2", -0.8)  # more stable than anything known: negative
    assert below.e_above_hull == pytest.approx(-0.8 + 2 / 3)


def test_leave_one_out_and_unknown_chemistry(hull):
    # Without mp-1, the hull of Cu-Al is mp-2: mp-1 lies 0.05 below it.
    assert hull.e_above_hull("CuAl", -1.0, exclude="mp-1").e_above_hull == pytest.approx(-0.05)
    missing = hull.e_above_hull("CuZn", -1.0)
    assert math.isnan(missing.e_above_hull) and missing.decomposition == "no reference for Zn"
    assert math.isnan(hull.e_above_hull("CuAl", float("nan")).e_above_hull)
    assert hull.e_above_hull("Xx2", -1.0).decomposition == "no reference for Xx"
    assert hull.e_above_hull("Cu(", -1.0).decomposition.startswith("bad formula")
    assert hull.e_above_hull("Ni", 0.0).e_above_hull == pytest.approx(0.0)


def test_from_tables_keeps_converged_relaxations_only():
    elements = pd.DataFrame({"id": ["e:Cu", "e:Al"], "formula": ["Cu", "Al"],
                             "energy_per_atom": [0.0, 0.0]})
    labels = pd.DataFrame({"id": ["mp-1", "mp-2", "mp-3"], "formula": ["CuAl"] * 3,
                           "energy_per_atom": [-1.0, -3.0, float("nan")],
                           "K_vrh": [100.0, float("nan"), 90.0]})  # mp-2 never converged
    hull = Hull.from_tables([elements, labels])
    assert len(hull) == 3
    assert hull.e_above_hull("CuAl", -1.0).e_above_hull == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 formulas but 1 energies"):
        Hull(["Cu", "Al"], [0.0])


def test_elemental_prototypes_never_start_compressed():
    for symbol in ("H", "O", "C", "Si", "Cu", "Xe", "U"):
        for name, atoms, _ in elemental_prototypes(symbol):
            d = atoms.get_all_distances(mic=True)
            shortest = d[d > 0].min() if len(atoms) > 1 else min(atoms.cell.lengths())
            assert shortest > 0.6, (symbol, name, shortest)
    assert [n for n, _, _ in elemental_prototypes("O")] == ["diatomic molecule"]
    assert "graphite" in [n for n, _, _ in elemental_prototypes("C")]


def test_elemental_references_take_the_lowest_prototype():
    table = elemental_references(["Cu", "Al"], "emt")
    assert table["formula"].tolist() == ["Cu", "Al"] and table["energy_per_atom"].notna().all()
    # EMT's close-packed metals (fcc and hcp within meV; EMT's zero is fcc) beat bcc.
    assert "bcc" not in set(table["prototype"])
    assert (table["energy_per_atom"].abs() < 0.02).all()


def test_annotate_scores_relaxed_rows_only(hull):
    results = pd.DataFrame({"id": ["a", "b", "c"], "formula": ["CuAl2", "CuAl", "CuAl"],
                            "energy_per_atom": [-0.5, -1.2, -3.0],
                            "K_vrh": [100.0, 90.0, float("nan")]})
    table = hull.annotate(results)
    assert table["e_above_hull"].iloc[0] == pytest.approx(1 / 6)
    assert table["e_above_hull"].iloc[1] == pytest.approx(-0.2)
    assert math.isnan(table["e_above_hull"].iloc[2]) and table["decomposition"].iloc[2] == \
        "not relaxed"


def test_shipped_chgnet_hull_orders_known_polymorphs():
    """Corundum (mp-1143) is the Al2O3 ground state and rutile/anatase-type TiO2 lie within a
    few tens of meV of the hull; rocksalt TiN (mp-492) is the ground state of Ti-N."""
    from invdesign.oracle import read_results
    from invdesign.oracle.stability import hull_from_folder
    from invdesign.surrogate import checkpoints_dir

    hull = hull_from_folder(checkpoints_dir() / "oracle-labels", "chgnet")
    assert hull is not None and {"Al", "O", "Ti", "N"} <= hull.elements
    labels = read_results(checkpoints_dir() / "oracle-labels" / "mp-binary-chgnet.csv")
    energy = labels.set_index("id")["energy_per_atom"]
    corundum = hull.e_above_hull("Al2O3", energy["mp-1143"], exclude="mp-1143")
    assert -0.05 < corundum.e_above_hull <= 0.0 and corundum.decomposition == "Al2O3"
    assert hull.e_above_hull("TiN", energy["mp-492"], exclude="mp-492").e_above_hull < 0
    assert abs(hull.e_above_hull("TiO2", energy["mp-2657"], exclude="mp-2657")
               .e_above_hull) < 0.05


def test_every_shipped_hull_is_complete_and_named_after_its_potential():
    """Each `elements-<potential>.csv` comes with its `mp-binary-<potential>.csv`, and the hull
    they make puts every elemental reference on the hull."""
    from typing import get_args

    import pandas as pd

    from invdesign.oracle import CalculatorName
    from invdesign.oracle.stability import hull_from_folder
    from invdesign.surrogate import checkpoints_dir

    folder = checkpoints_dir() / "oracle-labels"
    for elements in sorted(folder.glob("elements-*.csv")):
        name = elements.stem.removeprefix("elements-")
        assert name in get_args(CalculatorName), elements
        hull = hull_from_folder(folder, name)
        assert hull is not None, f"{elements} has no mp-binary-{name}.csv beside it"
        refs = pd.read_csv(elements)
        assert len(refs) >= 80 and set(refs["calculator"]) == {name}
        for formula, energy in zip(refs["formula"][:20], refs["energy_per_atom"][:20],
                                   strict=True):
            assert hull.e_above_hull(formula, energy).e_above_hull == pytest.approx(0, abs=1e-6)
