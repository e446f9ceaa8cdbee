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


def _label_mask(synthetic_slide, path, downsample):
    from core.annotations.masks import rasterise

    marks = read_annotations(synthetic_slide.geojson_path).annotations
    cv2.imwrite(str(path), rasterise(marks, None, 4096, 3072, downsample, {"Tumour": 1}))
    return shapely.union_all([a.geometry for a in marks])


@pytest.mark.parametrize("downsample, out_name", [(1, "marks.geojson"), (8, "marks.xml")])
def test_from_mask_round_trip(synthetic_slide, tmp_path, downsample, out_name):
    mask_path, out = tmp_path / "mask.png", tmp_path / out_name
    want = _label_mask(synthetic_slide, mask_path, downsample)
    result = biopsia("annotations", "from-mask", mask_path, "--slide", synthetic_slide.slide_path,
                     "--map", "1=Tumour,2=Benign", "--out", out)
    assert result.returncode == 0, result.stderr
    assert f"downsample {downsample}" in result.stdout and "Tumour" in result.stdout
    assert "value 2 (Benign) does not occur" in result.stderr
    found = read_annotations(out)
    got = shapely.union_all([a.geometry for a in found.annotations])
    assert got.symmetric_difference(want).area < want.length * downsample + 4 * downsample ** 2
    assert {a.class_name for a in found.annotations} == {"Tumour"}


def test_from_mask_bad_input_leaves_the_old_output(synthetic_slide, tmp_path):
    good = tmp_path / "mask.png"
    _label_mask(synthetic_slide, good, 8)
    out = tmp_path / "old.geojson"
    out.write_bytes(synthetic_slide.geojson_path.read_bytes())
    before = out.read_bytes()
    wrong_size = tmp_path / "small.png"
    cv2.imwrite(str(wrong_size), np.zeros((100, 120), np.uint8))
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.dstack([np.zeros((384, 512), np.uint8), np.ones((384, 512), np.uint8),
                                        np.zeros((384, 512), np.uint8)]))
    text = tmp_path / "text.png"
    text.write_text("not an image")
    slide = synthetic_slide.slide_path
    cases = [
        ([wrong_size, "--slide", slide, "--map", "1=Tumour"], 1, ["small.png", "not the slide shrunk"]),
        ([good, "--slide", slide, "--map", "1=Tumour", "--downsample", "4"], 1, ["mask.png", "downsample 4"]),
        ([good, "--slide", slide, "--map", "1Tumour"], 1, ["--map", "VALUE=CLASS"]),
        ([good, "--slide", slide, "--map", "1=Tumour,1=Benign"], 1, ["given twice"]),
        ([good, "--slide", slide, "--map", "300=Tumour"], 1, ["mask.png", "300", "8-bit"]),
        ([good, "--slide", slide, "--map", "99999=Tumour"], 1, ["out of range"]),
        ([colour, "--slide", slide, "--map", "1=Tumour"], 1, ["colour.png", "colour image"]),
        ([text, "--slide", slide, "--map", "1=Tumour"], 1, ["text.png", "not an image"]),
        ([good, "--slide", tmp_path / "gone.tiff", "--map", "1=Tumour"], 1, ["gone.tiff"]),
        ([good, "--slide", slide, "--map", "1=Tumour", "--downsample", "-8"], 2, ["--downsample"]),
        ([good, "--slide", slide, "--map", "1=Tumour", "--downsample", "1e9"], 2, ["--downsample"]),
    ]
    for args, status, words in cases:
        result = biopsia("annotations", "from-mask", *args, "--out", out)
        assert result.returncode == status, (args, result.stderr)
        assert "Traceback" not in result.stderr
        for word in words:
            assert word in result.stderr, (args, result.stderr)
        assert out.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_from_mask_16_bit_tiff_min_area_and_format(synthetic_slide, tmp_path):
    label = np.zeros((384, 512), np.uint16)  # the slide shrunk 8 times
    label[10:110, 10:110] = 1000
    label[40:60, 40:60] = 0  # a hole
    label[300:302, 300:302] = 1000  # a speck of 4 mask px = 256 level-0 px², about 64 µm²
    label[200:250, 300:400] = 2000
    mask_path, out = tmp_path / "labels.tif", tmp_path / "marks.xml"
    cv2.imwrite(str(mask_path), label)
    result = biopsia("annotations", "from-mask", mask_path, "--slide", synthetic_slide.slide_path,
                     "--map", "1000=Tumour,2000=Stroma", "--out", out, "--format", "imagescope")
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("<Annotations")
    found = read_annotations(out)
    tumour = [a.geometry for a in found.annotations if a.class_name == "Tumour"]
    assert len(tumour) == 1 and len(tumour[0].interiors) == 1  # default 100 µm² drops the speck
    assert tumour[0].area == pytest.approx((100 * 100 - 20 * 20) * 64, abs=2 * 64)  # a pixel at the hole corners
    assert {a.class_name for a in found.annotations} == {"Tumour", "Stroma"}
    kept = biopsia("annotations", "from-mask", mask_path, "--slide", synthetic_slide.slide_path,
                   "--map", "1000=Tumour", "--out", out, "--min-area-px", 100)
    assert kept.returncode == 0 and "2000 (" in kept.stderr  # the unmapped value is reported
    assert len(read_annotations(out).annotations) == 2


