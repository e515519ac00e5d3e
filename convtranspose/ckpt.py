"""Read and write MindSpore checkpoints (``.ckpt``) with NumPy alone, and convert them to safetensors.

A MindSpore ``.ckpt`` file is a protobuf ``Checkpoint`` message (``spec/CHECKPOINT_FORMAT.md``): a run
of ``Value`` records, each a tensor name (``tag``) and a ``TensorProto`` (``dims``, a ``tensor_type``
name such as ``"Float32"``, and the raw little-endian C-order bytes). This module reads and writes
that wire format by hand, so neither protobuf nor MindSpore is needed, and it checks every length
and size against the file before it allocates anything: a damaged file raises
:class:`CheckpointError` (a ``ValueError``) that names the file, the problem and, where known, the
tensor.

What :func:`load` returns, per entry (a ``dict`` in file order):

* tensors: a NumPy array of the stored shape and dtype (``Float32`` -> ``float32``, ``Uint8`` and
  ``UInt8`` -> ``uint8``, ``Bool`` -> ``bool``, ``BFloat16`` -> ``ml_dtypes.bfloat16``);
* scalars (``epoch_num``, ``lr``, ...): a 0-d array, whether the file has no dims (MindSpore 2.x)
  or ``dims == [0]`` (MindSpore 1.x);
* text (``tensor_type "str"``): a 0-d NumPy unicode array, e.g. ``array('adam', dtype='<U4')``;
  ``str(value)`` gives the text back.

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
import os
import sys
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

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
_READ_TYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in [
        ("Int8", "i1"), ("Int16", "<i2"), ("Int32", "<i4"), ("Int64", "<i8"),
        ("UInt8", "u1"), ("UInt16", "<u2"), ("UInt32", "<u4"), ("UInt64", "<u8"),
        ("Uint8", "u1"), ("Uint16", "<u2"), ("Uint32", "<u4"), ("Uint64", "<u8"),
        ("Float16", "<f2"), ("Float32", "<f4"), ("Float64", "<f8"), ("Bool", "?"),
    ]
}
_BF16 = "BFloat16"
_STR = "str"

# NumPy dtype (native order) -> the name MindSpore 2.10 writes. BFloat16 is matched by dtype name
# so that saving never imports ml_dtypes.
_WRITE_TYPES: dict[np.dtype, str] = {
    np.dtype(code): name
    for name, code in [
        ("Int8", "i1"), ("Int16", "i2"), ("Int32", "i4"), ("Int64", "i8"),
        ("UInt8", "u1"), ("UInt16", "u2"), ("UInt32", "u4"), ("UInt64", "u8"),
        ("Float16", "f2"), ("Float32", "f4"), ("Float64", "f8"), ("Bool", "?"),
    ]
}

_SAFETENSORS_HINT = "pip install convtranspose[safetensors]"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint: damaged, truncated, encrypted or of another kind.

    The message names the file, what is wrong, and the tensor and byte offset where known.

    Attributes:
        path: The file, as given.
        problem: What is wrong, without the file name.
        tensor: Name of the tensor concerned, or None.
        offset: Byte offset in the file where the problem was found, or None.
    """

    def __init__(self, path: PathLike, problem: str, *, tensor: str | None = None,
                 offset: int | None = None):
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

    def __init__(self, buf: bytes, start: int, end: int, path: PathLike, scope: str,
                 tensor: str | None = None):
        self.buf, self.pos, self.end, self.path = buf, start, end, path
        self.scope, self.tensor = scope, tensor

    def error(self, problem: str, offset: int | None = None) -> CheckpointError:
        return CheckpointError(self.path, problem, tensor=self.tensor,
                               offset=self.pos if offset is None else offset)

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

    def key(self) -> tuple[int, int, int]:
        """Returns ``(field number, wire type, offset of the key)``."""
        start = self.pos
        key = self.varint()
        return key >> 3, key & 7, start

    def chunk(self) -> tuple[int, int]:
        """Reads a length prefix; returns the ``(start, end)`` of the payload and skips it.

        The length is checked against the bytes left in the enclosing message before anything
        is sliced, so a forged length can never make us read or allocate past the file.
        """
        at = self.pos
        length = self.varint()
        left = self.end - self.pos
        if length > left:
            raise self.error(f"length {length} exceeds the {left} bytes left in the {self.scope} "
                             "(truncated or corrupted file)", at)
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
    dims: tuple[int, ...]
    type_name: str
    start: int
    end: int
    offset: int


