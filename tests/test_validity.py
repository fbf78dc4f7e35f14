"""Validity, uniqueness and novelty: CDVAE's definitions, SMACT gaps, StructureMatcher exactness."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import smact
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure

import invdesign.validity as validity_pkg
from invdesign.validity import (
    COLUMNS,
    MatchSettings,
    ReferenceIndex,
    ValidityConfig,
    check_structures,
    composition_key,
    composition_validity,
    novel_mask,
    structure_validity,
    unique_mask,
    validity_rates,
)
from invdesign.validity import composition as composition_module
from invdesign.validity.composition import _validity_of_key
from invdesign.validity.uniqueness import reduce_like_matcher

FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def rocksalt(a: float, cation: str, anion: str) -> Structure:
    """Rocksalt conventional cell (8 atoms), explicit coordinates."""
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4,
                     np.vstack([FCC, FCC + np.array([0.5, 0, 0])]))


def perovskite(a: float, a_site: str, b_site: str, x: str) -> Structure:
    """Cubic ABX3 perovskite (5 atoms)."""
    return Structure(Lattice.cubic(a), [a_site, b_site, x, x, x],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


@pytest.fixture
def nacl() -> Structure:
    return rocksalt(5.64, "Na", "Cl")


@pytest.fixture
def mgo() -> Structure:
    return rocksalt(4.21, "Mg", "O")


# ----------------------------------------------------------------------------- composition

@pytest.mark.parametrize(("formula", "reason"), [
    ("NaCl", "Na+1 Cl-1"), ("MgO", "Mg+2"), ("Fe2O3", "Fe+3"), ("SrTiO3", "Ti+4"),
    ("CuZn", "alloy"), ("Fe3Al", "alloy"), ("Si", "single element"), ("C", "single element"),
    ("XeF2", "Xe+2"),  # Xe has SMACT oxidation states
    ("NaO", "O-1"),  # peroxide oxygen is in SMACT's list, so CDVAE counts NaO valid
])
def test_valid_compositions(formula, reason):
    result = composition_validity(formula)
    assert result.valid and result
    assert reason in result.reason


@pytest.mark.parametrize(("formula", "reason"), [
    ("NaCl2", "no charge-neutral"), ("KF2", "no charge-neutral"),
    ("Fe3O4", "no charge-neutral"),  # one oxidation state per element, as in CDVAE
    ("CsF3", "no charge-neutral"),
])
def test_charge_imbalanced_compositions_are_invalid(formula, reason):
    result = composition_validity(formula)
    assert not result.valid
    assert reason in result.reason


@pytest.mark.parametrize(("formula", "element"), [
    ("NeO", "Ne"), ("ArCl", "Ar"), ("HeF2", "He"), ("NaOg", "Og"), ("Og", "Og"), ("Ts2O", "Ts"),
])
def test_elements_smact_lacks_give_invalid_with_reason(formula, element):
    result = composition_validity(formula)
    assert not result.valid
    assert element in result.reason


def test_single_noble_gas_is_valid_as_in_cdvae():
    assert composition_validity("Ne").valid  # CDVAE's single-element rule comes first


def test_bad_inputs_do_not_raise():
    assert not composition_validity("Xx9Qq").valid
    assert not composition_validity(Composition()).valid
    with pytest.raises(ValueError, match="oxidation_states"):
        composition_validity("NaCl", oxidation_states="wiki")


def test_structure_and_decorated_species(nacl):
    assert composition_validity(nacl) == composition_validity("NaCl")
    ionic = nacl.copy()
    ionic.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    assert composition_validity(ionic).valid


def test_key_reduces_and_caches(nacl):
    supercell = nacl * (2, 1, 1)
    assert composition_key(supercell) == composition_key("NaCl") == (("Na", 1), ("Cl", 1))
    assert composition_key("Na0.5Cl0.5") == composition_key("NaCl")
    composition_validity("NaCl")
    hits = _validity_of_key.cache_info().hits
    composition_validity(supercell)
    assert _validity_of_key.cache_info().hits == hits + 1


def test_icsd24_states_are_selectable():
    # Zn is +1/+2 in SMACT 2's list (CDVAE) and +2/+3 in ICSD-2024: Zn2O changes verdict
    assert composition_validity("Zn2O").valid
    assert not composition_validity("Zn2O", oxidation_states="icsd24").valid


def test_chunked_charge_search_equals_brute_force(monkeypatch):
    states = [(-2, -1, 1, 2), (1, 2, 3), (-3, 3, 5), (-1, 1, 7)]
    counts = [2, 1, 3, 1]
    brute = [ox for ox in itertools.product(*states)
             if sum(o * c for o, c in zip(ox, counts, strict=True)) == 0]
    assert list(composition_module._neutral_combinations(states, counts)) == brute
    monkeypatch.setattr(composition_module, "_GRID_LIMIT", 5)  # forces the outer loop
    assert list(composition_module._neutral_combinations(states, counts)) == brute


def _smact2_pauling(ox_states, enegs) -> bool:
    """SMACT 2's eneg_states_test: comparing None raises TypeError (Python 3)."""
    for (ox1, en1), (ox2, en2) in itertools.combinations(zip(ox_states, enegs, strict=True), 2):
        if (ox1 > 0 and ox2 < 0 and en1 >= en2) or (ox1 < 0 and ox2 > 0 and en1 <= en2):
            return False
    return True


