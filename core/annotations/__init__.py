"""Doctors' marks: plain annotation data, a store with undoable edits, geometry helpers."""

from core.annotations.model import DEFAULT_CLASSES, Annotation, AnnotationClass, new_id
from core.annotations.store import AnnotationStore, ClassesEdit, Edit

__all__ = ["Annotation", "AnnotationClass", "AnnotationStore", "DEFAULT_CLASSES", "Edit", "ClassesEdit", "new_id"]
