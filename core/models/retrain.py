"""Retrain in the loop (issue 15): the tile set a project's doctors' decisions label, for fine-tuning a model.

Which marks count is decided where every dataset decides it (`core.tiles.labels.label_tiles`): accepted
drafts are ordinary marks, rejected drafts are Benign marks, and drafts nobody decided on count for
nothing. What retraining adds is the reviewed regions (`core.project.reviewed`): on a slide that is not
fully annotated, a region the doctor reviewed counts as Benign where no Tumour mark is
(`core.tiles.labels.reviewed_as_benign`), so only tiles inside marked or reviewed regions get a label; on a
fully annotated slide every tissue tile is labelled as always. The tiles are then read like any dataset's
(`core.tiles.planning.plan_dataset`), and `core.models.train.train` fine-tunes from the parent with
``init_from``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.project.reviewed import load_reviewed, reviewed_path
from core.tiles.labels import reviewed_as_benign
from core.tiles.sources import SlideSource, sources_from_project


@dataclass
class RetrainSources:
    """The project's slides as retraining labels them, and what could not be read.

    Attributes
    ----------
    sources : list of SlideSource
        One per slide; a partly annotated slide's marks include its reviewed regions as Benign marks.
    problems : list of str
        Reviewed-region entries (or files) left out, each message naming its file.
    """

    sources: list[SlideSource]
    problems: list[str]


def retrain_sources(project, slide_ids=None, open_marks: dict | None = None) -> RetrainSources:
    """The slides of ``project`` (all, or ``slide_ids``) with the marks and reviewed regions that label them.

    Parameters
    ----------
    project : core.project.model.Project
    slide_ids : sequence of str, optional
    open_marks : dict, optional
        ``{slide id: [Annotation, ...]}`` of slides open in the window (`core.project.document.open_marks`),
        used instead of their saved files, which may be a few seconds behind.

    Returns
    -------
    RetrainSources
        Pass ``.sources`` to `core.tiles.planning.plan_dataset` to plan and read the tiles.

    Raises
    ------
    DatasetError
        When a slide's mark file cannot be read.
    """
    sources = sources_from_project(project, slide_ids)
    entries = project.slides if slide_ids is None else [project.slide(i) for i in slide_ids]
    problems: list[str] = []
    for entry, source in zip(entries, sources):
        if open_marks and entry.id in open_marks:
            source.annotations = list(open_marks[entry.id])
        if source.fully_annotated:
            continue  # unmarked tissue is non-tumour already; a review adds nothing
        loaded = load_reviewed(reviewed_path(project.annotations_path(entry.id)))
        problems.extend(loaded.problems)
        source.annotations = source.annotations + reviewed_as_benign([r.geometry for r in loaded.regions])
    return RetrainSources(sources, problems)


__all__ = ["RetrainSources", "retrain_sources"]
