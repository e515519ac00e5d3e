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
    """(top, window length) of one axis, from the table in docs/mindspore-behavior.md."""
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
