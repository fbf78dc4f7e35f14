"""Benchmark the physics oracle: K and G against DFT, alpha against experiment, time, failures.

Samples --n Materials Project binaries (<= --max-atoms atoms) from the shared elasticity set,
splits them by reduced formula into a calibration half and a held-out half, runs the oracle on
them and on the experimental reference crystals (`invdesign.data.examples.REFERENCES`), fits a
log-log `Calibration` of K and G on the calibration half and reports it on the held-out half only.
Prints markdown tables for BENCHMARKS.md; writes under --out the oracle CSVs (resumable: a rerun
skips structures already done), `comparison.csv`, `summary.json` and the calibration JSON.

    python scripts/benchmark_oracle.py --n 80 --workers 2 --out runs/oracle
    # K and G agreement over every MP binary already labelled by `invdesign label` (no new
    # oracle runs for them; --n and --max-atoms then select among the labelled ids):
    python scripts/benchmark_oracle.py --labels checkpoints/oracle-labels/mp-binary-chgnet.csv \
        --n 100000 --max-atoms 20 --references none --out runs/oracle_labels
    python scripts/benchmark_oracle.py --calculator emt --n 6 --workers 1 --out /tmp/oracle_smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from invdesign.data import shared_mp_elasticity
from invdesign.oracle.calculators import CalculatorName
from invdesign.oracle.calibration import (
    MIN_PAIRS,
    MODULI,
    Calibration,
    agreement,
    calibrated_results,
    positive_pairs,
    usable_moduli,
)

CALIBRATION, HELD_OUT = "calibration", "held-out"
DFT_PROPERTIES = {"K_vrh": "bulk_modulus_vrh", "G_vrh": "shear_modulus_vrh"}
DFT_COLUMN = {"K_vrh": "K_dft", "G_vrh": "G_dft"}
SIZE_BUCKETS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 8), (9, 12))
# Targets of issue 3 (moduli on held-out MP binaries, alpha on the reference crystals).
TARGETS = {"K spearman": 0.93, "G spearman": 0.85, "K mae_log10": 0.10, "G mae_log10": 0.10,
           "alpha spearman": 0.8, "alpha within x2": 0.8, "median seconds": 5.0}
MP_CSV, REF_CSV = "mp_binaries.csv", "references.csv"


# --- pure helpers (imported by tests/test_oracle_calibration.py) ------------------------------

def fmt(value: Any, spec: str = ".2f") -> str:
    """`value` formatted with `spec`; "n/a" for None or a non-finite number."""
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return "n/a"
    return format(value, spec)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells converted with `str`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def failure_reason(status: str) -> str:
    """Reason category of an oracle status: the text before any " (", without numbers.

    Element lists and exception messages are dropped too, so that categories stay few:

    "failed: no convergence (relaxation, 200 steps)" -> "failed: no convergence";
    "failed: unsupported element: Zr" -> "failed: unsupported element";
    "failed: unphysical fit: EOS residual 6.1 meV/atom" -> "failed: unphysical fit: EOS residual";
    "failed: error: RuntimeError: ..." -> "failed: error: RuntimeError". "ok" stays "ok".
    """
    text = str(status).split(" (")[0]
    parts = [p.strip() for p in text.split(":")]
    keep = 3 if len(parts) > 2 and parts[1] in ("error", "unphysical fit") else 2
    out = []
    for part in parts[:keep]:
        part = re.split(r"\s(?:=|[-+]?\d)", part)[0].strip()  # drop " = x", " 6.1 meV"
        if part:
            out.append(part)
    return ": ".join(out) or "unknown"


def failure_table(statuses: Iterable[str]) -> pd.DataFrame:
    """Count and share of each status category (`failure_reason`), "ok" first, then by count."""
    reasons = pd.Series([failure_reason(s) for s in statuses], dtype=object)
    if reasons.empty:
        return pd.DataFrame({"reason": [], "n": [], "share": []})
    counts = reasons.value_counts()
    order = sorted(counts.index, key=lambda r: (r != "ok", -counts[r], r))
    return pd.DataFrame({"reason": order, "n": [int(counts[r]) for r in order],
                         "share": [counts[r] / len(reasons) for r in order]})


def size_bucket(n_atoms: int, buckets: Sequence[tuple[int, int]] = SIZE_BUCKETS) -> str:
    """Label of the atom-count bucket holding `n_atoms` ("1-2", ..., or ">12" beyond the last)."""
    for lo, hi in buckets:
        if lo <= n_atoms <= hi:
            return f"{lo}-{hi}"
    return f">{buckets[-1][1]}" if n_atoms > buckets[-1][1] else f"<{buckets[0][0]}"


def timing_table(n_atoms: Sequence[int], seconds: Sequence[float], ok: Sequence[bool],
                 buckets: Sequence[tuple[int, int]] = SIZE_BUCKETS) -> pd.DataFrame:
    """Per size bucket: structures, median seconds (all), successes, median seconds (successes).

    Buckets without structures are left out; the order follows `buckets` (">N" last).
    """
    frame = pd.DataFrame({"atoms": [size_bucket(int(n), buckets) for n in n_atoms],
                          "seconds": np.asarray(seconds, float), "ok": np.asarray(ok, bool)})
    labels = [f"<{buckets[0][0]}"] + [f"{lo}-{hi}" for lo, hi in buckets] + [f">{buckets[-1][1]}"]
    rows = []
    for label in labels:
        sub = frame[frame["atoms"] == label]
        if sub.empty:
            continue
        good = sub.loc[sub["ok"], "seconds"]
        rows.append({"atoms": label, "n": len(sub), "median_s": float(sub["seconds"].median()),
                     "n_ok": len(good),
                     "median_s_ok": float(good.median()) if len(good) else float("nan")})
    return pd.DataFrame(rows, columns=["atoms", "n", "median_s", "n_ok", "median_s_ok"])


def ship_calibration(frame: pd.DataFrame, path: Path, *, calculator: str, source: str) -> None:
    """Fit the calibration on every usable row (no held-out part left) and save it."""
    rows = frame[usable_moduli(frame)]
    fit_split = (f"all {len(rows)} usable rows of the benchmark (both halves); held-out "
                 f"quality: the half-fit figures in BENCHMARKS.md")
    Calibration.fit({m: rows[m] for m in MODULI}, {m: rows[DFT_COLUMN[m]] for m in MODULI},
                    calculator=calculator, fit_split=fit_split, source=source).save(path)
    _note(f"calibration on all {len(rows)} usable rows written to {path}")


def fit_calibration_half(frame: pd.DataFrame, **kwargs: Any) -> Calibration:
    """`Calibration.fit` (keyword arguments passed on) on the usable calibration-half rows."""
    rows = frame[usable_moduli(frame) & (frame["part"] == CALIBRATION)]
    return Calibration.fit({m: rows[m] for m in MODULI},
                           {m: rows[DFT_COLUMN[m]] for m in MODULI}, **kwargs)


def evaluate_moduli(frame: pd.DataFrame, *, calculator: str, fit_split: str,
                    source: str = ""
                    ) -> tuple[list[dict[str, Any]], Calibration | None, Calibration | None, str]:
    """Oracle K, G against DFT: raw and calibrated on the held-out half, raw on all rows.

    Args:
        frame: One row per sampled structure with columns `part` ("calibration"/"held-out"),
            K_vrh, G_vrh (oracle), K_dft, G_dft and mechanically_stable.
        calculator, fit_split, source: Provenance of the calibration.

    Returns:
        (metric rows, the default and the least-squares calibration fitted on the calibration
        half, or None each, a note saying why there are none). Held-out rows compare the raw
        oracle, the default calibration (unbiased across the range) and the plain
        least-squares map. Each row has data, modulus, oracle, n_rows (structures in that
        data) and the `agreement` metrics, or `note` instead of them when not computable.
    """
    usable = usable_moduli(frame)
    fit_rows = frame[usable & (frame["part"] == CALIBRATION)]
    calibration, least_squares, note = None, None, ""
    try:
        kw = {"calculator": calculator, "fit_split": fit_split, "source": source}
        calibration = fit_calibration_half(frame, **kw)
        least_squares = fit_calibration_half(frame, unbiased=False, **kw)
    except ValueError:
        k = min(len(positive_pairs(fit_rows[m], fit_rows[DFT_COLUMN[m]])[0]) for m in MODULI)
        note = f"n/a (only {k} pairs)"
    rows: list[dict[str, Any]] = []
    for label, in_data in ((f"{HELD_OUT} half", frame["part"] == HELD_OUT),
                           ("all sampled", pd.Series(True, index=frame.index))):
        sub = frame[in_data & usable]
        for m in MODULI:
            base = {"data": label, "modulus": m.split("_")[0], "n_rows": int(in_data.sum())}
            rows.append(base | {"oracle": "raw"} | agreement(sub[m], sub[DFT_COLUMN[m]]))
            if label.startswith(HELD_OUT):
                cal = base | {"oracle": f"calibrated on {CALIBRATION} half"}
                if calibration is None:
                    rows.append(cal | {"note": note})
                    continue
                for fitted, name in ((calibration, cal["oracle"]),
                                     (least_squares, f"least-squares map, {CALIBRATION} half")):
                    pred = fitted.apply_table(sub)[m]
                    rows.append(cal | {"oracle": name} | agreement(pred, sub[DFT_COLUMN[m]]))
    return rows, calibration, least_squares, note


BIAS_BINS: tuple[tuple[float, float], ...] = ((0, 30), (30, 80), (80, 150), (150, np.inf))


def bias_by_range(frame: pd.DataFrame, fits: dict[str, Calibration | None]) -> str:
    """Mean signed error in log10 (oracle variant - DFT) per DFT range of each modulus on the
    held-out half, as a markdown table; a shrinking map is too high at the low end and too
    low at the high end."""
    held = frame[usable_moduli(frame) & (frame["part"] == HELD_OUT)]
    header = ["modulus", "oracle", *[f"DFT {lo:g}-{hi:g} GPa" if np.isfinite(hi) else
                                     f"DFT >= {lo:g} GPa" for lo, hi in BIAS_BINS]]
    body = []
    for m in MODULI:
        truth = held[DFT_COLUMN[m]].to_numpy(float)
        variants = {"raw": held[m].to_numpy(float)} | {
            name: fit.apply_table(held)[m] for name, fit in fits.items() if fit is not None}
        for name, pred in variants.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.log10(pred / truth)
            cells = []
            for lo, hi in BIAS_BINS:
                pick = (truth >= lo) & (truth < hi) & np.isfinite(err)
                cells.append(f"{err[pick].mean():+.3f} ({pick.sum()})" if pick.any() else "n/a")
            body.append([m.split("_")[0], name, *cells])
    return markdown_table(header, body)


def metrics_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The moduli rows of `evaluate_moduli` as a markdown table."""
    header = ["data", "modulus", "oracle", "n used / in data", "MAE (GPa)", "MAE log10",
              "Spearman", "mean signed error (GPa)"]
    body = []
    for r in rows:
        head = [r["data"], r["modulus"], r["oracle"]]
        if "note" in r:
            body.append([*head, r["note"], "", "", "", ""])
        else:
            body.append([*head, f"{r['n']} / {r['n_rows']}", fmt(r["mae"], ".1f"),
                         fmt(r["mae_log10"], ".3f"), fmt(r["spearman"], ".2f"),
                         fmt(r["mean_signed_error"], "+.1f")])
    return markdown_table(header, body)


