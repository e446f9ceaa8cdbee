"""Projects for tests: synthetic slides with their known tumour marks, as a doctor would have saved them."""

from __future__ import annotations

from core.annotations import AnnotationStore
from core.annotations.formats import read_annotations
from core.project.model import Project


def marked_project(folder, synths, name: str = "Test project", marks: bool = True,
                   fully_annotated: bool = True) -> tuple[Project, list[str]]:
    """A new project at ``folder`` holding each synthetic slide of ``synths``, with its true tumour regions
    saved as marks (unless ``marks`` is False) and its "fully annotated" setting; returns it and the slide ids."""
    project = Project.create(folder, name)
    ids = []
    for synth in synths:
        entry = project.add_slide(synth.slide_path)
        if marks:
            loaded = read_annotations(synth.geojson_path)
            project.save_annotations(entry.id, AnnotationStore(loaded.annotations, loaded.classes))
        project.update_settings(entry.id, fully_annotated=fully_annotated)
        ids.append(entry.id)
    return project, ids
