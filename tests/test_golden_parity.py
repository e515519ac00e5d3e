"""Every engine against outputs and gradients recorded from the real MindSpore 2.10.

Runs through the ``engine`` fixture of conftest.py: the NumPy layer, the torch functional form
(autograd), the jax function (``jax.vjp``) and the Flax module, each on the same cases.
"""

import numpy as np
import pytest

from conftest import assert_close, skip_unless_sampled

FP32_TOL = 1e-4
FP16_TOL = 2e-3
# The float16 cases' results by (engine, case): test_fp16_case computes them (every case, Flax
# included, since the bit-exact count needs them all), the count reads them back instead of
# running every case again. conftest.SHARED_UNITS sends both tests to one pytest worker; a count
# run alone (or on a case never run) computes what it lacks.
_FP16_RESULTS: dict = {}


def _run_case(engine, golden, index):
    """The engine's y, dx, dw (and db) on case ``index``, beside the references."""
    configs, data = golden
    cfg = dict(configs[index])
    bias = data[f"{index}_b"] if cfg["has_bias"] else None
    got = engine.forward_backward(cfg, data[f"{index}_x"], data[f"{index}_w"], bias, data[f"{index}_g"])
    names = ("y", "dx", "dw", "db") if cfg["has_bias"] else ("y", "dx", "dw")
    assert set(got) == set(names), f"case {index}: the engine returned {sorted(got)}"
    return cfg, {name: (got[name], data[f"{index}_{name}"]) for name in names}


def _fp16_case(engine, golden, index):
    """_run_case on the float16 file, each (engine, case) computed once per process."""
    key = (engine.name, index)
    if key not in _FP16_RESULTS:
        _FP16_RESULTS[key] = _run_case(engine, golden, index)
    return _FP16_RESULTS[key]


def _check_case(engine, golden, index, tol, label, run=_run_case):
    cfg, pairs = run(engine, golden, index)
    for name, (got, ref) in pairs.items():
        assert_close(got, ref, tol, f"{engine.name} {label} case {index} {name} {cfg}")


def test_fp32_golden_has_300_cases(fp32_golden):
    configs, _ = fp32_golden
    assert len(configs) == 300


@pytest.mark.parametrize("index", range(300))
def test_fp32_case(engine, fp32_golden, index):
    skip_unless_sampled(engine.name, index)
    _check_case(engine, fp32_golden, index, FP32_TOL, "fp32")


@pytest.mark.parametrize("index", range(40))
def test_fp16_case(engine, fp16_golden, index):
    _check_case(engine, fp16_golden, index, FP16_TOL, "fp16", run=_fp16_case)


def test_fp16_output_is_bit_exact_with_mindspore(engine, fp16_golden):
    """y = fp16(fp16(conv in fp32) + bias) reproduces MindSpore bit for bit (but rounding ties)."""
    configs, data = fp16_golden
    same = total = 0
    for index in range(len(configs)):
        _, pairs = _fp16_case(engine, fp16_golden, index)
        y, ref = pairs["y"]
        same += int(np.sum(y.view(np.uint16) == ref.view(np.uint16)))
        total += y.size
    assert total == 65267
    assert same >= total - 5, f"{engine.name}: {total - same} of {total} float16 outputs differ from MindSpore's bits"
