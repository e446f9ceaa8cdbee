"""The labelled tile grid: square tiles of one physical size, labelled from a doctor's marks.

Frames: tile positions and sizes are level-0 pixels (``l0_x``, ``tile_l0``); a tile is read from
pyramid level ``level`` at ``read_px`` level pixels and resized to ``tile_px``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable

import cv2
import numpy as np

from core.annotations.model import Annotation
from core.errors import BiopsiaError
from core.slide.base import SlideReader, white_canvas
from core.tiles.edges import axis_starts
# the label and reason codes are read off a TilePlan, so they are importable beside it
from core.tiles.labels import (AMBIGUOUS, BACKGROUND, DROPPED, EXCLUDED, LOW_TISSUE, NON_TUMOUR_LABEL,  # noqa: F401
                               NON_TUMOUR_TILE, PEN, REASONS, SUBPIXELS, TUMOUR_LABEL, TUMOUR_TILE, UNLABELLED,
                               LabelRules, label_tiles)
from core.tiles.tissue import TissueMask

#: The tile sizes (pixels) and scales (µm/px) Biopsia cuts tiles at; values outside are refused.
TILE_PX_RANGE = (16, 1024)
MPP_RANGE = (0.05, 50.0)


@dataclass(frozen=True)
class TileSpec:
    """Tiles of ``tile_px`` pixels at ``mpp`` micrometres per pixel (128 px at 1 µm/px ≈ 10x)."""

    tile_px: int = 128
    mpp: float = 1.0

    def __post_init__(self) -> None:
        if int(self.tile_px) <= 0 or not (self.mpp > 0 and math.isfinite(self.mpp)):
            raise ValueError(f"a tile needs a positive size and µm/px, got {self.tile_px} px at {self.mpp}")


@dataclass(frozen=True)
class TilePlan:
    """Every tile of a slide's grid with its label.

    Attributes
    ----------
    spec : TileSpec
    tile_l0 : int
        Tile side in level-0 pixels.
    level : int
        Pyramid level tiles are read from.
    read_px : int
        Tile side in pixels of ``level`` (resized to ``spec.tile_px`` when different).
    l0_x, l0_y : ndarray of int64
        Top-left corners in level-0 pixels, row-major over the grid.
    label : ndarray of int8
        ``TUMOUR_LABEL``, ``NON_TUMOUR_LABEL`` or ``DROPPED``.
    reason : ndarray of int8
        Index into ``REASONS``.
    tissue_fraction, tumour_fraction : ndarray of float32
        Share of the tile that is tissue, and that Tumour marks cover.
    grid_shape : (int, int)
        (rows, cols) of the grid.
    stride : int or None
        Level-0 step of the regular grid (the tile side unless tiles overlap); None for plans made without it.
    slide_size : (int, int) or None
        Level-0 width and height of the slide.

    Notes
    -----
    The grid covers the whole slide: the last column and row hold the edge tiles, shifted back so they end
    at the slide's edge (`core.tiles.edges`), so ``l0_x`` of the last column is ``width - tile_l0`` rather
    than ``col * stride``.
    """

    spec: TileSpec
    tile_l0: int
    level: int
    read_px: int
    l0_x: np.ndarray
    l0_y: np.ndarray
    label: np.ndarray
    reason: np.ndarray
    tissue_fraction: np.ndarray
    tumour_fraction: np.ndarray
    grid_shape: tuple[int, int]
    stride: int | None = None
    slide_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.l0_x)

    @property
    def counts(self) -> dict[str, int]:
        """Number of tiles per reason (``tumour``, ``non_tumour``, ``background``, ...); they sum to the grid."""
        found = np.bincount(self.reason.astype(np.int64), minlength=len(REASONS))
        return {name: int(n) for name, n in zip(REASONS, found)}

    @property
    def kept(self) -> np.ndarray:
        """Indices of labelled tiles."""
        return np.flatnonzero(self.label != DROPPED)


def tile_size_l0(reader: SlideReader, spec: TileSpec, slide_mpp: tuple[float, float] | None = None) -> int:
    """Side of a ``spec`` tile in level-0 pixels of ``reader``.

    ``slide_mpp`` (e.g. a value the user entered) replaces the µm/px the file records.

    Raises
    ------
    BiopsiaError
        When neither the slide nor ``slide_mpp`` gives its µm/px.
    """
    mpp = slide_mpp or reader.mpp
    if not mpp:
        raise BiopsiaError(f"{reader.display_name}: the slide does not say its micrometres per pixel, so tiles "
                           f"of {spec.mpp:g} µm/px cannot be cut from it (in the window: Slide ▸ Set resolution (µm/px)…)")
    return max(1, round(spec.tile_px * spec.mpp / ((mpp[0] + mpp[1]) / 2)))


def plan_tiles(reader: SlideReader, spec: TileSpec, tissue: TissueMask, annotations: Iterable[Annotation] = (),
               fully_annotated: bool = True, tumour_min: float | None = None, normal_max: float | None = None,
               tissue_min: float | None = None, stride: int | None = None, benign_min: float | None = None,
               exclude_max: float | None = None, pen_max: float | None = None,
               background_max: float | None = None, slide_mpp: tuple[float, float] | None = None) -> TilePlan:
    """Lay a grid of tiles over a slide and label each from the marks (`core.tiles.labels.label_tiles`).

    Parameters
    ----------
    reader : SlideReader
        The slide; it must know its µm/px.
    spec : TileSpec
        Tile size in pixels and µm/px, so that 20x and 40x scans give the same physical tiles.
    tissue : TissueMask
        From :func:`core.tiles.tissue.detect_tissue`.
    annotations : iterable of Annotation
        Marks in level-0 pixels; classes Tumour, Benign and Exclude are used.
    fully_annotated : bool
        Every tumour on the slide is marked, so unmarked tissue is non-tumour; when False only
        tissue inside Benign marks is.
    tumour_min, normal_max, tissue_min : float, optional
        Labelling thresholds; each one not given is `core.tiles.labels.LabelRules`'s default.
    stride : int, optional
        Step between tiles in level-0 pixels (default: the tile size, no overlap). The last tile of each
        row and column is shifted back to end at the slide's edge, so the grid covers the whole slide.
    benign_min, exclude_max, pen_max, background_max : float, optional
        The other thresholds of `LabelRules` (its defaults when not given).
    slide_mpp : (float, float), optional
        The slide's µm/px when it differs from what the file records (a value the user entered).

    Returns
    -------
    TilePlan

    Raises
    ------
    BiopsiaError
        When the slide does not say its µm/px.
    """
    tile_l0 = tile_size_l0(reader, spec, slide_mpp)
    stride = tile_l0 if stride is None else int(stride)
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    l0_w, l0_h = reader.dimensions
    starts_x, starts_y = axis_starts(l0_w, tile_l0, stride), axis_starts(l0_h, tile_l0, stride)
    rows, cols = starts_y.size, starts_x.size
    l0_x = np.tile(starts_x, rows)  # row-major
    l0_y = np.repeat(starts_y, cols)

    tissue_fraction = np.asarray(tissue.fraction_in(l0_x, l0_y, tile_l0, tile_l0), np.float32).reshape(-1)
    pen_fraction = np.asarray(tissue.pen_fraction_in(l0_x, l0_y, tile_l0, tile_l0), np.float32).reshape(-1)
    given = {"tumour_min": tumour_min, "normal_max": normal_max, "tissue_min": tissue_min, "benign_min": benign_min,
             "exclude_max": exclude_max, "pen_max": pen_max, "background_max": background_max}
    rules = replace(LabelRules(), **{name: value for name, value in given.items() if value is not None})
    labels = label_tiles(annotations, l0_x, l0_y, tile_l0, (l0_w, l0_h), fully_annotated, rules,
                         tissue_fraction=tissue_fraction, pen_fraction=pen_fraction)

    downsample = tile_l0 / spec.tile_px
    level = reader.best_level_for_downsample(downsample)
    read_px = max(1, round(tile_l0 / reader.level_downsamples[level]))
    return TilePlan(spec=spec, tile_l0=tile_l0, level=level, read_px=read_px, l0_x=l0_x, l0_y=l0_y,
                    label=labels.label, reason=labels.reason, tissue_fraction=tissue_fraction,
                    tumour_fraction=labels.tumour_fraction,
                    grid_shape=(rows, cols), stride=stride, slide_size=(int(l0_w), int(l0_h)))


def read_tile(reader: SlideReader, plan: TilePlan, i: int) -> np.ndarray:
    """Pixels of tile ``i``: a (tile_px, tile_px, 3) uint8 RGB array.

    Read from ``plan.level`` and resized with area averaging when that level is not exactly
    the tile's resolution. Only the part inside the level's image is asked of the reader; the rest (a
    level whose size was rounded down, a tile beyond the slide) is white glass, whatever the backend does
    out of bounds.
    """
    tile_px = plan.spec.tile_px
    l0_x, l0_y = int(plan.l0_x[i]), int(plan.l0_y[i])
    if plan.level > 0:  # an edge tile ends at the slide's edge: keep it inside the level's rounded size too
        lv_w, lv_h = reader.level_dimensions[plan.level]
        downsample = reader.level_downsamples[plan.level]
        l0_x = _inside_level(l0_x, plan.read_px, downsample, lv_w)
        l0_y = _inside_level(l0_y, plan.read_px, downsample, lv_h)
    rgb = read_padded(reader, l0_x, l0_y, plan.level, plan.read_px)
    if plan.read_px != tile_px:
        rgb = cv2.resize(rgb, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
    return rgb


def _inside_level(l0: int, read_px: int, downsample: float, lv_len: int) -> int:
    """``l0`` moved back by the level pixel or two that rounding the level's size and ``read_px`` can cost."""
    lv = math.floor(l0 / downsample)
    over = lv + read_px - lv_len
    if 0 < over <= 2 and lv - over >= 0:
        return math.ceil((lv - over) * downsample)
    return l0


