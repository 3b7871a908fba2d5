"""Writing output files safely: check the folder first, write atomically, say what went wrong.

Every file automix writes (audio, settings, reports, plots, sessions, scores) goes through
:func:`atomic_output`: the data is written to a temporary file in the output's own folder,
synced, and moved onto the output name in one step (:func:`os.replace`), so a failed or
interrupted write never leaves a half-written file or damages an existing one; on any
failure the temporary file is removed. :func:`check_output_folder` says before any work
is done whether the output can go where it was asked to (a missing folder is created,
a file in the way or a read-only folder is refused), and :func:`os_error_message`
words an operating-system error (disk full, permission denied...) for a person.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from automix.errors import OutputError

#: Operating-system errors in the words a musician would use.
_OS_ERRORS: dict[int, str] = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the folder is on a read-only disk",
    errno.EACCES: "permission denied (the folder is read-only for you)",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way of a folder of that name",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EISDIR: "it is a folder",
}


def os_error_message(exc: OSError) -> str:
    """What ``exc`` means, in a few words (``"the disk is full"``); its own text otherwise."""
    return _OS_ERRORS.get(exc.errno, exc.strerror or str(exc).split(":")[0] or type(exc).__name__)


def check_output_folder(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` when ``path``'s folder cannot hold it: an ancestor is a file,
    or the nearest existing folder cannot be written to. Missing folders are fine (they are
    created when the file is written). Returns ``path`` as a :class:`Path`."""
    path = Path(path)
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: creating through it would fail
            raise OutputError(f"{path}: cannot be written: {folder} is a broken link")
        if folder.parent == folder:
            break
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{path}: cannot be written: {folder} is a file, not a folder")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        why = "is on a read-only disk" if _read_only_mount(folder) else "is read-only"
        raise OutputError(f"{path}: cannot be written: the folder {folder} {why}")
    return path


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary file name next to ``path`` to write to; when the block ends the file is
    synced and moved onto ``path`` in one step (permissions as a plain new file). On any failure
    or interrupt the temporary file is removed and the exception propagates; an operating-system
    error while creating, syncing or moving it becomes :class:`OutputError` naming ``path``.

    Errors raised inside the block by the writer itself are re-raised unchanged (the caller
    words them), except :class:`OSError`, which is worded here too.
    """
    path = check_output_folder(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot be written: {os_error_message(exc)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: could not be written: {os_error_message(exc)}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_output`; returns ``path``."""
    path = Path(path)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_output`; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))
