"""Aperio ImageScope XML: ``<Annotations><Annotation LineColor Name><Regions><Region NegativeROA><Vertices>``.

Reading: each ``<Annotation>`` is a layer whose class is its ``Name``, else the value of its
``Description`` attribute, else the name of its first attribute, else ``"Layer <Id>"``. The layer's
``LineColor`` is an integer in BGR order (``0xBBGGRR``). Each ``<Region>`` with ``NegativeROA="0"``
becomes an annotation (``Text`` is its note); regions with ``NegativeROA="1"`` are holes cut out of
the positive regions of their layer that they overlap. Region types: 0 free-hand/polygon,
1 rectangle, 2 ellipse (two corner vertices, or a polygon), 5 free-hand; arrows (3) and rulers (4)
are skipped with a warning. Vertex ``Z`` is ignored.

Writing: one ``<Annotation>`` layer per class, one ``<Region>`` per polygon part (``Text`` = note),
each hole as a ``NegativeROA="1"`` region. Biopsia adds a ``BiopsiaId`` attribute to regions (which
ImageScope ignores) so that the parts and holes of one mark come back as one annotation; without
it every positive region is an annotation and each hole cuts every overlapping region of its layer.

Text that XML 1.0 cannot hold (control characters, broken surrogates) is dropped or replaced when
writing (:func:`core.annotations.text.clean_text`); tabs and line breaks in notes are written as
character references, so they read back. Reading streams the file through expat (no tree) and
refuses any ``<!DOCTYPE``, hence every entity declaration.
"""

from __future__ import annotations

from array import array
from typing import Iterable

import numpy as np
import shapely

from core.annotations.formats._common import (
    AnnotationSet,
    Reading,
    class_colors,
    number,
    parts_of,
    without_gc,
    xml_root_tag,
)
from core.annotations.formats._polygons import DEGENERATE, assemble, overlapping
from core.annotations.formats._xml import attr, attributes, numbers, stream
from core.annotations.geometry import check_coordinates, ellipse
from core.annotations.model import Annotation, AnnotationClass

NAME = "imagescope"
EXTENSIONS = (".xml",)
DESCRIPTION = "Aperio ImageScope XML"

_REGION_TYPES = {"0": "polygon", "1": "rectangle", "2": "ellipse", "3": "arrow", "4": "ruler", "5": "free-hand"}
_ROOT = "Annotations"


def sniff(data: bytes) -> bool:
    return xml_root_tag(data) == _ROOT


def bgr_to_rgb(value: int) -> tuple[int, int, int]:
    return value & 255, (value >> 8) & 255, (value >> 16) & 255


def rgb_to_bgr(color) -> int:
    r, g, b = (int(c) for c in color)
    return r | (g << 8) | (b << 16)


class _Region:
    __slots__ = ("attrs", "xs", "ys", "index")

    def __init__(self, index: int, attrs: dict):
        self.index, self.attrs = index, attrs
        self.xs, self.ys = array("d"), array("d")

    def points(self) -> np.ndarray:
        return np.column_stack([np.frombuffer(self.xs, dtype=np.float64), np.frombuffer(self.ys, dtype=np.float64)])


class _Layer:
    __slots__ = ("index", "attrs", "items", "regions", "seen_attributes", "seen_regions")

    def __init__(self, index: int, attrs: dict):
        self.index, self.attrs = index, attrs
        self.items: list[dict] = []  # the layer's <Attribute> elements
        self.regions: list[_Region] = []
        self.seen_attributes = self.seen_regions = False


