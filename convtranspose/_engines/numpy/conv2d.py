"""NumPy engine for MindSpore's ``nn.Conv2d``, by the adjoint relation with the transposed convolution.

Conv2d's forward is the input gradient of the transposed convolution whose input is Conv2d's
output and whose output window is Conv2d's input (``Conv2dSpec.adjoint``: the same weight
array, channels swapped); Conv2d's input gradient is that transposed convolution's forward, and
its weight gradient that transposed convolution's weight gradient with the roles of x and the
upstream gradient swapped. So every product here is one of the transposed engine's
(the other modules of this package): the same routes, the same exact multiply-adds, the same memory budget.

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


def _asked(gradient: Optional[np.ndarray]) -> np.ndarray:
    """A gradient the transposed backward was asked for (it returns None only for those it was not)."""
    assert gradient is not None
    return gradient


def _reads_nothing(x: np.ndarray, spec: Conv2dSpec) -> bool:
    """No output entry reads any input value: an empty input or output, or only padding under every tap."""
    out_shape = spec.output_shape(x.shape)
    return x.size == 0 or 0 in out_shape or spec.kernel_windows(x.shape) is None


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
    else:
        adjoint = spec.adjoint(x.shape)
        placeholder = np.broadcast_to(np.zeros((), x.dtype), out_shape)  # read for its shape only
        y = _asked(
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
    adjoint = spec.adjoint(x.shape)
    dx = transposed.forward(grad_out, weight, None, adjoint)
    dweight = _asked(transposed.backward(grad_out, weight, x, adjoint, need_dx=False)[1])
    return dx, dweight, dbias
