"""Right-click on a mark: a menu to give it another class, or delete it."""

from __future__ import annotations

from PyQt5.QtWidgets import QMenu

from core.annotations import ops
from gui.docks.class_editor import swatch

#: How near the cursor a mark's edge counts as under it (screen px), as the select tool picks.
PICK_PX = 4


def mark_at(view, screen_x: float, screen_y: float):
    """The topmost shown mark under a screen point of ``view``, or None."""
    l0_x, l0_y = view.viewport.screen_to_l0(screen_x, screen_y)
    hits = view.annotations.at_point(l0_x, l0_y, PICK_PX / view.viewport.scale)
    hidden = view.annotation_layer.hidden_classes
    return next((a for a in hits if a.class_name not in hidden), None)


def mark_menu(view, screen_x: float, screen_y: float) -> QMenu | None:
    """The menu for the mark under the point (selected first): one item per class, then Delete. None: no mark."""
    mark = mark_at(view, screen_x, screen_y)
    if mark is None:
        return None
    view.selection = {mark.id}
    menu = QMenu(view)
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
