"""Generated valid configurations: every engine equals the float64 oracle, and its gradients are adjoints.

Hypothesis draws configurations (``configs.valid_cases``, the tests' one generator) over every pad
mode, int and tuple forms, asymmetric padding, output_padding up to max(stride, dilation) - 1,
dilation up to 4, stride up to 6 (also above the kernel), kernels up to 7, groups and depthwise,
bias or not, sizes from 0, batch 0 and odd shapes. Each engine of the ``engine`` fixture must then

- equal tests/reference.py (a float64 oracle that shares no code with the library) in float32,
  within the golden tolerance 1e-4 + 1e-4*|ref|, and in float64 within 1e-10 + 1e-10*|ref|
  (so a float64 call that quietly computes in float32 fails);
- satisfy the adjoint identities of a bilinear map in float64: with y = A(x, w) + B(b),
  <y, g> = <x, dx> + <b, db> and <x, dx> = <w, dw>, on shapes larger than the oracle affords;
- refuse, with a ValueError naming the padding, every 'pad' crop that leaves fewer than 0 rows
  (or 0 rows followed by output_padding rows).

jax and Flax need float64 enabled (x64, a process-wide switch): their float64 checks run inside
``jax.enable_x64(True)``, which scopes it to the block. jax compiles every new configuration, so
jax runs a tenth of the profile's examples under the default profile and Flax (whose module
computes with the jax function) a quarter of jax's (all of them under 'fuzz'), and a float64 call
on a third of them.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

import reference
from configs import arrays_for, draw_channels, output_shape, valid_cases, weight_shape
from conftest import assert_close, counted, geometry

pytestmark = pytest.mark.property

COMPILING = ("jax", "flax")  # engines whose every new configuration is an XLA compile


def max_examples(engine, scale=1.0):
    """The profile's example count; under the default profile, ``scale`` of it, less for the compiling engines.

    jax and Flax compile every new configuration (about 0.2-0.4 s for a forward and its vjp on
    this machine), so under the default profile jax runs a tenth of the examples, and the
    costlier properties ``scale`` of them. The Flax module computes with the jax function, whose
    every property runs here with jax's count: Flax runs a quarter of that, enough for the module's
    own part (its parameters and dtype on the way in and out). Under the 'fuzz' profile (10,000)
    every property runs all of them, whatever its engine.
    """
    total = settings.default.max_examples
    if total >= 10_000:
        return total
    if engine.name in COMPILING:
        total = max(10, total // 10)
    if engine.name == "flax":
        total = max(2, total // 4)
    return max(1, int(total * scale))


def float64_context(engine):
    """A block in which the engine computes float64 (jax: x64, scoped to the block)."""
    return engine.float64()


def oracle(cfg, x, w, b, g):
    kwargs = geometry(cfg)
    y = reference.forward(x, w, b, **kwargs)
    dx, dw, db = reference.backward(x, w, g, **kwargs)
    return {"y": y, "dx": dx, "dw": dw, "db": db}


def as_dtype(arrays, dtype):
    return tuple(None if a is None else a.astype(dtype) for a in arrays)


def compare(engine, cfg, got, ref, dtype, tol):
    names = {"y", "dx", "dw"} | ({"db"} if cfg["has_bias"] else set())
    assert set(got) == names, f"{engine.name} returned {sorted(got)}, expected {sorted(names)}"
    for name in sorted(names):
        assert_close(got[name], ref[name].astype(dtype), tol, f"{engine.name} {np.dtype(dtype).name} {name}")


def numpy_routes(engine, draw):
    """For the NumPy engine, a forced forward and backward route (each route must be exact)."""
    if engine.name != "numpy":
        return contextlib.nullcontext()
    from convtranspose._engines import numpy as numpy_engine

    forward = draw(st.sampled_from([None] + sorted(numpy_engine.FORWARD_ROUTES)))
    backward = draw(st.sampled_from([None] + sorted(numpy_engine.BACKWARD_ROUTES)))
    note(f"numpy routes: forward={forward}, backward={backward}")
    return numpy_engine.forced_routes(forward, backward)


# ---------------------------------------------------------------------------- properties


def test_every_valid_configuration_matches_the_float64_oracle(engine):
    """float32 within the golden tolerance, float64 to float64 precision, output and gradients."""

    @settings(max_examples=max_examples(engine))
    @given(data=st.data())
    @counted
    def check(data):
        cfg, x_shape = data.draw(valid_cases(), label="cfg, x_shape")
        x, w, b, rng = data.draw(arrays_for(cfg, x_shape), label="arrays")
        g = rng.standard_normal(output_shape(cfg, x_shape)).astype(np.float32)
        ref = oracle(cfg, x, w, b, g)
        with numpy_routes(engine, data.draw):
            got = engine.forward_backward(cfg, x, w, b, g)
            compare(engine, cfg, got, ref, np.float32, 1e-4)
            if engine.name in COMPILING and data.draw(st.integers(0, 2), label="float64 unless") > 0:
                return  # a float64 call is another compile: a third of the examples
            with float64_context(engine):
                got = engine.forward_backward(cfg, *as_dtype((x, w, b, g), np.float64))
            compare(engine, cfg, got, ref, np.float64, 1e-10)

    check()


def test_gradients_are_the_adjoints_of_the_forward_in_float64(engine):
    """<y, g> = <x, dx> + <b, db> and <x, dx> = <w, dw> (y is bilinear in x and w, affine in b)."""

    @settings(max_examples=max_examples(engine))
    @given(data=st.data())
    @counted
    def check(data):
        # no oracle here: larger channels and images than the loop affords
        cfg, x_shape = data.draw(valid_cases(loop_budget=40_000, max_size=12, max_batch=3), label="cfg, x_shape")
        x, w, b, rng = data.draw(arrays_for(cfg, x_shape), label="arrays")
        x, w, b = as_dtype((x, w, b), np.float64)
        g = rng.standard_normal(output_shape(cfg, x_shape))
        with float64_context(engine):
            got = engine.forward_backward(cfg, x, w, b, g)
        for name in got:
            assert got[name].dtype == np.float64, f"{engine.name} {name} is {got[name].dtype}, not float64"
        y, dx, dw = got["y"], got["dx"], got["dw"]
        terms = {"<y, g>": y * g, "<x, dx>": x * dx, "<w, dw>": w * dw}
        if b is not None:
            terms["<b, db>"] = b * got["db"]
        sums = {name: float(np.sum(t)) for name, t in terms.items()}
        # each sum is exact to about (terms) * eps * sum|terms|: 1e-12 of the magnitude is ample
        scale = 1e-12 * (1 + max(float(np.sum(np.abs(t))) for t in terms.values()))
        note(f"sums: {sums}, scale {scale:.3g}")
        assert abs(sums["<x, dx>"] - sums["<w, dw>"]) <= scale, f"{engine.name}: <x, dx> != <w, dw>: {sums}"
        bias_part = sums.get("<b, db>", 0.0)
        assert abs(sums["<y, g>"] - sums["<x, dx>"] - bias_part) <= scale, (
            f"{engine.name}: <y, g> != <x, dx> + <b, db>: {sums}"
        )

    check()


@st.composite
def over_cropped_cases(draw):
    """A 'pad' configuration whose crop leaves fewer than 0 rows, or 0 rows and output_padding.

    Returns ``(cfg, x_shape, axis)`` with axis 'height' or 'width', the one over-cropped: it cannot
    be read back from the padding, which is all zeros when an empty input (0 rows) meets a
    zero-length window and output_padding.
    """
    cin, cout, group = draw_channels(lambda low, high: draw(st.integers(low, high)))
    k, s, d = draw(st.integers(1, 7)), draw(st.integers(1, 6)), draw(st.integers(1, 4))
    h = draw(st.integers(0, 5))
    full = (h - 1) * s + d * (k - 1) + 1
    if draw(st.booleans()) and full >= 0 and max(s, d) > 1:
        crop, op = full, draw(st.integers(1, max(s, d) - 1))  # an empty window, then zeros
    else:
        crop, op = max(full, 0) + draw(st.integers(1, 4)), 0
    before = draw(st.integers(0, crop))
    axis = draw(st.sampled_from([0, 1]))
    pads = [0, 0, 0, 0]
    pads[2 * axis], pads[2 * axis + 1] = before, crop - before
    ops = [0, 0]
    ops[axis] = op
    size = [3, 3]
    size[axis] = h
    cfg = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=k,
        stride=s,
        pad_mode="pad",
        padding=tuple(pads),
        output_padding=tuple(ops),
        dilation=d,
        group=group,
        has_bias=draw(st.booleans()),
    )
    return cfg, (1, cin, size[0], size[1]), ("height", "width")[axis]


def test_a_crop_that_leaves_no_rows_is_refused_naming_the_padding(engine):

    @settings(max_examples=max_examples(engine, scale=0.5))
    @given(case=over_cropped_cases())
    # Found by the suite: no rows in, a zero-length window, and output_padding on the height axis,
    # with all-zero padding.
    @example(
        case=(
            dict(
                in_channels=1,
                out_channels=1,
                kernel_size=2,
                stride=2,
                pad_mode="pad",
                padding=(0, 0, 0, 0),
                output_padding=(1, 0),
                dilation=1,
                group=1,
                has_bias=False,
            ),
            (1, 1, 0, 3),
            "height",
        )
    )
    @counted
    def check(case):
        cfg, x_shape, axis = case
        x = np.ones(x_shape, np.float32)
        w = np.ones(weight_shape(cfg), np.float32)
        b = np.ones(cfg["out_channels"], np.float32) if cfg["has_bias"] else None
        with pytest.raises(ValueError, match="padding") as info:
            engine.forward_backward(cfg, x, w, b, np.ones((1,), np.float32))
        assert axis in str(info.value), f"{engine.name}: the message does not say which axis: {info.value}"

    check()
