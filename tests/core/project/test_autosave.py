"""Autosave: edits reach the disk quickly, bursts coalesce, a full disk loses nothing.

Kills are in tests/core/project/test_autosave_kill.py (a store rewritten whole at every save among them), the
journal of large stores in tests/core/project/test_autosave_journal.py.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from shapely.geometry import box

from core.project import autosave
from core.annotations import AnnotationStore, ops
from core.annotations.formats import read_annotations
from core.project.autosave import AutoSaver
from core.errors import AnnotationFormatError

def _wait_for(condition, timeout: float) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass (for files and threads, not Qt)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def _count_on_disk(path: Path) -> int | None:
    try:
        return len(read_annotations(path).annotations)
    except (OSError, AnnotationFormatError):  # not there yet while polling
        return None


def _add(store: AnnotationStore, n: int, size: int = 50) -> None:
    store.apply(ops.add(box(n * 100, 0, n * 100 + size, size), "Tumour"))


@pytest.fixture
def target(tmp_path) -> Path:
    return tmp_path / "annotations" / "slide.geojson"


def test_an_edit_is_saved_and_the_next_waits_out_the_debounce(target):
    """Saved without being asked; an edit soon after waits the delay, never less (how soon: bench/autosave.py)."""
    store = AnnotationStore()
    saved = []
    with AutoSaver(store, target, delay=1.0, on_saved=lambda rev: saved.append((rev, time.monotonic()))) as saver:
        assert not saver.dirty
        first = time.monotonic()
        _add(store, 1)
        assert saver.dirty
        assert _wait_for(lambda: _count_on_disk(target) == 1, 30.0)
        assert _wait_for(lambda: not saver.dirty, 30.0) and [rev for rev, _ in saved] == [1]
        _add(store, 2)  # within the debounce delay of the first save
        assert _wait_for(lambda: _count_on_disk(target) == 2, 30.0)
        assert _wait_for(lambda: len(saved) == 2, 30.0)
        # The second save started at least the delay after the first began, which was after the first edit.
        assert saved[1][1] - first >= 1.0, saved
        assert Path(str(target) + ".bak").is_file()
        assert len(read_annotations(Path(str(target) + ".bak")).annotations) == 1


def test_rapid_edits_coalesce(target):
    store = AnnotationStore()
    saved = []
    saver = AutoSaver(store, target, delay=0.3, on_saved=saved.append)
    began = time.monotonic()
    for n in range(60):
        _add(store, n)
        time.sleep(0.01)
    editing_s = time.monotonic() - began
    assert _wait_for(lambda: not saver.dirty, 30.0)
    assert saved[-1] == store.revision == 60
    # One save per delay at most while editing, and one for the last edits: at any speed.
    assert 1 <= len(saved) <= editing_s // 0.3 + 2, (saved, editing_s)
    assert saved == sorted(saved)
    assert _count_on_disk(target) == 60
    assert saver.close() and not saver._thread.is_alive()


def test_flush_writes_at_once_and_close_stops(target):
    store = AnnotationStore()
    saver = AutoSaver(store, target, delay=30.0)
    _add(store, 1)
    assert _wait_for(lambda: _count_on_disk(target) == 1, 2.0)  # the first edit after a quiet time goes at once
    _add(store, 2)  # ... the next waits for the 30 s debounce, unless flushed
    assert saver.dirty and saver.flush(5.0) and not saver.dirty
    assert _count_on_disk(target) == 2
    _add(store, 3)
    assert saver.close()
    assert _count_on_disk(target) == 3 and not saver._thread.is_alive()
    _add(store, 4)  # after close nothing listens; the saver says so
    assert saver.dirty


def test_disk_full_keeps_the_old_file_and_retries(target, monkeypatch):
    store = AnnotationStore()
    errors, saved = [], []
    saver = AutoSaver(store, target, delay=0.05, on_error=errors.append, on_saved=saved.append,
                      retry_delays=(0.1, 0.2))
    _add(store, 1)
    assert saver.flush(5.0) and _count_on_disk(target) == 1
    before = target.read_bytes()

    real_write = autosave.atomic_write_bytes
    attempts = []

    def disk_full(path, data, backup=False):
        attempts.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(autosave, "atomic_write_bytes", disk_full)
    for n in range(2, 6):
        _add(store, n)
    assert _wait_for(lambda: len(attempts) >= 4, 5.0)  # it keeps retrying ...
    assert len(errors) == 1  # ... but says so once
    assert str(target) in errors[0] and "No space left on device" in errors[0]
    assert saver.last_error == errors[0] and saver.dirty
    assert target.read_bytes() == before and _count_on_disk(target) == 1
    assert len(store) == 5
    assert not saver.flush(1.0)  # a flush during the fault fails without raising

    monkeypatch.setattr(autosave, "atomic_write_bytes", real_write)
    assert _wait_for(lambda: not saver.dirty, 5.0)
    assert _count_on_disk(target) == 5 and saver.last_error is None and saved[-1] == store.revision
    # A new fault after a success is reported again.
    monkeypatch.setattr(autosave, "atomic_write_bytes", disk_full)
    _add(store, 6)
    assert _wait_for(lambda: len(errors) == 2, 5.0)
    monkeypatch.setattr(autosave, "atomic_write_bytes", real_write)
    assert saver.close() and _count_on_disk(target) == 6


def test_distinct_errors_are_each_reported(target, monkeypatch):
    store = AnnotationStore()
    errors = []
    saver = AutoSaver(store, target, delay=0.05, on_error=errors.append, retry_delays=(0.05,))
    codes = iter([errno.EACCES, errno.EACCES, errno.EROFS, errno.EROFS])
    real_write = autosave.atomic_write_bytes

    def failing(path, data, backup=False):
        code = next(codes, None)
        if code is not None:
            raise OSError(code, os.strerror(code), str(path))
        return real_write(path, data, backup)

    monkeypatch.setattr(autosave, "atomic_write_bytes", failing)
    _add(store, 1)
    assert _wait_for(lambda: not saver.dirty, 5.0)
    assert [("Permission denied" in e, "Read-only file system" in e) for e in errors] == [(True, False), (False, True)]
    saver.close()


def test_a_real_full_filesystem(small_disk):
    mount = small_disk.mount("64k")
    target = mount / "slide.geojson"
    store = AnnotationStore()
    errors = []
    saver = AutoSaver(store, target, delay=0.05, on_error=errors.append, retry_delays=(0.1,))
    _add(store, 1)
    assert saver.flush(5.0)
    before = target.read_bytes()
    filler = small_disk.fill(mount)
    for n in range(2, 40):
        _add(store, n, size=40 + n)
    assert _wait_for(lambda: errors, 5.0)
    assert "No space left on device" in errors[0] and str(target) in errors[0]
    assert target.read_bytes() == before and _count_on_disk(target) == 1
    assert not [p for p in mount.iterdir() if p.name.endswith(".tmp")]  # no temporary files left
    filler.unlink()
    assert _wait_for(lambda: not saver.dirty, 5.0)
    assert _count_on_disk(target) == 39
    saver.close()
