"""Working memory of the NumPy engine, measured with tracemalloc (NumPy reports its buffers to it).

Working memory is what a call allocates besides its inputs and results: tracemalloc's peak
during the call, the kept workspace released first, minus the results' bytes. The bounds:

- it follows the work, not the stride or the dilation: at most ``(2K + 4)`` times the input
  and output bytes (im2col and col2im hold ``K`` values per input value, the phases backward
  a stack of inputs and its gradient), whatever the dilation or stride;
- it stays within the chunk budget (the setting ``chunk_bytes``), for a large batch and for a
  single image larger than the budget, beyond the one unit each route cannot split (the
  route modules' docstrings in ``convtranspose._engines.numpy``).

``SLACK`` covers what does not scale with the problem: NumPy's ufunc buffers (8192 values per
operand, up to 64 KiB per strided in-place add) and a few Python objects.
"""

import gc
import time
import tracemalloc

import numpy as np
import pytest

import convtranspose as ct
from convtranspose._engines import numpy as engine

import reference
from conftest import assert_close

SLACK = 256 * 2**10
ALL_ROUTES = [("col2im", "im2col"), ("col2im_nhwc", "im2col"), ("phases", "phases")]


@pytest.fixture(autouse=True)
def released_workspace():
    yield
    engine.release_workspace()


def working_bytes(call):
    """``(working bytes, seconds, result)`` of one call, the workspace released first."""
    engine.release_workspace()
    # No gc.collect() first: tracemalloc counts only what is allocated after start(), and a
    # collection costs a second on the heap a whole suite leaves behind. The collector is off
    # during the call for the same reason (a full collection inside it would be timed).
    gc.disable()
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.enable()
    results = result if isinstance(result, tuple) else (result,)
    return peak - sum(array.nbytes for array in results), seconds, result


def both_directions(x, w, kwargs, routes):
    """Working bytes and seconds of the forward and of the backward, after a warm-up call."""
    g = np.ones(ct.conv2d_transpose(x, w, **kwargs).shape, x.dtype)
    with engine.forced_routes(*routes):
        ct.conv2d_transpose(x, w, **kwargs)  # first calls fill the small per-shape caches
        ct.conv2d_transpose_backward(x, w, g, **kwargs)
        forward = working_bytes(lambda: ct.conv2d_transpose(x, w, **kwargs))
        backward = working_bytes(lambda: ct.conv2d_transpose_backward(x, w, g, **kwargs))
    return forward, backward


