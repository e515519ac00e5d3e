"""PyTorch and Flax NNX ports of the three MindSpore networks in ``tests/data/networks/``.

Each port follows the MindSpore source stored in ``NAME.npz`` (``source``) line by line: the same
attribute names and container numbering, so that :func:`convtranspose.torch.load_mindspore` and
:func:`convtranspose.flax.load_mindspore` place every checkpoint entry. The convolutions are this
library's (MindSpore's arguments and 'same' padding); norms, pooling and dense layers are the
framework's own, with MindSpore's hyperparameters translated:

* BatchNorm momentum: MindSpore's ``momentum=m`` keeps ``m`` of the old statistic; PyTorch's keeps
  ``1 - momentum`` (so ``momentum=1 - m``), Flax's keeps ``momentum`` (so ``momentum=m``).
* LayerNorm epsilon: MindSpore's default is 1e-7 (PyTorch's and Flax's 1e-5 and 1e-6).
* ``nn.Dense(..., activation='relu')`` applies the ReLU inside the layer: here a ReLU after it.
* Flax normalises the last axis by default: ``nnx.BatchNorm(axis=1)`` for NCHW, and GroupNorm on
  a channels-last view.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "networks"
NAMES = ("unet", "dcgan_g", "encdec_same")


def reference(name: str) -> dict:
    """The input ``x``, MindSpore's eval output ``y``, ``arch`` and ``meta`` (parsed) of a network."""
    with np.load(DATA / f"{name}.npz") as data:
        return {
            "x": data["x"],
            "y": data["y"],
            "arch": json.loads(str(data["arch"])),
            "meta": json.loads(str(data["meta"])),
        }


def constructor_args(name: str) -> dict:
    """The arguments MindSpore's network was built with (``meta.ctor``)."""
    return reference(name)["meta"]["ctor"]


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------


