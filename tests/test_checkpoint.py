"""convtranspose.ckpt: MindSpore .ckpt files read and written by hand, checked on files MindSpore wrote.

Covers: the golden files in tests/data/ckpt (exact bytes on re-save, CRC, fp16, encrypted),
every tensor_type and both scalar encodings, slices, str entries, bad files (each kind gets a
CheckpointError that names the file: empty files and directories too), the CRC against a CRC-32 of
our own, fuzzing with hypothesis (whatever loads must round-trip), safetensors (conversion, bfloat16
and float8 through ml_dtypes, repeated keys, generated files with a known verdict), the command
line, and the end-to-end decoder network built from the layer.

Files with unusual content are built here with a small protobuf encoder and a safetensors writer of
our own, so the reader is never checked only against our writer.
"""

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convtranspose import _ckpt_files, ckpt
from convtranspose.ckpt import CheckpointError

from conftest import golden_path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("up1.", "blocks.0.", "blocks.1.")
APPEND_DICT = {"epoch_num": 3, "step_num": 120, "lr": 0.01}  # what MindSpore was given (tests/data/README.md)


# ---------------------------------------------------------------------------------------------
# Golden data
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden() -> Path:
    """The golden ckpt folder, tests/data/ckpt (conftest's rule: fails when it is missing)."""
    return golden_path("ckpt")


@pytest.fixture(scope="module")
def expected(golden):
    """expected.npz as a dict: param/<name>, x, y, configs (JSON), meta (JSON)."""
    with np.load(golden / "expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def params(expected):
    """The network's parameters by name, as MindSpore had them."""
    return {k[len("param/") :]: v for k, v in expected.items() if k.startswith("param/")}


def _assert_same_arrays(got, ref):
    """Same names in the same order, and every array equal in shape, dtype and bits."""
    assert list(got) == list(ref)
    for name in ref:
        a, b = np.asarray(got[name]), np.asarray(ref[name])
        assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, a.dtype, b.shape, b.dtype)
        assert a.tobytes() == b.tobytes(), name


# ---------------------------------------------------------------------------------------------
# An independent protobuf encoder, for hand-made files
# ---------------------------------------------------------------------------------------------


def _uvarint(n: int) -> bytes:
    """Varint of any non-negative int (more than 64 bits gives an over-long varint, on purpose)."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _uvarint(field << 3 | 2) + _uvarint(len(payload)) + payload


def _tensor(dims, type_name, content, packed=False) -> bytes:
    if packed:
        dim_bytes = _ld(1, b"".join(_uvarint(d) for d in dims)) if dims else b""
    else:
        dim_bytes = b"".join(b"\x08" + _uvarint(d) for d in dims)
    return dim_bytes + _ld(2, type_name.encode()) + _ld(3, content)


def _record(tag, dims, type_name, content, packed=False) -> bytes:
    """One serialized Checkpoint message holding one Value, as MindSpore appends them."""
    tag = tag.encode() if isinstance(tag, str) else tag
    return _ld(1, _ld(1, tag) + _ld(2, _tensor(dims, type_name, content, packed)))


def _with_crc(body: bytes) -> bytes:
    return body + b"crc_num" + zlib.crc32(body).to_bytes(10, "big")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _st_file(entries, metadata=None) -> bytes:
    """A safetensors file written by hand (no safetensors package), so repeated keys are possible.

    ``entries``: ``(name, dtype, shape, data)`` or ``(name, dtype, shape, data, (start, end))``;
    the data of each is appended in order, and its offsets default to where it lands.
    """
    pairs, offset = [], 0
    for name, dtype, shape, data, *span in entries:
        start, end = span[0] if span else (offset, offset + len(data))
        pairs.append((name, {"dtype": dtype, "shape": list(shape), "data_offsets": [start, end]}))
        offset += len(data)
    if metadata is not None:
        pairs.insert(0, ("__metadata__", metadata))
    head = ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()
    head += b" " * (-len(head) % 8)  # safetensors pads its header to 8 bytes with spaces
    return len(head).to_bytes(8, "little") + head + b"".join(e[3] for e in entries)


def _st_header(data: bytes) -> dict:
    """The JSON header of safetensors bytes."""
    return _st_parts(data)[0]


def _st_parts(data: bytes):
    """``(header as a dict, the bytes after it)`` of safetensors bytes."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def _variety_file() -> bytes:
    """Many small records of every kind: old spellings, both scalar forms, str, slices, packed dims."""
    rng = np.random.default_rng(0)
    sliced = rng.standard_normal((3, 5)).astype("<f4").tobytes()
    parts = [
        _record("w.i16", [2, 3], "Int16", np.arange(6, dtype="<i2").tobytes()),
        _record("old.u8", [4], "Uint8", bytes([0, 1, 254, 255])),
        _record("new.u16", [2], "UInt16", np.array([1, 65535], "<u2").tobytes()),
        _record("old.scalar", [0], "Float32", np.float32(0.5).tobytes()),
        _record("new.scalar", [], "Int32", np.int32(-7).tobytes()),
        _record("flag", [3], "Bool", bytes([1, 0, 1])),
        _record("opt", [0], "str", np.array("adam").tobytes()),
        _record("empty", [0, 4], "Float64", b""),
        _record("packed", [2, 2], "Int64", np.arange(4, dtype="<i8").tobytes(), packed=True),
    ]
    # one tensor in three consecutive records, cut at byte (not item) boundaries
    parts += [_record("sliced", [3, 5], "Float32", sliced[a:b]) for a, b in [(0, 7), (7, 40), (40, 60)]]
    return b"".join(parts)


VARIETY_EXPECTED = {
    "w.i16": np.arange(6, dtype=np.int16).reshape(2, 3),
    "old.u8": np.array([0, 1, 254, 255], np.uint8),
    "new.u16": np.array([1, 65535], np.uint16),
    "old.scalar": np.array(0.5, np.float32),
    "new.scalar": np.array(-7, np.int32),
    "flag": np.array([True, False, True]),
    "opt": np.array("adam"),
    "empty": np.zeros((0, 4), np.float64),
    "packed": np.arange(4, dtype=np.int64).reshape(2, 2),
    "sliced": np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32),
}


def _refused(path: Path, *fragments: str) -> CheckpointError:
    """Loads ``path`` expecting a CheckpointError whose message names the file and each fragment."""
    with pytest.raises(CheckpointError) as info:
        ckpt.load(path)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert isinstance(info.value, ValueError)
    return info.value


# ---------------------------------------------------------------------------------------------
# Files MindSpore wrote
# ---------------------------------------------------------------------------------------------


def test_decoder_ckpt_loads_params_and_append_dict(golden, params):
    arrays = ckpt.load(golden / "decoder.ckpt")
    assert list(arrays) == [*params, *APPEND_DICT]
    for name, ref in params.items():
        assert arrays[name].dtype == ref.dtype and np.array_equal(arrays[name], ref), name
    # append_dict: int -> Int64, float -> Float32 scalars with no dims
    assert arrays["epoch_num"].shape == () and arrays["epoch_num"].dtype == np.int64
    assert int(arrays["epoch_num"]) == 3 and int(arrays["step_num"]) == 120
    assert arrays["lr"].shape == () and arrays["lr"].dtype == np.float32
    assert arrays["lr"] == np.float32(0.01)


def test_loaded_arrays_are_writable_copies(golden):
    arrays = ckpt.load(golden / "decoder.ckpt")
    weight = arrays["up1.weight"]
    assert weight.flags.writeable and weight.flags.c_contiguous
    weight[...] = 0  # must not fail, and must not touch the next load
    assert ckpt.load(golden / "decoder.ckpt")["up1.weight"].any()


