"""MindSpore's initializers: names, aliases, objects, numbers, arrays; laws checked statistically."""

import math

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import initializer as init

SHAPE = (16, 64, 3, 3)  # fan_in = 64*9 = 576, fan_out = 16*9 = 144
FAN_IN, FAN_OUT = 576, 144


def draw(spec, shape=SHAPE, seed=0):
    return init.initializer(spec, shape, np.float64, rng=np.random.default_rng(seed))


@pytest.mark.parametrize(
    "name",
    [
        "HeUniform",
        "HEUNIFORM",
        "he_uniform",
        "heuniform",
        "xavierUniform",
        "XAVIER_UNIFORM",
        "Normal",
        "TruncatedNormal",
        "Uniform",
        "One",
        "ONES",
        "Zero",
        "zeros",
        "HeNormal",
        "xavier_normal",
        "Orthogonal",
        "Dirac",
        "VarianceScaling",
    ],
)
def test_registered_names_in_any_case(name):
    assert draw(name).shape == SHAPE


@pytest.mark.parametrize("name", ["constant", "truncated_normal", "he-uniform", "kaiming_uniform", ""])
def test_unknown_names(name):
    with pytest.raises(ValueError, match="weight_init"):
        init.initializer(name, SHAPE, name="weight_init")


def test_uniform_laws_reach_their_bounds():
    cases = [
        ("heuniform", math.sqrt(6 / FAN_IN)),
        ("xavieruniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("uniform", 0.07),
        ("variancescaling", math.sqrt(3 / FAN_IN)),
        (init.HeUniform(1, "fan_out", "leaky_relu"), math.sqrt(3) / math.sqrt(FAN_OUT)),
        (init.XavierUniform(gain=2), 2 * math.sqrt(6 / (FAN_IN + FAN_OUT))),
        (init.VarianceScaling(1, "fan_avg", "uniform"), math.sqrt(3 / ((FAN_IN + FAN_OUT) / 2))),
    ]
    for spec, bound in cases:
        values = draw(spec)
        assert np.abs(values).max() <= bound, spec
        assert np.abs(values).max() > 0.99 * bound, spec
        assert abs(values.std() - bound / math.sqrt(3)) < 0.03 * bound, spec
        assert abs(values.mean()) < 0.02 * bound, spec


def test_normal_laws_have_their_std():
    cases = [
        ("normal", 0.01),
        ("henormal", math.sqrt(2 / FAN_IN)),
        ("xaviernormal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        (init.HeNormal(0, "fan_out", "tanh"), (5 / 3) / math.sqrt(FAN_OUT)),
        (init.Normal(2.0, 5.0), 2.0),
        (init.VarianceScaling(2, "fan_out", "untruncated_normal"), math.sqrt(2 / FAN_OUT)),
    ]
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


@pytest.mark.parametrize(
    "spec", ["he_uniform", "xavier_normal", "orthogonal", "dirac", "identity", init.Identity(), init.Sparse(0.1)]
)
def test_shape_limited_initializers_refuse_a_bias(spec):
    with pytest.raises(ValueError):
        init.initializer(spec, (4,), name="bias_init")


def test_bad_arguments_surface_when_applied():
    bad = [
        init.Normal(sigma=-1.0),
        init.HeUniform(mode="fan_avg"),
        init.HeUniform(nonlinearity="gelu"),
        init.HeUniform(negative_slope=True),
        init.VarianceScaling(distribution="cauchy"),
    ]
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


# ---------------------------------------------------------------- Dirac and Orthogonal values


def _dirac_ones(shape, groups):
    """Positions of the ones MindSpore's Dirac writes: ``[g*opg + i, i, k//2 ...]``, i < min(opg, shape[1])."""
    per_group = shape[0] // groups
    centre = tuple(size // 2 for size in shape[2:])
    return sorted((g * per_group + i, i) + centre for g in range(groups) for i in range(min(per_group, shape[1])))


@pytest.mark.parametrize(
    "shape,groups,expected",
    [
        ((4, 2, 4, 2), 1, [(0, 0, 2, 1), (1, 1, 2, 1)]),  # even kernels: centre k//2
        ((4, 4, 4, 4), 2, [(0, 0, 2, 2), (1, 1, 2, 2), (2, 0, 2, 2), (3, 1, 2, 2)]),
        ((2, 3, 6, 3), 1, [(0, 0, 3, 1), (1, 1, 3, 1)]),
        ((3, 2, 4), 1, [(0, 0, 2), (1, 1, 2)]),  # 3-D and 5-D weights
        ((2, 2, 2, 3, 4), 2, [(0, 0, 1, 1, 2), (1, 0, 1, 1, 2)]),
    ],
)
def test_dirac_puts_its_ones_at_mindspores_centre_on_even_kernels(shape, groups, expected):
    assert _dirac_ones(shape, groups) == expected  # the rule above, spelt out by hand for each shape
    values = init.initializer(init.Dirac(groups=groups), shape, np.float32, name="weight_init")
    assert values.dtype == np.float32 and values.shape == shape
    assert sorted(zip(*(axis.tolist() for axis in np.nonzero(values)))) == expected
    assert np.all(values[tuple(np.array(expected).T)] == 1) and values.sum() == len(expected)


def test_a_dirac_layer_with_an_even_kernel_shifts_by_mindspores_centre():
    """Dirac weights make each output channel a copy of its input channel, placed by the centre tap."""
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3)).astype(np.float32)
    net = ct.Conv2dTranspose(2, 2, 4, pad_mode="pad", weight_init="dirac")
    y = net(x)  # full result 6x6: input pixel (i, j) lands on (i + 2, j + 2) through the tap [2, 2]
    assert y.shape == (1, 2, 6, 6)
    np.testing.assert_array_equal(y[:, :, 2:5, 2:5], x)
    assert np.count_nonzero(y) == np.count_nonzero(x)


@pytest.mark.parametrize("shape,gain", [((4, 3, 3, 2), 1.0), ((18, 2, 1, 3), 2.5), ((5, 5, 1, 1), 1.0), ((3, 7), 0.5)])
def test_orthogonal_fixes_the_signs_of_the_qr_decomposition(shape, gain):
    """MindSpore's Orthogonal: Q of qr(A) times sign(diag(R)), A the first normal draw of shape
    (rows, cols) (transposed when rows < cols), so that Q^T A has a positive diagonal."""
    seed = 3
    values = init.initializer(init.Orthogonal(gain=gain), shape, np.float64, rng=np.random.default_rng(seed))
    rows = shape[0]
    cols = int(np.prod(shape[1:]))
    draw = np.random.default_rng(seed).normal(0.0, 1.0, (rows, cols))
    q = values.reshape(rows, cols) / gain
    if rows < cols:
        draw, q = draw.T, q.T
    r = q.T @ draw  # the R of the decomposition the initializer made
    np.testing.assert_allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-12)
    np.testing.assert_allclose(np.tril(r, -1), 0, atol=1e-12)
    assert np.all(np.diag(r) > 0), np.diag(r)
    # the fix matters here: NumPy's own QR gives negative diagonal entries for this draw
    assert np.any(np.diag(np.linalg.qr(draw)[1]) < 0)


