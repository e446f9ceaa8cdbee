"""The main window's annotation side: tools, undo across slide tabs, the Annotate toolbar, menus and dock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt5.QtCore import QObject, Qt
from PyQt5.QtGui import QKeySequence
from PyQt5.QtWidgets import QAction, QActionGroup, QComboBox, QLabel, QToolBar, QUndoGroup

from core.annotations import ops
from core.annotations.store import ClassesEdit
from core.errors import BiopsiaError
from gui import measurements
from gui.docks.annotations_dock import AnnotationsDock
from gui.docks.class_editor import swatch
from gui.icons import icon
from gui.tools import TOOLS

if TYPE_CHECKING:
    from gui.main_window import MainWindow
    from gui.slide_view import SlideView

CONTROLS_HTML = """
<h3>Annotating</h3>
<ul><li>M move · V select · I edit vertices · P polygon · F freehand · B brush · Q rectangle · L ellipse ·
E eraser · U ruler</li>
<li>Ruler: click the points of a line, its length shows as you go; double-click or Enter keeps it</li>
<li>Drafts the network proposed (Model ▸ Propose marks, dashed): A accept · R reject the selected ones;
edit a draft with any tool, then A &nbsp; N / Shift+N: next / previous region to review</li>
<li>Polygon: click corners, double-click or Enter to close, Backspace removes a corner, Esc cancels</li>
<li>Brush / eraser: [ and ] or Ctrl+wheel change the size; Alt+drag with the brush subtracts</li>
<li>Rectangle / ellipse: Shift for a square / circle</li>
<li>1 … 9: draw as the first … ninth class &nbsp; right-click a mark: its class, or delete it (a draft: accept
or reject it; a ruler line: delete it)</li>
<li>Delete or Backspace: delete the selected marks &nbsp; Ctrl+Z undo &nbsp; Ctrl+Shift+Z or Ctrl+Y redo</li></ul>
"""


class AnnotationController(QObject):
    """Owns the undo group (one stack per slide view), the tool actions and the annotations dock."""

    def __init__(self, win: "MainWindow"):
        super().__init__(win)
        self.win = win
        self.tool_id = "pan"
        self.view: SlideView | None = None
        self.undo_group = QUndoGroup(win)
        self.dock = AnnotationsDock(win)
        self.actions = self._build_actions()
        self.toolbar = self._build_toolbar()
        self._fill_menus()

    # -- actions, menus, toolbar ---------------------------------------------------------------
    def _build_actions(self) -> dict[str, QAction]:
        win, a = self.win, {}
        self.tool_group = QActionGroup(win)
        for tool_id, tool in TOOLS.items():
            act = QAction(icon(tool.icon), tool.label, win, checkable=True, checked=tool_id == self.tool_id)
            act.setShortcut(QKeySequence(tool.shortcut))
            act.setToolTip(tool.tooltip())
            act.setStatusTip(tool.tooltip())
            act.triggered.connect(lambda _c=False, t=tool_id: self.select_tool(t))
            self.tool_group.addAction(act)
            a[f"tool_{tool_id}"] = act
        a["undo"] = self.undo_group.createUndoAction(win, "&Undo")
        a["redo"] = self.undo_group.createRedoAction(win, "&Redo")
        a["undo"].setShortcuts(QKeySequence.keyBindings(QKeySequence.Undo))
        a["redo"].setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        a["delete"] = QAction(icon("delete"), "&Delete selected marks", win)
        a["delete"].setShortcuts([QKeySequence(Qt.Key_Delete), QKeySequence(Qt.Key_Backspace)])
        a["delete"].triggered.connect(self.delete_selection)
        a["clear_measurements"] = QAction("Clear &measurements", win, toolTip="Remove the ruler's lines on this slide")
        a["clear_measurements"].triggered.connect(self.clear_measurements)
        a["classes"] = QAction("Annotation &classes…", win)
        a["classes"].triggered.connect(self.dock.edit_classes)
        for n in range(1, 10):  # keys 1-9: the n-th class draws the next marks
            act = QAction(f"Draw as class {n}", win)
            act.setShortcut(QKeySequence(str(n)))
            act.triggered.connect(lambda _c=False, i=n - 1: self.pick_class(i))
            win.addAction(act)
            a[f"class_{n}"] = act
        for name, tip in (("undo", "Undo (Ctrl+Z)"), ("redo", "Redo (Ctrl+Shift+Z, Ctrl+Y)"),
                          ("delete", "Delete the selected marks (Delete)")):
            a[name].setIcon(icon(name))
            a[name].setToolTip(tip)
            a[name].setStatusTip(tip)
        return a

    def _fill_menus(self) -> None:
        a = self.actions
        edit = self.win.edit_menu
        for name in ("undo", "redo", None, "delete", "clear_measurements", None, "classes"):
            edit.addAction(a[name]) if name else edit.addSeparator()
        tool_menu = edit.addMenu("&Tool")
        for tool_id in TOOLS:
            tool_menu.addAction(a[f"tool_{tool_id}"])
            self.win.tools_menu.addAction(a[f"tool_{tool_id}"])

    def _build_toolbar(self) -> QToolBar:
        tb = QToolBar("Annotate", self.win)
        tb.setObjectName("AnnotateToolbar")
        tb.setMovable(False)
        for tool_id in TOOLS:
            tb.addAction(self.actions[f"tool_{tool_id}"])
        tb.addSeparator()
        tb.addWidget(QLabel(" Class "))
        self.class_combo = QComboBox(tb, toolTip="Class given to new marks")
        self.class_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.class_combo.setMinimumContentsLength(8)
        self.class_combo.activated.connect(
            lambda _i: self.view and setattr(self.view, "current_class", self.class_combo.currentText()))
        tb.addWidget(self.class_combo)
        tb.addSeparator()
        for name in ("undo", "redo", "delete"):
            tb.addAction(self.actions[name])
        return tb

    # -- views ---------------------------------------------------------------------------------
    def view_opened(self, view: "SlideView") -> None:
        self.undo_group.addStack(view.undo_stack)
        doc = view.document
        view.measurement_layer.set_measurements(measurements.load(doc.entry))
        view.measurement_layer.edited.connect(lambda v=view: self._save_measurements(v))
        view.set_tool(TOOLS[self.tool_id]())
        view.current_class_changed.connect(lambda _name, v=view: v is self.view and self._fill_class_combo())
        view.annotations_replaced.connect(lambda _s, v=view: v is self.view and self._fill_class_combo())
        view.annotations_edited.connect(
            lambda edit, v=view: v is self.view and isinstance(edit, ClassesEdit) and self._fill_class_combo())

    def set_view(self, view: "SlideView | None") -> None:
        """The current tab changed."""
        self.view = view
        self.undo_group.setActiveStack(view.undo_stack if view is not None else None)
        if view is not None and view.tool.tool_id != self.tool_id:
            view.set_tool(TOOLS[self.tool_id]())
        for act in (*self.tool_group.actions(), self.actions["delete"], self.actions["classes"]):
            act.setEnabled(view is not None)
        self.class_combo.setEnabled(view is not None)
        self._fill_class_combo()
        self.dock.set_view(view)

    def _fill_class_combo(self) -> None:
        combo, view = self.class_combo, self.view
        combo.clear()
        if view is None:
            return
        for cls in view.annotations.classes:
            combo.addItem(swatch(cls.color), cls.name)
        combo.setCurrentText(view.current_class)

    # -- commands ------------------------------------------------------------------------------
    def select_tool(self, tool_id: str) -> None:
        """Every open slide gets the tool (each its own instance)."""
        self.tool_id = tool_id
        self.actions[f"tool_{tool_id}"].setChecked(True)
        for view in self.win.views():
            if view.tool.tool_id != tool_id:
                view.set_tool(TOOLS[tool_id]())

    def pick_class(self, index: int) -> None:
        """Keys 1-9: the ``index``-th class of the current slide draws the next marks (none beyond the list)."""
        view = self.view
        if view is not None and index < len(view.annotations.classes):
            view.current_class = view.annotations.classes[index].name

    def _save_measurements(self, view: "SlideView") -> None:
        doc = view.document
        try:
            measurements.save(doc.project, doc.entry, view.measurement_layer.measurements)
        except BiopsiaError as err:
            self.win.show_error("Could not save the measurements", str(err))

    def clear_measurements(self) -> None:
        if self.view is not None:
            self.view.measurement_layer.clear()

    def delete_selection(self) -> None:
        view = self.view
        if view is not None and view.selection:
            view.apply_edit(ops.delete(view.annotations, view.selection))