@pytest.mark.parametrize(
    "name, crc", [("decoder.ckpt", False), ("decoder_fp16.ckpt", False), ("decoder_crc.ckpt", True)]
)
def test_resave_is_byte_identical(golden, tmp_path, name, crc):
    original = (golden / name).read_bytes()
    out = tmp_path / name
    ckpt.save(out, ckpt.load(golden / name), crc_check=crc)
    assert out.read_bytes() == original


def test_python_scalars_are_written_like_append_dict(golden, params, tmp_path):
    out = tmp_path / "net.ckpt"
    ckpt.save(out, {**params, **APPEND_DICT})
    assert out.read_bytes() == (golden / "decoder.ckpt").read_bytes()


def test_crc_file_loads_and_matches_plain_file(golden, params):
    _assert_same_arrays(ckpt.load(golden / "decoder_crc.ckpt"), params)


def test_fp16_checkpoint(golden, params):
    arrays = ckpt.load(golden / "decoder_fp16.ckpt")
    _assert_same_arrays(arrays, {k: v.astype(np.float16) for k, v in params.items()})


def test_encrypted_file_is_refused(golden):
    error = _refused(golden / "decoder_enc.ckpt", "not a readable checkpoint", "encrypted")
    assert error.tensor is None


# ---------------------------------------------------------------------------------------------
# Reading: types, scalars, slices, str
# ---------------------------------------------------------------------------------------------


def test_variety_file(tmp_path):
    arrays = ckpt.load(_write(tmp_path / "v.ckpt", _variety_file()))
    _assert_same_arrays(arrays, VARIETY_EXPECTED)
    assert str(arrays["opt"]) == "adam" and arrays["opt"].shape == ()


@pytest.mark.parametrize(
    "type_name, dtype",
    [
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
    ],
)
def test_every_tensor_type_reads(tmp_path, type_name, dtype):
    ref = (np.arange(12) % 2 == 1) if dtype == "?" else np.arange(12).astype(dtype)
    ref = ref.reshape(3, 4)
    out = ckpt.load(_write(tmp_path / "t.ckpt", _record("t", [3, 4], type_name, ref.tobytes())))["t"]
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, ref)


@pytest.mark.parametrize("dims", [[], [0]], ids=["no-dims-2.x", "dims0-1.x"])
@pytest.mark.parametrize(
    "type_name, value",
    [("Int64", np.int64(5)), ("Float32", np.float32(0.25)), ("Bool", np.bool_(True)), ("Float64", np.float64(-2.5))],
)
def test_both_scalar_encodings(tmp_path, dims, type_name, value):
    out = ckpt.load(_write(tmp_path / "s.ckpt", _record("s", dims, type_name, value.tobytes())))["s"]
    assert out.shape == () and out.dtype == value.dtype and out == value


def test_dims_zero_with_no_content_is_an_empty_vector(tmp_path):
    out = ckpt.load(_write(tmp_path / "e.ckpt", _record("e", [0], "Float32", b"")))["e"]
    assert out.shape == (0,) and out.dtype == np.float32


def test_bool_bytes_other_than_one_read_as_true(tmp_path):
    out = ckpt.load(_write(tmp_path / "b.ckpt", _record("b", [3], "Bool", bytes([0, 2, 255]))))["b"]
    assert out.tolist() == [False, True, True] and out.view(np.uint8).tolist() == [0, 1, 1]


@pytest.mark.parametrize("text", ["", "adam", "héllo ✓ 🎉", "trailing\x00spaces "])
def test_str_entries(tmp_path, text):
    # MindSpore writes dims [0], tensor_type "str" and np.array(text).tobytes() (UTF-32-LE)
    data = _record("opt", [0], "str", np.array(text).tobytes())
    path = _write(tmp_path / "s.ckpt", data)
    out = ckpt.load(path)["opt"]
    assert out.shape == () and out.dtype.kind == "U" and str(out) == text.rstrip("\x00")
    ckpt.save(tmp_path / "again.ckpt", {"opt": text})
    assert (tmp_path / "again.ckpt").read_bytes() == data


def test_bfloat16_reads_and_round_trips(tmp_path):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    ref = np.array([[1.5, -2.0], [0.0, 3.25]], dtype=ml_dtypes.bfloat16)
    path = _write(tmp_path / "b.ckpt", _record("w", [2, 2], "BFloat16", ref.tobytes()))
    out = ckpt.load(path)["w"]
    assert out.dtype == ref.dtype and np.array_equal(out.astype(np.float32), ref.astype(np.float32))
    ckpt.save(tmp_path / "again.ckpt", {"w": ref})
    assert (tmp_path / "again.ckpt").read_bytes() == path.read_bytes()


def test_bfloat16_without_ml_dtypes_names_the_tensor(tmp_path, monkeypatch):
    path = _write(tmp_path / "b.ckpt", _record("enc.w", [1], "BFloat16", b"\x80\x3f"))
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # makes `import ml_dtypes` fail
    with pytest.raises(ImportError, match=r"'enc\.w'.*ml_dtypes") as info:
        ckpt.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["e.ckpt", "e.safetensors", "e"])
def test_an_empty_file_is_refused(tmp_path, name):
    # a failed write leaves 0 bytes: that must not pass as a checkpoint with no entries
    error = _refused(_write(tmp_path / name, b""), "empty", "0 bytes")
    assert error.tensor is None and error.offset is None


def test_an_empty_checkpoint_is_written_only_with_its_crc(tmp_path):
    path = tmp_path / "e.ckpt"
    with pytest.raises(ValueError, match=r"arrays is empty \(\{\}\).*crc_check=True"):
        ckpt.save(path, {})
    assert not path.exists()
    ckpt.save(path, {}, crc_check=True)
    assert path.read_bytes() == b"crc_num" + bytes(10)  # the CRC-32 of no bytes is 0
    assert ckpt.load(path) == {}


def test_a_directory_is_refused_with_a_clear_message(tmp_path):
    _refused(tmp_path, "is a directory, not a checkpoint file")
    for name in ["b.ckpt", "a.safetensors", "c.ckpt", "d.ckpt", "notes.txt"]:
        (tmp_path / name).write_bytes(GOOD)
    error = _refused(tmp_path, "is a directory", "a.safetensors, b.ckpt, c.ckpt and 1 more")
    assert "notes.txt" not in str(error)
    safetensors_dir = tmp_path / "w.safetensors"  # the extension does not change the answer
    safetensors_dir.mkdir()
    _refused(safetensors_dir, "is a directory")


def test_crc_on_hand_made_file(tmp_path):
    body = _variety_file()
    _assert_same_arrays(ckpt.load(_write(tmp_path / "c.ckpt", _with_crc(body))), VARIETY_EXPECTED)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _random(rng, code, shape=(2, 3, 2)):
    """Random values of NumPy type ``code``: bools, small ints, or normal floats."""
    if code == "?":
        return rng.integers(0, 2, shape) == 1
    if code[0] in "iu":
        return rng.integers(0 if code[0] == "u" else -100, 100, shape).astype(code)
    return rng.standard_normal(shape).astype(code)


def test_round_trip_every_dtype(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        f"a.{code}": _random(rng, code)
        for code in ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "?"]
    }
    arrays["scalar"] = np.float64(2.5)
    arrays["zero-size"] = np.zeros((3, 0, 2), np.int32)
    arrays["text"] = "sgd"
    ckpt.save(tmp_path / "r.ckpt", arrays)
    back = ckpt.load(tmp_path / "r.ckpt")
    _assert_same_arrays(back, {k: np.asarray(v) for k, v in arrays.items()})


