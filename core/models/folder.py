"""Model folders written as one unit: a reader finds the old folder or the new one, complete, never a mix.

Saving ``target`` (e.g. a training run's ``best/``)::

    target.new/            filled; every file, then the folder, fsynced
    target -> target.old   (when there is an old one)
    target.new -> target
    target.old             removed

Linux cannot rename a folder over a non-empty one, hence the step through ``target.old``. A crash (SIGKILL,
power loss, a full disk) leaves one of the states below, and `recover` (called before a folder is read or
written) finishes the save or undoes it:

==========================  =====================================================================
left on disk                what `recover` does
==========================  =====================================================================
target (+ target.new)       target.new was being filled: removed
target.old + target.new     target.new is complete (it is renamed only then): moved in, target.old
                            removed; were it to fail its check, target.old is put back instead
target + target.old         target.old removed
target.old alone            put back
target.new alone            a first save: kept if it passes its check, else removed
==========================  =====================================================================

A writer holds a lock (``.target.lock`` beside it) while it saves; a reader that meets leftovers repairs
them only when it gets the lock at once, and otherwise reads the complete folder it finds, so a reader never
undoes a save in progress.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from core.atomic import fsync_path

try:  # POSIX; elsewhere saves are not guarded against a second writer
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

NEW, OLD = ".new", ".old"
#: The bundles a training folder holds: ``best/`` (the model to use) and ``last/`` (to resume).
BUNDLE_DIRS = ("best", "last")


def model_name(folder) -> str:
    """A model's name: its training folder's for a ``best/`` or ``last/`` bundle, else the folder's own."""
    folder = Path(folder)
    return folder.parent.name if folder.name in BUNDLE_DIRS else folder.name


def sibling(target: Path, suffix: str) -> Path:
    """``target.new`` or ``target.old`` (``target`` itself for ``""``)."""
    return target.with_name(target.name + suffix)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it (inside a folder that is not yet in place)."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextmanager
def _lock(target: Path, wait: bool) -> Iterator[bool]:
    """Hold the save lock of ``target``; yields False when ``wait`` is False and a writer holds it."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if wait:
            raise
        yield False  # a read-only place: read what is there
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _leftovers(target: Path) -> bool:
    return any(os.path.lexists(sibling(target, s)) for s in (NEW, OLD))


def _repair(target: Path, complete: Callable[[Path], bool]) -> None:
    """Finish or undo an interrupted save of ``target`` (the caller holds the lock)."""
    new, old = sibling(target, NEW), sibling(target, OLD)
    if not _leftovers(target):
        return
    if os.path.lexists(target):
        _remove(new)
        _remove(old)
    elif os.path.lexists(old):
        if new.is_dir() and not new.is_symlink() and complete(new):
            os.replace(new, target)
            _remove(old)
        else:
            _remove(new)
            os.replace(old, target)
    elif new.is_dir() and not new.is_symlink() and complete(new):
        os.replace(new, target)
    else:
        _remove(new)
    fsync_path(target.parent)


def recover(target, complete: Callable[[Path], bool]) -> Path:
    """The folder to read for ``target``, after repairing an interrupted save when possible.

    Parameters
    ----------
    target : path-like
        The folder as callers name it (``.../best``).
    complete : callable
        ``complete(folder)`` is True when a folder passes its checks (all files there, hashes right).

    Returns
    -------
    pathlib.Path
        ``target`` itself, or, while another process is saving it (or the place is read-only), the
        complete sibling to read instead.
    """
    target = Path(target)
    if not _leftovers(target):
        return target
    with _lock(target, wait=False) as locked:
        if locked:
            try:
                _repair(target, complete)
                return target
            except OSError:
                pass  # cannot change this place: read what is there
    new, old = sibling(target, NEW), sibling(target, OLD)
    if target.exists():
        return target
    if new.is_dir() and complete(new):
        return new
    return old if old.is_dir() else target


def write_folder(target, fill: Callable[[Path], None], complete: Callable[[Path], bool]) -> Path:
    """Write the folder ``target`` as one unit: ``fill(staging)`` writes its files, then it replaces the old one.

    Parameters
    ----------
    target : path-like
        The folder to (re)write; its parent is created if needed.
    fill : callable
        Writes every file of the new folder into the (empty) staging folder it is given.
    complete : callable
        The check `recover` uses on a staging folder a crash left behind.

    Raises
    ------
    OSError
        When the disk is full or the place is not writable; the old folder is then untouched and no
        staging folder is left. Whatever ``fill`` raises passes through the same way.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    new, old = sibling(target, NEW), sibling(target, OLD)
    with _lock(target, wait=True):
        _repair(target, complete)
        _remove(new)
        new.mkdir()
        try:
            fill(new)
            for path in new.iterdir():
                fsync_path(path)
            fsync_path(new)
            fsync_path(target.parent)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise
        if os.path.lexists(target):
            os.replace(target, old)
            fsync_path(target.parent)
        os.replace(new, target)
        fsync_path(target.parent)
        _remove(old)
    return target
