"""Polygons of one annotation file, built in one go, and the marks assembled from them.

A reader hands over each polygon's rings as it meets them (:meth:`Pieces.add`); :meth:`Pieces.build`
then makes them all with shapely's vectorised constructors and checks them together, so a file of
100,000 small marks costs about as much as one mark of 10^6 vertices. Only invalid polygons are
repaired one by one (:func:`core.annotations.geometry.repair`, whose cost is bounded).

Every coordinate is rounded to the 1/1000 pixel files keep, so a mark read, written and read again
comes back the same.
"""

from __future__ import annotations

from itertools import chain
from typing import Sequence

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon

from core.annotations.geometry import GRID_DECIMALS, MAX_COORDINATE, MIN_AREA_L0, clean, repair, snap
from core.annotations.model import Polygonal

DEGENERATE = "empty or degenerate polygon dropped"


class Pieces:
    """The polygons of one file: rings gathered while it is read, built together by :meth:`build`."""

    def __init__(self, reading):
        self.reading = reading
        self._rings: list[np.ndarray] = []
        self._ring_piece: list[int] = []
        self._where: list[str] = []
        self._hole: list[bool] = []

    def __len__(self) -> int:
        return len(self._where)

    def add(self, rings: Sequence, where: str, hole: bool = False) -> int:
        """Queue one polygon (exterior first, then holes); returns its number.

        Each ring is an (n, 2) float array, or a JSON list ``[[x, y], ...]`` that :meth:`build`
        converts with all the others in one go. Coordinates are checked by :meth:`build` (all at
        once); an error names ``where``. ``hole`` marks a polygon that stands for a hole written
        on its own: it is kept however small.
        """
        piece = len(self._where)
        for ring in rings:
            if not isinstance(ring, (np.ndarray, list)):
                ring = _json_ring(ring, self.reading, where)  # says what is wrong
            self._rings.append(ring)
            self._ring_piece.append(piece)
        self._where.append(where)
        self._hole.append(hole)
        return piece

    def build(self) -> list[Polygonal | None]:
        """Every queued polygon, valid and on the file grid, or None (with a warning) when nothing is left."""
        count = len(self._where)
        out: list[Polygonal | None] = [None] * count
        if not count:
            return out
        lengths = np.fromiter((len(r) for r in self._rings), dtype=np.int64, count=len(self._rings))
        if not lengths.sum():
            for where in self._where:
                self.reading.warn(where, DEGENERATE)
            return out
        raw = self._coordinates()
        ring_of = np.repeat(np.arange(len(self._rings)), lengths)
        bad = ~(np.abs(raw) <= MAX_COORDINATE).all(axis=1)  # NaN compares false: caught too
        if bad.any():
            first = int(np.argmax(bad))
            check_ring(raw[first:first + 1], self.reading, self._where[self._ring_piece[ring_of[first]]])
        coords = np.round(raw, GRID_DECIMALS) + 0.0
        # consecutive repeats, and the closing repeat, say nothing: drop them before counting vertices
        keep = np.ones(len(coords), bool)
        keep[1:] = ~((coords[1:] == coords[:-1]).all(axis=1) & (ring_of[1:] == ring_of[:-1]))
        coords, ring_of = coords[keep], ring_of[keep]
        starts = np.flatnonzero(np.r_[True, ring_of[1:] != ring_of[:-1]])
        ends = np.r_[starts[1:], len(ring_of)] - 1
        closing = (ends > starts) & (coords[ends] == coords[starts]).all(axis=1)
        keep = np.ones(len(coords), bool)
        keep[ends[closing]] = False
        coords, ring_of = coords[keep], ring_of[keep]
        vertices = np.bincount(ring_of, minlength=len(self._rings))
        ring_piece = np.asarray(self._ring_piece, dtype=np.int64)
        first = np.r_[True, ring_piece[1:] != ring_piece[:-1]]  # the exterior of each piece
        good_shell = np.zeros(count, bool)
        good_shell[ring_piece[first & (vertices >= 3)]] = True
        usable = (vertices >= 3) & good_shell[ring_piece]  # holes of under 3 vertices are simply left out
        for piece in np.flatnonzero(~good_shell):
            self.reading.warn(self._where[piece], DEGENERATE)
        if not usable.any():
            return out
        take = usable[ring_of]
        ring_ids = np.cumsum(usable) - 1  # renumbered rings
        rings = shapely.linearrings(coords[take], indices=ring_ids[ring_of[take]])
        pieces_of_rings = ring_piece[usable]
        polygons = shapely.polygons(rings, indices=pieces_of_rings, out=np.full(count, None, dtype=object))
        built = np.flatnonzero(good_shell)
        valid = shapely.is_valid(polygons[built])
        areas = shapely.area(polygons[built])
        for piece, ok, area in zip(built.tolist(), valid.tolist(), areas.tolist()):
            where, min_area = self._where[piece], (0.0 if self._hole[piece] else MIN_AREA_L0)
            if ok:
                if area >= min_area and area > 0:
                    out[piece] = polygons[piece]
                else:
                    self.reading.warn(where, DEGENERATE)
                continue
            out[piece] = repaired(polygons[piece], self.reading, where, min_area)
        return out

    def _coordinates(self) -> np.ndarray:
        """Every ring's coordinates, concatenated: JSON rings converted by numpy in one call when they can be
        (one ring at a time otherwise, which names the ring that cannot)."""
        rings = [r for r in self._rings if len(r)]
        if all(isinstance(r, np.ndarray) for r in rings):
            return np.concatenate(rings)
        try:
            flat = np.array(list(chain.from_iterable(rings)), dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            flat = None
        if flat is not None and flat.ndim == 2 and flat.shape[1] >= 2:
            return np.ascontiguousarray(flat[:, :2])
        pieces = [p for p, r in zip(self._ring_piece, self._rings) if len(r)]
        return np.concatenate([r if isinstance(r, np.ndarray) else _json_ring(r, self.reading, self._where[p])
                               for p, r in zip(pieces, rings)])


def _json_ring(points, reading, where: str) -> np.ndarray:
    from core.annotations.formats._common import points_array  # _common builds on this module

    return points_array(points, reading, where)


def repaired(geometry, reading, where: str, min_area: float = MIN_AREA_L0) -> Polygonal | None:
    """An invalid polygon repaired and snapped to the grid, with the warning that says what was done."""
    result = repair(geometry, min_area)
    fixed = snap(result.geometry, min_area) if result.geometry is not None else None
    if result.too_damaged:
        reading.warn(where, f"polygon crosses itself about {result.crossings:,.0f} times, too often to repair; dropped")
    elif fixed is None:
        reading.warn(where, DEGENERATE)
    elif result.simplified:
        reading.warn(where, f"self-intersecting polygon repaired (it crossed itself about {result.crossings:,.0f} "
                            f"times, so it was first simplified by up to {result.simplified:g} pixels)")
    else:
        reading.warn(where, "self-intersecting polygon repaired")
    return fixed


def check_ring(ring: np.ndarray, reading, where: str) -> None:
    """Refuse NaN, infinite and absurdly large coordinates (vectorised; the message shows the first)."""
    if not len(ring):
        return
    finite = np.isfinite(ring).all(axis=1)
    if not finite.all():
        x, y = ring[int(np.argmin(finite))]
        raise reading.error(where, f"coordinate ({x}, {y}) is not a finite number")
    inside = (np.abs(ring) <= MAX_COORDINATE).all(axis=1)
    if not inside.all():
        x, y = ring[int(np.argmin(inside))]
        raise reading.error(where, f"coordinate ({x:g}, {y:g}) is beyond {MAX_COORDINATE:g} pixels")


def combine(parts: Sequence[Polygonal | None]) -> Polygonal | None:
    """One geometry from the pieces of a mark; pieces that overlap or share edges are merged."""
    polygons = [p for part in parts if part is not None
                for p in (part.geoms if isinstance(part, MultiPolygon) else (part,))]
    if not polygons:
        return None
    if len(polygons) == 1:
        return polygons[0]
    merged = MultiPolygon(polygons)
    if merged.is_valid:
        return merged
    return snap(clean(shapely.union_all(polygons)))


def assemble(pieces: Sequence[Polygonal | None], holes: Sequence[Polygon] = ()) -> Polygonal | None:
    """One mark from the polygons its file wrote one by one, and the holes written as polygons of their own.

    Each hole goes into the innermost piece that holds it (so an island inside a lake of another
    piece stays an island), as an interior ring: checked once, no overlay. Only what does not fit
    that way (a hole across an edge, pieces that overlap) is settled by a union or a difference, so
    the cost is about linear in the vertices, not in holes times vertices. None when nothing is left.
    """
    polygons = [p for piece in pieces if piece is not None
                for p in (piece.geoms if isinstance(piece, MultiPolygon) else (piece,))]
    if not polygons:
        return None
    loose = [p for hole in holes if hole is not None
             for p in (hole.geoms if isinstance(hole, MultiPolygon) else (hole,))]
    if loose:
        hole_array = np.asarray(loose, dtype=object)
        hole_index, part_index = STRtree(polygons).query(hole_array, predicate="within")
        areas = shapely.area(np.asarray(polygons, dtype=object))
        home: dict[int, int] = {}
        for h, p in zip(hole_index.tolist(), part_index.tolist()):
            if loose[h].interiors:  # a ring-shaped hole cannot be one interior ring
                continue
            if h not in home or areas[p] < areas[home[h]]:
                home[h] = p
        inside: dict[int, list] = {}
        for h, p in home.items():
            inside.setdefault(p, []).append(loose[h])
        for p, cut in inside.items():
            part = polygons[p]
            rebuilt = Polygon(part.exterior, [*part.interiors, *(hole.exterior for hole in cut)])
            polygons[p] = rebuilt if rebuilt.is_valid else clean(part.difference(shapely.union_all(cut)))
        loose = [hole for h, hole in enumerate(loose) if h not in home]
    geometry = combine(polygons)
    if geometry is not None and loose:
        geometry = snap(clean(geometry.difference(shapely.union_all(np.asarray(loose, dtype=object)))))
    return geometry


def overlapping(marks: Sequence[Sequence[Polygonal]], holes: Sequence[Polygon]) -> list[list[int]]:
    """For each mark (a list of pieces), the indices of the holes that overlap it (one spatial index)."""
    found: list[set] = [set() for _ in marks]
    pieces = [(m, piece) for m, mark in enumerate(marks) for piece in mark if piece is not None]
    if holes and pieces:
        tree = STRtree(np.asarray(list(holes), dtype=object))
        piece_index, hole_index = tree.query(np.asarray([p for _, p in pieces], dtype=object), predicate="intersects")
        for p, h in zip(piece_index.tolist(), hole_index.tolist()):
            found[pieces[p][0]].add(h)
    return [sorted(f) for f in found]
