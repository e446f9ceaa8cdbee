"""Vertex-level editing of polygonal marks: find, move, insert and delete ring vertices (level-0 pixels).

A vertex is addressed by ``(part, ring, index)``: the polygon part of a MultiPolygon (0 for a Polygon),
the ring (0 the exterior, 1.. the holes) and the vertex in that ring (the closing repeat left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry import MultiPolygon, Polygon

from core.annotations.model import Polygonal

Ring = list[tuple[float, float]]


@dataclass(frozen=True)
class VertexRef:
    part: int
    ring: int
    index: int


def parts_of(geometry: Polygonal) -> list[Polygon]:
    return list(geometry.geoms) if isinstance(geometry, MultiPolygon) else [geometry]


def rings_of(polygon: Polygon) -> list[Ring]:
    """Exterior then holes, each without its closing repeat."""
    return [list(ring.coords)[:-1] for ring in (polygon.exterior, *polygon.interiors)]


def _rebuild(geometry: Polygonal, part: int, ring: int, new_ring: Ring) -> Polygonal:
    polygons = []
    for p_index, polygon in enumerate(parts_of(geometry)):
        rings = rings_of(polygon)
        if p_index == part:
            rings[ring] = new_ring
        rings = [r for r in rings if len(r) >= 3]
        if rings and len(rings[0]) >= 3:
            polygons.append(Polygon(rings[0], rings[1:]))
    if len(polygons) == 1:
        return polygons[0]
    return MultiPolygon(polygons)


def nearest_vertex(geometry: Polygonal, l0_x: float, l0_y: float, tolerance: float) -> VertexRef | None:
    """The vertex closest to the point, if within ``tolerance``."""
    best, best_d = None, tolerance
    for p_index, polygon in enumerate(parts_of(geometry)):
        for r_index, ring in enumerate(rings_of(polygon)):
            for v_index, (x, y) in enumerate(ring):
                d = math.hypot(x - l0_x, y - l0_y)
                if d <= best_d:
                    best, best_d = VertexRef(p_index, r_index, v_index), d
    return best


def nearest_edge(geometry: Polygonal, l0_x: float, l0_y: float,
                 tolerance: float) -> tuple[VertexRef, tuple[float, float]] | None:
    """The edge closest to the point (as the ref of its first vertex) and the foot of the perpendicular."""
    best, best_d = None, tolerance
    for p_index, polygon in enumerate(parts_of(geometry)):
        for r_index, ring in enumerate(rings_of(polygon)):
            for v_index, (ax, ay) in enumerate(ring):
                bx, by = ring[(v_index + 1) % len(ring)]
                foot = _foot(ax, ay, bx, by, l0_x, l0_y)
                d = math.hypot(foot[0] - l0_x, foot[1] - l0_y)
                if d <= best_d:
                    best, best_d = (VertexRef(p_index, r_index, v_index), foot), d
    return best


def _foot(ax, ay, bx, by, px, py) -> tuple[float, float]:
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else min(max(((px - ax) * dx + (py - ay) * dy) / length2, 0.0), 1.0)
    return ax + t * dx, ay + t * dy


def vertex_at(geometry: Polygonal, ref: VertexRef) -> tuple[float, float]:
    return rings_of(parts_of(geometry)[ref.part])[ref.ring][ref.index]


def moved_vertex(geometry: Polygonal, ref: VertexRef, l0_x: float, l0_y: float) -> Polygonal:
    ring = rings_of(parts_of(geometry)[ref.part])[ref.ring]
    ring[ref.index] = (l0_x, l0_y)
    return _rebuild(geometry, ref.part, ref.ring, ring)


def inserted_vertex(geometry: Polygonal, after: VertexRef, l0_x: float, l0_y: float) -> Polygonal:
    """A new vertex between ``after`` and the next one."""
    ring = rings_of(parts_of(geometry)[after.part])[after.ring]
    ring.insert(after.index + 1, (l0_x, l0_y))
    return _rebuild(geometry, after.part, after.ring, ring)


def deleted_vertex(geometry: Polygonal, ref: VertexRef) -> Polygonal | None:
    """Without the vertex; a ring left with under 3 vertices goes (a hole closes, an exterior's part goes)."""
    ring = rings_of(parts_of(geometry)[ref.part])[ref.ring]
    del ring[ref.index]
    parts = parts_of(geometry)
    if len(ring) < 3 and ref.ring == 0:
        rest = [p for i, p in enumerate(parts) if i != ref.part]
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else MultiPolygon(rest)
    return _rebuild(geometry, ref.part, ref.ring, ring)
