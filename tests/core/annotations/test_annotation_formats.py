"""One contract for every annotation exchange format (QuPath GeoJSON, ASAP XML, ImageScope XML)."""

from __future__ import annotations

import json
import math
import os
import re
import threading

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Polygon, box

from core.annotations.formats import FORMATS, AnnotationSet, read_annotations, write_annotations
from core.annotations.formats import asap_xml, imagescope_xml, qupath_geojson
from core.annotations.model import Annotation, AnnotationClass
from core.atomic import atomic_write_bytes
from core.errors import AnnotationFormatError

SUFFIX = {"geojson": ".geojson", "asap": ".xml", "imagescope": ".xml"}
CLASSES = [AnnotationClass("Tumour", (220, 30, 30)), AnnotationClass("Benign", (30, 160, 60)),
           AnnotationClass("Exclude", (128, 128, 128))]


def marks() -> list[Annotation]:
    holed = box(1000, 1000, 3000, 2500).difference(box(1500, 1500, 2000, 2000))
    multi = MultiPolygon([box(4000, 100, 4500, 600), Polygon([(5000, 100), (5600, 300), (5200, 900)])])
    return [Annotation(holed, "Tumour", "poorly differentiated"),
            Annotation(multi, "Benign", ""),
            Annotation(box(100.25, 100.5, 400.75, 300.125), "Exclude", "pen mark"),
            Annotation(Polygon([(6000, 6000), (7000, 6000), (6500, 7000)]), "Tumour", "")]


def by_id(found: AnnotationSet) -> dict[str, Annotation]:
    return {a.id: a for a in found.annotations}


# -- files as the real tools write them ---------------------------------------------------
QUPATH_04 = """{
  "type": "FeatureCollection",
  "features": [
    {
      "type": "Feature",
      "id": "6f0f3b1c-4c2a-4f0e-8a55-2f3b8e0f5d21",
      "geometry": {
        "type": "Polygon",
        "coordinates": [
          [[1000, 1000], [2000, 1000], [2000, 2000], [1000, 2000], [1000, 1000]],
          [[1200, 1200], [1400, 1200], [1400, 1400], [1200, 1400], [1200, 1200]]
        ]
      },
      "properties": {
        "objectType": "annotation",
        "name": "region A",
        "classification": {"name": "Tumor", "color": [200, 0, 0]},
        "isLocked": false
      }
    },
    {
      "type": "Feature",
      "id": "0c3e2d7a-9b7e-4d8e-a2f4-5a1b6c7d8e9f",
      "geometry": {
        "type": "MultiPolygon",
        "coordinates": [
          [[[3000, 3000], [3500, 3000], [3500, 3500], [3000, 3500], [3000, 3000]]],
          [[[4000, 4000], [4500, 4000], [4500, 4500], [4000, 4500], [4000, 4000]]]
        ]
      },
      "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}
    },
    {
      "type": "Feature",
      "id": "1a2b3c4d-0000-4000-8000-000000000001",
      "geometry": {"type": "Polygon", "coordinates": [[[10, 10], [60, 10], [60, 60], [10, 60], [10, 10]]]},
      "properties": {"objectType": "annotation"}
    }
  ]
}"""

QUPATH_02 = """[
  {
    "type": "Feature",
    "id": "PathAnnotationObject",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]},
    "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}, "isLocked": false, "measurements": []}
  },
  {
    "type": "Feature",
    "id": "PathDetectionObject",
    "geometry": {"type": "Polygon", "coordinates": [[[200, 0], [300, 0], [300, 100], [200, 100], [200, 0]]]},
    "properties": {"classification": {"name": "Tumor", "colorRGB": -3670016}, "isLocked": false, "measurements": []}
  }
]"""

ASAP = """<?xml version="1.0"?>
<ASAP_Annotations>
	<Annotations>
		<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="Tumor" Color="#F4FA58">
			<Coordinates>
				<Coordinate Order="0" X="1000" Y="1000" />
				<Coordinate Order="1" X="2000" Y="1000" />
				<Coordinate Order="2" X="2000" Y="2000" />
				<Coordinate Order="3" X="1000" Y="2000" />
			</Coordinates>
		</Annotation>
		<Annotation Name="Annotation 1" Type="Rectangle" PartOfGroup="Stroma" Color="#64FE2E">
			<Coordinates>
				<Coordinate Order="0" X="3000.5" Y="3000" />
				<Coordinate Order="1" X="3500.5" Y="3000" />
				<Coordinate Order="2" X="3500.5" Y="3500" />
				<Coordinate Order="3" X="3000.5" Y="3500" />
			</Coordinates>
		</Annotation>
		<Annotation Name="Annotation 2" Type="Dot" PartOfGroup="Tumor" Color="#F4FA58">
			<Coordinates>
				<Coordinate Order="0" X="1500" Y="1500" />
			</Coordinates>
		</Annotation>
		<Annotation Name="Annotation 3" Type="Polygon" PartOfGroup="Tumor_holes" Color="#808080">
			<Coordinates>
				<Coordinate Order="0" X="1200" Y="1200" />
				<Coordinate Order="1" X="1400" Y="1200" />
				<Coordinate Order="2" X="1400" Y="1400" />
				<Coordinate Order="3" X="1200" Y="1400" />
			</Coordinates>
		</Annotation>
		<Annotation Name="ducts near margin" Type="Spline" PartOfGroup="None" Color="#F4FA58">
			<Coordinates>
				<Coordinate Order="0" X="10" Y="10" />
				<Coordinate Order="1" X="60" Y="10" />
				<Coordinate Order="2" X="60" Y="60" />
				<Coordinate Order="3" X="10" Y="60" />
			</Coordinates>
		</Annotation>
	</Annotations>
	<AnnotationGroups>
		<Group Name="Tumor" PartOfGroup="None" Color="#ff0000">
			<Attributes />
		</Group>
		<Group Name="Stroma" PartOfGroup="None" Color="#00ff00">
			<Attributes />
		</Group>
	</AnnotationGroups>
</ASAP_Annotations>
"""

