"""Porting whole MindSpore networks: ``load_mindspore`` / ``save_mindspore`` in PyTorch and Flax NNX.

The three networks of ``tests/data/networks/`` (a U-Net, the model zoo's DCGAN generator and an
encoder-decoder, each trained three steps and saved by the real MindSpore 2.10) are ported in
``tests/networks.py``; each checkpoint file loads with one call and the port matches MindSpore's
eval-mode output within ``1e-5 * (1 + max|y|)``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any, Callable, Dict

import networks
import numpy as np
import pytest

from convtranspose import ckpt

FILES = ("", "_with_opt")  # NAME.ckpt (save_checkpoint) and NAME_with_opt.ckpt (ModelCheckpoint during training)


@dataclass
class Front:
    """One front end: its module, how to build, run and read a port."""

    name: str
    module: Any
    build: Callable[..., Any]
    run: Callable[[Any, np.ndarray], np.ndarray]
    slots: Callable[[Any], Any]

    def arrays(self, net: Any) -> Dict[str, np.ndarray]:
        """The port's tensors by MindSpore name, in MindSpore's layout (copies)."""
        return {s.name: s.layout.to_mindspore(s.read()).copy() for s in self.slots(net)[0]}


def _torch_front() -> Front:
    torch = pytest.importorskip("torch")
    from convtranspose import torch as front

    @functools.lru_cache(maxsize=None)
    def prototype(name, seed):
        torch.manual_seed(seed)
        return networks.torch_network(name)

    def build(name, seed=0):
        return copy.deepcopy(prototype(name, seed))

    def run(net, x):
        with torch.no_grad():
            return net(torch.from_numpy(x)).numpy()

    return Front("torch", front, build, run, front._torch_slots)


def _flax_front() -> Front:
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import nnx

    from convtranspose import flax as front

    forward = nnx.jit(lambda net, x: net(x))  # one compile per network, not one per op (eager)

    def run(net, x):
        return np.asarray(forward(net, jnp.asarray(x)))

    prototype = functools.lru_cache(maxsize=None)(networks.flax_network)

    def build(name, seed=0):
        return nnx.clone(prototype(name, seed))  # building draws every initializer: once per network

    return Front("flax", front, build, run, front._flax_slots)


@pytest.fixture(params=["torch", "flax"], scope="module")
def front(request) -> Front:
    return {"torch": _torch_front, "flax": _flax_front}[request.param]()


def _tolerance(y: np.ndarray) -> float:
    return 1e-5 * (1 + float(np.abs(y).max()))


# ----------------------------------------------------------------------------------------------
# The three networks: one call loads each file, the output is MindSpore's
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", FILES, ids=["ckpt", "with_opt"])
@pytest.mark.parametrize("name", networks.NAMES)
def test_one_call_loads_the_checkpoint_and_matches_mindspore(front, name, suffix):
    ref = networks.reference(name)
    net = front.build(name)
    path = networks.DATA / f"{name}{suffix}.ckpt"
    result = front.module.load_mindspore(net, path)
    got = front.run(net, ref["x"])
    assert got.shape == ref["y"].shape
    assert np.abs(got - ref["y"]).max() <= _tolerance(ref["y"])
    network, state = ckpt.split_training_state(ckpt.load(path))
    assert sorted(result.loaded) == sorted(network)
    assert result.training_state == tuple(state)
    assert result.missing == () and result.unexpected == ()


def test_the_training_state_of_each_optimizer_is_left_out(front):
    """Adam (unet), Momentum (dcgan_g) and SGD (encdec_same): slots and scalars, none unexpected."""
    expected = {
        "unet": {"moment1", "moment2", "beta1_power", "beta2_power", "global_step", "learning_rate"},
        "dcgan_g": {"moments", "momentum", "global_step", "learning_rate"},
        "encdec_same": {"accum", "stat", "momentum", "global_step", "learning_rate"},
    }
    for name, kinds in expected.items():
        result = front.module.load_mindspore(front.build(name), networks.DATA / f"{name}_with_opt.ckpt")
        assert {n.split(".")[0] for n in result.training_state} == kinds | {"epoch_num", "step_num"}


def test_an_untrained_port_does_not_match(front):
    """The comparison can fail: a port with its own initial values is far from MindSpore's output."""
    ref = networks.reference("unet")
    assert np.abs(front.run(front.build("unet"), ref["x"]) - ref["y"]).max() > 100 * _tolerance(ref["y"])


def test_an_appended_sequentialcell_is_matched_without_its_prefix(front):
    """dcgan_g's SequentialCell was filled with append: its names lack 'generator.'."""
    net = front.build("dcgan_g")
    result = front.module.load_mindspore(net, networks.DATA / "dcgan_g.ckpt")
    assert len(result.renamed) == 16
    assert (
        result.renamed["0.weight"] == {"torch": "generator.0.weight", "flax": "generator.layers.0.weight"}[front.name]
    )
    assert result.renamed["1.gamma"] == {"torch": "generator.1.weight", "flax": "generator.layers.1.scale"}[front.name]


