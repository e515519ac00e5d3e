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
  a dense stride-1 correlation (:func:`axis_phases`). The input rows that the phase's height
  taps read are copied once, stacked over its width taps (im2col along the width); each
  height tap is then a row offset into that stack, so the phase is ``T_h`` products
  ``(cog, T_w*cig) @ (T_w*cig, rows*cols)`` per image, summed and written once into the
  window. A height tap's product covers only the phase rows whose input row exists, and
  height taps whose rows lie far apart (a dilation larger than the image) get stacks of
  their own, so nothing is padded by ``dilation * kernel``. Moves about ``Cin*K/T_h`` values
  per input pixel: best when ``Cin <= Cout``.

Backward, derived from the same sums. With ``G`` the upstream gradient restricted to the
window (cropped rows, the zero extension and output_padding rows carry no gradient):

- ``im2col`` (adjoint of col2im): ``gcols[g, (co, kh, kw), (n, i, j)] = G[n, g*cog+co,
  i*s_h + kh*d_h - top, j*s_w + kw*d_w - left]`` (zero outside the window), then
  ``dx_g = W_g @ gcols_g`` and ``dw_g = X_g @ gcols_g^T``.
- ``phases`` (adjoint of phases): per phase, with ``S`` the stacked input rows (zero where a
  tap reads outside the input) and ``G_p`` the phase's gradient rows, ``dW_p = S @ G_p^T``
  and ``dS = W_p^T @ G_p``, whose rows that exist in the input are added into dx.

``db`` sums G over the window only, never over output_padding rows.

dtypes: float32 and float64 compute in their own dtype. float16 computes in float32 and
rounds as MindSpore does: ``y = fp16(fp16(conv_fp32) + bias)`` (the bias add is one exact
sum rounded once), and each gradient is the float32 result rounded once to float16.

NaN and inf: every result entry is the sum of exactly the products the direct sum has (the
float64 loop oracle of the tests), so NaN and inf reach exactly the entries they reach there.
Where a route multiplies a stored zero (a tap that reads outside the input or lands outside
the window), a finite factor makes the product an exact zero; a non-finite one would make
``0 * inf = NaN``. That can only happen when both that factor's array and the result are
non-finite, which is checked after the product (on the smaller array first: a dot product
over the weight or the result, no temporary), and then the affected part is recomputed
with the zero products left out: the weight gradient per tap (a tap that lands only in
cropped rows gets the contributions of the rows it does reach, none if none), ``dx`` of the
``im2col`` route per tap, the forward of the ``phases`` route by ``col2im``. Finite inputs
never take that path.

Memory (working memory: everything a call allocates besides its inputs and results). The
batch is processed in chunks whose working buffers together stay within ``chunk_bytes``
(default 64 MiB, see :func:`set_chunk_bytes`; chunks run on two threads share it). A single
image larger than that is split inside the route, down to a unit that cannot be split:

- ``col2im``: blocks of output channels (whole groups, or part of one group); the unit is
  one output channel of one image, ``K*H*W`` columns plus the largest phase sum.
- ``phases``: bands of window rows per stride phase; the unit is one window row of one
  phase, about ``G*cols*(T_w*cig*T_h + 2*cog)`` values.
- ``im2col``: bands of input rows; the unit is one input row, ``W*(Cout*K + 2*Cin)`` values.
- ``phases`` backward: bands of window rows per phase; the unit is one row,
  ``cols*(Cout + 2*T*Cin)`` values.
- ``col2im_nhwc`` is not split: the planner leaves it for ``col2im`` when one image exceeds
  the budget.

Not counted in the budget: weight-sized buffers (sub-kernels, each chunk's weight
gradient), the float32 copies of float16 arrays and the float16 rounding (input- and
output-sized), and the exact recomputation above (up to one copy of a chunk's input and
gradient). None of it grows with the stride or the dilation: the work follows the input
rows each tap actually reads. Intermediate buffers live in a per-thread workspace kept
between calls (see :func:`_workspace` for why; :func:`release_workspace` frees it).
Threads: only for depthwise-like products are batch chunks spread over a 2-thread pool
(see :func:`plan`).
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
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, TypeVar

import numpy as np

from ..spec import AxisPlan, Conv2dTransposeSpec, tap_window

T = TypeVar("T")

_chunk_bytes = 64 * 2**20
# Below this many bytes of intermediate data, a thread hand-off costs more than it saves.
_PARALLEL_BYTES = 4 * 2**20
_workers = min(2, os.cpu_count() or 1)
_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
_forced: contextvars.ContextVar[Tuple[Optional[str], Optional[str]]] = contextvars.ContextVar(
    "convtranspose_forced_routes", default=(None, None)
)


