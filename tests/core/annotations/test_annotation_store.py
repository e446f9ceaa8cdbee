"""Annotation model, store and edits: undo is exact, queries find what is drawn."""

import pytest
from shapely.geometry import Polygon, box

from core.annotations import Annotation, AnnotationStore
from core.annotations import ops
from core.annotations.geometry import clean, ellipse, polygon_from_points, rectangle, stroke


def test_add_undo_redo_is_exact():
    store = AnnotationStore()
    seen = []
    store.add_listener(seen.append)
    undo = store.apply(ops.add(box(0, 0, 100, 100), "Tumour"))
    assert len(store) == 1 and len(seen) == 1
    ann = store.annotations()[0]
    redo = store.apply(undo)
    assert len(store) == 0
    store.apply(redo)
    assert store.annotations() == [ann]


def test_brush_adds_to_target_and_eraser_cuts_everything_it_crosses():
    store = AnnotationStore()
    store.apply(ops.add(box(0, 0, 100, 100), "Tumour"))
    store.apply(ops.add(box(200, 0, 300, 100), "Benign"))
    first, second = store.annotations()
    store.apply(ops.paint(store, first.id, stroke([(100, 50), (150, 50)], 10), "Tumour"))
    grown = store.get(first.id)
    assert grown.area_l0 > first.area_l0 and grown.class_name == "Tumour"
    cut = store.apply(ops.subtract(store, box(50, -10, 250, 110)))
    assert store.get(first.id).geometry.bounds[2] == pytest.approx(50)
    assert store.get(second.id).geometry.bounds[0] == pytest.approx(250)
    store.apply(cut)  # undo restores both
    assert store.get(first.id) == grown and store.get(second.id) == second


def test_eraser_removes_annotations_it_covers_and_keeps_holes():
    store = AnnotationStore()
    store.apply(ops.add(box(0, 0, 100, 100), "Tumour"))
    ann = store.annotations()[0]
    store.apply(ops.subtract(store, box(40, 40, 60, 60)))
    holed = store.get(ann.id).geometry
    assert len(holed.interiors) == 1 and holed.area == pytest.approx(10000 - 400)
    store.apply(ops.subtract(store, box(-10, -10, 110, 110)))
    assert len(store) == 0


def test_edits_keep_drawing_order_and_classes_can_change():
    store = AnnotationStore()
    for x in (0, 10, 20):
        store.apply(ops.add(box(x, 0, x + 5, 5), "Tumour"))
    ids = [a.id for a in store]
    store.apply(ops.set_class(store, [ids[0]], "Benign"))
    store.apply(ops.move(store, [ids[1]], 3, 4))
    assert [a.id for a in store] == ids
    assert store.get(ids[0]).class_name == "Benign"
    assert store.get(ids[1]).bounds == pytest.approx((13, 4, 18, 9))


def test_query_and_point_picking():
    store = AnnotationStore([Annotation(box(x, x, x + 10, x + 10)) for x in range(0, 1000, 100)])
    found = store.query(150, 150, 320, 320)
    assert [a.bounds[0] for a in found] == [200, 300]
    assert store.at_point(205, 205)[0].bounds[0] == 200
    assert store.at_point(250, 250) == []


def test_geometry_repair_and_refusals():
    bowtie = polygon_from_points([(0, 0), (10, 10), (10, 0), (0, 10)])  # self-intersecting
    assert bowtie.is_valid and bowtie.area == pytest.approx(50)
    assert polygon_from_points([(0, 0), (1, 1)]) is None
    assert clean(Polygon([(0, 0), (1e-3, 0), (0, 1e-3)])) is None  # a sliver
    with pytest.raises(ValueError, match="finite"):
        polygon_from_points([(0, 0), (float("nan"), 1), (2, 2)])
    with pytest.raises(ValueError, match="beyond"):
        rectangle(0, 0, 1e12, 5)
    assert ellipse(0, 0, 100, 50).area == pytest.approx(3.14159 * 50 * 25, rel=0.01)
    with pytest.raises(TypeError):
        Annotation(box(0, 0, 1, 1).exterior)
