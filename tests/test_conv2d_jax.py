"""MindSpore's nn.Conv2d as a JAX function: jit, vmap, second-order gradients, float64, float16 and
bfloat16 as MindSpore rounds them, and batch sharding over host devices.

Golden parity and the error cases run through the ``conv2d_engine`` fixture (test_conv2d_golden.py,
test_conv2d_errors.py). XLA compiles once per shape, so these tests reuse a few.
"""

import json
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ct_jax = pytest.importorskip("convtranspose.jax")

from jax import lax  # noqa: E402

import convtranspose as ct  # noqa: E402

import reference  # noqa: E402
from conftest import ROOT, assert_close, host_devices_env  # noqa: E402

FP32_TOL = 1e-4
STATIC = ("stride", "pad_mode", "padding", "dilation", "group")
SHAPE = (2, 4, 7, 6)
GEO = dict(stride=2, pad_mode="same", dilation=(1, 2), group=2)  # odd 'same' split on both axes
W_SHAPE = (6, 2, 3, 2)


def _arrays(dtype=np.float32, seed=0, w_shape=W_SHAPE):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal(SHAPE).astype(dtype),
        rng.uniform(-0.5, 0.5, w_shape).astype(dtype),
        rng.uniform(-0.5, 0.5, w_shape[0]).astype(dtype),
    )


def _output_shape(x_shape, w_shape, geo):
    return reference.conv2d_output_shape(x_shape, w_shape, **{k: v for k, v in geo.items() if k != "group"})


# ---------------------------------------------------------------------------- transformations


def test_jit_with_static_geometry_matches_numpy():
    x, w, b = _arrays()
    y = jax.jit(ct_jax.conv2d, static_argnames=STATIC)(x, w, b, **GEO)
    assert_close(np.asarray(y), ct.conv2d(x, w, b, **GEO), FP32_TOL, "jit")
    with pytest.raises(TypeError, match=r"stride must be a Python value.*static_argnames"):
        jax.jit(lambda x, s: ct_jax.conv2d(x, w, b, stride=s))(x, 2)


def test_vmap_over_a_leading_axis_and_per_example_gradients():
    xs = np.random.default_rng(1).standard_normal((3,) + SHAPE).astype(np.float32)
    _, w, b = _arrays()
    ys = jax.vmap(lambda x: ct_jax.conv2d(x, w, b, **GEO))(xs)
    grads = jax.vmap(jax.grad(lambda x, w: ct_jax.conv2d(x, w, b, **GEO).sum(), argnums=1), in_axes=(0, None))(xs, w)
    for x, y, dw in zip(xs, ys, grads):
        assert_close(np.asarray(y), ct.conv2d(x, w, b, **GEO), FP32_TOL, "vmap")
        g = np.ones(_output_shape(x.shape, w.shape, GEO), np.float32)
        assert_close(np.asarray(dw), ct.conv2d_backward(x, w, g, **GEO)[1], FP32_TOL, "vmap grad")


def _lax_conv2d(x, w, b):
    """GEO written by hand: TensorFlow's 'same' padding from the tests' reference, then lax's convolution."""
    pads = []
    for n, k, s, d in zip(x.shape[2:], w.shape[2:], (2, 2), (1, 2)):
        before, out = reference.conv2d_axis(n, k, s, d, "same", 0, 0)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pads.append((before, total - before))
    y = lax.conv_general_dilated(
        x,
        w,
        (2, 2),
        pads,
        rhs_dilation=(1, 2),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=2,
        precision=lax.Precision.HIGHEST,
    )
    return y + b[:, None, None]


def test_grad_of_grad_matches_plain_autodiff_of_lax():
    x, w, b = (jnp.asarray(a) for a in _arrays())

    def second_order(conv):
        def inner(w):  # d/dw of |d loss/dx|^2 differentiates the backward rule itself
            return jnp.sum(jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, b))))(x, w) ** 2)

        return jax.jit(jax.grad(inner))(w)  # one compiled program rather than an op-by-op trace

    ours = second_order(lambda x, w, b: ct_jax.conv2d(x, w, b, **GEO))
    theirs = second_order(_lax_conv2d)
    assert float(jnp.abs(ours - theirs).max()) <= 1e-4 * (1 + float(jnp.abs(theirs).max()))


