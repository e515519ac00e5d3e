"""The core imports NumPy only, and the project declares NumPy as its only runtime dependency."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_leaves_frameworks_out():
    code = ("import sys, convtranspose, convtranspose.ckpt; "
            "print(sorted(m for m in ('torch', 'jax', 'flax', 'safetensors', 'ml_dtypes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_numpy_is_the_only_runtime_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0].split("=")[0] for dep in project["dependencies"]] == ["numpy"]


def test_demo_runs_and_prints_the_pages_shape():
    out = subprocess.run([sys.executable, "examples/demo.py"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "(1, 64, 19, 53)" in out.stdout and "valid" in out.stdout
