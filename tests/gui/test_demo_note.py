"""The Prediction panel says what the demo model is, in core.demo's words, wrapped to read in the dock."""

from __future__ import annotations

import pytest
from PyQt5.QtGui import QFontMetrics

from core.demo import DEMO_MODEL, DEMO_MODEL_STATEMENT


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_demo_model_note_is_core_demos_statement_wrapped_inside_the_dock(qtbot, make_window, open_view,
                                                                            synthetic_slide, small_model, size):
    window = make_window(size)
    open_view(window, synthetic_slide.slide_path)
    dock = window.prediction_dock
    dock.show()
    dock.raise_()
    dock.set_model(DEMO_MODEL)
    note = dock.model_note
    # shown, and laid out at the height its wrapped text needs (no line cut off)
    qtbot.waitUntil(lambda: note.isVisible() and note.height() >= note.heightForWidth(note.width()) - 2,
                    timeout=5000)
    assert note.text() == DEMO_MODEL_STATEMENT  # one text for the card, the CLI and the window
    source = dock.heatmap.threshold_source.text()  # the window's words, not the command line's
    assert "records none" in source and "drag the slider" in source and "--threshold" not in source
    assert note.wordWrap()
    metrics = QFontMetrics(note.font())
    lines = note.height() / metrics.lineSpacing()
    assert 3 <= lines <= 24, lines  # wrapped over several lines (21 in the 1280 px window's narrow panel)
    per_char = metrics.horizontalAdvance(DEMO_MODEL_STATEMENT) / len(DEMO_MODEL_STATEMENT)
    assert note.contentsRect().width() >= 25 * per_char  # lines of 25 characters or more (27 at 1280 px)
    right = note.mapTo(dock, note.rect().topRight()).x()
    assert 0 < right <= dock.width(), (right, dock.width())  # inside the dock: no text cut at its edge

    dock.set_model(small_model)
    assert not note.isVisible()  # said of the demo model only


def test_choosing_another_model_by_set_model_applies_its_threshold(qtbot, window, open_view, synthetic_slide,
                                                                  small_model):
    from core.models.bundle import default_threshold, read_info

    open_view(window, synthetic_slide.slide_path)
    dock = window.prediction_dock
    dock.set_model(DEMO_MODEL)
    dock.set_model(small_model)
    assert dock.model_path() == small_model
    value, _ = default_threshold(read_info(small_model))
    assert dock.heatmap.threshold() == pytest.approx(value, abs=1e-6)
