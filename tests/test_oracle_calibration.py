"""Oracle calibration (log-log linear map to DFT), agreement metrics and the pure helpers of
scripts/benchmark_oracle.py, on synthetic data (no potential is run)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from ase.units import GPa

from invdesign.oracle import Calibration, LogLinearFit, agreement
from invdesign.oracle.calibration import calibrated_results
from invdesign.oracle.thermal import BirchMurnaghan, debye_gruneisen
from invdesign.properties.derived import poisson_ratio

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_oracle.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """scripts/benchmark_oracle.py imported as a module."""
    spec = importlib.util.spec_from_file_location("benchmark_oracle", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _linear_log(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return 10.0 ** (slope * np.log10(x) + intercept)


def _synthetic(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k, g = 10 ** rng.uniform(0.8, 2.5, n), 10 ** rng.uniform(0.3, 2.2, n)
    return {"K_vrh": k, "G_vrh": g}


def test_fit_recovers_known_log_linear_map():
    oracle = _synthetic()
    dft = {"K_vrh": _linear_log(oracle["K_vrh"], 0.95, 0.08),
           "G_vrh": _linear_log(oracle["G_vrh"], 0.8, 0.35)}
    cal = Calibration.fit(oracle, dft, calculator="chgnet", fit_split="train")
    assert cal.moduli == ("K_vrh", "G_vrh")
    assert cal["K_vrh"].slope == pytest.approx(0.95, abs=1e-9)
    assert cal["K_vrh"].intercept == pytest.approx(0.08, abs=1e-9)
    assert cal["G_vrh"].slope == pytest.approx(0.8, abs=1e-9)
    assert cal["G_vrh"].intercept == pytest.approx(0.35, abs=1e-9)
    assert cal["G_vrh"].covariate_slope == pytest.approx(0.0, abs=1e-9)  # K plays no part
    assert cal["G_vrh"].n_pairs == 40 and cal["G_vrh"].rmse_log10 < 1e-9
    np.testing.assert_allclose(cal.apply(oracle["G_vrh"], "G_vrh", oracle["K_vrh"]),
                               dft["G_vrh"], rtol=1e-9)
    with pytest.raises(KeyError, match="no calibration for 'E'"):
        cal.apply([1.0], "E")


def test_fit_with_noise_is_close():
    rng = np.random.default_rng(3)
    x = 10 ** rng.uniform(0.5, 2.5, 200)
    y = _linear_log(x, 1.1, -0.2) * 10 ** rng.normal(0, 0.02, 200)
    fit = LogLinearFit.fit("G_vrh", x, y)
    assert fit.slope == pytest.approx(1.1, abs=0.02)
    assert fit.intercept == pytest.approx(-0.2, abs=0.04)
    assert fit.rmse_log10 == pytest.approx(0.02, abs=0.005)


def test_fit_ignores_non_finite_and_non_positive_pairs():
    x = 10 ** np.linspace(0.5, 2.5, 10)
    y = _linear_log(x, 0.9, 0.1)
    junk_x = np.array([np.nan, 10.0, -3.0, 0.0, np.inf, 20.0])
    junk_y = np.array([30.0, np.nan, 15.0, 12.0, 40.0, -1.0])
    fit = LogLinearFit.fit("K_vrh", np.r_[x, junk_x], np.r_[y, junk_y])
    assert fit.n_pairs == 10
    assert fit.slope == pytest.approx(0.9) and fit.intercept == pytest.approx(0.1)


def test_fit_needs_five_pairs():
    x = np.array([10.0, 20.0, 40.0, 80.0, np.nan, -1.0])
    with pytest.raises(ValueError, match=r"at least 5 pairs.*got 4"):
        LogLinearFit.fit("G_vrh", x, x)
    good = {"K_vrh": 10 ** np.linspace(1, 2, 8), "G_vrh": np.r_[x, 1.0, 2.0]}
    with pytest.raises(ValueError, match=r"G_vrh needs at least 5 pairs.*got 0"):
        Calibration.fit(good, {"K_vrh": good["K_vrh"], "G_vrh": np.full(8, np.nan)},
                        calculator="emt", fit_split="x")
    with pytest.raises(ValueError, match="all 6 oracle values are equal"):
        LogLinearFit.fit("K_vrh", np.full(6, 50.0), np.arange(1.0, 7.0))


def test_apply_keeps_nan_and_rejects_non_positive():
    fit = LogLinearFit(modulus="G_vrh", slope=1.0, intercept=0.5, n_pairs=9, rmse_log10=0.0)
    out = fit.apply([np.nan, 10.0, -2.0, 0.0, np.inf])
    assert out.shape == (5,)
    assert np.isnan(out[[0, 2, 3, 4]]).all()
    assert out[1] == pytest.approx(10 * 10**0.5)
    assert fit.apply(np.array([[1.0, np.nan]])).shape == (1, 2)


def test_json_round_trip(tmp_path):
    oracle = _synthetic(12)
    dft = {m: _linear_log(v, 0.9, 0.1) for m, v in oracle.items()}
    cal = Calibration.fit(oracle, dft, calculator="chgnet", fit_split="calibration half, seed 0",
                          source="mp.json.gz")
    path = cal.save(tmp_path / "sub" / "calibration.json")
    data = json.loads(path.read_text())
    prov = data["provenance"]
    assert prov["calculator"] == "chgnet" and prov["fit_split"] == "calibration half, seed 0"
    assert prov["n_pairs"] == {"K_vrh": 12, "G_vrh": 12} and prov["created"] == cal.created
    assert prov["source"] == "mp.json.gz"
    back = Calibration.load(path)
    assert back == cal
    assert back.to_dict() == cal.to_dict() == Calibration.from_dict(cal.to_dict()).to_dict()
    with pytest.raises(ValueError, match="not an oracle calibration"):
        Calibration.from_dict({"moduli": {}})


def test_agreement_metrics():
    m = agreement([10.0, 20.0, 40.0, np.nan, -1.0], [10.0, 10.0, 20.0, 5.0, 5.0])
    assert m["n"] == 3
    assert m["mae"] == pytest.approx(10.0)
    assert m["mean_signed_error"] == pytest.approx(10.0)
    assert m["mae_log10"] == pytest.approx(2 * math.log10(2) / 3)
    assert m["spearman"] == pytest.approx(0.8660254, abs=1e-6)  # tied reference ranks
    few = agreement([1.0, 2.0], [1.0, 2.0])
    assert few["n"] == 2 and math.isnan(few["spearman"])
    none = agreement([np.nan], [1.0])
    assert none["n"] == 0 and math.isnan(none["mae"])
    with pytest.raises(ValueError, match="equally many"):
        agreement([1.0, 2.0], [1.0])


# --- scripts/benchmark_oracle.py helpers -------------------------------------------------------

def test_failure_reason_and_table(bench):
    reason = bench.failure_reason
    assert reason("ok") == "ok"
    assert reason("failed: no convergence (relaxation, 200 steps)") == "failed: no convergence"
    assert reason("failed: unsupported element: Cl, Na") == "failed: unsupported element"
    assert reason("failed: mechanically unstable (lowest eigenvalue -2.7 GPa)") == \
        "failed: mechanically unstable"
    assert reason("failed: unphysical fit: V(T) outside the volume grid") == \
        "failed: unphysical fit: V(T) outside the volume grid"
    assert reason("failed: unphysical fit: EOS residual 6.1 meV/atom") == \
        "failed: unphysical fit: EOS residual"
    assert reason("failed: unphysical fit: B0 = -3 GPa") == "failed: unphysical fit: B0"
    assert reason("failed: error: ValueError: Structure has 2 isolated atom(s)") == \
        "failed: error: ValueError"
    statuses = ["failed: atoms overlap (distance 0.3 A < 0.5 A)", "ok",
                "failed: atoms overlap (distance 0.1 A < 0.5 A)", "failed: unsupported element: W"]
    table = bench.failure_table(statuses)
    assert table["reason"].tolist() == ["ok", "failed: atoms overlap",
                                        "failed: unsupported element"]
    assert table["n"].tolist() == [1, 2, 1]
    assert table["share"].sum() == pytest.approx(1.0)
    assert bench.failure_table([]).empty


def test_size_buckets_and_timing_table(bench):
    assert [bench.size_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 12, 13)] == \
        ["1-2", "1-2", "3-4", "3-4", "5-8", "5-8", "9-12", "9-12", ">12"]
    table = bench.timing_table([1, 2, 2, 4, 12, 20], [1.0, 3.0, 0.01, 5.0, 30.0, 60.0],
                               [True, True, False, True, False, True])
    assert table["atoms"].tolist() == ["1-2", "3-4", "9-12", ">12"]
    assert table["n"].tolist() == [3, 1, 1, 1] and table["n_ok"].tolist() == [2, 1, 0, 1]
    assert table["median_s_ok"].iloc[0] == pytest.approx(2.0)
    assert table["median_s"].iloc[0] == pytest.approx(1.0)
    assert math.isnan(table["median_s_ok"].iloc[2])
    assert bench.expected_wall_seconds([10.0, 30.0, np.nan], 2) == pytest.approx(20.0)


def _results_frame(n_per_half: int, seed: int = 0) -> pd.DataFrame:
    """Oracle moduli exactly log-linear in DFT (slope 1.25 after inversion), two unstable rows."""
    rng = np.random.default_rng(seed)
    n = 2 * n_per_half
    k_dft, g_dft = 10 ** rng.uniform(1, 2.5, n), 10 ** rng.uniform(0.5, 2.2, n)
    inv = lambda y, a, b: 10 ** ((np.log10(y) - b) / a)  # noqa: E731 - oracle = inverse map
    frame = pd.DataFrame({
        "id": [f"mp-{i}" for i in range(n)],
        "part": ["calibration"] * n_per_half + ["held-out"] * n_per_half,
        "K_dft": k_dft, "G_dft": g_dft,
        "K_vrh": inv(k_dft, 0.9, 0.15), "G_vrh": inv(g_dft, 0.8, 0.3),
        "mechanically_stable": [True] * n,
    })
    frame.loc[[0, n - 1], "mechanically_stable"] = False
    frame.loc[1, "G_vrh"] = np.nan
    return frame


def test_evaluate_moduli_calibrates_on_one_half_and_reports_the_other(bench):
    frame = _results_frame(10)
    rows, cal, least_squares, note = bench.evaluate_moduli(frame, calculator="emt",
                                                           fit_split="cal half")
    assert note == "" and cal is not None and least_squares is not None
    assert least_squares["G_vrh"].slope == pytest.approx(0.8)  # exact data: both maps agree
    assert cal["G_vrh"].n_pairs == 8 and cal["K_vrh"].n_pairs == 8  # 2 unstable/NaN dropped
    assert cal["G_vrh"].slope == pytest.approx(0.8) and cal["K_vrh"].intercept == \
        pytest.approx(0.15)
    by = {(r["data"], r["modulus"], r["oracle"].split()[0]): r for r in rows}
    held_raw, held_cal = by[("held-out half", "G", "raw")], by[("held-out half", "G", "calibrated")]
    assert held_raw["n"] == held_cal["n"] == 9 and held_raw["n_rows"] == 10
    assert held_raw["mae_log10"] > 0.05
    assert held_cal["mae_log10"] == pytest.approx(0.0, abs=1e-9)
    assert held_cal["spearman"] == pytest.approx(1.0)
    assert by[("all sampled", "K", "raw")]["n"] == 17
    assert ("all sampled", "K", "calibrated") not in by  # never scored on the data it was fit to
    table = bench.metrics_markdown(rows)
    assert table.count("\n") == len(rows) + 1 and "9 / 10" in table


def test_evaluate_moduli_with_too_few_pairs(bench):
    frame = _results_frame(4)
    rows, cal, least_squares, note = bench.evaluate_moduli(frame, calculator="emt",
                                                           fit_split="cal half")
    assert cal is None and least_squares is None and note == "n/a (only 2 pairs)"
    calibrated = [r for r in rows if r["oracle"].startswith("calibrated")]
    assert len(calibrated) == 2 and all(r["note"] == note for r in calibrated)
    assert "n/a (only 2 pairs)" in bench.metrics_markdown(rows)
    empty = frame.assign(K_vrh=np.nan, G_vrh=np.nan, mechanically_stable=None)
    rows, cal, least_squares, note = bench.evaluate_moduli(empty, calculator="emt", fit_split="x")
    assert cal is None and note == "n/a (only 0 pairs)"
    assert "n/a" in bench.metrics_markdown(rows)


def test_reference_rows_and_stats(bench):
    refs = [SimpleNamespace(name="A", thermal_expansion=10.0, bulk_modulus=100.0),
            SimpleNamespace(name="B", thermal_expansion=20.0, bulk_modulus=50.0),
            SimpleNamespace(name="C", thermal_expansion=5.0, bulk_modulus=200.0),
            SimpleNamespace(name="D", thermal_expansion=1.0, bulk_modulus=400.0)]
    results = pd.DataFrame({"id": ["A", "B", "C"], "alpha_300K": [12e-6, 50e-6, 9e-6],
                            "alpha_300K_calibrated": [11e-6, 30e-6, np.nan],
                            "K_vrh": [90.0, 40.0, np.nan],
                            "status": ["ok", "ok", "failed: unphysical fit: negative alpha"]})
    rows = bench.reference_rows(results, refs, {"A": 1, "B": 2, "C": 2, "D": 2})
    assert [r["status"] for r in rows] == ["ok", "ok", "failed: unphysical fit: negative alpha",
                                           "missing"]
    assert rows[0]["ratio"] == pytest.approx(1.2) and rows[1]["ratio"] == pytest.approx(2.5)
    assert math.isnan(rows[2]["alpha_oracle"]) and rows[2]["alpha_oracle_any"] == \
        pytest.approx(9.0)
    stats = bench.reference_stats(rows)
    assert stats["within_factor_2"] == 1 and stats["n_references"] == 4
    assert stats["share_within_factor_2"] == pytest.approx(0.25)
    assert stats["alpha"]["n"] == 2 and stats["K"]["n"] == 2
    calibrated = bench.reference_stats(rows, "alpha_calibrated", "ratio_calibrated")
    assert rows[1]["ratio_calibrated"] == pytest.approx(1.5)
    assert calibrated["within_factor_2"] == 2 and calibrated["alpha"]["n"] == 2
    assert json.loads(json.dumps(bench.jsonable({"x": [np.float64("nan"), np.int64(3)]}))) == \
        {"x": [None, 3]}
    assert bench.markdown_table(["a", "b"], [[1, "n/a"]]).splitlines() == \
        ["| a | b |", "|---|---|", "| 1 | n/a |"]
    assert bench.fmt(float("nan")) == "n/a" and bench.fmt(1.234, ".1f") == "1.2"


def test_covariate_fit_recovers_a_two_regressor_map_and_needs_its_values(tmp_path):
    oracle = _synthetic(60, seed=3)
    dft_g = 10.0 ** (0.5 * np.log10(oracle["G_vrh"]) + 0.4 * np.log10(oracle["K_vrh"]) + 0.2)
    dft = {"K_vrh": _linear_log(oracle["K_vrh"], 0.95, 0.08), "G_vrh": dft_g}
    cal = Calibration.fit(oracle, dft, calculator="chgnet", fit_split="train")
    g = cal["G_vrh"]
    assert g.covariate == "K_vrh" and cal["K_vrh"].covariate == ""
    assert (g.slope, g.covariate_slope, g.intercept) == pytest.approx((0.5, 0.4, 0.2), abs=1e-9)
    table = cal.apply_table(oracle)
    np.testing.assert_allclose(table["G_vrh"], dft_g, rtol=1e-9)
    with pytest.raises(ValueError, match="also needs the oracle's K_vrh"):
        cal.apply(oracle["G_vrh"], "G_vrh")
    bad_k = oracle["K_vrh"].copy()
    bad_k[0] = -1.0
    assert np.isnan(cal.apply(oracle["G_vrh"], "G_vrh", bad_k)[0])
    back = Calibration.load(cal.save(tmp_path / "cal.json"))
    assert back == cal
    one = Calibration.fit(oracle, dft, calculator="chgnet", fit_split="train", covariates={})
    assert one["G_vrh"].covariate == "" and one["G_vrh"].covariate_slope == 0.0


def test_unbiased_fit_corrects_the_least_squares_shrinkage_of_a_noisy_oracle():
    """An oracle with noise (sd 0.3 in log10) over a 2-decade range: least squares shrinks
    its predictions towards the mean (stiff crystals too soft), the default stretched map does
    not; the ranking is the same."""
    rng = np.random.default_rng(3)
    truth = 10 ** rng.uniform(0.5, 2.5, 4000)
    oracle = truth * 10 ** rng.normal(0.0, 0.3, truth.size) * 0.6  # soft and noisy
    fit_part, test_part = slice(0, 2000), slice(2000, None)

    def bias_slope(cal: Calibration) -> float:
        pred = cal.apply(oracle[test_part], "G_vrh")
        return float(np.polyfit(np.log10(truth[test_part]), np.log10(pred), 1)[0])

    kw = {"calculator": "x", "fit_split": "first half", "moduli": ("G_vrh",), "covariates": {}}
    ls = Calibration.fit({"G_vrh": oracle[fit_part]}, {"G_vrh": truth[fit_part]},
                         unbiased=False, **kw)
    unbiased = Calibration.fit({"G_vrh": oracle[fit_part]}, {"G_vrh": truth[fit_part]}, **kw)
    assert bias_slope(ls) < 0.85 and bias_slope(unbiased) == pytest.approx(1.0, abs=0.05)
    stiff = truth[test_part] > 100
    for cal, ok in ((ls, False), (unbiased, True)):
        pred = cal.apply(oracle[test_part], "G_vrh")
        bias = np.mean(np.log10(pred[stiff] / truth[test_part][stiff]))
        assert bool(abs(bias) < 0.04) is ok
    assert unbiased.unbiased and not ls.unbiased
    again = Calibration.from_dict(json.loads(json.dumps(unbiased.to_dict())))
    assert again.unbiased and again["G_vrh"].slope == pytest.approx(unbiased["G_vrh"].slope)


def test_calibrated_results_adds_columns_beside_the_raw_ones():
    oracle = _synthetic(20, seed=5)
    dft = {"K_vrh": _linear_log(oracle["K_vrh"], 0.95, 0.08),
           "G_vrh": _linear_log(oracle["G_vrh"], 0.8, 0.35)}
    cal = Calibration.fit(oracle, dft, calculator="emt", fit_split="train", covariates={})
    results = pd.DataFrame({"id": ["a", "b", "c"], "K_vrh": [100.0, 50.0, np.nan],
                            "G_vrh": [40.0, 20.0, np.nan], "E": [106.0, 53.0, np.nan],
                            "status": ["ok", "ok", "failed: mechanically unstable"]})
    table = calibrated_results(results, cal)
    assert list(table.columns) == ["id", "K_vrh", "K_vrh_calibrated", "G_vrh",
                                   "G_vrh_calibrated", "E", "E_calibrated", "status"]
    k, g = table["K_vrh_calibrated"].to_numpy(), table["G_vrh_calibrated"].to_numpy()
    np.testing.assert_allclose(k[:2], 10 ** (0.95 * np.log10([100.0, 50.0]) + 0.08))
    np.testing.assert_allclose(g[:2], 10 ** (0.8 * np.log10([40.0, 20.0]) + 0.35))
    np.testing.assert_allclose(table["E_calibrated"][:2], 9 * k[:2] * g[:2] / (3 * k[:2] + g[:2]))
    assert table.iloc[2][["K_vrh_calibrated", "G_vrh_calibrated", "E_calibrated"]].isna().all()
    with pytest.raises(ValueError, match="lack column"):
        calibrated_results(results.drop(columns="G_vrh"), cal)


def test_calibrated_results_rerun_the_thermal_model_with_the_calibrated_poisson_ratio():
    """A soft oracle G inflates the Poisson ratio, gamma and alpha; the calibrated table reruns
    the Debye-Grueneisen model on the oracle's own EOS with nu from the calibrated K and G."""
    oracle = _synthetic(20, seed=5)
    dft = {"K_vrh": _linear_log(oracle["K_vrh"], 1.0, 0.0),
           "G_vrh": _linear_log(oracle["G_vrh"], 1.0, 0.3)}  # DFT G = 2 x oracle G
    cal = Calibration.fit(oracle, dft, calculator="emt", fit_split="train", covariates={})
    cu = {"K_vrh": 140.0, "G_vrh": 24.0, "E": 68.0, "alpha_300K": 2.6e-5,
          "debye_temperature": 250.0, "gruneisen": 2.4, "n_atoms": 1, "mass_amu": 63.546,
          "poisson": 0.42, "eos_V0": 11.81, "eos_B0": 140.0, "eos_B1": 5.4}
    results = pd.DataFrame([{"id": "cu", **cu, "status": "ok"},
                            {"id": "bad", **cu, "status": "failed: unphysical fit: EOS"},
                            {"id": "old", **cu, "eos_V0": np.nan, "status": "ok"}])
    table = calibrated_results(results, cal).set_index("id")
    nu = poisson_ratio(table.at["cu", "K_vrh_calibrated"], table.at["cu", "G_vrh_calibrated"])
    expected = debye_gruneisen(BirchMurnaghan(e0=0.0, v0=11.81, b0=140.0 * GPa, b1=5.4),
                               n_atoms=1, mass_amu=63.546, poisson=float(nu))
    assert table.at["cu", "alpha_300K_calibrated"] == pytest.approx(expected.alpha)
    assert table.at["cu", "gruneisen_calibrated"] == pytest.approx(expected.gruneisen)
    assert table.at["cu", "debye_temperature_calibrated"] > 250.0  # stiffer G: higher theta
    assert table.at["cu", "alpha_300K_calibrated"] < 2.6e-5
    assert 0.5 * 16.5e-6 < table.at["cu", "alpha_300K_calibrated"] < 2 * 16.5e-6  # Cu: 16.5
    assert table.loc[["bad", "old"], "alpha_300K_calibrated"].isna().all()
    columns = list(table.columns)
    assert columns.index("alpha_300K_calibrated") == columns.index("alpha_300K") + 1


