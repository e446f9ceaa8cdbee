"""Edit a mark's outline: drag a vertex, double-click an edge to add one, Alt- or right-click to remove one."""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QMouseEvent, QPainter

from core.annotations import ops
from core.annotations import vertices as vx
from core.view.viewport import Viewport
from gui.tools.base import Tool, paint_draft_outline

#: A press this close (screen pixels) to a vertex grabs it.
GRAB_PX = 7


class VertexTool(Tool):
    tool_id = "vertex"
    label = "Edit vertices"
    shortcut = "I"
    icon = "vertex"
    cursor = Qt.CrossCursor
    help = "drag a vertex of the selected mark, double-click an edge to add one, Alt- or right-click one to remove it"

    def __init__(self) -> None:
        super().__init__()
        self._grab: tuple[str, vx.VertexRef] | None = None
        self._preview = None  # the geometry while dragging

    def activate(self, view) -> None:
        super().activate(view)
        view.annotation_layer.show_vertices = True
        view.update()

    def deactivate(self, view) -> None:
        view.annotation_layer.show_vertices = False
        view.update()
        super().deactivate(view)

    def _find_vertex(self, l0_x: float, l0_y: float):
        tolerance = self.screen_px_to_l0(GRAB_PX)
        for ann_id in self.view.selection:
            ref = vx.nearest_vertex(self.view.annotations.get(ann_id).geometry, l0_x, l0_y, tolerance)
            if ref is not None:
                return ann_id, ref
        return None

    def mouse_press(self, event: QMouseEvent) -> bool:
        if event.button() not in (Qt.LeftButton, Qt.RightButton):
            return False
        view = self.view
        l0_x, l0_y = self.l0_pos(event)
        found = self._find_vertex(l0_x, l0_y)
        remove = event.button() == Qt.RightButton or bool(event.modifiers() & Qt.AltModifier)
        if found is not None and remove:
            ann_id, ref = found
            geometry = vx.deleted_vertex(view.annotations.get(ann_id).geometry, ref)
            view.apply_edit(ops.reshape(view.annotations, ann_id, geometry, "Delete vertex"))
            return True
        if found is not None and event.button() == Qt.LeftButton:
            self._grab = found
            return True
        if event.button() == Qt.LeftButton:  # elsewhere: pick the mark to edit
            hits = view.annotations.at_point(l0_x, l0_y, self.screen_px_to_l0(GRAB_PX))
            view.selection = {hits[0].id} if hits else ()
            return True
        return False

    def mouse_move(self, event: QMouseEvent) -> bool:
        if self._grab is None:
            return False
        ann_id, ref = self._grab
        self._preview = vx.moved_vertex(self.view.annotations.get(ann_id).geometry, ref, *self.l0_pos(event))
        self.repaint()
        return True

    def mouse_release(self, event: QMouseEvent) -> bool:
        if self._grab is None or event.button() != Qt.LeftButton:
            return False
        ann_id, ref = self._grab
        if self._preview is not None:
            geometry = vx.moved_vertex(self.view.annotations.get(ann_id).geometry, ref, *self.l0_pos(event))
            self.view.apply_edit(ops.reshape(self.view.annotations, ann_id, geometry, "Move vertex"))
        self._grab = self._preview = None
        self.repaint()
        return True

    def mouse_double_click(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.LeftButton:
            return False
        view = self.view
        l0_x, l0_y = self.l0_pos(event)
        tolerance = self.screen_px_to_l0(GRAB_PX)
        for ann_id in view.selection:
            geometry = view.annotations.get(ann_id).geometry
            if vx.nearest_vertex(geometry, l0_x, l0_y, tolerance) is not None:
                continue
            edge = vx.nearest_edge(geometry, l0_x, l0_y, tolerance)
            if edge is not None:
                ref, (foot_x, foot_y) = edge
                new = vx.inserted_vertex(geometry, ref, foot_x, foot_y)
                view.apply_edit(ops.reshape(view.annotations, ann_id, new, "Add vertex"))
                return True
        return False

    def paint_overlay(self, painter: QPainter, viewport: Viewport) -> None:
        if self._preview is None:
            return
        for polygon in vx.parts_of(self._preview):
            for ring in vx.rings_of(polygon):
                paint_draft_outline(painter, [viewport.l0_to_screen(x, y) for x, y in ring])
