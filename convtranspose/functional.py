"""Functional API: MindSpore's Conv2dTranspose as two functions on NumPy arrays.

This module is the NumPy front end: the only place that checks that the arrays are ndarrays,
normalises their byte order, and reaches the NumPy engine. The layer calls :func:`forward` and
:func:`backward` with its spec; the public functions build the spec from the weight's shape.

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

from typing import Any, Optional, Tuple, Union

import numpy as np

from ._engines import numpy as engine
from ._engines.numpy import conv2d as numpy_conv2d
from .dtypes import check_float_array, native
from .spec import Conv2dSpec, Conv2dTransposeSpec, conv2d_spec_from_weight, spec_from_weight


def as_ndarray(value: Any, name: str, swap: bool = True) -> np.ndarray:
    """``value`` as a plain C-contiguous ndarray in the machine's byte order (a copy only when needed).

    Byte order is normalised here, once, so that a big-endian float64 computes as float64 and
    every result and error speaks of native dtypes. Layout too: BLAS sums a strided or
    reversed view in another order (or with other FMA steps) than a C-ordered copy, so a view
    is copied once here and every view of the same values gives bitwise the same result.
    ``swap=False`` only checks the type.

    Raises:
        TypeError: ``value`` is not a NumPy array, or is a masked array.
    """
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {name} of type {type(value).__name__}")
    if isinstance(value, np.ma.MaskedArray):  # its mask would be silently ignored
        raise TypeError(f"{name} must be a plain NumPy array, got a masked array; fill it first ({name}.filled(0))")
    if swap and not (value.dtype.isnative and value.flags.c_contiguous):
        value = np.array(value, dtype=native(value.dtype), order="C")
    return value


Spec = Union[Conv2dTransposeSpec, Conv2dSpec]


def _engine_of(spec: Spec) -> Any:
    """The NumPy engine of the spec's layer: the transposed convolution's, or Conv2d's (built on it)."""
    return numpy_conv2d if isinstance(spec, Conv2dSpec) else engine


def _check_arrays(
    spec: Spec, x: Any, weight: Any, bias: Any
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Tuple[int, int, int, int]]:
    """Normalise a call's arrays and check them against ``spec``; returns them and the output shape."""
    x = as_ndarray(x, "x", swap=False)
    weight = as_ndarray(weight, "weight", swap=False)
    bias = None if bias is None else as_ndarray(bias, "bias", swap=False)
    # shapes first (as MindSpore), and before a byte swap copies anything
    out_shape = spec.check_shapes(
        x.shape, weight.shape, None if bias is None else bias.shape, itemsize=max(x.dtype.itemsize, 4)
    )
    x, weight = as_ndarray(x, "x"), as_ndarray(weight, "weight")
    bias = None if bias is None else as_ndarray(bias, "bias")
    check_float_array(weight, "weight")
    if x.dtype != weight.dtype:
        raise TypeError(
            f"x must have the parameters' dtype {weight.dtype.name}, got x of dtype "
            f"{x.dtype.name}; convert it with x.astype(np.{weight.dtype.name})"
        )
    if bias is not None and bias.dtype != weight.dtype:
        raise TypeError(f"bias must have the weight's dtype {weight.dtype.name}, got bias of dtype {bias.dtype.name}")
    return x, weight, bias, out_shape


def forward(spec: Spec, x: Any, weight: Any, bias: Any = None) -> np.ndarray:
    """Forward for an already-built spec (the layer's path); checks every array first.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype (native byte order).

    Raises:
        TypeError: an array that is not an ndarray, or dtypes that differ.
        ValueError: shapes that do not fit the spec (see :meth:`Conv2dTransposeSpec.check_shapes`).
    """
    x, weight, bias, _ = _check_arrays(spec, x, weight, bias)
    return _engine_of(spec).forward(x, weight, bias, spec)


