"""Finding a slide's marks: beside the slide, in files or folders the user names, or in a project.

This is the one place that decides where a slide's marks come from, for the commands that take slide
files (``biopsia evaluate``, ``biopsia dataset`` and ``train``), and whether they count as a complete
marking of the slide (`FoundMarks.fully_annotated`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.annotations.formats import read_annotations
from core.annotations.model import Annotation
from core.project.layout import is_project_folder
from core.project.model import Project, SlideEntry, existing_default_project

#: Mark files looked for beside a slide (``<stem><suffix>``), in this order.
SIDECAR_SUFFIXES = (".geojson", ".json", ".xml")


@dataclass(frozen=True)
class FoundMarks:
    """A slide's marks and where they came from, or why there are none.

    Attributes
    ----------
    marks : tuple of Annotation or None
        In level-0 pixels; None when no marks were found (an empty tuple is a file with no marks).
    source : Path or None
        The file they were read from.
    entry : SlideEntry or None
        The slide in the project they came from (None for a mark file).
    reason : str
        Why none were found, saying where Biopsia looked; empty when found.
    warnings : tuple of str
        Repairs the reader made, each naming the file.
    """

    marks: tuple[Annotation, ...] | None
    source: Path | None = None
    entry: SlideEntry | None = None
    reason: str = ""
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def found(self) -> bool:
        """Whether marks were found (possibly none on the slide: an empty mark file)."""
        return self.marks is not None

    @property
    def fully_annotated(self) -> bool:
        """Whether unmarked tissue counts as non-tumour: the project's setting, else True for a mark file
        (assumed, see `declared`)."""
        return self.entry.settings.fully_annotated if self.entry is not None else self.found

    @property
    def declared(self) -> bool:
        """Whether the user said the slide is fully annotated (its project setting), not just assumed."""
        return self.entry is not None and self.entry.settings.fully_annotated


def find_marks(slide, given=None, fallback: Project | None = None) -> FoundMarks:
    """Find the marks of a slide file.

    Parameters
    ----------
    slide : path-like
        The slide file.
    given : sequence of path-like, optional
        Where to look: mark files (matched to the slide by file stem), folders of them, or project
        folders (the slide's saved marks there). When None: ``<stem>.geojson``, ``.json`` or ``.xml``
        beside the slide, then the user's default project.
    fallback : Project, optional
        The project to try last when ``given`` is None; defaults to the user's default project
        if it exists, never creating it
        (pass it when finding the marks of many slides, to open it once).

    Returns
    -------
    FoundMarks

    Raises
    ------
    AnnotationFormatError
        When a mark file found cannot be read (the message names it).
    ProjectError
        When a project folder given cannot be opened.
    """
    slide = Path(slide).expanduser().absolute()
    candidates: list[Path] = []
    for path in (Path(p).expanduser() for p in given or ()):
        if is_project_folder(path):
            found = _from_project(Project.open(path), slide)
            if found is not None:
                return found
        elif path.is_dir():
            candidates += [path / f"{slide.stem}{suffix}" for suffix in SIDECAR_SUFFIXES]
        elif path.stem == slide.stem:
            candidates.append(path)
    if given is None:
        candidates = [slide.with_suffix(suffix) for suffix in SIDECAR_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file() and candidate != slide:
            read = read_annotations(candidate)
            return FoundMarks(tuple(read.annotations), candidate, warnings=tuple(read.warnings))
    if given is None:
        project = fallback if fallback is not None else existing_default_project()
        found = _from_project(project, slide) if project is not None else None
        if found is not None:
            return found
        return FoundMarks(None, reason=f"no marks found (looked for {slide.stem}.geojson/.json/.xml beside "
                                       "it and in the default project)")
    places = ", ".join(str(p) for p in given)
    return FoundMarks(None, reason=f"no marks found (looked in {places or 'nothing: none given'})")


def _from_project(project: Project, slide: Path) -> FoundMarks | None:
    """The slide's saved marks in ``project``, or None when it is not there or has none saved."""
    entry = project.find_slide(slide)
    if entry is None or not project.annotations_path(entry.id).is_file():
        return None
    before = len(project.warnings)
    store = project.load_annotations(entry.id)
    warnings = tuple(project.warnings[before:])
    return FoundMarks(tuple(store.annotations()), project.annotations_path(entry.id), entry, warnings=warnings)
