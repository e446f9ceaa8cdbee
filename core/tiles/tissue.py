"""Tissue detection on a low-resolution level: where the tissue is, where pen ink is, where the glass is.

Frames: the masks are at ``downsample_x`` by ``downsample_y`` level-0 pixels per mask pixel, mask
pixel ``(row, col)`` covering level-0 ``[col * downsample_x, (col + 1) * downsample_x)`` in x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from shapely import affinity

from core.annotations.masks import vectorise
from core.slide.base import SlideReader

#: Saturation (0-255) below which a pixel is never tissue, whatever Otsu says (an all-white slide).
MIN_SATURATION = 20
#: Optical-density sum (over R, G, B) below which a pixel is glass.
MIN_OD = 0.15
#: A pixel whose channels are all above this is near-white glass.
WHITE_LEVEL = 220
#: OpenCV hues (0-179) of H&E: pink eosin and purple haematoxylin, wrapping through red.
HE_HUE_LOW, HE_HUE_HIGH = 125, 15
#: Saturation above which a hue outside the H&E range is ink rather than faded stain.
PEN_SATURATION = 70
#: A pixel with every channel below this is black ink (or a dust clump), not stain.
DARK_LEVEL = 45


class AreaSum:
    """Exact area sums of a piecewise-constant image over fractional rectangles (summed-area table)."""

    def __init__(self, image: np.ndarray):
        self.shape = image.shape
        self.table = cv2.integral(np.ascontiguousarray(image, np.float64) if image.dtype != np.uint8 else image,
                                  sdepth=cv2.CV_64F)

    def mean(self, x0, y0, x1, y1) -> np.ndarray:
        """Mean over ``[x0, x1) x [y0, y1)`` in image pixels (arrays or floats, clipped to the image)."""
        h, w = self.shape
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
        area = (np.asarray(x1, float) - x0) * (np.asarray(y1, float) - y0)
        total = self._at(x1, y1) - self._at(x0, y1) - self._at(x1, y0) + self._at(x0, y0)
        full = np.maximum(area, 1e-12)
        return np.where(area > 0, total / full, 0.0)

    def _at(self, x, y) -> np.ndarray:
        # the integral of a piecewise-constant image is bilinear inside each pixel: interpolation is exact
        t = self.table
        h, w = self.shape
        x, y = np.asarray(x, float), np.asarray(y, float)
        i, j = np.minimum(np.floor(x).astype(int), w - 1), np.minimum(np.floor(y).astype(int), h - 1)
        i, j = np.maximum(i, 0), np.maximum(j, 0)
        fx, fy = x - i, y - j
        top = t[j, i] * (1 - fx) + t[j, i + 1] * fx
        bottom = t[j + 1, i] * (1 - fx) + t[j + 1, i + 1] * fx
        return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class TissueMask:
    """Where a slide has tissue, at low resolution.

    Attributes
    ----------
    mask : ndarray of bool
        Tissue (pen ink and glass excluded), shape (mask_h, mask_w).
    pen : ndarray of bool
        Pen ink: saturated green, blue or black marks.
    background : ndarray of bool
        Near-white glass.
    downsample_x, downsample_y : float
        Level-0 pixels per mask pixel along x and y.
    l0_size : (int, int)
        Level-0 (width, height) of the slide.
    mpp : float or None
        Micrometres per level-0 pixel (mean of x and y), None when unknown.
    """

    mask: np.ndarray
    pen: np.ndarray
    background: np.ndarray
    downsample_x: float
    downsample_y: float
    l0_size: tuple[int, int]
    mpp: float | None = None
    _tissue_sum: AreaSum = field(init=False, repr=False, compare=False)
    _pen_sum: AreaSum = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tissue_sum", AreaSum(self.mask.astype(np.uint8)))
        object.__setattr__(self, "_pen_sum", AreaSum(self.pen.astype(np.uint8)))

    @property
    def downsample(self) -> float:
        """Mean level-0 pixels per mask pixel."""
        return (self.downsample_x + self.downsample_y) / 2

    @property
    def fraction(self) -> float:
        """Tissue fraction of the whole slide."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction_in(self, l0_x, l0_y, l0_w, l0_h):
        """Tissue fraction of level-0 rectangles (scalars give a float, arrays an array).

        Parameters
        ----------
        l0_x, l0_y : float or ndarray
            Top-left corners in level-0 pixels.
        l0_w, l0_h : float or ndarray
            Sizes in level-0 pixels; parts outside the slide count as no tissue.

        Returns
        -------
        float or ndarray
        """
        return self._fraction(self._tissue_sum, l0_x, l0_y, l0_w, l0_h)

    def pen_fraction_in(self, l0_x, l0_y, l0_w, l0_h):
        """Pen-ink fraction of level-0 rectangles, like :meth:`fraction_in`."""
        return self._fraction(self._pen_sum, l0_x, l0_y, l0_w, l0_h)

    def _fraction(self, area_sum: AreaSum, l0_x, l0_y, l0_w, l0_h):
        x0, y0 = np.asarray(l0_x, float) / self.downsample_x, np.asarray(l0_y, float) / self.downsample_y
        x1 = x0 + np.asarray(l0_w, float) / self.downsample_x
        y1 = y0 + np.asarray(l0_h, float) / self.downsample_y
        inside = area_sum.mean(x0, y0, x1, y1) * _clipped_share(x0, x1, area_sum.shape[1]) \
            * _clipped_share(y0, y1, area_sum.shape[0])
        return float(inside) if np.ndim(inside) == 0 else inside

    def to_polygons(self, simplify: float = 1.0) -> list:
        """The tissue as level-0 polygons (with holes), simplified by ``simplify`` mask pixels."""
        pieces = vectorise(self.mask, 1.0, min_area_l0=1.0, simplify=simplify)
        return [affinity.scale(p, self.downsample_x, self.downsample_y, origin=(0, 0)) for p in pieces]