def test_python_bool_is_stored_as_bool(tmp_path):
    # bool is a subclass of int: a writer that tests int first stores True as Int64 1
    arrays = {"flag": True, "off": False, "np": np.bool_(True), "zero-d": np.array(False), "n": 1}
    ckpt.save(tmp_path / "b.ckpt", arrays)
    expected = (
        _record("flag", [], "Bool", b"\x01")
        + _record("off", [], "Bool", b"\x00")
        + _record("np", [], "Bool", b"\x01")
        + _record("zero-d", [], "Bool", b"\x00")
        + _record("n", [], "Int64", (1).to_bytes(8, "little"))
    )
    assert (tmp_path / "b.ckpt").read_bytes() == expected
    back = ckpt.load(tmp_path / "b.ckpt")
    for name in ["flag", "off", "np", "zero-d"]:
        assert back[name].dtype == np.bool_ and back[name].shape == (), name
        assert bool(back[name]) is bool(arrays[name]), name
    assert back["n"].dtype == np.int64


def test_python_bool_is_stored_as_bool_in_safetensors(tmp_path):
    pytest.importorskip("safetensors")
    ckpt.save(tmp_path / "b.safetensors", {"flag": True, "n": 2})
    header = _st_header((tmp_path / "b.safetensors").read_bytes())
    assert header["flag"]["dtype"] == "BOOL" and header["flag"]["shape"] == []
    assert header["n"]["dtype"] == "I64"
    back = ckpt.load(tmp_path / "b.safetensors")
    assert back["flag"].dtype == np.bool_ and back["flag"].shape == () and bool(back["flag"]) is True


def test_big_endian_and_strided_inputs_are_written_little_endian_c_order(tmp_path):
    ref = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays = {"be": ref.astype(">f4"), "strided": np.asfortranarray(ref)[:, ::2], "t": ref.T}
    ckpt.save(tmp_path / "x.ckpt", arrays)
    back = ckpt.load(tmp_path / "x.ckpt")
    for name, value in arrays.items():
        assert back[name].dtype == np.dtype("<f4") and np.array_equal(back[name], value), name
    expected = b"".join(
        _record(k, list(np.shape(v)), "Float32", np.ascontiguousarray(v, "<f4").tobytes()) for k, v in arrays.items()
    )
    assert (tmp_path / "x.ckpt").read_bytes() == expected


def test_large_tensors_are_sliced_like_mindspore(tmp_path, monkeypatch):
    # MindSpore cuts a tensor's bytes into 512 MiB chunks, each a record with the full dims;
    # lower the chunk size so the test needs only a few bytes.
    monkeypatch.setattr(ckpt, "_SLICE_BYTES", 64)
    ref = np.arange(50, dtype=np.float32).reshape(5, 10)  # 200 bytes -> 64 + 64 + 64 + 8
    raw = ref.tobytes()
    ckpt.save(tmp_path / "s.ckpt", {"big": ref, "small": np.ones(3, np.int8)})
    expected = b"".join(_record("big", [5, 10], "Float32", raw[i : i + 64]) for i in range(0, 200, 64))
    expected += _record("small", [3], "Int8", b"\x01\x01\x01")
    assert (tmp_path / "s.ckpt").read_bytes() == expected
    _assert_same_arrays(ckpt.load(tmp_path / "s.ckpt"), {"big": ref, "small": np.ones(3, np.int8)})


def test_crc_written_over_all_bytes(tmp_path):
    arrays = {"w": np.ones((2, 2), np.float32), "epoch_num": 1}
    ckpt.save(tmp_path / "plain.ckpt", arrays)
    ckpt.save(tmp_path / "crc.ckpt", arrays, crc_check=True)
    assert (tmp_path / "crc.ckpt").read_bytes() == _with_crc((tmp_path / "plain.ckpt").read_bytes())


@pytest.mark.parametrize(
    "arrays, error, fragment",
    [
        ({1: np.zeros(2)}, TypeError, "names must be str"),
        ({"c": np.zeros(2, np.complex64)}, TypeError, "complex64"),
        ({"o": np.array([object()])}, TypeError, "object"),
        ({"s": np.array(["a", "b"])}, TypeError, "one string"),
        ({"b": np.array([b"x"])}, TypeError, "cannot be stored"),
        ({"big": 1 << 63}, ValueError, "Int64"),
        ({"bad\ud800": 1}, ValueError, "UTF-8"),
    ],
)
def test_save_refuses_what_a_checkpoint_cannot_hold(tmp_path, arrays, error, fragment):
    path = tmp_path / "x.ckpt"
    with pytest.raises(error, match=fragment):
        ckpt.save(path, arrays)
    assert not path.exists()  # nothing written when an entry is refused


def test_save_needs_a_mapping(tmp_path):
    with pytest.raises(TypeError, match="mapping"):
        ckpt.save(tmp_path / "x.ckpt", [("w", np.zeros(2))])


# ---------------------------------------------------------------------------------------------
# Bad files: each kind is a CheckpointError naming the file, the problem and the tensor
# ---------------------------------------------------------------------------------------------

GOOD = _record("w", [2, 3], "Float32", np.zeros(6, "<f4").tobytes())


def test_truncated_files(golden, tmp_path):
    data = (golden / "decoder.ckpt").read_bytes()
    _refused(_write(tmp_path / "t.ckpt", data[:2000]), "length 3107 exceeds", "truncated")
    _refused(_write(tmp_path / "t.ckpt", data[:1]), "varint runs past the end")
    _refused(_write(tmp_path / "t.ckpt", data[:-1]), "exceeds")


def test_every_truncation_of_a_crc_file_is_refused(golden, tmp_path):
    data = (golden / "decoder_crc.ckpt").read_bytes()
    path = tmp_path / "t.ckpt"
    body_end = len(data) - 17
    for n in range(1, len(data)):
        path.write_bytes(data[:n])
        try:
            ckpt.load(path)
        except CheckpointError as exc:
            assert str(path) in str(exc)
        else:
            # only the cuts at record boundaries are valid files (without the CRC trailer)
            assert n <= body_end, n


def test_bit_flip_in_crc_file(golden, tmp_path):
    data = bytearray((golden / "decoder_crc.ckpt").read_bytes())
    data[500] ^= 0x10  # inside up1.weight: still parses, so only the CRC can tell
    _refused(_write(tmp_path / "f.ckpt", bytes(data)), "CRC-32 mismatch")
    data = bytearray((golden / "decoder_crc.ckpt").read_bytes())
    data[1] ^= 0x40  # the first record's length: the framing breaks, the CRC still names the cause
    _refused(_write(tmp_path / "f.ckpt", bytes(data)), "CRC-32 mismatch")


def _crc32_by_table(data: bytes) -> int:
    """CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF), written
    out here so that the CRC tests do not rest on zlib alone, as the library and _with_crc do."""
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0xEDB88320 if n & 1 else n >> 1
        table.append(n)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def test_crc_trailer_agrees_with_an_independent_crc32(golden, tmp_path):
    assert _crc32_by_table(b"123456789") == 0xCBF43926  # the standard check value of CRC-32
    data = (golden / "decoder_crc.ckpt").read_bytes()  # MindSpore's own trailer
    assert data[-17:] == b"crc_num" + _crc32_by_table(data[:-17]).to_bytes(10, "big")
    arrays = ckpt.load(_write(tmp_path / "v.ckpt", _variety_file()))
    ckpt.save(tmp_path / "c.ckpt", arrays, crc_check=True)  # ours, over other bytes
    written = (tmp_path / "c.ckpt").read_bytes()
    assert written[-17:] == b"crc_num" + _crc32_by_table(written[:-17]).to_bytes(10, "big")


