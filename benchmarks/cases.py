"""Named Conv2dTranspose shapes for ``bench.py``, and the per-axis window arithmetic they need.

A case is one MindSpore ``nn.Conv2dTranspose`` call: an NCHW input ``(n, cin, h, w)``, a layer
``cin -> cout`` with ``kernel``, ``stride``, ``pad_mode``, ``padding`` (top, bottom, left, right),
``output_padding``, ``dilation``, ``group``, a bias, and a dtype.

``CONV2D_CASES`` are MindSpore ``nn.Conv2d`` layers of real encoders (:class:`Conv2dCase`; 'same'
padding needs no window rule here: the tests' oracle's ``conv2d_axis`` gives it), timed beside them.

``CASES`` are the eight shapes every run times; ``EXTRA_CASES`` (``bench.py --extra``) reach the
corners the eight miss: strides 3 and 4, kernels shorter than the stride, asymmetric padding,
output_padding, odd sizes, rectangular kernels, float16 and float64.

The window rule (``docs/mindspore-behavior.md``) comes from the tests' oracle, ``tests/reference.py``,
which shares no code with the library; the peers in ``bench.py`` need its crops. The benchmark checks
every engine against that oracle before timing it, so a mistake in the rule would show as every
engine failing, not as a wrong table.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import ClassVar, NamedTuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import reference  # noqa: E402


class AxisWindow(NamedTuple):
    """Where MindSpore's output window sits on one axis of the full transposed convolution.

    Attributes:
        full: length of the uncropped transposed convolution, ``(n - 1) * stride + k_eff``.
        crop_before: rows dropped at the start (always >= 0).
        crop_after: rows dropped at the end; negative means that many zero rows are appended
            (they still receive the bias).
        output_padding: zero rows appended after the bias (they receive no bias).
    """

    full: int
    crop_before: int
    crop_after: int
    output_padding: int

    @property
    def window(self) -> int:
        """Rows of the window, before output_padding: ``full - crop_before - crop_after``."""
        return self.full - self.crop_before - self.crop_after

    @property
    def out(self) -> int:
        """Output length on this axis: window plus output_padding."""
        return self.window + self.output_padding


def axis_window(n, kernel, stride, dilation, pad_mode, pad_before, pad_after, output_padding):
    """Window of one spatial axis, by ``reference.axis_window`` (MindSpore's rule).

    Args:
        n: input length on this axis.
        kernel: kernel size on this axis.
        stride: stride on this axis.
        dilation: spacing of the kernel taps (1 means dense).
        pad_mode: 'same', 'valid' or 'pad'.
        pad_before: the 'pad' amount at the start (top or left); 0 in other modes.
        pad_after: the 'pad' amount at the end (bottom or right); 0 in other modes.
        output_padding: zero rows appended at the end, after the bias.

    Returns:
        AxisWindow.

    >>> axis_window(6, 5, 2, 1, 'valid', 0, 0, 0)   # the documented formula would say 12
    AxisWindow(full=15, crop_before=0, crop_after=0, output_padding=0)
    >>> axis_window(4, 1, 3, 1, 'same', 0, 0, 0).crop_after   # k_eff < stride: 2 zero rows appended
    -2
    """
    if pad_mode not in ("same", "valid", "pad"):
        raise ValueError(f"pad_mode must be 'same', 'valid' or 'pad'; got pad_mode={pad_mode!r}")
    full = reference.full_length(n, kernel, stride, dilation)
    before, window = reference.axis_window(n, kernel, stride, dilation, pad_mode, pad_before, pad_after)
    return AxisWindow(full, before, full - before - window, output_padding)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark shape. Ints given for 2-D arguments mean the same value on both axes."""

    kind: ClassVar[str] = "transpose"  # which layer: bench.py picks the oracle and the engines by it

    name: str
    n: int
    cin: int
    h: int
    w: int
    cout: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    pad_mode: str = "same"
    padding: int | tuple[int, int, int, int] = 0
    dilation: int | tuple[int, int] = 1
    group: int = 1
    output_padding: int | tuple[int, int] = 0
    dtype: str = "float32"
    note: str = ""

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """Padding as (top, bottom, left, right)."""
        return (self.padding,) * 4 if isinstance(self.padding, int) else tuple(self.padding)

    @property
    def x_shape(self):
        return (self.n, self.cin, self.h, self.w)

    @property
    def weight_shape(self):
        kh, kw = _pair(self.kernel)
        return (self.cin, self.cout // self.group, kh, kw)

    def windows(self) -> tuple[AxisWindow, AxisWindow]:
        """AxisWindow for height, then width."""
        kh, kw = _pair(self.kernel)
        sh, sw = _pair(self.stride)
        dh, dw = _pair(self.dilation)
        oph, opw = _pair(self.output_padding)
        top, bottom, left, right = self.pads
        return (
            axis_window(self.h, kh, sh, dh, self.pad_mode, top, bottom, oph),
            axis_window(self.w, kw, sw, dw, self.pad_mode, left, right, opw),
        )

    @property
    def y_shape(self):
        wh, ww = self.windows()
        return (self.n, self.cout, wh.out, ww.out)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass: N*H*W * Cin * (Cout/group) * kH*kW."""
        kh, kw = _pair(self.kernel)
        return self.n * self.h * self.w * self.cin * (self.cout // self.group) * kh * kw

    def gemm_dims(self) -> tuple[int, int, int, int]:
        """(group, M, K, Ncol) of the col2im product: (N*H*W, Cin/g) @ (Cin/g, Cout/g*kH*kW) per group."""
        kh, kw = _pair(self.kernel)
        return self.group, self.n * self.h * self.w, self.cin // self.group, self.cout // self.group * kh * kw

    def kwargs(self) -> dict:
        """Keyword arguments of ``convtranspose.conv2d_transpose`` (MindSpore names)."""
        return dict(
            stride=self.stride,
            pad_mode=self.pad_mode,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            group=self.group,
        )

    def describe(self) -> str:
        """One line: shapes and the arguments that differ from defaults."""
        kh, kw = _pair(self.kernel)
        parts = [
            f"x{self.x_shape}".replace(" ", ""),
            f"w{self.weight_shape}".replace(" ", ""),
            f"k{kh}" if kh == kw else f"k{kh}x{kw}",
        ]
        for label, value in (("s", self.stride), ("d", self.dilation)):
            a, b = _pair(value)
            parts.append(f"{label}{a}" if a == b else f"{label}{a}x{b}")
        pads = self.pads
        parts.append(
            self.pad_mode
            if self.pad_mode != "pad"
            else "pad" + (str(pads[0]) if len(set(pads)) == 1 else str(pads).replace(" ", ""))
        )
        if self.output_padding not in (0, (0, 0)):
            parts.append(f"op{_pair(self.output_padding)}".replace(" ", ""))
        parts.append(f"g{self.group}")
        if self.dtype != "float32":
            parts.append(self.dtype)
        return " ".join(parts) + f" -> y{self.y_shape}".replace(" ", "").replace("->", " -> ")


@dataclasses.dataclass(frozen=True)
class Conv2dCase:
    """One nn.Conv2d benchmark shape: x ``(n, cin, h, w)``, weight ``(cout, cin // group, kH, kW)``.

    Ints given for 2-D arguments mean the same value on both axes; padding is (top, bottom, left, right).
    """

    kind: ClassVar[str] = "conv2d"

    name: str
    n: int
    cin: int
    h: int
    w: int
    cout: int
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    pad_mode: str = "same"
    padding: int | tuple[int, int, int, int] = 0
    dilation: int | tuple[int, int] = 1
    group: int = 1
    dtype: str = "float32"
    note: str = ""

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """The 'pad' mode's padding as (top, bottom, left, right)."""
        return (self.padding,) * 4 if isinstance(self.padding, int) else tuple(self.padding)

    @property
    def x_shape(self):
        return (self.n, self.cin, self.h, self.w)

    @property
    def weight_shape(self):
        kh, kw = _pair(self.kernel)
        return (self.cout, self.cin // self.group, kh, kw)

    @property
    def y_shape(self):
        return reference.conv2d_output_shape(
            self.x_shape, self.weight_shape, self.stride, self.pad_mode, self.padding, self.dilation
        )

    def explicit_padding(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)) zero rows/columns that make a plain convolution give MindSpore's output.

        By the tests' oracle (``reference.conv2d_axis``): 'same' is TensorFlow's split, the odd row at the
        bottom/right; 'valid' pads nothing; 'pad' is the given padding.
        """
        kh, kw = _pair(self.kernel)
        (sh, sw), (dh, dw) = _pair(self.stride), _pair(self.dilation)
        top, bottom, left, right = self.pads
        pairs = []
        for n, k, s, d, before, after in ((self.h, kh, sh, dh, top, bottom), (self.w, kw, sw, dw, left, right)):
            first, out = reference.conv2d_axis(n, k, s, d, self.pad_mode, before, after)
            if self.pad_mode == "same":  # the rest of TensorFlow's total goes after
                after = max((out - 1) * s + d * (k - 1) + 1 - n, 0) - first
            pairs.append((first, after if self.pad_mode != "valid" else 0))
        return tuple(pairs)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass: N*H_out*W_out * Cout * (Cin/group) * kH*kW."""
        n, cout, ho, wo = self.y_shape
        kh, kw = _pair(self.kernel)
        return n * ho * wo * cout * (self.cin // self.group) * kh * kw

    def gemm_dims(self) -> tuple[int, int, int, int]:
        """(group, M, K, Ncol) of the im2col product: (N*H_out*W_out, Cin/g*kH*kW) @ (.., Cout/g) per group."""
        n, _, ho, wo = self.y_shape
        kh, kw = _pair(self.kernel)
        return self.group, n * ho * wo, self.cin // self.group * kh * kw, self.cout // self.group

    def kwargs(self) -> dict:
        """Keyword arguments of ``convtranspose.conv2d`` (MindSpore names)."""
        return dict(
            stride=self.stride, pad_mode=self.pad_mode, padding=self.padding, dilation=self.dilation, group=self.group
        )

    def describe(self) -> str:
        """One line: shapes and the arguments that differ from defaults."""
        kh, kw = _pair(self.kernel)
        parts = [
            "conv2d",
            f"x{self.x_shape}".replace(" ", ""),
            f"w{self.weight_shape}".replace(" ", ""),
            f"k{kh}" if kh == kw else f"k{kh}x{kw}",
        ]
        for label, value in (("s", self.stride), ("d", self.dilation)):
            a, b = _pair(value)
            parts.append(f"{label}{a}" if a == b else f"{label}{a}x{b}")
        parts.append(self.pad_mode if self.pad_mode != "pad" else "pad" + str(self.pads).replace(" ", ""))
        parts.append(f"g{self.group}")
        if self.dtype != "float32":
            parts.append(self.dtype)
        return " ".join(parts) + f" -> y{tuple(self.y_shape)}".replace(" ", "").replace("->", " -> ")


CASES = [
    Case("dcgan_mid", 64, 512, 4, 4, 256, 4, 2, "pad", 1, note="DCGAN generator, 4x4 -> 8x8"),
    Case("dcgan_last", 64, 64, 32, 32, 3, 4, 2, "pad", 1, note="DCGAN generator, to RGB"),
    Case("unet_up", 4, 256, 32, 32, 128, 2, 2, "valid", note="U-Net up-convolution"),
    Case("fcn_same", 2, 64, 56, 56, 64, 3, 2, "same", note="FCN-style x2 upsampling"),
    Case("depthwise", 8, 128, 28, 28, 128, 4, 2, "pad", 1, group=128, note="depthwise x2 upsampling"),
    Case("dilated", 4, 64, 32, 32, 64, 3, 1, "same", dilation=2, note="dilated, stride 1"),
    Case("sr_up", 1, 64, 128, 128, 3, 9, 4, "same", note="super-resolution x4, large kernel"),
    Case("tiny", 1, 16, 16, 16, 16, 3, 2, "pad", 1, note="small; also the peer self-check"),
]

EXTRA_CASES = [
    Case("s3_pad_asym", 2, 32, 15, 13, 24, 5, 3, "pad", (2, 1, 0, 3), note="stride 3, asymmetric pad"),
    Case("s4_k2_same", 2, 16, 11, 9, 8, 2, 4, "same", note="k_eff < stride: zero rows before the bias"),
    Case("s4_k3_valid", 2, 16, 9, 7, 8, 3, 4, "valid", note="k_eff < stride in 'valid'"),
    Case("s4_k8_pad", 2, 16, 10, 10, 8, 8, 4, "pad", 2, note="stride 4, kernel 8 (x4 upsampling)"),
    Case("s3_k1_same", 1, 8, 6, 5, 4, 1, 3, "same", note="1x1 kernel, stride 3"),
    Case("outpad_s3", 2, 16, 9, 11, 12, 3, 3, "pad", 1, output_padding=2, note="output_padding 2"),
    Case(
        "outpad_dil",
        2,
        8,
        10,
        7,
        8,
        3,
        1,
        "pad",
        (1, 2, 2, 1),
        dilation=3,
        output_padding=(2, 1),
        note="output_padding under dilation > stride",
    ),
    Case(
        "rect_kernel",
        3,
        12,
        17,
        10,
        6,
        (5, 2),
        (2, 4),
        "pad",
        (1, 2, 0, 1),
        dilation=(1, 2),
        group=3,
        note="rectangular everything, 3 groups",
    ),
    Case("odd_same_s3", 3, 10, 7, 9, 15, (4, 6), 3, "same", group=5, note="odd extra 'same' crop"),
    Case("big_pad", 1, 8, 12, 12, 8, 7, 2, "pad", (3, 5, 6, 0), note="pads larger than the stride"),
    Case("tiny_fp16", 1, 16, 16, 16, 16, 3, 2, "pad", 1, dtype="float16", note="tiny in float16"),
    Case("fcn_fp16", 2, 64, 56, 56, 64, 3, 2, "same", dtype="float16", note="fcn_same in float16"),
    Case("tiny_fp64", 1, 16, 16, 16, 16, 3, 2, "pad", 1, dtype="float64", note="tiny in float64"),
    Case("unet_fp64", 4, 256, 32, 32, 128, 2, 2, "valid", dtype="float64", note="unet_up in float64"),
]

# nn.Conv2d layers of real encoders, timed by default beside the transposed cases.
CONV2D_CASES = [
    Conv2dCase("c2_res_s1", 2, 64, 56, 56, 64, 3, 1, "same", note="ResNet stage 1, 3x3 stride 1"),
    Conv2dCase("c2_res_s2", 2, 128, 29, 29, 256, 3, 2, "same", note="3x3 stride 2 'same' on an odd input"),
    Conv2dCase("c2_stem", 2, 3, 224, 224, 64, 7, 2, "same", note="ResNet stem, 7x7 stride 2"),
    Conv2dCase("c2_dw", 4, 144, 56, 56, 144, 3, 1, "same", group=144, note="MobileNetV2 depthwise 3x3"),
    Conv2dCase("c2_1x1", 2, 256, 56, 56, 64, 1, 1, "same", note="ResNet bottleneck 1x1 reduce"),
    Conv2dCase("c2_dilated", 2, 128, 28, 28, 128, 3, 1, "same", dilation=2, note="DeepLab atrous 3x3, dilation 2"),
]
CONV2D_GEMM_BOUND = ("c2_res_s1", "c2_res_s2", "c2_stem", "c2_1x1", "c2_dilated")

ALL_CASES = {case.name: case for case in CASES + EXTRA_CASES + CONV2D_CASES}
