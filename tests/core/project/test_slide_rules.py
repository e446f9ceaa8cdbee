"""A project slide's settings, µm/px and marks have one owner each: the window, the dataset, the training
job and the command line all get the same answer for the same slide."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from core.annotations import AnnotationStore
from core.annotations.formats import read_annotations
from core.errors import AnnotationFormatError
from core.inference.predict import ProbabilityGrid
from core import paths
from core.project import layout
from core.project.marks import FoundMarks, find_marks
from core.project.model import Project, ProjectError, default_project
from core.project.mpp import MppSource, SlideMpp, remember_mpp, resolve_file_mpp, resolve_mpp
from core.project.settings import SlideSettings
from core.project.slide_settings import SlideSettingsStore
from core.slide import open_slide
from core.tiles.dataset import sources_from_paths, sources_from_project
from tests.cli.test_cli import biopsia

PROJECT_MPP, USER_MPP, FILE_MPP = (1.0, 1.0), (2.0, 2.0), (0.5, 0.5)


@pytest.fixture
def bare_slide(synthetic_slide, tmp_path):
    """The synthetic slide (0.5 µm/px in its file) copied without the mark file beside it."""
    path = tmp_path / "slides" / "bare.tiff"
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(synthetic_slide.slide_path, path)
    return path


def in_default_project(slide_path, marks_from, fully_annotated: bool, mpp=PROJECT_MPP):
    """The slide in the user's default project with saved marks and settings, and a different µm/px
    in the user's store: the project's value must win everywhere."""
    project = default_project()
    entry = project.add_slide(slide_path)
    loaded = read_annotations(marks_from)
    project.save_annotations(entry.id, AnnotationStore(loaded.annotations, loaded.classes))
    project.update_settings(entry.id, fully_annotated=fully_annotated, mpp_override=mpp)
    SlideSettingsStore().set_mpp_override(slide_path, USER_MPP)
    return project, entry


# -- SlideSettings ----------------------------------------------------------------------------------
def test_settings_default_to_partly_annotated_and_no_override(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    data = json.loads(project.json_path.read_text())
    del data["slides"][0]["settings"]  # a hand-written project.json without settings
    project.json_path.write_text(json.dumps(data))
    [reopened] = Project.open(project.folder).slides
    assert reopened.settings == SlideSettings() == SlideSettings(fully_annotated=False, mpp_override=None)
    assert reopened.id == entry.id


def test_unknown_settings_survive_a_round_trip(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    data = json.loads(project.json_path.read_text())
    extra = {"stain": "H&E", "from_a_newer_biopsia": {"levels": [1, 2]}}
    data["slides"][0]["settings"].update(extra)
    project.json_path.write_text(json.dumps(data))
    opened = Project.open(project.folder)
    assert dict(opened.slide(entry.id).settings.extra) == extra
    opened.update_settings(entry.id, fully_annotated=True)
    saved = json.loads(project.json_path.read_text())["slides"][0]["settings"]
    assert saved == {**extra, "fully_annotated": True, "mpp_override": None}
    assert Project.open(project.folder).slide(entry.id).settings == opened.slide(entry.id).settings


@pytest.mark.parametrize("bad", [{"fully_annotated": "yes"}, {"fully_annotated": 1}, {"mpp_override": [0.25]},
                                 {"mpp_override": [0, 0.25]}, {"mpp_override": "0.25"}, {"mpp_override": [True, 1]}])
def test_a_damaged_setting_is_refused_naming_the_file_and_the_key(tmp_path, slide, bad):
    project = Project.create(tmp_path / "proj")
    project.add_slide(slide)
    data = json.loads(project.json_path.read_text())
    data["slides"][0]["settings"].update(bad)
    project.json_path.write_text(json.dumps(data))
    project.json_path.with_name("project.json.bak").unlink()
    with pytest.raises(ProjectError, match=f"project.json.*{next(iter(bad))}"):
        Project.open(project.folder)


def test_changing_a_setting_wrongly_changes_nothing(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    before = project.json_path.read_bytes()
    with pytest.raises(ValueError):
        project.update_settings(entry.id, mpp_override=(0.25, float("nan")))
    with pytest.raises(ValueError):
        project.update_settings(entry.id, fully_annotated="no")
    with pytest.raises(TypeError):
        project.update_settings(entry.id, fully_anotated=True)  # a misspelt setting is not stored
    assert project.json_path.read_bytes() == before and entry.settings == SlideSettings()


# -- µm/px ------------------------------------------------------------------------------------------
def test_a_project_written_with_an_override_reads_back_the_same(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    store = SlideSettingsStore(tmp_path / "store.json")
    assert remember_mpp(slide, 0.3, project, entry, store) == SlideMpp((0.3, 0.3), MppSource.PROJECT)
    reopened = Project.open(project.folder).slide(entry.id)
    assert reopened.settings.mpp_override == (0.3, 0.3)
    assert json.loads(project.json_path.read_text())["slides"][0]["settings"]["mpp_override"] == [0.3, 0.3]
    assert resolve_mpp(slide, FILE_MPP, reopened, store) == SlideMpp((0.3, 0.3), MppSource.PROJECT)
    assert store.get_mpp_override(slide) == (0.3, 0.3)  # the slide file named alone finds it too


def test_the_project_value_wins_then_the_users_then_the_files(tmp_path, slide):
    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(slide)
    store = SlideSettingsStore(tmp_path / "store.json")
    assert resolve_mpp(slide, FILE_MPP, entry, store) == SlideMpp(FILE_MPP, MppSource.FILE)
    store.set_mpp_override(slide, USER_MPP)
    assert resolve_mpp(slide, FILE_MPP, entry, store) == SlideMpp(USER_MPP, MppSource.USER)
    entry = project.update_settings(entry.id, mpp_override=PROJECT_MPP)
    assert resolve_mpp(slide, FILE_MPP, entry, store) == SlideMpp(PROJECT_MPP, MppSource.PROJECT)
    assert resolve_mpp(slide, None, None, store).mpp == USER_MPP  # outside the project: the user's value
    with pytest.raises(ValueError):
        remember_mpp(slide, -1.0, project, entry, store)
    assert Project.open(project.folder).slide(entry.id).settings.mpp_override == PROJECT_MPP


def test_dataset_training_and_cli_agree_on_a_project_slides_mpp_and_fully_annotated(bare_slide, synthetic_slide):
    project, entry = in_default_project(bare_slide, synthetic_slide.geojson_path, fully_annotated=True)
    with open_slide(bare_slide) as reader:
        assert reader.mpp == FILE_MPP
        cli_mpp = resolve_file_mpp(bare_slide, reader.mpp)  # biopsia predict SLIDE
    [named] = sources_from_paths([bare_slide])  # biopsia dataset/train SLIDE
    [in_project] = sources_from_project(project)  # the training panel's job
    [folder] = sources_from_paths([project.folder])  # biopsia train PROJECT
    found = find_marks(bare_slide)  # biopsia evaluate
    assert cli_mpp == SlideMpp(PROJECT_MPP, MppSource.PROJECT)
    assert named.mpp == in_project.mpp == folder.mpp == PROJECT_MPP
    assert found.fully_annotated and found.declared
    assert named.fully_annotated and in_project.fully_annotated and folder.fully_annotated
    assert len(named.annotations) == len(in_project.annotations) == len(found.marks) > 0

    project.update_settings(entry.id, fully_annotated=False)
    [named], [in_project] = sources_from_paths([bare_slide]), sources_from_project(default_project())
    assert not (named.fully_annotated or in_project.fully_annotated or find_marks(bare_slide).fully_annotated)


def test_the_cli_predicts_with_the_projects_mpp(bare_slide, synthetic_slide, small_model, tmp_path):
    in_default_project(bare_slide, synthetic_slide.geojson_path, fully_annotated=True)
    biopsia("predict", bare_slide, "--model", small_model.parent, "--out", tmp_path / "run", "--device", "cpu",
            "--no-tiff", timeout=300)
    grid = ProbabilityGrid.load(tmp_path / "run" / "bare" / "grid.npz")
    assert grid.tile_l0 == 64 * 2.0 / PROJECT_MPP[0]  # 64 px tiles at 2 µm/px: 128 slide pixels at 1 µm/px



def test_headless_lookups_never_create_the_default_project(bare_slide, tmp_path):
    """Asking a bare slide's µm/px or marks reads the default project if there is one, never makes it."""
    folder = paths.data_dir() / "default-project"
    assert not folder.exists()
    assert resolve_file_mpp(bare_slide, FILE_MPP).mpp == FILE_MPP
    assert not find_marks(bare_slide).found
    assert not folder.exists()