IMAGESCOPE = """<Annotations MicronsPerPixel="0.252100">
<Annotation Id="1" Name="Tumor" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" Type="4" LineColor="255" Visible="1" Selected="1" MarkupImagePath="" MacroName="">
	<Attributes>
		<Attribute Name="Description" Id="0" Value=""/>
	</Attributes>
	<Regions>
		<RegionAttributeHeaders>
			<AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
			<AttributeHeader Id="9997" Name="Length" ColumnWidth="-1"/>
			<AttributeHeader Id="9996" Name="Area" ColumnWidth="-1"/>
			<AttributeHeader Id="9998" Name="Text" ColumnWidth="-1"/>
			<AttributeHeader Id="1" Name="Description" ColumnWidth="-1"/>
		</RegionAttributeHeaders>
		<Region Id="1" Type="0" Zoom="0.042148" Selected="0" ImageLocation="" ImageFocus="-1" Length="4000.0" Area="1000000.0" LengthMicrons="1008.4" AreaMicrons="63555.4" Text="region A" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="1">
			<Attributes/>
			<Vertices>
				<Vertex X="1000" Y="1000" Z="0"/>
				<Vertex X="2000" Y="1000" Z="0"/>
				<Vertex X="2000" Y="2000" Z="0"/>
				<Vertex X="1000" Y="2000" Z="0"/>
			</Vertices>
		</Region>
		<Region Id="2" Type="0" Zoom="0.042148" Selected="0" ImageLocation="" ImageFocus="-1" Length="800.0" Area="40000.0" LengthMicrons="201.7" AreaMicrons="2542.2" Text="" NegativeROA="1" InputRegionId="0" Analyze="1" DisplayId="2">
			<Attributes/>
			<Vertices>
				<Vertex X="1200" Y="1200" Z="0"/>
				<Vertex X="1400" Y="1200" Z="0"/>
				<Vertex X="1400" Y="1400" Z="0"/>
				<Vertex X="1200" Y="1400" Z="0"/>
			</Vertices>
		</Region>
	</Regions>
	<Plots/>
</Annotation>
<Annotation Id="2" Name="" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" Type="4" LineColor="65280" Visible="1" Selected="0" MarkupImagePath="" MacroName="">
	<Attributes>
		<Attribute Name="Description" Id="0" Value="Stroma"/>
	</Attributes>
	<Regions>
		<Region Id="3" Type="1" Zoom="0.042148" Selected="0" ImageLocation="" ImageFocus="-1" Length="2000.0" Area="250000.0" LengthMicrons="504.2" AreaMicrons="15888.8" Text="" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="3">
			<Attributes/>
			<Vertices>
				<Vertex X="3000" Y="3000" Z="0"/>
				<Vertex X="3500" Y="3000" Z="0"/>
				<Vertex X="3500" Y="3500" Z="0"/>
				<Vertex X="3000" Y="3500" Z="0"/>
			</Vertices>
		</Region>
		<Region Id="4" Type="2" Zoom="0.042148" Selected="0" ImageLocation="" ImageFocus="-1" Length="0" Area="0" LengthMicrons="0" AreaMicrons="0" Text="" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="4">
			<Attributes/>
			<Vertices>
				<Vertex X="5000" Y="5000" Z="0"/>
				<Vertex X="5400" Y="5200" Z="0"/>
			</Vertices>
		</Region>
		<Region Id="5" Type="4" Zoom="0.042148" Selected="0" ImageLocation="" ImageFocus="-1" Length="500" Area="0" LengthMicrons="126" AreaMicrons="0" Text="" NegativeROA="0" InputRegionId="0" Analyze="0" DisplayId="5">
			<Attributes/>
			<Vertices>
				<Vertex X="0" Y="0" Z="0"/>
				<Vertex X="500" Y="0" Z="0"/>
			</Vertices>
		</Region>
	</Regions>
	<Plots/>
</Annotation>
</Annotations>
"""


