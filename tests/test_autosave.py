"""Autosave: edits reach the disk quickly, bursts coalesce, a full disk loses nothing, SIGKILL never corrupts."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from shapely.geometry import box

from core import autosave
from core.annotations import AnnotationStore, ops
from core.annotations.formats import read_annotations
from core.autosave import AutoSaver
from core.errors import AnnotationFormatError
from core.project import Project

ROOT = Path(__file__).resolve().parents[1]


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


def test_an_edit_is_on_disk_within_two_seconds(target):
    store = AnnotationStore()
    saved = []
    with AutoSaver(store, target, delay=1.0, on_saved=saved.append) as saver:
        assert not saver.dirty
        _add(store, 1)
        assert saver.dirty
        start = time.monotonic()
        assert _wait_for(lambda: _count_on_disk(target) == 1, 2.0)
        assert time.monotonic() - start < 2.0
        assert _wait_for(lambda: not saver.dirty, 1.0) and saved == [1]
        _add(store, 2)  # the next edit within the debounce delay is still on disk in time
        assert _wait_for(lambda: _count_on_disk(target) == 2, 2.0)
        assert Path(str(target) + ".bak").is_file()
        assert len(read_annotations(Path(str(target) + ".bak")).annotations) == 1


def test_rapid_edits_coalesce(target):
    store = AnnotationStore()
    saved = []
    saver = AutoSaver(store, target, delay=0.3, on_saved=saved.append)
    for n in range(60):
        _add(store, n)
        time.sleep(0.01)
    assert _wait_for(lambda: not saver.dirty, 3.0)
    assert saved[-1] == store.revision == 60
    assert 1 <= len(saved) <= 5, saved
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


def test_a_real_full_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        target = mount / "slide.geojson"
        store = AnnotationStore()
        errors = []
        saver = AutoSaver(store, target, delay=0.05, on_error=errors.append, retry_delays=(0.1,))
        _add(store, 1)
        assert saver.flush(5.0)
        before = target.read_bytes()
        filler = mount / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            for chunk in (4096, 512, 1):
                try:
                    while os.write(fd, b"\0" * chunk) == chunk:
                        pass
                except OSError as err:
                    assert err.errno == errno.ENOSPC
        finally:
            os.close(fd)
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
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


# -- the kill test ---------------------------------------------------------------------------
# Edit k is a pure function of the store and k, so the state after k edits is known; a "marker"
# annotation box(0, 0, k + 1, 1) records k in the file itself.
EDITS = r'''
import random
from shapely.geometry import box
from shapely.ops import unary_union
from core.annotations import ops
from core.annotations.model import Annotation
from core.annotations.store import Edit


def comb(rng):
    l0_x, l0_y = rng.randrange(100, 20000), rng.randrange(100, 20000)
    teeth, height = rng.randrange(1, 200), rng.randrange(5, 60)
    parts = [box(l0_x, l0_y, l0_x + 2 * teeth, l0_y + 5)]
    parts += [box(l0_x + 2 * i, l0_y + 5, l0_x + 2 * i + 1, l0_y + 5 + height) for i in range(teeth)]
    return unary_union(parts)


def key(ann):
    return (tuple(round(v, 3) for v in ann.bounds), round(ann.area_l0, 3), ann.class_name)


def revision_of(annotations):
    markers = [a for a in annotations if a.bounds[3] <= 1]
    return int(round(markers[0].bounds[2])) - 1 if markers else 0


def edit_for(store, k):
    rng = random.Random(k)
    everything = store.annotations()
    marker = next((a for a in everything if a.bounds[3] <= 1), None)
    items = sorted((a for a in everything if a.bounds[3] > 1), key=key)
    target = items[rng.randrange(len(items))] if items else None
    r = rng.random()
    if target is None or (r < 0.45 and len(items) < 30):
        op = ops.add(comb(rng), rng.choice(["Tumour", "Benign"]))
    elif r < 0.45:
        op = ops.delete(store, [target.id])  # keeps the file small
    elif r < 0.6:
        op = ops.move(store, [target.id], rng.randrange(-50, 50), rng.randrange(-50, 50))
    elif r < 0.7:
        op = ops.set_class(store, [target.id], rng.choice(["Tumour", "Benign"]))
    elif r < 0.8:
        op = ops.reshape(store, target.id, comb(rng))
    elif r < 0.9:
        op = ops.delete(store, [target.id])
    else:
        x0, y0, x1, y1 = (int(v) for v in target.bounds)
        cut = box(x0 + rng.randrange(0, 10), y0, x0 + rng.randrange(10, 60), y1 + 1)
        op = ops.subtract(store, cut, ids=[target.id])
    new_marker = box(0, 0, k + 1, 1)
    if marker is None:
        return Edit(op.before, op.after + (Annotation(new_marker, "Exclude"),), f"edit {k}")
    return Edit(op.before + (marker,), op.after + (marker.with_geometry(new_marker),), f"edit {k}")
'''

CHILD = r'''
import sys, time, random
sys.path.insert(0, __ROOT__)
from core.project import Project
''' + EDITS + r'''
project = Project.open(__FOLDER__)
slide_id = project.slides[0].id
store = project.load_annotations(slide_id)
k = revision_of(store.annotations())
saver = project.autosaver(slide_id, store, delay=1.0)
print("ready", k, flush=True)
pace = random.Random()
while True:
    k += 1
    store.apply(edit_for(store, k))
    print(k, flush=True)
    time.sleep(pace.uniform(0, 0.01))
'''


def test_sigkill_never_leaves_a_damaged_file(tmp_path):
    slide = tmp_path / "slides" / "case.svs"
    slide.parent.mkdir()
    slide.write_bytes(b"stand-in slide")
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    path = project.annotations_path(entry.id)
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("__ROOT__", repr(str(ROOT))).replace("__FOLDER__", repr(str(project.folder))))

    edits: dict = {}
    exec(compile(EDITS, "edits", "exec"), edits)  # replay the same edits here to know each state
    replay = AnnotationStore()
    rng = random.Random(20261125)
    started = time.monotonic()
    checked_revisions = []
    # When to kill: twice while starting or loading, five times long enough for the "on disk within
    # 2 s" promise to be checked, eight times at any moment of the editing.
    moments = ["start"] * 2 + ["long"] * 5 + ["any"] * 8
    rng.shuffle(moments)
    for moment in moments:
        child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        printed: list[tuple[float, int]] = []
        ready = threading.Event()

        def read(stream=child.stdout, out=printed, ready=ready):
            for line in stream:
                out.append((time.monotonic(), int(line.split()[-1])))
                if line.startswith("ready"):
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if moment == "start":
            time.sleep(rng.uniform(0.05, 0.4))
        else:
            assert ready.wait(10), child.stderr.read() if child.poll() is not None else "child not ready"
            time.sleep(rng.uniform(2.1, 3.0) if moment == "long" else rng.uniform(0.05, 1.5))
        killed_at = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        reader.join(10)
        stderr = child.stderr.read()
        assert child.returncode == -signal.SIGKILL, stderr
        assert "Traceback" not in stderr, stderr
        must_have = max((k for t, k in printed if t <= killed_at - 2.0), default=0)
        if not path.exists():
            assert must_have == 0
            continue
        on_disk = read_annotations(path).annotations  # never truncated or unreadable
        bak = Path(str(path) + ".bak")
        if bak.exists():
            assert edits["revision_of"](read_annotations(bak).annotations) <= edits["revision_of"](on_disk)
        revision = edits["revision_of"](on_disk)
        assert revision >= must_have, (revision, must_have)
        while replay.revision < revision:
            replay.apply(edits["edit_for"](replay, replay.revision + 1))
        assert sorted(map(edits["key"], on_disk)) == sorted(map(edits["key"], replay.annotations()))
        started_from = printed[0][1] if printed else revision
        checked_revisions.append((started_from, must_have, revision))
    assert time.monotonic() - started < 60
    assert checked_revisions and checked_revisions[-1][-1] > 20, checked_revisions
    # The promise was really tested: several children had to have saved their own edits.
    assert sum(must > first for first, must, _ in checked_revisions) >= 3, checked_revisions
