"""Pen marks on an exported copy of a slide become tumour annotations (the original study's route)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from core.annotations.marked import import_marked, import_marked_arrays, read_rgb
from core.errors import AnnotationFormatError
from core.slide import open_slide
from core.synth import write_synthetic_slide

GREEN = (0, 200, 0)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    out = tmp_path_factory.mktemp("marked") / "case.tiff"
    result = write_synthetic_slide(out, seed=2, width=3000, height=2000)
    features = json.loads(result.geojson_path.read_text())["features"]
    truth = shapely.union_all([shape(f["geometry"]) for f in features])
    with open_slide(result.slide_path) as reader:
        thumb = reader.get_thumbnail((1500, 1000))
    return result, truth, thumb


def draw_outlines(image: np.ndarray, truth, scale: float, color=GREEN, width=4) -> np.ndarray:
    marked = image.copy()
    for part in shapely.get_parts(truth):
        points = np.round(np.asarray(part.exterior.coords) * scale).astype(np.int32)
        cv2.polylines(marked, [points], True, color, width, cv2.LINE_AA)
    return marked


def save_jpeg(path, rgb: np.ndarray, quality=80):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def iou(a, b) -> float:
    return a.intersection(b).area / a.union(b).area


def test_green_pen_outline_on_a_jpeg_copy(slide, tmp_path):
    result, truth, thumb = slide
    marked = save_jpeg(tmp_path / "marked.jpg", draw_outlines(thumb, truth, thumb.shape[1] / 3000))
    found = import_marked(result.slide_path, marked)
    assert found.warnings == []
    assert [c.name for c in found.classes] == ["Tumour"]
    assert all(a.class_name == "Tumour" and a.geometry.is_valid for a in found.annotations)
    got = shapely.union_all([a.geometry for a in found.annotations])
    assert iou(got, truth) > 0.85


def test_copy_of_slightly_different_size_and_blue_pen(slide, tmp_path):
    result, truth, thumb = slide
    small = cv2.resize(thumb, (1203, 801), interpolation=cv2.INTER_AREA)  # 0.2 % off the slide's aspect
    marked = save_jpeg(tmp_path / "blue.jpg", draw_outlines(small, truth, 1203 / 3000, (30, 60, 220), 3))
    found = import_marked(result.slide_path, marked, class_name="Carcinoma")
    got = shapely.union_all([a.geometry for a in found.annotations])
    assert iou(got, truth) > 0.85 and found.classes[0].name == "Carcinoma"


def test_unmarked_copy_gives_a_warning_not_an_error(slide, tmp_path):
    result, _, thumb = slide
    marked = save_jpeg(tmp_path / "clean.jpg", thumb)
    found = import_marked(result.slide_path, marked)
    assert found.annotations == [] and found.warnings == [f"{marked}: no pen marks found"]


def test_open_strokes_are_not_regions(slide):
    _, _, thumb = slide
    marked = thumb.copy()
    cv2.line(marked, (100, 100), (600, 140), GREEN, 4)
    cv2.putText(marked, "T3", (900, 200), cv2.FONT_HERSHEY_SIMPLEX, 2, GREEN, 4)
    found = import_marked_arrays(thumb, marked, (3000, 2000))
    assert found.annotations == []


def test_wrong_aspect_ratio_names_both_files(slide, tmp_path):
    result, _, thumb = slide
    marked = save_jpeg(tmp_path / "other.jpg", cv2.resize(thumb, (1500, 1200)))
    with pytest.raises(AnnotationFormatError) as err:
        import_marked(result.slide_path, marked)
    assert str(marked) in str(err.value) and str(result.slide_path) in str(err.value)


def test_unreadable_marked_image(tmp_path, slide):
    result, _, _ = slide
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(AnnotationFormatError, match="bad.png"):
        import_marked(result.slide_path, bad)
    with pytest.raises(AnnotationFormatError, match="missing.png"):
        read_rgb(tmp_path / "missing.png")
