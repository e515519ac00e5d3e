"""The NumPy engine against outputs and gradients recorded from the real MindSpore 2.10."""

import numpy as np
import pytest

import convtranspose as ct

from conftest import assert_close, load_golden

FP32_TOL = 1e-4
FP16_TOL = 2e-3


def _run_case(cfg, data, i):
    """Layer forward/backward on case i; returns {name: (got, reference)}."""
    cfg = dict(cfg)
    net = ct.Conv2dTranspose(**cfg, dtype=data[f"{i}_x"].dtype)
    net.weight.set_data(data[f"{i}_w"])
    if cfg["has_bias"]:
        net.bias.set_data(data[f"{i}_b"])
    y = net(data[f"{i}_x"])
    dx = net.backward(data[f"{i}_g"])
    pairs = {"y": (y, data[f"{i}_y"]), "dx": (dx, data[f"{i}_dx"]),
             "dw": (net.weight.grad, data[f"{i}_dw"])}
    if cfg["has_bias"]:
        pairs["db"] = (net.bias.grad, data[f"{i}_db"])
    return pairs


@pytest.fixture(scope="module")
def fp32_golden():
    return load_golden("golden_seed1.npz")


@pytest.fixture(scope="module")
def fp16_golden():
    return load_golden("golden_fp16.npz")


def test_fp32_golden_has_300_cases(fp32_golden):
    configs, _ = fp32_golden
    assert len(configs) == 300


def _check_case(golden, index, tol, label):
    configs, data = golden
    cfg = configs[index]
    for name, (got, ref) in _run_case(cfg, data, index).items():
        assert_close(got, ref, tol, f"{label} case {index} {name} {cfg}")


@pytest.mark.parametrize("index", range(300))
def test_fp32_case(fp32_golden, index):
    _check_case(fp32_golden, index, FP32_TOL, "fp32")


@pytest.mark.parametrize("index", range(40))
def test_fp16_case(fp16_golden, index):
    _check_case(fp16_golden, index, FP16_TOL, "fp16")


def test_fp16_output_is_bit_exact_with_mindspore(fp16_golden):
    """y = fp16(fp16(conv in fp32) + bias) reproduces MindSpore bit for bit (but rounding ties)."""
    configs, data = fp16_golden
    same = total = 0
    for i, cfg in enumerate(configs):
        y, ref = _run_case(cfg, data, i)["y"]
        same += int(np.sum(y.view(np.uint16) == ref.view(np.uint16)))
        total += y.size
    assert total == 65267
    assert same >= total - 5, f"{total - same} of {total} float16 outputs differ from MindSpore's bits"
