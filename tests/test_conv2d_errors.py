"""Every case of conv2d_errors.json (what the real MindSpore 2.10's nn.Conv2d did), judged by its policy.

The policies are those of test_errors.py (whose helpers this reuses): ``match`` and
``clear_error`` raise ``expect`` no later than ``latest`` with a message that names the argument
at fault and echoes its value; ``extension`` builds and computes what MindSpore cannot;
``valid`` gives MindSpore's shapes and dtypes.
"""

import json

import numpy as np
import pytest

import reference
from conftest import GOLDEN, geometry
from test_errors import (
    _array_shape,
    _bias_dtype,
    _keywords,
    _missing_keyword,
    _np_dtype,
    _parameters_dtype,
    _x_dtype,
    _x_shape,
    _x_type,
    check_message,
    decode,
    make_input,
    raised_message,
    run_case,
)

_CASES = json.loads((GOLDEN / "conv2d_errors.json").read_text())

_ARGUMENTS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "pad_mode",
    "padding",
    "dilation",
    "group",
    "has_bias",
    "weight_init",
    "bias_init",
    "data_format",
    "dtype",
)


def _unknown_keyword(case, kwargs):
    (name,) = set(kwargs) - set(_ARGUMENTS)
    return name, [repr(name)]


def _kernel_fit(case, kwargs):
    """A kernel that does not fit the padded input: the message gives x's shape and the kernel."""
    return "kernel_size", [repr(tuple(case["input_shape"]))]


# Which argument each error case gets wrong, from its id, first match wins (see test_errors.py).
_FAULTS = [
    (r"out_not_divisible_by_group", _keywords("out_channels", "group")),
    (r"(in|both)_not_divisible_by_group|prec_divisibility_before_channel_sign", _keywords("in_channels", "group")),
    (r"in_channels_float_not_divisible|prec_divisibility_before_channel_type", _keywords("in_channels")),
    (r"prec_kernel_before_stride|prec_kernel_value_before_", _keywords("kernel_size")),
    (r"prec_dilation_before_group", _keywords("dilation")),
    (r"prec_group_before_", _keywords("group")),
    (r"prec_channels_before_data_format", _keywords("out_channels")),
    (r"prec_data_format_before_padding", _keywords("data_format")),
    (r"prec_padding_value_before_kernel_value|prec_padding_len_before_pad_mode_value", _keywords("padding")),
    (r"prec_weight_init_before_", _keywords("weight_init")),
    (r"prec_bias_init_before_pad_mode", _keywords("bias_init")),
    (r"prec_pad_mode_", _keywords("pad_mode")),
    (r"(same|valid)_with_padding_", _keywords("padding")),
    (r"bad_pad_mode_and_padding", _keywords("pad_mode")),
    (r"input_list", [_x_type]),
    (r"input_", [_x_shape]),
    (r"valid_kernel_larger|valid_dilated_kernel_|pad_dilated_kernel_|kernel_size_huge_valid_call", [_kernel_fit]),
    (r"dilation_huge_valid", [_kernel_fit]),
    (
        r"dtype_float\d+_input_|dtype_float64_call_float32_input|weight_init_tensor_float64",
        [_x_dtype, _parameters_dtype],
    ),
    (r"bias_tensor_float16_weight_float32", [_bias_dtype, _parameters_dtype]),
    (r"weight_init_tensor_(wrong|transposed)_shape", [_array_shape("weight_init")]),
    (r"bias_init_tensor_(wrong_shape|scalar|2d)", [_array_shape("bias_init")]),
    (r"unknown_kwarg_", [_unknown_keyword]),
    (r"missing_kernel_size", [_missing_keyword("kernel_size")]),
    (rf"({'|'.join(_ARGUMENTS)})_", None),
]


def _weight_shape(kwargs):
    kernel = kwargs["kernel_size"]
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return (kwargs["out_channels"], kwargs["in_channels"] // kwargs.get("group", 1)) + kernel


def check_extension(engine, case, net, y):
    """An extension case builds what it asks for and computes what the oracle computes."""
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    weight, bias = engine.weight_of(net), engine.bias_of(net)
    assert weight.shape == _weight_shape(kwargs)
    for name, value in (("weight_init", weight), ("bias_init", bias)):
        given = kwargs.get(name)
        if isinstance(given, np.ndarray):
            np.testing.assert_array_equal(value, given)
            assert not np.shares_memory(value, given), "the layer must copy an array initializer"
    if y is not None:
        x = make_input(case).astype(weight.dtype)
        expected = reference.conv2d_forward(x, weight, bias, **geometry(kwargs))
        assert y.shape == expected.shape and y.dtype == weight.dtype, (y.shape, y.dtype, expected.shape)
        np.testing.assert_allclose(y, expected, rtol=1e-5 if y.dtype == np.float32 else 1e-12, atol=1e-6)


# MindSpore 2.10 on CPU refuses bfloat16 parameters (its NumPy has no bfloat16); the PyTorch and
# Flax layers compute bfloat16 as MindSpore computes float16 (an extension where the framework has it).
_BFLOAT16_FRAMEWORKS = ("torch", "flax")


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_conv2d_errors_json_case(conv2d_layer_engine, case):
    engine = conv2d_layer_engine
    if case["id"] == "dtype_none" and engine.name == "torch":
        pytest.skip("dtype=None is PyTorch's default dtype in convtranspose.torch")
    if case["id"] == "dtype_bfloat16_construct" and engine.name in _BFLOAT16_FRAMEWORKS:
        net = engine.construct(**{k: decode(v, k) for k, v in case["kwargs"].items()})
        weight = net.weight if engine.name == "torch" else net.weight[...]
        assert "bfloat16" in str(weight.dtype)
        return
    with engine.float64():
        policy = case["policy"]
        if policy in ("match", "clear_error"):
            check_message(case, raised_message(engine, case), _FAULTS)
            return
        net, y = run_case(engine, case)
        if policy == "extension":
            check_extension(engine, case, net, y)
            return
        weight, bias = engine.weight_of(net), engine.bias_of(net)
        if case.get("weight_shape") is not None:
            assert weight.shape == tuple(case["weight_shape"])
        if case.get("weight_dtype") is not None:
            assert weight.dtype == _np_dtype(case["weight_dtype"])
        if case.get("bias_shape") is not None:
            assert bias is not None and bias.shape == tuple(case["bias_shape"])
        if y is not None and case.get("output_shape") is not None:
            assert y.shape == tuple(case["output_shape"])
            assert y.dtype == _np_dtype(case["output_dtype"])
            if case.get("output_constant") is not None and y.size:
                np.testing.assert_array_equal(y, np.full(y.shape, case["output_constant"], dtype=y.dtype))
