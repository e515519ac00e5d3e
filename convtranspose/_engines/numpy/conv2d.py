"""NumPy engine for MindSpore's ``nn.Conv2d``, by the adjoint relation with the transposed convolution.

Conv2d's forward is the input gradient of the transposed convolution whose input is Conv2d's
output and whose output window is Conv2d's input (``Conv2dSpec.adjoint``: the same weight
array, channels swapped); Conv2d's input gradient is that transposed convolution's forward, and
its weight gradient that transposed convolution's weight gradient with the roles of x and the
upstream gradient swapped. So every product here is one of the transposed engine's
(the other modules of this package): the same routes, the same exact multiply-adds, the same memory budget.
One exception: a 1x1 kernel that reads no padding (ResNet's bottleneck and projection layers) is
one matrix product per image and group in both directions, with no gather at all (measured on
the benchmark's ``c2_1x1``: forward 24 ms by the transposed routes, 12 ms so).

Layouts: x ``(N, C_in, H, W)``, weight ``(C_out, C_in // group, kH, kW)``, output
``(N, C_out, H_out, W_out)``. dtypes as the transposed engine: float32 and float64 in their own
dtype; float16 in float32, rounded as MindSpore rounds: ``y = fp16(fp16(conv) + bias)``, each
gradient rounded once.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ...spec import Conv2dSpec
from . import entry as transposed


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _present(array: Optional[np.ndarray]) -> np.ndarray:
    """An array the caller knows is there.

    The transposed backward returns None only for a gradient it was not asked for, and the
    pointwise view is None only for another kernel or padding.
    """
    assert array is not None
    return array


def _reads_nothing(x: np.ndarray, spec: Conv2dSpec) -> bool:
    """No output entry reads any input value: an empty input or output, or only padding under every tap."""
    out_shape = spec.output_shape(x.shape)
    return x.size == 0 or 0 in out_shape or spec.kernel_windows(x.shape) is None


def _pointwise_pixels(x: np.ndarray, spec: Conv2dSpec) -> Optional[np.ndarray]:
    """For a 1x1 kernel that reads no padding: the view of ``x`` the output reads, else None.

    Such a convolution is one matrix product per image and group, with no padding product
    (``0 * inf`` cannot arise): ``(N, C_in, H_out, W_out)``, a strided view (a write through it
    lands on the pixels read, which the input gradient uses).
    """
    if tuple(spec.kernel_size) != (1, 1):
        return None
    windows = spec.kernel_windows(x.shape)
    if windows is None or any(axis.pad_before or axis.pad_after for axis in windows):
        return None
    height, width = windows
    pixels = x[:, :, height.rows, width.rows][:, :, :: height.stride, :: width.stride]
    return pixels if pixels.shape[2:] == tuple(spec.output_shape(x.shape)[2:]) else None


def _pointwise_operands(pixels: np.ndarray, weight: np.ndarray, group: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(N, G, C_in/G, H_out*W_out)`` pixels and ``(G, C_out/G, C_in/G)`` weight in the compute dtype."""
    work = _work_dtype(pixels.dtype)
    n, cin, h_out, w_out = pixels.shape
    rows = pixels.astype(work, copy=False).reshape(n, group, cin // group, h_out * w_out)
    return rows, weight.astype(work, copy=False).reshape(group, weight.shape[0] // group, cin // group)


def forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], spec: Conv2dSpec) -> np.ndarray:
    """Convolution of ``x`` with MindSpore's padding, then the bias.

    Args:
        x: ``(N, C_in, H, W)``, float16/32/64, already checked against ``spec``.
        weight: ``(C_out, C_in // group, kH, kW)``, same dtype as ``x``.
        bias: ``(C_out,)`` or None, same dtype as ``x``.
        spec: the validated arguments.

    Returns:
        ``(N, C_out, H_out, W_out)`` in the dtype of ``x``.
    """
    out_shape = spec.output_shape(x.shape)
    if _reads_nothing(x, spec):
        y = np.zeros(out_shape, dtype=x.dtype)
    elif (pixels := _pointwise_pixels(x, spec)) is not None:
        rows, weight_g = _pointwise_operands(pixels, weight, spec.group)
        with np.errstate(invalid="ignore"):  # NaN the inputs make arrives quietly, as from the other routes
            y = np.matmul(weight_g, rows).reshape(out_shape).astype(x.dtype, copy=False)  # fp16: fp16(conv in fp32)
    else:
        adjoint = spec.adjoint(x.shape)
        placeholder = np.broadcast_to(np.zeros((), x.dtype), out_shape)  # read for its shape only
        y = _present(
            transposed.backward(placeholder, weight, x, adjoint, need_dweight=False)[0]
        )  # fp16: fp16(conv in fp32)
    if bias is None:
        return y
    if x.dtype == np.float16:  # one exact float32 sum of two float16 values, rounded once
        return (y.astype(np.float32) + bias.astype(np.float32)[:, None, None]).astype(np.float16)
    y += bias[:, None, None]
    return y


def backward(
    x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, spec: Conv2dSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(forward(x, weight, bias) * grad_out)``.

    Returns:
        ``(dx, dweight, dbias)`` with the shapes of x, weight and ``(C_out,)``, in x's dtype.
    """
    work = _work_dtype(x.dtype)
    dbias = grad_out.astype(work, copy=False).sum(axis=(0, 2, 3)).astype(x.dtype)
    if _reads_nothing(x, spec):
        return np.zeros_like(x), np.zeros_like(weight), dbias
    pixels = _pointwise_pixels(x, spec)
    if pixels is not None:
        return _pointwise_backward(pixels, weight, grad_out, spec, x.shape) + (dbias,)
    adjoint = spec.adjoint(x.shape)
    dx = transposed.forward(grad_out, weight, None, adjoint)
    dweight = _present(transposed.backward(grad_out, weight, x, adjoint, need_dx=False)[1])
    return dx, dweight, dbias


def _pointwise_backward(
    pixels: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, spec: Conv2dSpec, x_shape: Tuple[int, ...]
) -> Tuple[np.ndarray, np.ndarray]:
    """``(dx, dweight)`` of a 1x1 convolution that reads no padding (``_pointwise_pixels``), in x's dtype.

    Per image and group ``dx = W^T @ G`` on the pixels read (zero elsewhere) and
    ``dweight = sum over images of G @ X^T``.
    """
    dtype = pixels.dtype
    rows, weight_g = _pointwise_operands(pixels, weight, spec.group)
    grad_rows = grad_out.astype(rows.dtype, copy=False).reshape(rows.shape[:2] + (weight_g.shape[1], -1))
    with np.errstate(invalid="ignore"):  # NaN the inputs make arrives quietly, as from the other routes
        dx_read = np.matmul(weight_g.transpose(0, 2, 1), grad_rows).reshape(pixels.shape)
        dweight = np.matmul(grad_rows, rows.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    if pixels.shape == tuple(x_shape):
        dx = dx_read
    else:
        dx = np.zeros(x_shape, dtype=rows.dtype)
        _present(_pointwise_pixels(dx, spec))[...] = dx_read  # the same view of dx: the pixels read
    return dx.astype(dtype, copy=False), dweight.astype(dtype, copy=False)
