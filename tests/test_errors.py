"""Every case of golden/errors.json (what the real MindSpore 2.10 did), judged by its policy.

- match:       raise `expect`, at construction or, if `latest` is 'call', at the latest at the call
- clear_error: MindSpore fails by accident; we raise `expect` with our own message
- extension:   MindSpore cannot, we can: no error
- valid:       both accept; shapes and dtypes as recorded
Our messages name the argument at fault (or the input) and echo the value given: see ``_FAULTS``.
"""

import json
import re

import numpy as np
import pytest

import convtranspose as ct

import reference
from conftest import GOLDEN, geometry, golden_path

_CASES = json.loads((GOLDEN / "errors.json").read_text())


def _np_dtype(name):
    return np.dtype(getattr(np, name))


def decode(value, key=None):
    """Turn the JSON encoding of errors.json (tests/data/README.md) back into Python values (arrays for Tensors)."""
    if isinstance(value, list):
        return tuple(decode(item) for item in value)
    if isinstance(value, dict):
        if "__list__" in value:
            return [decode(item) for item in value["__list__"]]
        if "__pystr__" in value:
            return value["__pystr__"]
        if "__nptype__" in value:
            return getattr(np, value["__nptype__"])
        if "__npscalar__" in value:
            scalar = value["__npscalar__"]
            return _np_dtype(scalar["dtype"]).type(scalar["value"])
        for marker in ("__ndarray__", "__tensor__"):
            if marker in value:
                spec = value[marker]
                return np.full(tuple(spec["shape"]), spec["fill"], dtype=_np_dtype(spec["dtype"]))
        if "__initializer__" in value:
            cls = getattr(ct.initializer, value["__initializer__"])
            return cls(**{k: decode(v) for k, v in value["args"].items()})
        return {k: decode(v, k) for k, v in value.items()}
    if key == "dtype" and isinstance(value, str):  # a MindSpore dtype, written by its name
        return getattr(np, value, value)  # NumPy has no bfloat16: pass the name itself
    return value


def make_input(case):
    shape = tuple(case["input_shape"])
    x = np.random.default_rng(0).standard_normal(shape).astype(_np_dtype(case["input_dtype"]))
    return x.tolist() if case["input_kind"] == "list" else x


def run_case(engine, case):
    """Construct (and call, when the case has an input) with ``engine``; returns (layer, output)."""
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    net = engine.construct(**kwargs)
    y = engine.to_numpy(engine.call(net, make_input(case))) if case["input_shape"] is not None else None
    return net, y


_ARGUMENTS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "pad_mode",
    "padding",
    "output_padding",
    "dilation",
    "group",
    "has_bias",
    "weight_init",
    "bias_init",
    "dtype",
)
_PAIRS = ("kernel_size", "stride", "dilation", "output_padding")


