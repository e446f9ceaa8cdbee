"""The slide view driven with real Qt events, offscreen, on in-memory slides with known pixels."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PyQt5.QtCore import QPoint, Qt
from PyQt5.QtGui import QColor

from conftest import coordinate_image
from qt_events import drag, wheel
from tests.core.slide.test_slide_readers import rgb_profile
from core.errors import SlideReadError
from core.slide.array_reader import ArrayReader
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory


class SlowReader(ArrayReader):
    """Level-0 reads take ``delay`` seconds, or wait until ``gate`` is set; counts every read per level."""

    def __init__(self, *args, delay=0.05, fail_rect=None, gate: threading.Event | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay, self.gate = delay, gate
        self.fail_rect = fail_rect
        self.reads: dict[int, int] = {}
        self._count_lock = threading.Lock()

    def _read_region_raw(self, l0_x, l0_y, level, lv_w, lv_h):
        with self._count_lock:
            self.reads[level] = self.reads.get(level, 0) + 1
        if level == 0 and self.gate is not None:
            assert self.gate.wait(60), "the test never opened the gate"
        elif level == 0:
            time.sleep(self.delay)
        if self.fail_rect and level == 0:
            fx, fy, fw, fh = self.fail_rect
            if l0_x < fx + fw and fx < l0_x + lv_w and l0_y < fy + fh and fy < l0_y + lv_h:
                raise SlideReadError(self.path, f"corrupt JPEG data in tile at ({l0_x}, {l0_y})")
        return super()._read_region_raw(l0_x, l0_y, level, lv_w, lv_h)


@pytest.fixture
def make_view(qtbot):
    views = []

    def make(reader, size=(800, 600), mpp=(0.5, 0.5)):
        view = SlideView(reader, TileMemory(64 * 1024 * 1024), mpp, workers=2)
        qtbot.addWidget(view)
        view.resize(*size)
        view.show()
        qtbot.waitExposed(view)
        views.append(view)
        return view

    yield make
    for view in views:
        view.close_view()


def pixel(view, x, y) -> tuple[int, int, int]:
    color = QColor(view.grab().toImage().pixel(x, y))
    return color.red(), color.green(), color.blue()


def test_shows_exact_pixels_at_full_resolution(make_view, qtbot):
    reader = ArrayReader(coordinate_image(3000, 2000), mpp=(0.5, 0.5), objective_power=20)
    view = make_view(reader)
    with qtbot.waitSignal(view.sharp, timeout=5000):
        view.set_viewport(view.viewport.centred_on(1500.0, 1000.0, 1.0))
    # the screen centre (400, 300) shows level-0 pixel (1500, 1000)
    l0_x, l0_y = view.viewport.screen_to_l0(400, 300)
    assert (int(l0_x), int(l0_y)) == (1500, 1000)
    expected = tuple(int(v) for v in reader.read_region(1500, 1000, 0, 1, 1)[0, 0])
    assert pixel(view, 400, 300) == expected
    assert view.magnification == pytest.approx(20)


def test_opens_fitted_and_uses_a_coarse_level(make_view, qtbot):
    reader = SlowReader(coordinate_image(4000, 3000), delay=0.0)
    view = make_view(reader)
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp() and view.slide_layer.overview is not None, timeout=5000)
    x, y, w, h = view.viewport.visible_l0_rect()
    assert x <= 0 and y <= 0 and x + w >= 4000 and y + h >= 3000
    assert reader.reads.get(0, 0) == 0  # the fitted view never touched full resolution


def test_wheel_zooms_about_the_cursor(make_view, qtbot):
    view = make_view(ArrayReader(coordinate_image(4000, 3000)))
    before_scale = view.viewport.scale
    anchor = view.viewport.screen_to_l0(200, 150)
    wheel(view, QPoint(200, 150), 2)
    assert view.viewport.scale == pytest.approx(before_scale * 1.25**2)
    assert view.viewport.screen_to_l0(200, 150) == pytest.approx(anchor)


def test_drag_and_keys_pan(make_view, qtbot):
    view = make_view(ArrayReader(coordinate_image(4000, 3000)))
    view.set_viewport(view.viewport.centred_on(2000, 1500, 1.0))
    drag(view, QPoint(400, 300), QPoint(300, 250))
    assert (view.viewport.l0_cx, view.viewport.l0_cy) == pytest.approx((2100, 1550))
    qtbot.keyClick(view, Qt.Key_Left)
    assert view.viewport.l0_cx == pytest.approx(2100 - 800 * 0.15)
    qtbot.keyClick(view, Qt.Key_Plus)
    assert view.viewport.scale == pytest.approx(1.25)
    # middle-button drag pans whatever tool is active
    drag(view, QPoint(400, 300), QPoint(400, 200), button=Qt.MiddleButton)
    assert view.viewport.l0_cy == pytest.approx(1550 + 100 / 1.25)


def test_minimap_click_moves_the_view(make_view, qtbot):
    view = make_view(ArrayReader(coordinate_image(4000, 2000)))
    qtbot.waitUntil(lambda: view.minimap.isVisible(), timeout=5000)
    view.set_viewport(view.viewport.centred_on(100, 100, 1.0))
    mm = view.minimap
    qtbot.mouseClick(mm, Qt.LeftButton, pos=QPoint(2 + (mm.width() - 4) * 3 // 4, 2 + (mm.height() - 4) // 2))
    assert view.viewport.l0_cx == pytest.approx(3000, abs=4000 / mm.width() * 2)
    assert view.viewport.l0_cy == pytest.approx(1000, abs=2000 / mm.height() * 2)


def test_coarser_level_drawn_until_fine_tiles_arrive(make_view, qtbot):
    reader = SlowReader(coordinate_image(4000, 3000), delay=0.4)
    view = make_view(reader)
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp() and view.slide_layer.overview is not None, timeout=5000)
    view.set_viewport(view.viewport.centred_on(2000, 1500, 1.0))
    assert not view.slide_layer.is_sharp()
    r, g, b = pixel(view, 400, 300)  # drawn from a coarser level: close to the true colour, not background
    assert abs(r - 2000 % 256) <= 12 and abs(g - 1500 % 256) <= 12
    with qtbot.waitSignal(view.sharp, timeout=10000):
        pass
    assert pixel(view, 400, 300) == (2000 % 256, 1500 % 256, (2000 // 256 + 1500 // 256) % 256)


def test_stale_requests_are_dropped_when_the_view_moves(make_view, qtbot):
    """Full-resolution reads are held until the flight ends, so whatever the machine's speed the loaders are
    busy all along: tiles the view has left must be dropped from the queue, not read later."""
    gate = threading.Event()
    reader = SlowReader(coordinate_image(20000, 4000), gate=gate)
    view = make_view(reader)
    qtbot.waitUntil(lambda: view.slide_layer.overview is not None, timeout=5000)
    requested = set()
    for step in range(30):  # fly across the slide at full resolution
        view.set_viewport(view.viewport.centred_on(500 + step * 600, 2000, 1.0))
        _, visible, _ = view.slide_layer.grid.plan("x", view.viewport, prefetch=False)
        requested |= {(k.col, k.row) for k in visible}
        qtbot.wait(5)
    with qtbot.waitSignal(view.sharp, timeout=10000):
        gate.set()
    assert reader.reads.get(0, 0) < len(requested) / 2, (reader.reads, len(requested))
    assert view.slide_layer.is_sharp()


def test_corrupt_region_is_reported_and_the_rest_still_shows(make_view, qtbot):
    reader = SlowReader(coordinate_image(3000, 2000), delay=0.0, fail_rect=(1024, 512, 10, 10), path="/x/broken.svs")
    view = make_view(reader)
    messages = []
    view.slide_layer.tile_error.connect(messages.append)
    view.set_viewport(view.viewport.centred_on(1100, 600, 1.0))
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp() and bool(messages), timeout=5000)
    assert "broken.svs" in messages[0] and "corrupt" in messages[0]
    assert view.slide_layer.failed_count >= 1
    sx, sy = view.viewport.l0_to_screen(1100, 600)
    r, g, b = pixel(view, int(sx), int(sy))
    assert r > 180 and g < 240  # hatched red marks the unreadable tile
    sx, sy = view.viewport.l0_to_screen(900, 600)  # a neighbouring tile is intact
    assert pixel(view, int(sx), int(sy)) == (900 % 256, 600 % 256, (900 // 256 + 600 // 256) % 256)
    sx, sy = view.viewport.l0_to_screen(1300, 600)  # and so is the rest of the damaged tile
    assert pixel(view, int(sx), int(sy)) == (1300 % 256, 600 % 256, (1300 // 256 + 600 // 256) % 256)


def test_grid_and_scale_bar_draw(make_view, qtbot):
    white = np.full((2000, 3000, 3), 255, np.uint8)
    view = make_view(ArrayReader(white), mpp=(0.5, 0.5))
    view.set_viewport(view.viewport.centred_on(1500, 1000, 1.0))
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp() and view.minimap.isVisible(), timeout=5000)
    # a row below the overview map and above the scale bar
    img = view.grab().toImage()
    row = [QColor(img.pixel(x, 300)).red() for x in range(0, 800)]
    assert min(row) > 250  # no grid yet
    view.grid_layer.visible = True
    img = view.grab().toImage()
    row = [QColor(img.pixel(x, 300)).red() for x in range(0, 800)]
    dark = [x for x, v in enumerate(row) if v < 200]
    assert len(dark) >= 3  # vertical grid lines cross the row
    spacing_l0 = view.grid_layer.spacing_l0(view.viewport)
    assert spacing_l0 * 0.5 in (50, 100, 200, 500)  # round µm
    # scale bar: dark bar in the bottom-left box
    bar_row = [QColor(img.pixel(x, 600 - 18)).red() for x in range(20, 60)]
    assert min(bar_row) < 60


def test_colour_profile_toggle_changes_pixels(make_view, qtbot):
    grey = np.full((1000, 1000, 3), 64, np.uint8)
    view = make_view(ArrayReader(grey, icc_profile=rgb_profile()))
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=5000)
    managed = pixel(view, 400, 300)
    assert managed[0] > 100  # linear-light 64 shown in sRGB is much brighter
    view.slide_layer.set_apply_icc(False)
    qtbot.waitUntil(view.slide_layer.is_sharp, timeout=5000)
    assert pixel(view, 400, 300) == (64, 64, 64)
