"""The annotation store: holds a slide's marks and classes, applies undoable edits, answers area queries.

Every change is an :class:`Edit` that removes some annotations and adds others; applying one
returns its inverse, so undo and redo are exact and the GUI's undo stack stays a thin wrapper.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from shapely import STRtree
from shapely.geometry import box

from core.annotations.model import DEFAULT_CLASSES, Annotation, AnnotationClass


@dataclass(frozen=True)
class Edit:
    """Remove ``before`` (matched by id), then add ``after``. ``label`` names it for menus ("Brush")."""

    before: tuple[Annotation, ...] = ()
    after: tuple[Annotation, ...] = ()
    label: str = "Edit"

    def inverse(self) -> "Edit":
        return Edit(self.after, self.before, self.label)

    @property
    def is_empty(self) -> bool:
        return self.before == self.after


@dataclass(frozen=True)
class ClassesEdit:
    """Replace the list of classes (names, colours, order)."""

    before: tuple[AnnotationClass, ...]
    after: tuple[AnnotationClass, ...]
    label: str = "Edit classes"

    def inverse(self) -> "ClassesEdit":
        return ClassesEdit(self.after, self.before, self.label)

    @property
    def is_empty(self) -> bool:
        return self.before == self.after


Listener = Callable[[Edit | ClassesEdit], None]


class AnnotationStore:
    """A slide's annotations in drawing order, its classes, and change listeners.

    Thread-safe for reads from other threads (autosave); edits come from one thread.
    """

    def __init__(self, annotations: Iterable[Annotation] = (), classes: Sequence[AnnotationClass] = DEFAULT_CLASSES):
        self._items: dict[str, Annotation] = {}
        self._classes: tuple[AnnotationClass, ...] = tuple(classes)
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        self._tree: STRtree | None = None
        self._tree_ids: list[str] = []
        self.revision = 0  # increases with every applied edit (autosave compares it)
        for ann in annotations:
            self._items[ann.id] = ann

    # -- reading --------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Annotation]:
        return iter(self.annotations())

    def __contains__(self, ann_id: str) -> bool:
        return ann_id in self._items

    def get(self, ann_id: str) -> Annotation | None:
        return self._items.get(ann_id)

    def annotations(self) -> list[Annotation]:
        """A snapshot, in drawing order (oldest first)."""
        with self._lock:
            return list(self._items.values())

    @property
    def classes(self) -> tuple[AnnotationClass, ...]:
        return self._classes

    def class_named(self, name: str) -> AnnotationClass | None:
        return next((c for c in self._classes if c.name == name), None)

    def color_of(self, class_name: str) -> tuple[int, int, int]:
        cls = self.class_named(class_name)
        return cls.color if cls else (255, 200, 0)

    def query(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float) -> list[Annotation]:
        """Annotations whose bounding boxes meet the rectangle, in drawing order."""
        with self._lock:
            if not self._items:
                return []
            if self._tree is None:
                # Tree indices follow drawing order, so sorted hits come out oldest first.
                self._tree_ids = list(self._items)
                self._tree = STRtree([box(*self._items[i].bounds) for i in self._tree_ids])
            hits = sorted(self._tree.query(box(l0_x0, l0_y0, l0_x1, l0_y1)))
            return [self._items[self._tree_ids[i]] for i in hits]

    def at_point(self, l0_x: float, l0_y: float, tolerance: float = 0.0) -> list[Annotation]:
        """Annotations covering (or within ``tolerance`` of) a point, topmost first."""
        from shapely.geometry import Point

        point = Point(l0_x, l0_y)
        near = self.query(l0_x - tolerance, l0_y - tolerance, l0_x + tolerance, l0_y + tolerance)
        return [a for a in reversed(near) if a.geometry.distance(point) <= tolerance]

    # -- changing --------------------------------------------------------------
    def apply(self, edit: Edit | ClassesEdit) -> Edit | ClassesEdit:
        """Apply an edit and tell the listeners; returns the inverse edit (for undo)."""
        with self._lock:
            if isinstance(edit, ClassesEdit):
                self._classes = tuple(edit.after)
            else:
                missing = [a.id for a in edit.before if a.id not in self._items]
                if missing:
                    raise KeyError(f"edit refers to annotations that are not in the store: {missing}")
                self._items = _replaced(self._items, edit)
                self._tree = None
            self.revision += 1
        for listener in list(self._listeners):
            listener(edit)
        return edit.inverse()

    def replace_all(self, annotations: Iterable[Annotation], label: str = "Replace all") -> Edit:
        """One edit that swaps every annotation for ``annotations`` (imports)."""
        return Edit(tuple(self.annotations()), tuple(annotations), label)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


def _replaced(items: dict[str, Annotation], edit: Edit) -> dict[str, Annotation]:
    """Items after ``edit``; an annotation replaced by one with the same id keeps its place in drawing order."""
    removed = {a.id for a in edit.before}
    added = {a.id: a for a in edit.after}
    if not removed:
        return {**items, **added}
    result = {}
    for ann_id, ann in items.items():
        if ann_id in added:
            result[ann_id] = added.pop(ann_id)
        elif ann_id not in removed:
            result[ann_id] = ann
    result.update(added)
    return result
