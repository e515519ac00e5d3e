"""What convtranspose.ckpt accepts and refuses, and how it says so.

Covers: files that are not regular files (a device, a fifo, a directory) refused before any read; zip
archives (PyTorch .pt, NumPy .npz) named for what they are; formats taken from the extension or from
``format=`` (an unknown extension refused, never guessed); what ``save`` takes: torch tensors (a
Parameter, bfloat16), JAX arrays, Flax NNX state, nested mappings (flattened to dotted names), and
what it refuses (a ragged list, a non-str or non-UTF-8 name, a sparse tensor, a PRNG key), each
message naming the entry; the command line's ``convert`` (entries really written, I/O errors as one
``error:`` line).
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from convtranspose import ckpt
from convtranspose.ckpt import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["ckpt", "safetensors"]


def _needs(fmt: str) -> None:
    if fmt == "safetensors":
        pytest.importorskip("safetensors")


def _python(script: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


# ---------------------------------------------------------------------------------------------
# Files that are not regular files are refused before anything is read
# ---------------------------------------------------------------------------------------------

_NOT_REGULAR = """
    import json, os, resource, sys
    from convtranspose import ckpt

    # Should a load read on, a bounded address space turns "until memory runs out" into a MemoryError.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    results = {}
    for name in ("pipe.ckpt", "pipe.safetensors"):
        os.mkfifo(os.path.join(sys.argv[1], name))
    for name in ("/dev/zero", "pipe.ckpt", "pipe.safetensors"):
        try:
            ckpt.load(os.path.join(sys.argv[1], name))
            results[name] = ["loaded", ""]
        except Exception as exc:
            results[name] = [type(exc).__name__, str(exc)]
    print(json.dumps(results))
