"""Call-time inputs on every engine: what is refused, and what must give the same result as a copy.

- Wrong rank or channel count: ValueError naming x. Integer, bool, complex, or another float
  dtype than the parameters': TypeError naming x. Lists, scalars, None and other frameworks'
  arrays: TypeError naming x. Tensors on another device (torch 'meta'): ValueError naming x.
- Views (non-contiguous, channels-last, negative strides, zero strides, Fortran order),
  read-only and non-native byte order arrays give bitwise the result of a contiguous copy,
  output and gradients.
- NaN and inf propagate exactly as in the float64 oracle (same positions, same signs), the
  output_padding rows stay exact zeros.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import max_examples, oracle

import convtranspose as ct

from configs import arrays_for, output_shape, valid_cases, weight_shape
from conftest import LAYER_NAMES, counted, geometry

CFG = dict(
    in_channels=4,
    out_channels=6,
    kernel_size=(3, 2),
    stride=(2, 3),
    pad_mode="pad",
    padding=(1, 0, 2, 1),
    output_padding=(1, 2),
    dilation=(1, 2),
    group=2,
    has_bias=True,
)
X_SHAPE = (2, 4, 5, 7)


def parameters(dtype=np.float32, cfg=CFG):
    rng = np.random.default_rng(1)
    w = rng.standard_normal(weight_shape(cfg)).astype(dtype)
    b = rng.standard_normal(cfg["out_channels"]).astype(dtype) if cfg["has_bias"] else None
    return w, b


def make_layer(engine, dtype=np.float32):
    w, b = parameters(dtype)
    return engine.construct(**CFG, weight_init=w, bias_init=b, dtype=dtype)


def native(engine, array):
    """``array`` as the engine's own array type (a NumPy array for NumPy)."""
    if engine.name == "torch":
        return engine.torch.from_numpy(np.ascontiguousarray(array))
    if engine.name in ("jax", "flax"):
        return engine.jax.numpy.asarray(array)
    return array


def x_of(dtype=np.float32, shape=X_SHAPE):
    return np.random.default_rng(2).standard_normal(shape).astype(dtype)


def refused(call, exc_type, name):
    with pytest.raises(exc_type) as info:
        call()
    assert name in str(info.value), f"the message does not name {name!r}: {info.value}"
    return info.value


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("shape", [(4, 5, 7), (1, 2, 4, 5, 7), (5, 7), (4,), ()])
def test_a_wrong_rank_is_a_value_error_naming_x(layer_engine, shape):
    net = make_layer(layer_engine)
    refused(lambda: layer_engine.call(net, native(layer_engine, x_of(shape=shape))), ValueError, "x")


@pytest.mark.parametrize("channels", [1, 3, 5, 8])
def test_a_wrong_channel_count_is_a_value_error_naming_x(layer_engine, channels):
    net = make_layer(layer_engine)
    x = native(layer_engine, x_of(shape=(1, channels, 5, 7)))
    refused(lambda: layer_engine.call(net, x), ValueError, "x")


NON_FLOAT = ["int32", "int64", "uint8", "bool", "complex64", "complex128"]


def typed_input(engine, dtype):
    """x of ``dtype`` as the engine's array; skips a dtype the framework cannot hold as such."""
    x = x_of()
    x = (x > 0) if dtype == "bool" else (x * 3).astype(dtype)
    array = native(engine, x)
    if engine.name in ("jax", "flax") and str(array.dtype) != dtype:
        pytest.skip(f"jax holds {dtype} as {array.dtype} without x64")
    return array


@pytest.mark.parametrize("dtype", NON_FLOAT + ["float64", "float16"])
def test_another_dtype_than_the_parameters_is_a_type_error_naming_x(layer_engine, dtype):
    net = make_layer(layer_engine)
    x = typed_input(layer_engine, dtype)
    refused(lambda: layer_engine.call(net, x), TypeError, "x")


def test_a_bfloat16_tensor_into_a_float32_torch_layer_is_a_type_error():
    torch = pytest.importorskip("torch")
    pytest.importorskip("convtranspose.torch")
    from conftest import ADAPTERS

    engine = ADAPTERS["torch"]()
    net = make_layer(engine)
    refused(lambda: net(torch.ones(X_SHAPE, dtype=torch.bfloat16)), TypeError, "x")


