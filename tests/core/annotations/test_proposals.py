"""The network's calls as draft marks (`core.annotations.proposals`, ``biopsia propose``).

Drafts follow the calls at the tile scale, keep holes, drop specks, stay on the slide, and record where they
came from; on a synthetic slide the demo model's drafts match the known tumour (IoU at least 0.8 each).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
import shapely
from shapely.ops import unary_union

from core.annotations.formats import read_annotations
from core.annotations.proposals import DRAFT_KEY, ORIGIN_KEY, is_draft, propose_marks
from core.inference.predict import ProbabilityGrid
from tests.cli.test_cli import biopsia

STRIDE = 100


def grid_of(probs, slide_size=None):
    probs = np.asarray(probs, np.float32)
    rows, cols = probs.shape
    return ProbabilityGrid(probs=probs, origin=(0, 0), stride=STRIDE, tile_l0=STRIDE, tile_px=50, mpp=2.0,
                           slide_size=slide_size or (cols * STRIDE, rows * STRIDE),
                           model={"name": "m", "sha256": "ab" * 32})


def test_a_block_of_calls_with_a_hole_becomes_one_draft_with_a_hole():
    probs = np.zeros((12, 12))
    probs[2:10, 2:10] = 0.9
    probs[5:7, 5:7] = 0.1  # a 2 x 2 hole of non-tumour
    probs[0, 11] = 0.95  # one tile alone: under the 2 tiles' minimum
    when = datetime(2026, 12, 2, tzinfo=timezone.utc)
    (draft,) = propose_marks(grid_of(probs), 0.5, when=when)
    shape = draft.geometry
    assert shape.geom_type == "Polygon" and len(shape.interiors) == 1
    # outlines run between tile centres: the 8 x 8 block less its 2 x 2 hole, within a tile's rim
    assert 0.85 * 60 * STRIDE ** 2 < shape.area < 1.15 * 60 * STRIDE ** 2
    assert shape.buffer(STRIDE).contains(shape) and not shape.contains(shape.centroid)  # the hole is there
    props = draft.extra["properties"]
    assert props[DRAFT_KEY] is True and is_draft(draft)
    outline = props[ORIGIN_KEY].pop("proposed_outline")  # the outline as proposed, kept at full precision
    assert shapely.from_wkt(outline).equals_exact(shape, 0)
    assert props[ORIGIN_KEY] == {"model": "m", "sha256": "ab" * 32, "threshold": 0.5,
                                 "proposed_at": "2026-12-02T00:00:00+00:00", "mean_probability": 0.9}


def test_drafts_stay_on_the_slide_and_nothing_is_proposed_below_the_threshold():
    probs = np.full((4, 4), 0.8)
    drafts = propose_marks(grid_of(probs, slide_size=(350, 330)), 0.5)  # the last cells overhang the slide
    assert len(drafts) == 1 and drafts[0].geometry.bounds[2] <= 350 and drafts[0].geometry.bounds[3] <= 330
    assert propose_marks(grid_of(probs), 0.81) == []
    assert propose_marks(grid_of(np.full((3, 3), np.nan)), 0.5) == []
    with pytest.raises(ValueError, match="between 0 and 1"):
        propose_marks(grid_of(probs), 1.5)


def test_the_demo_models_drafts_match_the_known_tumour(slide_pair, tmp_path):
    from core.demo import DEMO_MODEL

    slide = slide_pair[0]
    out = tmp_path / "drafts.geojson"
    done = biopsia("propose", slide.slide_path, "--model", DEMO_MODEL, "--out", out, "--device", "cpu", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "draft Tumour marks" in done.stdout and "threshold 0.5" in done.stderr
    drafts = read_annotations(out).annotations
    truth = read_annotations(slide.geojson_path).annotations
    assert drafts and all(is_draft(d) for d in drafts)
    for region in truth:  # every tumour region has a draft that matches it
        best = max(drafts, key=lambda d: d.geometry.intersection(region.geometry).area)
        iou = best.geometry.intersection(region.geometry).area / best.geometry.union(region.geometry).area
        assert iou >= 0.8, (region.id, iou)
    called = unary_union([d.geometry for d in drafts])
    assert called.difference(unary_union([t.geometry for t in truth])).area < 0.25 * called.area
    saved = json.loads(out.read_text())["features"][0]["properties"]
    assert saved["biopsia_origin"]["model"] == "demo-model" and len(saved["biopsia_origin"]["sha256"]) == 64
    again = biopsia("propose", slide.slide_path, "--out", tmp_path / "x.geojson")
    assert again.returncode == 1 and "give --model MODEL" in again.stderr


def test_accepting_and_rejecting_drafts_keep_their_origin_through_a_qupath_round_trip(tmp_path):
    from shapely import affinity

    from core.annotations.formats import write_annotations
    from core.annotations.model import BENIGN, TUMOUR
    from core.annotations.proposals import ACCEPTED_AT, EDITED, REJECTED_AT, accept_draft, reject_draft

    probs = np.zeros((10, 20))
    probs[2:6, 2:6] = 0.9
    probs[2:8, 12:18] = 0.8
    probs[7:9, 2:5] = 0.7
    first, third, second = sorted(propose_marks(grid_of(probs), 0.5), key=lambda d: (d.bounds[0], d.bounds[1]))
    when = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
    kept = accept_draft(first, when=when)
    moved = accept_draft(second, geometry=affinity.translate(second.geometry, 10, 0), when=when)
    refused = reject_draft(third, when=when)
    assert not is_draft(kept) and kept.class_name == "Tumour" and kept.geometry.equals(first.geometry)
    assert kept.extra["properties"][ORIGIN_KEY][ACCEPTED_AT] == "2026-12-02T10:00:00+00:00"
    assert kept.extra["properties"][ORIGIN_KEY][EDITED] is False and moved.extra["properties"][ORIGIN_KEY][EDITED]
    assert refused.class_name == "Benign" and REJECTED_AT in refused.extra["properties"][ORIGIN_KEY]
    with pytest.raises(ValueError, match="not a draft"):
        accept_draft(kept)
    path = tmp_path / "decided.geojson"
    write_annotations(path, [kept, moved, refused], [TUMOUR, BENIGN])
    back = {a.id: a for a in read_annotations(path).annotations}
    assert back[kept.id].extra["properties"][ORIGIN_KEY] == kept.extra["properties"][ORIGIN_KEY]
    assert back[moved.id].extra["properties"][ORIGIN_KEY][EDITED] is True
    assert back[refused.id].class_name == "Benign" and not is_draft(back[refused.id])


def test_the_review_list_ranks_doubt_and_disagreement_and_drops_what_was_reviewed():
    from shapely.geometry import box

    from core.annotations.model import Annotation
    from core.evaluation.review import review_queue

    probs = np.full((10, 30), 0.02)
    probs[1:3, 1:3] = 0.48  # 4 tiles of doubt near the threshold
    probs[5:9, 10:14] = 0.97  # confident tumour, 16 tiles ...
    probs[1:4, 20:26] = 0.5  # 18 tiles exactly at the threshold: the most doubt
    marks = [Annotation(box(1000, 500, 1400, 900), "Benign")]  # ... that the doctor called benign
    grid = grid_of(probs)
    queue = review_queue(grid, 0.5, marks)
    assert [item.tiles for item in queue] == [18, 16, 4]
    assert queue[1].disagreeing_tiles == 16 and "disagree with the marks" in queue[1].reason
    assert queue[0].uncertain_tiles == 18 and "near the threshold" in queue[0].reason
    x, y, w, h = queue[1].bbox_l0
    assert (x, y, w, h) == (1000.0, 500.0, 400.0, 400.0) and queue[1].centre_l0 == (1200.0, 700.0)
    # once looked at, a region drops off; without marks, confident tumour is not worth a look
    later = review_queue(grid, 0.5, marks, reviewed=[box(1900, 0, 2700, 500)])
    assert [item.tiles for item in later] == [16, 4]
    assert [item.tiles for item in review_queue(grid, 0.5)] == [18, 4]
    from dataclasses import replace  # one tile reads as one tile
    one = replace(queue[1], disagreeing_tiles=1, uncertain_tiles=1)
    assert one.reason == "1 tile disagrees with the marks; 1 tile near the threshold"
    assert queue[1].reason == "16 tiles disagree with the marks"


def test_drafts_label_no_tile_until_a_doctor_accepts_them():
    """An unreviewed proposal must not train or evaluate as truth: datasets, previews and comparisons skip it."""
    from core.annotations.proposals import accept_draft
    from core.tiles.labels import TUMOUR_LABEL, label_tiles

    probs = np.zeros((6, 6))
    probs[1:5, 1:5] = 0.9
    (draft,) = propose_marks(grid_of(probs), 0.5)
    xs, ys = np.array([200, 0]), np.array([200, 0])  # a tile inside the draft, one outside
    as_draft = label_tiles([draft], xs, ys, STRIDE, (600, 600), fully_annotated=False)
    assert (as_draft.label != TUMOUR_LABEL).all()
    accepted = label_tiles([accept_draft(draft)], xs, ys, STRIDE, (600, 600), fully_annotated=False)
    assert accepted.label[0] == TUMOUR_LABEL and accepted.label[1] != TUMOUR_LABEL


def test_a_rulers_line_reads_back_as_kept_not_as_a_skipped_mark(tmp_path):
    from core.annotations.formats import read_annotations

    path = tmp_path / "with-ruler.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [2000, 0]]},
         "properties": {"biopsia_measurement": True, "length_um": 1000.0}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}, "properties": {}}]}))
    found = read_annotations(path)
    assert found.annotations == [] and len(found.foreign) == 2
    assert len(found.warnings) == 1 and "feature 1" in found.warnings[0]  # only the stranger's line is warned of


def test_accepting_a_draft_is_an_edit_though_outline_and_class_stay():
    from core.annotations.proposals import accept_draft
    from core.annotations.store import Edit

    probs = np.zeros((6, 6))
    probs[1:5, 1:5] = 0.9
    (draft,) = propose_marks(grid_of(probs), 0.5)
    assert not Edit((draft,), (accept_draft(draft),), "Accept draft").is_empty
    assert Edit((draft,), (draft,)).is_empty

def test_a_change_made_after_a_reopen_still_counts_and_a_tampered_outline_is_unknown(tmp_path):
    from shapely import affinity

    from core.annotations.formats import write_annotations
    from core.annotations.model import TUMOUR
    from core.annotations.proposals import EDITED, PROPOSED_OUTLINE, accept_draft

    probs = np.zeros((10, 20))
    probs[2:6, 2:6] = 0.9
    probs[2:8, 12:18] = 0.8
    left, right = sorted(propose_marks(grid_of(probs), 0.5), key=lambda d: d.bounds[0])
    path = tmp_path / "drafts.geojson"
    write_annotations(path, [left, right.with_geometry(affinity.translate(right.geometry, 0, 7))], [TUMOUR])
    back = {a.id: a for a in read_annotations(path).annotations}  # saved, then opened again: nothing in memory
    assert all(is_draft(a) for a in back.values())
    assert accept_draft(back[left.id]).extra["properties"][ORIGIN_KEY][EDITED] is False
    assert accept_draft(back[right.id]).extra["properties"][ORIGIN_KEY][EDITED] is True  # moved before saving

    # a stored outline that was tampered with loads, and the change is recorded as unknown (None)
    doc = json.loads(path.read_text())
    hostile = ["POLYGON ((0 0, 1", 12, "POINT (1 1)", "POLYGON ((0 0, 1 0, 0 1, 0 0))" + " " * 2_000_001]
    for feature, bad in zip(doc["features"] * 2, hostile):
        feature["properties"][ORIGIN_KEY][PROPOSED_OUTLINE] = bad
        path.write_text(json.dumps(doc))
        for mark in read_annotations(path).annotations:
            if mark.extra["properties"][ORIGIN_KEY][PROPOSED_OUTLINE] == bad:
                assert accept_draft(mark).extra["properties"][ORIGIN_KEY][EDITED] is None
