"""A view of one slide: layers painted through a viewport, navigation, the active tool.

What the view shows of a slide lives in its `core.project.document.SlideDocument` (``view.document``):
the reader, the marks, the µm/px. The window makes the document; two panes of one tab share it.
"""

from __future__ import annotations

from typing import Iterable

from PyQt5.QtCore import QEvent, QPoint, Qt, pyqtSignal
from PyQt5.QtGui import (QColor, QContextMenuEvent, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QResizeEvent,
                         QWheelEvent)
from PyQt5.QtWidgets import QSizePolicy, QUndoStack, QWidget

from core.annotations import AnnotationStore
from core.annotations.store import ClassesEdit, Edit
from core.project.document import SlideDocument
from core.slide.base import SlideReader
from core.view.viewport import Viewport, magnification_at, scale_for_magnification
from gui.layers import AnnotationLayer, DisagreementLayer, GridLayer, HeatmapLayer, Layer, SlideLayer, TilePreviewLayer
from gui.layers.measurement_layer import MeasurementLayer
from gui.mark_menu import mark_menu
from gui.overlay_choice import show_overlay
from gui.overlays import Minimap, paint_scale_bar
from gui.tile_loader import TileMemory
from gui.tools import PanTool, Tool
from gui.undo import push_edit

#: Zoom factor of one mouse-wheel notch or one keyboard zoom step.
ZOOM_STEP = 1.25
#: Fraction of the view an arrow key pans by.
KEY_PAN_FRACTION = 0.15
BACKGROUND = QColor(218, 218, 222)


