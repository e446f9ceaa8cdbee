"""Undo for annotation edits: a thin QUndoCommand over the store's exact, invertible edits."""

from __future__ import annotations

from PyQt5.QtWidgets import QUndoCommand, QUndoStack

from core.annotations.store import AnnotationStore, ClassesEdit, Edit


class EditCommand(QUndoCommand):
    """Redo applies ``edit`` to ``store``; undo applies the inverse the store returned."""

    def __init__(self, store: AnnotationStore, edit: Edit | ClassesEdit):
        super().__init__(edit.label)
        self.store = store
        self.edit = edit
        self._inverse: Edit | ClassesEdit | None = None

    def redo(self) -> None:
        self._inverse = self.store.apply(self.edit)

    def undo(self) -> None:
        if self._inverse is not None:
            self.store.apply(self._inverse)


def push_edit(stack: QUndoStack, store: AnnotationStore, edit: Edit | ClassesEdit) -> bool:
    """Apply ``edit`` through ``stack`` (so it can be undone); empty edits are not pushed. True when pushed."""
    if edit.is_empty and not _changes_properties(edit):
        return False
    stack.push(EditCommand(store, edit))
    return True


def _changes_properties(edit) -> bool:
    """An edit that only changes marks' GeoJSON properties (accepting a draft leaves geometry and class as they
    were): `Edit.is_empty` compares marks without ``extra``, so it would call this empty."""
    if not isinstance(edit, Edit):
        return False
    before = {a.id: a.extra for a in edit.before}
    return any(before.get(a.id) != a.extra for a in edit.after)
