"""Parameter dtypes: NumPy dtypes, their names, and MindSpore-style names.

The layer computes in float16, float32 or float64. MindSpore itself accepts any of its dtypes
at construction and fails at the call for everything but float16/float32; we refuse the
non-float ones at construction (TypeError) and compute float64 as an extension.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)

FLOAT_DTYPES = (float16, float32, float64)

# MindSpore's own spellings (str(mindspore.float16) == 'Float16', the type names 'float16',
# 'mindspore.float16') and the usual short names. Looked up in lower case.
_NAMES: Dict[str, np.dtype] = {
    "float16": float16,
    "half": float16,
    "fp16": float16,
    "float32": float32,
    "single": float32,
    "fp32": float32,
    "float64": float64,
    "double": float64,
    "fp64": float64,
}


def bfloat16() -> np.dtype:
    """NumPy's bfloat16 dtype (from ml_dtypes, which JAX brings and the torch extra installs).

    Raises:
        ImportError: ml_dtypes is not installed.
    """
    try:
        import ml_dtypes
    except ImportError as exc:
        raise ImportError(
            "bfloat16 parameters need ml_dtypes: pip install 'convtranspose[torch]' (or ml_dtypes)"
        ) from exc
    return np.dtype(ml_dtypes.bfloat16)


def is_bfloat16(dtype: Any) -> bool:
    """``'bfloat16'``, ``'bf16'``, ``'mindspore.bfloat16'`` (any letter case) or a bfloat16 dtype."""
    if isinstance(dtype, str):
        key = dtype.lower()
        return (key[len("mindspore.") :] if key.startswith("mindspore.") else key) in ("bfloat16", "bf16")
    try:
        return np.dtype(dtype).name == "bfloat16"
    except (TypeError, ValueError):
        return False


def _allowed(with_bfloat16: bool) -> str:
    return "float16, bfloat16, float32 or float64" if with_bfloat16 else "float16, float32 or float64"


def resolve_dtype(dtype: Any, name: str = "dtype", with_bfloat16: bool = False) -> np.dtype:
    """Return the NumPy float dtype meant by ``dtype``.

    Accepts NumPy dtypes and scalar types (``np.float16``), their names (``'float16'``), and
    MindSpore-style names (``'Float16'``, ``'mindspore.float16'``, ``'half'``). With
    ``with_bfloat16`` (the torch and Flax layers, which compute it) also bfloat16, by name or
    dtype: the result is then ml_dtypes' bfloat16.

    Raises:
        ValueError: ``dtype`` is None (MindSpore: "init, dtype and shape must have values").
        TypeError: anything else that is not one of those dtypes.
    """
    allowed = _allowed(with_bfloat16)
    if dtype is None:
        raise ValueError(f"{name} must be {allowed}, got {name}=None")
    if with_bfloat16 and is_bfloat16(dtype):
        return bfloat16()
    resolved: Optional[np.dtype] = None
    if isinstance(dtype, str):
        key = dtype.lower()
        if key.startswith("mindspore."):
            key = key[len("mindspore.") :]
        resolved = _NAMES.get(key)
    if resolved is None:
        try:
            resolved = np.dtype(dtype)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be {allowed}, got {name}={dtype!r}") from None
    if resolved not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be {allowed}, got {name}={dtype!r} "
            f"({resolved.name} cannot be computed by a convolution layer)"
        )
    return resolved


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (a big-endian float32 is still float32 here)."""
    return dtype.newbyteorder("=")


def check_float_array(array: np.ndarray, name: str, with_bfloat16: bool = False) -> None:
    """Refuse arrays whose dtype the engines cannot compute in.

    Raises:
        TypeError: naming ``name`` and the dtype.
    """
    dtype = native(array.dtype)
    if dtype not in FLOAT_DTYPES and not (with_bfloat16 and is_bfloat16(dtype)):
        raise TypeError(f"{name} must have dtype {_allowed(with_bfloat16)}, got {name} of dtype {array.dtype.name}")