# ---------------------------------------------------------------- overflow (issue 8, section 2.2)

OVERFLOWING = [
    ("weight_init", 10**400, "weight_init=<an int of 401 digits>"),
    ("weight_init", -(10**400), "weight_init=<a negative int of 401 digits>"),
    ("weight_init", init.Constant(10**400), "value=<an int of 401 digits>"),
    ("weight_init", init.Normal(sigma=10**400), "sigma=<an int of 401 digits>"),
    ("weight_init", init.HeUniform(negative_slope=10**400), "negative_slope=<an int of 401 digits>"),
    ("weight_init", init.Uniform(float("inf")), "scale=inf"),
    ("weight_init", init.TruncatedNormal(sigma=10**400), "sigma=<an int of 401 digits>"),
    ("weight_init", init.XavierNormal(gain=10**400), "gain=<an int of 401 digits>"),
    ("weight_init", 10**5000, "weight_init=<an int of 16610 bits>"),  # past Python's int printing
    ("bias_init", 10**400, "bias_init=<an int of 401 digits>"),
    ("bias_init", init.Normal(mean=10**400), "mean=<an int of 401 digits>"),
]


@pytest.mark.parametrize("argument,value,echo", OVERFLOWING, ids=[str(i) for i in range(len(OVERFLOWING))])
def test_initializer_overflow_is_a_value_error_naming_the_argument(layer_engine, argument, value, echo):
    """Not an OverflowError from deep inside NumPy, and not a 400-digit echo."""
    kwargs = {argument: value, "has_bias": argument == "bias_init"}
    with pytest.raises(ValueError) as info:
        layer_engine.construct(in_channels=2, out_channels=2, kernel_size=3, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{argument}="), message
    assert echo in message, message
    assert len(message) < 300, message


def test_huge_ints_are_echoed_by_their_length():
    assert repr(init.Constant(10**400)) == "Constant(value=<an int of 401 digits>)"
    assert repr(init.Normal(sigma=-(10**40), mean=10**29)) == (
        f"Normal(sigma=<a negative int of 41 digits>, mean={10**29})"
    )  # up to 30 digits: as written
    with pytest.raises(ValueError, match=r"sigma must be >= 0, got sigma=<a negative int of 41 digits>$"):
        init.initializer(init.Normal(sigma=-(10**40)), (2, 2), name="weight_init")


def test_values_past_the_dtype_name_the_argument():
    with pytest.raises(ValueError, match=r"weight_init=Constant\(value=1e\+300\).*not finite in float32"):
        ct.Conv2dTranspose(2, 2, 3, weight_init=init.Constant(1e300))
    with pytest.raises(ValueError, match=r"bias_init=70000.*not finite in float16"):
        ct.Conv2dTranspose(2, 2, 3, has_bias=True, bias_init=70000, dtype=np.float16)
    net = ct.Conv2dTranspose(2, 2, 3, weight_init=float("inf"))  # asked for on purpose: kept
    assert np.all(np.isinf(net.weight.data))
