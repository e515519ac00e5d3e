"""MindSpore's nn.Conv2d in PyTorch: what the Conv2dTranspose front end does, for Conv2d.

The float64 oracle, double backward, float16/bfloat16 as MindSpore rounds them, float64,
torch.compile(fullgraph=True) on new input sizes ('same' padding depends on them), torch.export,
ONNX in onnxruntime, DistributedDataParallel, ``from_torch(nn.Conv2d)``, and CUDA (marked gpu).
Golden parity and the error cases run through the ``conv2d_engine`` fixture (test_conv2d_golden.py,
test_conv2d_errors.py).
"""

import time

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from test_torch import _grads  # noqa: E402
from test_torch_ddp import BATCH, STEPS, WORLD, _free_port, _train  # noqa: E402
from test_torch_export import _assert_same, _run  # noqa: E402

import convtranspose as ct  # noqa: E402
from convtranspose.torch import Conv2d, conv2d  # noqa: E402

import reference  # noqa: E402
from conftest import assert_close  # noqa: E402

GEOMETRY = ("stride", "pad_mode", "padding", "dilation", "group")

# Each reaches another part of the engine: TensorFlow's odd 'same' split (F.pad for the extra
# row), asymmetric 'pad', taps and rows no output reads (left out), groups, depthwise, 1x1.
CONFIGS = {
    "same_stride2_odd": dict(in_channels=4, out_channels=6, kernel_size=(3, 4), stride=2, group=2),
    "same_dilated": dict(in_channels=3, out_channels=2, kernel_size=3, stride=(1, 2), dilation=(2, 1)),
    "pad_asymmetric": dict(
        in_channels=2, out_channels=4, kernel_size=(2, 3), stride=(2, 1), pad_mode="pad", padding=(3, 0, 1, 2)
    ),
    "pad_unread_taps": dict(in_channels=2, out_channels=2, kernel_size=3, dilation=4, pad_mode="pad", padding=4),
    "valid_grouped": dict(in_channels=6, out_channels=3, kernel_size=2, stride=(1, 2), pad_mode="valid", group=3),
    "depthwise_same": dict(in_channels=4, out_channels=4, kernel_size=3, stride=2, group=4),
    "pointwise": dict(in_channels=3, out_channels=5, kernel_size=1, stride=3, pad_mode="valid"),
}


def _geometry(cfg):
    return {key: cfg[key] for key in GEOMETRY if key in cfg}


