"""Paint a region with a round brush; Alt (or Ctrl) held rubs it out of the selected mark."""

from __future__ import annotations

from PyQt5.QtGui import QColor

from core.annotations import ops
from gui.tools.stroke import StrokeTool


class BrushTool(StrokeTool):
    tool_id = "brush"
    label = "Brush"
    shortcut = "B"
    icon = "brush"
    help = ("drag to paint onto the selected mark of the current class (or a new one); Alt+drag subtracts; "
            "[ and ] or Ctrl+wheel change the size")

    def _target(self) -> str | None:
        """The selected mark of the current class that strokes add to."""
        view = self.view
        for ann_id in sorted(view.selection):
            ann = view.annotations.get(ann_id)
            if ann is not None and ann.class_name == view.current_class:
                return ann_id
        return None

    def apply_stroke(self, shape, subtracting: bool) -> None:
        view = self.view
        store = view.annotations
        if subtracting:
            ids = view.selection or [a.id for a in store.query(*shape.bounds) if a.class_name == view.current_class]
            view.apply_edit(ops.subtract(store, shape, ids, label="Brush (subtract)"))
            return
        edit = ops.paint(store, self._target(), shape, view.current_class)
        if view.apply_edit(edit):
            view.selection = {a.id for a in edit.after}

    def stroke_color(self) -> QColor:
        return QColor(*self.view.annotations.color_of(self.view.current_class))
