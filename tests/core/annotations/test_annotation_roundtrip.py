"""Round trips between the annotation formats: every import that succeeds exports to all three
formats and reads back equal, and no text a mark can carry makes a save fail.

"Equal" means: the same ids; per id the same class and the same note (after cleaning on import:
what a file cannot hold is removed or replaced, see ``core.annotations.text``); the same outline
to the 1/1000 pixel the formats keep (imported geometry is already on that grid, so it comes back
exactly, up to ring order and start); the same colour for each class a format can give a colour
(GeoJSON has none for unclassified marks); and no warning, because nothing needs repairing
(GeoJSON may say again that detections were imported as annotations: it keeps their type).
"""

from __future__ import annotations

import json
import uuid

import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from core.annotations.formats import FORMATS, UNCLASSIFIED, AnnotationSet
from core.annotations.model import Annotation, AnnotationClass
from core.annotations.text import clean_text
from core.errors import AnnotationFormatError

ROUND_TRIPS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NASTY = ["\ud800", "\udfff", "\ud83d\ude00", "\ud83d", "\x00", "\x01", "\x1f", "\x7f", "\t", "\n", "\r", "\r\n",
         "\ufffe", "\uffff", "\ufeff", "&", "&amp;", "<", ">", '"', "'", "]]>", "é", "😀", " ", "None", "_holes",
         "Unclassified", "Annotation 3"]
texts = st.lists(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=8).map("".join)
ids = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), texts, st.integers(-5, 10**12), st.none())
coordinate = st.one_of(st.integers(0, 5000), st.floats(0, 5000, allow_nan=False).map(lambda v: round(v, 5)))