"""


@pytest.mark.skipif(not (hasattr(os, "mkfifo") and os.path.exists("/dev/zero")), reason="POSIX devices and fifos")
def test_devices_and_fifos_are_refused_before_reading(tmp_path):
    # In a subprocess with a timeout and a memory limit: reading /dev/zero never ends and opening a
    # fifo without a writer blocks, so a reader that tries must fail the test, not hang it.
    pytest.importorskip("safetensors")
    run = _python(_NOT_REGULAR, tmp_path, timeout=20)
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert results["/dev/zero"][0] == "CheckpointError", results
    assert "character device" in results["/dev/zero"][1], results
    for name in ("pipe.ckpt", "pipe.safetensors"):
        assert results[name][0] == "CheckpointError" and "named pipe (fifo)" in results[name][1], results
        assert name in results[name][1]


def test_a_directory_is_refused_whatever_the_format(tmp_path):
    folder = tmp_path / "run.safetensors"
    folder.mkdir()
    (folder / "net.ckpt").write_bytes(b"x")
    for fmt in [None, "ckpt"]:
        with pytest.raises(CheckpointError, match="is a directory.*net.ckpt"):
            ckpt.load(folder, format=fmt)


# ---------------------------------------------------------------------------------------------
# Formats: by extension, or named; an unknown extension is refused, a zip archive named
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("out.safetensor", "did you mean '.safetensors'"),
        ("out.ckp", "did you mean '.ckpt'"),
        ("model.pt", "extension '.pt'"),
        ("model", "no extension"),
    ],
)
def test_save_refuses_an_unknown_extension(tmp_path, name, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        ckpt.save(tmp_path / name, {"w": np.ones(2, np.float32)})
    assert "format='ckpt'" in str(info.value) and name in str(info.value)
    assert os.listdir(tmp_path) == []  # nothing written, in no format


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_writes_and_reads_any_name(tmp_path, fmt):
    _needs(fmt)
    path = tmp_path / "weights.bin"
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float16)}
    ckpt.save(path, arrays, format=fmt)
    back = ckpt.load(path, format=fmt)
    assert sorted(back) == sorted(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    expected = ckpt.load(_saved(tmp_path / f"same.{fmt}", arrays))
    assert path.read_bytes() == (tmp_path / f"same.{fmt}").read_bytes() and sorted(expected) == sorted(back)
    with pytest.raises(ValueError, match="extension '.bin'"):
        ckpt.load(path)


def _saved(path: Path, arrays: dict) -> Path:
    ckpt.save(path, arrays)
    return path


def test_format_must_be_one_of_the_two(tmp_path):
    for call in (
        lambda: ckpt.save(tmp_path / "a.ckpt", {"w": np.ones(1)}, format="pt"),
        lambda: ckpt.load(tmp_path / "a.ckpt", format="CKPT"),
        lambda: ckpt.convert(tmp_path / "a.ckpt", tmp_path / "b.ckpt", format="npz"),
    ):
        with pytest.raises(ValueError, match="format must be 'ckpt' or 'safetensors'"):
            call()


def test_an_explicit_format_overrides_the_extension(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "really_safetensors.ckpt"
    ckpt.save(path, {"w": np.ones(2, np.float32)}, format="safetensors")
    assert np.array_equal(ckpt.load(path, format="safetensors")["w"], np.ones(2, np.float32))
    with pytest.raises(CheckpointError):
        ckpt.load(path)  # read as a .ckpt it is not one


@pytest.mark.parametrize("name", ["model.pt", "model.npz", "model.ckpt", "model.safetensors"])
def test_a_zip_archive_is_named_for_what_it_is(tmp_path, name):
    path = tmp_path / name
    with open(path, "wb") as f:
        np.savez(f, w=np.ones(3))  # a zip archive, as torch.save's files are
    with pytest.raises(CheckpointError, match="zip archive .*PyTorch .*NumPy") as info:
        ckpt.load(path)
    assert str(path) in str(info.value) and "unexpected field" not in str(info.value)


def test_load_of_an_unknown_extension_says_how(tmp_path):
    path = _saved(tmp_path / "net.ckpt", {"w": np.ones(2, np.float32)})
    odd = path.rename(tmp_path / "net.checkpoint")
    with pytest.raises(ValueError, match="extension '.checkpoint'.*format='ckpt'"):
        ckpt.load(odd)
    assert np.array_equal(ckpt.load(odd, format="ckpt")["w"], np.ones(2, np.float32))


def test_convert_refuses_an_unknown_destination_before_reading(tmp_path):
    with pytest.raises(ValueError, match="did you mean '.safetensors'"):
        ckpt.convert(tmp_path / "missing.ckpt", tmp_path / "out.safetensor")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# What save takes: framework values, nested mappings; what it refuses, naming the entry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_torch_parameter_and_bfloat16_tensors_are_saved_exactly(tmp_path, fmt):
    torch = pytest.importorskip("torch")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    _needs(fmt)
    generator = torch.Generator().manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3, 4, generator=generator))  # requires grad
    bf16 = torch.randn(4, 3, generator=generator).to(torch.bfloat16)
    strided = bf16.t()  # not contiguous: the bits must still come out in C order
    path = tmp_path / f"t.{fmt}"
    ckpt.save(path, {"weight": weight, "bf16": bf16, "strided": strided, "step": torch.tensor(7)})
    back = ckpt.load(path)
    assert back["weight"].dtype == np.float32 and np.array_equal(back["weight"], weight.detach().numpy())
    for name, tensor in [("bf16", bf16), ("strided", strided)]:
        assert back[name].dtype == ml_dtypes.bfloat16 and back[name].shape == tuple(tensor.shape)
        bits = tensor.contiguous().view(torch.int16).numpy()
        assert np.array_equal(back[name].view(np.int16), bits), name
    assert back["step"].dtype == np.int64 and int(back["step"]) == 7
    assert weight.requires_grad  # the module's parameter is left as it was


def test_torch_tensors_without_data_are_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    sparse = torch.eye(3).to_sparse()
    with pytest.raises(TypeError, match=r"'enc.w': a torch.sparse_coo torch tensor .*to_dense\(\)"):
        ckpt.save(tmp_path / "t.ckpt", {"enc.w": sparse})
    with pytest.raises(TypeError, match="'m': a torch tensor on the meta device"):
        ckpt.save(tmp_path / "t.ckpt", {"m": torch.empty(2, device="meta")})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_jax_arrays_are_saved_and_keys_and_tracers_refused_by_name(tmp_path, fmt):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    _needs(fmt)
    path = tmp_path / f"j.{fmt}"
    ckpt.save(path, {"w": jnp.arange(6.0, dtype=jnp.bfloat16).reshape(2, 3), "n": jnp.int32(4)})
    back = ckpt.load(path)
    assert back["w"].dtype.name == "bfloat16" and np.array_equal(
        back["w"].astype(np.float32), np.arange(6.0).reshape(2, 3)
    )
    with pytest.raises(TypeError, match=r"'rng': a JAX PRNG key array .*key_data"):
        ckpt.save(path, {"rng": jax.random.key(0)})

    @jax.jit
    def save_inside_jit(x):
        ckpt.save(path, {"traced": x})
        return x

    with pytest.raises(TypeError, match="'traced': a traced JAX value"):
        save_inside_jit(jnp.ones(2))


def test_nested_mappings_are_flattened_with_dots(tmp_path):
    w, b = np.ones((2, 2), np.float32), np.zeros(2, np.float32)
    path = tmp_path / "n.ckpt"
    ckpt.save(path, {"up1": {"weight": w, "bias": b}, "blocks": {0: {"weight": w}}, "epoch_num": 3})
    assert list(ckpt.load(path)) == ["up1.weight", "up1.bias", "blocks.0.weight", "epoch_num"]
    # the bytes are those of the flat mapping
    flat = tmp_path / "f.ckpt"
    ckpt.save(flat, {"up1.weight": w, "up1.bias": b, "blocks.0.weight": w, "epoch_num": 3})
    assert path.read_bytes() == flat.read_bytes()
    with pytest.raises(ValueError, match="'a.b' appears twice"):
        ckpt.save(tmp_path / "d.ckpt", {"a.b": w, "a": {"b": b}})
    with pytest.raises(TypeError, match=r"keys nested under 'a' must be str or int, got \(1, 2\)"):
        ckpt.save(tmp_path / "d.ckpt", {"a": {(1, 2): w}})


@pytest.mark.parametrize("fmt", FORMATS)
def test_flax_nnx_state_is_saved_with_dotted_names(tmp_path, fmt):
    pytest.importorskip("flax")
    from flax import nnx

    _needs(fmt)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

    net = Net(nnx.Rngs(0))
    path = tmp_path / f"flax.{fmt}"
    ckpt.save(path, nnx.state(net, nnx.Param))
    back = ckpt.load(path)
    assert sorted(back) == ["layers.0.bias", "layers.0.kernel", "layers.1.bias", "layers.1.kernel"]
    assert np.array_equal(back["layers.1.kernel"], np.asarray(net.layers[1].kernel[...]))


def test_a_ragged_list_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="'shape': list cannot be stored as one array"):
        ckpt.save(tmp_path / "r.ckpt", {"ok": [1, 2], "shape": [[1, 2], [3]]})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "arrays, error, fragment",
    [
        ({1: np.zeros(2)}, TypeError, r"checkpoint names must be str, got 1 \(int\)"),
        ({"bad\ud800": np.zeros(2)}, ValueError, "'bad\\\\ud800' cannot be encoded as UTF-8"),
    ],
    ids=["int", "surrogate"],
)
def test_bad_names_are_refused_in_both_formats(tmp_path, fmt, arrays, error, fragment):
    _needs(fmt)
    with pytest.raises(error, match=fragment):
        ckpt.save(tmp_path / f"x.{fmt}", arrays)
    assert os.listdir(tmp_path) == []


def test_saving_numpy_imports_no_framework(tmp_path):
    run = _python(
        """
        import sys
        import numpy as np
        from convtranspose import ckpt
        ckpt.save(sys.argv[1], {"w": np.ones(2, np.float32), "nested": {"b": 1.5}})
        ckpt.load(sys.argv[1])
        print(sorted(m for m in ("torch", "jax", "flax") if m in sys.modules))
        """,
        tmp_path / "n.ckpt",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Command line: convert counts what it wrote; I/O errors are one line
# ---------------------------------------------------------------------------------------------


def test_cli_convert_counts_the_entries_it_wrote(tmp_path, capsys):
    pytest.importorskip("safetensors")
    ckpt.save(tmp_path / "v.ckpt", {"w": np.ones(2, np.float32), "opt": "adam", "epoch_num": 3})
    assert ckpt.main(["convert", str(tmp_path / "v.ckpt"), str(tmp_path / "v.safetensors")]) == 0
    captured = capsys.readouterr()
    assert "v.safetensors: 2 entries from" in captured.out and "left out 1 of its 3" in captured.out
    assert "warning:" in captured.err and "'opt'" in captured.err
    assert sorted(ckpt.load(tmp_path / "v.safetensors")) == ["epoch_num", "w"]


def test_cli_convert_to_a_missing_folder_is_one_error_line(tmp_path, capsys):
    pytest.importorskip("safetensors")
    ckpt.save(tmp_path / "a.ckpt", {"w": np.ones(2, np.float32)})
    for out in ("out.safetensors", "out.ckpt"):
        assert ckpt.main(["convert", str(tmp_path / "a.ckpt"), str(tmp_path / "missing" / out)]) == 2
        err = _one_error_line(capsys)
        assert "No such file or directory" in err and str(tmp_path / "missing" / out) in err


def test_safetensors_write_errors_are_os_errors(tmp_path, monkeypatch):
    pytest.importorskip("safetensors")
    import safetensors.numpy

    def failing(tensors, filename, metadata=None):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", failing)
    path = tmp_path / "out.safetensors"
    with pytest.raises(OSError) as info:
        ckpt.save(path, {"w": np.ones(2, np.float32)})
    assert info.value.errno == 28 and info.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_cli_refuses_unknown_extensions_and_takes_formats(tmp_path, capsys):
    pytest.importorskip("safetensors")
    src = _saved(tmp_path / "a.ckpt", {"w": np.ones(2, np.float32)})
    assert ckpt.main(["convert", str(src), str(tmp_path / "out.safetensor")]) == 2
    assert "did you mean '.safetensors'" in _one_error_line(capsys)
    assert not (tmp_path / "out.safetensor").exists()
    assert ckpt.main(["convert", str(src), str(tmp_path / "out.safetensor"), "--to", "safetensors"]) == 0
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(ckpt.load(tmp_path / "out.safetensor", format="safetensors")["w"], np.ones(2))
    assert ckpt.main(["inspect", str(tmp_path / "out.safetensor")]) == 2
    assert "format=" in _one_error_line(capsys)
    assert ckpt.main(["inspect", str(tmp_path / "out.safetensor"), "--format", "safetensors"]) == 0
    assert (
        ckpt.main(["convert", str(tmp_path / "out.safetensor"), str(tmp_path / "b.ckpt"), "--from", "safetensors"]) == 0
    )
    assert (tmp_path / "b.ckpt").read_bytes() == src.read_bytes()


def test_cli_names_a_zip_archive(tmp_path, capsys):
    path = tmp_path / "model.pt"
    with open(path, "wb") as f:
        np.savez(f, w=np.ones(3))
    assert ckpt.main(["inspect", str(path)]) == 2
    assert "zip archive" in _one_error_line(capsys)
