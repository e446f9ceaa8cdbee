"""Annotations to pixel masks at any pyramid level, and masks back to level-0 polygons.

Frames: annotation geometry is in level-0 pixels, where pixel ``i`` covers ``[i, i + 1)``;
a mask at downsample ``d`` has pixel ``j`` covering level-0 ``[j * d, (j + 1) * d)``.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import cv2
import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon

from core.annotations.geometry import clean
from core.annotations.model import Annotation, Polygonal

#: Sub-pixel bits given to ``cv2.fillPoly`` (1/16 pixel).
SHIFT = 4
#: ``cv2.fillPoly`` fills every pixel the outline touches (about a quarter pixel too much on
#: average); rings are moved this many mask pixels inwards first so that area is unbiased.
INSET = 0.25
#: Longest outline edge handed to ``cv2.fillPoly``, in mask pixels (see ``_paint``).
SEGMENT = 16
#: Masks beyond this many pixels are refused (ask for a coarser level or a window).
MAX_MASK_PIXELS = 2**31 - 1


def label_values_for(annotations: Iterable[Annotation]) -> dict[str, int]:
    """Label 1, 2, ... for each class name in first-seen order."""
    values: dict[str, int] = {}
    for ann in annotations:
        values.setdefault(ann.class_name, len(values) + 1)
    return values


def rasterise(annotations: Iterable[Annotation], class_name: str | None, l0_w: int, l0_h: int, downsample: float,
              label_values: Mapping[str, int] | None = None,
              window: tuple[float, float, int, int] | None = None) -> np.ndarray:
    """A uint8 mask of annotations at one level (or one window of it).

    Parameters
    ----------
    annotations : iterable of Annotation
        Marks in level-0 pixels, in drawing order: where marks overlap the later one wins.
    class_name : str or None
        A class name gives a binary mask (1 inside that class's marks, holes excluded, other
        classes ignored). None gives a label mask using ``label_values``.
    l0_w, l0_h : int
        Level-0 size of the slide; the whole-level mask is ``ceil(l0_w / downsample)`` by
        ``ceil(l0_h / downsample)``.
    downsample : float
        Level-0 pixels per mask pixel (> 0).
    label_values : mapping of str to int, optional
        Value per class name for a label mask (1..255); classes not named are left out. Default:
        1, 2, ... in first-seen order (:func:`label_values_for`).
    window : (l0_x, l0_y, lv_w, lv_h), optional
        Only this window: top-left corner in level-0 pixels, size in mask pixels; a tile can be
        rasterised without the whole slide.

    Returns
    -------
    numpy.ndarray
        uint8 array of shape (lv_h, lv_w).
    """
    if not (downsample > 0 and math.isfinite(downsample)):
        raise ValueError(f"downsample must be a positive number, got {downsample!r}")
    annotations = list(annotations)
    if window is None:
        l0_x, l0_y = 0.0, 0.0
        lv_w, lv_h = math.ceil(l0_w / downsample), math.ceil(l0_h / downsample)
    else:
        l0_x, l0_y, lv_w, lv_h = float(window[0]), float(window[1]), int(window[2]), int(window[3])
    if lv_w <= 0 or lv_h <= 0:
        raise ValueError(f"mask size must be positive, got {lv_w}x{lv_h}")
    if lv_w * lv_h > MAX_MASK_PIXELS:
        raise ValueError(f"a {lv_w}x{lv_h} mask is too large; use a coarser level or a window")
    if class_name is not None:
        values = {class_name: 1}
    else:
        values = dict(label_values) if label_values is not None else label_values_for(annotations)
    mask = np.zeros((lv_h, lv_w), np.uint8)
    for ann in annotations:
        value = values.get(ann.class_name)
        if not value:
            continue
        _paint(mask, ann.geometry, int(value), l0_x, l0_y, downsample)
    return mask


def _paint(mask: np.ndarray, geometry: Polygonal, value: int, l0_x: float, l0_y: float, downsample: float) -> None:
    """Fill one mark into ``mask`` (exteriors, then holes cleared) inside its bounding box only."""
    lv_h, lv_w = mask.shape
    b0, b1, b2, b3 = geometry.bounds
    # mask-pixel bounding box of the mark, clipped to the mask plus a margin: cv2 steps along a
    # clipped edge slightly differently, so edges are cut into pieces shorter than the margin and
    # a window (a tile) gets exactly the pixels of the whole mask
    margin = 2 * SEGMENT
    x0 = max(-margin, math.floor((b0 - l0_x) / downsample) - 1)
    y0 = max(-margin, math.floor((b1 - l0_y) / downsample) - 1)
    x1 = min(lv_w + margin, math.ceil((b2 - l0_x) / downsample) + 1)
    y1 = min(lv_h + margin, math.ceil((b3 - l0_y) / downsample) + 1)
    if max(x0, 0) >= min(x1, lv_w) or max(y0, 0) >= min(y1, lv_h):
        return
    scratch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    scale = 1 << SHIFT

    def points(ring) -> np.ndarray:
        xy = np.asarray(ring.coords, np.float64)
        # level-0 -> mask pixels; cv2 puts pixel centres on integers, hence the half-pixel shift
        lv = np.empty_like(xy)
        lv[:, 0] = (xy[:, 0] - l0_x) / downsample - 0.5 - x0
        lv[:, 1] = (xy[:, 1] - l0_y) / downsample - 0.5 - y0
        lv = np.clip(lv, -2**20, 2**20)
        return np.round(lv * scale).astype(np.int32).reshape(-1, 1, 2)

    parts = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    inset = INSET * downsample
    for part in parts:
        outer = _inset_rings(part.exterior, inset)
        if not outer:
            continue
        cv2.fillPoly(scratch, [points(_segmented(r, downsample)) for r in outer], 1, cv2.LINE_8, SHIFT)
        holes = [r for interior in part.interiors for r in _inset_rings(interior, inset)]
        if holes:
            cv2.fillPoly(scratch, [points(_segmented(r, downsample)) for r in holes], 0, cv2.LINE_8, SHIFT)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, lv_w), min(y1, lv_h)
    inside = scratch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] > 0
    mask[cy0:cy1, cx0:cx1][inside] = value


def _inset_rings(ring, inset: float) -> list:
    """The rings of the area inside ``ring`` moved ``inset`` level-0 pixels inwards."""
    shrunk = Polygon(ring).buffer(-inset, join_style="mitre") if inset > 0 else Polygon(ring)
    if shrunk.is_empty:
        return []
    return [p.exterior for p in (shrunk.geoms if hasattr(shrunk, "geoms") else [shrunk]) if not p.is_empty]


def _segmented(ring, downsample: float):
    return shapely.segmentize(ring, SEGMENT * downsample)


def vectorise(mask: np.ndarray, downsample: float = 1.0, min_area_l0: float = 1.0, value: int | None = None,
              origin: tuple[float, float] = (0.0, 0.0), simplify: float = 0.0) -> list[Polygonal]:
    """Level-0 polygons (with holes) of a mask's foreground.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D array; foreground is non-zero, or equal to ``value`` when given.
    downsample : float
        Level-0 pixels per mask pixel.
    min_area_l0 : float
        Pieces smaller than this many square level-0 pixels are dropped.
    value : int, optional
        Vectorise only pixels with this label.
    origin : (l0_x, l0_y)
        Level-0 position of the mask's top-left corner (for a window).
    simplify : float
        Douglas-Peucker tolerance in level-0 pixels (0 keeps every pixel step).

    Returns
    -------
    list of Polygon or MultiPolygon
        One entry per connected region, following pixel edges.
    """
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {mask.shape}")
    binary = ((mask == value) if value is not None else (mask != 0)).astype(np.uint8)
    if not binary.any():
        return []
    # a one-pixel border of background keeps contours at the image edge closed and outside-first
    padded = cv2.copyMakeBorder(binary, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    out = []
    for index, contour in enumerate(contours):
        if hierarchy[index][3] != -1:  # a hole; handled with its outer contour
            continue
        region = _pixel_region(contour)
        child = hierarchy[index][2]
        holes = []
        while child != -1:
            hole = _hole_region(contours[child])
            if hole is not None:
                holes.append(hole)
            child = hierarchy[child][0]
        if region is None:
            continue
        if holes:
            region = region.difference(shapely.union_all(holes))
        # contour coordinates are padded-pixel centres: -1 for the padding, +0.5 to the centre
        region = affinity.translate(region, -0.5, -0.5)
        region = affinity.scale(region, downsample, downsample, origin=(0, 0))
        region = affinity.translate(region, origin[0], origin[1])
        if simplify > 0:
            region = region.simplify(simplify, preserve_topology=True)
        region = clean(region, min_area=max(min_area_l0, 1e-9))
        if region is not None:
            out.append(region)
    return out


def _ring_band(points: np.ndarray, side: int = -1):
    """The pixels a closed contour of pixel centres runs through, as far as they lie on one side of it.

    Every pixel on the contour is a unit square. Along horizontal and vertical steps the whole squares
    are taken; along 45-degree runs only the half of each square on ``side`` of the centre line
    (-1 outside the ring, +1 inside it; both when the ring has no area), because the other half lies
    inside the ring (outer contours) or outside the hole (holes) anyway. The result is exact: no
    pixel corner is cut and no neighbouring pixel is touched, so areas equal pixel counts.
    """
    if len(points) == 1:
        x, y = points[0]
        return shapely.box(x - 0.5, y - 0.5, x + 0.5, y + 0.5)
    a = points.astype(np.float64)
    b = np.roll(a, -1, axis=0)
    d = b - a
    area2 = float(np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]))  # twice the signed area
    axis = (d[:, 0] == 0) | (d[:, 1] == 0)
    lo, hi = np.minimum(a[axis], b[axis]), np.maximum(a[axis], b[axis])
    pieces = list(shapely.box(lo[:, 0] - 0.5, lo[:, 1] - 0.5, hi[:, 0] + 0.5, hi[:, 1] + 0.5))
    lone = ~axis & ~np.roll(axis, 1)  # vertices between two 45-degree runs: no straight step covers them
    pieces += list(shapely.box(a[lone, 0] - 0.5, a[lone, 1] - 0.5, a[lone, 0] + 0.5, a[lone, 1] + 0.5))
    sides = [side * (1 if area2 > 0 else -1)] if area2 != 0 else [1, -1]
    for i in np.flatnonzero(~axis & (np.abs(d[:, 0]) >= 2)):
        n = int(abs(d[i, 0]))
        s = np.sign(d[i])
        left = 0.5 * np.array([-s[1], s[0]])  # half the way to the square's corner on the left of the run
        centres = a[i] + s * np.arange(n + 1)[:, None]
        touch = centres[:-1] + s / 2  # where square k meets square k + 1
        for sign in sides:
            corners = centres[1:-1] + sign * left  # of the inner squares, on that side
            zigzag = np.empty((2 * n - 1, 2))
            zigzag[0::2] = touch[::-1]
            zigzag[1::2] = corners[::-1]
            pieces.append(Polygon(np.vstack([touch[:1], zigzag])))
    return shapely.union_all(pieces)


def _pixel_region(contour: np.ndarray):
    """The pixels inside an outer contour of pixel centres, edges included."""
    points = contour.reshape(-1, 2).astype(np.float64)
    band = _ring_band(points)
    if len(points) >= 3:
        inside = shapely.make_valid(Polygon(points))
        return shapely.union_all([band, inside])
    return band


def _hole_region(contour: np.ndarray):
    """The background pixels inside a hole contour (the contour runs through foreground pixel centres)."""
    points = contour.reshape(-1, 2).astype(np.float64)
    if len(points) < 3:
        return None
    inside = shapely.make_valid(Polygon(points))
    hole = inside.difference(_ring_band(points, side=1))
    return None if hole.is_empty else hole
