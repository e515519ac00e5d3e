"""Shared fixtures: where the golden data lives, and one comparison helper."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden"
IN_CI = os.environ.get("CI") == "true"


def golden_path(name: str) -> Path:
    """Path of a golden file; skips locally, fails in CI, when it is missing."""
    path = GOLDEN / name
    if not path.exists():
        message = f"golden data {path} is missing (expected ../shared/golden beside the project)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def load_golden(name: str):
    """``(configs, arrays)`` of a golden .npz (configs: list of constructor kwargs with tuples)."""
    data = np.load(golden_path(name))
    configs = [{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
               for cfg in json.loads(str(data["configs"]))]
    return configs, data


def assert_close(got, ref, tol: float, label: str) -> None:
    """Elementwise |got - ref| <= tol + tol*|ref|, with matching shape and dtype."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{label}: shape {got.shape} != reference {ref.shape}"
    assert got.dtype == ref.dtype, f"{label}: dtype {got.dtype} != reference {ref.dtype}"
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bound = tol + tol * np.abs(ref.astype(np.float64))
    if err.size and not np.all(err <= bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{label}: {int(np.sum(err > bound))} of {err.size} elements off; worst at "
                             f"{worst}: got {got[worst]}, reference {ref[worst]}")
