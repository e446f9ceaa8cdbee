"""The autosave journal: replay is exact, every crash point leaves a file that opens to a saved state,
torn and damaged journals never block opening and are never thrown away."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from shapely.geometry import box

from core import atomic
from core.project import autosave
from core.annotations import AnnotationStore, journal, ops
from core.annotations.model import AnnotationClass
from core.annotations.store import ClassesEdit
from core.project.autosave import AutoSaver, load_saved, write_snapshot
from core.errors import AnnotationFormatError
from core.project.model import Project, ProjectError


def state(annotations) -> list:
    """What a reader sees, in drawing order: id, class, note, vertices."""
    return [(a.id, a.class_name, a.note, a.geometry.wkt) for a in annotations]


def loaded_store(path: Path) -> AnnotationStore:
    saved = load_saved(path)
    return AnnotationStore(saved.annotations, saved.classes, saved.foreign, saved.origin)


def journal_saver(store, path, **kwargs) -> AutoSaver:
    """A saver that always journals and never saves or compacts by itself: the test drives it
    (flush, compact and close work on the caller's thread), so every run makes the same calls."""
    options = dict(delay=3600.0, full_write_bytes=0, compact_min_bytes=1 << 40, idle_compact_s=None)
    options.update(kwargs)
    saver = AutoSaver(store, path, **options)
    saver._stopping.set()
    saver._wake.set()
    saver._thread.join(10)
    return saver


def base_file(tmp_path: Path, marks: int = 6) -> Path:
    path = tmp_path / "annotations" / "slide.geojson"
    store = AnnotationStore()
    for n in range(marks):
        store.apply(ops.add(box(n * 100, 0, n * 100 + 60, 40 + n), "Tumour" if n % 2 else "Benign"))
    write_snapshot(path, store.annotations(), store.classes)
    return path


def edit_batch(store: AnnotationStore, k: int) -> None:
    """Edits of every kind the journal records: move, class, note, delete, add, undo of a delete, classes."""
    ids = [a.id for a in store.annotations()]
    store.apply(ops.move(store, [ids[k % len(ids)]], 3, 1))
    store.apply(ops.set_class(store, [ids[(k + 1) % len(ids)]], "Tumour" if k % 2 else "Benign"))
    store.apply(ops.set_note(store, ids[(k + 2) % len(ids)], f"note {k} \u00e9 \ud800"))
    undo = store.apply(ops.delete(store, [ids[(k + 3) % len(ids)]]))
    if k % 2:
        store.apply(undo)  # back, at the end of the drawing order
    store.apply(ops.add(box(1000 + k * 10, 500, 1005 + k * 10, 520), "Benign", note=f"new {k}"))
    if k == 2:
        store.apply(ClassesEdit(store.classes, store.classes + (AnnotationClass("Stroma", (10, 20, 30)),)))


def test_the_journal_replays_to_exactly_the_saved_store(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    geojson = path.read_bytes()
    for k in range(4):
        edit_batch(store, k)
        assert saver.flush(5)
        assert path.read_bytes() == geojson  # saves append to the journal, the big file is not rewritten
        again = load_saved(path)
        assert state(again.annotations) == state(store.annotations()), k
        assert again.warnings == []
    assert "Stroma" in [c.name for c in load_saved(path).classes]
    # A class or note change records no vertices.
    before = saver.journal_bytes
    store.apply(ops.set_class(store, [store.annotations()[0].id], "Stroma"))
    assert saver.flush(5) and saver.journal_bytes - before < 300
    assert saver.close()
    assert not journal.journal_path(path).exists()  # folded into the file on close
    assert state(load_saved(path).annotations) == state(store.annotations())
    assert Path(str(path) + ".bak").read_bytes() == geojson


class Crash(BaseException):
    """Stands for SIGKILL at one call: nothing after it runs (no except OSError clean-up)."""


class CrashingOS:
    """The os module for core.atomic, core.annotations.journal and core.project.autosave: the n-th call that
    changes a file crashes (a write crashes halfway, leaving a torn frame)."""

    CHANGING = {"write", "pwrite", "fsync", "fdatasync", "ftruncate", "replace", "rename", "link", "unlink"}

    def __init__(self, crash_at: int):
        self.crash_at, self.calls = crash_at, 0

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.CHANGING:
            return real

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.crash_at:
                if name == "pwrite":
                    fd, data, offset = args
                    os.pwrite(fd, data[: len(data) // 2], offset)
                raise Crash(name)
            return real(*args, **kwargs)

        return call


def run_scenario(path: Path, crash_at: int, monkeypatch) -> tuple[list, list | None, CrashingOS]:
    """Edit, save, compact (with a save in the middle of it) and close, crashing at call ``crash_at``.

    Returns the states that may be on disk afterwards (the last saved one, or the one being saved).
    """
    fake = CrashingOS(crash_at)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    states = [state(store.annotations())]
    inflight = None
    for module in (atomic, journal, autosave):
        monkeypatch.setattr(module, "os", fake)
    real_bytes = autosave.geojson_bytes
    interleaved = []

    def bytes_with_a_save_meanwhile(*args):
        data = real_bytes(*args)
        if not interleaved:  # a save while the compaction serialises: the journal keeps a tail
            interleaved.append(True)
            save(10)
        return data

    def save(k):
        nonlocal inflight
        edit_batch(store, k)
        inflight = state(store.annotations())
        assert saver.flush(5)
        states.append(inflight)
        inflight = None

    try:
        save(1)
        save(2)
        assert saver.compact(5)
        save(3)
        monkeypatch.setattr(autosave, "geojson_bytes", bytes_with_a_save_meanwhile)
        assert saver.compact(5)
        monkeypatch.setattr(autosave, "geojson_bytes", real_bytes)
        save(4)
        saver._full_write_bytes = 1 << 40  # the store is "small" now: rewritten whole, journal and all
        save(5)
        saver._full_write_bytes = 0
        save(6)
        assert saver.close()
    except Crash:
        pass
    finally:
        monkeypatch.undo()
        if saver._journal is not None:  # the "killed" saver's file, as the system closes it
            saver._journal.close()
    possible = [states[-1]] + ([inflight] if inflight is not None else [])
    return possible, states, fake


def test_every_crash_point_opens_to_a_saved_state_and_saving_goes_on(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    _, _, clean = run_scenario(base_file(folder / "clean"), 0, monkeypatch)
    assert clean.calls > 30  # every step of saving, compaction and closing is a crash point
    for crash_at in range(1, clean.calls + 1):
        path = base_file(folder / str(crash_at))
        possible, states, _ = run_scenario(path, crash_at, monkeypatch)
        saved = load_saved(path)  # never an error
        assert state(saved.annotations) in possible, f"crash at call {crash_at}"
        assert not [w for w in saved.warnings if "does not belong" in w or "damaged" in w], (crash_at, saved.warnings)
        # Saving goes on from whatever the crash left, and a clean close completes the file.
        store = loaded_store(path)
        saver = journal_saver(store, path)
        store.apply(ops.add(box(5000, 5000, 5100, 5100), "Tumour", note="after the crash"))
        assert saver.flush(5), crash_at
        assert state(load_saved(path).annotations) == state(store.annotations()), crash_at
        assert saver.close(), crash_at
        assert not journal.journal_path(path).exists(), crash_at
        from core.annotations.formats import read_annotations
        assert state(read_annotations(path).annotations) == state(store.annotations()), crash_at
        assert not [p for p in path.parent.iterdir() if p.name.endswith((".unused", ".damaged"))], crash_at


def test_a_torn_last_frame_is_dropped_with_a_warning_and_cut_off(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    edit_batch(store, 1)
    assert saver.flush(5)
    expected = state(store.annotations())
    edit_batch(store, 2)
    assert saver.flush(5)
    saver._journal.close()  # killed
    jpath = journal.journal_path(path)
    whole = jpath.read_bytes()
    last = whole.rindex(b"REC1")
    for cut in (last + 3, last + 11, (last + len(whole)) // 2, len(whole) - 1):  # torn in the header or payload
        jpath.write_bytes(whole[:cut])
        saved = load_saved(path)
        assert state(saved.annotations) == expected
        assert len(saved.warnings) == 1 and "incomplete save" in saved.warnings[0] and str(jpath) in saved.warnings[0]
    store = loaded_store(path)
    saver = journal_saver(store, path)
    store.apply(ops.delete(store, [store.annotations()[0].id]))
    assert saver.flush(5)
    assert jpath.read_bytes().startswith(whole[:last])  # the torn frame was cut off, nothing before it
    saved = load_saved(path)
    assert saved.warnings == [] and state(saved.annotations) == state(store.annotations())
    assert saver.close()


def test_a_damaged_journal_opens_with_what_it_can_and_is_kept_aside(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    edit_batch(store, 1)
    assert saver.flush(5)
    expected = state(store.annotations())
    edit_batch(store, 2)
    assert saver.flush(5)
    edit_batch(store, 3)
    assert saver.flush(5)
    saver._journal.close()  # killed
    jpath = journal.journal_path(path)
    data = bytearray(jpath.read_bytes())
    second = data.index(b"REC1", data.index(b"REC1", data.index(b"REC1") + 1) + 1)  # the 2nd edit record
    data[second + 40] ^= 0xFF
    jpath.write_bytes(bytes(data))
    saved = load_saved(path)
    assert state(saved.annotations) == expected
    assert len(saved.warnings) == 1 and "damaged" in saved.warnings[0] and str(jpath) in saved.warnings[0]
    store = loaded_store(path)
    saver = journal_saver(store, path)
    assert saver.close()  # even without an edit, closing writes what was opened into the file
    [aside] = [p for p in path.parent.iterdir() if p.name.endswith(".damaged")]
    assert aside.read_bytes() == bytes(data)  # never thrown away
    assert not jpath.exists()
    assert state(load_saved(path).annotations) == expected


def test_a_journal_for_another_version_of_the_file_is_not_replayed_and_kept_aside(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    edit_batch(store, 1)
    assert saver.flush(5)
    saver._journal.close()  # killed
    jpath = journal.journal_path(path)
    leftover = jpath.read_bytes()
    other = AnnotationStore()
    other.apply(ops.add(box(0, 0, 10, 10), "Tumour"))  # another program replaced the file meanwhile
    path.write_bytes(journal.geojson_bytes(other.annotations(), other.classes))
    saved = load_saved(path)
    assert state(saved.annotations) == state(other.annotations())
    assert len(saved.warnings) == 1 and "does not belong" in saved.warnings[0]
    store = loaded_store(path)
    saver = journal_saver(store, path)
    store.apply(ops.add(box(50, 50, 60, 60), "Benign"))
    assert saver.close()
    [aside] = [p for p in path.parent.iterdir() if p.name.endswith(".unused")]
    assert aside.read_bytes() == leftover
    assert load_saved(path).warnings == [] and len(load_saved(path).annotations) == 2


def test_an_unreadable_journal_makes_the_marks_read_only(tmp_path):
    slide = tmp_path / "case.svs"
    slide.write_bytes(b"slide")
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    path = project.annotations_path(entry.id)
    write_snapshot(path, [], ())
    jpath = journal.journal_path(path)
    jpath.mkdir()  # cannot be read as a file
    with pytest.raises(AnnotationFormatError, match="journal") as info:
        project.load_annotations(entry.id)
    assert str(jpath) in str(info.value)
    with pytest.raises(ProjectError, match="will not overwrite"):
        project.autosaver(entry.id, AnnotationStore())


def test_a_failed_append_leaves_the_journal_as_it_was_and_is_retried(tmp_path, monkeypatch):
    path = base_file(tmp_path)
    store = loaded_store(path)
    errors = []
    saver = journal_saver(store, path, on_error=errors.append, retry_delays=(0.05,))
    edit_batch(store, 1)
    assert saver.flush(5)
    jpath = journal.journal_path(path)
    before = jpath.read_bytes()
    real_pwrite = os.pwrite

    def half_then_full(fd, data, offset):
        real_pwrite(fd, data[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(journal.os, "pwrite", half_then_full)
    edit_batch(store, 2)
    assert not saver.flush(5)
    assert jpath.read_bytes() == before  # the half frame was cut off again
    assert len(errors) == 1 and "No space left on device" in errors[0] and saver.dirty
    monkeypatch.setattr(journal.os, "pwrite", real_pwrite)
    edit_batch(store, 3)
    assert saver.flush(5) and not saver.dirty
    assert state(load_saved(path).annotations) == state(store.annotations())
    assert saver.close()


def test_compaction_runs_beside_saving_and_the_file_is_complete_after_close(tmp_path):
    path = base_file(tmp_path, marks=12)
    store = loaded_store(path)
    saver = AutoSaver(store, path, delay=0.01, full_write_bytes=0, compact_min_bytes=0, compact_ratio=0.05,
                      idle_compact_s=None)
    jpath = journal.journal_path(path)
    folds = set()
    for k in range(120):
        edit_batch(store, k)
        if k % 10 == 0:
            assert saver.flush(5)
            folds.add(path.stat().st_ino)
    assert saver.flush(5)
    assert state(load_saved(path).annotations) == state(store.annotations())
    assert len(folds) > 2  # the file was rewritten in the background several times
    assert saver.close() and not jpath.exists()
    from core.annotations.formats import read_annotations
    assert state(read_annotations(path).annotations) == state(store.annotations())


def test_a_store_not_read_from_the_file_is_written_whole_first(tmp_path):
    path = base_file(tmp_path)
    fresh = AnnotationStore()
    saver = journal_saver(fresh, path)
    fresh.apply(ops.add(box(0, 0, 5, 5), "Tumour"))
    assert saver.flush(5)
    assert not journal.journal_path(path).exists()
    assert state(load_saved(path).annotations) == state(fresh.annotations())
    fresh.apply(ops.add(box(10, 0, 15, 5), "Tumour"))  # from then on, the journal
    assert saver.flush(5) and journal.journal_path(path).exists()
    assert state(load_saved(path).annotations) == state(fresh.annotations())
    assert saver.close()


def test_a_save_that_changes_nothing_leaves_no_journal(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    undo = store.apply(ops.add(box(0, 900, 10, 910), "Tumour"))
    store.apply(undo)  # added, then taken back before the save
    assert saver.flush(5) and not journal.journal_path(path).exists()
    assert saver.close() and not journal.journal_path(path).exists()


def test_a_missing_record_stops_the_replay_with_a_warning(tmp_path):
    path = base_file(tmp_path)
    store = loaded_store(path)
    saver = journal_saver(store, path)
    states = []
    for k in range(3):
        edit_batch(store, k)
        assert saver.flush(5)
        states.append(state(store.annotations()))
    saver._journal.close()  # killed
    jpath = journal.journal_path(path)
    data = jpath.read_bytes()
    starts = [i for i in range(len(data)) if data.startswith(b"REC1", i)]
    jpath.write_bytes(data[:starts[2]] + data[starts[3]:])  # the second edit record cut out whole
    saved = load_saved(path)
    assert state(saved.annotations) == states[0]
    assert any("record 2 is missing" in w for w in saved.warnings), saved.warnings


@pytest.mark.parametrize("journalled", [False, True], ids=["rewrite", "journal"])
def test_nan_in_a_files_own_properties_never_stops_saving(tmp_path, journalled):
    path = tmp_path / "slide.geojson"
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "a", "geometry": '
                    '{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}, '
                    '"properties": {"measurements": {"m": NaN, "i": Infinity}}}, {"type": "Feature", '
                    '"geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"v": NaN}}]}')
    store = loaded_store(path)
    saver = AutoSaver(store, path, delay=0.01, full_write_bytes=0 if journalled else None)
    store.apply(ops.move(store, ["a"], 1, 1))
    assert saver.flush(5), saver.last_error
    assert saver.close(), saver.last_error
    text = path.read_text()
    assert '"m":NaN,"i":Infinity' in text and '"v":NaN' in text
    assert load_saved(path).annotations[0].bounds == (1, 1, 11, 11)
