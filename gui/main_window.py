"""The main window: slide tabs, docks, menus, status bar.

Its rooms: `gui.open_slides` (opening, one document per slide, closing), `gui.window_opening` (the open
and project dialogs, recent files), `gui.window_status` (the status bar), `gui.window_exports` (PNG
exports) and `gui.window_help`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QDragEnterEvent, QDropEvent, QImage
from PyQt5.QtWidgets import QInputDialog, QLabel, QMainWindow, QMessageBox, QTabWidget

from core.errors import BiopsiaError
from core.project.model import Project, default_project
from core.project.document import SlideDocument
from core.project.mpp import MppSource, remember_mpp
from core.project.slide_settings import SlideSettingsStore
from gui.actions import build_actions, build_menus, build_toolbar
from gui.annotation_files import AnnotationFiles, confirm_discard
from gui.annotation_session import OpenedSlide
from gui.annotate import AnnotationController
from gui.core_measures import CoreMeasurer, CoresTable
from gui.cohort_run import CohortRun
from gui.retrain import RetrainRun
from gui.drafts import DraftController
from gui.docks.associated_dock import AssociatedDock
from gui.docks.evaluation_dock import EvaluationDock
from gui.docks.info_dock import InfoDock
from gui.docks.layers_dock import LayersDock
from gui.docks.prediction_dock import PredictionDock
from gui.docks.tiles_dock import TilesDock
from gui.icons import icon
from gui.open_slides import OpenSlides
from gui.overlay_choice import NAMES, OVERLAYS, show_overlay
from gui.plot_style import release_plots
from gui.settings import Preferences
from gui.slide_view import SlideView
from gui.split_view import SplitView, slide_view_of, split_tab, unsplit_tab
from gui.tile_loader import TileMemory
from gui.window_exports import export_view_dialog, screenshot_dialog
from gui.window_help import show_about, show_controls
from gui.window_opening import fill_recent_menu, new_project_dialog, open_dialog, open_project_dialog
from gui.window_status import SlideStatus
from gui.worker import Worker

#: The panels' column: this share of the window's width, within these bounds (px). At 1280 px each pane of the
#: side-by-side view then keeps over 35 % of the window; at 1920 px the slide area keeps over 70 %.
DOCK_SHARE, DOCK_MIN_PX, DOCK_MAX_PX = 0.25, 280, 460


def dock_width(window_width: int) -> int:
    """Width of the panels' column for a window ``window_width`` px wide."""
    return int(min(max(window_width * DOCK_SHARE, DOCK_MIN_PX), DOCK_MAX_PX))


