"""The functional API: caching, names in messages, odd arrays, byte order, float16 rounding, absurd sizes."""

import time
import tracemalloc

import numpy as np
import pytest

import convtranspose as ct

import reference

X = np.ones((1, 3, 3, 3), np.float32)
W = np.ones((3, 1, 2, 2), np.float32)


def _as_ints(value):
    return tuple(int(item) for item in value) if isinstance(value, tuple) else int(value)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=2.0),
        dict(stride=True),
        dict(stride=np.int64(2)),
        dict(dilation=1.0),
        dict(padding=0.0),
        dict(output_padding=False),
        dict(stride=(2, True)),
    ],
)
def test_rejected_types_stay_rejected_after_an_equal_valid_call(kwargs):
    """The spec cache must not let 2.0, True or np.int64(2) ride on the cached spec of 2."""
    ct.conv2d_transpose(X, W, pad_mode="pad", **{k: _as_ints(v) for k, v in kwargs.items()})
    with pytest.raises(TypeError):
        ct.conv2d_transpose(X, W, pad_mode="pad", **kwargs)


@pytest.mark.parametrize("group,match", [(0, "group"), (-1, "group"), (2, "group")])
def test_group_errors_name_group_and_the_weight(group, match):
    with pytest.raises(ValueError, match=match):
        ct.conv2d_transpose(X, W, group=group)


@pytest.mark.parametrize(
    "weight,error,match",
    [
        ([[1.0]], TypeError, "weight"),
        (np.ones((3, 1, 2), np.float32), ValueError, "4-D"),
        (np.ones((3, 0, 2, 2), np.float32), ValueError, "empty"),
    ],
)
def test_bad_weights(weight, error, match):
    with pytest.raises(error, match=match):
        ct.conv2d_transpose(X, weight)


def test_bad_bias_and_gradient():
    with pytest.raises(ValueError, match="bias must have shape"):
        ct.conv2d_transpose(X, W, np.ones(2, np.float32))
    with pytest.raises(TypeError, match="bias"):
        ct.conv2d_transpose(X, W, np.ones(1, np.float64))
    with pytest.raises(ValueError, match="grad_output"):
        ct.conv2d_transpose_backward(X, W, np.ones((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="grad_output"):
        ct.conv2d_transpose_backward(X, W, np.ones((1, 1, 3, 3), np.float64))


def test_masked_arrays_are_refused():
    with pytest.raises(TypeError, match="masked"):
        ct.conv2d_transpose(np.ma.masked_array(X, mask=X > 0), W)


def test_other_layouts_and_byte_orders_compute_the_same():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    expected = ct.conv2d_transpose(x, w, stride=2)
    for x_other, w_other in (
        (np.asfortranarray(x), np.asfortranarray(w)),
        (x[:, :, ::-1][:, :, ::-1], w),
        (x.astype(">f4"), w.astype(">f4")),
    ):
        np.testing.assert_array_equal(ct.conv2d_transpose(x_other, w_other, stride=2), expected)
    read_only = x.copy()
    read_only.setflags(write=False)
    np.testing.assert_array_equal(ct.conv2d_transpose(read_only, w, stride=2), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(stride=10**9), "one request may use"), (dict(dilation=10**18, pad_mode="valid"), "one request may use")],
)
def test_huge_outputs_are_refused_with_the_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ct.conv2d_transpose(X, W, **kwargs)
    with pytest.raises(ValueError, match="kernel_size"):
        ct.Conv2dTranspose(1, 1, 2**32)


def test_replaced_parameters_are_checked_at_the_call():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    net.weight.data = np.ones((2, 4, 2, 2), np.float32)
    with pytest.raises(ValueError, match="weight must have shape"):
        net(np.ones((1, 2, 3, 3), np.float32))
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    net.bias.data = np.ones(5, np.float32)
    with pytest.raises(ValueError, match="bias must have shape"):
        net(np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="mapping"):
        net.load_parameters([("weight", net.weight.data)])


# ---------------------------------------------------------------- byte order (issue 8, section 2.1)


def _bits(array):
    """The array's bytes as unsigned ints of its width, for bit-exact comparisons."""
    return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")


