"""Argument validation and all shape arithmetic for MindSpore's ``nn.Conv2dTranspose``.

This module is the only place that knows MindSpore's argument rules or computes a size.
Every engine and layer takes a :class:`Conv2dTransposeSpec` and asks it (or its two
:class:`AxisPlan` objects) for shapes, crops and extensions.

The semantics, per spatial axis (height uses index 0 and padding top/bottom, width index 1
and padding left/right)::

    k_eff = dilation * (kernel - 1) + 1        # extent of the dilated kernel
    full  = (n - 1) * stride + k_eff           # length of the uncropped transposed conv

    pad_mode   crop_before                    crop_after
    'pad'      pad_before                     pad_after
    'same'     max(k_eff - stride, 0) // 2    k_eff - stride - crop_before
    'valid'    0                              min(k_eff - stride, 0)

    window = full - crop_before - crop_after    # = n*stride for 'same'
    output = window + output_padding

A negative ``crop_after`` appends that many zero rows (they still receive the bias). The
bias is added to the window; ``output_padding`` then appends exact-zero rows at the
bottom/right, which receive neither kernel contributions nor the bias. This is what the
real MindSpore 2.10 does (its documented 'valid' formula is wrong).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from typing import Any, Callable, NamedTuple, Optional, Tuple

PAD_MODES = ("valid", "same", "pad")

Pair = Tuple[int, int]
Quad = Tuple[int, int, int, int]


def _is_int(value: Any) -> bool:
    """True for a Python int that is not a bool (MindSpore rejects bool and NumPy integers)."""
    return type(value) is int


# Arrays beyond this many elements cannot be allocated by NumPy on any machine: say so with
# the arguments that caused it instead of letting NumPy fail with "array is too big".
MAX_ELEMENTS = sys.maxsize // 16


def _describe(value: Any) -> str:
    """Repr of a value, plus its type where the repr alone could hide it."""
    if type(value) in (bool, int, float, str, tuple, list, type(None)):
        return repr(value)
    return f"{value!r} (type {type(value).__name__})"


def _int_or_tuple(name: str, value: Any, size: int, rule: str, length_error: type,
                  check_items: bool = True) -> Tuple[int, ...]:
    """An int (repeated ``size`` times) or a tuple of ``size`` ints; the values are not checked.

    MindSpore raises TypeError for a wrong type and ``length_error`` for a wrong length
    (TypeError for kernel_size/stride/dilation, ValueError for padding/output_padding).
    """
    if _is_int(value):
        return (value,) * size
    if not isinstance(value, tuple):
        raise TypeError(f"{rule}, got {name}={_describe(value)}")
    if len(value) != size:
        raise length_error(f"{rule}, got {name}={value!r} (length {len(value)})")
    for item in value if check_items else ():
        if not _is_int(item):
            raise TypeError(f"{rule}, got {name}={value!r} (item {_describe(item)} is not an int)")
    return value


def _pair(name: str, value: Any) -> Pair:
    """Normalise kernel_size/stride/dilation: an int or a tuple of 2 ints (types only)."""
    rule = f"{name} must be a positive int or a tuple of 2 positive ints"
    return _int_or_tuple(name, value, 2, rule, TypeError)  # type: ignore[return-value]


def _check_positive_items(name: str, given: Any, values: Pair) -> None:
    for item in values:
        if item < 1:
            raise ValueError(
                f"{name} must be a positive int or a tuple of 2 positive ints, got {name}={given!r}")


def _check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {name}={_describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")
    return value


def _padding_shape(value: Any) -> Any:
    """Type and length of padding (item types and values are checked later, as MindSpore does)."""
    rule = "padding must be an int or a tuple of 4 ints (top, bottom, left, right)"
    _int_or_tuple("padding", value, 4, rule, ValueError, check_items=False)
    return value


def _padding_values(value: Any) -> Quad:
    rule = "padding must be an int >= 0 or a tuple of 4 ints >= 0 (top, bottom, left, right)"
    if _is_int(value):
        if value < 0:
            raise ValueError(f"{rule}, got padding={value!r}")
        return (value, value, value, value)
    for item in value:
        if not _is_int(item):
            raise TypeError(f"{rule}, got padding={value!r} (item {_describe(item)} is not an int)")
        if item < 0:
            raise ValueError(f"{rule}, got padding={value!r}")
    return tuple(value)  # type: ignore[return-value]


def _output_padding(value: Any) -> Pair:
    """Type and length of output_padding; its range is a call-time check in MindSpore.

    MindSpore accepts a tuple item such as 1.0 here and then fails inside its Pad kernel;
    we refuse it now.
    """
    rule = "output_padding must be an int or a tuple of 2 ints"
    return _int_or_tuple("output_padding", value, 2, rule, ValueError)  # type: ignore[return-value]


class Phase(NamedTuple):
    """Window rows ``rows`` (a strided slice, ``count`` rows) and their ``(tap, shift)`` pairs."""

    rows: slice
    count: int
    taps: Tuple[Tuple[int, int], ...]

    def overlap(self, shift: int, n: int) -> Optional[Tuple[slice, slice]]:
        """``(input_rows, phase_rows)`` for a tap at ``shift``, or None when no row is left.

        Phase row ``m`` reads input row ``m + shift``; only rows inside both ``[0, n)`` and
        ``[0, count)`` are kept.
        """
        first, stop = max(0, shift), min(n, self.count + shift)
        if first >= stop:
            return None
        return slice(first, stop), slice(first - shift, stop - shift)


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """How one spatial axis of the full transposed convolution becomes the output axis.

    Attributes:
        kernel: kernel size along this axis (undilated).
        stride: stride along this axis.
        dilation: spacing factor of the kernel taps (1 means dense).
        crop_before: rows/columns dropped from the start of the full result.
        crop_after: rows/columns dropped from the end; negative means that many zero rows
            are appended instead (they still receive the bias).
        output_padding: exact-zero rows/columns appended after the bias.
    """

    kernel: int
    stride: int
    dilation: int
    crop_before: int
    crop_after: int
    output_padding: int

    @property
    def effective_kernel(self) -> int:
        """Extent of the dilated kernel: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def full_length(self, n: int) -> int:
        """Length of the uncropped transposed convolution of an axis of length ``n``.

        For ``n == 0`` this is ``k_eff - stride`` and may be negative: only the window
        arithmetic below gives it meaning.
        """
        return (n - 1) * self.stride + self.effective_kernel

    def window_length(self, n: int) -> int:
        """Rows that receive the bias: the full result after the crop/extension."""
        return self.full_length(n) - self.crop_before - self.crop_after

    def output_length(self, n: int) -> int:
        """Length of the output axis, output_padding included."""
        return self.window_length(n) + self.output_padding

    @functools.lru_cache(maxsize=4096)  # geometry is asked for on every call; plans are hashable
    def phases(self, n: int) -> Tuple["Phase", ...]:
        """The stride-phase decomposition of the window, for an input axis of length ``n``.

        Window rows ``r = phase + m*stride`` (``m = 0 .. count-1``) all receive the same taps:
        tap ``t`` with ``(phase + crop_before - t*dilation) % stride == 0``, from input row
        ``m + shift`` where ``shift = (phase + crop_before - t*dilation) // stride``. So each
        phase is a dense stride-1 correlation of the input with a sub-kernel (XNNPACK's
        "subconv"). A phase may have no taps: its rows receive only the bias.
        """
        window = self.window_length(n)
        result = []
        for phase in range(min(self.stride, window)):
            base = phase + self.crop_before
            taps = tuple((t, (base - t * self.dilation) // self.stride) for t in range(self.kernel)
                         if (base - t * self.dilation) % self.stride == 0)
            rows = slice(phase, window, self.stride)
            result.append(Phase(rows, len(range(window)[rows]), taps))
        return tuple(result)

    @functools.lru_cache(maxsize=4096)
    def phase_padding(self, n: int) -> Tuple[int, int]:
        """Zero rows to put before and after the input for the phase taps.

        With them, every tap reads input rows ``shift .. shift + count - 1`` inside the
        padded axis.
        """
        reads = [(shift, shift + phase.count) for phase in self.phases(n) for _, shift in phase.taps]
        if not reads:
            return 0, 0
        return max(0, -min(lo for lo, _ in reads)), max(0, max(hi for _, hi in reads) - n)

    @functools.lru_cache(maxsize=4096)
    def tap_window(self, tap: int, n: int) -> Optional[Tuple[slice, slice]]:
        """Where kernel tap ``tap`` lands inside the window, for an input axis of length ``n``.

        Input row ``i`` lands on window row ``i*stride + tap*dilation - crop_before``; only
        rows inside ``[0, window_length(n))`` are kept.

        Returns:
            ``(input_rows, output_rows)``: a contiguous slice of input rows and the strided
            slice of output rows they land on (same length), or None when the tap reaches no
            window row.
        """
        offset = tap * self.dilation - self.crop_before
        window = self.window_length(n)
        first = max(0, -(offset // self.stride))              # ceil(-offset / stride)
        stop = min(n, -((offset - window) // self.stride))    # ceil((window - offset) / stride)
        if first >= stop:
            return None
        start = first * self.stride + offset
        return slice(first, stop), slice(start, start + (stop - first - 1) * self.stride + 1, self.stride)


def axis_plan(kernel: int, stride: int, dilation: int, pad_mode: str,
              pad_before: int, pad_after: int, output_padding: int) -> AxisPlan:
    """Build the :class:`AxisPlan` of one axis from already-validated values."""
    k_eff = dilation * (kernel - 1) + 1
    overlap = k_eff - stride
    if pad_mode == "pad":
        before, after = pad_before, pad_after
    elif pad_mode == "same":
        # TF/ONNX SAME_UPPER: the odd extra row is cropped at the end.
        before = max(overlap, 0) // 2
        after = overlap - before
    else:  # 'valid': keep everything, and pad up to n*stride when the kernel is shorter
        before, after = 0, min(overlap, 0)
    return AxisPlan(kernel, stride, dilation, before, after, output_padding)


@dataclasses.dataclass(frozen=True)
class Conv2dTransposeSpec:
    """Validated, canonical arguments of a 2-D transposed convolution (hashable).

    Build it with :meth:`from_args`; every field holds a canonical value:
    2-tuples for ``kernel_size``, ``stride``, ``dilation``, ``output_padding``; a 4-tuple
    (top, bottom, left, right) for ``padding``; lower-case ``pad_mode``.
    """

    in_channels: int
    out_channels: int
    kernel_size: Pair
    stride: Pair
    pad_mode: str
    padding: Quad
    output_padding: Pair
    dilation: Pair
    group: int
    has_bias: bool

    @classmethod
    def from_args(cls, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any = 1,
                  pad_mode: Any = "same", padding: Any = 0, output_padding: Any = 0,
                  dilation: Any = 1, group: Any = 1, has_bias: Any = False, *,
                  on_weight_shape: Optional[Callable[[Tuple[int, ...]], None]] = None,
                  on_bias_shape: Optional[Callable[[Tuple[int, ...]], None]] = None,
                  ) -> "Conv2dTransposeSpec":
        """Validate raw user arguments in MindSpore's order and return the spec.

        The checks run in the order MindSpore 2.10 runs them, so that an argument list with
        two faults raises the same exception type. MindSpore builds the weight initializer
        after the channel and kernel checks and the bias initializer after the has_bias
        check; ``on_weight_shape(weight_shape)`` and ``on_bias_shape(bias_shape)`` let a layer
        run its initializer checks at those points (``on_bias_shape`` only when has_bias).

        The range of ``output_padding`` and the rule that a nonzero one needs
        ``pad_mode='pad'`` are checked by :meth:`check_output_padding`, at call time (from
        :meth:`check_input_shape`), as in MindSpore.

        Raises:
            TypeError: an argument of the wrong type (bool and NumPy integers are not ints).
            ValueError: an argument of the right type with a wrong value.
        """
        kernel = _pair("kernel_size", kernel_size)
        strides = _pair("stride", stride)
        dilations = _pair("dilation", dilation)
        padding_given = _padding_shape(padding)
        out_pad = _output_padding(output_padding)
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        pads = _padding_values(padding_given)
        _check_positive_int("group", group)
        _check_positive_items("kernel_size", kernel_size, kernel)
        _check_positive_items("stride", stride, strides)
        _check_positive_items("dilation", dilation, dilations)
        if in_channels % group:
            raise ValueError(f"in_channels must be divisible by group, got in_channels={in_channels}"
                             f" and group={group}")
        if out_channels % group:
            raise ValueError(f"out_channels must be divisible by group, got out_channels={out_channels}"
                             f" and group={group}")
        weight_shape = (in_channels, out_channels // group) + kernel
        if math.prod(weight_shape) > MAX_ELEMENTS:
            raise ValueError(f"the weight would have shape {weight_shape}, too many elements to allocate: "
                             f"in_channels={in_channels}, out_channels={out_channels}, group={group}, "
                             f"kernel_size={kernel_size!r}")
        if on_weight_shape is not None:
            on_weight_shape(weight_shape)
        if type(has_bias) is not bool:
            raise TypeError(f"has_bias must be a bool, got has_bias={_describe(has_bias)}")
        if has_bias and on_bias_shape is not None:
            on_bias_shape((out_channels,))
        if not isinstance(pad_mode, str) or pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of 'same', 'valid', 'pad' (lower case), "
                             f"got pad_mode={pad_mode!r}")
        if pad_mode != "pad" and any(pads):
            raise ValueError(f"padding must be 0 or (0, 0, 0, 0) unless pad_mode='pad', "
                             f"got padding={padding!r} with pad_mode={pad_mode!r}")
        return cls(in_channels, out_channels, kernel, strides, pad_mode, pads, out_pad,
                   dilations, group, has_bias)

    @classmethod
    def from_weight_shape(cls, weight_shape: Tuple[int, ...], stride: Any = 1, pad_mode: Any = "same",
                          padding: Any = 0, output_padding: Any = 0, dilation: Any = 1, group: Any = 1,
                          has_bias: bool = False) -> "Conv2dTransposeSpec":
        """The spec of a functional call, whose weight ``(C_in, C_out // group, kH, kW)`` gives
        the channels and the kernel size.

        Raises:
            TypeError, ValueError: as :meth:`from_args`; errors about the channels name the
                weight's shape, which is what the caller passed.
        """
        weight_shape = tuple(weight_shape)
        if len(weight_shape) != 4 or min(weight_shape) < 1:
            raise ValueError(f"weight must be a 4-D array (C_in, C_out // group, kH, kW) with no empty "
                             f"axis, got weight of shape {weight_shape}")
        _check_positive_int("group", group)  # before it multiplies a channel count
        if weight_shape[0] % group:
            raise ValueError(f"weight.shape[0] (C_in) must be divisible by group, got weight of shape "
                             f"{weight_shape} and group={group}")
        return cls.from_args(weight_shape[0], weight_shape[1] * group, weight_shape[2:], stride,
                             pad_mode, padding, output_padding, dilation, group, has_bias)

    # ------------------------------------------------------------------ derived geometry

    @functools.cached_property
    def axes(self) -> Tuple[AxisPlan, AxisPlan]:
        """The height and width plans."""
        top, bottom, left, right = self.padding
        return (axis_plan(self.kernel_size[0], self.stride[0], self.dilation[0], self.pad_mode,
                          top, bottom, self.output_padding[0]),
                axis_plan(self.kernel_size[1], self.stride[1], self.dilation[1], self.pad_mode,
                          left, right, self.output_padding[1]))

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        """``(in_channels, out_channels // group, kH, kW)``, MindSpore's (and PyTorch's) layout."""
        return (self.in_channels, self.out_channels // self.group) + self.kernel_size

    @property
    def bias_shape(self) -> Tuple[int]:
        return (self.out_channels,)

    def full_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        """Shape of the uncropped result for an input of shape ``(N, Cin, H, W)``."""
        n, _, h, w = x_shape
        return (n, self.out_channels, self.axes[0].full_length(h), self.axes[1].full_length(w))

    def window_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        """Shape of the part of the output that carries the bias (output_padding excluded)."""
        n, _, h, w = x_shape
        return (n, self.out_channels, self.axes[0].window_length(h), self.axes[1].window_length(w))

    def output_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        """``(N, Cout, H_out, W_out)`` for an input of shape ``(N, Cin, H, W)``."""
        n, _, h, w = x_shape
        return (n, self.out_channels, self.axes[0].output_length(h), self.axes[1].output_length(w))

    # ------------------------------------------------------------------ call-time checks

    def check_output_padding(self) -> None:
        """MindSpore's call-time output_padding rules: range first, then pad_mode.

        Raises:
            ValueError: ``output_padding[i]`` outside ``[0, max(stride[i], dilation[i]))``, or
                nonzero with a pad_mode other than 'pad'.
        """
        for index, axis in enumerate(("height", "width")):
            limit = max(self.stride[index], self.dilation[index])
            value = self.output_padding[index]
            if not 0 <= value < limit:
                raise ValueError(
                    f"output_padding must lie in [0, max(stride, dilation)) on each axis, got "
                    f"output_padding={self.output_padding} with stride={self.stride} and "
                    f"dilation={self.dilation} ({axis}: {value} is not in [0, {limit}))")
        if self.pad_mode != "pad" and any(self.output_padding):
            raise ValueError(f"a nonzero output_padding needs pad_mode='pad', got "
                             f"output_padding={self.output_padding} with pad_mode={self.pad_mode!r}")

    def check_parameters(self, weight_shape: Tuple[int, ...], bias_shape: Optional[Tuple[int, ...]]) -> None:
        """Check parameter shapes against this spec (they can be replaced after construction).

        Raises:
            ValueError: a weight or bias of another shape.
        """
        if tuple(weight_shape) != self.weight_shape:
            raise ValueError(f"weight must have shape {self.weight_shape} (C_in, C_out // group, kH, kW), "
                             f"got weight of shape {tuple(weight_shape)}")
        if bias_shape is not None and tuple(bias_shape) != self.bias_shape:
            raise ValueError(f"bias must have shape {self.bias_shape}, got bias of shape {tuple(bias_shape)}")

    def check_input_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        """Check an input shape against this spec and return the output shape.

        Raises:
            ValueError: wrong rank, wrong channel count, output_padding out of range, or a
                crop that leaves fewer than 0 rows (or exactly 0 rows followed by
                output_padding rows, where MindSpore returns uninitialised memory).
        """
        if len(x_shape) != 4:
            raise ValueError(f"x must be 4-D (N, C_in, H, W), got an array of shape {tuple(x_shape)}")
        if x_shape[1] != self.in_channels:
            raise ValueError(f"x must have in_channels={self.in_channels} channels (axis 1), "
                             f"got an array of shape {tuple(x_shape)}")
        self.check_output_padding()
        for index, (axis, plan) in enumerate(zip(("height", "width"), self.axes)):
            size = x_shape[2 + index]
            window = plan.window_length(size)
            if window < 0 or (window == 0 and plan.output_padding > 0):
                raise ValueError(
                    f"the crop leaves {window} rows on the {axis} axis: input {axis} {size}, "
                    f"kernel_size={self.kernel_size}, stride={self.stride}, "
                    f"dilation={self.dilation}, padding={self.padding}, "
                    f"output_padding={self.output_padding}; the padding must be smaller than "
                    f"the uncropped length {plan.full_length(size)}"
                    + (" (0 rows followed by output_padding rows has no defined value)"
                       if window == 0 else ""))
        out_shape = self.output_shape(x_shape)
        if math.prod(out_shape) > MAX_ELEMENTS:
            raise ValueError(f"the output would have shape {out_shape}, too many elements to allocate: "
                             f"input {tuple(x_shape)}, kernel_size={self.kernel_size}, stride={self.stride}, "
                             f"dilation={self.dilation}")
        return out_shape
