"""Tile requests and a thread-safe tile cache bounded in bytes."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Sequence

from core.slide.base import best_level_for_downsample
from core.view.viewport import Viewport

DEFAULT_TILE_SIZE = 512
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, order=True)
class TileKey:
    """One display tile: ``source`` names the slide (and colour mode), then level, column, row."""

    source: str
    level: int
    col: int
    row: int

    def lv_rect(self, tile_size: int) -> tuple[int, int, int, int]:
        """(lv_x, lv_y, lv_w, lv_h) of the tile in level pixels, before clipping."""
        return self.col * tile_size, self.row * tile_size, tile_size, tile_size


@dataclass(frozen=True)
class TileGrid:
    """The display tiling of a slide pyramid: ``tile_size`` square tiles on every level."""

    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    tile_size: int = DEFAULT_TILE_SIZE

    def level_for_downsample(self, downsample: float) -> int:
        """Coarsest level still at least as fine as the view (so tiles are drawn at scale ≤ 1)."""
        return best_level_for_downsample(self.level_downsamples, downsample)

    def tile_counts(self, level: int) -> tuple[int, int]:
        lv_w, lv_h = self.level_dimensions[level]
        return math.ceil(lv_w / self.tile_size), math.ceil(lv_h / self.tile_size)

    def tile_size_of(self, key: TileKey) -> tuple[int, int]:
        """Actual (lv_w, lv_h) of a tile, clipped at the level's right and bottom edges."""
        lv_w, lv_h = self.level_dimensions[key.level]
        lv_x, lv_y = key.col * self.tile_size, key.row * self.tile_size
        return min(self.tile_size, lv_w - lv_x), min(self.tile_size, lv_h - lv_y)

    def tile_l0_rect(self, key: TileKey) -> tuple[float, float, float, float]:
        """(l0_x, l0_y, l0_w, l0_h) covered by a tile."""
        ds = self.level_downsamples[key.level]
        lv_w, lv_h = self.tile_size_of(key)
        return key.col * self.tile_size * ds, key.row * self.tile_size * ds, lv_w * ds, lv_h * ds

    def tiles_in_l0_rect(
        self, source: str, level: int, l0_rect: tuple[float, float, float, float], margin: int = 0
    ) -> list[TileKey]:
        """Tiles of ``level`` meeting ``l0_rect``, grown by ``margin`` tiles, nearest the centre first."""
        ds = self.level_downsamples[level] * self.tile_size
        n_cols, n_rows = self.tile_counts(level)
        l0_x, l0_y, l0_w, l0_h = l0_rect
        col0 = max(0, int(math.floor(l0_x / ds)) - margin)
        row0 = max(0, int(math.floor(l0_y / ds)) - margin)
        col1 = min(n_cols - 1, int(math.floor((l0_x + l0_w) / ds)) + margin)
        row1 = min(n_rows - 1, int(math.floor((l0_y + l0_h) / ds)) + margin)
        if col1 < col0 or row1 < row0:
            return []
        mid_col = (l0_x + l0_w / 2) / ds - 0.5
        mid_row = (l0_y + l0_h / 2) / ds - 0.5
        keys = [TileKey(source, level, c, r) for r in range(row0, row1 + 1) for c in range(col0, col1 + 1)]
        keys.sort(key=lambda k: (k.col - mid_col) ** 2 + (k.row - mid_row) ** 2)
        return keys

    def plan(self, source: str, viewport: Viewport, prefetch: bool = True) -> tuple[int, list[TileKey], list[TileKey]]:
        """Tiles to show ``viewport``: (level, visible tiles, prefetch tiles).

        Prefetch holds a one-tile ring around the view at the same level and
        the visible tiles one level coarser (for zooming out).
        """
        level = self.level_for_downsample(viewport.downsample)
        rect = viewport.visible_l0_rect()
        visible = self.tiles_in_l0_rect(source, level, rect)
        if not prefetch:
            return level, visible, []
        seen = set(visible)
        ring = [k for k in self.tiles_in_l0_rect(source, level, rect, margin=1) if k not in seen]
        coarser = []
        if level + 1 < len(self.level_downsamples):
            coarser = self.tiles_in_l0_rect(source, level + 1, rect)
        return level, visible, coarser + ring


class TileCache:
    """A least-recently-used cache bounded by the total byte size of its values.

    Thread-safe. ``sizeof(value)`` gives each value's size (``value.nbytes`` by default);
    ``on_evict(value)`` is called for every value that leaves the cache (to recycle its memory).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, sizeof: Callable[[Any], int] | None = None,
                 on_evict: Callable[[Any], None] | None = None):
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof or (lambda value: int(value.nbytes))
        self._on_evict = on_evict
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return default
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def peek(self, key: Hashable) -> Any:
        """Like ``get`` without refreshing recency or counting."""
        with self._lock:
            item = self._items.get(key)
            return None if item is None else item[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: Any) -> None:
        size = self._sizeof(value)
        gone = []
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
                gone.append(old[0])
            if size > self.max_bytes:
                gone.append(value)
            else:
                self._items[key] = (value, size)
                self._bytes += size
                gone += self._shrink_locked()
        self._evicted(gone)

    def _shrink_locked(self) -> list:
        gone = []
        while self._bytes > self.max_bytes and self._items:
            _, (value, size) = self._items.popitem(last=False)
            self._bytes -= size
            gone.append(value)
        return gone

    def _evicted(self, values: list) -> None:
        if self._on_evict is not None:
            for value in values:
                self._on_evict(value)

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key matches; returns how many."""
        with self._lock:
            doomed = [k for k in self._items if predicate(k)]
            gone = []
            for key in doomed:
                value, size = self._items.pop(key)
                self._bytes -= size
                gone.append(value)
        self._evicted(gone)
        return len(doomed)

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = int(max_bytes)
            gone = self._shrink_locked()
        self._evicted(gone)

    def clear(self) -> None:
        with self._lock:
            gone = [value for value, _ in self._items.values()]
            self._items.clear()
            self._bytes = 0
        self._evicted(gone)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._items))


def unique(keys: Sequence[TileKey]) -> list[TileKey]:
    """Keys in order, duplicates removed."""
    return list(dict.fromkeys(keys))
