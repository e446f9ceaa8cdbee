"""Retrain in the loop: fine-tune a model on the tiles a project's doctors' decisions label.

Which marks count is decided where every dataset decides it (`core.tiles.labels.label_tiles`): accepted
drafts are ordinary marks, rejected drafts are Benign marks, and drafts nobody decided on count for
nothing. What retraining adds is the reviewed regions (`core.project.reviewed`): on a slide that is not
fully annotated, a region the doctor reviewed counts as Benign where no Tumour mark is
(`core.tiles.labels.reviewed_as_benign`), so only tiles inside marked or reviewed regions get a label; on a
fully annotated slide every tissue tile is labelled as always. The tiles are then read like any dataset's
(`core.tiles.planning.plan_dataset`), and `core.models.train.train` fine-tunes from the parent with
``init_from``. `retrain_job` makes the `core.models.training_job.TrainingJob` that does all of it (run it
with `core.models.training_job.run_job`, as the window's *Model ▸ Retrain with new marks* does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.annotations.proposals import is_draft
from core.errors import BiopsiaError, DatasetError
from core.project.layout import MODELS_DIR
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
    sources = sources_from_project(project, slide_ids, marks=open_marks)
    entries = project.slides if slide_ids is None else [project.slide(i) for i in slide_ids]
    problems: list[str] = []
    for entry, source in zip(entries, sources):
        if source.fully_annotated:
            continue  # unmarked tissue is non-tumour already; a review adds nothing
        loaded = load_reviewed(reviewed_path(project.annotations_path(entry.id)))
        problems.extend(loaded.problems)
        source.annotations = source.annotations + reviewed_as_benign([r.geometry for r in loaded.regions])
    return RetrainSources(sources, problems)


#: Epochs of a fine-tuning run: the parent has learnt the tissue, the new marks adjust it.
RETRAIN_EPOCHS = 3
#: A fine-tuning run's learning rate, as a share of the parent's: large steps would undo what it learnt.
LR_SHARE = 0.5


def labelled_slides(project, open_marks: dict | None = None) -> dict[str, list]:
    """The project's slides that label some tissue, ``{slide id: its marks}``: fully annotated, or with a
    decided mark or a reviewed region (a slide holding only undecided drafts labels nothing). The marks are
    ``open_marks``' for the slides it holds, else read from their files (once: the run uses them).

    Raises
    ------
    AnnotationFormatError
        When a slide's mark file cannot be read.
    """
    found = {}
    for entry in project.slides:
        if open_marks and entry.id in open_marks:
            marks = open_marks[entry.id]
        elif project.annotations_path(entry.id).exists():
            marks = project.load_annotations(entry.id).annotations()
        else:
            marks = []
        decided = any(not is_draft(m) for m in marks)
        if entry.settings.fully_annotated or decided or \
                load_reviewed(reviewed_path(project.annotations_path(entry.id))).regions:
            found[entry.id] = marks
    return found


def retrained_name(models: Path, parent_name: str) -> str:
    """``<parent>-retrained``, then ``-2``, ``-3``... when taken: a fresh folder under ``models``."""
    base = re.sub(r"[^A-Za-z0-9._ -]", "-", parent_name).lstrip(".-_ ") or "model"
    base = re.sub(r"-retrained(-\d+)?$", "", base) + "-retrained"
    name, n = base, 2
    while (models / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def retrain_job(project, parent, open_marks: dict | None = None, name: str | None = None,
                epochs: int = RETRAIN_EPOCHS, device: str = "auto", lr: float | None = None):
    """The run that fine-tunes ``parent`` on ``project``'s marks, reviewed regions and decided drafts.

    The tiles are the parent's (size, µm/px), and so are the architecture, classes and stain normalisation
    (`core.models.train.read_parent` checks them again when the run starts); the learning rate is
    `LR_SHARE` of the parent's. The new model goes to ``<project>/models/<name>`` (default
    `retrained_name`) and records its parent.

    Parameters
    ----------
    project : core.project.model.Project
    parent : path-like
        A model bundle or a training folder (its ``best/``).
    open_marks : dict, optional
        ``{slide id: marks}`` of the slides open in the window (`core.project.document.open_marks`).

    Returns
    -------
    core.models.training_job.TrainingJob
        Run it with `core.models.training_job.run_job`.

    Raises
    ------
    ModelError
        When the parent cannot be read.
    DatasetError
        When it records no µm/px (it could not read slides), no slide labels any tissue, or the name is taken.
    """
    from core.models.bundle import read_info, resolve_bundle
    from core.models.folder import model_name
    from core.models.training_job import TrainingJob, model_dir
    from core.tiles.grid import TileSpec

    if project is None:
        raise DatasetError("No project: retraining learns from a project's marks; open a project first")
    bundle = resolve_bundle(parent)
    info = read_info(bundle)
    if info.mpp is None:
        raise DatasetError(f"{bundle}: the model records no µm/px, so it cannot read tiles from slides; retrain "
                           "a model trained on slides (or on patches of a stated --patch-mpp)")
    try:
        marks = labelled_slides(project, open_marks)
    except BiopsiaError as err:
        raise DatasetError(f"Cannot retrain: {err}") from None
    if not marks:
        raise DatasetError(f"Project {project.name}: no slide has marks, accepted or rejected drafts or reviewed "
                           "regions to learn from; mark or review some tissue first")
    models = Path(project.folder) / MODELS_DIR
    settings = (info.training or {}).get("settings", {})
    base_lr = float(settings.get("lr", 1e-3))
    return TrainingJob(project, list(marks), [], TileSpec(info.tile_px, info.mpp),
                       model_dir(project, name or retrained_name(models, model_name(bundle))),
                       arch=info.architecture, epochs=int(epochs),
                       batch_size=int(settings.get("batch_size", 64)), lr=lr if lr is not None else base_lr * LR_SHARE,
                       device=device, init_from=bundle, open_marks=marks,
                       stain_normalise=(info.stain or {}).get("method", "none"))


def run_retrain(project, parent, open_marks: dict | None = None, epochs: int = RETRAIN_EPOCHS, device: str = "auto",
                *, partial: Callable[[object], None], should_stop: Callable[[], bool]):
    """`retrain_job`, then `core.models.training_job.run_job`, on the calling thread (reading the marks and the
    parent is work too: the window runs this on a worker). The job is reported first, ``partial(job)``, then
    every report of `run_job`. Returns its result; raises as `retrain_job` and `run_job` do."""
    from core.models.training_job import run_job

    job = retrain_job(project, parent, open_marks, epochs=epochs, device=device)
    partial(job)
    return run_job(job, partial, should_stop)


__all__ = ["RetrainSources", "retrain_sources", "labelled_slides", "retrained_name", "retrain_job", "run_retrain",
           "RETRAIN_EPOCHS", "LR_SHARE"]