# -- marks ------------------------------------------------------------------------------------------
def test_marks_are_found_beside_the_slide_in_folders_and_in_projects(synthetic_slide, bare_slide, tmp_path):
    beside = find_marks(synthetic_slide.slide_path)
    assert beside.found and beside.source == synthetic_slide.geojson_path and beside.entry is None
    assert beside.fully_annotated and not beside.declared  # a mark file is assumed complete, not declared
    none = find_marks(bare_slide)
    assert none == FoundMarks(None, reason=none.reason) and not none.found and not none.fully_annotated
    assert "bare.geojson" in none.reason and "default project" in none.reason

    folder = tmp_path / "marks"
    folder.mkdir()
    shutil.copyfile(synthetic_slide.geojson_path, folder / "bare.geojson")
    assert find_marks(bare_slide, [folder]).source == folder / "bare.geojson"
    assert find_marks(bare_slide, [folder / "bare.geojson"]).marks == beside.marks
    assert not find_marks(bare_slide, [tmp_path / "elsewhere.geojson"]).found

    project = Project.create(tmp_path / "proj")
    entry = project.add_slide(bare_slide)
    project.save_annotations(entry.id, AnnotationStore(beside.marks, project.classes))
    project.update_settings(entry.id, fully_annotated=True)
    from_project = find_marks(bare_slide, [project.folder])
    assert from_project.entry.id == entry.id and from_project.declared and len(from_project.marks) == len(beside.marks)
    assert from_project.source == layout.annotations_dir(project.folder) / f"{entry.id}{layout.ANNOTATION_SUFFIX}"


