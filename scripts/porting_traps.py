"""Measure the porting traps of docs/from-mindspore.md ("Port a whole network") on the golden networks.

Each trap is a plausible mistake in a PyTorch port of the networks in ``tests/data/networks/`` that
no checkpoint loader can catch or fix; this prints what each does to the port, against MindSpore's
recorded eval output and the tolerance ``1e-5 * (1 + max|y|)``. Run from the repository root:

    PYTHONPATH=. python scripts/porting_traps.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import networks  # noqa: E402  (the test helper module holds the ports)

from convtranspose import ckpt  # noqa: E402
from convtranspose.torch import load_mindspore  # noqa: E402


def error(net: nn.Module, name: str) -> float:
    """Largest |port - MindSpore| on the recorded input, in eval mode."""
    ref = networks.reference(name)
    with torch.no_grad():
        return float(np.abs(net.eval()(torch.from_numpy(ref["x"])).numpy() - ref["y"]).max())


def loaded(name: str) -> nn.Module:
    net = networks.torch_network(name)
    load_mindspore(net, networks.DATA / f"{name}.ckpt")
    return net


def tolerance(name: str) -> float:
    return 1e-5 * (1 + float(np.abs(networks.reference(name)["y"]).max()))


def main() -> None:
    for name in networks.NAMES:
        print(f"{name}: correct port, error {error(loaded(name), name):.2e} (tolerance {tolerance(name):.2e})")

    # 1. BatchNorm momentum: MindSpore keeps m of the old statistic, PyTorch keeps 1 - momentum.
    #    One training-mode batch, then eval: how far the moving statistics moved.
    name = "dcgan_g"
    x = torch.from_numpy(networks.reference(name)["x"])
    for label, momentum in (("momentum=1-m (0.9)", 0.9), ("momentum=m copied (0.1)", 0.1)):
        net = loaded(name)
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = momentum
        before = net.generator[1].running_var.clone()
        with torch.no_grad():
            net.train()(x)
        moved = float((net.generator[1].running_var - before).abs().max())
        print(f"BatchNorm {label}: after one training batch, generator.1.running_var moved by up to {moved:.5f}")

    # 2. LayerNorm epsilon: MindSpore's default 1e-7, PyTorch's 1e-5.
    name = "encdec_same"
    net = loaded(name)
    net.bottleneck[1].eps = 1e-5
    print(f"LayerNorm eps=1e-5 (PyTorch's default) in {name}: error {error(net, name):.2e}")

    # 3. A SequentialCell filled with append: checkpoint names without the container's path.
    name = "dcgan_g"
    network, _ = ckpt.split_training_state(ckpt.load(networks.DATA / f"{name}.ckpt"))
    state = {k: torch.from_numpy(v) for k, v in network.items()}
    result = networks.torch_network(name).load_state_dict(state, strict=False)
    print(
        f"{name} with load_state_dict: {len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected "
        f"(names {list(network)[:2]}...); load_mindspore renames "
        f"{len(load_mindspore(networks.torch_network(name), networks.DATA / f'{name}.ckpt').renamed)}"
    )

    # 4. Dense(activation='relu'): the ReLU is inside the layer; a port without it.
    name = "encdec_same"
    net = loaded(name)
    net.bottleneck[4] = nn.Identity()
    print(f"Dense activation left out in {name}: error {error(net, name):.2e}")

    # 5. Conv2d/Conv2dTranspose defaults: has_bias=False, pad_mode='same'. torch.nn.Conv2d's are
    #    bias=True, padding=0: the port has 13 biases too many and smaller feature maps.
    name = "unet"
    net = networks.torch_network(name)
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child).__name__ == "Conv2d" and child.kernel_size == (3, 3):
                stride = child.stride
                setattr(parent, child_name, nn.Conv2d(child.in_channels, child.out_channels, 3, stride=stride))
    try:
        load_mindspore(net, networks.DATA / f"{name}.ckpt")
    except ValueError as exc:
        print(f"{name} with torch.nn.Conv2d defaults: {str(exc).splitlines()[1][:100]}...")
    result = load_mindspore(net, networks.DATA / f"{name}.ckpt", strict=False)
    with torch.no_grad():
        try:
            net.eval()(torch.from_numpy(networks.reference(name)["x"]))
        except RuntimeError as exc:
            print(f"  and with strict=False ({len(result.missing)} missing), the call fails: {str(exc)[:90]}")

    flax_traps()


def flax_traps() -> None:
    """The Flax port's own traps: BatchNorm's axis, LayerNorm's epsilon."""
    import jax.numpy as jnp
    from flax import nnx

    from convtranspose.flax import load_mindspore as load_flax

    def flax_error(model, name):
        ref = networks.reference(name)
        return float(np.abs(np.asarray(model(jnp.asarray(ref["x"]))) - ref["y"]).max())

    def flax_loaded(name):
        model = networks.flax_network(name)
        load_flax(model, networks.DATA / f"{name}.ckpt")
        return model

    name = "encdec_same"
    print(f"Flax {name}: error {flax_error(flax_loaded(name), name):.2e}")
    model = flax_loaded(name)
    model.bottleneck.layers[1].epsilon = 1e-6
    print(f"Flax LayerNorm epsilon=1e-6 (Flax's default) in {name}: error {flax_error(model, name):.2e}")
    name = "unet"
    model = flax_loaded(name)
    print(f"Flax {name}: error {flax_error(model, name):.2e}")
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.axis = -1
    try:
        print(f"Flax nnx.BatchNorm with its default axis=-1 in {name} (NCHW): error {flax_error(model, name):.2e}")
    except (ValueError, TypeError) as exc:
        print(f"Flax nnx.BatchNorm with its default axis=-1 in {name} (NCHW): {type(exc).__name__} {str(exc)[:100]}")


if __name__ == "__main__":
    main()
