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
import os
from typing import Any, ClassVar, NamedTuple, Optional, Tuple

# Public: the two specs (layers expose theirs as ``.spec``). The rest serves the library.
__all__ = ["Conv2dTransposeSpec", "Conv2dSpec"]

PAD_MODES = ("valid", "same", "pad")

Pair = Tuple[int, int]
Quad = Tuple[int, int, int, int]


def _is_int(value: Any) -> bool:
    """True for a Python int that is not a bool (MindSpore rejects bool and NumPy integers)."""
    return type(value) is int


def _physical_memory() -> int:
    """Bytes of physical memory on this machine (1 TiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**40


# The most memory one request may ask for: half the machine's physical memory. A request for
# more (an output, the parameters with their float64 draw) cannot succeed alongside its inputs,
# and would fail deep inside an allocator (or swap for minutes): refuse it up front, naming the
# arguments. Ordinary large work stays far below it. Tests may lower it with monkeypatch.
MEMORY_LIMIT = _physical_memory() // 2

# The largest size a kernel argument may have: MindSpore's, PyTorch's and XLA's are signed 64-bit.
_INT64_MAX = 2**63 - 1

# Bytes per parameter element while initialising: the float64 draw plus the result.
_INIT_BYTES_PER_ELEMENT = 8 + 8


# Ints longer than this are echoed by their length: 10**400 would fill a screen, and Python
# refuses to print ints past 4300 digits at all (the message itself would fail).
_ECHO_DIGITS = 30


def _echo(value: Any) -> str:
    """The repr of ``value`` for a message, with huge ints (also inside tuples) shortened."""
    if type(value) is int and abs(value) >= 10**_ECHO_DIGITS:
        try:
            size = f"{len(str(abs(value)))} digits"
        except ValueError:  # past sys.get_int_max_str_digits()
            size = f"{value.bit_length()} bits"
        return f"<{'a negative' if value < 0 else 'an'} int of {size}>"
    if type(value) is tuple:
        return f"({', '.join(_echo(item) for item in value)}{',' if len(value) == 1 else ''})"
    return repr(value)


def _describe(value: Any) -> str:
    """Repr of a value, plus its type where the repr alone could hide it."""
    if type(value) in (bool, int, float, str, tuple, list, type(None)):
        return _echo(value)
    return f"{value!r} (type {type(value).__name__})"


def _int_or_tuple(
    name: str, value: Any, size: int, rule: str, length_error: type, check_items: bool = True
) -> Tuple[int, ...]:
    """An int (repeated ``size`` times) or a tuple of ``size`` ints; the values are not checked.

    MindSpore raises TypeError for a wrong type and ``length_error`` for a wrong length
    (TypeError for kernel_size/stride/dilation, ValueError for padding/output_padding).
    """
    if _is_int(value):
        return (value,) * size
    if not isinstance(value, tuple):
        raise TypeError(f"{rule}, got {name}={_describe(value)}")
    if len(value) != size:
        raise length_error(f"{rule}, got {name}={_echo(value)} (length {len(value)})")
    for item in value if check_items else ():
        if not _is_int(item):
            raise TypeError(f"{rule}, got {name}={_echo(value)} (item {_describe(item)} is not an int)")
    return value


def _pair(name: str, value: Any) -> Pair:
    """Normalise kernel_size/stride/dilation: an int or a tuple of 2 ints (types only)."""
    rule = f"{name} must be a positive int or a tuple of 2 positive ints"
    return _int_or_tuple(name, value, 2, rule, TypeError)  # type: ignore[return-value]


def _check_positive_items(name: str, given: Any, values: Pair) -> None:
    for item in values:
        if item < 1:
            raise ValueError(f"{name} must be a positive int or a tuple of 2 positive ints, got {name}={_echo(given)}")


def _check_positive_int(name: str, value: Any) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {name}={_describe(value)}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={_echo(value)}")
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
            raise ValueError(f"{rule}, got padding={_echo(value)}")
        return (value, value, value, value)
    for item in value:
        if not _is_int(item):
            raise TypeError(f"{rule}, got padding={_echo(value)} (item {_describe(item)} is not an int)")
        if item < 0:
            raise ValueError(f"{rule}, got padding={_echo(value)}")
    return tuple(value)  # type: ignore[return-value]


def _output_padding(value: Any) -> Pair:
    """Type and length of output_padding; its range is a call-time check in MindSpore.

    MindSpore accepts a tuple item such as 1.0 here and then fails inside its Pad kernel;
    we refuse it now.
    """
    rule = "output_padding must be an int or a tuple of 2 ints"
    return _int_or_tuple("output_padding", value, 2, rule, ValueError)  # type: ignore[return-value]


def check_has_bias(has_bias: Any) -> None:
    """``has_bias`` must be a real bool (both layers check it after drawing the weight)."""
    if type(has_bias) is not bool:
        raise TypeError(f"has_bias must be a bool, got has_bias={_describe(has_bias)}")


class _Normalised(NamedTuple):
    """Canonical values of the checks a layer makes before its weight initializer."""

    kernel_size: Pair
    stride: Pair
    dilation: Pair
    padding: Quad
    output_padding: Pair
    weight_shape: Tuple[int, int, int, int]


def _check_weight_memory(
    weight_shape: Tuple[int, ...], in_channels: int, out_channels: int, group: int, kernel_size: Any
) -> None:
    """Refuse a weight whose initialisation (a float64 draw and the result) exceeds ``MEMORY_LIMIT``."""
    needed = math.prod(weight_shape) * _INIT_BYTES_PER_ELEMENT
    if needed > MEMORY_LIMIT:
        raise ValueError(
            f"the weight would have shape {_echo(weight_shape)} ({_echo(math.prod(weight_shape))} "
            f"elements, {_gib(needed)} to initialise), more than the {_gib(MEMORY_LIMIT)} one request may "
            f"use on this machine: in_channels={_echo(in_channels)}, out_channels={_echo(out_channels)}, "
            f"group={_echo(group)}, kernel_size={_echo(kernel_size)}"
        )


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

    def kernel_stride(self, n: int) -> int:
        """The stride a kernel needs for an input axis of length ``n``.

        With at most one input row no second row is placed, so every stride gives the same
        result: 1 then, which a framework's 64-bit argument holds whatever the stride given.
        """
        return self.stride if n > 1 else 1

    @property
    def kernel_dilation(self) -> int:
        """The dilation a kernel needs: a one-tap kernel has no spacing to apply, so 1."""
        return self.dilation if self.kernel > 1 else 1


@functools.lru_cache(maxsize=4096)
def tap_window(plan: AxisPlan, tap: int, n: int) -> Optional[Tuple[slice, slice]]:
    """Where kernel tap ``tap`` lands inside the window, for an input axis of length ``n``.

    Input row ``i`` lands on window row ``i*stride + tap*dilation - crop_before``; only rows
    inside ``[0, window_length(n))`` are kept. The NumPy and JAX engines read the window
    through it, so no buffer of the uncropped length is ever needed.

    Returns:
        ``(input_rows, output_rows)``: a contiguous slice of input rows and the strided slice
        of output rows they land on (same length; the step is 1 for a single row, whatever the
        stride), or None when the tap reaches no window row.

    Example:
        >>> plan = axis_plan(3, 2, 1, "pad", 1, 1, 0)     # k=3, s=2, padding 1: window 2n - 1
        >>> tap_window(plan, 0, 4)                         # rows 1..3 land on window rows 1, 3, 5
        (slice(1, 4, None), slice(1, 6, 2))
    """
    offset = tap * plan.dilation - plan.crop_before
    window = plan.window_length(n)
    first = max(0, -(offset // plan.stride))  # ceil(-offset / stride)
    stop = min(n, -((offset - window) // plan.stride))  # ceil((window - offset) / stride)
    if first >= stop:
        return None
    start = first * plan.stride + offset
    step = plan.stride if stop - first > 1 else 1
    return slice(first, stop), slice(start, start + (stop - first - 1) * step + 1, step)


def axis_plan(
    kernel: int, stride: int, dilation: int, pad_mode: str, pad_before: int, pad_after: int, output_padding: int
) -> AxisPlan:
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


def lax_transpose_crop(kernel: int, stride: int, dilation: int, padding: Any) -> Tuple[int, int]:
    """``(crop_before, crop_after)`` of one axis of ``jax.lax.conv_transpose`` (what ``nnx.ConvTranspose`` calls).

    lax computes a transposed convolution as a convolution of the stride-dilated input padded
    with ``(lo, hi)``: 'SAME' pads ``k_eff + s - 2`` rows in all, ``lo = k_eff - 1`` when
    ``s > k_eff - 1`` and ``ceil(total / 2)`` otherwise; 'VALID' pads ``lo = k_eff - 1`` and
    ``hi = s - 1 + max(k_eff - s, 0)``; an explicit ``(lo, hi)`` is used as it is. The full
    transposed convolution is the padding ``(k_eff - 1, k_eff - 1)``, so the crops are
    ``k_eff - 1 - lo`` and ``k_eff - 1 - hi`` (negative: that many rows without a kernel term
    are added). 'SAME' and 'VALID' give what :func:`axis_plan` gives for 'same' and 'valid'.
    """
    k_eff = dilation * (kernel - 1) + 1
    if padding == "SAME":
        total = k_eff + stride - 2
        lo = k_eff - 1 if stride > k_eff - 1 else -(-total // 2)
        hi = total - lo
    elif padding == "VALID":
        lo, hi = k_eff - 1, stride - 1 + max(k_eff - stride, 0)
    else:
        lo, hi = padding
    return k_eff - 1 - lo, k_eff - 1 - hi


def _gib(size: int) -> str:
    try:
        return f"{size / 2**30:.3g} GiB"
    except OverflowError:  # past float64: the byte count of a 10**400-element request
        return f"{_echo(size // 2**30)} GiB"


@dataclasses.dataclass(frozen=True)
class Conv2dTransposeSpec:
    """Validated, canonical arguments of a 2-D transposed convolution (hashable).

    Build it with :meth:`from_args` (a layer) or :func:`spec_from_weight` (a functional call);
    every field holds a canonical value: 2-tuples for ``kernel_size``, ``stride``, ``dilation``,
    ``output_padding``; a 4-tuple (top, bottom, left, right) for ``padding``; lower-case
    ``pad_mode``. ``axes`` holds the two :class:`AxisPlan` objects, computed once here as a plain
    field (not a cached property) so that traced code (``torch.compile``, ``jax.jit``) reads it
    like any attribute; it takes no part in equality or hashing.

    Example:
        >>> spec = Conv2dTransposeSpec.from_args(3, 8, 4, stride=2, pad_mode="pad", padding=1)
        >>> spec.weight_shape, spec.output_shape((2, 3, 5, 5))
        ((3, 8, 4, 4), (2, 8, 10, 10))
    """

    # MindSpore's arguments that the spec holds, in MindSpore's order (what a layer reads back).
    ARGUMENTS: ClassVar[Tuple[str, ...]] = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "pad_mode",
        "padding",
        "output_padding",
        "dilation",
        "group",
        "has_bias",
        "data_format",
    )
    data_format: ClassVar[str] = "NCHW"  # the only layout MindSpore's CPU kernels (and ours) compute

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
    axes: Tuple[AxisPlan, AxisPlan] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        top, bottom, left, right = self.padding
        axes = (
            axis_plan(
                self.kernel_size[0],
                self.stride[0],
                self.dilation[0],
                self.pad_mode,
                top,
                bottom,
                self.output_padding[0],
            ),
            axis_plan(
                self.kernel_size[1],
                self.stride[1],
                self.dilation[1],
                self.pad_mode,
                left,
                right,
                self.output_padding[1],
            ),
        )
        object.__setattr__(self, "axes", axes)

    @classmethod
    def from_args(
        cls,
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
        *,
        allocate: bool = True,
    ) -> "Conv2dTransposeSpec":
        """Validate raw user arguments in MindSpore's order and return the spec.

        The checks run in the order MindSpore 2.10 runs them, so that an argument list with
        two faults raises the same exception type: first those of :meth:`weight_shape_of`
        (MindSpore then builds the weight initializer), then ``has_bias`` (then the bias
        initializer), then the pad_mode rules. The parameter builder
        (``convtranspose._layers``) draws its initializers between these stages.

        The range of ``output_padding`` and the rule that a nonzero one needs
        ``pad_mode='pad'`` are checked by :meth:`check_output_padding`, at call time (from
        :meth:`check_shapes`), as in MindSpore.

        Raises:
            TypeError: an argument of the wrong type (bool and NumPy integers are not ints).
            ValueError: an argument of the right type with a wrong value, or parameters too
                large for this machine's memory (see ``MEMORY_LIMIT``).
        """
        early = cls._check_until_weight(
            in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, group, allocate
        )
        check_has_bias(has_bias)
        if not isinstance(pad_mode, str) or pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of 'same', 'valid', 'pad' (lower case), got pad_mode={pad_mode!r}")
        if pad_mode != "pad" and any(early.padding):
            raise ValueError(
                f"padding must be 0 or (0, 0, 0, 0) unless pad_mode='pad', "
                f"got padding={padding!r} with pad_mode={pad_mode!r}"
            )
        return cls(
            in_channels,
            out_channels,
            early.kernel_size,
            early.stride,
            pad_mode,
            early.padding,
            early.output_padding,
            early.dilation,
            group,
            has_bias,
        )

    @classmethod
    def weight_shape_of(
        cls,
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
        *,
        allocate: bool = True,
    ) -> Tuple[int, int, int, int]:
        """The weight's shape, after the checks MindSpore makes before it builds the weight initializer.

        pad_mode and has_bias are not checked here (MindSpore checks them later); they are
        accepted so that the same arguments go to this method and to :meth:`from_args`.
        """
        return cls._check_until_weight(
            in_channels, out_channels, kernel_size, stride, padding, output_padding, dilation, group, allocate
        ).weight_shape

    @staticmethod
    def _check_until_weight(
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        output_padding: Any,
        dilation: Any,
        group: Any,
        allocate: bool = True,
    ) -> "_Normalised":
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
            raise ValueError(
                f"in_channels must be divisible by group, got in_channels={_echo(in_channels)} and group={_echo(group)}"
            )
        if out_channels % group:
            raise ValueError(
                f"out_channels must be divisible by group, got "
                f"out_channels={_echo(out_channels)} and group={_echo(group)}"
            )
        weight_shape = (in_channels, out_channels // group) + kernel
        if allocate:  # a weight on PyTorch's meta device holds no memory
            _check_weight_memory(weight_shape, in_channels, out_channels, group, kernel_size)
        return _Normalised(kernel, strides, dilations, pads, out_pad, weight_shape)

    # ------------------------------------------------------------------ derived geometry

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        """``(in_channels, out_channels // group, kH, kW)``, MindSpore's (and PyTorch's) layout."""
        return (self.in_channels, self.out_channels // self.group) + self.kernel_size

    @property
    def bias_shape(self) -> Tuple[int]:
        """``(out_channels,)``."""
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

    def kernel_strides(self, x_shape: Tuple[int, ...]) -> Pair:
        """The stride each axis's kernel needs for an input of shape ``(N, Cin, H, W)``.

        The given stride, or 1 for an axis of length 0 or 1 (see :meth:`AxisPlan.kernel_stride`).
        """
        return (self.axes[0].kernel_stride(x_shape[2]), self.axes[1].kernel_stride(x_shape[3]))

    @property
    def kernel_dilations(self) -> Pair:
        """The dilation each axis's kernel needs: the given one, or 1 for a one-tap axis."""
        return (self.axes[0].kernel_dilation, self.axes[1].kernel_dilation)

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
                    f"output_padding={_echo(self.output_padding)} with stride={_echo(self.stride)} and "
                    f"dilation={_echo(self.dilation)} ({axis}: {_echo(value)} is not in [0, {_echo(limit)}))"
                )
        if self.pad_mode != "pad" and any(self.output_padding):
            raise ValueError(
                f"a nonzero output_padding needs pad_mode='pad', got "
                f"output_padding={_echo(self.output_padding)} with pad_mode={self.pad_mode!r}"
            )

    def check_shapes(
        self,
        x_shape: Tuple[int, ...],
        weight_shape: Tuple[int, ...],
        bias_shape: Optional[Tuple[int, ...]] = None,
        itemsize: int = 4,
    ) -> Tuple[int, int, int, int]:
        """Check the shapes of a call's x, weight and bias against this spec; return the output shape.

        Every front end (NumPy, torch, JAX) calls this before its engine, so the same shapes
        give the same errors everywhere. What is specific to an array type (is it an ndarray,
        a tensor on which device, which dtype) stays with the front end.

        Args:
            x_shape: ``(N, C_in, H, W)``.
            weight_shape: ``(C_in, C_out // group, kH, kW)``.
            bias_shape: ``(C_out,)`` or None.
            itemsize: bytes per output element, for the memory limit.

        Returns:
            ``(N, C_out, H_out, W_out)``.

        Raises:
            ValueError: wrong rank or channel count of x, a weight or bias of another shape,
                output_padding out of range, a crop that leaves fewer than 0 rows (or exactly
                0 rows followed by output_padding rows, where MindSpore returns uninitialised
                memory), an output larger than ``MEMORY_LIMIT``, or a size a kernel needs past
                2**63 - 1 (a huge stride or dilation cropped away by a huge padding).
        """
        x_shape = tuple(x_shape)
        if len(x_shape) != 4:
            raise ValueError(f"x must be 4-D (N, C_in, H, W), got x of shape {x_shape}")
        if x_shape[1] != self.in_channels:
            raise ValueError(f"x must have in_channels={self.in_channels} channels (axis 1), got x of shape {x_shape}")
        if tuple(weight_shape) != self.weight_shape:
            raise ValueError(
                f"weight must have shape {self.weight_shape} (C_in, C_out // group, kH, kW), "
                f"got weight of shape {tuple(weight_shape)}"
            )
        if bias_shape is not None and tuple(bias_shape) != self.bias_shape:
            raise ValueError(f"bias must have shape {self.bias_shape}, got bias of shape {tuple(bias_shape)}")
        self.check_output_padding()
        for index, (axis, plan) in enumerate(zip(("height", "width"), self.axes)):
            self._check_crop(axis, plan, x_shape[2 + index])
        out_shape = self.output_shape(x_shape)
        self.check_memory(x_shape, out_shape, itemsize, "the output")
        self._check_int64(x_shape)
        return out_shape

    def check_memory(self, x_shape: Tuple[int, ...], shape: Tuple[int, ...], itemsize: int, what: str) -> None:
        """Refuse an array of ``shape`` (``itemsize`` bytes an element) larger than ``MEMORY_LIMIT``.

        :meth:`check_shapes` checks the output with it; an engine front end also checks what its
        kernels materialise (``what`` names it in the message).

        Raises:
            ValueError: naming the input's shape and the geometry arguments.
        """
        needed = math.prod(shape) * itemsize
        if needed > MEMORY_LIMIT:
            raise ValueError(
                f"{what} would have shape {_echo(tuple(shape))} ({_gib(needed)}), more than the "
                f"{_gib(MEMORY_LIMIT)} one request may use on this machine: x of shape {tuple(x_shape)}, "
                f"kernel_size={_echo(self.kernel_size)}, stride={_echo(self.stride)}, "
                f"dilation={_echo(self.dilation)}, pad_mode={self.pad_mode!r}, padding={_echo(self.padding)}"
            )

    def _check_int64(self, x_shape: Tuple[int, ...]) -> None:
        """Every size a kernel sees fits a signed 64-bit int, as MindSpore's and every framework's do.

        A small output can come from a huge stride or dilation cropped away by a huge padding;
        MindSpore's kernels (C++) and PyTorch's and XLA's arguments are 64-bit, so such a request
        is refused here, for every engine alike. A stride or dilation that no kernel needs (one
        input row, a one-tap kernel) is never passed on, so it may be any size.
        """
        for index, axis in enumerate(("height", "width")):
            plan, size = self.axes[index], x_shape[2 + index]
            for name, value in (("stride", plan.kernel_stride(size)), ("dilation", plan.kernel_dilation)):
                if value > _INT64_MAX:
                    raise ValueError(
                        f"{name}={_echo(getattr(self, name))} is past 2**63 - 1 on the {axis} axis, "
                        f"which no 64-bit kernel takes (MindSpore's included)"
                    )
            if plan.full_length(size) > _INT64_MAX:
                raise ValueError(
                    f"stride={_echo(self.stride)} and dilation={_echo(self.dilation)} with "
                    f"kernel_size={_echo(self.kernel_size)} make the uncropped {axis} axis of an input of shape "
                    f"{x_shape} {_echo(plan.full_length(size))} rows long, past 2**63 - 1, which no 64-bit "
                    f"kernel takes (MindSpore's included), even though padding={_echo(self.padding)} crops it"
                )

    def _check_crop(self, axis: str, plan: AxisPlan, size: int) -> None:
        """A 'pad' crop may remove at most the whole uncropped result (see check_shapes)."""
        window = plan.window_length(size)
        if window > 0 or (window == 0 and plan.output_padding == 0):
            return
        full = max(plan.full_length(size), 0)
        cropped = plan.crop_before + plan.crop_after
        rows, length = ("rows", "H") if axis == "height" else ("columns", "W")
        if window < 0:
            problem = f"which removes {_echo(cropped)} {rows} where only {_echo(full)} exist"
        else:
            problem = (
                f"which removes all {_echo(full)} {rows}, and output_padding {rows} appended to an "
                f"empty window have no defined value (MindSpore returns uninitialised memory)"
            )
        raise ValueError(
            f"padding={_echo(self.padding)} is too large for the {axis} axis: the uncropped transposed "
            f"convolution of an input {axis} of {size} is {_echo(full)} {rows} long (({length}-1)*stride + "
            f"dilation*(kernel-1) + 1 with kernel_size={_echo(self.kernel_size)}, stride={_echo(self.stride)}, "
            f"dilation={_echo(self.dilation)}), and the padding crops {_echo(cropped)}, {problem}"
            + (f"; output_padding={_echo(self.output_padding)}" if window == 0 else "")
        )


def _typed(value: Any) -> Any:
    """A cache key that tells ``True``, ``1``, ``1.0`` and ``np.int64(1)`` apart.

    They hash alike, and the spec accepts only the Python int.
    """
    if type(value) is tuple:
        return (tuple, tuple(_typed(item) for item in value))
    return (type(value), value)


def _from_weight_shape(
    weight_shape: Tuple[int, ...],
    stride: Any,
    pad_mode: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    group: Any,
    has_bias: Any,
) -> Conv2dTransposeSpec:
    if len(weight_shape) != 4 or min(weight_shape) < 1:
        raise ValueError(
            f"weight must be 4-D (C_in, C_out // group, kH, kW) with no empty axis, got weight of shape {weight_shape}"
        )
    _check_positive_int("group", group)  # before it multiplies a channel count
    if weight_shape[0] % group:
        raise ValueError(
            f"weight.shape[0] (C_in) must be divisible by group, got weight of shape {weight_shape} and group={group}"
        )
    return Conv2dTransposeSpec.from_args(
        weight_shape[0],
        weight_shape[1] * group,
        weight_shape[2:],
        stride,
        pad_mode,
        padding,
        output_padding,
        dilation,
        group,
        has_bias,
    )


@functools.lru_cache(maxsize=1024)
def _cached_from_weight_shape(key: Any, *args: Any) -> Conv2dTransposeSpec:
    return _from_weight_shape(*args)


def spec_from_weight(
    weight_shape: Tuple[int, ...],
    stride: Any = 1,
    pad_mode: Any = "same",
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    group: Any = 1,
    has_bias: Any = False,
) -> Conv2dTransposeSpec:
    """The spec of a functional call: the weight ``(C_in, C_out // group, kH, kW)`` gives the channels and kernel.

    Cached: validation runs once per distinct argument set, which every functional front end
    (NumPy, torch, JAX) relies on to stay cheap per call. The cache key keeps the argument
    types, so ``stride=True`` is refused even after ``stride=1`` was accepted.

    Raises:
        TypeError, ValueError: as :meth:`Conv2dTransposeSpec.from_args`; errors about the
            channels name the weight's shape, which is what the caller passed.

    Example:
        >>> spec_from_weight((4, 2, 3, 3), stride=2, group=2).out_channels
        4
    """
    try:
        args = (
            tuple(int(size) for size in weight_shape),
            stride,
            pad_mode,
            padding,
            output_padding,
            dilation,
            group,
            has_bias,
        )
    except (TypeError, ValueError):
        raise TypeError(f"weight must be an array with a shape of ints, got weight of shape {weight_shape!r}") from None
    try:
        key = _typed(args)
        hash(key)
    except TypeError:  # lists and arrays: let the spec explain what it expects
        return _from_weight_shape(*args)
    return _cached_from_weight_shape(key, *args)


# ====================================================================== nn.Conv2d

CONV2D_DATA_FORMATS = ("NCHW", "NHWC", "NCDHW")  # what MindSpore's nn.Conv2d accepts before its primitive


class KernelWindow(NamedTuple):
    """The part of a convolution's kernel and input that one axis really uses, for one input length.

    Taps that read only padding for every output row contribute nothing (but NaN and inf
    weights, which they would turn into NaN through ``0 * inf``), and input rows that no tap
    reads contribute nothing either: an engine computes the same result with ``kernel[taps]``
    over ``input[rows]`` padded by ``pad_before``/``pad_after`` zeros. This keeps a huge
    dilation or padding (MindSpore runs dilation 2**31 in 'same' mode) from costing anything
    beyond the output, and every size inside a framework's 32-bit arguments.

    Attributes:
        taps: the kernel taps used (a contiguous range).
        rows: the input rows read (a contiguous range).
        pad_before, pad_after: zero rows before and after ``input[rows]`` (>= 0).
        stride: the stride to use (1 when there is a single output row: any stride gives it).
        dilation: the dilation to use (1 for a single tap).
    """

    taps: slice
    rows: slice
    pad_before: int
    pad_after: int
    stride: int
    dilation: int


@dataclasses.dataclass(frozen=True)
class ConvAxisPlan:
    """One spatial axis of MindSpore's ``nn.Conv2d`` for an input of ``length`` rows.

    Output row ``i`` reads input rows ``i*stride + t*dilation - pad_before`` for the kernel
    taps ``t``; rows outside ``[0, length)`` are padding (zeros). ``output_length`` is
    ``floor((length + pad_before + pad_after - k_eff) / stride) + 1`` (``ceil(length / stride)``
    in 'same' mode), and may be 0 or negative before :meth:`Conv2dSpec.check_shapes` refuses it.
    """

    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int
    length: int
    output_length: int

    @property
    def effective_kernel(self) -> int:
        """Extent of the dilated kernel: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded_length(self) -> int:
        """``length + pad_before + pad_after``."""
        return self.length + self.pad_before + self.pad_after

    def transposed(self) -> AxisPlan:
        """The transposed convolution's axis whose input gradient this convolution is (its adjoint).

        The transposed convolution of the ``output_length`` rows spreads them over
        ``(output_length - 1)*stride + k_eff`` rows; cropping ``pad_before`` at the start and
        keeping ``length`` rows gives this axis's input (a negative crop at the end appends the
        rows no output row reads: their gradient is zero).
        """
        full = (self.output_length - 1) * self.stride + self.effective_kernel
        return AxisPlan(
            self.kernel, self.stride, self.dilation, self.pad_before, full - self.pad_before - self.length, 0
        )

    def kernel_window(self) -> Optional[KernelWindow]:
        """The taps and input rows this axis really uses (see :class:`KernelWindow`); None if none is read."""
        out, stride, dilation, before = self.output_length, self.stride, self.dilation, self.pad_before
        if out <= 0 or self.length <= 0:
            return None
        # tap t reads rows t*d - before + i*s, i in [0, out): some row in [0, length) iff
        # t*d + (out-1)*s >= before and t*d - before < length
        first = max(0, -((-(before - (out - 1) * stride)) // dilation))
        last = min(self.kernel - 1, -((-(before + self.length)) // dilation) - 1)
        if first > last:
            return None
        start = first * dilation - before  # input row of the first tap for output row 0
        stop = last * dilation - before + (out - 1) * stride + 1  # one past the last tap's last read
        rows = slice(max(start, 0), min(stop, self.length))
        return KernelWindow(
            taps=slice(first, last + 1),
            rows=rows,
            pad_before=rows.start - start,
            pad_after=stop - rows.stop,
            stride=stride if out > 1 else 1,
            dilation=dilation if last > first else 1,
        )


def conv_axis_plan(
    kernel: int, stride: int, dilation: int, pad_mode: str, pad_before: int, pad_after: int, length: int
) -> ConvAxisPlan:
    """Build the :class:`ConvAxisPlan` of one axis from validated values and the input length.

    'same' is TensorFlow's rule (input-size dependent): ``ceil(length / stride)`` rows, with
    ``max((out-1)*stride + k_eff - length, 0)`` padding rows, the odd one at the end.
    """
    k_eff = dilation * (kernel - 1) + 1
    if pad_mode == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + k_eff - length, 0)
        pad_before, pad_after = total // 2, total - total // 2
    elif pad_mode == "valid":
        pad_before = pad_after = 0
    out = (length + pad_before + pad_after - k_eff) // stride + 1
    return ConvAxisPlan(kernel, stride, dilation, pad_before, pad_after, length, out)


def _check_conv2d_channel_type(name: str, value: Any, group: Any) -> None:
    """A channel count that is not an int is a TypeError (MindSpore's own ``%`` test fails by accident)."""
    if not _is_int(value):
        raise TypeError(
            f"{name} must be a positive int, got {name}={_describe(value)}"
            + (f" (with group={_echo(group)})" if group != 1 else "")
        )


@dataclasses.dataclass(frozen=True)
class Conv2dSpec:
    """Validated, canonical arguments of MindSpore's ``nn.Conv2d`` (hashable).

    Build it with :meth:`from_args` (a layer) or :func:`conv2d_spec_from_weight` (a functional
    call). Fields hold canonical values: 2-tuples for ``kernel_size``, ``stride``, ``dilation``;
    a 4-tuple (top, bottom, left, right) for ``padding``. The per-axis geometry depends on the
    input size in 'same' mode, so it is computed per input shape (:meth:`axes`, cached).

    Example:
        >>> spec = Conv2dSpec.from_args(3, 8, 3, stride=2)
        >>> spec.weight_shape, spec.output_shape((2, 3, 7, 8))
        ((8, 3, 3, 3), (2, 8, 4, 4))
    """

    ARGUMENTS: ClassVar[Tuple[str, ...]] = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "pad_mode",
        "padding",
        "dilation",
        "group",
        "has_bias",
        "data_format",
    )

    in_channels: int
    out_channels: int
    kernel_size: Pair
    stride: Pair
    pad_mode: str
    padding: Quad
    dilation: Pair
    group: int
    has_bias: bool
    data_format: str = "NCHW"

    @classmethod
    def from_args(
        cls,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any = 1,
        pad_mode: Any = "same",
        padding: Any = 0,
        dilation: Any = 1,
        group: Any = 1,
        has_bias: Any = False,
        data_format: Any = "NCHW",
        *,
        allocate: bool = True,
    ) -> "Conv2dSpec":
        """Validate raw user arguments in MindSpore 2.10's order for ``nn.Conv2d`` and return the spec.

        The order differs from Conv2dTranspose's: kernel_size, stride, dilation (types), group,
        the channels' divisibility by group, the channels, data_format, padding (type, then
        items, then — late, with pad_mode — its length), the kernel/stride/dilation values; the
        weight initializer; has_bias; the bias initializer; then pad_mode and the padding's
        length. Whether the kernel fits the padded input is checked at the call
        (:meth:`check_shapes`), as in MindSpore.

        Raises:
            TypeError: an argument of the wrong type (bool and NumPy integers are not ints;
                pad_mode not a str).
            ValueError: an argument of the right type with a wrong value, a size past 2**63 - 1,
                or a weight too large for this machine's memory.
        """
        early = cls._check_until_weight(
            in_channels, out_channels, kernel_size, stride, padding, dilation, group, data_format, allocate
        )
        check_has_bias(has_bias)
        if not isinstance(pad_mode, str):
            raise TypeError(
                f"pad_mode must be one of 'same', 'valid', 'pad' (a str), got pad_mode={_describe(pad_mode)}"
            )
        if not _is_int(padding) and len(padding) != 4:
            raise ValueError(
                f"padding must be an int or a tuple of 4 ints (top, bottom, left, right), got "
                f"padding={_echo(padding)} (length {len(padding)})"
            )
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of 'same', 'valid', 'pad' (lower case), got pad_mode={pad_mode!r}")
        if pad_mode != "pad" and any(early.padding):
            raise ValueError(
                f"padding must be 0 or (0, 0, 0, 0) unless pad_mode='pad', "
                f"got padding={padding!r} with pad_mode={pad_mode!r}"
            )
        if data_format != "NCHW":
            raise ValueError(f"data_format must be 'NCHW' (the only layout computed), got data_format={data_format!r}")
        return cls(
            in_channels,
            out_channels,
            early.kernel_size,
            early.stride,
            pad_mode,
            early.padding,
            early.dilation,
            group,
            has_bias,
            data_format,
        )

    @classmethod
    def weight_shape_of(
        cls,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any = 1,
        pad_mode: Any = "same",
        padding: Any = 0,
        dilation: Any = 1,
        group: Any = 1,
        has_bias: Any = False,
        data_format: Any = "NCHW",
        *,
        allocate: bool = True,
    ) -> Tuple[int, int, int, int]:
        """The weight's shape ``(C_out, C_in // group, kH, kW)``, after the checks before its initializer."""
        return cls._check_until_weight(
            in_channels, out_channels, kernel_size, stride, padding, dilation, group, data_format, allocate
        ).weight_shape

    @staticmethod
    def _check_until_weight(
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        group: Any,
        data_format: Any,
        allocate: bool = True,
    ) -> _Normalised:
        kernel = _pair("kernel_size", kernel_size)
        strides = _pair("stride", stride)
        dilations = _pair("dilation", dilation)
        _check_positive_int("group", group)
        # MindSpore tests divisibility with Python's % before it type-checks the channels (so a
        # str or None fails inside %): we check the types first, then divisibility.
        _check_conv2d_channel_type("in_channels", in_channels, group)
        _check_conv2d_channel_type("out_channels", out_channels, group)
        if in_channels % group or out_channels % group:
            raise ValueError(
                f"in_channels and out_channels must be divisible by group, got in_channels={_echo(in_channels)}, "
                f"out_channels={_echo(out_channels)} and group={_echo(group)}"
            )
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        if not isinstance(data_format, str) or data_format not in CONV2D_DATA_FORMATS:
            raise ValueError(f"data_format must be 'NCHW', got data_format={data_format!r}")
        if data_format == "NHWC":
            raise ValueError("data_format='NHWC' is not computed (MindSpore runs it on GPU only): use 'NCHW'")
        if not _is_int(padding) and not isinstance(padding, tuple):
            raise TypeError(
                f"padding must be an int or a tuple of 4 ints (top, bottom, left, right), got "
                f"padding={_describe(padding)}"
            )
        pads = _padding_values(padding)  # items before the length, as MindSpore
        _check_positive_items("kernel_size", kernel_size, kernel)
        _check_positive_items("stride", stride, strides)
        _check_positive_items("dilation", dilation, dilations)
        for name, given, values in (
            ("kernel_size", kernel_size, kernel),
            ("stride", stride, strides),
            ("dilation", dilation, dilations),
        ):
            if max(values) > _INT64_MAX:
                raise ValueError(
                    f"{name} must be at most 2**63 - 1 (MindSpore's 64-bit limit), got {name}={_echo(given)}"
                )
        weight_shape = (out_channels, in_channels // group) + kernel
        if allocate:  # a weight on PyTorch's meta device holds no memory
            _check_weight_memory(weight_shape, in_channels, out_channels, group, kernel_size)
        padding4 = pads + (0,) * (4 - len(pads))  # a wrong length is refused later, with pad_mode
        return _Normalised(kernel, strides, dilations, padding4[:4], (0, 0), weight_shape)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ derived geometry

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        """``(out_channels, in_channels // group, kH, kW)``, MindSpore's (and PyTorch's) layout."""
        return (self.out_channels, self.in_channels // self.group) + self.kernel_size

    @property
    def bias_shape(self) -> Tuple[int]:
        """``(out_channels,)``."""
        return (self.out_channels,)

    def axes(self, x_shape: Tuple[int, ...]) -> Tuple[ConvAxisPlan, ConvAxisPlan]:
        """The two axes' plans for an input of shape ``(N, C_in, H, W)`` (cached per spec and size)."""
        return _conv_axes(self, int(x_shape[2]), int(x_shape[3]))

    def output_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
        """``(N, C_out, H_out, W_out)`` for an input of shape ``(N, C_in, H, W)``."""
        height, width = self.axes(x_shape)
        return (x_shape[0], self.out_channels, height.output_length, width.output_length)

    def adjoint(self, x_shape: Tuple[int, ...]) -> Conv2dTransposeSpec:
        """The transposed convolution whose input gradient this convolution is, for inputs of ``x_shape``.

        Its input is this convolution's output and its output window this convolution's input
        (``C_in`` and ``C_out`` swapped, the same weight array): engines compute Conv2d's forward as
        that spec's input gradient and Conv2d's input gradient as its forward. Its 'pad' crops
        may be negative at the end (rows no output reads); it is never shown to a user.
        """
        return _conv_adjoint(self, int(x_shape[2]), int(x_shape[3]))

    def kernel_windows(self, x_shape: Tuple[int, ...]) -> Optional[Tuple[KernelWindow, KernelWindow]]:
        """What each axis really uses of the kernel and the input (None when no tap reads any input row)."""
        height, width = self.axes(x_shape)
        windows = (height.kernel_window(), width.kernel_window())
        return None if windows[0] is None or windows[1] is None else windows  # type: ignore[return-value]

    # ------------------------------------------------------------------ call-time checks

    def check_shapes(
        self,
        x_shape: Tuple[int, ...],
        weight_shape: Tuple[int, ...],
        bias_shape: Optional[Tuple[int, ...]] = None,
        itemsize: int = 4,
    ) -> Tuple[int, int, int, int]:
        """Check the shapes of a call's x, weight and bias against this spec; return the output shape.

        Per axis, like MindSpore: the padded input must be at least as long as the (undilated)
        kernel; past that, a dilated kernel longer than the padded input gives an empty axis
        when ``floor((padded - k_eff)/stride) + 1`` is 0, and is refused when it is negative.

        Raises:
            ValueError: wrong rank or channel count of x, a weight or bias of another shape, a
                kernel that does not fit the padded input, or an output larger than ``MEMORY_LIMIT``.
        """
        x_shape = _check_layer_shapes(self, x_shape, weight_shape, bias_shape, "(C_out, C_in // group, kH, kW)")
        for axis, plan in zip(("height", "width"), self.axes(x_shape)):
            self._check_fit(axis, plan, x_shape)
        out_shape = self.output_shape(x_shape)
        needed = math.prod(out_shape) * itemsize
        if needed > MEMORY_LIMIT:
            raise ValueError(
                f"the output would have shape {_echo(out_shape)} ({_gib(needed)}), more than the "
                f"{_gib(MEMORY_LIMIT)} one request may use on this machine: x of shape {x_shape}, "
                f"kernel_size={_echo(self.kernel_size)}, stride={_echo(self.stride)}, "
                f"dilation={_echo(self.dilation)}, pad_mode={self.pad_mode!r}, padding={_echo(self.padding)}"
            )
        return out_shape

    def _check_fit(self, axis: str, plan: ConvAxisPlan, x_shape: Tuple[int, ...]) -> None:
        if self.pad_mode == "same" or (plan.padded_length >= plan.kernel and plan.output_length >= 0):
            return  # 'same' always fits: ceil(length / stride) rows, 0 for an empty axis
        rows = "rows" if axis == "height" else "columns"
        if plan.padded_length < plan.kernel:
            problem = f"shorter than kernel_size={_echo(self.kernel_size)}"
        else:
            problem = (
                f"shorter than the dilated kernel (dilation*(kernel-1) + 1 = {_echo(plan.effective_kernel)} {rows} "
                f"with kernel_size={_echo(self.kernel_size)}, dilation={_echo(self.dilation)}) by more than the "
                f"stride={_echo(self.stride)}, which leaves no output {rows}"
            )
        raise ValueError(
            f"the kernel does not fit x of shape {x_shape}: its {axis} axis is {plan.length} {rows} long, "
            f"{_echo(plan.padded_length)} with pad_mode="
            f"{self.pad_mode!r} and padding={_echo(self.padding)}: {problem}"
        )


@functools.lru_cache(maxsize=4096)
def _conv_axes(spec: Conv2dSpec, height: int, width: int) -> Tuple[ConvAxisPlan, ConvAxisPlan]:
    top, bottom, left, right = spec.padding
    return (
        conv_axis_plan(spec.kernel_size[0], spec.stride[0], spec.dilation[0], spec.pad_mode, top, bottom, height),
        conv_axis_plan(spec.kernel_size[1], spec.stride[1], spec.dilation[1], spec.pad_mode, left, right, width),
    )


@functools.lru_cache(maxsize=4096)
def _conv_adjoint(spec: Conv2dSpec, height: int, width: int) -> Conv2dTransposeSpec:
    axes = tuple(plan.transposed() for plan in _conv_axes(spec, height, width))
    padding = (axes[0].crop_before, axes[0].crop_after, axes[1].crop_before, axes[1].crop_after)
    adjoint = Conv2dTransposeSpec(
        spec.out_channels,
        spec.in_channels,
        spec.kernel_size,
        spec.stride,
        "pad",
        padding,
        (0, 0),
        spec.dilation,
        spec.group,
        False,
    )
    return adjoint


def _check_layer_shapes(
    spec: Any,
    x_shape: Tuple[int, ...],
    weight_shape: Tuple[int, ...],
    bias_shape: Optional[Tuple[int, ...]],
    layout: str,
) -> Tuple[int, ...]:
    """Rank and channels of x, and the parameters' shapes, as every layer checks them; returns x's shape."""
    x_shape = tuple(x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got x of shape {x_shape}")
    if x_shape[1] != spec.in_channels:
        raise ValueError(f"x must have in_channels={spec.in_channels} channels (axis 1), got x of shape {x_shape}")
    if tuple(weight_shape) != spec.weight_shape:
        raise ValueError(
            f"weight must have shape {spec.weight_shape} {layout}, got weight of shape {tuple(weight_shape)}"
        )
    if bias_shape is not None and tuple(bias_shape) != spec.bias_shape:
        raise ValueError(f"bias must have shape {spec.bias_shape}, got bias of shape {tuple(bias_shape)}")
    return x_shape


def _conv2d_from_weight_shape(
    weight_shape: Tuple[int, ...], stride: Any, pad_mode: Any, padding: Any, dilation: Any, group: Any, has_bias: Any
) -> Conv2dSpec:
    if len(weight_shape) != 4 or min(weight_shape) < 1:
        raise ValueError(
            f"weight must be 4-D (C_out, C_in // group, kH, kW) with no empty axis, got weight of shape {weight_shape}"
        )
    _check_positive_int("group", group)
    if weight_shape[0] % group:
        raise ValueError(
            f"weight.shape[0] (C_out) must be divisible by group, got weight of shape {weight_shape} and group={group}"
        )
    return Conv2dSpec.from_args(
        weight_shape[1] * group, weight_shape[0], weight_shape[2:], stride, pad_mode, padding, dilation, group, has_bias
    )


@functools.lru_cache(maxsize=1024)
def _cached_conv2d_from_weight_shape(key: Any, *args: Any) -> Conv2dSpec:
    return _conv2d_from_weight_shape(*args)


def conv2d_spec_from_weight(
    weight_shape: Tuple[int, ...],
    stride: Any = 1,
    pad_mode: Any = "same",
    padding: Any = 0,
    dilation: Any = 1,
    group: Any = 1,
    has_bias: Any = False,
) -> Conv2dSpec:
    """The spec of a functional Conv2d call: the weight ``(C_out, C_in // group, kH, kW)`` gives channels and kernel.

    Cached like :func:`spec_from_weight` (the cache key keeps the argument types).

    Example:
        >>> conv2d_spec_from_weight((4, 1, 3, 3), stride=2, group=4).in_channels
        4
    """
    try:
        args = (tuple(int(size) for size in weight_shape), stride, pad_mode, padding, dilation, group, has_bias)
    except (TypeError, ValueError):
        raise TypeError(f"weight must be an array with a shape of ints, got weight of shape {weight_shape!r}") from None
    try:
        key = _typed(args)
        hash(key)
    except TypeError:
        return _conv2d_from_weight_shape(*args)
    return _cached_conv2d_from_weight_shape(key, *args)