class SlideView(QWidget):
    """Shows one slide and the layers over it.

    Signals
    -------
    viewport_changed(Viewport)
    cursor_moved(object)  # (l0_x, l0_y) or None when the cursor leaves
    sharp()               # every visible tile is at its proper resolution
    selection_changed(object)      # frozenset of selected annotation ids
    annotations_replaced(object)   # a new AnnotationStore was set
    current_class_changed(str)
    tool_changed(object)
    annotations_edited(object)     # an Edit or ClassesEdit was applied to the store
    """

    viewport_changed = pyqtSignal(object)
    cursor_moved = pyqtSignal(object)
    sharp = pyqtSignal()
    selection_changed = pyqtSignal(object)
    annotations_replaced = pyqtSignal(object)
    current_class_changed = pyqtSignal(str)
    tool_changed = pyqtSignal(object)
    annotations_edited = pyqtSignal(object)
    overlay_changed = pyqtSignal(str)  # the overlay family shown (`gui.overlay_choice`)

    def __init__(self, reader: SlideReader, memory: TileMemory, mpp: tuple[float, float] | None = None,
                 workers: int = 2, parent: QWidget | None = None, *, document: SlideDocument | None = None,
                 fit: bool = True):
        """Show ``reader``; ``document`` (of that reader) carries its marks and µm/px, else a bare one is made.

        ``fit=False``: the view keeps its viewport when first sized (a pane that follows another).
        """
        super().__init__(parent)
        if document is not None and document.reader is not reader:
            raise ValueError("a view shows its document's reader")
        self._document = document or SlideDocument(reader, mpp=tuple(mpp) if mpp else None)
        self.reader = reader
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setAcceptDrops(False)  # the main window takes drops
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAttribute(Qt.WA_OpaquePaintEvent, True)
        self.show_scale_bar = True
        self._viewport = Viewport.fit(*reader.dimensions, max(self.width(), 1), max(self.height(), 1))
        self._fitted_once = not fit
        self.layers: list[Layer] = []
        self.slide_layer = SlideLayer(reader, memory, workers)
        self.grid_layer = GridLayer(self.mpp[0] if self.mpp else None)
        # Annotations: the document's level-0 marks, with undo per view; `annotations` replaces them.
        self._annotations = self._document.store
        self._annotations.add_listener(self._on_annotations_edited)
        self._selection: frozenset[str] = frozenset()
        self._current_class = self._annotations.classes[0].name if self._annotations.classes else ""
        self.undo_stack = QUndoStack(self)
        self.annotation_layer = AnnotationLayer(self._annotations)
        # the network's view, hidden until a prediction or comparison is set; under the marks
        self.heatmap_layer = HeatmapLayer()
        self.disagreement_layer = DisagreementLayer(grid_source=lambda: self.heatmap_layer.grid)
        # the tile plan of the Tiles panel, hidden until shown there; above the marks, so the tiles'
        # staircase shows where a red Tumour fill would hide it
        self.tile_preview_layer = TilePreviewLayer()
        self.tile_preview_layer.visible = False
        self.measurement_layer = MeasurementLayer(lambda: self.mpp)  # the ruler's lines (not marks)
        # one overlay family at a time (gui.overlay_choice); the side-by-side view turns the automatic switch off
        self.overlay = "marks"
        self.overlay_auto = True
        self.editable = True  # False for the right pane of side by side: its marks are edited on the left
        self.context_menu = None  # the last right-click menu on a mark (tests trigger its actions)
        self._heatmap_had_grid = False
        self.heatmap_layer.changed.connect(self._on_heatmap_changed)
        self.add_layer(self.slide_layer)
        self.add_layer(self.heatmap_layer)
        self.add_layer(self.disagreement_layer)
        self.add_layer(self.annotation_layer)
        self.add_layer(self.tile_preview_layer)
        self.add_layer(self.grid_layer)
        self.add_layer(self.measurement_layer)
        self.slide_layer.sharp.connect(self.sharp)
        self.minimap = Minimap(self)
        self.minimap.move_requested.connect(lambda x, y: self.set_viewport(self._viewport.centred_on(x, y)))
        self.slide_layer.overview_ready.connect(self._on_overview)
        self._tool: Tool = PanTool()
        self._tool.activate(self)
        self._pan_anchor: QPoint | None = None  # middle-button or Space drag
        self._space_down = False

    # -- layers ------------------------------------------------------------------
    def _on_heatmap_changed(self) -> None:
        """The first grid arrived: the heatmap becomes the overlay (the marks turn to outlines)."""
        has = self.heatmap_layer.grid is not None
        if has and not self._heatmap_had_grid and self.overlay_auto:
            self._heatmap_had_grid = True
            show_overlay(self, "heatmap")
        self._heatmap_had_grid = has

    def set_overlay_auto(self, on: bool) -> None:
        """Whether the view switches to the heatmap overlay when a first grid arrives (off in a split pane)."""
        self.overlay_auto = bool(on)
        self._heatmap_had_grid = self.heatmap_layer.grid is not None

    def add_layer(self, layer: Layer, index: int | None = None) -> None:
        self.layers.insert(len(self.layers) if index is None else index, layer)
        layer.changed.connect(self.update)
        layer.viewport_changed(self._viewport)
        self.update()

    def remove_layer(self, layer: Layer) -> None:
        self.layers.remove(layer)
        layer.changed.disconnect(self.update)
        self.update()

    # -- viewport ----------------------------------------------------------------
    @property
    def viewport(self) -> Viewport:
        return self._viewport

    def set_viewport(self, viewport: Viewport) -> None:
        self._viewport = viewport
        for layer in self.layers:
            layer.viewport_changed(viewport)
        self.minimap.set_viewport(viewport)
        self.update()
        self.viewport_changed.emit(viewport)

    def pan_by(self, screen_dx: float, screen_dy: float) -> None:
        self.set_viewport(self._viewport.panned(screen_dx, screen_dy))

    def zoom_by(self, factor: float, screen_x: float | None = None, screen_y: float | None = None) -> None:
        if screen_x is None:
            screen_x, screen_y = self.width() / 2, self.height() / 2
        self.set_viewport(self._viewport.zoomed_about(screen_x, screen_y, factor))

    def zoom_to_fit(self) -> None:
        self.set_viewport(self._viewport.fitted())

    def zoom_to_scale(self, scale: float) -> None:
        self.set_viewport(self._viewport.centred_on(self._viewport.l0_cx, self._viewport.l0_cy, scale))

    def centre_on(self, l0_x: float, l0_y: float) -> None:
        self.set_viewport(self._viewport.centred_on(l0_x, l0_y))

    @property
    def objective_power(self) -> float | None:
        return self.reader.objective_power

    @property
    def magnification(self) -> float | None:
        return magnification_at(self._viewport.scale, self.objective_power, self.mpp[0] if self.mpp else None)

    def set_magnification(self, mag: float) -> bool:
        """Show the slide at ``mag`` (e.g. 20 for 20x); False when it cannot be known."""
        scale = scale_for_magnification(mag, self.objective_power, self.mpp[0] if self.mpp else None)
        if scale is None:
            return False
        self.zoom_to_scale(scale)
        return True

    @property
    def document(self) -> SlideDocument:
        """The slide's document: reader, marks, µm/px, tissue, tile plan, prediction."""
        return self._document

    @property
    def mpp(self) -> tuple[float, float] | None:
        """Micrometres per level-0 pixel in use (the document's), or None."""
        return self._document.mpp

    def set_mpp(self, mpp: tuple[float, float] | None, source: str | None = None) -> None:
        """Use ``mpp`` (from ``source``: see `SlideDocument.mpp_source`) for this slide."""
        self._document.set_mpp(mpp, source)
        self.grid_layer.mpp_x = mpp[0] if mpp else None
        self.update()
        self.viewport_changed.emit(self._viewport)

    # -- annotations ---------------------------------------------------------------------
    @property
    def annotations(self) -> AnnotationStore:
        return self._annotations

    @annotations.setter
    def annotations(self, store: AnnotationStore) -> None:
        """Show ``store`` (a slide's marks); the undo history and selection start afresh."""
        self._annotations.remove_listener(self._on_annotations_edited)
        self._annotations = self._document.store = store
        store.add_listener(self._on_annotations_edited)
        self.undo_stack.clear()
        self.annotation_layer.set_store(store)
        self.selection = ()
        if store.class_named(self._current_class) is None and store.classes:
            self.current_class = store.classes[0].name
        self.annotations_replaced.emit(store)

    def apply_edit(self, edit: Edit | ClassesEdit) -> bool:
        """Apply an edit through the undo stack; empty edits are dropped. True when applied."""
        return push_edit(self.undo_stack, self._annotations, edit)

    @property
    def selection(self) -> frozenset[str]:
        return self._selection

    @selection.setter
    def selection(self, ids: Iterable[str]) -> None:
        ids = frozenset(i for i in ids if i in self._annotations)
        if ids != self._selection:
            self._selection = ids
            self.annotation_layer.set_selection(ids)
            self.selection_changed.emit(ids)

    @property
    def current_class(self) -> str:
        """The class new marks get."""
        return self._current_class

    @current_class.setter
    def current_class(self, name: str) -> None:
        if name != self._current_class:
            self._current_class = name
            self.current_class_changed.emit(name)

    def _on_annotations_edited(self, edit) -> None:
        self.selection = self._selection  # forget deleted ones
        self.annotations_edited.emit(edit)

    # -- tools -------------------------------------------------------------------------
    @property
    def tool(self) -> Tool:
        return self._tool

    def set_tool(self, tool: Tool) -> None:
        self._tool.deactivate(self)
        self._tool = tool
        tool.activate(self)
        self.update()
        self.tool_changed.emit(tool)

    # -- Qt events -----------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        size = event.size()
        if not self._fitted_once and size.width() > 1 and size.height() > 1:
            self._fitted_once = True
            self.set_viewport(Viewport.fit(*self.reader.dimensions, size.width(), size.height()))
        else:
            self.set_viewport(self._viewport.resized(size.width(), size.height()))
        self.minimap.fit_to(size.width(), size.height())
        self.minimap.move(self.width() - self.minimap.width() - 10, 10)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        vp = self._viewport
        for layer in self.layers:
            if layer.visible and layer.opacity > 0:
                painter.setOpacity(layer.opacity)
                layer.paint(painter, vp)
        painter.setOpacity(1.0)
        for layer in self.layers:  # legend cards above every layer: a mark's fill never tints them
            if layer.visible and layer.opacity > 0:
                layer.paint_legend_card(painter, vp)
        if self.show_scale_bar:
            paint_scale_bar(painter, vp, self.mpp[0] if self.mpp else None)
        painter.end()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._tool.wheel(event):
            event.accept()
            return
        notches = event.angleDelta().y() / 120.0
        if notches:
            pos = event.pos()
            self.zoom_by(ZOOM_STEP**notches, pos.x(), pos.y())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus(Qt.MouseFocusReason)
        if event.button() == Qt.MiddleButton or (self._space_down and event.button() == Qt.LeftButton):
            self._pan_anchor = event.pos()
            self.setCursor(Qt.ClosedHandCursor)
        elif not self._tool.mouse_press(event):
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.cursor_moved.emit(self._viewport.screen_to_l0(event.pos().x(), event.pos().y()))
        if self._pan_anchor is not None:
            delta = event.pos() - self._pan_anchor
            self._pan_anchor = event.pos()
            self.pan_by(delta.x(), delta.y())
        elif not self._tool.mouse_move(event):
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_anchor is not None:
            self._pan_anchor = None
            if self._tool.cursor is not None:
                self.setCursor(self._tool.cursor)
            else:
                self.unsetCursor()
        elif not self._tool.mouse_release(event):
            super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if not self._tool.mouse_double_click(event):
            super().mouseDoubleClickEvent(event)

    def leaveEvent(self, event) -> None:
        self.cursor_moved.emit(None)
        super().leaveEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.ShortcutOverride and self._tool.wants_key(event):
            event.accept()  # the tool takes this key before the window's shortcuts
            return True
        return super().event(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        """Right-click on a mark: its class, or Delete (not while editing vertices: there it removes one)."""
        if not self.editable or self._tool.tool_id == "vertex":
            return
        menu = mark_menu(self, event.pos().x(), event.pos().y())
        if menu is not None:
            self.context_menu = menu
            menu.popup(event.globalPos())
            event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if self._tool.key_press(event):
            return
        key = event.key()
        dx = self.width() * KEY_PAN_FRACTION
        dy = self.height() * KEY_PAN_FRACTION
        moves = {Qt.Key_Left: (dx, 0), Qt.Key_Right: (-dx, 0), Qt.Key_Up: (0, dy), Qt.Key_Down: (0, -dy)}
        if key in moves:
            self.pan_by(*moves[key])
        elif key in (Qt.Key_Plus, Qt.Key_Equal):
            self.zoom_by(ZOOM_STEP)
        elif key in (Qt.Key_Minus, Qt.Key_Underscore):
            self.zoom_by(1 / ZOOM_STEP)
        elif key == Qt.Key_Space and not event.isAutoRepeat():
            self._space_down = True
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space_down = False
        super().keyReleaseEvent(event)

    def _on_overview(self) -> None:
        self.minimap.set_image(self.slide_layer.overview)
        self.minimap.set_viewport(self._viewport)
        self.minimap.move(self.width() - self.minimap.width() - 10, 10)

    def close_view(self) -> None:
        """Stop loading, release the tiles, close the slide."""
        self._annotations.remove_listener(self._on_annotations_edited)
        for layer in self.layers:
            layer.dispose()
        self.reader.close()

    def release_pane(self) -> None:
        """Stop loading and listening, keeping the reader and the cached tiles (another pane shows them)."""
        self._annotations.remove_listener(self._on_annotations_edited)
        for layer in self.layers:
            if layer is self.slide_layer:
                layer.stop()
            else:
                layer.dispose()
