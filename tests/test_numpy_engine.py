"""The NumPy engine against the float64 loop oracle, finite differences and edge shapes."""

import itertools

import numpy as np
import pytest

import convtranspose as ct
from convtranspose._engines import numpy as engine

import reference
from conftest import assert_close

MODES = ("same", "valid", "pad")


def random_config(rng):
    """A random argument set of every kind: modes, groups, depthwise, dilation, asymmetry."""
    mode = MODES[rng.integers(3)]
    group = int(rng.choice([1, 1, 2, 3]))
    cin, cout = group * int(rng.integers(1, 4)), group * int(rng.integers(1, 4))
    if rng.random() < 0.15:
        group = cin = cout = int(rng.integers(2, 6))
    kernel = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
    stride = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    dilation = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if rng.random() < 0.4 else (1, 1)
    padding, output_padding = 0, (0, 0)
    if mode == "pad":
        padding = tuple(int(v) for v in rng.integers(0, 4, size=4))
        if rng.random() < 0.5:
            output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    return dict(stride=stride, pad_mode=mode, padding=padding, output_padding=output_padding,
                dilation=dilation, group=group), cin, cout, kernel


def random_case(seed, dtype=np.float64):
    """A config and arrays whose output has at least one row and column."""
    rng = np.random.default_rng(seed)
    while True:
        kwargs, cin, cout, kernel = random_config(rng)
        x = rng.standard_normal((int(rng.integers(1, 4)), cin, int(rng.integers(1, 10)),
                                 int(rng.integers(1, 10)))).astype(dtype)
        w = rng.standard_normal((cin, cout // kwargs["group"]) + kernel).astype(dtype)
        b = rng.standard_normal(cout).astype(dtype)
        spec = ct.Conv2dTransposeSpec.from_args(cin, cout, kernel, **kwargs, has_bias=True)
        windows = [plan.window_length(n) for plan, n in zip(spec.axes, x.shape[2:])]
        if min(windows) > 0:
            return kwargs, x, w, b


@pytest.fixture(params=[(None, None), ("col2im", "im2col"), ("col2im_nhwc", "im2col"), ("phases", "phases")],
                ids=["planned", "col2im", "col2im_nhwc", "phases"])
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
    engine.set_chunk_bytes(1)  # one image per chunk
    try:
        chunked = (ct.conv2d_transpose(x, w, b, **kwargs),) + ct.conv2d_transpose_backward(x, w, g, **kwargs)
    finally:
        engine.set_chunk_bytes(64 * 2 ** 20)
    for a, c in zip(whole, chunked):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_output_padding_rows_are_exact_zeros_after_the_bias():
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3)).astype(np.float32)
    b = np.array([0.28, 0.42], np.float32)
    y = ct.conv2d_transpose(x, w, b, stride=2, pad_mode="pad", padding=1, output_padding=1)
    assert y.shape == (1, 2, 6, 6)
    assert np.all(y[:, :, -1, :] == 0) and np.all(y[:, :, :, -1] == 0)
    _, _, db = ct.conv2d_transpose_backward(x, w, np.ones_like(y), stride=2, pad_mode="pad",
                                            padding=1, output_padding=1)
    np.testing.assert_array_equal(db, [25, 25])  # the 5x5 window only


def test_short_kernel_leaves_bias_only_rows():
    """'same', k=1, s=3: rows/cols 1, 2, 4, 5 get no tap, only the bias (MINDSPORE_PROBE 5.4)."""
    x = np.ones((1, 1, 2, 2), np.float32)
    y = ct.conv2d_transpose(x, np.full((1, 1, 1, 1), 2.0, np.float32), np.array([0.5], np.float32),
                            stride=3)
    expected = np.full((6, 6), 0.5, np.float32)
    expected[np.ix_([0, 3], [0, 3])] = 2.5
    np.testing.assert_array_equal(y[0, 0], expected)


@pytest.mark.parametrize("shape,kwargs,out_shape,value", [
    ((0, 2, 4, 4), dict(), (0, 2, 4, 4), None),
    ((1, 2, 0, 4), dict(), (1, 2, 0, 4), None),
    ((1, 2, 0, 4), dict(pad_mode="valid"), (1, 2, 2, 6), 1.0),
    ((1, 2, 0, 4), dict(pad_mode="valid", stride=2), (1, 2, 1, 9), 1.0),
    ((1, 2, 0, 0), dict(pad_mode="valid"), (1, 2, 2, 2), 1.0),
    ((1, 2, 3, 0), dict(pad_mode="pad"), (1, 2, 5, 2), 1.0),
    ((1, 2, 1, 1), dict(pad_mode="pad", padding=(3, 0, 0, 0)), (1, 2, 0, 3), None),
])
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


def test_threaded_chunks_match_serial(monkeypatch):
    """Batch chunks spread over the thread pool give the serial result (disjoint writes)."""
    monkeypatch.setattr(engine, "_PARALLEL_BYTES", 0)
    planned = engine.plan
    monkeypatch.setattr(engine, "plan", lambda spec, shape: planned(spec, shape)._replace(
        threads=True))
    for seed in range(5):
        kwargs, x, w, b = random_case(seed)
        x = np.concatenate([x] * 3)
        g = np.random.default_rng(seed).standard_normal(ct.conv2d_transpose(x, w, b, **kwargs).shape)
        results = {}
        for workers in (1, 2):
            monkeypatch.setattr(engine, "_workers", workers)
            results[workers] = ((ct.conv2d_transpose(x, w, b, **kwargs),)
                                + ct.conv2d_transpose_backward(x, w, g, **kwargs))
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


def test_the_tap_window_of_a_short_kernel_skips_the_trailing_rows():
    plan = ct.spec.axis_plan(1, 3, 1, "same", 0, 0, 0)
    assert engine.tap_window(plan, 0, 2) == (slice(0, 2), slice(0, 4, 3))


def test_phases_that_no_tap_reaches_are_not_planned():
    """A huge stride plans one phase per tap, not one per stride row (memory follows the work)."""
    plan = ct.spec.axis_plan(3, 10 ** 6, 1, "same", 0, 0, 0)
    phases = engine.axis_phases(plan, 1)
    assert [phase.taps for phase in phases] == [((0, 0),), ((1, 0),), ((2, 0),)]
    assert [phase.count for phase in phases] == [1, 1, 1]


def test_forced_routes_are_scoped_to_the_block_and_the_thread():
    import threading
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
