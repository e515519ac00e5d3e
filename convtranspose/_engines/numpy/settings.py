"""The NumPy engine's tuning settings: one object, process-wide values and scoped overrides.

The settings change speed and memory, and the results only within rounding: the same
multiply-adds run whatever the values, but the chunks and bands they decide change the
shapes of the BLAS products (whose blocking can round differently) and the order in which
the weight gradient's chunk parts are summed. So ``y``, ``dx`` and ``dweight`` may differ in
their last bits between settings; the same settings give bitwise the same results.

A call reads the settings once, at its start (:meth:`EngineSettings.current`), and passes
what it read down to the routes and the thread pool, so an override made while a call runs
never changes that call half-way.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
from typing import Any, Dict, Iterator, Optional

from .routes import BACKWARD_ROUTES, FORWARD_ROUTES


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def _check_int(name: str, value: Any, least: int) -> None:
    kind = "a positive int" if least == 1 else f"an int >= {least}"
    if type(value) is not int:  # bool is an int subclass, and no setting
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_route(name: str, value: Optional[str], table: Dict[str, Any]) -> None:
    if value is not None and value not in table:
        raise ValueError(f"unknown route {value!r}; known: {sorted(table)}")


@dataclasses.dataclass(frozen=True)
class Tuning:
    """One consistent set of the engine's settings, as a call reads them.

    Attributes:
        chunk_bytes: working-memory budget of the batch chunks, in bytes (chunks run at
            once on the thread pool share it). A single image above it is split inside
            the route, down to a unit each route states in its module docstring.
        parallel_bytes: below this many bytes of intermediate data a thread hand-off costs
            more than it saves, and the batch stays on the calling thread.
        workers: threads of the pool that runs batch chunks at once.
        threads: None lets the planner decide whether chunks go to the pool (only for
            depthwise-like products); True or False decides it (tests, benchmarks).
        forward_route, backward_route: None lets the planner choose; a route name forces it.
    """

    chunk_bytes: int = 64 * 2**20
    parallel_bytes: int = 4 * 2**20
    workers: int = dataclasses.field(default_factory=_default_workers)
    threads: Optional[bool] = None
    forward_route: Optional[str] = None
    backward_route: Optional[str] = None

    def __post_init__(self) -> None:
        _check_int("chunk_bytes", self.chunk_bytes, 1)
        _check_int("parallel_bytes", self.parallel_bytes, 0)
        _check_int("workers", self.workers, 1)
        if self.threads is not None and type(self.threads) is not bool:
            raise TypeError(f"threads must be None, True or False, got {self.threads!r}")
        _check_route("forward_route", self.forward_route, FORWARD_ROUTES)
        _check_route("backward_route", self.backward_route, BACKWARD_ROUTES)

    def chunk_budget(self, threads: bool) -> int:
        """Working-memory budget of one chunk: chunks on the pool's threads run at once."""
        return max(1, self.chunk_bytes // self.workers) if threads and self.workers > 1 else self.chunk_bytes


_FIELDS = frozenset(field.name for field in dataclasses.fields(Tuning))


def _check_names(changes: Dict[str, Any]) -> None:
    unknown = sorted(set(changes) - _FIELDS)
    if unknown:
        raise TypeError(f"unknown NumPy engine setting {unknown[0]!r}; known: {sorted(_FIELDS)}")


class EngineSettings:
    """The engine's settings: process-wide values, and overrides scoped to a block.

    :meth:`set` changes the values every thread sees; :meth:`override` changes them for the
    calling thread or async task only, until its block ends (a ``ContextVar``: other threads,
    and the pool's worker threads, keep the process-wide values; a call reads the settings on
    the calling thread and hands them to its workers).

    Args:
        **values: initial process-wide values, as the fields of :class:`Tuning`.

    Example:
        >>> engine_settings = EngineSettings(chunk_bytes=2**20)
        >>> with engine_settings.override(workers=1):
        ...     engine_settings.current().workers, engine_settings.current().chunk_bytes
        (1, 1048576)
        >>> engine_settings.current().workers == min(2, os.cpu_count() or 1)
        True
    """

    def __init__(self, **values: Any) -> None:
        _check_names(values)
        self._values = Tuning(**values)
        self._lock = threading.Lock()
        self._scoped: contextvars.ContextVar[Optional[Dict[str, Any]]] = contextvars.ContextVar(
            "convtranspose_numpy_settings", default=None
        )

    def current(self) -> Tuning:
        """The values in force for the calling thread or task: the overrides over the process-wide values."""
        scoped = self._scoped.get()
        return dataclasses.replace(self._values, **scoped) if scoped else self._values

    def set(self, **changes: Any) -> None:
        """Change process-wide values (every thread's, beneath any override).

        Raises:
            TypeError: an unknown setting, or a value of the wrong type.
            ValueError: a value out of range, or an unknown route name.
        """
        _check_names(changes)
        with self._lock:
            self._values = dataclasses.replace(self._values, **changes)

    @contextlib.contextmanager
    def override(self, **changes: Any) -> Iterator[Tuning]:
        """Within the block, these values for the calling thread or task (nested blocks stack).

        Yields:
            The values now in force.

        Raises:
            TypeError: an unknown setting, or a value of the wrong type.
            ValueError: a value out of range, or an unknown route name.
        """
        _check_names(changes)
        dataclasses.replace(self.current(), **changes)  # checks the values before the block runs
        token = self._scoped.set({**(self._scoped.get() or {}), **changes})
        try:
            yield self.current()
        finally:
            self._scoped.reset(token)


settings = EngineSettings()


def set_chunk_bytes(limit: int) -> None:
    """Set the NumPy engine's working-memory budget per batch chunk, in bytes.

    The engine splits the batch, and a single image that alone exceeds the budget, so that
    the scratch buffers of one chunk stay within ``limit`` (each route's module docstring
    names the unit it cannot split). Larger budgets mean fewer, larger BLAS products.

    Args:
        limit: a positive int (default 64 MiB).

    Raises:
        TypeError: ``limit`` is not an int.
        ValueError: ``limit`` is not positive.

    Example:
        >>> set_chunk_bytes(16 * 2 ** 20)
        >>> set_chunk_bytes(64 * 2 ** 20)
    """
    settings.set(chunk_bytes=limit)


@contextlib.contextmanager
def numpy_engine_settings(chunk_bytes: Optional[int] = None, workers: Optional[int] = None) -> Iterator[None]:
    """Within the block, other tuning values for the NumPy engine (this thread or task only).

    They change speed and memory, and the results only within rounding: the same
    multiply-adds run, but split into other BLAS products and summed over batch chunks in
    another order, so results may differ in their last bits from those of other settings
    (the same settings always give bitwise the same results).

    Args:
        chunk_bytes: the working-memory budget of a batch chunk in bytes (a positive int;
            default 64 MiB, process-wide with :func:`set_chunk_bytes`); None keeps it.
        workers: the threads that run batch chunks at once, for depthwise-like products (a
            positive int; default ``min(2, os.cpu_count())``); None keeps it.

    Raises:
        TypeError: a value that is not an int.
        ValueError: a value that is not positive.

    Example:
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> with ct.numpy_engine_settings(chunk_bytes=2**20, workers=1):
        ...     ct.conv2d_transpose(np.ones((8, 2, 4, 4), np.float32), np.ones((2, 2, 3, 3), np.float32)).shape
        (8, 2, 4, 4)
    """
    changes = {name: value for name, value in (("chunk_bytes", chunk_bytes), ("workers", workers)) if value is not None}
    with settings.override(**changes):
        yield
