"""Side by side: the network's heatmap beside the doctors' marks, two synchronised views of one slide.

The left pane is the tab's own `SlideView` (tools, undo, autosave stay with it); the right pane is a second
view over the same reader and tile cache that shows the same marks (read-only: edits on the left show on
the right at once) and mirrors the left view's heatmap and disagreement map. Pan and zoom in either pane
move the other. "Overlay" shows one view with the heatmap and the marks together.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QSplitter, QTabWidget, QToolButton, QVBoxLayout,
                             QWidget)

from core.view.viewport import Viewport
from gui.docks.disagreement_list import DisagreementList, go_to_region
from gui.overlay_choice import show_overlay
from gui.slide_view import SlideView
from gui.tile_loader import TileMemory

#: What a pane can show over the slide, and the layers each choice turns on.
CONTENTS = {"Heatmap": ("heatmap_layer",), "Marks": ("annotation_layer",),
            "Disagreement": ("disagreement_layer",), "Slide": ()}
CONTENT_LAYERS = ("heatmap_layer", "disagreement_layer", "annotation_layer")
MODES = {"split": "Side by side", "overlay": "Overlay (one view)"}
#: Width of the disagreement regions panel when it first shows.
REGIONS_WIDTH = 340


@dataclass(frozen=True)
class SplitChoice:
    """What the user chose in a split tab: kept when it goes back to one view, given back when it splits again."""

    mode: str = "split"
    left: str = "Heatmap"
    right: str = "Marks"
    regions: bool = False  # the regions list folds away until asked for: it never takes the panes' room by itself


#: Each slide view's last choice (F6 off and on keeps it); forgotten with the view.
_CHOICES: "weakref.WeakKeyDictionary[SlideView, SplitChoice]" = weakref.WeakKeyDictionary()


class SplitView(QWidget):
    """A slide tab split in two synchronised panes, or one pane overlaying heatmap and marks.

    Signals ``close_requested()`` when the user asks for the single view again.
    """

    close_requested = pyqtSignal()

    def __init__(self, primary: SlideView, memory: TileMemory, parent: QWidget | None = None,
                 choice: SplitChoice = SplitChoice()):
        super().__init__(parent)
        self.primary = primary
        self.mode = "split"
        self._syncing = False
        self._sized = False  # the splitter got its first sizes
        self._start_ids = self._seen = self._content_ids()
        primary.set_overlay_auto(False)  # each pane shows what its box says
        # the same document, so the same marks: live, edited on the left only; it follows the left pane
        secondary = SlideView(primary.reader, memory, workers=1, document=primary.document, fit=False)
        secondary.set_overlay_auto(False)
        secondary.editable = False  # its marks are the left pane's: edited there, with its undo
        secondary.heatmap_layer.mirror(primary.heatmap_layer)
        secondary.disagreement_layer.mirror(primary.disagreement_layer)
        secondary.grid_layer.visible = primary.grid_layer.visible
        secondary.show_scale_bar = primary.show_scale_bar
        secondary.slide_layer.overview_ready.connect(secondary.minimap.hide)  # one overview (left) is enough
        self.secondary = secondary

        self.mode_box = _combo(MODES.values(), "Two views side by side, or one view with heatmap and marks")
        self.left_box = _combo(CONTENTS, "What the left view shows over the slide (its tools edit the marks)")
        self.right_box = _combo(CONTENTS, "What the right view shows over the slide")
        self.left_box.setCurrentText(choice.left)
        self.right_box.setCurrentText(choice.right)
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_mode(list(MODES)[i]))
        self.left_box.currentTextChanged.connect(lambda _t: self.apply_contents())
        self.right_box.currentTextChanged.connect(lambda _t: self.apply_contents())
        self.regions_button = QToolButton(text="Regions", checkable=True, checked=choice.regions,
                                          toolTip="List of disagreement regions, largest first")
        close = QToolButton(text="Single view", toolTip="Back to one view (View ▸ Side by side)")
        close.clicked.connect(self.close_requested)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 2, 6, 2)
        self.left_label, self.right_label = QLabel("Left:"), QLabel("Right:")
        for widget in (QLabel("Show:"), self.mode_box, self.left_label, self.left_box, self.right_label,
                       self.right_box):
            bar.addWidget(widget)
        bar.addStretch(1)
        bar.addWidget(self.regions_button)
        bar.addWidget(close)

        self.regions = DisagreementList()
        self.regions.region_activated.connect(self.go_to_region)
        self.regions_button.toggled.connect(lambda _on: self._update_regions_panel())
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(primary)
        self.splitter.addWidget(secondary)
        self.splitter.addWidget(self.regions)
        primary.show()  # a page taken out of a tab is hidden, and a splitter gives hidden panes no room
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)

        primary.viewport_changed.connect(self._on_primary_moved)
        secondary.viewport_changed.connect(self._on_secondary_moved)
        secondary.cursor_moved.connect(primary.cursor_moved)  # the status bar says where the cursor is, either pane
        # the panes share tile cache keys: a tile either loader brings repaints both
        primary.slide_layer.loader.tile_loaded.connect(secondary.slide_layer._on_tile_loaded)
        secondary.slide_layer.loader.tile_loaded.connect(primary.slide_layer._on_tile_loaded)
        primary.heatmap_layer.changed.connect(self._on_content_changed)
        primary.disagreement_layer.changed.connect(self._on_content_changed)
        primary.annotations_replaced.connect(self._on_marks_replaced)
        self._follow(secondary, primary.viewport)
        self.apply_contents()
        self._show_regions()
        if choice.mode != "split":
            self.set_mode(choice.mode)

    def choice(self) -> SplitChoice:
        """The mode, the panes' contents and the regions list as the user has them now."""
        return SplitChoice(self.mode, self.content("left"), self.content("right"), self.regions_button.isChecked())

    # -- contents ---------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """``"split"`` (two panes) or ``"overlay"`` (the left pane with heatmap and marks together)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        index = list(MODES).index(mode)
        if self.mode_box.currentIndex() != index:
            self.mode_box.setCurrentIndex(index)
        split = mode == "split"
        self.secondary.setVisible(split)
        for widget in (self.left_label, self.left_box, self.right_label, self.right_box):
            widget.setEnabled(split)
        if split:
            self._follow(self.secondary, self.primary.viewport)
        else:
            self.secondary.slide_layer.loader.set_wanted([])
        self.apply_contents()

    def set_content(self, side: str, content: str) -> None:
        """Show ``content`` (a key of `CONTENTS`) in the ``"left"`` or ``"right"`` pane."""
        if content not in CONTENTS:
            raise ValueError(f"unknown content {content!r}; choose one of {', '.join(CONTENTS)}")
        (self.left_box if side == "left" else self.right_box).setCurrentText(content)

    def content(self, side: str) -> str:
        return (self.left_box if side == "left" else self.right_box).currentText()

    def apply_contents(self) -> None:
        marks = self.primary.annotation_layer
        overlay = self.mode == "overlay"
        # a Marks pane shows them filled; over the heatmap (overlay) only their outlines: a red fill over yellow
        # would read as a third colour (gui.overlay_choice)
        if marks.fill == overlay:
            marks.set_options(fill=not overlay)
        if overlay:
            shown = {"primary": {"heatmap_layer", "annotation_layer"}, "secondary": set()}
        else:
            shown = {"primary": set(CONTENTS[self.content("left")]), "secondary": set(CONTENTS[self.content("right")])}
        for pane, view in (("primary", self.primary), ("secondary", self.secondary)):
            for name in CONTENT_LAYERS:
                content_layer(view, name).visible = name in shown[pane]

    def _content_ids(self) -> tuple:
        return id(self.primary.heatmap_layer.grid), id(self.primary.disagreement_layer.comparison)

    def _on_content_changed(self) -> None:
        """A new grid or comparison arrived on the left (layers show themselves then): keep the panes' choice."""
        ids = self._content_ids()
        if ids != self._seen:
            self._seen = ids
            self.apply_contents()
            self._show_regions()

    def _on_marks_replaced(self, store) -> None:
        self.secondary.annotations = store

    # -- regions ------------------------------------------------------------------------------------
    def _show_regions(self) -> None:
        comparison = self.primary.disagreement_layer.comparison
        if comparison is not self.regions.comparison:
            self.regions.set_comparison(comparison)
        self._update_regions_panel()

    def _update_regions_panel(self) -> None:
        has = self.regions.comparison is not None
        self.regions_button.setEnabled(has)
        show = has and self.regions_button.isChecked()
        appearing = show and self.regions.isHidden()
        self.regions.setVisible(show)
        sizes = self.splitter.sizes()
        if appearing and self._sized and sizes[2] < REGIONS_WIDTH // 2:
            panes = max(2, sum(sizes) - REGIONS_WIDTH)
            self.splitter.setSizes([panes // 2, panes - panes // 2, REGIONS_WIDTH])

    def go_to_region(self, region) -> None:
        """Centre both panes on a disagreement region, zoomed to show it."""
        go_to_region(self.primary, region)

    # -- synchronised navigation -----------------------------------------------------------------------
    def _on_primary_moved(self, viewport: Viewport) -> None:
        if not self._syncing and self.mode == "split":
            self._follow(self.secondary, viewport)

    def _on_secondary_moved(self, viewport: Viewport) -> None:
        if not self._syncing:
            self._follow(self.primary, viewport)

    def _follow(self, view: SlideView, viewport: Viewport) -> None:
        """Move ``view`` to ``viewport``'s centre and scale (its own screen size kept), without echo."""
        current = view.viewport
        if (current.l0_cx, current.l0_cy, current.scale) == (viewport.l0_cx, viewport.l0_cy, viewport.scale):
            return
        self._syncing = True
        try:
            view.set_viewport(Viewport(current.l0_w, current.l0_h, current.screen_w, current.screen_h,
                                       viewport.l0_cx, viewport.l0_cy, viewport.scale))
        finally:
            self._syncing = False

    # -- closing ------------------------------------------------------------------------------------
    def release(self) -> SlideView:
        """Take the left view back out (for a single-view tab) and dispose of the right one."""
        primary, secondary = self.primary, self.secondary
        primary.viewport_changed.disconnect(self._on_primary_moved)
        primary.heatmap_layer.changed.disconnect(self._on_content_changed)
        primary.disagreement_layer.changed.disconnect(self._on_content_changed)
        primary.annotations_replaced.disconnect(self._on_marks_replaced)
        primary.slide_layer.loader.tile_loaded.disconnect(secondary.slide_layer._on_tile_loaded)
        _dispose_secondary(secondary)
        # single view again: one overlay family, the one it had, or the heatmap if a grid came meanwhile
        now = self._content_ids()
        overlay = primary.overlay
        if now[0] != self._start_ids[0] and primary.heatmap_layer.grid is not None:
            overlay = "heatmap"
        primary.set_overlay_auto(True)
        show_overlay(primary, overlay)
        primary.setParent(None)
        return primary

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            side = REGIONS_WIDTH if not self.regions.isHidden() else 0
            half = max(1, (max(self.width(), 2 * REGIONS_WIDTH) - side) // 2)
            self.splitter.setSizes([half, half, side])


def _combo(items, tip: str) -> QComboBox:
    box = QComboBox(toolTip=tip)
    box.addItems(list(items))
    return box


def content_layer(view: SlideView, name: str):
    """The layer of ``view`` a `CONTENTS` name stands for."""
    return {"heatmap_layer": view.heatmap_layer, "disagreement_layer": view.disagreement_layer,
            "annotation_layer": view.annotation_layer}[name]


def _dispose_secondary(view: SlideView) -> None:
    """Stop the right pane's loading and listeners; the reader and the cached tiles stay (the left uses them)."""
    view.release_pane()
    view.setParent(None)
    view.deleteLater()


# -- tabs of the main window -------------------------------------------------------------------------------
def slide_view_of(widget) -> SlideView | None:
    """The slide view a tab holds (the left pane of a split tab), or None (the welcome page)."""
    if isinstance(widget, SlideView):
        return widget
    if isinstance(widget, SplitView):
        return widget.primary
    return None


def split_tab(tabs: QTabWidget, view: SlideView, memory: TileMemory) -> SplitView:
    """Replace ``view``'s tab page by a split view around it (no tab-change signals on the way)."""
    index = tabs.indexOf(view)
    text, tip = tabs.tabText(index), tabs.tabToolTip(index)
    blocked = tabs.blockSignals(True)
    try:
        tabs.removeTab(index)
        split = SplitView(view, memory, choice=_CHOICES.get(view, SplitChoice()))
        tabs.insertTab(index, split, text)
        tabs.setTabToolTip(index, tip)
        tabs.setCurrentIndex(index)
    finally:
        tabs.blockSignals(blocked)
    view.show()
    return split


def unsplit_tab(tabs: QTabWidget, split: SplitView) -> SlideView:
    """Put the split's left view back as the tab page; the right view is disposed of."""
    index = tabs.indexOf(split)
    text, tip = tabs.tabText(index), tabs.tabToolTip(index)
    blocked = tabs.blockSignals(True)
    try:
        tabs.removeTab(index)
        _CHOICES[split.primary] = split.choice()
        view = split.release()
        tabs.insertTab(index, view, text)
        tabs.setTabToolTip(index, tip)
        tabs.setCurrentIndex(index)
    finally:
        tabs.blockSignals(blocked)
    view.show()
    split.deleteLater()
    return view
