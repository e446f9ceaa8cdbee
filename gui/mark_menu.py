"""Right-click on a mark: a menu to give it another class, or delete it; on a draft also accept or reject it;
on a ruler measurement, delete it."""

from __future__ import annotations

from PyQt5.QtWidgets import QMenu

from shapely.geometry import LineString, Point

from core.annotations import ops
from core.annotations.proposals import is_draft
from gui.docks.class_editor import swatch

#: How near the cursor a mark's edge counts as under it (screen px), as the select tool picks.
PICK_PX = 4


def mark_at(view, screen_x: float, screen_y: float):
    """The topmost shown mark under a screen point of ``view``, or None."""
    l0_x, l0_y = view.viewport.screen_to_l0(screen_x, screen_y)
    hits = view.annotations.at_point(l0_x, l0_y, PICK_PX / view.viewport.scale)
    hidden = view.annotation_layer.hidden_classes
    return next((a for a in hits if a.class_name not in hidden), None)


def measurement_at(view, screen_x: float, screen_y: float):
    """The ruler measurement whose line passes within `PICK_PX` of a screen point, or None."""
    here = Point(screen_x, screen_y)
    for m in reversed(view.measurement_layer.measurements):  # the last drawn is on top
        line = LineString([view.viewport.l0_to_screen(x, y) for x, y in m.points_l0])
        if line.distance(here) <= PICK_PX:
            return m
    return None


def mark_menu(view, screen_x: float, screen_y: float) -> QMenu | None:
    """The menu for what is under the point: a measurement (Delete), else a mark (selected first): Accept and
    Reject for a draft, one item per class, then Delete. None: nothing there."""
    ruler = measurement_at(view, screen_x, screen_y)
    if ruler is not None:
        menu = QMenu(view)
        menu.addAction("Delete measurement").triggered.connect(lambda: view.measurement_layer.remove(ruler.id))
        return menu
    mark = mark_at(view, screen_x, screen_y)
    if mark is None:
        return None
    view.selection = {mark.id}
    menu = QMenu(view)
    if is_draft(mark):
        from gui.drafts import accept_edit, reject_edit

        menu.addSection("Draft")
        menu.addAction("Accept (A)").triggered.connect(lambda: view.apply_edit(accept_edit([mark])))
        menu.addAction("Reject (R)").triggered.connect(lambda: view.apply_edit(reject_edit([mark])))
    menu.addSection("Class")
    for cls in view.annotations.classes:
        act = menu.addAction(swatch(cls.color), cls.name)
        act.setCheckable(True)
        act.setChecked(cls.name == mark.class_name)
        act.triggered.connect(lambda _c=False, name=cls.name: view.apply_edit(
            ops.set_class(view.annotations, [mark.id], name)))
    menu.addSeparator()
    delete = menu.addAction("Delete")
    delete.triggered.connect(lambda: view.apply_edit(ops.delete(view.annotations, [mark.id])))
    return menu
