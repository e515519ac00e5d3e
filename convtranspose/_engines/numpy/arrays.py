"""Views and copies of the routes' operands: by group, and channel-major."""

from __future__ import annotations

from typing import Tuple

import numpy as np

from .workspace import workspace


def view(array: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """``array`` seen with another shape, never a copy (the routes write through it)."""
    seen = array.view()
    seen.shape = shape  # raises instead of copying when the strides do not allow it
    return seen


def by_group(array: np.ndarray, group: int) -> np.ndarray:
    """``(N, C, H, W)`` seen as ``(N, G, C/G, H, W)``."""
    n, channels = array.shape[:2]
    return view(array, (n, group, channels // group) + array.shape[2:])


def channel_major(x: np.ndarray, group: int) -> np.ndarray:
    """``(N, Cin, H, W)`` -> ``(G, cig, N*H*W)``, a contiguous copy in the workspace."""
    n, cin, h, w = x.shape
    copy = workspace("channel_major", (group, cin // group, n, h, w), x.dtype)
    copy[...] = x.reshape(n, group, cin // group, h, w).transpose(1, 2, 0, 3, 4)
    return copy.reshape(group, cin // group, n * h * w)
