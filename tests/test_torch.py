"""The PyTorch module and function: oracle parity, autograd, dtypes, parameters, conventions, errors.

Golden parity (float32 and float16) and errors.json run for torch through the ``engine`` fixture
(tests/test_golden_parity.py, tests/test_errors.py); compile, export and ONNX are in
test_torch_export.py, DistributedDataParallel in test_torch_ddp.py.
"""

import copy
import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import convtranspose as ct  # noqa: E402
from convtranspose import ckpt  # noqa: E402
from convtranspose.torch import Conv2dTranspose, conv2d_transpose  # noqa: E402

import reference  # noqa: E402
from conftest import GOLDEN, assert_close, golden_path, load_golden  # noqa: E402

GEOMETRY = ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")

# Each config reaches another branch of the engine's crop (see _engines/torch.py): the kernel
# crops alone, a slice after it at the start or at the end, rows past the full result, empty
# windows and empty inputs.
CONFIGS = {
    "pad_sym": dict(in_channels=4, out_channels=6, kernel_size=4, stride=2, pad_mode="pad", padding=1),
    "pad_top_heavy": dict(
        in_channels=3,
        out_channels=4,
        kernel_size=5,
        stride=2,
        pad_mode="pad",
        padding=(3, 0, 0, 2),
        output_padding=(1, 0),
    ),
    "same_odd": dict(in_channels=4, out_channels=4, kernel_size=(3, 4), stride=2, group=2),
    "same_short_kernel": dict(in_channels=2, out_channels=3, kernel_size=2, stride=4),
    "valid_short_kernel": dict(in_channels=2, out_channels=3, kernel_size=(1, 3), stride=(3, 4), pad_mode="valid"),
    "valid_dilated": dict(
        in_channels=3, out_channels=6, kernel_size=3, stride=2, dilation=(2, 3), pad_mode="valid", group=3
    ),
    "pad_dilation_over_stride": dict(
        in_channels=2,
        out_channels=4,
        kernel_size=3,
        stride=1,
        dilation=3,
        pad_mode="pad",
        padding=(2, 5, 0, 1),
        output_padding=(2, 1),
    ),
    "depthwise": dict(
        in_channels=4,
        out_channels=4,
        kernel_size=3,
        stride=2,
        pad_mode="pad",
        padding=(0, 1, 1, 0),
        output_padding=1,
        group=4,
    ),
}


def _geometry(cfg):
    return {key: cfg[key] for key in GEOMETRY if key in cfg}


