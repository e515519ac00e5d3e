"""PyTorch engine: MindSpore's 2-D transposed convolution with torch ops, differentiable by autograd.

Layouts: x ``(N, Cin, H, W)``, weight ``(Cin, Cout // group, kH, kW)`` (PyTorch's own
``conv_transpose2d`` layout, so no transpose), output ``(N, Cout, H_out, W_out)``. Every size
comes from the spec's two :class:`~convtranspose.spec.AxisPlan` objects; nothing here parses
a MindSpore argument.

Per axis the plan asks for ``full[crop_before : full - crop_after]`` of the full transposed
convolution (``full = (n-1)*stride + k_eff`` rows; a negative ``crop_after`` appends that many
rows with no kernel term). ``F.conv_transpose2d(padding=p, output_padding=q)`` computes
``full[p : full - p + q]``, its ``q`` extra rows (past ``full``) having no kernel term either,
for any ``p >= 0`` and ``0 <= q < max(stride, dilation)``. So :func:`_torch_crop` lets the
kernel do as much of the crop as it can, and one ``F.pad`` with negative pads the rest:

    p = min(crop_before, crop_after + max(stride, dilation) - 1)     # >= 0 for the given stride
    q = max(p - crop_after, 0)
    window = kernel_output[crop_before - p : crop_before - p + window_length]

(with stride and dilation as the kernel needs them: 1 for an axis of one row or a one-tap
kernel, where they change nothing; ``p`` and ``q`` are then clamped to 0 and the reach).

Symmetric crops ('pad' with equal padding, 'same' with an even overlap, 'valid') need no
``F.pad``: the kernel writes the window itself. Then the bias is added (not by the
kernel, whose CPU path with a bias is slower), and ``output_padding`` exact-zero rows and
columns are appended with ``F.pad`` (no bias, and autograd gives them no gradient).

A request whose kernel stride or dilation is past ``KERNEL_STRIDE_LIMIT`` (64), or whose sizes
PyTorch's 32-bit shape check would get wrong (:func:`uses_kernel`), never reaches
``F.conv_transpose2d``: :func:`_forward_taps` adds one channel contraction per kernel tap into
the strided window rows it lands on, at the cost of the output and the multiply-adds (measured,
float32, 2x2 input, 4 channels, 4x4 kernel, 'same', forward and backward, one thread: stride 128
kernel 0.105 s, taps 0.059 s; stride 512 kernel 3.7 s, taps 1.26 s; stride 1024 kernel 27.9 s,
taps 4.7 s).

Gradients are autograd's, through those ops. PyTorch's backward of ``conv_transpose2d``
already computes dx as a strided convolution of the gradient and dweight as a correlation of x
with it (bit for bit what ``F.conv2d`` and the weight gradient of ``conv2d`` give); ``dbias``
sums the window only. Measured against it on the eight
benchmark cases of ``benchmarks/cases.py`` (one thread, CPU time), dx by ``F.conv2d`` with
dweight by the weight gradient of ``conv2d`` took 0.97-1.06x its time, dweight as a ``conv2d``
with batch and channels swapped 1.01-1.77x, and dweight tap by tap 1.12x (depthwise), so
there is no custom ``autograd.Function``: double backward, ``torch.compile(fullgraph=True)``,
``torch.export`` and the ONNX exporter see plain ATen ops.

dtypes: float32 and float64 compute in their own dtype. float16 computes as MindSpore does:
the convolution in float32, rounded once to float16, then the bias added by PyTorch's float16
add, which computes ``fp16(fp32(y16) + fp32(bias))`` (the sum of two float16 values is exact
in float32: the correctly rounded float16 sum). Each gradient is the float32 result rounded
once (autograd's backward of the casts). bfloat16 takes the same path with bfloat16 rounding.
On CUDA, PyTorch's TF32 setting for cuDNN convolutions (``torch.backends.cudnn.allow_tf32``,
on by default) applies to the float32 convolution: turn it off for float32 results within
MindSpore's tolerance.

NaN and inf: PyTorch's kernels multiply values by the zeros of cropped or padded positions, so a
non-finite x or weight can also make NaN (``0 * inf``) a few entries that the direct sum of the
products leaves finite (the weight gradient near the crop for a non-finite x; the output and dx
for a non-finite weight), as ``nn.ConvTranspose2d`` does. Every entry the direct sum makes
non-finite is non-finite here too.
"""

