"""The core imports NumPy only, and the project declares NumPy as its only runtime dependency."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_leaves_frameworks_out():
    code = (
        "import sys, convtranspose, convtranspose.ckpt; "
        "print(sorted(m for m in ('torch', 'jax', 'flax', 'safetensors', 'ml_dtypes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_numpy_is_the_only_runtime_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0].split("=")[0] for dep in project["dependencies"]] == ["numpy"]


def test_demo_runs_and_prints_the_pages_shape():
    out = subprocess.run([sys.executable, "examples/demo.py"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "(1, 64, 19, 53)" in out.stdout and "valid" in out.stdout


def test_the_core_works_with_no_framework_installed():
    """With torch, jax and flax unimportable (as in a NumPy-only install), the core still computes,
    and the engine modules fail with an ImportError that says what to install."""
    code = (
        "import sys\n"
        "for name in ('torch', 'jax', 'jaxlib', 'flax', 'optax'):\n"
        "    sys.modules[name] = None  # 'import name' now raises ImportError\n"
        "import numpy as np, convtranspose as ct\n"
        "print(ct.Conv2dTranspose(2, 3, 3, stride=2)(np.ones((1, 2, 4, 4), np.float32)).shape)\n"
        "for module in ('convtranspose.torch', 'convtranspose.jax', 'convtranspose.flax'):\n"
        "    try:\n"
        "        __import__(module)\n"
        "    except ImportError as exc:\n"
        "        print(module, 'ImportError', 'pip install' in str(exc))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "(1, 3, 8, 8)"
    assert lines[1:] == [f"convtranspose.{name} ImportError True" for name in ("torch", "jax", "flax")]


def _pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_written_once():
    """pyproject.toml takes the version from convtranspose/__init__.py (hatchling reads it there)."""
    import convtranspose

    config = _pyproject()
    assert "version" not in config["project"] and config["project"]["dynamic"] == ["version"]
    assert config["tool"]["hatch"]["version"]["path"] == "convtranspose/__init__.py"
    assert f'__version__ = "{convtranspose.__version__}"' in (ROOT / "convtranspose" / "__init__.py").read_text()


def test_the_license_file_is_the_declared_apache_license():
    project = _pyproject()["project"]
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text


def test_the_torch_extra_accepts_a_range_while_tests_pin_one_release():
    extras = _pyproject()["project"]["optional-dependencies"]
    torch_of = {name: [d for d in deps if d.startswith("torch")] for name, deps in extras.items()}
    assert torch_of["torch"] == ["torch>=2.4"]
    assert torch_of["test"] == torch_of["bench"] == ["torch==2.13.0"]
