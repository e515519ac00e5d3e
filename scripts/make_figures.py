"""Draw every figure of docs/semantics.md into docs/figures/*.png (`make figures`).

Nothing here places a row by hand: each figure is read off outputs of the library itself
(``convtranspose.conv2d_transpose`` and ``convtranspose.conv2d``, the NumPy engine) on one-hot
inputs, and the script checks what it reads (no two output rows with the same sources, cropped
windows that really are windows of the full result, one padding for every output row) before
drawing.

The trick: put a 1 in input row ``i`` (everything else 0) and give tap ``t`` of a one-column
kernel the value ``t + 1``. Output row ``r`` then holds ``t + 1`` exactly when tap ``t``
carries input row ``i`` to row ``r`` (Conv2dTranspose), or when output row ``r`` reads input
row ``i`` through tap ``t`` (Conv2d), and 0 when nothing links them (float64: exact).

Usage:
    python scripts/make_figures.py                 # all figures into docs/figures/
    python scripts/make_figures.py --out DIR pad_modes groups

Needs matplotlib (``pip install -e '.[demo]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import convtranspose as ct

ROOT = Path(__file__).resolve().parents[1]
TAP_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]
GREY = "#D9D9D9"
BIAS_ONLY = "#FFF2B3"
DPI = 110


# ------------------------------------------------------------------ computing with the library


def tap_matrix(kernel, stride, n, *, dilation=1, pad_mode="valid", padding=(0, 0)):
    """``M[i, r]`` = the tap that carries input row ``i`` to output row ``r``, or -1.

    One spatial axis (the height) of ``conv2d_transpose``; the width is 1 with a 1-wide kernel.
    ``padding`` is (top, bottom), used with pad_mode='pad'.
    """
    weight = np.arange(1, kernel + 1, dtype=np.float64).reshape(1, 1, kernel, 1)
    pad = (padding[0], padding[1], 0, 0) if pad_mode == "pad" else 0
    rows = []
    for i in range(n):
        x = np.zeros((1, 1, n, 1))
        x[0, 0, i, 0] = 1.0
        y = ct.conv2d_transpose(x, weight, stride=(stride, 1), pad_mode=pad_mode, padding=pad, dilation=(dilation, 1))
        rows.append(y[0, 0, :, 0])
    values = np.array(rows)
    taps = np.rint(values).astype(int) - 1
    if not np.array_equal(values, taps + 1.0):  # a row reached twice by one input would sum taps
        raise AssertionError("an output row holds a sum of taps: the one-hot reading is ambiguous")
    return taps


def full_matrix(kernel, stride, n, dilation=1):
    """The uncropped transposed convolution: 'pad' with no padding keeps every row."""
    return tap_matrix(kernel, stride, n, dilation=dilation, pad_mode="pad", padding=(0, 0))


def locate_window(window, full):
    """Where each row of a pad mode's output sits in the full result, from their sources.

    Returns ``positions``: full-row index of each output row, or None for a row no input
    reaches. Rows with sources are matched by their column of taps (unique in the full
    result); the rest must then line up with a contiguous window.
    """
    positions = []
    for r in range(window.shape[1]):
        column = window[:, r]
        if np.all(column < 0):
            positions.append(None)
            continue
        hits = [c for c in range(full.shape[1]) if np.array_equal(full[:, c], column)]
        if len(hits) != 1:
            raise AssertionError(f"output row {r} matches {len(hits)} rows of the full result")
        positions.append(hits[0])
    known = [(r, c) for r, c in enumerate(positions) if c is not None]
    offset = known[0][1] - known[0][0]
    if any(c - r != offset for r, c in known):
        raise AssertionError("the output is not a contiguous window of the full result")
    return [r + offset for r in range(window.shape[1])], offset


def conv_reads(kernel, stride, n, *, dilation=1, pad_mode="same", padding=(0, 0)):
    """``R[r, i]`` = the tap through which ``conv2d``'s output row ``r`` reads input row ``i``, or -1.

    One spatial axis (the height) of ``conv2d``; ``padding`` is (top, bottom), used with pad_mode='pad'.
    """
    weight = np.arange(1, kernel + 1, dtype=np.float64).reshape(1, 1, kernel, 1)
    pad = (padding[0], padding[1], 0, 0) if pad_mode == "pad" else 0
    columns = []
    for i in range(n):
        x = np.zeros((1, 1, n, 1))
        x[0, 0, i, 0] = 1.0
        y = ct.conv2d(x, weight, stride=(stride, 1), pad_mode=pad_mode, padding=pad, dilation=(dilation, 1))
        columns.append(y[0, 0, :, 0])
    values = np.array(columns).T
    taps = np.rint(values).astype(int) - 1
    if not np.array_equal(values, taps + 1.0):
        raise AssertionError("an output row reads one input row through two taps: the reading is ambiguous")
    return taps


def conv_padding(reads, kernel, stride, n, dilation=1):
    """The zero rows ``(before, after)`` that ``conv2d`` put around the input, from what it read.

    Output row ``r`` reads padded row ``r*stride + t*dilation``, i.e. input row
    ``r*stride + t*dilation - before``: every tap found in ``reads`` must give the same ``before``,
    and every tap that lands inside the input must be found there. ``after`` counts the zero rows
    the last output row reads past the end of the input.
    """
    before = {r * stride + t * dilation - i for (r, i), t in np.ndenumerate(reads) if t >= 0}
    if len(before) != 1:
        raise AssertionError(f"the output rows disagree on the padding before the input: {sorted(before)}")
    (before,) = before
    for r in range(reads.shape[0]):
        for t in range(kernel):
            i = r * stride + t * dilation - before
            if 0 <= i < n and reads[r, i] != t:
                raise AssertionError(f"output row {r} does not read input row {i} through tap {t}")
    k_eff = dilation * (kernel - 1) + 1
    after = (reads.shape[0] - 1) * stride + k_eff - n - before
    return before, after


# ------------------------------------------------------------------ drawing helpers


def _plt():
    try:
        import matplotlib
    except ImportError:
        sys.exit("matplotlib is not installed: pip install -e '.[demo]'")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "figure.dpi": DPI})
    return plt


def _save(fig, out, name):
    path = Path(out) / f"{name}.png"
    # No "Software" entry: the file then changes only when the drawing changes.
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def _cell(ax, x, y, color, text="", *, hatch=None, text_color="white", edge="white", size=9):
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=color, edgecolor=edge, lw=1.5, hatch=hatch))
    if text:
        ax.text(x, y, text, ha="center", va="center", color=text_color, fontsize=size)


def _grid_axes(ax, n_cols, n_rows):
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_aspect("equal")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)


def draw_taps(ax, taps, *, first_label="output row", window=None):
    """Input rows down, output rows across; a cell per (input, output) pair that a tap links."""
    n, length = taps.shape
    _grid_axes(ax, length, n + 1)
    for i in range(n):
        for r in range(length):
            t = taps[i, r]
            if t >= 0:
                _cell(ax, r, i, TAP_COLORS[t % len(TAP_COLORS)], f"w[{t}]")
            else:
                _cell(ax, r, i, "#F4F4F4")
    counts = (taps >= 0).sum(axis=0)
    for r in range(length):  # a summary row: how many taps add up in each output row
        _cell(ax, r, n, "white", str(counts[r]), text_color="black", edge="#BBBBBB")
    ax.set_yticks(list(range(n)) + [n])
    ax.set_yticklabels([f"x row {i}" for i in range(n)] + ["taps summed"])
    ax.set_xticks(range(length))
    ax.set_xticklabels([str(r) for r in range(length)])
    ax.set_xlabel(first_label)


# ------------------------------------------------------------------ the figures


def fig_scatter(plt, out):
    kernel, stride, n = 4, 2, 4
    taps = full_matrix(kernel, stride, n)
    fig, ax = plt.subplots(figsize=(8.2, 3.2))
    draw_taps(ax, taps, first_label="row of the full (uncropped) result")
    ax.set_title(
        f"Input row i reaches rows i*stride + t*dilation through tap w[t]\n"
        f"kernel {kernel}, stride {stride}, dilation 1, H = {n}: "
        f"full length (H-1)*stride + k_eff = {taps.shape[1]}",
        loc="left",
    )
    return _save(fig, out, "scatter")


def fig_dilation(plt, out):
    kernel, stride, n = 3, 2, 4
    fig, axes = plt.subplots(2, 1, figsize=(8.2, 5.8))
    length = full_matrix(kernel, stride, n, dilation=2).shape[1]
    for ax, dilation in zip(axes, (1, 2)):
        taps = full_matrix(kernel, stride, n, dilation=dilation)
        draw_taps(ax, taps, first_label="row of the full result")
        ax.set_xlim(-0.5, length - 0.5)
        k_eff = dilation * (kernel - 1) + 1
        ax.set_title(
            f"dilation {dilation}: taps {dilation} row{'s' if dilation > 1 else ''} apart, "
            f"k_eff = {dilation}*({kernel}-1)+1 = {k_eff}, full length {taps.shape[1]}",
            loc="left",
        )
    fig.suptitle(
        f"Dilation spreads the taps (kernel {kernel}, stride {stride}, H = {n})", x=0.02, ha="left", fontsize=12
    )
    fig.tight_layout()
    return _save(fig, out, "dilation")


def fig_pad_modes(plt, out):
    kernel, stride, n = 5, 2, 3
    full = full_matrix(kernel, stride, n)
    length = full.shape[1]
    modes = [
        ("'valid'", dict(pad_mode="valid"), f"H*s + max(k_eff - s, 0) = {n * stride + kernel - stride}"),
        ("'same'", dict(pad_mode="same"), f"H*s = {n * stride}; odd extra crop at the bottom"),
        (
            "'pad', top 2, bottom 1",
            dict(pad_mode="pad", padding=(2, 1)),
            f"(H-1)*s + k_eff - top - bottom = {length - 3}",
        ),
    ]
    fig, ax = plt.subplots(figsize=(8.6, 3.4))
    n_rows = len(modes) + 1
    _grid_axes(ax, length, n_rows)
    for c in range(length):  # top strip: the full result, labelled by the taps that reach each row
        sources = "\n".join(f"x{i}*w{full[i, c]}" for i in range(n) if full[i, c] >= 0)
        _cell(ax, c, 0, "#6C6C6C", str(c), size=10)
        ax.text(c, -0.6, sources, ha="center", va="bottom", fontsize=7.5, color="#444444")
    for row, (_, kwargs, rule) in enumerate(modes, start=1):
        taps = tap_matrix(kernel, stride, n, **kwargs)
        positions, offset = locate_window(taps, full)
        for c in range(length):
            if c in positions:
                _cell(ax, c, row, TAP_COLORS[row - 1], f"y{positions.index(c)}")
            else:
                _cell(ax, c, row, GREY, hatch="///", edge="white")
        cut_top, cut_bottom = offset, length - (offset + len(positions))
        ax.text(
            length - 0.3,
            row,
            f"  crop {cut_top} top, {cut_bottom} bottom -> {len(positions)} rows\n  = {rule}",
            va="center",
            ha="left",
            fontsize=8.5,
        )
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(["full result"] + [m[0] for m in modes])
    ax.set_xticks([])
    ax.set_ylim(n_rows - 0.5, -1.9)
    ax.set_title(
        f"What each pad_mode keeps of the full result (kernel {kernel}, stride {stride}, H = {n})\n"
        f"above each full row: the input rows and taps summed into it; grey hatched: cropped",
        loc="left",
        pad=4,
    )
    return _save(fig, out, "pad_modes")


def fig_output_padding(plt, out):
    n, kernel, stride, pad, op, bias = 3, 3, 2, 1, 1, 0.5
    x = np.ones((1, 1, n, n))
    w = np.ones((1, 1, kernel, kernel))
    b = np.array([bias])
    ours = ct.conv2d_transpose(x, w, b, stride=stride, pad_mode="pad", padding=pad, output_padding=op)[0, 0]
    # PyTorch's output_padding rows are rows of the full result: crop `pad` at the top/left
    # and only `pad - op` at the bottom/right, then add the bias everywhere.
    torch_like = ct.conv2d_transpose(x, w, b, stride=stride, pad_mode="pad", padding=(pad, pad - op, pad, pad - op))[
        0, 0
    ]
    try:  # where PyTorch is installed, check that claim against PyTorch itself
        import torch

        ref = torch.nn.functional.conv_transpose2d(
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=pad, output_padding=op
        )[0, 0].numpy()
        if not np.allclose(ref, torch_like):
            raise AssertionError("PyTorch's output_padding rows are not what this figure says")
    except ImportError:
        pass
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 4.4))
    vmax = max(ours.max(), torch_like.max())
    for ax, data, title in [
        (axes[0], ours, "convtranspose / MindSpore\nlast row and column: exact 0, no bias"),
        (axes[1], torch_like, "nn.ConvTranspose2d, same arguments\nlast row and column: computed + bias"),
    ]:
        ax.imshow(data, cmap="Blues", vmin=-0.6, vmax=vmax)
        size = data.shape[0]
        for i in range(size):
            for j in range(size):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:g}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if data[i, j] > 0.6 * vmax else "black",
                )
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, size - 1.5), size, 1, fill=False, edgecolor="#C44E52", lw=2.5))
        ax.add_patch(Rectangle((size - 1.5, -0.5), 1, size, fill=False, edgecolor="#C44E52", lw=2.5))
        ax.set_title(title)
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
    fig.suptitle(
        f"output_padding={op} (x = ones {n}x{n}, weight = ones {kernel}x{kernel}, bias {bias}, "
        f"stride {stride}, pad_mode='pad', padding={pad})",
        fontsize=10.5,
    )
    fig.tight_layout()
    return _save(fig, out, "output_padding")


def connectivity(cin, cout, group):
    """``C[ci, co]`` = j where weight[ci, j] links input channel ci to output channel co, else -1."""
    cog = cout // group
    weight = np.zeros((cin, cog, 1, 1))
    for ci in range(cin):
        weight[ci, :, 0, 0] = np.arange(1, cog + 1)
    result = np.full((cin, cout), -1)
    for ci in range(cin):
        x = np.zeros((1, cin, 1, 1))
        x[0, ci] = 1.0
        y = ct.conv2d_transpose(x, weight, group=group)[0, :, 0, 0]
        result[ci] = np.rint(y).astype(int) - 1
    return result


def fig_groups(plt, out):
    cases = [(4, 6, 1), (4, 6, 2), (4, 4, 4)]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [6, 6, 4]})
    for ax, (cin, cout, group) in zip(axes, cases):
        links = connectivity(cin, cout, group)
        _grid_axes(ax, cout, cin)
        cig = cin // group
        for ci in range(cin):
            for co in range(cout):
                j = links[ci, co]
                if j >= 0:
                    _cell(ax, co, ci, TAP_COLORS[ci // cig], f"w[{ci},{j}]", size=8)
                else:
                    _cell(ax, co, ci, "#F4F4F4")
        ax.set_xticks(range(cout))
        ax.set_yticks(range(cin))
        ax.set_yticklabels([f"in {c}" for c in range(cin)])
        ax.set_xlabel("output channel")
        ax.xaxis.set_label_position("top")
        ax.xaxis.tick_top()
        kind = " (depthwise)" if group == cin == cout else ""
        ax.set_title(f"group={group}{kind}: weight {(cin, cout // group)}", y=-0.16)
    fig.suptitle(
        "Which weight entry links each input channel to each output channel (one colour per group)", fontsize=11
    )
    fig.tight_layout()
    return _save(fig, out, "groups")


def fig_short_kernel(plt, out):
    kernel, stride, n, bias = 2, 3, 3, 0.5
    full = full_matrix(kernel, stride, n)
    taps = tap_matrix(kernel, stride, n, pad_mode="same")
    if not np.array_equal(taps, tap_matrix(kernel, stride, n, pad_mode="valid")):
        raise AssertionError("'same' and 'valid' were expected to agree when kernel <= stride")
    positions, offset = locate_window(taps, full)
    values = ct.conv2d_transpose(
        np.ones((1, 1, n, 1)), np.ones((1, 1, kernel, 1)), np.array([bias]), stride=(stride, 1), pad_mode="same"
    )[0, 0, :, 0]
    length = taps.shape[1]
    fig, ax = plt.subplots(figsize=(8.2, 3.6))
    draw_taps(ax, taps, first_label="output row ('same' and 'valid' give the same here)")
    ax.set_ylim(n + 1.5, -0.5)
    for r in range(length):
        empty = not (taps[:, r] >= 0).any()
        _cell(ax, r, n + 1, BIAS_ONLY if empty else "#DDE8F5", f"{values[r]:g}", text_color="black", edge="#BBBBBB")
        if positions[r] >= full.shape[1]:
            ax.annotate(
                "appended:\nbias only",
                (r, n + 1.5),
                (r, n + 2.6),
                ha="center",
                va="top",
                fontsize=8,
                arrowprops=dict(arrowstyle="-", color="#888888"),
                annotation_clip=False,
            )
    ax.set_yticks(list(range(n + 2)))
    ax.set_yticklabels([f"x row {i}" for i in range(n)] + ["taps summed", f"y (x=1, w=1, bias {bias})"])
    ax.axvline(full.shape[1] - 0.5, color="#C44E52", lw=2, ls="--")
    ax.text(
        full.shape[1] - 0.6,
        -0.65,
        f"end of the full result ({full.shape[1]} rows)",
        ha="right",
        va="bottom",
        color="#C44E52",
        fontsize=8.5,
    )
    ax.set_title(
        f"Kernel {kernel} < stride {stride} (H = {n}): rows that no tap reaches (yellow) hold only "
        f"the bias;\nthe window H*stride = {length} is one row longer than the full result",
        loc="left",
        pad=22,
    )
    return _save(fig, out, "short_kernel")


def _torch_conv_rows(n, kernel, stride, padding):
    """What ``torch.nn.functional.conv2d`` computes on one axis (None where PyTorch is not installed)."""
    try:
        import torch
    except ImportError:
        return None
    x = torch.arange(1.0, n + 1, dtype=torch.float64).reshape(1, 1, n, 1)
    w = torch.arange(1.0, kernel + 1, dtype=torch.float64).reshape(1, 1, kernel, 1)
    return torch.nn.functional.conv2d(x, w, stride=(stride, 1), padding=(padding, 0))[0, 0, :, 0].numpy()


def _draw_conv_panel(ax, reads, pads, n, kernel, stride, columns):
    """Input rows (with their zero padding ``pads`` = (top, bottom)) across, one line per output row."""
    first, last = columns
    _grid_axes(ax, last - first + 1, reads.shape[0] + 1)
    ax.set_xlim(first - 0.5, last + 0.5)
    for p in range(-pads[0], n + pads[1]):
        if 0 <= p < n:
            _cell(ax, p, 0, "#6C6C6C", f"x{p}")
        else:
            _cell(ax, p, 0, GREY, "0", hatch="///", text_color="#444444")
    for r in range(reads.shape[0]):
        for t in range(kernel):
            p = r * stride + t - pads[0]
            inside = 0 <= p < n
            color = TAP_COLORS[t % len(TAP_COLORS)]
            _cell(
                ax,
                p,
                r + 1,
                color if inside else GREY,
                f"w[{t}]",
                hatch=None if inside else "///",
                text_color="white" if inside else color,
            )
    ax.set_yticks(range(reads.shape[0] + 1))
    ax.set_yticklabels(["input"] + [f"y{r}" for r in range(reads.shape[0])])
    ax.set_xticks([])


def _same_panel(kernel, stride, n):
    reads = conv_reads(kernel, stride, n, pad_mode="same")
    before, after = conv_padding(reads, kernel, stride, n)
    out = reads.shape[0]
    if out != -(-n // stride):
        raise AssertionError(f"'same' on {n} rows gave {out} rows, not ceil({n}/{stride})")
    rule = (
        f"total padding (out-1)*s + k_eff - H\n= {out - 1}*{stride} + {kernel} - {n} = {before + after}: "
        f"top {before}, bottom {after}\nout = ceil({n}/{stride}) = {out} rows"
    )
    return f"Conv2d(pad_mode='same', stride={stride}), H = {n}", reads, (before, after), n, rule


def _torch_panel(kernel, stride, n, padding):
    """PyTorch's nn.Conv2d(padding=p): MindSpore's 'pad' with (p, p), checked against torch where installed."""
    reads = conv_reads(kernel, stride, n, pad_mode="pad", padding=(padding, padding))
    before, _ = conv_padding(reads, kernel, stride, n)
    if before != padding:
        raise AssertionError(f"'pad' with top {padding} read as top {before}")
    ours = ct.conv2d(
        np.arange(1.0, n + 1).reshape(1, 1, n, 1),
        np.arange(1.0, kernel + 1).reshape(1, 1, kernel, 1),
        stride=(stride, 1),
        pad_mode="pad",
        padding=(padding, padding, 0, 0),
    )[0, 0, :, 0]
    torch_rows = _torch_conv_rows(n, kernel, stride, padding)
    if torch_rows is not None and not np.array_equal(torch_rows, ours):
        raise AssertionError(f"nn.Conv2d(padding={padding}) is not 'pad' with ({padding}, {padding})")
    rule = (
        f"padding='same' refuses stride {stride}; padding={padding}\npads {padding} at both ends, "
        f"whatever H is: {reads.shape[0]} rows too,\nbut each window starts one row earlier\n"
        "(and its bottom zero is never read)"
    )
    return f"PyTorch nn.Conv2d(stride={stride}, padding={padding}), H = {n}", reads, (padding, padding), n, rule


def fig_conv2d_same(plt, out):
    kernel, stride = 3, 2
    panels = [_same_panel(kernel, stride, 7), _same_panel(kernel, stride, 6), _torch_panel(kernel, stride, 6, 1)]
    columns = (min(-pads[0] for _, _, pads, _, _ in panels), max(n + pads[1] - 1 for _, _, pads, n, _ in panels))
    heights = [reads.shape[0] + 1 for _, reads, _, _, _ in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9.4, 0.42 * sum(heights) + 1.5), gridspec_kw={"height_ratios": heights}
    )
    for ax, (title, reads, pads, n, rule) in zip(axes, panels):
        _draw_conv_panel(ax, reads, pads, n, kernel, stride, columns)
        ax.set_title(title, loc="left", fontsize=10)
        ax.text(columns[1] + 0.8, reads.shape[0] / 2, rule, va="center", ha="left", fontsize=9)
    fig.suptitle(
        f"Conv2d 'same' at stride {stride}, kernel {kernel}: the padding depends on the input size, and an odd\n"
        f"total puts the extra zero row at the bottom (TensorFlow's rule). Hatched: zero padding.",
        x=0.02,
        ha="left",
        fontsize=10.5,
    )
    fig.tight_layout()
    return _save(fig, out, "conv2d_same")


def _draw_matrix(ax, matrix, row_name, col_name):
    """``matrix[r, c]`` = the tap linking output row r and input row c (-1: none), as a grid of cells."""
    _grid_axes(ax, matrix.shape[1], matrix.shape[0])
    for (r, c), t in np.ndenumerate(matrix):
        if t >= 0:
            _cell(ax, c, r, TAP_COLORS[t % len(TAP_COLORS)], f"w[{t}]")
        else:
            _cell(ax, c, r, "#F4F4F4")
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_xticklabels([f"{col_name}{c}" for c in range(matrix.shape[1])])
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_yticklabels([f"{row_name}{r}" for r in range(matrix.shape[0])])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(f"input ({col_name})")
    ax.set_ylabel(f"output ({row_name})")


def fig_adjoint(plt, out):
    kernel, stride, n = 3, 2, 8
    reads = conv_reads(kernel, stride, n, pad_mode="same")  # Conv2d: n rows -> ceil(n/stride)
    # Conv2dTranspose back to n rows; tap_matrix is indexed [its input row, its output row].
    spread = tap_matrix(kernel, stride, reads.shape[0], pad_mode="same").T
    if not np.array_equal(spread, reads.T):
        raise AssertionError("Conv2dTranspose's matrix is not Conv2d's transposed for this case")
    before, after = conv_padding(reads, kernel, stride, n)
    m = reads.shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 5.6), gridspec_kw={"width_ratios": [n, m]})
    _draw_matrix(axes[0], reads, "y", "x")
    axes[0].set_title(
        f"Conv2d(pad_mode='same', stride={stride}), kernel {kernel}:\n"
        f"{n} rows -> {m} (zero rows: top {before}, bottom {after})",
        y=-0.32,
        fontsize=10,
    )
    _draw_matrix(axes[1], spread, "x", "y")
    axes[1].set_title(
        f"Conv2dTranspose(pad_mode='same',\nstride={stride}), same weight: {m} rows -> {n}",
        y=-0.16,
        fontsize=10,
    )
    fig.suptitle(
        "One weight, two layers: Conv2dTranspose's matrix (right) is Conv2d's (left), transposed.\n"
        "So <conv2d(x), g> = <x, conv2d_transpose(g)>, and each layer's input gradient is the other's forward.",
        x=0.02,
        ha="left",
        fontsize=10.5,
    )
    fig.tight_layout()
    return _save(fig, out, "adjoint")


FIGURES = {
    "scatter": fig_scatter,
    "pad_modes": fig_pad_modes,
    "output_padding": fig_output_padding,
    "dilation": fig_dilation,
    "groups": fig_groups,
    "short_kernel": fig_short_kernel,
    "conv2d_same": fig_conv2d_same,
    "adjoint": fig_adjoint,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"figures to draw (default: all of {', '.join(FIGURES)})"
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="folder (default docs/figures)")
    opts = parser.parse_args(argv)
    unknown = [name for name in opts.names if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    plt = _plt()
    Path(opts.out).mkdir(parents=True, exist_ok=True)
    for name in opts.names or FIGURES:
        fig_path = FIGURES[name](plt, opts.out)
        plt.close("all")
        assert fig_path.exists()
    return 0


if __name__ == "__main__":
    sys.exit(main())