def _named(name, message):
    """Whether ``name`` stands in ``message`` as a word of its own ('bias' is not in 'bias_init')."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message) is not None


def _keyword(name):
    """The argument ``name`` is at fault: the message must say ``name=<the value given>``.

    The value may be echoed as given (its repr) or as the spec normalises it: an int given for
    a pair argument reads ``(v, v)``, an int padding ``(v, v, v, v)``.
    """

    def requirement(case, kwargs):
        value = kwargs[name]
        forms = [repr(value)]
        if type(value) is int and name in _PAIRS + ("padding",):
            forms.append(repr((value,) * (4 if name == "padding" else 2)))
        return name, [f"{name}={form}" for form in forms]

    return requirement


def _keywords(*names):
    return [_keyword(name) for name in names]


def _x_shape(case, kwargs):
    return "x", [repr(tuple(case["input_shape"]))]


def _x_type(case, kwargs):
    return "x", [case["input_kind"]]  # 'list': the type the call got


def _x_dtype(case, kwargs):
    return "x", [case["input_dtype"]]


def _parameters_dtype(case, kwargs):
    """Beside x's dtype, a dtype mismatch names the parameters' dtype it must match."""
    return None, [case["weight_dtype"]]


def _array_shape(name):
    def requirement(case, kwargs):
        return name, [repr(kwargs[name].shape)]

    return requirement


def _bias_dtype(case, kwargs):
    return "bias", [kwargs["bias_init"].dtype.name]


def _unknown_keyword(case, kwargs):
    (name,) = set(kwargs) - set(_ARGUMENTS)
    return name, [repr(name)]


def _missing_keyword(name):
    def requirement(case, kwargs):
        return name, [repr(name)]

    return requirement


# Which argument each errors.json error case gets wrong, from its id, first match wins. The
# explicit entries come first: cases with two faults (MindSpore's order of checks decides which
# one is reported), faults of two arguments together, and faults of the call's input x; the
# last entry reads the argument from the id's prefix ('stride_tuple_zero' -> stride).
_FAULTS = [
    (r"out_not_divisible_by_group", _keywords("out_channels", "group")),
    (
        r"both_not_divisible_by_group|group_larger_than_channels|prec_divisibility_before_weight_init",
        _keywords("in_channels", "group"),
    ),
    (r"has_bias_bad_and_weight_bad|prec_weight_init_before_pad_mode", _keywords("weight_init")),
    (r"bad_pad_mode_and_padding", _keywords("pad_mode")),
    (r"prec_stride_before_padding", _keywords("stride")),
    (r"prec_dilation_before_padding_type", _keywords("dilation")),
    (r"prec_padding_type_before_channels|prec_padding_len_before_output_padding", _keywords("padding")),
    (r"prec_in_before_out", _keywords("in_channels")),
    (r"prec_channels_before_padding_value", _keywords("out_channels")),
    (r"prec_group_before_kernel_value", _keywords("group")),
    (r"prec_kernel_value_before_divisibility", _keywords("kernel_size")),
    (r"prec_bias_init_before_pad_mode", _keywords("bias_init")),
    (r"(same|valid)_with_padding_", _keywords("padding")),
    (r"pad_crop_", _keywords("padding")),
    (r"input_list", [_x_type]),
    (r"input_", [_x_shape]),
    (
        r"dtype_float\d+_input_|dtype_float64_call_float32_input|weight_init_tensor_float64",
        [_x_dtype, _parameters_dtype],
    ),
    (r"bias_tensor_float16_weight_float32", [_bias_dtype, _parameters_dtype]),
    (r"weight_init_tensor_(wrong|transposed)_shape", [_array_shape("weight_init")]),
    (r"bias_init_tensor_(wrong_shape|scalar)", [_array_shape("bias_init")]),
    (r"unknown_kwarg_", [_unknown_keyword]),
    (r"missing_kernel_size", [_missing_keyword("kernel_size")]),
    (rf"({'|'.join(_ARGUMENTS)})_", None),
]

_ERROR_CASES = [case for case in _CASES if case["policy"] in ("match", "clear_error")]


def fault_of(case, faults=None):
    """``[(argument, texts)]``: each argument must be named, and one of its texts must appear.

    An argument of None means only the texts (a value that belongs to no argument by name).
    ``faults`` is the layer's table of (id pattern, requirements), this file's ``_FAULTS`` by
    default (test_conv2d_errors.py has Conv2d's).
    """
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    for pattern, requirements in _FAULTS if faults is None else faults:
        match = re.match(pattern, case["id"])
        if match:
            if requirements is None:
                requirements = _keywords(match.group(1))
            return [requirement(case, kwargs) for requirement in requirements]
    raise KeyError(f"{case['id']}: no entry in _FAULTS says which argument it gets wrong")


def check_message(case, message, faults=None):
    """The message names the argument at fault and echoes its value (see ``fault_of``)."""
    for name, texts in fault_of(case, faults):
        assert name is None or _named(name, message), f"{case['id']}: the message does not name {name}: {message!r}"
        assert any(text in message for text in texts), (
            f"{case['id']}: the message does not echo {' or '.join(texts)}: {message!r}"
        )


def raised_message(engine, case):
    """Run an error case with ``engine``: it must raise ``expect`` no later than ``latest``. Returns the message."""
    expected = {"TypeError": TypeError, "ValueError": ValueError}[case["expect"]]
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    if case["latest"] == "construct" or case["input_shape"] is None:
        with pytest.raises(expected) as info:
            engine.construct(**kwargs)
    else:
        with pytest.raises(expected) as info:
            net = engine.construct(**kwargs)
            engine.call(net, make_input(case))
    return str(info.value)


def _extension_expectations(case, kwargs):
    """What each 'extension' case must build: ``(weight dtype, weight values or None, bias values or None)``."""
    return {
        "dtype_pystr": (np.dtype(np.float16), None, None),
        "dtype_numpy_type": (np.dtype(np.float16), None, None),
        "weight_init_ndarray": (np.dtype(np.float32), kwargs.get("weight_init"), None),
        "bias_init_ndarray": (np.dtype(np.float32), None, kwargs.get("bias_init")),
        "input_ndarray": (np.dtype(np.float32), None, None),
        "dtype_float64_call": (np.dtype(np.float64), None, None),
    }[case["id"]]


def check_extension(engine, case, net, y):
    """An extension case builds what it asks for, and computes what the oracle computes."""
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    dtype, weight_values, bias_values = _extension_expectations(case, kwargs)
    weight, bias = engine.weight_of(net), engine.bias_of(net)
    weight_shape = (kwargs["in_channels"], kwargs["out_channels"] // kwargs.get("group", 1)) + (
        (kwargs["kernel_size"],) * 2 if isinstance(kwargs["kernel_size"], int) else kwargs["kernel_size"]
    )
    assert weight.shape == weight_shape and weight.dtype == dtype, (weight.shape, weight.dtype)
    if weight_values is not None:
        np.testing.assert_array_equal(weight, weight_values)
        assert not np.shares_memory(weight, weight_values), "the layer must copy an array initializer"
    if kwargs.get("has_bias"):
        assert bias is not None and bias.shape == (kwargs["out_channels"],) and bias.dtype == dtype
        if bias_values is not None:
            np.testing.assert_array_equal(bias, bias_values)
            assert not np.shares_memory(bias, bias_values), "the layer must copy an array initializer"
    else:
        assert bias is None
    if y is not None:
        x = make_input(case)
        expected = reference.forward(x, weight, bias, **geometry(kwargs))
        assert y.shape == expected.shape and y.dtype == dtype, (y.shape, y.dtype)
        np.testing.assert_allclose(y, expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("case", _CASES, ids=[c["id"] for c in _CASES])
def test_errors_json_case(layer_engine, case):
    if case["id"] == "dtype_none" and layer_engine.name == "torch":
        # PyTorch's convention wins in its front end: dtype=None is torch.get_default_dtype()
        # (tests/test_torch_training.py), where MindSpore refuses None.
        pytest.skip("dtype=None is PyTorch's default dtype in convtranspose.torch")
    # MindSpore holds float64 parameters: so must the engine here (Flax only with x64 on; what
    # it says with x64 off is tested in test_flax.py)
    with layer_engine.float64():
        _check_errors_json_case(layer_engine, case)


def _check_errors_json_case(engine, case):
    policy = case["policy"]
    if policy in ("match", "clear_error"):
        check_message(case, raised_message(engine, case))
        return
    net, y = run_case(engine, case)  # 'valid' and 'extension': no error
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
        if case.get("output_constant") is not None and not case.get("nondeterministic") and y.size:
            np.testing.assert_array_equal(y, np.full(y.shape, case["output_constant"], dtype=y.dtype))


def _crop_axis(kwargs, input_shape):
    """``(axis, full length, rows cropped)`` of the first axis whose 'pad' crop leaves no window.

    Computed here from docs/mindspore-behavior.md, not from the library.
    """

    def pair(value):
        return value if isinstance(value, tuple) else (value, value)

    kernel, stride, dilation = (pair(kwargs.get(key, 1)) for key in ("kernel_size", "stride", "dilation"))
    padding = kwargs.get("padding", 0)
    padding = (padding,) * 4 if isinstance(padding, int) else padding
    output_padding = pair(kwargs.get("output_padding", 0))
    for index, axis in enumerate(("height", "width")):
        full = (input_shape[2 + index] - 1) * stride[index] + dilation[index] * (kernel[index] - 1) + 1
        cropped = padding[2 * index] + padding[2 * index + 1]
        if full - cropped < 0 or (full == cropped and output_padding[index]):
            return axis, full, cropped
    raise AssertionError("no axis is cropped away")


_CROP_CASES = [case for case in _ERROR_CASES if case["id"].startswith("pad_crop_")]


@pytest.mark.parametrize("case", _CROP_CASES, ids=[c["id"] for c in _CROP_CASES])
def test_crop_messages_say_how_long_the_result_is_and_what_the_padding_removes(layer_engine, case):
    """Not "the crop leaves -3 rows": the full length, the rows the padding removes, and why."""
    message = raised_message(layer_engine, case)
    kwargs = {k: decode(v, k) for k, v in case["kwargs"].items()}
    axis, full, cropped = _crop_axis(kwargs, case["input_shape"])
    unit = "rows" if axis == "height" else "columns"
    assert f"{axis} axis" in message, message
    assert re.search(rf"\b{full} {unit} long", message), message
    assert re.search(rf"\bcrops {cropped}\b", message), message
    assert not re.search(r"-\d+ (rows|columns)", message), message
    size = case["input_shape"][2 if axis == "height" else 3]
    assert f"input {axis} of {size}" in message, message
    for key in ("kernel_size", "stride", "dilation"):
        value = kwargs.get(key, 1)
        assert f"{key}={value if isinstance(value, tuple) else (value, value)}" in message, message


def test_every_error_case_says_which_argument_is_at_fault():
    """The table covers every error case (fault_of raises KeyError otherwise), and each argument
    it blames is one the case passes, the input x, the bias, or the missing kernel_size."""
    assert len(_ERROR_CASES) == 179 or not _CASES
    for case in _ERROR_CASES:
        faults = fault_of(case)
        assert faults, case["id"]
        for name, texts in faults:
            assert name in (None, "x", "bias") or name in case["kwargs"] or case["id"] == "missing_kernel_size", (
                case["id"],
                name,
            )
            assert texts and all(texts), case["id"]


def test_errors_json_is_present():
    path = golden_path("errors.json")  # fails when the data is missing
    assert len(json.loads(path.read_text())) == len(_CASES) == 295