def read_padded(reader: SlideReader, l0_x: int, l0_y: int, level: int, read_px: int) -> np.ndarray:
    """A ``read_px`` square of ``level`` at level-0 corner (``l0_x``, ``l0_y``), white where it leaves the image.

    The reader is asked only for the part that lies inside the level (level pixels ``floor(l0 / downsample)``
    onwards), so every backend gives the same pixels at the slide's edges.
    """
    downsample = reader.level_downsamples[level]
    lv_w, lv_h = reader.level_dimensions[level]
    lv_x, lv_y = math.floor(l0_x / downsample), math.floor(l0_y / downsample)
    x0, y0 = max(lv_x, 0), max(lv_y, 0)
    x1, y1 = min(lv_x + read_px, lv_w), min(lv_y + read_px, lv_h)
    if x0 == lv_x and y0 == lv_y and x1 - x0 == read_px and y1 - y0 == read_px:
        return reader.read_region(l0_x, l0_y, level, read_px, read_px)
    canvas = white_canvas(read_px, read_px)
    if x1 > x0 and y1 > y0:
        # the corner moves only when the tile starts before the image; then it is the level pixel's level-0 corner
        start_x = l0_x if x0 == lv_x else round(x0 * downsample)
        start_y = l0_y if y0 == lv_y else round(y0 * downsample)
        canvas[y0 - lv_y:y1 - lv_y, x0 - lv_x:x1 - lv_x] = reader.read_region(start_x, start_y, level,
                                                                             x1 - x0, y1 - y0)
    return canvas


