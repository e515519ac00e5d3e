"""Generated valid configurations: every engine equals the float64 oracle, and its gradients are adjoints.

Hypothesis draws configurations over every pad mode, int and tuple forms, asymmetric padding,
output_padding up to max(stride, dilation) - 1, dilation up to 4, stride up to 6 (also above the
kernel), kernels up to 7, groups and depthwise, bias or not, sizes from 0, batch 0 and odd
shapes. Each engine of the ``engine`` fixture must then

- equal tests/reference.py (a float64 loop that shares no code with the library) in float32,
  within the golden tolerance 1e-4 + 1e-4*|ref|, and in float64 within 1e-10 + 1e-10*|ref|
  (so a float64 call that quietly computes in float32 fails);
- satisfy the adjoint identities of a bilinear map in float64: with y = A(x, w) + B(b),
  <y, g> = <x, dx> + <b, db> and <x, dx> = <w, dw>, on shapes larger than the oracle affords;
- refuse, with a ValueError naming the padding, every 'pad' crop that leaves fewer than 0 rows
  (or 0 rows followed by output_padding rows).

jax and Flax need float64 enabled (x64, a process-wide switch): their float64 checks run inside
``jax.enable_x64(True)``, which scopes it to the block. jax compiles every new configuration, so
jax and Flax run a tenth of the profile's examples under the default profile (all of them under
'fuzz'), and a float64 call on a third of them.
"""

import contextlib

import numpy as np
import pytest
from hypothesis import assume, example, given, note, settings
from hypothesis import strategies as st

import reference
from conftest import assert_close, counted, geometry

pytestmark = pytest.mark.property

MODES = ("same", "valid", "pad")
# The oracle is a Python loop over (ci, co, kh, kw, i, j): spatial sizes are bounded so that
# loop stays below this many iterations (about 1.5 us each, forward; twice that backward).
ORACLE_LOOP = 1200
COMPILING = ("jax", "flax")  # engines whose every new configuration is an XLA compile


