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
counter-clockwise, holes clockwise, rings closed, coordinates rounded to 1/1000 pixel; one compact
feature per line. Notes, class names and ids are cleaned of what no file can hold
(:func:`core.annotations.text.clean_text`), with one warning per file when reading.
"""

from __future__ import annotations

import json
from typing import Iterable

from core.annotations.formats._common import (
    UNCLASSIFIED,
    AnnotationSet,
    Reading,
    check_json_size,
    class_colors,
    dashed_uuid,
    geojson_geometries,
    without_gc,
)
from core.annotations.formats._polygons import combine
from core.annotations.model import Annotation, AnnotationClass
from core.annotations.text import clean_text

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


@without_gc
def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of a GeoJSON file; errors name ``path``."""
    reading = Reading(path)
    check_json_size(data, reading)
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
    marks = [(feature, _feature(feature, index, reading, kinds)) for index, feature in enumerate(features)]
    built = reading.pieces.build()  # every polygon of the file at once (vectorised)
    for feature, mark in marks:
        ann = mark.annotation(built, reading) if mark is not None else None
        if ann is not None:
            annotations.append(ann)
        else:
            foreign.append(feature)
    for kind, count in kinds.items():
        reading.warn("", f"{count} {kind} object{'s' if count > 1 else ''} imported as annotations")
    return reading.result(annotations, foreign)


#: A feature Biopsia wrote for a measurement (the window's ruler), not a mark: returned in ``foreign``.
MEASUREMENT_KEY = "biopsia_measurement"


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


def _feature(feature, index: int, reading: Reading, kinds: dict) -> "_Mark | None":
    where = f"feature {index}"
    if not isinstance(feature, dict):
        raise reading.error(where, f"expected a Feature object, got {type(feature).__name__}")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise reading.error(where, f"\"properties\" must be an object, got {type(props).__name__}")
    if props.get(MEASUREMENT_KEY) is True:  # a ruler's line: kept as it is (``foreign``), not a mark
        return None
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
    note = props.get("biopsiaNote", props.get("name", ""))
    note = reading.text(note if isinstance(note, str) else ("" if note is None else str(note)), where)
    wanted = raw_id if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
    extra = {}
    if any(k not in _READ_PROPERTIES for k in props):
        extra["properties"] = {k: v for k, v in props.items() if k not in _READ_PROPERTIES}
    if any(k not in _READ_MEMBERS for k in feature):
        extra["members"] = {k: v for k, v in feature.items() if k not in _READ_MEMBERS}
    return _Mark(geometry, class_name, color, note, str(wanted) if wanted is not None else None, extra)


class _Mark:
    """A feature read but not yet an annotation: its polygons are built with the whole file's."""

    __slots__ = ("pieces", "class_name", "color", "note", "wanted", "extra")

    def __init__(self, pieces: tuple, class_name: str, color, note: str, wanted: str | None, extra: dict):
        self.pieces, self.class_name, self.color, self.note = pieces, class_name, color, note
        self.wanted, self.extra = wanted, extra

    def annotation(self, built: list, reading: Reading) -> Annotation | None:
        """The annotation once the file's polygons are built; None when none of them is left."""
        geometry = combine([built[p] for p in self.pieces])
        if geometry is None:
            return None
        reading.add_class(self.class_name, self.color)
        return Annotation(geometry, self.class_name, self.note, reading.unique_id(self.wanted), extra=self.extra)


def _geometry(geom, reading: Reading, where: str) -> tuple[int, ...] | None:
    """The polygons of a GeoJSON geometry, queued on ``reading.pieces``; None when it has no area."""
    if geom is None:
        reading.warn(where, "no geometry; skipped")
        return None
    if not isinstance(geom, dict):
        raise reading.error(where, f"\"geometry\" must be an object, got {type(geom).__name__}")
    kind = geom.get("type")
    if kind == "GeometryCollection":
        return _collection(geom, reading, where)
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
        parts.append(reading.pieces.add(poly, where))  # the rings as JSON lists: converted all at once
    return tuple(parts)


def _collection(geom: dict, reading: Reading, where: str) -> tuple[int, ...]:
    """The polygons of a GeometryCollection; nested ones are flattened without recursion, at any depth."""
    parts: list[int] = []
    todo = [geom]
    while todo:
        member = todo.pop()
        if isinstance(member, dict) and member.get("type") == "GeometryCollection":
            members = member.get("geometries")
            if not isinstance(members, list):
                raise reading.error(where, "GeometryCollection has no list of \"geometries\"")
            todo.extend(reversed(members))
            continue
        parts.extend(_geometry(member, reading, where) or ())
    return tuple(parts)


def _classification(value, reading: Reading, where: str) -> tuple[str, tuple[int, int, int] | None]:
    if value is None:
        return UNCLASSIFIED, None
    if isinstance(value, str):
        return reading.class_name(value, where), None
    if not isinstance(value, dict):
        reading.warn(where, "classification not understood; imported as unclassified")
        return UNCLASSIFIED, None
    name = value.get("name")
    if name is None and isinstance(value.get("names"), list):
        name = ": ".join(str(n) for n in value["names"])
    name = reading.class_name(name if name is not None else "", where)
    color = _color(value, reading, where)
    return name, color


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
@without_gc
def to_dict(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> dict:
    """The FeatureCollection QuPath reads."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    geometries = geojson_geometries([ann.geometry for ann in annotations])  # all marks at once
    features = []
    for ann, geometry in zip(annotations, geometries):
        props: dict = {"objectType": "annotation"}
        props.update(ann.extra.get("properties", {}))  # what the file had and Biopsia does not edit
        note = clean_text(ann.note)  # whatever reached the store, the file can hold it
        if note:
            props["name"] = note
        if ann.class_name != UNCLASSIFIED:
            props["classification"] = {"name": clean_text(ann.class_name), "color": list(colors[ann.class_name])}
        props.setdefault("isLocked", False)
        if note:
            props["biopsiaNote"] = note
        feature = {"type": "Feature", "id": dashed_uuid(clean_text(ann.id)), "geometry": geometry,
                   "properties": props}
        for key, value in ann.extra.get("members", {}).items():
            feature.setdefault(key, value)
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


@without_gc
def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of a QuPath GeoJSON file: a FeatureCollection, one compact feature per line.

    Never fails on text: notes, class names and ids are cleaned by :func:`to_dict`, and anything
    else a lone surrogate reached (kept properties) is written as a JSON ``\\uXXXX`` escape.
    """
    features = to_dict(annotations, classes)["features"]
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    text = '{"type": "FeatureCollection", "features": [\n' + ",\n".join(map(encode, features)) + "\n]}\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # only inside JSON strings, where \uXXXX is the escape JSON itself uses
        return text.encode("utf-8", "backslashreplace")
