"""Small things a reader notices: the actual magnification, the cursor in either pane, legend and scale bar apart."""

from __future__ import annotations

import pytest
from PyQt5.QtCore import QPoint, QPointF, Qt
from PyQt5.QtGui import QMouseEvent
from PyQt5.QtWidgets import QApplication

from core.view.viewport import Viewport
from gui.layers.heatmap_layer import HeatmapLayer
from gui.overlays import SCALE_BAR_HEIGHT, SCALE_BAR_MARGIN, scale_bar_reach


def test_the_magnification_box_says_the_actual_magnification_off_the_presets(qtbot, window, open_view,
                                                                           synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    view.set_magnification(10)
    assert window.mag_combo.currentText() == "10x"
    view.zoom_by(0.8)
    mag = view.magnification
    assert window.mag_combo.currentText() == f"{mag:.1f}x" != "—"  # not a dash: the status bar's figure
    view.set_magnification(20)
    assert window.mag_combo.currentText() == "20x" and window.mag_combo.itemText(0) == "—"


def move_mouse(widget, pos: QPoint) -> None:
    event = QMouseEvent(QMouseEvent.MouseMove, QPointF(pos), Qt.NoButton, Qt.NoButton, Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def test_the_right_pane_shows_the_cursor_position_too(qtbot, window, open_view, synthetic_slide):
    view = open_view(window, synthetic_slide.slide_path)
    window.actions["side_by_side"].trigger()
    split = window.tabs.currentWidget()
    right = split.secondary
    qtbot.waitUntil(lambda: right.width() > 100, timeout=5000)
    at = QPoint(right.width() // 2, right.height() // 2)
    move_mouse(right, at)
    l0_x, l0_y = right.viewport.screen_to_l0(at.x(), at.y())
    assert window.pos_label.text() == f"x {l0_x * view.mpp[0]:,.1f} µm  y {l0_y * view.mpp[1]:,.1f} µm"


@pytest.mark.parametrize("width", [320, 380, 460, 800])
def test_the_heatmap_legend_keeps_clear_of_the_scale_bar(width):
    vp = Viewport(4096, 3072, width, 500, 2048, 1536, 0.1)
    rect = HeatmapLayer.legend_rect(vp, 230)
    scale_top = vp.screen_h - SCALE_BAR_HEIGHT - 10
    beside = rect.left() >= scale_bar_reach(vp) + 8
    above = rect.bottom() <= scale_top - 2
    assert beside or above, (width, rect)
    assert SCALE_BAR_MARGIN <= rect.left() and rect.right() <= vp.screen_w - 12 + 0.5  # inside the pane
    if width >= 460:
        assert rect.bottom() == vp.screen_h - 12  # room for both: the legend stays in the corner



def test_the_grid_says_its_spacing(qtbot, window, open_view, synthetic_slide):
    from gui.layers.grid_layer import MIN_SPACING_PX
    from tests.gui.test_heatmap_layer import pixels

    view = open_view(window, synthetic_slide.slide_path)
    vp = view.viewport
    view.set_viewport(vp.centred_on(vp.l0_w / 2, vp.l0_h / 2, 0.5))  # the slide fills the view
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=15000)
    layer = view.grid_layer
    spacing = layer.spacing_l0(view.viewport)
    assert spacing * view.viewport.scale >= MIN_SPACING_PX
    assert layer.spacing_text(view.viewport) == f"grid {spacing * view.mpp[0]:g} µm"  # 0.5 µm/px: 200 µm
    base = pixels(view.grab().toImage())
    window.actions["grid"].trigger()
    assert layer.visible
    shot = pixels(view.grab().toImage())
    x, y = SCALE_BAR_MARGIN + 3, view.height() - SCALE_BAR_HEIGHT - 10 - 26 + 3  # the label's card, above the bar
    assert (shot[y, x] >= 252).all() and not (base[y, x] >= 252).all(), (shot[y, x], base[y, x])  # a white card


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_the_roc_plot_labels_0_and_1_on_both_axes(qtbot, make_window, size):
    from PyQt5.QtGui import QImage, QPainter

    window = make_window(size)
    dock = window.evaluation_dock
    dock.show()
    dock.raise_()
    qtbot.waitUntil(lambda: dock.roc_plot.isVisible() and dock.roc_plot.height() > 150, timeout=5000)
    qtbot.wait(20)  # laid out
    image = QImage(400, 400, QImage.Format_ARGB32)
    for side in ("left", "bottom"):
        axis = dock.roc_plot.getAxis(side)
        painter = QPainter(image)
        specs = axis.generateDrawSpecs(painter)
        painter.end()
        labels = {text for _rect, _flags, text in specs[2]}
        assert {"0.0", "1.0"} <= labels, (side, labels)