class MainWindow(QMainWindow):
    """Biopsia's window. ``slide_opened(view)`` and ``open_failed(path, message)`` report opening."""

    slide_opened = pyqtSignal(object)
    open_failed = pyqtSignal(str, str)

    def __init__(self, prefs: Preferences | None = None, settings_store: SlideSettingsStore | None = None):
        super().__init__()
        self.prefs = prefs or Preferences()
        self.slide_settings = settings_store or SlideSettingsStore()
        self.tile_memory = TileMemory(self.prefs.cache_megabytes * 1024 * 1024)
        self.cache = self.tile_memory.cache
        self.project: Project | None = None  # None: slides open into the user's default project
        self.errors: list[str] = []  # every error shown, newest last (for the log and tests)
        # the open slides' documents, opened off the GUI thread (the window owns them, the docks read them)
        self.slides = OpenSlides(self.tile_memory, self.slide_settings, self.working_project, self.prefs.loader_threads, self)
        self.slides.opened.connect(self._on_opened)
        self.slides.failed.connect(self._on_open_failed)
        self.slides.save_failed.connect(self._on_save_failed)
        self.slides.saved.connect(self._on_saved)
        self.training_panel = None  # made on first use (it loads MXNet)
        self.setWindowTitle("Biopsia")
        self.setWindowIcon(icon("biopsia"))
        self.setAcceptDrops(True)
        self.resize(1600, 1000)

        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.welcome = QLabel(
            "<h2>Biopsia</h2><p>Open a whole-slide image with <b>File ▸ Open</b> (Ctrl+O),"
            " or drop slide files here.</p>"
        )
        self.welcome.setAlignment(Qt.AlignCenter)
        self.tabs.addTab(self.welcome, "Welcome")
        self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().RightSide, None)
        self.setCentralWidget(self.tabs)

        self.info_dock = InfoDock(self)
        self.layers_dock = LayersDock(self)
        self.associated_dock = AssociatedDock(self)
        self.addDockWidget(Qt.RightDockWidgetArea, self.info_dock)
        self.addDockWidget(Qt.RightDockWidgetArea, self.layers_dock)
        self.addDockWidget(Qt.RightDockWidgetArea, self.associated_dock)
        self.associated_dock.hide()  # privacy: label and macro only when asked for

        self.actions = build_actions(self)
        menus = build_menus(self, self.actions)
        self.recent_menu, self.docks_menu, self.model_menu = menus.recent, menus.docks, menus.model
        self.edit_menu, self.tools_menu = menus.edit, menus.tools  # the annotation controller fills these
        self.annotation_files = AnnotationFiles(self)
        self.annotation_files.add_to_menu(menus.annotations)
        toolbar, self.mag_combo = build_toolbar(self, self.actions)
        self.addToolBar(toolbar)
        self.annotate = AnnotationController(self)  # tools, undo per slide, Annotate toolbar, annotations dock
        self.addToolBar(self.annotate.toolbar)
        self.addDockWidget(Qt.RightDockWidgetArea, self.annotate.dock)
        self.tabifyDockWidget(self.layers_dock, self.annotate.dock)
        self.tiles_dock = TilesDock(self)  # tile grid preview and counts before exporting a dataset
        self.addDockWidget(Qt.RightDockWidgetArea, self.tiles_dock)
        self.tabifyDockWidget(self.annotate.dock, self.tiles_dock)
        self.tiles_dock.toggleViewAction().setIcon(icon("tiles"))
        self.prediction_dock = PredictionDock(self, lambda: self.project)  # run a model over the slide: the heatmap
        # the network against the doctors' marks
        self.evaluation_dock = EvaluationDock(self, lambda: self.project, lambda: list(self.documents))
        for dock in (self.prediction_dock, self.evaluation_dock):
            self.addDockWidget(Qt.RightDockWidgetArea, dock)
            self.tabifyDockWidget(self.tiles_dock, dock)
        self.prediction_dock.toggleViewAction().setIcon(icon("predict"))
        self.prediction_dock.grid_changed.connect(self.evaluation_dock.on_grid_changed)
        self.prediction_dock.threshold_changed.connect(self.evaluation_dock.set_threshold)
        self.evaluation_dock.threshold_chosen.connect(self.prediction_dock.set_threshold)
        self.core_measurer = CoreMeasurer(self)  # per-core length and involvement, shown in two panels
        self.annotate.dock.add_cores(CoresTable(self.core_measurer))
        self.evaluation_dock.add_cores(CoresTable(self.core_measurer))
        self.prediction_dock.grid_changed.connect(
            lambda v: v is self.core_measurer.view and self.core_measurer.schedule())
        self.prediction_dock.threshold_changed.connect(self.core_measurer.schedule)
        self.drafts = DraftController(self)  # Model ▸ Propose marks; A / R decide; the Review panel (N)
        self.addDockWidget(Qt.RightDockWidgetArea, self.drafts.review)
        self.tabifyDockWidget(self.evaluation_dock, self.drafts.review)
        self.prediction_dock.grid_changed.connect(
            lambda v: v is self.drafts.review.view and self.drafts.review.schedule())
        self.cohort_run = CohortRun(self)  # Model ▸ Predict all slides…: the project's slides on a Dask cluster
        self.retrain = RetrainRun(self)  # Model ▸ Retrain with new marks…: fine-tune on the doctors' decisions
        self.tabifyDockWidget(self.evaluation_dock, self.info_dock)  # one tabbed column: the slide gets the room
        self.setTabPosition(Qt.RightDockWidgetArea, QTabWidget.East)  # whole names down the side, not "Ti…" tabs
        self.annotate.dock.raise_()
        self._docks_sized = False
        for dock in (self.info_dock, self.layers_dock, self.annotate.dock, self.tiles_dock, self.prediction_dock,
                     self.evaluation_dock, self.drafts.review, self.associated_dock):
            self.docks_menu.addAction(dock.toggleViewAction())
        self.associated_dock.toggleViewAction().setIcon(icon("label"))
        self._refresh_recent_menu()

        self.status = SlideStatus(self.statusBar(), self.mag_combo)
        self.pos_label, self.mag_label, self.zoom_label = self.status.pos_label, self.status.mag_label, self.status.zoom_label
        self.mpp_label, self.load_label = self.status.mpp_label, self.status.load_label
        self.tabs.currentChanged.connect(self._on_current_changed)
        self._on_current_changed()

    # -- opening -------------------------------------------------------------------------
    def open_paths(self, paths) -> None:
        for path in paths:
            self.open_slide(path)

    def open_slide(self, path: str | os.PathLike) -> Worker | None:
        """Open a slide off the GUI thread; a tab appears when it is ready."""
        path = os.path.abspath(os.fspath(path))
        for i in range(self.tabs.count()):
            view = slide_view_of(self.tabs.widget(i))
            if view is not None and str(view.reader.path) == path:
                self.tabs.setCurrentIndex(i)
                self.slide_opened.emit(view)
                return None
        self.statusBar().showMessage(f"Opening {Path(path).name}…")
        return self.slides.open(path)

    def working_project(self) -> Project:
        """The project slides open into: the one chosen, else the user's default project."""
        if self.project is None:
            self.project = default_project()
        return self.project

    def use_project(self, project: Project, open_slides: bool = True) -> None:
        """Slides opened from now on belong to ``project``; its slides open in tabs."""
        self.project = project
        self.setWindowTitle(f"{project.name} — Biopsia")
        self.statusBar().showMessage(f"Project {project.name}: {project.folder}", 6000)
        if open_slides:
            self.open_paths(str(entry.path) for entry in project.slides)

    def open_project_dialog(self) -> None:
        open_project_dialog(self)

    def open_project(self, folder) -> Project | None:
        try:
            project = Project.open(folder)
        except BiopsiaError as err:
            self.show_error("Could not open project", str(err))
            return None
        for warning in project.warnings:
            self.show_error("Project repaired", warning)
        self.use_project(project)
        return project

    def new_project_dialog(self) -> None:
        new_project_dialog(self)

    @property
    def documents(self) -> list[SlideDocument]:
        """The documents of the open slides, one per tab."""
        return self.slides.documents

    def _on_opened(self, path: str, view: SlideView, opened: OpenedSlide) -> None:
        reader = view.reader
        if opened.load_error:
            self.show_error("Marks could not be read",
                            f"{opened.load_error}\n\nThe file is left untouched. Marks you draw now are kept "
                            "in memory only: export them (File ▸ Export annotations) before closing.")
        if opened.warnings:
            self.show_error("Marks repaired while loading", "\n".join(opened.warnings[:20]))
        self.annotate.view_opened(view)
        view.grid_layer.visible = self.actions["grid"].isChecked()
        view.minimap.setVisible(False)
        view.show_scale_bar = self.actions["scale_bar"].isChecked()
        view.slide_layer.set_apply_icc(self.actions["icc"].isChecked())
        view.viewport_changed.connect(lambda _vp, v=view: self._update_status(v))
        view.sharp.connect(lambda v=view: self._update_status(v))
        view.cursor_moved.connect(lambda pos, v=view: self.status.show_cursor(v, pos))
        view.slide_layer.tile_error.connect(lambda msg, v=view: self._on_tile_error(v, msg))
        view.slide_layer.overview_ready.connect(
            lambda v=view: v.minimap.setVisible(self.actions["minimap"].isChecked()))
        view.overlay_changed.connect(lambda _name, v=view: self._show_overlay_actions(v))
        view.annotation_layer.changed.connect(lambda v=view: self._show_overlay_actions(v))
        if self.tabs.indexOf(self.welcome) >= 0:
            self.tabs.removeTab(self.tabs.indexOf(self.welcome))
        index = self.tabs.addTab(view, reader.display_name)
        self.tabs.setTabToolTip(index, path)
        self.tabs.setCurrentIndex(index)
        self.prefs.add_recent_file(path)
        self._refresh_recent_menu()
        self.statusBar().showMessage(f"Opened {reader.display_name}", 4000)
        self.slide_opened.emit(view)

    def _on_open_failed(self, path: str, message: str) -> None:
        self.statusBar().showMessage(f"Could not open {Path(path).name}", 8000)
        self.show_error("Could not open slide", message)
        self.open_failed.emit(path, message)

    def _on_tile_error(self, view: SlideView, message: str) -> None:
        first = view.slide_layer.failed_count <= 1 and not view.document.damage_reported
        self.statusBar().showMessage(f"Part of {view.reader.display_name} could not be read", 8000)
        if first:
            view.document.damage_reported = True
            self.show_error("Damaged slide",
                            f"{message}\n\nUnreadable regions are shown hatched in red; the rest of the slide "
                            "remains usable.")

    def show_error(self, title: str, message: str) -> None:
        """Tell the user without blocking the event loop."""
        self.errors.append(message)
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.open()

    def open_dialog(self) -> None:
        open_dialog(self)

    def _refresh_recent_menu(self) -> None:
        fill_recent_menu(self.recent_menu, self.prefs, self.open_slide)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.open_paths(url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile())
        event.acceptProposedAction()

    # -- tabs --------------------------------------------------------------------------
    def current_view(self) -> SlideView | None:
        return slide_view_of(self.tabs.currentWidget())

    def views(self) -> list[SlideView]:
        return [v for v in map(slide_view_of, (self.tabs.widget(i) for i in range(self.tabs.count()))) if v is not None]

    def with_view(self, fn: Callable[[SlideView], object]) -> None:
        view = self.current_view()
        if view is not None:
            fn(view)

    def _on_save_failed(self, view: SlideView, message: str) -> None:
        self.statusBar().showMessage(f"Marks of {view.reader.display_name} NOT saved: retrying", 10000)
        self.show_error("Marks not saved", f"{message}\n\nYour marks are kept in memory and saving is retried; "
                        "free disk space or fix permissions.")

    def _on_saved(self, view: SlideView) -> None:
        if view is self.current_view():
            self.statusBar().showMessage(f"Marks saved to {view.document.session.path}", 3000)

    def close_tab(self, index: int, force: bool = False) -> bool:
        """Close a slide tab once its marks are on disk (or the user accepts losing them)."""
        view = slide_view_of(self.tabs.widget(index))
        if view is None:
            return False
        if isinstance(self.tabs.widget(index), SplitView):
            unsplit_tab(self.tabs, self.tabs.widget(index))  # the right pane goes; the view closes as usual
        problems = self.slides.unsaved([view])
        if problems and not force and not confirm_discard(self, problems):
            return False
        self.prediction_dock.view_closing(view)  # cancels its run: nothing is applied to the view afterwards
        self.tabs.removeTab(index)
        self.slides.close(view)  # its marks written, its document dropped
        view.deleteLater()
        if self.tabs.count() == 0:
            self.tabs.addTab(self.welcome, "Welcome")
        return True

    def close_current(self) -> None:
        self.close_tab(self.tabs.currentIndex())

    def _on_current_changed(self, _index: int = -1) -> None:
        view = self.current_view()
        for v in self.views():
            if v is not view:
                v.slide_layer.loader.set_wanted([])  # background tabs stop loading
        if view is not None:
            view.set_viewport(view.viewport)
            self.info_dock.show_info(view.reader.info(), view.mpp, view.document.mpp_source)
            self.actions["icc"].setEnabled(view.reader.icc_profile is not None)
        else:
            self.info_dock.show_info(None)
        self.tiles_dock.set_view(view)  # first: it gives the view its tile layer, which the Layers dock lists
        self.prediction_dock.set_view(view)
        self.evaluation_dock.set_view(view)
        self.layers_dock.set_view(view)
        self.annotate.set_view(view)
        self.core_measurer.set_view(view)
        self.drafts.set_view(view)
        self.setWindowTitle(f"{view.reader.display_name} — Biopsia" if view else "Biopsia")
        self.associated_dock.set_reader(view.reader if view else None)
        for name in ("close", "export_view", "zoom_in", "zoom_out", "zoom_fit", "zoom_1to1", "set_mpp", "side_by_side"):
            self.actions[name].setEnabled(view is not None)
        blocked = self.actions["side_by_side"].blockSignals(True)
        self.actions["side_by_side"].setChecked(isinstance(self.tabs.currentWidget(), SplitView))
        self.actions["side_by_side"].blockSignals(blocked)
        self._show_overlay_actions(view)
        self._update_status(view)

    # -- status bar --------------------------------------------------------------------
    def _update_status(self, view: SlideView | None) -> None:
        if view is None:
            self.status.clear()
        elif view is self.current_view():
            self.status.show_view(view)

    # -- view options --------------------------------------------------------------------
    def set_magnification(self, mag: float) -> None:
        view = self.current_view()
        if view is not None and not view.set_magnification(mag):
            self.show_error("Magnification unknown",
                            f"{view.reader.display_name} states neither objective power nor µm/px. "
                            "Enter its resolution in Slide ▸ Set resolution….")

    def set_overlay(self, name: str) -> None:
        """A, H, D: show the marks, the heatmap or the disagreement (`gui.overlay_choice`); in side by side,
        in the left pane."""
        widget, view = self.tabs.currentWidget(), self.current_view()
        if view is None:
            return
        if isinstance(widget, SplitView):
            widget.set_content("left", NAMES[name])
            view.overlay = name
        else:
            show_overlay(view, name)

    def set_mark_fill(self, on: bool) -> None:
        """Shift+F: the marks filled or as outlines, over any overlay."""
        view = self.current_view()
        if view is not None and view.annotation_layer.fill != on:
            view.annotation_layer.set_options(fill=on)

    def _show_overlay_actions(self, view: SlideView | None) -> None:
        """The View menu's overlay and fill checks say what the current view shows."""
        if view is None or view is not self.current_view():
            return
        for act, on in [(self.actions[f"overlay_{n}"], n == view.overlay) for n in OVERLAYS] + \
                [(self.actions["mark_fill"], view.annotation_layer.fill)]:
            if act.isChecked() != on:
                blocked = act.blockSignals(True)
                act.setChecked(on)
                act.blockSignals(blocked)

    def set_grid_visible(self, on: bool) -> None:
        for view in self.views():
            view.grid_layer.visible = on

    def set_minimap_visible(self, on: bool) -> None:
        for view in self.views():
            view.minimap.setVisible(on and view.slide_layer.overview is not None)

    def set_scale_bar_visible(self, on: bool) -> None:
        for view in self.views():
            view.show_scale_bar = on
            view.update()

    def set_side_by_side(self, on: bool) -> SplitView | None:
        """View ▸ Side by side: the current tab as two synchronised views (heatmap | marks), or one again."""
        widget, view = self.tabs.currentWidget(), self.current_view()
        if view is None or on == isinstance(widget, SplitView):
            return widget if isinstance(widget, SplitView) else None
        if on:
            widget = split_tab(self.tabs, view, self.tile_memory)
            widget.close_requested.connect(lambda: self.actions["side_by_side"].setChecked(False))
        else:
            unsplit_tab(self.tabs, widget)
        self._on_current_changed()
        return widget if on else None

    def set_apply_icc(self, on: bool) -> None:
        for view in self.views():
            view.slide_layer.set_apply_icc(on)

    def set_screenshots_private(self, include: bool) -> None:
        self.prefs.screenshots_include_associated = include

    def set_mpp_dialog(self) -> None:
        view = self.current_view()
        if view is None:
            return
        current = view.mpp[0] if view.mpp else 0.5
        value, ok = QInputDialog.getDouble(
            self, "Slide resolution", f"Micrometres per pixel at full resolution for\n{view.reader.display_name}:",
            current, 0.01, 100.0, 4)
        if ok:
            self.set_slide_mpp(view, (value, value))

    def set_slide_mpp(self, view: SlideView, mpp: tuple[float, float]) -> None:
        """Apply and remember a user-entered resolution for this slide."""
        doc = view.document  # the slide's project keeps the value, and the user's store for the file
        try:
            remember_mpp(view.reader.path, mpp, doc.project, doc.entry, self.slide_settings)
        except BiopsiaError as err:
            self.show_error("Could not save the resolution", str(err))
        except OSError as err:
            self.show_error("Could not save the resolution", f"{self.slide_settings.path}: {err}")
        view.set_mpp(mpp, MppSource.PROJECT)
        self._on_current_changed()

    def cache_size_dialog(self) -> None:
        value, ok = QInputDialog.getInt(self, "Tile cache", "Memory for decoded tiles (MB):",
                                        self.prefs.cache_megabytes, 64, 65536, 64)
        if ok:
            self.prefs.cache_megabytes = value
            self.cache.resize(value * 1024 * 1024)

    # -- exports -------------------------------------------------------------------------
    def grab_window(self, include_associated: bool | None = None) -> QImage:
        """The window as an image; label and macro are left out unless chosen."""
        if include_associated is None:
            include_associated = self.prefs.screenshots_include_associated
        hide = self.associated_dock.isVisible() and not include_associated
        if hide:
            self.associated_dock.hide()
        image = self.grab().toImage()
        if hide:
            self.associated_dock.show()
        return image

    def export_view_dialog(self) -> None:
        export_view_dialog(self)

    def screenshot_dialog(self) -> None:
        screenshot_dialog(self)

    # -- model ---------------------------------------------------------------------------
    def show_training_panel(self):
        """Model ▸ Train…: the non-modal training panel, listing the current project's slides."""
        from gui.training_panel import TrainingPanel  # it imports MXNet (4 s): not at start

        if self.training_panel is None:
            self.training_panel = TrainingPanel(self)
        self.training_panel.set_project(self.working_project())
        self.training_panel.show()
        self.training_panel.raise_()
        self.training_panel.activateWindow()
        return self.training_panel

    # -- help ----------------------------------------------------------------------------
    def show_controls(self) -> None:
        show_controls(self)

    def show_about(self) -> None:
        show_about(self)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._docks_sized:  # the panels' column at its share of the window, once: the slide takes the rest
            self._docks_sized = True
            self.resizeDocks([self.annotate.dock], [dock_width(self.width())], Qt.Horizontal)

    def closeEvent(self, event) -> None:
        problems = self.slides.unsaved(self.views())
        if problems and not confirm_discard(self, problems):
            event.ignore()
            return
        self.slides.cancel()
        self.cohort_run.cancel()  # slides being predicted write nothing; finished ones stay
        self.retrain.cancel()  # stops after this batch; the best epoch is kept
        if self.training_panel is not None:
            self.training_panel.cancel()  # stops after the current batch; the best epoch is kept
        self.prediction_dock.cancel()  # a partial heatmap is never saved
        for split in [w for w in map(self.tabs.widget, range(self.tabs.count())) if isinstance(w, SplitView)]:
            unsplit_tab(self.tabs, split)  # the right panes stop reading before the slides close
        for view in self.views():
            self.slides.close(view)
        self.core_measurer.stop()  # its tissue detection stops on the closed slide: wait until it has
        release_plots(self)  # the evaluation and training plots' pyqtgraph objects
        super().closeEvent(event)
