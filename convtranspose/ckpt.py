"""Read and write MindSpore checkpoints (``.ckpt``) with NumPy alone, and convert them to safetensors.

A MindSpore ``.ckpt`` file is a protobuf ``Checkpoint`` message (``docs/checkpoint-format.md``): a run
of ``Value`` records, each a tensor name (``tag``) and a ``TensorProto`` (``dims``, a ``tensor_type``
name such as ``"Float32"``, and the raw little-endian C-order bytes). This module reads and writes
that wire format by hand, so neither protobuf nor MindSpore is needed, and it checks every length
and size against the file before it allocates anything: a damaged file raises
:class:`CheckpointError` (a ``ValueError``) that names the file, the problem and, where known, the
tensor. So do an empty (0-byte) file, which is what a failed write leaves, a directory, and a
tensor name that appears twice (in a ``.ckpt`` or in a safetensors header alike).

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
``Int64``, ``float`` as ``Float32``, ``bool`` as ``Bool``, ``str`` as ``str``.

Command line::

    python -m convtranspose.ckpt inspect FILE
    python -m convtranspose.ckpt convert IN OUT [--crc]

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
import json
import math
import os
import sys
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

__all__ = ["CheckpointError", "load", "save", "convert", "main"]

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


def _as_entry(name: Any, value: Any) -> _Entry:
    """Converts one ``save`` argument to an :class:`_Entry`, as MindSpore's save_checkpoint would.

    Raises:
        TypeError: the name is not a str, or the value has a dtype a checkpoint cannot hold.
        ValueError: the name cannot be encoded, or a Python int does not fit in int64.
    """
    if not isinstance(name, str):
        raise TypeError(f"checkpoint names must be str, got {name!r} ({type(name).__name__})")
    try:
        tag = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"checkpoint name {name!r} cannot be encoded as UTF-8") from None
    arr = _as_array(name, value)
    if arr.dtype.kind == "U":
        # MindSpore: dims [0], tensor_type "str", content np.array(text).tobytes() (UTF-32-LE).
        text = np.array(str(arr[()]), dtype="<U")
        return _Entry(tag, (0,), _STR, memoryview(text.tobytes()))
    type_name = _type_name(name, arr.dtype)
    flat = np.ascontiguousarray(arr.reshape(-1), dtype=arr.dtype.newbyteorder("<"))
    return _Entry(tag, arr.shape, type_name, memoryview(flat.view(np.uint8)))


def _as_array(name: str, value: Any) -> np.ndarray:
    """The array to store for one ``save`` value; a str array must be a single string (0-d)."""
    if not isinstance(value, (np.ndarray, np.generic)):  # np.float64 is a float: test it first
        value = _python_scalar(name, value)
    arr = np.asarray(value)
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


def _is_safetensors(path: PathLike) -> bool:
    return Path(path).suffix.lower() == ".safetensors"


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


def _save_safetensors(path: PathLike, arrays: Mapping[str, Any], crc_check: bool) -> None:
    """Writes safetensors as MindSpore does: names sorted, metadata ``{"format": "ms"}``.

    Text entries have no safetensors dtype: they are left out with a warning.
    """
    st = _safetensors()
    tensors, skipped = {}, []
    for name in sorted(arrays):
        arr = _as_array(name, arrays[name])
        if arr.dtype.kind == "U":
            skipped.append(name)
            continue
        _check_safetensors_dtype(name, arr.dtype)
        # astype, not ascontiguousarray: that one turns a 0-d scalar into shape (1,)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
    if skipped:
        warnings.warn(
            f"{os.fspath(path)}: safetensors cannot hold text; left out str entries {skipped}",
            UserWarning,
            stacklevel=3,
        )
    metadata = {"format": "ms"}
    if crc_check:
        metadata["crc_num"] = str(_safetensors_crc(tensors))
    st.numpy.save_file(tensors, os.fspath(path), metadata=metadata)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _read_bytes(path: PathLike) -> bytes:
    """The whole file; a directory or an empty file is a CheckpointError naming the path."""
    p = Path(path)
    if p.is_dir():
        found = sorted(entry.name for entry in p.iterdir() if entry.suffix.lower() in (".ckpt", ".safetensors"))
        hint = ""
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            hint = f" (it holds {shown}: pass one of them)"
        raise CheckpointError(path, f"is a directory, not a checkpoint file{hint}")
    data = p.read_bytes()
    if not data:
        # Even a checkpoint with no entries is not empty when written with a CRC (the trailer),
        # and save() refuses to write one without: 0 bytes is a write that failed.
        raise CheckpointError(path, "the file is empty (0 bytes): not a checkpoint, most likely a write that failed")
    return data


def _read(path: PathLike) -> Tuple[Dict[str, np.ndarray], bool]:
    """Loads any supported file; also says whether a CRC was present (and verified)."""
    if _is_safetensors(path):
        _safetensors()  # without the package, say so before reading anything
        return _load_safetensors(_read_bytes(path), path)
    return _decode(_read_bytes(path), path)


def load(path: PathLike) -> Dict[str, np.ndarray]:
    """Reads a MindSpore checkpoint into NumPy arrays.

    A ``.safetensors`` file (by extension) is read with the optional ``safetensors`` package
    (its bfloat16 and float8 tensors as ``ml_dtypes`` arrays); anything else is read as a
    MindSpore ``.ckpt`` file, with or without a CRC trailer.

    Args:
        path: The file.

    Returns:
        ``{name: array}`` in file order (safetensors: names sorted). Tensors keep their stored
        shape and dtype; scalars are 0-d arrays; text entries are 0-d unicode arrays
        (``str(value)`` gives the text). Slices of one tensor stored in consecutive records are
        joined. Arrays are new and writable.

    Raises:
        CheckpointError: the file is empty (0 bytes), a directory, truncated, corrupted,
            encrypted, fails its CRC, names a tensor twice, uses an unknown or unsupported
            tensor_type or safetensors dtype (Int4, F4, F6, C64, ...), or is not a checkpoint.
        ImportError: the file holds BFloat16 (or, in safetensors, float8) tensors and
            ``ml_dtypes`` is not installed, or it is ``.safetensors`` and ``safetensors`` is not
            installed.
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    return _read(path)[0]


