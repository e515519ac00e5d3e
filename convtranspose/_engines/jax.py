"""JAX engine: MindSpore's 2-D transposed convolution as a differentiable JAX function.

Layouts: x ``(N, Cin, H, W)``, weight ``(Cin, Cout // group, kH, kW)``, output
``(N, Cout, H_out, W_out)``; all geometry comes from the spec's :class:`AxisPlan` objects.
``G`` is the group count, ``cig = Cin/G``, ``cog = Cout/G``, ``K = kH*kW``, and per axis
``s`` the stride, ``d`` the dilation, ``cb``/``ca`` the crops.

:func:`forward` is a ``jax.custom_vjp`` function: it jits, vmaps and differentiates to any
order in reverse mode, and its backward is not the autodiff of its forward but the transposed
operations, which XLA runs far faster than the autodiff of a dilated-input convolution.

Forward routes (:func:`choose_routes` picks one from the spec and the input shape):

- ``col2im``: one product per group gives every (output channel, tap) contribution of every
  input pixel, ``cols[n, co, kh, kw, i, j] = sum_ci w[ci, co, kh, kw] x[n, ci, i, j]``; input row
  ``i`` of tap ``kh`` lands on window row ``i*s + kh*d - cb``. Window rows ``p + m*s`` of one
  stride phase ``p`` all receive the same taps, each a shifted slice of ``cols``, so each phase is
  a sum of slices and the phases are interleaved by one reshape; XLA fuses the slices, the sums,
  the interleave, the bias and the output_padding into one pass over the output. No zero is
  inserted into the input, so it does exactly the multiply-adds of the convolution.
  ``col2im_nhwc`` is the same with the product laid out channels-last, for small images with
  many channels and for kernels of many taps on short rows.
- ``taps``: for one input channel per group (depthwise), the products are scalars: each phase is
  a sum of shifted input slices times kernel taps, one fused element-wise pass (XLA's grouped
  convolution is two orders of magnitude slower here).
- ``conv``: ``lax.conv_general_dilated`` of the input with the flipped kernel, the crops folded
  into its padding; for stride 1 this is a plain convolution. Chosen where the kernel has many
  taps per stride phase and where the products are too few to pay for assembling the phases.

Trace and compile follow the output and the work: when the stride phases outnumber the kernel
taps (a stride of 512 makes 262,144 phase blocks, most of them without a tap), ``col2im`` and
``taps`` place each tap's contribution on its strided window rows by one ``lax.pad`` with
interior padding instead (:func:`_scattered_taps`); a kernel of more than ``_MANY_TAPS`` taps
takes the ``conv`` routes, one op each, unless the crops dwarf the window.

Backward. Let ``F`` be the upstream gradient put back into the uncropped frame: the window part
of ``g`` (cropped rows, the zero extension and output_padding rows carry no gradient), padded
with ``cb`` zero rows before and ``ca`` after (a negative ``ca`` drops the extension rows). The
forward is ``full[n, co, i*s + kh*d, j*s + kw*d] += x[n, ci, i, j] w[ci, co, kh, kw]``, a sum of
products linear in x and in w, so its transposes read the same index pairs the other way round:

- ``dx[n, ci, i, j] = sum_{co, kh, kw} F[n, co, i*s + kh*d, j*s + kw*d] w[ci, co, kh, kw]``: an
  ordinary convolution of F with the kernel, window stride s, kernel dilation d (``conv`` route:
  ``lax.conv_general_dilated`` with the crops as its padding; ``im2col``: a product with the
  strided slices of F, read from the window itself by :func:`~convtranspose.spec.tap_window`,
  so F is never built; ``taps``: element-wise for depthwise, from the same slices).
- ``dw[ci, co, kh, kw] = sum_{n, i, j} x[n, ci, i, j] F[n, co, i*s + kh*d, j*s + kw*d]``: a
  correlation of x with F (``conv`` route: F convolved with x as the kernel, batch and feature
  axes swapped, kernel dilation s, window stride d, ``batch_group_count=G``; ``im2col``: the
  product of x with the strided slices of F; ``taps``: element-wise for depthwise).
- ``db[co] = sum_{n, r, c} g[n, co, r, c]`` over the window only, never over output_padding rows.

The backward rules are themselves lax operations, so they differentiate again (``jax.grad`` of
``jax.grad``) by ordinary autodiff.

dtypes: the result has the dtype of x. float32 and float64 compute in their own dtype
(``Precision.HIGHEST``: no TF32 or bfloat16 passes on accelerators). float16 and bfloat16
compute in float32 and round as MindSpore does: ``y = round(round(conv_f32) + bias)`` (the bias
add in float32 of the two rounded values, rounded once), and each gradient is the float32
result rounded once.

NaN and inf: the ``conv`` routes and the tap slices of the backward pair values with the zeros
of padded or cropped positions, so a non-finite x or weight can also make NaN (``0 * inf``) a few
entries that the direct sum of the products leaves finite, as ``lax.conv_transpose`` does.
Every entry the direct sum makes non-finite is non-finite here too.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from ..spec import AxisPlan, Conv2dSpec, Conv2dTransposeSpec, tap_window
from ._routing import rows_are_short

_NCHW = ("NCHW", "OIHW", "NCHW")
# Full float32/float64 products everywhere: no TF32 or bfloat16 passes on accelerators.
_HIGHEST = lax.Precision.HIGHEST
# dweight as a convolution: F's batch axis is the contracted "feature" axis and its channels
# the "batch"; x is the kernel with the batch as its input features.
_DWEIGHT = ("CNHW", "IOHW", "CNHW")

FORWARD_ROUTES = ("col2im", "col2im_nhwc", "taps", "conv")
DX_ROUTES = ("conv", "im2col", "taps")
DWEIGHT_ROUTES = ("conv", "im2col", "taps")


class Routes(NamedTuple):
    """The formulation of each of the three computations (see the module docstring)."""

    forward: str
    dx: str
    dweight: str


def choose_routes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> Routes:
    """The routes for this spec and input shape (measured on XLA CPU: ``benchmarks/jax_routes.py``).

    One input channel per group makes every product a scalar: the element-wise ``taps``
    routes. Otherwise the forward is ``col2im`` (one product, then a fused sum of tap slices per
    stride phase), except where the convolution with zeros between the input rows is cheaper
    (dense kernels only: XLA runs grouped convolutions slowly):

    - the kernel has more than 9 taps per stride phase: col2im's columns (``K`` values per input
      pixel and channel) outweigh the output (stride 1, 5x5 and 64 channels: col2im 25 ms,
      conv 3.5; 7x7 at stride 2: 1.39 ms against 1.07);
    - the stride makes 9 or more phases and the products are few (under :data:`_SMALL_PHASE_MACS`
      multiply-adds per phase): assembling the phases costs more than the convolution (stride 4,
      2x2 kernel, 16 channels: 0.128 ms against 0.059).

    ``col2im_nhwc`` lays the product out channels-last, for rows that are short next to the
    channel count, and for kernels of 16 taps or more on rows of at most
    :data:`_SHORT_ROW` columns, where slicing each tap out of short rows costs more than out of
    the channels (5x5 at stride 3 on 21 columns, 64 channels: 2.10 ms against 3.65).

    dx is a strided convolution (XLA runs grouped convolutions slowly, so with groups it is an
    im2col product); dweight a convolution unless no two taps overlap (kernel no longer than the
    stride, as U-Net's k=s=2), where the im2col slices are a mere reshuffle of F. When the crops
    are far longer than the window (a huge stride or dilation cropped away by a huge padding),
    both gradients take the im2col slices, which read the window alone, never a convolution
    padded by the crops.
    """
    group = spec.group
    cig, cog = spec.in_channels // group, spec.out_channels // group
    taps = math.prod(spec.kernel_size)
    if taps > _MANY_TAPS:
        return _many_tap_routes(spec, x_shape)
    if cig == 1:
        return Routes("taps", "taps", "taps")
    n, _, h, w = x_shape
    phases = _phase_blocks(spec, h, w)
    macs = n * h * w * spec.in_channels * cog * taps
    if group == 1 and (taps > 9 * math.prod(spec.stride) or (phases >= 9 and macs < _SMALL_PHASE_MACS * phases)):
        forward = "conv"
    elif rows_are_short(cog, w) or (taps >= 16 and w <= _SHORT_ROW):
        forward = "col2im_nhwc"
    else:
        forward = "col2im"
    cropped_away = _cropped_away(spec, x_shape)
    dx = "conv" if group == 1 and not cropped_away else "im2col"
    overlap = any(plan.effective_kernel > plan.stride for plan in spec.axes)
    dweight = "conv" if overlap and group == 1 and not cropped_away else "im2col"
    return Routes(forward, dx, dweight)


# Multiply-adds per stride phase under which col2im's assembly of the phases costs more than the
# convolution (stride 3 and 4 cases of benchmarks/jax_routes.py: 6K to 38K per phase ran faster
# as the convolution; 100K to 200K as col2im).
_SMALL_PHASE_MACS = 64 * 1024
# Rows of at most this many columns are short for a kernel of 16 taps or more (col2im_nhwc
# measured faster up to 21 columns, slower from 32).
_SHORT_ROW = 24


# Past this many kernel taps, the routes that write one op per tap (col2im, taps, im2col) trace
# and compile in time and memory that follow the tap count (a 48x48 kernel with its gradient:
# 27-44 s, 2.2-3.0 GiB, for a 37 KB output): one convolution does each computation instead.
_MANY_TAPS = 256


def _cropped_away(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> bool:
    """Whether the crops are far longer than the window (a huge stride or dilation cropped away)."""
    return any(
        plan.crop_before + max(plan.crop_after, 0) > 4 * plan.window_length(n) + 64
        for plan, n in zip(spec.axes, x_shape[2:])
    )


def _many_tap_routes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> Routes:
    """Convolutions for a kernel of more than ``_MANY_TAPS`` taps (grouped ones included).

    Where the crops are far longer than the window, a convolution would be padded by them: the
    tap slices read the window alone, and the forward's scattered taps skip the taps that miss
    it, so those keep the per-tap routes.
    """
    if _cropped_away(spec, x_shape):
        taps = "taps" if spec.in_channels == spec.group else "col2im"
        gradient = "taps" if spec.in_channels == spec.group else "im2col"
        return Routes(taps, gradient, gradient)
    return Routes("conv", "conv", "conv")


# ---------------------------------------------------------------------------- geometry


class _Phase(NamedTuple):
    """Window rows ``start, start + s, ...`` (``count`` of them) and the taps reaching them.

    Each tap is ``(tap, first, stop, row)``: input rows ``first:stop`` land on phase rows
    ``row:row + stop - first``.
    """

    start: int
    count: int  # type: ignore[assignment]  # a field named like tuple.count, which it shadows
    taps: Tuple[Tuple[int, int, int, int], ...]


@functools.lru_cache(maxsize=4096)  # asked at every trace; plans are hashable
def _phases(plan: AxisPlan, n: int) -> Tuple[_Phase, ...]:
    """The stride phases of the window, for an input axis of length ``n``.

    Window row ``r = p + m*s`` is full row ``r + cb``; tap ``t`` reaches it from input row
    ``(r + cb - t*d) / s`` when that is an integer, i.e. from row ``m + shift`` with
    ``shift = (p + cb - t*d) / s``, the same tap set for every ``m`` of the phase. A phase
    with no taps receives only the bias (the zero extension when ``k_eff < s``).
    """
    window = plan.window_length(n)
    result = []
    for start in range(min(plan.stride, window)):
        count = len(range(start, window, plan.stride))
        taps = []
        for tap in range(plan.kernel):
            offset = start + plan.crop_before - tap * plan.dilation
            if offset % plan.stride:
                continue
            shift = offset // plan.stride
            first, stop = max(0, shift), min(n, count + shift)
            if first < stop:
                taps.append((tap, first, stop, first - shift))
        result.append(_Phase(start, count, tuple(taps)))
    return tuple(result)


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float16 and bfloat16 compute in float32 (module docstring); others in their own dtype."""
    return jnp.dtype(jnp.float32) if jnp.dtype(dtype).itemsize < 4 else jnp.dtype(dtype)


def _add_bias(y: jax.Array, bias: Optional[jax.Array], dtype: jnp.dtype) -> jax.Array:
    """The bias added to the convolution ``y`` (computed in the work dtype), and the result in ``dtype``.

    float16 and bfloat16 as MindSpore: round the convolution, add the bias in float32, round
    again. XLA's CPU compiler folds a convert to float16 and back inside one fusion into nothing
    (measured on jax 0.10.2: 2 of 96 values then came out rounded once), so the first rounding
    is computed in float32 arithmetic (:func:`_rounded_in_work_dtype`), which it cannot fold.
    """
    if y.dtype == dtype:
        return y if bias is None else y + bias[:, None, None]
    if bias is None:
        return y.astype(dtype)
    return (_rounded_in_work_dtype(y, dtype) + bias.astype(y.dtype)[:, None, None]).astype(dtype)


def _rounded_in_work_dtype(y: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``y.astype(dtype).astype(y.dtype)``, computed without a conversion a compiler may fold away.

    ``lax.reduce_precision`` rounds to nearest even with ``dtype``'s exponent and mantissa
    widths (overflow to inf included) but flushes float16's subnormals to zero; below the
    smallest normal float16 value, rounding to the nearest multiple of 2**-24 (exact scaling by
    a power of two, then round-half-to-even) gives them.
    """
    info = jnp.finfo(dtype)
    normal = lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)
    if jnp.dtype(dtype) != jnp.float16:  # bfloat16 shares float32's exponent range
        return normal
    scale = 2.0**24  # float16's subnormal spacing is 2**-24
    subnormal = jnp.round(y * scale) / scale
    return jnp.where(jnp.abs(y) < info.smallest_normal, subnormal, normal)


def _tap_slices(grad_window: jax.Array, spec: Conv2dTransposeSpec, h: int, w: int):
    """``(kh, kw, part)`` for every tap, ``part`` of shape ``(N, Cout, h, w)``.

    ``part[n, co, i, j] = G[n, co, i*s + kh*d - cb, j*s + kw*d - cl]`` where that window position
    exists, 0 where it is cropped: strided slices of the window itself (:func:`tap_window`),
    padded to the input's size, so nothing of the uncropped length is built.
    """
    n, cout = grad_window.shape[:2]
    zero = jnp.zeros((), grad_window.dtype)
    plan_h, plan_w = spec.axes
    for kh in range(plan_h.kernel):
        rows = tap_window(plan_h, kh, h)
        for kw in range(plan_w.kernel):
            cols = tap_window(plan_w, kw, w)
            if rows is None or cols is None:
                yield kh, kw, jnp.zeros((n, cout, h, w), grad_window.dtype)
                continue
            (in_rows, out_rows), (in_cols, out_cols) = rows, cols
            part = lax.slice(
                grad_window,
                (0, 0, out_rows.start, out_cols.start),
                (n, cout, out_rows.stop, out_cols.stop),
                (1, 1, out_rows.step, out_cols.step),
            )
            yield (
                kh,
                kw,
                lax.pad(
                    part,
                    zero,
                    ((0, 0, 0), (0, 0, 0), (in_rows.start, h - in_rows.stop, 0), (in_cols.start, w - in_cols.stop, 0)),
                ),
            )


# ---------------------------------------------------------------------------- forward


def _interleave(blocks: List[List[jax.Array]], window: Tuple[int, int]) -> jax.Array:
    """Phase blocks ``blocks[ph][pw]`` of shape ``(N, C, M_h, M_w)`` -> the window.

    Phase ``p`` holds window rows ``p + m*s``; stacking the phases after the row axis and
    merging the two axes puts row ``m*P + p`` in place (``P = s``, or ``P = window < s`` with
    ``M = 1``); the last phases may be one row short and were padded, so the merge is cropped.
    """
    rows = [jnp.stack(row, axis=-1) for row in blocks]  # (N, C, M_h, M_w, P_w)
    y = jnp.stack(rows, axis=-3)  # (N, C, M_h, P_h, M_w, P_w)
    n, c, m_h, p_h, m_w, p_w = y.shape
    return y.reshape(n, c, m_h * p_h, m_w * p_w)[:, :, : window[0], : window[1]]


def _phase_sums(
    slab: Callable[[int, int, slice, slice], jax.Array],
    spec: Conv2dTransposeSpec,
    n: int,
    h: int,
    w: int,
    dtype: jnp.dtype,
) -> jax.Array:
    """The window as a sum of tap contributions per stride phase.

    ``slab(kh, kw, rows, cols)`` gives one tap's contribution ``(N, Cout, len(rows), len(cols))``
    from those input rows and columns.
    """
    if _phase_blocks(spec, h, w) > math.prod(spec.kernel_size):
        return _scattered_taps(slab, spec, n, h, w, dtype)
    phases_h, phases_w = (_phases(plan, size) for plan, size in zip(spec.axes, (h, w)))
    m_h, m_w = phases_h[0].count, phases_w[0].count
    blocks = []
    for phase_h in phases_h:
        row = []
        for phase_w in phases_w:
            acc = jnp.zeros((n, spec.out_channels, m_h, m_w), dtype)
            for kh, first_h, stop_h, at_h in phase_h.taps:
                for kw, first_w, stop_w, at_w in phase_w.taps:
                    part = slab(kh, kw, slice(first_h, stop_h), slice(first_w, stop_w))
                    acc = acc + lax.pad(
                        part,
                        jnp.zeros((), dtype),
                        (
                            (0, 0, 0),
                            (0, 0, 0),
                            (at_h, m_h - at_h - (stop_h - first_h), 0),
                            (at_w, m_w - at_w - (stop_w - first_w), 0),
                        ),
                    )
            row.append(acc)
        blocks.append(row)
    return _interleave(blocks, (spec.axes[0].window_length(h), spec.axes[1].window_length(w)))


def _phase_blocks(spec: Conv2dTransposeSpec, h: int, w: int) -> int:
    """How many stride-phase blocks :func:`_phase_sums` would build (one op each, taps or not)."""
    return math.prod(min(plan.stride, plan.window_length(size)) for plan, size in zip(spec.axes, (h, w)))


def _scattered_taps(
    slab: Callable[[int, int, slice, slice], jax.Array],
    spec: Conv2dTransposeSpec,
    n: int,
    h: int,
    w: int,
    dtype: jnp.dtype,
) -> jax.Array:
    """The window as a sum over taps, each contribution placed on its strided window rows.

    For strides whose phases outnumber the taps (stride 512: 262,144 phase blocks, most of
    them receiving no tap), one ``lax.pad`` with interior padding per tap reaching the window
    puts its contribution where :func:`~convtranspose.spec.tap_window` says; XLA fuses the pads
    and the sum into one pass over the window. Trace and compile follow the tap count.
    """
    plan_h, plan_w = spec.axes
    win_h, win_w = plan_h.window_length(h), plan_w.window_length(w)
    zero = jnp.zeros((), dtype)
    window = jnp.zeros((n, spec.out_channels, win_h, win_w), dtype)
    for kh in range(plan_h.kernel):
        rows = tap_window(plan_h, kh, h)
        for kw in range(plan_w.kernel) if rows is not None else ():
            cols = tap_window(plan_w, kw, w)
            if cols is None:
                continue
            assert rows is not None  # the loop over kw runs only then
            (in_rows, out_rows), (in_cols, out_cols) = rows, cols
            part = slab(kh, kw, in_rows, in_cols)
            window = window + lax.pad(
                part,
                zero,
                (
                    (0, 0, 0),
                    (0, 0, 0),
                    (out_rows.start, win_h - out_rows.stop, out_rows.step - 1),
                    (out_cols.start, win_w - out_cols.stop, out_cols.step - 1),
                ),
            )
    return window


def _forward_col2im(x: jax.Array, weight: jax.Array, spec: Conv2dTransposeSpec, nhwc: bool) -> jax.Array:
    n, cin, h, w = x.shape
    group, cog = spec.group, weight.shape[1]
    xg = x.reshape(n, group, cin // group, h, w)
    wg = weight.reshape(group, cin // group, cog, *spec.kernel_size)
    if nhwc:
        cols = jnp.einsum("ngchw,gcokl->gnhwokl", xg, wg, precision=_HIGHEST)

        def slab(kh, kw, rows, columns):
            part = cols[:, :, rows, columns, :, kh, kw]  # (G, N, h', w', cog)
            return part.transpose(1, 0, 4, 2, 3).reshape(n, spec.out_channels, *part.shape[2:4])
    else:
        cols = jnp.einsum("ngchw,gcokl->ngoklhw", xg, wg, precision=_HIGHEST)

        def slab(kh, kw, rows, columns):
            part = cols[:, :, :, kh, kw, rows, columns]  # (N, G, cog, h', w')
            return part.reshape(n, spec.out_channels, *part.shape[3:])

    return _phase_sums(slab, spec, n, h, w, x.dtype)


def _forward_taps(x: jax.Array, weight: jax.Array, spec: Conv2dTransposeSpec) -> jax.Array:
    n, cin, h, w = x.shape
    group, cog = spec.group, weight.shape[1]
    xg = x.reshape(n, group, 1, h, w)  # one input channel per group
    wg = weight.reshape(group, cog, *spec.kernel_size)

    def slab(kh, kw, rows, columns):
        part = xg[:, :, :, rows, columns] * wg[:, :, kh, kw, None, None]
        return part.reshape(n, spec.out_channels, *part.shape[3:])

    return _phase_sums(slab, spec, n, h, w, x.dtype)


def _oihw_flipped(weight: jax.Array, spec: Conv2dTransposeSpec) -> jax.Array:
    """``(Cin, cog, kH, kW)`` -> ``(Cout, cig, kH, kW)``, taps reversed, block g of O reading block g of I."""
    cin, cog = weight.shape[:2]
    group = spec.group
    rhs = weight.reshape(group, cin // group, cog, *spec.kernel_size).transpose(0, 2, 1, 3, 4)
    return rhs.reshape(group * cog, cin // group, *spec.kernel_size)[:, :, ::-1, ::-1]


def _forward_conv(x: jax.Array, weight: jax.Array, spec: Conv2dTransposeSpec) -> jax.Array:
    pads = [
        (plan.effective_kernel - 1 - plan.crop_before, plan.effective_kernel - 1 - plan.crop_after)
        for plan in spec.axes
    ]
    return lax.conv_general_dilated(
        x,
        _oihw_flipped(weight, spec),
        (1, 1),
        pads,
        lhs_dilation=spec.kernel_strides(x.shape),
        rhs_dilation=spec.kernel_dilations,
        dimension_numbers=_NCHW,
        feature_group_count=spec.group,
        precision=_HIGHEST,
    )


def _window(x: jax.Array, weight: jax.Array, spec: Conv2dTransposeSpec, route: str) -> jax.Array:
    """The cropped (or extended) transposed convolution, without bias: ``(N, Cout, win_h, win_w)``."""
    n, _, h, w = x.shape
    shape = spec.window_shape(x.shape)
    if x.size == 0 or 0 in shape:
        return jnp.zeros(shape, x.dtype)
    if route == "conv":
        return _forward_conv(x, weight, spec)
    if route == "taps":
        return _forward_taps(x, weight, spec)
    return _forward_col2im(x, weight, spec, nhwc=route == "col2im_nhwc")


def _apply(
    x: jax.Array, weight: jax.Array, bias: Optional[jax.Array], spec: Conv2dTransposeSpec, routes: Optional[Routes]
) -> jax.Array:
    dtype = x.dtype
    work = _compute_dtype(dtype)
    route = (routes or choose_routes(spec, x.shape)).forward
    window = _add_bias(_window(x.astype(work), weight.astype(work), spec, route), bias, dtype)
    extend = [(0, 0, 0), (0, 0, 0)] + [(0, plan.output_padding, 0) for plan in spec.axes]
    return lax.pad(window, jnp.zeros((), dtype), extend)


# ---------------------------------------------------------------------------- backward


def _dx(
    grad_window: jax.Array, weight: jax.Array, spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], route: str
) -> jax.Array:
    n, cin, h, w = x_shape
    group, cog = spec.group, weight.shape[1]
    if route == "conv":
        pads = [(plan.crop_before, plan.crop_after) for plan in spec.axes]
        return lax.conv_general_dilated(
            grad_window,
            weight,
            spec.kernel_strides(x_shape),
            pads,
            rhs_dilation=spec.kernel_dilations,
            dimension_numbers=_NCHW,
            feature_group_count=group,
            precision=_HIGHEST,
        )
    wg = weight.reshape(group, cin // group, cog, *spec.kernel_size)
    if route == "taps":
        dx = jnp.zeros((n, group, h, w), grad_window.dtype)
        for kh, kw, part in _tap_slices(grad_window, spec, h, w):
            dx = dx + (part.reshape(n, group, cog, h, w) * wg[:, 0, :, kh, kw, None, None]).sum(axis=2)
        return dx.reshape(x_shape)
    cols = _im2col(grad_window, spec, h, w)  # (N, G, cog, kH, kW, h, w)
    dx = jnp.einsum("gcokl,ngoklhw->ngchw", wg, cols, precision=_HIGHEST)
    return dx.reshape(x_shape)


def _im2col(grad_window: jax.Array, spec: Conv2dTransposeSpec, h: int, w: int) -> jax.Array:
    """``(N, G, cog, kH, kW, h, w)``: the tap slices of the window gradient, one per tap."""
    n, cout = grad_window.shape[:2]
    parts = [part for _, _, part in _tap_slices(grad_window, spec, h, w)]
    return jnp.stack(parts, axis=2).reshape(n, spec.group, cout // spec.group, *spec.kernel_size, h, w)


def _dweight(grad_window: jax.Array, x: jax.Array, spec: Conv2dTransposeSpec, route: str) -> jax.Array:
    n, cin, h, w = x.shape
    group = spec.group
    if route == "conv":
        pads = [(plan.crop_before, plan.crop_after) for plan in spec.axes]
        return lax.conv_general_dilated(
            grad_window,
            x,
            spec.kernel_dilations,
            pads,
            rhs_dilation=spec.kernel_strides(x.shape),
            dimension_numbers=_DWEIGHT,
            batch_group_count=group,
            precision=_HIGHEST,
        )
    cog = spec.out_channels // group
    if route == "taps":
        xg = x.reshape(n, group, 1, h, w)
        # reduce the contiguous rows and columns first, then the batch (measured faster)
        parts = [
            (part.reshape(n, group, cog, h, w) * xg).sum(axis=(3, 4))
            for _, _, part in _tap_slices(grad_window, spec, h, w)
        ]
        return jnp.stack(parts, axis=-1).sum(axis=0).reshape(cin, cog, *spec.kernel_size)
    cols = _im2col(grad_window, spec, h, w)
    dw = jnp.einsum("ngchw,ngoklhw->gcokl", x.reshape(n, group, cin // group, h, w), cols, precision=_HIGHEST)
    return dw.reshape(cin, cog, *spec.kernel_size)


def _gradients(
    x: jax.Array, weight: jax.Array, grad: jax.Array, spec: Conv2dTransposeSpec, routes: Optional[Routes]
) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """``(dx, dweight, dbias)`` of ``sum(y * grad)``, each in the compute dtype."""
    work = _compute_dtype(x.dtype)
    chosen = routes or choose_routes(spec, x.shape)
    _, _, win_h, win_w = spec.window_shape(x.shape)
    grad_window = grad[:, :, :win_h, :win_w].astype(work)
    dbias = grad_window.sum(axis=(0, 2, 3))
    if x.size == 0 or grad_window.size == 0:
        return jnp.zeros(x.shape, work), jnp.zeros(weight.shape, work), dbias
    x, weight = x.astype(work), weight.astype(work)
    dx = _dx(grad_window, weight, spec, x.shape, chosen.dx)
    dweight = _dweight(grad_window, x, spec, chosen.dweight)
    return dx, dweight, dbias


# ---------------------------------------------------------------------------- the custom_vjp


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _transposed_conv(x, weight, bias, spec, routes):
    return _apply(x, weight, bias, spec, routes)


def _transposed_conv_fwd(x, weight, bias, spec, routes):
    return _apply(x, weight, bias, spec, routes), (x, weight, bias)


def _transposed_conv_bwd(spec, routes, residuals, grad):
    x, weight, bias = residuals
    dx, dweight, dbias = _gradients(x, weight, grad, spec, routes)
    return (dx.astype(x.dtype), dweight.astype(weight.dtype), None if bias is None else dbias.astype(bias.dtype))


_transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)
# Compiled once per shape and spec when called eagerly (op-by-op dispatch of the phase sums is
# two orders of magnitude slower); inside a caller's jit it is inlined.
_transposed_conv_jit = jax.jit(_transposed_conv, static_argnums=(3, 4))


def forward(
    x: jax.Array,
    weight: jax.Array,
    bias: Optional[jax.Array],
    spec: Conv2dTransposeSpec,
    routes: Optional[Routes] = None,
) -> jax.Array:
    """Transposed convolution of ``x`` with MindSpore's crop, bias and output_padding.

    Differentiable (reverse mode, any order) through the transposed operations of the module
    docstring; traceable under ``jax.jit`` and ``jax.vmap`` (``spec`` and ``routes`` are static).

    Args:
        x: ``(N, Cin, H, W)``, float16, bfloat16, float32 or float64, already checked against
            ``spec``.
        weight: ``(Cin, Cout // group, kH, kW)``, same dtype as ``x``.
        bias: ``(Cout,)`` or None, same dtype as ``x``.
        spec: the validated arguments.
        routes: force the formulations (tests and benchmarks); None picks them with
            :func:`choose_routes`.

    Returns:
        ``(N, Cout, H_out, W_out)`` in the dtype of ``x``.
    """
    if routes is not None:
        routes = Routes(*routes)
        for name, value, known in zip(Routes._fields, routes, (FORWARD_ROUTES, DX_ROUTES, DWEIGHT_ROUTES)):
            if value not in known:
                raise ValueError(f"unknown {name} route {value!r}; known: {known}")
    batch_axis = _explicit_batch_axis(x, weight, bias)
    if batch_axis is False:
        return _transposed_conv_jit(x, weight, bias, spec, routes)
    # Explicitly sharded inputs (jax.make_mesh's default axis type): the engine's reshapes
    # and contractions would each need an out_sharding, so the engine runs with the mesh
    # axes in automatic mode (the partitioner places every step) and returns the output
    # sharded along the batch as x is.
    from jax.sharding import PartitionSpec

    run = jax.sharding.auto_axes(
        lambda x, weight, bias: _transposed_conv_jit(x, weight, bias, spec, routes),
        out_sharding=PartitionSpec(batch_axis),
    )
    return run(x, weight, bias)


def _explicit_batch_axis(*arrays: Optional[jax.Array]):
    """False when no input carries an explicit sharding, else x's batch-axis mesh axes (or None)."""
    typeof = getattr(jax, "typeof", None)
    if typeof is None:  # a JAX without explicit sharding
        return False
    specs = []
    for array in arrays:
        if array is None:
            continue
        sharding = getattr(typeof(array), "sharding", None)
        mesh = getattr(sharding, "mesh", None)
        explicit = any(str(kind).endswith("Explicit") for kind in getattr(mesh, "axis_types", ()))
        specs.append(tuple(sharding.spec) if explicit and sharding is not None else ())
    if not any(entry is not None for spec in specs for entry in spec):
        return False
    return specs[0][0] if specs[0] else None


def gradients(
    x: jax.Array, weight: jax.Array, grad: jax.Array, spec: Conv2dTransposeSpec, routes: Optional[Routes] = None
) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """``(dx, dweight, dbias)`` of ``sum(forward(x, weight, bias, spec) * grad)``, in x's dtype.

    The backward rule of :func:`forward`, callable directly (benchmarks, tests).
    """
    dx, dweight, dbias = _gradients(x, weight, grad, spec, routes)
    return dx.astype(x.dtype), dweight.astype(x.dtype), dbias.astype(x.dtype)


__all__ = ["forward", "gradients", "choose_routes", "Routes"]


# ---------------------------------------------------------------------------- nn.Conv2d


def conv2d_forward(x: jax.Array, weight: jax.Array, bias: Optional[jax.Array], spec: Conv2dSpec) -> jax.Array:
    """MindSpore's ``nn.Conv2d``: ``lax.conv_general_dilated`` over the part of the padded input its kernel reads.

    Each axis's :class:`~convtranspose.spec.KernelWindow` gives the kernel taps and input rows
    that are read and the (non-negative) zero padding around them; taps and rows never read are
    left out, so a huge dilation or padding costs what the output costs. Gradients are JAX's
    autodiff of the convolution (itself convolutions), so ``jax.grad`` of any order, ``jit`` and
    ``vmap`` work as for ``lax.conv_general_dilated``.

    Args:
        x: ``(N, C_in, H, W)``, already checked against ``spec``.
        weight: ``(C_out, C_in // group, kH, kW)``, same dtype as ``x``.
        bias: ``(C_out,)`` or None.
        spec: the validated arguments.

    Returns:
        ``(N, C_out, H_out, W_out)`` in x's dtype; float16 and bfloat16 computed in float32 and
        rounded as MindSpore rounds: ``round(round(conv) + bias)``, each gradient rounded once.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    x_work, w_work = x.astype(work), weight.astype(work)
    out_shape = spec.output_shape(x.shape)
    windows = spec.kernel_windows(x.shape)
    if windows is None or x.size == 0 or 0 in out_shape:
        # No output entry reads an input value: only the bias (x and the weight stay in the graph).
        y = jnp.zeros(out_shape, work) + (x_work[:0].sum() + w_work[:0].sum())
    else:
        height, width = windows
        y = lax.conv_general_dilated(
            x_work[:, :, height.rows, width.rows],
            w_work[:, :, height.taps, width.taps],
            window_strides=(height.stride, width.stride),
            padding=((height.pad_before, height.pad_after), (width.pad_before, width.pad_after)),
            rhs_dilation=(height.dilation, width.dilation),
            dimension_numbers=_NCHW,
            feature_group_count=spec.group,
            precision=_HIGHEST,
        )
    return _add_bias(y, bias, dtype)
