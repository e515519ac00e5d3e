"""The JAX function: every route against MindSpore's goldens and the float64 oracle; jit, vmap,
second-order gradients, float64 check_grads, float16/bfloat16, sharding, errors and the GPU.

MindSpore parity on every golden case runs through the ``engine`` fixture
(tests/test_golden_parity.py); this file forces each formulation of the engine in turn. XLA
compiles once per shape (about half a second here), so the default tests reuse a few shapes and
the sweeps are marked slow.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ct_jax = pytest.importorskip("convtranspose.jax")

from jax import lax  # noqa: E402

import convtranspose as ct  # noqa: E402
from convtranspose._engines import jax as engine  # noqa: E402
from convtranspose.spec import spec_from_weight  # noqa: E402

import reference  # noqa: E402
from conftest import ROOT, assert_close, geometry, host_devices_env  # noqa: E402

FP32_TOL = 1e-4
FP16_TOL = 2e-3
STATIC = ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")

# Every value of every route, each combination on the cases it applies to ('taps' needs one
# input channel per group).
ROUTE_SETS = {
    "col2im/im2col/conv": engine.Routes("col2im", "im2col", "conv"),
    "col2im_nhwc/conv/im2col": engine.Routes("col2im_nhwc", "conv", "im2col"),
    "conv/im2col/im2col": engine.Routes("conv", "im2col", "im2col"),
    "taps/taps/taps": engine.Routes("taps", "taps", "taps"),
}


def _spec(cfg, has_bias):
    return spec_from_weight(
        (cfg["in_channels"], cfg["out_channels"] // cfg["group"]) + _pair(cfg["kernel_size"]),
        has_bias=has_bias,
        **geometry(cfg),
    )


def _pair(value):
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _forward_backward(spec, x, w, b, g, routes=None):
    """y and the gradients of sum(y * g), in one compiled function (one compile per case)."""

    def run(x, w, b, g):
        y, vjp = jax.vjp(lambda x, w, b: engine.forward(x, w, b, spec, routes), x, w, b)
        return y, vjp(g)

    y, (dx, dw, db) = jax.jit(run)(x, w, b, g)
    out = {"y": y, "dx": dx, "dw": dw}
    if b is not None:
        out["db"] = db
    return {name: np.asarray(value) for name, value in out.items()}


def _covering_cases(configs, depthwise):
    """A few golden cases that together hold every feature: groups, depthwise, dilation,
    output_padding, zero extension (k_eff < stride), odd 'same' crops, 'valid', with and
    without bias. First match per feature, so the choice is fixed by the file."""
    features = {}
    for index, cfg in enumerate(configs):
        spec = _spec(cfg, cfg["has_bias"])
        cig = spec.in_channels // spec.group
        if (cig == 1) != depthwise:
            continue
        marks = {f"{spec.pad_mode}/{spec.has_bias}"}
        if spec.group > 1:
            marks.add("groups")
        if spec.dilation != (1, 1):
            marks.add("dilation")
        if any(spec.output_padding):
            marks.add("output_padding")
        if any(plan.crop_after < 0 for plan in spec.axes):
            marks.add("extension")
        if spec.pad_mode == "same" and any((plan.effective_kernel - plan.stride) % 2 for plan in spec.axes):
            marks.add("odd same")
        for mark in marks:
            features.setdefault(mark, index)
    return sorted(set(features.values()))


def _check_golden(golden, index, tol, routes=None, label=""):
    configs, data = golden
    cfg = configs[index]
    spec = _spec(cfg, cfg["has_bias"])
    b = data[f"{index}_b"] if cfg["has_bias"] else None
    got = _forward_backward(spec, data[f"{index}_x"], data[f"{index}_w"], b, data[f"{index}_g"], routes)
    for name, value in got.items():
        assert_close(value, data[f"{index}_{name}"], tol, f"{label} case {index} {name} {cfg}")


# ---------------------------------------------------------------------------- every route vs MindSpore


@pytest.mark.parametrize("routes", list(ROUTE_SETS), ids=list(ROUTE_SETS))
def test_every_route_matches_mindspore(fp32_golden, routes):
    depthwise = routes.startswith("taps")
    cases = _covering_cases(fp32_golden[0], depthwise)
    assert len(cases) >= (3 if depthwise else 6)
    for index in cases:
        _check_golden(fp32_golden, index, FP32_TOL, ROUTE_SETS[routes], routes)


@pytest.mark.slow
@pytest.mark.parametrize("routes", list(ROUTE_SETS), ids=list(ROUTE_SETS))
def test_every_route_on_every_golden_case(fp32_golden, routes):
    configs, _ = fp32_golden
    for index, cfg in enumerate(configs):
        spec = _spec(cfg, cfg["has_bias"])
        if routes.startswith("taps") and spec.in_channels // spec.group != 1:
            continue
        _check_golden(fp32_golden, index, FP32_TOL, ROUTE_SETS[routes], routes)


def test_chosen_routes_by_shape():
    dense = spec_from_weight((64, 32, 4, 4), stride=2, pad_mode="pad", padding=1)
    assert engine.choose_routes(dense, (8, 64, 48, 48)) == ("col2im", "conv", "conv")
    assert engine.choose_routes(dense, (8, 64, 1, 1)).forward == "col2im_nhwc"  # many channels, short rows
    assert engine.choose_routes(dense, (8, 64, 16, 16)).forward == "col2im_nhwc"  # 16 taps, 16 columns
    # benchmarks/jax_routes.py's shapes where the convolution is the fastest route
    five_by_five = spec_from_weight((16, 16, 5, 5), stride=3)
    assert engine.choose_routes(five_by_five, (2, 16, 13, 11)).forward == "col2im_nhwc"
    assert engine.choose_routes(spec_from_weight((32, 32, 7, 7), stride=2), (2, 32, 16, 16)).forward == "conv"
    assert engine.choose_routes(spec_from_weight((16, 8, 2, 2), stride=4), (2, 16, 11, 9)).forward == "conv"
    assert engine.choose_routes(spec_from_weight((16, 8, 2, 2), stride=4), (2, 16, 110, 90)).forward == "col2im"
    grouped = spec_from_weight((16, 4, 2, 2), stride=4, group=2)  # XLA's grouped convolutions are slow
    assert engine.choose_routes(grouped, (2, 16, 11, 9)).forward == "col2im"
    assert engine.choose_routes(spec_from_weight((8, 8, 3, 3), dilation=2), (1, 8, 9, 9)).forward == "col2im"
    assert engine.choose_routes(spec_from_weight((8, 8, 5, 5), dilation=2), (1, 8, 9, 9)).forward == "conv"
    assert (
        engine.choose_routes(spec_from_weight((8, 4, 2, 2), stride=2, pad_mode="valid"), (1, 8, 9, 9)).dweight
        == "im2col"
    )  # taps never overlap
    assert engine.choose_routes(spec_from_weight((8, 1, 3, 3), stride=2, group=8), (1, 8, 9, 9)) == ("taps",) * 3
    with pytest.raises(ValueError, match="unknown forward route 'fast'"):
        engine.forward(jnp.ones((1, 64, 2, 2)), jnp.ones((64, 32, 4, 4)), None, dense, ("fast", "conv", "conv"))


def test_float16_matches_mindspore_and_its_rounding(fp16_golden):
    configs, data = fp16_golden
    same = total = 0
    for index in range(0, len(configs), 8):
        _check_golden(fp16_golden, index, FP16_TOL, label="fp16")
        # fp16(fp16(conv_f32) + bias) is MindSpore's float16 model, bit for bit (NumPy engine)
        cfg = configs[index]
        b = data[f"{index}_b"] if cfg["has_bias"] else None
        y = np.asarray(ct_jax.conv2d_transpose(data[f"{index}_x"], data[f"{index}_w"], b, **geometry(cfg)))
        ref = data[f"{index}_y"]
        same += int(np.sum(y.view(np.uint16) == ref.view(np.uint16)))
        total += y.size
    # float32 sums in another order may round a value that sits on a float16 tie the other way
    assert same >= total - max(5, total // 2000), f"{total - same} of {total} float16 outputs differ in their bits"


@pytest.mark.slow
def test_float16_every_golden_case(fp16_golden):
    for index in range(len(fp16_golden[0])):
        _check_golden(fp16_golden, index, FP16_TOL, label="fp16")


# ---------------------------------------------------------------------------- against the float64 oracle

ORACLE_CASES = [
    # (x shape, weight shape, geometry): edge geometry the goldens sample rarely
    (
        (2, 6, 5, 4),
        (6, 2, 3, 2),
        dict(stride=(3, 2), pad_mode="pad", padding=(2, 0, 1, 3), output_padding=(2, 1), group=3),
    ),
    ((1, 4, 3, 5), (4, 3, 2, 3), dict(stride=4, pad_mode="same", dilation=(1, 2), group=2)),  # k_eff < s
    ((2, 3, 4, 4), (3, 5, 1, 1), dict(stride=3, pad_mode="valid")),  # 1x1 kernel
    ((2, 4, 4, 3), (4, 3, 3, 3), dict(stride=2, pad_mode="pad", padding=(4, 1, 0, 5), group=4)),  # multiplier 3
    (
        (3, 4, 3, 3),
        (4, 2, 3, 3),
        dict(stride=1, pad_mode="pad", padding=(1, 2, 2, 1), dilation=3, output_padding=(2, 1)),
    ),
]


@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_routes_match_the_float64_oracle(case):
    x_shape, w_shape, geo = ORACLE_CASES[case]
    rng = np.random.default_rng(case)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * geo.get("group", 1))
    y_ref = reference.forward(x, w, b, **geo)
    g = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = reference.backward(x, w, g, **geo)
    spec = spec_from_weight(w_shape, has_bias=True, **geo)
    cig = w_shape[0] // geo.get("group", 1)
    names = [name for name, routes in ROUTE_SETS.items() if cig == 1 or not name.startswith("taps")]
    names.append(None)
    f32 = [a.astype(np.float32) for a in (x, w, b, g)]
    for name in names:
        got = _forward_backward(spec, *f32, None if name is None else ROUTE_SETS[name])
        for key, ref in zip(("y", "dx", "dw", "db"), (y_ref, dx_ref, dw_ref, db_ref)):
            bound = 1e-4 * (1 + np.abs(ref).max())  # long float32 sums: scale by the largest value
            err = np.abs(got[key] - ref).max(initial=0)
            assert err <= bound, f"route {name} case {case} {key}: max error {err:.2e} > {bound:.2e}"


@pytest.mark.parametrize("x_shape", [(0, 4, 3, 3), (2, 4, 0, 3)], ids=["empty batch", "zero rows"])
def test_empty_inputs(x_shape):
    w = np.ones((4, 6, 3, 3), np.float32)
    b = np.arange(6, dtype=np.float32)
    geo = dict(stride=2, pad_mode="valid")
    y_ref = ct.conv2d_transpose(np.zeros(x_shape, np.float32), w, b, **geo)
    y, vjp = jax.vjp(
        lambda x, w, b: ct_jax.conv2d_transpose(x, w, b, **geo), jnp.zeros(x_shape), jnp.asarray(w), jnp.asarray(b)
    )
    assert y.shape == y_ref.shape
    np.testing.assert_array_equal(np.asarray(y), y_ref)  # only the bias reaches these rows
    dx, dw, db = vjp(jnp.ones(y.shape))
    assert dx.shape == x_shape and not np.any(np.asarray(dw))
    np.testing.assert_array_equal(np.asarray(db), np.full(6, y.size // 6, np.float32))


def test_output_padding_rows_get_no_bias_and_no_gradient():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 4)), jnp.float32)
    w = jnp.ones((3, 2, 3, 3))
    b = jnp.ones(2)
    geo = dict(stride=2, pad_mode="pad", padding=1, output_padding=1)
    y, vjp = jax.vjp(lambda x, w, b: ct_jax.conv2d_transpose(x, w, b, **geo), x, w, b)
    assert y.shape == (2, 2, 8, 8)
    assert not np.any(np.asarray(y)[:, :, 7, :]) and not np.any(np.asarray(y)[:, :, :, 7])
    g = np.zeros(y.shape, np.float32)
    g[:, :, 7, :] = g[:, :, :, 7] = 1  # upstream gradient on those rows only
    dx, dw, db = vjp(jnp.asarray(g))
    assert not np.any(np.asarray(dx)) and not np.any(np.asarray(dw)) and not np.any(np.asarray(db))


# ---------------------------------------------------------------------------- transformations

SHAPE = (2, 4, 5, 5)
GEO = dict(stride=2, pad_mode="pad", padding=(1, 0, 2, 1), output_padding=1, group=2)


def _arrays(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal(SHAPE).astype(dtype),
        rng.uniform(-0.5, 0.5, (4, 3, 3, 3)).astype(dtype),
        rng.uniform(-0.5, 0.5, 6).astype(dtype),
    )


def test_jit_with_static_geometry_matches_numpy():
    x, w, b = _arrays()
    f = jax.jit(ct_jax.conv2d_transpose, static_argnames=STATIC)
    y = f(x, w, b, **GEO)
    assert_close(np.asarray(y), ct.conv2d_transpose(x, w, b, **GEO), FP32_TOL, "jit")
    assert_close(np.asarray(ct_jax.conv2d_transpose(x, w, b, **GEO)), np.asarray(y), 1e-6, "eager vs jit")
    with pytest.raises(TypeError, match=r"stride must be a Python value.*static_argnames"):
        jax.jit(lambda x, s: ct_jax.conv2d_transpose(x, w, b, stride=s))(x, 2)


def test_vmap_over_a_leading_axis():
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((3,) + SHAPE).astype(np.float32)
    _, w, b = _arrays()
    ys = jax.vmap(lambda x: ct_jax.conv2d_transpose(x, w, b, **GEO))(xs)
    for x, y in zip(xs, ys):
        assert_close(np.asarray(y), ct.conv2d_transpose(x, w, b, **GEO), FP32_TOL, "vmap")
    # per-example weight gradients: vmap of grad
    grads = jax.vmap(
        jax.grad(lambda x, w: ct_jax.conv2d_transpose(x, w, b, **GEO).sum(), argnums=1), in_axes=(0, None)
    )(xs, w)
    for x, dw in zip(xs, grads):
        g = np.ones(ct.conv2d_transpose(x, w, b, **GEO).shape, np.float32)
        assert_close(np.asarray(dw), ct.conv2d_transpose_backward(x, w, g, **GEO)[1], FP32_TOL, "vmap grad")


def lax_reference(x, w, b, stride, pad_mode, padding, output_padding, group):
    """The obvious formulation, differentiated by plain autodiff: a convolution of the
    stride-dilated input with the flipped kernel, then the window, bias and output_padding."""
    cin, cog, kh, kw = w.shape
    rhs = w.reshape(group, cin // group, cog, kh, kw).transpose(0, 2, 1, 3, 4)
    rhs = rhs.reshape(group * cog, cin // group, kh, kw)
    full = lax.conv_general_dilated(
        x,
        rhs[:, :, ::-1, ::-1],
        (1, 1),
        ((kh - 1, kh - 1), (kw - 1, kw - 1)),
        lhs_dilation=(stride, stride),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=group,
        precision=lax.Precision.HIGHEST,
    )
    (top, h_len), (left, w_len) = (
        reference.axis_window(n, k, stride, 1, pad_mode, *pads)
        for n, k, pads in ((x.shape[2], kh, padding[:2]), (x.shape[3], kw, padding[2:]))
    )
    full = jnp.pad(
        full, ((0, 0), (0, 0), (0, max(0, top + h_len - full.shape[2])), (0, max(0, left + w_len - full.shape[3])))
    )
    y = full[:, :, top : top + h_len, left : left + w_len] + b[:, None, None]
    return jnp.pad(y, ((0, 0), (0, 0), (0, output_padding[0]), (0, output_padding[1])))


def test_grad_of_grad_matches_plain_autodiff():
    x, w, b = (jnp.asarray(a) for a in _arrays())
    ref_geo = dict(stride=2, pad_mode="pad", padding=(1, 0, 2, 1), output_padding=(1, 1), group=2)

    def second_order(conv):
        # d/dw of |d loss/dx|^2 differentiates the backward rule itself; reverse over reverse,
        # as a custom_vjp function has no forward mode
        def loss(x, w):
            return jnp.sum(jnp.sin(conv(x, w, b)))

        def inner(w):
            return jnp.sum(jax.grad(loss)(x, w) ** 2)

        return jax.grad(inner)(w), jax.jacrev(jax.jacrev(lambda b_: jnp.sum(conv(x, w, b_) ** 3)))(b)

    ours = second_order(lambda x, w, b: ct_jax.conv2d_transpose(x, w, b, **GEO))
    theirs = second_order(lambda x, w, b: lax_reference(x, w, b, **ref_geo))
    for name, got, ref in zip(("d2/dw", "hessian b"), ours, theirs):
        scale = 1 + float(jnp.abs(ref).max())
        assert float(jnp.abs(got - ref).max()) <= 1e-4 * scale, name


def test_float64_check_grads_second_order():
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        x, w, b = (jnp.asarray(a) for a in _arrays(np.float64, seed=2))
        for geo, weight in (
            (GEO, w),
            (dict(stride=(1, 2), pad_mode="same", dilation=(2, 1)), w),
            (dict(stride=2, pad_mode="pad", padding=1, group=4), w[:, :1]),
        ):
            bias = b[: weight.shape[1] * geo.get("group", 1)]
            y = ct_jax.conv2d_transpose(x, weight, bias, **geo)
            assert y.dtype == jnp.float64
            check_grads(
                lambda x, w, b, geo=geo: ct_jax.conv2d_transpose(x, w, b, **geo),
                (x, weight, bias),
                order=2,
                modes=("rev",),
                atol=1e-6,
                rtol=1e-6,
            )


def test_float16_gradients_are_float32_results_rounded_once():
    x, w, b = _arrays(np.float16)
    y, vjp = jax.vjp(lambda x, w, b: ct_jax.conv2d_transpose(x, w, b, **GEO), *(jnp.asarray(a) for a in (x, w, b)))
    assert y.dtype == jnp.float16
    g = np.random.default_rng(3).standard_normal(y.shape).astype(np.float16)
    got = vjp(jnp.asarray(g))
    y_np = ct.conv2d_transpose(x, w, b, **GEO)
    ref = ct.conv2d_transpose_backward(x, w, g, **GEO)
    assert_close(np.asarray(y), y_np, FP16_TOL, "fp16 y")
    for name, a, r in zip(("dx", "dw", "db"), got, ref):
        assert a.dtype == jnp.float16
        assert_close(np.asarray(a), r, FP16_TOL, f"fp16 {name}")


def test_bfloat16_runs_in_float32_and_rounds():
    x, w, b = _arrays()
    as_bf16 = [jnp.asarray(a, jnp.bfloat16) for a in (x, w, b)]
    y, vjp = jax.vjp(lambda x, w, b: ct_jax.conv2d_transpose(x, w, b, **GEO), *as_bf16)
    assert y.dtype == jnp.bfloat16 and all(a.dtype == jnp.bfloat16 for a in vjp(jnp.ones(y.shape, jnp.bfloat16)))
    x32, w32, b32 = (np.asarray(a, np.float32) for a in as_bf16)
    conv = ct.conv2d_transpose(x32, w32, None, **GEO)
    exact = ct.conv2d_transpose(x32, w32, b32, **GEO)
    # round(round(conv) + bias): one rounding (unit 2**-8) of the convolution, one of the sum
    err = np.abs(np.asarray(y, np.float32) - exact)
    assert np.all(err <= 2**-8 * (np.abs(conv) + np.abs(exact)) * 1.01 + 1e-6)


# ---------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    x, w, b = _arrays()
    with pytest.raises(TypeError, match=r"x must be a JAX or NumPy array, got x of type list"):
        ct_jax.conv2d_transpose(x.tolist(), w, b, **GEO)
    with pytest.raises(TypeError, match=r"x must have the weight's dtype float32, got x of dtype float16"):
        ct_jax.conv2d_transpose(x.astype(np.float16), w, b, **GEO)
    with pytest.raises(TypeError, match=r"bias must have the weight's dtype float32"):
        ct_jax.conv2d_transpose(x, w, b.astype(np.float16), **GEO)
    with pytest.raises(
        TypeError,
        match=r"weight must have dtype float16, bfloat16, float32 or float64, got "
        r"weight of dtype int32",
    ):
        ct_jax.conv2d_transpose(x.astype(np.int32), w.astype(np.int32), None, **GEO)
    with pytest.raises(ValueError, match=r"x must have in_channels=4 channels"):
        ct_jax.conv2d_transpose(x[:, :3], w, b, **GEO)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        ct_jax.conv2d_transpose(x, w, b[:5], **GEO)
    with pytest.raises(TypeError, match=r"stride"):
        ct_jax.conv2d_transpose(x, w, b, stride=True)
    with pytest.raises(ValueError, match=r"pad_mode"):
        ct_jax.conv2d_transpose(x, w, b, pad_mode="SAME")
    with pytest.raises(ValueError, match=r"output_padding"):
        ct_jax.conv2d_transpose(x, w, b, output_padding=1, group=2)
    if not jax.config.read("jax_enable_x64"):
        with pytest.raises(TypeError, match=r"x has dtype float64.*jax_enable_x64"):
            ct_jax.conv2d_transpose(x.astype(np.float64), w.astype(np.float64))


# ---------------------------------------------------------------------------- sharding

SHARDING_SCRIPT = textwrap.dedent("""
    import contextlib, json, os
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from convtranspose.jax import conv2d_transpose

    report = {"devices": jax.device_count()}
    cases = {"dense": ((6, 4, 4, 4), dict(stride=2, pad_mode="pad", padding=1, output_padding=1)),
             "depthwise": ((6, 1, 3, 3), dict(stride=2, pad_mode="same", group=6)),
             "dilated": ((6, 4, 3, 3), dict(stride=1, pad_mode="same", dilation=2))}
    for mode in ("Auto", "Explicit"):
        mesh = jax.make_mesh((4,), ("batch",), axis_types=(getattr(AxisType, mode),))
        batch, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
        for name, (w_shape, geo) in cases.items():
            rng = np.random.default_rng(0)
            x = rng.standard_normal((8, 6, 7, 5)).astype(np.float32)
            w = rng.standard_normal(w_shape).astype(np.float32)
            b = rng.standard_normal(w_shape[1] * geo.get("group", 1)).astype(np.float32)

            def run(x, w, b, g):
                y, vjp = jax.vjp(lambda x, w, b: conv2d_transpose(x, w, b, **geo), x, w, b)
                return (y,) + vjp(g)

            shape = jax.eval_shape(lambda: conv2d_transpose(x, w, b, **geo)).shape
            g = rng.standard_normal(shape).astype(np.float32)
            single = jax.jit(run)(x, w, b, g)
            with jax.sharding.set_mesh(mesh) if mode == "Explicit" else contextlib.nullcontext():
                args = (jax.device_put(x, batch), jax.device_put(w, replicated), jax.device_put(b, replicated),
                        jax.device_put(g, batch))
                sharded = jax.jit(run)(*args)
            report[f"{mode} {name}"] = {
                "y_devices": len(sharded[0].sharding.device_set),
                "y_batch_sharded": tuple(sharded[0].sharding.spec)[:1] == ("batch",),
                "dx_batch_sharded": tuple(sharded[1].sharding.spec)[:1] == ("batch",),
                "max_errors": [float(np.abs(np.asarray(a) - np.asarray(r)).max() / (1 + np.abs(np.asarray(r)).max()))
                               for a, r in zip(sharded, single)]}
    print(json.dumps(report))
