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

nn.Conv2d (``conv2d_forward``, ``conv2d_backward``, at the end): output (r, c) reads the
zero-padded input at (r*s + kh*d - top, c*s + kw*d - left), no kernel flip, with MindSpore's
padding per pad mode (TensorFlow's input-dependent 'same'). The same scheme: one tap at a time,
for the output pixels whose tap reads an input pixel rather than padding, as a matrix product
over the channels of each group.
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


def _conv2d_geometry(x_shape, w_shape, stride, pad_mode, padding, dilation):
    """(strides, dilations, (top, left) padding, (out_h, out_w)) of an nn.Conv2d call."""
    (sh, sw), (dh, dw) = _pairs(stride), _pairs(dilation)
    pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    top, out_h = conv2d_axis(x_shape[2], w_shape[2], sh, dh, pad_mode, pads[0], pads[1])
    left, out_w = conv2d_axis(x_shape[3], w_shape[3], sw, dw, pad_mode, pads[2], pads[3])
    return (sh, sw), (dh, dw), (top, left), (out_h, out_w)


def _conv2d_reach(n, tap, s, d, before, out):
    """(first, count) of the output positions r < out whose tap reads an input row inside [0, n).

    Output r reads input row ``r*s + tap*d - before``.
    """
    first = max(0, -(-(before - tap * d) // s))
    stop = min(out, -(-(n + before - tap * d) // s))
    return first, max(stop - first, 0)


def _conv2d_taps(x_shape, w_shape, strides, dilations, corner, out_size):
    """Per tap (kh, kw): the output pixels whose tap reads the input (not padding), and which input pixels.

    Yields ``(kh, kw, output_rows, output_cols, input_rows, input_cols)`` as slices, only for
    taps that read some input: every product the oracle forms is a term of the direct sum.
    """
    (h, wd), (sh, sw), (dh, dw), (top, left), (oh, ow) = x_shape[2:], strides, dilations, corner, out_size
    for kh in range(w_shape[2]):
        r0, rows = _conv2d_reach(h, kh, sh, dh, top, oh)
        for kw in range(w_shape[3]):
            c0, cols = _conv2d_reach(wd, kw, sw, dw, left, ow)
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


def conv2d_output_shape(x_shape, w_shape, stride=1, pad_mode="same", padding=0, dilation=1):
    """(N, Cout, H_out, W_out) of an nn.Conv2d call on x_shape with a weight of w_shape."""
    *_, out_size = _conv2d_geometry(x_shape, w_shape, stride, pad_mode, padding, dilation)
    return (x_shape[0], w_shape[0]) + out_size


def conv2d_forward(x, w, b=None, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """float64 nn.Conv2d forward (cross-correlation over the zero-padded input), shape (N, Cout, H_out, W_out).

    One tap (kh, kw) at a time, for the output pixels whose tap reads an input pixel (not padding),
    as a matrix product over the input channels of each group.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    strides, dilations, corner, out_size = _conv2d_geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:]).transpose(0, 2, 1, 3, 4)  # (g, Cin/g, Cout/g, kH, kW)
    out = np.zeros((x.shape[0], w.shape[0]) + out_size)
    for kh, kw, rows, cols, in_rows, in_cols in _conv2d_taps(x.shape, w.shape, strides, dilations, corner, out_size):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        out[:, :, rows, cols] += _from_rows(_to_rows(pixels, group) @ wg[..., kh, kw], n, h, wd)
    if b is not None:
        out += np.asarray(b, np.float64)[:, None, None]
    return out


def conv2d_backward(x, w, g, stride=1, pad_mode="same", padding=0, dilation=1, group=1):
    """float64 gradients (dx, dw, db) of sum(conv2d_forward(x, w, b) * g): the same taps, roles swapped."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    strides, dilations, corner, out_size = _conv2d_geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    wg = w.reshape(group, w.shape[0] // group, *w.shape[1:])  # (g, Cout/g, Cin/g, kH, kW)
    dx, dwg = np.zeros_like(x), np.zeros_like(wg)
    for kh, kw, rows, cols, in_rows, in_cols in _conv2d_taps(x.shape, w.shape, strides, dilations, corner, out_size):
        pixels = x[:, :, in_rows, in_cols]
        n, _, h, wd = pixels.shape
        pixels, up = _to_rows(pixels, group), _to_rows(g[:, :, rows, cols], group)
        dx[:, :, in_rows, in_cols] += _from_rows(up @ wg[..., kh, kw], n, h, wd)
        dwg[..., kh, kw] = up.transpose(0, 2, 1) @ pixels
    return dx, dwg.reshape(w.shape), g.sum(axis=(0, 2, 3))