def _arrays(cfg, x_shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    cin, cout, group = cfg["in_channels"], cfg["out_channels"], cfg.get("group", 1)
    k = cfg["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((cin, cout // group, kh, kw)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b


def _grads(fn, *tensors, grad_out=None):
    """Output and gradients of ``sum(fn(*tensors) * grad_out)`` as NumPy arrays."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    grad_out = torch.ones_like(y) if grad_out is None else grad_out
    grads = torch.autograd.grad(y, leaves, grad_out)
    return [y.detach().cpu().numpy()] + [g.cpu().numpy() for g in grads]


# ---------------------------------------------------------------------------- the computation


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_the_float64_oracle_forward_and_backward(name):
    cfg = CONFIGS[name]
    x, w, b = _arrays(cfg, (2, cfg["in_channels"], 5, 4))
    kwargs = _geometry(cfg)
    y_ref = reference.forward(x, w, b, **kwargs)
    g = np.random.default_rng(1).standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = reference.backward(x, w, g, **kwargs)
    y, dx, dw, db = _grads(
        lambda x, w, b: conv2d_transpose(x, w, b, **kwargs),
        *map(torch.from_numpy, (x, w, b)),
        grad_out=torch.from_numpy(g),
    )
    for label, got, ref in (("y", y, y_ref), ("dx", dx, dx_ref), ("dw", dw, dw_ref), ("db", db, db_ref)):
        assert_close(got, ref, 1e-10, f"{name} {label}")


def _gradcheck(name, fast_mode):
    cfg = CONFIGS[name]
    x, w, b = (torch.from_numpy(a).requires_grad_(True) for a in _arrays(cfg, (1, cfg["in_channels"], 3, 2)))
    kwargs = _geometry(cfg)

    def fn(x, w, b):
        return conv2d_transpose(x, w, b, **kwargs)

    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=fast_mode)
    assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=fast_mode)


@pytest.mark.parametrize("name", ["pad_top_heavy", "same_odd", "valid_short_kernel", "pad_dilation_over_stride"])
def test_gradcheck_and_gradgradcheck_in_float64(name):
    _gradcheck(name, fast_mode=True)  # random projections of the Jacobians; the slow test checks them whole


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_full_gradcheck_and_gradgradcheck_in_float64(name):
    _gradcheck(name, fast_mode=False)


def test_output_padding_rows_are_exact_zeros_with_no_gradient():
    cfg = CONFIGS["pad_dilation_over_stride"]
    tensors = tuple(map(torch.from_numpy, _arrays(cfg, (2, 2, 4, 4), dtype=np.float32)))
    y, dx, dw, db = _grads(lambda x, w, b: conv2d_transpose(x, w, b, **_geometry(cfg)), *tensors)
    assert np.all(y[:, :, -2:, :] == 0) and np.all(y[:, :, :, -1:] == 0)
    window = y.shape[2] - 2, y.shape[3] - 1
    assert db.tolist() == [window[0] * window[1] * 2] * 4  # ones over the window only
    loud = torch.ones(y.shape)
    loud[:, :, -2:, :] = loud[:, :, :, -1:] = 1000.0  # gradients on the appended rows change nothing
    _, dx2, dw2, db2 = _grads(lambda x, w, b: conv2d_transpose(x, w, b, **_geometry(cfg)), *tensors, grad_out=loud)
    for a, b in ((dx, dx2), (dw, dw2), (db, db2)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "x_shape,pad_mode,expected_hw",
    [
        ((0, 2, 4, 4), "valid", (9, 9)),  # empty batch
        ((1, 2, 0, 3), "valid", (1, 7)),  # no input rows: the rows only the bias reaches
        ((1, 2, 3, 0), "same", (6, 0)),
    ],
)
def test_empty_inputs_give_the_bias_only_rows(x_shape, pad_mode, expected_hw):
    net = Conv2dTranspose(2, 3, 3, stride=2, pad_mode=pad_mode, has_bias=True, bias_init="ones")
    x = torch.zeros(x_shape, requires_grad=True)
    y = net(x)
    assert y.shape == (x_shape[0], 3) + expected_hw
    assert torch.all(y == 1)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert net.weight.grad is not None and torch.all(net.weight.grad == 0)
    assert net.bias.grad.tolist() == [x_shape[0] * expected_hw[0] * expected_hw[1]] * 3


def test_a_pad_crop_of_the_whole_result_gives_an_empty_output():
    net = Conv2dTranspose(2, 3, 3, stride=1, pad_mode="pad", padding=(2, 3, 0, 0))  # 5 rows cropped of 5
    x = torch.ones(1, 2, 3, 3, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 3, 0, 5)
    y.sum().backward()
    assert torch.all(x.grad == 0)


def test_module_matches_the_numpy_layer_with_the_same_seed():
    cfg = dict(CONFIGS["pad_top_heavy"], has_bias=True)
    ct.set_seed(7)
    ours = Conv2dTranspose(**cfg)
    ct.set_seed(7)
    numpy_net = ct.Conv2dTranspose(**cfg)
    np.testing.assert_array_equal(ours.weight.detach().numpy(), numpy_net.weight.data)
    np.testing.assert_array_equal(ours.bias.detach().numpy(), numpy_net.bias.data)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 5)).astype(np.float32)
    y = ours(torch.from_numpy(x))
    assert_close(y.detach().numpy(), numpy_net(x), 1e-5, "module vs NumPy layer")
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    y.backward(torch.from_numpy(g))
    numpy_net.backward(g)
    assert_close(ours.weight.grad.numpy(), numpy_net.weight.grad, 1e-5, "dweight")
    assert_close(ours.bias.grad.numpy(), numpy_net.bias.grad, 1e-5, "dbias")


# ---------------------------------------------------------------------------- dtypes


def test_float16_is_bit_identical_to_the_numpy_engines_mindspore_model():
    """Both engines implement fp16(fp16(conv in fp32) + bias); outputs and gradients agree bit for
    bit on every float16 golden case (the recorded MindSpore values are checked by the fixture)."""
    configs, data = load_golden("golden_fp16.npz")
    for index, cfg in enumerate(configs):
        kwargs = _geometry(cfg)
        x, w, g = (data[f"{index}_{key}"] for key in "xwg")
        b = data[f"{index}_b"] if cfg["has_bias"] else None
        tensors = [torch.from_numpy(a) for a in (x, w) + ((b,) if b is not None else ())]
        got = _grads(lambda *t, kw=kwargs: conv2d_transpose(*t, **kw), *tensors, grad_out=torch.from_numpy(g))
        ref_y = ct.conv2d_transpose(x, w, b, **kwargs)
        ref_dx, ref_dw, ref_db = ct.conv2d_transpose_backward(x, w, g, **kwargs)
        refs = [ref_y, ref_dx, ref_dw] + ([ref_db] if b is not None else [])
        for label, a, r in zip(("y", "dx", "dw", "db"), got, refs):
            assert a.dtype == np.float16, f"case {index} {label}"
            # gradients: float32 sums in another order may land on the other side of a rounding
            # boundary, so they are compared to within one float16 step
            tol = 0 if label == "y" else 1e-3
            assert_close(a, r, tol, f"fp16 case {index} {label}")


def _tensor_grads(fn, *tensors, grad_out):
    """Output and gradients of ``sum(fn(*tensors) * grad_out)`` as tensors (any dtype)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    y = fn(*leaves)
    return [y.detach()] + list(torch.autograd.grad(y, leaves, grad_out))


# Sums long enough that PyTorch's own bfloat16 kernel (float32 sums in another order) differs
# from the float32 result rounded: computing directly in bfloat16 changes bits of y here.
_BFLOAT16_WIDE = dict(in_channels=16, out_channels=16, kernel_size=3, stride=2, pad_mode="pad", padding=1)


@pytest.mark.parametrize(
    "name, batch, size",
    [("pad_top_heavy", 2, 7), ("same_odd", 2, 7), ("depthwise", 2, 7), ("wide", 16, 16)],
)
def test_bfloat16_is_bit_identical_to_float32_then_rounded(name, batch, size):
    """bfloat16 computes as float16 does: y = bf16(bf16(conv in float32) + bias), and each gradient
    is the float32 gradient rounded once. A mutation audit computed directly in bfloat16 (changing
    bits of y, dx and dweight) and passed the old test, which allowed 2**-7 of error."""
    cfg = _BFLOAT16_WIDE if name == "wide" else CONFIGS[name]
    kwargs = _geometry(cfg)

    def conv(*tensors):
        return conv2d_transpose(*tensors, **kwargs)

    shape = (batch, cfg["in_channels"], size, size - 1)
    x, w, b = (torch.from_numpy(a).to(torch.bfloat16) for a in _arrays(cfg, shape))
    y_shape = conv(x.float(), w.float(), b.float()).shape
    g = torch.randn(y_shape, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    got = _tensor_grads(conv, x, w, b, grad_out=g)
    # The model, from the float32 path: the convolution rounded, the bias added in float32 and
    # rounded (output_padding rows stay exact zeros); the gradients of the float32 function at
    # the float32 upstream gradient, each rounded once.
    y_conv = conv(x.float(), w.float(), None).to(torch.bfloat16)
    bias_rows = conv(torch.zeros_like(x.float()), torch.zeros_like(w.float()), b.float())  # the bias where it lands
    y_model = (y_conv.float() + bias_rows).to(torch.bfloat16)
    grads = _tensor_grads(conv, x.float(), w.float(), b.float(), grad_out=g.float())[1:]
    model = [y_model] + [grad.to(torch.bfloat16) for grad in grads]
    for label, a, r in zip(("y", "dx", "dw", "db"), got, model):
        assert a.dtype == torch.bfloat16, f"{name} {label}"
        assert torch.equal(a, r), f"{name} {label}: {int((a != r).sum())} of {a.numel()} values differ"


@pytest.mark.parametrize(
    "dtype,expected",
    [
        (torch.float16, torch.float16),
        (torch.float64, torch.float64),
        (torch.bfloat16, torch.bfloat16),
        (np.float16, torch.float16),
        ("float64", torch.float64),
        ("mindspore.float16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("mindspore.BFloat16", torch.bfloat16),
    ],
)
def test_dtype_takes_torch_numpy_and_mindspore_names(dtype, expected):
    net = Conv2dTranspose(2, 4, 3, has_bias=True, dtype=dtype)
    assert net.weight.dtype == expected and net.bias.dtype == expected
    assert net(torch.ones(1, 2, 3, 3, dtype=expected)).dtype == expected


@pytest.mark.parametrize("dtype,error", [(torch.int32, TypeError), (torch.complex64, TypeError), ("int8", TypeError)])
def test_bad_dtypes_are_refused_at_construction(dtype, error):
    with pytest.raises(error, match="dtype"):
        Conv2dTranspose(2, 4, 3, dtype=dtype)


def test_an_array_or_tensor_initializer_keeps_its_dtype():
    weight = np.full((2, 4, 3, 3), 0.5, np.float64)
    net = Conv2dTranspose(2, 4, 3, weight_init=weight, has_bias=True, bias_init=torch.ones(4, dtype=torch.float16))
    assert net.weight.dtype == torch.float64 and net.bias.dtype == torch.float16
    assert torch.all(net.weight == 0.5) and torch.all(net.bias == 1)
    with pytest.raises(TypeError, match="bias"):  # MindSpore: mixed parameter dtypes fail at the call
        net(torch.ones(1, 2, 3, 3, dtype=torch.float64))


def test_a_bfloat16_tensor_initializer_keeps_bfloat16():
    """Found in review: it became float32 (the other tensor dtypes were kept)."""
    weight = torch.randn(2, 4, 3, 3).to(torch.bfloat16)
    net = Conv2dTranspose(2, 4, 3, weight_init=weight, has_bias=True, dtype=torch.bfloat16)
    assert net.weight.dtype == torch.bfloat16 and torch.equal(net.weight.detach(), weight)
    assert net(torch.ones(1, 2, 3, 3, dtype=torch.bfloat16)).dtype == torch.bfloat16
    with pytest.raises(TypeError, match=r"dtype must be float16, bfloat16, float32 or float64, got dtype='int8'"):
        Conv2dTranspose(2, 4, 3, dtype="int8")


def test_vmap_over_the_bias_alone():
    """Found in review: the bias was added in place, which torch.func.vmap cannot batch into y."""
    x, w = torch.randn(2, 3, 4, 5), torch.randn(3, 2, 3, 3)
    biases = torch.randn(4, 2)
    batched = torch.func.vmap(lambda b: conv2d_transpose(x, w, b, stride=2), in_dims=0)(biases)
    for index, bias in enumerate(biases):
        torch.testing.assert_close(batched[index], conv2d_transpose(x, w, bias, stride=2))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=(1, 2**31), pad_mode="pad", padding=(0, 0, 2**31, 2**31)),
        dict(dilation=(2**31, 1), pad_mode="pad", padding=(2**31, 0, 0, 0)),
        dict(stride=(1, 2**30), pad_mode="pad", padding=(0, 0, 2**31 - 1, 0)),
    ],
    ids=["stride 2**31", "dilation 2**31", "an asymmetric crop of 2**31 columns"],
)
def test_what_pytorchs_kernels_cannot_take_is_computed_tap_by_tap(kwargs):
    """Found in review: a 32-bit stride wrapped around inside PyTorch's kernel (a RuntimeError), and
    an asymmetric crop of a huge uncropped result ran out of memory; both were then refused. The
    engine computes them now without PyTorch's kernel, as the NumPy engine does."""
    x, w = torch.randn(1, 2, 2, 3, dtype=torch.float64), torch.randn(2, 3, 2, 2, dtype=torch.float64)
    expected = ct.conv2d_transpose(x.numpy(), w.numpy(), **kwargs)  # valid, and small
    assert expected.size <= 36
    assert_close(conv2d_transpose(x, w, **kwargs).numpy(), expected, 1e-12, str(kwargs))


# ---------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=2, out_channels=4, kernel_size=True),
        dict(in_channels=2, out_channels=4, kernel_size=(3, 3, 3)),
        dict(in_channels=2, out_channels=4, kernel_size=3, pad_mode="SAME"),
        dict(in_channels=2, out_channels=4, kernel_size=3, padding=1),
        dict(in_channels=3, out_channels=4, kernel_size=3, group=2),
        dict(in_channels=2, out_channels=4, kernel_size=3, weight_init="constant"),
        dict(in_channels=2, out_channels=4, kernel_size=3, has_bias=True, bias_init="xavier_uniform"),
        dict(in_channels=2, out_channels=4, kernel_size=3, weight_init=np.ones((4, 2, 3, 3), np.float32)),
        dict(in_channels=2, out_channels=4, kernel_size=3, weight_init=torch.ones(4, 2, 3, 3)),
    ],
)
def test_construction_errors_are_the_numpy_layers(kwargs):
    numpy_kwargs = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    with pytest.raises((TypeError, ValueError)) as expected:
        ct.Conv2dTranspose(**numpy_kwargs)
    with pytest.raises(type(expected.value)) as got:
        Conv2dTranspose(**kwargs)
    assert str(got.value) == str(expected.value)


