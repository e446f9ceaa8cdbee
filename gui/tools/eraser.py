"""Rub out: the swept area is cut out of every visible mark it crosses, as one undoable edit per stroke."""

from __future__ import annotations

from PyQt5.QtGui import QColor

from core.annotations import ops
from gui.tools.stroke import StrokeTool


class EraserTool(StrokeTool):
    tool_id = "eraser"
    label = "Eraser"
    shortcut = "E"
    icon = "eraser"
    help = "drag across marks to cut them away; [ and ] or Ctrl+wheel change the size"

    def apply_stroke(self, shape, subtracting: bool) -> None:
        view = self.view
        hidden = view.annotation_layer.hidden_classes
        ids = [a.id for a in view.annotations.query(*shape.bounds) if a.class_name not in hidden]
        view.apply_edit(ops.subtract(view.annotations, shape, ids))

    def stroke_color(self) -> QColor:
        return QColor(60, 60, 60)
