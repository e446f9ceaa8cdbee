"""Side by side: two synchronised panes (heatmap | marks), the overlay mode, and the disagreement regions."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt5.QtCore import QPoint, Qt

from core.annotations.formats import read_annotations
from core.evaluation.compare import compare
from core.inference.predict import ProbabilityGrid
from gui.docks.disagreement_list import DisagreementList, region_text
from gui.layers.disagreement_layer import FALSE_NEGATIVE_COLOUR, FALSE_POSITIVE_COLOUR
from gui.layers.heatmap_layer import colour_at
from gui.slide_view import SlideView
from gui.split_view import SplitView
from tests.qt_events import wheel
from tests.gui.test_heatmap_layer import BENIGN_P, TUMOUR_P, blend, cell_centre_px, interior_cell, make_grid, pixels

WINDOW_SIZE = (1400, 800)
TIMEOUT = 15000


@pytest.fixture(scope="module")
def grid(synthetic_slide):
    return make_grid(synthetic_slide)


def split(qtbot, win) -> SplitView:
    win.actions["side_by_side"].trigger()
    widget = win.tabs.currentWidget()
    assert isinstance(widget, SplitView)
    for pane in (widget.primary, widget.secondary):
        pane.heatmap_layer.show_legend = pane.disagreement_layer.show_legend = False
    settle(qtbot, widget)
    return widget


def settle(qtbot, widget: SplitView) -> None:
    qtbot.waitUntil(lambda: widget.primary.slide_layer.is_sharp() and widget.secondary.slide_layer.is_sharp(),
                    timeout=TIMEOUT)


def same_place(a: SlideView, b: SlideView) -> bool:
    va, vb = a.viewport, b.viewport
    return (va.l0_cx, va.l0_cy, va.scale) == pytest.approx((vb.l0_cx, vb.l0_cy, vb.scale))


def test_panes_pan_and_zoom_together(qtbot, window, synthetic_slide, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    widget = split(qtbot, window)
    assert widget.primary is view and window.current_view() is view and window.views() == [view]
    other = widget.secondary
    assert other.reader is view.reader and other.annotations is view.annotations
    assert same_place(view, other)

    view.zoom_by(2.0)
    view.pan_by(120, -40)
    assert same_place(view, other)
    calls = []
    view.viewport_changed.connect(calls.append)
    wheel(other, QPoint(100, 100), 120)  # a real wheel notch on the right pane zooms both, once
    assert same_place(view, other) and len(calls) == 1
    qtbot.mouseClick(other, Qt.LeftButton)  # the right pane is a view to look at: no tool edits there
    assert len(view.annotations) == 0

    widget.set_mode("overlay")
    assert not other.isVisible() and view.heatmap_layer.visible and view.annotation_layer.visible
    view.pan_by(-50, 0)
    widget.set_mode("split")
    assert other.isVisible() and same_place(view, other)

    window.actions["side_by_side"].trigger()  # back to one view: the tab holds the view itself
    assert window.tabs.currentWidget() is view and window.current_view() is view
    assert not window.actions["side_by_side"].isChecked()


def test_each_pane_shows_its_content(qtbot, window, synthetic_slide, grid, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    marks = read_annotations(synthetic_slide.geojson_path).annotations
    view.apply_edit(view.annotations.replace_all(marks, "Import"))
    view.heatmap_layer.set_grid(grid)
    widget = split(qtbot, window)
    view.heatmap_layer.set_opacity(0.5)  # after the Prediction dock gave the view its settings
    view.heatmap_layer.set_threshold(0.0)
    other = widget.secondary
    assert (widget.content("left"), widget.content("right")) == ("Heatmap", "Marks")
    widget.set_content("left", "Slide")
    widget.set_content("right", "Slide")
    settle(qtbot, widget)
    base = pixels(view.grab().toImage())
    assert np.abs(pixels(other.grab().toImage()).astype(int) - base).max() <= 2  # the same slide on both sides

    widget.set_content("left", "Heatmap")
    widget.set_content("right", "Marks")
    left, right = pixels(view.grab().toImage()), pixels(other.grab().toImage())
    tumour = cell_centre_px(view, grid, *interior_cell(grid, TUMOUR_P))
    benign = cell_centre_px(view, grid, *interior_cell(grid, BENIGN_P))
    for (x, y), p in ((tumour, TUMOUR_P), (benign, BENIGN_P)):
        heat = blend(base[y, x], colour_at("viridis", p), 0.5)
        assert np.abs(left[y, x] - heat).max() <= 4  # heatmap colours on the left
        assert np.abs(right[y, x] - heat).max() > 20  # and not on the right
    x, y = tumour
    assert right[y, x][0] - right[y, x][2] > base[y, x][0] - base[y, x][2] + 10  # a red Tumour fill on the right
    x, y = benign
    assert np.abs(right[y, x] - base[y, x]).max() <= 2  # no mark on benign tissue
    assert np.abs(left[y, x] - base[y, x]).max() > 10

    edit_calls = []
    other.annotation_layer.changed.connect(lambda: edit_calls.append(1))
    view.apply_edit(view.annotations.replace_all([], "Clear"))  # an edit on the left shows on the right
    assert edit_calls and len(other.annotations) == 0
    right = pixels(other.grab().toImage())
    x, y = tumour
    assert np.abs(right[y, x] - base[y, x]).max() <= 2

    widget.set_mode("overlay")  # one view with both: the doctors' outlines over the heatmap
    view.apply_edit(view.annotations.replace_all(marks, "Import"))
    overlay = pixels(view.grab().toImage())
    assert np.abs(overlay[y, x] - left[y, x]).max() <= 4  # inside the mark: the heatmap, unfilled
    red = lambda img: int(np.sum((img[..., 0] > 170) & (img[..., 1] < 70) & (img[..., 2] < 70)))  # noqa: E731
    assert red(overlay) > 50 and red(left) < 5  # the marks' red outline
    assert not view.annotation_layer.fill
    widget.set_mode("split")
    assert view.annotation_layer.fill  # the marks' own setting back


def test_disagreement_regions_sorted_and_clickable(qtbot, window, synthetic_slide, grid, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    probs = grid.probs.copy()
    truth = np.where(np.isnan(probs), -1, (probs > 0.5).astype(np.int8)).astype(np.int8)
    fn_r, fn_c = interior_cell(grid, TUMOUR_P)
    probs[fn_r, fn_c] = 0.2  # one tile missed
    benign = np.argwhere(probs == np.float32(BENIGN_P))
    far = benign[np.argmax(np.abs(benign - [fn_r, fn_c]).sum(1))]
    for dr, dc in ((0, 0), (0, 1), (1, 0)):  # three tiles called tumour where the doctors saw none
        if probs[far[0] + dr, far[1] + dc] == np.float32(BENIGN_P):
            probs[far[0] + dr, far[1] + dc] = 0.8
    planted = ProbabilityGrid(probs=probs, origin=grid.origin, stride=grid.stride, tile_l0=grid.tile_l0,
                              tile_px=grid.tile_px, mpp=grid.mpp, slide_size=grid.slide_size)
    comparison = compare(planted, truth, 0.5)
    view.heatmap_layer.set_grid(planted)
    widget = split(qtbot, window)
    assert widget.regions.isHidden()  # nothing to list yet
    view.disagreement_layer.set_comparison(comparison)  # as the Evaluation dock does
    widget.set_content("left", "Disagreement")
    widget.set_content("right", "Heatmap")
    assert view.disagreement_layer.visible and not view.heatmap_layer.visible
    assert widget.secondary.heatmap_layer.visible and not widget.secondary.disagreement_layer.visible

    panel: DisagreementList = widget.regions
    assert panel.isHidden() and widget.regions_button.isEnabled()  # folded away: it never takes room by itself
    qtbot.mouseClick(widget.regions_button, Qt.LeftButton)  # asked for
    assert panel.isVisible() and panel.list.count() == len(comparison.regions) >= 2
    texts = [panel.list.item(i).text() for i in range(panel.list.count())]
    sizes = [r.tiles for r in panel.regions]
    assert sizes == sorted(sizes, reverse=True)
    assert texts[0] == region_text(panel.regions[0]) and texts[0].startswith("false positive, ")
    assert any(t.startswith("false negative, 1 tile, mean p 0.20") for t in texts)

    # the disagreement colours in the left pane at the planted tiles
    view.zoom_to_fit()  # the panes narrowed when the regions panel came
    settle(qtbot, widget)
    left = pixels(view.grab().toImage())
    for (r, c), colour in (((fn_r, fn_c), FALSE_NEGATIVE_COLOUR), (tuple(far), FALSE_POSITIVE_COLOUR)):
        x, y = cell_centre_px(view, planted, r, c)
        rgb = np.array([colour.red(), colour.green(), colour.blue()])
        assert np.abs(left[y, x] - rgb).max() < np.abs(left[y, x] - (rgb[::-1])).max()  # closer to its own colour

    row = texts.index(next(t for t in texts if t.startswith("false negative")))
    item = panel.list.item(row)
    qtbot.mouseClick(panel.list.viewport(), Qt.LeftButton, pos=panel.list.visualItemRect(item).center())
    region = panel.regions[row]
    assert (view.viewport.l0_cx, view.viewport.l0_cy) == pytest.approx(region.centre_l0)
    assert same_place(view, widget.secondary)
    x, y, w, h = region.bbox_l0
    visible = view.viewport.visible_l0_rect()
    assert visible[0] <= x and visible[1] <= y and x + w <= visible[0] + visible[2] and y + h <= visible[1] + visible[3]
    assert view.viewport.scale > widget.primary.viewport.fit_scale()  # zoomed in on it


def test_closing_a_split_tab_closes_both_panes(qtbot, window, synthetic_slide, open_view):
    view = open_view(window, synthetic_slide.slide_path)
    widget = split(qtbot, window)
    other = widget.secondary
    assert view.reader is other.reader
    window.close_tab(window.tabs.currentIndex())
    assert window.views() == [] and window.tabs.widget(0) is window.welcome
    assert not any(thread.is_alive() for thread in other.slide_layer.loader._threads)

    view = open_view(window, synthetic_slide.slide_path)  # closing the window with a split tab
    other = split(qtbot, window).secondary
    window.close()
    assert not any(thread.is_alive() for thread in other.slide_layer.loader._threads)