def other_arrays(engine):
    """Inputs that are not the engine's array type: lists, tuples, scalars, None, other frameworks'."""
    x = x_of()
    values = {
        "list": x.tolist(),
        "tuple": tuple(x.tolist()),
        "float": 1.5,
        "None": None,
        "str": "x",
        "nested list of arrays": [x[0], x[1]],
    }
    if engine.name != "numpy":
        values["ndarray"] = x
    try:
        import torch

        if engine.name != "torch":
            values["tensor"] = torch.from_numpy(x)
    except ImportError:
        pass
    if engine.name == "torch":
        try:
            import jax.numpy as jnp

            values["jax array"] = jnp.asarray(x)
        except ImportError:
            pass
    return values


def test_what_is_not_an_array_is_a_type_error_naming_x(layer_engine):
    net = make_layer(layer_engine)
    for label, value in other_arrays(layer_engine).items():
        if layer_engine.name == "flax" and label == "ndarray":
            continue  # a jax function takes NumPy arrays (checked by the view tests below)
        with pytest.raises(TypeError) as info:
            net(value)  # not through the adapter, which converts NumPy arrays
        assert "x" in str(info.value), f"{layer_engine.name} {label}: the message does not name x: {info.value}"


# ---------------------------------------------------------------------------- functional dtype checks

FUNCTIONALS = ["numpy", "torch", "jax"]


def functional(name):
    """``(convert, call)``: NumPy -> the framework's array, and its conv2d_transpose."""
    if name == "numpy":
        return (lambda a: a), ct.conv2d_transpose
    if name == "torch":
        torch = pytest.importorskip("torch")
        module = pytest.importorskip("convtranspose.torch")
        return (lambda a: torch.from_numpy(np.ascontiguousarray(a))), module.conv2d_transpose
    jnp = pytest.importorskip("jax.numpy")
    module = pytest.importorskip("convtranspose.jax")
    return jnp.asarray, module.conv2d_transpose


@pytest.mark.parametrize("name", FUNCTIONALS)
def test_functional_arrays_of_different_dtypes_are_type_errors_naming_the_array(name):
    convert, call = functional(name)
    w, b = parameters()
    kwargs = geometry(CFG)
    x = x_of()
    refused(lambda: call(convert(x.astype(np.float16)), convert(w), convert(b), **kwargs), TypeError, "x")
    refused(lambda: call(convert(x), convert(w), convert(b.astype(np.float16)), **kwargs), TypeError, "bias")
    refused(lambda: call(convert(x), convert(w.astype(np.int32)), convert(b), **kwargs), TypeError, "weight")
    refused(lambda: call(convert(x), w.tolist(), convert(b), **kwargs), TypeError, "weight")
    refused(lambda: call(convert(x), convert(w), b.tolist(), **kwargs), TypeError, "bias")
    refused(lambda: call(convert(x), convert(w[:2]), convert(b), **kwargs), ValueError, "x")


# ---------------------------------------------------------------------------- devices (torch)


def test_a_tensor_on_another_device_is_a_value_error_naming_it():
    torch = pytest.importorskip("torch")
    module = pytest.importorskip("convtranspose.torch")
    from conftest import ADAPTERS

    net = make_layer(ADAPTERS["torch"]())
    x = torch.from_numpy(x_of())
    refused(lambda: net(x.to("meta")), ValueError, "x")
    refused(lambda: net.to("meta")(x), ValueError, "x")
    w, b = (torch.from_numpy(a) for a in parameters())
    kwargs = geometry(CFG)
    refused(lambda: module.conv2d_transpose(x, w.to("meta"), b, **kwargs), ValueError, "x")
    refused(lambda: module.conv2d_transpose(x, w, b.to("meta"), **kwargs), ValueError, "bias")


# ---------------------------------------------------------------------------- views and copies


