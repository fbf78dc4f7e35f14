"""Crystal graphs: known neighbour shells, invariances, caching, degenerate inputs."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from invdesign.featurize import graph as graph_module
from invdesign.featurize.batch import collate
from invdesign.featurize.composition import (
    atomic_numbers,
    composition_descriptor,
    composition_descriptors,
    n_composition_features,
)
from invdesign.featurize.elements import element_feature_table
from invdesign.featurize.graph import GraphConfig, build_graph, featurize_structures


def _shells(structure: Structure, config: GraphConfig = GraphConfig()) -> list[tuple]:
    """Per atom: (Z, sorted neighbour distances rounded), sorted: an order-free graph summary."""
    g = build_graph(structure, config)
    out = []
    for i, z in enumerate(g.atomic_numbers):
        d = np.sort(g.distances[g.edge_index[0] == i])
        out.append((int(z), tuple(np.round(d, 4))))
    return sorted(out)


def test_rocksalt_first_shell(nacl):
    g = build_graph(nacl, GraphConfig(cutoff=3.0, max_neighbors=12))
    assert g.n_atoms == 8
    assert np.all(np.bincount(g.edge_index[0]) == 6)
    assert np.allclose(g.distances, 5.64 / 2, atol=1e-4)
    assert g.density == pytest.approx(2.16, abs=0.01)
    assert g.volume_per_atom == pytest.approx(5.64**3 / 8)


def test_fcc_twelve_neighbours_and_ties_kept(cu):
    g = build_graph(cu, GraphConfig(cutoff=6.0, max_neighbors=12))
    counts = np.bincount(g.edge_index[0])
    assert np.all(counts == 12)
    assert np.allclose(g.distances, 3.61 / np.sqrt(2), atol=1e-4)
    # Asking for 13 must take the whole second shell (6 ties at a), never an arbitrary one.
    g13 = build_graph(cu, GraphConfig(cutoff=6.0, max_neighbors=13))
    assert np.all(np.bincount(g13.edge_index[0]) == 18)


def test_permutation_rotation_translation_supercell_invariance(nacl):
    ref = _shells(nacl)
    perm = Structure.from_sites([nacl[i] for i in np.random.default_rng(0).permutation(8)])
    assert _shells(perm) == ref
    shifted = nacl.copy()
    shifted.translate_sites(list(range(8)), [0.123, 0.456, 0.789])
    assert _shells(shifted) == ref
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) @ \
        np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    rotated = Structure(Lattice(nacl.lattice.matrix @ rot.T), nacl.species, nacl.frac_coords)
    assert _shells(rotated) == ref
    assert sorted(set(_shells(nacl * (2, 1, 1)))) == sorted(set(ref))


def test_isolated_atom_has_no_edges():
    lone = Structure(Lattice.cubic(1000.0), ["Fe"], [[0, 0, 0]])
    g = build_graph(lone)
    assert g.n_atoms == 1 and g.edge_index.shape == (2, 0)
    batch = collate([g, g])
    assert batch.n_graphs == 2 and batch.edge_index.shape == (2, 0)


def test_collate_offsets_edges(nacl, cu):
    gs = [build_graph(nacl), build_graph(cu)]
    batch = collate(gs)
    assert batch.atomic_numbers.shape[0] == 12
    n_first = gs[0].edge_index.shape[1]
    assert int(batch.edge_index[:, n_first:].min()) == 8
    assert batch.graph_index.tolist() == [0] * 8 + [1] * 4
    assert batch.global_features.shape == (2, gs[0].global_features.size)


def test_cache_second_run_skips_neighbour_search(tmp_path, nacl, cu, monkeypatch):
    first = featurize_structures([nacl, cu], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("graphs-*.npz"))) == 1

    def boom(*_, **__):
        raise AssertionError("neighbour search ran despite a cache hit")

    monkeypatch.setattr(graph_module, "build_graph", boom)
    second = featurize_structures([nacl, cu], cache_dir=tmp_path)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.edge_index, b.edge_index)
        assert np.allclose(a.distances, b.distances)
        assert np.allclose(a.global_features, b.global_features)
    with pytest.raises(AssertionError, match="neighbour search ran"):
        featurize_structures([nacl, cu], GraphConfig(cutoff=5.0), cache_dir=tmp_path)


def test_descriptors_and_element_table(nacl):
    d = composition_descriptor(atomic_numbers(nacl))
    assert d.shape == (n_composition_features(),) and np.all(np.isfinite(d))
    assert np.allclose(composition_descriptor(atomic_numbers(nacl * (2, 1, 1))), d)
    knn = composition_descriptors([nacl])
    assert knn.shape == (1, n_composition_features() + 2)
    assert knn[0, -1] == pytest.approx(nacl.density, rel=1e-6)
    table = element_feature_table()
    assert table.shape[0] == 101 and np.all(np.isfinite(table))
    assert not np.allclose(table[11], table[17])  # Na and Cl differ
    with pytest.raises(ValueError, match="cutoff"):
        GraphConfig(cutoff=0.0)


def test_angle_descriptor_simple_cubic_known_angles():
    # Each bond of simple cubic meets 4 bonds at 90 degrees and 1 at 180 degrees, all equal-weight.
    cubic = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    g = build_graph(cubic, GraphConfig(cutoff=4.0, max_neighbors=6, angular=5))
    assert g.angles.shape == (6, 5)
    bins = np.linspace(-1.0, 1.0, 5)
    gauss = lambda cos: np.exp(-((cos - bins) / 0.5) ** 2)  # noqa: E731
    assert np.allclose(g.angles, (4 * gauss(0.0) + gauss(-1.0)) / 5, atol=1e-6)


def test_angle_descriptor_invariant_and_cached(tmp_path, nacl, cu):
    config = GraphConfig(angular=8)

    def summary(s):
        g = build_graph(s, config)
        return np.sort(np.round(np.hstack([g.distances[:, None], g.angles]), 4), axis=0)

    ref = summary(nacl)
    perm = Structure.from_sites([nacl[i] for i in np.random.default_rng(0).permutation(8)])
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    rotated = Structure(Lattice(nacl.lattice.matrix @ rot.T), nacl.species, nacl.frac_coords)
    for other in (perm, rotated):
        assert np.allclose(summary(other), ref, atol=1e-4)
    first = featurize_structures([nacl, cu], config, cache_dir=tmp_path)
    second = featurize_structures([nacl, cu], config, cache_dir=tmp_path)
    assert all(np.array_equal(a.angles, b.angles) for a, b in zip(first, second, strict=True))
    assert collate(first).angles.shape == (sum(len(g.distances) for g in first), 8)
    assert build_graph(nacl).angles.shape == (len(build_graph(nacl).distances), 0)


def test_parallel_featurisation_gives_the_same_graphs(nacl, cu, monkeypatch):
    monkeypatch.setattr(graph_module, "PARALLEL_MIN_GRAPHS", 2)
    batch = [base.copy().perturb(0.1, seed=seed)
             for seed, base in enumerate((nacl, cu) * 3)]
    heard: list[int] = []
    parallel = featurize_structures(batch, n_jobs=2, progress=heard.append)
    serial = featurize_structures(batch)
    assert sum(heard) == len(batch)
    for a, b in zip(parallel, serial, strict=True):
        for field in ("atomic_numbers", "edge_index", "distances", "angles", "global_features"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert (a.volume_per_atom, a.density) == (b.volume_per_atom, b.density)


def _counts(formula: str) -> dict[int, int]:
    from pymatgen.core import Composition

    return {el.Z: int(n) for el, n in Composition(formula).items()}


def test_stoichiometric_pattern_is_the_reduced_formula_in_electronegativity_order():
    from invdesign.featurize.stoichiometry import stoichiometry_pattern

    assert stoichiometry_pattern(_counts("BaTiO3")) == (1, 1, 3)  # X: Ba 0.89, Ti 1.54, O
    assert stoichiometry_pattern(_counts("Sr2Zr2O6")) == (1, 1, 3)  # reduced
    assert stoichiometry_pattern(_counts("RhO3F")) == (1, 3, 1)  # Rh 2.28 < O 3.44 < F 3.98
    assert stoichiometry_pattern(_counts("Al4O6")) == (2, 3)
    assert stoichiometry_pattern(_counts("O6Al4")) == (2, 3)  # order of the input is moot
    assert stoichiometry_pattern({18: 2, 17: 1}) == (1, 2)  # Ar has no X: last, no crash


def test_stoichiometric_patterns_fit_allow_and_round_trip(tmp_path, nacl, cu):
    from invdesign.featurize.stoichiometry import StoichiometryPatterns

    perovskite = Structure(Lattice.cubic(4.0), ["Ba", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                            [0, 0.5, 0.5]])
    patterns = StoichiometryPatterns.fit([perovskite, nacl, cu])
    assert patterns.patterns == {(1, 1, 3), (1, 1), (1,)}
    assert patterns.allows(_counts("SrZrO3")) and patterns.allows(_counts("K4Br4"))
    assert not patterns.allows(_counts("RhO3F")) and not patterns.allows(_counts("Al2O3"))
    path = patterns.save(tmp_path / "stoichiometries.json")
    assert StoichiometryPatterns.load(path) == patterns
    with pytest.raises(ValueError, match="at least one"):
        StoichiometryPatterns.fit([])
    for bad in ("{", '[[1, 0]]', "[]", '["AB3"]'):
        path.write_text(bad)
        with pytest.raises(ValueError, match=r"stoichiometries\.json"):
            StoichiometryPatterns.load(path)
