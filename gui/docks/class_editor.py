"""Edit a slide's annotation classes: add, rename, recolour, remove (each undoable)."""

from __future__ import annotations

from PyQt5.QtCore import Qt
from PyQt5.QtGui import QColor, QIcon, QPixmap
from PyQt5.QtWidgets import (QColorDialog, QDialog, QHBoxLayout, QInputDialog, QListWidget, QListWidgetItem,
                             QMessageBox, QPushButton, QVBoxLayout)

from core.annotations import AnnotationClass, ops

#: Colours offered to new classes, in turn.
PALETTE = ((33, 100, 220), (240, 160, 0), (150, 60, 190), (0, 160, 170), (120, 80, 40))


def swatch(color: tuple[int, int, int], size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


class ClassEditor(QDialog):
    """Works on the classes of ``view.annotations`` through ``view.apply_edit``, so Undo reverts each change."""

    def __init__(self, view, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Annotation classes")
        self.view = view
        self.messages: list[str] = []  # refusals shown to the user (tests read them)
        self.list = QListWidget()
        buttons = QHBoxLayout()
        for text, slot in (("Add…", self._ask_add), ("Rename…", self._ask_rename), ("Colour…", self._ask_colour),
                           ("Remove", self._ask_remove)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(close, alignment=Qt.AlignRight)
        self.refresh()

    @property
    def store(self):
        return self.view.annotations

    def refresh(self) -> None:
        current = self.selected_name()
        self.list.clear()
        for cls in self.store.classes:
            item = QListWidgetItem(swatch(cls.color), cls.name)
            self.list.addItem(item)
            if cls.name == current:
                self.list.setCurrentItem(item)

    def selected_name(self) -> str | None:
        item = self.list.currentItem()
        return item.text() if item else None

    # -- changes (also called by tests) ---------------------------------------------------------
    def add_class(self, name: str, color: tuple[int, int, int] | None = None) -> bool:
        name = name.strip()
        if not name or self.store.class_named(name) is not None:
            return self._refuse(f"There is already a class called {name!r}." if name else "A class needs a name.")
        color = color or PALETTE[len(self.store.classes) % len(PALETTE)]
        self.view.apply_edit(ops.edit_classes(self.store, (*self.store.classes, AnnotationClass(name, color))))
        self.refresh()
        return True

    def rename_class(self, old: str, new: str) -> bool:
        new = new.strip()
        if not new or (new != old and self.store.class_named(new) is not None):
            return self._refuse(f"There is already a class called {new!r}." if new else "A class needs a name.")
        classes = tuple(AnnotationClass(new, c.color) if c.name == old else c for c in self.store.classes)
        in_use = [a.id for a in self.store if a.class_name == old]
        stack = self.view.undo_stack
        stack.beginMacro(f"Rename class {old} to {new}")  # one undo step renames the class and its marks
        self.view.apply_edit(ops.edit_classes(self.store, classes))
        self.view.apply_edit(ops.set_class(self.store, in_use, new))
        stack.endMacro()
        if self.view.current_class == old:
            self.view.current_class = new
        self.refresh()
        return True

    def recolour_class(self, name: str, color: tuple[int, int, int]) -> bool:
        classes = tuple(AnnotationClass(c.name, color) if c.name == name else c for c in self.store.classes)
        self.view.apply_edit(ops.edit_classes(self.store, classes))
        self.refresh()
        return True

    def remove_class(self, name: str) -> bool:
        used = sum(1 for a in self.store if a.class_name == name)
        if used:
            return self._refuse(f"{used} annotation{'s' if used > 1 else ''} still use the class {name!r}. "
                                "Give them another class or delete them first.")
        if len(self.store.classes) <= 1:
            return self._refuse("A slide needs at least one class.")
        classes = tuple(c for c in self.store.classes if c.name != name)
        self.view.apply_edit(ops.edit_classes(self.store, classes))
        if self.view.current_class == name:
            self.view.current_class = classes[0].name
        self.refresh()
        return True

    def _refuse(self, message: str) -> bool:
        self.messages.append(message)
        box = QMessageBox(QMessageBox.Information, "Annotation classes", message, QMessageBox.Ok, self)
        box.setAttribute(Qt.WA_DeleteOnClose, True)
        box.open()
        return False

    # -- buttons -------------------------------------------------------------------------------
    def _ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "New class", "Name:")
        if ok:
            self.add_class(name)

    def _ask_rename(self) -> None:
        old = self.selected_name()
        if old:
            new, ok = QInputDialog.getText(self, "Rename class", "New name:", text=old)
            if ok and new != old:
                self.rename_class(old, new)

    def _ask_colour(self) -> None:
        name = self.selected_name()
        cls = self.store.class_named(name) if name else None
        if cls is not None:
            color = QColorDialog.getColor(QColor(*cls.color), self, f"Colour of {name}")
            if color.isValid():
                self.recolour_class(name, (color.red(), color.green(), color.blue()))

    def _ask_remove(self) -> None:
        name = self.selected_name()
        if name:
            self.remove_class(name)
