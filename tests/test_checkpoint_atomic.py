"""convtranspose.ckpt saves are atomic: a reader sees the old file or the new one, and a failed save loses nothing.

The fault cases, for both formats: a file-size limit standing in for a full disk (a real EFBIG from the
kernel, in a subprocess), a write that raises part-way and a Ctrl-C (in process), a writer killed with
SIGKILL in the middle of a save (a subprocess), and threads saving and loading the same file at once
(every load sees one whole save, with and without a CRC).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from convtranspose import ckpt

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ["ckpt", "safetensors"]
POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and resource limits")


def _needs(fmt: str) -> None:
    if fmt == "safetensors":
        pytest.importorskip("safetensors")


def _version(k: int, n: int = 1 << 14) -> dict:
    """Save number ``k``: every tensor is filled with k, so a mix of two saves shows."""
    return {"a": np.full(n, k, np.float32), "b": np.full((4, n // 4), k, np.int32), "version": np.int64(k)}


def _assert_one_version(arrays: dict) -> int:
    """The loaded arrays come from a single save; returns its number."""
    k = int(arrays["version"])
    assert sorted(arrays) == ["a", "b", "version"], sorted(arrays)
    assert np.all(arrays["a"] == k) and np.all(arrays["b"] == k), f"a mix of saves around version {k}"
    return k


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


# ---------------------------------------------------------------------------------------------
# A save that fails part-way leaves the old file and no temporary file
# ---------------------------------------------------------------------------------------------

_FULL_DISK = """
    import json, os, resource, sys
    import numpy as np
    from convtranspose import ckpt

    folder, fmt = sys.argv[1], sys.argv[2]
    path = os.path.join(folder, "net." + fmt)
    ckpt.save(path, {"w": np.ones(256, np.float32)})           # about 1 KB
    before = open(path, "rb").read()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))  # a "disk" of 64 KB per file
    try:
        ckpt.save(path, {"w": np.ones(1 << 18, np.float32)})    # 1 MB: does not fit
        error = None
    except Exception as exc:
        error = [type(exc).__name__, isinstance(exc, OSError), str(exc)]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    print(json.dumps({"error": error, "intact": open(path, "rb").read() == before,
                      "files": sorted(os.listdir(folder))}))
"""


@POSIX
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_full_disk_leaves_the_old_file_intact(tmp_path, fmt):
    # RLIMIT_FSIZE makes the kernel refuse writes past 64 KB (EFBIG), as a full disk refuses them
    # (ENOSPC); Python ignores SIGXFSZ, so the write fails instead of killing the process.
    _needs(fmt)
    run = _python(_FULL_DISK, tmp_path, fmt)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["error"] is not None and result["error"][1], result  # an OSError
    assert "File too large" in result["error"][2], result
    assert result["intact"], "the failed save damaged the previous checkpoint"
    assert result["files"] == [f"net.{fmt}"], "the temporary file was left behind"


class _Boom(OSError):
    pass


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("error", [_Boom(28, "No space left on device"), KeyboardInterrupt()], ids=["ENOSPC", "ctrl-c"])
def test_a_save_interrupted_part_way_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, fmt, error):
    _needs(fmt)
    path = tmp_path / f"net.{fmt}"
    ckpt.save(path, _version(1))
    before = path.read_bytes()
    _fail_part_way(monkeypatch, fmt, error)
    with pytest.raises(type(error)):
        ckpt.save(path, _version(2))
    assert path.read_bytes() == before
    assert _assert_one_version(ckpt.load(path)) == 1
    assert os.listdir(tmp_path) == [path.name]


def _fail_part_way(monkeypatch, fmt: str, error: BaseException) -> None:
    """Makes the next save write part of its file, then raise ``error``."""
    if fmt == "ckpt":
        records = ckpt._records

        def failing(entry):
            yield from records(entry)
            raise error  # after the first tensor's records went to the file

        monkeypatch.setattr(ckpt, "_records", failing)
    else:
        import safetensors.numpy

        def failing(tensors, filename, metadata=None):
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)
            raise error

        monkeypatch.setattr(safetensors.numpy, "save_file", failing)


def test_a_refused_entry_creates_no_file(tmp_path):
    ckpt.save(tmp_path / "net.ckpt", _version(1))
    before = (tmp_path / "net.ckpt").read_bytes()
    with pytest.raises(TypeError, match="'c'"):
        ckpt.save(tmp_path / "net.ckpt", {**_version(2), "c": np.zeros(2, np.complex64)})
    assert (tmp_path / "net.ckpt").read_bytes() == before and os.listdir(tmp_path) == ["net.ckpt"]


# ---------------------------------------------------------------------------------------------
# A writer killed in the middle of a save
# ---------------------------------------------------------------------------------------------

_KILLED = """
    import sys, time
    import numpy as np
    from convtranspose import ckpt

    path, fmt = sys.argv[1], sys.argv[2]

    def pause():
        print("mid-save", flush=True)
        time.sleep(60)  # killed here

    if fmt == "ckpt":
        records = ckpt._records

        def slow(entry):
            yield from records(entry)
            pause()  # the first tensor is in the file, the rest is not

        ckpt._records = slow
    else:
        import safetensors.numpy

        def slow(tensors, filename, metadata=None):
            with open(filename, "wb") as f:
                f.write(b"\\0" * 4096)
                f.flush()
                pause()

        safetensors.numpy.save_file = slow
    ckpt.save(path, {"a": np.full(1 << 14, 2, np.float32), "b": np.full((4, 1 << 12), 2, np.int32),
                     "version": np.int64(2)})
