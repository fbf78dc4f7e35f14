"""Worker processes for batch checks of many structures."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def process_pool(n_jobs: int) -> ProcessPoolExecutor:
    """Worker processes (forked where the platform allows: no re-imports)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(n_jobs, mp_context=context)


def map_chunks(function: Callable[[list[Any]], list[T]], items: Sequence[Any],
               n_jobs: int) -> list[T]:
    """`function` over contiguous chunks of `items` in `n_jobs` processes, results in order.

    `function` maps a list of items to a list of results of the same length; it must be a
    module-level function (it is pickled).
    """
    size = -(-len(items) // (4 * n_jobs))
    chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
    with process_pool(n_jobs) as pool:
        return [result for part in pool.map(function, chunks) for result in part]
