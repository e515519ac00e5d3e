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

__all__ = ["Conv2dTranspose", "Conv2d", "load_mindspore", "save_mindspore"]


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