def _cdvae_reference(formula: str) -> bool:
    """CDVAE's smact_validity, loop by loop, on SMACT 4 (neutral_ratios returns a list)."""
    key = composition_key(formula)
    symbols, counts = [s for s, _ in key], [n for _, n in key]
    elements = [smact.Element(s) for s in symbols]
    if len(symbols) == 1 or all(s in smact.metals for s in symbols):
        return True
    states = [e.oxidation_states_smact14 for e in elements]  # TypeError when None, as in CDVAE
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*states):
        if smact.neutral_ratios(ox, stoichs=[(c,) for c in counts], threshold=max(counts)):
            try:
                ok = _smact2_pauling(ox, enegs)
            except TypeError:
                ok = True
            if ok:
                return True
    return False


def test_matches_cdvae_reference_on_random_compositions():
    rng = np.random.default_rng(0)
    pool = ["H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K",
            "Ti", "Mn", "Fe", "Cu", "Zn", "Se", "Sr", "Sn", "I", "Ba", "Pb", "Bi", "Rn", "Pm",
            "Lr", "U", "Ne"]
    for _ in range(250):
        symbols = rng.choice(pool, size=int(rng.integers(2, 4)), replace=False)
        formula = "".join(f"{s}{int(rng.integers(1, 5))}" for s in symbols)
        try:
            expected = _cdvae_reference(formula)
        except TypeError:  # CDVAE crashes on elements without oxidation states
            expected = False
        assert composition_validity(formula).valid == expected, formula


# ----------------------------------------------------------------------------- geometry

def test_rocksalt_is_structurally_valid(nacl):
    result = structure_validity(nacl)
    assert result.valid and result.cdvae_valid and result.reason == ""


def test_overlapping_atoms_are_invalid():
    pair = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.06, 0, 0]])  # 0.3 A
    result = structure_validity(pair)
    assert not result.valid and not result.cdvae_valid
    assert "0.3 A apart" in result.reason
    same = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]])
    assert not structure_validity(same).valid  # distance 0 is not skipped as "self"


def test_huge_cell_is_invalid_by_volume():
    result = structure_validity(Structure(Lattice.cubic(1000.0), ["Na"], [[0, 0, 0]]))
    assert not result.valid and "volume per atom" in result.reason
    assert result.cdvae_valid  # CDVAE has no upper volume bound


def test_periodic_self_image_counts():
    tiny = structure_validity(Structure(Lattice.cubic(0.4), ["Na"], [[0, 0, 0]]))
    assert not tiny.valid and not tiny.cdvae_valid  # CDVAE: cell volume < 0.1 A^3
    assert "own periodic image" in tiny.reason
    needle = Structure(Lattice.orthorhombic(0.4, 10.0, 10.0), ["Na"], [[0, 0, 0]])
    result = structure_validity(needle)
    assert not result.valid and "own periodic image" in result.reason
    assert result.cdvae_valid  # CDVAE ignores an atom's own images


