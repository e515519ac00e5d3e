"""MindSpore's arguments and parameters for a Flax ``nnx.ConvTranspose`` or ``nnx.Conv`` (``from_flax``).

Measured on every configuration of ``tests/test_from_flax.py``:

- ``nnx.ConvTranspose`` (``lax.conv_transpose``) correlates the stride-dilated input with its
  kernel as it is, where a transposed convolution (MindSpore's, PyTorch's) uses the kernel
  flipped: its ``(kH, kW, C_in, C_out)`` kernel is MindSpore's ``(C_in, C_out, kH, kW)`` weight
  after a spatial flip and a transpose. With ``transpose_kernel=True`` lax flips it itself
  and the kernel is ``(kH, kW, C_out, C_in)``: a transpose, no flip.
- ``nnx.Conv``'s ``(kH, kW, C_in / group, C_out)`` kernel is MindSpore's ``(C_out, C_in / group,
  kH, kW)`` weight after a transpose, no flip.
- padding: 'SAME' and 'VALID' are MindSpore's 'same' and 'valid' in both; explicit padding is
  'pad' (for ConvTranspose, the crop lax's padding leaves: :func:`~convtranspose.spec.lax_transpose_crop`).

This module imports neither JAX nor Flax: it reads the module that the caller has.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .spec import Conv2dTransposeSpec, axis_plan, lax_transpose_crop


def flax_arguments(spec_class: Any, module: Any) -> Tuple[Dict[str, Any], np.ndarray, Optional[np.ndarray]]:
    """The layer's arguments, weight and bias that compute what ``module`` computes.

    Args:
        spec_class: :class:`~convtranspose.spec.Conv2dTransposeSpec` (``module`` must be an
            ``nnx.ConvTranspose``) or :class:`~convtranspose.spec.Conv2dSpec` (an ``nnx.Conv``).
        module: the Flax module, with 2-D kernels.

    Returns:
        ``(arguments, weight, bias)``: the constructor's keyword arguments (geometry and
        has_bias), the weight in MindSpore's layout and the bias (None without one), NumPy
        arrays of the kernel's dtype.

    Raises:
        TypeError: ``module`` is not the Flax class for this layer.
        ValueError: what MindSpore's arguments cannot express, naming the module's attribute:
            a kernel that is not 2-D, 'CIRCULAR', 'REFLECT' or 'CAUSAL' padding, an input
            dilation, a compute ``dtype`` other than the parameters', or (ConvTranspose) a
            padding larger than ``k_eff - 1`` (rows before the full result) or extra rows after
            it that would receive the bias.
    """
    transposed = spec_class is Conv2dTransposeSpec
    wanted = "ConvTranspose" if transposed else "Conv"
    nnx = sys.modules.get("flax.nnx")
    if nnx is None or not isinstance(module, getattr(nnx, wanted)):
        raise TypeError(f"module must be a flax.nnx.{wanted}, got module of type {type(module).__name__}")
    from flax.nnx.nn.linear import canonicalize_padding  # flax is loaded: module is one of its classes

    kernel_size = tuple(module.kernel_size)
    if len(kernel_size) != 2:
        raise ValueError(f"module must be a 2-D convolution, got kernel_size={kernel_size}")
    strides = _pair(module.strides)
    dilation = _pair(module.kernel_dilation)
    if not transposed and _pair(module.input_dilation) != (1, 1):
        raise ValueError(f"module has input_dilation={module.input_dilation}, which MindSpore's Conv2d cannot express")
    kernel = np.asarray(module.kernel.get_value())
    if module.mask is not None:
        kernel = kernel * np.asarray(module.mask, dtype=kernel.dtype)
    if module.dtype is not None and np.dtype(module.dtype) != kernel.dtype:
        raise ValueError(
            f"module computes in dtype={np.dtype(module.dtype).name} with {kernel.dtype.name} parameters; convert "
            f"the parameters first (the layers compute in their parameters' dtype)"
        )
    padding = canonicalize_padding(module.padding, 2)
    if isinstance(padding, str) and padding not in ("SAME", "VALID"):
        raise ValueError(f"module has padding={module.padding!r}, which MindSpore's pad modes cannot express")
    bias = None if module.bias is None else np.asarray(module.bias.get_value())
    arguments: Dict[str, Any] = dict(
        in_channels=module.in_features,
        out_channels=module.out_features,
        kernel_size=kernel_size,
        stride=strides,
        dilation=dilation,
        has_bias=bias is not None,
    )
    if transposed:
        arguments.update(_transposed_padding(kernel_size, strides, dilation, padding, bias is not None))
        # (kH, kW, C_in, C_out) used unflipped by lax; transpose_kernel: (kH, kW, C_out, C_in), flipped by lax
        weight = kernel.transpose(3, 2, 0, 1) if module.transpose_kernel else kernel[::-1, ::-1].transpose(2, 3, 0, 1)
    else:
        arguments.update(group=module.feature_group_count, **_conv_padding(padding))
        weight = kernel.transpose(3, 2, 0, 1)
    return arguments, np.ascontiguousarray(weight), bias


def _pair(value: Any) -> Tuple[int, int]:
    """Flax's strides/dilation (None, an int or a sequence) as a pair."""
    if value is None:
        return (1, 1)
    if isinstance(value, int):
        return (value, value)
    return tuple(value)  # type: ignore[return-value]


