"""One labelling rule set: a dataset's labels, the comparison's truth and the Tiles preview agree on one grid."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import box

import cli.tiles
from cli.app import build_parser
from core.annotations.formats import read_annotations
from core.annotations.model import Annotation
from core.evaluation.compare import truth_for_grid
from core.inference.predict import ProbabilityGrid
from core.slide import open_slide
from core.tiles.dataset import SlideSource, plan_dataset
from core.tiles import grid
from core.tiles.grid import TileSpec
from core.tiles.labels import (AMBIGUOUS, BACKGROUND, DROPPED, EXCLUDED, LOW_TISSUE, NON_TUMOUR_TILE, PEN,
                               TUMOUR_TILE, UNLABELLED, LabelRules, label_tiles)
from core.tiles.preview import compute_plan
from core.tiles.tissue import detect_tissue

SPEC = TileSpec(128, 1.0)
#: Thresholds away from the defaults, so that a copy with a default hard-coded shows.
ODD_RULES = LabelRules(tumour_min=0.7, normal_max=0.2, benign_min=0.3, exclude_max=0.3, tissue_min=0.4)


@pytest.fixture(scope="module")
def marked(synthetic_slide):
    """The synthetic slide's Tumour marks plus a Benign and an Exclude region that cut across tiles."""
    marks = list(read_annotations(synthetic_slide.geojson_path).annotations)
    with open_slide(synthetic_slide.slide_path) as reader:
        l0_w, l0_h = reader.dimensions
    marks.append(Annotation(box(0.1 * l0_w, 0.55 * l0_h, 0.6 * l0_w, 0.95 * l0_h), "Benign"))
    marks.append(Annotation(box(0.45 * l0_w + 37, 0.2 * l0_h + 11, 0.75 * l0_w, 0.6 * l0_h), "Exclude"))
    return synthetic_slide.slide_path, marks


def grid_like(plan, slide_size) -> ProbabilityGrid:
    rows, cols = plan.grid_shape
    return ProbabilityGrid(probs=np.full((rows, cols), 0.5, np.float32), origin=(0, 0), stride=plan.tile_l0,
                           tile_l0=plan.tile_l0, tile_px=plan.spec.tile_px, mpp=plan.spec.mpp,
                           slide_size=tuple(slide_size))


@pytest.mark.parametrize("fully_annotated", [True, False])
@pytest.mark.parametrize("rules", [LabelRules(), ODD_RULES], ids=["default", "odd"])
def test_dataset_labels_comparison_truth_and_preview_agree(marked, fully_annotated, rules):
    path, marks = marked
    source = SlideSource(path, "slide", marks, fully_annotated=fully_annotated, declared=True)
    dataset = plan_dataset([source], SPEC, split="random", labelling=rules.as_dict())
    plan = dataset.plans[0]
    with open_slide(path) as reader:
        size = reader.dimensions
        preview = compute_plan(reader, None, SPEC, marks, None, fully_annotated, rules).plan
    truth = truth_for_grid(grid_like(plan, size), marks, fully_annotated=fully_annotated, rules=rules).ravel()

    np.testing.assert_array_equal(preview.label, plan.label)
    np.testing.assert_array_equal(preview.reason, plan.reason)
    # where the tissue does not decide, the comparison's truth is the dataset's label
    by_marks = ~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN))
    np.testing.assert_array_equal(truth[by_marks], plan.label[by_marks])
    assert set(plan.reason[by_marks].tolist()) >= {TUMOUR_TILE, EXCLUDED}
    assert NON_TUMOUR_TILE in plan.reason[by_marks] or UNLABELLED in plan.reason[by_marks]
    assert np.all(truth[np.isin(plan.reason, (EXCLUDED, AMBIGUOUS, UNLABELLED))] == DROPPED)
    # the kept tiles of the dataset are exactly the plan's labelled ones
    np.testing.assert_array_equal(np.sort(dataset.index), plan.kept)


def test_exclude_limit_is_the_rules_not_a_constant(marked):
    """A tile a little under Exclude marks is unknown at the default limit, and labelled at a looser one."""
    path, marks = marked
    with open_slide(path) as reader:
        size = reader.dimensions
    exclude = [m for m in marks if m.class_name == "Exclude"][0]
    x0, y0, _, _ = exclude.bounds
    tile = 256
    l0_x = np.array([int(x0) - tile + 40], np.int64)  # 40 of 256 px under the mark: 16 %
    l0_y = np.array([int(y0) + tile], np.int64)
    default = label_tiles(marks, l0_x, l0_y, tile, size, True)
    loose = label_tiles(marks, l0_x, l0_y, tile, size, True, LabelRules(exclude_max=0.5))
    assert default.reason[0] == EXCLUDED and loose.reason[0] != EXCLUDED
    grid = ProbabilityGrid(probs=np.zeros((1, 1), np.float32), origin=(int(l0_x[0]), int(l0_y[0])), stride=tile,
                           tile_l0=tile, tile_px=128, mpp=1.0, slide_size=tuple(size))
    assert truth_for_grid(grid, marks)[0, 0] == DROPPED
    assert truth_for_grid(grid, marks, rules=LabelRules(exclude_max=0.5))[0, 0] == loose.label[0]


def test_without_tissue_only_the_marks_decide(marked):
    path, marks = marked
    with open_slide(path) as reader:
        size = reader.dimensions
    l0_x, l0_y = np.meshgrid(np.arange(0, size[0] - 256, 256), np.arange(0, size[1] - 256, 256))
    marks_only = label_tiles(marks, l0_x.ravel(), l0_y.ravel(), 256, size, True)
    assert not np.isin(marks_only.reason, (BACKGROUND, LOW_TISSUE, PEN)).any()
    no_tissue = label_tiles(marks, l0_x.ravel(), l0_y.ravel(), 256, size, True,
                            tissue_fraction=np.zeros(l0_x.size), pen_fraction=np.zeros(l0_x.size))
    assert np.all(no_tissue.reason == BACKGROUND) and np.all(no_tissue.label == DROPPED)


def test_the_default_thresholds_have_one_owner(marked, monkeypatch):
    """plan_tiles and the dataset command take their defaults from LabelRules: changing it changes both."""
    args = build_parser().parse_args(["dataset", "slide.svs", "--out", "out"])
    defaults = LabelRules()
    assert (args.tumour_min, args.normal_max, args.tissue_min) == (defaults.tumour_min, defaults.normal_max,
                                                                  defaults.tissue_min)
    assert cli.tiles.RULES == defaults
    path, marks = marked
    with open_slide(path) as reader:
        tissue = detect_tissue(reader)
        plain = grid.plan_tiles(reader, SPEC, tissue, marks)
        monkeypatch.setattr(grid, "LabelRules", lambda: ODD_RULES)
        moved = grid.plan_tiles(reader, SPEC, tissue, marks)
        odd = grid.plan_tiles(reader, SPEC, tissue, marks, **ODD_RULES.as_dict())
    assert np.array_equal(moved.reason, odd.reason) and not np.array_equal(plain.reason, odd.reason)
