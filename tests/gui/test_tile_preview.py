"""The tile-grid preview: the Tiles dock's counts, the coloured grid over the slide, the per-slide setting."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from shapely.geometry import box

from core.annotations.formats import read_annotations
from core.annotations.model import Annotation
from core.project.model import Project
from core.slide import open_slide
from core.evaluation.compare import truth_for_grid
from core.inference.predict import ProbabilityGrid
from core.tiles.dataset import SlideSource, plan_dataset
from core.tiles.grid import BACKGROUND, NON_TUMOUR_TILE, REASONS, TUMOUR_TILE, TileSpec, plan_tiles
from core.tiles.labels import EXCLUDED, LOW_TISSUE, PEN, LabelRules
from core.tiles.tissue import detect_tissue
from gui.layers.tile_preview_layer import OUTLINE_MIN_PX, REASON_COLOURS

TIMEOUT = 15000


@pytest.fixture(scope="module")
def marks(synthetic_slide):
    return read_annotations(synthetic_slide.geojson_path).annotations


@pytest.fixture
def open_with_tiles(open_view):
    """``open_with_tiles(window, path)``: open a slide and raise the Tiles dock (it computes while looked at)."""

    def open_(win, path):
        view = open_view(win, path)
        win.tiles_dock.raise_()
        return view

    return open_


def settle(qtbot, dock):
    qtbot.waitUntil(dock.is_current, timeout=TIMEOUT)
    return dock.plan


def expected_plan(slide_path, annotations, fully_annotated):
    with open_slide(slide_path) as reader:
        return plan_tiles(reader, TileSpec(128, 1.0), detect_tissue(reader), annotations,
                          fully_annotated=fully_annotated, tumour_min=0.5, normal_max=0.05, tissue_min=0.5)


def shown_counts(dock) -> dict[str, int]:
    return {reason: int(dock.count_labels[reason].text().replace(",", "")) for reason in REASONS}


def test_counts_follow_marks_and_the_fully_annotated_setting(qtbot, window, make_window, synthetic_slide, marks,
                                                             open_with_tiles):
    view = open_with_tiles(window, synthetic_slide.slide_path)
    dock = window.tiles_dock
    assert not dock.fully_annotated.isChecked()  # the project default: only Benign marks say non-tumour
    view.apply_edit(view.annotations.replace_all(marks, "Import"))
    settle(qtbot, dock)
    partial = expected_plan(synthetic_slide.slide_path, marks, fully_annotated=False)
    assert shown_counts(dock) == partial.counts
    assert partial.counts["tumour"] > 0 and partial.counts["unlabelled"] > 0 and partial.counts["non_tumour"] == 0
    assert dock.total_labels["all"].text() == f"{len(partial):,}"
    assert dock.total_labels["kept"].text() == f"{partial.counts['tumour']:,}"

    dock.fully_annotated.click()  # a real click: the setting is the project's, saved at once
    settle(qtbot, dock)
    full = expected_plan(synthetic_slide.slide_path, marks, fully_annotated=True)
    assert shown_counts(dock) == full.counts
    assert full.counts["non_tumour"] == partial.counts["unlabelled"] > 0
    entry = view.document.entry
    assert Project.open(view.document.project.folder).slide(entry.id).settings.fully_annotated is True

    # a new Tumour mark over unmarked tissue: the counts follow (debounced, off the GUI thread)
    normal = np.flatnonzero(dock.plan.reason == NON_TUMOUR_TILE)
    i = normal[len(normal) // 2]
    x, y, side = int(dock.plan.l0_x[i]), int(dock.plan.l0_y[i]), dock.plan.tile_l0
    new_mark = Annotation(box(x - side, y - side, x + 2 * side, y + 2 * side), "Tumour")
    view.apply_edit(view.annotations.replace_all(list(marks) + [new_mark], "Draw"))
    settle(qtbot, dock)
    after = expected_plan(synthetic_slide.slide_path, list(marks) + [new_mark], fully_annotated=True)
    assert shown_counts(dock) == after.counts
    assert after.counts["tumour"] > full.counts["tumour"]

    # the setting belongs to the slide: another window shows it ticked
    other = make_window()
    open_with_tiles(other, synthetic_slide.slide_path)
    assert other.tiles_dock.fully_annotated.isChecked()
    other.close()


def blend(under: tuple[int, int, int], reason: str) -> np.ndarray:
    """``under`` with a tile of ``reason`` drawn over it (source-over)."""
    r, g, b, a = REASON_COLOURS[reason]
    return np.asarray(under, float) * (1 - a / 255) + np.array([r, g, b], float) * a / 255


def pixel(image, x: float, y: float) -> tuple[int, int, int]:
    c = image.pixelColor(int(round(x)), int(round(y)))
    return c.red(), c.green(), c.blue()


def test_grid_is_painted_in_the_reason_colours(qtbot, window, synthetic_slide, marks, open_with_tiles):
    view = open_with_tiles(window, synthetic_slide.slide_path)
    dock = window.tiles_dock
    view.apply_edit(view.annotations.replace_all(marks, "Import"))
    dock.fully_annotated.click()
    plan = settle(qtbot, dock)
    view.annotation_layer.visible = False  # compare the grid with the bare slide
    qtbot.waitUntil(lambda: view.slide_layer.is_sharp(), timeout=TIMEOUT)
    assert not view.tile_preview_layer.visible
    bare = view.grab().toImage()
    dock.show_grid.click()
    assert view.tile_preview_layer.visible and window.layers_dock.rows["Tile grid"][0].isChecked()
    shown = view.grab().toImage()
    assert view.tile_preview_layer.outlined_count > 0  # tiles are ~55 px on screen: outlined
    layers_check = window.layers_dock.rows["Tile grid"][0]
    layers_check.click()  # hidden from the Layers dock: the Tiles dock follows
    assert not view.tile_preview_layer.visible and not dock.show_grid.isChecked()
    layers_check.click()
    assert dock.show_grid.isChecked()

    def centre(i):
        return view.viewport.l0_to_screen(plan.l0_x[i] + plan.tile_l0 / 2, plan.l0_y[i] + plan.tile_l0 / 2)

    # the most covered tumour tile lies inside a known tumour polygon; it turns crimson
    tumour = np.flatnonzero(plan.reason == TUMOUR_TILE)
    i = tumour[np.argmax(plan.tumour_fraction[tumour])]
    sx, sy = centre(i)
    truth = [p for p in synthetic_slide.tumour_polygons if p.contains(box(*(
        plan.l0_x[i] + plan.tile_l0 * 0.4, plan.l0_y[i] + plan.tile_l0 * 0.4,
        plan.l0_x[i] + plan.tile_l0 * 0.6, plan.l0_y[i] + plan.tile_l0 * 0.6)))]
    assert truth, "the chosen tile should lie in the known tumour"
    under = pixel(bare, sx, sy)
    assert np.abs(np.array(pixel(shown, sx, sy)) - blend(under, "tumour")).max() <= 4
    assert pixel(shown, sx, sy)[0] > pixel(shown, sx, sy)[1] + 40  # visibly red

    # non-tumour tissue turns teal, background glass stays nearly as it was, never red
    j = np.flatnonzero(plan.reason == NON_TUMOUR_TILE)[0]
    assert np.abs(np.array(pixel(shown, *centre(j))) - blend(pixel(bare, *centre(j)), "non_tumour")).max() <= 4
    k = np.flatnonzero(plan.reason == BACKGROUND)[0]
    glass, tinted = np.array(pixel(bare, *centre(k))), np.array(pixel(shown, *centre(k)))
    assert np.abs(tinted - blend(glass, "background")).max() <= 4
    assert np.abs(tinted - glass).max() <= 25 and not tinted[0] > tinted[1] + 20

    # small tiles (6 px on screen): the grid is one scaled image, not outlined, still red at the tumour
    l0_point = (plan.l0_x[i] + plan.tile_l0 / 2, plan.l0_y[i] + plan.tile_l0 / 2)
    dock.tile_px.setValue(16)
    small = settle(qtbot, dock)
    assert small.tile_l0 == 32 and len(small) == (3072 // 32) * (4096 // 32)
    assert small.tile_l0 * view.viewport.scale < OUTLINE_MIN_PX
    far = view.grab().toImage()
    assert view.tile_preview_layer.outlined_count == 0
    red, green, _ = pixel(far, *view.viewport.l0_to_screen(*l0_point))
    assert red > green + 40


def test_slide_without_resolution_says_so_then_uses_the_entered_one(qtbot, window, tmp_path, synthetic_slide,
                                                                      open_with_tiles):
    first = open_with_tiles(window, synthetic_slide.slide_path)
    counts = settle(qtbot, window.tiles_dock).counts
    rng = np.random.default_rng(3)
    image = np.full((900, 1200, 3), 240, np.uint8)
    image[200:700, 300:900] = rng.integers(120, 200, (500, 600, 3))
    png = tmp_path / "scan.png"
    cv2.imwrite(str(png), image)
    view = open_with_tiles(window, png)
    dock = window.tiles_dock
    assert view.mpp is None
    settle(qtbot, dock)
    assert "micrometres per pixel" in dock.error and "scan.png" in dock.error
    assert "Set resolution" in dock.status.text()
    assert dock.plan is None and view.tile_preview_layer.plan is None
    assert all(label.text() == "–" for label in dock.count_labels.values())
    view.grab()  # painting without a plan is fine

    # each tab keeps its own grid: back on the first slide its counts return at once, without the error
    window.tabs.setCurrentWidget(first)
    assert dock.is_current() and dock.error is None and shown_counts(dock) == counts
    window.tabs.setCurrentWidget(view)
    assert dock.is_current() and "micrometres per pixel" in dock.status.text()

    window.set_slide_mpp(view, (0.5, 0.5))  # entered by the user: tiles of 256 slide pixels
    plan = settle(qtbot, dock)
    assert dock.error is None and plan.tile_l0 == 256 and plan.grid_shape == (-(-900 // 256), -(-1200 // 256))
    assert shown_counts(dock) == plan.counts


def test_the_preview_labels_tiles_as_the_dataset_and_the_comparison(qtbot, window, synthetic_slide, marks,
                                                                    open_with_tiles):
    view = open_with_tiles(window, synthetic_slide.slide_path)
    dock = window.tiles_dock
    l0_w, l0_h = view.reader.dimensions
    x0, y0, x1, y1 = next(m for m in marks if m.class_name == "Tumour").bounds
    exclude = Annotation(box(x0 - 300, y0 - 300, (x0 + x1) / 2 + 29, (y0 + y1) / 2 + 13), "Exclude")  # a quarter
    shown = list(marks) + [exclude]
    view.apply_edit(view.annotations.replace_all(shown, "Import"))
    dock.tumour_min.setValue(0.7)  # away from the defaults: the thresholds must reach every caller
    dock.normal_max.setValue(0.2)
    plan = settle(qtbot, dock)

    source = SlideSource(synthetic_slide.slide_path, "slide", shown, fully_annotated=False, declared=True)
    dataset = plan_dataset([source], dock.spec(), split="random", labelling=dock.thresholds()).plans[0]
    np.testing.assert_array_equal(plan.label, dataset.label)
    np.testing.assert_array_equal(plan.reason, dataset.reason)
    assert {TUMOUR_TILE, EXCLUDED} <= set(plan.reason.tolist())
    rows, cols = plan.grid_shape
    grid = ProbabilityGrid(probs=np.zeros((rows, cols), np.float32), origin=(0, 0), stride=plan.tile_l0,
                           tile_l0=plan.tile_l0, tile_px=plan.spec.tile_px, mpp=plan.spec.mpp, slide_size=(l0_w, l0_h))
    truth = truth_for_grid(grid, shown, fully_annotated=False, rules=LabelRules(**dock.thresholds())).ravel()
    by_marks = ~np.isin(plan.reason, (BACKGROUND, LOW_TISSUE, PEN))
    np.testing.assert_array_equal(truth[by_marks], plan.label[by_marks])
