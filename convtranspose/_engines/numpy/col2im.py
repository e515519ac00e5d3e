"""The column forward routes, ``col2im`` and ``col2im_nhwc``, and their working memory.

- ``col2im``: one product per image gives every (output channel, tap) contribution of every
  input pixel, ``cols[n, g, (co, kh, kw), (i, j)] = sum_ci w[g*cig+ci, co, kh, kw] x[n, g*cig+ci, i, j]``;
  input row ``i`` of tap ``kh`` lands on window row ``i*stride + kh*dilation - crop_before``.
  The slabs of the taps that share a stride phase are summed in a contiguous buffer (shifted
  slices, ``Phase.overlap``), which is then written once into the phase's strided rows; a
  kernel no longer than the stride needs no sum at all. Moves ``Cout*K`` values per input
  pixel: best when ``Cin > Cout``.
- ``col2im_nhwc``: the same in channels-last order, so every add runs along ``cog``
  contiguous values; for small images with many channels, where the NCHW rows are short.

Memory: ``col2im`` splits an image larger than the budget into blocks of output channels
(whole groups, or part of one group); the unit it cannot split is one output channel of one
image, ``K*H*W`` columns plus the largest phase sum. ``col2im_nhwc`` is not split: the
planner leaves it for ``col2im`` when one image exceeds the budget.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Tuple

import numpy as np

from ...spec import Conv2dTransposeSpec
from .arrays import by_group, view
from .chunks import spans
from .phases import phase_pairs, tap_windows
from .workspace import reserve, workspace


class _PhaseSum(NamedTuple):
    """One window phase of the col2im route: where it goes and which tap slabs it sums."""

    rows: slice
    cols: slice
    shape: Tuple[int, int]
    # (kh, kw, (input_rows, input_cols), (phase_rows, phase_cols)) of every tap reaching it
    taps: Tuple[Tuple[int, int, tuple, tuple], ...]
    # True when a single tap fills the whole phase: a plain copy, no sum
    single: bool


@functools.lru_cache(maxsize=1024)
def _phase_sums(spec: Conv2dTransposeSpec, h: int, w: int) -> Tuple[_PhaseSum, ...]:
    """The col2im route's per-phase work, from the phases' reading taps (cached per shape)."""
    result = []
    for phase_h, phase_w in phase_pairs(spec, h, w):
        taps = tuple(
            (th, tw, (rows[0], cols[0]), (rows[1], cols[1]))
            for th, shift_h in phase_h.taps
            for tw, shift_w in phase_w.taps
            for rows, cols in [(phase_h.overlap(shift_h, h), phase_w.overlap(shift_w, w))]
            if rows is not None and cols is not None  # reading taps overlap their phase
        )
        whole = (slice(0, phase_h.count), slice(0, phase_w.count))
        single = len(taps) == 1 and taps[0][3] == whole
        result.append(_PhaseSum(phase_h.rows, phase_w.rows, (phase_h.count, phase_w.count), taps, single))
    return tuple(result)


@functools.lru_cache(maxsize=1024)
def _largest_phase_sum(spec: Conv2dTransposeSpec, h: int, w: int) -> int:
    """Values per image and output channel of col2im's largest phase sum (0: none)."""
    return max((math.prod(phase.shape) for phase in _phase_sums(spec, h, w) if not phase.single), default=0)


def _col2im_channel_elements(spec: Conv2dTransposeSpec, h: int, w: int) -> int:
    """Per image and output channel: the columns and the largest phase sum."""
    return spec.kernel_size[0] * spec.kernel_size[1] * h * w + _largest_phase_sum(spec, h, w)


def col2im_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of ``col2im`` on ``x_shape`` in one piece."""
    n, _, h, w = x_shape
    return n * spec.out_channels * _col2im_channel_elements(spec, h, w) * itemsize


def col2im_nhwc_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of ``col2im_nhwc`` on ``x_shape`` (it holds them in one piece)."""
    n, cin, h, w = x_shape
    _, _, win_h, win_w = spec.window_shape(x_shape)
    k = spec.kernel_size[0] * spec.kernel_size[1]
    return n * (cin * h * w + spec.out_channels * (k * h * w + win_h * win_w)) * itemsize


