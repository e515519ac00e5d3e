"""Opt-in: the library against a live MindSpore 2.10 (skipped unless `import mindspore` works).

MindSpore (about 2.5 GB) is never a dependency. To run these:
    python3 -m venv /tmp/msenv && /tmp/msenv/bin/pip install mindspore==2.10.0 pytest hypothesis
    PYTHONPATH=. /tmp/msenv/bin/python -m pytest tests/test_mindspore_parity.py
They check fresh random cases (tests/configs.py; more and larger than the golden files: batch up
to 8, channels up to 16, sizes up to 40, kernels up to 7, strides up to 6, float16 too) and that
MindSpore loads the checkpoint files we write.
"""

import json
import os

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")

import convtranspose as ct  # noqa: E402
from convtranspose import ckpt  # noqa: E402

from configs import output_shape, random_case  # noqa: E402
from conftest import GOLDEN  # noqa: E402

ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")


def _mindspore_case(cfg, x, w, b, g):
    dtype = ms.float16 if x.dtype == np.float16 else ms.float32
    net = ms.nn.Conv2dTranspose(**cfg, weight_init="zeros", bias_init="zeros", dtype=dtype)
    net.weight.set_data(ms.Tensor(w))
    if b is not None:
        net.bias.set_data(ms.Tensor(b))
    y = net(ms.Tensor(x)).asnumpy()
    grad_fn = ms.grad(
        lambda xx: ms.ops.mul(net(xx), ms.Tensor(g)).sum(), grad_position=0, weights=net.trainable_params()
    )
    dx, dparams = grad_fn(ms.Tensor(x))
    return [y, dx.asnumpy(), dparams[0].asnumpy()] + ([dparams[1].asnumpy()] if b is not None else [])


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-4), (np.float16, 2e-3)])
@pytest.mark.parametrize("seed", range(int(os.environ.get("MS_PARITY_SEEDS", "100"))))
def test_random_case_matches_live_mindspore(seed, dtype, tol):
    # larger than the golden files: batch up to 8, channels up to 16, sizes up to 40
    cfg, x, w, b = random_case(10_000 + seed, dtype, max_size=40, max_batch=8, max_channels=16)
    g = np.random.default_rng(seed).standard_normal(output_shape(cfg, x.shape)).astype(dtype)
    ours = [
        ct.conv2d_transpose(
            x, w, b, **{k: cfg[k] for k in ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")}
        )
    ]
    ours += list(
        ct.conv2d_transpose_backward(
            x, w, g, **{k: cfg[k] for k in ("stride", "pad_mode", "padding", "output_padding", "dilation", "group")}
        )
    )[: 2 + (b is not None)]
    for name, got, ref in zip(("y", "dx", "dw", "db"), ours, _mindspore_case(cfg, x, w, b, g)):
        assert got.shape == ref.shape and got.dtype == ref.dtype, (name, cfg)
        bound = tol * (1 + np.abs(ref.astype(np.float64)).max(initial=0))
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64)).max(initial=0)
        assert err <= bound, (name, cfg, x.shape, err, bound)


def test_mindspore_loads_the_files_we_write(tmp_path):
    arrays = ckpt.load(GOLDEN / "ckpt" / "decoder.ckpt")
    mixed = {
        t: (np.arange(6).reshape(2, 3) % 2).astype(t)
        for t in (
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
            "bool",
        )
    }
    for name, data, crc in (("plain.ckpt", arrays, False), ("crc.ckpt", arrays, True), ("mixed.ckpt", mixed, False)):
        ckpt.save(tmp_path / name, data, crc_check=crc)
        back = ms.load_checkpoint(str(tmp_path / name), crc_check=crc)
        for key, value in data.items():
            got = back[key].asnumpy() if hasattr(back[key], "asnumpy") else np.asarray(back[key])
            assert got.dtype == np.asarray(value).dtype and np.array_equal(got, value), (name, key)


def test_layers_saved_by_us_run_in_mindspore(tmp_path):
    expected = np.load(GOLDEN / "ckpt" / "expected.npz")
    configs = [
        {k: tuple(v) if isinstance(v, list) else v for k, v in c.items()} for c in json.loads(str(expected["configs"]))
    ]
    arrays = ckpt.load(GOLDEN / "ckpt" / "decoder.ckpt")
    prefixes = ("up1.", "blocks.0.", "blocks.1.")
    layers = [ct.Conv2dTranspose(**cfg) for cfg in configs]
    params = {}
    for layer, prefix in zip(layers, prefixes):
        layer.load_parameters(arrays, prefix=prefix)
        params.update(layer.parameters_dict(prefix=prefix))
    ckpt.save(tmp_path / "layers.ckpt", params)

    class Decoder(ms.nn.Cell):
        def __init__(self):
            super().__init__()
            self.up1 = ms.nn.Conv2dTranspose(**configs[0])
            self.act = ms.nn.ReLU()
            self.blocks = ms.nn.SequentialCell(
                [ms.nn.Conv2dTranspose(**configs[1]), ms.nn.Conv2dTranspose(**configs[2])]
            )

        def construct(self, x):
            return self.blocks(self.act(self.up1(x)))

    net = Decoder()
    assert ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "layers.ckpt"))) == ([], [])
    y = net(ms.Tensor(expected["x"])).asnumpy()
    np.testing.assert_allclose(y, expected["y"], rtol=1e-4, atol=1e-4)