def numpy_views(x):
    """``label -> array`` equal to ``x`` in value but not in memory layout or flags."""
    views = {}
    base = np.empty(x.shape[::-1], x.dtype)  # transposed storage
    base[...] = x.transpose(3, 2, 1, 0)
    views["transposed storage"] = base.transpose(3, 2, 1, 0)
    views["Fortran order"] = np.asfortranarray(x)
    views["negative strides"] = np.ascontiguousarray(x[:, ::-1, ::-1, ::-1])[:, ::-1, ::-1, ::-1]
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    wide[..., ::2] = x
    views["every other column"] = wide[..., ::2]
    readonly = x.copy()
    readonly.setflags(write=False)
    views["read-only"] = readonly
    views["big-endian" if np.little_endian else "little-endian"] = x.astype(x.dtype.newbyteorder())
    if x.shape[0] and np.all(x == x[:1]):
        views["zero batch stride"] = np.broadcast_to(x[:1], x.shape)
    return views


def torch_views(torch, x):
    t = torch.from_numpy(x)
    wide = torch.zeros(x.shape[:3] + (2 * x.shape[3],), dtype=t.dtype)
    wide[..., ::2] = t
    views = {
        "channels-last": t.contiguous(memory_format=torch.channels_last),
        "transposed storage": t.transpose(2, 3).contiguous().transpose(2, 3),
        "every other column": wide[..., ::2],
    }
    if x.shape[0] and np.all(x == x[:1]):
        views["zero batch stride"] = t[:1].expand(*x.shape)
    return views


def same_result(engine, array, label, got, want):
    """``got`` (from a view) is bitwise ``want`` (from the copy), a tuple of arrays each: every
    front end makes a view contiguous and native-endian once, so no kernel sees the layout."""
    for index, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        where = f"{engine} output {index}, {array} {label}"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{where}: not bitwise the copy's result"


# Each check compares one layer's calls on views with its calls on copies: ``layer`` is a key of
# conftest.LAYER_NAMES ('transpose' or 'conv2d'; test_conv2d_properties.py runs the same checks).


def check_numpy_views(x, w, b, g, cfg, layer="transpose"):
    class_name, function_name = LAYER_NAMES[layer]
    forward, backward = getattr(ct, function_name), getattr(ct, f"{function_name}_backward")
    kwargs = geometry(cfg)
    want_y = forward(x, w, b, **kwargs)
    want_grads = backward(x, w, g, **kwargs)
    net = getattr(ct, class_name)(**cfg, weight_init=w, bias_init=b, dtype=x.dtype)

    def call_layer(view):
        return net(view), net.backward(g)

    for label, view in numpy_views(x).items():
        same_result("numpy", "x", label, (forward(view, w, b, **kwargs),), (want_y,))
        same_result("numpy", "x", label, backward(view, w, g, **kwargs), want_grads)
        same_result("numpy", "x", label, call_layer(view), (want_y, want_grads[0]))
    for label, view in numpy_views(w).items():
        same_result("numpy", "weight", label, (forward(x, view, b, **kwargs),), (want_y,))
        same_result("numpy", "weight", label, backward(x, view, g, **kwargs), want_grads)
    for label, view in numpy_views(g).items():
        same_result("numpy", "grad_output", label, backward(x, w, view, **kwargs), want_grads)


def check_torch_views(x, w, b, g, cfg, layer="transpose"):
    torch = pytest.importorskip("torch")
    function = getattr(pytest.importorskip("convtranspose.torch"), LAYER_NAMES[layer][1])
    kwargs = geometry(cfg)
    weight = torch.from_numpy(w).requires_grad_()
    bias = None if b is None else torch.from_numpy(b)

    def run(xt, grad):
        xt = xt.detach().requires_grad_()
        y = function(xt, weight, bias, **kwargs)
        # allow_unused: a Conv2d whose window reads no input has no graph to x
        dx, dw = torch.autograd.grad(y, (xt, weight), grad, allow_unused=True)
        return y.detach().numpy(), dx.numpy(), dw.numpy()

    want = run(torch.from_numpy(x), torch.from_numpy(g))
    for label, view in torch_views(torch, x).items():
        same_result("torch", "x", label, run(view, torch.from_numpy(g)), want)
    for label, view in torch_views(torch, g).items():
        same_result("torch", "grad_output", label, run(torch.from_numpy(x), view), want)


