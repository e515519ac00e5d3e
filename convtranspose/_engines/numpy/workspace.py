"""Scratch buffers kept per thread between calls, and what a forked child does with them.

Fresh multi-megabyte arrays come back from the allocator as new zero pages whose first touch
costs as much as the copy itself (measured: the same forward took 2.6 or 6.6 ms depending on
the heap's state), so the routes take their intermediate arrays from named slots that grow
as needed and stay between calls. Nothing returned to the caller ever lives here;
:func:`release_workspace` frees it all.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from typing import Dict, Tuple

import numpy as np

# Keyed weakly by the thread object, so a finished thread's buffers go with it (a
# thread-per-request server does not accumulate them).
_slots_by_thread: "weakref.WeakKeyDictionary[threading.Thread, Dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def _thread_slots() -> Dict[str, np.ndarray]:
    thread = threading.current_thread()
    slots = _slots_by_thread.get(thread)
    if slots is None:
        slots = _slots_by_thread[thread] = {}
    return slots


def _grow(slots: Dict[str, np.ndarray], slot: str, size: int) -> np.ndarray:
    # Drop the old buffer first: when no view of it is alive its memory goes back before
    # the larger one is taken, so a growing slot never holds both.
    slots.pop(slot, None)
    buffer = slots[slot] = np.empty(max(size, 1), dtype=np.uint8)
    return buffer


def workspace(slot: str, shape: Tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
    """A scratch array of ``shape`` and ``dtype``, kept per thread and slot, reused across calls.

    Args:
        slot: the buffer's name; a later request for the same slot reuses (and may
            overwrite) it, so a route gives each array it holds at once a slot of its own.
        shape: the array's shape.
        dtype: the array's dtype.
        zero: fill it with zeros (otherwise it holds whatever the slot held).

    Returns:
        A C-contiguous view of the slot's buffer.
    """
    slots = _thread_slots()
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = slots.get(slot)
    if buffer is None or buffer.nbytes < size:
        buffer = _grow(slots, slot, size)
    array = buffer[:size].view(dtype).reshape(shape)
    if zero:
        array.fill(0)
    return array


def reserve(slot: str, size: int) -> None:
    """Grow a slot to ``size`` bytes before a loop whose steps ask for different sizes.

    Otherwise the slot could grow step by step while the previous step's view keeps the old
    buffer alive, holding both at once.
    """
    slots = _thread_slots()
    buffer = slots.get(slot)
    if buffer is None or buffer.nbytes < size:
        _grow(slots, slot, size)


def workspace_bytes() -> int:
    """Bytes of scratch memory the engine holds between calls (all live threads)."""
    return sum(buffer.nbytes for slots in list(_slots_by_thread.values()) for buffer in slots.values())


def release_workspace() -> None:
    """Free the scratch buffers of every thread (they are kept between calls for speed)."""
    for slots in list(_slots_by_thread.values()):
        slots.clear()


def _after_fork_in_child() -> None:
    # A forked child starts afresh (the other threads' buffers are unreachable there).
    _slots_by_thread.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