from __future__ import annotations

from typing import Optional, Tuple

try:
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - exercised by tests/test_packaging.py in a subprocess
    raise ImportError("the torch engine needs PyTorch: pip install 'convtranspose[torch]' (torch==2.13.0)") from exc

from ..spec import AxisPlan, Conv2dSpec, Conv2dTransposeSpec, tap_window

# Computed in float32 and rounded, as MindSpore computes float16.
_REDUCED = (torch.float16, torch.bfloat16)

# PyTorch's CPU kernels take stride, padding, output_padding, dilation and kernel size as 32-bit
# ints in their shape check, where ``2 * padding`` and ``dilation * (kernel - 1) + 1`` are also
# computed in 32 bits (only ``(n - 1) * stride`` is 64-bit): when that check's output length is
# not the true one, the forward (a length below 1) or the backward (a gradient of "the wrong
# size") raises a RuntimeError. Probed on torch 2.13 CPU (slow and oneDNN paths): this rule
# predicted the error in every one of 11,730 configurations.
_INT32 = 2**31

# Past this kernel stride or dilation, PyTorch's CPU kernels cost far more than the work: oneDNN's
# deconvolution allocates and runs in proportion to the stride (a stride of 16384 crashed it;
# 10,000 asked for more than 6 GiB on a 2x2 input), and the dilated paths materialise the dilated
# kernel. Such requests take the tap route (:func:`_forward_taps`), whose cost is the output plus
# the multiply-adds of the convolution.
KERNEL_STRIDE_LIMIT = 64