def test_float64_matches_the_oracle():
    with jax.enable_x64(True):
        x, w, b = _arrays(np.float64, seed=2)
        for geo, weight in (
            (GEO, w),
            (dict(stride=(2, 1), pad_mode="pad", padding=(3, 0, 1, 2)), w[:, :, :, :1].repeat(2, axis=1)),
            (dict(pad_mode="valid", group=4), w[:4, :1]),
        ):
            bias = b[: weight.shape[0]]
            y_ref = reference.conv2d_forward(x, weight, bias, **geo)
            g = np.random.default_rng(3).standard_normal(y_ref.shape)
            y, vjp = jax.vjp(lambda x, w, b, geo=geo: ct_jax.conv2d(x, w, b, **geo), x, weight, bias)
            assert y.dtype == jnp.float64
            refs = (y_ref,) + reference.conv2d_backward(x, weight, g, **geo)
            for label, got, ref in zip(("y", "dx", "dw", "db"), (y,) + vjp(g), refs):
                assert_close(np.asarray(got), ref, 1e-12, f"float64 {geo} {label}")


# ---------------------------------------------------------------------------- float16, bfloat16


@pytest.mark.parametrize(
    "dtype,jax_dtype", [(np.float16, jnp.float16), (ml_dtypes.bfloat16, jnp.bfloat16)], ids=["fp16", "bf16"]
)
def test_reduced_precision_is_mindspores_model_bit_for_bit(dtype, jax_dtype):
    """y = round(round(conv in float32) + bias), each gradient the exact value rounded once.

    The model comes from the float64 oracle; a float32 sum could round to the other side of a
    midpoint where the exact value lies within float32 error of it, which none does here.
    """
    x, w, b = (a.astype(dtype) for a in _arrays())
    y, vjp = jax.vjp(lambda x, w, b: ct_jax.conv2d(x, w, b, **GEO), *(jnp.asarray(a, jax_dtype) for a in (x, w, b)))
    g = np.random.default_rng(3).standard_normal(y.shape).astype(dtype)
    grads = vjp(jnp.asarray(g, jax_dtype))
    exact = [a.astype(np.float64) for a in (x, w, b, g)]
    y64 = reference.conv2d_forward(*exact[:3], **GEO)
    conv = (y64 - exact[2][:, None, None]).astype(np.float32).astype(dtype)
    model_y = (conv.astype(np.float32) + b.astype(np.float32)[:, None, None]).astype(dtype)
    model = [model_y] + [
        a.astype(np.float32).astype(dtype) for a in reference.conv2d_backward(*exact[:2], exact[3], **GEO)
    ]
    for label, got, ref in zip(("y", "dx", "dw", "db"), (y,) + tuple(grads), model):
        assert got.dtype == jax_dtype, label
        np.testing.assert_array_equal(np.asarray(got, np.float32), ref.astype(np.float32), err_msg=label)


# ---------------------------------------------------------------------------- sharding

SHARDING_SCRIPT = textwrap.dedent("""
    import contextlib, json
    import jax, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from convtranspose.jax import conv2d

    report = {"devices": jax.device_count()}
    # one case per mesh kind: a grouped 'same' at stride 2, a depthwise dilated asymmetric 'pad'
    cases = {"Auto": ((6, 3, 3, 3), dict(stride=2, group=2)),
             "Explicit": ((6, 1, 3, 3), dict(pad_mode="pad", padding=(2, 0, 1, 3), dilation=2, group=6))}
    for mode, (w_shape, geo) in cases.items():
        mesh = jax.make_mesh((4,), ("batch",), axis_types=(getattr(AxisType, mode),))
        batch, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 6, 7, 5)).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        b = rng.standard_normal(w_shape[0]).astype(np.float32)

        def run(x, w, b, g):
            y, vjp = jax.vjp(lambda x, w, b: conv2d(x, w, b, **geo), x, w, b)
            return (y,) + vjp(g)

        g = rng.standard_normal(jax.eval_shape(lambda: conv2d(x, w, b, **geo)).shape).astype(np.float32)
        single = jax.jit(run)(x, w, b, g)
        with jax.sharding.set_mesh(mesh) if mode == "Explicit" else contextlib.nullcontext():
            args = (jax.device_put(x, batch), jax.device_put(w, replicated), jax.device_put(b, replicated),
                    jax.device_put(g, batch))
            sharded = jax.jit(run)(*args)
        report[mode] = {
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
        case = report[mode]
        assert case["y_devices"] == 4 and case["y_batch_sharded"] and case["dx_batch_sharded"], (mode, case)
        assert max(case["max_errors"]) <= 1e-6, (mode, case)  # dweight, dbias: summed across shards