# ----------------------------------------------------------------------------------------------
# save_mindspore
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", networks.NAMES)
def test_save_writes_the_file_mindspore_wrote(front, name, tmp_path):
    """Names, layouts, order and dtypes: the bytes of MindSpore's own save_checkpoint file.

    The order is the module's attribute order: a freshly built port (nnx.clone sorts them by name).
    """
    net = networks.torch_network(name) if front.name == "torch" else networks.flax_network(name)
    result = front.module.load_mindspore(net, networks.DATA / f"{name}_with_opt.ckpt")
    out = tmp_path / "saved.ckpt"
    front.module.save_mindspore(net, out, append_dict={"epoch_num": 1, "step_num": 3}, renamed=result.renamed)
    assert out.read_bytes() == (networks.DATA / f"{name}.ckpt").read_bytes()


@pytest.mark.parametrize("name", networks.NAMES)
def test_save_then_load_round_trips_bitwise(front, name, tmp_path):
    net = front.build(name)
    front.module.load_mindspore(net, networks.DATA / f"{name}.ckpt")
    out = tmp_path / "port.ckpt"
    front.module.save_mindspore(net, out)
    fresh = front.build(name, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(front.arrays(fresh).values(), front.arrays(net).values()))
    result = front.module.load_mindspore(fresh, out)
    assert result.renamed == {} and result.training_state == ()
    before, after = front.arrays(net), front.arrays(fresh)
    assert list(before) == list(after)
    for key in before:
        assert before[key].dtype == after[key].dtype
        assert before[key].tobytes() == after[key].tobytes(), key


def test_save_refuses_an_append_dict_name_that_is_a_parameter(front, tmp_path):
    net = front.build("encdec_same")
    with pytest.raises(ValueError, match="decoder.1.gamma"):
        front.module.save_mindspore(net, tmp_path / "x.ckpt", append_dict={"decoder.1.gamma": 1.0})
    with pytest.raises(TypeError, match="append_dict must be a mapping"):
        front.module.save_mindspore(net, tmp_path / "x.ckpt", append_dict=[("epoch_num", 1)])
    with pytest.raises(ValueError, match="renamed names tensors"):
        front.module.save_mindspore(net, tmp_path / "x.ckpt", renamed={"0.weight": "no.such.weight"})
    assert not (tmp_path / "x.ckpt").exists()


# ----------------------------------------------------------------------------------------------
# strict, all or nothing
# ----------------------------------------------------------------------------------------------


def test_strict_lists_missing_and_unexpected_names(front):
    arrays = dict(ckpt.load(networks.DATA / "encdec_same_with_opt.ckpt"))
    del arrays["decoder.1.moving_mean"]
    arrays["decoder.9.weight"] = np.zeros(3, np.float32)
    net = front.build("encdec_same")
    before = front.arrays(net)
    with pytest.raises(ValueError) as info:
        front.module.load_mindspore(net, arrays)
    message = str(info.value)
    assert "Missing from the checkpoint (1): decoder.1.moving_mean" in message
    assert "Unexpected in the checkpoint (1): decoder.9.weight" in message
    assert "accum." not in message and "global_step" not in message  # training state is not unexpected
    assert all(np.array_equal(before[k], v) for k, v in front.arrays(net).items())  # nothing written


