"""The current slide's marks: a list with class, area and note; display options; classes for drawing."""

from __future__ import annotations

from PyQt5.QtCore import QItemSelectionModel, Qt, QTimer
from PyQt5.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QGridLayout, QHBoxLayout,
                             QHeaderView, QLabel, QPushButton, QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout,
                             QWidget)

from core.annotations import ops
from core.annotations.proposals import is_draft
from core.evaluation.measure import long_axis_length, to_um
from gui.docks.class_editor import ClassEditor, swatch

ALL_CLASSES = "All classes"
COLUMNS = ("Class", "Area (mm²)", "Length (mm)", "Note")
NOTE = COLUMNS.index("Note")


def mark_length_mm(annotation, mpp) -> float | None:
    """A mark's length along its long axis (`core.evaluation.measure`), or None without a µm/px."""
    return long_axis_length(to_um(annotation.geometry, mpp)) / 1000 if mpp else None


class AnnotationsDock(QDockWidget):
    def __init__(self, parent=None):
        super().__init__("Annotations", parent)
        self.setObjectName("AnnotationsDock")
        self.view = None
        self._store = None
        self._filling = False
        self._refresh_timer = QTimer(self, singleShot=True, interval=0, timeout=self.refresh)

        self.class_combo = QComboBox(toolTip="Class given to new marks")
        self.class_combo.activated.connect(self._on_draw_class)
        self.set_class_button = QPushButton("Set class of selected", toolTip="Give the selected marks this class")
        self.set_class_button.clicked.connect(self.set_class_of_selected)
        self.classes_button = QPushButton("Classes…", toolTip="Add, rename, recolour or remove classes")
        self.classes_button.clicked.connect(self.edit_classes)
        self.filter_combo = QComboBox(toolTip="List only marks of one class")
        self.filter_combo.activated.connect(lambda _i: self.refresh())
        self.fill_check = QCheckBox("Fill", checked=True)
        self.fill_check.toggled.connect(lambda on: self._layer_option(fill=on))
        self.outline_check = QCheckBox("Outline", checked=True)
        self.outline_check.toggled.connect(lambda on: self._layer_option(outline=on))
        self.opacity_slider = QSlider(Qt.Horizontal, toolTip="Fill opacity")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(30)
        self.opacity_slider.valueChanged.connect(lambda v: self._layer_option(fill_opacity=v / 100))
        self.class_checks: dict[str, QCheckBox] = {}
        self._checks_row = QGridLayout()  # two classes a row: the panel stays narrow, the slide gets the room
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c.replace(" (", "\n(") for c in COLUMNS])  # units below: narrow
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
        self.table.horizontalHeader().setSectionResizeMode(NOTE, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(self._on_rows_selected)
        self.table.itemClicked.connect(self._on_row_clicked)
        self.table.itemChanged.connect(self._on_item_changed)
        self.count_label = QLabel()

        body = QWidget()
        grid = QGridLayout()
        grid.addWidget(QLabel("Draw as"), 0, 0)
        grid.addWidget(self.class_combo, 0, 1)
        grid.addWidget(self.classes_button, 0, 2)
        grid.addWidget(self.set_class_button, 1, 1, 1, 2)
        grid.addWidget(QLabel("Show"), 2, 0)
        grid.addLayout(self._checks_row, 2, 1, 1, 2)
        options = QHBoxLayout()
        for w in (self.fill_check, self.outline_check, QLabel("Opacity"), self.opacity_slider):
            options.addWidget(w)
        grid.addLayout(options, 3, 0, 1, 3)
        grid.addWidget(QLabel("List"), 4, 0)
        grid.addWidget(self.filter_combo, 4, 1, 1, 2)
        outer = QVBoxLayout(body)
        outer.addLayout(grid)
        outer.addWidget(self.table, 1)
        outer.addWidget(self.count_label)
        self._outer = outer
        self.setWidget(body)
        self.set_view(None)

    def add_cores(self, widget: QWidget) -> None:
        """The per-core table (`gui.core_measures.CoresTable`), below the marks."""
        self._outer.addWidget(widget)

    # -- following the current view ----------------------------------------------------------
    def set_view(self, view) -> None:
        if self.view is not None:
            for signal, slot in self._view_connections():
                try:
                    signal.disconnect(slot)
                except (TypeError, RuntimeError):
                    pass
        self._watch_store(None)
        self.view = view
        if view is not None:
            for signal, slot in self._view_connections():
                signal.connect(slot)
            self._watch_store(view.annotations)
        self.body_enabled(view is not None)
        self.refresh()

    def _view_connections(self):
        v = self.view
        return ((v.annotations_replaced, self._watch_store), (v.selection_changed, self._show_selection),
                (v.current_class_changed, self._show_current_class), (v.annotation_layer.changed, self._show_fill))

    def _show_fill(self) -> None:
        """The Fill box follows the marks' fill however it changed (an overlay key, Shift+F, the split view)."""
        fill = self.view.annotation_layer.fill if self.view is not None else True
        if self.fill_check.isChecked() != fill:
            blocked = self.fill_check.blockSignals(True)
            self.fill_check.setChecked(fill)
            self.fill_check.blockSignals(blocked)

    def _watch_store(self, store) -> None:
        if self._store is not None:
            self._store.remove_listener(self._on_store_edit)
        self._store = store
        if store is not None:
            store.add_listener(self._on_store_edit)
            self.refresh()

    def _on_store_edit(self, _edit) -> None:
        self._refresh_timer.start()  # many edits in one event-loop turn: refresh once

    def body_enabled(self, on: bool) -> None:
        self.widget().setEnabled(on)

    # -- filling the widgets ------------------------------------------------------------------
    def refresh(self) -> None:
        self._refresh_timer.stop()
        view = self.view
        store = view.annotations if view is not None else None
        classes = store.classes if store is not None else ()  # an empty store is falsy: its classes still count
        self._fill_class_widgets(classes)
        rows = []
        if store is not None:
            wanted = self.filter_combo.currentText()
            rows = [a for a in store if wanted == ALL_CLASSES or a.class_name == wanted]
        self._filling = True
        self.table.setRowCount(len(rows))
        for row, ann in enumerate(rows):
            area, length = ann.area_mm2(view.mpp), mark_length_mm(ann, view.mpp)
            name = f"{ann.class_name} (draft)" if is_draft(ann) else ann.class_name
            cells = (QTableWidgetItem(swatch(store.color_of(ann.class_name)), name),
                     QTableWidgetItem("?" if area is None else f"{area:.4f}"),
                     QTableWidgetItem("?" if length is None else f"{length:.3f}"), QTableWidgetItem(ann.note))
            for item in cells[1:3]:
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            for col, item in enumerate(cells):
                item.setData(Qt.UserRole, ann.id)
                if col != NOTE:
                    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self._filling = False
        drafts = sum(1 for a in store if is_draft(a)) if store is not None else 0
        total = (len(store) if store is not None else 0) - drafts  # drafts are not marks until accepted
        hidden = view.annotation_layer.hidden_classes if view is not None else set()
        shown = sum(1 for a in rows if a.class_name not in hidden and not is_draft(a))  # what the view draws
        text = f"{shown} of {total} marks shown" if total else "No marks yet"
        if drafts:
            text += f"; {drafts} draft{'s' * (drafts != 1)} to accept (A) or reject (R)"
        self.count_label.setText(text)
        if view is not None:
            self._show_selection(view.selection)

    def _fill_class_widgets(self, classes) -> None:
        names = [c.name for c in classes]
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        for cls in classes:
            self.class_combo.addItem(swatch(cls.color), cls.name)
        self.class_combo.blockSignals(False)
        if self.view is not None:
            self._show_current_class(self.view.current_class)
            layer = self.view.annotation_layer
            for widget, value in ((self.fill_check, layer.fill), (self.outline_check, layer.outline),
                                  (self.opacity_slider, round(layer.fill_opacity * 100))):
                widget.blockSignals(True)
                widget.setValue(value) if isinstance(widget, QSlider) else widget.setChecked(value)
                widget.blockSignals(False)
        chosen = self.filter_combo.currentText() or ALL_CLASSES
        self.filter_combo.clear()
        self.filter_combo.addItems([ALL_CLASSES, *names])
        self.filter_combo.setCurrentText(chosen if chosen in names else ALL_CLASSES)
        hidden = self.view.annotation_layer.hidden_classes if self.view else set()
        if list(self.class_checks) != names:
            while self._checks_row.count():
                self._checks_row.takeAt(0).widget().deleteLater()
            self.class_checks = {}
            for name in names:
                check = QCheckBox(name, checked=name not in hidden)
                check.toggled.connect(lambda on, n=name: self._set_class_visible(n, on))
                self._checks_row.addWidget(check, len(self.class_checks) // 2, len(self.class_checks) % 2)
                self.class_checks[name] = check
        for cls in classes:
            check = self.class_checks[cls.name]
            check.setIcon(swatch(cls.color))
            check.blockSignals(True)
            check.setChecked(cls.name not in hidden)
            check.blockSignals(False)

    def _show_current_class(self, name: str) -> None:
        self.class_combo.setCurrentText(name)

    def _show_selection(self, ids) -> None:
        self.table.blockSignals(True)
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.UserRole) in ids:
                self.table.selectRow(row) if len(ids) == 1 else self._add_row_to_selection(row)
        self.table.blockSignals(False)

    def _add_row_to_selection(self, row: int) -> None:
        index = self.table.model().index(row, 0)
        self.table.selectionModel().select(index, QItemSelectionModel.Select | QItemSelectionModel.Rows)

    # -- user actions ---------------------------------------------------------------------------
    def row_ids(self) -> list[str]:
        return [self.table.item(row, 0).data(Qt.UserRole) for row in range(self.table.rowCount())]

    def _on_rows_selected(self) -> None:
        if self.view is not None and not self._filling:
            rows = {i.row() for i in self.table.selectedIndexes()}
            self.view.selection = {self.table.item(r, 0).data(Qt.UserRole) for r in rows}

    def _on_row_clicked(self, item: QTableWidgetItem) -> None:
        ann = self.view.annotations.get(item.data(Qt.UserRole)) if self.view else None
        if ann is not None:
            self.view.selection = {ann.id}
            x0, y0, x1, y1 = ann.bounds
            self.view.centre_on((x0 + x1) / 2, (y0 + y1) / 2)

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or self.view is None or item.column() != NOTE:
            return
        self.view.apply_edit(ops.set_note(self.view.annotations, item.data(Qt.UserRole), item.text()))

    def _on_draw_class(self, _index: int) -> None:
        if self.view is not None:
            self.view.current_class = self.class_combo.currentText()

    def set_class_of_selected(self) -> None:
        view = self.view
        if view is not None:
            view.apply_edit(ops.set_class(view.annotations, view.selection, self.class_combo.currentText()))

    def _set_class_visible(self, name: str, on: bool) -> None:
        if self.view is not None:
            self.view.annotation_layer.set_class_visible(name, on)
            self._refresh_timer.start()  # the count says what is shown

    def _layer_option(self, **option) -> None:
        if self.view is not None:
            self.view.annotation_layer.set_options(**option)

    def edit_classes(self) -> ClassEditor | None:
        if self.view is None:
            return None
        editor = ClassEditor(self.view, self)
        editor.setAttribute(Qt.WA_DeleteOnClose, True)
        editor.open()
        return editor