def _wraps_int32(n: int, kernel: int, stride: int, dilation: int, padding: int, extra: int) -> bool:
    """Whether PyTorch's 32-bit shape check gets one axis of the kernel's output length wrong."""

    def int32(value: int) -> int:
        return (value + _INT32) % (2 * _INT32) - _INT32

    checked = (
        (n - 1) * int32(stride)
        - int32(2 * int32(padding))
        + int32(int32(int32(dilation) * (int32(kernel) - 1)) + 1)
        + int32(extra)
    )
    return checked != (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1 + extra


def uses_kernel(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> bool:
    """Whether ``F.conv_transpose2d`` computes this request (else the tap route does).

    Not when PyTorch's 32-bit shape check would get a length wrong, nor when a kernel stride or
    dilation is past :data:`KERNEL_STRIDE_LIMIT`, where its cost no longer follows the output.
    """
    strides = spec.kernel_strides(x_shape)
    if max(strides + spec.kernel_dilations) > KERNEL_STRIDE_LIMIT:
        return False
    for plan, stride, n in zip(spec.axes, strides, x_shape[2:]):
        padding, extra, _ = _torch_crop(plan, stride)
        if _wraps_int32(n, plan.kernel, stride, plan.kernel_dilation, padding, extra):
            return False
    return True


def _torch_crop(plan: AxisPlan, stride: int) -> Tuple[int, int, int]:
    """``(padding, output_padding, offset)`` of one axis for ``F.conv_transpose2d``.

    ``stride`` is the one passed to the kernel (:meth:`AxisPlan.kernel_stride`). The window is
    the kernel's output from ``offset`` on (see the module docstring).
    """
    reach = max(stride, plan.kernel_dilation) - 1  # PyTorch allows output_padding up to this
    # Both clamps only act when a one-row axis passes stride 1 with a zero extension longer
    # than that reach: F.pad then appends the extension's rows.
    padding = max(min(plan.crop_before, plan.crop_after + reach), 0)
    return padding, min(max(padding - plan.crop_after, 0), reach), plan.crop_before - padding


def kernel_output_shape(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> Tuple[int, int, int, int]:
    """Shape of what ``F.conv_transpose2d`` writes before the crop that remains, for an input of ``x_shape``.

    The window itself when the crops are symmetric; up to the uncropped result when they are not
    (the front end checks its size against the memory limit).
    """
    sizes = []
    for plan, stride, n in zip(spec.axes, spec.kernel_strides(x_shape), x_shape[2:]):
        padding, extra, _ = _torch_crop(plan, stride)
        sizes.append(max(plan.full_length(n) - 2 * padding + extra, 0))
    return (x_shape[0], spec.out_channels, sizes[0], sizes[1])


def forward(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], spec: Conv2dTransposeSpec
) -> torch.Tensor:
    """Transposed convolution of ``x`` with MindSpore's crop, bias and output_padding.

    Args:
        x: ``(N, Cin, H, W)``, float16/bfloat16/float32/float64, already checked against
            ``spec`` (shapes, dtype and device).
        weight: ``(Cin, Cout // group, kH, kW)``, same dtype and device as ``x``.
        bias: ``(Cout,)`` or None, same dtype and device as ``x``.
        spec: the validated arguments.

    Returns:
        ``(N, Cout, H_out, W_out)`` in the dtype of ``x``, differentiable in x, weight and bias.

    Example:
        >>> import torch
        >>> from convtranspose.spec import Conv2dTransposeSpec
        >>> spec = Conv2dTransposeSpec.from_args(3, 8, 4, stride=2, pad_mode="pad", padding=1)
        >>> forward(torch.ones(2, 3, 5, 5), torch.ones(3, 8, 4, 4), None, spec).shape
        torch.Size([2, 8, 10, 10])
    """
    plan_h, plan_w = spec.axes
    height, width = x.shape[2], x.shape[3]
    win_h, win_w = plan_h.window_length(height), plan_w.window_length(width)
    reduced = x.dtype in _REDUCED
    x_work, w_work = (x.float(), weight.float()) if reduced else (x, weight)
    if height and width and win_h and win_w and not uses_kernel(spec, tuple(x.shape)):
        y = _forward_taps(x_work, w_work, spec)
    elif height and width and win_h and win_w:
        # A stride or dilation that changes nothing (one input row, a one-tap kernel) is passed
        # as 1: the result is the same, and a huge one would not fit PyTorch's 64-bit argument.
        strides = spec.kernel_strides(x.shape)
        (pad_h, extra_h, off_h), (pad_w, extra_w, off_w) = (
            _torch_crop(plan, stride) for plan, stride in zip(spec.axes, strides)
        )
        # The bias is not passed to the kernel: on the CPU, conv_transpose2d with a bias takes a
        # slower path (measured, one thread: depthwise 2.4 -> 12.7 ms, fcn_same 12.3 -> 18.2 ms).
        y = F.conv_transpose2d(
            x_work,
            w_work,
            None,
            stride=strides,
            padding=(pad_h, pad_w),
            output_padding=(extra_h, extra_w),
            groups=spec.group,
            dilation=spec.kernel_dilations,
        )
        if y.shape[2] != win_h or y.shape[3] != win_w:
            # One F.pad (negative: a crop) rather than a slice per axis, whose backward would
            # allocate and fill a gradient of the kernel's output once per axis.
            y = F.pad(y, (-off_w, off_w + win_w - y.shape[3], -off_h, off_h + win_h - y.shape[2]))
    else:
        # An empty input axis (PyTorch's kernel refuses it) or an empty window: no kernel
        # term reaches the window, only the bias. The empty slices keep x and weight in the
        # graph, so their gradients are zeros rather than None.
        y = x_work.new_zeros((x.shape[0], spec.out_channels, win_h, win_w)) + (x_work[:0].sum() + w_work[:0].sum())

    if reduced:
        y = y.to(x.dtype)
    if bias is not None:
        # PyTorch adds float16 (bfloat16) tensors in float32 and rounds once:
        # fp16(fp32(y16) + fp32(bias)), MindSpore's rounding, in one pass. Not in place: under
        # torch.func.vmap over the bias alone, y has no batch axis to add a batched bias into.
        y = y + bias[:, None, None]
    extra = (plan_h.output_padding, plan_w.output_padding)
    if extra[0] or extra[1]:
        return F.pad(y, (0, extra[1], 0, extra[0]))
    return y


def _forward_taps(x: torch.Tensor, weight: torch.Tensor, spec: Conv2dTransposeSpec) -> torch.Tensor:
    """The window ``(N, Cout, win_h, win_w)`` as a sum of one product per kernel tap.

    Tap ``(kh, kw)`` sends input rows ``in_rows`` to the strided window rows ``out_rows``
    (:func:`~convtranspose.spec.tap_window`, which reads the window alone: nothing of the
    uncropped length is built): one channel contraction of those input pixels with the tap's
    weights, added into that strided slice. The cost is the window plus the multiply-adds of the
    convolution, whatever the stride and dilation: the adds are in place, into one buffer (whose
    backward reads each tap's slice of the gradient); the buffer starts from the empty sums of x
    and the weight, so under ``torch.func.vmap`` it is batched as they are.
    """
    n, cin, height, width = x.shape
    group, cog = spec.group, weight.shape[1]
    plan_h, plan_w = spec.axes
    xg = x.reshape(n, group, cin // group, height, width)
    wg = weight.reshape(group, cin // group, cog, *spec.kernel_size)
    # The empty sums keep x and weight in the graph when no tap reaches the window.
    y = x.new_zeros((n, spec.out_channels, plan_h.window_length(height), plan_w.window_length(width)))
    y = y + (x[:0].sum() + weight[:0].sum())
    for kh in range(plan_h.kernel):
        rows = tap_window(plan_h, kh, height)
        for kw in range(plan_w.kernel):
            cols = tap_window(plan_w, kw, width)
            if rows is None or cols is None:
                continue
            (in_rows, out_rows), (in_cols, out_cols) = rows, cols
            part = torch.einsum("ngchw,gco->ngohw", xg[:, :, :, in_rows, in_cols], wg[:, :, :, kh, kw])
            part = part.reshape(n, spec.out_channels, *part.shape[3:])
            y[:, :, out_rows, out_cols] += part
    return y


# ---------------------------------------------------------------------------- nn.Conv2d


def conv2d_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], spec: Conv2dSpec
) -> torch.Tensor:
    """MindSpore's ``nn.Conv2d``: ``F.conv2d`` over the part of the padded input its kernel reads.

    Each axis's :class:`~convtranspose.spec.KernelWindow` says which kernel taps and input rows
    are read and how many zero rows pad them; the symmetric part of that padding goes to
    ``F.conv2d`` (``padding=``), the rest to one ``F.pad`` (PyTorch's own 'same' cannot pad
    asymmetrically, nor with a stride). Taps and rows that are never read are left out, so a
    huge dilation or padding costs what the output costs and stays inside PyTorch's 32-bit
    arguments. Gradients are autograd's (``conv2d``'s backward is the transposed convolution).

    Args:
        x: ``(N, C_in, H, W)``, already checked against ``spec``.
        weight: ``(C_out, C_in // group, kH, kW)``, same dtype and device as ``x``.
        bias: ``(C_out,)`` or None.
        spec: the validated arguments.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype; float16 and bfloat16 computed in float32 and
        rounded as MindSpore rounds: ``fp16(fp16(conv) + bias)``.
    """
    reduced = x.dtype in _REDUCED
    x_work, w_work = (x.float(), weight.float()) if reduced else (x, weight)
    out_shape = spec.output_shape(x.shape)
    windows = spec.kernel_windows(x.shape)
    fused_bias = bias is not None and not reduced
    if windows is None or x.numel() == 0 or 0 in out_shape:
        # No output entry reads an input value: only the bias. The empty slices keep x and
        # the weight in the graph (zero gradients rather than None).
        y = x_work.new_zeros(out_shape) + (x_work[:0].sum() + w_work[:0].sum())
        fused_bias = False
    else:
        height, width = windows
        x_work = x_work[:, :, height.rows, width.rows]
        w_work = w_work[:, :, height.taps, width.taps]
        pad_h, pad_w = min(height.pad_before, height.pad_after), min(width.pad_before, width.pad_after)
        extra = (width.pad_before - pad_w, width.pad_after - pad_w, height.pad_before - pad_h, height.pad_after - pad_h)
        if any(extra):
            x_work = F.pad(x_work, extra)
        y = F.conv2d(
            x_work,
            w_work,
            bias if fused_bias else None,
            stride=(height.stride, width.stride),
            padding=(pad_h, pad_w),
            dilation=(height.dilation, width.dilation),
            groups=spec.group,
        )
    if reduced:
        y = y.to(x.dtype)
    if bias is not None and not fused_bias:
        # float16: PyTorch adds two float16 tensors in float32 and rounds once, MindSpore's rounding
        y = y + bias[:, None, None]
    return y