def max_examples(engine, scale=1.0):
    """The profile's example count; under the default profile, ``scale`` of it, a tenth for the compiling engines.

    jax and Flax compile every new configuration (about 0.2-0.4 s for a forward and its vjp on
    this machine), so under the default profile they run a tenth of the examples, and the
    costlier properties ``scale`` of them. Under the 'fuzz' profile (10,000) every property runs
    all of them, whatever its engine.
    """
    total = settings.default.max_examples
    if total >= 10_000:
        return total
    if engine.name in COMPILING:
        total = max(10, total // 10)
    return max(1, int(total * scale))


def float64_context(engine):
    """A block in which the engine computes float64 (jax: x64, scoped to the block)."""
    return engine.float64()


# ---------------------------------------------------------------------------- strategies


def _pair_form(draw, first, second):
    """``first`` as an int when both axes agree and a coin says so, else the 2-tuple."""
    if first == second and draw(st.booleans()):
        return first
    return (first, second)


def _axis_values(draw, low, high):
    """Two per-axis values in [low, high], equal half of the time (so the int form appears)."""
    first = draw(st.integers(low, high))
    second = first if draw(st.booleans()) else draw(st.integers(low, high))
    return first, second


def _size(draw, high):
    """A spatial size: 0 now and then (only the bias reaches such an output), else 1..high."""
    if draw(st.integers(0, 11)) == 0:
        return 0
    return draw(st.integers(1, max(1, high)))


@st.composite
def channels(draw):
    """(in_channels, out_channels, group): plain, grouped or depthwise."""
    kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    if kind == "plain":
        return draw(st.integers(1, 4)), draw(st.integers(1, 4)), 1
    if kind == "grouped":
        group = draw(st.integers(2, 3))
        return group * draw(st.integers(1, 2)), group * draw(st.integers(1, 2)), group
    group = draw(st.integers(1, 4))
    return group, group * draw(st.integers(1, 2)), group


@st.composite
def valid_cases(draw, loop_budget=ORACLE_LOOP, max_size=6, max_batch=2):
    """``(cfg, x_shape)`` of a valid call: the constructor kwargs of the golden files and an input shape.

    The window of a 'pad' crop keeps at least 0 rows, and output_padding is nonzero only on
    an axis whose window is not empty (MindSpore: uninitialised memory there).
    """
    cin, cout, group = draw(channels())
    kernel = _axis_values(draw, 1, 7)
    stride = _axis_values(draw, 1, 6)
    dilation = _axis_values(draw, 1, 4)
    mode = draw(st.sampled_from(MODES))
    per_pixel = cin * (cout // group) * kernel[0] * kernel[1]
    pixels = max(1, loop_budget // per_pixel)
    h = _size(draw, min(max_size, pixels))
    w = _size(draw, min(max_size, pixels // max(h, 1)))
    n = draw(st.integers(0, max_batch)) if draw(st.integers(0, 7)) == 0 else draw(st.integers(1, max_batch))
    padding, output_padding = 0, 0
    if mode == "pad":
        fulls = [(size - 1) * s + d * (k - 1) + 1 for size, s, d, k in zip((h, w), stride, dilation, kernel)]
        assume(min(fulls) >= 0)  # only an empty axis with a kernel shorter than the stride
        if draw(st.integers(0, 3)) == 0:  # one int for all four sides
            p = draw(st.integers(0, min(fulls) // 2))
            pads = (p, p, p, p)
        else:
            pads = []
            for full in fulls:
                # mostly keep a row; now and then crop everything (an empty but valid output)
                crop = full if draw(st.integers(0, 9)) == 0 else draw(st.integers(0, max(full - 1, 0)))
                before = draw(st.integers(0, crop))
                pads += [before, crop - before]
            pads = tuple(pads)
        windows = (fulls[0] - pads[0] - pads[1], fulls[1] - pads[2] - pads[3])
        padding = pads[0] if len(set(pads)) == 1 and draw(st.booleans()) else pads
        ops = tuple(
            draw(st.integers(0, max(s, d) - 1)) if window > 0 else 0 for s, d, window in zip(stride, dilation, windows)
        )
        output_padding = _pair_form(draw, *ops)
    else:
        padding = draw(st.sampled_from([0, (0, 0, 0, 0)]))
        output_padding = draw(st.sampled_from([0, (0, 0)]))
    cfg = dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=_pair_form(draw, *kernel),
        stride=_pair_form(draw, *stride),
        pad_mode=mode,
        padding=padding,
        output_padding=output_padding,
        dilation=_pair_form(draw, *dilation),
        group=group,
        has_bias=draw(st.booleans()),
    )
    return cfg, (n, cin, h, w)


def weight_shape(cfg):
    k = cfg["kernel_size"]
    kernel = k if isinstance(k, tuple) else (k, k)
    return (cfg["in_channels"], cfg["out_channels"] // cfg["group"]) + kernel


@st.composite
def arrays_for(draw, cfg, x_shape):
    """float32-representable x, weight, bias: standard normal, or small integers (exact sums)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):

        def values(shape):
            return rng.standard_normal(shape).astype(np.float32)
    else:

        def values(shape):
            return rng.integers(-4, 5, shape).astype(np.float32)

    x, w = values(x_shape), values(weight_shape(cfg))
    b = values((cfg["out_channels"],)) if cfg["has_bias"] else None
    return x, w, b, rng


def output_shape(cfg, x_shape):
    """The output shape by the oracle's own geometry (no loop, no library code)."""
    *_, (rows, cols) = reference._geometry(
        x_shape, weight_shape(cfg), cfg["stride"], cfg["pad_mode"], cfg["padding"], cfg["dilation"]
    )
    op = cfg["output_padding"]
    op_h, op_w = op if isinstance(op, tuple) else (op, op)
    return (x_shape[0], cfg["out_channels"], rows + op_h, cols + op_w)


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
    cin, cout, group = draw(channels())
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
