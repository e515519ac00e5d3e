"""The oracle itself (tests/reference.py) against MindSpore's recorded cases, with no library code.

Every engine is checked against the oracle (test_oracle.py) and the benchmark relies on it, so the
oracle is checked here against the real MindSpore's outputs and gradients on every recorded case.
"""

import numpy as np
import pytest

import reference
from conftest import assert_close, geometry


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


def test_oracle_is_float64_and_imports_no_library_code():
    source = open(reference.__file__, encoding="utf-8").read()
    assert "convtranspose" not in source.split('"""', 2)[2]  # beyond the module docstring
    y = reference.forward(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32))
    assert y.dtype == np.float64


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((2, 4, 7, 9), (6, 4, 3, 3), dict(stride=2, pad_mode="same")),  # odd input: the extra row at the bottom
        ((1, 3, 11, 10), (4, 3, 7, 7), dict(stride=2, pad_mode="same")),  # stem-like: padding on every side
        ((2, 6, 8, 7), (6, 1, 3, 3), dict(stride=1, pad_mode="same", group=6)),  # depthwise
        ((1, 4, 9, 8), (2, 2, 3, 2), dict(stride=(1, 3), pad_mode="pad", padding=(2, 0, 1, 4), group=2)),
        ((2, 3, 10, 9), (5, 3, 3, 3), dict(stride=1, pad_mode="same", dilation=(2, 3))),
        ((1, 2, 9, 6), (3, 2, 2, 4), dict(stride=3, pad_mode="valid", dilation=2)),
        ((1, 2, 3, 3), (2, 2, 5, 5), dict(stride=1, pad_mode="pad", padding=4)),  # taps that read only padding
    ],
)
def test_conv2d_oracle_by_taps_matches_the_loop_oracle(x_shape, w_shape, kwargs):
    """The benchmark's fast Conv2d oracle forms the same sums as the per-entry loop oracle."""
    rng = np.random.default_rng(sum(x_shape) + sum(w_shape))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    x[0, 0, 1, 2] = np.nan  # NaN reaches exactly the entries that read it in both
    y = reference.conv2d_forward(x, w, b, **kwargs)
    np.testing.assert_allclose(reference.conv2d_forward_by_taps(x, w, b, **kwargs), y, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    for got, ref in zip(
        reference.conv2d_backward_by_taps(x, w, g, **kwargs), reference.conv2d_backward(x, w, g, **kwargs)
    ):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