def test_a_damaged_mark_file_is_an_error_naming_it(bare_slide):
    bad = bare_slide.with_suffix(".geojson")
    bad.write_text("{not json")
    with pytest.raises(AnnotationFormatError, match="bare.geojson"):
        find_marks(bare_slide)


def test_project_folder_names_have_one_owner():
    """Only core/project/layout.py defines them; everyone else imports them."""
    names = ("PROJECT_FILE", "ANNOTATIONS_DIR", "ANNOTATION_SUFFIX", "MODELS_DIR", "PREDICTIONS_DIR")
    defined = re.compile(rf"^\s*({'|'.join(names)})\s*(:[^=]+)?=", re.MULTILINE)
    root = Path(__file__).resolve().parents[3]
    owners = sorted(str(p.relative_to(root)) for folder in ("core", "gui", "cli") for p in (root / folder).rglob("*.py")
                    if defined.search(p.read_text(encoding="utf-8")))
    assert owners == ["core/project/layout.py"]


# -- the window -------------------------------------------------------------------------------------
def test_the_window_agrees_and_set_resolution_writes_the_project(qtbot, window, open_view, bare_slide,
                                                                 synthetic_slide):
    from PyQt5.QtCore import Qt

    from gui.training_panel import FULL

    project, entry = in_default_project(bare_slide, synthetic_slide.geojson_path, fully_annotated=True)
    view = open_view(window, bare_slide)
    assert view.mpp == PROJECT_MPP  # not the user's 2.0 nor the file's 0.5
    assert "kept in the project" in window.info_dock.value_of("Resolution")
    assert window.tiles_dock.fully_annotated.isChecked()
    panel = window.show_training_panel()
    assert panel.table.item(0, FULL).checkState() == Qt.Checked

    window.set_slide_mpp(view, (0.8, 0.8))  # Slide ▸ Set resolution
    assert view.mpp == (0.8, 0.8)
    assert Project.open(project.folder).slide(entry.id).settings.mpp_override == (0.8, 0.8)
    [named] = sources_from_paths([bare_slide])
    assert named.mpp == resolve_file_mpp(bare_slide).mpp == (0.8, 0.8)
    panel.close()