def test_every_bit_of_the_crc_trailer_is_checked(golden, tmp_path):
    data = (golden / "decoder_crc.ckpt").read_bytes()
    path = tmp_path / "f.ckpt"
    start = len(data) - 17
    for i in range(start, len(data)):
        for bit in range(8):
            mutant = bytearray(data)
            mutant[i] ^= 1 << bit
            path.write_bytes(bytes(mutant))
            # in the CRC value: a mismatch (the 6 high bytes must be zero too); in the mark: the
            # bytes are no longer a trailer, so the file does not parse
            _refused(path, *(["CRC-32 mismatch"] if i >= start + 7 else []))


def test_any_changed_byte_before_the_trailer_is_a_crc_mismatch(golden, tmp_path):
    data = (golden / "decoder_crc.ckpt").read_bytes()
    path = tmp_path / "f.ckpt"
    # every third byte (1389 files): framing, names, dims, types and tensor bytes alike, all 8 bit positions
    for i in range(0, len(data) - 17, 3):
        mutant = bytearray(data)
        mutant[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(mutant))
        _refused(path, "CRC-32 mismatch")


def test_crc_trailer_must_end_the_file(tmp_path):
    data = _with_crc(GOOD)
    _refused(_write(tmp_path / "c.ckpt", data + GOOD), "crc_num trailer")
    _refused(_write(tmp_path / "c.ckpt", data[:-3]), "crc_num trailer")


def test_dims_disagree_with_content(tmp_path):
    bad = _record("up1.weight", [8, 6, 4, 4], "Float32", b"\0" * 3000)
    error = _refused(_write(tmp_path / "d.ckpt", GOOD + bad), "need 3072 bytes", "holds 3000", "up1.weight")
    assert error.tensor == "up1.weight"


@pytest.mark.parametrize(
    "dims",
    [[1 << 40, 1 << 40], [(1 << 63) - 1, 2], [0, 1 << 62, 1 << 62], [3] * 60],
    ids=["2^80-items", "int64-max", "zero-times-huge", "3^60"],
)
def test_huge_dims_never_allocate(tmp_path, dims):
    _refused(_write(tmp_path / "h.ckpt", _record("h", dims, "Float64", b"\0" * 16)), "dims", "'h'")


def test_negative_and_too_many_dims(tmp_path):
    _refused(_write(tmp_path / "n.ckpt", _record("n", [(1 << 64) - 2], "Int8", b"")), "negative dimension -2")
    _refused(_write(tmp_path / "m.ckpt", _record("m", [1] * 65, "Int8", b"\0")), "more than 64 dims")


def test_scalar_with_wrong_size(tmp_path):
    _refused(_write(tmp_path / "s.ckpt", _record("lr", [], "Float32", b"\0" * 8)), "a scalar", "'lr'")


def test_varint_running_off_the_end(tmp_path):
    _refused(_write(tmp_path / "v.ckpt", GOOD + b"\x0a\xff\xff"), "varint runs past the end")
    value = _ld(1, b"w") + _ld(2, b"\x08\x80")  # a dim whose varint stops mid-way
    _refused(_write(tmp_path / "v.ckpt", _ld(1, value)), "varint runs past the end of the TensorProto", "'w'")


def test_overlong_varint(tmp_path):
    _refused(_write(tmp_path / "v.ckpt", GOOD + b"\x0a" + b"\xff" * 11 + b"\x01"), "longer than 10 bytes")
    _refused(_write(tmp_path / "v.ckpt", GOOD + b"\x0a" + b"\xff" * 9 + b"\x7f"), "64 bits")


def test_length_larger_than_the_file(tmp_path):
    _refused(_write(tmp_path / "l.ckpt", GOOD + b"\x0a" + _uvarint(1 << 60) + b"xyz"), "exceeds the 3 bytes")
    inner = _ld(1, b"w") + b"\x12" + _uvarint(1000) + b"\x08\x01"  # TensorProto longer than its record
    _refused(_write(tmp_path / "l.ckpt", _ld(1, inner)), "exceeds", "record")


def test_unknown_and_unsupported_tensor_types(tmp_path):
    _refused(
        _write(tmp_path / "u.ckpt", _record("w", [1], "Float33", b"\0" * 4)), "unknown tensor_type 'Float33'", "'w'"
    )
    _refused(_write(tmp_path / "u.ckpt", _record("q", [2], "Int4", b"\x12")), "Int4", "not supported")
    _refused(_write(tmp_path / "u.ckpt", _record("r", [0], "random_op", b"\0")), "unknown tensor_type")


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x08\x01", "not a readable checkpoint"),  # varint at top level
        (GOOD + b"\x0d\0\0\0\0", "not a Checkpoint record"),  # 32-bit at top level
        (_ld(1, b"\x08\x05" + _ld(2, _tensor([1], "Int8", b"\0"))), "bad Value record"),  # tag as varint
        (_ld(1, _ld(1, b"w") + b"\x10\x01"), "bad Value record"),  # tensor as varint
        (_ld(1, _ld(1, b"w") + _ld(2, b"\x09" + b"\0" * 8 + _ld(2, b"Int8") + _ld(3, b""))), "bad TensorProto"),
        (_ld(1, _ld(1, b"w") + _ld(2, b"\x10\x01" + _ld(3, b""))), "bad TensorProto"),  # tensor_type as varint
        (_ld(1, _ld(1, b"w") + _ld(2, _ld(2, b"Int8") + b"\x18\x00")), "bad TensorProto"),  # content as varint
        (_ld(1, _ld(1, b"w") + _ld(2, _tensor([1], "Int8", b"\0") + _ld(9, b""))), "unexpected field 9"),
        (_ld(1, _ld(1, b"w") + b"\x1b\x1c"), "start-group"),
    ],
)
def test_wrong_wire_types(tmp_path, data, fragment):
    _refused(_write(tmp_path / "w.ckpt", data), fragment)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (_ld(1, _ld(2, _tensor([1], "Int8", b"\0"))), "no tensor name"),
        (_ld(1, _ld(1, b"w")), "no TensorProto"),
        (_ld(1, _ld(1, b"w") + _ld(2, b"\x08\x01" + _ld(3, b"\0"))), "no tensor_type"),
        (_ld(1, _ld(1, b"w") + _ld(2, b"\x08\x01" + _ld(2, b"Int8"))), "no tensor_content"),
        (_ld(1, _ld(1, b"w") + _ld(1, b"v") + _ld(2, _tensor([1], "Int8", b"\0"))), "bad Value record"),
        (_ld(1, _ld(1, b"w") + _ld(3, b"")), "map parameters"),
    ],
)
def test_missing_or_repeated_fields(tmp_path, data, fragment):
    _refused(_write(tmp_path / "m.ckpt", data), fragment)


def test_bad_text(tmp_path):
    _refused(_write(tmp_path / "t.ckpt", _record(b"\xff\xfe", [1], "Int8", b"\0")), "tensor name is not valid UTF-8")
    _refused(_write(tmp_path / "t.ckpt", _record("s", [0], "str", b"abc")), "not a multiple of 4", "'s'")
    _refused(_write(tmp_path / "t.ckpt", _record("s", [0], "str", b"\0\xd8\0\0")), "invalid code points")
    _refused(_write(tmp_path / "t.ckpt", _record("s", [0], "str", b"\xff\xff\xff\xff")), "invalid code points")
    _refused(_write(tmp_path / "t.ckpt", _record("s", [2, 2], "str", b"a\0\0\0")), "str entry has dims")