def check_jax_views(x, w, b, g, cfg, layer="transpose"):
    jax = pytest.importorskip("jax")
    function = getattr(pytest.importorskip("convtranspose.jax"), LAYER_NAMES[layer][1])
    kwargs = geometry(cfg)

    def conv(x, w):
        return function(x, w, b, **kwargs)

    def run(x, w, g):
        return (conv(x, w),) + tuple(jax.vjp(conv, x, w)[1](g))

    def run_closed_over(x, w, g, viewed):
        # jax.vjp converts its primals itself and refuses a big-endian array (as it does for
        # any function): the view reaches the library closed over, and the gradient is the
        # other argument's.
        if viewed == "x":
            return conv(x, w), jax.vjp(lambda w: conv(x, w), w)[1](g)[0]
        return conv(x, w), jax.vjp(lambda x: conv(x, w), x)[1](g)[0]

    want = run(x, w, g)
    for viewed, views in (("x", numpy_views(x)), ("weight", numpy_views(w))):
        for label, view in views.items():
            args = (view, w) if viewed == "x" else (x, view)
            if view.dtype.isnative:
                same_result("jax", viewed, label, run(*args, g), want)
            else:  # against the copy taken the same way (a closed-over array compiles differently)
                same_result("jax", viewed, label, run_closed_over(*args, g, viewed), run_closed_over(x, w, g, viewed))


VIEW_CHECKS = {"numpy": check_numpy_views, "torch": check_torch_views, "jax": check_jax_views}


@pytest.mark.property
@pytest.mark.parametrize("name", list(VIEW_CHECKS))
def test_views_and_copies_give_bitwise_the_same_results(name):
    check = VIEW_CHECKS[name]

    @settings(max_examples=max_examples(SimpleNamespace(name=name), scale=0.25))
    @given(data=st.data())
    @counted
    def run(data):
        cfg, x_shape = data.draw(valid_cases(loop_budget=20_000, max_size=8, max_batch=3))
        x, w, b, rng = data.draw(arrays_for(cfg, x_shape))
        if data.draw(st.booleans()) and x_shape[0]:  # a batch of one repeated image: a zero-stride view
            x = np.broadcast_to(x[:1], x.shape).copy()
        g = rng.standard_normal(output_shape(cfg, x_shape)).astype(np.float32)
        check(x, w, b, g, cfg)

    run()


# ---------------------------------------------------------------------------- NaN and inf


def sprinkle(rng, array, fraction):
    """A copy with about ``fraction`` of its entries NaN, inf or -inf."""
    out = array.copy()
    mask = rng.random(out.shape) < fraction
    out[mask] = rng.choice(np.array([np.nan, np.inf, -np.inf], out.dtype), int(mask.sum()))
    return out


# The torch and jax engines compute with their frameworks' convolutions, which pair a value with
# the zeros of a cropped or padded position (0 * NaN = NaN) where the direct sum has no product
# at all: a non-finite x or weight may also reach such entries, as in nn.ConvTranspose2d and
# lax.conv_transpose themselves. Everything the oracle makes non-finite they make non-finite,
# and every entry they leave finite is the oracle's. The NumPy engine is exact.
FRAMEWORK_NAN = ("torch", "jax", "flax")


def check_non_finite(engine, name, value, want, where):
    """``value`` has the oracle's NaN and inf (exactly, or for FRAMEWORK_NAN at least them) and its finite values."""
    label = f"{engine} {name} with non-finite values in {where}"
    assert value.shape == want.shape, label
    nan, want_nan, want_inf = np.isnan(value), np.isnan(want), np.isinf(want)
    if engine in FRAMEWORK_NAN and where != "bias":
        assert np.all(nan[want_nan]), f"{label}: NaN missing at {np.argwhere(want_nan & ~nan)[:5].tolist()}"
        finite = np.isfinite(value)
        assert np.all(np.isfinite(want[finite])), f"{label}: finite where the oracle is not"
        inf = want_inf & ~nan
        assert np.array_equal(value[inf], want[inf]), f"{label}: infinities differ"
    else:
        assert np.array_equal(nan, want_nan), f"{label}: NaN at {np.argwhere(nan != want_nan)[:5].tolist()} differs"
        inf = want_inf
        assert np.array_equal(value[inf], want[inf]), f"{label}: infinities differ"
        finite = np.isfinite(want)
    scale = 1 + np.abs(want[finite]).max(initial=0)
    np.testing.assert_allclose(value[finite], want[finite], rtol=1e-4, atol=1e-4 * scale, err_msg=label)


