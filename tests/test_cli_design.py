"""Command line for generation: train vae, sample, evaluate reconstruction, generate."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_cli import invoke, squeezed
from toy_data import write_toy_dataset

CONDITIONS = "bulk_modulus_vrh,shear_modulus_vrh"


@pytest.fixture(scope="module")
def _cache() -> dict:
    return {}


@pytest.fixture
def models(_cache, nacl, cu, si, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(data, vae folder, surrogate folder), trained by the CLI once per module."""
    if not _cache:
        root = tmp_path_factory.mktemp("cli-design")
        data = write_toy_dataset(root / "toy.json", [nacl, cu, si])
        surrogate = root / "surrogate"
        result = invoke("train", "surrogate", "--data", data, "--targets", CONDITIONS,
                        "--out", surrogate, "--members", "2", "--epochs", "2", "--workers",
                        "1", "--split", "random")
        assert result.exit_code == 0, result.output
        vae = root / "vae"
        result = invoke("train", "vae", "--data", data, "--conditions", CONDITIONS,
                        "--epochs", "3", "--latent", "8", "--surrogate", str(surrogate),
                        "--pressure", "1.5", "--out", vae)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["out"] == str(vae) and 0 <= summary["match_rate"] <= 1
        _cache["m"] = (data, vae, surrogate)
    return _cache["m"]


def test_train_vae_writes_checkpoint_reference_and_curve(models):
    _, vae, surrogate = models
    for name in ("weights.pt", "card.json", "learning_curve.png", "reference.npz",
                 "reference_properties.csv"):
        assert (vae / name).is_file(), name
    card = json.loads((vae / "card.json").read_text())
    assert card["config"]["conditions"] == CONDITIONS.split(",")
    assert card["meta"]["data"]["pressure_gpa"] == 1.5
    assert card["meta"]["surrogate"] == str(surrogate)
    assert "test_reconstruction" in card["meta"]["metrics"]


def test_sample_writes_table_and_cifs(models, tmp_path):
    _, vae, surrogate = models
    out = tmp_path / "samples"
    result = invoke("sample", "--model", vae, "-n", "10", "--condition", "K=60",
                    "--surrogate", surrogate, "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "candidates.csv")
    assert len(table) == 10
    for col in ("id", "formula", "n_atoms", "valid", "unique", "novel",
                "requested_bulk_modulus_vrh"):
        assert col in table
    assert len(list((out / "cifs").glob("*.cif"))) == int(table["decoded"].sum())
    for stage in ("validity", "uniqueness", "novelty"):  # a line when each stage ends
        assert f"{stage} 10/10" in result.output


def test_sample_relax_relaxes_rechecks_and_resumes(models, tmp_path):
    """`sample --relax` (EMT: offline; it knows Cu but not Na or Cl, so some relaxations fail
    with a status): every decoded sample is relaxed once, at the pressure the card records
    (1.5 GPa, `train vae --pressure`); a rerun relaxes nothing again."""
    _, vae, _ = models
    out = tmp_path / "relaxed"
    args = ("sample", "--model", vae, "-n", "4", "--relax", "--relax-calculator", "emt",
            "--jobs", "1", "--out", out)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "candidates.csv")
    assert len(table) == 4 and {"relax_status", "relax_rmsd", "energy_per_atom"} <= set(table)
    decoded = table["decoded"].to_numpy(bool)
    assert (table.loc[~decoded, "relax_status"] == "not decoded").all()
    assert table.loc[decoded, "relax_status"].str.match(r"ok$|failed: ").all()
    cache = out / "relaxations.csv"
    assert len(pd.read_csv(cache)) == decoded.sum()
    assert invoke(*args, "--pressure", "1.5").exit_code == 0  # the card's pressure: cached
    assert len(pd.read_csv(cache)) == decoded.sum()
    bad = invoke("sample", "--model", vae, "-n", "2", "--relax", "--relax-calculator", "lj",
                 "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "unknowncalculator'lj'" in squeezed(bad.output)


def test_evaluate_reconstruction_prints_json_last(models):
    data, vae, _ = models
    result = invoke("evaluate", "reconstruction", "--model", vae, "--data", data)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"match_rate", "rmse", "n"} <= set(metrics) and metrics["n"] == 12


def test_generate_ranks_candidates_and_draws_ashby(models, tmp_path):
    _, vae, surrogate = models
    out = tmp_path / "gen"
    result = invoke("generate", "--model", vae, "--surrogate", surrogate, "--objective",
                    "E * alpha", "-n", "5", "--budget", "120", "--out", out)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "candidates.csv")
    assert len(table) <= 5
    if len(table):
        assert table["valid"].all() and table["novel"].all()
        assert (out / "ashby.png").is_file()


