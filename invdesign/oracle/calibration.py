"""Calibrate oracle moduli against DFT by a linear map in log10 space, and score agreement.

The machine-learned potentials behind the oracle are systematically soft (CHGNet underestimates
G by tens of GPa), so a `Calibration` fits, per modulus,

    log10 M_dft = slope * log10 M_oracle + covariate_slope * log10 C_oracle + intercept

where the optional covariate C is another oracle modulus: by default G is calibrated with K as
well (the potential's K is far more reliable than its G, and on 543 labelled MP binaries the
second regressor lifted held-out Spearman of G from 0.84 to 0.88), K with itself only. It is fit
on one set of structures (e.g. the calibration half of a composition split) and applies it to
others. It is saved as JSON with its provenance so that it is never reported on the data it was
fit to without saying so. `agreement` gives the usual comparison metrics (MAE in GPa and in
log10, Spearman, mean signed error), and `calibrated_results` adds calibrated columns to an
oracle results table (moduli, and the thermal expansion recomputed from the oracle's EOS
fit with the calibrated Poisson ratio). No torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase.units import GPa
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

from invdesign.oracle.thermal import BirchMurnaghan, debye_gruneisen
from invdesign.properties.derived import poisson_ratio, youngs_modulus

__all__ = [
    "COVARIATES",
    "MIN_PAIRS",
    "MODULI",
    "Calibration",
    "LogLinearFit",
    "agreement",
    "calibrated_results",
    "positive_pairs",
    "usable_moduli",
]

MIN_PAIRS = 5  # fewest (oracle, DFT) pairs a fit accepts
_LEAST_SQUARES = "least squares"
_UNBIASED = "least squares, stretched to be unbiased across the range"
_MIN_STRETCH = 0.2  # below this the prediction barely follows the DFT value: no stretching
_FORMAT = "invdesign-oracle-calibration"
_VERSION = 2
MODULI: tuple[str, ...] = ("K_vrh", "G_vrh")
COVARIATES: dict[str, str] = {"G_vrh": "K_vrh"}  # default second regressor per modulus


def positive_pairs(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of `x` and `y` where both are finite and > 0 (log-safe), as float arrays.

    Raises:
        ValueError: `x` and `y` differ in length.
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"need equally many values, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return x[keep], y[keep]


def usable_moduli(frame: pd.DataFrame) -> pd.Series:
    """Rows of an oracle results table whose K and G are finite and positive from a
    Born-stable elastic tensor (`mechanically_stable` True, 1.0 or "True")."""
    stable = frame["mechanically_stable"].map(lambda v: v is True or v == 1.0 or v == "True")
    positive = np.ones(len(frame), bool)
    for m in MODULI:
        v = pd.to_numeric(frame[m], errors="coerce").to_numpy(float)
        positive &= np.isfinite(v) & (v > 0)
    return stable.astype(bool) & positive


def agreement(predicted: ArrayLike, reference: ArrayLike) -> dict[str, float]:
    """Agreement of predicted with reference moduli on pairs where both are finite and > 0.

    Returns:
        n (pairs used), mae (GPa), mae_log10, spearman (NaN for fewer than 3 pairs) and
        mean_signed_error (predicted - reference, GPa); NaN metrics when no pair is left.
    """
    p, r = positive_pairs(predicted, reference)
    nan = float("nan")
    if not len(p):
        return {"n": 0, "mae": nan, "mae_log10": nan, "spearman": nan, "mean_signed_error": nan}
    rho = float(spearmanr(p, r).statistic) if len(p) >= 3 else nan
    return {"n": len(p), "mae": float(np.mean(np.abs(p - r))),
            "mae_log10": float(np.mean(np.abs(np.log10(p) - np.log10(r)))),
            "spearman": rho, "mean_signed_error": float(np.mean(p - r))}


@dataclass(frozen=True)
class LogLinearFit:
    """log10 y = slope * log10 x + covariate_slope * log10 c + intercept for one modulus.

    Attributes:
        modulus: Which modulus (an oracle CSV column: "K_vrh" or "G_vrh").
        slope: Slope in log10 space.
        intercept: Intercept in log10 space (log10 GPa).
        n_pairs: Pairs the fit used.
        rmse_log10: RMS residual of the fit on those pairs (in-sample), log10 GPa.
        covariate: The oracle modulus used as a second regressor ("" for none).
        covariate_slope: Its slope in log10 space.
    """

    modulus: str
    slope: float
    intercept: float
    n_pairs: int
    rmse_log10: float
    covariate: str = ""
    covariate_slope: float = 0.0

    @classmethod
    def fit(cls, modulus: str, oracle_values: ArrayLike, dft_values: ArrayLike, *,
            covariate: str = "", covariate_values: ArrayLike | None = None,
            unbiased: bool = True) -> LogLinearFit:
        """Least-squares fit on the rows where every value is finite and > 0.

        The least-squares map is the best predictor on average but shrinks towards the mean
        (the oracle's noise dilutes the slope): stiff crystals come out too soft and soft ones
        too stiff, which biases any check of extreme candidates. With `unbiased` (default)
        the map is then stretched so that its prediction regressed on the DFT value has slope
        1 and intercept 0 on the fit data: unbiased across the range, same ranking, slightly
        larger average error.

        Raises:
            ValueError: Fewer than `MIN_PAIRS` usable rows, all oracle values equal, or a
                covariate named without values (or values without a name).
        """
        if bool(covariate) != (covariate_values is not None):
            raise ValueError("give both a covariate name and its values, or neither")
        x, y = np.asarray(oracle_values, float).ravel(), np.asarray(dft_values, float).ravel()
        if x.shape != y.shape:
            raise ValueError(f"need equally many values, got {len(x)} and {len(y)}")
        c = (np.ones_like(x) if covariate_values is None
             else np.asarray(covariate_values, float).ravel())
        if c.shape != x.shape:
            raise ValueError(f"need a covariate value per row, got {len(c)} for {len(x)}")
        keep = _positive(x) & _positive(y) & _positive(c)
        x, y, c = x[keep], y[keep], c[keep]
        if len(x) < MIN_PAIRS:
            raise ValueError(f"calibration of {modulus} needs at least {MIN_PAIRS} pairs of "
                             f"finite, positive values; got {len(x)}")
        lx, ly, lc = np.log10(x), np.log10(y), np.log10(c)
        if np.ptp(lx) == 0:
            raise ValueError(f"calibration of {modulus}: all {len(x)} oracle values are equal")
        design = np.column_stack([lx, lc, np.ones_like(lx)] if covariate else
                                 [lx, np.ones_like(lx)])
        coef = np.linalg.lstsq(design, ly, rcond=None)[0]
        if unbiased:
            stretch, shift = np.polyfit(ly, design @ coef, 1)  # prediction ~ stretch * truth
            if stretch > _MIN_STRETCH:
                coef = coef / stretch
                coef[-1] -= shift / stretch
        rmse = float(np.sqrt(np.mean((design @ coef - ly) ** 2)))
        return cls(modulus=modulus, slope=float(coef[0]), intercept=float(coef[-1]),
                   n_pairs=len(x), rmse_log10=rmse, covariate=covariate,
                   covariate_slope=float(coef[1]) if covariate else 0.0)

    def apply(self, values: ArrayLike, covariate_values: ArrayLike | None = None) -> np.ndarray:
        """Calibrated values (GPa); NaN where a value (or its covariate) is NaN, infinite or
        <= 0.

        Raises:
            ValueError: The fit has a covariate and no `covariate_values` are given.
        """
        v = np.asarray(values, float)
        if self.covariate and covariate_values is None:
            raise ValueError(f"the calibration of {self.modulus} also needs the oracle's "
                             f"{self.covariate}")
        c = (np.ones_like(v) if not self.covariate
             else np.broadcast_to(np.asarray(covariate_values, float), v.shape))
        out = np.full(v.shape, np.nan)
        ok = _positive(v) & _positive(c)
        out[ok] = 10.0 ** (self.slope * np.log10(v[ok])
                           + self.covariate_slope * np.log10(c[ok]) + self.intercept)
        return out


def _positive(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values > 0)


@dataclass(frozen=True)
class Calibration:
    """Per-modulus log-linear maps from oracle to DFT-like moduli, with provenance.

    Attributes:
        fits: One `LogLinearFit` per modulus.
        calculator: Potential the oracle values came from ("chgnet", ...).
        fit_split: Which data the maps were fitted on (free text, e.g. the split and seed).
        created: ISO date of the fit.
        source: Data the DFT values came from (free text, e.g. a file name).
        unbiased: Whether the maps were stretched to be unbiased across the range.
    """

    fits: tuple[LogLinearFit, ...]
    calculator: str
    fit_split: str
    created: str = field(default_factory=lambda: date.today().isoformat())
    source: str = ""
    unbiased: bool = False

    @classmethod
    def fit(cls, oracle_values: Mapping[str, ArrayLike], dft_values: Mapping[str, ArrayLike], *,
            calculator: str, fit_split: str, moduli: Sequence[str] = MODULI,
            covariates: Mapping[str, str] = COVARIATES, source: str = "",
            unbiased: bool = True) -> Calibration:
        """Fit one map per modulus.

        Args:
            oracle_values: Modulus name -> oracle values (GPa), e.g. a results DataFrame.
            dft_values: Modulus name -> DFT values (GPa) in the same order.
            calculator: Potential behind the oracle values.
            fit_split: Description of the data fitted on (stored as provenance).
            moduli: Names to fit (keys of both mappings).
            covariates: Modulus -> the oracle modulus used as its second regressor (a key of
                `oracle_values`); moduli not listed are fitted on themselves only.
            source: Where the DFT values came from.
            unbiased: Stretch each least-squares map to be unbiased across the range (see
                `LogLinearFit.fit`).

        Raises:
            ValueError: A modulus has fewer than `MIN_PAIRS` pairs where both values are
                finite and positive (the message gives the count), or no moduli are given.
        """
        if not moduli:
            raise ValueError("no moduli to calibrate")
        fits = []
        for m in moduli:
            cov = covariates.get(m, "")
            fits.append(LogLinearFit.fit(m, oracle_values[m], dft_values[m], covariate=cov,
                                         covariate_values=oracle_values[cov] if cov else None,
                                         unbiased=unbiased))
        return cls(fits=tuple(fits), calculator=calculator, fit_split=fit_split, source=source,
                   unbiased=unbiased)

    @property
    def moduli(self) -> tuple[str, ...]:
        """Names of the calibrated moduli."""
        return tuple(f.modulus for f in self.fits)

    def __getitem__(self, modulus: str) -> LogLinearFit:
        for f in self.fits:
            if f.modulus == modulus:
                return f
        raise KeyError(f"no calibration for {modulus!r} (have {', '.join(self.moduli)})")

    def apply(self, values: ArrayLike, modulus: str,
              covariate_values: ArrayLike | None = None) -> np.ndarray:
        """Calibrated `modulus` values (GPa); NaN where a value is NaN, infinite or <= 0.
        A fit with a covariate needs its oracle values too (`apply_table` finds them)."""
        return self[modulus].apply(values, covariate_values)

    def apply_table(self, oracle_values: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
        """Every calibrated modulus from a table of oracle values (e.g. an oracle CSV)."""
        return {f.modulus: f.apply(oracle_values[f.modulus],
                                   oracle_values[f.covariate] if f.covariate else None)
                for f in self.fits}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "model": ("log10 M_dft = slope * log10 M_oracle + covariate_slope * log10 "
                      "C_oracle + intercept"),
            "method": _UNBIASED if self.unbiased else _LEAST_SQUARES,
            "moduli": {f.modulus: {"slope": f.slope, "intercept": f.intercept,
                                   "covariate": f.covariate,
                                   "covariate_slope": f.covariate_slope,
                                   "n_pairs": f.n_pairs, "rmse_log10_in_sample": f.rmse_log10}
                       for f in self.fits},
            "provenance": {"calculator": self.calculator, "fit_split": self.fit_split,
                           "created": self.created, "source": self.source,
                           "n_pairs": {f.modulus: f.n_pairs for f in self.fits}},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of `to_dict`.

        Raises:
            ValueError: Not a calibration description, or a newer format version.
        """
        if data.get("format") != _FORMAT:
            raise ValueError(f"not an oracle calibration (format {data.get('format')!r})")
        if int(data.get("version", 0)) > _VERSION:
            raise ValueError(f"calibration format version {data['version']} is newer than "
                             f"this code ({_VERSION})")
        fits = []
        for name, d in data["moduli"].items():
            slope, intercept = float(d["slope"]), float(d["intercept"])
            cov_slope = float(d.get("covariate_slope", 0.0))
            if not all(math.isfinite(v) for v in (slope, intercept, cov_slope)):
                raise ValueError(f"calibration of {name}: non-finite coefficients")
            fits.append(LogLinearFit(modulus=name, slope=slope, intercept=intercept,
                                     n_pairs=int(d["n_pairs"]),
                                     rmse_log10=float(d.get("rmse_log10_in_sample", "nan")),
                                     covariate=str(d.get("covariate", "")),
                                     covariate_slope=cov_slope))
        prov = data.get("provenance", {})
        return cls(fits=tuple(fits), calculator=str(prov.get("calculator", "")),
                   fit_split=str(prov.get("fit_split", "")),
                   created=str(prov.get("created", "")), source=str(prov.get("source", "")),
                   unbiased=data.get("method") == _UNBIASED)

    def save(self, path: str | Path) -> Path:
        """Write the JSON description to `path` (folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def calibrated_results(results: pd.DataFrame, calibration: Calibration, *,
                       temperature: float = 300.0) -> pd.DataFrame:
    """An oracle results table (`CSV_COLUMNS`) with `<modulus>_calibrated` columns (GPa) beside
    the raw ones, `E_calibrated` from calibrated K and G when both are calibrated, and, where
    the table has the fitted EOS (`eos_V0`, `eos_B0`, `eos_B1`, `n_atoms`, `mass_amu`),
    `alpha_300K_calibrated`, `debye_temperature_calibrated` and `gruneisen_calibrated`: the
    Debye-Grueneisen model rerun on the same E(V) fit with the Poisson ratio of the calibrated
    K and G (the potential's soft G otherwise inflates gamma and alpha). NaN where the oracle
    gave no positive modulus or no EOS, and for rows whose `status` is not "ok" (their EOS fit
    may be the reason); `temperature` (K) is the one the oracle ran at. Phonon-QHA rows
    (`OracleConfig.thermal_method`) keep their alpha and gamma, which no Poisson ratio
    enters (and get no calibrated Debye temperature: they record no EOS volume)."""
    out = results.copy()
    needed = {*calibration.moduli, *(f.covariate for f in calibration.fits)} - {""}
    missing = sorted(needed - set(out.columns))
    if missing:
        raise ValueError(f"oracle results lack column(s) {', '.join(missing)}")
    values = {m: pd.to_numeric(out[m], errors="coerce").to_numpy(float) for m in needed}
    calibrated = calibration.apply_table(values)
    for modulus, column in calibrated.items():
        out.insert(out.columns.get_loc(modulus) + 1, f"{modulus}_calibrated", column)
    if not {"K_vrh", "G_vrh"} <= calibrated.keys():
        return out
    if "E" in out.columns:
        out.insert(out.columns.get_loc("E") + 1, "E_calibrated",
                   youngs_modulus(calibrated["K_vrh"], calibrated["G_vrh"]))
    if set(_EOS_COLUMNS) <= set(out.columns) and "alpha_300K" in out.columns:
        nu = poisson_ratio(calibrated["K_vrh"], calibrated["G_vrh"])
        thermal = _recomputed_thermal(out, nu, temperature)
        phonons = _phonon_rows(out)  # phonon QHA: no EOS, and alpha does not use nu
        for name in ("gruneisen", "alpha_300K"):
            raw = pd.to_numeric(out[name], errors="coerce").to_numpy(float)
            thermal[name] = np.where(phonons, raw, thermal[name])
        for name in ("gruneisen", "debye_temperature", "alpha_300K"):
            at = out.columns.get_loc(name) + 1 if name in out.columns else len(out.columns)
            out.insert(at, f"{name}_calibrated", thermal[name])
    return out


_EOS_COLUMNS = ("n_atoms", "mass_amu", "eos_V0", "eos_B0", "eos_B1")


def _phonon_rows(results: pd.DataFrame) -> np.ndarray:
    """Rows whose alpha came from phonon QHA (`thermal_method` "phonon-qha")."""
    if "thermal_method" not in results:
        return np.zeros(len(results), dtype=bool)
    return results["thermal_method"].astype(str).eq("phonon-qha").to_numpy(bool)


def _recomputed_thermal(results: pd.DataFrame, poisson: np.ndarray,
                        temperature: float) -> dict[str, np.ndarray]:
    """alpha (1/K), theta_D (K) and gamma per row from its EOS and a new Poisson ratio."""
    eos = results[list(_EOS_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    usable = (np.all(np.isfinite(eos), axis=1) & np.isfinite(poisson) & (eos[:, 0] > 0)
              & (eos[:, 3] > 0))
    if "status" in results:
        usable &= results["status"].eq("ok").to_numpy()
    alpha, theta, gamma = (np.full(len(results), np.nan) for _ in range(3))
    for i in np.flatnonzero(usable):
        n_atoms, mass, v0, b0, b1 = eos[i]
        dg = debye_gruneisen(BirchMurnaghan(e0=0.0, v0=v0, b0=b0 * GPa, b1=b1),
                             n_atoms=int(n_atoms), mass_amu=mass, poisson=float(poisson[i]),
                             temperature=temperature)
        theta[i], gamma[i] = dg.debye_temperature, dg.gruneisen
        alpha[i] = dg.alpha if dg.status == "ok" else np.nan
    return {"alpha_300K": alpha, "debye_temperature": theta, "gruneisen": gamma}
