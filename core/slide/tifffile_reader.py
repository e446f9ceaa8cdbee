"""TIFFs OpenSlide rejects, read with tifffile: OME-TIFF (SubIFD pyramids), stripped and single-page tiled TIFFs.

Only the tiles or strips that meet a requested region are read and decoded.
Raw bytes are fetched under a lock (seek and read must not interleave between
threads); decoding runs outside it. Decoded segments are kept in a small LRU.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import tifffile

from core.errors import SlideError, SlideReadError
from core.slide.base import DAMAGED_HINT, SlideReader, plausible_mpp, white_canvas
from core.slide.tiff_check import check_tiff
from core.slide.tiff_layout import (
    MINISBLACK,
    RGB,
    Plane,
    associated_series,
    find_planes,
    tiff_metadata,
    to_rgb8,
)

# tifffile logs oddities of valid files; without a handler Python would print them to stderr.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

#: What a corrupt segment or an odd file can raise from tifffile or imagecodecs.
DECODE_ERRORS = (RuntimeError, ValueError, TypeError, IndexError, KeyError, ImportError, EOFError,
                 OSError, struct.error, ZeroDivisionError, OverflowError)
_JPEG = {6, 7, 33007, 34892}
#: Decoded tiles kept for neighbouring reads (the newest one is kept even if larger).
_CACHE_BYTES = 64 << 20


class TiffFileReader(SlideReader):
    """A (pyramidal) TIFF read with tifffile.

    Grey, RGB, RGBA (blended onto white), palette and channel-first (OME ``CYX``)
    images are shown as RGB; more than 8 bits per sample is scaled to 8 bits with
    one linear mapping per slide, taken from the smallest level, so tiles match.

    Parameters
    ----------
    path : path-like

    Raises
    ------
    SlideError
        When the file is not a TIFF, or its layout or compression cannot be read.
    """

    backend = "tifffile"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._lock = threading.RLock()  # guards the file handle's seek + read
        self._cache: OrderedDict = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        try:
            if check_tiff(self.path) is None:  # tifffile would loop for ever on some damaged directory chains
                raise SlideError(path, "not a TIFF file")
        except OSError as err:
            raise SlideError(path, f"could not read the file: {err.strerror or err}") from None
        try:
            self._tif = tifffile.TiffFile(str(path))
        except (tifffile.TiffFileError, MemoryError, *DECODE_ERRORS) as err:
            raise SlideError(path, f"not a readable TIFF: {err}") from None
        try:
            self._setup()
        except SlideError:
            self._tif.close()
            raise
        except (MemoryError, *DECODE_ERRORS) as err:
            self._tif.close()
            raise SlideError(path, f"could not read its TIFF layout: {err}") from None

    def _setup(self) -> None:
        tif = self._tif
        if not tif.series:
            raise SlideError(self.path, "the TIFF holds no image")
        self._planes: list[Plane] = find_planes(self.path, tif.series[0])
        l0_w, l0_h = self._planes[0].width, self._planes[0].height
        self._level_dimensions = tuple((p.width, p.height) for p in self._planes)
        self._level_downsamples = tuple((l0_w / p.width + l0_h / p.height) / 2 for p in self._planes)
        meta = tiff_metadata(tif, self._planes[0].pages[0])
        self._vendor = meta.vendor
        self._mpp = plausible_mpp(*meta.mpp) if meta.mpp else None
        self._objective = meta.objective
        self._properties = meta.properties
        self._icc = meta.icc_profile
        self._associated = associated_series(tif)
        self._scale = self._probe(self._planes[-1])

    def _probe(self, plane: Plane):
        """Decode the centre of the smallest level tile by tile: proves the codec works, and scales deep data.

        One damaged tile must not stop the slide from opening; only a codec
        that decodes nothing does.
        """
        x0, y0, x1, y1 = _central_box(plane, 2048)
        samples, first_error = [], None
        for ty in range(y0 // plane.chunk_h, (y1 - 1) // plane.chunk_h + 1):
            for tx in range(x0 // plane.chunk_w, (x1 - 1) // plane.chunk_w + 1):
                bx0, by0 = max(tx * plane.chunk_w, x0), max(ty * plane.chunk_h, y0)
                bx1, by1 = min((tx + 1) * plane.chunk_w, x1), min((ty + 1) * plane.chunk_h, y1)
                try:
                    native, missing = self._read_native(plane, bx0, by0, bx1, by1)
                except DECODE_ERRORS as err:
                    first_error = first_error or err
                    continue
                if not missing.all():
                    samples.append(native[~missing])
                    if plane.dtype == np.uint8:
                        return None  # 8-bit data needs no scale: one good tile is proof enough
        if not samples:
            if first_error is None:
                return None  # nothing was ever written there: white, but readable
            raise SlideError(self.path, f"could not decode its pixels: {first_error}")
        return plane.intensity_scale(np.concatenate(samples)[:, None, :])

    # -- metadata ----------------------------------------------------------
    @property
    def associated_image_names(self) -> tuple[str, ...]:
        return tuple(self._associated)

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (``label``, ``macro``, ``thumbnail``) as (h, w, 3) uint8 RGB.

        Raises
        ------
        KeyError
            When the file has no such image.
        SlideReadError
            When its data cannot be decoded.
        """
        series = self._associated[name]
        try:
            with self._lock:
                data = series.asarray()
        except DECODE_ERRORS as err:
            raise SlideReadError(self.path, f"could not decode the {name} image: {err}", DAMAGED_HINT) from None
        if data.ndim == 3 and data.shape[0] in (3, 4) and data.shape[-1] not in (3, 4):
            data = np.moveaxis(data, 0, -1)  # channel-first
        if data.ndim == 2:
            data = data[:, :, None]
        return to_rgb8(data, None, RGB if data.shape[2] >= 3 else MINISBLACK, has_alpha=data.shape[2] == 4)

    def stored_tile_size(self, level: int) -> tuple[int, int] | None:
        plane = self._planes[level]
        return plane.chunk_w, plane.chunk_h

    # -- pixels --------------------------------------------------------------
    def _read_region_raw(self, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int) -> np.ndarray:
        plane = self._planes[level]
        ds = self._level_downsamples[level]
        lv_x, lv_y = int(l0_x // ds), int(l0_y // ds)
        canvas = white_canvas(lv_w, lv_h)
        x0, y0 = max(lv_x, 0), max(lv_y, 0)
        x1, y1 = min(lv_x + lv_w, plane.width), min(lv_y + lv_h, plane.height)
        if x1 <= x0 or y1 <= y0:
            return canvas
        try:
            native, missing = self._read_native(plane, x0, y0, x1, y1)
        except DECODE_ERRORS as err:
            if self._closed:
                raise SlideReadError(self.path, "slide is closed") from None
            raise SlideReadError(
                self.path,
                f"could not decode the region at level {level} ({l0_x}, {l0_y}, {lv_w} x {lv_h}): {err}",
                DAMAGED_HINT,
            ) from None
        if missing.all():
            return canvas  # tiles the scanner never wrote are glass (a sparse slide is mostly this)
        rgb = to_rgb8(native, self._scale, plane.photometric, plane.has_alpha, plane.premultiplied, plane.colormap)
        if missing.any():  # (a masked copy costs as much as the decoding)
            rgb[missing] = 255
        canvas[y0 - lv_y : y1 - lv_y, x0 - lv_x : x1 - lv_x] = rgb
        return canvas

    def _read_native(self, plane: Plane, x0: int, y0: int, x1: int, y1: int):
        """Level pixels [y0:y1, x0:x1] as stored (h, w, channels) plus a mask of never-written tiles."""
        out = np.zeros((y1 - y0, x1 - x0, len(plane.channels)), plane.dtype)
        missing = np.zeros((y1 - y0, x1 - x0), bool)
        if plane.interleaved_prefix:  # the usual RGB(A): every channel in one segment, copied at once
            channels = slice(0, len(plane.channels))
            page = plane.pages[plane.channels[0][0]]
            for index in plane.segment_indices(x0, y0, x1, y1, 0):
                if plane.rows_addressable:
                    seg_y, seg_x, seg = self._read_rows(plane, page, index, y0, y1)
                else:
                    seg_y, seg_x, seg = self._segment(plane, page, index)
                sy0, sx0 = max(seg_y, y0), max(seg_x, x0)
                sy1 = min(seg_y + (seg.shape[0] if seg is not None else plane.chunk_h), y1)
                sx1 = min(seg_x + (seg.shape[1] if seg is not None else plane.chunk_w), x1)
                if sy1 <= sy0 or sx1 <= sx0:
                    continue
                dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
                if seg is None:
                    missing[dst] = True
                else:
                    out[dst] = seg[sy0 - seg_y : sy1 - seg_y, sx0 - seg_x : sx1 - seg_x, channels]
            return out, missing
        for out_c, (page_i, sample) in enumerate(plane.channels):
            page = plane.pages[page_i]
            for index in plane.segment_indices(x0, y0, x1, y1, sample):
                if plane.rows_addressable:
                    seg_y, seg_x, seg = self._read_rows(plane, page, index, y0, y1)
                else:
                    seg_y, seg_x, seg = self._segment(plane, page, index)
                sample_i = 0 if plane.separate else sample
                sy0, sx0 = max(seg_y, y0), max(seg_x, x0)
                sy1 = min(seg_y + (seg.shape[0] if seg is not None else plane.chunk_h), y1)
                sx1 = min(seg_x + (seg.shape[1] if seg is not None else plane.chunk_w), x1)
                if sy1 <= sy0 or sx1 <= sx0:
                    continue
                dst = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
                if seg is None:
                    missing[dst] = True
                else:
                    out[dst + (out_c,)] = seg[sy0 - seg_y : sy1 - seg_y, sx0 - seg_x : sx1 - seg_x, sample_i]
        return out, missing

    def _raw(self, offset: int, count: int) -> bytes:
        """Bytes from the file; the lock keeps another thread's seek out of our read."""
        with self._lock:
            fh = self._tif.filehandle
            fh.seek(offset)
            data = fh.read(count)
        if len(data) < count:
            raise EOFError(f"the file ends {count - len(data)} bytes early (truncated)")
        return data

    def _segment(self, plane: Plane, page, index: int):
        """(level y, level x, (h, w, samples) array or None for an unwritten tile) of one segment."""
        key = (id(page), index)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        y, x = plane.segment_origin(index)
        if offset == 0 or count == 0:
            return y, x, None
        data = self._raw(offset, count)
        kf = page.keyframe
        kwargs = {}
        if kf.compression in _JPEG:
            kwargs = {"jpegtables": page.jpegtables, "jpegheader": kf.jpegheader}
        seg, _, _ = kf.decode(data, index, **kwargs)
        if seg is None:
            raise ValueError(f"segment {index} is empty")
        result = (y, x, seg[0])
        with self._cache_lock:
            self._cache[key] = result
            self._cache_bytes += seg.nbytes
            while self._cache_bytes > _CACHE_BYTES and len(self._cache) > 1:
                _, (_, _, old) = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return result

    def _read_rows(self, plane: Plane, page, index: int, y0: int, y1: int):
        """Only rows y0..y1 of an uncompressed strip, so a one-strip giant TIFF is not read whole."""
        strip_y, _ = plane.segment_origin(index)
        rows_in_strip = min(plane.chunk_h, plane.height - strip_y)
        r0, r1 = max(y0, strip_y) - strip_y, min(y1, strip_y + rows_in_strip) - strip_y
        samples = 1 if plane.separate else plane.samples
        row_bytes = plane.width * samples * plane.dtype.itemsize
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if offset == 0 or count == 0:
            return strip_y, 0, None
        if count < rows_in_strip * row_bytes:
            raise EOFError(f"strip {index} holds {count} bytes, {rows_in_strip * row_bytes} expected (truncated)")
        data = self._raw(offset + r0 * row_bytes, (r1 - r0) * row_bytes)
        rows = np.frombuffer(data, plane.file_dtype).astype(plane.dtype, copy=False)
        return strip_y + r0, 0, rows.reshape(r1 - r0, plane.width, samples)

    def _close(self) -> None:
        with self._lock:
            self._tif.close()
        with self._cache_lock:
            self._cache.clear()


def _central_box(plane: Plane, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a central square of at most ``size`` pixels a side."""
    w, h = min(plane.width, size), min(plane.height, size)
    x0, y0 = (plane.width - w) // 2, (plane.height - h) // 2
    return x0, y0, x0 + w, y0 + h

