"""Random valid Conv2dTranspose configurations: the one generator every test draws them from.

:func:`draw_config` is written against ``pick(low, high)``, a function that returns an int in
``[low, high]``, so that one piece of code serves both kinds of test:

- :func:`valid_cases`, a hypothesis strategy (hypothesis picks, so it shrinks a failure to a small
  configuration): the property tests, ``make fuzz``;
- :func:`random_case`, seeded by an int (NumPy's generator picks): parametrized tests that want the
  same cases on every run, and the live-MindSpore parity test.

Configurations cover every pad mode, int and tuple forms, asymmetric padding, output_padding up to
``max(stride, dilation) - 1``, kernels up to 7, strides up to 6 (also above the kernel), dilation up
to 4, plain, grouped and depthwise channels, bias or not; with ``empty=True`` also sizes and batches
of 0 and 'pad' crops that keep no rows. Shapes come from the oracle's own geometry
(``tests/reference.py``): this module imports nothing from ``convtranspose``.
"""

from typing import Callable, Optional, Tuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import reference

MODES = ("same", "valid", "pad")
Pick = Callable[[int, int], int]


def _coin(pick: Pick) -> bool:
    return bool(pick(0, 1))


def _pair_form(pick: Pick, first, second):
    """``first`` as an int when both axes agree and a coin says so, else the 2-tuple."""
    if first == second and _coin(pick):
        return first
    return (first, second)


def _axis_values(pick: Pick, low, high):
    """Two per-axis values in [low, high], equal half of the time (so the int form appears)."""
    first = pick(low, high)
    second = first if _coin(pick) else pick(low, high)
    return first, second


def _size(pick: Pick, high, empty):
    """A spatial size: 0 now and then when ``empty`` (only the bias reaches such an output), else 1..high."""
    if empty and pick(0, 11) == 0:
        return 0
    return pick(1, max(1, high))