def _wire_error(cur: _Cursor, what: str, field: int, wire: int, at: int) -> CheckpointError:
    """Error for a field we do not expect, naming its number and wire type."""
    return cur.error(f"{what}: unexpected field {field} with wire type "
                     f"{_WIRE_NAMES.get(wire, wire)}", at)


def _text(cur: _Cursor, start: int, end: int, what: str) -> str:
    """Decodes ``buf[start:end]`` as UTF-8, or raises a CheckpointError naming ``what``."""
    try:
        return cur.buf[start:end].decode("utf-8")
    except UnicodeDecodeError:
        raise cur.error(f"{what} is not valid UTF-8", start) from None


def _record_spans(buf: bytes, path: PathLike) -> tuple[list[tuple[int, int, int]], int | None]:
    """Splits a checkpoint into its ``Value`` records and finds the CRC trailer.

    Returns:
        ``([(record offset, payload start, payload end), ...], trailer offset or None)``.
    """
    cur = _Cursor(buf, 0, len(buf), path, "file")
    spans: list[tuple[int, int, int]] = []
    try:
        return _scan_records(cur, spans)
    except CheckpointError as exc:
        if spans or buf.startswith(b"\x0a"):
            raise  # it starts like a checkpoint: truncated or corrupted, as the message says
        # Not even the first record key: most likely not a checkpoint, or encrypted.
        raise CheckpointError(path, f"not a readable checkpoint ({exc.problem}); it may be "
                                    "encrypted or not a MindSpore .ckpt file",
                              offset=exc.offset) from None


def _scan_records(cur: _Cursor, spans: list[tuple[int, int, int]]
                  ) -> tuple[list[tuple[int, int, int]], int | None]:
    """The loop of :func:`_record_spans`; appends to ``spans`` as it goes."""
    buf = cur.buf
    while not cur.at_end():
        rest = len(buf) - cur.pos
        # (the slice comparison only runs near the end: slicing the rest each time is quadratic)
        if buf.startswith(_CRC_MARK, cur.pos) or (rest < len(_CRC_MARK) and _CRC_MARK[:rest] == buf[cur.pos:]):
            # 'c' (0x63) can never start a record (it would be field 12, start-group), so at a
            # record boundary these bytes are the trailer and nothing else.
            if rest != _CRC_TRAILER_LEN:
                raise cur.error(f"the crc_num trailer should be the last {_CRC_TRAILER_LEN} "
                                f"bytes, but {rest} bytes remain from its start (truncated or "
                                "extended file)")
            return spans, cur.pos
        field, wire, at = cur.key()
        if (field, wire) != (1, _LEN):
            raise _wire_error(cur, "not a Checkpoint record", field, wire, at)
        start, end = cur.chunk()
        spans.append((at, start, end))
    return spans, None


def _check_crc(buf: bytes, trailer: int, path: PathLike) -> None:
    """Compares the stored CRC-32 with that of every byte before the trailer."""
    stored = int.from_bytes(buf[trailer + len(_CRC_MARK):trailer + _CRC_TRAILER_LEN], "big")
    actual = zlib.crc32(memoryview(buf)[:trailer])
    if stored != actual:
        raise CheckpointError(path, f"CRC-32 mismatch: the trailer says {stored}, the content "
                                    f"gives {actual}; the file is corrupted", offset=trailer)


def _tail_crc_fails(buf: bytes) -> bool:
    """True when the file ends in what looks like a CRC trailer that does not match."""
    if len(buf) < _CRC_TRAILER_LEN or not buf.startswith(_CRC_MARK, len(buf) - _CRC_TRAILER_LEN):
        return False
    stored = int.from_bytes(buf[-10:], "big")
    return stored != zlib.crc32(memoryview(buf)[:-_CRC_TRAILER_LEN])


def _parse_value(buf: bytes, span: tuple[int, int, int], path: PathLike) -> _Piece:
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


