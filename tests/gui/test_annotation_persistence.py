"""Marks in the window are autosaved to the slide's project, survive reopening, and move in and out of files."""

from __future__ import annotations

import errno

import pytest
from shapely.geometry import box

from core.annotations import ops
from core.annotations.formats import read_annotations
from core.project.model import default_project

WINDOW_SIZE = (1200, 800)


def test_edits_are_autosaved_and_come_back(qtbot, make_window, cmu_svs, open_view):
    """The edit reaches the disk without a save asked for (how soon is bench/autosave.py's figure)."""
    win = make_window()
    view = open_view(win, cmu_svs)
    assert len(view.annotations) == 0
    view.apply_edit(ops.add(box(100, 100, 600, 500), "Tumour", note="gland cluster"))
    path = view.document.session.path
    qtbot.waitUntil(lambda: path.exists() and len(read_annotations(path).annotations) == 1, timeout=30_000)
    view.apply_edit(ops.add(box(700, 700, 900, 900), "Benign"))
    win.close()  # flushes
    assert len(read_annotations(path).annotations) == 2

    again = make_window()
    view2 = open_view(again, cmu_svs)
    marks = sorted(view2.annotations.annotations(), key=lambda a: a.bounds)
    assert [a.class_name for a in marks] == ["Tumour", "Benign"]
    assert marks[0].note == "gland cluster" and marks[0].bounds == pytest.approx((100, 100, 600, 500))


def test_unreadable_marks_file_is_never_overwritten(qtbot, make_window, cmu_svs, open_view):
    project = default_project()
    entry = project.add_slide(cmu_svs)
    bad = project.annotations_path(entry.id)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text('{"type": "FeatureCollection", "features": [')  # truncated
    win = make_window()
    view = open_view(win, cmu_svs)
    assert any("could not be read" in e or bad.name in e for e in win.errors)
    assert not view.document.session.autosaving
    view.apply_edit(ops.add(box(0, 0, 50, 50), "Tumour"))
    qtbot.wait(1500)
    assert bad.read_text() == '{"type": "FeatureCollection", "features": ['


def test_import_is_one_undoable_edit_and_export_round_trips(qtbot, make_window, synthetic_slide, tmp_path, open_view):
    win = make_window()
    view = open_view(win, synthetic_slide.slide_path)
    with qtbot.waitSignal(view.annotations_edited, timeout=10000):
        win.annotation_files.import_file(view, synthetic_slide.geojson_path)
    truth = read_annotations(synthetic_slide.geojson_path).annotations
    assert len(view.annotations) == len(truth) > 0
    view.undo_stack.undo()
    assert len(view.annotations) == 0
    view.undo_stack.redo()
    for fmt, name in (("geojson", "out.geojson"), ("asap", "out-asap.xml"), ("imagescope", "out-scope.xml")):
        assert win.annotation_files.export_file(view, tmp_path / name, fmt)
        back = read_annotations(tmp_path / name).annotations
        assert sum(a.area_l0 for a in back) == pytest.approx(sum(a.area_l0 for a in truth), rel=1e-3)


def test_full_disk_is_reported_and_nothing_saved_is_lost(qtbot, make_window, cmu_svs, monkeypatch, open_view):
    win = make_window()
    view = open_view(win, cmu_svs)
    view.apply_edit(ops.add(box(0, 0, 100, 100), "Tumour"))
    assert view.document.session.saver.flush(5)
    path = view.document.session.path
    saved = path.read_bytes()

    import core.project.autosave

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(core.project.autosave, "atomic_write_bytes", full)
    view.apply_edit(ops.add(box(200, 200, 300, 300), "Benign"))
    qtbot.waitUntil(lambda: any("No space left" in e for e in win.errors), timeout=5000)
    assert path.read_bytes() == saved  # the last good file is intact
    assert len(view.annotations) == 2  # the new mark is kept in memory
    # closing the tab asks first; saying no keeps the slide (and its marks) open
    monkeypatch.setattr("gui.main_window.confirm_discard", lambda win, problems: False)
    assert win.close_tab(win.tabs.currentIndex()) is False and win.views() == [view]
    monkeypatch.undo()  # space is free again: the retry or the next flush saves everything
    assert view.document.session.saver.flush(10)
    assert len(read_annotations(path).annotations) == 2


