"""ASAP XML (ASAP, Camelyon16/17): ``<ASAP_Annotations>`` with ``<Annotations>`` and ``<AnnotationGroups>``.

Reading: each ``<Annotation Type=.. PartOfGroup=.. Color=..>`` with ``<Coordinates><Coordinate Order X Y/>``
becomes one annotation; the group is the class (``"None"``, ASAP's "no group", becomes
``"Unclassified"``); group colours come from ``<AnnotationGroups>``, else the annotation's colour.
Polygons, rectangles and splines (taken as the polygon through their control points) are read;
point sets, dots and measurements are skipped with a warning. The annotation's ``Name`` becomes the
note unless it is ASAP's default ("Annotation 12").

Holes: ASAP polygons have none. Biopsia writes each hole of an annotation of class ``C`` as its own
polygon in group ``"C_holes"``; on reading, polygons of a group ``"X_holes"`` are cut out of the
class-``X`` annotations they overlap (so hand-made files can use the same convention), and
``X_holes`` is not reported as a class. A multi-part annotation is written as one ASAP polygon per
part. Biopsia adds ``BiopsiaId`` (and ``BiopsiaHoleOf`` on holes, ``BiopsiaNote`` for the note)
attributes, which ASAP ignores, so that parts and holes find their own annotation again and a
round trip through Biopsia is exact; files re-saved by ASAP lose them, and then every part is an
annotation of its own and holes cut every overlapping annotation of their class.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterable

from core.annotations.formats._common import (
    UNCLASSIFIED,
    AnnotationSet,
    Reading,
    checked,
    class_colors,
    clean_difference,
    float_attr,
    fmt,
    hex_color,
    parse_hex_color,
    parse_xml,
    parts_of,
    polygon,
    union,
    xml_root_tag,
)
from core.annotations.model import Annotation, AnnotationClass

NAME = "asap"
EXTENSIONS = (".xml",)
DESCRIPTION = "ASAP XML"
HOLES_SUFFIX = "_holes"

_AREA_TYPES = {"polygon", "rectangle", "spline"}
_DEFAULT_NAME = re.compile(r"Annotation \d+")


def sniff(data: bytes) -> bool:
    return xml_root_tag(data) == "ASAP_Annotations"


def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of an ASAP XML file; errors name ``path``."""
    reading = Reading(path)
    root = parse_xml(data, reading)
    if root.tag != "ASAP_Annotations":
        raise reading.error("", f"not an ASAP annotation file (root element <{root.tag[:40]}>)")
    group_colors: dict[str, tuple | None] = {}
    for group in root.iter("Group"):
        name = (group.get("Name") or "").strip()
        if name:
            group_colors.setdefault(name, parse_hex_color(group.get("Color")))
    container = root.find("Annotations")
    elements = list(container.iter("Annotation")) if container is not None else []
    # pieces: (class, biopsia id, hole-of id, note, geometry, annotation index)
    pieces, holes = [], []
    skipped: dict[str, int] = {}
    for index, element in enumerate(elements):
        name = element.get("Name") or ""
        where = f"annotation {index}" + (f" ({name[:40]!r})" if name else "")
        kind = (element.get("Type") or "Polygon").strip()
        if kind.lower() not in _AREA_TYPES:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        group = (element.get("PartOfGroup") or "None").strip() or "None"
        class_name = UNCLASSIFIED if group == "None" else group
        geometry = polygon(_points(element, reading, where), [], reading, where)
        if geometry is None:
            continue
        if class_name.endswith(HOLES_SUFFIX) and len(class_name) > len(HOLES_SUFFIX):
            holes.append((class_name[: -len(HOLES_SUFFIX)], element.get("BiopsiaHoleOf"), geometry))
            continue
        note = element.get("BiopsiaNote")
        if note is None:
            note = "" if _DEFAULT_NAME.fullmatch(name) else name
        color = group_colors.get(group) or parse_hex_color(element.get("Color"))
        reading.add_class(class_name, color)
        pieces.append([class_name, element.get("BiopsiaId"), note, geometry])
    for kind, count in skipped.items():
        reading.warn("", f"{count} {kind} annotation{'s' if count > 1 else ''} skipped (not an area)")
    annotations = _assemble(pieces, holes, reading)
    for name in group_colors:
        if not (name.endswith(HOLES_SUFFIX) and len(name) > len(HOLES_SUFFIX)) and name != "None":
            reading.add_class(name, group_colors[name])
    return reading.result(annotations)