def test_close_periodic_image_of_another_atom():
    pair = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0.01, 0.5, 0.5], [0.95, 0.5, 0.5]])
    result = structure_validity(pair)  # 0.24 A apart across the cell boundary
    assert not result.valid and not result.cdvae_valid


def test_non_finite_and_degenerate_lattices_do_not_raise():
    nan = Structure(Lattice(np.full((3, 3), np.nan)), ["Na"], [[0, 0, 0]])
    assert not structure_validity(nan).valid
    sliver = Structure(Lattice([[1e4, 0, 0], [0, 1e4, 0], [0, 0, 1e-6]]), ["Na"], [[0, 0, 0]])
    result = structure_validity(sliver)
    assert not result.valid and "degenerate" in result.reason


def test_volume_range_is_configurable(nacl):
    assert not structure_validity(nacl, max_volume_per_atom=10.0).valid
    assert structure_validity(nacl, min_distance=2.5).valid  # Na-Cl 2.82 A
    assert not structure_validity(nacl, min_distance=3.0).valid


# ----------------------------------------------------------------------------- uniqueness

def test_unique_mask(nacl, mgo):
    supercell = nacl * (2, 1, 1)
    permuted = Structure(nacl.lattice, nacl.species[::-1], nacl.frac_coords[::-1])
    strained = nacl.copy()
    strained.apply_strain(0.01)
    mask = unique_mask([nacl, supercell, permuted, strained, mgo])
    assert mask.tolist() == [True, False, False, False, True]


def test_novelty_against_reference(nacl, mgo):
    larger = nacl.copy()
    larger.scale_lattice(nacl.volume * 1.1**3)  # StructureMatcher scales volumes: not novel
    primitive = Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]),
                          ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    shifted = nacl.copy()
    shifted.translate_sites(range(len(shifted)), [0.13, 0.02, 0.4])
    index = ReferenceIndex([nacl])
    mask = novel_mask([nacl, mgo, larger, primitive, shifted], index)
    assert mask.tolist() == [False, True, False, False, False]
    assert index.find(primitive) == 0 and len(index) == 1
    with pytest.raises(ValueError, match="settings"):
        novel_mask([nacl], index, settings=MatchSettings(stol=0.1))


