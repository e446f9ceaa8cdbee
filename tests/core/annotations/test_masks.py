"""Annotations to masks at any level and back to level-0 polygons."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, box

from core.annotations.masks import label_values_for, rasterise, vectorise
from core.annotations.model import Annotation


def iou(a, b) -> float:
    return a.intersection(b).area / a.union(b).area


def holed_shapes():
    ring = Point(1500, 1200).buffer(700).difference(Point(1450, 1150).buffer(250))
    frame = box(2600, 200, 3800, 1400).difference(box(2900, 500, 3500, 1100))
    two = MultiPolygon([box(300, 2300, 900, 2900).difference(box(500, 2500, 700, 2700)), box(1200, 2300, 1500, 2900)])
    return [ring, frame, two]


@pytest.mark.parametrize("downsample", [1, 2, 4])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_round_trip_keeps_shapes_with_holes(downsample, index):
    shape = holed_shapes()[index]
    mask = rasterise([Annotation(shape, "Tumour")], "Tumour", 4000, 3000, downsample)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    back = shapely.union_all(vectorise(mask, downsample))
    assert iou(back, shape) > 0.98
    assert len(shapely.get_parts(back)) == len(shapely.get_parts(shape))
    assert sum(len(p.interiors) for p in shapely.get_parts(back)) == sum(
        len(p.interiors) for p in shapely.get_parts(shape))


def test_mask_size_is_the_level_size():
    assert rasterise([], "Tumour", 1001, 999, 4).shape == (250, 251)
    assert rasterise([], None, 1000, 1000, 1).shape == (1000, 1000)


def test_area_is_unbiased_at_pixel_scale():
    shape = Point(500, 500).buffer(300.3)
    for downsample in (1, 4):
        mask = rasterise([Annotation(shape, "T")], "T", 1000, 1000, downsample)
        assert mask.sum() * downsample**2 == pytest.approx(shape.area, rel=0.004 * downsample)


def test_pixel_exact_for_whole_pixel_boxes():
    mask = rasterise([Annotation(box(10, 20, 30, 25), "T")], "T", 50, 50, 1)
    expected = np.zeros((50, 50), np.uint8)
    expected[20:25, 10:30] = 1
    assert (mask == expected).all()
    assert vectorise(mask)[0].equals(box(10, 20, 30, 25))


def test_label_mask_later_marks_paint_over_and_holes_show_earlier_ones():
    under = Annotation(box(0, 0, 100, 100), "Benign")
    over = Annotation(box(20, 20, 80, 80).difference(box(40, 40, 60, 60)), "Tumour")
    values = label_values_for([under, over])
    assert values == {"Benign": 1, "Tumour": 2}
    mask = rasterise([under, over], None, 100, 100, 1)
    assert mask[10, 10] == 1 and mask[30, 30] == 2 and mask[50, 50] == 1  # the hole shows the mark beneath
    custom = rasterise([under, over], None, 100, 100, 1, label_values={"Tumour": 200})
    assert custom[10, 10] == 0 and custom[30, 30] == 200
    tumour_only = rasterise([under, over], "Tumour", 100, 100, 1)
    assert tumour_only[10, 10] == 0 and tumour_only[30, 30] == 1 and tumour_only[50, 50] == 0


def test_a_window_equals_the_same_part_of_the_whole_mask():
    marks = [Annotation(g, c) for g, c in zip(holed_shapes(), ["Tumour", "Benign", "Tumour"])]
    whole = rasterise(marks, None, 4000, 3000, 2)
    for col, row in [(0, 0), (3, 2), (5, 4), (6, 4), (2, 1), (4, 3)]:
        tile = rasterise(marks, None, 4000, 3000, 2, window=(col * 512, row * 512, 256, 256))
        assert (tile == whole[row * 256:(row + 1) * 256, col * 256:(col + 1) * 256]).all()


def test_window_past_the_slide_edge_and_marks_outside():
    marks = [Annotation(box(-50, -50, 20, 20), "T"), Annotation(box(5000, 5000, 5100, 5100), "T")]
    tile = rasterise(marks, "T", 100, 100, 1, window=(-10, -10, 40, 40))
    assert tile.shape == (40, 40) and tile[:30, :30].all() and not tile[30:, 30:].any()


def test_vectorise_labels_origin_and_small_pieces():
    mask = np.zeros((100, 100), np.uint8)
    mask[10:30, 10:30] = 2
    mask[50:90, 50:90] = 3
    mask[95, 95] = 3
    twos = vectorise(mask, 2.0, value=2, origin=(1000, 500))
    assert len(twos) == 1 and twos[0].equals(box(1020, 520, 1060, 560))
    threes = vectorise(mask, 1.0, value=3, min_area_l0=4)
    assert len(threes) == 1 and threes[0].area == 1600
    assert len(vectorise(mask)) == 3
    assert vectorise(np.zeros((5, 5), np.uint8)) == []


def test_vectorise_thin_and_touching_shapes_stay_valid():
    mask = np.zeros((40, 40), np.uint8)
    mask[5, 5:35] = 1  # one pixel high line
    mask[10:20, 10:20] = 1
    mask[20:30, 20:30] = 1  # touches the square above at a corner
    mask[15, 25] = 1  # single pixel
    polys = vectorise(mask)
    assert all(p.is_valid for p in polys)
    assert shapely.union_all(polys).area == pytest.approx(mask.sum(), abs=1)


def test_bad_arguments():
    with pytest.raises(ValueError):
        rasterise([], "T", 100, 100, 0)
    with pytest.raises(ValueError):
        rasterise([], "T", 10**6, 10**6, 1)
    with pytest.raises(ValueError):
        vectorise(np.zeros((2, 2, 3), np.uint8))
