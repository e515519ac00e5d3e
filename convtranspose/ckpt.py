"""Read and write MindSpore checkpoints (``.ckpt``) with NumPy alone, and convert them to safetensors.

A MindSpore ``.ckpt`` file is a protobuf ``Checkpoint`` message (``docs/checkpoint-format.md``): a run
of ``Value`` records, each a tensor name (``tag``) and a ``TensorProto`` (``dims``, a ``tensor_type``
name such as ``"Float32"``, and the raw little-endian C-order bytes). This module reads and writes
that wire format by hand, so neither protobuf nor MindSpore is needed, and it checks every length
and size against the file before it allocates anything: a damaged file raises
:class:`CheckpointError` (a ``ValueError``) that names the file, the problem and, where known, the
tensor. So do an empty (0-byte) file, which is what a failed write leaves, a directory, a device or
fifo (refused before reading), a zip archive (a PyTorch or NumPy file), and a tensor name that
appears twice (in a ``.ckpt`` or in a safetensors header alike).

What :func:`load` returns, per entry (a ``dict`` in file order):

* tensors: a NumPy array of the stored shape and dtype (``Float32`` -> ``float32``, ``Uint8`` and
  ``UInt8`` -> ``uint8``, ``Bool`` -> ``bool``, ``BFloat16`` -> ``ml_dtypes.bfloat16``);
* scalars (``epoch_num``, ``lr``, ...): a 0-d array, whether the file has no dims (MindSpore 2.x)
  or ``dims == [0]`` (MindSpore 1.x);
* text (``tensor_type "str"``): a 0-d NumPy unicode array, e.g. ``array('adam', dtype='<U4')``;
  ``str(value)`` gives the text back.

A ``.safetensors`` file is checked by the ``safetensors`` package and mapped here: ``BF16`` and the
float8 types (``F8_E4M3`` -> ``ml_dtypes.float8_e4m3fn``, ``F8_E5M2``, ``F8_E4M3FNUZ``,
``F8_E5M2FNUZ``, ``F8_E8M0``) come from ``ml_dtypes``, imported only when a file needs it; ``C64``
and the sub-byte ``F4``/``F6_*`` types are refused by name.

:func:`save` writes the bytes MindSpore 2.10's ``save_checkpoint`` writes for the same entries, in
the order given. Python scalars are stored the way ``append_dict`` stores them: ``int`` as
``Int64``, ``float`` as ``Float32``, ``bool`` as ``Bool``, ``str`` as ``str``; nested mappings are
flattened to dotted names; torch, JAX and Flax values are stored with their own dtype. Every file is
written atomically (a temporary file in the same folder, synced, then renamed over the old one).

The format comes from the extension (``.ckpt`` or ``.safetensors``, any letter case) or from an
explicit ``format='ckpt'`` / ``format='safetensors'``; any other name is refused rather than guessed.

:func:`split_training_state` and :func:`is_training_state` tell a network's parameters from the
optimizer state and scalars that MindSpore's ``ModelCheckpoint`` saves beside them.

Command line::

    python -m convtranspose.ckpt inspect FILE [--format {ckpt,safetensors}]
    python -m convtranspose.ckpt convert IN OUT [--crc] [--from FORMAT] [--to FORMAT]

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from convtranspose import ckpt
    >>> path = os.path.join(tempfile.mkdtemp(), "net.ckpt")
    >>> ckpt.save(path, {"up1.weight": np.ones((2, 3, 4, 4), np.float32), "epoch_num": 3})
    >>> back = ckpt.load(path)
    >>> back["up1.weight"].shape, back["epoch_num"].dtype, int(back["epoch_num"])
    ((2, 3, 4, 4), dtype('int64'), 3)
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import stat
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._ckpt_files import atomic_write
from ._ckpt_names import is_training_state, split_training_state
from ._ckpt_values import flatten, to_numpy

__all__ = ["CheckpointError", "load", "save", "convert", "is_training_state", "split_training_state", "main"]

PathLike = Union[str, "os.PathLike[str]"]

# ----------------------------------------------------------------------------------------------
# Format constants
# ----------------------------------------------------------------------------------------------

# MindSpore splits a tensor whose bytes exceed SLICE_SIZE (512 * 1024 KB) into chunks of this many
# bytes, each written as its own record with the full dims (serialization.py,
# _write_parameter_bytes_data). Tests lower it to exercise slicing without 512 MiB arrays.
_SLICE_BYTES = 512 * 1024 * 1024

_CRC_MARK = b"crc_num"
_CRC_TRAILER_LEN = len(_CRC_MARK) + 10  # the CRC-32 is stored as a 10-byte big-endian integer

# First four bytes (little-endian magic numbers) of a file MindSpore encrypted with enc_key.
_CIPHER_MAGIC = {
    0x7F3A5ED8: "AES-GCM",
    0x7F3A5ED9: "AES-CBC",
    0x7F3A5EDA: "SM4-CBC",
}

# protobuf wire types: the two this format uses, and names of all for error messages
_VARINT, _LEN = 0, 2
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start-group", 4: "end-group", 5: "32-bit"}

# Highest dims count NumPy accepts (NPY_MAXDIMS in NumPy 2); more is a damaged file.
_MAX_DIMS = 64
_INT64_SIGN = 1 << 63

# tensor_type name -> little-endian NumPy dtype. "Uint*" is MindSpore 1.x's spelling.
_READ_TYPES: Dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in [
        ("Int8", "i1"),
        ("Int16", "<i2"),
        ("Int32", "<i4"),
        ("Int64", "<i8"),
        ("UInt8", "u1"),
        ("UInt16", "<u2"),
        ("UInt32", "<u4"),
        ("UInt64", "<u8"),
        ("Uint8", "u1"),
        ("Uint16", "<u2"),
        ("Uint32", "<u4"),
        ("Uint64", "<u8"),
        ("Float16", "<f2"),
        ("Float32", "<f4"),
        ("Float64", "<f8"),
        ("Bool", "?"),
    ]
}
_BF16 = "BFloat16"
_STR = "str"

# NumPy dtype (native order) -> the name MindSpore 2.10 writes. BFloat16 is matched by dtype name
# so that saving never imports ml_dtypes.
_WRITE_TYPES: Dict[np.dtype, str] = {
    np.dtype(code): name
    for name, code in [
        ("Int8", "i1"),
        ("Int16", "i2"),
        ("Int32", "i4"),
        ("Int64", "i8"),
        ("UInt8", "u1"),
        ("UInt16", "u2"),
        ("UInt32", "u4"),
        ("UInt64", "u8"),
        ("Float16", "f2"),
        ("Float32", "f4"),
        ("Float64", "f8"),
        ("Bool", "?"),
    ]
}

# The two formats, and the extensions that name them (any letter case).
_FORMATS = ("ckpt", "safetensors")
_EXTENSIONS = {".ckpt": "ckpt", ".safetensors": "safetensors"}

# Start of a zip archive (a local file header; an empty archive starts with its end record):
# what torch.save (.pt, .pth) and numpy.savez (.npz) write.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_SAFETENSORS_HINT = "pip install convtranspose[safetensors]"
_ML_DTYPES_HINT = "pip install convtranspose[bfloat16] (or ml_dtypes)"

# safetensors dtype -> NumPy dtype. Little-endian on disk, like .ckpt.
_ST_READ_TYPES: Dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in [
        ("I8", "i1"),
        ("I16", "<i2"),
        ("I32", "<i4"),
        ("I64", "<i8"),
        ("U8", "u1"),
        ("U16", "<u2"),
        ("U32", "<u4"),
        ("U64", "<u8"),
        ("F16", "<f2"),
        ("F32", "<f4"),
        ("F64", "<f8"),
        ("BOOL", "?"),
    ]
}
# safetensors dtypes NumPy has no type for -> the ml_dtypes type that holds them (the names
# safetensors itself pairs them with when it writes ml_dtypes arrays). Sub-byte types (F4, F6_*)
# and C64 are refused: no MindSpore checkpoint holds them.
_ST_ML_DTYPES: Dict[str, str] = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2": "float8_e5m2",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint: damaged, truncated, encrypted or of another kind.

    The message names the file, what is wrong, and the tensor and byte offset where known.

    Attributes:
        path: The file, as given.
        problem: What is wrong, without the file name.
        tensor: Name of the tensor concerned, or None.
        offset: Byte offset in the file where the problem was found, or None.
    """

    def __init__(self, path: PathLike, problem: str, *, tensor: Optional[str] = None, offset: Optional[int] = None):
        """Builds the message ``"<path>: <problem> (tensor '<name>') at byte <offset>"``."""
        self.path = os.fspath(path)
        self.problem = problem
        self.tensor = tensor
        self.offset = offset
        where = f" (tensor {tensor!r})" if tensor is not None else ""
        at = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}: {problem}{where}{at}")


