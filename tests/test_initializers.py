"""MindSpore's initializers: names, aliases, objects, numbers, arrays; laws checked statistically."""

import math

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import initializer as init

SHAPE = (16, 64, 3, 3)          # fan_in = 64*9 = 576, fan_out = 16*9 = 144
FAN_IN, FAN_OUT = 576, 144


def draw(spec, shape=SHAPE, seed=0):
    return init.initializer(spec, shape, np.float64, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("name", ["HeUniform", "HEUNIFORM", "he_uniform", "heuniform", "xavierUniform",
                                  "XAVIER_UNIFORM", "Normal", "TruncatedNormal", "Uniform", "One", "ONES",
                                  "Zero", "zeros", "HeNormal", "xavier_normal", "Orthogonal", "Dirac",
                                  "VarianceScaling"])
def test_registered_names_in_any_case(name):
    assert draw(name).shape == SHAPE


@pytest.mark.parametrize("name", ["constant", "truncated_normal", "he-uniform", "kaiming_uniform", ""])
def test_unknown_names(name):
    with pytest.raises(ValueError, match="weight_init"):
        init.initializer(name, SHAPE, name="weight_init")


def test_uniform_laws_reach_their_bounds():
    cases = [("heuniform", math.sqrt(6 / FAN_IN)), ("xavieruniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
             ("uniform", 0.07), ("variancescaling", math.sqrt(3 / FAN_IN)),
             (init.HeUniform(1, "fan_out", "leaky_relu"), math.sqrt(3) / math.sqrt(FAN_OUT)),
             (init.XavierUniform(gain=2), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
             (init.VarianceScaling(1, "fan_avg", "uniform"), math.sqrt(3 / ((FAN_IN + FAN_OUT) / 2)))]
    for spec, bound in cases:
        values = draw(spec)
        assert np.abs(values).max() <= bound, spec
        assert np.abs(values).max() > 0.99 * bound, spec
        assert abs(values.std() - bound / math.sqrt(3)) < 0.03 * bound, spec
        assert abs(values.mean()) < 0.02 * bound, spec


def test_normal_laws_have_their_std():
    cases = [("normal", 0.01), ("henormal", math.sqrt(2 / FAN_IN)),
             ("xaviernormal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
             (init.HeNormal(0, "fan_out", "tanh"), (5 / 3) / math.sqrt(FAN_OUT)),
             (init.Normal(2.0, 5.0), 2.0),
             (init.VarianceScaling(2, "fan_out", "untruncated_normal"), math.sqrt(2 / FAN_OUT))]
    for spec, std in cases:
        values = draw(spec)
        assert abs(values.std() - std) < 0.03 * std, spec
    assert abs(draw(init.Normal(2.0, 5.0)).mean() - 5.0) < 0.05


def test_truncated_normal_bounds_are_absolute():
    values = draw(init.TruncatedNormal(1, 0, -0.5, 0.5))
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.max() > 0.49
    tail = draw(init.TruncatedNormal(1, 3, -0.5, 0.5))  # far from the mean: mass piles at 0.5
    assert tail.min() >= -0.5 and tail.max() <= 0.5 and tail.mean() > 0.15
    one_sided = draw(init.TruncatedNormal(2, 1, 0, 1.5))
    assert one_sided.min() >= 0 and one_sided.max() <= 1.5
    default = draw("truncatednormal")
    assert abs(default.std() - 0.01) < 0.0005


def test_constants_numbers_and_arrays():
    assert np.all(draw(init.Constant(0.5)) == 0.5)
    for number, value in ((2, 2.0), (2.5, 2.5), (True, 1.0), (False, 0.0), (np.float32(1.5), 1.5), (np.int64(3), 3.0)):
        assert np.all(draw(number) == value)
    array = np.arange(np.prod(SHAPE), dtype=np.float16).reshape(SHAPE)
    out = init.initializer(array, SHAPE, np.float32)
    assert out.dtype == np.float16 and np.array_equal(out, array) and out is not array
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        init.initializer(np.ones(3), (2,), name="bias_init")
    with pytest.raises(TypeError, match="list"):
        init.initializer([1.0, 2.0], (2,))
    with pytest.raises(ValueError):
        draw(init.Constant(np.ones(2)))


def test_orthogonal_and_dirac():
    w = draw("orthogonal", (4, 3, 3, 2)).reshape(4, -1)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    d = draw("dirac", (4, 3, 3, 3))
    assert sorted(zip(*np.nonzero(d))) == [(0, 0, 1, 1), (1, 1, 1, 1), (2, 2, 1, 1)]
    with pytest.raises(ValueError, match="groups"):
        draw(init.Dirac(groups=3), (4, 4, 3, 3))


@pytest.mark.parametrize("spec", ["he_uniform", "xavier_normal", "orthogonal", "dirac", "identity",
                                  init.Identity(), init.Sparse(0.1)])
def test_shape_limited_initializers_refuse_a_bias(spec):
    with pytest.raises(ValueError):
        init.initializer(spec, (4,), name="bias_init")


def test_bad_arguments_surface_when_applied():
    bad = [init.Normal(sigma=-1.0), init.HeUniform(mode="fan_avg"), init.HeUniform(nonlinearity="gelu"),
           init.HeUniform(negative_slope=True), init.VarianceScaling(distribution="cauchy")]
    for spec in bad:
        with pytest.raises(ValueError):
            ct.Conv2dTranspose(2, 2, 3, weight_init=spec)
    with pytest.raises(TypeError, match="Sparse"):
        ct.Conv2dTranspose(2, 2, 3, weight_init="sparse")


def test_float16_parameters_are_sampled_then_cast():
    values = init.initializer("uniform", (1000,), "float16", rng=np.random.default_rng(0))
    assert values.dtype == np.float16 and np.abs(values).max() <= 0.07


def test_repr_shows_arguments():
    assert repr(init.Normal(sigma=0.02)) == "Normal(sigma=0.02, mean=0.0)"