def _parse_tensor(outer: _Cursor, tag: str, span: tuple[int, int], offset: int) -> _Piece:
    """Parses a ``TensorProto`` (dims, tensor_type, tensor_content) found at ``span``."""
    cur = _Cursor(outer.buf, span[0], span[1], outer.path, "TensorProto", tag)
    dims: list[int] = []
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


def _group(pieces: list[_Piece], path: PathLike) -> Iterator[list[_Piece]]:
    """Yields runs of consecutive pieces with the same tag (the slices of one tensor).

    A tag that comes back after another tensor is refused: MindSpore would silently keep the
    last copy, which hides a damaged or concatenated file.
    """
    seen: dict[str, int] = {}
    run: list[_Piece] = []
    for piece in pieces:
        if run and piece.tag != run[0].tag:
            yield run
            run = []
        if not run and piece.tag in seen:
            raise CheckpointError(path, f"tensor appears twice, in records at bytes "
                                        f"{seen[piece.tag]} and {piece.offset}",
                                  tensor=piece.tag, offset=piece.offset)
        if not run:
            seen[piece.tag] = piece.offset
        run.append(piece)
    if run:
        yield run


# ----------------------------------------------------------------------------------------------
# From pieces to arrays
# ----------------------------------------------------------------------------------------------

def _dtype_for(type_name: str, path: PathLike, tag: str, offset: int) -> np.dtype:
    """NumPy dtype for a ``tensor_type`` name; imports ml_dtypes only for BFloat16."""
    if type_name in _READ_TYPES:
        return _READ_TYPES[type_name]
    if type_name == _BF16:
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError(f"{os.fspath(path)}: tensor {tag!r} is BFloat16; reading it needs the "
                              "ml_dtypes package: pip install convtranspose[bfloat16]") from None
        return np.dtype(ml_dtypes.bfloat16)
    if type_name == "Int4":
        raise CheckpointError(path, "tensor_type Int4 (packed 4-bit integers) is not supported",
                              tensor=tag, offset=offset)
    known = ", ".join([*_READ_TYPES, _BF16, _STR])
    raise CheckpointError(path, f"unknown tensor_type {type_name!r} (known: {known})",
                          tensor=tag, offset=offset)


def _shape_for(dims: tuple[int, ...], itemsize: int, nbytes: int, type_name: str,
               path: PathLike, tag: str, offset: int) -> tuple[int, ...]:
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
        raise CheckpointError(path, f"dims {list(dims)} are too large for an array",
                              tensor=tag, offset=offset)
    count = nonzero if 0 not in dims else 0
    if count * itemsize != nbytes:
        what = "a scalar" if not dims else f"{count} items"
        raise CheckpointError(path, f"dims {list(dims)} of {type_name} need {count * itemsize} "
                                    f"bytes ({what}) but tensor_content holds {nbytes}",
                              tensor=tag, offset=offset)
    return dims


def _join(buf: bytes, run: list[_Piece]) -> np.ndarray:
    """Copies the contents of a run of slices into one new uint8 array (sizes already checked)."""
    total = sum(p.end - p.start for p in run)
    out = np.empty(total, np.uint8)
    at = 0
    for p in run:
        n = p.end - p.start
        out[at:at + n] = np.frombuffer(buf, np.uint8, n, p.start)
        at += n
    return out


