"""What every layer of every front end shares, written once.

A front end (NumPy, PyTorch, Flax) holds a spec and two parameters, and makes one engine call.
Everything else a layer does is the same in all of them and lives here:

- MindSpore's parameter construction (:func:`build_parameters`): the argument checks of the
  layer's spec class, with the initializers drawn between them where MindSpore draws them, the
  default initializers and the dtype rules;
- the attribute convention (:class:`LayerCore`): MindSpore's arguments read back in canonical
  form from the spec (``padding`` is always ``(top, bottom, left, right)``) and are fixed at
  construction, since the layer computes with its spec;
- MindSpore's parameter names (``weight``, ``bias``), copies of the parameters by name, and
  all-or-nothing loading from a name -> array mapping (what a checkpoint holds);
- how an initializer is described in a repr.

Each framework subclasses :class:`LayerCore` and implements three small hooks: what a
parameter's shape and dtype are, its values as a NumPy array, and how to set them (the way
einops' layers share ``_EinmixMixin`` and implement ``_create_parameters``).
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any, ClassVar, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from .dtypes import bfloat16, check_float_array, is_bfloat16, native, resolve_dtype
from .initializer import HeUniform, Initializer, Uniform, _from_name, fan_in_and_fan_out, initializer
from .spec import check_has_bias


class BuiltParameters(NamedTuple):
    """What :func:`build_parameters` returns.

    Attributes:
        spec: the validated arguments (the spec class's instance).
        weight: the weight array, in the layer's MindSpore layout, native byte order.
        bias: ``(C_out,)`` array, or None without a bias.
        weight_init: the initializer used (MindSpore's default filled in).
        bias_init: the bias initializer used, or the argument as given without a bias (MindSpore
            ignores it then, unchecked).
        dtype: the resolved parameter dtype (an array initializer may keep its own).
    """

    spec: Any
    weight: np.ndarray
    bias: Optional[np.ndarray]
    weight_init: Any
    bias_init: Any
    dtype: np.dtype


def default_weight_init() -> HeUniform:
    """MindSpore's default weight initializer: ``HeUniform(negative_slope=sqrt(5))``, U(±1/sqrt(fan_in))."""
    return HeUniform(negative_slope=math.sqrt(5))


def default_bias_init(weight_shape: Tuple[int, ...]) -> Uniform:
    """MindSpore's default bias initializer: ``Uniform(1/sqrt(fan_in))``, fan_in from the weight shape.

    ``fan_in = shape[1] * kH * kW``: ``(C_out / group) kH kW`` for Conv2dTranspose's weight
    ``(C_in, C_out / group, kH, kW)``, ``(C_in / group) kH kW`` for Conv2d's ``(C_out, C_in / group, kH, kW)``.
    """
    fan_in, _ = fan_in_and_fan_out(weight_shape)
    return Uniform(1 / math.sqrt(fan_in))


def build_parameters(
    spec_class: Any,
    geometry: Mapping[str, Any],
    weight_init: Any = None,
    bias_init: Any = None,
    dtype: Any = np.float32,
    *,
    rng: Optional[np.random.Generator] = None,
    with_bfloat16: bool = False,
    draw: bool = True,
) -> BuiltParameters:
    """Validate a layer's arguments and draw its parameters, in MindSpore's order.

    MindSpore builds the weight initializer after the checks of ``spec_class.weight_shape_of``,
    checks has_bias, builds the bias initializer, and checks the rest; an argument list with two
    faults therefore raises what the first check in that order finds, here as there.

    Args:
        spec_class: :class:`~convtranspose.spec.Conv2dTransposeSpec` or
            :class:`~convtranspose.spec.Conv2dSpec`.
        geometry: the spec's arguments by name, as the user gave them (has_bias included).
        weight_init: Initializer, name, number or array; None for MindSpore's default.
        bias_init: the same forms for the bias; ignored (not even checked) without a bias.
        dtype: float16, float32 or float64 as a NumPy dtype or a name ('float16', 'Float16',
            'mindspore.float16'). An array initializer keeps its own dtype.
        rng: the NumPy Generator to draw from; None uses the module generator of
            :mod:`convtranspose.initializer` (seeded by :func:`convtranspose.set_seed`).
        with_bfloat16: the caller computes bfloat16 (the torch and Flax layers): bfloat16 names
            and dtypes are accepted (the arrays are then ml_dtypes' bfloat16), drawn values are
            drawn in float32 and rounded once, and a bfloat16 array initializer is kept.
        draw: False for parameters that hold no values yet (PyTorch's meta device, a Flax
            initializer drawn by the caller): nothing is drawn or allocated and the weight-memory
            limit does not apply; the initializers' forms are checked (a known name, an array of
            the right shape and a float dtype), their arguments when they are drawn.

    Returns:
        :class:`BuiltParameters`: the spec and the arrays (fresh, owned by the caller); with
        ``draw=False`` read-only placeholders of the parameters' shapes and dtypes that use one
        element of memory each (:func:`placeholder`).

    Raises:
        TypeError, ValueError: naming the argument, as the real MindSpore 2.10 raises them.

    Example:
        >>> from convtranspose.spec import Conv2dTransposeSpec
        >>> built = build_parameters(Conv2dTransposeSpec, dict(in_channels=4, out_channels=8, kernel_size=3,
        ...                                                    has_bias=True))
        >>> built.weight.shape, built.bias.shape, built.weight.dtype.name
        ((4, 8, 3, 3), (8,), 'float32')
    """
    weight_shape = spec_class.weight_shape_of(**geometry, allocate=draw)
    param_dtype = resolve_dtype(dtype, with_bfloat16=with_bfloat16)
    make = _draw if draw else _placeholder_for
    weight_init = default_weight_init() if weight_init is None else _framework_init(weight_init, "weight_init")
    weight = make(weight_init, weight_shape, param_dtype, rng, "weight_init", with_bfloat16)
    has_bias = geometry.get("has_bias", False)
    check_has_bias(has_bias)
    bias = None
    if has_bias:
        bias_init = default_bias_init(weight_shape) if bias_init is None else _framework_init(bias_init, "bias_init")
        bias = make(bias_init, (geometry["out_channels"],), param_dtype, rng, "bias_init", with_bfloat16)
    spec = spec_class.from_args(**geometry, allocate=draw)
    return BuiltParameters(spec, weight, bias, weight_init, bias_init, param_dtype)


def placeholder(shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` that holds one zero (every stride is 0)."""
    return np.broadcast_to(np.zeros((), dtype), shape)


def _placeholder_for(
    init: Any,
    shape: Tuple[int, ...],
    dtype: np.dtype,
    rng: Optional[np.random.Generator],
    name: str,
    with_bfloat16: bool,
) -> np.ndarray:
    """The parameter's shape and dtype without its values: the initializer's form checked, nothing drawn.

    A name must be known and an array must have ``shape`` and a float dtype (which it keeps);
    an initializer's arguments are checked when it draws.
    """
    del rng  # nothing is drawn
    if isinstance(init, np.ndarray):
        if init.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got an array of shape {init.shape}")
        check_float_array(init, name, with_bfloat16)
        return placeholder(shape, native(init.dtype))
    if isinstance(init, str):
        _from_name(init, name)
    elif not isinstance(init, (Initializer, numbers.Number)):
        raise TypeError(
            f"{name} must be an Initializer, a name, a number or a NumPy array, got "
            f"{name}={init!r} (type {type(init).__name__})"
        )
    return placeholder(shape, dtype)


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


class _InitSummary:
    """An array initializer as a repr shows it: its shape and dtype, not its values."""

    def __init__(self, array: np.ndarray) -> None:
        self.text = f"array(shape={array.shape}, dtype={array.dtype.name})"

    def __repr__(self) -> str:
        return self.text


def describe_init(init: Any) -> Any:
    """What a repr shows of an initializer: the initializer itself, or a summary of an array.

    Format the result with ``str`` for MindSpore's style (``weight_init=normal``) or ``repr``
    for PyTorch's (``weight_init='normal'``); an array reads ``array(shape=(4,), dtype=float32)``
    in both.
    """
    return _InitSummary(init) if isinstance(init, np.ndarray) else init


def to_numpy(value: Any, name: str) -> np.ndarray:
    """An array-like (NumPy, PyTorch, JAX) as a NumPy array, without importing a framework.

    A torch tensor is detached and moved to the CPU; bfloat16 becomes ml_dtypes' bfloat16
    (exactly, through float32).

    Raises:
        TypeError: ``value`` is not numbers (``name`` says which entry).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _tensor_to_numpy(torch, value, name)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} is a traced JAX array (under jax.jit or a Flax transform); its values are needed here: "
            f"pass a concrete array"
        )
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__} ({exc})") from None
    if array.dtype.kind not in "fiub" and not is_bfloat16(array.dtype):
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__} of dtype {array.dtype}")
    return array


def _tensor_to_numpy(torch: Any, tensor: Any, name: str) -> np.ndarray:
    """A torch tensor's values (detached, on the CPU); a clear error for layouts without values here."""
    if tensor.is_meta:
        raise TypeError(f"{name} is a tensor on the meta device, which has no values: pass a tensor with data")
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} is a {tensor.layout} tensor: pass {name}.to_dense()")
    if tensor.is_quantized:
        raise TypeError(f"{name} is a quantized tensor ({tensor.dtype}): pass {name}.dequantize()")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # torch's .numpy() has no bfloat16: exactly through float32
        return tensor.float().numpy().astype(bfloat16())
    try:
        return tensor.numpy()
    except TypeError as exc:
        raise TypeError(f"{name} must be a tensor of numbers, got dtype {tensor.dtype} ({exc})") from None


def _framework_init(init: Any, name: str) -> Any:
    """A PyTorch or JAX array initializer as a NumPy array (its dtype kept); anything else as it is."""
    if isinstance(init, (np.ndarray, str, int, float)) or init is None:
        return init
    torch, jax = sys.modules.get("torch"), sys.modules.get("jax")
    if (torch is not None and isinstance(init, torch.Tensor)) or (jax is not None and isinstance(init, jax.Array)):
        return to_numpy(init, name)
    return init


class _Fixed:
    """A MindSpore argument of a layer, read in canonical form from its spec and fixed at construction."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, layer: Any, owner: Optional[type] = None) -> Any:
        if layer is None:
            return self
        spec = layer.__dict__.get("spec")
        if spec is None or self.name not in type(spec).ARGUMENTS:
            raise AttributeError(f"{type(layer).__name__} has no attribute {self.name!r}")
        return getattr(spec, self.name)

    def __set__(self, layer: Any, value: Any) -> None:
        raise AttributeError(
            f"{self.name} is fixed at construction: the layer computes with {self.name}="
            f"{getattr(layer.spec, self.name)!r}; build a new {type(layer).__name__} to change it (got {value!r})"
        )


class LayerCore:
    """What every layer shares: canonical read-only arguments, MindSpore's parameter names, loading.

    A framework's layer subclasses this with its own base class (``nn.Module``, ``nnx.Module``),
    calls :meth:`_build` from its ``__init__`` and implements the three hooks below.

    Attributes:
        spec: the validated spec; MindSpore's arguments (``in_channels``, ``kernel_size``,
            ``stride``, ``pad_mode``, ``padding`` (top, bottom, left, right), ``dilation``,
            ``group``, ``has_bias``, ``output_padding`` or ``data_format``) read from it and
            cannot be assigned.
        weight_init, bias_init: the initializers the parameters were drawn from.
    """

    _spec_class: ClassVar[Any]

    in_channels = _Fixed()
    out_channels = _Fixed()
    kernel_size = _Fixed()
    stride = _Fixed()
    pad_mode = _Fixed()
    padding = _Fixed()
    output_padding = _Fixed()
    dilation = _Fixed()
    group = _Fixed()
    has_bias = _Fixed()
    data_format = _Fixed()

    def _build(
        self,
        geometry: Mapping[str, Any],
        weight_init: Any,
        bias_init: Any,
        dtype: Any,
        *,
        rng: Optional[np.random.Generator] = None,
        with_bfloat16: bool = False,
        draw: bool = True,
    ) -> BuiltParameters:
        """Validate, draw (unless ``draw`` is False), and keep the spec and the initializers; returns the arrays."""
        built = build_parameters(
            self._spec_class, geometry, weight_init, bias_init, dtype, rng=rng, with_bfloat16=with_bfloat16, draw=draw
        )
        self.spec = built.spec
        self.weight_init, self.bias_init = built.weight_init, built.bias_init
        return built

    @classmethod
    def from_flax(cls, module: Any, **options: Any) -> Any:
        """The layer that computes what a Flax ``nnx.ConvTranspose`` (``nnx.Conv`` for Conv2d) computes.

        The kernel is moved into MindSpore's layout (a spatial flip and a transpose for
        ``nnx.ConvTranspose``, a transpose for ``nnx.Conv``) and 'SAME'/'VALID'/explicit padding
        becomes 'same'/'valid'/'pad'. The parameters become the layer's array initializers
        (their dtype kept), so :meth:`reset_parameters`, where a layer has it, restores them.

        Args:
            module: the Flax module (2-D kernels).
            **options: more constructor arguments of this front end (``device`` for PyTorch,
                ``rngs`` or ``compute_dtype`` for Flax).

        Raises:
            TypeError: ``module`` is not an ``nnx.ConvTranspose`` (``nnx.Conv``).
            ValueError: what MindSpore's arguments cannot express, naming the module's
                attribute (circular, reflect or causal padding, input dilation, a padding that
                adds rows before the full transposed convolution or rows after it with a bias).
        """
        from ._from_flax import flax_arguments

        arguments, weight, bias = flax_arguments(cls._spec_class, module)
        return cls(**arguments, weight_init=weight, bias_init=bias, **options)  # type: ignore[call-arg]

    # ------------------------------------------------------------------ hooks (per framework)

    def _parameter_info(self, param: Any) -> Tuple[Tuple[int, ...], np.dtype]:
        """Shape and NumPy dtype of a parameter."""
        raise NotImplementedError

    def _parameter_values(self, param: Any) -> np.ndarray:
        """A NumPy copy of a parameter's values."""
        raise NotImplementedError

    def _assign(self, param: Any, values: np.ndarray) -> None:
        """Set a parameter's values from a checked array of its shape and dtype."""
        raise NotImplementedError

    # ------------------------------------------------------------------ MindSpore names

    def parameters_and_names(self, prefix: str = "") -> Iterator[Tuple[str, Any]]:
        """``(prefix + 'weight', weight)`` and, with a bias, ``(prefix + 'bias', bias)``."""
        yield prefix + "weight", self.weight  # type: ignore[attr-defined]
        if self.bias is not None:  # type: ignore[attr-defined]
            yield prefix + "bias", self.bias  # type: ignore[attr-defined]

    def parameters_dict(self, prefix: str = "") -> Dict[str, np.ndarray]:
        """NumPy copies of the parameters by MindSpore name, e.g. ``{'up1.weight': ..., 'up1.bias': ...}``.

        What :func:`convtranspose.ckpt.save` writes.
        """
        return {name: self._parameter_values(param) for name, param in self.parameters_and_names(prefix)}

    def load_parameters(self, arrays: Mapping[str, Any], prefix: str = "", strict: bool = True) -> None:
        """Set the parameters from ``arrays[prefix + 'weight']`` (and ``'bias'``), all or nothing.

        Args:
            arrays: name -> array (NumPy, PyTorch or JAX), e.g. what :func:`convtranspose.ckpt.load`
                returns.
            prefix: the layer's path in its network, with the trailing dot ('blocks.0.').
            strict: also refuse a ``prefix + 'bias'`` entry when the layer has no bias.

        Raises:
            TypeError: ``arrays`` is not a mapping, an entry is not numbers, or an array's dtype
                differs from the parameter's (byte order aside).
            KeyError: a parameter is missing from ``arrays`` (with a hint when the prefix lacks
                its trailing dot).
            ValueError: an array of the wrong shape, or (strict) an unexpected bias.
        """
        if not isinstance(arrays, Mapping):
            raise TypeError(f"arrays must be a mapping of names to arrays (e.g. a dict), got {type(arrays).__name__}")
        staged = []
        for name, param in self.parameters_and_names(prefix):
            shape, dtype = self._parameter_info(param)
            if name not in arrays:
                raise KeyError(_missing(name, shape, prefix, arrays))
            value = to_numpy(arrays[name], name)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got shape {value.shape}")
            if native(value.dtype) != dtype:
                raise TypeError(
                    f"{name} must have dtype {dtype.name}, got {native(value.dtype).name}; convert it first "
                    f"(e.g. arrays[{name!r}].astype({dtype.name!r}))"
                )
            staged.append((param, np.array(value, dtype=dtype, copy=True)))  # native byte order, owned
        if strict and self.bias is None and prefix + "bias" in arrays:  # type: ignore[attr-defined]
            raise ValueError(f"{prefix}bias is given but the layer has has_bias=False")
        for param, value in staged:  # all checked first: a failed load changes nothing
            self._assign(param, value)


def _missing(name: str, shape: Tuple[int, ...], prefix: str, arrays: Mapping[str, Any]) -> str:
    message = f"{name!r} is missing: the layer needs {name} of shape {shape}"
    if prefix and not prefix.endswith("."):
        dotted = f"{prefix}.{name[len(prefix) :]}"
        if dotted in arrays:
            message += f"; {dotted!r} is there: the prefix needs its trailing dot (prefix={prefix + '.'!r})"
    return message
