"""The NumPy engine against the float64 loop oracle, finite differences and edge shapes.

Also the engine's own machinery: routes, batch chunks and their threads, the kept workspace,
forks, and NaN/inf propagation. Working-memory bounds are in ``test_numpy_engine_memory.py``.
"""

import itertools
import multiprocessing
import os
import sys
import threading
import warnings

import numpy as np
import pytest

import convtranspose as ct
from convtranspose._engines import numpy as engine
from convtranspose._engines.numpy.workspace import workspace

import configs
import reference
from conftest import assert_close, geometry


def random_case(seed, dtype=np.float64):
    """A case of the tests' one generator (tests/configs.py): (geometry kwargs, x, w, b), with a bias."""
    cfg, x, w, b = configs.random_case(seed, dtype, has_bias=True)
    return geometry(cfg), x, w, b


@pytest.fixture(
    params=[(None, None), ("col2im", "im2col"), ("col2im_nhwc", "im2col"), ("phases", "phases")],
    ids=["planned", "col2im", "col2im_nhwc", "phases"],
)
def routes(request):
    """Run a test with the planner's choice and with every route forced."""
    with engine.forced_routes(*request.param):
        yield request.param


@pytest.mark.parametrize("seed", range(60))
def test_forward_and_backward_match_the_oracle(seed, routes):
    kwargs, x, w, b = random_case(seed)
    y = ct.conv2d_transpose(x, w, b, **kwargs)
    assert_close(y, reference.forward(x, w, b, **kwargs), 1e-10, f"y {kwargs}")
    g = np.random.default_rng(seed + 1000).standard_normal(y.shape)
    got = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    for name, a, r in zip(("dx", "dw", "db"), got, reference.backward(x, w, g, **kwargs)):
        assert_close(a, r, 1e-10, f"{name} {kwargs}")


@pytest.mark.parametrize("seed", range(100, 130))
def test_gradients_match_finite_differences(seed):
    """Central differences of f = sum(y * g) along random directions, in float64."""
    kwargs, x, w, b = random_case(seed)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(ct.conv2d_transpose(x, w, b, **kwargs).shape)

    def f(x_, w_, b_):
        return float(np.sum(ct.conv2d_transpose(x_, w_, b_, **kwargs) * g))

    dx, dw, db = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    eps = 1e-4
    for grad, which in ((dx, 0), (dw, 1), (db, 2)):
        direction = rng.standard_normal(grad.shape)
        plus, minus = [x, w, b], [x, w, b]
        plus[which] = plus[which] + eps * direction
        minus[which] = minus[which] - eps * direction
        numeric = (f(*plus) - f(*minus)) / (2 * eps)
        analytic = float(np.sum(grad * direction))
        assert abs(numeric - analytic) <= 1e-6 * (1 + abs(analytic)), (which, numeric, analytic, kwargs)