def reference_rows(results: pd.DataFrame, references: Sequence[Any],
                   n_atoms: dict[str, int]) -> list[dict[str, Any]]:
    """Per reference crystal: oracle alpha (1e-6/K, NaN unless status ok; raw, and calibrated
    where `results` has `alpha_300K_calibrated`), K vs experiment, and whether the crystal is
    in the target set (`listed`: its alpha is in ../shared/data/README.md)."""
    by_id = results.set_index("id") if len(results) else pd.DataFrame()
    rows = []
    for ref in references:
        row = by_id.loc[ref.name] if ref.name in by_id.index else None
        status = str(row["status"]) if row is not None else "missing"

        def value(column: str, scale: float = 1.0, row=row) -> float:
            return float(row[column]) * scale if row is not None and column in row else math.nan

        alpha, alpha_cal = value("alpha_300K", 1e6), value("alpha_300K_calibrated", 1e6)
        exp_alpha = math.nan if ref.thermal_expansion is None else ref.thermal_expansion
        ok = status == "ok"
        rows.append({"material": ref.name, "atoms": n_atoms.get(ref.name, 0),
                     "alpha_oracle": alpha if ok else math.nan, "alpha_oracle_any": alpha,
                     "alpha_calibrated": alpha_cal if ok else math.nan, "alpha_exp": exp_alpha,
                     "ratio": alpha / exp_alpha if ok else math.nan,
                     "ratio_calibrated": alpha_cal / exp_alpha if ok else math.nan,
                     "K_oracle": value("K_vrh"),
                     "K_exp": math.nan if ref.bulk_modulus is None else ref.bulk_modulus,
                     "listed": bool(getattr(ref, "listed", True)), "status": status})
    return rows