def test_not_strict_loads_what_matches_and_returns_the_rest(front):
    arrays = dict(ckpt.load(networks.DATA / "encdec_same.ckpt"))
    kept = arrays.pop("decoder.1.moving_mean")
    arrays["decoder.9.weight"] = np.zeros(3, np.float32)
    net = front.build("encdec_same")
    initial = front.arrays(net)["decoder.1.moving_mean"]
    result = front.module.load_mindspore(net, arrays, strict=False)
    assert result.missing == ("decoder.1.moving_mean",)
    assert result.unexpected == ("decoder.9.weight",)
    loaded = front.arrays(net)
    assert np.array_equal(loaded["decoder.1.moving_variance"], arrays["decoder.1.moving_variance"])
    assert np.array_equal(loaded["decoder.1.moving_mean"], initial) and not np.array_equal(initial, kept)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.__setitem__("decoder.5.bias", np.zeros(4, np.float32)), r"decoder.5.bias.*: shape \(4,\)"),
        (lambda a: a.__setitem__("decoder.5.bias", a["decoder.5.bias"].astype(np.float64)), "dtype float64"),
        (lambda a: a.__setitem__("bottleneck.0.weight", a["bottleneck.0.weight"].T), r"shape \(144, 32\)"),
    ],
    ids=["shape", "dtype", "dense-transposed"],
)
def test_a_wrong_tensor_loads_nothing(front, change, match):
    """The bad tensor is the last (or a Dense weight given in Flax's layout): every other was valid."""
    arrays = dict(ckpt.load(networks.DATA / "encdec_same.ckpt"))
    change(arrays)
    net = front.build("encdec_same")
    before = front.arrays(net)
    with pytest.raises(ValueError, match=match):
        front.module.load_mindspore(net, arrays)
    after = front.arrays(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bad_arguments_are_named(front, tmp_path):
    net = front.build("dcgan_g")
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        front.module.load_mindspore(net, 3)
    with pytest.raises(TypeError, match="strict must be True or False"):
        front.module.load_mindspore(net, networks.DATA / "dcgan_g.ckpt", strict="yes")
    with pytest.raises(TypeError, match="must be a"):
        front.module.load_mindspore(object(), networks.DATA / "dcgan_g.ckpt")
    with pytest.raises(FileNotFoundError):
        front.module.load_mindspore(net, tmp_path / "none.ckpt")


def test_a_safetensors_file_and_a_path_string_load_alike(front, tmp_path):
    pytest.importorskip("safetensors")
    out = tmp_path / "unet.safetensors"
    ckpt.convert(networks.DATA / "unet_with_opt.ckpt", out)
    ref = networks.reference("unet")
    net = front.build("unet")
    result = front.module.load_mindspore(net, str(out))
    assert len(result.loaded) == 59
    assert np.abs(front.run(net, ref["x"]) - ref["y"]).max() <= _tolerance(ref["y"])


# ----------------------------------------------------------------------------------------------
# What a porter needs beyond the three networks
# ----------------------------------------------------------------------------------------------


def test_two_appended_containers_with_one_name_each_are_not_guessed(front):
    """'0.weight' could belong to either container: neither is matched by dropping its prefix."""
    if front.name == "torch":
        import torch.nn as nn

        from convtranspose.torch import Conv2d

        class Two(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Sequential(Conv2d(2, 2, 1))
                self.b = nn.Sequential(Conv2d(2, 2, 1))

        net = Two()
    else:
        from flax import nnx

        from convtranspose.flax import Conv2d

        class Two(nnx.Module):
            def __init__(self):
                self.a = nnx.Sequential(Conv2d(2, 2, 1, rngs=nnx.Rngs(0)))
                self.b = nnx.Sequential(Conv2d(2, 2, 1, rngs=nnx.Rngs(1)))

        net = Two()
    arrays = {"0.weight": np.ones((2, 2, 1, 1), np.float32)}
    result = front.module.load_mindspore(net, arrays, strict=False)
    assert result.loaded == () and result.renamed == {}
    assert result.missing == ("a.0.weight", "b.0.weight") and result.unexpected == ("0.weight",)
    with pytest.raises(ValueError, match=r"Missing from the checkpoint \(2\): a.0.weight"):
        front.module.load_mindspore(net, arrays)


def test_torch_layers_beyond_the_three_networks(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    from convtranspose.torch import load_mindspore, save_mindspore

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.layers = nn.ModuleList([nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.PReLU(4)])
            self.head = nn.Sequential(nn.Linear(4, 2), nn.Conv2d(2, 2, 1), nn.ConvTranspose2d(2, 2, 2))
            self.register_buffer("scale", torch.ones(2))
            self.register_buffer("cache", torch.zeros(2), persistent=False)

    net = Net()
    out = tmp_path / "net.ckpt"
    save_mindspore(net, out)
    assert list(ckpt.load(out)) == [
        "scale",
        "embed.embedding_table",
        "layers.0.weight",
        "layers.1.moving_mean",
        "layers.1.moving_variance",
        "layers.1.gamma",
        "layers.1.beta",
        "layers.2.alpha",
        "head.0.weight",
        "head.0.bias",
        "head.1.weight",
        "head.1.bias",
        "head.2.weight",
        "head.2.bias",
    ]
    other = Net()
    other.layers[1].num_batches_tracked.fill_(7)
    load_mindspore(other, out)
    assert int(other.layers[1].num_batches_tracked) == 7  # MindSpore has no such counter: left as it is
    for key, value in net.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, other.state_dict()[key]), key


def test_flax_layers_beyond_the_three_networks(tmp_path):
    pytest.importorskip("flax")
    from flax import nnx

    from convtranspose.flax import load_mindspore, save_mindspore

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(5, 3, rngs=rngs)
            self.blocks = nnx.List([nnx.Linear(3, 4, use_bias=False, rngs=rngs), nnx.PReLU()])
            self.norms = nnx.List([nnx.LayerNorm(4, rngs=rngs), nnx.GroupNorm(4, num_groups=2, rngs=rngs)])
            self.scale = nnx.Param(np.ones(2, np.float32))

    net = Net(nnx.Rngs(0))
    out = tmp_path / "net.ckpt"
    save_mindspore(net, out)
    saved = ckpt.load(out)
    assert {k: v.shape for k, v in saved.items()} == {
        "embed.embedding_table": (5, 3),
        "blocks.0.weight": (4, 3),  # Dense's (out, in)
        "blocks.1.alpha": (1,),  # MindSpore's PReLU alpha for one channel
        "norms.0.gamma": (4,),
        "norms.0.beta": (4,),
        "norms.1.gamma": (4,),
        "norms.1.beta": (4,),
        "scale": (2,),
    }
    other = Net(nnx.Rngs(1))
    load_mindspore(other, out)
    assert np.array_equal(other.blocks[0].kernel[...], net.blocks[0].kernel[...])
    assert np.array_equal(other.embed.embedding[...], net.embed.embedding[...])


@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_flax_conv_layouts_give_mindspore_outputs(transpose_kernel):
    """nnx.Conv and nnx.ConvTranspose loaded from MindSpore's layouts compute what this library's layers do."""
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import nnx

    import convtranspose as ct
    from convtranspose.flax import load_mindspore

    rng = np.random.default_rng(0)
    conv_w = rng.standard_normal((6, 2, 3, 2)).astype(np.float32)  # (C_out, C_in/group, kH, kW), group 2
    convt_w = rng.standard_normal((6, 3, 2, 3)).astype(np.float32)  # (C_in, C_out, kH, kW)
    bias = rng.standard_normal(3).astype(np.float32)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)

    class Net(nnx.Module):
        def __init__(self, rngs):
            zeros = nnx.initializers.zeros_init()  # loaded below; Flax's random initializer costs an XLA compile
            self.conv = nnx.Conv(
                4, 6, (3, 2), strides=2, padding="VALID", feature_group_count=2, kernel_init=zeros, rngs=rngs
            )
            self.up = nnx.ConvTranspose(
                6,
                3,
                (2, 3),
                strides=2,
                padding="VALID",
                transpose_kernel=transpose_kernel,
                kernel_init=zeros,
                rngs=rngs,
            )

        def __call__(self, x):  # NCHW in and out, as MindSpore
            h = self.up(self.conv(jnp.moveaxis(x, 1, -1)))
            return np.moveaxis(np.asarray(h), -1, 1)

    net = Net(nnx.Rngs(0))
    load_mindspore(
        net, {"conv.weight": conv_w, "conv.bias": np.zeros(6, np.float32), "up.weight": convt_w, "up.bias": bias}
    )
    conv = ct.Conv2d(4, 6, (3, 2), stride=2, pad_mode="valid", group=2, weight_init=conv_w)
    up = ct.Conv2dTranspose(
        6, 3, (2, 3), stride=2, pad_mode="valid", has_bias=True, weight_init=convt_w, bias_init=bias
    )
    expected = up(conv(x))
    assert np.abs(net(jnp.asarray(x)) - expected).max() <= 1e-5 * (1 + np.abs(expected).max())


def test_an_appended_container_inside_a_cell_keeps_the_path_above_that_cell(tmp_path):
    """MindSpore: Stage's SequentialCell filled with append names '0.weight'; assigning the Stage to
    the root then prefixes 'stage.': 'stage.0.weight' for the module's 'stage.blocks.0.weight'."""
    pytest.importorskip("torch")
    from torch import nn

    from convtranspose.torch import Conv2d, load_mindspore, save_mindspore

    class Stage(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Conv2d(2, 3, 1), nn.BatchNorm2d(3))

    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = Conv2d(2, 2, 1)
            self.stage = Stage()

    rng = np.random.default_rng(0)
    arrays = {
        "head.weight": rng.standard_normal((2, 2, 1, 1)).astype(np.float32),
        "stage.0.weight": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
        "stage.1.moving_mean": rng.standard_normal(3).astype(np.float32),
        "stage.1.moving_variance": np.ones(3, np.float32),
        "stage.1.gamma": rng.standard_normal(3).astype(np.float32),
        "stage.1.beta": rng.standard_normal(3).astype(np.float32),
    }
    net = Root()
    result = load_mindspore(net, arrays)
    assert result.renamed["stage.0.weight"] == "stage.blocks.0.weight"
    assert result.renamed["stage.1.gamma"] == "stage.blocks.1.weight" and len(result.renamed) == 5
    assert np.array_equal(net.stage.blocks[1].running_mean.numpy(), arrays["stage.1.moving_mean"])
    save_mindspore(net, tmp_path / "root.ckpt", renamed=result.renamed)
    back = ckpt.load(tmp_path / "root.ckpt")
    assert list(back) == list(arrays)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