class _Handlers:
    """expat handlers that collect layers, regions and vertices (no tree)."""

    # depth of each element in the stack: Annotations 1, Annotation 2, Regions 3, Region 4,
    # Vertices 5, Vertex 6; the layer's Attributes 3, Attribute 4
    def __init__(self, reading: Reading):
        self.reading = reading
        self.stack: list[str] = []
        self.layers: list[_Layer] = []
        self.layer: _Layer | None = None
        self.region: _Region | None = None
        self.in_attributes = self.in_regions = self.collecting = False
        self.seen_vertices = False

    def start(self, name: str, attrs: list) -> None:
        stack = self.stack
        stack.append(name)
        if name == "Vertex" and self.collecting and len(stack) == 6:
            if len(attrs) >= 4 and attrs[0] == "X" and attrs[2] == "Y" and (
                    len(attrs) == 4 or (len(attrs) == 6 and attrs[4] == "Z")):
                try:
                    x, y = float(attrs[1]), float(attrs[3])
                except ValueError:
                    pass
                else:
                    self.region.xs.append(x)
                    self.region.ys.append(y)
                    return
            self._vertex(attributes(attrs))
            return
        depth = len(stack)
        if depth == 1:
            if name != _ROOT:
                raise self.reading.error("", f"not an ImageScope annotation file (root element <{name[:40]}>)")
        elif depth == 2 and name == "Annotation":
            self.layer = _Layer(len(self.layers), attributes(attrs))
            self.layers.append(self.layer)
        elif self.layer is None:
            return
        elif depth == 3 and name == "Attributes" and not self.layer.seen_attributes:
            self.in_attributes = self.layer.seen_attributes = True
        elif depth == 4 and name == "Attribute" and self.in_attributes:
            self.layer.items.append(attributes(attrs))
        elif depth == 3 and name == "Regions" and not self.layer.seen_regions:
            self.in_regions = self.layer.seen_regions = True
        elif depth == 4 and name == "Region" and self.in_regions:
            self.region = _Region(len(self.layer.regions), attributes(attrs))
            self.layer.regions.append(self.region)
            self.seen_vertices = False
        elif depth == 5 and name == "Vertices" and self.region is not None and not self.seen_vertices:
            self.collecting = self.seen_vertices = True

    def _vertex(self, attrs: dict) -> None:
        values = []
        for label in ("X", "Y"):
            if label not in attrs:
                raise self.reading.error(self._where(), f"<Vertex> has no {label} attribute")
            values.append(number(attrs[label], self.reading, self._where()))
        self.region.xs.append(values[0])
        self.region.ys.append(values[1])

    def _where(self) -> str:
        name = (self.layer.attrs.get("Name") or "").strip()
        layer = repr(name[:40]) if name else str(self.layer.index + 1)
        return f"layer {layer} region {self.region.attrs.get('Id') or self.region.index}"

    def end(self, name: str) -> None:
        stack = self.stack
        stack.pop()
        depth = len(stack)
        if depth == 4 and name == "Vertices":
            self.collecting = False
        elif depth == 3 and name == "Region":
            self.region, self.collecting = None, False
        elif depth == 2 and name == "Regions":
            self.in_regions = False
        elif depth == 2 and name == "Attributes":
            self.in_attributes = False
        elif depth == 1 and name == "Annotation":
            self.layer, self.region = None, None
            self.in_attributes = self.in_regions = self.collecting = False


@without_gc
def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of an ImageScope XML file; errors name ``path``."""
    reading = Reading(path)
    handlers = _Handlers(reading)
    stream(data, reading, handlers.start, handlers.end)
    skipped: dict[str, int] = {}
    layers = []  # (class, [(id, note, piece)], [(id, piece)])
    for layer in handlers.layers:
        class_name = _layer_class(layer, reading)
        color = _layer_color(layer, reading, f"annotation layer {layer.index} ({class_name!r})")
        reading.add_class(class_name, color)
        positives, negatives = [], []
        for region in layer.regions:
            where = f"layer {class_name!r} region {region.attrs.get('Id') or region.index}"
            kind = _REGION_TYPES.get((region.attrs.get("Type") or "0").strip(), "polygon")
            if kind in ("arrow", "ruler"):
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            negative = (region.attrs.get("NegativeROA") or "0").strip() == "1"
            piece = _region_piece(region.points(), kind, reading, where, negative)
            if piece is None:
                continue
            if negative:
                negatives.append((region.attrs.get("BiopsiaId"), piece))
            else:
                positives.append((region.attrs.get("BiopsiaId"), reading.text(region.attrs.get("Text") or "", where),
                                  piece))
        layers.append((class_name, positives, negatives))
    for kind, count in skipped.items():
        reading.warn("", f"{count} {kind} region{'s' if count > 1 else ''} skipped (not an area)")
    built = reading.pieces.build()
    annotations: list[Annotation] = []
    for class_name, positives, negatives in layers:
        annotations.extend(_assemble(class_name, positives, negatives, built, reading))
    return reading.result(annotations)


def _layer_class(layer: _Layer, reading: Reading) -> str:
    where = f"annotation layer {layer.index}"
    name = reading.text(layer.attrs.get("Name") or "", where).strip()
    if name:
        return name
    for item in layer.items:
        if (item.get("Name") or "").strip().lower() == "description" and (item.get("Value") or "").strip():
            name = reading.text(item["Value"], where).strip()
            if name:
                return name
    for item in layer.items:
        label = reading.text(item.get("Name") or "", where).strip()
        if label and label.lower() != "description":
            return label
    return f"Layer {reading.text(layer.attrs.get('Id') or '', where).strip() or layer.index + 1}"


def _layer_color(layer: _Layer, reading: Reading, where: str) -> tuple[int, int, int] | None:
    raw = layer.attrs.get("LineColor")
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        reading.warn(where, f"LineColor {raw[:20]!r} is not a number; default colour used")
        return None
    if not 0 <= value <= 0xFFFFFF:
        value &= 0xFFFFFF
    return bgr_to_rgb(value)


def _region_piece(points: np.ndarray, kind: str, reading: Reading, where: str, negative: bool) -> int | None:
    """Queue a region's polygon (two-vertex rectangles and ellipses expanded); its piece number."""
    if kind in ("ellipse", "rectangle") and len(points) == 2:
        (x0, y0), (x1, y1) = points.tolist()
        try:
            check_coordinates([(x0, y0), (x1, y1)])
        except ValueError as err:
            raise reading.error(where, str(err)) from None
        if kind == "ellipse":
            shape = ellipse(x0, y0, x1, y1)
            if shape is None:
                reading.warn(where, DEGENERATE)
                return None
            points = shapely.get_coordinates(shape.exterior)
        else:
            points = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)
    return reading.pieces.add([points], where, hole=negative)


