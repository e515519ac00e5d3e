"""Porting a whole MindSpore network: the name and layout mapping that every framework shares.

``convtranspose.torch.load_mindspore`` and ``convtranspose.flax.load_mindspore`` walk their
module and describe each tensor it holds as a :class:`Slot`: the name MindSpore gives it, the
framework's own name, its shape and dtype, how its layout differs from MindSpore's
(:class:`Layout`), and how to read and write it. Everything after that walk is here, written
once: telling the network's entries from the optimizer's (:func:`convtranspose.ckpt.split_training_state`),
matching names, checking every shape and dtype before anything is written, the strict errors, and
the arrays ``save_mindspore`` writes.

MindSpore names a parameter by its cell's attribute path (``inc.1.gamma``), with two differences a
framework's name does not have:

* a normalisation layer's tensors are ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``
  (the tables :data:`NORM_NAMES` and :data:`BATCHNORM_NAMES` give them per framework name);
* a ``SequentialCell`` (or ``CellList``) made empty, assigned to its parent, and then filled with
  ``append`` names its cells' parameters from the container down (``0.weight``), without the path
  above it (``generator.0.weight`` in the framework). The loader finds such a container when all of
  its tensors are in the checkpoint under the shorter names, none under the full ones, and no other
  container could claim them; it lists what it matched that way in :attr:`LoadResult.renamed`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np

from . import ckpt
from ._layers import to_numpy
from .dtypes import native

# Framework name of a normalisation layer's tensor -> MindSpore's, in the order MindSpore's cells
# create them (save_mindspore writes that order, as save_checkpoint does).
BATCHNORM_NAMES: Dict[str, str] = {
    "running_mean": "moving_mean",  # torch
    "running_var": "moving_variance",
    "mean": "moving_mean",  # Flax nnx.BatchNorm
    "var": "moving_variance",
    "weight": "gamma",  # torch
    "scale": "gamma",  # Flax
    "bias": "beta",
}
NORM_NAMES: Dict[str, str] = {"weight": "gamma", "scale": "gamma", "bias": "beta"}
MINDSPORE_ORDER = ("moving_mean", "moving_variance", "gamma", "beta", "weight", "bias")


@dataclass(frozen=True)
class Layout:
    """How a framework stores a tensor relative to MindSpore's layout.

    Attributes:
        name: for messages ("as is", "Dense weight transposed", ...).
        to_mindspore: framework array -> MindSpore's layout.
        from_mindspore: MindSpore's layout -> framework array.
    """

    name: str
    to_mindspore: Callable[[np.ndarray], np.ndarray]
    from_mindspore: Callable[[np.ndarray], np.ndarray]

    def mindspore_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """The shape MindSpore stores for a framework tensor of ``shape``."""
        return tuple(self.to_mindspore(np.empty(shape, np.uint8)).shape)


def _identity(array: np.ndarray) -> np.ndarray:
    return array


AS_IS = Layout("as is", _identity, _identity)
# MindSpore nn.Dense weight (out, in) <-> Flax nnx.Linear kernel (in, out).
DENSE_TRANSPOSED = Layout("Dense weight (out, in) as kernel (in, out)", np.transpose, np.transpose)


def _oi_to_spatial_first(array: np.ndarray) -> np.ndarray:
    # (O, I, *k) -> (*k, I, O)
    return np.transpose(array, tuple(range(2, array.ndim)) + (1, 0))


def _spatial_first_to_oi(array: np.ndarray) -> np.ndarray:
    # (*k, I, O) -> (O, I, *k)
    n = array.ndim
    return np.transpose(array, (n - 1, n - 2) + tuple(range(n - 2)))


# MindSpore nn.Conv2d weight (C_out, C_in/group, kH, kW) <-> Flax nnx.Conv kernel (kH, kW, C_in/group, C_out).
CONV_KERNEL = Layout(
    "Conv2d weight (O, I, kH, kW) as kernel (kH, kW, I, O)", _spatial_first_to_oi, _oi_to_spatial_first
)


def _flip_spatial(array: np.ndarray) -> np.ndarray:
    return np.flip(array, axis=tuple(range(array.ndim - 2)))


def _transpose_weight_to_kernel(array: np.ndarray) -> np.ndarray:
    # (C_in, C_out, *k) -> (*k, C_in, C_out), taps reversed: nnx.ConvTranspose(transpose_kernel=False)
    # correlates the stride-dilated input with its kernel, MindSpore's layer is the adjoint of a
    # convolution by its weight, which visits the taps in the opposite order.
    return _flip_spatial(np.transpose(array, tuple(range(2, array.ndim)) + (0, 1)))


def _kernel_to_transpose_weight(array: np.ndarray) -> np.ndarray:
    n = array.ndim
    return np.transpose(_flip_spatial(array), (n - 2, n - 1) + tuple(range(n - 2)))


CONV_TRANSPOSE_KERNEL = Layout(
    "Conv2dTranspose weight (C_in, C_out, kH, kW) as kernel (kH, kW, C_in, C_out), taps reversed",
    _kernel_to_transpose_weight,
    _transpose_weight_to_kernel,
)


def reshaped(shape: Tuple[int, ...], mindspore_shape: Tuple[int, ...]) -> Layout:
    """A tensor MindSpore stores with another shape of the same size (PReLU's alpha (1,) for a scalar)."""
    return Layout(
        f"shape {shape} stored as {mindspore_shape}",
        lambda a: np.reshape(a, mindspore_shape),
        lambda a: np.reshape(a, shape),
    )


@dataclass(frozen=True)
class Slot:
    """One tensor of a framework module, as MindSpore names and stores it.

    Attributes:
        path: the MindSpore name's components without the last (``('inc', '1')`` for ``inc.1.gamma``).
        leaf: the MindSpore name's last component (``'gamma'``).
        target: the framework's own name for messages (``'inc.1.weight'``, ``'inc.layers.1.scale'``).
        shape: the framework tensor's shape.
        dtype: its NumPy dtype (ml_dtypes' bfloat16 for bfloat16).
        layout: how MindSpore's layout maps onto the framework's.
        read: returns the values as a NumPy array (framework layout).
        write: sets the values from a NumPy array of ``shape`` and ``dtype``.
    """

    path: Tuple[str, ...]
    leaf: str
    target: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    layout: Layout
    read: Callable[[], np.ndarray]
    write: Callable[[np.ndarray], None]

    @property
    def name(self) -> str:
        """MindSpore's name (``inc.1.gamma``)."""
        return ".".join(self.path + (self.leaf,))

    @property
    def mindspore_shape(self) -> Tuple[int, ...]:
        """The shape MindSpore stores."""
        return self.layout.mindspore_shape(self.shape)


class LoadResult(NamedTuple):
    """What ``load_mindspore`` did.

    Attributes:
        loaded: the checkpoint names written into the module, in the module's order.
        training_state: the entries left out as optimizer state and training scalars
            (``moment1.*``, ``global_step``, ``epoch_num``, ...), in file order.
        missing: MindSpore names the module has and the checkpoint lacks (empty unless strict=False).
        unexpected: network entries of the checkpoint the module has no place for (empty unless
            strict=False).
        renamed: ``{checkpoint name: module name}`` for the tensors of a container that MindSpore
            names without the path above it (a ``SequentialCell`` filled with ``append``).
    """

    loaded: Tuple[str, ...]
    training_state: Tuple[str, ...]
    missing: Tuple[str, ...]
    unexpected: Tuple[str, ...]
    renamed: Dict[str, str]


def read_checkpoint(checkpoint: Any) -> Mapping[str, Any]:
    """The ``{name: array}`` of a path (``.ckpt`` or ``.safetensors``) or of a mapping as it is."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return ckpt.load(checkpoint)
    if isinstance(checkpoint, Mapping):
        return checkpoint
    raise TypeError(
        "checkpoint must be a path to a .ckpt or .safetensors file or a mapping of names to arrays "
        f"(what convtranspose.ckpt.load returns), got {type(checkpoint).__name__}"
    )


def in_mindspore_order(slots: Sequence[Slot]) -> List[Slot]:
    """The slots of one layer in the order MindSpore's cell creates its parameters.

    A BatchNorm cell creates ``moving_mean``, ``moving_variance``, ``gamma``, ``beta``, where torch
    has ``weight``, ``bias``, ``running_mean``, ``running_var``; other names keep their order.
    """
    rank = {leaf: i for i, leaf in enumerate(MINDSPORE_ORDER)}
    return sorted(slots, key=lambda s: rank.get(s.leaf, len(rank)))


def check_unique(slots: Sequence[Slot], module_name: str) -> None:
    """Two tensors of the module under one MindSpore name would overwrite each other: refuse."""
    seen: Dict[str, str] = {}
    for slot in slots:
        if slot.name in seen:
            raise ValueError(
                f"{module_name} has two tensors under the MindSpore name {slot.name!r}: {seen[slot.name]} and "
                f"{slot.target}"
            )
        seen[slot.name] = slot.target


def _container_matches(
    slots: Sequence[Slot], unmatched: Set[int], containers: Sequence[Tuple[str, ...]], unclaimed: Set[str]
) -> Dict[int, str]:
    """Slot index -> checkpoint name, for containers MindSpore names without the path above them.

    A container qualifies when every one of its unmatched tensors is in ``unclaimed`` once the
    components between an ancestor and the container are dropped; the fewest dropped wins, and
    an outer container is tried before the ones inside it. Names that two containers could
    claim (two appended SequentialCells both have a ``0.weight``) are given to neither: the
    loader does not guess.
    """
    proposals: List[Tuple[Tuple[str, ...], Dict[int, str]]] = []
    for container in sorted(containers, key=len):
        depth = len(container)
        if any(container[: len(outer)] == outer for outer, _ in proposals):
            continue  # inside a container already matched
        members = [i for i in sorted(unmatched) if slots[i].path[:depth] == container]
        for kept in range(depth - 1, -1, -1) if members else ():
            names = {i: ".".join(container[:kept] + slots[i].path[depth:] + (slots[i].leaf,)) for i in members}
            if len(set(names.values())) == len(names) and all(n in unclaimed for n in names.values()):
                proposals.append((container, names))
                break
    claims = Counter(name for _, names in proposals for name in names.values())
    found: Dict[int, str] = {}
    for _, names in proposals:
        if all(claims[name] == 1 for name in names.values()):
            found.update(names)
    return found


def _mismatch(slot: Slot, ckpt_name: str, value: np.ndarray) -> Optional[str]:
    want = slot.mindspore_shape
    where = ckpt_name if ckpt_name == slot.target else f"{ckpt_name} (for {slot.target})"
    if value.shape != want:
        return f"{where}: shape {value.shape} in the checkpoint, the module needs {want}"
    if native(value.dtype) != slot.dtype:
        return f"{where}: dtype {native(value.dtype).name} in the checkpoint, the module holds {slot.dtype.name}"
    return None


_DTYPE_HINT = "\n  (the module's dtype is not the file's: convert the module or the arrays to one dtype first)"


def _strict_error(module_name: str, missing: Sequence[Slot], unexpected: Sequence[str]) -> ValueError:
    lines = [f"Error(s) in loading a MindSpore checkpoint into {module_name}:"]
    if missing:
        described = ", ".join(s.name if s.name == s.target else f"{s.name} (for {s.target})" for s in missing)
        lines.append(f"  Missing from the checkpoint ({len(missing)}): {described}")
    if unexpected:
        lines.append(f"  Unexpected in the checkpoint ({len(unexpected)}): {', '.join(unexpected)}")
    lines.append("  (optimizer state and training scalars are left out, not unexpected; pass strict=False to load")
    lines.append("  what matches and get these lists back)")
    return ValueError("\n".join(lines))


def load(
    slots: Sequence[Slot],
    containers: Sequence[Tuple[str, ...]],
    checkpoint: Any,
    *,
    strict: bool,
    module_name: str,
) -> LoadResult:
    """Fill ``slots`` from a MindSpore checkpoint, all or nothing.

    Args:
        slots: every tensor of the module, in its order (see :class:`Slot`).
        containers: the MindSpore-name paths of the module's sequential containers (where a
            ``SequentialCell`` filled with ``append`` may have dropped the path above it).
        checkpoint: a path (``.ckpt``, ``.safetensors``) or a mapping of names to arrays.
        strict: raise when the module and the checkpoint's network entries differ.
        module_name: the module's class name, for messages.

    Returns:
        :class:`LoadResult`.

    Raises:
        TypeError: ``strict`` is not a bool, ``checkpoint`` is neither a path nor a mapping, or an
            entry is not numbers.
        ValueError: strict and a tensor missing or unexpected (listing them all), a wrong shape,
            or a wrong dtype (all listed); nothing is written then.
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got strict={strict!r}")
    check_unique(slots, module_name)
    arrays = read_checkpoint(checkpoint)
    network, state = ckpt.split_training_state(arrays)
    by_name = {slot.name: i for i, slot in enumerate(slots)}
    matched = {i: name for name, i in by_name.items() if name in network}
    unclaimed = set(network) - set(matched.values())
    unmatched = set(range(len(slots))) - set(matched)
    renamed_at = _container_matches(slots, unmatched, containers, unclaimed) if unclaimed and unmatched else {}
    matched.update(renamed_at)
    missing = [slot for i, slot in enumerate(slots) if i not in matched]
    claimed = set(matched.values())
    unexpected = [name for name in network if name not in claimed]
    if strict and (missing or unexpected):
        raise _strict_error(module_name, missing, unexpected)
    staged, problems = [], []
    for i in sorted(matched):
        slot, name = slots[i], matched[i]
        value = to_numpy(network[name], name)
        problem = _mismatch(slot, name, value)
        if problem:
            problems.append(problem)
        else:
            staged.append((slot, slot.layout.from_mindspore(value)))
    if problems:
        raise ValueError(
            f"Nothing was loaded into {module_name}: {len(problems)} tensor(s) do not fit:\n  "
            + "\n  ".join(problems)
            + _DTYPE_HINT * any(" dtype " in problem for problem in problems)
        )
    for slot, value in staged:  # every tensor checked first: a failed load changes nothing
        slot.write(np.array(value, dtype=slot.dtype, copy=True))
    return LoadResult(
        loaded=tuple(matched[i] for i in sorted(matched)),
        training_state=tuple(state),
        missing=tuple(slot.name for slot in missing),
        unexpected=tuple(unexpected),
        renamed={matched[i]: slots[i].target for i in sorted(renamed_at)},
    )


