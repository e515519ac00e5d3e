"""Atomic file writes for :mod:`convtranspose.ckpt`: a reader sees the old file or the new one, never a part.

A checkpoint is written to a temporary file in the destination's folder, flushed to the disk, then
renamed over the destination with :func:`os.replace` (atomic on POSIX and on Windows), and the folder
itself is synced where the OS allows it, so that the rename survives a power cut. A save that fails
part-way (disk full, an exception, Ctrl-C) removes its temporary file and leaves the destination as it
was; a writer killed outright (SIGKILL) cannot clean up, and leaves its temporary file,
``.<name>.<random>.tmp``, beside the destination.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from typing import Callable

# Room for ".", ".<8 hex>.tmp" within the usual 255-byte limit on a file name.
_MAX_BASE = 200


def atomic_write(path: "str | os.PathLike[str]", write: Callable[[str], None]) -> None:
    """Writes a file so that every reader sees either its old content or its whole new content.

    Args:
        path: Destination. A symbolic link is followed: the file it names is replaced, the link kept.
        write: Called with the path of an empty temporary file in the destination's folder; it
            writes the whole new content there (opening the path itself).

    Raises:
        OSError: the folder does not exist or cannot be written, the destination is a directory
            or read-only (PermissionError, as opening it for writing would give), or writing
            fails (a full disk, a file-size limit). The destination is then untouched and the
            temporary file removed. Whatever ``write`` raises is raised too, after the same cleanup.
    """
    target = os.path.realpath(path) if os.path.islink(path) else os.fspath(path)
    _check_replaceable(target)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        temp = _create_temp(folder, os.path.basename(target))
    except OSError as exc:  # name the destination, not a temporary name the caller never gave
        raise type(exc)(exc.errno, exc.strerror, target) from None
    try:
        write(temp)
        _fsync_file(temp)
        if os.path.exists(target):
            shutil.copymode(target, temp)  # a replaced file keeps its permissions, as a rewrite in place did
        os.replace(temp, target)
    except BaseException:
        _remove_quietly(temp)
        raise
    _fsync_folder(folder)


def _check_replaceable(target: str) -> None:
    """Refuses what opening ``target`` for writing would refuse, before anything is written."""
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
    if os.path.exists(target) and not os.access(target, os.W_OK):
        # os.replace would succeed on a read-only file (only the folder's permissions matter):
        # refuse as writing in place did, rather than overwrite a file its owner protected.
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES) + " (the file is read-only)", target)


def _create_temp(folder: str, base: str) -> str:
    """Creates an empty, hidden, uniquely named file in ``folder``; returns its path.

    The mode is 0o666 less the umask, as ``open(path, "wb")`` gives a new file (``tempfile``
    would make it 0o600).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = os.path.join(folder, f".{base[:_MAX_BASE]}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, flags, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


def _fsync_file(path: str) -> None:
    """Flushes the file's data to the disk (the writer has closed it: its buffers are empty)."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    """Flushes the folder's entry for the renamed file; not possible on Windows, and best effort elsewhere."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the file itself is already on the disk
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
