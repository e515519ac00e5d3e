"""The ``phases`` routes, forward and backward, and their working memory.

- forward: window rows ``phase + m*stride`` all see the same taps, so each stride phase is
  a dense stride-1 correlation (:func:`~.phases.axis_phases`). The input rows that the
  phase's height taps read are copied once, stacked over its width taps (im2col along the
  width); each height tap is then a row offset into that stack, so the phase is ``T_h``
  products ``(cog, T_w*cig) @ (T_w*cig, rows*cols)`` per image, summed and written once into
  the window. A height tap's product covers only the phase rows whose input row exists, and
  height taps whose rows lie far apart (a dilation larger than the image) get stacks of
  their own, so nothing is padded by ``dilation * kernel``. Moves about ``Cin*K/T_h`` values
  per input pixel: best when ``Cin <= Cout``.
- backward (its adjoint): per phase, with ``S`` the stacked input rows (zero where a tap
  reads outside the input) and ``G_p`` the phase's gradient rows, ``dW_p = S @ G_p^T`` and
  ``dS = W_p^T @ G_p``, whose rows that exist in the input are added into dx.

Memory: both split an image larger than the budget into bands of window rows per stride
phase. The unit neither can split is one window row of one phase: about
``G*cols*(T_w*cig*T_h + 2*cog)`` values forward, ``cols*(Cout + 2*T*Cin)`` backward.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np

from ...spec import Conv2dTransposeSpec
from .arrays import by_group
from .chunks import largest, spans
from .col2im import forward_col2im
from .exact import exact_dweight, none_finite
from .phases import Read, band_reads, clusters, phase_pairs, reading_phases, width_reads
from .workspace import reserve, workspace


def _phases_forward_slots(spec: Conv2dTransposeSpec, h: int, w: int, band: int) -> Tuple[int, int]:
    """Values per image and input/output channel of the phases route's stack and sums.

    For bands of ``band`` window rows per phase: the largest stack (the input rows of the
    height taps, once per width tap) and the largest band (``acc`` and ``part`` each), over
    the phase pairs; the slots are reused from pair to pair, so each needs its largest.
    """
    stack = rows = 0
    for phase_h, phase_w in phase_pairs(spec, h, w):
        length = min(band, phase_h.count)
        stack_rows = min(length + phase_h.spread, len(phase_h.taps) * length)
        stack = max(stack, len(phase_w.taps) * stack_rows * phase_w.count)
        rows = max(rows, length * phase_w.count)
    return stack, rows


def _phases_forward_elements(spec: Conv2dTransposeSpec, h: int, w: int, band: int) -> int:
    """Values per image the phases route holds for bands of ``band`` rows."""
    stack, rows = _phases_forward_slots(spec, h, w, band)
    return spec.in_channels * stack + 2 * spec.out_channels * rows


def _phases_backward_slots(spec: Conv2dTransposeSpec, h: int, w: int, band: int) -> Tuple[int, int]:
    """Values per image and channel of the phases backward's gradient rows and stacks.

    For bands of ``band`` rows per phase: the largest band (the gradient rows, per output
    channel) and the largest band times its taps (the stack and its gradient, per input
    channel), over the phase pairs.
    """
    rows = tapped = 0
    for phase_h, phase_w in phase_pairs(spec, h, w):
        length = min(band, phase_h.count) * phase_w.count
        rows = max(rows, length)
        tapped = max(tapped, len(phase_h.taps) * len(phase_w.taps) * length)
    return rows, tapped


def _phases_backward_elements(spec: Conv2dTransposeSpec, h: int, w: int, band: int) -> int:
    """Values per image the phases backward holds for bands of ``band`` rows."""
    rows, tapped = _phases_backward_slots(spec, h, w, band)
    return spec.out_channels * rows + 2 * spec.in_channels * tapped


def _phase_band(
    elements: Callable[[Conv2dTransposeSpec, int, int, int], int],
    spec: Conv2dTransposeSpec,
    x_shape: Tuple[int, ...],
    itemsize: int,
    budget: int,
) -> int:
    """The most window rows per phase whose working memory fits ``budget`` (one at least)."""
    n, _, h, w = x_shape
    most = max((phase.count for phase in reading_phases(spec.axes[0], h)), default=1)
    return largest(lambda band: n * itemsize * elements(spec, h, w, band) <= budget, most)


def phases_forward_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of the forward on ``x_shape`` in one piece."""
    n, _, h, _ = x_shape
    return n * _phases_forward_elements(spec, h, x_shape[3], max(1, spec.axes[0].window_length(h))) * itemsize


