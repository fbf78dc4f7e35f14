"""The physics screen of `generate --relax`: relax (EMT here: fast and offline), re-check,
place against the hull, re-score and rank the candidates that pass first."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from ase.build import bulk

from invdesign.design.candidates import Candidates
from invdesign.oracle.relax import to_structure
from invdesign.oracle.stability import Hull
from invdesign.screening import relax_structures, screen


def _fcc(symbol: str, a: float):
    return to_structure(bulk(symbol, "fcc", a=a))


class _Designer:
    """Stands in for `Designer.assess`: every crystal valid, novel and in domain, scored by
    minus its volume per atom (so the ranking is known), the later of two equal formulas
    flagged as a duplicate."""

    def assess(self, structures, *, prefix, scorer, n_jobs=1):
        formulas = [s.composition.reduced_formula for s in structures]
        table = pd.DataFrame({
            "id": [f"{prefix}-{i}" for i in range(len(structures))], "formula": formulas,
            "valid": True, "unique": ~pd.Series(formulas).duplicated().to_numpy(),
            "novel": True, "in_domain": True,
            "score": [-s.volume / len(s) for s in structures]})
        return Candidates(structures, table)


def test_relax_structures_reports_failures_as_statuses():
    good, bad = _fcc("Cu", 3.8), _fcc("Cu", 3.6)
    bad.replace_species({"Cu": "Og"})  # EMT has no parameters for it
    out = relax_structures([good, bad], "emt")
    assert out[0].status == "ok" and out[0].structure is not None
    assert 11.0 < out[0].structure.volume < 12.5  # EMT's Cu: a = 3.59 A, 11.6 A^3/atom
    assert out[1].status.startswith("failed: error") and out[1].structure is None


def test_screen_ranks_relaxed_stable_unique_candidates_first():
    cands = Candidates([_fcc("Cu", 3.9), _fcc("Al", 4.3), _fcc("Cu", 3.7), _fcc("Ni", 3.6)],
                       pd.DataFrame({"id": ["a", "b", "c", "d"],
                                     "objective": [4.0, 3.0, 2.0, 1.0]}))
    # EMT puts fcc Cu and Al near 0 eV/atom; a hull whose Al lies 0.5 eV/atom lower marks Al
    # unstable; there is no Ni reference, so Ni's stability is unknown (not passed).
    hull = Hull(["Cu", "Al"], [0.0, -0.5])
    ranked = screen(_Designer(), cands, scorer=None, hull=hull, calculator="emt")
    table = ranked.table.set_index("id")
    assert table.at["a", "passed"] and not table.at["c", "passed"]  # c relaxes onto a
    assert table.at["b", "e_above_hull"] > 0.4 and not table.at["b", "passed"]
    assert math.isnan(table.at["d", "e_above_hull"]) and not table.at["d", "passed"]
    assert table.at["d", "decomposition"] == "no reference for Ni"
    assert ranked.table["id"].iloc[0] == "a" and ranked.table["rank"].tolist() == [1, 2, 3, 4]
    assert table["relax_status"].eq("ok").all() and table["objective_decoded"].at["a"] == 4.0
    volume = [s.volume / len(s) for s in ranked.structures]
    assert np.allclose(volume[0], 11.6, atol=0.6)  # the relaxed structure is what is returned


def test_relaxations_are_cached_and_resumed(tmp_path, monkeypatch):
    import invdesign.screening as screening

    cache = tmp_path / "relaxations.csv"
    first = relax_structures([_fcc("Cu", 3.8), _fcc("Al", 4.2)], "emt", cache=cache)
    assert len(pd.read_csv(cache)) == 2

    def no_work(job):
        raise AssertionError("a cached structure was relaxed again")

    monkeypatch.setattr(screening, "_relax_one", no_work)
    again = relax_structures([_fcc("Al", 4.2), _fcc("Cu", 3.8)], "emt", cache=cache)
    assert [r.status for r in again] == ["ok", "ok"]
    assert again[0].energy_per_atom == first[1].energy_per_atom
    assert abs(again[1].structure.volume - first[0].structure.volume) < 1e-6


def test_relax_structures_in_worker_processes_match_the_sequential_run():
    structures = [_fcc("Cu", 3.8), _fcc("Al", 4.2)]
    pooled = relax_structures(structures, "emt", workers=2)
    serial = relax_structures(structures, "emt")
    assert [r.energy_per_atom for r in pooled] == [r.energy_per_atom for r in serial]
