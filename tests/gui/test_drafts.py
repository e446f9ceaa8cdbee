"""The network's calls as drafts in the window: propose, accept (A), reject (R), edit then accept,
undo, autosave, export and re-import with their origin, and the Review list stepped with N / Shift+N."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import box
from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtTest import QTest

from qt_events import click, drag
from core.annotations.formats import read_annotations
from core.annotations.proposals import ORIGIN_KEY, is_draft
from core.inference.predict import ProbabilityGrid
from core.project.model import Project
from tests.gui.test_main_window import open_and_wait

WINDOW_SIZE = (1400, 900)
STRIDE = 250


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from core.synth import write_synthetic_slide

    return write_synthetic_slide(tmp_path_factory.mktemp("drafts") / "case.tiff", width=6000, height=4000, seed=7)


def three_region_grid(size) -> ProbabilityGrid:
    """Two called regions (top left, bottom right) and one unsure region (bottom left) at threshold 0.5."""
    w, h = size
    probs = np.full((h // STRIDE, w // STRIDE), 0.02, np.float32)
    probs[2:6, 2:8] = 0.95
    probs[10:14, 14:20] = 0.9
    probs[10:13, 2:6] = 0.49
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=STRIDE, tile_l0=STRIDE, tile_px=64, mpp=4.0,
                           slide_size=(w, h), model={"name": "tiny", "sha256": "ab" * 32, "threshold": 0.5},
                           complete=True, predicted=np.ones(probs.shape, bool))


def key(view, k, modifier=Qt.NoModifier) -> None:
    """A key as the user types it: through the window's shortcuts."""
    QTest.keyClick(view, k, modifier)


def screen(view, l0_x, l0_y) -> QPoint:
    x, y = view.viewport.l0_to_screen(l0_x, l0_y)
    return QPoint(round(x), round(y))


def proposed(qtbot, window, view):
    view.document.prediction.grid = three_region_grid(view.reader.dimensions)
    with qtbot.waitSignal(view.annotations_edited, timeout=20000):
        window.drafts.actions["propose"].trigger()  # Model ▸ Propose marks
    return sorted(view.annotations, key=lambda a: a.bounds[0] + a.bounds[1])


def select_by_click(window, view, draft) -> None:
    window.annotate.select_tool("select")
    c = draft.geometry.representative_point()
    click(view, screen(view, c.x, c.y))
    assert view.selection == {draft.id}