@pytest.mark.parametrize("seed", range(200, 210))
def test_backward_is_the_adjoint_of_forward(seed):
    """<conv(x), g> == <x, dx(g)> and <conv_w(w), g> == <w, dw(g)> (both maps are linear)."""
    kwargs, x, w, _ = random_case(seed)
    y = ct.conv2d_transpose(x, w, None, **kwargs)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    dx, dw, _ = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    assert np.isclose(np.sum(y * g), np.sum(x * dx), rtol=1e-10, atol=1e-10)
    assert np.isclose(np.sum(y * g), np.sum(w * dw), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_each_dtype_in_is_the_dtype_out(dtype):
    kwargs, x, w, b = random_case(7, dtype)
    y = ct.conv2d_transpose(x, w, b, **kwargs)
    grads = ct.conv2d_transpose_backward(x, w, np.ones_like(y), **kwargs)
    assert y.dtype == dtype and all(grad.dtype == dtype for grad in grads)
    tol = {np.float16: 2e-3, np.float32: 1e-4, np.float64: 1e-10}[dtype]
    ref = reference.forward(x, w, b, **kwargs)
    assert np.all(np.abs(y - ref) <= tol * (1 + np.abs(ref).max()))


def test_chunking_does_not_change_results(routes):
    kwargs, x, w, b = random_case(3)
    x = np.concatenate([x] * 5)
    g = np.random.default_rng(0).standard_normal(ct.conv2d_transpose(x, w, b, **kwargs).shape)
    whole = (ct.conv2d_transpose(x, w, b, **kwargs),) + ct.conv2d_transpose_backward(x, w, g, **kwargs)
    with engine.settings.override(chunk_bytes=1):  # one image per chunk
        chunked = (ct.conv2d_transpose(x, w, b, **kwargs),) + ct.conv2d_transpose_backward(x, w, g, **kwargs)
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_output_padding_rows_are_exact_zeros_after_the_bias():
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.array([0.28, 0.42], np.float32)
    y = ct.conv2d_transpose(x, w, b, stride=2, pad_mode="pad", padding=1, output_padding=1)
    assert y.shape == (1, 2, 6, 6)
    assert np.all(y[:, :, -1, :] == 0) and np.all(y[:, :, :, -1] == 0)
    _, _, db = ct.conv2d_transpose_backward(
        x, w, np.ones_like(y), stride=2, pad_mode="pad", padding=1, output_padding=1
    )
    np.testing.assert_array_equal(db, [25, 25])  # the 5x5 window only


def test_short_kernel_leaves_bias_only_rows():
    """'same', k=1, s=3: rows/cols 1, 2, 4, 5 get no tap, only the bias (docs/mindspore-behavior.md)."""
    x = np.ones((1, 1, 2, 2), np.float32)
    y = ct.conv2d_transpose(x, np.full((1, 1, 1, 1), 2.0, np.float32), np.array([0.5], np.float32), stride=3)
    expected = np.full((6, 6), 0.5, np.float32)
    expected[np.ix_([0, 3], [0, 3])] = 2.5
    np.testing.assert_array_equal(y[0, 0], expected)


@pytest.mark.parametrize(
    "shape,kwargs,out_shape,value",
    [
        ((0, 2, 4, 4), dict(), (0, 2, 4, 4), None),
        ((1, 2, 0, 4), dict(), (1, 2, 0, 4), None),
        ((1, 2, 0, 4), dict(pad_mode="valid"), (1, 2, 2, 6), 1.0),
        ((1, 2, 0, 4), dict(pad_mode="valid", stride=2), (1, 2, 1, 9), 1.0),
        ((1, 2, 0, 0), dict(pad_mode="valid"), (1, 2, 2, 2), 1.0),
        ((1, 2, 3, 0), dict(pad_mode="pad"), (1, 2, 5, 2), 1.0),
        ((1, 2, 1, 1), dict(pad_mode="pad", padding=(3, 0, 0, 0)), (1, 2, 0, 3), None),
    ],
)
def test_empty_inputs_give_the_bias_only_rows_mindspore_gives(shape, kwargs, out_shape, value, routes):
    """N=0, H=0 and W=0 run; 'valid'/'pad' then keep the rows only the bias reaches."""
    w = np.ones((2, 2, 3, 3), np.float32)
    y = ct.conv2d_transpose(np.zeros(shape, np.float32), w, np.ones(2, np.float32), **kwargs)
    assert y.shape == out_shape
    if value is not None:
        assert np.all(y == value)
    grads = ct.conv2d_transpose_backward(np.zeros(shape, np.float32), w, np.ones_like(y), **kwargs)
    assert grads[0].shape == shape and not np.any(grads[1])


@pytest.mark.parametrize("kernel,stride,dilation", list(itertools.product([1, 2, 5], [1, 3], [1, 2])))
def test_same_and_valid_sizes(kernel, stride, dilation):
    x = np.ones((1, 1, 4, 5), np.float64)
    w = np.ones((1, 1, kernel, kernel))
    k_eff = dilation * (kernel - 1) + 1
    same = ct.conv2d_transpose(x, w, stride=stride, dilation=dilation, pad_mode="same")
    valid = ct.conv2d_transpose(x, w, stride=stride, dilation=dilation, pad_mode="valid")
    assert same.shape[2:] == (4 * stride, 5 * stride)
    assert valid.shape[2:] == (4 * stride + max(k_eff - stride, 0), 5 * stride + max(k_eff - stride, 0))


def test_threaded_chunks_match_serial():
    """Batch chunks spread over the thread pool give the serial result (disjoint writes)."""
    for seed in range(5):
        kwargs, x, w, b = random_case(seed)
        x = np.concatenate([x] * 3)
        g = np.random.default_rng(seed).standard_normal(ct.conv2d_transpose(x, w, b, **kwargs).shape)
        results = {}
        for workers in (1, 2):
            with engine.settings.override(parallel_bytes=0, threads=True, workers=workers):
                results[workers] = (ct.conv2d_transpose(x, w, b, **kwargs),) + ct.conv2d_transpose_backward(
                    x, w, g, **kwargs
                )
        for serial, threaded in zip(results[1], results[2]):
            np.testing.assert_allclose(serial, threaded, rtol=1e-12, atol=1e-12)


def test_results_never_alias_the_kept_workspace(routes):
    """The engine reuses scratch buffers between calls: returned arrays must not live there."""
    kwargs, x, w, b = random_case(11)
    first = ct.conv2d_transpose(x, w, b, **kwargs)
    expected = first.copy()
    g = np.ones_like(first)
    grads = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    kept = [grad.copy() for grad in grads]
    ct.conv2d_transpose(x * 2, w * 3, b, **kwargs)
    ct.conv2d_transpose_backward(x * 2, w * 3, g * 5, **kwargs)
    np.testing.assert_array_equal(first, expected)
    for grad, copy in zip(grads, kept):
        np.testing.assert_array_equal(grad, copy)
    assert engine.workspace_bytes() >= 0
    engine.release_workspace()
    assert engine.workspace_bytes() == 0


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 3, 7, 9), (4, 3, 3, 3), dict(stride=2, pad_mode="same")),  # borders every tap leaves unwritten
        ((1, 2, 6, 5), (3, 2, 5, 5), dict(stride=1, pad_mode="pad", padding=(4, 0, 1, 4))),  # taps reaching nothing
    ],
)
def test_im2col_zeroes_what_no_tap_writes_over_a_dirty_workspace(x_shape, w_shape, kwargs):
    """im2col zeroes only the unwritten strips of its kept columns buffer: stale values there must not leak."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_ref = reference.conv2d_forward(x, w, None, **kwargs)
    g = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, _ = reference.conv2d_backward(x, w, g, **kwargs)
    with engine.forced_routes(backward="im2col"):
        for _ in range(2):  # the second call finds the buffer full of NaN
            workspace("cols", (2**16,), np.float64).fill(np.nan)
            y = ct.conv2d(x, w, None, **kwargs)
            workspace("cols", (2**16,), np.float64).fill(np.nan)
            dx, dw, _ = ct.conv2d_backward(x, w, g, **kwargs)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 6, 5, 7), (4, 6, 1, 1), dict(stride=1, pad_mode="same")),
        ((2, 6, 5, 7), (4, 3, 1, 1), dict(stride=2, pad_mode="same", group=2)),  # odd input: the last row read
        ((1, 4, 8, 7), (6, 4, 1, 1), dict(stride=(3, 2), pad_mode="valid")),  # rows past the last output unread
        ((1, 4, 5, 5), (2, 4, 1, 1), dict(stride=2, pad_mode="pad", padding=(1, 0, 0, 2))),  # reads padding
    ],
)
def test_conv2d_1x1_matches_the_oracle_with_nan_and_inf(x_shape, w_shape, kwargs):
    """A 1x1 Conv2d that reads no padding is a plain matrix product per image; NaN/inf reach what they reach.

    Quietly, as every route: no RuntimeWarning (pytest -W error would raise).
    """
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    x[0, 1, 0, 0], w[1, 0, 0, 0] = np.nan, np.inf
    y_ref = reference.conv2d_forward(x, w, b, **kwargs)
    g = rng.standard_normal(y_ref.shape)
    refs = reference.conv2d_backward(x, w, g, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, grads = ct.conv2d(x, w, b, **kwargs), ct.conv2d_backward(x, w, g, **kwargs)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(grads, refs):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    x16, w16, g16 = (a.astype(np.float16) for a in (x, w, g))
    y16 = ct.conv2d(x16, w16, None, **kwargs)
    assert y16.dtype == np.float16
    with np.errstate(invalid="ignore"):
        expected16 = reference.conv2d_forward(x16, w16, None, **kwargs).astype(np.float32).astype(np.float16)
    np.testing.assert_array_equal(y16, expected16)
    assert all(grad.dtype == np.float16 for grad in ct.conv2d_backward(x16, w16, g16, **kwargs))


def test_phases_that_no_tap_reaches_are_not_planned():
    """A huge stride plans one phase per tap, not one per stride row (memory follows the work)."""
    plan = ct.spec.axis_plan(3, 10**6, 1, "same", 0, 0, 0)
    phases = engine.axis_phases(plan, 1)
    assert [phase.taps for phase in phases] == [((0, 0),), ((1, 0),), ((2, 0),)]
    assert [phase.count for phase in phases] == [1, 1, 1]


def test_forced_routes_are_scoped_to_the_block_and_the_thread():

    spec = ct.Conv2dTransposeSpec.from_args(2, 64, 3)
    automatic = engine.plan(spec, (1, 2, 64, 64))
    seen = {}
    with engine.forced_routes(forward="col2im", backward="phases"):
        seen["inside"] = engine.plan(spec, (1, 2, 64, 64))
        worker = threading.Thread(target=lambda: seen.update(other=engine.plan(spec, (1, 2, 64, 64))))
        worker.start()
        worker.join()
    assert (seen["inside"].forward, seen["inside"].backward) == ("col2im", "phases")
    assert seen["other"] == automatic and engine.plan(spec, (1, 2, 64, 64)) == automatic
    with pytest.raises(ValueError, match="unknown route 'bogus'"):
        with engine.forced_routes(forward="bogus"):
            pass


def test_chunk_budget_argument_checks():
    with pytest.raises(TypeError, match="chunk_bytes must be a positive int, got 1.5"):
        ct.set_chunk_bytes(1.5)
    with pytest.raises(ValueError, match="chunk_bytes must be a positive int, got 0"):
        ct.set_chunk_bytes(0)
    with pytest.raises(TypeError, match="chunk_bytes"):
        ct.set_chunk_bytes(True)


def _child(queue):
    x = np.ones((16, 4, 32, 32), np.float32)
    queue.put(ct.conv2d_transpose(x, np.ones((4, 1, 3, 3), np.float32), stride=2, group=4).shape)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_child_can_compute_after_the_parent_used_the_thread_pool():
    x = np.ones((16, 4, 32, 32), np.float32)
    ct.conv2d_transpose(x, np.ones((4, 1, 3, 3), np.float32), stride=2, group=4)  # depthwise: threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child.join(30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive, "the forked child hung"
    assert queue.get(timeout=5) == (16, 4, 64, 64)


# ---------------------------------------------------------------- dweight summed over chunks

ALL_ROUTES = [("col2im", "im2col"), ("col2im_nhwc", "im2col"), ("phases", "phases")]


@pytest.fixture
def tiny_chunks():
    """Every image its own chunk, and every image split down to the routes' smallest units."""
    with engine.settings.override(chunk_bytes=1):
        yield


