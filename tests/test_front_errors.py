"""Clear errors at the front ends: bad seeds, and tensors PyTorch's kernels cannot read (issue 21)."""

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import initializer


@pytest.fixture(autouse=True)
def _keep_the_seed(monkeypatch):
    monkeypatch.setattr(initializer, "_rng", initializer._rng)


@pytest.mark.parametrize(
    "seed, error, echo",
    [
        (-1, ValueError, "seed=-1"),
        (2**32, ValueError, "seed=4294967296"),
        ("1", TypeError, "seed='1'"),
        (1.5, TypeError, "seed=1.5"),
        (True, TypeError, "seed=True"),
        ([1, 2], TypeError, r"seed=\[1, 2\]"),
        (np.int64(3), TypeError, r"seed=np.int64\(3\) of type int64"),
    ],
)
def test_set_seed_refuses_what_mindspores_set_seed_refuses_naming_seed(seed, error, echo):
    """Found by the adversarial round: NumPy's messages without 'seed', and True or [1, 2] accepted."""
    with pytest.raises(error, match=r"seed must be an int in \[0, 2\*\*32 - 1\] or None, got " + echo):
        ct.set_seed(seed)


@pytest.mark.parametrize("seed", [0, 2**32 - 1, None])
def test_set_seed_takes_the_whole_32_bit_range_and_none(seed):
    ct.set_seed(seed)
    first = ct.initializer.initializer("normal", (3,), np.float32)
    ct.set_seed(seed)
    second = ct.initializer.initializer("normal", (3,), np.float32)
    assert (first == second).all() == (seed is not None)
