"""Inverse design: scoring, latent search, the Designer API, candidates on disk, bad requests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from invdesign.api import Designer, charge_balanced
from invdesign.design.candidates import Candidates
from invdesign.design.latent import (
    cma_es,
    gradient_ascent,
    project,
    soft_geometry,
    trust_radius,
)
from invdesign.design.scoring import Scorer, pareto_rank
from invdesign.featurize.graph import featurize_structures
from invdesign.generator import Generator
from invdesign.properties import derive_all
from invdesign.train.ensemble import ArchitectureConfig
from invdesign.train.pipeline import SurrogateRunConfig, train_surrogate
from invdesign.train.surrogate import TrainConfig
from invdesign.train.vae_pipeline import train_generator
from tests.test_vae import TINY as TINY_VAE
from tests.toy_data import write_toy_dataset

TINY_SURROGATE = SurrogateRunConfig(
    n_members=2, workers=1, split="random", fractions=(0.6, 0.2, 0.2),
    train=TrainConfig(epochs=3, batch_size=4),
    architecture=ArchitectureConfig(hidden=8, n_conv=1, n_gaussians=8, head_hidden=8))


@pytest.fixture(scope="module")
def _cache() -> dict:
    return {}


@pytest.fixture
def designer(_cache, nacl, cu, si, tmp_path_factory) -> Designer:
    if not _cache:
        folder = tmp_path_factory.mktemp("design")
        data = write_toy_dataset(folder / "toy.json", [nacl, cu, si])
        surrogate = train_surrogate(data, TINY_SURROGATE).surrogate
        run = train_generator(data, TINY_VAE)
        _cache["d"] = (run.generator, surrogate, run.dataset.structures)
    generator, surrogate, reference = _cache["d"]
    return Designer(generator, surrogate, reference)


def test_trust_radius_and_projection():
    assert trust_radius(64) == pytest.approx(10.0, abs=0.6)  # chi quantile ~ sqrt(d) + 2
    z = np.array([[30.0, 40.0], [0.3, 0.4]])
    out = project(z, 5.0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [5.0, 0.5])


def test_cma_es_finds_the_peak_of_a_quadratic():
    seen, scores = [], []

    def evaluate(z: np.ndarray) -> np.ndarray:
        value = -((z - 1.5) ** 2).sum(1)
        seen.append(z)
        scores.append(value)
        return value

    cma_es(evaluate, np.zeros(4), radius=10.0, budget=800, popsize=16, seed=0)
    assert sum(len(z) for z in seen) <= 800
    best = np.concatenate(seen)[np.argmax(np.concatenate(scores))]
    np.testing.assert_allclose(best, 1.5, atol=0.1)


def test_pareto_rank_of_a_small_set():
    values = np.array([[1, 5], [2, 4], [1, 4], [0, 0], [np.nan, 9]])
    assert pareto_rank(values).tolist() == [0, 0, 1, 2, 0]


def test_scorer_matches_derived_properties_and_modes(designer, nacl, si):
    scorer = Scorer.parse("E * alpha", ["K > 1e6"])
    table = scorer.evaluate(designer.surrogate, [nacl, si])
    graphs = featurize_structures([nacl, si], designer.surrogate.graph_config)
    expected = derive_all(table["bulk_modulus_vrh"], table["shear_modulus_vrh"],
                          density=[g.density for g in graphs],
                          volume_per_atom=[g.volume_per_atom for g in graphs])
    np.testing.assert_allclose(table["objective"],
                               expected["youngs_modulus"] * expected["thermal_expansion"])
    assert (table["violation"] > 0).all()  # nothing is that stiff
    lcb = Scorer.parse("E * alpha", mode="lcb", kappa=2.0).score(np.array([1.0]),
                                                                 np.array([0.25]))
    assert lcb[0] == pytest.approx(0.5)
    ei = Scorer.parse("K", mode="ei", best=1.0).score(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    assert 0 < ei[0] < ei[1]


def test_gradient_ascent_climbs_the_head_objective(designer):
    model = designer.generator.model

    def inputs(z: torch.Tensor) -> dict[str, torch.Tensor]:
        density, vpa = soft_geometry(model, model.decode(z, model.predict_conditions(z)))
        return {"density": density, "volume_per_atom": vpa}

    def value(v):
        return v["density"]

    z0 = np.zeros((3, model.config.latent), np.float32)
    snaps = gradient_ascent(model, value, inputs, z0, radius=3.0, steps=30, lr=0.1)
    with torch.no_grad():
        before = inputs(torch.from_numpy(z0))["density"]
        after = inputs(torch.from_numpy(snaps[-1]))["density"]
    assert (after > before).all()
    assert np.linalg.norm(snaps[-1], axis=1).max() <= 3.0 + 1e-5


@pytest.mark.parametrize("method", ["cmaes", "gradient", "both"])
def test_optimize_returns_ranked_valid_unique_novel_candidates(designer, method):
    best = designer.optimize("E * alpha", n=5, method=method, budget=200, seed=0)
    table = best.to_dataframe()
    assert len(best) <= 5
    if len(best):
        assert table["valid"].all() and table["unique"].all() and table["novel"].all()
        assert table["rank"].tolist() == list(range(1, len(best) + 1))
        assert np.all(np.diff(table["score"].to_numpy()) <= 1e-12)


def test_shortlist_denoises_with_the_requested_cell_choice(designer, nacl, si, monkeypatch):
    """`optimize(refine_cell=...)` (`generate --keep-cell`) reaches the denoiser; without a
    denoiser the request is refused before any search."""
    from invdesign.api import _Search

    with pytest.raises(ValueError, match="needs a denoiser"):
        designer.optimize("E * alpha", n=2, budget=10, refine_cell=False)
    heard = []

    def denoise(structures, **kwargs):
        heard.append(kwargs.get("cell"))
        return list(structures)

    monkeypatch.setattr(designer.generator, "denoiser", object())
    monkeypatch.setattr(designer.generator, "denoise", denoise)
    for choice in (False, True, None):
        search = _Search(designer, Scorer.parse("K"), None, None, refine_cell=choice)
        search.structures, search.scores = [nacl, si], [2.0, 1.0]
        assert [s.composition for s in search.shortlist(2)] == [nacl.composition,
                                                                 si.composition]
    assert heard == [False, True, None]


def test_ranking_keeps_valid_unique_novel_candidates_best_first(designer, nacl, cu, si):
    """The ranking step on known crystals (the toy generator above may decode none that
    survive every check, which would leave the end-to-end tests with nothing to rank)."""
    from pymatgen.core import Lattice, Structure

    from invdesign.api import _Search

    kcl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(6.29), ["K", "Cl"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    fresh = Designer(designer.generator, designer.surrogate, [cu])  # cu is "known"
    search = _Search(fresh, Scorer.parse("K"), None, None)
    search.structures = [nacl, kcl, si, cu, nacl.copy()]  # the copy: a duplicate
    search.scores = [1.0, 2.0, 3.0, 4.0, 5.0]
    ranked = fresh._rank(search, [Scorer.parse("K")], n=10)
    table = ranked.to_dataframe()
    assert sorted(table["formula"]) == ["KCl", "NaCl", "Si"]
    assert table["valid"].all() and table["unique"].all() and table["novel"].all()
    assert table["plausible"].all() and table["in_domain"].all()
    assert table["rank"].tolist() == [1, 2, 3]
    assert np.all(np.diff(table["score"].to_numpy()) <= 0)


def test_pareto_optimisation_adds_a_rank_column(designer):
    best = designer.optimize(["E * alpha", "hardness"], n=5, method="cmaes", budget=150)
    if len(best):
        assert "pareto_rank" in best.table and "objective_1" in best.table


def test_sample_reports_flags_and_requested_conditions(designer):
    cands = designer.sample(12, conditions={"K": 80.0}, seed=1)
    table = cands.to_dataframe()
    assert len(table) == 12
    for col in ("id", "formula", "n_atoms", "decoded", "valid", "unique", "novel",
                "requested_bulk_modulus_vrh"):
        assert col in table
    np.testing.assert_allclose(table["requested_bulk_modulus_vrh"], 80.0, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["cif", "extxyz", "json"])
def test_candidates_write_every_format(designer, tmp_path, fmt, nacl, si):
    cands = designer.assess([nacl, None, si])
    assert cands.table["decoded"].tolist() == [True, False, True]
    assert not cands.table.loc[1, "valid"] and "decoding failed" in cands.table.loc[1, "reason"]
    cands.write(tmp_path, format=fmt)
    assert len(pd.read_csv(tmp_path / "candidates.csv")) == 3
    if fmt == "cif":
        assert len(list((tmp_path / "cifs").glob("*.cif"))) == 2
    else:
        assert (tmp_path / f"candidates.{fmt}").stat().st_size > 0


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(objective="E * flux_capacitance"), "flux_capacitance"),
    (dict(objective="E * (alpha"), "objective"),
    (dict(objective="E", elements=["Au", "Pt"]), "vocabulary"),
    (dict(objective="E", method="annealing"), "method"),
    (dict(objective="E", constraints=["K == 3"]), "comparison"),
    (dict(objective="E", n=0), "n must be"),
])
def test_bad_requests_fail_before_any_work(designer, kwargs, message):
    with pytest.raises((ValueError, KeyError), match=message):
        designer.optimize(**kwargs)


def test_missing_checkpoint_names_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("INVDESIGN_CHECKPOINTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        Designer.load("no-such-model")


def test_cif_text_of_a_large_batch_is_written_in_processes_in_order(nacl, si, monkeypatch):
    from invdesign.design import candidates

    monkeypatch.setattr(candidates, "PARALLEL_MIN_FILES", 2)
    structures = [nacl, None, si, nacl, si]
    cands = Candidates(structures, pd.DataFrame({"id": list("abcde")}))
    assert cands.cifs(n_jobs=2) == cands.cifs()
    assert cands.cifs()[1] == "" and "Si" in cands.cifs()[2]


def test_candidates_slicing_keeps_rows_and_structures_together(nacl, si):
    cands = Candidates([nacl, si], pd.DataFrame({"id": ["a", "b"]}))
    assert cands[1].row["id"] == "b" and cands[1].structure is si
    assert [c["id"] for c in cands[::-1]] == ["b", "a"]
    with pytest.raises(ValueError, match="2 structures but 1"):
        Candidates([nacl, si], pd.DataFrame({"id": ["a"]}))


def test_domain_needs_as_many_elements_as_the_training_crystals(designer):
    labels = pd.DataFrame({"id": ["a", "b"], "formula": ["NaCl", "NaN"]})  # NaN: sodium nitride
    binary_only = Designer(designer.generator, designer.surrogate, None, labels)
    table = pd.DataFrame({"formula": ["Cu", "KCl", "NaClO3"]})
    for name in designer.surrogate.targets:
        table[name] = 100.0
    assert binary_only.in_domain(table).tolist() == [False, True, False]


@pytest.mark.parametrize(("counts", "expected"), [
    ({11: 1, 17: 1}, True),  # NaCl
    ({19: 1, 11: 1, 7: 3}, False),  # KNaN3: two cations, no anion balance
    ({26: 1}, True),  # a single element
    ({26: 1, 29: 1}, True),  # an all-metal alloy
    ({11: 2, 17: 1}, False),  # Na2Cl
])
def test_charge_balanced(counts, expected):
    assert charge_balanced(counts) is expected


def test_search_expands_squeezed_cells_and_drops_crushed_ones(nacl):
    from invdesign.api import design_ready
    from invdesign.validity import MIN_BOND_RATIO, TYPICAL_BOND_RATIO, min_bond_ratio

    squeezed = nacl.copy()
    squeezed.scale_lattice(nacl.volume * 0.75)
    assert MIN_BOND_RATIO < min_bond_ratio(squeezed) < TYPICAL_BOND_RATIO
    ready = design_ready(squeezed)
    assert min_bond_ratio(ready) == pytest.approx(TYPICAL_BOND_RATIO, rel=1e-6)
    assert design_ready(nacl) is nacl and design_ready(None) is None
    crushed = nacl.copy()
    crushed.scale_lattice(nacl.volume * 0.2)
    assert design_ready(crushed) is None


def test_domain_excludes_chemistry_the_training_data_lacks(designer):
    from tests.test_domain import TRAINING

    labels = pd.DataFrame({"id": [str(i) for i in range(len(TRAINING))], "formula": TRAINING})
    fresh = Designer(designer.generator, designer.surrogate, None, labels)
    assert fresh.domain is not None
    table = pd.DataFrame({"formula": ["Al2O3", "OF2"]})
    for name in designer.surrogate.targets:
        table[name] = 100.0
    assert fresh.in_domain(table).tolist() == [True, False]


def test_a_short_result_says_why(designer, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="invdesign.api"):
        best = designer.optimize("E * alpha", n=500, budget=60, seed=0)
    assert len(best) < 500
    assert f"only {len(best)} of the 500" in caplog.text and "domain" in caplog.text


def test_shipped_carbon24_records_its_datasets_pressure():
    """Carbon-24 was searched at 10 GPa: `sample --relax` relaxes its samples there."""
    assert Generator.load("vae-carbon24").data_pressure == 10.0
    assert Generator.load("vae-perov5").data_pressure == 0.0


def test_search_decodes_one_shot_and_denoises_only_the_shortlist(designer, monkeypatch):
    """Thousands of search decodings skip the denoiser; the shortlist is denoised once per
    ranking and every candidate returned comes out of it."""
    from invdesign.models.denoiser import Denoiser, DenoiserConfig

    generator = designer.generator
    monkeypatch.setattr(generator, "denoiser", Denoiser(DenoiserConfig(
        hidden=8, n_layers=1, n_gaussians=8, k=4, refine_steps=2)))
    decode_flags, denoised = [], []
    decode, denoise = generator.decode, generator.denoise

    def spy_decode(*args, **kwargs):
        decode_flags.append(kwargs.get("denoise"))
        return decode(*args, **kwargs)

    def spy_denoise(structures, **kwargs):
        out = denoise(structures, **kwargs)
        denoised.extend(s for s in out if s is not None)
        return out

    monkeypatch.setattr(generator, "decode", spy_decode)
    monkeypatch.setattr(generator, "denoise", spy_denoise)
    best = designer.optimize("E * alpha", n=3, method="cmaes", budget=60, seed=0)
    assert decode_flags and all(flag is False for flag in decode_flags)
    assert denoised
    for s in best.structures:
        assert any(s.composition == d.composition for d in denoised)


def test_search_decodes_to_the_checkpoints_stoichiometric_patterns(designer, monkeypatch):
    """Where the generator records training patterns, the search's decoded compositions
    keep to them, as `sample` does; otherwise only charge balance is asked."""
    from invdesign.api import _Search
    from invdesign.featurize.stoichiometry import StoichiometryPatterns

    heard = []

    def decode(z, y=None, **kwargs):
        heard.append(kwargs["accept"])
        return [None] * len(z)

    monkeypatch.setattr(designer.generator, "decode", decode)
    z = np.zeros((2, designer.generator.config.latent), np.float32)
    _Search(designer, Scorer.parse("K"), None, None).evaluate(z)
    monkeypatch.setattr(designer.generator, "stoichiometries",
                        StoichiometryPatterns(frozenset({(1,)})))
    assert np.isneginf(_Search(designer, Scorer.parse("K"), None, None).evaluate(z)).all()
    plain, kept = heard
    assert plain({11: 1, 17: 1}) and plain({29: 4})
    assert not kept({11: 1, 17: 1}) and kept({29: 4})
