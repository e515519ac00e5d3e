"""The float64 oracle, written from MindSpore's recorded semantics; imports nothing from convtranspose.

This is the project's one independent oracle: the tests check every engine against it, and so does
the benchmark (``benchmarks/bench.py``) before it times anything. It must stay free of any
``convtranspose`` import, so that a mistake in the library cannot hide in it.

Forward: every input pixel (n, ci, i, j) times w[ci, co, kh, kw] lands on the uncropped output
at (i*s + kh*d, j*s + kw*d) (no kernel flip); here one tap (kh, kw) at a time, as a product over
the channels of each group. Then a window of rows [top, top + length) is taken (rows past the
uncropped result are zero), the bias is added, and output_padding zero rows/columns are appended.
Backward: the same taps with the roles of the arrays swapped.
"""

import numpy as np


def _pairs(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def full_length(n, k, s, d):
    """Length of the uncropped transposed convolution on one axis: ``(n - 1) * s + d * (k - 1) + 1``."""
    return (n - 1) * s + d * (k - 1) + 1


def axis_window(n, k, s, d, mode, pad_before, pad_after):
    """(top, window length) of one axis, from the table in docs/mindspore-behavior.md."""
    k_eff = d * (k - 1) + 1
    full = full_length(n, k, s, d)
    if mode == "pad":
        return pad_before, full - pad_before - pad_after
    if mode == "same":
        return max(k_eff - s, 0) // 2, n * s
    return 0, n * s + max(k_eff - s, 0)


def _geometry(x_shape, w_shape, stride, pad_mode, padding, dilation):
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    _, _, h, w = x_shape
    kh, kw = w_shape[2:]
    top, length_h = axis_window(h, kh, sh, dh, pad_mode, pads[0], pads[1])
    left, length_w = axis_window(w, kw, sw, dw, pad_mode, pads[2], pads[3])
    return (sh, sw), (dh, dw), (top, left), (length_h, length_w)


def _canvas(x_shape, w_shape, strides, dilations, corner, lengths):
    """(rows, cols) of a frame that holds both the uncropped result and the window."""
    return tuple(
        max(full_length(n, k, s, d), start + length, 0)
        for n, k, s, d, start, length in zip(x_shape[2:], w_shape[2:], strides, dilations, corner, lengths)
    )


def _taps(x_shape, w_shape, strides, dilations):
    """(kh, kw, rows, cols): where the input's pixels land in the uncropped frame through each tap."""
    (h, wd), (sh, sw), (dh, dw) = x_shape[2:], strides, dilations
    for kh in range(w_shape[2]):
        for kw in range(w_shape[3]):
            yield kh, kw, _spaced(kh * dh, h, sh), _spaced(kw * dw, wd, sw)


def _spaced(start, count, step):
    """The slice of ``count`` positions ``start, start + step, ...`` (an empty one for count 0)."""
    return slice(start, start + (count - 1) * step + 1, step) if count else slice(0, 0)


def _to_rows(a, group):
    """(N, C, H, W) -> (group, N*H*W, C/group): one matrix per group, a row per pixel."""
    n, c, h, w = a.shape
    return a.reshape(n, group, c // group, h, w).transpose(1, 0, 3, 4, 2).reshape(group, n * h * w, c // group)


def _from_rows(a, n, h, w):
    """(group, N*H*W, C/group) -> (N, C, H, W), the inverse of _to_rows."""
    group, _, cg = a.shape
    return a.reshape(group, n, h, w, cg).transpose(1, 0, 4, 2, 3).reshape(n, group * cg, h, w)


def forward(x, w, b=None, stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1):
    """float64 forward, shape (N, Cout, H_out, W_out)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    strides, dilations, (top, left), (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    n, _, h, wd = x.shape
    rows_x = _to_rows(x, group)  # (group, N*H*W, Cin/g)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])  # (group, Cin/g, Cout/g, kH, kW)
    frame = np.zeros((n, w.shape[1] * group) + _canvas(x.shape, w.shape, strides, dilations, (top, left), (lh, lw)))
    for kh, kw, rows, cols in _taps(x.shape, w.shape, strides, dilations):
        frame[:, :, rows, cols] += _from_rows(rows_x @ wg[..., kh, kw], n, h, wd)
    oph, opw = _pairs(output_padding)
    out = np.zeros(frame.shape[:2] + (lh + oph, lw + opw))
    out[:, :, :lh, :lw] = frame[:, :, top : top + lh, left : left + lw]
    if b is not None:
        out[:, :, :lh, :lw] += np.asarray(b, np.float64)[:, None, None]
    return out


def backward(x, w, g, stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1):
    """float64 gradients (dx, dw, db) of sum(forward(x, w, b) * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    strides, dilations, (top, left), (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    n, _, h, wd = x.shape
    window = g[:, :, :lh, :lw]  # output_padding rows carry no gradient
    frame = np.zeros(g.shape[:2] + _canvas(x.shape, w.shape, strides, dilations, (top, left), (lh, lw)))
    frame[:, :, top : top + lh, left : left + lw] = window
    rows_x = _to_rows(x, group)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])
    rows_dx, dwg = np.zeros_like(rows_x), np.zeros_like(wg)
    for kh, kw, rows, cols in _taps(x.shape, w.shape, strides, dilations):
        up = _to_rows(frame[:, :, rows, cols], group)  # (group, N*H*W, Cout/g)
        rows_dx += up @ wg[..., kh, kw].transpose(0, 2, 1)
        dwg[..., kh, kw] = rows_x.transpose(0, 2, 1) @ up
    return _from_rows(rows_dx, n, h, wd), dwg.reshape(w.shape), window.sum(axis=(0, 2, 3))