def test_reset_parameters_redraws_reproducibly_and_restores_arrays():
    ct.set_seed(3)
    net = Conv2dTranspose(4, 6, 3, has_bias=True, weight_init="normal")
    first = [p.detach().clone() for p in net.parameters()]
    net.reset_parameters()
    assert not torch.equal(net.weight, first[0])
    ct.set_seed(3)
    net.reset_parameters()
    assert all(torch.equal(p, f) for p, f in zip(net.parameters(), first))
    assert float(net.weight.detach().std()) == pytest.approx(0.01, rel=0.2)  # Normal(sigma=0.01), MindSpore's default

    fixed = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    net = Conv2dTranspose(2, 3, 2, weight_init=fixed).to(torch.float64)
    with torch.no_grad():
        net.weight.zero_()
    net.reset_parameters()
    assert net.weight.dtype == torch.float64  # the current dtype is kept
    np.testing.assert_array_equal(net.weight.detach().numpy(), fixed)


def test_extra_repr_shows_what_differs_from_the_defaults():
    assert repr(Conv2dTranspose(2, 4, 3)) == "Conv2dTranspose(2, 4, kernel_size=(3, 3))"
    net = Conv2dTranspose(
        2,
        4,
        (3, 2),
        stride=2,
        pad_mode="pad",
        padding=(1, 0, 2, 1),
        output_padding=1,
        dilation=(1, 2),
        group=2,
        has_bias=True,
        weight_init="normal",
        bias_init=np.zeros(4, np.float32),
    )
    assert net.extra_repr() == (
        "2, 4, kernel_size=(3, 2), stride=(2, 2), pad_mode='pad', padding=(1, 0, 2, 1), output_padding=(1, 1), "
        "dilation=(1, 2), group=2, has_bias=True, weight_init='normal', "
        "bias_init=array(shape=(4,), dtype=float32)"
    )


