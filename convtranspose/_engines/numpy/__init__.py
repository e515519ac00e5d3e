"""NumPy engine: forward and backward of a 2-D transposed convolution.

Layouts: x ``(N, Cin, H, W)``, weight ``(Cin, Cout // group, kH, kW)``, output
``(N, Cout, H_out, W_out)``; all geometry comes from the spec's :class:`AxisPlan` objects.
``G`` is the group count, ``cig = Cin/G``, ``cog = Cout/G``, ``K = kH*kW``.

Every route does exactly the multiply-adds of the convolution (no zero insertion) in BLAS
products; they differ in the data they move around those products, and :func:`plan` picks
the cheaper one from the spec and the input shape. The modules, by what makes them change:

- ``entry``: :func:`forward` and :func:`backward` of a whole call (dtypes, chunks, bias);
- ``planning``: :func:`plan` (routes and threads), :func:`forced_routes`, chunk sizes;
- ``settings``: the tuning settings (:data:`settings`, :func:`set_chunk_bytes`);
- ``workspace``: the scratch buffers kept per thread; ``chunks``: batch chunks and threads;
- ``phases``: where each tap reads and lands, by stride phase (:func:`axis_phases`);
- ``routes``: the route tables; ``col2im`` (forward, ``Cin > Cout``), ``phases_route``
  (forward, ``Cin <= Cout``, and backward), ``im2col`` (backward): each route with its
  working-memory estimate and the unit of an image it cannot split;
- ``exact``: NaN and inf reach exactly the entries the direct sum gives them;
  ``arrays``: operand views.

Memory (working memory: everything a call allocates besides its inputs and results). The
batch is processed in chunks whose working buffers together stay within ``chunk_bytes``
(default 64 MiB, see :func:`set_chunk_bytes`; chunks run on two threads share it). A single
image larger than that is split inside the route, down to a unit that cannot be split (each
route's module names it). Not counted in the budget: weight-sized buffers (sub-kernels, each
chunk's weight gradient), the float32 copies of float16 arrays and the float16 rounding
(input- and output-sized), and the exact recomputation of :mod:`.exact`. None of it grows
with the stride or the dilation: the work follows the input rows each tap actually reads.
Intermediate buffers live in a per-thread workspace kept between calls (see
:mod:`.workspace` for why; :func:`release_workspace` frees it). Threads: only for
depthwise-like products are batch chunks spread over a 2-thread pool (see :func:`plan`).
"""

from .entry import backward, forward
from .phases import Phase, axis_phases
from .planning import SMALL_MACS, Plan, forced_routes, plan
from .routes import BACKWARD_ROUTES, FORWARD_ROUTES
from .settings import EngineSettings, Tuning, numpy_engine_settings, set_chunk_bytes, settings
from .workspace import release_workspace, workspace_bytes

__all__ = [
    "forward",
    "backward",
    "plan",
    "Plan",
    "SMALL_MACS",
    "forced_routes",
    "FORWARD_ROUTES",
    "BACKWARD_ROUTES",
    "settings",
    "EngineSettings",
    "Tuning",
    "set_chunk_bytes",
    "numpy_engine_settings",
    "release_workspace",
    "workspace_bytes",
    "axis_phases",
    "Phase",
]
