"""Layers of the current view: visibility and opacity of each."""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtWidgets import QCheckBox, QDockWidget, QGridLayout, QLabel, QSlider, QVBoxLayout, QWidget


class LayersDock(QDockWidget):
    def __init__(self, parent=None):
        super().__init__("Layers", parent)
        self.setObjectName("LayersDock")
        self._body = QWidget()
        self._outer = QVBoxLayout(self._body)
        self._outer.setAlignment(Qt.AlignTop)
        self._grid: QGridLayout | None = None
        self.setWidget(self._body)
        self.rows: dict[str, tuple[QCheckBox, QSlider]] = {}
        self._connections: list = []

    def set_view(self, view) -> None:
        for layer, slot in self._connections:
            try:
                layer.changed.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._connections = []
        while self._outer.count():
            item = self._outer.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
            elif item.layout():
                _delete_layout(item.layout())
        self.rows = {}
        if view is None:
            self._outer.addWidget(QLabel("No slide open."))
            return
        grid = QGridLayout()
        grid.addWidget(QLabel("<b>Layer</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Opacity</b>"), 0, 1)
        for row, layer in enumerate(reversed(view.layers), start=1):  # top layer first
            check = QCheckBox(layer.name)
            check.setChecked(layer.visible)
            check.toggled.connect(lambda on, layer=layer: setattr(layer, "visible", on))
            slider = QSlider(Qt.Horizontal)
            slider.setRange(0, 100)
            slider.setValue(round(layer.opacity * 100))
            slider.valueChanged.connect(lambda v, layer=layer: setattr(layer, "opacity", v / 100))
            slot = lambda c=check, s=slider, layer=layer: _sync(c, s, layer)  # noqa: E731
            layer.changed.connect(slot)
            self._connections.append((layer, slot))
            grid.addWidget(check, row, 0)
            grid.addWidget(slider, row, 1)
            self.rows[layer.name] = (check, slider)
        self._outer.addLayout(grid)


def _sync(check: QCheckBox, slider: QSlider, layer) -> None:
    try:
        if check.isChecked() != layer.visible:
            check.setChecked(layer.visible)
        if slider.value() != round(layer.opacity * 100):
            slider.setValue(round(layer.opacity * 100))
    except RuntimeError:  # widgets of a previous view were deleted
        pass


def _delete_layout(layout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        if item.widget():
            item.widget().deleteLater()
