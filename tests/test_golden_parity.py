"""Every engine against outputs and gradients recorded from the real MindSpore 2.10.

Runs through the ``engine`` fixture of conftest.py: the NumPy layer, the torch functional form
(autograd), the jax function (``jax.vjp``) and the Flax module, each on the same cases.
"""

import numpy as np
import pytest

from conftest import GOLDEN_CHUNK, assert_close, is_sampled, skip_unless_sampled

FP32_TOL = 1e-4
FP16_TOL = 2e-3
# The float16 cases' results by (engine, case): test_fp16_case computes them (every case, Flax
# included, since the bit-exact count needs them all), the count reads them back instead of
# running every case again. conftest.SHARED_UNITS sends both tests to one pytest worker; a count
# run alone (or on a case never run) computes what it lacks.
_FP16_RESULTS: dict = {}
# Results computed with a chunk of cases and not yet read, by ((engine, layer, file), case).
_CHUNK_RESULTS: dict = {}


def _run_case(engine, golden, index, sampled=lambda engine_name, index: True):
    """The engine's y, dx, dw (and db) on case ``index``, beside the references.

    The engine computes the whole chunk of ``conftest.GOLDEN_CHUNK`` cases that holds ``index``
    (those of them ``sampled`` for it) in one ``forward_backward_many`` call, and later cases of
    the chunk read their results back; conftest's scheduler sends a chunk to one worker.
    """
    configs, data = golden
    key = (engine.name, engine.layer, id(data))
    if (key, index) not in _CHUNK_RESULTS:
        first = index - index % GOLDEN_CHUNK
        chunk = [i for i in range(first, min(first + GOLDEN_CHUNK, len(configs))) if sampled(engine.name, i)]
        cases = [
            (
                dict(configs[i]),
                data[f"{i}_x"],
                data[f"{i}_w"],
                data[f"{i}_b"] if configs[i]["has_bias"] else None,
                data[f"{i}_g"],
            )
            for i in chunk
        ]
        for i, got in zip(chunk, engine.forward_backward_many(cases)):
            _CHUNK_RESULTS[key, i] = got
    got = _CHUNK_RESULTS.pop((key, index))
    cfg = configs[index]
    names = ("y", "dx", "dw", "db") if cfg["has_bias"] else ("y", "dx", "dw")
    assert set(got) == set(names), f"case {index}: the engine returned {sorted(got)}"
    return cfg, {name: (got[name], data[f"{index}_{name}"]) for name in names}


def _run_sampled_case(engine, golden, index):
    """_run_case for a float32 case, whose chunk holds the cases the engine samples (conftest)."""
    return _run_case(engine, golden, index, sampled=is_sampled)


def _fp16_case(engine, golden, index):
    """_run_case on the float16 file, each (engine, case) computed once per process."""
    key = (engine.name, engine.layer, index)
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
    _check_case(engine, fp32_golden, index, FP32_TOL, "fp32", run=_run_sampled_case)


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
