"""The regions of a slide a doctor has reviewed, kept beside its marks file so they survive a reopen.

The Review panel counts the region it showed as reviewed when the doctor steps on (N). Retraining uses
them: on a slide that is not fully annotated, tissue inside a reviewed region that carries no mark was
looked at and found not tumour. They are not marks (QuPath should not show them), so they live in their
own small file beside the marks, ``<slide-id>.reviewed.json`` next to ``<slide-id>.geojson``::

    {"format": "biopsia-reviewed", "version": 1,
     "regions": [{"wkt": "POLYGON ((...))", "reviewed_at": "2026-12-03T07:48:07+00:00"}, ...]}

Outlines are in level-0 pixels. The file is rewritten whole and atomically at every change (it is
small), the previous version kept as ``.bak``. An entry that cannot be read is reported and left out;
the others are kept.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import shapely
from shapely.geometry import Polygon
from shapely.ops import unary_union

from core.annotations.geometry import clean
from core.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT, VERSION = "biopsia-reviewed", 1
SUFFIX = ".reviewed.json"
#: A stored outline longer than this is not read (a hostile file).
MAX_WKT_CHARS = 2_000_000
#: A file larger than this is not read.
MAX_FILE_BYTES = 64 << 20


def reviewed_path(marks_path) -> Path:
    """``<name>.reviewed.json`` beside the marks file ``<name>.geojson``."""
    marks_path = Path(marks_path)
    return marks_path.with_name(marks_path.stem + SUFFIX)


@dataclass(frozen=True)
class ReviewedRegion:
    """One reviewed area: its outline in level-0 pixels and when it was reviewed (ISO 8601, UTC)."""

    geometry: Polygon
    reviewed_at: str

    def to_json(self) -> dict:
        return {"wkt": shapely.to_wkt(self.geometry, rounding_precision=-1), "reviewed_at": self.reviewed_at}


@dataclass
class LoadedReviewed:
    """What :func:`load_reviewed` read: the regions, and a message per entry (or file) it could not read."""

    regions: list[ReviewedRegion] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_reviewed(path) -> LoadedReviewed:
    """The reviewed regions saved at ``path`` (a ``.reviewed.json`` file); none when it does not exist.

    Never raises for a bad file: an unreadable file, or an entry that is not a polygon outline, is
    described in ``problems`` (each message names the file) and the readable entries are returned.
    """
    path = Path(path)
    out = LoadedReviewed()
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            out.problems.append(f"{path}: the reviewed regions file is too large to read; it was ignored.")
            return out
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return out
    except (OSError, ValueError) as err:
        out.problems.append(f"{path}: the reviewed regions could not be read ({err}); they were ignored.")
        return out
    entries = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        out.problems.append(f"{path}: not a reviewed regions file (no list of regions); it was ignored.")
        return out
    for i, entry in enumerate(entries):
        region, problem = _region(entry)
        if region is None:
            out.problems.append(f"{path}: reviewed region {i + 1} was left out: {problem}.")
        else:
            out.regions.append(region)
    for message in out.problems:
        log.warning("%s", message)
    return out


def _region(entry) -> tuple[ReviewedRegion | None, str]:
    """One stored entry as a region, or None and why not."""
    if not isinstance(entry, dict):
        return None, "not an object"
    text, when = entry.get("wkt"), entry.get("reviewed_at", "")
    if not isinstance(text, str) or not text or len(text) > MAX_WKT_CHARS:
        return None, "no outline"
    try:
        shape = shapely.from_wkt(text)
    except (shapely.errors.GEOSException, ValueError, TypeError) as err:
        return None, f"unreadable outline ({err})"
    if shape is None or shape.is_empty or shape.geom_type not in ("Polygon", "MultiPolygon"):
        return None, "the outline is not a polygon"
    try:
        shape = clean(shape)  # the marks' repair: bounded cost, whatever a hostile outline holds
    except shapely.errors.GEOSException as err:
        return None, f"the outline cannot be repaired ({err})"
    if shape is None:
        return None, "the outline is not a valid polygon"
    return ReviewedRegion(shape, when if isinstance(when, str) else ""), ""


def save_reviewed(path, regions) -> None:
    """Write ``regions`` to ``path`` atomically, keeping the previous file as ``.bak``.

    Raises
    ------
    OSError
        When the file cannot be written; the previous file is then untouched.
    """
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, "regions": [r.to_json() for r in regions]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=1).encode(), backup=True)


class ReviewedRegions:
    """A slide's reviewed regions, saved to ``path`` at every change (in memory only when ``path`` is None).

    Parameters
    ----------
    path : path-like or None
        The ``.reviewed.json`` file; read now.
    """

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else None
        loaded = load_reviewed(self.path) if self.path is not None else LoadedReviewed()
        self.regions: list[ReviewedRegion] = loaded.regions
        self.problems: list[str] = loaded.problems

    def geometry(self):
        """Their union, in level-0 pixels (an empty polygon when there is none)."""
        return unary_union([r.geometry for r in self.regions]) if self.regions else Polygon()

    def add(self, geometry, when: datetime | None = None) -> ReviewedRegion:
        """Record ``geometry`` (level-0) as reviewed and save. Raises OSError when it cannot be saved
        (the region is kept in memory and the next change saves it)."""
        if geometry is None or geometry.is_empty or geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"a reviewed region is a polygon, got {getattr(geometry, 'geom_type', geometry)}")
        stamp = (when or datetime.now(timezone.utc)).isoformat(timespec="seconds")
        region = ReviewedRegion(geometry, stamp)
        self.regions.append(region)
        self._save()
        return region

    def remove(self, geometry) -> bool:
        """Forget the newest region equal to ``geometry`` (Shift+N takes a review back); save. Whether one was."""
        for i in range(len(self.regions) - 1, -1, -1):
            if self.regions[i].geometry.equals(geometry):
                del self.regions[i]
                self._save()
                return True
        return False

    def _save(self) -> None:
        if self.path is not None:
            save_reviewed(self.path, self.regions)


__all__ = ["ReviewedRegion", "ReviewedRegions", "LoadedReviewed", "load_reviewed", "save_reviewed", "reviewed_path"]