def polygons_file(fmt: str, polygons: list[list[tuple]]) -> bytes:
    """A file of ``fmt`` holding one polygon per entry; coordinate values are written verbatim
    (strings and NaN included), so broken files can be made."""
    if fmt == "geojson":
        features = [{"type": "Feature", "id": f"f{i}", "properties": {"objectType": "annotation",
                     "classification": {"name": "Tumour", "color": [200, 0, 0]}},
                     "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in pts] + [list(pts[0])]]}}
                    for i, pts in enumerate(polygons)]
        return json.dumps({"type": "FeatureCollection", "features": features}).encode()
    if fmt == "asap":
        body = "".join(
            f'<Annotation Name="A{i}" Type="Polygon" PartOfGroup="Tumour" Color="#ff0000"><Coordinates>'
            + "".join(f'<Coordinate Order="{k}" X="{x}" Y="{y}" />' for k, (x, y) in enumerate(pts))
            + "</Coordinates></Annotation>" for i, pts in enumerate(polygons))
        return f'<?xml version="1.0"?><ASAP_Annotations><Annotations>{body}</Annotations></ASAP_Annotations>'.encode()
    body = "".join(
        f'<Region Id="{i}" Type="0" NegativeROA="0"><Vertices>'
        + "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in pts) + "</Vertices></Region>"
        for i, pts in enumerate(polygons))
    return (f'<Annotations><Annotation Id="1" Name="Tumour" LineColor="255"><Regions>{body}</Regions>'
            "</Annotation></Annotations>").encode()


SQUARE = [(0, 0), (100, 0), (100, 100), (0, 100)]
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<{root}><Annotations><Annotation Name="&lol3;"/></Annotations></{root}>
"""


@pytest.fixture(params=sorted(FORMATS))
def fmt(request) -> str:
    return request.param


class TestAnnotationFormatContract:
    """Every format: round trip, the real tool's layout, and refusal of broken files."""

    def path(self, tmp_path, fmt, name="marks"):
        return tmp_path / f"{name}{SUFFIX[fmt]}"

    def write_read(self, tmp_path, fmt, annotations, classes=CLASSES) -> AnnotationSet:
        path = self.path(tmp_path, fmt)
        write_annotations(path, annotations, classes, format=fmt)
        return read_annotations(path)

    def test_round_trip_keeps_geometry_classes_colours_notes_ids(self, tmp_path, fmt):
        original = marks()
        found = self.write_read(tmp_path, fmt, original)
        assert found.warnings == []
        assert len(found.annotations) == len(original)
        back = by_id(found)
        for ann in original:
            got = back[ann.id]
            assert got.class_name == ann.class_name and got.note == ann.note
            assert got.geometry.geom_type == ann.geometry.geom_type
            assert got.geometry.symmetric_difference(ann.geometry).area < 1e-6 * ann.geometry.area
        assert [(c.name, c.color) for c in found.classes] == [(c.name, c.color) for c in CLASSES]
        hole = back[original[0].id].geometry
        assert len(hole.interiors) == 1

    def test_format_is_found_by_content(self, tmp_path, fmt):
        path = self.path(tmp_path, fmt)
        write_annotations(path, marks(), CLASSES, format=fmt)
        assert FORMATS[fmt].sniff(path.read_bytes())
        others = [m for name, m in FORMATS.items() if name != fmt]
        assert not any(m.sniff(path.read_bytes()) for m in others)

    def test_without_biopsia_extras_the_union_per_class_survives(self, tmp_path, fmt):
        """As re-saved by the real tool, which drops our attributes (see each module's limits)."""
        path = self.path(tmp_path, fmt)
        write_annotations(path, marks(), CLASSES, format=fmt)
        if fmt == "geojson":
            data = json.loads(path.read_text())
            for feature in data["features"]:
                feature["properties"].pop("biopsiaNote", None)
            path.write_text(json.dumps(data))
        else:
            path.write_text(re.sub(r' Biopsia\w+="[^"]*"', "", path.read_text()))
        found = read_annotations(path)
        for name in ("Tumour", "Benign", "Exclude"):
            want = shapely.union_all([a.geometry for a in marks() if a.class_name == name])
            got = shapely.union_all([a.geometry for a in found.annotations if a.class_name == name])
            assert got.symmetric_difference(want).area < 1e-6 * want.area

    def test_unclassified_and_unknown_class_colour(self, tmp_path, fmt):
        anns = [Annotation(box(0, 0, 10, 10), "Unclassified"), Annotation(box(20, 0, 30, 10), "Necrosis")]
        found = self.write_read(tmp_path, fmt, anns, classes=[])
        assert sorted(a.class_name for a in found.annotations) == ["Necrosis", "Unclassified"]

    def test_writing_is_atomic_and_errors_name_the_file(self, tmp_path, fmt):
        path = self.path(tmp_path, fmt)
        write_annotations(path, marks(), CLASSES, format=fmt)
        before = path.read_bytes()
        with pytest.raises(OSError) as err:
            write_annotations(tmp_path / "missing" / f"x{SUFFIX[fmt]}", marks(), CLASSES, format=fmt)
        assert "missing" in str(err.value.filename)
        assert path.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == [path.name]

    # -- broken files --------------------------------------------------------------------
    def check_error(self, tmp_path, fmt, data: bytes, *words) -> AnnotationFormatError:
        path = self.path(tmp_path, fmt, "broken")
        path.write_bytes(data)
        with pytest.raises(AnnotationFormatError) as err:
            read_annotations(path)
        message = str(err.value)
        assert message.startswith(str(path)), message
        for word in words:
            assert word in message, message
        return err.value

    def test_truncated(self, tmp_path, fmt):
        data = FORMATS[fmt].dump(marks(), CLASSES)
        self.check_error(tmp_path, fmt, data[: len(data) // 2], "truncated")

    def test_empty_and_garbage(self, tmp_path, fmt):
        self.check_error(tmp_path, fmt, b"", "empty")
        self.check_error(tmp_path, fmt, b"  \n", "empty")
        self.check_error(tmp_path, fmt, bytes(range(256)) * 4)

    def test_string_where_a_number_belongs(self, tmp_path, fmt):
        data = polygons_file(fmt, [SQUARE, [(0, 0), ("abc", 0), (10, 10)]])
        self.check_error(tmp_path, fmt, data, 'coordinates must be numbers, got "abc"')

    @pytest.mark.parametrize("value, words", [(math.nan, "finite"), (math.inf, "finite"), (1e12, "beyond")])
    def test_nan_infinite_and_huge_coordinates(self, tmp_path, fmt, value, words):
        self.check_error(tmp_path, fmt, polygons_file(fmt, [[(0, 0), (value, 0), (10, 10)]]), words)

    def test_error_says_where(self, tmp_path, fmt):
        err = self.check_error(tmp_path, fmt, polygons_file(fmt, [SQUARE, SQUARE, [(0, 0), ("x", 1), (5, 5)]]))
        assert {"geojson": "feature 2", "asap": "annotation 2", "imagescope": "region 2"}[fmt] in str(err)

    def test_self_intersecting_polygon_is_repaired_with_a_warning(self, tmp_path, fmt):
        bowtie = [(0, 0), (100, 100), (100, 0), (0, 100)]
        path = self.path(tmp_path, fmt, "bowtie")
        path.write_bytes(polygons_file(fmt, [SQUARE, bowtie]))
        found = read_annotations(path)
        assert len(found.annotations) == 2
        assert all(a.geometry.is_valid for a in found.annotations)
        assert found.annotations[1].geometry.area == pytest.approx(5000)
        assert len(found.warnings) == 1
        assert found.warnings[0].startswith(str(path)) and "self-intersecting polygon repaired" in found.warnings[0]

    def test_degenerate_polygon_dropped_with_a_warning(self, tmp_path, fmt):
        path = self.path(tmp_path, fmt, "flat")
        path.write_bytes(polygons_file(fmt, [SQUARE, [(0, 0), (50, 50), (100, 100)], [(5, 5), (5, 5), (5, 5)]]))
        found = read_annotations(path)
        assert len(found.annotations) == 1
        assert len(found.warnings) == 2 and all("dropped" in w for w in found.warnings)

    def test_entity_declarations_are_refused(self, tmp_path, fmt):
        if fmt == "geojson":  # JSON has no entities: an XML file named .geojson is simply not JSON
            self.check_error(tmp_path, fmt, BILLION_LAUGHS.format(root="x").encode(), "not valid JSON")
            return
        root = "ASAP_Annotations" if fmt == "asap" else "Annotations"
        self.check_error(tmp_path, fmt, BILLION_LAUGHS.format(root=root).encode(), "entity declarations")
        utf16 = BILLION_LAUGHS.format(root=root).replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
        self.check_error(tmp_path, fmt, utf16.encode("utf-16"), "entity declarations")
        external = f'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><{root}>&e;</{root}>'
        self.check_error(tmp_path, fmt, external.encode(), "entity declarations")

    def test_too_large_file_is_refused(self, tmp_path, fmt, monkeypatch):
        import core.annotations.formats._common as common

        monkeypatch.setattr(common, "MAX_FILE_BYTES", 100)
        self.check_error(tmp_path, fmt, FORMATS[fmt].dump(marks(), CLASSES), "MB")


# -- the real tools' own layouts ------------------------------------------------------------
def test_qupath_04_feature_collection(tmp_path):
    path = tmp_path / "qupath.geojson"
    path.write_text(QUPATH_04)
    found = read_annotations(path)
    assert found.warnings == []
    assert [(c.name, c.color) for c in found.classes] == [("Tumor", (200, 0, 0)), ("Stroma", (150, 200, 150)),
                                                           ("Unclassified", (255, 200, 0))]
    tumour, stroma, plain = found.annotations
    assert tumour.id == "6f0f3b1c4c2a4f0e8a552f3b8e0f5d21" and tumour.note == "region A"
    assert tumour.geometry.area == 1000 * 1000 - 200 * 200
    assert isinstance(stroma.geometry, MultiPolygon) and stroma.geometry.area == 2 * 500 * 500
    assert plain.class_name == "Unclassified"
    # written back, QuPath sees the same ids, classes and colours
    out = tmp_path / "out.geojson"
    write_annotations(out, found.annotations, found.classes)
    data = json.loads(out.read_text())
    first = data["features"][0]
    assert first["id"] == "6f0f3b1c-4c2a-4f0e-8a55-2f3b8e0f5d21"
    assert first["properties"]["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert first["properties"]["objectType"] == "annotation" and first["properties"]["name"] == "region A"
    assert "classification" not in data["features"][2]["properties"]


def test_qupath_02_list_with_packed_colour_and_a_detection(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(QUPATH_02)
    found = read_annotations(path)
    assert [(c.name, c.color) for c in found.classes] == [("Tumor", (200, 0, 0))]
    assert len(found.annotations) == 2
    assert len({a.id for a in found.annotations}) == 2
    assert len(found.warnings) == 1 and "detection" in found.warnings[0]


def test_qupath_single_feature_and_bare_geometry(tmp_path):
    feature = json.loads(QUPATH_04)["features"][0]
    path = tmp_path / "one.geojson"
    path.write_text(json.dumps(feature))
    assert len(read_annotations(path).annotations) == 1
    path.write_text(json.dumps(feature["geometry"]))
    assert read_annotations(path).annotations[0].class_name == "Unclassified"


def test_qupath_points_and_lines_are_skipped_with_a_warning(tmp_path):
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps([{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
                                 "properties": {"objectType": "annotation"}}]))
    found = read_annotations(path)
    assert found.annotations == [] and "not an area" in found.warnings[0]


def test_asap_as_asap_writes_it(tmp_path):
    path = tmp_path / "camelyon.xml"
    path.write_text(ASAP)
    found = read_annotations(path)
    assert [(c.name, c.color) for c in found.classes] == [("Tumor", (255, 0, 0)), ("Stroma", (0, 255, 0)),
                                                           ("Unclassified", (244, 250, 88))]  # its own colour
    tumour, stroma, spline = found.annotations
    assert tumour.geometry.area == 1000 * 1000 - 200 * 200  # the Tumor_holes polygon is cut out
    assert tumour.note == ""  # ASAP's default name is not a note
    assert stroma.geometry.area == 500 * 500
    assert spline.class_name == "Unclassified" and spline.note == "ducts near margin"
    assert len(found.warnings) == 1 and "Dot" in found.warnings[0] and found.warnings[0].startswith(str(path))


def test_asap_decimal_comma(tmp_path):
    path = tmp_path / "comma.xml"
    path.write_bytes(polygons_file("asap", [[("0,5", "0"), ("100,5", "0"), ("100,5", "100")]]))
    assert read_annotations(path).annotations[0].geometry.bounds == (0.5, 0, 100.5, 100)


def test_imagescope_as_imagescope_writes_it(tmp_path):
    path = tmp_path / "aperio.xml"
    path.write_text(IMAGESCOPE)
    found = read_annotations(path)
    assert [(c.name, c.color) for c in found.classes] == [("Tumor", (255, 0, 0)), ("Stroma", (0, 255, 0))]
    tumour, rect, ellipse = found.annotations
    assert tumour.geometry.area == 1000 * 1000 - 200 * 200 and tumour.note == "region A"
    assert rect.class_name == "Stroma" and rect.geometry.area == 500 * 500
    assert ellipse.geometry.area == pytest.approx(math.pi * 200 * 100, rel=0.01)
    assert len(found.warnings) == 1 and "ruler" in found.warnings[0]


def test_imagescope_line_colour_is_bgr():
    assert imagescope_xml.bgr_to_rgb(255) == (255, 0, 0)
    assert imagescope_xml.bgr_to_rgb(0xFF0000) == (0, 0, 255)
    assert imagescope_xml.rgb_to_bgr((10, 20, 30)) == 10 | 20 << 8 | 30 << 16


def test_xml_extension_writes_asap_unless_told(tmp_path):
    path = tmp_path / "a.xml"
    write_annotations(path, marks(), CLASSES)
    assert asap_xml.sniff(path.read_bytes())
    write_annotations(path, marks(), CLASSES, format="imagescope")
    assert imagescope_xml.sniff(path.read_bytes())
    with pytest.raises(AnnotationFormatError):
        write_annotations(tmp_path / "a.txt", marks(), CLASSES)


def test_unknown_xml_and_missing_file(tmp_path):
    path = tmp_path / "other.xml"
    path.write_text("<svg><g/></svg>")
    with pytest.raises(AnnotationFormatError, match="not an ASAP or ImageScope"):
        read_annotations(path)
    with pytest.raises(AnnotationFormatError, match="missing.geojson"):
        read_annotations(tmp_path / "missing.geojson")
    with pytest.raises(AnnotationFormatError, match="is a folder"):
        read_annotations(tmp_path)


def test_atomic_write_keeps_a_backup(tmp_path):
    path = tmp_path / "a.geojson"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two", backup=True)
    assert path.read_bytes() == b"two" and (tmp_path / "a.geojson.bak").read_bytes() == b"one"
    atomic_write_bytes(path, b"three", backup=True)
    assert (tmp_path / "a.geojson.bak").read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["a.geojson", "a.geojson.bak"]


# -- fuzzing: every parser either reads or says what is wrong ------------------------------
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = {name: module.dump(marks(), CLASSES) for name, module in FORMATS.items()}
SEEDS["geojson_qupath"] = QUPATH_04.encode()
SEEDS["asap_real"] = ASAP.encode()
SEEDS["imagescope_real"] = IMAGESCOPE.encode()
PARSERS = {"geojson": qupath_geojson, "geojson_qupath": qupath_geojson, "asap": asap_xml, "asap_real": asap_xml,
           "imagescope": imagescope_xml, "imagescope_real": imagescope_xml}


def parses_or_refuses(module, data: bytes) -> None:
    try:
        found = module.parse(data, "fuzz.file")
    except AnnotationFormatError as err:
        assert str(err).startswith("fuzz.file: ")
        return
    assert isinstance(found, AnnotationSet)
    assert all(a.geometry.is_valid and not a.geometry.is_empty for a in found.annotations)


@pytest.mark.parametrize("name", sorted(FORMATS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(name, data):
    parses_or_refuses(FORMATS[name], data)


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["replace", "delete", "insert", "cut"]))
        chunk = draw(st.sampled_from([b"-", b"1e999", b"NaN", b'"', b"<", b">", b"]", b"{", b"0", b" ", b"\x00",
                                      b"\xff", b"abc", b"/>", b"</Annotation>", b"null", b"[]", b"-1e308"]))
        if action == "replace":
            data[pos:pos + len(chunk)] = chunk
        elif action == "delete":
            del data[pos:pos + draw(st.integers(1, 20))]
        elif action == "insert":
            data[pos:pos] = chunk
        else:
            del data[pos:]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_fuzz_mutated_files(name):
    @FUZZ
    @given(data=mutated(SEEDS[name]))
    def check(data):
        parses_or_refuses(PARSERS[name], data)

    check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "features", "geometry", "coordinates", "properties", "classification", "name", "color",
         "colorRGB", "id", "objectType", "geometries"]), inner, max_size=4),
    max_leaves=25)