def torch_networks():
    """``{name: class}`` of the PyTorch ports (imports torch)."""
    import torch
    from torch import nn

    from convtranspose.torch import Conv2d, Conv2dTranspose

    def double_conv(in_channels, out_channels):
        return nn.Sequential(
            Conv2d(in_channels, out_channels, 3),
            nn.BatchNorm2d(out_channels),  # MindSpore momentum 0.9 = PyTorch's default 0.1
            nn.ReLU(),
            Conv2d(out_channels, out_channels, 3),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    class Up(nn.Module):
        def __init__(self, in_channels, out_channels, kernel_size=2, padding=0):
            super().__init__()
            pad_mode = "pad" if padding else "same"
            self.up = Conv2dTranspose(
                in_channels, in_channels // 2, kernel_size, stride=2, pad_mode=pad_mode, padding=padding
            )
            self.conv = double_conv(in_channels, out_channels)

        def forward(self, x, skip):
            return self.conv(torch.cat((skip, self.up(x)), dim=1))

    class UNet(nn.Module):
        def __init__(self, in_channels, n_classes, base):
            super().__init__()
            self.inc = double_conv(in_channels, base)
            self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.down1 = double_conv(base, base * 2)
            self.down2 = nn.Sequential(Conv2d(base * 2, base * 2, 3, stride=2), nn.BatchNorm2d(base * 2), nn.ReLU())
            self.bottom = double_conv(base * 2, base * 4)
            self.up1 = Up(base * 4, base * 2, kernel_size=2)
            self.up2 = Up(base * 2, base, kernel_size=4, padding=1)
            self.outc = Conv2d(base, n_classes, 1, has_bias=True)

        def forward(self, x):
            x1 = self.inc(x)
            x2 = self.down1(self.pool(x1))
            x3 = self.bottom(self.down2(x2))
            return self.outc(self.up2(self.up1(x3, x2), x1))

    def convt(in_channels, out_channels, kernel_size, stride=1, padding=0):
        return Conv2dTranspose(in_channels, out_channels, kernel_size, stride=stride, padding=padding, pad_mode="pad")

    class Generator(nn.Module):
        def __init__(self, latent_size, ngf, nc):
            super().__init__()
            self.generator = nn.Sequential(
                convt(latent_size, ngf * 4, 4, 1, 0),
                nn.BatchNorm2d(ngf * 4, momentum=0.9),  # MindSpore momentum=0.1
                nn.ReLU(),
                convt(ngf * 4, ngf * 2, 4, 2, 1),
                nn.BatchNorm2d(ngf * 2, momentum=0.9),
                nn.ReLU(),
                convt(ngf * 2, ngf, 4, 2, 1),
                nn.BatchNorm2d(ngf, momentum=0.9),
                nn.ReLU(),
                convt(ngf, nc, 4, 2, 1),
                nn.Tanh(),
            )

        def forward(self, x):
            return self.generator(x)

    class EncDec(nn.Module):
        def __init__(self, in_channels, out_channels, c1, c2, code_hw, hidden):
            super().__init__()
            self.code_shape = (c2,) + tuple(code_hw)
            code = c2 * code_hw[0] * code_hw[1]
            self.encoder = nn.Sequential(
                Conv2d(in_channels, c1, 4, stride=2, pad_mode="same"),
                nn.GroupNorm(2, c1),
                nn.ReLU(),
                Conv2d(c1, c1, 3, pad_mode="same", dilation=2, group=2),
                nn.ReLU(),
                Conv2d(c1, c2, 4, stride=3, pad_mode="valid", has_bias=True),
                nn.ReLU(),
            )
            self.flatten = nn.Flatten()
            self.bottleneck = nn.Sequential(
                nn.Linear(code, hidden),
                nn.LayerNorm(hidden, eps=1e-7),  # MindSpore's default epsilon
                nn.ReLU(),
                nn.Linear(hidden, code),
                nn.ReLU(),  # Dense(activation='relu') runs it inside the layer
            )
            self.decoder = nn.Sequential(
                Conv2dTranspose(c2, c1, 3, stride=3, pad_mode="valid"),
                nn.BatchNorm2d(c1),
                nn.ReLU(),
                Conv2dTranspose(c1, c1, (5, 3), stride=2, pad_mode="same", group=2, has_bias=True),
                nn.ReLU(),
                Conv2dTranspose(c1, out_channels, 3, stride=2, pad_mode="valid", dilation=2, has_bias=True),
            )

        def forward(self, x):
            h = self.bottleneck(self.flatten(self.encoder(x)))
            return self.decoder(h.reshape((-1,) + self.code_shape))

    return {"unet": UNet, "dcgan_g": Generator, "encdec_same": EncDec}


def torch_network(name: str):
    """The PyTorch port of ``name``, built with MindSpore's constructor arguments, in eval mode."""
    return torch_networks()[name](**constructor_args(name)).eval()


# ----------------------------------------------------------------------------------------------
# Flax NNX
# ----------------------------------------------------------------------------------------------


def flax_networks():
    """``{name: class}`` of the Flax NNX ports (imports jax and flax)."""
    import jax.numpy as jnp
    from flax import nnx
    from jax import lax

    from convtranspose.flax import Conv2d, Conv2dTranspose

    def batch_norm(num_features, rngs, momentum=0.9):
        # NCHW: the channel axis is 1; Flax's momentum is MindSpore's (the share of the old statistic)
        return nnx.BatchNorm(num_features, axis=1, momentum=momentum, epsilon=1e-5, use_running_average=True, rngs=rngs)

    def max_pool_2x2(x):  # nn.MaxPool2d(kernel_size=2, stride=2) on NCHW
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    class GroupNormNCHW(nnx.GroupNorm):
        """nnx.GroupNorm normalises channels-last arrays: NCHW in and out."""

        def __call__(self, x, **kwargs):
            return jnp.moveaxis(super().__call__(jnp.moveaxis(x, 1, -1), **kwargs), -1, 1)

    def double_conv(in_channels, out_channels, rngs):
        return nnx.Sequential(
            Conv2d(in_channels, out_channels, 3, rngs=rngs),
            batch_norm(out_channels, rngs),
            nnx.relu,
            Conv2d(out_channels, out_channels, 3, rngs=rngs),
            batch_norm(out_channels, rngs),
            nnx.relu,
        )

    class Up(nnx.Module):
        def __init__(self, in_channels, out_channels, kernel_size=2, padding=0, *, rngs):
            pad_mode = "pad" if padding else "same"
            self.up = Conv2dTranspose(
                in_channels, in_channels // 2, kernel_size, stride=2, pad_mode=pad_mode, padding=padding, rngs=rngs
            )
            self.conv = double_conv(in_channels, out_channels, rngs)

        def __call__(self, x, skip):
            return self.conv(jnp.concatenate((skip, self.up(x)), axis=1))

    class UNet(nnx.Module):
        def __init__(self, in_channels, n_classes, base, *, rngs):
            self.inc = double_conv(in_channels, base, rngs)
            self.down1 = double_conv(base, base * 2, rngs)
            self.down2 = nnx.Sequential(
                Conv2d(base * 2, base * 2, 3, stride=2, rngs=rngs), batch_norm(base * 2, rngs), nnx.relu
            )
            self.bottom = double_conv(base * 2, base * 4, rngs)
            self.up1 = Up(base * 4, base * 2, kernel_size=2, rngs=rngs)
            self.up2 = Up(base * 2, base, kernel_size=4, padding=1, rngs=rngs)
            self.outc = Conv2d(base, n_classes, 1, has_bias=True, rngs=rngs)

        def __call__(self, x):
            x1 = self.inc(x)
            x2 = self.down1(max_pool_2x2(x1))
            x3 = self.bottom(self.down2(x2))
            return self.outc(self.up2(self.up1(x3, x2), x1))

    def convt(in_channels, out_channels, kernel_size, stride, padding, rngs):
        return Conv2dTranspose(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, pad_mode="pad", rngs=rngs
        )

    class Generator(nnx.Module):
        def __init__(self, latent_size, ngf, nc, *, rngs):
            self.generator = nnx.Sequential(
                convt(latent_size, ngf * 4, 4, 1, 0, rngs),
                batch_norm(ngf * 4, rngs, momentum=0.1),
                nnx.relu,
                convt(ngf * 4, ngf * 2, 4, 2, 1, rngs),
                batch_norm(ngf * 2, rngs, momentum=0.1),
                nnx.relu,
                convt(ngf * 2, ngf, 4, 2, 1, rngs),
                batch_norm(ngf, rngs, momentum=0.1),
                nnx.relu,
                convt(ngf, nc, 4, 2, 1, rngs),
                jnp.tanh,
            )

        def __call__(self, x):
            return self.generator(x)

    class EncDec(nnx.Module):
        def __init__(self, in_channels, out_channels, c1, c2, code_hw, hidden, *, rngs):
            self.code_shape = (c2,) + tuple(code_hw)
            code = c2 * code_hw[0] * code_hw[1]
            self.encoder = nnx.Sequential(
                Conv2d(in_channels, c1, 4, stride=2, pad_mode="same", rngs=rngs),
                GroupNormNCHW(c1, num_groups=2, epsilon=1e-5, rngs=rngs),
                nnx.relu,
                Conv2d(c1, c1, 3, pad_mode="same", dilation=2, group=2, rngs=rngs),
                nnx.relu,
                Conv2d(c1, c2, 4, stride=3, pad_mode="valid", has_bias=True, rngs=rngs),
                nnx.relu,
            )
            # uniform: the checkpoint replaces every value, and Flax's default initializer costs an XLA compile
            dense_init = nnx.initializers.uniform()
            self.bottleneck = nnx.Sequential(
                nnx.Linear(code, hidden, kernel_init=dense_init, rngs=rngs),
                nnx.LayerNorm(hidden, epsilon=1e-7, rngs=rngs),
                nnx.relu,
                nnx.Linear(hidden, code, kernel_init=dense_init, rngs=rngs),
                nnx.relu,
            )
            self.decoder = nnx.Sequential(
                Conv2dTranspose(c2, c1, 3, stride=3, pad_mode="valid", rngs=rngs),
                batch_norm(c1, rngs),
                nnx.relu,
                Conv2dTranspose(c1, c1, (5, 3), stride=2, pad_mode="same", group=2, has_bias=True, rngs=rngs),
                nnx.relu,
                Conv2dTranspose(c1, out_channels, 3, stride=2, pad_mode="valid", dilation=2, has_bias=True, rngs=rngs),
            )

        def __call__(self, x):
            h = self.bottleneck(self.encoder(x).reshape(x.shape[0], -1))
            return self.decoder(h.reshape((-1,) + self.code_shape))

    return {"unet": UNet, "dcgan_g": Generator, "encdec_same": EncDec}


def flax_network(name: str, seed: int = 0):
    """The Flax NNX port of ``name``, built with MindSpore's constructor arguments."""
    from flax import nnx

    return flax_networks()[name](**constructor_args(name), rngs=nnx.Rngs(seed))
