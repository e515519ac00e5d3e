"""The ``im2col`` backward route (the adjoint of ``col2im``) and its working memory.

With ``G`` the upstream gradient restricted to the window: ``gcols[g, (co, kh, kw), (n, i, j)]
= G[n, g*cog+co, i*s_h + kh*d_h - top, j*s_w + kw*d_w - left]`` (zero outside the window),
then ``dx_g = W_g @ gcols_g`` and ``dw_g = X_g @ gcols_g^T``: one im2col of the gradient
serves both.

Memory: an image larger than the budget is split into bands of input rows; the unit it
cannot split is one input row, ``W*(Cout*K + 2*Cin)`` values.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np

from ...spec import Conv2dTransposeSpec
from .arrays import channel_major
from .chunks import largest, spans
from .exact import exact_dweight, exact_dx, none_finite
from .phases import tap_windows
from .workspace import workspace


def im2col_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of the route on ``x_shape`` in one piece."""
    n, cin, h, w = x_shape
    k = spec.kernel_size[0] * spec.kernel_size[1]
    return n * h * w * (spec.out_channels * k + 2 * cin) * itemsize


@functools.lru_cache(maxsize=1024)
def _im2col_band(spec: Conv2dTransposeSpec, h: int, w: int, first: int, stop: int) -> Tuple[tuple, bool]:
    """The im2col route's taps for input rows ``first .. stop - 1``, and whether they fill them.

    ``(kh, kw, band_rows, input_cols, output_rows, output_cols)`` per tap reaching the window.
    Zero-filling is needed only where some tap does not reach (a kernel no longer than the
    stride, as in U-Net's k=s=2, reaches everywhere).
    """
    stride = spec.axes[0].stride
    taps = []
    for kh, kw, (src_rows, src_cols), (out_rows, out_cols) in tap_windows(spec, h, w):
        low, high = max(src_rows.start, first), min(src_rows.stop, stop)
        if low < high:
            start = out_rows.start + (low - src_rows.start) * stride
            taps.append(
                (
                    kh,
                    kw,
                    slice(low - first, high - first),
                    src_cols,
                    slice(start, start + (high - low - 1) * stride + 1, stride),
                    out_cols,
                )
            )
    complete = len(taps) == spec.kernel_size[0] * spec.kernel_size[1] and all(
        rows == slice(0, stop - first) and cols == slice(0, w) for _, _, rows, cols, _, _ in taps
    )
    return tuple(taps), complete


def _zero_unreached(gcols: np.ndarray, band_taps: tuple) -> None:
    """Zero the entries of ``gcols`` (Cout, kH, kW, n, rows, W) that no tap of ``band_taps`` writes.

    Each tap writes one rectangle of (band rows, input columns); only the strips around it, and
    the whole plane of a tap that does not reach this band, are zeroed. Filling the whole buffer
    instead costs as much as the gather itself ('same' convolutions leave only a border unwritten).
    """
    reached = {(kh, kw): (rows, cols) for kh, kw, rows, cols, _, _ in band_taps}
    for kh in range(gcols.shape[1]):
        for kw in range(gcols.shape[2]):
            plane = gcols[:, kh, kw]  # (Cout, n, rows, W)
            if (kh, kw) not in reached:
                plane.fill(0)
                continue
            rows, cols = reached[kh, kw]
            plane[:, :, : rows.start].fill(0)
            plane[:, :, rows.stop :].fill(0)
            plane[:, :, rows, : cols.start].fill(0)
            plane[:, :, rows, cols.stop :].fill(0)


def backward_im2col(
    grad_window: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    spec: Conv2dTransposeSpec,
    group: int,
    budget: int,
    dx: Optional[np.ndarray],
    need_dweight: bool,
) -> Optional[np.ndarray]:
    """Write the input gradient into ``dx`` and return the weight gradient, by bands of input rows.

    Args as :func:`~.phases_route.backward_phases` (``dx`` is written, not added to).
    """
    n, cin, h, w = x.shape
    cout, (k_h, k_w) = grad_window.shape[1], spec.kernel_size
    cig = cin // group
    band = largest(lambda rows: n * rows * w * (cout * k_h * k_w + 2 * cin) * x.dtype.itemsize <= budget, h)
    weight_g = weight.reshape(group, cig, -1)  # (G, cig, cog*K)
    dweight_t: Optional[np.ndarray] = None
    zero_filled = False
    for first, stop in spans(h, band):
        rows = stop - first
        band_taps, complete = _im2col_band(spec, h, w, first, stop)
        zero_filled = zero_filled or not complete
        gcols = workspace("cols", (cout, k_h, k_w, n, rows, w), grad_window.dtype)
        if not complete:
            _zero_unreached(gcols, band_taps)
        for kh, kw, src_rows, src_cols, out_rows, out_cols in band_taps:
            gcols[:, kh, kw, :, src_rows, src_cols] = grad_window[:, :, out_rows, out_cols].transpose(1, 0, 2, 3)
        gcols = gcols.reshape(group, -1, n * rows * w)  # (G, cog*K, n*rows*w)
        if dx is not None:
            product = np.matmul(weight_g, gcols, out=workspace("dx", (group, cig, n * rows * w), x.dtype))
            dx[:, :, first:stop] = product.reshape(cin, n, rows, w).transpose(1, 0, 2, 3)
        if need_dweight:
            # gcols @ x^T, then a small transpose: 15-30% faster than x @ gcols^T in OpenBLAS
            # when the channels are few (measured on the benchmark shapes)
            part = np.matmul(gcols, channel_major(x[:, :, first:stop], group).transpose(0, 2, 1))  # (G, cog*K, cig)
            if dweight_t is None:
                dweight_t = part
            else:
                dweight_t += part
    if dx is not None and zero_filled and none_finite(weight, dx):
        exact_dx(grad_window, weight, spec, group, dx)
    if dweight_t is None:
        return None
    dweight = dweight_t.transpose(0, 2, 1).reshape(weight.shape)
    if zero_filled and none_finite(x, dweight_t):  # dweight_t: the same values, contiguous
        exact_dweight(dweight, grad_window, x, spec, group)
    return dweight
