"""Every engine against the float64 oracle of tests/reference.py (which shares no library code).

Random configurations (tests/configs.py) over every pad mode, int and tuple forms, asymmetric
padding, output_padding, dilation, groups and depthwise, and bias, run through the ``engine`` fixture.
"""

import numpy as np
import pytest

import reference
from configs import MODES, random_case
from conftest import geometry


@pytest.mark.parametrize("seed", range(30))
def test_engine_matches_the_float64_oracle(engine, seed):
    cfg, x, w, b = random_case(1000 + seed, max_size=6, max_batch=2, max_kernel=5, pad_mode=MODES[seed % 3])
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
