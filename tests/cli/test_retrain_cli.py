"""``biopsia retrain PROJECT --model M``: the window's Retrain with new marks from the command line, on a
project whose one slide the parent never saw, and refused with nothing to learn from."""

from __future__ import annotations

import json

from core.annotations.model import Annotation
from core.annotations.store import AnnotationStore
from core.inference.predict import model_identity
from core.project.model import Project
from tests.cli.test_cli import biopsia


def test_retrain_from_the_command_line(slide_pair, small_model, tmp_path):
    slide = slide_pair[0]
    project = Project.create(tmp_path / "project", "CLI retrain")
    entry = project.add_slide(slide.slide_path)
    empty = biopsia("retrain", project.folder, "--model", small_model, "--device", "cpu")
    assert empty.returncode == 1 and "no slide has marks" in empty.stderr and "Traceback" not in empty.stderr

    project.save_annotations(entry.id, AnnotationStore([Annotation(p, "Tumour") for p in slide.tumour_polygons]))
    project.update_settings(entry.id, fully_annotated=True)
    done = biopsia("retrain", project.folder, "--model", small_model, "--epochs", "1", "--device", "cpu",
                   timeout=600)
    assert done.returncode == 0, done.stderr
    out = project.folder / "models" / f"{small_model.parent.name}-retrained" / "best"
    assert done.stdout.startswith(str(out)) and "labelled tiles: " in done.stderr
    doc = json.loads((out / "model.json").read_text())
    assert doc["training"]["parent"]["sha256"] == model_identity(small_model)["sha256"]
    assert doc["training"]["settings"]["epochs"] == 1 and (out / "model.onnx").is_file()

    again = biopsia("retrain", project.folder, "--model", small_model, "--name",
                    f"{small_model.parent.name}-retrained", "--device", "cpu")
    assert again.returncode == 1 and "a model of that name exists" in again.stderr
