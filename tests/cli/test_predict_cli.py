"""`biopsia predict` and `biopsia evaluate`, run as a user runs them, with a real model on a slide it never saw."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from core.inference.predict import ProbabilityGrid
from core.slide import open_slide
from tests.cli.test_cli import biopsia


@pytest.fixture(scope="module")
def predicted(slide_pair, small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted")
    broken = out / "broken.svs"
    broken.write_bytes(b"not a slide at all")
    done = biopsia("predict", slide_pair[0].slide_path, broken, "--model", small_model.parent, "--out", out / "run",
                   "--device", "cpu", timeout=300)
    return out / "run", done, broken


def test_predict_writes_every_output(predicted, slide_pair):
    folder, done, broken = predicted
    assert done.returncode == 1  # one slide failed, the other was still done
    assert f"{broken}" in done.stderr and "Traceback" not in done.stderr
    slide = folder / "pair29"
    assert f"{slide}: " in done.stdout and "tiles/s" in done.stdout
    grid = ProbabilityGrid.load(slide / "grid.npz")
    assert grid.complete and grid.slide == str(slide_pair[0].slide_path)
    with open(slide / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == grid.done.sum()
    r, c = int(rows[5]["row"]), int(rows[5]["col"])
    assert float(rows[5]["probability"]) == pytest.approx(grid.probs[r, c], abs=1e-4)
    overview = cv2.imread(str(slide / "overview.png"))
    heat = cv2.imread(str(slide / "heatmap.png"), cv2.IMREAD_UNCHANGED)
    assert overview.shape[:2] == heat.shape[:2] and max(overview.shape[:2]) == 2048 and heat.shape[2] == 4
    with open_slide(slide / "overlay.tif") as overlay:
        assert overlay.dimensions == (8192, 6144) and overlay.level_count >= 3
        x, y, _, _ = grid.tile_rect(r, c)
        value = overlay.read_region(x + 5, y + 5, 0, 1, 1)[0, 0, 0]
        assert value == 1 + round(254 * float(grid.probs[r, c]))
    assert not (folder / "broken").exists()


def test_evaluate_against_the_marks_beside_the_slide(predicted, small_model, tmp_path):
    folder, _, _ = predicted
    # at 0.5, not the small model's own threshold (chosen on 33 validation tiles; tests/cli/test_threshold_cli.py)
    done = biopsia("evaluate", folder, "--json", "--csv", tmp_path / "rows.csv", "--threshold", "0.5")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    total = summary["total"]
    assert total["auc"] >= 0.95 and total["sensitivity"] >= 0.9
    assert [row["slide"] for row in summary["slides"]] == ["pair29"]
    assert (tmp_path / "rows.csv").read_text().splitlines()[-1].startswith(f"all slides,{total['n']},{total['tp']}")
    text = biopsia("evaluate", folder, "--html", tmp_path / "report.html", "--threshold", "0.5")
    assert "Screening test  Negative" in text.stdout and "pair29:" in text.stdout
    assert f"report written to {tmp_path / 'report.html'}" in text.stderr
    report = (tmp_path / "report.html").read_text()
    assert report.startswith("<!DOCTYPE html>") and "True diagnosis" in report
    # the table first, each slide linked to its section after it (a cohort reads from the table down)
    assert report.index("<h2>Slides</h2>") < report.index("<a href='#slide-1'>pair29</a>") < \
        report.index("<h2 id='slide-1'>pair29</h2>")
    assert f"<td class='num ok'>{total['tp']:,}</td>" in report
    assert f"Model <b>{small_model.parent.name}</b>" in report
    # the slide's cores, from the marks and the network, and the legend with the threshold's marker
    assert "<th>Tumour mm (marks)</th>" in report and "<th>Involved (network)</th>" in report
    assert "left: calc(50.00% - 1px)" in report and "doctors' Tumour marks" in report
    import base64
    import re

    import cv2
    import numpy as np

    from core.evaluation.report import MARK_OUTLINE

    jpeg = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", report).group(1))
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    outline = (np.abs(rgb.astype(int) - MARK_OUTLINE).max(axis=2) < 40).sum()
    assert outline > 500  # the doctors' outlines are drawn over the heatmap
    bottom = rgb[-40:, :300]
    assert (bottom.max(axis=2) < 40).sum() > 300  # the scale bar, bottom left


def test_evaluate_without_marks_or_predictions(predicted, tmp_path):
    folder, _, _ = predicted
    (tmp_path / "other.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    none = biopsia("evaluate", folder, "--annotations", tmp_path / "other.geojson")
    assert none.returncode == 1 and "no prediction has marks to compare with" in none.stderr
    assert f"pair29.tiff: no marks found (looked in {tmp_path / 'other.geojson'}); left out" in none.stderr
    empty = biopsia("evaluate", tmp_path)
    assert empty.returncode == 1 and "no predictions" in empty.stderr


def test_predict_refuses_a_missing_model(slide_pair, tmp_path):
    done = biopsia("predict", slide_pair[0].slide_path, "--model", tmp_path / "none", "--out", tmp_path / "o")
    assert done.returncode == 1 and "model folder does not exist" in done.stderr


def test_the_demo_model_agrees_with_the_doctors_from_the_command_line(slide_pair, tmp_path):
    """The demo model, headless: on a slide it never saw, sensitivity and specificity >= 0.9."""
    from core.demo import DEMO_MODEL

    done = biopsia("predict", slide_pair[1].slide_path, "--model", DEMO_MODEL, "--out", tmp_path, "--device", "cpu",
                   "--no-tiff", timeout=300)
    assert done.returncode == 0, done.stderr
    result = biopsia("evaluate", tmp_path, "--json")
    total = json.loads(result.stdout)["total"]
    assert total["tp"] + total["fn"] > 25 and total["tn"] + total["fp"] > 100
    assert total["sensitivity"] >= 0.9 and total["specificity"] >= 0.9, total
    assert not (tmp_path / "pair30" / "overlay.tif").exists()


def test_a_slide_smaller_than_one_model_tile_is_refused_and_nothing_is_written(tmp_path):
    """The demo model's tiles are 128 µm; this slide is 75 x 64 µm (300 x 256 px at 0.25 µm/px)."""
    from core.demo import DEMO_MODEL
    from core.synth import write_synthetic_slide

    tiny = write_synthetic_slide(tmp_path / "tiny.tiff", seed=3, width=300, height=256, mpp=0.25).slide_path
    done = biopsia("predict", tiny, "--model", DEMO_MODEL, "--out", tmp_path / "out", "--device", "cpu")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{tiny}: the slide (300 x 256 px) is smaller than one tile of the model (512 x 512 px here" in done.stderr
    assert not (tmp_path / "out").exists()


def test_every_colour_map_of_core_can_be_asked_for_and_draws_cores_pixels(slide_pair, small_model, tmp_path):
    """``--colormap`` offers core's maps (turbo too) and the heatmap written is core's image of the grid."""
    from core.inference.heatmap import COLORMAPS, heatmap_image

    assert "turbo" in COLORMAPS
    done = biopsia("predict", slide_pair[0].slide_path, "--model", small_model.parent, "--out", tmp_path / "out",
                   "--device", "cpu", "--colormap", "turbo", "--no-tiff", timeout=300)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / "pair29"
    grid = ProbabilityGrid.load(folder / "grid.npz")
    heat = cv2.cvtColor(cv2.imread(str(folder / "heatmap.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert grid.done.sum() > 100 and heat[..., 3].any()
    assert np.array_equal(heat, heatmap_image(grid, heat.shape[1], heat.shape[0], "turbo"))
    assert not np.array_equal(heat, heatmap_image(grid, heat.shape[1], heat.shape[0], "viridis"))


def test_an_unknown_colour_map_is_refused_before_any_work(slide_pair, tmp_path, capsys):
    import main

    with pytest.raises(SystemExit) as exit_:
        main.main(["predict", str(slide_pair[0].slide_path), "--model", str(tmp_path / "m"), "--out",
                   str(tmp_path / "out"), "--colormap", "jet"])
    assert exit_.value.code == 2
    assert "argument --colormap: invalid choice: 'jet'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_cohorts_report_embeds_smaller_overviews_after_its_table():
    """Hundreds of slides: one table first, each row linked to its section, overviews smaller and lazy."""
    import re

    import numpy as np

    from core.evaluation.report import COHORT_IMAGE_SIDE, COHORT_SLIDES, ReportSlide, report_html

    row = {"slide": "s", "n": 10, "tn": 5, "fp": 0, "fn": 1, "tp": 4, "sensitivity": 0.8, "specificity": 1.0,
           "regions": []}
    picture = np.full((400, 1200, 3), 200, np.uint8)
    slides = [ReportSlide({**row, "slide": f"case-{i:03d}"}, picture) for i in range(COHORT_SLIDES + 1)]
    page = report_html(slides, {**row, "slide": "all"}, 0.5)
    assert page.count("<a href='#slide-") == COHORT_SLIDES + 1 and page.count("<h2 id='slide-") == COHORT_SLIDES + 1
    assert page.index("<a href='#slide-51'>") < page.index("<h2 id='slide-1'>")  # the whole table comes first
    assert page.count('loading="lazy"') == COHORT_SLIDES + 1
    import base64

    import cv2

    first = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", page).group(1))
    assert cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape[1] == COHORT_IMAGE_SIDE
