"""Starting the GUI: the interactive app, and offscreen window screenshots.

The CLI imports this module for every subcommand, so Qt, the window and the heavier core modules are
imported inside the functions that make a window: PyQt5's widgets and the window's modules take about
0.7 s to import (python -X importtime), which `biopsia dataset` and the other headless commands skip.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import sys
import time
from pathlib import Path
from typing import Callable

from core.demo import DEMO_MODEL, demo_slide_exists, ensure_demo_slide
from core.threads import enable_background_priority
from core.errors import BiopsiaError
from core.paths import cache_dir
from core.view.memory import tune_allocator


def has_display() -> bool:
    """Whether a window can be shown (an X or Wayland display, or a platform chosen explicitly)."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return os.environ["QT_QPA_PLATFORM"] != "offscreen"
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


_APP = None  # the QApplication must outlive every caller's local reference


def ensure_app(offscreen: bool = False):
    """The QApplication, created on first use."""
    global _APP
    if offscreen:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5.QtCore import QTimer, Qt
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        tune_allocator()
        enable_background_priority()  # the window's thread is served first when the cores are busy
        QApplication.setAttribute(Qt.AA_EnableHighDpiScaling, True)
        QApplication.setAttribute(Qt.AA_UseHighDpiPixmaps, True)
        app = QApplication(sys.argv[:1])
        app.setApplicationName("Biopsia")
        app.setOrganizationName("Biopsia")
        from gui.icons import icon

        app.setWindowIcon(icon("biopsia"))
    _APP = app
    return app


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Run the event loop until ``condition()`` holds or ``timeout`` seconds pass."""
    from PyQt5.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        QApplication.processEvents()
        time.sleep(0.005)
    return True


def open_and_wait(window, path: str | os.PathLike, timeout: float = 60.0):
    """Open ``path`` in ``window`` and wait for its tab; raises the opening error."""
    outcome: dict = {}
    window.slide_opened.connect(lambda view: outcome.setdefault("view", view))
    window.open_failed.connect(lambda p, msg: outcome.setdefault("error", msg))
    window.open_slide(path)
    if not wait_until(lambda: bool(outcome), timeout):
        raise BiopsiaError(f"{path}: opening took longer than {timeout:.0f} s")
    if "error" in outcome:
        raise BiopsiaError(outcome["error"])
    return outcome["view"]


def render_screenshot(slide: str | os.PathLike, out: str | os.PathLike, size: tuple[int, int] = (1600, 1000),
                      mag: float | None = None, include_associated: bool = False, show_grid: bool = False,
                      timeout: float = 60.0, annotations: str | os.PathLike | None = None,
                      on_warning: Callable[[str], None] | None = None) -> Path:
    """Render the main window with ``slide`` offscreen, wait until sharp, save a PNG.

    Label and macro images stay out unless ``include_associated``. Marks from ``annotations``
    are shown beside the slide's saved ones without being saved into its project. Tiles that
    could not be read are drawn hatched, and ``on_warning`` is told how many and why.
    """
    with _offscreen_window(size) as window:
        view = open_and_wait(window, slide, timeout)
        if annotations is not None:
            _show_unsaved(view, annotations)
        if show_grid:
            window.actions["grid"].setChecked(True)
        if include_associated:
            window.associated_dock.show()
        wait_until(lambda: view.width() > 1, 5)
        if mag is not None and not view.set_magnification(mag):
            raise BiopsiaError(f"{slide}: cannot show {mag:g}x, the slide states neither objective power nor µm/px")
        wait_until(lambda: view.slide_layer.overview is not None and view.slide_layer.is_sharp(), timeout)
        wait_until(lambda: False, 0.05)  # let the last repaints land
        saved = _save_window(window, Path(out), include_associated)
        loader = view.slide_layer.loader
        failed = {**loader.partly_failed, **loader.failed}
        if failed and on_warning is not None:
            first = next(iter(failed.values()))
            on_warning(f"{slide}: {len(failed)} tile(s) could not be read in whole or in part, and their damaged "
                       f"parts are drawn hatched ({first})")
        return saved


@contextmanager
def _offscreen_window(size: tuple[int, int]):
    """A main window of ``size``, shown (offscreen without a display), closed afterwards."""
    ensure_app(offscreen=not has_display())
    from gui.main_window import MainWindow

    window = MainWindow()
    window.resize(*size)
    window.show()
    try:
        yield window
    finally:
        window.close()
        window.deleteLater()
        # destroyed now, while the application exists: left to the interpreter's exit, a widget can
        # outlive the QApplication and crash in its destructor
        from PyQt5.QtCore import QCoreApplication, QEvent

        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)


def _save_window(window, out: Path, include_associated: bool = False) -> Path:
    from gui.image_files import save_image

    out.parent.mkdir(parents=True, exist_ok=True)
    return save_image(window.grab_window(include_associated), out, "PNG")


def _show_unsaved(view, path) -> None:
    """Show marks from a file on ``view`` through a store of its own, so its project file is not touched."""
    from core.annotations import AnnotationStore
    from core.annotations.formats import read_annotations

    extra = read_annotations(path)
    known = {c.name for c in view.annotations.classes}
    classes = view.annotations.classes + tuple(c for c in extra.classes if c.name not in known)
    view.annotations = AnnotationStore(view.annotations.annotations() + list(extra.annotations), classes)


def run_gui(paths: list[str], demo: bool = False, progress: Callable[[int, int], None] | None = None,
            project: str | None = None) -> int:
    """The interactive application. Without a display it saves a screenshot instead and says where.

    ``progress`` reports the demo slide's generation (first run only) when there is no window to show it.
    """
    if not has_display():
        if not paths and not demo_slide_exists():
            print("Making the demo slide (first run only)…", file=sys.stderr)
        slide = paths[0] if paths else str(ensure_demo_slide(progress))
        out = cache_dir() / "screenshots" / f"{Path(slide).stem}.png"
        if demo and not paths:
            print("Predicting the demo slide with the demo model…", file=sys.stderr)
            render_demo_screenshot(Path(slide), out)
        else:
            render_screenshot(slide, out, mag=None)
        print(f"No display found: rendered the window offscreen to {out}")
        return 0
    app = ensure_app()
    from gui.main_window import MainWindow
    from gui.worker import Worker

    window = MainWindow()
    window.show()
    if project:
        window.open_project(project)
    window.open_paths(paths)
    if demo:
        # Generated off the GUI thread on first use, with progress in the status bar.
        worker = Worker(ensure_demo_slide)
        worker.progress.connect(lambda done, total: window.statusBar().showMessage(
            f"Making the demo slide (first run only): {100 * done // max(total, 1)}%"))
        worker.finished.connect(lambda path: _open_demo(window, path))
        worker.failed.connect(lambda err: window.show_error("Could not make the demo slide", str(err)))
        worker.start()
    return app.exec_()


def _open_demo(window, path: Path) -> None:
    """Open the demo slide side by side with the demo model's heatmap.

    The first time, its known tumour regions become its marks (undoable) and the demo model predicts
    the slide in the background (the heatmap fills in); later the saved prediction is shown at once.
    """
    from PyQt5.QtCore import QTimer

    from core.project.document import PredictionState

    def first_time(view) -> None:
        if view.reader.path != Path(path):
            return
        doc = view.document
        if len(view.annotations) == 0 and not doc.session.path.exists():
            window.annotation_files.import_file(view, Path(path).with_suffix(".geojson"))
            # the synthetic truth marks every tumour: unmarked tissue is non-tumour
            doc.project.update_settings(doc.entry.id, fully_annotated=True)
        if (DEMO_MODEL / "model.json").is_file():
            window.prediction_dock.set_model(DEMO_MODEL)
            window.prediction_dock.show()
            window.prediction_dock.raise_()
            window.set_side_by_side(True)
            QTimer.singleShot(0, view.zoom_to_fit)  # once the panes have their sizes

    def predict_if_needed(view) -> None:
        dock = window.prediction_dock
        prediction = view.document.prediction
        if (view.reader.path == Path(path) and prediction.looked_up
                and prediction.state == PredictionState.NONE and prediction.grid is None and not dock.running
                and dock.model_path() == DEMO_MODEL):
            dock.start()

    window.slide_opened.connect(first_time)
    window.prediction_dock.grid_changed.connect(predict_if_needed)
    window.open_slide(path)


def render_demo_screenshot(path: Path, out: Path, size: tuple[int, int] = (1600, 1000), timeout: float = 600.0) -> Path:
    """The demo window offscreen, after its heatmap is complete: what `make run` shows without a display."""
    with _offscreen_window(size) as window:
        _open_demo(window, path)
        if not wait_until(lambda: window.current_view() is not None, 60):
            raise BiopsiaError(f"{path}: the demo slide did not open")
        from core.project.document import PredictionState  # as the window's modules: loaded with it

        view = window.current_view()
        prediction = view.document.prediction
        done = wait_until(lambda: prediction.state in (PredictionState.SAVED, PredictionState.DONE)
                          and prediction.grid is not None and not window.prediction_dock.running, timeout)
        if not done:
            raise BiopsiaError(f"{path}: the demo prediction did not finish in {timeout:.0f} s")
        wait_until(lambda: view.slide_layer.overview is not None and view.slide_layer.is_sharp(), 60)
        wait_until(lambda: False, 0.3)
        return _save_window(window, out)