def distinct_batch(seed, images=7):
    """A random case with ``images`` different images (not copies: each chunk adds its own part)."""
    kwargs, x, w, b = random_case(seed)
    x = np.random.default_rng(seed + 5000).standard_normal((images,) + x.shape[1:])
    return kwargs, x, w, b


@pytest.mark.parametrize("seed", range(300, 306))
def test_dweight_summed_over_one_image_chunks_matches_the_oracle(seed, routes, tiny_chunks):
    """Independent of test_chunking_does_not_change_results: the oracle, distinct images."""
    kwargs, x, w, b = distinct_batch(seed)
    y = ct.conv2d_transpose(x, w, b, **kwargs)
    assert_close(y, reference.forward(x, w, b, **kwargs), 1e-10, f"y {kwargs}")
    g = np.random.default_rng(seed).standard_normal(y.shape)
    got = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    for name, a, r in zip(("dx", "dw", "db"), got, reference.backward(x, w, g, **kwargs)):
        assert_close(a, r, 1e-10, f"{name} {kwargs}")


@pytest.mark.parametrize("seed", range(310, 314))
def test_dweight_summed_over_threaded_chunks_matches_the_oracle(seed, routes, tiny_chunks):
    """One image a chunk, the chunks on two threads (in waves): the sum is still the oracle's."""
    kwargs, x, w, b = distinct_batch(seed, images=5)
    with engine.settings.override(parallel_bytes=0, workers=2, threads=True):
        y = ct.conv2d_transpose(x, w, b, **kwargs)
        g = np.random.default_rng(seed).standard_normal(y.shape)
        got = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    assert_close(y, reference.forward(x, w, b, **kwargs), 1e-10, f"y {kwargs}")
    for name, a, r in zip(("dx", "dw", "db"), got, reference.backward(x, w, g, **kwargs)):
        assert_close(a, r, 1e-10, f"{name} {kwargs}")