def test_generate_relax_screens_and_keeps_its_relaxations(models, tmp_path):
    """`--relax` with EMT (offline; no hull ships for it, so stability is not checked)."""
    _, vae, surrogate = models
    out = tmp_path / "gen"
    result = invoke("generate", "--model", vae, "--surrogate", surrogate, "--objective",
                    "E * alpha", "-n", "3", "--budget", "120", "--relax", "--relax-calculator",
                    "emt", "--out", out)
    assert result.exit_code == 0, result.output
    assert "noconvexhullshipsforemt" in squeezed(result.output)
    table = pd.read_csv(out / "candidates.csv")
    if len(table):
        assert {"relax_status", "relax_rmsd", "objective_decoded", "e_above_hull",
                "passed"} <= set(table.columns)
        assert table["rank"].tolist() == list(range(1, len(table) + 1))
        assert len(pd.read_csv(out / "relaxations.csv")) == len(table)
        passed = table["passed"].to_numpy(bool)
        assert not (passed[1:] & ~passed[:-1]).any()  # passing candidates first


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "--objective", "E * wobble"], "wobble"),
    (["generate", "--objective", "E *"], "objective"),
    (["generate", "--elements", "Au,Pt"], "vocabulary"),
    (["sample", "--condition", "K"], "NAME=VALUE"),
    (["sample", "--condition", "band_gap=2"], "band_gap"),
    (["sample", "--refine-passes", "2"], "needsadenoiser"),
    (["sample", "--keep-cell"], "refine_cellneedsadenoiser"),
    (["generate", "--keep-cell"], "refine_cellneedsadenoiser"),
    (["sample", "--known-stoichiometry"], "nostoichiometricpatterns"),
    (["sample", "--best-of", "0"], "best_ofmustbe>=1"),
])
def test_bad_requests_exit_with_a_clear_message(models, tmp_path, args, message):
    _, vae, surrogate = models
    result = invoke(*args, "--model", vae, "--surrogate", surrogate, "--out", tmp_path / "x")
    assert result.exit_code == 2, result.output
    assert message in squeezed(result.output)


def test_missing_checkpoint_is_reported(tmp_path):
    result = invoke("generate", "--model", tmp_path / "nope", "--out", tmp_path / "x")
    assert result.exit_code == 2 and "nocheckpointfolder" in squeezed(result.output)


def test_verify_top_runs_the_oracle_on_the_best_candidates(cu, nacl, tmp_path):
    """`generate --verify N`: the first N ranked candidates go through the oracle (EMT here:
    fast and offline); no calibration ships for EMT, so no calibrated table."""
    from invdesign.cli import _verify_top
    from invdesign.design.candidates import Candidates

    best = Candidates([cu, nacl], pd.DataFrame({"id": ["opt-00000", "opt-00001"]}))
    results = tmp_path / "verified.csv"
    _verify_top(best, 1, results, workers=1, calculator="emt")
    table = pd.read_csv(results)
    assert table["id"].tolist() == ["opt-00000"]
    assert table["status"].iloc[0] == "ok" and table["K_vrh"].iloc[0] > 0
    assert not (tmp_path / "verified.calibrated.csv").exists()
    assert [p.name for p in (tmp_path / "verified_relaxed").iterdir()] == ["opt-00000.cif"]


def test_comparison_shows_calibrated_oracle_values_and_hides_failures(capsys, monkeypatch):
    from invdesign.cli import _print_comparison

    monkeypatch.setenv("COLUMNS", "200")
    predicted = pd.DataFrame({"id": ["a", "b"], "rank": [1, 2], "formula": ["Cu", "Fe"],
                              "bulk_modulus_vrh": [140.0, 170.0],
                              "shear_modulus_vrh": [45.0, 80.0],
                              "thermal_expansion": [1.6e-5, 1.2e-5]})
    oracle = pd.DataFrame({"id": ["a", "b"], "formula": ["Cu", "Fe"],
                           "status": ["ok", "failed: mechanically unstable (lowest -2 GPa)"],
                           "K_vrh": [130.0, 110.0], "K_vrh_calibrated": [137.0, 118.0],
                           "G_vrh": [30.0, -5.0], "alpha_300K": [2.2e-5, float("nan")],
                           "alpha_300K_calibrated": [1.5e-5, float("nan")],
                           "e_above_hull": [0.034, 0.21]})
    _print_comparison(predicted, oracle)
    lines = [line.split("│")[1:-1] for line in capsys.readouterr().out.splitlines()
             if line.startswith("│")]
    cells = [[c.strip() for c in line] for line in lines]
    assert cells[0] == ["1", "Cu", "ok", "140", "137", "45", "30", "16.0", "15.0", "+0.03"]
    assert cells[1][2:] == ["failed: mechanically unstable", "170", "-", "80", "-", "12.0", "-",
                            "+0.21"]


