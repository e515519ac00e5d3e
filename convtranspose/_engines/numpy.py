"""NumPy engine: forward and backward of a 2-D transposed convolution.

Layouts: x ``(N, Cin, H, W)``, weight ``(Cin, Cout // group, kH, kW)``, output
``(N, Cout, H_out, W_out)``; all geometry comes from the spec's :class:`AxisPlan` objects.

Method ("GEMM + col2im"). For group g with ``cig = Cin/G`` input and ``cog = Cout/G`` output
channels, one BLAS product per group computes every (output channel, tap) contribution of
every input pixel::

    cols[g, (co, kh, kw), (n, i, j)] = sum_ci  w[g*cig + ci, co, kh, kw] * x[n, g*cig + ci, i, j]

so the multiplies are exactly those of the convolution (no zero insertion). Each tap
(kh, kw) then adds its slab straight into the output window: input row ``i`` lands on window
row ``i*stride + kh*dilation - crop_before`` (a strided slice; rows that fall in the crop are
skipped, see ``AxisPlan.tap_window``). The bias is added to the window; output_padding rows
stay zero.

Backward, derived from the same sum. The forward is ``window = col2im(W^T X)`` restricted to
the window, so its adjoint is ``im2col`` of the upstream gradient ``G`` restricted to the window
(cropped rows, the zero extension and output_padding rows carry no gradient)::

    gcols[g, (co, kh, kw), (n, i, j)] = G[n, g*cog + co, i*s_h + kh*d_h - top, j*s_w + kw*d_w - left]
                                        (zero where that position is outside the window)
    dx[g] = W_g @ gcols[g]          (cig, cog*K) @ (cog*K, N*H*W)
    dw[g] = X_g @ gcols[g]^T        (cig, N*H*W) @ (N*H*W, cog*K)
    db    = sum of G over the window (never over output_padding rows)

dtypes: float32 and float64 compute in their own dtype. float16 computes in float32 and
rounds as MindSpore does: ``y = fp16(fp16(conv_fp32) + bias)`` (the bias add is one exact
sum rounded once), and each gradient is the float32 result rounded once to float16.

Memory: the batch is processed in chunks so that the ``cols`` buffer stays under
``chunk_bytes`` (default 64 MiB, see :func:`set_chunk_bytes`).
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from ..spec import Conv2dTransposeSpec

_chunk_bytes = 64 * 2 ** 20


def set_chunk_bytes(limit: int) -> None:
    """Upper bound, in bytes, of the per-chunk column buffer (at least one image per chunk)."""
    global _chunk_bytes
    if type(limit) is not int or limit < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {limit!r}")
    _chunk_bytes = limit


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _batch_chunks(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> Iterator[slice]:
    n, _, h, w = x_shape
    per_image = spec.out_channels * spec.kernel_size[0] * spec.kernel_size[1] * h * w * itemsize
    step = max(1, _chunk_bytes // max(per_image, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _grouped_input(x: np.ndarray, group: int) -> np.ndarray:
    """``(N, Cin, H, W)`` -> ``(G, Cin/G, N*H*W)`` (a copy, contiguous for BLAS)."""
    n, cin, h, w = x.shape
    return x.reshape(n, group, cin // group, h * w).transpose(1, 2, 0, 3).reshape(group, cin // group, n * h * w)


def _grouped_weight(weight: np.ndarray, group: int) -> np.ndarray:
    """``(Cin, Cout/G, kH, kW)`` -> ``(G, Cin/G, Cout/G*kH*kW)`` (a view)."""
    cin = weight.shape[0]
    return weight.reshape(group, cin // group, -1)


def _tap_windows(spec: Conv2dTransposeSpec, h: int, w: int) -> Iterator[Tuple[int, int, tuple, tuple]]:
    """``(kh, kw, input_index, output_index)`` for every tap that reaches the window.

    ``input_index`` selects ``(..., rows, cols)`` of an input-sized array and ``output_index``
    the (strided) window positions those pixels land on.
    """
    plan_h, plan_w = spec.axes
    for kh in range(spec.kernel_size[0]):
        rows = plan_h.tap_window(kh, h)
        if rows is None:
            continue
        for kw in range(spec.kernel_size[1]):
            cols = plan_w.tap_window(kw, w)
            if cols is not None:
                yield kh, kw, (Ellipsis, rows[0], cols[0]), (Ellipsis, rows[1], cols[1])


def _scatter_taps(window: np.ndarray, cols: np.ndarray, spec: Conv2dTransposeSpec, h: int, w: int) -> None:
    """Add each tap's slab of ``cols`` ``(G, cog*kH*kW, n*h*w)`` into ``window`` ``(n, Cout, ., .)``."""
    k_h, k_w = spec.kernel_size
    taps = cols.reshape(spec.out_channels, k_h, k_w, window.shape[0], h, w)
    for kh, kw, source, target in _tap_windows(spec, h, w):
        window[target] += taps[:, kh, kw][source].transpose(1, 0, 2, 3)


