"""Seeded fuzzer for annotation files: damaged or hostile QuPath GeoJSON, ASAP and ImageScope XML.

The sources are valid files: Biopsia's own export of a few marks (holes, several parts, notes) in
each format and the layouts the real tools write. Each case changes a copy: bytes flipped, inserted
or removed, the file cut short; structural changes to the parsed document (a value swapped for one
of another type, a key or an element deleted, duplicated or moved, types and tags renamed, values
nested hundreds deep, huge or non-finite numbers, odd text); or a hostile file (entity expansion,
external entities, nesting thousands deep, polygons that cross themselves ten thousand times).

Only AnnotationFormatError may escape and its message starts with the file's path; every case takes
bounded time and peak memory stays bounded; a file that reads exports to all three formats and
reads back equal (``test_annotation_roundtrip.assert_same``); the source files never change.
A failure names its seed; replay it with ``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from core.annotations.formats import FORMATS, read_annotations
from core.errors import AnnotationFormatError
from fuzzing import peak_memory_mb, reset_peak_memory, seeds
from tests.core.annotations.test_annotation_formats import ASAP, CLASSES, IMAGESCOPE, QUPATH_02, QUPATH_04, marks
from tests.core.annotations.test_annotation_roundtrip import NASTY, assert_same

CASES = 300
CASE_LIMIT_S = 30.0
RSS_GROWTH_LIMIT_MB = 1024
SUFFIX = {"geojson": ".geojson", "asap": ".xml", "imagescope": ".xml"}

JUNK_VALUES = [None, True, False, 0, -1, 2**63, 10**400, -10**400, 1e308, -1e-320, math.nan, math.inf, -math.inf,
               "", "abc", "1,5", " 3 ", "0x10", "1e999", "nan", [], {}, [[]], [[[]]], {"type": "Polygon"},
               [[0, 0], [1, 1]], "\ud800", "\x00"]
JUNK_TEXT = ["", "nan", "inf", "-1e999", "1e400", "9" * 400, "abc", "1,5", "  3 ", "0x10", "&amp;", "&#x41;", "-0",
             "1e-400", "x" * 3000, "None", "Tumour_holes", "1", "0", "5", "-5", "4294967296"]
GEOMETRY_TYPES = ["Point", "MultiPoint", "LineString", "Polygon", "MultiPolygon", "GeometryCollection", "Feature",
                  "FeatureCollection", "Bogus", None, 3]
XML_TAGS = ["Annotation", "Annotations", "Coordinates", "Coordinate", "Region", "Regions", "Vertex", "Vertices",
            "Group", "AnnotationGroups", "Attributes", "Attribute", "ASAP_Annotations"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("annotation-sources")
    files = {f"biopsia-{name}": (name, module.dump(marks(), CLASSES)) for name, module in FORMATS.items()}
    files.update({"qupath-0.4": ("geojson", QUPATH_04.encode()), "qupath-0.2": ("geojson", QUPATH_02.encode()),
                  "asap": ("asap", ASAP.encode()), "imagescope": ("imagescope", IMAGESCOPE.encode())})
    out = {}
    for label, (fmt, data) in files.items():
        path = folder / f"{label}{SUFFIX[fmt]}"
        path.write_bytes(data)
        out[label] = (fmt, path)
    return out


# -- byte damage ------------------------------------------------------------------------------------
def damage_bytes(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "insert", "delete"])
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(max(1, len(data)))
        if kind == "flip" and data:
            data[pos] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del data[pos:]
            break
        elif kind == "insert":
            data[pos:pos] = rng.choice([b"<", b">", b'"', b"&", b"]", b"{", b"\x00", b"\xff\xfe", b"-", b"1e999",
                                        b"NaN", b"<!--", b"<![CDATA[", b"&#0;", b"\xed\xa0\x80"])
        else:
            del data[pos:pos + rng.randint(1, 40)]
    return f"bytes-{kind}", bytes(data)


# -- structural damage: GeoJSON ----------------------------------------------------------------------
def _slots(doc) -> list[tuple]:
    """Every (container, key) in a JSON document, found without recursion."""
    found, todo = [], [doc]
    while todo:
        node = todo.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            found.append((node, key))
            todo.append(value)
    return found


def damage_json(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    doc = json.loads(data)
    kind = rng.choice(["retype", "delete", "nest", "duplicate", "swap", "type", "number", "text"])
    for _ in range(rng.randint(1, 3)):
        slots = _slots(doc)
        if not slots:
            break
        node, key = rng.choice(slots)
        if kind == "retype":
            node[key] = copy.deepcopy(rng.choice(JUNK_VALUES))
        elif kind == "delete":
            del node[key]
        elif kind == "nest":
            value = node[key]
            for _ in range(rng.choice([1, 2, 50, 480, 900])):
                value = ({"type": "GeometryCollection", "geometries": [value]} if rng.random() < 0.7 else [value])
            node[key] = value
        elif kind == "duplicate" and isinstance(node, list):
            node[key:key] = [copy.deepcopy(node[key]) for _ in range(rng.randint(1, 30))]
        elif kind == "swap":
            other, other_key = rng.choice(slots)
            node[key], other[other_key] = other[other_key], node[key]
        elif kind == "type":
            typed = [(n, k) for n, k in slots if k == "type"]
            if typed:
                node, key = rng.choice(typed)
                node[key] = rng.choice(GEOMETRY_TYPES)
        elif kind == "number":
            numbers = [(n, k) for n, k in slots if isinstance(n[k], (int, float)) and not isinstance(n[k], bool)]
            if numbers:
                node, key = rng.choice(numbers)
                node[key] = rng.choice([10**400, 1e308, -1e308, math.nan, math.inf, 1e7 + 1, -0.0, 1e-320,
                                        2**64, 0.1234567890123])
        else:
            texts = [(n, k) for n, k in slots if isinstance(n[k], str)]
            if texts:
                node, key = rng.choice(texts)
                node[key] = "".join(rng.choice(NASTY) for _ in range(rng.randint(1, 6)))
    try:
        return f"json-{kind}", json.dumps(doc).encode()
    except (RecursionError, ValueError):
        return f"json-{kind}", data


# -- structural damage: XML --------------------------------------------------------------------------
def damage_xml(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    root = ET.fromstring(data)
    kind = rng.choice(["attribute", "delete-attribute", "tag", "delete", "duplicate", "move", "nest", "text"])
    for _ in range(rng.randint(1, 3)):
        elements = list(root.iter())
        parents = {child: parent for parent in elements for child in parent}
        element = rng.choice(elements)
        parent = parents.get(element)
        if kind == "attribute" and element.attrib:
            element.set(rng.choice(sorted(element.attrib)), rng.choice(JUNK_TEXT))
        elif kind == "delete-attribute" and element.attrib:
            del element.attrib[rng.choice(sorted(element.attrib))]
        elif kind == "tag":
            element.tag = rng.choice(XML_TAGS)
        elif kind == "delete" and parent is not None:
            parent.remove(element)
        elif kind == "duplicate" and parent is not None:
            for _ in range(rng.randint(1, 20)):
                parent.append(copy.deepcopy(element))
        elif kind == "move" and parent is not None:
            target = rng.choice(elements)
            if target is not element and element not in target.iter():
                parent.remove(element)
                target.append(element)
        elif kind == "nest" and parent is not None:
            index = list(parent).index(element)
            outer = element
            for _ in range(rng.choice([1, 5, 300, 3000])):
                wrapper = ET.Element(rng.choice(XML_TAGS))
                wrapper.append(outer)
                outer = wrapper
            parent[index] = outer
        elif kind == "text" and element.attrib:
            key = rng.choice(sorted(element.attrib))
            element.set(key, "".join(rng.choice(NASTY[4:]) for _ in range(rng.randint(1, 6))).replace("\x00", ""))
    try:
        return f"xml-{kind}", ET.tostring(root, encoding="utf-8")
    except (RecursionError, ValueError):
        return f"xml-{kind}", data


# -- hostile files ------------------------------------------------------------------------------------
def _ring(points) -> list:
    points = [[float(x), float(y)] for x, y in points]
    return points + [points[0]]


def _geojson_polygon(points) -> bytes:
    return json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(points)]}}).encode()


def hostile(fmt: str, rng: random.Random) -> tuple[str, bytes]:
    root = {"geojson": "x", "asap": "ASAP_Annotations", "imagescope": "Annotations"}[fmt]
    kind = rng.choice(["laughs", "external", "dtd", "parameter", "deep", "crossing", "jitter", "repeats", "utf16"])
    if kind == "laughs":
        levels = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
        return kind, f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY l0 "lol">{levels}]><{root}>&l9;</{root}>'.encode()
    if kind == "external":
        return kind, f'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><{root} Name="&e;"/>'.encode()
    if kind == "dtd":
        return kind, f'<?xml version="1.0"?><!DOCTYPE {root} SYSTEM "http://127.0.0.1:9/x.dtd"><{root}/>'.encode()
    if kind == "parameter":
        return kind, (f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><{root}/>').encode()
    if kind == "deep":
        depth = rng.choice([1000, 20000, 200000])
        if fmt == "geojson":
            return kind, b"[" * depth + b"]" * depth
        inner = "<Annotation>" * depth + "</Annotation>" * depth
        return kind, f"<{root}>{inner}</{root}>".encode()
    if kind == "utf16":
        text = FORMATS[fmt].dump(marks(), CLASSES).decode("utf-8")
        if fmt != "geojson":
            text = text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
        return kind, text.encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be"]))
    n = rng.choice([300, 2000, 6000])
    points = np.random.default_rng(rng.randrange(2**32)).uniform(0, 5000, (n, 2))
    if kind == "jitter":  # a circle whose outline shakes by more than its vertex spacing
        t = np.linspace(0, 2 * np.pi, n * 5, endpoint=False)
        points = np.c_[1000 * np.cos(t), 1000 * np.sin(t)] + 2000 + np.random.default_rng(n).normal(0, 2, (n * 5, 2))
    elif kind == "repeats":
        points = np.repeat(points[:4], n, axis=0)
    if fmt == "geojson":
        return kind, _geojson_polygon(points)
    if fmt == "asap":
        coords = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(points))
        return kind, (f'<ASAP_Annotations><Annotations><Annotation Type="Polygon" PartOfGroup="T"><Coordinates>'
                      f"{coords}</Coordinates></Annotation></Annotations></ASAP_Annotations>").encode()
    vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in points)
    return kind, (f'<Annotations><Annotation Name="T"><Regions><Region Id="1"><Vertices>{vertices}</Vertices>'
                  "</Region></Regions></Annotation></Annotations>").encode()


def make_case(fmt: str, data: bytes, rng: random.Random) -> tuple[str, bytes]:
    roll = rng.random()
    if roll < 0.35:
        return damage_bytes(data, rng)
    if roll < 0.85:
        return damage_json(data, rng) if fmt == "geojson" else damage_xml(data, rng)
    return hostile(fmt, rng)


def check_case(path: Path, fmt: str, where: str) -> str:
    """Read one damaged file: a clean error, or marks that export to every format and read back equal."""
    try:
        found = read_annotations(path)
    except AnnotationFormatError as err:
        assert str(err).startswith(str(path)), f"{where}: {err}"
        return "refused"
    except Exception as err:  # anything else is a bug: report the seed
        pytest.fail(f"{where}: {type(err).__name__}: {str(err)[:300]}")
    assert all(w.startswith(str(path)) for w in found.warnings), f"{where}: {found.warnings[:3]}"
    for ann in found.annotations:
        assert ann.geometry.is_valid and not ann.geometry.is_empty, where
    for target, module in FORMATS.items():
        try:
            back = module.parse(module.dump(found.annotations, found.classes), f"export.{target}")
        except Exception as err:
            pytest.fail(f"{where}: export to {target} did not read back: {type(err).__name__}: {str(err)[:300]}")
        try:
            assert_same(found, back, target)
        except AssertionError as err:
            pytest.fail(f"{where}: export to {target} read back different: {str(err)[:500]}")
    return "read"


def test_damaged_and_hostile_annotation_files_give_clean_errors(sources, tmp_path):
    originals = {label: path.read_bytes() for label, (_, path) in sources.items()}
    labels = sorted(sources)
    outcomes = {"refused": 0, "read": 0}
    rss_before = reset_peak_memory()
    for seed in seeds(CASES):
        rng = random.Random(seed)
        label = rng.choice(labels)
        fmt = sources[label][0]
        kind, data = make_case(fmt, originals[label], rng)
        path = tmp_path / f"case-{seed}{SUFFIX[fmt]}"
        path.write_bytes(data)
        where = f"seed {seed} ({label}, {kind})"
        started = time.monotonic()
        outcomes[check_case(path, fmt, where)] += 1
        assert time.monotonic() - started < CASE_LIMIT_S, f"{where}: took {time.monotonic() - started:.1f} s"
        path.unlink()
    growth_mb = peak_memory_mb() - rss_before
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"peak memory grew by {growth_mb:.0f} MB"
    assert {label: path.read_bytes() for label, (_, path) in sources.items()} == originals
    if sum(outcomes.values()) >= 50:  # not when one seed is replayed
        assert outcomes["refused"] and outcomes["read"], outcomes
