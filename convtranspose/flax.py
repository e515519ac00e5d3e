"""Flax NNX front end: MindSpore's ``nn.Conv2dTranspose`` as an ``nnx.Module``.

This module imports JAX and Flax; ``import convtranspose`` does not. The layer validates its
arguments and draws its parameters with the shared core
(:func:`convtranspose.parameters.build_parameters`), so it raises what the NumPy layer raises and
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

from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from flax import nnx
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("convtranspose.flax needs JAX and Flax: pip install 'convtranspose[jax]'") from exc

from . import jax as jax_front
from .parameters import build_parameters

__all__ = ["Conv2dTranspose"]


def _as_init(init: Any, name: str) -> Any:
    """A JAX array initializer as the NumPy array the shared builder takes (bfloat16 kept)."""
    if not isinstance(init, jax.Array):
        return init
    try:
        return np.asarray(init)
    except jax.errors.TracerArrayConversionError:
        raise TypeError(
            f"{name} is a traced array: Conv2dTranspose draws its parameters with MindSpore's "
            f"(NumPy) initializers, so it must be constructed outside jax.jit"
        ) from None


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


class Conv2dTranspose(nnx.Module):
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
            bias; each in ``[0, max(stride, dilation))`` and nonzero only with 'pad' (checked at
            the call, as MindSpore does).
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
        built = build_parameters(
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
            _as_init(weight_init, "weight_init"),
            _as_init(bias_init, "bias_init") if has_bias is True else bias_init,
            dtype,
            rng=_numpy_rng(rngs),
            with_bfloat16=True,
        )
        self.spec = built.spec
        spec = built.spec
        self.in_channels, self.out_channels = spec.in_channels, spec.out_channels
        self.kernel_size, self.stride, self.dilation = spec.kernel_size, spec.stride, spec.dilation
        self.pad_mode, self.padding, self.output_padding = spec.pad_mode, spec.padding, spec.output_padding
        self.group, self.has_bias = spec.group, spec.has_bias
        self.weight = nnx.Param(self._to_jax(built.weight, weight_init, "weight_init"))
        self.bias = nnx.Param(self._to_jax(built.bias, bias_init, "bias_init")) if spec.has_bias else None

    @staticmethod
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

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``, in the parameters' dtype.

        Raises:
            TypeError: x is not an array or its dtype is not the parameters' dtype.
            ValueError: wrong rank or channels, output_padding out of range, or a crop that
                leaves no rows.
        """
        bias = None if self.bias is None else self.bias.get_value()
        return jax_front.forward(self.spec, x, self.weight.get_value(), bias)

    # ------------------------------------------------------------------ MindSpore names

    def parameters_and_names(self, prefix: str = "") -> Iterator[Tuple[str, nnx.Param]]:
        """``(prefix + 'weight', weight)`` and, with a bias, ``(prefix + 'bias', bias)``."""
        yield prefix + "weight", self.weight
        if self.bias is not None:
            yield prefix + "bias", self.bias

    def parameters_dict(self, prefix: str = "") -> Dict[str, np.ndarray]:
        """NumPy copies of the parameters by MindSpore name, e.g. ``{'up1.weight': ...}``.

        What :func:`convtranspose.ckpt.save` writes.
        """
        return {name: np.array(param.get_value()) for name, param in self.parameters_and_names(prefix)}

    def load_parameters(self, arrays: Mapping[str, Any], prefix: str = "", strict: bool = True) -> None:
        """Set the parameters from ``arrays[prefix + 'weight']`` (and ``'bias'``).

        Args:
            arrays: name -> array, e.g. what :func:`convtranspose.ckpt.load` returns.
            prefix: the layer's path in its network, with the trailing dot ('blocks.0.').
            strict: also refuse a ``prefix + 'bias'`` entry when the layer has no bias.

        Raises:
            TypeError: ``arrays`` is not a mapping, or an array's dtype differs from the
                parameter's.
            KeyError: a parameter is missing from ``arrays``.
            ValueError: an array of the wrong shape, or (strict) an unexpected bias.
        """
        if not isinstance(arrays, Mapping):
            raise TypeError(f"arrays must be a mapping of names to arrays (e.g. a dict), got {type(arrays).__name__}")
        staged = []
        for name, param in self.parameters_and_names(prefix):
            if name not in arrays:
                raise KeyError(f"{name!r} is missing: the layer needs {name} of shape {param.get_value().shape}")
            value = arrays[name]
            shape, dtype = tuple(np.shape(value)), jnp.dtype(getattr(value, "dtype", None) or np.asarray(value).dtype)
            if shape != param.get_value().shape:
                raise ValueError(f"{name} must have shape {param.get_value().shape}, got shape {shape}")
            if dtype != param.get_value().dtype:
                raise TypeError(
                    f"{name} must have dtype {jnp.dtype(param.get_value().dtype).name}, got "
                    f"{dtype.name}; convert it first"
                )
            staged.append((param, value))
        if strict and self.bias is None and prefix + "bias" in arrays:
            raise ValueError(f"{prefix}bias is given but the layer has has_bias=False")
        for param, value in staged:  # all checked first: a failed load changes nothing
            param.set_value(jnp.array(value))
