"""NumPy engine: forward and backward of a 2-D transposed convolution.

Layouts: x ``(N, Cin, H, W)``, weight ``(Cin, Cout // group, kH, kW)``, output
``(N, Cout, H_out, W_out)``; all geometry comes from the spec's :class:`AxisPlan` objects.
``G`` is the group count, ``cig = Cin/G``, ``cog = Cout/G``, ``K = kH*kW``.

Every route does exactly the multiply-adds of the convolution (no zero insertion) in BLAS
products; they differ in the data they move around those products, and :func:`plan` picks
the cheaper one from the spec and the input shape.

Forward routes:

- ``col2im``: one product per image gives every (output channel, tap) contribution of every
  input pixel, ``cols[n, g, (co, kh, kw), (i, j)] = sum_ci w[g*cig+ci, co, kh, kw] x[n, g*cig+ci, i, j]``;
  input row ``i`` of tap ``kh`` lands on window row ``i*stride + kh*dilation - crop_before``.
  The slabs of the taps that share a stride phase are summed in a contiguous buffer (shifted
  slices, ``Phase.overlap``), which is then written once into the phase's strided rows; a
  kernel no longer than the stride needs no sum at all. Moves ``Cout*K`` values per input
  pixel: best when ``Cin > Cout``.
- ``col2im_nhwc``: the same in channels-last order, so every add runs along ``cog``
  contiguous values; for small images with many channels, where the NCHW rows are short.
- ``phases``: window rows ``phase + m*stride`` all see the same taps, so each stride phase is
  a dense stride-1 correlation (:func:`axis_phases`). The input slices of the phase's width
  taps are stacked once (im2col along the width); each height tap is then a row offset into
  that stack, so the phase is ``T_h`` products ``(cog, T_w*cig) @ (T_w*cig, rows*cols)`` per
  image, summed and written once into the window. Moves about ``Cin*K/T_h`` values per input
  pixel: best when ``Cin <= Cout``.

Backward, derived from the same sums. With ``G`` the upstream gradient restricted to the
window (cropped rows, the zero extension and output_padding rows carry no gradient):

- ``im2col`` (adjoint of col2im): ``gcols[g, (co, kh, kw), (n, i, j)] = G[n, g*cog+co,
  i*s_h + kh*d_h - top, j*s_w + kw*d_w - left]`` (zero outside the window), then
  ``dx_g = W_g @ gcols_g`` and ``dw_g = X_g @ gcols_g^T``.
- ``phases`` (adjoint of phases): per phase, with ``S`` the stacked input slices and ``G_p``
  the phase's gradient rows, ``dW_p = S @ G_p^T`` and ``dS = W_p^T @ G_p``, whose slices
  are added back at their shifts into the (padded) dx.

``db`` sums G over the window only, never over output_padding rows.

dtypes: float32 and float64 compute in their own dtype. float16 computes in float32 and
rounds as MindSpore does: ``y = fp16(fp16(conv_fp32) + bias)`` (the bias add is one exact
sum rounded once), and each gradient is the float32 result rounded once to float16.

Memory: the batch is processed in chunks so that the largest intermediate buffer stays
under ``chunk_bytes`` (default 64 MiB, see :func:`set_chunk_bytes`), one image at least.
Intermediate buffers live in a per-thread workspace kept between calls (see
:func:`_workspace` for why; :func:`release_workspace` frees it). Threads: only for
depthwise-like products are batch chunks spread over a 2-thread pool (see :func:`plan`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import math
import os
import threading
import weakref
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, TypeVar

import numpy as np

from ..spec import AxisPlan, Conv2dTransposeSpec

T = TypeVar("T")

_chunk_bytes = 64 * 2 ** 20
# Below this many bytes of intermediate data, a thread hand-off costs more than it saves.
_PARALLEL_BYTES = 4 * 2 ** 20
_workers = min(2, os.cpu_count() or 1)
_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
_forced: contextvars.ContextVar[Tuple[Optional[str], Optional[str]]] = contextvars.ContextVar(
    "convtranspose_forced_routes", default=(None, None))


def set_chunk_bytes(limit: int) -> None:
    """Upper bound, in bytes, of the largest per-chunk buffer (one image per chunk at least)."""
    global _chunk_bytes
    if type(limit) is not int:
        raise TypeError(f"chunk_bytes must be a positive int, got {limit!r}")
    if limit < 1:
        raise ValueError(f"chunk_bytes must be a positive int, got {limit!r}")
    _chunk_bytes = limit


@contextlib.contextmanager
def forced_routes(forward: Optional[str] = None, backward: Optional[str] = None) -> Iterator[None]:
    """Within the block, use these routes instead of :func:`plan`'s choice (tests, benchmarks).

    Scoped to the calling thread or async task (a ``ContextVar``): other threads keep the
    automatic choice. None leaves that direction automatic.

    Raises:
        ValueError: an unknown route name.
    """
    for name, table in ((forward, FORWARD_ROUTES), (backward, BACKWARD_ROUTES)):
        if name is not None and name not in table:
            raise ValueError(f"unknown route {name!r}; known: {sorted(table)}")
    token = _forced.set((forward, backward))
    try:
        yield
    finally:
        _forced.reset(token)


# Below this many multiply-adds the call is dominated by Python-level overhead, and col2im
# makes the fewest NumPy calls (tiny case: 0.070 ms against 0.104 ms for phases).
SMALL_MACS = 2_000_000


class Plan(NamedTuple):
    """The routes of both directions, and whether to spread batch chunks over threads."""

    forward: str
    backward: str
    threads: bool


def plan(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...]) -> Plan:
    """The routes and threading for this spec and input shape.

    The phase routes move ``Cin*K`` values per input pixel, the column routes ``Cout*K``
    (see the module docstring), so the channel ratio decides; channels-last wins when the
    image rows are short next to the channel count. Threads over batch chunks pay off only
    where element-wise work dominates (measured): products with hardly any depth
    (depthwise); elsewhere the chunks' BLAS calls contend for the cores.
    """
    cig = spec.in_channels // spec.group
    cog = spec.out_channels // spec.group
    width = x_shape[3]
    macs = math.prod(x_shape) * cog * spec.kernel_size[0] * spec.kernel_size[1]
    if cig <= cog and macs >= SMALL_MACS:
        forward = "phases"
    elif cog >= 16 * width:
        forward = "col2im_nhwc"
    else:
        forward = "col2im"
    # One im2col of the gradient serves both dx and dweight, so it wins unless the output
    # has clearly more channels than the input.
    backward = "phases" if cog > 2 * cig else "im2col"
    forced_forward, forced_backward = _forced.get()
    return Plan(forced_forward or forward, forced_backward or backward, threads=cig * cog <= 16)


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


# Scratch buffers per thread. Keyed weakly by the thread object, so a finished thread's
# buffers go with it (a thread-per-request server does not accumulate them).
_slots_by_thread: "weakref.WeakKeyDictionary[threading.Thread, Dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def _workspace(slot: str, shape: Tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
    """A scratch array kept per thread and slot, grown as needed and reused across calls.

    Fresh multi-megabyte arrays come back from the allocator as new zero pages whose first
    touch costs as much as the copy itself (measured: the same forward took 2.6 or 6.6 ms
    depending on the heap's state). Nothing returned to the caller ever lives here.
    """
    thread = threading.current_thread()
    slots = _slots_by_thread.get(thread)
    if slots is None:
        slots = _slots_by_thread[thread] = {}
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = slots.get(slot)
    if buffer is None or buffer.nbytes < size:
        buffer = slots[slot] = np.empty(max(size, 1), dtype=np.uint8)
    array = buffer[:size].view(dtype).reshape(shape)
    if zero:
        array.fill(0)
    return array


def workspace_bytes() -> int:
    """Bytes of scratch memory the engine holds between calls (all live threads)."""
    return sum(buffer.nbytes for slots in list(_slots_by_thread.values()) for buffer in slots.values())


def release_workspace() -> None:
    """Free the scratch buffers of every thread (they are kept between calls for speed)."""
    for slots in list(_slots_by_thread.values()):
        slots.clear()


def _after_fork_in_child() -> None:
    # A forked child inherits the pool object but not its threads: start afresh.
    global _pool
    _pool = None
    _slots_by_thread.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _batch_chunks(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int,
                  threads: bool) -> List[slice]:
    """Batch slices whose largest buffer fits the budget.

    With ``threads`` (and enough work) there is at least one slice per worker.
    """
    n, _, h, w = x_shape
    channels = max(spec.in_channels, spec.out_channels)
    # the columns or stacked slices, plus window-sized sums (large when the stride is)
    per_image = (channels * spec.kernel_size[0] * spec.kernel_size[1] * h * w
                 + 2 * math.prod(spec.output_shape((1,) + tuple(x_shape[1:])))) * itemsize
    step = max(1, _chunk_bytes // max(per_image, 1))
    if threads and n * per_image >= _PARALLEL_BYTES:
        step = min(step, -(-n // _workers))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def _run_chunks(task: Callable[[slice], T], chunks: List[slice], threads: bool) -> List[T]:
    """Run ``task`` on every chunk, on a small thread pool when there are several.

    NumPy releases the GIL in BLAS and in element-wise loops, so while one chunk is in a
    BLAS product (which OpenBLAS runs on all cores) the other's copies and adds proceed.
    Chunks write disjoint batch slices, so no locking is needed.
    """
    if not threads or len(chunks) < 2 or _workers < 2:
        return [task(chunk) for chunk in chunks]
    return list(_get_pool().map(task, chunks))


def _get_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=_workers, thread_name_prefix="convtranspose")
    return _pool


# ---------------------------------------------------------------------------- stride phases
# The NumPy algorithm's view of one axis (the spec holds MindSpore's geometry only).

class Phase(NamedTuple):
    """Window rows ``rows`` (a strided slice, ``count`` rows) and their ``(tap, shift)`` pairs."""

    rows: slice
    count: int
    taps: Tuple[Tuple[int, int], ...]

    def overlap(self, shift: int, n: int) -> Optional[Tuple[slice, slice]]:
        """``(input_rows, phase_rows)`` for a tap at ``shift``, or None when no row is left.

        Phase row ``m`` reads input row ``m + shift``; only rows inside both ``[0, n)`` and
        ``[0, count)`` are kept.
        """
        first, stop = max(0, shift), min(n, self.count + shift)
        if first >= stop:
            return None
        return slice(first, stop), slice(first - shift, stop - shift)


@functools.lru_cache(maxsize=4096)  # asked for on every call; plans are hashable
def axis_phases(plan: AxisPlan, n: int) -> Tuple[Phase, ...]:
    """The stride phases of the window that some tap reaches, for an input axis of length ``n``.

    Window rows ``r = phase + m*stride`` (``m = 0 .. count-1``) all receive the same taps:
    tap ``t`` with ``(phase + crop_before - t*dilation) % stride == 0``, from input row
    ``m + shift`` where ``shift = (phase + crop_before - t*dilation) // stride``. So each
    phase is a dense stride-1 correlation of the input with a sub-kernel (XNNPACK's
    "subconv"). Phases no tap reaches receive only the bias and are left out, so the count is
    at most the kernel size however large the stride.
    """
    window = plan.window_length(n)
    taps_by_phase: Dict[int, List[Tuple[int, int]]] = {}
    for tap in range(plan.kernel):
        phase = (tap * plan.dilation - plan.crop_before) % plan.stride
        if phase < window:
            shift = (phase + plan.crop_before - tap * plan.dilation) // plan.stride
            taps_by_phase.setdefault(phase, []).append((tap, shift))
    return tuple(Phase(slice(phase, window, plan.stride), len(range(phase, window, plan.stride)), tuple(taps))
                 for phase, taps in sorted(taps_by_phase.items()))


@functools.lru_cache(maxsize=4096)
def phase_padding(plan: AxisPlan, n: int) -> Tuple[int, int]:
    """Zero rows to put before and after the input for the phase taps.

    With them, every tap reads input rows ``shift .. shift + count - 1`` inside the padded axis.
    """
    reads = [(shift, shift + phase.count) for phase in axis_phases(plan, n) for _, shift in phase.taps]
    if not reads:
        return 0, 0
    return max(0, -min(lo for lo, _ in reads)), max(0, max(hi for _, hi in reads) - n)


@functools.lru_cache(maxsize=4096)
def tap_window(plan: AxisPlan, tap: int, n: int) -> Optional[Tuple[slice, slice]]:
    """Where kernel tap ``tap`` lands inside the window, for an input axis of length ``n``.

    Input row ``i`` lands on window row ``i*stride + tap*dilation - crop_before``; only rows
    inside ``[0, window_length(n))`` are kept.

    Returns:
        ``(input_rows, output_rows)``: a contiguous slice of input rows and the strided slice
        of output rows they land on (same length), or None when the tap reaches no window row.
    """
    offset = tap * plan.dilation - plan.crop_before
    window = plan.window_length(n)
    first = max(0, -(offset // plan.stride))              # ceil(-offset / stride)
    stop = min(n, -((offset - window) // plan.stride))    # ceil((window - offset) / stride)
    if first >= stop:
        return None
    start = first * plan.stride + offset
    return slice(first, stop), slice(start, start + (stop - first - 1) * plan.stride + 1, plan.stride)


# ---------------------------------------------------------------------------- shared pieces

@functools.lru_cache(maxsize=1024)
def _tap_windows(spec: Conv2dTransposeSpec, h: int, w: int) -> Tuple[Tuple[int, int, tuple, tuple], ...]:
    """Where every tap that reaches the window reads and writes (cached: asked on every call).

    ``(kh, kw, (input_rows, input_cols), (output_rows, output_cols))`` per tap, from
    :func:`tap_window` per axis.
    """
    plan_h, plan_w = spec.axes
    found = []
    for kh in range(spec.kernel_size[0]):
        rows = tap_window(plan_h, kh, h)
        for kw in range(spec.kernel_size[1]):
            cols = tap_window(plan_w, kw, w)
            if rows is not None and cols is not None:
                found.append((kh, kw, (rows[0], cols[0]), (rows[1], cols[1])))
    return tuple(found)


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
    """The col2im route's per-phase work, from :func:`axis_phases` (cached per shape)."""
    result = []
    for phase_h in axis_phases(spec.axes[0], h):
        for phase_w in axis_phases(spec.axes[1], w):
            taps = tuple((th, tw, (rows[0], cols[0]), (rows[1], cols[1]))
                         for th, shift_h in phase_h.taps for tw, shift_w in phase_w.taps
                         for rows, cols in [(phase_h.overlap(shift_h, h), phase_w.overlap(shift_w, w))]
                         if rows is not None and cols is not None)
            whole = (slice(0, phase_h.count), slice(0, phase_w.count))
            single = len(taps) == 1 and taps[0][3] == whole
            result.append(_PhaseSum(phase_h.rows, phase_w.rows, (phase_h.count, phase_w.count), taps, single))
    return tuple(result)


def _channel_major(x: np.ndarray, group: int) -> np.ndarray:
    """``(N, Cin, H, W)`` -> ``(G, cig, N*H*W)``, a contiguous copy in the workspace."""
    n, cin, h, w = x.shape
    copy = _workspace("channel_major", (group, cin // group, n, h * w), x.dtype)
    copy[...] = x.reshape(n, group, cin // group, h * w).transpose(1, 2, 0, 3)
    return copy.reshape(group, cin // group, n * h * w)


def _padded_input(x: np.ndarray, spec: Conv2dTransposeSpec) -> np.ndarray:
    """``(N, Cin, H, W)`` -> ``(G, cig, N, H + pads, W + pads)``, zero-padded for the phase taps."""
    n, cin, h, w = x.shape
    (top, bottom), (left, right) = (phase_padding(plan, size) for plan, size in zip(spec.axes, (h, w)))
    padded = _workspace("padded", (spec.group, cin // spec.group, n, h + top + bottom, w + left + right), x.dtype)
    padded[..., :top, :] = 0
    padded[..., top + h:, :] = 0
    padded[..., :left] = 0
    padded[..., w + left:] = 0
    padded[..., top:top + h, left:left + w] = x.reshape(n, spec.group, cin // spec.group, h, w).transpose(1, 2, 0, 3, 4)
    return padded


def _phase_pairs(spec: Conv2dTransposeSpec, h: int, w: int) -> Iterator[Tuple[Phase, Phase]]:
    """Every (height phase, width phase) that some tap reaches."""
    for phase_h in axis_phases(spec.axes[0], h):
        for phase_w in axis_phases(spec.axes[1], w):
            if phase_h.taps and phase_w.taps:
                yield phase_h, phase_w


def _phase_kernel(weight: np.ndarray, spec: Conv2dTransposeSpec, phase_h: Phase, phase_w: Phase) -> np.ndarray:
    """The sub-kernel of one phase, ``(G, cog, T*cig)``, taps in :func:`_stack_phase` order."""
    cin, cog = weight.shape[:2]
    weight_g = weight.reshape(spec.group, cin // spec.group, cog, *spec.kernel_size)
    picked = [weight_g[:, :, :, th, tw] for th, _ in phase_h.taps for tw, _ in phase_w.taps]
    return np.stack(picked, axis=1).transpose(0, 3, 1, 2).reshape(spec.group, cog, -1)


def _phase_slices(spec: Conv2dTransposeSpec, h: int, w: int, phase_h: Phase, phase_w: Phase) -> Iterator[tuple]:
    """For each tap of the phase, the slice of the padded input it reads."""
    (top, _), (left, _) = (phase_padding(plan, size) for plan, size in zip(spec.axes, (h, w)))
    for _, shift_h in phase_h.taps:
        for _, shift_w in phase_w.taps:
            yield (Ellipsis, slice(top + shift_h, top + shift_h + phase_h.count),
                   slice(left + shift_w, left + shift_w + phase_w.count))


def _stack_phase(padded: np.ndarray, spec: Conv2dTransposeSpec, h: int, w: int,
                 phase_h: Phase, phase_w: Phase) -> np.ndarray:
    """im2col over one phase's taps: ``(G, T*cig, N*rows*cols)``."""
    group, cig, n = padded.shape[:3]
    taps = len(phase_h.taps) * len(phase_w.taps)
    stacked = _workspace("stacked", (group, taps, cig, n, phase_h.count, phase_w.count), padded.dtype)
    for index, source in enumerate(_phase_slices(spec, h, w, phase_h, phase_w)):
        stacked[:, index] = padded[source]
    return stacked.reshape(group, taps * cig, -1)


# ---------------------------------------------------------------------------- forward routes

def _forward_col2im(window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec) -> None:
    n, cin, h, w = x.shape
    weight_t = weight.reshape(spec.group, cin // spec.group, -1).transpose(0, 2, 1)   # (G, cog*K, cig)
    cols = np.matmul(weight_t, x.reshape(n, spec.group, cin // spec.group, h * w),  # (n, G, cog*K, h*w)
                     out=_workspace("cols", (n, spec.group, weight_t.shape[1], h * w), x.dtype))
    taps = cols.reshape(n, spec.out_channels, *spec.kernel_size, h, w)
    # per stride phase: sum its taps' slabs in a contiguous buffer, then write its rows once
    for phase in _phase_sums(spec, h, w):
        if phase.single:  # a kernel no longer than the stride: a plain copy
            th, tw, source, _ = phase.taps[0]
            window[:, :, phase.rows, phase.cols] = taps[(slice(None), slice(None), th, tw) + source]
            continue
        acc = _workspace("acc", (n, spec.out_channels) + phase.shape, x.dtype, zero=True)
        for th, tw, source, target in phase.taps:
            acc[(Ellipsis,) + target] += taps[(slice(None), slice(None), th, tw) + source]
        window[:, :, phase.rows, phase.cols] = acc


def _forward_col2im_nhwc(window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec) -> None:
    n, cin, h, w = x.shape
    group, cig, cog = spec.group, cin // spec.group, spec.out_channels // spec.group
    k_h, k_w = spec.kernel_size
    pixels = _workspace("pixels", (group, n, h, w, cig), x.dtype)
    pixels[...] = x.reshape(n, group, cig, h, w).transpose(1, 0, 3, 4, 2)
    pixels = pixels.reshape(group, n * h * w, cig)
    kernel = weight.reshape(group, cig, cog, k_h, k_w).transpose(0, 1, 3, 4, 2).reshape(group, cig, -1)
    cols = np.matmul(pixels, kernel, out=_workspace("cols", (group, n * h * w, kernel.shape[2]), x.dtype))
    cols = cols.reshape(group, n, h, w, k_h, k_w, cog)
    acc = _workspace("acc", (n,) + window.shape[2:] + (group, cog), window.dtype, zero=True)  # channels-last window
    for kh, kw, (rows, columns), (out_rows, out_cols) in _tap_windows(spec, h, w):
        acc[:, out_rows, out_cols] += cols[:, :, rows, columns, kh, kw].transpose(1, 2, 3, 0, 4)
    window[...] = acc.reshape(acc.shape[:3] + (spec.out_channels,)).transpose(0, 3, 1, 2)


def _forward_phases(window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec) -> None:
    n, cin, h, w = x.shape
    group, cig, cog = spec.group, cin // spec.group, spec.out_channels // spec.group
    (top, _), (left, _) = (phase_padding(plan, size) for plan, size in zip(spec.axes, (h, w)))
    padded = _padded_input(x, spec)                                                   # (G, cig, n, Hp, Wp)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    for phase_h, phase_w in _phase_pairs(spec, h, w):
        rows, cols = phase_h.count, phase_w.count
        # stack only the width taps; each height tap is then a row offset into the stack
        stacked = _workspace("stacked", (group, len(phase_w.taps), cig, n, padded.shape[3], cols), x.dtype)
        for index, (_, shift_w) in enumerate(phase_w.taps):
            stacked[:, index] = padded[..., left + shift_w:left + shift_w + cols]
        acc = _workspace("acc", (n, group, cog, rows * cols), x.dtype)
        part = _workspace("part", (n, group, cog, rows * cols), x.dtype)
        for index, (th, shift_h) in enumerate(phase_h.taps):
            operand = stacked[..., top + shift_h:top + shift_h + rows, :].transpose(3, 0, 1, 2, 4, 5)
            operand = operand.reshape(n, group, -1, rows * cols)                       # (n, G, Tw*cig, m)
            kernel = np.stack([weight_g[:, :, :, th, tw] for tw, _ in phase_w.taps], axis=1)  # (G, Tw, cig, cog)
            kernel = kernel.reshape(group, -1, cog).transpose(0, 2, 1)                 # (G, cog, Tw*cig)
            np.matmul(kernel, operand, out=acc if index == 0 else part)
            if index:
                acc += part
        window[:, :, phase_h.rows, phase_w.rows] = acc.reshape(n, spec.out_channels, rows, cols)


FORWARD_ROUTES: Dict[str, Callable[..., None]] = {
    "col2im": _forward_col2im, "col2im_nhwc": _forward_col2im_nhwc, "phases": _forward_phases}


# ---------------------------------------------------------------------------- backward routes

def _backward_im2col(grad_window: np.ndarray, x: np.ndarray, weight: np.ndarray,
                     spec: Conv2dTransposeSpec) -> Tuple[np.ndarray, np.ndarray]:
    n, cin, h, w = x.shape
    taps = list(_tap_windows(spec, h, w))
    # zero-filling is needed only where some tap does not reach (a kernel no longer than the
    # stride, as in U-Net's k=s=2, reaches everywhere)
    complete = len(taps) == spec.kernel_size[0] * spec.kernel_size[1] and all(
        source == (slice(0, h), slice(0, w)) for _, _, source, _ in taps)
    cols = _workspace("cols", (spec.out_channels, *spec.kernel_size, n, h, w), grad_window.dtype, zero=not complete)
    for kh, kw, source, target in taps:
        cols[(slice(None), kh, kw, Ellipsis) + source] = grad_window[(Ellipsis,) + target].transpose(1, 0, 2, 3)
    cols = cols.reshape(spec.group, -1, n * h * w)                                    # (G, cog*K, n*h*w)
    weight_g = weight.reshape(spec.group, cin // spec.group, -1)                      # (G, cig, cog*K)
    dx = np.matmul(weight_g, cols, out=_workspace("dx", (spec.group, weight_g.shape[1], n * h * w), x.dtype))
    dx = dx.reshape(cin, n, h, w).transpose(1, 0, 2, 3)                               # copied out by the caller
    # cols @ x^T, then a small transpose: 15-30% faster than x @ cols^T in OpenBLAS when
    # the channels are few (measured on the benchmark shapes)
    dweight_t = np.matmul(cols, _channel_major(x, spec.group).transpose(0, 2, 1))     # (G, cog*K, cig)
    return dx, dweight_t.transpose(0, 2, 1).reshape(weight.shape)


def _backward_phases(grad_window: np.ndarray, x: np.ndarray, weight: np.ndarray,
                     spec: Conv2dTransposeSpec) -> Tuple[np.ndarray, np.ndarray]:
    n, cin, h, w = x.shape
    group, cig, cog = spec.group, cin // spec.group, weight.shape[1]
    padded = _padded_input(x, spec)
    dpadded = np.zeros_like(padded)
    dweight = np.zeros((group, cig, cog) + spec.kernel_size, dtype=weight.dtype)
    for phase_h, phase_w in _phase_pairs(spec, h, w):
        grad = grad_window[:, :, phase_h.rows, phase_w.rows].transpose(1, 0, 2, 3).reshape(group, cog, -1)
        stacked = _stack_phase(padded, spec, h, w, phase_h, phase_w)                 # (G, T*cig, m)
        sub_dweight = np.matmul(stacked, grad.transpose(0, 2, 1)).reshape(group, -1, cig, cog)
        dstacked = np.matmul(_phase_kernel(weight, spec, phase_h, phase_w).transpose(0, 2, 1), grad)
        dstacked = dstacked.reshape(group, -1, cig, n, phase_h.count, phase_w.count)
        taps = [(th, tw) for th, _ in phase_h.taps for tw, _ in phase_w.taps]
        for index, (source, (th, tw)) in enumerate(zip(_phase_slices(spec, h, w, phase_h, phase_w), taps)):
            dweight[:, :, :, th, tw] = sub_dweight[:, index]
            dpadded[source] += dstacked[:, index]
    (top, _), (left, _) = (phase_padding(plan, size) for plan, size in zip(spec.axes, (h, w)))
    dx = dpadded[..., top:top + h, left:left + w].reshape(cin, n, h, w).transpose(1, 0, 2, 3)
    return dx, dweight.reshape(weight.shape)


BACKWARD_ROUTES: Dict[str, Callable[..., Tuple[np.ndarray, np.ndarray]]] = {
    "im2col": _backward_im2col, "phases": _backward_phases}


# ---------------------------------------------------------------------------- entry points

def forward(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray],
            spec: Conv2dTransposeSpec) -> np.ndarray:
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
        chosen = plan(spec, x.shape)
        route = FORWARD_ROUTES[chosen.forward]
        weight_work = weight.astype(work, copy=False)
        _run_chunks(lambda batch: route(window[batch], x[batch].astype(work, copy=False), weight_work, spec),
                    _batch_chunks(spec, x.shape, work.itemsize, chosen.threads), chosen.threads)
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
    result[:, :, :window.shape[2], :window.shape[3]] = rounded
    return result


def backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray,
             spec: Conv2dTransposeSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``sum(forward(x, weight, bias) * grad_out)``.

    Args:
        x: ``(N, Cin, H, W)``, the forward input.
        weight: ``(Cin, Cout // group, kH, kW)``.
        grad_out: ``(N, Cout, H_out, W_out)``, the upstream gradient (output shape).
        spec: the validated arguments.

    Returns:
        ``(dx, dweight, dbias)`` with the shapes of x, weight and ``(Cout,)``, in x's dtype.
    """
    dtype = x.dtype
    work = _compute_dtype(dtype)
    _, _, win_h, win_w = spec.window_shape(x.shape)
    grad_window = grad_out[:, :, :win_h, :win_w].astype(work, copy=False)
    dbias = grad_window.sum(axis=(0, 2, 3))
    dx = np.zeros(x.shape, dtype=work)
    dweight = np.zeros(weight.shape, dtype=work)
    if x.size:
        chosen = plan(spec, x.shape)
        route = BACKWARD_ROUTES[chosen.backward]
        weight_work = weight.astype(work, copy=False)

        def chunk(batch: slice) -> np.ndarray:
            dx[batch], dweight_part = route(grad_window[batch], x[batch].astype(work, copy=False), weight_work, spec)
            return dweight_part

        chunks = _batch_chunks(spec, x.shape, work.itemsize, chosen.threads)
        for dweight_part in _run_chunks(chunk, chunks, chosen.threads):
            dweight += dweight_part
    return dx.astype(dtype, copy=False), dweight.astype(dtype, copy=False), dbias.astype(dtype, copy=False)