CAMELYON = ROOT.parent / "shared" / "data" / "regions" / "camelyon-mini"


def test_from_mask_threshold_for_a_blurred_grey_jpeg(synthetic_slide, tmp_path):
    sharp_path, out = tmp_path / "sharp.png", tmp_path / "marks.geojson"
    want = _label_mask(synthetic_slide, sharp_path, 8)
    grey = cv2.GaussianBlur(cv2.imread(str(sharp_path), cv2.IMREAD_GRAYSCALE) * 255, (17, 17), 0)
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), np.dstack([grey] * 3), [cv2.IMWRITE_JPEG_QUALITY, 90])
    result = biopsia("annotations", "from-mask", blurred, "--slide", synthetic_slide.slide_path,
                     "--threshold", "127", "--map", "1=Tumour", "--out", out)
    assert result.returncode == 0, result.stderr
    got = shapely.union_all([a.geometry for a in read_annotations(out).annotations])
    assert got.symmetric_difference(want).area < 0.03 * want.area
    plain = biopsia("annotations", "from-mask", blurred, "--slide", synthetic_slide.slide_path,
                    "--map", "255=Tumour", "--out", tmp_path / "plain.geojson")
    assert "values not in --map were left out" in plain.stderr  # grey levels, what --threshold is for
    before = out.read_bytes()
    cases = [(["--threshold", "-1", "--map", "1=Tumour"], 2, ["--threshold"]),
             (["--threshold", "nan", "--map", "1=Tumour"], 2, ["--threshold"]),
             (["--threshold", "300", "--map", "1=Tumour"], 1, ["blurred.jpg", "8-bit"]),
             (["--threshold", "127", "--map", "255=Tumour"], 1, ["blurred.jpg", "names value 255"])]
    for args, status, words in cases:
        bad = biopsia("annotations", "from-mask", blurred, "--slide", synthetic_slide.slide_path, *args,
                      "--out", out)
        assert bad.returncode == status, (args, bad.stderr)
        assert "Traceback" not in bad.stderr and all(w in bad.stderr for w in words), (args, bad.stderr)
        assert out.read_bytes() == before


@pytest.mark.skipif(not (CAMELYON / "masks").is_dir(), reason="the shared camelyon-mini regions are not here")
def test_from_mask_on_a_real_camelyon_region(tmp_path):
    out = tmp_path / "10072.geojson"
    result = biopsia("annotations", "from-mask", CAMELYON / "masks" / "10072.jpg",
                     "--slide", CAMELYON / "images" / "10072.jpg", "--threshold", "127", "--map", "1=Tumour",
                     "--min-area-px", "1", "--out", out)
    assert result.returncode == 0, result.stderr
    grey = cv2.imread(str(CAMELYON / "masks" / "10072.jpg"), cv2.IMREAD_GRAYSCALE)
    area = sum(a.geometry.area for a in read_annotations(out).annotations)
    assert area == pytest.approx(int((grey > 127).sum()), abs=1)
