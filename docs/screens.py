#!/usr/bin/env python3
"""Render the README's prediction pictures offscreen: the demo case side by side with the demo model's
heatmap, the Evaluation panel with the disagreement map, and the window at 1280 x 800 and 1920 x 1080
(single view and side by side, with the heatmap). Uses (and, the first time, makes) the demo slide and its
saved prediction in your default project.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screens.py
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


#: The window sizes issue 12 asks the README to show.
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


if __name__ == "__main__":
    main()