def _conv_padding(padding: Any) -> Dict[str, Any]:
    """nnx.Conv's padding as MindSpore's Conv2d pad_mode and padding."""
    if isinstance(padding, str):
        return dict(pad_mode=padding.lower())
    (top, bottom), (left, right) = padding
    return dict(pad_mode="pad", padding=(top, bottom, left, right))


def _transposed_padding(
    kernel_size: Tuple[int, int], strides: Tuple[int, int], dilation: Tuple[int, int], padding: Any, has_bias: bool
) -> Dict[str, Any]:
    """nnx.ConvTranspose's padding as MindSpore's pad_mode, padding and output_padding.

    'same' or 'valid' where their crops are lax's (always for 'SAME' and 'VALID'), else 'pad'
    with lax's crops; rows past the full result (a negative crop after) are MindSpore's
    output_padding zeros when there is no bias to add to them.
    """
    axes = range(2)
    given = [padding if isinstance(padding, str) else padding[axis] for axis in axes]
    crops = [lax_transpose_crop(kernel_size[a], strides[a], dilation[a], given[a]) for a in axes]
    for mode in ("same", "valid"):
        plans = [axis_plan(kernel_size[a], strides[a], dilation[a], mode, 0, 0, 0) for a in axes]
        if all((plan.crop_before, plan.crop_after) == crop for plan, crop in zip(plans, crops)):
            return dict(pad_mode=mode)
    extra = [max(-after, 0) for _, after in crops]
    for index, axis in enumerate(("height", "width")):
        (before, after), reach = crops[index], max(strides[index], dilation[index])
        if before < 0:
            raise ValueError(
                f"module has padding={padding!r}: on the {axis} axis lax adds {-before} row(s) before the full "
                f"transposed convolution, which MindSpore's 'pad' mode cannot express (its padding crops)"
            )
        if after < 0 and (has_bias or -after >= reach):
            why = "they receive the bias" if has_bias else f"output_padding must be below max(stride, dilation)={reach}"
            raise ValueError(
                f"module has padding={padding!r}: on the {axis} axis lax adds {-after} row(s) after the full "
                f"transposed convolution, which MindSpore's output_padding zeros cannot express ({why})"
            )
    (top, bottom), (left, right) = ((before, max(after, 0)) for before, after in crops)
    arguments: Dict[str, Any] = dict(pad_mode="pad", padding=(top, bottom, left, right))
    if any(extra):
        arguments["output_padding"] = tuple(extra)
    return arguments
