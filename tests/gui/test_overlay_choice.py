"""One overlay family at a time: a grid shows the heatmap over the marks' outlines; A, H, D switch; Shift+F fills;
legend cards sit above the marks; the overlay colours stay apart."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtTest import QTest
from shapely.geometry import box

from core.annotations.model import BENIGN, TUMOUR, Annotation
from core.evaluation.compare import compare
from gui.layers.disagreement_layer import FALSE_NEGATIVE_COLOUR, FALSE_POSITIVE_COLOUR
from tests.gui.test_heatmap_layer import make_grid, pixels

WINDOW_SIZE = (1400, 900)


@pytest.fixture
def view(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    w, h = view.reader.dimensions
    whole = Annotation(box(0, 0, w, h), TUMOUR.name)  # a Tumour mark under everything, the legend cards too
    view.apply_edit(view.annotations.replace_all([whole], "Mark"))
    window.activateWindow()
    view.setFocus()
    return view


def key(view, k, modifier=Qt.NoModifier):
    QTest.keyClick(view, k, modifier)


def test_a_grid_arriving_shows_the_heatmap_over_the_marks_outlines(qtbot, window, view, synthetic_slide):
    assert view.overlay == "marks" and view.annotation_layer.fill and window.actions["overlay_marks"].isChecked()
    view.heatmap_layer.set_grid(make_grid(synthetic_slide))
    assert view.overlay == "heatmap" and view.heatmap_layer.visible
    assert view.annotation_layer.visible and not view.annotation_layer.fill  # outlines only: no red over yellow
    assert not view.disagreement_layer.visible
    assert window.actions["overlay_heatmap"].isChecked() and not window.actions["mark_fill"].isChecked()
    assert not window.annotate.dock.fill_check.isChecked()  # the Annotations panel says so too


def test_keys_switch_the_overlay_and_shift_f_fills_the_marks(qtbot, window, view, synthetic_slide):
    grid = make_grid(synthetic_slide)
    view.heatmap_layer.set_grid(grid)
    truth = np.where(np.isnan(grid.probs), -1, (grid.probs < 0.5).astype(np.int8)).astype(np.int8)
    view.disagreement_layer.set_comparison(compare(grid, truth, 0.5))
    assert not view.disagreement_layer.visible  # a comparison never shows itself

    key(view, Qt.Key_D)
    assert view.overlay == "disagreement" and view.disagreement_layer.visible and not view.heatmap_layer.visible
    assert not view.annotation_layer.fill and window.actions["overlay_disagreement"].isChecked()
    key(view, Qt.Key_K)
    assert view.overlay == "marks" and view.annotation_layer.fill
    assert not view.heatmap_layer.visible and not view.disagreement_layer.visible
    key(view, Qt.Key_H)
    assert view.overlay == "heatmap" and view.heatmap_layer.visible and not view.annotation_layer.fill
    key(view, Qt.Key_F, Qt.ShiftModifier)
    assert view.annotation_layer.fill and view.heatmap_layer.visible  # both, when asked for
    assert window.actions["mark_fill"].isChecked() and window.annotate.dock.fill_check.isChecked()
    key(view, Qt.Key_F, Qt.ShiftModifier)
    assert not view.annotation_layer.fill


def test_legend_cards_are_drawn_above_the_marks_fill(qtbot, window, view, synthetic_slide):
    grid = make_grid(synthetic_slide)
    view.heatmap_layer.set_grid(grid)
    truth = np.where(np.isnan(grid.probs), -1, (grid.probs < 0.5).astype(np.int8)).astype(np.int8)
    view.disagreement_layer.set_comparison(compare(grid, truth, 0.5))
    vp = view.viewport
    view.set_viewport(vp.centred_on(vp.l0_w / 2, vp.l0_h / 2, vp.fit_scale() * 3))  # the mark fills the view
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=15000)
    view.annotation_layer.set_options(fill=True, fill_opacity=0.6)
    for layer in (view.heatmap_layer, view.disagreement_layer):
        layer.visible = True
    shot = pixels(view.grab().toImage())
    w, h = view.width(), view.height()
    heat_card = (w - 222 + 4, h - 70 + 30)  # the heatmap card's left margin beside its colour bar
    disagreement_card = (12 + 214, 12 + 25)  # the disagreement card's right margin
    for x, y in (heat_card, disagreement_card):
        assert (shot[y, x] >= 245).all(), (x, y, shot[y, x])  # white, not tinted pink by the red fill beneath
    outside = shot[h // 2, w // 2]
    assert outside[0] - outside[2] > 20  # and the red fill is there elsewhere


def lab(rgb) -> np.ndarray:
    return cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2LAB)[0, 0].astype(float) * [100 / 255, 1, 1] - [0, 128, 128]


def test_the_overlay_colours_cannot_be_confused():
    colours = {"Tumour mark": TUMOUR.color, "Benign mark": BENIGN.color,
               "false positive": FALSE_POSITIVE_COLOUR.getRgb()[:3], "false negative": FALSE_NEGATIVE_COLOUR.getRgb()[:3]}
    names = list(colours)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            distance = np.linalg.norm(lab(colours[a]) - lab(colours[b]))
            assert distance >= 40, (a, b, distance)  # CIELAB ΔE: far apart, not shades of one colour