@st.composite
def outlines(draw) -> list[list[list[tuple]]]:
    """A mark's parts, each a list of rings (exterior, holes): boxes, boxes with holes, random
    (often self-crossing) polygons, slivers and tiny ones."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["box", "holed", "random", "tiny"]))
        x, y = draw(coordinate), draw(coordinate)
        w, h = draw(st.floats(0.1, 800)), draw(st.floats(0.1, 800))
        if kind == "random":
            parts.append([[(draw(coordinate), draw(coordinate)) for _ in range(draw(st.integers(3, 9)))]])
            continue
        if kind == "tiny":
            w, h = draw(st.floats(0.001, 2)), draw(st.floats(0.001, 2))
        exterior = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        rings = [exterior]
        if kind == "holed":
            for _ in range(draw(st.integers(1, 3))):
                fx, fy = draw(st.floats(0, 0.9)), draw(st.floats(0, 0.9))
                size = draw(st.floats(0.01, 0.5))
                hx, hy = x + fx * w, y + fy * h
                rings.append([(hx, hy), (hx + size * w, hy), (hx + size * w, hy + size * h), (hx, hy + size * h)])
        parts.append(rings)
    return parts


marks = st.fixed_dictionaries({"parts": outlines(), "class": texts | st.sampled_from(["Tumour", "Benign", "None"]),
                               "note": texts, "id": ids,
                               "color": st.tuples(*[st.integers(0, 255)] * 3)})


def _xml_attr(text: str, careless: bool = False) -> str:
    """Escaped for an attribute; a careless tool writes what XML cannot hold as references expat refuses."""
    if not careless:
        text = clean_text(text)
    out = []
    for ch in text:
        if ch in '&<"':
            out.append({"&": "&amp;", "<": "&lt;", '"': "&quot;"}[ch])
        elif ord(ch) < 32 and ch not in "\t\n\r" or 0xD800 <= ord(ch) <= 0xDFFF or ch in "\ufffe\uffff":
            out.append(f"&#{ord(ch)};")
        elif ch in "\t\n\r":
            out.append(f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def source_file(fmt: str, drawn: list[dict], careless: bool = False) -> bytes:
    """A file of ``fmt`` as another tool might write it (no Biopsia attributes), text verbatim."""
    if fmt == "geojson":
        features = []
        for mark in drawn:
            polys = [[[list(p) for p in ring] + [list(ring[0])] for ring in part] for part in mark["parts"]]
            geometry = ({"type": "Polygon", "coordinates": polys[0]} if len(polys) == 1
                        else {"type": "MultiPolygon", "coordinates": polys})
            feature = {"type": "Feature", "geometry": geometry,
                       "properties": {"objectType": "annotation", "name": mark["note"],
                                      "classification": {"name": mark["class"], "color": list(mark["color"])}}}
            if mark["id"] is not None:
                feature["id"] = mark["id"]
            features.append(feature)
        # ensure_ascii: lone surrogates are written as \ud800 escapes, which JSON readers accept
        return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=True).encode()
    if fmt == "asap":
        body, groups = [], {}
        for mark in drawn:
            group, note = _xml_attr(mark["class"], careless), _xml_attr(mark["note"], careless)
            groups.setdefault(group, "#%02x%02x%02x" % mark["color"])
            for part in mark["parts"]:
                for index, ring in enumerate(part):
                    name = group if index == 0 else group + "_holes"
                    coords = "".join(f'<Coordinate Order="{k}" X="{x}" Y="{y}"/>' for k, (x, y) in enumerate(ring))
                    body.append(f'<Annotation Name="{note}" Type="Polygon" PartOfGroup="{name}" '
                                f'Color="#ff0000"><Coordinates>{coords}</Coordinates></Annotation>')
        group_xml = "".join(f'<Group Name="{g}" PartOfGroup="None" Color="{c}"><Attributes/></Group>'
                            for g, c in groups.items())
        return (f'<?xml version="1.0" encoding="UTF-8"?><ASAP_Annotations><Annotations>{"".join(body)}</Annotations>'
                f"<AnnotationGroups>{group_xml}</AnnotationGroups></ASAP_Annotations>").encode("utf-8", "surrogatepass")
    layers = {}
    for mark in drawn:
        layers.setdefault(mark["class"], (mark["color"], []))[1].append(mark)
    xml = []
    for layer_id, (name, (color, members)) in enumerate(layers.items(), start=1):
        regions = []
        for mark in members:
            note = _xml_attr(mark["note"], careless)
            for part in mark["parts"]:
                for index, ring in enumerate(part):
                    vertices = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in ring)
                    regions.append(f'<Region Id="{len(regions) + 1}" Type="0" Text="{note}" '
                                   f'NegativeROA="{int(index > 0)}"><Vertices>{vertices}</Vertices></Region>')
        line = color[0] | color[1] << 8 | color[2] << 16
        xml.append(f'<Annotation Id="{layer_id}" Name="{_xml_attr(name, careless)}" LineColor="{line}"><Regions>'
                   f'{"".join(regions)}</Regions></Annotation>')
    return f'<Annotations>{"".join(xml)}</Annotations>'.encode("utf-8", "surrogatepass")


def same_geometry(a, b) -> bool:
    """The same outline: exactly (normalised), or, where a format's assembly added a node on an edge,
    the same area to 1e-9 and boundaries within the 1/1000 pixel grid."""
    if shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=1e-9):
        return True
    return (a.symmetric_difference(b).area <= 1e-9 * max(1.0, a.area)
            and a.boundary.hausdorff_distance(b.boundary) <= 1e-3)


def assert_same(found: AnnotationSet, back: AnnotationSet, target: str) -> None:
    # GeoJSON keeps a feature's objectType (a detection stays one for QuPath), and says so again
    assert [w for w in back.warnings if not w.endswith("imported as annotations")] == [], back.warnings
    want = {a.id: a for a in found.annotations}
    got = {a.id: a for a in back.annotations}
    assert set(got) == set(want), target
    colors_before = {c.name: c.color for c in found.classes}
    colors_after = {c.name: c.color for c in back.classes}
    for ann_id, ann in want.items():
        other = got[ann_id]
        assert (other.class_name, other.note) == (ann.class_name, ann.note), target
        assert same_geometry(other.geometry, ann.geometry), (target, ann.geometry.wkt, other.geometry.wkt)
        if not (target == "geojson" and ann.class_name == UNCLASSIFIED):
            assert colors_after[ann.class_name] == colors_before[ann.class_name], (target, ann.class_name)


@ROUND_TRIPS
@given(fmt=st.sampled_from(sorted(FORMATS)), drawn=st.lists(marks, min_size=1, max_size=4),
       careless=st.sampled_from([False, False, False, True]))
def test_every_successful_import_exports_to_every_format_and_reads_back_equal(fmt, drawn, careless):
    data = source_file(fmt, drawn, careless)
    try:
        found = FORMATS[fmt].parse(data, f"in.{fmt}")
    except AnnotationFormatError as err:
        assert str(err).startswith(f"in.{fmt}: ")
        return
    for ann in found.annotations:
        assert ann.geometry.is_valid and not ann.geometry.is_empty
        assert clean_text(ann.note) == ann.note and clean_text(ann.class_name) == ann.class_name
    for target, module in FORMATS.items():
        back = module.parse(module.dump(found.annotations, found.classes), f"out.{target}")
        assert_same(found, back, target)
        again = module.parse(module.dump(back.annotations, back.classes), f"again.{target}")
        assert_same(back, again, target)


@ROUND_TRIPS
@given(notes=st.lists(texts, min_size=1, max_size=4),
       class_name=texts.filter(lambda t: clean_text(t).strip() and clean_text(t).strip() == clean_text(t)),
       key=texts, value=texts)
def test_no_text_in_the_store_makes_a_save_fail(notes, class_name, key, value):
    """Text typed or replayed (not imported) is cleaned by the model itself; every writer saves it."""
    cls = AnnotationClass(class_name, (1, 2, 3))
    anns = [Annotation(box(10 * i, 0, 10 * i + 5, 5), cls.name, note, str(uuid.uuid4()),
                       extra={"properties": {key: value}}) for i, note in enumerate(notes)]
    for ann, note in zip(anns, notes):
        assert ann.note == clean_text(note)
    for target, module in FORMATS.items():
        data = module.dump(anns, [cls])
        if target != "geojson":
            data.decode("utf-8")  # XML 1.0 text, whatever the notes held
        back = module.parse(data, f"out.{target}")
        assert [a.note for a in sorted(back.annotations, key=lambda a: a.id)] == \
            [a.note for a in sorted(anns, key=lambda a: a.id)]
        assert {a.class_name for a in back.annotations} == {cls.name}
    kept = json.loads(FORMATS["geojson"].dump(anns, [cls]))["features"][0]["properties"]
    if key not in ("name", "biopsiaNote", "classification", "objectType", "isLocked"):
        # kept properties are written back as they were (a lone surrogate as a \uXXXX escape, so the
        # value reads back as JSON itself reads it)
        key, value = json.loads(json.dumps([key, value]))
        assert kept[key] == value


def test_a_lone_surrogate_in_a_note_imports_with_a_warning_and_every_save_works(tmp_path):
    """The reported case: a QuPath file whose name and class hold "\\ud800" made every autosave fail."""
    from core.annotations.formats import read_annotations, write_annotations
    from core.project.autosave import write_snapshot

    path = tmp_path / "odd.geojson"
    path.write_text('{"type": "Feature", "id": "a", "geometry": {"type": "Polygon", "coordinates": '
                    '[[[0, 0], [10, 0], [10, 10], [0, 0]]]}, "properties": {"name": "x\\ud800y\\u0001", '
                    '"classification": {"name": "T\\udfff", "color": [1, 2, 3]}}}')
    found = read_annotations(path)
    (ann,) = found.annotations
    assert (ann.note, ann.class_name) == ("x\ufffdy", "T\ufffd")
    assert len(found.warnings) == 1 and found.warnings[0].startswith(str(path))
    assert "U+FFFD" in found.warnings[0]
    write_snapshot(tmp_path / "project.geojson", found.annotations, found.classes)  # the autosave's write
    for fmt in FORMATS:
        out = tmp_path / f"out-{fmt}.{'geojson' if fmt == 'geojson' else 'xml'}"
        write_annotations(out, found.annotations, found.classes, format=fmt)
        back = read_annotations(out)
        assert [(a.note, a.class_name) for a in back.annotations] == [("x\ufffdy", "T\ufffd")]
        assert back.warnings == []


def test_control_characters_in_notes_give_xml_that_reads_back(tmp_path):
    """They were written raw into ASAP and ImageScope XML, which then could not be read."""
    note = "line one\nline two\ttab\r\x00\x0b\x1f end & <ok> \"quoted\""
    ann = Annotation(Polygon([(0, 0), (50, 0), (50, 50)]), "Tumour", note, uuid.uuid4().hex)
    for fmt in ("asap", "imagescope"):
        back = FORMATS[fmt].parse(FORMATS[fmt].dump([ann], []), "x.xml")
        assert back.annotations[0].note == "line one\nline two\ttab\r end & <ok> \"quoted\""


def test_class_names_xml_formats_used_to_misread(tmp_path):
    """ASAP reads the group "None" as no class and "X_holes" as holes: Biopsia's own attributes keep them."""
    anns = [Annotation(box(0, 0, 10, 10), "None", "", uuid.uuid4().hex),
            Annotation(box(20, 0, 30, 10).difference(box(22, 2, 24, 4)), "Tumour_holes", "", uuid.uuid4().hex),
            Annotation(MultiPolygon([box(40, 0, 50, 10), box(60, 0, 70, 10)]), "Tumour", "", uuid.uuid4().hex)]
    for fmt, module in FORMATS.items():
        back = {a.id: a for a in module.parse(module.dump(anns, []), "x").annotations}
        for ann in anns:
            assert back[ann.id].class_name == ann.class_name, fmt
            assert back[ann.id].geometry.equals(ann.geometry), fmt
