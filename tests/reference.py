"""A slow float64 oracle written from MindSpore's recorded semantics; imports nothing from convtranspose.

Forward: every input pixel (n, ci, i, j) times w[ci, co, kh, kw] lands on the uncropped
output at (i*s + kh*d, j*s + kw*d) (no kernel flip). Then a window of rows [top, top + length)
is taken (rows past the uncropped result are zero), the bias is added, and output_padding
zero rows/columns are appended. Backward: the same loops with the roles of the arrays swapped.
"""

import numpy as np


def _pairs(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def axis_window(n, k, s, d, mode, pad_before, pad_after):
    """(top, window length) of one axis, from the table in MINDSPORE_BEHAVIOR.md section 1."""
    k_eff = d * (k - 1) + 1
    full = (n - 1) * s + k_eff
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


def _contributions(x_shape, w_shape, stride, pad_mode, padding, dilation, group):
    """Every (ci, out channel, kh, kw, i, j, r, c): input pixel (i, j) of channel ci, through
    tap (kh, kw), lands on output position (r, c) of that out channel, inside the window."""
    _, cin, h, wd = x_shape
    cig, cog = cin // group, w_shape[1]
    (sh, sw), (dh, dw), (top, left), (lh, lw) = _geometry(x_shape, w_shape, stride, pad_mode, padding, dilation)
    for ci in range(cin):
        for co in range(cog):
            for kh in range(w_shape[2]):
                for kw in range(w_shape[3]):
                    for i in range(h):
                        r = i * sh + kh * dh - top
                        for j in range(wd):
                            c = j * sw + kw * dw - left
                            if 0 <= r < lh and 0 <= c < lw:
                                yield ci, (ci // cig) * cog + co, co, kh, kw, i, j, r, c


def forward(x, w, b=None, stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1):
    """float64 forward, shape (N, Cout, H_out, W_out)."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    *_, (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    oph, opw = _pairs(output_padding)
    out = np.zeros((x.shape[0], w.shape[1] * group, lh + oph, lw + opw))
    for ci, out_ch, co, kh, kw, i, j, r, c in _contributions(
        x.shape, w.shape, stride, pad_mode, padding, dilation, group
    ):
        out[:, out_ch, r, c] += x[:, ci, i, j] * w[ci, co, kh, kw]
    if b is not None:
        out[:, :, :lh, :lw] += np.asarray(b, np.float64)[:, None, None]
    return out


def backward(x, w, g, stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1):
    """float64 gradients (dx, dw, db) of sum(forward(x, w, b) * g)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    *_, (lh, lw) = _geometry(x.shape, w.shape, stride, pad_mode, padding, dilation)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for ci, out_ch, co, kh, kw, i, j, r, c in _contributions(
        x.shape, w.shape, stride, pad_mode, padding, dilation, group
    ):
        up = g[:, out_ch, r, c]
        dx[:, ci, i, j] += up * w[ci, co, kh, kw]
        dw[ci, co, kh, kw] += np.dot(up, x[:, ci, i, j])
    db = g[:, :, :lh, :lw].sum(axis=(0, 2, 3))
    return dx, dw, db


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