""")


def test_batch_sharded_over_four_host_devices_gives_the_unsharded_result():
    env = host_devices_env(4)
    out = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    for mode in ("Auto", "Explicit"):  # GSPMD's automatic axes, and jax.make_mesh's default
        for name in ("dense", "depthwise", "dilated"):
            case = report[f"{mode} {name}"]
            assert case["y_devices"] == 4 and case["y_batch_sharded"] and case["dx_batch_sharded"], (mode, name, case)
            # y and dx are computed per shard; dweight and dbias are summed across shards
            assert max(case["max_errors"]) <= 1e-6, (mode, name, case)


# ---------------------------------------------------------------------------- GPU


def _gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("no GPU visible to JAX")


@pytest.mark.gpu
@pytest.mark.parametrize("routes", list(ROUTE_SETS), ids=list(ROUTE_SETS))
def test_gpu_matches_mindspore(fp32_golden, routes):
    device = _gpu()
    configs, data = fp32_golden
    depthwise = routes.startswith("taps")
    for index in _covering_cases(configs, depthwise):
        cfg = configs[index]
        spec = _spec(cfg, cfg["has_bias"])
        arrays = (
            [data[f"{index}_{k}"] for k in "xwbg"]
            if cfg["has_bias"]
            else [data[f"{index}_x"], data[f"{index}_w"], None, data[f"{index}_g"]]
        )
        on_gpu = [None if a is None else jax.device_put(a, device) for a in arrays]
        got = _forward_backward(spec, *on_gpu, ROUTE_SETS[routes])
        for name, value in got.items():
            assert_close(value, data[f"{index}_{name}"], FP32_TOL, f"gpu {routes} case {index} {name}")


@pytest.mark.gpu
def test_gpu_float16_matches_mindspore(fp16_golden):
    device = _gpu()
    configs, data = fp16_golden
    for index in range(0, len(configs), 4):
        cfg = configs[index]
        b = data[f"{index}_b"] if cfg["has_bias"] else None
        on_gpu = [
            None if a is None else jax.device_put(a, device)
            for a in (data[f"{index}_x"], data[f"{index}_w"], b, data[f"{index}_g"])
        ]
        got = _forward_backward(_spec(cfg, cfg["has_bias"]), *on_gpu)
        for name, value in got.items():
            assert_close(value, data[f"{index}_{name}"], FP16_TOL, f"gpu fp16 case {index} {name}")


def test_the_first_float16_rounding_is_exact_including_subnormals_and_overflow():
    """y = fp16(fp16(conv) + b) needs fp16(conv) kept: XLA folds a convert pair, so it is computed in float32."""
    from convtranspose._engines.jax import _rounded_in_work_dtype

    rng = np.random.default_rng(0)
    scales = (1e-8, 1e-6, 1e-5, 1e-4, 1.0, 3e4, 7e4)
    values = np.concatenate([rng.standard_normal(2000).astype(np.float32) * s for s in scales])
    edges = np.array(
        [6.1035156e-05, 6.1035156e-05 * (1 - 2**-12), 2**-25, -(2**-25), 65519.99, 65520, np.inf], np.float32
    )
    values = np.concatenate([values, edges])
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    got = np.asarray(jax.jit(lambda v: _rounded_in_work_dtype(v, jnp.float16))(values))
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))