@FUZZ
@given(doc=json_values, kind=st.sampled_from(["Polygon", "MultiPolygon", "GeometryCollection", "Point", 7, None]))
def test_fuzz_random_geojson_structures(doc, kind):
    parses_or_refuses(qupath_geojson, json.dumps(doc).encode())
    feature = {"type": "Feature", "geometry": {"type": kind, "coordinates": doc, "geometries": doc},
               "properties": {"classification": doc, "name": doc}, "id": doc}
    parses_or_refuses(qupath_geojson, json.dumps({"type": "FeatureCollection", "features": [feature]}).encode())


@FUZZ
@given(values=st.lists(st.one_of(st.floats(allow_nan=True), st.text(max_size=6), st.integers(-10**9, 10**9)),
                       min_size=2, max_size=12), name=st.sampled_from(["asap", "imagescope"]))
def test_fuzz_xml_coordinates(values, name):
    from xml.sax.saxutils import quoteattr

    points = list(zip(values[::2], values[1::2]))
    data = polygons_file(name, [[(quoteattr(str(x))[1:-1], quoteattr(str(y))[1:-1]) for x, y in points]])
    parses_or_refuses(FORMATS[name], data)


# -- hostile and large files: clean errors, bounded work (asserted by construction, not by time) ------
def geojson_feature(geometry: dict) -> str:
    return json.dumps({"type": "Feature", "geometry": geometry, "properties": {}})