# ---------------------------------------------------------------- the budget's unsplittable units


def unit_bytes(route, spec, x_shape, itemsize):
    """Upper bound of the unit a route cannot split, as each route's module docstring states it."""
    _, cin, h, w = x_shape
    cout, k = spec.out_channels, spec.kernel_size[0] * spec.kernel_size[1]
    _, _, win_h, win_w = spec.window_shape(x_shape)
    units = {
        "col2im": k * h * w + win_h * win_w,  # one output channel of one image
        "col2im_nhwc": cin * h * w + cout * (k * h * w + win_h * win_w),  # one image
        "phases": (cin * k + 2 * cout) * win_w,  # one window row of one phase
        "im2col": w * (cout * k + 2 * cin),  # one input row
        "phases_backward": win_w * (cout + 2 * k * cin),  # one window row of one phase
    }
    return units[route] * itemsize


@pytest.mark.parametrize("budget", [1, 4 * 2**10, 64 * 2**10])
@pytest.mark.parametrize("seed", range(12))
def test_the_kept_buffers_never_exceed_the_budget_beyond_one_unit(seed, budget):
    """Whatever the budget, a route's buffers fit it, or hold one unsplittable unit."""
    kwargs, x, w, b = random_case(seed, np.float32)
    x = np.concatenate([x] * 4)
    spec = ct.Conv2dTransposeSpec.from_args(
        x.shape[1], w.shape[1] * kwargs["group"], w.shape[2:], **kwargs, has_bias=True
    )
    g = np.ones(spec.output_shape(x.shape), np.float32)
    for forward_route, backward_route in ALL_ROUTES:
        with engine.settings.override(chunk_bytes=budget, forward_route=forward_route, backward_route=backward_route):
            tuning = engine.settings.current()
            threads = engine.plan(spec, x.shape).threads
            allowed = tuning.chunk_budget(threads)
            engine.release_workspace()
            ct.conv2d_transpose(x, w, b, **kwargs)
            unit = unit_bytes(forward_route, spec, x.shape, 4)
            assert engine.workspace_bytes() <= max(allowed, unit) * (tuning.workers if threads else 1), (
                forward_route,
                engine.workspace_bytes(),
                budget,
                unit,
                kwargs,
            )
            engine.release_workspace()
            ct.conv2d_transpose_backward(x, w, g, **kwargs)
            name = "phases_backward" if backward_route == "phases" else backward_route
            unit = unit_bytes(name, spec, x.shape, 4)
            assert engine.workspace_bytes() <= max(allowed, unit) * (tuning.workers if threads else 1), (
                backward_route,
                engine.workspace_bytes(),
                budget,
                unit,
                kwargs,
            )