def read_order(reader: SlideReader, plan: TilePlan, indices) -> np.ndarray:
    """``indices`` in an order that decodes each stored block of the slide once: band by band of its height.

    Row-major order reads a stored block again for each row of tiles it holds, and a row of a large slide
    holds more blocks than a reader's cache; within a band as high as a block, tiles go column by column.
    Readers that do not say how they store a level keep row-major order.
    """
    indices = np.asarray(indices, np.int64)
    stored = reader.stored_tile_size(plan.level)
    if stored is None or indices.size == 0:
        return indices
    band_l0 = max(1.0, stored[1] * reader.level_downsamples[plan.level])
    ys, xs = plan.l0_y[indices], plan.l0_x[indices]
    return indices[np.lexsort((ys, xs, np.floor_divide(ys, band_l0)))]


def read_tiles(reader: SlideReader, plan: TilePlan, indices) -> np.ndarray:
    """Several tiles as an ``(N, tile_px, tile_px, 3)`` uint8 array, in the order of ``indices``.

    (Reading each block of neighbouring tiles as one region was measured and gained nothing: the
    readers keep decoded stored tiles in their own caches.)
    """
    indices = np.asarray(indices, np.int64)
    out = np.empty((indices.size, plan.spec.tile_px, plan.spec.tile_px, 3), np.uint8)
    for j, i in enumerate(indices):
        out[j] = read_tile(reader, plan, int(i))
    return out