def test_propose_accept_reject_edit_then_accept_and_undo(qtbot, window, synth, tmp_path):
    view = open_and_wait(qtbot, window, synth.slide_path)
    window.activateWindow()
    view.setFocus()
    top_left, bottom_right = proposed(qtbot, window, view)
    assert all(is_draft(d) for d in (top_left, bottom_right))
    origin = top_left.extra["properties"][ORIGIN_KEY]
    assert (origin["model"], origin["threshold"]) == ("tiny", 0.5)
    dock = window.annotate.dock
    qtbot.waitUntil(lambda: "2 drafts" in dock.count_label.text(), timeout=3000)
    assert dock.count_label.text().startswith("No marks yet")  # drafts are not marks

    # A accepts the selected draft: an ordinary mark, its origin kept, not changed by the doctor
    select_by_click(window, view, top_left)
    key(view, Qt.Key_A)
    accepted = view.annotations.get(top_left.id)
    assert not is_draft(accepted) and accepted.class_name == "Tumour"
    assert accepted.extra["properties"][ORIGIN_KEY]["edited_by_doctor"] is False
    assert "accepted_at" in accepted.extra["properties"][ORIGIN_KEY]
    # undo gives the draft back, redo accepts again
    key(view, Qt.Key_Z, Qt.ControlModifier)
    assert is_draft(view.annotations.get(top_left.id))
    key(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert not is_draft(view.annotations.get(top_left.id))

    # R rejects: a Benign mark recording the rejection
    select_by_click(window, view, bottom_right)
    key(view, Qt.Key_R)
    rejected = view.annotations.get(bottom_right.id)
    assert rejected.class_name == "Benign" and "rejected_at" in rejected.extra["properties"][ORIGIN_KEY]
    key(view, Qt.Key_Z, Qt.ControlModifier)
    assert is_draft(view.annotations.get(bottom_right.id))

    # edit the draft with a tool (drag it with the select tool), then accept: the change is recorded
    select_by_click(window, view, bottom_right)
    c = bottom_right.geometry.representative_point()
    drag(view, screen(view, c.x, c.y), screen(view, c.x + 400, c.y))
    moved = view.annotations.get(bottom_right.id)
    one_px = 1 / view.viewport.scale  # level-0 px per screen px: the drag moves by whole screen pixels
    assert is_draft(moved) and moved.bounds[0] == pytest.approx(bottom_right.bounds[0] + 400, abs=2 * one_px)
    key(view, Qt.Key_A)
    edited = view.annotations.get(bottom_right.id)
    assert not is_draft(edited) and edited.extra["properties"][ORIGIN_KEY]["edited_by_doctor"] is True

    # autosave keeps the decisions with their origin
    saver = view.document.session.saver
    assert saver.flush(10.0)
    project = Project.open(view.document.project.folder)
    reloaded = {a.id: a for a in project.load_annotations(view.document.entry.id)}
    assert reloaded[edited.id].extra["properties"][ORIGIN_KEY]["edited_by_doctor"] is True
    assert reloaded[top_left.id].extra["properties"][ORIGIN_KEY]["model"] == "tiny"

    # export to QuPath GeoJSON and read back: the origin survives
    out = tmp_path / "decided.geojson"
    assert window.annotation_files.export_file(view, out)
    props = {f["properties"].get(ORIGIN_KEY, {}).get("sha256") for f in json.loads(out.read_text())["features"]}
    assert props == {"ab" * 32}
    again = {a.id: a for a in read_annotations(out).annotations}
    assert again[edited.id].extra["properties"][ORIGIN_KEY] == edited.extra["properties"][ORIGIN_KEY]


def test_accept_all_in_view_and_propose_again_replaces_undecided_drafts(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    window.activateWindow()
    view.setFocus()
    drafts = proposed(qtbot, window, view)
    assert len(drafts) == 2
    again = proposed(qtbot, window, view)  # the undecided drafts are replaced, not doubled
    assert len(again) == 2 and {d.id for d in again}.isdisjoint(d.id for d in drafts)
    view.zoom_to_fit()
    assert window.drafts.accept_in_view() == 2
    assert not any(is_draft(a) for a in view.annotations)
    key(view, Qt.Key_Z, Qt.ControlModifier)
    assert sum(is_draft(a) for a in view.annotations) == 2


def test_the_review_list_steps_with_n_and_shift_n_each_region_filling_the_view(qtbot, window, synth):
    view = open_and_wait(qtbot, window, synth.slide_path)
    review = window.drafts.review
    with qtbot.waitSignal(review.listed, timeout=20000):
        view.document.prediction.grid = three_region_grid(view.reader.dimensions)
        review.compute()
    first_list = list(review.items)
    assert first_list and first_list[0].uncertain_tiles > 0  # the unsure region ranks first
    entry = review.list.item(0)
    assert entry.text().startswith(f"1. {first_list[0].reason} (of {first_list[0].tiles} tile")
    assert review.list.wordWrap() and review.list.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff  # wraps
    window.activateWindow()
    view.setFocus()
    key(view, Qt.Key_N)
    item = first_list[0]
    x, y, w, h = item.bbox_l0
    vp = view.viewport
    assert (vp.l0_cx, vp.l0_cy) == pytest.approx((x + w / 2, y + h / 2), abs=1)
    fills = max(w * vp.scale / vp.screen_w, h * vp.scale / vp.screen_h)
    assert fills == pytest.approx(0.8, abs=0.01)  # the region fills the view
    assert view.document.reviewed_regions().is_empty
    key(view, Qt.Key_N)  # the first counts as reviewed: it drops off
    assert item not in review.items and len(review.items) == len(first_list) - 1
    assert view.document.reviewed_regions().equals(box(x, y, x + w, y + h))  # recorded in the document
    if review.items:
        assert review.current is review.items[0]
    key(view, Qt.Key_N, Qt.ShiftModifier)  # back: it returns
    assert review.current == item and review.items[0] == item
    assert view.document.reviewed_regions().is_empty
    key(view, Qt.Key_N)  # reviewed again, then the slide is closed and opened again
    assert view.document.reviewed_regions().equals(box(x, y, x + w, y + h))
    assert window.close_tab(window.tabs.indexOf(view), force=True)
    view = open_and_wait(qtbot, window, synth.slide_path)
    assert view.document.reviewed_regions().equals(box(x, y, x + w, y + h))  # read from beside the marks
    with qtbot.waitSignal(review.listed, timeout=20000):
        view.document.prediction.grid = three_region_grid(view.reader.dimensions)
        review.set_view(view)
        review.compute()
    assert item not in review.items and len(review.items) == len(first_list) - 1  # still off the list


def test_right_click_on_a_draft_accepts_or_rejects_it(qtbot, window, synth):
    from tests.gui.test_mark_classes import right_click

    view = open_and_wait(qtbot, window, synth.slide_path)
    draft = proposed(qtbot, window, view)[0]
    c = draft.geometry.representative_point()
    right_click(view, screen(view, c.x, c.y))
    actions = {a.text(): a for a in view.context_menu.actions() if a.text()}
    assert {"Accept (A)", "Reject (R)", "Tumour", "Delete"} <= set(actions)
    actions["Reject (R)"].trigger()
    assert view.annotations.get(draft.id).class_name == "Benign"
    view.context_menu.close()