# ---------------------------------------------------------------- NaN and inf


def spoil(array, rng, fraction=0.1):
    """A copy with about ``fraction`` of its entries NaN, +inf or -inf (a third each)."""
    array = array.copy()
    draw = rng.random(array.shape)
    array[draw < fraction / 3] = np.nan
    array[(draw >= fraction / 3) & (draw < 2 * fraction / 3)] = np.inf
    array[(draw >= 2 * fraction / 3) & (draw < fraction)] = -np.inf
    return array


def assert_same_specials(got, ref, label):
    """The same NaN, +inf and -inf entries as the oracle, and close finite values."""
    assert got.shape == ref.shape, label
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        mismatched = test(got) != test(ref)
        assert not mismatched.any(), (
            f"{label}: {int(mismatched.sum())} entries differ in being {name} "
            f"({int(test(got).sum())} against the oracle's {int(test(ref).sum())})"
        )
    finite = np.isfinite(ref)
    assert_close(got[finite], ref[finite], 1e-9, label)


@pytest.mark.parametrize("where", ["x", "weight", "grad", "all"])
@pytest.mark.parametrize("seed", range(20))
def test_nan_and_inf_reach_exactly_the_entries_the_direct_sum_reaches(seed, where):
    """No stored zero times inf/NaN: y, dx, dw and db have the oracle's NaN/inf pattern, every route."""
    kwargs, x, w, b = random_case(seed)
    rng = np.random.default_rng(seed + 7000)
    if where in ("x", "all"):
        x = spoil(x, rng)
    if where in ("weight", "all"):
        w = spoil(w, rng)
    with np.errstate(all="ignore"):
        y_ref = reference.forward(x, w, b, **kwargs)
        g = rng.standard_normal(y_ref.shape)
        if where in ("grad", "all"):
            g = spoil(g, rng)
        refs = (y_ref,) + reference.backward(x, w, g, **kwargs)
        for routes in [(None, None)] + ALL_ROUTES:
            with engine.forced_routes(*routes):
                got = (ct.conv2d_transpose(x, w, b, **kwargs),) + ct.conv2d_transpose_backward(x, w, g, **kwargs)
            for name, a, r in zip(("y", "dx", "dw", "db"), got, refs):
                assert_same_specials(a, r, f"{name} {routes} {where} {kwargs}")


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_a_tap_that_lands_only_in_cropped_rows_gets_only_the_rows_it_reaches(routes):
    """NaN in the last input row, which taps 1 and 2 send only to cropped rows: their dweight stays finite.

    Full length 5, padding crops rows 3 and 4: input row i reaches window row i + kh only
    for i + kh <= 2. A stored zero times the NaN used to make dweight[..., 1:, :] NaN.
    """
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    x[0, 0, 2, :] = np.nan
    w = np.ones((1, 1, 3, 3))
    kwargs = dict(pad_mode="pad", padding=(0, 2, 0, 2))
    g = np.ones((1, 1, 3, 3))
    with engine.forced_routes(*routes):
        y = ct.conv2d_transpose(x, w, **kwargs)
        dx, dw, _ = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    with np.errstate(all="ignore"):
        y_ref = reference.forward(x, w, **kwargs)
        dx_ref, dw_ref, _ = reference.backward(x, w, g, **kwargs)
    assert np.isnan(dw[0, 0, 0]).all() and np.isfinite(dw[0, 0, 1:]).all()
    assert_same_specials(dw, dw_ref, f"dw {routes}")
    # tap (2, kw) reaches the window from input row 0 only, columns j <= 2 - kw
    np.testing.assert_array_equal(dw[0, 0, 2], [0 + 1 + 2, 0 + 1, 0])
    assert_same_specials(y, y_ref, f"y {routes}")
    assert_same_specials(dx, dx_ref, f"dx {routes}")


