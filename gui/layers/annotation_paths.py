"""Annotation outlines as QPainterPaths in level-0 pixels, simplified to the screen resolution and cached."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import shapely
from PyQt5.QtCore import Qt
from PyQt5.QtGui import QPainterPath, QPolygonF

from core.annotations.model import Annotation, Polygonal

#: Rings are simplified to this many screen pixels: finer detail cannot be seen.
SIMPLIFY_SCREEN_PX = 0.5
#: Below this tolerance (level-0 pixels) rings are drawn as they are.
MIN_TOLERANCE_L0 = 0.5
#: Zoom buckets per doubling of scale: a path is rebuilt only when the zoom changes by about 41%.
BUCKETS_PER_OCTAVE = 2


def zoom_bucket(scale: float) -> int:
    return math.floor(math.log2(max(scale, 1e-9)) * BUCKETS_PER_OCTAVE)


def tolerance_l0(bucket: int) -> float:
    """Simplification tolerance in level-0 pixels for a bucket (its smallest scale, so never coarser than wanted)."""
    scale = 2.0 ** (bucket / BUCKETS_PER_OCTAVE)
    return SIMPLIFY_SCREEN_PX / scale


def path_of(geometry: Polygonal) -> QPainterPath:
    """Exterior and interior rings of every part; odd-even filling leaves the holes empty."""
    path = QPainterPath()
    path.setFillRule(Qt.OddEvenFill)
    if geometry.geom_type == "Polygon" and not geometry.interiors:  # the common case, in one call
        path.addPolygon(_polygon_f(shapely.get_coordinates(geometry)))
        path.closeSubpath()
        return path
    rings = shapely.get_rings(shapely.get_parts(geometry))
    coords = shapely.get_coordinates(rings)
    start = 0
    for count in shapely.get_num_coordinates(rings):
        path.addPolygon(_polygon_f(coords[start:start + count]))
        path.closeSubpath()
        start += count
    return path


def _polygon_f(xy: np.ndarray) -> QPolygonF:
    """A QPolygonF filled straight from an (n, 2) float array (no Python loop per vertex)."""
    polygon = QPolygonF(len(xy))
    pointer = polygon.data()
    pointer.setsize(len(xy) * 2 * 8)
    np.frombuffer(pointer, dtype=np.float64)[:] = np.ascontiguousarray(xy, dtype=np.float64).ravel()
    return polygon


class PathCache:
    """Paths per (annotation id, zoom bucket), least recently used dropped first.

    An edit replaces an annotation by one with the same id and a new geometry, so each entry remembers
    the geometry it was built from and is rebuilt when that changed.
    """

    def __init__(self, max_entries: int = 50000):
        self.max_entries = max_entries
        self._paths: OrderedDict[tuple[str, int], tuple[Polygonal, QPainterPath]] = OrderedDict()
        self._bounds: dict[str, tuple[Polygonal, tuple[float, float, float, float]]] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def bounds(self, ann: Annotation) -> tuple[float, float, float, float]:
        """The annotation's bounds in level-0 pixels (asking shapely each frame costs more than drawing)."""
        hit = self._bounds.get(ann.id)
        if hit is None or hit[0] is not ann.geometry:
            hit = self._bounds[ann.id] = (ann.geometry, ann.geometry.bounds)
        return hit[1]

    def _key(self, ann_id: str, bucket: int) -> tuple[str, int]:
        # every fine zoom shares the unsimplified path
        return (ann_id, bucket if tolerance_l0(bucket) >= MIN_TOLERANCE_L0 else 10**6)

    def get(self, ann: Annotation, bucket: int) -> QPainterPath:
        key = self._key(ann.id, bucket)
        hit = self._paths.get(key)
        if hit is not None and hit[0] is ann.geometry:
            self._paths.move_to_end(key)
            return hit[1]
        self.prepare([ann], bucket)
        return self._paths[key][1]

    def prepare(self, annotations, bucket: int) -> None:
        """Build the missing paths of many annotations at once (shapely's array functions, not a call each)."""
        missing = [a for a in annotations
                   if (hit := self._paths.get(self._key(a.id, bucket))) is None or hit[0] is not a.geometry]
        if not missing:
            return
        geometries = np.array([a.geometry for a in missing], dtype=object)
        tolerance = tolerance_l0(bucket)
        if tolerance >= MIN_TOLERANCE_L0:
            # Douglas-Peucker: fast, and any crossing it makes is under half a screen pixel
            simplified = shapely.simplify(geometries, tolerance, preserve_topology=False)
            kept = ~shapely.is_empty(simplified) & np.isin(shapely.get_type_id(simplified), (3, 6))
            geometries = np.where(kept, simplified, geometries)
        simple = (shapely.get_type_id(geometries) == 3) & (shapely.get_num_interior_rings(geometries) == 0)
        paths: list[QPainterPath | None] = [None] * len(missing)
        if simple.any():  # plain polygons: all coordinates in one call, split per polygon
            coords, owner = shapely.get_coordinates(geometries[simple], return_index=True)
            splits = np.flatnonzero(np.diff(owner)) + 1
            for i, xy in zip(np.flatnonzero(simple), np.split(coords, splits)):
                path = QPainterPath()
                path.addPolygon(_polygon_f(xy))
                path.closeSubpath()
                paths[i] = path
        for i in np.flatnonzero(~simple):
            paths[i] = path_of(geometries[i])
        for ann, path in zip(missing, paths):
            self._paths[self._key(ann.id, bucket)] = (ann.geometry, path)
        while len(self._paths) > self.max_entries:
            self._paths.popitem(last=False)

    def clear(self) -> None:
        self._paths.clear()
        self._bounds.clear()
