"""Run the oracle over many structures: in-process, in a local process pool or on Ray.

Results are appended to a CSV as each structure finishes (one flushed row at a time, header
once), so a killed run loses at most the structures in flight; a restarted run skips every id
already in the CSV. A structure that crashes its worker process is retried alone once and
then recorded as "failed: worker crashed".
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from invdesign.oracle.calculators import (
    DEFAULT_CALCULATOR,
    CalculatorName,
    check_calculator_name,
)
from invdesign.oracle.oracle import CSV_COLUMNS, OracleConfig, OracleResult, run_oracle

__all__ = ["completed_ids", "process_pool", "read_results", "run_many"]

logger = logging.getLogger(__name__)

Row = dict[str, Any]
_CIF = "_relaxed_cif"  # row key of the relaxed structure (not a CSV column)
_TEXT = ("id", "formula", "status", "mechanically_stable", "calculator", "thermal_method")
_NUMERIC = [c for c in CSV_COLUMNS if c not in _TEXT]


class _Job(NamedTuple):
    id: str
    structure: Structure
    calculator: CalculatorName
    temperature: float
    steps: int
    config: OracleConfig | None


def _job(job: _Job) -> Row:
    """Worker entry point: one oracle run, returned as a CSV row plus the relaxed structure's
    CIF under `_CIF`."""
    result = run_oracle(job.structure, structure_id=job.id, calculator=job.calculator,
                        temperature=job.temperature, steps=job.steps, config=job.config)
    return result.to_row() | {_CIF: result.relaxed_cif}


def _limit_threads(n: int = 1) -> None:
    """Worker initialiser: n BLAS/OpenMP/torch threads (processes share the cores).

    The environment variables cover libraries imported later (torch reads OMP_NUM_THREADS on
    import); torch already imported (e.g. by the main module) is set directly.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _ray_job(job: _Job) -> Row:
    _limit_threads(1)
    return _job(job)


def _crashed(job: _Job, why: str) -> Row:
    formula = job.structure.composition.reduced_formula if len(job.structure) else ""
    return OracleResult(id=job.id, formula=formula, status=f"failed: {why}",
                        method={"calculator": job.calculator}).to_row()


