"""The engine's entry points: forward and backward of a whole call.

A call reads the settings once, plans its routes (:func:`~.planning.plan`), converts
float16 to float32, splits the batch into chunks whose working memory fits the budget, runs
the route on each chunk (on the thread pool where the plan says so) and sums the chunks'
weight gradients in batch order.

dtypes: float32 and float64 compute in their own dtype. float16 computes in float32 and
rounds as MindSpore does: ``y = fp16(fp16(conv_fp32) + bias)`` (the bias add is one exact
sum rounded once), and each gradient is the float32 result rounded once to float16.

``db`` sums the upstream gradient over the window only, never over output_padding rows.

Quiet: the routes run with NumPy's "invalid value" warnings off. A stored zero times an inf
raises that flag in NumPy's own small products though the result is then repaired (see
:mod:`.exact`), and BLAS products never report it: NaN the inputs make arrives in the
results without a warning, whatever the size.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ...spec import Conv2dTransposeSpec
from .chunks import batch_chunks, run_chunks
from .planning import backward_bytes, forward_bytes, plan, tuned_bytes
from .routes import BACKWARD_ROUTES, FORWARD_ROUTES
from .settings import settings


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], spec: Conv2dTransposeSpec) -> np.ndarray:
    """Transposed convolution of ``x`` with MindSpore's crop, bias and output_padding.

    Args:
        x: ``(N, Cin, H, W)``, float16/32/64, already checked against ``spec``.
        weight: ``(Cin, Cout // group, kH, kW)``, same dtype as ``x``.
        bias: ``(Cout,)`` or None, same dtype as ``x``.
        spec: the validated arguments.

    Returns:
        ``(N, Cout, H_out, W_out)`` in the dtype of ``x``.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    out = np.zeros(spec.output_shape(x.shape), dtype=work)
    _, _, win_h, win_w = spec.window_shape(x.shape)
    window = out[:, :, :win_h, :win_w]
    if x.size:
        tuning = settings.current()
        chosen = plan(spec, x.shape, tuning)
        budget = tuning.chunk_budget(chosen.threads)
        image = (1,) + tuple(x.shape[1:])
        # the float32 copy of a float16 chunk
        converted = math.prod(image) * work.itemsize if dtype != work else 0
        name = chosen.forward
        per_image = forward_bytes(name, spec, image, work.itemsize) + converted
        if name == "col2im_nhwc" and per_image > budget and tuning.forward_route is None:
            name = "col2im"  # it cannot split an image; col2im can
            per_image = forward_bytes(name, spec, image, work.itemsize) + converted
        route = FORWARD_ROUTES[name].run
        weight_work = weight.astype(work, copy=False)
        chunks = batch_chunks(
            x.shape[0], max(per_image, tuned_bytes(spec, image, work.itemsize)), budget, chosen.threads, tuning
        )

        def chunk(batch: slice) -> None:
            with np.errstate(invalid="ignore"):  # see the module docstring (Quiet)
                route(window[batch], x[batch].astype(work, copy=False), weight_work, spec, spec.group, budget)

        for _ in run_chunks(chunk, chunks, chosen.threads, tuning.workers):
            pass
    if dtype == np.float16:
        return _round_like_mindspore(out, window, bias)
    if bias is not None:
        window += bias[:, None, None]
    return out


def _round_like_mindspore(out: np.ndarray, window: np.ndarray, bias: Optional[np.ndarray]) -> np.ndarray:
    """float16 output of a float32 computation: ``fp16(fp16(conv) + bias)``, as MindSpore.

    The sum of two float16 values rounded to float32 and then to float16 is the correctly
    rounded float16 sum: float32's 24 bits are at least 2*11 + 2, which makes the double
    rounding innocuous (Figueroa, 1995). NumPy's float16 casts are slow, so there are as few
    as possible: three over the window with a bias, one without.
    """
    rounded = window.astype(np.float16)
    if bias is not None:
        rounded = (rounded.astype(np.float32) + bias.astype(np.float32)[:, None, None]).astype(np.float16)
    result = np.zeros(out.shape, dtype=np.float16)
    result[:, :, : window.shape[2], : window.shape[3]] = rounded
    return result


def backward(
    x: np.ndarray,
    weight: np.ndarray,
    grad_out: np.ndarray,
    spec: Conv2dTransposeSpec,
    *,
    need_dx: bool = True,
    need_dweight: bool = True,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], np.ndarray]:
    """Gradients of ``sum(forward(x, weight, bias) * grad_out)``, those asked for.

    A gradient not asked for is not computed (its products are skipped, not discarded);
    those asked for are bitwise the same as from a call asking for all.

    Args:
        x: ``(N, Cin, H, W)``, the forward input. Without ``need_dweight`` only its shape
            and dtype are read: a zero-strided ``np.broadcast_to`` array will do (never
            copied).
        weight: ``(Cin, Cout // group, kH, kW)``.
        grad_out: ``(N, Cout, H_out, W_out)``, the upstream gradient (output shape).
        spec: the validated arguments.
        need_dx: compute the input gradient (otherwise None in its place).
        need_dweight: compute the weight gradient (otherwise None in its place).

    Returns:
        ``(dx, dweight, dbias)`` with the shapes of x, weight and ``(Cout,)``, in x's dtype;
        ``dbias`` (a cheap sum) always.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    _, _, win_h, win_w = spec.window_shape(x.shape)
    grad_window = grad_out[:, :, :win_h, :win_w].astype(work, copy=False)
    dbias = grad_window.sum(axis=(0, 2, 3))
    dx = np.zeros(x.shape, dtype=work) if need_dx else None
    dweight = np.zeros(weight.shape, dtype=work) if need_dweight else None
    if x.size and (need_dx or need_dweight):
        tuning = settings.current()
        chosen = plan(spec, x.shape, tuning)
        budget = tuning.chunk_budget(chosen.threads)
        route = BACKWARD_ROUTES[chosen.backward].run
        weight_work = weight.astype(work, copy=False)
        image = (1,) + tuple(x.shape[1:])
        per_image = backward_bytes(chosen.backward, spec, image, work.itemsize)
        if dtype != work:
            per_image += math.prod(image) * work.itemsize  # the float32 copy of a float16 chunk

        def inputs(batch: slice) -> np.ndarray:
            if need_dweight:
                return x[batch].astype(work, copy=False)
            # only the shape is read: a zero-strided stand-in in the compute dtype, no copy
            return np.broadcast_to(np.zeros((), work), x[batch].shape)

        def chunk(batch: slice) -> Optional[np.ndarray]:
            with np.errstate(invalid="ignore"):  # see the module docstring (Quiet)
                return route(
                    grad_window[batch],
                    inputs(batch),
                    weight_work,
                    spec,
                    spec.group,
                    budget,
                    None if dx is None else dx[batch],
                    need_dweight,
                )

        chunks = batch_chunks(
            x.shape[0], max(per_image, tuned_bytes(spec, image, work.itemsize)), budget, chosen.threads, tuning
        )
        for dweight_part in run_chunks(chunk, chunks, chosen.threads, tuning.workers):
            if dweight is not None and dweight_part is not None:
                dweight += dweight_part
    return (
        None if dx is None else dx.astype(dtype, copy=False),
        None if dweight is None else dweight.astype(dtype, copy=False),
        dbias.astype(dtype, copy=False),
    )