def test_a_400_digit_integer_coordinate_is_a_clean_error(tmp_path):
    """Was OverflowError: the message formatted the integer as a float."""
    path = tmp_path / "huge.geojson"
    path.write_text('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[' + "9" * 400 +
                    ", 0], [10, 0], [10, 10], [0, 0]]]}}")
    with pytest.raises(AnnotationFormatError, match=r"huge\.geojson: feature 0: coordinate of 400 digits is beyond"):
        read_annotations(path)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_geojson_coordinates_are_clean_errors(tmp_path, literal):
    path = tmp_path / "nan.geojson"
    path.write_text('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [%s, 0], '
                    "[10, 10], [0, 0]]]}}" % literal)
    with pytest.raises(AnnotationFormatError, match=r"nan\.geojson: feature 0: .*not a finite number"):
        read_annotations(path)


def test_geometry_collections_nested_480_deep_are_read(tmp_path):
    """Was RecursionError: nested collections are now flattened without recursion."""
    polygon = '{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}'
    nested = '{"type": "GeometryCollection", "geometries": [' * 480 + polygon + "]}" * 480
    path = tmp_path / "nested.geojson"
    path.write_text('{"type": "Feature", "geometry": ' + nested + "}")
    found = []  # read on a fresh thread, with a stack as shallow as the CLI's or a GUI worker's (pytest's is deep)
    reader = threading.Thread(target=lambda: found.append(read_annotations(path)))
    reader.start()
    reader.join(60)
    (ann,) = found[0].annotations
    assert ann.geometry.area == 50
    path.write_text("[" * 100_000 + "]" * 100_000)  # deeper than any parser should follow
    with pytest.raises(AnnotationFormatError, match="nested too deeply"):
        read_annotations(path)


