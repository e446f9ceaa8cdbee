"""Loads display tiles on a bounded pool of threads, newest wishes first.

The view tells the loader which tiles it wants, in priority order, every
time it moves; anything no longer wanted is dropped before it is read.
"""

from __future__ import annotations

import threading
from collections import deque

import cv2
import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import QObject, pyqtSignal
from PyQt5.QtGui import QImage

from core.view.buffer_pool import BufferSlot, SlabPool
from core.errors import SlideError
from core.slide.base import SlideReader
from core.slide.overview import read_salvaged
from core.view.display_cache import DEFAULT_CACHE_BYTES, DEFAULT_TILE_SIZE, TileCache, TileGrid, TileKey
from core.threads import lower_this_thread


class TileImage:
    """A decoded tile ready to paint: a QImage over a BGRA buffer it keeps alive.

    With a ``pool`` the buffer is a recycled pool slot, returned by :meth:`release`.
    """

    __slots__ = ("image", "buffer", "nbytes", "_slot")

    def __init__(self, rgb: np.ndarray, pool: SlabPool | None = None):
        h, w = rgb.shape[:2]
        self._slot: BufferSlot | None = None
        if pool is not None and h <= pool.slot_shape[0] and w <= pool.slot_shape[1]:
            self._slot = pool.acquire()
            self.buffer = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=self._slot.array[:h, :w])
        else:
            self.buffer = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        # A pointer, since a pool slot's rows are strided (non-contiguous for a memoryview).
        self.image = QImage(sip.voidptr(self.buffer.ctypes.data), w, h, self.buffer.strides[0], QImage.Format_RGB32)
        self.nbytes = pool.slot_bytes if self._slot is not None else self.buffer.nbytes

    def release(self) -> None:
        """Give the buffer back to its pool (the image must not be drawn afterwards)."""
        if self._slot is not None:
            self._slot.release()
            self._slot = None


class TileMemory:
    """The app-wide store of decoded tiles: an LRU cache bounded in bytes over recycled buffers.

    Evicted tiles return their buffers to the pool, so a long session reuses the
    same memory instead of faulting in fresh pages for every tile.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, tile_size: int = DEFAULT_TILE_SIZE):
        self.tile_size = tile_size
        self.pool = SlabPool((tile_size, tile_size, 4))
        self.cache = TileCache(max_bytes, on_evict=TileImage.release)

    def make_tile(self, rgb: np.ndarray) -> TileImage:
        return TileImage(rgb, self.pool)


class TileLoader(QObject):
    """Reads tiles of one slide into a shared :class:`TileCache`.

    Signals ``tile_loaded(key)`` and ``tile_failed(key, message)`` arrive on
    the GUI thread.
    """

    tile_loaded = pyqtSignal(object)
    tile_failed = pyqtSignal(object, str)

    def __init__(self, reader: SlideReader, grid: TileGrid, memory: TileMemory, workers: int = 2):
        super().__init__()
        self.reader, self.grid, self.memory, self.cache = reader, grid, memory, memory.cache
        self._pending: deque[TileKey] = deque()
        self._in_flight: set[TileKey] = set()
        self.failed: dict[TileKey, str] = {}
        #: Tiles read only in part: the blocks that failed are drawn hatched in the tile itself.
        self.partly_failed: dict[TileKey, str] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"tile-loader-{i}", daemon=True) for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def set_wanted(self, keys: list[TileKey]) -> None:
        """Replace the queue with ``keys`` (highest priority first), skipping ones already there."""
        todo = [k for k in keys if k not in self.failed and k not in self._in_flight and self.cache.peek(k) is None]
        with self._cond:
            self._pending = deque(todo)
            self._cond.notify_all()

    @property
    def busy(self) -> bool:
        with self._cond:
            return bool(self._pending or self._in_flight)

    def forget_failures(self) -> None:
        self.failed.clear()
        self.partly_failed.clear()

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self) -> None:
        lower_this_thread()
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                key = self._pending.popleft()
                if key in self._in_flight:
                    continue
                self._in_flight.add(key)
            try:
                if self.cache.peek(key) is None:
                    rgb, problem = self._read(key)
                    self.cache.put(key, self.memory.make_tile(rgb))
                    self.tile_loaded.emit(key)
                    if problem is not None:
                        self.partly_failed[key] = problem
                        self.tile_failed.emit(key, problem)
            except SlideError as err:
                self.failed[key] = str(err)
                self.tile_failed.emit(key, str(err))
            except Exception as err:  # noqa: BLE001 - decoder bugs must not kill the loader thread
                if not self._stopping:
                    self.failed[key] = f"{self.reader.display_name}: {err}"
                    self.tile_failed.emit(key, self.failed[key])
            finally:
                with self._cond:
                    self._in_flight.discard(key)

    def _read(self, key: TileKey) -> tuple[np.ndarray, str | None]:
        """The tile's pixels, and what went wrong when only part of it could be decoded (that part hatched)."""
        lv_w, lv_h = self.grid.tile_size_of(key)
        l0_x, l0_y, _, _ = self.grid.tile_l0_rect(key)
        rgb, damaged, error = read_salvaged(self.reader, round(l0_x), round(l0_y), key.level, lv_w, lv_h)
        if damaged is None:
            return rgb, None
        return _hatched(rgb, damaged), f"part of this region could not be read: {error}"


def _hatched(rgb: np.ndarray, damaged: np.ndarray) -> np.ndarray:
    """``rgb`` with the ``damaged`` pixels drawn as the slide layer draws a tile that failed (pink, red hatch)."""
    ys, xs = np.nonzero(damaged)
    on_line = (xs + ys) % 8 == 0
    rgb = rgb.copy()
    rgb[ys, xs] = (255, 235, 235)
    rgb[ys[on_line], xs[on_line]] = (241, 158, 158)  # (200, 40, 40) at alpha 120 over the pink
    return rgb
