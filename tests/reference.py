"""The float64 oracle, written from MindSpore's recorded semantics; imports nothing from convtranspose.

This is the project's one independent oracle: the tests check every engine against it, and so does
the benchmark (``benchmarks/bench.py``) before it times anything. It must stay free of any
``convtranspose`` import, so that a mistake in the library cannot hide in it.

Forward: every input pixel (n, ci, i, j) times w[ci, co, kh, kw] lands on the uncropped output
at (i*s + kh*d, j*s + kw*d) (no kernel flip). MindSpore keeps a window of rows [top, top + length)
of that (rows past the uncropped result are zero), adds the bias, and appends output_padding zero
rows/columns. Here one tap (kh, kw) at a time, for the input pixels whose tap lands inside the
window, as a matrix product over the channels of each group: every product formed is a term of
that direct sum, so NaN and inf reach exactly the entries they reach in it. Backward: the same
taps with the roles of the arrays swapped.
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


def _reach(n, tap, s, d, start, length):
    """(first, count) of the input positions i < n whose tap lands inside the window on one axis.

    Position i lands on ``i*s + tap*d - start`` of the window, which must lie in [0, length).
    """
    first = max(0, -(-(start - tap * d) // s))
    stop = min(n, -(-(start + length - tap * d) // s))
    return first, max(stop - first, 0)


def _taps(x_shape, w_shape, strides, dilations, corner, lengths):
    """Per tap (kh, kw): the input pixels that land inside the window, and where they land.

    Yields ``(kh, kw, input_rows, input_cols, window_rows, window_cols)`` as slices, only for taps
    that reach the window: every product the oracle forms is a term of the direct sum.
    """
    (h, wd), (sh, sw), (dh, dw), (top, left), (lh, lw) = x_shape[2:], strides, dilations, corner, lengths
    for kh in range(w_shape[2]):
        i0, rows = _reach(h, kh, sh, dh, top, lh)
        for kw in range(w_shape[3]):
            j0, cols = _reach(wd, kw, sw, dw, left, lw)
            if rows and cols:
                r0, c0 = i0 * sh + kh * dh - top, j0 * sw + kw * dw - left
                yield (
                    kh,
                    kw,
                    slice(i0, i0 + rows),
                    slice(j0, j0 + cols),
                    slice(r0, r0 + (rows - 1) * sh + 1, sh),
                    slice(c0, c0 + (cols - 1) * sw + 1, sw),
                )


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
    strides, dilations, corner, (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])  # (group, Cin/g, Cout/g, kH, kW)
    oph, opw = _pairs(output_padding)
    out = np.zeros((x.shape[0], w.shape[1] * group, lh + oph, lw + opw))
    for kh, kw, in_rows, in_cols, rows, cols in _taps(x.shape, w.shape, strides, dilations, corner, (lh, lw)):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        out[:, :, rows, cols] += _from_rows(_to_rows(pixels, group) @ wg[..., kh, kw], n, h, wd)
    if b is not None:
        out[:, :, :lh, :lw] += np.asarray(b, np.float64)[:, None, None]
    return out


def backward(x, w, g, stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1):
    """float64 gradients (dx, dw, db) of sum(forward(x, w, b) * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    strides, dilations, corner, (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    window = g[:, :, :lh, :lw]  # output_padding rows carry no gradient
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])
    dx, dwg = np.zeros_like(x), np.zeros_like(wg)
    for kh, kw, in_rows, in_cols, rows, cols in _taps(x.shape, w.shape, strides, dilations, corner, (lh, lw)):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        pixels, up = _to_rows(pixels, group), _to_rows(window[:, :, rows, cols], group)
        dx[:, :, in_rows, in_cols] += _from_rows(up @ wg[..., kh, kw].transpose(0, 2, 1), n, h, wd)
        dwg[..., kh, kw] = pixels.transpose(0, 2, 1) @ up
    return dx, dwg.reshape(w.shape), window.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------- nn.Conv2d


