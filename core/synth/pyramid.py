"""Write a synthetic slide as a pyramidal, JPEG-tiled TIFF (generic layout or Aperio SVS layout).

Level-0 tiles are rendered and JPEG-encoded by a small thread pool and handed to
tifffile as pre-compressed bytes, in raster order. Each level-0 tile is also
area-downsampled by 4 into an in-memory level-1 image, from which every lower
level, the thumbnail and the macro image are derived: nothing is read back.

Page order, generic: level 0, 1, 2, ... (all tiled; levels > 0 marked
reduced-resolution, which OpenSlide's generic-tiff reader requires).
Page order, SVS: level 0, thumbnail (stripped), levels 1.., label, macro
(stripped), as OpenSlide's aperio reader expects.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import imagecodecs
import numpy as np
import tifffile

from core.errors import Cancelled
from core.synth import associated
from core.synth.render import GLASS, TileRenderer

#: Stop adding levels once the longest side is at most this many pixels.
SMALLEST_LEVEL = 1000
#: Each level is this many times smaller than the one above.
LEVEL_FACTOR = 4
#: Tiles rendered ahead of the writer, per worker.
_AHEAD = 6
#: Above this many bytes the level-1 image lives in a memory-mapped scratch file.
_IN_MEMORY_LIMIT = 1.5e9
#: Write BigTIFF when the file may grow past this many bytes (classic TIFF stops at 4 GiB).
_BIGTIFF_ABOVE = 2e9


@dataclass(frozen=True)
class PyramidSpec:
    """What to write: size, resolution, tiling, JPEG quality and layout."""

    width: int
    height: int
    mpp: float
    tile: int
    quality: int
    svs: bool
    seed: int
    name: str


def level_dimensions(width: int, height: int) -> list[tuple[int, int]]:
    """(w, h) of each pyramid level: downsample 1, 4, 16, ... until the longest side is small."""
    dims = [(width, height)]
    while max(dims[-1]) > SMALLEST_LEVEL:
        ds = LEVEL_FACTOR ** len(dims)
        dims.append((max(1, math.ceil(width / ds)), max(1, math.ceil(height / ds))))
    return dims


def _tile_count(dims: list[tuple[int, int]], tile: int) -> int:
    return sum(math.ceil(w / tile) * math.ceil(h / tile) for w, h in dims)


class _Progress:
    """Calls ``progress(done, total)`` per tile and ``should_stop()`` between tiles."""

    def __init__(self, total: int, progress: Callable | None, should_stop: Callable | None):
        self.total, self.done = total, 0
        self._progress, self._should_stop = progress, should_stop

    def wrap(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for data in chunks:
            if self._should_stop is not None and self._should_stop():
                raise Cancelled()
            self.done += 1
            if self._progress is not None:
                self._progress(self.done, self.total)
            yield data


def _in_order(pool: ThreadPoolExecutor, tasks: Iterator, window: int) -> Iterator[bytes]:
    """Yield task results in submission order; a task is ready bytes or a (fn, *args) tuple for the pool."""
    pending: deque = deque()
    for task in tasks:
        pending.append(task if isinstance(task, bytes) else pool.submit(*task))
        if len(pending) >= window:
            head = pending.popleft()
            yield head.result() if isinstance(head, Future) else head
    while pending:
        head = pending.popleft()
        yield head.result() if isinstance(head, Future) else head


class PyramidWriter:
    """Renders and writes one slide file; use ``write`` once."""

    def __init__(self, renderer: TileRenderer, spec: PyramidSpec):
        self.renderer = renderer
        self.spec = spec
        self.dims = level_dimensions(spec.width, spec.height)
        self._jpeg_args = {"level": spec.quality, "subsampling": (2, 2)}

    def _encode(self, rgb: np.ndarray) -> bytes:
        return imagecodecs.jpeg_encode(rgb, **self._jpeg_args)

    # -- level 0 ------------------------------------------------------------------
    def _level0_tile(self, row: int, col: int, level1: np.ndarray) -> bytes:
        t, q = self.spec.tile, self.spec.tile // LEVEL_FACTOR
        rgb = self.renderer.render(col * t, row * t, t, t)
        level1[row * q:(row + 1) * q, col * q:(col + 1) * q] = cv2.resize(rgb, (q, q), interpolation=cv2.INTER_AREA)
        return self._encode(rgb)

    def _level0_tasks(self, level1: np.ndarray) -> Iterator:
        t, q = self.spec.tile, self.spec.tile // LEVEL_FACTOR
        glass = self.renderer.background(t, t)
        glass_bytes = self._encode(glass)
        glass_quarter = cv2.resize(glass, (q, q), interpolation=cv2.INTER_AREA)
        for row in range(math.ceil(self.spec.height / t)):
            for col in range(math.ceil(self.spec.width / t)):
                if self.renderer.has_tissue(col * t, row * t, t, t):
                    yield (self._level0_tile, row, col, level1)
                else:  # bare glass: every such tile is identical, encode it once
                    level1[row * q:(row + 1) * q, col * q:(col + 1) * q] = glass_quarter
                    yield glass_bytes

    # -- lower levels ---------------------------------------------------------------
    def _level_tasks(self, rgb: np.ndarray) -> Iterator:
        t = self.spec.tile
        lv_h, lv_w = rgb.shape[:2]
        for row in range(math.ceil(lv_h / t)):
            for col in range(math.ceil(lv_w / t)):
                yield (self._encode_window, rgb, row * t, col * t)

    def _encode_window(self, rgb: np.ndarray, y: int, x: int) -> bytes:
        t = self.spec.tile
        window = rgb[y:y + t, x:x + t]
        if window.shape[:2] != (t, t):  # edge tile: pad with glass (outside the image, never shown)
            padded = np.empty((t, t, 3), np.uint8)
            padded[:] = np.array(GLASS, np.float32).round().astype(np.uint8)
            padded[:window.shape[0], :window.shape[1]] = window
            window = padded
        return self._encode(np.ascontiguousarray(window))

    @staticmethod
    def _shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Exact 4x4 box average to ``size`` (w, h), replicating the last row/column where needed."""
        w, h = size
        need_h, need_w = h * LEVEL_FACTOR, w * LEVEL_FACTOR
        src = rgb[:need_h, :need_w]
        if src.shape[0] < need_h or src.shape[1] < need_w:
            src = cv2.copyMakeBorder(src, 0, need_h - src.shape[0], 0, need_w - src.shape[1], cv2.BORDER_REPLICATE)
        return cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)

    # -- the file ----------------------------------------------------------------------
    def _page_args(self, level: int, lv_w: int, lv_h: int) -> dict:
        sp = self.spec
        # pixels per centimetre of this level
        res_x = 1e4 / (sp.mpp * sp.width / lv_w)
        res_y = 1e4 / (sp.mpp * sp.height / lv_h)
        if sp.svs:
            desc = associated.aperio_description(sp.seed, sp.mpp, sp.width, sp.height, sp.tile, sp.quality, sp.name) \
                if level == 0 else associated.aperio_level_description(sp.width, sp.height, sp.tile, sp.quality,
                                                                        lv_w, lv_h)
        else:
            desc = associated.generic_description(sp.seed, sp.mpp, sp.width, sp.height, sp.tile, sp.quality) \
                if level == 0 else f"Biopsia synthetic slide level={level} downsample={LEVEL_FACTOR ** level}"
        # generic-tiff readers need reduced levels flagged; Aperio flags only label (1) and macro (9)
        return dict(shape=(lv_h, lv_w, 3), dtype=np.uint8, photometric="rgb", compression="jpeg",
                    subsampling=(2, 2), tile=(sp.tile, sp.tile), resolution=(res_x, res_y),
                    resolutionunit="CENTIMETER", description=desc, subfiletype=0 if level == 0 or sp.svs else 1,
                    metadata=None, software="Biopsia")

    def _write_stripped(self, tif: tifffile.TiffWriter, rgb: np.ndarray, description: str, jpeg: bool,
                        subfiletype: int) -> None:
        if jpeg:
            tif.write(rgb, photometric="rgb", compression="jpeg", compressionargs={"level": self.spec.quality},
                      subsampling=(2, 2), rowsperstrip=64, description=description, subfiletype=subfiletype,
                      metadata=None, software="Biopsia")
        else:
            tif.write(rgb, photometric="rgb", compression="lzw", rowsperstrip=64, description=description,
                      subfiletype=subfiletype, metadata=None, software="Biopsia")

    def _write_pages(self, tif: tifffile.TiffWriter, pool: ThreadPoolExecutor, level1: np.ndarray,
                     counter: _Progress) -> None:
        sp = self.spec
        t = sp.tile
        lv_w, lv_h = self.dims[0]
        chunks = _in_order(pool, self._level0_tasks(level1), 2 * _AHEAD)
        tif.write(counter.wrap(chunks), **self._page_args(0, lv_w, lv_h))
        overview = level1[:math.ceil(sp.height / LEVEL_FACTOR), :math.ceil(sp.width / LEVEL_FACTOR)]
        if sp.svs:
            tw, th = associated.thumbnail_size(sp.width, sp.height)
            thumb = cv2.resize(overview, (tw, th), interpolation=cv2.INTER_AREA)
            self._write_stripped(tif, thumb, associated.aperio_level_description(
                sp.width, sp.height, t, sp.quality, tw, th), jpeg=True, subfiletype=0)
        current = overview
        for level, (lv_w, lv_h) in enumerate(self.dims[1:], start=1):
            if level > 1:
                current = self._shrink(current, (lv_w, lv_h))
            chunks = _in_order(pool, self._level_tasks(current), 2 * _AHEAD)
            tif.write(counter.wrap(chunks), **self._page_args(level, lv_w, lv_h))
        if sp.svs:
            label = associated.label_image(sp.seed)
            self._write_stripped(tif, label, associated.aperio_associated_description(
                "label", label.shape[1], label.shape[0]), jpeg=False, subfiletype=1)
            macro = associated.macro_image(associated.fit_within(overview, 2048), label, sp.width, sp.height,
                                           sp.mpp)
            self._write_stripped(tif, macro, associated.aperio_associated_description(
                "macro", macro.shape[1], macro.shape[0]), jpeg=True, subfiletype=9)

    def write(self, path: Path, progress: Callable | None = None, should_stop: Callable | None = None) -> None:
        """Write the whole file to ``path`` (the caller deletes it if this raises).

        Raises
        ------
        Cancelled
            When ``should_stop()`` returned True between two tiles.
        """
        sp = self.spec
        t, q = sp.tile, sp.tile // LEVEL_FACTOR
        counter = _Progress(_tile_count(self.dims, t), progress, should_stop)
        l1_shape = (math.ceil(sp.height / t) * q, math.ceil(sp.width / t) * q, 3)
        scratch = None
        if np.prod(l1_shape) > _IN_MEMORY_LIMIT:  # huge slide: level 1 in a scratch file beside the output
            scratch = path.with_name(path.name + ".level1")
            level1 = np.memmap(scratch, np.uint8, "w+", shape=l1_shape)
        else:
            level1 = np.empty(l1_shape, np.uint8)
        estimate = sp.width * sp.height * 3 * (0.3 if sp.quality <= 95 else 1.0)
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="synth")
        try:
            with open(path, "wb") as fh:
                tif = tifffile.TiffWriter(fh, bigtiff=estimate > _BIGTIFF_ABOVE)
                try:
                    self._write_pages(tif, pool, level1, counter)
                except BaseException:
                    with contextlib.suppress(Exception):  # keep the original error, not a close() failure
                        tif.close()
                    raise
                tif.close()
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if scratch is not None:
                del level1
                scratch.unlink(missing_ok=True)
