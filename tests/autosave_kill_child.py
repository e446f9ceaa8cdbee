"""The editing program of the autosave kill test (tests/core/project/test_autosave_kill.py), run in a fresh
interpreter.

    python tests/autosave_kill_child.py PROJECT_FOLDER

Opens the project's only slide as the window does (its marks read with the journal replayed,
autosaved with the window's settings), checks that what it read is exactly the store after some
edit K, prints ``ready K <problems or ok>``, then edits for ever, printing ``edit K T`` once edit K
is applied (``T`` is ``time.monotonic()``, the same clock in every process) and ``saved K T``
when a save holding it returned. The parent kills it at a random moment.

Edit K is a pure function of K, so the store after K edits is known without replaying them: a
counter mark holds K in its note, one of the big marks moves or changes class, small marks come
and go.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from shapely.geometry import Polygon, box  # noqa: E402

from core.annotations import AnnotationStore, ops  # noqa: E402
from core.annotations.model import Annotation  # noqa: E402
from core.annotations.store import Edit  # noqa: E402

VERTICES = 30000
CLASSES = ("Tumour", "Benign")


def big_mark(n: int) -> Annotation:
    """Big mark ``n``: a wavy ring of 30,000 vertices (coordinates to 1/1000 px) in its own grid cell."""
    t = np.linspace(0.0, 2 * np.pi, VERTICES, endpoint=False)
    radius = 4000 + 250 * np.sin(37 * t + n)
    l0_x, l0_y = 6000 + (n % 10) * 9000, 6000 + (n // 10) * 9000
    ring = np.round(np.c_[l0_x + radius * np.cos(t), l0_y + radius * np.sin(t)], 3)
    return Annotation(Polygon(ring), CLASSES[n % 2], f"region {n}", id=f"{n + 1:032x}")


def small_box(k: int):
    return box(k % 50 * 30, 100000 + k // 50 * 30, k % 50 * 30 + 20, 100000 + k // 50 * 30 + 20)


def build(folder: Path, marks: int) -> int:
    """A project with one (stand-in) slide holding ``marks`` big marks, written whole; the file's size."""
    from core.project.model import Project

    slide = folder / "slide.svs"
    folder.mkdir(parents=True)
    slide.write_bytes(b"stand-in slide")
    project = Project.create(folder / "project")
    entry = project.add_slide(slide)
    store = AnnotationStore([big_mark(n) for n in range(marks)], project.classes)
    project.save_annotations(entry.id, store)
    return project.annotations_path(entry.id).stat().st_size


def edit_for(store: AnnotationStore, k: int, marks: int) -> Edit:
    """Edit ``k`` (1, 2, ...): one change, and the counter set to ``k``, in one undoable step."""
    big = store.get(f"{(k // 4) % marks + 1:032x}")
    if k % 4 == 0:
        op = ops.move(store, [big.id], k % 11 - 5, k % 7 - 3)
    elif k % 4 == 1:
        op = ops.set_class(store, [big.id], CLASSES[k % 2])
    elif k % 4 == 2:
        op = Edit((), (Annotation(small_box(k), "Benign", f"small {k}", id=f"s{k}"),))
    else:
        old = store.get(f"s{k - 9}")
        op = Edit((old,) if old is not None else (), ())
    counter = store.get("counter")
    if counter is None:
        return Edit(op.before, op.after + (Annotation(box(0, 0, 10, 10), "Exclude", "1", id="counter"),), f"edit {k}")
    return Edit(op.before + (counter,), op.after + (counter.with_note(str(k)),), f"edit {k}")


def expected(k: int, marks: int) -> dict:
    """id -> (class, note, bounds, vertices) of the store after edits 1..k."""
    offsets = {n: [0, 0] for n in range(marks)}
    classes = {n: CLASSES[n % 2] for n in range(marks)}
    for j in range(1, k + 1):
        n = (j // 4) % marks
        if j % 4 == 0:
            offsets[n][0] += j % 11 - 5
            offsets[n][1] += j % 7 - 3
        elif j % 4 == 1:
            classes[n] = CLASSES[j % 2]
    out = {}
    for n in range(marks):
        x0, y0, x1, y1 = big_mark_bounds(n)
        dx, dy = offsets[n]
        out[f"{n + 1:032x}"] = (classes[n], f"region {n}", (x0 + dx, y0 + dy, x1 + dx, y1 + dy), VERTICES + 1)
    for j in range(max(1, k - 8), k + 1):
        if j % 4 == 2:
            out[f"s{j}"] = ("Benign", f"small {j}", small_box(j).bounds, 5)
    if k:
        out["counter"] = ("Exclude", str(k), (0, 0, 10, 10), 5)
    return out


_BOUNDS: dict[int, tuple] = {}


def big_mark_bounds(n: int) -> tuple:
    if n not in _BOUNDS:
        _BOUNDS[n] = big_mark(n).bounds
    return _BOUNDS[n]


def check(annotations, marks: int) -> tuple[int, list[str]]:
    """The edit the store is at, and every way it differs from the store after that edit."""
    found = {a.id: a for a in annotations}
    k = int(found["counter"].note) if "counter" in found else 0
    want = expected(k, marks)
    problems = [f"missing {i}" for i in want if i not in found] + [f"unexpected {i}" for i in found if i not in want]
    for ann_id, (class_name, note, bounds, vertices) in want.items():
        ann = found.get(ann_id)
        if ann is None:
            continue
        got = (ann.class_name, ann.note, len(ann.geometry.exterior.coords))
        if got != (class_name, note, vertices) or max(abs(a - b) for a, b in zip(ann.bounds, bounds)) > 1e-3:
            problems.append(f"{ann_id}: {got} {ann.bounds} instead of {(class_name, note, vertices)} {bounds}")
    return k, problems


def main(folder: str) -> None:
    from core.project.autosave import DEFAULT_DELAY
    from core.project.model import Project

    project = Project.open(Path(folder))
    entry = project.slides[0]
    store = project.load_annotations(entry.id)
    marks = sum(1 for a in store.annotations() if a.note.startswith("region"))
    k, problems = check(store.annotations(), marks)
    backup = project.annotations_path(entry.id).with_name(project.annotations_path(entry.id).name + ".bak")
    if backup.exists() and backup.stat().st_size < 2**21:  # the previous version: readable, and older
        from core.annotations.formats import read_annotations

        bak_k, bak_problems = check(read_annotations(backup).annotations, marks)
        problems += [f"backup: {p}" for p in bak_problems] + ([f"backup at edit {bak_k}"] if bak_k > k else [])
    for warning in project.warnings:
        print("warning", warning, file=sys.stderr, flush=True)
    out, lock = sys.stdout, threading.Lock()

    def say(line: str) -> None:
        with lock:  # the saver's thread writes too
            out.write(line + "\n")
            out.flush()

    def saved(revision: int, start: int = k) -> None:
        say(f"saved {start + revision} {time.monotonic():.4f}")

    saver = project.autosaver(entry.id, store, delay=DEFAULT_DELAY, on_saved=saved)
    say(f"ready {k} {'; '.join(problems[:5]) or 'ok'}")
    pace = random.Random()
    while saver is not None:
        k += 1
        store.apply(edit_for(store, k, marks))
        say(f"edit {k} {time.monotonic():.4f}")
        time.sleep(pace.uniform(0.03, 0.12))


if __name__ == "__main__":
    main(sys.argv[1])