def reference_stats(rows: Sequence[dict[str, Any]], alpha: str = "alpha_oracle",
                    ratio: str = "ratio", *, listed_only: bool = True) -> dict[str, Any]:
    """Spearman of alpha (the `alpha` column) and share within a factor 2 (the `ratio` column;
    failures count as outside), K agreement; over the target set only unless not
    `listed_only`."""
    rows = [r for r in rows if r.get("listed", True) or not listed_only]
    have_exp = [r for r in rows if np.isfinite(r["alpha_exp"])]
    within = sum(bool(0.5 <= r[ratio] <= 2.0) for r in have_exp)
    return {"alpha": agreement([r[alpha] for r in rows], [r["alpha_exp"] for r in rows]),
            "within_factor_2": within, "n_references": len(have_exp),
            "share_within_factor_2": within / len(have_exp) if have_exp else float("nan"),
            "K": agreement([r["K_oracle"] for r in rows], [r["K_exp"] for r in rows])}


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars made plain and NaN/inf floats made None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def expected_wall_seconds(seconds: Sequence[float], workers: int) -> float:
    """Wall time of a batch with `workers` one-thread workers: summed seconds / workers."""
    return float(np.nansum(np.asarray(seconds, float))) / max(workers, 1)


# --- the run -----------------------------------------------------------------------------------

