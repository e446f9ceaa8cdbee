"""QuPath GeoJSON: the form QuPath 0.2 to 0.5 exports ("Export objects as GeoJSON") and imports by drag and drop.

Reading accepts a FeatureCollection, a bare list of Features, a single Feature or a bare
Polygon/MultiPolygon geometry. Coordinates are level-0 pixels. Per feature:

* ``geometry``: Polygon or MultiPolygon (exterior and holes); a GeometryCollection contributes
  its polygons; points and lines are skipped with a warning; ``null`` is skipped with a warning.
* ``properties.objectType``: "annotation"; detections, cells and tiles are imported as
  annotations with one warning per file. QuPath 0.2 put the type in ``id``
  ("PathAnnotationObject", "PathDetectionObject"), which is understood too.
* ``properties.classification``: ``{"name": ..., "color": [r, g, b]}`` (0.3+) or
  ``{"name": ..., "colorRGB": packed int}`` (0.2), or a plain string; missing means
  unclassified (class ``"Unclassified"``).
* note: ``properties.biopsiaNote`` (ours) else ``properties.name`` (what QuPath shows as the name).
* ``id``: kept as the annotation id (UUIDs normalised to 32 hex digits).
* anything else (other properties such as ``measurements``, other feature members) is kept in
  ``Annotation.extra`` and written back; features that give no mark are returned as
  ``AnnotationSet.foreign``, untouched.

Writing produces a FeatureCollection of Features exactly as QuPath 0.4/0.5 writes them:
``{"type": "Feature", "id": "<uuid>", "geometry": {...}, "properties": {"objectType": "annotation",
"name": note, "classification": {"name": ..., "color": [r, g, b]}, "isLocked": false,
"biopsiaNote": note}}``; unclassified marks get no ``classification``. Exterior rings are
counter-clockwise, holes clockwise, rings closed, coordinates rounded to 1/1000 pixel.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import shapely

from core.annotations.formats._common import (
    UNCLASSIFIED,
    AnnotationSet,
    Reading,
    class_colors,
    dashed_uuid,
    parts_of,
    polygon,
    ring,
    union,
)
from core.annotations.model import Annotation, AnnotationClass, Polygonal

NAME = "geojson"
EXTENSIONS = (".geojson", ".json")
DESCRIPTION = "QuPath GeoJSON"

#: What Biopsia reads into a mark itself; everything else in a feature goes to ``Annotation.extra``.
_READ_PROPERTIES = ("name", "biopsiaNote", "classification")
_READ_MEMBERS = ("type", "id", "geometry", "properties")
_LEGACY_TYPES = {"PathAnnotationObject": "annotation", "PathDetectionObject": "detection",
                 "PathCellObject": "cell", "PathTileObject": "tile", "PathTMACoreObject": "tma_core"}


def sniff(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"{", b"[")


def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of a GeoJSON file; errors name ``path``."""
    reading = Reading(path)
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as err:
        raise reading.error("", f"not valid JSON (truncated or damaged?) at line {err.lineno}, "
                                f"column {err.colno}: {err.msg}") from None
    except UnicodeDecodeError:
        raise reading.error("", "not a text file (GeoJSON must be UTF-8 text)") from None
    except RecursionError:
        raise reading.error("", "JSON nested too deeply") from None
    except ValueError as err:
        raise reading.error("", f"not valid JSON: {err}") from None
    features = _features(doc, reading)
    annotations: list[Annotation] = []
    foreign: list = []
    kinds: dict[str, int] = {}
    for index, feature in enumerate(features):
        ann = _feature(feature, index, reading, kinds)
        if ann is not None:
            annotations.append(ann)
        else:
            foreign.append(feature)
    for kind, count in kinds.items():
        reading.warn("", f"{count} {kind} object{'s' if count > 1 else ''} imported as annotations")
    return reading.result(annotations, foreign)


def _features(doc, reading: Reading) -> list:
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise reading.error("", f"expected a GeoJSON object or list of features, got {type(doc).__name__}")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise reading.error("", "FeatureCollection has no list of \"features\"")
        return features
    if kind == "Feature" or "geometry" in doc:
        return [doc]
    if kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return [{"type": "Feature", "geometry": doc, "properties": {}}]
    raise reading.error("", f"not GeoJSON: expected a FeatureCollection or Feature, got type {str(kind)[:40]!r}")