def _points(element: ET.Element, reading: Reading, where: str) -> list[tuple[float, float]]:
    coords = element.find("Coordinates")
    nodes = list(coords.iter("Coordinate")) if coords is not None else []
    points = []
    for order, node in enumerate(nodes):
        raw = node.get("Order")
        try:
            key = int(raw) if raw is not None else order
        except ValueError:
            key = order
        points.append((key, float_attr(node, "X", reading, where), float_attr(node, "Y", reading, where)))
    points.sort(key=lambda p: p[0])
    return checked([(x, y) for _, x, y in points], reading, where)


def _assemble(pieces: list, holes: list, reading: Reading) -> list[Annotation]:
    """Merge parts that share a BiopsiaId, then cut holes out of their annotation (or their class)."""
    merged: dict = {}
    order = []
    for class_name, ann_id, note, geometry in pieces:
        key = (class_name, ann_id) if ann_id else object()
        if key in merged:
            merged[key][3].append(geometry)
        else:
            merged[key] = [class_name, ann_id, note, [geometry]]
            order.append(key)
    annotations = []
    for key in order:
        class_name, ann_id, note, parts = merged[key]
        geometry = union(parts)
        for hole_class, hole_of, hole in holes:
            if hole_class != class_name or (hole_of and hole_of != ann_id) or not geometry.intersects(hole):
                continue
            geometry = clean_difference(geometry, hole)
            if geometry is None:
                break
        if geometry is None:
            reading.warn("", f"an annotation of class {class_name!r} was entirely cut away by its holes; dropped")
            continue
        annotations.append(Annotation(geometry, class_name, note, reading.unique_id(ann_id)))
    return annotations


def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of an ASAP XML file (see the module notes for holes and multi-part marks)."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    root = ET.Element("ASAP_Annotations")
    container = ET.SubElement(root, "Annotations")
    hole_groups = []
    count = 0

    def add(name, group, color, exterior, attrs):
        nonlocal count
        element = ET.SubElement(container, "Annotation", {"Name": name, "Type": "Polygon", "PartOfGroup": group,
                                                          "Color": hex_color(color), **attrs})
        coords = ET.SubElement(element, "Coordinates")
        for order, (x, y) in enumerate(exterior.coords[:-1]):
            ET.SubElement(coords, "Coordinate", {"Order": str(order), "X": fmt(x), "Y": fmt(y)})
        count += 1

    for ann in annotations:
        group = "None" if ann.class_name == UNCLASSIFIED else ann.class_name
        color = colors[ann.class_name]
        for part in parts_of(ann.geometry):
            attrs = {"BiopsiaId": ann.id}
            if ann.note:
                attrs["BiopsiaNote"] = ann.note
            add(ann.note or f"Annotation {count}", group, color, part.exterior, attrs)
            for interior in part.interiors:
                hole_group = ann.class_name + HOLES_SUFFIX
                if hole_group not in hole_groups:
                    hole_groups.append(hole_group)
                add(f"Annotation {count}", hole_group, (128, 128, 128), interior, {"BiopsiaHoleOf": ann.id})
    groups = ET.SubElement(root, "AnnotationGroups")
    for name, color in list(colors.items()) + [(h, (128, 128, 128)) for h in hole_groups]:
        if name == UNCLASSIFIED:
            continue
        group = ET.SubElement(groups, "Group", {"Name": name, "PartOfGroup": "None", "Color": hex_color(color)})
        ET.SubElement(group, "Attributes")
    ET.indent(root, space="\t")
    return b'<?xml version="1.0"?>\n' + ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
