"""Command line, in process: train a tiny surrogate, predict on the example CIFs, error paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from toy_data import write_toy_dataset
from typer.testing import CliRunner

from invdesign.cli import app
from invdesign.data.examples import REFERENCES

TARGETS = ("bulk_modulus_vrh", "shear_modulus_vrh")
FAST = ["--members", "2", "--epochs", "2", "--workers", "1", "--split", "random"]


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def squeezed(text: str) -> str:
    """Text without whitespace: rich wraps long messages (and paths) at the console width."""
    return re.sub(r"\s+", "", text)


def _train(data: Path, out: Path, *targets: str):
    return invoke("train", "surrogate", "--data", data, "--targets", *targets, "--out", out,
                  *FAST)


@pytest.fixture(scope="module")
def _cache() -> dict:
    return {}


@pytest.fixture
def toy_json(_cache, nacl, cu, si, tmp_path_factory) -> Path:
    if "data" not in _cache:
        _cache["data"] = write_toy_dataset(tmp_path_factory.mktemp("data") / "toy.json",
                                           [nacl, cu, si])
    return _cache["data"]


@pytest.fixture
def model_dir(_cache, toy_json, tmp_path_factory) -> Path:
    """A checkpoint trained by the CLI once per module, targets given as `--targets a b`."""
    if "model" not in _cache:
        out = tmp_path_factory.mktemp("cli") / "model"
        result = _train(toy_json, out, *TARGETS)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["out"] == str(out) and set(summary["test_mae"]) == set(TARGETS)
        _cache["model"] = out
    return _cache["model"]


@pytest.fixture(scope="module")
def example_cifs(tmp_path_factory) -> Path:
    """The reference CIFs, written once per module by `invdesign examples` (write_examples)."""
    out = tmp_path_factory.mktemp("examples") / "ex"
    result = invoke("examples", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("train", "predict", "models", "examples"):
        assert re.search(rf"^\W*{command}\b", result.output, re.M), result.output
    result = invoke("train", "--help")
    assert result.exit_code == 0 and "surrogate" in result.output


def _check_checkpoint(folder: Path) -> None:
    for name in ("weights.pt", "card.json", "learning_curve.png"):
        assert (folder / name).is_file(), f"{name} missing from {sorted(folder.iterdir())}"
    card = json.loads((folder / "card.json").read_text())
    assert card["config"]["targets"] == list(TARGETS)
    assert card["meta"]["run_config"]["n_members"] == 2
    assert card["meta"]["split"]["method"] == "random"
    domain = card["meta"]["domain"]  # the training part's formulas, element counts, ranges
    assert set(domain["formulas"]) <= {"NaCl", "Cu", "Si"} and domain["formulas"]
    assert set(domain["target_ranges"]) == set(TARGETS)


def test_train_with_space_separated_targets(model_dir):
    _check_checkpoint(model_dir)


def test_train_with_comma_separated_targets(toy_json, tmp_path):
    result = _train(toy_json, tmp_path / "model", ",".join(TARGETS))
    assert result.exit_code == 0, result.output
    _check_checkpoint(tmp_path / "model")


def test_predict_writes_one_row_per_cif(model_dir, example_cifs, tmp_path):
    out = tmp_path / "pred" / "predictions.csv"
    result = invoke("predict", "--model", model_dir, "--data", example_cifs, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert sorted(table["id"]) == sorted(p.stem for p in example_cifs.glob("*.cif"))
    assert len(table) == len(REFERENCES)
    for col in ("id", "formula", "bulk_modulus_vrh", "bulk_modulus_vrh_std",
                "shear_modulus_vrh_std", "youngs_modulus", "thermal_expansion"):
        assert col in table.columns, f"{col} not in {list(table.columns)}"
    assert table.set_index("id").loc["NaCl", "formula"] == "NaCl"
    assert (table["bulk_modulus_vrh"] > 0).all() and (table["bulk_modulus_vrh_std"] >= 0).all()
    assert {"in_domain", "domain_note"} <= set(table.columns)


def test_predict_flags_extrapolation_with_the_shipped_surrogate(example_cifs, tmp_path):
    """The shipped surrogate saw MP binaries only: an element is an extrapolation (with the
    reason given), NaCl (in its training part) is not."""
    out = tmp_path / "predictions.csv"
    result = invoke("predict", "--data", example_cifs, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False).set_index("id")
    assert table.loc["NaCl", "in_domain"] and table.loc["NaCl", "domain_note"] == ""
    assert not table.loc["Cu", "in_domain"]
    assert table.loc["Cu", "domain_note"].startswith("1 element (trained on 2)")
    assert "outsidethesurrogate'strainingdomain" in squeezed(result.output)


def test_models_lists_checkpoints(model_dir, monkeypatch):
    monkeypatch.setenv("INVDESIGN_CHECKPOINTS", str(model_dir.parent))
    result = invoke("models")
    assert result.exit_code == 0, result.output
    assert model_dir.name in result.output and "bulk_modulus_vrh" in result.output


def test_examples_writes_cifs_and_reference_values(example_cifs):
    assert sorted(p.stem for p in example_cifs.glob("*.cif")) == sorted(r.name for r in REFERENCES)
    table = pd.read_csv(example_cifs / "properties.csv").set_index("id")
    assert table.loc["NaCl", "bulk_modulus_exp"] == 24


def test_train_missing_data_file_exits_2_naming_it(tmp_path):
    missing = tmp_path / "no_such_data.json"
    result = _train(missing, tmp_path / "model", *TARGETS)
    assert result.exit_code == 2, result.output
    assert squeezed(str(missing)) in squeezed(result.output)
    assert not (tmp_path / "model").exists()


def test_predict_missing_data_exits_2_naming_it(model_dir, tmp_path):
    missing = tmp_path / "no_such_folder"
    result = invoke("predict", "--model", model_dir, "--data", missing,
                    "--out", tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert squeezed(str(missing)) in squeezed(result.output)
    assert not (tmp_path / "p.csv").exists()


def test_predict_unknown_model_exits_2_naming_it(example_cifs, tmp_path):
    result = invoke("predict", "--model", "no-such-model", "--data", example_cifs,
                    "--out", tmp_path / "p.csv")
    assert result.exit_code == 2, result.output
    assert "no-such-model" in result.output and "shippedcheckpoints" in squeezed(result.output)


def test_train_unknown_split_exits_2(toy_json, tmp_path):
    result = invoke("train", "surrogate", "--data", toy_json, "--targets", *TARGETS,
                    "--out", tmp_path / "model", "--split", "bogus")
    assert result.exit_code == 2, result.output
    assert "bogus" in result.output
    assert not (tmp_path / "model").exists()


def test_train_with_an_oracle_label_table_learns_alpha_oracle(toy_json, tmp_path):
    ids = [r["mp_id"] for r in json.loads(toy_json.read_text())]
    labels = tmp_path / "labels.csv"
    labels.write_text("id,alpha_300K,status\n" + "".join(
        f"{i},{2e-5 + 1e-6 * k},ok\n" for k, i in enumerate(ids)) + "x,3e-5,failed: unstable\n")
    result = invoke("train", "surrogate", "--data", toy_json, "--targets", *TARGETS,
                    "thermal_expansion_oracle", "--labels", labels, "--out", tmp_path / "m",
                    *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert "thermal_expansion_oracle" in summary["test_mae"]
    missing = invoke("train", "surrogate", "--data", toy_json, "--targets", *TARGETS,
                     "--labels", tmp_path / "none.csv", "--out", tmp_path / "m2", *FAST)
    assert missing.exit_code == 2 and "none.csv" in squeezed(missing.output)


def _write_overlapping_cif(folder: Path) -> None:
    from pymatgen.core import Lattice, Structure

    bad = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    bad.to(filename=str(folder / "overlap.cif"))


def test_validate_counts_rejected_rows_as_invalid(example_cifs, tmp_path):
    import shutil

    folder = tmp_path / "samples"
    shutil.copytree(example_cifs, folder)
    (folder / "properties.csv").unlink()
    _write_overlapping_cif(folder)
    out = tmp_path / "validity.csv"
    result = invoke("validate", "--data", folder, "--out", out, "--reference", example_cifs)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    n = len(REFERENCES) + 1  # the reference crystals + the overlapping one
    assert len(table) == n
    bad = table[table["id"].astype(str).str.contains("overlap")]
    assert len(bad) == 1 and not bool(bad["valid"].iloc[0])
    assert "too close" in bad["reason"].iloc[0]
    rates = json.loads(result.stdout.strip().splitlines()[-1])
    assert rates["n"] == n and rates["struct_valid"] == pytest.approx((n - 1) / n)
    assert not table.loc[table["id"] == "NaCl", "novel"].astype(bool).any()  # in the reference


def test_evaluate_generation_prints_metrics_json(example_cifs, tmp_path):
    pytest.importorskip("matminer", reason="CDVAE COV fingerprints need matminer")
    import shutil

    folder = tmp_path / "samples"
    shutil.copytree(example_cifs, folder)
    (folder / "properties.csv").unlink()
    _write_overlapping_cif(folder)
    result = invoke("evaluate", "generation", "--samples", folder, "--reference", example_cifs,
                    "--dataset", "mp_20")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    n = len(REFERENCES) + 1
    assert metrics["struct_valid"] == pytest.approx((n - 1) / n)  # the rejected sample counts
    assert metrics["cov_r"] == pytest.approx(1.0)
    assert metrics["emd_density"] == pytest.approx(0.0, abs=1e-9)
    bad = invoke("evaluate", "generation", "--samples", folder, "--reference", example_cifs,
                 "--dataset", "nope")
    assert bad.exit_code == 2 and "nope" in bad.output


def test_verify_writes_calibrated_moduli_when_a_calibration_is_given(tmp_path, cu):
    from invdesign.oracle import Calibration

    folder = tmp_path / "cifs"
    folder.mkdir()
    cu.to(filename=str(folder / "cu.cif"))
    rng = np.random.default_rng(0)
    raw = {"K_vrh": rng.uniform(20, 200, 10), "G_vrh": rng.uniform(10, 100, 10)}
    cal = Calibration.fit(raw, {m: 1.5 * v for m, v in raw.items()}, calculator="emt",
                          fit_split="synthetic", covariates={})
    cal_path = cal.save(tmp_path / "emt.json")
    out = tmp_path / "verify.csv"
    args = ("verify", "--candidates", folder, "--out", out, "--calculator", "emt",
            "--no-thermal")
    plain = invoke(*args)  # no calibration ships for EMT
    assert plain.exit_code == 0, plain.output
    assert out.exists() and not out.with_suffix(".calibrated.csv").exists()
    result = invoke(*args, "--calibration", cal_path)  # resumes: Cu is not computed again
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out.with_suffix(".calibrated.csv"))
    assert table["status"].tolist() == ["ok"]
    np.testing.assert_allclose(table["K_vrh_calibrated"], 1.5 * table["K_vrh"], rtol=1e-6)
    np.testing.assert_allclose(table["G_vrh_calibrated"], 1.5 * table["G_vrh"], rtol=1e-6)

    missing = invoke(*args, "--calibration", tmp_path / "none.json")
    assert missing.exit_code != 0 and "none.json" in squeezed(missing.output)


def test_training_progress_logs_plain_lines_when_not_on_a_terminal(capsys):
    from invdesign.cli import training_progress

    with training_progress(40) as report:
        for done in range(1, 41):
            report(done, f"val loss {1 / done:.3f}")
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(lines) == 20
    assert lines[-1].startswith("training 40/40") and lines[-1].endswith("val loss 0.025")


def test_verify_with_phonon_qha_and_a_clear_error_for_an_unknown_method(tmp_path, cu):
    folder = tmp_path / "cifs"
    folder.mkdir()
    cu.to(filename=str(folder / "cu.cif"))
    out = tmp_path / "verify.csv"
    args = ("verify", "--candidates", folder, "--out", out, "--calculator", "emt")
    result = invoke(*args, "--thermal-method", "phonon-qha")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok" and 10e-6 < row["alpha_300K"] < 30e-6
    assert np.isnan(row["eos_V0"])  # phonon QHA fits no AGL equation of state
    bad = invoke(*args, "--thermal-method", "phonons")
    assert bad.exit_code == 2 and "thermal_method" in bad.output


def test_train_with_bond_angles_round_trips_through_predict(toy_json, tmp_path):
    out = tmp_path / "angular"
    result = invoke("train", "surrogate", "--data", toy_json, "--targets", *TARGETS,
                    "--angular", "6", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "card.json").read_text())["config"]["graph"]["angular"] == 6
    predicted = invoke("predict", "--model", out, "--data", toy_json, "--out", tmp_path / "p.csv")
    assert predicted.exit_code == 0, predicted.output
    rows = (tmp_path / "p.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(json.loads(toy_json.read_text()))
    bad = invoke("train", "surrogate", "--data", toy_json, "--targets", *TARGETS,
                 "--angular", "1", "--out", tmp_path / "bad", *FAST)
    assert bad.exit_code == 2 and "--angular" in bad.output


def test_top_table_fits_80_columns_with_and_without_the_physics_screen(tmp_path):
    import pandas as pd
    from rich.console import Console

    from invdesign.cli import _top_table

    rows = {"rank": range(1, 11), "id": [f"opt-{i:05d}" for i in range(10)],
            "formula": ["B2Ru"] * 10, "objective": [0.00349] * 10,
            "objective_std": [4.2e-05] * 10, "bulk_modulus_vrh": [157.0] * 10,
            "shear_modulus_vrh": [180.0] * 10, "thermal_expansion": [1.7e-05] * 10}
    screened = {**rows, "e_above_hull": [-0.108] * 10, "passed": [True] * 9 + [False]}
    for columns in (rows, screened):
        console = Console(width=80, record=True)
        console.print(_top_table(pd.DataFrame(columns), tmp_path / "candidates"))
        text = console.export_text()
        assert "…" not in text and "B2Ru" in text and "0.00349" in text
    assert text.count(" yes ") == 9 and text.count(" no ") == 1 and "-0.108" in text
