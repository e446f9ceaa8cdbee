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
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable

from core.annotations.formats._common import (
    AnnotationSet,
    Reading,
    checked,
    class_colors,
    clean_difference,
    float_attr,
    fmt,
    parse_xml,
    parts_of,
    polygon,
    union,
    xml_root_tag,
)
from core.annotations.geometry import ellipse
from core.annotations.model import Annotation, AnnotationClass

NAME = "imagescope"
EXTENSIONS = (".xml",)
DESCRIPTION = "Aperio ImageScope XML"

_REGION_TYPES = {"0": "polygon", "1": "rectangle", "2": "ellipse", "3": "arrow", "4": "ruler", "5": "free-hand"}


def sniff(data: bytes) -> bool:
    return xml_root_tag(data) == "Annotations"


def bgr_to_rgb(value: int) -> tuple[int, int, int]:
    return value & 255, (value >> 8) & 255, (value >> 16) & 255


def rgb_to_bgr(color) -> int:
    r, g, b = (int(c) for c in color)
    return r | (g << 8) | (b << 16)


def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of an ImageScope XML file; errors name ``path``."""
    reading = Reading(path)
    root = parse_xml(data, reading)
    if root.tag != "Annotations":
        raise reading.error("", f"not an ImageScope annotation file (root element <{root.tag[:40]}>)")
    annotations: list[Annotation] = []
    skipped: dict[str, int] = {}
    for layer_index, layer in enumerate(root.findall("Annotation")):
        class_name = _layer_class(layer, layer_index)
        color = _layer_color(layer, reading, f"annotation layer {layer_index} ({class_name!r})")
        reading.add_class(class_name, color)
        positives, negatives = [], []
        regions = layer.find("Regions")
        for region_index, region in enumerate(regions.findall("Region") if regions is not None else []):
            where = f"layer {class_name!r} region {region.get('Id') or region_index}"
            kind = _REGION_TYPES.get((region.get("Type") or "0").strip(), "polygon")
            if kind in ("arrow", "ruler"):
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            geometry = _region_geometry(region, kind, reading, where)
            if geometry is None:
                continue
            if (region.get("NegativeROA") or "0").strip() == "1":
                negatives.append((region.get("BiopsiaId"), geometry))
            else:
                positives.append((region.get("BiopsiaId"), region.get("Text") or "", geometry))
        annotations.extend(_assemble(class_name, positives, negatives, reading))
    for kind, count in skipped.items():
        reading.warn("", f"{count} {kind} region{'s' if count > 1 else ''} skipped (not an area)")
    return reading.result(annotations)


def _layer_class(layer: ET.Element, index: int) -> str:
    name = (layer.get("Name") or "").strip()
    if name:
        return name
    attributes = layer.find("Attributes")
    items = attributes.findall("Attribute") if attributes is not None else []
    for item in items:
        if (item.get("Name") or "").strip().lower() == "description" and (item.get("Value") or "").strip():
            return item.get("Value").strip()
    for item in items:
        label = (item.get("Name") or "").strip()
        if label and label.lower() != "description":
            return label
    return f"Layer {layer.get('Id') or index + 1}"


def _layer_color(layer: ET.Element, reading: Reading, where: str) -> tuple[int, int, int] | None:
    raw = layer.get("LineColor")
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


def _region_geometry(region: ET.Element, kind: str, reading: Reading, where: str):
    vertices = region.find("Vertices")
    nodes = vertices.findall("Vertex") if vertices is not None else []
    points = checked([(float_attr(v, "X", reading, where), float_attr(v, "Y", reading, where)) for v in nodes],
                     reading, where)
    if kind in ("ellipse", "rectangle") and len(points) == 2:
        (x0, y0), (x1, y1) = points
        if kind == "ellipse":
            shape = ellipse(x0, y0, x1, y1)
        else:
            points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
            return polygon(points, [], reading, where)
        if shape is None:
            reading.warn(where, "empty or degenerate polygon dropped")
        return shape
    return polygon(points, [], reading, where)


def _assemble(class_name: str, positives: list, negatives: list, reading: Reading) -> list[Annotation]:
    merged: dict = {}
    order = []
    for ann_id, note, geometry in positives:
        key = ann_id if ann_id else object()
        if key in merged:
            merged[key][2].append(geometry)
        else:
            merged[key] = [ann_id, note, [geometry]]
            order.append(key)
    out = []
    for key in order:
        ann_id, note, parts = merged[key]
        geometry = union(parts)
        for hole_id, hole in negatives:
            if (hole_id and hole_id != ann_id) or geometry is None or not geometry.intersects(hole):
                continue
            geometry = clean_difference(geometry, hole)
        if geometry is None:
            reading.warn(f"layer {class_name!r}", "a region was entirely cut away by negative regions; dropped")
            continue
        out.append(Annotation(geometry, class_name, note, reading.unique_id(ann_id)))
    return out


def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of an ImageScope XML file: one layer per class, holes as negative regions."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    root = ET.Element("Annotations", {"MicronsPerPixel": "0"})
    used = [name for name in colors if any(a.class_name == name for a in annotations)]
    for layer_id, class_name in enumerate(used, start=1):
        layer = ET.SubElement(root, "Annotation", {
            "Id": str(layer_id), "Name": class_name, "ReadOnly": "0",
            "NameReadOnly": "0", "LineColorReadOnly": "0", "Incremental": "0", "Type": "4",
            "LineColor": str(rgb_to_bgr(colors[class_name])), "Visible": "1", "Selected": "0",
            "MarkupImagePath": "", "MacroName": ""})
        attributes = ET.SubElement(layer, "Attributes")
        ET.SubElement(attributes, "Attribute", {"Name": "Description", "Id": "0",
                                                "Value": class_name})
        regions = ET.SubElement(layer, "Regions")
        headers = ET.SubElement(regions, "RegionAttributeHeaders")
        for header_id, label in (("9999", "Region"), ("9997", "Length"), ("9996", "Area"), ("9998", "Text"),
                                 ("1", "Description")):
            ET.SubElement(headers, "AttributeHeader", {"Id": header_id, "Name": label, "ColumnWidth": "-1"})
        region_id = 0
        for ann in (a for a in annotations if a.class_name == class_name):
            for part in parts_of(ann.geometry):
                for negative, ring in [(False, part.exterior)] + [(True, r) for r in part.interiors]:
                    region_id += 1
                    region = ET.SubElement(regions, "Region", {
                        "Id": str(region_id), "Type": "0", "Zoom": "1", "Selected": "0", "ImageLocation": "",
                        "ImageFocus": "-1", "Length": fmt(ring.length), "Area": fmt(abs(_ring_area(ring))),
                        "LengthMicrons": "0", "AreaMicrons": "0", "Text": ann.note, "NegativeROA": str(int(negative)),
                        "InputRegionId": "0", "Analyze": "1", "DisplayId": str(region_id), "BiopsiaId": ann.id})
                    ET.SubElement(region, "Attributes")
                    vertices = ET.SubElement(region, "Vertices")
                    for x, y in ring.coords[:-1]:
                        ET.SubElement(vertices, "Vertex", {"X": fmt(x), "Y": fmt(y), "Z": "0"})
        ET.SubElement(layer, "Plots")
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _ring_area(ring) -> float:
    coords = list(ring.coords)
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(coords, coords[1:]))