def set_chunk_bytes(limit: int) -> None:
    """Set the NumPy engine's working-memory budget per batch chunk, in bytes.

    The engine splits the batch, and a single image that alone exceeds the budget, so that
    the scratch buffers of one chunk stay within ``limit`` (see the module docstring for the
    few units that cannot be split). Larger budgets mean fewer, larger BLAS products.

    Args:
        limit: a positive int (default 64 MiB).

    Raises:
        TypeError: ``limit`` is not an int.
        ValueError: ``limit`` is not positive.

    Example:
        >>> set_chunk_bytes(16 * 2 ** 20)
        >>> set_chunk_bytes(64 * 2 ** 20)
    """
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


def _thread_slots() -> Dict[str, np.ndarray]:
    thread = threading.current_thread()
    slots = _slots_by_thread.get(thread)
    if slots is None:
        slots = _slots_by_thread[thread] = {}
    return slots


def _grow(slots: Dict[str, np.ndarray], slot: str, size: int) -> np.ndarray:
    # Drop the old buffer first: when no view of it is alive its memory goes back before
    # the larger one is taken, so a growing slot never holds both.
    slots.pop(slot, None)
    buffer = slots[slot] = np.empty(max(size, 1), dtype=np.uint8)
    return buffer


def _workspace(slot: str, shape: Tuple[int, ...], dtype: np.dtype, zero: bool = False) -> np.ndarray:
    """A scratch array kept per thread and slot, grown as needed and reused across calls.

    Fresh multi-megabyte arrays come back from the allocator as new zero pages whose first
    touch costs as much as the copy itself (measured: the same forward took 2.6 or 6.6 ms
    depending on the heap's state). Nothing returned to the caller ever lives here.
    """
    slots = _thread_slots()
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buffer = slots.get(slot)
    if buffer is None or buffer.nbytes < size:
        buffer = _grow(slots, slot, size)
    array = buffer[:size].view(dtype).reshape(shape)
    if zero:
        array.fill(0)
    return array


def _reserve(slot: str, size: int) -> None:
    """Grow a slot to ``size`` bytes before a loop whose steps ask for different sizes.

    Otherwise the slot could grow step by step while the previous step's view keeps the old
    buffer alive, holding both at once.
    """
    slots = _thread_slots()
    buffer = slots.get(slot)
    if buffer is None or buffer.nbytes < size:
        _grow(slots, slot, size)


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


# ---------------------------------------------------------------------------- budget