def test_state_dict_keys_device_and_to():
    net = Conv2dTranspose(2, 4, 3, has_bias=True, device="cpu")
    assert list(net.state_dict()) == ["weight", "bias"]
    assert list(Conv2dTranspose(2, 4, 3).state_dict()) == ["weight"]
    assert Conv2dTranspose(2, 4, 3).bias is None
    meta = Conv2dTranspose(2, 4, 3, has_bias=True, device="meta")
    assert meta.weight.device.type == "meta" and meta.bias.device.type == "meta"
    net = net.to(torch.float64)
    assert net(torch.ones(1, 2, 3, 3, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(TypeError, match="x must have the parameters' dtype torch.float64"):
        net(torch.ones(1, 2, 3, 3))


def test_deepcopy_and_pickle_keep_the_layer():
    net = Conv2dTranspose(2, 4, 3, stride=2, pad_mode="pad", padding=(1, 0, 0, 1), has_bias=True)
    x = torch.randn(1, 2, 4, 4)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert repr(other) == repr(net)
        assert torch.equal(other(x), net(x))


# ---------------------------------------------------------------------------- call-time errors


@pytest.mark.parametrize(
    "x,error,match",
    [
        (np.ones((1, 2, 3, 3), np.float32), TypeError, r"x must be a torch.Tensor.*torch.from_numpy"),
        ([[[[1.0]]]], TypeError, "x must be a torch.Tensor"),
        (torch.ones(2, 3, 3), ValueError, r"x must be 4-D"),
        (torch.ones(1, 3, 3, 3), ValueError, r"in_channels=2"),
        (torch.ones(1, 2, 3, 3, dtype=torch.float64), TypeError, r"x must have the parameters' dtype"),
        (torch.ones(1, 2, 3, 3, dtype=torch.int64), TypeError, r"x must have the parameters' dtype"),
        (torch.ones(1, 2, 3, 3, device="meta"), ValueError, r"x must be on the parameters' device cpu"),
    ],
)
def test_call_errors_name_the_argument(x, error, match):
    net = Conv2dTranspose(2, 4, 3, has_bias=True)
    with pytest.raises(error, match=match):
        net(x)


def _quantized(tensor):
    return torch.quantize_per_tensor(tensor, 0.1, 0, torch.quint8)


@pytest.mark.parametrize(
    "argument, convert, match",
    [
        (
            "x",
            lambda t: t.to_sparse(),
            r"x must be a dense \(strided\) tensor, got x with layout torch.sparse_coo.*x.to_dense",
        ),
        ("x", lambda t: t.to_mkldnn(), r"x must be a dense \(strided\) tensor, got x with layout torch._mkldnn"),
        ("weight", lambda t: t.to_sparse(), r"weight must be a dense \(strided\) tensor.*weight.to_dense"),
        ("bias", lambda t: t.to_sparse(), r"bias must be a dense \(strided\) tensor.*bias.to_dense"),
        ("x", _quantized, r"x must be a float tensor, got a quantized x of dtype torch.quint8.*x.dequantize\(\)"),
        ("weight", _quantized, r"quantized weight.*weight.dequantize\(\)"),
    ],
)
def test_sparse_and_quantized_tensors_are_refused_naming_the_argument(argument, convert, match):
    """Found by the adversarial round: a sparse tensor crashed inside Tensor.contiguous(); a quantized x
    was told to use x.to(torch.float32), which fails for a quantized tensor."""
    tensors = dict(x=torch.ones(1, 2, 3, 3), weight=torch.ones(2, 4, 3, 3), bias=torch.ones(4))
    tensors[argument] = convert(tensors[argument])
    with pytest.raises(TypeError, match=match):
        conv2d_transpose(tensors["x"], tensors["weight"], tensors["bias"])


def test_call_errors_from_the_shared_core():
    with pytest.raises(ValueError, match="output_padding"):  # range: checked at the call, as MindSpore
        Conv2dTranspose(2, 4, 3, stride=2, pad_mode="pad", output_padding=2)(torch.ones(1, 2, 3, 3))
    with pytest.raises(ValueError, match="pad_mode='pad'"):
        Conv2dTranspose(2, 4, 3, stride=2, output_padding=1)(torch.ones(1, 2, 3, 3))
    with pytest.raises(ValueError, match="padding=.* is too large"):
        Conv2dTranspose(2, 4, 3, pad_mode="pad", padding=(4, 4, 0, 0))(torch.ones(1, 2, 3, 3))
    net = Conv2dTranspose(2, 4, 3, has_bias=True)
    net.bias = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="bias must have the weight's dtype"):
        net(torch.ones(1, 2, 3, 3))
    net.bias = torch.nn.Parameter(torch.ones(5))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        net(torch.ones(1, 2, 3, 3))


def test_functional_errors_name_the_argument():
    x, w = torch.ones(1, 2, 3, 3), torch.ones(2, 4, 3, 3)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        conv2d_transpose(x, w.numpy())
    with pytest.raises(TypeError, match="bias must be a torch.Tensor"):
        conv2d_transpose(x, w, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="stride"):
        conv2d_transpose(x, w, stride=2.0)
    with pytest.raises(ValueError, match="pad_mode"):
        conv2d_transpose(x, w, pad_mode="full")
    with pytest.raises(ValueError, match="in_channels=2"):
        conv2d_transpose(torch.ones(1, 3, 3, 3), w)


# ---------------------------------------------------------------------------- from PyTorch


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(stride=2, padding=1, output_padding=1),
        dict(stride=(2, 3), padding=(2, 1), output_padding=(0, 1), dilation=(1, 2), groups=2, bias=False),
        dict(stride=1, padding=0),
        dict(stride=3, padding=(2, 2), output_padding=2, dilation=2),
    ],
)
def test_from_torch_computes_what_conv_transpose2d_computes(kwargs):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(4, 6, (3, 4), **kwargs).double()
    net = Conv2dTranspose.from_torch(conv)
    assert net.weight.dtype == torch.float64 and net.pad_mode == "pad"
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    expected = _grads(conv, x)
    got = _grads(net, x)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), conv.parameters()))