def completed_ids(out_csv: str | Path, calculator: str | None = None,
                  thermal_method: str | None = None) -> set[str]:
    """Ids already in a results CSV; repairs a last row cut off by a killed run and upgrades
    a file written by an older version (its header a prefix of `CSV_COLUMNS`) in place.

    Args:
        out_csv: The results file.
        calculator: The potential about to append to it; rows of another potential are an
            error (rows of older files, which did not record it, are not checked).
        thermal_method: Likewise for the thermal model ("" or None: not checked).

    Raises:
        ValueError: The file exists but its header is not `CSV_COLUMNS`, or it holds results
            of another potential than `calculator`.
    """
    path = Path(out_csv)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning("%s: dropping an incomplete last row (%d bytes)", path, len(data) - keep)
        with path.open("r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    if not rows:
        return set()
    header = tuple(rows[0])
    if header != CSV_COLUMNS and header == CSV_COLUMNS[:len(header)]:
        _upgrade(path, rows)
    elif header != CSV_COLUMNS:
        raise ValueError(f"{path}: not an oracle results file (columns {', '.join(rows[0])}; "
                         f"expected {', '.join(CSV_COLUMNS)}); choose another output file")
    for name, value in (("calculator", calculator), ("thermal_method", thermal_method)):
        column = rows[0].index(name) if name in rows[0] else None
        if not value or column is None:
            continue
        others = {row[column] for row in rows[1:] if len(row) > column} - {"", value}
        if others:
            raise ValueError(f"{path} holds results of {name} {', '.join(sorted(others))}; "
                             f"this run uses {value}: choose another output file (or {name})")
    return {row[0] for row in rows[1:] if row}


def _upgrade(path: Path, rows: list[list[str]]) -> None:
    """Rewrite an older results file with the current columns (new ones empty), atomically."""
    logger.warning("%s: adding column(s) %s to an older results file", path,
                   ", ".join(CSV_COLUMNS[len(rows[0]):]))
    tmp = path.with_name(path.name + ".upgrading")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(row + [""] * (len(CSV_COLUMNS) - len(row)) for row in rows[1:] if row)
    os.replace(tmp, path)


def read_results(out_csv: str | Path) -> pd.DataFrame:
    """A results CSV as a DataFrame (ids as strings, NaN for missing numbers, and for the
    columns an older file lacks; "" for the potential of rows that did not record it)."""
    df = pd.read_csv(out_csv, dtype=dict.fromkeys(("id", "formula", "status", "calculator",
                                                   "thermal_method"), str),
                     keep_default_na=False, na_values={c: ["", "nan"] for c in _NUMERIC})
    for column in CSV_COLUMNS:
        if column not in df.columns:
            df[column] = "" if column in ("calculator", "thermal_method") else np.nan
    stable = {"True": True, "False": False}
    df["mechanically_stable"] = df["mechanically_stable"].astype(str).map(stable)
    return df


@contextmanager
def _appender(path: Path) -> Iterator[Callable[[Row], None]]:
    """A function appending one row to `path` (header first for a new file), flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)

        def write(row: Row) -> None:
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())

        if new:
            writer.writeheader()
        yield write


def _sequential(jobs: Iterator[_Job]) -> Iterator[Row]:
    for job in jobs:
        yield _job(job)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for potential calls: spawned (a forked child of a process that already
    ran torch can hang in OpenMP), one BLAS/torch thread each."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=_limit_threads)


def _pool_round(jobs: Iterator[_Job], workers: int):
    """Yield rows until `jobs` is exhausted; return the jobs in flight if the pool breaks."""
    pool = process_pool(workers)
    inflight: dict[Future, _Job] = {}
    try:
        while True:
            while len(inflight) < 2 * workers and (job := next(jobs, None)) is not None:
                inflight[pool.submit(_job, job)] = job
            if not inflight:
                return []
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = [f for f in done if isinstance(f.exception(), BrokenProcessPool)]
            if broken:
                finished = [f for f in inflight if f.done() and f.exception() is None]
                for f in finished:
                    yield f.result()
                return [job for f, job in inflight.items() if f not in finished]
            for f in done:
                inflight.pop(f)
                yield f.result()  # other exceptions are caller errors: let them stop the run
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _isolated(job: _Job) -> Row:
    """Retry one job alone in a fresh process; a second crash becomes a failure row."""
    pool = process_pool(1)
    try:
        return pool.submit(_job, job).result()
    except BrokenProcessPool:
        return _crashed(job, "worker crashed")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _local_pool(jobs: Iterator[_Job], workers: int) -> Iterator[Row]:
    while True:
        crashed = yield from _pool_round(jobs, workers)
        if not crashed:
            return
        logger.warning("a worker process died; retrying %d structures one by one", len(crashed))
        for job in crashed:
            yield _isolated(job)


def _ray_pool(jobs: Iterator[_Job], address: str, workers: int) -> Iterator[Row]:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--ray-address needs ray: pip install 'ray[default]'") from exc
    ray.init(address=address, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1)(_ray_job)
    window = 2 * max(workers, int(ray.cluster_resources().get("CPU", 1)))
    inflight: dict[Any, _Job] = {}
    while True:
        while len(inflight) < window and (job := next(jobs, None)) is not None:
            inflight[remote.remote(job)] = job
        if not inflight:
            return
        (ref,), _ = ray.wait(list(inflight), num_returns=1)
        job = inflight.pop(ref)
        try:
            yield ray.get(ref)
        except ray.exceptions.RayError as exc:  # worker died or task failed
            yield _crashed(job, f"worker crashed ({type(exc).__name__})")


def _pending(items: Iterable[tuple[str, Structure]], done: set[str], make) -> Iterator[_Job]:
    seen = set(done)
    for item_id, structure in items:
        item_id = str(item_id)
        if item_id in seen:
            if item_id not in done:
                logger.warning("duplicate id %r skipped", item_id)
            continue
        seen.add(item_id)
        yield make(item_id, structure)


def _write_cif(folder: Path, item_id: str, cif: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id) or "_"
    (folder / f"{safe}.cif").write_text(cif)


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("oracle"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                    TimeRemainingColumn(), disable=not enabled)


def run_many(items: Iterable[tuple[str, Structure]], out_csv: str | Path, *,
             calculator: CalculatorName = DEFAULT_CALCULATOR, workers: int = 1,
             temperature: float = 300.0, steps: int = 200, config: OracleConfig | None = None,
             ray_address: str | None = None, progress: bool = True,
             structures_dir: str | Path | None = None) -> pd.DataFrame:
    """Run the oracle on every (id, structure) pair, streaming rows to `out_csv`, resumably.

    Args:
        items: (id, Structure) pairs; ids already in `out_csv` and repeated ids are skipped.
        out_csv: Results CSV (columns `CSV_COLUMNS`), created or appended to.
        calculator: Potential name (see `get_calculator`).
        workers: Worker processes (a local spawn pool, one thread each; 1 runs in this
            process). With Ray, tasks in flight are 2 x max(workers, cluster CPUs).
        temperature: Temperature of alpha, K.
        steps: Maximum optimiser steps per relaxation.
        config: Numerical settings (`OracleConfig()` by default).
        ray_address: Ray cluster address ("auto", "ray://host:10001"); None runs locally.
        progress: Show a progress bar.
        structures_dir: Also write each relaxed structure to `<structures_dir>/<id>.cif`
            (before its row, so a resumed run never lacks one).

    Returns:
        The whole results file as a DataFrame (earlier runs included).

    Raises:
        ValueError: Bad arguments, or an `out_csv` that is not a results file or holds
            results of another potential.
        ImportError: `ray_address` given but ray not installed, or the calculator's package.
    """
    check_calculator_name(calculator)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_csv = Path(out_csv)
    cfg = config or OracleConfig()
    done = completed_ids(out_csv, calculator, cfg.thermal_method if cfg.thermal else None)
    jobs = _pending(items, done, lambda i, s: _Job(i, s, calculator, temperature, steps, config))
    total = (sum(str(i) not in done for i, _ in items) if isinstance(items, Sequence)
             else None)
    if ray_address:
        rows = _ray_pool(jobs, ray_address, workers)
    else:
        rows = _local_pool(jobs, workers) if workers > 1 else _sequential(jobs)
    n = failed = 0
    with _appender(out_csv) as write, _progress(progress) as bar:
        task = bar.add_task("oracle", total=total, failed=0)
        for row in rows:
            cif = row.pop(_CIF, "")
            if structures_dir is not None and cif:
                _write_cif(Path(structures_dir), str(row["id"]), cif)
            write(row)
            n += 1
            failed += row["status"] != "ok"
            bar.update(task, advance=1, failed=failed)
    logger.info("%s: %d new rows (%d failed), %d already done", out_csv, n, failed, len(done))
    return read_results(out_csv)
