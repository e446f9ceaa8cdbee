"""The slide image itself: multi-resolution tiles, coarser levels until fine ones arrive."""

from __future__ import annotations

import math

import numpy as np
from PyQt5.QtCore import QRectF, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QBrush, QColor, QImage, QPainter

from core.slide.base import SlideReader
from core.view.display_cache import TileGrid, TileKey, unique
from core.view.viewport import Viewport
from gui.layers.base import Layer
from gui.tile_loader import TileImage, TileLoader, TileMemory
from gui.worker import Worker

#: Longest side of the whole-slide overview kept in memory (fallback and minimap).
OVERVIEW_SIZE = 1024
#: While tiles stream in, repaint at most this often (ms); the last tile repaints at once.
REPAINT_BATCH_MS = 40


class SlideLayer(Layer):
    """Draws a :class:`SlideReader` through a shared tile cache.

    Signals ``overview_ready`` when the whole-slide overview has loaded, ``sharp`` whenever every tile the
    current view needs at its proper level is in (or failed), and ``tile_error(message)`` for
    regions that cannot be decoded.
    """

    overview_ready = pyqtSignal()
    sharp = pyqtSignal()
    tile_error = pyqtSignal(str)

    def __init__(self, reader: SlideReader, memory: TileMemory, workers: int = 2):
        super().__init__("Slide image")
        self.reader = reader
        self.cache = memory.cache
        self.grid = TileGrid(tuple(reader.level_dimensions), tuple(reader.level_downsamples), memory.tile_size)
        self.loader = TileLoader(reader, self.grid, memory, workers)
        self.loader.tile_loaded.connect(self._on_tile_loaded)
        self.loader.tile_failed.connect(self._on_tile_failed)
        self.overview: QImage | None = None
        self._overview_buffer: TileImage | None = None
        self._viewport: Viewport | None = None
        self._visible_keys: set[TileKey] = set()
        self._source = self._make_source()
        self._was_sharp = False
        self._repaint_timer = QTimer(self)
        self._repaint_timer.setSingleShot(True)
        self._repaint_timer.setInterval(REPAINT_BATCH_MS)
        self._repaint_timer.timeout.connect(self.changed)
        self._overview_worker = Worker(reader.get_thumbnail, (OVERVIEW_SIZE, OVERVIEW_SIZE))
        self._overview_worker.finished.connect(self._on_overview)
        self._overview_worker.failed.connect(lambda err: self.tile_error.emit(str(err)))
        self._overview_worker.start()

    # -- state ----------------------------------------------------------------
    def _make_source(self) -> str:
        return f"{self.reader.path}#{id(self.reader)}#icc={int(self.reader.apply_icc)}"

    def set_apply_icc(self, value: bool) -> None:
        """Switch colour management; tiles are re-read (the cache keys change)."""
        self.reader.apply_icc = value
        self._source = self._make_source()
        self.loader.forget_failures()
        if self._viewport is not None:
            self.viewport_changed(self._viewport)
        self.changed.emit()

    def is_sharp(self) -> bool:
        return all(self.cache.peek(k) is not None or k in self.loader.failed for k in self._visible_keys)

    @property
    def failed_count(self) -> int:
        """Tiles that could not be read in whole or in part (their damaged parts are drawn hatched)."""
        return len(self.loader.failed) + len(self.loader.partly_failed)

    # -- loading ----------------------------------------------------------------
    def viewport_changed(self, viewport: Viewport) -> None:
        self._viewport = viewport
        _level, visible, prefetch = self.grid.plan(self._source, viewport)
        self._visible_keys = set(visible)
        self._was_sharp = False
        self.loader.set_wanted(unique(visible + prefetch))
        self._check_sharp()

    def _on_tile_loaded(self, key: TileKey) -> None:
        if not self._check_sharp() and key in self._visible_keys and not self._repaint_timer.isActive():
            # Batch repaints while tiles stream in: painting after every tile would take
            # CPU from the loader threads on small machines.
            self._repaint_timer.start()

    def _on_tile_failed(self, key: TileKey, message: str) -> None:
        self.tile_error.emit(message)
        if not self._check_sharp():
            self.changed.emit()

    def _check_sharp(self) -> bool:
        """Emit ``sharp`` (and repaint at once) when the last visible tile arrived; True if so."""
        if not self._was_sharp and self._visible_keys and self.is_sharp():
            self._was_sharp = True
            self._repaint_timer.stop()
            self.changed.emit()
            self.sharp.emit()
            return True
        return False

    def _on_overview(self, rgb: np.ndarray) -> None:
        self._overview_buffer = TileImage(rgb)
        self.overview = self._overview_buffer.image
        self.overview_ready.emit()
        self.changed.emit()

    def stop(self) -> None:
        """Stop reading (overview and tiles); what is cached stays for other views of the reader."""
        self._overview_worker.cancel()
        self.loader.shutdown()

    def dispose(self) -> None:
        self.stop()
        self.cache.discard_where(lambda k: isinstance(k, TileKey) and k.source.split("#")[1] == str(id(self.reader)))

    # -- drawing ------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport) -> None:
        level, visible, _ = self.grid.plan(self._source, viewport, prefetch=False)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
        for key in visible:
            target = _screen_rect(viewport, self.grid.tile_l0_rect(key))
            tile = self.cache.get(key)
            if tile is not None:
                painter.drawImage(target, tile.image, QRectF(0, 0, tile.image.width(), tile.image.height()))
            elif key in self.loader.failed:
                self._paint_failed(painter, target)
            else:
                self._paint_fallback(painter, viewport, key, target)

    def _paint_fallback(self, painter: QPainter, viewport: Viewport, key: TileKey, target: QRectF) -> None:
        """Draw the tile's area from the finest coarser level already cached, else the overview."""
        l0_x, l0_y, l0_w, l0_h = self.grid.tile_l0_rect(key)
        for level in range(key.level + 1, self.reader.level_count):
            ds = self.grid.level_downsamples[level]
            span = self.grid.tile_size * ds
            coarse = TileKey(key.source, level, int(l0_x // span), int(l0_y // span))
            tile = self.cache.peek(coarse)
            if tile is None:
                continue
            src = QRectF(l0_x / ds - coarse.col * self.grid.tile_size, l0_y / ds - coarse.row * self.grid.tile_size,
                         l0_w / ds, l0_h / ds)
            painter.drawImage(target, tile.image, src)
            return
        if self.overview is not None:
            sx = self.overview.width() / self.reader.dimensions[0]
            sy = self.overview.height() / self.reader.dimensions[1]
            painter.drawImage(target, self.overview, QRectF(l0_x * sx, l0_y * sy, l0_w * sx, l0_h * sy))

    @staticmethod
    def _paint_failed(painter: QPainter, target: QRectF) -> None:
        painter.fillRect(target, QColor(255, 235, 235))
        painter.fillRect(target, QBrush(QColor(200, 40, 40, 120), Qt.BDiagPattern))


def _screen_rect(viewport: Viewport, l0_rect: tuple[float, float, float, float]) -> QRectF:
    """Screen rectangle of a level-0 rectangle, edges rounded so neighbouring tiles meet exactly."""
    l0_x, l0_y, l0_w, l0_h = l0_rect
    x0, y0 = viewport.l0_to_screen(l0_x, l0_y)
    x1, y1 = viewport.l0_to_screen(l0_x + l0_w, l0_y + l0_h)
    x0, y0, x1, y1 = math.floor(x0 + 0.5), math.floor(y0 + 0.5), math.floor(x1 + 0.5), math.floor(y1 + 0.5)
    return QRectF(x0, y0, max(1, x1 - x0), max(1, y1 - y0))
