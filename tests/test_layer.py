"""The NumPy layer's public API: parameters, forward/backward, dtypes, repr, pickling."""

import math
import pickle

import numpy as np
import pytest

import convtranspose as ct

import reference


def test_the_pages_example():
    net = ct.Conv2dTranspose(3, 64, 4, has_bias=False, weight_init="normal", pad_mode="pad")
    assert net(np.ones((1, 3, 16, 50), np.float32)).shape == (1, 64, 19, 53)


def test_all_thirteen_arguments_positionally():
    net = ct.Conv2dTranspose(4, 6, (3, 2), (2, 1), "pad", (1, 0, 2, 1), 1, (1, 2), 2, True, "ones", "zeros", np.float64)
    assert net.weight.shape == (4, 3, 3, 2) and net.bias.shape == (6,)
    assert net.weight.dtype == np.float64 and np.all(net.weight.data == 1)


def test_parameters_follow_mindspore():
    net = ct.Conv2dTranspose(4, 6, 3, group=2, has_bias=True)
    assert net.weight.name == "weight" and net.bias.name == "bias"
    assert net.weight.shape == (4, 3, 3, 3) and net.weight.dtype == np.float32
    assert net.weight.grad is None and net.bias.grad is None
    assert np.asarray(net.weight) is net.weight.data
    copy = net.weight.asnumpy()
    copy[...] = 7
    assert not np.any(net.weight.data == 7)
    assert [name for name, _ in net.parameters_and_names()] == ["weight", "bias"]
    assert ct.Conv2dTranspose(2, 2, 3).bias is None


def test_backward_sets_gradients_of_the_last_call():
    rng = np.random.default_rng(0)
    net = ct.Conv2dTranspose(
        2, 4, 3, stride=2, pad_mode="pad", padding=1, output_padding=1, has_bias=True, dtype=np.float64
    )
    x = rng.standard_normal((2, 2, 4, 5))
    y = net(x)
    g = rng.standard_normal(y.shape)
    dx = net.backward(g)
    ref = reference.backward(x, net.weight.data, g, stride=2, pad_mode="pad", padding=1, output_padding=1)
    np.testing.assert_allclose(dx, ref[0], atol=1e-12)
    np.testing.assert_allclose(net.weight.grad, ref[1], atol=1e-12)
    np.testing.assert_allclose(net.bias.grad, ref[2], atol=1e-12)


def test_backward_before_forward_is_refused():
    with pytest.raises(RuntimeError, match="forward"):
        ct.Conv2dTranspose(2, 2, 3).backward(np.zeros((1, 2, 4, 4), np.float32))


def test_backward_checks_the_gradient_shape():
    net = ct.Conv2dTranspose(2, 2, 3)
    net(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="grad_output"):
        net.backward(np.zeros((1, 2, 5, 5), np.float32))


def test_set_data_keeps_shape_and_dtype():
    net = ct.Conv2dTranspose(2, 2, 3)
    net.weight.set_data(np.ones((2, 2, 3, 3), np.float64))
    assert net.weight.dtype == np.float32 and np.all(net.weight.data == 1)
    with pytest.raises(ValueError, match="weight"):
        net.weight.set_data(np.ones((2, 2, 3, 2)))


@pytest.mark.parametrize(
    "dtype", [np.float16, "float16", "Float16", "mindspore.float16", np.dtype("float16"), ct.float16]
)
def test_dtype_forms(dtype):
    net = ct.Conv2dTranspose(2, 2, 3, has_bias=True, dtype=dtype)
    assert net.weight.dtype == np.float16 and net.bias.dtype == np.float16
    assert net(np.ones((1, 2, 3, 3), np.float16)).dtype == np.float16


@pytest.mark.parametrize("dtype", [np.int32, "int8", np.bool_, np.complex64, "bfloat16", "nonsense"])
def test_non_float_dtypes_are_refused_at_construction(dtype):
    with pytest.raises(TypeError, match="dtype"):
        ct.Conv2dTranspose(2, 2, 3, dtype=dtype)


def test_array_initializers_keep_their_dtype():
    net = ct.Conv2dTranspose(2, 2, 3, weight_init=np.ones((2, 2, 3, 3), np.float16))
    assert net.weight.dtype == np.float16
    with pytest.raises(TypeError, match="weight_init"):
        ct.Conv2dTranspose(2, 2, 3, weight_init=np.ones((2, 2, 3, 3), np.int32))


def test_input_must_be_an_array_of_the_parameters_dtype():
    net = ct.Conv2dTranspose(2, 2, 3)
    with pytest.raises(TypeError, match="x"):
        net([[[[1.0]], [[1.0]]]])
    with pytest.raises(TypeError, match="float32"):
        net(np.ones((1, 2, 3, 3), np.float64))


