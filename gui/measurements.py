"""Ruler measurements: lines and polylines a doctor measured, kept in the project and exported with the marks.

A measurement is not a mark (marks are areas; a measurement has no class and labels no tile). It is kept
in the slide's project entry, ``settings["measurements"]`` (a key `core.project.settings.SlideSettings`
keeps and writes back as it is), as ``{"id", "points_l0"}``. An exported QuPath GeoJSON file carries each one
as a ``LineString`` feature after the marks, with ``"biopsia_measurement": true`` and its length in µm
(QuPath shows it as a line annotation); Biopsia's reader returns such features as ``AnnotationSet.foreign``,
from which an import takes the measurements back. Plain data, no Qt.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass, field

SETTINGS_KEY = "measurements"
#: The GeoJSON property that says a feature is a Biopsia measurement.
MEASUREMENT_KEY = "biopsia_measurement"


@dataclass(frozen=True)
class Measurement:
    """A line or polyline in level-0 pixels."""

    points_l0: tuple[tuple[float, float], ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def length_um(self, mpp: tuple[float, float] | None) -> float | None:
        return polyline_um(self.points_l0, mpp)

    def to_json(self) -> dict:
        return {"id": self.id, "points_l0": [[round(x, 3), round(y, 3)] for x, y in self.points_l0]}

    @classmethod
    def from_json(cls, raw) -> "Measurement | None":
        try:
            points = tuple((float(x), float(y)) for x, y in raw["points_l0"])
            return cls(points, str(raw.get("id") or uuid.uuid4().hex)) if len(points) >= 2 else None
        except (KeyError, TypeError, ValueError):
            return None


def polyline_um(points_l0, mpp: tuple[float, float] | None) -> float | None:
    """The length of a polyline in micrometres (x and y scaled by their own µm/px), None without a µm/px."""
    if not mpp:
        return None
    return sum(math.hypot((x1 - x0) * mpp[0], (y1 - y0) * mpp[1])
               for (x0, y0), (x1, y1) in zip(points_l0, points_l0[1:]))


def length_text(um: float | None, l0_px: float = 0.0) -> str:
    """``850 µm`` below a millimetre, ``1.234 mm`` from one up; pixels when the µm/px is unknown."""
    if um is None:
        return f"{l0_px:,.0f} px"
    return f"{um:,.0f} µm" if um < 1000 else f"{um / 1000:.3f} mm"


def load(entry) -> list[Measurement]:
    """The measurements a project slide entry keeps (none for a slide outside a project)."""
    raw = entry.settings.extra.get(SETTINGS_KEY, []) if entry is not None else []
    found = [Measurement.from_json(r) for r in raw] if isinstance(raw, list) else []
    return [m for m in found if m is not None]


def save(project, entry, measurements) -> None:
    """Keep ``measurements`` in the entry and save project.json (atomically, by `Project.save`)."""
    if project is None or entry is None:
        return
    extra = dict(entry.settings.extra)
    extra[SETTINGS_KEY] = [m.to_json() for m in measurements]
    entry.settings = dataclasses.replace(entry.settings, extra=extra)
    project.save()


def geojson_features(measurements, mpp) -> list[dict]:
    """QuPath GeoJSON LineString features, one per measurement, saying they are measurements."""
    out = []
    for m in measurements:
        um = m.length_um(mpp)
        props = {"objectType": "annotation", "name": f"Ruler {length_text(um)}", MEASUREMENT_KEY: True,
                 "isLocked": False}
        if um is not None:
            props["length_um"] = round(um, 3)
        out.append({"type": "Feature", "id": str(uuid.UUID(m.id)) if len(m.id) == 32 else m.id,
                    "geometry": {"type": "LineString", "coordinates": [list(p) for p in m.to_json()["points_l0"]]},
                    "properties": props})
    return out


def from_features(features) -> list[Measurement]:
    """The measurements among a file's foreign features (LineStrings marked as measurements)."""
    out = []
    for f in features:
        if not isinstance(f, dict):
            continue
        geometry, props = f.get("geometry") or {}, f.get("properties") or {}
        if geometry.get("type") == "LineString" and props.get(MEASUREMENT_KEY):
            m = Measurement.from_json({"id": str(f.get("id") or "").replace("-", ""),
                                       "points_l0": geometry.get("coordinates")})
            if m is not None:
                out.append(m)
    return out
