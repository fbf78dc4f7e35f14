"""Worker processes for batch jobs over many structures (checks, features, files), with
progress from inside them.

Each worker receives the batch (`worker_pool`'s `shared`) once, when it starts, and its tasks
receive indices into it. Where the platform forks, the workers inherit it without any
pickling: pickling 10,000 pymatgen structures there and back costs several seconds of the
parent's time, more than many of the checks themselves.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, total)
Stage = tuple[Progress | None, int, int]  # (callback, done before the workers start, total)
Submit = Callable[..., Future]

TICK_INTERVAL = 0.1  # s; a worker sends its ticks at most this often
_ticks: Any = None  # in a worker: the queue its `tick`s go to (set by `worker_pool`)
_pending: dict[int, int] = {}  # stage -> ticks not sent yet
_last_sent = 0.0
_shared: Any = None  # in a worker: its pool's `shared` object


def _start_worker(ticks: Any, shared: Any) -> None:
    global _ticks, _shared
    _ticks, _shared = ticks, shared
    if ticks is not None:
        ticks.cancel_join_thread()  # progress is disposable: never hold up a worker's exit


def tick(count: int = 1, stage: int = 0) -> None:
    """In a worker process: `count` more items of `stage` (an index into `gather`'s stages)
    done, sent at most every `TICK_INTERVAL` seconds; outside a worker with a queue, nothing."""
    global _last_sent
    if _ticks is None:
        return
    _pending[stage] = _pending.get(stage, 0) + count
    now = time.monotonic()
    if now - _last_sent >= TICK_INTERVAL:
        _ticks.put(dict(_pending))
        _pending.clear()
        _last_sent = now


class Increments:
    """A ``progress(done, total)`` that passes on only the increase of `done` since the last
    call, as ``report(count)`` (e.g. ``partial(tick, stage=1)`` in a worker)."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.report, self.done = report, 0

    def __call__(self, done: int, total: int) -> None:
        self.report(done - self.done)
        self.done = done


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def progress_queue() -> Any:
    """A queue worker processes can `tick` into (pass it to `worker_pool`)."""
    return _context().Queue()


def _with_shared(function: Callable[..., T], *args: Any) -> T:
    return function(_shared, *args)


@contextmanager
def worker_pool(n_jobs: int, shared: Any = None, ticks: Any = None) -> Iterator[Submit]:
    """`n_jobs` worker processes, as a ``submit(function, *args)`` that runs
    ``function(shared, *args)`` in one of them and returns its future.

    Each worker gets `shared` once, as it starts: forked workers inherit it (nothing is
    pickled), spawned ones unpickle it once; keep `args` small (indices into `shared`). With
    `ticks`, a queue from `progress_queue`, the workers' `tick` calls go to it. `function`
    must be a module-level function (it is pickled).
    """
    with ProcessPoolExecutor(n_jobs, mp_context=_context(), initializer=_start_worker,
                             initargs=(ticks, shared)) as pool:
        yield lambda function, *args: pool.submit(_with_shared, function, *args)


def gather(futures: Iterable[Future], ticks: Any, stages: Sequence[Stage]) -> list[Any]:
    """The futures' results in order, reporting each stage's ``progress(done, total)`` as the
    workers tick it (`ticks` None: only when all are done)."""
    futures = list(futures)
    done = [count for _, count, _ in stages]
    while ticks is not None and not all(f.done() for f in futures):
        try:
            counts = ticks.get(timeout=0.2)
        except queue.Empty:
            continue
        for stage, count in counts.items():
            done[stage] += count
            progress, _, total = stages[stage]
            if progress is not None:
                progress(min(done[stage], total), total)
    for progress, _, total in stages:
        if progress is not None:
            progress(total, total)
    return [f.result() for f in futures]


def _on_chunk(items: Sequence[Any], function: Callable[[list[Any]], list[T]], start: int,
              stop: int) -> list[T]:
    return function(list(items[start:stop]))


def map_chunks(function: Callable[[list[Any]], list[T]], items: Sequence[Any],
               n_jobs: int, progress: Progress | None = None) -> list[T]:
    """`function` over contiguous chunks of `items` in `n_jobs` processes, results in order
    (`progress(done, total)` as chunks finish).

    `function` maps a list of items to a list of results of the same length; it must be a
    module-level function (it is pickled). Forked workers inherit `items`.
    """
    size = -(-len(items) // (4 * n_jobs))
    bounds = [(start, min(start + size, len(items))) for start in range(0, len(items), size)]
    with worker_pool(n_jobs, shared=items) as submit:
        futures = {submit(_on_chunk, function, start, stop): stop - start
                   for start, stop in bounds}
        done = 0
        for future in as_completed(futures):
            done += futures[future]
            if progress is not None:
                progress(done, len(items))
        return [result for future in futures for result in future.result()]
