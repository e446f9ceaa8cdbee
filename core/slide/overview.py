"""Whole-slide overviews (thumbnails, low-resolution masks) in bounded memory and time, whatever size a slide claims.

A level of up to ``THUMBNAIL_ONE_READ_PIXELS`` is read in one region, a
larger one in bands of about ``THUMBNAIL_BLOCK`` squared pixels (as wide as
the level allows, so a stripped file decodes each strip once), and one larger
than ``THUMBNAIL_BUDGET_PIXELS`` (no pyramid, or a size the file does not
hold) is sampled: each ``_SAMPLE_CELL`` square of the result is drawn from a
patch at its centre. A region that cannot be decoded is read again in
``_DAMAGE_BLOCK`` squares, and only those that still fail are ``DAMAGED_GREY``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from core.errors import SlideReadError

if TYPE_CHECKING:
    from core.slide.base import SlideReader

#: Largest level read in one region (4096 x 4096).
THUMBNAIL_ONE_READ_PIXELS = 1 << 24
#: A larger level is read in bands of about this side squared.
THUMBNAIL_BLOCK = 2048
#: Level pixels an overview decodes at most; beyond, it samples ``THUMBNAIL_SAMPLE_PIXELS`` in all,
#: at most ``_SAMPLE_PATCH`` level pixels a side for each ``_SAMPLE_CELL`` square of the result.
THUMBNAIL_BUDGET_PIXELS = 1 << 27
THUMBNAIL_SAMPLE_PIXELS = 1 << 24
_SAMPLE_CELL = 32
_SAMPLE_PATCH = 256
#: Side, in level pixels, of the blocks a region that failed to decode is read again in.
_DAMAGE_BLOCK = 256
#: Grey for the parts of an overview whose data could not be decoded (the viewer hatches its tiles).
DAMAGED_GREY = 200
#: Side, in level pixels, of the blocks a display tile that failed to decode is read again in.
SALVAGE_BLOCK = 128


class Salvaged(NamedTuple):
    """What `read_salvaged` could read of a region."""

    rgb: np.ndarray
    #: None when the whole region was read; else a bool mask of the pixels that could not be decoded.
    damaged: np.ndarray | None
    #: Why the region could not be read whole (None when it was).
    error: SlideReadError | None


def read_salvaged(reader: SlideReader, l0_x: int, l0_y: int, level: int, lv_w: int, lv_h: int,
                  block: int = SALVAGE_BLOCK) -> Salvaged:
    """A region as ``reader.read_region`` reads it, or, when part of it cannot be decoded, the rest of it.

    Parameters
    ----------
    reader : SlideReader
    l0_x, l0_y : int
        Top-left corner in level-0 pixels.
    level, lv_w, lv_h : int
        Pyramid level and size of the region in that level's pixels.
    block : int
        Side, in level pixels, of the squares a region that failed is read again in.

    Returns
    -------
    Salvaged
        ``rgb`` (lv_h, lv_w, 3) uint8, black where the data could not be decoded; ``damaged``, None or a
        (lv_h, lv_w) bool mask of the blocks that failed; ``error``, the first read's error.

    Raises
    ------
    SlideReadError
        When no block of the region can be decoded, or the reader was closed.
    """
    try:
        return Salvaged(reader.read_region(l0_x, l0_y, level, lv_w, lv_h), None, None)
    except SlideReadError as err:
        if reader.closed or lv_w * lv_h <= block * block:
            raise
        first_error = err
    ds = reader.level_downsamples[level]
    rgb = np.zeros((lv_h, lv_w, 3), np.uint8)
    damaged = np.zeros((lv_h, lv_w), bool)
    read_any = False
    for by in range(0, lv_h, block):
        for bx in range(0, lv_w, block):
            bw, bh = min(block, lv_w - bx), min(block, lv_h - by)
            try:
                rgb[by:by + bh, bx:bx + bw] = reader.read_region(round(l0_x + bx * ds), round(l0_y + by * ds),
                                                                 level, bw, bh)
                read_any = True
            except SlideReadError:
                if reader.closed:
                    raise
                damaged[by:by + bh, bx:bx + bw] = True
    if not read_any:
        raise first_error
    return Salvaged(rgb, damaged, first_error)


def read_downscaled(reader: SlideReader, out_w: int, out_h: int, downsample: float | None = None) -> np.ndarray:
    """The whole slide resized to ``out_w`` x ``out_h``, from the coarsest level at least as fine as ``downsample``.

    Parameters
    ----------
    reader : SlideReader
    out_w, out_h : int
        Size of the result; at most ``MAX_REGION_PIXELS`` together.
    downsample : float, optional
        Level-0 pixels per result pixel used to choose the level; by default the larger of the two ratios.

    Returns
    -------
    ndarray
        (out_h, out_w, 3) uint8 RGB.

    Raises
    ------
    SlideReadError
        When no part of the slide could be decoded.
    """
    from core.slide.base import MAX_REGION_PIXELS  # base imports this module: at the top it would be a cycle

    if out_w <= 0 or out_h <= 0 or out_w * out_h > MAX_REGION_PIXELS:
        raise ValueError(f"thumbnail size must be positive and at most {MAX_REGION_PIXELS} pixels, "
                         f"got {out_w}x{out_h}")
    l0_w, l0_h = reader.dimensions
    if downsample is None:
        downsample = max(l0_w / out_w, l0_h / out_h, 1.0)
    level = reader.best_level_for_downsample(downsample)
    lv_w, lv_h = reader.level_dimensions[level]
    whole = (0, 0, out_w, out_h)
    if lv_w * lv_h <= THUMBNAIL_ONE_READ_PIXELS:
        cells = _cells(reader, level, whole, (out_w, out_h), out_w, out_h)
    elif lv_w * lv_h <= THUMBNAIL_BUDGET_PIXELS:
        cells = _band_cells(reader, level, whole, (out_w, out_h), THUMBNAIL_BLOCK * THUMBNAIL_BLOCK)
    else:
        cells = _sample_cells(reader, level, out_w, out_h)
    out = np.full((out_h, out_w, 3), DAMAGED_GREY, np.uint8)
    read_any, first_error = _fill(reader, level, out, cells, retry=True)
    if not read_any and first_error is not None:
        raise first_error
    return out


def _cells(reader: SlideReader, level: int, window, out_size, step_x: int, step_y: int) -> list:
    """(result rectangle, level region) pairs tiling a window of the result in steps of result pixels."""
    lv_w, lv_h = reader.level_dimensions[level]
    fx, fy = lv_w / out_size[0], lv_h / out_size[1]  # level pixels per result pixel
    wx0, wy0, wx1, wy1 = window
    cells = []
    for oy0 in range(wy0, wy1, step_y):
        oy1 = min(oy0 + step_y, wy1)
        ly0 = min(int(oy0 * fy), lv_h - 1)
        ly1 = min(lv_h, max(ly0 + 1, math.ceil(oy1 * fy)))
        for ox0 in range(wx0, wx1, step_x):
            ox1 = min(ox0 + step_x, wx1)
            lx0 = min(int(ox0 * fx), lv_w - 1)
            lx1 = min(lv_w, max(lx0 + 1, math.ceil(ox1 * fx)))
            cells.append(((ox0, oy0, ox1, oy1), (lx0, ly0, lx1 - lx0, ly1 - ly0)))
    return cells


def _band_cells(reader: SlideReader, level: int, window, out_size, area: int) -> list:
    """Cells of about ``area`` level pixels, as wide as the level allows: a stripped file decodes each strip once."""
    lv_w, lv_h = reader.level_dimensions[level]
    fx, fy = lv_w / out_size[0], lv_h / out_size[1]
    width = window[2] - window[0]
    step_x = width if width * fx <= area else max(1, int(area / fx))
    step_y = max(1, int(area / (step_x * fx) / fy))
    return _cells(reader, level, window, out_size, step_x, step_y)


def _sample_cells(reader: SlideReader, level: int, out_w: int, out_h: int) -> list:
    """Cells for a level too large to decode: one patch from the centre of each ``_SAMPLE_CELL`` square."""
    lv_w, lv_h = reader.level_dimensions[level]
    fx, fy = lv_w / out_w, lv_h / out_h
    n_cells = -(-out_w // _SAMPLE_CELL) * -(-out_h // _SAMPLE_CELL)
    patch = max(1, min(_SAMPLE_PATCH, int(math.sqrt(THUMBNAIL_SAMPLE_PIXELS / n_cells))))
    cells = []
    for oy0 in range(0, out_h, _SAMPLE_CELL):
        oy1 = min(oy0 + _SAMPLE_CELL, out_h)
        for ox0 in range(0, out_w, _SAMPLE_CELL):
            ox1 = min(ox0 + _SAMPLE_CELL, out_w)
            pw = max(1, min(patch, int((ox1 - ox0) * fx)))
            ph = max(1, min(patch, int((oy1 - oy0) * fy)))
            cx, cy = (ox0 + ox1) / 2 * fx, (oy0 + oy1) / 2 * fy
            lx0 = min(max(0, int(cx - pw / 2)), lv_w - pw)
            ly0 = min(max(0, int(cy - ph / 2)), lv_h - ph)
            cells.append(((ox0, oy0, ox1, oy1), (lx0, ly0, pw, ph)))
    return cells


def _fill(reader: SlideReader, level: int, out: np.ndarray, cells, retry: bool):
    """Read each cell's level region and resize it into ``out``: (whether any was read, the first error).

    With ``retry``, a cell that cannot be decoded is read again in ``_DAMAGE_BLOCK`` squares.
    """
    ds = reader.level_downsamples[level]
    out_size = (out.shape[1], out.shape[0])
    first_error, read_any = None, False
    for (ox0, oy0, ox1, oy1), (lx, ly, lw, lh) in cells:
        try:
            rgb = reader.read_region(round(lx * ds), round(ly * ds), level, lw, lh)
        except SlideReadError as err:
            if reader.closed:
                raise
            if retry and lw * lh > _DAMAGE_BLOCK * _DAMAGE_BLOCK:
                lv_w, lv_h = reader.level_dimensions[level]
                step_x = max(1, int(_DAMAGE_BLOCK * out_size[0] / lv_w))
                step_y = max(1, int(_DAMAGE_BLOCK * out_size[1] / lv_h))
                small = _cells(reader, level, (ox0, oy0, ox1, oy1), out_size, step_x, step_y)
                some, err_small = _fill(reader, level, out, small, retry=False)
                read_any = read_any or some
                first_error = first_error or err_small
            else:
                first_error = first_error or err
            continue
        read_any = True
        if rgb.shape[:2] != (oy1 - oy0, ox1 - ox0):
            rgb = cv2.resize(rgb, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_AREA)
        out[oy0:oy1, ox0:ox1] = rgb
    return read_any, first_error
