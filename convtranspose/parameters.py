"""MindSpore's parameter construction, shared by every layer (NumPy, torch, Flax).

MindSpore builds the weight initializer after its channel and kernel checks and the bias
initializer after the has_bias check, so an argument list with two faults raises what the first
check in that order finds. :func:`build_parameters` reproduces that order once, here, and returns
NumPy arrays: each front end only wraps them (``Parameter``, ``nn.Parameter``, ``nnx.Param``), so
every layer builds the same parameters and raises the same errors.
"""

from __future__ import annotations

import math
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from .dtypes import check_float_array, is_bfloat16, native, resolve_dtype
from .initializer import HeUniform, Uniform, fan_in_and_fan_out, initializer
from .spec import Conv2dTransposeSpec


class BuiltParameters(NamedTuple):
    """What :func:`build_parameters` returns.

    Attributes:
        spec: the validated arguments.
        weight: ``(C_in, C_out // group, kH, kW)`` array, native byte order.
        bias: ``(C_out,)`` array, or None without a bias.
        weight_init: the initializer used (MindSpore's default filled in).
        bias_init: the bias initializer used, or the argument as given without a bias (MindSpore
            ignores it then, unchecked).
        dtype: the resolved parameter dtype (an array initializer may keep its own).
    """

    spec: Conv2dTransposeSpec
    weight: np.ndarray
    bias: Optional[np.ndarray]
    weight_init: Any
    bias_init: Any
    dtype: np.dtype


def default_weight_init() -> HeUniform:
    """MindSpore's default weight initializer: ``HeUniform(negative_slope=sqrt(5))``, U(±1/sqrt(fan_in))."""
    return HeUniform(negative_slope=math.sqrt(5))


def default_bias_init(weight_shape: Tuple[int, ...]) -> Uniform:
    """MindSpore's default bias initializer: ``Uniform(1/sqrt(fan_in))``, fan_in from the weight shape."""
    fan_in, _ = fan_in_and_fan_out(weight_shape)
    return Uniform(1 / math.sqrt(fan_in))


def build_parameters(
    in_channels: Any,
    out_channels: Any,
    kernel_size: Any,
    stride: Any = 1,
    pad_mode: Any = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: Any = 1,
    has_bias: Any = False,
    weight_init: Any = None,
    bias_init: Any = None,
    dtype: Any = np.float32,
    *,
    rng: Optional[np.random.Generator] = None,
    with_bfloat16: bool = False,
) -> BuiltParameters:
    """Validate a layer's arguments and draw its parameters, in MindSpore's order.

    Args:
        in_channels, out_channels, kernel_size, stride, pad_mode, padding, output_padding,
            dilation, group, has_bias: MindSpore's arguments (see :class:`convtranspose.Conv2dTranspose`).
        weight_init: Initializer, name, number or array; None for MindSpore's default.
        bias_init: the same forms for the bias; ignored (not even checked) without a bias.
        dtype: float16, float32 or float64 as a NumPy dtype or a name ('float16', 'Float16',
            'mindspore.float16'). An array initializer keeps its own dtype.
        rng: the NumPy Generator to draw from; None uses the module generator of
            :mod:`convtranspose.initializer` (seeded by :func:`convtranspose.set_seed`).
        with_bfloat16: the caller computes bfloat16 (the torch and Flax layers): bfloat16 names
            and dtypes are accepted (the arrays are then ml_dtypes' bfloat16), drawn values are
            drawn in float32 and rounded once, and a bfloat16 array initializer is kept.

    Returns:
        :class:`BuiltParameters`: the spec and the arrays (fresh, owned by the caller).

    Raises:
        TypeError, ValueError: naming the argument, as the real MindSpore 2.10 raises them.

    Example:
        >>> built = build_parameters(4, 8, 3, has_bias=True)
        >>> built.weight.shape, built.bias.shape, built.weight.dtype.name
        ((4, 8, 3, 3), (8,), 'float32')
    """
    made: Dict[str, Any] = {}

    def make_weight(shape: Tuple[int, ...]) -> None:
        param_dtype = resolve_dtype(dtype, with_bfloat16=with_bfloat16)
        init = default_weight_init() if weight_init is None else weight_init
        made.update(
            weight=_draw(init, shape, param_dtype, rng, "weight_init", with_bfloat16),
            weight_init=init,
            dtype=param_dtype,
        )

    def make_bias(shape: Tuple[int, ...]) -> None:
        init = default_bias_init(made["weight"].shape) if bias_init is None else bias_init
        made.update(bias=_draw(init, shape, made["dtype"], rng, "bias_init", with_bfloat16), bias_init=init)

    spec = Conv2dTransposeSpec.from_args(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        pad_mode,
        padding,
        output_padding,
        dilation,
        group,
        has_bias,
        on_weight_shape=make_weight,
        on_bias_shape=make_bias,
    )
    return BuiltParameters(
        spec, made["weight"], made.get("bias"), made["weight_init"], made.get("bias_init", bias_init), made["dtype"]
    )


def _draw(
    init: Any,
    shape: Tuple[int, ...],
    dtype: np.dtype,
    rng: Optional[np.random.Generator],
    name: str,
    with_bfloat16: bool,
) -> np.ndarray:
    """The initializer's values as a float array in native byte order (a fresh copy).

    bfloat16 values are drawn in float32 and rounded once; an array initializer keeps its dtype.
    """
    rounded = is_bfloat16(dtype) and not isinstance(init, np.ndarray)
    data = initializer(init, shape, np.float32 if rounded else dtype, rng=rng, name=name)
    check_float_array(data, name, with_bfloat16)
    return np.array(data, dtype=dtype if rounded else native(data.dtype), copy=True)
