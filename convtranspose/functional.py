"""Functional API: MindSpore's Conv2dTranspose as two functions on NumPy arrays.

Example:
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 3, 16, 50), np.float32)
    >>> w = np.full((3, 64, 4, 4), 0.01, np.float32)
    >>> ct.conv2d_transpose(x, w, pad_mode='pad').shape
    (1, 64, 19, 53)
    >>> dx, dw, db = ct.conv2d_transpose_backward(x, w, np.ones((1, 64, 19, 53), np.float32), pad_mode='pad')
    >>> dx.shape, dw.shape, db.shape
    ((1, 3, 16, 50), (3, 64, 4, 4), (64,))
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import numpy as np

from ._engines import numpy as engine
from .dtypes import check_float_array, native
from .spec import Conv2dTransposeSpec


def _array(value: Any, name: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {name} of type {type(value).__name__}")
    if isinstance(value, np.ma.MaskedArray):  # its mask would be silently ignored
        raise TypeError(f"{name} must be a plain NumPy array, got a masked array; fill it first "
                        f"({name}.filled(0))")
    return value


def _typed(value: Any) -> Any:
    """A cache key that tells ``True``, ``1``, ``1.0`` and ``np.int64(1)`` apart (they hash
    alike, and the spec accepts only the Python int)."""
    if type(value) is tuple:
        return (tuple, tuple(_typed(item) for item in value))
    return (type(value), value)


@functools.lru_cache(maxsize=512)
def _cached_spec(key: Tuple[Any, ...], *args: Any) -> Conv2dTransposeSpec:
    return Conv2dTransposeSpec.from_weight_shape(*args)


def spec_from_weight(weight_shape: Tuple[int, ...], stride: Any, pad_mode: Any, padding: Any,
                     output_padding: Any, dilation: Any, group: Any, has_bias: bool) -> Conv2dTransposeSpec:
    """The spec of a functional call (cached: validation runs once per distinct argument set)."""
    args = (tuple(weight_shape), stride, pad_mode, padding, output_padding, dilation, group, has_bias)
    try:
        key = _typed(args)
        hash(key)
    except TypeError:  # lists and arrays: let the spec explain what it expects
        return Conv2dTransposeSpec.from_weight_shape(*args)
    return _cached_spec(key, *args)


def check_call(spec: Conv2dTransposeSpec, x: Any, weight: np.ndarray,
               bias: Optional[np.ndarray]) -> Tuple[int, int, int, int]:
    """Check a call's arrays against ``spec`` and return the output shape.

    Raises:
        TypeError: x is not a NumPy array, or its dtype differs from the weight's (as in
            MindSpore and PyTorch), or the bias dtype differs from the weight's.
        ValueError: wrong rank or channel count, output_padding out of range, or a crop that
            leaves no rows (see :meth:`Conv2dTransposeSpec.check_input_shape`).
    """
    _array(x, "x")
    out_shape = spec.check_input_shape(x.shape)
    spec.check_parameters(weight.shape, None if bias is None else bias.shape)
    check_float_array(weight, "weight")
    if native(x.dtype) != native(weight.dtype):
        raise TypeError(f"x must have the parameters' dtype {weight.dtype.name}, got x of dtype "
                        f"{x.dtype.name}; convert it with x.astype(np.{weight.dtype.name})")
    if bias is not None and native(bias.dtype) != native(weight.dtype):
        raise TypeError(f"bias must have the weight's dtype {weight.dtype.name}, got bias of dtype "
                        f"{bias.dtype.name}")
    return out_shape


def conv2d_transpose(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray] = None, *,
                     stride: Any = 1, pad_mode: str = "same", padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, group: int = 1) -> np.ndarray:
    """MindSpore's 2-D transposed convolution, forward.

    Args:
        x: input ``(N, C_in, H, W)``, float16, float32 or float64.
        weight: ``(C_in, C_out // group, kH, kW)``, same dtype as x.
        bias: ``(C_out,)`` or None, same dtype as x.
        stride, pad_mode, padding, output_padding, dilation, group: as in
            :class:`convtranspose.Conv2dTranspose` (padding is top, bottom, left, right).

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype, where per axis ``H_out`` is ``H*stride``
        ('same'), ``H*stride + max(k_eff - stride, 0)`` ('valid') or
        ``(H-1)*stride + k_eff - pad_top - pad_bottom`` ('pad'), plus output_padding, with
        ``k_eff = dilation*(kernel-1) + 1``.
    """
    weight = _array(weight, "weight")
    if bias is not None:
        bias = _array(bias, "bias")
    spec = spec_from_weight(weight.shape, stride, pad_mode, padding, output_padding, dilation,
                            group, bias is not None)
    check_call(spec, x, weight, bias)
    return engine.forward(x, weight, bias, spec)


def conv2d_transpose_backward(x: np.ndarray, weight: np.ndarray, grad_output: np.ndarray, *,
                              stride: Any = 1, pad_mode: str = "same", padding: Any = 0,
                              output_padding: Any = 0, dilation: Any = 1,
                              group: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(conv2d_transpose(x, weight, bias, ...) * grad_output)``.

    The bias does not change any gradient, so it is not an argument.

    Args:
        x: the forward input ``(N, C_in, H, W)``.
        weight: ``(C_in, C_out // group, kH, kW)``.
        grad_output: upstream gradient, of the forward output's shape and x's dtype.
        stride, pad_mode, padding, output_padding, dilation, group: as in the forward call.

    Returns:
        ``(dx, dweight, dbias)``: shapes ``(N, C_in, H, W)``, ``(C_in, C_out // group, kH, kW)``
        and ``(C_out,)``, in x's dtype. ``dbias`` sums ``grad_output`` over the output
        without its output_padding rows and columns (they never receive the bias).
    """
    weight = _array(weight, "weight")
    spec = spec_from_weight(weight.shape, stride, pad_mode, padding, output_padding, dilation,
                            group, False)
    return backward(spec, x, weight, grad_output)


def backward(spec: Conv2dTransposeSpec, x: np.ndarray, weight: np.ndarray,
             grad_output: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward for an already-built spec (the layer's path); checks every array first."""
    out_shape = check_call(spec, x, weight, None)
    grad_output = _array(grad_output, "grad_output")
    if grad_output.shape != out_shape:
        raise ValueError(f"grad_output must have the output's shape {out_shape}, got grad_output of "
                         f"shape {grad_output.shape}")
    if grad_output.dtype != x.dtype:
        raise TypeError(f"grad_output must have x's dtype {x.dtype.name}, got grad_output of dtype "
                        f"{grad_output.dtype.name}")
    return engine.backward(x, weight, grad_output, spec)
