"""The heatmap's display settings (opacity, colours, threshold, tiles or smooth, outlines), bound to a view."""

from __future__ import annotations

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                             QLabel, QRadioButton, QSlider)

from gui.layers.heatmap_layer import COLORMAPS, DEFAULT_COLORMAP, DEFAULT_OPACITY


class HeatmapSettings(QGroupBox):
    """Settings applied to the current view's heatmap layer, and given to each view that becomes current.

    Signals ``threshold_changed(float)``: the heatmap's (and the comparison's) threshold moved.
    """

    threshold_changed = pyqtSignal(float)

    def __init__(self, parent=None):
        super().__init__("Heatmap", parent)
        self.view = None
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100, value=round(DEFAULT_OPACITY * 100),
                               toolTip="Heatmap opacity")
        self.opacity.valueChanged.connect(lambda v: self._layer().set_opacity(v / 100) if self._layer() else None)
        self.colormap = QComboBox(toolTip="Colours of the probabilities")
        self.colormap.addItems(list(COLORMAPS))
        self.colormap.setCurrentText(DEFAULT_COLORMAP)
        self.colormap.currentTextChanged.connect(self._on_colormap)
        self.legend = QLabel(alignment=Qt.AlignCenter)
        self.threshold_slider = QSlider(Qt.Horizontal, minimum=0, maximum=1000, value=500)
        self.threshold_box = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=1.0, singleStep=0.01, value=0.5,
                                            toolTip="Tiles at or above it are called tumour (heatmap and comparison)")
        self.threshold_slider.valueChanged.connect(lambda v: self.threshold_box.setValue(v / 1000))
        self.threshold_box.valueChanged.connect(self._on_threshold)
        self.tiles_mode, self.smooth_mode = QRadioButton("Tiles", checked=True), QRadioButton("Smooth")
        modes = QButtonGroup(self)
        for button in (self.tiles_mode, self.smooth_mode):
            modes.addButton(button)
        self.tiles_mode.toggled.connect(lambda _on: self._layer().set_mode(self.mode()) if self._layer() else None)
        self.outlines = QCheckBox("Outline tumour calls", toolTip="Outline the tiles at or above the threshold")
        self.outlines.toggled.connect(lambda on: self._layer().set_outlines(on) if self._layer() else None)

        form = QFormLayout(self)
        form.addRow("Opacity", self.opacity)
        form.addRow("Colours", self.colormap)
        form.addRow("", self.legend)
        threshold = QHBoxLayout()
        threshold.addWidget(self.threshold_slider, 1)
        threshold.addWidget(self.threshold_box)
        form.addRow("Threshold", threshold)
        mode = QHBoxLayout()
        mode.addWidget(self.tiles_mode)
        mode.addWidget(self.smooth_mode)
        mode.addStretch(1)
        form.addRow("Draw", mode)
        form.addRow("", self.outlines)

    def mode(self) -> str:
        return "tiles" if self.tiles_mode.isChecked() else "smooth"

    def threshold(self) -> float:
        return self.threshold_box.value()

    def set_threshold(self, value: float) -> None:
        """Use ``value`` as the heatmap's and the comparison's threshold (rounded down to 0.001)."""
        self.threshold_box.setValue(np.floor(float(value) * 1000 + 1e-6) / 1000)

    def set_view(self, view) -> None:
        """Show ``view``'s heatmap with these settings (None: no slide)."""
        self.view = view
        layer = self._layer()
        if layer is not None:
            layer.set_opacity(self.opacity.value() / 100)
            layer.set_colormap(self.colormap.currentText())
            layer.set_threshold(self.threshold())
            layer.set_outlines(self.outlines.isChecked())
            layer.set_mode(self.mode())
        self._show_legend()

    def _layer(self):
        """The current view's heatmap layer, or None (no view, or one already deleted)."""
        view = self.view
        return view.heatmap_layer if view is not None and not sip.isdeleted(view) else None

    def _on_threshold(self, value: float) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(value * 1000))
        self.threshold_slider.blockSignals(False)
        if self._layer() is not None:
            self._layer().set_threshold(value)
        self.threshold_changed.emit(value)

    def _on_colormap(self, name: str) -> None:
        if self._layer() is not None:
            self._layer().set_colormap(name)
        self._show_legend()

    def _show_legend(self) -> None:
        layer = self._layer()
        if layer is None:
            self.legend.clear()
        else:
            self.legend.setPixmap(QPixmap.fromImage(layer.legend_image(220, 34)))
