"""The PyTorch layers in PyTorch's training machinery: autocast, default dtype and device, meta, spectral_norm.

Every test runs on both layers (Conv2dTranspose and Conv2d): what they share lives in ``_TorchLayer``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import convtranspose as ct  # noqa: E402
from convtranspose import _layers, spec  # noqa: E402
from convtranspose.torch import Conv2d, Conv2dTranspose  # noqa: E402

LAYERS = [Conv2dTranspose, Conv2d]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _pair(cls, dtype=torch.float32, **kwargs):
    """A layer with a bias and a copy of it with parameters cast to ``dtype``."""
    ct.set_seed(0)
    layer = cls(4, 6, 3, stride=2, has_bias=True, **kwargs)
    cast = cls(4, 6, 3, stride=2, has_bias=True, dtype=dtype, **kwargs)
    with torch.no_grad():
        cast.weight.copy_(layer.weight)
        cast.bias.copy_(layer.bias)
    return layer, cast


# ---------------------------------------------------------------------------- autocast


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_computes_the_cast_inputs_and_returns_the_autocast_dtype(cls, dtype):
    layer, cast = _pair(cls, dtype)
    x = torch.randn(2, 4, 7, 6)
    with torch.autocast("cpu", dtype=dtype):
        y = layer(x)
    assert y.dtype == dtype
    # MindSpore's reduced-precision model on the cast values, bit for bit
    assert torch.equal(y, cast(x.to(dtype)))


@pytest.mark.parametrize("cls", LAYERS)
def test_autocast_gradients_reach_float32_parameters(cls):
    layer, cast = _pair(cls, torch.bfloat16)
    x = torch.randn(2, 4, 7, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x).float().square().sum().backward()
    cast(x.bfloat16()).float().square().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and layer.bias.grad.dtype == torch.float32
    # the casts' backward: the bfloat16 gradient, widened exactly
    assert torch.equal(layer.weight.grad, cast.weight.grad.float())
    assert torch.equal(layer.bias.grad, cast.bias.grad.float())


@pytest.mark.parametrize("cls", LAYERS)
def test_autocast_disabled_region_and_float64_are_left_alone(cls):
    layer, _ = _pair(cls)
    x = torch.randn(1, 4, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            assert torch.equal(layer(x), _pair(cls)[0](x))
        wide = copy.deepcopy(layer).double()
        assert wide(x.double()).dtype == torch.float64  # autocast never casts float64


def test_a_mixed_model_trains_under_cpu_autocast():
    torch.manual_seed(0)
    ct.set_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Conv2dTranspose(8, 8, 3, stride=2, has_bias=True),
        nn.ReLU(),
        Conv2d(8, 4, 3, stride=2, has_bias=True),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 2),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(4, 3, 6, 6), torch.randn(4, 2)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            assert out.dtype == torch.bfloat16
            loss = nn.functional.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model[3].weight.grad is not None and model[5].weight.grad is not None
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cls", LAYERS)
def test_autocast_under_torch_compile_fullgraph(cls):
    layer, _ = _pair(cls)
    x = torch.randn(2, 4, 7, 6)
    # aot_eager: the graph dynamo captures, run by ATen (Inductor may fuse the two roundings)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(compiled(x), layer(x))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("cls", LAYERS)
def test_cuda_autocast_float16_with_grad_scaler(cls):
    torch.backends.cudnn.allow_tf32 = False
    layer, cast = _pair(cls, torch.float16, device="cuda")
    x = torch.randn(2, 4, 7, 6, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        y = layer(x)
    assert y.dtype == torch.float16 and torch.equal(y, cast(x.half()))
    model = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), copy.deepcopy(layer)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    for _ in range(3):
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = model(x).float().square().mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert torch.isfinite(model[2].weight).all() and model[2].weight.dtype == torch.float32


# ---------------------------------------------------------------------------- default dtype and device


@pytest.mark.parametrize("cls", LAYERS)
def test_dtype_none_is_the_default_dtype(cls):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        layer = cls(2, 4, 3, has_bias=True)
    finally:
        torch.set_default_dtype(previous)
    assert layer.weight.dtype == torch.float64 and layer.bias.dtype == torch.float64
    assert cls(2, 4, 3).weight.dtype == torch.float32


@pytest.mark.parametrize("cls", LAYERS)
def test_device_none_follows_the_default_device(cls):
    with torch.device("meta"):
        assert cls(2, 4, 3, has_bias=True).weight.is_meta
    torch.set_default_device("meta")
    try:
        layer = cls(2, 4, 3, has_bias=True)
    finally:
        torch.set_default_device(None)
    assert layer.weight.is_meta and layer.bias.is_meta
    assert cls(2, 4, 3).weight.device.type == "cpu"


# ---------------------------------------------------------------------------- meta device


@pytest.mark.parametrize("cls", LAYERS)
def test_meta_draws_nothing_and_skips_the_weight_memory_limit(cls, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("drawn on the meta device")

    monkeypatch.setattr(_layers, "_draw", refuse)
    layer = cls(2048, 2048, 7, has_bias=True, device="meta")
    assert layer.weight.is_meta and layer.weight.shape[2:] == (7, 7) and layer.bias.shape == (2048,)
    layer.reset_parameters()  # nothing to draw into
    monkeypatch.undo()
    monkeypatch.setattr(spec, "MEMORY_LIMIT", 1000)
    with pytest.raises(ValueError, match="more than the"):
        cls(64, 64, 3)
    assert cls(64, 64, 3, device="meta").weight.is_meta


@pytest.mark.parametrize("cls", LAYERS)
def test_meta_still_checks_arguments_and_initializer_forms(cls):
    with pytest.raises(ValueError, match="in_channels"):
        cls(0, 4, 3, device="meta")
    with pytest.raises(ValueError, match="weight_init='nonsense' is not a known initializer"):
        cls(2, 4, 3, weight_init="nonsense", device="meta")
    with pytest.raises(ValueError, match="bias_init must have shape"):
        cls(2, 4, 3, has_bias=True, bias_init=np.zeros(3, np.float32), device="meta")
    with pytest.raises(TypeError, match="weight_init must be an Initializer"):
        cls(2, 4, 3, weight_init=[1.0], device="meta")
    shape = tuple(cls(2, 4, 3, device="meta").weight.shape)
    half = cls(2, 4, 3, weight_init=np.zeros(shape, np.float16), device="meta")
    assert half.weight.dtype == torch.float16  # an array keeps its dtype, as eagerly


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_to_empty_then_reset_parameters_draws_what_construction_draws(cls, dtype):
    ct.set_seed(7)
    eager = cls(3, 6, 3, group=3, has_bias=True, dtype=dtype)
    deferred = cls(3, 6, 3, group=3, has_bias=True, dtype=dtype, device="meta").to_empty(device="cpu")
    ct.set_seed(7)
    deferred.reset_parameters()
    assert deferred.weight.dtype == dtype
    assert torch.equal(deferred.weight, eager.weight) and torch.equal(deferred.bias, eager.bias)
    x = torch.randn(1, 3, 4, 4, dtype=dtype)
    assert torch.equal(deferred(x), eager(x))


# ---------------------------------------------------------------------------- spectral_norm


def _spectral_pair(normalise, **kwargs):
    """Our Conv2dTranspose and nn.ConvTranspose2d with the same weight, spectral-normalised alike."""
    ours = Conv2dTranspose(4, 6, 3, pad_mode="valid")
    theirs = nn.ConvTranspose2d(4, 6, 3, bias=False)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
    torch.manual_seed(0)
    ours = normalise(ours, **kwargs)
    torch.manual_seed(0)
    theirs = normalise(theirs)  # PyTorch picks dim=1 for its ConvTranspose classes
    return ours, theirs


@pytest.mark.parametrize(
    "normalise", [nn.utils.spectral_norm, nn.utils.parametrizations.spectral_norm], ids=["hook", "parametrization"]
)
def test_spectral_norm_needs_dim_1_on_conv2d_transpose(normalise):
    x = torch.randn(2, 4, 5, 5)
    ours, theirs = _spectral_pair(normalise, dim=1)
    for _ in range(3):  # training mode: a power iteration per call
        assert torch.allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
    wrong, theirs = _spectral_pair(normalise)  # the default, dim=0, normalises another matrix
    assert not torch.allclose(wrong(x), theirs(x), rtol=1e-3, atol=1e-3)
