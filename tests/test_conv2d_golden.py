"""MindSpore's nn.Conv2d: every engine against outputs and gradients recorded from the real MindSpore 2.10.

The same checks as test_golden_parity.py (whose helpers this reuses), through the ``conv2d_engine``
fixture: the NumPy layer, the torch function (autograd), the jax function (``jax.vjp``) and the
Flax module (every tenth case), on ``conv2d_seed1.npz`` (300 float32 cases) and
``conv2d_fp16.npz`` (40 float16 cases).
"""

import numpy as np
import pytest

from conftest import load_golden, skip_unless_sampled
from test_golden_parity import FP16_TOL, FP32_TOL, _check_case, _fp16_case, _run_sampled_case


@pytest.fixture(scope="session")
def conv2d_fp32_golden():
    """``conv2d_seed1.npz``: 300 float32 nn.Conv2d cases recorded from MindSpore."""
    return load_golden("conv2d_seed1.npz")


@pytest.fixture(scope="session")
def conv2d_fp16_golden():
    """``conv2d_fp16.npz``: 40 float16 nn.Conv2d cases recorded from MindSpore."""
    return load_golden("conv2d_fp16.npz")


def test_conv2d_golden_files_hold_what_their_readme_says(conv2d_fp32_golden, conv2d_fp16_golden):
    assert len(conv2d_fp32_golden[0]) == 300 and len(conv2d_fp16_golden[0]) == 40
    assert all("output_padding" not in cfg for cfg in conv2d_fp32_golden[0])


@pytest.mark.parametrize("index", range(300))
def test_conv2d_fp32_case(conv2d_engine, conv2d_fp32_golden, index):
    skip_unless_sampled(conv2d_engine.name, index)
    _check_case(conv2d_engine, conv2d_fp32_golden, index, FP32_TOL, "conv2d fp32", run=_run_sampled_case)


@pytest.mark.parametrize("index", range(40))
def test_conv2d_fp16_case(conv2d_engine, conv2d_fp16_golden, index):
    _check_case(conv2d_engine, conv2d_fp16_golden, index, FP16_TOL, "conv2d fp16", run=_fp16_case)


def test_conv2d_fp16_is_bit_exact_with_mindspore(conv2d_engine, conv2d_fp16_golden):
    """y = fp16(fp16(conv in fp32) + bias), gradients fp16(exact): MindSpore's bits but for rounding ties.

    A float32 accumulation order can round the other way where the exact value lies within
    float32 error of a float16 midpoint: one value of the 20,659 here.
    """
    configs, _ = conv2d_fp16_golden
    same = total = 0
    for index in range(len(configs)):
        _, pairs = _fp16_case(conv2d_engine, conv2d_fp16_golden, index)
        for got, ref in pairs.values():
            same += int(np.sum(got.view(np.uint16) == ref.view(np.uint16)))
            total += got.size
    assert total == 20659
    assert same >= total - 2, f"{conv2d_engine.name}: {total - same} of {total} float16 values differ from MindSpore's"
