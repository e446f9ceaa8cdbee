"""What a biopsy report measures: each mark's area and length, and each core's length and tumour involvement.

A needle core is a long, thin piece of tissue; a report gives its length, the length of tumour in it and
the share of the core involved (ISUP). Cores are the tissue fragments `core.tiles.tissue.detect_tissue`
finds. Each core's length is measured along its centre line (`centre_line`): a polyline through the
centroids of slabs cut across its long axis, extended to the core's ends, so a gently curved core is
measured along its curve. Tumour (the doctors' Tumour marks, or the network's calls at a threshold) is
projected onto that line:

``tumour_length_mm``
    from the first to the last tumour along the core (ISUP 2019 measures discontinuous foci so, as one span);
``tumour_aggregate_mm``
    the sum of the tumour foci's lengths, the tissue between them left out;
``percent_involved``
    ``tumour_length_mm`` as a percentage of the core's length.

Lengths of marks are along their long axis: the long side of the smallest rotated rectangle around them
(a 2000 x 400 px rectangle at 0.5 µm/px is 1.000 mm long and 0.2000 mm²). Everything is computed in
micrometres (x and y scaled by their own µm/px), so non-square pixels measure true.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import cv2
import numpy as np
from shapely import affinity
from shapely.geometry import LineString, Point, box
from shapely.ops import substring, unary_union

from core.annotations.model import TUMOUR, Annotation, is_polygonal
from core.errors import BiopsiaError

#: A core's centre line is found on a raster this many pixels across its width, at most MAX_RASTER long.
RASTER_PER_WIDTH, MAX_RASTER = 10, 4000
#: Widths cut off each end of the skeleton's path, where it forks towards the corners.
END_TRIM = 0.75
#: A centre line that strays less than this share of the width from the long axis is the long axis.
STRAIGHT_SHARE = 0.25


@dataclass(frozen=True)
class MarkMeasure:
    """One mark: its class, area and length along its long axis."""

    id: str
    class_name: str
    area_mm2: float
    length_mm: float


@dataclass(frozen=True)
class Involvement:
    """Tumour in one core, from one source (the doctors' marks or the network's calls)."""

    tumour_length_mm: float
    tumour_aggregate_mm: float
    percent_involved: float
    foci: int
    tumour_area_mm2: float


@dataclass(frozen=True)
class CoreMeasure:
    """One tissue fragment (a core), with tumour from the marks and, when given, from the network."""

    index: int
    bounds_l0: tuple[float, float, float, float]  # level-0 x0, y0, x1, y1
    length_mm: float
    area_mm2: float
    marks: Involvement
    network: Involvement | None = None


@dataclass
class SlideMeasures:
    """Everything measured on one slide (`measure_slide`)."""

    slide: str
    mpp: tuple[float, float]
    marks: list[MarkMeasure] = field(default_factory=list)
    cores: list[CoreMeasure] = field(default_factory=list)
    threshold: float | None = None

    def as_dict(self) -> dict:
        return {"slide": self.slide, "mpp": list(self.mpp), "threshold": self.threshold,
                "marks": [asdict(m) for m in self.marks],
                "cores": [{**asdict(c), "bounds_l0": list(c.bounds_l0)} for c in self.cores]}


# ---------------------------------------------------------------- geometry in micrometres

def to_um(geometry, mpp: tuple[float, float]):
    """A level-0 geometry in micrometres."""
    return affinity.scale(geometry, mpp[0], mpp[1], origin=(0, 0))


def long_axis_length(geometry) -> float:
    """The long side of the smallest rotated rectangle around ``geometry`` (its units)."""
    if geometry.is_empty:
        return 0.0
    rect = geometry.minimum_rotated_rectangle
    if rect.geom_type != "Polygon":  # a point or a segment
        return float(rect.length) if rect.geom_type == "LineString" else 0.0
    xs, ys = rect.exterior.coords.xy
    sides = [math.dist((xs[i], ys[i]), (xs[i + 1], ys[i + 1])) for i in range(2)]
    return float(max(sides))


def centre_line(shape) -> LineString:
    """The centre line of an elongated shape, end to end (micrometres in, micrometres out).

    The shape is rasterised at about a tenth of its width, thinned to its skeleton (scikit-image), and
    the skeleton's longest path, smoothed over about one width, is extended at both ends to the shape's
    boundary. A straight core gives its long axis; a curved one its curve.
    """
    from scipy.ndimage import uniform_filter1d
    from skimage.morphology import skeletonize

    shape = max(getattr(shape, "geoms", [shape]), key=lambda p: p.area)
    width = 2 * shape.area / max(shape.length, 1e-9)  # a thin strip's width, from area and perimeter
    minx, miny, maxx, maxy = shape.bounds
    step = max(width / RASTER_PER_WIDTH, max(maxx - minx, maxy - miny) / MAX_RASTER, 1e-9)
    w, h = int(math.ceil((maxx - minx) / step)) + 3, int(math.ceil((maxy - miny) / step)) + 3
    mask = np.zeros((h, w), np.uint8)

    def raster(ring) -> np.ndarray:
        return np.round((np.asarray(ring.coords)[:, :2] - (minx, miny)) / step + 1).astype(np.int32)

    cv2.fillPoly(mask, [raster(shape.exterior)], 1)
    for hole in shape.interiors:
        cv2.fillPoly(mask, [raster(hole)], 0)
    skeleton = np.argwhere(skeletonize(mask > 0))  # (row, col)
    if len(skeleton) < 2:
        return _straight_axis(shape)
    path = _longest_path(skeleton, mask.shape)
    xy = skeleton[path][:, ::-1].astype(float) * step + (minx - step, miny - step)
    if len(xy) >= 3:  # the pixel staircase smoothed over about a width, the ends kept
        size = max(3, int(round(width / step)) | 1)
        smooth = uniform_filter1d(xy, size=min(size, len(xy) - (1 - len(xy) % 2)), axis=0, mode="nearest")
        smooth[0], smooth[-1] = xy[0], xy[-1]
        xy = smooth
    path_line = LineString(xy)
    # the skeleton forks towards the corners within about a width of each end: cut that off, then go
    # on straight, along the line's direction over the next width, to the boundary
    trim, ahead = END_TRIM * width, width
    if path_line.length <= 2 * trim + 2 * step:
        return _straight_axis(shape)
    kept = substring(path_line, trim, path_line.length - trim).simplify(step / 2)
    coords = np.asarray(kept.coords)
    first = np.asarray(kept.interpolate(min(ahead, kept.length / 2)).coords[0])
    last = np.asarray(kept.interpolate(max(kept.length - ahead, kept.length / 2)).coords[0])
    start = _extend(shape, first, coords[0])
    end = _extend(shape, last, coords[-1])
    curve = LineString([start, *coords, end])
    straight = _straight_axis(shape)
    axis = np.subtract(*np.asarray(straight.coords)[::-1])
    axis = axis / max(float(np.hypot(*axis)), 1e-12)
    offsets = (np.asarray(curve.coords) - np.asarray(straight.coords[0])) @ np.array([-axis[1], axis[0]])
    # a straight core: its long axis, exactly (the skeleton's path wavers by a raster pixel or so)
    return straight if np.ptp(offsets) < STRAIGHT_SHARE * width else curve


def _longest_path(skeleton: np.ndarray, shape: tuple[int, int]) -> list[int]:
    """The skeleton pixels (indices into ``skeleton``) on its longest path, end to end (8-connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    h, w = shape
    index = -np.ones(shape, np.int64)
    index[skeleton[:, 0], skeleton[:, 1]] = np.arange(len(skeleton))
    rows, cols, weights = [], [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        r, c = skeleton[:, 0] + dr, skeleton[:, 1] + dc
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        j = np.full(len(skeleton), -1)
        j[ok] = index[r[ok], c[ok]]
        link = j >= 0
        rows.append(np.flatnonzero(link))
        cols.append(j[link])
        weights.append(np.full(int(link.sum()), math.hypot(dr, dc)))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(len(skeleton),) * 2).tocsr()
    dist = dijkstra(graph, directed=False, indices=0)
    a = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    dist, parent = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    b = int(np.argmax(np.where(np.isfinite(dist), dist, -1)))
    path = [b]
    while path[-1] != a and parent[path[-1]] >= 0:
        path.append(int(parent[path[-1]]))
    return path


def _straight_axis(shape) -> LineString:
    """The long side of the smallest rotated rectangle around ``shape``, through its middle."""
    rect = shape.minimum_rotated_rectangle
    c = np.asarray(rect.exterior.coords)[:4]
    sides = [(c[0], c[1], c[2], c[3]), (c[1], c[2], c[3], c[0])]
    p0, p1, p2, p3 = max(sides, key=lambda s: math.dist(s[0], s[1]))
    return LineString([(p0 + p3) / 2, (p1 + p2) / 2])


def _extend(shape, inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Where the ray from ``inner`` through ``outer`` first leaves ``shape``, going on from ``outer``."""
    d = outer - inner
    norm = float(np.hypot(*d))
    if norm == 0:
        return outer
    d = d / norm
    minx, miny, maxx, maxy = shape.bounds
    ray = LineString([outer, outer + d * (float(np.hypot(maxx - minx, maxy - miny)) + 1.0)])
    start = Point(outer)
    for piece in getattr(ray.intersection(shape), "geoms", [ray.intersection(shape)]):
        if piece.geom_type == "LineString" and not piece.is_empty and piece.distance(start) < 1e-6:
            ends = np.asarray(piece.coords)
            return ends[int(np.argmax((ends - outer) @ d))]
    return outer


# ---------------------------------------------------------------- involvement

def involvement(core_um, line: LineString, tumour_um) -> Involvement:
    """Tumour of one core projected onto its centre line (all in micrometres)."""
    length = float(line.length)
    inside = core_um.intersection(tumour_um) if tumour_um is not None and not tumour_um.is_empty else None
    if inside is None or inside.is_empty or inside.area <= 0 or length <= 0:
        return Involvement(0.0, 0.0, 0.0, 0, 0.0)
    polygons = [p for p in getattr(inside, "geoms", [inside]) if p.geom_type == "Polygon" and p.area > 0]
    # each tumour piece covers, along the line, its vertices' extent (exact for a straight core)
    intervals = sorted((float(min(ps)), float(max(ps))) for ps in
                       ([line.project(Point(c)) for c in np.asarray(p.exterior.coords)] for p in polygons))
    merged = [list(intervals[0])]
    for lo, hi in intervals[1:]:
        if lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    span = merged[-1][1] - min(lo for lo, _ in merged)
    aggregate = sum(hi - lo for lo, hi in merged)
    return Involvement(tumour_length_mm=span / 1000, tumour_aggregate_mm=aggregate / 1000,
                       percent_involved=min(100.0, 100.0 * span / length), foci=len(merged),
                       tumour_area_mm2=float(inside.area) / 1e6)


def tumour_of_marks(annotations: Iterable[Annotation], tumour_class: str = TUMOUR.name):
    """The union of the Tumour marks (level-0), or None."""
    shapes = [a.geometry for a in annotations if a.class_name == tumour_class and is_polygonal(a.geometry)]
    return unary_union(shapes) if shapes else None


def tumour_of_grid(grid, threshold: float):
    """The union of the grid's cells at or above ``threshold`` (level-0, drawn cells clipped to the slide), or None."""
    rows, cols = np.nonzero(np.nan_to_num(grid.probs, nan=-1.0) >= threshold)
    cells = []
    for r, c in zip(rows, cols):
        x, y, w, h = grid.cell_rect(int(r), int(c))
        if w > 0 and h > 0:
            cells.append(box(x, y, x + w, y + h))
    return unary_union(cells) if cells else None


# ---------------------------------------------------------------- the slide

def measure_marks(annotations: Iterable[Annotation], mpp: tuple[float, float]) -> list[MarkMeasure]:
    """Area and long-axis length of every polygonal mark."""
    out = []
    for a in annotations:
        if not is_polygonal(a.geometry):
            continue
        um = to_um(a.geometry, mpp)
        out.append(MarkMeasure(a.id, a.class_name, float(um.area) / 1e6, long_axis_length(um) / 1000))
    return out


def measure_cores(cores_l0: Sequence, mpp: tuple[float, float], marks_tumour=None, network_tumour=None
                  ) -> list[CoreMeasure]:
    """Length, area and tumour involvement of each core (level-0 polygons), longest first."""
    marks_um = to_um(marks_tumour, mpp) if marks_tumour is not None else None
    network_um = to_um(network_tumour, mpp) if network_tumour is not None else None
    out = []
    for core in cores_l0:
        pieces = [p for p in getattr(core, "geoms", [core]) if p.geom_type == "Polygon" and p.area > 0]
        if not pieces:
            continue
        shape = max(pieces, key=lambda p: p.area) if len(pieces) > 1 else pieces[0]
        um = to_um(shape, mpp)
        line = centre_line(um)
        out.append(CoreMeasure(
            index=0, bounds_l0=tuple(float(b) for b in shape.bounds), length_mm=float(line.length) / 1000,
            area_mm2=float(um.area) / 1e6, marks=involvement(um, line, marks_um),
            network=involvement(um, line, network_um) if network_tumour is not None else None))
    out.sort(key=lambda c: (c.bounds_l0[1], c.bounds_l0[0]))  # top to bottom, left to right, as read
    return [CoreMeasure(**{**c.__dict__, "index": i + 1}) for i, c in enumerate(out)]


def measure_slide(reader, annotations: Sequence[Annotation], mpp: tuple[float, float] | None, *, grid=None,
                  threshold: float | None = None, slide_name: str = "", min_core_um2: float = 20_000.0
                  ) -> SlideMeasures:
    """Marks and cores of one open slide (`core.slide.SlideReader`), the network's calls from ``grid``.

    Raises
    ------
    BiopsiaError
        When the slide has no µm/px (lengths need one) or a grid is given without a threshold.
    """
    from core.tiles.tissue import detect_tissue

    if not mpp:
        raise BiopsiaError(f"{slide_name}: the slide does not record its micrometres per pixel; lengths and areas "
                           "need one (pass --slide-mpp X)")
    if grid is not None and threshold is None:
        raise BiopsiaError(f"{slide_name}: a prediction needs a threshold to call tumour")
    tissue = detect_tissue(reader, slide_mpp=tuple(mpp), min_area_um2=min_core_um2)
    cores = tissue.to_polygons()
    marks = list(annotations)
    result = SlideMeasures(slide=slide_name, mpp=(float(mpp[0]), float(mpp[1])), threshold=threshold,
                           marks=measure_marks(marks, mpp))
    result.cores = measure_cores(cores, mpp, tumour_of_marks(marks),
                                 tumour_of_grid(grid, threshold) if grid is not None else None)
    return result
