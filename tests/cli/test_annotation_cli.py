"""The annotation subcommands, run as a user runs them: subprocesses of main.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from core.annotations.formats import read_annotations

ROOT = Path(__file__).resolve().parents[2]


def biopsia(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_convert_between_all_formats(synthetic_slide, tmp_path):
    source = synthetic_slide.geojson_path
    asap, scope, back = tmp_path / "a.xml", tmp_path / "s.xml", tmp_path / "back.geojson"
    for args in ([source, asap], [asap, scope, "--format", "imagescope"], [scope, back]):
        result = biopsia("annotations", "convert", *args)
        assert result.returncode == 0, result.stderr
    assert scope.read_text().startswith("<Annotations")
    want = shapely.union_all([shape(f["geometry"]) for f in json.loads(source.read_text())["features"]])
    got = shapely.union_all([a.geometry for a in read_annotations(back).annotations])
    assert got.symmetric_difference(want).area < 1e-4 * want.area


def test_mask_at_a_level(synthetic_slide, tmp_path):
    out = tmp_path / "mask.png"
    result = biopsia("annotations", "mask", synthetic_slide.slide_path, synthetic_slide.geojson_path,
                     "--level", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    from core.slide import open_slide

    with open_slide(synthetic_slide.slide_path) as reader:
        lv_w, lv_h = reader.level_dimensions[1]
    mask = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (lv_h, lv_w) and set(np.unique(mask)) == {0, 255}
    area_l0 = (mask > 0).sum() * (4096 / lv_w) * (3072 / lv_h)
    truth = sum(p.area for p in synthetic_slide.tumour_polygons)
    assert area_l0 == pytest.approx(truth, rel=0.02)
    one_class = biopsia("annotations", "mask", synthetic_slide.slide_path, synthetic_slide.geojson_path,
                        "--level", 1, "--out", out, "--class", "Benign")
    assert one_class.returncode == 0 and not cv2.imread(str(out), cv2.IMREAD_UNCHANGED).any()


def test_import_marked(synthetic_slide, tmp_path):
    from core.slide import open_slide

    with open_slide(synthetic_slide.slide_path) as reader:
        thumb = reader.get_thumbnail((1024, 768))
    marked = thumb.copy()
    for polygon in synthetic_slide.tumour_polygons:
        points = np.round(np.asarray(polygon.exterior.coords) / 4).astype(np.int32)
        cv2.polylines(marked, [points], True, (0, 180, 0), 3)
    marked_path = tmp_path / "marked.png"
    cv2.imwrite(str(marked_path), cv2.cvtColor(marked, cv2.COLOR_RGB2BGR))
    out = tmp_path / "found.geojson"
    result = biopsia("import-marked", synthetic_slide.slide_path, marked_path, "--out", out)
    assert result.returncode == 0, result.stderr
    found = read_annotations(out)
    truth = shapely.union_all(synthetic_slide.tumour_polygons)
    got = shapely.union_all([a.geometry for a in found.annotations])
    assert got.intersection(truth).area / got.union(truth).area > 0.8
    assert {c.name for c in found.classes} == {"Tumour"}


@pytest.mark.parametrize("command", ["convert", "mask", "import-marked"])
def test_bad_input_fails_with_the_file_name(synthetic_slide, tmp_path, command):
    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Pol')
    if command == "convert":
        result = biopsia("annotations", "convert", bad, tmp_path / "out.xml")
    elif command == "mask":
        result = biopsia("annotations", "mask", synthetic_slide.slide_path, bad, "--out", tmp_path / "m.png")
    else:
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"\x89PNG garbage")
        result = biopsia("import-marked", synthetic_slide.slide_path, bad, "--out", tmp_path / "a.geojson")
    assert result.returncode == 1
    assert result.stderr.startswith("biopsia: error: ") and str(bad) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.xml").exists() and not (tmp_path / "m.png").exists()


def test_mask_level_out_of_range(synthetic_slide, tmp_path):
    result = biopsia("annotations", "mask", synthetic_slide.slide_path, synthetic_slide.geojson_path,
                     "--level", 99, "--out", tmp_path / "m.png")
    assert result.returncode == 1 and "level 99" in result.stderr