def save(
    slots: Sequence[Slot],
    path: Any,
    append_dict: Optional[Mapping[str, Any]],
    renamed: Optional[Mapping[str, str]],
    *,
    module_name: str,
) -> None:
    """Write ``slots`` as a MindSpore checkpoint (MindSpore's names and layouts), then ``append_dict``.

    Args:
        slots: every tensor of the module, in its order.
        path: the ``.ckpt`` (or ``.safetensors``) file to write.
        append_dict: ``{name: value}`` written after the parameters, or None.
        renamed: ``{checkpoint name: module name}`` (:attr:`LoadResult.renamed`): these tensors are
            written under the checkpoint's names, as MindSpore's network names them; or None.
        module_name: the module's class name, for messages.

    Raises:
        TypeError: ``append_dict`` or ``renamed`` is not a mapping.
        ValueError: an ``append_dict`` name is also a parameter's name, ``renamed`` names a tensor
            the module does not have, or two tensors share a name.
    """
    for argument, value in (("append_dict", append_dict), ("renamed", renamed)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{argument} must be a mapping or None, got {type(value).__name__}")
    names_of = {target: name for name, target in (renamed or {}).items()}
    unknown = sorted(set(names_of) - {slot.target for slot in slots})
    if unknown:
        raise ValueError(f"renamed names tensors {module_name} does not have: {unknown}")
    arrays: Dict[str, Any] = {}
    for slot in slots:
        name = names_of.get(slot.target, slot.name)
        if name in arrays:
            raise ValueError(f"{module_name} has two tensors under the MindSpore name {name!r}")
        arrays[name] = np.ascontiguousarray(slot.layout.to_mindspore(slot.read()))
    clashes = sorted(set(arrays) & set(append_dict or {}))
    if clashes:
        raise ValueError(f"append_dict names {clashes} are parameters of {module_name}: choose other names")
    ckpt.save(path, {**arrays, **(append_dict or {})})
