"""Label masks back to marks: rasterise known marks, turn the mask back, compare."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from core.annotations.from_mask import (DEFAULT_MIN_AREA_PX, MaskError, binarise, classes_for, infer_downsample,
                                        marks_from_mask, min_area_l0_for, parse_value_map, read_label_mask)
from core.annotations.masks import rasterise
from core.annotations.model import Annotation

L0_W, L0_H = 4096, 3072
CAMELYON = Path(__file__).resolve().parents[4] / "shared" / "data" / "regions" / "camelyon-mini"


def known_marks(synthetic_slide) -> list[Annotation]:
    """The synthetic slide's tumour, a benign ring with a hole, and a second tumour-like class."""
    ring = Polygon([(200, 200), (1400, 200), (1400, 1100), (200, 1100)],
                   [[(500, 450), (1000, 450), (1000, 800), (500, 800)]])
    other = Polygon([(2900, 2300), (3700, 2300), (3700, 2900), (2900, 2900)])
    return ([Annotation(p, "Tumour") for p in synthetic_slide.tumour_polygons]
            + [Annotation(ring, "Benign"), Annotation(other, "Necrosis")])


@pytest.mark.parametrize("downsample", [1, 8])
def test_round_trip(synthetic_slide, downsample):
    marks = known_marks(synthetic_slide)
    mask = rasterise(marks, None, L0_W, L0_H, downsample, {"Tumour": 1, "Benign": 2, "Necrosis": 3})
    found = marks_from_mask(mask, {1: "tumour", 2: "Benign", 3: "Necrosis"}, L0_W, L0_H, min_area_l0=1.0)
    assert found.downsample == downsample and not found.warnings
    assert [c.name for c in found.classes] == ["Tumour", "Benign", "Necrosis"]
    assert found.classes[2].color  # a new class gets a colour
    for name in ("Tumour", "Benign", "Necrosis"):
        want = shapely.union_all([m.geometry for m in marks if m.class_name == name])
        got = shapely.union_all([a.geometry for a in found.annotations if a.class_name == name])
        # pixel tolerance: about one mask pixel along the outline
        tolerance = want.length * downsample * 1.0 + 4 * downsample ** 2
        assert got.symmetric_difference(want).area < tolerance, name
    benign = [a.geometry for a in found.annotations if a.class_name == "Benign"]
    assert len(benign) == 1 and len(benign[0].interiors) == 1
    assert benign[0].interiors[0].envelope.area == pytest.approx(500 * 350, rel=0.05)


def test_values_share_a_class_and_unmapped_values_are_reported():
    mask = np.zeros((300, 400), np.uint8)
    mask[10:60, 10:60] = 1
    mask[10:60, 60:110] = 2  # touches value 1: one Tumour region
    mask[200:250, 200:250] = 7
    found = marks_from_mask(mask, {1: "Tumour", 2: "Tumour", 5: "Benign"}, 400, 300, min_area_l0=1.0, path="m.png")
    tumour = [a for a in found.annotations if a.class_name == "Tumour"]
    assert len(tumour) == 1 and tumour[0].geometry.area == pytest.approx(50 * 100)
    assert any("value 5 (Benign) does not occur" in w for w in found.warnings)
    assert any("7 (2500 px)" in w for w in found.warnings)


def test_specks_are_dropped():
    mask = np.zeros((100, 100), np.uint8)
    mask[10:40, 10:40] = 1
    mask[80:83, 80:83] = 1
    found = marks_from_mask(mask, {1: "Tumour"}, 100, 100, min_area_l0=20.0)
    assert len(found.annotations) == 1
    assert min_area_l0_for((0.5, 0.5)) == pytest.approx(400.0)
    assert min_area_l0_for(None) == DEFAULT_MIN_AREA_PX
    assert min_area_l0_for((0.25, 0.25), min_area_um2=10) == pytest.approx(160.0)
    with pytest.raises(MaskError, match="no µm/px"):
        min_area_l0_for(None, min_area_um2=10)


