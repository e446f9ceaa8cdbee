"""Annotations are plain, immutable data: a geometry in level-0 pixels, a class, a note."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from core.annotations.text import clean_text, is_clean

Polygonal = Polygon | MultiPolygon


@dataclass(frozen=True)
class AnnotationClass:
    """A named class of marks with its display colour (RGB 0-255)."""

    name: str
    color: tuple[int, int, int]

    def __post_init__(self) -> None:
        if isinstance(self.name, str) and not is_clean(self.name):  # every file can hold the name
            object.__setattr__(self, "name", clean_text(self.name))
        if not self.name or not self.name.strip():
            raise ValueError("a class needs a name")
        if len(self.color) != 3 or not all(0 <= int(c) <= 255 for c in self.color):
            raise ValueError(f"class {self.name!r}: colour must be three values 0-255, got {self.color!r}")


TUMOUR = AnnotationClass("Tumour", (220, 30, 30))
BENIGN = AnnotationClass("Benign", (30, 160, 60))
EXCLUDE = AnnotationClass("Exclude", (128, 128, 128))
#: Classes of a new project: tumour, benign tissue, and regions to leave out (artefacts, pen marks, blur).
DEFAULT_CLASSES = (TUMOUR, BENIGN, EXCLUDE)


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Annotation:
    """One mark. ``geometry`` is a valid Polygon or MultiPolygon (holes allowed) in level-0 pixels.

    Immutable: an edit replaces the whole annotation, which makes undo exact. ``extra`` holds
    what the mark's file said that Biopsia does not interpret (a GeoJSON feature's other
    ``"properties"`` and ``"members"``, as JSON values): it is written back unchanged, travels
    with the mark through edits, takes no part in comparisons, and must not be modified.
    """

    geometry: Polygonal
    class_name: str = TUMOUR.name
    note: str = ""
    id: str = field(default_factory=new_id)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, (Polygon, MultiPolygon)):
            raise TypeError(f"annotation geometry must be polygonal, got {self.geometry.geom_type}")
        for name in ("class_name", "note", "id"):  # typed, imported or replayed: every file can hold it
            value = getattr(self, name)
            if isinstance(value, str) and not is_clean(value):
                object.__setattr__(self, name, clean_text(value))

    def with_geometry(self, geometry: Polygonal) -> "Annotation":
        return replace(self, geometry=geometry)

    def with_class(self, class_name: str) -> "Annotation":
        return replace(self, class_name=class_name)

    def with_note(self, note: str) -> "Annotation":
        return replace(self, note=note)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) in level-0 pixels."""
        return self.geometry.bounds

    @property
    def area_l0(self) -> float:
        """Area in square level-0 pixels."""
        return float(self.geometry.area)

    def area_mm2(self, mpp: tuple[float, float] | None) -> float | None:
        """Area in mm², or None when the slide's µm/px is unknown."""
        if not mpp:
            return None
        return self.area_l0 * mpp[0] * mpp[1] / 1e6


def is_polygonal(geometry: BaseGeometry | None) -> bool:
    return isinstance(geometry, (Polygon, MultiPolygon)) and not geometry.is_empty
