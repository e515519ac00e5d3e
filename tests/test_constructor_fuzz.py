"""Random values of random types for every argument of every constructor and functional form.

Each argument gets either a value of its valid kind or one of a pool of odd values (None,
bools, floats, NaN, inf, 10**400, negatives, strings in any letter case, lists, nested tuples,
NumPy scalars, 0-d arrays, tensors, objects with ``__index__``). An independent model of
MindSpore's rules (written here from docs/mindspore-behavior.md, not taken from the library) says
which arguments are at fault; then

- construction (NumPy, torch and Flax layers) and the call that follows it, and the functional
  forms (NumPy, torch, jax), succeed exactly when the model finds no fault, and otherwise raise
  only TypeError or ValueError, whose message names an argument at fault, within seconds;
- a successful call returns the model's output shape in the layer's dtype;
- the three constructors (and the three functional forms) agree: the same arguments give the
  same exception type, or all succeed.
"""

import contextlib
import math
import signal

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import convtranspose as ct
from convtranspose import initializer as init
from convtranspose import spec as spec_module

import reference
from conftest import ADAPTERS, counted

pytestmark = pytest.mark.property

MODES = ("same", "valid", "pad")
SECONDS = 20  # per example: anything slower is a hang for a constructor or a 3x3 call


def optional(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


torch = optional("torch")
jnp = optional("jax.numpy")


def available(names):
    """The adapters of ``names`` whose framework and engine module import."""
    found = []
    for name in names:
        try:
            found.append(ADAPTERS[name]())
        except pytest.skip.Exception:
            pass
    return found


def max_examples(names):
    """The profile's count; a quarter under the default profile when a compiling engine takes part."""
    total = settings.default.max_examples
    if total < 10_000 and set(names) & {"jax", "flax"}:
        return max(10, total // 4)
    return total


@contextlib.contextmanager
def time_limit(seconds):
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Index:
    """An object with ``__index__``: operator.index accepts it, MindSpore's int checks do not."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value})"


def random_case(text, flips):
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips + [False] * len(text)))


def odd_values():
    """Values of the wrong kind for nearly every argument, and edge values of the right kind."""
    pool = [
        None,
        True,
        False,
        0,
        -1,
        -3,
        10**12,
        2**63,
        10**400,
        -(10**400),
        0.0,
        1.0,
        2.5,
        -1.0,
        float("nan"),
        float("inf"),
        -float("inf"),
        1 + 0j,
        b"same",
        "",
        "3",
        "same ",
        "float32",
        [],
        [2],
        [1, 2],
        [1, 2, 3, 4],
        (),
        (2,),
        (1, 2, 3),
        ((1, 2), (3, 4)),
        (1, (2, 3)),
        (1.0, 2.0),
        (True, 1),
        (np.int64(2), 2),
        (2, -1),
        (0, 0),
        (1, 1, 1, -1),
        (1, 1, 1, 1.5),
        (10**400, 1),
        np.int64(3),
        np.int32(2),
        np.uint8(1),
        np.float32(2.0),
        np.float64(1.0),
        np.bool_(True),
        np.array(3),
        np.array(2.0),
        np.array([1, 2]),
        np.array([[1, 2], [3, 4]]),
        Index(3),
        Index(-1),
        object(),
        {1: 2},
        {"same"},
        range(2),
        slice(1),
        int,
        np.float32,
    ]
    if torch is not None:
        pool += [torch.tensor(3), torch.tensor([1, 2]), torch.tensor(2.0), torch.float32]
    if jnp is not None:
        pool += [jnp.array(3), jnp.array([1, 2])]
    return pool


ODD = st.sampled_from(odd_values())
MODE_STRINGS = st.builds(random_case, st.sampled_from(MODES), st.lists(st.booleans(), max_size=5))


def pair_of(values):
    return st.one_of(values, st.tuples(values, values))


def arg_values(name, odd):
    """The strategy of one argument: a value of its valid kind, or (odd) an odd value or odd item."""
    small = st.integers(1, 6)
    if not odd:
        return {
            "in_channels": st.integers(1, 6),
            "out_channels": st.integers(1, 6),
            "group": st.sampled_from([1, 1, 2, 3]),
            "kernel_size": pair_of(small),
            "stride": pair_of(small),
            "dilation": pair_of(small),
            # mostly what every mode takes, else values that need 'pad' or lie out of range
            "padding": st.one_of(
                st.sampled_from([0, (0, 0, 0, 0)]), st.integers(0, 3), st.tuples(*[st.integers(0, 3)] * 4)
            ),
            "output_padding": st.one_of(
                st.sampled_from([0, (0, 0)]), st.integers(-1, 5), st.tuples(st.integers(-1, 5), st.integers(-1, 5))
            ),
            "pad_mode": st.one_of(st.sampled_from(MODES), st.sampled_from(MODES), MODE_STRINGS),
            "has_bias": st.booleans(),
        }[name]
    with_odd_item = {
        "kernel_size": st.tuples(small, ODD),
        "stride": st.tuples(ODD, small),
        "dilation": st.tuples(small, ODD),
        "padding": st.tuples(st.integers(0, 2), ODD, st.integers(0, 2), st.integers(0, 2)),
        "output_padding": st.tuples(ODD, st.integers(0, 1)),
    }.get(name, ODD)
    return st.one_of(ODD, with_odd_item, st.text(max_size=4), MODE_STRINGS)


def odd_names(draw, names):
    """Which arguments get an odd value: none for a third of the examples, else one or two."""
    return draw(st.sets(st.sampled_from(names), max_size=2), label="odd arguments")


# ---------------------------------------------------------------------------- the model


def is_int(value, low=None):
    return type(value) is int and (low is None or value >= low)


def is_ints(value, size, low=None):
    """An int, or a tuple of ``size`` ints, each >= low."""
    return is_int(value, low) or (
        type(value) is tuple and len(value) == size and all(is_int(item, low) for item in value)
    )


def as_tuple(value, size):
    return value if type(value) is tuple else (value,) * size


# dtypes: (value, fault?) for every layer, numpy forms and names only (engine-specific ones apart:
# None is refused by the NumPy and Flax layers, as MindSpore does (errors.json's dtype_none), and
# is torch.get_default_dtype() in the torch layer)
DTYPES = [
    (np.float32, False),
    (np.float16, False),
    ("float16", False),
    ("Float32", False),
    ("mindspore.float16", False),
    ("HALF", False),
    (np.dtype("float32"), False),
    ("fp32", False),
    (np.int32, True),
    ("int8", True),
    (np.complex64, True),
    ("complex64", True),
    ("bogus", True),
    (3, True),
    (True, True),
    (["float32"], True),
    (object(), True),
    ("", True),
]
# initializers: (value, fault for a 4-D weight?, fault for a 1-D bias?); arrays are drawn apart
INITS = [
    (None, False, False),
    ("normal", False, False),
    ("NORMAL", False, False),
    ("Uniform", False, False),
    ("zeros", False, False),
    ("ONES", False, False),
    ("truncatedNormal", False, False),
    ("xavier_uniform", False, True),
    ("HeNormal", False, True),
    ("he_uniform", False, True),
    ("constant", True, True),
    ("", True, True),
    ("identity", True, True),
    ("sparse", True, True),
    ("truncated_normal", True, True),
    ("bogus", True, True),
    (0, False, False),
    (-2.5, False, False),
    (True, False, False),
    (np.float32(0.5), False, False),
    (np.int64(3), False, False),
    (10**400, True, True),
    (1e300, True, True),
    ([1.0], True, True),
    ((1.0,), True, True),
    (object(), True, True),
    (Index(1), True, True),
    (init.Normal(0.02), False, False),
    (init.Constant(2), False, False),
    (init.XavierUniform(), False, True),
]


def init_values(shape, kind, odd):
    """``(value, fault)`` for weight_init (kind 1) or bias_init (kind 2) of a parameter of ``shape``.

    ``odd`` draws from the values refused for that parameter (not all are: for the bias, the
    fan-based names are), else from the accepted ones.
    """
    named = [(entry[0], entry[kind]) for entry in INITS]
    if shape is not None:  # else the initializer is never reached
        named += [
            (np.full(shape, 0.5, np.float32), False),
            (np.full(shape, 0.5, np.float64), False),
            (np.ones(shape, np.int32), True),
            (np.ones(shape, bool), True),
            (np.ones(shape, np.complex64), True),
            (np.ones(shape + (1,), np.float32), True),
            (np.ones((), np.float32), True),
        ]
    return st.sampled_from([entry for entry in named if entry[1] == odd or (odd and kind == 2)])


def weight_shape_of(args):
    """The weight shape when channels, group and kernel are valid, else None."""
    if not all(is_int(args[n], 1) for n in ("in_channels", "out_channels", "group")):
        return None
    if not is_ints(args["kernel_size"], 2, 1):
        return None
    if args["in_channels"] % args["group"] or args["out_channels"] % args["group"]:
        return None
    return (args["in_channels"], args["out_channels"] // args["group"]) + as_tuple(args["kernel_size"], 2)


def geometry_faults(args):
    """Faults of the geometry arguments that MindSpore finds at construction (a functional call too)."""
    faults = set()
    for name in ("kernel_size", "stride", "dilation"):
        if name in args and not is_ints(args[name], 2, 1):  # a functional call's kernel is the weight's
            faults.add(name)
    if not is_ints(args["padding"], 4, 0):
        faults.add("padding")
    if not is_ints(args["output_padding"], 2):
        faults.add("output_padding")
    if not (isinstance(args["pad_mode"], str) and args["pad_mode"] in MODES):
        faults.add("pad_mode")
    if not is_int(args["group"], 1):
        faults.add("group")
    if not faults & {"padding", "pad_mode"} and args["pad_mode"] != "pad" and any(as_tuple(args["padding"], 4)):
        faults |= {"padding", "pad_mode"}
    return faults


def construction_faults(args, weight_fault, bias_fault, dtype_fault):
    """The arguments a MindSpore constructor refuses (alone or together)."""
    faults = geometry_faults(args)
    for name in ("in_channels", "out_channels"):
        if not is_int(args[name], 1):
            faults.add(name)
    if type(args["has_bias"]) is not bool:
        faults.add("has_bias")
    if not faults & {"in_channels", "out_channels", "group"}:
        for name in ("in_channels", "out_channels"):
            if args[name] % args["group"]:
                faults |= {name, "group"}
    shape = weight_shape_of(args)
    if shape is not None and math.prod(shape) * 16 > spec_module.MEMORY_LIMIT:
        faults |= {"in_channels", "out_channels", "group", "kernel_size"}
    if dtype_fault:
        faults.add("dtype")
    if weight_fault:
        faults.add("weight_init")
    if bias_fault and args["has_bias"] is True:
        faults.add("bias_init")
    return faults


def call_faults(args, x_shape, itemsize):
    """MindSpore's call-time faults of a valid construction: output_padding range, crops, size."""
    stride, dilation = as_tuple(args["stride"], 2), as_tuple(args["dilation"], 2)
    ops = as_tuple(args["output_padding"], 2)
    if not all(0 <= op < max(s, d) for op, s, d in zip(ops, stride, dilation)):
        return {"output_padding"}
    if args["pad_mode"] != "pad" and any(ops):
        return {"output_padding", "pad_mode"}
    out_shape = expected_shape(args, x_shape)
    for window, op in zip(out_shape[2:], ops):
        if window - op < 0 or (window - op == 0 and op > 0):
            return {"padding"}
    if math.prod(out_shape) * itemsize > spec_module.MEMORY_LIMIT:
        return {"x", "stride", "dilation", "kernel_size", "padding", "output"}
    return kernel_argument_faults(args, x_shape, INT64_MAX)


INT64_MAX = 2**63 - 1  # what MindSpore's kernels (and XLA's) take
ENGINE_LARGEST = {"torch": 2**31 - 1}  # PyTorch's convolutions hold strides and dilations in 32 bits


def kernel_argument_faults(args, x_shape, largest):
    """A stride or dilation past ``largest`` that a kernel needs: a stride over more than one
    input row, a dilation between two or more taps (any other one changes nothing)."""
    faults = set()
    kernel = as_tuple(args["kernel_size"], 2)
    for stride, dilation, taps, rows in zip(
        as_tuple(args["stride"], 2), as_tuple(args["dilation"], 2), kernel, x_shape[2:]
    ):
        if rows > 1 and stride > largest:
            faults.add("stride")
        if taps > 1 and dilation > largest:
            faults.add("dilation")
    return faults


def engine_faults(name, args, x_shape):
    """What one engine refuses beyond MindSpore's rules (its kernels' integer width)."""
    return kernel_argument_faults(args, x_shape, ENGINE_LARGEST.get(name, INT64_MAX))


def expected_shape(args, x_shape):
    """The output shape by the oracle's geometry (tests/reference.py), output_padding added."""
    weight_shape = weight_shape_of(args)
    *_, (rows, cols) = reference._geometry(
        x_shape,
        weight_shape,
        as_tuple(args["stride"], 2),
        args["pad_mode"],
        args["padding"],
        as_tuple(args["dilation"], 2),
    )
    op_h, op_w = as_tuple(args["output_padding"], 2)
    return (x_shape[0], args["out_channels"], rows + op_h, cols + op_w)


def check_refusal(exc, faults, where):
    """A clean refusal: TypeError or ValueError whose message names an argument at fault."""
    assert isinstance(exc, (TypeError, ValueError)), (
        f"{where}: {type(exc).__name__} is neither a TypeError nor a ValueError: {exc}"
    )
    message = str(exc)
    assert any(name in message for name in faults), f"{where}: the message names none of {sorted(faults)}: {message}"


def outcome(exc):
    return "ok" if exc is None else type(exc).__name__


# ---------------------------------------------------------------------------- constructors

ARG_NAMES = (
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
)


@st.composite
def constructor_arguments(draw):
    """``(kwargs, faults)``: the 13 constructor arguments and the model's faults."""
    odd = odd_names(draw, ARG_NAMES + ("weight_init", "bias_init", "dtype"))
    args = {name: draw(arg_values(name, name in odd), label=name) for name in ARG_NAMES}
    if not odd & {"in_channels", "out_channels", "group"} and draw(st.integers(0, 3)):
        # mostly channel counts that the group divides (else nearly every example is refused)
        args["in_channels"] = args["group"] * draw(st.integers(1, 3), label="in_channels // group")
        args["out_channels"] = args["group"] * draw(st.integers(1, 3), label="out_channels // group")
    shape = weight_shape_of(args)
    if shape is not None and math.prod(shape) > 10**6:
        shape = None  # refused for its size before any initializer runs: no array to draw
    weight_init, weight_fault = draw(init_values(shape, 1, "weight_init" in odd), label="weight_init")
    bias_shape = None if shape is None else (args["out_channels"],)
    bias_init, bias_fault = draw(init_values(bias_shape, 2, "bias_init" in odd), label="bias_init")
    dtype, dtype_fault = draw(st.sampled_from([d for d in DTYPES if d[1] == ("dtype" in odd)]), label="dtype")
    kwargs = dict(args, weight_init=weight_init, bias_init=bias_init, dtype=dtype)
    return kwargs, construction_faults(args, weight_fault, bias_fault, dtype_fault)


def construct_and_call(engine, kwargs, faults):
    """Construct (and, when that works, call on a 1x3x3 image); returns (construction, call) outcomes.

    float64 parameters are valid (as in MindSpore): Flax holds them with x64 on, so every engine
    runs in its float64 context (what Flax says with x64 off is tested in test_flax.py).
    """
    with engine.float64():
        return _construct_and_call(engine, kwargs, faults)


def _construct_and_call(engine, kwargs, faults):
    where = f"{engine.name} constructor"
    with time_limit(SECONDS):
        try:
            net = engine.construct(**kwargs)
        except Exception as exc:  # noqa: BLE001 - which exception is what is tested
            assert faults, f"{where} refused valid arguments: {type(exc).__name__}: {exc}"
            check_refusal(exc, faults, where)
            return type(exc).__name__, None
    assert not faults, f"{where} accepted arguments with faults in {sorted(faults)}"
    weight = engine.weight_of(net)
    bias = engine.bias_of(net)
    assert weight.shape == weight_shape_of(kwargs), f"{where}: weight of shape {weight.shape}"
    assert (bias is not None) == kwargs["has_bias"], f"{where}: bias {bias} with has_bias={kwargs['has_bias']}"
    x_shape = (1, kwargs["in_channels"], 3, 3)
    expected = call_faults(kwargs, x_shape, max(weight.dtype.itemsize, 4))
    if bias is not None and bias.dtype != weight.dtype:  # an array initializer keeps its own dtype
        expected = expected | {"bias"}
    if not expected:
        expected = engine_faults(engine.name, kwargs, x_shape)
    x = np.ones(x_shape, weight.dtype)
    where = f"{engine.name} call of a layer built from {kwargs}"
    with time_limit(SECONDS):
        try:
            y = engine.to_numpy(engine.call(net, x))
        except Exception as exc:  # noqa: BLE001
            assert expected, f"{where} refused a valid input: {type(exc).__name__}: {exc}"
            check_refusal(exc, expected, where)
            return "ok", type(exc).__name__
    assert not expected, f"{where} accepted a call with faults in {sorted(expected)}"
    assert y.shape == expected_shape(kwargs, x_shape), f"{where}: output shape {y.shape}"
    assert y.dtype == weight.dtype, f"{where}: output dtype {y.dtype}, parameters {weight.dtype}"
    return "ok", "ok"


def test_a_constructor_accepts_exactly_the_valid_arguments(layer_engine):
    engine = layer_engine

    @settings(max_examples=max_examples([engine.name]))
    @given(case=constructor_arguments())
    @counted
    def check(case):
        kwargs, faults = case
        note(f"faults: {sorted(faults)}")
        construct_and_call(engine, kwargs, faults)

    check()


def test_the_three_constructors_agree():
    engines = available(["numpy", "torch", "flax"])
    if len(engines) < 2:
        pytest.skip("fewer than two layer engines are installed")

    @settings(max_examples=max_examples([e.name for e in engines]))
    @given(case=constructor_arguments())
    @counted
    def check(case):
        kwargs, faults = case
        outcomes = {engine.name: construct_and_call(engine, kwargs, faults) for engine in engines}
        x_shape = None if faults else (1, kwargs["in_channels"], 3, 3)
        assert len(set(agreeing(outcomes, kwargs, x_shape).values())) <= 1, (
            f"the constructors disagree on {kwargs}: {outcomes}"
        )

    check()


def agreeing(outcomes, args, x_shape):
    """The outcomes that must agree: all but those of an engine refusing a valid call for a limit
    of its own (``x_shape`` is None when the arguments have faults, and then none is left out)."""
    if x_shape is None:
        return outcomes
    return {name: result for name, result in outcomes.items() if not engine_faults(name, args, x_shape)}


# ---------------------------------------------------------------------------- functional forms


def functional(name):
    """``call(x, weight, bias, **geometry) -> ndarray`` of one functional form (skips when absent)."""
    if name == "numpy":

        def call(x, weight, bias, **kwargs):
            return ct.conv2d_transpose(x, weight, bias, **kwargs)

        return call
    if name == "torch":
        module = pytest.importorskip("convtranspose.torch")

        def call(x, weight, bias, **kwargs):
            wrap = torch.from_numpy
            y = module.conv2d_transpose(wrap(x), wrap(weight), None if bias is None else wrap(bias), **kwargs)
            return y.numpy()

        return call
    module = pytest.importorskip("convtranspose.jax")

    def call(x, weight, bias, **kwargs):
        return np.asarray(
            module.conv2d_transpose(
                jnp.asarray(x), jnp.asarray(weight), None if bias is None else jnp.asarray(bias), **kwargs
            )
        )

    return call


GEOMETRY = ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")


@st.composite
def functional_arguments(draw):
    """``(x, weight, bias, kwargs, faults, call_faults)`` for a functional call on valid arrays."""
    odd = odd_names(draw, GEOMETRY)
    kwargs = {name: draw(arg_values(name, name in odd), label=name) for name in GEOMETRY}
    group = kwargs["group"] if is_int(kwargs["group"], 1) and kwargs["group"] <= 3 else draw(st.integers(1, 3))
    cig, cog = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    weight = (
        np.random.default_rng(draw(st.integers(0, 99)))
        .standard_normal((group * cig + draw(st.sampled_from([0, 0, 0, 1])), cog) + kernel)
        .astype(np.float32)
    )
    has_bias = draw(st.booleans())
    bias = np.ones(group * cog if draw(st.integers(0, 9)) else group * cog + 1, np.float32) if has_bias else None
    faults = geometry_faults(kwargs)
    if "group" not in faults and weight.shape[0] % kwargs["group"]:
        faults |= {"group", "weight"}
    x = np.ones((1, weight.shape[0], 3, 3), np.float32)
    args = dict(
        kwargs,
        in_channels=weight.shape[0],
        out_channels=cog * kwargs["group"] if is_int(kwargs["group"], 1) else cog,
        kernel_size=kernel,
        has_bias=has_bias,
    )
    later = set()
    if not faults:
        later = call_faults(args, x.shape, 4)
        if bias is not None and bias.shape[0] != args["out_channels"]:
            later = later | {"bias"}
    return x, weight, bias, kwargs, faults | later, args


def functional_outcome(name, call, x, weight, bias, kwargs, faults, args):
    where = f"{name} conv2d_transpose(stride={kwargs['stride']!r}, ...)"
    if not faults:
        faults = engine_faults(name, args, x.shape)
    with time_limit(SECONDS):
        try:
            y = call(x, weight, bias, **kwargs)
        except Exception as exc:  # noqa: BLE001
            assert faults, f"{where} refused valid arguments: {type(exc).__name__}: {exc}"
            check_refusal(exc, faults, where)
            return type(exc).__name__
    assert not faults, f"{where} accepted arguments with faults in {sorted(faults)}"
    assert y.shape == expected_shape(args, x.shape), f"{where}: output shape {y.shape}"
    assert y.dtype == np.float32
    return "ok"


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_a_functional_form_accepts_exactly_the_valid_arguments(name):
    call = functional(name)

    @settings(max_examples=max_examples([name]))
    @given(case=functional_arguments())
    @counted
    def check(case):
        x, weight, bias, kwargs, faults, args = case
        note(f"faults: {sorted(faults)}")
        functional_outcome(name, call, x, weight, bias, kwargs, faults, args)

    check()


def test_the_three_functional_forms_agree():
    calls = {}
    for name in ("numpy", "torch", "jax"):
        try:
            calls[name] = functional(name)
        except pytest.skip.Exception:
            pass
    if len(calls) < 2:
        pytest.skip("fewer than two functional forms are installed")

    @settings(max_examples=max_examples(list(calls)))
    @given(case=functional_arguments())
    @counted
    def check(case):
        outcomes = {name: functional_outcome(name, call, *case) for name, call in calls.items()}
        x, *_, faults, args = case
        assert len(set(agreeing(outcomes, args, None if faults else x.shape).values())) <= 1, (
            f"the functional forms disagree on {case[3]}: {outcomes}"
        )

    check()


# ---------------------------------------------------------------------------- found by fuzzing


def test_a_complex_numpy_scalar_initializer_is_refused():
    """It was cast to float, dropping its imaginary part (a Python complex was refused)."""
    with pytest.raises((TypeError, ValueError), match="weight_init"):
        ct.Conv2dTranspose(1, 1, 1, weight_init=np.complex64(1 + 2j))


def test_an_overflowing_long_double_initializer_is_refused():
    """It became inf, where the int 10**400 is refused as not finite."""
    with pytest.raises(ValueError, match="weight_init"):
        ct.Conv2dTranspose(1, 1, 1, weight_init=np.longdouble("1e4000"))
