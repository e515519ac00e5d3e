"""MindSpore's nn.Conv2d on every engine against the float64 oracle of tests/reference.py, and finite differences.

Seeded configurations from tests/configs.py (the generator the property tests draw from) over
every pad mode, int and tuple forms, asymmetric padding wider than the kernel, stride above the
kernel, dilation, groups and depthwise, and bias, through the ``conv2d_engine`` fixture. The
finite differences check each engine's gradients against its own forward in float64, with no
oracle: y is bilinear in (x, weight) and affine in the bias, so a central difference of
``sum(y * g)`` along a random direction is exact but for rounding.
"""

import numpy as np
import pytest

import reference
from configs import MODES, conv2d_output_shape, random_conv2d_case
from conftest import assert_close, geometry

# jax and Flax compile every configuration (and the Flax module computes with the jax function):
# they run one seed in SAMPLE[name].
SAMPLE = {"jax": 4, "flax": 12}  # jax: seeds 0, 4, 8 (one per pad mode)


def skip_compiling_engines(engine, seed, every=None):
    step = dict(zip(("jax", "flax"), every)) if every else SAMPLE
    if seed % step.get(engine.name, 1):
        pytest.skip(f"{engine.name} runs one seed in {step[engine.name]} (it compiles each configuration)")


@pytest.mark.parametrize("seed", range(12))
def test_conv2d_engine_matches_the_float64_oracle(conv2d_engine, seed):
    skip_compiling_engines(conv2d_engine, seed)
    cfg, x, w, b = random_conv2d_case(2000 + seed, max_size=7, max_batch=2, pad_mode=MODES[seed % 3])
    kwargs = geometry(cfg)
    ref_y = reference.conv2d_forward(x, w, b, **kwargs)
    g = np.random.default_rng(seed).standard_normal(ref_y.shape).astype(np.float32)
    ref_dx, ref_dw, ref_db = reference.conv2d_backward(x, w, g, **kwargs)
    got = conv2d_engine.forward_backward(cfg, x, w, b, g)
    refs = {"y": ref_y, "dx": ref_dx, "dw": ref_dw, "db": ref_db}
    assert set(got) == {"y", "dx", "dw"} | ({"db"} if b is not None else set())
    for name, value in got.items():
        ref = refs[name]
        assert value.shape == ref.shape and value.dtype == np.float32, f"{conv2d_engine.name} {name} {cfg}"
        tol = 1e-4 * (1 + np.abs(ref).max(initial=0))
        np.testing.assert_allclose(value, ref, rtol=0, atol=tol, err_msg=f"{conv2d_engine.name} {name} {cfg}")


@pytest.mark.parametrize("seed", range(3))
def test_conv2d_gradients_are_central_differences_of_the_forward(conv2d_engine, seed):
    """<dx, u> + <dw, v> + <db, c> equals the central difference of sum(y * g) along (u, v, c), float64."""
    skip_compiling_engines(conv2d_engine, seed, every=(3, 3))
    cfg, x, w, b = random_conv2d_case(3000 + seed, dtype=np.float64, max_size=7, pad_mode=MODES[seed % 3])
    cfg = dict(cfg, has_bias=True)
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(cfg["out_channels"])
    u, v, c = rng.standard_normal(x.shape), rng.standard_normal(w.shape), rng.standard_normal(b.shape)
    with conv2d_engine.float64():
        g = rng.standard_normal(conv2d_output_shape(cfg, x.shape))
        got = conv2d_engine.forward_backward(cfg, x, w, b, g)
        eps = 1e-3

        def loss(sign):
            shifted = conv2d_engine.forward_backward(cfg, x + sign * eps * u, w + sign * eps * v, b + sign * eps * c, g)
            return float(np.sum(shifted["y"] * g))

        difference = (loss(1) - loss(-1)) / (2 * eps)
    directional = float(np.sum(got["dx"] * u) + np.sum(got["dw"] * v) + np.sum(got["db"] * c))
    # the quadratic term eps**2 * <A(u, v), g> cancels in a central difference; what remains is rounding
    scale = 1e-9 * (1 + float(np.sum(np.abs(got["y"] * g))) / eps)
    assert abs(difference - directional) <= scale, f"{conv2d_engine.name} {cfg}: {difference} != {directional}"
    assert_close(got["y"], reference.conv2d_forward(x, w, b, **geometry(cfg)), 1e-10, f"{conv2d_engine.name} y")