def _arrays(cfg, x_shape, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    k = cfg["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((cfg["out_channels"], cfg["in_channels"] // cfg.get("group", 1), kh, kw)).astype(dtype)
    b = rng.standard_normal(cfg["out_channels"]).astype(dtype)
    return x, w, b


def _oracle(cfg, x, w, b, g):
    """float64 (y, dx, dw, db) of sum(conv2d(x, w, b) * g) from the tests' reference."""
    kwargs = _geometry(cfg)
    return (reference.conv2d_forward(x, w, b, **kwargs),) + reference.conv2d_backward(x, w, g, **kwargs)


# ---------------------------------------------------------------------------- the computation


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float64_matches_the_oracle_forward_and_backward(name):
    cfg = CONFIGS[name]
    x, w, b = _arrays(cfg, (2, cfg["in_channels"], 7, 6))
    y_shape = reference.conv2d_output_shape(
        x.shape, w.shape, **{k: v for k, v in _geometry(cfg).items() if k != "group"}
    )
    g = np.random.default_rng(1).standard_normal(y_shape)
    got = _grads(
        lambda x, w, b: conv2d(x, w, b, **_geometry(cfg)),
        *map(torch.from_numpy, (x, w, b)),
        grad_out=torch.from_numpy(g),
    )
    for label, a, ref in zip(("y", "dx", "dw", "db"), got, _oracle(cfg, x, w, b, g)):
        assert a.dtype == np.float64
        assert_close(a, ref, 1e-10, f"{name} {label}")


@pytest.mark.parametrize("name", ["same_stride2_odd", "pad_asymmetric", "pad_unread_taps"])
def test_gradcheck_and_gradgradcheck_in_float64(name):
    cfg = CONFIGS[name]
    x, w, b = (torch.from_numpy(a).requires_grad_(True) for a in _arrays(cfg, (1, cfg["in_channels"], 5, 4)))

    def fn(x, w, b):
        return conv2d(x, w, b, **_geometry(cfg))

    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=True)


# ---------------------------------------------------------------------------- float16, bfloat16: MindSpore's rounding


def _rounded_model(cfg, x, w, b, g, dtype):
    """MindSpore's reduced-precision model from the float64 oracle, as ``dtype`` arrays.

    y = round(round(conv) + bias) (the sum of two such values is computed in float32 and
    rounded once); each gradient is the exact one rounded once.
    """
    y, dx, dw, db = _oracle(cfg, *(a.astype(np.float64) for a in (x, w, b, g)))
    conv = (y - b.astype(np.float64)[:, None, None]).astype(np.float32).astype(dtype)
    y = (conv.astype(np.float32) + b.astype(np.float32)[:, None, None]).astype(dtype)
    return [y] + [a.astype(np.float32).astype(dtype) for a in (dx, dw, db)]


def _rounding_pairs(cfg, dtype, torch_dtype):
    x, w, b = _arrays(cfg, (2, cfg["in_channels"], 9, 8), dtype=np.float32)
    x, w, b = (a.astype(dtype) for a in (x, w, b))
    shape = conv2d(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32)), **_geometry(cfg))
    g = np.random.default_rng(2).standard_normal(shape.shape).astype(dtype)

    def tensor(a):
        return torch.from_numpy(a.astype(np.float32)).to(torch_dtype)

    leaves = [tensor(a).requires_grad_(True) for a in (x, w, b)]
    y = conv2d(*leaves, **_geometry(cfg))
    grads = torch.autograd.grad(y, leaves, tensor(g))
    assert y.dtype == torch_dtype and all(grad.dtype == torch_dtype for grad in grads)
    got = [t.detach().float().numpy() for t in (y,) + grads]  # float32 holds every value exactly
    return got, [a.astype(np.float32) for a in _rounded_model(cfg, x, w, b, g, dtype)]


@pytest.mark.parametrize("name", ["same_stride2_odd", "pad_asymmetric", "depthwise_same"])
@pytest.mark.parametrize(
    "dtype,torch_dtype", [(np.float16, torch.float16), (ml_dtypes.bfloat16, torch.bfloat16)], ids=["fp16", "bf16"]
)
def test_reduced_precision_is_mindspores_model_bit_for_bit(name, dtype, torch_dtype):
    """fp16(fp16(conv in fp32) + bias), and each gradient the exact value rounded once (bfloat16 alike).

    A float32 sum may round to the other side of a float16 midpoint where the exact value lies
    within float32 error of it; none does on these arrays.
    """
    got, model = _rounding_pairs(CONFIGS[name], dtype, torch_dtype)
    for label, a, ref in zip(("y", "dx", "dw", "db"), got, model):
        np.testing.assert_array_equal(a, ref, err_msg=f"{name} {label}")


def test_float16_and_bfloat16_modules_keep_their_dtype_and_train():
    for dtype in (torch.float16, torch.bfloat16):
        net = Conv2d(4, 6, 3, stride=2, has_bias=True, dtype=dtype)
        assert net.weight.dtype == dtype and net.bias.dtype == dtype
        y = net(torch.randn(2, 4, 7, 8).to(dtype))
        assert y.dtype == dtype and y.shape == (2, 6, 4, 4)
        y.float().square().mean().backward()
        assert net.weight.grad.dtype == dtype and net.bias.grad.dtype == dtype


def test_float64_module_matches_the_numpy_layer_with_the_same_seed():
    cfg = dict(CONFIGS["pad_asymmetric"], has_bias=True)
    ct.set_seed(5)
    ours = Conv2d(**cfg, dtype=torch.float64)
    ct.set_seed(5)
    numpy_net = ct.Conv2d(**cfg, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5))
    y = ours(torch.from_numpy(x))
    assert y.dtype == torch.float64
    assert_close(y.detach().numpy(), numpy_net(x), 1e-12, "float64 module vs NumPy layer")
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(torch.from_numpy(g))
    numpy_net.backward(g)
    assert_close(ours.weight.grad.numpy(), numpy_net.weight.grad, 1e-12, "dweight")
    assert_close(ours.bias.grad.numpy(), numpy_net.bias.grad, 1e-12, "dbias")


