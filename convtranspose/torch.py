"""MindSpore's ``nn.Conv2dTranspose`` as a PyTorch module and function.

Same arguments, initializers, errors, outputs and gradients as MindSpore 2.10 (and as the NumPy
:class:`convtranspose.Conv2dTranspose`): 'same'/'valid'/'pad' modes, 4-tuple asymmetric padding,
and ``output_padding`` as appended exact zeros. The module is made of PyTorch ops only
(``convtranspose/_engines/torch.py``): autograd (double backward included),
``torch.compile(fullgraph=True)``, ``torch.export``, the ONNX exporter and
``DistributedDataParallel`` are tested, and it runs wherever those ops run (CUDA with cuDNN: the
GPU tests are marked ``gpu``). Importing this module imports torch; ``import convtranspose``
alone does not.

Example:
    >>> import torch
    >>> from convtranspose.torch import Conv2dTranspose, conv2d_transpose
    >>> net = Conv2dTranspose(3, 64, 4, stride=2, pad_mode='pad', padding=(1, 2, 0, 1), has_bias=True)
    >>> net
    Conv2dTranspose(3, 64, kernel_size=(4, 4), stride=(2, 2), pad_mode='pad', padding=(1, 2, 0, 1), has_bias=True)
    >>> net(torch.ones(1, 3, 16, 50)).shape
    torch.Size([1, 64, 31, 101])
    >>> conv2d_transpose(torch.ones(1, 3, 16, 50), net.weight, stride=2, pad_mode='same').shape
    torch.Size([1, 64, 32, 100])
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("convtranspose.torch needs PyTorch: pip install 'convtranspose[torch]' (torch==2.13.0)") from exc

from ._engines import torch as engine
from ._layers import LayerCore, build_parameters, describe_init, to_numpy
from .dtypes import bfloat16, is_bfloat16
from .spec import Conv2dSpec, Conv2dTransposeSpec, conv2d_spec_from_weight, spec_from_weight

__all__ = ["Conv2dTranspose", "conv2d_transpose", "Conv2d", "conv2d", "load_mindspore", "save_mindspore"]

_NUMPY_OF = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
_COMPUTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _resolve(dtype: Any) -> Any:
    """The dtype for the shared builder: torch float dtypes by their NumPy (or bfloat16) name.

    Anything that is not a torch dtype goes to the builder as it is, which accepts what the
    NumPy layer accepts, bfloat16 names too, and raises what it raises.
    """
    if not isinstance(dtype, torch.dtype):
        return dtype
    if dtype == torch.bfloat16:
        return "bfloat16"
    if dtype not in _NUMPY_OF:
        raise TypeError(
            f"dtype must be float16, bfloat16, float32 or float64, got dtype={dtype} "
            f"({dtype} cannot be computed by a convolution layer)"
        )
    return _NUMPY_OF[dtype]


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of a torch float dtype (bfloat16: ml_dtypes')."""
    return bfloat16() if dtype == torch.bfloat16 else np.dtype(_NUMPY_OF[dtype])


def _to_tensor(array: np.ndarray, device: Any) -> torch.Tensor:
    if is_bfloat16(array.dtype):  # exact through float32
        return torch.from_numpy(array.astype(np.float32)).to(device=device, dtype=torch.bfloat16)
    return torch.from_numpy(array).to(device=device)


