"""``--slide-mpp``: a slide's resolution stated on the command line, stored where the window keeps it, and used."""

from __future__ import annotations

import json

import cv2
import pytest

from core.inference.predict import ProbabilityGrid
from core.project.mpp import resolve_file_mpp
from core.project.slide_settings import SlideSettingsStore
from core.slide import open_slide
from tests.cli.test_cli import biopsia


@pytest.fixture
def region_png(synthetic_slide, tmp_path):
    """A 1024 x 768 PNG cut from the synthetic slide's tissue: a plain image with no µm/px."""
    with open_slide(synthetic_slide.slide_path) as reader:
        w, h = reader.dimensions
        rgb = reader.read_region(w // 2 - 512, h // 2 - 384, 0, 1024, 768)
    path = tmp_path / "region.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def info_json(*args):
    done = biopsia("info", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done


def test_info_stores_the_value_and_says_where_it_came_from(region_png):
    before, _ = info_json(region_png)
    assert before["mpp"] is None and before["mpp_source"] is None
    given, done = info_json(region_png, "--slide-mpp", "0.5")
    assert f"{region_png}: resolution set to 0.5 µm/px (stored for this slide)" in done.stderr
    assert given["mpp"] == [0.5, 0.5] and given["mpp_source"] == "--slide-mpp" and given["file_mpp"] is None
    later, _ = info_json(region_png)  # no longer "unknown": the user's setting for this file
    assert later["mpp"] == [0.5, 0.5] and later["mpp_source"] == "user"
    text = biopsia("info", region_png)
    assert "0.5000 x 0.5000 µm/px (the user's setting for this file)" in text.stdout
    assert SlideSettingsStore().get_mpp_override(region_png) == (0.5, 0.5)


def test_two_values_and_the_file_s_own(synthetic_slide):
    slide = synthetic_slide.slide_path
    own, _ = info_json(slide)
    assert own["mpp"] == [0.5, 0.5] and own["mpp_source"] == "file"
    given, _ = info_json(slide, "--slide-mpp", "0.25,0.3")
    assert given["mpp"] == [0.25, 0.3] and given["file_mpp"] == [0.5, 0.5]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e6", "0.5,0.5,0.5", "x", "0.5,-2"])
def test_bad_values_are_refused_and_nothing_is_stored(region_png, value):
    done = biopsia("info", region_png, f"--slide-mpp={value}")
    assert done.returncode == 2 and "--slide-mpp" in done.stderr and "Traceback" not in done.stderr
    assert SlideSettingsStore().get_mpp_override(region_png) is None


def test_no_default_project_is_made_to_look_up_or_store(region_png):
    from core import paths

    assert biopsia("info", region_png, "--slide-mpp", "0.5").returncode == 0
    assert not (paths.data_dir() / "default-project").exists()


def test_dataset_from_a_png_needs_and_uses_the_resolution(region_png, tmp_path):
    without = biopsia("dataset", region_png, "--fully-annotated", "--tile", "64", "--mpp", "1",
                      "--out", tmp_path / "no")
    assert without.returncode == 1 and "--slide-mpp" in without.stderr and "region.png" in without.stderr
    assert not (tmp_path / "no").exists()
    done = biopsia("dataset", region_png, "--fully-annotated", "--tile", "64", "--mpp", "1", "--slide-mpp", "0.25",
                   "--ratio", "0.5", "--split", "random", "--out", tmp_path / "ds", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resolution set to 0.25 µm/px (stored for this slide)" in done.stderr
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["mpp"] == 1.0 and manifest["slides"][0]["tile_l0"] == 256  # 64 px at 1 µm/px on 0.25 µm/px


def test_predict_on_a_png_needs_and_uses_the_resolution(region_png, small_model, tmp_path):
    without = biopsia("predict", region_png, "--model", small_model.parent, "--out", tmp_path / "no",
                      "--device", "cpu", timeout=300)
    assert without.returncode == 1 and "--slide-mpp" in without.stderr and "region.png" in without.stderr
    done = biopsia("predict", region_png, "--model", small_model.parent, "--out", tmp_path / "run",
                   "--device", "cpu", "--slide-mpp", "1", timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{region_png}: resolution set to 1 µm/px (stored for this slide)" in done.stderr
    grid = ProbabilityGrid.load(tmp_path / "run" / "region" / "grid.npz")
    assert grid.tile_l0 == 128  # the model's 64 px at 2 µm/px, on a slide of 1 µm/px
    assert resolve_file_mpp(region_png).mpp == (1.0, 1.0)

    evaluated = biopsia("evaluate", tmp_path / "run", "--slide-mpp", "0.8", "--json")
    # evaluate compares in level-0 pixels and never needs the µm/px; it takes the option and stores it
    assert f"{region_png}: resolution set to 0.8 µm/px (stored for this slide)" in evaluated.stderr
    assert resolve_file_mpp(region_png).mpp == (0.8, 0.8)


def test_screenshot_of_a_png_at_a_magnification(region_png, tmp_path):
    out = tmp_path / "shot.png"
    done = biopsia("screenshot", region_png, "--out", out, "--size", "640x480", "--mag", "10",
                   "--slide-mpp", "0.5", timeout=180)
    assert done.returncode == 0, done.stderr
    assert "resolution set to 0.5 µm/px" in done.stderr and out.is_file()


def test_a_project_folder_s_slides_keep_it_in_that_project(region_png, tmp_path):
    from core.project.model import Project

    project = Project.create(tmp_path / "project", "Regions")
    project.add_slide(region_png)
    done = biopsia("dataset", tmp_path / "project", "--fully-annotated", "--tile", "64", "--mpp", "1",
                   "--slide-mpp", "0.5", "--dry-run", "--out", tmp_path / "ds")
    assert done.returncode == 0, done.stderr
    assert "resolution set to 0.5 µm/px (stored for this slide)" in done.stderr
    assert Project.open(tmp_path / "project").find_slide(region_png).settings.mpp_override == (0.5, 0.5)