def test_downsample_inference():
    assert infer_downsample("m", 4096, 3072, 512, 384) == 8
    assert infer_downsample("m", 4097, 3071, 513, 384) == 8  # the ceiling of an uneven size
    assert infer_downsample("m", 4096, 3072, 1365, 1024) == 3  # 4096 / 3 rounded down
    for lv_w, lv_h in ((500, 384), (512, 400), (256, 384)):  # 8.19 x 8; 8 x 7.68; 16 x 8
        with pytest.raises(MaskError, match="m: the mask is .* not the slide shrunk by a whole factor"):
            infer_downsample("m", 4096, 3072, lv_w, lv_h)


@pytest.mark.parametrize("text, problem", [("1Tumour", "not VALUE=CLASS"), ("1=", "not VALUE=CLASS"),
                                           ("x=Tumour", "whole number"), ("-1=Tumour", "whole number"),
                                           ("70000=Tumour", "out of range"), ("1=A,1=B", "given twice"),
                                           ("", "empty"), ("1=Tu\x07mour", "characters")])
def test_bad_maps(text, problem):
    with pytest.raises(MaskError, match=problem):
        parse_value_map(text)


def test_map_parsing_and_classes():
    assert parse_value_map(" 0=Tumour, 1=Tumour,2=Benign ,") == {0: "Tumour", 1: "Tumour", 2: "Benign"}
    classes = classes_for(["benign", "Stroma", "Stroma"])
    assert [c.name for c in classes] == ["Benign", "Stroma"] and classes[0].color == (30, 160, 60)


def test_mapped_value_beyond_the_bit_depth():
    with pytest.raises(MaskError, match="m.png: --map value 300 cannot occur in an 8-bit mask"):
        marks_from_mask(np.zeros((10, 10), np.uint8), {300: "Tumour"}, 10, 10, path="m.png")


def test_wrong_size_and_bad_downsample():
    mask = np.zeros((100, 100), np.uint8)
    with pytest.raises(MaskError, match="m.png: the mask is 100 x 100 px but the slide"):
        marks_from_mask(mask, {1: "Tumour"}, 400, 400, downsample=2, path="m.png")
    for bad in (0.0, -2.0, float("nan"), 1e6):
        with pytest.raises(MaskError, match="downsample"):
            marks_from_mask(mask, {1: "Tumour"}, 400, 400, downsample=bad, path="m.png")


