"""Saving that never loses work: write beside the target, flush, fsync, then rename over it."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable


def create_temp(target: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside ``target`` (same folder, so the rename is atomic)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(target.parent))


def fsync_path(path: Path) -> None:
    """Flush a file or folder to the disk (folders: best effort, not every platform can)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _keep_backup(path: Path, worth_keeping: Callable[[Path], bool] | None) -> None:
    """Keep the current ``path`` as ``path.bak`` (a hard link where possible, else a copy).

    A current file that ``worth_keeping`` refuses (damaged) never replaces the backup: it is kept
    as ``path.damaged`` instead, and the backup stays as it was.
    """
    if not path.is_file():
        return
    bak = path.with_name(path.name + ".bak")
    if worth_keeping is not None and not worth_keeping(path):
        bak = path.with_name(path.name + ".damaged")
    tmp_bak = bak.with_name(f".{bak.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        try:
            os.link(path, tmp_bak)
        except OSError:
            shutil.copy2(path, tmp_bak)
            fd = os.open(tmp_bak, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp_bak, bak)
    except BaseException:
        tmp_bak.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data: bytes, backup: bool = False,
                       worth_keeping: Callable[[Path], bool] | None = None) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one, never a part.

    Parameters
    ----------
    path : path-like
        The file to write; its folder must exist.
    data : bytes
        The whole new content.
    backup : bool
        Keep the previous file (if any) as ``path + '.bak'``.
    worth_keeping : callable(Path) -> bool, optional
        With ``backup``: says whether the previous file is sound. One that is not (a damaged file
        the caller recovered from the backup) is kept as ``path + '.damaged'`` and the good
        backup stays.

    Raises
    ------
    OSError
        When the folder is missing or not writable, or the disk is full; ``err.filename``
        names the file. No temporary file is left behind.
    """
    path = Path(path)
    try:
        fd, tmp = create_temp(path)
    except OSError as err:
        raise type(err)(err.errno, f"cannot write here: {err.strerror or err}", str(path)) from err
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if backup:
                _keep_backup(path, worth_keeping)
            os.replace(tmp, path)
        except OSError as err:
            raise type(err)(err.errno, f"cannot save: {err.strerror or err}", str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
