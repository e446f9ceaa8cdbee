"""Thresholds in the window: applied exactly, written with the digits that matter, and marked on the colour bar."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QImage

from core.inference.predict import ProbabilityGrid
from gui.layers.heatmap_legend import THRESHOLD_COLOUR, heatmap_legend_image
from gui.threshold_text import threshold_text


@pytest.mark.parametrize("value, text", [(0.0, "0"), (1.0, "1"), (0.5, "0.5"), (0.43712, "0.4371"),
                                         (0.0033123, "0.0033"), (0.003, "0.003"), (0.00033, "0.00033"),
                                         (0.99953, "0.99953"), (0.95, "0.95")])
def test_threshold_text_keeps_two_significant_digits_of_the_value_and_of_its_distance_to_one(value, text):
    assert threshold_text(value) == text


def rgb(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    bgra = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()]
    return bgra[..., [2, 1, 0]].astype(int)


def marker_x(image: QImage) -> float:
    """Mean column of the threshold marker's red pixels."""
    pixels = rgb(image)
    red = np.array([THRESHOLD_COLOUR.red(), THRESHOLD_COLOUR.green(), THRESHOLD_COLOUR.blue()])
    ys, xs = np.nonzero(np.abs(pixels - red).max(axis=2) <= 40)
    assert xs.size, "no threshold marker"
    return float(xs.mean())


@pytest.fixture
def dock(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    grid = ProbabilityGrid(probs=np.full((6, 8), 0.7, np.float32), origin=(0, 0), stride=512, tile_l0=512,
                           tile_px=64, mpp=4.0, slide_size=view.reader.dimensions)
    view.heatmap_layer.set_grid(grid)
    dock = window.prediction_dock
    dock.show()
    dock.raise_()
    return dock


def test_a_threshold_set_is_applied_exactly_and_shown_with_its_digits(qtbot, dock):
    view = dock.heatmap.view
    dock.set_threshold(0.0033123, "for sensitivity 0.95")
    assert dock.threshold() == 0.0033123 and view.heatmap_layer.threshold == pytest.approx(0.0033123)
    box = dock.heatmap.threshold_box
    assert box.text() == "0.0033"  # not 0.003: typing back what is shown gives the threshold offered
    assert box.isVisible() and box.width() >= box.fontMetrics().horizontalAdvance("0.00033") + 10
    box.selectAll()
    qtbot.keyClicks(box, "0.00047")
    qtbot.keyClick(box, Qt.Key_Return)
    assert dock.threshold() == pytest.approx(0.00047, abs=1e-12) and box.text() == "0.00047"
    assert dock.heatmap.threshold_source.text() == "0.00047: set by hand"


def test_the_panels_colour_bar_marker_follows_the_threshold(qtbot, dock):
    legend = dock.heatmap.legend
    xs = {}
    for value in (0.2, 0.8, 0.5):
        dock.set_threshold(value)
        xs[value] = marker_x(legend.pixmap().toImage())
    width = legend.pixmap().width()
    assert xs[0.2] < xs[0.5] < xs[0.8]
    assert (xs[0.8] - xs[0.2]) == pytest.approx(0.6 * (width - 8), abs=3)  # the bar spans the card less its padding
    qtbot.mouseClick(dock.heatmap.threshold_slider, Qt.LeftButton,
                     pos=dock.heatmap.threshold_slider.rect().center())  # the user's slider: the marker follows too
    assert marker_x(legend.pixmap().toImage()) == pytest.approx(4 + dock.threshold() * (width - 8), abs=3)


def test_the_view_legend_writes_the_threshold_with_its_digits(qapp):
    title = slice(0, 24)  # the titled card's first row: "Tumour probability … shown ≥ T"
    a, b = (rgb(heatmap_legend_image(260, 70, "viridis", t))[title] for t in (0.0033, 0.0047))
    assert np.abs(a - b).max() > 60  # 0.0033 and 0.0047 read differently (both were "0.00")
    c, d = (rgb(heatmap_legend_image(260, 70, "viridis", t))[title] for t in (0.5, 0.5))
    assert np.array_equal(c, d)
