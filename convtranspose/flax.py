"""Flax NNX front end: MindSpore's ``nn.Conv2dTranspose`` as an ``nnx.Module``.

This module imports JAX and Flax; ``import convtranspose`` does not. The layer validates its
arguments and draws its parameters with the shared core
(``convtranspose._layers``), so it raises what the NumPy layer raises and
starts from the same initializers and defaults; its call is the JAX engine's custom_vjp function.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from convtranspose.flax import Conv2dTranspose
    >>> net = Conv2dTranspose(3, 64, 4, stride=2, pad_mode='pad', padding=1, has_bias=True, rngs=nnx.Rngs(0))
    >>> net.weight[...].shape, net.bias[...].shape
    ((3, 64, 4, 4), (64,))
    >>> net(jnp.ones((1, 3, 16, 50))).shape
    (1, 64, 32, 100)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from flax import nnx
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("convtranspose.flax needs JAX and Flax: pip install 'convtranspose[jax]'") from exc

from . import jax as jax_front
from ._layers import LayerCore
from .spec import Conv2dSpec, Conv2dTransposeSpec

__all__ = ["Conv2dTranspose", "Conv2d"]


def _numpy_rng(rngs: Optional[nnx.Rngs]) -> Optional[np.random.Generator]:
    """A NumPy generator seeded from the ``params`` stream of ``rngs`` (None: the module generator).

    MindSpore's initializers are NumPy code, so the key only seeds them: 128 bits drawn from it.
    """
    if rngs is None:
        return None
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be a flax.nnx.Rngs or None, got rngs of type {type(rngs).__name__}")
    bits = jax.random.bits(rngs.params(), (4,), jnp.uint32)
    try:
        seed = np.asarray(bits)
    except jax.errors.TracerArrayConversionError:
        raise TypeError(
            "Conv2dTranspose draws its parameters with MindSpore's (NumPy) initializers, so it "
            "must be constructed outside jax.jit, nnx.jit and nnx.eval_shape"
        ) from None
    return np.random.default_rng(seed)


class _FlaxLayer(LayerCore, nnx.Module):
    """The Flax front end's share of a layer: ``nnx.Param`` objects, the engine call."""

    _engine_forward: Callable[..., jax.Array]

    def _setup(
        self, geometry: Dict[str, Any], weight_init: Any, bias_init: Any, dtype: Any, rngs: Optional[nnx.Rngs]
    ) -> None:
        built = self._build(geometry, weight_init, bias_init, dtype, rng=_numpy_rng(rngs), with_bfloat16=True)
        self.weight = nnx.Param(_to_jax(built.weight, weight_init, "weight_init"))
        self.bias = nnx.Param(_to_jax(built.bias, bias_init, "bias_init")) if built.bias is not None else None

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``, in the parameters' dtype.

        Raises:
            TypeError: x is not an array or its dtype is not the parameters' dtype.
            ValueError: wrong rank or channels, a crop that leaves no rows (Conv2dTranspose), or a
                kernel larger than the padded input (Conv2d).
        """
        bias = None if self.bias is None else self.bias.get_value()
        return self._engine_forward(self.spec, x, self.weight.get_value(), bias)

    def _parameter_info(self, param: nnx.Param) -> Tuple[Tuple[int, ...], np.dtype]:
        value = param.get_value()
        return tuple(value.shape), np.dtype(value.dtype)

    def _parameter_values(self, param: nnx.Param) -> np.ndarray:
        return np.array(param.get_value())

    def _assign(self, param: nnx.Param, values: np.ndarray) -> None:
        param.set_value(jnp.asarray(values))


def _to_jax(array: np.ndarray, init: Any, name: str) -> jax.Array:
    # An array initializer keeps its own dtype (as a MindSpore Tensor does); drawn bfloat16
    # parameters were drawn in float32 and rounded once by the shared builder.
    if array.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
        culprit = name if isinstance(init, (np.ndarray, jax.Array)) else "dtype"
        raise TypeError(
            f"{culprit} gives float64 parameters, which JAX keeps only with 64-bit mode on: "
            f"run jax.config.update('jax_enable_x64', True) first, or use float32"
        )
    return jnp.asarray(array)


class Conv2dTranspose(_FlaxLayer):
    """2-D transposed convolution with MindSpore 2.10's arguments, outputs, gradients and errors.

    Args:
        in_channels: input channels ``C_in`` (a positive Python int).
        out_channels: output channels ``C_out``.
        kernel_size: int or ``(kH, kW)``.
        stride: int or ``(sH, sW)``. Default 1.
        pad_mode: 'same' (``H_out = H*s``), 'valid' (``H*s + max(k_eff - s, 0)``) or 'pad'
            (``(H-1)*s + k_eff - top - bottom``), case-sensitive, with
            ``k_eff = dilation*(kernel-1) + 1``. Default 'same'.
        padding: int or ``(top, bottom, left, right)``; nonzero only with pad_mode='pad'.
        output_padding: int or ``(bottom, right)``: exact-zero rows/columns appended after the
            bias (no bias, no gradient); each in ``[0, max(stride, dilation))`` and nonzero only
            with 'pad' (checked at the call, as MindSpore does).
        dilation: int or ``(dH, dW)``, spacing of the kernel taps (1 is dense).
        group: splits channels into groups; both channel counts must be divisible by it.
        has_bias: whether to add a bias (a real bool).
        weight_init: Initializer, name, number, NumPy or JAX array of shape ``(C_in, C_out//group, kH, kW)``.
            Default ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_out//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        dtype: parameter dtype: float16, float32 (default), float64 (needs ``jax_enable_x64``)
            or bfloat16 (drawn in float32, then rounded), as a dtype or a name ('float16',
            'Float16', 'mindspore.bfloat16'). An array initializer keeps its own dtype.
        rngs: the parameters are drawn by MindSpore's (NumPy) initializers from a generator
            seeded by ``rngs.params()``, so the same ``rngs`` gives the same parameters. None
            uses the module generator of :mod:`convtranspose.initializer`, as the NumPy layer
            does (seeded by :func:`convtranspose.set_seed`).

    Attributes:
        weight: ``nnx.Param``, shape ``(C_in, C_out // group, kH, kW)``.
        bias: ``nnx.Param`` of shape ``(C_out,)``, or None.
        spec: the validated :class:`~convtranspose.spec.Conv2dTransposeSpec` (static).

    Raises:
        TypeError, ValueError: what the NumPy layer :class:`convtranspose.Conv2dTranspose`
            raises for the same arguments; TypeError for float64 parameters while
            ``jax_enable_x64`` is off (they would silently become float32).
    """

    _spec_class = Conv2dTransposeSpec
    _engine_forward = staticmethod(jax_front._forward)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        pad_mode: str = "same",
        padding: Any = 0,
        output_padding: Any = 0,
        dilation: Any = 1,
        group: int = 1,
        has_bias: bool = False,
        weight_init: Any = None,
        bias_init: Any = None,
        dtype: Any = jnp.float32,
        *,
        rngs: Optional[nnx.Rngs] = None,
    ) -> None:
        geometry = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            stride=stride,
            pad_mode=pad_mode,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            group=group,
            has_bias=has_bias,
        )
        self._setup(geometry, weight_init, bias_init, dtype, rngs)


class Conv2d(_FlaxLayer):
    """2-D convolution with MindSpore 2.10's arguments, outputs, gradients and errors (``nn.Conv2d``).

    Args:
        in_channels: input channels ``C_in`` (a positive Python int).
        out_channels: output channels ``C_out``.
        kernel_size: int or ``(kH, kW)``.
        stride: int or ``(sH, sW)``. Default 1.
        pad_mode: 'same' (``H_out = ceil(H/s)``, padding ``max((H_out-1)*s + k_eff - H, 0)`` split with
            the odd row at the bottom), 'valid' (``floor((H - k_eff)/s) + 1``) or 'pad'
            (``floor((H + top + bottom - k_eff)/s) + 1``), case-sensitive, with
            ``k_eff = dilation*(kernel-1) + 1``. Default 'same'.
        padding: int or ``(top, bottom, left, right)``; nonzero only with pad_mode='pad'.
        dilation: int or ``(dH, dW)``, spacing of the kernel taps (1 is dense).
        group: splits channels into groups; both channel counts must be divisible by it.
        has_bias: whether to add a bias (a real bool).
        weight_init: Initializer, name, number, NumPy or JAX array of shape ``(C_out, C_in//group, kH, kW)``.
            Default ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_in//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        data_format: 'NCHW', the only layout MindSpore computes on CPU (and this library).
        dtype: parameter dtype: float16, float32 (default), float64 (needs ``jax_enable_x64``)
            or bfloat16 (drawn in float32, then rounded), as a dtype or a name.
        rngs: seeds MindSpore's (NumPy) initializers from ``rngs.params()``; None uses the module
            generator of :mod:`convtranspose.initializer`.

    Attributes:
        weight: ``nnx.Param``, shape ``(C_out, C_in // group, kH, kW)``.
        bias: ``nnx.Param`` of shape ``(C_out,)``, or None.
        spec: the validated :class:`~convtranspose.spec.Conv2dSpec` (static).

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from convtranspose.flax import Conv2d
        >>> Conv2d(3, 8, 3, stride=2, rngs=nnx.Rngs(0))(jnp.ones((1, 3, 7, 8))).shape
        (1, 8, 4, 4)
    """

    _spec_class = Conv2dSpec
    _engine_forward = staticmethod(jax_front._forward)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        pad_mode: str = "same",
        padding: Any = 0,
        dilation: Any = 1,
        group: int = 1,
        has_bias: bool = False,
        weight_init: Any = None,
        bias_init: Any = None,
        data_format: str = "NCHW",
        dtype: Any = jnp.float32,
        *,
        rngs: Optional[nnx.Rngs] = None,
    ) -> None:
        geometry = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            stride=stride,
            pad_mode=pad_mode,
            padding=padding,
            dilation=dilation,
            group=group,
            has_bias=has_bias,
            data_format=data_format,
        )
        self._setup(geometry, weight_init, bias_init, dtype, rngs)
