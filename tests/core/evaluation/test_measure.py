"""What a biopsy report measures, against shapes of known size.

A 2000 x 400 px rectangle at 0.5 µm/px is 1.000 mm long and 0.2000 mm²; a core wholly covered by tumour is
100 % involved; discontinuous foci are measured first to last (ISUP 2019) and, apart, as their sum.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from shapely import affinity
from shapely.geometry import Polygon, box

from core.annotations.formats import write_annotations
from core.annotations.model import BENIGN, TUMOUR, Annotation
from core.errors import BiopsiaError
from core.evaluation.measure import centre_line, measure_cores, measure_marks, measure_slide, tumour_of_grid
from core.inference.predict import ProbabilityGrid
from core.slide import open_slide
from tests.cli.test_cli import biopsia

HALF = (0.5, 0.5)


def test_a_2000_by_400_rectangle_at_half_a_micron_is_one_millimetre_and_a_fifth_of_a_mm2():
    rect = Annotation(geometry=box(300, 700, 2300, 1100), class_name="Tumour")
    (m,) = measure_marks([rect], HALF)
    assert m.length_mm == pytest.approx(1.0, abs=1e-9) and m.area_mm2 == pytest.approx(0.2, abs=1e-9)
    turned = Annotation(geometry=affinity.rotate(rect.geometry, 37, origin="centroid"), class_name="Tumour")
    (t,) = measure_marks([turned], HALF)  # the long axis, not the bounding box
    assert t.length_mm == pytest.approx(1.0, abs=1e-6) and t.area_mm2 == pytest.approx(0.2, abs=1e-6)
    (w,) = measure_marks([rect], (0.5, 0.25))  # non-square pixels: x and y scaled apart
    assert w.length_mm == pytest.approx(1.0) and w.area_mm2 == pytest.approx(0.1)


def test_a_core_wholly_tumour_is_100_percent_and_half_of_it_50():
    core = box(0, 0, 2000, 400)
    (full,) = measure_cores([core], HALF, marks_tumour=box(-50, -50, 2100, 500))
    assert full.length_mm == pytest.approx(1.0) and full.area_mm2 == pytest.approx(0.2)
    assert full.marks.percent_involved == pytest.approx(100.0) and full.marks.tumour_length_mm == pytest.approx(1.0)
    (half,) = measure_cores([affinity.rotate(core, 60, origin=(0, 0))], HALF,
                            marks_tumour=affinity.rotate(box(0, 0, 1000, 400), 60, origin=(0, 0)))
    assert half.length_mm == pytest.approx(1.0) and half.marks.percent_involved == pytest.approx(50.0)


def test_discontinuous_foci_span_first_to_last_and_sum_apart():
    core = box(0, 0, 4000, 300)  # 2 mm at 0.5 µm/px
    foci = box(400, 0, 800, 300).union(box(2400, 0, 3200, 300))  # 0.2 mm and 0.4 mm, 1.6 mm apart end to end
    (c,) = measure_cores([core], HALF, marks_tumour=foci)
    assert c.marks.foci == 2
    assert c.marks.tumour_length_mm == pytest.approx(1.4) and c.marks.tumour_aggregate_mm == pytest.approx(0.6)
    assert c.marks.percent_involved == pytest.approx(70.0)
    (clear,) = measure_cores([core], HALF, marks_tumour=box(5000, 0, 6000, 300))  # tumour outside the core
    assert clear.marks.foci == 0 and clear.marks.percent_involved == 0.0


def test_a_curved_core_is_measured_along_its_curve():
    angles = np.linspace(0, 2 * math.pi / 3, 200)
    outer = [(3400 * math.cos(a), 3400 * math.sin(a)) for a in angles]
    inner = [(3000 * math.cos(a), 3000 * math.sin(a)) for a in angles[::-1]]
    arc = Polygon(outer + inner)  # a third of a ring, 400 px wide: its centre line is 3200 * 2 pi / 3 px long
    line = centre_line(arc)
    truth = 3200 * 2 * math.pi / 3
    assert abs(line.length - truth) / truth < 0.02
    straight = max(np.hypot(*np.subtract(arc.minimum_rotated_rectangle.exterior.coords[i],
                                         arc.minimum_rotated_rectangle.exterior.coords[i + 1])) for i in range(2))
    assert straight < 0.9 * truth  # a straight axis would have measured it short
    (c,) = measure_cores([arc], (1.0, 1.0), marks_tumour=arc)
    assert c.length_mm == pytest.approx(truth / 1000, rel=0.02) and c.marks.percent_involved == pytest.approx(100)


def test_the_networks_calls_are_measured_like_the_marks():
    probs = np.full((2, 10), np.nan, np.float32)
    probs[0, :] = [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.8, 0.8, 0.2]
    grid = ProbabilityGrid(probs=probs, origin=(0, 0), stride=400, tile_l0=400, tile_px=200, mpp=1.0,
                           slide_size=(4000, 800))
    called = tumour_of_grid(grid, 0.5)
    assert called.area == pytest.approx(5 * 400 * 400)
    (c,) = measure_cores([box(0, 0, 4000, 400)], HALF, network_tumour=called)
    assert c.network.foci == 2 and c.network.tumour_length_mm == pytest.approx(1.8)
    assert c.network.tumour_aggregate_mm == pytest.approx(1.0) and c.marks.foci == 0
    assert tumour_of_grid(grid, 0.95) is None


@pytest.fixture()
def core_image(tmp_path):
    """A plain PNG (no µm/px) with one pink core of 2000 x 400 px on glass and its marks."""
    rgb = np.full((1200, 3000, 3), 242, np.uint8)
    rng = np.random.default_rng(0)
    core = rng.normal((200, 120, 170), 12, (400, 2000, 3)).clip(0, 255).astype(np.uint8)
    rgb[400:800, 500:2500] = core
    path = tmp_path / "core.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    marks = [Annotation(geometry=box(400, 300, 2600, 900), class_name="Tumour"),
             Annotation(geometry=box(2600, 100, 2700, 300), class_name="Benign")]
    write_annotations(tmp_path / "core.geojson", marks, [TUMOUR, BENIGN])
    return path


def test_measure_from_the_command_line_on_a_real_image(core_image, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    refused = biopsia("measure", core_image)
    assert refused.returncode == 1 and "--slide-mpp" in refused.stderr and str(core_image) in refused.stderr
    done = biopsia("measure", core_image, "--slide-mpp", "0.5", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["mpp"] == [0.5, 0.5] and len(out["cores"]) == 1
    (core,) = out["cores"]
    assert core["length_mm"] == pytest.approx(1.0, abs=0.01) and core["area_mm2"] == pytest.approx(0.2, rel=0.03)
    assert core["marks"]["percent_involved"] == pytest.approx(100.0) and core["network"] is None
    tumour = next(m for m in out["marks"] if m["class_name"] == "Tumour")
    assert tumour["length_mm"] == pytest.approx(1.1) and tumour["area_mm2"] == pytest.approx(0.33)
    again = biopsia("measure", core_image)  # the resolution stated once is remembered
    assert again.returncode == 0 and "1 cores" in again.stdout and "100 %" in again.stdout


def test_a_prediction_of_another_slide_or_none_is_said(core_image, tmp_path):
    with open_slide(core_image) as reader:
        with pytest.raises(BiopsiaError, match="micrometres per pixel"):
            measure_slide(reader, [], None, slide_name=str(core_image))
        with pytest.raises(BiopsiaError, match="threshold"):
            measure_slide(reader, [], HALF, grid=object(), slide_name=str(core_image))
    done = biopsia("measure", core_image, "--slide-mpp", "0.5", "--prediction", tmp_path / "nowhere")
    assert done.returncode == 1 and "no such prediction folder" in done.stderr and "Traceback" not in done.stderr
