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
part. Biopsia adds ``BiopsiaId`` (and ``BiopsiaHoleOf`` on holes, ``BiopsiaNote`` for the note,
``BiopsiaClass`` for a class literally named "None") attributes, which ASAP ignores, so that parts
and holes find their own annotation again and a round trip through Biopsia is exact (a polygon
with ``BiopsiaId`` is a part even in a group ending in ``_holes``); files re-saved by ASAP lose
them, and then every part is an annotation of its own and holes cut every overlapping annotation
of their class.

Text that XML 1.0 cannot hold (control characters, broken surrogates) is dropped or replaced when
writing (:func:`core.annotations.text.clean_text`); tabs and line breaks in notes are written as
character references, so they read back. Reading streams the file through expat (no tree) and
refuses any ``<!DOCTYPE``, hence every entity declaration.
"""

from __future__ import annotations

import re
from array import array
from typing import Iterable

import numpy as np
import shapely

from core.annotations.formats._common import (
    UNCLASSIFIED,
    AnnotationSet,
    Reading,
    class_colors,
    hex_color,
    number,
    parse_hex_color,
    parts_of,
    without_gc,
    xml_root_tag,
)
from core.annotations.formats._polygons import assemble, overlapping
from core.annotations.formats._xml import attr, attributes, numbers, stream
from core.annotations.model import Annotation, AnnotationClass

NAME = "asap"
EXTENSIONS = (".xml",)
DESCRIPTION = "ASAP XML"
HOLES_SUFFIX = "_holes"
HOLE_COLOR = (128, 128, 128)

_AREA_TYPES = {"polygon", "rectangle", "spline"}
_DEFAULT_NAME = re.compile(r"Annotation \d+")
_ROOT = "ASAP_Annotations"
_ORDER_MIN, _ORDER_MAX = -(2**63), 2**63 - 1  # vertex order numbers are kept as int64


def sniff(data: bytes) -> bool:
    return xml_root_tag(data) == _ROOT


class _Record:
    """One ``<Annotation>`` as read: its attributes and its coordinates in file order."""

    __slots__ = ("index", "attrs", "order", "xs", "ys", "where")

    def __init__(self, index: int, attrs: dict):
        self.index, self.attrs = index, attrs
        self.order, self.xs, self.ys = array("q"), array("d"), array("d")
        name = attrs.get("Name") or ""
        self.where = f"annotation {index}" + (f" ({name[:40]!r})" if name else "")

    def points(self) -> np.ndarray:
        xy = np.column_stack([np.frombuffer(self.xs, dtype=np.float64), np.frombuffer(self.ys, dtype=np.float64)])
        order = np.frombuffer(self.order, dtype=np.int64)
        if len(order) > 1 and (np.diff(order) < 0).any():
            xy = xy[np.argsort(order, kind="stable")]
        return xy


class _Handlers:
    """expat handlers that collect annotations, their coordinates and the group colours (no tree)."""

    def __init__(self, reading: Reading):
        self.reading = reading
        self.stack: list[str] = []
        self.records: list[_Record] = []
        self.groups: dict[str, tuple | None] = {}
        self.current: _Record | None = None
        self.collecting = False  # inside the first <Coordinates> of the current annotation
        self.seen_coordinates = False
        self.count = 0

    def start(self, name: str, attrs: list) -> None:
        stack = self.stack
        stack.append(name)
        if name == "Coordinate" and self.collecting and len(stack) == 5:
            if len(attrs) == 6 and attrs[0] == "Order" and attrs[2] == "X" and attrs[4] == "Y":
                try:
                    order, x, y = int(attrs[1]), float(attrs[3]), float(attrs[5])
                except ValueError:
                    pass
                else:
                    if not _ORDER_MIN <= order <= _ORDER_MAX:
                        order = min(max(order, _ORDER_MIN), _ORDER_MAX)
                    record = self.current
                    record.order.append(order)
                    record.xs.append(x)
                    record.ys.append(y)
                    return
            self._coordinate(attributes(attrs))
            return
        depth = len(stack)
        if depth == 1:
            if name != _ROOT:
                raise self.reading.error("", f"not an ASAP annotation file (root element <{name[:40]}>)")
        elif depth == 3 and name == "Annotation" and stack[1] == "Annotations":
            self.current = _Record(self.count, attributes(attrs))
            self.count += 1
            self.seen_coordinates = False
        elif depth == 4 and name == "Coordinates" and self.current is not None and not self.seen_coordinates:
            self.collecting = self.seen_coordinates = True
        elif depth == 3 and name == "Group" and stack[1] == "AnnotationGroups":
            group = attributes(attrs)
            label = (group.get("Name") or "").strip()
            if label:
                self.groups.setdefault(label, parse_hex_color(group.get("Color")))

    def _coordinate(self, attrs: dict) -> None:
        record, reading = self.current, self.reading
        raw = attrs.get("Order")
        try:
            order = min(max(int(raw), _ORDER_MIN), _ORDER_MAX) if raw is not None else len(record.xs)
        except ValueError:
            order = len(record.xs)
        values = []
        for label in ("X", "Y"):
            if label not in attrs:
                raise reading.error(record.where, f"<Coordinate> has no {label} attribute")
            values.append(number(attrs[label], reading, record.where))
        record.order.append(order)
        record.xs.append(values[0])
        record.ys.append(values[1])

    def end(self, name: str) -> None:
        stack = self.stack
        stack.pop()
        depth = len(stack)
        if depth == 3 and name == "Coordinates":
            self.collecting = False
        elif depth == 2 and name == "Annotation" and self.current is not None:
            self.records.append(self.current)
            self.current = None
            self.collecting = False


@without_gc
def parse(data: bytes, path) -> AnnotationSet:
    """Annotations from the bytes of an ASAP XML file; errors name ``path``."""
    reading = Reading(path)
    handlers = _Handlers(reading)
    stream(data, reading, handlers.start, handlers.end)
    group_colors = handlers.groups
    pieces, holes = [], []  # pieces: [class, biopsia id, note, colour, piece]; holes: (class, hole-of, piece)
    skipped: dict[str, int] = {}
    for record in handlers.records:
        attrs, where = record.attrs, record.where
        kind = (attrs.get("Type") or "Polygon").strip()
        if kind.lower() not in _AREA_TYPES:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        group = (attrs.get("PartOfGroup") or "None").strip() or "None"
        ann_id, hole_of = attrs.get("BiopsiaId"), attrs.get("BiopsiaHoleOf")
        holes_group = group.endswith(HOLES_SUFFIX) and len(group) > len(HOLES_SUFFIX)
        if hole_of is not None or (ann_id is None and holes_group):
            hole_class = reading.class_name(group[: -len(HOLES_SUFFIX)], where) if holes_group else None
            holes.append((hole_class, hole_of, reading.pieces.add([record.points()], where, hole=True)))
            continue
        if "BiopsiaClass" in attrs:
            class_name = reading.class_name(attrs["BiopsiaClass"], where)
        else:
            class_name = UNCLASSIFIED if group == "None" else reading.class_name(group, where)
        note = attrs.get("BiopsiaNote")
        if note is None:
            name = attrs.get("Name") or ""
            note = "" if _DEFAULT_NAME.fullmatch(name) else name
        # "None" is no group at all: its marks (unclassified, or of a class named "None") carry their colour
        own = parse_hex_color(attrs.get("Color"))
        color = own if group == "None" else (group_colors.get(group) or own)
        pieces.append([class_name, ann_id, reading.text(note, where), color,
                       reading.pieces.add([record.points()], where)])
    for kind, count in skipped.items():
        reading.warn("", f"{count} {kind} annotation{'s' if count > 1 else ''} skipped (not an area)")
    built = reading.pieces.build()
    annotations = _assemble(pieces, holes, built, reading)
    for name, color in group_colors.items():
        if not (name.endswith(HOLES_SUFFIX) and len(name) > len(HOLES_SUFFIX)) and name != "None":
            reading.add_class(reading.class_name(name, "a group"), color)
    return reading.result(annotations)


def _assemble(pieces: list, holes: list, built: list, reading: Reading) -> list[Annotation]:
    """Merge parts that share a BiopsiaId, then cut holes out of their annotation (or their class)."""
    merged: dict = {}
    for class_name, ann_id, note, color, piece in pieces:
        geometry = built[piece]
        if geometry is None:
            continue
        reading.add_class(class_name, color)
        key = (class_name, ann_id) if ann_id else object()
        if key in merged:
            merged[key][3].append(geometry)
        else:
            merged[key] = [class_name, ann_id, note, [geometry]]
    by_id: dict[str, list] = {}
    by_class: dict[str, list] = {}
    for hole_class, hole_of, piece in holes:
        if built[piece] is None:
            continue
        if hole_of is not None:
            by_id.setdefault(hole_of, []).append(built[piece])
        else:
            by_class.setdefault(hole_class, []).append(built[piece])
    marks = list(merged.values())
    class_holes: list[list] = [[] for _ in marks]
    for hole_class, group in by_class.items():
        members = [i for i, mark in enumerate(marks) if mark[0] == hole_class]
        for i, found in zip(members, overlapping([marks[i][3] for i in members], group)):
            class_holes[i] = [group[h] for h in found]
    annotations = []
    for (class_name, ann_id, note, parts), extra in zip(marks, class_holes):
        geometry = assemble(parts, (by_id.get(ann_id, []) if ann_id else []) + extra)
        if geometry is None:
            reading.warn("", f"an annotation of class {class_name!r} was entirely cut away by its holes; dropped")
            continue
        annotations.append(Annotation(geometry, class_name, note, reading.unique_id(ann_id)))
    return annotations


@without_gc
def dump(annotations: Iterable[Annotation], classes: Iterable[AnnotationClass]) -> bytes:
    """The bytes of an ASAP XML file (see the module notes for holes and multi-part marks)."""
    annotations = list(annotations)
    colors = class_colors(classes, annotations)
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    hole_groups: dict[str, None] = {}
    count = 0

    def add(name: str, group: str, color, ring, extra: str) -> None:
        nonlocal count
        lines.append(f'\t\t<Annotation Name="{attr(name)}" Type="Polygon" PartOfGroup="{attr(group)}" '
                     f'Color="{hex_color(color)}"{extra}>')
        lines.append("\t\t\t<Coordinates>")
        xy = shapely.get_coordinates(ring)[:-1]
        lines.extend(f'\t\t\t\t<Coordinate Order="{order}" X="{x}" Y="{y}" />'
                     for order, (x, y) in enumerate(zip(numbers(xy[:, 0]), numbers(xy[:, 1]))))
        lines.append("\t\t\t</Coordinates>")
        lines.append("\t\t</Annotation>")
        count += 1

    for ann in annotations:
        group = "None" if ann.class_name == UNCLASSIFIED else ann.class_name
        color = colors[ann.class_name]
        extra = f' BiopsiaId="{attr(ann.id)}"'
        if ann.note:
            extra += f' BiopsiaNote="{attr(ann.note)}"'
        if ann.class_name == "None":  # the group "None" means unclassified to ASAP
            extra += ' BiopsiaClass="None"'
        hole_group = ann.class_name + HOLES_SUFFIX
        for part in parts_of(ann.geometry):
            add(ann.note or f"Annotation {count}", group, color, part.exterior, extra)
            for interior in part.interiors:
                hole_groups.setdefault(hole_group)
                add(f"Annotation {count}", hole_group, HOLE_COLOR, interior, f' BiopsiaHoleOf="{attr(ann.id)}"')
    lines += ["\t</Annotations>", "\t<AnnotationGroups>"]
    groups = [(name, color) for name, color in colors.items() if name not in (UNCLASSIFIED, "None")]
    groups += [(name, HOLE_COLOR) for name in hole_groups if name not in colors]
    for name, color in groups:
        lines.append(f'\t\t<Group Name="{attr(name)}" PartOfGroup="None" Color="{hex_color(color)}">')
        lines += ["\t\t\t<Attributes />", "\t\t</Group>"]
    lines += ["\t</AnnotationGroups>", "</ASAP_Annotations>", ""]
    return "\n".join(lines).encode("utf-8")
