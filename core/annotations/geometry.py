"""Geometry helpers for marks: repair, strokes, shapes (level-0 pixels)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from core.annotations.model import Polygonal

#: Pieces smaller than this (square level-0 pixels) are dropped as slivers.
MIN_AREA_L0 = 1.0
#: Coordinates beyond this are refused (no scanner makes slides this large).
MAX_COORDINATE = 1e7
#: Annotation files keep coordinates to 1/1000 level-0 pixel; imported outlines are snapped to it.
GRID_DECIMALS = 3
#: Above this many (estimated) self-crossings an outline is simplified before it is repaired: the
#: repair's time and memory grow with the crossings (10^5 of them take seconds and a gigabyte).
MAX_CROSSINGS = 20_000
#: Douglas-Peucker tolerances (level-0 pixels) tried in turn on such an outline; if the last one
#: still leaves too many crossings the outline is given up as too damaged to repair.
SIMPLIFY_STEPS = (0.5, 2.0, 8.0)
#: Segments sampled to estimate an outline's self-crossings (every one when it has fewer).
CROSSING_SAMPLES = 64


@dataclass(frozen=True)
class Repair:
    """The outcome of :func:`repair`.

    Attributes
    ----------
    geometry : Polygon, MultiPolygon or None
        Valid, or None when nothing polygonal remains or the outline was too damaged.
    crossings : float
        Estimated self-crossings of the input (0 for a valid one).
    simplified : float
        Douglas-Peucker tolerance (level-0 pixels) applied before the repair; 0 when none was needed.
    too_damaged : bool
        True when even the coarsest simplification left too many crossings to repair at bounded cost.
    """

    geometry: Polygonal | None
    crossings: float = 0.0
    simplified: float = 0.0
    too_damaged: bool = False


def clean(geometry: BaseGeometry | None, min_area: float = MIN_AREA_L0) -> Polygonal | None:
    """A valid Polygon or MultiPolygon from any geometry, or None when nothing polygonal remains.

    Self-intersections are repaired (see :func:`repair`), lines and points dropped, slivers removed.
    """
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = repair(geometry, min_area).geometry
        if geometry is None:
            return None
    return _keep_areas(geometry, min_area)


def _keep_areas(geometry: BaseGeometry, min_area: float) -> Polygonal | None:
    """The polygonal parts of a valid geometry of at least ``min_area``, merged where they overlap."""
    if isinstance(geometry, Polygon):
        return geometry if geometry.area >= min_area and not geometry.is_empty else None
    parts = [p for p in _polygons(geometry) if p.area >= min_area]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    merged = MultiPolygon(parts)
    if merged.is_valid:  # parts of a valid geometry touch at points at most: nothing to merge
        return merged
    parts = [p for p in _polygons(shapely.union_all(parts)) if p.area >= min_area]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def repair(geometry: BaseGeometry, min_area: float = MIN_AREA_L0) -> Repair:
    """A valid polygonal geometry from an invalid one, at a cost bounded whatever the input.

    The area an outline encloses is kept (GEOS's "structure" repair: a self-overlapping outline
    gives the union of its loops, holes are cut out). An outline that crosses itself more than
    :data:`MAX_CROSSINGS` times (pixel jitter, or noise) is first simplified with the tolerances of
    :data:`SIMPLIFY_STEPS` until it does not; one that still does is given up (``too_damaged``).
    """
    if geometry is None or geometry.is_empty:
        return Repair(None)
    if geometry.is_valid:
        return Repair(_keep_areas(geometry, min_area))
    crossings = crossing_estimate(geometry)
    work, simplified, left = geometry, 0.0, crossings
    for tolerance in SIMPLIFY_STEPS:
        if left <= MAX_CROSSINGS:
            break
        work, simplified = _simplify_rings(geometry, tolerance), tolerance
        if work is None:
            return Repair(None, crossings, simplified)
        left = crossing_estimate(work)
    if left > MAX_CROSSINGS:
        return Repair(None, crossings, simplified, too_damaged=True)
    fixed = shapely.make_valid(work, method="structure", keep_collapsed=False)
    return Repair(_keep_areas(fixed, min_area) if not fixed.is_empty else None, crossings, simplified)


def _simplify_rings(geometry: BaseGeometry, tolerance: float) -> Polygonal | None:
    """Each ring simplified on its own (as a line: no repair, so the cost stays linear)."""
    polygons = []
    for part in _polygons(geometry):
        rings = []
        for ring in (part.exterior, *part.interiors):
            line = shapely.simplify(LineString(ring.coords), tolerance, preserve_topology=False)
            coords = shapely.get_coordinates(line)
            if len(coords) >= 4:
                rings.append(coords)
            elif not rings:
                break  # the exterior collapsed: the part goes
        if rings:
            polygons.append(Polygon(rings[0], rings[1:]))
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def crossing_estimate(geometry: BaseGeometry) -> float:
    """About how many times the rings of ``geometry`` cross each other or themselves.

    Exact for outlines of up to :data:`CROSSING_SAMPLES` segments; otherwise that many segments
    (chosen with a fixed seed) are tested against every other, so the cost is linear in the
    number of vertices whatever the number of crossings.
    """
    rings = shapely.get_rings(np.asarray(list(_polygons(geometry)), dtype=object))
    if len(rings) == 0:
        return 0.0
    coords, index = shapely.get_coordinates(rings, return_index=True)
    same = index[1:] == index[:-1]
    ax, ay = np.ascontiguousarray(coords[:-1][same].T)
    bx, by = np.ascontiguousarray(coords[1:][same].T)
    n = len(ax)
    if n < 4:
        return 0.0
    picks = (np.arange(n) if n <= CROSSING_SAMPLES
             else np.random.default_rng(0).choice(n, CROSSING_SAMPLES, replace=False))
    lo_x, hi_x = np.minimum(ax, bx), np.maximum(ax, bx)
    lo_y, hi_y = np.minimum(ay, by), np.maximum(ay, by)
    hits = 0
    for i in picks:
        px, py, qx, qy = ax[i], ay[i], bx[i], by[i]
        near = np.flatnonzero((lo_x <= max(px, qx)) & (hi_x >= min(px, qx)))
        near = near[(lo_y[near] <= max(py, qy)) & (hi_y[near] >= min(py, qy))]
        if len(near) < 2:
            continue
        sx, sy, ex, ey = ax[near], ay[near], bx[near], by[near]
        ux, uy = qx - px, qy - py
        straddle = (ux * (sy - py) - uy * (sx - px)) * (ux * (ey - py) - uy * (ex - px)) < 0
        vx, vy = (ex - sx)[straddle], (ey - sy)[straddle]
        sx, sy = sx[straddle], sy[straddle]
        hits += int(np.count_nonzero((vx * (py - sy) - vy * (px - sx)) * (vx * (qy - sy) - vy * (qx - sx)) < 0))
    return hits * n / (2.0 * len(picks))


def snap(geometry: Polygonal | None, min_area: float = MIN_AREA_L0) -> Polygonal | None:
    """``geometry`` with its coordinates on the 1/1000-pixel grid annotation files keep, still valid.

    Rounding rarely makes an outline invalid (two edges closer than the grid); then GEOS's
    precision reducer snaps it instead, which keeps it valid.
    """
    if geometry is None or geometry.is_empty:
        return None
    rounded = shapely.transform(geometry, lambda xy: np.round(xy, GRID_DECIMALS) + 0.0)
    if not rounded.is_valid:
        rounded = shapely.set_precision(geometry, 10.0 ** -GRID_DECIMALS)
    return _keep_areas(rounded, min_area) if not rounded.is_empty else None


def _polygons(geometry: BaseGeometry) -> Iterable[Polygon]:
    if isinstance(geometry, Polygon):
        yield geometry
    elif isinstance(geometry, (MultiPolygon, GeometryCollection)):
        for part in geometry.geoms:
            yield from _polygons(part)


def polygon_from_points(points: Sequence[tuple[float, float]]) -> Polygonal | None:
    """A closed polygon through ``points`` (repaired if it crosses itself); None when degenerate."""
    if len(points) < 3:
        return None
    check_coordinates(points)
    return clean(Polygon(points))


def stroke(points: Sequence[tuple[float, float]], radius: float) -> Polygonal | None:
    """The area swept by a round brush of ``radius`` along ``points``."""
    if not points or radius <= 0:
        return None
    check_coordinates(points)
    if len(points) == 1:
        shape = Point(points[0]).buffer(radius, quad_segs=16)
    else:
        shape = LineString(points).buffer(radius, quad_segs=16, cap_style="round", join_style="round")
    return clean(shape)


def rectangle(l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float) -> Polygonal | None:
    check_coordinates([(l0_x0, l0_y0), (l0_x1, l0_y1)])
    return clean(box(min(l0_x0, l0_x1), min(l0_y0, l0_y1), max(l0_x0, l0_x1), max(l0_y0, l0_y1)))


def ellipse(l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float, segments: int = 72) -> Polygonal | None:
    """The ellipse inscribed in the rectangle between two corners."""
    check_coordinates([(l0_x0, l0_y0), (l0_x1, l0_y1)])
    cx, cy = (l0_x0 + l0_x1) / 2, (l0_y0 + l0_y1) / 2
    rx, ry = abs(l0_x1 - l0_x0) / 2, abs(l0_y1 - l0_y0) / 2
    if rx < 0.5 or ry < 0.5:
        return None
    ring = [(cx + rx * math.cos(2 * math.pi * i / segments), cy + ry * math.sin(2 * math.pi * i / segments))
            for i in range(segments)]
    return clean(Polygon(ring))


def check_coordinates(points: Iterable[tuple[float, float]]) -> None:
    """Refuse NaN, infinite or absurdly large coordinates with a ValueError."""
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"coordinate ({x}, {y}) is not a finite number")
        if abs(x) > MAX_COORDINATE or abs(y) > MAX_COORDINATE:
            raise ValueError(f"coordinate ({x:g}, {y:g}) is beyond {MAX_COORDINATE:g} pixels")
