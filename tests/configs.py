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

nn.Conv2d has the same pair: :func:`draw_conv2d_config` (written against ``pick``),
:func:`conv2d_valid_cases` (hypothesis) and :func:`random_conv2d_case` (seeded);
:func:`adjoint_transpose_config` gives the Conv2dTranspose whose forward is a Conv2d call's input
gradient, where the shapes allow it.
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


# ---------------------------------------------------------------------------- nn.Conv2d


def conv2d_weight_shape(cfg):
    """(Cout, Cin / group, kH, kW) of a Conv2d constructor config."""
    k = cfg["kernel_size"]
    kernel = k if isinstance(k, tuple) else (k, k)
    return (cfg["out_channels"], cfg["in_channels"] // cfg["group"]) + kernel


def conv2d_output_shape(cfg, x_shape):
    """The Conv2d output shape by the oracle's own geometry (no library code)."""
    return reference.conv2d_output_shape(
        x_shape, conv2d_weight_shape(cfg), cfg["stride"], cfg["pad_mode"], cfg["padding"], cfg["dilation"]
    )


def _conv2d_length(pick: Pick, k, s, d, pads, high, empty):
    """An input length on which the kernel fits (MindSpore computes it) for 'valid'/'pad' padding ``pads``.

    The padded length must reach the dilated kernel; now and then (``empty``) it falls short of
    it by at most the stride while still reaching the undilated kernel: a valid axis of 0 rows.
    """
    k_eff = d * (k - 1) + 1
    fits = max(k_eff - pads, 0)
    if empty and pick(0, 9) == 0:
        short = fits - pick(1, s)  # floor((padded - k_eff) / s) + 1 == 0
        if short >= 0 and short + pads >= k:
            return short
    if empty and fits == 0 and pick(0, 11) == 0:
        return 0
    return pick(max(fits, 1), max(fits, 1, high))


def draw_conv2d_config(
    pick: Pick,
    max_size=6,
    max_batch=2,
    empty=True,
    max_channels=4,
    has_bias: Optional[bool] = None,
    pad_mode: Optional[str] = None,
) -> Tuple[dict, tuple]:
    """``(cfg, x_shape)`` of a valid nn.Conv2d call (the constructor kwargs of conv2d_seed1.npz).

    Every pad mode, int and tuple forms, asymmetric 'pad' padding (also wider than the kernel:
    rows of pure bias), kernels up to 7, strides up to 6 (also above the kernel), dilation up to
    4, plain, grouped and depthwise channels, bias or not. 'same' takes any size; 'valid' and
    'pad' sizes are drawn so that the kernel fits (so larger than ``max_size`` for a long dilated
    kernel). ``empty=True`` adds sizes and batches of 0 and axes of 0 output rows; ``empty=False``
    keeps every size, the batch and the output at one or more. ``has_bias`` and ``pad_mode``,
    when given, are fixed instead of drawn. Never rejects a draw.
    """
    cin, cout, group = draw_channels(pick, max_channels)
    kernel = _axis_values(pick, 1, 7)
    stride = _axis_values(pick, 1, 6)
    dilation = _axis_values(pick, 1, 4)
    mode = MODES[pick(0, 2)] if pad_mode is None else pad_mode
    if mode == "pad":
        if pick(0, 3) == 0:
            padding = pick(0, 4)
            pads = (padding,) * 4
        else:
            pads = tuple(pick(0, 4) for _ in range(4))
            padding = pads[0] if len(set(pads)) == 1 and _coin(pick) else pads
    else:
        pads = (0, 0, 0, 0)
        padding = (0, (0, 0, 0, 0))[pick(0, 1)]
    sizes = []
    for axis in range(2):
        if mode == "same":
            sizes.append(_size(pick, max_size, empty))
        else:
            axis_pads = pads[2 * axis] + pads[2 * axis + 1]
            sizes.append(_conv2d_length(pick, kernel[axis], stride[axis], dilation[axis], axis_pads, max_size, empty))
    n = pick(0, max_batch) if empty and pick(0, 7) == 0 else pick(1, max_batch)
    cfg = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=_pair_form(pick, *kernel),
        stride=_pair_form(pick, *stride),
        pad_mode=mode,
        padding=padding,
        dilation=_pair_form(pick, *dilation),
        group=group,
        has_bias=_coin(pick) if has_bias is None else has_bias,
    )
    return cfg, (n, cin, sizes[0], sizes[1])


@st.composite
def conv2d_valid_cases(draw, max_size=6, max_batch=2, empty=True):
    """Hypothesis strategy of nn.Conv2d ``(cfg, x_shape)`` (see draw_conv2d_config)."""
    return draw_conv2d_config(lambda low, high: draw(st.integers(low, high)), max_size, max_batch, empty)


@st.composite
def conv2d_arrays_for(draw, cfg, x_shape):
    """float32-representable x, weight, bias of a Conv2d config (as arrays_for)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    integers = draw(st.booleans())

    def values(shape):
        if integers:
            return rng.integers(-4, 5, shape).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    x, w = values(x_shape), values(conv2d_weight_shape(cfg))
    b = values((cfg["out_channels"],)) if cfg["has_bias"] else None
    return x, w, b, rng


def random_conv2d_case(seed: int, dtype=np.float32, **limits):
    """``(cfg, x, w, b)`` of seed ``seed`` for nn.Conv2d: no empty size, batch or output (as random_case)."""
    rng = np.random.default_rng(seed)
    limits = {"max_size": 9, "max_batch": 3, **limits}
    cfg, x_shape = draw_conv2d_config(lambda low, high: int(rng.integers(low, high + 1)), empty=False, **limits)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(conv2d_weight_shape(cfg)).astype(dtype)
    b = rng.standard_normal(cfg["out_channels"]).astype(dtype) if cfg["has_bias"] else None
    return cfg, x, w, b


def adjoint_transpose_config(cfg, x_shape):
    """The Conv2dTranspose config whose forward is this Conv2d's input gradient, or None.

    Same kernel, stride, dilation, group, pad_mode and padding, the channels swapped; in 'pad'
    mode output_padding r = (L + pt + pb - k_eff) % stride per axis restores the input length.
    None where the two are not adjoint on ``x_shape`` (MindSpore's table): in 'same' and 'valid'
    where the transposed output length differs from L; in 'pad' where r > 0 and some of the last
    r input rows is read (we require the bottom/right padding 0 then), or L - r < 1.
    """
    w_shape = conv2d_weight_shape(cfg)
    out_shape = conv2d_output_shape(cfg, x_shape)
    pads = cfg["padding"] if isinstance(cfg["padding"], tuple) else (cfg["padding"],) * 4
    ops = []
    for axis in range(2):
        k, s, d = w_shape[2 + axis], _pick_axis(cfg["stride"], axis), _pick_axis(cfg["dilation"], axis)
        length, before, after = x_shape[2 + axis], pads[2 * axis], pads[2 * axis + 1]
        r = (length + before + after - d * (k - 1) - 1) % s if cfg["pad_mode"] == "pad" else 0
        if r and (after > 0 or length - r < 1):
            return None
        ops.append(r)
    t_cfg = dict(
        cfg, in_channels=cfg["out_channels"], out_channels=cfg["in_channels"], output_padding=tuple(ops), has_bias=False
    )
    if output_shape(t_cfg, out_shape) != tuple(x_shape):
        return None
    return t_cfg


def _pick_axis(value, axis):
    return value[axis] if isinstance(value, tuple) else value