def _decode_str(raw: np.ndarray, dims: tuple[int, ...], path: PathLike, tag: str,
                offset: int) -> np.ndarray:
    """Text entry -> 0-d unicode array. MindSpore stores ``np.array(text).tobytes()`` (UTF-32-LE)."""
    if dims not in ((0,), (), (1,)):
        raise CheckpointError(path, f"str entry has dims {list(dims)}; expected [0] (one string)",
                              tensor=tag, offset=offset)
    if raw.size % 4:
        raise CheckpointError(path, f"str content of {raw.size} bytes is not UTF-32 "
                                    "(not a multiple of 4)", tensor=tag, offset=offset)
    codes = raw.view("<u4")
    if ((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any():
        raise CheckpointError(path, "str content holds invalid code points", tensor=tag,
                              offset=offset)
    if codes.size == 0:
        return np.array("")
    # NumPy's 'U' type is UTF-32 in native order; like MindSpore, trailing NULs are dropped.
    return np.array(str(raw.view(f"<U{codes.size}")[0]))


def _to_array(buf: bytes, run: list[_Piece], path: PathLike) -> np.ndarray:
    """Builds the array for one tensor from its slices (one or more consecutive records)."""
    first = run[0]
    for p in run[1:]:
        if (p.dims, p.type_name) != (first.dims, first.type_name):
            raise CheckpointError(path, f"slices disagree: dims {list(first.dims)} "
                                        f"{first.type_name} then {list(p.dims)} {p.type_name}",
                                  tensor=first.tag, offset=p.offset)
    nbytes = sum(p.end - p.start for p in run)
    if first.type_name == _STR:
        return _decode_str(_join(buf, run), first.dims, path, first.tag, first.offset)
    dtype = _dtype_for(first.type_name, path, first.tag, first.offset)
    shape = _shape_for(first.dims, dtype.itemsize, nbytes, first.type_name, path, first.tag,
                       first.offset)
    raw = _join(buf, run)
    if dtype == np.bool_:
        return (raw != 0).reshape(shape)  # any non-zero byte is True; the array holds 0/1 only
    return raw.view(dtype).reshape(shape)


def _decode(buf: bytes, path: PathLike) -> tuple[dict[str, np.ndarray], bool]:
    """Parses checkpoint bytes.

    Returns:
        ``(arrays by name in file order, whether a CRC trailer was present and verified)``.
    """
    if len(buf) >= 4 and int.from_bytes(buf[:4], "little") in _CIPHER_MAGIC:
        mode = _CIPHER_MAGIC[int.from_bytes(buf[:4], "little")]
        raise CheckpointError(path, f"not a readable checkpoint: it is encrypted ({mode} header "
                                    "of MindSpore's enc_key); load it in MindSpore with dec_key "
                                    "and save it again without enc_key")
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
    dims: tuple[int, ...]
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
        raise TypeError(f"{name!r}: a checkpoint holds one string per entry, got a str array "
                        f"of shape {arr.shape}")
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
        raise TypeError(f"{name!r}: dtype {dtype} cannot be stored in a checkpoint "
                        f"(supported: {supported})")
    return found


def _records(entry: _Entry) -> Iterator[tuple[bytes, memoryview]]:
    """Yields ``(record header, content chunk)``: one record, or one per 512 MiB slice.

    The header is everything of the serialized ``Checkpoint`` message before the content bytes,
    with fields in MindSpore's order (tag, then dims, tensor_type, tensor_content).
    """
    dims = b"".join(_varint(1 << 3 | _VARINT) + _varint(d) for d in entry.dims)
    type_field = _field(2, entry.type_name.encode("ascii"))
    size = len(entry.data)
    starts = range(0, size, _SLICE_BYTES) if entry.type_name != _STR and size else [0]
    for start in starts:
        chunk = entry.data[start:start + _SLICE_BYTES] if entry.type_name != _STR else entry.data
        content_head = _varint(3 << 3 | _LEN) + _varint(len(chunk))
        tensor_len = len(dims) + len(type_field) + len(content_head) + len(chunk)
        tensor_head = _varint(2 << 3 | _LEN) + _varint(tensor_len)
        value_len = len(_field(1, entry.tag)) + len(tensor_head) + tensor_len
        head = (_varint(1 << 3 | _LEN) + _varint(value_len) + _field(1, entry.tag)
                + tensor_head + dims + type_field + content_head)
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
        raise ImportError("reading or writing .safetensors files needs the safetensors package: "
                          f"{_SAFETENSORS_HINT}") from None
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


def _load_safetensors(path: PathLike) -> tuple[dict[str, np.ndarray], bool]:
    """Reads a safetensors file; verifies MindSpore's ``crc_num`` metadata when present."""
    st = _safetensors()
    try:
        with st.safe_open(os.fspath(path), framework="np") as f:
            metadata = f.metadata() or {}
            arrays = {name: np.array(f.get_tensor(name)) for name in f.keys()}
    except st.SafetensorError as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
    if "crc_num" not in metadata:
        return arrays, False
    actual = _safetensors_crc(arrays)
    if metadata["crc_num"] != str(actual):
        raise CheckpointError(path, f"CRC-32 mismatch: metadata crc_num is "
                                    f"{metadata['crc_num']!r}, the content gives {actual}")
    return arrays, True


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
        _type_name(name, arr.dtype)  # same dtype rules as .ckpt
        # astype, not ascontiguousarray: that one turns a 0-d scalar into shape (1,)
        tensors[name] = arr.astype(arr.dtype.newbyteorder("<"), order="C", copy=False)
    if skipped:
        warnings.warn(f"{os.fspath(path)}: safetensors cannot hold text; left out str "
                      f"entries {skipped}", UserWarning, stacklevel=3)
    metadata = {"format": "ms"}
    if crc_check:
        metadata["crc_num"] = str(_safetensors_crc(tensors))
    st.numpy.save_file(tensors, os.fspath(path), metadata=metadata)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def _read(path: PathLike) -> tuple[dict[str, np.ndarray], bool]:
    """Loads any supported file; also says whether a CRC was present (and verified)."""
    if _is_safetensors(path):
        return _load_safetensors(path)
    return _decode(Path(path).read_bytes(), path)


def load(path: PathLike) -> dict[str, np.ndarray]:
    """Reads a MindSpore checkpoint into NumPy arrays.

    A ``.safetensors`` file (by extension) is read with the optional ``safetensors`` package;
    anything else is read as a MindSpore ``.ckpt`` file, with or without a CRC trailer.

    Args:
        path: The file.

    Returns:
        ``{name: array}`` in file order. Tensors keep their stored shape and dtype; scalars are
        0-d arrays; text entries are 0-d unicode arrays (``str(value)`` gives the text). Slices
        of one tensor stored in consecutive records are joined. Arrays are new and writable.

    Raises:
        CheckpointError: the file is truncated, corrupted, encrypted, fails its CRC, uses an
            unknown or unsupported tensor_type, or is not a checkpoint at all.
        ImportError: the file holds BFloat16 tensors and ``ml_dtypes`` is not installed, or it
            is ``.safetensors`` and ``safetensors`` is not installed.
        OSError: the file cannot be read.
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
            and str entries left out with a warning.
        arrays: ``{name: array or scalar}``.
        crc_check: Append MindSpore's CRC trailer (``crc_num`` + 10-byte big-endian CRC-32 of the
            file); for safetensors, add the ``crc_num`` metadata MindSpore adds.

    Raises:
        TypeError: a name that is not a str, or a dtype a checkpoint cannot hold (complex,
            object, byte strings, arrays of strings, ...).
        ValueError: a Python int outside int64.
        ImportError: ``.safetensors`` requested and ``safetensors`` is not installed.
    """
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a mapping of names to arrays, got {type(arrays).__name__}")
    if _is_safetensors(path):
        _save_safetensors(path, arrays, crc_check)
        return
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


def convert(src: PathLike, dst: PathLike, *, crc_check: bool = False) -> dict[str, np.ndarray]:
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
    return text if len(text) <= width else text[:width - 3] + "..."


def _table(arrays: Mapping[str, np.ndarray], crc: bool) -> str:
    """The ``inspect`` listing: name, shape, dtype, elements, bytes, scalar value; then totals."""
    head = ("name", "shape", "dtype", "elements", "bytes", "value")
    rows = [(name, str(tuple(a.shape)), _dtype_label(a), f"{a.size:,}", f"{a.nbytes:,}",
             _value_label(a)) for name, a in arrays.items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    right = {3, 4}  # numbers line up on the right

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    total = sum(a.size for a in arrays.values()), sum(a.nbytes for a in arrays.values())
    foot = (f"{len(arrays)} entries, {total[0]:,} elements, {total[1]:,} bytes; "
            + ("CRC-32 verified" if crc else "no CRC"))
    return "\n".join([line(head), *(line(r) for r in rows), foot])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convtranspose.ckpt",
        description="Inspect MindSpore checkpoints and convert them to or from safetensors.")
    sub = parser.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("inspect", help="list the entries of a .ckpt or .safetensors file")
    ins.add_argument("file")
    conv = sub.add_parser("convert", help="convert between .ckpt and .safetensors "
                                          "(format chosen by extension)")
    conv.add_argument("src", metavar="IN")
    conv.add_argument("dst", metavar="OUT")
    conv.add_argument("--crc", action="store_true", help="write a CRC (MindSpore's crc_check)")
    return parser


def main(argv: list[str] | None = None) -> int:
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
