"""What :func:`convtranspose.ckpt.save` accepts: nested mappings, and PyTorch, JAX and Flax values.

Nested mappings (a dict of dicts, ``nnx.state(model)``) are flattened to dotted names, as MindSpore
names a cell's parameters. Framework values are turned into NumPy arrays holding the same bits:
a torch tensor is detached and moved to the CPU (bfloat16 and float8 through ``ml_dtypes``), a JAX
array is fetched, a Flax ``nnx.Variable`` gives its value. torch, JAX and Flax are never imported
here: a value is tested against a framework's types only when that framework is already in
``sys.modules`` (a torch tensor cannot exist otherwise).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Dict

import numpy as np

# torch dtypes NumPy has no type for -> the ml_dtypes type of the same bits.
_TORCH_ML_DTYPES = {
    "torch.bfloat16": "bfloat16",
    "torch.float8_e4m3fn": "float8_e4m3fn",
    "torch.float8_e4m3fnuz": "float8_e4m3fnuz",
    "torch.float8_e5m2": "float8_e5m2",
    "torch.float8_e5m2fnuz": "float8_e5m2fnuz",
    "torch.float8_e8m0fnu": "float8_e8m0fnu",
}


def flatten(arrays: Mapping) -> Dict[str, Any]:
    """``{"up1": {"weight": w}}`` -> ``{"up1.weight": w}``, in the mapping's order.

    Top-level names must be str (as MindSpore's are); keys of nested mappings may also be ints,
    as the indices of ``nnx.List`` or ``nnx.Sequential`` layers are (``layers.0.kernel``).
    A nested mapping with no entries contributes none.

    Raises:
        TypeError: a key that is not a str (or, nested, an int).
        ValueError: two entries that flatten to the same name (``{"a.b": x, "a": {"b": y}}``).
    """
    out: Dict[str, Any] = {}
    _walk(arrays, None, out)
    return out


def _walk(mapping: Mapping, prefix: "str | None", out: Dict[str, Any]) -> None:
    for key, value in mapping.items():
        name = _key_name(key, prefix)
        if isinstance(value, Mapping):
            _walk(value, name, out)
        elif name in out:
            raise ValueError(
                f"{name!r} appears twice once nested mappings are flattened to dotted names: give each entry one name"
            )
        else:
            out[name] = value


def _key_name(key: Any, prefix: "str | None") -> str:
    """The dotted name of ``key`` under ``prefix`` (None at the top level)."""
    if isinstance(key, str):
        return key if prefix is None else f"{prefix}.{key}"
    if prefix is not None and isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return f"{prefix}.{int(key)}"
    where = "checkpoint names" if prefix is None else f"keys nested under {prefix!r}"
    allowed = "str" if prefix is None else "str or int"
    raise TypeError(f"{where} must be {allowed}, got {key!r} ({type(key).__name__})")


def to_numpy(name: str, value: Any) -> Any:
    """A torch tensor, JAX array or Flax variable as a NumPy array of the same bits; anything else as is.

    Args:
        name: The entry's name, for messages.
        value: What ``save`` was given for it.

    Raises:
        TypeError: a value of these frameworks with no data to save (a sparse, quantized or meta
            torch tensor, a JAX tracer, a JAX PRNG key), each message naming the entry and the way out.
        ImportError: a bfloat16 or float8 torch tensor and no ``ml_dtypes``.
    """
    nnx = sys.modules.get("flax.nnx")
    variable = getattr(nnx, "Variable", None) if nnx is not None else None
    if variable is not None and isinstance(value, variable):
        value = value.get_value() if hasattr(value, "get_value") else value.value
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return _from_torch(name, value, torch)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.Array):
        return _from_jax(name, value, jax)
    return value


def _from_torch(name: str, tensor: Any, torch: Any) -> np.ndarray:
    """Detached, on the CPU, conjugation and negation resolved; no copy when none is needed."""
    if tensor.layout != torch.strided:
        raise TypeError(f"{name!r}: a {tensor.layout} torch tensor cannot be stored; save tensor.to_dense()")
    if tensor.is_quantized:
        raise TypeError(f"{name!r}: a quantized torch tensor cannot be stored; save tensor.dequantize()")
    if tensor.is_meta:
        raise TypeError(f"{name!r}: a torch tensor on the meta device holds no data to save")
    data = tensor.detach().cpu().resolve_conj().resolve_neg()
    ml_name = _TORCH_ML_DTYPES.get(str(data.dtype))
    if ml_name is not None:
        bits = torch.uint8 if data.element_size() == 1 else torch.int16
        return data.view(bits).numpy().view(_ml_dtype(name, ml_name))
    try:
        return data.numpy()
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"{name!r}: torch dtype {data.dtype} cannot be stored in a checkpoint ({exc})") from None


def _from_jax(name: str, array: Any, jax: Any) -> np.ndarray:
    """The array's data, fetched from its device."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        raise TypeError(
            f"{name!r}: a JAX PRNG key array cannot be stored; save jax.random.key_data(key), or leave "
            "the random state out (e.g. nnx.state(model, nnx.Param))"
        )
    try:
        return np.asarray(array)
    except TypeError as exc:  # a tracer, inside jit or grad
        raise TypeError(
            f"{name!r}: a traced JAX value has no data to save; save outside jit/grad ({type(exc).__name__})"
        ) from None


def _ml_dtype(name: str, ml_name: str) -> np.dtype:
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(
            f"{name!r} is a {ml_name} tensor; saving it needs the ml_dtypes package: "
            "pip install convtranspose[bfloat16] (or ml_dtypes)"
        ) from None
    return np.dtype(getattr(ml_dtypes, ml_name))