def _empty_like(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of the array's shape and dtype on ``device`` (the meta device: no memory)."""
    dtype = torch.bfloat16 if is_bfloat16(array.dtype) else torch.from_numpy(np.zeros(0, array.dtype)).dtype
    return torch.empty(array.shape, dtype=dtype, device=device)


def _autocast_dtype(tensor: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype ``torch.autocast`` computes in for the tensor's device type, or None outside autocast.

    A device type that autocast does not know (meta) is never autocast.
    """
    device_type = tensor.device.type
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return None
    return torch.get_autocast_dtype(device_type) if enabled else None


def _autocast(tensor: Any, dtype: torch.dtype) -> Any:
    """A float tensor in ``dtype`` as autocast casts it (float64 left as it is, as autocast leaves it)."""
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.dtype == torch.float64:
        return tensor
    return tensor.to(dtype)


def _check_call(
    spec: Union[Conv2dTransposeSpec, Conv2dSpec], x: Any, weight: torch.Tensor, bias: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Check a call's tensors against ``spec``; returns them contiguous (NCHW order).

    A strided or channels-last view is copied here (``Tensor.contiguous``, differentiable and a
    no-op for a contiguous tensor): PyTorch's kernels sum such layouts in another order, and
    every view of the same values must give bitwise the same result.

    Raises:
        TypeError: x (or the weight or bias) is not a tensor, is sparse (any layout but
            strided) or quantized, the weight's dtype cannot be computed, or x's or the bias's
            dtype differs from the weight's.
        ValueError: shapes that do not fit the spec (see
            :meth:`~convtranspose.spec.Conv2dTransposeSpec.check_shapes`: rank, channels,
            parameter shapes, output_padding range, a crop that leaves no rows), or x or the
            bias on another device than the weight.
    """
    for name, value in (("x", x), ("weight", weight), ("bias", bias)):
        if not isinstance(value, torch.Tensor) and (value is not None or name != "bias"):
            hint = f"; convert it with torch.from_numpy({name})" if isinstance(value, np.ndarray) else ""
            raise TypeError(f"{name} must be a torch.Tensor, got {name} of type {type(value).__name__}{hint}")
        # PyTorch's kernels read dense values: a sparse (or MKL-DNN) layout fails deep inside
        # Tensor.contiguous, and a quantized tensor holds integers that .to(dtype) cannot convert.
        if value is not None and value.layout != torch.strided:
            raise TypeError(
                f"{name} must be a dense (strided) tensor, got {name} with layout {value.layout}; "
                f"convert it with {name}.to_dense()"
            )
        if value is not None and value.is_quantized:
            raise TypeError(
                f"{name} must be a float tensor, got a quantized {name} of dtype {value.dtype}; "
                f"convert it with {name}.dequantize()"
            )
    if isinstance(spec, Conv2dSpec) and torch.compiler.is_dynamo_compiling():
        # Conv2d's padding and windows depend on H and W through max, min and floor division
        # ('same' pads max((ceil(H/s) - 1)*s + k_eff - H, 0)): traced as symbols (dynamo's
        # automatic dynamic shapes, from the second input size on) they made expressions whose
        # simplification ran for minutes. H and W are kept static, so a new size compiles a
        # new graph; the batch stays dynamic.
        torch._dynamo.mark_static(x, 2)
        torch._dynamo.mark_static(x, 3)
    x_shape = tuple(x.shape)
    # A traced call (torch.export, a dynamic torch.compile) has symbolic sizes and builds a graph
    # for every size: the memory checks, which an eager call makes on its own sizes, would only
    # add a bound on the batch size to the graph. itemsize 0 leaves them out.
    symbolic = any(isinstance(size, torch.SymInt) for size in x_shape)
    itemsize = 0 if symbolic else max(x.element_size(), 4)
    spec.check_shapes(x_shape, tuple(weight.shape), None if bias is None else tuple(bias.shape), itemsize=itemsize)
    if not symbolic and isinstance(spec, Conv2dTransposeSpec):  # Conv2d's engine reads only its kernel window
        _check_kernel_limits(spec, x_shape, itemsize)
    if weight.dtype not in _COMPUTED:
        raise TypeError(
            f"weight must have dtype float16, bfloat16, float32 or float64, got weight of dtype {weight.dtype}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(
            f"x must have the parameters' dtype {weight.dtype}, got x of dtype {x.dtype}; "
            f"convert it with x.to({weight.dtype})"
        )
    if bias is not None and bias.dtype != weight.dtype:
        raise TypeError(f"bias must have the weight's dtype {weight.dtype}, got bias of dtype {bias.dtype}")
    if x.device != weight.device:
        raise ValueError(
            f"x must be on the parameters' device {weight.device}, got x on {x.device}; "
            f"move it with x.to('{weight.device}')"
        )
    if bias is not None and bias.device != weight.device:
        raise ValueError(f"bias must be on the weight's device {weight.device}, got bias on {bias.device}")
    return x.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous()


def _check_kernel_limits(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> None:
    """What PyTorch's kernel writes: its uncropped result, when the kernel computes the request.

    A huge stride or dilation that a huge padding crops back to a small output is valid for
    MindSpore's semantics: the engine computes it tap by tap (:func:`engine.uses_kernel`),
    never with PyTorch's kernel, whose 32-bit shape check and stride-bound cost cannot take it.
    When the kernel computes it, an asymmetric crop makes it write more than the output: that
    is checked against the memory limit here, naming the arguments.
    """
    if engine.uses_kernel(spec, x_shape):
        spec.check_memory(
            x_shape, engine.kernel_output_shape(spec, x_shape), itemsize, "the torch engine's uncropped kernel output"
        )


def conv2d_transpose(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> torch.Tensor:
    """MindSpore's 2-D transposed convolution on tensors, differentiable by autograd.

    Args:
        x: input ``(N, C_in, H, W)``, float16, bfloat16, float32 or float64.
        weight: ``(C_in, C_out // group, kH, kW)`` (PyTorch's ``conv_transpose2d`` layout), same
            dtype and device as x.
        bias: ``(C_out,)`` or None, same dtype and device as x.
        stride, pad_mode, padding, output_padding, dilation, group: as in :class:`Conv2dTranspose`
            (padding is top, bottom, left, right).

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype, where per axis ``H_out`` is ``H*stride``
        ('same'), ``H*stride + max(k_eff - stride, 0)`` ('valid') or
        ``(H-1)*stride + k_eff - pad_top - pad_bottom`` ('pad'), plus output_padding, with
        ``k_eff = dilation*(kernel-1) + 1``.

    Raises:
        TypeError, ValueError: naming the argument, as :class:`Conv2dTranspose` raises them; also
            ValueError for an uncropped kernel output past the memory limit. Strides, dilations
            and sizes past PyTorch's 32-bit kernel arguments are computed tap by tap instead.

    Example:
        >>> x, w = torch.ones(2, 4, 5, 5), torch.ones(4, 3, 3, 3)
        >>> conv2d_transpose(x, w, stride=2, pad_mode='valid').shape
        torch.Size([2, 3, 11, 11])
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got weight of type {type(weight).__name__}")
    spec = spec_from_weight(
        tuple(weight.shape), stride, pad_mode, padding, output_padding, dilation, group, bias is not None
    )
    return engine.forward(*_check_call(spec, x, weight, bias), spec)


class _TorchLayer(LayerCore, nn.Module):
    """The PyTorch front end's share of a layer: ``nn.Parameter`` objects, devices, the engine call."""

    _engine_forward: Callable[..., torch.Tensor]

    def __init__(self, geometry: Dict[str, Any], weight_init: Any, bias_init: Any, dtype: Any, device: Any) -> None:
        nn.Module.__init__(self)
        # None means what it means for PyTorch's layers: the default dtype and device, the
        # latter set by torch.set_default_device or a `with torch.device(...)` block.
        device = torch.get_default_device() if device is None else torch.device(device)
        self._geometry = geometry
        self._dtype = _resolve(torch.get_default_dtype() if dtype is None else dtype)
        # On the meta device nothing is drawn: to_empty() then reset_parameters() draws.
        drawn = device.type != "meta"
        built = self._build(geometry, weight_init, bias_init, self._dtype, with_bfloat16=True, draw=drawn)
        # extra_repr shows only the initializers the caller chose
        self._chosen_inits = (weight_init is not None, built.bias is not None and bias_init is not None)
        make = _to_tensor if drawn else _empty_like
        self.weight = nn.Parameter(make(built.weight, device))
        if built.bias is not None:
            self.bias = nn.Parameter(make(built.bias, device))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """Draw the parameters again from :attr:`weight_init` and :attr:`bias_init`.

        Random initializers draw from the generator that :func:`convtranspose.set_seed` seeds,
        so ``set_seed(s)`` before construction and before ``reset_parameters`` gives the same
        values; an array initializer restores that array. The parameters keep their current
        dtype and device (after a ``.to()``). On the meta device it does nothing (there are no
        values); after ``to_empty(device=...)`` it draws what construction on that device draws.
        """
        if self.weight.is_meta:
            return
        built = build_parameters(
            self._spec_class, self._geometry, self.weight_init, self.bias_init, self._dtype, with_bfloat16=True
        )
        with torch.no_grad():
            self.weight.copy_(_to_tensor(built.weight, "cpu"))
            if self.bias is not None and built.bias is not None:
                self.bias.copy_(_to_tensor(built.bias, "cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``, in the parameters' dtype.

        Under ``torch.autocast`` the layer computes what it computes for x and the parameters
        cast to the autocast dtype (float16 or bfloat16: MindSpore's ``fp16(fp16(conv in
        float32) + bias)``) and returns that dtype; gradients reach the parameters in their
        own dtype through the casts. float64 tensors are not cast, as autocast leaves them.

        Raises:
            TypeError: x is not a tensor, or its dtype is not the parameters' dtype.
            ValueError: wrong rank or channels, a crop that leaves no rows (Conv2dTranspose), a
                kernel larger than the padded input (Conv2d), or x on another device than the
                parameters.
        """
        weight, bias = self.weight, self.bias
        autocast_dtype = _autocast_dtype(x if isinstance(x, torch.Tensor) else weight)
        if autocast_dtype is None:
            return self._engine_forward(*_check_call(self.spec, x, weight, bias), self.spec)
        x, weight = _autocast(x, autocast_dtype), _autocast(weight, autocast_dtype)
        bias = None if bias is None else _autocast(bias, autocast_dtype)
        # The engine's own casts (float32 convolution, rounding, bias add) must not be recast.
        with torch.autocast(weight.device.type, enabled=False):
            return self._engine_forward(*_check_call(self.spec, x, weight, bias), self.spec)

    def extra_repr(self) -> str:
        """The MindSpore arguments that differ from their defaults (canonical forms)."""
        spec = self.spec
        defaults = self._spec_class.from_args(1, 1, 1)
        parts = [f"{spec.in_channels}, {spec.out_channels}, kernel_size={spec.kernel_size}"]
        for name in spec.ARGUMENTS[3:]:
            value = getattr(spec, name)
            if value != getattr(defaults, name):
                parts.append(f"{name}={value!r}")
        for name, chosen in zip(("weight_init", "bias_init"), self._chosen_inits):
            if chosen:
                parts.append(f"{name}={describe_init(getattr(self, name))!r}")
        return ", ".join(parts)

    def _parameter_info(self, param: torch.Tensor) -> Tuple[Tuple[int, ...], np.dtype]:
        return tuple(param.shape), _numpy_dtype(param.dtype)

    def _parameter_values(self, param: torch.Tensor) -> np.ndarray:
        return to_numpy(param, "parameter").copy()

    def _assign(self, param: torch.Tensor, values: np.ndarray) -> None:
        with torch.no_grad():
            param.copy_(_to_tensor(values, param.device))


class Conv2dTranspose(_TorchLayer):
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
        weight_init: Initializer, name, number, NumPy array or tensor of shape
            ``(C_in, C_out//group, kH, kW)``. Default ``HeUniform(negative_slope=sqrt(5))``, i.e.
            ``U(±1/sqrt(fan_in))`` with ``fan_in = (C_out//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        dtype: None (default) for ``torch.get_default_dtype()`` (float32 unless changed),
            ``torch.float16``, ``torch.float32``, ``torch.float64``, ``torch.bfloat16``, anything
            the NumPy layer takes (``np.float16``, 'float16', 'mindspore.float16'), or a bfloat16
            name ('bfloat16', 'mindspore.bfloat16'). An array or tensor initializer keeps its own
            dtype, as a MindSpore Tensor does. Drawn bfloat16 parameters are drawn in float32 and
            rounded once. float16 (and bfloat16) computes as MindSpore computes float16: the
            convolution in float32, ``fp16(fp16(conv) + bias)``.
        device: where the parameters live (``'cpu'``, ``'cuda'``, a ``torch.device``); None is
            PyTorch's default device (``torch.set_default_device``, ``with torch.device(...)``).
            On ``'meta'`` nothing is drawn or allocated (and the weight-memory limit does not
            apply): ``to_empty(device=...)`` then :meth:`reset_parameters` draws MindSpore's
            initializers there, the values construction on that device draws with the same seed.

    Attributes:
        weight: ``nn.Parameter`` ``(C_in, C_out // group, kH, kW)``, MindSpore's (and
            PyTorch's ``ConvTranspose2d``) layout: a MindSpore checkpoint loads as it is.
        bias: ``nn.Parameter`` ``(C_out,)``, or None.
        spec: the validated :class:`~convtranspose.spec.Conv2dTransposeSpec`.
        weight_init, bias_init: the initializers :meth:`reset_parameters` draws from.

    Shape:
        - Input: ``(N, C_in, H, W)`` of the parameters' dtype and device (under
          ``torch.autocast``: any float dtype, computed in the autocast dtype).
        - Output: ``(N, C_out, H_out, W_out)``, per axis as for ``pad_mode`` above plus
          output_padding.

    Note:
        ``torch.nn.utils.spectral_norm`` (and ``parametrizations.spectral_norm``) normalises
        the weight around ``dim=1`` only for PyTorch's own ConvTranspose classes; on this layer,
        whose weight has the same ``(C_in, C_out // group, kH, kW)`` layout, pass ``dim=1``
        (``spectral_norm(layer, dim=1)``), or it silently normalises another matrix.

    Example:
        >>> import torch
        >>> import convtranspose as ct
        >>> ct.set_seed(0)
        >>> net = Conv2dTranspose(16, 8, 3, stride=2, pad_mode='pad', padding=1, output_padding=1)
        >>> y = net(torch.randn(4, 16, 10, 10))
        >>> y.shape
        torch.Size([4, 8, 20, 20])
        >>> bool((y[:, :, -1] == 0).all())   # output_padding rows: exact zeros
        True
    """

    _spec_class = Conv2dTransposeSpec
    _engine_forward = staticmethod(engine.forward)

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
        dtype: Any = None,
        device: Any = None,
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
        super().__init__(geometry, weight_init, bias_init, dtype, device)

    @classmethod
    def from_torch(cls, module: nn.ConvTranspose2d) -> "Conv2dTranspose":
        """The layer that computes what a ``torch.nn.ConvTranspose2d`` computes, with its weights.

        PyTorch crops ``p`` rows at both ends of the full transposed convolution and then adds
        ``output_padding`` (``op``) computed rows back at the end (kernel terms and the bias),
        which is MindSpore's 'pad' mode with padding ``(p, p - op)`` on that axis, as long as
        ``op <= p``. The parameters are copied (same layout, dtype and device); the training
        flag too. ``reset_parameters`` of the result draws MindSpore's default initializers.

        Args:
            module: an initialised ``nn.ConvTranspose2d`` (not a lazy one before its first call).

        Raises:
            TypeError: ``module`` is not an ``nn.ConvTranspose2d``, or one of its geometry
                attributes is not a tuple of 2 ints.
            ValueError: a string padding (``padding='same'``, which PyTorch stores as a tuple
                of characters and cannot compute), an output_padding larger than the padding on an axis (PyTorch then
                computes rows past the full result, which MindSpore's 'pad' mode, whose
                output_padding rows are zeros, cannot express), or a lazy module not yet
                initialised.

        Example:
            >>> conv = torch.nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
            >>> net = Conv2dTranspose.from_torch(conv)
            >>> net.padding, net.output_padding
            ((1, 0, 1, 0), (0, 0))
            >>> x = torch.randn(2, 8, 5, 5)
            >>> torch.allclose(net(x), conv(x), atol=1e-6)
            True
        """
        if not isinstance(module, nn.ConvTranspose2d):
            raise TypeError(f"module must be a torch.nn.ConvTranspose2d, got module of type {type(module).__name__}")
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise ValueError(
                "module is a lazy ConvTranspose2d whose weight is not initialised yet; call it once on an input first"
            )
        if module.padding_mode != "zeros":
            raise ValueError(
                f"module must use padding_mode='zeros' (the only mode of a transposed "
                f"convolution), got padding_mode={module.padding_mode!r}"
            )
        for name in ("kernel_size", "stride", "padding", "output_padding", "dilation"):
            value = getattr(module, name)
            if isinstance(value, tuple) and all(isinstance(item, str) for item in value) and value:
                # nn.ConvTranspose2d(padding='same') stores the string's characters, and its own
                # forward then fails: there is no string padding for a transposed convolution.
                raise ValueError(
                    f"module has {name}={''.join(value)!r} (stored by PyTorch as {value!r}), which "
                    f"nn.ConvTranspose2d cannot compute (its own forward fails); give the module a pair of ints"
                )
            if not (isinstance(value, tuple) and len(value) == 2 and all(type(item) is int for item in value)):
                raise TypeError(f"module must have {name} as a tuple of 2 ints, got {name}={value!r}")
        pads: List[int] = []
        paddings: Tuple[int, int] = module.padding  # type: ignore[assignment]  # ints: checked above
        for axis, pad, extra in zip(("height", "width"), paddings, module.output_padding):
            if extra > pad:
                raise ValueError(
                    f"module has output_padding={module.output_padding} and padding={module.padding}: "
                    f"on the {axis} axis PyTorch computes {extra - pad} row(s) past the end of the full "
                    f"transposed convolution (they receive the bias), which MindSpore's 'pad' mode cannot "
                    f"express (its crop cannot be negative and its output_padding rows are zeros without "
                    f"bias); this needs output_padding <= padding on each axis"
                )
            pads += [pad, pad - extra]
        weight = module.weight.detach()
        net = cls(
            module.in_channels,
            module.out_channels,
            tuple(module.kernel_size),
            stride=tuple(module.stride),
            pad_mode="pad",
            padding=tuple(pads),
            dilation=tuple(module.dilation),
            group=module.groups,
            has_bias=module.bias is not None,
            dtype=weight.dtype,
            device=weight.device,
        )
        with torch.no_grad():
            net.weight.copy_(weight)
            if module.bias is not None:
                net.bias.copy_(module.bias.detach())
        return net.train(module.training)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    stride: Any = 1,
    pad_mode: str = "same",
    padding: Any = 0,
    dilation: Any = 1,
    group: int = 1,
) -> torch.Tensor:
    """MindSpore's 2-D convolution (``nn.Conv2d``) on tensors, differentiable by autograd.

    What PyTorch's ``F.conv2d`` lacks: TensorFlow-style 'same' at any stride (``ceil(H/s)`` rows,
    the odd padding row at the bottom/right) and asymmetric ``(top, bottom, left, right)`` padding.

    Args:
        x: input ``(N, C_in, H, W)``, float16, bfloat16, float32 or float64.
        weight: ``(C_out, C_in // group, kH, kW)`` (PyTorch's ``conv2d`` layout), same dtype and device as x.
        bias: ``(C_out,)`` or None, same dtype and device as x.
        stride, pad_mode, padding, dilation, group: as in :class:`Conv2d`.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype.

    Raises:
        TypeError, ValueError: naming the argument, as :class:`Conv2d` raises them.

    Example:
        >>> x, w = torch.ones(2, 3, 7, 8), torch.ones(4, 3, 3, 3)
        >>> conv2d(x, w, stride=2, pad_mode='same').shape
        torch.Size([2, 4, 4, 4])
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got weight of type {type(weight).__name__}")
    spec = conv2d_spec_from_weight(tuple(weight.shape), stride, pad_mode, padding, dilation, group, bias is not None)
    return engine.conv2d_forward(*_check_call(spec, x, weight, bias), spec)


class Conv2d(_TorchLayer):
    """2-D convolution with MindSpore 2.10's arguments, outputs, gradients and errors (``nn.Conv2d``).

    A drop-in for the hand-written ``Conv2dSame`` of many ports: PyTorch's ``nn.Conv2d(padding='same')``
    refuses strides and cannot pad asymmetrically; this layer does both, as MindSpore (and TensorFlow) do.

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
        weight_init: Initializer, name, number, NumPy array or tensor of shape ``(C_out, C_in//group, kH, kW)``.
            Default ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_in//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        data_format: 'NCHW', the only layout MindSpore computes on CPU (and this library).
        dtype: as for :class:`Conv2dTranspose` (torch or NumPy float dtypes, names, bfloat16;
            None for ``torch.get_default_dtype()``).
        device: as for :class:`Conv2dTranspose` (None: PyTorch's default device; 'meta' draws nothing).

    Attributes:
        weight: ``nn.Parameter`` ``(C_out, C_in // group, kH, kW)``, MindSpore's (and PyTorch's
            ``Conv2d``) layout: a MindSpore checkpoint loads as it is.
        bias: ``nn.Parameter`` ``(C_out,)``, or None.
        spec: the validated :class:`~convtranspose.spec.Conv2dSpec`.
        weight_init, bias_init: the initializers :meth:`reset_parameters` draws from.

    Example:
        >>> net = Conv2d(3, 16, 3, stride=2, has_bias=True)     # 'same' at stride 2
        >>> net(torch.ones(1, 3, 7, 8)).shape
        torch.Size([1, 16, 4, 4])
    """

    _spec_class = Conv2dSpec
    _engine_forward = staticmethod(engine.conv2d_forward)

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
        dtype: Any = None,
        device: Any = None,
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
        super().__init__(geometry, weight_init, bias_init, dtype, device)

    @classmethod
    def from_torch(cls, module: nn.Conv2d) -> "Conv2d":
        """The layer that computes what a ``torch.nn.Conv2d`` computes, with its weights.

        PyTorch pads symmetrically (``padding=p``), or for ``padding='same'`` (stride 1) puts
        ``d*(k-1)//2`` rows before and the rest after; both are MindSpore's 'pad' mode with
        ``(top, bottom, left, right)``. The parameters are copied (same layout, dtype and device);
        the training flag too.

        Raises:
            TypeError: ``module`` is not an ``nn.Conv2d``.
            ValueError: a lazy module before its first call, or a padding_mode other than 'zeros'.

        Example:
            >>> conv = torch.nn.Conv2d(4, 6, 3, padding='same', dilation=2)
            >>> net = Conv2d.from_torch(conv)
            >>> net.pad_mode, net.padding
            ('pad', (2, 2, 2, 2))
            >>> x = torch.randn(1, 4, 9, 9)
            >>> torch.allclose(net(x), conv(x), atol=1e-6)
            True
        """
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"module must be a torch.nn.Conv2d, got module of type {type(module).__name__}")
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise ValueError(
                "module is a lazy Conv2d whose weight is not initialised yet; call it once on an input first"
            )
        if module.padding_mode != "zeros":
            raise ValueError(
                f"module must use padding_mode='zeros' (MindSpore pads with zeros), got "
                f"padding_mode={module.padding_mode!r}"
            )
        pads: Tuple[int, ...] = ()
        for index in range(2):
            if module.padding == "same":
                total = module.dilation[index] * (module.kernel_size[index] - 1)
                pads += (total // 2, total - total // 2)
            elif module.padding == "valid":
                pads += (0, 0)
            else:
                pads += (int(module.padding[index]),) * 2
        weight = module.weight.detach()
        net = cls(
            module.in_channels,
            module.out_channels,
            tuple(module.kernel_size),
            stride=tuple(module.stride),
            pad_mode="pad",
            padding=pads,
            dilation=tuple(module.dilation),
            group=module.groups,
            has_bias=module.bias is not None,
            dtype=weight.dtype,
            device=weight.device,
        )
        with torch.no_grad():
            net.weight.copy_(weight)
            if module.bias is not None:
                net.bias.copy_(module.bias.detach())
        return net.train(module.training)


# ----------------------------------------------------------------------------------------------
# Porting a whole MindSpore network: load_mindspore / save_mindspore
# ----------------------------------------------------------------------------------------------

# The framework-neutral part (names, training state, checks, the result) is convtranspose._porting.
_TORCH_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _torch_renames(module: nn.Module) -> Dict[str, str]:
    """PyTorch tensor name -> MindSpore's, for the layers whose names differ."""
    from . import _porting

    if isinstance(module, nn.modules.batchnorm._NormBase):  # BatchNorm*d, SyncBatchNorm, InstanceNorm*d
        return _porting.BATCHNORM_NAMES
    if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
        return _porting.NORM_NAMES
    if isinstance(module, nn.PReLU):
        return {"weight": "alpha"}
    if isinstance(module, nn.Embedding):
        return {"weight": "embedding_table"}
    return {}


def _torch_tensor_dtype(tensor: torch.Tensor) -> np.dtype:
    if tensor.dtype == torch.bfloat16:
        return bfloat16()
    return torch.empty((), dtype=tensor.dtype).numpy().dtype


def _torch_slot(parts: Tuple[str, ...], leaf: str, target: str, tensor: torch.Tensor) -> Any:
    from . import _porting

    def read() -> np.ndarray:
        return to_numpy(tensor, target).copy()

    def write(values: np.ndarray) -> None:
        with torch.no_grad():
            tensor.copy_(_to_tensor(values, tensor.device))

    return _porting.Slot(
        parts, leaf, target, tuple(tensor.shape), _torch_tensor_dtype(tensor), _porting.AS_IS, read, write
    )


def _torch_slots(module: nn.Module) -> Tuple[list, list]:
    """Every tensor ``module.state_dict()`` holds, as MindSpore names it; and the container paths."""
    from . import _porting

    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    slots: List[Any] = []
    containers: List[Tuple[str, ...]] = []
    for path, sub in module.named_modules():
        parts = tuple(path.split(".")) if path else ()
        if isinstance(sub, _TORCH_CONTAINERS):
            containers.append(parts)
        renames = _torch_renames(sub)
        tensors = list(sub.named_parameters(recurse=False)) + [
            (name, buffer)
            for name, buffer in sub.named_buffers(recurse=False)
            if name not in sub._non_persistent_buffers_set and name != "num_batches_tracked"  # not in MindSpore's
        ]
        layer = [
            _torch_slot(parts, renames.get(name, name), f"{path}.{name}" if path else name, tensor)
            for name, tensor in tensors
        ]
        slots += _porting.in_mindspore_order(layer) if renames else layer
    return slots, containers


def load_mindspore(module: nn.Module, checkpoint: Any, *, strict: bool = True) -> Any:
    """Load a MindSpore checkpoint into a PyTorch port of the network, in one call.

    MindSpore's names are mapped onto the module's parameters and persistent buffers:
    ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` onto ``BatchNorm*d``/``SyncBatchNorm``/
    ``InstanceNorm*d``'s ``weight``, ``bias``, ``running_mean``, ``running_var`` (``num_batches_tracked``,
    which MindSpore has not, is left as it is), ``gamma``/``beta`` onto ``GroupNorm``/``LayerNorm``,
    ``alpha`` onto ``PReLU.weight``, ``embedding_table`` onto ``Embedding.weight``; everything else by
    its own name, in MindSpore's layout (``nn.Conv2d``, ``nn.ConvTranspose2d``, ``nn.Linear`` and this
    library's :class:`Conv2d` and :class:`Conv2dTranspose` hold it as it is). Containers number their
    children as a ``SequentialCell`` does (``layers.0.weight``). The optimizer's state and the training
    scalars of a ``ModelCheckpoint`` file (``moment1.*``, ``moments.*``, ``accum.*``, ``global_step``,
    ``learning_rate``, ``epoch_num``, ...) are recognised and left out
    (:func:`convtranspose.ckpt.split_training_state`).

    Args:
        module: the PyTorch network, built with the MindSpore network's structure.
        checkpoint: a path to a ``.ckpt`` or ``.safetensors`` file, or a mapping of names to arrays
            (what :func:`convtranspose.ckpt.load` returns).
        strict: raise when a module tensor is missing from the checkpoint or a network entry of
            the checkpoint has no place in the module (as ``load_state_dict`` does); False loads
            what matches and returns the rest.

    Returns:
        A :class:`convtranspose._porting.LoadResult` (a NamedTuple): ``loaded``, ``training_state``,
        ``missing``, ``unexpected`` (the last two empty when strict) and ``renamed``.

    Raises:
        TypeError: module is not an ``nn.Module``, checkpoint neither a path nor a mapping, strict
            not a bool.
        ValueError: strict and names differ (all listed), or a tensor of the wrong shape or dtype
            (all listed); nothing is written then.
        convtranspose.ckpt.CheckpointError: the file is damaged.

    Example:
        >>> import numpy as np, torch
        >>> from convtranspose.torch import Conv2d, load_mindspore
        >>> net = torch.nn.Sequential(Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        >>> arrays = {"0.weight": np.zeros((4, 3, 3, 3), np.float32), "1.moving_mean": np.ones(4, np.float32),
        ...           "1.moving_variance": np.ones(4, np.float32), "1.gamma": np.ones(4, np.float32),
        ...           "1.beta": np.zeros(4, np.float32), "global_step": np.array([3], np.int32)}
        >>> result = load_mindspore(net, arrays)
        >>> net[1].running_mean.tolist(), result.training_state
        ([1.0, 1.0, 1.0, 1.0], ('global_step',))
    """
    from . import _porting

    slots, containers = _torch_slots(module)
    return _porting.load(slots, containers, checkpoint, strict=strict, module_name=type(module).__name__)


def save_mindspore(
    module: nn.Module,
    path: Any,
    *,
    append_dict: Optional[Dict[str, Any]] = None,
    renamed: Optional[Dict[str, str]] = None,
) -> None:
    """Write a PyTorch port's tensors as a MindSpore ``.ckpt``, under MindSpore's names and layouts.

    The reverse of :func:`load_mindspore`: BatchNorm's ``moving_mean``, ``moving_variance``,
    ``gamma``, ``beta`` in that order (MindSpore's), ``num_batches_tracked`` left out, the rest by
    its own name; then the ``append_dict`` entries (``{'epoch_num': 3}``), stored as
    ``save_checkpoint`` stores them. Written atomically by :func:`convtranspose.ckpt.save`.

    Args:
        module: the port whose parameters and buffers to write.
        path: the ``.ckpt`` file to write (``.safetensors`` also works); replaced.
        append_dict: ``{name: value}`` written after the parameters (``{'epoch_num': 3, 'step_num': 120}``),
            as ``save_checkpoint(append_dict=...)`` stores it; or None.
        renamed: ``load_mindspore(...).renamed``: writes the tensors of a container that MindSpore
            names without the path above it under MindSpore's names (``0.weight`` rather than
            ``generator.0.weight``), so the file is the one MindSpore's network writes; or None.

    Raises:
        TypeError: module is not an ``nn.Module``, or append_dict or renamed not a mapping.
        ValueError: an ``append_dict`` name is a parameter's name, or renamed names a tensor the
            module does not have.
    """
    from . import _porting

    slots, _ = _torch_slots(module)
    _porting.save(slots, path, append_dict, renamed, module_name=type(module).__name__)
