"""Splits of `invdesign.data`: determinism, disjointness, coverage, grouping by formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Composition

from invdesign.data import (
    CrystalDataset,
    CrystalRecord,
    Split,
    composition_split,
    kfold,
    random_split,
)

FORMULAS = [f for i in range(40) for f in [f"Na{i % 7 + 1}Cl", "NaCl", f"Si{i % 3 + 1}"]]


def _assert_partition(split: Split, n: int) -> None:
    parts = [split.train, split.val, split.test]
    joined = np.concatenate(parts)
    assert len(joined) == n and set(joined.tolist()) == set(range(n))  # disjoint and complete


def test_random_split_deterministic_disjoint_complete() -> None:
    a = random_split(103, (0.8, 0.1, 0.1), seed=3)
    assert a == random_split(103, (0.8, 0.1, 0.1), seed=3)
    assert a != random_split(103, (0.8, 0.1, 0.1), seed=4)
    _assert_partition(a, 103)
    assert a.sizes == (83, 10, 10)  # largest remainder: 82.4, 10.3, 10.3
    assert (a.method, a.seed, a.fractions) == ("random", 3, (0.8, 0.1, 0.1))


def test_split_json_round_trip() -> None:
    split = random_split(20, (0.5, 0.25, 0.25), seed=1)
    card = json.loads(json.dumps(split.to_dict()))
    assert card["sizes"] == [10, 5, 5]
    assert Split.from_dict(card) == split
    with pytest.raises(ValueError):
        split.train[0] = 99  # read-only


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.1, 0.2), (1.1, -0.05, -0.05),
                                       (float("nan"), 0.5, 0.5)])
def test_bad_fractions_rejected(fractions) -> None:
    with pytest.raises(ValueError, match="fractions"):
        random_split(10, fractions)
    with pytest.raises(ValueError, match="fractions"):
        composition_split(FORMULAS, fractions)


def test_zero_fraction_part_is_empty() -> None:
    split = composition_split(FORMULAS, (0.9, 0.1, 0.0), seed=0)
    assert len(split.test) == 0
    _assert_partition(split, len(FORMULAS))


def test_composition_split_never_shares_a_reduced_formula() -> None:
    split = composition_split(FORMULAS, (0.6, 0.2, 0.2), seed=5)
    _assert_partition(split, len(FORMULAS))
    reduced = [Composition(f).reduced_formula for f in FORMULAS]
    seen = [{reduced[i] for i in part} for part in (split.train, split.val, split.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert split == composition_split(list(FORMULAS), (0.6, 0.2, 0.2), seed=5)
    assert split.method == "composition"


def test_composition_split_groups_equivalent_formulas() -> None:
    formulas = ["NaCl", "Na2Cl2", "Na4Cl4", "Si", "Si2", "Cu"] * 3
    split = composition_split(formulas, (0.34, 0.33, 0.33), seed=0)
    part_of = {int(i): name for name, part in zip("tvs", (split.train, split.val, split.test),
                                                  strict=True) for i in part}
    for element in ("Na", "Si", "Cu"):
        assert len({part_of[i] for i, f in enumerate(formulas) if f.startswith(element)}) == 1


def test_composition_split_of_dataset(nacl, si, cu) -> None:
    records = [CrystalRecord(f"r{i}", s) for i, s in enumerate([nacl, si, cu] * 4)]
    split = composition_split(CrystalDataset(records), (0.34, 0.33, 0.33), seed=0)
    _assert_partition(split, 12)
    for part in (split.train, split.val, split.test):  # one formula per part here
        assert len({records[i].structure.composition.reduced_formula for i in part}) == 1
    train, _, _ = split.subsets(CrystalDataset(records))
    assert len(train) == len(split.train)


def test_kfold_plain_covers_each_index_once() -> None:
    folds = list(kfold(23, 5, seed=2))
    assert len(folds) == 5
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(23))
    for train, v in folds:
        assert set(train.tolist()) | set(v.tolist()) == set(range(23))
        assert not set(train.tolist()) & set(v.tolist())
    assert max(len(v) for _, v in folds) - min(len(v) for _, v in folds) <= 1
    again = list(kfold(23, 5, seed=2))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_kfold_grouped_keeps_formulas_together() -> None:
    reduced = [Composition(f).reduced_formula for f in FORMULAS]
    folds = list(kfold(FORMULAS, 4, seed=0))
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(len(FORMULAS)))
    fold_sets = [{reduced[i] for i in v} for _, v in folds]
    for i, a in enumerate(fold_sets):
        for b in fold_sets[i + 1:]:
            assert not a & b


def test_kfold_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        kfold(10, 1)
    with pytest.raises(ValueError, match="k must be"):
        kfold(["NaCl", "Na2Cl2", "Si"], 3)  # only two reduced formulas
