#!/usr/bin/env python3
"""Render the README's prediction pictures offscreen: the demo case side by side with the demo model's
heatmap, the Evaluation panel with the disagreement map, and the window at 1280 x 800 and 1920 x 1080
(single view and side by side, with the heatmap). Uses (and, the first time, makes) the demo slide and its
saved prediction in your default project.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screens.py

``docs/screens.py drafts GRID.npz SCRATCH`` renders drafts.jpg and cores.jpg (issues 15 and 12) from a saved
demo prediction into a scratch project folder. ``docs/screens.py retrained SCRATCH`` renders retrained.jpg: a
synthetic slide marked with its truth, Model ▸ Retrain with new marks from the demo model (2 epochs), and the
heatmap of the retrained model that follows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

from core.demo import ensure_demo_slide  # noqa: E402
from gui.app import _open_demo, ensure_app, wait_until  # noqa: E402

IMAGES = ROOT / "docs" / "images"


def settle(view, seconds: float = 1.0) -> None:
    wait_until(lambda: False, seconds)
    view.zoom_to_fit()
    wait_until(lambda: view.slide_layer.is_sharp(), 60)
    wait_until(lambda: False, 0.5)


def save(window, name: str) -> None:
    from gui.image_files import save_image

    path = save_image(window.grab_window(False), IMAGES / name, "JPG", 88)
    print(path)


def main() -> None:
    ensure_app(offscreen=True)
    from gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1900, 1050)
    window.show()
    _open_demo(window, ensure_demo_slide())
    wait_until(lambda: window.current_view() is not None, 60)
    view = window.current_view()
    # the synthetic truth marks every tumour (set on first opening; also for demo slides opened before)
    view.document.project.update_settings(view.document.entry.id, fully_annotated=True)
    prediction = view.document.prediction  # the per-slide document holds it (core/project/document.py)
    wait_until(lambda: prediction.grid is not None and prediction.grid.complete and not window.prediction_dock.running,
               900)
    view.heatmap_layer.set_mode("smooth")
    view.heatmap_layer.set_outlines(True)
    settle(view)
    save(window, "side-by-side.jpg")

    window.set_side_by_side(False)
    view = window.current_view()
    view.annotation_layer.fill = False  # marks as outlines over the disagreement map
    view.heatmap_layer.set_mode("tiles")
    window.evaluation_dock.show()
    window.evaluation_dock.raise_()
    wait_until(lambda: False, 3.0)
    window.set_overlay("disagreement")  # one overlay at a time: the disagreement over the marks' outlines
    settle(view)
    save(window, "evaluation.jpg")
    window.close()
    for size in SIZES:
        screen_sizes(size)


#: The window sizes the README shows.
SIZES = ((1280, 800), (1920, 1080))


def screen_sizes(size: tuple[int, int]) -> None:
    """The demo at ``size``: side by side (heatmap | marks), then the single view with the heatmap."""
    from gui.main_window import MainWindow

    window = MainWindow()
    window.resize(*size)
    window.show()
    _open_demo(window, ensure_demo_slide())
    wait_until(lambda: window.current_view() is not None, 60)
    view = window.current_view()
    prediction = view.document.prediction
    wait_until(lambda: prediction.grid is not None and prediction.grid.complete and not window.prediction_dock.running,
               900)
    window.set_side_by_side(True)
    settle(view)
    save(window, f"window-{size[0]}-side-by-side.jpg")
    window.set_side_by_side(False)
    window.set_overlay("heatmap")
    settle(view)
    save(window, f"window-{size[0]}-single.jpg")
    window.close()


def drafts_and_cores(grid_path: Path, folder: Path) -> None:
    """Drafts, the ruler and the cores tables on the demo case, in a scratch project in ``folder`` (the default project
    is left alone): the demo model's calls proposed as drafts, half accepted (filled) beside the rest (dashed),
    a ruler along a core, and the per-core table in the Annotations and Evaluation panels.

    ``grid_path``: the demo slide's ``grid.npz`` from ``biopsia predict --model resources/demo-model``.
    """
    from core.inference.predict import ProbabilityGrid
    from core.project.document import PredictionState
    from core.project.model import Project
    from gui.main_window import MainWindow
    from gui.measurements import Measurement

    ensure_app(offscreen=True)
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.use_project(Project.create(folder), open_slides=False)
    window.open_slide(ensure_demo_slide())
    wait_until(lambda: window.current_view() is not None, 60)
    view = window.current_view()
    grid = ProbabilityGrid.load(grid_path)
    state = view.document.prediction
    state.grid, state.state = grid, PredictionState.SAVED
    view.heatmap_layer.set_grid(grid)
    window.prediction_dock.grid_changed.emit(view)
    window.drafts.propose()
    wait_until(lambda: len(view.annotations) > 0, 60)
    drafts = sorted(view.annotations, key=lambda a: -a.area_l0)
    view.selection = {d.id for d in drafts[::2]}  # every other one accepted, the rest still drafts
    window.drafts.accept_selected()
    view.selection = ()
    window.set_overlay("marks")
    from shapely.ops import unary_union

    x0, y0, x1, y1 = unary_union([d.geometry for d in drafts[:2]]).bounds  # one accepted, one draft
    cores = window.core_measurer
    wait_until(lambda: bool(cores.cores) and cores._worker is None, 120)
    mx0, my0, mx1, my1 = drafts[0].bounds  # a ruler across the largest accepted mark
    view.measurement_layer.add(Measurement(((mx0, (my0 + my1) / 2), (mx1, (my0 + my1) / 2))))
    view.set_viewport(view.viewport.centred_on((x0 + x1) / 2, (y0 + y1) / 2, view.viewport.scale))
    window.annotate.dock.show()
    window.annotate.dock.raise_()
    wait_until(lambda: False, 1.0)
    scale = min(view.width() / (1.3 * (x1 - x0)), view.height() / (1.3 * (y1 - y0)))
    view.set_viewport(view.viewport.centred_on((x0 + x1) / 2, (y0 + y1) / 2, scale))
    wait_until(lambda: view.slide_layer.is_sharp(), 60)
    wait_until(lambda: False, 0.5)
    save(window, "drafts.jpg")
    window.evaluation_dock.show()
    window.evaluation_dock.raise_()
    settle(view, 2.0)
    save(window, "cores.jpg")
    window.close()


def retrained(folder: Path) -> None:
    """The window after Retrain with new marks: the retrained model chosen, its heatmap over the marks."""
    from core.annotations.model import Annotation
    from core.annotations.store import AnnotationStore
    from core.demo import DEMO_MODEL
    from core.project.model import Project
    from core.synth import write_synthetic_slide
    from gui.main_window import MainWindow

    ensure_app()
    folder.mkdir(parents=True, exist_ok=True)
    synth = write_synthetic_slide(folder / "case.tiff", seed=41, width=8192, height=6144, mpp=0.5)
    project = Project.create(folder / "project", "Retrained")
    entry = project.add_slide(synth.slide_path)
    project.save_annotations(entry.id, AnnotationStore([Annotation(p, "Tumour") for p in synth.tumour_polygons]))
    project.update_settings(entry.id, fully_annotated=True)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    window.use_project(project)
    wait_until(lambda: bool(window.views()), 60)
    view = window.views()[0]
    window.prediction_dock.set_model(DEMO_MODEL)
    window.actions["predict"].trigger()  # the Prediction panel in front
    window.retrain.epochs = 2
    window.retrain.start()
    wait_until(lambda: not window.retrain.running, 600)
    wait_until(lambda: False, 1.0)
    wait_until(lambda: not window.prediction_dock.running, 600)
    settle(view)
    print(window.retrain.report)
    save(window, "retrained.jpg")
    window.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["drafts"]:  # docs/screens.py drafts GRID.npz SCRATCH_FOLDER
        drafts_and_cores(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:2] == ["retrained"]:  # docs/screens.py retrained SCRATCH_FOLDER
        retrained(Path(sys.argv[2]))
    else:
        main()