def test_a_project_folder_holds_its_slides_and_marks(qtbot, make_window, cmu_svs, tmp_path, open_view):
    from core.project.model import Project

    folder = tmp_path / "study"
    win = make_window()
    win.use_project(Project.create(folder, "Study"))
    view = open_view(win, cmu_svs)
    view.apply_edit(ops.add(box(10, 10, 400, 300), "Tumour"))
    win.close()
    marks = list((folder / "annotations").glob("*.geojson"))
    assert len(marks) == 1 and len(read_annotations(marks[0]).annotations) == 1

    again = make_window()
    with qtbot.waitSignal(again.slide_opened, timeout=20000) as blocker:
        again.open_project(folder)
    assert len(blocker.args[0].annotations) == 1 and again.project.folder == folder
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "project.json").write_text("{not json")
    assert again.open_project(broken) is None and "project.json" in again.errors[-1]


def test_pen_marked_copy_imported_over_the_open_slide(qtbot, make_window, synthetic_slide, tmp_path, open_view):
    import cv2
    import numpy as np
    import shapely

    from core.slide import open_slide

    truth = shapely.union_all([a.geometry for a in read_annotations(synthetic_slide.geojson_path).annotations])
    with open_slide(synthetic_slide.slide_path) as reader:
        copy = reader.get_thumbnail((1024, 1024)).copy()
    scale = copy.shape[1] / synthetic_slide.width
    for part in shapely.get_parts(truth):
        ring = np.round(np.asarray(part.exterior.coords) * scale).astype(np.int32)
        cv2.polylines(copy, [ring], True, (0, 90, 255), 3, cv2.LINE_AA)  # a blue pen
    marked = tmp_path / "marked.jpg"
    cv2.imwrite(str(marked), cv2.cvtColor(copy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])

    win = make_window()
    view = open_view(win, synthetic_slide.slide_path)
    with qtbot.waitSignal(view.annotations_edited, timeout=20000):
        win.annotation_files.import_marked(view, marked, "Tumour")
    found = shapely.union_all([a.geometry for a in view.annotations])
    assert found.intersection(truth).area / found.union(truth).area > 0.8
    assert {a.class_name for a in view.annotations} == {"Tumour"}


def test_demo_opens_with_its_known_tumour_as_marks_once(qtbot, make_window, synthetic_slide):
    from gui.app import _open_demo

    truth = read_annotations(synthetic_slide.geojson_path).annotations
    win = make_window()
    _open_demo(win, synthetic_slide.slide_path)
    qtbot.waitUntil(lambda: bool(win.views()) and len(win.views()[0].annotations) == len(truth), timeout=20000)
    view = win.views()[0]
    view.apply_edit(ops.delete(view.annotations, [truth[0].id]))  # the doctor disagrees with one region
    win.close()
    again = make_window()
    _open_demo(again, synthetic_slide.slide_path)  # not imported a second time over the doctor's edits
    qtbot.waitUntil(lambda: bool(again.views()), timeout=20000)
    qtbot.wait(300)
    assert len(again.views()[0].annotations) == len(truth) - 1


def test_large_marks_are_journalled_and_complete_in_the_file_after_closing(qtbot, make_window, cmu_svs, tmp_path, open_view):
    import numpy as np
    from shapely.geometry import Polygon

    from core.annotations import AnnotationStore, journal
    from core.annotations.model import Annotation
    from core.project.autosave import FULL_WRITE_BYTES
    from core.project.model import Project

    folder = tmp_path / "study"
    project = Project.create(folder, "Study")
    entry = project.add_slide(cmu_svs)
    t = np.linspace(0, 2 * np.pi, 30000, endpoint=False)
    big = [Annotation(Polygon(np.round(np.c_[1000 * n + 400 * np.cos(t) + 500, 400 * np.sin(t) + 500], 3)),
                      "Tumour", f"region {n}") for n in range(4)]
    project.save_annotations(entry.id, AnnotationStore(big, project.classes))
    path = project.annotations_path(entry.id)
    assert path.stat().st_size > FULL_WRITE_BYTES  # large enough to be journalled
    before = path.read_bytes()
    win = make_window()
    win.use_project(project, open_slides=False)
    view = open_view(win, cmu_svs)
    view.apply_edit(ops.add(box(100, 2000, 600, 2500), "Benign", note="journalled"))
    qtbot.waitUntil(lambda: not view.document.session.saver.dirty, timeout=2500)  # on disk within 2 s ...
    assert path.read_bytes() == before and journal.journal_path(path).exists()  # ... in the journal
    assert len(project.load_annotations(entry.id)) == 5
    win.close()  # folds the journal into the file QuPath reads
    assert not journal.journal_path(path).exists()
    assert sorted(a.note for a in read_annotations(path).annotations)[0] == "journalled"
