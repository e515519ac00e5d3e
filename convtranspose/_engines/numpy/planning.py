"""Which routes a call takes, whether its batch chunks use threads, and how large they are."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Iterator, NamedTuple, Optional, Tuple

from ...spec import Conv2dTransposeSpec
from .._routing import rows_are_short
from .routes import BACKWARD_ROUTES, FORWARD_ROUTES
from .settings import Tuning, settings

# Below this many multiply-adds the call is dominated by Python-level overhead, and col2im
# makes the fewest NumPy calls (tiny case: 0.070 ms against 0.104 ms for phases).
SMALL_MACS = 2_000_000


class Plan(NamedTuple):
    """The routes of both directions, and whether to spread batch chunks over threads."""

    forward: str
    backward: str
    threads: bool


def plan(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], tuning: Optional[Tuning] = None) -> Plan:
    """The routes and threading for this spec and input shape.

    The phase routes move ``Cin*K`` values per input pixel, the column routes ``Cout*K``
    (see their modules), so the channel ratio decides; channels-last wins when the image
    rows are short next to the channel count. Threads over batch chunks pay off only where
    element-wise work dominates (measured): products with hardly any depth (depthwise);
    elsewhere the chunks' BLAS calls contend for the cores. The settings' forced routes and
    ``threads`` override the choice.

    Args:
        spec: the validated arguments.
        x_shape: ``(N, Cin, H, W)``.
        tuning: the settings to follow (default: those in force, :meth:`EngineSettings.current`).

    Returns:
        The :class:`Plan`.
    """
    if tuning is None:
        tuning = settings.current()
    cig = spec.in_channels // spec.group
    cog = spec.out_channels // spec.group
    macs = math.prod(x_shape) * cog * spec.kernel_size[0] * spec.kernel_size[1]
    if cig <= cog and macs >= SMALL_MACS:
        forward = "phases"
    elif rows_are_short(cog, x_shape[3]):
        forward = "col2im_nhwc"
    else:
        forward = "col2im"
    # One im2col of the gradient serves both dx and dweight, so it wins unless the output
    # has clearly more channels than the input.
    backward = "phases" if cog > 2 * cig else "im2col"
    threads = cig * cog <= 16 if tuning.threads is None else tuning.threads
    return Plan(tuning.forward_route or forward, tuning.backward_route or backward, threads)


@contextlib.contextmanager
def forced_routes(forward: Optional[str] = None, backward: Optional[str] = None) -> Iterator[None]:
    """Within the block, use these routes instead of :func:`plan`'s choice (tests, benchmarks).

    Scoped to the calling thread or async task (``settings.override``): other threads keep
    the automatic choice. None leaves that direction automatic.

    Raises:
        ValueError: an unknown route name.
    """
    with settings.override(forward_route=forward, backward_route=backward):
        yield


@functools.lru_cache(maxsize=1024)
def forward_bytes(route: str, spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of forward ``route`` on ``x_shape`` in one piece."""
    return FORWARD_ROUTES[route].working_bytes(spec, x_shape, itemsize)


@functools.lru_cache(maxsize=1024)
def backward_bytes(route: str, spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
    """Working bytes of backward ``route`` on ``x_shape`` in one piece."""
    return BACKWARD_ROUTES[route].working_bytes(spec, x_shape, itemsize)


@functools.lru_cache(maxsize=1024)
def tuned_bytes(spec: Conv2dTransposeSpec, x_shape: Tuple[int, ...], itemsize: int) -> int:
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
