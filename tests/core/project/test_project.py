"""Projects: create, open, slides, annotation round trip, damaged and newer project files, read-only slides."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from shapely.geometry import box

from core import paths
from core.annotations import AnnotationStore, ops
from core.annotations.model import AnnotationClass
from core.errors import AnnotationFormatError, BiopsiaError
from core.project.model import FORMAT_VERSION, Project, ProjectError, default_project
from core.project.settings import SlideSettings


def _listing(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def test_create_add_slide_and_open_round_trip(tmp_path, slide):
    project = Project.create(tmp_path / "proj", "Prostate 2026")
    assert (tmp_path / "proj" / "project.json").is_file()
    entry = project.add_slide(slide)
    assert entry.path == slide and entry.name == "case-17.svs" and entry.relative_path is None
    assert entry.settings == SlideSettings(fully_annotated=False, mpp_override=None)
    # Idempotent by resolved path: another spelling of the same file gives the same entry.
    link = tmp_path / "link.svs"
    link.symlink_to(slide)
    assert project.add_slide(link) is entry
    assert project.add_slide(slide.parent / ".." / "slides" / slide.name) is entry
    assert len(project.slides) == 1
    project.update_settings(entry.id, fully_annotated=True, mpp_override=[0.25, 0.25])

    again = Project.open(tmp_path / "proj")
    assert again.name == "Prostate 2026"
    assert again.classes == project.classes
    [reopened] = again.slides
    assert reopened.id == entry.id and reopened.path == slide
    assert reopened.settings.fully_annotated is True
    assert reopened.settings.mpp_override == (0.25, 0.25)
    assert again.warnings == []
    assert json.loads((tmp_path / "proj" / "project.json").read_text())["version"] == FORMAT_VERSION


def test_annotations_round_trip(tmp_path, slide):
    classes = (AnnotationClass("Tumour", (200, 0, 0)), AnnotationClass("Stroma", (0, 0, 200)))
    project = Project.create(tmp_path / "proj", "p", classes=classes)
    entry = project.add_slide(slide)
    assert project.annotations_path(entry.id) == tmp_path / "proj" / "annotations" / f"{entry.id}.geojson"
    store = project.load_annotations(entry.id)
    assert len(store) == 0 and store.classes == classes
    store.apply(ops.add(box(100, 100, 400, 300), "Tumour"))
    store.apply(ops.add(box(500, 100, 900, 300), "Stroma"))
    project.save_annotations(entry.id, store)

    loaded = Project.open(tmp_path / "proj").load_annotations(entry.id)
    assert [a.class_name for a in loaded.annotations()] == ["Tumour", "Stroma"]
    for mine, theirs in zip(store.annotations(), loaded.annotations()):
        assert mine.geometry.equals(theirs.geometry)
    assert [c.name for c in loaded.classes][:2] == ["Tumour", "Stroma"]


def test_remove_slide_keeps_its_annotations(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    store = project.load_annotations(entry.id)
    store.apply(ops.add(box(0, 0, 50, 50), "Tumour"))
    project.save_annotations(entry.id, store)
    path = project.annotations_path(entry.id)
    project.remove_slide(entry.id)
    assert project.slides == [] and Project.open(project.folder).slides == []
    assert path.is_file()
    back = project.add_slide(slide)
    assert back.id == entry.id and len(project.load_annotations(back.id)) == 1


def test_add_missing_slide_and_existing_project_are_refused(tmp_path):
    project = Project.create(tmp_path / "proj")
    with pytest.raises(ProjectError, match="not found"):
        project.add_slide(tmp_path / "nowhere.svs")
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path / "proj")


def test_open_missing_project_names_the_file(tmp_path):
    with pytest.raises(ProjectError) as info:
        Project.open(tmp_path / "empty")
    assert str(tmp_path / "empty" / "project.json") in str(info.value)
    assert isinstance(info.value, BiopsiaError)


def test_damaged_project_file_falls_back_to_backup(tmp_path, slide):
    other = slide.with_name("case-18.svs")
    other.write_bytes(b"x")
    project = Project.create(tmp_path / "proj")
    first = project.add_slide(slide)
    project.add_slide(other)  # the .bak now holds the project with the first slide only
    json_path = project.json_path
    json_path.write_bytes(json_path.read_bytes()[:40])  # truncated, as after a crash on a bad disk

    opened = Project.open(tmp_path / "proj")
    assert [s.id for s in opened.slides] == [first.id]
    assert len(opened.warnings) == 1 and "project.json.bak" in opened.warnings[0]
    assert str(json_path) in opened.warnings[0]

    Path(str(json_path) + ".bak").write_text("{ not json")
    with pytest.raises(ProjectError, match="damaged") as info:
        Project.open(tmp_path / "proj")
    assert str(json_path) in str(info.value)


def test_newer_project_version_is_refused_clearly(tmp_path):
    project = Project.create(tmp_path / "proj")
    project.save()  # a valid .bak exists, but a newer file must not be "repaired" from it
    data = json.loads(project.json_path.read_text())
    data["version"] = FORMAT_VERSION + 1
    project.json_path.write_text(json.dumps(data))
    with pytest.raises(ProjectError, match="newer Biopsia") as info:
        Project.open(tmp_path / "proj")
    assert str(project.json_path) in str(info.value)
    assert "Update Biopsia" in str(info.value)


def test_slides_inside_a_moved_project_are_found_by_relative_path(tmp_path):
    folder = tmp_path / "proj"
    project = Project.create(folder)
    inside = folder / "slides" / "a.svs"
    inside.parent.mkdir()
    inside.write_bytes(b"slide")
    entry = project.add_slide(inside)
    assert entry.relative_path == "slides/a.svs"
    shutil.move(folder, tmp_path / "moved")
    [moved] = Project.open(tmp_path / "moved").slides
    assert moved.path == tmp_path / "moved" / "slides" / "a.svs"


def test_nothing_is_written_beside_the_slide(tmp_path, slide):
    slide_folder = slide.parent
    os.chmod(slide_folder, 0o555)  # read-only media (root ignores this, hence the listing below)
    try:
        before = _listing(slide_folder)
        project = Project.create(tmp_path / "proj")
        entry = project.add_slide(slide)
        project.update_settings(entry.id, fully_annotated=True)
        store = project.load_annotations(entry.id)
        saver = project.autosaver(entry.id, store, delay=0.05)
        store.apply(ops.add(box(0, 0, 100, 100), "Tumour"))
        assert saver.close()
        project.save_annotations(entry.id, store)
        assert _listing(slide_folder) == before
        assert project.annotations_path(entry.id).is_file()
    finally:
        os.chmod(slide_folder, 0o755)


def test_unreadable_annotation_file_is_never_overwritten(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    path = project.annotations_path(entry.id)
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    garbage = path.read_bytes()
    with pytest.raises(AnnotationFormatError):
        project.load_annotations(entry.id)
    assert entry.annotations_read_only
    store = AnnotationStore()
    with pytest.raises(ProjectError, match="will not overwrite") as info:
        project.autosaver(entry.id, store)
    assert str(path) in str(info.value)
    with pytest.raises(ProjectError):
        project.save_annotations(entry.id, store)
    assert path.read_bytes() == garbage


def test_default_project_lives_in_the_data_folder(slide):
    project = default_project()
    assert project.folder == paths.data_dir() / "default-project"
    entry = project.add_slide(slide)
    assert [s.id for s in default_project().slides] == [entry.id]


def test_saving_after_recovery_keeps_the_good_backup(tmp_path, slide):
    other = slide.with_name("case-18.svs")
    other.write_bytes(b"x")
    project = Project.create(tmp_path / "proj")
    first = project.add_slide(slide)
    project.add_slide(other)  # the .bak holds the project with the first slide only
    json_path = project.json_path
    bak = Path(str(json_path) + ".bak")
    good_backup = bak.read_bytes()
    damaged = json_path.read_bytes()[:40]
    json_path.write_bytes(damaged)

    opened = Project.open(tmp_path / "proj")  # recovered from the backup
    assert [s.id for s in opened.slides] == [first.id]
    opened.update_settings(first.id, fully_annotated=True)  # the next save
    assert bak.read_bytes() == good_backup  # the damaged file did not become the backup ...
    assert Path(str(json_path) + ".damaged").read_bytes() == damaged  # ... it is kept aside instead
    again = Project.open(tmp_path / "proj")
    assert again.warnings == [] and again.slide(first.id).settings.fully_annotated is True
    json_path.write_bytes(damaged)  # damaged again: the backup still opens
    assert [s.id for s in Project.open(tmp_path / "proj").slides] == [first.id]
    # A sound file still becomes the backup at the next save.
    again.update_settings(first.id, fully_annotated=False)
    again.update_settings(first.id, fully_annotated=True)
    assert json.loads(bak.read_text())["slides"][0]["settings"]["fully_annotated"] is False


def _qupath_file_with_what_biopsia_does_not_read() -> dict:
    square = {"type": "Polygon", "coordinates": [[[100, 100], [400, 100], [400, 400], [100, 400], [100, 100]]]}
    other = {"type": "Polygon", "coordinates": [[[600, 100], [900, 100], [900, 400], [600, 400], [600, 100]]]}
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "6d2c8a3e-51b7-4c1e-9a55-0b7a4e8f1c21", "geometry": square,
         "properties": {"objectType": "annotation", "isLocked": True, "classification": {"name": "Tumour",
                        "color": [200, 0, 0]}, "measurements": {"Area µm^2": 1234.5, "Num Detections": 7},
                        "metadata": {"ANNOTATION_DESCRIPTION": "checked by B.", "reviewer": "B"}},
         "nucleusGeometry": {"type": "Point", "coordinates": [250, 250]}},
        {"type": "Feature", "id": "0f3e1a9c-2b44-4f0a-8c1d-77aa5e2b9d10", "geometry": other,
         "properties": {"objectType": "annotation", "name": "second", "color": [1, 2, 3], "levels": [1, [2, 3]]}},
        {"type": "Feature", "id": "a1", "geometry": {"type": "Point", "coordinates": [50.25, 60]},
         "properties": {"objectType": "annotation", "name": "a point", "measurements": {"x": 1e300}}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [10, 10.5], [20, 0]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Ruler", "color": [0, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]}, "properties": {}},
        {"type": "Feature", "geometry": None, "properties": {"objectType": "annotation", "note": "no geometry"}},
    ]}


@pytest.mark.parametrize("journal", [False, True], ids=["rewrite", "journal"])
def test_what_biopsia_does_not_read_survives_every_save(tmp_path, slide, journal):
    import time

    from core.annotations.formats import read_annotations

    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    path = project.annotations_path(entry.id)
    original = _qupath_file_with_what_biopsia_does_not_read()
    text = json.dumps(original, indent=2, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    store = project.load_annotations(entry.id)
    assert len(store) == 2 and any("not an area" in w for w in project.warnings)
    saved = []
    saver = project.autosaver(entry.id, store, delay=0.05, on_saved=saved.append,
                              **({"full_write_bytes": 0} if journal else {}))
    first, second = sorted(store.annotations(), key=lambda a: a.bounds)
    store.apply(ops.set_class(store, [first.id], "Benign"))  # Biopsia edits the first mark ...
    deadline = time.monotonic() + 30
    while not saved and time.monotonic() < deadline:
        time.sleep(0.01)
    store.apply(ops.move(store, [first.id], 10, 0))  # ... twice, so the backup is a Biopsia save too
    assert saver.close()

    def features(file: Path) -> list:
        return json.loads(file.read_text(encoding="utf-8"))["features"]

    bak = Path(str(path) + ".bak")
    if journal:  # both saves went to the journal: the file was rewritten once, on close
        assert bak.read_text(encoding="utf-8") == text
    for file in (path,) if journal else (path, bak):
        written = features(file)
        for foreign in original["features"][2:]:  # unchanged, as JSON values
            assert written.count(foreign) == 1, (file.name, foreign)
        by_id = {f["id"]: f for f in written if f.get("geometry", {}) and f["geometry"]["type"] == "Polygon"}
        edited = by_id["6d2c8a3e-51b7-4c1e-9a55-0b7a4e8f1c21"]
        for key in ("isLocked", "measurements", "metadata"):
            assert edited["properties"][key] == original["features"][0]["properties"][key], (file.name, key)
        assert edited["nucleusGeometry"] == original["features"][0]["nucleusGeometry"]
        assert edited["properties"]["classification"]["name"] == "Benign"
        kept = by_id["0f3e1a9c-2b44-4f0a-8c1d-77aa5e2b9d10"]
        assert {k: kept["properties"][k] for k in ("color", "levels", "name")} == \
            {k: original["features"][1]["properties"][k] for k in ("color", "levels", "name")}
    assert read_annotations(path).annotations[0].bounds[0] in (110, 610)  # the move reached the file
    # Opened again, edited again: still there.
    again = Project.open(tmp_path / "proj")
    store = again.load_annotations(entry.id)
    saver = again.autosaver(entry.id, store, delay=0.05)
    store.apply(ops.set_note(store, store.annotations()[1].id, "third save"))
    assert saver.close()
    assert all(features(path).count(f) == 1 for f in original["features"][2:])