# ----------------------------------------------------------------------------------------------
# Reading the wire format
# ----------------------------------------------------------------------------------------------


class _Cursor:
    """Reads protobuf wire primitives from ``buf[start:end]``; every overrun is a CheckpointError.

    Args:
        buf: The whole file (offsets in errors are file offsets).
        start: First byte of the message to read.
        end: One past its last byte.
        path: File name for error messages.
        scope: What ``buf[start:end]`` is ("file", "record", ...), for error messages.
        tensor: Tensor name for error messages, once known.
    """

    __slots__ = ("buf", "pos", "end", "path", "scope", "tensor")

    def __init__(self, buf: bytes, start: int, end: int, path: PathLike, scope: str, tensor: Optional[str] = None):
        self.buf, self.pos, self.end, self.path = buf, start, end, path
        self.scope, self.tensor = scope, tensor

    def error(self, problem: str, offset: Optional[int] = None) -> CheckpointError:
        return CheckpointError(self.path, problem, tensor=self.tensor, offset=self.pos if offset is None else offset)

    def at_end(self) -> bool:
        return self.pos >= self.end

    def varint(self) -> int:
        """Returns the unsigned 64-bit varint at the cursor (at most 10 bytes)."""
        start, value, shift = self.pos, 0, 0
        while True:
            if self.pos >= self.end:
                raise self.error(f"varint runs past the end of the {self.scope} (truncated file?)", start)
            byte = self.buf[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift >= 70:
                raise self.error("varint longer than 10 bytes", start)
        if value >> 64:
            raise self.error("varint does not fit in 64 bits", start)
        return value

    def key(self) -> Tuple[int, int, int]:
        """Returns ``(field number, wire type, offset of the key)``."""
        start = self.pos
        key = self.varint()
        return key >> 3, key & 7, start

    def chunk(self) -> Tuple[int, int]:
        """Reads a length prefix; returns the ``(start, end)`` of the payload and skips it.

        The length is checked against the bytes left in the enclosing message before anything
        is sliced, so a forged length can never make us read or allocate past the file.
        """
        at = self.pos
        length = self.varint()
        left = self.end - self.pos
        if length > left:
            raise self.error(
                f"length {length} exceeds the {left} bytes left in the {self.scope} (truncated or corrupted file)", at
            )
        start = self.pos
        self.pos += length
        return start, self.pos


@dataclass(frozen=True)
class _Piece:
    """One ``Value`` record: a tensor, or one slice of a tensor stored in several records.

    Attributes:
        tag: Tensor name.
        dims: Shape as stored (the full shape, even for a slice).
        type_name: ``tensor_type`` string.
        start: Offset of ``tensor_content`` in the file.
        end: One past its end.
        offset: Offset of the record, for error messages.
    """

    tag: str
    dims: Tuple[int, ...]
    type_name: str
    start: int
    end: int
    offset: int


def _wire_error(cur: _Cursor, what: str, field: int, wire: int, at: int) -> CheckpointError:
    """Error for a field we do not expect, naming its number and wire type."""
    return cur.error(f"{what}: unexpected field {field} with wire type {_WIRE_NAMES.get(wire, wire)}", at)


def _text(cur: _Cursor, start: int, end: int, what: str) -> str:
    """Decodes ``buf[start:end]`` as UTF-8, or raises a CheckpointError naming ``what``."""
    try:
        return cur.buf[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise cur.error(f"{what} is not valid UTF-8", start) from None


def _record_spans(buf: bytes, path: PathLike) -> Tuple[List[Tuple[int, int, int]], Optional[int]]:
    """Splits a checkpoint into its ``Value`` records and finds the CRC trailer.

    Returns:
        ``([(record offset, payload start, payload end), ...], trailer offset or None)``.
    """
    cur = _Cursor(buf, 0, len(buf), path, "file")
    spans: List[Tuple[int, int, int]] = []
    try:
        return _scan_records(cur, spans)
    except CheckpointError as exc:
        if spans or buf.startswith(b"\x0a"):
            raise  # it starts like a checkpoint: truncated or corrupted, as the message says
        # Not even the first record key: most likely not a checkpoint, or encrypted.
        raise CheckpointError(
            path,
            f"not a readable checkpoint ({exc.problem}); it may be encrypted or not a MindSpore .ckpt file",
            offset=exc.offset,
        ) from None


def _scan_records(cur: _Cursor, spans: List[Tuple[int, int, int]]) -> Tuple[List[Tuple[int, int, int]], Optional[int]]:
    """The loop of :func:`_record_spans`; appends to ``spans`` as it goes."""
    buf = cur.buf
    while not cur.at_end():
        rest = len(buf) - cur.pos
        # (the slice comparison only runs near the end: slicing the rest each time is quadratic)
        if buf.startswith(_CRC_MARK, cur.pos) or (rest < len(_CRC_MARK) and _CRC_MARK[:rest] == buf[cur.pos :]):
            # 'c' (0x63) can never start a record (it would be field 12, start-group), so at a
            # record boundary these bytes are the trailer and nothing else.
            if rest != _CRC_TRAILER_LEN:
                raise cur.error(
                    f"the crc_num trailer should be the last {_CRC_TRAILER_LEN} "
                    f"bytes, but {rest} bytes remain from its start (truncated or "
                    "extended file)"
                )
            return spans, cur.pos
        field, wire, at = cur.key()
        if (field, wire) != (1, _LEN):
            raise _wire_error(cur, "not a Checkpoint record", field, wire, at)
        start, end = cur.chunk()
        spans.append((at, start, end))
    return spans, None


def _check_crc(buf: bytes, trailer: int, path: PathLike) -> None:
    """Compares the stored CRC-32 with that of every byte before the trailer."""
    stored = int.from_bytes(buf[trailer + len(_CRC_MARK) : trailer + _CRC_TRAILER_LEN], "big")
    actual = zlib.crc32(memoryview(buf)[:trailer])
    if stored != actual:
        raise CheckpointError(
            path,
            f"CRC-32 mismatch: the trailer says {stored}, the content gives {actual}; the file is corrupted",
            offset=trailer,
        )


def _tail_crc_fails(buf: bytes) -> bool:
    """True when the file ends in what looks like a CRC trailer that does not match."""
    if len(buf) < _CRC_TRAILER_LEN or not buf.startswith(_CRC_MARK, len(buf) - _CRC_TRAILER_LEN):
        return False
    stored = int.from_bytes(buf[-10:], "big")
    return stored != zlib.crc32(memoryview(buf)[:-_CRC_TRAILER_LEN])


def _parse_value(buf: bytes, span: Tuple[int, int, int], path: PathLike) -> _Piece:
    """Parses one ``Value`` record (tag, then its TensorProto) into a :class:`_Piece`."""
    offset, start, end = span
    cur = _Cursor(buf, start, end, path, "record")
    tag = tensor = None
    while not cur.at_end():
        field, wire, at = cur.key()
        if field == 1 and wire == _LEN and tag is None:
            tag = _text(cur, *cur.chunk(), "tensor name")
            cur.tensor = tag
        elif field == 2 and wire == _LEN and tensor is None:
            tensor = cur.chunk()
        elif field == 3 and wire == _LEN:
            raise cur.error("map parameters (MapTensorProto) are not supported", at)
        else:
            raise _wire_error(cur, "bad Value record", field, wire, at)
    if tag is None:
        raise cur.error("record has no tensor name (tag)", offset)
    if tensor is None:
        raise cur.error("record has no TensorProto", offset)
    return _parse_tensor(cur, tag, tensor, offset)


def _parse_tensor(outer: _Cursor, tag: str, span: Tuple[int, int], offset: int) -> _Piece:
    """Parses a ``TensorProto`` (dims, tensor_type, tensor_content) found at ``span``."""
    cur = _Cursor(outer.buf, span[0], span[1], outer.path, "TensorProto", tag)
    dims: List[int] = []
    type_name = content = None
    while not cur.at_end():
        field, wire, at = cur.key()
        if field == 1 and wire == _VARINT:
            dims.append(_dim(cur, cur.varint(), at, len(dims)))
        elif field == 1 and wire == _LEN:  # packed dims: not what MindSpore writes, but valid protobuf
            inner = _Cursor(cur.buf, *cur.chunk(), cur.path, "packed dims", tag)
            while not inner.at_end():
                dims.append(_dim(inner, inner.varint(), inner.pos, len(dims)))
        elif field == 2 and wire == _LEN and type_name is None:
            type_name = _text(cur, *cur.chunk(), "tensor_type")
        elif field == 3 and wire == _LEN and content is None:
            content = cur.chunk()
        else:
            raise _wire_error(cur, "bad TensorProto", field, wire, at)
    if type_name is None:
        raise cur.error("TensorProto has no tensor_type", offset)
    if content is None:
        raise cur.error("TensorProto has no tensor_content", offset)
    return _Piece(tag, tuple(dims), type_name, content[0], content[1], offset)


def _dim(cur: _Cursor, value: int, at: int, count: int) -> int:
    """Checks one dimension: dims are int64, so a value with the sign bit set is negative."""
    if count >= _MAX_DIMS:
        raise cur.error(f"more than {_MAX_DIMS} dims", at)
    if value >= _INT64_SIGN:
        raise cur.error(f"negative dimension {value - (1 << 64)}", at)
    return value


def _group(pieces: List[_Piece], path: PathLike) -> Iterator[List[_Piece]]:
    """Yields runs of consecutive pieces with the same tag (the slices of one tensor).

    A tag that comes back after another tensor is refused: MindSpore would silently keep the
    last copy, which hides a damaged or concatenated file.
    """
    seen: Dict[str, int] = {}
    run: List[_Piece] = []
    for piece in pieces:
        if run and piece.tag != run[0].tag:
            yield run
            run = []
        if not run and piece.tag in seen:
            raise CheckpointError(
                path,
                f"tensor appears twice, in records at bytes {seen[piece.tag]} and {piece.offset}",
                tensor=piece.tag,
                offset=piece.offset,
            )
        if not run:
            seen[piece.tag] = piece.offset
        run.append(piece)
    if run:
        yield run


# ----------------------------------------------------------------------------------------------
# From pieces to arrays
# ----------------------------------------------------------------------------------------------


def _ml_dtype(name: str, path: PathLike, tag: str, stored: str) -> np.dtype:
    """The ``ml_dtypes`` type ``name`` (bfloat16, float8_*), imported only when a file holds one.

    Args:
        name: Attribute of ``ml_dtypes``, e.g. ``"bfloat16"``.
        path: File, for the message.
        tag: Tensor name, for the message.
        stored: The dtype as the file spells it (``"BFloat16"``, ``"F8_E4M3"``), for the message.

    Raises:
        ImportError: ``ml_dtypes`` is missing, or too old to have ``name``; the message names the
            file, the tensor, the dtype and what to install. (The file is fine: this is about the
            environment, so it is not a CheckpointError.)
    """
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(
            f"{os.fspath(path)}: tensor {tag!r} is {stored}; reading it needs the ml_dtypes package: {_ML_DTYPES_HINT}"
        ) from None
    found = getattr(ml_dtypes, name, None)
    if found is None:
        version = getattr(ml_dtypes, "__version__", "?")
        raise ImportError(
            f"{os.fspath(path)}: tensor {tag!r} is {stored}; the installed ml_dtypes "
            f"{version} has no {name}: pip install --upgrade ml_dtypes"
        )
    return np.dtype(found)


def _dtype_for(type_name: str, path: PathLike, tag: str, offset: int) -> np.dtype:
    """NumPy dtype for a ``tensor_type`` name; imports ml_dtypes only for BFloat16."""
    if type_name in _READ_TYPES:
        return _READ_TYPES[type_name]
    if type_name == _BF16:
        return _ml_dtype("bfloat16", path, tag, type_name)
    if type_name == "Int4":
        raise CheckpointError(
            path, "tensor_type Int4 (packed 4-bit integers) is not supported", tensor=tag, offset=offset
        )
    known = ", ".join([*_READ_TYPES, _BF16, _STR])
    raise CheckpointError(path, f"unknown tensor_type {type_name!r} (known: {known})", tensor=tag, offset=offset)


def _shape_for(
    dims: Tuple[int, ...], itemsize: int, nbytes: int, type_name: str, path: PathLike, tag: str, offset: int
) -> Tuple[int, ...]:
    """Shape of the array, checked against the byte count before anything is allocated.

    ``dims == ()`` is a scalar (MindSpore 2.x). ``dims == (0,)`` is a scalar in MindSpore 1.x
    files when the content holds one item, and an empty 1-D tensor when it holds none.

    Raises:
        CheckpointError: ``prod(dims) * itemsize != nbytes``, or a shape NumPy cannot represent.
    """
    if dims == (0,) and nbytes == itemsize:
        return ()
    # NumPy refuses any shape whose non-zero dims overflow its index type, even if another dim is
    # zero; check that first, with Python ints, so no product ever overflows.
    nonzero = 1
    for d in dims:
        nonzero *= d or 1
    if nonzero * itemsize > np.iinfo(np.intp).max:
        raise CheckpointError(path, f"dims {list(dims)} are too large for an array", tensor=tag, offset=offset)
    count = nonzero if 0 not in dims else 0
    if count * itemsize != nbytes:
        what = "a scalar" if not dims else f"{count} items"
        raise CheckpointError(
            path,
            f"dims {list(dims)} of {type_name} need {count * itemsize} "
            f"bytes ({what}) but tensor_content holds {nbytes}",
            tensor=tag,
            offset=offset,
        )
    return dims


def _join(buf: bytes, run: List[_Piece]) -> np.ndarray:
    """Copies the contents of a run of slices into one new uint8 array (sizes already checked)."""
    total = sum(p.end - p.start for p in run)
    out = np.empty(total, np.uint8)
    at = 0
    for p in run:
        n = p.end - p.start
        out[at : at + n] = np.frombuffer(buf, np.uint8, n, p.start)
        at += n
    return out


def _decode_str(raw: np.ndarray, dims: Tuple[int, ...], path: PathLike, tag: str, offset: int) -> np.ndarray:
    """Text entry -> 0-d unicode array. MindSpore stores ``np.array(text).tobytes()`` (UTF-32-LE)."""
    if dims not in ((0,), (), (1,)):
        raise CheckpointError(
            path, f"str entry has dims {list(dims)}; expected [0] (one string)", tensor=tag, offset=offset
        )
    if raw.size % 4:
        raise CheckpointError(
            path, f"str content of {raw.size} bytes is not UTF-32 (not a multiple of 4)", tensor=tag, offset=offset
        )
    codes = raw.view("<u4")
    if ((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any():
        raise CheckpointError(path, "str content holds invalid code points", tensor=tag, offset=offset)
    if codes.size == 0:
        return np.array("")
    # NumPy's 'U' type is UTF-32 in native order; like MindSpore, trailing NULs are dropped.
    return np.array(str(raw.view(f"<U{codes.size}")[0]))


def _to_array(buf: bytes, run: List[_Piece], path: PathLike) -> np.ndarray:
    """Builds the array for one tensor from its slices (one or more consecutive records)."""
    first = run[0]
    for p in run[1:]:
        if (p.dims, p.type_name) != (first.dims, first.type_name):
            raise CheckpointError(
                path,
                f"slices disagree: dims {list(first.dims)} {first.type_name} then {list(p.dims)} {p.type_name}",
                tensor=first.tag,
                offset=p.offset,
            )
    nbytes = sum(p.end - p.start for p in run)
    if first.type_name == _STR:
        return _decode_str(_join(buf, run), first.dims, path, first.tag, first.offset)
    dtype = _dtype_for(first.type_name, path, first.tag, first.offset)
    shape = _shape_for(first.dims, dtype.itemsize, nbytes, first.type_name, path, first.tag, first.offset)
    raw = _join(buf, run)
    if dtype == np.bool_:
        return (raw != 0).reshape(shape)  # any non-zero byte is True; the array holds 0/1 only
    return raw.view(dtype).reshape(shape)


def _decode(buf: bytes, path: PathLike) -> Tuple[Dict[str, np.ndarray], bool]:
    """Parses checkpoint bytes.

    Returns:
        ``(arrays by name in file order, whether a CRC trailer was present and verified)``.
    """
    if len(buf) >= 4 and int.from_bytes(buf[:4], "little") in _CIPHER_MAGIC:
        mode = _CIPHER_MAGIC[int.from_bytes(buf[:4], "little")]
        raise CheckpointError(
            path,
            f"not a readable checkpoint: it is encrypted ({mode} header "
            "of MindSpore's enc_key); load it in MindSpore with dec_key "
            "and save it again without enc_key",
        )
    try:
        spans, trailer = _record_spans(buf, path)
    except CheckpointError as exc:
        if _tail_crc_fails(buf):
            raise CheckpointError(path, "CRC-32 mismatch: the file is corrupted") from exc
        raise
    if trailer is not None:
        _check_crc(buf, trailer, path)
    pieces = [_parse_value(buf, span, path) for span in spans]
    arrays = {run[0].tag: _to_array(buf, run, path) for run in _group(pieces, path)}
    return arrays, trailer is not None


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    """Encodes a non-negative integer as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: key, length, payload."""
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


@dataclass(frozen=True)
class _Entry:
    """One tensor ready to write: name, dims, tensor_type and its little-endian C-order bytes."""

    tag: bytes
    dims: Tuple[int, ...]
    type_name: str
    data: memoryview


def _as_entry(name: str, value: Any) -> _Entry:
    """Converts one ``save`` argument to an :class:`_Entry`, as MindSpore's save_checkpoint would.

    Raises:
        TypeError: the value has a dtype a checkpoint cannot hold, or is not an array at all.
        ValueError: the name cannot be encoded, a Python int does not fit in int64, or a list is ragged.
    """
    tag = _encoded_name(name)
    arr = _as_array(name, value)
    if arr.dtype.kind == "U":
        # MindSpore: dims [0], tensor_type "str", content np.array(text).tobytes() (UTF-32-LE).
        text = np.array(str(arr[()]), dtype="<U")
        return _Entry(tag, (0,), _STR, memoryview(text.tobytes()))
    type_name = _type_name(name, arr.dtype)
    flat = np.ascontiguousarray(arr.reshape(-1), dtype=arr.dtype.newbyteorder("<"))
    return _Entry(tag, arr.shape, type_name, flat.view(np.uint8).data)


def _encoded_name(name: str) -> bytes:
    """The name as stored (UTF-8), the same check for both formats."""
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"checkpoint name {name!r} cannot be encoded as UTF-8") from None


def _as_array(name: str, value: Any) -> np.ndarray:
    """The array to store for one ``save`` value; a str array must be a single string (0-d).

    torch tensors (a ``Parameter`` too), JAX arrays and Flax variables are read as NumPy arrays of
    the same dtype (bfloat16 through ml_dtypes); lists and tuples become arrays as NumPy makes them.
    """
    value = to_numpy(name, value)
    if not isinstance(value, (np.ndarray, np.generic)):  # np.float64 is a float: test it first
        value = _python_scalar(name, value)
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # a ragged list
        raise ValueError(f"{name!r}: {type(value).__name__} cannot be stored as one array ({exc})") from None
    except TypeError as exc:
        raise TypeError(f"{name!r}: {type(value).__name__} cannot be stored as an array ({exc})") from None
    if arr.dtype.kind == "U" and arr.ndim:
        raise TypeError(f"{name!r}: a checkpoint holds one string per entry, got a str array of shape {arr.shape}")
    return arr


def _python_scalar(name: str, value: Any) -> Any:
    """Python scalars take the dtype MindSpore's ``Tensor(value)`` gives them in append_dict."""
    if isinstance(value, bool):  # before int: bool is an int
        return np.bool_(value)
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"{name!r}: int {value} does not fit in Int64")
        return np.int64(value)
    if isinstance(value, float):
        return np.float32(value)
    return value  # str, lists, ...: np.asarray decides


def _type_name(name: str, dtype: np.dtype) -> str:
    """The ``tensor_type`` MindSpore 2.10 writes for ``dtype``."""
    if dtype.name == "bfloat16":
        return _BF16
    found = _WRITE_TYPES.get(dtype.newbyteorder("="))
    if found is None:
        supported = ", ".join(sorted({str(d) for d in _WRITE_TYPES} | {"bfloat16", "str"}))
        raise TypeError(f"{name!r}: dtype {dtype} cannot be stored in a checkpoint (supported: {supported})")
    return found


def _records(entry: _Entry) -> Iterator[Tuple[bytes, memoryview]]:
    """Yields ``(record header, content chunk)``: one record, or one per 512 MiB slice.

    The header is everything of the serialized ``Checkpoint`` message before the content bytes,
    with fields in MindSpore's order (tag, then dims, tensor_type, tensor_content).
    """
    dims = b"".join(_varint(1 << 3 | _VARINT) + _varint(d) for d in entry.dims)
    type_field = _field(2, entry.type_name.encode("ascii"))
    size = len(entry.data)
    starts = range(0, size, _SLICE_BYTES) if entry.type_name != _STR and size else [0]
    for start in starts:
        chunk = entry.data[start : start + _SLICE_BYTES] if entry.type_name != _STR else entry.data
        content_head = _varint(3 << 3 | _LEN) + _varint(len(chunk))
        tensor_len = len(dims) + len(type_field) + len(content_head) + len(chunk)
        tensor_head = _varint(2 << 3 | _LEN) + _varint(tensor_len)
        value_len = len(_field(1, entry.tag)) + len(tensor_head) + tensor_len
        head = (
            _varint(1 << 3 | _LEN)
            + _varint(value_len)
            + _field(1, entry.tag)
            + tensor_head
            + dims
            + type_field
            + content_head
        )
        yield head, chunk


# ----------------------------------------------------------------------------------------------
# safetensors (optional)
# ----------------------------------------------------------------------------------------------


def _safetensors():
    """Imports the optional safetensors package, or says how to install it."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            f"reading or writing .safetensors files needs the safetensors package: {_SAFETENSORS_HINT}"
        ) from None
    return safetensors


def _safetensors_crc(arrays: Mapping[str, np.ndarray]) -> int:
    """MindSpore's safetensors ``crc_num``: CRC-32 over each name then its bytes, names sorted."""
    crc = 0
    for name in sorted(arrays):
        crc = zlib.crc32(name.encode("utf-8"), crc)
        crc = zlib.crc32(np.ascontiguousarray(arrays[name]).tobytes(), crc)
    return crc


class _Pairs(list):
    """A JSON object as the list of its ``(key, value)`` pairs, repeated keys kept."""


def _unique(pairs: _Pairs, path: PathLike, entry: Optional[str]) -> Dict[str, Any]:
    """The pairs as a dict; a repeated key is a CheckpointError, as a repeated .ckpt tag is.

    Args:
        pairs: One JSON object of the header.
        path: File, for the message.
        entry: None for the header itself (its keys are tensor names), else the key whose
            value ``pairs`` is.
    """
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key not in out:
            out[key] = value
        elif entry is not None:
            raise CheckpointError(path, f"key {key!r} appears twice in the header entry {entry!r}")
        elif key == "__metadata__":
            raise CheckpointError(path, "'__metadata__' appears twice in the safetensors header")
        else:
            # JSON parsers (safetensors' included) keep the last copy silently
            raise CheckpointError(path, "tensor appears twice in the safetensors header", tensor=key)
    return out


def _safetensors_header(data: bytes, path: PathLike) -> Optional[Dict[str, Any]]:
    """Parses the JSON header ourselves, only to refuse repeated keys, which safetensors merges.

    Returns:
        The header as a dict (tensor name -> entry dict, and ``__metadata__``), or None when it
        cannot be parsed; then safetensors, which checks the layout, says what is wrong.
    """
    if len(data) < 8:
        return None
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        return None
    try:
        top = json.loads(data[8 : 8 + size].decode("utf-8"), object_pairs_hook=_Pairs)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(top, _Pairs):
        return None
    header = _unique(top, path, None)
    for name, entry in header.items():
        if isinstance(entry, _Pairs):
            header[name] = _unique(entry, path, name)
    return header


def _safetensors_dtype(stored: str, path: PathLike, tag: str) -> np.dtype:
    """NumPy dtype for a safetensors dtype name; bfloat16 and float8 come from ml_dtypes."""
    if stored in _ST_READ_TYPES:
        return _ST_READ_TYPES[stored]
    if stored in _ST_ML_DTYPES:
        return _ml_dtype(_ST_ML_DTYPES[stored], path, tag, stored)
    known = ", ".join([*_ST_READ_TYPES, *_ST_ML_DTYPES])
    raise CheckpointError(path, f"safetensors dtype {stored} is not supported (supported: {known})", tensor=tag)


def _load_safetensors(data: bytes, path: PathLike) -> Tuple[Dict[str, np.ndarray], bool]:
    """Reads safetensors bytes; verifies MindSpore's ``crc_num`` metadata when present.

    safetensors checks the layout (offsets, sizes, overlaps) and hands back raw bytes per tensor;
    the dtype mapping is ours, so that bfloat16 and float8 need only ml_dtypes, whether or not it
    was imported before (safetensors' NumPy front end fails on both).

    Returns:
        ``(arrays by name in sorted order, whether a crc_num was present and verified)``.
    """
    st = _safetensors()
    header = _safetensors_header(data, path)
    try:
        entries = st.deserialize(data)
    except st.SafetensorError as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
    if header is None:  # safetensors took a header json cannot read: never skip the CRC for it
        raise CheckpointError(path, "not a readable safetensors file (the header is not valid UTF-8 JSON)")
    arrays: Dict[str, np.ndarray] = {}
    crc = 0  # over the bytes as stored (before bools are made 0/1), as the writer computed it
    for name, info in sorted(entries, key=lambda item: item[0]):
        dtype = _safetensors_dtype(info["dtype"], path, name)
        shape, raw = tuple(info["shape"]), info["data"]
        if len(raw) != dtype.itemsize * math.prod(shape):
            raise CheckpointError(
                path,
                f"shape {list(shape)} of {info['dtype']} needs "
                f"{dtype.itemsize * math.prod(shape)} bytes, the file holds "
                f"{len(raw)}",
                tensor=name,
            )
        crc = zlib.crc32(raw, zlib.crc32(name.encode("utf-8"), crc))
        if dtype == np.bool_:
            arr = np.frombuffer(raw, np.uint8) != 0  # as in .ckpt: any non-zero byte is True
        else:
            arr = np.frombuffer(raw, dtype)
            if not arr.flags.writeable:  # safetensors < 0.5 hands back bytes, not a bytearray
                arr = arr.copy()
        arrays[name] = arr.reshape(shape)
    metadata = header.get("__metadata__") or {}
    if "crc_num" not in metadata:
        return arrays, False
    if metadata["crc_num"] != str(crc):
        raise CheckpointError(
            path, f"CRC-32 mismatch: metadata crc_num is {metadata['crc_num']!r}, the content gives {crc}"
        )
    return arrays, True


def _check_safetensors_dtype(name: str, dtype: np.dtype) -> None:
    """Safetensors holds what .ckpt holds, and the float8 types as well."""
    if dtype.name in _ST_ML_DTYPES.values():
        return
    _type_name(name, dtype)  # same rules, and message, as .ckpt


def _save_safetensors(path: PathLike, arrays: Mapping[str, Any], crc_check: bool) -> List[str]:
    """Writes safetensors as MindSpore does: names sorted, metadata ``{"format": "ms"}``.

    Text entries have no safetensors dtype: they are left out with a warning that names them.

    Returns:
        The names written, sorted.
    """
    st = _safetensors()
    tensors, skipped = {}, []
    for name in sorted(arrays):
        _encoded_name(name)  # safetensors would fail on it with a bare UnicodeEncodeError
        arr = _as_array(name, arrays[name])
        if arr.dtype.kind == "U":
            skipped.append(name)
            continue
        _check_safetensors_dtype(name, arr.dtype)
        # astype, not ascontiguousarray: that one turns a 0-d scalar into shape (1,)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
    metadata = {"format": "ms"}
    if crc_check:
        metadata["crc_num"] = str(_safetensors_crc(tensors))

    def write(temp: str) -> None:
        try:
            st.numpy.save_file(tensors, temp, metadata=metadata)
        except st.SafetensorError as exc:  # an I/O error in safetensors' own writer: report it as one
            raise _safetensors_os_error(path, exc) from None

    atomic_write(path, write)
    if skipped:
        warnings.warn(
            f"{os.fspath(path)}: safetensors cannot hold text; left out str entries {skipped}",
            UserWarning,
            stacklevel=4,
        )
    return list(tensors)


def _safetensors_os_error(path: PathLike, exc: Exception) -> OSError:
    """An OSError for what safetensors' writer raised, with the errno when its message has one."""
    code = re.search(r"\(os error (\d+)\)|\bcode: (\d+)", str(exc))  # Rust's io::Error, shown or debugged
    if code:
        number = int(code.group(1) or code.group(2))
        return OSError(number, os.strerror(number), os.fspath(path))  # a FileNotFoundError for 2, ...
    return OSError(f"{os.fspath(path)}: writing the safetensors file failed ({exc})")


def _save_ckpt(path: PathLike, arrays: Mapping[str, Any], crc_check: bool) -> List[str]:
    """Writes a MindSpore ``.ckpt``; every entry is converted and checked before the file is created.

    Returns:
        The names written, in order.
    """
    if not arrays and not crc_check:
        raise ValueError(
            f"arrays is empty ({dict(arrays)!r}): a .ckpt with no entries and no CRC "
            "would be a 0-byte file, which load() refuses as a failed write; pass "
            "crc_check=True to write an empty checkpoint (its CRC trailer alone)"
        )
    entries = [_as_entry(name, value) for name, value in arrays.items()]

    def write(temp: str) -> None:
        crc = 0
        with open(temp, "wb") as f:
            for entry in entries:
                for head, chunk in _records(entry):
                    f.write(head)
                    f.write(chunk)
                    if crc_check:
                        crc = zlib.crc32(chunk, zlib.crc32(head, crc))
            if crc_check:
                f.write(_CRC_MARK + crc.to_bytes(10, "big"))

    atomic_write(path, write)
    return list(arrays)


def _save(path: PathLike, arrays: Mapping[str, Any], crc_check: bool, format: Optional[str]) -> List[str]:
    """:func:`save`, returning the names it wrote (safetensors leaves text entries out)."""
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}")
    fmt = _format_of(path, format)
    flat = flatten(arrays)
    if fmt == "safetensors":
        return _save_safetensors(path, flat, crc_check)
    return _save_ckpt(path, flat, crc_check)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


_FILE_KINDS = (
    (stat.S_ISCHR, "a character device (such as /dev/zero)"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (fifo)"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_directory(path: PathLike) -> CheckpointError:
    """The error for a directory, naming the checkpoints it holds, if any."""
    found = sorted(entry.name for entry in Path(path).iterdir() if entry.suffix.lower() in _EXTENSIONS)
    hint = ""
    if found:
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        hint = f" (it holds {shown}: pass one of them)"
    return CheckpointError(path, f"is a directory, not a checkpoint file{hint}")


def _check_regular(path: PathLike, mode: int) -> None:
    """Refuses a directory, device, fifo or socket: reading one never ends, or blocks, or fails obscurely."""
    if stat.S_ISDIR(mode):
        raise _refuse_directory(path)
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _FILE_KINDS if test(mode)), "not a regular file")
        raise CheckpointError(path, f"is {kind}, not a checkpoint file: only regular files are read")


def _read_bytes(path: PathLike, limit: Optional[int] = None) -> bytes:
    """The whole file (or its first ``limit`` bytes), once it is known to be a regular file.

    Raises:
        CheckpointError: a directory, a device, a fifo or a socket (refused before any read; a fifo
            is opened without blocking), or an empty file.
        OSError: the file cannot be opened or read.
    """
    _check_regular(path, os.stat(path).st_mode)  # before opening: opening a fifo would block
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        _check_regular(path, os.fstat(f.fileno()).st_mode)  # the same file, had it been swapped since
        data = f.read() if limit is None else f.read(limit)
    if not data:
        # Even a checkpoint with no entries is not empty when written with a CRC (the trailer),
        # and save() refuses to write one without: 0 bytes is a write that failed.
        raise CheckpointError(path, "the file is empty (0 bytes): not a checkpoint, most likely a write that failed")
    return data


def _refuse_zip(data: bytes, path: PathLike) -> None:
    """A zip archive is a PyTorch or NumPy file given by mistake: say so, not "unexpected field 10"."""
    if data.startswith(_ZIP_MAGIC):
        raise CheckpointError(
            path,
            "is a zip archive (a PyTorch .pt/.pth or NumPy .npz file), not a MindSpore checkpoint; "
            "load it with torch.load or numpy.load and pass its arrays to ckpt.save to write one",
        )


def _format_of(path: PathLike, format: Optional[str]) -> str:
    """The format to use: ``format`` when given, else the one the extension names.

    Raises:
        ValueError: ``format`` is not 'ckpt' or 'safetensors', or it is None and the extension
            is neither ``.ckpt`` nor ``.safetensors`` (any letter case).
    """
    if format is not None:
        if format not in _FORMATS:
            raise ValueError(f"format must be 'ckpt' or 'safetensors' (or None: by extension), got {format!r}")
        return format
    suffix = Path(path).suffix
    found = _EXTENSIONS.get(suffix.lower())
    if found is None:
        raise ValueError(_unknown_extension(path, suffix))
    return found


def _unknown_extension(path: PathLike, suffix: str) -> str:
    what = f"extension {suffix!r}" if suffix else "no extension"
    close = difflib.get_close_matches(suffix.lower(), list(_EXTENSIONS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close and suffix else ""
    return (
        f"{os.fspath(path)}: {what}{hint}; a checkpoint file ends in .ckpt or .safetensors, "
        "or pass format='ckpt' or format='safetensors' to use another name"
    )


def _read(path: PathLike, format: Optional[str] = None) -> Tuple[Dict[str, np.ndarray], bool]:
    """Loads any supported file; also says whether a CRC was present (and verified)."""
    if format is None and Path(path).suffix.lower() not in _EXTENSIONS:
        try:
            _refuse_zip(_read_bytes(path, 4), path)  # model.pt: say what it is, not only that its name is odd
        except FileNotFoundError:
            pass  # the unknown extension is the first thing to fix
    fmt = _format_of(path, format)
    if fmt == "safetensors":
        _safetensors()  # without the package, say so before reading anything
        data = _read_bytes(path)
        _refuse_zip(data, path)
        return _load_safetensors(data, path)
    data = _read_bytes(path)
    _refuse_zip(data, path)
    return _decode(data, path)


def load(path: PathLike, *, format: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Reads a MindSpore checkpoint into NumPy arrays.

    A ``.safetensors`` file is read with the optional ``safetensors`` package (its bfloat16 and
    float8 tensors as ``ml_dtypes`` arrays), a ``.ckpt`` file as MindSpore's protobuf format, with
    or without a CRC trailer.

    Args:
        path: The file: a regular file ending in ``.ckpt`` or ``.safetensors`` (any letter case).
        format: ``'ckpt'`` or ``'safetensors'`` to read a file of another name; None (default)
            takes the format from the extension.

    Returns:
        ``{name: array}`` in file order (safetensors: names sorted). Tensors keep their stored
        shape and dtype; scalars are 0-d arrays; text entries are 0-d unicode arrays
        (``str(value)`` gives the text). Slices of one tensor stored in consecutive records are
        joined. Arrays are new and writable. :func:`split_training_state` separates the network's
        parameters from an optimizer's state.

    Raises:
        CheckpointError: the file is empty (0 bytes), a directory, a device, a fifo or a socket
            (refused before reading), a zip archive (a PyTorch or NumPy file), truncated,
            corrupted, encrypted, fails its CRC, names a tensor twice, uses an unknown or
            unsupported tensor_type or safetensors dtype (Int4, F4, F6, C64, ...), or is not a
            checkpoint.
        ValueError: ``format`` is None and the extension is neither ``.ckpt`` nor ``.safetensors``,
            or ``format`` is not one of the two.
        ImportError: the file holds BFloat16 (or, in safetensors, float8) tensors and
            ``ml_dtypes`` is not installed, or it is safetensors and ``safetensors`` is not
            installed.
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    return _read(path, format)[0]


def save(path: PathLike, arrays: Mapping[str, Any], *, crc_check: bool = False, format: Optional[str] = None) -> None:
    """Writes arrays as a MindSpore 2.10 checkpoint, byte for byte as ``save_checkpoint`` would.

    Entries are written in the mapping's order. NumPy arrays keep their dtype (bool, int8-64,
    uint8-64, float16/32/64, ml_dtypes.bfloat16) and shape (a 0-d array has no dims, as in 2.10);
    Python ``int`` is stored as Int64, ``float`` as Float32, ``bool`` as Bool and ``str`` as a
    text entry, as ``append_dict`` does. torch tensors (``nn.Parameter`` included, bfloat16 too),
    JAX arrays and Flax ``nnx.Variable`` values are stored with their own dtype, detached.
    Nested mappings are flattened to dotted names: ``{"up1": {"weight": w}}`` is stored as
    ``up1.weight``, and ``nnx.state(model)`` as ``layers.0.kernel``, ... (int keys allowed below
    the top level). Tensors over 512 MiB are split into 512 MiB records.

    The file is written atomically: to a temporary file in the same folder, flushed to the disk,
    then renamed over ``path``. A reader sees the old file or the new one, never a part; a save
    that fails (full disk, an exception) leaves the old file as it was and removes its temporary
    file. A writer killed outright leaves its temporary file (``.<name>.<random>.tmp``) behind.

    Args:
        path: Destination, ending in ``.ckpt`` or ``.safetensors``; replaced. A ``.safetensors``
            file is written with the optional ``safetensors`` package, metadata
            ``{"format": "ms"}``, names sorted, and str entries left out with a warning that names
            them; it also holds ml_dtypes' float8 types.
        arrays: ``{name: array or scalar}``, possibly nested. For a ``.ckpt`` it may be empty only
            with ``crc_check=True``: a ``.ckpt`` without entries or CRC would be a 0-byte file,
            which :func:`load` refuses as a failed write.
        crc_check: Append MindSpore's CRC trailer (``crc_num`` + 10-byte big-endian CRC-32 of the
            file); for safetensors, add the ``crc_num`` metadata MindSpore adds.
        format: ``'ckpt'`` or ``'safetensors'`` to write a file of another name; None (default)
            takes the format from the extension.

    Raises:
        TypeError: a name that is not a str, or a value a checkpoint cannot hold (complex, object,
            byte strings, arrays of strings, a sparse torch tensor, a JAX PRNG key, ...); the
            message names the entry. Nothing is written then.
        ValueError: a Python int outside int64, a ragged list, a name that is not valid UTF-8,
            two entries with the same flattened name, an empty ``arrays`` for a ``.ckpt`` without
            ``crc_check``, or an unknown extension with no ``format``.
        ImportError: safetensors requested and ``safetensors`` is not installed, or a bfloat16
            torch tensor and no ``ml_dtypes``.
        OSError: the file cannot be written (the folder is missing, the disk is full, ...).
    """
    _save(path, arrays, crc_check, format)


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    crc_check: bool = False,
    format: Optional[str] = None,
    src_format: Optional[str] = None,
) -> Dict[str, np.ndarray]:
    """Converts between ``.ckpt`` and ``.safetensors`` (or copies one format to the same).

    Args:
        src: File to read.
        dst: File to write (replaced atomically, as :func:`save` does).
        crc_check: Write a CRC (see :func:`save`).
        format: Format of ``dst``, ``'ckpt'`` or ``'safetensors'``; None takes it from its extension.
        src_format: Format of ``src``, likewise.

    Returns:
        The arrays read from ``src`` (a text entry among them is not written to safetensors).
    """
    _format_of(dst, format)  # an unknown destination is refused before reading anything
    arrays = load(src, format=src_format)
    save(dst, arrays, crc_check=crc_check, format=format)
    return arrays


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _dtype_label(arr: np.ndarray) -> str:
    return "str" if arr.dtype.kind == "U" else str(arr.dtype)


def _value_label(arr: np.ndarray, width: int = 40) -> str:
    """Shows the value of a scalar or text entry; tensors get an empty cell."""
    if arr.ndim:
        return ""
    text = repr(str(arr[()])) if arr.dtype.kind == "U" else str(arr[()])
    return text if len(text) <= width else text[: width - 3] + "..."


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _table(arrays: Mapping[str, np.ndarray], crc: bool) -> str:
    """The ``inspect`` listing: the network's parameters, then the training state; then totals.

    Each row: name, shape, dtype, elements, bytes, scalar value. Each group starts with a line
    ``# network parameters (N)`` or ``# training state (N)`` (left out when empty).
    """
    head = ("name", "shape", "dtype", "elements", "bytes", "value")
    network, state = split_training_state(arrays)
    groups = [
        (f"# network parameters ({len(network)})", network),
        (f"# training state ({len(state)}): optimizer slots and scalars, appended entries", state),
    ]
    rows = {
        name: (name, str(tuple(a.shape)), _dtype_label(a), f"{a.size:,}", f"{a.nbytes:,}", _value_label(a))
        for name, a in arrays.items()
    }
    widths = [max(len(r[i]) for r in [head, *rows.values()]) for i in range(len(head))]
    right = {3, 4}  # numbers line up on the right

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    lines = [line(head)]
    for title, group in groups:
        if group:
            lines += [title, *(line(rows[name]) for name in group)]
    total = sum(a.size for a in arrays.values()), sum(a.nbytes for a in arrays.values())
    lines.append(
        f"{_count(len(arrays), 'entry', 'entries')} ({_count(len(network), 'network parameter', 'network parameters')}"
        f", {len(state):,} training state), {total[0]:,} elements, {total[1]:,} bytes; "
        + ("CRC-32 verified" if crc else "no CRC")
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convtranspose.ckpt",
        description="Inspect MindSpore checkpoints and convert them to or from safetensors.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ins = sub.add_parser(
        "inspect", help="list the entries of a .ckpt or .safetensors file: network parameters, then training state"
    )
    ins.add_argument("file")
    ins.add_argument("--format", choices=_FORMATS, help="format of FILE when its extension does not say")
    conv = sub.add_parser("convert", help="convert between .ckpt and .safetensors (format chosen by extension)")
    conv.add_argument("src", metavar="IN")
    conv.add_argument("dst", metavar="OUT")
    conv.add_argument("--crc", action="store_true", help="write a CRC (MindSpore's crc_check)")
    conv.add_argument(
        "--from", dest="src_format", choices=_FORMATS, help="format of IN when its extension does not say"
    )
    conv.add_argument("--to", dest="dst_format", choices=_FORMATS, help="format of OUT when its extension does not say")
    return parser


def _convert_command(args: argparse.Namespace) -> str:
    """Runs ``convert``; returns the line to print, with the number of entries really written."""
    _format_of(args.dst, args.dst_format)  # refuse an unknown OUT before reading IN
    arrays = load(args.src, format=args.src_format)
    written = _save(args.dst, arrays, args.crc, args.dst_format)
    left_out = len(arrays) - len(written)
    note = f"; left out {left_out} of its {len(arrays)} (see the warning)" if left_out else ""
    return f"wrote {args.dst}: {_count(len(written), 'entry', 'entries')} from {args.src}{note}"


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the exit status (2 with a one-line message on a bad file).

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.
    """
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.command == "inspect":
                print(_table(*_read(args.file, args.format)))
            else:
                print(_convert_command(args))
        except (CheckpointError, ImportError, OSError, TypeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
