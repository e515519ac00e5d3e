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

import numbers
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from flax import nnx
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("convtranspose.flax needs JAX and Flax: pip install 'convtranspose[jax]'") from exc

from . import jax as jax_front
from ._layers import LayerCore, _draw, build_parameters, placeholder
from .dtypes import is_bfloat16, resolve_dtype
from .initializer import (
    Constant,
    Dirac,
    HeNormal,
    HeUniform,
    Identity,
    Initializer,
    Normal,
    One,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    XavierNormal,
    XavierUniform,
    Zero,
    _from_name,
)
from .spec import Conv2dSpec, Conv2dTransposeSpec

__all__ = ["Conv2dTranspose", "Conv2d", "load_mindspore", "save_mindspore"]


def _params_key(rngs: Optional[nnx.Rngs]) -> Optional[jax.Array]:
    """One key from the ``params`` stream of ``rngs`` (None without rngs); traced under a transform."""
    if rngs is None:
        return None
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be a flax.nnx.Rngs or None, got rngs of type {type(rngs).__name__}")
    return rngs.params()


def _numpy_rng(key: Optional[jax.Array]) -> Optional[np.random.Generator]:
    """A NumPy generator seeded by 128 bits drawn from a concrete ``key`` (None: the module generator).

    MindSpore's initializers are NumPy code, so the key only seeds them.
    """
    if key is None:
        return None
    return np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)))


def _is_flax_init(init: Any) -> bool:
    """A Flax initializer: a callable ``(key, shape, dtype) -> array`` that is not MindSpore's."""
    return callable(init) and not isinstance(init, (Initializer, np.ndarray, jax.Array, str, numbers.Number))


class _JaxGenerator:
    """The part of ``numpy.random.Generator`` MindSpore's initializers draw with, drawn by ``jax.random``.

    Construction under a JAX transform has a traced key and no NumPy values: the same
    initializers' code then draws the same distributions from the key (in JAX's default float
    dtype), not the same values as NumPy.
    """

    def __init__(self, key: jax.Array) -> None:
        self._key = key

    def _next(self) -> jax.Array:
        self._key, key = jax.random.split(self._key)
        return key

    def uniform(self, low: float, high: float, size: Tuple[int, ...]) -> jax.Array:
        """U[low, high) of shape ``size``."""
        return jax.random.uniform(self._next(), size, minval=low, maxval=high)

    def normal(self, loc: float, scale: float, size: Tuple[int, ...]) -> jax.Array:
        """N(loc, scale**2) of shape ``size``."""
        return loc + scale * jax.random.normal(self._next(), size)


# What a traced construction can draw: MindSpore's code with _JaxGenerator, or (Dirac,
# Identity) deterministic values; TruncatedNormal by jax.random.truncated_normal.
_TRACEABLE = (Normal, Uniform, HeUniform, HeNormal, XavierUniform, XavierNormal, VarianceScaling, Constant)
_DETERMINISTIC = (Dirac, Identity, One, Zero)


def _traced_draw(init: Any, shape: Tuple[int, ...], dtype: np.dtype, key: jax.Array, name: str) -> jax.Array:
    """MindSpore's initializer ``init`` drawn with ``jax.random`` from ``key`` (same distribution).

    The initializer's arguments are checked as an eager draw checks them (on a one-element
    draw with NumPy); bfloat16 is drawn in float32 and rounded once.

    Raises:
        TypeError: an initializer whose NumPy code needs concrete values (Orthogonal, Sparse, a
            custom Initializer), naming the argument and how to construct instead.
        TypeError, ValueError: a bad argument of the initializer, as an eager draw raises it.
    """
    if isinstance(init, str):
        init = _from_name(init, name)
    elif isinstance(init, numbers.Number):
        init = Constant(init)
    if isinstance(init, _DETERMINISTIC):
        return jnp.asarray(_draw(init, shape, dtype, None, name, True))
    if not isinstance(init, _TRACEABLE + (TruncatedNormal,)):
        raise TypeError(
            f"{name}={init!r} cannot be drawn under a JAX transform (nnx.jit, nnx.eval_shape, nnx.vmap, "
            f"nnx.scan): its NumPy code needs concrete values. Construct the module outside the transform, "
            f"or pass one of {', '.join(cls.__name__ for cls in _TRACEABLE + (TruncatedNormal,))} or a Flax "
            f"initializer (key, shape, dtype) -> array"
        )
    _draw(init, (1,) * len(shape), np.dtype(np.float32), np.random.default_rng(0), name, True)  # the checks
    work = jnp.float32 if is_bfloat16(dtype) else dtype
    if isinstance(init, TruncatedNormal):
        values = _truncated_normal(init, shape, key)
    else:
        values = init._sample(shape, _JaxGenerator(key))
    return jnp.asarray(values, dtype=work).astype(dtype)


