"""The NumPy layers: MindSpore's ``nn.Conv2dTranspose`` and ``nn.Conv2d`` without MindSpore."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import functional
from ._layers import LayerCore, describe_init
from .parameter import Parameter
from .spec import Conv2dSpec, Conv2dTransposeSpec


class _NumpyLayer(LayerCore):
    """The NumPy front end's share of a layer: :class:`Parameter` objects, forward and backward, pickling."""

    # The layer's functions of the NumPy front end: (spec, x, weight, bias) -> y and
    # (spec, x, weight, grad_output) -> (dx, dweight, dbias).
    _forward: Callable[..., np.ndarray]
    _backward: Callable[..., Tuple[np.ndarray, np.ndarray, np.ndarray]]

    def _setup(self, arguments: Dict[str, Any], weight_init: Any, bias_init: Any, dtype: Any) -> None:
        self._args = dict(arguments, weight_init=weight_init, bias_init=bias_init, dtype=dtype)
        built = self._build(arguments, weight_init, bias_init, dtype)
        self.weight = Parameter(built.weight, "weight")
        self.bias = Parameter(built.bias, "bias") if built.bias is not None else None
        self._last_x: Optional[np.ndarray] = None

    # ------------------------------------------------------------------ computation

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``, in the parameters' dtype.

        Raises:
            TypeError: x is not a NumPy array or its dtype is not the parameters' dtype.
            ValueError: wrong rank or channels, output_padding out of range, or a crop that
                leaves no rows.
        """
        y = self._forward(self.spec, x, self.weight.data, None if self.bias is None else self.bias.data)
        self._last_x = x
        return y

    __call__ = forward

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """Gradient of ``sum(y * grad_output)`` for the input of the last forward call.

        Sets ``weight.grad`` (and ``bias.grad``), replacing earlier values, and returns dx
        of the last input's shape. A parameter with ``requires_grad = False`` keeps its
        ``grad`` untouched. The layer keeps a reference to that input, not a copy:
        changing it in place before ``backward`` changes the weight gradient.

        Raises:
            RuntimeError: no forward call has been made yet.
        """
        if self._last_x is None:
            raise RuntimeError("backward() needs the input of a forward call: call the layer first")
        dx, dweight, dbias = self._backward(self.spec, self._last_x, self.weight.data, grad_output)
        if self.weight.requires_grad:
            self.weight.grad = dweight
        if self.bias is not None and self.bias.requires_grad:
            self.bias.grad = dbias
        return dx

    def extend_repr(self) -> str:
        """MindSpore's layer description (each layer writes its own)."""
        raise NotImplementedError

    def _parameter_info(self, param: Parameter) -> Tuple[Tuple[int, ...], np.dtype]:
        return param.shape, param.dtype

    def _parameter_values(self, param: Parameter) -> np.ndarray:
        return param.asnumpy()

    def _assign(self, param: Parameter, values: np.ndarray) -> None:
        param.data = values

    def trainable_params(self) -> List[Parameter]:
        """The parameters, weight first (MindSpore's ``Cell.trainable_params``)."""
        return [param for _, param in self.parameters_and_names()]

    def __getstate__(self) -> Dict[str, Any]:
        # The arguments and the values: everything derived is rebuilt on unpickling.
        return {
            "args": self._args,
            "weight": self.weight.data,
            "bias": None if self.bias is None else self.bias.data,
            "inits": (self.weight_init, self.bias_init),
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        args = dict(state["args"], weight_init=state["weight"])
        if state["bias"] is not None:
            args["bias_init"] = state["bias"]
        self.__init__(**args)  # type: ignore[misc]
        self._args = state["args"]
        self.weight_init, self.bias_init = state["inits"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extend_repr()})"


class Conv2dTranspose(_NumpyLayer):
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
        weight_init: Initializer, name, number or array of shape ``(C_in, C_out//group, kH, kW)``.
            Default ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_out//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        dtype: parameter dtype: float16, float32 (default) or float64, as a NumPy dtype or name.
            An array initializer keeps its own dtype, as a MindSpore Tensor does.

    Attributes:
        weight: :class:`Parameter` named 'weight', shape ``(C_in, C_out // group, kH, kW)``.
        bias: :class:`Parameter` named 'bias', shape ``(C_out,)``, or None.
        spec: the validated :class:`Conv2dTransposeSpec`.

    Example:
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> net = ct.Conv2dTranspose(3, 64, 4, has_bias=False, weight_init='normal', pad_mode='pad')
        >>> net(np.ones((1, 3, 16, 50), np.float32)).shape
        (1, 64, 19, 53)
    """

    _spec_class = Conv2dTransposeSpec
    _forward = staticmethod(functional.forward)
    _backward = staticmethod(functional.backward)

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
        dtype: Any = np.float32,
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
        self._setup(geometry, weight_init, bias_init, dtype)

    # ------------------------------------------------------------------ Python protocol

    def extend_repr(self) -> str:
        """MindSpore's layer description, with output_padding added."""
        return (
            f"input_channels={self.in_channels}, output_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, pad_mode={self.pad_mode}, "
            f"padding={self.padding}, output_padding={self.output_padding}, "
            f"dilation={self.dilation}, group={self.group}, has_bias={self.has_bias}, "
            f"weight_init={describe_init(self.weight_init)}, "
            f"bias_init={describe_init(self.bias_init)}, format={self.data_format}"
        )


class Conv2d(_NumpyLayer):
    """2-D convolution with MindSpore 2.10's arguments, outputs, gradients and errors (``nn.Conv2d``).

    Cross-correlation (no kernel flip), as MindSpore and PyTorch compute it, with MindSpore's
    (TensorFlow's) 'same' and 'valid' and asymmetric 'pad' padding, at any stride.

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
        weight_init: Initializer, name, number or array of shape ``(C_out, C_in//group, kH, kW)``.
            Default ``HeUniform(negative_slope=sqrt(5))``, i.e. ``U(±1/sqrt(fan_in))`` with
            ``fan_in = (C_in//group)*kH*kW``.
        bias_init: same forms, shape ``(C_out,)``; default ``Uniform(1/sqrt(fan_in))``; ignored
            (not even checked) when has_bias is False.
        data_format: 'NCHW', the only layout MindSpore computes on CPU (and this library).
        dtype: parameter dtype: float16, float32 (default) or float64, as a NumPy dtype or name.
            An array initializer keeps its own dtype, as a MindSpore Tensor does.

    Attributes:
        weight: :class:`Parameter` named 'weight', shape ``(C_out, C_in // group, kH, kW)``.
        bias: :class:`Parameter` named 'bias', shape ``(C_out,)``, or None.
        spec: the validated :class:`Conv2dSpec`.

    Example:
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> net = ct.Conv2d(3, 8, 3, stride=2, has_bias=True)      # 'same': ceil(H / 2) rows
        >>> net(np.ones((1, 3, 7, 8), np.float32)).shape
        (1, 8, 4, 4)
    """

    _spec_class = Conv2dSpec
    _forward = staticmethod(functional.forward)
    _backward = staticmethod(functional.backward)

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
        dtype: Any = np.float32,
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
        self._setup(geometry, weight_init, bias_init, dtype)

    def extend_repr(self) -> str:
        """MindSpore's layer description."""
        return (
            f"input_channels={self.in_channels}, output_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, pad_mode={self.pad_mode}, "
            f"padding={self.padding}, dilation={self.dilation}, group={self.group}, has_bias={self.has_bias}, "
            f"weight_init={describe_init(self.weight_init)}, "
            f"bias_init={describe_init(self.bias_init)}, format={self.data_format}"
        )
