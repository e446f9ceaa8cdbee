"""Pick marks: click, Shift-click, rubber band; drag to move them; Delete removes them."""

from __future__ import annotations

from PyQt5.QtCore import QRectF, Qt
from PyQt5.QtGui import QColor, QKeyEvent, QMouseEvent, QPainter
from shapely.geometry import box

from core.annotations import ops
from core.view.viewport import Viewport
from gui.tools.base import Tool, draft_pen, paint_draft_outline

#: A click this close (screen pixels) to a mark's outline picks it.
PICK_TOLERANCE_PX = 4
#: The cursor must move this far (screen pixels) before a press becomes a drag.
DRAG_THRESHOLD_PX = 3


class SelectTool(Tool):
    tool_id = "select"
    label = "Select"
    shortcut = "V"
    icon = "select"
    cursor = Qt.ArrowCursor
    help = "click a mark, Shift-click to add, drag to move, drag on empty slide to select an area, Delete removes"

    def __init__(self) -> None:
        super().__init__()
        self._press_screen = None
        self._press_l0 = None
        self._offset_l0 = None  # (dx, dy) while moving the selection
        self._band_l0 = None  # rubber band corner while selecting an area
        self._clicked = None  # a mark pressed without Shift: a click that does not drag selects it alone

    def delete_selection(self) -> bool:
        view = self.view
        return view.apply_edit(ops.delete(view.annotations, view.selection))

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        view = self.view
        l0_x, l0_y = self.l0_pos(event)
        hits = view.annotations.at_point(l0_x, l0_y, self.screen_px_to_l0(PICK_TOLERANCE_PX))
        hits = [a for a in hits if a.class_name not in view.annotation_layer.hidden_classes]
        shift = bool(event.modifiers() & Qt.ShiftModifier)
        self._press_screen = event.pos()
        self._press_l0 = (l0_x, l0_y)
        if hits:
            top = hits[0].id
            if shift:
                view.selection = view.selection ^ {top}
            elif top not in view.selection:
                view.selection = {top}
            else:
                self._clicked = top
            self._offset_l0 = (0.0, 0.0) if top in view.selection else None
        else:
            if not shift:
                view.selection = ()
            self._band_l0 = (l0_x, l0_y)
        return True

    def mouse_move(self, event: QMouseEvent) -> bool:
        if self._press_screen is None:
            return False
        l0_x, l0_y = self.l0_pos(event)
        moved = (event.pos() - self._press_screen).manhattanLength() >= DRAG_THRESHOLD_PX
        if self._offset_l0 is not None and moved:
            self._offset_l0 = (l0_x - self._press_l0[0], l0_y - self._press_l0[1])
        elif self._band_l0 is not None:
            self._band_l0 = (l0_x, l0_y)
        self.repaint()
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self._press_screen is None or event.button() != Qt.LeftButton:
            return False
        view = self.view
        if self._offset_l0 is not None and self._offset_l0 != (0.0, 0.0):
            view.apply_edit(ops.move(view.annotations, view.selection, *self._offset_l0))
        elif self._clicked is not None:
            view.selection = {self._clicked}
        elif self._band_l0 is not None and (event.pos() - self._press_screen).manhattanLength() >= DRAG_THRESHOLD_PX:
            (x0, y0), (x1, y1) = self._press_l0, self._band_l0
            area = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            found = {a.id for a in view.annotations.query(*area.bounds)
                     if a.class_name not in view.annotation_layer.hidden_classes and a.geometry.intersects(area)}
            view.selection = set(view.selection) | found
        self._press_screen = self._press_l0 = self._offset_l0 = self._band_l0 = self._clicked = None
        self.repaint()
        return True

    def key_press(self, event: QKeyEvent) -> bool:
        if event.key() in (Qt.Key_Delete, Qt.Key_Backspace) and self.view.selection:
            self.delete_selection()
            return True
        if event.key() == Qt.Key_Escape and self.view.selection:
            self.view.selection = ()
            return True
        return False

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if self._offset_l0 is not None and self._offset_l0 != (0.0, 0.0):
            dx, dy = self._offset_l0
            for ann_id in self.view.selection:
                ann = self.view.annotations.get(ann_id)
                for polygon in getattr(ann.geometry, "geoms", [ann.geometry]):
                    paint_draft_outline(painter, [viewport.l0_to_screen(x + dx, y + dy)
                                                  for x, y in polygon.exterior.coords])
        if self._band_l0 is not None:
            sx0, sy0 = viewport.l0_to_screen(*self._press_l0)
            sx1, sy1 = viewport.l0_to_screen(*self._band_l0)
            painter.setPen(draft_pen(1, QColor(30, 30, 30), Qt.DashLine))
            painter.setBrush(QColor(255, 200, 0, 40))
            painter.drawRect(QRectF(min(sx0, sx1), min(sy0, sy1), abs(sx1 - sx0), abs(sy1 - sy0)))
