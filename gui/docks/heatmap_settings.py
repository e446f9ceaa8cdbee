"""The heatmap's display settings (opacity, colours, threshold, tiles or smooth, outlines), bound to a view."""

from __future__ import annotations

import numpy as np
from PyQt5 import sip
from PyQt5.QtCore import Qt, pyqtSignal
from PyQt5.QtGui import QPixmap
from PyQt5.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                             QLabel, QRadioButton, QSlider)

from gui.layers.heatmap_layer import COLORMAPS, DEFAULT_COLORMAP, DEFAULT_OPACITY
from gui.layers.heatmap_legend import heatmap_legend_image
from gui.style import MUTED_STYLE
from gui.threshold_text import MAX_DECIMALS, threshold_text


class ThresholdBox(QDoubleSpinBox):
    """A threshold from 0 to 1 written by `threshold_text`: 0.0033 reads 0.0033, not 0.003."""

    def __init__(self, **kwargs):
        super().__init__(decimals=MAX_DECIMALS, minimum=0.0, maximum=1.0, singleStep=0.01, **kwargs)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("0.000000") + 36)  # room for every text

    def textFromValue(self, value: float) -> str:
        return threshold_text(value)


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
        self.threshold_box = ThresholdBox(value=0.5, toolTip="Tiles at or above it are called tumour (heatmap and "
                                                             "comparison)")
        self.threshold_source = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.threshold_source.setStyleSheet(MUTED_STYLE)
        self._threshold = 0.5  # the value applied: exact, even where the box shows it rounded (threshold_text)
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
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)  # a narrow panel puts labels above their fields
        form.addRow("Opacity", self.opacity)
        form.addRow("Colours", self.colormap)
        form.addRow("", self.legend)
        threshold = QHBoxLayout()
        threshold.addWidget(self.threshold_slider, 1)
        threshold.addWidget(self.threshold_box)
        form.addRow("Threshold", threshold)
        form.addRow("", self.threshold_source)
        mode = QHBoxLayout()
        mode.addWidget(self.tiles_mode)
        mode.addWidget(self.smooth_mode)
        mode.addStretch(1)
        form.addRow("Draw", mode)
        form.addRow("", self.outlines)

    def mode(self) -> str:
        return "tiles" if self.tiles_mode.isChecked() else "smooth"

    def threshold(self) -> float:
        """The threshold applied to the heatmap and the comparison (exactly the value last set or typed)."""
        return self._threshold

    def set_threshold(self, value: float, source: str | None = None) -> None:
        """Use exactly ``value`` as the heatmap's and the comparison's threshold.

        The box shows it as `threshold_text` writes it and the slider to 0.001; the value applied is ``value`` itself, so a model's
        recorded threshold (or one chosen for a target sensitivity) is the one tiles are called at.
        ``source`` says where it came from (shown under the slider; None clears that line).
        """
        value = float(np.clip(value, 0.0, 1.0))
        self.threshold_source.setText(source or "")
        self.threshold_source.setVisible(bool(source))
        for widget, shown in ((self.threshold_box, value), (self.threshold_slider, round(value * 1000))):
            widget.blockSignals(True)
            widget.setValue(shown)
            widget.blockSignals(False)
        self._apply_threshold(value)

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
        """The user moved the slider or typed in the box: that value, as shown, is applied."""
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(value * 1000))
        self.threshold_slider.blockSignals(False)
        self.threshold_source.setText(f"{threshold_text(value)}: set by hand")
        self.threshold_source.show()
        self._apply_threshold(value)

    def _apply_threshold(self, value: float) -> None:
        self._threshold = value
        self.threshold_box.setToolTip(f"{value!r}: tiles at or above it are called tumour (heatmap and comparison)")
        if self._layer() is not None:
            self._layer().set_threshold(value)
        self._show_legend()  # the colour bar's marker follows
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
            self.legend.setPixmap(QPixmap.fromImage(heatmap_legend_image(180, 34, self.colormap.currentText(),
                                                                         self._threshold)))
