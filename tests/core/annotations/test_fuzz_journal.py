"""Seeded fuzzers of the autosave journal.

* Random edits (every kind, imports and undo included) saved in random batches, with compactions in
  between: the files always read back as exactly the store, drawing order included.
* Damaged journals (cut, bytes flipped, inserted or dropped, frames repeated): opening never fails,
  gives the store as it was after one of the saves, and changes nothing on disk.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from shapely.geometry import box

from core.annotations import AnnotationStore, journal, ops
from core.annotations.model import AnnotationClass
from core.annotations.store import ClassesEdit, Edit
from core.project.autosave import AutoSaver, load_saved, write_snapshot
from fuzzing import seeds

#: A generous bound on one case (each takes milliseconds).
CASE_LIMIT_S = 20


def state(annotations) -> list:
    return [(a.id, a.class_name, a.note, a.geometry.wkt) for a in annotations]


def passive_saver(store, path) -> AutoSaver:
    """Always journals; saves only when told (on the caller's thread)."""
    saver = AutoSaver(store, path, delay=3600.0, full_write_bytes=0, compact_min_bytes=1 << 40, idle_compact_s=None)
    saver._stopping.set()
    saver._wake.set()
    saver._thread.join(10)
    return saver


def random_edit(store: AnnotationStore, rng: random.Random, history: list) -> None:
    marks = store.annotations()
    choice = rng.random()
    x, y = rng.randrange(0, 5000), rng.randrange(0, 5000)
    if not marks or choice < 0.25:
        edit = ops.add(box(x, y, x + rng.randrange(2, 300), y + rng.randrange(2, 300)),
                       rng.choice(["Tumour", "Benign", "Exclude"]), note=rng.choice(["", "n", "é\ud800\x00"]))
    elif choice < 0.35:
        edit = ops.delete(store, [a.id for a in rng.sample(marks, min(len(marks), rng.randrange(1, 4)))])
    elif choice < 0.5:
        edit = ops.move(store, [rng.choice(marks).id], rng.randrange(-40, 40), rng.randrange(-40, 40))
    elif choice < 0.6:
        edit = ops.set_class(store, [rng.choice(marks).id], rng.choice(["Tumour", "Benign", "Stroma"]))
    elif choice < 0.7:
        edit = ops.set_note(store, rng.choice(marks).id, f"note {rng.random():.3f}")
    elif choice < 0.8 and history:
        store.apply(history.pop())  # undo
        return
    elif choice < 0.85:
        edit = ClassesEdit(store.classes, store.classes + (AnnotationClass(f"C{rng.randrange(99)}", (1, 2, 3)),))
    elif choice < 0.9:  # an import: everything replaced
        edit = store.replace_all([m.with_note("imported") for m in rng.sample(marks, len(marks) // 2)] +
                                 [ops.add(box(x, y, x + 9, y + 9), "Tumour").after[0]])
    else:
        target = rng.choice(marks)
        edit = Edit((target,), (target.with_geometry(box(x, y, x + 50, y + 50)),), "Reshape")
    if not edit.is_empty:
        history.append(store.apply(edit))


def base(folder: Path, rng: random.Random) -> Path:
    path = folder / "slide.geojson"
    store = AnnotationStore()
    for _ in range(rng.randrange(0, 6)):
        random_edit(store, rng, [])
    write_snapshot(path, store.annotations(), store.classes)
    return path


def test_random_edits_always_read_back_exactly(tmp_path):
    for seed in seeds(60):
        started = time.monotonic()
        rng = random.Random(seed)
        shutil.rmtree(tmp_path / "edits", ignore_errors=True)
        path = base(tmp_path / "edits", rng)
        saved = load_saved(path)
        store = AnnotationStore(saved.annotations, saved.classes, origin=saved.origin)
        saver = passive_saver(store, path)
        history: list = []
        for batch in range(rng.randrange(2, 7)):
            for _ in range(rng.randrange(1, 9)):
                random_edit(store, rng, history)
            assert saver.flush(5), (seed, saver.last_error)
            if rng.random() < 0.25:
                assert saver.compact(5), (seed, saver.last_error)
            again = load_saved(path)
            assert state(again.annotations) == state(store.annotations()), f"seed {seed}, batch {batch}"
            assert again.warnings == [], (seed, again.warnings)
            names = {c.name for c in again.classes}
            assert {a.class_name for a in store.annotations()} <= names, seed
        assert saver.close(), seed
        assert not journal.journal_path(path).exists(), seed
        assert state(load_saved(path).annotations) == state(store.annotations()), seed
        assert time.monotonic() - started < CASE_LIMIT_S, f"seed {seed}: {time.monotonic() - started:.1f} s"


def _damaged(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.random()
        at = rng.randrange(0, len(data) + 1)
        if kind < 0.3:
            del data[at:]
        elif kind < 0.6 and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif kind < 0.75:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
        elif kind < 0.9:
            del data[at:at + rng.randrange(1, 40)]
        else:  # a stretch repeated, as a frame written twice
            end = min(len(data), at + rng.randrange(10, 400))
            data[end:end] = data[at:end]
        if not data:
            break
    return bytes(data)


def test_damaged_journals_open_to_a_saved_state(tmp_path):
    rng = random.Random(7)
    path = base(tmp_path / "source", rng)
    saved = load_saved(path)
    store = AnnotationStore(saved.annotations, saved.classes, origin=saved.origin)
    saver = passive_saver(store, path)
    states = [state(store.annotations())]
    history: list = []
    for _ in range(8):
        for _ in range(rng.randrange(1, 5)):
            random_edit(store, rng, history)
        assert saver.flush(5)
        states.append(state(store.annotations()))
    saver._journal.close()  # as killed: the journal stays
    geojson = path.read_bytes()
    whole = journal.journal_path(path).read_bytes()
    for seed in seeds(300):
        damaged = _damaged(whole, random.Random(seed))
        folder = tmp_path / f"case-{seed % 10}"
        folder.mkdir(exist_ok=True)
        case = folder / "slide.geojson"
        case.write_bytes(geojson)
        journal.journal_path(case).write_bytes(damaged)
        begun = time.monotonic()
        opened = load_saved(case)  # never an error: a damaged journal is not a damaged mark file
        assert time.monotonic() - begun < CASE_LIMIT_S, f"seed {seed}: {time.monotonic() - begun:.1f} s"
        assert state(opened.annotations) in states, f"seed {seed}: not a state that was saved"
        cut_between_frames = whole.startswith(damaged) and journal.read_frames(damaged).problem is None
        if not cut_between_frames:  # (that is a journal of fewer saves: nothing tells them apart)
            assert opened.warnings or state(opened.annotations) == states[-1], seed
        assert case.read_bytes() == geojson and journal.journal_path(case).read_bytes() == damaged, seed