def test_xml_nested_200000_deep_is_read_without_recursion(tmp_path):
    for fmt, root in (("asap", "ASAP_Annotations"), ("imagescope", "Annotations")):
        path = tmp_path / f"deep-{fmt}.xml"
        path.write_text(f"<{root}>" + "<Annotation>" * 200_000 + "</Annotation>" * 200_000 + f"</{root}>")
        assert read_annotations(path).annotations == []


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE r SYSTEM "http://127.0.0.1:9/external.dtd">',
    '<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
    '<!DOCTYPE r [<!ELEMENT r ANY>]>'])
@pytest.mark.parametrize("root", ["ASAP_Annotations", "Annotations"])
def test_no_dtd_is_ever_read(tmp_path, doctype, root):
    """External DTDs and parameter entities are refused before expat could load or expand anything."""
    path = tmp_path / "dtd.xml"
    path.write_text(f'<?xml version="1.0"?>{doctype}<{root}/>')
    with pytest.raises(AnnotationFormatError, match="entity declarations are not allowed"):
        read_annotations(path)


def holed_mark(side: int = 54) -> Annotation:
    holes = [box(100 + 60 * i, 100 + 60 * j, 130 + 60 * i, 130 + 60 * j).exterior.coords
             for i in range(side) for j in range(side)]
    return Annotation(Polygon(box(0, 0, 60 * side + 160, 60 * side + 160).exterior.coords, holes), "Tumour", "margin")