def _clipped_share(lo, hi, size: int):
    """Share of ``[lo, hi)`` that lies inside ``[0, size)`` (area outside the mask counts as zero)."""
    length = np.asarray(hi, float) - lo
    inside = np.clip(hi, 0, size) - np.clip(lo, 0, size)
    return np.where(length > 0, inside / np.maximum(length, 1e-12), 0.0)


def detect_tissue(reader: SlideReader, target_mpp: float = 16.0, max_side: int = 2048, min_side: int = 512,
                  min_area_um2: float = 20_000.0, min_area_px: int = 16, closing_um: float = 32.0,
                  detect_pen: bool = True, slide_mpp: tuple[float, float] | None = None) -> TissueMask:
    """Find the tissue of a slide from a low-resolution level (never level 0 unless the slide is small).

    Tissue is where saturation is above its Otsu threshold and the optical density is above glass;
    pen ink (saturated hues outside the pink-purple H&E range, or near black) is flagged apart and
    never counted as tissue. The mask is closed, holes inside tissue are filled, specks dropped.

    Parameters
    ----------
    reader : SlideReader
        The slide.
    target_mpp : float
        Micrometres per mask pixel wanted when the slide's µm/px is known.
    max_side : int
        The longest side of the mask (and, without µm/px, its size).
    min_side : int
        The longest side is at least this (when the slide is that large), so that small slides
        get a mask fine enough for their tiles even beyond ``target_mpp``.
    min_area_um2 : float
        Pieces of tissue smaller than this are dropped (when µm/px is known).
    min_area_px : int
        Pieces smaller than this many mask pixels are dropped (when µm/px is unknown).
    closing_um : float
        Diameter of the closing that joins tissue across small gaps (16 mask px at most without µm/px).
    detect_pen : bool
        Flag pen ink; False counts every stained pixel as tissue.
    slide_mpp : (float, float), optional
        The slide's µm/px when it differs from what the file records (a value the user entered).

    Returns
    -------
    TissueMask
    """
    l0_w, l0_h = reader.dimensions
    stated = slide_mpp or reader.mpp
    mpp = float(np.mean(stated)) if stated else None
    downsample = max(l0_w, l0_h) / max_side
    if mpp is not None:
        downsample = max(downsample, min(target_mpp / mpp, max(l0_w, l0_h) / min_side))
    downsample = max(downsample, 1.0)
    mask_w, mask_h = max(1, round(l0_w / downsample)), max(1, round(l0_h / downsample))
    rgb = _read_low_resolution(reader, downsample, mask_w, mask_h)
    ds_x, ds_y = l0_w / mask_w, l0_h / mask_h
    mask_mpp = mpp * (ds_x + ds_y) / 2 if mpp is not None else None

    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    hue, sat = hsv[:, :, 0], hsv[:, :, 1]
    red, green, blue = cv2.split(rgb)  # per-channel planes: reductions over the last axis are slow in numpy
    od = _od_sum(red, green, blue)
    background = (cv2.min(cv2.min(red, green), blue) > WHITE_LEVEL) | (od < MIN_OD)
    brightest = cv2.max(cv2.max(red, green), blue)
    pen = _pen(brightest, hue, sat) if detect_pen else np.zeros_like(background)
    candidates = sat[~pen]  # glass included: Otsu separates it from stain, even where tissue is scarce
    sat_threshold = MIN_SATURATION
    if candidates.size > 16:
        otsu, _ = cv2.threshold(candidates.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        sat_threshold = max(otsu, MIN_SATURATION)
    tissue = (sat > sat_threshold) & ~background & ~pen

    radius = closing_um / mask_mpp / 2 if mask_mpp else 8
    radius = int(np.clip(round(radius), 1, 8))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    tissue = cv2.morphologyEx(tissue.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    tissue = fill_holes(tissue)
    pen_wide = cv2.dilate(pen.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 if pen.any() else pen
    tissue &= ~pen_wide
    min_px = min_area_um2 / mask_mpp ** 2 if mask_mpp else min_area_px
    tissue = _remove_small(tissue, max(1, math.ceil(min_px)))
    return TissueMask(mask=tissue, pen=pen, background=background & ~tissue, downsample_x=ds_x,
                      downsample_y=ds_y, l0_size=(l0_w, l0_h), mpp=mpp)


def _read_low_resolution(reader: SlideReader, downsample: float, mask_w: int, mask_h: int) -> np.ndarray:
    """The whole slide at ``mask_w`` x ``mask_h``, read from the coarsest level at least that fine (bounded memory)."""
    return reader.read_downscaled(mask_w, mask_h, downsample)


#: Optical density of each 8-bit value.
_OD = (-np.log((np.arange(256) + 1.0) / 256.0)).astype(np.float32)


def _od_sum(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Optical density summed over the three channels (0 on white glass)."""
    return _OD[red] + _OD[green] + _OD[blue]


def _pen(brightest: np.ndarray, hue: np.ndarray, sat: np.ndarray) -> np.ndarray:
    """Ink: strongly saturated hues outside H&E's pink-purple, or near-black pixels."""
    off_hue = (hue > HE_HUE_HIGH) & (hue < HE_HUE_LOW)
    return (off_hue & (sat > PEN_SATURATION)) | (brightest < DARK_LEVEL)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with enclosed holes filled, like ``scipy.ndimage.binary_fill_holes`` but several times faster.

    Parameters
    ----------
    mask : ndarray of bool, (rows, cols)

    Returns
    -------
    ndarray of bool
        ``mask`` and every background region that does not touch the border.
    """
    # flood the glass from a one-pixel frame; whatever the flood cannot reach is tissue or a hole in it
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(padded, None, (0, 0), 2, flags=4)
    return padded[1:-1, 1:-1] != 2


def _remove_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` without 8-connected pieces smaller than ``min_pixels``."""
    if min_pixels <= 1 or not mask.any():
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False
    return keep[labels]