def test_default_initializers_use_mindspores_fan_in():
    """fan_in = (out_channels / group) * kH * kW for both the weight and the bias bound."""
    ct.set_seed(1)
    net = ct.Conv2dTranspose(64, 4, 3, has_bias=True)
    bound = 1 / math.sqrt(4 * 9)
    assert np.abs(net.weight.data).max() <= bound
    assert np.abs(net.weight.data).max() > 0.95 * bound
    assert np.abs(net.bias.data).max() <= bound
    assert "HeUniform" in repr(net.weight_init) and "Uniform" in repr(net.bias_init)


def test_seed_makes_initialisation_reproducible():
    ct.set_seed(5)
    first = ct.Conv2dTranspose(3, 4, 3, has_bias=True)
    ct.set_seed(5)
    second = ct.Conv2dTranspose(3, 4, 3, has_bias=True)
    np.testing.assert_array_equal(first.weight.data, second.weight.data)
    np.testing.assert_array_equal(first.bias.data, second.bias.data)


def test_has_bias_false_ignores_bias_init():
    net = ct.Conv2dTranspose(2, 2, 3, bias_init="nope")
    assert net.bias is None


def test_repr_is_mindspores_with_output_padding():
    net = ct.Conv2dTranspose(
        4,
        8,
        (3, 2),
        stride=(2, 1),
        pad_mode="pad",
        padding=(1, 0, 2, 1),
        dilation=(1, 2),
        group=2,
        has_bias=True,
        weight_init="normal",
        bias_init="zeros",
    )
    assert repr(net) == (
        "Conv2dTranspose(input_channels=4, output_channels=8, kernel_size=(3, 2), "
        "stride=(2, 1), pad_mode=pad, padding=(1, 0, 2, 1), output_padding=(0, 0), "
        "dilation=(1, 2), group=2, has_bias=True, weight_init=normal, bias_init=zeros, "
        "format=NCHW)"
    )


