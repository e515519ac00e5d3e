"""The oracles themselves (tests/reference.py) against MindSpore's recorded cases, with no library code.

Every engine is checked against the oracle (test_oracle.py) and the benchmark relies on it, so the
oracle is checked here against the real MindSpore's outputs and gradients on every recorded case.
"""

import numpy as np
import pytest

import reference
from conftest import assert_close, geometry, load_golden


@pytest.mark.parametrize("name, tol", [("fp32_golden", 1e-4), ("fp16_golden", 2e-3)])
def test_oracle_reproduces_every_recorded_case(request, name, tol):
    configs, data = request.getfixturevalue(name)
    for i, cfg in enumerate(configs):
        x, w, g = data[f"{i}_x"], data[f"{i}_w"], data[f"{i}_g"]
        kwargs = geometry(cfg)
        y = reference.forward(x, w, data[f"{i}_b"] if cfg["has_bias"] else None, **kwargs)
        dx, dw, db = reference.backward(x, w, g, **kwargs)
        got = {"y": y, "dx": dx, "dw": dw}
        if cfg["has_bias"]:
            got["db"] = db
        for key, value in got.items():
            ref = data[f"{i}_{key}"]
            assert_close(value.astype(ref.dtype), ref, tol, f"case {i} {key} {cfg}")


@pytest.mark.parametrize("name, tol", [("conv2d_seed1.npz", 1e-4), ("conv2d_fp16.npz", 2e-3)])
def test_conv2d_oracle_reproduces_every_recorded_case(name, tol):
    """The nn.Conv2d oracle (conv2d_forward, conv2d_backward) against MindSpore's recorded Conv2d cases."""
    configs, data = load_golden(name)
    for i, cfg in enumerate(configs):
        x, w, g = data[f"{i}_x"], data[f"{i}_w"], data[f"{i}_g"]
        kwargs = geometry(cfg)
        y = reference.conv2d_forward(x, w, data[f"{i}_b"] if cfg["has_bias"] else None, **kwargs)
        dx, dw, db = reference.conv2d_backward(x, w, g, **kwargs)
        got = {"y": y, "dx": dx, "dw": dw}
        if cfg["has_bias"]:
            got["db"] = db
        for key, value in got.items():
            ref = data[f"{i}_{key}"]
            assert_close(value.astype(ref.dtype), ref, tol, f"conv2d case {i} {key} {cfg}")


def test_oracle_is_float64_and_imports_no_library_code():
    source = open(reference.__file__, encoding="utf-8").read()
    assert "convtranspose" not in source.split('"""', 2)[2]  # beyond the module docstring
    y = reference.forward(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32))
    assert y.dtype == np.float64
    y = reference.conv2d_forward(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32))
    assert y.dtype == np.float64
