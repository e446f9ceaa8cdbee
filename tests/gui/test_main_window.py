"""The main window offscreen: opening real slides, tabs, docks, errors, privacy, preferences."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from PyQt5.QtCore import QMimeData, QPoint, Qt, QUrl
from PyQt5.QtGui import QColor, QDropEvent

from gui.main_window import MainWindow
from gui.slide_view import SlideView


def open_and_wait(qtbot, win, path) -> SlideView:
    with qtbot.waitSignal(win.slide_opened, timeout=20000) as blocker:
        win.open_slide(path)
    view = blocker.args[0]
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp() and view.slide_layer.overview is not None, timeout=20000)
    return view


def test_opens_the_cmu_slide_with_its_metadata(qtbot, window, cmu_svs):
    view = open_and_wait(qtbot, window, cmu_svs)
    assert window.tabs.tabText(window.tabs.currentIndex()) == "CMU-1-Small-Region.svs"
    assert window.info_dock.value_of("Size") == "2220 x 2967 px"
    assert window.info_dock.value_of("Objective") == "20x"
    assert "0.499" in window.info_dock.value_of("Resolution")
    assert "aperio" in window.info_dock.value_of("Format")
    assert window.mpp_label.text() == ""  # resolution known: no warning
    window.set_magnification(10)
    assert view.magnification == pytest.approx(10)
    assert window.mag_label.text() == "10.0x"
    assert window.mag_combo.currentText() == "10x"
    # status bar shows the cursor in micrometres
    view.cursor_moved.emit((1000.0, 2000.0))
    assert window.pos_label.text() == "x 499.0 µm  y 998.0 µm"
    # the tissue is on screen: the view centre is not the grey background
    img = view.grab().toImage()
    centre = QColor(img.pixel(view.width() // 2, view.height() // 2))
    assert (centre.red(), centre.green(), centre.blue()) != (218, 218, 222)


def test_label_and_macro_hidden_until_asked(qtbot, window, cmu_svs, tmp_path):
    open_and_wait(qtbot, window, cmu_svs)
    assert not window.associated_dock.isVisible()
    assert window.associated_dock.shown_names == []  # not even read
    window.associated_dock.show()
    qtbot.waitUntil(lambda: "label" in window.associated_dock.shown_names, timeout=5000)
    assert "macro" in window.associated_dock.shown_names
    # a window screenshot leaves the dock out unless chosen, and the dock stays open
    with_dock = window.grab_window(include_associated=True)
    without = window.grab_window(include_associated=False)
    assert window.associated_dock.isVisible()
    assert with_dock != without


def test_several_slides_in_tabs_and_recent_files(qtbot, window, cmu_svs, shared_slides, tmp_path):
    open_and_wait(qtbot, window, cmu_svs)
    copy = tmp_path / "boxes.tiff"
    shutil.copy(shared_slides / "boxes.tiff", copy)
    open_and_wait(qtbot, window, copy)
    assert len(window.views()) == 2
    assert window.prefs.recent_files()[:2] == [str(copy), str(cmu_svs.resolve())]
    assert [a.text() for a in window.recent_menu.actions()[:2]] == ["boxes.tiff", "CMU-1-Small-Region.svs"]
    # opening the same file again switches to its tab
    window.tabs.setCurrentIndex(0)
    with qtbot.waitSignal(window.slide_opened, timeout=5000):
        window.open_slide(copy)
    assert len(window.views()) == 2 and window.current_view().reader.path == copy
    window.close_current()
    assert len(window.views()) == 1
    window.close_current()
    assert window.views() == [] and window.tabs.widget(0) is window.welcome


@pytest.mark.parametrize("maker", ["missing", "text", "truncated", "directory"])
def test_bad_files_give_a_message_naming_the_file(qtbot, window, cmu_svs, tmp_path, maker):
    if maker == "missing":
        path = tmp_path / "nowhere.svs"
    elif maker == "text":
        path = tmp_path / "notes.svs"
        path.write_text("this is not a slide")
    elif maker == "truncated":
        path = tmp_path / "cut.svs"
        path.write_bytes(cmu_svs.read_bytes()[:5000])
    else:
        path = tmp_path / "folder.tiff"
        path.mkdir()
    with qtbot.waitSignal(window.open_failed, timeout=20000) as blocker:
        window.open_slide(path)
    failed_path, message = blocker.args
    assert path.name in message
    assert window.errors and path.name in window.errors[-1]
    assert window.views() == []  # nothing half-open


def test_drop_opens_files(qtbot, window, cmu_svs):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cmu_svs))])
    event = QDropEvent(QPoint(100, 100), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(window.slide_opened, timeout=20000):
        window.dropEvent(event)
    assert window.current_view().reader.path.name == cmu_svs.name


def test_unknown_resolution_is_said_and_can_be_entered(qtbot, window, tmp_path):

    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), np.full((600, 800, 3), 200, np.uint8))
    view = open_and_wait(qtbot, window, png)
    assert view.mpp is None
    assert "unknown" in window.mpp_label.text()
    assert "unknown" in window.info_dock.value_of("Resolution")
    window.set_slide_mpp(view, (0.25, 0.25))
    assert window.mpp_label.text() == ""
    assert "entered by you" in window.info_dock.value_of("Resolution")
    # remembered for this slide across windows
    other = MainWindow()
    qtbot.addWidget(other)
    other.show()
    view2 = open_and_wait(qtbot, other, png)
    assert view2.mpp == (0.25, 0.25)
    other.close()


def test_layers_dock_controls_layers(qtbot, window, cmu_svs):
    view = open_and_wait(qtbot, window, cmu_svs)
    check, slider = window.layers_dock.rows["Grid"]
    assert not view.grid_layer.visible
    check.setChecked(True)
    assert view.grid_layer.visible
    slider.setValue(30)
    assert view.grid_layer.opacity == pytest.approx(0.3)
    _, slide_slider = window.layers_dock.rows["Slide image"]
    slide_slider.setValue(50)
    assert view.slide_layer.opacity == pytest.approx(0.5)


def test_the_window_fits_a_small_screen(window):
    """Every dock can shrink (scrolling its content), so the window fits 1200 x 800 with all panels."""
    hint = window.minimumSizeHint()
    assert hint.width() <= 1200 and hint.height() <= 800, hint