def test_from_torch_refuses_what_mindspore_cannot_express():
    with pytest.raises(ValueError, match=r"output_padding=\(1, 1\) and padding=\(0, 0\).*height"):
        Conv2dTranspose.from_torch(torch.nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=1))
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        Conv2dTranspose.from_torch(torch.nn.Conv2d(2, 2, 3))
    with pytest.raises(ValueError, match="lazy"):
        Conv2dTranspose.from_torch(torch.nn.LazyConvTranspose2d(2, 3))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_from_torch_refuses_a_string_padding_naming_it(padding):
    """Found by the adversarial round: PyTorch stores padding='same' as ('s', 'a', 'm', 'e'), and
    from_torch failed on "'>' not supported between instances of 'int' and 'str'"."""
    conv = torch.nn.ConvTranspose2d(2, 2, 3, padding=padding)
    with pytest.raises(ValueError, match=f"module has padding='{padding}'.*cannot compute"):
        Conv2dTranspose.from_torch(conv)


def test_from_torch_refuses_attributes_that_are_not_pairs_of_ints():
    conv = torch.nn.ConvTranspose2d(2, 2, 3)
    conv.stride = (2.0, 1)
    with pytest.raises(TypeError, match=r"module must have stride as a tuple of 2 ints, got stride=\(2.0, 1\)"):
        Conv2dTranspose.from_torch(conv)


