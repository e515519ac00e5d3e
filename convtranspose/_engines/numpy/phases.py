"""Where each tap reads and lands: per tap, and grouped by stride phase (the routes' geometry).

The spec holds MindSpore's geometry of one axis (:class:`AxisPlan`); this module is the
NumPy algorithm's view of it. Window rows ``phase + m*stride`` all see the same taps, so
each stride phase is a dense stride-1 correlation of the input with a sub-kernel. Only taps
that read some input row are kept where the routes ask for them, so the work and the
working memory follow the input rows each tap actually reads, however large the stride or
the dilation.
"""

from __future__ import annotations

import functools
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from ...spec import AxisPlan, Conv2dTransposeSpec, tap_window


class Phase(NamedTuple):
    """Window rows ``rows`` (a strided slice, ``count`` rows) and their ``(tap, shift)`` pairs."""

    rows: slice
    count: int  # type: ignore[assignment]  # a field named like tuple.count, which it shadows
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
def reading_phases(plan: AxisPlan, n: int) -> Tuple[Phase, ...]:
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


class Read(NamedTuple):
    """A height tap's read for a band of phase rows.

    Input rows ``first .. stop - 1``, which land on band rows ``offset ..``.
    """

    tap: int
    first: int
    stop: int
    offset: int


def band_reads(phase: Phase, first: int, stop: int, n: int) -> List[Read]:
    """The taps of ``phase`` that read some input row for phase rows ``first .. stop - 1``."""
    reads = []
    for tap, shift in phase.taps:
        low, high = max(0, first + shift), min(n, stop + shift)
        if low < high:
            reads.append(Read(tap, low, high, low - shift - first))
    return reads


def clusters(reads: Sequence[Read]) -> List[Tuple[int, int, List[Read]]]:
    """Reads whose input rows overlap or touch, grouped: ``(first, stop, reads)`` each.

    One stack serves each group; reads far apart (a dilation larger than the image) get
    their own, so the stack holds no rows between them.
    """
    groups: List[Tuple[int, int, List[Read]]] = []
    for read in sorted(reads, key=lambda item: item.first):
        if groups and read.first <= groups[-1][1]:
            first, stop, members = groups[-1]
            groups[-1] = (first, max(stop, read.stop), members + [read])
        else:
            groups.append((read.first, read.stop, [read]))
    return groups


def width_reads(phase: Phase, n: int) -> List[Tuple[int, slice, slice]]:
    """``(tap, input_cols, phase_cols)`` of the width taps that read some input column.

    Window columns no tap reads receive only the bias: the window keeps its zeros there.
    """
    reads = []
    for tap, shift in phase.taps:
        found = phase.overlap(shift, n)
        if found is not None:
            reads.append((tap, found[0], found[1]))
    return reads


@functools.lru_cache(maxsize=1024)
def tap_windows(spec: Conv2dTransposeSpec, h: int, w: int) -> Tuple[Tuple[int, int, tuple, tuple], ...]:
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


def phase_pairs(spec: Conv2dTransposeSpec, h: int, w: int) -> Iterator[Tuple[Phase, Phase]]:
    """Every (height phase, width phase) where some tap reads the input; only those taps."""
    for phase_h in reading_phases(spec.axes[0], h):
        for phase_w in reading_phases(spec.axes[1], w):
            yield phase_h, phase_w