def save(path: PathLike, arrays: Mapping[str, Any], *, crc_check: bool = False) -> None:
    """Writes arrays as a MindSpore 2.10 checkpoint, byte for byte as ``save_checkpoint`` would.

    Entries are written in the mapping's order. NumPy arrays keep their dtype (bool, int8-64,
    uint8-64, float16/32/64, ml_dtypes.bfloat16) and shape (a 0-d array has no dims, as in 2.10);
    Python ``int`` is stored as Int64, ``float`` as Float32, ``bool`` as Bool and ``str`` as a
    text entry, as ``append_dict`` does. Tensors over 512 MiB are split into 512 MiB records.

    Args:
        path: Destination; overwritten. With a ``.safetensors`` extension the file is written
            with the optional ``safetensors`` package, metadata ``{"format": "ms"}``, names sorted,
            and str entries left out with a warning; it also holds ml_dtypes' float8 types.
        arrays: ``{name: array or scalar}``. For a ``.ckpt`` it may be empty only with
            ``crc_check=True``: a ``.ckpt`` without entries or CRC would be a 0-byte file, which
            :func:`load` refuses as a failed write.
        crc_check: Append MindSpore's CRC trailer (``crc_num`` + 10-byte big-endian CRC-32 of the
            file); for safetensors, add the ``crc_num`` metadata MindSpore adds.

    Raises:
        TypeError: a name that is not a str, or a dtype a checkpoint cannot hold (complex,
            object, byte strings, arrays of strings, ...).
        ValueError: a Python int outside int64, or an empty ``arrays`` for a ``.ckpt`` without
            ``crc_check``.
        ImportError: ``.safetensors`` requested and ``safetensors`` is not installed.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}")
    if _is_safetensors(path):
        _save_safetensors(path, arrays, crc_check)
        return
    if not arrays and not crc_check:
        raise ValueError(
            f"arrays is empty ({dict(arrays)!r}): a .ckpt with no entries and no CRC "
            "would be a 0-byte file, which load() refuses as a failed write; pass "
            "crc_check=True to write an empty checkpoint (its CRC trailer alone)"
        )
    entries = [_as_entry(name, value) for name, value in arrays.items()]  # all checked first
    crc = 0
    with open(path, "wb") as f:
        for entry in entries:
            for head, chunk in _records(entry):
                f.write(head)
                f.write(chunk)
                if crc_check:
                    crc = zlib.crc32(chunk, zlib.crc32(head, crc))
        if crc_check:
            f.write(_CRC_MARK + crc.to_bytes(10, "big"))


def convert(src: PathLike, dst: PathLike, *, crc_check: bool = False) -> Dict[str, np.ndarray]:
    """Converts between ``.ckpt`` and ``.safetensors``; each format is chosen by extension.

    Args:
        src: File to read.
        dst: File to write (overwritten).
        crc_check: Write a CRC (see :func:`save`).

    Returns:
        The arrays read from ``src``.
    """
    arrays = load(src)
    save(dst, arrays, crc_check=crc_check)
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


def _table(arrays: Mapping[str, np.ndarray], crc: bool) -> str:
    """The ``inspect`` listing: name, shape, dtype, elements, bytes, scalar value; then totals."""
    head = ("name", "shape", "dtype", "elements", "bytes", "value")
    rows = [
        (name, str(tuple(a.shape)), _dtype_label(a), f"{a.size:,}", f"{a.nbytes:,}", _value_label(a))
        for name, a in arrays.items()
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {3, 4}  # numbers line up on the right

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    total = sum(a.size for a in arrays.values()), sum(a.nbytes for a in arrays.values())
    foot = (
        f"{len(arrays)} {'entry' if len(arrays) == 1 else 'entries'}, {total[0]:,} elements, "
        f"{total[1]:,} bytes; " + ("CRC-32 verified" if crc else "no CRC")
    )
    return "\n".join([line(head), *(line(r) for r in rows), foot])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convtranspose.ckpt",
        description="Inspect MindSpore checkpoints and convert them to or from safetensors.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="list the entries of a .ckpt or .safetensors file")
    ins.add_argument("file")
    conv = sub.add_parser("convert", help="convert between .ckpt and .safetensors (format chosen by extension)")
    conv.add_argument("src", metavar="IN")
    conv.add_argument("dst", metavar="OUT")
    conv.add_argument("--crc", action="store_true", help="write a CRC (MindSpore's crc_check)")
    return parser


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
                print(_table(*_read(args.file)))
            else:
                arrays = convert(args.src, args.dst, crc_check=args.crc)
                print(f"wrote {args.dst}: {len(arrays)} entries from {args.src}")
        except (CheckpointError, ImportError, OSError, TypeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