@pytest.mark.parametrize("routes", ALL_ROUTES)
def test_an_inf_weight_tap_that_reads_outside_the_input_leaves_those_outputs_finite(routes):
    """An inf weight tap reaches only the outputs whose input rows exist (y and dx alike).

    No warning either: the routes' stored zeros times the inf are not the caller's doing.
    """
    x = np.ones((1, 1, 4, 4))
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 0, 0] = np.inf
    kwargs = dict(pad_mode="same")
    with engine.forced_routes(*routes), warnings.catch_warnings():
        warnings.simplefilter("error")
        y = ct.conv2d_transpose(x, w, **kwargs)
        dx, _, _ = ct.conv2d_transpose_backward(x, w, np.ones_like(y), **kwargs)
    with np.errstate(all="ignore"):
        y_ref = reference.forward(x, w, **kwargs)
        dx_ref, _, _ = reference.backward(x, w, np.ones_like(y), **kwargs)
    assert np.isinf(y).sum() == 9 and np.isfinite(y).sum() == 7  # the tap reaches 3x3 of the 4x4 window
    assert_same_specials(y, y_ref, f"y {routes}")
    assert_same_specials(dx, dx_ref, f"dx {routes}")


# ---------------------------------------------------------------- settings


def test_settings_overrides_are_scoped_to_the_block_and_the_thread():

    default = engine.settings.current()
    seen = {}
    with engine.settings.override(chunk_bytes=4096, workers=3):
        with engine.settings.override(parallel_bytes=0):  # nested blocks stack
            seen["inner"] = engine.settings.current()
        seen["outer"] = engine.settings.current()
        worker = threading.Thread(target=lambda: seen.update(other=engine.settings.current()))
        worker.start()
        worker.join()
    assert (seen["inner"].chunk_bytes, seen["inner"].workers, seen["inner"].parallel_bytes) == (4096, 3, 0)
    assert seen["outer"].parallel_bytes == default.parallel_bytes and seen["outer"].chunk_bytes == 4096
    assert seen["other"] == default and engine.settings.current() == default


