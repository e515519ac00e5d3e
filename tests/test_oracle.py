"""Every engine against the float64 oracle of tests/reference.py (which shares no library code).

Random configurations over every pad mode, int and tuple forms, asymmetric padding,
output_padding, dilation, groups and bias, run through the ``engine`` fixture.
"""

import numpy as np
import pytest

import reference
from conftest import geometry

MODES = ("same", "valid", "pad")


def random_case(seed):
    """A valid configuration whose window keeps at least one row, with float32 arrays."""
    rng = np.random.default_rng(1000 + seed)
    while True:
        group = int(rng.choice([1, 1, 2, 3]))
        cin, cout = group * int(rng.integers(1, 4)), group * int(rng.integers(1, 4))
        kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        stride = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        dilation = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        mode = MODES[seed % 3]
        padding = tuple(int(p) for p in rng.integers(0, 4, 4)) if mode == "pad" else 0
        output_padding = (
            tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation)) if mode == "pad" else 0
        )
        h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((h, w), stride, dilation, kernel)]
        if mode == "pad" and (full[0] - padding[0] - padding[1] < 1 or full[1] - padding[2] - padding[3] < 1):
            continue
        cfg = dict(
            in_channels=cin,
            out_channels=cout,
            kernel_size=kernel,
            stride=stride,
            pad_mode=mode,
            padding=padding,
            output_padding=output_padding,
            dilation=dilation,
            group=group,
            has_bias=bool(rng.integers(0, 2)),
        )
        x = rng.standard_normal((int(rng.integers(1, 3)), cin, h, w)).astype(np.float32)
        wt = rng.standard_normal((cin, cout // group) + kernel).astype(np.float32)
        b = rng.standard_normal(cout).astype(np.float32) if cfg["has_bias"] else None
        return cfg, x, wt, b


@pytest.mark.parametrize("seed", range(30))
def test_engine_matches_the_float64_oracle(engine, seed):
    cfg, x, w, b = random_case(seed)
    kwargs = geometry(cfg)
    ref_y = reference.forward(x, w, b, **kwargs)
    g = np.random.default_rng(seed).standard_normal(ref_y.shape).astype(np.float32)
    ref_dx, ref_dw, ref_db = reference.backward(x, w, g, **kwargs)
    got = engine.forward_backward(cfg, x, w, b, g)
    refs = {"y": ref_y, "dx": ref_dx, "dw": ref_dw, "db": ref_db}
    for name, value in got.items():
        ref = refs[name]
        assert value.shape == ref.shape and value.dtype == np.float32, f"{engine.name} {name} {cfg}"
        tol = 1e-4 * (1 + np.abs(ref).max(initial=0))
        np.testing.assert_allclose(value, ref, rtol=0, atol=tol, err_msg=f"{engine.name} {name} {cfg}")
