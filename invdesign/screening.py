"""Physics screen of design candidates: relax, check stability, re-score.

A decoded crystal is not at a local minimum, and the surrogate scores it as decoded. The screen
relaxes every candidate with the oracle's potential (cell and ions), re-runs the design checks
on the relaxed crystal (validity, uniqueness, novelty: a candidate that relaxes into a known
crystal is no longer novel, two that relax into the same one are no longer unique), places its
energy against the potential's convex hull of known phases, re-scores it with the surrogate,
and ranks the candidates that pass everything first. It costs about 1-10 s of one core per
candidate of <= 20 atoms (the elastic and thermal stages of `verify` are not run).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from invdesign.api import Designer
from invdesign.design.candidates import Candidates
from invdesign.design.scoring import Scorer
from invdesign.oracle.calculators import check_calculator_name, get_calculator
from invdesign.oracle.executor import process_pool
from invdesign.oracle.relax import RelaxationRunawayError, relax
from invdesign.oracle.stability import STABLE_E_HULL, Hull

__all__ = ["Relaxed", "relax_candidates", "relax_structures", "screen"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Relaxed:
    """A relaxation: the relaxed structure (None when it failed), its energy (eV/atom), RMSD
    from the input (A) and "ok" or "failed: <reason>"."""

    structure: Structure | None
    energy_per_atom: float
    rmsd: float
    status: str


def _relax_one(job: tuple[Structure, str, float]) -> Relaxed:
    structure, calculator, pressure = job
    try:
        import torch

        torch.set_num_threads(1)
        result = relax(structure, get_calculator(calculator), pressure=pressure)
    except RelaxationRunawayError as err:
        return Relaxed(None, math.nan, math.nan, f"failed: no convergence ({err})")
    except Exception as err:  # one bad candidate never stops the screen
        return Relaxed(None, math.nan, math.nan, f"failed: error: {type(err).__name__}: {err}")
    if not result.converged:
        return Relaxed(None, result.energy_per_atom, result.rmsd,
                       f"failed: no convergence ({result.steps} steps)")
    return Relaxed(result.structure, result.energy_per_atom, result.rmsd, "ok")


def relax_structures(structures: Sequence[Structure], calculator: str = "chgnet",
                     workers: int = 1, cache: str | Path | None = None,
                     pressure: float = 0.0) -> list[Relaxed]:
    """Cell + ion relaxation of each structure (`invdesign.oracle.relax` settings) under
    `pressure` (GPa), in `workers` processes; a failure is a status, never an exception.

    With `cache`, each result is appended to that CSV as it finishes (keyed by a hash of the
    input structure, the calculator and the pressure), and structures already in it are not
    relaxed again: an interrupted run loses nothing.
    """
    check_calculator_name(calculator)
    keys = [_key(s, calculator, pressure) for s in structures]
    done = _read_cache(Path(cache)) if cache is not None else {}
    todo = [i for i, k in enumerate(keys) if k not in done]
    jobs = [(structures[i], calculator, pressure) for i in todo]
    if workers <= 1 or len(jobs) <= 1:
        results: Iterator[Relaxed] = map(_relax_one, jobs)
        pool = None
    else:
        pool = process_pool(workers)
        results = pool.map(_relax_one, jobs)
    try:
        for i, result in zip(todo, results, strict=True):
            done[keys[i]] = result
            if cache is not None:
                _append_cache(Path(cache), keys[i], result)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return [done[k] for k in keys]


_CACHE_COLUMNS = ("key", "status", "energy_per_atom", "rmsd", "cif")


def _key(structure: Structure, calculator: str, pressure: float = 0.0) -> str:
    label = calculator if pressure == 0 else f"{calculator} at {pressure:g} GPa"
    return hashlib.sha256(f"{label}\n{structure.to(fmt='cif')}".encode()).hexdigest()


def _read_cache(path: Path) -> dict[str, Relaxed]:
    if not path.exists():
        return {}
    table = pd.read_csv(path, keep_default_na=False, na_values={"energy_per_atom": [""],
                                                                 "rmsd": [""]})
    return {row.key: Relaxed(Structure.from_str(row.cif, fmt="cif") if row.cif else None,
                             float(row.energy_per_atom), float(row.rmsd), row.status)
            for row in table.itertuples()}


def _append_cache(path: Path, key: str, result: Relaxed) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(_CACHE_COLUMNS)
        cif = result.structure.to(fmt="cif") if result.structure is not None else ""
        writer.writerow([key, result.status, result.energy_per_atom, result.rmsd, cif])


def relax_candidates(designer: Designer, candidates: Candidates, *, scorer: Scorer | None = None,
                     calculator: str = "chgnet", workers: int = 1, pressure: float = 0.0,
                     cache: str | Path | None = None, n_jobs: int = 1) -> Candidates:
    """`candidates` relaxed (`relax_structures`) and assessed again (`Designer.assess`:
    validity, uniqueness, novelty, predictions of the relaxed crystals).

    A candidate that was not decoded stays None; one whose relaxation failed keeps its input
    structure. The table keeps the input's ids and `requested_*` columns and adds
    `relax_status`, `relax_rmsd` (A) and `energy_per_atom` (eV/atom).
    """
    todo = [i for i, s in enumerate(candidates.structures) if s is not None]
    results = relax_structures([candidates.structures[i] for i in todo], calculator, workers,
                               cache, pressure)
    relaxed: list[Relaxed | None] = [None] * len(candidates)
    for i, result in zip(todo, results, strict=True):
        relaxed[i] = result
    structures = [r.structure or s if r is not None else None
                  for r, s in zip(relaxed, candidates.structures, strict=True)]
    assessed = designer.assess(structures, prefix="relaxed", scorer=scorer, n_jobs=n_jobs)
    table = assessed.table
    table["id"] = candidates.table["id"].to_numpy()
    for name in candidates.table.columns:
        if name.startswith("requested_"):
            table[name] = candidates.table[name].to_numpy()
    table["relax_status"] = [r.status if r is not None else "not decoded" for r in relaxed]
    table["relax_rmsd"] = [r.rmsd if r is not None else math.nan for r in relaxed]
    table["energy_per_atom"] = [r.energy_per_atom if r is not None else math.nan
                                for r in relaxed]
    return Candidates(assessed.structures, table)


def screen(designer: Designer, candidates: Candidates, scorer: Scorer, hull: Hull | None, *,
           calculator: str = "chgnet", workers: int = 1, max_e_hull: float = STABLE_E_HULL,
           cache: str | Path | None = None) -> Candidates:
    """Relax, re-check and re-score `candidates` (from `Designer.optimize`) and rank them
    (`cache`: see `relax_structures`).

    Returns:
        The relaxed candidates (the input structure where the relaxation failed), ranked with
        those that pass the screen (`passed`: relaxed, valid, unique, novel, in the surrogate's
        domain and no more than `max_e_hull` eV/atom above the hull) first, then by `scorer`'s
        score on the relaxed crystal. Columns as `Designer.assess`, plus `objective_decoded`
        (the search's score of the unrelaxed crystal), `relax_status`, `relax_rmsd`,
        `energy_per_atom`, `e_above_hull` and `decomposition`.
    """
    if not len(candidates):
        return candidates
    assessed = relax_candidates(designer, candidates, scorer=scorer, calculator=calculator,
                                workers=workers, cache=cache)
    table = assessed.table
    table["objective_decoded"] = candidates.table["objective"].to_numpy()
    ok = table["relax_status"].eq("ok").to_numpy()
    if hull is not None:
        table = hull.annotate(table, relaxed=ok)
    else:
        table = table.assign(e_above_hull=np.nan, decomposition="not relaxed")
    e_hull = table["e_above_hull"].to_numpy(dtype=float)
    stable = (e_hull <= max_e_hull) if hull is not None else np.ones(len(table), bool)
    passed = (ok & stable & table["valid"].to_numpy(bool) & table["unique"].to_numpy(bool)
              & table["novel"].fillna(True).to_numpy(bool)
              & table.get("in_domain", pd.Series(False, index=table.index)).to_numpy(bool))
    table["passed"] = passed
    score = table["score"].to_numpy(dtype=float) if "score" in table else np.zeros(len(table))
    order = np.lexsort((-np.nan_to_num(score, nan=-np.inf), ~passed))
    ranked = Candidates(assessed.structures, table).take(order)
    ranked.table["rank"] = np.arange(1, len(ranked) + 1)
    logger.info("physics screen: %d of %d candidates relaxed, %d passed (stable within %.2f "
                "eV/atom, valid, unique, novel, in domain)", int(ok.sum()), len(table),
                int(passed.sum()), max_e_hull)
    return ranked