def test_shipped_chgnet_calibration_stiffens_the_soft_shear_modulus():
    """CHGNet's G is tens of GPa too soft against PBE; the shipped map raises it and leaves K
    within about 20 %, e.g. for silicon-like raw values (K 90, G 45 GPa; PBE 89, 62)."""
    from invdesign.surrogate import checkpoints_dir

    cal = Calibration.load(checkpoints_dir() / "oracle-calibration" / "chgnet.json")
    assert cal.calculator == "chgnet" and min(f.n_pairs for f in cal.fits) >= 500
    out = cal.apply_table({"K_vrh": np.array([90.0]), "G_vrh": np.array([45.0])})
    assert 0.8 * 90 < out["K_vrh"][0] < 1.2 * 90
    assert out["G_vrh"][0] > 45.0


def test_every_shipped_calibration_is_named_after_its_potential():
    """`verify --calculator NAME` finds `oracle-calibration/NAME.json`; it must be NAME's."""
    from typing import get_args

    from invdesign.oracle import CalculatorName
    from invdesign.surrogate import checkpoints_dir

    shipped = sorted((checkpoints_dir() / "oracle-calibration").glob("*.json"))
    assert shipped, "no shipped calibration"
    for path in shipped:
        cal = Calibration.load(path)
        assert path.stem in get_args(CalculatorName) and cal.calculator == path.stem, path
        assert {f.modulus for f in cal.fits} == {"K_vrh", "G_vrh"}


