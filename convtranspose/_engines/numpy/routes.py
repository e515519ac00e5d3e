"""The routes of each direction by name, each with its working-memory estimate.

Every route does exactly the multiply-adds of the convolution (no zero insertion) in BLAS
products; they differ in the data they move around those products (each route's module
says how), and ``plan`` picks the cheaper one from the spec and the input shape.

A forward route is called ``run(window, x, weight, spec, group, budget)`` and writes
``window``; a backward route ``run(grad_window, x, weight, spec, group, budget, dx,
need_dweight)`` writes ``dx`` (None: skipped) and returns the weight gradient (None when not
needed). ``working_bytes(spec, x_shape, itemsize)`` is what the route holds for ``x_shape``
in one piece, from which the batch is chunked.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

from ...spec import Conv2dTransposeSpec
from .col2im import col2im_bytes, col2im_nhwc_bytes, forward_col2im, forward_col2im_nhwc
from .im2col import backward_im2col, im2col_bytes
from .phases_route import backward_phases, forward_phases, phases_backward_bytes, phases_forward_bytes

WorkingBytes = Callable[[Conv2dTransposeSpec, Tuple[int, ...], int], int]


class ForwardRoute(NamedTuple):
    """A forward route and its working-memory estimate."""

    run: Callable[[np.ndarray, np.ndarray, np.ndarray, Conv2dTransposeSpec, int, int], None]
    working_bytes: WorkingBytes


class BackwardRoute(NamedTuple):
    """A backward route and its working-memory estimate."""

    run: Callable[
        [np.ndarray, np.ndarray, np.ndarray, Conv2dTransposeSpec, int, int, Optional[np.ndarray], bool],
        Optional[np.ndarray],
    ]
    working_bytes: WorkingBytes


FORWARD_ROUTES: Dict[str, ForwardRoute] = {
    "col2im": ForwardRoute(forward_col2im, col2im_bytes),
    "col2im_nhwc": ForwardRoute(forward_col2im_nhwc, col2im_nhwc_bytes),
    "phases": ForwardRoute(forward_phases, phases_forward_bytes),
}

BACKWARD_ROUTES: Dict[str, BackwardRoute] = {
    "im2col": BackwardRoute(backward_im2col, im2col_bytes),
    "phases": BackwardRoute(backward_phases, phases_backward_bytes),
}
