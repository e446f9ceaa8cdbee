"""What every annotation format shares: the result type, safe reading, text, id and coordinate checks."""

from __future__ import annotations

import functools
import gc
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from core.annotations.formats._polygons import Pieces
from core.annotations.geometry import MAX_COORDINATE, check_coordinates
from core.annotations.model import Annotation, AnnotationClass, Polygonal, new_id
from core.annotations.text import clean_text
from core.errors import AnnotationFormatError

#: Larger annotation files are refused (no real annotation file comes near this).
MAX_FILE_BYTES = 500 * 1024 * 1024
#: JSON files holding more values (numbers, lists, objects) are refused before parsing: Python takes
#: about 120 bytes a value, so this bounds reading to a few GB (100,000 QuPath cells hold 7 million).
MAX_JSON_VALUES = 20_000_000
#: Warnings about single marks kept per file; the rest are counted.
MAX_WARNINGS = 100
#: Colour for a class the file names without a colour (the store's fallback).
DEFAULT_COLOR = (255, 200, 0)
#: Class given to marks a file leaves unclassified (QuPath's unclassified objects, ASAP's "None" group).
UNCLASSIFIED = "Unclassified"


def without_gc(function):
    """Run ``function`` with the cyclic garbage collector paused (and restored after).

    Reading or writing a large file makes millions of small objects, none of them cyclic; the
    collector's full passes over them cost about a third of the time, for nothing.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if paused:
                gc.enable()

    return wrapper


@dataclass
class AnnotationSet:
    """The marks read from one file.

    Attributes
    ----------
    annotations : list of Annotation
        Geometry in level-0 pixels, in file order.
    classes : list of AnnotationClass
        Classes found in the file (name, colour), in first-seen order.
    warnings : list of str
        Repairs and omissions, each starting with the file path.
    foreign : list
        Features the format keeps but Biopsia cannot show (points, lines, empty geometry), as
        parsed JSON values, so that a project file can write them back unchanged (GeoJSON only).
    new_ids : int
        How many marks got a new id because the file gave none or a duplicate one (their ids
        then differ each time the file is read).
    """

    annotations: list[Annotation] = field(default_factory=list)
    classes: list[AnnotationClass] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    foreign: list = field(default_factory=list)
    new_ids: int = 0


class Reading:
    """Collects classes and warnings while one file is parsed; every message starts with the path."""

    def __init__(self, path):
        self.path = Path(path)
        self.warnings: list[str] = []
        self._classes: dict[str, AnnotationClass] = {}
        self._ids: set[str] = set()
        self.new_ids = 0
        self.pieces = Pieces(self)  # the file's polygons, built together once it is read
        self._cleaned: list[str] = []  # where text had to be cleaned (see :meth:`text`)
        self._more_warnings = 0

    def error(self, where: str, problem: str) -> AnnotationFormatError:
        return AnnotationFormatError(f"{self.path}: {where + ': ' if where else ''}{problem}")

    def warn(self, where: str, problem: str) -> None:
        if where and len(self.warnings) >= MAX_WARNINGS:  # a million broken polygons: say how many, not each
            self._more_warnings += 1
        else:
            self.warnings.append(f"{self.path}: {where + ': ' if where else ''}{problem}")

    def text(self, value, where: str) -> str:
        """A note, name or id as the file gave it, cleaned of what no annotation file can hold
        (:func:`core.annotations.text.clean_text`); cleaned texts get one warning per file."""
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        cleaned = clean_text(text)
        if cleaned != text:
            self._cleaned.append(where)
        return cleaned

    def class_name(self, value, where: str) -> str:
        """A class name, cleaned and stripped; nothing left means unclassified."""
        return self.text(value, where).strip() or UNCLASSIFIED

    def add_class(self, name: str, color: tuple[int, int, int] | None) -> None:
        """Record a class the first time it is seen (its first colour wins)."""
        if name not in self._classes:
            self._classes[name] = AnnotationClass(name, color or DEFAULT_COLOR)
        elif color is not None and self._classes[name].color == DEFAULT_COLOR and color != DEFAULT_COLOR:
            self._classes[name] = AnnotationClass(name, color)

    def unique_id(self, wanted: str | None) -> str:
        """``wanted`` (a UUID normalised to 32 hex digits) unless missing or already taken."""
        ann_id = normalise_id(self.text(wanted, "an id")) if wanted else None
        if not ann_id or ann_id in self._ids:
            ann_id = new_id()
            self.new_ids += 1
        self._ids.add(ann_id)
        return ann_id

    def result(self, annotations: list[Annotation], foreign: list = ()) -> AnnotationSet:
        for name in dict.fromkeys(a.class_name for a in annotations):
            self.add_class(name, None)
        if self._cleaned:
            count = len(self._cleaned)
            self.warnings.append(f"{self.path}: {self._cleaned[0]}: {count} text{'s' if count > 1 else ''} (notes, "
                                 "class names or ids) held characters an annotation file cannot hold (control "
                                 "characters or broken surrogates): they were removed or replaced by U+FFFD")
        if self._more_warnings:
            self.warnings.append(f"{self.path}: and {self._more_warnings:,} more warnings about single marks")
        return AnnotationSet(list(annotations), list(self._classes.values()), list(self.warnings),
                             list(foreign), self.new_ids)


_DASHED = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"[0-9a-f]{32}")


def normalise_id(value) -> str:
    """UUIDs in any spelling become 32 lower-case hex digits (our ids); other ids are kept as text."""
    text = clean_text(str(value)).strip()
    if _DASHED.fullmatch(text):  # as QuPath writes them: no need to parse
        return text.replace("-", "")
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return text


def dashed_uuid(ann_id: str) -> str:
    """Our 32-hex ids written as QuPath expects them (8-4-4-4-12); other ids unchanged."""
    if _HEX.fullmatch(ann_id):
        return f"{ann_id[:8]}-{ann_id[8:12]}-{ann_id[12:16]}-{ann_id[16:20]}-{ann_id[20:]}"
    try:
        return str(uuid.UUID(ann_id))
    except ValueError:
        return ann_id


def read_bytes(path) -> bytes:
    """The whole file, refusing folders, missing files and files beyond :data:`MAX_FILE_BYTES`."""
    path = Path(path)
    try:
        size = os.stat(path).st_size
        if path.is_dir():
            raise AnnotationFormatError(f"{path}: is a folder, not an annotation file")
        if size > MAX_FILE_BYTES:
            raise AnnotationFormatError(f"{path}: file is {size / 2**20:.0f} MB, more than the "
                                        f"{MAX_FILE_BYTES // 2**20} MB an annotation file may have")
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise AnnotationFormatError(f"{path}: cannot read the file: {err.strerror or err}") from err
    if not data.strip():
        raise AnnotationFormatError(f"{path}: the file is empty")
    return data


def check_json_size(data: bytes, reading: Reading) -> None:
    """Refuse a JSON document whose parsed form would not fit a bounded amount of memory."""
    values = data.count(b",") + data.count(b"[") + data.count(b"{")  # C loops: milliseconds per 100 MB
    if values > MAX_JSON_VALUES:
        raise reading.error("", f"the file holds about {values:,} JSON values, more than the {MAX_JSON_VALUES:,} "
                                "Biopsia reads at once (several GB of memory); split it, or export fewer objects "
                                "(annotations, not detections)")


# -- numbers and polygons ------------------------------------------------------------------
def number(value, reading: Reading, where: str) -> float:
    """A coordinate from JSON (int/float) or XML (text, a decimal comma accepted), checked for range."""
    if isinstance(value, str):
        text = value.strip()
        if "," in text and "." not in text:  # some ASAP builds write the locale's decimal comma
            text = text.replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            raise reading.error(where, f'coordinates must be numbers, got "{value[:40]}"') from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = value if not isinstance(value, (list, dict)) else type(value).__name__
        raise reading.error(where, f"coordinates must be numbers, got {shown!r}"[:200])
    if isinstance(value, int) and abs(value) > MAX_COORDINATE:
        shown = f"{float(value):.3g}" if value.bit_length() < 1000 else f"of {len(str(abs(value)))} digits"
        raise reading.error(where, f"coordinate {shown} is beyond {MAX_COORDINATE:g} pixels")
    value = float(value)
    if not math.isfinite(value):
        raise reading.error(where, f"coordinate {value} is not a finite number")
    return value


def points_array(points, reading: Reading, where: str) -> np.ndarray:
    """An (n, 2) float array from a JSON ring ``[[x, y], ...]`` (a third value, z, is ignored).

    Converted by numpy in one go; when that fails (a string, a missing value, a huge integer) the
    ring is read value by value, which names the problem.
    """
    if not isinstance(points, list):
        raise reading.error(where, f"a ring must be a list of [x, y] points, got {type(points).__name__}")
    try:
        array = np.array(points, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is not None and array.ndim == 2 and array.shape[1] >= 2:
        return np.ascontiguousarray(array[:, :2])
    if array is not None and array.size == 0 and array.ndim == 1:
        return np.zeros((0, 2))
    return np.asarray(ring(points, reading, where), dtype=np.float64).reshape(-1, 2)


def ring(points: Sequence, reading: Reading, where: str) -> list[tuple[float, float]]:
    """A list of (x, y) from ``[[x, y], ...]`` (JSON) with every value checked."""
    if not isinstance(points, list):
        raise reading.error(where, f"a ring must be a list of [x, y] points, got {type(points).__name__}")
    out = []
    for point in points:
        if not isinstance(point, list) or len(point) < 2:
            raise reading.error(where, f"a point must be [x, y], got {str(point)[:40]}")
        out.append((number(point[0], reading, where), number(point[1], reading, where)))
    try:
        check_coordinates(out)
    except ValueError as err:
        raise reading.error(where, str(err)) from None
    return out


def parts_of(geometry: Polygonal) -> list[Polygon]:
    """Polygon parts with the exterior counter-clockwise and holes clockwise (GeoJSON's order)."""
    parts = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    return [orient(p, 1.0) for p in parts if not p.is_empty]


def geojson_geometries(geometries: Sequence[Polygonal]) -> list[dict]:
    """GeoJSON geometry objects of many marks at once (vectorised: no shapely call per mark).

    Exteriors counter-clockwise, holes clockwise, rings closed, coordinates rounded to 1/1000
    pixel with whole numbers as integers; a mark of one part is a Polygon, else a MultiPolygon.
    """
    if not len(geometries):
        return []
    oriented = shapely.orient_polygons(np.asarray(list(geometries), dtype=object))
    parts, part_of = shapely.get_parts(oriented, return_index=True)
    filled = ~shapely.is_empty(parts)
    parts, part_of = parts[filled], part_of[filled]
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    rounded = np.round(coords, 3)
    whole = rounded == np.floor(rounded)
    values = rounded.astype(object)
    if whole.any():
        values[whole] = rounded[whole].astype(np.int64).astype(object)
    points = values.tolist()
    ring_ends = np.cumsum(np.bincount(coord_of, minlength=len(rings))).tolist()
    ring_lists = [points[a:b] for a, b in zip([0] + ring_ends[:-1], ring_ends)]
    part_ends = np.cumsum(np.bincount(ring_of, minlength=len(parts))).tolist()
    polygons = [ring_lists[a:b] for a, b in zip([0] + part_ends[:-1], part_ends)]
    mark_ends = np.cumsum(np.bincount(part_of, minlength=len(geometries))).tolist()
    out = []
    for a, b in zip([0] + mark_ends[:-1], mark_ends):
        out.append({"type": "Polygon", "coordinates": polygons[a]} if b - a == 1
                   else {"type": "MultiPolygon", "coordinates": polygons[a:b]})
    return out


def class_colors(classes: Iterable[AnnotationClass], annotations: Iterable[Annotation]) -> dict[str, tuple]:
    """Colour per class name for writing: given classes first, the fallback colour for the rest."""
    colors = {c.name: tuple(int(v) for v in c.color) for c in classes}
    for ann in annotations:
        colors.setdefault(ann.class_name, DEFAULT_COLOR)
    return colors


def hex_color(color) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in color))


def parse_hex_color(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    match = re.fullmatch(r"\s*#?([0-9a-fA-F]{6})\s*", text)
    if not match:
        return None
    v = int(match.group(1), 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


# -- XML -----------------------------------------------------------------------------------
def _as_utf8(data: bytes) -> bytes:
    """UTF-16 documents re-encoded as UTF-8 (so that the root element can be sniffed from bytes)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:2] in (b"<\x00", b"\x00<"):
        encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else (
            "utf-16-le" if data[:1] == b"<" else "utf-16-be")
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            return data
        text = re.sub(r"^(\ufeff?<\?xml[^>]*?encoding=)([\"'])[^\"']*\2", r'\1"UTF-8"', text, count=1)
        return text.lstrip("\ufeff").encode("utf-8")
    return data


_TAG = re.compile(rb"<\s*([A-Za-z_][\w.:-]*)")


def xml_root_tag(data: bytes) -> str | None:
    """The name of the first element, found cheaply (declarations, comments and processing instructions skipped)."""
    head = _as_utf8(data[:65536])
    head = re.sub(rb"<\?.*?\?>|<!--.*?-->", b"", head, flags=re.DOTALL)
    match = _TAG.search(head)
    return match.group(1).decode("ascii", "replace") if match else None
