"""Reviewed regions: kept beside the slide's marks, they survive a save and a reopen; a bad entry is
reported and left out, the others kept."""

from __future__ import annotations

import json

import numpy as np
from shapely.geometry import Polygon, box

from core.project.document import SlideDocument
from core.project.model import Project
from core.project.reviewed import load_reviewed, reviewed_path
from core.slide import ArrayReader


def _doc(project, entry):
    return SlideDocument(ArrayReader(np.full((32, 32, 3), 255, np.uint8)), project.load_annotations(entry.id),
                         project=project, entry=entry)


def _project(tmp_path):
    project = Project.create(tmp_path / "p", "P")
    slide = tmp_path / "s.png"
    slide.write_bytes(b"not read here")
    return project, project.add_slide(slide)


def test_reviewed_regions_survive_a_save_and_reopen(tmp_path):
    project, entry = _project(tmp_path)
    doc = _doc(project, entry)
    assert doc.reviewed_regions().is_empty
    doc.mark_reviewed(box(0, 0, 100, 50))
    doc.mark_reviewed(Polygon([(200, 200), (300, 200), (250, 300)]))
    path = reviewed_path(project.annotations_path(entry.id))
    assert path.name == f"{entry.id}.reviewed.json" and path.is_file()

    reopened = _doc(Project.open(project.folder), entry)
    shape = reopened.reviewed_regions()
    assert shape.equals(box(0, 0, 100, 50).union(Polygon([(200, 200), (300, 200), (250, 300)])))
    assert reopened.reviewed.problems == [] and len(reopened.reviewed.regions) == 2
    assert all(r.reviewed_at for r in reopened.reviewed.regions)
    assert not reopened.store.annotations()  # not marks: QuPath and the datasets never see them


def test_taking_a_review_back_is_saved(tmp_path):
    project, entry = _project(tmp_path)
    doc = _doc(project, entry)
    doc.mark_reviewed(box(0, 0, 10, 10))
    doc.mark_reviewed(box(20, 20, 30, 30))
    assert doc.unmark_reviewed(box(20, 20, 30, 30)) and not doc.unmark_reviewed(box(5, 5, 6, 6))
    assert _doc(project, entry).reviewed_regions().equals(box(0, 0, 10, 10))


def test_a_malformed_entry_is_reported_and_the_rest_kept(tmp_path):
    project, entry = _project(tmp_path)
    path = reviewed_path(project.annotations_path(entry.id))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": "biopsia-reviewed", "version": 1, "regions": [
        {"wkt": "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))", "reviewed_at": "2026-01-01T00:00:00+00:00"},
        {"wkt": "POLYGON ((nonsense"}, {"wkt": "POINT (3 4)"}, "just a string", {"no": "outline"},
        {"wkt": "POLYGON ((50 50, 60 50, 60 60, 50 60, 50 50))"}]}))
    doc = _doc(project, entry)
    assert doc.reviewed_regions().equals(box(0, 0, 10, 10).union(box(50, 50, 60, 60)))
    problems = doc.reviewed.problems
    assert len(problems) == 4 and all(str(path) in p for p in problems)
    assert [p.split("reviewed region ")[1].split(" ")[0] for p in problems] == ["2", "3", "4", "5"]
    doc.mark_reviewed(box(70, 70, 80, 80))  # the next save keeps the good ones, and the old file as .bak
    assert len(load_reviewed(path).regions) == 3 and path.with_name(path.name + ".bak").is_file()


def test_an_unreadable_file_is_reported_not_raised(tmp_path):
    path = tmp_path / "x.reviewed.json"
    path.write_bytes(b"{not json")
    loaded = load_reviewed(path)
    assert loaded.regions == [] and len(loaded.problems) == 1 and str(path) in loaded.problems[0]
    path.write_text("[1, 2]")
    assert load_reviewed(path).problems and load_reviewed(tmp_path / "missing.json").problems == []


def test_a_slide_without_saved_marks_keeps_its_reviews_in_memory():
    doc = SlideDocument(ArrayReader(np.full((32, 32, 3), 255, np.uint8)))
    doc.mark_reviewed(box(0, 0, 5, 5))
    assert doc.reviewed.path is None and doc.reviewed_regions().equals(box(0, 0, 5, 5))