# ---------------------------------------------------------------------------- compile, export, ONNX

LAYERS = [
    dict(in_channels=4, out_channels=6, kernel_size=(3, 4), stride=2, group=2, has_bias=True),
    dict(
        in_channels=6,
        out_channels=4,
        kernel_size=(2, 3),
        stride=(1, 2),
        pad_mode="pad",
        padding=(1, 0, 2, 1),
        dilation=(2, 1),
        group=2,
        has_bias=True,
    ),
    dict(in_channels=4, out_channels=4, kernel_size=2, pad_mode="valid", group=4, has_bias=True),
]


def _network():
    ct.set_seed(0)
    return torch.nn.Sequential(*(Conv2d(**cfg) for cfg in LAYERS))


@pytest.fixture()
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_fullgraph_matches_eager_on_new_input_sizes(fresh_dynamo):
    """'same' pads by the input size: each size (odd and even, so the extra row moves) must give eager's result.

    Found here: from the second size on, dynamo traced H and W as symbols and simplifying the
    padding's max/floor expressions ran for minutes (over 500 s here) in AOT autograd's trace;
    H and W are now kept static. aot_eager runs that trace without inductor's code generation
    (seconds); inductor compiles plain F.pad and F.conv2d here, as for any PyTorch model.
    """
    net = _network()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")  # fullgraph: any graph break is an error
    for batch, height, width in ((2, 7, 8), (3, 8, 9)):  # padding (1, 1, 1, 1), then (0, 1, 0, 1) in layer 0
        x = torch.randn(batch, 4, height, width)
        _assert_same(_run(compiled, x), _run(net, x))


def test_export_with_a_dynamic_batch_matches_eager():
    net = _network().eval()
    program = torch.export.export(
        net, (torch.randn(2, 4, 9, 8),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}}
    )
    exported = program.module()
    for n in (2, 5):
        x = torch.randn(n, 4, 9, 8)
        _assert_same([exported(x)], [net(x).detach()])
    ops = {node.target.__name__ for node in program.graph.nodes if node.op == "call_function"}
    assert "conv2d.default" in ops, ops


def test_onnx_export_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    net = _network().eval()
    program = torch.onnx.export(
        net, (torch.randn(2, 4, 9, 8),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}}
    )
    path = tmp_path / "conv2d.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    for n in (2, 3):
        x = torch.randn(n, 4, 9, 8)
        (got,) = session.run(None, {name: x.numpy()})
        expected = net(x).detach().numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- DistributedDataParallel


def _ddp_network():
    ct.set_seed(0)  # the initializers draw from convtranspose's generator, in every process alike
    return torch.nn.Sequential(
        Conv2d(4, 6, 3, stride=2, group=2, has_bias=True),
        torch.nn.ReLU(),
        Conv2d(6, 2, 2, pad_mode="pad", padding=(1, 0, 0, 1), has_bias=True),
    )


def _ddp_data():
    generator = torch.Generator().manual_seed(1)
    xs = torch.randn(STEPS, BATCH, 4, 9, 8, generator=generator)
    targets = torch.randn(STEPS, BATCH, 2, 5, 4, generator=generator)
    return xs, targets