def test_compare_oracle_settings_summary_scores_changes_on_crystals_both_settings_measured():
    """scripts/compare_oracle_settings.py: median and largest |log10| change of each quantity
    over crystals where both settings gave a positive value, and the median time ratio."""
    path = SCRIPT.parent / "compare_oracle_settings.py"
    spec = importlib.util.spec_from_file_location("compare_oracle_settings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = []
    crystals = (("a", 1.0, 2.0), ("b", 10.0**0.1, 3.0), ("c", 10.0**0.02, 1.0))
    for sid, factor, seconds in crystals:
        for setting, f, t in (("default", 1.0, 1.0), ("alternative", factor, seconds)):
            rows.append({"id": sid, "setting": setting, "K_vrh": 100.0 * f, "G_vrh": 50.0 * f,
                         "alpha_300K": float("nan") if sid == "c" else 1e-5, "seconds": t})
    table, time_ratio = module.summary(pd.DataFrame(rows))
    table = table.set_index("quantity")
    assert table.loc["K_vrh", "n"] == 3
    assert table.loc["K_vrh", "median |dlog10|"] == pytest.approx(0.02)
    assert table.loc["G_vrh", "max |dlog10|"] == pytest.approx(0.1)
    assert table.loc["alpha_300K", "n"] == 2 and table.loc["alpha_300K", "max |dlog10|"] == 0
    assert time_ratio == pytest.approx(2.0)