def test_distinct_polymorphs_stay_distinct():
    cscl_type = Structure(Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert unique_mask([rocksalt(5.64, "Na", "Cl"), cscl_type]).tolist() == [True, True]


def test_cdvae_tolerances_are_loose():
    # stol=0.5 with the mean shift removed: zincblende ZnS "matches" rocksalt ZnS, as in
    # plain StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10); pymatgen's defaults do not
    zincblende = Structure(Lattice.cubic(5.41), ["Zn"] * 4 + ["S"] * 4,
                           np.vstack([FCC, FCC + 0.25]))
    rs = rocksalt(5.41, "Zn", "S")
    assert unique_mask([zincblende, rs]).tolist() == [True, False]
    strict = MatchSettings(ltol=0.2, stol=0.3, angle_tol=5)
    assert unique_mask([zincblende, rs], settings=strict).tolist() == [True, True]


def _perturbed(base: Structure, rng: np.random.Generator, sigma: float) -> Structure:
    lattice = base.lattice.matrix @ (np.eye(3) + rng.normal(0, 0.02, (3, 3)))
    cart = base.cart_coords + rng.normal(0, sigma, base.cart_coords.shape)
    return Structure(lattice, base.species, cart, coords_are_cartesian=True)


def test_prefiltered_matching_equals_plain_structure_matcher(nacl):
    rng = np.random.default_rng(3)
    bases = [nacl, nacl * (1, 1, 2), perovskite(3.9, "Sr", "Ti", "O")]
    items = [_perturbed(b, rng, s) for b in bases for s in (0.02, 0.3, 0.6)]
    matcher = StructureMatcher(ltol=0.3, stol=0.5, angle_tol=10)
    for a, b in itertools.product(items, repeat=2):
        assert ReferenceIndex([a]).contains(b) == matcher.fit(a, b)
    for s in items:
        ours, theirs = reduce_like_matcher(s), StructureMatcher._get_reduced_structure(s)
        assert len(ours) == len(theirs)
        assert np.allclose(ours.lattice.matrix, theirs.lattice.matrix)
        assert np.allclose(ours.frac_coords, theirs.frac_coords)


def test_uncomparable_structures_are_neither_unique_nor_novel(nacl):
    nan = Structure(Lattice(np.full((3, 3), np.nan)), ["Na"], [[0, 0, 0]])
    assert unique_mask([nan, nacl]).tolist() == [False, True]
    assert novel_mask([nan], [nacl]).tolist() == [False]


# ----------------------------------------------------------------------------- report

def test_check_structures_table(nacl, mgo):
    from ase.build import bulk

    nan = Structure(Lattice(np.full((3, 3), np.nan)), ["Na"], [[0, 0, 0]])
    neon = Structure(Lattice.cubic(4.0), ["Ne", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    batch = [nacl, nacl * (2, 1, 1), mgo, nan, "not a structure", neon, bulk("Cu", a=3.61)]
    table = check_structures(batch, reference=[nacl])
    assert list(table.columns) == list(COLUMNS)
    assert table["formula"].tolist()[:3] == ["NaCl", "NaCl", "MgO"]
    assert table["valid"].tolist() == [True, True, True, False, False, False, True]
    assert table["unique"].tolist() == [True, False, True, False, False, True, True]
    assert table["novel"].tolist() == [False, False, True, False, False, True, True]
    assert "non-finite" in table.loc[3, "reason"]
    assert "TypeError" in table.loc[4, "reason"]
    assert "no oxidation states for Ne" in table.loc[5, "reason"]
    assert table.loc[0, "reason"] == ""
    rates = validity_rates(table)
    assert rates["comp_valid"] == pytest.approx(5 / 7)
    assert rates["struct_valid"] == pytest.approx(5 / 7)
    assert rates["valid"] == pytest.approx(4 / 7)
    assert rates["novel"] == pytest.approx(3 / 7)


def test_check_structures_without_reference_and_with_config(nacl):
    table = check_structures([nacl], config=ValidityConfig(max_volume_per_atom=10.0))
    assert table["novel"].isna().all() and pd.isna(table.loc[0, "novel"])
    assert not table.loc[0, "struct_valid"] and table.loc[0, "struct_valid_cdvae"]
    assert np.isnan(validity_rates(table)["novel"])
    assert validity_rates(check_structures([])) == {"n": 0}


def test_validity_imports_no_torch():
    package = Path(validity_pkg.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path


def test_bond_ratio_separates_real_crystals_from_squeezed_cells(nacl, cu):
    from invdesign.validity import MIN_BOND_RATIO, min_bond_ratio

    assert min_bond_ratio(nacl) > 0.9 and min_bond_ratio(cu) > 0.9
    squeezed = nacl.copy()
    squeezed.scale_lattice(nacl.volume * 0.2)
    assert min_bond_ratio(squeezed) < MIN_BOND_RATIO


def test_expansion_restores_the_typical_bond_ratio(nacl):
    from invdesign.validity import TYPICAL_BOND_RATIO, expand_to_bond_ratio, min_bond_ratio

    squeezed = nacl.copy()
    squeezed.scale_lattice(nacl.volume * 0.6)
    expanded = expand_to_bond_ratio(squeezed)
    assert min_bond_ratio(expanded) == pytest.approx(TYPICAL_BOND_RATIO, rel=1e-6)
    np.testing.assert_allclose(expanded.frac_coords, squeezed.frac_coords)
    assert expanded.lattice.abc[0] / squeezed.lattice.abc[0] == pytest.approx(
        TYPICAL_BOND_RATIO / min_bond_ratio(squeezed))
    assert squeezed.volume == pytest.approx(nacl.volume * 0.6)  # the input is not modified
    assert expand_to_bond_ratio(nacl, 0.5) is nacl  # loose enough already: unchanged
    with pytest.raises(ValueError, match="overlapping"):
        expand_to_bond_ratio(nacl, current=0.0)


def test_bond_ratio_threshold_keeps_nearly_every_mp_binary(shared_data):
    from invdesign.data import load_dataset
    from invdesign.validity import MIN_BOND_RATIO, min_bond_ratio

    data = load_dataset(shared_data / "mp_binary_elasticity"
                        / "mp-binary-pbe-elasticity-dev.json.gz", properties=[])
    below = [r.id for r in data if min_bond_ratio(r.structure) < MIN_BOND_RATIO]
    assert below == ["mp-985281"]  # CsIr, 0.61: the one known crystal the guard would reject


def test_parallel_checks_give_the_same_table(nacl, monkeypatch):
    from invdesign.validity import geometry, report, uniqueness

    monkeypatch.setattr(report, "PARALLEL_MIN_ITEMS", 2)
    monkeypatch.setattr(geometry, "PARALLEL_MIN_ITEMS", 2)
    monkeypatch.setattr(uniqueness, "PARALLEL_MIN_SHARED", 2)
    rng = np.random.default_rng(5)
    bases = [nacl, nacl * (1, 1, 2), perovskite(3.9, "Sr", "Ti", "O"),
             perovskite(4.1, "Ba", "Ti", "O")]
    batch = [_perturbed(b, rng, s) for b in bases for s in (0.02, 0.3, 0.6, 0.02)]
    batch.insert(3, "not a structure")
    serial = check_structures(batch, reference=[nacl])
    parallel = check_structures(batch, reference=[nacl], n_jobs=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert 0 < serial["unique"].sum() < len(batch) - 1
    assert 0 < serial["novel"].sum() < len(batch) - 1  # the NaCl cells are not novel
    structures = [s for s in batch if isinstance(s, Structure)]
    np.testing.assert_array_equal(geometry.min_bond_ratios(structures, n_jobs=2),
                                  [geometry.min_bond_ratio(s) for s in structures])


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_checks_report_progress_per_stage(nacl, monkeypatch, n_jobs):
    """Each stage reports its total at the end, counts never go back, and worker processes
    report from inside (more than the start and end of a parallel stage are heard)."""
    from invdesign.validity import geometry, report, uniqueness

    monkeypatch.setattr(report, "PARALLEL_MIN_ITEMS", 2)
    monkeypatch.setattr(geometry, "PARALLEL_MIN_ITEMS", 2)
    monkeypatch.setattr(uniqueness, "PARALLEL_MIN_SHARED", 2)
    rng = np.random.default_rng(5)
    batch = [_perturbed(b, rng, s) for b in (nacl, perovskite(3.9, "Sr", "Ti", "O"))
             for s in (0.02, 0.3, 0.6, 0.02, 0.3, 0.6)]
    heard: dict[str, list[tuple[int, int]]] = {}
    table = check_structures(batch, reference=[nacl], n_jobs=n_jobs,
                             progress=lambda stage, done, total:
                             heard.setdefault(stage, []).append((done, total)))
    pd.testing.assert_frame_equal(table, check_structures(batch, reference=[nacl]))
    assert list(heard) == ["validity", "uniqueness", "novelty"]
    for stage, calls in heard.items():
        done = [d for d, _ in calls]
        assert calls[-1] == (len(batch), len(batch)), stage
        assert done == sorted(done), stage
    if n_jobs == 1:
        assert len(heard["uniqueness"]) == len(batch) + 1  # the start, then every structure


def _ticking_worker(shared: list[int], index: int, stage: int) -> int:
    import time

    from invdesign.parallel import tick

    count = shared[index]
    for _ in range(count):
        tick(1, stage)
        time.sleep(0.06)  # longer than TICK_INTERVAL / 2: at least every other tick is sent
    time.sleep(0.3)  # the ticks reach the parent before the result does
    return count


def test_worker_processes_report_progress_per_stage():
    from invdesign.parallel import gather, progress_queue, worker_pool

    heard: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    ticks = progress_queue()
    with worker_pool(2, shared=[3, 4], ticks=ticks) as submit:
        futures = [submit(_ticking_worker, 0, 0), submit(_ticking_worker, 1, 1)]
        results = gather(futures, ticks,
                         [(lambda done, total: heard[0].append((done, total)), 2, 5),
                          (lambda done, total: heard[1].append((done, total)), 1, 5)])
    assert results == [3, 4]
    for stage in (0, 1):
        assert heard[stage][-1] == (5, 5)
        done = [d for d, _ in heard[stage]]
        assert done == sorted(done) and len(done) >= 3  # heard while the worker ran


def _call_first(shared: list, _: int) -> int:
    return shared[0]()


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="workers inherit the shared object only where processes fork")
def test_forked_workers_inherit_the_shared_object_unpickled():
    from invdesign.parallel import worker_pool

    with worker_pool(2, shared=[lambda: 7]) as submit:  # a lambda cannot be pickled
        assert [submit(_call_first, i).result() for i in range(3)] == [7, 7, 7]


def test_typical_bond_ratio_is_the_mp_binary_median(shared_data):
    from invdesign.data import load_dataset
    from invdesign.validity import TYPICAL_BOND_RATIO, min_bond_ratios

    data = load_dataset(shared_data / "mp_binary_elasticity"
                        / "mp-binary-pbe-elasticity-dev.json.gz", properties=[])
    ratios = min_bond_ratios(data.structures, n_jobs=2)
    assert np.median(ratios) == pytest.approx(TYPICAL_BOND_RATIO, abs=1e-3)


def test_one_composition_is_split_by_reduced_cell_size(monkeypatch):
    """A single-element batch (Carbon-24-like) is dealt to two processes by prefilter key,
    and the uniqueness mask is the serial one."""
    from invdesign.validity import uniqueness

    _deal = uniqueness._deal
    monkeypatch.setattr(uniqueness, "PARALLEL_MIN_SHARED", 2)
    rng = np.random.default_rng(3)
    diamond = Structure(Lattice.cubic(3.57), ["C"] * 8,
                        [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
                         [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    graphite = Structure(Lattice.hexagonal(2.46, 6.7), ["C"] * 4,
                         [[0, 0, .25], [0, 0, .75], [1 / 3, 2 / 3, .25], [2 / 3, 1 / 3, .75]])
    chain = Structure(Lattice.orthorhombic(1.4, 4, 4), ["C"], [[0, 0, 0]])
    batch = [_perturbed(b, rng, s) for b in (diamond, graphite, chain, diamond * (1, 1, 2))
             for s in (0.02, 0.4, 0.02)]
    items = [uniqueness.prepare_structure(s) for s in batch]
    reduced, bins = uniqueness._deal(items, list(range(len(items))), 2)
    assert len(bins) == 2
    assert sorted(i for b in bins for i in b) == list(range(len(items)))
    for b in bins:  # no prefilter key in two bins
        assert not {reduced[i].key for i in b} & {reduced[i].key for o in bins if o is not b
                                                  for i in o}
    np.testing.assert_array_equal(unique_mask(batch, n_jobs=2), unique_mask(batch))
    # novelty of a few samples against many references of their composition: dealt as well
    monkeypatch.setattr(uniqueness, "PARALLEL_MIN_SHARED", 500)
    monkeypatch.setattr(uniqueness, "PARALLEL_MIN_PAIRS", 10)
    index = uniqueness.ReferenceIndex(batch[::2])
    dealt = []
    monkeypatch.setattr(uniqueness, "_deal", lambda *a: dealt.append(1) or _deal(*a))
    np.testing.assert_array_equal(index.novel_mask(batch[1::2], n_jobs=2),
                                  index.novel_mask(batch[1::2]))
    assert dealt == [1]