def phases_backward_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of the backward on ``x_shape`` in one piece."""
    n, _, h, _ = x_shape
    return n * _phases_backward_elements(spec, h, x_shape[3], max(1, spec.axes[0].window_length(h))) * itemsize


def forward_phases(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
    """Write the convolution of ``x`` into ``window`` per stride phase, in bands that fit ``budget``.

    Args as :func:`~.col2im.forward_col2im`.
    """
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    itemsize = x.dtype.itemsize
    x_g, window_g = by_group(x, group), by_group(window, group)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    # one band length for every phase pair, so that the slots' largest sizes fit together
    band = _phase_band(_phases_forward_elements, spec, x.shape, itemsize, budget)
    stack, sums = _phases_forward_slots(spec, h, w, band)
    reserve("stacked", n * cin * stack * itemsize)
    reserve("acc", n * group * cog * sums * itemsize)
    part_reserved = False
    zero_filled = False
    for phase_h, phase_w in phase_pairs(spec, h, w):
        reads_w = width_reads(phase_w, w)
        cols = phase_w.count
        # columns a width tap reads outside the input stay zero in the stack
        partial = [(index, dst) for index, (_, _, dst) in enumerate(reads_w) if dst != slice(0, cols)]
        zero_filled = zero_filled or bool(partial)
        kernels = {
            tap: np.stack([weight_g[:, :, :, tap, tw] for tw, _, _ in reads_w], axis=1)
            .reshape(group, -1, cog)
            .transpose(0, 2, 1)
            for tap, _ in phase_h.taps
        }  # (G, cog, Tw*cig)
        for first, stop in spans(phase_h.count, band):
            reads = band_reads(phase_h, first, stop, h)
            if not reads:
                continue
            rows = stop - first
            acc = workspace("acc", (n, group, cog, rows * cols), x.dtype)
            filled = False
            for low, high, members in clusters(reads):
                stacked = workspace("stacked", (n, group, len(reads_w), cig, high - low, cols), x.dtype)
                for index, dst in partial:
                    stacked[:, :, index, :, :, : dst.start] = 0
                    stacked[:, :, index, :, :, dst.stop :] = 0
                for index, (_, src, dst) in enumerate(reads_w):
                    stacked[:, :, index, :, :, dst] = x_g[:, :, :, low:high, src]
                flat = stacked.reshape(n, group, -1, (high - low) * cols)
                for read in members:
                    operand = flat[..., (read.first - low) * cols : (read.stop - low) * cols]
                    length = (read.stop - read.first) * cols
                    if not filled and length == rows * cols:
                        np.matmul(kernels[read.tap], operand, out=acc)
                    else:
                        if not filled:
                            acc.fill(0)
                        if not part_reserved:  # only where a tap adds to another or reaches part of the band
                            reserve("part", n * group * cog * sums * itemsize)
                            part_reserved = True
                        part = np.matmul(
                            kernels[read.tap], operand, out=workspace("part", (n, group, cog, length), x.dtype)
                        )
                        acc[..., read.offset * cols : read.offset * cols + length] += part
                    filled = True
            window_g[:, :, :, phase_h.band(first, stop), phase_w.rows] = acc.reshape(n, group, cog, rows, cols)
    if zero_filled and none_finite(weight, window):
        # a stored zero times an inf weight: recompute without stored zeros
        window[...] = 0
        forward_col2im(window, x, weight, spec, group, budget)


def backward_phases(
    grad_window: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    spec: Conv2dTransposeSpec,
    group: int,
    budget: int,
    dx: Optional[np.ndarray],
    need_dweight: bool,
) -> Optional[np.ndarray]:
    """Add the input gradient into ``dx`` and return the weight gradient, per stride phase.

    Args:
        grad_window: ``(N, Cout, win_H, win_W)``, the upstream gradient on the window.
        x: ``(N, Cin, H, W)`` in the compute dtype; only its shape and dtype are read
            without ``need_dweight`` (a zero-strided array will do).
        weight: ``(Cin, Cout // group, kH, kW)`` in the compute dtype.
        spec: the validated arguments.
        group: the group count.
        budget: working bytes this call may hold (see the module docstring for the unit).
        dx: ``(N, Cin, H, W)`` zeros to add the input gradient into, or None to skip it.
        need_dweight: compute the weight gradient (otherwise None is returned).

    Returns:
        The weight gradient ``(Cin, Cout // group, kH, kW)`` of these images, or None.
    """
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    itemsize = x.dtype.itemsize
    grad_g = by_group(grad_window, group)
    x_g = by_group(x, group) if need_dweight else None
    dx_g = by_group(dx, group) if dx is not None else None
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    dweight = np.zeros(weight_g.shape, dtype=x.dtype) if need_dweight else None
    # one band length for every phase pair, so that the slots' largest sizes fit together
    band = _phase_band(_phases_backward_elements, spec, x.shape, itemsize, budget)
    rows_most, tapped = _phases_backward_slots(spec, h, w, band)
    reserve("grad", n * group * cog * rows_most * itemsize)
    if need_dweight:
        reserve("stacked", n * cin * tapped * itemsize)
    if dx is not None:
        reserve("dstacked", n * cin * tapped * itemsize)
    zero_filled = False
    for phase_h, phase_w in phase_pairs(spec, h, w):
        reads_w = width_reads(phase_w, w)
        cols = phase_w.count
        for first, stop in spans(phase_h.count, band):
            rows = stop - first
            taps = [(read, tw, src, dst) for read in band_reads(phase_h, first, stop, h) for tw, src, dst in reads_w]
            if not taps:
                continue
            partial = any(
                read.offset or read.stop - read.first != rows or dst != slice(0, cols) for read, _, _, dst in taps
            )
            zero_filled = zero_filled or partial
            pixels = n * rows * cols
            grad = workspace("grad", (group, cog, n, rows, cols), x.dtype)
            grad[...] = grad_g[:, :, :, phase_h.band(first, stop), phase_w.rows].transpose(1, 2, 0, 3, 4)
            grad = grad.reshape(group, cog, pixels)
            if dweight is not None and x_g is not None:
                _add_phase_dweight(dweight, x_g, grad, taps, partial, (n, rows, cols))
            if dx_g is not None:
                _add_phase_dx(dx_g, weight_g, grad, taps, (n, rows, cols))
    if dweight is None:
        return None
    dweight = dweight.reshape(weight.shape)
    if zero_filled and none_finite(grad_window, dweight):
        exact_dweight(dweight, grad_window, x, spec, group)
    return dweight


def _add_phase_dweight(
    dweight: np.ndarray,
    x_g: np.ndarray,
    grad: np.ndarray,
    taps: List[Tuple[Read, int, slice, slice]],
    partial: bool,
    band_shape: Tuple[int, int, int],
) -> None:
    """``dW_p = S @ G_p^T`` of one band, added into ``dweight`` ``(G, cig, cog, kH, kW)``.

    ``grad`` is ``G_p``, ``(G, cog, n*rows*cols)``; ``S`` stacks the input rows each tap
    reads (zeros where it reads outside the input: ``partial``).
    """
    group, cig, cog = dweight.shape[:3]
    n, rows, cols = band_shape
    stacked = workspace("stacked", (group, len(taps), cig, n, rows, cols), grad.dtype, zero=partial)
    for index, (read, _, src, dst) in enumerate(taps):
        target = stacked[:, index, :, :, read.offset : read.offset + read.stop - read.first, dst]
        target[...] = x_g[:, :, :, read.first : read.stop, src].transpose(1, 2, 0, 3, 4)
    sub_dweight = np.matmul(stacked.reshape(group, -1, n * rows * cols), grad.transpose(0, 2, 1))
    sub_dweight = sub_dweight.reshape(group, len(taps), cig, cog)
    for index, (read, tw, _, _) in enumerate(taps):
        dweight[:, :, :, read.tap, tw] += sub_dweight[:, index]


def _add_phase_dx(
    dx_g: np.ndarray,
    weight_g: np.ndarray,
    grad: np.ndarray,
    taps: List[Tuple[Read, int, slice, slice]],
    band_shape: Tuple[int, int, int],
) -> None:
    """``dS = W_p^T @ G_p`` of one band, its rows that exist in the input added into ``dx_g``."""
    group, cig, cog = weight_g.shape[:3]
    n, rows, cols = band_shape
    kernel = np.stack([weight_g[:, :, :, read.tap, tw] for read, tw, _, _ in taps], axis=1)
    dstacked = np.matmul(
        kernel.reshape(group, -1, cog),
        grad,
        out=workspace("dstacked", (group, len(taps) * cig, n * rows * cols), grad.dtype),
    )
    dstacked = dstacked.reshape(group, len(taps), cig, n, rows, cols)
    for index, (read, _, src, dst) in enumerate(taps):
        source = dstacked[:, index, :, :, read.offset : read.offset + read.stop - read.first, dst]
        dx_g[:, :, :, read.first : read.stop, src] += source.transpose(2, 0, 1, 3, 4)