@pytest.mark.parametrize("fmt", ["asap", "imagescope"])
def test_a_mark_with_2916_holes_reimports_with_every_hole_and_no_overlay(tmp_path, fmt, monkeypatch):
    """Biopsia's own XML of such a mark took 28 s: each hole was cut with its own difference."""
    mark = holed_mark()
    path = tmp_path / f"holes{SUFFIX[fmt]}"
    write_annotations(path, [mark], CLASSES, format=fmt)
    overlays = []
    for name in ("difference", "union_all", "make_valid"):
        original = getattr(shapely, name)
        monkeypatch.setattr(shapely, name, lambda *a, _f=original, _n=name, **k: overlays.append(_n) or _f(*a, **k))
    found = read_annotations(path)
    assert overlays == []  # the holes became interior rings directly: linear, whatever their number
    (ann,) = found.annotations
    assert len(ann.geometry.interiors) == 2916 and ann.geometry.area == mark.geometry.area
    assert ann.id == mark.id and found.warnings == []


def test_holes_of_hand_made_xml_cut_every_mark_of_their_class(tmp_path):
    """Without Biopsia's ids, a hole cuts what it overlaps (found with a spatial index, not all pairs)."""
    marks_ = [Annotation(box(1000 * i, 0, 1000 * i + 500, 500), "Tumour", "", uuid_hex(i)) for i in range(30)]
    hole = Annotation(box(-10, 200, 30_000, 300), "Tumour_holes")
    data = asap_xml.dump(marks_ + [hole], CLASSES).decode()
    data = re.sub(r' Biopsia\w+="[^"]*"', "", data)
    found = asap_xml.parse(data.encode(), "hand.xml")
    assert len(found.annotations) == 30  # each box cut in two by the band
    assert all(isinstance(a.geometry, MultiPolygon) and len(a.geometry.geoms) == 2 for a in found.annotations)
    assert sum(a.area_l0 for a in found.annotations) == pytest.approx(30 * (500 * 500 - 500 * 100))


def uuid_hex(i: int) -> str:
    return f"{i:032x}"


