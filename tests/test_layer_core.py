"""What every layer shares (convtranspose._layers): canonical read-only arguments, loading, docs."""

import re

import numpy as np
import pytest

import convtranspose as ct

ARGS = dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, pad_mode="pad", padding=1, output_padding=1)
CANONICAL = dict(
    in_channels=4,
    out_channels=6,
    kernel_size=(3, 2),
    stride=(2, 2),
    pad_mode="pad",
    padding=(1, 1, 1, 1),
    output_padding=(1, 1),
    dilation=(1, 1),
    group=1,
    has_bias=False,
    data_format="NCHW",
)


def _layer_classes():
    classes = [("numpy", ct.Conv2dTranspose, {})]
    try:
        from convtranspose import torch as ct_torch

        classes.append(("torch", ct_torch.Conv2dTranspose, {}))
    except ImportError:
        pass
    try:
        from flax import nnx

        from convtranspose import flax as ct_flax

        classes.append(("flax", ct_flax.Conv2dTranspose, {"rngs": nnx.Rngs(0)}))
    except ImportError:
        pass
    return classes


LAYERS = _layer_classes()


@pytest.mark.parametrize("name, cls, extra", LAYERS, ids=[name for name, _, _ in LAYERS])
def test_every_layer_reads_back_the_canonical_arguments(name, cls, extra):
    net = cls(**ARGS, **extra)
    assert {key: getattr(net, key) for key in CANONICAL} == CANONICAL


@pytest.mark.parametrize("name, cls, extra", LAYERS, ids=[name for name, _, _ in LAYERS])
@pytest.mark.parametrize("attribute, value", [("stride", (1, 1)), ("padding", 0), ("has_bias", True)])
def test_the_arguments_are_fixed_at_construction(name, cls, extra, attribute, value):
    net = cls(**ARGS, **extra)
    before = getattr(net, attribute)
    with pytest.raises(AttributeError, match=f"{attribute} is fixed at construction"):
        setattr(net, attribute, value)
    assert getattr(net, attribute) == before == getattr(net.spec, attribute)


@pytest.mark.parametrize("name, cls, extra", LAYERS, ids=[name for name, _, _ in LAYERS])
def test_load_parameters_is_all_or_nothing_and_hints_at_the_dot(name, cls, extra):
    net = cls(2, 4, 3, has_bias=True, **extra)
    weight, bias = net.parameters_dict()["weight"], net.parameters_dict()["bias"]
    arrays = {"up1.weight": np.full_like(weight, 2), "up1.bias": np.zeros(5, bias.dtype)}
    with pytest.raises(ValueError, match=r"up1.bias must have shape \(4,\)"):
        net.load_parameters(arrays, prefix="up1.")
    np.testing.assert_array_equal(net.parameters_dict()["weight"], weight)  # nothing changed
    with pytest.raises(KeyError, match=r"prefix needs its trailing dot \(prefix='up1.'\)"):
        net.load_parameters(arrays, prefix="up1")
    big_endian = {"up1.weight": np.full(weight.shape, 3, ">f4"), "up1.bias": np.ones(4, ">f4")}
    net.load_parameters(big_endian, prefix="up1.")  # byte order is not a dtype difference
    np.testing.assert_array_equal(net.parameters_dict(prefix="p.")["p.weight"], np.full(weight.shape, 3, "f4"))


def test_load_parameters_takes_torch_tensors_in_every_layer():
    torch = pytest.importorskip("torch")
    for _, cls, extra in LAYERS:
        net = cls(2, 4, 3, **extra)
        net.load_parameters({"weight": torch.full((2, 4, 3, 3), 0.5)})
        np.testing.assert_array_equal(net.parameters_dict()["weight"], np.full((2, 4, 3, 3), 0.5, np.float32))
        with pytest.raises(TypeError, match=r"weight must have dtype float32, got float64"):
            net.load_parameters({"weight": torch.zeros((2, 4, 3, 3), dtype=torch.float64)})


def _args_entries(doc):
    """The entries of a Google-style ``Args:`` block: name -> text (continuation lines joined)."""
    block = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0]
    entries, name = {}, None
    for line in block.splitlines():
        match = re.match(r"\s{8}(\w+): (.*)", line)
        if match:
            name = match.group(1)
            entries[name] = match.group(2)
        elif name:
            entries[name] += " " + line.strip()
    return entries


SHARED_ENTRIES = (
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
    "bias_init",
)


def test_the_docstrings_share_the_entries_of_mindspores_arguments():
    entries = {name: _args_entries(cls.__doc__) for name, cls, _ in LAYERS}
    first = entries["numpy"]
    for name, other in entries.items():
        for key in SHARED_ENTRIES:
            assert other.get(key) == first[key], f"{name}'s entry for {key} differs from the NumPy layer's"


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")  # PyTorch deprecates making quantized tensors
def test_torch_tensors_without_plain_values_are_refused_as_initializers_naming_the_argument():
    torch = pytest.importorskip("torch")
    from convtranspose.torch import Conv2d, Conv2dTranspose

    dense = torch.ones(2, 4, 3, 3)
    quantized = torch.quantize_per_tensor(dense, scale=0.1, zero_point=0, dtype=torch.qint8)
    cases = [
        (dense.to("meta"), "weight_init is a tensor on the meta device"),
        (dense.to_sparse(), r"weight_init is a torch.sparse_coo tensor: pass weight_init.to_dense\(\)"),
        (quantized, r"weight_init is a quantized tensor .*: pass weight_init.dequantize\(\)"),
    ]
    for cls in (Conv2dTranspose, Conv2d):
        for init, message in cases:
            with pytest.raises(TypeError, match=message):
                cls(2, 4, 3, weight_init=init)
    with pytest.raises(TypeError, match="bias_init is a tensor on the meta device"):
        Conv2dTranspose(2, 4, 3, has_bias=True, bias_init=torch.ones(4, device="meta"))
