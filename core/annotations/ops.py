"""Edits a doctor makes, as plain functions from the store's state to an :class:`Edit`.

Nothing here changes the store: the caller applies the edit (through the undo stack in the GUI).
"""

from __future__ import annotations

from typing import Iterable

from shapely import affinity
from shapely.geometry.base import BaseGeometry

from core.annotations.geometry import clean
from core.annotations.model import Annotation, AnnotationClass, Polygonal
from core.annotations.store import AnnotationStore, ClassesEdit, Edit


def add(geometry: Polygonal | None, class_name: str, note: str = "", label: str = "Draw") -> Edit:
    geometry = clean(geometry)
    if geometry is None:
        return Edit(label=label)
    return Edit((), (Annotation(geometry, class_name, note),), label)


def delete(store: AnnotationStore, ids: Iterable[str]) -> Edit:
    return Edit(tuple(store.get(i) for i in ids if i in store), (), "Delete")


def set_class(store: AnnotationStore, ids: Iterable[str], class_name: str) -> Edit:
    before = tuple(store.get(i) for i in ids if i in store and store.get(i).class_name != class_name)
    return Edit(before, tuple(a.with_class(class_name) for a in before), f"Set class {class_name}")


def set_note(store: AnnotationStore, ann_id: str, note: str) -> Edit:
    ann = store.get(ann_id)
    if ann is None or ann.note == note:
        return Edit(label="Edit note")
    return Edit((ann,), (ann.with_note(note),), "Edit note")


def move(store: AnnotationStore, ids: Iterable[str], l0_dx: float, l0_dy: float) -> Edit:
    before = tuple(store.get(i) for i in ids if i in store)
    after = tuple(a.with_geometry(affinity.translate(a.geometry, l0_dx, l0_dy)) for a in before)
    return Edit(before, after, "Move")


def reshape(store: AnnotationStore, ann_id: str, geometry: Polygonal | None, label: str = "Edit vertices") -> Edit:
    """Give an annotation a new geometry; one that collapses to nothing is deleted."""
    ann = store.get(ann_id)
    if ann is None:
        return Edit(label=label)
    geometry = clean(geometry)
    return Edit((ann,), (ann.with_geometry(geometry),) if geometry is not None else (), label)


def paint(store: AnnotationStore, target_id: str | None, shape: BaseGeometry | None, class_name: str,
          label: str = "Brush") -> Edit:
    """Add ``shape`` to annotation ``target_id`` (a union), or make a new annotation when there is none."""
    target = store.get(target_id) if target_id else None
    if target is None:
        return add(shape, class_name, label=label)
    merged = clean(target.geometry.union(shape)) if shape is not None else None
    if merged is None:
        return Edit(label=label)
    return Edit((target,), (target.with_geometry(merged),), label)


def subtract(store: AnnotationStore, shape: BaseGeometry | None, ids: Iterable[str] | None = None,
             label: str = "Erase") -> Edit:
    """Cut ``shape`` out of the given annotations, or out of every one it crosses; emptied ones go."""
    if shape is None or shape.is_empty:
        return Edit(label=label)
    candidates = ([store.get(i) for i in ids if i in store] if ids is not None
                  else store.query(*shape.bounds))
    before, after = [], []
    for ann in candidates:
        if not ann.geometry.intersects(shape):
            continue
        rest = clean(ann.geometry.difference(shape))
        before.append(ann)
        if rest is not None:
            after.append(ann.with_geometry(rest))
    return Edit(tuple(before), tuple(after), label)


def edit_classes(store: AnnotationStore, classes: Iterable[AnnotationClass]) -> ClassesEdit:
    """Replace the class list; names must be unique."""
    classes = tuple(classes)
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return ClassesEdit(store.classes, classes)