def _gather_taps(grad_window: np.ndarray, spec: Conv2dTransposeSpec, h: int, w: int) -> np.ndarray:
    """im2col of ``grad_window`` ``(n, Cout, ., .)`` -> ``(G, cog*kH*kW, n*h*w)``.

    Taps that land outside the window (cropped rows, rows past the input) contribute zeros.
    """
    k_h, k_w = spec.kernel_size
    n = grad_window.shape[0]
    cols = np.zeros((spec.out_channels, k_h, k_w, n, h, w), dtype=grad_window.dtype)
    for kh, kw, source, target in _tap_windows(spec, h, w):
        cols[:, kh, kw][source] = grad_window[target].transpose(1, 0, 2, 3)
    return cols.reshape(spec.group, -1, n * h * w)


def forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
            spec: Conv2dTransposeSpec) -> np.ndarray:
    """Transposed convolution of ``x`` with MindSpore's crop, bias and output_padding.

    Args:
        x: ``(N, Cin, H, W)``, float16/32/64, already checked against ``spec``.
        weight: ``(Cin, Cout // group, kH, kW)``, same dtype as ``x``.
        bias: ``(Cout,)`` or None, same dtype as ``x``.
        spec: the validated arguments.

    Returns:
        ``(N, Cout, H_out, W_out)`` in the dtype of ``x``.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    _, _, h, w = x.shape
    out = np.zeros(spec.output_shape(x.shape), dtype=work)
    _, _, win_h, win_w = spec.window_shape(x.shape)
    window = out[:, :, :win_h, :win_w]
    if x.size:
        weight_g = _grouped_weight(weight.astype(work, copy=False), spec.group).transpose(0, 2, 1)
        for batch in _batch_chunks(spec, x.shape, work.itemsize):
            cols = np.matmul(weight_g, _grouped_input(x[batch].astype(work, copy=False), spec.group))
            _scatter_taps(window[batch], cols, spec, h, w)
    if dtype == np.float16:
        # MindSpore rounds the conv to float16, then adds the bias: an exact sum (float64
        # holds any sum of two float16 values) rounded once more to float16.
        conv = window.astype(np.float16)
        if bias is not None:
            conv = (conv.astype(np.float64) + bias.astype(np.float64)[:, None, None]).astype(np.float16)
        window[...] = conv
    elif bias is not None:
        window += bias[:, None, None]
    return out.astype(dtype, copy=False)


def backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray,
             spec: Conv2dTransposeSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(forward(x, weight, bias) * grad_out)``.

    Args:
        x: ``(N, Cin, H, W)``, the forward input.
        weight: ``(Cin, Cout // group, kH, kW)``.
        grad_out: ``(N, Cout, H_out, W_out)``, the upstream gradient (output shape).
        spec: the validated arguments.

    Returns:
        ``(dx, dweight, dbias)`` with the shapes of x, weight and ``(Cout,)``, in x's dtype.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    _, cin, h, w = x.shape
    _, _, win_h, win_w = spec.window_shape(x.shape)
    grad_window = grad_out[:, :, :win_h, :win_w].astype(work, copy=False)
    dbias = grad_window.sum(axis=(0, 2, 3))
    dx = np.zeros(x.shape, dtype=work)
    weight_g = _grouped_weight(weight.astype(work, copy=False), spec.group)
    dweight_g = np.zeros(weight_g.shape, dtype=work)
    if x.size:
        for batch in _batch_chunks(spec, x.shape, work.itemsize):
            xb = x[batch].astype(work, copy=False)
            nb = xb.shape[0]
            gcols = _gather_taps(grad_window[batch], spec, h, w)
            dx_g = np.matmul(weight_g, gcols)  # (G, cig, nb*h*w)
            dx[batch] = dx_g.reshape(spec.group, cin // spec.group, nb, h * w).transpose(2, 0, 1, 3).reshape(nb, cin, h, w)
            dweight_g += np.matmul(_grouped_input(xb, spec.group), gcols.transpose(0, 2, 1))
    dweight = dweight_g.reshape(weight.shape)
    return dx.astype(dtype), dweight.astype(dtype), dbias.astype(dtype)
