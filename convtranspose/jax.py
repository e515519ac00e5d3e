"""JAX front end: MindSpore's ``nn.Conv2dTranspose`` as a jit-, vmap- and grad-able JAX function.

This module imports JAX; ``import convtranspose`` does not. Arguments are validated and the
geometry computed by the shared spec; the math is the JAX engine's (``_engines/jax.py``), whose
backward is a ``jax.custom_vjp`` made of the transposed operations.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from convtranspose.jax import conv2d_transpose
    >>> x = jnp.ones((1, 3, 16, 50), jnp.float32)
    >>> w = jnp.full((3, 64, 4, 4), 0.01, jnp.float32)
    >>> conv2d_transpose(x, w, pad_mode='pad').shape
    (1, 64, 19, 53)
    >>> step = jax.jit(conv2d_transpose, static_argnames=('stride', 'pad_mode'))
    >>> step(x, w, stride=2, pad_mode='same').shape
    (1, 64, 32, 100)
    >>> jax.grad(lambda w: conv2d_transpose(x, w, stride=2).sum())(w).shape
    (3, 64, 4, 4)
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("convtranspose.jax needs JAX: pip install 'convtranspose[jax]'") from exc

from ._engines import jax as engine
from .spec import Conv2dSpec, Conv2dTransposeSpec, conv2d_spec_from_weight, spec_from_weight

__all__ = ["conv2d_transpose", "conv2d"]

# What the engine computes: float16 and bfloat16 in float32 with MindSpore's rounding; float64
# needs jax_enable_x64.
_FLOAT_DTYPES = tuple(jnp.dtype(name) for name in ("float16", "bfloat16", "float32", "float64"))


def _x64_enabled() -> bool:
    return bool(jax.config.read("jax_enable_x64"))


def _check_type(value: Any, name: str) -> None:
    """A JAX array (traced or not) or a plain NumPy array; anything else is a TypeError."""
    if isinstance(value, jax.Array):
        return
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a JAX or NumPy array, got {name} of type {type(value).__name__}")
    if isinstance(value, np.ma.MaskedArray):  # its mask would be silently ignored
        raise TypeError(f"{name} must be a plain array, got a masked array; fill it first ({name}.filled(0))")


def as_array(value: Any, name: str) -> jax.Array:
    """``value`` as a JAX array (a traced value stays as it is).

    Raises:
        TypeError: not a JAX or NumPy array, a masked array, or 64-bit data while
            ``jax_enable_x64`` is off (JAX would silently compute it in 32 bits).
    """
    _check_type(value, name)
    if isinstance(value, jax.Array):
        return value
    if value.dtype.itemsize == 8 and value.dtype.kind in "fiuc" and not _x64_enabled():
        raise TypeError(
            f"{name} has dtype {value.dtype.name}, which JAX holds only with 64-bit mode on: run "
            f"jax.config.update('jax_enable_x64', True) first, or pass {name}.astype(np.float32)"
        )
    # native byte order first: JAX refuses a big-endian array with a message naming no argument
    return jnp.asarray(value.astype(value.dtype.newbyteorder("=")) if not value.dtype.isnative else value)


def _dtype(value: Any) -> np.dtype:
    """The array's dtype in native byte order ('>f4' and '<f4' are both float32 to a caller)."""
    return np.dtype(value.dtype).newbyteorder("=")


def _dtype_name(value: Any) -> str:
    return _dtype(value).name


def _check_dtype(array: Any, name: str) -> None:
    if _dtype(array) not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have dtype float16, bfloat16, float32 or float64, got {name} of dtype {_dtype_name(array)}"
        )


def _check_call(
    spec: Union[Conv2dTransposeSpec, Conv2dSpec], x: Any, weight: Any, bias: Any
) -> Tuple[jax.Array, jax.Array, Optional[jax.Array]]:
    """Check a call's arrays against ``spec`` (types, then shapes as MindSpore, then dtypes).

    Dtypes are compared as given, before any conversion: a NumPy int64 or float64 input is
    named as such, not as the 32-bit array JAX would make of it. Shapes are static under
    ``jax.jit``, so these checks run once per trace.

    Returns:
        x, weight and bias as JAX arrays.

    Raises:
        TypeError: an argument that is not an array, a dtype the engine cannot compute, dtypes
            that differ (x and bias must have the weight's dtype, as in MindSpore), or float64
            data while ``jax_enable_x64`` is off.
        ValueError: shapes that do not fit the spec (see
            :meth:`Conv2dTransposeSpec.check_shapes`).
    """
    for name, value in (("x", x), ("weight", weight), ("bias", bias)):
        if value is not None or name != "bias":
            _check_type(value, name)
    spec.check_shapes(
        x.shape, weight.shape, None if bias is None else bias.shape, itemsize=max(np.dtype(x.dtype).itemsize, 4)
    )
    _check_dtype(weight, "weight")
    if _dtype(x) != _dtype(weight):
        raise TypeError(
            f"x must have the weight's dtype {_dtype_name(weight)}, got x of dtype "
            f"{_dtype_name(x)}; convert it with x.astype(weight.dtype)"
        )
    if bias is not None and _dtype(bias) != _dtype(weight):
        raise TypeError(
            f"bias must have the weight's dtype {_dtype_name(weight)}, got bias of dtype {_dtype_name(bias)}"
        )
    return as_array(x, "x"), as_array(weight, "weight"), None if bias is None else as_array(bias, "bias")