def test_set_chunk_bytes_is_process_wide_and_overrides_sit_above_it():

    seen = {}
    try:
        ct.set_chunk_bytes(8192)
        worker = threading.Thread(target=lambda: seen.update(other=engine.settings.current().chunk_bytes))
        worker.start()
        worker.join()
        with engine.settings.override(chunk_bytes=16):
            seen["override"] = engine.settings.current().chunk_bytes
        seen["after"] = engine.settings.current().chunk_bytes
    finally:
        ct.set_chunk_bytes(64 * 2**20)
    assert seen == {"other": 8192, "override": 16, "after": 8192}


@pytest.mark.parametrize(
    "changes,error,words",
    [
        (dict(chunk_bytes=0), ValueError, "chunk_bytes must be a positive int, got 0"),
        (dict(chunk_bytes=2.0), TypeError, "chunk_bytes must be a positive int, got 2.0"),
        (dict(workers=0), ValueError, "workers must be a positive int, got 0"),
        (dict(workers=True), TypeError, "workers must be a positive int, got True"),
        (dict(parallel_bytes=-1), ValueError, "parallel_bytes must be an int >= 0, got -1"),
        (dict(threads=1), TypeError, "threads must be None, True or False, got 1"),
        (dict(backward_route="col2im"), ValueError, "unknown route 'col2im'"),
        (dict(chunk_size=1), TypeError, "unknown NumPy engine setting 'chunk_size'"),
    ],
)
def test_settings_refuse_bad_values_before_the_block_runs(changes, error, words):
    ran = False
    with pytest.raises(error, match=words):
        with engine.settings.override(**changes):
            ran = True
    assert not ran
    with pytest.raises(error, match=words):
        engine.settings.set(**changes)
    assert engine.settings.current() == engine.Tuning()


def test_the_public_settings_block_changes_only_what_it_is_given():
    default = engine.settings.current()
    with ct.numpy_engine_settings(workers=1):
        assert engine.settings.current() == engine.Tuning(workers=1)
        with ct.numpy_engine_settings(chunk_bytes=2**20):
            assert (engine.settings.current().chunk_bytes, engine.settings.current().workers) == (2**20, 1)
        with ct.numpy_engine_settings():
            assert engine.settings.current() == engine.Tuning(workers=1)
    assert engine.settings.current() == default
    with pytest.raises(ValueError, match="workers must be a positive int, got 0"):
        with ct.numpy_engine_settings(workers=0):
            pass


def _spy_on_forward_routes(monkeypatch):
    """Every forward route wrapped: returns the list of thread names the chunks ran on."""
    threads = []
    for name, route in list(engine.FORWARD_ROUTES.items()):

        def run(*args, _run=route.run):
            threads.append(threading.current_thread().name)
            return _run(*args)

        monkeypatch.setitem(engine.FORWARD_ROUTES, name, route._replace(run=run))
    return threads


@pytest.mark.parametrize("threads", [True, False])
def test_the_threads_setting_decides_whether_chunks_go_to_the_pool(threads, monkeypatch):
    seen = _spy_on_forward_routes(monkeypatch)
    kwargs, x, w, b = distinct_batch(3, images=4)
    with engine.settings.override(threads=threads, workers=2, parallel_bytes=0, chunk_bytes=1):
        ct.conv2d_transpose(x, w, b, **kwargs)
    assert len(seen) == 4  # one image a chunk
    assert all(name.startswith("convtranspose") for name in seen) == threads, seen
    assert any(name.startswith("convtranspose") for name in seen) == threads, seen


def test_channels_last_is_planned_from_16_output_channels_per_input_column():
    """The threshold the JAX engine shares (``_engines._routing``): cog >= 16 * W."""
    spec = ct.Conv2dTransposeSpec.from_args(128, 64, 3)
    assert engine.plan(spec, (1, 128, 4, 4)).forward == "col2im_nhwc"
    assert engine.plan(spec, (1, 128, 4, 5)).forward == "col2im"


# ---------------------------------------------------------------- backward of part of the gradients