def _limit_threads(n: int) -> None:
    """n BLAS/OpenMP/torch threads in this process (oracle timings are per core)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _short(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_run_config(out: Path, config: dict[str, Any]) -> None:
    """Refuse to mix results of different oracle settings in one --out folder."""
    path = out / "run_config.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
        if diff:
            raise SystemExit(f"{out} holds oracle results made with other settings "
                             f"({', '.join(f'{k}: {a} != {b}' for k, (a, b) in diff.items())});"
                             f" choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def _sample(args: argparse.Namespace) -> pd.DataFrame:
    """The sampled MP binaries with DFT moduli and their composition-split half."""
    from invdesign.data import composition_split, load_dataset

    dataset = load_dataset(args.data, properties=list(DFT_PROPERTIES.values()),
                           max_atoms=args.max_atoms)
    y = dataset.targets(list(DFT_PROPERTIES.values()))
    keep = np.all(np.isfinite(y) & (y > 0), axis=1)
    if args.supported_only:
        from invdesign.oracle import supported_elements

        known = supported_elements(args.calculator)
        keep &= [{el.symbol for el in r.structure.composition} <= known for r in dataset]
    if args.labels is not None:
        keep &= np.isin(dataset.ids, args.labels["id"].to_numpy())
    good = np.flatnonzero(keep)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(good, size=min(args.n, len(good)), replace=False))
    records = [dataset[int(i)] for i in pick]
    split = composition_split([r.structure for r in records], (0.5, 0.0, 0.5), seed=args.seed)
    part = np.full(len(records), CALIBRATION, dtype=object)
    part[split.test] = HELD_OUT
    only = f" of elements {args.calculator} supports" if args.supported_only else ""
    _note(f"{args.data.name}: {len(good)} binaries{only} with <= {args.max_atoms} atoms and DFT "
          f"K, G; "
          f"sampled {len(records)} (seed {args.seed}): {len(split.train)} {CALIBRATION}, "
          f"{len(split.test)} {HELD_OUT}")
    return pd.DataFrame({
        "id": [r.id for r in records],
        "formula": [r.structure.composition.reduced_formula for r in records],
        "n_atoms": [len(r.structure) for r in records],
        "part": part,
        "K_dft": y[pick, 0], "G_dft": y[pick, 1],
        "structure": [r.structure for r in records],
    })


def _reference_structures(names: str, cell: str) -> tuple[list[Any], dict[str, Any]]:
    from invdesign.data.examples import REFERENCES, reference_structures

    if names == "none":
        return [], {}
    wanted = None if names == "all" else {n.strip() for n in names.split(",")}
    unknown = sorted((wanted or set()) - {r.name for r in REFERENCES})
    if unknown:
        raise SystemExit(f"unknown reference(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(r.name for r in REFERENCES)}")
    refs = [r for r in REFERENCES if wanted is None or r.name in wanted]
    cells = reference_structures(primitive=cell == "primitive")
    return refs, {ref.name: cells[ref.name] for ref in refs}


def _oracle(items: list[tuple[str, Any]], path: Path, args: argparse.Namespace) -> pd.DataFrame:
    from invdesign.oracle import run_many

    if not items:
        return pd.DataFrame(columns=["id"])
    results = run_many(items, path, calculator=args.calculator, workers=args.workers,
                       temperature=args.temperature, steps=args.steps,
                       progress=not args.no_progress)
    wanted = {i for i, _ in items}
    return results[results["id"].isin(wanted)].drop_duplicates("id", keep="last")


def _targets_markdown(moduli: list[dict[str, Any]], refs: dict[str, Any] | None,
                      median_s: float, refs_calibrated: dict[str, Any] | None = None,
                      ) -> tuple[str, dict[str, Any]]:
    def held(modulus: str, oracle: str, key: str) -> float:
        for r in moduli:
            if (r["data"].startswith(HELD_OUT) and r["modulus"] == modulus
                    and r["oracle"].startswith(oracle) and key in r):
                return r[key]
        return float("nan")

    def judged(value: float, target: float, higher: bool) -> str:
        if not np.isfinite(value):
            return "n/a"
        met = value >= target if higher else value <= target
        return f"{value:.3g} ({'met' if met else 'not met'})"

    rows, out = [], {}
    for m in ("K", "G"):
        for key, higher, label in (("spearman", True, "Spearman"),
                                   ("mae_log10", False, "MAE log10")):
            target = TARGETS[f"{m} {key}"]
            raw, cal = held(m, "raw", key), held(m, "calibrated", key)
            rows.append([f"{m} vs DFT, {HELD_OUT} half, {label}",
                         f"{'>=' if higher else '<='} {target}",
                         judged(raw, target, higher), judged(cal, target, higher)])
            out[f"{m} {key}"] = {"target": target, "raw": raw, "calibrated": cal}
    if refs is not None:
        cal = refs_calibrated or {"alpha": {"spearman": math.nan},
                                  "share_within_factor_2": math.nan}
        for key, stat, label in (
                ("alpha spearman", lambda r: r["alpha"]["spearman"], "Spearman"),
                ("alpha within x2", lambda r: r["share_within_factor_2"],
                 "share within a factor 2")):
            raw, calibrated = stat(refs), stat(cal)
            rows.append([f"alpha vs experiment, {label}", f">= {TARGETS[key]}",
                         judged(raw, TARGETS[key], True), judged(calibrated, TARGETS[key], True)])
            out[key] = {"target": TARGETS[key], "raw": raw, "calibrated": calibrated}
    rows.append(["median seconds per structure (<= 20 atoms, successes, 1 core)",
                 f"<= {TARGETS['median seconds']}",
                 judged(median_s, TARGETS["median seconds"], False), ""])
    out["median seconds"] = {"target": TARGETS["median seconds"], "raw": median_s}
    header = ["target (issue 3)", "required", "raw oracle", "calibrated oracle"]
    return markdown_table(header, rows), out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="MP binary elasticity file (default: the shared data folder's)")
    parser.add_argument("--out", type=Path, default=Path("runs/oracle"))
    parser.add_argument("--n", type=int, default=80, help="MP binaries to sample")
    parser.add_argument("--max-atoms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--calculator", choices=get_args(CalculatorName), default="chgnet")
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--supported-only", action="store_true",
                        help="sample only binaries of elements the calculator supports")
    parser.add_argument("--references", default="all",
                        help="reference crystals: 'all', 'none' or comma-separated names")
    parser.add_argument("--reference-cell", choices=["primitive", "conventional"],
                        default="primitive")
    parser.add_argument("--labels", type=Path, default=None,
                        help="an `invdesign label` CSV of these binaries (same calculator and "
                        "settings): sample only its ids and reuse its results")
    parser.add_argument("--calibration-out", type=Path, default=None,
                        help="calibration JSON (default: <out>/calibration.json)")
    parser.add_argument("--ship-calibration", type=Path, default=None,
                        help="also fit the calibration on every usable row (both halves) and "
                             "write it here, for `invdesign verify` (its expected error is the "
                             "held-out figure of the half fit)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    _limit_threads(1)
    import rich

    rich.reconfigure(stderr=True)  # progress bars to stderr: stdout is the markdown
    args.data = args.data or shared_mp_elasticity()
    if args.data is None or not Path(args.data).exists():
        raise SystemExit("no --data given and ../shared/data/mp_binary_elasticity not found")
    if args.n < 1 or args.workers < 1:
        raise SystemExit("--n and --workers must be positive")
    start = time.perf_counter()
    _check_run_config(args.out, {"calculator": args.calculator, "temperature": args.temperature,
                                 "steps": args.steps, "reference_cell": args.reference_cell})

    if args.labels is not None:
        labels = pd.read_csv(args.labels)  # a snapshot: a running `label` may append to it
        others = set(labels.get("calculator", pd.Series(dtype=str)).dropna()) - {args.calculator}
        if others:
            raise SystemExit(f"{args.labels}: results of {', '.join(sorted(others))}, "
                             f"not {args.calculator}: pass --calculator")
        args.labels = labels.dropna(subset=["status"]).drop_duplicates("id", keep="last")
    sample = _sample(args)
    if args.labels is not None:
        args.labels[args.labels["id"].isin(sample["id"])].to_csv(args.out / MP_CSV, index=False)
    refs, ref_structures = _reference_structures(args.references, args.reference_cell)
    _note(f"oracle ({args.calculator}, {args.workers} worker(s)) on {len(sample)} MP binaries ...")
    mp = _oracle(list(zip(sample["id"], sample["structure"], strict=True)), args.out / MP_CSV,
                 args)
    _note(f"oracle on {len(ref_structures)} reference crystals ({args.reference_cell} cells) ...")
    ref_results = _oracle(list(ref_structures.items()), args.out / REF_CSV, args)

    frame = sample.drop(columns="structure").merge(
        mp.drop(columns="formula"), on="id", how="left")
    frame["status"] = frame["status"].fillna("missing")
    split_text = (f"{args.data.name}: {len(sample)} binaries <= {args.max_atoms} atoms sampled "
                  f"with seed {args.seed}, composition split seed {args.seed}, "
                  f"{CALIBRATION} half ({int((frame['part'] == CALIBRATION).sum())} structures)")
    moduli, calibration, least_squares, note = evaluate_moduli(
        frame, calculator=args.calculator, fit_split=split_text, source=args.data.name)
    for m in MODULI:
        frame[m.split("_")[0] + "_calibrated"] = (calibration.apply_table(frame)[m]
                                                  if calibration else np.nan)

    n_atoms = {**dict(zip(sample["id"], sample["n_atoms"], strict=True)),
               **{k: len(s) for k, s in ref_structures.items()}}
    if calibration is not None and len(ref_results):
        ref_results = calibrated_results(ref_results, calibration, temperature=args.temperature)
    ref_rows = reference_rows(ref_results, refs, n_atoms) if refs else []
    ref_summary = reference_stats(ref_rows) if refs else None
    ref_calibrated = (reference_stats(ref_rows, "alpha_calibrated", "ratio_calibrated")
                      if refs and calibration is not None else None)

    timed = pd.concat([frame[["id", "seconds", "status"]],
                       ref_results.reindex(columns=["id", "seconds", "status"])],
                      ignore_index=True).dropna(subset=["seconds"])
    timed_atoms = [n_atoms[i] for i in timed["id"]]
    timing = timing_table(timed_atoms, timed["seconds"], timed["status"] == "ok")
    small_ok = timed[(timed["status"] == "ok") & (np.asarray(timed_atoms) <= 20)]
    median_s = float(small_ok["seconds"].median()) if len(small_ok) else float("nan")
    failures_mp = failure_table(frame["status"])
    failures_ref = failure_table(ref_results["status"]) if len(ref_results) else failure_table([])

    # --- print -----------------------------------------------------------------------------
    n_cal, n_held = (int((frame["part"] == p).sum()) for p in (CALIBRATION, HELD_OUT))
    print(f"\n## Physics oracle benchmark ({date.today()}, calculator {args.calculator})\n")
    if args.labels is not None:
        print(f"Oracle results of the MP binaries: the label table (`invdesign label`), "
              f"{len(args.labels)} labelled rows at the time of the run.\n")
    print(f"{len(frame)} MP binaries with <= {args.max_atoms} atoms sampled from "
          f"`{args.data.name}` (seed {args.seed}), split by reduced formula into a "
          f"{CALIBRATION} half ({n_cal}) and a {HELD_OUT} half ({n_held}); no formula is in both. "
          f"Moduli are compared where the oracle gave a Born-stable elastic tensor with positive "
          f"K and G (\"n used\").\n")
    print(f"### K and G vs DFT (PBE)\n\nThe calibration is fitted on the {CALIBRATION} half "
          f"only; every calibrated number is from the {HELD_OUT} half. 'all sampled' rows "
          f"(raw oracle, both halves) are for context.\n")
    print(metrics_markdown(moduli))
    if calibration is not None:
        print("\nCalibration (log10 M_dft = a log10 M_oracle + c log10 C_oracle + b, C the "
              f"covariate, fitted on the {CALIBRATION} half): " + "; ".join(
                  f"{f.modulus}: a = {f.slope:.3f}, "
                  + (f"c = {f.covariate_slope:.3f} (C = {f.covariate}), " if f.covariate else "")
                  + f"b = {f.intercept:+.3f} ({f.n_pairs} pairs)"
                  for f in calibration.fits))
        print(f"\nMean signed error in log10 by DFT range ({HELD_OUT} half; structures in "
              f"brackets). The default calibration is stretched to be unbiased across the "
              f"range; the least-squares map shrinks towards the mean:\n")
        print(bias_by_range(frame, {"calibrated (default)": calibration,
                                    "least-squares map": least_squares}))
    else:
        print(f"\nCalibration: {note.rstrip(')')} in the {CALIBRATION} half; at least "
              f"{MIN_PAIRS} needed)")
    if refs:
        print(f"\n### Thermal expansion and K vs experiment (reference crystals, "
              f"{args.reference_cell} cells, T = {args.temperature:g} K)\n")
        body = [[r["material"], r["atoms"], fmt(r["alpha_oracle_any"], ".1f"),
                 fmt(r["alpha_calibrated"], ".1f"), fmt(r["alpha_exp"], ".1f"),
                 fmt(r["ratio"], ".2f"), fmt(r["ratio_calibrated"], ".2f"),
                 fmt(r["K_oracle"], ".0f"), fmt(r["K_exp"], ".0f"), _short(r["status"])]
                for r in ref_rows]
        for row, r in zip(body, ref_rows, strict=True):
            row[0] += "" if r["listed"] else " (extra)"
        print(markdown_table(["material", "atoms", "oracle alpha (1e-6/K)", "calibrated alpha",
                              "experiment", "ratio", "calibrated ratio", "oracle K (GPa)",
                              "experiment K", "status"], body))
        print("\nThe target set is the crystals whose thermal expansion ../shared/data/README.md "
              "lists; '(extra)' rows are further textbook checks, counted only in the last "
              "figure of each line.")
        everything = {"alpha": reference_stats(ref_rows, listed_only=False),
                      "calibrated alpha": reference_stats(ref_rows, "alpha_calibrated",
                                                          "ratio_calibrated", listed_only=False)}
        for label, s in (("alpha", ref_summary), ("calibrated alpha", ref_calibrated)):
            if s is None:
                continue
            a = everything[label]
            print(f"\n{label}: Spearman {fmt(s['alpha']['spearman'])} over {s['alpha']['n']} "
                  f"successes; within a factor 2 of experiment: {s['within_factor_2']}/"
                  f"{s['n_references']} ({fmt(100 * s['share_within_factor_2'], '.0f')} %, "
                  f"failures count as outside). With the extra crystals: Spearman "
                  f"{fmt(a['alpha']['spearman'])}, {a['within_factor_2']}/{a['n_references']} "
                  f"within a factor 2.")
        s = ref_summary
        print(f"\nK: Spearman {fmt(s['K']['spearman'])}, MAE {fmt(s['K']['mae'], '.1f')} GPa "
              f"over {s['K']['n']}. Ratios are NaN when the status is not ok. Calibrated alpha: "
              f"the oracle's own E(V) fit rerun with the Poisson ratio of the K and G calibrated "
              f"on the {CALIBRATION} half of the MP binaries (`calibrated_results`).")
    print("\n### Seconds per structure (relax + elastic + alpha, one thread per worker)\n")
    print(markdown_table(["atoms", "structures", "ok", "median s (ok)", "median s (all)"],
                         [[r.atoms, r.n, r.n_ok, fmt(r.median_s_ok, ".1f"),
                           fmt(r.median_s, ".1f")] for r in timing.itertuples()]))
    total = float(timed["seconds"].sum())
    print(f"\nsum over these {len(timed)} structures: {total / 60:.1f} min of one core "
          f"(~{expected_wall_seconds(timed['seconds'], args.workers) / 60:.1f} min wall with "
          f"{args.workers} worker(s))")
    print("\n### Status by reason (MP binaries)\n")
    print(markdown_table(["status", "structures", "share"],
                         [[r.reason, r.n, f"{100 * r.share:.0f} %"]
                          for r in failures_mp.itertuples()]))
    if len(failures_ref):
        print("\nReference crystals: " + ", ".join(
            f"{r.reason} {r.n}" for r in failures_ref.itertuples()))
    targets_md, targets = _targets_markdown(moduli, ref_summary, median_s, ref_calibrated)
    print("\n### Targets\n")
    print(targets_md)

    # --- write -----------------------------------------------------------------------------
    cal_path = args.calibration_out or args.out / "calibration.json"
    if calibration is not None:
        calibration.save(cal_path)
        _note(f"calibration written to {cal_path}")
    elif cal_path.exists():
        _note(f"no calibration fitted ({note}); leaving the old {cal_path} as it is")
    if args.ship_calibration is not None:
        ship_calibration(frame, args.ship_calibration, calculator=args.calculator,
                         source=args.data.name)
    frame.to_csv(args.out / "comparison.csv", index=False)
    summary = {
        "date": str(date.today()), "calculator": args.calculator, "data": str(args.data),
        "n_sampled": len(frame), "max_atoms": args.max_atoms, "seed": args.seed,
        "workers": args.workers, "temperature": args.temperature,
        "split": {CALIBRATION: frame.loc[frame["part"] == CALIBRATION, "id"].tolist(),
                  HELD_OUT: frame.loc[frame["part"] == HELD_OUT, "id"].tolist()},
        "moduli": moduli,
        "calibration": calibration.to_dict() if calibration else {"note": note},
        "references": {"cell": args.reference_cell, "rows": ref_rows, "summary": ref_summary,
                       "summary_calibrated": ref_calibrated},
        "timing": timing.to_dict(orient="records"),
        "median_seconds_ok_le20": median_s,
        "total_seconds": total,
        "failures": {"mp": failures_mp.to_dict(orient="records"),
                     "references": failures_ref.to_dict(orient="records")},
        "targets": targets,
        "wall_seconds": time.perf_counter() - start,
    }
    (args.out / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
    _note(f"wrote {args.out / MP_CSV}, {args.out / REF_CSV}, {args.out / 'comparison.csv'}, "
          f"{args.out / 'summary.json'} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
