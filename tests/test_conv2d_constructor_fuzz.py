"""Random values of random types for every argument of nn.Conv2d's constructor, judged by MindSpore's order of checks.

The arguments are drawn as in test_constructor_fuzz.py (a value of the valid kind, or one of
its pool of odd values), plus data_format. nn.Conv2d checks its arguments in another order than
Conv2dTranspose (the kernel, stride and dilation types first, then group, then the channels'
divisibility by group before their signs, data_format, padding's items before its length, which
comes late with pad_mode; docs/mindspore-behavior.md, "Arguments, in MindSpore's order"), so the model here
(:func:`first_fault`, written from the recorded behaviour, not from the library) walks those checks in
that order and says which check fails first: its exception type and the arguments it names. One
deviation is policy: a channel count that is not an int is a TypeError naming it, checked before
the divisibility (MindSpore's ``%`` fails there by accident). Then

- construction (NumPy, torch and Flax layers) and the call that follows it succeed exactly when
  the model finds no fault, and otherwise raise the model's exception type (TypeError or
  ValueError; either for the dtype and the initializers, whose own rules test_initializers.py
  covers) with a message naming an argument of the first failing check, within seconds;
- a successful call returns the oracle's output shape in the layer's dtype;
- the three constructors agree: the same arguments give the same exception type, or all succeed.
"""

import math

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from test_constructor_fuzz import (
    DTYPES,
    ODD,
    SECONDS,
    arg_values,
    as_tuple,
    init_values,
    is_int,
    max_examples,
    time_limit,
)

from convtranspose import spec as spec_module

import reference
from conftest import ADAPTERS, counted

pytestmark = pytest.mark.property

MODES = ("same", "valid", "pad")
INT64_MAX = 2**63 - 1
ARG_NAMES = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "pad_mode",
    "padding",
    "dilation",
    "group",
    "has_bias",
    "data_format",
)
EITHER = (TypeError, ValueError)