@pytest.mark.property
def test_nan_and_inf_propagate_as_in_the_oracle(engine):

    @settings(max_examples=max_examples(engine, scale=0.5))
    @given(data=st.data())
    @counted
    def check(data):
        cfg, x_shape = data.draw(valid_cases(), label="cfg, x_shape")
        x, w, b, rng = data.draw(arrays_for(cfg, x_shape), label="arrays")
        where = data.draw(st.sampled_from(["x", "weight", "bias", "all"]), label="non-finite in")
        if where in ("x", "all"):
            x = sprinkle(rng, x, 0.15)
        if where in ("weight", "all"):
            w = sprinkle(rng, w, 0.15)
        if where in ("bias", "all") and b is not None:
            b = sprinkle(rng, b, 0.3)
        g = rng.standard_normal(output_shape(cfg, x_shape)).astype(np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            ref = oracle(cfg, x, w, b, g)
            got = engine.forward_backward(cfg, x, w, b, g)
        for name, value in got.items():
            check_non_finite(engine.name, name, value, ref[name], where)
        op = cfg["output_padding"]
        op_h, op_w = op if isinstance(op, tuple) else (op, op)
        y = got["y"]
        assert not np.any(y[:, :, y.shape[2] - op_h :]) and not np.any(y[..., y.shape[3] - op_w :]), (
            f"{engine.name}: output_padding rows are not exact zeros"
        )

    check()


# ---------------------------------------------------------------------------- 64-bit sizes

# (label, x shape, kernel, geometry): a stride or dilation past 2**63 that changes nothing (one
# input row; a one-tap kernel), and a one-row axis whose 'same' window extends past the kernel.
UNNEEDED_HUGE = [
    ("dilation 2**63, one tap", (1, 2, 3, 4), (1, 3), dict(dilation=(2**63, 1))),
    ("dilation 10**30, one tap", (2, 2, 3, 4), (2, 1), dict(dilation=(2, 10**30), pad_mode="valid")),
    ("stride 2**70, one row", (1, 2, 1, 4), (2, 3), dict(stride=(2**70, 2), pad_mode="pad", padding=(0, 1, 1, 0))),
    ("stride 4, one row, 'same' extension", (2, 2, 1, 3), (2, 2), dict(stride=(4, 1), pad_mode="same")),
]


@pytest.mark.parametrize("label, x_shape, kernel, geometry_kwargs", UNNEEDED_HUGE, ids=[c[0] for c in UNNEEDED_HUGE])
def test_a_stride_or_dilation_that_changes_nothing_may_be_any_size(engine, label, x_shape, kernel, geometry_kwargs):
    """Found by `make fuzz`: torch and XLA took dilation 2**63 of a one-tap kernel into their 64-bit
    arguments and overflowed; every engine now passes such a value on as 1."""
    rng = np.random.default_rng(3)
    cfg = dict(
        dict(stride=1, pad_mode="same", padding=0, output_padding=0, dilation=1, group=1),
        in_channels=x_shape[1],
        out_channels=2,
        kernel_size=kernel,
        has_bias=True,
        **geometry_kwargs,
    )
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((x_shape[1], 2) + kernel).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    g = rng.standard_normal(output_shape(cfg, x_shape)).astype(np.float32)
    got, want = engine.forward_backward(cfg, x, w, b, g), oracle(cfg, x, w, b, g)
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-5, err_msg=f"{engine.name} {label} {name}")


@pytest.mark.parametrize("name", FUNCTIONALS)
@pytest.mark.parametrize(
    "kwargs, words",
    [
        (
            dict(stride=(2**63, 1), pad_mode="pad", padding=(2**64, 0, 0, 0)),
            ("stride=(9223372036854775808, 1)", "2**63 - 1"),
        ),
        (dict(dilation=(1, 2**64)), ("dilation=(1, 18446744073709551616)", "2**63 - 1")),
        (dict(stride=(2**62, 1), pad_mode="pad", padding=(2**63 - 1, 0, 0, 0)), ("stride=", "padding=", "2**63 - 1")),
    ],
    ids=["stride 2**63", "dilation 2**64", "a full length past 2**63 cropped to 3 rows"],
)
def test_sizes_past_64_bits_are_refused_naming_the_arguments(name, kwargs, words):
    convert, call = functional(name)
    x, w = convert(np.ones((1, 2, 3, 3), np.float32)), convert(np.ones((2, 2, 2, 3), np.float32))
    with pytest.raises(ValueError) as info:
        call(x, w, **kwargs)
    assert all(word in str(info.value) for word in words), str(info.value)