BACKWARD_ROUTES = sorted(engine.BACKWARD_ROUTES)


def spec_of(kwargs, x, w):
    return ct.Conv2dTransposeSpec.from_args(x.shape[1], w.shape[1] * kwargs["group"], w.shape[2:], **kwargs)


def partial_case(seed, dtype):
    """A random case of 3 distinct images, its spec and an upstream gradient; every 4th has inf/NaN."""
    kwargs, x, w, _ = distinct_batch(seed, images=3)
    rng = np.random.default_rng(seed + 9000)
    if seed % 4 == 3:
        w = spoil(w, rng, 0.3)
        x = spoil(x, rng, 0.1)
    spec = spec_of(kwargs, x, w)
    g = rng.standard_normal(spec.output_shape(x.shape))
    return spec, x.astype(dtype), w.astype(dtype), g.astype(dtype)


def same_bits(got, want, label):
    assert got.dtype == want.dtype and got.shape == want.shape, label
    assert got.tobytes() == want.tobytes(), f"{label}: not bitwise the full call's"


@pytest.mark.parametrize("chunk_bytes", [64 * 2**20, 1], ids=["whole", "split"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("route", BACKWARD_ROUTES)
def test_each_gradient_alone_is_bitwise_the_full_calls(route, dtype, chunk_bytes):
    """need_dx / need_dweight: the skipped one is None, the kept ones bitwise those of the full call.

    Without need_dweight, x goes in as a zero-strided array: only its shape is read.
    """
    for seed in range(8):
        spec, x, w, g = partial_case(seed, dtype)
        with engine.settings.override(backward_route=route, chunk_bytes=chunk_bytes), np.errstate(all="ignore"):
            dx, dw, db = engine.backward(x, w, g, spec)
            no_dx = engine.backward(x, w, g, spec, need_dx=False)
            no_dw = engine.backward(np.broadcast_to(np.zeros((), dtype), x.shape), w, g, spec, need_dweight=False)
            neither = engine.backward(x, w, g, spec, need_dx=False, need_dweight=False)
        label = f"{route} {np.dtype(dtype).name} seed {seed}"
        assert no_dx[0] is None and no_dw[1] is None and neither[:2] == (None, None), label
        same_bits(no_dx[1], dw, f"dweight alone, {label}")
        same_bits(no_dw[0], dx, f"dx alone, {label}")
        for result in (no_dx, no_dw, neither):
            same_bits(result[2], db, f"dbias, {label}")


@pytest.mark.parametrize("route", BACKWARD_ROUTES)
def test_a_gradient_not_asked_for_costs_no_products(route, monkeypatch):
    """np.matmul calls: dx alone plus dweight alone is the full call's count, neither is none."""
    spec, x, w, g = partial_case(0, np.float64)
    calls = []
    matmul = np.matmul

    def counted(*args, **kwargs):
        calls.append(1)
        return matmul(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", counted)
    counts = {}
    with engine.settings.override(backward_route=route, chunk_bytes=1, threads=False):
        for name, flags in {
            "full": {},
            "dx": dict(need_dweight=False),
            "dweight": dict(need_dx=False),
            "neither": dict(need_dx=False, need_dweight=False),
        }.items():
            calls.clear()
            engine.backward(x, w, g, spec, **flags)
            counts[name] = len(calls)
    assert counts["dx"] > 0 and counts["dweight"] > 0 and counts["neither"] == 0, counts
    assert counts["dx"] + counts["dweight"] == counts["full"], counts


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("route", BACKWARD_ROUTES)
def test_without_dweight_the_routes_get_x_zero_strided(route, dtype, monkeypatch):
    """A broadcast x is not copied (float16 included, which is otherwise converted to float32)."""
    strides = []
    original = engine.BACKWARD_ROUTES[route]

    def run(grad_window, x, *args):
        strides.append(x.strides)
        return original.run(grad_window, x, *args)

    monkeypatch.setitem(engine.BACKWARD_ROUTES, route, original._replace(run=run))
    spec, x, w, g = partial_case(1, dtype)
    with engine.settings.override(backward_route=route):
        engine.backward(np.broadcast_to(np.zeros((), dtype), x.shape), w, g, spec, need_dweight=False)
    assert strides and all(stride == (0, 0, 0, 0) for stride in strides), strides
