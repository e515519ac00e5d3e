"""A named NumPy array with a gradient slot, like MindSpore's ``Parameter``."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np


class Parameter:
    """A layer parameter: ``name``, ``data`` (ndarray), and ``grad`` (None until a backward).

    Works with ``np.asarray(param)``. ``set_data`` keeps the shape and the dtype fixed (a
    float array of another dtype is converted), so a layer never changes its geometry or
    compute dtype behind the user's back.

    Copies and sharing: ``set_data`` and the layer's ``load_parameters`` store copies (changing
    the caller's array later does not change the parameter); ``asnumpy`` and the layer's
    ``parameters_dict`` return copies. ``data`` itself is the stored array (no copy).
    ``requires_grad = False`` makes the layer's ``backward`` leave ``grad`` untouched.
    """

    def __init__(self, data: np.ndarray, name: str, requires_grad: bool = True) -> None:
        self.data = data
        self.name = name
        self.requires_grad = requires_grad
        self.grad: Optional[np.ndarray] = None

    @property
    def shape(self) -> Tuple[int, ...]:
        """The shape of ``data``."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of ``data`` (native byte order)."""
        return self.data.dtype

    def asnumpy(self) -> np.ndarray:
        """A copy of the values (as MindSpore's ``Tensor.asnumpy`` gives)."""
        return self.data.copy()

    def set_data(self, data: Any) -> "Parameter":
        """Replace the values; ``data`` must have this parameter's shape.

        Raises:
            TypeError: ``data`` is not array-like numbers.
            ValueError: ``data`` has another shape.
        """
        array = np.asarray(data)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"{self.name}: set_data needs numbers, got data of dtype {array.dtype}")
        if array.shape != self.shape:
            raise ValueError(f"{self.name}: set_data needs shape {self.shape}, got shape {array.shape}")
        self.data = array.astype(self.dtype, copy=True)
        return self

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data.copy() if copy else self.data
        if copy is False:  # NumPy 2's protocol: refuse when a copy cannot be avoided
            raise ValueError(f"{self.name}: converting {self.dtype.name} to {np.dtype(dtype).name} needs a copy")
        return self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.shape}, dtype={self.dtype.name})"