# ---------------------------------------------------------------------------- absurd requests

# (label, x shape, weight shape, geometry, words one of which the message must contain)
ABSURD_CALLS = [
    ("stride 10**6", (1, 1, 100, 100), (1, 1, 3, 3), dict(stride=10**6), ("output", "stride")),
    (
        "kernel 10**5 dilated 10**5",
        (1, 1, 1000, 1000),
        (1, 1, 1, 10**5),
        dict(dilation=(1, 10**5), pad_mode="valid"),
        ("output", "dilation"),
    ),
    ("a 10**12-element output", (1, 1, 1000, 1000), (1, 1, 1, 1), dict(stride=1000), ("output",)),
    ("a 10**12-element batch", (10**4, 1, 10, 10), (1, 1, 2, 2), dict(stride=1000), ("output",)),
]


def refused_fast(call, words, label, numpy_memory=False):
    """``call`` raises a ValueError containing one of ``words`` within 2 s, allocating < 64 MiB (NumPy)."""
    import time
    import tracemalloc

    if numpy_memory:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            call()
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] if numpy_memory else 0
        if numpy_memory:
            tracemalloc.stop()
    assert elapsed < 2, f"{label}: refused only after {elapsed:.1f} s"
    assert peak < 64 * 2**20, f"{label}: {peak / 2**20:.0f} MiB allocated before refusing"
    assert any(word in str(info.value) for word in words), f"{label}: the message names none of {words}: {info.value}"


@pytest.mark.parametrize("name", FUNCTIONALS)
@pytest.mark.parametrize("label, x_shape, w_shape, kwargs, words", ABSURD_CALLS, ids=[c[0] for c in ABSURD_CALLS])
def test_an_absurd_functional_call_fails_fast_before_allocating(name, label, x_shape, w_shape, kwargs, words):
    convert, call = functional(name)
    x, w = convert(np.ones(x_shape, np.float32)), convert(np.ones(w_shape, np.float32))
    refused_fast(lambda: call(x, w, None, **kwargs), words, f"{name} {label}", numpy_memory=name == "numpy")
    if name == "numpy":
        g = np.ones((1,), np.float32)
        refused_fast(
            lambda: ct.conv2d_transpose_backward(np.asarray(x), np.asarray(w), g, **kwargs),
            words,
            f"numpy backward {label}",
            numpy_memory=True,
        )
    if name == "jax":  # under jit the check runs while tracing
        import functools

        import jax

        jitted = jax.jit(functools.partial(call, bias=None, **kwargs))
        refused_fast(lambda: jitted(x, w), words, f"jitted jax {label}")


@pytest.mark.parametrize("label, x_shape, w_shape, kwargs, words", ABSURD_CALLS, ids=[c[0] for c in ABSURD_CALLS])
def test_an_absurd_layer_call_fails_fast_before_allocating(layer_engine, label, x_shape, w_shape, kwargs, words):
    net = layer_engine.construct(in_channels=1, out_channels=1, kernel_size=w_shape[2:], weight_init="ones", **kwargs)
    x = native(layer_engine, np.ones(x_shape, np.float32))
    refused_fast(
        lambda: layer_engine.call(net, x),
        words,
        f"{layer_engine.name} layer {label}",
        numpy_memory=layer_engine.name == "numpy",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=10**5),
        dict(kernel_size=(1, 10**12)),
        dict(in_channels=10**6, out_channels=10**6),
        dict(in_channels=2**40, out_channels=2**40, group=2**40),
    ],
    ids=["kernel 10**5", "kernel 10**12", "10**12 weights", "group 2**40"],
)
def test_an_absurd_layer_fails_fast_at_construction(layer_engine, kwargs):
    args = dict(dict(in_channels=1, out_channels=1, kernel_size=3), **kwargs)
    refused_fast(
        lambda: layer_engine.construct(**args),
        ("kernel_size", "in_channels", "out_channels"),
        f"{layer_engine.name} constructor {kwargs}",
        numpy_memory=layer_engine.name == "numpy",
    )