def test_pickle_round_trip_keeps_arguments_and_values():
    net = ct.Conv2dTranspose(3, 6, 3, stride=2, group=3, has_bias=True)
    back = pickle.loads(pickle.dumps(net))
    assert back.spec == net.spec and repr(back) == repr(net)
    np.testing.assert_array_equal(back.weight.data, net.weight.data)
    np.testing.assert_array_equal(back.bias.data, net.bias.data)
    x = np.ones((1, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(back(x), net(x))


def test_parameters_dict_and_load_parameters():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    arrays = net.parameters_dict(prefix="up1.")
    assert sorted(arrays) == ["up1.bias", "up1.weight"]
    other = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    other.load_parameters(arrays, prefix="up1.")
    np.testing.assert_array_equal(other.weight.data, net.weight.data)
    with pytest.raises(KeyError, match="up2.weight"):
        other.load_parameters(arrays, prefix="up2.")
    with pytest.raises(ValueError, match="up1.weight"):
        other.load_parameters(dict(arrays, **{"up1.weight": np.zeros((2, 4, 3, 2), np.float32)}), prefix="up1.")
    with pytest.raises(TypeError, match="up1.bias"):
        other.load_parameters(dict(arrays, **{"up1.bias": np.zeros(4, np.float64)}), prefix="up1.")
    with pytest.raises(ValueError, match="has_bias=False"):
        ct.Conv2dTranspose(2, 4, 3).load_parameters(arrays, prefix="up1.")


def test_numpy_global_seed_also_reproduces_initialisation():
    """As in MindSpore, np.random.seed makes initialisation reproducible when set_seed is unused."""
    ct.set_seed(None)
    np.random.seed(7)
    first = ct.Conv2dTranspose(3, 4, 3, has_bias=True, weight_init="normal")
    np.random.seed(7)
    second = ct.Conv2dTranspose(3, 4, 3, has_bias=True, weight_init="normal")
    np.testing.assert_array_equal(first.weight.data, second.weight.data)
    np.testing.assert_array_equal(first.bias.data, second.bias.data)
    assert not np.array_equal(first.weight.data, ct.Conv2dTranspose(3, 4, 3, weight_init="normal").weight.data)


# ---------------------------------------------------------------- copies, not shared arrays


def test_set_data_stores_a_copy():
    net = ct.Conv2dTranspose(2, 2, 3)
    given = np.full((2, 2, 3, 3), 2.0, np.float32)  # already the parameter's dtype: no cast to hide behind
    net.weight.set_data(given)
    given[...] = 5
    assert np.all(net.weight.data == 2)
    net.weight.data[...] = 7
    assert np.all(given == 5)


def test_load_parameters_stores_copies():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    arrays = {"weight": np.full((2, 4, 3, 3), 2.0, np.float32), "bias": np.full(4, 3.0, np.float32)}
    net.load_parameters(arrays)
    arrays["weight"][...] = 5
    arrays["bias"][...] = 5
    assert np.all(net.weight.data == 2) and np.all(net.bias.data == 3)
    net.weight.data[...] = 7
    net.bias.data[...] = 7
    assert np.all(arrays["weight"] == 5) and np.all(arrays["bias"] == 5)


def test_parameters_dict_returns_copies():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True, weight_init="ones", bias_init="zeros")
    arrays = net.parameters_dict()
    arrays["weight"][...] = 5
    arrays["bias"][...] = 5
    assert np.all(net.weight.data == 1) and np.all(net.bias.data == 0)
    net.weight.data[...] = 7
    assert np.all(arrays["weight"] == 5)
    assert not np.shares_memory(net.parameters_dict()["weight"], net.weight.data)


@pytest.mark.parametrize(
    "bad_bias,error",
    [
        (np.zeros(5, np.float32), ValueError),  # wrong shape
        (np.zeros(4, np.float64), TypeError),  # wrong dtype
        (None, KeyError),  # missing
    ],
)
def test_load_parameters_is_all_or_nothing(bad_bias, error):
    """The weight entry is fine and comes first; the bad bias after it must leave the weight alone."""
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    before_weight, before_bias = net.weight.data.copy(), net.bias.data.copy()
    arrays = {"weight": np.full((2, 4, 3, 3), 9.0, np.float32)}
    if bad_bias is not None:
        arrays["bias"] = bad_bias
    with pytest.raises(error, match="bias"):
        net.load_parameters(arrays)
    np.testing.assert_array_equal(net.weight.data, before_weight)
    np.testing.assert_array_equal(net.bias.data, before_bias)


def test_a_refused_unexpected_bias_leaves_the_weight_alone():
    net = ct.Conv2dTranspose(2, 4, 3)
    before = net.weight.data.copy()
    with pytest.raises(ValueError, match="has_bias=False"):
        net.load_parameters({"weight": np.full((2, 4, 3, 3), 9.0, np.float32), "bias": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(net.weight.data, before)
    net.load_parameters(
        {"weight": np.full((2, 4, 3, 3), 9.0, np.float32), "bias": np.zeros(4, np.float32)}, strict=False
    )
    assert np.all(net.weight.data == 9)


# ---------------------------------------------------------------- byte order (issue 8, section 2.1)


def test_a_native_backward_works_after_a_big_endian_forward():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    net = ct.Conv2dTranspose(2, 3, 3, stride=2, has_bias=True)
    y = net(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = net.backward(g)
    dw, db = net.weight.grad, net.bias.grad
    y_swapped = net(x.astype(">f4"))
    assert y_swapped.dtype == np.float32 and y_swapped.dtype.isnative
    np.testing.assert_array_equal(y_swapped, y)
    dx_swapped = net.backward(g)
    assert dx_swapped.dtype.isnative and net.weight.grad.dtype.isnative
    np.testing.assert_array_equal(dx_swapped, dx)
    np.testing.assert_array_equal(net.weight.grad, dw)
    np.testing.assert_array_equal(net.bias.grad, db)
    net.backward(g.astype(">f4"))  # and a big-endian gradient after a native forward
    np.testing.assert_array_equal(net.weight.grad, dw)


def test_parameters_load_from_big_endian_arrays_in_native_order():
    net = ct.Conv2dTranspose(2, 4, 3, has_bias=True)
    weight = np.random.default_rng(1).standard_normal((2, 4, 3, 3)).astype(">f4")
    net.load_parameters({"weight": weight, "bias": np.arange(4, dtype=">f4")})
    assert net.weight.dtype == np.float32 and net.weight.dtype.isnative and net.bias.dtype.isnative
    np.testing.assert_array_equal(net.weight.data, weight)
    np.testing.assert_array_equal(net.bias.data, np.arange(4))
    net.weight.set_data(weight.astype(">f8"))
    assert net.weight.dtype.isnative
    net(np.ones((1, 2, 3, 3), np.float32))  # the parameters still fit the layer's dtype


# ---------------------------------------------------------------- requires_grad (issue 8, section 2.6)


@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_requires_grad_false_leaves_the_gradient_untouched(frozen):
    rng = np.random.default_rng(2)
    net = ct.Conv2dTranspose(2, 3, 3, has_bias=True)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    g = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    param, other = (net.weight, net.bias) if frozen == "weight" else (net.bias, net.weight)
    param.requires_grad = False
    net(x)
    dx = net.backward(g)
    assert param.grad is None and other.grad is not None
    param.requires_grad = True
    net.backward(g)
    earlier = param.grad.copy()
    param.requires_grad = False
    net(2 * x)
    np.testing.assert_array_equal(net.backward(2 * g), 2 * dx)  # dx is still computed
    np.testing.assert_array_equal(param.grad, earlier)