def draw_channels(pick: Pick, max_channels=4):
    """(in_channels, out_channels, group): plain, grouped or depthwise (with a channel multiplier or not)."""
    kind = pick(0, 2)
    if kind == 0:  # plain
        return pick(1, max_channels), pick(1, max_channels), 1
    if kind == 1:  # grouped
        group = pick(2, 3)
        per_group = max(1, max_channels // 2)
        return group * pick(1, per_group), group * pick(1, per_group), group
    group = pick(1, max_channels)  # depthwise
    return group, group * pick(1, 2), group


def weight_shape(cfg):
    """(Cin, Cout / group, kH, kW) of a constructor config."""
    k = cfg["kernel_size"]
    kernel = k if isinstance(k, tuple) else (k, k)
    return (cfg["in_channels"], cfg["out_channels"] // cfg["group"]) + kernel


def output_shape(cfg, x_shape):
    """The output shape by the oracle's own geometry (no library code)."""
    *_, (rows, cols) = reference._geometry(
        x_shape, weight_shape(cfg), cfg["stride"], cfg["pad_mode"], cfg["padding"], cfg["dilation"]
    )
    op = cfg["output_padding"]
    op_h, op_w = op if isinstance(op, tuple) else (op, op)
    return (x_shape[0], cfg["out_channels"], rows + op_h, cols + op_w)


def draw_config(
    pick: Pick,
    loop_budget: Optional[int] = None,
    max_size=6,
    max_batch=2,
    empty=True,
    max_channels=4,
    has_bias: Optional[bool] = None,
    pad_mode: Optional[str] = None,
    max_kernel=7,
    max_stride=6,
    max_dilation=4,
) -> Optional[Tuple[dict, tuple]]:
    """``(cfg, x_shape)`` of a valid call (the constructor kwargs of the golden files), or None.

    None means the draw is rejected (an empty 'pad' axis whose kernel is shorter than the stride);
    draw again. ``has_bias`` and ``pad_mode``, when given, are fixed instead of drawn; ``max_kernel``,
    ``max_stride`` and ``max_dilation`` bound the per-axis values.
    ``loop_budget`` bounds ``pixels * Cin * Cout/group * kH * kW`` (keeps the oracle and float64
    sums cheap); ``empty=False`` keeps every size, the batch and the window at one or more. The
    window of a 'pad' crop keeps at least 0 rows, and output_padding is nonzero only on an axis
    whose window is not empty (MindSpore: uninitialised memory there).
    """
    cin, cout, group = draw_channels(pick, max_channels)
    kernel = _axis_values(pick, 1, max_kernel)
    stride = _axis_values(pick, 1, max_stride)
    dilation = _axis_values(pick, 1, max_dilation)
    mode = MODES[pick(0, 2)] if pad_mode is None else pad_mode
    pixels = max_size * max_size
    if loop_budget is not None:
        pixels = max(1, loop_budget // (cin * (cout // group) * kernel[0] * kernel[1]))
    h = _size(pick, min(max_size, pixels), empty)
    w = _size(pick, min(max_size, pixels // max(h, 1)), empty)
    if empty and pick(0, 7) == 0:
        n = pick(0, max_batch)
    else:
        n = pick(1, max_batch)
    padding, output_padding = 0, 0
    if mode == "pad":
        fulls = [reference.full_length(size, k, s, d) for size, k, s, d in zip((h, w), kernel, stride, dilation)]
        if min(fulls) < 0:
            return None  # only an empty axis with a kernel shorter than the stride
        keep = 0 if empty else 1  # rows the window keeps at least
        if pick(0, 3) == 0:  # one int for all four sides
            p = pick(0, max(min(fulls) - keep, 0) // 2)
            pads = (p, p, p, p)
        else:
            pads = []
            for full in fulls:
                # mostly keep a row; now and then (when empty) crop everything: an empty but valid output
                crop = full if empty and pick(0, 9) == 0 else pick(0, max(full - 1, 0))
                before = pick(0, crop)
                pads += [before, crop - before]
            pads = tuple(pads)
        windows = (fulls[0] - pads[0] - pads[1], fulls[1] - pads[2] - pads[3])
        padding = pads[0] if len(set(pads)) == 1 and _coin(pick) else pads
        ops = tuple(pick(0, max(s, d) - 1) if window > 0 else 0 for s, d, window in zip(stride, dilation, windows))
        output_padding = _pair_form(pick, *ops)
    else:
        padding = (0, (0, 0, 0, 0))[pick(0, 1)]
        output_padding = (0, (0, 0))[pick(0, 1)]
    cfg = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=_pair_form(pick, *kernel),
        stride=_pair_form(pick, *stride),
        pad_mode=mode,
        padding=padding,
        output_padding=output_padding,
        dilation=_pair_form(pick, *dilation),
        group=group,
        has_bias=_coin(pick) if has_bias is None else has_bias,
    )
    x_shape = (n, cin, h, w)
    if not empty and min(output_shape(cfg, x_shape)) < 1:
        return None
    return cfg, x_shape


@st.composite
def valid_cases(draw, loop_budget=1200, max_size=6, max_batch=2):
    """Hypothesis strategy of ``(cfg, x_shape)`` (see draw_config; sizes and batches of 0 included)."""
    case = draw_config(lambda low, high: draw(st.integers(low, high)), loop_budget, max_size, max_batch)
    assume(case is not None)
    return case


@st.composite
def arrays_for(draw, cfg, x_shape):
    """float32-representable x, weight, bias: standard normal, or small integers (exact sums)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):

        def values(shape):
            return rng.standard_normal(shape).astype(np.float32)
    else:

        def values(shape):
            return rng.integers(-4, 5, shape).astype(np.float32)

    x, w = values(x_shape), values(weight_shape(cfg))
    b = values((cfg["out_channels"],)) if cfg["has_bias"] else None
    return x, w, b, rng


def random_config(rng: np.random.Generator, **limits) -> Tuple[dict, tuple]:
    """``(cfg, x_shape)`` drawn by a NumPy generator, with no empty size, batch or window."""
    while True:
        case = draw_config(lambda low, high: int(rng.integers(low, high + 1)), empty=False, **limits)
        if case is not None:
            return case


def random_case(seed: int, dtype=np.float32, **limits):
    """``(cfg, x, w, b)`` of seed ``seed``: standard-normal arrays of ``dtype``; b is None without a bias.

    ``limits`` are draw_config's; unless given, sizes up to 9, batch up to 3, strides up to 4 and
    dilation up to 3 (the jax engine's program grows with the stride phases, stride_h * stride_w).
    """
    rng = np.random.default_rng(seed)
    defaults = {"max_size": 9, "max_batch": 3, "max_stride": 4, "max_dilation": 3}
    cfg, x_shape = random_config(rng, **{**defaults, **limits})
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(weight_shape(cfg)).astype(dtype)
    b = rng.standard_normal(cfg["out_channels"]).astype(dtype) if cfg["has_bias"] else None
    return cfg, x, w, b