@pytest.mark.parametrize("code", ["f2", "f4", "f8"])
def test_non_native_byte_order_computes_in_its_own_dtype(code):
    """'>f8' computes in float64, '>f2' with MindSpore's float16 rounding: as the native arrays do."""
    native, swapped = np.dtype(code), np.dtype(code).newbyteorder("S")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 4, 5)).astype(native), rng.standard_normal((3, 2, 3, 3)).astype(native)
    b, kwargs = rng.standard_normal(2).astype(native), dict(stride=2, pad_mode="pad", padding=1, output_padding=1)
    y = ct.conv2d_transpose(x, w, b, **kwargs)
    y_swapped = ct.conv2d_transpose(x.astype(swapped), w.astype(swapped), b.astype(swapped), **kwargs)
    assert y_swapped.dtype == native and y_swapped.dtype.isnative
    np.testing.assert_array_equal(_bits(y_swapped), _bits(y))
    np.testing.assert_array_equal(_bits(ct.conv2d_transpose(x.astype(swapped), w, b, **kwargs)), _bits(y))
    if code == "f8":  # float64 indeed, not float32 (which is off by about 1e-7)
        np.testing.assert_allclose(y_swapped, reference.forward(x, w, b, **kwargs), rtol=1e-13, atol=1e-13)
    g = rng.standard_normal(y.shape).astype(native)
    grads = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    swapped_grads = ct.conv2d_transpose_backward(x.astype(swapped), w.astype(swapped), g.astype(swapped), **kwargs)
    for name, got, expected in zip(("dx", "dweight", "dbias"), swapped_grads, grads):
        assert got.dtype == native and got.dtype.isnative, (name, got.dtype)
        np.testing.assert_array_equal(_bits(got), _bits(expected), err_msg=name)


def test_dtype_errors_speak_of_native_dtypes():
    with pytest.raises(TypeError) as info:
        ct.conv2d_transpose(X.astype(">f8"), W)
    assert "x of dtype float64" in str(info.value) and ">" not in str(info.value)


# ---------------------------------------------------------------- float16 (issue 8, section 3.4)


def _exact_float16_case(rng):
    """A random geometry and float16 arrays whose products and sums float32 holds exactly.

    x and g are multiples of 1/64 in [-1, 1], the weight of 1/128: every product is a multiple
    of 2**-13 and every sum stays far below 2**11, so the float32 convolution is exact whatever
    its order, and the float64 oracle gives the very value MindSpore then rounds to float16.
    """
    while True:
        mode = str(rng.choice(["same", "valid", "pad"]))
        group = int(rng.choice([1, 1, 2]))
        cin, cout = group * int(rng.integers(1, 3)), group * int(rng.integers(1, 3))
        kernel, stride, dilation = ((int(a), int(b)) for a, b in rng.integers(1, [4, 4, 3], size=(2, 3)).T)
        padding, output_padding = 0, (0, 0)
        if mode == "pad":
            padding = tuple(int(p) for p in rng.integers(0, 2, size=4))
            output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        x_shape = (int(rng.integers(1, 3)), cin) + tuple(int(n) for n in rng.integers(1, 6, size=2))
        w_shape = (cin, cout // group) + kernel
        *_, windows = reference._geometry(x_shape, w_shape, stride, mode, padding, dilation)
        if min(windows) > 0:
            break
    cfg = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=kernel,
        stride=stride,
        pad_mode=mode,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        group=group,
        has_bias=True,
    )
    x = (rng.integers(-64, 65, x_shape) / 64).astype(np.float16)
    w = (rng.integers(-64, 65, w_shape) / 128).astype(np.float16)
    b = rng.standard_normal(cout).astype(np.float16)
    return cfg, windows, x, w, b