def _budget(threads: bool) -> int:
    """Working-memory budget of one chunk: chunks on the pool's threads run at once."""
    return max(1, _chunk_bytes // _workers) if threads and _workers > 1 else _chunk_bytes


def _largest(fits: Callable[[int], bool], most: int) -> int:
    """The largest count in ``[1, most]`` for which ``fits`` holds (1 when none does).

    ``fits`` must be monotone: true up to some count, false above it.
    """
    if most <= 1 or fits(most):
        return max(most, 1)
    low, high = 1, most  # fits(high) is false
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


@functools.lru_cache(maxsize=1024)
def _spans(length: int, step: int) -> Tuple[Tuple[int, int], ...]:
    """``(start, stop)`` of the pieces of ``range(length)`` at most ``step`` long."""
    return tuple((start, min(length, start + step)) for start in range(0, length, step))


def _batch_chunks(n: int, per_image: int, budget: int, threads: bool) -> List[slice]:
    """Batch slices whose working memory (``per_image`` bytes an image) fits ``budget``.

    One image at least (the routes split it further). With ``threads`` (and enough work)
    there is at least one slice per worker.
    """
    if n * per_image <= budget and not threads:
        return [slice(0, n)]
    step = _largest(lambda count: count * per_image <= budget, n)
    if threads and n * per_image >= _PARALLEL_BYTES:
        step = min(step, -(-n // _workers))
    return [slice(start, stop) for start, stop in _spans(n, step)]


def _run_chunks(task: Callable[[slice], T], chunks: List[slice], threads: bool) -> Iterator[T]:
    """Run ``task`` on every chunk, on a small thread pool when there are several.

    NumPy releases the GIL in BLAS and in element-wise loops, so while one chunk is in a
    BLAS product (which OpenBLAS runs on all cores) the other's copies and adds proceed.
    Chunks write disjoint batch slices, so no locking is needed. Results come one by one,
    and threads take the chunks in waves of one per worker, so no more results (each
    chunk's weight gradient) wait at once than there are workers.
    """
    if not threads or len(chunks) < 2 or _workers < 2:
        for chunk in chunks:
            yield task(chunk)
        return
    pool = _get_pool()
    for start in range(0, len(chunks), _workers):
        futures = [pool.submit(task, chunk) for chunk in chunks[start : start + _workers]]
        for future in futures:
            yield future.result()


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

    @property
    def spread(self) -> int:
        """How far apart the input rows of its first and last taps are (``max - min`` shift)."""
        shifts = [shift for _, shift in self.taps]
        return max(shifts) - min(shifts)

    def band(self, first: int, stop: int) -> slice:
        """The window rows of phase rows ``first .. stop - 1``."""
        start, step = self.rows.start, self.rows.step
        return slice(start + first * step, start + (stop - 1) * step + 1, step)


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
    return _phases(plan, n, reading_only=False)


@functools.lru_cache(maxsize=4096)
def _reading_phases(plan: AxisPlan, n: int) -> Tuple[Phase, ...]:
    """:func:`axis_phases` keeping only the taps that read some input row, and the phases left with one.

    The others add nothing (a dilation far larger than the image leaves most taps outside),
    so neither the work nor the working-memory estimates count them, and this cache (the
    one the routes use) holds no more taps than read the input, even for a kernel of 10**5.
    """
    return _phases(plan, n, reading_only=True)


def _phases(plan: AxisPlan, n: int, reading_only: bool) -> Tuple[Phase, ...]:
    window = plan.window_length(n)
    taps_by_phase: Dict[int, List[Tuple[int, int]]] = {}
    for tap in range(plan.kernel):
        phase = (tap * plan.dilation - plan.crop_before) % plan.stride
        if phase < window:
            shift = (phase + plan.crop_before - tap * plan.dilation) // plan.stride
            # phase row m reads input row m + shift, m < count = ceil((window - phase) / stride)
            if not reading_only or max(0, shift) < min(n, shift - ((phase - window) // plan.stride)):
                taps_by_phase.setdefault(phase, []).append((tap, shift))
    return tuple(
        Phase(slice(phase, window, plan.stride), len(range(phase, window, plan.stride)), tuple(taps))
        for phase, taps in sorted(taps_by_phase.items())
    )


class _Read(NamedTuple):
    """A height tap's read for a band of phase rows.

    Input rows ``first .. stop - 1``, which land on band rows ``offset ..``.
    """

    tap: int
    first: int
    stop: int
    offset: int


def _band_reads(phase: Phase, first: int, stop: int, n: int) -> List[_Read]:
    """The taps of ``phase`` that read some input row for phase rows ``first .. stop - 1``."""
    reads = []
    for tap, shift in phase.taps:
        low, high = max(0, first + shift), min(n, stop + shift)
        if low < high:
            reads.append(_Read(tap, low, high, low - shift - first))
    return reads


def _clusters(reads: Sequence[_Read]) -> List[Tuple[int, int, List[_Read]]]:
    """Reads whose input rows overlap or touch, grouped: ``(first, stop, reads)`` each.

    One stack serves each group; reads far apart (a dilation larger than the image) get
    their own, so the stack holds no rows between them.
    """
    groups: List[Tuple[int, int, List[_Read]]] = []
    for read in sorted(reads, key=lambda item: item.first):
        if groups and read.first <= groups[-1][1]:
            first, stop, members = groups[-1]
            groups[-1] = (first, max(stop, read.stop), members + [read])
        else:
            groups.append((read.first, read.stop, [read]))
    return groups


def _width_reads(phase: Phase, n: int) -> List[Tuple[int, slice, slice]]:
    """``(tap, input_cols, phase_cols)`` of the width taps that read some input column.

    Window columns no tap reads receive only the bias: the window keeps its zeros there.
    """
    reads = []
    for tap, shift in phase.taps:
        found = phase.overlap(shift, n)
        if found is not None:
            reads.append((tap, found[0], found[1]))
    return reads


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
    """The col2im route's per-phase work, from the phases' reading taps (cached per shape)."""
    result = []
    for phase_h, phase_w in _phase_pairs(spec, h, w):
        taps = tuple(
            (th, tw, (rows[0], cols[0]), (rows[1], cols[1]))
            for th, shift_h in phase_h.taps
            for tw, shift_w in phase_w.taps
            for rows, cols in [(phase_h.overlap(shift_h, h), phase_w.overlap(shift_w, w))]
        )
        whole = (slice(0, phase_h.count), slice(0, phase_w.count))
        single = len(taps) == 1 and taps[0][3] == whole
        result.append(_PhaseSum(phase_h.rows, phase_w.rows, (phase_h.count, phase_w.count), taps, single))
    return tuple(result)


def _phase_pairs(spec: Conv2dTransposeSpec, h: int, w: int) -> Iterator[Tuple[Phase, Phase]]:
    """Every (height phase, width phase) where some tap reads the input; only those taps."""
    for phase_h in _reading_phases(spec.axes[0], h):
        for phase_w in _reading_phases(spec.axes[1], w):
            yield phase_h, phase_w


def _view(array: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """``array`` seen with another shape, never a copy (the routes write through it)."""
    view = array.view()
    view.shape = shape  # raises instead of copying when the strides do not allow it
    return view


def _by_group(array: np.ndarray, group: int) -> np.ndarray:
    """``(N, C, H, W)`` seen as ``(N, G, C/G, H, W)``."""
    n, channels = array.shape[:2]
    return _view(array, (n, group, channels // group) + array.shape[2:])


def _channel_major(x: np.ndarray, group: int) -> np.ndarray:
    """``(N, Cin, H, W)`` -> ``(G, cig, N*H*W)``, a contiguous copy in the workspace."""
    n, cin, h, w = x.shape
    copy = _workspace("channel_major", (group, cin // group, n, h, w), x.dtype)
    copy[...] = x.reshape(n, group, cin // group, h, w).transpose(1, 2, 0, 3, 4)
    return copy.reshape(group, cin // group, n * h * w)


def _finite(array: np.ndarray) -> bool:
    """True when every entry is finite (a dot product or a sum: no temporary array)."""
    if array.size == 0:
        return True
    if array.flags.c_contiguous or array.flags.f_contiguous:  # BLAS raises no floating-point warnings
        flat = array.ravel(order="K")  # a view in either order
        return math.isfinite(np.dot(flat, flat))
    with np.errstate(all="ignore"):  # an overflow only sends the caller to the exact path
        return bool(np.isfinite(np.add.reduce(array, axis=None)))


def _none_finite(first: np.ndarray, second: np.ndarray) -> bool:
    """True when neither array is all finite; the smaller is checked first, as it is cheaper."""
    if first.size > second.size:
        first, second = second, first
    return not _finite(first) and not _finite(second)


def _exact_dweight(
    dweight: np.ndarray, grad_window: np.ndarray, x: np.ndarray, spec: Conv2dTransposeSpec, group: int
) -> None:
    """Recompute, in place, the taps of ``dweight`` that hold a NaN, from the rows they reach.

    A route multiplies stored zeros where a tap reads outside the input or lands outside the
    window; against an inf or NaN that is a NaN the direct sum does not have. Here each such
    tap is the product of the input rows/columns that reach the window with the gradient
    they land on, and nothing else (zero for a tap that lands only in cropped rows).
    """
    n, cin, h, w = x.shape
    cig = cin // group
    dweight_g = _view(dweight, (group, cig, dweight.shape[1]) + dweight.shape[2:])
    reach = {(kh, kw): (source, target) for kh, kw, source, target in _tap_windows(spec, h, w)}
    for kh in range(spec.kernel_size[0]):
        for kw in range(spec.kernel_size[1]):
            tap = dweight_g[..., kh, kw]
            if not np.isnan(tap).any():
                continue
            if (kh, kw) not in reach:
                tap[...] = 0
                continue
            source, target = reach[(kh, kw)]
            inputs = _by_group(x[(Ellipsis,) + source], group).transpose(1, 2, 0, 3, 4).reshape(group, cig, -1)
            grads = _by_group(grad_window[(Ellipsis,) + target], group).transpose(1, 2, 0, 3, 4)
            tap[...] = np.matmul(inputs, grads.reshape(group, grads.shape[1], -1).transpose(0, 2, 1))


def _exact_dx(
    grad_window: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, dx: np.ndarray
) -> None:
    """Recompute ``dx`` in place from each tap's product over the window positions it lands on (no stored zeros)."""
    n, cin, h, w = dx.shape
    cig, cog = cin // group, weight.shape[1]
    dx_g = _by_group(dx, group)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    dx.fill(0)
    for kh, kw, (rows, cols), target in _tap_windows(spec, h, w):
        grads = _by_group(grad_window[(Ellipsis,) + target], group)  # (n, G, cog, a, b)
        part = np.matmul(np.ascontiguousarray(weight_g[..., kh, kw]), grads.reshape(n, group, cog, -1))
        dx_g[:, :, :, rows, cols] += part.reshape(n, group, cig, *grads.shape[3:])


# ---------------------------------------------------------------------------- working memory
# Values each route holds at once for ``n`` images (or a band of rows), as the routes below
# allocate them; the batch is chunked and the routes split an image from these.


@functools.lru_cache(maxsize=1024)
def _largest_phase_sum(spec: Conv2dTransposeSpec, h: int, w: int) -> int:
    """Values per image and output channel of col2im's largest phase sum (0: none)."""
    return max((math.prod(phase.shape) for phase in _phase_sums(spec, h, w) if not phase.single), default=0)


def _col2im_channel_elements(spec: Conv2dTransposeSpec, h: int, w: int) -> int:
    """Per image and output channel: the columns and the largest phase sum."""
    return spec.kernel_size[0] * spec.kernel_size[1] * h * w + _largest_phase_sum(spec, h, w)


def _phases_forward_slots(spec: Conv2dTransposeSpec, h: int, w: int, band: int) -> Tuple[int, int]:
    """Values per image and input/output channel of the phases route's stack and sums.

    For bands of ``band`` window rows per phase: the largest stack (the input rows of the
    height taps, once per width tap) and the largest band (``acc`` and ``part`` each), over
    the phase pairs; the slots are reused from pair to pair, so each needs its largest.
    """
    stack = rows = 0
    for phase_h, phase_w in _phase_pairs(spec, h, w):
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
    for phase_h, phase_w in _phase_pairs(spec, h, w):
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
    most = max((phase.count for phase in _reading_phases(spec.axes[0], h)), default=1)
    return _largest(lambda band: n * itemsize * elements(spec, h, w, band) <= budget, most)


@functools.lru_cache(maxsize=1024)
def _forward_bytes(route: str, spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of ``route`` on ``x_shape`` in one piece."""
    n, cin, h, w = x_shape
    cout, k = spec.out_channels, spec.kernel_size[0] * spec.kernel_size[1]
    if route == "col2im":
        elements = cout * _col2im_channel_elements(spec, h, w)
    elif route == "col2im_nhwc":
        _, _, win_h, win_w = spec.window_shape(x_shape)
        elements = cin * h * w + cout * (k * h * w + win_h * win_w)
    else:
        elements = _phases_forward_elements(spec, h, w, max(1, spec.axes[0].window_length(h)))
    return n * elements * itemsize


@functools.lru_cache(maxsize=1024)
def _backward_bytes(route: str, spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of ``route`` on ``x_shape`` in one piece."""
    n, cin, h, w = x_shape
    cout, k = spec.out_channels, spec.kernel_size[0] * spec.kernel_size[1]
    if route == "im2col":
        elements = h * w * (cout * k + 2 * cin)
    else:
        elements = _phases_backward_elements(spec, h, w, max(1, spec.axes[0].window_length(h)))
    return n * elements * itemsize


@functools.lru_cache(maxsize=1024)
def _tuned_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """A chunk size per image that the benchmarks found fast, whatever the route needs.

    ``max(Cin, Cout)*K*H*W`` plus twice the output: smaller chunks than the working memory
    alone allows where the input has many more channels than the output, which keeps the
    products' operands in cache (measured: dcgan_last backward 18.4 ms with these chunks,
    22.9 ms with all 64 images in one). It never exceeds the budget: chunks are sized for
    the larger of this and the working memory.
    """
    n, cin, h, w = x_shape
    channels = max(cin, spec.out_channels)
    return (
        channels * spec.kernel_size[0] * spec.kernel_size[1] * h * w + 2 * math.prod(spec.output_shape(x_shape))
    ) * itemsize


# ---------------------------------------------------------------------------- forward routes


def _forward_col2im(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
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
        blocks = [(first, stop, 0, cog) for first, stop in _spans(group, step)]
    else:
        step = max(1, budget // per_channel)
        blocks = [(g, g + 1, first, stop) for g in range(group) for first, stop in _spans(cog, step)]
    window_g = _by_group(window, group)
    for g_first, g_stop, c_first, c_stop in blocks:
        block = window_g[:, g_first:g_stop, c_first:c_stop]
        _col2im(
            _view(block, (n, (g_stop - g_first) * (c_stop - c_first)) + window.shape[2:]),
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
        out=_workspace("cols", (n, group, weight_t.shape[1], h * w), x.dtype),
    )
    taps = cols.reshape(n, cout, *spec.kernel_size, h, w)
    _reserve("acc", n * cout * _largest_phase_sum(spec, h, w) * x.dtype.itemsize)
    # per stride phase: sum its taps' slabs in a contiguous buffer, then write its rows once
    for phase in _phase_sums(spec, h, w):
        if phase.single:  # a kernel no longer than the stride: a plain copy
            th, tw, source, _ = phase.taps[0]
            window[:, :, phase.rows, phase.cols] = taps[(slice(None), slice(None), th, tw) + source]
            continue
        acc = _workspace("acc", (n, cout) + phase.shape, x.dtype, zero=True)
        for th, tw, source, target in phase.taps:
            acc[(Ellipsis,) + target] += taps[(slice(None), slice(None), th, tw) + source]
        window[:, :, phase.rows, phase.cols] = acc


def _forward_col2im_nhwc(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
    # not split: the planner leaves this route for col2im when one image exceeds the budget
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    k_h, k_w = spec.kernel_size
    pixels = _workspace("pixels", (group, n, h, w, cig), x.dtype)
    pixels[...] = _by_group(x, group).transpose(1, 0, 3, 4, 2)
    pixels = pixels.reshape(group, n * h * w, cig)
    kernel = weight.reshape(group, cig, cog, k_h, k_w).transpose(0, 1, 3, 4, 2).reshape(group, cig, -1)
    cols = np.matmul(pixels, kernel, out=_workspace("cols", (group, n * h * w, kernel.shape[2]), x.dtype))
    cols = cols.reshape(group, n, h, w, k_h, k_w, cog)
    acc = _workspace("acc", (n,) + window.shape[2:] + (group, cog), window.dtype, zero=True)  # channels-last window
    for kh, kw, (rows, columns), (out_rows, out_cols) in _tap_windows(spec, h, w):
        acc[:, out_rows, out_cols] += cols[:, :, rows, columns, kh, kw].transpose(1, 2, 3, 0, 4)
    window[...] = acc.reshape(acc.shape[:3] + (group * cog,)).transpose(0, 3, 1, 2)


def _forward_phases(
    window: np.ndarray, x: np.ndarray, weight: np.ndarray, spec: Conv2dTransposeSpec, group: int, budget: int
) -> None:
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    itemsize = x.dtype.itemsize
    x_g, window_g = _by_group(x, group), _by_group(window, group)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    # one band length for every phase pair, so that the slots' largest sizes fit together
    band = _phase_band(_phases_forward_elements, spec, x.shape, itemsize, budget)
    stack, sums = _phases_forward_slots(spec, h, w, band)
    _reserve("stacked", n * cin * stack * itemsize)
    _reserve("acc", n * group * cog * sums * itemsize)
    part_reserved = False
    zero_filled = False
    for phase_h, phase_w in _phase_pairs(spec, h, w):
        width_reads = _width_reads(phase_w, w)
        cols = phase_w.count
        # columns a width tap reads outside the input stay zero in the stack
        partial = [(index, dst) for index, (_, _, dst) in enumerate(width_reads) if dst != slice(0, cols)]
        zero_filled = zero_filled or bool(partial)
        kernels = {
            tap: np.stack([weight_g[:, :, :, tap, tw] for tw, _, _ in width_reads], axis=1)
            .reshape(group, -1, cog)
            .transpose(0, 2, 1)
            for tap, _ in phase_h.taps
        }  # (G, cog, Tw*cig)
        for first, stop in _spans(phase_h.count, band):
            reads = _band_reads(phase_h, first, stop, h)
            if not reads:
                continue
            rows = stop - first
            acc = _workspace("acc", (n, group, cog, rows * cols), x.dtype)
            filled = False
            for low, high, members in _clusters(reads):
                stacked = _workspace("stacked", (n, group, len(width_reads), cig, high - low, cols), x.dtype)
                for index, dst in partial:
                    stacked[:, :, index, :, :, : dst.start] = 0
                    stacked[:, :, index, :, :, dst.stop :] = 0
                for index, (_, src, dst) in enumerate(width_reads):
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
                            _reserve("part", n * group * cog * sums * itemsize)
                            part_reserved = True
                        part = np.matmul(
                            kernels[read.tap], operand, out=_workspace("part", (n, group, cog, length), x.dtype)
                        )
                        acc[..., read.offset * cols : read.offset * cols + length] += part
                    filled = True
            window_g[:, :, :, phase_h.band(first, stop), phase_w.rows] = acc.reshape(n, group, cog, rows, cols)
    if zero_filled and _none_finite(weight, window):
        # a stored zero times an inf weight: recompute without stored zeros
        window[...] = 0
        _forward_col2im(window, x, weight, spec, group, budget)


FORWARD_ROUTES: Dict[str, Callable[..., None]] = {
    "col2im": _forward_col2im,
    "col2im_nhwc": _forward_col2im_nhwc,
    "phases": _forward_phases,
}


# ---------------------------------------------------------------------------- backward routes


@functools.lru_cache(maxsize=1024)
def _im2col_band(spec: Conv2dTransposeSpec, h: int, w: int, first: int, stop: int) -> Tuple[tuple, bool]:
    """The im2col route's taps for input rows ``first .. stop - 1``, and whether they fill them.

    ``(kh, kw, band_rows, input_cols, output_rows, output_cols)`` per tap reaching the window.
    Zero-filling is needed only where some tap does not reach (a kernel no longer than the
    stride, as in U-Net's k=s=2, reaches everywhere).
    """
    stride = spec.axes[0].stride
    taps = []
    for kh, kw, (src_rows, src_cols), (out_rows, out_cols) in _tap_windows(spec, h, w):
        low, high = max(src_rows.start, first), min(src_rows.stop, stop)
        if low < high:
            start = out_rows.start + (low - src_rows.start) * stride
            taps.append(
                (
                    kh,
                    kw,
                    slice(low - first, high - first),
                    src_cols,
                    slice(start, start + (high - low - 1) * stride + 1, stride),
                    out_cols,
                )
            )
    complete = len(taps) == spec.kernel_size[0] * spec.kernel_size[1] and all(
        rows == slice(0, stop - first) and cols == slice(0, w) for _, _, rows, cols, _, _ in taps
    )
    return tuple(taps), complete


def _backward_im2col(
    grad_window: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    spec: Conv2dTransposeSpec,
    group: int,
    budget: int,
    dx: np.ndarray,
) -> np.ndarray:
    n, cin, h, w = x.shape
    cout, (k_h, k_w) = grad_window.shape[1], spec.kernel_size
    cig = cin // group
    band = _largest(lambda rows: n * rows * w * (cout * k_h * k_w + 2 * cin) * x.dtype.itemsize <= budget, h)
    weight_g = weight.reshape(group, cig, -1)  # (G, cig, cog*K)
    dweight_t = None
    zero_filled = False
    for first, stop in _spans(h, band):
        rows = stop - first
        band_taps, complete = _im2col_band(spec, h, w, first, stop)
        zero_filled = zero_filled or not complete
        gcols = _workspace("cols", (cout, k_h, k_w, n, rows, w), grad_window.dtype, zero=not complete)
        for kh, kw, src_rows, src_cols, out_rows, out_cols in band_taps:
            gcols[:, kh, kw, :, src_rows, src_cols] = grad_window[:, :, out_rows, out_cols].transpose(1, 0, 2, 3)
        gcols = gcols.reshape(group, -1, n * rows * w)  # (G, cog*K, n*rows*w)
        product = np.matmul(weight_g, gcols, out=_workspace("dx", (group, cig, n * rows * w), x.dtype))
        dx[:, :, first:stop] = product.reshape(cin, n, rows, w).transpose(1, 0, 2, 3)
        # gcols @ x^T, then a small transpose: 15-30% faster than x @ gcols^T in OpenBLAS
        # when the channels are few (measured on the benchmark shapes)
        part = np.matmul(gcols, _channel_major(x[:, :, first:stop], group).transpose(0, 2, 1))  # (G, cog*K, cig)
        if dweight_t is None:
            dweight_t = part
        else:
            dweight_t += part
    dweight = dweight_t.transpose(0, 2, 1).reshape(weight.shape)
    if zero_filled:
        if _none_finite(weight, dx):
            _exact_dx(grad_window, weight, spec, group, dx)
        if _none_finite(x, dweight_t):  # dweight_t: the same values, contiguous
            _exact_dweight(dweight, grad_window, x, spec, group)
    return dweight


def _backward_phases(
    grad_window: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    spec: Conv2dTransposeSpec,
    group: int,
    budget: int,
    dx: np.ndarray,
) -> np.ndarray:
    n, cin, h, w = x.shape
    cig, cog = cin // group, weight.shape[1]
    itemsize = x.dtype.itemsize
    x_g, dx_g, grad_g = _by_group(x, group), _by_group(dx, group), _by_group(grad_window, group)
    weight_g = weight.reshape(group, cig, cog, *spec.kernel_size)
    dweight = np.zeros(weight_g.shape, dtype=x.dtype)
    # one band length for every phase pair, so that the slots' largest sizes fit together
    band = _phase_band(_phases_backward_elements, spec, x.shape, itemsize, budget)
    rows_most, tapped = _phases_backward_slots(spec, h, w, band)
    _reserve("grad", n * group * cog * rows_most * itemsize)
    _reserve("stacked", n * cin * tapped * itemsize)
    _reserve("dstacked", n * cin * tapped * itemsize)
    zero_filled = False
    for phase_h, phase_w in _phase_pairs(spec, h, w):
        width_reads = _width_reads(phase_w, w)
        cols = phase_w.count
        for first, stop in _spans(phase_h.count, band):
            rows = stop - first
            taps = [
                (read, tw, src, dst) for read in _band_reads(phase_h, first, stop, h) for tw, src, dst in width_reads
            ]
            if not taps:
                continue
            partial = any(
                read.offset or read.stop - read.first != rows or dst != slice(0, cols) for read, _, _, dst in taps
            )
            zero_filled = zero_filled or partial
            pixels = n * rows * cols
            grad = _workspace("grad", (group, cog, n, rows, cols), x.dtype)
            grad[...] = grad_g[:, :, :, phase_h.band(first, stop), phase_w.rows].transpose(1, 2, 0, 3, 4)
            grad = grad.reshape(group, cog, pixels)
            stacked = _workspace("stacked", (group, len(taps), cig, n, rows, cols), x.dtype, zero=partial)
            for index, (read, _, src, dst) in enumerate(taps):
                target = stacked[:, index, :, :, read.offset : read.offset + read.stop - read.first, dst]
                target[...] = x_g[:, :, :, read.first : read.stop, src].transpose(1, 2, 0, 3, 4)
            sub_dweight = np.matmul(stacked.reshape(group, -1, pixels), grad.transpose(0, 2, 1))
            sub_dweight = sub_dweight.reshape(group, len(taps), cig, cog)
            kernel = np.stack([weight_g[:, :, :, read.tap, tw] for read, tw, _, _ in taps], axis=1)
            dstacked = np.matmul(
                kernel.reshape(group, -1, cog),
                grad,
                out=_workspace("dstacked", (group, len(taps) * cig, pixels), x.dtype),
            )
            dstacked = dstacked.reshape(group, len(taps), cig, n, rows, cols)
            for index, (read, tw, src, dst) in enumerate(taps):
                dweight[:, :, :, read.tap, tw] += sub_dweight[:, index]
                source = dstacked[:, index, :, :, read.offset : read.offset + read.stop - read.first, dst]
                dx_g[:, :, :, read.first : read.stop, src] += source.transpose(2, 0, 1, 3, 4)
    dweight = dweight.reshape(weight.shape)
    if zero_filled and _none_finite(grad_window, dweight):
        _exact_dweight(dweight, grad_window, x, spec, group)
    return dweight


BACKWARD_ROUTES: Dict[str, Callable[..., np.ndarray]] = {"im2col": _backward_im2col, "phases": _backward_phases}


# ---------------------------------------------------------------------------- entry points

# _QUIET: the routes run with NumPy's "invalid value" warnings off. A stored zero times an
# inf raises that flag in NumPy's own small products though the result is then repaired
# (see the module docstring), and BLAS products never report it: NaN the inputs make
# arrives in the results without a warning, whatever the size.


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
        chosen = plan(spec, x.shape)
        budget = _budget(chosen.threads)
        image = (1,) + tuple(x.shape[1:])
        # the float32 copy of a float16 chunk
        converted = math.prod(image) * work.itemsize if dtype != work else 0
        name = chosen.forward
        per_image = _forward_bytes(name, spec, image, work.itemsize) + converted
        if name == "col2im_nhwc" and per_image > budget and _forced.get()[0] is None:
            name = "col2im"  # it cannot split an image; col2im can
            per_image = _forward_bytes(name, spec, image, work.itemsize) + converted
        route = FORWARD_ROUTES[name]
        weight_work = weight.astype(work, copy=False)
        chunks = _batch_chunks(
            x.shape[0], max(per_image, _tuned_bytes(spec, image, work.itemsize)), budget, chosen.threads
        )

        def chunk(batch: slice) -> None:
            with np.errstate(invalid="ignore"):  # see _QUIET
                route(window[batch], x[batch].astype(work, copy=False), weight_work, spec, spec.group, budget)

        for _ in _run_chunks(chunk, chunks, chosen.threads):
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
    x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray, spec: Conv2dTransposeSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        budget = _budget(chosen.threads)
        route = BACKWARD_ROUTES[chosen.backward]
        weight_work = weight.astype(work, copy=False)
        image = (1,) + tuple(x.shape[1:])
        per_image = _backward_bytes(chosen.backward, spec, image, work.itemsize)
        if dtype != work:
            per_image += math.prod(image) * work.itemsize  # the float32 copy of a float16 chunk

        def chunk(batch: slice) -> np.ndarray:
            with np.errstate(invalid="ignore"):  # see _QUIET
                return route(
                    grad_window[batch],
                    x[batch].astype(work, copy=False),
                    weight_work,
                    spec,
                    spec.group,
                    budget,
                    dx[batch],
                )

        chunks = _batch_chunks(
            x.shape[0], max(per_image, _tuned_bytes(spec, image, work.itemsize)), budget, chosen.threads
        )
        for dweight_part in _run_chunks(chunk, chunks, chosen.threads):
            dweight += dweight_part
    return dx.astype(dtype, copy=False), dweight.astype(dtype, copy=False), dbias.astype(dtype, copy=False)