def _replica(rank, port, out_dir):
    """One DDP process: train on this rank's half of each batch, save the final weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(_ddp_network())
        xs, targets = _ddp_data()
        half = BATCH // WORLD
        _train(net, xs[:, rank * half : (rank + 1) * half], targets[:, rank * half : (rank + 1) * half])
        torch.save(net.module.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes import torch: 5-15 s here; the transposed layer's DDP test runs by default
def test_ddp_replicas_agree_with_each_other_and_with_one_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    context = torch.multiprocessing.start_processes(
        _replica, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP processes did not finish within 180 s")
    replicas = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    single = _ddp_network()
    start = {name: value.clone() for name, value in single.state_dict().items()}
    _train(single, *_ddp_data())
    assert list(replicas[0]) == list(single.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, value in single.state_dict().items():
        assert torch.equal(replicas[0][name], replicas[1][name]), f"{name}: the replicas differ"
        assert not torch.equal(value, start[name]), f"{name}: training did not change it"
        torch.testing.assert_close(replicas[0][name], value, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- from PyTorch


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(padding=1, stride=2),
        dict(padding=(2, 0), stride=(1, 3), dilation=(1, 2)),
        dict(padding="same", dilation=(2, 3)),
        dict(padding="same", groups=2, bias=False),
        dict(padding="valid", stride=2, groups=4),
        dict(padding=(0, 3), dilation=3, bias=False),
    ],
    ids=str,
)
def test_from_torch_computes_what_nn_conv2d_computes(kwargs):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 8, (3, 2), **kwargs).double()
    net = Conv2d.from_torch(conv)
    assert net.weight.dtype == torch.float64 and net.pad_mode == "pad"
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), conv.parameters()))
    x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    for a, b in zip(_grads(net, x), _grads(conv, x)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    x32 = x.float()  # float32: the same PyTorch kernel on the same values, bit for bit
    for a, b in zip(_grads(Conv2d.from_torch(conv.float()), x32), _grads(conv.float(), x32)):
        np.testing.assert_array_equal(a, b)


def test_from_torch_keeps_the_training_flag_and_device():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1).eval()
    net = Conv2d.from_torch(conv)
    assert not net.training and net.weight.device == conv.weight.device and net.padding == (1, 1, 1, 1)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_from_torch_refuses_other_padding_modes_naming_them(mode):
    with pytest.raises(ValueError, match=rf"module must use padding_mode='zeros'.*padding_mode='{mode}'"):
        Conv2d.from_torch(torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode))


def test_from_torch_refuses_lazy_modules_and_other_types_naming_the_argument():
    with pytest.raises(ValueError, match=r"module is a lazy Conv2d"):
        Conv2d.from_torch(torch.nn.LazyConv2d(3, 3))
    with pytest.raises(TypeError, match=r"module must be a torch.nn.Conv2d, got module of type ConvTranspose2d"):
        Conv2d.from_torch(torch.nn.ConvTranspose2d(2, 3, 3))


# ---------------------------------------------------------------------------- CUDA (marked gpu)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 2e-3), (torch.float64, 1e-12)])
def test_cuda_matches_the_cpu(name, dtype, tol):
    cfg = dict(CONFIGS[name], has_bias=True)
    ct.set_seed(0)
    cpu = Conv2d(**cfg, dtype=dtype)
    cuda = Conv2d(**cfg, dtype=dtype, device="cuda")
    cuda.load_state_dict(cpu.state_dict())
    x = torch.randn(3, cfg["in_channels"], 9, 8).to(dtype)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would round float32 to 10 bits
        got = _grads(lambda x, w, b: conv2d(x, w, b, **_geometry(cfg)), x.cuda(), cuda.weight, cuda.bias)
    expected = _grads(lambda x, w, b: conv2d(x, w, b, **_geometry(cfg)), x, cpu.weight, cpu.bias)
    for label, a, b in zip(("y", "dx", "dw", "db"), got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name} {label}"
        a, b = a.astype(np.float64), b.astype(np.float64)
        assert np.abs(a - b).max() <= tol * (1 + np.abs(b).max()), f"{name} {label}"


@pytest.mark.gpu
@needs_cuda
def test_cuda_module_trains_and_calls_from_the_wrong_device_fail():
    net = Conv2d(4, 6, 3, stride=2, has_bias=True, device="cuda")
    y = net(torch.randn(2, 4, 7, 8, device="cuda"))
    assert y.shape == (2, 6, 4, 4)
    y.square().mean().backward()
    assert net.weight.grad.is_cuda and net.bias.grad.is_cuda
    with pytest.raises(ValueError, match="x must be on the parameters' device cuda"):
        net(torch.randn(2, 4, 7, 8))