def backward(spec: Spec, x: Any, weight: Any, grad_output: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward for an already-built spec (the layer's path); checks every array first.

    Returns:
        ``(dx, dweight, dbias)`` in x's dtype (native byte order).

    Raises:
        TypeError: an array that is not an ndarray, or dtypes that differ.
        ValueError: shapes that do not fit the spec, or a grad_output of another shape.
    """
    x, weight, _, out_shape = _check_arrays(spec, x, weight, None)
    grad_output = as_ndarray(grad_output, "grad_output")
    if grad_output.shape != out_shape:
        raise ValueError(
            f"grad_output must have the output's shape {out_shape}, got grad_output of shape {grad_output.shape}"
        )
    if grad_output.dtype != x.dtype:
        raise TypeError(
            f"grad_output must have x's dtype {x.dtype.name}, got grad_output of dtype {grad_output.dtype.name}"
        )
    return _engine_of(spec).backward(x, weight, grad_output, spec)


def conv2d_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> np.ndarray:
    """MindSpore's 2-D transposed convolution, forward.

    Args:
        x: input ``(N, C_in, H, W)``, float16, float32 or float64 (any byte order).
        weight: ``(C_in, C_out // group, kH, kW)``, same dtype as x.
        bias: ``(C_out,)`` or None, same dtype as x.
        stride, pad_mode, padding, output_padding, dilation, group: as in
            :class:`convtranspose.Conv2dTranspose` (padding is top, bottom, left, right).

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype, where per axis ``H_out`` is ``H*stride``
        ('same'), ``H*stride + max(k_eff - stride, 0)`` ('valid') or
        ``(H-1)*stride + k_eff - pad_top - pad_bottom`` ('pad'), plus output_padding, with
        ``k_eff = dilation*(kernel-1) + 1``.

    Raises:
        TypeError, ValueError: naming the argument (see :meth:`Conv2dTransposeSpec.from_args`
            and :meth:`Conv2dTransposeSpec.check_shapes`).
    """
    weight = as_ndarray(weight, "weight")
    spec = spec_from_weight(weight.shape, stride, pad_mode, padding, output_padding, dilation, group, bias is not None)
    return forward(spec, x, weight, bias)


def conv2d_transpose_backward(
    x: np.ndarray,
    weight: np.ndarray,
    grad_output: np.ndarray,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    weight = as_ndarray(weight, "weight")
    spec = spec_from_weight(weight.shape, stride, pad_mode, padding, output_padding, dilation, group, False)
    return backward(spec, x, weight, grad_output)


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> np.ndarray:
    """MindSpore's 2-D convolution (``nn.Conv2d``), forward: cross-correlation, no kernel flip.

    Args:
        x: input ``(N, C_in, H, W)``, float16, float32 or float64 (any byte order).
        weight: ``(C_out, C_in // group, kH, kW)``, same dtype as x.
        bias: ``(C_out,)`` or None, same dtype as x.
        stride, pad_mode, padding, dilation, group: as in :class:`convtranspose.Conv2d` (padding is
            top, bottom, left, right).

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype, where per axis ``H_out`` is ``ceil(H / stride)``
        ('same', TensorFlow's split: the odd padding row at the bottom), ``floor((H - k_eff) / stride) + 1``
        ('valid') or ``floor((H + top + bottom - k_eff) / stride) + 1`` ('pad'), with
        ``k_eff = dilation*(kernel-1) + 1``.

    Raises:
        TypeError, ValueError: naming the argument (see :meth:`Conv2dSpec.from_args` and
            :meth:`Conv2dSpec.check_shapes`).

    Example:
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> ct.conv2d(np.ones((1, 3, 7, 7), np.float32), np.ones((8, 3, 3, 3), np.float32), stride=2).shape
        (1, 8, 4, 4)
    """
    weight = as_ndarray(weight, "weight", swap=False)
    spec = conv2d_spec_from_weight(weight.shape, stride, pad_mode, padding, dilation, group, bias is not None)
    return forward(spec, x, weight, bias)


def conv2d_backward(
    x: np.ndarray,
    weight: np.ndarray,
    grad_output: np.ndarray,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(conv2d(x, weight, bias, ...) * grad_output)``.

    Args:
        x: the forward input ``(N, C_in, H, W)``.
        weight: ``(C_out, C_in // group, kH, kW)``.
        grad_output: upstream gradient, of the forward output's shape and x's dtype.
        stride, pad_mode, padding, dilation, group: as in the forward call.

    Returns:
        ``(dx, dweight, dbias)``: shapes ``(N, C_in, H, W)``, ``(C_out, C_in // group, kH, kW)``
        and ``(C_out,)``, in x's dtype.
    """
    weight = as_ndarray(weight, "weight")
    spec = conv2d_spec_from_weight(weight.shape, stride, pad_mode, padding, dilation, group, False)
    return backward(spec, x, weight, grad_output)
