"""The torch module under torch.compile(fullgraph=True), torch.export and the ONNX exporter.

One network holds a layer of each pad mode, with output_padding, groups, dilation and crops that
reach every branch of the engine (a crop the kernel does alone, a slice after it, rows past the
full result). Compiling is slow on a small machine: the default run compiles that network once;
the per-layer sweep is marked slow.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from convtranspose.torch import Conv2dTranspose, conv2d_transpose  # noqa: E402

LAYERS = [
    dict(in_channels=4, out_channels=6, kernel_size=(3, 4), stride=2, pad_mode="same", group=2, has_bias=True),
    dict(in_channels=6, out_channels=4, kernel_size=2, stride=3, pad_mode="valid", has_bias=True),
    dict(
        in_channels=4,
        out_channels=4,
        kernel_size=3,
        stride=2,
        pad_mode="pad",
        padding=(3, 0, 1, 2),
        output_padding=(1, 0),
        dilation=(1, 2),
        group=2,
        has_bias=True,
    ),
]
X_SHAPE = (2, 4, 3, 5)


def _network(layers=LAYERS, dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(*(Conv2dTranspose(**cfg, dtype=dtype) for cfg in layers))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _run(net, x):
    """Output and the gradients of x and every parameter for the loss sum(y**2)."""
    net.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    y = net(x)
    y.float().square().sum().backward()
    return [y.detach(), x.grad] + [p.grad.clone() for p in net.parameters()]


def _assert_same(got, expected, rtol=1e-5):
    for a, b in zip(got, expected):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert b.numel()
        scale = float(b.float().abs().max())
        assert float((a.float() - b.float()).abs().max()) <= rtol * (1 + scale)


# ---------------------------------------------------------------------------- torch.compile


def test_compile_fullgraph_matches_eager_forward_and_backward():
    net = _network()
    x = torch.randn(X_SHAPE)
    expected = _run(net, x)
    compiled = torch.compile(net, fullgraph=True)  # fullgraph: any graph break is an error
    _assert_same(_run(compiled, x), expected)


@pytest.mark.slow
def test_compile_with_a_changing_batch_size_recompiles_dynamic_and_matches_eager():
    net = _network()
    compiled = torch.compile(net, fullgraph=True)
    for batch in (2, 3, 6):  # the second size makes dynamo trace the batch as a symbol
        x = torch.randn(batch, *X_SHAPE[1:])
        _assert_same(_run(compiled, x), _run(net, x))


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(LAYERS)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compile_each_layer_matches_eager(index, dtype):
    net = _network([LAYERS[index]], dtype=dtype)
    x = torch.randn(2, LAYERS[index]["in_channels"], 4, 3).to(dtype)
    expected = _run(net, x)
    got = _run(torch.compile(net, fullgraph=True), x)
    if dtype == torch.float16:  # the compiled float32 sums may round to the neighbouring float16
        _assert_same(got, expected, rtol=2e-3)
    else:
        _assert_same(got, expected)


@pytest.mark.slow
def test_compile_functional_and_dynamic_batch():
    kwargs = dict(stride=2, pad_mode="pad", padding=(1, 0, 0, 2), output_padding=1, group=2)
    fn = torch.compile(lambda x, w, b: conv2d_transpose(x, w, b, **kwargs), fullgraph=True, dynamic=True)
    w, b = torch.randn(4, 3, 3, 3), torch.randn(6)
    for batch in (2, 5, 1):
        x = torch.randn(batch, 4, 5, 4)
        _assert_same([fn(x, w, b)], [conv2d_transpose(x, w, b, **kwargs)])


# ---------------------------------------------------------------------------- torch.export


def test_export_with_a_dynamic_batch_matches_eager():
    net = _network().eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(net, (torch.randn(X_SHAPE),), dynamic_shapes={"input": {0: batch}})
    exported = program.module()
    for n in (2, 7):
        x = torch.randn(n, *X_SHAPE[1:])
        _assert_same([exported(x)], [net(x).detach()])
    ops = {node.target.__name__ for node in program.graph.nodes if node.op == "call_function"}
    assert "conv_transpose2d.input" in ops, ops


# ---------------------------------------------------------------------------- ONNX


def test_onnx_export_runs_in_onnxruntime_with_a_dynamic_batch(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    net = _network().eval()
    program = torch.onnx.export(net, (torch.randn(X_SHAPE),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}})
    path = tmp_path / "model.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    for n in (2, 5):
        x = torch.randn(n, *X_SHAPE[1:])
        (got,) = session.run(None, {name: x.numpy()})
        expected = net(x).detach().numpy()
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert np.all(got[:, :, -1, :] == 0)  # the last layer's output_padding row