def forward_col2im(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
    """Write the convolution of ``x`` into ``window`` by columns, split to fit ``budget`` bytes.

    Args:
        window: ``(N, Cout, win_H, win_W)`` zeros; the rows some tap reaches are written.
        x: ``(N, Cin, H, W)`` in the compute dtype.
        weight: ``(Cin, Cout // group, kH, kW)`` in the compute dtype.
        spec: the validated arguments.
        group: the group count.
        budget: working bytes this call may hold (see the module docstring for the unit).
    """
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    per_channel = n * _col2im_channel_elements(spec, h, w) * x.dtype.itemsize
    if group * cog * per_channel <= budget:
        _col2im(window, x, weight, spec, group)
        return
    # blocks of whole groups, or of the output channels of one group: contiguous channels
    # of x, weight and window either way
    if cog * per_channel <= budget:
        step = budget // (cog * per_channel)
        blocks = [(first, stop, 0, cog) for first, stop in spans(group, step)]
    else:
        step = max(1, budget // per_channel)
        blocks = [(g, g + 1, first, stop) for g in range(group) for first, stop in spans(cog, step)]
    window_g = by_group(window, group)
    for g_first, g_stop, c_first, c_stop in blocks:
        block = window_g[:, g_first:g_stop, c_first:c_stop]
        _col2im(
            view(block, (n, (g_stop - g_first) * (c_stop - c_first)) + window.shape[2:]),
            x[:, g_first * cig : g_stop * cig],
            weight[g_first * cig : g_stop * cig, c_first:c_stop],
            spec,
            g_stop - g_first,
        )


def _col2im(window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int) -> None:
    n, cin, h, w = x.shape
    cout = window.shape[1]
    weight_t = weight.reshape(group, cin // group, -1).transpose(0, 2, 1)  # (G, cog*K, cig)
    cols = np.matmul(
        weight_t,
        x.reshape(n, group, cin // group, h * w),  # (n, G, cog*K, h*w)
        out=workspace("cols", (n, group, weight_t.shape[1], h * w), x.dtype),
    )
    taps = cols.reshape(n, cout, *spec.kernel_size, h, w)
    reserve("acc", n * cout * _largest_phase_sum(spec, h, w) * x.dtype.itemsize)
    # per stride phase: sum its taps' slabs in a contiguous buffer, then write its rows once
    for phase in _phase_sums(spec, h, w):
        if phase.single:  # a kernel no longer than the stride: a plain copy
            th, tw, source, _ = phase.taps[0]
            window[:, :, phase.rows, phase.cols] = taps[(slice(None), slice(None), th, tw) + source]
            continue
        acc = workspace("acc", (n, cout) + phase.shape, x.dtype, zero=True)
        for th, tw, source, target in phase.taps:
            acc[(Ellipsis,) + target] += taps[(slice(None), slice(None), th, tw) + source]
        window[:, :, phase.rows, phase.cols] = acc


def forward_col2im_nhwc(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
    """:func:`forward_col2im` in channels-last order, in one piece (``budget`` is not used)."""
    # not split: the planner leaves this route for col2im when one image exceeds the budget
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    k_h, k_w = spec.kernel_size
    pixels = workspace("pixels", (group, n, h, w, cig), x.dtype)
    pixels[...] = by_group(x, group).transpose(1, 0, 3, 4, 2)
    pixels = pixels.reshape(group, n * h * w, cig)
    kernel = weight.reshape(group, cig, cog, k_h, k_w).transpose(0, 1, 3, 4, 2).reshape(group, cig, -1)
    cols = np.matmul(pixels, kernel, out=workspace("cols", (group, n * h * w, kernel.shape[2]), x.dtype))
    cols = cols.reshape(group, n, h, w, k_h, k_w, cog)
    acc = workspace("acc", (n,) + window.shape[2:] + (group, cog), window.dtype, zero=True)  # channels-last window
    for kh, kw, (rows, columns), (out_rows, out_cols) in tap_windows(spec, h, w):
        acc[:, out_rows, out_cols] += cols[:, :, rows, columns, kh, kw].transpose(1, 2, 3, 0, 4)
    window[...] = acc.reshape(acc.shape[:3] + (group * cog,)).transpose(0, 3, 1, 2)