def test_valid_large_marks_are_never_repaired(monkeypatch):
    """make_valid only when needed: 5,000 valid features read with it made unusable."""
    monkeypatch.setattr(shapely, "make_valid", lambda *a, **k: pytest.fail("make_valid called on valid input"))
    features = [{"type": "Feature", "id": uuid_hex(i), "properties": {"name": f"cell {i}"},
                 "geometry": {"type": "Polygon", "coordinates": [[[i * 20, 0], [i * 20 + 9.5, 0], [i * 20 + 9.5, 9],
                                                                  [i * 20, 9], [i * 20, 0]]]}} for i in range(5000)]
    found = qupath_geojson.parse(json.dumps({"type": "FeatureCollection", "features": features}).encode(), "x")
    assert len(found.annotations) == 5000 and found.warnings == []
    assert [a.id for a in found.annotations] == [uuid_hex(i) for i in range(5000)]
    assert all(a.geometry.area == 9.5 * 9 for a in found.annotations)


def test_a_self_crossing_outline_of_200000_vertices_is_repaired(monkeypatch):
    """A figure eight drawn in one stroke: both loops kept."""
    t = np.linspace(0, 2 * np.pi, 200_000, endpoint=False)
    ring = np.c_[3000 * np.sin(t), 1500 * np.sin(2 * t)] + 4000
    found = qupath_geojson.parse(geojson_feature({"type": "Polygon", "coordinates": [ring.tolist()]}).encode(), "8")
    (ann,) = found.annotations
    assert isinstance(ann.geometry, MultiPolygon) and len(ann.geometry.geoms) == 2
    assert ann.geometry.area == pytest.approx(Polygon(ring).buffer(0).area * 2, rel=1e-3)
    assert found.warnings == ["8: feature 0: self-intersecting polygon repaired"]


def test_an_outline_crossing_itself_100000_times_is_simplified_before_its_repair(monkeypatch):
    """Such a repair took over 120 s and 4 GB: the vertices handed to it are now bounded."""
    t = np.linspace(0, 2 * np.pi, 60_000, endpoint=False)
    ring = np.c_[3000 * np.cos(t), 3000 * np.sin(t)] + 4000 + np.random.default_rng(0).normal(0, 2, (60_000, 2))
    sizes = []
    original = shapely.make_valid
    monkeypatch.setattr(shapely, "make_valid", lambda g, **k: sizes.append(shapely.get_num_coordinates(g)) or
                        original(g, **k))
    found = qupath_geojson.parse(geojson_feature({"type": "Polygon", "coordinates": [ring.tolist()]}).encode(), "j")
    (ann,) = found.annotations
    assert sizes and max(sizes) < 6_000  # a tenth of the outline at most
    assert ann.geometry.area == pytest.approx(math.pi * 3000 ** 2, rel=0.01)
    assert "simplified by up to" in found.warnings[0]


def test_a_polygon_of_random_vertices_is_dropped_without_an_attempt(monkeypatch):
    """2,000 random vertices cross about 400,000 times: the repair would take minutes and gigabytes."""
    monkeypatch.setattr(shapely, "make_valid", lambda *a, **k: pytest.fail("repair attempted"))
    ring = np.random.default_rng(2).uniform(0, 1e4, (2000, 2))
    found = qupath_geojson.parse(geojson_feature({"type": "Polygon", "coordinates": [ring.tolist()]}).encode(), "r")
    assert found.annotations == []
    assert "too often to repair; dropped" in found.warnings[0]


def test_a_large_xml_mark_is_read_without_a_tree(tmp_path):
    """No ElementTree (700 bytes a vertex: 10^6 vertices took a gigabyte): about a hundred bytes a vertex."""
    import tracemalloc

    t = np.linspace(0, 2 * np.pi, 100_000, endpoint=False)
    mark = Annotation(Polygon(np.c_[4000 * np.cos(t), 4000 * np.sin(t)] + 5000.25), "Tumour")
    for fmt in ("asap", "imagescope"):
        data = FORMATS[fmt].dump([mark], CLASSES)
        tracemalloc.start()
        try:
            found = FORMATS[fmt].parse(data, "big.xml")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert shapely.get_num_coordinates(found.annotations[0].geometry) == 100_001
        assert peak < 300 * 100_000, f"{fmt}: {peak / 1e6:.0f} MB traced for 100,000 vertices"


def test_a_json_file_too_dense_for_memory_is_refused_before_parsing(tmp_path, monkeypatch):
    import core.annotations.formats._common as common

    monkeypatch.setattr(common, "MAX_JSON_VALUES", 1000)
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed"))
    path = tmp_path / "dense.geojson"
    path.write_text(geojson_feature({"type": "Polygon", "coordinates": [[[0, 0]] * 600]}))
    with pytest.raises(AnnotationFormatError, match=r"dense\.geojson: the file holds about 1,8\d\d JSON values"):
        read_annotations(path)


def test_a_thousand_broken_marks_give_a_hundred_warnings_and_a_count():
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[i, 0], [i, 0], [i, 0]]]}}
                for i in range(1000)]
    found = qupath_geojson.parse(json.dumps(features).encode(), "broken.geojson")
    assert found.annotations == [] and len(found.warnings) == 101
    assert found.warnings[-1] == "broken.geojson: and 900 more warnings about single marks"
