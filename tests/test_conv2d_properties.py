"""MindSpore's nn.Conv2d under generated configurations, on every engine.

Hypothesis draws Conv2d calls from ``configs.conv2d_valid_cases`` (the tests' one generator:
every pad mode, int and tuple forms, asymmetric padding wider than the kernel, strides above the
kernel, dilation, groups and depthwise, bias or not, sizes and batches of 0 and axes of 0 output
rows). Each engine must then

- equal the float64 oracle ``reference.conv2d_forward`` / ``conv2d_backward`` (which shares no
  code with the library) in float32 within 1e-4 + 1e-4*|ref|, and in float64 within 1e-10;
- be the adjoint of its Conv2dTranspose: (A) Conv2dTranspose's input gradient is Conv2d's forward
  on the upstream gradient (the same weight array, channels swapped; 'pad' without the
  output_padding rows), (B) where the shapes make them adjoint, Conv2d's input gradient is
  Conv2dTranspose's forward, so ``<conv2d(x), y> == <x, conv2d_transpose(y)>``, and the gradients
  satisfy ``<x, dx> == <w, dw>``, all in float64;
- give bitwise the result of a contiguous copy for views (every functional form);
- propagate NaN and inf as the oracle does;
- refuse absurd sizes (huge padding, kernel, dilation, stride) with a ValueError naming the
  arguments, within 2 s and before allocating (NumPy: < 64 MiB traced), and compute what the
  oracle computes where a huge padding and dilation cancel into a small output.

Example counts: under the default profile each property runs a fraction of the profile's
examples (``max_examples`` of test_properties.py with the scales below; jax a tenth of NumPy's,
Flax a quarter of jax's); under 'fuzz' every one runs all of them.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st
from test_call_inputs import VIEW_CHECKS, check_non_finite, refused_fast, sprinkle
from test_properties import COMPILING, as_dtype, max_examples

import convtranspose as ct

import reference
from configs import (
    adjoint_transpose_config,
    conv2d_arrays_for,
    conv2d_output_shape,
    conv2d_valid_cases,
    draw_config,
    output_shape,
    weight_shape,
)
from conftest import ADAPTERS, assert_close, counted, geometry

pytestmark = pytest.mark.property

# Fractions of the profile's examples under the default profile (see max_examples): the oracle
# runs numpy and torch 20, jax 2, Flax 1; the adjoint, NaN and view properties numpy and torch 10,
# jax and Flax 1 (jax and Flax compile every new configuration: the seeded cases of
# test_conv2d_oracle.py add theirs).
ORACLE_SCALE = 0.1
ADJOINT_SCALE = 0.05
VIEWS_SCALE = 0.05


def conv2d_oracle(cfg, x, w, b, g):
    kwargs = geometry(cfg)
    dx, dw, db = reference.conv2d_backward(x, w, g, **kwargs)
    return {"y": reference.conv2d_forward(x, w, b, **kwargs), "dx": dx, "dw": dw, "db": db}


def compare(engine, cfg, got, ref, dtype, tol):
    names = {"y", "dx", "dw"} | ({"db"} if cfg["has_bias"] else set())
    assert set(got) == names, f"{engine.name} returned {sorted(got)}, expected {sorted(names)}"
    for name in sorted(names):
        assert_close(got[name], ref[name].astype(dtype), tol, f"{engine.name} {np.dtype(dtype).name} {name}")


def inner(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def magnitude(*products):
    """1e-12 of the sum of |terms| of the inner products: a bound on their float64 rounding."""
    return 1e-12 * (1 + max(float(np.sum(np.abs(a * b))) for a, b in products))


# ---------------------------------------------------------------------------- the oracle


def test_every_valid_conv2d_call_matches_the_float64_oracle(conv2d_engine):
    """float32 within the golden tolerance, float64 to float64 precision, output and gradients."""
    engine = conv2d_engine

    @settings(max_examples=max_examples(engine, ORACLE_SCALE))
    @given(data=st.data())
    @counted
    def check(data):
        cfg, x_shape = data.draw(conv2d_valid_cases(), label="cfg, x_shape")
        x, w, b, rng = data.draw(conv2d_arrays_for(cfg, x_shape), label="arrays")
        g = rng.standard_normal(conv2d_output_shape(cfg, x_shape)).astype(np.float32)
        ref = conv2d_oracle(cfg, x, w, b, g)
        compare(engine, cfg, engine.forward_backward(cfg, x, w, b, g), ref, np.float32, 1e-4)
        if engine.name in COMPILING and data.draw(st.integers(0, 2), label="float64 unless") > 0:
            return  # a float64 call is another compile: a third of the examples
        with engine.float64():
            got = engine.forward_backward(cfg, *as_dtype((x, w, b, g), np.float64))
        compare(engine, cfg, got, ref, np.float64, 1e-10)

    check()


# ---------------------------------------------------------------------------- the adjoint pair


@st.composite
def transpose_cases(draw):
    """A Conv2dTranspose ``(cfg, x_shape)`` with no empty size (configs.draw_config)."""
    case = draw_config(lambda low, high: draw(st.integers(low, high)), 1200, 6, 2, empty=False)
    assume(case is not None)
    return case


def test_conv2d_transpose_input_gradient_is_conv2d_of_the_upstream_gradient(engine):
    """(A) dx of sum(T(x) * g) == Conv2d(g without T's output_padding rows), same weight, channels swapped."""
    conv = ADAPTERS[engine.name]("conv2d")

    @settings(max_examples=max_examples(engine, ADJOINT_SCALE))
    @given(data=st.data())
    @counted
    def check(data):
        t_cfg, x_shape = data.draw(transpose_cases(), label="Conv2dTranspose cfg, x_shape")
        x, w, _, rng = data.draw(conv2d_arrays_for(dict(t_cfg, has_bias=False), x_shape), label="arrays")
        w = rng.standard_normal(weight_shape(t_cfg))  # (C_in_T, C_out_T / group, kH, kW)
        x, g = x.astype(np.float64), rng.standard_normal(output_shape(t_cfg, x_shape))
        op = t_cfg["output_padding"]
        op_h, op_w = op if isinstance(op, tuple) else (op, op)
        g_window = np.ascontiguousarray(g[:, :, : g.shape[2] - op_h, : g.shape[3] - op_w])
        c_cfg = {k: v for k, v in t_cfg.items() if k != "output_padding"}
        c_cfg.update(in_channels=t_cfg["out_channels"], out_channels=t_cfg["in_channels"], has_bias=False)
        with engine.float64():
            dx = engine.forward_backward(dict(t_cfg, has_bias=False), x, w, None, g)["dx"]
            y = conv.forward_backward(c_cfg, g_window, w, None, np.ones(x.shape))["y"]
        assert y.shape == dx.shape, f"{engine.name}: Conv2d gives {y.shape}, the transposed dx {dx.shape}"
        assert_close(y, dx, 1e-10, f"{engine.name}: Conv2d(g) against Conv2dTranspose's dx")

    check()


def test_conv2d_input_gradient_is_conv2d_transpose_where_the_shapes_are_adjoint(engine):
    """(B) <conv2d(x), y> == <x, conv2d_transpose(y)>: Conv2d's dx is T's forward, and <x, dx> == <w, dw>."""
    conv = ADAPTERS[engine.name]("conv2d")

    @settings(max_examples=max_examples(engine, ADJOINT_SCALE))
    @given(data=st.data())
    @counted
    def check(data):
        cfg, x_shape = data.draw(conv2d_valid_cases(max_size=8, max_batch=3, empty=False), label="cfg, x_shape")
        t_cfg = adjoint_transpose_config(cfg, x_shape)
        assume(t_cfg is not None)
        note(f"Conv2dTranspose: {t_cfg}")
        x, w, _, rng = data.draw(conv2d_arrays_for(cfg, x_shape), label="arrays")
        x, w = x.astype(np.float64), w.astype(np.float64)
        y = rng.standard_normal(conv2d_output_shape(cfg, x_shape))
        cfg = dict(cfg, has_bias=False)
        with engine.float64():
            got = conv.forward_backward(cfg, x, w, None, y)
            transposed = engine.forward_backward(t_cfg, y, w, None, np.ones(x.shape))["y"]
        assert transposed.shape == x.shape, f"{engine.name}: conv2d_transpose(y) is {transposed.shape}, x {x_shape}"
        lhs, rhs = inner(got["y"], y), inner(x, transposed)
        scale = magnitude((got["y"], y), (x, transposed))
        assert abs(lhs - rhs) <= scale, f"{engine.name}: <conv2d(x), y> = {lhs} != <x, conv2d_transpose(y)> = {rhs}"
        assert_close(got["dx"], transposed, 1e-10, f"{engine.name}: Conv2d's dx against conv2d_transpose(y)")
        scale = magnitude((x, got["dx"]), (w, got["dw"]))
        assert abs(inner(x, got["dx"]) - inner(w, got["dw"])) <= scale, f"{engine.name}: <x, dx> != <w, dw>"

    check()


# ---------------------------------------------------------------------------- views and copies


@pytest.mark.parametrize("name", list(VIEW_CHECKS))
def test_conv2d_views_and_copies_give_bitwise_the_same_results(name):
    """test_call_inputs.py's view checks (every functional form, the NumPy layer), for nn.Conv2d."""
    check = VIEW_CHECKS[name]

    @settings(max_examples=max_examples(SimpleNamespace(name=name), VIEWS_SCALE))
    @given(data=st.data())
    @counted
    def run(data):
        cfg, x_shape = data.draw(conv2d_valid_cases(max_size=8, max_batch=3))
        x, w, b, rng = data.draw(conv2d_arrays_for(cfg, x_shape))
        if data.draw(st.booleans()) and x_shape[0]:  # a batch of one repeated image: a zero-stride view
            x = np.broadcast_to(x[:1], x.shape).copy()
        g = rng.standard_normal(conv2d_output_shape(cfg, x_shape)).astype(np.float32)
        check(x, w, b, g, cfg, layer="conv2d")

    run()


# ---------------------------------------------------------------------------- NaN and inf


def test_conv2d_nan_and_inf_propagate_as_in_the_oracle(conv2d_engine):
    engine = conv2d_engine

    @settings(max_examples=max_examples(engine, ADJOINT_SCALE))
    @given(data=st.data())
    @counted
    def check(data):
        cfg, x_shape = data.draw(conv2d_valid_cases(), label="cfg, x_shape")
        x, w, b, rng = data.draw(conv2d_arrays_for(cfg, x_shape), label="arrays")
        where = data.draw(st.sampled_from(["x", "weight", "bias", "all"]), label="non-finite in")
        if where in ("x", "all"):
            x = sprinkle(rng, x, 0.15)
        if where in ("weight", "all"):
            w = sprinkle(rng, w, 0.15)
        if where in ("bias", "all") and b is not None:
            b = sprinkle(rng, b, 0.3)
        g = rng.standard_normal(conv2d_output_shape(cfg, x_shape)).astype(np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            ref = conv2d_oracle(cfg, x, w, b, g)
            got = engine.forward_backward(cfg, x, w, b, g)
        for name, value in got.items():
            check_non_finite(engine.name, name, value, ref[name], where)

    check()


# ---------------------------------------------------------------------------- absurd sizes


def conv2d_functional(name):
    """``call(x, weight, bias=None, **geometry) -> ndarray``: one engine's functional conv2d on NumPy arrays."""
    if name == "numpy":
        return ct.conv2d
    if name == "torch":
        torch = pytest.importorskip("torch")
        module = pytest.importorskip("convtranspose.torch")

        def call(x, weight, bias=None, **kwargs):
            wrap = torch.from_numpy
            return module.conv2d(wrap(x), wrap(weight), None if bias is None else wrap(bias), **kwargs).numpy()

        return call
    module = pytest.importorskip("convtranspose.jax")
    return lambda x, weight, bias=None, **kwargs: np.asarray(module.conv2d(x, weight, bias, **kwargs))


FUNCTIONALS = ["numpy", "torch", "jax"]

# (label, weight shape, geometry, words one of which the message must contain) on a (1, 2, 4, 5) input
ABSURD_CALLS = [
    ("padding 10**12", (3, 2, 3, 3), dict(pad_mode="pad", padding=10**12), ("output", "padding")),
    ("padding 2**70 on top", (3, 2, 3, 3), dict(pad_mode="pad", padding=(2**70, 0, 0, 0)), ("output", "padding")),
    ("padding 2**31 on the right", (3, 2, 1, 1), dict(pad_mode="pad", padding=(0, 0, 0, 2**31)), ("output",)),
    ("dilation 10**12 'valid'", (3, 2, 3, 3), dict(pad_mode="valid", dilation=10**12), ("kernel", "dilation")),
    ("kernel 10**3 'valid'", (1, 2, 1, 1000), dict(pad_mode="valid"), ("kernel",)),
    ("stride 10**30", (3, 2, 3, 3), dict(stride=10**30), ("stride",)),
    ("dilation 2**64", (3, 2, 3, 3), dict(dilation=(1, 2**64)), ("dilation",)),
]


@pytest.mark.parametrize("name", FUNCTIONALS)
@pytest.mark.parametrize("label, w_shape, kwargs, words", ABSURD_CALLS, ids=[c[0] for c in ABSURD_CALLS])
def test_an_absurd_conv2d_call_fails_fast_before_allocating(name, label, w_shape, kwargs, words):
    call = conv2d_functional(name)
    x, w = np.ones((1, 2, 4, 5), np.float32), np.ones(w_shape, np.float32)
    refused_fast(lambda: call(x, w, **kwargs), words, f"{name} {label}", numpy_memory=name == "numpy")
    if name == "numpy":
        g = np.ones((1,), np.float32)
        refused_fast(lambda: ct.conv2d_backward(x, w, g, **kwargs), words, f"backward {label}", numpy_memory=True)


@pytest.mark.parametrize("label, w_shape, kwargs, words", ABSURD_CALLS, ids=[c[0] for c in ABSURD_CALLS])
def test_an_absurd_conv2d_layer_call_fails_fast_before_allocating(conv2d_layer_engine, label, w_shape, kwargs, words):
    """The same requests through a layer: refused at construction (stride, dilation) or at the call."""
    engine = conv2d_layer_engine

    def build():
        return engine.construct(in_channels=2, out_channels=w_shape[0], kernel_size=w_shape[2:], **kwargs)

    try:
        net = build()  # outside the clock: a first Flax module pays its warm-up here
    except ValueError:
        refused_fast(build, words, f"{engine.name} constructor {label}", numpy_memory=engine.name == "numpy")
        return
    x = np.ones((1, 2, 4, 5), np.float32)
    refused_fast(
        lambda: engine.call(net, x), words, f"{engine.name} layer {label}", numpy_memory=engine.name == "numpy"
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
def test_an_absurd_conv2d_layer_fails_fast_at_construction(conv2d_layer_engine, kwargs):
    args = dict(dict(in_channels=1, out_channels=1, kernel_size=3), **kwargs)
    refused_fast(
        lambda: conv2d_layer_engine.construct(**args),
        ("kernel_size", "in_channels", "out_channels"),
        f"{conv2d_layer_engine.name} Conv2d {kwargs}",
        numpy_memory=conv2d_layer_engine.name == "numpy",
    )


# A huge padding and dilation that cancel: a small output that reads one tap (MindSpore runs
# dilation 2**31 in 'same' mode); padding past 2**63 where the kernel's reach is past it too.
HUGE_BUT_SMALL = [
    (
        "dilation 2**40 cropped by padding 2**40",
        (3, 2, 3, 3),
        dict(pad_mode="pad", padding=(2**40, 2**40, 1, 1), dilation=(2**40, 1)),
    ),
    (
        "padding past 2**63",
        (3, 2, 5, 1),
        dict(pad_mode="pad", padding=(2**63 + 5, 2**63 + 5, 0, 0), dilation=(2**62, 1)),
    ),
    ("'same' with dilation 2**31 - 1", (3, 2, 3, 3), dict(dilation=(2**31 - 1, 2))),
    ("'same' with stride 2**63 - 1", (3, 2, 5, 1), dict(dilation=(2**62, 1), stride=(2**63 - 1, 1))),
]


@pytest.mark.parametrize("name", FUNCTIONALS)
@pytest.mark.parametrize("label, w_shape, kwargs", HUGE_BUT_SMALL, ids=[c[0] for c in HUGE_BUT_SMALL])
def test_huge_sizes_with_a_small_output_compute_what_the_oracle_computes(name, label, w_shape, kwargs):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    y = conv2d_functional(name)(x, w, **kwargs)
    want = reference.conv2d_forward(x, w, **kwargs)
    assert y.shape == want.shape, f"{name} {label}: {y.shape} != {want.shape}"
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=f"{name} {label}")
