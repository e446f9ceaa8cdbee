"""Saving that never loses work: write beside the target, flush, fsync, then rename over it."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path


def create_temp(target: Path) -> tuple[int, Path]:
    """A new hidden temporary file beside ``target`` (same folder, so the rename is atomic)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(target.parent))


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (Windows), so best effort.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _keep_backup(path: Path) -> None:
    """Keep the current ``path`` as ``path.bak`` (a hard link where possible, else a copy)."""
    if not path.is_file():
        return
    bak = path.with_name(path.name + ".bak")
    tmp_bak = bak.with_name(f".{bak.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.link(path, tmp_bak)
    except OSError:
        shutil.copy2(path, tmp_bak)
    os.replace(tmp_bak, bak)


def atomic_write_bytes(path, data: bytes, backup: bool = False) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new one, never a part.

    Parameters
    ----------
    path : path-like
        The file to write; its folder must exist.
    data : bytes
        The whole new content.
    backup : bool
        Keep the previous file (if any) as ``path + '.bak'``.

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
                _keep_backup(path)
            os.replace(tmp, path)
        except OSError as err:
            raise type(err)(err.errno, f"cannot save: {err.strerror or err}", str(path)) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
