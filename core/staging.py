"""Output folders written as one unit: files go into a hidden folder first and move into place on success.

A failed or cancelled run (a full disk, a slide that cannot be read, Cancel) leaves what was there
before untouched and no partial file behind. Single files use `core.atomic.atomic_write_bytes`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from core.atomic import fsync_path


@contextmanager
def staged_folder(target, replace: bool = False) -> Iterator[Path]:
    """A hidden folder to write ``target``'s files into; they reach ``target`` only if the block succeeds.

    Parameters
    ----------
    target : path-like
        The output folder (created when missing).
    replace : bool
        False: each staged file replaces the file of the same name in ``target`` and other files there
        stay (a folder the user chose, such as a dataset's). True: the staged folder replaces ``target``
        as a whole (a folder Biopsia owns, so no file of an earlier run is left beside the new ones).

    Yields
    ------
    Path
        The folder to write into.

    Raises
    ------
    OSError
        When ``target`` cannot be created or written; ``target`` is then as it was, and a folder this
        call created is removed again.
    """
    target = Path(target)
    created = not target.exists()
    if replace:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.writing-", dir=target.parent))
    else:
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=target))
    try:
        yield staging
        files = sorted(staging.iterdir())
        for file in files:  # the data is on the disk before any name points at it
            fsync_path(file)
        if replace:
            _swap_in(staging, target)
        else:
            for file in files:
                os.replace(file, target / file.name)
        fsync_path(target)
    except BaseException:
        if created and not replace:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and then removed."""
    fsync_path(staging)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