def conv2d_axis(n, k, s, d, mode, pad_before, pad_after):
    """(rows of zero padding before the input, output length) of one nn.Conv2d axis.

    'same' is TensorFlow's rule: ceil(n / s) rows, total padding max((out-1)*s + k_eff - n, 0),
    the smaller half before; 'valid' pads nothing; 'pad' takes the padding as given.
    """
    k_eff = d * (k - 1) + 1
    if mode == "same":
        out = -(-n // s)
        return max((out - 1) * s + k_eff - n, 0) // 2, out
    if mode == "valid":
        return 0, (n - k_eff) // s + 1
    return pad_before, (n + pad_before + pad_after - k_eff) // s + 1


def _conv2d_reads(x_shape, w_shape, stride, pad_mode, padding, dilation, group):
    """Every (co, ci, kh, kw, r, c, i, j): output (r, c) of channel co reads input (i, j) of channel ci."""
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    _, _, h, wd = x_shape
    cout, cig, kh_size, kw_size = w_shape
    cog = cout // group
    top, out_h = conv2d_axis(h, kh_size, sh, dh, pad_mode, pads[0], pads[1])
    left, out_w = conv2d_axis(wd, kw_size, sw, dw, pad_mode, pads[2], pads[3])
    for co in range(cout):
        for ci_in_group in range(cig):
            ci = (co // cog) * cig + ci_in_group
            for kh in range(kh_size):
                for kw in range(kw_size):
                    for r in range(out_h):
                        i = r * sh + kh * dh - top
                        if not 0 <= i < h:
                            continue
                        for c in range(out_w):
                            j = c * sw + kw * dw - left
                            if 0 <= j < wd:
                                yield co, ci, ci_in_group, kh, kw, r, c, i, j


def conv2d_output_shape(x_shape, w_shape, stride=1, pad_mode="same", padding=0, dilation=1):
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    _, out_h = conv2d_axis(x_shape[2], w_shape[2], sh, dh, pad_mode, pads[0], pads[1])
    _, out_w = conv2d_axis(x_shape[3], w_shape[3], sw, dw, pad_mode, pads[2], pads[3])
    return (x_shape[0], w_shape[0], out_h, out_w)


def conv2d_forward(x, w, b=None, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """float64 nn.Conv2d forward (cross-correlation over the zero-padded input), shape (N, Cout, H_out, W_out)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    out = np.zeros(conv2d_output_shape(x.shape, w.shape, stride, pad_mode, padding, dilation))
    for co, ci, cig, kh, kw, r, c, i, j in _conv2d_reads(x.shape, w.shape, stride, pad_mode, padding, dilation, group):
        out[:, co, r, c] += x[:, ci, i, j] * w[co, cig, kh, kw]
    if b is not None:
        out += np.asarray(b, np.float64)[:, None, None]
    return out


def conv2d_backward(x, w, g, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """float64 gradients (dx, dw, db) of sum(conv2d_forward(x, w, b) * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for co, ci, cig, kh, kw, r, c, i, j in _conv2d_reads(x.shape, w.shape, stride, pad_mode, padding, dilation, group):
        dx[:, ci, i, j] += g[:, co, r, c] * w[co, cig, kh, kw]
        dw[co, cig, kh, kw] += np.dot(g[:, co, r, c], x[:, ci, i, j])
    return dx, dw, g.sum(axis=(0, 2, 3))


def _conv2d_reach(n, out, tap, s, d, pad_before):
    """(first, count) of the output positions r < out whose tap reads a real input row on one axis.

    Output r reads input row ``r*s + tap*d - pad_before``, which must lie in [0, n).
    """
    first = max(0, -(-(pad_before - tap * d) // s))
    stop = min(out, -(-(n + pad_before - tap * d) // s))
    return first, max(stop - first, 0)


def _conv2d_taps(x_shape, w_shape, stride, pad_mode, padding, dilation):
    """Per tap (kh, kw) of nn.Conv2d: the output pixels that read a real input pixel, and which.

    Yields ``(kh, kw, out_rows, out_cols, input_rows, input_cols)`` as slices, only for taps that read
    the input, so every product formed is a term of the loop oracle's direct sum.
    """
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    _, _, h, wd = x_shape
    top, out_h = conv2d_axis(h, w_shape[2], sh, dh, pad_mode, pads[0], pads[1])
    left, out_w = conv2d_axis(wd, w_shape[3], sw, dw, pad_mode, pads[2], pads[3])
    for kh in range(w_shape[2]):
        r0, rows = _conv2d_reach(h, out_h, kh, sh, dh, top)
        for kw in range(w_shape[3]):
            c0, cols = _conv2d_reach(wd, out_w, kw, sw, dw, left)
            if rows and cols:
                i0, j0 = r0 * sh + kh * dh - top, c0 * sw + kw * dw - left
                yield (
                    kh,
                    kw,
                    slice(r0, r0 + rows),
                    slice(c0, c0 + cols),
                    slice(i0, i0 + (rows - 1) * sh + 1, sh),
                    slice(j0, j0 + (cols - 1) * sw + 1, sw),
                )


def _conv2d_grouped(w, group):
    """(C_out, C_in/g, kH, kW) -> (group, C_in/g, C_out/g, kH, kW): per group, input channels by output channels."""
    cout = w.shape[0]
    return w.reshape(group, cout // group, *w.shape[1:]).transpose(0, 2, 1, 3, 4)


def conv2d_forward_by_taps(x, w, b=None, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """conv2d_forward as one matrix product per kernel tap (the same terms; fast enough for benchmark sizes)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    out = np.zeros(conv2d_output_shape(x.shape, w.shape, stride, pad_mode, padding, dilation))
    wg = _conv2d_grouped(w, group)
    for kh, kw, rows, cols, in_rows, in_cols in _conv2d_taps(x.shape, w.shape, stride, pad_mode, padding, dilation):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        out[:, :, rows, cols] += _from_rows(_to_rows(pixels, group) @ wg[..., kh, kw], n, h, wd)
    if b is not None:
        out += np.asarray(b, np.float64)[:, None, None]
    return out


def conv2d_backward_by_taps(x, w, g, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """conv2d_backward as matrix products per kernel tap: (dx, dw, db) of sum(conv2d_forward(x, w, b) * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    wg = _conv2d_grouped(w, group)
    dx, dwg = np.zeros_like(x), np.zeros_like(wg)
    for kh, kw, rows, cols, in_rows, in_cols in _conv2d_taps(x.shape, w.shape, stride, pad_mode, padding, dilation):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        pixels, up = _to_rows(pixels, group), _to_rows(g[:, :, rows, cols], group)
        dx[:, :, in_rows, in_cols] += _from_rows(up @ wg[..., kh, kw].transpose(0, 2, 1), n, h, wd)
        dwg[..., kh, kw] = pixels.transpose(0, 2, 1) @ up
    return dx, dwg.transpose(0, 2, 1, 3, 4).reshape(w.shape), g.sum(axis=(0, 2, 3))
