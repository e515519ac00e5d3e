"""Batch chunks within the working-memory budget, and the thread pool that runs them.

NumPy releases the GIL in BLAS and in element-wise loops, so while one chunk is in a BLAS
product (which OpenBLAS runs on all cores) another's copies and adds proceed. That pays off
only where element-wise work dominates (the planner decides, see ``plan``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Tuple, TypeVar

if TYPE_CHECKING:  # the settings check route names, and the routes use this module
    from .settings import Tuning

T = TypeVar("T")

# One pool per worker count (the count is a setting); created on first use.
_pools: Dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def largest(fits: Callable[[int], bool], most: int) -> int:
    """The largest count in ``[1, most]`` for which ``fits`` holds (1 when none does).

    ``fits`` must be monotone: true up to some count, false above it.
    """
    if most <= 1 or fits(most):
        return max(most, 1)
    low, high = 1, most  # fits(high) is false
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


@functools.lru_cache(maxsize=1024)
def spans(length: int, step: int) -> Tuple[Tuple[int, int], ...]:
    """``(start, stop)`` of the pieces of ``range(length)`` at most ``step`` long."""
    return tuple((start, min(length, start + step)) for start in range(0, length, step))


def batch_chunks(n: int, per_image: int, budget: int, threads: bool, tuning: Tuning) -> List[slice]:
    """Batch slices whose working memory (``per_image`` bytes an image) fits ``budget``.

    One image at least (the routes split it further). With ``threads`` (and at least
    ``tuning.parallel_bytes`` of work) there is at least one slice per worker.
    """
    if n * per_image <= budget and not threads:
        return [slice(0, n)]
    step = largest(lambda count: count * per_image <= budget, n)
    if threads and n * per_image >= tuning.parallel_bytes:
        step = min(step, -(-n // tuning.workers))
    return [slice(start, stop) for start, stop in spans(n, step)]


def run_chunks(task: Callable[[slice], T], chunks: List[slice], threads: bool, workers: int) -> Iterator[T]:
    """Run ``task`` on every chunk, on a pool of ``workers`` threads when there are several.

    Chunks write disjoint batch slices, so no locking is needed. Results come one by one, in
    the chunks' order, and threads take the chunks in waves of one per worker, so no more
    results (each chunk's weight gradient) wait at once than there are workers.
    """
    if not threads or len(chunks) < 2 or workers < 2:
        for chunk in chunks:
            yield task(chunk)
        return
    pool = _pool(workers)
    for start in range(0, len(chunks), workers):
        futures = [pool.submit(task, chunk) for chunk in chunks[start : start + workers]]
        for future in futures:
            yield future.result()


def _pool(workers: int) -> concurrent.futures.ThreadPoolExecutor:
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools.setdefault(
            workers, concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convtranspose")
        )
    return pool


def _after_fork_in_child() -> None:
    # A forked child inherits the pool objects but not their threads: start afresh.
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