def test_float16_is_the_exact_result_rounded_then_the_bias_added_and_rounded_again(engine):
    """y = fp16(fp16(conv) + bias), each gradient fp16(exact gradient), bit for bit (but the
    sign of zero), on random geometries; a second check of float16 beside the golden file's."""
    rng = np.random.default_rng(16)
    double_rounding_mattered = 0
    cases, expectations = [], []
    for _ in range(40):
        cfg, (lh, lw), x, w, b = _exact_float16_case(rng)
        geometry = {key: cfg[key] for key in ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")}
        conv = reference.forward(x, w, None, **geometry)
        g = (rng.integers(-64, 65, conv.shape) / 64).astype(np.float16)
        expected_y = conv.astype(np.float16)
        window = expected_y[:, :, :lh, :lw].astype(np.float64) + b.astype(np.float64)[:, None, None]
        expected_y[:, :, :lh, :lw] = window.astype(np.float16)
        once = (conv[:, :, :lh, :lw] + b.astype(np.float64)[:, None, None]).astype(np.float16)
        double_rounding_mattered += int(np.sum(once != expected_y[:, :, :lh, :lw]))
        cases.append((cfg, x, w, b, g))
        expectations.append(dict(zip(("dx", "dw", "db"), reference.backward(x, w, g, **geometry)), y=expected_y))
    # One call for all 40 cases: the XLA engines compile them as one program (conftest).
    for index, (got, expected) in enumerate(zip(engine.forward_backward_many(cases), expectations)):
        for name in ("y", "dx", "dw", "db"):
            assert got[name].dtype == np.float16, (index, name, got[name].dtype)
            np.testing.assert_array_equal(
                got[name], expected[name].astype(np.float16), err_msg=f"case {index}, {name}, {cases[index][0]}"
            )
    assert double_rounding_mattered > 0  # the data tells double rounding from single rounding


# ---------------------------------------------------------------- absurd sizes (issue 8, section 2.3)


@pytest.fixture
def memory_limit(monkeypatch):
    """The memory limit, capped at 16 GiB so that every absurd case below is absurd on any machine.

    The rule itself (half the physical memory) is tested in test_spec.py.
    """
    from convtranspose import spec

    monkeypatch.setattr(spec, "MEMORY_LIMIT", min(spec.MEMORY_LIMIT, 16 * 2**30))
    return spec.MEMORY_LIMIT


def refused_quickly(call):
    """Run ``call``: it must raise ValueError within a second, allocating almost nothing. Returns the message."""
    tracemalloc.start()  # NumPy reports its array buffers to tracemalloc
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            call()
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert peak < 2**20, f"allocated {peak} bytes at the peak"
    return str(info.value)


def test_an_absurd_output_is_refused_before_allocating(memory_limit):
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    message = refused_quickly(lambda: ct.conv2d_transpose(x, w, stride=10**6))  # 'same': 10**12 elements
    for text in ("(1, 1, 1000000, 1000000)", "x of shape (1, 1, 1, 1)", "stride=(1000000, 1000000)", "GiB"):
        assert text in message, message
    g = np.broadcast_to(np.zeros((1, 1, 1, 1), np.float32), (1, 1, 10**6, 10**6))  # costs nothing
    message = refused_quickly(lambda: ct.conv2d_transpose_backward(x, w, g, stride=10**6))
    assert "stride=(1000000, 1000000)" in message and "GiB" in message, message


def test_an_absurd_batch_is_refused_before_allocating(memory_limit):
    x = np.broadcast_to(np.ones((1, 1, 1, 1), np.float32), (10**8, 1, 10, 10))  # costs nothing
    w, b = np.ones((1, 1, 3, 3), np.float32), np.ones(1, np.float32)
    message = refused_quickly(lambda: ct.conv2d_transpose(x, w, b))
    for text in ("(100000000, 1, 10, 10)", "x of shape (100000000, 1, 10, 10)", "kernel_size=(3, 3)", "GiB"):
        assert text in message, message
    net = ct.Conv2dTranspose(1, 1, 3, has_bias=True)
    assert "x of shape (100000000, 1, 10, 10)" in refused_quickly(lambda: net(x))
    assert net(x[:2]).shape == (2, 1, 10, 10)  # an ordinary batch of the same view still works


@pytest.mark.parametrize(
    "args,texts",
    [
        ((1, 1, 10**5), ["kernel_size=100000", "(1, 1, 100000, 100000)", "10000000000 elements"]),
        ((2**31, 1, 3), ["in_channels=2147483648", "(2147483648, 1, 3, 3)"]),
        ((1, 2**31, 3), ["out_channels=2147483648", "(1, 2147483648, 3, 3)"]),
        ((4, 2**40, (3, 1)), ["out_channels=1099511627776", "kernel_size=(3, 1)"]),
    ],
)
def test_absurd_parameters_are_refused_before_allocating(memory_limit, args, texts):
    message = refused_quickly(lambda: ct.Conv2dTranspose(*args))
    assert "weight" in message and "GiB" in message, message
    for text in texts:
        assert text in message, message
