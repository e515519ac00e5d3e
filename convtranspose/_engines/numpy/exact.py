"""NaN and inf: where a route's stored zeros would meet them, the exact recomputation.

Every result entry is the sum of exactly the products the direct sum has (the float64 loop
oracle of the tests), so NaN and inf reach exactly the entries they reach there. Where a
route multiplies a stored zero (a tap that reads outside the input or lands outside the
window), a finite factor makes the product an exact zero; a non-finite one would make
``0 * inf = NaN``. That can only happen when both that factor's array and the result are
non-finite, which is checked after the product (on the smaller array first: a dot product
over the weight or the result, no temporary, see :func:`none_finite`), and then the
affected part is recomputed with the zero products left out: the weight gradient per tap
(:func:`exact_dweight`: a tap that lands only in cropped rows gets the contributions of the
rows it does reach, none if none), ``dx`` of the ``im2col`` route per tap
(:func:`exact_dx`), the forward of the ``phases`` route by ``col2im``. Finite inputs never
take that path.

The recomputation is not counted in the chunk budget: up to one copy of a chunk's input and
gradient.
"""

from __future__ import annotations

import math

import numpy as np

from ...spec import Conv2dTransposeSpec
from .arrays import by_group, view
from .phases import tap_windows


def finite(array: np.ndarray) -> bool:
    """True when every entry is finite (a dot product or a sum: no temporary array)."""
    if array.size == 0:
        return True
    if array.flags.c_contiguous or array.flags.f_contiguous:  # BLAS raises no floating-point warnings
        flat = array.ravel(order="K")  # a view in either order
        return math.isfinite(np.dot(flat, flat))
    with np.errstate(all="ignore"):  # an overflow only sends the caller to the exact path
        return bool(np.isfinite(np.add.reduce(array, axis=None)))


def none_finite(first: np.ndarray, second: np.ndarray) -> bool:
    """True when neither array is all finite; the smaller is checked first, as it is cheaper."""
    if first.size > second.size:
        first, second = second, first
    return not finite(first) and not finite(second)


def exact_dweight(
    dweight: np.ndarray, grad_window: np.ndarray, x: np.ndarray, spec: Conv2dTransposeSpec, group: int
) -> None:
    """Recompute, in place, the taps of ``dweight`` that hold a NaN, from the rows they reach.

    A route multiplies stored zeros where a tap reads outside the input or lands outside the
    window; against an inf or NaN that is a NaN the direct sum does not have. Here each such
    tap is the product of the input rows/columns that reach the window with the gradient
    they land on, and nothing else (zero for a tap that lands only in cropped rows).
    """
    n, cin, h, w = x.shape
    cig = cin // group
    dweight_g = view(dweight, (group, cig, dweight.shape[1]) + dweight.shape[2:])
    reach = {(kh, kw): (source, target) for kh, kw, source, target in tap_windows(spec, h, w)}
    for kh in range(spec.kernel_size[0]):
        for kw in range(spec.kernel_size[1]):
            tap = dweight_g[..., kh, kw]
            if not np.isnan(tap).any():
                continue
            if (kh, kw) not in reach:
                tap[...] = 0
                continue
            source, target = reach[(kh, kw)]
            inputs = by_group(x[(Ellipsis,) + source], group).transpose(1, 2, 0, 3, 4).reshape(group, cig, -1)
            grads = by_group(grad_window[(Ellipsis,) + target], group).transpose(1, 2, 0, 3, 4)
            tap[...] = np.matmul(inputs, grads.reshape(group, grads.shape[1], -1).transpose(0, 2, 1))


def exact_dx(
    grad_window: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, dx: np.ndarray
) -> None:
    """Recompute ``dx`` in place from each tap's product over the window positions it lands on (no stored zeros)."""
    n, cin, h, w = dx.shape
    cig, cog = cin // group, weight.shape[1]
    dx_g = by_group(dx, group)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    dx.fill(0)
    for kh, kw, (rows, cols), target in tap_windows(spec, h, w):
        grads = by_group(grad_window[(Ellipsis,) + target], group)  # (n, G, cog, a, b)
        part = np.matmul(np.ascontiguousarray(weight_g[..., kh, kw]), grads.reshape(n, group, cog, -1))
        dx_g[:, :, :, rows, cols] += part.reshape(n, group, cig, *grads.shape[3:])