def _assemble(class_name: str, positives: list, negatives: list, built: list, reading: Reading) -> list[Annotation]:
    merged: dict = {}
    for ann_id, note, piece in positives:
        if built[piece] is None:
            continue
        key = ann_id if ann_id else object()
        if key in merged:
            merged[key][2].append(built[piece])
        else:
            merged[key] = [ann_id, note, [built[piece]]]
    by_id: dict[str, list] = {}
    anonymous = []
    for hole_id, piece in negatives:
        if built[piece] is not None:
            (by_id.setdefault(hole_id, []) if hole_id else anonymous).append(built[piece])
    marks = list(merged.values())
    cuts = overlapping([m[2] for m in marks], anonymous)
    out = []
    for (ann_id, note, parts), found in zip(marks, cuts):
        geometry = assemble(parts, (by_id.get(ann_id, []) if ann_id else []) + [anonymous[h] for h in found])
        if geometry is None:
            reading.warn(f"layer {class_name!r}", "a region was entirely cut away by negative regions; dropped")
            continue
        out.append(Annotation(geometry, class_name, note, reading.unique_id(ann_id)))
    return out


_HEADERS = (("9999", "Region"), ("9997", "Length"), ("9996", "Area"), ("9998", "Text"), ("1", "Description"))


@without_gc
def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of an ImageScope XML file: one layer per class, holes as negative regions."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    lines = ['<Annotations MicronsPerPixel="0">']
    by_class: dict[str, list[Annotation]] = {}
    for ann in annotations:
        by_class.setdefault(ann.class_name, []).append(ann)
    used = [name for name in colors if name in by_class]
    for layer_id, class_name in enumerate(used, start=1):
        name = attr(class_name)
        lines.append(f'\t<Annotation Id="{layer_id}" Name="{name}" ReadOnly="0" NameReadOnly="0" '
                     f'LineColorReadOnly="0" Incremental="0" Type="4" LineColor="{rgb_to_bgr(colors[class_name])}" '
                     'Visible="1" Selected="0" MarkupImagePath="" MacroName="">')
        lines += ["\t\t<Attributes>", f'\t\t\t<Attribute Name="Description" Id="0" Value="{name}" />',
                  "\t\t</Attributes>", "\t\t<Regions>", "\t\t\t<RegionAttributeHeaders>"]
        lines += [f'\t\t\t\t<AttributeHeader Id="{i}" Name="{label}" ColumnWidth="-1" />' for i, label in _HEADERS]
        lines.append("\t\t\t</RegionAttributeHeaders>")
        region_id = 0
        for ann in by_class[class_name]:
            note, ann_id = attr(ann.note), attr(ann.id)
            for part in parts_of(ann.geometry):
                for negative, ring in [(0, part.exterior)] + [(1, r) for r in part.interiors]:
                    region_id += 1
                    xy = shapely.get_coordinates(ring)
                    lines.append(
                        f'\t\t\t<Region Id="{region_id}" Type="0" Zoom="1" Selected="0" ImageLocation="" '
                        f'ImageFocus="-1" Length="{numbers([ring.length])[0]}" Area="{numbers([_area(xy)])[0]}" '
                        f'LengthMicrons="0" AreaMicrons="0" Text="{note}" NegativeROA="{negative}" InputRegionId="0" '
                        f'Analyze="1" DisplayId="{region_id}" BiopsiaId="{ann_id}">')
                    lines += ["\t\t\t\t<Attributes />", "\t\t\t\t<Vertices>"]
                    lines.extend(f'\t\t\t\t\t<Vertex X="{x}" Y="{y}" Z="0" />'
                                 for x, y in zip(numbers(xy[:-1, 0]), numbers(xy[:-1, 1])))
                    lines += ["\t\t\t\t</Vertices>", "\t\t\t</Region>"]
        lines += ["\t\t</Regions>", "\t\t<Plots />", "\t</Annotation>"]
    lines += ["</Annotations>", ""]
    return "\n".join(lines).encode("utf-8")


def _area(xy: np.ndarray) -> float:
    """Unsigned shoelace area of a closed ring's coordinates."""
    x, y = xy[:, 0], xy[:, 1]
    return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2
