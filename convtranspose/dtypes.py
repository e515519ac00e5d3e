"""Parameter dtypes: NumPy dtypes, their names, and MindSpore-style names.

The layer computes in float16, float32 or float64. MindSpore itself accepts any of its dtypes
at construction and fails at the call for everything but float16/float32; we refuse the
non-float ones at construction (TypeError) and compute float64 as an extension.
"""

from __future__ import annotations

from typing import Any

import numpy as np

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

FLOAT_DTYPES = (float16, float32, float64)

# MindSpore's own spellings (str(mindspore.float16) == 'Float16', the type names 'float16',
# 'mindspore.float16') and the usual short names. Looked up in lower case.
_NAMES = {
    "float16": float16, "half": float16, "fp16": float16,
    "float32": float32, "single": float32, "fp32": float32,
    "float64": float64, "double": float64, "fp64": float64,
}


def resolve_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Return the NumPy float dtype meant by ``dtype``.

    Accepts NumPy dtypes and scalar types (``np.float16``), their names (``'float16'``), and
    MindSpore-style names (``'Float16'``, ``'mindspore.float16'``, ``'half'``).

    Raises:
        ValueError: ``dtype`` is None (MindSpore: "init, dtype and shape must have values").
        TypeError: anything that is not float16, float32 or float64.
    """
    if dtype is None:
        raise ValueError(f"{name} must be float16, float32 or float64, got {name}=None")
    resolved = None
    if isinstance(dtype, str):
        key = dtype.lower()
        if key.startswith("mindspore."):
            key = key[len("mindspore."):]
        resolved = _NAMES.get(key)
    if resolved is None:
        try:
            resolved = np.dtype(dtype)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be float16, float32 or float64, got {name}={dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, float32 or float64, got {name}={dtype!r} "
                        f"({resolved.name} cannot be computed by a convolution layer)")
    return resolved


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (a big-endian float32 is still float32 here)."""
    return dtype.newbyteorder("=")


def check_float_array(array: np.ndarray, name: str) -> None:
    """Refuse arrays whose dtype the engines cannot compute in.

    Raises:
        TypeError: naming ``name`` and the dtype.
    """
    if native(array.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float16, float32 or float64, got {name} of dtype "
                        f"{array.dtype.name}")
