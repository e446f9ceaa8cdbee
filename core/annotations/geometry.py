"""Geometry helpers for marks: repair, strokes, shapes (level-0 pixels)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import shapely
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from core.annotations.model import Polygonal

#: Pieces smaller than this (square level-0 pixels) are dropped as slivers.
MIN_AREA_L0 = 1.0
#: Coordinates beyond this are refused (no scanner makes slides this large).
MAX_COORDINATE = 1e7


def clean(geometry: BaseGeometry | None, min_area: float = MIN_AREA_L0) -> Polygonal | None:
    """A valid Polygon or MultiPolygon from any geometry, or None when nothing polygonal remains.

    Self-intersections are repaired (``make_valid``), lines and points dropped, slivers removed.
    """
    if geometry is None or geometry.is_empty:
        return None
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    parts = [p for p in _polygons(geometry) if p.area >= min_area]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    merged = shapely.union_all(parts)
    parts = [p for p in _polygons(merged) if p.area >= min_area]
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


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
