"""Worker processes for batch checks of many structures, with progress from inside them."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, total)

TICK_INTERVAL = 0.1  # s; a worker sends its ticks at most this often
_ticks: Any = None  # in a worker: the queue its `tick`s go to (set by `process_pool`)
_pending = 0  # ticks not sent yet
_last_sent = 0.0


def _set_ticks(ticks: Any) -> None:
    global _ticks
    _ticks = ticks
    if ticks is not None:
        ticks.cancel_join_thread()  # progress is disposable: never hold up a worker's exit


def tick(count: int = 1) -> None:
    """In a worker process: `count` more items done, sent to `gather` at most every
    `TICK_INTERVAL` seconds; outside a worker with a queue, nothing."""
    global _pending, _last_sent
    if _ticks is None:
        return
    _pending += count
    now = time.monotonic()
    if now - _last_sent >= TICK_INTERVAL:
        _ticks.put(_pending)
        _pending, _last_sent = 0, now


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def process_pool(n_jobs: int, ticks: Any = None) -> ProcessPoolExecutor:
    """Worker processes (forked where the platform allows: no re-imports); with `ticks`, a
    queue from `progress_queue`, the workers' `tick` calls go to it."""
    return ProcessPoolExecutor(n_jobs, mp_context=_context(), initializer=_set_ticks,
                               initargs=(ticks,))


def progress_queue() -> Any:
    """A queue worker processes can `tick` into (pass it to `process_pool`)."""
    return _context().Queue()


def gather(futures: Iterable[Future], ticks: Any, progress: Progress | None, done: int,
           total: int) -> list[Any]:
    """The futures' results in order, reporting `progress(done, total)` as workers tick
    (`ticks` None: only when all are done)."""
    futures = list(futures)
    while ticks is not None and not all(f.done() for f in futures):
        try:
            done += ticks.get(timeout=0.2)
        except queue.Empty:
            continue
        if progress is not None:
            progress(min(done, total), total)
    if progress is not None:
        progress(total, total)
    return [f.result() for f in futures]


def map_chunks(function: Callable[[list[Any]], list[T]], items: Sequence[Any],
               n_jobs: int, progress: Progress | None = None) -> list[T]:
    """`function` over contiguous chunks of `items` in `n_jobs` processes, results in order
    (`progress(done, total)` as chunks finish).

    `function` maps a list of items to a list of results of the same length; it must be a
    module-level function (it is pickled).
    """
    size = -(-len(items) // (4 * n_jobs))
    chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
    with process_pool(n_jobs) as pool:
        futures = [pool.submit(function, chunk) for chunk in chunks]
        done = 0
        for future in as_completed(futures):
            done += len(chunks[futures.index(future)])
            if progress is not None:
                progress(done, len(items))
        return [result for future in futures for result in future.result()]