def test_slices_must_agree_and_names_must_not_repeat(tmp_path):
    a = _record("w", [2], "Float32", b"\0" * 4)
    _refused(_write(tmp_path / "s.ckpt", a + _record("w", [3], "Float32", b"\0" * 4)), "slices disagree", "'w'")
    _refused(_write(tmp_path / "s.ckpt", a + _record("w", [2], "Float64", b"\0" * 4)), "slices disagree")
    other = _record("v", [1], "Int8", b"\0")
    _refused(_write(tmp_path / "s.ckpt", a + a + other + a), "appears twice", "'w'")
    _refused(_write(tmp_path / "s.ckpt", a + a + a), "need 8 bytes", "holds 12")


@pytest.mark.parametrize(
    "data",
    [b"\x89HDF\r\n\x1a\n", b"hello world", b"\xff" * 64],
    ids=["hdf5", "text", "ff"],
)
def test_other_files_are_not_checkpoints(tmp_path, data):
    _refused(_write(tmp_path / "o.ckpt", data), "not a readable checkpoint", "may be encrypted")


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "nope.ckpt")


# ---------------------------------------------------------------------------------------------
# Fuzzing: mutated real files either load as arrays or raise CheckpointError, nothing else
# ---------------------------------------------------------------------------------------------

SEEDS = ("decoder.ckpt", "decoder_fp16.ckpt", "decoder_crc.ckpt", "variety", "variety+crc")
_POS = st.integers(0, 1 << 16)
_VARINTS = st.one_of(
    st.sampled_from(
        [0, 1, 2, 7, 127, 128, 3072, 4253, (1 << 31) - 1, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64]
    ),
    st.integers(0, 1 << 72),  # beyond 64 bits: over-long varints too
)
_MUTATION = st.one_of(
    st.tuples(st.just("flip"), _POS, st.integers(0, 7)),
    st.tuples(st.just("set"), _POS, st.integers(0, 255)),
    st.tuples(st.just("truncate"), _POS),
    st.tuples(st.just("insert"), _POS, st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), _POS, st.integers(1, 40)),
    st.tuples(st.just("varint"), _POS, _VARINTS, st.booleans()),
)
# derandomize: the same examples on every run, so CI is reproducible and needs no example database
_FUZZ = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    "print_blob": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@pytest.fixture(scope="module")
def seeds(golden):
    files = {name: (golden / name).read_bytes() for name in SEEDS if not name.startswith("variety")}
    files["variety"] = _variety_file()
    files["variety+crc"] = _with_crc(_variety_file())
    return files


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "mutant.ckpt"


def _mutate(data: bytes, ops) -> bytes:
    """Applies byte flips, writes, truncations, insertions, deletions and varints (positions wrap)."""
    buf = bytearray(data)
    for kind, pos, *args in ops:
        n = len(buf)
        if kind == "flip" and n:
            buf[pos % n] ^= 1 << args[0]
        elif kind == "set" and n:
            buf[pos % n] = args[0]
        elif kind == "truncate":
            del buf[pos % (n + 1) :]
        elif kind == "insert":
            at = pos % (n + 1)
            buf[at:at] = args[0]
        elif kind == "delete" and n:
            at = pos % n
            del buf[at : at + args[0]]
        elif kind == "varint":
            at, encoded = pos % (n + 1), _uvarint(args[0])
            buf[at : at + (len(encoded) if args[1] else 0)] = encoded  # overwrite or insert
    return bytes(buf)