def _forward(spec: Union[Conv2dTransposeSpec, Conv2dSpec], x: Any, weight: Any, bias: Any = None) -> jax.Array:
    """Forward for an already-built spec (the Flax layer's path); checks every array first."""
    x, weight, bias = _check_call(spec, x, weight, bias)
    if isinstance(spec, Conv2dSpec):
        return engine.conv2d_forward(x, weight, bias, spec)
    return engine.forward(x, weight, bias, spec)


def _refuse_traced(**geometry: Any) -> None:
    """A traced stride (or any geometry argument) cannot decide shapes: say how to make it static."""
    for name, value in geometry.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(item, jax.core.Tracer) for item in items):
            raise TypeError(
                f"{name} must be a Python value, got a traced {name} (under jax.jit, mark the "
                f"geometry static: jax.jit(conv2d_transpose, static_argnames=('stride', "
                f"'pad_mode', 'padding', 'output_padding', 'dilation', 'group')))"
            )


def conv2d_transpose(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> jax.Array:
    """MindSpore's 2-D transposed convolution as a differentiable JAX function.

    Same arguments, output, gradients (``jax.grad``, ``jax.vjp``, any order in reverse mode) and
    errors as MindSpore 2.10's ``nn.Conv2dTranspose``; works under ``jax.jit`` (with the
    geometry arguments static), ``jax.vmap`` and sharded inputs.

    Args:
        x: input ``(N, C_in, H, W)``, a JAX or NumPy array of dtype float16, bfloat16, float32
            or float64 (float64 needs ``jax_enable_x64``).
        weight: ``(C_in, C_out // group, kH, kW)``, same dtype as x.
        bias: ``(C_out,)`` or None, same dtype as x.
        stride: int or ``(sH, sW)``.
        pad_mode: 'same' (``H_out = H*s``), 'valid' (``H*s + max(k_eff - s, 0)``) or 'pad'
            (``(H-1)*s + k_eff - top - bottom``), with ``k_eff = dilation*(kernel-1) + 1``.
        padding: int or ``(top, bottom, left, right)``; nonzero only with pad_mode='pad'.
        output_padding: int or ``(bottom, right)``: exact-zero rows/columns appended after the
            bias (no bias, no gradient); each below ``max(stride, dilation)``, 'pad' only.
        dilation: int or ``(dH, dW)``, spacing of the kernel taps.
        group: channel groups; ``C_in`` and ``C_out`` divisible by it.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype. float16 and bfloat16 are computed in float32
        and rounded as MindSpore rounds float16: ``round(round(conv) + bias)``.

    Raises:
        TypeError, ValueError: naming the argument and echoing the value (see
            :meth:`Conv2dTransposeSpec.from_args` and :meth:`Conv2dTransposeSpec.check_shapes`).

    Example:
        >>> import jax.numpy as jnp
        >>> from convtranspose.jax import conv2d_transpose
        >>> y = conv2d_transpose(jnp.ones((2, 4, 5, 5)), jnp.ones((4, 3, 3, 3)), stride=2, pad_mode='valid')
        >>> y.shape, y.dtype
        ((2, 3, 11, 11), dtype('float32'))
    """
    _refuse_traced(
        stride=stride, pad_mode=pad_mode, padding=padding, output_padding=output_padding, dilation=dilation, group=group
    )
    _check_type(weight, "weight")
    spec = spec_from_weight(weight.shape, stride, pad_mode, padding, output_padding, dilation, group, bias is not None)
    return _forward(spec, x, weight, bias)


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> jax.Array:
    """MindSpore's 2-D convolution (``nn.Conv2d``) as a differentiable JAX function.

    Cross-correlation with MindSpore's (TensorFlow's) 'same' and 'valid' and asymmetric 'pad'
    padding at any stride; same output, gradients and errors as MindSpore 2.10. Works under
    ``jax.jit`` (geometry static), ``jax.grad`` of any order, ``jax.vmap`` and sharded inputs.

    Args:
        x: input ``(N, C_in, H, W)``, a JAX or NumPy array of dtype float16, bfloat16, float32
            or float64 (float64 needs ``jax_enable_x64``).
        weight: ``(C_out, C_in // group, kH, kW)``, same dtype as x.
        bias: ``(C_out,)`` or None, same dtype as x.
        stride, pad_mode, padding, dilation, group: as in :class:`convtranspose.Conv2d`.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype.

    Raises:
        TypeError, ValueError: naming the argument and echoing the value.

    Example:
        >>> import jax.numpy as jnp
        >>> from convtranspose.jax import conv2d
        >>> conv2d(jnp.ones((2, 3, 7, 8)), jnp.ones((4, 3, 3, 3)), stride=2).shape
        (2, 4, 4, 4)
    """
    _refuse_traced(stride=stride, pad_mode=pad_mode, padding=padding, dilation=dilation, group=group)
    _check_type(weight, "weight")
    spec = conv2d_spec_from_weight(weight.shape, stride, pad_mode, padding, dilation, group, bias is not None)
    return _forward(spec, x, weight, bias)