"""


@POSIX
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_writer_killed_mid_save_leaves_the_old_file_intact(tmp_path, fmt):
    _needs(fmt)
    path = tmp_path / f"net.{fmt}"
    ckpt.save(path, _version(1))
    before = path.read_bytes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED), str(path), fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(60, writer.kill)  # should the writer never get there, readline returns
    watchdog.start()
    try:
        line = writer.stdout.readline()  # blocks until the writer is in the middle of its save
        assert line == "mid-save\n", writer.stderr.read()
        writer.send_signal(signal.SIGKILL)
        assert writer.wait(timeout=30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert path.read_bytes() == before
    assert _assert_one_version(ckpt.load(path)) == 1
    # A killed process cannot clean up: its temporary file stays, hidden, beside the checkpoint.
    left = sorted(set(os.listdir(tmp_path)) - {path.name})
    assert len(left) == 1 and left[0].startswith(f".{path.name}.") and left[0].endswith(".tmp"), left
    ckpt.save(path, _version(3))  # and the next save is not hindered by it
    assert _assert_one_version(ckpt.load(path)) == 3


# ---------------------------------------------------------------------------------------------
# Writers and readers at the same time
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses to replace a file another thread has open")
@pytest.mark.parametrize("crc", [False, True], ids=["plain", "crc"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_concurrent_writers_and_readers_see_whole_saves(tmp_path, fmt, crc):
    _needs(fmt)
    path = tmp_path / f"net.{fmt}"
    ckpt.save(path, _version(0), crc_check=crc)
    saves_per_writer, errors, seen = 12, [], set()
    writing = threading.Event()
    writing.set()

    def writer(first: int) -> None:
        try:
            for k in range(first, first + 2 * saves_per_writer, 2):  # one writer even versions, one odd
                ckpt.save(path, _version(k), crc_check=crc)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    def reader() -> None:
        try:
            while writing.is_set():
                seen.add(_assert_one_version(ckpt.load(path)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(first,)) for first in (1, 2)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in readers:
        thread.join()
    assert not errors, errors[0]
    assert len(seen) > 1, "the readers never saw a new save: the test raced nothing"
    assert _assert_one_version(ckpt.load(path)) in range(1, 2 * saves_per_writer + 1)
    assert os.listdir(tmp_path) == [path.name]


# ---------------------------------------------------------------------------------------------
# What a replacement keeps
# ---------------------------------------------------------------------------------------------


@POSIX
def test_a_replaced_file_keeps_its_permissions_and_a_link_its_target(tmp_path):
    target = tmp_path / "real.ckpt"
    ckpt.save(target, _version(1))
    target.chmod(0o640)
    link = tmp_path / "link.ckpt"
    link.symlink_to(target)
    ckpt.save(link, _version(2))
    assert link.is_symlink() and _assert_one_version(ckpt.load(target)) == 2
    assert target.stat().st_mode & 0o777 == 0o640


@POSIX
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_file_is_not_replaced(tmp_path):
    path = tmp_path / "net.ckpt"
    ckpt.save(path, _version(1))
    path.chmod(0o444)
    with pytest.raises(PermissionError):
        ckpt.save(path, _version(2))
    assert _assert_one_version(ckpt.load(path)) == 1 and os.listdir(tmp_path) == ["net.ckpt"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_folder_names_the_destination(tmp_path, fmt):
    _needs(fmt)
    path = tmp_path / "missing" / f"net.{fmt}"
    with pytest.raises(FileNotFoundError) as info:
        ckpt.save(path, _version(1))
    assert info.value.filename == str(path)