def _load_or_refuse(path: Path) -> None:
    """The fuzz property: a CheckpointError naming the file, or arrays that round-trip.

    Whatever loads is saved again (plain, and with a CRC) and must load back with the same names
    in the same order, dtypes, shapes and bytes; saving that once more gives the same file.
    """
    try:
        arrays = ckpt.load(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(arrays, dict)
    for name, value in arrays.items():
        assert isinstance(name, str) and isinstance(value, np.ndarray)
        assert value.nbytes <= path.stat().st_size  # never more data than the file holds
    again = path.with_name("again" + path.suffix)
    with _without_fsync():
        for crc in [False, True] if arrays else [True]:  # no entries: only a CRC makes a file
            ckpt.save(again, arrays, crc_check=crc)
            written = again.read_bytes()
            back = ckpt.load(again)
            _assert_same_arrays(back, arrays)
            ckpt.save(again, back, crc_check=crc)
            assert again.read_bytes() == written


def _without_fsync():
    """Saves without syncing to the disk: thousands of fuzz saves would spend most of their time there.

    What syncing guards (a save that survives a crash) is tested in test_checkpoint_atomic.py.
    """
    stack = contextlib.ExitStack()
    for name in ("_fsync_file", "_fsync_folder"):
        stack.enter_context(mock.patch.object(_ckpt_files, name, lambda path: None))
    return stack


def _fuzz_once(seeds, fuzz_path, seed, ops):
    fuzz_path.write_bytes(_mutate(seeds[seed], ops))
    _load_or_refuse(fuzz_path)


# 1,000 mutants in the default suite (the same ones every run: derandomized); the slow variant
# below runs 20,000 with up to 8 mutations each.
@settings(max_examples=1000, **_FUZZ)
@given(seed=st.sampled_from(SEEDS), ops=st.lists(_MUTATION, min_size=1, max_size=4))
def test_fuzz_mutated_files(seeds, fuzz_path, seed, ops):
    _fuzz_once(seeds, fuzz_path, seed, ops)


@settings(max_examples=500, **_FUZZ)
@given(data=st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\x0a" + b)))
def test_fuzz_random_bytes(fuzz_path, data):
    fuzz_path.write_bytes(data)
    _load_or_refuse(fuzz_path)


@pytest.mark.slow
@settings(max_examples=20_000, **_FUZZ)
@given(seed=st.sampled_from(SEEDS), ops=st.lists(_MUTATION, min_size=1, max_size=8))
def test_fuzz_mutated_files_heavy(seeds, fuzz_path, seed, ops):
    _fuzz_once(seeds, fuzz_path, seed, ops)


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["decoder_fp16.ckpt", "variety"])
def test_every_single_bit_flip(seeds, fuzz_path, seed):
    data = seeds[seed]
    for i in range(len(data)):
        for bit in range(8):
            _fuzz_once(seeds, fuzz_path, seed, [("flip", i, bit)])


# Fuzzing safetensors: the JSON header is mutated as text (its length prefix kept right, so the
# mutants get past the first check), then the whole file as bytes.

_JSON_TOKENS = [
    b'"',
    b",",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b"0",
    b"-1",
    b"1e3",
    b"null",
    b'"w"',
    b'"dtype"',
    b'"F8_E4M3"',
    b'"BF16"',
    b'"BOOL"',
    b'"F4"',
    b'"C64"',
    b'"__metadata__"',
    b'"crc_num"',
]
_HEADER_MUTATION = st.one_of(_MUTATION, st.tuples(st.just("insert"), _POS, st.sampled_from(_JSON_TOKENS)))
ST_SEEDS = ("decoder.safetensors", "variety.safetensors", "variety+crc.safetensors")


def _st_variety(crc: bool) -> bytes:
    """A safetensors file of every kind of entry ckpt.load maps, optionally with MindSpore's crc_num."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(3)
    ref = {
        "a.bf16": rng.standard_normal((2, 3)).astype(ml_dtypes.bfloat16),
        "b.f8": rng.standard_normal(4).astype(ml_dtypes.float8_e4m3fn),
        "c.f8e5": rng.standard_normal(3).astype(ml_dtypes.float8_e5m2),
        "d.flag": np.array([True, False, True]),
        "e.step": np.array(7, np.int64),
        "f.empty": np.zeros((0, 3), np.float32),
        "g.u16": np.array([1, 65535], np.uint16),
    }
    names = {
        "bfloat16": "BF16",
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
        "bool": "BOOL",
        "int64": "I64",
        "float32": "F32",
        "uint16": "U16",
    }
    metadata = {"format": "ms"}
    if crc:  # computed here, with zlib, from the format's description
        value = 0
        for name in sorted(ref):
            value = zlib.crc32(ref[name].tobytes(), zlib.crc32(name.encode(), value))
        metadata["crc_num"] = str(value)
    return _st_file([(k, names[v.dtype.name], v.shape, v.tobytes()) for k, v in ref.items()], metadata)


@pytest.fixture(scope="module")
def st_seeds(golden):
    pytest.importorskip("safetensors")
    return {
        "decoder.safetensors": (golden / "decoder.safetensors").read_bytes(),
        "variety.safetensors": _st_variety(crc=False),
        "variety+crc.safetensors": _st_variety(crc=True),
    }


def test_safetensors_fuzz_seeds_load(st_seeds, tmp_path):
    for name, data in st_seeds.items():  # the seeds themselves are valid: the fuzz starts from files that load
        arrays = ckpt.load(_write(tmp_path / name, data))
        assert len(arrays) >= 5, name


@settings(max_examples=300, **_FUZZ)
@given(
    seed=st.sampled_from(ST_SEEDS),
    header_ops=st.lists(_HEADER_MUTATION, max_size=3),
    raw_ops=st.lists(_MUTATION, max_size=2),
)
def test_fuzz_safetensors(st_seeds, fuzz_path, seed, header_ops, raw_ops):
    data = st_seeds[seed]
    size = int.from_bytes(data[:8], "little")
    head = _mutate(data[8 : 8 + size], header_ops)
    path = fuzz_path.with_suffix(".safetensors")
    path.write_bytes(_mutate(len(head).to_bytes(8, "little") + head + data[8 + size :], raw_ops))
    try:
        arrays = ckpt.load(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    again = path.with_name("again.safetensors")
    for crc in (False, True):  # what loaded saves, and loads back the same, with or without crc_num
        ckpt.save(again, arrays, crc_check=crc)
        written = again.read_bytes()
        back = ckpt.load(again)
        _assert_same_arrays(back, arrays)
        ckpt.save(again, back, crc_check=crc)
        # the same file, but for the order of the metadata keys, which safetensors does not fix
        assert _st_parts(again.read_bytes()) == _st_parts(written)


# Generated safetensors files, with an oracle of their own: each file is built with known flaws
# (a name twice, a dtype no MindSpore checkpoint holds, a size that disagrees with the shape, a wrong
# crc_num) or none; a flawed file must be refused, a sound one must load with exactly its bytes.

_ST_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E4M3FNUZ": 1,
    "F8_E5M2FNUZ": 1,
    "F8_E8M0": 1,
}
_ST_NUMPY_NAME = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "I64": "int64",
    "U64": "uint64",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}
_ST_UNSUPPORTED = {"C64": 8, "F4": 1, "F6_E2M3": 1}  # item sizes are not what matters: these are refused


@st.composite
def _st_case(draw):
    """``(file bytes, flaws, {name: (dtype, shape, data)})`` of a generated safetensors file."""
    entries, flaws = [], set()
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(["w", "v", "up1.bias", "é.ß", "x" * 40, "__meta"]))
        dtype = draw(st.sampled_from([*_ST_ITEMSIZE, *_ST_UNSUPPORTED]))
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
        size = {**_ST_ITEMSIZE, **_ST_UNSUPPORTED}[dtype] * int(np.prod(shape, dtype=np.int64))
        if draw(st.integers(0, 9)) == 0:
            size += draw(st.sampled_from([-1, 1])) if size else 1
            flaws.add("size")
        if dtype in _ST_UNSUPPORTED:
            flaws.add("dtype")
        if any(name == e[0] for e in entries):
            flaws.add("twice")
        entries.append((name, dtype, shape, draw(st.binary(min_size=size, max_size=size))))
    metadata = draw(st.sampled_from([None, "format", "crc", "bad crc"]))
    if metadata is not None:
        crc = 0
        for name, _, _, data in sorted(entries, key=lambda e: e[0]):
            crc = zlib.crc32(data, zlib.crc32(name.encode(), crc))
        metadata = {
            "format": {"format": "ms"},
            "crc": {"format": "ms", "crc_num": str(crc)},
            "bad crc": {"crc_num": str(crc ^ 1)},
        }[metadata]
        flaws |= {"crc"} if metadata.get("crc_num") == str(crc ^ 1) else set()
    return _st_file(entries, metadata), flaws, {e[0]: e[1:] for e in entries}


@settings(max_examples=300, **_FUZZ)
@given(case=_st_case())
def test_fuzz_generated_safetensors(fuzz_path, case):
    _check_generated(fuzz_path, case)


@pytest.mark.slow
@settings(max_examples=10_000, **_FUZZ)
@given(case=_st_case())
def test_fuzz_generated_safetensors_heavy(fuzz_path, case):
    _check_generated(fuzz_path, case)


def _check_generated(fuzz_path: Path, case) -> None:
    """Refused if the generated file has a flaw; else exactly its names, dtypes, shapes and bytes."""
    pytest.importorskip("safetensors")
    pytest.importorskip("ml_dtypes")
    data, flaws, entries = case
    path = fuzz_path.with_suffix(".safetensors")
    path.write_bytes(data)
    if flaws:
        with pytest.raises(CheckpointError) as info:
            ckpt.load(path)
        assert str(path) in str(info.value)
        if flaws == {"twice"}:
            assert "appears twice" in str(info.value)
        return
    arrays = ckpt.load(path)
    assert list(arrays) == sorted(entries)
    for name, (dtype, shape, raw) in entries.items():
        got = arrays[name]
        assert got.dtype.name == _ST_NUMPY_NAME[dtype] and got.shape == shape, name
        expected = bytes(b != 0 for b in raw) if dtype == "BOOL" else raw
        assert got.tobytes() == expected, name


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------


def test_mindspore_safetensors_matches_ckpt(golden, params):
    pytest.importorskip("safetensors")
    arrays = ckpt.load(golden / "decoder.safetensors")
    _assert_same_arrays(arrays, {k: params[k] for k in sorted(params)})


def test_convert_to_safetensors_writes_mindspore_bytes(golden, tmp_path):
    pytest.importorskip("safetensors")
    out = tmp_path / "decoder.safetensors"
    ckpt.convert(golden / "decoder_crc.ckpt", out)
    assert out.read_bytes() == (golden / "decoder.safetensors").read_bytes()


def test_round_trip_ckpt_safetensors_ckpt(golden, tmp_path, params):
    pytest.importorskip("safetensors")
    original = ckpt.load(golden / "decoder.ckpt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no str entries here: no warning expected
        ckpt.convert(golden / "decoder.ckpt", tmp_path / "d.safetensors")
    ckpt.convert(tmp_path / "d.safetensors", tmp_path / "back.ckpt")
    back = ckpt.load(tmp_path / "back.ckpt")
    _assert_same_arrays(back, {k: original[k] for k in sorted(original)})  # safetensors sorts names


def test_safetensors_leaves_out_str_entries_with_a_warning(tmp_path):
    pytest.importorskip("safetensors")
    with pytest.warns(UserWarning, match=r"left out str entries \['opt'\]"):
        ckpt.save(tmp_path / "v.safetensors", {"w": np.ones(2, np.float32), "opt": "adam"})
    assert list(ckpt.load(tmp_path / "v.safetensors")) == ["w"]


def test_safetensors_bfloat16(tmp_path):
    pytest.importorskip("safetensors")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    ref = {"w": np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16)}
    ckpt.save(tmp_path / "b.ckpt", ref)
    ckpt.convert(tmp_path / "b.ckpt", tmp_path / "b.safetensors")
    ckpt.convert(tmp_path / "b.safetensors", tmp_path / "b2.ckpt")
    assert (tmp_path / "b2.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


def test_safetensors_crc(golden, tmp_path, params):
    pytest.importorskip("safetensors")
    from safetensors import safe_open
    from safetensors.numpy import save_file

    out = tmp_path / "c.safetensors"
    ckpt.convert(golden / "decoder_crc.ckpt", out, crc_check=True)
    with safe_open(str(out), framework="np") as f:
        metadata = f.metadata()
    assert metadata["format"] == "ms" and int(metadata["crc_num"]) > 0
    _assert_same_arrays(ckpt.load(out), {k: params[k] for k in sorted(params)})
    tampered = dict(ckpt.load(out))
    tampered["up1.bias"] = tampered["up1.bias"] + 1
    save_file(tampered, str(tmp_path / "t.safetensors"), metadata=metadata)
    _refused(tmp_path / "t.safetensors", "CRC-32 mismatch")


def test_bad_safetensors_file(tmp_path):
    pytest.importorskip("safetensors")
    _refused(_write(tmp_path / "b.safetensors", b'\x10\0\0\0\0\0\0\0{"a":1}'), "not a readable safetensors file")
    _refused(_write(tmp_path / "b.safetensors", GOOD), "not a readable safetensors file")


FLOAT8 = [
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz"),
    ("F8_E5M2FNUZ", "float8_e5m2fnuz"),
    ("F8_E8M0", "float8_e8m0fnu"),
]


@pytest.mark.parametrize("stored, ml_name", FLOAT8, ids=[s for s, _ in FLOAT8])
def test_safetensors_float8_loads_through_ml_dtypes(tmp_path, stored, ml_name):
    pytest.importorskip("safetensors")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if not hasattr(ml_dtypes, ml_name):
        pytest.skip(f"ml_dtypes {ml_dtypes.__version__} has no {ml_name}")
    values = np.array([[0.5, 1.0, 2.0], [4.0, 0.25, 8.0]], np.float32)  # exact in every float8
    if stored != "F8_E8M0":
        values[1, 1] = -1.5  # E8M0 holds powers of two only, without sign
    ref = values.astype(getattr(ml_dtypes, ml_name))
    path = _write(tmp_path / "f8.safetensors", _st_file([("w", stored, (2, 3), ref.tobytes())]))
    out = ckpt.load(path)["w"]
    assert out.dtype == ref.dtype and out.shape == (2, 3) and out.tobytes() == ref.tobytes()
    assert np.array_equal(out.astype(np.float32), values)
    assert out.flags.writeable
    ckpt.save(tmp_path / "again.safetensors", {"w": out})  # safetensors holds float8: round trip
    assert _st_header((tmp_path / "again.safetensors").read_bytes())["w"]["dtype"] == stored
    _assert_same_arrays(ckpt.load(tmp_path / "again.safetensors"), {"w": ref})
    with pytest.raises(TypeError, match=f"{ml_name} cannot be stored in a checkpoint"):
        ckpt.save(tmp_path / "no.ckpt", {"w": out})  # MindSpore 2.10's .ckpt has no float8 type


def test_safetensors_float8_without_ml_dtypes_says_what_to_install(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    path = _write(tmp_path / "f8.safetensors", _st_file([("enc.w", "F8_E4M3", (2,), b"\x38\x40")]))
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # makes `import ml_dtypes` fail
    with pytest.raises(ImportError, match=r"'enc\.w' is F8_E4M3.*ml_dtypes") as info:
        ckpt.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "stored, shape, nbytes", [("F4", (4,), 2), ("F6_E2M3", (4,), 3), ("C64", (2,), 16), ("Q7", (1,), 1)]
)
def test_safetensors_unsupported_dtypes_are_refused_by_name(tmp_path, stored, shape, nbytes):
    pytest.importorskip("safetensors")
    path = _write(tmp_path / "u.safetensors", _st_file([("w", stored, shape, bytes(nbytes))]))
    error = _refused(path, stored)
    # a dtype the installed safetensors knows reaches our table, which names the tensor too
    assert error.tensor in ("w", None)


BF16_FRESH = """
import sys
from convtranspose import ckpt
assert "ml_dtypes" not in sys.modules, "imported too early: the test would prove nothing"
for path in sys.argv[1:]:
    w = ckpt.load(path)["w"]
    print(w.dtype, w.astype("float32").tolist())
"""


def test_bfloat16_loads_in_a_fresh_process(tmp_path):
    # NumPy knows the name 'bfloat16' only once ml_dtypes is imported; safetensors' own NumPy
    # front end asks for it by name, so a fresh process failed while a test session (which had
    # imported ml_dtypes elsewhere) passed. Hence a subprocess.
    pytest.importorskip("safetensors")
    pytest.importorskip("ml_dtypes")
    raw = b"\xc0\x3f\x00\xc0"  # bfloat16 1.5, -2.0
    st_path = _write(tmp_path / "b.safetensors", _st_file([("w", "BF16", (2,), raw)]))
    ckpt_path = _write(tmp_path / "b.ckpt", _record("w", [2], "BFloat16", raw))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", BF16_FRESH, str(st_path), str(ckpt_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["bfloat16 [1.5, -2.0]"] * 2


def _f32(value) -> bytes:
    return np.float32(value).tobytes()


@pytest.mark.parametrize(
    "entries, safetensors_alone",
    [
        # the same entry twice: safetensors alone loads it without a word
        ([("w", "F32", (1,), _f32(1.0)), ("w", "F32", (1,), b"", (0, 4))], "loads"),
        # a second entry that changes the dtype: safetensors alone keeps the last
        ([("w", "F32", (1,), _f32(1.0)), ("w", "I32", (1,), b"", (0, 4))], "loads"),
        # two different tensors under one name: safetensors alone says only "invalid offset"
        ([("w", "F32", (1,), _f32(1.0)), ("v", "F32", (1,), _f32(2.0)), ("w", "F32", (1,), _f32(3.0))], "refuses"),
    ],
    ids=["same-entry", "other-dtype", "other-data"],
)
def test_safetensors_repeated_tensor_is_refused_like_ckpt(tmp_path, entries, safetensors_alone):
    safetensors = pytest.importorskip("safetensors")
    data = _st_file(entries)
    if safetensors_alone == "loads":  # the premise: without our check this would pass silently
        assert [name for name, _ in safetensors.deserialize(data)] == ["w"]
    assert _refused(_write(tmp_path / "d.safetensors", data), "tensor appears twice").tensor == "w"
    # a name twice in a .ckpt: the same kind of error
    once = _record("w", [1], "Float32", _f32(1.0)) + _record("v", [1], "Float32", _f32(2.0))
    assert _refused(_write(tmp_path / "d.ckpt", once + once), "appears twice").tensor == "w"


def test_safetensors_repeated_metadata_is_refused(tmp_path):
    pytest.importorskip("safetensors")
    text = (
        '{"__metadata__":{"crc_num":"1"},"__metadata__":{"format":"ms"},'
        '"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    )
    head = text.encode() + b" " * (-len(text) % 8)
    _refused(
        _write(tmp_path / "m.safetensors", len(head).to_bytes(8, "little") + head + _f32(1.0)),
        "'__metadata__' appears twice",
    )


def test_safetensors_repeated_field_in_an_entry_is_refused(tmp_path):
    pytest.importorskip("safetensors")
    body = _f32(1.0)
    text = '{"w":{"dtype":"I32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    head = text.encode() + b" " * (-len(text) % 8)
    _refused(
        _write(tmp_path / "r.safetensors", len(head).to_bytes(8, "little") + head + body),
        "key 'dtype' appears twice in the header entry 'w'",
    )


def test_safetensors_bool_bytes_other_than_one_read_as_true(tmp_path):
    pytest.importorskip("safetensors")
    path = _write(tmp_path / "b.safetensors", _st_file([("b", "BOOL", (3,), bytes([0, 2, 255]))]))
    out = ckpt.load(path)["b"]
    assert out.dtype == np.bool_ and out.tolist() == [False, True, True]
    assert out.view(np.uint8).tolist() == [0, 1, 1]  # the same canonical 0/1 as .ckpt


def test_safetensors_every_plain_dtype_matches_ckpt(tmp_path):
    pytest.importorskip("safetensors")
    rng = np.random.default_rng(2)
    codes = {
        "I8": "i1",
        "I16": "<i2",
        "I32": "<i4",
        "I64": "<i8",
        "U8": "u1",
        "U16": "<u2",
        "U32": "<u4",
        "U64": "<u8",
        "F16": "<f2",
        "F32": "<f4",
        "F64": "<f8",
        "BOOL": "?",
    }
    ref = {f"t.{name}": _random(rng, code) for name, code in codes.items()}
    data = _st_file([(name, name[2:], value.shape, value.tobytes()) for name, value in ref.items()])
    _assert_same_arrays(ckpt.load(_write(tmp_path / "p.safetensors", data)), {k: ref[k] for k in sorted(ref)})


def test_safetensors_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pip install convtranspose\[safetensors\]"):
        ckpt.save(tmp_path / "x.safetensors", {"w": np.ones(2)})
    with pytest.raises(ImportError, match=r"convtranspose\[safetensors\]"):
        ckpt.load(tmp_path / "x.safetensors")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def test_cli_inspect(golden, capsys):
    assert ckpt.main(["inspect", str(golden / "decoder.ckpt")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["name", "shape", "dtype", "elements", "bytes", "value"]
    row = next(line for line in lines if line.startswith("up1.weight"))
    assert "(8, 6, 4, 4)" in row and "float32" in row and "768" in row and "3,072" in row
    assert next(line for line in lines if line.startswith("lr")).split()[-1] == "0.01"
    assert lines[-1].startswith("8 entries") and "no CRC" in lines[-1]
    assert ckpt.main(["inspect", str(golden / "decoder_crc.ckpt")]) == 0
    assert "CRC-32 verified" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["decoder_enc.ckpt", "missing.ckpt"])
def test_cli_bad_file_exits_2_with_one_line(golden, capsys, name):
    assert ckpt.main(["inspect", str(golden / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert name in captured.err


def _bad_files(tmp_path: Path) -> dict:
    """Files (and a folder) that ``inspect`` must refuse with one line, by what each shows."""
    files = {"empty": _write(tmp_path / "empty.ckpt", b""), "directory": tmp_path / "folder.ckpt"}
    files["directory"].mkdir()
    if importlib.util.find_spec("safetensors") is not None:
        files["duplicate"] = _write(
            tmp_path / "dup.safetensors", _st_file([("w", "F32", (1,), _f32(1.0)), ("w", "F32", (1,), b"", (0, 4))])
        )
        files["F4"] = _write(tmp_path / "f4.safetensors", _st_file([("w", "F4", (2,), b"\0")]))
    return files


@pytest.mark.parametrize("what", ["empty", "directory", "duplicate", "F4"])
def test_cli_refuses_bad_files_with_one_line(tmp_path, capsys, what):
    files = _bad_files(tmp_path)
    if what not in files:
        pytest.skip("needs safetensors")
    assert ckpt.main(["inspect", str(files[what])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert str(files[what]) in captured.err
    assert {"empty": "empty", "directory": "directory", "duplicate": "appears twice", "F4": "F4"}[what] in captured.err


def test_cli_float8_safetensors_as_a_module(tmp_path):
    # float8 used to end in an AttributeError traceback from safetensors' NumPy front end
    pytest.importorskip("safetensors")
    pytest.importorskip("ml_dtypes")
    path = _write(tmp_path / "f8.safetensors", _st_file([("w", "F8_E4M3", (2,), b"\x38\x40")]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "convtranspose.ckpt", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    shown = cli("inspect", path)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("w "))
    assert row.split()[:5] == ["w", "(2,)", "float8_e4m3fn", "2", "2"]
    refused = cli("convert", path, tmp_path / "f8.ckpt")  # a .ckpt cannot hold float8
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "float8_e4m3fn cannot be stored" in refused.stderr and not (tmp_path / "f8.ckpt").exists()


def test_cli_convert_as_a_module(golden, tmp_path):
    pytest.importorskip("safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "d.safetensors"
    run = subprocess.run(
        [sys.executable, "-m", "convtranspose.ckpt", "convert", str(golden / "decoder.ckpt"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout and out.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "convtranspose.ckpt", "inspect", str(golden / "decoder_enc.ckpt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "encrypted" in bad.stderr


def test_cli_convert_warns_about_str_entries(tmp_path, capsys):
    pytest.importorskip("safetensors")
    ckpt.save(tmp_path / "v.ckpt", {"w": np.ones(2, np.float32), "opt": "adam"})
    assert ckpt.main(["convert", str(tmp_path / "v.ckpt"), str(tmp_path / "v.safetensors")]) == 0
    assert "warning:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The decoder network, end to end (needs the NumPy layer: Conv2dTranspose, load_parameters,
# parameters_dict)
# ---------------------------------------------------------------------------------------------


def _decoder(expected, arrays):
    """The three layers of tests/data/ckpt's Decoder, loaded from ``arrays`` by prefix."""
    import convtranspose

    configs = json.loads(str(expected["configs"]))
    layers = []
    for prefix, cfg in zip(LAYERS, configs):
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        layer = convtranspose.Conv2dTranspose(**cfg)
        layer.load_parameters(arrays, prefix=prefix)
        layers.append(layer)
    return layers


def test_decoder_forward_matches_mindspore(golden, expected):
    up1, block0, block1 = _decoder(expected, ckpt.load(golden / "decoder.ckpt"))
    y = block1(block0(np.maximum(up1(expected["x"]), 0)))
    ref = expected["y"]
    assert y.shape == ref.shape and y.dtype == ref.dtype
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= 1e-4 + 1e-4 * np.abs(ref)), float(err.max())


def test_layers_hold_the_checkpoint_parameters_exactly(golden, expected, params):
    layers = _decoder(expected, ckpt.load(golden / "decoder.ckpt"))
    got = {}
    for prefix, layer in zip(LAYERS, layers):
        got.update(layer.parameters_dict(prefix=prefix))
    _assert_same_arrays(got, params)


def test_parameters_dict_save_load_round_trip(golden, expected, tmp_path, params):
    layers = _decoder(expected, ckpt.load(golden / "decoder.ckpt"))
    state = {}
    for prefix, layer in zip(LAYERS, layers):
        state.update(layer.parameters_dict(prefix=prefix))
    ckpt.save(tmp_path / "net.ckpt", state)
    _assert_same_arrays(ckpt.load(tmp_path / "net.ckpt"), state)
    # same names, order and dtypes as MindSpore's own file: the bytes agree too
    assert (tmp_path / "net.ckpt").read_bytes() == (golden / "decoder_crc.ckpt").read_bytes()[:-17]
