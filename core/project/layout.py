"""Where a project keeps its files: the one owner of the folder and file names inside a project.

Layout::

    <folder>/project.json                            format version, name, classes, slides
    <folder>/project.json.bak                        the previous project.json (kept by every save)
    <folder>/annotations/<slide-id>.geojson          the slide's marks, as QuPath reads them
    <folder>/annotations/<slide-id>.geojson.journal  edits saved since (large stores; folded in on close)
    <folder>/annotations/<slide-id>.reviewed.json    regions the doctor reviewed (`core.project.reviewed`)
    <folder>/cohort/<model>/<slide>/                 Model ▸ Predict all slides' outputs, as `biopsia predict`
    <folder>/models/<name>/                          models trained in the project
    <folder>/predictions/<slide-id>/<model>.npz      probability grids predicted for a slide
"""

from __future__ import annotations

from pathlib import Path

PROJECT_FILE = "project.json"
ANNOTATIONS_DIR = "annotations"
ANNOTATION_SUFFIX = ".geojson"
MODELS_DIR = "models"
PREDICTIONS_DIR = "predictions"


def is_project_folder(path) -> bool:
    """Whether ``path`` is a folder holding a ``project.json``."""
    return (Path(path) / PROJECT_FILE).is_file()


def annotations_dir(folder) -> Path:
    """``<folder>/annotations``."""
    return Path(folder) / ANNOTATIONS_DIR


def models_dir(folder) -> Path:
    """``<folder>/models``: one subfolder per trained model."""
    return Path(folder) / MODELS_DIR


def predictions_dir(folder) -> Path:
    """``<folder>/predictions``: one subfolder per slide id."""
    return Path(folder) / PREDICTIONS_DIR
