"""The Annotations panel on a slide without marks, counts that leave hidden classes out, and a selection that shows."""

from __future__ import annotations

import numpy as np
from PyQt5.QtCore import Qt
from shapely.geometry import box

from core.annotations.model import Annotation
from tests.gui.test_heatmap_layer import pixels


def test_a_slide_without_marks_offers_its_classes_at_once(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    dock = window.annotate.dock
    assert len(view.annotations) == 0
    names = [c.name for c in view.annotations.classes]
    assert [dock.class_combo.itemText(i) for i in range(dock.class_combo.count())] == names
    assert dock.class_combo.currentText() == view.current_class != ""  # "Draw as" is not blank
    assert list(dock.class_checks) == names  # the class filters are there before the first mark
    assert dock.count_label.text() == "No marks yet"


def test_the_count_leaves_hidden_classes_out(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    dock = window.annotate.dock
    marks = [Annotation(box(100, 100, 600, 600), "Tumour"), Annotation(box(900, 900, 1400, 1400), "Benign")]
    view.apply_edit(view.annotations.replace_all(marks, "Mark"))
    qtbot.waitUntil(lambda: dock.count_label.text() == "2 of 2 marks shown", timeout=3000)
    dock.class_checks["Tumour"].click()  # a real click: Tumour hidden
    assert "Tumour" in view.annotation_layer.hidden_classes
    qtbot.waitUntil(lambda: dock.count_label.text() == "1 of 2 marks shown", timeout=3000)
    dock.class_checks["Tumour"].click()
    qtbot.waitUntil(lambda: dock.count_label.text() == "2 of 2 marks shown", timeout=3000)


def test_a_selected_mark_is_unmistakable(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    mark = Annotation(box(1000, 800, 3000, 2200), "Tumour")
    view.apply_edit(view.annotations.replace_all([mark], "Mark"))
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=15000)
    before = pixels(view.grab().toImage())
    view.selection = {mark.id}
    after = pixels(view.grab().toImage())
    cx, cy = (int(v) for v in view.viewport.l0_to_screen(2000, 1500))
    assert np.abs(after[cy, cx] - before[cy, cx]).max() >= 15  # the whole mark is lifted, not just its edge
    ex, ey = (int(v) for v in view.viewport.l0_to_screen(1000, 1500))  # its left edge
    edge = after[ey - 6:ey + 7, ex - 6:ex + 7].reshape(-1, 3)  # longer than a dash gap
    assert (edge.max(axis=1) < 60).any() and (edge.min(axis=1) > 230).any()  # a dark halo and white dashes
    changed = np.any(np.abs(after - before) > 10, axis=2).sum()
    assert changed > 0.5 * (2000 * 1400) * view.viewport.scale ** 2  # most of the mark looks different
