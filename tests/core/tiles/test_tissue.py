"""Tissue detection: agreement with known tissue, glass, pen ink, the CMU slide, degenerate slides."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import shapely
from scipy import ndimage

from core.annotations.masks import rasterise
from core.annotations.model import Annotation
from core.slide import ArrayReader, open_slide
from core.tiles.tissue import TissueMask, detect_tissue, fill_holes

PINK = (225, 150, 200)
PURPLE = (150, 90, 170)
GREEN = (40, 160, 60)


def he_image(width: int = 1600, height: int = 1200, seed: int = 0) -> np.ndarray:
    """White glass with one stained ellipse of pink stroma and purple nuclei."""
    rng = np.random.default_rng(seed)
    rgb = np.full((height, width, 3), 245, np.uint8)
    blob = np.zeros((height, width), np.uint8)
    cv2.ellipse(blob, (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 1, -1)
    rgb[blob > 0] = PINK
    for _ in range(400):
        x, y = rng.integers(0, width), rng.integers(0, height)
        if blob[y, x]:
            cv2.circle(rgb, (int(x), int(y)), 4, PURPLE, -1)
    noise = rng.normal(0, 4, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def ground_truth(polygons, l0_w: int, l0_h: int, tissue: TissueMask) -> np.ndarray:
    marks = [Annotation(p, "T") for p in polygons]
    raster = rasterise(marks, "T", l0_w, l0_h, tissue.downsample_x)
    return raster[: tissue.mask.shape[0], : tissue.mask.shape[1]] > 0


@pytest.fixture(scope="module")
def synth_tissue(synthetic_slide):
    with open_slide(synthetic_slide.slide_path) as reader:
        return detect_tissue(reader)


def test_synthetic_mask_matches_known_tissue(synthetic_slide, synth_tissue):
    truth = ground_truth(synthetic_slide.tissue_polygons, synthetic_slide.width, synthetic_slide.height, synth_tissue)
    mask = synth_tissue.mask
    assert mask.shape == truth.shape
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.95  # measured 0.99
    assert synth_tissue.l0_size == (synthetic_slide.width, synthetic_slide.height)
    assert synth_tissue.downsample_x * mask.shape[1] == pytest.approx(synthetic_slide.width)
    assert synth_tissue.downsample_y * mask.shape[0] == pytest.approx(synthetic_slide.height)


def test_glass_is_background_not_tissue(synthetic_slide, synth_tissue):
    truth = ground_truth(synthetic_slide.tissue_polygons, synthetic_slide.width, synthetic_slide.height, synth_tissue)
    far_from_tissue = cv2.dilate(truth.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert far_from_tissue.sum() > 1000
    assert not synth_tissue.mask[far_from_tissue].any()
    assert synth_tissue.background[far_from_tissue].mean() > 0.95
    assert not synth_tissue.pen.any()


def test_reads_a_low_resolution_level(synthetic_slide):
    levels = []
    with open_slide(synthetic_slide.slide_path) as reader:
        original = reader.read_region

        def spy(l0_x, l0_y, level, lv_w, lv_h):
            levels.append(level)
            return original(l0_x, l0_y, level, lv_w, lv_h)

        reader.read_region = spy
        detect_tissue(reader)
    assert levels and min(levels) > 0


def test_fraction_in_uses_level0_rectangles(synthetic_slide, synth_tissue):
    w, h = synthetic_slide.width, synthetic_slide.height
    assert synth_tissue.fraction_in(0, 0, w, h) == pytest.approx(synth_tissue.fraction)
    assert synth_tissue.fraction_in(-5000, -5000, 1000, 1000) == 0.0
    # a rectangle half off the slide counts the outside as no tissue
    assert synth_tissue.fraction_in(-w, 0, 2 * w, h) == pytest.approx(synth_tissue.fraction / 2)
    # vectorised form agrees with the scalar one and with an exact shapely area on the known tissue
    xs, ys = np.array([0, 1024, 2048]), np.array([0, 1024, 512])
    many = synth_tissue.fraction_in(xs, ys, 512, 512)
    assert many == pytest.approx([synth_tissue.fraction_in(x, y, 512, 512) for x, y in zip(xs, ys)])
    tissue = shapely.union_all(synthetic_slide.tissue_polygons)
    for x, y, got in zip(xs, ys, many):
        exact = tissue.intersection(shapely.box(x, y, x + 512, y + 512)).area / 512**2
        assert got == pytest.approx(exact, abs=0.12)


def test_to_polygons_are_level0(synthetic_slide, synth_tissue):
    found = shapely.union_all(synth_tissue.to_polygons())
    truth = shapely.union_all(synthetic_slide.tissue_polygons)
    assert found.intersection(truth).area / found.union(truth).area > 0.9


def test_green_pen_is_pen_not_tissue():
    rgb = he_image()
    cv2.line(rgb, (100, 100), (1500, 1100), GREEN, 24)
    reader = ArrayReader(rgb, mpp=(2.0, 2.0))
    tissue = detect_tissue(reader)
    ink = np.zeros(rgb.shape[:2], np.uint8)
    cv2.line(ink, (100, 100), (1500, 1100), 1, 12)
    ink_small = cv2.resize(ink, tissue.mask.shape[::-1], interpolation=cv2.INTER_AREA) > 0
    assert tissue.pen[ink_small].mean() > 0.9
    assert not tissue.mask[ink_small].any()
    # the stain around the stroke is still tissue
    blob = np.zeros(rgb.shape[:2], np.uint8)
    cv2.ellipse(blob, (800, 600), (480, 350), 0, 0, 360, 1, -1)
    blob_small = cv2.resize(blob, tissue.mask.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    stain = blob_small & ~cv2.dilate(ink_small.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert tissue.mask[stain].mean() > 0.95
    assert tissue.pen_fraction_in(780, 580, 40, 40) > 0.5


def test_black_ink_is_pen():
    rgb = he_image()
    cv2.circle(rgb, (300, 300), 60, (15, 15, 20), -1)
    tissue = detect_tissue(ArrayReader(rgb))
    assert tissue.pen_fraction_in(270, 270, 60, 60) > 0.9
    assert tissue.fraction_in(270, 270, 60, 60) == 0.0


def test_near_white_is_not_tissue():
    rgb = np.full((1000, 1000, 3), 250, np.uint8)
    rgb[:, 500:] = (232, 228, 234)  # dusty glass: faint, unsaturated
    rgb[300:700, 100:400] = PINK
    tissue = detect_tissue(ArrayReader(rgb, mpp=(1.0, 1.0)))
    assert tissue.fraction_in(550, 0, 450, 1000) == 0.0
    assert tissue.fraction_in(120, 320, 260, 360) > 0.95


def test_without_mpp_the_mask_is_max_side_long():
    tissue = detect_tissue(ArrayReader(he_image()), max_side=400)
    assert max(tissue.mask.shape) == 400
    assert tissue.mpp is None
    assert 0.2 < tissue.fraction < 0.5


def test_all_white_slide_gives_an_empty_mask():
    tissue = detect_tissue(ArrayReader(np.full((900, 1300, 3), 255, np.uint8), mpp=(0.5, 0.5)))
    assert not tissue.mask.any()
    assert tissue.background.all()
    assert tissue.fraction == 0.0
    assert tissue.fraction_in(0, 0, 1300, 900) == 0.0
    assert tissue.to_polygons() == []


def test_cmu_slide_is_partly_tissue(cmu_svs):
    with open_slide(cmu_svs) as reader:
        tissue = detect_tissue(reader)
    # measured 0.37: a strip of skin running down a mostly empty field
    assert 0.3 < tissue.fraction < 0.5
    assert tissue.pen.mean() < 0.02
    assert tissue.mask.shape[0] > tissue.mask.shape[1]


def test_hole_filling_matches_scipy():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.7):
        mask = rng.random((120, 160)) < density
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