def examples(names):
    """test_constructor_fuzz's count, a quarter of it under the default profile (all of it under 'fuzz')."""
    total = max_examples(names)
    return total if total >= 10_000 else max(5, total // 4)


def conv2d_arg_values(name, odd):
    """The strategy of one argument (test_constructor_fuzz's, and data_format)."""
    if name == "data_format":
        if not odd:
            return st.just("NCHW")
        return st.one_of(st.sampled_from(["nchw", "NHWC", "NCDHW", "NCHW ", "", "NHCW"]), ODD)
    return arg_values(name, odd)


def is_pair(value):
    """int or a 2-tuple of ints (the types only), as MindSpore's twice() takes them."""
    return is_int(value) or (type(value) is tuple and len(value) == 2 and all(is_int(item) for item in value))


def weight_shape_of(args):
    """Conv2d's weight shape (C_out, C_in // group, kH, kW) when the checks before the initializer pass."""
    return (args["out_channels"], args["in_channels"] // args["group"]) + as_tuple(args["kernel_size"], 2)


def first_fault_before_weight(args):
    """``(exception type, argument names)`` of the first failing check before the weight initializer, or None."""
    for name in ("kernel_size", "stride", "dilation"):
        if not is_pair(args[name]):
            return TypeError, {name}
    group = args["group"]
    if not is_int(group):
        return TypeError, {"group"}
    if group < 1:
        return ValueError, {"group"}
    for name in ("in_channels", "out_channels"):
        if not is_int(args[name]):  # policy: a TypeError naming it (MindSpore fails inside its own %)
            return TypeError, {name}
    if args["in_channels"] % group or args["out_channels"] % group:
        return ValueError, {"in_channels", "out_channels", "group"}
    for name in ("in_channels", "out_channels"):
        if args[name] < 1:
            return ValueError, {name}
    data_format = args["data_format"]
    if not (isinstance(data_format, str) and data_format in ("NCHW", "NHWC", "NCDHW")) or data_format == "NHWC":
        return ValueError, {"data_format"}
    padding = args["padding"]
    if not is_int(padding) and type(padding) is not tuple:
        return TypeError, {"padding"}
    for item in as_tuple(padding, 1):  # the items, before the length
        if not is_int(item):
            return TypeError, {"padding"}
        if item < 0:
            return ValueError, {"padding"}
    for name in ("kernel_size", "stride", "dilation"):
        if min(as_tuple(args[name], 2)) < 1:
            return ValueError, {name}
    for name in ("kernel_size", "stride", "dilation"):
        if max(as_tuple(args[name], 2)) > INT64_MAX:
            return ValueError, {name}
    if math.prod(weight_shape_of(args)) * 16 > spec_module.MEMORY_LIMIT:
        return ValueError, {"in_channels", "out_channels", "group", "kernel_size"}
    return None


def first_fault_after_weight(args, weight_fault, bias_fault, dtype_fault):
    """The first failing check from the dtype on: initializers, has_bias, then the primitive's checks."""
    if dtype_fault:
        return EITHER, {"dtype"}
    if weight_fault:
        return EITHER, {"weight_init"}
    if type(args["has_bias"]) is not bool:
        return TypeError, {"has_bias"}
    if bias_fault and args["has_bias"]:
        return EITHER, {"bias_init"}
    if not isinstance(args["pad_mode"], str):
        return TypeError, {"pad_mode"}
    if not is_int(args["padding"]) and len(args["padding"]) != 4:
        return ValueError, {"padding"}
    if args["pad_mode"] not in MODES:
        return ValueError, {"pad_mode"}
    if args["pad_mode"] != "pad" and any(as_tuple(args["padding"], 4)):
        return ValueError, {"padding", "pad_mode"}
    if args["data_format"] != "NCHW":
        return ValueError, {"data_format"}
    return None


def call_fault(args, x_shape):
    """A kernel that does not fit the padded input (MindSpore's undilated check, then no output rows left)."""
    if args["pad_mode"] == "same":
        return None
    pads = as_tuple(args["padding"], 4)
    for axis in range(2):
        k, s, d = (as_tuple(args[name], 2)[axis] for name in ("kernel_size", "stride", "dilation"))
        padded = x_shape[2 + axis] + pads[2 * axis] + pads[2 * axis + 1]
        if padded < k or (padded - d * (k - 1) - 1) // s + 1 < 0:
            return ValueError, {"kernel_size", "x"}
    return None


@st.composite
def constructor_arguments(draw):
    """``(kwargs, fault)``: the 13 constructor arguments and the model's first fault (or None)."""
    # up to three arguments at fault: the order of the checks shows only where two or more are
    odd = draw(st.sets(st.sampled_from(ARG_NAMES + ("weight_init", "bias_init", "dtype")), max_size=3), label="odd")
    args = {name: draw(conv2d_arg_values(name, name in odd), label=name) for name in ARG_NAMES}
    if not odd & {"in_channels", "out_channels", "group"} and draw(st.integers(0, 3)):
        # mostly channel counts that the group divides (else nearly every example is refused)
        args["in_channels"] = args["group"] * draw(st.integers(1, 3), label="in_channels // group")
        args["out_channels"] = args["group"] * draw(st.integers(1, 3), label="out_channels // group")
    if not odd & {"padding", "pad_mode"} and args["pad_mode"] != "pad" and draw(st.integers(0, 3)):
        args["padding"] = draw(st.sampled_from([0, (0, 0, 0, 0)]), label="padding")  # else mostly this one fault
    fault = first_fault_before_weight(args)
    shape = None if fault else weight_shape_of(args)
    if shape is not None and math.prod(shape) > 10**6:
        shape = None  # no array initializer of that size
    weight_init, weight_fault = draw(init_values(shape, 1, "weight_init" in odd), label="weight_init")
    bias_shape = None if shape is None else (args["out_channels"],)
    bias_init, bias_fault = draw(init_values(bias_shape, 2, "bias_init" in odd), label="bias_init")
    dtype, dtype_fault = draw(st.sampled_from([d for d in DTYPES if d[1] == ("dtype" in odd)]), label="dtype")
    if fault is None:
        fault = first_fault_after_weight(args, weight_fault, bias_fault, dtype_fault)
    return dict(args, weight_init=weight_init, bias_init=bias_init, dtype=dtype), fault


def check_refusal(exc, fault, where):
    """The model's exception type, with a message naming an argument of the first failing check."""
    expected, names = fault
    assert isinstance(exc, expected), f"{where}: {type(exc).__name__} where the model expects {expected}: {exc}"
    assert any(name in str(exc) for name in names), f"{where}: the message names none of {sorted(names)}: {exc}"


def construct_and_call(engine, kwargs, fault):
    """Construct (and, when that works, call on a 1x3x3 image); returns (construction, call) outcomes."""
    with engine.float64():
        return _construct_and_call(engine, kwargs, fault)


def _construct_and_call(engine, kwargs, fault):
    where = f"{engine.name} Conv2d constructor"
    with time_limit(SECONDS):
        try:
            net = engine.construct(**kwargs)
        except Exception as exc:  # noqa: BLE001 - which exception is what is tested
            assert fault, f"{where} refused valid arguments: {type(exc).__name__}: {exc}"
            check_refusal(exc, fault, where)
            return type(exc).__name__, None
    assert not fault, f"{where} accepted arguments whose first fault is {fault}"
    weight, bias = engine.weight_of(net), engine.bias_of(net)
    assert weight.shape == weight_shape_of(kwargs), f"{where}: weight of shape {weight.shape}"
    assert (bias is not None) == kwargs["has_bias"], f"{where}: bias {bias} with has_bias={kwargs['has_bias']}"
    x_shape = (1, kwargs["in_channels"], 3, 3)
    expected = call_fault(kwargs, x_shape)
    if expected is None and bias is not None and bias.dtype != weight.dtype:  # an array initializer keeps its dtype
        expected = (EITHER, {"bias"})
    where = f"{engine.name} call of a Conv2d built from {kwargs}"
    with time_limit(SECONDS):
        try:
            y = engine.to_numpy(engine.call(net, np.ones(x_shape, weight.dtype)))
        except Exception as exc:  # noqa: BLE001
            assert expected, f"{where} refused a valid input: {type(exc).__name__}: {exc}"
            check_refusal(exc, expected, where)
            return "ok", type(exc).__name__
    assert not expected, f"{where} accepted a call with the fault {expected}"
    want = reference.conv2d_output_shape(
        x_shape, weight.shape, kwargs["stride"], kwargs["pad_mode"], kwargs["padding"], kwargs["dilation"]
    )
    assert y.shape == want, f"{where}: output shape {y.shape}, the oracle's {want}"
    assert y.dtype == weight.dtype, f"{where}: output dtype {y.dtype}, parameters {weight.dtype}"
    return "ok", "ok"


def test_a_conv2d_constructor_accepts_exactly_the_valid_arguments(conv2d_layer_engine):
    engine = conv2d_layer_engine

    @settings(max_examples=examples([engine.name]))
    @given(case=constructor_arguments())
    @counted
    def check(case):
        kwargs, fault = case
        note(f"first fault: {fault}")
        construct_and_call(engine, kwargs, fault)

    check()


def test_the_three_conv2d_constructors_agree():
    engines = []
    for name in ("numpy", "torch", "flax"):
        try:
            engines.append(ADAPTERS[name]("conv2d"))
        except pytest.skip.Exception:
            pass
    if len(engines) < 2:
        pytest.skip("fewer than two layer engines are installed")

    @settings(max_examples=examples([e.name for e in engines]))
    @given(case=constructor_arguments())
    @counted
    def check(case):
        kwargs, fault = case
        outcomes = {engine.name: construct_and_call(engine, kwargs, fault) for engine in engines}
        assert len(set(outcomes.values())) <= 1, f"the constructors disagree on {kwargs}: {outcomes}"

    check()


# Two faults each, the first in MindSpore's order named (the recorded ``prec_*`` cases and the
# order of section 4 of the behaviour notes): (label, overrides of a valid call, the first fault).
BASE = dict(in_channels=2, out_channels=4, kernel_size=3, stride=1, pad_mode="same", padding=0, dilation=1, group=1)
ORDERED = [
    ("kernel type before stride type", dict(kernel_size=[3], stride=1.5), "kernel_size"),
    ("dilation type before group", dict(dilation=(1, 1, 1, 1), group=0), "dilation"),
    ("group before the channels", dict(group=0, in_channels=-1), "group"),
    ("divisibility before the channels' sign", dict(in_channels=-3, group=2), "group"),
    ("channels before data_format", dict(out_channels=0, data_format="nchw"), "out_channels"),
    ("data_format before padding", dict(data_format="NHWC", padding=-1), "data_format"),
    ("padding items before kernel values", dict(pad_mode="pad", padding=(0, -1), kernel_size=0), "padding"),
    ("kernel values before the weight initializer", dict(kernel_size=(3, 0), weight_init="bogus"), "kernel_size"),
    ("weight initializer before has_bias", dict(weight_init="bogus", has_bias=1), "weight_init"),
    ("has_bias before pad_mode", dict(has_bias=1, pad_mode=None), "has_bias"),
    ("bias initializer before pad_mode", dict(has_bias=True, bias_init="bogus", pad_mode="SAME"), "bias_init"),
    ("pad_mode type before the padding length", dict(pad_mode=None, padding=(0, 1)), "pad_mode"),
    ("padding length before the pad_mode value", dict(pad_mode="SAME", padding=(0, 1)), "padding"),
    ("pad_mode value before padding with 'same'", dict(pad_mode="Same", padding=1), "pad_mode"),
    ("stride value before dilation value", dict(stride=(1, 0), dilation=-1), "stride"),
]


@pytest.mark.parametrize("label, overrides, first", ORDERED, ids=[case[0] for case in ORDERED])
def test_conv2d_checks_run_in_mindspores_order(conv2d_layer_engine, label, overrides, first):
    kwargs = dict(BASE, has_bias=False, data_format="NCHW", weight_init=None, bias_init=None, dtype=np.float32)
    kwargs.update(overrides)
    fault = first_fault_before_weight(kwargs) or first_fault_after_weight(
        kwargs, kwargs["weight_init"] == "bogus", kwargs["bias_init"] == "bogus", False
    )
    assert fault is not None and first in fault[1], f"the model's first fault {fault} is not {first!r}"
    construct_and_call(conv2d_layer_engine, kwargs, (fault[0], {first}))