def test_verify_writes_calibrated_moduli_and_the_energy_above_the_hull(tmp_path, monkeypatch):
    from invdesign import cli
    from invdesign.oracle import CSV_COLUMNS
    from invdesign.oracle.stability import Hull

    row = dict.fromkeys(CSV_COLUMNS, float("nan")) | {
        "id": "x", "formula": "CuAl2", "K_vrh": 100.0, "G_vrh": 40.0, "E": 106.0,
        "energy_per_atom": -0.5, "status": "ok", "mechanically_stable": True, "seconds": 1.0}
    results = tmp_path / "verified.csv"
    pd.DataFrame([row], columns=list(CSV_COLUMNS)).to_csv(results, index=False)
    monkeypatch.setattr(cli, "_shipped_hull",
                        lambda calculator: Hull(["Cu", "Al", "CuAl"], [0.0, 0.0, -1.0]))
    table = cli._write_derived(results, "chgnet", cli._shipped_calibration("chgnet"))
    written = pd.read_csv(tmp_path / "verified.calibrated.csv")
    assert written["e_above_hull"].iloc[0] == pytest.approx(1 / 6)
    assert written["decomposition"].iloc[0] == "Al + AlCu"
    assert written["G_vrh_calibrated"].iloc[0] > 40.0  # CHGNet's soft G stiffened
    assert list(table.columns) == list(written.columns)
    monkeypatch.setattr(cli, "_shipped_hull", lambda calculator: None)
    assert cli._write_derived(results, "emt", None) is None


def test_verify_top_with_a_derived_table_prints_the_calibrated_comparison(cu, tmp_path,
                                                                          monkeypatch, capsys):
    """`generate --verify` when a calibration and a hull ship (here: faked for EMT)."""
    from invdesign import cli
    from invdesign.design.candidates import Candidates
    from invdesign.oracle.stability import Hull

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(cli, "_shipped_calibration", lambda calculator: _chgnet_calibration())
    monkeypatch.setattr(cli, "_shipped_hull", lambda calculator: Hull(["Cu"], [0.0]))
    best = Candidates([cu], pd.DataFrame({"id": ["opt-00000"], "rank": [1], "formula": ["Cu"],
                                          "bulk_modulus_vrh": [140.0],
                                          "e_above_hull": [0.5]}))  # as after --relax
    cli._verify_top(best, 1, tmp_path / "verified.csv", workers=1, calculator="emt")
    table = pd.read_csv(tmp_path / "verified.calibrated.csv")
    assert table["e_above_hull"].iloc[0] == pytest.approx(0.0, abs=0.02)  # EMT's fcc Cu
    rows = [cells for line in capsys.readouterr().out.splitlines() if line.startswith("│")
            and len(cells := line.split("│")[1:-1]) == 10]  # the comparison table's rows
    assert abs(float(rows[0][-1])) <= 0.02  # the oracle's value, not the screen's 0.5


def _chgnet_calibration():
    from invdesign.surrogate import checkpoints_dir

    return checkpoints_dir() / "oracle-calibration" / "chgnet.json"


def test_sample_resumes_after_an_interrupted_check(models, tmp_path, monkeypatch):
    """The drawn samples are saved before the checks: a run that dies in them leaves
    samples.npz, the same command resumes from it (same table as an uninterrupted run), a
    finished run removes it, and other arguments draw afresh."""
    from invdesign.api import Designer

    _, vae, _ = models
    args = ("sample", "--model", vae, "-n", "6", "--seed", "3", "--no-files")
    reference = invoke(*args, "--out", tmp_path / "whole")
    assert reference.exit_code == 0, reference.output
    assert not (tmp_path / "whole" / "samples.npz").exists()

    def crash(*_args, **_kwargs):
        raise RuntimeError("interrupted")

    with monkeypatch.context() as patch:
        patch.setattr(Designer, "assess_samples", crash)
        failed = invoke(*args, "--out", tmp_path / "resumed")
    assert failed.exit_code != 0 and (tmp_path / "resumed" / "samples.npz").is_file()
    checked = invoke("validate", "--data", tmp_path / "resumed" / "samples.npz", "--reference",
                     vae / "reference.npz", "--out", tmp_path / "flags.csv")
    assert checked.exit_code == 0, checked.output  # every command reads the saved samples
    flags = pd.read_csv(tmp_path / "flags.csv")  # rows the loader rejects keep their label
    ids = flags["id"].str.extract(r"(sample-\d{5})", expand=False)
    whole = pd.read_csv(tmp_path / "whole" / "candidates.csv").set_index("id")
    assert ids.notna().all() and len(flags) == whole["decoded"].sum()
    assert (flags["valid"].to_numpy() == whole.loc[ids, "valid"].to_numpy()).all()
    def ctrl_c(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Designer, "assess_samples", ctrl_c)
        stopped = invoke(*args, "--out", tmp_path / "resumed")
    assert stopped.exit_code == 130 and "thesamecommandresumes" in squeezed(stopped.output)
    monkeypatch.setattr(Designer, "draw", crash)  # a resumed run must not draw again
    resumed = invoke(*args, "--out", tmp_path / "resumed")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    assert not (tmp_path / "resumed" / "samples.npz").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "resumed" / "candidates.csv"),
                                  pd.read_csv(tmp_path / "whole" / "candidates.csv"))
    (tmp_path / "resumed" / "samples.npz").write_bytes(b"")  # stale files of another run
    other = invoke("sample", "--model", vae, "-n", "6", "--seed", "4", "--no-files",
                   "--out", tmp_path / "resumed")
    assert other.exit_code != 0 and "interrupted" in str(other.exception)  # drew afresh
