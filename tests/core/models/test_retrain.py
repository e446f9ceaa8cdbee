"""The retrain tile set on a synthetic slide whose tumour is known: accepted drafts are marks,
rejected ones Benign, undecided ones nothing, and on a partly annotated slide only tiles inside marked or
reviewed regions get a label."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box
from shapely.ops import unary_union

from core.annotations.model import Annotation
from core.annotations.proposals import DRAFT_KEY, ORIGIN_KEY, accept_draft, reject_draft
from core.annotations.store import AnnotationStore
from core.models.retrain import retrain_sources
from core.project.model import Project
from core.project.reviewed import ReviewedRegions, reviewed_path
from core.slide import open_slide
from core.tiles.grid import TileSpec, plan_tiles
from core.tiles.labels import NON_TUMOUR_LABEL, TUMOUR_LABEL
from core.tiles.tissue import detect_tissue

SPEC = TileSpec(tile_px=64, mpp=2.0)  # 256 level-0 px tiles on the 0.5 µm/px slide


def _draft(shape, class_name="Tumour"):
    return Annotation(shape, class_name, extra={"properties": {DRAFT_KEY: True, ORIGIN_KEY: {"model": "m"}}})


@pytest.fixture(scope="module")
def scene(synthetic_slide, tmp_path_factory):
    synth = synthetic_slide
    tumour = unary_union(synth.tumour_polygons)
    clear = unary_union(synth.tissue_polygons).difference(tumour.buffer(300))  # tissue well away from tumour
    w, h = synth.width, synth.height
    rejected_area = clear.intersection(box(0, 0, w / 2, h)).buffer(0)
    reviewed_area = clear.intersection(box(w / 2, 0, w, h)).buffer(0)
    assert rejected_area.area > 4 * 256 ** 2 and reviewed_area.area > 4 * 256 ** 2
    accepted = accept_draft(_draft(synth.tumour_polygons[0]))
    undecided = [_draft(p) for p in synth.tumour_polygons[1:]]
    rejected = reject_draft(_draft(rejected_area))
    project = Project.create(tmp_path_factory.mktemp("retrain") / "p", "P")
    entry = project.add_slide(synth.slide_path)
    project.save_annotations(entry.id, AnnotationStore([accepted, *undecided, rejected]))
    with open_slide(synth.slide_path) as reader:
        tissue = detect_tissue(reader)
    return dict(project=project, entry=entry, tissue=tissue, accepted=accepted.geometry,
                rejected=rejected_area, reviewed=reviewed_area, undecided=unary_union(synth.tumour_polygons[1:]))


def _plan(source, tissue):
    with open_slide(source.path) as reader:
        return plan_tiles(reader, SPEC, tissue, source.annotations, fully_annotated=source.fully_annotated)


def _tiles(plan, label):
    idx = np.flatnonzero(plan.label == label)
    return [box(x, y, x + plan.tile_l0, y + plan.tile_l0) for x, y in zip(plan.l0_x[idx], plan.l0_y[idx])]


def test_a_partly_annotated_slide_labels_only_marked_and_reviewed_regions(scene):
    project, entry = scene["project"], scene["entry"]
    before = retrain_sources(project)
    plan_before = _plan(before.sources[0], scene["tissue"])
    ReviewedRegions(reviewed_path(project.annotations_path(entry.id))).add(scene["reviewed"])
    after = retrain_sources(project)
    assert after.problems == [] and not after.sources[0].fully_annotated
    plan = _plan(after.sources[0], scene["tissue"])

    area = plan.tile_l0 ** 2
    tumour_tiles, benign_tiles = _tiles(plan, TUMOUR_LABEL), _tiles(plan, NON_TUMOUR_LABEL)
    assert tumour_tiles and benign_tiles
    # Tumour only from the accepted draft: the undecided drafts count for nothing
    assert all(t.intersection(scene["accepted"]).area >= 0.4 * area for t in tumour_tiles)
    assert not any(t.intersection(scene["undecided"]).area >= 0.4 * area for t in tumour_tiles)
    # Non-tumour only inside the rejected draft (Benign) or the reviewed region; nothing else is labelled
    decided = scene["rejected"].union(scene["reviewed"])
    assert all(t.intersection(decided).area >= 0.4 * area for t in benign_tiles)
    in_reviewed = [t for t in benign_tiles if t.intersection(scene["reviewed"]).area >= 0.4 * area]
    in_rejected = [t for t in benign_tiles if t.intersection(scene["rejected"]).area >= 0.4 * area]
    assert in_reviewed and in_rejected
    # the review is what labels the right half: without it those tiles were unlabelled
    assert len(_tiles(plan_before, NON_TUMOUR_LABEL)) == len(benign_tiles) - len(in_reviewed)
    assert len(_tiles(plan_before, TUMOUR_LABEL)) == len(tumour_tiles)


def test_a_fully_annotated_slide_labels_all_its_tissue_and_ignores_reviews(scene):
    project, entry = scene["project"], scene["entry"]
    partial = _plan(retrain_sources(project).sources[0], scene["tissue"])
    project.update_settings(entry.id, fully_annotated=True)
    try:
        source = retrain_sources(project).sources[0]
        saved = project.load_annotations(entry.id).annotations()
        assert source.fully_annotated and len(source.annotations) == len(saved)  # no reviewed region added
        full = _plan(source, scene["tissue"])
    finally:
        project.update_settings(entry.id, fully_annotated=False)
    assert len(_tiles(full, NON_TUMOUR_LABEL)) > len(_tiles(partial, NON_TUMOUR_LABEL))


def test_open_marks_replace_the_saved_ones_and_a_bad_review_entry_is_reported(scene):
    project, entry = scene["project"], scene["entry"]
    path = reviewed_path(project.annotations_path(entry.id))
    kept = path.read_bytes() if path.exists() else None
    doc = {"format": "biopsia-reviewed", "version": 1,
           "regions": [{"wkt": "POLYGON ((0 0, 1"}, {"wkt": scene["reviewed"].wkt}]}
    path.write_text(json.dumps(doc))
    try:
        result = retrain_sources(project, open_marks={entry.id: []})
    finally:
        path.write_bytes(kept) if kept is not None else path.unlink()
    assert len(result.problems) == 1 and str(path) in result.problems[0]
    marks = result.sources[0].annotations
    assert [a.class_name for a in marks] == ["Benign"] * len(marks) and marks  # only the reviewed region


# -- the retraining run: the parent's settings, the project's decisions, a model that records its parent ----

def _project_with(tmp_path, slide, marks, fully_annotated=False):
    project = Project.create(tmp_path / "project", "Retrain")
    entry = project.add_slide(slide.slide_path)
    project.save_annotations(entry.id, AnnotationStore(marks))
    if fully_annotated:
        project.update_settings(entry.id, fully_annotated=True)
    return project, entry


def test_a_retrain_fine_tunes_the_parent_on_the_projects_marks(slide_pair, small_model, tmp_path):
    from core.inference.predict import model_identity
    from core.models.bundle import read_info
    from core.models.retrain import LR_SHARE, retrain_job
    from core.models.training_job import run_job

    unseen = slide_pair[0]  # the parent never saw this slide: the doctor marked its tumour
    project, entry = _project_with(tmp_path, unseen, [Annotation(p, "Tumour") for p in unseen.tumour_polygons],
                                   fully_annotated=True)
    parent = read_info(small_model)
    job = retrain_job(project, small_model, epochs=1, device="cpu")
    assert job.slide_ids == [entry.id] and job.init_from == small_model
    assert (job.arch, job.spec.tile_px, job.spec.mpp) == (parent.architecture, parent.tile_px, parent.mpp)
    assert job.lr == pytest.approx(parent.training["settings"]["lr"] * LR_SHARE)
    assert job.out_dir == project.folder / "models" / f"{small_model.parent.name}-retrained"
    reports = []
    result = run_job(job, reports.append, lambda: False)
    assert result.bundle is not None and result.history and result.history[0]["auc"] > 0.5
    child = read_info(result.bundle)
    assert child.training["parent"]["sha256"] == model_identity(small_model)["sha256"]
    assert (child.architecture, child.tile_px, child.mpp, list(child.classes)) == \
        (parent.architecture, parent.tile_px, parent.mpp, list(parent.classes))
    again = retrain_job(project, result.bundle, epochs=1, device="cpu")  # a retrained model's own retrain
    assert again.out_dir.name == f"{small_model.parent.name}-retrained-2"


def test_nothing_to_learn_from_is_refused_before_any_work(slide_pair, small_model, tmp_path):
    from core.errors import DatasetError
    from core.models.retrain import labelled_slides, retrain_job

    slide = slide_pair[0]
    undecided = [_draft(p) for p in slide.tumour_polygons]  # only the network's proposals: no one's word yet
    project, entry = _project_with(tmp_path, slide, undecided)
    assert list(labelled_slides(project)) == []
    with pytest.raises(DatasetError, match="no slide has marks, accepted or rejected drafts or reviewed regions"):
        retrain_job(project, small_model)
    assert list(labelled_slides(project, open_marks={entry.id: [accept_draft(undecided[0])]})) == [entry.id]
    region = unary_union(slide.tissue_polygons).envelope
    ReviewedRegions(reviewed_path(project.annotations_path(entry.id))).add(region)
    assert list(labelled_slides(project)) == [entry.id]  # a reviewed region labels its tissue
    assert not (project.folder / "models").exists()


def test_a_parent_without_a_scale_or_unreadable_is_refused(slide_pair, small_model, tmp_path):
    import shutil

    from core.errors import DatasetError, ModelError
    from core.models.retrain import retrain_job

    slide = slide_pair[0]
    project, _ = _project_with(tmp_path, slide, [Annotation(slide.tumour_polygons[0], "Tumour")])
    copy = Path(shutil.copytree(small_model, tmp_path / "no-scale"))
    doc = json.loads((copy / "model.json").read_text())
    doc["mpp"] = None
    (copy / "model.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="records no µm/px"):
        retrain_job(project, copy)
    with pytest.raises(ModelError, match="does not exist"):
        retrain_job(project, tmp_path / "nowhere")