def follows_the_work(x, y, kernel):
    """The bound of the module docstring: ``(2K + 4) * (input + output bytes) + SLACK``."""
    return (2 * kernel + 4) * (x.nbytes + y.nbytes) + SLACK


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_working_memory_does_not_grow_with_the_dilation(routes):
    """Dilation 10**4 with padding that crops back to the input's 64x64 (the phases route used
    to pad the input by about dilation x kernel: 3.2 GB here, 151 GiB at dilation 10**5)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    measured = {}
    for dilation in (1, 10**4):
        kwargs = dict(pad_mode="pad", padding=dilation, dilation=dilation)
        (forward, seconds_f, y), (backward, seconds_b, _) = both_directions(x, w, kwargs, routes)
        assert y.shape == (1, 2, 64, 64)
        bound = follows_the_work(x, y, 9)
        assert forward <= bound and backward <= bound, (dilation, forward, backward, bound)
        assert seconds_f < 1 and seconds_b < 1, (dilation, seconds_f, seconds_b)
        measured[dilation] = forward, backward
    for small, large in zip(measured[1], measured[10**4]):
        assert large <= small + SLACK, measured


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_the_backward_of_a_one_pixel_output_needs_no_more_than_the_input(routes):
    """A 1x1 output cropped out of a dilation-10**4 result (the backward asked for 37 GiB)."""
    rng = np.random.default_rng(1)
    dilation = 10**4
    x = rng.standard_normal((1, 2, 64, 64)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    full = 63 + 2 * dilation + 1
    kwargs = dict(pad_mode="pad", padding=(dilation, full - dilation - 1) * 2, dilation=dilation)
    (forward, _, y), (backward, seconds, grads) = both_directions(x, w, kwargs, routes)
    assert y.shape == (1, 2, 1, 1)
    assert forward <= follows_the_work(x, y, 9) and backward <= follows_the_work(x, y, 9), (forward, backward)
    assert seconds < 1
    g = np.ones(y.shape, np.float32)
    for name, got, ref in zip(("dx", "dw"), grads, reference.backward(x, w, g, **kwargs)):
        assert_close(got, ref.astype(np.float32), 1e-5, name)


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_a_huge_stride_on_a_one_pixel_input_costs_about_the_output(routes):
    """Stride (10**6, 1): an output of 10**6 rows, and working memory of at most one more output
    (the channels-last window of col2im_nhwc), not one buffer per stride phase (70 s, 3.5 GB
    at 10**7)."""
    x = np.full((1, 1, 1, 1), 2.0, np.float32)
    w = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    kwargs = dict(stride=(10**6, 1))
    (forward, seconds_f, y), (backward, seconds_b, grads) = both_directions(x, w, kwargs, routes)
    assert y.shape == (1, 1, 10**6, 1)
    assert forward <= y.nbytes + SLACK and backward <= SLACK, (forward, backward)
    assert seconds_f < 1 and seconds_b < 1, (seconds_f, seconds_b)
    # rows: no crop, tap kh lands on row kh; columns: 'same' crops 1, only tap kw=1 lands
    np.testing.assert_array_equal(y[0, 0, :4, 0], [4.0, 10.0, 16.0, 0.0])
    assert not np.any(y[0, 0, 4:])
    np.testing.assert_array_equal(grads[1][0, 0], [[0, 2, 0], [0, 2, 0], [0, 2, 0]])


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_nothing_stays_after_release_workspace_at_a_huge_stride(routes):
    """Stride 4*10**5 left 269 MB resident after release_workspace() (one cached object per
    stride phase); the per-shape caches now hold a few small tuples."""
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    kwargs = dict(stride=(4 * 10**5, 1))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with engine.forced_routes(*routes):
            y = ct.conv2d_transpose(x, w, **kwargs)
            grads = ct.conv2d_transpose_backward(x, w, y, **kwargs)
        assert y.shape == (1, 1, 8 * 10**5, 2)
        del y, grads
        engine.release_workspace()
        gc.collect()
        resident = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert resident <= 64 * 2**10, resident


@pytest.mark.parametrize("routes", [("col2im", "im2col"), ("phases", "phases"), (None, None)])
def test_a_single_image_larger_than_the_budget_is_split(routes):
    """One 16x64x64 image needs about 2.7 MiB of columns; with a 256 KiB budget every route
    splits it (output channels, or bands of rows) and stays within the budget."""
    budget = 256 * 2**10
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 16, 64, 64)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    kwargs = dict(stride=2)
    with engine.settings.override(chunk_bytes=budget):
        (forward, _, y), (backward, _, grads) = both_directions(x, w, kwargs, routes)
    assert forward <= budget + SLACK and backward <= budget + SLACK, (forward, backward)
    with engine.forced_routes(*routes):
        whole = ct.conv2d_transpose(x, w, **kwargs)
        whole_grads = ct.conv2d_transpose_backward(x, w, np.ones_like(whole), **kwargs)
    np.testing.assert_allclose(y, whole, rtol=1e-5, atol=1e-4)
    for split, one_piece in zip(grads, whole_grads):
        np.testing.assert_allclose(split, one_piece, rtol=1e-5, atol=1e-3)


def test_the_planner_leaves_channels_last_for_col2im_when_an_image_exceeds_the_budget():
    """col2im_nhwc cannot split an image: above the budget, col2im (which can) is used."""
    budget = 256 * 2**10
    x = np.random.default_rng(3).standard_normal((1, 4, 64, 4)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((4, 64, 3, 3)).astype(np.float32)
    spec = ct.Conv2dTransposeSpec.from_args(4, 64, 3, 2)
    assert engine.plan(spec, x.shape).forward == "col2im_nhwc"
    with engine.settings.override(chunk_bytes=budget):
        (forward, _, y), _ = both_directions(x, w, dict(stride=2), (None, None))
        assert forward <= budget + SLACK, forward
        with engine.forced_routes("col2im_nhwc"):
            forced, _, _ = working_bytes(lambda: ct.conv2d_transpose(x, w, stride=2))
        assert forced > budget + SLACK  # forcing bypasses the planner: one image, unsplit
    with engine.forced_routes("col2im"):
        np.testing.assert_allclose(y, ct.conv2d_transpose(x, w, stride=2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("routes", ALL_ROUTES + [(None, None)])
@pytest.mark.parametrize("depthwise", [False, True], ids=["dense", "depthwise"])
def test_a_large_batch_stays_within_the_budget(routes, depthwise):
    """64 images, a 256 KiB budget: the chunks' working memory stays within it. Depthwise
    products run their chunks on the 2-thread pool, which share the budget (each thread
    has its own NumPy buffers: one SLACK each)."""
    budget = 256 * 2**10
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 8, 16, 16)).astype(np.float32)
    if depthwise:
        w = rng.standard_normal((8, 1, 4, 4)).astype(np.float32)
        kwargs = dict(stride=2, group=8, pad_mode="pad", padding=1)
    else:
        w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
        kwargs = dict(stride=2)
    with engine.settings.override(chunk_bytes=budget):
        (forward, _, y), (backward, _, _) = both_directions(x, w, kwargs, routes)
    assert y.nbytes + x.nbytes > 8 * budget
    slack = SLACK * (engine.settings.current().workers if depthwise else 1)
    assert forward <= budget + slack and backward <= budget + slack, (forward, backward)