def _feature(feature, index: int, reading: Reading, kinds: dict) -> Annotation | None:
    where = f"feature {index}"
    if not isinstance(feature, dict):
        raise reading.error(where, f"expected a Feature object, got {type(feature).__name__}")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise reading.error(where, f"\"properties\" must be an object, got {type(props).__name__}")
    raw_id = feature.get("id")
    kind = props.get("objectType")
    if isinstance(raw_id, str) and raw_id in _LEGACY_TYPES:
        kind, raw_id = kind or _LEGACY_TYPES[raw_id], None
    if kind is None:
        kind = "annotation"
    if kind != "annotation":
        kinds[str(kind)[:40]] = kinds.get(str(kind)[:40], 0) + 1
    geometry = _geometry(feature.get("geometry"), reading, where)
    if geometry is None:
        return None
    class_name, color = _classification(props.get("classification"), reading, where)
    reading.add_class(class_name, color)
    note = props.get("biopsiaNote", props.get("name", ""))
    note = note if isinstance(note, str) else ("" if note is None else str(note))
    wanted = raw_id if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
    extra = {}
    if any(k not in _READ_PROPERTIES for k in props):
        extra["properties"] = {k: v for k, v in props.items() if k not in _READ_PROPERTIES}
    if any(k not in _READ_MEMBERS for k in feature):
        extra["members"] = {k: v for k, v in feature.items() if k not in _READ_MEMBERS}
    return Annotation(geometry, class_name, note, reading.unique_id(str(wanted) if wanted is not None else None),
                      extra=extra)


def _geometry(geom, reading: Reading, where: str) -> Polygonal | None:
    if geom is None:
        reading.warn(where, "no geometry; skipped")
        return None
    if not isinstance(geom, dict):
        raise reading.error(where, f"\"geometry\" must be an object, got {type(geom).__name__}")
    kind = geom.get("type")
    if kind == "GeometryCollection":
        members = geom.get("geometries")
        if not isinstance(members, list):
            raise reading.error(where, "GeometryCollection has no list of \"geometries\"")
        parts = [g for g in (_geometry(m, reading, where) for m in members) if g is not None]
        return union(parts)
    if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        reading.warn(where, f"{kind} is not an area; skipped")
        return None
    if kind not in ("Polygon", "MultiPolygon"):
        raise reading.error(where, f"unsupported geometry type {str(kind)[:40]!r}")
    coords = geom.get("coordinates")
    if not isinstance(coords, list):
        raise reading.error(where, f"{kind} has no list of \"coordinates\"")
    polys = [coords] if kind == "Polygon" else coords
    parts = []
    for poly in polys:
        if not isinstance(poly, list):
            raise reading.error(where, f"a polygon must be a list of rings, got {type(poly).__name__}")
        if not poly:
            reading.warn(where, "empty or degenerate polygon dropped")
            continue
        rings = [ring(r, reading, where) for r in poly]
        part = polygon(rings[0], rings[1:], reading, where)
        if part is not None:
            parts.append(part)
    return union(parts)


def _classification(value, reading: Reading, where: str) -> tuple[str, tuple[int, int, int] | None]:
    if value is None:
        return UNCLASSIFIED, None
    if isinstance(value, str):
        return (value.strip() or UNCLASSIFIED), None
    if not isinstance(value, dict):
        reading.warn(where, "classification not understood; imported as unclassified")
        return UNCLASSIFIED, None
    name = value.get("name")
    if name is None and isinstance(value.get("names"), list):
        name = ": ".join(str(n) for n in value["names"])
    name = str(name).strip() if name is not None else ""
    color = _color(value, reading, where)
    return (name or UNCLASSIFIED), color


def _color(value: dict, reading: Reading, where: str) -> tuple[int, int, int] | None:
    rgb = value.get("color")
    if isinstance(rgb, list) and len(rgb) >= 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb[:3]):
        return tuple(rgb[:3])
    packed = value.get("colorRGB")
    if isinstance(packed, int) and not isinstance(packed, bool):  # QuPath 0.2: packed (A)RGB, often negative
        return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255
    if rgb is not None or packed is not None:
        reading.warn(where, "class colour not understood; default colour used")
    return None


# -- writing ------------------------------------------------------------------------------
def _coords(geometry: Polygonal) -> dict:
    polys = [[_ring_coords(r) for r in (p.exterior, *p.interiors)] for p in parts_of(geometry)]
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def _ring_coords(linear_ring) -> list:
    """``[[x, y], ...]`` as :func:`rounded` gives them (1/1000 pixel, whole numbers as int), vectorised."""
    xy = np.round(shapely.get_coordinates(linear_ring), 3)
    out = xy.tolist()
    for i, j in zip(*np.nonzero(xy == np.floor(xy))):
        out[i][j] = int(out[i][j])
    return out


def to_dict(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> dict:
    """The FeatureCollection QuPath reads."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    features = []
    for ann in annotations:
        props: dict = {"objectType": "annotation"}
        props.update(ann.extra.get("properties", {}))  # what the file had and Biopsia does not edit
        if ann.note:
            props["name"] = ann.note
        if ann.class_name != UNCLASSIFIED:
            props["classification"] = {"name": ann.class_name, "color": list(colors[ann.class_name])}
        props.setdefault("isLocked", False)
        if ann.note:
            props["biopsiaNote"] = ann.note
        feature = {"type": "Feature", "id": dashed_uuid(ann.id), "geometry": _coords(ann.geometry),
                   "properties": props}
        for key, value in ann.extra.get("members", {}).items():
            feature.setdefault(key, value)
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of a QuPath GeoJSON file."""
    return json.dumps(to_dict(annotations, classes), indent=1, ensure_ascii=False).encode("utf-8")