def test_reading_masks(tmp_path):
    wide = np.zeros((20, 30), np.uint16)
    wide[5:10, 5:10] = 1000
    cv2.imwrite(str(tmp_path / "m16.png"), wide)
    cv2.imwrite(str(tmp_path / "m16.tif"), wide)
    for name in ("m16.png", "m16.tif"):
        got = read_label_mask(tmp_path / name)
        assert got.dtype == np.uint16 and np.array_equal(got, wide)
    grey3 = np.dstack([wide.astype(np.uint8)] * 3)
    cv2.imwrite(str(tmp_path / "grey3.png"), grey3)
    assert read_label_mask(tmp_path / "grey3.png").shape == (20, 30)
    colour = grey3.copy()
    colour[0, 0] = (1, 2, 3)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(MaskError, match="colour.png: a colour image with 3 channels"):
        read_label_mask(tmp_path / "colour.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(MaskError, match="notes.png: not an image"):
        read_label_mask(tmp_path / "notes.png")
    with pytest.raises(MaskError, match="gone.png: no such mask file"):
        read_label_mask(tmp_path / "gone.png")


@pytest.mark.skipif(not (CAMELYON / "masks").is_dir(), reason="the shared camelyon-mini regions are not here")
def test_real_mask_area_matches_its_pixels():
    path = CAMELYON / "masks" / "10072.jpg"
    grey = read_label_mask(path)  # three equal channels of grey levels
    label = (grey > 127).astype(np.uint8)  # the README: above 127 is tumour
    found = marks_from_mask(label, {1: "Tumour"}, grey.shape[1], grey.shape[0], min_area_l0=1.0, path=path)
    assert found.downsample == 1
    area = sum(a.geometry.area for a in found.annotations)
    assert area == pytest.approx(int(label.sum()), rel=0.001)


def test_binarise_grey_levels():
    grey = np.array([[0, 127, 128, 255]], np.uint8)
    assert binarise(grey, 127).tolist() == [[0, 0, 1, 1]]
    assert binarise(grey, 0).tolist() == [[0, 1, 1, 1]]
    assert binarise(grey, 254.5).dtype == np.uint8
    wide = np.array([[0, 40000, 65535]], np.uint16)
    assert binarise(wide, 300).tolist() == [[0, 1, 1]]  # 16-bit masks go up to 65534


@pytest.mark.parametrize("threshold, problem", [(-1, "negative"), (255, r"8-bit mask \(0 to 255\)"),
                                                (1000, "8-bit"), (float("nan"), "not a number"),
                                                (float("inf"), "not a number"), ("127", "not a number")])
def test_binarise_refuses_unusable_thresholds(threshold, problem):
    with pytest.raises(MaskError, match="m.jpg: threshold .*" + problem):
        binarise(np.zeros((4, 4), np.uint8), threshold, path="m.jpg")


def test_a_blurred_mask_with_a_threshold_gives_the_sharp_outline():
    sharp = np.zeros((200, 300), np.uint8)
    cv2.circle(sharp, (120, 100), 60, 255, -1)
    sharp[150:190, 200:280] = 255
    blurred = cv2.GaussianBlur(sharp, (17, 17), 0)  # as camelyon-mini's masks
    assert len(np.unique(blurred)) > 100
    found = marks_from_mask(blurred, {1: "Tumour", 0: "Non-tumour"}, 300, 200, min_area_l0=1.0, path="m.jpg",
                            threshold=127)
    tumour = shapely.union_all([a.geometry for a in found.annotations if a.class_name == "Tumour"])
    rest = shapely.union_all([a.geometry for a in found.annotations if a.class_name == "Non-tumour"])
    assert tumour.area == pytest.approx(int((blurred > 127).sum()))  # pixel for pixel
    assert tumour.area == pytest.approx(int(sharp.astype(bool).sum()), rel=0.01)  # blurring rounds corners
    assert tumour.area + rest.area == pytest.approx(300 * 200)  # the classes tile the mask: no overlap
    assert not found.warnings
    # without the threshold, the grey levels are 200-odd separate values
    plain = marks_from_mask(blurred, {255: "Tumour"}, 300, 200, min_area_l0=1.0, path="m.jpg")
    assert any("values not in --map" in w for w in plain.warnings)


def test_a_threshold_allows_only_values_0_and_1_in_the_map():
    with pytest.raises(MaskError, match="m.jpg: with a threshold .* names value 255"):
        marks_from_mask(np.zeros((10, 10), np.uint8), {255: "Tumour"}, 10, 10, path="m.jpg", threshold=127)
    with pytest.raises(MaskError, match="m.jpg: threshold 300"):
        marks_from_mask(np.zeros((10, 10), np.uint8), {1: "Tumour"}, 10, 10, path="m.jpg", threshold=300)


@pytest.mark.skipif(not (CAMELYON / "masks").is_dir(), reason="the shared camelyon-mini regions are not here")
def test_real_blurred_masks_with_a_threshold():
    for name in ("10072.jpg", "10699.jpg"):  # 10699 holds no tumour
        path = CAMELYON / "masks" / name
        grey = read_label_mask(path)
        found = marks_from_mask(grey, {1: "Tumour"}, grey.shape[1], grey.shape[0], min_area_l0=1.0, path=path,
                                threshold=127)
        area = sum(a.geometry.area for a in found.annotations)
        assert area == pytest.approx(int((grey > 127).sum()), rel=0.001, abs=1)
        assert (area == 0) == (name == "10699.jpg")


@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_outlines_follow_pixel_edges_exactly_on_diagonals(sigma):
    # round blobs have long 45-degree runs of edge pixels; their marks once grew 0.7 % beyond the pixels
    rng = np.random.default_rng(3)
    blobs = (cv2.GaussianBlur(rng.random((160, 200)).astype(np.float32), (0, 0), sigma) > 0.5).astype(np.uint8)
    found = marks_from_mask(blobs, {1: "Tumour", 0: "Stroma"}, 200, 160, min_area_l0=0.5)
    ys, xs = np.nonzero(blobs)
    pixels = shapely.union_all(shapely.box(xs, ys, xs + 1, ys + 1))
    tumour = shapely.union_all([a.geometry for a in found.annotations if a.class_name == "Tumour"])
    assert tumour.symmetric_difference(pixels).area == pytest.approx(0, abs=1e-6)
    assert sum(a.geometry.area for a in found.annotations) == pytest.approx(200 * 160)