HUGE_KERNEL_SCRIPT = """
import resource, sys
import numpy as np
name, n, taps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if name == "numpy":
    import convtranspose as ct
    def call(x, w, **kwargs): return ct.conv2d_transpose(x, w, **kwargs)
elif name == "torch":
    import torch
    import convtranspose.torch as module
    torch.set_num_threads(1)  # one thread: no per-thread buffers whose number depends on the machine
    def call(x, w, **kwargs): return module.conv2d_transpose(torch.from_numpy(x), torch.from_numpy(w), **kwargs).numpy()
else:
    import convtranspose.jax as module
    def call(x, w, **kwargs): return np.asarray(module.conv2d_transpose(x, w, **kwargs))

def run(taps):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, n, n)).astype(np.float32)
    w = rng.standard_normal((1, 1, 1, taps)).astype(np.float32)
    tap = taps // 2  # the one tap whose columns land in the window
    full = (n - 1) + (taps - 1) * taps + 1
    y = call(x, w, dilation=(1, taps), pad_mode="pad", padding=(0, 0, tap * taps, full - tap * taps - n))
    assert np.array_equal(y, x * w[0, 0, 0, tap]), "wrong result"

run(n + 1)  # warm-up (imports, compiles, thread pools): not what is measured
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(taps)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


JAX_HUGE_STRIDE_SCRIPT = """
import resource, sys
import numpy as np, jax
import convtranspose as ct, convtranspose.jax as cj
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 2, 4, 2)).astype(np.float32)
w = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)

def run(stride):
    full = stride + 2   # two input columns: the second lands at stride, the window keeps its 2 columns
    kwargs = dict(stride=(2, stride), pad_mode="pad", padding=(0, 0, full - 2, 0))
    y, vjp = jax.vjp(lambda x, w: cj.conv2d_transpose(x, w, **kwargs), x, w)
    g = np.ones(y.shape, np.float32)
    dx, dw = vjp(g)
    rdx, rdw, _ = ct.conv2d_transpose_backward(x, w, g, **kwargs)
    assert np.allclose(y, ct.conv2d_transpose(x, w, **kwargs), atol=1e-5), "wrong output"
    assert np.allclose(dx, rdx, atol=1e-5) and np.allclose(dw, rdw, atol=1e-5), "wrong gradients"

run(10 ** 3)   # warm-up (imports, compiles): not what is measured
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run(int(sys.argv[1]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_the_jax_backward_of_a_huge_stride_cropped_to_a_small_window_costs_what_its_output_costs():
    """Found in review: the backward padded the gradient back to the uncropped 10**7 columns (630 MB,
    and out of memory near 2**31). Its tap slices now read the window itself."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", JAX_HUGE_STRIDE_SCRIPT, str(10**7)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grown_mib = int(result.stdout.split()[-1])
    assert grown_mib < 64, f"a call with a 4x2 output raised the peak memory by {grown_mib} MiB"


@pytest.mark.parametrize("name", FUNCTIONALS)
def test_a_huge_dilated_kernel_with_one_tap_in_the_window_costs_what_its_output_costs(name):
    """10**5 taps dilated by 10**5, cropped so that one tap reaches a 32x32 window: a valid, small request.

    Run in a fresh process so that its peak memory (ru_maxrss) is this call's own, with one thread
    (thread pools and per-thread allocator arenas otherwise grow with the machine's load and cores).
    Found flaky under load: the torch engine then ran PyTorch's kernel, whose columns for 10**5 taps
    took 391 MiB; the tap route computes the one tap in the window (4 MiB, measured).
    """
    import os
    import subprocess
    import sys

    functional(name)  # skips when the engine is absent
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2")
    result = subprocess.run(
        [sys.executable, "-c", HUGE_KERNEL_SCRIPT, name, "32", str(10**5)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    grown_mib = int(result.stdout.split()[-1])
    assert grown_mib < 64, f"{name}: a call with a 32x32 output raised the peak memory by {grown_mib} MiB"
