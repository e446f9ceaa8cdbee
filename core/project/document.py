"""One open slide's document: what the window knows of a slide, apart from how it is drawn.

QuPath's ``ImageData`` is the model. A document holds the slide's reader, its marks and the session that
autosaves them, the µm/px in use and where that came from, the tissue masks and the tile plan computed for
it, and its prediction with a `PredictionState`. The window makes one per open view and drops it when the
view closes; the view and the docks read it. Nothing here imports Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.annotations import AnnotationStore
from core.project.model import Project, SlideEntry
from core.project.reviewed import ReviewedRegions, reviewed_path
from core.slide.base import SlideReader

if TYPE_CHECKING:  # the document holds the later steps' results; it needs their types, not their code
    from core.inference.predict import ProbabilityGrid
    from core.tiles.grid import TilePlan
    from core.tiles.tissue import TissueMask

#: Tissue masks a document keeps (one per µm/px it was asked for), oldest dropped first.
TISSUE_MASKS_KEPT = 4


class PredictionState(Enum):
    """Where a slide's prediction stands."""

    NONE = "none"  # nothing shown: not looked for yet, none saved, or cancelled before any tile
    LOADING = "loading"  # the newest saved prediction is being read
    SAVED = "saved"  # a saved prediction is shown
    RUNNING = "running"  # a run is filling the grid in
    DONE = "done"  # a run finished (and was saved when the slide is in a project)
    PARTIAL = "partial"  # a run was cancelled: part of the grid, not saved
    FAILED = "failed"  # a run failed; ``message`` says why


@dataclass
class SlidePrediction:
    """What a slide shows of predictions: the grid, where it came from, its state and a line about it."""

    grid: ProbabilityGrid | None = None
    state: PredictionState = PredictionState.NONE
    message: str = ""
    path: Path | None = None  # the file the grid was loaded from or saved to
    looked_up: bool = False  # saved predictions were looked for


class MarksSession(Protocol):
    """What a document needs of the session that autosaves its marks (the window's is a Qt object)."""

    saver: Any  # a `core.project.autosave` saver, or None when the marks file could not be read

    @property
    def path(self) -> Path: ...

    def close(self, timeout: float = 10.0) -> bool: ...


@dataclass(eq=False)
class SlideDocument:
    """One open slide: reader, marks, µm/px, tissue, tile plan and prediction.

    Attributes
    ----------
    reader : SlideReader
        The open slide (closed by the view that shows it).
    store : AnnotationStore
        The slide's marks, in level-0 pixels.
    mpp : (float, float) or None
        Micrometres per level-0 pixel in use; None when unknown.
    mpp_source : str or None
        Where ``mpp`` came from: ``"file"``, ``"user"`` (entered), or None.
    project, entry : Project, SlideEntry or None
        The project the slide belongs to and its entry there; None for a slide opened without one.
    session : MarksSession or None
        Autosaves ``store`` into the project.
    prediction : SlidePrediction
    tile_plan, tile_plan_key, tile_plan_error
        The last tile plan computed for the slide, the inputs it was computed from, and the error
        that stopped it (one of ``tile_plan`` and ``tile_plan_error`` is None).
    damage_reported : bool
        The user was told that part of the slide cannot be read (told once per slide).
    reviewed : ReviewedRegions
        The areas the doctor has reviewed, saved beside the marks file (read at first use).
    """

    reader: SlideReader
    store: AnnotationStore = field(default_factory=AnnotationStore)
    mpp: tuple[float, float] | None = None
    mpp_source: str | None = None
    project: Project | None = None
    entry: SlideEntry | None = None
    session: MarksSession | None = None
    prediction: SlidePrediction = field(default_factory=SlidePrediction)
    tile_plan: TilePlan | None = None
    tile_plan_key: tuple | None = None
    tile_plan_error: str | None = None
    damage_reported: bool = False
    _tissue: dict = field(default_factory=dict, repr=False)
    _reviewed: ReviewedRegions | None = field(default=None, repr=False)

    def __post_init__(self):
        self.mpp = tuple(float(v) for v in self.mpp) if self.mpp else None  # a key of the tissue masks

    @property
    def name(self) -> str:
        """The slide's name in its project, else the reader's display name."""
        return self.entry.name if self.entry is not None else self.reader.display_name

    @property
    def slide_id(self) -> str | None:
        """The slide's id in its project, or None."""
        return self.entry.id if self.entry is not None else None

    def in_project(self, project: Project) -> bool:
        """Whether the slide is open as a slide of ``project``."""
        return self.project is project and self.entry is not None

    def set_mpp(self, mpp: tuple[float, float] | None, source: str | None) -> None:
        """Use ``mpp`` (from ``source``) from now on."""
        self.mpp = tuple(float(v) for v in mpp) if mpp else None
        self.mpp_source = source

    # -- reviewed regions ----------------------------------------------------------------------
    def marks_path(self) -> Path | None:
        """The slide's marks file: its project's, else its session's; None when the marks are not saved."""
        if self.project is not None and self.entry is not None:
            return self.project.annotations_path(self.entry.id)
        return Path(self.session.path) if self.session is not None else None

    @property
    def reviewed(self) -> ReviewedRegions:
        if self._reviewed is None:
            marks = self.marks_path()
            self._reviewed = ReviewedRegions(reviewed_path(marks) if marks is not None else None)
        return self._reviewed

    def reviewed_regions(self):
        """The union of the regions the doctor has reviewed, a shapely geometry in level-0 pixels (empty when none)."""
        return self.reviewed.geometry()

    def mark_reviewed(self, geometry) -> None:
        """Record ``geometry`` (level-0) as reviewed; saved beside the marks. Raises OSError when it cannot be saved."""
        self.reviewed.add(geometry)

    def unmark_reviewed(self, geometry) -> bool:
        """Take back the review of ``geometry`` (the newest equal one). Raises OSError when it cannot be saved."""
        return self.reviewed.remove(geometry)

    # -- tissue --------------------------------------------------------------------------------
    def tissue_key(self) -> tuple:
        """What the tissue mask depends on: the slide and the µm/px in use."""
        return (str(self.reader.path), self.mpp)

    def tissue(self, key: tuple | None = None) -> TissueMask | None:
        """The tissue mask computed for ``key`` (default: the current µm/px), if any."""
        return self._tissue.get(self.tissue_key() if key is None else key)

    def keep_tissue(self, key: tuple, mask: TissueMask) -> None:
        """Keep a computed tissue mask for the next plan or run (at most `TISSUE_MASKS_KEPT`)."""
        self._tissue.pop(key, None)
        self._tissue[key] = mask
        while len(self._tissue) > TISSUE_MASKS_KEPT:
            self._tissue.pop(next(iter(self._tissue)))


def open_marks(documents, project: Project) -> dict:
    """The marks on screen of each open slide of ``project``: ``{slide id: [Annotation, ...]}``.

    Comparisons and reports use them instead of the saved files, which may be a few seconds behind.
    """
    return {doc.entry.id: doc.store.annotations() for doc in documents if doc.in_project(project)}


__all__ = ["PredictionState", "SlidePrediction", "SlideDocument", "MarksSession", "open_marks",
           "TISSUE_MASKS_KEPT"]