@pytest.mark.parametrize("training", [True, False])
def test_from_torch_keeps_the_training_flag(training):
    """A mutation audit dropped the flag unnoticed: the copy must train (or evaluate) as the module does."""
    conv = torch.nn.ConvTranspose2d(2, 2, 3).train(training)
    assert Conv2dTranspose.from_torch(conv).training is training


# ---------------------------------------------------------------------------- checkpoints


class _Decoder(torch.nn.Module):
    """The network of tests/data/ckpt (tests/data/README.md): up1, ReLU, then blocks (two layers)."""

    def __init__(self, configs):
        super().__init__()
        self.up1 = Conv2dTranspose(**configs[0])
        self.blocks = torch.nn.Sequential(Conv2dTranspose(**configs[1]), Conv2dTranspose(**configs[2]))

    def forward(self, x):
        return self.blocks(torch.relu(self.up1(x)))


def test_a_mindspore_checkpoint_loads_with_load_state_dict_and_saves_back(tmp_path):
    path = golden_path("ckpt/decoder.ckpt")
    expected = np.load(GOLDEN / "ckpt" / "expected.npz")
    configs = [
        {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        for cfg in json.loads(str(expected["configs"]))
    ]
    net = _Decoder(configs)
    arrays = ckpt.load(path)
    params = {name: torch.from_numpy(value) for name, value in arrays.items() if name in net.state_dict()}
    assert sorted(params) == sorted(net.state_dict())  # every parameter of the network is in the file
    net.load_state_dict(params)
    y = net(torch.from_numpy(expected["x"])).detach().numpy()
    assert_close(y, expected["y"], 1e-4, "decoder output")

    # Save the module's parameters, with the file's other entries, in the file's order: the
    # bytes are MindSpore's.
    state = {name: value.detach().cpu().numpy() for name, value in net.state_dict().items()}
    entries = {name: state.get(name, value) for name, value in arrays.items()}
    out = tmp_path / "decoder.ckpt"
    ckpt.save(out, entries)
    assert out.read_bytes() == path.read_bytes()


# ---------------------------------------------------------------------------- CUDA (marked gpu)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.float64, 1e-12)])
def test_cuda_matches_the_cpu(name, dtype, tol):
    cfg = dict(CONFIGS[name], has_bias=True)
    ct.set_seed(0)
    cpu = Conv2dTranspose(**cfg, dtype=dtype)
    cuda = copy.deepcopy(cpu).to("cuda")
    assert cuda.weight.is_cuda and torch.backends.cudnn.is_available()
    x = torch.randn(3, cfg["in_channels"], 6, 5).to(dtype)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would round float32 to 10 bits
        got = _grads(lambda x, w, b: conv2d_transpose(x, w, b, **_geometry(cfg)), x.cuda(), cuda.weight, cuda.bias)
    expected = _grads(lambda x, w, b: conv2d_transpose(x, w, b, **_geometry(cfg)), x, cpu.weight, cpu.bias)
    for label, a, b in zip(("y", "dx", "dw", "db"), got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name} {label}"
        a, b = a.astype(np.float64), b.astype(np.float64)
        assert np.abs(a - b).max() <= tol * (1 + np.abs(b).max()), f"{name} {label}"


@pytest.mark.gpu
@needs_cuda
def test_cuda_module_trains_and_calls_from_the_wrong_device_fail():
    net = Conv2dTranspose(4, 6, 3, stride=2, pad_mode="pad", padding=1, output_padding=1, has_bias=True, device="cuda")
    y = net(torch.randn(2, 4, 5, 5, device="cuda"))
    y.square().mean().backward()
    assert net.weight.grad.is_cuda and net.bias.grad.is_cuda
    with pytest.raises(ValueError, match="x must be on the parameters' device cuda"):
        net(torch.randn(2, 4, 5, 5))


# ---------------------------------------------------------------------------- views of the parameters


def _parameter_views(tensor):
    """``label -> tensor`` equal to ``tensor`` (4-D or 1-D) in value but not in memory layout."""
    wide = torch.zeros(tensor.shape[:-1] + (2 * tensor.shape[-1],), dtype=tensor.dtype)
    wide[..., ::2] = tensor
    views = {"every other element": wide[..., ::2]}
    if tensor.dim() == 4:
        views["channels-last"] = tensor.contiguous(memory_format=torch.channels_last)
        views["transposed storage"] = tensor.transpose(2, 3).contiguous().transpose(2, 3)
    return views


@pytest.mark.parametrize("name", ["pad_sym", "same_odd", "valid_dilated"])
def test_weight_and_bias_views_give_bitwise_the_contiguous_result(name):
    """A mutation audit stopped making the weight contiguous: a channels-last weight then changed
    results by up to 3.8e-5, unnoticed (the views test varies x and the upstream gradient only)."""
    cfg = CONFIGS[name]
    x, w, b = (torch.from_numpy(a) for a in _arrays(cfg, (2, cfg["in_channels"], 9, 8), dtype=np.float32))
    kwargs = _geometry(cfg)
    g = torch.randn(conv2d_transpose(x, w, b, **kwargs).shape, generator=torch.Generator().manual_seed(1))

    def run(weight, bias):
        return _grads(lambda x, w, b: conv2d_transpose(x, w, b, **kwargs), x, weight, bias, grad_out=g)

    want = run(w, b)
    cases = [("weight", view, b) for view in _parameter_views(w).values()]
    cases += [("bias", w, view) for view in _parameter_views(b).values()]
    for label, weight, bias in cases:
        for index, (got, expected) in enumerate(zip(run(weight, bias), want)):
            assert np.array_equal(got, expected), f"{name}: {label} view, output {index} differs"
