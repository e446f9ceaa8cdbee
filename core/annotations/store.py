"""The annotation store: holds a slide's marks and classes, applies undoable edits, answers area queries.

Every change is an :class:`Edit` that removes some annotations and adds others; applying one
returns its inverse, so undo and redo are exact and the GUI's undo stack stays a thin wrapper.
A :class:`ChangeTracker` collects the net changes since it was last asked, so that saving can
cost what the edits changed rather than what the store holds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from shapely import STRtree
from shapely.geometry import Point, box

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
        """Nothing changes: the same marks before and after, properties (``extra``) included.

        ``Annotation`` equality leaves ``extra`` out, but an edit that only changes a mark's properties
        (accepting a draft of the network: same outline and class, no longer a draft) is an edit.
        """
        return self.before == self.after and all(b.extra == a.extra for b, a in zip(self.before, self.after))


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

    Parameters
    ----------
    annotations : iterable of Annotation
    classes : sequence of AnnotationClass
    foreign : sequence, optional
        Features of the slide's file that Biopsia keeps but cannot show or edit (JSON values);
        saving writes them back unchanged.
    origin : object, optional
        Where the store was read from, set by the loader (:func:`core.project.autosave.load_saved`), so
        that an autosaver can go on from the files as they are.
    """

    def __init__(self, annotations: Iterable[Annotation] = (), classes: Sequence[AnnotationClass] = DEFAULT_CLASSES,
                 foreign: Sequence = (), origin=None):
        self._items: dict[str, Annotation] = {}
        self._classes: tuple[AnnotationClass, ...] = tuple(classes)
        self._listeners: list[Listener] = []
        self._trackers: list[ChangeTracker] = []
        self.foreign: tuple = tuple(foreign)
        self.origin = origin
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

    def snapshot(self) -> tuple[int, list[Annotation], tuple[AnnotationClass, ...]]:
        """``(revision, annotations, classes)`` taken together: the annotations are those of that revision."""
        with self._lock:
            return self.revision, list(self._items.values()), self._classes

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
                for tracker in self._trackers:
                    tracker._record(self._items, edit)
                self._items = _replaced(self._items, edit)
                self._tree = None
            if isinstance(edit, ClassesEdit):
                for tracker in self._trackers:
                    tracker._classes_changed = True
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

    def track_changes(self) -> "ChangeTracker":
        """A tracker that collects every change from now on; :meth:`ChangeTracker.close` stops it."""
        with self._lock:
            tracker = ChangeTracker(self)
            self._trackers.append(tracker)
            return tracker


@dataclass
class Change:
    """The net change to one annotation id since the base (the last :meth:`ChangeTracker.take`).

    ``annotation`` is its newest version, or None when it was deleted. ``moved`` says it left its
    place in drawing order and now comes after every annotation that stayed (it was added, or
    deleted and added again). ``base`` is the version at the base, None when it did not exist.
    """

    annotation: Annotation | None
    moved: bool
    base: Annotation | None


@dataclass
class Changes:
    """What changed between two moments: per id in the order to replay, and the classes if they changed.

    Replaying means, per entry: deleted -> remove; ``moved`` -> remove if there, then append;
    otherwise replace in place. That gives the store's contents and drawing order exactly.
    ``annotations`` and ``classes_now`` are the whole store at ``revision``.
    """

    revision: int
    entries: dict[str, Change] = field(default_factory=dict)
    classes: tuple[AnnotationClass, ...] | None = None
    annotations: list[Annotation] = field(default_factory=list)
    classes_now: tuple[AnnotationClass, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.entries and self.classes is None

    def then(self, newer: "Changes") -> "Changes":
        """These changes followed by ``newer`` (taken later from the same tracker), as one."""
        entries = dict(self.entries)
        for ann_id, change in newer.entries.items():
            older = entries.get(ann_id)
            if older is None:
                entries[ann_id] = change
            elif change.moved or change.annotation is None:
                del entries[ann_id]  # to the end: it left its place again
                entries[ann_id] = Change(change.annotation, True, older.base)
            else:
                entries[ann_id] = Change(change.annotation, older.moved, older.base)
        classes = newer.classes if newer.classes is not None else self.classes
        return Changes(newer.revision, entries, classes, newer.annotations, newer.classes_now)


class ChangeTracker:
    """Collects a store's net changes between calls of :meth:`take` (made by :meth:`AnnotationStore.track_changes`)."""

    def __init__(self, store: AnnotationStore):
        self._store = store
        self._entries: dict[str, Change] = {}
        self._classes_changed = False
        self.start_revision = store.revision

    def _record(self, items: dict[str, Annotation], edit: Edit) -> None:
        """Note an edit about to be applied to ``items`` (under the store's lock), as :func:`_replaced` applies it."""
        added = {a.id: a for a in edit.after}
        for ann in edit.before:
            if ann.id not in added:
                old = self._entries.pop(ann.id, None)
                self._entries[ann.id] = Change(None, True, old.base if old else items[ann.id])
        for ann_id, ann in added.items():
            old = self._entries.get(ann_id)
            if ann_id in items:  # replaced in place
                self._entries[ann_id] = Change(ann, old.moved, old.base) if old else Change(ann, False, items[ann_id])
            else:  # appended
                self._entries.pop(ann_id, None)
                self._entries[ann_id] = Change(ann, True, old.base if old else None)

    def take(self) -> Changes:
        """The changes since the last call (or since the tracker was made), with the store as it is now."""
        store = self._store
        with store._lock:
            entries = {i: c for i, c in self._entries.items() if c.annotation is not None or c.base is not None}
            changes = Changes(store.revision, entries, store._classes if self._classes_changed else None,
                              list(store._items.values()), store._classes)
            self._entries = {}
            self._classes_changed = False
            return changes

    def close(self) -> None:
        """Stop collecting."""
        with self._store._lock:
            if self in self._store._trackers:
                self._store._trackers.remove(self)


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
