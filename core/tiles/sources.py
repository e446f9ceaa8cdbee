"""Where a dataset's slides come from: slide files with their marks beside them, or a project's slides.

A `SlideSource` is one slide with the marks that label it, whether the slide is fully annotated, and
its µm/px when the file does not say it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.annotations.model import Annotation
from core.errors import AnnotationFormatError, DatasetError
from core.project.layout import PROJECT_FILE
from core.project.marks import find_marks
from core.project.model import Project
from core.project.mpp import resolve_file_mpp, resolve_mpp
from core.project.slide_settings import SlideSettingsStore


@dataclass
class SlideSource:
    """One slide with the marks that label it.

    Attributes
    ----------
    path : Path
    name : str
        Unique name within a dataset (the file stem, made unique).
    annotations : list of Annotation
        In level-0 pixels.
    fully_annotated : bool
        Unmarked tissue counts as non-tumour.
    mpp : (float, float) or None
        A µm/px override for slides that do not record it.
    declared : bool
        The user said the slide is fully annotated (``--fully-annotated``, or the slide's setting in its
        project) rather than it being assumed because a mark file lies beside it. Only a declared slide
        may have no Tumour marks on it: all its tissue is then Non-tumour (a benign slide).
    """

    path: Path
    name: str
    annotations: list[Annotation] = field(default_factory=list)
    fully_annotated: bool = True
    mpp: tuple[float, float] | None = None
    declared: bool = False


def _unique_name(stem: str, taken: set[str]) -> str:
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    taken.add(name)
    return name


def sources_from_paths(paths, fully_annotated: bool | None = None) -> list[SlideSource]:
    """Slides named on the command line: slide files, or project folders (all their slides).

    A slide file's marks come from a file beside it (``<stem>.geojson``, ``.json``, ``.xml``) or,
    failing that, from the default project when the slide is in it. A project's slides use the
    project's marks and their per-slide "fully annotated" setting unless ``fully_annotated``
    overrides it. A slide file with marks counts as fully annotated unless ``fully_annotated`` is False;
    that is an assumption (`SlideSource.declared` is False), so `plan_dataset` refuses it when no Tumour
    mark lies on the slide, rather than label all its tissue Non-tumour.

    Raises
    ------
    DatasetError
        A path that does not exist, a folder that is not a project, marks that cannot be read.
    """
    sources: list[SlideSource] = []
    taken: set[str] = set()
    settings = SlideSettingsStore()
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            if not (path / PROJECT_FILE).is_file():
                raise DatasetError(f"{path}: a folder, but not a Biopsia project (no {PROJECT_FILE}); "
                                   "name slide files or project folders")
            for source in sources_from_project(Project.open(path), fully_annotated=fully_annotated):
                source.name = _unique_name(source.name, taken)
                sources.append(source)
            continue
        if not path.is_file():
            raise DatasetError(f"{path}: no such slide file or project folder")
        try:
            found = find_marks(path)  # beside the slide, else in the default project
        except AnnotationFormatError as err:
            raise DatasetError(str(err)) from err
        marks = list(found.marks or ())
        full = found.fully_annotated if fully_annotated is None else fully_annotated
        declared = found.declared if fully_annotated is None else fully_annotated
        if not found.found and fully_annotated is None:
            raise DatasetError(f"{path}: no marks found (looked for {path.stem}.geojson/.json/.xml beside it and "
                               "in the default project); mark the tumour in Biopsia, put an annotation file "
                               "beside the slide, or pass --fully-annotated if the slide has no tumour")
        sources.append(SlideSource(path, _unique_name(path.stem, taken), marks, full,
                                   resolve_file_mpp(path, None, settings).mpp, declared=declared))
    if not sources:
        raise DatasetError("no slides given")
    return sources


def sources_from_project(project, slide_ids=None, fully_annotated: bool | None = None,
                         marks: dict | None = None) -> list[SlideSource]:
    """Slides of an open `core.project.model.Project` (all, or those in ``slide_ids``) with their saved marks.

    ``marks`` (``{slide id: [Annotation, ...]}``) gives marks already at hand (a slide open in the window, or
    read a moment ago), used instead of reading that slide's file.

    A slide's µm/px is `core.project.mpp.resolve_mpp`'s: its project settings, else a value entered
    for the file, else (later, when the slide is opened) the file's.

    Raises
    ------
    DatasetError
        When a slide's mark file cannot be read (the message names it).
    """
    settings = SlideSettingsStore()
    entries = project.slides if slide_ids is None else [project.slide(i) for i in slide_ids]
    sources, taken = [], set()
    for entry in entries:
        if marks is not None and entry.id in marks:
            found = list(marks[entry.id])
        else:
            try:
                found = list(project.load_annotations(entry.id))
            except AnnotationFormatError as err:
                raise DatasetError(str(err)) from err
        full = entry.settings.fully_annotated if fully_annotated is None else fully_annotated
        mpp = resolve_mpp(entry.path, None, entry, settings).mpp
        sources.append(SlideSource(Path(entry.path), _unique_name(Path(entry.path).stem, taken), found, full, mpp,
                                   declared=full))
    return sources