def _truncated_normal(init: TruncatedNormal, shape: Tuple[int, ...], key: jax.Array) -> jax.Array:
    """N(mean, sigma**2) restricted to the absolute bounds ``[a, b]`` (arguments already checked)."""
    sigma, mean, a, b = (float(value) for value in (init.sigma, init.mean, init.a, init.b))
    if sigma == 0:
        return jnp.full(shape, min(max(mean, a), b))
    z = jax.random.truncated_normal(key, (a - mean) / sigma, (b - mean) / sigma, shape)
    return jnp.clip(mean + sigma * z, a, b)


class _FlaxLayer(LayerCore, nnx.Module):
    """The Flax front end's share of a layer: ``nnx.Param`` objects, the engine call, mixed precision."""

    _engine_forward: Callable[..., jax.Array]

    def _setup(
        self,
        geometry: Dict[str, Any],
        weight_init: Any,
        bias_init: Any,
        dtype: Any,
        rngs: Optional[nnx.Rngs],
        compute_dtype: Any,
        weight_metadata: Mapping[str, Any],
        bias_metadata: Mapping[str, Any],
    ) -> None:
        self.compute_dtype = _check_compute_dtype(compute_dtype)
        key = _params_key(rngs)
        traced = isinstance(key, jax.core.Tracer)
        if not traced and not _is_flax_init(weight_init) and not _is_flax_init(bias_init):
            # eager, MindSpore's NumPy initializers: the values as they always were
            built = self._build(geometry, weight_init, bias_init, dtype, rng=_numpy_rng(key), with_bfloat16=True)
            weight = _to_jax(built.weight, weight_init, "weight_init")
            bias = None if built.bias is None else _to_jax(built.bias, bias_init, "bias_init")
        else:
            weight, bias = self._draw_with_jax(geometry, weight_init, bias_init, dtype, key, rngs)
        self.weight = nnx.Param(weight, **weight_metadata)
        self.bias = None if bias is None else nnx.Param(bias, **bias_metadata)

    def _draw_with_jax(
        self, geometry: Dict[str, Any], weight_init: Any, bias_init: Any, dtype: Any, key: Any, rngs: Any
    ) -> Tuple[Any, Any]:
        """The parameters drawn from the key: under a transform, or with a Flax initializer.

        The arguments are checked in MindSpore's order with nothing drawn; MindSpore's
        initializers are then drawn by :func:`_traced_draw`, a Flax initializer is called with a
        key of its own (what it returns, ``nnx.with_partitioning``'s metadata included, becomes
        the parameter).
        """
        if key is None:
            raise TypeError(
                "rngs is None: a Flax initializer, and construction under a JAX transform, draw from "
                "rngs.params(); pass rngs=nnx.Rngs(seed)"
            )
        shape_of = self._spec_class.weight_shape_of(**geometry, allocate=False)
        param_dtype = resolve_dtype(dtype, with_bfloat16=True)
        if param_dtype == np.float64:
            _to_jax(placeholder((), param_dtype), None, "dtype")  # refused while x64 is off
        flax_values = {}
        for name, init, shape in (("weight_init", weight_init, shape_of), ("bias_init", bias_init, None)):
            if _is_flax_init(init):
                shape = shape if shape is not None else (geometry["out_channels"],)
                flax_values[name] = _call_flax_init(init, rngs.params(), shape, param_dtype, name)
        built = build_parameters(
            self._spec_class,
            geometry,
            _placeholder_of(flax_values.get("weight_init"), weight_init),
            _placeholder_of(flax_values.get("bias_init"), bias_init),
            dtype,
            with_bfloat16=True,
            draw=False,
        )
        # Set once (nnx fixes an attribute's kind, data or static, at its first assignment): a
        # Flax initializer as given, not the placeholder of its result that the builder saw.
        self.spec = built.spec
        self.weight_init = weight_init if _is_flax_init(weight_init) else built.weight_init
        self.bias_init = bias_init if _is_flax_init(bias_init) else built.bias_init
        weight_key, bias_key = jax.random.split(key)
        weight = flax_values.get("weight_init")
        if weight is None:
            weight = _traced_or_array(built.weight_init, built.weight, weight_key, "weight_init")
        bias = None
        if built.bias is not None:
            bias = flax_values.get("bias_init")
            if bias is None:
                bias = _traced_or_array(built.bias_init, built.bias, bias_key, "bias_init")
        return weight, bias

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``.

        Without ``compute_dtype`` x must have the parameters' dtype (as in MindSpore) and the
        result has it. With ``compute_dtype`` x, the weight and the bias are cast to it (or, for
        'promote', to their promoted dtype, as ``nnx.Conv`` with ``dtype=None``) and the result
        has that dtype; float16 and bfloat16 compute as MindSpore does:
        ``fp16(fp16(conv in float32) + bias)``.

        Raises:
            TypeError: x is not an array, or its dtype is not the parameters' dtype (without
                ``compute_dtype``), or not a float dtype (with it).
            ValueError: wrong rank or channels, a crop that leaves no rows (Conv2dTranspose), or a
                kernel larger than the padded input (Conv2d).
        """
        weight = self.weight.get_value()
        bias = None if self.bias is None else self.bias.get_value()
        if self.compute_dtype is not None:
            x, weight, bias = _in_compute_dtype(self.compute_dtype, x, weight, bias)
        return self._engine_forward(self.spec, x, weight, bias)

    def _parameter_info(self, param: nnx.Param) -> Tuple[Tuple[int, ...], np.dtype]:
        value = param.get_value()
        return tuple(value.shape), np.dtype(value.dtype)

    def _parameter_values(self, param: nnx.Param) -> np.ndarray:
        return np.array(param.get_value())

    def _assign(self, param: nnx.Param, values: np.ndarray) -> None:
        param.set_value(jnp.asarray(values))


_COMPUTE_DTYPES = tuple(jnp.dtype(name) for name in ("float16", "bfloat16", "float32", "float64"))


def _check_compute_dtype(compute_dtype: Any) -> Any:
    """None, 'promote', or a float dtype (as a ``jnp.dtype``).

    Raises:
        TypeError: anything else, naming compute_dtype.
    """
    if compute_dtype is None or (isinstance(compute_dtype, str) and compute_dtype == "promote"):
        return compute_dtype
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype not in _COMPUTE_DTYPES:  # np.dtype(None) is float64: test None first
        raise TypeError(
            f"compute_dtype must be None, 'promote' or float16, bfloat16, float32 or float64, got "
            f"compute_dtype={compute_dtype!r}"
        )
    if dtype == jnp.float64 and not jax.config.read("jax_enable_x64"):
        raise TypeError(
            "compute_dtype=float64 needs JAX's 64-bit mode: run jax.config.update('jax_enable_x64', True) first"
        )
    return dtype


def _in_compute_dtype(compute_dtype: Any, x: Any, weight: jax.Array, bias: Optional[jax.Array]) -> Tuple[Any, ...]:
    """x, weight and bias in the compute dtype ('promote': their promoted dtype, as ``nnx.Conv``'s)."""
    if not isinstance(x, (jax.Array, np.ndarray)):
        return x, weight, bias  # the engine's check names x and its type
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a float array, got x of dtype {np.dtype(x.dtype).name}")
    arrays = (x, weight) if bias is None else (x, weight, bias)
    dtype = jnp.result_type(*arrays) if compute_dtype == "promote" else compute_dtype
    return tuple(None if array is None else jnp.asarray(array).astype(dtype) for array in (x, weight, bias))


def _call_flax_init(init: Callable[..., Any], key: jax.Array, shape: Tuple[int, ...], dtype: np.dtype, name: str):
    """``init(key, shape, dtype)``, its shape and dtype checked (``nnx.with_partitioning``'s metadata kept)."""
    value = init(key, shape, jnp.dtype(dtype))
    array = getattr(value, "raw_value", value)  # nnx.VariableMetadata carries the array and its sharding
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise TypeError(f"{name}={init!r} must return an array, got {type(array).__name__}")
    if tuple(array.shape) != shape:
        raise ValueError(f"{name}={init!r} returned shape {tuple(array.shape)}; the parameter has shape {shape}")
    if jnp.dtype(array.dtype) not in _COMPUTE_DTYPES:
        raise TypeError(f"{name}={init!r} returned dtype {jnp.dtype(array.dtype).name}; a float dtype is needed")
    return value


def _placeholder_of(flax_value: Any, init: Any) -> Any:
    """What the shared builder checks for a parameter: a placeholder of a Flax initializer's result, or ``init``."""
    if flax_value is None:
        return init
    array = getattr(flax_value, "raw_value", flax_value)
    return placeholder(tuple(array.shape), np.dtype(array.dtype))


def _traced_or_array(init: Any, placeholder_array: np.ndarray, key: jax.Array, name: str) -> jax.Array:
    """An array initializer as a JAX array, else MindSpore's initializer drawn from ``key``.

    A concrete key (eager construction beside a Flax initializer) seeds MindSpore's NumPy
    initializer as eager construction does; a traced one draws with ``jax.random``.
    """
    if isinstance(init, np.ndarray):
        return _to_jax(np.array(init), init, name)
    shape, dtype = placeholder_array.shape, placeholder_array.dtype
    if isinstance(key, jax.core.Tracer):
        return _traced_draw(init, shape, dtype, key, name)
    return _to_jax(_draw(init, shape, dtype, _numpy_rng(key), name, True), init, name)


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
        weight_init: Initializer, name, number, NumPy or JAX array of shape ``(C_in, C_out//group, kH, kW)``,
            or a Flax initializer ``(key, shape, dtype) -> array`` (``nnx.initializers.lecun_normal()``,
            ``nnx.with_partitioning(...)``), called with a key of ``rngs.params()``. Default
            ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_out//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        dtype: parameter dtype: float16, float32 (default), float64 (needs ``jax_enable_x64``)
            or bfloat16 (drawn in float32, then rounded), as a dtype or a name ('float16',
            'Float16', 'mindspore.bfloat16'). An array initializer keeps its own dtype.
        rngs: the parameters are drawn by MindSpore's (NumPy) initializers from a generator
            seeded by ``rngs.params()``, so the same ``rngs`` gives the same parameters. None
            uses the module generator of :mod:`convtranspose.initializer`, as the NumPy layer
            does (seeded by :func:`convtranspose.set_seed`). Under a JAX transform (``nnx.jit``,
            ``nnx.eval_shape``, ``nnx.vmap``, ``nnx.scan``) the key is traced: the same
            initializers are then drawn with ``jax.random`` from it (same distributions, other
            values; Orthogonal and Sparse are refused there).
        compute_dtype: None (default): x must have the parameters' dtype, as in MindSpore.
            A float dtype: x, the weight and the bias are cast to it for the call (float16 and
            bfloat16 computed as MindSpore computes them), e.g. float32 parameters computed in
            bfloat16. 'promote': cast to their promoted dtype, as ``nnx.ConvTranspose`` does
            with ``dtype=None`` (a bfloat16 module given float32 input computes in float32).
        weight_metadata, bias_metadata: keyword arguments of the ``nnx.Param`` (sharding
            annotations such as ``{'out_sharding': ('model', None, None, None)}``), as
            ``nnx.Conv``'s ``kernel_metadata``.

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
        compute_dtype: Any = None,
        weight_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
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
        self._setup(geometry, weight_init, bias_init, dtype, rngs, compute_dtype, weight_metadata, bias_metadata)


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
        weight_init: Initializer, name, number, NumPy or JAX array of shape ``(C_out, C_in//group, kH, kW)``,
            or a Flax initializer ``(key, shape, dtype) -> array``. Default
            ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_in//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        data_format: 'NCHW', the only layout MindSpore computes on CPU (and this library).
        dtype: parameter dtype: float16, float32 (default), float64 (needs ``jax_enable_x64``)
            or bfloat16 (drawn in float32, then rounded), as a dtype or a name.
        rngs: seeds MindSpore's (NumPy) initializers from ``rngs.params()``; None uses the module
            generator of :mod:`convtranspose.initializer`. Under a JAX transform, as for
            :class:`Conv2dTranspose`.
        compute_dtype, weight_metadata, bias_metadata: as for :class:`Conv2dTranspose`.

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
        compute_dtype: Any = None,
        weight_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
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
        self._setup(geometry, weight_init, bias_init, dtype, rngs, compute_dtype, weight_metadata, bias_metadata)


# ----------------------------------------------------------------------------------------------
# Porting a whole MindSpore network: load_mindspore / save_mindspore
# ----------------------------------------------------------------------------------------------

# The framework-neutral part (names, training state, checks, the result) is convtranspose._porting.


def _flax_renames(module: Any) -> Dict[str, Tuple[str, Any]]:
    """Flax variable name -> (MindSpore's name, layout), for the layers whose names or layouts differ."""
    from . import _porting

    if isinstance(module, nnx.BatchNorm):
        return {name: (ms, _porting.AS_IS) for name, ms in _porting.BATCHNORM_NAMES.items()}
    if isinstance(module, (nnx.LayerNorm, nnx.GroupNorm)):
        return {name: (ms, _porting.AS_IS) for name, ms in _porting.NORM_NAMES.items()}
    if isinstance(module, nnx.Linear):
        return {"kernel": ("weight", _porting.DENSE_TRANSPOSED)}
    if isinstance(module, nnx.Conv):
        return {"kernel": ("weight", _porting.CONV_KERNEL)}
    if isinstance(module, nnx.ConvTranspose):
        # transpose_kernel=True holds MindSpore's weight as (kH, kW, C_out, C_in), the Conv layout
        layout = _porting.CONV_KERNEL if module.transpose_kernel else _porting.CONV_TRANSPOSE_KERNEL
        return {"kernel": ("weight", layout)}
    if isinstance(module, nnx.Embed):
        return {"embedding": ("embedding_table", _porting.AS_IS)}
    if isinstance(module, nnx.PReLU):
        return {"negative_slope": ("alpha", _porting.AS_IS)}
    return {}


def _flax_slot(parts: Tuple[str, ...], leaf: str, target: str, variable: nnx.Variable, layout: Any) -> Any:
    from . import _porting

    value = variable.get_value()
    shape = tuple(value.shape)
    if layout is _porting.AS_IS and shape == () and leaf == "alpha":  # nnx.PReLU's scalar: MindSpore's (1,)
        layout = _porting.reshaped((), (1,))

    def read() -> np.ndarray:
        return np.array(variable.get_value())

    def write(values: np.ndarray) -> None:
        variable.set_value(jnp.asarray(values))

    return _porting.Slot(parts, leaf, target, shape, np.dtype(value.dtype), layout, read, write)


def _flax_children(node: Any) -> Any:
    """``(MindSpore name, framework name, child)`` of a module or container, in insertion order."""
    if isinstance(node, nnx.Sequential):  # MindSpore's SequentialCell numbers its cells: no 'layers'
        return [(str(i), f"layers.{i}", child) for i, child in enumerate(node.layers)]
    if isinstance(node, (nnx.List, list, tuple)):
        return [(str(i), str(i), child) for i, child in enumerate(node)]
    if isinstance(node, (nnx.Dict, dict)):
        return [(str(k), str(k), child) for k, child in node.items()]
    return [(k, k, v) for k, v in vars(node).items() if not k.startswith("_")]


def _flax_walk(node: Any, parts: Tuple[str, ...], target: str, seen: set, slots: list, containers: list) -> None:
    from . import _porting

    if id(node) in seen:
        return
    seen.add(id(node))
    container = isinstance(node, (nnx.Sequential, nnx.List, nnx.Dict, list, tuple, dict))
    if container:
        containers.append(parts)
    renames = {} if container else _flax_renames(node)
    layer, children = [], []
    for ms_name, name, child in _flax_children(node):
        path = f"{target}.{name}" if target else name
        if isinstance(child, (nnx.Param, nnx.BatchStat)):
            leaf, layout = renames.get(name, (ms_name, _porting.AS_IS))
            layer.append(_flax_slot(parts, leaf, path, child, layout))
        elif isinstance(child, (nnx.Module, list, tuple, dict)):
            children.append((parts + (ms_name,), path, child))
    slots += _porting.in_mindspore_order(layer) if renames else layer
    for child_parts, path, child in children:
        _flax_walk(child, child_parts, path, seen, slots, containers)


def _flax_slots(model: Any) -> Tuple[list, list]:
    """Every ``nnx.Param`` and ``nnx.BatchStat`` of ``model``, as MindSpore names it; and the container paths."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    slots: list = []
    containers: list = []
    _flax_walk(model, (), "", set(), slots, containers)
    return slots, containers


def load_mindspore(model: nnx.Module, checkpoint: Any, *, strict: bool = True) -> Any:
    """Load a MindSpore checkpoint into a Flax NNX port of the network, in one call.

    MindSpore's names and layouts are mapped onto the model's ``nnx.Param`` and ``nnx.BatchStat``
    variables: ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` onto ``nnx.BatchNorm``'s
    ``scale``, ``bias``, ``mean``, ``var``; ``gamma``/``beta`` onto ``nnx.LayerNorm``/``nnx.GroupNorm``'s
    ``scale``/``bias``; ``nn.Dense``'s weight ``(out, in)`` onto ``nnx.Linear``'s kernel ``(in, out)``;
    ``nn.Conv2d``'s weight ``(C_out, C_in/group, kH, kW)`` onto ``nnx.Conv``'s kernel
    ``(kH, kW, C_in/group, C_out)``; ``nn.Conv2dTranspose``'s weight ``(C_in, C_out, kH, kW)`` onto
    ``nnx.ConvTranspose``'s kernel (``(kH, kW, C_in, C_out)`` with the taps reversed, or
    ``(kH, kW, C_out, C_in)`` with ``transpose_kernel=True``: both give MindSpore's output exactly);
    ``embedding_table`` onto ``nnx.Embed``, ``alpha`` onto ``nnx.PReLU``; this library's
    :class:`Conv2d` and :class:`Conv2dTranspose` and every other variable by its own name, as they
    are. ``nnx.Sequential``'s cells are numbered as a ``SequentialCell``'s (``layers.0.weight`` for
    ``self.layers = nnx.Sequential(...)``), and so are ``nnx.List`` and lists of modules. The
    optimizer's state and training scalars are left out (:func:`convtranspose.ckpt.split_training_state`).

    Args:
        model: the Flax NNX network, built with the MindSpore network's structure.
        checkpoint: a path to a ``.ckpt`` or ``.safetensors`` file, or a mapping of names to arrays.
        strict: raise when a variable is missing from the checkpoint or a network entry of the
            checkpoint has no place in the model; False loads what matches and returns the rest.

    Returns:
        A :class:`convtranspose._porting.LoadResult`: ``loaded``, ``training_state``, ``missing``,
        ``unexpected`` and ``renamed``.

    Raises:
        TypeError: model is not an ``nnx.Module``, checkpoint neither a path nor a mapping, strict
            not a bool.
        ValueError: strict and names differ (all listed), or a tensor of the wrong shape or dtype
            (all listed); nothing is written then.
        convtranspose.ckpt.CheckpointError: the file is damaged.
    """
    from . import _porting

    slots, containers = _flax_slots(model)
    return _porting.load(slots, containers, checkpoint, strict=strict, module_name=type(model).__name__)


def save_mindspore(
    model: nnx.Module,
    path: Any,
    *,
    append_dict: Optional[Dict[str, Any]] = None,
    renamed: Optional[Dict[str, str]] = None,
) -> None:
    """Write a Flax NNX port's variables as a MindSpore ``.ckpt``, under MindSpore's names and layouts.

    The reverse of :func:`load_mindspore` (kernels transposed back to MindSpore's layouts), then the
    ``append_dict`` entries. Written atomically by :func:`convtranspose.ckpt.save`. The tensors come
    in the order of the model's attributes, BatchNorm's in MindSpore's order (``moving_mean``,
    ``moving_variance``, ``gamma``, ``beta``): for a model built as MindSpore's network is, the
    file MindSpore writes. ``nnx.clone`` and ``nnx.merge`` sort attributes by name, which changes
    only the order of the entries (MindSpore loads by name).

    Args:
        model: the port whose variables to write.
        path: the ``.ckpt`` file to write (``.safetensors`` also works); replaced.
        append_dict: ``{name: value}`` written after the parameters (``{'epoch_num': 3, 'step_num': 120}``),
            as ``save_checkpoint(append_dict=...)`` stores it; or None.
        renamed: ``load_mindspore(...).renamed``: writes the tensors of a container that MindSpore
            names without the path above it under MindSpore's names (``0.weight`` rather than
            ``generator.0.weight``), so the file is the one MindSpore's network writes; or None.

    Raises:
        TypeError: model is not an ``nnx.Module``, or append_dict or renamed not a mapping.
        ValueError: an ``append_dict`` name is a parameter's name, or renamed names a tensor the
            model does not have.
    """
    from . import _porting

    slots, _ = _flax_slots(model)
    _porting.save(slots, path, append_dict, renamed, module_name=type(model).__name__)
