"""Surrogate end to end: train a tiny ensemble, save, reload, predict; shipped checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from toy_data import write_toy_dataset

import invdesign
from invdesign.data.examples import REFERENCES, reference_structures
from invdesign.models.checkpoint import load_checkpoint
from invdesign.surrogate import (
    KIND,
    Surrogate,
    checkpoints_dir,
    is_log_target,
    resolve_checkpoint,
)
from invdesign.train.ensemble import ArchitectureConfig
from invdesign.train.pipeline import RunResult, SurrogateRunConfig, save_run, train_surrogate
from invdesign.train.surrogate import TrainConfig

TARGETS = ("bulk_modulus_vrh", "shear_modulus_vrh")
DERIVED = ("youngs_modulus", "hardness_chen", "fracture_toughness", "thermal_expansion",
           "debye_temperature")
TINY = SurrogateRunConfig(
    targets=TARGETS, n_members=2, workers=1, split="random", fractions=(0.6, 0.2, 0.2), seed=0,
    train=TrainConfig(epochs=3, batch_size=4),
    architecture=ArchitectureConfig(hidden=8, n_conv=1, n_gaussians=8, head_hidden=8))
SHIPPED_DIR = checkpoints_dir()  # the repository's checkpoints/ unless $INVDESIGN_CHECKPOINTS
SHIPPED = sorted(p.parent for p in SHIPPED_DIR.glob("*/card.json"))
NO_SHIPPED = pytest.mark.skip(reason=f"no shipped checkpoint under {SHIPPED_DIR} yet")


@pytest.fixture(scope="module")
def _runs() -> dict:
    return {}


@pytest.fixture
def trained(_runs, nacl, cu, si, tmp_path_factory) -> tuple[RunResult, Path, Path, list]:
    """(run, data file, saved model folder, prototypes), trained once per module."""
    if not _runs:
        folder = tmp_path_factory.mktemp("surrogate")
        data = write_toy_dataset(folder / "toy.json", [nacl, cu, si])
        run = train_surrogate(data, TINY)
        _runs["run"] = (run, data, save_run(run, folder / "model"), [nacl, cu, si])
    return _runs["run"]


def _check_prediction_table(table: pd.DataFrame, ids: list[str], targets) -> None:
    assert list(table["id"]) == ids
    for name in targets:
        values, std = table[name].to_numpy(float), table[f"{name}_std"].to_numpy(float)
        assert np.isfinite(values).all(), f"{name}: {values}"
        assert np.isfinite(std).all() and (std >= 0).all(), f"{name}_std: {std}"
        if is_log_target(name):
            assert (values > 0).all(), f"{name} must be positive, got {values}"


def test_predict_gives_targets_spread_and_derived_columns(trained):
    run, _, _, prototypes = trained
    table = run.surrogate.predict(prototypes, ["NaCl", "Cu", "Si"])
    assert len(table) == 3
    _check_prediction_table(table, ["NaCl", "Cu", "Si"], TARGETS)
    for name in DERIVED:
        assert name in table and f"{name}_std" in table, f"missing derived column {name}"
        assert np.isfinite(table[name].to_numpy(float)).all(), f"{name}: {table[name]}"
        std = table[f"{name}_std"].to_numpy(float)
        assert (np.isfinite(std) & (std >= 0)).all(), f"{name}_std: {std}"
    assert list(run.surrogate.predict(prototypes)["id"]) == ["0", "1", "2"]
    assert "youngs_modulus" not in run.surrogate.predict(prototypes, derived=False)


def test_an_unsupported_element_gets_a_nan_row_not_a_crash(trained):
    from pymatgen.core import Lattice, Structure

    run, _, _, prototypes = trained
    heavy = Structure(Lattice.cubic(4.0), ["Og", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = run.surrogate.predict([heavy, *prototypes], ["OgNa", "NaCl", "Cu", "Si"])
    assert table["id"].tolist() == ["OgNa", "NaCl", "Cu", "Si"]
    assert table.loc[0, list(TARGETS)].isna().all()
    reference = run.surrogate.predict(prototypes, ["NaCl", "Cu", "Si"])
    np.testing.assert_allclose(table.loc[1:, list(TARGETS)].to_numpy(float),
                               reference[list(TARGETS)].to_numpy(float))


def test_predictions_identical_after_reload(trained):
    run, _, model_dir, prototypes = trained
    loaded = Surrogate.load(model_dir)
    assert loaded.targets == list(TARGETS) and loaded.n_members == 2
    assert loaded.graph_config == run.surrogate.graph_config
    assert loaded.model_config == run.surrogate.model_config
    pd.testing.assert_frame_equal(loaded.predict(prototypes), run.surrogate.predict(prototypes),
                                  check_exact=True)


def test_card_records_split_metrics_and_provenance(trained):
    run, data, model_dir, _ = trained
    card = json.loads((model_dir / "card.json").read_text())
    assert card["kind"] == KIND and card["format"] == 1
    assert list(card["config"]["targets"]) == list(TARGETS)
    meta = card["meta"]
    assert meta["version"] == invdesign.__version__
    assert meta["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert meta["data"]["n_records"] == 12  # the record without a shear modulus is kept
    split = meta["split"]
    assert split["method"] == "random" and split["sizes"] == [7, 3, 2]
    parts = [set(split[k]) for k in ("train", "val", "test")]
    assert set.union(*parts) == set(range(12)) and sum(map(len, parts)) == 12
    assert meta["run_config"]["n_members"] == 2
    metrics = meta["metrics"]
    assert metrics["test"]["n"] == 2
    for name in TARGETS:
        assert np.isfinite(metrics["test"][name]["mae"]) and metrics["test"][name]["mae"] >= 0
        assert metrics["test"][name]["mae"] == run.metrics["test"][name]["mae"]
        assert len(metrics["test"][name]["member_mae"]) == 2
        assert np.isfinite(metrics["knn_baseline_test_mae"][name])
    png = model_dir / "learning_curve.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resolve_checkpoint_by_path_name_and_unknown_name(tmp_path, monkeypatch):
    for name in ("beta", "alpha"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    monkeypatch.setenv("INVDESIGN_CHECKPOINTS", str(tmp_path))
    assert resolve_checkpoint("alpha") == tmp_path / "alpha"
    assert resolve_checkpoint(tmp_path / "beta") == tmp_path / "beta"
    with pytest.raises(FileNotFoundError, match=r"'no-such-model'.*shipped checkpoints: alpha, "
                                                r"beta$"):
        resolve_checkpoint("no-such-model")
    monkeypatch.setenv("INVDESIGN_CHECKPOINTS", str(tmp_path / "alpha"))
    with pytest.raises(FileNotFoundError, match="shipped checkpoints: none"):
        Surrogate.load("no-such-model")


@pytest.fixture(scope="module")
def references() -> dict:
    return reference_structures()


@pytest.mark.parametrize("folder", SHIPPED or [pytest.param(None, marks=NO_SHIPPED)],
                         ids=lambda p: p.name if p else "none")
def test_every_shipped_checkpoint_loads_and_predicts(folder, references):
    card = json.loads((folder / "card.json").read_text())
    payload = load_checkpoint(folder)  # weights_only=True
    assert payload["kind"] == card["kind"] and payload["config"] == card["config"]
    assert payload["meta"]["version"] == card["meta"]["version"]
    if card["kind"] != KIND:
        return  # not a property surrogate: loading with weights_only is the check
    surrogate = Surrogate.load(folder.name)
    table = surrogate.predict(list(references.values()), list(references))
    _check_prediction_table(table, list(references), surrogate.targets)
    for name in surrogate.targets:
        if "modulus" in name:
            assert (table[name] > 0).all(), f"{folder.name}: {name} = {table[name].tolist()}"


@pytest.mark.skipif(not (SHIPPED_DIR / "surrogate-elastic" / "card.json").is_file(),
                    reason=f"no shipped surrogate-elastic under {SHIPPED_DIR} yet")
def test_surrogate_elastic_bulk_moduli_near_experiment(references):
    table = Surrogate.load("surrogate-elastic").predict(list(references.values()),
                                                        list(references))
    K = dict(zip(table["id"], table["bulk_modulus_vrh"], strict=True))
    report = {r.name: (round(K[r.name], 1), r.bulk_modulus) for r in REFERENCES}  # (pred, exp)
    assert K["C-diamond"] > K["MgO"] > K["NaCl"], f"K ranking wrong: {report}"
    for ref in REFERENCES:
        if ref.name in ("C-diamond", "MgO", "Si", "NaCl"):
            ratio = K[ref.name] / ref.bulk_modulus
            assert 1 / 1.6 <= ratio <= 1.6, f"{ref.name}: K {K[ref.name]:.1f} GPa vs " \
                                             f"{ref.bulk_modulus} GPa; all: {report}"


def test_subsample_train_keeps_val_and_test():
    from invdesign.data.splits import random_split
    from invdesign.train.pipeline import subsample_train

    split = random_split(100, (0.8, 0.1, 0.1), seed=0)
    quarter = subsample_train(split, 0.25, seed=3)
    assert len(quarter.train) == 20 and set(quarter.train) <= set(split.train)
    assert np.array_equal(quarter.val, split.val) and np.array_equal(quarter.test, split.test)
    assert np.array_equal(subsample_train(split, 0.25, seed=3).train, quarter.train)
    assert subsample_train(split, 1.0, seed=3) is split
    with pytest.raises(ValueError, match="train_fraction"):
        subsample_train(split, 0.0, seed=3)
